//! The fast path between two p2pchat nodes (PROTOCOL.md, "Fast path"): proof, upgrade to
//! one stream, receipts, `--legacy-only` on either side, break and resume. Real processes
//! on 127.0.0.1, free ports, events waited for with deadlines (no sleeps as
//! synchronisation).

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use common::{Node, SOON};
use serde_json::{Value, json};

/// Starts a node on `port` with its files in `home` (a restart in place: same key).
fn start_on(name: &str, port: u16, home: &std::path::Path) -> Node {
    let mut cmd = common::bin();
    cmd.arg("--home")
        .arg(home)
        .args([
            "--name",
            name,
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--json", "-v"])
        .env_remove("P2PCHAT_NAME")
        .env_remove("P2PCHAT_PORT")
        .stdin(Stdio::piped());
    Node::spawn(name, cmd)
}

/// Waits for `alice`'s outcome of the message `text`.
fn outcome_of(node: &mut Node, text: &str) -> Value {
    node.expect(&format!("outcome of {text:?}"), |v| {
        (v["event"] == "sent" || v["event"] == "send_failed") && v["text"] == text
    })
}

/// Sends `text` from `a` to `b` and waits for both sides: returns the outcome event.
fn say(a: &mut Node, b: &mut Node, text: &str) -> Value {
    a.type_line(&format!("/msg {} {text}", b.addr()));
    b.expect_event("message", &[("text", json!(text))]);
    outcome_of(a, text)
}

/// Says one message after another until one goes by the stream (a receipt): the first
/// ones go by legacy while the probe runs. Returns how many were said.
fn until_receipt(a: &mut Node, b: &mut Node, tag: &str) -> usize {
    for i in 0..20 {
        let out = say(a, b, &format!("{tag} {i}"));
        if out["delivery"] == "receipt" {
            return i + 1;
        }
        assert_eq!(out["delivery"], "closed", "{out}");
    }
    panic!("no receipt after 20 messages; alice: {:#?}", a.seen);
}

/// Established TCP connections from a local port to `port` (from /proc/net/tcp).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // remote address ends with the port, state 01 = ESTABLISHED
            f.len() > 3 && f[2].ends_with(&want) && f[3] == "01"
        })
        .count()
}

#[test]
fn two_nodes_exchange_messages_with_receipts_over_one_stream() {
    let mut bob = Node::start("bob", &[]);
    let mut alice = Node::start("alice", &[]);
    // The first message waits for the probe's answer, then goes on the stream: a receipt.
    let first = say(&mut alice, &mut bob, "hello 0");
    assert_eq!(first["delivery"], "receipt", "{first}");
    assert_eq!(first["encrypted"], true, "{first}");
    // Many at once: every one delivered with a receipt, shown once, in order.
    let n = 300;
    for i in 0..n {
        alice.type_line(&format!("/msg {} burst {i}", bob.addr()));
    }
    for i in 0..n {
        let m = bob.expect_event("message", &[]);
        assert_eq!(m["text"], format!("burst {i}"), "in order");
        assert_eq!(m["name"], "alice");
        assert_eq!(m["port"], alice.port);
    }
    for i in 0..n {
        let out = outcome_of(&mut alice, &format!("burst {i}"));
        assert_eq!(out["event"], "sent");
        assert_eq!(out["delivery"], "receipt", "{out}");
        assert_eq!(out["confirmed"], true);
    }
    // One stream connection carried them: alice's only established connection to bob.
    assert_eq!(connections_to(bob.port), 1, "one stream connection to bob");
    assert!(
        alice.stderr_text().matches("opening a stream").count() == 1,
        "one stream opened:\n{}",
        alice.stderr_text()
    );
    // /peers says bob speaks p2pchat; bob sees alice, who sent, as unknown.
    let rows = alice.peers();
    assert_eq!(rows[0]["speaks"], "p2pchat/2", "{rows:?}");
    let none_twice: Vec<Value> = bob.drain(Duration::from_millis(300));
    assert!(
        none_twice.iter().all(|v| v["event"] != "message"),
        "nothing shown twice: {none_twice:?}"
    );
    // Quitting over the stream: bob sees alice leave; alice's exit gets a receipt.
    alice.quit();
    bob.expect_event("peer_left", &[("name", json!("alice"))]);
    let exit = alice
        .drain(Duration::from_millis(200))
        .iter()
        .find(|v| v["event"] == "sent" && v["kind"] == "exit")
        .cloned()
        .expect("exit sent");
    assert_eq!(exit["delivery"], "receipt", "{exit}");
    bob.quit();
}

#[test]
fn legacy_only_on_either_side_gives_closed() {
    for (a_flags, b_flags) in [
        (&["--legacy-only"][..], &[][..]),
        (&[][..], &["--legacy-only"][..]),
    ] {
        let mut bob = Node::start("bob", b_flags);
        let mut alice = Node::start("alice", a_flags);
        for i in 0..6 {
            let out = say(&mut alice, &mut bob, &format!("plain {i}"));
            assert_eq!(out["delivery"], "closed", "{a_flags:?}/{b_flags:?}: {out}");
        }
        let rows = alice.peers();
        assert!(
            !rows[0]["speaks"]
                .as_str()
                .unwrap_or("")
                .starts_with("p2pchat/"),
            "{rows:?}"
        );
        assert!(!alice.stderr_text().contains("opening a stream"));
        alice.quit();
        bob.quit();
    }
}

#[test]
fn a_restarted_receiver_gets_what_was_not_acknowledged_and_no_replay() {
    let home = common::config_home();
    let mut bob = Node::start("bob", &["--home", home.to_str().unwrap()]);
    let port = bob.port;
    let mut alice = Node::start("alice", &[]);
    until_receipt(&mut alice, &mut bob, "before");
    // Bob goes away abruptly (the stream breaks); a new bob on the same port.
    drop(bob);
    let mut bob = start_on("bob", port, &home);
    assert_eq!(bob.port, port);
    // Alice keeps typing: every message arrives exactly once at the new bob, in order,
    // none of the old ones is shown again.
    let n = 50;
    for i in 0..n {
        alice.type_line(&format!("/msg {} after {i}", bob.addr()));
    }
    let mut seen = HashSet::new();
    for i in 0..n {
        let m = bob.expect_event("message", &[]);
        assert_eq!(m["text"], format!("after {i}"), "in order, from the first");
        assert!(seen.insert(m["text"].to_string()));
    }
    for i in 0..n {
        let out = outcome_of(&mut alice, &format!("after {i}"));
        assert_eq!(out["event"], "sent", "{out}");
    }
    let rest = bob.drain(Duration::from_millis(500));
    assert!(
        rest.iter().all(|v| v["event"] != "message"),
        "nothing more shown: {rest:?}"
    );
    // The fast path is back in use after the restart.
    until_receipt(&mut alice, &mut bob, "again");
    alice.quit();
    bob.quit();
}

#[test]
fn a_restarted_sender_is_not_taken_for_a_resend() {
    let home = common::config_home();
    let mut bob = Node::start("bob", &[]);
    let mut alice = Node::start("alice", &["--home", home.to_str().unwrap()]);
    let port = alice.port;
    until_receipt(&mut alice, &mut bob, "first life");
    drop(alice);
    // A new alice (new session) on the same port: its numbers start at 1 again and are
    // shown, not dropped as duplicates.
    let mut alice = start_on("alice", port, &home);
    let k = until_receipt(&mut alice, &mut bob, "second life");
    assert!(k >= 1);
    for i in 0..20 {
        let out = say(&mut alice, &mut bob, &format!("more {i}"));
        assert_eq!(out["delivery"], "receipt", "{out}");
    }
    let _ = SOON;
    alice.quit();
    bob.quit();
}

/// Issue 9, "sending side memory is bounded": many `/send` lines piped into alice toward a
/// bob whose stdout nobody reads (so he stops reading his stream). Alice stops reading her
/// stdin while too many sends are unfinished instead of queueing every line: her peak RSS
/// stays bounded, and every line still ends with exactly one outcome, at its deadline.
/// Then bob's output is read: every message acknowledged is on his screen.
#[test]
fn many_sends_piped_to_a_peer_that_stops_reading_keep_memory_bounded() {
    use std::io::Write;
    const LINES: usize = 40_000;
    let mut cmd = common::command("bob", &[]);
    cmd.stdin(Stdio::piped()).stderr(Stdio::null());
    let (mut bob, bob_out, bob_port) = common::spawn_and_read_port(&mut cmd);
    let bob_addr = format!("127.0.0.1:{bob_port}");
    let mut alice = Node::start("alice", &["--timeout", "1"]);
    // The stream is up before bob's screen fills.
    let mut warm = 0;
    loop {
        let text = format!("warm {warm}");
        alice.type_line(&format!("/msg {bob_addr} {text}"));
        warm += 1;
        if outcome_of(&mut alice, &text)["delivery"] == "receipt" {
            break;
        }
        assert!(warm < 20, "no receipt; alice: {:#?}", alice.seen);
    }
    let pid = alice.child.id();
    let before = common::proc_status_kib(pid, "VmHWM:");
    let mut stdin = alice.stdin.take().unwrap();
    let pad = "p".repeat(400);
    let writer = std::thread::spawn(move || {
        let mut chunk = String::new();
        for i in 0..LINES {
            chunk.push_str(&format!("/msg {bob_addr} line {i} {pad}\n"));
            if chunk.len() > 64 << 10 {
                stdin.write_all(chunk.as_bytes()).unwrap();
                chunk.clear();
            }
        }
        stdin.write_all(chunk.as_bytes()).unwrap();
        stdin // kept open: the end of input would quit alice
    });
    let mut outcome = vec![0u8; LINES];
    let (mut got, mut receipts) = (0, Vec::new());
    let started = std::time::Instant::now();
    while got < LINES {
        let v = alice.expect("an outcome", |v| {
            v["event"] == "sent" || v["event"] == "send_failed"
        });
        let Some(text) = v["text"].as_str().and_then(|t| t.strip_prefix("line ")) else {
            continue;
        };
        let i: usize = text.split(' ').next().unwrap().parse().unwrap();
        outcome[i] += 1;
        assert_eq!(outcome[i], 1, "line {i} reported twice: {v}");
        got += 1;
        if v["delivery"] == "receipt" {
            receipts.push(i);
        }
        // The events are dropped as they come: the test's own memory stays small.
        alice.seen.clear();
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "only {got} outcomes in {:?}",
            started.elapsed()
        );
    }
    let peak = common::proc_status_kib(pid, "VmHWM:");
    let _stdin = writer.join().unwrap();
    eprintln!(
        "{LINES} lines: peak RSS {before} -> {peak} KiB, {} receipts",
        receipts.len()
    );
    // Unbounded, 40,000 queued lines of ~420 bytes cost about 40 MiB more.
    assert!(
        peak < before + 20 * 1024,
        "alice's peak RSS grew from {before} to {peak} KiB"
    );
    alice.expect_stderr("sends unfinished (");
    alice.expect_stderr("input paused until at most");
    // Bob's screen is read at last: what alice was told delivered is there.
    let screen = common::Collector::start(bob_out);
    for i in receipts {
        let want = format!("\"line {i} ");
        assert!(
            screen.wait_for(&want, SOON),
            "line {i} acknowledged but not shown"
        );
    }
    let _ = bob.kill();
    let _ = bob.wait();
}

/// A source over `--stream-rate` is read more slowly, not cut: every message arrives, in
/// order, none sooner than the rate allows (a lower bound, which no machine can flake),
/// with a log line saying so; meanwhile the node serves everyone else.
#[test]
fn a_stream_over_its_rate_is_paced_and_nothing_is_dropped() {
    let mut bob = Node::start("bob", &["--stream-rate", "100", "--limit-local"]);
    let mut alice = Node::start("alice", &[]);
    let started = std::time::Instant::now();
    let n = 300;
    for i in 0..n {
        alice.type_line(&format!("/msg {} paced {i}", bob.addr()));
    }
    // A second's worth at once, then 100 a second: the 300th after 2 s at the earliest.
    let mut serve_checked = false;
    for i in 0..n {
        let m = bob.expect_event("message", &[]);
        assert_eq!(m["text"], format!("paced {i}"), "in order, none lost");
        if i == 150 && !serve_checked {
            common::assert_serves(&mut bob);
            serve_checked = true;
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "300 messages at 100/s (burst 100) came in {:?}",
        started.elapsed()
    );
    for i in 0..n {
        let out = outcome_of(&mut alice, &format!("paced {i}"));
        assert_eq!(out["delivery"], "receipt", "{out}");
    }
    bob.expect_stderr_within("over --stream-rate", SOON);
    alice.quit();
    bob.quit();
}
