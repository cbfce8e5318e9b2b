//! Trust on first use, like SSH's `known_hosts`: the key each peer had when first met,
//! and whether the user verified it.
//!
//! A peer is what [`crate::identity`] makes of it: its host (canonical) and its listening
//! port, written as a socket address (`127.0.0.1:9000`, `[2001:db8::1]:9000`). The file
//! is text, one peer a line:
//!
//! ```text
//! # p2pchat known peers: ADDRESS KEY STATE (seen: trusted on first use; verified: compared)
//! 127.0.0.1:9001 8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a seen
//! [2001:db8::7]:9000 de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f verified
//! ```
//!
//! Loading tolerates damage: a line that does not parse (or repeats a peer) is reported
//! with its number and why, kept verbatim in place when the file is saved again, and every
//! good line is used. The file is read up to [`MAX_FILE`] bytes and [`MAX_PEERS`] peers;
//! past either, the rest is reported and left out. Saving writes a temporary file 0600
//! and renames it over the old one.
//!
//! Everything but [`KnownPeers::load`] and [`KnownPeers::save`] is pure.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use super::FileError;
use super::key::PublicKey;
use crate::identity::PeerKey;

/// The most bytes of `known_peers` read.
pub const MAX_FILE: usize = 8 << 20;
/// The most peers kept (a node meets at most its peer list's 10,000 plus the user's sends).
pub const MAX_PEERS: usize = 65_536;

/// What the file says about one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: PublicKey,
    /// The user compared fingerprints (`/verify`).
    pub verified: bool,
}

/// A peer's key as presented on a stream, against what the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Never met: trusted on first use ([`KnownPeers::remember`]).
    Unknown,
    /// The key on record.
    Known { verified: bool },
    /// Another key than the one on record: sends fail with `key_changed` and its messages
    /// are shown marked, until the user runs `/trust` ([`KnownPeers::trust`]).
    Changed {
        old: PublicKey,
        new: PublicKey,
        was_verified: bool,
    },
}

/// A line of the file that was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based; 0 for "the rest of the file" (past a limit).
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "known_peers: {}", self.why)
        } else {
            write!(
                f,
                "known_peers line {}: {} (line ignored)",
                self.line, self.why
            )
        }
    }
}

/// Why a peer cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KnownPeersError {
    /// `remember` or `trust` of a new peer with [`MAX_PEERS`] on record.
    Full,
}

impl fmt::Display for KnownPeersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownPeersError::Full => write!(f, "known_peers holds {MAX_PEERS} peers already"),
        }
    }
}

impl std::error::Error for KnownPeersError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A comment, a blank line, or a bad line: written back as it was.
    Verbatim(String),
    Peer(PeerKey),
}

/// The known peers, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPeers {
    lines: Vec<Line>,
    entries: HashMap<PeerKey, Entry>,
}

const HEADER: &str =
    "# p2pchat known peers: ADDRESS KEY STATE (seen: trusted on first use; verified: compared)";

impl KnownPeers {
    /// No peer known (a new file gets a header comment).
    pub fn new() -> Self {
        KnownPeers {
            lines: vec![Line::Verbatim(HEADER.to_owned())],
            entries: HashMap::new(),
        }
    }

    /// The peers in a file's text, and the lines not used.
    pub fn parse(text: &str) -> (KnownPeers, Vec<BadLine>) {
        let mut kp = KnownPeers {
            lines: Vec::new(),
            entries: HashMap::new(),
        };
        let mut bad = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                kp.lines.push(Line::Verbatim(raw.to_owned()));
                continue;
            }
            if kp.entries.len() >= MAX_PEERS {
                bad.push(BadLine {
                    line: 0,
                    why: "more peers than the limit: the rest of the file was left out",
                });
                break;
            }
            match parse_line(line) {
                Ok((peer, _)) if kp.entries.contains_key(&peer) => {
                    // The first line of a peer stands: a later one cannot change its key.
                    bad.push(BadLine {
                        line: i + 1,
                        why: "this peer is already listed above",
                    });
                    kp.lines.push(Line::Verbatim(raw.to_owned()));
                }
                Ok((peer, entry)) => {
                    kp.entries.insert(peer, entry);
                    kp.lines.push(Line::Peer(peer));
                }
                Err(why) => {
                    bad.push(BadLine { line: i + 1, why });
                    kp.lines.push(Line::Verbatim(raw.to_owned()));
                }
            }
        }
        (kp, bad)
    }

    /// The file's text: every line in order, each peer as it now stands.
    pub fn format(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Verbatim(s) => out.push_str(s),
                Line::Peer(peer) => {
                    let e = &self.entries[peer];
                    out.push_str(&format!(
                        "{} {} {}",
                        peer.0,
                        e.key,
                        if e.verified { "verified" } else { "seen" }
                    ));
                }
            }
            out.push('\n');
        }
        out
    }

    /// The file at `path` (none: no peer known), and the lines not used.
    pub fn load(path: &Path) -> Result<(KnownPeers, Vec<BadLine>), FileError> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((KnownPeers::new(), Vec::new()));
            }
            Err(e) => return Err(FileError::new(path, "open", e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::new(path, "read", e))?;
        let mut cut = None;
        if bytes.len() > MAX_FILE {
            // Keep whole lines only.
            let end = bytes[..MAX_FILE].iter().rposition(|&b| b == b'\n');
            bytes.truncate(end.map_or(0, |e| e + 1));
            cut = Some(BadLine {
                line: 0,
                why: "the file is larger than 8 MiB: the rest was left out",
            });
        }
        let text = String::from_utf8_lossy(&bytes);
        let (kp, mut bad) = KnownPeers::parse(&text);
        bad.extend(cut);
        Ok((kp, bad))
    }

    /// Writes the file at `path`: all at once (temporary file 0600, then renamed).
    pub fn save(&self, path: &Path) -> Result<(), FileError> {
        super::write_private(path, self.format().as_bytes(), true)
    }

    /// What the file says of `peer` presenting `key`.
    pub fn lookup(&self, peer: PeerKey, key: &PublicKey) -> Lookup {
        match self.entries.get(&peer) {
            None => Lookup::Unknown,
            Some(e) if e.key == *key => Lookup::Known {
                verified: e.verified,
            },
            Some(e) => Lookup::Changed {
                old: e.key,
                new: *key,
                was_verified: e.verified,
            },
        }
    }

    /// Trust on first use: records `key` for `peer` if the peer is unknown. Returns the
    /// lookup as it was before, so the caller sees a change and never overwrites one
    /// (`Ok(Lookup::Unknown)` means the file changed and should be saved).
    pub fn remember(&mut self, peer: PeerKey, key: &PublicKey) -> Result<Lookup, KnownPeersError> {
        let before = self.lookup(peer, key);
        if before == Lookup::Unknown {
            self.insert(peer, *key)?;
        }
        Ok(before)
    }

    /// `/trust`: records `key` for `peer` whatever was on record (a changed key becomes the
    /// one on record, unverified).
    pub fn trust(&mut self, peer: PeerKey, key: &PublicKey) -> Result<(), KnownPeersError> {
        match self.entries.get_mut(&peer) {
            Some(e) => {
                if e.key != *key {
                    *e = Entry {
                        key: *key,
                        verified: false,
                    };
                }
                Ok(())
            }
            None => self.insert(peer, *key),
        }
    }

    /// `/verify`, once the user confirmed: marks the key on record verified. False when
    /// the peer has no key on record.
    pub fn verify(&mut self, peer: PeerKey) -> bool {
        match self.entries.get_mut(&peer) {
            Some(e) => {
                e.verified = true;
                true
            }
            None => false,
        }
    }

    /// Forgets `peer` (its line goes). True when it was known.
    pub fn forget(&mut self, peer: PeerKey) -> bool {
        let known = self.entries.remove(&peer).is_some();
        if known {
            self.lines.retain(|l| *l != Line::Peer(peer));
        }
        known
    }

    /// Every peer with a key on record.
    pub fn peers(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.entries.keys().copied()
    }

    /// What the file says of `peer`.
    pub fn get(&self, peer: PeerKey) -> Option<&Entry> {
        self.entries.get(&peer)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, peer: PeerKey, key: PublicKey) -> Result<(), KnownPeersError> {
        if self.entries.len() >= MAX_PEERS {
            return Err(KnownPeersError::Full);
        }
        self.entries.insert(
            peer,
            Entry {
                key,
                verified: false,
            },
        );
        self.lines.push(Line::Peer(peer));
        Ok(())
    }
}

fn parse_line(line: &str) -> Result<(PeerKey, Entry), &'static str> {
    let mut fields = line.split_ascii_whitespace();
    let (Some(addr), Some(key)) = (fields.next(), fields.next()) else {
        return Err("expected ADDRESS KEY STATE");
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| "the address is not IP:PORT ([IPv6]:PORT)")?;
    if addr.port() == 0 {
        return Err("port 0");
    }
    if let SocketAddr::V6(v6) = addr
        && (v6.scope_id() != 0 || v6.flowinfo() != 0)
    {
        return Err("a peer's address has no %zone");
    }
    let key = PublicKey::from_hex(key).ok_or("the key is not 64 hex digits")?;
    let verified = match fields.next() {
        None | Some("seen") => false,
        Some("verified") => true,
        Some(_) => return Err("the state is neither seen nor verified"),
    };
    if fields.next().is_some() {
        return Err("more than three fields");
    }
    Ok((PeerKey(addr), Entry { key, verified }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::test_dir::TestDir;

    fn peer(s: &str) -> PeerKey {
        PeerKey(s.parse().unwrap())
    }

    fn key(b: u8) -> PublicKey {
        PublicKey([b; 32])
    }

    #[test]
    fn first_use_is_remembered_then_known_then_changed() {
        let mut kp = KnownPeers::new();
        let p = peer("127.0.0.1:9001");
        assert_eq!(kp.lookup(p, &key(1)), Lookup::Unknown);
        assert_eq!(kp.remember(p, &key(1)).unwrap(), Lookup::Unknown);
        assert_eq!(kp.lookup(p, &key(1)), Lookup::Known { verified: false });
        assert_eq!(
            kp.remember(p, &key(1)).unwrap(),
            Lookup::Known { verified: false }
        );
        // Another key: reported, and remember never overwrites it.
        let changed = Lookup::Changed {
            old: key(1),
            new: key(2),
            was_verified: false,
        };
        assert_eq!(kp.remember(p, &key(2)).unwrap(), changed);
        assert_eq!(kp.lookup(p, &key(2)), changed);
        // Another port of the same host is another peer.
        assert_eq!(kp.lookup(peer("127.0.0.1:9002"), &key(1)), Lookup::Unknown);
    }

    #[test]
    fn verify_then_trust_after_a_change() {
        let mut kp = KnownPeers::new();
        let p = peer("[2001:db8::1]:9000");
        assert!(!kp.verify(p));
        kp.remember(p, &key(1)).unwrap();
        assert!(kp.verify(p));
        assert_eq!(kp.lookup(p, &key(1)), Lookup::Known { verified: true });
        assert_eq!(
            kp.lookup(p, &key(2)),
            Lookup::Changed {
                old: key(1),
                new: key(2),
                was_verified: true
            }
        );
        kp.trust(p, &key(2)).unwrap();
        assert_eq!(kp.lookup(p, &key(2)), Lookup::Known { verified: false });
        // Trusting the key already on record keeps it verified.
        kp.verify(p);
        kp.trust(p, &key(2)).unwrap();
        assert_eq!(kp.lookup(p, &key(2)), Lookup::Known { verified: true });
        assert!(kp.forget(p));
        assert_eq!(kp.lookup(p, &key(2)), Lookup::Unknown);
        assert!(!kp.format().contains("2001"));
    }

    #[test]
    fn the_file_round_trips_with_comments_and_ipv6_bracketed() {
        let mut kp = KnownPeers::new();
        kp.remember(peer("127.0.0.1:9001"), &key(1)).unwrap();
        kp.remember(peer("[::1]:9002"), &key(2)).unwrap();
        kp.verify(peer("[::1]:9002"));
        let text = kp.format();
        assert_eq!(
            text,
            format!(
                "{HEADER}\n127.0.0.1:9001 {} seen\n[::1]:9002 {} verified\n",
                "01".repeat(32),
                "02".repeat(32)
            )
        );
        let (back, bad) = KnownPeers::parse(&text);
        assert!(bad.is_empty());
        assert_eq!(back, kp);
        assert_eq!(back.format(), text);
    }

    #[test]
    fn bad_lines_are_reported_kept_and_the_good_ones_used() {
        let good = "01".repeat(32);
        let text = format!(
            "# mine\n\
             127.0.0.1:9001 {good} seen\n\
             not-an-address {good}\n\
             127.0.0.1:9002 abcd\n\
             127.0.0.1:9003\n\
             127.0.0.1:9001 {other} verified\n\
             127.0.0.1:9004 {good} maybe\n\
             127.0.0.1:0 {good}\n\
             [fe80::1%2]:9000 {good}\n\
             \n\
             [::1]:9005 {good} verified\n\
             127.0.0.1:9006 {good} seen extra\n",
            other = "02".repeat(32)
        );
        let (kp, bad) = KnownPeers::parse(&text);
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 12]);
        assert_eq!(bad[3].why, "this peer is already listed above");
        assert_eq!(
            bad[0].to_string(),
            "known_peers line 3: the address is not IP:PORT ([IPv6]:PORT) (line ignored)"
        );
        assert_eq!(kp.len(), 2);
        // The first line of a peer stands.
        assert_eq!(
            kp.lookup(peer("127.0.0.1:9001"), &key(1)),
            Lookup::Known { verified: false }
        );
        assert_eq!(
            kp.lookup(peer("[::1]:9005"), &key(1)),
            Lookup::Known { verified: true }
        );
        // Saved again, nothing the user wrote is lost.
        assert_eq!(kp.format(), text);
    }

    #[test]
    fn save_is_atomic_0600_and_load_reads_it_back() {
        use std::os::unix::fs::PermissionsExt;
        let t = TestDir::new("known");
        let path = t.path().join("known_peers");
        let (empty, bad) = KnownPeers::load(&path).unwrap();
        assert!(empty.is_empty() && bad.is_empty());
        let mut kp = KnownPeers::new();
        kp.remember(peer("10.0.0.1:9000"), &key(3)).unwrap();
        kp.save(&path).unwrap();
        kp.verify(peer("10.0.0.1:9000"));
        kp.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (back, bad) = KnownPeers::load(&path).unwrap();
        assert!(bad.is_empty());
        assert_eq!(back, kp);
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_huge_file_is_read_up_to_the_limit() {
        let t = TestDir::new("known-big");
        let path = t.path().join("known_peers");
        let line = format!("127.0.0.1:9001 {} seen\n", "01".repeat(32));
        let comment = format!("# {}\n", "x".repeat(1000));
        let mut text = line.clone();
        while text.len() <= MAX_FILE {
            text.push_str(&comment);
        }
        text.push_str(&line.replace("9001", "9002"));
        std::fs::write(&path, &text).unwrap();
        let (kp, bad) = KnownPeers::load(&path).unwrap();
        assert_eq!(kp.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 0);
        // Too many peers: the rest is left out, reported once.
        let mut many = String::new();
        for i in 0..=MAX_PEERS {
            many.push_str(&format!(
                "10.{}.{}.{}:9000 {} seen\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255,
                "01".repeat(32)
            ));
        }
        let (kp, bad) = KnownPeers::parse(&many);
        assert_eq!(kp.len(), MAX_PEERS);
        assert_eq!(bad.len(), 1);
        let mut kp = kp;
        assert!(matches!(
            kp.remember(peer("1.2.3.4:5"), &key(1)),
            Err(KnownPeersError::Full)
        ));
    }
}
