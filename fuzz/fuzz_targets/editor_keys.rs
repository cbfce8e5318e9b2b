//! The line editor fed arbitrary terminal bytes, split anywhere, with lone-Escape timeouts
//! between: no panic; the line stays within its bound; the cursor stays on a character
//! boundary; the view always fits the width.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use p2pchat::editor::{Editor, History, KeyParser, MAX_LINE_BYTES};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut keys = KeyParser::new();
    let mut editor = Editor::new(History::new(8));
    let complete = |word: &str, _first: bool| vec![format!("{word}x"), format!("{word}y")];
    let mut parsed = Vec::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let len = usize::from(op % 32).min(rest.len());
        let (bytes, tail) = rest.split_at(len);
        rest = tail;
        now += Duration::from_millis(u64::from(op / 32) * 20);
        keys.handle_timeout(now, &mut parsed);
        keys.feed(bytes, now, &mut parsed);
        for key in parsed.drain(..) {
            editor.handle(key, &complete);
        }
        let line = editor.line();
        assert!(line.len() <= MAX_LINE_BYTES, "line of {} bytes", line.len());
        assert!(line.is_char_boundary(editor.cursor()));
        let width = usize::from(op % 100) + 1;
        let view = editor.view("> ", width);
        assert!(view.cursor_col < width.max(1), "cursor {} in {width}", view.cursor_col);
    }
});
