//! A receiver under test, run as a child process: the p2pchat node (`--json`) or the
//! minimal receiver. Its stdout JSON lines are read on a thread and time-stamped on
//! arrival: they are the ground truth of what it received. Its stdin is a pipe kept open;
//! closing it makes either receiver quit.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver as Rx, Sender as Tx, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procstat;
use crate::sys::Pinning;

/// Which receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Node,
    Minimal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Minimal => "minimal",
        }
    }
}

/// How long a receiver may take to print its `listening` line.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Most stderr kept for the report.
const STDERR_CAP: usize = 64 * 1024;

/// A `message` event whose text is one of the load tool's (`p{peer}:{seq}:...`).
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub at: Instant,
    pub peer: u32,
    pub seq: u32,
    /// The event's `name` and `port` match the peer the text names.
    pub consistent: bool,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    /// The p2pchat binary (for [`Kind::Node`]).
    pub node: PathBuf,
    /// Extra arguments for the node.
    pub node_args: Vec<String>,
    pub pinning: Option<Pinning>,
    /// Port of simulated peer 0 (to check events' ports against their texts).
    pub base_port: u16,
    /// Run the output reader ahead of the senders (see [`crate::sys::prefer_this_thread`]).
    pub prompt_reader: bool,
    /// The tool's hidden subcommand that runs the minimal receiver
    /// (`minimal-receiver`, or `minimal-stream-receiver` for the fast path).
    pub minimal: &'static str,
}

/// A running receiver.
pub struct Running {
    /// The node's `--home` (its key): removed after it.
    _home: crate::home::TempHome,
    pub kind: Kind,
    child: Child,
    stdin: Option<ChildStdin>,
    pub pid: u32,
    pub port: u16,
    /// Every event other than the tool's own messages, in order, time-stamped.
    events: Rx<(Instant, Value)>,
    /// How many of the tool's messages have been seen so far.
    pub seen_count: Arc<AtomicUsize>,
    reader: Option<JoinHandle<(Vec<Seen>, usize)>>,
    stderr: Arc<Mutex<String>>,
}

pub fn default_node_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join("p2pchat")
}

impl Running {
    pub fn start(spec: &Spec) -> Result<Running, String> {
        let home = crate::home::TempHome::new("loadnode")?;
        let mut cmd = match spec.kind {
            Kind::Node => {
                let mut cmd = Command::new(&spec.node);
                cmd.arg("--home")
                    .arg(home.path())
                    .args([
                        "--name",
                        "loadnode",
                        "--port",
                        "0",
                        "--bind",
                        "127.0.0.1",
                        "--json",
                        "-q",
                    ])
                    .args(&spec.node_args)
                    .env_remove("P2PCHAT_NAME")
                    .env_remove("P2PCHAT_PORT")
                    .env_remove("RUST_LOG");
                cmd
            }
            Kind::Minimal => {
                let exe = std::env::current_exe()
                    .map_err(|e| format!("cannot find this program's own path: {e}"))?;
                let mut cmd = Command::new(exe);
                cmd.args([spec.minimal, "--port", "0", "--bind", "127.0.0.1"]);
                cmd
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| match spec.kind {
            Kind::Node => format!(
                "cannot run the node {}: {e} (build it, or pass --node PATH)",
                spec.node.display()
            ),
            Kind::Minimal => format!("cannot run the minimal receiver: {e}"),
        })?;
        let pid = child.id();
        if let Some(p) = &spec.pinning
            && let Err(e) = crate::sys::pin(pid as i32, &p.receiver)
        {
            log::warn!(
                "cannot pin the {} to {:?}: {e}",
                spec.kind.as_str(),
                p.receiver
            );
        }

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().expect("stderr lock");
                if s.len() < STDERR_CAP {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });

        let out = child.stdout.take().expect("piped");
        // A million lines a second is 60 MB/s: a 64 KiB pipe would make the receiver wait
        // for the reader every thousand lines. As large as allowed (1 MiB by default).
        grow_pipe(&out);
        let (tx, rx) = channel();
        let seen_count = Arc::new(AtomicUsize::new(0));
        let counter = seen_count.clone();
        let (base, prompt) = (spec.base_port, spec.prompt_reader);
        let reader = std::thread::spawn(move || {
            if prompt {
                let got = crate::sys::prefer_this_thread();
                log::debug!("event reader scheduling: {got}");
            }
            read_events(out, base, tx, counter)
        });

        let mut running = Running {
            _home: home,
            kind: spec.kind,
            stdin: child.stdin.take(),
            child,
            pid,
            port: 0,
            events: rx,
            seen_count,
            reader: Some(reader),
            stderr,
        };
        match running.next_event(START_DEADLINE) {
            Some((_, v)) if v["event"] == "listening" => {
                running.port = v["port"].as_u64().unwrap_or(0) as u16;
                Ok(running)
            }
            other => {
                let _ = running.child.kill();
                let _ = running.child.wait();
                Err(format!(
                    "the {} did not start listening (first line: {:?}); stderr: {}",
                    spec.kind.as_str(),
                    other.map(|(_, v)| v.to_string()),
                    running.stderr().trim()
                ))
            }
        }
    }

    /// The next event that is not one of the tool's messages, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<(Instant, Value)> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Types one line on the receiver's stdin.
    pub fn type_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot type {line:?} to the {}: {e}", self.kind.as_str()))
    }

    /// Closes stdin: end of input, which quits either receiver.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn cpu_time(&self) -> Duration {
        procstat::cpu_time(&self.pid.to_string()).unwrap_or_default()
    }

    pub fn peak_rss_kib(&self) -> u64 {
        procstat::peak_rss_kib(&self.pid.to_string()).unwrap_or(0)
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to leave, at most until `deadline`; kills it after that.
    /// Returns its status and whether it had to be killed.
    pub fn wait_until(&mut self, deadline: Instant) -> (Option<ExitStatus>, bool) {
        loop {
            if let Some(status) = self.try_wait() {
                return (Some(status), false);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return (self.child.wait().ok(), true);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Closes stdin and waits (at most `grace`) for the process to end; then the tool's
    /// messages it printed, in order, and every other event left unread.
    pub fn finish(mut self, grace: Duration) -> Finished {
        self.close_stdin();
        let (status, killed) = self.wait_until(Instant::now() + grace);
        let (seen, bad_lines) = self
            .reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        let rest: Vec<(Instant, Value)> = self.events.try_iter().collect();
        Finished {
            seen,
            bad_lines,
            rest,
            status,
            killed,
            stderr: self.stderr(),
        }
    }

    /// Whatever the process has written on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A receiver that has ended.
pub struct Finished {
    pub seen: Vec<Seen>,
    /// Output lines that were not JSON (a line cut short: output lost).
    pub bad_lines: usize,
    pub rest: Vec<(Instant, Value)>,
    pub status: Option<ExitStatus>,
    pub killed: bool,
    pub stderr: String,
}

/// Raises a pipe's capacity to `/proc/sys/fs/pipe-max-size` (best effort).
pub fn grow_pipe(pipe: &impl std::os::fd::AsRawFd) {
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(1 << 20);
    // SAFETY: fcntl on a descriptor we own; failure leaves the pipe as it was.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, max) };
}

fn read_events(
    out: impl Read,
    base_port: u16,
    tx: Tx<(Instant, Value)>,
    count: Arc<AtomicUsize>,
) -> (Vec<Seen>, usize) {
    let mut seen = Vec::new();
    let mut bad = 0;
    let mut reader = BufReader::with_capacity(256 * 1024, out);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let at = Instant::now();
        // A million lines a second: the workload's own message lines are scanned, not parsed.
        if let Some(seen_line) = scan_message(&line, base_port, at) {
            seen.push(seen_line);
            count.fetch_add(1, Ordering::Release);
            continue;
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                log::info!("receiver printed a line that is not JSON ({e}): {line:?}");
                bad += 1;
                continue;
            }
        };
        if v["event"] == "message"
            && let Some(s) = seen_message(&v, base_port, at)
        {
            seen.push(s);
            count.fetch_add(1, Ordering::Release);
            continue;
        }
        let _ = tx.send((at, v));
    }
    (seen, bad)
}

/// A `message` line exactly as both receivers print one of the workload's (fields in the
/// node's order, no escape in the name or text): read without a JSON parser. `None` for
/// anything else, which then goes through `serde_json`.
fn scan_message(line: &str, base_port: u16, at: Instant) -> Option<Seen> {
    let rest = line.strip_prefix(r#"{"event":"message","name":""#)?;
    let (name, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(r#","ip":""#)?;
    let (_, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(r#","port":"#)?;
    let (port, rest) = rest.split_once(',')?;
    let rest = rest.strip_prefix(r#""text":""#)?;
    let text = rest.strip_suffix("\n")?.strip_suffix("\"}")?;
    if name.contains('\\') || text.contains(['\\', '"']) {
        return None;
    }
    let (peer, seq) = crate::workload::parse_text(text)?;
    let port: u64 = port.parse().ok()?;
    let consistent = port == u64::from(base_port) + u64::from(peer)
        && name.strip_prefix('p').and_then(|n| n.parse::<u32>().ok()) == Some(peer);
    Some(Seen {
        at,
        peer,
        seq,
        consistent,
    })
}

/// Reads `p{peer}:{seq}:...` from a `message` event.
fn seen_message(v: &Value, base_port: u16, at: Instant) -> Option<Seen> {
    let text = v["text"].as_str()?;
    let (peer, seq) = crate::workload::parse_text(text)?;
    let consistent = v["port"].as_u64() == Some(u64::from(base_port) + u64::from(peer))
        && v["name"].as_str() == Some(crate::workload::peer_name(peer).as_str());
    Some(Seen {
        at,
        peer,
        seq,
        consistent,
    })
}
