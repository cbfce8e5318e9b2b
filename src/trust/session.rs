//! The Noise session that makes a fast-path stream private: the `XX` handshake, then a
//! transport that seals batches of fast-path frames. Sans-IO like [`crate::stream`]: no
//! sockets, no clock; bytes in, bytes out, time passed in.
//!
//! # On the wire
//!
//! ```text
//! encrypted stream = PREFACE  msg1  msg2  msg3  record*     (each side's bytes interleaved)
//! PREFACE          = 8a 70 32 70 63 68 61 74                 ("\x8ap2pchat"), initiator only
//! message          = length:u16 (big-endian)  noise-bytes     the Noise spec's framing
//! msg1  → e                      length 32    (initiator → responder)
//! msg2  ← e, ee, s, es           length 96    (responder → initiator)
//! msg3  → s, se                  length 64    (initiator → responder)
//! record           length 16..=65535: ChaChaPoly of up to 65,519 plaintext bytes
//! ```
//!
//! Pattern and suite: [`PATTERN`]. The prologue is the preface, so a changed preface
//! fails the handshake. Handshake payloads are empty in this version, which fixes each
//! handshake message's length: a wrong length is refused from its 2-byte header.
//!
//! The records' plaintexts, concatenated, are exactly the bytes of a plaintext fast-path
//! stream, its own preface included (`\x89p2pchat`, then Hello, Data, Welcome, Ack,
//! Refuse frames: [`crate::stream::frame`]), cut anywhere. So the fast path's sender and
//! receiver are used unchanged: the sender's `poll_transmit` output (64 frames in one
//! buffer) goes through [`Transport::seal`] as one record, and the receiver's `on_bytes`
//! takes what [`Transport::open`] gives.
//!
//! Noise transport nonces are implicit and counted: a record replayed, reordered, lost
//! or altered fails authentication ([`SessionError::Decrypt`]), and the session is dead
//! from then on (every later call returns the same error), so the connection is closed.
//!
//! # Run-loop contract (as in [`crate::stream`])
//!
//! ```text
//! hs = Handshake::initiator(&key, now, cfg)            // or ::responder on accept
//! loop:
//!   hs.poll_transmit(&mut out); write out              // the preface and msg1 first
//!   read at most hs.read_room() → hs.on_bytes(data, now)?
//!   if now ≥ hs.poll_timeout(): hs.handle_timeout(now)?  // a stalled handshake ends here
//!   if hs.is_finished(): hs.poll_transmit(&mut out); check hs.remote_static() against
//!       known_peers; t = hs.into_transport()?; break
//! then: t.seal(frames, &mut out)?; read at most t.read_room() → t.on_bytes(data)?;
//!       t.open(&mut plain, receiver.read_room())? → receiver.on_bytes(&plain, now)
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use snow::params::NoiseParams;

use super::key::{PublicKey, StaticKey};

/// The Noise protocol: `XX` (both static keys sent, encrypted; neither side needs the
/// other's key first), X25519, ChaCha20-Poly1305, BLAKE2s.
pub const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// First bytes of an encrypted stream connection. `0x8a` can start no UTF-8 text (so no
/// legacy message) and differs from the plaintext stream's `0x89`.
pub const PREFACE: [u8; 8] = *b"\x8ap2pchat";
/// Bytes of the length before each Noise message.
pub const LEN_PREFIX: usize = 2;
/// The largest Noise message (the spec's limit), tag included.
pub const MAX_MESSAGE: usize = 65_535;
/// Bytes the AEAD adds to each record.
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;
/// Lengths of the three handshake messages (empty payloads).
pub const HANDSHAKE_LENS: [usize; 3] = [32, 96, 64];
/// Ciphertext bytes held at most by a handshake or a transport: two whole records, so
/// one can always complete while the next begins.
pub const MAX_INBOX: usize = 2 * (LEN_PREFIX + MAX_MESSAGE);

pub(crate) fn params() -> NoiseParams {
    PATTERN.parse().expect("a pattern snow knows")
}

/// Whether `buf` (the first bytes of an inbound connection) opens an encrypted stream:
/// `None` while the bytes so far are a prefix of [`PREFACE`].
pub fn is_preface(buf: &[u8]) -> Option<bool> {
    if buf.len() >= PREFACE.len() {
        Some(buf[..PREFACE.len()] == PREFACE)
    } else if PREFACE.starts_with(buf) {
        None
    } else {
        Some(false)
    }
}

/// The handshake's limits.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeConfig {
    /// The whole handshake must be over within this of its start (the connect for an
    /// initiator, the accept for a responder).
    pub timeout: Duration,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a session ends. Each one closes the connection; a session that returned one
/// returns it again on every later call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The connection did not open with [`PREFACE`].
    NoPreface,
    /// Handshake message `message` (1 to 3) announced a length it cannot have.
    HandshakeLength {
        message: u8,
        len: usize,
        expected: usize,
    },
    /// Handshake message `message` failed authentication: garbage, tampered with, or a
    /// peer speaking another protocol or prologue.
    Handshake { message: u8 },
    /// The peer's static key is of small order (proves nothing: see
    /// [`PublicKey::is_weak`]).
    WeakKey,
    /// The handshake was not over by its deadline.
    TimedOut,
    /// A record shorter than its tag.
    RecordTooShort { len: usize },
    /// Record number `record` (from 1, per direction) failed authentication: forged,
    /// altered, replayed, reordered, or a record before it was lost.
    Decrypt { record: u64 },
    /// More ciphertext than the buffer holds (the caller read past `read_room`).
    BufferFull { cap: usize },
    /// The connection ended inside a handshake message or a record.
    Cut,
    /// `into_transport` before the handshake was over and its last message taken.
    NotFinished,
    /// 2^64 records one way: never in practice; the stream must be reopened.
    Exhausted,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NoPreface => {
                f.write_str("the connection did not open with the encrypted-stream preface")
            }
            SessionError::HandshakeLength {
                message,
                len,
                expected,
            } => write!(
                f,
                "handshake message {message} of {len} bytes (it has {expected})"
            ),
            SessionError::Handshake { message } => write!(
                f,
                "handshake message {message} failed authentication (garbage or tampered with)"
            ),
            SessionError::WeakKey => f.write_str("the peer's key is of small order (refused)"),
            SessionError::TimedOut => f.write_str("the handshake did not finish in time"),
            SessionError::RecordTooShort { len } => {
                write!(f, "encrypted record of {len} bytes, shorter than its tag")
            }
            SessionError::Decrypt { record } => write!(
                f,
                "encrypted record {record} failed authentication \
                 (forged, altered, replayed, reordered or one was lost)"
            ),
            SessionError::BufferFull { cap } => {
                write!(f, "more than {cap} encrypted bytes buffered")
            }
            SessionError::Cut => f.write_str("the connection ended inside an encrypted message"),
            SessionError::NotFinished => f.write_str("the handshake is not over"),
            SessionError::Exhausted => f.write_str("the session's nonces are used up"),
        }
    }
}

impl std::error::Error for SessionError {}

/// One side of a Noise `XX` handshake on one connection.
pub struct Handshake {
    noise: Box<snow::HandshakeState>,
    initiator: bool,
    /// The responder has yet to see the preface.
    need_preface: bool,
    /// Index (0 to 3) of the next handshake message, read or written.
    next: usize,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    deadline: Instant,
    failed: Option<SessionError>,
}

impl Handshake {
    /// The side that dialed: its first bytes (preface, msg1) are ready at once.
    pub fn initiator(key: &StaticKey, now: Instant, cfg: &HandshakeConfig) -> Handshake {
        let mut hs = Handshake::new(key, true, now, cfg);
        hs.outbox.extend_from_slice(&PREFACE);
        hs.write_next();
        hs
    }

    /// The side that accepted: it reads the preface (the caller hands every byte of the
    /// connection from its first), then msg1.
    pub fn responder(key: &StaticKey, now: Instant, cfg: &HandshakeConfig) -> Handshake {
        Handshake::new(key, false, now, cfg)
    }

    fn new(key: &StaticKey, initiator: bool, now: Instant, cfg: &HandshakeConfig) -> Handshake {
        let builder = snow::Builder::new(params())
            .local_private_key(key.private_bytes())
            .and_then(|b| b.prologue(&PREFACE))
            .expect("a 32-byte key and a prologue");
        let noise = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .expect("the default resolver has the suite");
        Handshake {
            noise: Box::new(noise),
            initiator,
            need_preface: !initiator,
            next: 0,
            inbox: Vec::new(),
            outbox: Vec::new(),
            deadline: now + cfg.timeout,
            failed: None,
        }
    }

    /// Bytes read from the connection (at most [`Handshake::read_room`]). Bytes past the
    /// handshake (the first records) are kept for the transport.
    pub fn on_bytes(&mut self, data: &[u8], _now: Instant) -> Result<(), SessionError> {
        self.check()?;
        if data.len() > self.read_room() {
            return self.fail(SessionError::BufferFull { cap: MAX_INBOX });
        }
        self.inbox.extend_from_slice(data);
        self.step()
    }

    /// How many bytes [`Handshake::on_bytes`] takes now.
    pub fn read_room(&self) -> usize {
        MAX_INBOX.saturating_sub(self.inbox.len())
    }

    /// The connection ended (EOF): an error unless the handshake was over.
    pub fn on_eof(&mut self) -> Result<(), SessionError> {
        self.check()?;
        if self.noise.is_handshake_finished() {
            Ok(())
        } else {
            self.fail(SessionError::Cut)
        }
    }

    /// Appends the bytes to write (preface and handshake messages) to `out`; returns how
    /// many.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.outbox.len();
        out.append(&mut self.outbox);
        n
    }

    /// The handshake's deadline, while it is under way.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.failed.is_none() && !self.noise.is_handshake_finished()).then_some(self.deadline)
    }

    /// Ends a handshake not over by its deadline with [`SessionError::TimedOut`]. Early or
    /// repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        self.check()?;
        if !self.noise.is_handshake_finished() && now >= self.deadline {
            return self.fail(SessionError::TimedOut);
        }
        Ok(())
    }

    /// The peer's static key, once its message carrying it was read (msg2 for the
    /// initiator, msg3 for the responder). The initiator can check it before writing
    /// msg3 (which [`Handshake::poll_transmit`] then holds).
    pub fn remote_static(&self) -> Option<PublicKey> {
        self.noise
            .get_remote_static()
            .and_then(PublicKey::from_slice)
    }

    /// The handshake is over (all read and written) and did not fail.
    pub fn is_finished(&self) -> bool {
        self.failed.is_none() && self.noise.is_handshake_finished()
    }

    /// Whether this side dialed.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// The transport, once [`Handshake::is_finished`] and its last bytes were taken with
    /// [`Handshake::poll_transmit`]. Bytes already read past the handshake go with it.
    pub fn into_transport(self) -> Result<Transport, SessionError> {
        self.check()?;
        if !self.noise.is_handshake_finished() || !self.outbox.is_empty() {
            return Err(SessionError::NotFinished);
        }
        let remote = self.remote_static().ok_or(SessionError::NotFinished)?;
        let noise = self
            .noise
            .into_transport_mode()
            .map_err(|_| SessionError::NotFinished)?;
        Ok(Transport {
            noise: Box::new(noise),
            remote,
            inbox: self.inbox,
            sealed: 0,
            opened: 0,
            failed: None,
        })
    }

    fn check(&self) -> Result<(), SessionError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: SessionError) -> Result<(), SessionError> {
        self.failed = Some(e.clone());
        self.inbox = Vec::new();
        self.outbox.clear();
        Err(e)
    }

    fn step(&mut self) -> Result<(), SessionError> {
        if self.need_preface {
            match is_preface(&self.inbox) {
                None => return Ok(()),
                Some(false) => return self.fail(SessionError::NoPreface),
                Some(true) => {
                    self.inbox.drain(..PREFACE.len());
                    self.need_preface = false;
                }
            }
        }
        let mut at = 0;
        let mut result = Ok(());
        while !self.noise.is_handshake_finished() {
            let Some(head) = self.inbox[at..].first_chunk::<LEN_PREFIX>() else {
                break;
            };
            let len = usize::from(u16::from_be_bytes(*head));
            let expected = HANDSHAKE_LENS[self.next];
            let message = self.next as u8 + 1;
            if len != expected {
                result = Err(SessionError::HandshakeLength {
                    message,
                    len,
                    expected,
                });
                break;
            }
            let Some(body) = self.inbox.get(at + LEN_PREFIX..at + LEN_PREFIX + len) else {
                break;
            };
            let mut payload = [0u8; 96];
            if self.noise.read_message(body, &mut payload).is_err() {
                result = Err(SessionError::Handshake { message });
                break;
            }
            at += LEN_PREFIX + len;
            self.next += 1;
            if self.remote_static().is_some_and(|k| k.is_weak()) {
                result = Err(SessionError::WeakKey);
                break;
            }
            if !self.noise.is_handshake_finished() {
                self.write_next();
            }
        }
        self.inbox.drain(..at);
        match result {
            Err(e) => self.fail(e),
            Ok(()) => Ok(()),
        }
    }

    fn write_next(&mut self) {
        let len = HANDSHAKE_LENS[self.next];
        // snow asks room for a tag even where the message has none (msg1).
        let mut msg = [0u8; 128];
        let n = self
            .noise
            .write_message(&[], &mut msg)
            .expect("a handshake message fits its buffer");
        debug_assert_eq!(n, len);
        self.outbox.extend_from_slice(&(n as u16).to_be_bytes());
        self.outbox.extend_from_slice(&msg[..n]);
        self.next += 1;
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.initiator)
            .field("next", &self.next)
            .field("buffered", &self.inbox.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// An established session: seals the fast-path bytes this side writes, opens the peer's.
pub struct Transport {
    noise: Box<snow::TransportState>,
    remote: PublicKey,
    inbox: Vec<u8>,
    sealed: u64,
    opened: u64,
    failed: Option<SessionError>,
}

impl Transport {
    /// The peer's static key: its identity, to check against `known_peers`.
    pub fn remote_static(&self) -> PublicKey {
        self.remote
    }

    /// Appends `plain` to `out` as records: one per [`MAX_PLAINTEXT`] bytes, so a batch of
    /// frames from one `poll_transmit` is one record. Returns the number of records
    /// (0 for an empty `plain`).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<usize, SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut records = 0;
        out.reserve(plain.len() + plain.len().div_ceil(MAX_PLAINTEXT) * (LEN_PREFIX + TAG_LEN));
        for chunk in plain.chunks(MAX_PLAINTEXT) {
            let len = chunk.len() + TAG_LEN;
            let start = out.len();
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.resize(start + LEN_PREFIX + len, 0);
            if self
                .noise
                .write_message(chunk, &mut out[start + LEN_PREFIX..])
                .is_err()
            {
                out.truncate(start);
                self.failed = Some(SessionError::Exhausted);
                return Err(SessionError::Exhausted);
            }
            self.sealed += 1;
            records += 1;
        }
        Ok(records)
    }

    /// Ciphertext read from the connection (at most [`Transport::read_room`]).
    pub fn on_bytes(&mut self, data: &[u8]) -> Result<(), SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if data.len() > self.read_room() {
            return self.fail(SessionError::BufferFull { cap: MAX_INBOX });
        }
        self.inbox.extend_from_slice(data);
        Ok(())
    }

    /// How many bytes [`Transport::on_bytes`] takes now. Reading stops while whole
    /// records wait to be opened, so a slow consumer pushes back on the peer.
    pub fn read_room(&self) -> usize {
        MAX_INBOX.saturating_sub(self.inbox.len())
    }

    /// Opens every whole record buffered whose plaintext fits in `room` more bytes,
    /// appending the plaintext to `out`; returns how many bytes. A record that does not
    /// fit waits (pass the fast-path receiver's `read_room`).
    pub fn open(&mut self, out: &mut Vec<u8>, room: usize) -> Result<usize, SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut at = 0;
        let mut total = 0;
        let mut result = Ok(());
        while let Some(head) = self.inbox[at..].first_chunk::<LEN_PREFIX>() {
            let len = usize::from(u16::from_be_bytes(*head));
            if len < TAG_LEN {
                result = Err(SessionError::RecordTooShort { len });
                break;
            }
            let Some(record) = self.inbox.get(at + LEN_PREFIX..at + LEN_PREFIX + len) else {
                break;
            };
            let plain = len - TAG_LEN;
            if total + plain > room {
                break;
            }
            let start = out.len();
            out.resize(start + plain, 0);
            if self.noise.read_message(record, &mut out[start..]).is_err() {
                out.truncate(start);
                result = Err(SessionError::Decrypt {
                    record: self.opened + 1,
                });
                break;
            }
            self.opened += 1;
            total += plain;
            at += LEN_PREFIX + len;
        }
        self.inbox.drain(..at);
        result.map(|()| total).or_else(|e| self.fail(e).map(|()| 0))
    }

    /// The connection ended (EOF): an error if it cut a record.
    pub fn on_eof(&mut self) -> Result<(), SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.inbox.is_empty() {
            Ok(())
        } else {
            self.fail(SessionError::Cut)
        }
    }

    /// Ciphertext bytes waiting to be opened.
    pub fn buffered(&self) -> usize {
        self.inbox.len()
    }

    /// Records sealed and opened so far.
    pub fn records(&self) -> (u64, u64) {
        (self.sealed, self.opened)
    }

    fn fail(&mut self, e: SessionError) -> Result<(), SessionError> {
        self.failed = Some(e.clone());
        self.inbox = Vec::new();
        Err(e)
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("remote", &self.remote)
            .field("sealed", &self.sealed)
            .field("opened", &self.opened)
            .field("buffered", &self.inbox.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
