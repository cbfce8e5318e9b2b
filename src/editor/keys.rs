//! Bytes from a raw-mode terminal, as keys.
//!
//! A [`KeyParser`] is a byte-at-a-time state machine, so where the terminal's bytes are
//! split across reads never changes the keys that come out: a UTF-8 character or an escape
//! sequence cut in two is held until the rest arrives.
//!
//! What it understands:
//!
//! * UTF-8 text. Invalid bytes, overlong forms, surrogates and C1 controls are dropped.
//! * C0 controls: CR and LF are [`Key::Enter`] (a CR LF pair is one Enter), DEL and BS are
//!   [`Key::Backspace`], Tab, and the Ctrl keys of [`Key`]. The emacs motions Ctrl-B,
//!   Ctrl-F, Ctrl-P and Ctrl-N arrive as Left, Right, Up and Down. Other controls are
//!   dropped.
//! * CSI and SS3 sequences in their xterm, rxvt and linux-console spellings: arrows, Home
//!   and End (`ESC[H`, `ESC[F`, `ESC[1~`, `ESC[4~`, `ESC[7~`, `ESC[8~`, `ESCOH`, `ESCOF`),
//!   Delete (`ESC[3~`), Shift-Tab (`ESC[Z`), keypad Enter (`ESCOM`). An arrow with Ctrl or
//!   Alt held (`ESC[1;5D`, rxvt's `ESCOd`) is a word move; Alt-b and Alt-f too, and
//!   Alt-Backspace deletes a word as Ctrl-W does.
//! * Bracketed paste (`ESC[200~` ... `ESC[201~`) as one [`Key::Paste`], whatever it holds.
//!   At most [`MAX_PASTE_BYTES`] are kept; the rest is dropped and the paste flagged
//!   `truncated`. A paste whose end marker never comes ends [`PASTE_TIMEOUT`] after its
//!   last byte.
//! * A lone ESC: the Escape key and the start of a sequence look the same until the next
//!   byte, so ESC becomes [`Key::Escape`] only when nothing follows within
//!   [`ESC_TIMEOUT`]. A sequence left unfinished that long is dropped.
//!
//! Anything else that starts with ESC (function keys, Alt with another key, focus and
//! mouse reports, an unfinished sequence) is swallowed whole, never inserted as text.
//!
//! Time is passed in. After [`KeyParser::feed`], sleep no later than
//! [`KeyParser::poll_timeout`] and then call [`KeyParser::handle_timeout`]; calling it early
//! or twice does nothing.

use std::time::{Duration, Instant};

/// How long a lone ESC waits for the rest of a sequence before it is the Escape key.
pub const ESC_TIMEOUT: Duration = Duration::from_millis(50);

/// How long a bracketed paste may go without a byte before it is ended without its marker.
pub const PASTE_TIMEOUT: Duration = Duration::from_secs(1);

/// The most bytes of one bracketed paste that are kept.
pub const MAX_PASTE_BYTES: usize = 64 * 1024;

/// The most parameter bytes of a CSI sequence that are looked at; longer ones are unknown.
const MAX_PARAM_BYTES: usize = 16;

const ESC: u8 = 0x1b;
const PASTE_END: &[u8] = b"\x1b[201~";

/// One key press (or one paste) from the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    Enter,
    Backspace,
    Delete,
    Left,
    Right,
    /// Ctrl-Left, Alt-Left, Alt-b.
    WordLeft,
    /// Ctrl-Right, Alt-Right, Alt-f.
    WordRight,
    Home,
    End,
    Up,
    Down,
    Tab,
    /// Shift-Tab.
    BackTab,
    CtrlA,
    CtrlC,
    CtrlD,
    CtrlE,
    CtrlK,
    CtrlL,
    CtrlU,
    /// Ctrl-W, and Alt-Backspace.
    CtrlW,
    /// Ctrl-Z: suspend, as the shell's job control does.
    CtrlZ,
    /// A bracketed paste: its text as UTF-8 (invalid bytes dropped, nothing else changed),
    /// `truncated` when more than [`MAX_PASTE_BYTES`] came.
    Paste {
        text: String,
        truncated: bool,
    },
    /// The Escape key on its own.
    Escape,
}

/// Where the parser is inside a key's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ground,
    /// Inside a UTF-8 character: the bytes so far and how many more it needs. `keep` is
    /// false for a character typed with Alt, which is swallowed.
    Utf8 {
        bytes: [u8; 4],
        len: u8,
        need: u8,
        keep: bool,
    },
    /// After ESC.
    Escape,
    /// After `ESC [`: parameter and intermediate bytes so far (`overflow` once there were
    /// too many to keep).
    Csi {
        params: Vec<u8>,
        overflow: bool,
    },
    /// After `ESC [ [` (linux console F1–F5): one more byte ends it.
    LinuxFunction,
    /// After `ESC O`: parameter bytes so far.
    Ss3 {
        params: Vec<u8>,
    },
    /// Inside a bracketed paste.
    Paste(Paste),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Paste {
    bytes: Vec<u8>,
    truncated: bool,
    /// How many bytes of [`PASTE_END`] have matched so far.
    matched: usize,
}

/// Turns terminal bytes into [`Key`]s. See the module docs.
#[derive(Debug, Clone)]
pub struct KeyParser {
    state: State,
    /// When the pending escape sequence or paste gives up waiting.
    deadline: Option<Instant>,
    /// The last byte was a CR, so an LF right after it is part of the same Enter.
    after_cr: bool,
}

impl Default for KeyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyParser {
    pub fn new() -> Self {
        KeyParser {
            state: State::Ground,
            deadline: None,
            after_cr: false,
        }
    }

    /// Parses `bytes` read at `now`, appending the keys they complete to `out`.
    ///
    /// A pending sequence whose deadline had already passed at `now` is resolved first, as
    /// [`KeyParser::handle_timeout`] would have.
    pub fn feed(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<Key>) {
        self.handle_timeout(now, out);
        if bytes.is_empty() {
            return;
        }
        for &b in bytes {
            self.byte(b, out);
        }
        self.deadline = match self.state {
            State::Ground | State::Utf8 { .. } => None,
            State::Paste(_) => Some(now + PASTE_TIMEOUT),
            _ => Some(now + ESC_TIMEOUT),
        };
    }

    /// When [`KeyParser::handle_timeout`] should be called: a lone ESC or an unfinished
    /// sequence or paste is waiting for more bytes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Resolves what was waiting for more bytes if its deadline has passed: a lone ESC
    /// becomes [`Key::Escape`], an unfinished sequence is dropped, an unfinished paste is
    /// delivered as it is.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Key>) {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        self.deadline = None;
        match std::mem::replace(&mut self.state, State::Ground) {
            State::Escape => out.push(Key::Escape),
            State::Paste(mut paste) => {
                // The partial end marker was text after all.
                let matched = paste.matched;
                paste.matched = 0;
                for &b in &PASTE_END[..matched] {
                    paste.push(b);
                }
                out.push(paste.finish());
            }
            _ => {}
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Key>) {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match &mut self.state {
            State::Ground => self.ground(b, after_cr, out),
            State::Utf8 {
                bytes,
                len,
                need,
                keep,
            } => {
                if !(0x80..=0xbf).contains(&b) {
                    // Not a continuation: the character is cut short. Drop it and read the
                    // byte afresh.
                    self.state = State::Ground;
                    return self.byte(b, out);
                }
                bytes[*len as usize] = b;
                *len += 1;
                *need -= 1;
                if *need == 0 {
                    let keep = *keep;
                    let decoded = std::str::from_utf8(&bytes[..*len as usize])
                        .ok()
                        .and_then(|s| s.chars().next());
                    self.state = State::Ground;
                    if let Some(c) = decoded.filter(|c| keep && !c.is_control()) {
                        out.push(Key::Char(c));
                    }
                }
            }
            State::Escape => {
                self.state = State::Ground;
                match b {
                    b'[' => {
                        self.state = State::Csi {
                            params: Vec::new(),
                            overflow: false,
                        }
                    }
                    b'O' => self.state = State::Ss3 { params: Vec::new() },
                    b'b' => out.push(Key::WordLeft),
                    b'f' => out.push(Key::WordRight),
                    0x7f | 0x08 => out.push(Key::CtrlW),
                    ESC => {
                        // ESC ESC: the first was the Escape key (or rxvt's Alt prefix on
                        // an arrow, which then reads as the arrow).
                        out.push(Key::Escape);
                        self.state = State::Escape;
                    }
                    0x00..=0x1f => {
                        // Escape, then a control key typed quickly.
                        out.push(Key::Escape);
                        self.byte(b, out);
                    }
                    0x80..=0xff => {
                        // Alt with a non-ASCII character: swallow the whole character.
                        self.ground(b, false, out);
                        if let State::Utf8 { keep, .. } = &mut self.state {
                            *keep = false;
                        }
                    }
                    // Alt with any other key: unknown, swallowed.
                    _ => {}
                }
            }
            State::Csi { params, overflow } => match b {
                b'[' if params.is_empty() && !*overflow => self.state = State::LinuxFunction,
                0x20..=0x3f => {
                    if params.len() < MAX_PARAM_BYTES {
                        params.push(b);
                    } else {
                        *overflow = true;
                    }
                }
                0x40..=0x7e => {
                    let key = if *overflow {
                        CsiKey::Unknown
                    } else {
                        csi_key(params, b)
                    };
                    self.state = State::Ground;
                    match key {
                        CsiKey::Key(key) => out.push(key),
                        CsiKey::PasteStart => {
                            self.state = State::Paste(Paste {
                                bytes: Vec::new(),
                                truncated: false,
                                matched: 0,
                            })
                        }
                        CsiKey::Unknown => {}
                    }
                }
                _ => {
                    // A control or non-ASCII byte cannot be inside a sequence: drop the
                    // sequence and read the byte afresh.
                    self.state = State::Ground;
                    self.byte(b, out);
                }
            },
            State::LinuxFunction => {
                self.state = State::Ground;
                if !(0x20..=0x7e).contains(&b) {
                    self.byte(b, out);
                }
            }
            State::Ss3 { params } => match b {
                b'0'..=b'9' | b';' if params.len() < MAX_PARAM_BYTES => params.push(b),
                0x40..=0x7e => {
                    self.state = State::Ground;
                    if let Some(key) = ss3_key(b) {
                        out.push(key);
                    }
                }
                _ => {
                    self.state = State::Ground;
                    self.byte(b, out);
                }
            },
            State::Paste(paste) => {
                if b == PASTE_END[paste.matched] {
                    paste.matched += 1;
                    if paste.matched == PASTE_END.len() {
                        paste.matched = 0;
                        let key = paste.finish();
                        self.state = State::Ground;
                        out.push(key);
                    }
                } else {
                    // The bytes that looked like the end marker were text. ESC only starts
                    // the marker, so the match restarts at this byte.
                    let matched = std::mem::take(&mut paste.matched);
                    for &m in &PASTE_END[..matched] {
                        paste.push(m);
                    }
                    if b == PASTE_END[0] {
                        paste.matched = 1;
                    } else {
                        paste.push(b);
                    }
                }
            }
        }
    }

    fn ground(&mut self, b: u8, after_cr: bool, out: &mut Vec<Key>) {
        let key = match b {
            b'\r' => {
                self.after_cr = true;
                Key::Enter
            }
            b'\n' if after_cr => return,
            b'\n' => Key::Enter,
            0x7f | 0x08 => Key::Backspace,
            b'\t' => Key::Tab,
            0x01 => Key::CtrlA,
            0x02 => Key::Left,
            0x03 => Key::CtrlC,
            0x04 => Key::CtrlD,
            0x05 => Key::CtrlE,
            0x06 => Key::Right,
            0x0b => Key::CtrlK,
            0x0c => Key::CtrlL,
            0x0e => Key::Down,
            0x10 => Key::Up,
            0x15 => Key::CtrlU,
            0x17 => Key::CtrlW,
            0x1a => Key::CtrlZ,
            ESC => {
                self.state = State::Escape;
                return;
            }
            0x20..=0x7e => Key::Char(b as char),
            // A lead byte: 0xc2..=0xdf starts two bytes, 0xe0..=0xef three, 0xf0..=0xf4 four.
            0xc2..=0xf4 => {
                let need = match b {
                    0xc2..=0xdf => 1,
                    0xe0..=0xef => 2,
                    _ => 3,
                };
                self.state = State::Utf8 {
                    bytes: [b, 0, 0, 0],
                    len: 1,
                    need,
                    keep: true,
                };
                return;
            }
            // Other controls, stray continuation bytes, bytes never in UTF-8.
            _ => return,
        };
        out.push(key);
    }
}

impl Paste {
    fn push(&mut self, b: u8) {
        if self.bytes.len() < MAX_PASTE_BYTES {
            self.bytes.push(b);
        } else {
            self.truncated = true;
        }
    }

    fn finish(&mut self) -> Key {
        Key::Paste {
            text: utf8_dropping_invalid(&self.bytes),
            truncated: self.truncated,
        }
    }
}

/// `bytes` as text, with every byte that is not part of valid UTF-8 left out.
fn utf8_dropping_invalid(mut bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(valid).expect("checked valid"));
                // A character cut off at the end has no error_len: drop what is left.
                let skip = e.error_len().unwrap_or(rest.len());
                bytes = &rest[skip..];
            }
        }
    }
}

enum CsiKey {
    Key(Key),
    PasteStart,
    Unknown,
}

/// The key a CSI sequence with these parameters and final byte stands for.
fn csi_key(params: &[u8], last: u8) -> CsiKey {
    let Some(numbers) = parse_params(params) else {
        return CsiKey::Unknown;
    };
    let first = numbers.first().copied().flatten();
    // xterm's modifier parameter is 1 + (1 shift, 2 alt, 4 ctrl, 8 meta).
    let modifier = numbers.get(1).copied().flatten().unwrap_or(1);
    let word = modifier.saturating_sub(1) & 0b1110 != 0;
    let key = match (last, first) {
        (b'A', _) => Key::Up,
        (b'B', _) => Key::Down,
        (b'C', _) if word => Key::WordRight,
        (b'D', _) if word => Key::WordLeft,
        (b'C', _) => Key::Right,
        (b'D', _) => Key::Left,
        // rxvt's Shift-arrows.
        (b'a', None) => Key::Up,
        (b'b', None) => Key::Down,
        (b'c', None) => Key::Right,
        (b'd', None) => Key::Left,
        (b'H', _) => Key::Home,
        (b'F', _) => Key::End,
        (b'Z', None) => Key::BackTab,
        (b'~', Some(1 | 7)) => Key::Home,
        (b'~', Some(4 | 8)) => Key::End,
        (b'~', Some(3)) => Key::Delete,
        (b'~', Some(200)) => return CsiKey::PasteStart,
        _ => return CsiKey::Unknown,
    };
    CsiKey::Key(key)
}

/// Numeric parameters separated by `;` (an empty one is `None`); `None` when the
/// parameters are anything else (private markers, intermediates).
fn parse_params(params: &[u8]) -> Option<Vec<Option<u32>>> {
    if params.is_empty() {
        return Some(Vec::new());
    }
    params
        .split(|&b| b == b';')
        .map(|field| {
            if field.is_empty() {
                return Some(None);
            }
            if !field.iter().all(u8::is_ascii_digit) || field.len() > 5 {
                return None;
            }
            let n = field
                .iter()
                .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
            Some(Some(n))
        })
        .collect()
}

/// The key an SS3 sequence (`ESC O x`) stands for.
fn ss3_key(last: u8) -> Option<Key> {
    Some(match last {
        b'A' => Key::Up,
        b'B' => Key::Down,
        b'C' => Key::Right,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        b'M' => Key::Enter,
        // rxvt's Ctrl-arrows.
        b'a' => Key::Up,
        b'b' => Key::Down,
        b'c' => Key::WordRight,
        b'd' => Key::WordLeft,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
