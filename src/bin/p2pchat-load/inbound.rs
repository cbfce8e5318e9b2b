//! Inbound mode: many simulated peers send to one receiver, one connection per message;
//! the receiver's own events say what arrived. The same workload runs against the node and
//! against the minimal receiver, one after the other, so each report carries the machine's
//! own limit beside the node's figure.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::peers::{Peers, Role};
use crate::receiver::{self, Kind, Running, Seen};
use crate::sender::{self, Plan, Sent};
use crate::stats::{Percentiles, micros, ms};
use crate::workload::Spread;

/// How the concurrent senders run (see [`crate::sender_loop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SenderKind {
    Loop,
    Threads,
}

/// Everything one inbound invocation needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub peers: usize,
    pub messages: u64,
    pub concurrency: Vec<usize>,
    pub size: usize,
    pub base_port: u16,
    pub receivers: Vec<Kind>,
    pub sender: SenderKind,
    pub spec: receiver::Spec,
    pub io_timeout: Duration,
    /// How long to wait, once every send has finished, for the receiver's last events.
    pub drain_timeout: Duration,
}

/// How the workload went against one receiver.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    pub attempted: usize,
    pub sent_ok: usize,
    pub errors: std::collections::BTreeMap<&'static str, u64>,
    /// Distinct messages of the workload the receiver reported.
    pub seen: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
    /// Reported messages the workload never sent, or with a name/port not matching the text.
    pub unexpected: usize,
    /// First send start to last event.
    pub wall: Duration,
    /// First send start to last send end.
    pub send_wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
    pub latency: Percentiles,
    pub load_cpu: Duration,
    pub threads: usize,
    pub exit_ok: bool,
    /// After its stdin closed: `exit` sends the receiver reported as done (the node
    /// sends `exit` to every peer it knows; the minimal receiver sends nothing).
    pub quit_exit_events: usize,
    /// Output lines that were not JSON (cut short: output lost at exit).
    pub bad_lines: usize,
    pub stderr: String,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        per_sec(self.seen, self.wall)
    }

    pub fn sent_rate(&self) -> f64 {
        per_sec(self.sent_ok, self.send_wall)
    }

    pub fn cpu_per_msg(&self) -> Duration {
        if self.seen == 0 {
            return Duration::ZERO;
        }
        self.cpu / self.seen as u32
    }

    /// The receiver's CPU time over the wall time (100: its CPU busy throughout). Below
    /// 100 while the load generator is at 100, the generator is the bottleneck.
    pub fn busy_percent(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64()
    }

    /// The load generator's CPU time over the wall time (100: one CPU busy throughout).
    pub fn load_percent(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        100.0 * self.load_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Every message arrived exactly once, in order per peer, with no error.
    pub fn correct(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.error_count() == 0
    }

    pub fn json(&self) -> Value {
        json!({
            "attempted": self.attempted,
            "sent_ok": self.sent_ok,
            "seen": self.seen,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "unexpected": self.unexpected,
            "errors": self.error_count(),
            "error_kinds": self.errors,
            "wall_s": round3(self.wall.as_secs_f64()),
            "msgs_per_s": self.rate().round(),
            "sent_per_s": self.sent_rate().round(),
            "cpu_s": round3(self.cpu.as_secs_f64()),
            "cpu_us_per_msg": micros(self.cpu_per_msg()),
            "peak_rss_kib": self.peak_rss_kib,
            "latency": self.latency.json(),
            "load_cpu_s": round3(self.load_cpu.as_secs_f64()),
            "load_cpu_percent": self.load_percent().round(),
            "busy_percent": self.busy_percent().round(),
            "concurrent_senders": self.threads,
            "exit_ok": self.exit_ok,
            "quit_exit_events": self.quit_exit_events,
            "bad_output_lines": self.bad_lines,
            "correct": self.correct(),
        })
    }
}

fn per_sec(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One run of the workload at one concurrency, against each chosen receiver.
#[derive(Debug, Clone)]
pub struct Report {
    /// `inbound` (legacy, one connection per message) or `stream` (the fast path).
    pub mode: &'static str,
    pub opts_peers: usize,
    pub messages: usize,
    pub concurrency: usize,
    pub size: usize,
    pub sender: &'static str,
    pub pinning: Option<String>,
    pub outcomes: Vec<Outcome>,
    /// What the node sent the simulated peers (its `exit`s when it quit).
    pub peer_deliveries: usize,
}

impl Report {
    fn get(&self, k: Kind) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.kind == k)
    }

    pub fn correct(&self) -> bool {
        self.outcomes.iter().all(Outcome::correct)
    }

    pub fn ratios(&self) -> Option<(f64, f64)> {
        let (n, m) = (self.get(Kind::Node)?, self.get(Kind::Minimal)?);
        let rate = if m.rate() > 0.0 {
            n.rate() / m.rate()
        } else {
            0.0
        };
        let mc = m.cpu_per_msg().as_secs_f64();
        let cpu = if mc > 0.0 {
            n.cpu_per_msg().as_secs_f64() / mc
        } else {
            0.0
        };
        Some((rate, cpu))
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "mode": self.mode,
            "peers_got_exit": self.peer_deliveries,
            "peers": self.opts_peers,
            "messages": self.messages,
            "concurrency": self.concurrency,
            "size": self.size,
            "sender": self.sender,
            "pinned": self.pinning,
            "correct": self.correct(),
        });
        for o in &self.outcomes {
            v[o.kind.as_str()] = o.json();
        }
        if let Some((rate, cpu)) = self.ratios() {
            v["ratio_rate"] = json!((rate * 1000.0).round() / 1000.0);
            v["ratio_cpu"] = json!((cpu * 1000.0).round() / 1000.0);
            let (target_rate, target_cpu) = self.targets();
            v["target_rate_met"] = json!(rate >= target_rate);
            if let Some(t) = target_cpu {
                v["target_cpu_met"] = json!(cpu <= t);
            }
        }
        v
    }

    /// Node/minimal: the least rate, and the most CPU per message (if any) the targets allow.
    fn targets(&self) -> (f64, Option<f64>) {
        if self.mode == "stream" {
            (0.5, None)
        } else {
            (0.9, Some(1.2))
        }
    }

    pub fn human(&self) -> String {
        let mut s = format!(
            "{}: {} peers, {} messages of {} bytes, {} concurrent senders ({}){}\n",
            self.mode,
            self.opts_peers,
            self.messages,
            self.size,
            self.concurrency,
            self.sender,
            match &self.pinning {
                Some(p) => format!(" ({p})"),
                None => " (not pinned)".into(),
            }
        );
        s += &format!(
            "{:<8} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>5} {:>5} {:>6} {:>5} {:>4} {:>4}\n",
            "receiver",
            "msgs/s",
            "sent/s",
            "cpu_s",
            "cpu_us/m",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "rss_kib",
            "busy%",
            "load%",
            "errors",
            "lost",
            "dup",
            "ooo"
        );
        for o in &self.outcomes {
            s += &format!(
                "{:<8} {:>9.0} {:>9.0} {:>8.3} {:>9.2} {:>8} {:>8} {:>8} {:>9} {:>5.0} {:>5.0} {:>6} {:>5} {:>4} {:>4}\n",
                o.kind.as_str(),
                o.rate(),
                o.sent_rate(),
                o.cpu.as_secs_f64(),
                o.cpu_per_msg().as_secs_f64() * 1e6,
                ms(o.latency.p50),
                ms(o.latency.p99),
                ms(o.latency.max),
                o.peak_rss_kib,
                o.busy_percent(),
                o.load_percent(),
                o.error_count(),
                o.lost,
                o.duplicates,
                o.out_of_order
            );
            if !o.errors.is_empty() {
                s += &format!("         errors: {:?}\n", o.errors);
            }
            if o.bad_lines > 0 {
                s += &format!(
                    "         {} output line(s) cut short (not JSON): output was lost\n",
                    o.bad_lines
                );
            }
            if !o.exit_ok {
                s += &format!(
                    "         the {} did not exit cleanly; stderr: {}\n",
                    o.kind.as_str(),
                    o.stderr.trim()
                );
            }
        }
        if let Some(n) = self.get(Kind::Node) {
            s += &format!(
                "node quit: {} exit outcomes reported; the simulated peers received {} \
                 message(s) from the node\n",
                n.quit_exit_events, self.peer_deliveries
            );
        }
        if let Some((rate, cpu)) = self.ratios() {
            let (target_rate, target_cpu) = self.targets();
            s += &format!(
                "node/minimal: rate {:.1}% (target >= {:.0}%), CPU per message {:.2}x{}\n",
                rate * 100.0,
                target_rate * 100.0,
                cpu,
                match target_cpu {
                    Some(t) => format!(" (target <= {t}x)"),
                    None => String::new(),
                }
            );
        }
        s += &format!(
            "every message exactly once, in order per peer: {}\n",
            if self.correct() { "yes" } else { "NO" }
        );
        s
    }
}

/// Runs the inbound workload at each concurrency against each receiver.
pub fn run(opts: &Options, mut emit: impl FnMut(&Report)) -> Result<bool, String> {
    let spread = Spread::new(opts.peers, opts.messages);
    let peers = Peers::start(opts.base_port, &vec![Role::Live; opts.peers])?;
    let mut all_correct = true;
    for &c in &opts.concurrency {
        let mut report = Report {
            mode: "inbound",
            opts_peers: opts.peers,
            messages: spread.total(),
            concurrency: c,
            size: opts.size,
            sender: match opts.sender {
                SenderKind::Loop => "loop",
                SenderKind::Threads => "threads",
            },
            pinning: opts.spec.pinning.as_ref().map(|p| p.describe()),
            outcomes: Vec::new(),
            peer_deliveries: 0,
        };
        let before = peers.delivered();
        for &kind in &opts.receivers {
            let spec = receiver::Spec {
                kind,
                ..opts.spec.clone()
            };
            report
                .outcomes
                .push(run_one(&spec, &spread, opts.drain_timeout, |port| {
                    let plan = Plan {
                        to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
                        base_port: opts.base_port,
                        size: opts.size,
                        concurrency: c,
                        timeout: opts.io_timeout,
                    };
                    match opts.sender {
                        SenderKind::Threads => sender::run(&plan, &spread),
                        SenderKind::Loop => {
                            let cpus = spec.pinning.as_ref().map_or(1, |p| p.load.len());
                            crate::sender_loop::run(&plan, &spread, cpus)
                        }
                    }
                })?);
        }
        report.peer_deliveries = peers.delivered() - before;
        all_correct &= report.correct();
        emit(&report);
    }
    drop(peers);
    Ok(all_correct)
}

/// Starts the receiver `spec` names, runs `send` against its port, and checks what it
/// reported (shared by the legacy and the stream modes).
pub fn run_one(
    spec: &receiver::Spec,
    spread: &Spread,
    drain_timeout: Duration,
    send: impl FnOnce(u16) -> Sent,
) -> Result<Outcome, String> {
    let rx = Running::start(spec)?;
    let cpu0 = rx.cpu_time();
    let load0 = crate::procstat::cpu_time("self").unwrap_or_default();
    let sent = send(rx.port);
    wait_for_events(&rx, sent.records.len(), drain_timeout);
    let cpu = rx.cpu_time().saturating_sub(cpu0);
    let load_cpu = crate::procstat::cpu_time("self")
        .unwrap_or_default()
        .saturating_sub(load0);
    let peak = rx.peak_rss_kib();
    let kind = rx.kind;
    // The node quits by sending `exit` to every peer it knows: give it its send timeout.
    let finished = rx.finish(Duration::from_secs(30));
    let exit_ok = !finished.killed && finished.status.is_some_and(|s| s.success());
    let check = Check::of(spread, &sent, &finished.seen);
    Ok(Outcome {
        kind,
        attempted: sent.records.len(),
        sent_ok: sent.ok(),
        errors: sent.errors(),
        seen: check.unique,
        lost: check.lost,
        duplicates: check.duplicates,
        out_of_order: check.out_of_order,
        unexpected: check.unexpected,
        wall: match (sent.first_start, check.last_event) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        },
        send_wall: match (sent.first_start, sent.last_end) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        },
        cpu,
        peak_rss_kib: peak,
        latency: check.latency,
        load_cpu,
        threads: sent.threads,
        exit_ok,
        quit_exit_events: finished
            .rest
            .iter()
            .filter(|(_, v)| {
                matches!(v["event"].as_str(), Some("sent" | "send_failed")) && v["kind"] == "exit"
            })
            .count(),
        bad_lines: finished.bad_lines,
        stderr: finished.stderr,
    })
}

/// Waits until the receiver has reported `expected` messages, or nothing new has come for
/// `idle` (what is missing by then is lost).
fn wait_for_events(rx: &Running, expected: usize, idle: Duration) {
    let mut last = rx.seen_count.load(std::sync::atomic::Ordering::Acquire);
    let mut last_change = Instant::now();
    while last < expected {
        std::thread::sleep(Duration::from_millis(2));
        let now = rx.seen_count.load(std::sync::atomic::Ordering::Acquire);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= idle {
            return;
        }
    }
}

/// The count and the check: exactly once, in order per peer, and latencies.
#[derive(Debug, Default)]
struct Check {
    unique: usize,
    lost: usize,
    duplicates: usize,
    out_of_order: usize,
    unexpected: usize,
    latency: Percentiles,
    last_event: Option<Instant>,
}

impl Check {
    fn of(spread: &Spread, sent: &Sent, seen: &[Seen]) -> Check {
        let total = spread.total();
        let mut start: Vec<Option<Instant>> = vec![None; total];
        for r in &sent.records {
            if let Some(i) = spread.index(r.peer, r.seq) {
                start[i] = Some(r.start);
            }
        }
        let mut times = vec![0u32; total];
        let mut last_seq: Vec<Option<u32>> = vec![None; spread.peers()];
        let mut c = Check::default();
        let mut lat = Vec::with_capacity(seen.len());
        for s in seen {
            let Some(i) = spread.index(s.peer, s.seq).filter(|_| s.consistent) else {
                c.unexpected += 1;
                continue;
            };
            c.last_event = Some(c.last_event.map_or(s.at, |t| t.max(s.at)));
            times[i] += 1;
            if times[i] > 1 {
                c.duplicates += 1;
                continue;
            }
            let last = &mut last_seq[s.peer as usize];
            if last.is_some_and(|l| s.seq < l) {
                c.out_of_order += 1;
            }
            *last = Some(last.map_or(s.seq, |l| l.max(s.seq)));
            if let Some(t0) = start[i] {
                lat.push(s.at.saturating_duration_since(t0));
            }
        }
        c.unique = times.iter().filter(|&&n| n > 0).count();
        c.lost = total - c.unique;
        c.latency = Percentiles::of(&mut lat);
        c
    }
}
