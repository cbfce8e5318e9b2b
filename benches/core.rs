//! Micro benchmarks of the pure core: parsing and encoding messages, sanitising, and
//! stepping the peer table with 10,000 peers. Run with `cargo bench`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use divan::{Bencher, counter::ItemsCount};
use p2pchat::identity::LocalAddrs;
use p2pchat::peer_table::{Effect, PeerTable, SendId, TableConfig, Target};
use p2pchat::{render, sanitize, wire};

fn main() {
    divan::main();
}

const TYPICAL: &[u8] = b"127.0.0.1:20001 p1 1:42:hello there, how is it going today?";

#[divan::bench]
fn parse_typical(b: Bencher) {
    b.counter(ItemsCount::new(1usize))
        .bench(|| wire::parse(black_box(TYPICAL)));
}

#[divan::bench]
fn parse_max_size(b: Bencher) {
    let msg = format!("127.0.0.1:20001 p1 {}", "x".repeat(1000));
    b.counter(ItemsCount::new(1usize))
        .bench(|| wire::parse(black_box(msg.as_bytes())));
}

#[divan::bench]
fn parse_garbage(b: Bencher) {
    let junk: Vec<u8> = (0..1024u32).map(|i| (i * 7919 % 251) as u8).collect();
    b.counter(ItemsCount::new(1usize))
        .bench(|| wire::parse(black_box(&junk)));
}

/// A kept-open connection: is a new arrival a new message? (100 arrivals checked.)
#[divan::bench]
fn split_unframed(b: Bencher) {
    let one = "127.0.0.1:20001 p1 some text here ";
    let buf = one.repeat(100);
    b.counter(ItemsCount::new(100usize)).bench(|| {
        let buf = black_box(buf.as_bytes());
        let header = wire::header_prefix(buf).unwrap();
        (1..100)
            .filter(|i| wire::new_message_at(buf, i * one.len(), header) == Some(true))
            .count()
    });
}

#[divan::bench]
fn encode_typical(b: Bencher) {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    b.counter(ItemsCount::new(1usize))
        .bench(|| wire::encode(ip, 9000, black_box("alice"), black_box("hello there")));
}

#[divan::bench]
fn sanitize_clean(b: Bencher) {
    let text = "a perfectly ordinary chat message, nothing to see";
    b.counter(ItemsCount::new(1usize))
        .bench(|| sanitize::for_terminal(black_box(text)).len());
}

#[divan::bench]
fn sanitize_hostile(b: Bencher) {
    let text = "\u{1b}[2J\u{1b}]0;x\u{7}\u{9b}\u{202e}".repeat(20);
    b.counter(ItemsCount::new(1usize))
        .bench(|| sanitize::for_terminal(black_box(&text)).len());
}

fn message_event() -> p2pchat::event::Event {
    p2pchat::event::Event::Message {
        from: p2pchat::event::PeerView::new(Some("p1".into()), "127.0.0.1:20001".parse().unwrap()),
        text: "1:42:hello there, how is it going today?".into(),
        cut: None,
        via: p2pchat::event::Via::Encrypted,
    }
}

#[divan::bench]
fn render_json(b: Bencher) {
    let e = message_event();
    let mut out = Vec::with_capacity(1 << 16);
    b.counter(ItemsCount::new(1usize)).bench_local(|| {
        out.clear();
        render::json(black_box(&e), &mut out);
    });
}

#[divan::bench]
fn render_human(b: Bencher) {
    let e = message_event();
    let mut out = Vec::with_capacity(1 << 16);
    b.counter(ItemsCount::new(1usize)).bench_local(|| {
        out.clear();
        render::human(black_box(&e), &mut out);
    });
}

const PEERS: u32 = 10_000;

fn table() -> PeerTable {
    PeerTable::new(TableConfig {
        name: "bench".into(),
        port: 9000,
        advertise: None,
        timeout: Duration::from_secs(20),
        local: LocalAddrs::new([]),
        max_peers: usize::MAX,
        max_peers_per_host: 64,
        limit_local: false,
        fast: None,
    })
}

fn peer_addr(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 5000)
}

fn drain(t: &mut PeerTable) -> usize {
    let mut n = 0;
    while let Some(e) = t.poll_effect() {
        black_box(&e);
        n += 1;
    }
    n
}

/// The reactor's reports for a send that goes well: connected, written, closed.
fn deliver(t: &mut PeerTable, now: Instant, id: SendId) {
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
    t.handle_send_connected(now, id, local);
    t.handle_send_written(now, id);
    t.handle_send_closed(now, id);
}

/// A table that already knows 10,000 peers.
fn full_table(now: Instant) -> PeerTable {
    let mut t = table();
    for i in 0..PEERS {
        let msg = wire::parse(format!("{} p{i} hi", peer_addr(i)).as_bytes()).unwrap();
        t.handle_message(now, peer_addr(i), msg);
    }
    drain(&mut t);
    t
}

/// Inbound messages from known peers: the receive hot path.
#[divan::bench]
fn table_message_from_known_peer_10k(b: Bencher) {
    let now = Instant::now();
    let mut t = full_table(now);
    let msgs: Vec<(SocketAddr, wire::Message)> = (0..PEERS)
        .map(|i| {
            let m = wire::parse(format!("{} p{i} hello again", peer_addr(i)).as_bytes());
            (peer_addr(i), m.unwrap())
        })
        .collect();
    let mut i = 0;
    b.counter(ItemsCount::new(1usize)).bench_local(|| {
        let (ip, m) = &msgs[i % msgs.len()];
        i += 1;
        t.handle_message(now, *ip, m.clone());
        drain(&mut t)
    });
}

/// Learning 10,000 new peers from scratch.
#[divan::bench(sample_count = 20)]
fn table_learn_10k_peers(b: Bencher) {
    let now = Instant::now();
    let msgs: Vec<(SocketAddr, wire::Message)> = (0..PEERS)
        .map(|i| {
            let m = wire::parse(format!("{} p{i} hi", peer_addr(i)).as_bytes()).unwrap();
            (peer_addr(i), m)
        })
        .collect();
    b.counter(ItemsCount::new(PEERS as usize))
        .with_inputs(|| (table(), msgs.clone()))
        .bench_local_values(|(mut t, msgs)| {
            for (ip, m) in msgs {
                t.handle_message(now, ip, m);
            }
            drain(&mut t)
        });
}

/// "Connect to all" with 10,000 peers, every send completing: the fan-out path.
#[divan::bench(sample_count = 20)]
fn table_connect_all_10k(b: Bencher) {
    let now = Instant::now();
    b.counter(ItemsCount::new(PEERS as usize))
        .with_inputs(|| full_table(now))
        .bench_local_values(|mut t| {
            t.connect(now, p2pchat::peer_table::Which::All);
            let mut ids = Vec::with_capacity(PEERS as usize);
            while let Some(e) = t.poll_effect() {
                if let Effect::Transmit(tx) = e {
                    ids.push(tx.id);
                }
            }
            for id in ids {
                deliver(&mut t, now, id);
            }
            drain(&mut t)
        });
}

/// User sends by index into a 10,000-peer list.
#[divan::bench]
fn table_send_by_index_10k(b: Bencher) {
    let now = Instant::now();
    let mut t = full_table(now);
    let mut i = 0usize;
    b.counter(ItemsCount::new(1usize)).bench_local(|| {
        i = i % PEERS as usize + 1;
        t.send(now, Target::Index(i), "hello");
        let mut id = None;
        while let Some(e) = t.poll_effect() {
            if let Effect::Transmit(tx) = e {
                id = Some(tx.id);
            }
        }
        if let Some(id) = id {
            deliver(&mut t, now, id);
        }
        drain(&mut t)
    });
}
