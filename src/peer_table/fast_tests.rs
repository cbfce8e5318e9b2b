//! The fast path in the peer table (`fast.rs`) stepped with injected time, as `tests.rs`
//! steps the legacy table: one input at an explicit instant, then the exact effects and
//! the table's state. The reactor's part is played by hand: probe answers, a stream's
//! connection, the bytes pulled with `stream_transmit` (decoded here), the receiver's
//! Welcome and Acks (encoded here), breaks.

use super::*;
use crate::event::{Delivery, SendFailure, Speaks};
use crate::stream::frame::{self, Frame, MAGIC, MAX_PAYLOAD};

const TIMEOUT: Duration = Duration::from_secs(20);
const BOB: &str = "10.0.0.8:5000";
const PROOF: &[u8] = b"p2pchat-fast/1\n";
const LOCAL_END: &str = "10.0.0.1:40000";

// ----- fixture -------------------------------------------------------------------------

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

fn local() -> LocalAddrs {
    LocalAddrs::new(["192.168.1.5".parse().unwrap()])
}

fn bob() -> PeerKey {
    let a = sa(BOB);
    local().key(a.ip(), a.port())
}

/// The node "me" on port 9000, 20 s timeout, the fast path on (session 42).
fn setup() -> (PeerTable, Instant) {
    let t = PeerTable::new(TableConfig {
        name: "me".to_owned(),
        port: 9000,
        advertise: None,
        timeout: TIMEOUT,
        local: local(),
        max_peers: 100,
        max_peers_per_host: 64,
        limit_local: false,
        fast: Some(FastConfig::new(42)),
    });
    t.check_invariants().unwrap();
    (t, Instant::now())
}

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

/// A test's view of an [`Effect`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fx {
    Show(Event),
    /// A legacy send starts: its text and deadline, looked up as it is drained.
    Transmit {
        id: u64,
        text: String,
        deadline: Instant,
    },
    Write(u64),
    Abort(u64),
    Probe(u64),
    Open(u64),
    Ready(u64),
    Close(u64),
    Exit,
}

#[track_caller]
fn drain(t: &mut PeerTable) -> Vec<Fx> {
    let fx: Vec<Effect> = std::iter::from_fn(|| t.poll_effect()).collect();
    if let Err(e) = t.check_invariants() {
        panic!("invariant broken: {e}; effects were {fx:?}");
    }
    fx.into_iter()
        .map(|e| match e {
            Effect::Show(e) => Fx::Show(e),
            Effect::Transmit(tr) => {
                let p = t.pending_send(tr.id).expect("a Transmit is pending");
                Fx::Transmit {
                    id: tr.id.0,
                    text: p.text.to_owned(),
                    deadline: p.deadline,
                }
            }
            Effect::Write { id, .. } => Fx::Write(id.0),
            Effect::Abort(id) => Fx::Abort(id.0),
            Effect::Probe { link, key, to } => {
                assert_eq!((key, to), (bob(), sa(BOB)));
                Fx::Probe(link.0)
            }
            Effect::OpenStream { link, key, to, .. } => {
                assert_eq!((key, to), (bob(), sa(BOB)));
                Fx::Open(link.0)
            }
            Effect::StreamReady { link, .. } => Fx::Ready(link.0),
            Effect::CloseStream { link, .. } => Fx::Close(link.0),
            Effect::Exit => Fx::Exit,
        })
        .collect()
}

#[track_caller]
fn send(t: &mut PeerTable, now: Instant, text: &str) -> Vec<Fx> {
    t.send(now, Target::Addr(sa(BOB)), text);
    drain(t)
}

fn tx(id: u64, text: &str, deadline: Instant) -> Fx {
    Fx::Transmit {
        id,
        text: text.to_owned(),
        deadline,
    }
}

fn sent_as(text: &str, purpose: Purpose, delivery: Delivery) -> Fx {
    Fx::Show(Event::Sent {
        to: PeerView::new(None, sa(BOB)),
        purpose,
        text: text.to_owned(),
        delivery,
        encrypted: false,
    })
}

fn sent(text: &str, delivery: Delivery) -> Fx {
    sent_as(text, Purpose::Text, delivery)
}

fn failed(text: &str, reason: SendFailure) -> Fx {
    Fx::Show(Event::SendFailed {
        to: PeerView::new(None, sa(BOB)),
        purpose: Purpose::Text,
        text: text.to_owned(),
        reason,
    })
}

/// The legacy send `id` is connected, written, and closed by the peer.
#[track_caller]
fn legacy_delivered(t: &mut PeerTable, now: Instant, id: u64) -> Vec<Fx> {
    let id = SendId(id);
    t.handle_send_connected(now, id, sa(LOCAL_END));
    assert_eq!(drain(t), [Fx::Write(id.0)]);
    t.handle_send_written(now, id);
    assert_eq!(drain(t), []);
    t.handle_send_closed(now, id);
    drain(t)
}

#[track_caller]
fn probe_answer(t: &mut PeerTable, now: Instant, link: u64, answer: &[u8]) -> Vec<Fx> {
    t.handle_probe_answer(now, bob(), LinkId(link), answer);
    drain(t)
}

#[track_caller]
fn probe_failed(t: &mut PeerTable, now: Instant, link: u64) -> Vec<Fx> {
    t.handle_probe_failed(now, bob(), LinkId(link));
    drain(t)
}

#[track_caller]
fn connected(t: &mut PeerTable, now: Instant, link: u64) -> Vec<Fx> {
    t.handle_stream_connected(now, bob(), LinkId(link));
    drain(t)
}

#[track_caller]
fn broken(t: &mut PeerTable, now: Instant, link: u64) -> Vec<Fx> {
    t.handle_stream_broken(now, bob(), LinkId(link), "reset by the test");
    drain(t)
}

#[track_caller]
fn timeout(t: &mut PeerTable, now: Instant) -> Vec<Fx> {
    t.handle_timeout(now);
    drain(t)
}

/// What a stream carried, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum W {
    Preface,
    Hello {
        name: String,
        port: u16,
        session: u64,
        fresh_from: u64,
    },
    Data(u64, String),
}

/// Pulls what the table has for stream `link` (as the reactor does on StreamReady).
#[track_caller]
fn transmit(t: &mut PeerTable, now: Instant, link: u64) -> Vec<W> {
    let mut out = Vec::new();
    t.stream_transmit(now, bob(), LinkId(link), &mut out, 1 << 20);
    let mut buf = &out[..];
    let mut got = Vec::new();
    if let Some(rest) = buf.strip_prefix(&MAGIC[..]) {
        got.push(W::Preface);
        buf = rest;
    }
    while !buf.is_empty() {
        let (f, len) = frame::decode(buf, MAX_PAYLOAD).expect("whole frames");
        got.push(match f {
            Frame::Hello(h) => W::Hello {
                name: h.name.to_owned(),
                port: h.port,
                session: h.session,
                fresh_from: h.fresh_from,
            },
            Frame::Data { seq, text } => W::Data(seq, String::from_utf8(text.to_vec()).unwrap()),
            other => panic!("a sender does not write {other:?}"),
        });
        buf = &buf[len..];
    }
    assert_eq!(drain(t), [], "pulling bytes has no effect of its own");
    got
}

fn data(seq: u64, text: &str) -> W {
    W::Data(seq, text.to_owned())
}

/// The Hello of the run's first stream sender (session 42, see [`setup`]).
fn hello(name: &str, fresh_from: u64) -> W {
    hello_in(42, name, fresh_from)
}

fn hello_in(session: u64, name: &str, fresh_from: u64) -> W {
    W::Hello {
        name: name.to_owned(),
        port: 9000,
        session,
        fresh_from,
    }
}

#[track_caller]
fn welcome(t: &mut PeerTable, now: Instant, link: u64, floor: u64, through: u64) -> Vec<Fx> {
    let mut b = Vec::new();
    frame::encode_welcome(&mut b, 1, floor, through);
    t.handle_stream_bytes(now, bob(), LinkId(link), &b);
    drain(t)
}

/// An Ack from the receiver. It frees room in the window, so it comes with a
/// [`Fx::Ready`]: answered here as the reactor would (the tests that follow write nothing
/// more), and left out of the effects returned.
#[track_caller]
fn ack(t: &mut PeerTable, now: Instant, link: u64, through: u64) -> Vec<Fx> {
    let mut b = Vec::new();
    frame::encode_ack(&mut b, through);
    t.handle_stream_bytes(now, bob(), LinkId(link), &b);
    let mut fx = drain(t);
    if let Some(at) = fx.iter().position(|f| *f == Fx::Ready(link)) {
        fx.remove(at);
        assert_eq!(transmit(t, now, link), [], "nothing left to write");
    }
    fx
}

/// Bob proven at `t0` (the first message, "s1", waits for the probe's answer), then a
/// stream opened for "s1", welcomed and "s1" acknowledged, all at `t0`. Returns the
/// stream's link (the probe was link 0, the stream is link 1; send 0).
#[track_caller]
fn streaming(t: &mut PeerTable, t0: Instant) -> u64 {
    assert_eq!(send(t, t0, "s1"), [Fx::Probe(0)]);
    assert_eq!(probe_answer(t, t0, 0, PROOF), [Fx::Open(1)]);
    assert_eq!(connected(t, t0, 1), [Fx::Ready(1)]);
    assert_eq!(transmit(t, t0, 1), [W::Preface, hello("me", 1)]);
    assert_eq!(welcome(t, t0, 1, 0, 0), [Fx::Ready(1)]);
    assert_eq!(transmit(t, t0, 1), [data(1, "s1")]);
    assert_eq!(ack(t, t0, 1, 1), [sent("s1", Delivery::Receipt)]);
    assert_eq!(t.speaks(&bob()), Speaks::P2pchat(1));
    1
}

/// [`streaming`], then "x" written at +1 ms and the stream broken at +2 ms ("x" in doubt,
/// a new probe out as link 2), then "y" sent at +3 ms: it waits for that probe (the proof
/// is stale, not forgotten).
#[track_caller]
fn x_in_doubt_y_waiting(t: &mut PeerTable, t0: Instant) {
    let link = streaming(t, t0);
    assert_eq!(send(t, ms(t0, 1), "x"), [Fx::Ready(link)]);
    assert_eq!(transmit(t, ms(t0, 1), link), [data(2, "x")]);
    assert_eq!(broken(t, ms(t0, 2), link), [Fx::Probe(2)]);
    assert_eq!(send(t, ms(t0, 3), "y"), []);
}

// ----- route: legacy, stream, wait ------------------------------------------------------

/// An unknown peer's messages wait for the probe sent with the first (nothing goes by
/// legacy, in clear, to a peer that may speak the fast path); the proof moves them all
/// to a stream, in the order typed.
#[test]
fn messages_to_an_unknown_peer_wait_for_the_proof_then_go_on_a_stream() {
    let (mut t, t0) = setup();
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
    assert_eq!(send(&mut t, t0, "first"), [Fx::Probe(0)]);
    // A second message waits with the first: no second probe.
    assert_eq!(send(&mut t, ms(t0, 1), "second"), []);
    assert_eq!(t.stream_backlog(), 0);
    assert_eq!(t.pending_sends(), 2);
    assert_eq!(probe_answer(&mut t, ms(t0, 2), 0, PROOF), [Fx::Open(1)]);
    assert_eq!(t.speaks(&bob()), Speaks::P2pchat(1));
    assert_eq!(t.stream_backlog(), 2);
    assert_eq!(connected(&mut t, ms(t0, 4), 1), [Fx::Ready(1)]);
    // The preface and Hello, then nothing until the Welcome.
    assert_eq!(transmit(&mut t, ms(t0, 4), 1), [W::Preface, hello("me", 1)]);
    assert_eq!(transmit(&mut t, ms(t0, 4), 1), []);
    assert_eq!(welcome(&mut t, ms(t0, 5), 1, 0, 0), [Fx::Ready(1)]);
    assert_eq!(
        transmit(&mut t, ms(t0, 5), 1),
        [data(1, "first"), data(2, "second")]
    );
    assert_eq!(
        ack(&mut t, ms(t0, 6), 1, 2),
        [
            sent("first", Delivery::Receipt),
            sent("second", Delivery::Receipt)
        ]
    );
    assert_eq!(t.pending_sends(), 0);
    // Messages while the stream is up go straight on it, pipelined; one Ack settles many.
    for (i, text) in ["a", "b", "c"].iter().enumerate() {
        let fx = send(&mut t, ms(t0, 7), text);
        assert_eq!(fx, if i == 0 { vec![Fx::Ready(1)] } else { vec![] });
    }
    assert_eq!(
        transmit(&mut t, ms(t0, 7), 1),
        [data(3, "a"), data(4, "b"), data(5, "c")]
    );
    assert_eq!(
        ack(&mut t, ms(t0, 8), 1, 4),
        [sent("a", Delivery::Receipt), sent("b", Delivery::Receipt),]
    );
    assert_eq!(ack(&mut t, ms(t0, 9), 1, 5), [sent("c", Delivery::Receipt)]);
    // Idle for 10 s with everything acknowledged: the stream is closed, the proof stale.
    assert_eq!(
        timeout(&mut t, ms(t0, 9) + Duration::from_secs(10)),
        [Fx::Close(1)]
    );
    assert_eq!(t.speaks(&bob()), Speaks::P2pchat(1));
}

/// A peer never met gets no text by legacy before its proof is known (it may speak the
/// fast path, encrypted): the first message waits for the probe.
#[test]
fn a_new_peer_gets_its_first_message_only_after_the_proof() {
    let (mut t, t0) = setup();
    assert_eq!(send(&mut t, t0, "first"), [Fx::Probe(0)]);
    assert_eq!(send(&mut t, ms(t0, 1), "second"), []);
    assert_eq!(t.pending_sends(), 2);
    assert_eq!(probe_answer(&mut t, ms(t0, 2), 0, PROOF), [Fx::Open(1)]);
    assert_eq!(connected(&mut t, ms(t0, 3), 1), [Fx::Ready(1)]);
    assert_eq!(transmit(&mut t, ms(t0, 3), 1), [W::Preface, hello("me", 1)]);
    assert_eq!(welcome(&mut t, ms(t0, 4), 1, 0, 0), [Fx::Ready(1)]);
    assert_eq!(
        transmit(&mut t, ms(t0, 4), 1),
        [data(1, "first"), data(2, "second")]
    );
    // A probe that gets no answer: what waited goes by legacy (no verdict, as before).
    let (mut u, t0) = setup();
    assert_eq!(send(&mut u, t0, "m0"), [Fx::Probe(0)]);
    assert_eq!(
        probe_failed(&mut u, ms(t0, 5), 0),
        [tx(0, "m0", t0 + TIMEOUT)]
    );
}

/// A peer proven once whose stream closed is probed again before the next stream, and
/// its messages wait for the answer (no legacy send that could overtake them).
#[test]
fn a_closed_stream_holds_messages_for_a_new_probe() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(timeout(&mut t, t1), [Fx::Close(link)]);
    // Wait: a probe, no Transmit, no stream.
    assert_eq!(send(&mut t, ms(t1, 1), "held 1"), [Fx::Probe(2)]);
    assert_eq!(send(&mut t, ms(t1, 2), "held 2"), []);
    assert_eq!(t.stream_backlog(), 0);
    assert_eq!(t.pending_sends(), 2);
    // The answer opens a new stream for both, numbered on from the first session.
    assert_eq!(probe_answer(&mut t, ms(t1, 3), 2, PROOF), [Fx::Open(3)]);
    assert_eq!(connected(&mut t, ms(t1, 4), 3), [Fx::Ready(3)]);
    assert_eq!(transmit(&mut t, ms(t1, 4), 3), [W::Preface, hello("me", 2)]);
    assert_eq!(welcome(&mut t, ms(t1, 5), 3, 0, 1), [Fx::Ready(3)]);
    assert_eq!(
        transmit(&mut t, ms(t1, 5), 3),
        [data(2, "held 1"), data(3, "held 2")]
    );
    assert_eq!(
        ack(&mut t, ms(t1, 6), 3, 3),
        [
            sent("held 1", Delivery::Receipt),
            sent("held 2", Delivery::Receipt),
        ]
    );
}

/// A probe answered with anything but a proof says legacy: one connection per message,
/// asked again only after 10 minutes (and only when there is something to send).
#[test]
fn a_legacy_answer_keeps_one_connection_per_message_and_is_rechecked_late() {
    let (mut t, t0) = setup();
    let d = t0 + TIMEOUT;
    assert_eq!(send(&mut t, t0, "m0"), [Fx::Probe(0)]);
    assert_eq!(probe_answer(&mut t, t0, 0, b""), [tx(0, "m0", d)]);
    assert_eq!(t.speaks(&bob()), Speaks::Legacy);
    assert_eq!(
        legacy_delivered(&mut t, t0, 0),
        [sent("m0", Delivery::Closed)]
    );
    let t1 = t0 + Duration::from_secs(599);
    assert_eq!(send(&mut t, t1, "m1"), [tx(1, "m1", t1 + TIMEOUT)]);
    assert_eq!(
        legacy_delivered(&mut t, t1, 1),
        [sent("m1", Delivery::Closed)]
    );
    let t2 = t0 + Duration::from_secs(600);
    // Asked again: "m2" waits for the answer.
    assert_eq!(send(&mut t, t2, "m2"), [Fx::Probe(1)]);
    // Too long an answer is no proof either.
    assert_eq!(
        probe_answer(&mut t, t2, 1, &[b'x'; 33]),
        [tx(2, "m2", t2 + TIMEOUT)]
    );
    assert_eq!(t.speaks(&bob()), Speaks::Legacy);
}

/// A probe with no answer (refused, reset, its 5 s deadline) gives no verdict: what
/// waited goes by legacy, and no new probe for 30 s. A late answer to a probe given up
/// on changes nothing.
#[test]
fn a_failed_probe_gives_no_verdict_and_backs_off() {
    let (mut t, t0) = setup();
    let d = t0 + TIMEOUT;
    assert_eq!(send(&mut t, t0, "m0"), [Fx::Probe(0)]);
    assert_eq!(probe_failed(&mut t, ms(t0, 10), 0), [tx(0, "m0", d)]);
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
    assert_eq!(
        legacy_delivered(&mut t, ms(t0, 20), 0),
        [sent("m0", Delivery::Closed)]
    );
    let t1 = t0 + Duration::from_secs(29);
    assert_eq!(send(&mut t, t1, "m1"), [tx(1, "m1", t1 + TIMEOUT)]);
    assert_eq!(
        legacy_delivered(&mut t, t1, 1),
        [sent("m1", Delivery::Closed)]
    );
    // 30 s after the failure: asked again; this one never answers.
    let t2 = ms(t0, 10) + Duration::from_secs(30);
    assert_eq!(send(&mut t, t2, "m2"), [Fx::Probe(1)]);
    assert_eq!(
        timeout(&mut t, t2 + Duration::from_secs(5)),
        [tx(2, "m2", t2 + TIMEOUT)]
    );
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
    assert_eq!(
        probe_answer(&mut t, t2 + Duration::from_secs(6), 1, PROOF),
        []
    );
    assert_eq!(t.speaks(&bob()), Speaks::Unknown, "too late: ignored");
}

// ----- stream attempts that fail --------------------------------------------------------

/// A stream connection that fails before its Welcome forgets the proof: the messages it
/// held go by legacy, in order, with the deadlines they were asked with.
#[test]
fn a_failed_stream_attempt_falls_back_to_legacy_keeping_deadlines() {
    let (mut t, t0) = setup();
    let (t1, t2) = (ms(t0, 100), ms(t0, 200));
    assert_eq!(send(&mut t, t1, "a"), [Fx::Probe(0)]);
    assert_eq!(send(&mut t, t2, "b"), []);
    assert_eq!(probe_answer(&mut t, ms(t0, 250), 0, PROOF), [Fx::Open(1)]);
    // Refused at connect: the reactor has dropped it.
    let fx = broken(&mut t, ms(t0, 300), 1);
    assert_eq!(fx, [tx(0, "a", t1 + TIMEOUT)]);
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
    assert_eq!(t.stream_backlog(), 0);
    assert_eq!(
        legacy_delivered(&mut t, ms(t0, 400), 0),
        [sent("a", Delivery::Closed), tx(1, "b", t2 + TIMEOUT)]
    );
    // A report about the stream given up on changes nothing.
    assert_eq!(connected(&mut t, ms(t0, 500), 1), []);
}

/// No Welcome within 5 s of opening the stream: the attempt failed, the connection is
/// closed, the proof forgotten; what waited goes by legacy.
#[test]
fn no_welcome_in_time_fails_the_attempt() {
    let (mut t, t0) = setup();
    assert_eq!(send(&mut t, t0, "a"), [Fx::Probe(0)]);
    assert_eq!(probe_answer(&mut t, t0, 0, PROOF), [Fx::Open(1)]);
    assert_eq!(connected(&mut t, ms(t0, 1), 1), [Fx::Ready(1)]);
    assert_eq!(transmit(&mut t, ms(t0, 1), 1), [W::Preface, hello("me", 1)]);
    assert_eq!(timeout(&mut t, ms(t0, 4999)), []);
    assert_eq!(
        timeout(&mut t, t0 + Duration::from_secs(5)),
        [Fx::Close(1), tx(0, "a", t0 + TIMEOUT)]
    );
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
}

/// A refusal from the receiver ("busy") is a failed attempt like any other.
#[test]
fn a_refused_stream_falls_back() {
    let (mut t, t0) = setup();
    assert_eq!(send(&mut t, t0, "a"), [Fx::Probe(0)]);
    assert_eq!(probe_answer(&mut t, t0, 0, PROOF), [Fx::Open(1)]);
    assert_eq!(connected(&mut t, t0, 1), [Fx::Ready(1)]);
    transmit(&mut t, t0, 1);
    let mut b = Vec::new();
    frame::encode_refuse(&mut b, frame::RefuseReason::Busy);
    t.handle_stream_bytes(ms(t0, 1), bob(), LinkId(1), &b);
    assert_eq!(drain(&mut t), [Fx::Close(1), tx(0, "a", t0 + TIMEOUT)]);
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
}

/// A welcomed stream breaks with messages written and not acknowledged: they are in
/// doubt. A new probe comes first; if it fails, those in doubt end unconfirmed (a legacy
/// resend could show them twice) and the rest go by legacy.
#[test]
fn messages_in_doubt_end_unconfirmed_when_the_fallback_comes() {
    let (mut t, t0) = setup();
    x_in_doubt_y_waiting(&mut t, t0);
    assert_eq!(t.speaks(&bob()), Speaks::P2pchat(1));
    assert_eq!(
        probe_failed(&mut t, ms(t0, 4), 2),
        [
            sent("x", Delivery::Unconfirmed),
            tx(2, "y", ms(t0, 3) + TIMEOUT)
        ]
    );
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
}

/// The same break, then the new stream's Welcome settles what was in doubt: what the
/// receiver had is delivered, the rest resent with its number.
#[test]
fn a_welcome_after_a_break_settles_and_resends() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    send(&mut t, ms(t0, 1), "x");
    send(&mut t, ms(t0, 1), "y");
    assert_eq!(
        transmit(&mut t, ms(t0, 1), link),
        [data(2, "x"), data(3, "y")]
    );
    assert_eq!(broken(&mut t, ms(t0, 2), link), [Fx::Probe(2)]);
    assert_eq!(probe_answer(&mut t, ms(t0, 3), 2, PROOF), [Fx::Open(3)]);
    assert_eq!(connected(&mut t, ms(t0, 4), 3), [Fx::Ready(3)]);
    assert_eq!(transmit(&mut t, ms(t0, 4), 3), [W::Preface, hello("me", 4)]);
    assert_eq!(
        welcome(&mut t, ms(t0, 5), 3, 0, 2),
        [Fx::Ready(3), sent("x", Delivery::Receipt)]
    );
    assert_eq!(transmit(&mut t, ms(t0, 5), 3), [data(3, "y")]);
    assert_eq!(ack(&mut t, ms(t0, 6), 3, 3), [sent("y", Delivery::Receipt)]);
}

/// A new stream meets another key than the one on record (the reactor reports it during
/// the handshake): everything to that peer ends at once. What the broken stream before
/// left in doubt ends unconfirmed (not at its deadline), what waited fails with
/// `key_changed`, and so does what is sent after, until `/trust`.
#[test]
fn a_changed_key_settles_every_message_at_once() {
    let (mut t, t0) = setup();
    x_in_doubt_y_waiting(&mut t, t0);
    assert_eq!(probe_answer(&mut t, ms(t0, 3), 2, PROOF), [Fx::Open(3)]);
    t.handle_key_changed(ms(t0, 4), bob(), LinkId(3));
    assert_eq!(
        drain(&mut t),
        [
            sent("x", Delivery::Unconfirmed),
            failed("y", SendFailure::KeyChanged)
        ]
    );
    assert_eq!(t.pending_sends(), 0);
    assert_eq!(
        send(&mut t, ms(t0, 5), "z"),
        [failed("z", SendFailure::KeyChanged)]
    );
}

// ----- deadlines --------------------------------------------------------------------------

/// A receiver that stops acknowledging (or reading): each message ends at its own
/// deadline, written ones unconfirmed, those never written failed.
#[test]
fn stream_deadlines_end_written_messages_unconfirmed_and_unwritten_failed() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    let t1 = ms(t0, 10);
    assert_eq!(send(&mut t, t1, "written"), [Fx::Ready(link)]);
    assert_eq!(transmit(&mut t, t1, link), [data(2, "written")]);
    // The socket is full: the reactor pulls nothing more.
    let t2 = ms(t0, 20);
    assert_eq!(send(&mut t, t2, "stuck"), [Fx::Ready(link)]);
    assert_eq!(timeout(&mut t, t1 + TIMEOUT - Duration::from_millis(1)), []);
    assert_eq!(
        timeout(&mut t, t1 + TIMEOUT),
        [sent("written", Delivery::Unconfirmed)]
    );
    assert_eq!(
        timeout(&mut t, t2 + TIMEOUT),
        [failed("stuck", SendFailure::WriteTimedOut), Fx::Close(link)]
    );
    // Nothing was acknowledged for far longer than the idle limit: the stream went too.
    assert_eq!(t.pending_sends(), 0);
    assert_eq!(t.stream_backlog(), 0);
}

// ----- forgetting ---------------------------------------------------------------------------

/// The peer leaves (its `exit`): the stream is closed and the proof forgotten; the next
/// message to that address waits for a new probe, sent at once (no back-off).
#[test]
fn the_peer_leaving_forgets_the_proof() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    let m = wire::parse(format!("{BOB} bob exit").as_bytes()).unwrap();
    t.handle_message(ms(t0, 1), sa("10.0.0.8:51000"), m);
    assert_eq!(
        drain(&mut t),
        [
            Fx::Show(Event::PeerLeft(PeerView::new(Some("bob".into()), sa(BOB)))),
            Fx::Close(link),
        ]
    );
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
    let t1 = ms(t0, 2);
    assert_eq!(send(&mut t, t1, "again"), [Fx::Probe(2)]);
}

/// Our own `exit` to a peer, delivered over the stream, forgets it too.
#[test]
fn our_exit_over_the_stream_forgets_the_peer() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    assert_eq!(send(&mut t, ms(t0, 1), "exit"), [Fx::Ready(link)]);
    assert_eq!(transmit(&mut t, ms(t0, 1), link), [data(2, "exit")]);
    assert_eq!(
        ack(&mut t, ms(t0, 2), link, 2),
        [
            sent_as("exit", Purpose::Exit, Delivery::Receipt),
            Fx::Close(link)
        ]
    );
    assert!(t.peer(&bob()).is_none());
    assert_eq!(t.speaks(&bob()), Speaks::Unknown);
    // Back to bob: a new sender, in a new session. Its numbers start again at 1, which
    // bob would refuse in the old session (delivered through 2 there).
    let t1 = ms(t0, 3);
    assert_eq!(send(&mut t, t1, "again"), [Fx::Probe(2)]);
    assert_eq!(probe_answer(&mut t, t1, 2, PROOF), [Fx::Open(3)]);
    assert_eq!(connected(&mut t, t1, 3), [Fx::Ready(3)]);
    assert_eq!(transmit(&mut t, t1, 3), [W::Preface, hello_in(43, "me", 1)]);
    assert_eq!(welcome(&mut t, t1, 3, 0, 0), [Fx::Ready(3)]);
    assert_eq!(transmit(&mut t, t1, 3), [data(1, "again")]);
    assert_eq!(ack(&mut t, t1, 3, 1), [sent("again", Delivery::Receipt)]);
}

// ----- counts the user sees -----------------------------------------------------------------

/// Messages handed to a stream count as pending, and as slow once a second old, like
/// legacy ones (the prompt shows them).
#[test]
fn stream_messages_count_as_pending_and_slow() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    send(&mut t, ms(t0, 10), "one");
    send(&mut t, ms(t0, 10), "two");
    assert_eq!(
        transmit(&mut t, ms(t0, 10), link),
        [data(2, "one"), data(3, "two")]
    );
    assert_eq!(t.stream_backlog(), 2);
    assert_eq!(t.pending_sends(), 2);
    assert_eq!(t.slow_sends(ms(t0, 1009)), 0);
    assert_eq!(t.slow_sends(ms(t0, 1010)), 2);
    assert_eq!(
        ack(&mut t, ms(t0, 1020), link, 2),
        [sent("one", Delivery::Receipt)]
    );
    assert_eq!(t.pending_sends(), 1);
    assert_eq!(t.slow_sends(ms(t0, 1020)), 1);
}

/// A `connect` handed to a stream is a connect under way: asking again is refused, as
/// for one waiting for its legacy connection.
#[test]
fn a_connect_on_a_stream_is_under_way() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    let number = t.peer(&bob()).unwrap().number;
    t.connect(ms(t0, 1), Which::Indices(vec![number]));
    assert_eq!(drain(&mut t), [Fx::Ready(link)]);
    assert_eq!(t.stream_backlog(), 1);
    t.connect(ms(t0, 2), Which::Indices(vec![number]));
    assert_eq!(
        drain(&mut t),
        [Fx::Show(Event::Refused(
            "connecting to Unknown [10.0.0.8:5000] is already under way".to_owned()
        ))]
    );
    t.connect(ms(t0, 2), Which::All);
    assert_eq!(
        drain(&mut t),
        [Fx::Show(Event::Refused(
            "connecting to every remaining peer is already under way".to_owned()
        ))]
    );
    assert_eq!(transmit(&mut t, ms(t0, 3), link), [data(2, "connect")]);
    assert_eq!(
        ack(&mut t, ms(t0, 4), link, 2),
        [sent_as("connect", Purpose::Connect, Delivery::Receipt)]
    );
    assert_eq!(t.peer(&bob()).unwrap().status, PeerStatus::Connected);
}

/// A stream's name is its Hello's (the protocol has no second Hello): after `/nick`, the
/// open stream carries on under the old name, and the next stream says the new one.
#[test]
fn after_nick_the_next_stream_says_the_new_name() {
    let (mut t, t0) = setup();
    let link = streaming(&mut t, t0);
    t.set_name("neo");
    assert_eq!(drain(&mut t), [Fx::Show(Event::Renamed("neo".to_owned()))]);
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(timeout(&mut t, t1), [Fx::Close(link)]);
    assert_eq!(send(&mut t, t1, "as neo"), [Fx::Probe(2)]);
    assert_eq!(probe_answer(&mut t, t1, 2, PROOF), [Fx::Open(3)]);
    assert_eq!(connected(&mut t, t1, 3), [Fx::Ready(3)]);
    assert_eq!(transmit(&mut t, t1, 3), [W::Preface, hello("neo", 2)]);
}

/// A probe failed: for 30 s messages go by legacy at once. One is still in flight when
/// the back-off ends and the next message asks again (and waits). The proof then moves
/// what follows to a stream, but only once that legacy send is done: the order typed
/// holds across the paths.
#[test]
fn a_proof_during_a_legacy_send_waits_for_it_before_the_stream() {
    let (mut t, t0) = setup();
    assert_eq!(send(&mut t, t0, "m0"), [Fx::Probe(0)]);
    assert_eq!(
        probe_failed(&mut t, ms(t0, 10), 0),
        [tx(0, "m0", t0 + TIMEOUT)]
    );
    assert_eq!(
        legacy_delivered(&mut t, ms(t0, 20), 0),
        [sent("m0", Delivery::Closed)]
    );
    let t1 = ms(t0, 10) + Duration::from_secs(29);
    assert_eq!(send(&mut t, t1, "m1"), [tx(1, "m1", t1 + TIMEOUT)]);
    let t2 = ms(t0, 10) + Duration::from_secs(30);
    assert_eq!(send(&mut t, t2, "m2"), [Fx::Probe(1)]);
    assert_eq!(probe_answer(&mut t, ms(t2, 1), 1, PROOF), []);
    assert_eq!(t.speaks(&bob()), Speaks::P2pchat(1));
    // Proven, but "m1" is still in flight by legacy: "m2" waits behind it.
    assert_eq!(t.stream_backlog(), 0);
    assert_eq!(
        legacy_delivered(&mut t, ms(t2, 2), 1),
        [sent("m1", Delivery::Closed), Fx::Open(2)]
    );
    assert_eq!(t.stream_backlog(), 1);
    assert_eq!(connected(&mut t, ms(t2, 3), 2), [Fx::Ready(2)]);
    assert_eq!(transmit(&mut t, ms(t2, 3), 2), [W::Preface, hello("me", 1)]);
    assert_eq!(welcome(&mut t, ms(t2, 4), 2, 0, 0), [Fx::Ready(2)]);
    assert_eq!(transmit(&mut t, ms(t2, 4), 2), [data(1, "m2")]);
}
