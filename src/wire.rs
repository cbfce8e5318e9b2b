//! The legacy wire format: one message per TCP connection, `IP:PORT NAME TEXT`.
//!
//! This module is pure: bytes in, typed messages out, and the reverse. It never touches a
//! socket. It follows the rule "send strictly, receive loosely":
//!
//! * [`encode`] writes exactly what the original Python program writes: the sender's
//!   address, its listening port, its name and the text, separated by single spaces, UTF-8,
//!   no trailing newline, and never more than [`LEGACY_READ_SIZE`] bytes (the original reads
//!   one `recv(1024)`; anything longer would be cut by it, so it is refused instead).
//! * [`parse`] accepts every variant seen in the wild (see PROTOCOL.md): `<IP:PORT>` in angle
//!   brackets, `[v6]:PORT`, a host name instead of an IP, one trailing `\n` or `\r\n`, the
//!   control words of other implementations, `CONNECT:<port>` and `NAME: TEXT` without an
//!   address. Everything else is a precise [`WireError`].
//! * [`new_message_at`] tells where a connection that carries several unframed messages,
//!   each written on its own, starts its next one.
//!
//! What a header claims about the sender's IP is returned as a claim only: deciding who sent
//! a message is the peer table's job, from the socket's address.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The most payload bytes the original reads from one connection (`recv(1024)`).
pub const LEGACY_READ_SIZE: usize = 1024;
/// Longest accepted `IP:PORT` token (a bracketed IPv6 address with a zone fits).
pub const MAX_ADDR_TOKEN: usize = 300;
/// Longest accepted peer name, in bytes.
pub const MAX_NAME: usize = 256;

/// What a message asks of the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Ordinary chat text (one trailing newline already removed).
    Text(String),
    /// The connection message (`connect`, `CONNECT`, `handshake`, `sent connection!`).
    Connect,
    /// The sender leaves (`exit` in any case, `[PEER_QUIT]`).
    Exit,
}

/// The host part of a header, as claimed by the sender. Never evidence of identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimedHost {
    Ip(IpAddr),
    /// A host name; kept for display, never resolved.
    Name(String),
    /// The variant carried no address at all.
    Absent,
}

/// One parsed inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub claimed_host: ClaimedHost,
    /// The sender's claimed listening port; `None` when the variant carries none.
    pub port: Option<u16>,
    /// The sender's name; `None` when the variant carries none (`CONNECT:<port>`).
    pub name: Option<String>,
    pub body: Body,
}

/// Why a payload is not a message. Each variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The connection carried no bytes (a liveness probe); not worth more than a debug line.
    Empty,
    /// The first token is neither `IP:PORT` nor `NAME:`.
    NoAddress,
    /// The address token is longer than [`MAX_ADDR_TOKEN`].
    AddressTooLong,
    /// The host before the port is not an IP literal or a plausible host name.
    BadHost,
    /// The port is missing, not a number, `0`, or above 65535.
    BadPort,
    /// Nothing followed the address.
    NoName,
    /// The name is longer than [`MAX_NAME`] bytes.
    NameTooLong,
    /// A name was given but no text after it.
    NoText,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WireError::Empty => "empty connection (no bytes)",
            WireError::NoAddress => "no IP:PORT at the start of the message",
            WireError::AddressTooLong => "address longer than 300 bytes",
            WireError::BadHost => "address is not an IP literal or host name",
            WireError::BadPort => "port is missing, not a number, 0 or above 65535",
            WireError::NoName => "no name after the address",
            WireError::NameTooLong => "name longer than 256 bytes",
            WireError::NoText => "no text after the name",
        };
        f.write_str(s)
    }
}

impl std::error::Error for WireError {}

/// Why an outbound message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The encoded payload would exceed what the original reads.
    TooLong { len: usize, max: usize },
    /// Empty text: the original would see no message.
    EmptyText,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLong { len, max } => write!(
                f,
                "message is {len} bytes on the wire; legacy peers read at most {max}: shorten it"
            ),
            EncodeError::EmptyText => f.write_str("message is empty"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Number of bytes [`encode`] would produce for an address of `ip_len` characters.
fn encoded_len(ip_len: usize, port: u16, name: &str, text: &str) -> usize {
    ip_len + 1 + digits(port) + 1 + name.len() + 1 + text.len()
}

fn digits(port: u16) -> usize {
    match port {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

/// Checks that `text` can be sent by a node called `name` on `port` whose header IP is at
/// most `ip_len` characters long. [`encode`] is the one way in: the peer table checks a
/// message when it is asked for by encoding it with the longest header it can carry.
fn check_len(ip_len: usize, port: u16, name: &str, text: &str) -> Result<(), EncodeError> {
    if text.is_empty() {
        return Err(EncodeError::EmptyText);
    }
    let len = encoded_len(ip_len, port, name, text);
    if len > LEGACY_READ_SIZE {
        return Err(EncodeError::TooLong {
            len,
            max: LEGACY_READ_SIZE,
        });
    }
    Ok(())
}

/// Bytes `ip` takes in a header (`10.0.0.5`, `[::1]`), without formatting it into a new
/// string: the length check runs for every message typed.
pub fn ip_text_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => {
            let octets = v4.octets();
            3 + octets
                .iter()
                .map(|&o| match o {
                    0..=9 => 1,
                    10..=99 => 2,
                    _ => 3,
                })
                .sum::<usize>()
        }
        IpAddr::V6(v6) => {
            struct Count(usize);
            impl std::fmt::Write for Count {
                fn write_str(&mut self, s: &str) -> std::fmt::Result {
                    self.0 += s.len();
                    Ok(())
                }
            }
            let mut c = Count(2);
            let _ = std::fmt::Write::write_fmt(&mut c, format_args!("{v6}"));
            c.0
        }
    }
}

/// Whether [`encode`] would take this message, without encoding it (nothing allocated).
pub fn check(ip: IpAddr, port: u16, name: &str, text: &str) -> Result<(), EncodeError> {
    check_len(ip_text_len(ip), port, name, text)
}

/// Encodes one message exactly as the original does: `IP:PORT NAME TEXT`, no newline.
/// IPv6 addresses are bracketed (`[::1]:9000`), the only unambiguous form.
pub fn encode(ip: IpAddr, port: u16, name: &str, text: &str) -> Result<Vec<u8>, EncodeError> {
    let ip_text = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    check_len(ip_text.len(), port, name, text)?;
    let mut out = Vec::with_capacity(encoded_len(ip_text.len(), port, name, text));
    out.extend_from_slice(ip_text.as_bytes());
    out.push(b':');
    out.extend_from_slice(port.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text.as_bytes());
    Ok(out)
}

/// Removes one trailing `\r\n` or `\n`.
fn strip_newline(bytes: &[u8]) -> &[u8] {
    if let Some(rest) = bytes.strip_suffix(b"\r\n") {
        rest
    } else if let Some(rest) = bytes.strip_suffix(b"\n") {
        rest
    } else {
        bytes
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses a whole payload (one message) into a [`Message`].
pub fn parse(payload: &[u8]) -> Result<Message, WireError> {
    if payload.is_empty() {
        return Err(WireError::Empty);
    }
    let payload = strip_newline(payload);
    if let Some(port) = parse_connect_port(payload) {
        return Ok(Message {
            claimed_host: ClaimedHost::Absent,
            port: Some(port?),
            name: None,
            body: Body::Connect,
        });
    }
    let (first, rest) = split_space(payload);
    let (claimed_host, port) = match parse_addr(first) {
        Ok(hp) => hp,
        Err(WireError::NoAddress) => return parse_unaddressed(first, rest),
        Err(e) => return Err(e),
    };
    let rest = rest.ok_or(WireError::NoName)?;
    let (name, text) = split_space(rest);
    if name.is_empty() {
        return Err(WireError::NoName);
    }
    if name.len() > MAX_NAME {
        return Err(WireError::NameTooLong);
    }
    let text = match text {
        Some(t) if !t.is_empty() => t,
        _ => return Err(WireError::NoText),
    };
    Ok(Message {
        claimed_host,
        port: Some(port),
        name: Some(lossy(name)),
        body: classify(text),
    })
}

/// `CONNECT:<port>`, sent by one implementation as its opening message.
fn parse_connect_port(payload: &[u8]) -> Option<Result<u16, WireError>> {
    const PREFIX: &[u8] = b"CONNECT:";
    if payload.len() <= PREFIX.len() || !payload[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = payload[PREFIX.len()..].trim_ascii();
    let rest = rest
        .strip_prefix(b"<")
        .and_then(|r| r.strip_suffix(b">"))
        .unwrap_or(rest);
    Some(parse_port(rest))
}

/// `NAME: TEXT` with no address, sent by one implementation.
fn parse_unaddressed(first: &[u8], rest: Option<&[u8]>) -> Result<Message, WireError> {
    let name = match first.strip_suffix(b":") {
        Some(n) if !n.is_empty() && !n.contains(&b':') => n,
        _ => return Err(WireError::NoAddress),
    };
    if name.len() > MAX_NAME {
        return Err(WireError::NameTooLong);
    }
    let text = match rest {
        Some(t) if !t.is_empty() => t,
        _ => return Err(WireError::NoText),
    };
    Ok(Message {
        claimed_host: ClaimedHost::Absent,
        port: None,
        name: Some(lossy(name)),
        body: classify(text),
    })
}

/// What a text means to a receiver: a control word (any case) or plain text.
pub fn classify(text: &[u8]) -> Body {
    match control_word(text) {
        Some(body) => body,
        None => Body::Text(lossy(text)),
    }
}

/// [`Body::Exit`] or [`Body::Connect`] when `text` is one of their words, `None` for
/// chat text (what [`classify`] decides, without copying the text).
pub fn control_word(text: &[u8]) -> Option<Body> {
    const EXIT: [&[u8]; 2] = [b"exit", b"[PEER_QUIT]"];
    const CONNECT: [&[u8]; 3] = [b"connect", b"handshake", b"sent connection!"];
    if text.len() > 16 {
        return None; // longer than every word: most chat text stops here
    }
    if EXIT.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        Some(Body::Exit)
    } else if CONNECT.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        Some(Body::Connect)
    } else {
        None
    }
}

/// Splits at the first space: `(before, Some(after))`, or `(all, None)` without a space.
fn split_space(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
        None => (bytes, None),
    }
}

fn parse_port(bytes: &[u8]) -> Result<u16, WireError> {
    if bytes.is_empty() || bytes.len() > 5 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(WireError::BadPort);
    }
    let value = bytes
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    match u16::try_from(value) {
        Ok(0) | Err(_) => Err(WireError::BadPort),
        Ok(p) => Ok(p),
    }
}

/// Parses `IP:PORT`, `<IP:PORT>`, `[v6]:PORT`, `v6:PORT` or `host:PORT`.
/// Returns [`WireError::NoAddress`] when the token has no `:` at all or ends with one
/// (so the caller can try the `NAME:` variant).
fn parse_addr(token: &[u8]) -> Result<(ClaimedHost, u16), WireError> {
    if token.len() > MAX_ADDR_TOKEN {
        return Err(WireError::AddressTooLong);
    }
    let token = token
        .strip_prefix(b"<")
        .and_then(|t| t.strip_suffix(b">"))
        .unwrap_or(token);
    let colon = token
        .iter()
        .rposition(|&b| b == b':')
        .ok_or(WireError::NoAddress)?;
    let (host, port) = (&token[..colon], &token[colon + 1..]);
    if port.is_empty() && !token.starts_with(b"[") && !looks_like_ip(host) {
        return Err(WireError::NoAddress);
    }
    let port = parse_port(port)?;
    let host = std::str::from_utf8(host).map_err(|_| WireError::BadHost)?;
    Ok((parse_host(host)?, port))
}

fn looks_like_ip(host: &[u8]) -> bool {
    std::str::from_utf8(host)
        .ok()
        .is_some_and(|h| h.parse::<IpAddr>().is_ok())
}

fn parse_host(host: &str) -> Result<ClaimedHost, WireError> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return parse_v6(inner)
            .map(|ip| ClaimedHost::Ip(IpAddr::V6(ip)))
            .ok_or(WireError::BadHost);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ClaimedHost::Ip(ip));
    }
    if host.contains('%')
        && let Some(ip) = parse_v6(host)
    {
        return Ok(ClaimedHost::Ip(IpAddr::V6(ip)));
    }
    let plausible = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if plausible {
        Ok(ClaimedHost::Name(host.to_owned()))
    } else {
        Err(WireError::BadHost)
    }
}

/// An IPv6 address, with or without a zone (`fe80::1%eth0`, as a sender that writes its
/// socket's local address may: Python's `getsockname` does). The zone names an interface
/// of the *sender's* machine, meaningless here, and is dropped: the claim is only a claim.
fn parse_v6(s: &str) -> Option<Ipv6Addr> {
    let (ip, zone) = s.split_once('%').unwrap_or((s, "x"));
    let plausible_zone = !zone.is_empty()
        && zone.len() <= 64
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    plausible_zone.then(|| ip.parse().ok()).flatten()
}

/// The `ADDR NAME ` prefix (up to and including the space after the name) of a message whose
/// header has arrived whole and names a valid address; `None` otherwise.
pub fn header_prefix(buf: &[u8]) -> Option<&[u8]> {
    let first_space = buf
        .iter()
        .take(MAX_ADDR_TOKEN + 1)
        .position(|&b| b == b' ')?;
    parse_addr(&buf[..first_space]).ok()?;
    let name_len = buf[first_space + 1..]
        .iter()
        .take(MAX_NAME + 1)
        .position(|&b| b == b' ')?;
    if name_len == 0 || name_len > MAX_NAME {
        return None;
    }
    Some(&buf[..first_space + 1 + name_len + 1])
}

/// For a connection carrying several unframed messages from one sender, each written on its
/// own: whether the bytes that arrived in `buf` from offset `at` on (a new arrival) begin a
/// new message, i.e. repeat the connection's `header` (the first message's `ADDR NAME `,
/// from [`header_prefix`]). `None` while too few bytes have arrived at `at` to tell.
///
/// Only arrival boundaries are tested, never the inside of an arrival: a text that quotes
/// the sender's own header stays one message.
pub fn new_message_at(buf: &[u8], at: usize, header: &[u8]) -> Option<bool> {
    if at == 0 || at >= buf.len() || header.is_empty() {
        return Some(false);
    }
    if buf.starts_with(header) && at <= header.len() {
        // Inside the first header, or right after it with no text yet.
        return Some(false);
    }
    let arrived = &buf[at..];
    if arrived.len() >= header.len() {
        Some(arrived.starts_with(header))
    } else if header.starts_with(arrived) {
        None
    } else {
        Some(false)
    }
}

/// A later piece of a text on a kept-open connection (bytes that arrived after a pause with
/// no header of their own), read as a message under the connection's `header`. Always
/// text: a piece that happens to read `exit` or `connect` is not a control word.
pub fn parse_continuation(header: &[u8], piece: &[u8]) -> Result<Message, WireError> {
    let mut msg = parse(&[header, piece].concat())?;
    if !matches!(msg.body, Body::Text(_)) {
        msg.body = Body::Text(lossy(strip_newline(piece)));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_length_check_agrees_with_the_encoder() {
        let ips: [IpAddr; 6] = [
            "0.0.0.0".parse().unwrap(),
            "10.20.3.255".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "::1".parse().unwrap(),
            "fe80::1:2:3".parse().unwrap(),
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ];
        for ip in ips {
            let header = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            assert_eq!(ip_text_len(ip), header.len(), "{ip}");
            for text in ["x", &"y".repeat(1000), &"z".repeat(1010)] {
                assert_eq!(
                    check(ip, 9000, "alice", text).is_ok(),
                    encode(ip, 9000, "alice", text).is_ok(),
                    "{ip} {}",
                    text.len()
                );
            }
        }
    }

    use super::*;
    use std::net::Ipv4Addr;

    fn text(s: &str) -> Body {
        Body::Text(s.to_owned())
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> ClaimedHost {
        ClaimedHost::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    #[test]
    fn encode_is_the_original_bytes() {
        let out = encode(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
            9000,
            "alice",
            "hi there",
        )
        .unwrap();
        assert_eq!(out, b"10.0.0.5:9000 alice hi there");
        let out6 = encode("::1".parse().unwrap(), 9000, "a", "x").unwrap();
        assert_eq!(out6, b"[::1]:9000 a x");
    }

    #[test]
    fn encode_refuses_more_than_the_original_reads() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let header = "127.0.0.1:9000 a ".len();
        let fits = "x".repeat(LEGACY_READ_SIZE - header);
        assert_eq!(
            encode(ip, 9000, "a", &fits).unwrap().len(),
            LEGACY_READ_SIZE
        );
        let over = "x".repeat(LEGACY_READ_SIZE - header + 1);
        assert_eq!(
            encode(ip, 9000, "a", &over),
            Err(EncodeError::TooLong {
                len: LEGACY_READ_SIZE + 1,
                max: LEGACY_READ_SIZE
            })
        );
        assert_eq!(encode(ip, 9000, "a", ""), Err(EncodeError::EmptyText));
    }

    #[test]
    fn round_trip() {
        for (ip, port, name, t) in [
            ("127.0.0.1", 1u16, "bob", "hello world"),
            ("10.206.1.2", 65535, "x", "  spaced  out  "),
            ("::1", 9000, "émile", "ünïcode ✓"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let msg = parse(&encode(ip, port, name, t).unwrap()).unwrap();
            assert_eq!(msg.claimed_host, ClaimedHost::Ip(ip));
            assert_eq!(msg.port, Some(port));
            assert_eq!(msg.name.as_deref(), Some(name));
            assert_eq!(msg.body, text(t));
        }
    }

    #[test]
    fn control_words_any_case_and_variants() {
        for w in ["exit", "EXIT", "Exit", "[PEER_QUIT]", "exit\n", "exit\r\n"] {
            let m = parse(format!("1.2.3.4:5 n {w}").as_bytes()).unwrap();
            assert_eq!(m.body, Body::Exit, "{w:?}");
        }
        for w in ["connect", "CONNECT", "handshake", "sent connection!"] {
            let m = parse(format!("1.2.3.4:5 n {w}").as_bytes()).unwrap();
            assert_eq!(m.body, Body::Connect, "{w:?}");
        }
        // Only one newline is stripped; two make it text.
        let m = parse(b"1.2.3.4:5 n exit\n\n").unwrap();
        assert_eq!(m.body, text("exit\n"));
        assert_eq!(parse(b"1.2.3.4:5 n exiting").unwrap().body, text("exiting"));
    }

    #[test]
    fn accepted_variants() {
        let m = parse(b"<10.0.0.5:9000> name some text").unwrap();
        assert_eq!((m.claimed_host, m.port), (v4(10, 0, 0, 5), Some(9000)));
        assert_eq!(m.body, text("some text"));

        let m = parse(b"[::1]:9000 n t").unwrap();
        assert_eq!(m.claimed_host, ClaimedHost::Ip("::1".parse().unwrap()));
        let m = parse(b"fe80::1:9000 n t").unwrap();
        assert_eq!(m.claimed_host, ClaimedHost::Ip("fe80::1".parse().unwrap()));
        assert_eq!(m.port, Some(9000));
        // A link-local address with the sender's zone (Python's getsockname writes it).
        for header in [
            "[fe80::1%eth0]:9000",
            "fe80::1%eth0:9000",
            "<[fe80::1%2]:9000>",
        ] {
            let m = parse(format!("{header} n t").as_bytes()).unwrap();
            assert_eq!(m.claimed_host, ClaimedHost::Ip("fe80::1".parse().unwrap()));
            assert_eq!(m.port, Some(9000), "{header}");
        }

        let m = parse(b"my-host.lan:9000 n t\r\n").unwrap();
        assert_eq!(m.claimed_host, ClaimedHost::Name("my-host.lan".into()));
        assert_eq!(m.body, text("t"));

        let m = parse(b"CONNECT:9001").unwrap();
        assert_eq!((m.port, m.name, m.body), (Some(9001), None, Body::Connect));
        assert_eq!(parse(b"connect:<9001>\n").unwrap().port, Some(9001));
        assert_eq!(parse(b"CONNECT:0"), Err(WireError::BadPort));

        let m = parse(b"team: hello all").unwrap();
        assert_eq!(m.claimed_host, ClaimedHost::Absent);
        assert_eq!((m.port, m.name.as_deref()), (None, Some("team")));
        assert_eq!(m.body, text("hello all"));
    }

    #[test]
    fn rejections() {
        let cases: &[(&[u8], WireError)] = &[
            (b"", WireError::Empty),
            (b"hello", WireError::NoAddress),
            (b"hello world", WireError::NoAddress),
            (b":", WireError::NoAddress),
            (b"1.2.3.4:9000", WireError::NoName),
            (b"1.2.3.4:9000 ", WireError::NoName),
            (b"1.2.3.4:9000 name", WireError::NoText),
            (b"1.2.3.4:9000 name ", WireError::NoText),
            (b"1.2.3.4:0 n t", WireError::BadPort),
            (b"1.2.3.4:65536 n t", WireError::BadPort),
            (b"1.2.3.4:abc n t", WireError::BadPort),
            (b"1.2.3.4: n t", WireError::BadPort),
            (b"1.2.3.4:-1 n t", WireError::BadPort),
            (b"1.2.3.4:999999999999 n t", WireError::BadPort),
            (b"1.2.3.999:9000 n t", WireError::BadHost),
            (b"[zz]:9000 n t", WireError::BadHost),
            (b"[fe80::1%]:9000 n t", WireError::BadHost),
            (b"[fe80::1%e\x1b]:9000 n t", WireError::BadHost),
            (b"10.0.0.1%eth0:9000 n t", WireError::BadHost),
            (b"a\x1bb:9000 n t", WireError::BadHost),
            (b"\xff\xfe:9000 n t", WireError::BadHost),
            (b"team:", WireError::NoText),
            (b"team: ", WireError::NoText),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_name = format!("1.2.3.4:9000 {} t", "n".repeat(MAX_NAME + 1));
        assert_eq!(parse(long_name.as_bytes()), Err(WireError::NameTooLong));
        let long_addr = format!("{}:9000 n t", "h".repeat(MAX_ADDR_TOKEN));
        assert_eq!(parse(long_addr.as_bytes()), Err(WireError::AddressTooLong));
    }

    #[test]
    fn invalid_utf8_and_nul_survive_as_text() {
        let m = parse(b"1.2.3.4:9 n\xc3 a\xe2\x82 \x00z").unwrap();
        assert_eq!(m.name.as_deref(), Some("n\u{fffd}"));
        assert_eq!(m.body, text("a\u{fffd} \0z"));
    }

    #[test]
    fn a_new_arrival_repeating_the_header_is_a_new_message() {
        let buf = b"1.2.3.4:9 bob hi1.2.3.4:9 bob there";
        let h = header_prefix(buf).unwrap();
        assert_eq!(h, b"1.2.3.4:9 bob ");
        assert_eq!(new_message_at(buf, 16, h), Some(true));
        // Anywhere else is not a boundary, even where the header repeats.
        assert_eq!(new_message_at(buf, 15, h), Some(false));
        assert_eq!(new_message_at(buf, 17, h), Some(false));
        // Inside or right after the first header (no text yet): not a boundary.
        assert_eq!(new_message_at(buf, 5, h), Some(false));
        assert_eq!(new_message_at(buf, 14, h), Some(false));
        // An arrival that does not start with the header continues the message.
        assert_eq!(
            new_message_at(b"1.2.3.4:9 bob hi there", 16, h),
            Some(false)
        );
        // Text that merely mentions the name is not a new message.
        assert_eq!(
            new_message_at(b"1.2.3.4:9 bob hi bob says hi", 16, h),
            Some(false)
        );
        // A buffer holding the rest of a paused text: the connection's header still rules.
        assert_eq!(new_message_at(b"ld!1.2.3.4:9 bob exit", 3, h), Some(true));
        assert_eq!(new_message_at(b"ld1.2.3.4:9 bob exit", 2, h), Some(true));
    }

    #[test]
    fn a_header_arriving_in_pieces_is_undecided_until_whole() {
        let whole = b"1.2.3.4:9 bob hi1.2.3.4:9 bob there";
        let h = header_prefix(whole).unwrap();
        // Only "1.2.3" of the second header has arrived: too early to tell.
        assert_eq!(new_message_at(&whole[..21], 16, h), None);
        assert_eq!(new_message_at(&whole[..30], 16, h), Some(true));
        assert_eq!(header_prefix(b"1.2.3.4:9 bo"), None);
        assert_eq!(header_prefix(b"garbage here and there"), None);
    }

    #[test]
    fn a_continuation_is_always_text_under_the_connection_header() {
        let h = b"1.2.3.4:9 bob ";
        let m = parse_continuation(h, b"exit").unwrap();
        assert_eq!((m.name.as_deref(), m.port), (Some("bob"), Some(9)));
        assert_eq!(m.body, text("exit"));
        assert_eq!(
            parse_continuation(h, b"world\n").unwrap().body,
            text("world")
        );
        assert_eq!(
            parse_continuation(h, b"CONNECT").unwrap().body,
            text("CONNECT")
        );
    }
}
