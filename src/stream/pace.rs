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

    /// Charges one message pulled from `ip` at `now` (a message is charged after it was
    /// taken, so a stream's Hello never waits for a token, and tokens are never given
    /// back). `Some(at)`: the source is now in debt, read none of it before `at`.
    pub fn charge(&mut self, ip: IpAddr, now: Instant) -> Option<Instant> {
        if !self.enabled() {
            return None;
        }
        let (rate, burst) = (self.rate, self.burst);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_TRACKED {
            // A new source when the table is full: it starts with no burst unless a
            // quiet source's bucket made room (see `make_room`).
            let fresh = self.make_room(now);
            self.buckets.insert(
                ip,
                Bucket {
                    tokens: if fresh { burst } else { 0.0 },
                    at: now,
                },
            );
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst) - 1.0;
        b.at = b.at.max(now);
        // A token left (a hair under one, whatever the rounding, counts): go on.
        if b.tokens >= 1.0 - 1e-6 {
            return None;
        }
        let wait_ns = ((1.0 - b.tokens) / rate * 1e9).ceil() as u64;
        // At least a microsecond: a wake-up at `now` would find the bucket as it is.
        Some(now + Duration::from_nanos(wait_ns.max(1000)))
    }

    /// Sources tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets the buckets that have refilled (sources quiet for a second); true if that
    /// made room. If none has, the stalest goes (the newcomer then starts empty: a flood
    /// of new sources gets no burst from the churn).
    fn make_room(&mut self, now: Instant) -> bool {
        let full = Duration::from_secs_f64(self.burst / self.rate);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at) < full);
        if self.buckets.len() < MAX_TRACKED {
            return true;
        }
        if let Some(stalest) = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.at)
            .map(|(ip, _)| *ip)
        {
            self.buckets.remove(&stalest);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// A burst of a second's worth, then one message per 1/rate s: the wait said is the
    /// time the next token comes.
    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut p = Pace::new(1000);
        for _ in 0..999 {
            assert_eq!(p.charge(ip(1), t0), None);
        }
        // The thousandth spends the last token: wait a thousandth of a second.
        let at = p.charge(ip(1), t0).expect("in debt");
        let wait = at - t0;
        assert!(
            wait >= Duration::from_micros(999) && wait <= Duration::from_micros(1001),
            "{wait:?}"
        );
        // Charged at `at`: the token that came is spent; the next comes 1 ms later.
        let next = p.charge(ip(1), at).expect("still paced");
        assert!(next >= at + Duration::from_micros(990), "{:?}", next - at);
        // Another source has its own bucket.
        assert_eq!(p.charge(ip(2), t0), None);
        // A quiet while refills it, no further than the burst.
        let later = t0 + Duration::from_secs(5);
        for _ in 0..999 {
            assert_eq!(p.charge(ip(1), later), None);
        }
        assert!(p.charge(ip(1), later).is_some());
    }

    /// Several streams of one source charged in turn share its rate: the debt adds up.
    #[test]
    fn streams_of_one_source_share_its_rate() {
        let t0 = Instant::now();
        let mut p = Pace::new(100);
        for _ in 0..100 {
            p.charge(ip(1), t0);
        }
        let a = p.charge(ip(1), t0).unwrap();
        let b = p.charge(ip(1), t0).unwrap();
        assert!(b > a, "a second stream's message waits longer");
        assert!(b - t0 >= Duration::from_millis(29), "{:?}", b - t0);
    }

    #[test]
    fn zero_is_no_limit() {
        let t0 = Instant::now();
        let mut p = Pace::new(0);
        for _ in 0..100_000 {
            assert_eq!(p.charge(ip(1), t0), None);
        }
        assert_eq!(p.tracked(), 0);
    }

    /// Many sources: never more than MAX_TRACKED buckets; refilled ones go first, and a
    /// newcomer that found no quiet bucket to replace starts with no burst.
    #[test]
    fn sources_tracked_are_bounded() {
        let t0 = Instant::now();
        let mut p = Pace::new(10);
        for n in 0..(MAX_TRACKED as u32 + 500) {
            let at = t0 + Duration::from_millis(u64::from(n));
            let src = IpAddr::from(n.to_be_bytes());
            assert_eq!(p.charge(src, at), None);
            assert!(p.tracked() <= MAX_TRACKED);
        }
        let mut q = Pace::new(10);
        for n in 0..(MAX_TRACKED as u32) {
            assert_eq!(q.charge(IpAddr::from(n.to_be_bytes()), t0), None);
        }
        let newcomer = IpAddr::from([250, 0, 0, 1]);
        assert!(q.charge(newcomer, t0).is_some(), "no burst from churn");
        assert_eq!(q.tracked(), MAX_TRACKED);
    }
}
