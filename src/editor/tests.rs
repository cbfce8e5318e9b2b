use super::*;

fn no_completion(_: &str, _: bool) -> Vec<String> {
    Vec::new()
}

fn editor() -> Editor {
    Editor::new(History::new(history::DEFAULT_MAX_ENTRIES))
}

fn press(e: &mut Editor, key: Key) -> Vec<Action> {
    e.handle(key, &no_completion)
}

fn type_str(e: &mut Editor, text: &str) {
    for c in text.chars() {
        assert_eq!(press(e, Key::Char(c)), [Action::Redraw], "{c:?}");
    }
}

/// The line with a `|` at the cursor.
fn show(e: &Editor) -> String {
    let mut s = e.line().to_owned();
    s.insert(e.cursor(), '|');
    s
}

fn paste(text: &str) -> Key {
    Key::Paste {
        text: text.into(),
        truncated: false,
    }
}

#[test]
fn typing_and_moving() {
    let mut e = editor();
    type_str(&mut e, "hello world");
    assert_eq!(show(&e), "hello world|");
    assert_eq!(press(&mut e, Key::Left), [Action::Redraw]);
    assert_eq!(show(&e), "hello worl|d");
    press(&mut e, Key::Right);
    assert_eq!(press(&mut e, Key::Right), [Action::Nothing], "at the end");
    press(&mut e, Key::Home);
    assert_eq!(show(&e), "|hello world");
    assert_eq!(press(&mut e, Key::Left), [Action::Nothing]);
    press(&mut e, Key::End);
    assert_eq!(show(&e), "hello world|");
    press(&mut e, Key::CtrlA);
    assert_eq!(show(&e), "|hello world");
    press(&mut e, Key::CtrlE);
    assert_eq!(show(&e), "hello world|");
    press(&mut e, Key::WordLeft);
    assert_eq!(show(&e), "hello |world");
    press(&mut e, Key::WordLeft);
    press(&mut e, Key::WordRight);
    assert_eq!(show(&e), "hello| world");
    type_str(&mut e, ",");
    assert_eq!(show(&e), "hello,| world");
}

#[test]
fn deleting() {
    let mut e = editor();
    type_str(&mut e, "/send #2 hi there");
    press(&mut e, Key::CtrlW);
    assert_eq!(show(&e), "/send #2 hi |");
    press(&mut e, Key::WordLeft);
    press(&mut e, Key::CtrlK);
    assert_eq!(show(&e), "/send #2 |");
    press(&mut e, Key::Backspace);
    assert_eq!(show(&e), "/send #2|");
    press(&mut e, Key::Home);
    press(&mut e, Key::Delete);
    assert_eq!(show(&e), "|send #2");
    press(&mut e, Key::CtrlD);
    assert_eq!(show(&e), "|end #2", "Ctrl-D on a non-empty line deletes");
    press(&mut e, Key::WordRight);
    press(&mut e, Key::CtrlU);
    assert_eq!(show(&e), "| #2");
    assert_eq!(press(&mut e, Key::CtrlU), [Action::Nothing]);
    press(&mut e, Key::End);
    assert_eq!(press(&mut e, Key::Delete), [Action::Nothing]);
    assert_eq!(press(&mut e, Key::CtrlD), [Action::Nothing]);
}

#[test]
fn backspace_by_grapheme() {
    for text in ["é", "e\u{301}", "👍🏽", "👨\u{200d}👩\u{200d}👧", "🇫🇷", "中"] {
        let mut e = editor();
        type_str(&mut e, "a");
        // Typed one code point at a time, as a terminal sends it.
        for c in text.chars() {
            press(&mut e, Key::Char(c));
        }
        assert_eq!(e.cursor(), e.line().len(), "{text:?}");
        assert_eq!(press(&mut e, Key::Backspace), [Action::Redraw]);
        assert_eq!(show(&e), "a|", "{text:?}");
    }
    let mut e = editor();
    type_str(&mut e, "中文");
    press(&mut e, Key::Backspace);
    assert_eq!(show(&e), "中|");
    press(&mut e, Key::Left);
    press(&mut e, Key::Delete);
    assert_eq!(show(&e), "|");
}

#[test]
fn enter_submits_and_keeps_history() {
    let mut e = editor();
    type_str(&mut e, "hi");
    assert_eq!(
        press(&mut e, Key::Enter),
        [Action::Submit("hi".into()), Action::Redraw]
    );
    assert_eq!(show(&e), "|");
    assert_eq!(
        press(&mut e, Key::Enter),
        [Action::Submit(String::new()), Action::Redraw],
        "an empty line is still an answer"
    );
    type_str(&mut e, "hi");
    press(&mut e, Key::Enter);
    assert_eq!(e.history().entries().collect::<Vec<_>>(), ["hi"]);
}

#[test]
fn ctrl_c_ctrl_d_ctrl_l() {
    let mut e = editor();
    assert_eq!(press(&mut e, Key::CtrlC), [Action::Interrupt]);
    assert_eq!(press(&mut e, Key::CtrlD), [Action::Eof]);
    assert_eq!(press(&mut e, Key::CtrlL), [Action::ClearScreen]);
    type_str(&mut e, "oops");
    assert_eq!(press(&mut e, Key::CtrlL), [Action::ClearScreen]);
    assert_eq!(e.line(), "oops");
    assert_eq!(press(&mut e, Key::CtrlC), [Action::Redraw]);
    assert_eq!(show(&e), "|");
    assert_eq!(press(&mut e, Key::CtrlC), [Action::Interrupt]);
    assert_eq!(press(&mut e, Key::Escape), [Action::Nothing]);
}

#[test]
fn history_navigation_keeps_the_draft() {
    let mut e = editor();
    for line in ["one", "two", "three"] {
        type_str(&mut e, line);
        press(&mut e, Key::Enter);
    }
    type_str(&mut e, "draft");
    press(&mut e, Key::Left);
    assert_eq!(press(&mut e, Key::Up), [Action::Redraw]);
    assert_eq!(show(&e), "three|");
    press(&mut e, Key::Up);
    assert_eq!(show(&e), "two|");
    press(&mut e, Key::Up);
    assert_eq!(show(&e), "one|");
    assert_eq!(press(&mut e, Key::Up), [Action::Nothing], "the oldest");
    press(&mut e, Key::Down);
    assert_eq!(show(&e), "two|");
    // A change to a recalled entry is kept while browsing...
    type_str(&mut e, "!");
    press(&mut e, Key::Down);
    assert_eq!(show(&e), "three|");
    press(&mut e, Key::Down);
    assert_eq!(show(&e), "draf|t", "the draft comes back with its cursor");
    assert_eq!(press(&mut e, Key::Down), [Action::Nothing]);
    press(&mut e, Key::Up);
    press(&mut e, Key::Up);
    assert_eq!(show(&e), "two!|");
    // ...and sending it adds a new entry, leaving the old one as it was.
    press(&mut e, Key::Enter);
    assert_eq!(
        e.history().entries().collect::<Vec<_>>(),
        ["one", "two", "three", "two!"]
    );
    press(&mut e, Key::Up);
    press(&mut e, Key::Up);
    press(&mut e, Key::Up);
    assert_eq!(show(&e), "two|");
    press(&mut e, Key::Down);
    press(&mut e, Key::Down);
    press(&mut e, Key::Down);
    assert_eq!(show(&e), "|", "the draft after a send is empty");
}

#[test]
fn up_with_no_history_does_nothing() {
    let mut e = editor();
    type_str(&mut e, "x");
    assert_eq!(press(&mut e, Key::Up), [Action::Nothing]);
    assert_eq!(press(&mut e, Key::Down), [Action::Nothing]);
    assert_eq!(show(&e), "x|");
}

#[test]
fn history_mut_and_set_line() {
    let mut e = editor();
    e.history_mut().push("loaded");
    press(&mut e, Key::Up);
    assert_eq!(show(&e), "loaded|");
    e.set_line("new\ttext");
    assert_eq!(show(&e), "new text|");
    assert_eq!(
        press(&mut e, Key::Down),
        [Action::Nothing],
        "browsing ended"
    );
}

fn completer(word: &str, first: bool) -> Vec<String> {
    let commands = ["/send", "/say", "/quit", "/query"];
    let peers = ["bob", "bobby", "alice"];
    let pool: &[&str] = if first && word.starts_with('/') {
        &commands
    } else {
        &peers
    };
    pool.iter()
        .filter(|c| c.starts_with(word))
        .map(|c| c.to_string())
        .collect()
}

fn tab(e: &mut Editor, key: Key) -> Vec<Action> {
    e.handle(key, &completer)
}

#[test]
fn completion_single_candidate_gets_a_space() {
    let mut e = editor();
    type_str(&mut e, "/qui");
    assert_eq!(tab(&mut e, Key::Tab), [Action::Redraw]);
    assert_eq!(show(&e), "/quit |");
    type_str(&mut e, "al");
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/quit alice |");
    type_str(&mut e, "zed");
    assert_eq!(tab(&mut e, Key::Tab), [Action::Nothing], "no candidates");
}

#[test]
fn completion_prefix_then_cycle() {
    let mut e = editor();
    type_str(&mut e, "/q");
    assert_eq!(tab(&mut e, Key::Tab), [Action::Redraw]);
    assert_eq!(show(&e), "/qu|", "the common prefix");
    assert_eq!(e.completions(), None);
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/quit|", "nothing more in common: cycle");
    let candidates = ["/quit".to_string(), "/query".to_string()];
    assert_eq!(e.completions(), Some((&candidates[..], Some(0))));
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/query|");
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/qu|", "back to what was typed");
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/quit|");
    tab(&mut e, Key::BackTab);
    assert_eq!(show(&e), "/qu|");
    tab(&mut e, Key::BackTab);
    assert_eq!(show(&e), "/query|");
    // Any other key ends the cycle and keeps the choice.
    type_str(&mut e, " ");
    assert_eq!(e.completions(), None);
    assert_eq!(show(&e), "/query |");
    type_str(&mut e, "b");
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/query bob|");
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/query bob|", "cycle: bob first");
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/query bobby|");
}

#[test]
fn completion_in_the_middle_of_a_line() {
    let mut e = editor();
    type_str(&mut e, "/s al hi");
    press(&mut e, Key::WordLeft);
    press(&mut e, Key::Left);
    assert_eq!(show(&e), "/s al| hi");
    tab(&mut e, Key::Tab);
    assert_eq!(show(&e), "/s alice | hi");
    press(&mut e, Key::Home);
    press(&mut e, Key::Right);
    press(&mut e, Key::Right);
    tab(&mut e, Key::BackTab);
    assert_eq!(show(&e), "/say| alice  hi", "Shift-Tab starts at the last");
}

#[test]
fn completer_sees_the_word_and_whether_it_is_first() {
    use std::cell::RefCell;
    let asked = RefCell::new(Vec::new());
    let record = |word: &str, first: bool| {
        asked.borrow_mut().push((word.to_owned(), first));
        Vec::new()
    };
    let mut e = editor();
    e.handle(Key::Tab, &record);
    type_str(&mut e, "  /se");
    e.handle(Key::Tab, &record);
    type_str(&mut e, " b");
    e.handle(Key::Tab, &record);
    e.handle(paste("x\n  ab"), &record);
    e.handle(Key::Tab, &record);
    type_str(&mut e, " ");
    e.handle(Key::Tab, &record);
    assert_eq!(
        asked.into_inner(),
        [
            ("".into(), true),
            ("/se".into(), true),
            ("b".into(), false),
            ("ab".into(), true),
            ("".into(), false),
        ]
    );
}

#[test]
fn paste_with_line_breaks_never_submits_and_enter_sends_each_line() {
    let mut e = editor();
    type_str(&mut e, "> ");
    assert_eq!(
        press(&mut e, paste("first\r\nsecond\r\n\r\n\tthird\x1b[31m\n")),
        [Action::Redraw]
    );
    assert_eq!(show(&e), "> first\nsecond\n\n third[31m\n|");
    assert_eq!(
        press(&mut e, Key::Enter),
        [
            Action::Submit("> first".into()),
            Action::Submit("second".into()),
            Action::Submit(" third[31m".into()),
            Action::Redraw,
        ]
    );
    assert_eq!(
        e.history().entries().collect::<Vec<_>>(),
        ["> first\nsecond\n\n third[31m\n"],
        "one entry for the whole paste"
    );
    press(&mut e, Key::Up);
    assert_eq!(e.line(), "> first\nsecond\n\n third[31m\n");
}

#[test]
fn a_paste_goes_in_at_the_cursor() {
    let mut e = editor();
    type_str(&mut e, "ab");
    press(&mut e, Key::Left);
    press(&mut e, paste("XY"));
    assert_eq!(show(&e), "aXY|b");
    assert_eq!(press(&mut e, paste("\x07")), [Action::Nothing]);
}

#[test]
fn the_line_is_bounded_without_panicking() {
    let mut e = editor();
    let big = "é".repeat(MAX_LINE_BYTES);
    assert_eq!(
        press(&mut e, paste(&big)),
        [Action::PasteCut, Action::Redraw]
    );
    assert_eq!(e.line().len(), MAX_LINE_BYTES);
    assert_eq!(press(&mut e, Key::Char('x')), [Action::Nothing]);
    assert_eq!(
        press(&mut e, paste("x")),
        [Action::PasteCut, Action::Nothing]
    );
    press(&mut e, Key::Backspace);
    assert_eq!(
        press(&mut e, Key::Char('x')),
        [Action::Redraw],
        "two bytes free: x fits"
    );
}

#[test]
fn a_paste_that_does_not_all_fit_says_so() {
    let mut e = editor();
    let cut = Key::Paste {
        text: "x".repeat(10),
        truncated: true,
    };
    assert_eq!(press(&mut e, cut), [Action::PasteCut, Action::Redraw]);
    assert_eq!(e.line().len(), 10);
    // The line is nearly full: only part of a whole paste fits.
    let mut e = editor();
    press(&mut e, paste(&"a".repeat(MAX_LINE_BYTES - 3)));
    assert_eq!(
        press(&mut e, paste("bcdef")),
        [Action::PasteCut, Action::Redraw]
    );
    assert_eq!(e.line().len(), MAX_LINE_BYTES);
    assert_eq!(
        press(&mut e, paste("g")),
        [Action::PasteCut, Action::Nothing]
    );
    // Controls dropped on purpose are not a cut.
    let mut e = editor();
    assert_eq!(press(&mut e, paste("a\u{7}b")), [Action::Redraw]);
}
