//! Test harness: runs real `p2pchat` processes on loopback with `--port 0 --json`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_p2pchat");
/// Generous bound for anything that should happen "at once" (CI machines are slow).
pub const SOON: Duration = Duration::from_secs(10);

/// A running node whose stdin we type into and whose JSON events we read.
pub struct Node {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
    pub stderr: Arc<Mutex<String>>,
    pub port: u16,
    pub name: String,
}

pub fn command(name: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--name",
        name,
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--json",
        "-v",
    ])
    .args(extra)
    .env_remove("P2PCHAT_NAME")
    .env_remove("P2PCHAT_PORT");
    cmd
}

impl Node {
    /// Starts a node with a piped stdin (kept open until [`Node::close_stdin`]).
    pub fn start(name: &str, extra: &[&str]) -> Node {
        let mut cmd = command(name, extra);
        cmd.stdin(Stdio::piped());
        Node::spawn(name, cmd)
    }

    /// Starts a node from a prepared command (stdin set by the caller).
    pub fn spawn(name: &str, cmd: Command) -> Node {
        Node::launch(name, cmd, true).0
    }

    /// Starts a node whose stderr is a pipe handed back unread: keep it to leave the pipe
    /// full, or drop it to close it under the node.
    pub fn spawn_stderr_unread(name: &str, mut cmd: Command) -> (Node, ChildStderr) {
        cmd.stdin(Stdio::piped());
        let (node, stderr) = Node::launch(name, cmd, false);
        (node, stderr.expect("stderr piped"))
    }

    fn launch(name: &str, mut cmd: Command, read_stderr: bool) -> (Node, Option<ChildStderr>) {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run p2pchat");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take();
        let stderr = match read_stderr {
            true => collect(err.take().unwrap()),
            false => Arc::default(),
        };
        let stdin = child.stdin.take();
        let mut node = Node {
            child,
            stdin,
            events: rx,
            seen: Vec::new(),
            stderr,
            port: 0,
            name: name.to_owned(),
        };
        let first = node.next_event(SOON).expect("the node prints a first line");
        assert_eq!(first["event"], "listening", "first line: {first}");
        node.port = first["port"].as_u64().unwrap() as u16;
        (node, err)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn sock(&self) -> SocketAddr {
        self.addr().parse().unwrap()
    }

    /// Types one line.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to node stdin");
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        match self.events.recv_timeout(timeout) {
            Ok(v) => {
                self.seen.push(v.clone());
                Some(v)
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Waits for the first event (from now on) matching `pred`; panics with the history.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(what, SOON, pred)
    }

    pub fn expect_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "{}: no {what} within {timeout:?}; events: {:#?}\nstderr:\n{}",
                    self.name,
                    self.seen,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Waits for an event of kind `event` whose fields equal those in `fields`.
    pub fn expect_event(&mut self, event: &str, fields: &[(&str, Value)]) -> Value {
        let what = format!("{event} {fields:?}");
        self.expect(&what, |v| {
            v["event"] == event && fields.iter().all(|(k, want)| &v[*k] == want)
        })
    }

    /// Collects events until none arrives for `quiet`.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.next_event(quiet) {
            out.push(v);
        }
        out
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match wait_exit(&mut self.child, timeout) {
            Some(status) => status,
            None => panic!(
                "{} did not exit within {timeout:?}; events {:#?}\nstderr:\n{}",
                self.name,
                self.seen,
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// Quits with `/quit` and waits for a clean exit.
    pub fn quit(&mut self) {
        self.type_line("/quit");
        let status = self.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{}: {status}", self.name);
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr holds `text` (it is read on another thread, so a line the node
    /// has written may not be there yet); panics with the log after [`SOON`].
    pub fn expect_log(&self, text: &str) {
        let end = Instant::now() + SOON;
        while !self.stderr_text().contains(text) {
            assert!(
                Instant::now() < end,
                "{}: no {text:?} logged within {SOON:?}; stderr:\n{}",
                self.name,
                self.stderr_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The peer list, asked for with `/peers`.
    pub fn peers(&mut self) -> Vec<Value> {
        self.type_line("/peers");
        let v = self.expect_event("peers", &[]);
        v["peers"].as_array().unwrap().clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `err` to its end on a thread; what has arrived so far is in the string.
pub fn collect(mut err: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Waits up to `timeout` for `child` to exit; kills it and returns `None` if it has not.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// A well-behaved legacy peer sends one message; the node must show it.
pub fn assert_serves(node: &mut Node) {
    let (_l, port) = listener();
    let text = format!("still serving {port}");
    let payload = format!("127.0.0.1:{port} good {text}");
    assert!(send_raw(node.sock(), payload.as_bytes()), "clean close");
    node.expect_event(
        "message",
        &[
            ("name", serde_json::json!("good")),
            ("text", serde_json::json!(text)),
        ],
    );
}

/// Sends one raw legacy message (one connection, write, close) and returns what the node
/// did with the connection: `true` if it closed cleanly.
pub fn send_raw(to: SocketAddr, payload: &[u8]) -> bool {
    let mut s = TcpStream::connect(to).expect("connect to node");
    s.set_read_timeout(Some(SOON)).unwrap();
    s.write_all(payload).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).is_ok()
}

/// A listener on a free loopback port, as a fake peer.
pub fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Accepts one connection and reads it to the end (a well-behaved legacy receiver).
pub fn accept_one(l: &TcpListener) -> (SocketAddr, Vec<u8>) {
    l.set_nonblocking(false).unwrap();
    let (mut s, from) = l.accept().unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    (from, buf)
}

/// Accepts one connection within `limit` and reads it to the end; `None` if none came.
pub fn accept_within(l: &TcpListener, limit: Duration) -> Option<(SocketAddr, Vec<u8>)> {
    let mut pfd = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, its count is 1.
    if unsafe { libc::poll(&mut pfd, 1, ms) } != 1 {
        return None;
    }
    Some(accept_one(l))
}

/// A closed port: bound then dropped, so nothing listens there.
pub fn closed_port() -> u16 {
    let (l, port) = listener();
    drop(l);
    port
}
