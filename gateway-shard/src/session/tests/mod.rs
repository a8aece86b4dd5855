use std::time::{Duration, Instant};

use gateway_codec::{Compression, DecodeError, scan_envelope};
use gateway_model::{Activity, Intents, RequestGuildMembers, ShardId, Snowflake, Status, Token};

use super::*;
use crate::{CommandError, PresenceUpdate};

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
        while let Some(output) = self.s.poll_output(self.now) {
            match output {
                Output::Action(a) => self.actions.push(a),
                Output::Transmit(f) => self.sent.push(f),
                Output::Event { event, .. } => self.events.push(event),
            }
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

    /// Steps time until the session asks to connect, then reports the websocket open.
    fn connect_when_asked(&mut self) {
        for _ in 0..10_000 {
            if self
                .take_actions()
                .iter()
                .any(|a| matches!(a, Action::Connect { .. }))
            {
                self.s.handle_connected(self.now);
                return;
            }
            self.advance(Duration::from_millis(100));
        }
        panic!("never asked to connect");
    }

    /// Steps time until the session asks to connect, then connects and passes HELLO.
    fn reconnect(&mut self) {
        self.connect_when_asked();
        self.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
        if self.take_actions().contains(&Action::AwaitIdentify) {
            self.s.handle_identify_permitted(self.now);
            self.drain();
        }
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
            self.s.handle_identify_permitted(self.now);
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
    h.s.handle_identify_permitted(h.now);
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
    let first = h.s.heartbeats.newest_unacked().unwrap();
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
        again.s.heartbeats.newest_unacked().unwrap() - again_hello,
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
    let first = h.s.heartbeats.newest_unacked().unwrap();
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
    assert_eq!(
        events[2],
        ShardEvent::Resumed {
            replayed: 1,
            seq: 3
        }
    );
}

#[test]
fn a_late_ack_behind_a_backlog_is_no_zombie() {
    let mut h = Harness::new(config());
    h.ready();
    let interval = Duration::from_millis(41_250);
    h.advance(interval);
    assert_eq!(h.take_sent().len(), 1);
    let first = h.s.heartbeats.newest_unacked().unwrap();
    // Five intervals of backlog: a dispatch every second, every ACK queued behind them.
    let mut seq = 1;
    for _ in 0..5 * 42 {
        h.advance(Duration::from_secs(1));
        seq += 1;
        h.recv(&format!(
            r#"{{"t":"MESSAGE_CREATE","s":{seq},"op":0,"d":{{}}}}"#
        ));
    }
    assert!(h.take_actions().is_empty(), "no close, no reconnect");
    let heartbeats = h.take_sent();
    assert!(
        heartbeats.len() >= 5,
        "heartbeats kept going out: {heartbeats:?}"
    );
    // The ACKs come out in order: the first measures the first heartbeat.
    h.recv(r#"{"op":11}"#);
    let events = h.take_events();
    let latency = h.now - first;
    assert!(
        events.contains(&ShardEvent::HeartbeatAck { latency }),
        "{:?}",
        &events[events.len() - 1..]
    );
}

#[test]
fn silence_after_a_busy_stretch_is_a_zombie_within_two_intervals() {
    let mut h = Harness::new(config());
    h.ready();
    let interval = Duration::from_millis(41_250);
    for seq in 2..60 {
        h.advance(Duration::from_secs(1));
        h.recv(&format!(
            r#"{{"t":"MESSAGE_CREATE","s":{seq},"op":0,"d":{{}}}}"#
        ));
    }
    assert!(h.take_actions().is_empty());
    // The gateway stops sending; the TCP stays open.
    h.advance(interval * 2);
    assert_eq!(h.take_actions()[0], Action::Close { code: 4000 });
    assert!(h.s.resume_info().is_some(), "it resumes: nothing is lost");
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
    // The handshake timed out: the attempt is cancelled, and a reconnect is scheduled (the first
    // after a failure is immediate).
    assert!(matches!(
        &h.take_actions()[..],
        [Action::CancelConnect, Action::Connect { .. }]
    ));
    h.s.handle_connected(h.now);
    h.advance(Duration::from_secs(6));
    assert_eq!(h.take_actions()[0], Action::Close { code: 4000 });
    h.advance(Duration::from_secs(120));
    h.take_actions();
    h.s.handle_connected(h.now);
    h.recv(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    h.s.handle_identify_permitted(h.now);
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

mod commands;
mod inbound;
mod recovery;
