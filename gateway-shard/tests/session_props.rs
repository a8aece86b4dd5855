//! Properties of the sans-IO session under arbitrary sequences of inputs (payloads, garbage,
//! closes, connect failures, timeouts, commands), on made-up time: it never panics, never sends
//! more than the rate limit allows in any window of a connection, never sends two IDENTIFYs on one
//! connection, and never asks to be woken in the past twice in a row (no silent spin).

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gateway_codec::{Compression, scan_envelope};
use gateway_model::{Command, Intents, RequestGuildMembers, Snowflake, Token};
use gateway_shard::{Action, COMMANDS_PER_WINDOW, Output, Session, ShardConfig, WINDOW};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Input {
    Payload(&'static str),
    Dispatch(u64),
    Close(Option<u16>),
    ConnectFailed,
    Advance(u64),
    Permit,
    Request(u8),
}

const PAYLOADS: &[&str] = &[
    r#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}"#,
    r#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":1}}"#,
    r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"user":{"id":"42","username":"bot","discriminator":"0","avatar":null},"guilds":[],"session_id":"abc","resume_gateway_url":"wss://resume.example","application":{"id":"1","flags":0}}}"#,
    r#"{"t":"RESUMED","s":2,"op":0,"d":{}}"#,
    r#"{"op":11}"#,
    r#"{"op":1,"d":null}"#,
    r#"{"op":7,"d":null}"#,
    r#"{"op":9,"d":true}"#,
    r#"{"op":9,"d":false}"#,
    r#"{"t":"GUILD_CREATE","s":3,"op":0,"d":{"id":{"x":1}}}"#,
    r#"{"t":"READY","s":1,"op":0,"d":{"v":"ten"}}"#,
    r#"{"op":10,"d":{"heartbeat_interval":18446744073709551615}}"#,
    r#"{"op":99,"d":null}"#,
    r#"{"op":0,"d":{}}"#,
    "{not json",
];

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (0..PAYLOADS.len()).prop_map(|i| Input::Payload(PAYLOADS[i])),
        (1u64..1_000_000).prop_map(Input::Dispatch),
        prop::option::of(prop_oneof![
            Just(1000u16),
            Just(1001),
            4000u16..4015,
            Just(1006)
        ])
        .prop_map(Input::Close),
        Just(Input::ConnectFailed),
        (0u64..120_000).prop_map(Input::Advance),
        Just(Input::Permit),
        any::<u8>().prop_map(Input::Request),
    ]
}

fn op(frame: &str) -> u64 {
    scan_envelope(frame.as_bytes()).map_or(99, |p| p.op.value())
}

struct Run {
    s: Session,
    now: Instant,
    /// Sends of the current connection, for the rate limit.
    sent: VecDeque<Instant>,
    identifies: usize,
    open: bool,
}

impl Run {
    fn drain(&mut self) {
        while let Some(output) = self.s.poll_output(self.now) {
            match output {
                Output::Action(action) => match action {
                    Action::Connect { .. } => {
                        // Connect at once; the property inputs close or fail it later.
                        self.s.handle_connected(self.now);
                        self.open = true;
                        self.sent.clear();
                        self.identifies = 0;
                    }
                    Action::Close { .. } => self.open = false,
                    Action::AwaitIdentify | Action::CancelIdentify | Action::CancelConnect => {}
                },
                Output::Transmit(frame) => {
                    assert!(self.open, "sent on a closed connection");
                    if op(&frame) == 2 {
                        self.identifies += 1;
                        assert!(self.identifies <= 1, "two IDENTIFYs on one connection");
                    }
                    self.sent.push_back(self.now);
                    while self
                        .sent
                        .front()
                        .is_some_and(|t| self.now.duration_since(*t) >= Duration::from_secs(60))
                    {
                        self.sent.pop_front();
                    }
                    assert!(
                        self.sent.len() <= 120,
                        "{} sends in 60 s on one connection",
                        self.sent.len()
                    );
                }
                Output::Event { .. } => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_keeps_the_protocol(inputs in prop::collection::vec(input(), 1..200)) {
        let config = ShardConfig::new(Token::new("t0ken"), Intents::GUILDS | Intents::GUILD_MEMBERS)
            .with_gateway_url("wss://gateway.example")
            .with_compression(Compression::None)
            .with_seed(1);
        let start = Instant::now();
        let mut run = Run { s: Session::new(&config, start), now: start, sent: VecDeque::new(), identifies: 0, open: false };
        run.s.handle_timeout(run.now);
        run.drain();
        let mut woken_in_the_past = 0;
        for input in inputs {
            match input {
                // Every message as it came, unreadable ones included.
                Input::Payload(json) => run.s.handle_message(run.now, json.as_bytes()),
                Input::Dispatch(seq) => {
                    let json = format!(r#"{{"t":"TYPING_START","s":{seq},"op":0,"d":{{}}}}"#);
                    run.s.handle_message(run.now, json.as_bytes());
                }
                Input::Close(code) => {
                    run.s.handle_closed(run.now, code);
                    run.open = false;
                }
                Input::ConnectFailed => run.s.handle_connect_failed(run.now, "refused"),
                Input::Advance(ms) => {
                    let end = run.now + Duration::from_millis(ms);
                    // Fire every timeout on the way, as a driver does.
                    for _ in 0..10_000 {
                        match run.s.poll_timeout() {
                            Some(at) if at <= end => {
                                if at <= run.now {
                                    woken_in_the_past += 1;
                                } else {
                                    woken_in_the_past = 0;
                                }
                                prop_assert!(woken_in_the_past < 1000, "a timeout that never clears");
                                run.now = run.now.max(at);
                                run.s.handle_timeout(run.now);
                                run.drain();
                            }
                            _ => break,
                        }
                    }
                    run.now = end;
                }
                Input::Permit => run.s.handle_identify_permitted(run.now),
                Input::Request(n) => {
                    let r = RequestGuildMembers::builder(Snowflake::new(u64::from(n) << 22))
                        .query("", 0)
                        .build()
                        .unwrap();
                    // Refusals (queue full, stopped) are typed; either way nothing panics.
                    let _refused = run.s.handle_command(run.now, Command::RequestGuildMembers(r));
                }
            }
            run.drain();
        }
        prop_assert!(COMMANDS_PER_WINDOW <= 120 && WINDOW >= Duration::from_secs(60));
    }
}
