//! One outgoing fast-path session: everything this node sends one peer over streams.
//!
//! A [`Sender`] outlives its connections. Messages are pushed with a deadline into a
//! bounded queue; while a stream is up they are numbered, framed into the caller's buffer
//! ([`Sender::poll_transmit`]) and kept until acknowledged. When the connection breaks,
//! the unacknowledged ones go back to the front of the queue with their numbers, *in
//! doubt*: the next stream's Hello says where the sender's never-written numbers begin
//! (`fresh_from`) and the Welcome answers how far the receiver got (`through`) and below
//! which number its record cannot account (`floor`: it restarted or forgot). So each is
//! known delivered, resent (the receiver drops duplicates by number), or, at or below the
//! floor, reported [`Outcome::Unconfirmed`] and never resent: a restarted peer is never
//! shown an old message as new.
//!
//! ```text
//!            handle_connected          Welcome            idle / break / error
//!   Down ───────────────────▶ Greeting ──────▶ Up ─────────────────────────▶ Down
//!    ▲     (poll_transmit: preface+Hello)  (poll_transmit: Data…; acks)        │
//!    └──────────── break, Refuse, no Welcome in time (poll_close) ◀────────────┘
//! ```
//!
//! Outcomes, each message exactly once, in the order pushed within each kind:
//! * [`Outcome::Delivered`]: acknowledged (a receipt);
//! * [`Outcome::Unconfirmed`]: written on a stream but not acknowledged by its deadline,
//!   or in doubt toward a receiver that lost its record: it may or may not have arrived;
//! * [`Outcome::Failed`]: never written by its deadline: it did not arrive.
//!
//! Deadlines are taken in push order: a message pushed with an earlier deadline than the
//! one before it gets that one's (the peer table gives each message request time plus one
//! fixed timeout, so this never happens there). That keeps the earliest deadline at the
//! front of the queue, found in O(1).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::StreamError;
use super::frame::{self, Frame, FrameError, Hello, MAGIC, MAX_PAYLOAD};

/// A sender's limits and identity.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// This process's session: random, non-zero, the same for every peer during one run.
    pub session: u64,
    /// The version to speak (the lower of ours and the peer's proof).
    pub version: u8,
    /// Our listening port and name, claimed in the Hello.
    pub port: u16,
    pub name: String,
    /// Messages queued or unacknowledged, at most.
    pub max_queue: usize,
    /// Bytes of text queued or unacknowledged, at most.
    pub max_queue_bytes: usize,
    /// Messages written and not yet acknowledged, at most (the in-flight window).
    pub window: usize,
    /// Bytes written and not yet acknowledged, at most.
    pub window_bytes: usize,
    /// Largest text of one message.
    pub max_payload: usize,
    /// From the connection to the Welcome, at most: otherwise the attempt failed.
    pub welcome_timeout: Duration,
    /// An up stream with nothing to send or acknowledge is closed after this long.
    pub idle_close: Duration,
}

impl SenderConfig {
    /// The defaults of PROTOCOL.md for a node with this session, port and name.
    pub fn new(session: u64, port: u16, name: impl Into<String>) -> Self {
        SenderConfig {
            session,
            version: frame::VERSION,
            port,
            name: name.into(),
            max_queue: 65_536,
            max_queue_bytes: 16 << 20,
            window: 16_384,
            window_bytes: 4 << 20,
            max_payload: MAX_PAYLOAD,
            welcome_timeout: Duration::from_secs(5),
            idle_close: Duration::from_secs(10),
        }
    }
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `messages` messages / `bytes` bytes, its limit: try again once
    /// outcomes have come out (the caller stops reading its input meanwhile).
    QueueFull { messages: usize, bytes: usize },
    /// The text is longer than the largest message.
    TooLarge { len: usize, max: usize },
    /// An empty text is not a message.
    Empty,
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::QueueFull { messages, bytes } => write!(
                f,
                "send queue full ({messages} messages, {bytes} bytes): wait for deliveries"
            ),
            PushError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes; at most {max} on a stream")
            }
            PushError::Empty => f.write_str("message is empty"),
        }
    }
}

impl std::error::Error for PushError {}

/// Why a message did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Its deadline passed before it could be written on a stream.
    TimedOut,
}

/// What became of messages, by the caller's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<Id> {
    /// Acknowledged by the receiver, in the order pushed.
    Delivered(Vec<Id>),
    /// Written, but no receipt: they may or may not have arrived.
    Unconfirmed(Vec<Id>),
    /// Never written: they did not arrive.
    Failed(Vec<Id>, Failure),
}

/// Why the caller should close the stream connection (the sender is already Down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// Everything is acknowledged and nothing was sent for `idle_close`: a clean end.
    Idle,
    /// The stream failed: refused, no Welcome in time, or the receiver broke the protocol.
    /// Before a Welcome this is a failed attempt: forget the proof.
    Failed(StreamError),
}

/// A message handed back by [`Sender::fall_back`], for the legacy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent<Id> {
    pub id: Id,
    pub text: Bytes,
    pub deadline: Instant,
}

#[derive(Debug, Clone)]
struct Pending<Id> {
    id: Id,
    text: Bytes,
    deadline: Instant,
    /// Its number once written on some stream; 0 before.
    seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No stream connection.
    Down,
    /// Connected; the Hello is written (or about to be); waiting for the Welcome.
    Greeting { hello_sent: bool, deadline: Instant },
    /// Welcomed: data flows. `quiet_since`: when it last had nothing pending.
    Up { quiet_since: Instant },
}

/// One outgoing session. See the module documentation.
#[derive(Debug)]
pub struct Sender<Id> {
    cfg: SenderConfig,
    link: Link,
    /// Not written on the current connection: in doubt first (`seq != 0`, from a broken
    /// one), then fresh. Push order.
    unsent: VecDeque<Pending<Id>>,
    /// Written on the current connection, not acknowledged; increasing `seq`.
    in_flight: VecDeque<Pending<Id>>,
    in_flight_bytes: usize,
    /// Text bytes in `unsent` and `in_flight`.
    queued_bytes: usize,
    /// The number the next fresh message gets.
    next_seq: u64,
    last_deadline: Option<Instant>,
    outcomes: VecDeque<Outcome<Id>>,
    close: Option<Close>,
    /// Bytes from the receiver not yet a whole frame (never more than one small frame).
    rx: Vec<u8>,
}

/// Frames a sender accepts are at most this long (a Welcome); anything longer is refused.
const RX_MAX_PAYLOAD: usize = 0;

impl<Id: Copy> Sender<Id> {
    pub fn new(cfg: SenderConfig) -> Self {
        Sender {
            cfg,
            link: Link::Down,
            unsent: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            queued_bytes: 0,
            next_seq: 1,
            last_deadline: None,
            outcomes: VecDeque::new(),
            close: None,
            rx: Vec::new(),
        }
    }

    // ----- inputs ------------------------------------------------------------------------

    /// The name the next Hello claims (`/nick`). A stream already open keeps the one its
    /// Hello said: the protocol has no second Hello. The caller checked it with
    /// [`frame::valid_name`].
    pub fn set_name(&mut self, name: &str) {
        debug_assert!(frame::valid_name(name));
        self.cfg.name = name.to_owned();
    }

    /// Queues `text` (a legacy TEXT) to be delivered by `deadline`.
    pub fn push(&mut self, id: Id, text: Bytes, deadline: Instant) -> Result<(), PushError> {
        if text.is_empty() {
            return Err(PushError::Empty);
        }
        if text.len() > self.cfg.max_payload {
            let max = self.cfg.max_payload;
            return Err(PushError::TooLarge {
                len: text.len(),
                max,
            });
        }
        let messages = self.pending();
        if messages >= self.cfg.max_queue
            || self.queued_bytes + text.len() > self.cfg.max_queue_bytes
        {
            let bytes = self.queued_bytes;
            return Err(PushError::QueueFull { messages, bytes });
        }
        let deadline = self.last_deadline.map_or(deadline, |d| d.max(deadline));
        self.last_deadline = Some(deadline);
        self.queued_bytes += text.len();
        let seq = 0;
        self.unsent.push_back(Pending {
            id,
            text,
            deadline,
            seq,
        });
        Ok(())
    }

    /// A new stream connection to the peer is open (made only on a fresh proof: see
    /// [`super::proof`]). The preface and Hello come out of the next `poll_transmit`.
    pub fn handle_connected(&mut self, now: Instant) {
        self.handle_break(now);
        self.close = None;
        let deadline = now + self.cfg.welcome_timeout;
        self.link = Link::Greeting {
            hello_sent: false,
            deadline,
        };
    }

    /// The stream connection ended (reset, closed by the peer, or closed by the caller).
    /// Unacknowledged messages go back to the queue, in doubt. Harmless when Down.
    pub fn handle_break(&mut self, _now: Instant) {
        self.requeue();
    }

    /// Bytes read from the stream connection (Welcome, Acks, Refuse). On an error the
    /// sender is already Down and [`Sender::poll_close`] says why: close the connection.
    pub fn on_bytes(&mut self, data: &[u8], now: Instant) -> Result<(), StreamError> {
        if self.link == Link::Down {
            return Ok(()); // bytes of a connection already given up
        }
        self.rx.extend_from_slice(data);
        let mut at = 0;
        let result = loop {
            let (f, len) = match frame::decode(&self.rx[at..], RX_MAX_PAYLOAD) {
                Ok(found) => found,
                Err(FrameError::Incomplete) => break Ok(()),
                Err(e) => break Err(e.into()),
            };
            at += len;
            let step = match f {
                Frame::Welcome {
                    version,
                    floor,
                    through,
                } => self.handle_welcome(version, floor, through, now),
                Frame::Ack { through } => self.ack(through, now),
                Frame::Refuse(r) => Err(StreamError::Refused(r)),
                Frame::Hello(_) => Err(StreamError::Unexpected { what: "hello" }),
                Frame::Data { .. } => Err(StreamError::Unexpected { what: "data" }),
            };
            if let Err(e) = step {
                break Err(e);
            }
        };
        match result {
            Ok(()) => {
                self.rx.drain(..at);
                Ok(())
            }
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
        }
    }

    /// The receiver has delivered every message up to `through` (an Ack frame; `on_bytes`
    /// calls this). Delivered messages come out as one [`Outcome::Delivered`].
    pub fn handle_ack(&mut self, through: u64, now: Instant) -> Result<(), StreamError> {
        self.ack(through, now).inspect_err(|e| self.fail(e.clone()))
    }

    /// Fires what is due at `now`: deadlines of messages, the Welcome's, the idle close.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Link::Greeting { deadline, .. } = self.link
            && deadline <= now
        {
            self.fail(StreamError::TimedOut {
                waiting_for: "welcome",
            });
        }
        self.expire(now);
        if let Link::Up { quiet_since } = self.link
            && self.pending() == 0
            && quiet_since + self.cfg.idle_close <= now
        {
            self.link = Link::Down;
            self.rx.clear();
            self.close = Some(Close::Idle);
        }
    }

    /// Gives up on streams to this peer (the proof is forgotten): messages in doubt are
    /// reported [`Outcome::Unconfirmed`] (they may have arrived: resending them by legacy
    /// could show them twice), the others are handed back, in order, for the legacy path.
    pub fn fall_back(&mut self) -> Vec<Unsent<Id>> {
        self.requeue();
        let mut doubt = Vec::new();
        let mut back = Vec::new();
        for p in self.unsent.drain(..) {
            if p.seq != 0 {
                doubt.push(p.id);
            } else {
                back.push(Unsent {
                    id: p.id,
                    text: p.text,
                    deadline: p.deadline,
                });
            }
        }
        self.queued_bytes = 0;
        if !doubt.is_empty() {
            self.outcomes.push_back(Outcome::Unconfirmed(doubt));
        }
        back
    }

    // ----- outputs -----------------------------------------------------------------------

    /// Appends what to write on the stream connection to `out`: the preface and Hello
    /// once connected, then, once welcomed, Data frames while the window has room, until
    /// about `limit` bytes were appended. Returns the number of Data frames appended.
    /// Call when the socket can take more; what is appended counts as written.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>, limit: usize) -> usize {
        match self.link {
            Link::Down => 0,
            Link::Greeting {
                hello_sent: false,
                deadline,
            } => {
                out.extend_from_slice(&MAGIC);
                let hello = Hello {
                    version: self.cfg.version,
                    port: self.cfg.port,
                    session: self.cfg.session,
                    fresh_from: self.next_seq,
                    name: &self.cfg.name,
                };
                frame::encode_hello(out, &hello);
                self.link = Link::Greeting {
                    hello_sent: true,
                    deadline,
                };
                0
            }
            Link::Greeting { .. } => 0,
            Link::Up { .. } => self.transmit_data(now, out, limit),
        }
    }

    fn transmit_data(&mut self, _now: Instant, out: &mut Vec<u8>, limit: usize) -> usize {
        let start = out.len();
        let mut n = 0;
        while out.len() - start < limit
            && self.in_flight.len() < self.cfg.window
            && self.in_flight_bytes < self.cfg.window_bytes
        {
            let Some(mut p) = self.unsent.pop_front() else {
                break;
            };
            if p.seq == 0 {
                p.seq = self.next_seq;
                self.next_seq += 1;
            }
            frame::encode_data(out, p.seq, &p.text);
            self.in_flight_bytes += p.text.len();
            self.in_flight.push_back(p);
            n += 1;
        }
        n
    }

    /// The next outcome, if any. Call until `None` after every input.
    pub fn poll_outcome(&mut self) -> Option<Outcome<Id>> {
        self.outcomes.pop_front()
    }

    /// Whether (and why) the caller should close the stream connection now.
    pub fn poll_close(&mut self) -> Option<Close> {
        self.close.take()
    }

    /// When [`Sender::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let first = |q: &VecDeque<Pending<Id>>| q.front().map(|p| p.deadline);
        let msg = match (first(&self.in_flight), first(&self.unsent)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let link = match self.link {
            Link::Greeting { deadline, .. } => Some(deadline),
            Link::Up { quiet_since } if self.pending() == 0 => {
                Some(quiet_since + self.cfg.idle_close)
            }
            _ => None,
        };
        match (msg, link) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- state -------------------------------------------------------------------------

    /// Messages queued or unacknowledged.
    pub fn pending(&self) -> usize {
        self.unsent.len() + self.in_flight.len()
    }

    /// Whether a message of `len` bytes would be queued now (the caller pauses its input
    /// while not).
    pub fn has_room(&self, len: usize) -> bool {
        self.pending() < self.cfg.max_queue && self.queued_bytes + len <= self.cfg.max_queue_bytes
    }

    /// Messages wait and no stream connection is open: open one (on a fresh proof) or
    /// [`Sender::fall_back`].
    pub fn wants_connection(&self) -> bool {
        self.link == Link::Down && !self.unsent.is_empty()
    }

    /// A stream is welcomed and carrying data.
    pub fn is_up(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// A stream connection is open (greeting or up).
    pub fn is_connected(&self) -> bool {
        self.link != Link::Down
    }

    // ----- internals ---------------------------------------------------------------------

    fn handle_welcome(
        &mut self,
        version: u8,
        floor: u64,
        through: u64,
        now: Instant,
    ) -> Result<(), StreamError> {
        if !matches!(
            self.link,
            Link::Greeting {
                hello_sent: true,
                ..
            }
        ) {
            return Err(StreamError::Unexpected { what: "welcome" });
        }
        if version != self.cfg.version {
            return Err(StreamError::Unexpected {
                what: "welcome of another version",
            });
        }
        let sent = self.next_seq - 1;
        if through > sent || floor > through {
            return Err(StreamError::AckBeyondSent { through, sent });
        }
        // The messages in doubt are the front of `unsent`, numbered in order: those at or
        // below the floor the receiver cannot account for, then those it delivered.
        let mut doubt = Vec::new();
        let mut done = Vec::new();
        while let Some(p) = self.unsent.front() {
            if p.seq == 0 || p.seq > through {
                break;
            }
            let p = self.unsent.pop_front().expect("front exists");
            self.queued_bytes -= p.text.len();
            if p.seq <= floor {
                doubt.push(p.id);
            } else {
                done.push(p.id);
            }
        }
        if !doubt.is_empty() {
            self.outcomes.push_back(Outcome::Unconfirmed(doubt));
        }
        if !done.is_empty() {
            self.outcomes.push_back(Outcome::Delivered(done));
        }
        self.link = Link::Up { quiet_since: now };
        Ok(())
    }

    fn ack(&mut self, through: u64, now: Instant) -> Result<(), StreamError> {
        if !self.is_up() {
            return Err(StreamError::Unexpected { what: "ack" });
        }
        let sent = self.next_seq - 1;
        if through > sent {
            return Err(StreamError::AckBeyondSent { through, sent });
        }
        let done = self.take_in_flight_while(|p| p.seq <= through);
        if !done.is_empty() {
            self.outcomes.push_back(Outcome::Delivered(done));
        }
        if self.pending() == 0 {
            self.link = Link::Up { quiet_since: now };
        }
        Ok(())
    }

    /// Reports every message whose deadline has passed: written ones unconfirmed, the
    /// others failed. In push order, so only the fronts need looking at.
    fn expire(&mut self, now: Instant) {
        let mut unconfirmed = self.take_in_flight_while(|p| p.deadline <= now);
        let mut failed = Vec::new();
        while self.unsent.front().is_some_and(|p| p.deadline <= now) {
            let p = self.unsent.pop_front().expect("front exists");
            self.queued_bytes -= p.text.len();
            if p.seq != 0 {
                unconfirmed.push(p.id);
            } else {
                failed.push(p.id);
            }
        }
        if !unconfirmed.is_empty() {
            self.outcomes.push_back(Outcome::Unconfirmed(unconfirmed));
        }
        if !failed.is_empty() {
            self.outcomes
                .push_back(Outcome::Failed(failed, Failure::TimedOut));
        }
    }

    /// Takes messages off the front of the in-flight window while `settled` holds.
    fn take_in_flight_while(&mut self, settled: impl Fn(&Pending<Id>) -> bool) -> Vec<Id> {
        let mut ids = Vec::new();
        while self.in_flight.front().is_some_and(&settled) {
            let p = self.in_flight.pop_front().expect("front exists");
            self.in_flight_bytes -= p.text.len();
            self.queued_bytes -= p.text.len();
            ids.push(p.id);
        }
        ids
    }

    /// The connection is gone: what it carried unacknowledged is in doubt, first in line.
    fn requeue(&mut self) {
        while let Some(p) = self.in_flight.pop_back() {
            self.unsent.push_front(p);
        }
        self.in_flight_bytes = 0;
        self.link = Link::Down;
        self.rx.clear();
    }

    fn fail(&mut self, e: StreamError) {
        self.requeue();
        self.close = Some(Close::Failed(e));
    }
}
