//! The peer list: who is known, and under which number (`#N`).
//!
//! A peer gets the next number when it is listed and keeps it while it stays listed; a
//! number is never given again, so `#2` always means the peer the user saw as `#2` (a peer
//! that leaves and comes back is listed under a new number). The list is shown in number
//! order, which is the order peers were listed.
//!
//! Pure bookkeeping: the rules (who may be listed) are the table's.

use std::collections::{BTreeMap, HashMap};

use crate::identity::PeerKey;

use super::Peer;

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct PeerList {
    peers: HashMap<PeerKey, Peer>,
    /// Number → key: the list order, and `#N` look-ups.
    order: BTreeMap<usize, PeerKey>,
    /// The number the next listed peer gets (`#1` first).
    next_number: usize,
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
    /// here). The key must not be listed yet.
    pub fn insert(&mut self, key: PeerKey, mut peer: Peer) -> usize {
        debug_assert!(!self.peers.contains_key(&key), "{key} listed twice");
        let number = self.next_number;
        self.next_number += 1;
        peer.number = number;
        self.peers.insert(key, peer);
        self.order.insert(number, key);
        number
    }

    /// Removes a peer (it left).
    pub fn remove(&mut self, key: &PeerKey) -> Option<Peer> {
        let peer = self.peers.remove(key)?;
        self.order.remove(&peer.number);
        Some(peer)
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
        Ok(())
    }
}
