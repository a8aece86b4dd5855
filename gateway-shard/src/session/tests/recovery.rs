//! Recovery over time: outages, the breaker, the identify budget, ended sessions.

use super::*;

/// The gateway is down for 5 s (every connect refused), then back: the shard is READY again within
/// the unreachable cap (8 s) of its return, however long the failures grew the backoff.
#[test]
fn back_within_seconds_after_an_outage() {
    for seed in 0..20 {
        let mut h = Harness::new(config().with_seed(seed));
        h.ready();
        // Several quick deaths first, so the session backoff has grown.
        for _ in 0..4 {
            h.recv(r#"{"op":7,"d":null}"#);
            h.reconnect();
        }
        h.s.handle_closed(h.now, None);
        h.drain();
        let back = h.now + Duration::from_secs(5);
        let reconnected = loop {
            h.advance(Duration::from_millis(50));
            if h.take_actions()
                .iter()
                .any(|a| matches!(a, Action::Connect { .. }))
            {
                if h.now < back {
                    h.s.handle_connect_failed(h.now, "refused");
                    h.drain();
                } else {
                    break h.now;
                }
            }
        };
        let late = reconnected - back;
        assert!(
            late <= Duration::from_secs(8),
            "seed {seed}: {late:?} after the gateway came back"
        );
    }
}

/// INVALID_SESSION from a live gateway waits its 1–5 s, not one more step of the backoff.
#[test]
fn invalid_session_waits_its_own_delay_not_the_backoff() {
    let mut h = Harness::new(config());
    h.ready();
    for _ in 0..5 {
        h.s.handle_closed(h.now, None);
        h.drain();
        h.reconnect();
        h.recv(r#"{"t":"RESUMED","s":2,"op":0,"d":{}}"#);
    }
    h.recv(r#"{"op":9,"d":false}"#);
    let start = h.now;
    loop {
        h.advance(Duration::from_millis(100));
        if h.take_actions()
            .iter()
            .any(|a| matches!(a, Action::Connect { .. }))
        {
            break;
        }
    }
    assert!(
        h.now - start <= Duration::from_millis(5_100),
        "{:?}",
        h.now - start
    );
}

/// Sessions that keep dying before READY open the circuit breaker: the shard backs off for up to
/// minutes and says why, instead of identifying in a loop; a READY closes it.
#[test]
fn sessions_dying_before_ready_open_the_breaker() {
    let mut h = Harness::new(config());
    h.advance(Duration::ZERO);
    let mut gaps = Vec::new();
    for _ in 0..10 {
        // Connect, HELLO, IDENTIFY, then the gateway closes before READY.
        let start = h.now;
        loop {
            if h.take_actions()
                .iter()
                .any(|a| matches!(a, Action::Connect { .. }))
            {
                break;
            }
            h.advance(Duration::from_secs(1));
        }
        gaps.push(h.now - start);
        h.s.handle_connected(h.now);
        h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
        h.s.handle_identify_permitted(h.now);
        h.drain();
        h.s.handle_closed(h.now, Some(4000));
        h.drain();
    }
    assert!(
        gaps.iter().take(3).all(|g| *g <= Duration::from_secs(10)),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().any(|g| *g > Duration::from_secs(60)),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(301)),
        "{gaps:?}"
    );
    let said = h.take_events().into_iter().any(
        |e| matches!(e, ShardEvent::Disconnected { reason, .. } if reason.contains("backing off")),
    );
    assert!(said, "the user is told why");
}

/// The identify queue refuses the turn (budget at its reserve): the user hears it, the
/// connection closes, and the next attempt waits for the budget's reset, breaker or not.
#[test]
fn a_refused_identify_turn_pauses_until_the_budget_resets() {
    let mut h = Harness::new(config());
    assert!(h.connect_and_hello());
    h.s.handle_identify_refused(h.now, Duration::from_secs(3600), "budget at its reserve");
    h.drain();
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ShardEvent::IdentifyPaused { retry_in, .. } if *retry_in == Duration::from_secs(3600)
    )));
    assert!(h.take_actions().contains(&Action::Close { code: 4000 }));
    h.advance(Duration::from_secs(3599));
    assert!(
        !h.take_actions()
            .iter()
            .any(|a| matches!(a, Action::Connect { .. }))
    );
    h.advance(Duration::from_secs(2));
    assert!(
        h.take_actions()
            .iter()
            .any(|a| matches!(a, Action::Connect { .. }))
    );
}

/// A connection the gateway closes before HELLO still tells the user why.
#[test]
fn a_close_before_hello_is_reported() {
    let mut h = Harness::new(config());
    h.advance(Duration::ZERO);
    h.take_actions();
    h.s.handle_connected(h.now);
    h.s.handle_closed(h.now, Some(4000));
    h.drain();
    let reported = h
        .take_events()
        .into_iter()
        .any(|e| matches!(e, ShardEvent::ConnectFailed { reason, .. } if reason.contains("4000")));
    assert!(reported);
}

/// Waiting for a handshake slot does not count against the handshake timeout: the clock starts
/// when the attempt does.
#[test]
fn the_handshake_timeout_counts_from_the_attempt_not_the_slot() {
    let mut h = Harness::new(config());
    h.advance(Duration::ZERO);
    assert!(matches!(h.take_actions()[..], [Action::Connect { .. }]));
    h.advance(Duration::from_secs(14));
    h.s.handle_connect_started(h.now);
    h.advance(Duration::from_secs(14));
    assert!(
        !h.take_events()
            .iter()
            .any(|e| matches!(e, ShardEvent::ConnectFailed { .. })),
        "28 s since the Connect action, 14 s since the attempt began"
    );
    h.advance(Duration::from_secs(2));
    assert!(
        h.take_events()
            .iter()
            .any(|e| matches!(e, ShardEvent::ConnectFailed { .. }))
    );
}

/// Member requests queued when the session ends are dropped (and said), not sent in the next
/// session, where the guild's new GUILD_CREATE asks again.
#[test]
fn member_requests_of_an_ended_session_are_dropped_and_said() {
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_closed(h.now, None);
    h.drain();
    let guild = Snowflake::new(41_771_983_444_115_456);
    let r = RequestGuildMembers::builder(guild)
        .query("", 0)
        .nonce("stale")
        .build()
        .unwrap();
    h.s.handle_command(h.now, Command::RequestGuildMembers(r))
        .unwrap();
    h.reconnect();
    h.recv(r#"{"op":9,"d":false}"#);
    assert!(
        h.take_events()
            .iter()
            .any(|e| matches!(e, ShardEvent::MemberRequestsDropped { count: 1 }))
    );
    h.advance(Duration::from_secs(10));
    h.reconnect();
    h.recv(READY);
    h.advance(Duration::from_secs(1));
    assert!(
        !h.take_sent().iter().any(|f| op(f) == 8),
        "the stale request is not sent"
    );
}

fn dispatch(seq: u64) -> String {
    format!(r#"{{"t":"SIM_EVENT","s":{seq},"op":0,"d":{{"seq":{seq}}}}}"#)
}

fn delivered(h: &mut Harness) -> Vec<u64> {
    h.take_events()
        .iter()
        .filter_map(|e| match e {
            ShardEvent::Dispatch(d) => Some(d.seq),
            _ => None,
        })
        .collect()
}

/// Found by the simulator (seed 3): an unreadable plain-JSON payload was skipped, and the
/// dispatch it held was lost for good. A gap in the sequence now resumes from the last dispatch
/// delivered, so the gateway replays the lost one.
#[test]
fn a_sequence_gap_resumes_from_the_last_dispatch_delivered() {
    let mut h = Harness::new(config());
    h.ready();
    h.recv(&dispatch(2));
    h.recv(&dispatch(4)); // #3 was lost
    assert_eq!(
        delivered(&mut h),
        [2],
        "the dispatch after the gap is not delivered"
    );
    let actions = h.take_actions();
    assert_eq!(actions.first(), Some(&Action::Close { code: 4000 }));
    h.reconnect();
    let resume = h
        .take_sent()
        .into_iter()
        .find(|f| op(f) == 6)
        .expect("a RESUME");
    assert!(resume.contains(r#""seq":2"#), "{resume}");
    h.recv(&dispatch(3));
    h.recv(&dispatch(4));
    h.recv(r#"{"t":"RESUMED","s":5,"op":0,"d":{}}"#);
    h.recv(&dispatch(6));
    assert_eq!(delivered(&mut h), [3, 4, 6]);
}

/// The same gap after the resume that should have filled it: the lost dispatch cannot be read
/// even when replayed, so a new session starts instead of resuming into it forever.
#[test]
fn a_gap_that_a_resume_does_not_fill_starts_a_new_session() {
    let mut h = Harness::new(config());
    h.ready();
    h.recv(&dispatch(2));
    h.recv(&dispatch(4));
    h.reconnect();
    h.take_sent();
    h.recv(&dispatch(4)); // #3 unreadable again
    let events = h.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            ShardEvent::Disconnected {
                next: Reconnect::Reidentify,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(h.s.resume_info().is_none());
}

/// Found by the simulator (seed 107): a corrupted READY was skipped and the session's
/// GUILD_CREATEs were delivered before any READY, in a session the shard did not know. A dispatch
/// before READY now means READY was lost: the shard identifies again.
#[test]
fn a_dispatch_before_ready_identifies_again() {
    let mut h = Harness::new(config());
    if h.connect_and_hello() {
        h.s.handle_identify_permitted(h.now);
    }
    h.drain();
    h.take_sent();
    h.recv(&dispatch(2));
    assert!(delivered(&mut h).is_empty());
    let actions = h.take_actions();
    assert_eq!(actions.first(), Some(&Action::Close { code: 4000 }));
    h.reconnect();
    assert!(h.take_sent().iter().any(|f| op(f) == 2), "IDENTIFY again");
}
