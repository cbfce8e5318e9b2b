//! Log lines to stderr without ever blocking the loop.
//!
//! A blocking write to stderr stops a single-threaded node dead: a pipe nobody drains, a
//! terminal paused with Ctrl-S, and the loop sits in `write(2)`: no accepts, no sends, no
//! signals. And a terminal that has hung up fails every write with `EIO`, on which
//! `eprintln!` panics. So this is the node's own [`log::Log`]:
//!
//! * Each record becomes one line, `LEVEL [module::path] text` (the level padded to five
//!   characters), appended to a bounded in-memory buffer of [`CAPACITY`] bytes.
//! * The buffer goes to stderr with writes that never block (`StdFd`: a non-blocking
//!   second description of a terminal or a pipe, `MSG_DONTWAIT` on a socket, a regular
//!   file as it is). The log call itself writes what fits at once, so lines appear
//!   promptly; what does not fit waits, and the reactor writes it when stderr is writable
//!   ([`watch`]).
//! * When the buffer is full, lines are dropped and counted; once half of it is free
//!   again, a line says how many were lost ("12 log lines dropped: stderr was not keeping
//!   up").
//! * A write that fails (`EIO` after a hang-up, `EPIPE`, a full disk) ends logging for
//!   good, quietly: there is nobody left to tell, and no panic.
//!
//! At exit, [`flush_before_exit`] waits a bounded time for a slow reader.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::os::{self, StdFd};

/// Most bytes of log lines held while stderr is not taking them.
pub const CAPACITY: usize = 256 * 1024;
/// How long the node waits at exit for stderr to take the lines still held.
pub const EXIT_DRAIN: Duration = Duration::from_secs(2);

/// Whether log output still waits for stderr after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing waits (or stderr is gone and nothing ever will).
    Done,
    /// Lines wait: stderr would have blocked.
    Waiting,
}

/// Installs the logger at `level`; `RUST_LOG` (`error`, `warn`, `info`, `debug`,
/// `trace`, `off`) overrides it.
pub fn init(level: LevelFilter) {
    static LOGGER: Logger = Logger;
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(level);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Writes `text` as a line of its own, as it is (the binary's own `p2pchat: ...` errors),
/// in order with the log lines.
pub fn say(text: &str) {
    let mut sink = lock();
    sink.push(text.as_bytes());
    sink.flush();
}

/// Writes what stderr takes now.
pub fn flush() -> Flush {
    lock().flush()
}

/// The descriptor to watch for writability while lines wait (`None`: a regular file,
/// always writable, or stderr is gone).
pub fn pollable_fd() -> Option<RawFd> {
    lock().pollable_fd()
}

/// For the reactor, once per loop turn: writes what stderr takes now and keeps stderr
/// registered under `token` for WRITABLE exactly while lines wait, so the loop wakes to
/// write them and never waits for them.
pub fn watch(registry: &Registry, token: Token) {
    let (waiting, watched, fd) = {
        let mut sink = lock();
        let waiting = sink.flush() == Flush::Waiting;
        // Even when gone: a registration is still taken back.
        let fd = sink.fd.as_ref().and_then(StdFd::pollable_fd);
        (waiting, sink.watched, fd)
    };
    let Some(fd) = fd else {
        return;
    };
    // Not under the lock: mio logs (at trace level) as it registers.
    if waiting && !watched {
        let ok = registry
            .register(&mut SourceFd(&fd), token, Interest::WRITABLE)
            .is_ok();
        lock().watched = ok;
    } else if !waiting && watched {
        let _ = registry.deregister(&mut SourceFd(&fd));
        lock().watched = false;
    }
}

/// The last writes, as the process ends: waits up to `limit` for a slow reader to take
/// the lines still held, but not for one that takes nothing ([`os::drain_at_exit`]), and
/// only once: after one wait has run out, later calls only try. Returns how many bytes
/// were left unwritten.
pub fn flush_before_exit(limit: Duration) -> usize {
    let limit = if lock().gave_up {
        Duration::ZERO
    } else {
        limit
    };
    // The lock is taken per write, never held while waiting: other threads may log.
    let write = || -> io::Result<usize> {
        let mut sink = lock();
        Ok(match sink.flush() {
            Flush::Done => 0,
            Flush::Waiting => sink.backlog.pending().len(),
        })
    };
    let fd = lock().pollable_fd();
    let left = match fd {
        Some(fd) => os::drain_at_exit(fd, limit, write, || false),
        None => write(),
    }
    .unwrap_or(0);
    if left > 0 {
        lock().gave_up = true;
    }
    left
}

/// The end of logging: [`flush_before_exit`], then stderr is let go (a shared
/// description made non-blocking gets its flags back). Later lines are dropped.
pub fn close(limit: Duration) {
    flush_before_exit(limit);
    lock().end();
}

/// Keeps log lines for [`take_held`] instead of writing them to stderr (`true`), or
/// writes them again, those still kept first (`false`).
pub fn hold(on: bool) {
    let mut sink = lock();
    sink.held = on;
    sink.flush();
}

/// Moves the log lines kept while [`hold`] is on into `out` (whole lines, each ending in
/// a newline, with a line counting those dropped when more came than the buffer holds).
pub fn take_held(out: &mut Vec<u8>) {
    let mut sink = lock();
    if !sink.held {
        return;
    }
    let backlog = &mut sink.backlog;
    backlog.resume();
    out.extend_from_slice(backlog.pending());
    backlog.buf.clear();
    backlog.head = 0;
    backlog.resume();
}

/// The sink. Nothing that may log is called while it is held (the lock is not reentrant).
fn lock() -> MutexGuard<'static, Sink> {
    static SINK: Mutex<Sink> = Mutex::new(Sink::new());
    // A panic while holding it leaves nothing half-done that matters for logging.
    SINK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Formatted before taking the lock, so a `Display` that logs cannot deadlock.
        let line = format_line(record);
        let mut sink = lock();
        sink.push(&line);
        sink.flush();
    }

    fn flush(&self) {
        flush();
    }
}

/// `WARN  [p2pchat::reactor] text`, as simple_logger wrote it before.
fn format_line(record: &Record) -> Vec<u8> {
    let target = match record.target() {
        "" => record.module_path().unwrap_or_default(),
        t => t,
    };
    let mut line = Vec::with_capacity(128);
    let _ = write!(line, "{:<5} [{target}] {}", record.level(), record.args());
    line
}

/// The process's stderr and the lines waiting for it.
struct Sink {
    backlog: Backlog,
    /// Set up at the first write.
    fd: Option<StdFd>,
    /// A write failed or logging was closed: nothing more is written.
    gone: bool,
    /// Registered with the reactor's poll.
    watched: bool,
    /// A wait at exit ran out.
    gave_up: bool,
    /// Lines are kept for the reactor to show (stderr is the terminal the line editor
    /// draws on: a line written there would land in the middle of the input line).
    held: bool,
}

impl Sink {
    const fn new() -> Sink {
        Sink {
            backlog: Backlog::new(CAPACITY),
            fd: None,
            gone: false,
            watched: false,
            gave_up: false,
            held: false,
        }
    }

    fn push(&mut self, line: &[u8]) {
        if !self.gone {
            self.backlog.push(line);
        }
    }

    fn flush(&mut self) -> Flush {
        if self.gone || self.held {
            return Flush::Done;
        }
        let fd = self.fd.get_or_insert_with(|| {
            let (fd, why) = StdFd::open(2, libc::O_WRONLY);
            if let Some(e) = why
                && log::max_level() >= LevelFilter::Info
            {
                let note = format!(
                    "INFO  [{}] cannot reopen stderr ({e}): made it non-blocking itself",
                    module_path!()
                );
                self.backlog.push(note.as_bytes());
            }
            fd
        });
        match self.backlog.write_to(|bytes| fd.write(bytes)) {
            Ok(flush) => flush,
            Err(_) => {
                // Nobody to tell: stop quietly.
                self.gone = true;
                self.backlog = Backlog::new(0);
                Flush::Done
            }
        }
    }

    fn pollable_fd(&self) -> Option<RawFd> {
        match &self.fd {
            Some(fd) if !self.gone => fd.pollable_fd(),
            _ => None,
        }
    }

    fn end(&mut self) {
        self.gone = true;
        self.backlog = Backlog::new(0);
        self.fd = None;
    }
}

/// Lines waiting for stderr, at most `cap` bytes; the ones that do not fit are dropped
/// and counted. Pure: the writing is passed in.
#[derive(Debug)]
struct Backlog {
    /// Waiting bytes are `buf[head..]`; `head` moves on as stderr takes bytes.
    buf: Vec<u8>,
    head: usize,
    cap: usize,
    /// Lines dropped since the buffer was last full, not yet reported.
    dropped: u64,
}

impl Backlog {
    const fn new(cap: usize) -> Backlog {
        Backlog {
            buf: Vec::new(),
            head: 0,
            cap,
            dropped: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Appends `line` and a newline, or drops and counts it when it does not fit, or
    /// while dropping has not stopped yet (half the buffer free again).
    fn push(&mut self, line: &[u8]) {
        self.resume();
        if self.dropped > 0 || self.pending().len() + line.len() + 1 > self.cap {
            self.dropped += 1;
            return;
        }
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
    }

    /// Once half the buffer is free after lines were dropped, says how many.
    fn resume(&mut self) {
        if self.dropped == 0 || self.pending().len() > self.cap / 2 {
            return;
        }
        let n = self.dropped;
        let s = if n == 1 { "" } else { "s" };
        let _ = writeln!(
            self.buf,
            "WARN  [{}] {n} log line{s} dropped: stderr was not keeping up",
            module_path!()
        );
        self.dropped = 0;
    }

    /// Writes with `write` until everything is written or it would block. An error other
    /// than `WouldBlock` or `Interrupted` (or a write of 0 bytes) is returned.
    fn write_to(&mut self, mut write: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<Flush> {
        loop {
            self.resume();
            if self.pending().is_empty() {
                self.buf.clear();
                self.head = 0;
                return Ok(Flush::Done);
            }
            match write(self.pending()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.head += n.min(self.pending().len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Reclaim the written front once it outweighs what waits, so the copy
                    // is paid once per buffer's worth.
                    if self.head >= self.pending().len() {
                        self.buf.drain(..self.head);
                        self.head = 0;
                    }
                    return Ok(Flush::Waiting);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn would_block(_: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Takes everything, into `out`.
    fn into(out: &mut Vec<u8>) -> impl FnMut(&[u8]) -> io::Result<usize> + '_ {
        |b| {
            out.extend_from_slice(b);
            Ok(b.len())
        }
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_are_written_in_order_and_a_partial_write_keeps_the_rest() {
        let mut b = Backlog::new(1024);
        b.push(b"one");
        b.push(b"two");
        // stderr takes 5 bytes, then would block.
        let mut taken = Vec::new();
        let mut budget = 5;
        let r = b.write_to(|bytes| {
            if budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = bytes.len().min(budget);
            budget -= n;
            taken.extend_from_slice(&bytes[..n]);
            Ok(n)
        });
        assert_eq!(r.unwrap(), Flush::Waiting);
        assert_eq!(text(&taken), "one\nt");
        assert_eq!(text(b.pending()), "wo\n");
        b.push(b"three");
        assert_eq!(b.write_to(into(&mut taken)).unwrap(), Flush::Done);
        assert_eq!(text(&taken), "one\ntwo\nthree\n");
        assert!(b.pending().is_empty());
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_and_says_so_once_half_is_free() {
        let mut b = Backlog::new(1000);
        let line = [b'x'; 99]; // 100 bytes with its newline
        for _ in 0..10 {
            b.push(&line);
        }
        assert_eq!(b.pending().len(), 1000);
        for _ in 0..7 {
            b.push(&line);
        }
        assert_eq!(b.pending().len(), 1000, "bounded");
        assert_eq!(b.dropped, 7);
        assert_eq!(b.write_to(would_block).unwrap(), Flush::Waiting);
        // stderr takes four lines: 600 bytes still wait, more than half: still dropping.
        b.head += 400;
        b.push(b"short");
        assert_eq!(b.dropped, 8);
        // Another line taken: half free, the count comes first, then lines again.
        b.head += 100;
        b.push(b"after");
        let mut out = Vec::new();
        assert_eq!(b.write_to(into(&mut out)).unwrap(), Flush::Done);
        let expected = format!(
            "{}WARN  [p2pchat::log_sink] 8 log lines dropped: stderr was not keeping up\n\
             after\n",
            format!("{}\n", text(&line)).repeat(5)
        );
        assert_eq!(text(&out), expected);
        assert_eq!(b.dropped, 0);
    }

    #[test]
    fn the_dropped_count_comes_out_without_another_line() {
        let mut b = Backlog::new(10);
        b.push(b"a line longer than the whole buffer");
        assert_eq!(b.dropped, 1);
        let mut out = Vec::new();
        assert_eq!(b.write_to(into(&mut out)).unwrap(), Flush::Done);
        assert_eq!(
            text(&out),
            "WARN  [p2pchat::log_sink] 1 log line dropped: stderr was not keeping up\n"
        );
    }

    #[test]
    fn a_failed_write_is_an_error_not_a_panic() {
        let mut b = Backlog::new(100);
        b.push(b"hello");
        let eio = b.write_to(|_| Err(io::Error::from_raw_os_error(libc::EIO)));
        assert_eq!(eio.unwrap_err().raw_os_error(), Some(libc::EIO));
        let zero = b.write_to(|_| Ok(0));
        assert_eq!(zero.unwrap_err().kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn a_gone_stderr_drops_everything_quietly() {
        let mut s = Sink::new();
        s.end();
        s.push(b"nobody reads this");
        assert_eq!(s.flush(), Flush::Done);
        assert!(s.backlog.pending().is_empty());
        assert_eq!(s.pollable_fd(), None);
    }

    #[test]
    fn lines_look_as_they_did_with_simple_logger() {
        let line = format_line(
            &Record::builder()
                .level(log::Level::Warn)
                .target("p2pchat::reactor")
                .args(format_args!("10.0.0.9: dropped 3 bytes"))
                .build(),
        );
        assert_eq!(
            text(&line),
            "WARN  [p2pchat::reactor] 10.0.0.9: dropped 3 bytes"
        );
        let line = format_line(
            &Record::builder()
                .level(log::Level::Error)
                .target("")
                .module_path(Some("p2pchat::os"))
                .args(format_args!("x"))
                .build(),
        );
        assert_eq!(text(&line), "ERROR [p2pchat::os] x");
    }
}
