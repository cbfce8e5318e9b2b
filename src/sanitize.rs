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
//!
//! Names get one more rule ([`name_for_terminal`], [`invisible`]): a character that shows
//! as nothing or as a plain space (zero-width and format characters, the soft hyphen, tag
//! characters, non-ASCII spaces such as NBSP) is written `<U+XXXX>`, so a peer called
//! `bob\u{a0}[10.0.0.2:9201]` cannot pass for `bob [10.0.0.2:9201]`. Our own name may hold
//! none of them (`config::check_name`).

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

/// A character that shows as nothing, or as a space that is not the ASCII one: zero-width
/// characters (U+200B–U+200D, U+2060–U+2064, U+FEFF), the soft hyphen (U+00AD), the
/// Mongolian vowel separator (U+180E), tag characters (U+E0000–U+E007F), bidirectional
/// controls and every non-ASCII space (NBSP U+00A0, U+1680, U+2000–U+200A, U+202F, U+205F,
/// U+3000). In a name it could fake what follows it.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{a0}'
        | '\u{ad}'
        | '\u{34f}'
        | '\u{61c}'
        | '\u{115f}' | '\u{1160}'
        | '\u{1680}'
        | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}'
        | '\u{2000}'..='\u{200f}'
        | '\u{2028}'..='\u{202f}'
        | '\u{205f}'..='\u{206f}'
        | '\u{3000}'
        | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{feff}'
        | '\u{ffa0}'
        | '\u{fff0}'..='\u{fff8}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}')
}

/// A peer's name made safe and unambiguous to show: as [`for_terminal`], and every
/// [`invisible`] character written `<U+XXXX>` (borrowed when there is nothing to change).
pub fn name_for_terminal(name: &str) -> Cow<'_, str> {
    if !name.contains(invisible) {
        return for_terminal(name);
    }
    let mut out = String::with_capacity(name.len() + 16);
    for c in name.chars() {
        if invisible(c) {
            let _ = write!(out, "<U+{:04X}>", c as u32);
        } else {
            let mut buf = [0u8; 4];
            out.push_str(&for_terminal(c.encode_utf8(&mut buf)));
        }
    }
    Cow::Owned(out)
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

    #[test]
    fn a_name_cannot_hide_characters_or_fake_a_space() {
        // NBSPs and a zero-width space cannot make one name read as a name and an address.
        assert_eq!(
            name_for_terminal("bob\u{a0}[10.0.0.2:9201]"),
            "bob<U+00A0>[10.0.0.2:9201]"
        );
        for (c, shown) in [
            ('\u{200b}', "<U+200B>"),
            ('\u{200d}', "<U+200D>"),
            ('\u{2060}', "<U+2060>"),
            ('\u{2064}', "<U+2064>"),
            ('\u{feff}', "<U+FEFF>"),
            ('\u{ad}', "<U+00AD>"),
            ('\u{180e}', "<U+180E>"),
            ('\u{e0041}', "<U+E0041>"),
            ('\u{e007f}', "<U+E007F>"),
            ('\u{202e}', "<U+202E>"),
            ('\u{2066}', "<U+2066>"),
            ('\u{2003}', "<U+2003>"),
            ('\u{202f}', "<U+202F>"),
            ('\u{205f}', "<U+205F>"),
            ('\u{3000}', "<U+3000>"),
        ] {
            assert!(invisible(c), "{c:?}");
            assert_eq!(name_for_terminal(&format!("a{c}b")), format!("a{shown}b"));
        }
        // Controls are still made inert alongside.
        assert_eq!(name_for_terminal("\u{1b}\u{200b}"), "␛<U+200B>");
        assert_eq!(name_for_terminal("\u{1b}x"), "␛x");
        // Ordinary names, non-Latin ones and emoji with their joiner-free forms, are kept.
        for ok in ["bob", "zoë", "日本", "Ωmega", "a-b_c.d", "🙂"] {
            assert!(
                matches!(name_for_terminal(ok), Cow::Borrowed(n) if n == ok),
                "{ok}"
            );
        }
    }
}
