//! Nodes mode: two real p2pchat nodes, A and B. `/send 127.0.0.1:PORT_B TEXT` lines are
//! piped into A's stdin; B's `--json` stdout is read by the tool, which counts every
//! message it shows. Each phase starts a fresh pair:
//!
//! * **fast**: one warm-up message first, then `/peers` on A until B is listed as
//!   `"speaks":"p2pchat/N"` (the proof), so the measured messages go by stream; then
//!   MESSAGES lines as fast as A takes them. Counted from the first measured line written to
//!   A's stdin to the last of them seen on B's stdout.
//! * **legacy**: the same with `--legacy-only` on both nodes (one connection per message).
//! * **latency**: on the fast path, lines offered at a steady rate; each text carries the
//!   instant it was due (so a late writer counts against the figure), taken off the instant
//!   B's line is read.
//! * **latency floor**: the latency phase again, with two minimal relays (`relay.rs`) in
//!   place of the nodes, same pinning: what the machine itself costs at that rate.
//! * **rss**: RSS_LINES lines piped into A as fast as it takes them: A's peak RSS (VmHWM).
//!
//! Message `k` has the text `t{k}:{due_us}:` padded with `x` to `--size` bytes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver as Rx, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::procstat;
use crate::stats::{Percentiles, micros};
use crate::sys::Pinning;

#[derive(Debug, Clone)]
pub struct Options {
    pub node: PathBuf,
    pub node_args: Vec<String>,
    pub messages: usize,
    pub size: usize,
    pub legacy: bool,
    pub latency_rate: u64,
    pub latency_messages: usize,
    pub rss_lines: usize,
    /// The nodes' send deadline (`--timeout`), long enough for the legacy run's queue.
    pub send_timeout: u64,
    pub pinning: Option<Pinning>,
    /// Nothing new on B for this long: what is missing is lost.
    pub idle: Duration,
}

/// What B showed of one phase.
#[derive(Debug, Default, Clone)]
struct Count {
    seen: usize,
    duplicates: usize,
    out_of_order: usize,
    lost: usize,
    wall: Duration,
    latency: Percentiles,
    a_cpu: Duration,
    b_cpu: Duration,
    a_peak_rss_kib: u64,
    speaks: String,
    a_receipts: usize,
    a_other_outcomes: usize,
    exit_ok: bool,
}

impl Count {
    fn rate(&self) -> f64 {
        if self.wall.is_zero() {
            0.0
        } else {
            self.seen as f64 / self.wall.as_secs_f64()
        }
    }

    fn correct(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0
    }

    fn json(&self) -> Value {
        json!({
            "seen": self.seen,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "wall_s": (self.wall.as_secs_f64() * 1000.0).round() / 1000.0,
            "msgs_per_s": self.rate().round(),
            "latency": self.latency.json(),
            "a_cpu_s": (self.a_cpu.as_secs_f64() * 1000.0).round() / 1000.0,
            "b_cpu_s": (self.b_cpu.as_secs_f64() * 1000.0).round() / 1000.0,
            "a_peak_rss_kib": self.a_peak_rss_kib,
            "speaks": self.speaks,
            "a_receipts": self.a_receipts,
            "a_other_outcomes": self.a_other_outcomes,
            "exit_ok": self.exit_ok,
            "correct": self.correct(),
        })
    }
}

/// What stands in for nodes A and B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pair {
    /// Two p2pchat nodes (the fast path once B is proven).
    Fast,
    /// Two p2pchat nodes with `--legacy-only`.
    Legacy,
    /// Two minimal relays: the floor.
    Floor,
}

/// One message B showed: when it was read, its number, when it was due.
struct Arrival {
    at: Instant,
    k: u64,
    due_us: u64,
}

struct NodeProc {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    port: u16,
    lines: Rx<String>,
    arrivals: Option<JoinHandle<Vec<Arrival>>>,
    count: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<(usize, usize)>>,
    /// The node's `--home` (its key): removed after it.
    _home: crate::home::TempHome,
}

impl NodeProc {
    /// Starts a node and the thread that reads its stdout: message lines carrying our
    /// texts are counted (B's), send outcomes too (A's); other lines go to `lines`.
    fn start(
        opts: &Options,
        name: &str,
        pair: Pair,
        cpus: Option<&[usize]>,
    ) -> Result<NodeProc, String> {
        let home = crate::home::TempHome::new(name)?;
        let mut cmd = match pair {
            Pair::Floor => {
                let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
                let mut cmd = Command::new(me);
                cmd.arg("minimal-relay");
                cmd
            }
            Pair::Fast | Pair::Legacy => {
                let mut cmd = Command::new(&opts.node);
                cmd.arg("--home")
                    .arg(home.path())
                    .args([
                        "--name",
                        name,
                        "--port",
                        "0",
                        "--bind",
                        "127.0.0.1",
                        "--json",
                        "-q",
                    ])
                    .args(["--timeout", &opts.send_timeout.to_string()])
                    .args(&opts.node_args);
                if pair == Pair::Legacy {
                    cmd.arg("--legacy-only");
                }
                cmd
            }
        };
        cmd.env_remove("P2PCHAT_NAME")
            .env_remove("P2PCHAT_PORT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(cpus) = cpus {
            // Pinned before it runs, so every thread it starts (the relay's) is too.
            let cpus = cpus.to_vec();
            // SAFETY: between fork and exec the closure only makes one system call
            // (sched_setaffinity), on memory it owns.
            unsafe {
                cmd.pre_exec(move || crate::sys::pin(0, &cpus));
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run the node {}: {e} (build it, or pass --node PATH)",
                opts.node.display()
            )
        })?;
        let pid = child.id();
        let out = child.stdout.take().expect("piped");
        crate::receiver::grow_pipe(&out);
        let (tx, lines) = channel();
        let count = Arc::new(AtomicUsize::new(0));
        let outcomes = Arc::new(Mutex::new((0, 0)));
        let (c, o) = (count.clone(), outcomes.clone());
        // Only B's lines are timed: its reader runs first on its CPU. A's (outcomes,
        // counted) waits its turn like any thread there.
        let timed = name == "nodeb";
        let arrivals = std::thread::spawn(move || {
            if timed {
                let _ = crate::sys::prefer_this_thread();
            }
            let mut got = Vec::new();
            let mut reader = BufReader::with_capacity(1 << 20, out);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let at = Instant::now();
                if let Some((k, due_us)) = scan(&line) {
                    got.push(Arrival { at, k, due_us });
                    c.fetch_add(1, Ordering::Release);
                    continue;
                }
                if line.starts_with(r#"{"event":"sent""#) {
                    let mut o = o.lock().expect("outcomes");
                    if line.contains(r#""delivery":"receipt""#) {
                        o.0 += 1;
                    } else {
                        o.1 += 1;
                    }
                    continue;
                }
                if line.starts_with(r#"{"event":"send_failed""#) {
                    o.lock().expect("outcomes").1 += 1;
                    continue;
                }
                let _ = tx.send(line.clone());
            }
            got
        });
        let mut node = NodeProc {
            _home: home,
            child,
            stdin: None,
            pid,
            port: 0,
            lines,
            arrivals: Some(arrivals),
            count,
            outcomes,
        };
        node.stdin = node.child.stdin.take();
        if let Some(stdin) = &node.stdin {
            // As much queued input as the system allows: A never waits for this tool's
            // writer to be scheduled.
            crate::receiver::grow_pipe(stdin);
        }
        let line = node
            .lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "a node did not start".to_string())?;
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        node.port = v["port"].as_u64().unwrap_or(0) as u16;
        if v["event"] != "listening" || node.port == 0 {
            return Err(format!("a node's first line was not `listening`: {line}"));
        }
        Ok(node)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin
            .write_all(bytes)
            .map_err(|e| format!("cannot write to node A: {e}"))
    }

    fn cpu(&self) -> Duration {
        procstat::cpu_time(&self.pid.to_string()).unwrap_or_default()
    }

    fn peak_rss_kib(&self) -> u64 {
        procstat::peak_rss_kib(&self.pid.to_string()).unwrap_or(0)
    }

    /// Closes stdin (the node quits) and waits; then what its reader gathered.
    fn finish(mut self, grace: Duration) -> (bool, Vec<Arrival>) {
        self.stdin = None;
        let deadline = Instant::now() + grace;
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let got = self
            .arrivals
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (status.is_some_and(|s| s.success()), got)
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `(k, due_us)` from B's message line whose text is one of ours.
fn scan(line: &str) -> Option<(u64, u64)> {
    if !line.starts_with(r#"{"event":"message","#) {
        return None;
    }
    let at = line.find(r#""text":"t"#)? + 9;
    let mut it = line[at..].splitn(3, ':');
    let k = it.next()?.parse().ok()?;
    let due = it.next()?.parse().ok()?;
    Some((k, due))
}

/// The `/send` line for message `k`, due `due_us` after the phase's start.
fn send_line(out: &mut Vec<u8>, port: u16, k: u64, due_us: u64, size: usize) {
    let at = out.len();
    let _ = write!(out, "/send 127.0.0.1:{port} ");
    let text_at = out.len();
    let _ = write!(out, "t{k}:{due_us}:");
    let len = out.len() - text_at;
    if len < size {
        out.resize(text_at + size, b'x');
    }
    out.push(b'\n');
    debug_assert!(out.len() > at);
}

/// Waits until B has shown `n` messages, or nothing new for `idle`.
fn wait_count(b: &NodeProc, n: usize, idle: Duration) {
    let mut last = b.count.load(Ordering::Acquire);
    let mut since = Instant::now();
    while last < n {
        std::thread::sleep(Duration::from_millis(1));
        let now = b.count.load(Ordering::Acquire);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= idle {
            return;
        }
    }
}

/// How A lists B (`/peers`): `"p2pchat/1"`, `"legacy"`, `"unknown"`.
fn speaks(a: &mut NodeProc, b_port: u16) -> Result<String, String> {
    a.write(b"/peers\n")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = a.lines.recv_timeout(left) else {
            break;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["event"] == "peers" {
            let row = v["peers"].as_array().and_then(|rows| {
                rows.iter()
                    .find(|r| r["port"].as_u64() == Some(u64::from(b_port)))
            });
            return Ok(row
                .and_then(|r| r["speaks"].as_str())
                .unwrap_or("absent")
                .to_owned());
        }
    }
    Err("node A did not answer /peers".into())
}

#[derive(Clone, Copy)]
enum Feed {
    /// As fast as A takes them.
    Flood(usize),
    /// `n` at `rate` per second.
    Paced(usize, u64),
}

/// One phase on a fresh pair of nodes.
fn phase(opts: &Options, pair: Pair, feed: Feed) -> Result<Count, String> {
    let t0 = Instant::now();
    let (a_cpus, b_cpus) = match &opts.pinning {
        Some(p) => (Some(p.receiver.as_slice()), Some(p.load.as_slice())),
        None => (None, None),
    };
    // Where this tool's threads (the writer feeding A, the readers) run; threads started
    // from here on inherit it. In a flood, beside B, never on A's CPU: A's time is what
    // is measured, and B has most of its CPU to spare. At a steady rate, anywhere: A is
    // mostly idle, and a paced writer sharing B's CPU would be late with its lines.
    static ALL_CPUS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    let all = ALL_CPUS.get_or_init(crate::sys::allowed_cpus);
    let tool_cpus = match feed {
        Feed::Flood(_) => b_cpus,
        Feed::Paced(..) => Some(all.as_slice()),
    };
    if let Some(cpus) = tool_cpus.filter(|c| !c.is_empty()) {
        let _ = crate::sys::pin(0, cpus);
    }
    let b = NodeProc::start(opts, "nodeb", pair, b_cpus)?;
    let mut a = NodeProc::start(opts, "nodea", pair, a_cpus)?;
    let port = b.port;
    // Warm-up: message 0 (it opens the relay's connection), then wait for the proof
    // (fast path only).
    let mut buf = Vec::new();
    send_line(&mut buf, port, 0, 0, opts.size);
    a.write(&buf)?;
    wait_count(&b, 1, Duration::from_secs(10));
    let mut said = match pair {
        Pair::Floor => "minimal relay".to_owned(),
        _ => speaks(&mut a, port)?,
    };
    if pair == Pair::Fast {
        let until = Instant::now() + Duration::from_secs(15);
        while !said.starts_with("p2pchat/") && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            said = speaks(&mut a, port)?;
        }
        if !said.starts_with("p2pchat/") {
            return Err(format!("node A never saw B as a p2pchat peer: {said}"));
        }
        // One more (number 0 again, not counted) opens the stream before the clock starts.
        a.write(&buf)?;
        wait_count(&b, 2, Duration::from_secs(10));
    }
    let warm = b.count.load(Ordering::Acquire);
    let n = match feed {
        Feed::Flood(n) | Feed::Paced(n, _) => n,
    };
    let a_cpu0 = a.cpu();
    let b_cpu0 = b.cpu();
    let start = Instant::now();
    let start_us = start.duration_since(t0).as_micros() as u64;
    let mut stdin = a.stdin.take().ok_or("stdin closed")?;
    let size = opts.size;
    let writer = std::thread::spawn(move || -> Result<ChildStdin, String> {
        let mut buf = Vec::with_capacity(1 << 20);
        match feed {
            Feed::Flood(n) => {
                for k in 1..=n as u64 {
                    send_line(&mut buf, port, k, start_us, size);
                    if buf.len() >= 256 << 10 {
                        stdin.write_all(&buf).map_err(|e| e.to_string())?;
                        buf.clear();
                    }
                }
                stdin.write_all(&buf).map_err(|e| e.to_string())?;
            }
            Feed::Paced(n, rate) => {
                crate::sys::precise_timers();
                let step = Duration::from_secs_f64(1.0 / rate as f64);
                let mut k = 1u64;
                while k <= n as u64 {
                    let now = Instant::now();
                    buf.clear();
                    while k <= n as u64 {
                        let due = start + step * (k - 1) as u32;
                        if due > now {
                            break;
                        }
                        let due_us = due.duration_since(t0).as_micros() as u64;
                        send_line(&mut buf, port, k, due_us, size);
                        k += 1;
                    }
                    if !buf.is_empty() {
                        stdin.write_all(&buf).map_err(|e| e.to_string())?;
                    }
                    // Asleep until the next line is due (not a fixed poll, whose
                    // granularity would count as the nodes' latency).
                    let next = start + step * (k.saturating_sub(1)) as u32;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        Ok(stdin)
    });
    wait_count(&b, n + warm, opts.idle);
    let stdin = writer.join().map_err(|_| "writer panicked")??;
    a.stdin = Some(stdin);
    let a_cpu = a.cpu().saturating_sub(a_cpu0);
    let b_cpu = b.cpu().saturating_sub(b_cpu0);
    let a_peak = a.peak_rss_kib();
    let (receipts, other) = *a.outcomes.lock().expect("outcomes");
    let (a_ok, _) = a.finish(Duration::from_secs(30));
    let (b_ok, got) = b.finish(Duration::from_secs(30));
    let mut c = Count {
        speaks: said,
        a_cpu,
        b_cpu,
        a_peak_rss_kib: a_peak,
        a_receipts: receipts,
        a_other_outcomes: other,
        exit_ok: a_ok && b_ok,
        ..Count::default()
    };
    let mut times = vec![0u32; n + 1];
    let mut last_k = 0u64;
    let mut last_at = start;
    let mut lat = Vec::with_capacity(n);
    for r in &got {
        if r.k == 0 || r.k > n as u64 {
            continue;
        }
        times[r.k as usize] += 1;
        if times[r.k as usize] > 1 {
            c.duplicates += 1;
            continue;
        }
        if r.k < last_k {
            c.out_of_order += 1;
        }
        last_k = last_k.max(r.k);
        last_at = last_at.max(r.at);
        let due = t0 + Duration::from_micros(r.due_us);
        lat.push(r.at.saturating_duration_since(due));
    }
    c.seen = times[1..].iter().filter(|&&t| t > 0).count();
    c.lost = n - c.seen;
    c.wall = last_at.saturating_duration_since(start);
    c.latency = Percentiles::of(&mut lat);
    Ok(c)
}

pub struct Report {
    opts: Options,
    fast: Count,
    legacy: Option<Count>,
    latency: Option<Count>,
    latency_floor: Option<Count>,
    rss: Option<Count>,
}

impl Report {
    pub fn correct(&self) -> bool {
        [
            Some(&self.fast),
            self.legacy.as_ref(),
            self.latency.as_ref(),
            self.latency_floor.as_ref(),
            self.rss.as_ref(),
        ]
        .into_iter()
        .flatten()
        .all(Count::correct)
    }

    fn ratio(&self) -> Option<f64> {
        let l = self.legacy.as_ref()?.rate();
        (l > 0.0).then(|| self.fast.rate() / l)
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "mode": "nodes",
            "messages": self.opts.messages,
            "size": self.opts.size,
            "send_timeout_s": self.opts.send_timeout,
            "pinned": self.opts.pinning.as_ref().map(|p| format!("node A on CPU {:?}, node B on CPU {:?}", p.receiver, p.load)),
            "fast": self.fast.json(),
            "correct": self.correct(),
        });
        if let Some(l) = &self.legacy {
            v["legacy"] = l.json();
        }
        if let Some(r) = self.ratio() {
            v["ratio_fast_legacy"] = json!((r * 10.0).round() / 10.0);
        }
        if let Some(l) = &self.latency {
            v["latency"] = l.json();
            v["latency"]["offered_per_s"] = json!(self.opts.latency_rate);
        }
        if let Some(l) = &self.latency_floor {
            v["latency_floor"] = l.json();
            v["latency_floor"]["offered_per_s"] = json!(self.opts.latency_rate);
        }
        if let Some(r) = &self.rss {
            v["rss"] = r.json();
            v["rss"]["lines"] = json!(self.opts.rss_lines);
        }
        v
    }

    pub fn human(&self) -> String {
        let mut s = format!(
            "nodes: A -> B, {} `/send` lines of {} bytes piped into A, counted on B's stdout\n",
            self.opts.messages, self.opts.size
        );
        s += &format!(
            "{:<8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>5} {:>4} {:>4}\n",
            "phase",
            "msgs/s",
            "wall_s",
            "A_cpu_s",
            "B_cpu_s",
            "p50_ms",
            "p99_ms",
            "A_rss_kib",
            "lost",
            "dup",
            "ooo"
        );
        let row = |name: &str, c: &Count| {
            format!(
                "{:<8} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>9.3} {:>10} {:>5} {:>4} {:>4}  ({})\n",
                name,
                c.rate(),
                c.wall.as_secs_f64(),
                c.a_cpu.as_secs_f64(),
                c.b_cpu.as_secs_f64(),
                micros(c.latency.p50) / 1000.0,
                micros(c.latency.p99) / 1000.0,
                c.a_peak_rss_kib,
                c.lost,
                c.duplicates,
                c.out_of_order,
                c.speaks
            )
        };
        s += &row("fast", &self.fast);
        if let Some(l) = &self.legacy {
            s += &row("legacy", l);
        }
        if let Some(l) = &self.latency {
            s += &row("latency", l);
            s += &format!(
                "latency: {} messages offered at {}/s on the fast path: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
                self.opts.latency_messages,
                self.opts.latency_rate,
                micros(l.latency.p50) / 1000.0,
                micros(l.latency.p99) / 1000.0,
                micros(l.latency.max) / 1000.0
            );
        }
        if let Some(l) = &self.latency_floor {
            s += &row("floor", l);
            s += &format!(
                "latency floor: the same with two minimal relays in place of the nodes: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
                micros(l.latency.p50) / 1000.0,
                micros(l.latency.p99) / 1000.0,
                micros(l.latency.max) / 1000.0
            );
        }
        if let Some(r) = &self.rss {
            s += &row("rss", r);
            s += &format!(
                "rss: {} lines piped into A: A's peak RSS {} KiB\n",
                self.opts.rss_lines, r.a_peak_rss_kib
            );
        }
        if let Some(r) = self.ratio() {
            s += &format!("fast / legacy-only: {r:.1}x\n");
        }
        s += &format!(
            "every message exactly once, in order: {}\n",
            if self.correct() { "yes" } else { "NO" }
        );
        s
    }
}

pub fn run(opts: &Options) -> Result<Report, String> {
    let fast = phase(opts, Pair::Fast, Feed::Flood(opts.messages))?;
    let legacy = if opts.legacy {
        Some(phase(opts, Pair::Legacy, Feed::Flood(opts.messages))?)
    } else {
        None
    };
    let paced = Feed::Paced(opts.latency_messages, opts.latency_rate);
    let (latency, latency_floor) = if opts.latency_messages > 0 {
        (
            Some(phase(opts, Pair::Fast, paced)?),
            Some(phase(opts, Pair::Floor, paced)?),
        )
    } else {
        (None, None)
    };
    let rss = if opts.rss_lines > 0 {
        Some(phase(opts, Pair::Fast, Feed::Flood(opts.rss_lines))?)
    } else {
        None
    };
    Ok(Report {
        opts: opts.clone(),
        fast,
        legacy,
        latency,
        latency_floor,
        rss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_scans_agree() {
        let mut out = Vec::new();
        send_line(&mut out, 9000, 42, 123_456, 32);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("/send 127.0.0.1:9000 t42:123456:x"));
        assert_eq!(line.len(), "/send 127.0.0.1:9000 ".len() + 32 + 1);
        let b = r#"{"event":"message","name":"nodea","ip":"127.0.0.1","port":1,"text":"t42:123456:xx"}"#;
        assert_eq!(scan(b), Some((42, 123_456)));
        assert_eq!(scan(r#"{"event":"sent","text":"t1:2:"}"#), None);
    }
}
