//! The load tool (`p2pchat-load`), run small against the real node: its JSON summary must
//! show every message arriving exactly once and in order per simulated peer (inbound,
//! against the node and the minimal receiver), and every live peer getting exactly
//! `connect` then `exit` while dead and refusing peers fail as they should (fan-out).
//! Correctness only: rates and latencies are not asserted (they depend on the machine).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN as NODE, Collector, SOON, wait_child};
use serde_json::Value;

const LOAD: &str = env!("CARGO_BIN_EXE_p2pchat-load");

/// Runs the tool with `args` (at most `limit`), returns its exit code and last stdout line
/// parsed as JSON, plus all its output for failure messages.
fn run(args: &[&str], limit: Duration) -> (Option<i32>, Value, String) {
    let mut child = Command::new(LOAD)
        .args(args)
        .args(["--node", NODE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run p2pchat-load");
    let out = Collector::start(child.stdout.take().unwrap());
    let err = Collector::start(child.stderr.take().unwrap());
    let status = wait_child(&mut child, limit);
    let (stdout, stderr) = match status {
        // Finished: all it wrote (its own children may hold its pipes a moment longer).
        Some(_) => (out.wait_end(SOON), err.wait_end(SOON)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            (out.text(), err.text())
        }
    };
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        status.is_some(),
        "p2pchat-load did not finish within {limit:?}\n{all}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e})\n{all}"));
    (status.and_then(|s| s.code()), summary, all)
}

/// A base port for `count` simulated peers (the tool gives them consecutive ports) outside
/// the ephemeral range (where the tool refuses them), `slot` apart from the other test's,
/// and free now: a range every port of which binds. Tried from an offset that differs per
/// test process, so that suites run side by side (two checkouts) do not collide.
/// One receiver's report (`o`, named `r`) accounts for all `n` messages: each seen
/// once, in order.
fn assert_accounted(o: &Value, n: u64, r: &str, all: &str) {
    assert_eq!(o["seen"], n, "{r}: {all}");
    for zero in ["lost", "duplicates", "out_of_order"] {
        assert_eq!(o[zero], 0, "{r}: {zero}: {all}");
    }
}

fn base_port(slot: u16, count: u16) -> String {
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    // The ranges outside the ephemeral one that can hold `count` ports.
    let below = (1025u32, u32::from(lo).saturating_sub(1));
    let above = (u32::from(hi) + 1, 65535u32);
    let start = (std::process::id() % 64) * 200 + u32::from(slot) * 100;
    for attempt in 0..64u32 {
        let offset = (start + attempt * 200) % 12_800;
        for (from, to) in [below, above] {
            let base = from + 1000 + offset;
            if base + u32::from(count) > to {
                continue;
            }
            let base = u16::try_from(base).expect("below 65536");
            let free =
                (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
            if free {
                return base.to_string();
            }
        }
    }
    panic!("no free range of {count} ports outside the ephemeral range {lo}-{hi}");
}

#[test]
fn inbound_every_message_exactly_once_in_order_on_both_receivers() {
    let (code, s, all) = run(
        &[
            "inbound",
            "--peers",
            "50",
            "--messages",
            "500",
            "--concurrency",
            "8",
            "--size",
            "40",
            "--base-port",
            &base_port(0, 50),
            "--receiver",
            "both",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(s["mode"], "inbound", "{all}");
    assert_eq!(s["messages"], 500, "{all}");
    for r in ["node", "minimal"] {
        let o = &s[r];
        assert_eq!(o["attempted"], 500, "{r}: {all}");
        assert_accounted(o, 500, r, &all);
        assert_eq!(o["unexpected"], 0, "{r}: {all}");
        assert_eq!(o["errors"], 0, "{r}: {all}");
        assert_eq!(o["exit_ok"], true, "{r}: {all}");
        assert!(o["cpu_us_per_msg"].is_number(), "{r}: {all}");
        assert!(o["peak_rss_kib"].as_u64().unwrap() > 0, "{r}: {all}");
        assert!(o["latency"]["p99_us"].as_f64().unwrap() > 0.0, "{r}: {all}");
    }
    assert!(
        s["ratio_rate"].is_number() && s["ratio_cpu"].is_number(),
        "{all}"
    );
    assert_eq!(s["correct"], true, "{all}");
    // The node, told to quit, said goodbye to every peer it had heard from.
    assert_eq!(s["peers_got_exit"], 50, "{all}");
    assert_eq!(code, Some(0), "{all}");
}

#[test]
fn fanout_live_peers_get_connect_then_exit_and_the_quit_is_bounded() {
    let (code, s, all) = run(
        &[
            "fanout",
            "--peers",
            "30",
            "--dead",
            "5",
            "--refusing",
            "5",
            "--timeout",
            "2",
            "--base-port",
            &base_port(1, 30),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(s["mode"], "fanout", "{all}");
    assert_eq!(s["live"], 20, "{all}");
    assert_eq!(s["hellos_seen"], 30, "{all}");
    assert_eq!(s["live_ok"], 20, "{all}");
    assert_eq!(s["live_missing_connect"], 0, "{all}");
    assert_eq!(s["live_missing_exit"], 0, "{all}");
    assert_eq!(s["live_extra"], 0, "{all}");
    assert_eq!(s["connect_outcomes"]["live"]["sent"], 20, "{all}");
    assert_eq!(s["connect_outcomes"]["refusing"]["refused"], 5, "{all}");
    let dead: u64 = s["connect_outcomes"]["dead"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(dead, 5, "{all}");
    assert_eq!(s["outcomes_as_expected"], true, "{all}");
    assert!(s["quit_s"].is_number(), "the quit never finished: {all}");
    assert!(
        s["connect_all_s"].is_number(),
        "connect all never finished: {all}"
    );
    assert_eq!(s["node_exit_ok"], true, "{all}");
    assert_eq!(code, Some(0), "{all}");
}

#[test]
fn inbound_with_one_thread_per_sender_counts_the_same() {
    let (code, s, all) = run(
        &[
            "inbound",
            "--peers",
            "20",
            "--messages",
            "200",
            "--concurrency",
            "4",
            "--sender",
            "threads",
            "--receiver",
            "node",
            "--base-port",
            &base_port(2, 20),
            "--json",
        ],
        Duration::from_secs(120),
    );
    let o = &s["node"];
    assert_eq!(s["sender"], "threads", "{all}");
    assert_accounted(o, 200, "node", &all);
    assert_eq!(o["errors"], 0, "{all}");
    assert!(s.get("minimal").is_none(), "{all}");
    assert_eq!(code, Some(0), "{all}");
}

#[test]
fn stream_every_message_exactly_once_in_order_on_the_node_and_the_framed_receiver() {
    let (code, s, all) = run(
        &[
            "stream",
            "--peers",
            "5",
            "--messages",
            "600",
            "--batch",
            "16",
            "--window",
            "50",
            "--base-port",
            &base_port(3, 5),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(s["mode"], "stream", "{all}");
    assert_eq!(s["messages"], 600, "{all}");
    for r in ["node", "minimal"] {
        let o = &s[r];
        assert_eq!(o["attempted"], 600, "{r}: {all}");
        assert_eq!(o["sent_ok"], 600, "{r}: every message acknowledged: {all}");
        assert_accounted(o, 600, r, &all);
        assert_eq!(o["unexpected"], 0, "{r}: {all}");
        assert_eq!(o["errors"], 0, "{r}: {all}");
        assert_eq!(o["exit_ok"], true, "{r}: {all}");
        assert_eq!(o["bad_output_lines"], 0, "{r}: {all}");
        assert!(o["cpu_us_per_msg"].is_number(), "{r}: {all}");
        assert!(o["peak_rss_kib"].as_u64().unwrap() > 0, "{r}: {all}");
    }
    assert!(s["ratio_rate"].is_number(), "{all}");
    assert_eq!(s["correct"], true, "{all}");
    assert_eq!(code, Some(0), "{all}");
}

#[test]
fn nodes_fast_then_legacy_only_latency_and_rss_each_exactly_once_in_order() {
    let (code, s, all) = run(
        &[
            "nodes",
            "--messages",
            "300",
            "--latency-messages",
            "200",
            "--latency-rate",
            "2000",
            "--rss-lines",
            "500",
            "--json",
        ],
        Duration::from_secs(180),
    );
    assert_eq!(s["mode"], "nodes", "{all}");
    for phase in ["fast", "legacy", "latency", "latency_floor", "rss"] {
        let o = &s[phase];
        let n = match phase {
            "latency" | "latency_floor" => 200,
            "rss" => 500,
            _ => 300,
        };
        assert_accounted(o, n, phase, &all);
        assert_eq!(o["correct"], true, "{phase}: {all}");
        assert_eq!(o["exit_ok"], true, "{phase}: {all}");
    }
    // The measured runs went over the stream (B proven), and the legacy-only one did not.
    assert_eq!(s["fast"]["speaks"], "p2pchat/2", "{all}");
    assert_ne!(s["legacy"]["speaks"], "p2pchat/2", "{all}");
    assert!(
        s["latency"]["latency"]["p99_us"].as_f64().unwrap() > 0.0,
        "{all}"
    );
    // The floor ran the minimal relays, not the nodes.
    assert_eq!(s["latency_floor"]["speaks"], "minimal relay", "{all}");
    assert!(s["rss"]["a_peak_rss_kib"].as_u64().unwrap() > 0, "{all}");
    assert!(s["ratio_fast_legacy"].is_number(), "{all}");
    assert_eq!(s["correct"], true, "{all}");
    assert_eq!(code, Some(0), "{all}");
}
