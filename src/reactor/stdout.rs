//! Writing to the user: events rendered into one buffer, written once per loop turn.
//!
//! stdout is set up by [`StdFd`] so that no write can block: a terminal or a pipe is
//! reopened as a second, non-blocking description, a socket is written with `MSG_DONTWAIT`.
//! A slow terminal, a full pipe or a socket nobody reads never blocks the loop: what cannot
//! be written stays buffered, and once more than [`HIGH_WATER`] bytes wait, the reactor
//! stops reading the network (push back) until the buffer drains below [`LOW_WATER`]. A
//! regular file is written directly.

use std::borrow::Cow;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::os::{self, StdFd};

/// Buffered output above which the reactor stops reading the network.
pub const HIGH_WATER: usize = 1 << 20;
/// Buffered output below which it reads again.
pub const LOW_WATER: usize = 256 << 10;
/// How long the node, as it exits, waits for a slow reader to take what is still buffered.
pub const EXIT_DRAIN: Duration = Duration::from_secs(5);
/// Buffered output past which events are not added but counted (the reactor pauses long
/// before: this only catches a path that would not): told once the output drains.
pub const HARD_CAP: usize = 4 << 20;
/// Buffer capacity kept once everything is written; a burst's memory is given back.
const KEEP_CAPACITY: usize = 64 << 10;

use crate::event::Event;
use crate::look::{self, Look};
use crate::render;

/// Erases the terminal's current line and puts the cursor at its start.
const ERASE_LINE: &[u8] = b"\r\x1b[K";

/// An interactive terminal with the line editor: events are written above the input line,
/// which is redrawn after them as it was.
#[derive(Debug)]
struct Screen {
    colour: bool,
    width: usize,
    /// The input line as it should look (prompt and visible text) and the cursor's column.
    input: String,
    cursor_col: usize,
    /// Something of the input line is on the screen's last line.
    shown: bool,
    /// What is on the screen is `input` as it is now.
    current: bool,
    /// No input line any more (the node is quitting).
    ended: bool,
    /// An event's human lines, before they are dressed.
    scratch: Vec<u8>,
}

#[derive(Debug)]
pub struct Stdout {
    sink: StdFd,
    /// Output not yet written is `buf[head..]`; `head` moves on as the sink takes bytes,
    /// so a partial write costs no copy of what remains.
    buf: Vec<u8>,
    head: usize,
    json: bool,
    /// Show menu prompts (a person is typing, human output).
    prompts: bool,
    /// The question awaiting an answer, re-shown after notifications.
    prompt: Option<Cow<'static, str>>,
    prompt_visible: bool,
    /// stdout is gone (closed pipe); nothing more is written.
    pub closed: bool,
    /// Events not added because [`HARD_CAP`] bytes were waiting.
    not_shown: u64,
    /// The last write would have blocked: the sink says (a writable event) when to retry.
    blocked: bool,
    /// The line editor is on: events go above its input line.
    screen: Option<Screen>,
    /// Human lines are coloured.
    colour: bool,
}

impl Stdout {
    /// `colour`: human lines are coloured (`--color`), also when the editor is not on.
    pub fn new(json: bool, prompts: bool, colour: bool) -> Stdout {
        let (sink, why) = StdFd::open(1, libc::O_WRONLY);
        if let Some(e) = why {
            log::info!("cannot reopen stdout ({e}): made it non-blocking itself until exit");
        }
        Stdout {
            sink,
            buf: Vec::with_capacity(64 * 1024),
            head: 0,
            json,
            prompts: prompts && !json,
            prompt: None,
            prompt_visible: false,
            closed: false,
            not_shown: 0,
            blocked: false,
            screen: None,
            colour,
        }
    }

    /// The line editor runs on this terminal, `width` columns wide: events are stamped,
    /// dressed and written above its input line.
    pub fn use_screen(&mut self, colour: bool, width: usize) {
        self.prompts = false;
        self.screen = Some(Screen {
            colour,
            width,
            input: String::new(),
            cursor_col: 0,
            shown: false,
            current: false,
            ended: false,
            scratch: Vec::new(),
        });
    }

    /// The terminal was resized: later lines wrap at `width`, the input line is redrawn.
    pub fn set_width(&mut self, width: usize) {
        if let Some(s) = &mut self.screen {
            s.width = width;
            s.current = false;
        }
    }

    /// What the input line shows now (prompt and visible text) and where its cursor is;
    /// drawn at the next flush if it changed.
    pub fn set_input(&mut self, text: &str, cursor_col: usize) {
        if let Some(s) = &mut self.screen
            && (s.input != text || s.cursor_col != cursor_col)
        {
            s.input.clear();
            s.input.push_str(text);
            s.cursor_col = cursor_col;
            s.current = false;
        }
    }

    /// No more input line: it is erased (quitting).
    pub fn end_input(&mut self) {
        self.erase_input();
        if let Some(s) = &mut self.screen {
            s.ended = true;
        }
    }

    /// Before a stop (Ctrl-Z): the input line is taken off the screen so the shell's
    /// prompt comes on a clean line.
    pub fn suspend_screen(&mut self) {
        self.erase_input();
    }

    /// After a stop: whatever the screen shows now, the input line is drawn again.
    pub fn redraw_screen(&mut self) {
        if let Some(s) = &mut self.screen {
            s.shown = false;
            s.current = false;
        }
    }

    /// Ctrl-L: clears the terminal; the input line is drawn again at the top.
    pub fn clear_screen(&mut self) {
        if let Some(s) = &mut self.screen {
            self.buf.extend_from_slice(b"\x1b[H\x1b[2J");
            s.shown = false;
            s.current = false;
        }
    }

    /// Log lines (kept from stderr while the editor draws there), shown above the input
    /// line, dimmed.
    pub fn log_lines(&mut self, lines: &[u8]) {
        if lines.is_empty() || self.closed {
            return;
        }
        self.erase_input();
        let Some(s) = &self.screen else { return };
        let colour = s.colour;
        for line in String::from_utf8_lossy(lines).lines() {
            let line = crate::sanitize::for_terminal(line);
            if colour {
                self.buf.extend_from_slice(b"\x1b[2m");
            }
            self.buf.extend_from_slice(line.as_bytes());
            if colour {
                self.buf.extend_from_slice(b"\x1b[0m");
            }
            self.buf.extend_from_slice(b"\r\n");
        }
    }

    /// Takes the input line off the screen so that output can be written in its place.
    fn erase_input(&mut self) {
        if let Some(s) = &mut self.screen
            && s.shown
        {
            self.buf.extend_from_slice(ERASE_LINE);
            s.shown = false;
            s.current = false;
        }
    }

    /// Draws the input line again if what is on screen is not it.
    fn draw_input(&mut self) {
        let Some(s) = &mut self.screen else { return };
        if s.ended || s.current || self.closed {
            return;
        }
        self.buf.extend_from_slice(b"\r");
        self.buf.extend_from_slice(s.input.as_bytes());
        self.buf.extend_from_slice(b"\x1b[K\r");
        if s.cursor_col > 0 {
            let _ =
                std::io::Write::write_fmt(&mut self.buf, format_args!("\x1b[{}C", s.cursor_col));
        }
        s.shown = true;
        s.current = true;
    }

    fn end_prompt_line(&mut self) {
        if self.prompt_visible {
            self.buf.push(b'\n');
            self.prompt_visible = false;
        }
    }

    /// An error writing is the terminal having hung up (its window closed): EIO on what
    /// was a terminal at start-up. Like a closed pipe, a normal way for the user to go.
    pub fn hung_up(&self, e: &io::Error) -> bool {
        e.raw_os_error() == Some(libc::EIO) && self.sink.kind() == crate::os::InputKind::Terminal
    }

    /// Whether there is room for one more event; counts it when there is not.
    fn room(&mut self) -> bool {
        if self.closed {
            return false;
        }
        if self.pending() >= HARD_CAP {
            self.not_shown += 1;
            return false;
        }
        self.tell_not_shown();
        true
    }

    /// Once there is room again (or as the node leaves), says how many events were not
    /// shown, on stdout and in the log.
    fn tell_not_shown(&mut self) {
        self.tell_not_shown_within(LOW_WATER);
    }

    /// As the node leaves: says it whatever is still waiting.
    pub fn tell_not_shown_at_exit(&mut self) {
        self.tell_not_shown_within(usize::MAX);
    }

    fn tell_not_shown_within(&mut self, waiting: usize) {
        if self.not_shown > 0 && self.pending() <= waiting && !self.closed {
            let n = std::mem::take(&mut self.not_shown);
            let text = format!("{n} events were not shown: output was not keeping up");
            log::error!("{text}");
            self.render(&Event::Info(text), None);
        }
    }

    pub fn event(&mut self, e: &Event) {
        self.event_keyed(e, None);
    }

    /// [`Stdout::event`] for a peer event whose peer's key is known: `--json` adds its
    /// `"fingerprint"`; human output is the same.
    pub fn event_keyed(&mut self, e: &Event, fingerprint: Option<&str>) {
        if self.room() {
            self.render(e, fingerprint);
        }
    }

    fn render(&mut self, e: &Event, fingerprint: Option<&str>) {
        self.end_prompt_line();
        self.erase_input();
        if let Some(s) = &mut self.screen {
            s.scratch.clear();
            render::human(e, &mut s.scratch);
            let look = Look {
                colour: s.colour,
                stamp: Some(crate::os::local_hour_minute()),
                width: Some(s.width),
            };
            let human = String::from_utf8_lossy(&s.scratch);
            look::dress(e, &human, &look, &mut self.buf);
        } else if self.json {
            render::json_keyed(e, fingerprint, &mut self.buf);
        } else if self.colour {
            let mut human = Vec::new();
            render::human(e, &mut human);
            let look = Look {
                colour: true,
                stamp: None,
                width: None,
            };
            look::dress(e, &String::from_utf8_lossy(&human), &look, &mut self.buf);
        } else {
            render::human(e, &mut self.buf);
        }
    }

    /// A line of text for the user (help, hints).
    pub fn say(&mut self, text: &str) {
        self.event(&Event::Info(text.to_owned()));
    }

    /// Raw text shown to a person only (the menu).
    pub fn banner(&mut self, text: &str) {
        if (self.prompts || self.screen.is_some()) && !self.closed {
            self.end_prompt_line();
            self.erase_input();
            self.buf.extend_from_slice(text.as_bytes());
        }
    }

    /// Sets the question awaiting an answer; it is shown on the next flush.
    pub fn set_prompt(&mut self, prompt: Option<Cow<'static, str>>) {
        if self.prompt != prompt {
            self.end_prompt_line();
        }
        self.prompt = prompt;
    }

    /// The user answered: the cursor is on a fresh line again.
    pub fn answered(&mut self) {
        self.prompt_visible = false;
    }

    /// The descriptor to watch for writability, when stdout can block.
    pub fn pollable_fd(&self) -> Option<RawFd> {
        self.sink.pollable_fd()
    }

    /// So much output waits that the network should not be read.
    pub fn backlogged(&self) -> bool {
        self.pending() >= HIGH_WATER
    }

    /// Little enough output waits that reading may resume.
    pub fn drained(&self) -> bool {
        self.pending() <= LOW_WATER
    }

    /// Output waits that could be written now (nothing said the sink is full): the loop
    /// must not sleep before trying.
    pub fn writable_now(&self) -> bool {
        self.pending() > 0 && !self.blocked && !self.closed
    }

    /// Bytes buffered and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.head
    }

    fn discard(&mut self) {
        self.buf.clear();
        self.head = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf.shrink_to(KEEP_CAPACITY);
        }
    }

    /// Writes what the sink takes now. A closed stdout marks the output closed.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            self.discard();
            return Ok(());
        }
        self.tell_not_shown();
        self.blocked = false;
        if self.prompts
            && !self.prompt_visible
            && let Some(p) = &self.prompt
        {
            self.buf.extend_from_slice(p.as_bytes());
            self.prompt_visible = true;
        }
        self.draw_input();
        while self.head < self.buf.len() {
            match self.sink.write(&self.buf[self.head..]) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.head += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    // The terminal or pipe is full: keep the rest until it is writable.
                    // Reclaim the written front only once it outweighs what remains, so
                    // the copy is paid once per buffer's worth, not per partial write.
                    if self.head >= self.pending() {
                        self.buf.drain(..self.head);
                        self.head = 0;
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.closed = true;
                    self.discard();
                    return Err(e);
                }
            }
        }
        self.discard();
        Ok(())
    }

    /// The last flush, as the node exits: waits up to `limit` for a slow reader to take
    /// everything still buffered (a pipe holds only 64 KiB), so no line is lost or cut
    /// because the node stopped, but not for a reader that takes nothing
    /// ([`os::drain_at_exit`]); `give_up` (another signal) ends the wait early. Returns how
    /// many bytes were left unwritten, or the error that stopped the writing (a closed pipe
    /// is not one: nobody is reading any more).
    pub fn flush_before_exit(
        &mut self,
        limit: Duration,
        give_up: impl FnMut() -> bool,
    ) -> io::Result<usize> {
        let fd = self.pollable_fd();
        let mut write = || -> io::Result<usize> {
            match self.flush() {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
                _ if self.closed => Ok(0),
                _ => Ok(self.pending()),
            }
        };
        match fd {
            Some(fd) => os::drain_at_exit(fd, limit, write, give_up),
            None => write(),
        }
    }
}
