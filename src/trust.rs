//! Private, authenticated streams between p2pchat nodes (PROTOCOL.md, "Encryption
//! (p2pchat extension, planned)"): the node's own key, the keys it has met, and the Noise
//! session that wraps a fast-path stream. Not wired into the reactor yet.
//!
//! * [`home`]: the node's directory (`$XDG_CONFIG_HOME/p2pchat/` or `--home DIR`, 0700)
//!   and the paths of its files.
//! * [`key`]: the node's static X25519 key: created on first start, stored 0600, refused
//!   when others could read or write it. [`key::PublicKey`] is a peer's identity.
//! * [`fingerprint`]: a key as digit groups people can compare by voice.
//! * [`known_peers`]: trust on first use, like SSH's `known_hosts`: which key each peer
//!   (host and listening port) had, and whether the user verified it.
//! * [`session`]: the Noise `XX` handshake and the transport that seals batches of
//!   fast-path frames, sans-IO with injected time, like [`crate::stream`].
//!
//! The pure parts ([`fingerprint`], [`known_peers`]' parse/format/lookup, [`session`])
//! touch no file, socket or clock. [`home`], [`key`] and the `load`/`save` of
//! [`known_peers`] are the only file IO, done once at start-up and after `/trust` or
//! `/verify` (a few hundred bytes, so done in place by the reactor's thread).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub mod fingerprint;
pub mod home;
pub mod key;
pub mod known_peers;
pub mod session;

/// An IO error with the file it concerns and what was being done, for messages that say
/// which file and why ("cannot create /x/key: permission denied").
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub doing: &'static str,
    pub err: io::Error,
}

impl FileError {
    pub(crate) fn new(path: &Path, doing: &'static str, err: io::Error) -> Self {
        FileError {
            path: path.to_owned(),
            doing,
            err,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.doing,
            self.path.display(),
            self.err
        )
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.err)
    }
}

/// Writes `bytes` to `path` so that no reader ever sees a partial file and nobody but the
/// owner can read it at any moment: a temporary file beside it, created 0600 (never
/// wider, whatever the umask), written and synced, then moved into place. With
/// `replace` false, an existing `path` is kept and [`io::ErrorKind::AlreadyExists`]
/// returned (two nodes starting at once on one home never overwrite each other's key).
pub(crate) fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<(), FileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()));
    // A temporary file left by a crash of a process that had our pid: ours to remove.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(FileError::new(&tmp, "remove", e));
        }
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| FileError::new(&tmp, "create", e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| FileError::new(&tmp, "write", e));
    drop(file);
    let placed = written.and_then(|()| {
        if replace {
            std::fs::rename(&tmp, path).map_err(|e| FileError::new(path, "replace", e))
        } else {
            // link(2) fails when `path` exists: never overwrites.
            std::fs::hard_link(&tmp, path).map_err(|e| FileError::new(path, "create", e))
        }
    });
    if !replace || placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed?;
    if let Some(dir) = path.parent() {
        // Make the new name durable; a failure here loses nothing already written.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_dir {
    //! Temporary directories for the file tests, without a crate: under the system's
    //! temporary directory, unique per process and test, removed on drop.
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TestDir(PathBuf);

    impl TestDir {
        pub fn new(tag: &str) -> TestDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir()
                .join(format!("p2pchat-trust-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            TestDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
