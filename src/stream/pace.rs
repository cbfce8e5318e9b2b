//! Messages per second per source host on incoming streams: a token bucket per source (an
//! IPv4 host, an IPv6 /64, as the legacy limits count: the caller passes that key) that
//! *paces* rather than drops (PROTOCOL.md, "Fast path", "Limits").
//!
//! The legacy path drops what a source sends over `--rate`: each message is its own
//! connection, and there is no other way to push back. A stream has one: messages not
//! pulled from its receiver are not acknowledged, so its sender's window fills and TCP
//! holds the rest. So a source that spent its bucket is simply not read until the bucket
//! has a token again ([`Pace::take`] says when); nothing is lost. Time is passed in.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] sources; past it, buckets that have refilled
//! (sources that have been quiet for a second) are forgotten, and if none has, the
//! stalest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most source hosts tracked at once.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The per-source buckets. See the module documentation.
#[derive(Debug)]
pub struct Pace {
    /// Messages per second per source; 0: no limit.
    rate: f64,
    /// The most a bucket holds: one second's worth.
    burst: f64,
    buckets: HashMap<IpAddr, Bucket, foldhash::fast::RandomState>,
}

impl Pace {
    /// `rate` messages per second per source host, in bursts of up to a second's worth;
    /// 0 turns pacing off.
    pub fn new(rate: u32) -> Self {
        Pace {
            rate: f64::from(rate),
            burst: f64::from(rate.max(1)),
            buckets: HashMap::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes one message's token for `ip` at `now`; `Err(at)`: none until `at` (the
    /// caller stops reading that source until then).
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Instant> {
        if !self.enabled() {
            return Ok(());
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = b.at.max(now);
        // (A hair under one: the instant `Err` names refills it whatever the rounding.)
        if b.tokens >= 1.0 - 1e-6 {
            b.tokens = (b.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let wait_ns = ((1.0 - b.tokens) / rate * 1e9).ceil() as u64;
        // At least a microsecond: a wake-up at `now` would find the bucket as it is.
        Err(now + Duration::from_nanos(wait_ns.max(1000)))
    }

    /// Gives back a token [`Pace::take`] took for nothing (no message came).
    pub fn refund(&mut self, ip: IpAddr) {
        let burst = self.burst;
        if let Some(b) = self.buckets.get_mut(&ip) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    /// Sources tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn make_room(&mut self, now: Instant) {
        let full = Duration::from_secs_f64(self.burst / self.rate);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at) < full);
        if self.buckets.len() >= MAX_TRACKED
            && let Some(stalest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(ip, _)| *ip)
        {
            self.buckets.remove(&stalest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// A burst of a second's worth, then one message per 1/rate s: the wait said is the
    /// time the next token comes, and taking at that instant succeeds.
    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut p = Pace::new(1000);
        for _ in 0..1000 {
            assert_eq!(p.take(ip(1), t0), Ok(()));
        }
        let at = p.take(ip(1), t0).unwrap_err();
        let wait = at - t0;
        assert!(
            wait >= Duration::from_micros(999) && wait <= Duration::from_micros(1001),
            "{wait:?}"
        );
        assert!(p.take(ip(1), t0 + Duration::from_micros(500)).is_err());
        assert_eq!(p.take(ip(1), at), Ok(()));
        // A token taken for nothing comes back.
        p.refund(ip(1));
        assert_eq!(p.take(ip(1), at), Ok(()));
        assert!(p.take(ip(1), at).is_err());
        // Another source has its own bucket.
        assert_eq!(p.take(ip(2), t0), Ok(()));
        // A quiet second refills it, no further than the burst.
        let later = t0 + Duration::from_secs(5);
        for _ in 0..1000 {
            assert_eq!(p.take(ip(1), later), Ok(()));
        }
        assert!(p.take(ip(1), later).is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        let t0 = Instant::now();
        let mut p = Pace::new(0);
        for _ in 0..100_000 {
            assert_eq!(p.take(ip(1), t0), Ok(()));
        }
        assert_eq!(p.tracked(), 0);
    }

    /// Many sources: never more than MAX_TRACKED buckets; refilled ones go first.
    #[test]
    fn sources_tracked_are_bounded() {
        let t0 = Instant::now();
        let mut p = Pace::new(10);
        for n in 0..(MAX_TRACKED as u32 + 500) {
            let at = t0 + Duration::from_millis(u64::from(n));
            let src = IpAddr::from(n.to_be_bytes());
            assert_eq!(p.take(src, at), Ok(()));
            assert!(p.tracked() <= MAX_TRACKED);
        }
        // All at once, none refilled: the stalest goes.
        let mut q = Pace::new(10);
        for n in 0..(MAX_TRACKED as u32 + 5) {
            q.take(IpAddr::from(n.to_be_bytes()), t0).unwrap();
        }
        assert_eq!(q.tracked(), MAX_TRACKED);
    }
}
