//! Every file in `payload-examples/` (copied from the research notes, provenance in its README)
//! reads into its model type, and the commands write back to the same JSON.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use gateway_model::*;
use serde::Deserialize;

fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payload-examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    op: OpCode,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default, borrow)]
    t: Option<&'a str>,
    #[serde(default, borrow)]
    d: Option<sonic_rs::LazyValue<'a>>,
}

fn event(json: &str, wanted: EventTypes) -> Option<GatewayEvent> {
    let env: Envelope<'_> = sonic_rs::from_str(json).unwrap();
    let data = env
        .d
        .as_ref()
        .map(|d| d.as_raw_str())
        .filter(|d| *d != "null");
    let payload = Payload {
        op: env.op,
        seq: env.s,
        event_name: env.t.map(Into::into),
        data,
    };
    GatewayEvent::from_payload(&payload, wanted).unwrap()
}

fn typed(json: &str) -> GatewayEvent {
    event(json, EventTypes::all()).unwrap()
}

fn dispatch(json: &str) -> Dispatch {
    match typed(json) {
        GatewayEvent::Dispatch(d) => d,
        other => panic!("not a dispatch: {other:?}"),
    }
}

/// Reads a command file and writes it back; the JSON must be the same value.
fn command_round_trip(name: &str) -> Command {
    let json = read(name);
    let command = Command::from_json(&json).unwrap();
    let written = json::to_string(&command).unwrap();
    let a: sonic_rs::Value = sonic_rs::from_str(&json).unwrap();
    let b: sonic_rs::Value = sonic_rs::from_str(&written).unwrap();
    assert_eq!(a, b, "{name}");
    assert_eq!(Command::from_json(&written).unwrap(), command);
    command
}

#[test]
fn sent_commands_round_trip() {
    assert_eq!(
        command_round_trip("heartbeat.op1.json"),
        Command::Heartbeat(Heartbeat(Some(251)))
    );
    let Command::Resume(resume) = command_round_trip("resume.op6.json") else {
        panic!()
    };
    assert_eq!(
        (resume.session_id.as_str(), resume.seq),
        ("evenmorerandomstring", 1337)
    );
    let Command::RequestGuildMembers(r) = command_round_trip("request-guild-members.op8.json")
    else {
        panic!()
    };
    assert!(r.is_full_list());
    let Command::UpdatePresence(p) = command_round_trip("update-presence.op3.json") else {
        panic!()
    };
    assert_eq!(p.activities[0].kind, ActivityType::Playing);
    let Command::UpdateVoiceState(v) = command_round_trip("update-voice-state.op4.json") else {
        panic!()
    };
    assert_eq!(v.channel_id, Some(Snowflake::new(127_121_515_262_115_840)));
}

#[test]
fn identify_minimal_round_trips_with_defaults_written() {
    let Command::Identify(identify) =
        Command::from_json(&read("identify.op2.minimal.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(identify.intents.bits(), 513);
    assert_eq!(identify.token.expose_secret(), "my_token");
    let written = json::to_string(&Command::Identify(identify.clone())).unwrap();
    assert!(written.contains(r#""compress":false"#));
    assert!(written.contains(r#""large_threshold":50"#));
    assert_eq!(
        Command::from_json(&written).unwrap(),
        Command::Identify(identify)
    );
}

#[test]
fn identify_full_reads_and_always_writes_compress_false() {
    let Command::Identify(identify) = Command::from_json(&read("identify.op2.full.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(identify.large_threshold.get(), 250);
    assert_eq!(identify.shard, Some(ShardId::ONE));
    let presence = identify.presence.as_ref().unwrap();
    assert_eq!(
        (presence.status, presence.since),
        (Status::Dnd, Some(91_879_201))
    );
    let written = json::to_string(&Command::Identify(identify.clone())).unwrap();
    assert!(written.contains(r#""compress":false"#), "{written}");
    assert_eq!(
        Command::from_json(&written).unwrap(),
        Command::Identify(identify)
    );
}

#[test]
fn received_opcodes() {
    assert_eq!(
        typed(&read("hello.op10.json")),
        GatewayEvent::Hello(Hello {
            heartbeat_interval: 45000
        })
    );
    assert_eq!(
        typed(&read("heartbeat-ack.op11.json")),
        GatewayEvent::HeartbeatAck
    );
    assert_eq!(typed(&read("reconnect.op7.json")), GatewayEvent::Reconnect);
    assert_eq!(
        typed(&read("invalid-session.op9.json")),
        GatewayEvent::InvalidSession { resumable: false }
    );
    // A server's heartbeat request.
    assert_eq!(
        typed(r#"{"op":1,"d":null}"#),
        GatewayEvent::HeartbeatRequest
    );
}

#[test]
fn data_objects() {
    let guild = GuildCreate::from_json(&read("guild-create.d.guild-part.json")).unwrap();
    assert_eq!(guild.id, Snowflake::new(197_038_439_483_310_086));
    let unavailable: UnavailableGuild = json::from_str(&read("unavailable-guild.json")).unwrap();
    assert!(unavailable.unavailable);
    let outage: GuildDelete = json::from_str(&read("unavailable-guild.json")).unwrap();
    assert!(outage.is_outage());
    let removal: GuildDelete = json::from_str(r#"{"id":"1"}"#).unwrap();
    assert!(removal.is_removal());
    let user: User = json::from_str(&read("user.json")).unwrap();
    assert_eq!(user.username, "Nelly");
    let activity: Activity = json::from_str(&read("activity.streaming.json")).unwrap();
    assert_eq!(activity.kind, ActivityType::Streaming);
    assert_eq!(
        activity.url.as_deref(),
        Some("https://www.twitch.tv/discord")
    );
    let bot: GatewayBot = json::from_str(&read("get-gateway-bot.response.json")).unwrap();
    assert_eq!(bot.session_start_limit.max_concurrency, 1);
    let message = RawJson::from_string(read("message-create.d.json")).unwrap();
    assert!(message.get().contains("content"));
}

#[test]
fn id_serialization_quirk_not_found_as_integer() {
    let d = dispatch(&read("guild-members-chunk.id-serialization.json"));
    let DispatchEvent::GuildMembersChunk(chunk) = d.event else {
        panic!()
    };
    assert_eq!(chunk.not_found, vec![Snowflake::new(123_123)]);
    assert_eq!((chunk.chunk_index, chunk.chunk_count), (0, 1));
}

#[test]
fn composed_dispatches() {
    let ready = dispatch(&read("composed/ready.dispatch.json"));
    assert_eq!(ready.seq, 1);
    let DispatchEvent::Ready(ready) = ready.event else {
        panic!()
    };
    assert_eq!(ready.session_id, "session_id_i_stored");
    assert!(ready.guilds.iter().all(|g| g.unavailable));
    assert_eq!(ready.application.flags, 40960);
    assert_eq!(ready.shard, Some(ShardId::ONE));

    let DispatchEvent::GuildCreate(guild) =
        dispatch(&read("composed/guild-create.dispatch.json")).event
    else {
        panic!()
    };
    assert_eq!(
        (guild.member_count, guild.large, guild.unavailable),
        (Some(1), Some(false), false)
    );
    #[derive(Deserialize)]
    struct Channels {
        channels: Vec<sonic_rs::Value>,
    }
    assert!(
        guild
            .raw
            .deserialize::<Channels>()
            .unwrap()
            .channels
            .is_empty()
    );

    let DispatchEvent::GuildMembersChunk(chunk) =
        dispatch(&read("composed/guild-members-chunk.dispatch.json")).event
    else {
        panic!()
    };
    assert_eq!(chunk.nonce.as_deref(), Some("chunk-req-0001"));
    assert_eq!(
        chunk
            .members
            .deserialize::<Vec<sonic_rs::Value>>()
            .unwrap()
            .len(),
        1
    );

    let DispatchEvent::RateLimited(limited) =
        dispatch(&read("composed/rate-limited.dispatch.json")).event
    else {
        panic!()
    };
    assert_eq!(limited.retry_after, 29.5);
    assert_eq!(
        limited.meta,
        RateLimitedMeta::RequestGuildMembers {
            guild_id: Snowflake::new(197_038_439_483_310_086),
            nonce: Some("chunk-req-0002".into())
        }
    );

    for name in ["message-create", "presence-update"] {
        let d = dispatch(&read(&format!("composed/{name}.dispatch.json")));
        let DispatchEvent::Other(raw) = d.event else {
            panic!()
        };
        assert_eq!(&*raw.name, name.to_uppercase().replace('-', "_"));
        raw.deserialize::<sonic_rs::Value>().unwrap();
    }
}

#[test]
fn typed_events_write_back_what_they_read() {
    for name in [
        "composed/ready.dispatch.json",
        "composed/guild-create.dispatch.json",
        "composed/guild-members-chunk.dispatch.json",
        "composed/rate-limited.dispatch.json",
    ] {
        let json = read(name);
        let env: Envelope<'_> = sonic_rs::from_str(&json).unwrap();
        let d = env.d.unwrap();
        let written = match dispatch(&json).event {
            DispatchEvent::Ready(r) => json::to_string(&r).unwrap(),
            DispatchEvent::GuildCreate(g) => json::to_string(&g).unwrap(),
            DispatchEvent::GuildMembersChunk(c) => json::to_string(&c).unwrap(),
            DispatchEvent::RateLimited(r) => json::to_string(&r).unwrap(),
            other => panic!("{other:?}"),
        };
        // Written back, then read again: the same typed value (READY's `raw` is the text each
        // was read from, so it is left out of the comparison).
        let again = format!(r#"{{"op":0,"s":1,"t":"{}","d":{written}}}"#, env.t.unwrap());
        let typed = |json: &str| match dispatch(json).event {
            DispatchEvent::Ready(mut r) => {
                assert_eq!(
                    r.raw.as_ref().map(|r| r.get().len()),
                    Some(sonic_rs::get(json, &["d"]).unwrap().as_raw_str().len())
                );
                r.raw = None;
                DispatchEvent::Ready(r)
            }
            other => other,
        };
        assert_eq!(typed(&again), typed(&json), "{name}");
        let _ = d;
    }
}

#[test]
fn filter_skips_unwanted_dispatches_and_keeps_others() {
    let json = read("composed/message-create.dispatch.json");
    assert!(event(&json, EventTypes::STACK).is_none());
    assert!(event(&json, EventTypes::MESSAGE_CREATE).is_some());
    let unknown = r#"{"op":0,"s":9,"t":"BRAND_NEW_EVENT","d":{"x":1}}"#;
    assert!(event(unknown, EventTypes::all().difference(EventTypes::UNKNOWN)).is_none());
    assert!(event(unknown, EventTypes::UNKNOWN).is_some());
    // Non-dispatch opcodes are never filtered.
    assert!(event(&read("hello.op10.json"), EventTypes::empty()).is_some());
}

#[test]
fn bad_payloads_are_typed_errors() {
    let payload = |op, seq, name: Option<&'static str>, data| Payload {
        op,
        seq,
        event_name: name.map(Into::into),
        data,
    };
    let all = EventTypes::all();
    assert!(matches!(
        GatewayEvent::from_payload(&payload(OpCode::Dispatch, None, Some("READY"), None), all),
        Err(EventError::MissingSequence)
    ));
    assert!(matches!(
        GatewayEvent::from_payload(&payload(OpCode::Dispatch, Some(1), None, None), all),
        Err(EventError::MissingEventName)
    ));
    assert!(matches!(
        GatewayEvent::from_payload(
            &payload(OpCode::Dispatch, Some(1), Some("READY"), Some("{}")),
            all
        ),
        Err(EventError::InvalidData { .. })
    ));
    assert!(matches!(
        GatewayEvent::from_payload(&payload(OpCode::Other(99), None, None, None), all),
        Err(EventError::UnexpectedOpcode(OpCode::Other(99)))
    ));
    assert!(matches!(
        GatewayEvent::from_payload(&payload(OpCode::Identify, None, None, None), all),
        Err(EventError::UnexpectedOpcode(OpCode::Identify))
    ));
    assert!(matches!(
        Command::from_json(r#"{"op":10,"d":{}}"#),
        Err(CommandError::NotACommand(_))
    ));
    assert!(matches!(
        Command::from_json(r#"{"op":2,"d":{}}"#),
        Err(CommandError::Json(_))
    ));
}
