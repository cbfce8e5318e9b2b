//! The inbound assembler driven by arbitrary input: arrivals of arbitrary bytes at
//! arbitrary times, timeouts, and any ending (close, reset, eviction). No panic; it never
//! holds more than one message and one arrival; message indices count up from 0; after it
//! is done it outputs nothing more and wants no wake-up; a cut mark only
//! on an early end.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use p2pchat::assembler::{Assembler, Cut, Limits, Output};

const MAX_MESSAGE: usize = 256;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message: MAX_MESSAGE,
        read_timeout: Duration::from_secs(3),
        idle_flush: Duration::from_secs(1),
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Assembler::new(limits, t0);
    let mut next_index = 0;
    let mut ended_early = false;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            // An arrival of up to 63 bytes, after up to 630 ms.
            0..=3 => {
                let len = usize::from(op >> 2).min(rest.len());
                let (bytes, tail) = rest.split_at(len);
                rest = tail;
                now += Duration::from_millis(u64::from(op) * 10 % 630);
                a.on_bytes(bytes, now);
                assert!(
                    a.buffered() <= MAX_MESSAGE + 63,
                    "holds {} bytes",
                    a.buffered()
                );
            }
            // Time passes to the next wake-up, or a little.
            4 | 5 => {
                now = match a.poll_timeout() {
                    Some(t) if op % 2 == 0 => t.max(now),
                    _ => now + Duration::from_millis(u64::from(op)),
                };
                a.handle_timeout(now);
            }
            6 => {
                ended_early |= !a.is_done();
                if op & 8 == 0 {
                    a.on_reset()
                } else {
                    a.on_evicted()
                }
            }
            _ => a.on_eof(),
        }
        while let Some(out) = a.poll_output() {
            if let Output::Message { index, cut, .. } = out {
                assert_eq!(index, next_index);
                next_index += 1;
                // Reset and evicted only when told so; timed out only by the deadline.
                match cut {
                    None => {}
                    Some(Cut::TimedOut) => assert!(now >= t0 + limits.read_timeout),
                    Some(Cut::Reset | Cut::Evicted) => assert!(ended_early),
                }
            }
        }
        if a.is_done() {
            assert_eq!(a.poll_timeout(), None);
            assert_eq!(a.buffered(), 0);
        }
    }
});
