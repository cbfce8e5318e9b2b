//! The inbound assembler: what one accepted connection's bytes mean, with no socket and no
//! clock (sans-IO, like the peer table).
//!
//! The reactor feeds it what it read ([`Assembler::on_bytes`], one call per read pass: an
//! *arrival*), how the stream ended ([`Assembler::on_eof`], [`Assembler::on_reset`],
//! [`Assembler::on_evicted`]) and the time ([`Assembler::handle_timeout`] once
//! [`Assembler::poll_timeout`] has passed). It pulls what to show with
//! [`Assembler::poll_output`] until `None`, and closes the socket once
//! [`Assembler::is_done`].
//!
//! The rules (PROTOCOL.md, "Receiving"):
//! * A connection normally carries one message, ended by the sender's close.
//! * Some implementations keep theirs open and write several, each on its own. A new
//!   message is recognised only where a new arrival repeats the first message's `ADDR NAME `
//!   header ([`wire::new_message_at`]), never inside one arrival, so a text quoting its
//!   sender's header is not cut. Bytes that arrive after a message was shown and carry no
//!   header continue that sender's text: they are shown as a further message from it
//!   (always as text), not dropped.
//! * A buffered message that already parses is shown once the connection has been quiet
//!   for `idle_flush` (a sender that keeps its connection open after writing).
//! * Every message must be complete within `read_timeout` of the previous one (or of the
//!   accept); no message may exceed `max_message` bytes.
//! * A connection that ends without the sender's close (reset, read deadline, evicted for a
//!   new one) still shows what parses, marked [`Cut`]: it may be missing its end.
//!
//! Every message is parsed exactly once, here.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::wire::{self, Message, WireError};

/// Arrivals remembered at most while undecided (a header trickling in); more are merged.
const MAX_ARRIVALS: usize = 8;

/// The assembler's limits (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, in bytes (`--max-message`).
    pub max_message: usize,
    /// Time allowed per message (`--read-timeout`).
    pub read_timeout: Duration,
    /// Quiet time after which a buffered whole message is shown.
    pub idle_flush: Duration,
}

/// Why a connection ended before its sender closed it: what it sent may lack its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The connection failed (reset by the sender or the network).
    Reset,
    /// The message was not complete within `--read-timeout`.
    TimedOut,
    /// Closed to make room for a new connection.
    Evicted,
}

impl Cut {
    /// A short stable word for scripts (`--json`).
    pub fn code(self) -> &'static str {
        match self {
            Cut::Reset => "reset",
            Cut::TimedOut => "timeout",
            Cut::Evicted => "evicted",
        }
    }
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cut::Reset => "the connection was reset",
            Cut::TimedOut => "the sender did not finish in time",
            Cut::Evicted => "the connection was closed to make room",
        })
    }
}

/// Why bytes were not shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// They are not a message.
    Malformed(WireError),
    /// The message grew past `max_message`; the connection is closed.
    TooLarge { cap: usize },
    /// The connection ended early with bytes that do not parse (a header still arriving).
    Cut(Cut),
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::Malformed(e) => e.fmt(f),
            Dropped::TooLarge { cap } => {
                write!(f, "message longer than {cap} bytes (--max-message)")
            }
            Dropped::Cut(cut) => write!(f, "{cut} before a whole header arrived"),
        }
    }
}

/// What the assembler found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A message to hand to the peer table. `index` is its place on the connection (the
    /// first is 0); `cut` is set when the connection ended without the sender's close.
    Message {
        msg: Message,
        index: usize,
        cut: Option<Cut>,
    },
    /// The connection closed without a byte: a liveness probe.
    Probe,
    /// `bytes` bytes were not shown, and why.
    Dropped { bytes: usize, why: Dropped },
    /// The last message was shown after the sender went quiet (the idle flush), and then
    /// the connection was reset or evicted with nothing more: that message may have been
    /// cut short. (A read deadline after it is not this: senders that keep their
    /// connection open, waiting for a reply, end that way.)
    ShownMayBeCut(Cut),
}

/// One inbound connection's bytes. See the module documentation.
#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
    buf: BytesMut,
    /// Offsets in `buf` where bytes arrived after a quiet moment (a new read pass), not yet
    /// known to start a new message or not.
    arrivals: Vec<usize>,
    /// The `ADDR NAME ` prefix of the connection's first message, once it has arrived.
    header: Option<Bytes>,
    /// When the message being read began (the accept, or the end of the previous one).
    message_began: Instant,
    /// The last output was the idle flush and nothing has arrived since.
    flushed: bool,
    /// Arrivals since the message being read began: an honest sender writes a message in
    /// one or two; a sender dripping bytes to keep its connection looking busy, in many.
    arrivals_in_message: usize,
    /// When the message being read must be complete.
    read_deadline: Instant,
    /// When buffered bytes that already parse are shown if nothing more arrives.
    flush_at: Option<Instant>,
    /// Any byte has arrived (a connection without one is a probe).
    any_bytes: bool,
    /// Messages output so far (the next one's index).
    messages: usize,
    out: VecDeque<Output>,
    done: bool,
}

impl Assembler {
    /// A connection accepted at `now`.
    pub fn new(limits: Limits, now: Instant) -> Self {
        Assembler {
            limits,
            buf: BytesMut::new(),
            arrivals: Vec::new(),
            header: None,
            message_began: now,
            arrivals_in_message: 0,
            flushed: false,
            read_deadline: now + limits.read_timeout,
            flush_at: None,
            any_bytes: false,
            messages: 0,
            out: VecDeque::new(),
            done: false,
        }
    }

    /// A connection whose every byte arrived before it was even watched (the sender wrote
    /// and closed at once): the same rules as one arrival then [`Assembler::on_eof`],
    /// without buffering a copy. The common case.
    pub fn whole(limits: &Limits, data: &[u8]) -> Output {
        if data.is_empty() {
            return Output::Probe;
        }
        let bytes = data.len();
        if bytes > limits.max_message {
            let cap = limits.max_message;
            let why = Dropped::TooLarge { cap };
            return Output::Dropped { bytes, why };
        }
        match wire::parse(data) {
            Ok(msg) => Output::Message {
                msg,
                index: 0,
                cut: None,
            },
            Err(e) => Output::Dropped {
                bytes,
                why: Dropped::Malformed(e),
            },
        }
    }

    /// The connection is finished: close it (after pulling the outputs).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes held for a message not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// When the message being read began: an admission policy evicts long-unfinished
    /// messages (a sender dripping bytes) before fresh ones.
    pub fn message_began(&self) -> Instant {
        self.message_began
    }

    /// Arrivals since the message being read began (see the field).
    pub fn arrivals_in_message(&self) -> usize {
        self.arrivals_in_message
    }

    /// The next thing to show, if any. Call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Assembler::handle_timeout`] has work to do; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        Some(match self.flush_at {
            Some(at) => at.min(self.read_deadline),
            None => self.read_deadline,
        })
    }

    /// One arrival: the bytes one read pass found (never empty).
    pub fn on_bytes(&mut self, data: &[u8], now: Instant) {
        if self.done || data.is_empty() {
            return;
        }
        let start = self.buf.len();
        if start > 0 && self.arrivals.len() < MAX_ARRIVALS {
            self.arrivals.push(start);
        }
        self.any_bytes = true;
        self.buf.extend_from_slice(data);
        self.arrivals_in_message += 1;
        self.flushed = false;
        if self.header.is_none() {
            self.header = wire::header_prefix(&self.buf).map(Bytes::copy_from_slice);
        }
        let mut completed = false;
        while let Some(at) = self.next_boundary() {
            let piece = self.split(at);
            if piece.len() > self.limits.max_message {
                return self.too_large(piece.len());
            }
            self.emit(piece, None);
            completed = true;
        }
        if self.buf.len() > self.limits.max_message {
            return self.too_large(self.buf.len());
        }
        if completed {
            // A message is done: the next one gets its own read deadline.
            self.message_began = now;
            self.arrivals_in_message = usize::from(!self.buf.is_empty());
            self.read_deadline = now + self.limits.read_timeout;
        }
        self.flush_at = (!self.buf.is_empty()).then_some(now + self.limits.idle_flush);
    }

    /// The sender closed its side: everything has arrived.
    pub fn on_eof(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.any_bytes {
            self.out.push_back(Output::Probe);
        } else if !self.buf.is_empty() {
            let piece = self.split(self.buf.len());
            self.emit(piece, None);
        }
    }

    /// The connection failed: what parses is still shown, marked.
    pub fn on_reset(&mut self) {
        self.end_early(Cut::Reset);
    }

    /// The connection is being closed to make room for another.
    pub fn on_evicted(&mut self) {
        self.end_early(Cut::Evicted);
    }

    /// Fires what is due at `now`: the idle flush, or the read deadline (which ends the
    /// connection). Harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        // The idle flush first when it fell due no later than the read deadline: called
        // late (the reactor held back while its output was backed up), a message that was
        // whole and quiet in time is still a whole message, not one cut by the deadline.
        let flush_due = self
            .flush_at
            .is_some_and(|t| t <= now && t <= self.read_deadline);
        if flush_due {
            self.flush_at = None;
            if let Some(msg) = self.take_if_whole() {
                let index = self.next_index();
                let cut = None;
                self.out.push_back(Output::Message { msg, index, cut });
                self.message_began = now;
                self.arrivals_in_message = 0;
                self.flushed = true;
                self.read_deadline = now + self.limits.read_timeout;
            }
        }
        if now >= self.read_deadline {
            self.end_early(Cut::TimedOut);
        }
    }

    fn end_early(&mut self, cut: Cut) {
        if self.done {
            return;
        }
        self.done = true;
        if self.buf.is_empty() {
            if self.flushed && cut != Cut::TimedOut {
                self.out.push_back(Output::ShownMayBeCut(cut));
            }
            return;
        }
        let piece = self.split(self.buf.len());
        let bytes = piece.len();
        let why = match self.parse(&piece) {
            Ok(msg) => {
                let index = self.next_index();
                let cut = Some(cut);
                return self.out.push_back(Output::Message { msg, index, cut });
            }
            // A header still arriving: nothing to read it as.
            Err(WireError::NoName | WireError::NoText) => Dropped::Cut(cut),
            Err(e) => Dropped::Malformed(e),
        };
        self.out.push_back(Output::Dropped { bytes, why });
    }

    fn too_large(&mut self, bytes: usize) {
        self.buf = BytesMut::new();
        self.arrivals.clear();
        self.done = true;
        self.out.push_back(Output::Dropped {
            bytes,
            why: Dropped::TooLarge {
                cap: self.limits.max_message,
            },
        });
    }

    fn next_index(&mut self) -> usize {
        let i = self.messages;
        self.messages += 1;
        i
    }

    /// Parses a piece: under the connection's header when it continues a paused text.
    fn parse(&self, piece: &[u8]) -> Result<Message, WireError> {
        match &self.header {
            Some(h) if !piece.starts_with(h) => wire::parse_continuation(h, piece),
            _ => wire::parse(piece),
        }
    }

    fn emit(&mut self, piece: Bytes, cut: Option<Cut>) {
        if piece.is_empty() {
            return;
        }
        let bytes = piece.len();
        match self.parse(&piece) {
            Ok(msg) => {
                let index = self.next_index();
                self.out.push_back(Output::Message { msg, index, cut });
            }
            Err(e) => self.out.push_back(Output::Dropped {
                bytes,
                why: Dropped::Malformed(e),
            }),
        }
    }

    /// Where the next message known to be complete ends: a new arrival that began another.
    fn next_boundary(&mut self) -> Option<usize> {
        let header = self.header.as_ref()?;
        while let Some(&at) = self.arrivals.first() {
            match wire::new_message_at(&self.buf, at, header) {
                Some(true) => return Some(at),
                Some(false) => {
                    self.arrivals.remove(0);
                }
                None => return None, // the header is still arriving
            }
        }
        None
    }

    /// The buffered message, parsed, if it is already whole (the sender went quiet without
    /// closing). Bytes that may be the start of a further header stay buffered.
    fn take_if_whole(&mut self) -> Option<Message> {
        let end = self.arrivals.first().copied().unwrap_or(self.buf.len());
        let raw = &self.buf[..end];
        if raw.is_empty() {
            return None;
        }
        let msg = match &self.header {
            // The next message's header, still arriving.
            Some(h) if !raw.starts_with(h) && h.starts_with(raw) => return None,
            // The rest of a paused text: shown under the connection's header.
            Some(h) if !raw.starts_with(h) => wire::parse_continuation(h, raw).ok()?,
            _ => wire::parse(raw).ok()?,
        };
        self.split(end);
        Some(msg)
    }

    /// Takes `buf[..at]` as one piece.
    fn split(&mut self, at: usize) -> Bytes {
        let bytes = self.buf.split_to(at).freeze();
        self.arrivals.retain_mut(|a| {
            *a = a.saturating_sub(at);
            *a > 0
        });
        if self.buf.is_empty() && self.buf.capacity() > 4096 {
            // Give a burst's memory back.
            self.buf = BytesMut::new();
        }
        bytes
    }
}

#[cfg(test)]
mod tests;
