//! An incoming fast-path stream fed arbitrary bytes, in arbitrary pieces, at arbitrary
//! times, with its messages pulled and its acks written: no panic; it never holds more
//! than its buffer; message numbers only go up; once closed it takes nothing more.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use p2pchat::stream::frame::MAGIC;
use p2pchat::stream::receiver::{Event, Receiver, ReceiverConfig, SessionBook};

fuzz_target!(|data: &[u8]| {
    let cfg = ReceiverConfig {
        max_buffer: 4096,
        ..ReceiverConfig::default()
    };
    let t0 = Instant::now();
    let mut now = t0;
    let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut rx = Receiver::new(cfg, host, t0);
    let mut book = SessionBook::new(16);
    let mut out = Vec::new();
    // Most inputs start with the preface, so the fuzzer reaches the frames.
    let start: &[u8] = if data.first().is_some_and(|b| b & 1 == 0) {
        &MAGIC
    } else {
        &[]
    };
    let _ = rx.on_bytes(start, now);
    let mut rest = data;
    let mut last_seq: Option<u64> = None;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 4 {
            0 | 1 => {
                let len = usize::from(op >> 1).min(rest.len()).min(rx.read_room());
                let (bytes, tail) = rest.split_at(len);
                rest = tail;
                now += Duration::from_millis(u64::from(op % 16));
                if rx.on_bytes(bytes, now).is_err() {
                    assert_eq!(rx.read_room(), 0, "a failed stream takes nothing more");
                }
            }
            2 => {
                now = match rx.poll_timeout() {
                    Some(t) if op & 4 == 0 => t.max(now),
                    _ => now + Duration::from_millis(u64::from(op)),
                };
                rx.handle_timeout(now);
            }
            _ => rx.on_eof(),
        }
        assert!(rx.buffered() <= 4096 + 8 + cfg.max_payload + 64, "holds {}", rx.buffered());
        loop {
            match rx.poll_event(&mut book, now) {
                Ok(Some(Event::Message { seq, .. })) => {
                    assert!(last_seq.is_none_or(|l| seq > l), "{seq} after {last_seq:?}");
                    last_seq = Some(seq);
                }
                Ok(Some(Event::Opened { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
        out.clear();
        rx.poll_transmit(now, &mut out);
    }
});
