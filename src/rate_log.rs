//! Warnings that may repeat many times a second (rejected connections, a full peer list,
//! malformed messages) are logged at most once per [`WARN_INTERVAL`]: the first at once, the
//! ones after it as one summary line when the interval is over. [`RateLog`] does this for
//! one kind of warning; [`SourceLog`] for warnings caused by remote input, per source, so
//! one noisy sender neither floods the log nor hides the others. Pure: time is passed in;
//! the caller wakes at `due` and calls `report`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often one kind of repeated warning is logged at most.
pub const WARN_INTERVAL: Duration = Duration::from_secs(5);

/// Counts repeated events and logs them at most once per [`WARN_INTERVAL`]: the first at
/// once, the ones after it as one summary line when the interval is over.
#[derive(Debug)]
pub struct RateLog {
    /// Hits not logged yet.
    count: u64,
    last: Option<Instant>,
    /// What the summary line says was repeated.
    summary: &'static str,
}

impl RateLog {
    pub fn new(summary: &'static str) -> Self {
        RateLog {
            count: 0,
            last: None,
            summary,
        }
    }

    pub fn hit(&mut self, now: Instant, what: impl FnOnce() -> String) {
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL)
        {
            self.report(now);
            log::warn!("{}", what());
            self.last = Some(now);
        } else {
            self.count += 1;
        }
    }

    /// When the summary of the hits not yet logged is due.
    pub fn due(&self) -> Option<Instant> {
        match (self.count, self.last) {
            (0, _) | (_, None) => None,
            (_, Some(t)) => Some(t + WARN_INTERVAL),
        }
    }

    /// Logs the summary once it is due.
    pub fn report(&mut self, now: Instant) {
        if self.due().is_some_and(|t| t <= now) {
            log::warn!("{}: {} more times", self.summary, self.count);
            self.count = 0;
            self.last = Some(now);
        }
    }
}

/// Most sources [`SourceLog`] tracks at once; past that, warnings from new sources are
/// summed up together as "other sources".
pub const MAX_SOURCES: usize = 1024;

/// Warnings caused by remote input, rate-limited per source and per kind: for each
/// (source, kind) the first is logged at once, the ones after it within [`WARN_INTERVAL`]
/// are counted and logged as one line when the interval is over ("10.0.0.9: 347 more
/// malformed messages dropped in the last 5 s"). A source quiet for a whole interval is
/// forgotten, and its next warning is logged at once again. At most [`MAX_SOURCES`]
/// (source, kind) pairs are tracked; warnings from sources beyond them are counted per
/// kind and summed up as "other sources".
#[derive(Debug)]
pub struct SourceLog {
    entries: HashMap<(IpAddr, &'static str), Repeats>,
    /// Warnings from sources that did not fit, per kind.
    others: HashMap<&'static str, Repeats>,
    /// How a source is written in a summary line (an IPv6 /64...).
    name: fn(IpAddr) -> String,
    /// The earliest summary due, if any.
    next_due: Option<Instant>,
    /// When quiet entries were last forgotten to make room.
    purged: Option<Instant>,
}

/// One (source, kind)'s warnings since its last line.
#[derive(Debug, Clone, Copy)]
struct Repeats {
    /// When its last line (the first warning or a summary) was logged.
    since: Instant,
    /// Warnings counted since, not logged.
    count: u64,
}

impl Repeats {
    fn due(&self) -> Option<Instant> {
        (self.count > 0).then(|| self.since + WARN_INTERVAL)
    }
}

impl SourceLog {
    /// `name` writes a source in summary lines.
    pub fn new(name: fn(IpAddr) -> String) -> Self {
        SourceLog {
            entries: HashMap::new(),
            others: HashMap::new(),
            name,
            next_due: None,
            purged: None,
        }
    }

    /// A warning of kind `summary` (the words of its summary line, e.g. "malformed
    /// messages dropped") caused by `source` (what the per-source limits count: an IPv4
    /// host, an IPv6 /64). `what` is the full line, made only when it is logged.
    pub fn hit(
        &mut self,
        now: Instant,
        source: IpAddr,
        summary: &'static str,
        what: impl FnOnce() -> String,
    ) {
        let key = (source, summary);
        // Full: make room, but scan at most once per interval (a table of busy sources
        // must not cost a scan per warning).
        if self.entries.len() >= MAX_SOURCES
            && !self.entries.contains_key(&key)
            && self
                .purged
                .is_none_or(|t| now.saturating_duration_since(t) >= WARN_INTERVAL)
        {
            self.forget_quiet(now);
        }
        let room = self.entries.len() < MAX_SOURCES;
        let entry = match self.entries.get_mut(&key) {
            Some(e) if e.count == 0 && now.saturating_duration_since(e.since) >= WARN_INTERVAL => {
                // Quiet for a whole interval: as if new.
                log::warn!("{}", what());
                e.since = now;
                return;
            }
            Some(e) => e,
            None if room => {
                log::warn!("{}", what());
                self.entries.insert(
                    key,
                    Repeats {
                        since: now,
                        count: 0,
                    },
                );
                return;
            }
            None => self.others.entry(summary).or_insert(Repeats {
                since: now,
                count: 0,
            }),
        };
        entry.count += 1;
        self.next_due = earliest(self.next_due, entry.due());
    }

    /// When the next summary line is due.
    pub fn due(&self) -> Option<Instant> {
        self.next_due
    }

    /// Logs every summary that is due, and forgets the sources that have gone quiet.
    pub fn report(&mut self, now: Instant) {
        if self.next_due.is_none_or(|t| t > now) {
            return;
        }
        let mut next = None;
        for ((source, summary), e) in &mut self.entries {
            next = earliest(next, sum_up(now, || (self.name)(*source), summary, e));
        }
        for (summary, e) in &mut self.others {
            next = earliest(next, sum_up(now, || "other sources".to_owned(), summary, e));
        }
        self.next_due = next;
        self.others.retain(|_, e| e.count > 0);
        self.forget_quiet(now);
    }

    /// Forgets the (source, kind) pairs with nothing counted whose last line is an interval
    /// old: their next warning is logged at once anyway.
    fn forget_quiet(&mut self, now: Instant) {
        self.purged = Some(now);
        self.entries
            .retain(|_, e| e.count > 0 || now.saturating_duration_since(e.since) < WARN_INTERVAL);
    }

    /// How many (source, kind) pairs are tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries.len()
    }
}

/// Logs `e`'s summary line if it is due; returns when its next one is due.
fn sum_up(
    now: Instant,
    who: impl FnOnce() -> String,
    summary: &str,
    e: &mut Repeats,
) -> Option<Instant> {
    match e.due() {
        Some(t) if t <= now => {
            let secs = now.saturating_duration_since(e.since).as_secs_f64();
            log::warn!(
                "{}: {} more {summary} in the last {secs:.0} s",
                who(),
                e.count
            );
            e.count = 0;
            e.since = now;
            None
        }
        other => other,
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    a.into_iter().chain(b).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_warnings_are_summed_up_when_their_interval_ends() {
        let t0 = Instant::now();
        let mut log = RateLog::new("things");
        log.hit(t0, String::new);
        assert_eq!(
            (log.count, log.last),
            (0, Some(t0)),
            "the first is logged at once"
        );
        for i in 1..=10 {
            log.hit(t0 + Duration::from_millis(i), String::new);
        }
        assert_eq!(log.count, 10);
        assert_eq!(log.due(), Some(t0 + WARN_INTERVAL));
        log.report(t0 + Duration::from_secs(1));
        assert_eq!(log.count, 10, "not due yet");
        log.report(t0 + WARN_INTERVAL);
        assert_eq!((log.count, log.due()), (0, None));
    }

    /// Captures this thread's log lines (tests run on several threads at once).
    mod capture {
        use std::cell::RefCell;
        use std::sync::Once;

        struct Capture;

        thread_local! {
            static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        }

        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata) -> bool {
                true
            }
            fn log(&self, record: &log::Record) {
                LINES.with(|l| l.borrow_mut().push(record.args().to_string()));
            }
            fn flush(&self) {}
        }

        static CAPTURE: Capture = Capture;

        /// The lines logged on this thread since the last call.
        pub fn take() -> Vec<String> {
            static INSTALL: Once = Once::new();
            INSTALL.call_once(|| {
                let _ = log::set_logger(&CAPTURE);
                log::set_max_level(log::LevelFilter::Trace);
            });
            LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
        }
    }

    use std::net::Ipv4Addr;

    const MALFORMED: &str = "malformed messages dropped";
    const TOO_LARGE: &str = "messages over --max-message dropped";

    fn host(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn name(ip: IpAddr) -> String {
        format!("<{ip}>")
    }

    #[test]
    fn a_source_is_logged_at_once_then_summed_up_once_per_interval() {
        capture::take();
        let t0 = Instant::now();
        let mut log = SourceLog::new(name);
        log.hit(t0, host(9), MALFORMED, || "first, in full".to_owned());
        assert_eq!(capture::take(), ["first, in full"]);
        assert_eq!(log.due(), None, "nothing to sum up yet");
        for i in 1..=347 {
            let at = t0 + Duration::from_millis(i * 10);
            log.hit(at, host(9), MALFORMED, || panic!("counted, not made"));
        }
        assert_eq!(log.due(), Some(t0 + WARN_INTERVAL));
        log.report(t0 + Duration::from_secs(4));
        assert_eq!(capture::take(), Vec::<String>::new(), "not due yet");
        log.report(t0 + WARN_INTERVAL);
        assert_eq!(
            capture::take(),
            ["<10.0.0.9>: 347 more malformed messages dropped in the last 5 s"]
        );
        assert_eq!(log.due(), None);
        // Still noisy: the next line is a summary again, an interval after the last.
        let t1 = t0 + WARN_INTERVAL;
        log.hit(t1 + Duration::from_secs(1), host(9), MALFORMED, || {
            panic!("counted, not made")
        });
        assert_eq!(log.due(), Some(t1 + WARN_INTERVAL));
        log.report(t1 + WARN_INTERVAL);
        assert_eq!(
            capture::take(),
            ["<10.0.0.9>: 1 more malformed messages dropped in the last 5 s"]
        );
        // Quiet for a whole interval: forgotten, and the next one is logged in full.
        let t2 = t1 + WARN_INTERVAL * 3;
        log.hit(t2, host(9), MALFORMED, || "in full again".to_owned());
        assert_eq!(capture::take(), ["in full again"]);
        assert_eq!(log.due(), None);
    }

    #[test]
    fn sources_and_kinds_are_counted_apart() {
        capture::take();
        let t0 = Instant::now();
        let mut log = SourceLog::new(name);
        log.hit(t0, host(1), MALFORMED, || "1 malformed".to_owned());
        log.hit(t0, host(2), MALFORMED, || "2 malformed".to_owned());
        log.hit(t0, host(1), TOO_LARGE, || "1 too large".to_owned());
        assert_eq!(
            capture::take(),
            ["1 malformed", "2 malformed", "1 too large"]
        );
        for _ in 0..3 {
            log.hit(t0, host(1), MALFORMED, String::new);
        }
        log.hit(t0, host(2), MALFORMED, String::new);
        log.report(t0 + WARN_INTERVAL);
        let mut lines = capture::take();
        lines.sort();
        assert_eq!(
            lines,
            [
                "<10.0.0.1>: 3 more malformed messages dropped in the last 5 s",
                "<10.0.0.2>: 1 more malformed messages dropped in the last 5 s",
            ]
        );
    }

    #[test]
    fn tracked_sources_are_bounded_and_the_rest_summed_up_as_other_sources() {
        capture::take();
        let t0 = Instant::now();
        let mut log = SourceLog::new(name);
        let n = MAX_SOURCES as u32 + 100;
        for i in 0..n {
            log.hit(t0, host(i), MALFORMED, || format!("from {i}"));
        }
        assert_eq!(log.tracked(), MAX_SOURCES);
        assert_eq!(
            capture::take().len(),
            MAX_SOURCES,
            "one line per tracked source"
        );
        assert_eq!(log.due(), Some(t0 + WARN_INTERVAL));
        log.report(t0 + WARN_INTERVAL);
        assert_eq!(
            capture::take(),
            ["other sources: 100 more malformed messages dropped in the last 5 s"]
        );
        // The tracked ones went quiet: forgotten, so new sources are logged in full again.
        let t1 = t0 + WARN_INTERVAL * 2;
        log.hit(t1, host(n + 1), MALFORMED, || "a new one".to_owned());
        assert_eq!(capture::take(), ["a new one"]);
        assert!(log.tracked() < MAX_SOURCES);
    }
}
