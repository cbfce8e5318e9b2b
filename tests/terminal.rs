//! A person at a terminal: the node runs on a pseudo-terminal, as in a real session, so it
//! asks for what is missing and shows the menu's prompts. Human output, not `--json`.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_p2pchat");
const SOON: Duration = Duration::from_secs(10);

/// A node whose stdin, stdout and stderr are one pseudo-terminal.
struct Tty {
    child: Child,
    /// `None` once the terminal has hung up.
    master: Option<File>,
    screen: Arc<Mutex<String>>,
    /// Tells the screen reader to let go of its copy of the master.
    hang_up: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Tty {
    fn spawn(args: &[&str]) -> Tty {
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
        let child = Command::new(BIN)
            .args(args)
            .env_remove("P2PCHAT_NAME")
            .env_remove("P2PCHAT_PORT")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        let hang_up = Arc::new(AtomicBool::new(false));
        let stop = hang_up.clone();
        let mut reader = master.try_clone().unwrap();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
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
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Tty {
            child,
            master: Some(master),
            screen,
            hang_up,
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
    }
}

#[test]
fn name_and_port_are_asked_for_on_a_terminal() {
    let mut t = Tty::spawn(&["--bind", "127.0.0.1"]);
    let at = t.wait_for(0, "Enter your name (without spaces): ");
    t.type_line("alice");
    let at = t.wait_for(at, "Enter your port number: ");
    t.type_line("0");
    let at = t.wait_for(at, "Server listening on port ");
    let screen = t.screen();
    let port: u16 = screen[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the real port is shown");
    t.wait_for(at, "Enter choice: ");
    t.type_line("0");
    assert!(t.wait_exit().success());
}

#[test]
fn a_name_with_spaces_is_asked_for_again() {
    let mut t = Tty::spawn(&["--bind", "127.0.0.1", "--port", "0"]);
    let at = t.wait_for(0, "Enter your name (without spaces): ");
    t.type_line("two words");
    let at = t.wait_for(at, "Enter your name (without spaces): ");
    t.type_line("one");
    t.wait_for(at, "Enter choice: ");
}

/// The answer to a menu choice is shown before the next question, and once the user quits
/// no question is asked any more.
#[test]
fn menu_answers_come_before_the_next_prompt_and_quit_asks_nothing_more() {
    let mut t = Tty::spawn(&["--name", "alice", "--port", "0", "--bind", "127.0.0.1"]);
    let at = t.wait_for(0, "Enter choice: ");
    t.type_line("2");
    let answer = t.wait_for(at, "No active peers.");
    let next = t.wait_for(answer, "Enter choice: ");
    let between = &t.screen()[at..next];
    assert_eq!(
        between.matches("Enter choice:").count(),
        1,
        "one prompt after the answer, none before it:\n{between}"
    );

    t.type_line("3");
    let answer = t.wait_for(next, "No peers remaining for connection.");
    let after = t.wait_for(answer, "Enter choice: ");
    assert_eq!(t.screen()[next..after].matches("Enter").count(), 1);

    t.type_line("0");
    let exiting = t.wait_for(after, "Exiting...");
    assert!(t.wait_exit().success());
    // Everything the node wrote: the terminal's reader has seen its end.
    t.wait_end();
    let screen = t.screen();
    assert!(
        !screen[exiting..].contains("Enter choice"),
        "a prompt after quitting:\n{screen}"
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
    let at = t.wait_for(at, "Enter choice: ");
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
    let at = t.wait_for(at, "Server listening on port ");
    t.wait_for(at, "Enter choice: ");
    t.type_line("0");
    assert!(t.wait_exit().success());
}
