//! A person at a terminal: the line editor, driven by the loop like every other source.
//!
//! When stdin and stdout are both terminals (and output is not `--json`), the terminal is
//! put in raw mode and every byte typed goes through [`KeyParser`] to the [`Editor`] as it
//! arrives: no thread, no blocking read. The input line is always the screen's last line;
//! events are written above it and it is drawn again after them, text and cursor as they
//! were (`stdout::Stdout::set_input`). Log lines that would go to the same terminal are
//! held and shown above the input line too. History is read at start and saved at exit.

use std::path::PathBuf;
use std::time::Instant;

use crate::console;
use crate::editor::{Action, Editor, History, Key, KeyParser};
use crate::event::Event;
use crate::log_sink;

use super::Node;
use super::tty::{self, RawMode};

/// Most lines kept in the history file.
const HISTORY_LINES: usize = 1000;
/// Bytes read from the terminal per turn (a paste arrives in pieces of this size).
const READ_CHUNK: usize = 4096;

/// The line editor's terminal state.
pub struct Terminal {
    /// Gives the terminal its settings back when dropped.
    raw: RawMode,
    keys: KeyParser,
    editor: Editor,
    history_path: Option<PathBuf>,
    /// The history as it was loaded, to tell what this run added.
    loaded: History,
    /// Keys parsed and not yet handled (reused buffer).
    parsed: Vec<Key>,
    /// Log lines are held for the screen (stderr is a terminal too).
    holds_log: bool,
    pub width: usize,
}

impl Terminal {
    /// Raw mode on the terminal at stdin, or `None` (with the reason logged) when it
    /// cannot be had: the node then runs in line mode.
    pub fn open(history_path: Option<PathBuf>) -> Option<Terminal> {
        let raw = match RawMode::enter(0, 1) {
            Ok(raw) => raw,
            Err(e) => {
                log::warn!("cannot put the terminal in raw mode ({e}): plain line input");
                return None;
            }
        };
        let history = match &history_path {
            Some(path) => History::load(path, HISTORY_LINES).unwrap_or_else(|e| {
                log::warn!(
                    "cannot read the history {} ({e}): starting empty",
                    path.display()
                );
                History::new(HISTORY_LINES)
            }),
            None => History::new(HISTORY_LINES),
        };
        let holds_log = crate::is_terminal(2);
        if holds_log {
            log_sink::hold(true);
        }
        Some(Terminal {
            raw,
            keys: KeyParser::new(),
            loaded: history.clone(),
            editor: Editor::new(history),
            history_path,
            parsed: Vec::new(),
            holds_log,
            width: tty::width(1).unwrap_or(80),
        })
    }

    /// When a lone Escape must be decided (the rest of a key sequence did not come).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keys.poll_timeout()
    }

    /// Saves the history and lets log lines go to stderr again. What this run typed is
    /// added to the file as it is now, so nodes run side by side (or one after another)
    /// all keep theirs: the last to leave does not erase the others'.
    pub fn close(&mut self) {
        if let Some(path) = &self.history_path {
            let mut merged =
                History::load(path, HISTORY_LINES).unwrap_or_else(|_| History::new(HISTORY_LINES));
            for line in self.editor.history().added_since(&self.loaded) {
                merged.push(line);
            }
            if let Err(e) = merged.save(path) {
                log::warn!("cannot save the history to {} ({e})", path.display());
            }
        }
        if self.holds_log {
            log_sink::hold(false);
            self.holds_log = false;
        }
    }
}

impl Node {
    /// Reads what was typed and runs it through the editor: one chunk per turn, so a
    /// large paste shares the loop with the network.
    pub(super) fn read_keys(&mut self, now: Instant) {
        let Some(term) = &mut self.terminal else {
            return;
        };
        let mut buf = [0u8; READ_CHUNK];
        if let Some(bytes) = self.stdin.read_raw(&mut buf) {
            term.keys.feed(bytes, now, &mut term.parsed);
        }
        self.handle_keys(now);
        if self.stdin.ended() && !self.typed_ended {
            // The terminal hung up (or stdin closed): as the end of input in line mode.
            self.typed_ended = true;
            if !self.table.is_quitting() {
                log::info!("end of input: quitting");
                self.quit_typed(now);
            }
        }
    }

    /// A lone Escape whose sequence never came.
    pub(super) fn keys_timeout(&mut self, now: Instant) {
        if let Some(term) = &mut self.terminal
            && term.keys.poll_timeout().is_some_and(|t| t <= now)
        {
            term.keys.handle_timeout(now, &mut term.parsed);
            self.handle_keys(now);
        }
    }

    fn handle_keys(&mut self, now: Instant) {
        let Some(term) = &mut self.terminal else {
            return;
        };
        // Taken out while they run (a key may reach anything on the node), the buffer given
        // back after.
        let mut keys = std::mem::take(&mut term.parsed);
        for key in keys.drain(..) {
            let Some(term) = &mut self.terminal else {
                return;
            };
            // What precedes the word being completed says what may complete it.
            let before = match key {
                Key::Tab | Key::BackTab => term.editor.line()[..term.editor.cursor()].to_owned(),
                _ => String::new(),
            };
            let table = &self.table;
            let complete = |word: &str, _first: bool| {
                let head = before.strip_suffix(word).unwrap_or(&before);
                console::completions(head, word, table.numbered_names())
            };
            let actions = term.editor.handle(key, &complete);
            // Several lines from one Enter: the lines of a multi-line paste.
            let pasted = actions
                .iter()
                .filter(|a| matches!(a, Action::Submit(_)))
                .count()
                > 1;
            for action in actions {
                self.on_action(now, action, pasted);
            }
        }
        if let Some(term) = &mut self.terminal {
            term.parsed = keys;
        }
    }

    fn on_action(&mut self, now: Instant, action: Action, pasted: bool) {
        match action {
            Action::Nothing | Action::Redraw => {}
            Action::Submit(line) => {
                if self.table.is_quitting() {
                    return;
                }
                // Debug builds only: how the tests check that a panic gives the terminal
                // its settings back.
                if cfg!(debug_assertions) && line == "/__panic" {
                    panic!("asked to panic (debug build)");
                }
                self.echo(now, &line);
                self.run_line_as(now, &line, pasted);
            }
            Action::Interrupt if self.table.is_quitting() => {
                self.tell(&Event::Info(
                    "Ctrl-C while quitting: leaving now, without waiting for the last sends"
                        .to_owned(),
                ));
                self.exit = true;
                self.leave_now = true;
            }
            // Ctrl-C at a menu question takes the question back, as a shell's does.
            Action::Interrupt if self.console.cancel() => {
                self.stdout
                    .event(&Event::Info("question cancelled".to_owned()));
            }
            Action::Interrupt => self.quit_typed(now),
            Action::Eof if !self.table.is_quitting() => self.quit_typed(now),
            Action::Eof => {}
            Action::ClearScreen => self.stdout.clear_screen(),
            Action::Suspend => {
                self.stdout.suspend_screen();
                let _ = self.stdout.flush();
                if let Some(term) = &self.terminal {
                    term.raw.suspend();
                }
                self.continued();
            }
            Action::PasteCut => self.tell(&Event::Refused(format!(
                "paste cut at {} KiB: the rest of it was dropped",
                crate::editor::MAX_LINE_BYTES / 1024
            ))),
        }
    }

    /// What was typed, shown above the input line, so the screen reads as a transcript.
    fn echo(&mut self, now: Instant, line: &str) {
        let prompt = self.prompt_text(now);
        self.stdout
            .event(&Event::Info(format!("{prompt}{}", line.replace('\n', " "))));
    }

    /// The input line's prompt: the menu's question when one is asked, `[bob] > ` with a
    /// current peer, else `> `; led by `(2 pending) ` while sends are slow to finish.
    fn prompt_text(&self, now: Instant) -> String {
        let base = if self.console.in_dialog() || self.console.current().is_some() {
            self.prompt().into_owned()
        } else {
            "> ".to_owned()
        };
        match self.slow_sends(now) {
            0 => base,
            n => format!("({n} pending) {base}"),
        }
    }

    /// Draws the input line as the editor has it now (or none once quitting); called
    /// every turn, it is written only when it changed.
    pub(super) fn redraw_input(&mut self, now: Instant) {
        if self.terminal.is_none() {
            return;
        }
        if self.table.is_quitting() {
            self.stdout.end_input();
            return;
        }
        let prompt = self.prompt_text(now);
        let Some(term) = &self.terminal else { return };
        let view = term.editor.view(&prompt, term.width);
        self.stdout.set_input(&view.text, view.cursor_col);
    }

    /// The process was continued after a stop (SIGCONT): the shell gave the terminal its
    /// own settings meanwhile; raw mode back, the input line drawn again.
    pub(super) fn continued(&mut self) {
        let Some(term) = &self.terminal else {
            return;
        };
        term.raw.reapply();
        self.stdout.redraw_screen();
        self.resized();
    }

    /// The terminal was resized (SIGWINCH): lay the input line out again.
    pub(super) fn resized(&mut self) {
        let Some(term) = &mut self.terminal else {
            return;
        };
        if let Some(w) = tty::width(1) {
            term.width = w;
            self.stdout.set_width(w);
        }
    }

    /// Log lines held while the editor draws on stderr's terminal.
    pub(super) fn show_held_log(&mut self) {
        if self.terminal.as_ref().is_some_and(|t| t.holds_log) {
            let mut lines = Vec::new();
            log_sink::take_held(&mut lines);
            self.stdout.log_lines(&lines);
        }
    }
}
