//! A public key as something two people can compare by voice: four groups of five
//! digits, `30418 77215 06932 51187`.
//!
//! The groups come from BLAKE2s-256 over a fixed label and the 32-byte key: each group is
//! five bytes of the hash (read as a big-endian 40-bit number) modulo 100,000, as in
//! Signal's safety numbers. Four groups carry about 66 bits: finding another key with a
//! given fingerprint takes about 2^66 key generations, out of anyone's reach while the
//! two people compare. Digits over words: they read the same in every language, they have
//! no homophones to confuse on a call, and no word list has to be kept stable.

use std::fmt;

use snow::params::HashChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::key::PublicKey;

/// Groups in a fingerprint.
pub const GROUPS: usize = 4;
/// Digits per group.
pub const GROUP_DIGITS: usize = 5;
/// Hashed before the key, so a fingerprint is never another protocol's hash of it.
const LABEL: &[u8] = b"p2pchat fingerprint v1\0";

/// A key's fingerprint: [`GROUPS`] groups of [`GROUP_DIGITS`] digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u32; GROUPS]);

impl Fingerprint {
    /// The fingerprint of `key`.
    pub fn of(key: &PublicKey) -> Fingerprint {
        let mut h = DefaultResolver
            .resolve_hash(&HashChoice::Blake2s)
            .expect("the default resolver has BLAKE2s");
        h.input(LABEL);
        h.input(&key.0);
        let mut digest = [0u8; 32];
        h.result(&mut digest);
        let mut groups = [0; GROUPS];
        for (g, chunk) in groups.iter_mut().zip(digest.chunks_exact(5)) {
            let n = chunk.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
            *g = (n % 100_000) as u32;
        }
        Fingerprint(groups)
    }

    /// The groups as numbers (each below 100,000).
    pub fn groups(&self) -> [u32; GROUPS] {
        self.0
    }
}

impl fmt::Display for Fingerprint {
    /// `30418 77215 06932 51187`: the form shown, read aloud and put in JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{g:05}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_always_gives_the_same_digits() {
        // Fixed here so that a change of hash, label or layout cannot go unnoticed: every
        // fingerprint a user ever compared would change with it.
        let fp = Fingerprint::of(&PublicKey([0x42; 32])).to_string();
        assert_eq!(fp, Fingerprint::of(&PublicKey([0x42; 32])).to_string());
        assert_eq!(fp.len(), GROUPS * GROUP_DIGITS + GROUPS - 1);
        assert!(
            fp.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_eq!(fp, KNOWN);
    }

    /// The fingerprint of the key of 32 bytes 0x42, as this version computes it.
    const KNOWN: &str = "26873 78062 17923 24132";

    #[test]
    fn one_bit_of_the_key_changes_the_digits() {
        let base = PublicKey([0x42; 32]);
        let fp = Fingerprint::of(&base);
        for byte in 0..32 {
            for bit in 0..8 {
                let mut k = base;
                k.0[byte] ^= 1 << bit;
                let other = Fingerprint::of(&k);
                // Every group changes but with a chance of 1e-5 each: at least three of four
                // do for all 256 flips of this key.
                let same = fp.0.iter().zip(other.0).filter(|(a, b)| **a == *b).count();
                assert!(same <= 1, "bit {byte}.{bit}: {fp} / {other}");
            }
        }
    }
}
