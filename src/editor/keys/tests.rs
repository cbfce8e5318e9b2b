use super::*;
use proptest::prelude::*;

/// Everything `bytes` gives, in one read, with every pending sequence resolved.
fn keys(bytes: &[u8]) -> Vec<Key> {
    let t0 = Instant::now();
    let mut parser = KeyParser::new();
    let mut out = Vec::new();
    parser.feed(bytes, t0, &mut out);
    parser.handle_timeout(t0 + Duration::from_secs(10), &mut out);
    out
}

/// The same, one read per chunk, all at the same instant.
fn keys_split(chunks: &[&[u8]]) -> Vec<Key> {
    let t0 = Instant::now();
    let mut parser = KeyParser::new();
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, t0, &mut out);
    }
    parser.handle_timeout(t0 + Duration::from_secs(10), &mut out);
    out
}

/// Checks that each byte string is exactly its one key.
fn each_is_one_key(cases: &[(&[u8], Key)]) {
    for (bytes, key) in cases {
        assert_eq!(keys(bytes), vec![key.clone()], "{bytes:?}");
    }
}

fn chars(s: &str) -> Vec<Key> {
    s.chars().map(Key::Char).collect()
}

#[test]
fn printable_ascii_and_utf8_are_chars() {
    assert_eq!(keys(b"hi!"), chars("hi!"));
    assert_eq!(keys("é中👍🏽".as_bytes()), chars("é中👍🏽"));
    assert_eq!(
        keys("👨\u{200d}👩".as_bytes()),
        chars("👨\u{200d}👩"),
        "ZWJ is text, not a control"
    );
}

#[test]
fn control_keys() {
    let cases: &[(&[u8], Key)] = &[
        (b"\r", Key::Enter),
        (b"\n", Key::Enter),
        (b"\x7f", Key::Backspace),
        (b"\x08", Key::Backspace),
        (b"\t", Key::Tab),
        (b"\x01", Key::CtrlA),
        (b"\x02", Key::Left),
        (b"\x03", Key::CtrlC),
        (b"\x04", Key::CtrlD),
        (b"\x05", Key::CtrlE),
        (b"\x06", Key::Right),
        (b"\x0b", Key::CtrlK),
        (b"\x0c", Key::CtrlL),
        (b"\x0e", Key::Down),
        (b"\x10", Key::Up),
        (b"\x15", Key::CtrlU),
        (b"\x17", Key::CtrlW),
        (b"\x1a", Key::CtrlZ),
    ];
    each_is_one_key(cases);
    // Controls with no meaning here are dropped.
    assert_eq!(keys(b"\x00\x07\x11\x13\x1c\x1fa"), chars("a"));
}

#[test]
fn cr_lf_is_one_enter_but_two_crs_are_two() {
    assert_eq!(
        keys(b"a\r\nb"),
        vec![Key::Char('a'), Key::Enter, Key::Char('b')]
    );
    assert_eq!(keys(b"\r\r"), vec![Key::Enter, Key::Enter]);
    assert_eq!(keys(b"\n\n"), vec![Key::Enter, Key::Enter]);
    assert_eq!(keys_split(&[b"\r", b"\n"]), vec![Key::Enter]);
}

#[test]
fn arrows_in_every_spelling() {
    let cases: &[(&[u8], Key)] = &[
        (b"\x1b[A", Key::Up),
        (b"\x1b[B", Key::Down),
        (b"\x1b[C", Key::Right),
        (b"\x1b[D", Key::Left),
        (b"\x1bOA", Key::Up),
        (b"\x1bOB", Key::Down),
        (b"\x1bOC", Key::Right),
        (b"\x1bOD", Key::Left),
        // Shift held: still a plain move.
        (b"\x1b[1;2C", Key::Right),
        (b"\x1b[1;2A", Key::Up),
        // rxvt's Shift-arrows.
        (b"\x1b[c", Key::Right),
        (b"\x1b[d", Key::Left),
        (b"\x1b[a", Key::Up),
        (b"\x1b[b", Key::Down),
    ];
    each_is_one_key(cases);
}

#[test]
fn word_moves() {
    let cases: &[(&[u8], Key)] = &[
        (b"\x1b[1;5D", Key::WordLeft),
        (b"\x1b[1;5C", Key::WordRight),
        (b"\x1b[1;3D", Key::WordLeft),
        (b"\x1b[1;3C", Key::WordRight),
        (b"\x1b[1;9C", Key::WordRight),
        (b"\x1b[5D", Key::Left), // not a modifier: the first parameter is a count
        (b"\x1bOd", Key::WordLeft),
        (b"\x1bOc", Key::WordRight),
        (b"\x1bb", Key::WordLeft),
        (b"\x1bf", Key::WordRight),
        (b"\x1b\x7f", Key::CtrlW),
    ];
    each_is_one_key(cases);
}

#[test]
fn home_end_delete_backtab() {
    let cases: &[(&[u8], Key)] = &[
        (b"\x1b[H", Key::Home),
        (b"\x1b[F", Key::End),
        (b"\x1b[1~", Key::Home),
        (b"\x1b[4~", Key::End),
        (b"\x1b[7~", Key::Home),
        (b"\x1b[8~", Key::End),
        (b"\x1bOH", Key::Home),
        (b"\x1bOF", Key::End),
        (b"\x1b[1;5H", Key::Home),
        (b"\x1b[3~", Key::Delete),
        (b"\x1b[3;5~", Key::Delete),
        (b"\x1b[Z", Key::BackTab),
        (b"\x1bOM", Key::Enter),
    ];
    each_is_one_key(cases);
}

#[test]
fn unknown_sequences_are_swallowed_whole() {
    for bytes in [
        &b"\x1b[2~"[..],                                 // Insert
        b"\x1b[5~",                                      // Page Up
        b"\x1b[15~",                                     // F5
        b"\x1b[15;5~",                                   // Ctrl-F5
        b"\x1bOP",                                       // F1
        b"\x1b[[A",                                      // linux console F1
        b"\x1b[I",                                       // focus in
        b"\x1b[<0;12;5M",                                // SGR mouse
        b"\x1b[?1049h",                                  // a private mode (echoed)
        b"\x1b[12345678901;1~",                          // absurd numbers
        b"\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16D", // too long to look at
        b"\x1bx",                                        // Alt-x
        "\x1bé".as_bytes(),                              // Alt-é
        b"\x1b[201~",                                    // a paste end with no start
    ] {
        assert_eq!(keys(bytes), vec![], "{bytes:?}");
        let mut then_text = bytes.to_vec();
        then_text.extend_from_slice(b"ok");
        assert_eq!(keys(&then_text), chars("ok"), "{bytes:?} then text");
    }
}

#[test]
fn a_control_byte_inside_a_sequence_cuts_it_and_counts() {
    assert_eq!(keys(b"\x1b[1\x03"), vec![Key::CtrlC]);
    assert_eq!(keys(b"\x1bO\r"), vec![Key::Enter]);
    assert_eq!(keys(b"\x1b[1;\x1b[A"), vec![Key::Up]);
    assert_eq!(keys(b"\x1b[[\x03"), vec![Key::CtrlC]);
}

#[test]
fn lone_escape_waits_for_its_timeout() {
    let t0 = Instant::now();
    let mut parser = KeyParser::new();
    let mut out = Vec::new();
    parser.feed(b"\x1b", t0, &mut out);
    assert_eq!(out, vec![]);
    assert_eq!(parser.poll_timeout(), Some(t0 + ESC_TIMEOUT));
    parser.handle_timeout(t0 + ESC_TIMEOUT / 2, &mut out);
    assert_eq!(out, vec![], "too early: nothing");
    parser.handle_timeout(t0 + ESC_TIMEOUT, &mut out);
    assert_eq!(out, vec![Key::Escape]);
    assert_eq!(parser.poll_timeout(), None);
    parser.handle_timeout(t0 + ESC_TIMEOUT * 3, &mut out);
    assert_eq!(out, vec![Key::Escape], "a second call is a no-op");
    parser.feed(b"a", t0 + ESC_TIMEOUT * 3, &mut out);
    assert_eq!(out, vec![Key::Escape, Key::Char('a')]);
}

#[test]
fn escape_then_a_late_byte_is_escape_then_the_byte() {
    // The reactor did not wake for the deadline, but the read comes after it: the ESC is
    // resolved first.
    let t0 = Instant::now();
    let mut parser = KeyParser::new();
    let mut out = Vec::new();
    parser.feed(b"\x1b", t0, &mut out);
    parser.feed(b"b", t0 + ESC_TIMEOUT * 2, &mut out);
    assert_eq!(out, vec![Key::Escape, Key::Char('b')]);
    // Within the timeout it is Alt-b.
    out.clear();
    parser.feed(b"\x1b", t0, &mut out);
    parser.feed(b"b", t0 + ESC_TIMEOUT / 2, &mut out);
    assert_eq!(out, vec![Key::WordLeft]);
}

#[test]
fn escape_before_a_control_key_or_escape() {
    assert_eq!(keys(b"\x1b\x03"), vec![Key::Escape, Key::CtrlC]);
    assert_eq!(keys(b"\x1b\x1b"), vec![Key::Escape, Key::Escape]);
    assert_eq!(keys(b"\x1b\x1b[A"), vec![Key::Escape, Key::Up]);
}

#[test]
fn an_unfinished_sequence_is_dropped_at_its_timeout() {
    assert_eq!(keys(b"\x1b["), vec![]);
    assert_eq!(keys(b"\x1b[1;5"), vec![]);
    assert_eq!(keys(b"\x1bO"), vec![]);
    let t0 = Instant::now();
    let mut parser = KeyParser::new();
    let mut out = Vec::new();
    parser.feed(b"\x1b[1;", t0, &mut out);
    assert_eq!(parser.poll_timeout(), Some(t0 + ESC_TIMEOUT));
    parser.feed(b"5D", t0 + ESC_TIMEOUT * 2, &mut out);
    assert_eq!(out, chars("5D"), "after the timeout the rest is typed text");
}

#[test]
fn invalid_utf8_is_dropped() {
    assert_eq!(keys(b"a\xffb"), chars("ab"));
    assert_eq!(keys(b"a\x80b"), chars("ab"), "stray continuation");
    assert_eq!(keys(b"a\xc3b"), chars("ab"), "cut short by ASCII");
    assert_eq!(keys(b"\xc0\xaf"), vec![], "overlong");
    assert_eq!(keys(b"\xe0\x80\xaf"), vec![], "overlong");
    assert_eq!(keys(b"\xed\xa0\x80"), vec![], "surrogate");
    assert_eq!(keys(b"\xf4\x90\x80\x80"), vec![], "beyond U+10FFFF");
    assert_eq!(keys(b"\xc2\x9b"), vec![], "C1 CSI is not text");
    assert_eq!(keys(b"\xc3"), vec![], "cut short at the end");
    assert_eq!(keys(b"\xe4\xb8\x1b[A"), vec![Key::Up], "cut short by ESC");
}

#[test]
fn bracketed_paste_is_one_key() {
    assert_eq!(
        keys(b"x\x1b[200~line 1\r\nline\t2\x1b[A\x1b[201~y"),
        vec![
            Key::Char('x'),
            Key::Paste {
                text: "line 1\r\nline\t2\x1b[A".into(),
                truncated: false
            },
            Key::Char('y')
        ]
    );
    assert_eq!(
        keys(b"\x1b[200~\x1b[20\x1b\x1b[201~"),
        vec![Key::Paste {
            text: "\x1b[20\x1b".into(),
            truncated: false
        }],
        "near misses of the end marker are text"
    );
    assert_eq!(
        keys(b"\x1b[200~a\xffb\xe4\xb8\x1b[201~"),
        vec![Key::Paste {
            text: "ab".into(),
            truncated: false
        }]
    );
    assert_eq!(
        keys(b"\x1b[200~\x1b[201~"),
        vec![Key::Paste {
            text: String::new(),
            truncated: false
        }]
    );
}

#[test]
fn a_huge_paste_is_truncated_and_flagged() {
    let mut bytes = b"\x1b[200~".to_vec();
    bytes.extend(std::iter::repeat_n(b'z', MAX_PASTE_BYTES + 10));
    bytes.extend_from_slice(b"\x1b[201~!");
    let got = keys(&bytes);
    assert_eq!(got.len(), 2);
    match &got[0] {
        Key::Paste { text, truncated } => {
            assert_eq!(text.len(), MAX_PASTE_BYTES);
            assert!(truncated);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(got[1], Key::Char('!'));
}

#[test]
fn a_paste_without_its_end_ends_after_its_timeout() {
    let t0 = Instant::now();
    let mut parser = KeyParser::new();
    let mut out = Vec::new();
    parser.feed(b"\x1b[200~abc\x1b[20", t0, &mut out);
    assert_eq!(parser.poll_timeout(), Some(t0 + PASTE_TIMEOUT));
    parser.feed(b"1", t0 + PASTE_TIMEOUT / 2, &mut out);
    assert_eq!(
        parser.poll_timeout(),
        Some(t0 + PASTE_TIMEOUT / 2 + PASTE_TIMEOUT)
    );
    parser.handle_timeout(t0 + PASTE_TIMEOUT, &mut out);
    assert_eq!(out, vec![], "a byte came since: still waiting");
    parser.handle_timeout(t0 + PASTE_TIMEOUT * 2, &mut out);
    assert_eq!(
        out,
        vec![Key::Paste {
            text: "abc\x1b[201".into(),
            truncated: false
        }]
    );
    parser.feed(b"~", t0 + PASTE_TIMEOUT * 2, &mut out);
    assert_eq!(out.last(), Some(&Key::Char('~')));
}

#[test]
fn every_split_of_a_mixed_input_gives_the_same_keys() {
    let input: &[u8] =
        "a\x1b[1;5Dé\x1bOH中\x1b[3~\x1b[200~p\r\n\x1b[201~\r\n\x1bb👨\u{200d}👩\x1b[[B\x1b"
            .as_bytes();
    let whole = keys(input);
    assert_eq!(whole.len(), 13, "{whole:?}");
    for i in 0..=input.len() {
        for j in i..=input.len() {
            assert_eq!(
                keys_split(&[&input[..i], &input[i..j], &input[j..]]),
                whole,
                "split at {i} and {j}"
            );
        }
    }
}

proptest! {
    #[test]
    fn any_bytes_split_anywhere_give_the_same_keys(
        bytes in proptest::collection::vec(
            prop_oneof![
                any::<u8>(),
                Just(0x1b),
                Just(b'['),
                Just(b'~'),
                Just(b'2'),
                Just(b'0'),
                Just(b'1'),
                Just(b';'),
                Just(b'O'),
            ],
            0..64,
        ),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let whole = keys(&bytes);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&bytes[start..p]);
            start = p;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(keys_split(&chunks), whole.clone());
        for key in whole {
            if let Key::Char(c) = key {
                prop_assert!(!c.is_control(), "{:?}", c);
            }
        }
    }

    #[test]
    fn pastes_of_any_bytes_come_back_whole(text in "\\PC{0,40}") {
        let mut bytes = b"\x1b[200~".to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(b"\x1b[201~");
        prop_assert_eq!(keys(&bytes), vec![Key::Paste { text, truncated: false }]);
    }
}
