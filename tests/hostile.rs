//! The hostile-input battery: every bad input or fault, and after each the node still
//! serves a well-behaved peer.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use socket2::{Domain, Socket, Type};

/// Connects from a chosen local source address (127.0.0.x), so the node sees other IPs.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{source}:0").parse().unwrap();
    s.bind(&src.into()).unwrap();
    s.connect_timeout(&to.into(), SOON).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(SOON)).unwrap();
    s
}

/// Waits until the node closes `s`, within `limit`: at the end of what was sent (EOF), or
/// with bytes it did not read (reset).
fn closed_by_node(s: &mut TcpStream, limit: Duration) -> bool {
    matches!(wait_end(s, limit), End::Eof | End::Reset)
}

/// The rate-limit and eviction warnings are logged at most once per this interval (the
/// first at once, then a summary): `WARN_INTERVAL` in src/rate_log.rs.
const WARN_INTERVAL: Duration = Duration::from_secs(5);

/// The most lines a once-per-interval warning can have logged in `elapsed`.
fn most_warnings(elapsed: Duration) -> usize {
    1 + (elapsed.as_secs_f64() / WARN_INTERVAL.as_secs_f64()) as usize
}

#[test]
fn oversized_message_is_dropped_and_memory_stays_bounded() {
    let mut a = Node::start("alice", &["--max-message", "4096"]);
    let mut s = TcpStream::connect(a.sock()).unwrap();
    let big = format!("127.0.0.1:5000 big {}", "x".repeat(10_000));
    let _ = s.write_all(big.as_bytes()); // the node may reset us mid-write
    let _ = s.shutdown(Shutdown::Write);
    assert!(closed_by_node(&mut s, SOON));
    assert_serves(&mut a);
    assert!(a.seen.iter().all(|v| v["name"] != "big"), "{:#?}", a.seen);
    a.expect_stderr("message longer than 4096 bytes");
}

#[test]
fn endless_stream_is_cut_off() {
    let mut a = Node::start("alice", &[]);
    let before = proc_status_kib(a.child.id(), "VmRSS:");
    let mut s = TcpStream::connect(a.sock()).unwrap();
    s.set_write_timeout(Some(SOON)).unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    // Keep writing: the node must close the connection (64 KiB cap), so writes fail.
    let cut = loop {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break true,
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(cut, "still accepting after {sent} bytes");
    assert!(
        sent < 64 << 20,
        "the node read {sent} bytes before cutting off"
    );
    let after = proc_status_kib(a.child.id(), "VmRSS:");
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert_serves(&mut a);
}

#[test]
fn malformed_headers_are_dropped_with_a_log_line() {
    let mut a = Node::start("alice", &[]);
    let cases: &[(&[u8], &str)] = &[
        (b"127.0.0.1:5000", "no name after the address"),
        (b"127.0.0.1:5000 nameonly", "no text after the name"),
        (b"127.0.0.1:5000 ", "no name after the address"),
        (b"127.0.0.1:0 n hi", "port is missing"),
        (b"127.0.0.1:65536 n hi", "port is missing"),
        (b"127.0.0.1:abc n hi", "port is missing"),
        (b"127.0.0.1: n hi", "port is missing"),
        (b"127.0.0.1 n hi", "no IP:PORT"),
        (b"\x1b[2J\x1b]0;x\x07", "no IP:PORT"),
        (b"1.2.3.999:5000 n hi", "not an IP literal or host name"),
    ];
    let send_from = |source: &str, payload: &[u8]| {
        let mut s = connect_from(source, a.sock());
        s.write_all(payload).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert!(closed_by_node(&mut s, SOON));
    };
    for (i, (payload, why)) in cases.iter().enumerate() {
        // Each from an address of its own: a source's first warning is logged in full.
        send_from(&format!("127.0.0.{}", 10 + i), payload);
        a.expect_stderr(why);
    }
    // More from one source are summed up once the interval is over, not logged one by one.
    for _ in 0..20 {
        send_from("127.0.0.10", b"complete garbage");
    }
    a.expect_stderr("127.0.0.10: 20 more malformed messages dropped in the last");
    assert_eq!(a.stderr_text().matches("127.0.0.10: dropped").count(), 1);
    assert_serves(&mut a);
    assert!(
        a.seen
            .iter()
            .all(|v| v["event"] != "message" || v["name"] == "good"),
        "{:#?}",
        a.seen
    );
    assert!(a.peers().iter().all(|p| p["name"] == "good"));
}

#[test]
fn empty_and_silent_connections_are_not_messages() {
    let mut a = Node::start("alice", &["--read-timeout", "1"]);
    assert!(send_raw(a.sock(), b""));
    // A connection that never sends is closed at the read deadline (never before it: the
    // deadline runs from the accept, which comes after `started`)...
    let started = Instant::now();
    let mut idle = TcpStream::connect(a.sock()).unwrap();
    // ...while others are served meanwhile.
    assert_serves(&mut a);
    assert_eq!(wait_end(&mut idle, SOON), End::Eof);
    assert!(started.elapsed() >= Duration::from_secs(1), "closed early");
    assert_eq!(a.peers().len(), 1);
}

#[test]
fn a_peer_dripping_a_byte_a_second_is_closed_at_the_deadline() {
    let mut a = Node::start("alice", &["--read-timeout", "2"]);
    // The deadline runs from the accept, which comes after `started`.
    let started = Instant::now();
    let mut s = TcpStream::connect(a.sock()).unwrap();
    // Two bytes a second: the whole payload would take 15 s, far past the deadline.
    let payload = b"127.0.0.1:5000 drip slowly now";
    let mut closed_after = None;
    for b in payload.iter() {
        if s.write_all(&[*b]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(500));
        // The other side may have closed: detect it without blocking.
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf);
        s.set_nonblocking(false).unwrap();
        if matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let t = closed_after.expect("the node never closed the dripping connection");
    assert!(
        t >= Duration::from_secs(2),
        "closed before its deadline, after {t:?}"
    );
    assert_serves(&mut a);
}

#[test]
fn a_reset_after_a_message_shows_it_marked_as_cut() {
    let mut a = Node::start("alice", &[]);
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.connect(&a.sock().into()).unwrap();
    s.set_linger(Some(Duration::ZERO)).unwrap();
    let mut s: TcpStream = s.into();
    s.write_all(b"127.0.0.1:5000 reset half a mess").unwrap();
    thread::sleep(Duration::from_millis(100));
    drop(s); // linger 0: RST
    // What parses is shown (issue 8, defect 6), marked: its end may be missing.
    a.expect_event(
        "message",
        &[
            ("name", json!("reset")),
            ("text", json!("half a mess")),
            ("cut", json!("reset")),
        ],
    );
    assert_serves(&mut a);
}

#[test]
fn a_half_close_after_a_partial_header_is_dropped() {
    let mut a = Node::start("alice", &[]);
    assert!(send_raw(a.sock(), b"127.0.0.1:50"));
    assert!(send_raw(a.sock(), b"<127.0.0.1:5000"));
    assert_serves(&mut a);
    assert_eq!(a.peers().len(), 1);
}

#[test]
fn every_accepted_variant_and_odd_address() {
    let mut a = Node::start("alice", &[]);
    let to = a.sock();
    assert!(send_raw(to, b"<127.0.0.1:5001> br hi"));
    a.expect_event("message", &[("name", json!("br")), ("port", json!(5001))]);
    // IPv6 literal claims for this host: the same host, no mismatch.
    assert!(send_raw(to, b"[::1]:5002 six hi"));
    a.expect_event(
        "message",
        &[("name", json!("six")), ("ip", json!("127.0.0.1"))],
    );
    // A host name instead of an IP: accepted, shown as a claim.
    assert!(send_raw(to, b"my-laptop.lan:5003 named hi"));
    a.expect_event("address_mismatch", &[("claimed", json!("my-laptop.lan"))]);
    a.expect_event("message", &[("name", json!("named"))]);
    assert!(
        a.seen
            .iter()
            .all(|v| v["event"] != "address_mismatch" || v["name"] == "named")
    );
    assert_serves(&mut a);
}

#[test]
fn ipv6_node_identifies_peers_by_socket() {
    let mut cmd = common::bin();
    cmd.args([
        "--name", "six", "--port", "0", "--bind", "::1", "--json", "-v",
    ])
    .stdin(Stdio::piped());
    let mut a = Node::spawn("six", cmd);
    let to: SocketAddr = format!("[::1]:{}", a.port).parse().unwrap();
    assert!(send_raw(to, b"[::1]:5004 v6peer hello"));
    a.expect_event(
        "message",
        &[("name", json!("v6peer")), ("port", json!(5004))],
    );
    a.type_line("/send #1 back at you");
    a.expect_event("send_failed", &[("reason", json!("refused"))]);
}

#[test]
fn invalid_utf8_and_nul_are_shown_safely() {
    let mut a = Node::start("alice", &[]);
    assert!(send_raw(
        a.sock(),
        b"127.0.0.1:5005 bad\xff\xfe t\xe2\x82 x\x00y\xc3"
    ));
    let m = a.expect_event("message", &[("port", json!(5005))]);
    assert_eq!(m["name"], "bad\u{fffd}\u{fffd}");
    assert_eq!(m["text"], "t\u{fffd} x\u{0}y\u{fffd}");
    assert_serves(&mut a);
}

#[test]
fn control_sequences_never_reach_the_terminal() {
    // Human output: read every byte the node writes and look for anything dangerous.
    let (mut child, out, port) = spawn_and_read_port(
        common::bin()
            .args(["--name", "alice", "--port", "0", "--bind", "127.0.0.1"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let hostile = [
        "\u{1b}[2J\u{1b}[H",
        "\u{1b}]0;pwned\u{7}",
        "\u{1b}]52;c;ZXZpbA==\u{1b}\\",
        "\u{9b}31m",
        "\u{85}\u{8d}",
        "\u{7}\u{8}\r\u{0}\u{7f}",
        "\u{202e}txt.exe\u{202c}",
        "\u{2066}\u{2067}\u{2068}\u{2069}",
        "line\nMessage from admin [1.2.3.4:1]: forged",
    ];
    for (i, h) in hostile.iter().enumerate() {
        let name = format!("n{i}{}", h.replace([' ', '\n'], ""));
        let payload = format!("127.0.0.1:{} {name} before{h}after", 6000 + i);
        assert!(send_raw(to, payload.as_bytes()));
    }
    // A well-behaved message last, then quit. (`send_raw` returns once the node has
    // closed the connection, which it does after handing the message on.)
    assert!(send_raw(to, b"127.0.0.1:5999 good done"));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "/peers").unwrap();
    drop(stdin);
    let (status, text) = finish_output(&mut child, out);
    assert!(status.success(), "{status}");
    assert!(
        text.contains("Message from good [127.0.0.1:5999]: done"),
        "{text}"
    );
    for c in text.chars() {
        let bad = matches!(c, '\u{0}'..='\u{9}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
            | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!bad, "{:?} reached the terminal in:\n{text}", c);
    }
    let messages = text
        .lines()
        .filter(|l| l.starts_with("Message from "))
        .count();
    assert_eq!(
        messages,
        hostile.len() + 1,
        "no forged or lost lines:\n{text}"
    );
    assert!(!text.contains("\nMessage from admin"), "{text}");
}

#[test]
fn two_thousand_connections_at_once() {
    raise_fd_limit();
    let mut a = Node::start("alice", &["--limit-local", "--rate", "0"]);
    let to = a.sock();
    let mut held = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect_timeout(&to, SOON) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connect {}: {e}", held.len()),
        }
    }
    // The node keeps at most 256 from one IP and closes the rest at once; a peer at
    // another address is served meanwhile.
    let mut good = connect_from("127.0.0.3", to);
    good.write_all(b"127.0.0.1:5006 other meanwhile").unwrap();
    good.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_node(&mut good, SOON));
    a.expect_event("message", &[("name", json!("other"))]);
    // Those over the limit were closed at their accept, before the node accepted `good`:
    // their FIN is already here. They never sent anything, so it is a clean end (EOF).
    let mut closed = 0;
    for s in &mut held {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) => closed += 1,
            other => panic!("a connection that never sent: {other:?}"),
        }
    }
    assert!(
        closed >= 2000 - 256 - 8,
        "only {closed} of 2000 were closed at once"
    );
    drop(held);
    assert_serves(&mut a);
    assert!(
        a.stderr_text()
            .contains("inbound connections open (--max-inbound-per-ip 256)"),
        "{}",
        a.stderr_text()
    );
}

/// Idle connections filling every inbound slot do not lock others out: the stalest is
/// closed to admit each new one, and the log says so once, then sums up the rest.
#[test]
fn idle_connections_filling_every_slot_do_not_lock_others_out() {
    raise_fd_limit();
    // A read deadline far beyond the test: only an eviction can free a slot.
    let mut a = Node::start("alice", &["--max-inbound", "100", "--read-timeout", "3600"]);
    let to = a.sock();
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect_timeout(&to, SOON).unwrap())
        .collect();
    // Accepts come in connection order, so the newcomer finds every slot taken.
    assert!(send_raw(to, b"127.0.0.1:5010 newcomer gets in"));
    a.expect_event("message", &[("name", json!("newcomer"))]);
    a.expect_stderr_within("more times", WARN_INTERVAL + SOON);
    let log = a.stderr_text();
    let warnings = log.matches("closed to admit a new one").count();
    // Once, then summed up (more than once only if the accepts took several intervals).
    assert!(
        (1..=most_warnings(started.elapsed())).contains(&warnings),
        "{warnings} warnings in {:?}:\n{log}",
        started.elapsed()
    );
    drop(idle);
    assert_serves(&mut a);
}

#[test]
fn a_flood_from_one_ip_is_rate_limited_and_others_still_get_through() {
    let (rate, burst) = (5.0, 10);
    let mut a = Node::start("alice", &["--limit-local", "--rate", "5", "--burst", "10"]);
    let to = a.sock();
    let started = Instant::now();
    for i in 0..200 {
        let mut s = connect_from("127.0.0.2", to);
        // Over the limit, the node closes at the accept: this write or shutdown may fail.
        let _ = s.write_all(format!("127.0.0.1:5007 flood m{i}").as_bytes());
        let _ = s.shutdown(Shutdown::Write);
        assert!(
            closed_by_node(&mut s, SOON),
            "flood connection {i} left open"
        );
    }
    let flooding = started.elapsed();
    let mut good = connect_from("127.0.0.3", to);
    good.write_all(b"127.0.0.1:5008 polite hello").unwrap();
    good.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_node(&mut good, SOON));
    a.expect_event("message", &[("name", json!("polite"))]);
    // Every flood connection was closed (after its message was handed on) before `polite`
    // was sent, so all that got through are shown already. A full bucket lets the burst
    // through; after it, at most `rate` a second for as long as the flood lasted.
    let flood = a
        .seen
        .iter()
        .filter(|v| v["event"] == "message" && v["name"] == "flood")
        .count();
    let most = burst + (rate * flooding.as_secs_f64()) as usize;
    assert!(
        (burst..=most).contains(&flood),
        "{flood} flood messages got through in {flooding:?} (at most {most})"
    );
    a.expect_stderr("over the rate limit");
    let warnings = a.stderr_text().matches("over the rate limit").count();
    assert!(
        warnings <= most_warnings(started.elapsed()),
        "{warnings} warnings in {:?}: once per interval, not per message",
        started.elapsed()
    );
}

#[test]
fn outbound_faults_never_stall_the_node() {
    let mut a = Node::start("alice", &["--timeout", "2"]);
    // A peer that never accepts (its accept queue is full)...
    let (dead, dead_port) = listener();
    let mut fill = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect_timeout(&dead.local_addr().unwrap(), Duration::from_millis(50)) {
            Ok(s) => fill.push(s),
            Err(_) => break,
        }
    }
    // ...a closed port, and one that accepts and never reads.
    let closed = closed_port();
    let (mute, mute_port) = listener();
    for port in [dead_port, closed, mute_port] {
        a.type_line(&format!("/send 127.0.0.1:{port} {}", "y".repeat(900)));
    }
    // While those are pending, the node serves others at once.
    assert_serves(&mut a);
    let _held = accept_message_within(&mute);
    let outcome = |a: &mut Node, port: u16| -> serde_json::Value {
        let is_outcome = |v: &serde_json::Value| {
            v["port"] == json!(port) && (v["event"] == "send_failed" || v["event"] == "sent")
        };
        if let Some(v) = a.seen.iter().find(|v| is_outcome(v)) {
            return v.clone();
        }
        a.expect("a send outcome", is_outcome)
    };
    let refused = outcome(&mut a, closed);
    assert_eq!(refused["reason"], "refused", "{refused}");
    let mute_outcome = outcome(&mut a, mute_port);
    assert_eq!(
        (&mute_outcome["event"], &mute_outcome["confirmed"]),
        (&json!("sent"), &json!(false))
    );
    let dead_outcome = outcome(&mut a, dead_port);
    assert!(
        dead_outcome["reason"] == "connect_timeout" || dead_outcome["confirmed"] == false,
        "{dead_outcome}"
    );
    drop(dead);
    assert_serves(&mut a);
}

fn signal_quits_cleanly(sig: i32) {
    let mut a = Node::start("alice", &[]);
    let mut b = Node::start("bob", &[]);
    a.type_line(&format!("/send {} hi", b.addr()));
    b.expect_event("message", &[("text", json!("hi"))]);
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(a.child.id() as i32, sig) };
    b.expect_event("peer_left", &[("name", json!("alice"))]);
    let status = a.wait_exit(SOON);
    assert!(status.success(), "{status}");
    assert!(!a.stderr_text().contains("panicked"));
}

#[test]
fn sigint_sends_exit_and_quits_cleanly() {
    signal_quits_cleanly(libc::SIGINT);
}

#[test]
fn sigterm_sends_exit_and_quits_cleanly() {
    signal_quits_cleanly(libc::SIGTERM);
}

#[test]
fn the_same_host_by_two_addresses_is_one_peer() {
    let mut a = Node::start("alice", &[]);
    let (l, port) = listener();
    // The same peer writes once from 127.0.0.1 and once from 127.0.0.2 (both this host).
    for src in ["127.0.0.1", "127.0.0.2"] {
        let mut s = connect_from(src, a.sock());
        s.write_all(format!("127.0.1.1:{port} same hi from {src}").as_bytes())
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert!(closed_by_node(&mut s, SOON));
        a.expect_event("message", &[("text", json!(format!("hi from {src}")))]);
    }
    assert_eq!(a.peers().len(), 1);
    // Typed as another local address, it is still that peer.
    a.type_line(&format!("/send 127.0.0.5:{port} hey"));
    let (_, payload) = accept_one(&l);
    assert!(payload.ends_with(b" alice hey"));
    a.expect_event("sent", &[("port", json!(port))]);
    assert_eq!(a.peers().len(), 1);
    let ip: IpAddr = a.peers()[0]["ip"].as_str().unwrap().parse().unwrap();
    assert!(ip.is_loopback());
}

/// Issue 8, defect 5: an attacker keeping every slot "fresh" by dripping a byte every 50 ms
/// and opening more connections does not get an honest sender that pauses mid-message cut:
/// the victims come from the source holding the most slots.
#[test]
fn a_dripping_attacker_is_evicted_before_an_honest_sender_that_pauses() {
    drip_attack(|_| "127.0.0.2".to_owned());
}

/// The same from sixteen addresses, each holding one slot at a time (as the attack on the
/// first fix did): holdings tie, and the drippers (many arrivals for one message) go first.
#[test]
fn drippers_from_many_addresses_are_evicted_before_an_honest_sender_that_pauses() {
    drip_attack(|i| format!("127.0.0.{}", 10 + i % 16));
}

/// `--max-inbound 8`; an honest sender writes half a message, pauses 0.6 s and finishes,
/// while the attacker opens a connection every 50 ms from `source(i)` and drips a byte on
/// each it holds. The honest message must arrive whole, unmarked.
fn drip_attack(source: fn(usize) -> String) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut a = Node::start("alice", &["--max-inbound", "8"]);
    let to = a.sock();
    let mut honest = connect_from("127.0.0.3", to);
    honest
        .write_all(b"127.0.0.1:5100 honest part one, ")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut opened = 0;
            while !stop.load(Ordering::Relaxed) {
                // A new connection every round: each needs a slot, so someone is evicted.
                let s = connect_from(&source(opened), to);
                s.set_nonblocking(true).unwrap();
                held.push(s);
                opened += 1;
                held.retain_mut(|s| s.write_all(b"1").is_ok());
                thread::sleep(Duration::from_millis(50));
            }
            opened
        })
    };
    // The honest sender pauses mid-message while the attacker churns.
    thread::sleep(Duration::from_millis(600));
    honest.write_all(b"part two").unwrap();
    honest.shutdown(Shutdown::Write).unwrap();
    let v = a.expect_event("message", &[("name", json!("honest"))]);
    stop.store(true, Ordering::Relaxed);
    let opened = dripper.join().unwrap();
    assert!(opened > 8, "the attacker needed slots: {opened}");
    assert_eq!(v["text"], "part one, part two", "{v}");
    assert!(v.get("cut").is_none(), "{v}");
}

/// A peer that accepts our message and then streams bytes back instead of closing: the node
/// stops reading after a few hundred bytes and reports the send at once (written, not
/// confirmed), instead of reading until the deadline (a core busy per such peer).
#[test]
fn a_peer_talking_back_endlessly_is_cut_off_and_reported_at_once() {
    let mut a = Node::start("alice", &["--timeout", "30"]);
    let (l, port) = listener();
    let talker = thread::spawn(move || {
        let (mut s, _) = accept_message_within(&l);
        let chunk = vec![b'!'; 16 * 1024];
        let started = Instant::now();
        let mut written = 0usize;
        // Until the node closes (the write fails) or far longer than it should take.
        while started.elapsed() < Duration::from_secs(30) {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => return (true, written),
            }
        }
        (false, written)
    });
    a.type_line(&format!("/send 127.0.0.1:{port} are you there?"));
    // Well before the 30 s deadline.
    let v = a.expect_within("the send's outcome", SOON, |v| {
        v["port"] == json!(port) && (v["event"] == "sent" || v["event"] == "send_failed")
    });
    assert_eq!(
        (&v["event"], &v["confirmed"], &v["text"]),
        (&json!("sent"), &json!(false), &json!("are you there?")),
        "{v}"
    );
    let (cut, written) = talker.join().unwrap();
    assert!(
        cut,
        "the node kept the connection open ({written} bytes written back)"
    );
    a.expect_stderr(&format!("127.0.0.1:{port}: kept writing back"));
    assert!(a.stderr_text().contains("!!!!"), "{}", a.stderr_text());
    assert_serves(&mut a);
}

/// Warnings summed up per interval are not lost when the node leaves before the interval
/// ends: the summaries still due are written on the way out.
#[test]
fn summaries_still_due_are_written_when_the_node_leaves() {
    let mut a = Node::start("alice", &[]);
    for _ in 0..50 {
        assert!(send_raw(a.sock(), b"complete garbage"));
    }
    a.expect_stderr("dropped 16 bytes");
    signal(&a.child, libc::SIGTERM);
    assert!(a.wait_exit(SOON).success());
    a.expect_stderr("49 more malformed messages dropped");
}

/// A node whose stdout and stderr are both pipes nobody reads, full: its exit would wait
/// for both readers. Returns the child and the pipes (kept open, unread).
fn node_with_stdout_and_stderr_backed_up() -> (Child, impl Sized) {
    use std::os::fd::AsRawFd;
    let mut cmd = common::command("stuck", &[]);
    cmd.stdin(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, out, port) = spawn_and_read_port(&mut cmd);
    let err = child.stderr.take().unwrap();
    // SAFETY: fcntl on a pipe descriptor we own: the smallest pipe, so the log fills it.
    unsafe { libc::fcntl(err.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // A warning each from a hundred sources (each one's first is logged in full).
    for i in 0..100 {
        let mut s = connect_from(&format!("127.0.0.{}", 10 + i), to);
        s.write_all(b"complete garbage").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert!(closed_by_node(&mut s, SOON));
    }
    let mut stdin = child.stdin.take().unwrap();
    back_up_stdout(&mut stdin, out.get_ref().as_raw_fd());
    (child, (out, err, stdin))
}

/// A second signal leaves at once even when both stdout and stderr are backed up: it
/// skips the wait for stderr as well as the one for stdout (it used to cut the first and
/// then still wait 2 s for the log).
#[test]
fn a_second_signal_skips_every_exit_wait() {
    let (mut child, _pipes) = node_with_stdout_and_stderr_backed_up();
    signal(&child, libc::SIGTERM);
    // While it waits for stdout at exit, the second signal.
    thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still waiting for stdout"
    );
    let second = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_child(&mut child, SOON).expect("leaves");
    let took = second.elapsed();
    assert!(status.success(), "{status}");
    // The log's exit wait is 2 s: a second signal must not sit through it.
    assert!(
        took < Duration::from_millis(1500),
        "left {took:?} after the second signal"
    );
}

/// One SIGTERM with stdout and stderr both backed up by readers that take nothing: each
/// exit wait gives up after 1 s without progress, so the node leaves in about two seconds
/// (it waited the 1 s for stdout, then the whole 2 s for stderr).
#[test]
fn sigterm_does_not_wait_for_a_stderr_nobody_reads_either() {
    let (mut child, _pipes) = node_with_stdout_and_stderr_backed_up();
    let signalled = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_child(&mut child, SOON).expect("leaves");
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    // 1 s without progress for each; before, 1 s + the whole 2 s drain for the log.
    assert!(
        took < Duration::from_millis(2800),
        "left {took:?} after SIGTERM"
    );
}

/// Evictions give back what the evicted connections held: after hundreds of them, the
/// 16 MiB budget for unfinished messages is as free as before (the bytes of every evicted
/// connection stayed counted, so the node came to evict every newcomer, the honest included).
#[test]
fn evictions_give_back_the_bytes_they_held() {
    raise_fd_limit();
    let mut a = Node::start("alice", &["--max-inbound", "4"]);
    let to = a.sock();
    let half = format!("127.0.0.1:5200 filler {}", "x".repeat(60_000));
    // Held open: each newcomer needs a slot, so the node evicts an older one.
    let held: Vec<TcpStream> = (0..400)
        .map(|_| {
            let mut s = TcpStream::connect(to).unwrap();
            s.write_all(half.as_bytes()).unwrap();
            s
        })
        .collect();
    // Each newcomer evicted an older one, shown marked as cut.
    for _ in 0..396 {
        a.expect("an evicted filler", |v| {
            v["event"] == "message" && v["name"] == "filler" && v["cut"] == "evicted"
        });
    }
    // The last four are shown once they close.
    drop(held);
    for _ in 0..4 {
        a.expect("a filler", |v| {
            v["event"] == "message" && v["name"] == "filler"
        });
    }
    // Alone now, an honest sender pauses mid-message: nothing needs its room.
    let mut honest = TcpStream::connect(to).unwrap();
    honest
        .write_all(b"127.0.0.1:5100 honest part one, ")
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    honest.write_all(b"part two").unwrap();
    honest.shutdown(Shutdown::Write).unwrap();
    let v = a.expect_event("message", &[("name", json!("honest"))]);
    assert_eq!(v["text"], "part one, part two", "{v}");
    assert!(v.get("cut").is_none(), "{v}");
}

// ----- the fast path (PROTOCOL.md, "Fast path", "Limits") ---------------------------------

use p2pchat::stream::frame::{self, MAGIC};
use p2pchat::trust::session::PREFACE;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A fake p2pchat peer on `l`, until `stop` (at most 60 s): answers each probe with
/// `proof`; hands each stream connection, its first byte read, to `stream`; reads each
/// legacy message to the end and collects it (what the thread returns).
fn fake_fast_peer(
    l: std::net::TcpListener,
    stop: Arc<AtomicBool>,
    proof: &'static [u8],
    mut stream: impl FnMut(TcpStream) + Send + 'static,
) -> thread::JoinHandle<Vec<Vec<u8>>> {
    thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        let mut legacy = Vec::new();
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let Ok((mut s, _)) = l.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(SOON)).unwrap();
            let mut first = [0u8; 1];
            match s.read(&mut first) {
                Ok(0) => {
                    let _ = s.write_all(proof); // the probe
                }
                Ok(_) if first[0] == MAGIC[0] || first[0] == PREFACE[0] => stream(s),
                Ok(_) => {
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest); // a legacy message: read, close
                    legacy.push([&first[..], &rest].concat());
                }
                Err(_) => {}
            }
        }
        legacy
    })
}

/// Reads the rest of a plaintext stream's preface and alice's Hello, then welcomes it.
fn welcome_alice(s: &mut TcpStream) {
    let mut hello = [0u8; 7 + 5 + 19 + 5]; // the preface's last 7 bytes, the Hello ("alice")
    let _ = s.read_exact(&mut hello);
    let mut w = Vec::new();
    frame::encode_welcome(&mut w, 1, 0, 0);
    s.write_all(&w).unwrap();
}

/// The preface and a Hello with any name bytes (even one the NAME rules forbid).
fn raw_hello(name: &[u8], port: u16) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(19 + name.len() as u32).to_be_bytes());
    out.push(1); // Hello
    out.push(1); // version
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&7u64.to_be_bytes()); // session
    out.extend_from_slice(&1u64.to_be_bytes()); // fresh_from
    out.extend_from_slice(name);
    out
}

/// Reads what the node writes on `s` until it closes it (within [`SOON`]); `None` if it
/// is still open then.
fn read_until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
            Err(_) => return None,
        }
    }
}

/// Bad input on a stream: garbage after the preface, an oversized frame, Hellos with a
/// hostile or impossible name. Each is closed with a log line saying what was wrong;
/// nothing is shown, nobody is listed; a well-behaved peer is served after.
#[test]
fn bad_stream_input_is_closed_with_a_log_line() {
    let mut a = Node::start("alice", &[]);
    let garbage = |after: &[u8]| [after, &[0, 0, 0, 1, 0x09, 0][..]].concat();
    let mut oversized = MAGIC.to_vec();
    oversized.extend_from_slice(&(8 + 65_537u32).to_be_bytes());
    oversized.push(2); // Data, far over the largest text: refused from its header
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (garbage(&MAGIC), "unknown frame kind 0x09"),
        (oversized, "Data frame of 65545 bytes is not allowed"),
        (
            raw_hello(b"evil\x1b[2J\x1b]0;x\x07", 5300),
            "bad hello: name has a space or control",
        ),
        (
            raw_hello(b"two words", 5301),
            "bad hello: name has a space or control",
        ),
        (
            raw_hello(b"colon:", 5302),
            "bad hello: name has a space or control, or ends in ':'",
        ),
        (raw_hello(b"\xff\xfe", 5303), "bad hello: name not UTF-8"),
        (
            raw_hello(&[b'n'; 300], 5304),
            "Hello frame of 319 bytes is not allowed",
        ),
        (
            raw_hello(b"", 5305),
            "Hello frame of 19 bytes is not allowed",
        ),
        (
            garbage(&raw_hello(b"fine", 5306)),
            "unknown frame kind 0x09",
        ),
    ];
    for (i, (bytes, why)) in cases.iter().enumerate() {
        let source = format!("127.0.0.{}", 40 + i);
        let mut s = connect_from(&source, a.sock());
        let _ = s.write_all(bytes); // the node may close before taking it all
        assert!(read_until_closed(&mut s).is_some(), "case {i} left open");
        a.expect_stderr(&format!("{source}:"));
        a.expect_stderr(why);
    }
    assert_serves(&mut a);
    assert!(
        a.seen
            .iter()
            .all(|v| v["event"] != "message" || v["name"] == "good"),
        "{:#?}",
        a.seen
    );
    assert!(a.peers().iter().all(|p| p["name"] == "good"));
    let log = a.stderr_text();
    assert!(
        !log.contains('\u{1b}'),
        "a control character reached the log:\n{log}"
    );
}

/// A flood of stream openings from one address is held to that address's share of
/// inbound connections (`--max-inbound-per-ip`): streams count like any connection, the
/// rest are closed at the accept; another peer is served meanwhile and after.
#[test]
fn a_flood_of_stream_openings_is_held_to_the_per_ip_share() {
    let mut a = Node::start(
        "alice",
        &["--limit-local", "--rate", "0", "--max-inbound-per-ip", "8"],
    );
    let to = a.sock();
    let mut held = Vec::new();
    for i in 0..64u16 {
        let mut s = connect_from("127.0.0.2", to);
        let _ = s.write_all(&raw_hello(b"flood", 6000 + i));
        held.push(s);
    }
    assert_serves(&mut a);
    // Welcomed (a Welcome is 22 bytes) or closed at once, never more than 8 welcomed.
    let mut welcomed = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(n) if n >= 22 => {
                welcomed += 1;
                assert_eq!(b[4], 3, "a Welcome frame");
            }
            _ => {}
        }
    }
    assert!(
        (1..=8).contains(&welcomed),
        "{welcomed} streams welcomed from one IP"
    );
    a.expect_stderr("inbound connections open (--max-inbound-per-ip 8)");
    drop(held);
    assert_serves(&mut a);
}

/// A plaintext p2pchat sender that never reads what the node writes back (its receive
/// window closes at once): each round is 64 messages, one cumulative ack's worth.
struct DeafSender {
    s: TcpStream,
    seq: u64,
    round: Vec<u8>,
}

impl DeafSender {
    fn open(node: &Node) -> DeafSender {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(1).unwrap(); // the kernel's least
        s.connect_timeout(&node.sock().into(), SOON).unwrap();
        let mut s: TcpStream = s.into();
        s.write_all(&raw_hello(b"deaf", 6000)).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        // A node that stopped reading fails the test at a write, rather than hang it.
        s.set_write_timeout(Some(SOON)).unwrap();
        let mut welcome = [0u8; 22];
        s.read_exact(&mut welcome).unwrap();
        assert_eq!(welcome[4], 3, "a Welcome frame");
        DeafSender {
            s,
            seq: 0,
            round: Vec::new(),
        }
    }

    /// Sends a round and waits until the node shows its last message (so it has written,
    /// or tried to write, that round's ack); `false` once `closed` is logged instead.
    fn round(&mut self, a: &mut Node, closed: &str, started: Instant) -> bool {
        self.round.clear();
        for _ in 0..64 {
            self.seq += 1;
            let text = format!("d{}", self.seq);
            self.round
                .extend_from_slice(&(8 + text.len() as u32).to_be_bytes());
            self.round.push(2); // Data
            self.round.extend_from_slice(&self.seq.to_be_bytes());
            self.round.extend_from_slice(text.as_bytes());
        }
        if self.s.write_all(&self.round).is_err() {
            return false; // closed under us (or stuck): the caller checks the log
        }
        // Shown, or never read: the stream was closed meanwhile.
        let last = json!(format!("d{}", self.seq));
        while !a.skip_to(Duration::from_millis(100), |v| {
            v["event"] == "message" && v["text"] == last
        }) {
            if a.stderr_text().contains(closed) {
                return false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "message {} never shown:\n{}",
                self.seq,
                a.stderr_text()
            );
        }
        true
    }

    fn local_port(&self) -> u16 {
        self.s.local_addr().unwrap().port()
    }
}

/// Bytes the node's end of the loopback connection from `peer_port` holds unacknowledged
/// (`tx_queue` in /proc/net/tcp).
fn node_tx_queue(node_port: u16, peer_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || port_of(f[1])? != node_port || port_of(f[2])? != peer_port {
            return None;
        }
        u64::from_str_radix(f[4].split(':').next()?, 16).ok()
    })
}

/// A p2pchat sender that never reads its acks: once they fill the socket (an inbound
/// stream's send buffer is small), the node keeps at most one pending and closes the
/// stream `--read-timeout` later with a log line, serving others meanwhile.
#[test]
fn a_sender_that_never_reads_its_acks_is_closed_at_the_ack_write_deadline() {
    let mut a = Node::start("alice", &["--read-timeout", "1"]);
    let mut deaf = DeafSender::open(&a);
    let closed = "stream closed: its acks were not taken for 1.0 s";
    let started = Instant::now();
    // Every round makes the node write one more ack that is never read.
    while !a.stderr_text().contains(closed) && deaf.round(&mut a, closed, started) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no ack write deadline after {} messages:\n{}",
            deaf.seq,
            a.stderr_text()
        );
    }
    a.expect_stderr(closed);
    // What is left to read is acks, then the end.
    assert!(
        read_until_closed(&mut deaf.s).is_some(),
        "the stream stays open after its deadline"
    );
    assert_serves(&mut a);
}

/// While an ack cannot be written (the socket holds bytes the sender does not read), the
/// node waits for the socket or the ack write deadline, idle, not woken again and again
/// by the ack's timer (the attack found a core spinning there until the deadline).
#[test]
fn a_stream_whose_acks_are_stuck_leaves_the_node_idle() {
    let mut a = Node::start("alice", &["--read-timeout", "5"]);
    let mut deaf = DeafSender::open(&a);
    let closed = "stream closed: its acks were not taken";
    let started = Instant::now();
    let peer_port = deaf.local_port();
    // Stuck once three rounds in a row left the bytes the node holds unacknowledged as
    // they were (each ack it can still write adds to them).
    let mut last = None;
    let mut same = 0;
    while same < 3 {
        assert!(deaf.round(&mut a, closed, started), "closed before stuck");
        let now = node_tx_queue(a.port, peer_port).expect("the node's end in /proc/net/tcp");
        // (Nothing held: the sender's kernel still takes what is written.)
        same = if now > 1000 && Some(now) == last {
            same + 1
        } else {
            0
        };
        last = Some(now);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "acks still written after {} messages",
            deaf.seq
        );
    }
    // Acks are due (by count and by timer) and cannot be written: 1.5 s of the node's
    // CPU. Idle is about none of it; a loop woken by the due ack takes all of it.
    let ticks0 = cpu_ticks(a.child.id());
    let window = Duration::from_millis(1500);
    assert!(
        !a.skip_to(window, |v| v["event"] == "message"),
        "nothing more was sent"
    );
    let used = cpu_ticks(a.child.id()) - ticks0;
    assert!(
        used < 50,
        "{used} CPU ticks (1/100 s) in {window:?} while the stream's acks are stuck"
    );
    a.expect_stderr(closed);
    assert_serves(&mut a);
}

/// A p2pchat receiver that proves itself, welcomes our stream and then never reads it nor
/// acknowledges: alice's queue stays bounded and each message ends at its own deadline,
/// written ones unconfirmed, the rest failed; none is called delivered. She serves others
/// throughout.
#[test]
fn a_receiver_that_welcomes_and_stops_reading_gets_outcomes_at_each_deadline() {
    let mut a = Node::start("alice", &["--timeout", "2"]);
    let (l, port) = listener();
    let stop = Arc::new(AtomicBool::new(false));
    let mut mute = Vec::new();
    let peer = fake_fast_peer(l, stop.clone(), b"p2pchat-fast/1\n", move |mut s| {
        welcome_alice(&mut s);
        mute.push(s); // never read again
    });
    let n = 3000;
    let text = |i: usize| format!("m{i} {}", "z".repeat(900));
    let started = Instant::now();
    // From a thread: alice stops reading her input while her sends are backed up, and
    // her outcomes must be read meanwhile.
    let mut stdin = a.stdin.take().unwrap();
    let typist = thread::spawn(move || {
        for i in 0..n {
            writeln!(stdin, "/send 127.0.0.1:{port} {}", text(i)).unwrap();
        }
        stdin
    });
    let (mut unconfirmed, mut failed) = (0, 0);
    let mut first_at = None;
    for _ in 0..n {
        let v = a.expect_within("an outcome", Duration::from_secs(60), |v| {
            (v["event"] == "sent" || v["event"] == "send_failed") && v["port"] == json!(port)
        });
        first_at.get_or_insert(started.elapsed());
        match (v["event"].as_str(), v["delivery"].as_str()) {
            (Some("sent"), Some("unconfirmed")) => unconfirmed += 1,
            (Some("send_failed"), _) => failed += 1,
            _ => panic!("no receipt can come from this peer: {v}"),
        }
        a.seen.clear();
    }
    a.stdin = Some(typist.join().unwrap());
    let first_at = first_at.unwrap();
    assert!(
        first_at >= Duration::from_millis(1900),
        "an outcome before its deadline, after {first_at:?}"
    );
    assert!(unconfirmed > 0, "some were written on the stream");
    eprintln!("{unconfirmed} unconfirmed, {failed} failed; first after {first_at:?}");
    assert!(a.stderr_text().contains("opening a stream"));
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
    assert_serves(&mut a);
}

/// A sender floods its stream with resends of messages already shown (numbers at or
/// below what its session delivered: dropped without a word, no ack, no output). Reading
/// one inbound stream is held to a few passes per turn of the loop: another peer is still
/// served, and alice still reads her input, while the flood goes on.
#[test]
fn a_stream_flooding_resends_does_not_stall_the_node() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut a = Node::start("alice", &[]);
    let hello = |fresh_from: u64| {
        let mut out = MAGIC.to_vec();
        frame::encode_hello(
            &mut out,
            &frame::Hello {
                version: 1,
                port: 6400,
                session: 7,
                fresh_from,
                name: "flood",
            },
        );
        out
    };
    const HIGH: u64 = 1 << 40;
    // First stream: one message numbered HIGH is shown; the session has delivered it.
    let mut s = connect_from("127.0.0.2", a.sock());
    let mut first = hello(1);
    frame::encode_data(&mut first, HIGH, b"high");
    s.write_all(&first).unwrap();
    a.expect_event("message", &[("text", json!("high"))]);
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_until_closed(&mut s).is_some());
    // Second stream of the same session: numbers 1, 2, 3... are all resends.
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = Arc::new(AtomicBool::new(false));
    let to = a.sock();
    let flooder = {
        let (stop, flooding) = (stop.clone(), flooding.clone());
        thread::spawn(move || {
            let mut s = connect_from("127.0.0.2", to);
            s.write_all(&hello(HIGH + 1)).unwrap();
            let end = Instant::now() + Duration::from_secs(60);
            // Small frames, built once: only their numbers change from one write to the
            // next, so the flood costs its sender far less than its reader.
            let text = b"again";
            let size = frame::DATA_OVERHEAD + text.len();
            let mut buf = Vec::new();
            for _ in 0..(1 << 20) / size {
                frame::encode_data(&mut buf, 1, text);
            }
            let mut seq = 1u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                for at in (0..buf.len()).step_by(size) {
                    buf[at + 5..at + 13].copy_from_slice(&seq.to_be_bytes());
                    seq += 1;
                }
                if s.write_all(&buf).is_err() {
                    break;
                }
                flooding.store(true, Ordering::Relaxed);
            }
        })
    };
    let until = Instant::now() + SOON;
    while !flooding.load(Ordering::Relaxed) {
        assert!(Instant::now() < until, "the flood never started");
        thread::sleep(Duration::from_millis(10));
    }
    assert_serves(&mut a);
    let rows = a.peers();
    assert!(rows.iter().any(|r| r["name"] == "flood"), "{rows:?}");
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(
        a.seen.iter().all(|v| v["text"] != "again"),
        "a resend was shown"
    );
}

/// A "p2pchat" receiver that proves itself, welcomes our stream, then floods it with valid
/// acknowledgements (Ack 0, again and again) faster than they can be read. Reading one
/// outgoing stream must not take the whole loop: alice still serves another peer and
/// still reads her input meanwhile.
#[test]
fn a_receiver_flooding_acks_does_not_stall_the_node() {
    let mut a = Node::start("alice", &["--timeout", "2"]);
    let (l, port) = listener();
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = Arc::new(AtomicBool::new(false));
    let peer = {
        let (stop_flood, flooding) = (stop.clone(), flooding.clone());
        let end = Instant::now() + Duration::from_secs(60);
        fake_fast_peer(l, stop.clone(), b"p2pchat-fast/1\n", move |mut s| {
            welcome_alice(&mut s);
            let mut flood = Vec::new();
            while flood.len() < 1 << 20 {
                frame::encode_ack(&mut flood, 0);
            }
            flooding.store(true, Ordering::Relaxed);
            while !stop_flood.load(Ordering::Relaxed) && Instant::now() < end {
                if s.write_all(&flood).is_err() {
                    break;
                }
            }
        })
    };
    // The first message waits for the probe, then goes by the stream, which the peer
    // then floods.
    a.type_line(&format!("/send 127.0.0.1:{port} first"));
    let until = Instant::now() + SOON;
    while !flooding.load(Ordering::Relaxed) {
        assert!(Instant::now() < until, "no stream opened to the peer");
        thread::sleep(Duration::from_millis(10));
    }
    // Alice still does everything else: another peer's message, her own input.
    assert_serves(&mut a);
    let rows = a.peers();
    assert!(rows.iter().any(|r| r["port"] == json!(port)), "{rows:?}");
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
}

/// A peer that proves itself, then stalls every stream (its handshake never answered):
/// with a short `--timeout` the stream attempt gives up as soon as a probe would, and
/// what waited goes by legacy within its deadline instead of failing.
#[test]
fn a_proven_peer_stalling_its_streams_gets_messages_by_legacy_in_time() {
    let mut a = Node::start("alice", &["--timeout", "4"]);
    let (l, port) = listener();
    let stop = Arc::new(AtomicBool::new(false));
    let mut held = Vec::new();
    // Proven (version 2: encrypted), then every stream's handshake never answered.
    let peer = fake_fast_peer(l, stop.clone(), b"p2pchat-fast/2\n", move |s| held.push(s));
    a.type_line(&format!("/send 127.0.0.1:{port} through anyway"));
    let out = a.expect_within("the outcome", Duration::from_secs(6), |v| {
        v["port"] == json!(port) && (v["event"] == "sent" || v["event"] == "send_failed")
    });
    assert_eq!(
        (&out["event"], &out["delivery"], &out["encrypted"]),
        (&json!("sent"), &json!("closed"), &json!(false)),
        "{out}"
    );
    stop.store(true, Ordering::Relaxed);
    let legacy = peer.join().unwrap();
    assert!(
        legacy.iter().any(|m| m.ends_with(b" alice through anyway")),
        "the message came by legacy: {legacy:?}"
    );
    assert_serves(&mut a);
}
