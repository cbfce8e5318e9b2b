//! What the simulated peers send: who, how many, in which order, and the exact bytes.
//!
//! Peer `i` is called `p{i}` and listens on `base + i`. Its message number `seq` carries the
//! text `p{i}:{seq}:` padded with `x` to the requested size, sent in the legacy form
//! `127.0.0.1:{base+i} p{i} {text}`, one connection per message. Messages are spread evenly:
//! peer `i` sends `messages / peers` of them, plus one for the first `messages % peers`.

/// The name of simulated peer `i`.
pub fn peer_name(peer: u32) -> String {
    format!("p{peer}")
}

/// The text of message `seq` from `peer`, padded with `x` to at least `size` bytes.
pub fn text(peer: u32, seq: u32, size: usize) -> String {
    let mut t = format!("p{peer}:{seq}:");
    if t.len() < size {
        t.extend(std::iter::repeat_n('x', size - t.len()));
    }
    t
}

/// The legacy wire form: `127.0.0.1:PORT NAME TEXT`.
pub fn payload(port: u16, peer: u32, text: &str) -> Vec<u8> {
    format!("127.0.0.1:{port} p{peer} {text}").into_bytes()
}

/// `(peer, seq)` from a text made by [`text`].
pub fn parse_text(text: &str) -> Option<(u32, u32)> {
    let rest = text.strip_prefix('p')?;
    let mut it = rest.splitn(3, ':');
    let peer = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    it.next()?;
    Some((peer, seq))
}

/// How many messages each peer sends, and where each peer's messages start in a flat
/// numbering of all messages.
#[derive(Debug, Clone)]
pub struct Spread {
    counts: Vec<u32>,
    offsets: Vec<usize>,
}

impl Spread {
    pub fn new(peers: usize, messages: u64) -> Spread {
        let each = (messages / peers as u64) as u32;
        let extra = (messages % peers as u64) as usize;
        let counts: Vec<u32> = (0..peers).map(|i| each + u32::from(i < extra)).collect();
        let mut offsets = Vec::with_capacity(peers);
        let mut at = 0usize;
        for &c in &counts {
            offsets.push(at);
            at += c as usize;
        }
        Spread { counts, offsets }
    }

    pub fn peers(&self) -> usize {
        self.counts.len()
    }

    pub fn count(&self, peer: u32) -> u32 {
        self.counts[peer as usize]
    }

    pub fn total(&self) -> usize {
        self.counts.iter().map(|&c| c as usize).sum()
    }

    /// Index of `(peer, seq)` in the flat numbering, if it is one of the workload's.
    pub fn index(&self, peer: u32, seq: u32) -> Option<usize> {
        let p = peer as usize;
        (p < self.counts.len() && seq < self.counts[p]).then(|| self.offsets[p] + seq as usize)
    }

    /// The order in which sender `thread` of `threads` sends: its peers (every
    /// `threads`-th one) taken round-robin, each peer's messages in sequence order. A peer
    /// belongs to one sender only, so its messages never overlap in time.
    pub fn schedule(&self, thread: usize, threads: usize) -> Vec<(u32, u32)> {
        let mine: Vec<u32> = (thread..self.peers())
            .step_by(threads)
            .map(|p| p as u32)
            .collect();
        let rounds = mine.iter().map(|&p| self.count(p)).max().unwrap_or(0);
        let mut out = Vec::new();
        for seq in 0..rounds {
            for &p in &mine {
                if seq < self.count(p) {
                    out.push((p, seq));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_pads() {
        let t = text(17, 42, 32);
        assert_eq!(t.len(), 32);
        assert!(t.starts_with("p17:42:xx"));
        assert_eq!(parse_text(&t), Some((17, 42)));
        assert_eq!(parse_text(&text(3, 4, 0)), Some((3, 4)));
        assert_eq!(parse_text("hi"), None);
        assert_eq!(parse_text("p1:2"), None);
        assert_eq!(payload(20001, 1, "p1:0:"), b"127.0.0.1:20001 p1 p1:0:");
    }

    #[test]
    fn spread_covers_every_message_once_in_order_per_peer() {
        let s = Spread::new(7, 30);
        assert_eq!(s.total(), 30);
        let mut all = Vec::new();
        for t in 0..3 {
            let sched = s.schedule(t, 3);
            for p in 0..7u32 {
                let seqs: Vec<u32> = sched.iter().filter(|m| m.0 == p).map(|m| m.1).collect();
                assert!(seqs.windows(2).all(|w| w[0] < w[1]));
            }
            all.extend(sched);
        }
        let mut idx: Vec<usize> = all.iter().map(|&(p, q)| s.index(p, q).unwrap()).collect();
        idx.sort();
        assert_eq!(idx, (0..30).collect::<Vec<_>>());
        assert_eq!(s.index(7, 0), None);
        assert_eq!(s.index(0, 5), None);
    }
}
