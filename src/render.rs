//! Turns [`Event`]s into output lines: the original's human wording, or one JSON object per
//! line (`--json`). Pure: it appends to a buffer the reactor writes out.
//!
//! Human lines pass every peer-chosen string through [`sanitize::for_terminal`]; JSON lines
//! carry the exact text, escaped by the JSON encoder (always valid JSON, whatever the bytes).

use std::fmt;
use std::io::Write;

use serde_json::{Value, json};

use crate::event::{Event, PeerRow, PeerView, Purpose};
use crate::sanitize::{self, for_terminal};

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
        write!(f, "{} [{}]", for_terminal(p.name_or_unknown()), p.addr())
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
        Event::Message { from, text } => {
            writeln!(out, "Message from {}: {}", who(from), for_terminal(text))
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
            confirmed,
        } => {
            match purpose {
                Purpose::Text => write!(out, "Message sent to {}: {}", who(to), for_terminal(text)),
                Purpose::Connect => write!(out, "Successfully connected to {}", who(to)),
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
            write!(out, "Failed to contact {}: {reason}", who(to))?;
            match purpose {
                Purpose::Text => writeln!(out, "; not delivered: {}", for_terminal(text)),
                Purpose::Connect => writeln!(out, "; still not connected"),
                Purpose::Exit => writeln!(out, "; removed from the list"),
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
        Event::Exiting => writeln!(out, "Exiting..."),
    }
}

fn write_rows(rows: &[PeerRow], out: &mut Vec<u8>) -> std::io::Result<()> {
    for row in rows {
        writeln!(
            out,
            "{}. {} - {}",
            row.index,
            who(&row.peer),
            row.status.as_str()
        )?;
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

fn peer_json(p: &PeerView) -> Value {
    json!({"name": p.name, "ip": p.host().to_string(), "port": p.port})
}

fn with_peer(kind: &str, p: &PeerView, extra: Value) -> Value {
    let mut v = json!({"event": kind});
    let obj = v.as_object_mut().expect("object");
    if let Value::Object(peer) = peer_json(p) {
        obj.extend(peer);
    }
    if let Value::Object(extra) = extra {
        obj.extend(extra);
    }
    v
}

fn rows_json(rows: &[PeerRow]) -> Value {
    rows.iter()
        .map(|r| {
            let mut v = peer_json(&r.peer);
            v["index"] = json!(r.index);
            v["status"] = json!(r.status.as_str());
            v
        })
        .collect()
}

/// The JSON object for `event`.
pub fn json_value(event: &Event) -> Value {
    match event {
        Event::Listening { addr, name } => json!({
            "event": "listening", "port": addr.port(), "addr": addr.to_string(), "name": name
        }),
        Event::NewPeer(p) => with_peer("new_peer", p, Value::Null),
        Event::ConnectedWithYou(p) => with_peer("connected_with_you", p, Value::Null),
        Event::Message { from, text } => with_peer("message", from, json!({"text": text})),
        Event::PeerLeft(p) => with_peer("peer_left", p, Value::Null),
        Event::AddressMismatch { peer, claimed } => {
            with_peer("address_mismatch", peer, json!({"claimed": claimed}))
        }
        Event::Sent {
            to,
            purpose: p,
            text,
            confirmed,
        } => with_peer(
            "sent",
            to,
            json!({"kind": purpose(*p), "text": text, "confirmed": confirmed}),
        ),
        Event::SendFailed {
            to,
            purpose: p,
            text,
            reason,
        } => with_peer(
            "send_failed",
            to,
            json!({"kind": purpose(*p), "text": text, "reason": reason.code(),
                   "detail": reason.to_string()}),
        ),
        Event::Peers(rows) => json!({"event": "peers", "peers": rows_json(rows)}),
        Event::ConnectCandidates(rows) => {
            json!({"event": "connect_candidates", "peers": rows_json(rows)})
        }
        Event::Refused(why) => json!({"event": "error", "detail": why}),
        Event::Exiting => json!({"event": "exiting"}),
    }
}

/// A message event, serialised straight from borrowed fields (the hot path: no map).
#[derive(serde::Serialize)]
struct MessageLine<'a> {
    event: &'static str,
    name: Option<&'a str>,
    ip: crate::event::PeerHost,
    port: Option<u16>,
    text: &'a str,
}

/// Appends `event` as one JSON line to `out`.
pub fn json(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::Message { from, text } => json_line(
            &MessageLine {
                event: "message",
                name: from.name.as_deref(),
                ip: from.host(),
                port: from.port,
                text,
            },
            out,
        ),
        _ => json_line(&json_value(event), out),
    }
}

/// Appends `value` as one JSON line to `out`, with every character that could act on a
/// terminal or split a line for a reader (C1 controls, DEL, U+2028/9, bidirectional
/// controls, U+FEFF) written as a `\uXXXX` escape: the same text, always one inert line.
pub fn json_line(value: &impl serde::Serialize, out: &mut Vec<u8>) {
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
    fn human_lines_use_the_original_wording() {
        let bob = peer(Some("bob"));
        assert_eq!(
            line(&Event::NewPeer(bob.clone())),
            "New peer found: bob [127.0.0.1:9001]\n"
        );
        assert_eq!(
            line(&Event::Message {
                from: bob.clone(),
                text: "hi".into()
            }),
            "Message from bob [127.0.0.1:9001]: hi\n"
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
        let sent = |purpose, confirmed| Event::Sent {
            to: unknown.clone(),
            purpose,
            text: "yo".into(),
            confirmed,
        };
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
        assert_eq!(line(&Event::Peers(vec![])), "No active peers.\n");
        let rows = vec![
            PeerRow {
                index: 1,
                peer: bob.clone(),
                status: PeerStatus::Connected,
            },
            PeerRow {
                index: 2,
                peer: unknown,
                status: PeerStatus::YetToConnect,
            },
        ];
        assert_eq!(
            line(&Event::Peers(rows)),
            "Active Peers:\n1. bob [127.0.0.1:9001] - Connected\n2. Unknown [127.0.0.1:9001] - Yet to connect\n"
        );
    }

    #[test]
    fn human_output_neutralises_hostile_names_and_text() {
        let evil = peer(Some("x\n\u{1b}]0;pwn\u{7}"));
        let out = line(&Event::Message {
            from: evil,
            text: "a\rb\u{9b}2J\u{202e}".into(),
        });
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(!out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{9b}'));
    }

    #[test]
    fn json_is_one_valid_object_per_line_whatever_the_bytes() {
        let e = Event::Message {
            from: peer(Some("n\u{0}\"\\")),
            text: "\u{1b}[2J\n\u{fffd}".into(),
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
