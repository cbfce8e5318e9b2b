//! Encrypted streams between two p2pchat nodes (PROTOCOL.md, "Encryption"), checked
//! from outside: a relay the test runs between them records every byte both ways.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Node, SOON};
use serde_json::{Value, json};

/// A TCP relay on loopback: every connection to it is carried to `to`, and every byte
/// either way is recorded.
struct Relay {
    port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let rec = bytes.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let rec = rec.clone();
                    thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if into.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        // Half-closes carry over (the probe is one).
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Relay { port, bytes }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn recorded(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.bytes.lock().unwrap().clear();
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A node with its files in `home`, on `port` (0: any).
fn node_at(name: &str, home: &Path, port: u16, extra: &[&str]) -> Node {
    let mut cmd = common::bin();
    cmd.arg("--home")
        .arg(home)
        .args(["--name", name, "--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--json", "-v"])
        .args(extra)
        .env_remove("P2PCHAT_NAME")
        .env_remove("P2PCHAT_PORT")
        .stdin(Stdio::piped());
    Node::spawn(name, cmd)
}

fn outcome_of(node: &mut Node, text: &str) -> Value {
    node.expect(&format!("outcome of {text:?}"), |v| {
        (v["event"] == "sent" || v["event"] == "send_failed") && v["text"] == text
    })
}

/// `a` sends `text` to `to`; `b` shows it. Returns `a`'s outcome.
fn say_to(a: &mut Node, to: &str, b: &mut Node, text: &str) -> Value {
    say_and_show(a, to, b, text).0
}

/// [`say_to`], with `b`'s message event.
fn say_and_show(a: &mut Node, to: &str, b: &mut Node, text: &str) -> (Value, Value) {
    a.type_line(&format!("/msg {to} {text}"));
    let shown = b.expect_event("message", &[("text", json!(text))]);
    (outcome_of(a, text), shown)
}

/// Says messages until one is acknowledged on a stream (the first waits for the probe,
/// so it normally is).
fn until_receipt(a: &mut Node, to: &str, b: &mut Node, tag: &str) {
    for i in 0..20 {
        let out = say_to(a, to, b, &format!("{tag} {i}"));
        if out["delivery"] == "receipt" {
            return;
        }
    }
    panic!("no receipt after 20 messages; {}", a.stderr_text());
}

#[test]
fn the_listening_line_carries_the_fingerprint_and_the_key_is_kept() {
    let home = common::config_home();
    let mut a = node_at("alice", &home, 0, &[]);
    let first = a.seen.first().cloned().unwrap_or_else(|| json!({}));
    let fp = first["fingerprint"].as_str().unwrap_or_default().to_owned();
    assert_eq!(fp.len(), 23, "four groups of five digits: {first}");
    a.quit();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.join("key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The same home: the same key.
    let mut again = node_at("alice", &home, 0, &[]);
    let first = again.seen.first().cloned().unwrap();
    assert_eq!(first["fingerprint"], fp);
    again.quit();
}

#[test]
fn no_typed_text_or_name_crosses_the_relay_in_clear() {
    let mut bob = Node::start("bob", &[]);
    let relay = Relay::start(bob.sock());
    let mut alice = Node::start("alice", &[]);
    // From the very first message: it waits for the probe's answer rather than go by
    // legacy in clear to a peer whose kind is not known yet.
    for i in 0..50 {
        let text = format!("secret-{i}-zebra");
        let (out, shown) = say_and_show(&mut alice, &relay.addr(), &mut bob, &text);
        assert_eq!(out["delivery"], "receipt", "{out}");
        assert_eq!(out["encrypted"], true, "{out}");
        // The receiver is told too, per message.
        assert_eq!(shown["encrypted"], true, "{shown}");
        assert_eq!(shown.get("key_changed"), None, "{shown}");
    }
    let seen = relay.recorded();
    assert!(!seen.is_empty());
    assert!(!contains(&seen, "zebra"), "typed text in clear on the wire");
    assert!(!contains(&seen, "alice"), "a name in clear on the wire");
    let rows = alice.peers();
    assert_eq!(rows[0]["speaks"], "p2pchat/2", "{rows:?}");
    alice.quit();
    bob.quit();
}

#[test]
fn after_a_restart_not_even_the_first_message_to_a_known_peer_goes_in_clear() {
    let ha = common::config_home();
    let mut bob = Node::start("bob", &[]);
    let relay = Relay::start(bob.sock());
    let mut alice = node_at("alice", &ha, 0, &[]);
    until_receipt(&mut alice, &relay.addr(), &mut bob, "first run");
    alice.quit();
    // A new run of alice: bob's key is on record, so its first text waits for the proof.
    relay.clear();
    let mut alice = node_at("alice", &ha, 0, &[]);
    let out = say_to(&mut alice, &relay.addr(), &mut bob, "second-run-okapi");
    assert_eq!(out["delivery"], "receipt", "{out}");
    assert_eq!(out["encrypted"], true, "{out}");
    assert!(
        !contains(&relay.recorded(), "okapi"),
        "text in clear on the wire"
    );
    alice.quit();
    bob.quit();
}

#[test]
fn plaintext_on_both_sides_still_gives_receipts_in_clear() {
    let mut bob = Node::start("bob", &["--plaintext"]);
    let relay = Relay::start(bob.sock());
    let mut alice = Node::start("alice", &["--plaintext"]);
    alice.expect_stderr_within("--plaintext", SOON);
    until_receipt(&mut alice, &relay.addr(), &mut bob, "warm-up");
    relay.clear();
    let (out, shown) = say_and_show(&mut alice, &relay.addr(), &mut bob, "visible-giraffe");
    assert_eq!(out["delivery"], "receipt", "{out}");
    assert_eq!(out["encrypted"], false, "{out}");
    assert_eq!(shown.get("encrypted"), None, "{shown}");
    assert!(contains(&relay.recorded(), "visible-giraffe"));
    let rows = alice.peers();
    assert_eq!(rows[0]["speaks"], "p2pchat/1", "{rows:?}");
    alice.quit();
    bob.quit();
}

#[test]
fn a_changed_key_is_refused_with_key_changed() {
    let (h1, h2) = (common::config_home(), common::config_home());
    let mut bob = node_at("bob", &h1, 0, &[]);
    let port = bob.port;
    let mut alice = Node::start("alice", &[]);
    until_receipt(&mut alice, &bob.addr(), &mut bob, "before");
    bob.quit();
    // Another node, another key, on the same port.
    let mut mallory = node_at("bob", &h2, port, &[]);
    let to = mallory.addr();
    // The very first message waits for the probe, meets the new key in the handshake
    // and is refused: nothing goes to the impostor, by stream or by legacy.
    alice.type_line(&format!("/msg {to} after 0"));
    let refused = outcome_of(&mut alice, "after 0");
    assert_eq!(refused["event"], "send_failed", "{refused}");
    assert_eq!(refused["reason"], "key_changed", "{refused}");
    assert!(
        !mallory.seen.iter().any(|v| v["event"] == "message"),
        "the impostor got a message: {:?}",
        mallory.seen
    );
    alice.expect_stderr_within("presents another key than before", SOON);
    let kc = alice
        .seen
        .iter()
        .find(|v| v["event"] == "key_changed")
        .cloned()
        .expect("a key_changed event");
    assert_eq!(kc["port"], port, "{kc}");
    assert_ne!(kc["old_fingerprint"], kc["new_fingerprint"], "{kc}");
    assert_eq!(
        kc["new_fingerprint"], mallory.seen[0]["fingerprint"],
        "{kc}"
    );
    // And it stays refused: nothing more reaches the new key.
    alice.type_line(&format!("/msg {to} still-refused"));
    let out = outcome_of(&mut alice, "still-refused");
    assert_eq!(out["reason"], "key_changed", "{out}");
    let rows = alice.peers();
    assert_eq!(rows[0]["kind"], "KEY CHANGED", "{rows:?}");
    let shown = mallory.drain(Duration::from_millis(300));
    assert!(
        shown.iter().all(|v| v["text"] != "still-refused"),
        "{shown:?}"
    );
    // /verify refuses until the change is accepted; /trust accepts it.
    alice.type_line(&format!("/verify {to}"));
    alice.expect_event("error", &[]);
    alice.type_line(&format!("/trust {to}"));
    let info = alice.expect_event("info", &[]);
    assert!(
        info["detail"].as_str().unwrap().contains("trusted"),
        "{info}"
    );
    until_receipt(&mut alice, &to, &mut mallory, "trusted");
    alice.quit();
    mallory.quit();
}

/// The receiving side of a key change: alice restarts with another key on the same port;
/// bob shows her next messages marked, in text and in JSON, and the warning names her.
#[test]
fn messages_from_a_changed_key_are_shown_marked() {
    let mut bob = Node::start("bob", &[]);
    let h1 = common::config_home();
    let mut alice = node_at("alice", &h1, 0, &[]);
    let port = alice.port;
    until_receipt(&mut alice, &bob.addr(), &mut bob, "before");
    alice.quit();
    // Her exit removed her from bob's table: the warning can only name her by her Hello.
    bob.expect_event("peer_left", &[("name", json!("alice"))]);
    let h2 = common::config_home();
    let mut other = node_at("alice2", &h2, port, &[]);
    // The first message waits for the probe, so it comes on an encrypted stream.
    other.type_line(&format!("/msg {} hello-again", bob.addr()));
    let shown = bob.expect("the message from the new key", |v| {
        v["event"] == "message"
            && v["text"]
                .as_str()
                .is_some_and(|t| t.ends_with("hello-again"))
    });
    assert_eq!(shown["text"], "[key changed] hello-again", "{shown}");
    assert_eq!(shown["key_changed"], true, "{shown}");
    assert_eq!(shown["encrypted"], true, "{shown}");
    let kc = bob
        .seen
        .iter()
        .find(|v| v["event"] == "key_changed")
        .cloned()
        .expect("a key_changed event before the message");
    assert_eq!(kc["port"], port, "{kc}");
    assert_eq!(kc["name"], "alice2", "the Hello's name: {kc}");
    assert_eq!(kc["new_fingerprint"], other.seen[0]["fingerprint"], "{kc}");
    // Once bob trusts the new key, the same open stream is no longer marked.
    bob.type_line(&format!("/trust 127.0.0.1:{port}"));
    bob.expect("the trust notice", |v| {
        v["event"] == "info" && v["detail"].as_str().is_some_and(|d| d.contains("trusted"))
    });
    let (out, shown) = say_and_show(&mut other, &bob.addr(), &mut bob, "after-trust");
    assert_eq!(out["delivery"], "receipt", "{out}");
    assert_eq!(shown["encrypted"], true, "{shown}");
    assert_eq!(shown.get("key_changed"), None, "{shown}");
    other.quit();
    bob.quit();
}

/// After alice's `exit` to bob (which forgets him), her next messages to him still go on
/// an encrypted stream: a new sender, in a new session, which bob accepts (the old
/// session's numbers were delivered past 1, so reusing it would be refused, and every
/// message after would go in clear, as a downgrade).
#[test]
fn after_an_exit_the_next_messages_are_still_encrypted() {
    let mut bob = Node::start("bob", &[]);
    let mut alice = Node::start("alice", &[]);
    let to = bob.addr();
    until_receipt(&mut alice, &to, &mut bob, "before");
    alice.type_line(&format!("/msg {to} exit"));
    let left = outcome_of(&mut alice, "exit");
    assert_eq!(left["delivery"], "receipt", "{left}");
    bob.expect_event("peer_left", &[("name", json!("alice"))]);
    for i in 0..3 {
        let text = format!("after-exit-{i}");
        let (out, shown) = say_and_show(&mut alice, &to, &mut bob, &text);
        assert_eq!(out["delivery"], "receipt", "{out}");
        assert_eq!(out["encrypted"], true, "{out}");
        assert_eq!(shown["encrypted"], true, "{shown}");
    }
    assert!(
        !alice.seen.iter().any(|v| v["event"] == "downgrade"),
        "{:?}",
        alice.seen
    );
    alice.quit();
    bob.quit();
}

#[test]
fn verified_status_survives_a_restart() {
    let (ha, hb) = (common::config_home(), common::config_home());
    let mut bob = node_at("bob", &hb, 0, &[]);
    let mut alice = node_at("alice", &ha, 0, &[]);
    let bob_fp = bob.seen[0]["fingerprint"].as_str().unwrap().to_owned();
    let to = bob.addr();
    alice.type_line(&format!("/verify {to} yes"));
    alice.expect_event("error", &[]); // no key on record before a stream
    until_receipt(&mut alice, &to, &mut bob, "hello");
    alice.type_line(&format!("/verify {to}"));
    let info = alice.expect_event("info", &[]);
    let text = info["detail"].as_str().unwrap();
    assert!(text.contains(&bob_fp), "bob's code shown: {text}");
    alice.type_line(&format!("/verify {to} yes"));
    let info = alice.expect_event("info", &[]);
    assert!(
        info["detail"].as_str().unwrap().contains("verified"),
        "{info}"
    );
    alice.quit();
    let kp = std::fs::read_to_string(ha.join("known_peers")).unwrap();
    assert!(
        kp.contains(&format!("{to} ")) && kp.contains(" verified"),
        "{kp}"
    );
    // A new run of alice from the same home still knows it.
    let mut alice = node_at("alice", &ha, 0, &[]);
    until_receipt(&mut alice, &to, &mut bob, "again");
    alice.type_line(&format!("/verify {to}"));
    let info = alice.expect_event("info", &[]);
    assert!(
        info["detail"].as_str().unwrap().contains("(verified)"),
        "{info}"
    );
    let rows = alice.peers();
    assert_eq!(rows[0]["kind"], "encrypted, verified", "{rows:?}");
    assert_eq!(rows[0]["fingerprint"], bob_fp.as_str(), "{rows:?}");
    alice.type_line("/whoami");
    let me = alice.expect_event("info", &[]);
    assert!(
        me["detail"]
            .as_str()
            .unwrap()
            .starts_with("alice, listening on"),
        "{me}"
    );
    alice.quit();
    bob.quit();
}

#[test]
fn a_downgrade_to_legacy_only_is_warned_about() {
    let hb = common::config_home();
    let mut bob = node_at("bob", &hb, 0, &[]);
    let port = bob.port;
    let mut alice = Node::start("alice", &[]);
    until_receipt(&mut alice, &bob.addr(), &mut bob, "before");
    bob.quit();
    let mut bob = node_at("bob", &hb, port, &["--legacy-only"]);
    for i in 0..3 {
        say_to(&mut alice, &bob.addr(), &mut bob, &format!("after {i}"));
    }
    alice.expect_stderr_within("a downgrade", SOON);
    if !alice.seen.iter().any(|v| v["event"] == "downgrade") {
        alice.expect_event("downgrade", &[("now", json!("legacy"))]);
    }
    let d = alice
        .seen
        .iter()
        .find(|v| v["event"] == "downgrade")
        .unwrap();
    assert_eq!(d["now"], "legacy", "{d}");
    assert_eq!(d["port"], port, "{d}");
    alice.quit();
    bob.quit();
}

/// A peer taken for legacy (a downgrade) that comes back encrypted is asked again at
/// once, not in ten minutes: its stream is the hint, and the replies to it go encrypted.
/// A second downgrade in the same run is warned about again.
#[test]
fn a_peer_back_from_a_downgrade_is_encrypted_again_and_a_second_downgrade_is_warned() {
    let hb = common::config_home();
    let mut bob = node_at("bob", &hb, 0, &[]);
    let port = bob.port;
    let mut alice = Node::start("alice", &[]);
    until_receipt(&mut alice, &bob.addr(), &mut bob, "before");
    let downgrades = |a: &Node| a.seen.iter().filter(|v| v["event"] == "downgrade").count();
    // Alice's `n`th stream to bob has ended (or her next message could be written on
    // the dead one, and end unconfirmed).
    let stream_ended = |a: &Node, n: usize| {
        let until = Instant::now() + SOON;
        while a.stderr_text().matches(": stream ended (").count() < n {
            assert!(
                Instant::now() < until,
                "no end of stream {n}: {}",
                a.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Down: bob's place taken by a legacy-only node, without an exit (killed).
    let _ = bob.child.kill();
    let _ = bob.child.wait();
    stream_ended(&alice, 1);
    let mut legacy = node_at("bob", &hb, port, &["--legacy-only"]);
    let (out, _) = say_and_show(&mut alice, &legacy.addr(), &mut legacy, "in-clear-1");
    assert_eq!(out["encrypted"], false, "{out}");
    // The warning comes before the outcome.
    assert_eq!(downgrades(&alice), 1, "{:?}", alice.seen);
    // Back: the real bob again, who writes first; alice's replies go encrypted.
    let _ = legacy.child.kill();
    let _ = legacy.child.wait();
    let mut bob = node_at("bob", &hb, port, &[]);
    let alice_addr = alice.addr();
    let (_, shown) = say_and_show(&mut bob, &alice_addr, &mut alice, "back");
    assert_eq!(shown["encrypted"], true, "{shown}");
    let (out, shown) = say_and_show(&mut alice, &bob.addr(), &mut bob, "encrypted-again");
    assert_eq!(out["delivery"], "receipt", "{out}");
    assert_eq!(out["encrypted"], true, "{out}");
    assert_eq!(shown["encrypted"], true, "{shown}");
    // Down again: warned again.
    let _ = bob.child.kill();
    let _ = bob.child.wait();
    stream_ended(&alice, 2);
    let mut legacy = node_at("bob", &hb, port, &["--legacy-only"]);
    let (out, _) = say_and_show(&mut alice, &legacy.addr(), &mut legacy, "in-clear-2");
    assert_eq!(out["encrypted"], false, "{out}");
    assert_eq!(downgrades(&alice), 2, "{:?}", alice.seen);
    alice.quit();
    legacy.quit();
}

#[test]
fn garbage_after_the_encrypted_preface_is_closed_with_a_log_line() {
    let mut bob = Node::start("bob", &[]);
    let mut s = TcpStream::connect(bob.sock()).unwrap();
    s.write_all(b"\x8ap2pchat\x00\x20").unwrap();
    s.write_all(&[0x55; 32]).unwrap();
    s.write_all(b"\x00\x40").unwrap();
    s.write_all(&[0x66; 64]).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    // Bob answers msg1 (it cannot tell garbage from a key), then refuses msg3.
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    bob.expect_stderr_within("stream closed: handshake", SOON);
    common::assert_serves(&mut bob);
    bob.quit();
}

#[test]
fn a_stalled_handshake_is_closed_at_its_deadline() {
    let mut bob = Node::start("bob", &[]);
    let mut s = TcpStream::connect(bob.sock()).unwrap();
    // The preface and msg1, then silence.
    s.write_all(b"\x8ap2pchat\x00\x20").unwrap();
    s.write_all(&[0x42; 32]).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut buf = Vec::new();
    // msg2 comes back, then bob closes at the 5 s handshake deadline.
    let _ = s.read_to_end(&mut buf);
    assert_eq!(buf.len(), 2 + 96, "msg2, then the close");
    bob.expect_stderr_within("the handshake did not finish in time", SOON);
    common::assert_serves(&mut bob);
    bob.quit();
}

#[test]
fn a_flood_of_bad_handshakes_is_closed_one_by_one_and_the_node_serves() {
    let mut bob = Node::start("bob", &[]);
    let n = 50;
    let conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(bob.sock()).unwrap();
            s.write_all(b"\x8ap2pchat\x00\x21").unwrap(); // msg1 cannot be 33 bytes
            s
        })
        .collect();
    for mut s in conns {
        s.set_read_timeout(Some(SOON)).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(buf.is_empty(), "nothing written back to garbage");
    }
    assert!(bob.stderr.wait_for("handshake message 1 of 33 bytes", SOON));
    common::assert_serves(&mut bob);
    // The log lines come through their own pipe: wait for all of them (not one more).
    let line = "stream closed: handshake: handshake message 1 of 33 bytes";
    let until = std::time::Instant::now() + SOON;
    while bob.stderr_text().matches(line).count() < n && std::time::Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    let closed = bob.stderr_text().matches(line).count();
    assert_eq!(closed, n, "one log line each:\n{}", bob.stderr_text());
    bob.quit();
}

/// In `--json`, peer events carry the peer's fingerprint once its key is known (met on an
/// encrypted stream): the same as its own `listening` line says. A legacy peer's events
/// have no such field, as before.
#[test]
fn peer_events_carry_the_peers_fingerprint() {
    let mut bob = Node::start("bob", &[]);
    let mut alice = Node::start("alice", &[]);
    let alices = alice.seen.first().cloned().unwrap_or_else(|| json!({}));
    let alices = alices["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(alices.len(), 23, "{:?}", alice.seen.first());
    let out = say_to(&mut alice, &bob.addr(), &mut bob, "hi, it is me");
    assert_eq!(out["encrypted"], true, "{out}");
    let new = bob
        .seen
        .iter()
        .find(|v| v["event"] == "new_peer" && v["port"] == alice.port)
        .cloned()
        .expect("bob's new_peer for alice");
    assert_eq!(new["fingerprint"], json!(alices), "{new}");
    // A legacy sender: no fingerprint on its event.
    let (_l, port) = common::listener();
    assert!(common::send_raw(
        bob.sock(),
        format!("127.0.0.1:{port} carol hello").as_bytes()
    ));
    let legacy = bob.expect_event("new_peer", &[("port", json!(port))]);
    assert!(legacy.get("fingerprint").is_none(), "{legacy}");
    alice.quit();
    let left = bob.expect_event("peer_left", &[("port", json!(alice.port))]);
    assert_eq!(left["fingerprint"], json!(alices), "{left}");
    bob.quit();
}

/// A relay that carries connections to `to` as they are, except that on the first
/// encrypted stream from the client it sends one transport record twice (the second
/// record after the handshake): a replay by someone on the path. Returns its port and
/// whether the replay happened.
fn replaying_relay(to: SocketAddr) -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let replayed = Arc::new(AtomicBool::new(false));
    let done = replayed.clone();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            let (mut up_from, mut up_into) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut down_from, mut down_into) = (server, client);
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = down_from.read(&mut buf) {
                    if n == 0 || down_into.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = down_into.shutdown(Shutdown::Write);
            });
            let done = done.clone();
            thread::spawn(move || {
                // Client to server: the preface (8 bytes), then units of a 2-byte length
                // and a body: msg1, msg3, then transport records.
                let mut pending: Vec<u8> = Vec::new();
                let mut encrypted = None;
                let mut preface_done = false;
                let mut unit = 0usize;
                let mut buf = [0u8; 65536];
                loop {
                    let n = match up_from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    if !*encrypted.get_or_insert(pending[0] == 0x8a) {
                        // Not an encrypted stream (a legacy message): as it is.
                        if up_into.write_all(&pending).is_err() {
                            break;
                        }
                        pending.clear();
                        continue;
                    }
                    let mut out = Vec::new();
                    if !preface_done {
                        if pending.len() < 8 {
                            continue;
                        }
                        out.extend(pending.drain(..8));
                        preface_done = true;
                    }
                    while pending.len() >= 2 {
                        let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
                        if pending.len() < 2 + len {
                            break;
                        }
                        let whole: Vec<u8> = pending.drain(..2 + len).collect();
                        out.extend_from_slice(&whole);
                        if unit == 3 && !done.swap(true, Ordering::SeqCst) {
                            out.extend_from_slice(&whole); // the replay
                        }
                        unit += 1;
                    }
                    if up_into.write_all(&out).is_err() {
                        break;
                    }
                }
                let _ = up_into.shutdown(Shutdown::Write);
            });
        }
    });
    (port, replayed)
}

/// Someone on the path replays a record of an encrypted stream: the receiver closes the
/// stream with a log line; the sender resends on a new stream what was not acknowledged,
/// and every message is shown exactly once, in order.
#[test]
fn a_replayed_record_closes_the_stream_and_nothing_shows_twice() {
    let mut bob = Node::start("bob", &[]);
    let (port, replayed) = replaying_relay(bob.sock());
    let mut alice = Node::start("alice", &[]);
    let to = format!("127.0.0.1:{port}");
    // One at a time, so that each goes in a record of its own.
    let n = 8;
    for i in 0..n {
        alice.type_line(&format!("/msg {to} replay {i}"));
        let m = bob.expect_event("message", &[]);
        assert_eq!(m["text"], format!("replay {i}"), "once each, in order");
    }
    assert!(
        replayed.load(std::sync::atomic::Ordering::SeqCst),
        "the relay replayed a record"
    );
    bob.expect_stderr_within("replayed", SOON);
    for i in 0..n {
        let out = outcome_of(&mut alice, &format!("replay {i}"));
        assert_eq!(out["event"], "sent", "{out}");
    }
    // A round trip through bob after all that: no message came twice meanwhile.
    common::assert_serves(&mut bob);
    let shown = bob
        .seen
        .iter()
        .filter(|v| {
            v["event"] == "message" && v["text"].as_str().is_some_and(|t| t.starts_with("replay "))
        })
        .count();
    assert_eq!(shown, n, "each shown once: {:?}", bob.seen);
    alice.quit();
    bob.quit();
}

/// A peer with a key on record that cannot be proven this time is sent to in clear only
/// with a `downgrade` warning, told before the text goes. One that cannot be reached at
/// all gets nothing in clear, and no warning (which would use up the one per run).
#[test]
fn a_known_peer_sent_to_in_clear_is_warned_about_first() {
    let hb = common::config_home();
    let mut bob = node_at("bob", &hb, 0, &[]);
    let port = bob.port;
    let mut alice = Node::start("alice", &["--timeout", "4"]);
    until_receipt(&mut alice, &bob.addr(), &mut bob, "before");
    bob.quit();
    // Away: the probe and the message are refused; nothing went in clear.
    alice.type_line(&format!("/msg 127.0.0.1:{port} while away"));
    alice.expect_event("send_failed", &[("text", json!("while away"))]);
    assert!(
        !alice.seen.iter().any(|v| v["event"] == "downgrade"),
        "no downgrade for a peer that is only away: {:?}",
        alice.seen
    );
    // Back as something that accepts and never answers (on a real path: someone stalling
    // the probe). Within the back-off after the failed probe, the message goes by legacy.
    let staller = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    thread::spawn(move || {
        for s in staller.incoming().flatten() {
            keep.lock().unwrap().push(s); // never answered, never closed
        }
    });
    alice.type_line(&format!("/msg 127.0.0.1:{port} after"));
    let d = alice.expect_event("downgrade", &[("port", json!(port))]);
    assert_eq!(d["was"], "p2pchat/2 (encrypted streams)", "{d}");
    let now = d["now"].as_str().unwrap_or_default();
    assert!(now.contains("in clear"), "{d}");
    // The outcome comes after the warning.
    let out = alice.expect("the outcome of \"after\"", |v| {
        v["text"] == "after" && (v["event"] == "sent" || v["event"] == "send_failed")
    });
    assert_eq!(out["encrypted"], false, "{out}");
    alice.expect_stderr_within("a downgrade", SOON);
    alice.quit();
    drop(held);
}
