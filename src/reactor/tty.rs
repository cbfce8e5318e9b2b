//! The terminal a person types at: raw mode while the line editor runs, and the settings
//! given back on every way out.
//!
//! [`RawMode::enter`] saves the terminal's settings, turns off line buffering, echo and
//! the keys that send signals (Ctrl-C and Ctrl-D reach the editor as bytes), and asks for
//! bracketed paste. The saved settings are restored when the [`RawMode`] is dropped (quit,
//! a signal, an error: every way `Node::run` returns), and by a panic hook installed on
//! entry, so a panic does not leave the shell without echo. Output processing is left on,
//! so `\n` still starts a new line at the left edge.

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// Asks the terminal to mark pasted text (`ESC[200~` ... `ESC[201~`).
const PASTE_ON: &[u8] = b"\x1b[?2004h";
const PASTE_OFF: &[u8] = b"\x1b[?2004l";

/// The settings to give back, for the panic hook: the terminal's descriptor and what it had.
static SAVED: Mutex<Option<(RawFd, libc::termios)>> = Mutex::new(None);

/// The terminal in raw mode; dropping it gives the terminal its settings back.
#[derive(Debug)]
pub struct RawMode {
    fd: RawFd,
    out: RawFd,
    /// The settings raw mode puts on the terminal, to put them back after a stop.
    raw: libc::termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode; `out` is where the paste-mode requests go.
    pub fn enter(fd: RawFd, out: RawFd) -> io::Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a termios we own.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL | libc::INLCR | libc::ISTRIP);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        *saved_lock() = Some((fd, saved));
        install_panic_hook();
        write_all(out, PASTE_ON);
        Ok(RawMode { fd, out, raw })
    }

    /// Ctrl-Z: gives the terminal its settings back and stops the process, as the shell's
    /// job control would have; returns once the process is continued (`fg`), in raw mode
    /// again.
    pub fn suspend(&self) {
        let saved = *saved_lock();
        if let Some((fd, saved)) = saved {
            write_all(self.out, PASTE_OFF);
            // SAFETY: the settings read from this descriptor at entry.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        }
        // SAFETY: raising a signal on ourselves; SIGTSTP's default action stops us.
        unsafe { libc::raise(libc::SIGTSTP) };
        self.reapply();
    }

    /// Puts raw mode back (after the process was stopped and continued: the shell gave
    /// the terminal its own settings meanwhile).
    pub fn reapply(&self) {
        // SAFETY: settings derived from this descriptor's own at entry.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.raw) };
        write_all(self.out, PASTE_ON);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        write_all(self.out, PASTE_OFF);
        restore();
    }
}

fn saved_lock() -> std::sync::MutexGuard<'static, Option<(RawFd, libc::termios)>> {
    SAVED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Gives the terminal back the settings it had, once.
fn restore() {
    if let Some((fd, saved)) = saved_lock().take() {
        // SAFETY: the settings read from this descriptor by tcgetattr.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            write_all(1, PASTE_OFF);
            write_all(1, b"\r\n");
            restore();
            previous(info);
        }));
    });
}

/// Best effort, for a few bytes of terminal control: a terminal that is gone or full is
/// not waited for.
fn write_all(fd: RawFd, mut bytes: &[u8]) {
    for _ in 0..16 {
        if bytes.is_empty() {
            return;
        }
        // SAFETY: writing from a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// The terminal's width in columns, if `fd` is a terminal that knows it.
pub fn width(fd: RawFd) -> Option<usize> {
    // SAFETY: winsize is plain data; the ioctl fills it or fails.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through a valid pointer.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}
