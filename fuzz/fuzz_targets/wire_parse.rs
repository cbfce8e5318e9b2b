//! `wire::parse` and `wire::new_message_at` on arbitrary bytes: no panic, a message
//! boundary is only ever a copy of the first header, and whatever parses with an IP header re-encodes
//! (when `encode` accepts it) into bytes that parse back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pchat::wire::{self, Body, ClaimedHost, WireError};

/// What a receiver does to the text: one trailing `\r\n` or `\n` goes.
fn strip_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// Everything up to and including the second space: the header a split repeats.
fn header_prefix(buf: &[u8]) -> Option<&[u8]> {
    let s1 = buf.iter().position(|&b| b == b' ')?;
    let s2 = s1 + 1 + buf[s1 + 1..].iter().position(|&b| b == b' ')?;
    Some(&buf[..=s2])
}

fn check_boundary(data: &[u8], at: usize) {
    let Some(header) = wire::header_prefix(data) else {
        return;
    };
    match wire::new_message_at(data, at, header) {
        Some(true) => {
            let prefix = header_prefix(data).expect("a boundary implies a header");
            assert!(at > prefix.len(), "boundary {at} inside the first header");
            assert!(data[at..].starts_with(prefix), "boundary {at} is not a header");
        }
        None => {
            let prefix = header_prefix(data).expect("undecided implies a header");
            assert!(prefix.starts_with(&data[at..]), "undecided at {at}");
        }
        Some(false) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    for at in [0, 1, data.len() / 2, data.len(), usize::MAX] {
        check_boundary(data, at);
    }

    let Ok(msg) = wire::parse(data) else {
        return;
    };
    let (ClaimedHost::Ip(ip), Some(port), Some(name)) = (&msg.claimed_host, msg.port, &msg.name)
    else {
        return;
    };
    // Invalid UTF-8 became U+FFFD (3 bytes), so a name may have outgrown the limit.
    if name.is_empty() || name.len() > wire::MAX_NAME {
        return;
    }
    let text = match &msg.body {
        Body::Text(t) => t.as_str(),
        Body::Connect => "connect",
        Body::Exit => "exit",
    };
    let Ok(bytes) = wire::encode(*ip, port, name, text) else {
        return;
    };
    let again = wire::parse(&bytes);
    let body = strip_newline(text);
    if body.is_empty() {
        assert_eq!(again, Err(WireError::NoText));
        return;
    }
    let again = again.expect("encoded message parses");
    assert_eq!(again.claimed_host, ClaimedHost::Ip(*ip));
    assert_eq!(again.port, Some(port));
    assert_eq!(again.name.as_deref(), Some(name.as_str()));
    assert_eq!(again.body, wire::classify(body.as_bytes()));
});
