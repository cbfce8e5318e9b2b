//! The node's key and the keys it has met (PROTOCOL.md, "Encryption"): loaded once at
//! start-up, `known_peers` saved after every change. The only file IO of the trust
//! layer, done in place (a few hundred bytes).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::identity::PeerKey;
use crate::trust::fingerprint::Fingerprint;
use crate::trust::home::Home;
use crate::trust::key::{PublicKey, StaticKey};
use crate::trust::known_peers::{KnownPeers, Lookup};

/// The node's identity and what it knows of its peers' keys.
pub struct Keys {
    pub home: Home,
    pub key: StaticKey,
    pub public: PublicKey,
    pub known: KnownPeers,
    /// Peers that presented another key than the one on record, with that key: sends to
    /// them fail with `key_changed`, their messages are marked, until `/trust`.
    pub changed: HashMap<PeerKey, PublicKey>,
    /// Peers warned about a downgrade, not since seen on a stream authenticated by the
    /// key on record (warned once per downgrade).
    pub downgrades: HashSet<PeerKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("home", &self.home)
            .field("public", &self.public)
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The home (`--home` or the default), the node's key (made on first start) and
    /// `known_peers` (each bad line logged). An error is the message to quit with.
    pub fn load(home_flag: Option<PathBuf>) -> Result<Keys, String> {
        let home = Home::resolve(home_flag).map_err(|e| e.to_string())?;
        let (key, created) = StaticKey::load_or_create(&home.key()).map_err(|e| e.to_string())?;
        let public = key.public();
        if created {
            log::info!(
                "made this node's key {} (fingerprint {})",
                home.key().display(),
                public.fingerprint()
            );
        }
        let known = match KnownPeers::load(&home.known_peers()) {
            Ok((known, bad)) => {
                for line in bad {
                    log::warn!("{}: {line}", home.known_peers().display());
                }
                known
            }
            Err(e) => return Err(e.to_string()),
        };
        Ok(Keys {
            home,
            key,
            public,
            known,
            changed: HashMap::new(),
            downgrades: HashSet::new(),
        })
    }

    /// The key shown for `peer`: the new one after a change, else the one on record.
    pub fn shown_key(&self, peer: PeerKey) -> Option<&PublicKey> {
        self.changed
            .get(&peer)
            .or(self.known.get(peer).map(|e| &e.key))
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint()
    }

    /// Writes `known_peers` (after a change); a failure is logged, the run goes on with
    /// what it knows in memory.
    pub fn save(&self) {
        if let Err(e) = self.known.save(&self.home.known_peers()) {
            log::warn!("{e}: known peers are remembered for this run only");
        }
    }

    /// Trust on first use: `peer` presented `key`. Unknown: recorded and saved. Known:
    /// a downgrade warned about is warned about again if it happens again.
    pub fn check(&mut self, peer: PeerKey, key: &PublicKey) -> Lookup {
        match self.known.remember(peer, key) {
            Ok(Lookup::Unknown) => {
                self.save();
                Lookup::Unknown
            }
            Ok(l @ Lookup::Known { .. }) => {
                // Encrypted again with the key on record: a later downgrade is warned
                // about anew.
                self.downgrades.remove(&peer);
                l
            }
            Ok(l) => l,
            Err(e) => {
                log::warn!("{peer}'s key not recorded: {e}");
                Lookup::Unknown
            }
        }
    }
}

use super::Node;
use crate::event::Event;
use crate::peer_table::Target;

impl Node {
    /// Fills in the peer list's keys: the fingerprint on record (or the new one after a
    /// change), verified, changed, and whether streams to it are encrypted.
    pub(super) fn fill_keys(&self, rows: &mut [crate::event::PeerRow]) {
        let Some(keys) = &self.keys else {
            return;
        };
        for row in rows {
            let Some(port) = row.peer.port else {
                continue;
            };
            let peer = self.table.key_of(row.peer.ip, port);
            let changed = keys.changed.get(&peer);
            let entry = keys.known.get(peer);
            row.key = crate::event::PeerKeyView {
                fingerprint: keys.shown_key(peer).map(|k| k.fingerprint().to_string()),
                // Only what this node sends now: a key on record alone proves nothing
                // about the peer answering at that address today.
                encrypted: !self.cfg.plaintext
                    && matches!(row.speaks, crate::event::Speaks::P2pchat(v) if v >= 2),
                verified: changed.is_none() && entry.is_some_and(|e| e.verified),
                changed: changed.is_some(),
            };
        }
    }

    /// The fingerprint of `peer`'s key on record (or the new one after a change), for
    /// its `new_peer`, `connected` and `peer_left` events; `None` for a peer with no key
    /// (legacy, unknown), whose events read as before.
    pub(super) fn fingerprint_of(&self, peer: &crate::event::PeerView) -> Option<String> {
        let keys = self.keys.as_ref()?;
        let key = self.table.key_of(peer.ip, peer.port?);
        keys.shown_key(key).map(|k| k.fingerprint().to_string())
    }

    /// `/whoami`.
    pub(super) fn whoami(&mut self) {
        let fp = match &self.keys {
            Some(k) => k.fingerprint().to_string(),
            None => "none (--legacy-only: no key)".to_owned(),
        };
        let text = format!(
            "{}, listening on {}, fingerprint {fp}",
            self.cfg.name, self.local
        );
        self.tell(&Event::Info(text));
    }

    /// `/verify TARGET [yes]`.
    pub(super) fn verify(&mut self, target: &Target, confirmed: bool) {
        let Some((peer, who)) = self.table.resolve_target(target) else {
            return;
        };
        let who = if who == peer.to_string() {
            "the peer".to_owned()
        } else {
            who
        };
        let Some(keys) = self.keys.as_mut() else {
            return self.tell(&Event::Refused("no keys with --legacy-only".to_owned()));
        };
        let reply = if keys.changed.contains_key(&peer) {
            Event::Refused(format!(
                "{who}'s key changed: check the new one with them, then /trust {peer} first"
            ))
        } else {
            match keys.known.get(peer).copied() {
                None => Event::Refused(format!(
                    "no key on record for {who} [{peer}]: it is recorded on the first \
                     encrypted stream (send {who} a message)"
                )),
                Some(_) if confirmed => {
                    keys.known.verify(peer);
                    keys.save();
                    Event::Info(format!("{who} [{peer}]: key verified"))
                }
                Some(e) => Event::Info(format!(
                    "your code: {} / {who}'s code as seen here: {}{}; compare them with {who} \
                     by voice, then /verify {peer} yes",
                    keys.fingerprint(),
                    e.key.fingerprint(),
                    if e.verified { " (verified)" } else { "" }
                )),
            }
        };
        self.tell(&reply);
    }

    /// `/trust TARGET`: accepts the key the peer last presented.
    pub(super) fn trust(&mut self, now: std::time::Instant, target: &Target) {
        let Some((peer, who)) = self.table.resolve_target(target) else {
            return;
        };
        let Some(keys) = self.keys.as_mut() else {
            return self.tell(&Event::Refused("no keys with --legacy-only".to_owned()));
        };
        let Some(new) = keys.changed.remove(&peer) else {
            return self.tell(&Event::Info(format!(
                "nothing to trust: {who}'s key has not changed"
            )));
        };
        if let Err(e) = keys.known.trust(peer, &new) {
            keys.changed.insert(peer, new);
            return self.tell(&Event::Refused(format!("{who}: {e}")));
        }
        keys.save();
        self.table.trust_key(now, peer);
        self.tell(&Event::Info(format!(
            "{who} [{peer}]: key {} trusted; messages go again",
            new.fingerprint()
        )));
    }
}
