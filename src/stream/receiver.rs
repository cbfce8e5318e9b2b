//! One incoming stream connection, and the node's memory of senders' sessions.
//!
//! The reactor hands a [`Receiver`] every byte of an inbound connection that opened with
//! the preface ([`Receiver::on_bytes`], at most [`Receiver::read_room`] at a time), and
//! pulls what they mean with [`Receiver::poll_event`]: first [`Event::Opened`] (the
//! Hello: claims bound to this connection, like a legacy header's), then each new message
//! in order ([`Event::Message`]). What to write back (the Welcome, then cumulative Acks)
//! comes out of [`Receiver::poll_transmit`].
//!
//! * **Dedup.** The [`SessionBook`] (one per node) remembers, per sender (socket host,
//!   claimed listening port), its session and the last message number delivered. A
//!   message numbered at or below it is a resend of one already shown: dropped. A new
//!   session (the sender restarted) starts a new record, so its numbers start afresh. A
//!   newer stream of the same sender takes the record over: the older connection is told
//!   [`StreamError::Superseded`] at its next poll and delivers nothing more, so the
//!   Welcome's `through` is the whole truth.
//! * **Acks** are cumulative: one per `ack_every` messages delivered or `ack_delay` after
//!   the first unacknowledged one, whichever comes first, and at most one per
//!   `poll_transmit` (a batch read in one turn is acknowledged once). A sender that never
//!   reads them costs nothing: an ack replaces the one before.
//! * **Rate limits** act by *pulling*: a message is delivered (and later acknowledged) only
//!   when polled. A reactor whose per-source budget is spent stops polling and stops
//!   reading (`read_room` is 0 once the buffer is full); the sender's window then fills and
//!   TCP pushes back. Nothing is dropped, nothing acknowledged unseen, and a frame held
//!   back this way is not "in progress" for the read deadline.
//! * **Limits**: at most `max_buffer` bytes held; a frame longer than allowed is refused
//!   from its 5-byte header; the Hello must arrive within `read_timeout` of the accept,
//!   each frame within `read_timeout` of the one before it (of its first byte when the
//!   stream was quiet); a stream with nothing for `idle_timeout` is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::StreamError;
use super::frame::{self, Frame, FrameError, HEADER_LEN, MAGIC, MAX_PAYLOAD, RefuseReason};

/// A receiver's limits.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverConfig {
    /// The highest version spoken (a Hello asking more is refused).
    pub version: u8,
    /// Largest text of one message.
    pub max_payload: usize,
    /// Bytes held at most (raised to one largest frame if lower).
    pub max_buffer: usize,
    /// The Hello after the accept, and each frame, must arrive within this.
    pub read_timeout: Duration,
    /// A stream with nothing arriving for this long is closed.
    pub idle_timeout: Duration,
    /// Acknowledge at the latest every this many messages...
    pub ack_every: u32,
    /// ... or this long after the first unacknowledged one.
    pub ack_delay: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            version: frame::VERSION,
            max_payload: MAX_PAYLOAD,
            max_buffer: 256 << 10,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ack_every: 64,
            ack_delay: Duration::from_millis(5),
        }
    }
}

/// A sender as the book knows it: the socket's host and the claimed listening port.
pub type SenderKey = (IpAddr, u16);

#[derive(Debug, Clone)]
struct Record {
    key: SenderKey,
    session: u64,
    /// Numbers up to this were written before the record began (the receiver restarted,
    /// or forgot): in doubt for good, never delivered.
    floor: u64,
    /// The last message number delivered in `session` (at least `floor`).
    through: u64,
    /// The stream that holds this record (tokens are never reused).
    owner: u64,
    opened: Instant,
}

/// What the node remembers of senders' sessions, to drop resends across connections.
/// Bounded: when full, a new sender takes the place of the one whose stream opened
/// longest ago (its next stream is then "unknown": its messages in doubt are reported
/// unconfirmed by its sender, never shown twice).
#[derive(Debug)]
pub struct SessionBook {
    records: Vec<Record>,
    index: HashMap<SenderKey, usize>,
    cap: usize,
    next_owner: u64,
}

/// Where a stream's record is, what the Welcome says, and whether the session was known.
#[derive(Debug, Clone, Copy)]
struct Claim {
    slot: usize,
    owner: u64,
    known: bool,
    floor: u64,
    through: u64,
}

impl SessionBook {
    /// Senders a node remembers by default (PROTOCOL.md).
    pub const DEFAULT_CAP: usize = 4096;

    /// A book remembering at most `cap` senders (at least one).
    pub fn new(cap: usize) -> Self {
        SessionBook {
            records: Vec::new(),
            index: HashMap::new(),
            cap: cap.max(1),
            next_owner: 1,
        }
    }

    /// Senders remembered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The last message delivered of `key`'s current session, if remembered.
    pub fn through(&self, key: SenderKey) -> Option<(u64, u64)> {
        let r = &self.records[*self.index.get(&key)?];
        Some((r.session, r.through))
    }

    /// A stream of `key` in `session` opens: it takes the record over. A new record
    /// begins at the sender's `fresh_from`: what it numbered before is in doubt here.
    fn open(&mut self, key: SenderKey, session: u64, fresh_from: u64, now: Instant) -> Claim {
        let owner = self.next_owner;
        self.next_owner += 1;
        let floor = fresh_from - 1;
        if let Some(&slot) = self.index.get(&key) {
            let r = &mut self.records[slot];
            let known = r.session == session;
            if !known {
                r.session = session;
                r.floor = floor;
                r.through = floor;
            }
            r.owner = owner;
            r.opened = now;
            let (floor, through) = (r.floor, r.through);
            return Claim {
                slot,
                owner,
                known,
                floor,
                through,
            };
        }
        let record = Record {
            key,
            session,
            floor,
            through: floor,
            owner,
            opened: now,
        };
        let slot = if self.records.len() < self.cap {
            self.records.push(record);
            self.records.len() - 1
        } else {
            let (slot, _) = self
                .records
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.opened)
                .expect("cap is at least one");
            self.index.remove(&self.records[slot].key);
            self.records[slot] = record;
            slot
        };
        self.index.insert(key, slot);
        Claim {
            slot,
            owner,
            known: false,
            floor,
            through: floor,
        }
    }

    /// The record `claim` took, if this stream still holds it.
    fn held(&mut self, slot: usize, owner: u64) -> Option<&mut Record> {
        self.records.get_mut(slot).filter(|r| r.owner == owner)
    }
}

/// What a stream said, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The Hello was accepted (a Welcome is due). The port and name are claims bound to
    /// this connection; the socket's host is the evidence. `known`: a stream of this
    /// session was seen before (a resume after a break).
    Opened {
        version: u8,
        port: u16,
        name: &'a str,
        session: u64,
        known: bool,
    },
    /// A new message (never one delivered before in this session), in order. `text` is a
    /// legacy TEXT: classify it as one (`exit`, `connect`), show invalid UTF-8 as U+FFFD.
    Message { seq: u64, text: &'a [u8] },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preface,
    Hello,
    Open {
        slot: usize,
        owner: u64,
        /// The last number seen on this connection (delivered or dropped).
        last_seq: u64,
    },
    Closed,
}

/// What `next` found, as offsets (the event borrows the buffer once `next` is done).
enum Found {
    Opened {
        version: u8,
        port: u16,
        session: u64,
        known: bool,
        name: (usize, usize),
    },
    Message {
        seq: u64,
        text: (usize, usize),
    },
}

/// One inbound stream connection. See the module documentation.
#[derive(Debug)]
pub struct Receiver {
    cfg: ReceiverConfig,
    host: IpAddr,
    buf: Vec<u8>,
    /// Start of the bytes not consumed yet.
    start: usize,
    /// Length of the frame behind the last event, consumed at the next call.
    advance: usize,
    state: State,
    /// Until the Hello: the accept's deadline. Then: when the frame at the head began.
    head_since: Instant,
    /// When the last frame was consumed (or the connection accepted).
    last_frame: Instant,
    hello_deadline: Instant,
    eof: bool,
    error: Option<StreamError>,
    /// The Welcome to write: version, floor, through.
    welcome: Option<(u8, u64, u64)>,
    refuse: Option<RefuseReason>,
    /// The last number delivered (what an Ack says).
    through: u64,
    unacked: u32,
    ack_at: Option<Instant>,
    duplicates: u64,
}

impl Receiver {
    /// A connection from `host` (the socket's, canonicalised) accepted at `now`, whose
    /// first bytes are (or will be) the preface.
    pub fn new(cfg: ReceiverConfig, host: IpAddr, now: Instant) -> Self {
        let mut cfg = cfg;
        cfg.max_buffer = cfg.max_buffer.max(HEADER_LEN + 8 + cfg.max_payload);
        Receiver {
            cfg,
            host,
            buf: Vec::new(),
            start: 0,
            advance: 0,
            state: State::Preface,
            head_since: now,
            last_frame: now,
            hello_deadline: now + cfg.read_timeout,
            eof: false,
            error: None,
            welcome: None,
            refuse: None,
            through: 0,
            unacked: 0,
            ack_at: None,
            duplicates: 0,
        }
    }

    // ----- inputs ------------------------------------------------------------------------

    /// How many more bytes [`Receiver::on_bytes`] takes now: read at most this much.
    pub fn read_room(&self) -> usize {
        if self.state == State::Closed {
            return 0;
        }
        let held = self.buf.len() - self.start - self.advance;
        self.cfg.max_buffer.saturating_sub(held)
    }

    /// Bytes read from the connection. More than [`Receiver::read_room`] is an error
    /// (the stream is closed).
    pub fn on_bytes(&mut self, data: &[u8], now: Instant) -> Result<(), StreamError> {
        if self.state == State::Closed || data.is_empty() {
            return Ok(());
        }
        if data.len() > self.read_room() {
            let e = StreamError::BufferFull {
                cap: self.cfg.max_buffer,
            };
            self.fail(e.clone());
            return Err(e);
        }
        self.start += std::mem::take(&mut self.advance);
        if self.start == self.buf.len() {
            // Nothing held: the first byte of a new frame starts its clock.
            self.buf.clear();
            self.start = 0;
            if matches!(self.state, State::Open { .. }) {
                self.head_since = now;
            }
        } else if self.start > 0 && self.buf.len() + data.len() > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The sender closed its side: what is buffered is still delivered; a frame cut in the
    /// middle is dropped (it was not acknowledged: its sender resends it).
    pub fn on_eof(&mut self) {
        self.eof = true;
    }

    /// Turns the stream away (too many streams from its source, the node leaving): the
    /// Refuse frame comes out of `poll_transmit`; then close the connection.
    pub fn refuse(&mut self, reason: RefuseReason) {
        if matches!(self.state, State::Preface | State::Hello) {
            self.refuse = Some(reason);
        }
        self.fail(StreamError::Refused(reason));
    }

    /// Fires what is due at `now`: the Hello's deadline, a frame in progress too long, the
    /// idle limit. The error comes out of the next `poll_event`. An ack that fell due comes
    /// out of the next `poll_transmit`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, e)) = self.deadline()
            && at <= now
        {
            self.fail(e);
        }
    }

    // ----- outputs -----------------------------------------------------------------------

    /// The next thing the stream said. `Err` once when the stream fails (then `Ok(None)`
    /// for ever): write what `poll_transmit` still gives, and close the connection.
    pub fn poll_event(
        &mut self,
        book: &mut SessionBook,
        now: Instant,
    ) -> Result<Option<Event<'_>>, StreamError> {
        self.start += std::mem::take(&mut self.advance);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let found = match self.next(book, now) {
            Ok(found) => found,
            Err(e) => {
                self.fail(e.clone());
                self.error = None;
                return Err(e);
            }
        };
        Ok(found.map(|f| match f {
            Found::Opened {
                version,
                port,
                session,
                known,
                name: (at, len),
            } => Event::Opened {
                version,
                port,
                session,
                known,
                name: std::str::from_utf8(&self.buf[at..at + len]).expect("checked in parse"),
            },
            Found::Message {
                seq,
                text: (at, len),
            } => Event::Message {
                seq,
                text: &self.buf[at..at + len],
            },
        }))
    }

    /// Appends what to write back: a Refuse, or the Welcome, then an Ack when one is due
    /// (`ack_every` messages, `ack_delay` passed, or the stream ending). Returns the bytes
    /// appended.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        if let Some(r) = self.refuse.take() {
            frame::encode_refuse(out, r);
        }
        if let Some((version, floor, through)) = self.welcome.take() {
            frame::encode_welcome(out, version, floor, through);
        }
        let due = self.unacked >= self.cfg.ack_every
            || self.ack_at.is_some_and(|t| t <= now)
            || self.eof
            || self.state == State::Closed;
        if self.unacked > 0 && due {
            frame::encode_ack(out, self.through);
            self.unacked = 0;
            self.ack_at = None;
        }
        out.len() - start
    }

    /// When [`Receiver::handle_timeout`] or [`Receiver::poll_transmit`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = self.ack_at.filter(|_| self.unacked > 0);
        match (ack, self.deadline().map(|(at, _)| at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`Receiver::poll_timeout`] for a caller that cannot write yet (what it took from
    /// `poll_transmit` before is not all written): only the read deadlines. An ack due
    /// meanwhile waits for the socket to take those bytes, not for a timer, which would
    /// fire again and again while it cannot be written.
    pub fn poll_read_timeout(&self) -> Option<Instant> {
        self.deadline().map(|(at, _)| at)
    }

    /// The connection is finished: close it once `poll_transmit` is written.
    pub fn is_done(&self) -> bool {
        self.state == State::Closed && self.error.is_none()
    }

    /// Resends dropped because they were delivered before.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Bytes held (unconsumed).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start - self.advance
    }

    // ----- internals ---------------------------------------------------------------------

    fn fail(&mut self, e: StreamError) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.error = Some(e);
        }
    }

    /// The next deadline and the error it brings, if any.
    fn deadline(&self) -> Option<(Instant, StreamError)> {
        match self.state {
            State::Preface | State::Hello => Some((
                self.hello_deadline,
                StreamError::TimedOut {
                    waiting_for: "hello",
                },
            )),
            State::Open { .. } => {
                let held = &self.buf[self.start + self.advance..];
                if held.is_empty() {
                    let at = self.last_frame + self.cfg.idle_timeout;
                    Some((at, StreamError::Idle))
                } else if frame::check(held, self.cfg.max_payload) == Err(FrameError::Incomplete) {
                    let at = self.head_since + self.cfg.read_timeout;
                    let e = StreamError::TimedOut {
                        waiting_for: "frame",
                    };
                    Some((at, e))
                } else {
                    None // a whole frame waits to be pulled (rate limit): not in progress
                }
            }
            State::Closed => None,
        }
    }

    /// Consumes `len` bytes of a frame and restarts the clock of the next one.
    fn consumed(&mut self, len: usize, now: Instant) {
        self.start += len;
        self.last_frame = now;
        self.head_since = now;
    }

    fn next(&mut self, book: &mut SessionBook, now: Instant) -> Result<Option<Found>, StreamError> {
        loop {
            let held = &self.buf[self.start..];
            match self.state {
                State::Closed => return Ok(None),
                State::Preface => match frame::is_preface(held) {
                    Some(true) => {
                        self.start += MAGIC.len();
                        self.state = State::Hello;
                    }
                    Some(false) => return Err(StreamError::NoPreface),
                    None if self.eof => return Err(StreamError::Cut),
                    None => return Ok(None),
                },
                State::Hello => {
                    let (hello, len) = match frame::decode(held, self.cfg.max_payload) {
                        Ok((Frame::Hello(h), len)) => (h, len),
                        Ok(_) => return Err(StreamError::Unexpected { what: "non-hello" }),
                        Err(FrameError::Incomplete) if self.eof => return Err(StreamError::Cut),
                        Err(FrameError::Incomplete) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    };
                    if hello.version > self.cfg.version {
                        self.refuse = Some(RefuseReason::Version);
                        let asked = hello.version;
                        let max = self.cfg.version;
                        return Err(StreamError::Version { asked, max });
                    }
                    let key = (self.host, hello.port);
                    if let Some((session, through)) = book.through(key)
                        && session == hello.session
                        && through >= hello.fresh_from
                    {
                        // It says it never wrote numbers we delivered: a bug or a forger.
                        let fresh_from = hello.fresh_from;
                        return Err(StreamError::BadResume {
                            fresh_from,
                            through,
                        });
                    }
                    let claim = book.open(key, hello.session, hello.fresh_from, now);
                    self.welcome = Some((hello.version, claim.floor, claim.through));
                    self.through = claim.through;
                    let name_at = self.start + HEADER_LEN + 19;
                    let found = Found::Opened {
                        version: hello.version,
                        port: hello.port,
                        session: hello.session,
                        known: claim.known,
                        name: (name_at, hello.name.len()),
                    };
                    self.state = State::Open {
                        slot: claim.slot,
                        owner: claim.owner,
                        last_seq: 0,
                    };
                    self.advance = len;
                    self.last_frame = now;
                    self.head_since = now;
                    return Ok(Some(found));
                }
                State::Open {
                    slot,
                    owner,
                    last_seq,
                } => {
                    let Some(record) = book.held(slot, owner) else {
                        return Err(StreamError::Superseded);
                    };
                    let (seq, len, text_len) = match frame::decode(held, self.cfg.max_payload) {
                        Ok((Frame::Data { seq, text }, len)) => (seq, len, text.len()),
                        Ok(_) => return Err(StreamError::Unexpected { what: "non-data" }),
                        Err(FrameError::Incomplete) if self.eof && !held.is_empty() => {
                            return Err(StreamError::Cut);
                        }
                        Err(FrameError::Incomplete) if self.eof => {
                            self.state = State::Closed;
                            return Ok(None);
                        }
                        Err(FrameError::Incomplete) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    };
                    if seq <= last_seq {
                        return Err(StreamError::SeqNotIncreasing {
                            last: last_seq,
                            seq,
                        });
                    }
                    self.state = State::Open {
                        slot,
                        owner,
                        last_seq: seq,
                    };
                    if seq <= record.through {
                        self.duplicates += 1;
                        self.consumed(len, now);
                        continue;
                    }
                    record.through = seq;
                    self.through = seq;
                    self.unacked += 1;
                    if self.ack_at.is_none() {
                        self.ack_at = Some(now + self.cfg.ack_delay);
                    }
                    let text = (self.start + HEADER_LEN + 8, text_len);
                    self.advance = len;
                    self.last_frame = now;
                    self.head_since = now;
                    return Ok(Some(Found::Message { seq, text }));
                }
            }
        }
    }
}
