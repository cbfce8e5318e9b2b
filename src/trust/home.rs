//! The node's directory: where its key, `known_peers` and history live.
//!
//! `--home DIR` when given; otherwise `$XDG_CONFIG_HOME/p2pchat/`, or `~/.config/p2pchat/`
//! when `XDG_CONFIG_HOME` is unset, empty or relative (the XDG Base Directory spec: "all
//! paths set in these environment variables must be absolute ... a relative path ...
//! should be ignored"). The directory is created 0700 (parents as needed, with the
//! default mode). An existing directory that group or others can write to is refused:
//! whoever can write there can replace `known_peers` (and so the keys this node trusts).

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::FileError;

/// The node's directory, resolved and created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

/// Why the node's directory cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum HomeError {
    /// Neither `--home`, an absolute `XDG_CONFIG_HOME` nor `HOME` says where it is.
    NoHome,
    /// The directory could not be created or examined.
    File(FileError),
    /// The path exists and is not a directory.
    NotADirectory(PathBuf),
    /// Group or others can write to it (`mode` is its permission bits).
    Insecure { path: PathBuf, mode: u32 },
}

impl fmt::Display for HomeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HomeError::NoHome => f.write_str(
                "cannot tell where to keep the node's key: set HOME or XDG_CONFIG_HOME, \
                 or give --home DIR",
            ),
            HomeError::File(e) => e.fmt(f),
            HomeError::NotADirectory(p) => write!(
                f,
                "{} is not a directory: give --home a directory for the node's files",
                p.display()
            ),
            HomeError::Insecure { path, mode } => write!(
                f,
                "{} can be written by other users (mode {mode:04o}), who could replace the \
                 keys this node trusts: run `chmod 700 {}` or give another --home",
                path.display(),
                path.display()
            ),
        }
    }
}

impl std::error::Error for HomeError {}

impl Home {
    /// The directory from `--home` or the environment, created 0700 if missing.
    pub fn resolve(home_flag: Option<PathBuf>) -> Result<Home, HomeError> {
        let dir = Home::locate(home_flag, |name| std::env::var_os(name))?;
        Home::open(dir)
    }

    /// Where the directory is, from `--home` and the environment (`env` reads a
    /// variable): pure, so the rules are unit-tested without touching the process's
    /// environment.
    pub fn locate(
        home_flag: Option<PathBuf>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<PathBuf, HomeError> {
        if let Some(dir) = home_flag {
            return Ok(dir);
        }
        let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
        if let Some(xdg) = absolute(env("XDG_CONFIG_HOME")) {
            return Ok(xdg.join("p2pchat"));
        }
        match absolute(env("HOME")) {
            Some(home) => Ok(home.join(".config").join("p2pchat")),
            None => Err(HomeError::NoHome),
        }
    }

    /// Uses `dir` as the node's directory: creates it 0700 if missing, refuses a file or
    /// a directory others can write to.
    pub fn open(dir: PathBuf) -> Result<Home, HomeError> {
        match std::fs::metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| HomeError::File(FileError::new(&dir, "create", e)))?;
            }
            Err(e) => return Err(HomeError::File(FileError::new(&dir, "examine", e))),
            Ok(meta) if !meta.is_dir() => return Err(HomeError::NotADirectory(dir)),
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o022 != 0 {
                    return Err(HomeError::Insecure { path: dir, mode });
                }
            }
        }
        Ok(Home { dir })
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's static key (see [`super::key`]).
    pub fn key(&self) -> PathBuf {
        self.dir.join("key")
    }

    /// The keys of the peers met (see [`super::known_peers`]).
    pub fn known_peers(&self) -> PathBuf {
        self.dir.join("known_peers")
    }

    /// The editor's input history.
    pub fn history(&self) -> PathBuf {
        self.dir.join("history")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::test_dir::TestDir;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_flag_wins_then_xdg_then_home() {
        let all = [("XDG_CONFIG_HOME", "/x/cfg"), ("HOME", "/home/u")];
        assert_eq!(
            Home::locate(Some("rel/dir".into()), env(&all)).unwrap(),
            PathBuf::from("rel/dir")
        );
        assert_eq!(
            Home::locate(None, env(&all)).unwrap(),
            PathBuf::from("/x/cfg/p2pchat")
        );
        assert_eq!(
            Home::locate(None, env(&[("HOME", "/home/u")])).unwrap(),
            PathBuf::from("/home/u/.config/p2pchat")
        );
    }

    #[test]
    fn a_relative_or_empty_xdg_path_is_ignored() {
        for xdg in ["", "cfg", "./cfg"] {
            assert_eq!(
                Home::locate(None, env(&[("XDG_CONFIG_HOME", xdg), ("HOME", "/h")])).unwrap(),
                PathBuf::from("/h/.config/p2pchat"),
                "{xdg:?}"
            );
        }
        assert!(matches!(
            Home::locate(None, env(&[("XDG_CONFIG_HOME", "cfg")])),
            Err(HomeError::NoHome)
        ));
        assert!(matches!(
            Home::locate(None, env(&[("HOME", "")])),
            Err(HomeError::NoHome)
        ));
    }

    #[test]
    fn the_directory_is_created_0700_and_names_its_files() {
        let t = TestDir::new("home");
        let dir = t.path().join("a").join("p2pchat");
        let home = Home::open(dir.clone()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(home.key(), dir.join("key"));
        assert_eq!(home.known_peers(), dir.join("known_peers"));
        assert_eq!(home.history(), dir.join("history"));
        // Opening it again is fine.
        assert_eq!(Home::open(dir).unwrap(), home);
    }

    #[test]
    fn a_directory_others_can_write_or_a_file_is_refused() {
        let t = TestDir::new("home-bad");
        let dir = t.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Home::open(dir.clone()).unwrap_err();
        assert!(
            matches!(err, HomeError::Insecure { mode: 0o777, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod 700"), "{err}");
        // Readable by others is fine (the key itself is 0600).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Home::open(dir).unwrap();
        let file = t.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(Home::open(file), Err(HomeError::NotADirectory(_))));
    }
}
