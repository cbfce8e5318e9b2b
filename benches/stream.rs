//! Micro benchmarks of the fast path's pure core (not wired into the reactor yet): frames
//! encoded and decoded in batches of 64 small messages, and the same batch through a
//! whole sender → receiver → ack → sender round. Run with `cargo bench --bench stream`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use divan::{Bencher, counter::ItemsCount};
use p2pchat::stream::frame::{self, Frame};
use p2pchat::stream::receiver::{Event, Receiver, ReceiverConfig, SessionBook};
use p2pchat::stream::sender::{Outcome, Sender, SenderConfig};

fn main() {
    divan::main();
}

const BATCH: usize = 64;
/// A typical chat line (the load tool's 32-byte text).
const TEXT: &[u8] = b"p17:123456:xxxxxxxxxxxxxxxxxxxxx";

/// Encode 64 Data frames into one buffer, then check and parse them back.
#[divan::bench]
fn frames_encode_decode_64(b: Bencher) {
    let mut buf = Vec::with_capacity(BATCH * (frame::DATA_OVERHEAD + TEXT.len()));
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        buf.clear();
        for seq in 1..=BATCH as u64 {
            frame::encode_data(&mut buf, seq, black_box(TEXT));
        }
        let mut at = 0;
        let mut bytes = 0;
        while at < buf.len() {
            let (f, len) = frame::decode(&buf[at..], frame::MAX_PAYLOAD).unwrap();
            if let Frame::Data { text, .. } = f {
                bytes += text.len();
            }
            at += len;
        }
        black_box(bytes)
    });
}

/// 64 messages through the whole pure path: pushed, framed into one buffer, read by the
/// receiver and pulled one by one (dedup against the session book), one Ack written back
/// and read by the sender, one Delivered outcome.
#[divan::bench]
fn sender_receiver_round_64(b: Bencher) {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(20);
    let mut s: Sender<u64> = Sender::new(SenderConfig::new(7, 9001, "alice"));
    let mut book = SessionBook::new(16);
    let mut r = Receiver::new(
        ReceiverConfig::default(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        now,
    );
    let mut wire = Vec::with_capacity(1 << 16);
    let mut back = Vec::with_capacity(64);
    // Open the stream: Hello, Welcome.
    s.handle_connected(now);
    s.poll_transmit(now, &mut wire, usize::MAX);
    r.on_bytes(&wire, now).unwrap();
    while r.poll_event(&mut book, now).unwrap().is_some() {}
    r.poll_transmit(now, &mut back);
    s.on_bytes(&back, now).unwrap();
    let text = Bytes::from_static(TEXT);
    let mut id = 0u64;
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            s.push(id, text.clone(), deadline).unwrap();
            id += 1;
        }
        wire.clear();
        s.poll_transmit(now, &mut wire, usize::MAX);
        r.on_bytes(&wire, now).unwrap();
        let mut n = 0;
        while let Some(Event::Message { text, .. }) = r.poll_event(&mut book, now).unwrap() {
            n += text.len();
        }
        back.clear();
        r.poll_transmit(now, &mut back);
        s.on_bytes(&back, now).unwrap();
        let Some(Outcome::Delivered(ids)) = s.poll_outcome() else {
            panic!("one receipt for the batch")
        };
        black_box((n, ids.len()))
    });
}
