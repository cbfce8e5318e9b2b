//! The fast path's frames: what goes on a stream connection after the preface.
//!
//! ```text
//! frame   = length:u32 kind:u8 body        (big-endian; length counts the body only)
//! Hello   = 0x01 version:u8 port:u16 session:u64 fresh_from:u64 name   sender → receiver
//! Data    = 0x02 seq:u64 text:1..=MAX_PAYLOAD bytes                    sender → receiver
//! Welcome = 0x03 version:u8 floor:u64 through:u64                      receiver → sender
//! Ack     = 0x04 through:u64                                           receiver → sender
//! Refuse  = 0x05 reason:u8                                             receiver → sender
//! ```
//!
//! Decoding is two steps, as in mini-redis: [`check`] looks only at the 5-byte header
//! (no allocation, no copy) and says how long the frame is, [`FrameError::Incomplete`]
//! when more bytes are needed, or refuses a frame too long for its kind *before* its body
//! is buffered; then [`parse`] reads the whole frame, borrowing from the buffer. The caller
//! advances its buffer by the length [`check`] returned.
//!
//! Encoding appends to a caller-provided `Vec<u8>`, so a sender batches many frames into
//! one write.

use std::fmt;

use crate::wire::MAX_NAME;

/// First bytes of every stream connection. `0x89` can start no UTF-8 text, so no legacy
/// message begins with it (and a legacy receiver never gets it: see PROTOCOL.md).
pub const MAGIC: [u8; 8] = *b"\x89p2pchat";
/// The highest version of the fast path this code speaks.
pub const VERSION: u8 = 1;
/// Bytes before a frame's body: the length (4) and the kind (1).
pub const HEADER_LEN: usize = 5;
/// Largest text one Data frame carries (version 1).
pub const MAX_PAYLOAD: usize = 65_536;
/// Bytes a Data frame adds to its text.
pub const DATA_OVERHEAD: usize = HEADER_LEN + 8;

const HELLO_FIXED: usize = 1 + 2 + 8 + 8;
const WELCOME_BODY: usize = 1 + 8 + 8;
const ACK_BODY: usize = 8;
const REFUSE_BODY: usize = 1;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Data = 2,
    Welcome = 3,
    Ack = 4,
    Refuse = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Data,
            3 => Kind::Welcome,
            4 => Kind::Ack,
            5 => Kind::Refuse,
            _ => return None,
        })
    }

    /// The body lengths a frame of this kind may have.
    fn body_range(self, max_payload: usize) -> (usize, usize) {
        match self {
            Kind::Hello => (HELLO_FIXED + 1, HELLO_FIXED + MAX_NAME),
            Kind::Data => (8 + 1, 8 + max_payload),
            Kind::Welcome => (WELCOME_BODY, WELCOME_BODY),
            Kind::Ack => (ACK_BODY, ACK_BODY),
            Kind::Refuse => (REFUSE_BODY, REFUSE_BODY),
        }
    }
}

/// The sender's opening frame: who it claims to be, bound to this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The fast-path version the sender will speak (at most the receiver's, from its proof).
    pub version: u8,
    /// The sender's claimed listening port (a claim, as in a legacy header).
    pub port: u16,
    /// The sender's session: random and non-zero, new each time its process starts.
    pub session: u64,
    /// The first number the sender has never written on any stream (1 for a new
    /// session): numbers below it may be in doubt.
    pub fresh_from: u64,
    /// The sender's name: the rules of a legacy NAME.
    pub name: &'a str,
}

/// Why a receiver turns a stream away (then closes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The hello asked for a version this receiver does not speak.
    Version,
    /// Too many streams from this source, or the node is leaving.
    Busy,
    /// A reason this code does not know (a later version's).
    Other(u8),
}

impl RefuseReason {
    fn to_byte(self) -> u8 {
        match self {
            RefuseReason::Version => 1,
            RefuseReason::Busy => 2,
            RefuseReason::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => RefuseReason::Version,
            2 => RefuseReason::Busy,
            b => RefuseReason::Other(b),
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::Version => f.write_str("version not supported"),
            RefuseReason::Busy => f.write_str("busy"),
            RefuseReason::Other(b) => write!(f, "reason {b}"),
        }
    }
}

/// One decoded frame, borrowing from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello(Hello<'a>),
    /// Message `seq` of the sender's session; `text` as a legacy TEXT (UTF-8 expected).
    Data {
        seq: u64,
        text: &'a [u8],
    },
    /// The receiver's answer to a hello. Messages numbered up to `floor` the receiver
    /// cannot account for (its record of the session began after them: it restarted or
    /// forgot); those above `floor` up to `through` were delivered; the rest were not.
    Welcome {
        version: u8,
        floor: u64,
        through: u64,
    },
    /// Every message up to `through` has been delivered.
    Ack {
        through: u64,
    },
    Refuse(RefuseReason),
}

/// Why bytes are not a frame. Every variant but [`FrameError::Incomplete`] ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// More bytes are needed: not an error, wait for them.
    Incomplete,
    /// The kind byte is not one of this version's.
    UnknownKind(u8),
    /// The length does not fit the kind (a Data frame over the largest text, an Ack that is
    /// not 8 bytes...): refused as soon as the header arrives.
    BadLength { kind: Kind, len: usize },
    /// A hello with port 0, session 0, version 0, or a name that breaks the NAME rules.
    BadHello(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete => f.write_str("frame incomplete"),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k:#04x}"),
            FrameError::BadLength { kind, len } => {
                write!(f, "{kind:?} frame of {len} bytes is not allowed")
            }
            FrameError::BadHello(why) => write!(f, "bad hello: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Whether `buf` (the first bytes of an inbound connection) opens a stream: `Some(true)`
/// when it starts with [`MAGIC`], `Some(false)` when it cannot, `None` while the bytes so
/// far are a prefix of the magic.
pub fn is_preface(buf: &[u8]) -> Option<bool> {
    if buf.len() >= MAGIC.len() {
        Some(buf[..MAGIC.len()] == MAGIC)
    } else if MAGIC.starts_with(buf) {
        None
    } else {
        Some(false)
    }
}

/// Step one: the length of the whole frame at the start of `buf` (header included), once
/// all of it is there. Reads the 5-byte header only; refuses a length the kind cannot have
/// (Data over `max_payload` included) before the body arrives.
#[inline]
pub fn check(buf: &[u8], max_payload: usize) -> Result<usize, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Incomplete);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let kind = Kind::from_byte(header[4]).ok_or(FrameError::UnknownKind(header[4]))?;
    let (min, max) = kind.body_range(max_payload);
    if len < min || len > max {
        return Err(FrameError::BadLength { kind, len });
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    Ok(total)
}

/// Step two: the frame in `frame`, which is exactly the bytes [`check`] measured.
pub fn parse(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    let body = &frame[HEADER_LEN..];
    Ok(match Kind::from_byte(frame[4]) {
        Some(Kind::Data) => Frame::Data {
            seq: be_u64(body),
            text: &body[8..],
        },
        Some(Kind::Ack) => Frame::Ack {
            through: be_u64(body),
        },
        Some(Kind::Hello) => Frame::Hello(parse_hello(body)?),
        Some(Kind::Welcome) => Frame::Welcome {
            version: body[0],
            floor: be_u64(&body[1..]),
            through: be_u64(&body[9..]),
        },
        Some(Kind::Refuse) => Frame::Refuse(RefuseReason::from_byte(body[0])),
        None => return Err(FrameError::UnknownKind(frame[4])),
    })
}

/// Both steps: the frame at the start of `buf` and its length.
#[inline]
pub fn decode(buf: &[u8], max_payload: usize) -> Result<(Frame<'_>, usize), FrameError> {
    let len = check(buf, max_payload)?;
    Ok((parse(&buf[..len])?, len))
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("length checked"))
}

fn parse_hello(body: &[u8]) -> Result<Hello<'_>, FrameError> {
    let version = body[0];
    let port = u16::from_be_bytes([body[1], body[2]]);
    let session = be_u64(&body[3..]);
    let fresh_from = be_u64(&body[11..]);
    let name = &body[HELLO_FIXED..];
    if version == 0 {
        return Err(FrameError::BadHello("version 0"));
    }
    if port == 0 {
        return Err(FrameError::BadHello("port 0"));
    }
    if session == 0 {
        return Err(FrameError::BadHello("session 0"));
    }
    if fresh_from == 0 {
        return Err(FrameError::BadHello("fresh_from 0"));
    }
    let name = std::str::from_utf8(name).map_err(|_| FrameError::BadHello("name not UTF-8"))?;
    if !valid_name(name) {
        return Err(FrameError::BadHello(
            "name has a space or control, or ends in ':'",
        ));
    }
    Ok(Hello {
        version,
        port,
        session,
        fresh_from,
        name,
    })
}

/// The legacy NAME rules: one word, no whitespace or control characters, at most 256
/// bytes, not ending in `:`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.ends_with(':')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn header(out: &mut Vec<u8>, kind: Kind, body_len: usize) {
    let len = u32::try_from(body_len).expect("frame body fits u32");
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind as u8);
}

/// Appends a Data frame. The caller keeps `text` within 1..=[`MAX_PAYLOAD`] bytes (the
/// sender refuses anything else when it is queued).
#[inline]
pub fn encode_data(out: &mut Vec<u8>, seq: u64, text: &[u8]) {
    debug_assert!(!text.is_empty() && text.len() <= MAX_PAYLOAD);
    header(out, Kind::Data, 8 + text.len());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(text);
}

/// Appends a Hello frame (the caller checked the name with [`valid_name`]).
pub fn encode_hello(out: &mut Vec<u8>, hello: &Hello<'_>) {
    debug_assert!(valid_name(hello.name));
    header(out, Kind::Hello, HELLO_FIXED + hello.name.len());
    out.push(hello.version);
    out.extend_from_slice(&hello.port.to_be_bytes());
    out.extend_from_slice(&hello.session.to_be_bytes());
    out.extend_from_slice(&hello.fresh_from.to_be_bytes());
    out.extend_from_slice(hello.name.as_bytes());
}

/// Appends a Welcome frame.
pub fn encode_welcome(out: &mut Vec<u8>, version: u8, floor: u64, through: u64) {
    header(out, Kind::Welcome, WELCOME_BODY);
    out.push(version);
    out.extend_from_slice(&floor.to_be_bytes());
    out.extend_from_slice(&through.to_be_bytes());
}

/// Appends an Ack frame.
pub fn encode_ack(out: &mut Vec<u8>, through: u64) {
    header(out, Kind::Ack, ACK_BODY);
    out.extend_from_slice(&through.to_be_bytes());
}

/// Appends a Refuse frame.
pub fn encode_refuse(out: &mut Vec<u8>, reason: RefuseReason) {
    header(out, Kind::Refuse, REFUSE_BODY);
    out.push(reason.to_byte());
}

/// Appends any frame (tests and tools; the hot paths call the `encode_*` functions).
pub fn encode(out: &mut Vec<u8>, frame: &Frame<'_>) {
    match *frame {
        Frame::Hello(ref h) => encode_hello(out, h),
        Frame::Data { seq, text } => encode_data(out, seq, text),
        Frame::Welcome {
            version,
            floor,
            through,
        } => encode_welcome(out, version, floor, through),
        Frame::Ack { through } => encode_ack(out, through),
        Frame::Refuse(r) => encode_refuse(out, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame<'static>> {
        vec![
            Frame::Hello(Hello {
                version: 1,
                port: 9000,
                session: 0xdead_beef_0000_0001,
                fresh_from: 3,
                name: "émile",
            }),
            Frame::Data {
                seq: 1,
                text: b"hello there",
            },
            Frame::Data {
                seq: u64::MAX,
                text: b"x",
            },
            Frame::Welcome {
                version: 1,
                floor: 2,
                through: 42,
            },
            Frame::Ack { through: 7 },
            Frame::Refuse(RefuseReason::Busy),
            Frame::Refuse(RefuseReason::Other(77)),
        ]
    }

    #[test]
    fn every_frame_round_trips() {
        for f in samples() {
            let mut out = Vec::new();
            encode(&mut out, &f);
            let (back, len) = decode(&out, MAX_PAYLOAD).unwrap();
            assert_eq!(back, f);
            assert_eq!(len, out.len());
        }
    }

    #[test]
    fn exact_bytes_of_a_data_frame() {
        let mut out = Vec::new();
        encode_data(&mut out, 258, b"hi");
        assert_eq!(out, [0, 0, 0, 10, 2, 0, 0, 0, 0, 0, 0, 1, 2, b'h', b'i']);
        assert_eq!(out.len(), DATA_OVERHEAD + 2);
    }

    #[test]
    fn partial_frames_at_every_split_point_are_incomplete() {
        let mut all = Vec::new();
        for f in samples() {
            encode(&mut all, &f);
        }
        // Every prefix of the concatenation decodes the whole frames before it and says
        // Incomplete for the one cut, never an error.
        for cut in 0..all.len() {
            let mut buf = &all[..cut];
            let mut n = 0;
            loop {
                match decode(buf, MAX_PAYLOAD) {
                    Ok((f, len)) => {
                        assert_eq!(f, samples()[n]);
                        n += 1;
                        buf = &buf[len..];
                    }
                    Err(FrameError::Incomplete) => break,
                    Err(e) => panic!("cut at {cut}: {e}"),
                }
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header() {
        // A Data frame declaring one byte more than the largest text: refused with only
        // the 5 header bytes in hand.
        let len = (8 + MAX_PAYLOAD + 1) as u32;
        let mut hdr = len.to_be_bytes().to_vec();
        hdr.push(Kind::Data as u8);
        assert_eq!(
            check(&hdr, MAX_PAYLOAD),
            Err(FrameError::BadLength {
                kind: Kind::Data,
                len: 8 + MAX_PAYLOAD + 1
            })
        );
        // A receiver with a lower cap refuses earlier.
        let mut out = Vec::new();
        encode_data(&mut out, 1, &[b'x'; 100]);
        assert!(matches!(
            check(&out[..5], 99),
            Err(FrameError::BadLength { .. })
        ));
        assert_eq!(check(&out, 100), Ok(out.len()));
        // Fixed-size kinds of any other size; an empty Data frame; a 4 GiB length.
        for (kind, len) in [(4u8, 9u32), (4, 0), (3, 10), (5, 0), (2, 8), (1, 19)] {
            let mut b = len.to_be_bytes().to_vec();
            b.push(kind);
            assert!(
                matches!(check(&b, MAX_PAYLOAD), Err(FrameError::BadLength { .. })),
                "{kind} {len}"
            );
        }
        let mut b = u32::MAX.to_be_bytes().to_vec();
        b.push(2);
        assert!(matches!(
            check(&b, MAX_PAYLOAD),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn unknown_kinds_and_bad_hellos_are_typed_errors() {
        assert_eq!(
            check(&[0, 0, 0, 1, 9, 0], MAX_PAYLOAD),
            Err(FrameError::UnknownKind(9))
        );
        let hello = |name: &str, port: u16, session: u64, version: u8| {
            let mut out = Vec::new();
            header(&mut out, Kind::Hello, HELLO_FIXED + name.len());
            out.push(version);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&session.to_be_bytes());
            out.extend_from_slice(&u64::from(session != 7).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out
        };
        for (bytes, why) in [
            (hello("bob", 0, 1, 1), "port 0"),
            (hello("bob", 1, 0, 1), "session 0"),
            (hello("bob", 1, 1, 0), "version 0"),
            (hello("bob", 1, 7, 1), "fresh_from 0"),
            (hello("b b", 1, 1, 1), "name"),
            (hello("bob:", 1, 1, 1), "name"),
            (hello("b\x1bb", 1, 1, 1), "name"),
        ] {
            match decode(&bytes, MAX_PAYLOAD) {
                Err(FrameError::BadHello(w)) => assert!(w.contains(why), "{w} / {why}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        let mut bad_utf8 = hello("ab", 1, 1, 1);
        *bad_utf8.last_mut().unwrap() = 0xff;
        assert_eq!(
            decode(&bad_utf8, MAX_PAYLOAD),
            Err(FrameError::BadHello("name not UTF-8"))
        );
        let long = "n".repeat(MAX_NAME + 1);
        assert!(matches!(
            decode(&hello(&long, 1, 1, 1), MAX_PAYLOAD),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn the_preface_is_told_apart_from_legacy_bytes() {
        assert_eq!(is_preface(b""), None);
        assert_eq!(is_preface(b"\x89p2p"), None);
        assert_eq!(is_preface(&MAGIC), Some(true));
        assert_eq!(is_preface(b"\x89p2pchat\0\0\0"), Some(true));
        assert_eq!(is_preface(b"127.0.0.1:9000 a b"), Some(false));
        assert_eq!(is_preface(b"\x89q"), Some(false));
        // No legacy message (UTF-8 text) can start with the magic.
        assert!(std::str::from_utf8(&MAGIC[..1]).is_err());
    }
}
