//! The fast path's sockets (PROTOCOL.md, "Fast path"): the probe's empty connection, the
//! outgoing stream to a proven peer, and incoming streams. Thin drivers, as for legacy
//! sends: the peer table decides what goes out and what the news means
//! ([`PeerTable::stream_transmit`], `handle_probe_*`, `handle_stream_*`); each incoming
//! stream's bytes are a [`Receiver`]'s to interpret, its messages the table's to show.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::Interest;
use mio::net::TcpStream;

use super::inbound::Pass;
use super::{Conn, ConnId, Node};
use crate::event::Via;
use crate::identity::{PeerKey, limit_bucket};
use crate::peer_table::LinkId;
use crate::stream::proof::{MAX_REPLY, ProofConfig};
use crate::stream::receiver::{Event as StreamEvent, Receiver, ReceiverConfig};
use crate::trust::known_peers::Lookup;
use crate::trust::session::{Handshake, HandshakeConfig, SessionError, Transport};
use crate::wire::{self, ClaimedHost, Message};

/// Bytes of stream frames pulled from the table per write at most.
const TRANSMIT_CHUNK: usize = 256 << 10;
/// Read passes on one incoming stream per turn of the loop: a fast sender cannot starve
/// the rest (the stream is picked up again at the next turn).
const PASSES_PER_TURN: usize = 8;
/// Messages shown between checks that output is not backing up.
const SHOW_BATCH: usize = 256;
/// An inbound stream's socket send buffer (`SO_SNDBUF`; the kernel doubles it).
const STREAM_IN_SEND_BUFFER: usize = 4 << 10;
/// A probe's socket is dropped this long after the table's own probe deadline.
const PROBE_GRACE: Duration = Duration::from_millis(200);

/// The probe: connect, write nothing, shut down the sending side, read the answer.
#[derive(Debug)]
pub struct ProbeConn {
    pub stream: TcpStream,
    pub key: PeerKey,
    pub link: LinkId,
    connected: bool,
    answer: Vec<u8>,
}

/// A stream's Noise session (PROTOCOL.md, "Encryption"): none on a plaintext stream.
#[derive(Debug)]
enum Crypt {
    Plain,
    Handshake(Box<Handshake>),
    Open(Box<Transport>),
    /// Failed or taken apart: the connection is being closed.
    Gone,
}

impl Crypt {
    /// The handshake's deadline, while it is under way.
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Crypt::Handshake(hs) => hs.poll_timeout(),
            _ => None,
        }
    }
}

/// Our stream connection to a proven peer.
#[derive(Debug)]
pub struct StreamOut {
    pub stream: TcpStream,
    pub key: PeerKey,
    pub link: LinkId,
    connected: bool,
    out: Vec<u8>,
    written: usize,
    crypt: Crypt,
    /// The peer's key was checked against known_peers (before msg3 leaves).
    checked: bool,
    /// Plaintext frames pulled from the table, sealed into `out`.
    plain: Vec<u8>,
}

/// A peer's stream connection to us.
#[derive(Debug)]
pub struct StreamIn {
    pub stream: TcpStream,
    pub source: SocketAddr,
    rx: Receiver,
    /// The Hello's claims, bound to this connection.
    port: u16,
    name: String,
    out: Vec<u8>,
    written: usize,
    /// Waiting in the reactor's deferred list (output backed up).
    pub deferred: bool,
    crypt: Crypt,
    /// Plaintext opened from records, or acks to seal.
    plain: Vec<u8>,
    /// The peer presented another key than the one on record for (host, claimed port):
    /// its messages are shown marked.
    key_changed: bool,
    /// Since when an ack (or the Welcome) has waited for a socket the peer does not
    /// read: past `--read-timeout` the stream is closed.
    stuck_since: Option<Instant>,
    /// Its source spent its `--stream-rate` bucket: nothing more is pulled (or read once
    /// the buffer is full) before this instant.
    paced_until: Option<Instant>,
}

/// How a socket step ended.
enum Step {
    Wait,
    Done,
    Failed(io::Error),
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected, `Ok(false)` not yet.
fn connect_done(stream: &TcpStream) -> io::Result<bool> {
    if let Ok(Some(e)) | Err(e) = stream.take_error() {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `out[*written..]` until done or the socket is full.
fn write_out(stream: &mut TcpStream, out: &mut Vec<u8>, written: &mut usize) -> Step {
    while *written < out.len() {
        match stream.write(&out[*written..]) {
            Ok(0) => return Step::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Step::Failed(e),
        }
    }
    out.clear();
    *written = 0;
    Step::Done
}

impl ProbeConn {
    /// Advances; `Some(Ok(answer))` once the peer closed, `Some(Err)` on a failure.
    fn drive(&mut self, scratch: &mut [u8]) -> Option<io::Result<Vec<u8>>> {
        if !self.connected {
            match connect_done(&self.stream) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
            self.connected = true;
            if let Err(e) = self.stream.shutdown(std::net::Shutdown::Write) {
                return Some(Err(e));
            }
        }
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Some(Ok(std::mem::take(&mut self.answer))),
                Ok(n) => {
                    let room = (MAX_REPLY + 1).saturating_sub(self.answer.len());
                    self.answer.extend_from_slice(&scratch[..n.min(room)]);
                    if self.answer.len() > MAX_REPLY {
                        // Too long for a proof: whatever it is, it is not one.
                        return Some(Ok(std::mem::take(&mut self.answer)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Node {
    fn register(&mut self, stream: &mut TcpStream) -> io::Result<ConnId> {
        let id = self.conns.next_id();
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(stream, id.token(), interest)?;
        Ok(id)
    }

    /// [`crate::peer_table::Effect::Probe`].
    pub(super) fn open_probe(&mut self, now: Instant, link: LinkId, key: PeerKey, to: SocketAddr) {
        let mut stream = match TcpStream::connect(to) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("probe of {to} failed at once: {e}");
                return self.table.handle_probe_failed(now, key, link);
            }
        };
        if let Err(e) = self.register(&mut stream) {
            log::debug!("probe of {to}: {e}");
            return self.table.handle_probe_failed(now, key, link);
        }
        let conn = ProbeConn {
            stream,
            key,
            link,
            connected: false,
            answer: Vec::new(),
        };
        let deadline = now + self.probe_timeout() + PROBE_GRACE;
        let id = self.conns.insert(Conn::Probe(conn), Some(deadline));
        self.links.insert(link, id);
    }

    pub(super) fn drive_probe(&mut self, now: Instant, id: ConnId, expired: bool) {
        let Some(Conn::Probe(conn)) = self.conns.get_mut(id) else {
            return;
        };
        let (key, link) = (conn.key, conn.link);
        let result = match conn.drive(&mut self.scratch) {
            Some(r) => r,
            None if expired => Err(io::ErrorKind::TimedOut.into()),
            None => return,
        };
        self.close(id);
        match result {
            Ok(answer) => {
                self.check_downgrade(key, &answer);
                self.table.handle_probe_answer(now, key, link, &answer)
            }
            Err(e) => {
                log::debug!("probe of {key}: {e}");
                self.table.handle_probe_failed(now, key, link);
            }
        }
    }

    /// The table's probe timeout (5 s, or less with a short `--timeout`), which also
    /// bounds a stream attempt.
    fn probe_timeout(&self) -> Duration {
        self.table
            .config()
            .fast
            .as_ref()
            .map_or(ProofConfig::default().probe_timeout, |f| {
                f.proof.probe_timeout
            })
    }

    /// A legacy send to `to` is connected and about to write its text in clear: if that
    /// peer has a key on record (it spoke encrypted streams), that is a downgrade,
    /// whatever made it (its probe went unanswered, a stream attempt failed: someone on
    /// the path can cause either). Told before the text goes, once per downgrade; a
    /// peer that cannot be reached at all sends nothing in clear and is not warned about.
    pub(super) fn warn_in_clear(&mut self, to: SocketAddr) {
        if self.keys.is_none() {
            return;
        }
        let key = self.table.key_of(to.ip(), to.port());
        if matches!(self.table.speaks(&key), crate::event::Speaks::Legacy) {
            return; // its legacy answer was warned about (`check_downgrade`)
        }
        self.downgrade(
            key,
            "legacy, sent to in clear (no proof this time: its probe went unanswered or a \
             stream attempt failed)"
                .to_owned(),
        );
    }

    /// A peer with a key on record whose probe answers legacy, or only the unencrypted
    /// fast path: a downgrade (its messages then go as to such a peer).
    fn check_downgrade(&mut self, key: PeerKey, answer: &[u8]) {
        match crate::stream::proof::parse_reply(answer) {
            Some(v) if v >= 2 => {}
            Some(v) => self.downgrade(key, format!("p2pchat/{v} (unencrypted streams)")),
            None => self.downgrade(key, "legacy".to_owned()),
        }
    }

    /// Warns that `key`, which has a key on record (it spoke encrypted streams), is now
    /// `now`: once per downgrade (again only after a stream has authenticated the key on
    /// record since).
    fn downgrade(&mut self, key: PeerKey, now: String) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        if keys.known.get(key).is_some() && keys.downgrades.insert(key) {
            log::info!("{key} has a key on record but is now {now}: a downgrade");
            let peer = self.table.view(&key);
            self.tell(&crate::event::Event::Downgrade {
                peer,
                was: "p2pchat/2 (encrypted streams)".to_owned(),
                now,
            });
        }
    }

    /// [`crate::peer_table::Effect::OpenStream`].
    pub(super) fn open_stream(
        &mut self,
        now: Instant,
        link: LinkId,
        key: PeerKey,
        to: SocketAddr,
        encrypted: bool,
    ) {
        let mut stream = match TcpStream::connect(to) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .table
                    .handle_stream_broken(now, key, link, &e.to_string());
            }
        };
        if let Err(e) = self.register(&mut stream) {
            return self
                .table
                .handle_stream_broken(now, key, link, &e.to_string());
        }
        let _ = stream.set_nodelay(true);
        // Over no later than a probe would be (as the table's Welcome deadline).
        let handshake = HandshakeConfig {
            timeout: HandshakeConfig::default().timeout.min(self.probe_timeout()),
        };
        let crypt = match (&self.keys, encrypted) {
            (Some(keys), true) => {
                Crypt::Handshake(Box::new(Handshake::initiator(&keys.key, now, &handshake)))
            }
            _ => Crypt::Plain,
        };
        let deadline = crypt.poll_timeout();
        let conn = StreamOut {
            stream,
            key,
            link,
            connected: false,
            out: Vec::new(),
            written: 0,
            crypt,
            checked: false,
            plain: Vec::new(),
        };
        let id = self.conns.insert(Conn::StreamOut(conn), deadline);
        self.links.insert(link, id);
    }

    /// [`crate::peer_table::Effect::CloseStream`]: the table is done with it.
    pub(super) fn close_link(&mut self, link: LinkId) {
        if let Some(id) = self.links.get(&link).copied() {
            if let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) {
                // What is written stays written; a FIN tells the receiver we are done.
                let _ = write_out(&mut conn.stream, &mut conn.out, &mut conn.written);
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            }
            self.close(id);
        }
    }

    /// Reads what the peer says on our stream and writes what the table has for it.
    pub(super) fn drive_stream_out(&mut self, now: Instant, id: ConnId) {
        let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) else {
            return;
        };
        let (key, link) = (conn.key, conn.link);
        if !conn.connected {
            match connect_done(&conn.stream) {
                Ok(true) => {
                    conn.connected = true;
                    match &mut conn.crypt {
                        Crypt::Handshake(hs) => {
                            // The preface and msg1; the table hears of the stream once
                            // the handshake is over.
                            hs.poll_transmit(&mut conn.out);
                        }
                        _ => self.table.handle_stream_connected(now, key, link),
                    }
                }
                Ok(false) => return,
                Err(e) => return self.stream_out_broken(now, id, &e.to_string()),
            }
        }
        // At most PASSES_PER_TURN reads, as for an incoming stream: a peer writing
        // without end (acks, garbage) cannot hold the loop; the rest is read next turn.
        let mut more = true;
        for _ in 0..PASSES_PER_TURN {
            let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) else {
                return;
            };
            let room = match &conn.crypt {
                Crypt::Handshake(hs) => hs.read_room(),
                Crypt::Open(t) => t.read_room(),
                _ => usize::MAX,
            }
            .min(self.scratch.len());
            if room == 0 {
                break;
            }
            match conn.stream.read(&mut self.scratch[..room]) {
                Ok(0) => return self.stream_out_broken(now, id, "closed by the peer"),
                Ok(n) => {
                    if !self.stream_out_bytes(now, id, n) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.stream_out_broken(now, id, &e.to_string()),
            }
        }
        // Passes left over are read next turn; meanwhile the handshake's deadline holds.
        let handshake = match self.conns.get(id) {
            Some(Conn::StreamOut(conn)) => conn.crypt.poll_timeout(),
            _ => None,
        };
        self.conns
            .set_deadline(id, more.then_some(now).or(handshake));
        self.flush_stream_out(now, id);
    }

    /// `n` bytes read into the scratch buffer on our stream `id`: through the session,
    /// if any, to the table. False when the stream is gone.
    fn stream_out_bytes(&mut self, now: Instant, id: ConnId, n: usize) -> bool {
        let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) else {
            return false;
        };
        let (key, link) = (conn.key, conn.link);
        let data = &self.scratch[..n];
        match &mut conn.crypt {
            Crypt::Plain => {
                self.table.handle_stream_bytes(now, key, link, data);
                return true;
            }
            Crypt::Gone => return false,
            Crypt::Open(t) => {
                let opened = t.on_bytes(data).and_then(|()| {
                    conn.plain.clear();
                    t.open(&mut conn.plain, usize::MAX)
                });
                if let Err(e) = opened {
                    self.stream_out_broken(now, id, &e.to_string());
                    return false;
                }
                let plain = std::mem::take(&mut conn.plain);
                self.table.handle_stream_bytes(now, key, link, &plain);
                if let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) {
                    conn.plain = plain;
                }
                return true;
            }
            Crypt::Handshake(hs) => {
                if let Err(e) = hs.on_bytes(data, now) {
                    self.stream_out_broken(now, id, &format!("handshake: {e}"));
                    return false;
                }
            }
        }
        self.stream_out_handshake(now, id)
    }

    /// After handshake bytes were read on our stream `id`: checks the peer's key as soon as
    /// it is known (before msg3 leaves), then moves to the transport. False when the stream
    /// is gone.
    fn stream_out_handshake(&mut self, now: Instant, id: ConnId) -> bool {
        let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) else {
            return false;
        };
        let (key, link) = (conn.key, conn.link);
        let Crypt::Handshake(hs) = &mut conn.crypt else {
            return true;
        };
        if !conn.checked
            && let Some(theirs) = hs.remote_static()
        {
            conn.checked = true;
            let lookup = match self.keys.as_mut() {
                Some(keys) => keys.check(key, &theirs),
                None => Lookup::Unknown,
            };
            if let Lookup::Changed { old, new, .. } = lookup {
                self.close(id);
                self.key_changed(key, old, new, None);
                self.table.handle_key_changed(now, key, link);
                return false;
            }
        }
        let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) else {
            return false;
        };
        let Crypt::Handshake(hs) = &mut conn.crypt else {
            return true;
        };
        hs.poll_transmit(&mut conn.out);
        if !hs.is_finished() {
            return true;
        }
        let Crypt::Handshake(hs) = std::mem::replace(&mut conn.crypt, Crypt::Gone) else {
            unreachable!("matched above");
        };
        let mut t = match hs.into_transport() {
            Ok(t) => t,
            Err(e) => {
                self.stream_out_broken(now, id, &format!("handshake: {e}"));
                return false;
            }
        };
        log::debug!("{key}: encrypted stream up");
        // Records that came right behind msg2 (none in practice: the receiver writes
        // nothing before our Hello).
        conn.plain.clear();
        if let Err(e) = t.open(&mut conn.plain, usize::MAX) {
            self.stream_out_broken(now, id, &e.to_string());
            return false;
        }
        conn.crypt = Crypt::Open(Box::new(t));
        let plain = std::mem::take(&mut conn.plain);
        self.conns.set_deadline(id, None);
        self.table.handle_stream_connected(now, key, link);
        if !plain.is_empty() {
            self.table.handle_stream_bytes(now, key, link, &plain);
        }
        true
    }

    /// Our stream's handshake deadline.
    pub(super) fn stream_out_due(&mut self, now: Instant, id: ConnId) {
        let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) else {
            return;
        };
        if let Crypt::Handshake(hs) = &mut conn.crypt
            && let Err(e) = hs.handle_timeout(now)
        {
            log::info!("{}: stream closed: {e}", conn.key);
            return self.stream_out_broken(now, id, &format!("handshake: {e}"));
        }
        // Read passes left over from the last turn.
        self.drive_stream_out(now, id);
    }

    /// Says loudly that `key` presented another key than the one on record (once per
    /// peer and key).
    /// `named`: the name the peer's Hello claimed, shown when the table has none for it
    /// (an inbound stream's first message is not handled yet).
    pub(super) fn key_changed(
        &mut self,
        key: PeerKey,
        old: crate::trust::key::PublicKey,
        new: crate::trust::key::PublicKey,
        named: Option<&str>,
    ) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        if keys.changed.insert(key, new) == Some(new) {
            return;
        }
        log::info!(
            "{key} presents another key than before: was {}, now {}",
            old.fingerprint(),
            new.fingerprint()
        );
        let peer = self.view_named(&key, named);
        self.tell(&crate::event::Event::KeyChanged {
            peer,
            old_fingerprint: old.fingerprint().to_string(),
            new_fingerprint: new.fingerprint().to_string(),
        });
    }

    /// The table's view of `key`, with the `named` name when the table has none.
    fn view_named(&self, key: &PeerKey, named: Option<&str>) -> crate::event::PeerView {
        let mut view = self.table.view(key);
        if view.name.is_none() {
            view.name = named.filter(|n| !n.is_empty()).map(str::to_owned);
        }
        view
    }

    /// [`crate::peer_table::Effect::StreamReady`], and when the socket is writable.
    pub(super) fn flush_stream_out(&mut self, now: Instant, id: ConnId) {
        loop {
            let Some(Conn::StreamOut(conn)) = self.conns.get_mut(id) else {
                return;
            };
            if !conn.connected {
                return;
            }
            if conn.out.is_empty() {
                match &mut conn.crypt {
                    Crypt::Plain => {
                        let n = self.table.stream_transmit(
                            now,
                            conn.key,
                            conn.link,
                            &mut conn.out,
                            TRANSMIT_CHUNK,
                        );
                        if n == 0 {
                            return;
                        }
                    }
                    Crypt::Open(t) => {
                        conn.plain.clear();
                        let n = self.table.stream_transmit(
                            now,
                            conn.key,
                            conn.link,
                            &mut conn.plain,
                            TRANSMIT_CHUNK,
                        );
                        if n == 0 {
                            return;
                        }
                        if let Err(e) = t.seal(&conn.plain, &mut conn.out) {
                            return self.stream_out_broken(now, id, &e.to_string());
                        }
                    }
                    // The handshake's own bytes are written as they come.
                    Crypt::Handshake(_) | Crypt::Gone => return,
                }
            }
            match write_out(&mut conn.stream, &mut conn.out, &mut conn.written) {
                Step::Done => {}
                Step::Wait => return,
                Step::Failed(e) => return self.stream_out_broken(now, id, &e.to_string()),
            }
        }
    }

    /// Writes every stream the table made ready during this turn: one write per stream
    /// per turn, not one per message queued (a piped `/send` per line cost a system
    /// call each, on both nodes).
    pub(super) fn flush_ready_links(&mut self, now: Instant) {
        let mut ready = std::mem::take(&mut self.ready_links);
        for link in ready.drain(..) {
            if let Some(id) = self.links.get(&link).copied() {
                self.flush_stream_out(now, id);
            }
        }
        // Keep the buffer (no allocation per turn), unless flushing made more ready.
        if self.ready_links.is_empty() {
            self.ready_links = ready;
        }
    }

    fn stream_out_broken(&mut self, now: Instant, id: ConnId, why: &str) {
        let Some(Conn::StreamOut(conn)) = self.conns.get(id) else {
            return;
        };
        let (key, link) = (conn.key, conn.link);
        self.close(id);
        self.table.handle_stream_broken(now, key, link, why);
    }

    // ----- incoming streams ---------------------------------------------------------------

    fn receiver_config(&self) -> ReceiverConfig {
        ReceiverConfig {
            read_timeout: self.cfg.read_timeout,
            ..ReceiverConfig::default()
        }
    }

    /// An accepted connection that opened with the preface (`bytes`, read so far; `pass`,
    /// how that read ended). It counts in admission as the inbound connection it is.
    pub(super) fn open_stream_in(
        &mut self,
        now: Instant,
        mut stream: TcpStream,
        source: SocketAddr,
        bytes: Vec<u8>,
        pass: Pass,
    ) {
        let id = match self.register(&mut stream) {
            Ok(id) => id,
            Err(e) => {
                log::warn!("cannot watch the stream from {source}: {e}");
                return;
            }
        };
        self.admission.opened(source.ip());
        self.insert_stream_in(now, stream, source, bytes, pass, id);
    }

    /// An inbound connection (slot `id`) whose first bytes turned out to be the preface.
    pub(super) fn upgrade_to_stream(
        &mut self,
        now: Instant,
        id: ConnId,
        bytes: Vec<u8>,
        pass: Pass,
    ) {
        let Some(Conn::In(conn)) = self.conns.remove(id) else {
            return;
        };
        // Still counted by admission: the stream's close releases it.
        let mut stream = conn.stream;
        let source = conn.source;
        let new_id = self.conns.next_id();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .reregister(&mut stream, new_id.token(), interest)
        {
            log::warn!("cannot watch the stream from {source}: {e}");
            self.admission.closed(source.ip(), conn.accounted);
            return;
        }
        self.insert_stream_in(now, stream, source, bytes, pass, new_id);
    }

    fn insert_stream_in(
        &mut self,
        now: Instant,
        stream: TcpStream,
        source: SocketAddr,
        bytes: Vec<u8>,
        pass: Pass,
        expect: ConnId,
    ) {
        let _ = stream.set_nodelay(true);
        // What an inbound stream writes is small (the handshake, a Welcome, acks that
        // replace each other): a small send buffer bounds what the kernel holds for it on
        // the sending side, and lets a sender that never reads its acks reach the ack write deadline soon.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(STREAM_IN_SEND_BUFFER);
        let mut rx = Receiver::new(self.receiver_config(), source.ip(), now);
        let encrypted = bytes.first() == Some(&crate::trust::session::PREFACE[0]);
        log::debug!(
            "{source}: {} stream opened",
            if encrypted { "encrypted" } else { "plaintext" }
        );
        let mut failed = None;
        let mut crypt = Crypt::Plain;
        if encrypted {
            match &self.keys {
                Some(keys) => {
                    let mut hs = Handshake::responder(&keys.key, now, &HandshakeConfig::default());
                    if let Err(e) = hs.on_bytes(&bytes, now) {
                        failed = Some(format!("handshake: {e}"));
                    }
                    crypt = Crypt::Handshake(Box::new(hs));
                }
                None => failed = Some("encrypted stream, but no key (--legacy-only)".into()),
            }
        } else if let Err(e) = rx.on_bytes(&bytes, now) {
            failed = Some(e.to_string());
        }
        match pass {
            Pass::Open => {}
            Pass::Eof if encrypted => failed = Some(SessionError::Cut.to_string()),
            Pass::Eof => rx.on_eof(),
            Pass::Failed(e) => failed = Some(e.to_string()),
        }
        let conn = StreamIn {
            stream,
            source,
            rx,
            port: 0,
            name: String::new(),
            out: Vec::new(),
            written: 0,
            deferred: false,
            crypt,
            plain: Vec::new(),
            key_changed: false,
            stuck_since: None,
            paced_until: None,
        };
        let id = self.conns.insert(Conn::StreamIn(conn), None);
        debug_assert_eq!(id, expect);
        if let Some(why) = failed {
            log::info!("{source}: stream closed: {why}");
            self.close(id);
            return;
        }
        self.service_stream_in(now, id, true, false);
    }

    /// Reads (when `readable`), pulls what the stream says into the table, writes the acks,
    /// fires its deadlines (`due`), closes it when it is over.
    pub(super) fn service_stream_in(
        &mut self,
        now: Instant,
        id: ConnId,
        readable: bool,
        due: bool,
    ) {
        if self.paused {
            return self.defer(id);
        }
        let mut more = false;
        let mut ended: Option<String> = None;
        let mut pass = 0;
        loop {
            let Some(Conn::StreamIn(conn)) = self.conns.get_mut(id) else {
                return;
            };
            if conn.paced_until.is_some_and(|t| t <= now) {
                conn.paced_until = None;
            }
            if due && pass == 0 {
                conn.rx.handle_timeout(now);
                if let Crypt::Handshake(hs) = &mut conn.crypt
                    && let Err(e) = hs.handle_timeout(now)
                {
                    ended = Some(e.to_string());
                    break;
                }
            }
            let mut again = false;
            if readable {
                let room = match &conn.crypt {
                    Crypt::Plain => conn.rx.read_room(),
                    Crypt::Handshake(hs) => hs.read_room(),
                    Crypt::Open(t) => t.read_room(),
                    Crypt::Gone => 0,
                }
                .min(self.scratch.len());
                if room == 0 {
                    // A full buffer is emptied by pulling, unless the source is paced:
                    // then it waits for its deadline, not for the next pass.
                    // (An open session's records waiting in its inbox are opened as
                    // the buffer empties: another pass.)
                    again = !conn.rx.is_done()
                        && matches!(conn.crypt, Crypt::Plain | Crypt::Open(_))
                        && conn.paced_until.is_none();
                } else {
                    match conn.stream.read(&mut self.scratch[..room]) {
                        Ok(0) => match &mut conn.crypt {
                            Crypt::Plain => conn.rx.on_eof(),
                            Crypt::Handshake(hs) => {
                                if let Err(e) = hs.on_eof() {
                                    ended = Some(e.to_string());
                                }
                            }
                            Crypt::Open(t) => {
                                conn.plain.clear();
                                let fed = t
                                    .open(&mut conn.plain, conn.rx.read_room())
                                    .map_err(|e| e.to_string())
                                    .and_then(|_| {
                                        conn.rx
                                            .on_bytes(&conn.plain, now)
                                            .map_err(|e| e.to_string())
                                    })
                                    .and_then(|()| t.on_eof().map_err(|e| e.to_string()));
                                match fed {
                                    Ok(()) => conn.rx.on_eof(),
                                    Err(e) => ended = Some(e),
                                }
                            }
                            Crypt::Gone => {}
                        },
                        Ok(n) => match Self::stream_in_bytes(conn, &self.scratch[..n], now) {
                            Ok(()) => again = true,
                            Err(e) => ended = Some(e),
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => again = true,
                        Err(e) => ended = Some(e.to_string()),
                    }
                }
                if ended.is_none()
                    && let Err(e) = Self::stream_in_open(conn, now)
                {
                    ended = Some(e);
                }
            }
            if let Some(why) = self.pull_stream(now, id) {
                ended = Some(why);
            }
            if ended.is_some() || self.paused || !again {
                break;
            }
            pass += 1;
            if pass == PASSES_PER_TURN {
                more = true;
                break;
            }
        }
        if self.paused {
            return;
        }
        self.write_stream_in(now, id);
        let Some(Conn::StreamIn(conn)) = self.conns.get(id) else {
            return;
        };
        if let Some(why) = ended {
            log::info!("{}: stream closed: {why}", conn.source);
            return self.close(id);
        }
        if conn.rx.is_done() {
            log::debug!("{}: stream ended", conn.source);
            return self.close(id);
        }
        let ack_deadline = conn.stuck_since.map(|t| t + self.cfg.read_timeout);
        if ack_deadline.is_some_and(|t| now >= t) {
            log::info!(
                "{}: stream closed: its acks were not taken for {:.1} s (the peer does not \
                 read what it is sent)",
                conn.source,
                self.cfg.read_timeout.as_secs_f64()
            );
            return self.close(id);
        }
        // Read passes left over wait for the next turn, not for the next event.
        let at = if more {
            Some(now)
        } else {
            // Bytes not taken by the socket yet: no ack can go before they do (its
            // writable event brings them), so only the read deadlines wake us.
            let rx_at = if conn.out.is_empty() {
                conn.rx.poll_timeout()
            } else {
                conn.rx.poll_read_timeout()
            };
            [
                rx_at,
                ack_deadline,
                conn.crypt.poll_timeout(),
                conn.paced_until,
            ]
            .into_iter()
            .flatten()
            .min()
        };
        self.conns.set_deadline(id, at);
    }

    /// Bytes read on an incoming stream: to its receiver, or through its session.
    fn stream_in_bytes(conn: &mut StreamIn, data: &[u8], now: Instant) -> Result<(), String> {
        match &mut conn.crypt {
            Crypt::Plain => conn.rx.on_bytes(data, now).map_err(|e| e.to_string()),
            Crypt::Handshake(hs) => hs
                .on_bytes(data, now)
                .map_err(|e| format!("handshake: {e}")),
            Crypt::Open(t) => t.on_bytes(data).map_err(|e| e.to_string()),
            Crypt::Gone => Ok(()),
        }
    }

    /// Moves an incoming encrypted stream along: the handshake's answer out, the
    /// transport once it is over, records opened into the receiver while it has room.
    fn stream_in_open(conn: &mut StreamIn, now: Instant) -> Result<(), String> {
        if let Crypt::Handshake(hs) = &mut conn.crypt {
            hs.poll_transmit(&mut conn.out);
            if !hs.is_finished() {
                return Ok(());
            }
            let Crypt::Handshake(hs) = std::mem::replace(&mut conn.crypt, Crypt::Gone) else {
                unreachable!("matched above");
            };
            let t = hs.into_transport().map_err(|e| format!("handshake: {e}"))?;
            log::debug!("{}: encrypted stream up", conn.source);
            conn.crypt = Crypt::Open(Box::new(t));
        }
        if let Crypt::Open(t) = &mut conn.crypt {
            loop {
                conn.plain.clear();
                let n = t
                    .open(&mut conn.plain, conn.rx.read_room())
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                conn.rx
                    .on_bytes(&conn.plain, now)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// The peer's claims are known (its Hello): checks its key under (socket host,
    /// claimed port) against known_peers. A plaintext stream from a peer with a key on
    /// record is a downgrade.
    fn stream_in_hello(&mut self, id: ConnId, port: u16) {
        let Some(Conn::StreamIn(conn)) = self.conns.get_mut(id) else {
            return;
        };
        let peer = self.table.key_of(conn.source.ip(), port);
        let theirs = match &conn.crypt {
            Crypt::Open(t) => Some(t.remote_static()),
            _ => None,
        };
        if theirs.is_some() {
            // An encrypted stream from its host claiming its port: worth asking again.
            self.table.handle_fast_hint(peer);
        }
        let named = conn.name.clone();
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        match theirs {
            Some(k) => {
                if let Lookup::Changed { old, new, .. } = keys.check(peer, &k) {
                    conn.key_changed = true;
                    self.key_changed(peer, old, new, Some(&named));
                }
            }
            None => {
                if keys.known.get(peer).is_some() && keys.downgrades.insert(peer) {
                    log::info!("{peer} has a key on record but sent a plaintext stream");
                    let view = self.view_named(&peer, Some(&named));
                    self.tell(&crate::event::Event::Downgrade {
                        peer: view,
                        was: "p2pchat/2 (encrypted streams)".to_owned(),
                        now: "a plaintext stream".to_owned(),
                    });
                }
            }
        }
    }

    /// Hands the stream's messages to the table; `Some(why)` when the stream failed.
    fn pull_stream(&mut self, now: Instant, id: ConnId) -> Option<String> {
        let mut shown = 0;
        let paced = {
            let Some(Conn::StreamIn(conn)) = self.conns.get(id) else {
                return None;
            };
            if conn.paced_until.is_some() {
                return None;
            }
            let ip = conn.source.ip().to_canonical();
            self.pace.enabled() && (self.cfg.limit_local || !self.table.config().local.is_local(ip))
        };
        loop {
            if self.paused {
                self.defer(id);
                return None;
            }
            let Some(Conn::StreamIn(conn)) = self.conns.get_mut(id) else {
                return None;
            };
            let source = conn.source;
            if conn.key_changed {
                // Marked until the user trusts this very key (`/trust`, which accepts the
                // key last presented: possibly another one than this stream's).
                let peer = self.table.key_of(source.ip(), conn.port);
                let on_record = match (&conn.crypt, self.keys.as_ref()) {
                    (Crypt::Open(t), Some(keys)) => keys
                        .known
                        .get(peer)
                        .is_some_and(|e| e.key == t.remote_static()),
                    _ => false,
                };
                conn.key_changed = !on_record;
            }
            let via = match (&conn.crypt, conn.key_changed) {
                (Crypt::Plain, _) => Via::Clear,
                (_, false) => Via::Encrypted,
                (_, true) => Via::KeyChanged,
            };
            let msg = match conn.rx.poll_event(&mut self.book, now) {
                Ok(None) => return None,
                Err(e) => return Some(e.to_string()),
                Ok(Some(StreamEvent::Opened {
                    port, name, known, ..
                })) => {
                    log::debug!(
                        "{source}: stream hello from {name:?} port {port} (resumed: {known})"
                    );
                    conn.port = port;
                    conn.name = name.to_owned();
                    self.stream_in_hello(id, port);
                    continue;
                }
                Ok(Some(StreamEvent::Message { text, .. })) => Message {
                    claimed_host: ClaimedHost::Absent,
                    port: Some(conn.port),
                    name: Some(conn.name.clone()),
                    body: if conn.key_changed {
                        wire::classify(&[b"[key changed] ", text].concat())
                    } else {
                        wire::classify(text)
                    },
                },
            };
            self.table.handle_stream_message(now, source, msg, via);
            shown += 1;
            // Charged once taken (a Hello never waits): in debt, none of this source's
            // stream is pulled, nor read once its buffer is full, before its next token.
            let bucket = || limit_bucket(source.ip().to_canonical());
            if paced && let Some(at) = self.pace.charge(bucket(), now) {
                if let Some(Conn::StreamIn(conn)) = self.conns.get_mut(id) {
                    conn.paced_until = Some(at);
                }
                self.remote_log.hit(
                    now,
                    bucket(),
                    "stream messages read more slowly (over --stream-rate)",
                    || {
                        format!(
                            "{source}: stream messages over --stream-rate: read more slowly \
                             (nothing dropped)"
                        )
                    },
                );
                return None;
            }
            if shown % SHOW_BATCH == 0 {
                self.drain_effects(now);
            }
        }
    }

    /// Writes the Welcome and acks the receiver has due (one at a time: an ack not yet
    /// taken by the socket is replaced by the next rather than queued behind it).
    fn write_stream_in(&mut self, now: Instant, id: ConnId) {
        let Some(Conn::StreamIn(conn)) = self.conns.get_mut(id) else {
            return;
        };
        if conn.out.is_empty() {
            match &mut conn.crypt {
                Crypt::Plain => {
                    conn.rx.poll_transmit(now, &mut conn.out);
                }
                Crypt::Open(t) => {
                    conn.plain.clear();
                    conn.rx.poll_transmit(now, &mut conn.plain);
                    if !conn.plain.is_empty()
                        && let Err(e) = t.seal(&conn.plain, &mut conn.out)
                    {
                        log::debug!("{}: cannot seal acks: {e}", conn.source);
                    }
                }
                Crypt::Handshake(_) | Crypt::Gone => {}
            }
        }
        if let Step::Failed(e) = write_out(&mut conn.stream, &mut conn.out, &mut conn.written) {
            log::debug!("{}: cannot write acks: {e}", conn.source);
        }
        if conn.out.is_empty() {
            conn.stuck_since = None;
        } else {
            conn.stuck_since.get_or_insert(now);
        }
    }
}
