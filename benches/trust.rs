//! Micro benchmarks of the encryption core (not wired into the reactor yet): the Noise XX
//! handshake a new peer costs, and sealing + opening batches of 64 small fast-path
//! messages. Run with `cargo bench --bench trust`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use divan::{Bencher, counter::ItemsCount};
use p2pchat::stream::frame::{self, Frame};
use p2pchat::stream::receiver::{Event, Receiver, ReceiverConfig, SessionBook};
use p2pchat::stream::sender::{Outcome, Sender, SenderConfig};
use p2pchat::trust::key::StaticKey;
use p2pchat::trust::session::{Handshake, HandshakeConfig, Transport};

fn main() {
    divan::main();
}

const BATCH: usize = 64;
/// A typical chat line (the load tool's 32-byte text), as in `benches/stream.rs`.
const TEXT: &[u8] = b"p17:123456:xxxxxxxxxxxxxxxxxxxxx";

fn handshake(a: &StaticKey, b: &StaticKey, now: Instant) -> (Transport, Transport) {
    let cfg = HandshakeConfig::default();
    let mut i = Handshake::initiator(a, now, &cfg);
    let mut r = Handshake::responder(b, now, &cfg);
    let mut buf = Vec::with_capacity(256);
    i.poll_transmit(&mut buf);
    r.on_bytes(&buf, now).unwrap();
    buf.clear();
    r.poll_transmit(&mut buf);
    i.on_bytes(&buf, now).unwrap();
    buf.clear();
    i.poll_transmit(&mut buf);
    r.on_bytes(&buf, now).unwrap();
    (i.into_transport().unwrap(), r.into_transport().unwrap())
}

/// A whole XX handshake, both sides (each does one key generation and three X25519
/// operations), in memory: the CPU one new encrypted stream costs the two nodes together.
#[divan::bench]
fn handshake_xx_both_sides(b: Bencher) {
    let (ka, kb) = (
        StaticKey::from_private([1; 32]),
        StaticKey::from_private([2; 32]),
    );
    let now = Instant::now();
    b.bench_local(|| black_box(handshake(&ka, &kb, now)));
}

/// Seal 64 Data frames (already framed, one buffer) as one record and open it.
#[divan::bench]
fn seal_open_64(b: Bencher) {
    let (mut ti, mut tr) = handshake(
        &StaticKey::from_private([1; 32]),
        &StaticKey::from_private([2; 32]),
        Instant::now(),
    );
    let mut plain = Vec::new();
    for seq in 1..=BATCH as u64 {
        frame::encode_data(&mut plain, seq, TEXT);
    }
    let mut wire = Vec::with_capacity(plain.len() + 64);
    let mut back = Vec::with_capacity(plain.len());
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        wire.clear();
        back.clear();
        ti.seal(black_box(&plain), &mut wire).unwrap();
        tr.on_bytes(&wire).unwrap();
        tr.open(&mut back, usize::MAX).unwrap();
        black_box(back.len())
    });
}

/// `frames_encode_decode_64` of `benches/stream.rs` with the seal and open between:
/// encode 64 Data frames, seal, open, check + parse them back.
#[divan::bench]
fn frames_encode_seal_open_decode_64(b: Bencher) {
    let (mut ti, mut tr) = handshake(
        &StaticKey::from_private([1; 32]),
        &StaticKey::from_private([2; 32]),
        Instant::now(),
    );
    let mut plain = Vec::with_capacity(BATCH * (frame::DATA_OVERHEAD + TEXT.len()));
    let mut wire = Vec::with_capacity(plain.capacity() + 64);
    let mut back = Vec::with_capacity(plain.capacity());
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        plain.clear();
        wire.clear();
        back.clear();
        for seq in 1..=BATCH as u64 {
            frame::encode_data(&mut plain, seq, black_box(TEXT));
        }
        ti.seal(&plain, &mut wire).unwrap();
        tr.on_bytes(&wire).unwrap();
        tr.open(&mut back, usize::MAX).unwrap();
        let mut at = 0;
        let mut bytes = 0;
        while at < back.len() {
            let (f, len) = frame::decode(&back[at..], frame::MAX_PAYLOAD).unwrap();
            if let Frame::Data { text, .. } = f {
                bytes += text.len();
            }
            at += len;
        }
        black_box(bytes)
    });
}

/// `sender_receiver_round_64` of `benches/stream.rs` through an encrypted session: the
/// sender's batch sealed as one record, opened into the receiver; the Ack sealed back.
#[divan::bench]
fn sender_receiver_round_64_encrypted(b: Bencher) {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(20);
    let (mut ti, mut tr) = handshake(
        &StaticKey::from_private([1; 32]),
        &StaticKey::from_private([2; 32]),
        now,
    );
    let mut s: Sender<u64> = Sender::new(SenderConfig::new(7, 9001, "alice"));
    let mut book = SessionBook::new(16);
    let mut r = Receiver::new(
        ReceiverConfig::default(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        now,
    );
    let mut plain = Vec::with_capacity(1 << 16);
    let mut wire = Vec::with_capacity(1 << 16);
    let mut opened = Vec::with_capacity(1 << 16);
    // Across a socket: seal what one side wrote, open it on the other.
    let mut carry = |from: &mut Transport, to: &mut Transport, plain: &[u8], room: usize| {
        wire.clear();
        opened.clear();
        from.seal(plain, &mut wire).unwrap();
        to.on_bytes(&wire).unwrap();
        to.open(&mut opened, room).unwrap();
        opened.clone()
    };
    // Open the stream: the plaintext preface and Hello (sealed like every byte the sender
    // writes), then the Welcome.
    s.handle_connected(now);
    s.poll_transmit(now, &mut plain, usize::MAX);
    let hello = carry(&mut ti, &mut tr, &plain, usize::MAX);
    r.on_bytes(&hello, now).unwrap();
    while r.poll_event(&mut book, now).unwrap().is_some() {}
    plain.clear();
    r.poll_transmit(now, &mut plain);
    let welcome = carry(&mut tr, &mut ti, &plain, usize::MAX);
    s.on_bytes(&welcome, now).unwrap();
    let text = Bytes::from_static(TEXT);
    let mut id = 0u64;
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            s.push(id, text.clone(), deadline).unwrap();
            id += 1;
        }
        plain.clear();
        s.poll_transmit(now, &mut plain, usize::MAX);
        let batch = carry(&mut ti, &mut tr, &plain, r.read_room());
        r.on_bytes(&batch, now).unwrap();
        let mut n = 0;
        while let Some(Event::Message { text, .. }) = r.poll_event(&mut book, now).unwrap() {
            n += text.len();
        }
        plain.clear();
        r.poll_transmit(now, &mut plain);
        let ack = carry(&mut tr, &mut ti, &plain, usize::MAX);
        s.on_bytes(&ack, now).unwrap();
        let Some(Outcome::Delivered(ids)) = s.poll_outcome() else {
            panic!("one receipt for the batch")
        };
        black_box((n, ids.len()))
    });
}
