//! The line editor: what the user types at the terminal, as lines to send. Pure.
//!
//! * [`keys`]: raw-mode terminal bytes as [`Key`]s ([`KeyParser`], time passed in).
//! * [`line`](mod@line): the text and its cursor, edited by grapheme cluster, bounded.
//! * [`history`]: the lines sent, bounded, kept in a private file across runs.
//! * [`complete`]: Tab completion (common prefix, then a cycle).
//! * [`view`]: what to draw: the prompt and the visible part of the line.
//!
//! # Contract
//!
//! Feed terminal bytes to a [`KeyParser`], hand each key to [`Editor::handle`] and carry
//! out the [`Action`]s it returns, in order. After any action (or a resize, or an event
//! printed above the input line) draw [`Editor::view`]. The editor never does IO; only
//! [`History::load`] and [`History::save`] touch the disk, and only when called.
//!
//! # Multi-line input
//!
//! A bracketed paste is inserted at the cursor and never sends anything by itself: its
//! line breaks stay in the line (shown as `⏎`), tabs become spaces, other controls are
//! dropped. Enter then sends each non-empty line of the buffer as its own
//! [`Action::Submit`], in order, and the history gets the whole buffer as one entry, so
//! Up brings the paste back as it was. A paste that does not all fit (see
//! [`Action::PasteCut`]) keeps what fits, and the caller is told to say so.

pub mod complete;
pub mod history;
pub mod keys;
pub mod line;
pub mod view;

use std::collections::BTreeMap;

pub use history::History;
pub use keys::{Key, KeyParser};
pub use line::{Line, MAX_LINE_BYTES};
pub use view::View;

use complete::Cycle;

/// What the caller should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed on screen (a move at the edge, a refused character).
    Nothing,
    /// The line or the cursor changed: draw [`Editor::view`] again. When present, it is
    /// the last action.
    Redraw,
    /// The user sent this line (never containing a line break). Enter on a buffer with
    /// line breaks gives one `Submit` per non-empty line, in order; Enter on a buffer
    /// without any gives exactly one, even empty (a question may take an empty answer).
    Submit(String),
    /// Ctrl-C on an empty line (on a non-empty one it clears the line).
    Interrupt,
    /// Ctrl-D on an empty line.
    Eof,
    /// Ctrl-L: clear the screen, then draw the view.
    ClearScreen,
    /// Ctrl-Z: give the terminal back and stop, as job control does; draw the view again
    /// once continued.
    Suspend,
    /// A paste did not all fit (more than [`keys::MAX_PASTE_BYTES`] came, or the line
    /// would have passed [`MAX_LINE_BYTES`]): what fitted is in the line, the rest was
    /// dropped. Tell the user, so that a cut message is not sent unknowingly.
    PasteCut,
}

/// Where Up and Down are in the history.
#[derive(Debug, Clone, Default)]
struct Recall {
    /// The entry shown (0 is the oldest); `None` while editing the draft.
    index: Option<usize>,
    /// The line being written before the first Up, and its cursor: back on Down past the
    /// newest entry.
    draft: Line,
    /// Recalled entries the user changed, by index: shown again when browsing back to
    /// them, until the line is sent or cleared.
    edited: BTreeMap<usize, Line>,
}

/// The input line with its cursor, history and completion state. See the module docs.
#[derive(Debug, Clone)]
pub struct Editor {
    line: Line,
    history: History,
    recall: Recall,
    cycle: Option<Cycle>,
}

impl Editor {
    pub fn new(history: History) -> Self {
        Editor {
            line: Line::new(),
            history,
            recall: Recall::default(),
            cycle: None,
        }
    }

    /// Handles one key. `complete` is asked for the candidates on Tab: it gets the word
    /// before the cursor (from the last white space; may be empty) and whether that word
    /// is the first on its line.
    pub fn handle(
        &mut self,
        key: Key,
        complete: &dyn Fn(&str, bool) -> Vec<String>,
    ) -> Vec<Action> {
        if !matches!(key, Key::Tab | Key::BackTab) {
            self.cycle = None;
        }
        let changed = match key {
            Key::Char(c) => self.line.insert(c.encode_utf8(&mut [0; 4])),
            Key::Paste { text, truncated } => {
                let before = self.line.as_str().len();
                let changed = self.line.insert(&text);
                let kept = self.line.as_str().len() - before;
                if truncated || kept < line::normalise(&text).len() {
                    let redraw = if changed {
                        Action::Redraw
                    } else {
                        Action::Nothing
                    };
                    return vec![Action::PasteCut, redraw];
                }
                changed
            }
            Key::Enter => return self.submit(),
            Key::Backspace => self.line.backspace(),
            Key::Delete => self.line.delete(),
            Key::Left => self.line.left(),
            Key::Right => self.line.right(),
            Key::WordLeft => self.line.word_left(),
            Key::WordRight => self.line.word_right(),
            Key::Home | Key::CtrlA => self.line.home(),
            Key::End | Key::CtrlE => self.line.end(),
            Key::CtrlW => self.line.delete_word_before(),
            Key::CtrlU => self.line.delete_to_start(),
            Key::CtrlK => self.line.delete_to_end(),
            Key::Up => self.recall_older(),
            Key::Down => self.recall_newer(),
            Key::Tab => self.complete(true, complete),
            Key::BackTab => self.complete(false, complete),
            Key::CtrlL => return vec![Action::ClearScreen],
            Key::CtrlZ => return vec![Action::Suspend],
            Key::CtrlC if self.line.is_empty() => return vec![Action::Interrupt],
            Key::CtrlC => {
                self.line.clear();
                self.recall = Recall::default();
                true
            }
            Key::CtrlD if self.line.is_empty() => return vec![Action::Eof],
            Key::CtrlD => self.line.delete(),
            Key::Escape => false,
        };
        vec![if changed {
            Action::Redraw
        } else {
            Action::Nothing
        }]
    }

    /// The text being edited (it may hold line breaks from a paste).
    pub fn line(&self) -> &str {
        self.line.as_str()
    }

    /// The cursor, a byte index into [`Editor::line`] on a grapheme boundary.
    pub fn cursor(&self) -> usize {
        self.line.cursor()
    }

    /// Replaces the line (normalised as a paste is, cut to [`MAX_LINE_BYTES`]) with the
    /// cursor at its end, leaving history browsing and completion.
    pub fn set_line(&mut self, text: &str) {
        self.line.set(text);
        self.recall = Recall::default();
        self.cycle = None;
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn history_mut(&mut self) -> &mut History {
        // Indexes into the history may change: start browsing afresh.
        self.recall.index = None;
        self.recall.edited.clear();
        &mut self.history
    }

    /// The completion being cycled through, if any: its candidates and which one is in
    /// the line (`None` while the word as typed is). For showing the choices.
    pub fn completions(&self) -> Option<(&[String], Option<usize>)> {
        self.cycle.as_ref().map(|c| (c.candidates(), c.shown()))
    }

    /// What to draw: `prompt` and the line laid out for a terminal `width` columns wide.
    pub fn view(&self, prompt: &str, width: usize) -> View {
        view::render(prompt, self.line.as_str(), self.line.cursor(), width)
    }

    fn submit(&mut self) -> Vec<Action> {
        let text = self.line.as_str();
        let mut actions: Vec<Action> = if text.contains('\n') {
            text.split('\n')
                .filter(|l| !l.is_empty())
                .map(|l| Action::Submit(l.to_owned()))
                .collect()
        } else {
            vec![Action::Submit(text.to_owned())]
        };
        self.history.push(text);
        self.line.clear();
        self.recall = Recall::default();
        actions.push(Action::Redraw);
        actions
    }

    fn recall_older(&mut self) -> bool {
        let target = match self.recall.index {
            None => self.history.len().checked_sub(1),
            Some(i) => i.checked_sub(1),
        };
        match target {
            Some(i) => self.show_entry(Some(i)),
            None => false,
        }
    }

    fn recall_newer(&mut self) -> bool {
        match self.recall.index {
            None => false,
            Some(i) if i + 1 < self.history.len() => self.show_entry(Some(i + 1)),
            Some(_) => self.show_entry(None),
        }
    }

    /// Leaves the line shown (keeping the user's changes) and shows entry `index`, or the
    /// draft.
    fn show_entry(&mut self, index: Option<usize>) -> bool {
        let leaving = std::mem::take(&mut self.line);
        match self.recall.index {
            None => self.recall.draft = leaving,
            Some(i) if self.history.get(i) != Some(leaving.as_str()) => {
                self.recall.edited.insert(i, leaving);
            }
            Some(i) => {
                self.recall.edited.remove(&i);
            }
        }
        self.recall.index = index;
        self.line = match index {
            None => std::mem::take(&mut self.recall.draft),
            Some(i) => self.recall.edited.get(&i).cloned().unwrap_or_else(|| {
                let mut line = Line::new();
                line.set(self.history.get(i).unwrap_or_default());
                line
            }),
        };
        true
    }

    fn complete(&mut self, forward: bool, complete: &dyn Fn(&str, bool) -> Vec<String>) -> bool {
        if let Some(cycle) = &mut self.cycle {
            let start = cycle.start();
            let text = cycle.step(forward).to_owned();
            if !self.line.replace_before_cursor(start, &text) {
                self.cycle = None;
                return false;
            }
            return true;
        }
        let start = self.line.current_word_start();
        let line = self.line.as_str();
        let word = &line[start..self.line.cursor()];
        let line_start = line[..start].rfind('\n').map_or(0, |i| i + 1);
        let first = line[line_start..start].trim().is_empty();
        let candidates = complete::dedup(complete(word, first));
        match candidates.as_slice() {
            [] => false,
            [only] => {
                let text = format!("{only} ");
                text != word && self.line.replace_before_cursor(start, &text)
            }
            _ => {
                let prefix = complete::longest_common_prefix(&candidates);
                if prefix.chars().count() > word.chars().count() {
                    let prefix = prefix.to_owned();
                    return self.line.replace_before_cursor(start, &prefix);
                }
                let mut cycle = Cycle::new(start, word, candidates);
                let text = cycle.step(forward).to_owned();
                if !self.line.replace_before_cursor(start, &text) {
                    return false;
                }
                self.cycle = Some(cycle);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests;
