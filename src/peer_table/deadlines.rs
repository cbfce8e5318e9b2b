//! Every unfinished send's deadline, in time order.
//!
//! A send's deadline is the instant it was asked for plus the node's timeout, so sends
//! arrive in deadline order and an insert is almost always an append. Sends mostly end
//! in the order they were asked for (a stream's acknowledgements are cumulative), so a
//! removal is almost always at the front. A sorted deque gives both in O(1) where a
//! balanced tree pays a search and an allocation per send. A removal elsewhere marks the
//! entry dead (found by binary search); dead entries leave when they reach the front, or
//! all at once when they outnumber the live ones, so the deque stays within twice the
//! live count (plus a constant).

use std::collections::VecDeque;
use std::time::Instant;

use super::SendId;

/// Dead entries tolerated beyond the live count before a compaction.
const SLACK: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    at: Instant,
    id: SendId,
    live: bool,
}

impl Entry {
    fn key(&self) -> (Instant, SendId) {
        (self.at, self.id)
    }
}

/// The deadlines of the sends not yet finished, earliest first. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct Deadlines {
    /// Sorted by `(at, id)`; the front, if any, is live.
    entries: VecDeque<Entry>,
    live: usize,
}

impl Deadlines {
    pub fn new() -> Self {
        Self::default()
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Adds send `id`, due `at` (each `(at, id)` at most once).
    pub fn insert(&mut self, at: Instant, id: SendId) {
        let entry = Entry { at, id, live: true };
        self.live += 1;
        match self.entries.back() {
            Some(last) if last.key() > (at, id) => {
                let i = self.entries.partition_point(|e| e.key() < (at, id));
                self.entries.insert(i, entry);
            }
            _ => self.entries.push_back(entry),
        }
    }

    /// Removes send `id` due `at`; false if it was not there.
    pub fn remove(&mut self, at: Instant, id: SendId) -> bool {
        let Some(i) = self.find(at, id) else {
            return false;
        };
        self.entries[i].live = false;
        self.live -= 1;
        while self.entries.front().is_some_and(|e| !e.live) {
            self.entries.pop_front();
        }
        if self.entries.len() > 2 * self.live + SLACK {
            self.entries.retain(|e| e.live);
        }
        true
    }

    pub fn contains(&self, at: Instant, id: SendId) -> bool {
        self.find(at, id).is_some()
    }

    /// The earliest deadline.
    pub fn first(&self) -> Option<(Instant, SendId)> {
        self.entries.front().map(Entry::key)
    }

    /// The earliest deadline after `key` (in `(at, id)` order).
    pub fn first_after(&self, key: (Instant, SendId)) -> Option<(Instant, SendId)> {
        let from = self.entries.partition_point(|e| e.key() <= key);
        self.entries.range(from..).find(|e| e.live).map(Entry::key)
    }

    /// Live deadlines at or before `by`.
    pub fn count_until(&self, by: Instant) -> usize {
        self.entries
            .iter()
            .take_while(|e| e.at <= by)
            .filter(|e| e.live)
            .count()
    }

    fn find(&self, at: Instant, id: SendId) -> Option<usize> {
        // Sends mostly end oldest first: the front, without a search.
        let i = match self.entries.front() {
            Some(e) if e.key() == (at, id) => 0,
            _ => self.entries.partition_point(|e| e.key() < (at, id)),
        };
        self.entries
            .get(i)
            .filter(|e| e.live && e.key() == (at, id))
            .map(|_| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    /// Random inserts (mostly in order, some not) and removals (mostly of the earliest,
    /// some anywhere) agree with a `BTreeSet` at every step, and the deque never holds
    /// more than twice the live entries plus the slack.
    #[test]
    fn agrees_with_an_ordered_set() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        let mut model: BTreeSet<(Instant, SendId)> = BTreeSet::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for id in 0..20_000u64 {
            let at = if rand(10) == 0 {
                t0 + Duration::from_millis(rand(id + 1))
            } else {
                t0 + Duration::from_millis(id)
            };
            d.insert(at, SendId(id));
            model.insert((at, SendId(id)));
            for _ in 0..rand(3) {
                let victim = if rand(4) == 0 {
                    let skip = rand(model.len() as u64 + 1) as usize;
                    model.iter().nth(skip).copied()
                } else {
                    model.first().copied()
                };
                if let Some((at, id)) = victim {
                    assert!(d.remove(at, id));
                    assert!(!d.remove(at, id), "removed twice");
                    model.remove(&(at, id));
                }
            }
            assert_eq!(d.len(), model.len());
            assert_eq!(d.first(), model.first().copied());
            assert!(d.entries.len() <= 2 * d.len() + SLACK);
            if let Some(&k) = model.iter().nth(model.len() / 2) {
                let want = model.range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded));
                assert_eq!(d.first_after(k), want.copied().next());
                assert!(d.contains(k.0, k.1));
                assert_eq!(
                    d.count_until(k.0),
                    model.range(..=(k.0, SendId(u64::MAX))).count()
                );
            }
        }
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        d.insert(t0, SendId(1));
        assert!(!d.remove(t0, SendId(2)));
        assert!(!d.remove(t0 + Duration::from_secs(1), SendId(1)));
        assert_eq!(d.len(), 1);
        assert_eq!(d.first(), Some((t0, SendId(1))));
        assert!(d.remove(t0, SendId(1)));
        assert_eq!(d.len(), 0);
        assert_eq!(d.first(), None);
    }
}
