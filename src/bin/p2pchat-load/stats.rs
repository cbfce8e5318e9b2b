//! Latency percentiles over a set of durations.

use std::time::Duration;

use serde_json::{Value, json};

/// p50, p99 and max of a sample (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Sorts `sample` in place and reads the percentiles off it.
    pub fn of(sample: &mut [Duration]) -> Percentiles {
        if sample.is_empty() {
            return Percentiles::default();
        }
        sample.sort_unstable();
        let rank = |p: f64| {
            let r = (p / 100.0 * sample.len() as f64).ceil() as usize;
            sample[r.clamp(1, sample.len()) - 1]
        };
        Percentiles {
            count: sample.len(),
            p50: rank(50.0),
            p99: rank(99.0),
            max: sample[sample.len() - 1],
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "p50_us": micros(self.p50),
            "p99_us": micros(self.p99),
            "max_us": micros(self.max),
        })
    }
}

pub fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

/// Milliseconds with one decimal, for the human table.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        let mut one = vec![Duration::from_millis(7)];
        assert_eq!(Percentiles::of(&mut one).p99, Duration::from_millis(7));
        assert_eq!(Percentiles::of(&mut []).count, 0);
    }
}
