use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limits() -> Limits {
    Limits {
        max_inbound: 4,
        max_per_source: 3,
        max_buffered: 1000,
        rate: 0.0,
        burst: 10,
        limit_local: false,
    }
}

fn admission(l: Limits) -> Admission {
    Admission::new(l, LocalAddrs::new([ip("192.168.1.5")]))
}

fn cand(id: u32, source: &str, began: Instant, buffered: usize) -> Candidate<u32> {
    Candidate {
        id,
        source: ip(source),
        message_began: began,
        arrivals: 1,
        buffered,
    }
}

#[test]
fn a_source_holding_its_share_shuts_out_only_itself() {
    let t0 = Instant::now();
    let mut a = admission(limits());
    for _ in 0..3 {
        assert_eq!(a.on_accept(t0, ip("10.0.0.9")), Verdict::Admit);
        a.opened(ip("10.0.0.9"));
    }
    assert_eq!(a.on_accept(t0, ip("10.0.0.9")), Verdict::SourceFull);
    // Another address in the same IPv6 /64 counts as the same source; other sources do not.
    for _ in 0..3 {
        a.opened(ip("2001:db8::1"));
    }
    assert_eq!(a.on_accept(t0, ip("2001:db8::ffff")), Verdict::SourceFull);
    assert_eq!(a.on_accept(t0, ip("2001:db8:0:1::1")), Verdict::Admit);
    assert_eq!(a.on_accept(t0, ip("10.0.0.10")), Verdict::Admit);
    // This machine is limited only by the overall cap, unless --limit-local.
    for _ in 0..5 {
        a.opened(ip("127.0.0.1"));
    }
    assert_eq!(a.on_accept(t0, ip("127.0.0.1")), Verdict::Admit);
    assert_eq!(a.on_accept(t0, ip("192.168.1.5")), Verdict::Admit);
    let mut strict = admission(Limits {
        limit_local: true,
        ..limits()
    });
    for _ in 0..3 {
        strict.opened(ip("127.0.0.1"));
    }
    assert_eq!(strict.on_accept(t0, ip("127.0.0.1")), Verdict::SourceFull);
    // Closing gives the slot back.
    a.closed(ip("10.0.0.9"), 0);
    assert_eq!(a.on_accept(t0, ip("10.0.0.9")), Verdict::Admit);
}

#[test]
fn connections_and_later_messages_cost_rate_tokens() {
    let t0 = Instant::now();
    let mut a = admission(Limits {
        rate: 1.0,
        burst: 2,
        ..limits()
    });
    let src = ip("10.0.0.9");
    assert_eq!(a.on_accept(t0, src), Verdict::Admit);
    assert!(a.allow_message(t0, src, 0), "the first was paid at accept");
    assert!(a.allow_message(t0, src, 1));
    assert!(!a.allow_message(t0, src, 2), "burst spent");
    assert_eq!(a.on_accept(t0, src), Verdict::RateLimited);
    assert_eq!(
        a.on_accept(t0 + Duration::from_secs(1), src),
        Verdict::Admit,
        "refilled"
    );
    // Local senders are not rate limited.
    for i in 0..10 {
        assert!(a.allow_message(t0, ip("127.0.0.1"), i));
    }
}

/// Defect 5 of issue 8: an attacker keeping its slots "fresh" by dripping bytes is closed
/// before an honest sender that paused mid-message.
#[test]
fn the_victim_comes_from_the_source_holding_most_then_the_oldest_message() {
    let t0 = Instant::now();
    let mut a = admission(limits());
    for _ in 0..3 {
        a.opened(ip("10.6.6.6"));
    }
    a.opened(ip("10.0.0.1"));
    assert!(a.full());
    let now = t0 + Duration::from_secs(5);
    let honest = cand(1, "10.0.0.1", t0, 10); // paused longest, holds one slot
    let drips = [
        cand(2, "10.6.6.6", now - Duration::from_millis(900), 1),
        cand(3, "10.6.6.6", now - Duration::from_millis(3000), 1),
        cand(4, "10.6.6.6", now - Duration::from_millis(50), 1),
    ];
    let all = [honest, drips[0], drips[1], drips[2]];
    assert_eq!(a.choose_victim(all), Some(3));
    // With equal holdings, the message in progress longest goes first.
    let mut b = admission(limits());
    b.opened(ip("10.0.0.1"));
    b.opened(ip("10.0.0.2"));
    assert_eq!(
        b.choose_victim([cand(1, "10.0.0.1", now, 0), cand(2, "10.0.0.2", t0, 0)]),
        Some(2)
    );
    assert_eq!(b.choose_victim(std::iter::empty::<Candidate<u32>>()), None);
}

#[test]
fn over_the_byte_budget_the_largest_holder_of_the_busiest_source_goes() {
    let t0 = Instant::now();
    let mut a = admission(limits());
    a.opened(ip("10.6.6.6"));
    a.opened(ip("10.6.6.6"));
    a.opened(ip("10.0.0.1"));
    a.buffered_changed(0, 600);
    a.buffered_changed(0, 300);
    a.buffered_changed(0, 200);
    assert!(a.over_budget() && !a.full());
    let c = [
        cand(1, "10.0.0.1", t0, 600),
        cand(2, "10.6.6.6", t0, 200),
        cand(3, "10.6.6.6", t0 + Duration::from_secs(1), 300),
    ];
    assert_eq!(a.choose_victim(c), Some(3));
    a.closed(ip("10.6.6.6"), 300);
    assert_eq!(a.buffered(), 800);
    assert!(!a.over_budget());
}

#[test]
fn running_out_of_descriptors_pauses_accepts_a_moment() {
    let t0 = Instant::now();
    let mut a = admission(limits());
    assert!(a.may_accept(t0));
    a.out_of_fds(t0, &std::io::Error::from_raw_os_error(libc::EMFILE));
    assert!(!a.may_accept(t0 + Duration::from_millis(99)));
    assert_eq!(a.poll_timeout(t0), Some(t0 + ACCEPT_BACKOFF));
    assert!(!a.handle_timeout(t0 + Duration::from_millis(50)));
    assert!(a.handle_timeout(t0 + ACCEPT_BACKOFF));
    assert!(a.may_accept(t0 + ACCEPT_BACKOFF));
    assert!(!a.handle_timeout(t0 + ACCEPT_BACKOFF), "once");
}

/// Defect 9 of issue 8: a descriptor limit below --max-inbound lowers the inbound limits
/// and keeps descriptors for the user's sends.
#[test]
fn the_limits_fit_the_descriptor_limit() {
    let asked = Limits {
        max_inbound: 1024,
        max_per_source: 256,
        ..limits()
    };
    let f = fit_to_fd_limit(&asked, 64);
    assert_eq!(f.max_sends, 16);
    assert_eq!(f.limits.max_inbound, 16);
    assert_eq!(f.limits.max_per_source, 8);
    assert!(
        f.limits.max_inbound as u64 + f.max_sends as u64 + RESERVED_FDS <= 64,
        "{f:?}"
    );
    let note = f.lowered.expect("the user is told");
    assert!(note.contains("64") && note.contains("16 inbound"), "{note}");
    // A generous limit changes nothing.
    let f = fit_to_fd_limit(&asked, 1 << 20);
    assert_eq!(f.limits, asked);
    assert!(f.lowered.is_none());
    assert!(f.max_sends >= 1024);
    // Even an absurdly low limit leaves one of each.
    let f = fit_to_fd_limit(&asked, 3);
    assert!(f.limits.max_inbound >= 1 && f.max_sends >= 1 && f.limits.max_per_source >= 1);
}

/// The attack run against the first fix: sixteen sources holding one slot each, every one
/// dripping a byte every 50 ms. Holdings tie, so the drippers (many arrivals for their
/// message) go before an honest sender that wrote once and paused, however old its message.
#[test]
fn with_holdings_tied_a_dripper_goes_before_an_honest_pause() {
    let t0 = Instant::now();
    let mut a = admission(Limits {
        max_inbound: 17,
        ..limits()
    });
    a.opened(ip("10.0.0.1"));
    let honest = cand(0, "10.0.0.1", t0, 30);
    let now = t0 + Duration::from_millis(600);
    let mut all = vec![honest];
    for i in 1..=16u32 {
        a.opened(ip(&format!("10.9.0.{i}")));
        all.push(Candidate {
            arrivals: 12,
            ..cand(
                i,
                &format!("10.9.0.{i}"),
                now - Duration::from_millis(50 * u64::from(i)),
                12,
            )
        });
    }
    let victim = a.choose_victim(all.iter().copied()).unwrap();
    assert_ne!(victim, 0, "the honest sender was chosen");
    assert_eq!(victim, 16, "the dripper whose message is oldest");
    // One or two arrivals are an honest sender's: age decides between those.
    let two = Candidate {
        arrivals: 2,
        ..cand(1, "10.9.0.1", t0 + Duration::from_millis(100), 0)
    };
    assert_eq!(a.choose_victim([honest, two]), Some(0));
}
