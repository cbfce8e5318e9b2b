//! Turns [`Event`]s into output lines: the original's human wording, or one JSON object per
//! line (`--json`). Pure: it appends to a buffer the reactor writes out.
//!
//! Human lines pass every peer-chosen string through [`sanitize::for_terminal`]; JSON lines
//! carry the exact text, escaped by the JSON encoder (always valid JSON, whatever the bytes).

use std::fmt;
use std::io::Write;

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::event::{
    Cut, Delivery, Event, PeerHost, PeerRow, PeerView, Purpose, SendFailure, Speaks, Via,
};
use crate::sanitize::{self, for_terminal, name_for_terminal};

/// Appends the human form of `event` (one or more complete lines) to `out`.
pub fn human(event: &Event, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write_human(event, out);
}

/// `NAME [IP:PORT]`, the name made safe, written straight into the output.
struct Who<'a>(&'a PeerView);

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        write!(
            f,
            "{} [{}]",
            name_for_terminal(p.name_or_unknown()),
            p.addr()
        )
    }
}

fn who(p: &PeerView) -> Who<'_> {
    Who(p)
}

fn write_human(event: &Event, out: &mut Vec<u8>) -> std::io::Result<()> {
    match event {
        Event::Listening { addr, .. } => writeln!(out, "Server listening on port {}", addr.port()),
        Event::NewPeer(p) => writeln!(out, "New peer found: {}", who(p)),
        Event::ConnectedWithYou(p) => writeln!(out, "{} connected with you", who(p)),
        Event::Message {
            from,
            text,
            cut,
            via,
        } => {
            let how = if via.encrypted() { " (encrypted)" } else { "" };
            write!(
                out,
                "Message from {}{how}: {}",
                who(from),
                for_terminal(text)
            )?;
            if let Some(cut) = cut {
                write!(out, " [may be cut short: {cut}]")?;
            }
            writeln!(out)
        }
        Event::PeerLeft(p) => writeln!(out, "{} disconnected", who(p)),
        Event::AddressMismatch { peer, claimed } => writeln!(
            out,
            "Note: {} says it is at {}; using the address it connected from",
            who(peer),
            for_terminal(claimed)
        ),
        Event::Sent {
            to,
            purpose,
            text,
            delivery,
            encrypted,
        } => {
            let confirmed = delivery.confirmed();
            // Said per message: went inside an encrypted stream (never on a legacy
            // peer's line, which reads as the original's).
            let how = if *encrypted { " (encrypted)" } else { "" };
            match purpose {
                // "Delivered" only with a receipt from a p2pchat peer; a legacy peer's
                // close says "sent", as the original says.
                Purpose::Text if *delivery == Delivery::Receipt => write!(
                    out,
                    "Message delivered to {}{how}: {}",
                    who(to),
                    for_terminal(text)
                ),
                Purpose::Text => write!(
                    out,
                    "Message sent to {}{how}: {}",
                    who(to),
                    for_terminal(text)
                ),
                // "Successfully" only when the peer confirmed it (by closing or a receipt).
                Purpose::Connect if confirmed => {
                    write!(out, "Successfully connected to {}", who(to))
                }
                Purpose::Connect => write!(out, "Connected to {}", who(to)),
                Purpose::Exit => write!(out, "Disconnected from {}", who(to)),
            }?;
            if !confirmed {
                write!(
                    out,
                    " (unconfirmed: the peer had not closed the connection)"
                )?;
            }
            writeln!(out)
        }
        Event::SendFailed {
            to,
            purpose,
            text,
            reason,
        } => {
            if *reason == SendFailure::KeyChanged {
                // Refused here, not a failure to reach it: say what to do, and to whom.
                write!(
                    out,
                    "Not sent to {}: its key changed: check the new key with them, then \
                     /trust {}",
                    who(to),
                    to.addr()
                )?;
            } else {
                write!(out, "Failed to contact {}: {reason}", who(to))?;
            }
            match purpose {
                Purpose::Text => writeln!(out, "; not delivered: {}", for_terminal(text)),
                Purpose::Connect => writeln!(out, "; still not connected"),
                Purpose::Exit => {
                    writeln!(out, "; it may not know you left (removed from the list)")
                }
            }
        }
        Event::Peers(rows) if rows.is_empty() => writeln!(out, "No active peers."),
        Event::Peers(rows) => {
            writeln!(out, "Active Peers:")?;
            write_rows(rows, out)
        }
        Event::ConnectCandidates(rows) if rows.is_empty() => {
            writeln!(out, "No peers remaining for connection.")
        }
        Event::ConnectCandidates(rows) => {
            writeln!(out, "Active Peers remaining for connection:")?;
            write_rows(rows, out)
        }
        Event::Refused(why) => writeln!(out, "{}", for_terminal(why)),
        Event::Info(text) => writeln!(out, "{}", sanitize::for_terminal_lines(text)),
        Event::Query { number, peer } => writeln!(
            out,
            "Talking to #{number} {}: plain text goes there (/query alone to stop)",
            who(peer)
        ),
        Event::QueryEnded => writeln!(
            out,
            "No current peer: choose one with /query NAME|#N|IP:PORT, or send with /msg"
        ),
        Event::Forgotten { number, peer } => writeln!(
            out,
            "Forgot #{number} {}: removed from the list, nothing sent to it",
            who(peer)
        ),
        Event::Renamed(name) => writeln!(
            out,
            "You are now {}: messages sent from now on carry this name",
            name_for_terminal(name)
        ),
        Event::KeyChanged {
            peer,
            old_fingerprint,
            new_fingerprint,
        } => writeln!(
            out,
            "WARNING: {} presents another key than before: was {old_fingerprint}, now \
             {new_fingerprint}. If they made a new key, check it with them, then /trust {}",
            who(peer),
            peer.addr()
        ),
        Event::Downgrade { peer, was, now } => writeln!(
            out,
            "WARNING: downgrade: {} spoke {was}; now: {now}. Messages between you go \
             unencrypted",
            who(peer)
        ),
        Event::Exiting => writeln!(out, "Exiting..."),
    }
}

fn write_rows(rows: &[PeerRow], out: &mut Vec<u8>) -> std::io::Result<()> {
    for row in rows {
        write!(
            out,
            "{}. {} - {}",
            row.index,
            who(&row.peer),
            row.status.as_str()
        )?;
        // Each peer as legacy, encrypted (and verified), or plaintext `p2pchat/1`; a peer
        // not asked yet and with no key on record, as the original shows it.
        let kind = row
            .key
            .kind(row.speaks)
            .filter(|_| row.key.encrypted || row.key.changed);
        match (row.speaks, kind) {
            (Speaks::P2pchat(v), Some(kind)) => writeln!(out, " (p2pchat/{v}, {kind})")?,
            (Speaks::P2pchat(v), None) => writeln!(out, " (p2pchat/{v})")?,
            (Speaks::Legacy, None) => writeln!(out, " (legacy)")?,
            (_, Some(kind)) => writeln!(out, " ({kind})")?,
            _ => writeln!(out)?,
        }
    }
    Ok(())
}

fn purpose(p: Purpose) -> &'static str {
    match p {
        Purpose::Text => "text",
        Purpose::Connect => "connect",
        Purpose::Exit => "exit",
    }
}

/// Every `--json` line, from one derived encoder: `event` first, then the fields the event
/// has, in this order; fields an event does not have are left out (a peer's unknown name
/// or port is `null`). Borrowed throughout: a message line allocates nothing.
#[derive(serde::Serialize, Default)]
struct Line<'a> {
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<PeerHost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<Option<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claimed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peers: Option<Vec<Row<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cut: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encrypted: Option<bool>,
    /// On a message: present (true) when it came from another key than the one on record.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    was: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    now: Option<&'a str>,
}

/// One peer in a `peers` or `connect_candidates` line.
#[derive(serde::Serialize)]
struct Row<'a> {
    index: usize,
    name: Option<&'a str>,
    ip: PeerHost,
    port: Option<u16>,
    status: &'static str,
    /// `"p2pchat/N"`, `"legacy"` or `"unknown"`.
    speaks: Cow<'static, str>,
    /// `"p2pchat (plaintext)"`, `"encrypted"`, `"encrypted, verified"` or `"KEY
    /// CHANGED"`; absent for a legacy or unknown peer (rows read as before for them).
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// The peer's key's fingerprint; absent while none is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
}

impl<'a> Line<'a> {
    fn of(event: &'static str) -> Self {
        Line {
            event,
            ..Line::default()
        }
    }

    fn peer(event: &'static str, p: &'a PeerView) -> Self {
        Line {
            name: Some(p.name.as_deref()),
            ip: Some(p.host()),
            port: Some(p.port),
            ..Line::of(event)
        }
    }

    fn rows(event: &'static str, rows: &'a [PeerRow]) -> Self {
        let rows = rows
            .iter()
            .map(|r| Row {
                index: r.index,
                name: r.peer.name.as_deref(),
                ip: r.peer.host(),
                port: r.peer.port,
                status: r.status.as_str(),
                speaks: match r.speaks {
                    Speaks::P2pchat(v) => Cow::Owned(format!("p2pchat/{v}")),
                    Speaks::Legacy => Cow::Borrowed("legacy"),
                    Speaks::Unknown => Cow::Borrowed("unknown"),
                },
                kind: r.key.kind(r.speaks).filter(|k| *k != "legacy"),
                fingerprint: r.key.fingerprint.as_deref(),
            })
            .collect();
        Line {
            peers: Some(rows),
            ..Line::of(event)
        }
    }

    fn new(event: &'a Event) -> Self {
        match event {
            Event::Listening {
                addr,
                name,
                fingerprint,
            } => Line {
                name: Some(Some(name)),
                port: Some(Some(addr.port())),
                addr: Some(*addr),
                fingerprint: Some(fingerprint.as_deref()),
                ..Line::of("listening")
            },
            Event::NewPeer(p) => Line::peer("new_peer", p),
            Event::ConnectedWithYou(p) => Line::peer("connected_with_you", p),
            Event::Message {
                from,
                text,
                cut,
                via,
            } => Line {
                text: Some(text),
                cut: cut.map(Cut::code),
                encrypted: via.encrypted().then_some(true),
                key_changed: (*via == Via::KeyChanged).then_some(true),
                ..Line::peer("message", from)
            },
            Event::PeerLeft(p) => Line::peer("peer_left", p),
            Event::AddressMismatch { peer, claimed } => Line {
                claimed: Some(claimed),
                ..Line::peer("address_mismatch", peer)
            },
            Event::Sent {
                to,
                purpose: p,
                text,
                delivery,
                encrypted,
            } => Line {
                kind: Some(purpose(*p)),
                text: Some(text),
                confirmed: Some(delivery.confirmed()),
                delivery: Some(delivery.code()),
                encrypted: Some(*encrypted),
                ..Line::peer("sent", to)
            },
            Event::SendFailed {
                to,
                purpose: p,
                text,
                reason,
            } => Line {
                kind: Some(purpose(*p)),
                text: Some(text),
                delivery: Some(Delivery::Unconfirmed.code()),
                reason: Some(reason.code()),
                detail: Some(Cow::Owned(reason.to_string())),
                ..Line::peer("send_failed", to)
            },
            Event::Peers(rows) => Line::rows("peers", rows),
            Event::ConnectCandidates(rows) => Line::rows("connect_candidates", rows),
            Event::Refused(why) => Line {
                detail: Some(Cow::Borrowed(why)),
                ..Line::of("error")
            },
            Event::Info(text) => Line {
                detail: Some(Cow::Borrowed(text)),
                ..Line::of("info")
            },
            Event::Query { number, peer } => Line {
                number: Some(*number),
                ..Line::peer("query", peer)
            },
            Event::QueryEnded => Line::of("query_ended"),
            Event::Forgotten { number, peer } => Line {
                number: Some(*number),
                ..Line::peer("forgotten", peer)
            },
            Event::Renamed(name) => Line {
                name: Some(Some(name)),
                ..Line::of("renamed")
            },
            Event::KeyChanged {
                peer,
                old_fingerprint,
                new_fingerprint,
            } => Line {
                old_fingerprint: Some(old_fingerprint),
                new_fingerprint: Some(new_fingerprint),
                ..Line::peer("key_changed", peer)
            },
            Event::Downgrade { peer, was, now } => Line {
                was: Some(was),
                now: Some(now),
                ..Line::peer("downgrade", peer)
            },
            Event::Exiting => Line::of("exiting"),
        }
    }
}

/// Appends `event` as one JSON line to `out`.
pub fn json(event: &Event, out: &mut Vec<u8>) {
    let direct = match event {
        Event::Message {
            from,
            text,
            cut: None,
            via: via @ (Via::Clear | Via::Encrypted),
        } => hot_line("message", from, text, Hot::Message(via.encrypted()), out),
        Event::Sent {
            to,
            purpose,
            text,
            delivery,
            encrypted,
        } => hot_line(
            "sent",
            to,
            text,
            Hot::Sent(*purpose, *delivery, *encrypted),
            out,
        ),
        _ => false,
    };
    if !direct {
        json_line(&Line::new(event), out);
    }
}

/// [`json`], with the peer's key's `"fingerprint"` added to a peer event when known.
pub fn json_keyed(event: &Event, fingerprint: Option<&str>, out: &mut Vec<u8>) {
    match fingerprint {
        None => json(event, out),
        Some(fp) => {
            let mut line = Line::new(event);
            line.fingerprint = Some(Some(fp));
            json_line(&line, out);
        }
    }
}

/// The hot lines (a message arriving, up to a million a second on the fast path; a send's
/// outcome, one per message typed), written directly: the same bytes as the derived
/// encoder gives (`tests::hot_lines_are_the_encoders_bytes`), when no string in them needs
/// an escape; `false` (nothing written) when one does, for the encoder to write it.
fn hot_line(event: &str, peer: &PeerView, text: &str, hot: Hot, out: &mut Vec<u8>) -> bool {
    if !peer.name.as_deref().is_none_or(verbatim) || !verbatim(text) {
        return false;
    }
    // Room for the whole line at once (the fixed parts are under 160 bytes).
    out.reserve(160 + peer.name.as_deref().map_or(0, str::len) + text.len());
    out.extend_from_slice(br#"{"event":""#);
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(br#"","name":"#);
    match &peer.name {
        Some(n) => {
            out.push(b'"');
            out.extend_from_slice(n.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","ip":""#);
    match (peer.ip, peer.scope_id) {
        (std::net::IpAddr::V4(v4), 0) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u32::from(octet));
            }
        }
        _ => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{}", peer.host());
        }
    }
    out.extend_from_slice(br#"","port":"#);
    match peer.port {
        Some(p) => push_decimal(out, u32::from(p)),
        None => out.extend_from_slice(b"null"),
    }
    if let Hot::Sent(p, _, _) = hot {
        out.extend_from_slice(br#","kind":""#);
        out.extend_from_slice(purpose(p).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(br#","text":""#);
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    if let Hot::Message(true) = hot {
        out.extend_from_slice(br#","encrypted":true"#);
    }
    if let Hot::Sent(_, delivery, encrypted) = hot {
        out.extend_from_slice(br#","confirmed":"#);
        out.extend_from_slice(if delivery.confirmed() {
            b"true"
        } else {
            b"false"
        });
        out.extend_from_slice(br#","delivery":""#);
        out.extend_from_slice(delivery.code().as_bytes());
        out.push(b'"');
        out.extend_from_slice(br#","encrypted":"#);
        out.extend_from_slice(if encrypted { b"true" } else { b"false" });
    }
    out.extend_from_slice(b"}\n");
    true
}

/// What a hot line carries beside the peer and the text.
#[derive(Clone, Copy)]
enum Hot {
    /// A message arriving: whether it came encrypted (the field only when it did).
    Message(bool),
    /// A send's outcome: its kind, its delivery, whether it went encrypted.
    Sent(Purpose, Delivery, bool),
}

/// A string the encoder writes as it is: no C0 control, `"` or `\\` (which JSON escapes),
/// no character [`sanitize::needs_escape`] (which [`InertFormatter`] escapes).
fn verbatim(s: &str) -> bool {
    let bytes = s.as_bytes();
    // Printable ASCII throughout (almost every line): one pass without branches, which
    // the compiler vectorises.
    let odd = bytes.iter().fold(false, |odd, &b| {
        odd | !(0x20..0x7f).contains(&b) | (b == b'"') | (b == b'\\')
    });
    if !odd {
        return true;
    }
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b < 0x80 {
            if b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f {
                return false;
            }
            at += 1;
        } else {
            let c = s[at..].chars().next().expect("at a char boundary");
            if sanitize::needs_escape(c) {
                return false;
            }
            at += c.len_utf8();
        }
    }
    true
}

fn push_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `value` as one JSON line to `out`, with every character that could act on a
/// terminal or split a line for a reader (C1 controls, DEL, U+2028/9, bidirectional
/// controls, U+FEFF) written as a `\uXXXX` escape: the same text, always one inert line.
fn json_line(value: &impl serde::Serialize, out: &mut Vec<u8>) {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, InertFormatter);
    // Serialising into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out.push(b'\n');
}

/// serde_json's compact output, escaping what it leaves raw but a terminal would act on.
struct InertFormatter;

impl serde_json::ser::Formatter for InertFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // serde_json has already escaped C0, `"` and `\\`; these fragments hold the rest.
        let bytes = fragment.as_bytes();
        let mut written = 0;
        let mut at = 0;
        // Only DEL and non-ASCII characters can need it: skip plain ASCII bytewise.
        while let Some(i) = bytes[at..].iter().position(|&b| b >= 0x7f) {
            at += i;
            let c = fragment[at..].chars().next().expect("at a char boundary");
            if sanitize::needs_escape(c) {
                w.write_all(&bytes[written..at])?;
                write!(w, "\\u{:04x}", c as u32)?;
                written = at + c.len_utf8();
            }
            at += c.len_utf8();
        }
        w.write_all(&bytes[written..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SendFailure;
    use crate::peer_table::PeerStatus;
    use serde_json::{Value, json};

    fn peer(name: Option<&str>) -> PeerView {
        PeerView::new(name.map(str::to_owned), "127.0.0.1:9001".parse().unwrap())
    }

    fn line(e: &Event) -> String {
        let mut out = Vec::new();
        human(e, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_escapes_what_a_terminal_or_a_line_splitter_would_act_on() {
        let text = "a\u{85}b\u{9b}31m\u{2028}c\u{2029}\u{202e}d\u{2066}\u{feff}\u{7f}\u{1b}[2J é ✓";
        let e = Event::Message {
            from: peer(Some("x\u{9b}y")),
            text: text.to_owned(),
            cut: None,
            via: Via::Clear,
        };
        let mut out = Vec::new();
        json(&e, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with('\n'));
        let body = &line[..line.len() - 1];
        assert!(
            !body.chars().any(crate::sanitize::needs_escape),
            "raw control left in {body:?}"
        );
        // One line by every rule (Python's splitlines also breaks at U+0085, U+2028/9).
        assert_eq!(
            body.split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
                .count(),
            1
        );
        assert!(
            body.contains("\\u0085") && body.contains("\\u202e"),
            "{body}"
        );
        // Plain non-ASCII stays as it is; the escapes decode to the exact text.
        assert!(body.contains("é ✓"));
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["text"], text);
        assert_eq!(v["name"], "x\u{9b}y");
        // Other events go the same way.
        let mut out = Vec::new();
        json(&Event::Refused(text.to_owned()), &mut out);
        let body = String::from_utf8(out).unwrap();
        assert!(!body.trim_end().chars().any(crate::sanitize::needs_escape));
    }

    #[test]
    fn a_link_local_peer_is_shown_with_its_interface() {
        let linky = PeerView::new(Some("linky".into()), "[fe80::7%3]:5000".parse().unwrap());
        assert_eq!(
            line(&Event::NewPeer(linky.clone())),
            "New peer found: linky [[fe80::7%3]:5000]\n"
        );
        for e in [
            Event::NewPeer(linky.clone()),
            Event::Message {
                from: linky.clone(),
                text: "hi".into(),
                cut: None,
                via: Via::Clear,
            },
        ] {
            let mut out = Vec::new();
            json(&e, &mut out);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!((&v["ip"], &v["port"]), (&json!("fe80::7%3"), &json!(5000)));
        }
        // Without a port, the host alone; without a zone, as ever.
        let host = PeerView::host_only(None, "[fe80::7%3]:1".parse().unwrap());
        assert_eq!(host.addr_text(), "fe80::7%3");
        assert_eq!(peer(None).addr_text(), "127.0.0.1:9001");
    }

    #[test]
    fn a_message_that_may_be_cut_short_says_so() {
        let e = Event::Message {
            from: peer(Some("bob")),
            text: "half a mess".into(),
            cut: Some(Cut::Reset),
            via: Via::Clear,
        };
        assert_eq!(
            line(&e),
            "Message from bob [127.0.0.1:9001]: half a mess [may be cut short: the connection \
             was reset]\n"
        );
        let mut out = Vec::new();
        json(&e, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (&v["text"], &v["cut"]),
            (&json!("half a mess"), &json!("reset"))
        );
        let whole = Event::Message {
            from: peer(Some("bob")),
            text: "whole".into(),
            cut: None,
            via: Via::Clear,
        };
        let mut out = Vec::new();
        json(&whole, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("cut").is_none(), "{v}");
    }

    #[test]
    fn human_lines_use_the_original_wording() {
        let bob = peer(Some("bob"));
        assert_eq!(
            line(&Event::NewPeer(bob.clone())),
            "New peer found: bob [127.0.0.1:9001]\n"
        );
        assert_eq!(
            line(&Event::Message {
                from: bob.clone(),
                text: "hi".into(),
                cut: None,
                via: Via::Clear,
            }),
            "Message from bob [127.0.0.1:9001]: hi\n"
        );
        assert_eq!(
            line(&Event::Message {
                from: bob.clone(),
                text: "hi".into(),
                cut: None,
                via: Via::Encrypted,
            }),
            "Message from bob [127.0.0.1:9001] (encrypted): hi\n"
        );
        assert_eq!(
            line(&Event::ConnectedWithYou(bob.clone())),
            "bob [127.0.0.1:9001] connected with you\n"
        );
        assert_eq!(
            line(&Event::PeerLeft(bob.clone())),
            "bob [127.0.0.1:9001] disconnected\n"
        );
        let unknown = peer(None);
        let sent = |purpose, confirmed: bool| Event::Sent {
            to: unknown.clone(),
            purpose,
            text: "yo".into(),
            delivery: if confirmed {
                Delivery::Closed
            } else {
                Delivery::Unconfirmed
            },
            encrypted: false,
        };
        let receipt = Event::Sent {
            to: bob.clone(),
            purpose: Purpose::Text,
            text: "yo".into(),
            delivery: Delivery::Receipt,
            encrypted: true,
        };
        assert_eq!(
            line(&receipt),
            "Message delivered to bob [127.0.0.1:9001] (encrypted): yo\n"
        );
        let mut j = Vec::new();
        json(&receipt, &mut j);
        let j = String::from_utf8(j).unwrap();
        assert!(
            j.contains(r#""confirmed":true,"delivery":"receipt""#),
            "{j}"
        );
        assert_eq!(
            line(&sent(Purpose::Text, true)),
            "Message sent to Unknown [127.0.0.1:9001]: yo\n"
        );
        assert_eq!(
            line(&sent(Purpose::Connect, true)),
            "Successfully connected to Unknown [127.0.0.1:9001]\n"
        );
        assert_eq!(
            line(&sent(Purpose::Exit, true)),
            "Disconnected from Unknown [127.0.0.1:9001]\n"
        );
        assert!(line(&sent(Purpose::Text, false)).contains("unconfirmed"));
        // Never "successfully" and "unconfirmed" at once.
        assert_eq!(
            line(&sent(Purpose::Connect, false)),
            "Connected to Unknown [127.0.0.1:9001] (unconfirmed: the peer had not closed the \
             connection)\n"
        );
        let failed = Event::SendFailed {
            to: unknown.clone(),
            purpose: Purpose::Text,
            text: "yo".into(),
            reason: SendFailure::Refused,
        };
        assert!(
            line(&failed)
                .starts_with("Failed to contact Unknown [127.0.0.1:9001]: connection refused")
        );
        let refused = Event::SendFailed {
            to: bob.clone(),
            purpose: Purpose::Text,
            text: "yo".into(),
            reason: SendFailure::KeyChanged,
        };
        assert_eq!(
            line(&refused),
            "Not sent to bob [127.0.0.1:9001]: its key changed: check the new key with them, \
             then /trust 127.0.0.1:9001; not delivered: yo\n"
        );
        assert_eq!(line(&Event::Peers(vec![])), "No active peers.\n");
        let rows = vec![
            PeerRow {
                index: 1,
                peer: bob.clone(),
                status: PeerStatus::Connected,
                speaks: Speaks::P2pchat(1),
                key: Default::default(),
            },
            PeerRow {
                index: 2,
                peer: unknown,
                status: PeerStatus::YetToConnect,
                speaks: Speaks::Legacy,
                key: Default::default(),
            },
            PeerRow {
                index: 3,
                peer: peer(Some("carol")),
                status: PeerStatus::YetToConnect,
                speaks: Speaks::Unknown,
                key: Default::default(),
            },
        ];
        assert_eq!(
            line(&Event::Peers(rows.clone())),
            "Active Peers:\n1. bob [127.0.0.1:9001] - Connected (p2pchat/1)\n\
             2. Unknown [127.0.0.1:9001] - Yet to connect (legacy)\n\
             3. carol [127.0.0.1:9001] - Yet to connect\n"
        );
        let mut j = Vec::new();
        json(&Event::Peers(rows), &mut j);
        let j = String::from_utf8(j).unwrap();
        assert!(j.contains(r#""speaks":"p2pchat/1""#), "{j}");
        assert!(j.contains(r#""speaks":"legacy""#), "{j}");
    }

    #[test]
    fn the_users_own_choices_have_lines_and_json() {
        let bob = peer(Some("bob"));
        let query = Event::Query {
            number: 3,
            peer: bob.clone(),
        };
        assert_eq!(
            line(&query),
            "Talking to #3 bob [127.0.0.1:9001]: plain text goes there (/query alone to stop)\n"
        );
        let forgot = Event::Forgotten {
            number: 3,
            peer: bob,
        };
        assert!(line(&forgot).starts_with("Forgot #3 bob [127.0.0.1:9001]"));
        assert!(line(&Event::QueryEnded).contains("/query NAME|#N|IP:PORT"));
        assert!(line(&Event::Renamed("al".into())).starts_with("You are now al"));
        let j = |e: &Event| {
            let mut out = Vec::new();
            json(e, &mut out);
            serde_json::from_slice::<Value>(&out).unwrap()
        };
        assert_eq!(
            j(&query),
            json!({"event": "query", "name": "bob", "ip": "127.0.0.1", "port": 9001, "number": 3})
        );
        assert_eq!(j(&forgot)["event"], "forgotten");
        assert_eq!(j(&Event::QueryEnded), json!({"event": "query_ended"}));
        assert_eq!(
            j(&Event::Renamed("al".into())),
            json!({"event": "renamed", "name": "al"})
        );
    }

    #[test]
    fn human_output_neutralises_hostile_names_and_text() {
        let evil = peer(Some("x\n\u{1b}]0;pwn\u{7}"));
        let out = line(&Event::Message {
            from: evil,
            text: "a\rb\u{9b}2J\u{202e}".into(),
            cut: None,
            via: Via::Clear,
        });
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(!out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{9b}'));
        // A name padded with NBSPs cannot pass for a name and an address.
        let faker = peer(Some("bob\u{a0}[10.0.0.2:9201]\u{200b}"));
        assert_eq!(
            line(&Event::NewPeer(faker)),
            "New peer found: bob<U+00A0>[10.0.0.2:9201]<U+200B> [127.0.0.1:9001]\n"
        );
    }

    #[test]
    fn hot_lines_are_the_encoders_bytes() {
        let names = [
            None,
            Some("bob"),
            Some("émile"),
            Some("n\"q"),
            Some("a\u{202e}b"),
        ];
        let texts = [
            "hi",
            "",
            "p1:2:xxxx",
            "tab\there",
            "quote \" and \\ slash",
            "del \u{7f}",
            "c1 \u{85}",
            "accents éàü 日本 🎉",
            "bidi \u{202e} \u{2066} \u{feff}",
            "line\u{2028}sep",
            "\u{fffd}\u{fffd}",
        ];
        let hosts = [
            ("127.0.0.1".parse().unwrap(), 0),
            ("0.0.0.0".parse().unwrap(), 0),
            ("255.255.255.255".parse().unwrap(), 0),
            ("10.20.3.4".parse().unwrap(), 0),
            ("::1".parse().unwrap(), 0),
            ("fe80::1".parse().unwrap(), 3),
        ];
        for name in names {
            for text in texts {
                for (ip, scope_id) in hosts {
                    for port in [None, Some(0), Some(9), Some(65535), Some(20001)] {
                        let from = PeerView {
                            name: name.map(str::to_owned),
                            ip,
                            scope_id,
                            port,
                        };
                        let mut events: Vec<Event> = [Via::Clear, Via::Encrypted, Via::KeyChanged]
                            .into_iter()
                            .map(|via| Event::Message {
                                from: from.clone(),
                                text: text.to_owned(),
                                cut: None,
                                via,
                            })
                            .collect();
                        for purpose in [Purpose::Text, Purpose::Connect, Purpose::Exit] {
                            for delivery in
                                [Delivery::Receipt, Delivery::Closed, Delivery::Unconfirmed]
                            {
                                for encrypted in [false, true] {
                                    events.push(Event::Sent {
                                        to: from.clone(),
                                        purpose,
                                        text: text.to_owned(),
                                        delivery,
                                        encrypted,
                                    });
                                }
                            }
                        }
                        for e in &events {
                            let mut fast = Vec::new();
                            json(e, &mut fast);
                            let mut derived = Vec::new();
                            json_line(&Line::new(e), &mut derived);
                            assert_eq!(
                                String::from_utf8_lossy(&fast),
                                String::from_utf8_lossy(&derived)
                            );
                        }
                    }
                }
            }
        }
        assert!(verbatim("plain ascii ~ éà"));
        assert!(!verbatim("a\u{1b}b"));
        assert!(!verbatim("\u{9f}"));
    }

    #[test]
    fn a_message_says_in_json_what_carried_it_and_legacy_lines_are_unchanged() {
        let from = PeerView::new(Some("bob".into()), "127.0.0.1:9001".parse().unwrap());
        let at = |via| {
            let mut out = Vec::new();
            json(
                &Event::Message {
                    from: from.clone(),
                    text: "hi".into(),
                    cut: None,
                    via,
                },
                &mut out,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            at(Via::Clear),
            r#"{"event":"message","name":"bob","ip":"127.0.0.1","port":9001,"text":"hi"}"#
                .to_owned()
                + "\n"
        );
        assert_eq!(
            at(Via::Encrypted),
            r#"{"event":"message","name":"bob","ip":"127.0.0.1","port":9001,"text":"hi","encrypted":true}"#
                .to_owned()
                + "\n"
        );
        assert_eq!(
            at(Via::KeyChanged),
            r#"{"event":"message","name":"bob","ip":"127.0.0.1","port":9001,"text":"hi","encrypted":true,"key_changed":true}"#
                .to_owned()
                + "\n"
        );
    }

    #[test]
    fn json_is_one_valid_object_per_line_whatever_the_bytes() {
        let e = Event::Message {
            from: peer(Some("n\u{0}\"\\")),
            text: "\u{1b}[2J\n\u{fffd}".into(),
            cut: None,
            via: Via::Clear,
        };
        let mut out = Vec::new();
        json(&e, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(s.trim_end()).unwrap();
        assert_eq!(v["event"], "message");
        assert_eq!(v["name"], "n\u{0}\"\\");
        assert_eq!(v["text"], "\u{1b}[2J\n\u{fffd}");
        assert_eq!(v["port"], 9001);
    }
}
