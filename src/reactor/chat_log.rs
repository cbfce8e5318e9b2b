//! `--log FILE`: an append-only chat log, like irssi's autolog.
//!
//! Each event shown is appended as its human line (sanitised, as on the screen), each line
//! stamped with the local date and time (`2026-12-06 14:03:07 Message from bob [...]: hi`).
//! Peer lists and help are replies to the user, not part of the chat, and are left out.
//!
//! The file is opened `O_APPEND | O_CREAT`, mode 0600 (a chat is private), and
//! non-blocking, so that a FIFO nobody reads fails instead of stalling the loop; a regular
//! file's write does not wait for long. The first write that fails (a full disk...) is
//! reported once by the reactor, and logging stops; the chat goes on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::Event;
use crate::render;

#[derive(Debug)]
pub struct ChatLog {
    path: PathBuf,
    /// `None` once a write has failed: logging has stopped.
    file: Option<File>,
    /// One event's lines, rendered then stamped; reused.
    rendered: Vec<u8>,
    out: Vec<u8>,
}

impl ChatLog {
    /// Opens (creating it 0600 if need be) `path` for appending.
    pub fn open(path: &Path) -> io::Result<ChatLog> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        Ok(ChatLog {
            path: path.to_owned(),
            file: Some(file),
            rendered: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Whether `event` belongs in the chat log.
    fn logged(event: &Event) -> bool {
        !matches!(event, Event::Peers(_) | Event::ConnectCandidates(_))
    }

    /// Appends `event`, stamped with `at` in local time. The first write that fails stops
    /// logging, and its error is returned, worded for the user (said once: later events
    /// are not written and return `None`).
    pub fn record(&mut self, at: SystemTime, event: &Event) -> Option<String> {
        let file = self.file.as_mut()?;
        if !ChatLog::logged(event) {
            return None;
        }
        self.rendered.clear();
        render::human(event, &mut self.rendered);
        self.out.clear();
        let stamp = local_stamp(at);
        for line in self.rendered.split_inclusive(|&b| b == b'\n') {
            self.out.extend_from_slice(stamp.as_bytes());
            self.out.push(b' ');
            self.out.extend_from_slice(line);
        }
        let e = file.write_all(&self.out).err()?;
        self.file = None;
        Some(format!(
            "cannot write the chat log {} ({e}): logging stopped, the chat goes on",
            self.path.display()
        ))
    }
}

/// `YYYY-MM-DD HH:MM:SS` in local time (UTC if the time cannot be converted).
pub fn local_stamp(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as libc::time_t,
        Err(_) => 0,
    };
    // SAFETY: localtime_r reads the time_t we own and fills the tm we own; it keeps
    // neither pointer. A zeroed tm is a valid value to start from.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            libc::gmtime_r(&secs, &mut tm);
        }
        tm
    };
    format_stamp(&tm)
}

fn format_stamp(tm: &libc::tm) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PeerView, Via};
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("p2pchat-chatlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn a_stamp_is_the_date_and_time() {
        // SAFETY: a zeroed tm is valid; the fields are set below.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        (tm.tm_year, tm.tm_mon, tm.tm_mday) = (126, 11, 6);
        (tm.tm_hour, tm.tm_min, tm.tm_sec) = (9, 5, 7);
        assert_eq!(format_stamp(&tm), "2026-12-06 09:05:07");
        let now = local_stamp(SystemTime::now());
        assert_eq!(now.len(), 19, "{now}");
    }

    #[test]
    fn events_are_appended_stamped_and_private() {
        let path = temp("chat.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut log = ChatLog::open(&path).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let bob = PeerView::new(Some("bob\u{a0}".into()), "127.0.0.1:9001".parse().unwrap());
        let msg = Event::Message {
            from: bob,
            text: "hi\u{1b}[2J".into(),
            cut: None,
            via: Via::Clear,
        };
        assert_eq!(log.record(at, &msg), None);
        assert_eq!(log.record(at, &Event::Peers(vec![])), None);
        assert_eq!(log.record(at, &Event::Info("a\nb".into())), None);
        let text = std::fs::read_to_string(&path).unwrap();
        let stamp = local_stamp(at);
        assert_eq!(
            text,
            format!(
                "earlier\n{stamp} Message from bob<U+00A0> [127.0.0.1:9001]: hi␛[2J\n\
                 {stamp} a\n{stamp} b\n"
            )
        );
        let _ = std::fs::remove_file(&path);
        // Created 0600 (the file above existed already: check a new one).
        let fresh = temp("fresh.log");
        ChatLog::open(&fresh).unwrap();
        let fresh_mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(fresh_mode & 0o777, 0o600, "{fresh_mode:o}");
        let _ = std::fs::remove_file(&fresh);
    }

    #[test]
    fn a_write_error_is_told_once_and_logging_stops() {
        let Ok(mut log) = ChatLog::open(Path::new("/dev/full")) else {
            eprintln!("SKIPPED: no /dev/full");
            return;
        };
        let e = Event::Info("x".into());
        let first = log.record(SystemTime::now(), &e).expect("an error");
        assert!(
            first.contains("/dev/full") && first.contains("logging stopped"),
            "{first}"
        );
        assert_eq!(log.record(SystemTime::now(), &e), None);
    }
}
