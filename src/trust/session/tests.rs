//! Two sessions stepped in memory with injected time: the handshake, the transport, and
//! every way bytes can go wrong on the way.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::identity::PeerKey;
use crate::stream::frame::{self, Frame};
use crate::trust::known_peers::{KnownPeers, Lookup};

fn key(b: u8) -> StaticKey {
    StaticKey::from_private([b; 32])
}

fn cfg() -> HandshakeConfig {
    HandshakeConfig::default()
}

/// Moves every byte either side has to write to the other until neither has any.
fn run(i: &mut Handshake, r: &mut Handshake, now: Instant) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let a = i.poll_transmit(&mut buf);
        r.on_bytes(&buf, now).unwrap();
        buf.clear();
        let b = r.poll_transmit(&mut buf);
        i.on_bytes(&buf, now).unwrap();
        if a == 0 && b == 0 {
            break;
        }
    }
}

/// A finished pair: (initiator's transport, responder's transport).
fn pair(a: &StaticKey, b: &StaticKey) -> (Transport, Transport) {
    let t0 = Instant::now();
    let mut i = Handshake::initiator(a, t0, &cfg());
    let mut r = Handshake::responder(b, t0, &cfg());
    run(&mut i, &mut r, t0);
    assert!(i.is_finished() && r.is_finished());
    (i.into_transport().unwrap(), r.into_transport().unwrap())
}

fn open_all(t: &mut Transport, wire: &[u8]) -> Result<Vec<u8>, SessionError> {
    let mut plain = Vec::new();
    for chunk in wire.chunks(MAX_INBOX / 2) {
        t.on_bytes(chunk)?;
        t.open(&mut plain, usize::MAX)?;
    }
    Ok(plain)
}

#[test]
fn a_full_xx_handshake_authenticates_both_sides() {
    let (a, b) = (key(1), key(2));
    let t0 = Instant::now();
    let mut i = Handshake::initiator(&a, t0, &cfg());
    let mut r = Handshake::responder(&b, t0, &cfg());
    assert!(i.is_initiator() && !r.is_initiator());
    // The initiator's first bytes: the preface, then msg1 (32 bytes, the ephemeral key).
    let mut m1 = Vec::new();
    assert_eq!(i.poll_transmit(&mut m1), 8 + 2 + 32);
    assert_eq!(m1[..8], PREFACE);
    assert_eq!(m1[8..10], [0, 32]);
    assert_eq!(r.poll_transmit(&mut Vec::new()), 0);
    r.on_bytes(&m1, t0).unwrap();
    assert_eq!(r.remote_static(), None);
    let mut m2 = Vec::new();
    assert_eq!(r.poll_transmit(&mut m2), 2 + 96);
    i.on_bytes(&m2, t0).unwrap();
    // The initiator knows the responder's key before msg3 leaves.
    assert_eq!(i.remote_static(), Some(b.public()));
    assert!(i.is_finished());
    let mut m3 = Vec::new();
    assert_eq!(i.poll_transmit(&mut m3), 2 + 64);
    assert!(!r.is_finished());
    r.on_bytes(&m3, t0).unwrap();
    assert_eq!(r.remote_static(), Some(a.public()));
    assert!(r.is_finished());
    assert_eq!(i.poll_timeout(), None);
    assert_eq!(r.poll_timeout(), None);
    let (mut ti, mut tr) = (i.into_transport().unwrap(), r.into_transport().unwrap());
    assert_eq!(ti.remote_static(), b.public());
    assert_eq!(tr.remote_static(), a.public());
    // Both ways.
    let mut wire = Vec::new();
    assert_eq!(ti.seal(b"hello responder", &mut wire).unwrap(), 1);
    assert_eq!(wire.len(), 2 + 15 + TAG_LEN);
    assert!(!wire.windows(5).any(|w| w == b"hello"));
    assert_eq!(open_all(&mut tr, &wire).unwrap(), b"hello responder");
    wire.clear();
    tr.seal(b"hello initiator", &mut wire).unwrap();
    assert_eq!(open_all(&mut ti, &wire).unwrap(), b"hello initiator");
    assert_eq!(ti.records(), (1, 1));
}

#[test]
fn handshake_bytes_split_anywhere_and_records_pipelined_behind_msg3() {
    let (a, b) = (key(3), key(4));
    let t0 = Instant::now();
    let mut i = Handshake::initiator(&a, t0, &cfg());
    let mut r = Handshake::responder(&b, t0, &cfg());
    let mut out = Vec::new();
    i.poll_transmit(&mut out);
    for byte in &out {
        r.on_bytes(std::slice::from_ref(byte), t0).unwrap();
    }
    out.clear();
    r.poll_transmit(&mut out);
    for byte in &out {
        i.on_bytes(std::slice::from_ref(byte), t0).unwrap();
    }
    // msg3 and the first record (the Hello, as a fast-path sender would pipeline it) in
    // one write, read by the responder in one go.
    out.clear();
    i.poll_transmit(&mut out);
    let mut ti = i.into_transport().unwrap();
    ti.seal(b"first record", &mut out).unwrap();
    r.on_bytes(&out, t0).unwrap();
    let mut tr = r.into_transport().unwrap();
    assert_eq!(tr.buffered(), 2 + 12 + TAG_LEN);
    let mut plain = Vec::new();
    tr.open(&mut plain, usize::MAX).unwrap();
    assert_eq!(plain, b"first record");
}

#[test]
fn into_transport_waits_for_the_end_and_the_last_message_taken() {
    let t0 = Instant::now();
    let mut i = Handshake::initiator(&key(1), t0, &cfg());
    let mut r = Handshake::responder(&key(2), t0, &cfg());
    let mut out = Vec::new();
    i.poll_transmit(&mut out);
    r.on_bytes(&out, t0).unwrap();
    out.clear();
    r.poll_transmit(&mut out);
    i.on_bytes(&out, t0).unwrap();
    // Finished, but msg3 not taken yet.
    assert!(i.is_finished());
    assert_eq!(i.into_transport().unwrap_err(), SessionError::NotFinished);
    assert_eq!(r.into_transport().unwrap_err(), SessionError::NotFinished);
}

#[test]
fn garbage_is_refused_with_typed_errors() {
    let t0 = Instant::now();
    let (a, b) = (key(1), key(2));
    // Not the preface: a legacy message, or the plaintext stream's preface.
    for first in [&b"127.0.0.1:9000 bob hi"[..], &frame::MAGIC, b"\x8aq"] {
        let mut r = Handshake::responder(&b, t0, &cfg());
        assert_eq!(r.on_bytes(first, t0), Err(SessionError::NoPreface));
    }
    // A prefix of the preface waits.
    let mut r = Handshake::responder(&b, t0, &cfg());
    r.on_bytes(&PREFACE[..3], t0).unwrap();
    // msg1 of the wrong length, refused from its header.
    let mut r = Handshake::responder(&b, t0, &cfg());
    let mut bytes = PREFACE.to_vec();
    bytes.extend_from_slice(&[0xff, 0xff]);
    assert_eq!(
        r.on_bytes(&bytes, t0),
        Err(SessionError::HandshakeLength {
            message: 1,
            len: 65535,
            expected: 32
        })
    );
    // Errors stick.
    assert_eq!(
        r.on_bytes(b"", t0),
        Err(SessionError::HandshakeLength {
            message: 1,
            len: 65535,
            expected: 32
        })
    );
    assert_eq!(r.poll_timeout(), None);
    // msg2 of the right length but garbage: its encrypted static key fails.
    let mut i = Handshake::initiator(&a, t0, &cfg());
    let mut m2 = vec![0, 96];
    m2.extend((0..96u8).map(|x| x.wrapping_mul(37)));
    assert_eq!(
        i.on_bytes(&m2, t0),
        Err(SessionError::Handshake { message: 2 })
    );
    // msg3 garbage.
    let mut i = Handshake::initiator(&a, t0, &cfg());
    let mut r = Handshake::responder(&b, t0, &cfg());
    let mut out = Vec::new();
    i.poll_transmit(&mut out);
    r.on_bytes(&out, t0).unwrap();
    let mut m3 = vec![0, 64];
    m3.extend([7u8; 64]);
    assert_eq!(
        r.on_bytes(&m3, t0),
        Err(SessionError::Handshake { message: 3 })
    );
    // A second msg1 where msg3 belongs (a replayed handshake message) is refused too.
    let mut i = Handshake::initiator(&a, t0, &cfg());
    let mut r = Handshake::responder(&b, t0, &cfg());
    let mut m1 = Vec::new();
    i.poll_transmit(&mut m1);
    r.on_bytes(&m1, t0).unwrap();
    assert!(matches!(
        r.on_bytes(&m1[8..], t0),
        Err(SessionError::HandshakeLength { message: 3, .. })
    ));
}

#[test]
fn a_handshake_cut_short_or_a_record_cut_is_refused() {
    let t0 = Instant::now();
    let mut i = Handshake::initiator(&key(1), t0, &cfg());
    let mut r = Handshake::responder(&key(2), t0, &cfg());
    let mut out = Vec::new();
    i.poll_transmit(&mut out);
    r.on_bytes(&out[..20], t0).unwrap();
    assert_eq!(r.on_eof(), Err(SessionError::Cut));
    let (mut ti, mut tr) = pair(&key(1), &key(2));
    let mut wire = Vec::new();
    ti.seal(b"a whole record", &mut wire).unwrap();
    tr.on_bytes(&wire[..wire.len() - 1]).unwrap();
    let mut plain = Vec::new();
    assert_eq!(tr.open(&mut plain, usize::MAX), Ok(0));
    assert_eq!(tr.on_eof(), Err(SessionError::Cut));
    assert_eq!(tr.open(&mut plain, usize::MAX), Err(SessionError::Cut));
    // A clean end is fine.
    let (_, mut tr) = pair(&key(1), &key(2));
    assert_eq!(tr.on_eof(), Ok(()));
}

#[test]
fn replayed_reordered_lost_and_short_records_are_refused() {
    let records = |t: &mut Transport| {
        (1..=3)
            .map(|n| {
                let mut w = Vec::new();
                t.seal(format!("record {n}").as_bytes(), &mut w).unwrap();
                w
            })
            .collect::<Vec<_>>()
    };
    // Replayed: the first record again after it was opened.
    let (mut ti, mut tr) = pair(&key(1), &key(2));
    let r = records(&mut ti);
    assert_eq!(open_all(&mut tr, &r[0]).unwrap(), b"record 1");
    assert_eq!(
        open_all(&mut tr, &r[0]),
        Err(SessionError::Decrypt { record: 2 })
    );
    // Sticky: the genuine next record is refused too.
    assert_eq!(
        open_all(&mut tr, &r[1]),
        Err(SessionError::Decrypt { record: 2 })
    );
    // Reordered.
    let (mut ti, mut tr) = pair(&key(1), &key(2));
    let r = records(&mut ti);
    assert_eq!(
        open_all(&mut tr, &r[1]),
        Err(SessionError::Decrypt { record: 1 })
    );
    // Lost: the second arrives after the first was dropped on the way.
    let (mut ti, mut tr) = pair(&key(1), &key(2));
    let r = records(&mut ti);
    assert_eq!(open_all(&mut tr, &r[0]).unwrap(), b"record 1");
    assert_eq!(
        open_all(&mut tr, &r[2]),
        Err(SessionError::Decrypt { record: 2 })
    );
    // Reflected: a side's own record sent back to it.
    let (mut ti, _) = pair(&key(1), &key(2));
    let r = records(&mut ti);
    assert_eq!(
        open_all(&mut ti, &r[0]),
        Err(SessionError::Decrypt { record: 1 })
    );
    // From another session between the same keys.
    let (mut ti, _) = pair(&key(1), &key(2));
    let (_, mut tr2) = pair(&key(1), &key(2));
    let r = records(&mut ti);
    assert_eq!(
        open_all(&mut tr2, &r[0]),
        Err(SessionError::Decrypt { record: 1 })
    );
    // Shorter than a tag, refused from its header.
    let (_, mut tr) = pair(&key(1), &key(2));
    assert_eq!(
        open_all(&mut tr, &[0, 15]),
        Err(SessionError::RecordTooShort { len: 15 })
    );
}

#[test]
fn a_stalled_handshake_times_out() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    // A responder that never gets msg1.
    let mut r = Handshake::responder(&key(2), t0, &cfg());
    assert_eq!(r.poll_timeout(), Some(at(5000)));
    assert_eq!(r.handle_timeout(at(4999)), Ok(()));
    assert_eq!(r.handle_timeout(at(5000)), Err(SessionError::TimedOut));
    assert_eq!(r.handle_timeout(at(6000)), Err(SessionError::TimedOut));
    assert_eq!(r.poll_timeout(), None);
    // An initiator whose peer answers msg1 and then stalls nothing: it is waiting for msg2.
    let mut i = Handshake::initiator(&key(1), t0, &cfg());
    let mut r = Handshake::responder(&key(2), at(10), &cfg());
    let mut out = Vec::new();
    i.poll_transmit(&mut out);
    r.on_bytes(&out, at(10)).unwrap();
    assert_eq!(i.handle_timeout(at(4999)), Ok(()));
    assert_eq!(i.handle_timeout(at(5000)), Err(SessionError::TimedOut));
    // A responder stalled by an initiator that never sends msg3: the deadline counts from
    // the accept, however far the handshake got.
    assert_eq!(r.poll_timeout(), Some(at(5010)));
    assert_eq!(r.handle_timeout(at(5010)), Err(SessionError::TimedOut));
    // A finished handshake has no deadline left.
    let mut i = Handshake::initiator(&key(1), t0, &cfg());
    let mut r = Handshake::responder(&key(2), t0, &cfg());
    run(&mut i, &mut r, t0);
    assert_eq!(r.handle_timeout(at(9999)), Ok(()));
    assert!(r.into_transport().is_ok());
}

#[test]
fn a_key_change_is_caught_by_known_peers() {
    let me = key(1);
    let bob = PeerKey("127.0.0.1:9002".parse().unwrap());
    let mut known = KnownPeers::new();
    // First contact: trusted on first use.
    let (t, _) = pair(&me, &key(2));
    assert_eq!(known.remember(bob, &t.remote_static()), Ok(Lookup::Unknown));
    // The same peer again: known.
    let (t, _) = pair(&me, &key(2));
    assert_eq!(
        known.lookup(bob, &t.remote_static()),
        Lookup::Known { verified: false }
    );
    // Restarted with another home: another key at the same address.
    let (t, _) = pair(&me, &key(3));
    let new = t.remote_static();
    let old = key(2).public();
    assert_eq!(
        known.lookup(bob, &new),
        Lookup::Changed {
            old,
            new,
            was_verified: false
        }
    );
    assert_ne!(old.fingerprint(), new.fingerprint());
    // Until /trust.
    known.trust(bob, &new).unwrap();
    assert_eq!(known.lookup(bob, &new), Lookup::Known { verified: false });
}

/// 64 small Data frames, as a fast-path sender's `poll_transmit` writes them.
fn batch(first_seq: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    for seq in first_seq..first_seq + 64 {
        frame::encode_data(&mut buf, seq, format!("message number {seq}").as_bytes());
    }
    buf
}

#[test]
fn a_batch_of_frames_is_one_record_and_comes_back_frame_by_frame() {
    let (mut ti, mut tr) = pair(&key(1), &key(2));
    let plain = batch(1);
    let mut wire = Vec::new();
    assert_eq!(ti.seal(&plain, &mut wire).unwrap(), 1);
    assert_eq!(wire.len(), plain.len() + LEN_PREFIX + TAG_LEN);
    let back = open_all(&mut tr, &wire).unwrap();
    let mut at = 0;
    let mut seqs = Vec::new();
    while at < back.len() {
        let (f, len) = frame::decode(&back[at..], frame::MAX_PAYLOAD).unwrap();
        let Frame::Data { seq, text } = f else {
            panic!("{f:?}")
        };
        assert_eq!(text, format!("message number {seq}").as_bytes());
        seqs.push(seq);
        at += len;
    }
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
}

#[test]
fn a_large_write_is_cut_into_records_and_opened_as_room_allows() {
    let (mut ti, mut tr) = pair(&key(1), &key(2));
    let plain: Vec<u8> = (0..200_000u32).map(|x| (x % 251) as u8).collect();
    let mut wire = Vec::new();
    assert_eq!(ti.seal(&plain, &mut wire).unwrap(), 4);
    assert_eq!(ti.seal(b"", &mut wire).unwrap(), 0);
    let mut back = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let n = tr.read_room().min(rest.len());
        assert!(
            n > 0,
            "reading must always progress once records are opened"
        );
        tr.on_bytes(&rest[..n]).unwrap();
        rest = &rest[n..];
        // The consumer has room for one record at a time, and not even that at first.
        assert_eq!(tr.open(&mut back, 10).unwrap(), 0);
        tr.open(&mut back, MAX_PLAINTEXT).unwrap();
    }
    while tr.buffered() > 0 {
        assert!(tr.open(&mut back, MAX_PLAINTEXT).unwrap() > 0);
    }
    assert_eq!(back, plain);
    // More than the room: refused, not buffered.
    let (_, mut tr) = pair(&key(1), &key(2));
    tr.on_bytes(&vec![0xff; MAX_INBOX]).unwrap();
    assert_eq!(tr.read_room(), 0);
    assert_eq!(
        tr.on_bytes(b"x"),
        Err(SessionError::BufferFull { cap: MAX_INBOX })
    );
}

#[test]
fn a_bit_flipped_anywhere_in_the_handshake_fails_it() {
    // Every bit of the preface and the three messages, one at a time.
    let t0 = Instant::now();
    let (a, b) = (key(1), key(2));
    let mut i = Handshake::initiator(&a, t0, &cfg());
    let mut r = Handshake::responder(&b, t0, &cfg());
    let mut m1 = Vec::new();
    i.poll_transmit(&mut m1);
    let total_bits = (m1.len() + 2 + 96 + 2 + 64) * 8;
    for bit in 0..total_bits {
        let mut i = Handshake::initiator(&a, t0, &cfg());
        let mut r2 = Handshake::responder(&b, t0, &cfg());
        let mut flipped = bit;
        let mut failed = false;
        let mut buf = Vec::new();
        for turn in 0..3 {
            buf.clear();
            let (from, to): (&mut Handshake, &mut Handshake) = if turn % 2 == 0 {
                (&mut i, &mut r2)
            } else {
                (&mut r2, &mut i)
            };
            from.poll_transmit(&mut buf);
            if flipped < buf.len() * 8 {
                buf[flipped / 8] ^= 1 << (flipped % 8);
                flipped = usize::MAX;
            } else if flipped != usize::MAX {
                flipped -= buf.len() * 8;
            }
            if to.on_bytes(&buf, t0).is_err() {
                failed = true;
                break;
            }
        }
        // A flip in msg1's ephemeral key is only seen when the keys disagree later: then
        // the first record fails.
        if !failed {
            let ti = i.into_transport();
            let tr = r2.into_transport();
            if let (Ok(mut ti), Ok(mut tr)) = (ti, tr) {
                let mut w = Vec::new();
                ti.seal(b"x", &mut w).unwrap();
                failed = open_all(&mut tr, &w).is_err();
            } else {
                failed = true;
            }
        }
        assert!(failed, "bit {bit} flipped went unnoticed");
    }
    // (The unflipped handshake works: `r` is here only to size the messages.)
    let _ = r.poll_transmit(&mut Vec::new());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    /// Any split of the ciphertext stream into reads reassembles the plaintext exactly.
    #[test]
    fn any_split_of_the_ciphertext_reassembles(
        writes in proptest::collection::vec(1usize..3000, 1..12),
        cuts in proptest::collection::vec(1usize..5000, 1..40),
    ) {
        let (mut ti, mut tr) = pair(&key(5), &key(6));
        let mut plain = Vec::new();
        let mut wire = Vec::new();
        for (n, len) in writes.iter().enumerate() {
            let chunk: Vec<u8> = (0..*len).map(|x| (x + n) as u8).collect();
            ti.seal(&chunk, &mut wire).unwrap();
            plain.extend_from_slice(&chunk);
        }
        let mut back = Vec::new();
        let mut rest = &wire[..];
        let mut cuts = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cuts.next().unwrap()).min(rest.len());
            tr.on_bytes(&rest[..n]).unwrap();
            tr.open(&mut back, usize::MAX).unwrap();
            rest = &rest[n..];
        }
        prop_assert_eq!(tr.on_eof(), Ok(()));
        prop_assert_eq!(back, plain);
    }

    /// Any one bit flipped in the ciphertext stream is refused, and nothing altered is
    /// ever handed on: what was opened before the refusal is a prefix of the original.
    #[test]
    fn any_bit_flip_is_refused(
        writes in proptest::collection::vec(1usize..2000, 1..6),
        flip in any::<proptest::sample::Index>(),
    ) {
        let (mut ti, mut tr) = pair(&key(7), &key(8));
        let mut plain = Vec::new();
        let mut wire = Vec::new();
        for len in &writes {
            let chunk = vec![b'a'; *len];
            ti.seal(&chunk, &mut wire).unwrap();
            plain.extend_from_slice(&chunk);
        }
        let bit = flip.index(wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        let mut back = Vec::new();
        let refused = tr
            .on_bytes(&wire)
            .and_then(|()| tr.open(&mut back, usize::MAX))
            .and_then(|_| tr.on_eof())
            .is_err();
        prop_assert!(refused, "bit {} flipped went unnoticed", bit);
        prop_assert!(plain.starts_with(&back));
    }
}

#[test]
fn the_fast_path_runs_unchanged_inside_and_no_text_shows_on_the_wire() {
    use crate::stream::receiver::{Event, Receiver, ReceiverConfig, SessionBook};
    use crate::stream::sender::{Outcome, Sender, SenderConfig};
    use bytes::Bytes;
    use std::net::{IpAddr, Ipv4Addr};

    let now = Instant::now();
    let (mut ti, mut tr) = pair(&key(1), &key(2));
    let mut s: Sender<u32> = Sender::new(SenderConfig::new(7, 9001, "alice"));
    let mut r = Receiver::new(
        ReceiverConfig::default(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        now,
    );
    let mut book = SessionBook::new(4);
    let mut recorded = Vec::new();
    let mut carry = |from: &mut Transport, to: &mut Transport, plain: &[u8], room: usize| {
        let mut wire = Vec::new();
        from.seal(plain, &mut wire).unwrap();
        recorded.extend_from_slice(&wire);
        to.on_bytes(&wire).unwrap();
        let mut out = Vec::new();
        to.open(&mut out, room).unwrap();
        out
    };
    for n in 0..100 {
        s.push(
            n,
            Bytes::from(format!("secret line {n}")),
            now + Duration::from_secs(20),
        )
        .unwrap();
    }
    s.handle_connected(now);
    let mut shown = Vec::new();
    for _ in 0..10 {
        let mut plain = Vec::new();
        s.poll_transmit(now, &mut plain, usize::MAX);
        let got = carry(&mut ti, &mut tr, &plain, r.read_room());
        r.on_bytes(&got, now).unwrap();
        while let Some(ev) = r.poll_event(&mut book, now).unwrap() {
            if let Event::Message { text, .. } = ev {
                shown.push(String::from_utf8(text.to_vec()).unwrap());
            }
        }
        let mut back = Vec::new();
        r.poll_transmit(now + Duration::from_millis(10), &mut back);
        let got = carry(&mut tr, &mut ti, &back, usize::MAX);
        s.on_bytes(&got, now).unwrap();
    }
    let expected: Vec<String> = (0..100).map(|n| format!("secret line {n}")).collect();
    assert_eq!(shown, expected);
    let mut delivered = 0;
    while let Some(o) = s.poll_outcome() {
        if let Outcome::Delivered(ids) = o {
            delivered += ids.len();
        }
    }
    assert_eq!(delivered, 100);
    assert!(!recorded.windows(6).any(|w| w == b"secret"));
    assert!(!recorded.windows(5).any(|w| w == b"alice"));
}
