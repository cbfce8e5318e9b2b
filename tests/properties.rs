//! Property tests: the codec, the terminal sanitiser, the renderers and the peer table
//! under generated inputs.
//!
//! proptest runs here without its `fork`/`timeout` features, so every property must be
//! cheap: each block sets a moderate case count (see [`cases`]; `PROPTEST_CASES=N`
//! overrides it for a longer run) and the whole file takes seconds in a debug build.
//! A failure prints a shrunk counterexample (for the peer table, the steps that led to
//! it); proptest also records its seed in `tests/properties.proptest-regressions` so that
//! case is replayed first next time.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2pchat::config;
use p2pchat::event::{Event, PeerRow, PeerView, Purpose, SendFailure};
use p2pchat::identity::LocalAddrs;
use p2pchat::peer_table::{
    Effect, PeerStatus, PeerTable, SendId, SendStage, TableConfig, Target, Transmit, Which,
};
use p2pchat::render;
use p2pchat::sanitize;
use p2pchat::wire::{self, Body, ClaimedHost, EncodeError, Message, WireError};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

/// `n` cases, unless `PROPTEST_CASES` asks for another number (for a longer run).
fn cases(n: u32) -> ProptestConfig {
    let env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: env.unwrap_or(n),
        ..ProptestConfig::default()
    }
}

// ----- shared generators -----------------------------------------------------------------

/// What `sanitize::for_terminal` promises to remove, written out independently of it.
fn dangerous(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f
        | 0x7f..=0x9f
        | 0x61c
        | 0x200e | 0x200f
        | 0x202a..=0x202e
        | 0x2066..=0x2069
        | 0x2028 | 0x2029
        | 0xfeff)
}

fn dangerous_char() -> impl Strategy<Value = char> {
    prop_oneof![
        0x00u32..0x20,
        0x7fu32..0xa0,
        select(vec![0x61cu32, 0x200e, 0x200f, 0x2028, 0x2029, 0xfeff]),
        0x202au32..=0x202e,
        0x2066u32..=0x2069,
    ]
    .prop_map(|u| char::from_u32(u).expect("listed code points are chars"))
}

/// Characters next to the dangerous ranges: must pass through untouched.
fn neighbour_char() -> impl Strategy<Value = char> {
    select(vec![
        '\u{20}', '\u{7e}', '\u{a0}', '\u{61b}', '\u{61d}', '\u{200d}', '\u{2010}', '\u{2027}',
        '\u{2029}', '\u{202f}', '\u{2065}', '\u{206a}', '\u{fefe}', '\u{ff00}', '\u{2400}',
        '\u{fffd}', '\\',
    ])
}

/// Any char, weighted towards ASCII, the dangerous set and its neighbours.
fn mixed_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        4 => proptest::char::range(' ', '~'),
        2 => dangerous_char(),
        1 => neighbour_char(),
    ]
}

fn mixed_string(max_chars: usize) -> impl Strategy<Value = String> {
    vec(mixed_char(), 0..=max_chars).prop_map(|cs| cs.into_iter().collect())
}

/// IPv6 addresses whose text forms vary: `::`, `::1`, mapped IPv4, runs of zeros.
fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    let segment = prop_oneof![Just(0u16), Just(1), Just(0xffff), any::<u16>()];
    prop_oneof![
        any::<Ipv6Addr>(),
        proptest::array::uniform8(segment).prop_map(Ipv6Addr::from),
        any::<Ipv4Addr>().prop_map(|v4| v4.to_ipv6_mapped()),
        select(vec![Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST]),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(IpAddr::V4),
        ipv6().prop_map(IpAddr::V6),
    ]
}

// ----- wire::parse and wire::new_message_at never panic -------------------------------

/// A token of the header grammar, or noise.
fn grammar_token() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b":",
        b" ",
        b"  ",
        b"<",
        b">",
        b"[",
        b"]",
        b"\n",
        b"\r\n",
        b"\r",
        b"::",
        b".",
        b"0",
        b"CONNECT:",
        b"connect:<",
        b"exit",
        b"EXIT",
        b"[PEER_QUIT]",
        b"connect",
        b"handshake",
        b"sent connection!",
        b"alice",
        b"my-host.lan",
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"\0",
        b"\x1b[2J",
    ];
    prop_oneof![
        4 => select(fixed).prop_map(<[u8]>::to_vec),
        3 => ip().prop_map(|ip| ip.to_string().into_bytes()),
        1 => ipv6().prop_map(|ip| format!("[{ip}]").into_bytes()),
        2 => prop_oneof![any::<u16>().prop_map(u32::from), any::<u32>()]
            .prop_map(|n| n.to_string().into_bytes()),
        1 => "[a-z0-9._-]{0,12}".prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..8),
        1 => (1usize..400).prop_map(|n| vec![b'h'; n]),
    ]
}

fn grammar_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(grammar_token(), 0..24).prop_map(|ts| ts.concat())
}

/// Anything at all, or bytes shaped like the grammar.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..1200),
        3 => grammar_bytes(),
    ]
}

/// A valid `ADDR NAME ` header, as a header with a chosen address token form.
fn valid_header() -> impl Strategy<Value = Vec<u8>> {
    let addr = prop_oneof![
        (any::<Ipv4Addr>(), 1u16..).prop_map(|(ip, p)| format!("{ip}:{p}")),
        (ipv6(), 1u16..).prop_map(|(ip, p)| format!("[{ip}]:{p}")),
        (any::<Ipv4Addr>(), 1u16..).prop_map(|(ip, p)| format!("<{ip}:{p}>")),
        (1u16..).prop_map(|p| format!("my-host.lan:{p}")),
    ];
    // Any char but a space (one becomes '_'); at most 9 chars, so at most 36 bytes.
    let no_space = any::<char>().prop_map(|c| if c == ' ' { '_' } else { c });
    let name = prop_oneof![
        "[a-z]{1,8}",
        (1usize..=256).prop_map(|n| "n".repeat(n)),
        vec(no_space, 1..10).prop_map(|cs| cs.into_iter().collect::<String>()),
    ];
    (addr, name).prop_map(|(a, n)| format!("{a} {n} ").into_bytes())
}

/// Several messages from one sender on one connection, unframed, maybe with noise.
fn multi_message() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    (valid_header(), vec(grammar_bytes(), 1..4))
}

/// The header prefix that `new_message_at` looks for again, computed independently:
/// everything up to and including the second space.
fn header_prefix(buf: &[u8]) -> Option<&[u8]> {
    let s1 = buf.iter().position(|&b| b == b' ')?;
    let s2 = s1 + 1 + buf[s1 + 1..].iter().position(|&b| b == b' ')?;
    Some(&buf[..=s2])
}

#[track_caller]
fn check_boundary(buf: &[u8], at: usize) -> Option<bool> {
    let found = match wire::header_prefix(buf) {
        Some(h) => wire::new_message_at(buf, at, h),
        None => Some(false),
    };
    if found == Some(true) {
        assert!(
            at < buf.len(),
            "boundary {at} out of range for {} bytes",
            buf.len()
        );
        let prefix = header_prefix(buf).expect("a boundary implies a complete header");
        assert!(
            at > prefix.len(),
            "boundary {at} inside or right after the first header"
        );
        assert!(
            buf[at..].starts_with(prefix),
            "boundary {at} does not start with the header {:?}",
            String::from_utf8_lossy(prefix)
        );
    }
    if found.is_none() {
        let prefix = header_prefix(buf).expect("undecided implies a complete first header");
        assert!(
            prefix.starts_with(&buf[at..]),
            "undecided, yet not a header's start"
        );
    }
    found
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn parse_never_panics(bytes in payload()) {
        let _ = wire::parse(&bytes);
    }

    #[test]
    fn new_message_at_never_panics_and_only_at_a_repeated_header(
        bytes in payload(),
        at in prop_oneof![0usize..1300, any::<usize>()],
    ) {
        check_boundary(&bytes, at);
        check_boundary(&bytes, 0);
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn new_message_at_finds_each_later_header_where_it_arrives(
        (header, bodies) in multi_message(),
        at in 0usize..1300,
    ) {
        // header + body0 + header + body1 + ...: each later header, arriving on its own,
        // starts a new message when the body before it is not empty.
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for body in &bodies {
            starts.push(buf.len());
            buf.extend_from_slice(&header);
            buf.extend_from_slice(body);
        }
        for (i, &start) in starts.iter().enumerate().skip(1) {
            let found = check_boundary(&buf, start);
            if !bodies[0].is_empty() && !bodies[i - 1].is_empty() {
                prop_assert_eq!(found, Some(true), "header {} at {}", i, start);
            }
        }
        check_boundary(&buf, at);
        // Only part of the second header has arrived: undecided, never a wrong answer.
        if let (Some(&second), false) = (starts.get(1), bodies[0].is_empty()) {
            for cut in second + 1..second + header.len() {
                prop_assert_eq!(check_boundary(&buf[..cut], second), None);
            }
        }
    }
}

// ----- encode / parse round trip ----------------------------------------------------------

/// A char allowed in a name: any char, weighted towards ASCII and ':', with whitespace and
/// controls (which a name may not hold) turned into visible ones: a control picture
/// (U+2400..U+241F) chosen by the low bits, so no case is ever rejected.
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => proptest::char::range('!', '~'),
        1 => Just(':'),
    ]
    .prop_map(|c| {
        if c.is_whitespace() || c.is_control() || p2pchat::sanitize::invisible(c) {
            char::from_u32(0x2400 + (c as u32 & 0x1f)).expect("a control picture")
        } else {
            c
        }
    })
}

/// A name as the node accepts one (`config::check_name`): non-empty, no whitespace or
/// control characters, no trailing ':', at most 256 bytes; any other Unicode. Built
/// directly, never filtered: the chars that fit in the bytes left by the last char, then a
/// last char that is not ':'.
fn valid_name() -> impl Strategy<Value = String> {
    let last = name_char().prop_map(|c| if c == ':' { ';' } else { c });
    prop_oneof![
        (vec(name_char(), 0..300), last).prop_map(|(cs, last)| {
            let room = wire::MAX_NAME - last.len_utf8();
            let mut name = String::new();
            for c in cs {
                if name.len() + c.len_utf8() > room {
                    break;
                }
                name.push(c);
            }
            name.push(last);
            name
        }),
        (250usize..=256).prop_map(|n| "n".repeat(n)),
    ]
}

/// Random ASCII case.
fn any_case(word: &'static str) -> impl Strategy<Value = String> {
    vec(any::<bool>(), word.len()).prop_map(move |up| {
        word.chars()
            .zip(up)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// Non-empty text: anything, control words in any case with or without newlines, texts
/// around the 1024-byte limit.
fn valid_text() -> impl Strategy<Value = String> {
    let word = select(vec![
        "exit",
        "[PEER_QUIT]",
        "connect",
        "handshake",
        "sent connection!",
    ])
    .prop_flat_map(any_case);
    let suffix = select(vec!["", "", "\n", "\r\n", "\n\n", "\r", " ", "\r\n\n", "x"]);
    let prefix = select(vec!["", "", " ", "\n", "a "]);
    prop_oneof![
        3 => vec(mixed_char(), 1..=40).prop_map(|cs| cs.into_iter().collect::<String>()),
        3 => (prefix, word, suffix).prop_map(|(p, w, s)| format!("{p}{w}{s}")),
        1 => select(vec!["\n", "\r\n", "\n\n", " ", "\r"]).prop_map(str::to_owned),
        2 => (900usize..1030, mixed_string(4)).prop_map(|(n, s)| "x".repeat(n) + &s),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn encode_then_parse_gives_back_what_was_sent(
        ip in ip(),
        port in 1u16..=65535,
        name in valid_name(),
        text in valid_text(),
    ) {
        // The generators build valid values; one that did not would test nothing here.
        prop_assert!(config::check_name(&name).is_ok(), "generated bad name {name:?}");
        prop_assert!(!text.is_empty(), "generated an empty text");
        let ip_text = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let len = ip_text.len() + 1 + port.to_string().len() + 1 + name.len() + 1 + text.len();
        match wire::encode(ip, port, &name, &text) {
            Err(EncodeError::TooLong { len: l, max }) => {
                prop_assert!(len > wire::LEGACY_READ_SIZE, "refused {len} bytes");
                prop_assert_eq!((l, max), (len, wire::LEGACY_READ_SIZE));
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            Ok(bytes) => {
                prop_assert!(len <= wire::LEGACY_READ_SIZE, "accepted {len} bytes");
                prop_assert_eq!(bytes.len(), len);
                // The receiver strips one trailing "\r\n" or "\n".
                let body = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text);
                if body.is_empty() {
                    // A text that is only a newline leaves nothing once it is stripped.
                    prop_assert_eq!(wire::parse(&bytes), Err(WireError::NoText));
                    return Ok(());
                }
                let msg = wire::parse(&bytes);
                prop_assert!(msg.is_ok(), "{:?} did not parse: {msg:?}", String::from_utf8_lossy(&bytes));
                let msg = msg.unwrap();
                let lower = body.to_ascii_lowercase();
                let want = match lower.as_str() {
                    "exit" | "[peer_quit]" => Body::Exit,
                    "connect" | "handshake" | "sent connection!" => Body::Connect,
                    _ => Body::Text(body.to_owned()),
                };
                prop_assert_eq!(msg, Message {
                    claimed_host: ClaimedHost::Ip(ip),
                    port: Some(port),
                    name: Some(name),
                    body: want,
                });
            }
        }
    }
}

// ----- sanitize::for_terminal -------------------------------------------------------------

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn for_terminal_leaves_nothing_dangerous(text in mixed_string(64)) {
        let out = sanitize::for_terminal(&text);
        prop_assert!(!out.chars().any(dangerous), "{text:?} -> {out:?}");
        if !text.chars().any(dangerous) {
            prop_assert_eq!(out.as_ref(), text.as_str());
        } else {
            prop_assert_ne!(out.as_ref(), text.as_str());
        }
        let lines = sanitize::for_terminal_lines(&text);
        prop_assert!(!lines.chars().any(|c| c != '\n' && dangerous(c)), "{lines:?}");
        prop_assert_eq!(lines.matches('\n').count(), text.matches('\n').count());
    }

    #[test]
    fn for_terminal_on_lossy_bytes(bytes in vec(any::<u8>(), 0..64)) {
        let text = String::from_utf8_lossy(&bytes);
        let out = sanitize::for_terminal(&text);
        prop_assert!(!out.chars().any(dangerous), "{text:?} -> {out:?}");
    }
}

// ----- render::json and render::human -----------------------------------------------------

fn opt_string() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(mixed_string(24))
}

fn peer_view() -> impl Strategy<Value = PeerView> {
    let scope = prop_oneof![3 => Just(0u32), 1 => any::<u32>()];
    (
        opt_string(),
        ip(),
        scope,
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(name, ip, scope_id, port)| PeerView {
            name,
            scope_id: if ip.is_ipv6() { scope_id } else { 0 },
            ip,
            port,
        })
}

fn purpose() -> impl Strategy<Value = Purpose> {
    select(vec![Purpose::Text, Purpose::Connect, Purpose::Exit])
}

fn send_failure() -> impl Strategy<Value = SendFailure> {
    // `Io` carries the OS's own words (`io::Error`'s text), never a peer's bytes.
    let os_words = select(vec![
        "Permission denied (os error 13)",
        "Network is unreachable (os error 101)",
        "No route to host (os error 113)",
        "",
    ]);
    prop_oneof![
        select(vec![
            SendFailure::Refused,
            SendFailure::Reset,
            SendFailure::ConnectTimedOut,
            SendFailure::Unreachable,
            SendFailure::WriteTimedOut,
            SendFailure::QueueTimedOut,
            SendFailure::Quit,
        ]),
        os_words.prop_map(|w| SendFailure::Io(w.to_owned())),
    ]
}

fn rows() -> impl Strategy<Value = Vec<PeerRow>> {
    let status = select(vec![PeerStatus::Connected, PeerStatus::YetToConnect]);
    vec((peer_view(), status), 0..4).prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (peer, status))| PeerRow {
                index: i + 1,
                peer,
                status,
                speaks: p2pchat::event::Speaks::Unknown,
                key: Default::default(),
            })
            .collect()
    })
}

fn event() -> impl Strategy<Value = Event> {
    let sock = (ip(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(ip, p));
    prop_oneof![
        1 => (sock, mixed_string(24)).prop_map(|(addr, name)| Event::Listening { addr, name, fingerprint: None }),
        1 => peer_view().prop_map(Event::NewPeer),
        1 => peer_view().prop_map(Event::ConnectedWithYou),
        4 => (peer_view(), mixed_string(64), cut(), via()).prop_map(|(from, text, cut, via)| Event::Message { from, text, cut, via }),
        1 => peer_view().prop_map(Event::PeerLeft),
        1 => (peer_view(), mixed_string(24))
            .prop_map(|(peer, claimed)| Event::AddressMismatch { peer, claimed }),
        1 => (peer_view(), purpose(), mixed_string(32), any::<bool>()).prop_map(
            |(to, purpose, text, confirmed)| Event::Sent {
                to,
                purpose,
                text,
                delivery: if confirmed {
                    p2pchat::event::Delivery::Closed
                } else {
                    p2pchat::event::Delivery::Unconfirmed
                },
                encrypted: false,
            }
        ),
        1 => (peer_view(), purpose(), mixed_string(32), send_failure()).prop_map(
            |(to, purpose, text, reason)| Event::SendFailed { to, purpose, text, reason }
        ),
        1 => rows().prop_map(Event::Peers),
        1 => rows().prop_map(Event::ConnectCandidates),
        1 => mixed_string(48).prop_map(Event::Refused),
        1 => mixed_string(48).prop_map(Event::Info),
        1 => Just(Event::Exiting),
        1 => (any::<usize>(), peer_view()).prop_map(|(number, peer)| Event::Query { number, peer }),
        1 => Just(Event::QueryEnded),
        1 => (any::<usize>(), peer_view())
            .prop_map(|(number, peer)| Event::Forgotten { number, peer }),
        1 => mixed_string(24).prop_map(Event::Renamed),
    ]
}

fn cut() -> impl Strategy<Value = Option<p2pchat::event::Cut>> {
    use p2pchat::event::Cut;
    proptest::option::of(select(vec![Cut::Reset, Cut::TimedOut, Cut::Evicted]))
}

fn via() -> impl Strategy<Value = p2pchat::event::Via> {
    use p2pchat::event::Via;
    select(vec![Via::Clear, Via::Encrypted, Via::KeyChanged])
}

fn json_name(name: &Option<String>) -> Value {
    name.clone().map_or(Value::Null, Value::String)
}

/// The (key, exact value) pairs a JSON line must carry for `event`'s free-text fields.
fn expected_json_strings(event: &Event) -> Vec<(&'static str, Value)> {
    let s = |t: &String| Value::String(t.clone());
    match event {
        Event::Listening { name, .. } => vec![("name", s(name))],
        Event::NewPeer(p) | Event::ConnectedWithYou(p) | Event::PeerLeft(p) => {
            vec![("name", json_name(&p.name))]
        }
        Event::Message { from, text, .. } => {
            vec![("name", json_name(&from.name)), ("text", s(text))]
        }
        Event::AddressMismatch { peer, claimed } => {
            vec![("name", json_name(&peer.name)), ("claimed", s(claimed))]
        }
        Event::Sent { to, text, .. } | Event::SendFailed { to, text, .. } => {
            vec![("name", json_name(&to.name)), ("text", s(text))]
        }
        Event::Refused(why) | Event::Info(why) => vec![("detail", s(why))],
        Event::Query { peer, .. } | Event::Forgotten { peer, .. } => {
            vec![("name", json_name(&peer.name))]
        }
        Event::Renamed(name) => vec![("name", s(name))],
        Event::KeyChanged { peer, .. } | Event::Downgrade { peer, .. } => {
            vec![("name", json_name(&peer.name))]
        }
        Event::Peers(_) | Event::ConnectCandidates(_) | Event::Exiting | Event::QueryEnded => {
            vec![]
        }
    }
}

fn human_line_count(event: &Event) -> usize {
    match event {
        Event::Peers(rows) | Event::ConnectCandidates(rows) if !rows.is_empty() => rows.len() + 1,
        // Our own multi-line text keeps its line breaks.
        Event::Info(text) => text.split('\n').count(),
        _ => 1,
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn json_is_one_line_with_the_exact_strings(event in event()) {
        let mut out = Vec::new();
        render::json(&event, &mut out);
        let line = String::from_utf8(out);
        prop_assert!(line.is_ok(), "not UTF-8");
        let line = line.unwrap();
        prop_assert!(line.ends_with('\n'), "{line:?}");
        prop_assert_eq!(line.matches('\n').count(), 1, "{:?}", line);
        let v = serde_json::from_str::<Value>(&line);
        prop_assert!(v.as_ref().is_ok_and(Value::is_object), "{line:?}: {v:?}");
        let v = v.unwrap();
        for (key, want) in expected_json_strings(&event) {
            prop_assert_eq!(&v[key], &want, "{}", key);
        }
        if let Event::Peers(rows) | Event::ConnectCandidates(rows) = &event {
            for (i, row) in rows.iter().enumerate() {
                prop_assert_eq!(&v["peers"][i]["name"], &json_name(&row.peer.name));
            }
        }
    }

    #[test]
    fn human_lines_carry_no_control_characters(event in event()) {
        let mut out = Vec::new();
        render::human(&event, &mut out);
        let text = String::from_utf8(out);
        prop_assert!(text.is_ok(), "not UTF-8");
        let text = text.unwrap();
        prop_assert!(text.ends_with('\n'), "{text:?}");
        prop_assert_eq!(text.matches('\n').count(), human_line_count(&event), "{:?}", text);
        for line in text.strip_suffix('\n').unwrap().split('\n') {
            prop_assert!(!line.chars().any(dangerous), "{line:?}");
        }
    }
}

// ----- the peer table ----------------------------------------------------------------------

const TIMEOUT: Duration = Duration::from_secs(20);
const LAN: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5));
const OWN_PORT: u16 = 9000;
/// Small, so that the generated peers fill the list and strangers are dropped.
const MAX_PEERS: usize = 5;

fn local() -> LocalAddrs {
    LocalAddrs::new([LAN])
}

/// Source IPs: this machine under several names, two other hosts, one of them mapped.
fn source() -> impl Strategy<Value = IpAddr> {
    select(vec![
        "127.0.0.1",
        "127.0.1.1",
        "192.168.1.5",
        "::1",
        "::ffff:127.0.0.1",
        "10.0.0.7",
        "::ffff:10.0.0.7",
        "10.0.0.8",
        "fe80::1",
    ])
    .prop_map(|s| s.parse::<IpAddr>().expect("source IP"))
}

/// The socket address a message from `ip` comes from: an ephemeral port, and for the
/// link-local source the interface (scope) it arrived on.
fn from(ip: IpAddr) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            std::net::SocketAddrV6::new(v6, 51000, 0, 2).into()
        }
        ip => SocketAddr::new(ip, 51000),
    }
}

/// Few ports, so that peers collide; 9000 is this node's own.
fn peer_port() -> impl Strategy<Value = u16> {
    select(vec![OWN_PORT, 5000, 5001])
}

fn peer_name() -> impl Strategy<Value = String> {
    select(vec!["alice", "bob", "bob", "carol", "é\u{202e}"]).prop_map(str::to_owned)
}

/// What a peer might say: chat, or the control words in their several spellings.
fn chat_text() -> impl Strategy<Value = String> {
    select(vec![
        "hi",
        "hello world",
        "exit",
        "EXIT",
        "[PEER_QUIT]",
        "connect",
        "handshake",
        "sent connection!",
        "exit\n",
        "exiting",
        "a\u{1b}[2J",
    ])
    .prop_map(str::to_owned)
}

/// Raw payloads in the accepted variants (some do not parse; those are dropped).
fn raw_payload() -> impl Strategy<Value = Vec<u8>> {
    let host = select(vec![
        "10.0.0.7",
        "10.0.0.8",
        "127.0.0.1",
        "192.168.1.5",
        "[::1]",
        "my-host.lan",
        "1.2.3.4",
    ]);
    let port = select(vec!["9000", "5000", "5001", "0"]);
    let nl = select(vec!["", "", "\n", "\r\n"]);
    prop_oneof![
        4 => (host, port.clone(), any::<bool>(), peer_name(), chat_text(), nl.clone()).prop_map(
            |(h, p, angle, n, t, nl)| if angle {
                format!("<{h}:{p}> {n} {t}{nl}")
            } else {
                format!("{h}:{p} {n} {t}{nl}")
            }
        ),
        1 => (port, nl).prop_map(|(p, nl)| format!("CONNECT:{p}{nl}")),
        1 => (peer_name(), chat_text()).prop_map(|(n, t)| format!("{n}: {t}")),
    ]
    .prop_map(String::into_bytes)
}

fn constructed_message() -> impl Strategy<Value = Message> {
    let claim = prop_oneof![
        source().prop_map(ClaimedHost::Ip),
        Just(ClaimedHost::Name("my-host.lan".to_owned())),
        Just(ClaimedHost::Absent),
    ];
    let body = prop_oneof![
        3 => mixed_string(16).prop_map(Body::Text),
        1 => Just(Body::Connect),
        1 => Just(Body::Exit),
    ];
    let port = prop_oneof![4 => peer_port().prop_map(Some), 1 => Just(None), 1 => Just(Some(1))];
    let name = prop_oneof![
        4 => peer_name().prop_map(Some),
        1 => Just(None),
        1 => Just(Some(String::new())),
    ];
    (claim, port, name, body).prop_map(|(claimed_host, port, name, body)| Message {
        claimed_host,
        port,
        name,
        body,
    })
}

fn target(busy: bool) -> impl Strategy<Value = Target> {
    let special = select(vec![
        "0.0.0.0:5000",
        "[::]:5000",
        "224.0.0.1:5000",
        "10.0.0.7:0",
    ])
    .prop_map(|s| s.parse::<SocketAddr>().expect("socket address"));
    let w = if busy { 0 } else { 1 };
    prop_oneof![
        3 => (source(), peer_port()).prop_map(|(ip, p)| Target::Addr(SocketAddr::new(ip, p))),
        w => special.prop_map(Target::Addr),
        2 * w => (0usize..5).prop_map(Target::Index),
        // Numbers are never reused: peers that come and go take ever higher ones.
        3 => (1usize..=12).prop_map(Target::Index),
        2 * w => peer_name().prop_map(Target::Name),
    ]
}

fn send_text(busy: bool) -> impl Strategy<Value = String> {
    let w = if busy { 0 } else { 1 };
    prop_oneof![
        6 => chat_text(),
        3 * (1 - w) => select(vec!["hi", "hello world", "a\u{1b}[2J"]).prop_map(str::to_owned),
        w => Just(String::new()),
        // Fits behind an IPv4 header, not behind the longest IPv6 one.
        w => Just("x".repeat(990)),
        w => Just("x".repeat(1100)),
    ]
}

fn which() -> impl Strategy<Value = Which> {
    prop_oneof![
        Just(Which::All),
        vec(0usize..12, 0..4).prop_map(Which::Indices),
        (0usize..6).prop_map(Which::Candidate),
    ]
}

/// What the reactor reports about a send's socket.
#[derive(Debug, Clone)]
enum Report {
    /// Connected, from this local address.
    Connected(SocketAddr),
    Written,
    Closed,
    TalkedBack,
    Error(io::ErrorKind),
}

impl Report {
    /// Does this report end the send (the reactor has dropped its socket)?
    fn ends(&self) -> bool {
        matches!(self, Report::Closed | Report::TalkedBack | Report::Error(_))
    }
}

fn report() -> impl Strategy<Value = Report> {
    // Local addresses: ordinary ones, the longest of each family (a header that fills the
    // length bound), and one of the other family (which the bound does not cover).
    let local = select(vec![
        "10.0.0.1:40000",
        "127.0.0.1:40001",
        "255.255.255.255:1",
        "[2001:db8::1]:40000",
        "[::ffff:10.0.0.1]:40002",
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1",
    ])
    .prop_map(|s| s.parse::<SocketAddr>().expect("socket address"));
    let kind = select(vec![
        io::ErrorKind::ConnectionRefused,
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::TimedOut,
        io::ErrorKind::NotConnected,
        io::ErrorKind::HostUnreachable,
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::PermissionDenied,
    ]);
    prop_oneof![
        4 => local.prop_map(Report::Connected),
        3 => Just(Report::Written),
        3 => Just(Report::Closed),
        1 => Just(Report::TalkedBack),
        2 => kind.prop_map(Report::Error),
    ]
}

/// Which send a report is for.
#[derive(Debug, Clone)]
enum ReportFor {
    /// The n-th (mod count) send in flight.
    InFlight(usize),
    /// The n-th (mod count) send ever transmitted, finished or not.
    Transmitted(usize),
    /// Any id: small ones may name sends that are queued, not in flight.
    Bogus(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Raw(IpAddr, Vec<u8>),
    Msg(IpAddr, Message),
    Send(Target, String),
    Connect(Which),
    List,
    ListCandidates,
    Quit,
    Report(ReportFor, Report),
    /// `handle_timeout` now, or (`true`) at the table's next deadline if that is later.
    Timeout(bool),
    /// The node leaves at once (a second signal).
    Abandon,
}

/// The inputs to the table. `busy` favours many sends to few peers (so that sends queue
/// behind each other) over the rarer inputs.
fn op(busy: bool) -> impl Strategy<Value = Op> {
    let b = u32::from(busy);
    let report_for = prop_oneof![
        6 => any::<usize>().prop_map(ReportFor::InFlight),
        1 => any::<usize>().prop_map(ReportFor::Transmitted),
        1 => prop_oneof![0u64..40, any::<u64>()].prop_map(ReportFor::Bogus),
    ];
    prop_oneof![
        6 => (source(), raw_payload()).prop_map(|(s, p)| Op::Raw(s, p)),
        6 => (source(), constructed_message()).prop_map(|(s, m)| Op::Msg(s, m)),
        12 + 12 * b => (target(busy), send_text(busy)).prop_map(|(t, x)| Op::Send(t, x)),
        4 => which().prop_map(Op::Connect),
        2 => Just(Op::List),
        2 => Just(Op::ListCandidates),
        1 => Just(Op::Quit),
        24 => (report_for, report()).prop_map(|(d, r)| Op::Report(d, r)),
        4 => any::<bool>().prop_map(Op::Timeout),
        1 - b => Just(Op::Abandon),
    ]
}

/// Time passing before a step, in milliseconds: often none, often around the timeout.
fn delay_ms(busy: bool) -> impl Strategy<Value = u64> {
    let w = if busy { 1 } else { 4 };
    prop_oneof![
        12 => Just(0u64),
        6 => 0u64..3_000,
        w => select(vec![19_999u64, 20_000, 20_001]),
        w => 0u64..60_000,
    ]
}

fn steps() -> impl Strategy<Value = Vec<(u64, Op)>> {
    any::<bool>().prop_flat_map(|busy| vec((delay_ms(busy), op(busy)), 1..80))
}

/// Drives one table through `steps`, checking after every step.
struct Harness {
    table: PeerTable,
    local: LocalAddrs,
    now: Instant,
    /// Every send ever transmitted, and the peer it went to.
    transmitted: Vec<SendId>,
    sent_to: HashMap<SendId, SocketAddr>,
    /// Transmitted and not finished: the table's sends in flight.
    in_flight: Vec<SendId>,
    exits: usize,
    quit_called: bool,
    abandoned: bool,
    /// Once quitting: how many sends were queued (not in flight) when the quit came, and
    /// so may still start, and the lowest id the quit itself handed out, if it sent any.
    quit_budget: Option<usize>,
    quit_floor: Option<SendId>,
    /// Every number the list has given, and to whom: a number is never given twice.
    numbers: HashMap<usize, SocketAddr>,
    log: Vec<String>,
}

impl Harness {
    fn new() -> Self {
        let table = PeerTable::new(TableConfig {
            name: "me".to_owned(),
            port: OWN_PORT,
            advertise: None,
            timeout: TIMEOUT,
            local: local(),
            max_peers: MAX_PEERS,
            max_peers_per_host: 2,
            limit_local: false,
            fast: None,
        });
        Harness {
            table,
            local: local(),
            now: Instant::now(),
            transmitted: Vec::new(),
            sent_to: HashMap::new(),
            in_flight: Vec::new(),
            exits: 0,
            quit_called: false,
            abandoned: false,
            quit_budget: None,
            quit_floor: None,
            numbers: HashMap::new(),
            log: Vec::new(),
        }
    }

    fn fail(&self, why: String) -> TestCaseError {
        TestCaseError::fail(format!("{why}\nsteps:\n{}", self.log.join("\n")))
    }

    fn key(&self, addr: SocketAddr) -> SocketAddr {
        self.local.key(addr.ip(), addr.port()).0
    }

    fn statuses(&self) -> Result<HashMap<SocketAddr, PeerStatus>, TestCaseError> {
        let mut seen = HashMap::new();
        for (key, peer) in self.table.peers() {
            if seen.insert(key.0, peer.status).is_some() {
                return Err(self.fail(format!("duplicate key {key} in peers()")));
            }
        }
        Ok(seen)
    }

    /// Peers are listed in number order; a peer keeps its number while listed, and a
    /// number once given never names another peer (nor the same peer after it left).
    fn check_numbers(
        &mut self,
        before: &HashMap<SocketAddr, PeerStatus>,
    ) -> Result<(), TestCaseError> {
        let highest = self.numbers.keys().max().copied().unwrap_or(0);
        let mut last = 0;
        for (key, peer) in self.table.peers() {
            if peer.number <= last {
                return Err(self.fail(format!("#{} listed after #{last}", peer.number)));
            }
            last = peer.number;
            let new = !before.contains_key(&key.0);
            match self.numbers.insert(peer.number, key.0) {
                Some(k) if k != key.0 => {
                    return Err(self.fail(format!("#{} was {k}, now {key}", peer.number)));
                }
                Some(_) if new => {
                    return Err(
                        self.fail(format!("{key} came back under its old #{}", peer.number))
                    );
                }
                None if peer.number <= highest => {
                    return Err(self.fail(format!("new #{} not above #{highest}", peer.number)));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies one input; for a report, returns the send it was about.
    fn apply(&mut self, op: &Op) -> Option<SendId> {
        let now = self.now;
        match op.clone() {
            Op::Raw(src, bytes) => {
                if let Ok(msg) = wire::parse(&bytes) {
                    self.table.handle_message(now, from(src), msg);
                }
            }
            Op::Msg(src, msg) => self.table.handle_message(now, from(src), msg),
            Op::Send(target, text) => self.table.send(now, target, &text),
            Op::Connect(which) => self.table.connect(now, which),
            Op::List => self.table.list(),
            Op::ListCandidates => self.table.list_candidates(),
            Op::Quit => {
                self.quit_called = true;
                self.table.quit(now);
            }
            Op::Report(which, report) => {
                let pick = |ids: &[SendId], n: usize| ids.get(n % ids.len().max(1)).copied();
                let id = match which {
                    ReportFor::InFlight(n) => pick(&self.in_flight, n),
                    ReportFor::Transmitted(n) => pick(&self.transmitted, n),
                    ReportFor::Bogus(id) => Some(SendId(id)),
                }
                .unwrap_or(SendId(0));
                match report {
                    Report::Connected(local) => self.table.handle_send_connected(now, id, local),
                    Report::Written => self.table.handle_send_written(now, id),
                    Report::Closed => self.table.handle_send_closed(now, id),
                    Report::TalkedBack => self.table.handle_send_talked_back(now, id),
                    Report::Error(kind) => {
                        self.table.handle_send_error(now, id, io::Error::from(kind))
                    }
                }
                return Some(id);
            }
            Op::Timeout(jump) => {
                if jump {
                    self.now = self.now.max(self.table.poll_timeout().unwrap_or(now));
                }
                self.table.handle_timeout(self.now);
            }
            Op::Abandon => {
                self.abandoned = true;
                self.table.abandon();
            }
        }
        None
    }

    /// One input at `delay` ms after the previous one; returns the effects it produced.
    fn step(&mut self, delay: u64, op: &Op) -> Result<Vec<Effect>, TestCaseError> {
        self.now += Duration::from_millis(delay);
        self.log.push(format!("+{delay}ms {op:?}"));
        let before = self.statuses()?;
        let exited_before = self.exits > 0;
        let was_quitting = self.table.is_quitting();
        // The table's sends in flight are exactly those transmitted and not finished.
        for id in &self.in_flight {
            if self.table.send_stage(*id).is_none() {
                return Err(self.fail(format!("{id:?} is no longer in flight")));
            }
        }
        let queued = self
            .table
            .pending_sends()
            .checked_sub(self.in_flight.len())
            .ok_or_else(|| self.fail("fewer sends pending than in flight".into()))?;
        let stages: HashMap<SendId, SendStage> = self
            .in_flight
            .iter()
            .filter_map(|id| Some((*id, self.table.send_stage(*id)?)))
            .collect();
        let reported = self.apply(op);
        let now = self.now;
        let mut fx = Vec::new();
        while let Some(e) = self.table.poll_effect() {
            fx.push(e);
        }
        self.table
            .check_invariants()
            .map_err(|e| self.fail(format!("invariant: {e}; effects {fx:?}")))?;
        // The sends in flight that this step ended, and how the reactor learnt of it.
        let ended: Vec<SendId> = self
            .in_flight
            .iter()
            .copied()
            .filter(|id| self.table.send_stage(*id).is_none())
            .collect();
        self.in_flight.retain(|id| !ended.contains(id));
        let aborted: Vec<SendId> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Abort(id) => Some(*id),
                _ => None,
            })
            .collect();
        for id in &ended {
            let told_by_reactor =
                reported == Some(*id) && matches!(op, Op::Report(_, r) if r.ends());
            if told_by_reactor == aborted.contains(id) {
                return Err(self.fail(format!(
                    "{id:?} ended: reported by the reactor {told_by_reactor}, aborted {}",
                    aborted.contains(id)
                )));
            }
        }
        for id in &aborted {
            if !ended.contains(id) {
                return Err(self.fail(format!("{id:?} aborted but was not in flight")));
            }
        }
        // Peers whose `connect` was confirmed (delivered or unconfirmed) in this step.
        let connected: Vec<SocketAddr> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Show(Event::Sent {
                    to,
                    purpose: Purpose::Connect,
                    ..
                }) => Some(self.key(SocketAddr::new(to.ip, to.port?))),
                _ => None,
            })
            .collect();
        let quitting = self.table.is_quitting();
        if quitting && !was_quitting {
            self.quit_budget = Some(queued);
            self.quit_floor = fx
                .iter()
                .filter_map(|e| match e {
                    Effect::Transmit(t) => Some(t.id),
                    _ => None,
                })
                .min();
        }
        for e in &fx {
            match e {
                Effect::Exit => {
                    self.exits += 1;
                    if self.exits > 1 {
                        return Err(self.fail("Effect::Exit emitted twice".into()));
                    }
                    if !self.quit_called {
                        return Err(self.fail("Effect::Exit without a quit".into()));
                    }
                }
                Effect::Transmit(t) => {
                    let key = self.key(t.to);
                    let pk = self.local.key(t.to.ip(), t.to.port());
                    if self.table.peer(&pk).is_some() && self.table.is_stranger(&pk) {
                        return Err(self.fail(format!("{t:?}: a peer we send to is a stranger")));
                    }
                    let Some(pending) = self.table.pending_send(t.id) else {
                        return Err(self.fail(format!("{t:?} is not pending")));
                    };
                    if pending.stage != Some(SendStage::Connecting) || pending.to != t.to {
                        return Err(self.fail(format!("{t:?} is {pending:?}")));
                    }
                    if pending.deadline <= now {
                        return Err(self.fail(format!("{t:?} is already due at emission")));
                    }
                    if exited_before || self.abandoned {
                        return Err(self.fail(format!("{t:?} after the node left")));
                    }
                    if quitting && pending.purpose != Purpose::Exit {
                        self.check_started_while_quitting(t, key, was_quitting, &ended)?;
                    }
                    if self.sent_to.insert(t.id, key).is_some() {
                        return Err(self.fail(format!("{:?} transmitted twice", t.id)));
                    }
                    self.transmitted.push(t.id);
                    self.in_flight.push(t.id);
                }
                Effect::Write { id, payload } => self.check_write(*id, payload, &stages, op)?,
                Effect::Abort(_) | Effect::Show(_) => {}
                other => return Err(self.fail(format!("fast path is off here: {other:?}"))),
            }
        }
        let after = self.statuses()?;
        self.check_numbers(&before)?;
        // The network never grows the list past --max-peers (the user's sends may).
        let from_network = matches!(op, Op::Raw(..) | Op::Msg(..));
        if from_network && after.len() > before.len().max(MAX_PEERS) {
            return Err(self.fail(format!("a message grew the list to {}", after.len())));
        }
        for (key, status) in &after {
            match (before.get(key), status) {
                (None, PeerStatus::Connected) => {
                    return Err(self.fail(format!("{key} appeared already connected")));
                }
                (Some(PeerStatus::YetToConnect), PeerStatus::Connected)
                    if !connected.contains(key) =>
                {
                    return Err(self.fail(format!(
                        "{key} became connected without a successful connect"
                    )));
                }
                (Some(PeerStatus::Connected), PeerStatus::YetToConnect) => {
                    return Err(self.fail(format!("{key} went back to yet-to-connect")));
                }
                _ => {}
            }
        }
        Ok(fx)
    }

    /// A payload is asked for only when a send in flight reports its connection, and it is
    /// the legacy message: `IP:PORT me TEXT`, this node's port, within what the original
    /// reads, the text that was asked for.
    fn check_write(
        &self,
        id: SendId,
        payload: &[u8],
        stages: &HashMap<SendId, SendStage>,
        op: &Op,
    ) -> Result<(), TestCaseError> {
        let connected_now = matches!(op, Op::Report(_, Report::Connected(_)))
            && stages.get(&id) == Some(&SendStage::Connecting);
        if !connected_now || self.table.send_stage(id) != Some(SendStage::Writing) {
            return Err(self.fail(format!("Write for {id:?} after {op:?}")));
        }
        let Some(pending) = self.table.pending_send(id) else {
            return Err(self.fail(format!("Write for {id:?}, which is not pending")));
        };
        if payload.len() > wire::LEGACY_READ_SIZE {
            return Err(self.fail(format!("{id:?}: {} bytes on the wire", payload.len())));
        }
        let parsed = wire::parse(payload);
        let Ok(msg) = parsed else {
            return Err(self.fail(format!("{id:?}: payload does not parse: {parsed:?}")));
        };
        let want = format!(" me {}", pending.text);
        if msg.port != Some(OWN_PORT)
            || msg.name.as_deref() != Some("me")
            || !payload.ends_with(want.as_bytes())
        {
            return Err(self.fail(format!(
                "{id:?}: payload {:?}",
                String::from_utf8_lossy(payload)
            )));
        }
        Ok(())
    }

    /// While quitting, only `exit`s are asked for; what was queued before the quit still
    /// goes out in order (a script piped into stdin runs to its end, then quits). So a
    /// non-`exit` send may start only when the send ahead of it to the same peer finishes,
    /// only if it was queued before the quit, and no more of them than were queued then.
    fn check_started_while_quitting(
        &mut self,
        t: &Transmit,
        key: SocketAddr,
        was_quitting: bool,
        ended: &[SendId],
    ) -> Result<(), TestCaseError> {
        if !was_quitting {
            return Err(self.fail(format!("{t:?} started by the quit")));
        }
        if !ended.iter().any(|id| self.sent_to.get(id) == Some(&key)) {
            return Err(self.fail(format!(
                "{t:?} while quitting, not behind a send to that peer that just finished"
            )));
        }
        if self.quit_floor.is_some_and(|floor| t.id >= floor) {
            return Err(self.fail(format!("{t:?} while quitting was asked for after the quit")));
        }
        match &mut self.quit_budget {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                return Err(self.fail(format!(
                    "{t:?} while quitting: more sends started than were queued at the quit"
                )));
            }
        }
        Ok(())
    }

    /// Delivers send `id` as a well-behaved peer would: connected, written, closed.
    fn deliver(&mut self, id: SendId) -> Result<Vec<Effect>, TestCaseError> {
        let n = self
            .in_flight
            .iter()
            .position(|x| *x == id)
            .unwrap_or(usize::MAX);
        let local = "10.0.0.1:40000".parse().expect("socket address");
        let mut fx = Vec::new();
        for report in [Report::Connected(local), Report::Written, Report::Closed] {
            fx = self.step(0, &Op::Report(ReportFor::InFlight(n), report))?;
        }
        Ok(fx)
    }

    /// Delivers every send in flight, then lets all deadlines pass: nothing may be left,
    /// and a node that was told to quit has left, once.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        let mut rounds = 0;
        while let Some(&id) = self.in_flight.first() {
            rounds += 1;
            if rounds > 10_000 {
                return Err(self.fail("sends never finish".into()));
            }
            self.deliver(id)?;
        }
        self.step(3_600_000, &Op::Timeout(false))?;
        if self.table.pending_sends() != 0 {
            return Err(self.fail(format!(
                "{} sends pending after all were answered",
                self.table.pending_sends()
            )));
        }
        if self.quit_called && !self.abandoned && self.exits != 1 {
            return Err(self.fail("quit, every send answered, yet no Effect::Exit".into()));
        }
        if self.table.poll_timeout().is_some() {
            return Err(self.fail("a deadline is left with nothing pending".into()));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn peer_table_keeps_its_invariants(steps in steps()) {
        let mut h = Harness::new();
        h.table.check_invariants().map_err(TestCaseError::fail)?;
        for (delay, op) in &steps {
            h.step(*delay, op)?;
        }
        h.finish()?;
    }
}

/// Quitting while sends wait behind one in flight: the queued ones still go out in order
/// (as a script piped into stdin expects), then the `exit`; nothing new is accepted.
#[test]
fn sends_queued_before_a_quit_still_go_out_in_order_then_exit() {
    let mut h = Harness::new();
    let alice = Target::Addr("10.0.0.7:5000".parse().expect("address"));
    let step = |h: &mut Harness, op: Op| h.step(0, &op).expect("property holds");
    let texts = |h: &Harness, fx: &[Effect]| -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Show(Event::Sent { text, .. }) => Some(format!("sent {text}")),
                Effect::Show(Event::Refused(_)) => Some("refused".to_owned()),
                Effect::Transmit(t) => {
                    let text = h.table.pending_send(t.id).expect("pending").text;
                    Some(format!("transmit {text}"))
                }
                _ => None,
            })
            .collect()
    };
    let fx = step(&mut h, Op::Send(alice.clone(), "one".into()));
    assert_eq!(texts(&h, &fx), ["transmit one"]);
    let fx = step(&mut h, Op::Send(alice.clone(), "two".into()));
    assert!(texts(&h, &fx).is_empty());
    step(&mut h, Op::Quit);
    let fx = step(&mut h, Op::Send(alice, "three".into()));
    assert_eq!(texts(&h, &fx), ["refused"]);
    let fx = h.deliver(SendId(0)).expect("property holds");
    assert_eq!(texts(&h, &fx), ["sent one", "transmit two"]);
    let fx = h.deliver(SendId(1)).expect("property holds");
    assert_eq!(texts(&h, &fx), ["sent two", "transmit exit"]);
    h.finish().expect("property holds");
    assert_eq!(h.exits, 1);
}
