//! The peer list: who is known, under which number (`#N`), and which entries may be dropped
//! to make room.
//!
//! * **Numbers.** A peer gets the next number when it is listed and keeps it while it stays
//!   listed; a number is never given again, so `#2` always means the peer the user saw as
//!   `#2` (a peer that leaves and comes back is listed under a new number). The list is
//!   shown in number order, which is the order peers were listed.
//! * **Strangers.** A peer is a *stranger* while it has only ever sent to us: nothing has
//!   been sent to it (see [`PeerList::engage`]). Strangers are kept in the order they were
//!   last heard from (a doubly linked list through their keys: moving one to the back when
//!   it is heard from again costs a few hash look-ups and no allocation), so the one quiet
//!   longest is found at once. Strangers are counted per host bucket, for the per-host cap.
//!
//! Pure bookkeeping: the rules (who may be listed, who is dropped) are the table's.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use crate::identity::{PeerKey, PeerMap};

use super::Peer;

/// A listed peer that has only ever sent to us.
#[derive(Debug, Clone)]
struct Stranger {
    /// When it was listed or last sent us a message.
    heard: Instant,
    /// The host bucket it counts against (`identity::limit_bucket` of its host).
    bucket: IpAddr,
    /// Neighbours in last-heard order (`prev` heard earlier).
    prev: Option<PeerKey>,
    next: Option<PeerKey>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct PeerList {
    peers: PeerMap<Peer>,
    /// Number → key: the list order, and `#N` look-ups.
    order: BTreeMap<usize, PeerKey>,
    /// The number the next listed peer gets (`#1` first).
    next_number: usize,
    strangers: PeerMap<Stranger>,
    /// The stranger heard from longest ago, and the one heard from last.
    quietest: Option<PeerKey>,
    loudest: Option<PeerKey>,
    strangers_per_bucket: HashMap<IpAddr, usize>,
}

impl PeerList {
    pub fn new() -> Self {
        PeerList {
            next_number: 1,
            ..PeerList::default()
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn get(&self, key: &PeerKey) -> Option<&Peer> {
        self.peers.get(key)
    }

    pub fn get_mut(&mut self, key: &PeerKey) -> Option<&mut Peer> {
        self.peers.get_mut(key)
    }

    pub fn contains(&self, key: &PeerKey) -> bool {
        self.peers.contains_key(key)
    }

    /// The peers in number order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&PeerKey, &Peer)> + Clone {
        self.order.values().map(|k| (k, &self.peers[k]))
    }

    /// The peer listed as `#number`, if it is still listed.
    pub fn by_number(&self, number: usize) -> Option<(PeerKey, &Peer)> {
        let key = self.order.get(&number)?;
        Some((*key, &self.peers[key]))
    }

    /// Was `number` ever given (the peer may have left since)?
    pub fn was_given(&self, number: usize) -> bool {
        number > 0 && number < self.next_number
    }

    /// Lists `peer` under the next number, which is returned (its `number` field is set
    /// here). `stranger`: it only sent to us, heard from at that instant, counted against
    /// that host bucket. The key must not be listed yet.
    pub fn insert(
        &mut self,
        key: PeerKey,
        mut peer: Peer,
        stranger: Option<(Instant, IpAddr)>,
    ) -> usize {
        debug_assert!(!self.peers.contains_key(&key), "{key} listed twice");
        let number = self.next_number;
        self.next_number += 1;
        peer.number = number;
        self.peers.insert(key, peer);
        self.order.insert(number, key);
        if let Some((heard, bucket)) = stranger {
            let entry = Stranger {
                heard,
                bucket,
                prev: None,
                next: None,
            };
            self.strangers.insert(key, entry);
            self.link_last(key);
            *self.strangers_per_bucket.entry(bucket).or_insert(0) += 1;
        }
        number
    }

    /// Removes a peer (it left, or is dropped to make room).
    pub fn remove(&mut self, key: &PeerKey) -> Option<Peer> {
        let peer = self.peers.remove(key)?;
        self.order.remove(&peer.number);
        self.engage(key);
        Some(peer)
    }

    /// The stranger `key` sent us something at `now`: it becomes the last to be dropped.
    /// Nothing for a peer that is not a stranger.
    pub fn heard(&mut self, key: &PeerKey, now: Instant) {
        let Some(s) = self.strangers.get_mut(key) else {
            return;
        };
        s.heard = now;
        if self.loudest != Some(*key) {
            self.unlink(key);
            self.link_last(*key);
        }
    }

    /// `key` is no longer a stranger (something was sent to it), or it left.
    pub fn engage(&mut self, key: &PeerKey) {
        if !self.strangers.contains_key(key) {
            return;
        }
        self.unlink(key);
        let Some(s) = self.strangers.remove(key) else {
            return;
        };
        if let Some(n) = self.strangers_per_bucket.get_mut(&s.bucket) {
            *n -= 1;
            if *n == 0 {
                self.strangers_per_bucket.remove(&s.bucket);
            }
        }
    }

    pub fn is_stranger(&self, key: &PeerKey) -> bool {
        self.strangers.contains_key(key)
    }

    /// The stranger heard from longest ago, and when.
    pub fn quietest_stranger(&self) -> Option<(PeerKey, Instant)> {
        let key = self.quietest?;
        Some((key, self.strangers[&key].heard))
    }

    /// How many strangers count against host bucket `bucket`.
    pub fn strangers_in(&self, bucket: IpAddr) -> usize {
        self.strangers_per_bucket.get(&bucket).copied().unwrap_or(0)
    }

    fn unlink(&mut self, key: &PeerKey) {
        let Some(s) = self.strangers.get(key) else {
            return;
        };
        let (prev, next) = (s.prev, s.next);
        match prev {
            Some(p) => self.strangers.get_mut(&p).expect("linked").next = next,
            None => self.quietest = next,
        }
        match next {
            Some(n) => self.strangers.get_mut(&n).expect("linked").prev = prev,
            None => self.loudest = prev,
        }
        let s = self.strangers.get_mut(key).expect("present");
        s.prev = None;
        s.next = None;
    }

    fn link_last(&mut self, key: PeerKey) {
        let last = self.loudest;
        match last {
            Some(l) => self.strangers.get_mut(&l).expect("linked").next = Some(key),
            None => self.quietest = Some(key),
        }
        let s = self.strangers.get_mut(&key).expect("present");
        s.prev = last;
        s.next = None;
        self.loudest = Some(key);
    }

    /// Checks the bookkeeping; used by `PeerTable::check_invariants`.
    pub fn check(&self) -> Result<(), String> {
        if self.order.len() != self.peers.len() {
            return Err(format!(
                "{} peers, {} numbers",
                self.peers.len(),
                self.order.len()
            ));
        }
        for (number, key) in &self.order {
            match self.peers.get(key) {
                Some(p) if p.number == *number => {}
                other => return Err(format!("#{number} is {key}, which is {other:?}")),
            }
            if *number == 0 || *number >= self.next_number {
                return Err(format!("#{number} was never given"));
            }
        }
        // Walk the strangers from the quietest: every one once, in last-heard order.
        let mut seen = 0;
        let mut prev: Option<PeerKey> = None;
        let mut at = self.quietest;
        let mut per_bucket: HashMap<IpAddr, usize> = HashMap::new();
        while let Some(key) = at {
            let Some(s) = self.strangers.get(&key) else {
                return Err(format!("stranger {key} is linked but not recorded"));
            };
            if !self.peers.contains_key(&key) {
                return Err(format!("stranger {key} is not listed"));
            }
            if s.prev != prev {
                return Err(format!(
                    "stranger {key}: back link {:?}, not {prev:?}",
                    s.prev
                ));
            }
            seen += 1;
            if seen > self.strangers.len() {
                return Err("the strangers' list has a cycle".to_owned());
            }
            *per_bucket.entry(s.bucket).or_insert(0) += 1;
            prev = Some(key);
            at = s.next;
        }
        if prev != self.loudest || seen != self.strangers.len() {
            return Err(format!(
                "{seen} strangers linked, {} recorded",
                self.strangers.len()
            ));
        }
        if per_bucket != self.strangers_per_bucket {
            return Err(format!(
                "strangers per host {:?}, counted {per_bucket:?}",
                self.strangers_per_bucket
            ));
        }
        Ok(())
    }
}
