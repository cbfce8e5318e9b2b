//! What the node tells its user: typed events, rendered by `render`.

use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

pub use crate::assembler::Cut;
use crate::peer_table::PeerStatus;

/// A peer as shown to the user: its name (if it has sent one) and the address to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub name: Option<String>,
    pub ip: IpAddr,
    /// For an IPv6 address, the interface it is reached through (a link-local address's
    /// zone); 0 for none.
    pub scope_id: u32,
    /// `None` for the variant that carries no listening port (`NAME: TEXT`).
    pub port: Option<u16>,
}

impl PeerView {
    pub fn new(name: Option<String>, addr: SocketAddr) -> Self {
        PeerView {
            name,
            ip: addr.ip(),
            scope_id: scope_id(addr),
            port: Some(addr.port()),
        }
    }

    /// A peer seen at `source` that gave no listening port: its host only.
    pub fn host_only(name: Option<String>, source: SocketAddr) -> Self {
        PeerView {
            port: None,
            ..PeerView::new(name, source)
        }
    }

    /// The host, with its zone (`fe80::1%2`), for display and JSON.
    pub fn host(&self) -> PeerHost {
        PeerHost {
            ip: self.ip,
            scope_id: self.scope_id,
        }
    }

    /// `NAME`, or `Unknown` as the original says until the peer has sent something.
    pub fn name_or_unknown(&self) -> &str {
        self.name.as_deref().unwrap_or("Unknown")
    }

    /// `IP:PORT` (`[v6]:PORT`), or `IP` alone when the port is unknown.
    pub fn addr_text(&self) -> String {
        self.addr().to_string()
    }

    /// The same as [`PeerView::addr_text`], formatted in place (no allocation).
    pub fn addr(&self) -> PeerAddr {
        PeerAddr {
            host: self.host(),
            port: self.port,
        }
    }
}

/// The scope id of an IPv6 socket address (0 for IPv4).
fn scope_id(addr: SocketAddr) -> u32 {
    match addr {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    }
}

/// A peer's host for display: `10.0.0.5`, `2001:db8::1`, or with its zone, `fe80::1%2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHost {
    ip: IpAddr,
    scope_id: u32,
}

impl fmt::Display for PeerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip.fmt(f)?;
        match self.scope_id {
            0 => Ok(()),
            id => write!(f, "%{id}"),
        }
    }
}

impl serde::Serialize for PeerHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A peer's address for display: see [`PeerView::addr`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr {
    host: PeerHost,
    port: Option<u16>,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.host.ip) {
            (Some(port), IpAddr::V6(v6)) => {
                SocketAddrV6::new(v6, port, 0, self.host.scope_id).fmt(f)
            }
            (Some(port), ip) => SocketAddr::new(ip, port).fmt(f),
            (None, _) => self.host.fmt(f),
        }
    }
}

/// One row of the peer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    /// In the peer list ([`Event::Peers`]), the peer's own number, as typed in `#N` (kept
    /// while it is listed, never reused: the list may have gaps). In the candidate list
    /// ([`Event::ConnectCandidates`]), its place 1..k, the answer to the menu's question.
    pub index: usize,
    pub peer: PeerView,
    pub status: PeerStatus,
    /// What it is known to speak.
    pub speaks: Speaks,
    /// Its key, as this node knows it (filled in by the reactor, which holds the keys).
    pub key: PeerKeyView,
}

/// A peer's key in the peer list (`/peers`): PROTOCOL.md, "Encryption".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerKeyView {
    /// The fingerprint of the key on record (or, after a change, of the new one).
    pub fingerprint: Option<String>,
    /// Streams to it are encrypted (it speaks them and this node is not `--plaintext`).
    pub encrypted: bool,
    /// The user compared fingerprints (`/verify ... yes`).
    pub verified: bool,
    /// It presented another key than the one on record: refused until `/trust`.
    pub changed: bool,
}

impl PeerKeyView {
    /// The word `/peers` and `--json` show: `legacy`, `p2pchat (plaintext)`, `encrypted`,
    /// `encrypted, verified` or `KEY CHANGED`; `None` while unknown.
    pub fn kind(&self, speaks: Speaks) -> Option<&'static str> {
        if self.changed {
            return Some("KEY CHANGED");
        }
        match speaks {
            Speaks::Unknown => None,
            Speaks::Legacy => Some("legacy"),
            Speaks::P2pchat(_) if !self.encrypted => Some("p2pchat (plaintext)"),
            Speaks::P2pchat(_) if self.verified => Some("encrypted, verified"),
            Speaks::P2pchat(_) => Some("encrypted"),
        }
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendFailure {
    /// Nothing listens on that port.
    Refused,
    /// The peer reset the connection: it did not read the whole message.
    Reset,
    /// The connection was not established before the deadline.
    ConnectTimedOut,
    /// No route to the peer's host or network (the OS gave up on it).
    Unreachable,
    /// The message could not be written before the deadline.
    WriteTimedOut,
    /// The message waited behind earlier ones to the same peer until its deadline.
    QueueTimedOut,
    /// The node quit before this send could finish.
    Quit,
    /// The peer presented another key than the one on record: nothing goes to it until
    /// the user accepts the new key with `/trust`.
    KeyChanged,
    /// Any other socket error, as the OS words it.
    Io(String),
}

impl fmt::Display for SendFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendFailure::Refused => f.write_str("connection refused (nothing listens there)"),
            SendFailure::Reset => f.write_str("connection reset by peer (message not read)"),
            SendFailure::ConnectTimedOut => f.write_str("timed out connecting"),
            SendFailure::Unreachable => f.write_str("no route to that host (unreachable)"),
            SendFailure::WriteTimedOut => f.write_str("timed out writing"),
            SendFailure::QueueTimedOut => {
                f.write_str("timed out waiting for earlier messages to this peer")
            }
            SendFailure::Quit => f.write_str("node quit before the send finished"),
            SendFailure::KeyChanged => f.write_str(
                "the peer's key changed: check the new key with them, then /trust its \
                     IP:PORT",
            ),
            SendFailure::Io(e) => f.write_str(e),
        }
    }
}

impl SendFailure {
    /// A short stable word for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            SendFailure::Refused => "refused",
            SendFailure::Reset => "reset",
            SendFailure::ConnectTimedOut => "connect_timeout",
            SendFailure::Unreachable => "unreachable",
            SendFailure::WriteTimedOut => "write_timeout",
            SendFailure::QueueTimedOut => "queue_timeout",
            SendFailure::Quit => "quit",
            SendFailure::KeyChanged => "key_changed",
            SendFailure::Io(_) => "io",
        }
    }
}

/// How a finished send went, as the reactor observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// A p2pchat peer acknowledged it on a stream: a delivery receipt.
    Acknowledged,
    /// Written, and the peer closed cleanly after reading it.
    Delivered,
    /// Written, but the peer still held the connection open at the deadline.
    Unconfirmed,
    Failed(SendFailure),
}

/// What the node knows of a sent message's arrival (`"delivery"` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A p2pchat peer acknowledged it (fast path): it was handed to the peer's user.
    Receipt,
    /// A legacy send: the peer read it and closed the connection.
    Closed,
    /// No confirmation: written but not confirmed, or not delivered at all (a failure).
    Unconfirmed,
}

impl Delivery {
    /// The word scripts see.
    pub fn code(self) -> &'static str {
        match self {
            Delivery::Receipt => "receipt",
            Delivery::Closed => "closed",
            Delivery::Unconfirmed => "unconfirmed",
        }
    }

    /// Confirmed one way or the other (what `"confirmed"` says).
    pub fn confirmed(self) -> bool {
        self != Delivery::Unconfirmed
    }
}

/// Which protocol a peer is known to speak (`/peers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// Not known yet (nothing sent to it since it was proven or found legacy).
    Unknown,
    /// The original protocol only (it gave no proof).
    Legacy,
    /// The p2pchat fast path at this version.
    P2pchat(u8),
}

/// What kind of message a send carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Text,
    Connect,
    Exit,
}

/// What carried a message the node shows, as far as its user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// A legacy connection, or a `--plaintext` stream: readable on the path.
    #[default]
    Clear,
    /// An encrypted stream from the key on record (or the first key seen: trust on first
    /// use).
    Encrypted,
    /// An encrypted stream from another key than the one on record, not trusted yet (its
    /// text also carries the `[key changed]` mark).
    KeyChanged,
}

impl Via {
    pub fn encrypted(self) -> bool {
        self != Via::Clear
    }
}

/// Everything the node shows its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Listening {
        addr: SocketAddr,
        name: String,
        /// This node's key's fingerprint (none with `--legacy-only`).
        fingerprint: Option<String>,
    },
    NewPeer(PeerView),
    ConnectedWithYou(PeerView),
    Message {
        from: PeerView,
        text: String,
        /// Set when the connection ended without the sender's close: the text may lack its
        /// end (see [`Cut`]).
        cut: Option<Cut>,
        /// What carried it: in clear, or an encrypted stream (whose key may differ from
        /// the one on record).
        via: Via,
    },
    PeerLeft(PeerView),
    /// A peer's header claims another host than the socket shows (once per peer).
    AddressMismatch {
        peer: PeerView,
        claimed: String,
    },
    /// A send finished: acknowledged by a p2pchat peer, closed by a legacy one, or
    /// written but not confirmed.
    Sent {
        to: PeerView,
        purpose: Purpose,
        text: String,
        delivery: Delivery,
        /// It went on an encrypted stream (PROTOCOL.md, "Encryption").
        encrypted: bool,
    },
    SendFailed {
        to: PeerView,
        purpose: Purpose,
        text: String,
        reason: SendFailure,
    },
    Peers(Vec<PeerRow>),
    /// Peers not yet connected (menu 3), numbered for the menu's index question.
    ConnectCandidates(Vec<PeerRow>),
    /// Something the user asked cannot be done; the text says what and what to do.
    Refused(String),
    /// A reply to the user that is not a failure (help, a hint).
    Info(String),
    /// `/query`: plain text now goes to `peer`, listed as `#number`.
    Query {
        number: usize,
        peer: PeerView,
    },
    /// `/query` alone (or the current peer left): plain text goes nowhere until the user
    /// chooses a peer again.
    QueryEnded,
    /// `/forget`: `peer`, listed as `#number`, was removed from the list; it was sent
    /// nothing.
    Forgotten {
        number: usize,
        peer: PeerView,
    },
    /// `/nick`: later messages carry this name.
    Renamed(String),
    /// A peer presented another key than the one on record (once per peer and key): its
    /// sends fail with `key_changed` and its messages are marked until `/trust`.
    KeyChanged {
        peer: PeerView,
        old_fingerprint: String,
        new_fingerprint: String,
    },
    /// A peer with a key on record answers as legacy or without encryption (once per
    /// peer per run): `was` and `now` say what it spoke and speaks.
    Downgrade {
        peer: PeerView,
        was: String,
        now: String,
    },
    Exiting,
}
