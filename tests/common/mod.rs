//! Test harness: runs real `p2pchat` processes on loopback with `--port 0 --json`.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
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
    pub stderr: Collector,
    pub port: u16,
    pub name: String,
}

/// A directory of its own for one node's files (key, known_peers), under cargo's
/// temporary directory for tests: no test touches the real `~/.config`.
pub fn config_home() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("config-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make a config directory");
    dir
}

/// The node's binary, with `XDG_CONFIG_HOME` pointing at a fresh [`config_home`].
pub fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("XDG_CONFIG_HOME", config_home());
    cmd
}

pub fn command(name: &str, extra: &[&str]) -> Command {
    let mut cmd = bin();
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
            true => Collector::start(err.take().unwrap()),
            false => Collector::empty(),
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
                    self.stderr.text()
                ),
            }
        }
    }

    /// Waits (at most `timeout`) for the first event matching `pred` without keeping the
    /// events before it in the history, for tests that push many thousands; whether it
    /// came.
    pub fn skip_to(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if pred(&v) => return true,
                Ok(_) => {}
                Err(_) => return false,
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
        match wait_child(&mut self.child, timeout) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {timeout:?}; events {:#?}\nstderr:\n{}",
                    self.name,
                    self.seen,
                    self.stderr.text()
                );
            }
        }
    }

    /// Quits with `/quit` and waits for a clean exit.
    pub fn quit(&mut self) {
        self.type_line("/quit");
        let status = self.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{}: {status}", self.name);
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Waits until the node's log (stderr) holds `what`; panics with the history.
    pub fn expect_stderr(&self, what: &str) {
        self.expect_stderr_within(what, SOON);
    }

    pub fn expect_stderr_within(&self, what: &str, timeout: Duration) {
        if !self.stderr.wait_for(what, timeout) {
            panic!(
                "{}: no {what:?} logged within {timeout:?}; events: {:#?}\nstderr:\n{}",
                self.name,
                self.seen,
                self.stderr.text()
            );
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

/// Accepts one connection within [`SOON`]; panics if none comes.
pub fn accept_within(l: &TcpListener) -> (TcpStream, SocketAddr) {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + SOON;
    loop {
        match l.accept() {
            Ok((s, from)) => {
                s.set_nonblocking(false).unwrap();
                return (s, from);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < end => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no connection to the raw listener within {SOON:?}: {e}"),
        }
    }
}

/// Accepts the connection that carries a message (within [`SOON`]) without reading it:
/// empty connections before it (the node's fast-path probes, shut down without a byte)
/// are closed unanswered, as the original closes them, and the next one is awaited.
pub fn accept_message_within(l: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        let (s, from) = accept_within(l);
        s.set_read_timeout(Some(SOON)).unwrap();
        let mut first = [0u8; 1];
        if matches!(s.peek(&mut first), Ok(0)) {
            continue; // a probe: closed as a legacy program closes it
        }
        s.set_read_timeout(None).unwrap();
        return (s, from);
    }
}

/// Accepts one message's connection (within [`SOON`]) and reads it to the end, as a
/// well-behaved legacy receiver. Empty connections are skipped as the original skips
/// them: they are the node's fast-path probes (PROTOCOL.md), never messages.
pub fn accept_one(l: &TcpListener) -> (SocketAddr, Vec<u8>) {
    loop {
        let (mut s, from) = accept_within(l);
        s.set_read_timeout(Some(SOON)).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        if !buf.is_empty() {
            return (from, buf);
        }
    }
}

/// Accepts one connection within `limit` and reads it to the end; `None` if none came.
pub fn accept_read_within(l: &TcpListener, limit: Duration) -> Option<(SocketAddr, Vec<u8>)> {
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

/// Types far more `/help` into `stdin` than the unread pipe `stdout_fd` (the node's
/// stdout) holds, and waits until that pipe is full: the node is holding output back.
pub fn back_up_stdout(stdin: &mut ChildStdin, stdout_fd: std::os::fd::RawFd) {
    stdin.write_all("/help\n".repeat(3000).as_bytes()).unwrap();
    wait_pipe_holds(stdout_fd, 60_000);
}

/// Waits (at most [`SOON`]) until the pipe read end `fd` holds at least `bytes` unread
/// bytes: the child writing into it is being held back.
pub fn wait_pipe_holds(fd: std::os::fd::RawFd, bytes: libc::c_int) {
    let end = Instant::now() + SOON;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD on a pipe the caller owns, into an int we own.
        unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
        if queued >= bytes {
            return;
        }
        assert!(
            Instant::now() < end,
            "the pipe never filled ({queued} bytes)"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A node started under `ulimit -n limit` (through bash), stdin piped.
pub fn node_with_fd_limit(name: &str, limit: u32) -> Node {
    let script = format!(
        "ulimit -n {limit} && exec {BIN} --name {name} --port 0 --bind 127.0.0.1 --json -v"
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .env("XDG_CONFIG_HOME", config_home())
        .stdin(Stdio::piped());
    Node::spawn(name, cmd)
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

/// A closed port: bound then dropped, so nothing listens there.
pub fn closed_port() -> u16 {
    let (l, port) = listener();
    drop(l);
    port
}

/// How a connection to the node ended, as its other end sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The node closed it having read everything sent (FIN).
    Eof,
    /// The node closed it with bytes unread, or refused it at once (RST).
    Reset,
    /// Still open when the wait ended.
    Open,
}

/// Waits (at most `limit`) for the node to close `s`. The node never writes on a
/// connection it accepted, so bytes from it, or another error, fail the test.
pub fn wait_end(s: &mut TcpStream, limit: Duration) -> End {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    match s.read(&mut buf) {
        Ok(0) => End::Eof,
        Ok(n) => panic!("the node wrote {n} bytes on an inbound connection"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => End::Reset,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            End::Open
        }
        Err(e) => panic!("reading a connection to the node: {e}"),
    }
}

// ----- processes ----------------------------------------------------------------------

/// Waits for `child` to exit, at most `timeout`; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (each at most [`SOON`]) for `child` to exit and for the end of `out`, one of its
/// pipes; returns the exit status and all that `out` carried.
pub fn finish_output(child: &mut Child, out: impl Read + Send + 'static) -> (ExitStatus, String) {
    let out = Collector::start(out);
    let Some(status) = wait_child(child, SOON) else {
        let _ = child.kill();
        panic!("no exit within {SOON:?}; output so far:\n{}", out.text());
    };
    (status, out.wait_end(SOON))
}

/// The port a node announces on its first line: `{"event":"listening",..,"port":N}` with
/// `--json`, `Server listening on port N` without.
pub fn announced_port(line: &str) -> u16 {
    let line = line.trim_end();
    let port = match serde_json::from_str::<Value>(line) {
        Ok(v) => v["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
        Err(_) => line
            .strip_prefix("Server listening on port ")
            .and_then(|p| p.parse().ok()),
    };
    port.unwrap_or_else(|| panic!("no port in the first line {line:?}"))
}

/// Spawns `cmd` with stdout piped and reads its first line (within [`SOON`]) for the port
/// it listens on; returns the child, the rest of its stdout and the port.
pub fn spawn_and_read_port(cmd: &mut Command) -> (Child, BufReader<ChildStdout>, u16) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("run p2pchat");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    // The first line is read on a thread, so a node that never prints one fails the test
    // instead of hanging it.
    thread::spawn(move || {
        let mut out = BufReader::new(out);
        let mut first = String::new();
        let read = out.read_line(&mut first).map(|_| first);
        let _ = tx.send((read, out));
    });
    let Ok((first, out)) = rx.recv_timeout(SOON) else {
        let _ = child.kill();
        panic!("no first line within {SOON:?}");
    };
    let first = first.expect("read the first line");
    let port = announced_port(&first);
    (child, out, port)
}

/// Everything a child writes to one pipe (or a terminal), collected by a thread as it
/// arrives, so that neither a full pipe nor a read blocks the test.
#[derive(Debug, Clone)]
pub struct Collector {
    text: Arc<Mutex<String>>,
    ended: Arc<Mutex<bool>>,
}

impl Collector {
    /// A collector for output the test does not read (it stays empty).
    pub fn empty() -> Collector {
        Collector {
            text: Arc::default(),
            ended: Arc::new(Mutex::new(true)),
        }
    }

    pub fn start(mut from: impl Read + Send + 'static) -> Collector {
        let c = Collector {
            text: Arc::new(Mutex::new(String::new())),
            ended: Arc::new(Mutex::new(false)),
        };
        let sink = c.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // A pipe ends with 0; a terminal with EIO once nobody else holds it.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.text
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            *sink.ended.lock().unwrap() = true;
        });
        c
    }

    /// What has arrived so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) until the text holds `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while !self.text.lock().unwrap().contains(what) {
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Waits (at most `timeout`) for the end of the output (every writer gone), then
    /// returns all of it; panics if it has not ended.
    pub fn wait_end(&self, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        while !*self.ended.lock().unwrap() {
            assert!(
                Instant::now() < end,
                "output still open after {timeout:?}:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(10));
        }
        self.text()
    }
}

// ----- the machine --------------------------------------------------------------------

/// Raises this process's open-file limit to its hard limit (at most 65,536), for tests
/// that hold thousands of connections.
pub fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on structs we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Lowers a running process's open-file limit to its lowest free descriptor number, so
/// the next descriptor it opens fails with EMFILE whatever descriptors it inherited.
pub fn leave_no_free_fd(pid: u32) {
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).unwrap();
    let lim = libc::rlimit {
        rlim_cur: lowest_free,
        rlim_max: lowest_free,
    };
    // SAFETY: prlimit on our own child with a struct we own; the old value is not asked.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// A `kB` field of `/proc/PID/status` (`"VmRSS:"`, `"VmHWM:"`), in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
