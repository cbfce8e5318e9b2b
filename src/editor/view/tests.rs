use super::*;
use proptest::prelude::*;

/// The view of `line` with the cursor at the `|` in it.
fn at(prompt: &str, line: &str, width: usize) -> View {
    let cursor = line.find('|').expect("a cursor mark");
    render(prompt, &line.replace('|', ""), cursor, width)
}

fn view(text: &str, cursor_col: usize, prompt_bytes: usize) -> View {
    View {
        text: text.into(),
        cursor_col,
        prompt_bytes,
    }
}

#[test]
fn a_short_line_is_shown_whole() {
    assert_eq!(at("> ", "hi|", 80), view("> hi", 4, 2));
    assert_eq!(at("> ", "h|i", 80), view("> hi", 3, 2));
    assert_eq!(at("", "|", 80), view("", 0, 0));
    assert_eq!(at("[bob] > ", "|", 80), view("[bob] > ", 8, 8));
}

#[test]
fn columns_count_display_width() {
    assert_eq!(at("> ", "中文|", 80).cursor_col, 6);
    assert_eq!(at("> ", "中|文", 80).cursor_col, 4);
    assert_eq!(at("> ", "e\u{301}|x", 80).cursor_col, 3);
    assert_eq!(at("> ", "👍🏽|x", 80).cursor_col, 4);
    assert_eq!(at("> ", "🇫🇷|", 80).cursor_col, 4);
    assert_eq!(at("> ", "👨\u{200d}👩\u{200d}👧|", 80).cursor_col, 4);
    assert_eq!(at("中> ", "|", 80), view("中> ", 4, 5));
}

#[test]
fn line_breaks_and_controls_are_visible_and_inert() {
    assert_eq!(at("", "a\nb|", 80), view("a⏎b", 3, 0));
    assert_eq!(at("", "\x1b[31m|", 80), view("␛[31m", 5, 0));
    assert_eq!(at("", "a\u{202e}b|", 80), view("a\\u{202e}b", 10, 0));
    assert_eq!(at("", "a\u{200b}b|", 80), view("a\\u{200b}b", 10, 0));
    assert_eq!(at("", "\u{301}|", 80), view("\\u{0301}", 8, 0));
    assert_eq!(at("", "a\u{e0041}|", 80), view("a\\u{e0041}", 10, 0));
    // A subdivision flag is made of tag characters and stays as it is.
    let scotland = "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}";
    assert_eq!(at("", &format!("{scotland}|"), 80).text, scotland);
    assert_eq!(at("\x1b]0;x\x07> ", "|", 80).text, "␛]0;x␇> ");
}

#[test]
fn a_long_line_scrolls_to_keep_the_cursor_in_view() {
    let line: String = "0123456789".repeat(5);
    let with_cursor = |i: usize| format!("{}|{}", &line[..i], &line[i..]);
    // 20 columns: 19 usable, 17 for the line after the prompt.
    assert_eq!(
        at("> ", &with_cursor(50), 20),
        view("> 4567890123456789", 18, 2)
    );
    assert_eq!(
        at("> ", &with_cursor(0), 20),
        view("> 01234567890123456", 2, 2)
    );
    // In the middle: 5 columns of context after the cursor.
    let v = at("> ", &with_cursor(25), 20);
    assert_eq!(v, view("> 45678901234567890", 13, 2));
    assert_eq!(&v.text[v.cursor_col..], "567890");
    // Near the start no scrolling is needed yet.
    assert_eq!(at("> ", &with_cursor(11), 20).cursor_col, 13);
}

#[test]
fn wide_characters_are_never_split_at_an_edge() {
    let line = "中".repeat(30);
    let v = at("> ", &format!("{line}|"), 21);
    // 18 columns for the line; the one cut at the left edge is a blank.
    assert_eq!(v, view(&format!(">  {}", "中".repeat(8)), 19, 2));
    let v = at("> ", &format!("|{line}"), 21);
    assert_eq!(v, view(&format!("> {}", "中".repeat(9)), 2, 2));
    let v = at("> ", &format!("|{line}"), 20);
    assert_eq!(
        v,
        view(&format!("> {}", "中".repeat(8)), 2, 2),
        "17 columns: 8 fit"
    );
}

#[test]
fn a_wide_prompt_is_cut_to_leave_the_line_room() {
    // 20 columns: 19 usable, the line keeps half of them.
    let v = at("[averyveryverylongname] > ", "hi|", 20);
    assert_eq!(v, view("[averyver…hi", 12, "[averyver…".len()));
    // A menu question on an ordinary terminal is shown whole, the line keeping 16 columns.
    let q = "Enter the index of the peer to connect to (Enter 0 to connect to all): ";
    let v = at(q, "1|", 100);
    assert_eq!(v.text, format!("{q}1"));
    let v = at("[中文中文中文] > ", "|", 11);
    assert_eq!(
        v.text, "[中…",
        "a wide character that does not fit is left out"
    );
    assert_eq!(v.cursor_col, 4);
}

#[test]
fn tiny_widths_do_not_panic() {
    for width in 0..6 {
        for (prompt, line) in [
            ("", "|"),
            ("> ", "|"),
            ("[bob] > ", "abc|"),
            ("中", "中|文"),
            ("> ", "👨\u{200d}👩\u{200d}👧|"),
        ] {
            let v = at(prompt, line, width);
            if width <= 1 {
                assert_eq!(v, view("", 0, 0));
            } else {
                assert!(v.text.width() < width, "{v:?} {width}");
                assert!(v.cursor_col < width - 1 || v.cursor_col == 0, "{v:?}");
            }
        }
    }
    assert_eq!(
        at("> ", "abc|", 2),
        view("", 0, 0),
        "one column: the cursor only"
    );
    assert_eq!(at("> ", "abc|", 3), view(">", 1, 1));
}

const PIECES: &[&str] = &[
    "a",
    "Z",
    " ",
    "/",
    "é",
    "e\u{301}",
    "中",
    "ｗ",
    "👍🏽",
    "👨\u{200d}👩\u{200d}👧",
    "🇫🇷",
    "\n",
    "\x1b",
    "\u{200b}",
    "\u{202e}",
];

proptest! {
    #[test]
    fn the_cursor_is_always_in_view(
        pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..60),
        prompt in proptest::sample::select(&["", "> ", "[bob] > ", "[中文] > ", "\x1b> "][..]),
        cursor_pick in any::<prop::sample::Index>(),
        width in 0usize..50,
    ) {
        let line: String = pieces.concat();
        let boundaries: Vec<usize> = line
            .grapheme_indices(true)
            .map(|(i, _)| i)
            .chain([line.len()])
            .collect();
        let cursor = boundaries[cursor_pick.index(boundaries.len())];
        let v = render(prompt, &line, cursor, width);
        if width <= 1 {
            prop_assert_eq!(&v, &view("", 0, 0));
            return Ok(());
        }
        prop_assert!(v.text.width() < width, "{:?} too wide for {}", v, width);
        prop_assert!(v.cursor_col < width - 1, "{:?} cursor off screen", v);
        prop_assert!(!v.text.chars().any(sanitize::needs_escape), "{:?}", v);
        let prompt_width = v.text[..v.prompt_bytes].width();
        prop_assert!(v.cursor_col >= prompt_width);

        // The text before the cursor column is exactly that wide, and the graphemes on
        // either side of the cursor are drawn next to it when they fit.
        let k = v
            .text
            .grapheme_indices(true)
            .map(|(k, _)| k)
            .chain([v.text.len()])
            .find(|&k| v.text[..k].width() == v.cursor_col);
        prop_assert!(k.is_some(), "{:?}: no text boundary at the cursor", v);
        let k = k.unwrap();
        if let Some(g) = line[cursor..].graphemes(true).next() {
            let c = cell(g);
            if v.cursor_col + c.width < width {
                prop_assert!(v.text[k..].starts_with(&*c.text), "{:?} {:?}", v, g);
            }
        }
        if let Some(g) = line[..cursor].graphemes(true).next_back() {
            let c = cell(g);
            if v.cursor_col >= prompt_width + c.width {
                prop_assert!(v.text[..k].ends_with(&*c.text), "{:?} {:?}", v, g);
            }
        }
        // A line that fits is shown whole.
        if prompt_width + line.graphemes(true).map(|g| cell(g).width).sum::<usize>() < width - 1 {
            prop_assert_eq!(v.text[v.prompt_bytes..].width(),
                line.graphemes(true).map(|g| cell(g).width).sum::<usize>());
        }
    }
}
