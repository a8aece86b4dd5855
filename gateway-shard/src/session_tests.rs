use std::time::{Duration, Instant};

use gateway_codec::scan_envelope;
use gateway_model::{Activity, Intents, RequestGuildMembers, ShardId, Snowflake, Status, Token};

use super::*;

const READY: &str = r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"user":{"id":"42","username":"bot","discriminator":"0","avatar":null},"guilds":[],"session_id":"abc","resume_gateway_url":"wss://resume.example","application":{"id":"1","flags":0}}}"#;

struct Harness {
    s: Session,
    now: Instant,
    sent: Vec<String>,
    actions: Vec<Action>,
    events: Vec<ShardEvent>,
}

fn config() -> ShardConfig {
    ShardConfig::new(
        Token::new("t0ken"),
        Intents::GUILDS | Intents::GUILD_MEMBERS,
    )
    .with_gateway_url("wss://gateway.example")
    .with_seed(7)
}

impl Harness {
    fn new(config: ShardConfig) -> Self {
        let now = Instant::now();
        let mut h = Self {
            s: Session::new(&config, now),
            now,
            sent: Vec::new(),
            actions: Vec::new(),
            events: Vec::new(),
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now);
        }
        while let Some(a) = self.s.poll_action() {
            self.actions.push(a);
        }
        while let Some(f) = self.s.poll_transmit(self.now) {
            self.sent.push(f);
        }
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
    }

    /// Advances made-up time to `at`, firing every timeout on the way.
    fn advance_to(&mut self, at: Instant) {
        while let Some(t) = self.s.poll_timeout() {
            if t > at {
                break;
            }
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(at);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        let at = self.now + d;
        self.advance_to(at);
    }

    fn recv(&mut self, json: &str) {
        let p = scan_envelope(json.as_bytes()).unwrap();
        self.s.handle_payload(self.now, &p);
        self.drain();
    }

    fn take_sent(&mut self) -> Vec<String> {
        std::mem::take(&mut self.sent)
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn take_events(&mut self) -> Vec<ShardEvent> {
        std::mem::take(&mut self.events)
    }

    /// Steps time until the session asks to connect, then connects and passes HELLO.
    fn reconnect(&mut self) {
        for _ in 0..10_000 {
            if self
                .take_actions()
                .iter()
                .any(|a| matches!(a, Action::Connect { .. }))
            {
                self.s.handle_connected(self.now);
                self.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
                if self.take_actions().contains(&Action::AwaitIdentify) {
                    self.s.identify_permitted(self.now);
                    self.drain();
                }
                return;
            }
            self.advance(Duration::from_millis(100));
        }
        panic!("never reconnected");
    }

    /// Connect, HELLO, identify, READY; returns what was sent.
    fn ready(&mut self) -> Vec<String> {
        self.ready_with(READY)
    }

    /// Connects and passes HELLO; returns whether the session now waits for its identify turn.
    fn connect_and_hello(&mut self) -> bool {
        self.advance(Duration::ZERO);
        assert!(matches!(self.take_actions()[..], [Action::Connect { .. }]));
        self.s.handle_connected(self.now);
        self.recv(r#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}"#);
        self.take_actions().contains(&Action::AwaitIdentify)
    }

    fn ready_with(&mut self, ready: &str) -> Vec<String> {
        if self.connect_and_hello() {
            self.s.identify_permitted(self.now);
        }
        self.drain();
        self.recv(ready);
        self.take_events();
        self.take_sent()
    }
}

fn op(frame: &str) -> u64 {
    scan_envelope(frame.as_bytes()).unwrap().op.value()
}

#[test]
fn connects_then_identifies_when_permitted_then_ready() {
    let mut h = Harness::new(config());
    let Action::Connect { url } = &h.take_actions()[0] else {
        panic!()
    };
    assert_eq!(
        url,
        "wss://gateway.example/?v=10&encoding=json&compress=zlib-stream"
    );
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#); // no s or t keys
    assert_eq!(
        h.take_events(),
        vec![ShardEvent::Connected { resuming: false }]
    );
    assert_eq!(h.take_actions(), vec![Action::AwaitIdentify]);
    assert!(h.take_sent().is_empty(), "no identify before the permit");
    h.s.identify_permitted(h.now);
    h.drain();
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with(r#"{"op":2,"d":{"token":"t0ken""#),
        "{}",
        sent[0]
    );
    assert!(
        !sent[0].contains("presence"),
        "no initial presence set: none sent"
    );
    h.recv(READY);
    assert!(matches!(&h.take_events()[..], [ShardEvent::Ready(r)] if r.session_id == "abc"));
    assert!(h.s.is_connected());
    assert_eq!(h.s.user_id(), Some(Snowflake::new(42)));
    assert_eq!(
        h.s.resume_info().unwrap().resume_url,
        "wss://resume.example"
    );
}

#[test]
fn first_heartbeat_after_jitter_then_every_interval_with_latency() {
    let mut h = Harness::new(config());
    h.ready();
    let hello_at = h.now;
    let interval = Duration::from_millis(41_250);
    // The first heartbeat comes within one interval, at a seeded jitter.
    h.advance(interval);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0], r#"{"op":1,"d":1}"#, "the last sequence");
    let first = h.s.last_heartbeat.unwrap();
    assert!(first >= hello_at && first < hello_at + interval);
    h.advance(Duration::from_millis(120));
    h.recv(r#"{"t":null,"s":null,"op":11,"d":null}"#);
    assert_eq!(
        h.take_events(),
        vec![ShardEvent::HeartbeatAck {
            latency: h.now - first
        }]
    );
    assert_eq!(h.s.heartbeat_latency(), Some(h.now - first));
    h.advance_to(first + interval);
    assert_eq!(h.take_sent().len(), 1, "then every interval");
    // Same seed, same jitter.
    let mut again = Harness::new(config());
    again.ready();
    let again_hello = again.now;
    again.advance(interval);
    assert_eq!(
        again.s.last_heartbeat.unwrap() - again_hello,
        first - hello_at
    );
}

#[test]
fn server_heartbeat_request_is_answered_at_once() {
    let mut h = Harness::new(config());
    h.ready();
    h.recv(r#"{"op":1,"d":null}"#);
    assert_eq!(h.take_sent(), vec![r#"{"op":1,"d":1}"#.to_owned()]);
}

#[test]
fn zombie_closes_non_1000_and_resumes() {
    let mut h = Harness::new(config());
    h.ready();
    let interval = Duration::from_millis(41_250);
    h.advance(interval);
    assert_eq!(h.take_sent().len(), 1);
    let first = h.s.last_heartbeat.unwrap();
    // No ACK; the next heartbeat falls due while this one is unacknowledged.
    h.advance_to(first + interval);
    let actions = h.take_actions();
    assert_eq!(actions[0], Action::Close { code: 4000 });
    // It reconnects to the resume URL (at once: the first retry has no backoff) and resumes.
    assert!(
        matches!(&actions[1..], [Action::Connect { url }] if url.starts_with("wss://resume.example/")),
        "{actions:?}"
    );
    assert!(matches!(
        &h.take_events()[..],
        [ShardEvent::Disconnected {
            next: Reconnect::Resume,
            ..
        }]
    ));
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    let sent = h.take_sent();
    assert!(
        sent[0].starts_with(r#"{"op":6,"d":{"token":"t0ken","session_id":"abc","seq":1}"#),
        "{sent:?}"
    );
    h.recv(r#"{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{}}"#);
    h.recv(r#"{"t":"RESUMED","s":3,"op":0,"d":{}}"#);
    let events = h.take_events();
    assert!(matches!(
        events[0],
        ShardEvent::Connected { resuming: true }
    ));
    assert!(matches!(&events[1], ShardEvent::Dispatch(d) if d.seq == 2));
    assert_eq!(events[2], ShardEvent::Resumed { replayed: 1 });
}

fn closed_with(code: u16) -> (Harness, Vec<ShardEvent>) {
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_closed(h.now, Some(code));
    h.drain();
    let events = h.take_events();
    (h, events)
}

#[test]
fn every_close_code_follows_the_policy_table() {
    for (code, action, _) in gateway_model::CLOSE_POLICY {
        let (mut h, events) = closed_with(code);
        let ShardEvent::Disconnected {
            next, code: got, ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(*got, Some(code));
        match action {
            CloseAction::Resume => {
                assert_eq!(*next, Reconnect::Resume, "{code}");
                assert!(h.s.resume_info().is_some());
            }
            CloseAction::Reidentify => {
                assert_eq!(*next, Reconnect::Reidentify, "{code}");
                assert!(h.s.resume_info().is_none());
            }
            CloseAction::Fatal => {
                assert_eq!(*next, Reconnect::Stop, "{code}");
                assert!(!h.s.is_alive());
                assert!(matches!(h.s.outcome(), Some(Err(ShardError::Fatal { .. }))));
                h.advance(Duration::from_secs(600));
                assert!(
                    h.take_actions().is_empty(),
                    "a fatal close never reconnects"
                );
            }
        }
    }
    // A drop without a close frame resumes.
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_closed(h.now, None);
    h.drain();
    assert!(matches!(
        &h.take_events()[..],
        [ShardEvent::Disconnected {
            code: None,
            next: Reconnect::Resume,
            ..
        }]
    ));
}

#[test]
fn invalid_session_false_reidentifies_after_1_to_5_s_and_true_resumes() {
    let mut h = Harness::new(config());
    h.ready();
    h.recv(r#"{"op":9,"d":false}"#);
    assert_eq!(h.take_actions(), vec![Action::Close { code: 4000 }]);
    assert!(h.s.resume_info().is_none());
    h.advance(Duration::from_millis(999));
    assert!(h.take_actions().is_empty());
    h.advance(Duration::from_millis(4001));
    let actions = h.take_actions();
    assert!(
        matches!(&actions[..], [Action::Connect { url }] if url.starts_with("wss://gateway.example/")),
        "{actions:?}"
    );

    let mut h = Harness::new(config());
    h.ready();
    h.recv(r#"{"op":9,"d":true}"#);
    assert!(h.s.resume_info().is_some());
}

#[test]
fn reconnect_before_hello_and_after() {
    let mut h = Harness::new(config());
    h.advance(Duration::ZERO);
    h.take_actions();
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":7,"d":null}"#);
    let actions = h.take_actions();
    assert_eq!(actions[0], Action::Close { code: 4000 });
    assert!(
        matches!(&actions[1..], [Action::Connect { .. }]),
        "reconnects: {actions:?}"
    );
    // No Connected, so no Disconnected: a ConnectFailed says why instead.
    assert!(
        matches!(&h.take_events()[..], [ShardEvent::ConnectFailed { .. }]),
        "a ConnectFailed, no Disconnected"
    );

    let mut h = Harness::new(config());
    h.ready();
    h.recv(r#"{"op":7,"d":null}"#);
    assert_eq!(h.take_actions()[0], Action::Close { code: 4000 });
    assert!(matches!(
        &h.take_events()[..],
        [ShardEvent::Disconnected {
            next: Reconnect::Resume,
            ..
        }]
    ));
}

#[test]
fn failed_resume_connect_falls_back_to_the_gateway_url() {
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_closed(h.now, Some(4000));
    h.advance(Duration::from_secs(120));
    let Action::Connect { url } = &h.take_actions()[0] else {
        panic!()
    };
    assert!(url.starts_with("wss://resume.example"));
    h.s.handle_connect_failed(h.now, "refused");
    h.advance(Duration::from_secs(120));
    let Action::Connect { url } = &h.take_actions()[0] else {
        panic!()
    };
    assert!(url.starts_with("wss://gateway.example"), "{url}");
    // …and still resumes there.
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    assert_eq!(op(&h.take_sent()[0]), 6);
}

#[test]
fn handshake_hello_and_ready_timeouts() {
    let timeouts = Timeouts {
        handshake: Duration::from_secs(5),
        hello: Duration::from_secs(6),
        ready: Duration::from_secs(7),
    };
    let mut h = Harness::new(config().with_timeouts(timeouts));
    h.take_actions();
    h.advance(Duration::from_secs(5));
    // The handshake timed out: a reconnect is scheduled (the first after a failure is immediate).
    assert!(matches!(&h.take_actions()[..], [Action::Connect { .. }]));
    h.s.handle_connected(h.now);
    h.advance(Duration::from_secs(6));
    assert_eq!(h.take_actions()[0], Action::Close { code: 4000 });
    h.advance(Duration::from_secs(120));
    h.take_actions();
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    h.s.identify_permitted(h.now);
    h.drain();
    h.advance(Duration::from_secs(7));
    assert!(h.take_actions().contains(&Action::Close { code: 4000 }));
}

#[test]
fn backoff_grows_on_repeated_failures_and_resets_after_a_stable_connection() {
    let mut h = Harness::new(config());
    h.take_actions();
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let start = h.now;
        h.s.handle_connect_failed(h.now, "refused");
        loop {
            h.advance(Duration::from_millis(100));
            if !h.take_actions().is_empty() {
                break;
            }
        }
        gaps.push(h.now - start);
    }
    assert!(
        gaps[0] < Duration::from_millis(200),
        "first retry at once: {gaps:?}"
    );
    assert!(
        gaps.iter()
            .skip(1)
            .all(|g| *g >= Duration::from_secs(1) && *g <= Duration::from_secs(61)),
        "{gaps:?}"
    );
    // A connection that lived past stable_after reconnects at once.
    let mut h = Harness::new(config());
    h.ready();
    for _ in 0..3 {
        h.recv(r#"{"op":7,"d":null}"#);
        h.reconnect();
        h.recv(r#"{"t":"RESUMED","s":2,"op":0,"d":{}}"#);
    }
    for _ in 0..4 {
        h.advance(Duration::from_secs(30));
        h.recv(r#"{"op":11}"#);
    }
    h.recv(r#"{"op":7,"d":null}"#);
    let actions = h.take_actions();
    assert!(
        matches!(&actions[..], [Action::Close { .. }, Action::Connect { .. }]),
        "immediate after a stable connection: {actions:?}"
    );
}

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
        h.s.queue_command(Command::RequestGuildMembers(r)).unwrap();
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
    h.s.queue_command(Command::RequestGuildMembers(request.clone()))
        .unwrap();
    h.s.update_presence(&PresenceUpdate {
        status: Some(Status::Idle),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        h.s.queue_command(Command::RequestGuildMembers(request)),
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
        h.s.queue_command(Command::RequestGuildMembers(presences)),
        Err(CommandError::MissingIntent(gateway_model::MissingIntent(
            Intents::GUILD_PRESENCES
        )))
    ));
    let wrong = RequestGuildMembers::builder(on_shard_0)
        .query("a", 5)
        .build()
        .unwrap();
    assert!(matches!(
        h.s.queue_command(Command::RequestGuildMembers(wrong)),
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
    h.s.identify_permitted(h.now);
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
fn a_corrupt_stream_reconnects_and_resumes_a_bad_payload_is_skipped() {
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

    let mut h = Harness::new(config());
    h.ready();
    let json_error = serde_json_error();
    h.s.handle_decode_error(h.now, &json_error);
    h.drain();
    assert!(h.take_actions().is_empty());
    assert!(h.s.is_connected());
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
    let mut d = gateway_codec::Decoder::new(gateway_codec::Compression::None).unwrap();
    d.push(b"{oops").unwrap_err()
}

#[test]
fn close_keeps_the_session_resumable_when_asked() {
    let mut h = Harness::new(config());
    h.ready();
    h.s.close(h.now, true);
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
        h.s.queue_command(Command::Heartbeat(Heartbeat(None))),
        Err(CommandError::NotRunning)
    ));

    let mut h = Harness::new(config());
    h.ready();
    h.s.close(h.now, false);
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
    h.s.identify_permitted(h.now);
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
        h.s.update_presence(&big),
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
        h.s.identify_permitted(h.now);
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
    h.s.identify_refused(h.now, Duration::from_secs(3600), "budget at its reserve");
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
    h.s.queue_command(Command::RequestGuildMembers(r)).unwrap();
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
