//! `sanitize::for_terminal` on arbitrary bytes (as the node sees them: lossy UTF-8): no
//! dangerous character survives, and text without one comes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pchat::sanitize;

/// C0 and C1 controls, DEL, bidirectional controls, line/paragraph separators and the
/// BOM: what may never reach the terminal (written out independently of the sanitiser).
fn dangerous(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f
        | 0x7f..=0x9f
        | 0x61c
        | 0x200e | 0x200f
        | 0x202a..=0x202e
        | 0x2066..=0x2069
        | 0x2028 | 0x2029
        | 0xfeff)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let out = sanitize::for_terminal(&text);
    if let Some(c) = out.chars().find(|&c| dangerous(c)) {
        panic!("{c:?} survived in {out:?} (from {text:?})");
    }
    if !text.chars().any(dangerous) {
        assert_eq!(out, text);
    }
    let lines = sanitize::for_terminal_lines(&text);
    assert!(!lines.chars().any(|c| c != '\n' && dangerous(c)));
    assert_eq!(lines.matches('\n').count(), text.matches('\n').count());
});
