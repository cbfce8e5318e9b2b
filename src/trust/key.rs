//! The node's static X25519 key, and public keys as peers' identities.
//!
//! The key file is created on first start and never rewritten:
//!
//! ```text
//! # p2pchat node key (X25519). Anyone who reads this file can pose as this node.
//! x25519-private 5f3c...64 hex digits...9a
//! ```
//!
//! Lines starting with `#` are comments; exactly one `x25519-private` line. The file is
//! written 0600 through a temporary file and a link (never readable by others at any
//! moment, never overwriting a key another process just created). On load, a file that
//! group or others can read or write is refused ([`KeyError::Insecure`]: the fix is
//! `chmod 600`), and so is a malformed one ([`KeyError::Malformed`]): it is never
//! overwritten, since it may be the only copy of the node's identity.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::FileError;
use super::fingerprint::Fingerprint;

/// Bytes of an X25519 key, public or private.
pub const KEY_LEN: usize = 32;
/// The largest key file read (it is about 150 bytes).
const MAX_KEY_FILE: u64 = 4096;
const PRIVATE_TAG: &str = "x25519-private";

/// A peer's (or this node's) public X25519 key: its identity on encrypted streams.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// The key from a slice of exactly [`KEY_LEN`] bytes.
    pub fn from_slice(b: &[u8]) -> Option<PublicKey> {
        b.try_into().ok().map(PublicKey)
    }

    /// The key from 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<PublicKey> {
        from_hex(s).map(PublicKey)
    }

    /// 64 lowercase hex digits (the form in `known_peers`).
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// What people compare by voice.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self)
    }

    /// A key of small order: every Diffie-Hellman with it gives the same result whatever
    /// the private key, so it proves nothing and anybody could claim it. Refused as a
    /// peer's static key. (The encodings listed by libsodium's `has_small_order`, the top
    /// bit ignored as X25519 does.)
    pub fn is_weak(&self) -> bool {
        const BLOCKLIST: [[u8; 32]; 7] = [
            [0; 32],
            {
                let mut k = [0; 32];
                k[0] = 1;
                k
            },
            [
                0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
                0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
                0x5f, 0x49, 0xb8, 0x00,
            ],
            [
                0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83,
                0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd,
                0xd0, 0x9f, 0x11, 0x57,
            ],
            high_ff(0xec),
            high_ff(0xed),
            high_ff(0xee),
        ];
        const fn high_ff(first: u8) -> [u8; 32] {
            let mut k = [0xff; 32];
            k[0] = first;
            k[31] = 0x7f;
            k
        }
        let mut k = self.0;
        k[31] &= 0x7f;
        BLOCKLIST.contains(&k)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// The node's static key pair. The private half never leaves this type except to build a
/// Noise session; `Debug` shows only the public half; dropping it zeroes the private half.
pub struct StaticKey {
    private: [u8; KEY_LEN],
    public: PublicKey,
}

impl StaticKey {
    /// A new random key, from the operating system's generator (`/dev/urandom`, which
    /// never blocks once the system has booted).
    pub fn generate() -> Result<StaticKey, KeyError> {
        let mut private = [0u8; KEY_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut private))
            .map_err(|_| KeyError::Random)?;
        Ok(StaticKey::from_private(private))
    }

    /// The key pair of a private key (the public half derived from it).
    pub fn from_private(private: [u8; KEY_LEN]) -> StaticKey {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .expect("the default resolver has X25519");
        dh.set(&private);
        let public = PublicKey::from_slice(dh.pubkey()).expect("32 bytes");
        StaticKey { private, public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn private_bytes(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    /// The node's key at `path`: loaded, or created (and `true` returned) when there is no
    /// file. Never overwrites an existing file, whatever it holds.
    pub fn load_or_create(path: &Path) -> Result<(StaticKey, bool), KeyError> {
        match StaticKey::load(path) {
            Err(KeyError::Missing(_)) => {}
            other => return other.map(|k| (k, false)),
        }
        let key = StaticKey::generate()?;
        match super::write_private(path, key.file_text().as_bytes(), false) {
            Ok(()) => Ok((key, true)),
            // Another process created it first: use that one.
            Err(e) if e.err.kind() == std::io::ErrorKind::AlreadyExists => {
                StaticKey::load(path).map(|k| (k, false))
            }
            Err(e) => Err(KeyError::File(e)),
        }
    }

    /// The node's key at `path`, refused when missing, open to others, or malformed.
    pub fn load(path: &Path) -> Result<StaticKey, KeyError> {
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(path.to_owned()));
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(KeyError::Malformed {
                    path: path.to_owned(),
                    why: "it is a symbolic link",
                });
            }
            Err(e) => return Err(KeyError::File(FileError::new(path, "open", e))),
        };
        let meta = file
            .metadata()
            .map_err(|e| KeyError::File(FileError::new(path, "examine", e)))?;
        if !meta.is_file() {
            return Err(KeyError::Malformed {
                path: path.to_owned(),
                why: "it is not a regular file",
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Insecure {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        (&mut file)
            .take(MAX_KEY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => KeyError::Malformed {
                    path: path.to_owned(),
                    why: "it is not text",
                },
                _ => KeyError::File(FileError::new(path, "read", e)),
            })?;
        if text.len() as u64 > MAX_KEY_FILE {
            return Err(KeyError::Malformed {
                path: path.to_owned(),
                why: "it is too large to be a key file",
            });
        }
        StaticKey::parse(&text).map_err(|why| KeyError::Malformed {
            path: path.to_owned(),
            why,
        })
    }

    /// The key in a key file's text.
    pub fn parse(text: &str) -> Result<StaticKey, &'static str> {
        let mut found = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(hex) = line.strip_prefix(PRIVATE_TAG) else {
                return Err("a line is neither a comment nor the x25519-private line");
            };
            if found.is_some() {
                return Err("it has more than one x25519-private line");
            }
            found = Some(from_hex(hex.trim()).ok_or("the key is not 64 hex digits")?);
        }
        let private = found.ok_or("it has no x25519-private line")?;
        Ok(StaticKey::from_private(private))
    }

    /// The key file's text.
    pub fn file_text(&self) -> String {
        format!(
            "# p2pchat node key (X25519). Anyone who reads this file can pose as this node.\n\
             # public key {}, fingerprint {}\n\
             {PRIVATE_TAG} {}\n",
            self.public,
            self.public.fingerprint(),
            to_hex(&self.private)
        )
    }
}

impl Drop for StaticKey {
    fn drop(&mut self) {
        for b in self.private.iter_mut() {
            // SAFETY: a valid, aligned, exclusive reference to a byte.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKey {{ public: {} }}", self.public)
    }
}

/// Why the node's key cannot be used. Each says which file and what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// There is no key file (`load` only; `load_or_create` creates one).
    Missing(PathBuf),
    /// Group or others may read or write it.
    Insecure {
        path: PathBuf,
        mode: u32,
    },
    /// It is not a key file this version reads.
    Malformed {
        path: PathBuf,
        why: &'static str,
    },
    /// The operating system's random generator failed.
    Random,
    File(FileError),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Missing(p) => write!(f, "no key file at {}", p.display()),
            KeyError::Insecure { path, mode } => write!(
                f,
                "the node's key {} can be read or written by other users (mode {mode:04o}): \
                 refused; run `chmod 600 {}` (and consider the key exposed if others may \
                 have read it: remove it to make a new one, and tell your peers)",
                path.display(),
                path.display()
            ),
            KeyError::Malformed { path, why } => write!(
                f,
                "the node's key {} is not a p2pchat key file ({why}); it was left as it is: \
                 move it away to make a new key, or give another --home",
                path.display()
            ),
            KeyError::Random => f.write_str("the system's random number generator failed"),
            KeyError::File(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for KeyError {}

fn to_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<[u8; KEY_LEN]> {
    let s = s.as_bytes();
    if s.len() != 2 * KEY_LEN {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; KEY_LEN];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::test_dir::TestDir;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_key_is_created_0600_once_then_loaded() {
        let t = TestDir::new("key");
        let path = t.path().join("key");
        let (k1, created) = StaticKey::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(mode(&path), 0o600);
        let (k2, created) = StaticKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.public(), k2.public());
        assert_eq!(StaticKey::load(&path).unwrap().public(), k1.public());
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // Another directory, another key.
        let t2 = TestDir::new("key2");
        let (k3, _) = StaticKey::load_or_create(&t2.path().join("key")).unwrap();
        assert_ne!(k3.public(), k1.public());
    }

    #[test]
    fn a_key_others_can_read_or_write_is_refused_with_the_fix() {
        let t = TestDir::new("key-open");
        let path = t.path().join("key");
        let (k, _) = StaticKey::load_or_create(&path).unwrap();
        for m in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
            let err = StaticKey::load_or_create(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::Insecure { mode, .. } if mode == m),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(StaticKey::load(&path).unwrap().public(), k.public());
    }

    #[test]
    fn a_malformed_key_file_is_refused_and_left_alone() {
        let t = TestDir::new("key-bad");
        let path = t.path().join("key");
        for text in [
            "",
            "# only a comment\n",
            "x25519-private 1234\n",
            "hello\n",
            &format!("x25519-private {}\n", "zz".repeat(32)),
            &format!("x25519-private {0}\nx25519-private {0}\n", "ab".repeat(32)),
        ] {
            let _ = std::fs::remove_file(&path);
            crate::trust::write_private(&path, text.as_bytes(), false).unwrap();
            let err = StaticKey::load_or_create(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::Malformed { .. }),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains("left as it is"), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
        let _ = std::fs::remove_file(&path);
        crate::trust::write_private(&path, &[0xff, 0xfe], false).unwrap();
        assert!(matches!(
            StaticKey::load(&path),
            Err(KeyError::Malformed {
                why: "it is not text",
                ..
            })
        ));
        // A symbolic link is not followed.
        let real = t.path().join("real");
        crate::trust::write_private(&real, b"x", false).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            StaticKey::load(&link),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            StaticKey::load(&t.path().join("none")),
            Err(KeyError::Missing(_))
        ));
    }

    #[test]
    fn the_file_text_round_trips_and_the_public_key_is_derived() {
        let k = StaticKey::from_private([7; 32]);
        let back = StaticKey::parse(&k.file_text()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(back.private_bytes(), k.private_bytes());
        assert!(!format!("{k:?}").contains(&to_hex(&[7; 32])));
        // RFC 7748 section 6.1: Alice's private key and public key.
        let alice =
            from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
        assert_eq!(
            StaticKey::from_private(alice).public().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn weak_keys_are_recognised() {
        assert!(PublicKey([0; 32]).is_weak());
        let mut one = [0; 32];
        one[0] = 1;
        assert!(PublicKey(one).is_weak());
        one[31] = 0x80; // the top bit is ignored by X25519
        assert!(PublicKey(one).is_weak());
        assert!(!StaticKey::from_private([9; 32]).public().is_weak());
        assert_eq!(
            PublicKey::from_hex(&"AB".repeat(32)),
            Some(PublicKey([0xab; 32]))
        );
        assert_eq!(PublicKey::from_hex("ab"), None);
    }
}
