//! Per-source-IP message rate limiting: a token bucket per IP, with time passed in.
//!
//! Each IP may send `rate` messages per second on average and `burst` at once. Messages
//! beyond that are dropped and counted; [`RateLimiter::take_report`] hands out the count at
//! most once per interval, so a flood produces one warning line per interval, not one per
//! message. Memory is bounded: at most [`MAX_TRACKED`] buckets, and buckets that have
//! refilled (an idle sender) are forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most source IPs tracked at once.
pub const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Dropped messages from one IP since the last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub ip: IpAddr,
    pub count: u64,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    dropped: HashMap<IpAddr, u64>,
    interval: Duration,
    last_report: Option<Instant>,
}

impl RateLimiter {
    /// `rate` messages per second with bursts of `burst`; `rate == 0` disables limiting.
    pub fn new(rate: f64, burst: u32, interval: Duration) -> Self {
        RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
            dropped: HashMap::new(),
            interval,
            last_report: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
    }

    /// Would a message from `ip` be allowed now (without spending a token)?
    pub fn would_allow(&self, ip: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        match self.buckets.get(&ip) {
            None => true,
            Some(b) => {
                let mut b = *b;
                self.refill(&mut b, now);
                b.tokens >= 1.0
            }
        }
    }

    /// Spends a token for a message from `ip`; `false` (and counted) if over the rate.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_TRACKED {
            self.forget_idle(now);
        }
        let mut b = self.buckets.get(&ip).copied().unwrap_or(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(&mut b, now);
        let ok = b.tokens >= 1.0;
        if ok {
            b.tokens -= 1.0;
        } else {
            *self.dropped.entry(ip).or_insert(0) += 1;
        }
        if self.buckets.len() < MAX_TRACKED || self.buckets.contains_key(&ip) {
            self.buckets.insert(ip, b);
        }
        ok
    }

    /// Forgets buckets that are full again (their senders went quiet); if none are, the
    /// oldest half.
    fn forget_idle(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        if self.buckets.len() >= MAX_TRACKED {
            let mut ats: Vec<Instant> = self.buckets.values().map(|b| b.at).collect();
            ats.sort_unstable();
            let cut = ats[ats.len() / 2];
            self.buckets.retain(|_, b| b.at > cut);
        }
    }

    /// The drops counted since the last report, at most once per interval.
    pub fn take_report(&mut self, now: Instant) -> Vec<Dropped> {
        if self.dropped.is_empty()
            || self
                .last_report
                .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            return Vec::new();
        }
        self.last_report = Some(now);
        let mut out: Vec<Dropped> = self
            .dropped
            .drain()
            .map(|(ip, count)| Dropped { ip, count })
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.count));
        out
    }

    /// When the pending drop count may next be reported.
    pub fn next_report(&self, now: Instant) -> Option<Instant> {
        if self.dropped.is_empty() {
            return None;
        }
        Some(self.last_report.map_or(now, |t| t + self.interval))
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 5, Duration::from_secs(5));
        for _ in 0..5 {
            assert!(r.allow(A, t0));
        }
        assert!(!r.allow(A, t0));
        assert!(!r.would_allow(A, t0));
        // Another IP has its own bucket.
        assert!(r.allow(B, t0));
        // 10 per second: one token back after 100 ms.
        let t1 = t0 + Duration::from_millis(100);
        assert!(r.would_allow(A, t1));
        assert!(r.allow(A, t1));
        assert!(!r.allow(A, t1));
    }

    #[test]
    fn drops_are_counted_and_reported_once_per_interval() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1.0, 1, Duration::from_secs(5));
        assert!(r.allow(A, t0));
        for _ in 0..100 {
            assert!(!r.allow(A, t0));
        }
        assert_eq!(r.take_report(t0), vec![Dropped { ip: A, count: 100 }]);
        assert!(!r.allow(A, t0));
        assert_eq!(r.take_report(t0 + Duration::from_secs(1)), vec![]);
        assert_eq!(r.next_report(t0), Some(t0 + Duration::from_secs(5)));
        assert_eq!(
            r.take_report(t0 + Duration::from_secs(5)),
            vec![Dropped { ip: A, count: 1 }]
        );
        assert_eq!(r.next_report(t0), None);
    }

    #[test]
    fn disabled_allows_everything() {
        let mut r = RateLimiter::new(0.0, 1, Duration::from_secs(5));
        let t0 = Instant::now();
        assert!((0..1000).all(|_| r.allow(A, t0)));
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn tracked_ips_stay_bounded() {
        let mut r = RateLimiter::new(1.0, 2, Duration::from_secs(5));
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 1000) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            r.allow(ip, t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(r.tracked() <= MAX_TRACKED);
    }
}
