//! `p2pchat-load`: simulates many legacy peers against a p2pchat node and measures it.
//!
//! * `inbound`: simulated peers send to the node, one connection per message; the node's
//!   `--json` events are the ground truth of what arrived. Reports messages per second
//!   (sent, and seen by the node), latency from the start of each send to the node's event
//!   (p50, p99, max), connection errors, the node's CPU time per message and peak RSS, and
//!   checks that every message arrived exactly once, in order per peer. The same workload
//!   runs against a minimal receiver of the tool's own, so every report carries the
//!   machine's limit beside the node's figure.
//! * `fanout`: the simulated peers are the receivers: the node connects to all of them and
//!   quits, while some are dead and some refuse.
//! * `stream`: `inbound` on the fast path: simulated p2pchat peers each on one persistent,
//!   pipelined stream, against the node and a minimal framed receiver.
//! * `nodes`: two real nodes, `/send` lines piped into A and counted on B's stdout, on the
//!   fast path and with `--legacy-only`; latency at a steady rate; A's peak RSS.
//!
//! Every run ends with one JSON summary line on stdout, for scripts. The tool starts the
//! receivers itself (the node: the `p2pchat` binary next to this one, or `--node`), talks
//! only to 127.0.0.1, bounds every wait, and stops by itself. See BENCHMARKS.md.

mod fanout;
mod framed;
mod home;
mod inbound;
mod minimal;
mod nodes;
mod peers;
mod procstat;
mod receiver;
mod relay;
mod sender;
mod sender_loop;
mod stats;
mod stream;
mod stream_sender;
mod sys;
mod workload;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use receiver::Kind;

/// Load generator and benchmark for the p2pchat node (legacy protocol and fast path,
/// loopback only).
#[derive(Debug, Parser)]
#[command(name = "p2pchat-load", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Many simulated peers send to the node (and to the minimal receiver).
    Inbound(InboundArgs),
    /// The node connects to every simulated peer, some dead, some refusing, then quits.
    Fanout(FanoutArgs),
    /// Simulated p2pchat peers, each on one persistent stream (the fast path), send to the
    /// node (and to a minimal framed receiver).
    Stream(StreamArgs),
    /// Two real nodes: `/send` lines piped into A, counted on B's stdout (fast path, then
    /// `--legacy-only`), latency at a steady rate, A's peak RSS with many lines piped in.
    Nodes(NodesArgs),
    /// The minimal receiver (run by the tool itself as a child process).
    #[command(hide = true)]
    MinimalReceiver {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
    },
    /// The minimal relay, the latency floor in `nodes` (run by the tool itself as a child
    /// process).
    #[command(hide = true)]
    MinimalRelay,
    /// The minimal framed (stream) receiver (run by the tool itself as a child process).
    #[command(hide = true)]
    MinimalStreamReceiver {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// The p2pchat binary [default: `p2pchat` next to this program].
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,
    /// Extra arguments for the node, split on spaces (e.g. "--max-inbound 2048").
    #[arg(
        long,
        value_name = "ARGS",
        allow_hyphen_values = true,
        default_value = ""
    )]
    node_args: String,
    /// Port of simulated peer 0; peer i listens on BASE+i (must lie outside the ephemeral
    /// range of net.ipv4.ip_local_port_range).
    #[arg(long, default_value_t = 20000, value_name = "PORT")]
    base_port: u16,
    /// Pin the receiver to one CPU and the load generator to the others [default: on
    /// with 2 or more CPUs].
    #[arg(long, overrides_with = "no_pin")]
    pin: bool,
    /// Do not pin.
    #[arg(long)]
    no_pin: bool,
    /// Deadline in seconds for each connect, write and close of the simulated peers.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    io_timeout: f64,
    /// Print only the JSON summary line(s) on stdout (the human report goes to stderr).
    #[arg(long)]
    json: bool,
    /// Scheduling of the thread that reads (and time-stamps) the receiver's output: `high`
    /// runs it ahead of the senders (real-time priority when allowed), so latencies are
    /// measured when the receiver writes; `normal` lets it queue behind hundreds of
    /// senders, which delays time stamps and lets the receiver's output back up.
    #[arg(long, value_enum, default_value = "high")]
    reader_priority: ReaderPriority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReaderPriority {
    High,
    Normal,
}

#[derive(Debug, Args)]
struct InboundArgs {
    /// Simulated peers, each with its own name (p0, p1...) and listening port.
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Messages in all, spread evenly over the peers.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Concurrent senders; a comma-separated list runs the workload once per value.
    #[arg(long, default_value = "64", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Bytes of text per message (at least the `p{i}:{seq}:` tag it carries).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Which receivers to run the workload against.
    #[arg(long, value_enum, default_value = "both")]
    receiver: Which,
    /// How the concurrent senders run: `loop`, one event loop per load CPU keeping
    /// CONCURRENCY connections in flight; `threads`, one blocking thread per concurrent
    /// sender (costlier for the load CPU: it switches between threads at every message).
    #[arg(long, value_enum, default_value = "loop")]
    sender: inbound::SenderKind,
    /// Seconds to wait, after the last send, for the receiver's last events.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    drain_timeout: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct StreamArgs {
    /// Simulated p2pchat peers, each with its own name, port and one stream.
    #[arg(long, default_value_t = 16)]
    peers: usize,
    /// Messages in all, spread evenly over the peers.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Bytes of text per message (at least the `p{i}:{seq}:` tag it carries).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Data frames encoded per write at most.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Messages unacknowledged per stream at most (the node's own sender allows 16,384).
    #[arg(long, default_value_t = 8192)]
    window: usize,
    /// Which receivers to run the workload against.
    #[arg(long, value_enum, default_value = "both")]
    receiver: Which,
    /// Seconds to wait, after the last acknowledgement, for the receiver's last events.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    drain_timeout: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct NodesArgs {
    /// `/send` lines piped into node A in the throughput phases.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Bytes of text per message (at least the `t{k}:{due_us}:` tag it carries).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Skip the same workload with `--legacy-only` on both nodes.
    #[arg(long)]
    no_legacy: bool,
    /// Messages per second offered in the latency phase.
    #[arg(long, default_value_t = 10_000)]
    latency_rate: u64,
    /// Messages in the latency phase (0 skips it).
    #[arg(long, default_value_t = 50_000)]
    latency_messages: usize,
    /// Lines piped into A for its peak RSS (0 skips the phase).
    #[arg(long, default_value_t = 1_000_000)]
    rss_lines: usize,
    /// The nodes' send deadline in seconds (their --timeout): the legacy run queues
    /// MESSAGES sends at once.
    #[arg(long, default_value_t = 600)]
    send_timeout: u64,
    /// Seconds with nothing new on B after which what is missing counts as lost.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    idle_timeout: f64,
    /// The p2pchat binary [default: `p2pchat` next to this program].
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,
    /// Extra arguments for both nodes, split on spaces.
    #[arg(
        long,
        value_name = "ARGS",
        allow_hyphen_values = true,
        default_value = ""
    )]
    node_args: String,
    /// Do not pin node A and node B to different CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Print only the JSON summary line on stdout (the human report goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Which {
    Both,
    Node,
    Minimal,
}

impl Which {
    /// The receivers to run, in order. The baseline first: if anything, the node runs on a
    /// machine that is warmer and holds more TIME_WAIT sockets.
    fn kinds(self) -> Vec<Kind> {
        match self {
            Which::Both => vec![Kind::Minimal, Kind::Node],
            Which::Node => vec![Kind::Node],
            Which::Minimal => vec![Kind::Minimal],
        }
    }
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Simulated peers in all.
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Of which dead: listening, never accepting, accept queue full.
    #[arg(long, default_value_t = 100)]
    dead: usize,
    /// Of which refusing: nothing listens on their port.
    #[arg(long, default_value_t = 100)]
    refusing: usize,
    /// The node's send timeout in seconds (its --timeout).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    timeout: f64,
    /// Threads sending the peers' hellos to the node.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[command(flatten)]
    common: Common,
}

fn secs(s: f64, what: &str) -> Result<Duration, String> {
    if s > 0.0 && s <= 86_400.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "{what} must be between 0 and 86400 seconds, not {s}"
        ))
    }
}

/// Checks what every mode shares, pins this process, and builds the receiver spec.
fn prepare(c: &Common, ports: usize) -> Result<receiver::Spec, String> {
    if ports == 0 {
        return Err("--peers must be at least 1".into());
    }
    sys::check_port_range(c.base_port, ports)?;
    let limit = sys::raise_nofile();
    if limit < ports as u64 + 2048 {
        log::warn!("open files limit is {limit}: the run may run out of descriptors");
    }
    let pinning = if c.no_pin {
        None
    } else {
        let split = sys::Pinning::split();
        if c.pin && split.is_none() {
            log::warn!("--pin: fewer than 2 CPUs available, not pinning");
        }
        split
    };
    if let Some(p) = &pinning {
        // Pins this thread, so every thread started later (senders, readers) too.
        sys::pin(0, &p.load).map_err(|e| format!("cannot pin the load generator: {e}"))?;
    }
    Ok(receiver::Spec {
        kind: Kind::Node,
        node: c.node.clone().unwrap_or_else(receiver::default_node_path),
        node_args: c.node_args.split_whitespace().map(str::to_owned).collect(),
        pinning,
        base_port: c.base_port,
        prompt_reader: c.reader_priority == ReaderPriority::High,
        minimal: "minimal-receiver",
    })
}

fn print_report(json_only: bool, human: &str, json: &serde_json::Value) {
    if json_only {
        eprint!("{human}");
    } else {
        print!("{human}");
    }
    println!("{json}");
}

fn inbound(a: InboundArgs) -> Result<bool, String> {
    let spec = prepare(&a.common, a.peers)?;
    if a.messages == 0 {
        return Err("--messages must be at least 1".into());
    }
    if a.concurrency.contains(&0) {
        return Err("--concurrency must be at least 1".into());
    }
    let opts = inbound::Options {
        peers: a.peers,
        messages: a.messages,
        concurrency: a.concurrency,
        size: a.size,
        base_port: a.common.base_port,
        receivers: a.receiver.kinds(),
        sender: a.sender,
        spec,
        io_timeout: secs(a.common.io_timeout, "--io-timeout")?,
        drain_timeout: secs(a.drain_timeout, "--drain-timeout")?,
    };
    let json_only = a.common.json;
    inbound::run(&opts, |r| print_report(json_only, &r.human(), &r.json()))
}

fn stream(a: StreamArgs) -> Result<bool, String> {
    let spec = prepare(&a.common, a.peers)?;
    if a.messages == 0 || a.batch == 0 || a.window == 0 {
        return Err("--messages, --batch and --window must be at least 1".into());
    }
    let opts = stream::Options {
        peers: a.peers,
        messages: a.messages,
        size: a.size,
        batch: a.batch,
        window: a.window,
        base_port: a.common.base_port,
        receivers: a.receiver.kinds(),
        spec,
        io_timeout: secs(a.common.io_timeout, "--io-timeout")?,
        drain_timeout: secs(a.drain_timeout, "--drain-timeout")?,
    };
    let report = stream::run(&opts)?;
    print_report(a.common.json, &report.human(), &report.json());
    Ok(report.correct())
}

fn nodes(a: NodesArgs) -> Result<bool, String> {
    if a.messages == 0 {
        return Err("--messages must be at least 1".into());
    }
    if a.latency_rate == 0 {
        return Err("--latency-rate must be at least 1".into());
    }
    let opts = nodes::Options {
        node: a.node.unwrap_or_else(receiver::default_node_path),
        node_args: a.node_args.split_whitespace().map(str::to_owned).collect(),
        messages: a.messages,
        size: a.size,
        legacy: !a.no_legacy,
        latency_rate: a.latency_rate,
        latency_messages: a.latency_messages,
        rss_lines: a.rss_lines,
        send_timeout: a.send_timeout,
        pinning: if a.no_pin {
            None
        } else {
            sys::Pinning::split()
        },
        idle: secs(a.idle_timeout, "--idle-timeout")?,
    };
    let report = nodes::run(&opts)?;
    print_report(a.json, &report.human(), &report.json());
    Ok(report.correct())
}

fn fanout(a: FanoutArgs) -> Result<bool, String> {
    let spec = prepare(&a.common, a.peers)?;
    let opts = fanout::Options {
        peers: a.peers,
        dead: a.dead,
        refusing: a.refusing,
        timeout: secs(a.timeout, "--timeout")?,
        base_port: a.common.base_port,
        spec,
        io_timeout: secs(a.common.io_timeout, "--io-timeout")?,
        concurrency: a.concurrency,
    };
    let report = fanout::run(&opts)?;
    print_report(a.common.json, &report.human(), &report.json());
    Ok(report.correct())
}

fn main() -> ExitCode {
    let code = run();
    // Log lines a slow stderr has not taken yet get a bounded wait.
    p2pchat::log_sink::close(p2pchat::log_sink::EXIT_DRAIN);
    code
}

fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    p2pchat::log_sink::init(log::LevelFilter::Warn);
    let result = match cli.mode {
        Mode::MinimalReceiver { port, bind } => return minimal::run(bind, port),
        Mode::MinimalStreamReceiver { port, bind } => return framed::run(bind, port),
        Mode::MinimalRelay => return relay::run(),
        Mode::Inbound(a) => inbound(a),
        Mode::Stream(a) => stream(a),
        Mode::Nodes(a) => nodes(a),
        Mode::Fanout(a) => fanout(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            p2pchat::log_sink::say(&format!("p2pchat-load: {e}"));
            ExitCode::from(2)
        }
    }
}
