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
    /// Peers warned about a downgrade this run (once each).
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

    /// Trust on first use: `peer` presented `key`. Unknown: recorded and saved.
    pub fn check(&mut self, peer: PeerKey, key: &PublicKey) -> Lookup {
        match self.known.remember(peer, key) {
            Ok(Lookup::Unknown) => {
                self.save();
                Lookup::Unknown
            }
            Ok(l) => l,
            Err(e) => {
                log::warn!("{peer}'s key not recorded: {e}");
                Lookup::Unknown
            }
        }
    }
}
