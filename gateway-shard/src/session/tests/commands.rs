//! Commands, presence, closing and exporting, and what the session refuses.

use super::*;

#[test]
fn rate_limiter_holds_commands_and_is_fresh_per_connection() {
    let mut h = Harness::new(config());
    h.ready();
    let guild = Snowflake::new(41_771_983_444_115_456);
    for i in 0..200 {
        let r = RequestGuildMembers::builder(guild)
            .query("a", 1)
            .nonce(format!("n{i}"))
            .build()
            .unwrap();
        h.s.handle_command(h.now, Command::RequestGuildMembers(r))
            .unwrap();
    }
    h.drain();
    // 118 (Discord's 120 less a margin of 2) minus the identify, minus the heartbeat reserve
    // (ceil(61/41.25)+1 = 3).
    assert_eq!(h.take_sent().len(), 114);
    assert_eq!(h.s.queue_depth(), 86);
    assert_eq!(h.s.permits(h.now), 0);
    // Heartbeats still go out.
    h.advance(Duration::from_millis(41_250));
    assert!(h.take_sent().iter().any(|f| op(f) == 1));
    h.recv(r#"{"op":11}"#);
    // The window slides: 60 s after the burst, the rest goes.
    h.advance(Duration::from_secs(61));
    assert_eq!(h.s.queue_depth(), 0);
    assert!(h.take_sent().len() >= 86);
    // A new connection starts with a fresh window (less the RESUME it sent).
    h.recv(r#"{"op":7,"d":null}"#);
    h.reconnect();
    assert_eq!(h.s.permits(h.now), 114);
}

#[test]
fn queue_is_bounded_and_ordered_by_priority() {
    let mut c = config();
    c.queue_capacity = 2;
    let mut h = Harness::new(c);
    let guild = Snowflake::new(41_771_983_444_115_456);
    let request = RequestGuildMembers::builder(guild)
        .query("a", 1)
        .build()
        .unwrap();
    h.s.handle_command(h.now, Command::RequestGuildMembers(request.clone()))
        .unwrap();
    h.s.handle_presence(
        h.now,
        &PresenceUpdate {
            status: Some(Status::Idle),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        h.s.handle_command(h.now, Command::RequestGuildMembers(request)),
        Err(CommandError::QueueFull(2))
    ));
    let sent = h.ready();
    let ops: Vec<u64> = sent.iter().map(|f| op(f)).collect();
    assert_eq!(
        ops,
        vec![2, 3, 8],
        "identify, then presence before the member request"
    );
    assert!(
        sent[0].contains(r#""status":"idle""#),
        "the presence set while disconnected goes in IDENTIFY"
    );
}

#[test]
fn member_requests_check_intents_and_shard() {
    let mut h = Harness::new(config().with_shard(ShardId::new(1, 2).unwrap()));
    let on_shard_0 = (0..)
        .map(|i| Snowflake::new(i << 22))
        .find(|g| g.shard_index(2) == 0)
        .unwrap();
    let on_shard_1 = (0..)
        .map(|i| Snowflake::new(i << 22))
        .find(|g| g.shard_index(2) == 1)
        .unwrap();
    let presences = RequestGuildMembers::builder(on_shard_1)
        .query("a", 5)
        .presences(true)
        .build()
        .unwrap();
    assert!(matches!(
        h.s.handle_command(h.now, Command::RequestGuildMembers(presences)),
        Err(CommandError::MissingIntent(gateway_model::MissingIntent(
            Intents::GUILD_PRESENCES
        )))
    ));
    let wrong = RequestGuildMembers::builder(on_shard_0)
        .query("a", 5)
        .build()
        .unwrap();
    assert!(matches!(
        h.s.handle_command(h.now, Command::RequestGuildMembers(wrong)),
        Err(CommandError::WrongShard { expected: 0, .. })
    ));
}

#[test]
fn initial_presence_fills_defaults_and_identify_carries_shard() {
    let presence = PresenceUpdate {
        activity: Some(Some(Activity::playing("chess"))),
        ..Default::default()
    };
    let mut h = Harness::new(
        config()
            .with_presence(presence)
            .with_shard(ShardId::new(0, 4).unwrap()),
    );
    h.advance(Duration::ZERO);
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    h.s.handle_identify_permitted(h.now);
    h.drain();
    let identify = &h.take_sent()[0];
    assert!(identify.contains(r#""presence":{"since":null,"activities":[{"name":"chess","type":0}],"status":"online","afk":false}"#), "{identify}");
    assert!(identify.contains(r#""shard":[0,4]"#));
    assert!(identify.contains(r#""compress":false"#));
}

#[test]
fn liberal_in_what_it_accepts() {
    let mut h = Harness::new(config());
    h.ready();
    h.recv(r#"{"op":99,"d":{"whatever":1}}"#); // unknown opcode: ignored
    h.recv(r#"{"t":"SOMETHING_NEW","s":0,"op":0,"d":{"x":1},"extra":true}"#); // seq 0, unknown name, extra key
    assert_eq!(h.s.sequence(), Some(0));
    let events = h.take_events();
    assert!(matches!(&events[..], [ShardEvent::Dispatch(d)] if d.event.name() == "SOMETHING_NEW"));
    assert!(h.s.is_connected());
}

#[test]
fn a_corrupt_stream_or_an_unreadable_payload_reconnects_and_resumes() {
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_decode_error(h.now, &DecodeError::ZlibStreamEnded);
    h.drain();
    let actions = h.take_actions();
    assert_eq!(actions[0], Action::Close { code: 4000 });
    assert!(
        matches!(&actions[1..], [Action::Connect { .. }]),
        "reconnects at once, to resume"
    );
    assert!(h.s.is_alive() && h.s.resume_info().is_some());

    // Found by the simulator (seed 18): an unreadable payload was skipped, and when it was the
    // last dispatch for a while nothing ever brought it back. It may have been a dispatch, so
    // the shard resumes from the last one it delivered, and the gateway replays it.
    let mut h = Harness::new(config());
    h.ready();
    let json_error = serde_json_error();
    h.s.handle_decode_error(h.now, &json_error);
    h.drain();
    let actions = h.take_actions();
    assert_eq!(actions.first(), Some(&Action::Close { code: 4000 }));
    assert!(h.s.resume_info().is_some(), "resumes");
}

#[test]
fn an_oversize_payload_starts_a_new_session_instead_of_replaying_it() {
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_decode_error(h.now, &DecodeError::MessageTooLarge { limit: 10 });
    h.drain();
    assert!(h.s.resume_info().is_none());
    assert!(matches!(
        &h.take_events()[..],
        [ShardEvent::Disconnected {
            next: Reconnect::Reidentify,
            ..
        }]
    ));
}

fn serde_json_error() -> DecodeError {
    let mut d = Decoder::new(Compression::None).unwrap();
    d.push(b"{oops").unwrap_err()
}

#[test]
fn close_keeps_the_session_resumable_when_asked() {
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_close(h.now, true);
    h.drain();
    assert_eq!(h.take_actions(), vec![Action::Close { code: 4000 }]);
    assert!(matches!(
        &h.take_events()[..],
        [ShardEvent::Disconnected {
            next: Reconnect::Stop,
            ..
        }]
    ));
    assert_eq!(
        h.s.resume_info().map(|r| r.session_id),
        Some("abc".to_owned())
    );
    assert!(matches!(
        h.s.handle_command(h.now, Command::Heartbeat(Heartbeat(None))),
        Err(CommandError::NotRunning)
    ));

    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_close(h.now, false);
    h.drain();
    assert_eq!(h.take_actions(), vec![Action::Close { code: 1000 }]);
    assert!(h.s.resume_info().is_none());
}

#[test]
fn an_exported_session_is_resumed_first() {
    let resume = ResumeInfo {
        session_id: "abc".into(),
        sequence: 9,
        resume_url: "wss://resume.example".into(),
    };
    let mut h = Harness::new(config().with_resume(resume));
    let Action::Connect { url } = &h.take_actions()[0] else {
        panic!()
    };
    assert!(url.starts_with("wss://resume.example/"));
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    assert!(h.take_sent()[0].contains(r#""seq":9"#));
}

#[test]
fn debug_never_shows_the_pending_identify_or_its_token() {
    let mut h = Harness::new(config());
    h.connect_and_hello();
    h.s.handle_identify_permitted(h.now);
    // The IDENTIFY is built and waits to be sent: Debug must not show it.
    let shown = format!("{:?}", h.s);
    assert!(!shown.contains("t0ken"), "{shown}");
    assert!(shown.contains("handshake_pending: true"), "{shown}");
}

#[test]
fn a_ws_resume_url_under_a_wss_gateway_is_not_followed() {
    let mut h = Harness::new(config());
    h.ready_with(&READY.replace("wss://resume.example", "ws://resume.example"));
    assert_eq!(
        h.s.resume_info().map(|r| r.resume_url),
        Some("wss://gateway.example".to_owned()),
        "resumes on the gateway URL"
    );
    h.recv(r#"{"op":7,"d":null}"#);
    h.drain();
    h.advance(Duration::from_secs(10));
    let urls: Vec<&String> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { url } => Some(url),
            _ => None,
        })
        .collect();
    assert!(urls.iter().all(|u| u.starts_with("wss://")), "{urls:?}");
}

#[test]
fn a_dispatch_that_does_not_fit_its_type_reaches_the_user_raw() {
    let mut h = Harness::new(config());
    h.ready();
    h.recv(r#"{"t":"GUILD_CREATE","s":2,"op":0,"d":{"id":{"not":"a snowflake"}}}"#);
    let raw = h.events.iter().find_map(|e| match e {
        ShardEvent::Dispatch(gateway_model::Dispatch {
            seq: 2,
            event: DispatchEvent::Other(raw),
        }) => Some(raw.clone()),
        _ => None,
    });
    let raw = raw.expect("the dispatch was delivered");
    assert_eq!(&*raw.name, "GUILD_CREATE");
    assert_eq!(h.s.sequence(), Some(2));
}

#[test]
fn a_presence_too_large_for_identify_is_refused_when_set() {
    let mut h = Harness::new(config());
    h.ready();
    // About 3.9 KB of activity text: fits op 3 (4096 bytes), not an IDENTIFY with it.
    let big = PresenceUpdate {
        activity: Some(Some(Activity::playing("x".repeat(3_900)))),
        ..Default::default()
    };
    assert!(matches!(
        h.s.handle_presence(h.now, &big),
        Err(CommandError::Encode(_))
    ));
    // The next identify still goes out, without that presence.
    h.recv(r#"{"op":9,"d":false}"#);
    h.advance(Duration::from_secs(10));
    h.reconnect();
    let identify = h.take_sent().into_iter().find(|f| op(f) == 2);
    let identify = identify.expect("an IDENTIFY was sent");
    assert!(!identify.contains("xxxx"));
}

#[test]
fn an_initial_presence_too_large_still_identifies_without_it() {
    let config = config().with_presence(PresenceUpdate {
        activity: Some(Some(Activity::playing("y".repeat(4_000)))),
        ..Default::default()
    });
    let mut h = Harness::new(config);
    let sent = h.ready();
    assert!(
        sent.iter().any(|f| op(f) == 2 && !f.contains("yyyy")),
        "{sent:?}"
    );
    assert!(h.s.is_connected());
}

#[test]
fn raw_dispatches_keep_d_as_it_came() {
    let mut h = Harness::new(config().with_raw_dispatches(true));
    h.ready();
    let d = r#"{"id":"41771983444115456","name":"g",  "members":[1, 2]}"#;
    h.recv(&format!(r#"{{"t":"GUILD_CREATE","s":2,"op":0,"d":{d}}}"#));
    let events = h.take_events();
    let [ShardEvent::Dispatch(dispatch)] = &events[..] else {
        panic!("{events:?}")
    };
    let DispatchEvent::Other(raw) = &dispatch.event else {
        panic!("typed: {dispatch:?}")
    };
    assert_eq!(
        (&*raw.name, raw.data.get(), dispatch.seq),
        ("GUILD_CREATE", d, 2)
    );
}

/// The presence check counts the IDENTIFY's size without encoding one: at the boundary it agrees
/// with encoding the whole IDENTIFY (as 0234392 did, at the cost of an IDENTIFY and three
/// presence clones per update).
#[test]
fn a_presence_is_refused_exactly_when_the_identify_would_not_fit() {
    let mut h = Harness::new(config());
    let presence = |n: usize| PresenceUpdate {
        activity: Some(Some(Activity::playing("x".repeat(n)))),
        ..PresenceUpdate::default()
    };
    let fits = |h: &Harness, n: usize| {
        let mut identify = h.s.identify_template.clone();
        identify.presence = Some(h.s.presence.merged(&presence(n)));
        encode(&Command::from(identify)).is_ok()
    };
    let largest = (3_000..4_096).rev().find(|&n| fits(&h, n)).unwrap();
    assert!(h.s.handle_presence(h.now, &presence(largest)).is_ok());
    let refused = h.s.handle_presence(h.now, &presence(largest + 1));
    assert!(
        matches!(refused, Err(CommandError::Encode(_))),
        "{refused:?}"
    );
    assert_eq!(
        h.s.presence
            .for_identify()
            .map(|p| p.activities[0].name.len()),
        Some(largest),
        "the refused update left the presence as it was"
    );
}
