//! The fast path in the peer table (PROTOCOL.md, "Fast path (p2pchat extension)"): per
//! peer, what is known of its listener ([`PeerProof`]) and the outgoing session
//! ([`Sender`]), and which path each of its messages takes.
//!
//! A peer's messages wait in its outbox as legacy ones do; [`PeerTable::pump`] moves them
//! along the route the proof gives:
//!
//! * **Legacy**: one connection per message, as today (a peer answered legacy, or its
//!   probe or stream attempt failed), and, when the proof wants it again, a probe beside
//!   it ([`Effect::Probe`]);
//! * **Stream**: once no legacy send is in flight (so the order typed holds), every queued
//!   message goes to the peer's [`Sender`]; a stream connection is opened on a fresh
//!   proof ([`Effect::OpenStream`]) and its bytes pulled with [`PeerTable::stream_transmit`];
//! * **Wait**: nothing is known of the peer yet (its first probe goes out, or is out), or
//!   a peer that had been proven is being probed again: hold, so no text goes in clear
//!   to a peer that may speak the fast path, and the order typed holds.
//!
//! The reactor reports the probe's answer, the stream's connection, its bytes and its end;
//! every decision (outcomes, fallback, forgetting) is made here, with `now` passed in.
//! Stream messages stay indexed in `sends` and `deadlines` like every other send, so
//! pending counts, slow sends and quitting see them.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::send::Outgoing;
use super::{Effect, PeerTable, SendId};
use crate::event::{SendFailure, SendOutcome, Speaks};
use crate::identity::PeerKey;
use crate::stream::frame;
use crate::stream::proof::{PeerProof, ProofConfig, Route, Verdict};
use crate::stream::sender::{Close, Outcome, PushError, Sender, SenderConfig};

/// The fast path's settings for a node (absent with `--legacy-only`).
#[derive(Debug, Clone)]
pub struct FastConfig {
    /// This run's first session: random, non-zero. Each stream sender made gets the next
    /// one, so a sender made again for a peer (after it left and came back) never
    /// reuses a session whose numbers the peer has delivered: its Hello would claim
    /// `fresh_from` 1 in a session already delivered past 1, and be refused.
    pub session: u64,
    pub proof: ProofConfig,
    /// Streams to peers that speak them are encrypted (not `--plaintext`).
    pub encrypt: bool,
}

impl FastConfig {
    pub fn new(session: u64) -> Self {
        FastConfig {
            session: session.max(1),
            proof: ProofConfig::default(),
            encrypt: true,
        }
    }
}

/// One probe or stream connection the table asked for: reports about an older one (closed
/// since) are told apart and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// One peer's fast-path state.
#[derive(Debug)]
pub(super) struct FastPeer {
    dial: SocketAddr,
    proof: PeerProof,
    sender: Option<Sender<SendId>>,
    /// The probe out, if any.
    probe: Option<LinkId>,
    /// The stream connection the reactor holds, if any.
    stream: Option<LinkId>,
    /// The current stream's connection is established.
    connected: bool,
    /// The current stream got its Welcome.
    welcomed: bool,
    /// [`Effect::StreamReady`] was emitted and not yet answered by `stream_transmit`.
    kicked: bool,
    /// The peer presented another key than the one on record: every send to it fails
    /// with `key_changed` until [`PeerTable::trust_key`].
    key_changed: bool,
}

impl FastPeer {
    fn new(dial: SocketAddr) -> Self {
        FastPeer {
            dial,
            proof: PeerProof::new(),
            sender: None,
            probe: None,
            stream: None,
            connected: false,
            welcomed: false,
            kicked: false,
            key_changed: false,
        }
    }

    fn pending(&self) -> usize {
        self.sender.as_ref().map_or(0, |s| s.pending())
    }
}

impl PeerTable {
    /// What `key` is known to speak (`/peers`).
    pub fn speaks(&self, key: &PeerKey) -> Speaks {
        match self.fast.get(key).map(|f| f.proof.verdict()) {
            Some(Verdict::Proven(v)) => Speaks::P2pchat(v),
            Some(Verdict::Legacy) => Speaks::Legacy,
            Some(Verdict::Unknown) | None => Speaks::Unknown,
        }
    }

    /// Moves `key`'s queued messages along their route (see the module documentation).
    pub(super) fn pump(&mut self, now: Instant, key: PeerKey) {
        let Some(fcfg) = self.cfg.fast.clone() else {
            return self.start_next(now, key);
        };
        if self.exited {
            return self.start_next(now, key);
        }
        let Some(dial) = self
            .outboxes
            .get(&key)
            .and_then(|o| o.all().next().map(|m| m.dial))
        else {
            // Nothing queued (an outbox whose last send just ended goes).
            self.drop_outbox_if_idle(key);
            // The stream may still want opening for what it holds.
            if let Some(fp) = self.fast.get(&key)
                && fp.pending() > 0
            {
                let dial = fp.dial;
                self.pump_stream(now, key, dial, &fcfg);
            }
            return;
        };
        let fp = self.fast.entry(key).or_insert_with(|| FastPeer::new(dial));
        fp.dial = dial;
        self.pump_stream(now, key, dial, &fcfg);
    }

    fn pump_stream(&mut self, now: Instant, key: PeerKey, dial: SocketAddr, fcfg: &FastConfig) {
        let busy = self
            .outboxes
            .get(&key)
            .is_some_and(|o| o.in_flight.is_some());
        let Some(fp) = self.fast.get_mut(&key) else {
            return;
        };
        if fp.key_changed {
            return self.fail_all_queued(key, SendFailure::KeyChanged);
        }
        let mut route = fp.proof.route(now);
        if route == Route::Legacy && fp.proof.asking(now) && frame::valid_name(&self.self_name) {
            // Nothing proven, and a probe is out or due (first contact, the retry after a
            // failure, a legacy verdict's recheck): what is typed waits for its answer
            // (at most its `probe_timeout`) rather than go by legacy in clear to a peer
            // that may well speak the fast path, encrypted.
            route = Route::Wait;
        }
        match route {
            Route::Stream(version) => {
                if busy {
                    return; // a legacy send is in flight: the stream takes what follows it
                }
                if fp.sender.is_none() {
                    if !frame::valid_name(&self.self_name) {
                        // Cannot be said in a Hello: this peer stays legacy for us.
                        fp.proof.handle_stream_failed(now, &fcfg.proof);
                        return self.start_next(now, key);
                    }
                    // The run's sessions in turn, 0 skipped (never two senders alike).
                    let session = loop {
                        let s = fcfg.session.wrapping_add(self.senders_made);
                        self.senders_made += 1;
                        if s != 0 {
                            break s;
                        }
                    };
                    let mut scfg = SenderConfig::new(session, self.cfg.port, &*self.self_name);
                    scfg.version = version.min(frame::VERSION);
                    // A stream attempt gives up no later than a probe does: with a short
                    // --timeout, what waited still has time to go by legacy.
                    scfg.welcome_timeout = scfg.welcome_timeout.min(fcfg.proof.probe_timeout);
                    fp.sender = Some(Sender::new(scfg));
                }
                let sender = fp.sender.as_mut().expect("made above");
                let encrypted = fcfg.encrypt && version >= 2;
                if let Some(outbox) = self.outboxes.get_mut(&key) {
                    while let Some(m) = outbox.queue.front() {
                        let text = Bytes::copy_from_slice(m.text.as_bytes());
                        match sender.push(m.id, text, m.deadline) {
                            Ok(()) => {
                                let mut m = outbox.queue.pop_front().expect("front exists");
                                m.encrypted = encrypted;
                                self.streamed.insert(m.id, m);
                            }
                            Err(PushError::QueueFull { .. }) => break,
                            Err(e) => {
                                // Not expected: texts are checked against the legacy 1 KiB.
                                log::error!("send {:?} not queued on the stream: {e}", m.id);
                                break;
                            }
                        }
                    }
                }
                self.drop_outbox_if_idle(key);
                self.drive_stream(now, key, dial, encrypted);
            }
            Route::Wait => {
                if fp.proof.wants_probe(now) {
                    self.start_probe(now, key, dial, fcfg);
                }
            }
            Route::Legacy => {
                if fp.pending() > 0 {
                    self.fall_back(now, key);
                }
                self.start_next(now, key);
                let wants = self
                    .fast
                    .get(&key)
                    .is_some_and(|f| f.proof.wants_probe(now));
                if wants && self.outboxes.contains_key(&key) && frame::valid_name(&self.self_name) {
                    self.start_probe(now, key, dial, fcfg);
                }
            }
        }
    }

    /// The common case of a chat in full flow: nothing queued ahead of `out` (no outbox)
    /// and `key`'s stream sender in place on a fresh proof or an open stream. `out` goes
    /// straight onto it, without [`PeerTable::pump`]'s round through the outbox. Gives
    /// `out` back (`Some`) in every other case, for the outbox.
    pub(super) fn push_to_stream(
        &mut self,
        now: Instant,
        key: PeerKey,
        mut out: Outgoing,
    ) -> Option<Outgoing> {
        let Some(encrypt) = self.cfg.fast.as_ref().map(|f| f.encrypt) else {
            return Some(out);
        };
        if self.outboxes.contains_key(&key) {
            return Some(out);
        }
        let Some(fp) = self.fast.get_mut(&key) else {
            return Some(out);
        };
        let Route::Stream(version) = fp.proof.route(now) else {
            return Some(out);
        };
        if fp.key_changed || fp.dial != out.dial {
            return Some(out);
        }
        let Some(sender) = fp.sender.as_mut() else {
            return Some(out);
        };
        let text = Bytes::copy_from_slice(out.text.as_bytes());
        if sender.push(out.id, text, out.deadline).is_err() {
            return Some(out);
        }
        let encrypted = encrypt && version >= 2;
        out.encrypted = encrypted;
        let dial = out.dial;
        self.streamed.insert(out.id, out);
        self.drive_stream(now, key, dial, encrypted);
        None
    }

    /// After messages went onto `key`'s sender: opens the stream if it wants a
    /// connection, or asks the reactor to write on the open one.
    fn drive_stream(&mut self, now: Instant, key: PeerKey, dial: SocketAddr, encrypted: bool) {
        let Some(fp) = self.fast.get_mut(&key) else {
            return;
        };
        let Some(sender) = fp.sender.as_mut() else {
            return;
        };
        if sender.wants_connection() && fp.stream.is_none() {
            let link = LinkId(self.next_link);
            self.next_link += 1;
            // The Welcome's deadline counts from here: a connection that never
            // completes fails the attempt as surely as a Welcome that never comes.
            sender.handle_connected(now);
            fp.stream = Some(link);
            fp.connected = false;
            fp.welcomed = false;
            fp.kicked = false;
            fp.proof.handle_stream_opening();
            log::info!("{key}: opening a stream (fast path)");
            self.effects.push_back(Effect::OpenStream {
                link,
                key,
                to: dial,
                encrypted,
            });
        } else if fp.connected && sender.is_connected() && !fp.kicked {
            fp.kicked = true;
            self.effects.push_back(Effect::StreamReady {
                link: fp.stream.expect("connected"),
                key,
            });
        }
    }

    fn start_probe(&mut self, now: Instant, key: PeerKey, dial: SocketAddr, fcfg: &FastConfig) {
        let Some(fp) = self.fast.get_mut(&key) else {
            return;
        };
        let link = LinkId(self.next_link);
        self.next_link += 1;
        fp.proof.probe_started(now, &fcfg.proof);
        fp.probe = Some(link);
        log::debug!("{key}: probing for the fast path");
        self.effects.push_back(Effect::Probe {
            link,
            key,
            to: dial,
        });
    }

    /// Fails every message queued for `key` (not one in flight on a legacy connection:
    /// that one was written already) with `why`.
    fn fail_all_queued(&mut self, key: PeerKey, why: SendFailure) {
        let Some(outbox) = self.outboxes.get_mut(&key) else {
            return;
        };
        let failed: Vec<Outgoing> = outbox.queue.drain(..).collect();
        for m in failed {
            self.sends.remove(&m.id);
            self.deadlines.remove(m.deadline, m.id);
            self.finish(m, SendOutcome::Failed(why.clone()));
        }
        self.drop_outbox_if_idle(key);
    }

    /// The stream `link` to `key` met another key than the one on record (the reactor
    /// closed it before writing anything of ours on it): every message to that peer
    /// fails with `key_changed`, now and until [`PeerTable::trust_key`]. No fallback to
    /// legacy: that would be the silent downgrade the key is there to prevent.
    pub fn handle_key_changed(&mut self, now: Instant, key: PeerKey, link: LinkId) {
        let Some(fp) = self.fast.get_mut(&key) else {
            return;
        };
        if fp.stream != Some(link) {
            return;
        }
        fp.stream = None;
        fp.key_changed = true;
        fp.connected = false;
        fp.welcomed = false;
        let mut sender = fp.sender.take();
        let held = sender.as_mut().map(Sender::fall_back).unwrap_or_default();
        fp.proof.handle_peer_left();
        // What an earlier stream left in doubt (written, never acknowledged) ends now, as
        // the sender reports it, not at its deadline after the sender is gone.
        while let Some(o) = sender.as_mut().and_then(Sender::poll_outcome) {
            self.end_streamed(o, SendFailure::KeyChanged);
        }
        self.end_streamed_ids(
            held.into_iter().map(|u| u.id),
            SendOutcome::Failed(SendFailure::KeyChanged),
        );
        self.fail_all_queued(key, SendFailure::KeyChanged);
        let _ = now;
        self.check_done();
    }

    /// `/trust`: the user accepted `key`'s new key; its messages go again (a new probe,
    /// a new stream). False when the peer was not refused for a changed key.
    pub fn trust_key(&mut self, now: Instant, key: PeerKey) -> bool {
        let was = self
            .fast
            .get_mut(&key)
            .is_some_and(|fp| std::mem::replace(&mut fp.key_changed, false));
        if was {
            self.pump(now, key);
        }
        was
    }

    /// Whether sends to `key` are refused for a changed key.
    pub fn is_key_changed(&self, key: &PeerKey) -> bool {
        self.fast.get(key).is_some_and(|f| f.key_changed)
    }

    /// Gives up on streams to `key` for now: messages in doubt end unconfirmed, the rest go
    /// back to the front of the legacy queue in order; the stream connection is closed.
    fn fall_back(&mut self, now: Instant, key: PeerKey) {
        let Some(fp) = self.fast.get_mut(&key) else {
            return;
        };
        let close = fp.stream.take();
        fp.connected = false;
        fp.welcomed = false;
        let back = fp
            .sender
            .as_mut()
            .map(|s| s.fall_back())
            .unwrap_or_default();
        if let Some(link) = close {
            self.effects.push_back(Effect::CloseStream { link, key });
        }
        let mut requeue = Vec::new();
        for u in back {
            if let Some(mut m) = self.streamed.remove(&u.id) {
                m.encrypted = false;
                requeue.push(m);
            }
        }
        if !requeue.is_empty() {
            log::info!(
                "{key}: {} messages go back to one connection each",
                requeue.len()
            );
            let outbox = self.outboxes.entry(key).or_default();
            for m in requeue.into_iter().rev() {
                outbox.queue.push_front(m);
            }
        }
        self.settle(now, key, false);
    }

    /// Ends the stream messages a sender's `outcome` names (`failed`: the reason for those
    /// it gave up on), each with its outcome shown.
    fn end_streamed(&mut self, outcome: Outcome<SendId>, failed: SendFailure) {
        let (ids, result) = match outcome {
            Outcome::Delivered(ids) => (ids, SendOutcome::Acknowledged),
            Outcome::Unconfirmed(ids) => (ids, SendOutcome::Unconfirmed),
            Outcome::Failed(ids, _) => (ids, SendOutcome::Failed(failed)),
        };
        self.end_streamed_ids(ids, result);
    }

    /// Ends the stream messages `ids` (those still pending) with `result`.
    fn end_streamed_ids(&mut self, ids: impl IntoIterator<Item = SendId>, result: SendOutcome) {
        for id in ids {
            // Gone already when the table's own deadline fired first.
            if let Some(m) = self.streamed.remove(&id) {
                self.sends.remove(&id);
                self.deadlines.remove(m.deadline, id);
                self.finish(m, result.clone());
            }
        }
    }

    /// Reports the sender's outcomes and acts on a close it asks for. `pump`: then move
    /// the peer's queue along.
    fn settle(&mut self, now: Instant, key: PeerKey, pump: bool) {
        // A message never written by its deadline failed at the stage the stream was in.
        let never_written = match self.fast.get(&key) {
            Some(f) if f.stream.is_some() && !f.connected => SendFailure::ConnectTimedOut,
            Some(f) if f.stream.is_some() => SendFailure::WriteTimedOut,
            _ => SendFailure::QueueTimedOut,
        };
        loop {
            let outcome = self
                .fast
                .get_mut(&key)
                .and_then(|f| f.sender.as_mut())
                .and_then(|s| s.poll_outcome());
            let Some(outcome) = outcome else { break };
            self.end_streamed(outcome, never_written.clone());
        }
        let fcfg = self.cfg.fast.clone();
        if let Some(fp) = self.fast.get_mut(&key) {
            let close = fp.sender.as_mut().and_then(|s| s.poll_close());
            match close {
                Some(Close::Idle) => {
                    log::debug!("{key}: stream idle: closed");
                    fp.proof.handle_stream_closed();
                    fp.connected = false;
                    if let Some(link) = fp.stream.take() {
                        self.effects.push_back(Effect::CloseStream { link, key });
                    }
                }
                Some(Close::Failed(e)) => {
                    fp.connected = false;
                    log::info!("{key}: stream failed ({e}): back to one connection per message");
                    if let Some(c) = &fcfg {
                        fp.proof.handle_stream_failed(now, &c.proof);
                    }
                    if let Some(link) = fp.stream.take() {
                        self.effects.push_back(Effect::CloseStream { link, key });
                    }
                }
                None => {}
            }
        }
        if pump {
            self.pump(now, key);
        }
        self.process_left(now);
        self.check_done();
    }

    /// `/nick`: the next Hello of every sender says `name` (one a Hello cannot carry
    /// leaves the old one there: the legacy path carries the new name meanwhile).
    pub(super) fn fast_rename(&mut self, name: &str) {
        if !frame::valid_name(name) {
            log::info!(
                "the name {name:?} cannot be said in a stream's Hello: streams keep the old one"
            );
            return;
        }
        for s in self.fast.values_mut().filter_map(|f| f.sender.as_mut()) {
            s.set_name(name);
        }
    }

    /// The peer left (its `exit`, or ours): forget what we knew; whatever its stream
    /// held falls back (in doubt: unconfirmed).
    pub(super) fn fast_peer_left(&mut self, now: Instant, key: PeerKey) {
        if !self.fast.contains_key(&key) {
            return;
        }
        self.fall_back(now, key);
        if let Some(fp) = self.fast.get_mut(&key) {
            fp.proof.handle_peer_left();
            fp.probe = None;
            if fp.pending() == 0 {
                self.fast.remove(&key);
            }
        }
        self.pump(now, key);
    }

    /// An encrypted stream came from `key`'s host claiming its port: if we took it for legacy, or
    /// are backing off after a failure, ask again with the next message (see
    /// [`PeerProof::handle_hint`]).
    pub fn handle_fast_hint(&mut self, key: PeerKey) {
        if let Some(fp) = self.fast.get_mut(&key) {
            fp.proof.handle_hint();
        }
    }

    /// Forgets the fast-path state of peers removed by a finished `exit` send.
    pub(super) fn process_left(&mut self, now: Instant) {
        if self.exited {
            self.left.clear();
            return;
        }
        while let Some(key) = self.left.pop() {
            self.fast_peer_left(now, key);
        }
    }

    // ----- reports from the reactor -------------------------------------------------------

    fn fast_peer(&mut self, key: PeerKey) -> Option<(&mut FastPeer, FastConfig)> {
        let cfg = self.cfg.fast.clone()?;
        Some((self.fast.get_mut(&key)?, cfg))
    }

    /// The probe `link` to `key` ended with the peer's close after `answer` (everything
    /// read, at most [`crate::stream::proof::MAX_REPLY`] + 1 bytes).
    pub fn handle_probe_answer(&mut self, now: Instant, key: PeerKey, link: LinkId, answer: &[u8]) {
        let Some((fp, cfg)) = self.fast_peer(key) else {
            return;
        };
        if fp.probe != Some(link) {
            return;
        }
        fp.probe = None;
        fp.proof.handle_probe_answer(answer, now, &cfg.proof);
        log::debug!(
            "{key}: probe answered {:?}: {:?}",
            String::from_utf8_lossy(answer),
            fp.proof.verdict()
        );
        self.pump(now, key);
    }

    /// The probe `link` to `key` got no answer (refused, reset, unreachable, its deadline).
    pub fn handle_probe_failed(&mut self, now: Instant, key: PeerKey, link: LinkId) {
        let Some((fp, cfg)) = self.fast_peer(key) else {
            return;
        };
        if fp.probe != Some(link) {
            return;
        }
        fp.probe = None;
        fp.proof.handle_probe_failed(now, &cfg.proof);
        log::debug!("{key}: probe failed");
        self.pump(now, key);
    }

    /// The stream connection `link` to `key` is established.
    pub fn handle_stream_connected(&mut self, now: Instant, key: PeerKey, link: LinkId) {
        let Some((fp, _)) = self.fast_peer(key) else {
            return;
        };
        if fp.stream != Some(link) {
            return;
        }
        let _ = now;
        fp.connected = true;
        fp.kicked = true;
        self.effects.push_back(Effect::StreamReady { link, key });
    }

    /// Bytes read from the stream connection `link` to `key` (Welcome, Acks, Refuse).
    pub fn handle_stream_bytes(&mut self, now: Instant, key: PeerKey, link: LinkId, data: &[u8]) {
        let Some((fp, _)) = self.fast_peer(key) else {
            return;
        };
        if fp.stream != Some(link) {
            return;
        }
        let Some(s) = fp.sender.as_mut() else {
            return;
        };
        let _ = s.on_bytes(data, now); // an error comes out of poll_close
        if s.is_up() && !fp.welcomed {
            fp.welcomed = true;
            log::debug!("{key}: stream welcomed");
        }
        if s.is_up() && !fp.kicked {
            fp.kicked = true;
            self.effects.push_back(Effect::StreamReady { link, key });
        }
        self.settle(now, key, true);
    }

    /// The stream connection `link` to `key` ended (closed by the peer, reset, failed to
    /// connect). The reactor has dropped it.
    pub fn handle_stream_broken(&mut self, now: Instant, key: PeerKey, link: LinkId, why: &str) {
        let Some((fp, cfg)) = self.fast_peer(key) else {
            return;
        };
        if fp.stream != Some(link) {
            return;
        }
        fp.stream = None;
        if let Some(s) = fp.sender.as_mut() {
            s.handle_break(now);
        }
        if fp.welcomed {
            log::info!("{key}: stream ended ({why}): a new probe first");
            fp.proof.handle_stream_closed();
        } else {
            log::info!("{key}: stream attempt failed ({why}): back to one connection per message");
            fp.proof.handle_stream_failed(now, &cfg.proof);
        }
        fp.welcomed = false;
        fp.connected = false;
        self.settle(now, key, true);
    }

    /// Appends what to write on the stream connection `link` to `key` (at most about
    /// `limit` bytes); 0 when nothing (then wait for the next [`Effect::StreamReady`]).
    pub fn stream_transmit(
        &mut self,
        now: Instant,
        key: PeerKey,
        link: LinkId,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> usize {
        let Some(fp) = self.fast.get_mut(&key) else {
            return 0;
        };
        if fp.stream != Some(link) {
            return 0;
        }
        fp.kicked = false;
        let before = out.len();
        if let Some(s) = fp.sender.as_mut() {
            s.poll_transmit(now, out, limit);
        }
        out.len() - before
    }

    /// Messages handed to streams and not settled yet.
    pub fn stream_backlog(&self) -> usize {
        self.streamed.len()
    }

    /// The fast path's next deadline: a probe's, a sender's.
    pub(super) fn fast_timeout(&self) -> Option<Instant> {
        self.fast
            .values()
            .flat_map(|f| {
                [
                    f.proof.poll_timeout(),
                    f.sender.as_ref().and_then(|s| s.poll_timeout()),
                ]
            })
            .flatten()
            .min()
    }

    /// Fires what is due on the fast path at `now`.
    pub(super) fn fast_handle_timeout(&mut self, now: Instant) {
        let Some(cfg) = self.cfg.fast.clone() else {
            return;
        };
        let due: Vec<PeerKey> = self
            .fast
            .iter()
            .filter(|(_, f)| {
                f.proof.poll_timeout().is_some_and(|t| t <= now)
                    || f.sender
                        .as_ref()
                        .and_then(|s| s.poll_timeout())
                        .is_some_and(|t| t <= now)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(fp) = self.fast.get_mut(&key) else {
                continue;
            };
            if fp.proof.poll_timeout().is_some_and(|t| t <= now) {
                fp.proof.handle_timeout(now, &cfg.proof);
                fp.probe = None;
            }
            if let Some(s) = fp.sender.as_mut() {
                s.handle_timeout(now);
            }
            self.settle(now, key, true);
        }
    }

    /// Ends every stream message: the node leaves.
    pub(super) fn abandon_streamed(&mut self) -> Vec<(PeerKey, Outgoing)> {
        let mut out: Vec<(PeerKey, Outgoing)> =
            self.streamed.drain().map(|(_, m)| (m.key, m)).collect();
        out.sort_by_key(|(_, m)| m.id);
        for (key, fp) in self.fast.iter_mut() {
            fp.sender = None;
            if let Some(link) = fp.stream.take() {
                self.effects
                    .push_back(Effect::CloseStream { link, key: *key });
            }
        }
        out
    }
}
