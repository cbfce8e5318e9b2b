//! The text being edited and its cursor, moved and cut by grapheme cluster.
//!
//! A user thinks of "👨‍👩‍👧", "🇫🇷" or "é" written as `e` + U+0301 as one character, so every
//! move and every deletion goes by extended grapheme cluster (UAX #29, from the
//! `unicode-segmentation` crate), and the cursor is never left inside one. The text is
//! bounded at [`MAX_LINE_BYTES`]: input that would pass it is refused, never a panic.
//!
//! Line breaks can be in the text (a paste keeps them as `\n`); moves and deletions treat
//! the text as one string.

use unicode_segmentation::GraphemeCursor;

/// The most bytes the line can hold.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The edited text and the cursor, a byte index that is always on a grapheme boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    text: String,
    cursor: usize,
}

/// What a word is made of, for the two ways of going by word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    /// Letters and digits (readline's Alt-b, Alt-f).
    Alphanumeric,
    /// Anything but white space (readline's Ctrl-W).
    NonBlank,
}

impl Word {
    fn contains(self, grapheme: &str) -> bool {
        let Some(c) = grapheme.chars().next() else {
            return false;
        };
        match self {
            Word::Alphanumeric => c.is_alphanumeric(),
            Word::NonBlank => !c.is_whitespace(),
        }
    }
}

/// `text` as the editor keeps it: CR LF and lone CR become `\n`, a tab becomes a space,
/// and every other control, bidirectional or separator character (see
/// [`crate::sanitize::needs_escape`]) is dropped.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push('\n');
            }
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            c if crate::sanitize::needs_escape(c) => {}
            c => out.push(c),
        }
    }
    out
}

impl Line {
    pub fn new() -> Self {
        Line::default()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The cursor's byte index into [`Line::as_str`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replaces the text (normalised, cut to fit) and puts the cursor at its end.
    pub fn set(&mut self, text: &str) {
        self.text.clear();
        self.cursor = 0;
        self.insert(text);
    }

    /// Puts the cursor at `cursor`, or at the next grapheme boundary after it.
    pub fn set_cursor(&mut self, cursor: usize) {
        let mut cursor = cursor.min(self.text.len());
        while !self.text.is_char_boundary(cursor) {
            cursor += 1;
        }
        self.cursor = self.snap(cursor);
    }

    /// Empties the line. Returns whether there was anything.
    pub fn clear(&mut self) -> bool {
        let had = !self.text.is_empty();
        self.text.clear();
        self.cursor = 0;
        had
    }

    /// Inserts `text` (normalised) at the cursor and moves the cursor past it; as much as
    /// fits in [`MAX_LINE_BYTES`], cut at a character boundary. Returns whether anything
    /// was inserted.
    pub fn insert(&mut self, text: &str) -> bool {
        let text = normalise(text);
        let room = MAX_LINE_BYTES.saturating_sub(self.text.len());
        let mut end = text.len().min(room);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            return false;
        }
        self.text.insert_str(self.cursor, &text[..end]);
        // What was inserted may join a cluster with what was already there (a combining
        // mark, a ZWJ, the second half of a flag): keep the cursor on a boundary.
        self.cursor = self.snap(self.cursor + end);
        true
    }

    /// Replaces the bytes `start..self.cursor()` with `text` (normalised, if it fits) and
    /// puts the cursor after it. Returns whether it fitted.
    pub fn replace_before_cursor(&mut self, start: usize, text: &str) -> bool {
        let text = normalise(text);
        let start = start.min(self.cursor);
        if self.text.len() - (self.cursor - start) + text.len() > MAX_LINE_BYTES
            || !self.text.is_char_boundary(start)
        {
            return false;
        }
        self.text.replace_range(start..self.cursor, &text);
        self.cursor = self.snap(start + text.len());
        true
    }

    pub fn left(&mut self) -> bool {
        self.move_to(self.prev_boundary(self.cursor))
    }

    pub fn right(&mut self) -> bool {
        self.move_to(self.next_boundary(self.cursor))
    }

    pub fn home(&mut self) -> bool {
        self.move_to(0)
    }

    pub fn end(&mut self) -> bool {
        self.move_to(self.text.len())
    }

    /// To the start of the word before the cursor.
    pub fn word_left(&mut self) -> bool {
        self.move_to(self.word_start(Word::Alphanumeric))
    }

    /// To the end of the word after the cursor.
    pub fn word_right(&mut self) -> bool {
        let mut pos = self.cursor;
        for in_word in [false, true] {
            while pos < self.text.len() {
                let next = self.next_boundary(pos);
                if Word::Alphanumeric.contains(&self.text[pos..next]) != in_word {
                    break;
                }
                pos = next;
            }
        }
        self.move_to(pos)
    }

    /// Deletes the grapheme before the cursor.
    pub fn backspace(&mut self) -> bool {
        self.delete_range(self.prev_boundary(self.cursor), self.cursor)
    }

    /// Deletes the grapheme under the cursor.
    pub fn delete(&mut self) -> bool {
        self.delete_range(self.cursor, self.next_boundary(self.cursor))
    }

    /// Deletes from the start of the white-space-delimited word before the cursor to the
    /// cursor (Ctrl-W).
    pub fn delete_word_before(&mut self) -> bool {
        self.delete_range(self.word_start(Word::NonBlank), self.cursor)
    }

    /// Deletes everything before the cursor (Ctrl-U).
    pub fn delete_to_start(&mut self) -> bool {
        self.delete_range(0, self.cursor)
    }

    /// Deletes everything from the cursor on (Ctrl-K).
    pub fn delete_to_end(&mut self) -> bool {
        self.delete_range(self.cursor, self.text.len())
    }

    /// The byte index where the white-space-delimited word that ends at the cursor starts
    /// (the cursor itself after white space).
    pub fn current_word_start(&self) -> usize {
        self.text[..self.cursor]
            .rfind(char::is_whitespace)
            .map_or(0, |i| {
                i + self.text[i..].chars().next().map_or(1, char::len_utf8)
            })
    }

    /// The grapheme boundary before `pos` (0 at the start).
    pub fn prev_boundary(&self, pos: usize) -> usize {
        GraphemeCursor::new(pos, self.text.len(), true)
            .prev_boundary(&self.text, 0)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// The grapheme boundary after `pos` (the end at the end).
    pub fn next_boundary(&self, pos: usize) -> usize {
        GraphemeCursor::new(pos, self.text.len(), true)
            .next_boundary(&self.text, 0)
            .ok()
            .flatten()
            .unwrap_or(self.text.len())
    }

    /// `pos` if it is a grapheme boundary, else the next one.
    fn snap(&self, pos: usize) -> usize {
        let boundary = GraphemeCursor::new(pos, self.text.len(), true)
            .is_boundary(&self.text, 0)
            .unwrap_or(true);
        if boundary {
            pos
        } else {
            self.next_boundary(pos)
        }
    }

    fn word_start(&self, word: Word) -> usize {
        let mut pos = self.cursor;
        for in_word in [false, true] {
            while pos > 0 {
                let prev = self.prev_boundary(pos);
                if word.contains(&self.text[prev..pos]) != in_word {
                    break;
                }
                pos = prev;
            }
        }
        pos
    }

    fn move_to(&mut self, pos: usize) -> bool {
        let moved = pos != self.cursor;
        self.cursor = pos;
        moved
    }

    fn delete_range(&mut self, start: usize, end: usize) -> bool {
        if start >= end {
            return false;
        }
        self.text.replace_range(start..end, "");
        if self.cursor >= end {
            self.cursor -= end - start;
        } else if self.cursor > start {
            self.cursor = start;
        }
        // Deleting can join what was on either side (two halves of different flags).
        self.cursor = self.snap(self.cursor);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line with `text` and the cursor at the `|` in it.
    fn line(text: &str) -> Line {
        let cursor = text.find('|').expect("a cursor mark");
        let mut line = Line::new();
        line.set(&text.replace('|', ""));
        line.set_cursor(cursor);
        line
    }

    /// The line with a `|` at the cursor.
    fn show(line: &Line) -> String {
        let mut s = line.as_str().to_owned();
        s.insert(line.cursor(), '|');
        s
    }

    #[test]
    fn backspace_removes_one_grapheme() {
        for (before, after) in [
            ("abc|", "ab|"),
            ("é|", "|"),                 // composed
            ("e\u{301}|", "|"),          // decomposed
            ("xe\u{301}\u{327}|", "x|"), // two combining marks
            ("a👍🏽|", "a|"),              // skin tone
            ("👨\u{200d}👩\u{200d}👧|", "|"),
            ("🇫🇷🇩🇪|", "🇫🇷|"),
            ("中文|", "中|"),
            ("|abc", "|abc"),
            ("a|👍🏽b", "|👍🏽b"),
        ] {
            let mut l = line(before);
            l.backspace();
            assert_eq!(show(&l), after, "{before:?}");
        }
    }

    #[test]
    fn delete_removes_one_grapheme() {
        for (before, after) in [
            ("|abc", "|bc"),
            ("|e\u{301}x", "|x"),
            ("|👨\u{200d}👩\u{200d}👧!", "|!"),
            ("🇫🇷|🇩🇪", "🇫🇷|"),
            ("|中文", "|文"),
            ("abc|", "abc|"),
        ] {
            let mut l = line(before);
            l.delete();
            assert_eq!(show(&l), after, "{before:?}");
        }
    }

    #[test]
    fn left_and_right_step_over_whole_graphemes() {
        let mut l = line("e\u{301}👨\u{200d}👩\u{200d}👧🇫🇷中|");
        let mut stops = vec![l.cursor()];
        while l.left() {
            stops.push(l.cursor());
        }
        assert_eq!(stops, [32, 29, 21, 3, 0]);
        stops.clear();
        while l.right() {
            stops.push(l.cursor());
        }
        assert_eq!(stops, [3, 21, 29, 32]);
    }

    #[test]
    fn the_cursor_is_never_inside_a_grapheme() {
        let mut l = line("e\u{301}|");
        l.set_cursor(1);
        assert_eq!(l.cursor(), 3, "snapped forward");
        // Inserting a combining mark right after a letter joins it: the cursor stays after.
        let mut l = line("e|x");
        l.insert("\u{301}");
        assert_eq!(show(&l), "e\u{301}|x");
        // A ZWJ inserted between two emoji joins them into one cluster.
        let mut l = line("👨|👩");
        l.insert("\u{200d}");
        assert_eq!(show(&l), "👨\u{200d}👩|");
        // Deleting the flag between two halves joins them.
        let mut l = line("🇫|🇷🇩🇪");
        assert_eq!(l.cursor(), 8, "two regional indicators are one grapheme");
        l.home();
        l.delete();
        assert_eq!(show(&l), "|🇩🇪");
    }

    #[test]
    fn home_end() {
        let mut l = line("ab|c");
        assert!(l.home());
        assert_eq!(show(&l), "|abc");
        assert!(!l.home());
        assert!(l.end());
        assert_eq!(show(&l), "abc|");
        assert!(!l.end());
    }

    #[test]
    fn word_moves_go_by_letters_and_digits() {
        let mut l = line("/send #12 héllo, wörld|  ");
        let mut stops = Vec::new();
        while l.word_left() {
            stops.push(show(&l));
        }
        assert_eq!(
            stops,
            [
                "/send #12 héllo, |wörld  ",
                "/send #12 |héllo, wörld  ",
                "/send #|12 héllo, wörld  ",
                "/|send #12 héllo, wörld  ",
                "|/send #12 héllo, wörld  ",
            ]
        );
        stops.clear();
        while l.word_right() {
            stops.push(show(&l));
        }
        assert_eq!(
            stops,
            [
                "/send| #12 héllo, wörld  ",
                "/send #12| héllo, wörld  ",
                "/send #12 héllo|, wörld  ",
                "/send #12 héllo, wörld|  ",
                "/send #12 héllo, wörld  |",
            ]
        );
    }

    #[test]
    fn ctrl_w_deletes_back_to_white_space() {
        let mut l = line("/send #2 héllo, wö|rld");
        assert!(l.delete_word_before());
        assert_eq!(show(&l), "/send #2 héllo, |rld");
        assert!(l.delete_word_before());
        assert_eq!(show(&l), "/send #2 |rld");
        assert!(l.delete_word_before());
        assert!(l.delete_word_before());
        assert_eq!(show(&l), "|rld");
        assert!(!l.delete_word_before());
        let mut l = line("a   |");
        assert!(l.delete_word_before());
        assert_eq!(show(&l), "|");
    }

    #[test]
    fn ctrl_u_and_ctrl_k() {
        let mut l = line("hello |world");
        assert!(l.delete_to_start());
        assert_eq!(show(&l), "|world");
        assert!(!l.delete_to_start());
        l.set_cursor(2);
        assert!(l.delete_to_end());
        assert_eq!(show(&l), "wo|");
        assert!(!l.delete_to_end());
    }

    #[test]
    fn normalise_keeps_line_breaks_and_drops_controls() {
        assert_eq!(normalise("a\r\nb\rc\nd"), "a\nb\nc\nd");
        assert_eq!(normalise("a\tb"), "a b");
        assert_eq!(
            normalise("a\x1b[31mb\x07\u{202e}c\u{85}d\u{7f}"),
            "a[31mbcd"
        );
        assert_eq!(normalise("👨\u{200d}👩 e\u{301}"), "👨\u{200d}👩 e\u{301}");
    }

    #[test]
    fn the_line_is_bounded() {
        let mut l = Line::new();
        assert!(l.insert(&"x".repeat(MAX_LINE_BYTES - 1)));
        assert!(!l.insert("é"), "two bytes do not fit in one");
        assert!(l.insert("ab"), "as much as fits");
        assert_eq!(l.as_str().len(), MAX_LINE_BYTES);
        assert!(l.as_str().ends_with("xa"));
        assert!(!l.insert("y"));
        assert!(l.backspace());
        assert!(!l.replace_before_cursor(l.cursor(), "ab"));
        assert!(l.replace_before_cursor(l.cursor(), "a"));
    }

    #[test]
    fn replace_before_cursor_swaps_the_word() {
        let mut l = line("/se| x");
        assert!(l.replace_before_cursor(l.current_word_start(), "/send "));
        assert_eq!(show(&l), "/send | x");
        let mut l = line("hi bo|");
        assert_eq!(l.current_word_start(), 3);
        let mut l2 = line("hi |");
        assert_eq!(l2.current_word_start(), 3);
        assert!(l2.replace_before_cursor(3, "x"));
        assert!(l.replace_before_cursor(3, "bob"));
        assert_eq!(show(&l), "hi bob|");
        let l = line("a\u{3000}b|");
        assert_eq!(l.current_word_start(), "a\u{3000}".len());
    }
}
