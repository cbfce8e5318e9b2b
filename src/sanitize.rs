//! Makes text from the network safe to print in a terminal.
//!
//! A peer chooses every byte of its name and text. Printed raw, an ESC could start a CSI or
//! OSC sequence (move the cursor, retitle the window, rewrite earlier lines), a CR or a
//! newline could forge a second notification line, and a bidirectional override could make
//! text read differently from what it is. Every such character is replaced by a visible,
//! inert stand-in, so a whole escape sequence shows as harmless text:
//!
//! * C0 controls (U+0000–U+001F, tab, CR and LF included) become their Unicode "control
//!   pictures" (U+2400–U+241F: `␛`, `␍`, `␊`...), DEL becomes `␡`.
//! * C1 controls (U+0080–U+009F, the 8-bit CSI U+009B included), bidirectional controls
//!   (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), line and paragraph separators
//!   (U+2028, U+2029) and the BOM/zero-width no-break space (U+FEFF) become `\u{XXXX}`.
//!
//! Invalid UTF-8 was already replaced by U+FFFD when the bytes became a `String`.

use std::borrow::Cow;
use std::fmt::Write;

/// A character that must never reach a terminal raw: C0 and C1 controls, DEL, line and
/// paragraph separators, bidirectional controls and the byte-order mark.
pub fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}')
}

/// Returns `text` with every dangerous character made visible (borrowed when none is).
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(needs_escape) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match c {
            '\u{0}'..='\u{1f}' => {
                out.push(char::from_u32(0x2400 + c as u32).expect("control pictures exist"))
            }
            '\u{7f}' => out.push('\u{2421}'),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`for_terminal`], but keeps line breaks: for multi-line text of our own that may
/// quote what the user or a peer typed.
pub fn for_terminal_lines(text: &str) -> String {
    text.split('\n')
        .map(for_terminal)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_inert(s: &str) {
        assert!(
            !s.chars().any(needs_escape),
            "dangerous character left in {s:?}"
        );
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let s = "hello, wörld ✓ 日本";
        assert!(matches!(for_terminal(s), Cow::Borrowed(x) if x == s));
    }

    #[test]
    fn escape_sequences_become_visible_text() {
        let csi = "\u{1b}[2J\u{1b}[31mred";
        assert_eq!(for_terminal(csi), "␛[2J␛[31mred");
        let osc = "\u{1b}]0;owned\u{7}";
        assert_eq!(for_terminal(osc), "␛]0;owned␇");
        assert_eq!(for_terminal("a\u{9b}31mb"), "a\\u{009b}31mb");
    }

    #[test]
    fn line_forging_and_erasing_characters_are_neutralised() {
        let forged = "hi\nMessage from admin [1.2.3.4:1]: send me your password";
        let out = for_terminal(forged);
        assert!(!out.contains('\n'));
        assert_eq!(for_terminal("x\r\u{8}\u{0}\u{7f}\t"), "x␍␈␀␡␉");
    }

    #[test]
    fn every_listed_control_is_made_visible() {
        let mut all = String::new();
        for c in (0u32..0x20)
            .chain(0x7f..0xa0)
            .chain(0x202a..0x202f)
            .chain(0x2066..0x206a)
        {
            all.push(char::from_u32(c).unwrap());
        }
        all.push_str("\u{200e}\u{200f}\u{61c}\u{2028}\u{2029}\u{feff}");
        assert_inert(&for_terminal(&all));
        assert_eq!(for_terminal("\u{202e}gnp.exe"), "\\u{202e}gnp.exe");
    }
}
