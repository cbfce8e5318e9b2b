//! Stream mode: simulated p2pchat peers, each on ONE persistent stream (the fast path),
//! send into the node; then the same workload into the minimal framed receiver
//! ([`crate::framed`]). Same checks and report as the legacy inbound mode.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::inbound::{Report, run_one};
use crate::peers::{Peers, Role};
use crate::receiver::{self, Kind};
use crate::stream_sender::{self, StreamPlan};
use crate::workload::Spread;

/// Everything one stream invocation needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub peers: usize,
    pub messages: u64,
    pub size: usize,
    pub batch: usize,
    pub window: usize,
    pub base_port: u16,
    pub receivers: Vec<Kind>,
    pub spec: receiver::Spec,
    pub io_timeout: Duration,
    pub drain_timeout: Duration,
}

/// Runs the stream workload against each chosen receiver.
pub fn run(opts: &Options) -> Result<Report, String> {
    let spread = Spread::new(opts.peers, opts.messages);
    // The node says `exit` to every peer it heard from when it quits: they listen.
    let peers = Peers::start(opts.base_port, &vec![Role::Live; opts.peers])?;
    let mut report = Report {
        mode: "stream",
        opts_peers: opts.peers,
        messages: spread.total(),
        concurrency: opts.peers,
        size: opts.size,
        sender: "stream",
        pinning: opts.spec.pinning.as_ref().map(|p| p.describe()),
        outcomes: Vec::new(),
        peer_deliveries: 0,
    };
    let before = peers.delivered();
    for &kind in &opts.receivers {
        let spec = receiver::Spec {
            kind,
            minimal: "minimal-stream-receiver",
            ..opts.spec.clone()
        };
        let threads = spec.pinning.as_ref().map_or(1, |p| p.load.len());
        let outcome = run_one(&spec, &spread, opts.drain_timeout, |port| {
            let plan = StreamPlan {
                to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
                base_port: opts.base_port,
                size: opts.size,
                batch: opts.batch,
                window: opts.window,
                timeout: opts.io_timeout,
            };
            stream_sender::run(&plan, &spread, threads)
        })?;
        report.outcomes.push(outcome);
    }
    report.peer_deliveries = peers.delivered() - before;
    drop(peers);
    Ok(report)
}
