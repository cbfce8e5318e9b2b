//! The fast path between p2pchat nodes (PROTOCOL.md, "Fast path (p2pchat extension)"):
//! one persistent, framed, pipelined stream per peer, with cumulative acknowledgements,
//! used only toward a peer that has just *proven* it speaks it. Pure and sans-IO, like the
//! peer table: no sockets, no clock, no printing.
//!
//! * [`proof`]: what a node knows about a peer's listener (unknown, speaks version N,
//!   legacy), the empty-connection probe that asks, and when that knowledge is forgotten.
//! * [`frame`]: the bytes on a stream (preface, Hello, Data, Welcome, Ack, Refuse), decoded
//!   in two steps (`check` then `parse`) with typed errors.
//! * [`sender`]: one outgoing session to one peer: the bounded queue, sequence numbers,
//!   the in-flight window, resend after a break, deadlines, outcomes.
//! * [`receiver`]: one incoming stream connection: the bounded buffer, the hello, dedup by
//!   (session, seq) against the node's [`receiver::SessionBook`], ack scheduling.
//! * [`pace`]: messages per second per source host on incoming streams, paced (not
//!   dropped) by a token bucket per IP.
//!
//! # Run-loop contract
//!
//! Every type here follows the same shape as [`crate::peer_table::PeerTable`] and
//! [`crate::assembler::Assembler`]:
//!
//! * **Inputs** are `handle_*` / `on_*` methods. Each takes `now` when time matters; the
//!   caller reads the clock once per turn of its loop and passes the same instant to
//!   everything it feeds that turn. Nothing here calls `Instant::now()`.
//! * **Outputs** are pulled. After any input, call the `poll_*` methods until they return
//!   nothing: `poll_transmit(now, &mut buf)` appends the bytes to write (frames batched
//!   into the caller's buffer, so one `write` carries many), `poll_event` / `poll_outcome`
//!   return what happened, in order.
//! * **Time**: `poll_timeout()` is the earliest instant at which `handle_timeout(now)` has
//!   work; call it once that instant has passed (calling it early or twice is harmless).
//! * **Sockets** stay with the caller, who reports what they did: a stream connection
//!   opened (`Sender::handle_connected`), bytes read (`on_bytes`), the connection ended
//!   (`Sender::handle_break`, `Receiver::on_eof`). When an output asks for a connection to
//!   be closed, the state machine has already forgotten it.
//!
//! A turn of the reactor, for one peer's sender and one inbound stream:
//!
//! ```text
//! now = clock()
//! for each readable stream socket: read → receiver.on_bytes(data, now) / sender.on_bytes(..)
//! for each due deadline:           x.handle_timeout(now)
//! while let Some(ev) = receiver.poll_event(&mut book, now)? { ... hand to the peer table ... }
//! receiver.poll_transmit(now, &mut out); sender.poll_transmit(now, &mut out, limit)
//! while let Some(o) = sender.poll_outcome() { ... report delivered / failed ... }
//! sleep until the earliest poll_timeout() or socket event
//! ```

use std::fmt;

pub mod frame;
pub mod pace;
pub mod proof;
pub mod receiver;
pub mod sender;

pub use frame::FrameError;

#[cfg(test)]
mod tests;

/// Why a stream connection ends badly. Each side closes the connection on any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The bytes are not a frame, or not a frame allowed here.
    Frame(FrameError),
    /// The connection did not start with the preface.
    NoPreface,
    /// A frame the other side may not send at this point (`what` names it).
    Unexpected { what: &'static str },
    /// The hello asked for a version above the receiver's.
    Version { asked: u8, max: u8 },
    /// Data frames must carry increasing sequence numbers on one connection.
    SeqNotIncreasing { last: u64, seq: u64 },
    /// A Hello resuming a session says it never wrote messages already delivered in it.
    BadResume { fresh_from: u64, through: u64 },
    /// An ack or welcome for a message that was never sent.
    AckBeyondSent { through: u64, sent: u64 },
    /// More bytes than the receiver's buffer holds (the caller read past `read_room`).
    BufferFull { cap: usize },
    /// The hello, or a frame in progress, did not arrive within the read deadline.
    TimedOut { waiting_for: &'static str },
    /// Nothing arrived on an open stream for the idle limit.
    Idle,
    /// A newer stream of the same peer took over this one.
    Superseded,
    /// The connection ended in the middle of a frame.
    Cut,
    /// The receiver turned the stream away.
    Refused(frame::RefuseReason),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Frame(e) => e.fmt(f),
            StreamError::NoPreface => f.write_str("the connection did not open with the preface"),
            StreamError::Unexpected { what } => write!(f, "unexpected {what} frame"),
            StreamError::Version { asked, max } => {
                write!(f, "version {asked} asked, {max} at most spoken")
            }
            StreamError::SeqNotIncreasing { last, seq } => {
                write!(f, "message {seq} after message {last} on one stream")
            }
            StreamError::BadResume {
                fresh_from,
                through,
            } => write!(
                f,
                "hello resumes at {fresh_from}, but {through} was delivered in its session"
            ),
            StreamError::AckBeyondSent { through, sent } => {
                write!(f, "acknowledgement of {through}, only {sent} sent")
            }
            StreamError::BufferFull { cap } => write!(f, "more than {cap} bytes buffered"),
            StreamError::TimedOut { waiting_for } => {
                write!(f, "{waiting_for} did not arrive in time")
            }
            StreamError::Idle => f.write_str("the stream was idle too long"),
            StreamError::Superseded => f.write_str("a newer stream from the same peer took over"),
            StreamError::Cut => f.write_str("the connection ended inside a frame"),
            StreamError::Refused(r) => write!(f, "stream refused: {r}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<FrameError> for StreamError {
    fn from(e: FrameError) -> Self {
        StreamError::Frame(e)
    }
}
