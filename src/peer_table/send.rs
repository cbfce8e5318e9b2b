//! One send's life, from the user's request to its outcome: the per-peer queue, the stage
//! of the send in flight, its deadline, the bytes it carries, and what each piece of news
//! from the socket means.
//!
//! The reactor only drives the socket and reports progress: connected (with the local
//! address), written, closed by the peer, an error, or the peer talking back. Everything
//! else is decided here, in one place: the payload (encoded with the table's own name,
//! port and `--advertise`, so there is no second copy of them), the length check, what a
//! socket error means at each stage, and what happens at the deadline.
//!
//! ```text
//!  queued ──(its turn)──▶ Connecting ──connected──▶ Writing ──written──▶ AwaitingClose
//!    │      Effect::Transmit   │      Effect::Write    │                    │
//!    ▼                         ▼                       ▼                    ▼ closed: Delivered
//!  deadline: QueueTimedOut   deadline: ConnectTimedOut  deadline:          talked back / deadline:
//!                                                       WriteTimedOut      Unconfirmed
//!  any stage: an error ──▶ Failed(reason for that stage); quit cut short ──▶ Failed(Quit)
//! ```
//!
//! When the table ends a send the reactor still holds a socket for (its deadline, a
//! payload that cannot be encoded, the node leaving), it emits [`Effect::Abort`]. When the
//! reactor reports an end itself (closed, an error, talked back), it has already dropped the
//! socket. News about a send the table has already finished is ignored (logged at debug).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{Effect, PeerTable, SendId, Transmit};
use crate::event::{Delivery, Event, PeerView, Purpose, SendFailure, SendOutcome};
use crate::identity::{LOCAL_HOST, PeerKey};
use crate::peer_table::PeerStatus;
use crate::wire;

/// Where the send in flight to a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStage {
    /// [`Effect::Transmit`] emitted: the reactor is connecting.
    Connecting,
    /// Connected; [`Effect::Write`] emitted: the reactor is writing the payload.
    Writing,
    /// Written and half-closed: waiting for the peer to close.
    AwaitingClose,
}

/// What a pending send (queued or in flight) carries, for logs and tests: see
/// [`PeerTable::pending_send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSend<'a> {
    pub to: SocketAddr,
    pub text: &'a str,
    pub purpose: Purpose,
    pub deadline: Instant,
    /// `None` while it waits behind another send to the same peer.
    pub stage: Option<SendStage>,
}

/// A send asked for and not finished.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub id: SendId,
    pub key: PeerKey,
    pub dial: SocketAddr,
    /// The name the peer had when the send was asked for (it may leave meanwhile).
    pub name: Option<String>,
    pub text: String,
    pub purpose: Purpose,
    pub deadline: Instant,
    /// Our name when the send was asked for (`/nick` changes later sends only).
    pub sender: Arc<str>,
    /// Handed to an encrypted stream (reset if it falls back to legacy).
    pub encrypted: bool,
}

/// The send in flight to one peer, and where it is.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub out: Outgoing,
    pub stage: SendStage,
}

/// One peer's sends: at most one in flight, the rest waiting in order.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    pub in_flight: Option<InFlight>,
    pub queue: VecDeque<Outgoing>,
}

impl Outbox {
    pub fn all(&self) -> impl Iterator<Item = &Outgoing> {
        self.in_flight
            .iter()
            .map(|f| &f.out)
            .chain(self.queue.iter())
    }
}

impl PeerTable {
    // ----- asking for a send -----------------------------------------------------------

    /// Queues `text` for `key` at `dial`, or starts it at once if nothing is in flight to
    /// that peer. A peer not listed yet is listed (never refused for want of room).
    pub(super) fn enqueue(
        &mut self,
        now: Instant,
        key: PeerKey,
        dial: SocketAddr,
        text: String,
        p: Purpose,
    ) {
        if self.exited || (self.quit_deadline.is_some() && p != Purpose::Exit) {
            self.refuse("the node is quitting: message not sent".to_owned());
            return;
        }
        // The one length check: the encoder itself, with the longest header this
        // connection can carry, so what passes here is never refused once connected.
        let bound = self.header_ip_bound(dial);
        if let Err(e) = wire::check(bound, self.cfg.port, &self.self_name, &text) {
            self.refuse(format!("not sent to {dial}: {e}"));
            return;
        }
        // Sent to: no longer a stranger, so never dropped to make room.
        self.list_for_user(now, key, dial);
        let id = SendId(self.next_id);
        self.next_id += 1;
        let out = Outgoing {
            id,
            key,
            dial,
            name: self.peers.get(&key).and_then(|p| p.name.clone()),
            text,
            purpose: p,
            deadline: now + self.cfg.timeout,
            sender: self.self_name.clone(),
            encrypted: false,
        };
        self.sends.insert(id, key);
        self.pending_text += out.text.len();
        self.deadlines.insert(out.deadline, id);
        if self.cfg.fast.is_some() {
            if let Some(out) = self.push_to_stream(now, key, out) {
                self.outboxes.entry(key).or_default().queue.push_back(out);
                self.pump(now, key);
            }
            return;
        }
        let outbox = self.outboxes.entry(key).or_default();
        if outbox.in_flight.is_none() {
            self.start(out);
        } else {
            outbox.queue.push_back(out);
        }
    }

    /// The IP the header carries on a connection to `dial`, or, where that is known only
    /// once connected, the longest it can be. The header carries the connection's local
    /// address unless `--advertise` fixes it: to this machine that is the address dialled
    /// or 127.0.0.1 (for loopback); to another host, any address of the family.
    fn header_ip_bound(&self, dial: SocketAddr) -> IpAddr {
        if let Some(ip) = self.cfg.advertise {
            return ip;
        }
        match dial.ip().to_canonical() {
            IpAddr::V4(v4) if v4.is_loopback() && wire::ip_text_len(IpAddr::V4(v4)) > 9 => {
                IpAddr::V4(v4)
            }
            ip if ip.is_loopback() => LOCAL_HOST,
            ip if self.cfg.local.is_local(ip) => ip,
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        }
    }

    /// The header IP for a connection whose local address is `local`.
    fn header_ip(&self, local: SocketAddr) -> IpAddr {
        self.cfg.advertise.unwrap_or(local.ip().to_canonical())
    }

    fn start(&mut self, out: Outgoing) {
        self.effects.push_back(Effect::Transmit(Transmit {
            id: out.id,
            to: out.dial,
        }));
        let key = out.key;
        let stage = SendStage::Connecting;
        self.outboxes.entry(key).or_default().in_flight = Some(InFlight { out, stage });
    }

    // ----- progress reported by the reactor ----------------------------------------------

    /// The send in flight `id`, at `stage`; `None` (logged at debug) for a send that is
    /// finished, unknown, still queued, or at another stage (news out of order).
    fn in_flight_at(&mut self, id: SendId, stage: SendStage, news: &str) -> Option<&mut InFlight> {
        let found = self
            .sends
            .get(&id)
            .and_then(|key| self.outboxes.get_mut(key))
            .and_then(|o| o.in_flight.as_mut())
            .filter(|f| f.out.id == id);
        match found {
            Some(f) if f.stage == stage => Some(f),
            Some(f) => {
                log::debug!("send {id:?} {news} while {:?}: ignored", f.stage);
                None
            }
            None => {
                log::debug!("send {id:?} {news}, but it is not in flight: ignored");
                None
            }
        }
    }

    /// The reactor's connection for send `id` is established; `local` is its local address.
    /// The table encodes the message and asks for it to be written ([`Effect::Write`]).
    pub fn handle_send_connected(&mut self, now: Instant, id: SendId, local: SocketAddr) {
        let ip = self.header_ip(local);
        let port = self.cfg.port;
        let Some(f) = self.in_flight_at(id, SendStage::Connecting, "connected") else {
            return;
        };
        match wire::encode(ip, port, &f.out.sender, &f.out.text) {
            Ok(payload) => {
                f.stage = SendStage::Writing;
                let payload = Bytes::from(payload);
                self.effects.push_back(Effect::Write { id, payload });
            }
            Err(e) => {
                // Not expected: the check when it was asked for assumed the longest header.
                log::error!("send {id:?} cannot be encoded once connected from {local}: {e}");
                let outcome = SendOutcome::Failed(SendFailure::Io(e.to_string()));
                self.end_in_flight(now, id, outcome, true);
            }
        }
    }

    /// The whole payload of send `id` is written and the sending side shut down.
    pub fn handle_send_written(&mut self, _now: Instant, id: SendId) {
        if let Some(f) = self.in_flight_at(id, SendStage::Writing, "written") {
            f.stage = SendStage::AwaitingClose;
        }
    }

    /// The peer closed cleanly after reading send `id`: delivered. The reactor has
    /// dropped the socket.
    pub fn handle_send_closed(&mut self, now: Instant, id: SendId) {
        if self
            .in_flight_at(id, SendStage::AwaitingClose, "closed by the peer")
            .is_some()
        {
            self.end_in_flight(now, id, SendOutcome::Delivered, false);
        }
    }

    /// The peer kept writing back on send `id` instead of closing (more than the reactor
    /// keeps for the log): the message was written but not confirmed. The reactor has
    /// stopped reading and dropped the socket.
    pub fn handle_send_talked_back(&mut self, now: Instant, id: SendId) {
        if self
            .in_flight_at(id, SendStage::AwaitingClose, "talked back")
            .is_some()
        {
            self.end_in_flight(now, id, SendOutcome::Unconfirmed, false);
        }
    }

    /// Send `id`'s socket failed (or could not be opened); what it means depends on the
    /// stage. The reactor has dropped the socket.
    pub fn handle_send_error(&mut self, now: Instant, id: SendId, error: io::Error) {
        let Some(stage) = self.send_stage(id) else {
            log::debug!("send {id:?} failed ({error}), but it is not in flight: ignored");
            return;
        };
        let outcome = SendOutcome::Failed(failure(&error, stage));
        self.end_in_flight(now, id, outcome, false);
    }

    /// Send `id`, if it is queued or in flight.
    pub fn pending_send(&self, id: SendId) -> Option<PendingSend<'_>> {
        let outbox = self.outboxes.get(self.sends.get(&id)?)?;
        let out = outbox.all().find(|o| o.id == id)?;
        Some(PendingSend {
            to: out.dial,
            text: &out.text,
            purpose: out.purpose,
            deadline: out.deadline,
            stage: self.send_stage(id),
        })
    }

    /// The stage of send `id` if it is in flight; `None` if it is queued, finished or
    /// unknown.
    pub fn send_stage(&self, id: SendId) -> Option<SendStage> {
        let key = self.sends.get(&id)?;
        let f = self.outboxes.get(key)?.in_flight.as_ref()?;
        (f.out.id == id).then_some(f.stage)
    }

    // ----- ending sends ------------------------------------------------------------------

    /// Ends the send in flight `id` with `outcome`, then starts the next one to that peer.
    /// `abort`: the reactor still holds its socket and is told to drop it.
    fn end_in_flight(&mut self, now: Instant, id: SendId, outcome: SendOutcome, abort: bool) {
        let Some((key, out)) = self.take_in_flight(id) else {
            return;
        };
        if abort {
            self.effects.push_back(Effect::Abort(id));
        }
        self.finish(out, outcome);
        self.pump(now, key);
        self.process_left(now);
        self.check_done();
    }

    /// Takes send `id` out of flight, out of the index and out of the deadlines.
    fn take_in_flight(&mut self, id: SendId) -> Option<(PeerKey, Outgoing)> {
        let key = *self.sends.get(&id)?;
        let outbox = self.outboxes.get_mut(&key)?;
        let f = outbox.in_flight.take_if(|f| f.out.id == id)?;
        self.sends.remove(&id);
        self.deadlines.remove(f.out.deadline, id);
        Some((key, f.out))
    }

    /// Forgets `key`'s outbox once nothing is in flight or queued in it.
    pub(super) fn drop_outbox_if_idle(&mut self, key: PeerKey) {
        if self
            .outboxes
            .get(&key)
            .is_some_and(|o| o.in_flight.is_none() && o.queue.is_empty())
        {
            self.outboxes.remove(&key);
        }
    }

    /// Applies a finished send to the table and tells the user.
    pub(super) fn finish(&mut self, out: Outgoing, outcome: SendOutcome) {
        self.pending_text -= out.text.len();
        let name = self
            .peers
            .get(&out.key)
            .and_then(|p| p.name.clone())
            .or(out.name);
        let to = PeerView::new(name, out.dial);
        let ok = !matches!(outcome, SendOutcome::Failed(_));
        match out.purpose {
            Purpose::Connect if ok => {
                if let Some(p) = self.peers.get_mut(&out.key) {
                    p.status = PeerStatus::Connected;
                }
            }
            Purpose::Exit => {
                self.peers.remove(&out.key);
                if self.cfg.fast.is_some() {
                    self.left.push(out.key);
                }
            }
            _ => {}
        }
        let text = out.text;
        let encrypted = out.encrypted;
        let delivery = match outcome {
            SendOutcome::Acknowledged => Delivery::Receipt,
            SendOutcome::Delivered => Delivery::Closed,
            _ => Delivery::Unconfirmed,
        };
        let event = match outcome {
            SendOutcome::Acknowledged | SendOutcome::Delivered | SendOutcome::Unconfirmed => {
                Event::Sent {
                    to,
                    purpose: out.purpose,
                    text,
                    delivery,
                    encrypted,
                }
            }
            SendOutcome::Failed(reason) => Event::SendFailed {
                to,
                purpose: out.purpose,
                text,
                reason,
            },
        };
        self.show(event);
    }

    /// Starts the next queued send to `key`, failing those whose deadline has passed.
    pub(super) fn start_next(&mut self, now: Instant, key: PeerKey) {
        loop {
            let Some(outbox) = self.outboxes.get_mut(&key) else {
                return;
            };
            if outbox.in_flight.is_some() {
                return;
            }
            let Some(next) = outbox.queue.pop_front() else {
                self.outboxes.remove(&key);
                return;
            };
            // Due no earlier than a quit deadline that has passed: it fails because the
            // node quits (as in `fire_send_deadlines`).
            let quit_passed = self
                .quit_deadline
                .is_some_and(|d| d <= now && d <= next.deadline);
            let late = match () {
                _ if self.exited || quit_passed => Some(SendFailure::Quit),
                _ if next.deadline <= now => Some(SendFailure::QueueTimedOut),
                _ => None,
            };
            if let Some(reason) = late {
                self.deadlines.remove(next.deadline, next.id);
                self.sends.remove(&next.id);
                self.finish(next, SendOutcome::Failed(reason));
                continue;
            }
            self.start(next);
            return;
        }
    }

    /// Ends every send whose deadline has passed by `now`: one in flight with its stage's
    /// outcome, one queued as [`SendFailure::QueueTimedOut`]. A queued send due no earlier
    /// than `quit_due` (the `exit`s queued by `quit` share it) is left for
    /// [`PeerTable::abandon`]: it fails because the node quits.
    pub(super) fn fire_send_deadlines(&mut self, now: Instant, quit_due: Option<Instant>) {
        // Ending a send only removes entries or adds ones later than `now`, so walking on
        // from the last entry looked at visits each due one once.
        let mut after: Option<(Instant, SendId)> = None;
        loop {
            let next = match after {
                None => self.deadlines.first(),
                Some(k) => self.deadlines.first_after(k),
            };
            let Some((at, id)) = next else {
                return;
            };
            if at > now {
                return;
            }
            after = Some((at, id));
            if let Some(m) = self.streamed.remove(&id) {
                // Its sender keeps the same deadline and normally reports it first.
                self.sends.remove(&id);
                self.deadlines.remove(at, id);
                self.finish(m, SendOutcome::Unconfirmed);
            } else if let Some(stage) = self.send_stage(id) {
                self.end_in_flight(now, id, timed_out(stage), true);
            } else if quit_due.is_none_or(|d| at < d) {
                self.fail_queued(id, SendFailure::QueueTimedOut);
            }
        }
    }

    /// The node leaves now (its quit deadline, or a second signal): every send not
    /// finished fails because the node quit, in the order they were asked for, and
    /// nothing more starts. The reactor is told to drop the sockets of those in flight.
    pub fn abandon(&mut self) {
        self.exited = true;
        for (_, m) in self.abandon_streamed() {
            self.sends.remove(&m.id);
            self.deadlines.remove(m.deadline, m.id);
            self.finish(m, SendOutcome::Failed(SendFailure::Quit));
        }
        let mut open: Vec<SendId> = self.sends.keys().copied().collect();
        open.sort_unstable();
        // A peer's send in flight was asked for before those queued behind it: its lower
        // id comes first, and nothing starts after it (the node has left).
        for id in open {
            match self.take_in_flight(id) {
                Some((key, out)) => {
                    self.effects.push_back(Effect::Abort(id));
                    self.finish(out, SendOutcome::Failed(SendFailure::Quit));
                    self.drop_outbox_if_idle(key);
                }
                None => self.fail_queued(id, SendFailure::Quit),
            }
        }
    }

    fn fail_queued(&mut self, id: SendId, reason: SendFailure) {
        let Some(&key) = self.sends.get(&id) else {
            return;
        };
        let Some(outbox) = self.outboxes.get_mut(&key) else {
            return;
        };
        let Some(pos) = outbox.queue.iter().position(|m| m.id == id) else {
            return;
        };
        let Some(out) = outbox.queue.remove(pos) else {
            return;
        };
        self.drop_outbox_if_idle(key);
        self.sends.remove(&id);
        self.deadlines.remove(out.deadline, id);
        self.finish(out, SendOutcome::Failed(reason));
    }
}

/// What a socket error means at `stage`.
pub(super) fn failure(e: &io::Error, stage: SendStage) -> SendFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => SendFailure::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => SendFailure::Reset,
        // Once connected, "not connected" means the peer tore the connection down.
        io::ErrorKind::NotConnected if stage != SendStage::Connecting => SendFailure::Reset,
        io::ErrorKind::TimedOut if stage == SendStage::Connecting => SendFailure::ConnectTimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            SendFailure::Unreachable
        }
        _ => SendFailure::Io(e.to_string()),
    }
}

/// The outcome of a send whose deadline passes at `stage`.
pub(super) fn timed_out(stage: SendStage) -> SendOutcome {
    match stage {
        SendStage::Connecting => SendOutcome::Failed(SendFailure::ConnectTimedOut),
        SendStage::Writing => SendOutcome::Failed(SendFailure::WriteTimedOut),
        // Written: the peer has the message but never confirmed it by closing.
        SendStage::AwaitingClose => SendOutcome::Unconfirmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(kind: io::ErrorKind, stage: SendStage) -> SendFailure {
        failure(&io::Error::from(kind), stage)
    }

    #[test]
    fn socket_errors_map_to_what_the_user_is_told() {
        use SendStage::{AwaitingClose, Connecting, Writing};
        use io::ErrorKind as K;
        assert_eq!(
            reason(K::ConnectionRefused, Connecting),
            SendFailure::Refused
        );
        assert_eq!(
            reason(K::ConnectionReset, AwaitingClose),
            SendFailure::Reset
        );
        assert_eq!(reason(K::ConnectionAborted, Writing), SendFailure::Reset);
        assert_eq!(reason(K::BrokenPipe, Writing), SendFailure::Reset);
        assert_eq!(reason(K::NotConnected, Writing), SendFailure::Reset);
        assert_eq!(reason(K::NotConnected, AwaitingClose), SendFailure::Reset);
        assert_eq!(reason(K::NotConnected, Connecting).code(), "io");
        assert_eq!(
            reason(K::TimedOut, Connecting),
            SendFailure::ConnectTimedOut
        );
        assert_eq!(reason(K::TimedOut, AwaitingClose).code(), "io");
        for stage in [Connecting, Writing, AwaitingClose] {
            assert_eq!(reason(K::HostUnreachable, stage), SendFailure::Unreachable);
            assert_eq!(
                reason(K::NetworkUnreachable, stage),
                SendFailure::Unreachable
            );
        }
        // EHOSTUNREACH as the kernel reports it on a failed connect.
        let raw = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(failure(&raw, Connecting), SendFailure::Unreachable);
        // Anything else keeps the OS's words.
        let other = failure(&io::Error::from_raw_os_error(libc::EACCES), Connecting);
        assert_eq!(other.code(), "io");
        assert!(other.to_string().contains("ermission denied"), "{other}");
    }

    #[test]
    fn a_deadline_means_what_the_stage_it_finds() {
        use SendStage::{AwaitingClose, Connecting, Writing};
        let failed = SendOutcome::Failed;
        assert_eq!(timed_out(Connecting), failed(SendFailure::ConnectTimedOut));
        assert_eq!(timed_out(Writing), failed(SendFailure::WriteTimedOut));
        assert_eq!(timed_out(AwaitingClose), SendOutcome::Unconfirmed);
    }
}
