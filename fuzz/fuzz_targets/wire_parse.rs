//! `wire::parse` and `wire::next_message_start` on arbitrary bytes: no panic, splits
//! point at a copy of the first header, and whatever parses with an IP header re-encodes
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

fn check_split(data: &[u8], from: usize) {
    if let Some(i) = wire::next_message_start(data, from) {
        assert!(i > 0 && i < data.len(), "split {i} out of range");
        let prefix = header_prefix(data).expect("a split implies a header");
        assert!(i >= prefix.len(), "split {i} inside the first header");
        assert!(data[i..].starts_with(prefix), "split {i} is not a header");
    }
}

fuzz_target!(|data: &[u8]| {
    for from in [0, 1, data.len() / 2, data.len(), usize::MAX] {
        check_split(data, from);
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
