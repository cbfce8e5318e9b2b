//! A person at a terminal: the node runs on a pseudo-terminal, as in a real session, so it
//! asks for what is missing and shows the menu's prompts. Human output, not `--json`.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{BIN, Collector, SOON, wait_child};

/// A node whose stdin, stdout and stderr are one pseudo-terminal.
struct Tty {
    child: Child,
    master: File,
    /// Everything the node has written to the terminal.
    screen: Collector,
}

impl Tty {
    fn spawn(args: &[&str]) -> Tty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: two valid out-pointers; no name, termios or window size.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // Not inherited by the nodes other tests start meanwhile: a copy of the slave side
        // in another process would keep this terminal open after this node has gone.
        for fd in [master, slave] {
            // SAFETY: F_SETFD on a descriptor openpty just returned.
            let r = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            assert_eq!(r, 0, "fcntl: {}", std::io::Error::last_os_error());
        }
        // SAFETY: openpty returned two open descriptors that nothing else owns.
        let (master, slave) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
        let child = Command::new(BIN)
            .args(args)
            .env_remove("P2PCHAT_NAME")
            .env_remove("P2PCHAT_PORT")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        // The reader ends with EIO once the node has gone: the command (dropped with this
        // statement's temporaries) held the only other copies of the terminal's slave side.
        let screen = Collector::start(master.try_clone().unwrap());
        Tty {
            child,
            master,
            screen,
        }
    }

    fn screen(&self) -> String {
        self.screen.text().replace("\r\n", "\n")
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
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        match wait_child(&mut self.child, SOON) {
            Some(status) => status,
            None => panic!("still running:\n{}", self.screen()),
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
    t.screen.wait_end(SOON);
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
    t.master.write_all(b"\x04").unwrap();
    t.wait_for(at, "no name given (input ended at the prompt): pass --name");
    assert_eq!(t.wait_exit().code(), Some(2));
}
