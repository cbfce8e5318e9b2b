//! A person at a terminal: the node runs on a pseudo-terminal, as in a real session, so it
//! asks for what is missing and shows the menu's prompts. Human output, not `--json`.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(10);

/// The terminal's size in the tests, unless a test resizes it.
const COLS: u16 = 80;
const ROWS: u16 = 24;

/// A node whose stdin, stdout and stderr are one pseudo-terminal.
struct Tty {
    child: Child,
    /// `None` once the terminal has hung up.
    master: Option<File>,
    /// The terminal's other end, kept to read its settings (let go for `wait_end`).
    slave: Option<File>,
    /// Everything written to the terminal, as text.
    screen: Arc<Mutex<String>>,
    /// What a terminal would show: a screen model fed the same bytes.
    vt: Arc<Mutex<vt100::Parser>>,
    /// The terminal's settings before the node started.
    initial: Vec<u8>,
    /// `XDG_STATE_HOME` for this node (its history file), removed at the end.
    home: std::path::PathBuf,
    /// Tells the screen reader to let go of its copy of the master.
    hang_up: Arc<AtomicBool>,
    /// Tells the screen reader to stop reading for now (a terminal paused with Ctrl-S).
    paused: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn nz(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a terminal is at least one cell")
}

fn set_size(fd: i32, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through a valid pointer.
    assert_eq!(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }, 0);
}

/// The terminal's settings (to compare before and after a run).
fn settings(f: &File) -> Vec<u8> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a termios we own.
    assert_eq!(unsafe { libc::tcgetattr(f.as_raw_fd(), &mut t) }, 0);
    let t = [t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag];
    t.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

impl Tty {
    fn spawn(args: &[&str]) -> Tty {
        Tty::spawn_env(args, &[])
    }

    fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Tty {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let home = std::env::temp_dir().join(format!(
            "p2pchat-tty-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&home).unwrap();
        // Both ends close-on-exec (openpty's are not): a master inherited by a child (this
        // node, or one another test starts meanwhile) would keep the terminal from ever
        // hanging up.
        // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on the descriptor it returns,
        // ptsname_r into a buffer we own; results checked.
        let master = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            File::from_raw_fd(fd)
        };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: as above.
        let r = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        assert_eq!(r, 0, "ptsname_r");
        // SAFETY: ptsname_r wrote a NUL-terminated name.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path.to_str().unwrap())
            .expect("open the terminal");
        set_size(master.as_raw_fd(), COLS, ROWS);
        let initial = settings(&slave);
        let mut cmd = common::bin();
        cmd.args(args)
            .env_remove("P2PCHAT_NAME")
            .env_remove("P2PCHAT_PORT")
            .env_remove("NO_COLOR")
            .env("XDG_STATE_HOME", &home)
            .env("TERM", "xterm");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let keep = slave.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let slave = keep;
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        let vt = Arc::new(Mutex::new(vt100::Parser::new(nz(ROWS), nz(COLS), 0)));
        let vt_sink = vt.clone();
        let hang_up = Arc::new(AtomicBool::new(false));
        let stop = hang_up.clone();
        let paused = Arc::new(AtomicBool::new(false));
        let hold = paused.clone();
        let mut reader = master.try_clone().unwrap();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if hold.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
                // Wakes now and then to see whether to let go of the master.
                let mut pfd = libc::pollfd {
                    fd: reader.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, its count is 1.
                if unsafe { libc::poll(&mut pfd, 1, 50) } != 1 {
                    continue;
                }
                // Ends with EIO once the node has gone and the terminal has no other user.
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        vt_sink.lock().unwrap().process(&buf[..n]);
                        sink.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]))
                    }
                }
            }
        });
        Tty {
            child,
            master: Some(master),
            slave: Some(slave),
            screen,
            vt,
            initial,
            home,
            hang_up,
            paused,
            reader: Some(reader),
        }
    }

    /// Closes the terminal as a closed window does: every descriptor of its master.
    fn hang_up(&mut self) {
        self.hang_up.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.master = None;
    }

    /// Waits until the terminal's reader has seen the end of the output (the node and
    /// every other holder of the terminal are gone).
    fn wait_end(&mut self) {
        self.slave = None;
        let until = Instant::now() + SOON;
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) {
            assert!(
                Instant::now() < until,
                "output still open:\n{}",
                self.screen()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn master(&self) -> &File {
        self.master.as_ref().expect("the terminal is open")
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().replace("\r\n", "\n")
    }

    /// Waits until the screen holds `what` after byte `from`; returns where it ends.
    fn wait_for(&self, from: usize, what: &str) -> usize {
        let until = Instant::now() + SOON;
        loop {
            let screen = self.screen();
            if let Some(at) = screen.get(from..).and_then(|s| s.find(what)) {
                return from + at + what.len();
            }
            assert!(
                Instant::now() < until,
                "no {what:?} on the terminal within {SOON:?}; screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.master()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + SOON;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "still running:\n{}", self.screen());
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The screen model: what a person would see.
impl Tty {
    /// The screen's rows, trailing blanks trimmed.
    fn rows(&self) -> Vec<String> {
        let vt = self.vt.lock().unwrap();
        let (_, cols) = vt.screen().size();
        vt.screen()
            .rows(0, cols.get())
            .map(|r| r.trim_end().to_owned())
            .collect()
    }

    /// The row the cursor is on, and its column.
    fn cursor(&self) -> (u16, u16) {
        self.vt.lock().unwrap().screen().cursor_position()
    }

    /// The text of the row the cursor is on (the input line).
    fn input_row(&self) -> String {
        let (row, _) = self.cursor();
        self.rows()[row as usize].clone()
    }

    /// Waits until `pred` holds for the screen's rows; panics with the screen if it does not
    /// within the deadline.
    fn wait_screen(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        let until = Instant::now() + SOON;
        loop {
            let rows = self.rows();
            if pred(&rows) {
                return;
            }
            assert!(
                Instant::now() < until,
                "screen never showed {what} within {SOON:?}:\n{}\ncursor {:?}",
                rows.join("\n"),
                self.cursor()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until some row contains `text`.
    fn wait_row(&self, text: &str) {
        self.wait_screen(&format!("{text:?}"), |rows| {
            rows.iter().any(|r| r.contains(text))
        });
    }

    /// Waits until the input line (the cursor's row) is `text` with the cursor at `col`.
    fn wait_input(&self, text: &str, col: u16) {
        let until = Instant::now() + SOON;
        loop {
            let (row, c) = self.cursor();
            let line = self.rows()[row as usize].clone();
            if line == text.trim_end() && c == col {
                return;
            }
            assert!(
                Instant::now() < until,
                "input line {line:?} cursor {c}, expected {text:?} cursor {col}; screen:\n{}",
                self.rows().join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The terminal's settings now.
    fn settings(&self) -> Vec<u8> {
        settings(self.slave.as_ref().expect("the terminal is held"))
    }

    /// Waits until the terminal's settings are `want`.
    fn wait_settings(&self, what: &str, want: &[u8]) {
        self.wait_screen(what, |_| self.settings() == want);
    }

    /// Types bytes as keys (no newline added).
    fn keys(&self, bytes: &[u8]) {
        self.master().write_all(bytes).unwrap();
    }

    /// The cell at (row, col), for its colours.
    fn cell_fg(&self, row: u16, col: u16) -> vt100::Color {
        let vt = self.vt.lock().unwrap();
        vt.screen().cell(row, col).map(|c| c.fgcolor()).unwrap()
    }

    /// Resizes the terminal as a window manager does, and tells the node (the node is not
    /// the terminal's session leader here, so the kernel does not).
    fn resize(&self, cols: u16, rows: u16) {
        set_size(self.master().as_raw_fd(), cols, rows);
        self.vt
            .lock()
            .unwrap()
            .screen_mut()
            .set_size(nz(rows), nz(cols));
        common::signal(&self.child, libc::SIGWINCH);
    }

    /// The node's port, from the `Server listening on port N` line.
    fn port(&self) -> u16 {
        let at = self.wait_for(0, "Server listening on port ");
        self.screen()[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port()).parse().unwrap()
    }
}

#[test]
fn name_and_port_are_asked_for_on_a_terminal() {
    let mut t = Tty::spawn(&["--bind", "127.0.0.1"]);
    let at = t.wait_for(0, "Enter your name (without spaces): ");
    t.type_line("alice");
    t.wait_for(at, "Enter your port number: ");
    t.type_line("0");
    assert_ne!(t.port(), 0, "the real port is shown");
    t.wait_input("> ", 2);
    t.keys(b"0\r");
    assert!(t.wait_exit().success());
}

#[test]
fn a_name_with_spaces_is_asked_for_again() {
    let mut t = Tty::spawn(&["--bind", "127.0.0.1", "--port", "0"]);
    let at = t.wait_for(0, "Enter your name (without spaces): ");
    t.type_line("two words");
    t.wait_for(at, "Enter your name (without spaces): ");
    t.type_line("one");
    t.wait_input("> ", 2);
}

/// The answer to a menu choice is shown above the input line, and once the user quits
/// the input line is gone for good.
#[test]
fn menu_answers_come_above_the_input_line_and_quit_leaves_no_input_line() {
    let mut t = editor_node(&[]);
    t.keys(b"2\r");
    t.wait_row("No active peers.");
    t.wait_input("> ", 2);
    t.keys(b"3\r");
    t.wait_row("No peers remaining for connection.");
    t.wait_input("> ", 2);
    t.keys(b"0\r");
    t.wait_row("Exiting...");
    assert!(t.wait_exit().success());
    t.wait_end();
    let rows = t.rows();
    let exiting = rows.iter().rposition(|r| r.contains("Exiting...")).unwrap();
    assert!(
        rows[exiting + 1..].iter().all(|r| r.is_empty()),
        "nothing after quitting:\n{}",
        rows.join("\n")
    );
}

#[test]
fn end_of_input_at_the_name_prompt_is_a_usage_error_that_says_so() {
    let mut t = Tty::spawn(&["--bind", "127.0.0.1", "--port", "0"]);
    let at = t.wait_for(0, "Enter your name (without spaces): ");
    // Ctrl-D at the start of a line: end of input.
    t.master().write_all(b"\x04").unwrap();
    t.wait_for(at, "no name given (input ended at the prompt): pass --name");
    assert_eq!(t.wait_exit().code(), Some(2));
}

/// A terminal that has gone away (its window closed: every write fails with EIO) makes no
/// log line panic: a node quitting when it hangs up still gets its `exit` to its peers
/// and leaves. `eprintln!` panicked at the next line, exit code 101.
#[test]
fn a_terminal_that_hung_up_does_not_panic_the_logger() {
    let (peer, port) = common::listener();
    let peer_addr = format!("127.0.0.1:{port}");
    let args = [
        "--name",
        "alice",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--peer",
        &peer_addr,
        "-v",
    ];
    let mut t = Tty::spawn(&args);
    let at = t.wait_for(0, "Server listening on port ");
    let node_port: u16 = t.screen()[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    t.wait_input("> ", 2);
    let (_, hello) = common::accept_read_within(&peer, SOON).expect("the greeting");
    assert!(hello.ends_with(b" alice hello"), "{hello:?}");
    // Quitting: its `exit` waits for the peer, which does not take it yet. (Told before
    // the hang-up, so that the end of input the hang-up also is cannot come first and
    // make this signal a second one, which leaves at once.)
    common::signal(&t.child, libc::SIGTERM);
    t.wait_for(at, "signal 15: quitting");
    t.hang_up();
    // A warning to log on the gone terminal; the node goes on.
    let node: std::net::SocketAddr = format!("127.0.0.1:{node_port}").parse().unwrap();
    assert!(common::send_raw(node, b"complete garbage"), "clean close");
    let (_, bye) = common::accept_read_within(&peer, SOON).expect("an exit after the hang-up");
    assert!(bye.ends_with(b" alice exit"), "{bye:?}");
    let status = common::wait_child(&mut t.child, SOON).expect("the node exits");
    assert_ne!(status.code(), Some(101), "a panic: {status}");
    assert!(
        status.success(),
        "a terminal that hung up is a normal way out: {status}"
    );
}

// ----- the line editor -------------------------------------------------------------------

/// A node with the line editor on a terminal, its input line shown.
fn editor_node(extra: &[&str]) -> Tty {
    let mut args = vec!["--name", "alice", "--port", "0", "--bind", "127.0.0.1"];
    args.extend_from_slice(extra);
    let t = Tty::spawn(&args);
    t.wait_input("> ", 2);
    t
}

/// A legacy peer's message to the node (from a port nothing listens at after).
fn message_from(to: std::net::SocketAddr, name: &str, text: &str) {
    let (_l, port) = common::listener();
    message_from_port(to, port, name, text);
}

#[test]
fn a_half_typed_line_survives_an_arriving_message_with_the_cursor_where_it_was() {
    let t = editor_node(&[]);
    t.keys(b"hello world");
    // Cursor moved back into the word: Left five times.
    t.keys(b"\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D");
    t.wait_input("> hello world", 8);
    message_from(t.addr(), "bob", "are you there?");
    t.wait_row("Message from bob [");
    // The event is above; the input line is intact, cursor in place.
    t.wait_input("> hello world", 8);
    let rows = t.rows();
    let (row, _) = t.cursor();
    let msg = rows
        .iter()
        .position(|r| r.contains("are you there?"))
        .unwrap();
    assert!(
        msg < row as usize,
        "the event is above the input line:\n{}",
        rows.join("\n")
    );
    assert!(
        rows[msg].chars().take(6).collect::<String>().ends_with(' ')
            && rows[msg].as_bytes()[2] == b':',
        "stamped HH:MM: {:?}",
        rows[msg]
    );
    // Typing goes on where the cursor is.
    t.keys(b"big ");
    t.wait_input("> hello big world", 12);
}

#[test]
fn editing_keys_move_and_delete_by_grapheme() {
    let t = editor_node(&[]);
    t.keys("héllo wörld 👍🏽".as_bytes());
    t.wait_input("> héllo wörld 👍🏽", 16);
    // Backspace takes the whole emoji with its skin tone.
    t.keys(b"\x7f");
    t.wait_input("> héllo wörld ", 14);
    // Ctrl-W deletes the word before the cursor; Ctrl-A goes home; Ctrl-K kills to the end.
    t.keys(b"\x17");
    t.wait_input("> héllo", 8);
    t.keys(b"\x01");
    t.wait_input("> héllo", 2);
    t.keys(b"\x1b[C\x1b[C\x0b");
    t.wait_input("> hé", 4);
    // Ctrl-E, then Ctrl-U clears the line.
    t.keys(b"\x05\x15");
    t.wait_input(">", 2);
    // Wide characters take two columns each.
    t.keys("中文".as_bytes());
    t.wait_input("> 中文", 6);
    t.keys(b"\x7f");
    t.wait_input("> 中", 4);
}

#[test]
fn history_is_recalled_with_up_and_kept_across_runs() {
    let mut t = editor_node(&[]);
    t.keys(b"/peers\r");
    t.wait_row("No active peers.");
    t.keys(b"/help\r");
    t.wait_row("/quit");
    t.keys(b"\x1b[A");
    t.wait_input("> /help", 7);
    t.keys(b"\x1b[A");
    t.wait_input("> /peers", 8);
    t.keys(b"\x1b[B\x1b[B");
    t.wait_input(">", 2);
    t.keys(b"/quit\r");
    assert!(t.wait_exit().success());
    let file = t.home.join("p2pchat/history");
    let text = std::fs::read_to_string(&file).expect("history saved");
    assert!(
        text.contains("/peers") && text.contains("/quit"),
        "{text:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "history is private");
    // A new run on the same state directory recalls it.
    let home = t.home.to_str().unwrap().to_owned();
    let t2 = Tty::spawn_env(
        &["--name", "alice", "--port", "0", "--bind", "127.0.0.1"],
        &[("XDG_STATE_HOME", &home)],
    );
    t2.wait_input("> ", 2);
    t2.keys(b"\x1b[A");
    t2.wait_input("> /quit", 7);
}

#[test]
fn tab_completes_commands_and_peer_names() {
    let t = editor_node(&[]);
    t.keys(b"/pe\t");
    t.wait_input("> /peers ", 9);
    t.keys(b"\x15");
    message_from(t.addr(), "bobby", "hi");
    t.wait_row("Message from bobby [");
    t.keys(b"/msg bo\t");
    t.wait_input("> /msg bobby ", 13);
}

#[test]
fn a_long_line_scrolls_and_a_resize_lays_it_out_again() {
    let t = editor_node(&[]);
    let long = "x".repeat(150);
    t.keys(long.as_bytes());
    t.wait_screen("the cursor inside an 80-column line", |_| {
        let (_, col) = t.cursor();
        col < 80 && col > 2
    });
    assert!(t.input_row().chars().count() < 80);
    t.resize(40, 24);
    t.wait_screen("the input line within 40 columns", |_| {
        let (_, col) = t.cursor();
        col < 40 && t.input_row().chars().count() < 40 && t.input_row().starts_with("> ")
    });
    // Home shows the start of the line again.
    t.keys(b"\x01");
    t.wait_input(&format!("> {}", "x".repeat(37)), 2);
}

#[test]
fn colours_are_on_with_always_and_off_with_never() {
    let t = editor_node(&["--color", "always"]);
    message_from(t.addr(), "carol", "colourful");
    t.wait_row("Message from carol [");
    let rows = t.rows();
    let row = rows.iter().position(|r| r.contains("carol")).unwrap();
    let col = rows[row].find("carol").unwrap();
    assert_ne!(
        t.cell_fg(row as u16, col as u16),
        vt100::Color::Default,
        "the name is coloured"
    );
    let plain = editor_node(&["--color", "never"]);
    message_from(plain.addr(), "carol", "plain");
    plain.wait_row("Message from carol [");
    let rows = plain.rows();
    let row = rows.iter().position(|r| r.contains("carol")).unwrap();
    for col in 0..rows[row].chars().count() {
        assert_eq!(plain.cell_fg(row as u16, col as u16), vt100::Color::Default);
    }
    // NO_COLOR turns auto off.
    let no = Tty::spawn_env(
        &["--name", "alice", "--port", "0", "--bind", "127.0.0.1"],
        &[("NO_COLOR", "1")],
    );
    no.wait_input("> ", 2);
    message_from(no.addr(), "carol", "plain");
    no.wait_row("Message from carol [");
    assert!(
        !no.screen().contains("\x1b[3"),
        "no colour codes with NO_COLOR"
    );
}

#[test]
fn the_menu_asks_its_questions_in_the_input_line() {
    let t = editor_node(&[]);
    let (peer, port) = common::listener();
    t.keys(b"1\r");
    t.wait_input("Enter recipient's IP address:", 30);
    t.keys(b"127.0.0.1\r");
    t.wait_input("Enter recipient's port number:", 31);
    t.keys(format!("{port}\r").as_bytes());
    t.keys(b"hi there\r");
    let (_, got) = common::accept_read_within(&peer, SOON).expect("the message");
    assert!(got.ends_with(b" alice hi there"), "{got:?}");
    t.wait_input("> ", 2);
    // A slash command at a question cancels it and runs.
    t.keys(b"1\r");
    t.wait_input("Enter recipient's IP address:", 30);
    t.keys(b"/peers\r");
    t.wait_row("1. Unknown [127.0.0.1:");
    t.wait_input("> ", 2);
}

#[test]
fn ctrl_c_clears_a_line_then_quits_and_a_second_one_leaves_at_once() {
    // A peer that never answers keeps the quit waiting for its `exit`.
    let (peer, port) = common::listener();
    let peer_addr = format!("127.0.0.1:{port}");
    let t = editor_node(&["--peer", &peer_addr]);
    common::accept_read_within(&peer, SOON).expect("the greeting");
    t.keys(b"half a thought");
    t.wait_input("> half a thought", 16);
    t.keys(b"\x03");
    t.wait_input(">", 2);
    t.keys(b"\x03");
    t.wait_row("quitting");
    let _exit = common::accept_message_within(&peer); // accepted, never answered
    t.keys(b"\x03");
    t.wait_row("leaving now");
    let mut t = t;
    assert!(t.wait_exit().success());
}

#[test]
fn ctrl_d_on_an_empty_line_quits() {
    let mut t = editor_node(&[]);
    t.keys(b"abc\x01\x04");
    t.wait_input("> bc", 2);
    t.keys(b"\x05\x15\x04");
    t.wait_row("Exiting...");
    assert!(t.wait_exit().success());
}

/// Whatever way the node leaves, a panic included, the terminal gets its settings back.
#[test]
fn the_terminal_settings_are_restored_after_quit_signals_and_a_panic() {
    // Only a debug build has the line that panics (`cargo test --release` leaves it out).
    let ways: &[&str] = if cfg!(debug_assertions) {
        &["quit", "SIGTERM", "SIGHUP", "SIGINT", "panic"]
    } else {
        &["quit", "SIGTERM", "SIGHUP", "SIGINT"]
    };
    for &how in ways {
        let t = Tty::spawn(&["--name", "alice", "--port", "0", "--bind", "127.0.0.1"]);
        let before = t.initial.clone();
        t.wait_input("> ", 2);
        assert_ne!(t.settings(), before, "{how}: raw mode while running");
        match how {
            "quit" => t.keys(b"/quit\r"),
            // A debug build panics on this line (the tests' build is one).
            "panic" => t.keys(b"/__panic\r"),
            "SIGTERM" => common::signal(&t.child, libc::SIGTERM),
            "SIGHUP" => common::signal(&t.child, libc::SIGHUP),
            _ => common::signal(&t.child, libc::SIGINT),
        }
        let mut t = t;
        let status = t.wait_exit();
        if how == "panic" {
            assert_eq!(status.code(), Some(101), "{how}");
        } else {
            assert!(status.success(), "{how}");
        }
        assert_eq!(t.settings(), before, "{how}: settings restored");
        assert!(
            t.screen().contains("\x1b[?2004l"),
            "{how}: bracketed paste off"
        );
    }
}

#[test]
fn a_paste_with_line_breaks_sends_nothing_until_enter_then_one_message_per_line() {
    let (peer, port) = common::listener();
    let t = editor_node(&[]);
    let paste = format!("/send 127.0.0.1:{port} one\n/send 127.0.0.1:{port} two");
    t.keys(format!("\x1b[200~{paste}\x1b[201~").as_bytes());
    // Still in the input line, the line break shown, nothing run.
    t.wait_screen("the paste in the input line", |_| {
        let row = t.input_row();
        row.contains("one") && row.contains("two")
    });
    assert!(!t.screen().contains("Message sent"), "a paste ran a line");
    t.keys(b"\r");
    let (_, first) = common::accept_read_within(&peer, SOON).expect("the first line");
    let (_, second) = common::accept_read_within(&peer, SOON).expect("the second line");
    assert!(first.ends_with(b" alice one"), "{first:?}");
    assert!(second.ends_with(b" alice two"), "{second:?}");
}

#[test]
fn log_lines_appear_above_the_input_line_without_garbling_it() {
    let t = editor_node(&["-v"]);
    t.keys(b"typing");
    t.wait_input("> typing", 8);
    // Garbage from the network makes the node log a warning.
    assert!(common::send_raw(t.addr(), b"complete garbage"));
    t.wait_row("WARN");
    t.wait_input("> typing", 8);
}

/// A port in use, typed at the start-up question, is asked for again with the reason
/// (it ended the program).
#[test]
fn a_port_in_use_at_the_question_is_asked_again() {
    let (_taken, port) = common::listener();
    let mut t = Tty::spawn(&["--name", "alice", "--bind", "127.0.0.1"]);
    let at = t.wait_for(0, "Enter your port number: ");
    t.type_line(&port.to_string());
    let at = t.wait_for(at, &format!("port {port} is in use: choose another"));
    let at = t.wait_for(at, "Enter your port number: ");
    t.type_line("0");
    t.wait_for(at, "Server listening on port ");
    t.wait_input("> ", 2);
    t.keys(b"0\r");
    assert!(t.wait_exit().success());
}

#[test]
fn query_sets_the_current_peer_in_the_prompt_and_plain_text_goes_to_it() {
    let t = editor_node(&[]);
    t.keys(b"hello nobody\r");
    t.wait_row("/query");
    let (peer, port) = common::listener();
    // The peer introduces itself, so it has a name.
    message_from_port(t.addr(), port, "bob", "hi");
    t.wait_row("Message from bob [");
    t.keys(b"/query bob\r");
    t.wait_input("[bob] >", 8);
    t.keys(b"plain words\r");
    let (_, got) = common::accept_read_within(&peer, SOON).expect("the plain text");
    assert!(got.ends_with(b" alice plain words"), "{got:?}");
    t.wait_row("Message sent to bob [");
}

#[test]
fn a_slow_send_shows_as_pending_in_the_prompt_until_its_outcome() {
    let t = editor_node(&["--timeout", "3"]);
    let (peer, port) = common::listener();
    t.keys(format!("/send 127.0.0.1:{port} anyone there\r").as_bytes());
    // Accepted, never closed: the send waits for the peer's close until its deadline.
    let _held = common::accept_message_within(&peer);
    t.wait_screen("the pending send in the prompt", |_| {
        t.input_row().starts_with("(1 pending) >")
    });
    // Its outcome (unconfirmed at the deadline) ends the pending mark.
    t.wait_row("unconfirmed");
    t.wait_input("> ", 2);
}

#[test]
fn a_peer_keeps_its_number_when_another_leaves() {
    let t = editor_node(&[]);
    let addr = t.addr();
    let (_a, port_a) = common::listener();
    let (_b, port_b) = common::listener();
    message_from_port(addr, port_a, "first", "hi");
    t.wait_row("Message from first [");
    message_from_port(addr, port_b, "second", "hi");
    t.wait_row("Message from second [");
    t.keys(b"/peers\r");
    t.wait_row("2. second [");
    message_from_port(addr, port_a, "first", "exit");
    t.wait_row("first [127.0.0.1");
    t.wait_row("disconnected");
    t.keys(b"/peers\r");
    t.wait_screen("second still #2 after first left", |rows| {
        let after = rows.iter().rposition(|r| r.contains("/peers")).unwrap_or(0);
        rows[after..].iter().any(|r| r.contains("2. second ["))
            && !rows[after..].iter().any(|r| r.contains("1. second ["))
    });
}

/// A legacy peer listening at `port` sends one message to the node.
fn message_from_port(to: std::net::SocketAddr, port: u16, name: &str, text: &str) {
    let payload = format!("127.0.0.1:{port} {name} {text}");
    assert!(common::send_raw(to, payload.as_bytes()), "clean close");
}

/// Two nodes run side by side with one history file: the one that leaves last keeps what
/// the other typed.
#[test]
fn nodes_side_by_side_keep_each_others_history() {
    let mut a = editor_node(&[]);
    let home = a.home.to_str().unwrap().to_owned();
    let args = ["--name", "bob", "--port", "0", "--bind", "127.0.0.1"];
    let mut b = Tty::spawn_env(&args, &[("XDG_STATE_HOME", &home)]);
    b.wait_input("> ", 2);
    a.keys(b"/help query\r");
    a.wait_row("/query");
    b.keys(b"/help nick\r");
    b.wait_row("/nick");
    a.keys(b"/quit\r");
    assert!(a.wait_exit().success());
    b.keys(b"/quit\r");
    assert!(b.wait_exit().success());
    let text = std::fs::read_to_string(a.home.join("p2pchat/history")).unwrap();
    assert!(
        text.contains("/help query") && text.contains("/help nick"),
        "{text:?}"
    );
}

/// The state letter of a process (`R`, `S`, `T` for stopped...).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

/// Ctrl-Z stops the node with the terminal's own settings back (as a shell's job control
/// would); continued, it takes raw mode again and draws the input line as it was.
#[test]
fn ctrl_z_gives_the_terminal_back_and_fg_takes_it_again() {
    let t = editor_node(&[]);
    let raw = t.settings();
    t.keys(b"draft");
    t.wait_input("> draft", 7);
    t.keys(b"\x1a");
    let pid = t.child.id();
    let until = Instant::now() + SOON;
    // Stopped, or (in an orphaned process group, where a stop is ignored) still running
    // with its settings given back and taken again: either way never left in raw mode
    // while stopped.
    while proc_state(pid) != 'T' && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    if proc_state(pid) == 'T' {
        assert_eq!(t.settings(), t.initial, "stopped in raw mode");
        common::signal(&t.child, libc::SIGCONT);
    }
    t.wait_settings("raw mode again", &raw);
    t.keys(b" more");
    t.wait_input("> draft more", 12);
}

/// Stopped from outside and continued after the shell changed the terminal's settings: the
/// node takes raw mode again (its keys went on being echoed and the editor dead).
#[test]
fn continued_after_a_stop_the_node_takes_raw_mode_again() {
    let t = editor_node(&[]);
    let raw = t.settings();
    common::signal(&t.child, libc::SIGSTOP);
    // The shell puts its own settings back while the job is stopped.
    // SAFETY: tcgetattr/tcsetattr on the terminal we opened.
    unsafe {
        let mut cooked: libc::termios = std::mem::zeroed();
        let fd = t.slave.as_ref().unwrap().as_raw_fd();
        libc::tcgetattr(fd, &mut cooked);
        cooked.c_lflag |= libc::ICANON | libc::ECHO;
        libc::tcsetattr(fd, libc::TCSANOW, &cooked);
    }
    assert_ne!(t.settings(), raw);
    common::signal(&t.child, libc::SIGCONT);
    t.wait_settings("raw mode again", &raw);
    t.keys(b"abc");
    t.wait_input("> abc", 5);
}

/// Ctrl-C at a menu question takes the question back; it does not quit.
#[test]
fn ctrl_c_at_a_menu_question_cancels_it() {
    let t = editor_node(&[]);
    t.keys(b"1\r");
    t.wait_input("Enter recipient's IP address:", 30);
    t.keys(b"\x03");
    t.wait_row("question cancelled");
    t.wait_input("> ", 2);
    assert!(!t.screen().contains("quitting"));
}

/// A multi-line paste to the current peer: a line that is a lone digit is text like the
/// others (it quit the node, and a "2" listed the peers).
#[test]
fn a_pasted_lone_digit_is_text_for_the_current_peer() {
    let (peer, port) = common::listener();
    let t = editor_node(&[]);
    t.keys(format!("/query 127.0.0.1:{port}\r").as_bytes());
    let prompt = format!("[127.0.0.1:{port}] > ");
    t.wait_input(&prompt, prompt.len() as u16);
    t.keys(b"\x1b[200~the score was\n0\nto 1\x1b[201~\r");
    for want in ["the score was", "0", "to 1"] {
        let (_, got) = common::accept_read_within(&peer, SOON).expect("each pasted line");
        assert!(
            got.ends_with(format!(" alice {want}").as_bytes()),
            "{want}: {got:?}"
        );
    }
    assert!(!t.screen().contains("Exiting"));
}

// ----- attacks (issue 7 review) -----------------------------------------------------------

/// A state directory of the user's own, for a node started on it.
fn state_home(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pchat-state-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("p2pchat")).unwrap();
    dir
}

/// A history "file" that is a FIFO (or any file that is not a regular one) must not hang
/// the start: the terminal is already in raw mode then, so Ctrl-C cannot get the user out,
/// and the loop that would answer SIGTERM is not running yet.
#[test]
fn a_history_that_is_a_fifo_does_not_hang_the_start() {
    let home = state_home("fifo");
    let fifo = home.join("p2pchat/history");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut t = Tty::spawn_env(
        &["--name", "alice", "--port", "0", "--bind", "127.0.0.1"],
        &[("XDG_STATE_HOME", home.to_str().unwrap())],
    );
    t.wait_input("> ", 2);
    t.keys(b"/quit\r");
    assert!(t.wait_exit().success());
    let _ = std::fs::remove_dir_all(&home);
}

/// A paste larger than the editor keeps is cut: the user is told, not left to find a
/// message's end missing.
#[test]
fn a_paste_too_large_to_keep_is_cut_and_the_user_is_told() {
    let t = editor_node(&[]);
    let big = "a".repeat(100 * 1024);
    t.keys(format!("\x1b[200~{big}\x1b[201~").as_bytes());
    t.wait_screen("a notice that the paste was cut", |rows| {
        rows.iter()
            .any(|r| r.contains("paste") && r.contains("cut"))
    });
}

/// Typing while many messages arrive: every key lands, the input line ends intact.
#[test]
fn typing_while_a_flood_of_messages_arrives_keeps_the_line_intact() {
    let t = editor_node(&[]);
    let to = t.addr();
    let (_l, port) = common::listener();
    let flood = thread::spawn(move || {
        for i in 0..400 {
            let payload = format!("127.0.0.1:{port} bob message number {i} {}", "z".repeat(90));
            common::send_raw(to, payload.as_bytes());
        }
    });
    let typed = "the quick brown fox jumps over the lazy dog";
    for c in typed.bytes() {
        t.keys(&[c]);
    }
    flood.join().unwrap();
    t.wait_row("message number 399");
    t.wait_input(&format!("> {typed}"), 2 + typed.len() as u16);
}

/// A terminal narrowed to a few columns: no panic, and the input line comes back whole
/// when it is widened again.
#[test]
fn a_terminal_a_few_columns_wide_does_not_break_the_editor() {
    let t = editor_node(&[]);
    t.keys("ab中cd".as_bytes());
    t.wait_input("> ab中cd", 8);
    for cols in [1, 2, 3, 4, 5] {
        t.resize(cols, 24);
        message_from(t.addr(), "bob", "narrow 中文 text");
        t.keys(b"\x1b[D");
        t.keys(b"\x1b[C");
    }
    t.resize(80, 24);
    message_from(t.addr(), "bob", "wide again");
    t.wait_row("wide again");
    t.wait_input("> ab中cd", 8);
    t.keys(b"\x15/quit\r");
    let mut t = t;
    assert!(t.wait_exit().success());
}

/// The terminal stops taking output (paused, or a window nobody looks at) while messages
/// pour in and the user types: memory stays bounded, and once it takes output again the
/// typed line is there, whole, with its cursor.
#[test]
fn typing_while_the_terminal_takes_no_output() {
    let t = editor_node(&[]);
    let to = t.addr();
    t.paused.store(true, Ordering::Relaxed);
    let (_l, port) = common::listener();
    // 40 messages of 50 KB: more output than the node buffers before it stops reading.
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = sent.clone();
    let flood = thread::spawn(move || {
        let mut open = Vec::new();
        for i in 0..40 {
            let mut s = std::net::TcpStream::connect(to).unwrap();
            let text = format!("127.0.0.1:{port} bob number {i} {}", "z".repeat(50_000));
            s.write_all(text.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            open.push(s);
            count.fetch_add(1, Ordering::Relaxed);
        }
        open
    });
    let until = Instant::now() + SOON;
    while sent.load(Ordering::Relaxed) < 40 {
        assert!(Instant::now() < until, "the flood is not sent");
        thread::sleep(Duration::from_millis(10));
    }
    let typed = "typed while nobody reads";
    for c in typed.bytes() {
        t.keys(&[c]);
    }
    let _open = flood.join().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.child.id())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        rss_kb < 64 * 1024,
        "{rss_kb} KiB resident while output waits"
    );
    t.paused.store(false, Ordering::Relaxed);
    t.wait_for(0, "number 39");
    t.wait_input(&format!("> {typed}"), 2 + typed.len() as u16);
}

/// Ctrl-C after `/quit` (or Ctrl-D) is the first Ctrl-C: the words must not say "again".
/// And the way to leave at once is said whichever way the quit began.
#[test]
fn ctrl_c_after_a_typed_quit_is_not_called_a_second_one() {
    let (peer, port) = common::listener();
    let peer_addr = format!("127.0.0.1:{port}");
    let t = editor_node(&["--peer", &peer_addr]);
    common::accept_read_within(&peer, SOON).expect("the greeting");
    t.keys(b"/quit\r");
    let _exit = common::accept_message_within(&peer); // accepted, never answered
    t.wait_row("Ctrl-C to leave at once");
    t.keys(b"\x03");
    t.wait_row("leaving now");
    let mut t = t;
    assert!(t.wait_exit().success());
    let rows = t.rows();
    assert!(
        !rows.iter().any(|r| r.contains("Ctrl-C again")),
        "{}",
        rows.join("\n")
    );
}
