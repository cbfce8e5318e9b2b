//! p2pchat against a stand-in for the original Python program (`tests/legacy_peer.py`),
//! both driven through stdin like users, on 127.0.0.1.
//!
//! Skipped (with a note on stderr) when `python3` is not installed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use common::{Collector, Node, SOON, closed_port, wait_child};
use serde_json::{Value, json};

/// The legacy program's questions: printed without a newline, so what it prints next
/// continues the same line on a pipe. They are cut off the front of each line read.
const PROMPTS: &[&str] = &[
    "Enter your name (without spaces): ",
    "Enter your port number: ",
    "Enter choice: ",
    "Enter recipient's IP address: ",
    "Enter recipient's port number: ",
    "Enter your message (type exit to disconnect): ",
    "Enter the index of the peer to connect to (Enter 0 to connect to all): ",
];

/// The most the original reads from one connection (`recv(1024)`).
const LEGACY_READ: usize = 1024;

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running `legacy_peer.py`, typed into through stdin, read line by line.
struct Legacy {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far (prompts cut off), in order.
    seen: Vec<String>,
    stderr: Collector,
    port: u16,
}

/// Starts the legacy peer, or returns from the test when python3 is missing.
macro_rules! legacy_or_skip {
    ($name:expr) => {
        match Legacy::start($name) {
            Some(l) => l,
            None => return,
        }
    };
}

impl Legacy {
    /// Starts `python3 tests/legacy_peer.py` as `name` on a free loopback port; `None`
    /// (after a note on stderr) when python3 is not installed.
    fn start(name: &str) -> Option<Legacy> {
        if !python3_available() {
            eprintln!(
                "SKIPPED: python3 is not installed; the legacy interop tests need it to run \
                 tests/legacy_peer.py"
            );
            return None;
        }
        // Free now; the script binds it at once (SO_REUSEADDR), so a clash is unlikely.
        let port = closed_port();
        let mut child = Command::new("python3")
            .arg("tests/legacy_peer.py")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("LEGACY_IP", "127.0.0.1")
            .env("LEGACY_BIND", "127.0.0.1")
            .env("LEGACY_TIMEOUT", "5")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3 tests/legacy_peer.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                if tx
                    .send(without_prompts(line.trim_end_matches(['\n', '\r'])))
                    .is_err()
                {
                    break;
                }
            }
        });
        let stderr = Collector::start(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        let mut legacy = Legacy {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            stderr,
            port,
        };
        legacy.type_line(name);
        legacy.type_line(&port.to_string());
        legacy.expect_line(&format!("Server listening on port {port}"));
        Some(legacy)
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("legacy stdin open");
        writeln!(stdin, "{line}").expect("write to legacy stdin");
        stdin.flush().unwrap();
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "legacy peer: {what}; lines so far: {:#?}\nstderr:\n{}",
            self.seen,
            self.stderr.text()
        )
    }

    /// The next line that is not blank, within [`SOON`].
    fn next_line(&mut self, end: Instant) -> Option<String> {
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if !line.trim().is_empty() {
                return Some(line);
            }
        }
    }

    /// Waits for a line equal to `want`; returns the non-blank lines read before it.
    fn expect_line(&mut self, want: &str) -> Vec<String> {
        let end = Instant::now() + SOON;
        let mut skipped = Vec::new();
        loop {
            match self.next_line(end) {
                Some(line) if line == want => return skipped,
                Some(line) => skipped.push(line),
                None => self.fail(&format!("no line {want:?} within {SOON:?}")),
            }
        }
    }

    /// The very next non-blank line must be `want`.
    fn expect_next(&mut self, want: &str) {
        match self.next_line(Instant::now() + SOON) {
            Some(line) if line == want => {}
            Some(line) => self.fail(&format!("expected {want:?} next, got {line:?}")),
            None => self.fail(&format!("no line {want:?} within {SOON:?}")),
        }
    }

    /// Menu 1, as a user types it: IP, port, message.
    fn send(&mut self, port: u16, text: &str) {
        self.type_line("1");
        self.type_line("127.0.0.1");
        self.type_line(&port.to_string());
        self.type_line(text);
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match wait_child(&mut self.child, timeout) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                self.fail(&format!("did not exit within {timeout:?}"))
            }
        }
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn without_prompts(mut line: &str) -> String {
    while let Some(rest) = PROMPTS.iter().find_map(|p| line.strip_prefix(p)) {
        line = rest;
    }
    line.to_owned()
}

/// `NAME [127.0.0.1:PORT]` as the legacy program writes a peer.
fn at(name: &str, port: u16) -> String {
    format!("{name} [127.0.0.1:{port}]")
}

/// The next event must be `kind` with exactly these documented fields.
fn next_is(node: &mut Node, kind: &str, fields: &[(&str, Value)]) -> Value {
    let Some(v) = node.next_event(SOON) else {
        panic!(
            "{}: no {kind} within {SOON:?}; events: {:#?}\nstderr:\n{}",
            node.name,
            node.seen,
            node.stderr_text()
        );
    };
    assert_eq!(
        v["event"], kind,
        "{}: expected {kind} next, got {v}",
        node.name
    );
    for (k, want) in fields {
        assert_eq!(&v[*k], want, "{}: field {k} of {v}", node.name);
    }
    v
}

fn peer_row(index: usize, name: Value, port: u16, status: &str) -> Value {
    json!({"index": index, "name": name, "ip": "127.0.0.1", "port": port, "status": status})
}

/// The peer list without each row's `speaks` (the fast path's verdict, which depends on
/// whether a probe has been answered yet): a legacy peer is never taken for p2pchat.
fn rows_of(node: &mut Node) -> Vec<Value> {
    let mut rows = node.peers();
    for r in &mut rows {
        let speaks = r.as_object_mut().unwrap().remove("speaks");
        assert!(
            speaks == Some(json!("unknown")) || speaks == Some(json!("legacy")),
            "the legacy peer speaks {speaks:?}"
        );
    }
    rows
}

fn no_address_mismatch(node: &Node) {
    assert!(
        !node.seen.iter().any(|v| v["event"] == "address_mismatch"),
        "the legacy peer's header (127.0.0.1) matches its socket: {:#?}",
        node.seen
    );
}

/// The legacy peer sends with menu 1 and p2pchat reads the message, names and all.
fn legacy_says(py: &mut Legacy, node: &mut Node, text: &str) {
    py.send(node.port, text);
    py.expect_line(&format!(
        "Message sent to Unknown [127.0.0.1:{}]: {text}",
        node.port
    ));
    let fields = [
        ("name", json!("pyold")),
        ("ip", json!("127.0.0.1")),
        ("port", json!(py.port)),
    ];
    next_is(node, "new_peer", &fields);
    let mut with_text = fields.to_vec();
    with_text.push(("text", json!(text)));
    next_is(node, "message", &with_text);
}

/// p2pchat sends with `/send` and the legacy peer, hearing from it for the first time,
/// prints the new peer and the message.
fn p2pchat_says(node: &mut Node, py: &mut Legacy, text: &str) {
    node.type_line(&format!("/send 127.0.0.1:{} {text}", py.port));
    next_is(
        node,
        "sent",
        &[
            ("kind", json!("text")),
            ("text", json!(text)),
            ("confirmed", json!(true)),
            ("name", Value::Null),
            ("ip", json!("127.0.0.1")),
            ("port", json!(py.port)),
        ],
    );
    py.expect_line(&format!("New peer found: {}", at("rusty", node.port)));
    py.expect_next(&format!("Message from {}: {text}", at("rusty", node.port)));
}

#[test]
fn legacy_message_reaches_p2pchat() {
    let mut py = legacy_or_skip!("pyold");
    let mut node = Node::start("rusty", &[]);
    // Two spaces inside and one at the end: the text arrives byte for byte.
    legacy_says(&mut py, &mut node, "hello from  python ");
    no_address_mismatch(&node);
    assert_eq!(
        rows_of(&mut node),
        vec![peer_row(1, json!("pyold"), py.port, "Yet to connect")]
    );
}

#[test]
fn p2pchat_message_reaches_legacy() {
    let mut py = legacy_or_skip!("pyold");
    let mut node = Node::start("rusty", &[]);
    p2pchat_says(&mut node, &mut py, "hi there  python");

    // The original's menu on p2pchat walks the same questions.
    node.type_line("1");
    node.type_line("127.0.0.1");
    node.type_line(&py.port.to_string());
    node.type_line("second, via the menu");
    next_is(
        &mut node,
        "sent",
        &[
            ("kind", json!("text")),
            ("text", json!("second, via the menu")),
            ("confirmed", json!(true)),
            ("port", json!(py.port)),
        ],
    );
    let skipped = py.expect_line(&format!(
        "Message from {}: second, via the menu",
        at("rusty", node.port)
    ));
    assert!(
        !skipped.iter().any(|l| l.starts_with("New peer found")),
        "rusty is not new any more: {skipped:?}"
    );

    py.type_line("2");
    py.expect_line("Active Peers:");
    py.expect_next(&format!("1. {} - Yet to connect", at("rusty", node.port)));
}

#[test]
fn p2pchat_connect_reaches_legacy() {
    let mut py = legacy_or_skip!("pyold");
    let mut node = Node::start("rusty", &[]);
    legacy_says(&mut py, &mut node, "hello");

    node.type_line("/connect");
    next_is(
        &mut node,
        "sent",
        &[
            ("kind", json!("connect")),
            ("text", json!("connect")),
            ("confirmed", json!(true)),
            ("name", json!("pyold")),
            ("ip", json!("127.0.0.1")),
            ("port", json!(py.port)),
        ],
    );
    // The legacy peer knows rusty's address from its own send: not a new peer.
    let skipped = py.expect_line(&format!("{} connected with you", at("rusty", node.port)));
    assert!(
        !skipped.iter().any(|l| l.starts_with("New peer found")),
        "{skipped:?}"
    );
    assert_eq!(
        rows_of(&mut node),
        vec![peer_row(1, json!("pyold"), py.port, "Connected")]
    );
    node.type_line("/connect");
    next_is(
        &mut node,
        "error",
        &[("detail", json!("No peers remaining for connection."))],
    );

    // The legacy side has not connected to rusty itself.
    py.type_line("2");
    py.expect_line("Active Peers:");
    py.expect_next(&format!("1. {} - Yet to connect", at("rusty", node.port)));
}

#[test]
fn legacy_connect_reaches_p2pchat() {
    let mut py = legacy_or_skip!("pyold");
    let mut node = Node::start("rusty", &[]);
    p2pchat_says(&mut node, &mut py, "hello python");

    py.type_line("3");
    py.expect_line("Active Peers remaining for connection:");
    py.expect_next(&format!("1. {}", at("rusty", node.port)));
    py.type_line("1");
    py.expect_line(&format!(
        "Successfully connected to {}",
        at("rusty", node.port)
    ));

    // p2pchat knew the address from its own send; now it learns the name.
    next_is(
        &mut node,
        "connected_with_you",
        &[
            ("name", json!("pyold")),
            ("ip", json!("127.0.0.1")),
            ("port", json!(py.port)),
        ],
    );
    no_address_mismatch(&node);
    assert_eq!(
        rows_of(&mut node),
        vec![peer_row(1, json!("pyold"), py.port, "Yet to connect")]
    );

    py.type_line("2");
    py.expect_line("Active Peers:");
    py.expect_next(&format!("1. {} - Connected", at("rusty", node.port)));
    py.type_line("3");
    py.expect_line("No peers remaining for connection.");
}

#[test]
fn legacy_quit_reaches_every_p2pchat() {
    let mut py = legacy_or_skip!("pyold");
    let mut a = Node::start("rusty", &[]);
    let mut b = Node::start("rusty", &[]);
    legacy_says(&mut py, &mut a, "hello a");
    legacy_says(&mut py, &mut b, "hello b");

    py.type_line("0");
    py.expect_line("Exiting...");
    // One after another, in the order the peers became known.
    py.expect_next(&format!("Disconnected from Unknown [127.0.0.1:{}]", a.port));
    py.expect_next(&format!("Disconnected from Unknown [127.0.0.1:{}]", b.port));
    let status = py.wait_exit(SOON);
    assert!(status.success(), "legacy peer: {status}");

    for node in [&mut a, &mut b] {
        next_is(
            node,
            "peer_left",
            &[
                ("name", json!("pyold")),
                ("ip", json!("127.0.0.1")),
                ("port", json!(py.port)),
            ],
        );
        assert_eq!(node.peers(), Vec::<Value>::new());
    }
}

#[test]
fn p2pchat_quit_reaches_legacy() {
    let mut py = legacy_or_skip!("pyold");
    let mut node = Node::start("rusty", &[]);
    p2pchat_says(&mut node, &mut py, "before I go");

    node.quit();
    next_is(&mut node, "exiting", &[]);
    next_is(
        &mut node,
        "sent",
        &[
            ("kind", json!("exit")),
            ("text", json!("exit")),
            ("confirmed", json!(true)),
            ("ip", json!("127.0.0.1")),
            ("port", json!(py.port)),
        ],
    );
    py.expect_line(&format!("{} disconnected", at("rusty", node.port)));
    py.type_line("2");
    py.expect_line("No active peers.");
}

/// `len` bytes of text that end in a two-byte character, so a cut would split it.
fn text_of(len: usize) -> String {
    let head = "whole ";
    let pad = (len - head.len()) % 2;
    let text = format!(
        "{head}{}{}",
        ".".repeat(pad),
        "é".repeat((len - head.len()) / 2)
    );
    assert_eq!(text.len(), len);
    text
}

#[test]
fn largest_message_arrives_whole_and_a_longer_one_is_refused() {
    let mut py = legacy_or_skip!("pyold");
    // With the header IP fixed, p2pchat can use the whole 1024 bytes for 127.0.0.1.
    let mut node = Node::start("rusty", &["--advertise", "127.0.0.1"]);
    let header = format!("127.0.0.1:{} rusty ", node.port);
    let largest = text_of(LEGACY_READ - header.len());
    assert_eq!(header.len() + largest.len(), LEGACY_READ);

    node.type_line(&format!("/send 127.0.0.1:{} {largest}", py.port));
    next_is(
        &mut node,
        "sent",
        &[
            ("kind", json!("text")),
            ("text", json!(largest)),
            ("confirmed", json!(true)),
        ],
    );
    py.expect_line(&format!("New peer found: {}", at("rusty", node.port)));
    py.expect_next(&format!(
        "Message from {}: {largest}",
        at("rusty", node.port)
    ));

    let longer = format!("{largest}!");
    node.type_line(&format!("/send 127.0.0.1:{} {longer}", py.port));
    let err = next_is(&mut node, "error", &[]);
    let detail = err["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("127.0.0.1:{}", py.port))
            && detail.contains("1025 bytes")
            && detail.contains("1024"),
        "{detail}"
    );

    // Never sent: the next thing either side sees is the message after it.
    node.type_line(&format!("/send 127.0.0.1:{} after the refusal", py.port));
    next_is(
        &mut node,
        "sent",
        &[
            ("text", json!("after the refusal")),
            ("confirmed", json!(true)),
        ],
    );
    let skipped = py.expect_line(&format!(
        "Message from {}: after the refusal",
        at("rusty", node.port)
    ));
    assert!(skipped.is_empty(), "legacy peer saw more: {skipped:?}");
}

/// Without `--advertise` the header IP is each connection's local address, not known when
/// the length is checked; whatever p2pchat does about that, a message that fits even the
/// longest IPv4 header goes whole, and one over 1024 bytes with the real header never goes.
#[test]
fn without_advertise_the_cap_still_holds() {
    let mut py = legacy_or_skip!("pyold");
    let mut node = Node::start("rusty", &[]);
    let longest_header = format!("255.255.255.255:{} rusty ", node.port);
    let fits = text_of(LEGACY_READ - longest_header.len());
    node.type_line(&format!("/send 127.0.0.1:{} {fits}", py.port));
    next_is(
        &mut node,
        "sent",
        &[("text", json!(fits)), ("confirmed", json!(true))],
    );
    py.expect_line(&format!("New peer found: {}", at("rusty", node.port)));
    py.expect_next(&format!("Message from {}: {fits}", at("rusty", node.port)));

    let real_header = format!("127.0.0.1:{} rusty ", node.port);
    let too_long = text_of(LEGACY_READ + 1 - real_header.len());
    node.type_line(&format!("/send 127.0.0.1:{} {too_long}", py.port));
    let err = next_is(&mut node, "error", &[]);
    assert!(err["detail"].as_str().unwrap().contains("1024"), "{err}");
    node.type_line(&format!("/send 127.0.0.1:{} after the refusal", py.port));
    next_is(
        &mut node,
        "sent",
        &[
            ("text", json!("after the refusal")),
            ("confirmed", json!(true)),
        ],
    );
    let skipped = py.expect_line(&format!(
        "Message from {}: after the refusal",
        at("rusty", node.port)
    ));
    assert!(skipped.is_empty(), "legacy peer saw more: {skipped:?}");
}

/// The fast path's probe (an empty connection) beside p2pchat's messages: the original
/// sees exactly the messages, in order, and prints nothing else (no empty message, no
/// traceback); every outcome is a legacy close, and p2pchat never takes it for p2pchat.
#[test]
fn the_fast_path_probe_leaves_the_legacy_peer_unchanged() {
    let mut py = legacy_or_skip!("pyold");
    let mut node = Node::start("rusty", &[]);
    let n = 8;
    for i in 0..n {
        node.type_line(&format!("/send 127.0.0.1:{} probe check {i}", py.port));
        let out = node.expect(&format!("outcome {i}"), |v| {
            v["event"] == "sent" && v["text"] == format!("probe check {i}")
        });
        assert_eq!(out["delivery"], "closed", "{out}");
    }
    let before = py.expect_line(&format!("New peer found: {}", at("rusty", node.port)));
    assert!(
        before
            .iter()
            .all(|l| !l.contains("Message") && !l.contains("rusty")),
        "nothing before the first message: {before:?}"
    );
    for i in 0..n {
        py.expect_next(&format!(
            "Message from {}: probe check {i}",
            at("rusty", node.port)
        ));
    }
    // Its own peer list: one peer, as after any legacy sender.
    py.type_line("2");
    let between = py.expect_line("Active Peers:");
    assert!(
        between
            .iter()
            .all(|l| !l.contains("Message") && !l.contains("New peer")),
        "nothing after the last message: {between:?}"
    );
    py.expect_next(&format!("1. {} - Yet to connect", at("rusty", node.port)));
    let text = py.stderr.text();
    assert!(
        !text.contains("Traceback") && !text.contains("Exception"),
        "the legacy peer complained:\n{text}"
    );
    let rows = node.peers();
    assert_eq!(rows[0]["speaks"], "legacy", "{rows:?}");
    assert!(
        !node.stderr_text().contains("opening a stream"),
        "no stream toward a legacy peer"
    );
}

/// The variant in WIRE-IN-THE-WILD.md that sends `connect` and then reads a reply on the
/// same socket (waiting up to 5 s): from a node with the fast path on, it reads nothing at
/// all, only the close, as from the original; the node shows the connect. The same
/// connection written in pieces (header, then text after a pause) gets nothing either.
#[test]
fn the_variant_reading_a_reply_after_connect_sees_no_byte_from_us() {
    use std::io::Read;
    let mut node = Node::start("rusty", &["--read-timeout", "2"]);
    for (i, pieces) in [
        vec!["127.0.0.1:7101 replier connect"],
        vec!["127.0.0.1:7102 ", "dripper connect"],
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = std::net::TcpStream::connect(node.sock()).unwrap();
        for p in pieces {
            s.write_all(p.as_bytes()).unwrap();
            s.flush().unwrap();
            thread::sleep(Duration::from_millis(50)); // a pause inside the message
        }
        // The variant keeps its side open and reads, as it waits for `IP:PORT NAME
        // connected`; the node ends the message at its idle flush or deadline.
        s.set_read_timeout(Some(SOON + SOON)).unwrap();
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got);
        assert!(got.is_empty(), "case {i}: the variant read {got:?}");
        assert!(read.is_ok(), "case {i}: {read:?}");
        node.expect(&format!("connect {i}"), |v| {
            v["event"] == "connected_with_you"
        });
    }
}
