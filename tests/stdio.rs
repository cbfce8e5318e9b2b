//! stdin, stdout and stderr that are neither a terminal nor a drained pipe: a stderr nobody
//! reads or that has gone away, a stdin and stdout that are a socket (socat `EXEC:`,
//! inetd, systemd socket activation). None of them may stop the node: it still accepts and
//! shows messages, sends what is typed, and quits on a signal.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::Instant;

use common::*;
use serde_json::{Value, json};

/// Sends `payload` on `n` connections, one after the other; the node must close each one
/// (a node stuck in a write would leave them open).
fn flood(to: std::net::SocketAddr, n: usize, payload: &[u8]) {
    for i in 0..n {
        assert!(
            send_raw(to, payload),
            "the node stopped closing connections after {i} of {n}"
        );
    }
}

/// What the user types is still sent: a `/send` reaches a listening peer.
fn assert_sends(node: &mut Node) {
    let (l, port) = listener();
    node.type_line(&format!("/send 127.0.0.1:{port} still sending"));
    let (_, got) = accept_read_within(&l, SOON).expect("the /send reaches its peer");
    assert!(got.ends_with(b" still sending"), "{got:?}");
    node.expect_event("sent", &[("port", json!(port))]);
}

fn sigterm_quits_cleanly(node: &mut Node) {
    signal(&node.child, libc::SIGTERM);
    let status = node.wait_exit(SOON);
    assert!(status.success(), "{status}");
}

/// A stderr pipe nobody reads, and a peer sending thousands of malformed messages (each
/// one a warning line): the node does not stop in a write to stderr.
#[test]
fn a_stderr_nobody_reads_never_stops_the_node() {
    let (mut a, _unread) = Node::spawn_stderr_unread("alice", command("alice", &[]));
    // At ~80 bytes a line, a 64 KiB pipe is full after ~800 warnings.
    flood(a.sock(), 3000, b"complete garbage");
    assert_serves(&mut a);
    assert_sends(&mut a);
    sigterm_quits_cleanly(&mut a);
}

/// More log lines than a stderr nobody reads and the log buffer can hold: the node goes
/// on, and once stderr is read again, a line says how many were dropped.
#[test]
fn log_lines_a_full_stderr_cannot_take_are_dropped_counted_and_said() {
    const N: usize = 1500;
    let (mut a, unread) = Node::spawn_stderr_unread("alice", command("alice", &[]));
    // The smallest pipe (one page), so that the log buffer is what fills.
    // SAFETY: fcntl on a pipe descriptor we own.
    unsafe { libc::fcntl(unread.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    // An `exit` from a peer that is not listed is an info line naming the claimed host:
    // ~380 bytes each, ~570 KB in all, more than the 256 KiB log buffer.
    let exit = format!("{}:5000 ghost exit", "h".repeat(250));
    flood(a.sock(), N, exit.as_bytes());
    assert_serves(&mut a);
    let stderr = Collector::start(unread);
    let said = "log lines dropped: stderr was not keeping up";
    assert!(
        stderr.wait_for(said, SOON),
        "no {said:?} once stderr is read:\n{}",
        stderr.text()
    );
    sigterm_quits_cleanly(&mut a);
    let text = stderr.text();
    let kept = text
        .lines()
        .filter(|l| l.contains("ghost") || l.contains("hhh"))
        .count();
    assert!(kept < N, "every line was kept: {kept}");
}

/// stderr's reader gone (every write fails with EPIPE): logging stops, the node does not
/// (`eprintln!` panicked, exit code 101).
#[test]
fn a_closed_stderr_neither_panics_nor_stops_the_node() {
    let (mut a, stderr) = Node::spawn_stderr_unread("alice", command("alice", &[]));
    drop(stderr);
    flood(a.sock(), 100, b"complete garbage");
    assert_serves(&mut a);
    assert_sends(&mut a);
    sigterm_quits_cleanly(&mut a);
}

/// A node whose stdin and stdout are one end of a Unix socket pair (as socat `EXEC:` or
/// inetd run it); the test holds the other end and reads it only when it chooses.
struct SocketNode {
    child: Child,
    sock: UnixStream,
    /// Bytes read from the socket, not yet a whole line.
    partial: Vec<u8>,
    stderr: Collector,
    port: u16,
}

impl SocketNode {
    fn start(name: &str) -> SocketNode {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let theirs = OwnedFd::from(theirs);
        let mut cmd = command(name, &[]);
        cmd.stdin(Stdio::from(theirs.try_clone().unwrap()))
            .stdout(Stdio::from(theirs))
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run p2pchat");
        let stderr = Collector::start(child.stderr.take().unwrap());
        ours.set_write_timeout(Some(SOON)).unwrap();
        let mut node = SocketNode {
            child,
            sock: ours,
            partial: Vec::new(),
            stderr,
            port: 0,
        };
        let first = node.expect("a first line", |_| true);
        assert_eq!(first["event"], "listening", "first line: {first}");
        node.port = first["port"].as_u64().unwrap() as u16;
        node
    }

    fn sock_addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.sock, "{line}").expect("write to the node's stdin socket");
    }

    /// The next JSON line from the node's stdout, read by `until`.
    fn next_event(&mut self, until: Instant) -> Option<Value> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=nl).collect();
                let v = serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("not JSON ({e}): {}", String::from_utf8_lossy(&line))
                });
                return Some(v);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.partial.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads events until one matches `pred`; panics with the log after [`SOON`].
    fn expect(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let until = Instant::now() + SOON;
        loop {
            match self.next_event(until) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!("no {what} within {SOON:?}; stderr:\n{}", self.stderr.text()),
            }
        }
    }

    /// Ends the node's input; it quits and must exit cleanly.
    fn end_input_and_wait(&mut self) {
        self.sock.shutdown(Shutdown::Write).unwrap();
        // Read what it still writes, so its exit is not held up by a full socket.
        while self.next_event(Instant::now() + SOON).is_some() {}
        let status = wait_child(&mut self.child, SOON).expect("the node exits");
        assert!(status.success(), "{status}");
    }
}

impl Drop for SocketNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// stdin a socket: nothing typed must not leave the node sitting in a read of it (a socket
/// cannot be reopened non-blocking, and the old fallback read the blocking descriptor),
/// and what is typed is read.
#[test]
fn a_socket_stdin_is_read_without_blocking() {
    let mut a = SocketNode::start("alice");
    let (bob, lp) = listener();
    let payload = format!("127.0.0.1:{lp} bob while nothing is typed");
    assert!(send_raw(a.sock_addr(), payload.as_bytes()), "clean close");
    a.expect("the message", |v| {
        v["event"] == "message" && v["text"] == "while nothing is typed"
    });
    a.type_line("/peers");
    let peers = a.expect("the peer list", |v| v["event"] == "peers");
    assert_eq!(peers["peers"][0]["name"], "bob", "{peers}");
    drop(bob); // its `exit` is refused at once
    a.end_input_and_wait();
}

/// stdout a socket nobody reads: the node buffers what it cannot write and goes on
/// receiving, reading what is typed and sending; once read, nothing is missing.
#[test]
fn a_socket_stdout_nobody_reads_does_not_stop_the_node() {
    const N: usize = 600;
    let mut a = SocketNode::start("alice");
    let (flood, lp) = listener();
    let text = "x".repeat(900);
    // ~600 KB of events, far more than a Unix socket holds unread (~200 KB).
    for i in 0..N {
        let payload = format!("127.0.0.1:{lp} flood {i} {text}");
        assert!(
            send_raw(a.sock_addr(), payload.as_bytes()),
            "the node stopped closing connections after {i} of {N}"
        );
    }
    let (l, port) = listener();
    a.type_line(&format!("/send 127.0.0.1:{port} while stdout is full"));
    let (_, got) = accept_read_within(&l, SOON).expect("the /send reaches its peer");
    assert!(got.ends_with(b" alice while stdout is full"), "{got:?}");
    let mut messages = 0;
    a.expect("the send's outcome", |v| {
        messages += usize::from(v["event"] == "message");
        v["event"] == "sent" && v["port"] == json!(port)
    });
    assert_eq!(messages, N, "every message shown, once read");
    drop((flood, l)); // their `exit`s are refused at once
    a.end_input_and_wait();
}

/// A writer on stdin faster than the node can run what it types (`yes /help | p2pchat`):
/// stdin is read one chunk per turn and its lines run only while output keeps up, so
/// memory stays bounded and a message from the network is still shown promptly (before,
/// every line was read into memory first: gigabytes, and the network waited).
#[test]
fn a_stdin_writer_faster_than_the_node_neither_grows_memory_nor_stalls_the_network() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut cmd = command("typist", &[]);
    cmd.stdin(Stdio::piped()).stderr(Stdio::null());
    let (mut child, out, port) = spawn_and_read_port(&mut cmd);
    let mut stdin = child.stdin.take().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let block = "/help\n".repeat(10_000);
            while !stop.load(Ordering::Relaxed) {
                if stdin.write_all(block.as_bytes()).is_err() {
                    break;
                }
            }
        })
    };
    // Read stdout as it comes (a fast reader), looking for the network's message.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in out.lines() {
            let Ok(line) = line else { break };
            if line.contains("\"event\":\"message\"") && tx.send(line).is_err() {
                break;
            }
        }
    });
    // Let the flood run, then a peer sends a message.
    let pid = child.id();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(send_raw(to, b"127.0.0.1:5999 netpeer through the flood"));
    let shown = rx.recv_timeout(SOON);
    let peak = proc_status_kib(pid, "VmHWM:");
    stop.store(true, Ordering::Relaxed);
    signal(&child, libc::SIGTERM);
    let status = wait_child(&mut child, SOON).expect("quits on SIGTERM");
    writer.join().unwrap();
    let shown = shown.expect("the network's message was shown during the flood");
    assert!(shown.contains("through the flood"), "{shown}");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(status.success(), "{status}");
}
