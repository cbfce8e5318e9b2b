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
use crate::identity::PeerKey;
use crate::peer_table::LinkId;
use crate::stream::proof::MAX_REPLY;
use crate::stream::receiver::{Event as StreamEvent, Receiver, ReceiverConfig};
use crate::wire::{self, ClaimedHost, Message};

/// Bytes of stream frames pulled from the table per write at most.
const TRANSMIT_CHUNK: usize = 256 << 10;
/// Read passes on one incoming stream per turn of the loop: a fast sender cannot starve
/// the rest (the stream is picked up again at the next turn).
const PASSES_PER_TURN: usize = 8;
/// Messages shown between checks that output is not backing up.
const SHOW_BATCH: usize = 256;
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

/// Our stream connection to a proven peer.
#[derive(Debug)]
pub struct StreamOut {
    pub stream: TcpStream,
    pub key: PeerKey,
    pub link: LinkId,
    connected: bool,
    out: Vec<u8>,
    written: usize,
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
    /// Since when an ack (or the Welcome) has waited for a socket the peer does not
    /// read: past `--read-timeout` the stream is closed.
    stuck_since: Option<Instant>,
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
        let deadline =
            now + crate::stream::proof::ProofConfig::default().probe_timeout + PROBE_GRACE;
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
            Ok(answer) => self.table.handle_probe_answer(now, key, link, &answer),
            Err(e) => {
                log::debug!("probe of {key}: {e}");
                self.table.handle_probe_failed(now, key, link);
            }
        }
    }

    /// [`crate::peer_table::Effect::OpenStream`].
    pub(super) fn open_stream(&mut self, now: Instant, link: LinkId, key: PeerKey, to: SocketAddr) {
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
        let conn = StreamOut {
            stream,
            key,
            link,
            connected: false,
            out: Vec::new(),
            written: 0,
        };
        let id = self.conns.insert(Conn::StreamOut(conn), None);
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
                    self.table.handle_stream_connected(now, key, link);
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
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => return self.stream_out_broken(now, id, "closed by the peer"),
                Ok(n) => self
                    .table
                    .handle_stream_bytes(now, key, link, &self.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.stream_out_broken(now, id, &e.to_string()),
            }
        }
        self.conns.set_deadline(id, more.then_some(now));
        self.flush_stream_out(now, id);
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
        let mut rx = Receiver::new(self.receiver_config(), source.ip(), now);
        log::debug!("{source}: stream opened");
        let mut failed = None;
        if let Err(e) = rx.on_bytes(&bytes, now) {
            failed = Some(e.to_string());
        }
        match pass {
            Pass::Open => {}
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
            stuck_since: None,
        };
        let id = self.conns.insert(Conn::StreamIn(conn), None);
        debug_assert_eq!(id, expect);
        if let Some(why) = failed {
            log::debug!("{source}: stream failed: {why}");
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
            if due && pass == 0 {
                conn.rx.handle_timeout(now);
            }
            let mut again = false;
            if readable {
                let room = conn.rx.read_room().min(self.scratch.len());
                if room == 0 {
                    again = !conn.rx.is_done();
                } else {
                    match conn.stream.read(&mut self.scratch[..room]) {
                        Ok(0) => conn.rx.on_eof(),
                        Ok(n) => match conn.rx.on_bytes(&self.scratch[..n], now) {
                            Ok(()) => again = true,
                            Err(e) => ended = Some(e.to_string()),
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => again = true,
                        Err(e) => ended = Some(e.to_string()),
                    }
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
            [conn.rx.poll_timeout(), ack_deadline]
                .into_iter()
                .flatten()
                .min()
        };
        self.conns.set_deadline(id, at);
    }

    /// Hands the stream's messages to the table; `Some(why)` when the stream failed.
    fn pull_stream(&mut self, now: Instant, id: ConnId) -> Option<String> {
        let mut shown = 0;
        loop {
            if self.paused {
                self.defer(id);
                return None;
            }
            let Some(Conn::StreamIn(conn)) = self.conns.get_mut(id) else {
                return None;
            };
            let source = conn.source;
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
                    continue;
                }
                Ok(Some(StreamEvent::Message { text, .. })) => Message {
                    claimed_host: ClaimedHost::Absent,
                    port: Some(conn.port),
                    name: Some(conn.name.clone()),
                    body: wire::classify(text),
                },
            };
            self.table.handle_message(now, source, msg);
            shown += 1;
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
            conn.rx.poll_transmit(now, &mut conn.out);
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
