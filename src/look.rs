//! How events look on an interactive terminal: a `HH:MM` stamp, colour, and lines wrapped
//! by the node itself so a wrapped event cannot pass for another one.
//!
//! Pure: it takes the human lines [`crate::render::human`] wrote for an event (every
//! peer-chosen string already made safe there), the wall-clock time and the terminal's
//! width, and appends what to write. Every event line starts at the left edge with its
//! stamp; every continuation (a wrapped line, or the rows of a peer list) starts with
//! spaces as wide as the stamp, so text a peer pads to the terminal's edge can never start
//! a line of its own that reads like a notification.
//!
//! Colour: each peer's name in a colour of its own, derived from the name (stable across
//! runs and nodes); failures and refusals in red; the user's own sends dimmed. Colour is
//! only ever added around text, never taken from it.

use unicode_width::UnicodeWidthChar;

use crate::event::{Event, PeerView, Purpose};
use crate::sanitize::name_for_terminal;

/// Width of `HH:MM ` and of a continuation's indent.
pub const STAMP_WIDTH: usize = 6;
const RESET: &str = "\x1b[0m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
/// Colours for names: distinct, readable on dark and light backgrounds.
const NAME_COLOURS: [&str; 10] = [
    "\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[36m", "\x1b[92m", "\x1b[93m", "\x1b[94m",
    "\x1b[95m", "\x1b[96m",
];

/// How interactive output is dressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub colour: bool,
    /// Local time to stamp events with (hour, minute); `None`: no stamp.
    pub stamp: Option<(u8, u8)>,
    /// The terminal's width in columns; `None`: lines are not wrapped.
    pub width: Option<usize>,
}

/// The colour a name is shown in: the same for the same name, everywhere.
pub fn name_colour(name: &str) -> &'static str {
    // FNV-1a: small, stable across runs and platforms (std's hasher is seeded).
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    NAME_COLOURS[(h % NAME_COLOURS.len() as u32) as usize]
}

/// Appends `human` (the event's human lines) dressed as `look` says.
pub fn dress(event: &Event, human: &str, look: &Look, out: &mut Vec<u8>) {
    let line_style = match event {
        // Failures, refusals, and the security warnings (a changed key, a downgrade).
        Event::SendFailed { .. }
        | Event::Refused(_)
        | Event::KeyChanged { .. }
        | Event::Downgrade { .. } => Some(RED),
        Event::Sent {
            purpose: Purpose::Text,
            ..
        } => Some(DIM),
        _ => None,
    };
    let name = peer_of(event).filter(|_| look.colour).map(|p| {
        // As render writes it: invisible characters spelt out.
        let who = format!("{} [{}]", name_for_terminal(p.name_or_unknown()), p.addr());
        (who, name_colour(p.name_or_unknown()))
    });
    let mut first = true;
    for line in human.lines() {
        let lead = match (look.stamp, first) {
            (Some((h, m)), true) => format!("{h:02}:{m:02} "),
            (Some(_), false) => " ".repeat(STAMP_WIDTH),
            (None, _) => String::new(),
        };
        first = false;
        let spans = spans(line, name.as_ref().map(|(w, c)| (w.as_str(), *c)));
        write_wrapped(
            &lead,
            &spans,
            line_style.filter(|_| look.colour),
            look.width,
            out,
        );
    }
}

/// The peer an event is about, whose name is coloured.
fn peer_of(event: &Event) -> Option<&PeerView> {
    match event {
        Event::NewPeer(p) | Event::ConnectedWithYou(p) | Event::PeerLeft(p) => Some(p),
        Event::Message { from, .. } => Some(from),
        Event::AddressMismatch { peer, .. } => Some(peer),
        Event::Sent { to, .. } | Event::SendFailed { to, .. } => Some(to),
        _ => None,
    }
}

/// A line cut where the peer's `NAME [ADDR]` is (its first occurrence: every wording puts
/// it before any text a peer chose), with that part's colour.
fn spans<'a>(
    line: &'a str,
    name: Option<(&str, &'static str)>,
) -> Vec<(&'a str, Option<&'static str>)> {
    if let Some((who, colour)) = name
        && let Some(at) = line.find(who)
    {
        let end = at + who.len();
        return vec![
            (&line[..at], None),
            (&line[at..end], Some(colour)),
            (&line[end..], None),
        ];
    }
    vec![(line, None)]
}

/// Writes one line's spans after `lead`, wrapped at `width`: at the last space that fits
/// (the space itself not shown), or inside a word longer than a whole line; every
/// continuation is indented by the stamp's width.
fn write_wrapped(
    lead: &str,
    spans: &[(&str, Option<&'static str>)],
    line_style: Option<&'static str>,
    width: Option<usize>,
    out: &mut Vec<u8>,
) {
    let indent = STAMP_WIDTH.max(2);
    // Too narrow to wrap usefully: let the terminal do it.
    let width = width.filter(|&w| w > indent + 4);
    // Each character with its columns and its span's colour.
    let cells: Vec<(char, usize, Option<&'static str>)> = spans
        .iter()
        .flat_map(|(text, colour)| {
            text.chars()
                .map(move |c| (c, c.width().unwrap_or(0), *colour))
        })
        .collect();
    let base = line_style.unwrap_or("");
    let mut start = 0;
    let mut col = lead.chars().count();
    out.extend_from_slice(lead.as_bytes());
    while start < cells.len() {
        // The end of this screen line: everything, or where it must break.
        let (end, next) = match width {
            None => (cells.len(), cells.len()),
            Some(width) => break_at(&cells[start..], width.saturating_sub(col))
                .map_or((cells.len(), cells.len()), |(e, n)| (start + e, start + n)),
        };
        out.extend_from_slice(base.as_bytes());
        let mut current: Option<&'static str> = None;
        for &(ch, _, colour) in &cells[start..end] {
            if colour != current {
                if current.is_some() {
                    out.extend_from_slice(RESET.as_bytes());
                    out.extend_from_slice(base.as_bytes());
                }
                if let Some(c) = colour {
                    out.extend_from_slice(c.as_bytes());
                }
                current = colour;
            }
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        if current.is_some() || line_style.is_some() {
            out.extend_from_slice(RESET.as_bytes());
        }
        out.push(b'\n');
        start = next;
        if start < cells.len() {
            out.extend(std::iter::repeat_n(b' ', indent));
            col = indent;
        }
    }
    if cells.is_empty() {
        out.push(b'\n');
    }
}

/// Where a line of `cells` must break to fit `room` columns: `None` if it fits; else the
/// end of what is shown and where the next line starts (past the space broken at).
fn break_at(cells: &[(char, usize, Option<&'static str>)], room: usize) -> Option<(usize, usize)> {
    let mut used = 0;
    let mut last_space = None;
    for (i, &(ch, w, _)) in cells.iter().enumerate() {
        if used + w > room {
            if ch == ' ' && i > 0 {
                // The space that does not fit is itself the break.
                return Some((i, i + 1));
            }
            return Some(match last_space {
                Some(sp) if sp > 0 => (sp, sp + 1),
                // A word longer than the line, or nothing fits: cut inside it (at least
                // one character per line, so the loop always moves on).
                _ => (i.max(1), i.max(1)),
            });
        }
        if ch == ' ' {
            last_space = Some(i);
        }
        used += w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Via;
    use crate::render;

    fn bob() -> PeerView {
        PeerView::new(Some("bob".into()), "10.0.0.2:9201".parse().unwrap())
    }

    fn shown(event: &Event, look: &Look) -> String {
        let mut human = Vec::new();
        render::human(event, &mut human);
        let mut out = Vec::new();
        dress(event, std::str::from_utf8(&human).unwrap(), look, &mut out);
        String::from_utf8(out).unwrap()
    }

    const PLAIN: Look = Look {
        colour: false,
        stamp: Some((9, 5)),
        width: Some(40),
    };

    #[test]
    fn an_event_gets_a_stamp_and_its_wrapped_lines_an_indent() {
        let text = "a".repeat(60);
        let e = Event::Message {
            from: bob(),
            text: text.clone(),
            cut: None,
            via: Via::Clear,
        };
        let out = shown(&e, &PLAIN);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("09:05 Message from bob [10.0.0.2:9201]:"));
        assert!(lines.len() >= 2, "{out:?}");
        for l in &lines[1..] {
            assert!(l.starts_with("      "), "continuation not indented: {l:?}");
        }
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{out:?}");
        // Nothing lost: the text is all there, in order.
        let joined: String = lines.iter().map(|l| l.trim_start()).collect();
        assert!(joined.contains(&text));
    }

    #[test]
    fn text_padded_to_the_edge_cannot_start_a_line_of_its_own() {
        // A peer pads its text so that a fake notification would start a new screen line.
        let fake = format!(
            "{}09:06 New peer found: mallory [10.0.0.9:1]",
            " ".repeat(11)
        );
        let e = Event::Message {
            from: bob(),
            text: fake,
            cut: None,
            via: Via::Clear,
        };
        let out = shown(&e, &PLAIN);
        for l in out.lines().skip(1) {
            assert!(
                !l.starts_with("09:06"),
                "a continuation passes for an event: {out:?}"
            );
            assert!(l.starts_with(' '));
        }
    }

    #[test]
    fn lines_break_at_spaces_and_words_longer_than_a_line_are_cut() {
        let e = Event::Info("the quick brown fox jumps over the lazy dog again and again".into());
        let out = shown(&e, &PLAIN);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "09:05 the quick brown fox jumps over the");
        assert_eq!(lines[1], "      lazy dog again and again");
        let long = Event::Info(format!("x {}", "y".repeat(70)));
        let out = shown(&long, &PLAIN);
        assert!(out.lines().all(|l| l.chars().count() <= 40), "{out:?}");
        let ys: usize = out.matches('y').count();
        assert_eq!(ys, 70, "nothing lost in a cut word: {out:?}");
    }

    #[test]
    fn wide_characters_are_never_split_at_the_edge() {
        let e = Event::Info("中".repeat(40));
        let out = shown(&e, &PLAIN);
        for l in out.lines() {
            let w: usize = l.chars().map(|c| c.width().unwrap_or(0)).sum();
            assert!(w <= 40, "{w} columns: {l:?}");
        }
    }

    #[test]
    fn colour_marks_names_failures_and_own_sends_and_never_wraps_escape_codes() {
        let look = Look {
            colour: true,
            ..PLAIN
        };
        let e = Event::Message {
            from: bob(),
            text: "hi".into(),
            cut: None,
            via: Via::Clear,
        };
        let out = shown(&e, &look);
        let c = name_colour("bob");
        assert!(
            out.contains(&format!("{c}bob [10.0.0.2:9201]{RESET}")),
            "{out:?}"
        );
        let sent = Event::Sent {
            to: bob(),
            purpose: Purpose::Text,
            text: "hi".into(),
            delivery: crate::event::Delivery::Closed,
            encrypted: false,
        };
        assert!(shown(&sent, &look).starts_with(&format!("09:05 {DIM}")));
        assert!(shown(&Event::Refused("no".into()), &look).contains(RED));
        let downgrade = Event::Downgrade {
            peer: PeerView::new(Some("bob".into()), "127.0.0.1:9001".parse().unwrap()),
            was: "p2pchat/2 (encrypted streams)".into(),
            now: "legacy".into(),
        };
        assert!(
            shown(&downgrade, &look).contains(RED),
            "a downgrade is loud"
        );
        // Off: no escape code at all.
        assert!(!shown(&e, &PLAIN).contains('\x1b'));
    }

    #[test]
    fn a_name_shown_with_its_invisible_characters_is_coloured_too() {
        let look = Look {
            colour: true,
            width: Some(80),
            ..PLAIN
        };
        let name = "bob\u{a0}";
        let e = Event::Message {
            from: PeerView::new(Some(name.into()), "10.0.0.2:9201".parse().unwrap()),
            text: "hi".into(),
            cut: None,
            via: Via::Clear,
        };
        let out = shown(&e, &look);
        let c = name_colour(name);
        assert!(
            out.contains(&format!("{c}bob<U+00A0> [10.0.0.2:9201]{RESET}")),
            "{out:?}"
        );
    }

    #[test]
    fn a_name_keeps_its_colour_and_names_spread_over_the_palette() {
        assert_eq!(name_colour("alice"), name_colour("alice"));
        let used: std::collections::HashSet<_> = ["alice", "bob", "carol", "dave", "erin", "frank"]
            .iter()
            .map(|n| name_colour(n))
            .collect();
        assert!(used.len() >= 3, "{used:?}");
    }

    #[test]
    fn a_peer_list_keeps_one_stamp_and_indents_its_rows() {
        let rows = vec![crate::event::PeerRow {
            index: 1,
            peer: bob(),
            status: crate::peer_table::PeerStatus::Connected,
            speaks: crate::event::Speaks::Unknown,
            key: Default::default(),
        }];
        let out = shown(&Event::Peers(rows), &PLAIN);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "09:05 Active Peers:");
        assert!(lines[1].starts_with("      1. bob"), "{out:?}");
    }
}
