//! The peer table: the protocol state machine, with no IO and no clock.
//!
//! Inputs are method calls that take `now`; outputs are [`Effect`]s pulled with
//! [`PeerTable::poll_effect`] (show an event, transmit a message, exit), and the next
//! instant the table wants to be woken at, from [`PeerTable::poll_timeout`]. The reactor
//! calls [`PeerTable::handle_timeout`] once that instant has passed (extra calls are
//! harmless). PROTOCOL.md has the same rules as a table of states and transitions.
//!
//! Per peer, at most one send is in flight; later ones wait in order, so messages to one
//! peer arrive in the order they were typed, while sends to different peers all run at once.
//! Every send has a deadline of `timeout` from when it was asked for, whether it is waiting
//! or in flight (the reactor enforces the in-flight part).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::event::{Event, PeerRow, PeerView, Purpose, SendFailure, SendOutcome};
use crate::identity::{LocalAddrs, PeerKey};
use crate::rate_log::{RateLog, SourceLog};
use crate::wire::{self, Body, ClaimedHost, Message};

/// A peer's status, spelt as the original spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// We sent it `connect` and the send succeeded.
    Connected,
    /// Known, but we have not (successfully) sent it `connect`.
    YetToConnect,
}

impl PeerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Connected => "Connected",
            PeerStatus::YetToConnect => "Yet to connect",
        }
    }
}

/// One known peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Where to connect to reach it (the host as seen or typed, and its listening port).
    pub dial: SocketAddr,
    pub name: Option<String>,
    pub status: PeerStatus,
    /// The header/socket mismatch notice has been shown for this peer.
    mismatch_shown: bool,
}

/// Identifies one send, from [`Effect::Transmit`] to [`PeerTable::handle_send_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendId(pub u64);

/// Whom the user means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    /// 1-based index in the peer list.
    Index(usize),
    Name(String),
}

/// Which peers "connect to active peers" is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every peer not yet connected.
    All,
    /// 1-based indices in the peer list.
    Indices(Vec<usize>),
    /// 1-based index among the peers not yet connected (the menu's question).
    Candidate(usize),
}

/// A message for the reactor to deliver: connect to `to`, write the encoded message,
/// confirm, and report with [`PeerTable::handle_send_done`] before `deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub id: SendId,
    pub to: SocketAddr,
    pub text: Arc<str>,
    pub deadline: Instant,
}

/// What the table asks of the outside world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Show(Event),
    Transmit(Transmit),
    /// Quitting is complete (or its deadline passed): the node should leave.
    Exit,
}

/// Fixed facts the table needs.
#[derive(Debug, Clone)]
pub struct TableConfig {
    pub name: String,
    pub port: u16,
    /// The IP put in headers, if fixed; otherwise each connection's local address.
    pub advertise: Option<IpAddr>,
    pub timeout: Duration,
    pub local: LocalAddrs,
    /// Most peers listed; past it, messages from new peers are shown but not listed.
    pub max_peers: usize,
}

#[derive(Debug, Clone)]
struct Outgoing {
    id: SendId,
    key: PeerKey,
    dial: SocketAddr,
    /// The name the peer had when the send was asked for (it may leave meanwhile).
    name: Option<String>,
    text: Arc<str>,
    purpose: Purpose,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Outbox {
    in_flight: Option<Outgoing>,
    queue: VecDeque<Outgoing>,
}

/// The protocol state machine. See the module documentation.
#[derive(Debug)]
pub struct PeerTable {
    cfg: TableConfig,
    self_key: PeerKey,
    peers: IndexMap<PeerKey, Peer>,
    outboxes: HashMap<PeerKey, Outbox>,
    /// Which outbox each send (queued or in flight) is in.
    sends: HashMap<SendId, PeerKey>,
    /// Deadlines of *queued* sends; in-flight deadlines are the reactor's.
    queued_deadlines: BTreeSet<(Instant, SendId)>,
    effects: VecDeque<Effect>,
    next_id: u64,
    /// Set by [`PeerTable::quit`]: the instant by which the node leaves regardless.
    quit_deadline: Option<Instant>,
    exited: bool,
    /// Messages from peers left out of a full list, logged at most every few seconds.
    full_log: RateLog,
    /// Messages claiming this node's own port, per source.
    self_log: SourceLog,
}

impl PeerTable {
    pub fn new(cfg: TableConfig) -> Self {
        let self_key = cfg.local.key(crate::identity::LOCAL_HOST, cfg.port);
        PeerTable {
            cfg,
            self_key,
            peers: IndexMap::new(),
            outboxes: HashMap::new(),
            sends: HashMap::new(),
            queued_deadlines: BTreeSet::new(),
            effects: VecDeque::new(),
            next_id: 0,
            quit_deadline: None,
            exited: false,
            full_log: RateLog::new("messages from new peers shown but not listed (--max-peers)"),
            self_log: SourceLog::new(|ip| ip.to_string()),
        }
    }

    /// The known peers in list order (index 0 is `#1`).
    pub fn peers(&self) -> impl ExactSizeIterator<Item = (&PeerKey, &Peer)> {
        self.peers.iter()
    }

    pub fn peer(&self, key: &PeerKey) -> Option<&Peer> {
        self.peers.get(key)
    }

    /// Number of sends queued or in flight.
    pub fn pending_sends(&self) -> usize {
        self.sends.len()
    }

    pub fn is_quitting(&self) -> bool {
        self.quit_deadline.is_some()
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// The next effect to carry out, if any. Call until `None` after every input.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The earliest instant at which [`PeerTable::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.queued_deadlines.first().map(|(t, _)| *t),
            self.quit_deadline.filter(|_| !self.exited),
            self.full_log.due(),
            self.self_log.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn show(&mut self, event: Event) {
        self.effects.push_back(Effect::Show(event));
    }

    fn refuse(&mut self, why: String) {
        self.show(Event::Refused(why));
    }

    fn view(&self, key: &PeerKey) -> PeerView {
        match self.peers.get(key) {
            Some(p) => PeerView::new(p.name.clone(), p.dial),
            None => PeerView::new(None, key.0),
        }
    }

    // ----- inputs from the network -------------------------------------------------------

    /// A message arrived on a connection from `source` (the socket's peer IP).
    pub fn handle_message(&mut self, now: Instant, source: IpAddr, mut msg: Message) {
        let Some(port) = msg.port else {
            self.handle_unaddressed(source, msg);
            return;
        };
        let key = self.cfg.local.key(source, port);
        if key == self.self_key {
            let what = "messages claiming this node's own port ignored";
            self.self_log.hit(now, source, what, || {
                format!(
                    "ignored a message from {source} claiming this node's own port {port} ({:?})",
                    msg.body
                )
            });
            return;
        }
        if msg.body == Body::Exit {
            // A header naming another host is worth the notice even as the peer leaves.
            self.check_claim(&key, source, &msg.claimed_host);
            match self.peers.shift_remove(&key) {
                Some(peer) => {
                    let name = peer.name.or(msg.name);
                    self.show(Event::PeerLeft(PeerView::new(name, peer.dial)));
                }
                None => {
                    let claimed = match &msg.claimed_host {
                        ClaimedHost::Ip(ip) if *ip != source => format!(" (header claims {ip})"),
                        ClaimedHost::Name(n) => format!(" (header claims {n:?})"),
                        _ => String::new(),
                    };
                    log::info!(
                        "exit from {source}{claimed} for port {port}, which is not a known \
                         peer from that address: ignored"
                    )
                }
            }
            return;
        }
        let dial = SocketAddr::new(source, port);
        let full = self.is_full();
        match self.peers.get_mut(&key) {
            Some(peer) => {
                if msg.name.is_some() && peer.name != msg.name {
                    log::info!(
                        "peer {key} is now called {:?} (was {:?})",
                        msg.name,
                        peer.name
                    );
                    peer.name = msg.name.take();
                }
            }
            None if full => {
                // Full: shown, not listed (memory stays bounded whatever peers claim).
                let listed = self.peers.len();
                self.full_log.hit(now, || {
                    format!(
                        "peer list full ({listed} peers, --max-peers): {key} is shown but not \
                         listed, as are other new peers until one leaves"
                    )
                });
                let from = PeerView::new(msg.name.take(), dial);
                match msg.body {
                    Body::Connect => self.show(Event::ConnectedWithYou(from)),
                    Body::Text(text) => self.show(Event::Message { from, text }),
                    Body::Exit => unreachable!("handled above"),
                }
                return;
            }
            None => {
                let peer = Peer {
                    dial,
                    name: msg.name.take(),
                    status: PeerStatus::YetToConnect,
                    mismatch_shown: false,
                };
                self.peers.insert(key, peer);
                let view = self.view(&key);
                self.show(Event::NewPeer(view));
            }
        }
        self.check_claim(&key, source, &msg.claimed_host);
        let from = self.view(&key);
        match msg.body {
            Body::Connect => self.show(Event::ConnectedWithYou(from)),
            Body::Text(text) => self.show(Event::Message { from, text }),
            Body::Exit => unreachable!("handled above"),
        }
    }

    fn is_full(&self) -> bool {
        self.peers.len() >= self.cfg.max_peers
    }

    /// Shows, once per peer, that the header claims another host than the socket.
    fn check_claim(&mut self, key: &PeerKey, source: IpAddr, claim: &ClaimedHost) {
        let claimed = match claim {
            ClaimedHost::Ip(ip) if self.cfg.local.canonical(*ip) != key.0.ip() => ip.to_string(),
            ClaimedHost::Name(host) => host.clone(),
            _ => return,
        };
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.mismatch_shown {
            return;
        }
        peer.mismatch_shown = true;
        log::info!("peer at {source} claims to be {claimed}; using the socket's address");
        let view = self.view(key);
        self.show(Event::AddressMismatch {
            peer: view,
            claimed,
        });
    }

    /// `NAME: TEXT` carries no listening port: show it, but nobody can be added or removed.
    fn handle_unaddressed(&mut self, source: IpAddr, msg: Message) {
        let from = PeerView {
            name: msg.name,
            ip: source,
            port: None,
        };
        match msg.body {
            Body::Text(text) => self.show(Event::Message { from, text }),
            other => log::info!("{other:?} from {source} without a listening port: ignored"),
        }
    }

    // ----- inputs from the user ----------------------------------------------------------

    /// The user asks to send `text` to `target`.
    pub fn send(&mut self, now: Instant, target: Target, text: &str) {
        let Some((key, dial)) = self.resolve(&target) else {
            return;
        };
        let purpose = match wire::classify(text.as_bytes()) {
            Body::Exit => Purpose::Exit,
            Body::Connect => Purpose::Connect,
            Body::Text(_) => Purpose::Text,
        };
        self.enqueue(now, key, dial, text, purpose);
    }

    /// Finds the peer the user means, or explains why not.
    fn resolve(&mut self, target: &Target) -> Option<(PeerKey, SocketAddr)> {
        let found = match target {
            Target::Addr(addr) => {
                if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
                    self.refuse(format!("{addr} is not a peer address: use IP:PORT"));
                    return None;
                }
                let key = self.cfg.local.key(addr.ip(), addr.port());
                let dial = match self.peers.get(&key) {
                    Some(p) => p.dial,
                    None if self.is_full() => {
                        self.refuse(format!(
                            "the peer list is full ({} peers, --max-peers): {addr} cannot be \
                             added",
                            self.peers.len()
                        ));
                        return None;
                    }
                    None => *addr,
                };
                Some((key, dial))
            }
            Target::Index(i) => self.by_index(*i),
            Target::Name(name) => {
                let mut it = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.name.as_deref() == Some(name.as_str()));
                match (it.next(), it.next()) {
                    (Some((k, p)), None) => Some((*k, p.dial)),
                    (None, _) => {
                        self.refuse(format!(
                            "no peer is named {name:?}: see the peer list (/peers)"
                        ));
                        return None;
                    }
                    (Some(_), Some(_)) => {
                        self.refuse(format!(
                            "several peers are named {name:?}: use #N or IP:PORT"
                        ));
                        return None;
                    }
                }
            }
        };
        let Some((key, dial)) = found else {
            self.refuse(self.no_such_index(target));
            return None;
        };
        if key == self.self_key {
            self.refuse(format!("{dial} is this node itself"));
            return None;
        }
        Some((key, dial))
    }

    fn no_such_index(&self, target: &Target) -> String {
        match (target, self.peers.len()) {
            (_, 0) => "No active peers.".to_owned(),
            (Target::Index(i), n) => format!("no peer #{i}: the list has {n} (see /peers)"),
            _ => "no such peer".to_owned(),
        }
    }

    fn by_index(&self, index: usize) -> Option<(PeerKey, SocketAddr)> {
        let (k, p) = self.peers.get_index(index.checked_sub(1)?)?;
        Some((*k, p.dial))
    }

    fn enqueue(&mut self, now: Instant, key: PeerKey, dial: SocketAddr, text: &str, p: Purpose) {
        if self.exited || (self.quit_deadline.is_some() && p != Purpose::Exit) {
            self.refuse("the node is quitting: message not sent".to_owned());
            return;
        }
        // The header carries the connection's local address unless --advertise fixes it.
        // To this machine that is the address dialled (127.0.0.1 for loopback); to another
        // host it is not known before connecting, so assume the longest of the family.
        let ip_len = match self.cfg.advertise {
            Some(ip) => ip_text_len(ip),
            None if dial.ip().is_loopback() => ip_text_len(dial.ip()).max(9),
            None if self.cfg.local.is_local(dial.ip()) => ip_text_len(dial.ip()),
            None => wire::max_ip_text_len(dial.is_ipv6()),
        };
        if let Err(e) = wire::check_len(ip_len, self.cfg.port, &self.cfg.name, text) {
            self.refuse(format!("not sent to {dial}: {e}"));
            return;
        }
        if !self.peers.contains_key(&key) {
            let peer = Peer {
                dial,
                name: None,
                status: PeerStatus::YetToConnect,
                mismatch_shown: false,
            };
            self.peers.insert(key, peer);
        }
        let id = SendId(self.next_id);
        self.next_id += 1;
        let out = Outgoing {
            id,
            key,
            dial,
            name: self.peers.get(&key).and_then(|p| p.name.clone()),
            text: Arc::from(text),
            purpose: p,
            deadline: now + self.cfg.timeout,
        };
        self.sends.insert(id, key);
        let outbox = self.outboxes.entry(key).or_default();
        if outbox.in_flight.is_none() {
            self.start(out);
        } else {
            self.queued_deadlines.insert((out.deadline, id));
            outbox.queue.push_back(out);
        }
    }

    fn start(&mut self, out: Outgoing) {
        self.effects.push_back(Effect::Transmit(Transmit {
            id: out.id,
            to: out.dial,
            text: out.text.clone(),
            deadline: out.deadline,
        }));
        let key = out.key;
        self.outboxes.entry(key).or_default().in_flight = Some(out);
    }

    /// "Connect to active peers".
    pub fn connect(&mut self, now: Instant, which: Which) {
        if self.quit_deadline.is_some() {
            self.refuse("the node is quitting: not connecting".to_owned());
            return;
        }
        let keys: Vec<PeerKey> = match which {
            Which::All => {
                let all: Vec<PeerKey> = self.candidates().collect();
                let keys: Vec<PeerKey> = all
                    .iter()
                    .copied()
                    .filter(|k| !self.connect_pending(k))
                    .collect();
                if all.is_empty() {
                    self.refuse("No peers remaining for connection.".to_owned());
                } else if keys.is_empty() {
                    self.refuse("connecting to every remaining peer is already under way".into());
                }
                keys
            }
            Which::Indices(indices) => {
                let mut keys = Vec::new();
                for i in indices {
                    match self.by_index(i) {
                        Some((k, _)) if self.peers[&k].status == PeerStatus::Connected => {
                            let view = self.view(&k);
                            self.refuse(format!(
                                "{} [{}] is already connected",
                                view.name_or_unknown(),
                                view.addr_text()
                            ));
                        }
                        Some((k, _)) => keys.push(k),
                        None => self.refuse(self.no_such_index(&Target::Index(i))),
                    }
                }
                keys
            }
            Which::Candidate(i) => match i.checked_sub(1).and_then(|i| self.candidates().nth(i)) {
                Some(k) => vec![k],
                None => {
                    self.refuse(format!("no peer #{i} among those remaining for connection"));
                    Vec::new()
                }
            },
        };
        for key in keys {
            if self.connect_pending(&key) {
                let view = self.view(&key);
                self.refuse(format!(
                    "connecting to {} [{}] is already under way",
                    view.name_or_unknown(),
                    view.addr_text()
                ));
                continue;
            }
            let dial = self.peers[&key].dial;
            self.enqueue(now, key, dial, "connect", Purpose::Connect);
        }
    }

    fn candidates(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.status == PeerStatus::YetToConnect)
            .map(|(k, _)| *k)
    }

    fn connect_pending(&self, key: &PeerKey) -> bool {
        self.outboxes.get(key).is_some_and(|o| {
            o.in_flight
                .iter()
                .chain(o.queue.iter())
                .any(|m| m.purpose == Purpose::Connect)
        })
    }

    fn rows(&self, keys: impl Iterator<Item = PeerKey>) -> Vec<PeerRow> {
        keys.enumerate()
            .map(|(i, k)| PeerRow {
                index: i + 1,
                peer: self.view(&k),
                status: self.peers[&k].status,
            })
            .collect()
    }

    /// "Query active peers": shows the list.
    pub fn list(&mut self) {
        let rows = self.rows(self.peers.keys().copied());
        self.show(Event::Peers(rows));
    }

    /// Shows the peers not yet connected, numbered for [`Which::Candidate`].
    pub fn list_candidates(&mut self) {
        let rows = self.rows(self.candidates());
        self.show(Event::ConnectCandidates(rows));
    }

    /// The user quits: `exit` to every peer at once; [`Effect::Exit`] when all are done or
    /// after one timeout, whichever is first.
    pub fn quit(&mut self, now: Instant) {
        if self.quit_deadline.is_some() {
            return;
        }
        self.show(Event::Exiting);
        self.quit_deadline = Some(now + self.cfg.timeout);
        let peers: Vec<(PeerKey, SocketAddr)> =
            self.peers.iter().map(|(k, p)| (*k, p.dial)).collect();
        for (key, dial) in peers {
            self.enqueue(now, key, dial, "exit", Purpose::Exit);
        }
        self.check_done();
    }

    fn check_done(&mut self) {
        if self.quit_deadline.is_some() && self.sends.is_empty() && !self.exited {
            self.exited = true;
            self.effects.push_back(Effect::Exit);
        }
    }

    // ----- inputs from the reactor -------------------------------------------------------

    /// A send started by [`Effect::Transmit`] has finished.
    pub fn handle_send_done(&mut self, now: Instant, id: SendId, outcome: SendOutcome) {
        let Some(&key) = self.sends.get(&id) else {
            log::debug!("outcome for unknown send {id:?}: ignored");
            return;
        };
        let Some(out) = self
            .outboxes
            .get_mut(&key)
            .and_then(|o| o.in_flight.take_if(|m| m.id == id))
        else {
            // Still queued: forgetting it here would leave it queued but unindexed.
            log::error!("send {id:?} finished but was not in flight: ignored");
            return;
        };
        self.sends.remove(&id);
        self.finish(out, outcome);
        self.start_next(now, key);
        self.check_done();
    }

    /// Applies a finished send to the table and tells the user.
    fn finish(&mut self, out: Outgoing, outcome: SendOutcome) {
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
                self.peers.shift_remove(&out.key);
            }
            _ => {}
        }
        let text = out.text.to_string();
        let event = match outcome {
            SendOutcome::Delivered | SendOutcome::Unconfirmed => Event::Sent {
                to,
                purpose: out.purpose,
                text,
                confirmed: outcome == SendOutcome::Delivered,
            },
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
    fn start_next(&mut self, now: Instant, key: PeerKey) {
        loop {
            let Some(outbox) = self.outboxes.get_mut(&key) else {
                return;
            };
            let Some(next) = outbox.queue.pop_front() else {
                if outbox.in_flight.is_none() {
                    self.outboxes.remove(&key);
                }
                return;
            };
            self.queued_deadlines.remove(&(next.deadline, next.id));
            let late = match () {
                _ if self.exited => Some(SendFailure::Quit),
                _ if next.deadline <= now => Some(SendFailure::QueueTimedOut),
                _ => None,
            };
            if let Some(reason) = late {
                self.sends.remove(&next.id);
                self.finish(next, SendOutcome::Failed(reason));
                continue;
            }
            self.start(next);
            return;
        }
    }

    /// Fires every deadline that has passed: queued sends time out, a quit whose deadline
    /// passed ends the node, and a due summary of the full-list warning is logged.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.full_log.report(now);
        self.self_log.report(now);
        let quit_due = self.quit_deadline.filter(|&d| d <= now && !self.exited);
        while let Some(&(at, id)) = self.queued_deadlines.first() {
            // What is due no earlier than the quit deadline (the `exit`s queued by `quit`
            // share it) fails below because the node quits, not as a queue timeout.
            if at > now || quit_due.is_some_and(|d| at >= d) {
                break;
            }
            self.queued_deadlines.pop_first();
            self.fail_queued(id, SendFailure::QueueTimedOut);
        }
        if quit_due.is_some() {
            self.abandon();
            self.effects.push_back(Effect::Exit);
        }
        self.check_done();
    }

    /// The node leaves now (a second signal): every send still queued fails because the
    /// node quit, and nothing more starts; sends in flight are reported by their owner.
    pub fn abandon(&mut self) {
        let queued: Vec<SendId> = self.queued_deadlines.iter().map(|(_, id)| *id).collect();
        self.queued_deadlines.clear();
        for id in queued {
            self.fail_queued(id, SendFailure::Quit);
        }
        self.exited = true;
    }

    fn fail_queued(&mut self, id: SendId, reason: SendFailure) {
        let Some(key) = self.sends.remove(&id) else {
            return;
        };
        let Some(outbox) = self.outboxes.get_mut(&key) else {
            return;
        };
        let Some(pos) = outbox.queue.iter().position(|m| m.id == id) else {
            return;
        };
        let out = outbox.queue.remove(pos).expect("position is in range");
        self.finish(out, SendOutcome::Failed(reason));
    }

    /// Checks the table's invariants; used by tests and property tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counted = 0;
        for (key, outbox) in &self.outboxes {
            if outbox.in_flight.is_none() && !outbox.queue.is_empty() {
                return Err(format!("{key}: queued sends but none in flight"));
            }
            for m in outbox.in_flight.iter().chain(outbox.queue.iter()) {
                counted += 1;
                if self.sends.get(&m.id) != Some(key) {
                    return Err(format!("send {:?} not indexed under {key}", m.id));
                }
            }
            for m in &outbox.queue {
                if !self.queued_deadlines.contains(&(m.deadline, m.id)) {
                    return Err(format!("queued send {:?} has no deadline", m.id));
                }
            }
        }
        if counted != self.sends.len() {
            return Err(format!(
                "{} sends indexed, {counted} found",
                self.sends.len()
            ));
        }
        if self.peers.contains_key(&self.self_key) {
            return Err("the node lists itself".to_owned());
        }
        for (key, peer) in &self.peers {
            if self.cfg.local.key(peer.dial.ip(), peer.dial.port()) != *key {
                return Err(format!("{key}: dial address {} has another key", peer.dial));
            }
        }
        Ok(())
    }
}

fn ip_text_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => v4.to_string().len(),
        IpAddr::V6(v6) => v6.to_string().len() + 2,
    }
}

#[cfg(test)]
mod tests;
