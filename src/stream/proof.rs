//! What this node knows about whether a peer's listener speaks the fast path, how it
//! asks, and when it forgets (PROTOCOL.md, "Fast path", "Proof").
//!
//! **The probe** is the one thing every legacy program ignores in silence: an empty
//! connection. The sender connects to the peer's listening port, writes nothing, shuts
//! down its sending side at once, and reads until the peer closes (at most
//! [`MAX_REPLY`] bytes, within `probe_timeout`). A legacy receiver reads zero bytes and
//! closes: no output, no state. A p2pchat receiver with the fast path, on a connection
//! that ended (FIN) without a byte, writes [`reply`] before closing. Exactly those bytes
//! prove the peer; anything else (nothing, other bytes, too many) says legacy.
//!
//! **Freshness.** A proof is for the process that gave it. Stream bytes (not UTF-8) go only
//! on a connection opened within `fresh_for` of a proof, and then for that connection's
//! life (a live TCP connection cannot outlive the process at its end). Once the stream
//! closes, the next one needs a new probe: a peer restarted as a legacy program on the
//! same port never gets a byte it would choke on.
//!
//! **Forgetting.** The proof goes when the peer leaves (`exit`), when a stream attempt
//! fails (connection error, Refuse, no Welcome, broken protocol), and when a re-probe
//! says legacy. A legacy verdict is asked again after `legacy_recheck` (the peer may have
//! been replaced by a p2pchat node).

use std::time::{Duration, Instant};

/// The proof's fixed part: `p2pchat-fast/` then the receiver's highest version in decimal
/// and `\n`. Plain ASCII: even a program that read it by mistake could print it.
pub const REPLY_PREFIX: &[u8] = b"p2pchat-fast/";
/// The highest proof version this code answers and understands: 1, the fast path; 2,
/// the fast path and encrypted streams (PROTOCOL.md, "Encryption"). A stream's Hello
/// still says the fast path's own version ([`super::frame::VERSION`]).
pub const VERSION: u8 = 2;
/// A probe reads at most this many bytes; a longer answer is not a proof.
pub const MAX_REPLY: usize = 32;

/// The proof a receiver speaking up to `version` writes on an empty connection.
pub fn reply(version: u8) -> Vec<u8> {
    let mut out = REPLY_PREFIX.to_vec();
    out.extend_from_slice(version.to_string().as_bytes());
    out.push(b'\n');
    out
}

/// The version a probe's whole answer proves, if it is a proof.
pub fn parse_reply(answer: &[u8]) -> Option<u8> {
    let digits = answer.strip_prefix(REPLY_PREFIX)?.strip_suffix(b"\n")?;
    let plain = !digits.is_empty()
        && digits.len() <= 3
        && digits.iter().all(u8::is_ascii_digit)
        && digits[0] != b'0';
    if !plain {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The proof's timings.
#[derive(Debug, Clone, Copy)]
pub struct ProofConfig {
    /// A probe's answer (the peer's close) must come within this.
    pub probe_timeout: Duration,
    /// A stream may be opened this long after the proof.
    pub fresh_for: Duration,
    /// A legacy verdict is asked again after this.
    pub legacy_recheck: Duration,
    /// After a probe or stream attempt failed, the next probe waits this long.
    pub retry_after: Duration,
}

impl Default for ProofConfig {
    fn default() -> Self {
        ProofConfig {
            probe_timeout: Duration::from_secs(5),
            fresh_for: Duration::from_secs(2),
            legacy_recheck: Duration::from_secs(600),
            retry_after: Duration::from_secs(30),
        }
    }
}

/// What is known of a peer, for `/peers` and `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unknown,
    /// Speaks the fast path at this version (the lower of its and ours).
    Proven(u8),
    Legacy,
}

/// How to send a peer's next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// One connection per message, as today.
    Legacy,
    /// On the stream at this version: the open one, or a new one opened now.
    Stream(u8),
    /// A re-probe of a peer that spoke the fast path is out: hold the message until
    /// its answer or `poll_timeout`. (The peer table also holds messages to a peer
    /// never asked, [`PeerProof::unasked`], for its first probe.)
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unknown {
        retry_at: Option<Instant>,
    },
    Probing {
        deadline: Instant,
        had: Option<u8>,
    },
    /// Proven; fresh until `fresh_until` (`None`: stale, a stream closed since).
    Proven {
        version: u8,
        fresh_until: Option<Instant>,
    },
    /// A stream connection opened on a fresh proof is open: it is the proof.
    Streaming {
        version: u8,
    },
    Legacy {
        recheck_at: Instant,
    },
}

/// One peer's proof. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProof {
    state: State,
}

impl Default for PeerProof {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerProof {
    pub fn new() -> Self {
        PeerProof {
            state: State::Unknown { retry_at: None },
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self.state {
            State::Unknown { .. } | State::Probing { had: None, .. } => Verdict::Unknown,
            State::Probing { had: Some(v), .. }
            | State::Proven { version: v, .. }
            | State::Streaming { version: v } => Verdict::Proven(v),
            State::Legacy { .. } => Verdict::Legacy,
        }
    }

    /// How to send the next message at `now`.
    pub fn route(&self, now: Instant) -> Route {
        match self.state {
            State::Streaming { version } => Route::Stream(version),
            State::Proven {
                version,
                fresh_until: Some(t),
            } if now < t => Route::Stream(version),
            State::Proven { .. } | State::Probing { had: Some(_), .. } => Route::Wait,
            State::Unknown { .. } | State::Probing { had: None, .. } | State::Legacy { .. } => {
                Route::Legacy
            }
        }
    }

    /// Nothing known and nothing failed yet: never asked, or the first probe is out.
    pub fn unasked(&self) -> bool {
        matches!(
            self.state,
            State::Unknown { retry_at: None } | State::Probing { had: None, .. }
        )
    }

    /// A probe is out, or one is due now ([`PeerProof::wants_probe`]): what is sent
    /// now can wait for its answer instead of going by legacy beside it.
    pub fn asking(&self, now: Instant) -> bool {
        matches!(self.state, State::Probing { .. }) || self.wants_probe(now)
    }

    /// Whether to start a probe now (the caller has something to send this peer: a
    /// node never probes a peer it is not writing to). Unknown (and not backing off),
    /// a stale proof, or a legacy verdict due for its recheck.
    pub fn wants_probe(&self, now: Instant) -> bool {
        match self.state {
            State::Unknown { retry_at } => retry_at.is_none_or(|t| t <= now),
            State::Proven { fresh_until, .. } => fresh_until.is_none_or(|t| t <= now),
            State::Legacy { recheck_at } => recheck_at <= now,
            State::Probing { .. } | State::Streaming { .. } => false,
        }
    }

    /// The probe connection is being opened.
    pub fn probe_started(&mut self, now: Instant, cfg: &ProofConfig) {
        let had = match self.state {
            State::Proven { version, .. } => Some(version),
            _ => None,
        };
        let deadline = now + cfg.probe_timeout;
        self.state = State::Probing { deadline, had };
    }

    /// The probe's connection closed after `answer` (everything read). A proof, or legacy.
    pub fn handle_probe_answer(&mut self, answer: &[u8], now: Instant, cfg: &ProofConfig) {
        if !matches!(self.state, State::Probing { .. }) {
            return;
        }
        self.state = match parse_reply(answer) {
            Some(v) => State::Proven {
                version: v.min(VERSION),
                fresh_until: Some(now + cfg.fresh_for),
            },
            None => State::Legacy {
                recheck_at: now + cfg.legacy_recheck,
            },
        };
    }

    /// The probe got no answer (refused, reset, unreachable, its deadline): no verdict.
    pub fn handle_probe_failed(&mut self, now: Instant, cfg: &ProofConfig) {
        if matches!(self.state, State::Probing { .. }) {
            self.forget_for(now, cfg);
        }
    }

    /// A stream connection is being opened on this (fresh) proof.
    pub fn handle_stream_opening(&mut self) {
        if let State::Proven { version, .. } = self.state {
            self.state = State::Streaming { version };
        }
    }

    /// The stream closed cleanly (idle) or broke after its Welcome: the next stream needs
    /// a new probe first.
    pub fn handle_stream_closed(&mut self) {
        if let State::Streaming { version } = self.state {
            self.state = State::Proven {
                version,
                fresh_until: None,
            };
        }
    }

    /// A stream attempt failed (connection error, Refuse, no Welcome, protocol error):
    /// forget the proof; legacy until a probe after `retry_after` says otherwise.
    pub fn handle_stream_failed(&mut self, now: Instant, cfg: &ProofConfig) {
        self.forget_for(now, cfg);
    }

    /// The peer was seen speaking the fast path (an encrypted stream came from its host,
    /// claiming its port): a legacy verdict, or a back-off after a failure, is stale, and the next
    /// message asks again at once (the probe stays the evidence; the stream only says it
    /// is worth asking).
    pub fn handle_hint(&mut self) {
        if matches!(self.state, State::Legacy { .. } | State::Unknown { .. }) {
            self.state = State::Unknown { retry_at: None };
        }
    }

    /// The peer left (its `exit`, or ours): forget everything.
    pub fn handle_peer_left(&mut self) {
        *self = PeerProof::new();
    }

    /// When [`PeerProof::handle_timeout`] has work (a probe's deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Probing { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, cfg: &ProofConfig) {
        if let State::Probing { deadline, .. } = self.state
            && deadline <= now
        {
            self.forget_for(now, cfg);
        }
    }

    fn forget_for(&mut self, now: Instant, cfg: &ProofConfig) {
        self.state = State::Unknown {
            retry_at: Some(now + cfg.retry_after),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A peer whose probe at `t0` answered `answer`.
    fn probed(answer: &[u8], t0: Instant, cfg: &ProofConfig) -> PeerProof {
        let mut p = PeerProof::new();
        p.probe_started(t0, cfg);
        p.handle_probe_answer(answer, t0, cfg);
        p
    }

    /// A peer with a stream open on a proof from `t0`.
    fn streaming(t0: Instant, cfg: &ProofConfig) -> PeerProof {
        let mut p = probed(&reply(1), t0, cfg);
        p.handle_stream_opening();
        p
    }

    #[test]
    fn the_reply_is_plain_ascii_and_exact() {
        assert_eq!(reply(1), b"p2pchat-fast/1\n");
        assert!(reply(255).is_ascii() && reply(255).len() <= MAX_REPLY);
        assert_eq!(parse_reply(b"p2pchat-fast/1\n"), Some(1));
        assert_eq!(parse_reply(b"p2pchat-fast/12\n"), Some(12));
        for not in [
            &b""[..],
            b"p2pchat-fast/1",
            b"p2pchat-fast/1\r\n",
            b"p2pchat-fast/01\n",
            b"p2pchat-fast/0\n",
            b"p2pchat-fast/256\n",
            b"p2pchat-fast/\n",
            b"P2PCHAT-FAST/1\n",
            b"127.0.0.1:9000 bob connected",
            b"p2pchat-fast/1\np2pchat-fast/1\n",
        ] {
            assert_eq!(parse_reply(not), None, "{:?}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn first_contact_goes_legacy_while_the_probe_is_out() {
        let cfg = ProofConfig::default();
        let t0 = Instant::now();
        let mut p = PeerProof::new();
        assert_eq!(p.route(t0), Route::Legacy);
        assert!(p.wants_probe(t0));
        p.probe_started(t0, &cfg);
        assert!(!p.wants_probe(t0));
        assert_eq!(
            p.route(t0),
            Route::Legacy,
            "no verdict yet (the table holds: unasked)"
        );
        p.handle_probe_answer(b"p2pchat-fast/1\n", at(t0, 1), &cfg);
        assert_eq!(p.verdict(), Verdict::Proven(1));
        assert_eq!(p.route(at(t0, 2)), Route::Stream(1));
        // A later version of the peer: we speak ours.
        let q = probed(b"p2pchat-fast/9\n", t0, &cfg);
        assert_eq!(q.verdict(), Verdict::Proven(VERSION));
    }

    #[test]
    fn a_proof_is_fresh_only_briefly_and_a_closed_stream_needs_a_new_one() {
        let cfg = ProofConfig::default();
        let t0 = Instant::now();
        let mut p = probed(&reply(1), t0, &cfg);
        // Too late to open a stream on it: re-probe, and hold messages meanwhile.
        let late = t0 + cfg.fresh_for;
        assert_eq!(p.route(late), Route::Wait);
        assert!(p.wants_probe(late));
        p.probe_started(late, &cfg);
        assert_eq!(p.route(late), Route::Wait);
        p.handle_probe_answer(&reply(1), late, &cfg);
        p.handle_stream_opening();
        // While the stream is open it is the proof, however long.
        assert_eq!(p.route(late + Duration::from_secs(3600)), Route::Stream(1));
        p.handle_stream_closed();
        assert_eq!(p.route(late), Route::Wait);
        assert!(p.wants_probe(late));
        // The peer was replaced by a legacy program: legacy, rechecked much later.
        p.probe_started(late, &cfg);
        p.handle_probe_answer(b"", late, &cfg);
        assert_eq!(p.verdict(), Verdict::Legacy);
        assert_eq!(p.route(late), Route::Legacy);
        assert!(!p.wants_probe(late + cfg.legacy_recheck - Duration::from_millis(1)));
        assert!(p.wants_probe(late + cfg.legacy_recheck));
        // A stream from it says it is worth asking again now, not in ten minutes; what
        // is sent meanwhile waits for that probe.
        p.handle_hint();
        assert!(p.wants_probe(late));
        assert!(p.asking(late));
        assert_eq!(p.verdict(), Verdict::Unknown);
        // A hint is no proof: a streaming peer stays as it is.
        let mut s = streaming(late, &cfg);
        s.handle_hint();
        assert_eq!(s.route(late), Route::Stream(1));
    }

    #[test]
    fn failures_forget_the_proof_and_back_off() {
        let cfg = ProofConfig::default();
        let t0 = Instant::now();
        let mut p = streaming(t0, &cfg);
        p.handle_stream_failed(t0, &cfg);
        assert_eq!(p.verdict(), Verdict::Unknown);
        assert_eq!(p.route(t0), Route::Legacy);
        assert!(!p.wants_probe(t0));
        assert!(p.wants_probe(t0 + cfg.retry_after));
        let mut hinted = p;
        hinted.handle_hint();
        assert!(hinted.wants_probe(t0), "a hint ends the back-off");

        // A probe that gets no answer in time: no verdict, retried later.
        let mut q = PeerProof::new();
        q.probe_started(t0, &cfg);
        assert_eq!(q.poll_timeout(), Some(t0 + cfg.probe_timeout));
        q.handle_timeout(t0 + cfg.probe_timeout, &cfg);
        assert_eq!(q.verdict(), Verdict::Unknown);
        assert_eq!(q.poll_timeout(), None);
        assert!(!q.wants_probe(t0 + cfg.probe_timeout));

        // A stale proof whose re-probe is refused: the held messages go legacy.
        let mut r = streaming(t0, &cfg);
        r.handle_stream_closed();
        r.probe_started(t0, &cfg);
        assert_eq!(r.verdict(), Verdict::Proven(1));
        r.handle_probe_failed(t0, &cfg);
        assert_eq!(r.route(t0), Route::Legacy);

        // The peer leaves: everything is forgotten, a probe may go at once next time.
        r.handle_peer_left();
        assert_eq!(r, PeerProof::new());
        assert!(r.wants_probe(t0));
    }

    #[test]
    fn a_late_answer_after_the_deadline_changes_nothing() {
        let cfg = ProofConfig::default();
        let t0 = Instant::now();
        let mut p = PeerProof::new();
        p.probe_started(t0, &cfg);
        p.handle_timeout(t0 + cfg.probe_timeout, &cfg);
        p.handle_probe_answer(&reply(1), t0 + cfg.probe_timeout, &cfg);
        assert_eq!(p.verdict(), Verdict::Unknown);
    }
}
