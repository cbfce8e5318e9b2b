//! Reading what the user types, without ever blocking the poll loop.
//!
//! stdin is set up by [`StdFd`] so that no read can block: a terminal or a pipe is
//! reopened as a second, non-blocking description, a socket is read with `MSG_DONTWAIT`,
//! and either is registered with the poll (the shell's own descriptor keeps its flags). A
//! regular file or a device such as `/dev/null` cannot be polled; it never blocks either,
//! so it is read one chunk per loop turn. Lines longer than [`MAX_LINE`] are dropped with a
//! hint.

use std::io;

use crate::os::{InputKind, StdFd};

/// Longest line accepted from stdin.
pub const MAX_LINE: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;

/// What one read pass produced.
#[derive(Debug, Default)]
pub struct Lines {
    pub lines: Vec<String>,
    /// Lines dropped for being longer than [`MAX_LINE`].
    pub too_long: usize,
}

#[derive(Debug)]
pub struct Stdin {
    fd: StdFd,
    /// Not registered with the poll: read a chunk per loop turn.
    eager: bool,
    partial: Vec<u8>,
    discarding: bool,
    pub kind: InputKind,
    eof: bool,
    /// The last read filled its chunk: more may be waiting (a fast writer never lets the
    /// descriptor block). Read again next turn, one chunk per turn, so that what is typed
    /// shares the loop with the network.
    more: bool,
}

impl Stdin {
    pub fn open() -> Stdin {
        let (fd, why) = StdFd::open(0, libc::O_RDONLY);
        if let Some(e) = why {
            log::info!("cannot reopen stdin ({e}): made it non-blocking itself until exit");
        }
        Stdin {
            eager: fd.pollable_fd().is_none(),
            kind: fd.kind(),
            fd,
            partial: Vec::new(),
            discarding: false,
            eof: false,
            more: false,
        }
    }

    /// The descriptor to register with the poll, if stdin is pollable.
    pub fn pollable_fd(&self) -> Option<i32> {
        self.fd.pollable_fd().filter(|_| !self.eager)
    }

    /// Registration failed (some descriptors cannot be polled): read it every loop turn
    /// instead (still without blocking).
    pub fn make_eager(&mut self) {
        self.eager = true;
    }

    /// stdin has ended (end of input, or a read error taken as one).
    pub fn ended(&self) -> bool {
        self.eof
    }

    /// True when the loop must not sleep: an eager source, or one that had more to give,
    /// with input left.
    pub fn wants_turn(&self) -> bool {
        (self.eager || self.more) && !self.eof
    }

    /// Reads at most one chunk of what is available now.
    pub fn read(&mut self) -> Lines {
        let mut out = Lines::default();
        if self.eof {
            return out;
        }
        let mut chunk = [0u8; CHUNK];
        loop {
            match self.fd.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    if !self.partial.is_empty() && !self.discarding {
                        let line = std::mem::take(&mut self.partial);
                        out.lines.push(text_of(line));
                    }
                    return out;
                }
                Ok(n) => {
                    self.split(&chunk[..n], &mut out);
                    // Read again next turn, until it would block: with edge-triggered
                    // readiness, what is left (the end of input too) brings no new event.
                    self.more = true;
                    return out;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.more = false;
                    return out;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("reading stdin failed ({e}): treating it as end of input");
                    self.eof = true;
                    return out;
                }
            }
        }
    }

    /// Reads at most `buf.len()` bytes of what is available now, as they are (the line
    /// editor's keys); `None` when nothing is (or input has ended).
    pub fn read_raw<'a>(&mut self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        while !self.eof {
            match self.fd.read(buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.more = true;
                    return Some(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.more = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EIO: the terminal hung up.
                    log::info!("reading the terminal failed ({e}): treating it as end of input");
                    self.eof = true;
                }
            }
        }
        None
    }

    fn split(&mut self, mut data: &[u8], out: &mut Lines) {
        while let Some(nl) = memchr::memchr(b'\n', data) {
            if self.discarding {
                self.discarding = false;
            } else {
                self.partial.extend_from_slice(&data[..nl]);
                let line = std::mem::take(&mut self.partial);
                out.lines.push(text_of(line));
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

/// A line as text: kept as it is when it is valid UTF-8 (no copy), else with U+FFFD for
/// what is not.
fn text_of(line: Vec<u8>) -> String {
    String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
