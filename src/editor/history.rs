//! The lines the user sent, kept across runs in a private file.
//!
//! Bounded: at most `max` entries (the oldest go first), each at most
//! [`MAX_ENTRY_BYTES`]; no empty entries and no entry equal to the one before it.
//!
//! The file has one entry per line, oldest first, in UTF-8. An entry that holds a line
//! break (a multi-line paste sent at once) stays on one line: `\` is written `\\`, a line
//! feed `\n` and a carriage return `\r`. [`History::save`] replaces the file at once
//! (a private temporary file, then a rename), so a crash never leaves half a history; it
//! creates missing directories private to the user (0700) and the file readable by the
//! user alone (0600).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How many entries a history keeps unless told otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 1000;

/// The longest entry kept, in bytes; a longer line is not kept at all (a cut-off message
/// recalled later would be sent as something the user never wrote).
pub const MAX_ENTRY_BYTES: usize = 4096;

/// The lines sent, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    entries: VecDeque<String>,
    max: usize,
}

impl Default for History {
    /// An empty history of [`DEFAULT_MAX_ENTRIES`].
    fn default() -> Self {
        History::new(DEFAULT_MAX_ENTRIES)
    }
}

impl History {
    /// An empty history that keeps at most `max` entries.
    pub fn new(max: usize) -> Self {
        History {
            entries: VecDeque::new(),
            max,
        }
    }

    /// Adds `line` as the newest entry, unless it is empty (or only white space), longer
    /// than [`MAX_ENTRY_BYTES`], or the same as the newest entry. Drops the oldest entry
    /// when there are more than `max`.
    pub fn push(&mut self, line: &str) {
        if line.trim().is_empty()
            || line.len() > MAX_ENTRY_BYTES
            || self.entries.back().is_some_and(|last| last == line)
            || self.max == 0
        {
            return;
        }
        if self.entries.len() >= self.max {
            self.entries.pop_front();
        }
        self.entries.push_back(line.to_owned());
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(String::as_str)
    }

    /// The entry at `index` (0 is the oldest).
    /// The entries added since this history was `start` (a copy taken when it was
    /// loaded), even if the oldest ones have been pushed out since: what this run typed,
    /// to add to the file as another run left it.
    pub fn added_since<'a>(&'a self, start: &History) -> impl Iterator<Item = &'a str> {
        let old: Vec<&str> = start.entries().collect();
        let now: Vec<&str> = self.entries().collect();
        // The longest end of `start` that this history still begins with.
        let kept = (0..=old.len())
            .find(|&from| now.starts_with(&old[from..]))
            .map_or(0, |from| old.len() - from);
        self.entries().skip(kept)
    }

    pub fn get(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries kept.
    pub fn max(&self) -> usize {
        self.max
    }

    /// `$XDG_STATE_HOME/p2pchat/history`, else `$HOME/.local/state/p2pchat/history`;
    /// `None` when neither variable gives an absolute path. (The XDG Base Directory spec
    /// says a relative `XDG_STATE_HOME` is invalid and to be ignored.)
    pub fn default_path() -> Option<PathBuf> {
        path_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
    }

    /// Reads the history at `path`, keeping its last `max` entries. A missing file is an
    /// empty history; lines that are not UTF-8 are skipped. Only the end of a very large
    /// file is read. Anything but a regular file (a FIFO, a device) is an error, found
    /// without waiting.
    pub fn load(path: &Path, max: usize) -> io::Result<History> {
        let mut history = History::new(max);
        // Non-blocking, so that a FIFO in its place cannot stall the start (the terminal
        // is in raw mode by then: Ctrl-C would not get the user out); only a regular file
        // is read.
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(history),
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        // Each entry takes at most twice its bytes escaped, plus its line feed.
        let enough = (max as u64).saturating_mul(2 * MAX_ENTRY_BYTES as u64 + 1);
        let size = file.metadata()?.len();
        let skip_first = size > enough;
        if skip_first {
            // Start in the middle of a line: the first one read is cut and skipped.
            file.seek(SeekFrom::Start(size - enough))?;
        }
        let mut reader = BufReader::new(file.take(enough));
        let mut line = Vec::new();
        let mut first = true;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if std::mem::take(&mut first) && skip_first {
                continue;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if let Ok(text) = std::str::from_utf8(&line) {
                history.push(&unescape(text));
            }
        }
        Ok(history)
    }

    /// Writes the history to `path`, replacing the file at once. Missing directories are
    /// created with mode 0700; the file gets mode 0600 (whatever the old file had).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("history path {} names no file", path.display()),
            )
        })?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;

        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
        };
        let file = match open() {
            // Left behind by a crash of an earlier run with the same process id.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&temp)?;
                open()?
            }
            other => other?,
        };
        let written = self.write_to(file).and_then(|()| fs::rename(&temp, path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn write_to(&self, file: File) -> io::Result<()> {
        let mut out = io::BufWriter::new(file);
        for entry in &self.entries {
            out.write_all(escape(entry).as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

/// The history path given the values of `XDG_STATE_HOME` and `HOME`.
fn path_from(xdg_state_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |value: Option<OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    let state = absolute(xdg_state_home)
        .or_else(|| absolute(home).map(|home| home.join(".local").join("state")))?;
    Some(state.join("p2pchat").join("history"))
}

/// An entry as one line of the file.
fn escape(entry: &str) -> String {
    let mut out = String::with_capacity(entry.len());
    for c in entry.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// A line of the file as an entry. A `\` before anything else is kept as it is.
fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_a_run_added_is_found_even_after_old_entries_were_pushed_out() {
        let mut start = History::new(3);
        for l in ["a", "b", "c"] {
            start.push(l);
        }
        let mut h = start.clone();
        assert_eq!(h.added_since(&start).count(), 0);
        h.push("d");
        h.push("e");
        // "a" and "b" fell out; what this run typed is d and e.
        assert_eq!(h.added_since(&start).collect::<Vec<_>>(), ["d", "e"]);
        let empty = History::new(3);
        assert_eq!(h.added_since(&empty).collect::<Vec<_>>(), ["c", "d", "e"]);
        let mut full = start.clone();
        for l in ["x", "y", "z"] {
            full.push(l);
        }
        assert_eq!(
            full.added_since(&start).collect::<Vec<_>>(),
            ["x", "y", "z"]
        );
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "p2pchat-history-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            fs::create_dir_all(&dir).expect("a temporary directory");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn push_skips_empty_duplicate_and_oversized_lines() {
        let mut h = History::new(10);
        for line in [
            "",
            "  ",
            "a",
            "a",
            "b",
            "a",
            &"x".repeat(MAX_ENTRY_BYTES + 1),
        ] {
            h.push(line);
        }
        h.push(&"y".repeat(MAX_ENTRY_BYTES));
        let entries: Vec<_> = h.entries().collect();
        assert_eq!(entries[..3], ["a", "b", "a"]);
        assert_eq!(entries.len(), 4);
    }

    #[test]
    fn push_keeps_the_newest_max() {
        let mut h = History::new(3);
        for i in 0..10 {
            h.push(&i.to_string());
        }
        assert_eq!(h.entries().collect::<Vec<_>>(), ["7", "8", "9"]);
        assert_eq!(h.get(0), Some("7"));
        assert_eq!(h.len(), 3);
        let mut none = History::new(0);
        none.push("a");
        assert!(none.is_empty());
    }

    #[test]
    fn default_path_follows_xdg() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            path_from(os("/state"), os("/home/u")),
            Some(PathBuf::from("/state/p2pchat/history"))
        );
        assert_eq!(
            path_from(None, os("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/p2pchat/history"))
        );
        assert_eq!(
            path_from(os("relative/state"), os("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/p2pchat/history")),
            "a relative XDG_STATE_HOME is ignored"
        );
        assert_eq!(
            path_from(os(""), os("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/p2pchat/history"))
        );
        assert_eq!(path_from(None, None), None);
        assert_eq!(path_from(None, os("")), None);
    }

    #[test]
    fn escaping_round_trips() {
        for entry in [
            "plain",
            "two\nlines",
            "back\\slash\\n",
            "\\",
            "cr\r\n",
            "end\\",
        ] {
            let line = escape(entry);
            assert!(!line.contains('\n'), "{line:?}");
            assert_eq!(unescape(&line), entry);
        }
        assert_eq!(unescape("odd \\t escape\\"), "odd \\t escape\\");
    }

    #[test]
    fn save_then_load_round_trips_with_private_modes() {
        let tmp = TempDir::new("round-trip");
        let path = tmp.0.join("state").join("p2pchat").join("history");
        let mut h = History::new(DEFAULT_MAX_ENTRIES);
        for line in [
            "hello",
            "first\nsecond\n\nfourth",
            "a \\n b",
            "中文 👨\u{200d}👩",
        ] {
            h.push(line);
        }
        h.save(&path).expect("saved");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&tmp.0.join("state")), 0o700);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text:?}");
        assert_eq!(History::load(&path, DEFAULT_MAX_ENTRIES).unwrap(), h);

        // Saving again replaces the file and leaves no temporary file behind.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        h.push("more");
        h.save(&path).expect("saved again");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        let loaded = History::load(&path, 2).unwrap();
        assert_eq!(
            loaded.entries().collect::<Vec<_>>(),
            ["中文 👨\u{200d}👩", "more"]
        );
    }

    #[test]
    fn load_of_a_missing_file_is_empty() {
        let tmp = TempDir::new("missing");
        let h = History::load(&tmp.0.join("nope"), 5).unwrap();
        assert!(h.is_empty());
        assert_eq!(h.max(), 5);
    }

    #[test]
    fn load_skips_bad_lines_and_reads_only_the_end_of_a_huge_file() {
        let tmp = TempDir::new("huge");
        let path = tmp.0.join("history");
        let mut bytes = b"ok\n\xff\xfe\n\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'z', 3 * (2 * MAX_ENTRY_BYTES + 1)));
        bytes.extend_from_slice(b"\nlast one\nlast two");
        fs::write(&path, &bytes).unwrap();
        let h = History::load(&path, 2).unwrap();
        assert_eq!(h.entries().collect::<Vec<_>>(), ["last one", "last two"]);
        let h = History::load(&path, 100).unwrap();
        assert_eq!(
            h.entries().collect::<Vec<_>>(),
            ["ok", "last one", "last two"]
        );
    }

    #[test]
    fn save_reports_a_path_it_cannot_write() {
        let tmp = TempDir::new("unwritable");
        let blocker = tmp.0.join("file");
        fs::write(&blocker, "").unwrap();
        let h = History::new(3);
        assert!(h.save(&blocker.join("history")).is_err());
        assert!(h.save(Path::new("/")).is_err());
    }
}
