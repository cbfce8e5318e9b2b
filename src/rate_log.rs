//! Warnings that may repeat many times a second (rejected connections, a full peer list)
//! are logged at most once per [`WARN_INTERVAL`]: the first at once, the ones after it as
//! one summary line when the interval is over. Pure: time is passed in; the caller wakes
//! at [`RateLog::due`] and calls [`RateLog::report`].

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
}
