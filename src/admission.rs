//! Admission: which inbound connections the node takes, keeps and closes first. A pure
//! policy (time passed in, no sockets): the reactor asks it and obeys.
//!
//! * Per source (an IPv4 host, or an IPv6 /64: one site's allocation) at most
//!   `max_per_source` connections are open; more from it are closed at once, so one source
//!   holding its share of slots shuts out only itself.
//! * A connection costs one rate-limit token per source (one message per connection is the
//!   rule); each further message on a kept-open connection costs one more.
//! * At most `max_inbound` connections are open, and unfinished messages hold at most
//!   `max_buffered` bytes in all. When either is reached, a connection is closed to make
//!   room: from the source holding the most connections, the one dripping most (more
//!   arrivals for its message than an honest sender's one or two writes), then the one
//!   whose message has been in progress longest, so an honest sender pausing mid-message
//!   is not the one cut.
//! * Out of file descriptors, accepting pauses for [`ACCEPT_BACKOFF`].
//! * This machine's own processes are limited only by the overall caps, unless
//!   `limit_local`.
//!
//! Repeated warnings are logged at most once per interval (see `rate_log`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::identity::{LocalAddrs, bucket_text, limit_bucket};
use crate::rate::RateLimiter;
use crate::rate_log::{RateLog, WARN_INTERVAL};

/// How long accepting pauses when the process runs out of file descriptors.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Descriptors kept for what is not a connection (stdio, the listener, the poll, signals,
/// files the node opens) when the limits are derived from the descriptor limit.
pub const RESERVED_FDS: u64 = 32;
/// Fewest descriptors kept for the user's own sends.
pub const MIN_SEND_FDS: u64 = 16;

/// What admission enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_inbound: usize,
    pub max_per_source: usize,
    /// Bytes all unfinished inbound messages may hold together.
    pub max_buffered: usize,
    /// Messages per second per source (0 disables), and the burst allowed.
    pub rate: f64,
    pub burst: u32,
    /// Apply the per-source limits to this machine's own addresses too.
    pub limit_local: bool,
}

/// The limits fitted to a descriptor limit: inbound connections and the user's sends
/// together never need more descriptors than the process may open.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub limits: Limits,
    /// Sends (outbound connections) open at once at most; more wait their turn.
    pub max_sends: usize,
    /// Set when the descriptor limit lowered what was asked: what to tell the user.
    pub lowered: Option<String>,
}

/// Fits `asked` to `fd_limit` open files: [`RESERVED_FDS`] for the rest of the process, a
/// quarter of what remains (at least [`MIN_SEND_FDS`]) for sends, the others for inbound
/// connections, and at most half of those for one source.
pub fn fit_to_fd_limit(asked: &Limits, fd_limit: u64) -> Fitted {
    let usable = fd_limit.saturating_sub(RESERVED_FDS).max(2);
    let sends = (usable / 4).max(MIN_SEND_FDS).min(usable - 1);
    let inbound = usize::try_from(usable - sends).unwrap_or(usize::MAX).max(1);
    let mut limits = asked.clone();
    let mut lowered = None;
    if limits.max_inbound > inbound {
        limits.max_inbound = inbound;
        let per_source = (inbound / 2).max(1);
        limits.max_per_source = limits.max_per_source.min(per_source);
        lowered = Some(format!(
            "the open-files limit is {fd_limit} (ulimit -n): at most {} inbound connections \
             (--max-inbound {} asked), {} per source, {} sends at once",
            limits.max_inbound, asked.max_inbound, limits.max_per_source, sends
        ));
    }
    Fitted {
        limits,
        max_sends: usize::try_from(sends).unwrap_or(usize::MAX),
        lowered,
    }
}

/// What to do with a connection just accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Read it (it takes a slot only if it is not complete at once: [`Admission::opened`]).
    Admit,
    /// Its source already holds `max_per_source` connections: close it at once.
    SourceFull,
    /// Its source is over its message rate: close it at once (counted, reported).
    RateLimited,
}

/// A connection that could be closed to make room.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<K> {
    pub id: K,
    pub source: IpAddr,
    /// When the message it is sending began (the accept, or the end of the one before).
    pub message_began: Instant,
    /// Arrivals since that message began.
    pub arrivals: usize,
    pub buffered: usize,
}

/// Arrivals an honest sender takes for one message (one write, perhaps split in two
/// segments); more mark a sender dripping bytes.
const HONEST_ARRIVALS: usize = 2;

/// Per-source counts, caps, rate limits and the accept back-off. See the module docs.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    local: LocalAddrs,
    open: usize,
    per_source: HashMap<IpAddr, usize>,
    buffered: usize,
    rate: RateLimiter,
    accept_paused_until: Option<Instant>,
    rejected: RateLog,
    evicted: RateLog,
    fd_exhausted: RateLog,
    accept_errors: RateLog,
}

impl Admission {
    pub fn new(limits: Limits, local: LocalAddrs) -> Self {
        Admission {
            rate: RateLimiter::new(limits.rate, limits.burst, WARN_INTERVAL),
            limits,
            local,
            open: 0,
            per_source: HashMap::new(),
            buffered: 0,
            accept_paused_until: None,
            rejected: RateLog::new("inbound connections closed at once (--max-inbound-per-ip)"),
            evicted: RateLog::new("inbound connections closed to admit new ones (--max-inbound)"),
            fd_exhausted: RateLog::new("accepts paused: out of file descriptors"),
            accept_errors: RateLog::new("accepts paused: accepting failed"),
        }
    }

    /// Bytes held by unfinished inbound messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether the per-source limits apply to `ip`.
    fn limited(&self, ip: IpAddr) -> bool {
        self.limits.limit_local || !self.local.is_local(ip)
    }

    /// Whether accepting may go on (not backing off after running out of descriptors).
    pub fn may_accept(&self, now: Instant) -> bool {
        self.accept_paused_until.is_none_or(|t| t <= now)
    }

    /// A connection from `ip` was just accepted.
    pub fn on_accept(&mut self, now: Instant, ip: IpAddr) -> Verdict {
        if !self.limited(ip) {
            return Verdict::Admit;
        }
        let bucket = limit_bucket(ip);
        let from = self.per_source.get(&bucket).copied().unwrap_or(0);
        if from >= self.limits.max_per_source {
            let max = self.limits.max_per_source;
            self.rejected.hit(now, || {
                format!(
                    "{}: {from} inbound connections open (--max-inbound-per-ip {max}): new \
                     ones from it closed at once",
                    bucket_text(bucket)
                )
            });
            return Verdict::SourceFull;
        }
        if !self.rate.allow(bucket, now) {
            return Verdict::RateLimited;
        }
        Verdict::Admit
    }

    /// Whether message number `index` (0 for the first) of a connection from `ip` may be
    /// shown: the first was paid for at accept, each later one costs a token.
    pub fn allow_message(&mut self, now: Instant, ip: IpAddr, index: usize) -> bool {
        index == 0 || !self.limited(ip) || self.rate.allow(limit_bucket(ip), now)
    }

    /// Whether a connection that needs a slot must first make room for it.
    pub fn full(&self) -> bool {
        self.open >= self.limits.max_inbound
    }

    /// Whether unfinished messages hold more than allowed: one must be closed.
    pub fn over_budget(&self) -> bool {
        self.buffered > self.limits.max_buffered
    }

    /// A connection from `ip` takes a slot.
    pub fn opened(&mut self, ip: IpAddr) {
        self.open += 1;
        *self.per_source.entry(limit_bucket(ip)).or_insert(0) += 1;
    }

    /// A connection from `ip` that held a slot and `buffered` bytes is closed.
    pub fn closed(&mut self, ip: IpAddr, buffered: usize) {
        self.open = self.open.saturating_sub(1);
        self.buffered = self.buffered.saturating_sub(buffered);
        let bucket = limit_bucket(ip);
        if let Some(n) = self.per_source.get_mut(&bucket) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&bucket);
            }
        }
    }

    /// An open connection's unfinished bytes went from `before` to `after`.
    pub fn buffered_changed(&mut self, before: usize, after: usize) {
        self.buffered = (self.buffered + after).saturating_sub(before);
    }

    /// The connection to close to make room: from the source holding most slots, the one
    /// dripping most (arrivals past an honest sender's), then the one whose message has
    /// been in progress longest; when over the byte budget, the one holding most bytes
    /// from that source.
    pub fn choose_victim<K: Copy>(
        &self,
        candidates: impl IntoIterator<Item = Candidate<K>>,
    ) -> Option<K> {
        let for_memory = self.over_budget() && !self.full();
        candidates
            .into_iter()
            .max_by_key(|c| {
                let held = self
                    .per_source
                    .get(&limit_bucket(c.source))
                    .copied()
                    .unwrap_or(0);
                let dripping = c.arrivals.saturating_sub(HONEST_ARRIVALS);
                let size = if for_memory { c.buffered } else { 0 };
                (held, size, dripping, std::cmp::Reverse(c.message_began))
            })
            .map(|c| c.id)
    }

    /// Logs (rate-limited) that `victim` was closed to make room.
    pub fn evicted(&mut self, now: Instant, victim: &Candidate<impl Copy>) {
        let (max, held) = (self.limits.max_inbound, self.buffered);
        let source = victim.source;
        let age = now.saturating_duration_since(victim.message_began);
        self.evicted.hit(now, || {
            format!(
                "inbound connections full ({max}, --max-inbound) or holding too much ({held} \
                 bytes): the one from {source} whose message was in progress longest \
                 ({:.1} s) closed to admit a new one",
                age.as_secs_f64()
            )
        });
    }

    /// The process ran out of file descriptors while accepting: pause accepts a moment.
    pub fn out_of_fds(&mut self, now: Instant, error: &std::io::Error) {
        self.fd_exhausted.hit(now, || {
            format!("out of file descriptors ({error}): accepts paused for 100 ms")
        });
        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
    }

    /// Accepting failed otherwise: pause accepts a moment too, rather than retry at once.
    pub fn accept_failed(&mut self, now: Instant, error: &std::io::Error) {
        self.accept_errors.hit(now, || {
            format!("accepting a connection failed ({error}): accepts paused for 100 ms")
        });
        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
    }

    /// The earliest instant [`Admission::handle_timeout`] has work to do.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        [
            self.accept_paused_until,
            self.rate.next_report(now),
            self.rejected.due(),
            self.evicted.due(),
            self.fd_exhausted.due(),
            self.accept_errors.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Ends a due accept back-off (returns true: accept now) and logs due summaries.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        self.rejected.report(now);
        self.evicted.report(now);
        self.fd_exhausted.report(now);
        self.accept_errors.report(now);
        for d in self.rate.take_report(now) {
            log::warn!(
                "{}: {} messages over the rate limit (--rate {}/s, --burst {}) dropped",
                bucket_text(d.ip),
                d.count,
                self.limits.rate,
                self.limits.burst
            );
        }
        let resume = self.accept_paused_until.is_some_and(|t| t <= now);
        if resume {
            self.accept_paused_until = None;
        }
        resume
    }
}

#[cfg(test)]
mod tests;
