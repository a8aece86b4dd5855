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
