//! The peer table: the protocol state machine, with no IO and no clock.
//!
//! Inputs are method calls that take `now`; outputs are [`Effect`]s pulled with
//! [`PeerTable::poll_effect`] (show an event; open, write or drop a send's connection;
//! exit), and the next instant the table wants to be woken at, from
//! [`PeerTable::poll_timeout`]. The reactor calls [`PeerTable::handle_timeout`] once that
//! instant has passed (extra calls are harmless). PROTOCOL.md has the same rules as a table
//! of states and transitions.
//!
//! Per peer, at most one send is in flight; later ones wait in order, so messages to one
//! peer arrive in the order they were typed, while sends to different peers all run at once.
//! Every send has a deadline of `timeout` from when it was asked for, whether it is waiting
//! or in flight, kept here: the reactor only reports the socket's progress
//! (`handle_send_connected`, `handle_send_written`, `handle_send_closed`,
//! `handle_send_talked_back`, `handle_send_error`) and the table decides the outcome and
//! encodes the bytes (see `send.rs`).
//!
//! The peer list and its numbers (`#N`) and strangers are in `list.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Cut, Event, PeerRow, PeerView, Purpose, Via};
use crate::identity::{LocalAddrs, PeerKey, PeerMap, bucket_text, dial_addr, limit_bucket};
use crate::rate_log::{RateLog, SourceLog};
use crate::wire::{self, Body, ClaimedHost, Message};
use bytes::Bytes;

pub use fast::{FastConfig, LinkId};
use list::PeerList;
use send::{Outbox, Outgoing};
pub use send::{PendingSend, SendStage};

/// A send still unfinished this long after it was asked for is *slow*: the user is shown
/// it is pending ([`PeerTable::slow_sends`]).
pub const SLOW_SEND: Duration = Duration::from_secs(1);

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
    /// Its number in the list (`#N`): given when it was listed, kept while it stays
    /// listed, never given to another peer.
    pub number: usize,
    /// The header/socket mismatch notice has been shown for this peer.
    mismatch_shown: bool,
}

impl Peer {
    /// A peer not listed yet (the list gives it its number).
    fn new(dial: SocketAddr, name: Option<String>) -> Self {
        Peer {
            dial,
            name,
            status: PeerStatus::YetToConnect,
            number: 0,
            mismatch_shown: false,
        }
    }
}

/// Identifies one send, from [`Effect::Transmit`] to its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendId(pub u64);

/// Hashes the node's own sequential ids ([`SendId`]), which no peer chooses: one
/// multiplication (Fibonacci hashing) instead of SipHash, whose resistance to chosen keys
/// is needed only for keys from the network. Every message sent is looked up by its id
/// several times.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by the node's own ids.
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Whom the user means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    /// A peer's number in the list (`#N`, [`Peer::number`]).
    Index(usize),
    Name(String),
}

/// Which peers "connect to active peers" is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every peer not yet connected.
    All,
    /// Peers' numbers in the list (`#N`, [`Peer::number`]).
    Indices(Vec<usize>),
    /// 1-based position in the list of peers not yet connected that
    /// [`PeerTable::list_candidates`] showed last (the menu's question), or, if none was
    /// shown, in that list as it is now.
    Candidate(usize),
}

/// Start send `id`: open a connection to `to` (non-blocking) and report how it goes with
/// [`PeerTable::handle_send_connected`] or [`PeerTable::handle_send_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub id: SendId,
    pub to: SocketAddr,
}

/// What the table asks of the outside world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Show(Event),
    /// Open a connection for a send (see [`Transmit`]).
    Transmit(Transmit),
    /// Send `id` is connected: write `payload` whole, shut down the sending side, then
    /// read until the peer closes, reporting [`PeerTable::handle_send_written`], then
    /// [`PeerTable::handle_send_closed`] (or [`PeerTable::handle_send_talked_back`] past
    /// a few hundred bytes read back), or [`PeerTable::handle_send_error`].
    Write {
        id: SendId,
        payload: Bytes,
    },
    /// The table has ended send `id` (its deadline, the node leaving...): drop its socket
    /// and report nothing more about it. Unknown ids are ignored.
    Abort(SendId),
    /// Ask the listener at `to` whether it speaks the fast path: connect, write nothing,
    /// shut down the sending side, read until the peer closes (at most
    /// [`crate::stream::proof::MAX_REPLY`] + 1 bytes, within the probe timeout); report
    /// [`PeerTable::handle_probe_answer`] or [`PeerTable::handle_probe_failed`].
    Probe {
        link: LinkId,
        key: PeerKey,
        to: SocketAddr,
    },
    /// Open the stream connection to `key` at `to`; report
    /// [`PeerTable::handle_stream_connected`], the bytes read
    /// ([`PeerTable::handle_stream_bytes`]) and its end
    /// ([`PeerTable::handle_stream_broken`]).
    OpenStream {
        link: LinkId,
        key: PeerKey,
        to: SocketAddr,
        /// A Noise session (the peer's proof says it speaks them, and not `--plaintext`).
        encrypted: bool,
    },
    /// The stream `link` has bytes to write: pull them with
    /// [`PeerTable::stream_transmit`] until it gives nothing or the socket is full (and
    /// again when it is writable).
    StreamReady {
        link: LinkId,
        key: PeerKey,
    },
    /// Close the stream connection `link` (the table is done with it); report nothing more.
    CloseStream {
        link: LinkId,
        key: PeerKey,
    },
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
    /// Most peers listed. When full, a new peer takes the place of the stranger (a peer
    /// that has only ever sent to us) heard from longest ago; with no stranger to drop,
    /// messages from new peers are shown but not listed. A peer the user sends to is
    /// always listed, past this if need be (the user's own doing, not the network's).
    pub max_peers: usize,
    /// Most strangers listed from one host ([`limit_bucket`]: an IPv6 host's /64); past
    /// it, that host's new peers are shown but not listed.
    pub max_peers_per_host: usize,
    /// Apply `max_peers_per_host` to this machine's own addresses too.
    pub limit_local: bool,
    /// The fast path toward peers that prove they speak it; `None`: `--legacy-only`.
    pub fast: Option<FastConfig>,
}

/// The protocol state machine. See the module documentation.
#[derive(Debug)]
pub struct PeerTable {
    cfg: TableConfig,
    /// Our name as put in headers (`/nick` changes it; sends keep the one they were asked
    /// with).
    self_name: Arc<str>,
    self_key: PeerKey,
    peers: PeerList,
    /// The peers [`PeerTable::list_candidates`] showed last, in the order shown, so that
    /// the menu's answer names the peer the user saw even if the list changed since.
    shown_candidates: Vec<PeerKey>,
    outboxes: PeerMap<Outbox>,
    /// Which outbox each send (queued or in flight) is in.
    sends: IdMap<SendId, PeerKey>,
    /// Every send's deadline, queued or in flight.
    deadlines: deadlines::Deadlines,
    /// Bytes of text of the sends in `sends` (every send ends through `finish`).
    pending_text: usize,
    effects: VecDeque<Effect>,
    next_id: u64,
    /// The last instant given to [`PeerTable::handle_timeout`]: sends that became slow by
    /// then are no reason to wake (see [`PeerTable::poll_timeout`]).
    slow_mark: Option<Instant>,
    /// Set by [`PeerTable::quit`]: the instant by which the node leaves regardless.
    quit_deadline: Option<Instant>,
    exited: bool,
    /// Messages from peers left out of a full list, logged at most every few seconds.
    full_log: RateLog,
    /// The same for peers left out because their host has its share of strangers listed.
    host_log: RateLog,
    /// Strangers dropped to make room, logged at most every few seconds.
    evict_log: RateLog,
    /// Messages claiming this node's own port, per source.
    self_log: SourceLog,
    /// Per peer, the fast path's proof and sender (see `fast.rs`).
    fast: PeerMap<fast::FastPeer>,
    /// Sends handed to a peer's stream sender, by id (indexed in `sends` and `deadlines`
    /// too).
    streamed: IdMap<SendId, Outgoing>,
    next_link: u64,
    /// Stream senders made so far this run: each gets its own session (see
    /// `fast::FastConfig::session`).
    senders_made: u64,
    /// Peers removed by our finished `exit`, whose fast-path state is to be forgotten.
    left: Vec<PeerKey>,
}

impl PeerTable {
    pub fn new(cfg: TableConfig) -> Self {
        let self_key = cfg.local.key(crate::identity::LOCAL_HOST, cfg.port);
        PeerTable {
            self_name: Arc::from(cfg.name.as_str()),
            cfg,
            self_key,
            slow_mark: None,
            peers: PeerList::new(),
            shown_candidates: Vec::new(),
            outboxes: PeerMap::default(),
            sends: IdMap::default(),
            deadlines: deadlines::Deadlines::new(),
            pending_text: 0,
            effects: VecDeque::new(),
            next_id: 0,
            quit_deadline: None,
            exited: false,
            full_log: RateLog::new("messages from new peers shown but not listed (--max-peers)"),
            host_log: RateLog::new(
                "messages from new peers shown but not listed (--max-peers-per-host)",
            ),
            evict_log: RateLog::new(
                "peers that only ever sent to us dropped from the full list (--max-peers)",
            ),
            self_log: SourceLog::new(|ip| ip.to_string()),
            fast: PeerMap::default(),
            streamed: IdMap::default(),
            next_link: 0,
            senders_made: 0,
            left: Vec::new(),
        }
    }

    /// The known peers in list order (by [`Peer::number`]).
    pub fn peers(&self) -> impl ExactSizeIterator<Item = (&PeerKey, &Peer)> {
        self.peers.iter()
    }

    pub fn peer(&self, key: &PeerKey) -> Option<&Peer> {
        self.peers.get(key)
    }

    /// Is `key` listed as a *stranger*: a peer that has only ever sent to us (nothing was
    /// ever sent to it), and so may be dropped to make room in a full list?
    pub fn is_stranger(&self, key: &PeerKey) -> bool {
        self.peers.is_stranger(key)
    }

    /// Number of sends unfinished: queued, in flight, or on a stream and not settled.
    pub fn pending_sends(&self) -> usize {
        self.sends.len()
    }

    /// Bytes of text those sends carry (what their outcomes will show, less framing).
    pub fn pending_text(&self) -> usize {
        self.pending_text
    }

    /// Sends (queued or in flight) still unfinished [`SLOW_SEND`] after they were asked
    /// for, at `now`.
    pub fn slow_sends(&self, now: Instant) -> usize {
        let Some(lag) = self.slow_lag() else {
            return 0;
        };
        let Some(by) = now.checked_add(lag) else {
            return self.deadlines.len();
        };
        self.deadlines.count_until(by)
    }

    /// How long before its deadline a send becomes slow (every send's deadline is
    /// `timeout` after it was asked for); `None` when sends time out before that.
    fn slow_lag(&self) -> Option<Duration> {
        self.cfg
            .timeout
            .checked_sub(SLOW_SEND)
            .filter(|d| !d.is_zero())
    }

    /// The next instant a send becomes slow, after the last [`PeerTable::handle_timeout`].
    fn next_slow(&self) -> Option<Instant> {
        let lag = self.slow_lag()?;
        let next = match self.slow_mark.and_then(|m| m.checked_add(lag)) {
            None => self.deadlines.first(),
            Some(seen) => self.deadlines.first_after((seen, SendId(u64::MAX))),
        };
        next.and_then(|(deadline, _)| deadline.checked_sub(lag))
    }

    /// Our name as put in headers.
    pub fn name(&self) -> &str {
        &self.self_name
    }

    /// `/nick`: later sends carry `name` in their header (sends already asked for keep the
    /// name they were asked with). The caller has checked it (`config::check_name`).
    ///
    /// On the fast path a stream's name is the one its Hello claimed (the protocol has no
    /// second Hello): an open stream carries on under the old name until it closes, and
    /// the next one says the new name.
    pub fn set_name(&mut self, name: &str) {
        self.self_name = Arc::from(name);
        self.cfg.name = name.to_owned();
        self.fast_rename(name);
        self.show(Event::Renamed(name.to_owned()));
    }

    /// The peer listed as `#number`, if it still is.
    pub fn peer_by_number(&self, number: usize) -> Option<&Peer> {
        self.peers.by_number(number).map(|(_, p)| p)
    }

    /// How the peer `#number` is shown in a prompt: its name made safe, or its address
    /// when it has sent none. `None` if it is not listed.
    pub fn label(&self, number: usize) -> Option<String> {
        let peer = self.peer_by_number(number)?;
        Some(match &peer.name {
            Some(name) => crate::sanitize::name_for_terminal(name).into_owned(),
            None => PeerView::new(None, peer.dial).addr_text(),
        })
    }

    /// Every listed peer's number and name (as sent, not made safe), in list order, for
    /// completion. Borrowed: nothing is allocated.
    pub fn numbered_names(&self) -> impl ExactSizeIterator<Item = (usize, Option<&str>)> + Clone {
        self.peers
            .iter()
            .map(|(_, p)| (p.number, p.name.as_deref()))
    }

    pub fn is_quitting(&self) -> bool {
        self.quit_deadline.is_some()
    }

    /// The key of the peer listening on `port` at `ip` (canonical host).
    pub fn key_of(&self, ip: std::net::IpAddr, port: u16) -> PeerKey {
        self.cfg.local.key(ip, port)
    }

    /// How to name `key` in a warning: its name if it has told one, else its address.
    pub fn name_of(&self, key: PeerKey) -> String {
        self.peers
            .get(&key)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| key.to_string())
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// The next effect to carry out, if any. Call until `None` after every input.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The earliest instant at which [`PeerTable::handle_timeout`] has work to do: a
    /// deadline, a due log summary, or a send becoming slow (so a pending count can be
    /// shown as it changes).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.deadline_timeout(), self.next_slow()]
            .into_iter()
            .flatten()
            .min()
    }

    /// [`PeerTable::poll_timeout`] less sends becoming slow: the next instant something
    /// ends or is written.
    fn deadline_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.first().map(|(t, _)| t),
            self.quit_deadline.filter(|_| !self.exited),
            self.full_log.due(),
            self.host_log.due(),
            self.evict_log.due(),
            self.self_log.due(),
            self.fast_timeout(),
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

    /// `key` as the user sees it (its name if it told one, the address to reach it).
    pub fn view(&self, key: &PeerKey) -> PeerView {
        match self.peers.get(key) {
            Some(p) => PeerView::new(p.name.clone(), p.dial),
            None => PeerView::new(None, key.0),
        }
    }

    // ----- inputs from the network -------------------------------------------------------

    /// A message arrived on a connection from `from`, the socket's peer address as
    /// accepted: its IP is the evidence of who sent it, and for an IPv6 link-local source
    /// its scope id is the interface to reach the sender through (the port, the sender's
    /// ephemeral one, means nothing).
    pub fn handle_message(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        self.receive(now, from, msg, None, Via::Clear);
    }

    /// A message from a connection that ended without its sender's close (reset, read
    /// deadline, evicted): handled as any other, its text shown marked as possibly cut.
    pub fn handle_cut_message(&mut self, now: Instant, from: SocketAddr, msg: Message, cut: Cut) {
        self.receive(now, from, msg, Some(cut), Via::Clear);
    }

    /// A message from a stream: handled as any other, shown with what carried it.
    pub fn handle_stream_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Message,
        via: Via,
    ) {
        self.receive(now, from, msg, None, via);
    }

    fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        mut msg: Message,
        cut: Option<Cut>,
        via: Via,
    ) {
        let source = from.ip();
        let Some(port) = msg.port else {
            self.handle_unaddressed(from, msg, cut, via);
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
            match self.peers.remove(&key) {
                Some(peer) => {
                    let name = peer.name.or(msg.name);
                    self.show(Event::PeerLeft(PeerView::new(name, peer.dial)));
                    self.fast_peer_left(now, key);
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
        let dial = dial_addr(from, port);
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
                self.peers.heard(&key, now);
            }
            None => {
                if !self.room_for_stranger(now, &key) {
                    // Shown, not listed (memory stays bounded whatever peers claim).
                    let from = PeerView::new(msg.name.take(), dial);
                    match msg.body {
                        Body::Connect => self.show(Event::ConnectedWithYou(from)),
                        Body::Text(text) => self.show(Event::Message {
                            from,
                            text,
                            cut,
                            via,
                        }),
                        Body::Exit => unreachable!("handled above"),
                    }
                    return;
                }
                // A peer that left and came back while a send of ours to it is pending
                // (our `exit` at quit...) is not a stranger.
                let sending = self.outboxes.contains_key(&key);
                let stranger = (!sending).then(|| (now, limit_bucket(key.0.ip())));
                self.peers
                    .insert(key, Peer::new(dial, msg.name.take()), stranger);
                let view = self.view(&key);
                self.show(Event::NewPeer(view));
            }
        }
        self.check_claim(&key, source, &msg.claimed_host);
        let from = self.view(&key);
        match msg.body {
            Body::Connect => self.show(Event::ConnectedWithYou(from)),
            Body::Text(text) => self.show(Event::Message {
                from,
                text,
                cut,
                via,
            }),
            Body::Exit => unreachable!("handled above"),
        }
    }

    /// Can a new peer the network told us of (`key`, not listed) be listed? Its host must
    /// be under its share of strangers, and the list must have room, made if need be by
    /// dropping the stranger heard from longest ago. Logs why not (rate-limited).
    fn room_for_stranger(&mut self, now: Instant, key: &PeerKey) -> bool {
        let ip = key.0.ip();
        let bucket = limit_bucket(ip);
        let cap = self.cfg.max_peers_per_host;
        let capped = self.cfg.limit_local || !self.cfg.local.is_local(ip);
        if capped && self.peers.strangers_in(bucket) >= cap {
            self.host_log.hit(now, || {
                format!(
                    "{}: {cap} peers from that host that only ever sent to us are listed \
                     (--max-peers-per-host): {key} is shown but not listed, as are its other \
                     new peers until one leaves or is sent to",
                    bucket_text(bucket)
                )
            });
            return false;
        }
        if self.make_room(now, key) {
            return true;
        }
        let listed = self.peers.len();
        self.full_log.hit(now, || {
            format!(
                "peer list full ({listed} peers, --max-peers), all of them peers we sent to: \
                 {key} is shown but not listed, as are other new peers until one leaves"
            )
        });
        false
    }

    /// Makes room in a full list for `key` by dropping the stranger heard from longest
    /// ago. `false` if the list is full and holds no stranger.
    fn make_room(&mut self, now: Instant, key: &PeerKey) -> bool {
        if self.peers.len() < self.cfg.max_peers {
            return true;
        }
        let Some((victim, heard)) = self.peers.quietest_stranger() else {
            return false;
        };
        let quiet = now.saturating_duration_since(heard).as_secs_f64();
        self.peers.remove(&victim);
        let max = self.cfg.max_peers;
        self.evict_log.hit(now, || {
            format!(
                "peer list full ({max} peers, --max-peers): {victim}, which only ever sent to us \
                 and was quiet longest ({quiet:.0} s), dropped to list {key}"
            )
        });
        true
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
    fn handle_unaddressed(&mut self, source: SocketAddr, msg: Message, cut: Option<Cut>, via: Via) {
        let from = PeerView::host_only(msg.name, source);
        match msg.body {
            Body::Text(text) => self.show(Event::Message {
                from,
                text,
                cut,
                via,
            }),
            other => log::info!(
                "{other:?} from {} without a listening port: ignored",
                source.ip()
            ),
        }
    }

    // ----- inputs from the user ----------------------------------------------------------

    /// The user asks to send `text` to `target`. (A `String` is kept as the send's text,
    /// without a copy.)
    pub fn send(&mut self, now: Instant, target: Target, text: impl Into<String>) {
        let Some((key, dial)) = self.resolve(&target) else {
            return;
        };
        let text = text.into();
        let purpose = match wire::control_word(text.as_bytes()) {
            Some(Body::Exit) => Purpose::Exit,
            Some(Body::Connect) => Purpose::Connect,
            Some(Body::Text(_)) | None => Purpose::Text,
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
                let dial = self.peers.get(&key).map_or(*addr, |p| p.dial);
                if let SocketAddr::V6(v6) = dial
                    && v6.ip().is_unicast_link_local()
                    && v6.scope_id() == 0
                {
                    // The OS cannot tell which link it is on ("Invalid argument").
                    self.refuse(format!(
                        "{dial} is a link-local address: add its interface, as in \
                         [{}%eth0]:{} (see `ip link`)",
                        v6.ip(),
                        v6.port()
                    ));
                    return None;
                }
                Some((key, dial))
            }
            Target::Index(n) => self.by_number(*n),
            Target::Name(name) => {
                let mut it = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.name.as_deref() == Some(name.as_str()))
                    .map(|(k, p)| (*k, p.dial));
                let found = (it.next(), it.next());
                drop(it);
                match found {
                    (Some(only), None) => Some(only),
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
            let why = match target {
                Target::Index(n) => self.no_such_number(*n),
                _ => "no such peer".to_owned(),
            };
            self.refuse(why);
            return None;
        };
        if key == self.self_key {
            self.refuse(format!("{dial} is this node itself"));
            return None;
        }
        Some((key, dial))
    }

    /// The peer the user means (as for `/msg`), or `None` with the reason shown.
    pub fn resolve_target(&mut self, target: &Target) -> Option<(PeerKey, String)> {
        let (key, _) = self.resolve(target)?;
        Some((key, self.name_of(key)))
    }

    /// Why `#number` names nobody: it left, or it was never given.
    fn no_such_number(&self, number: usize) -> String {
        if self.peers.was_given(number) {
            format!("no peer #{number}: it left the list (see /peers)")
        } else if self.peers.len() == 0 {
            "No active peers.".to_owned()
        } else {
            format!("no peer #{number} (see /peers)")
        }
    }

    fn by_number(&self, number: usize) -> Option<(PeerKey, SocketAddr)> {
        let (k, p) = self.peers.by_number(number)?;
        Some((k, p.dial))
    }

    /// Lists `key` (at `dial`) if it is not listed, for something the user asked: strangers
    /// make way for it, and a list full of peers we sent to grows past --max-peers by what
    /// the user typed. It is no longer a stranger (never dropped to make room).
    fn list_for_user(&mut self, now: Instant, key: PeerKey, dial: SocketAddr) {
        if !self.peers.contains(&key) {
            self.make_room(now, &key);
            self.peers.insert(key, Peer::new(dial, None), None);
        }
        self.peers.engage(&key);
    }

    /// `/query`: the peer the user means, found as [`PeerTable::send`] finds it (an
    /// address not listed yet is listed, as a send to it would), shown as the current
    /// peer; its number (`#N`), or `None` when refused (the reason is shown).
    pub fn query(&mut self, now: Instant, target: &Target) -> Option<usize> {
        let (key, dial) = self.resolve(target)?;
        self.list_for_user(now, key, dial);
        let number = self.peers.get(&key)?.number;
        let peer = self.view(&key);
        self.show(Event::Query { number, peer });
        Some(number)
    }

    /// `/forget`: removes the peer the user means from the list without sending it
    /// anything; its number, or `None` when refused (the reason is shown). A send to it
    /// that is under way still reports its outcome.
    pub fn forget(&mut self, target: &Target) -> Option<usize> {
        let (key, dial) = self.resolve(target)?;
        let Some(peer) = self.peers.remove(&key) else {
            self.refuse(format!("{dial} is not in the peer list (see /peers)"));
            return None;
        };
        let number = peer.number;
        let peer = PeerView::new(peer.name, peer.dial);
        self.show(Event::Forgotten { number, peer });
        Some(number)
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
            Which::Indices(numbers) => {
                let mut keys = Vec::new();
                for n in numbers {
                    match self.by_number(n) {
                        Some((k, _)) if !self.refuse_if_connected(&k) => keys.push(k),
                        Some(_) => {}
                        None => self.refuse(self.no_such_number(n)),
                    }
                }
                keys
            }
            Which::Candidate(i) => self.candidate(i).into_iter().collect(),
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
            let Some(dial) = self.peers.get(&key).map(|p| p.dial) else {
                continue;
            };
            self.enqueue(now, key, dial, "connect".to_owned(), Purpose::Connect);
        }
    }

    /// Refuses to connect to `key` again if it is connected already; `true` if it is.
    fn refuse_if_connected(&mut self, key: &PeerKey) -> bool {
        if self.peers.get(key).map(|p| p.status) != Some(PeerStatus::Connected) {
            return false;
        }
        let view = self.view(key);
        self.refuse(format!(
            "{} [{}] is already connected",
            view.name_or_unknown(),
            view.addr_text()
        ));
        true
    }

    /// The menu's answer `i`: the `i`-th peer of the candidate list shown last (or of the
    /// list as it is now, if none was shown), if it is still there and not connected.
    fn candidate(&mut self, i: usize) -> Option<PeerKey> {
        let shown = std::mem::take(&mut self.shown_candidates);
        let picked = match shown.is_empty() {
            true => i.checked_sub(1).and_then(|i| self.candidates().nth(i)),
            false => i.checked_sub(1).and_then(|i| shown.get(i)).copied(),
        };
        let Some(key) = picked else {
            self.refuse(format!("no peer #{i} among those remaining for connection"));
            return None;
        };
        if !self.peers.contains(&key) {
            self.refuse(format!(
                "no peer #{i} among those remaining for connection: {key} left the list \
                 since it was shown (see /peers)"
            ));
            return None;
        }
        (!self.refuse_if_connected(&key)).then_some(key)
    }

    fn candidates(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.status == PeerStatus::YetToConnect)
            .map(|(k, _)| *k)
    }

    /// A `connect` to `key` is queued, in flight, or handed to its stream.
    fn connect_pending(&self, key: &PeerKey) -> bool {
        let is_connect = |m: &Outgoing| m.purpose == Purpose::Connect;
        self.outboxes
            .get(key)
            .is_some_and(|o| o.all().any(is_connect))
            || self
                .streamed
                .values()
                .any(|m| m.key == *key && is_connect(m))
    }

    fn row(&self, index: usize, key: &PeerKey, peer: &Peer) -> PeerRow {
        PeerRow {
            index,
            peer: self.view(key),
            status: peer.status,
            speaks: self.speaks(key),
            key: Default::default(),
        }
    }

    /// "Query active peers": shows the list, each peer under its own number.
    pub fn list(&mut self) {
        let rows = self.peers.iter().map(|(k, p)| self.row(p.number, k, p));
        let rows = rows.collect();
        self.show(Event::Peers(rows));
    }

    /// Shows the peers not yet connected, numbered 1, 2... for [`Which::Candidate`] (as
    /// the original numbers this list), and remembers them for the answer.
    pub fn list_candidates(&mut self) {
        self.shown_candidates = self.candidates().collect();
        let rows = self.shown_candidates.iter().enumerate();
        let rows = rows.filter_map(|(i, k)| Some(self.row(i + 1, k, self.peers.get(k)?)));
        let rows = rows.collect();
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
            self.enqueue(now, key, dial, "exit".to_owned(), Purpose::Exit);
        }
        self.check_done();
    }

    fn check_done(&mut self) {
        if self.quit_deadline.is_some() && self.sends.is_empty() && !self.exited {
            self.exited = true;
            self.effects.push_back(Effect::Exit);
        }
    }

    /// Fires every deadline that has passed: sends time out (one in flight with its
    /// stage's outcome, and [`Effect::Abort`]), a quit whose deadline passed ends the node
    /// (what is left fails as [`crate::event::SendFailure::Quit`]), and due log summaries are written.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.slow_mark = self.slow_mark.max(Some(now));
        self.full_log.report(now);
        self.host_log.report(now);
        self.evict_log.report(now);
        self.self_log.report(now);
        let quit_due = self.quit_deadline.filter(|&d| d <= now && !self.exited);
        self.fast_handle_timeout(now);
        self.fire_send_deadlines(now, quit_due);
        self.process_left(now);
        // (Ending the last sends above may have ended the quit already.)
        if quit_due.is_some() && !self.exited {
            self.abandon();
            self.effects.push_back(Effect::Exit);
        }
        self.check_done();
    }

    /// Checks the table's invariants; used by tests and property tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counted = 0;
        for (key, outbox) in &self.outboxes {
            // Without the fast path a queue moves on as soon as nothing is in flight; with
            // it, a queue may be held while a re-probe is out.
            let held = self.cfg.fast.is_some() && !outbox.queue.is_empty();
            if outbox.in_flight.is_none() && !held {
                return Err(format!("{key}: an outbox with nothing in flight"));
            }
            for m in outbox.all() {
                counted += 1;
                if self.sends.get(&m.id) != Some(key) {
                    return Err(format!("send {:?} not indexed under {key}", m.id));
                }
                if !self.deadlines.contains(m.deadline, m.id) {
                    return Err(format!("send {:?} has no deadline", m.id));
                }
            }
        }
        let mut text: usize = self
            .outboxes
            .values()
            .flat_map(|o| o.all())
            .map(|m| m.text.len())
            .sum();
        for (id, m) in &self.streamed {
            counted += 1;
            text += m.text.len();
            if self.sends.get(id) != Some(&m.key) {
                return Err(format!("stream send {id:?} not indexed under {}", m.key));
            }
            if !self.deadlines.contains(m.deadline, *id) {
                return Err(format!("stream send {id:?} has no deadline"));
            }
        }
        if counted != self.sends.len() || counted != self.deadlines.len() {
            return Err(format!(
                "{} sends indexed, {} deadlines, {counted} found",
                self.sends.len(),
                self.deadlines.len()
            ));
        }
        if text != self.pending_text {
            return Err(format!(
                "{text} bytes of text pending, {} counted",
                self.pending_text
            ));
        }
        self.peers.check()?;
        if self.peers.contains(&self.self_key) {
            return Err("the node lists itself".to_owned());
        }
        for (key, peer) in self.peers.iter() {
            if self.cfg.local.key(peer.dial.ip(), peer.dial.port()) != *key {
                return Err(format!("{key}: dial address {} has another key", peer.dial));
            }
        }
        Ok(())
    }
}

mod deadlines;
mod fast;
#[cfg(test)]
mod fast_tests;
mod list;
mod send;
#[cfg(test)]
mod tests;
