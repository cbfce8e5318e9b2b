//! Allocations on the receive hot path, counted exactly (not timed): parse a message from a
//! known peer, step the peer table, render the event into a reused output buffer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2pchat::identity::LocalAddrs;
use p2pchat::peer_table::{Effect, PeerTable, TableConfig};
use p2pchat::{render, wire};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every call to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn peer(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 5000)
}

/// Allocations for one message from a known peer, through parse, table and rendering.
fn per_message(json: bool) -> u64 {
    let now = Instant::now();
    let mut table = PeerTable::new(TableConfig {
        name: "me".into(),
        port: 9000,
        advertise: None,
        timeout: Duration::from_secs(20),
        local: LocalAddrs::new([]),
        max_peers: 10_000,
        max_peers_per_host: 64,
        limit_local: false,
        fast: None,
    });
    let mut out = Vec::with_capacity(1 << 16);
    let mut step = |i: u32, text: &str, out: &mut Vec<u8>| {
        let payload = format!("{} p{i} {text}", peer(i));
        let before = allocations();
        let msg = wire::parse(payload.as_bytes()).unwrap();
        table.handle_message(now, peer(i), msg);
        while let Some(effect) = table.poll_effect() {
            if let Effect::Show(e) = effect {
                if json {
                    render::json(&e, out);
                } else {
                    render::human(&e, out);
                }
            }
        }
        let used = allocations() - before;
        out.clear();
        used
    };
    // 100 known peers, each seen once (their first message adds them).
    for i in 0..100 {
        step(i, "hello", &mut out);
    }
    // Then the steady state: messages from known peers.
    let counts: Vec<u64> = (0..1000)
        .map(|k| step(k % 100, "a message of ordinary length", &mut out))
        .collect();
    let max = *counts.iter().max().unwrap();
    assert_eq!(
        counts.iter().min(),
        Some(&max),
        "the same work costs the same"
    );
    max
}

#[test]
fn a_message_from_a_known_peer_costs_three_allocations() {
    // The parser's name and text (owned by the message), and the name carried by the
    // event. No copy of the payload, no formatting buffer, no growth of the output buffer.
    assert_eq!(per_message(true), 3, "--json");
    assert_eq!(per_message(false), 3, "human output");
}
