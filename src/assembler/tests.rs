//! The assembler stepped with injected time: every framing rule without a socket or sleep.

use super::*;
use crate::wire::Body;

const H: &str = "127.0.0.1:7001 keeper ";

fn limits() -> Limits {
    Limits {
        max_message: 1024,
        read_timeout: Duration::from_secs(3),
        idle_flush: Duration::from_secs(1),
    }
}

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

/// Everything output so far, as (text-or-word, index, cut).
fn drain(a: &mut Assembler) -> Vec<Output> {
    std::iter::from_fn(|| a.poll_output()).collect()
}

/// The texts shown (control words as `<connect>`/`<exit>`), in order.
fn texts(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Message { msg, .. } => Some(match &msg.body {
                Body::Text(t) => t.clone(),
                Body::Connect => "<connect>".into(),
                Body::Exit => "<exit>".into(),
            }),
            _ => None,
        })
        .collect()
}

fn fire_until(a: &mut Assembler, until: Instant) {
    while let Some(t) = a.poll_timeout() {
        if t > until {
            return;
        }
        a.handle_timeout(t);
    }
}

#[test]
fn one_connection_one_message_ended_by_the_close() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}hello").as_bytes(), t0);
    assert!(
        drain(&mut a).is_empty(),
        "nothing before the close or a pause"
    );
    a.on_eof();
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["hello"]);
    assert!(matches!(
        out[0],
        Output::Message {
            index: 0,
            cut: None,
            ..
        }
    ));
    assert!(a.is_done());
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn an_empty_connection_is_a_probe() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_eof();
    assert_eq!(drain(&mut a), [Output::Probe]);
}

#[test]
fn malformed_bytes_are_dropped_with_the_reason() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(b"hello there", t0);
    a.on_eof();
    assert_eq!(
        drain(&mut a),
        [Output::Dropped {
            bytes: 11,
            why: Dropped::Malformed(WireError::NoAddress)
        }]
    );
}

/// A sender that keeps its connection open: each message is shown once it has been quiet
/// for the idle flush, or at once when the next one begins; the read deadline is per
/// message, so the connection lives past one --read-timeout.
#[test]
fn a_kept_open_connection_shows_each_message_and_is_timed_per_message() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}connect").as_bytes(), t0);
    assert_eq!(a.poll_timeout(), Some(ms(t0, 1000)));
    a.handle_timeout(ms(t0, 999));
    assert!(drain(&mut a).is_empty(), "not quiet long enough");
    a.handle_timeout(ms(t0, 1000));
    assert_eq!(texts(&drain(&mut a)), ["<connect>"]);
    // The next message gets its own deadline from the one before.
    assert_eq!(a.poll_timeout(), Some(ms(t0, 4000)));
    let mut t = 1000;
    for text in ["one", "two", "three"] {
        t += 1500;
        a.on_bytes(format!("{H}{text}").as_bytes(), ms(t0, t));
        // The new arrival repeats the header: the previous message is already whole.
        fire_until(&mut a, ms(t0, t + 1000));
        assert_eq!(texts(&drain(&mut a)), [text]);
    }
    assert!(!a.is_done(), "{t} ms: past one read timeout, still open");
    // Quiet past the read deadline: closed, nothing more to show.
    fire_until(&mut a, ms(t0, t + 1000 + 3000));
    assert!(a.is_done());
    assert!(drain(&mut a).is_empty());
}

#[test]
fn messages_written_back_to_back_in_separate_arrivals_are_split_at_once() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}one").as_bytes(), t0);
    a.on_bytes(format!("{H}two").as_bytes(), ms(t0, 10));
    let out = drain(&mut a);
    assert_eq!(
        texts(&out),
        ["one"],
        "the second begins: the first is whole"
    );
    a.on_bytes(format!("{H}exit").as_bytes(), ms(t0, 20));
    a.on_eof();
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["two", "<exit>"]);
    let indices: Vec<usize> = out
        .iter()
        .map(|o| match o {
            Output::Message { index, .. } => *index,
            _ => usize::MAX,
        })
        .collect();
    assert_eq!(indices, [1, 2]);
}

#[test]
fn a_text_quoting_its_own_header_in_one_arrival_stays_one_message() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    let text = format!("reach me at {H}exit ok?");
    a.on_bytes(format!("{H}{text}").as_bytes(), t0);
    a.on_eof();
    assert_eq!(texts(&drain(&mut a)), [text]);
}

/// A pause mid-text: the first part is shown after the idle flush; what follows without a
/// header is the rest of that sender's text (always text, even `exit`), never dropped; a
/// header arriving in pieces is not shown as text.
#[test]
fn pieces_of_a_paused_text_stay_text_and_with_their_sender() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}hello wor").as_bytes(), t0);
    fire_until(&mut a, ms(t0, 1500));
    a.on_bytes(b"ld", ms(t0, 1500));
    fire_until(&mut a, ms(t0, 3000));
    a.on_bytes(b"exit", ms(t0, 3000));
    fire_until(&mut a, ms(t0, 4500));
    a.on_bytes(b"127.0.0.1:", ms(t0, 4500));
    fire_until(&mut a, ms(t0, 6000));
    a.on_bytes(b"7001 keeper second", ms(t0, 6000));
    a.on_bytes(format!("{H}exit").as_bytes(), ms(t0, 6300));
    a.on_eof();
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["hello wor", "ld", "exit", "second", "<exit>"]);
    for o in &out {
        let Output::Message { msg, cut, .. } = o else {
            panic!("only messages: {o:?}");
        };
        assert_eq!(msg.name.as_deref(), Some("keeper"));
        assert_eq!(msg.port, Some(7001));
        assert_eq!(*cut, None);
    }
}

#[test]
fn a_piece_that_looks_like_a_header_start_is_still_text() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}hello").as_bytes(), t0);
    fire_until(&mut a, ms(t0, 1000));
    a.on_bytes(b"127", ms(t0, 1000));
    a.on_bytes(format!("{H}bye").as_bytes(), ms(t0, 1300));
    // "1" within the second after "bye": part of it.
    a.on_bytes(b"1", ms(t0, 1600));
    a.on_eof();
    assert_eq!(texts(&drain(&mut a)), ["hello", "127", "bye1"]);
}

#[test]
fn a_quiet_partial_header_is_not_a_message() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(b"127.0.0.1:50", t0);
    fire_until(&mut a, ms(t0, 1000));
    assert!(drain(&mut a).is_empty());
    a.on_bytes(b"00 late arrival", ms(t0, 1000));
    a.on_eof();
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["arrival"]);
    let Output::Message { msg, .. } = &out[0] else {
        unreachable!()
    };
    assert_eq!((msg.port, msg.name.as_deref()), (Some(5000), Some("late")));
}

#[test]
fn the_size_cap_is_per_message() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    let a600 = "A".repeat(600);
    let b600 = "B".repeat(600);
    a.on_bytes(format!("{H}{a600}").as_bytes(), t0);
    a.on_bytes(format!("{H}{b600}").as_bytes(), ms(t0, 200));
    a.on_eof();
    assert_eq!(texts(&drain(&mut a)), [a600.clone(), b600]);
    // One message grown past the cap by a piece that does not start anew.
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}{a600}").as_bytes(), t0);
    a.on_bytes("D".repeat(600).as_bytes(), ms(t0, 200));
    assert!(a.is_done());
    assert_eq!(a.buffered(), 0, "the bytes are let go at once");
    assert_eq!(
        drain(&mut a),
        [Output::Dropped {
            bytes: H.len() + 1200,
            why: Dropped::TooLarge { cap: 1024 }
        }]
    );
    a.on_bytes(b"more", ms(t0, 300));
    a.on_eof();
    assert!(drain(&mut a).is_empty(), "nothing after the end");
}

/// Defect 6 of issue 8: a whole message followed by a reset within the idle flush was
/// dropped; it is shown (marked: the sender did not close).
#[test]
fn a_whole_message_then_a_reset_is_shown_marked() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}see you").as_bytes(), t0);
    a.on_reset();
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["see you"]);
    assert!(matches!(
        out[0],
        Output::Message {
            cut: Some(Cut::Reset),
            ..
        }
    ));
    assert!(a.is_done());
}

#[test]
fn a_header_cut_short_is_dropped_as_cut_not_as_malformed() {
    let t0 = Instant::now();
    for (end, cut) in [
        (Assembler::on_reset as fn(&mut Assembler), Cut::Reset),
        (Assembler::on_evicted, Cut::Evicted),
    ] {
        let mut a = Assembler::new(limits(), t0);
        a.on_bytes(b"127.0.0.1:7001 ke", t0);
        end(&mut a);
        assert_eq!(
            drain(&mut a),
            [Output::Dropped {
                bytes: 17,
                why: Dropped::Cut(cut)
            }]
        );
    }
}

/// Defect 5 of issue 8: a sender evicted mid-message is not shown as if it had finished.
#[test]
fn an_evicted_unfinished_text_is_shown_marked_as_cut() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}the first half of").as_bytes(), t0);
    a.on_evicted();
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["the first half of"]);
    assert!(matches!(
        out[0],
        Output::Message {
            cut: Some(Cut::Evicted),
            ..
        }
    ));
}

#[test]
fn the_read_deadline_ends_an_unfinished_message_marked() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    // Trickled: never quiet for the idle flush, never whole before the deadline.
    let mut t = 0;
    for b in format!("{H}drip").bytes().chain(std::iter::repeat(b'.')) {
        if t >= 3000 {
            break;
        }
        a.on_bytes(&[b], ms(t0, t));
        fire_until(&mut a, ms(t0, t + 49));
        t += 50;
    }
    assert!(drain(&mut a).is_empty());
    assert_eq!(
        a.message_began(),
        t0,
        "the message in progress began at the accept"
    );
    fire_until(&mut a, ms(t0, 3000));
    let out = drain(&mut a);
    assert!(a.is_done());
    assert_eq!(
        texts(&out),
        [format!("drip{}", ".".repeat(60 - H.len() - 4))]
    );
    assert!(matches!(
        out[0],
        Output::Message {
            cut: Some(Cut::TimedOut),
            ..
        }
    ));
}

#[test]
fn extra_timeouts_and_inputs_after_the_end_are_harmless() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}x").as_bytes(), t0);
    a.on_eof();
    assert_eq!(texts(&drain(&mut a)), ["x"]);
    a.handle_timeout(ms(t0, 10_000));
    a.on_reset();
    a.on_evicted();
    a.on_eof();
    assert!(drain(&mut a).is_empty());
}

#[test]
fn memory_is_given_back_after_a_large_message() {
    let t0 = Instant::now();
    let mut big = limits();
    big.max_message = 64 * 1024;
    let mut a = Assembler::new(big, t0);
    a.on_bytes(format!("{H}{}", "x".repeat(60_000)).as_bytes(), t0);
    a.handle_timeout(ms(t0, 1000));
    assert_eq!(texts(&drain(&mut a)).len(), 1);
    assert_eq!(a.buffered(), 0);
    assert!(a.buf.capacity() <= 4096, "{}", a.buf.capacity());
}

#[test]
fn a_connection_complete_at_accept_follows_the_same_rules() {
    let t0 = Instant::now();
    let big = format!("{H}{}", "x".repeat(1100));
    let quoting = format!("{H}see {H}exit");
    let inputs: [&[u8]; 6] = [
        b"",
        b"no header",
        b"127.0.0.1:7001 keeper hi",
        quoting.as_bytes(),
        big.as_bytes(),
        b"127.0.0.1:7001 keeper exit\n",
    ];
    for data in inputs {
        let mut a = Assembler::new(limits(), t0);
        a.on_bytes(data, t0);
        a.on_eof();
        assert_eq!(
            drain(&mut a),
            [Assembler::whole(&limits(), data)],
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn arrivals_are_counted_per_message() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    assert_eq!(a.arrivals_in_message(), 0);
    for (i, b) in format!("{H}drip").bytes().enumerate() {
        a.on_bytes(&[b], ms(t0, 10 * i as u64));
    }
    assert_eq!(a.arrivals_in_message(), H.len() + 4);
    // The next message begins: the count starts again with its first arrival.
    a.on_bytes(format!("{H}next").as_bytes(), ms(t0, 500));
    assert_eq!(texts(&drain(&mut a)), ["drip"]);
    assert_eq!(a.arrivals_in_message(), 1);
    a.handle_timeout(ms(t0, 1500));
    assert_eq!(texts(&drain(&mut a)), ["next"]);
    assert_eq!(a.arrivals_in_message(), 0);
}

/// A message shown at the idle flush, then a reset with nothing more: it may have been cut,
/// and that is said; a read deadline after it is how kept-open senders end, not said.
#[test]
fn a_reset_after_a_message_shown_at_a_pause_says_it_may_be_cut() {
    let t0 = Instant::now();
    for (end, expect) in [
        (
            Assembler::on_reset as fn(&mut Assembler),
            vec![Output::ShownMayBeCut(Cut::Reset)],
        ),
        (
            Assembler::on_evicted,
            vec![Output::ShownMayBeCut(Cut::Evicted)],
        ),
        (Assembler::on_eof, vec![]),
    ] {
        let mut a = Assembler::new(limits(), t0);
        a.on_bytes(format!("{H}half-a-mess").as_bytes(), t0);
        a.handle_timeout(ms(t0, 1000));
        assert_eq!(texts(&drain(&mut a)), ["half-a-mess"]);
        end(&mut a);
        assert_eq!(drain(&mut a), expect);
    }
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}waiting for a reply").as_bytes(), t0);
    fire_until(&mut a, ms(t0, 10_000));
    assert_eq!(texts(&drain(&mut a)), ["waiting for a reply"]);
    assert!(a.is_done());
    // More bytes after the flush: a new message, nothing to say about the old one.
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}one").as_bytes(), t0);
    a.handle_timeout(ms(t0, 1000));
    a.on_bytes(format!("{H}two").as_bytes(), ms(t0, 1100));
    a.on_reset();
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["one", "two"]);
    assert!(!out.iter().any(|o| matches!(o, Output::ShownMayBeCut(_))));
}

/// Called late (output was backed up and the reactor held back), a message that was whole
/// and quiet before its read deadline is shown whole, not cut by the deadline.
#[test]
fn a_late_timeout_shows_a_message_that_was_whole_in_time_as_whole() {
    let t0 = Instant::now();
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(format!("{H}whole and quiet").as_bytes(), t0);
    a.handle_timeout(ms(t0, 5000));
    let out = drain(&mut a);
    assert_eq!(texts(&out), ["whole and quiet"]);
    assert!(
        matches!(out[0], Output::Message { cut: None, .. }),
        "{out:?}"
    );
    assert!(!a.is_done(), "its next message has a deadline of its own");
    // A header that never became a message is still cut by the deadline.
    let mut a = Assembler::new(limits(), t0);
    a.on_bytes(b"127.0.0.1:7001 ke", t0);
    a.handle_timeout(ms(t0, 5000));
    assert!(a.is_done());
    assert_eq!(
        drain(&mut a),
        [Output::Dropped {
            bytes: 17,
            why: Dropped::Cut(Cut::TimedOut)
        }]
    );
}
