//! The session's side of the transport: messages in through its own decoder, the decoder's life,
//! the transport's refusals, the end of the identify wait, and what each event is counted as.

use gateway_codec::Compressor;

use super::*;

const HELLO: &str = r#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}"#;

/// A session on zlib-stream, fed compressed messages as a websocket would carry them.
struct Wire {
    h: Harness,
    z: Compressor,
}

impl Wire {
    fn new(config: ShardConfig) -> Self {
        let compression = config.compression;
        Self {
            h: Harness::new(config),
            z: Compressor::new(compression).unwrap(),
        }
    }

    /// Sends `json` as one message of the current connection's stream.
    fn message(&mut self, json: &str) {
        let bytes = self.z.compress_to_vec(json.as_bytes()).unwrap();
        self.h.s.handle_message(self.h.now, &bytes);
        self.h.drain();
    }

    /// The next connection opens, with a compression stream of its own.
    fn connect(&mut self) {
        self.h.connect_when_asked();
        self.z.reset().unwrap();
    }
}

#[test]
fn the_session_decodes_each_message_and_starts_a_new_stream_with_each_connection() {
    let mut w = Wire::new(config());
    w.connect();
    w.message(HELLO);
    assert!(w.h.take_actions().contains(&Action::AwaitIdentify));
    w.h.s.handle_identify_permitted(w.h.now);
    w.h.drain();
    w.message(READY);
    assert!(w.h.s.is_connected());
    w.h.s.handle_closed(w.h.now, None);
    w.h.drain();
    // A stream that went on from the old connection's context would not inflate.
    w.connect();
    w.message(HELLO);
    let sent = w.h.take_sent();
    assert!(sent.iter().any(|f| op(f) == 6), "resumes: {sent:?}");
}

#[test]
fn an_event_is_counted_as_its_d() {
    let mut h = Harness::new(config().with_compression(Compression::None));
    h.ready();
    let d = format!(r#"{{"content":"{}"}}"#, "x".repeat(1_000));
    let json = format!(r#"{{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{d}}}"#);
    h.s.handle_message(h.now, json.as_bytes());
    let mut costs = Vec::new();
    while let Some(output) = h.s.poll_output(h.now) {
        if let Output::Event { cost, .. } = output {
            costs.push(cost);
        }
    }
    assert_eq!(costs, [d.len() + EVENT_OVERHEAD]);
}

#[test]
fn the_decoder_gives_back_its_room_once_the_connection_is_quiet_for_a_second() {
    let mut h = Harness::new(config().with_compression(Compression::None));
    h.ready();
    assert_eq!(h.s.inbound.deadline(), None, "only messages read count");
    let json = r#"{"t":"TYPING_START","s":2,"op":0,"d":{}}"#;
    h.s.handle_message(h.now, json.as_bytes());
    let read = h.now;
    assert_eq!(h.s.inbound.deadline(), Some(read + Duration::from_secs(1)));
    assert!(
        h.s.poll_timeout()
            .is_some_and(|t| t <= read + Duration::from_secs(1))
    );
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.s.inbound.deadline(),
        None,
        "released, until the next message"
    );
}

#[test]
fn a_message_the_websocket_refused_as_too_large_starts_a_new_session() {
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_message_too_large(h.now);
    h.drain();
    assert_eq!(
        h.take_actions().first(),
        Some(&Action::Close { code: 4000 })
    );
    assert!(h.s.resume_info().is_none(), "a resume would replay it");
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ShardEvent::Disconnected {
            next: Reconnect::Reidentify,
            ..
        }
    )));
}

#[test]
fn a_connection_lost_while_waiting_to_identify_gives_its_place_up() {
    let mut h = Harness::new(config());
    assert!(h.connect_and_hello());
    h.s.handle_closed(h.now, None);
    h.drain();
    assert_eq!(h.take_actions().first(), Some(&Action::CancelIdentify));
    // A turn that came is no wait to give up.
    let mut h = Harness::new(config());
    h.ready();
    h.s.handle_closed(h.now, None);
    h.drain();
    assert!(!h.take_actions().contains(&Action::CancelIdentify));
}

#[test]
fn an_identify_queue_that_fails_is_asked_again_after_5_s() {
    let mut h = Harness::new(config());
    assert!(h.connect_and_hello());
    h.s.handle_identify_failed(h.now, "redis: connection refused");
    h.drain();
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ShardEvent::IdentifyPaused { reason, retry_in }
            if reason.contains("redis: connection refused") && *retry_in == IDENTIFY_QUEUE_RETRY
    )));
    h.take_actions();
    h.advance(IDENTIFY_QUEUE_RETRY - Duration::from_millis(100));
    assert!(
        !h.take_actions()
            .iter()
            .any(|a| matches!(a, Action::Connect { .. }))
    );
    h.advance(Duration::from_millis(200));
    assert!(
        h.take_actions()
            .iter()
            .any(|a| matches!(a, Action::Connect { .. }))
    );
}

/// On 0234392 the dispatch was dropped after the sequence number had moved past it, so nothing
/// ever brought it back.
#[test]
fn a_typed_dispatch_whose_d_is_not_json_is_replayed_by_a_resume() {
    let mut h = Harness::new(config());
    h.ready();
    h.recv(r#"{"t":"GUILD_CREATE","s":2,"op":0,"d":{"id":,}}"#);
    assert_eq!(h.s.sequence(), Some(1), "its number is taken back");
    assert_eq!(
        h.take_actions().first(),
        Some(&Action::Close { code: 4000 })
    );
    assert_eq!(h.s.resume_info().map(|r| r.sequence), Some(1));
}

/// On 0234392 raw mode parsed every `d` in full (and dropped this one after its sequence
/// number), where typed mode kept the same `d` unparsed.
#[test]
fn raw_and_typed_dispatches_keep_d_by_one_rule() {
    let d = r#"{"id":,}"#;
    for (config, name) in [
        (config().with_raw_dispatches(true), "GUILD_CREATE"),
        (config(), "MESSAGE_CREATE"),
    ] {
        let mut h = Harness::new(config);
        h.ready();
        h.recv(&format!(r#"{{"t":"{name}","s":2,"op":0,"d":{d}}}"#));
        let events = h.take_events();
        let [ShardEvent::Dispatch(dispatch)] = &events[..] else {
            panic!("{name}: {events:?}")
        };
        let DispatchEvent::Other(raw) = &dispatch.event else {
            panic!("typed: {dispatch:?}")
        };
        assert_eq!((raw.data.get(), dispatch.seq), (d, 2), "{name}");
    }
}

#[test]
fn each_timeout_names_its_timer() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.s.last_timeout(),
        Some(Timer::Connect),
        "the first connect"
    );
    assert!(matches!(h.s.next_timer(), Some((Timer::Handshake, _))));
    h.s.handle_connected(h.now);
    h.drain();
    assert!(matches!(h.s.next_timer(), Some((Timer::Hello, _))));
    h.advance(Duration::from_secs(60));
    assert_eq!(
        h.s.last_timeout(),
        Some(Timer::Connect),
        "no HELLO, so a reconnect"
    );
    let mut h = Harness::new(config());
    h.ready();
    // No ACK for a heartbeat, and nothing heard: the heartbeat timer finds a zombie.
    h.advance(Duration::from_secs(90));
    assert!(
        h.take_events()
            .iter()
            .any(|e| matches!(e, ShardEvent::Disconnected { .. }))
    );
    assert!(h.take_actions().contains(&Action::Close { code: 4000 }));
}

/// Before, the driver and the simulator each decided by themselves (from the session's state, or
/// from their own bookkeeping) that an attempt had been given up on; the session says so now.
#[test]
fn an_attempt_whose_handshake_times_out_is_cancelled() {
    let mut h = Harness::new(config());
    assert!(matches!(h.take_actions()[..], [Action::Connect { .. }]));
    h.advance(Duration::from_secs(30));
    let actions = h.take_actions();
    assert_eq!(actions.first(), Some(&Action::CancelConnect), "{actions:?}");
    // One that the driver reports failed itself needs no cancelling.
    let mut h = Harness::new(config());
    h.take_actions();
    h.s.handle_connect_failed(h.now, "refused");
    h.drain();
    assert!(!h.take_actions().contains(&Action::CancelConnect));
}
