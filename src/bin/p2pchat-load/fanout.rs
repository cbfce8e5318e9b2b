//! Fan-out mode: the simulated peers are the receivers. The node learns every peer (each
//! sends it a hello from its own identity), is told to "connect to all" and then to quit,
//! while some peers are dead (listening, never accepting, accept queue full) and some
//! refuse (nothing listens). Each live peer must receive exactly `connect` then `exit`, in
//! the exact legacy form, and both the connect-all and the quit must finish within the send
//! timeout plus one second.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::peers::{Peers, Received, Role};
use crate::receiver::{self, Running};
use crate::sender::{self, Failure};
use crate::stats::ms;
use crate::workload;

#[derive(Debug, Clone)]
pub struct Options {
    pub peers: usize,
    pub dead: usize,
    pub refusing: usize,
    /// The node's send timeout (`--timeout`).
    pub timeout: Duration,
    pub base_port: u16,
    pub spec: receiver::Spec,
    pub io_timeout: Duration,
    /// Threads sending the hellos.
    pub concurrency: usize,
}

/// Allowed slack over the send timeout for the connect-all and the quit.
const SLACK: Duration = Duration::from_secs(1);
/// Extra time the tool waits beyond what the node should need, before giving up.
const GRACE: Duration = Duration::from_secs(5);

/// Roles spread over the peers in a fixed pseudo-random order (the same every run), so
/// dead and refusing peers are mixed among the live ones in the node's list.
pub fn roles(peers: usize, dead: usize, refusing: usize) -> Vec<Role> {
    let live = peers - dead - refusing;
    let mut roles: Vec<Role> = std::iter::repeat_n(Role::Live, live)
        .chain(std::iter::repeat_n(Role::Dead, dead))
        .chain(std::iter::repeat_n(Role::Refusing, refusing))
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..roles.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        roles.swap(i, (x % (i as u64 + 1)) as usize);
    }
    roles
}

/// What the node reported for one send: `sent`, `unconfirmed`, or the failure reason.
fn outcome_label(v: &Value) -> String {
    match v["event"].as_str() {
        Some("sent") if v["confirmed"] == true => "sent".into(),
        Some("sent") => "unconfirmed".into(),
        _ => v["reason"].as_str().unwrap_or("?").to_owned(),
    }
}

/// Counts per role, then per outcome.
type Tally = BTreeMap<&'static str, BTreeMap<String, usize>>;

#[derive(Debug)]
pub struct Report {
    pub peers: usize,
    pub live: usize,
    pub dead: usize,
    pub refusing: usize,
    pub timeout: Duration,
    pub hello_errors: BTreeMap<&'static str, u64>,
    pub hellos_seen: usize,
    pub connect_all: Option<Duration>,
    /// From `/connect all` until the last live peer had its `connect`.
    pub live_connected: Option<Duration>,
    pub quit: Option<Duration>,
    pub connect_outcomes: Tally,
    pub exit_outcomes: Tally,
    pub live_ok: usize,
    pub live_bad: Vec<String>,
    /// Live peers that received no `connect` / no `exit` / something else.
    pub live_missing_connect: usize,
    pub live_missing_exit: usize,
    pub live_extra: usize,
    pub unfinished: usize,
    pub exit_ok: bool,
    pub node_cpu: Duration,
    pub node_peak_rss_kib: u64,
    pub stderr: String,
}

impl Report {
    fn limit(&self) -> Duration {
        self.timeout + SLACK
    }

    fn within(&self, d: Option<Duration>) -> bool {
        d.is_some_and(|d| d <= self.limit())
    }

    fn outcomes_as_expected(&self) -> bool {
        let only = |t: &Tally, role: &str, ok: &[&str], n: usize| {
            let m = t.get(role).cloned().unwrap_or_default();
            m.values().sum::<usize>() == n && m.keys().all(|k| ok.contains(&k.as_str()))
        };
        only(&self.connect_outcomes, "live", &["sent"], self.live)
            && only(
                &self.connect_outcomes,
                "dead",
                &["connect_timeout", "unconfirmed"],
                self.dead,
            )
            && only(
                &self.connect_outcomes,
                "refusing",
                &["refused"],
                self.refusing,
            )
            && only(&self.exit_outcomes, "live", &["sent"], self.live)
            && only(
                &self.exit_outcomes,
                "dead",
                &["connect_timeout", "unconfirmed", "quit"],
                self.dead,
            )
            && only(&self.exit_outcomes, "refusing", &["refused"], self.refusing)
    }

    pub fn correct(&self) -> bool {
        self.live_ok == self.live
            && self.hellos_seen == self.peers
            && self.within(self.connect_all)
            && self.within(self.quit)
            && self.outcomes_as_expected()
            && self.exit_ok
    }

    pub fn json(&self) -> Value {
        let secs = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
        json!({
            "mode": "fanout",
            "peers": self.peers,
            "live": self.live,
            "dead": self.dead,
            "refusing": self.refusing,
            "timeout_s": self.timeout.as_secs_f64(),
            "limit_s": self.limit().as_secs_f64(),
            "hellos_seen": self.hellos_seen,
            "hello_errors": self.hello_errors,
            "connect_all_s": secs(self.connect_all),
            "live_connected_s": secs(self.live_connected),
            "quit_s": secs(self.quit),
            "connect_all_within": self.within(self.connect_all),
            "quit_within": self.within(self.quit),
            "live_ok": self.live_ok,
            "live_missing_connect": self.live_missing_connect,
            "live_missing_exit": self.live_missing_exit,
            "live_extra": self.live_extra,
            "live_bad_examples": self.live_bad,
            "unfinished_connections": self.unfinished,
            "connect_outcomes": self.connect_outcomes,
            "exit_outcomes": self.exit_outcomes,
            "outcomes_as_expected": self.outcomes_as_expected(),
            "node_exit_ok": self.exit_ok,
            "node_cpu_s": (self.node_cpu.as_secs_f64() * 1000.0).round() / 1000.0,
            "node_peak_rss_kib": self.node_peak_rss_kib,
            "correct": self.correct(),
        })
    }

    pub fn human(&self) -> String {
        let show = |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{} ms", ms(d)));
        let mark = |ok: bool| if ok { "ok" } else { "OVER" };
        let mut s = format!(
            "fanout: {} peers ({} live, {} dead, {} refusing), node --timeout {} s, limit {} s\n",
            self.peers,
            self.live,
            self.dead,
            self.refusing,
            self.timeout.as_secs_f64(),
            self.limit().as_secs_f64()
        );
        s += &format!(
            "hellos seen by the node: {}/{}{}\n",
            self.hellos_seen,
            self.peers,
            if self.hello_errors.is_empty() {
                String::new()
            } else {
                format!(" (errors {:?})", self.hello_errors)
            }
        );
        s += &format!(
            "connect all: {} [{}] (every live peer connected after {})\n",
            show(self.connect_all),
            mark(self.within(self.connect_all)),
            show(self.live_connected)
        );
        s += &format!(
            "quit:        {} [{}]\n",
            show(self.quit),
            mark(self.within(self.quit))
        );
        for (what, t) in [
            ("connect", &self.connect_outcomes),
            ("exit", &self.exit_outcomes),
        ] {
            for (role, m) in t {
                s += &format!("  {what:<7} to {role:<8}: {m:?}\n");
            }
        }
        s += &format!(
            "live peers that got exactly connect then exit: {}/{} (missing connect {}, \
             missing exit {}, extra {})\n",
            self.live_ok,
            self.live,
            self.live_missing_connect,
            self.live_missing_exit,
            self.live_extra
        );
        for b in &self.live_bad {
            s += &format!("  {b}\n");
        }
        s += &format!(
            "node: cpu {:.3} s, peak RSS {} KiB, exit {}\n",
            self.node_cpu.as_secs_f64(),
            self.node_peak_rss_kib,
            if self.exit_ok { "clean" } else { "NOT clean" }
        );
        if !self.exit_ok && !self.stderr.trim().is_empty() {
            s += &format!("node stderr: {}\n", self.stderr.trim());
        }
        s += &format!(
            "all as expected: {}\n",
            if self.correct() { "yes" } else { "NO" }
        );
        s
    }
}

/// Sends every peer's hello (`127.0.0.1:PORT p{i} hi`) to the node, `threads` at a time.
fn send_hellos(opts: &Options, node: SocketAddrV4) -> BTreeMap<&'static str, u64> {
    let next = Arc::new(AtomicUsize::new(0));
    let threads = opts.concurrency.clamp(1, opts.peers.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            let (n, base, timeout) = (opts.peers, opts.base_port, opts.io_timeout);
            std::thread::spawn(move || {
                let mut failures: Vec<Failure> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return failures;
                    }
                    let payload = workload::payload(base + i as u16, i as u32, "hi");
                    if let Err(f) = sender::send_one(node, &payload, timeout) {
                        failures.push(f);
                    }
                }
            })
        })
        .collect();
    let mut errors = BTreeMap::new();
    for h in handles {
        for f in h.join().unwrap_or_default() {
            *errors.entry(f.as_str()).or_insert(0) += 1;
        }
    }
    errors
}

pub fn run(opts: &Options) -> Result<Report, String> {
    if opts.dead + opts.refusing > opts.peers {
        return Err("--dead plus --refusing is more than --peers".into());
    }
    let roles = roles(opts.peers, opts.dead, opts.refusing);
    let peers = Peers::start(opts.base_port, &roles)?;
    let base = opts.base_port;
    let role_of = |port: u64| -> Option<Role> {
        port.checked_sub(u64::from(base))
            .and_then(|i| roles.get(i as usize).copied())
    };

    let mut spec = opts.spec.clone();
    spec.kind = receiver::Kind::Node;
    spec.node_args.extend([
        "--timeout".to_owned(),
        opts.timeout.as_secs_f64().to_string(),
    ]);
    let mut node = Running::start(&spec)?;
    let node_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, node.port);
    let cpu0 = node.cpu_time();

    // 1. Every peer says hello, so the node lists it (Yet to connect).
    let hello_errors = send_hellos(opts, node_addr);
    let mut hellos: HashSet<u64> = HashSet::new();
    let end = Instant::now() + opts.io_timeout;
    while hellos.len() < opts.peers {
        let Some((_, v)) = node.next_event(end.saturating_duration_since(Instant::now())) else {
            break;
        };
        if v["event"] == "message" && v["text"] == "hi" {
            hellos.extend(v["port"].as_u64());
        }
    }

    // 2. Connect to all, and wait for every outcome.
    let mut connect_outcomes = Tally::new();
    let mut exit_outcomes = Tally::new();
    let mut tally = |v: &Value| {
        let table = match v["kind"].as_str() {
            Some("connect") => &mut connect_outcomes,
            Some("exit") => &mut exit_outcomes,
            _ => return false,
        };
        let role = v["port"]
            .as_u64()
            .and_then(role_of)
            .map_or("other", Role::as_str);
        *table
            .entry(role)
            .or_default()
            .entry(outcome_label(v))
            .or_insert(0) += 1;
        true
    };
    node.type_line("/connect all")?;
    let t_connect = Instant::now();
    let end = t_connect + opts.timeout + GRACE;
    let mut connect_done = 0;
    let mut last_connect = None;
    while connect_done < opts.peers {
        let Some((at, v)) = node.next_event(end.saturating_duration_since(Instant::now())) else {
            break;
        };
        if matches!(v["event"].as_str(), Some("sent" | "send_failed")) && v["kind"] == "connect" {
            tally(&v);
            connect_done += 1;
            last_connect = Some(at);
        }
    }
    let connect_all = if connect_done == opts.peers {
        last_connect.map(|t| t.duration_since(t_connect))
    } else {
        None
    };

    // 3. Quit, and time it until the process has left.
    let cpu_before_quit = node.cpu_time();
    let peak_before_quit = node.peak_rss_kib();
    node.type_line("/quit")?;
    let t_quit = Instant::now();
    let (status, killed) = node.wait_until(t_quit + opts.timeout + GRACE);
    let quit = (!killed).then(|| t_quit.elapsed());
    let finished = node.finish(Duration::from_secs(1));
    for (_, v) in &finished.rest {
        if matches!(v["event"].as_str(), Some("sent" | "send_failed")) {
            tally(v);
        }
    }
    let exit_ok = !killed && status.is_some_and(|s| s.success());

    // 4. What each live peer received.
    let live = roles.iter().filter(|&&r| r == Role::Live).count();
    let wait_end = Instant::now() + Duration::from_secs(1);
    while peers.delivered() < 2 * live && Instant::now() < wait_end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let received = peers.stop();
    let mut report = Report {
        peers: opts.peers,
        live,
        dead: opts.dead,
        refusing: opts.refusing,
        timeout: opts.timeout,
        hello_errors,
        hellos_seen: hellos.len(),
        connect_all,
        live_connected: None,
        quit,
        connect_outcomes,
        exit_outcomes,
        live_ok: 0,
        live_bad: Vec::new(),
        live_missing_connect: 0,
        live_missing_exit: 0,
        live_extra: 0,
        unfinished: received.unfinished,
        exit_ok,
        // The node's whole life (it exits: read before quitting, the quit adds little).
        node_cpu: cpu_before_quit.saturating_sub(cpu0),
        node_peak_rss_kib: peak_before_quit,
        stderr: finished.stderr,
    };
    check_live(&mut report, &roles, &received, node_addr.port(), t_connect);
    Ok(report)
}

/// Each live peer must hold exactly `connect` then `exit`, byte for byte.
fn check_live(report: &mut Report, roles: &[Role], got: &Received, node_port: u16, t0: Instant) {
    let connect = format!("127.0.0.1:{node_port} loadnode connect").into_bytes();
    let exit = format!("127.0.0.1:{node_port} loadnode exit").into_bytes();
    let mut last_connect: Option<Instant> = None;
    for (i, role) in roles.iter().enumerate() {
        let msgs = &got.per_peer[i];
        if *role != Role::Live {
            if !msgs.is_empty() {
                report.live_extra += msgs.len();
            }
            continue;
        }
        let payloads: Vec<&[u8]> = msgs.iter().map(|d| d.payload.as_slice()).collect();
        if let Some(d) = msgs.iter().find(|d| d.payload == connect) {
            last_connect = Some(last_connect.map_or(d.at, |t| t.max(d.at)));
        }
        if payloads == [connect.as_slice(), exit.as_slice()] {
            report.live_ok += 1;
            continue;
        }
        let n_connect = payloads.iter().filter(|p| **p == connect).count();
        let n_exit = payloads.iter().filter(|p| **p == exit).count();
        report.live_missing_connect += usize::from(n_connect == 0);
        report.live_missing_exit += usize::from(n_exit == 0);
        report.live_extra += payloads.len() - n_connect.min(1) - n_exit.min(1);
        if report.live_bad.len() < 5 {
            let shown: Vec<String> = payloads
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            report.live_bad.push(format!("p{i} received {shown:?}"));
        }
    }
    report.live_connected = last_connect.map(|t| t.saturating_duration_since(t0));
}
