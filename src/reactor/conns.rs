//! The open connections: one slab, a generation per slot, and each connection's deadline.
//!
//! A [`ConnId`] is a slab key plus the generation it was issued with, so an event or a
//! deadline for a closed connection can never reach a new one that reused its key. It is
//! also the connection's mio token.

use std::collections::BTreeSet;
use std::time::Instant;

use mio::Token;
use slab::Slab;

/// Generations are 31 bits, so a token never collides with the fixed tokens at the top of
/// the range (listener, stdin...).
const GENERATION_MASK: u32 = 0x7fff_ffff;

/// One connection, for its whole life. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    key: u32,
    generation: u32,
}

impl ConnId {
    pub fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.key as usize)
    }

    /// The id a token stands for (it may be stale: [`Conns::get`] checks).
    pub fn from_token(token: Token) -> ConnId {
        ConnId {
            key: (token.0 & 0xffff_ffff) as u32,
            generation: ((token.0 >> 32) as u32) & GENERATION_MASK,
        }
    }
}

#[derive(Debug)]
struct Slot<T> {
    conn: T,
    generation: u32,
    deadline: Option<Instant>,
}

/// The connections, by [`ConnId`], with their deadlines in time order.
#[derive(Debug)]
pub struct Conns<T> {
    slab: Slab<Slot<T>>,
    deadlines: BTreeSet<(Instant, ConnId)>,
    next_generation: u32,
}

impl<T> Default for Conns<T> {
    fn default() -> Self {
        Conns {
            slab: Slab::new(),
            deadlines: BTreeSet::new(),
            next_generation: 0,
        }
    }
}

impl<T> Conns<T> {
    /// The id the next [`Conns::insert`] will give (to register the socket first).
    pub fn next_id(&self) -> ConnId {
        ConnId {
            key: self.slab.vacant_key() as u32,
            generation: self.next_generation,
        }
    }

    /// Adds a connection under [`Conns::next_id`].
    pub fn insert(&mut self, conn: T, deadline: Option<Instant>) -> ConnId {
        let id = self.next_id();
        self.next_generation = self.next_generation.wrapping_add(1) & GENERATION_MASK;
        let key = self.slab.insert(Slot {
            conn,
            generation: id.generation,
            deadline,
        });
        debug_assert_eq!(key as u32, id.key);
        if let Some(at) = deadline {
            self.deadlines.insert((at, id));
        }
        id
    }

    fn slot(&self, id: ConnId) -> Option<&Slot<T>> {
        self.slab
            .get(id.key as usize)
            .filter(|s| s.generation == id.generation)
    }

    pub fn get(&self, id: ConnId) -> Option<&T> {
        self.slot(id).map(|s| &s.conn)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        self.slab
            .get_mut(id.key as usize)
            .filter(|s| s.generation == id.generation)
            .map(|s| &mut s.conn)
    }

    /// Takes a connection out (its deadline with it); `None` if it is already gone.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slot(id)?;
        if let Some(at) = slot.deadline {
            self.deadlines.remove(&(at, id));
        }
        Some(self.slab.remove(id.key as usize).conn)
    }

    /// Moves a connection's deadline (`None`: it has none).
    pub fn set_deadline(&mut self, id: ConnId, deadline: Option<Instant>) {
        let Some(slot) = self
            .slab
            .get_mut(id.key as usize)
            .filter(|s| s.generation == id.generation)
        else {
            return;
        };
        if slot.deadline == deadline {
            return;
        }
        if let Some(at) = slot.deadline {
            self.deadlines.remove(&(at, id));
        }
        slot.deadline = deadline;
        if let Some(at) = deadline {
            self.deadlines.insert((at, id));
        }
    }

    /// The earliest deadline of any connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|d| d.0)
    }

    /// A connection whose deadline is at or before `now`, taken off the deadline list
    /// (set a new one if it stays open).
    pub fn pop_due(&mut self, now: Instant) -> Option<ConnId> {
        let &(at, id) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.deadlines.pop_first();
        if let Some(slot) = self.slab.get_mut(id.key as usize) {
            slot.deadline = None;
        }
        Some(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slab.iter().map(|(key, s)| {
            let id = ConnId {
                key: key as u32,
                generation: s.generation,
            };
            (id, &s.conn)
        })
    }

    pub fn ids(&self) -> Vec<ConnId> {
        self.iter().map(|(id, _)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stale_id_never_reaches_the_connection_that_reused_its_key() {
        let mut c = Conns::default();
        let a = c.insert("a", None);
        assert_eq!(c.get(a), Some(&"a"));
        assert_eq!(c.remove(a), Some("a"));
        let b = c.insert("b", None);
        assert_eq!(ConnId::from_token(b.token()), b);
        assert_eq!(a.key, b.key, "the key is reused");
        assert_eq!(c.get(a), None);
        assert!(c.get_mut(a).is_none());
        assert_eq!(c.remove(a), None);
        assert_eq!(c.get(ConnId::from_token(a.token())), None);
        assert_eq!(c.get(b), Some(&"b"));
        assert_eq!(c.ids(), [b]);
    }

    #[test]
    fn tokens_never_reach_the_fixed_tokens() {
        let mut c: Conns<()> = Conns {
            next_generation: GENERATION_MASK,
            ..Conns::default()
        };
        let id = c.insert((), None);
        assert!(id.token().0 < usize::MAX - 16);
        assert_eq!(c.next_id().generation, 0, "wraps within 31 bits");
    }

    #[test]
    fn deadlines_come_due_in_order_and_follow_their_connection() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut c = Conns::default();
        let a = c.insert('a', Some(s(3)));
        let b = c.insert('b', Some(s(1)));
        let d = c.insert('d', Some(s(2)));
        assert_eq!(c.next_deadline(), Some(s(1)));
        c.set_deadline(b, Some(s(5)));
        c.remove(d);
        assert_eq!(c.next_deadline(), Some(s(3)));
        assert_eq!(c.pop_due(s(2)), None);
        assert_eq!(c.pop_due(s(4)), Some(a));
        assert_eq!(c.pop_due(s(4)), None, "popped once");
        c.set_deadline(a, Some(s(6)));
        assert_eq!(c.pop_due(s(10)), Some(b));
        assert_eq!(c.pop_due(s(10)), Some(a));
        c.set_deadline(a, None);
        assert_eq!(c.next_deadline(), None);
        // A stale id cannot move the new connection's deadline.
        c.remove(b);
        let e = c.insert('e', Some(s(7)));
        c.set_deadline(b, Some(s(1)));
        assert_eq!(c.next_deadline(), Some(s(7)));
        assert_eq!(c.pop_due(s(7)), Some(e));
    }
}
