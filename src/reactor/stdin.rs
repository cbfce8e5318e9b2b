//! Reading what the user types, without ever blocking the poll loop.
//!
//! A terminal or a pipe is reopened as a second, non-blocking description and registered
//! with the poll (the shell's own descriptor keeps its flags). A regular file or a device
//! such as `/dev/null` cannot be polled; it never blocks either, so it is read one chunk per
//! loop turn. Lines longer than [`MAX_LINE`] are dropped with a hint.

use std::fs::File;
use std::io::{self, Read};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};

use crate::os::{self, InputKind};

/// Longest line accepted from stdin.
pub const MAX_LINE: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;

#[derive(Debug)]
enum Source {
    /// Registered with the poll: read on readable events until it would block.
    Polled(File),
    /// Not pollable: read a chunk per loop turn (regular file, /dev/null).
    Eager(ManuallyDrop<File>),
}

/// What one read pass produced.
#[derive(Debug, Default)]
pub struct Lines {
    pub lines: Vec<String>,
    /// Lines dropped for being longer than [`MAX_LINE`].
    pub too_long: usize,
    pub eof: bool,
}

#[derive(Debug)]
pub struct Stdin {
    source: Source,
    partial: Vec<u8>,
    discarding: bool,
    pub kind: InputKind,
    eof: bool,
}

impl Stdin {
    pub fn open() -> Stdin {
        let kind = os::input_kind(0);
        let source = match kind {
            InputKind::File => Source::Eager(eager()),
            InputKind::Terminal | InputKind::Stream => match os::reopen(0, libc::O_RDONLY) {
                Ok(f) => Source::Polled(f),
                Err(e) => {
                    log::warn!("cannot reopen stdin non-blocking ({e}); reading it eagerly");
                    Source::Eager(eager())
                }
            },
        };
        Stdin {
            source,
            partial: Vec::new(),
            discarding: false,
            kind,
            eof: false,
        }
    }

    /// The descriptor to register with the poll, if stdin is pollable.
    pub fn pollable_fd(&self) -> Option<i32> {
        match &self.source {
            Source::Polled(f) => Some(f.as_raw_fd()),
            Source::Eager(_) => None,
        }
    }

    /// Registration failed (some descriptors cannot be polled): read it eagerly instead.
    pub fn make_eager(&mut self) {
        self.source = Source::Eager(eager());
    }

    /// True when the loop must not sleep: an eager source with input left.
    pub fn wants_turn(&self) -> bool {
        matches!(self.source, Source::Eager(_)) && !self.eof
    }

    /// Reads what is available now (one chunk for an eager source).
    pub fn read(&mut self) -> Lines {
        let mut out = Lines::default();
        if self.eof {
            return out;
        }
        let mut chunk = [0u8; CHUNK];
        loop {
            let r = match &mut self.source {
                Source::Polled(f) => f.read(&mut chunk),
                Source::Eager(f) => f.read(&mut chunk),
            };
            match r {
                Ok(0) => {
                    self.eof = true;
                    if !self.partial.is_empty() && !self.discarding {
                        let line = std::mem::take(&mut self.partial);
                        out.lines.push(String::from_utf8_lossy(&line).into_owned());
                    }
                    out.eof = true;
                    return out;
                }
                Ok(n) => {
                    self.split(&chunk[..n], &mut out);
                    if matches!(self.source, Source::Eager(_)) {
                        return out;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("reading stdin failed ({e}): treating it as end of input");
                    self.eof = true;
                    out.eof = true;
                    return out;
                }
            }
        }
    }

    fn split(&mut self, mut data: &[u8], out: &mut Lines) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            if self.discarding {
                self.discarding = false;
            } else {
                self.partial.extend_from_slice(&data[..nl]);
                let line = std::mem::take(&mut self.partial);
                out.lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            data = &data[nl + 1..];
        }
        if self.discarding {
            return;
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
            self.discarding = true;
            out.too_long += 1;
        }
    }
}

fn eager() -> ManuallyDrop<File> {
    // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(0) })
}
