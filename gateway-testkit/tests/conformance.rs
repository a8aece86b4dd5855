//! Every kind of payload the fake gateway sends, as a client receives it over loopback, read by
//! twilight-model 0.18 (the ecosystem's strictest Rust model, the way twilight-gateway reads it)
//! and compared with the documented examples in `gateway-model/tests/payload-examples/`.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{Client, Got};
use gateway_codec::Compression;
use gateway_model::{Intents, RequestGuildMembers, ShardId, Snowflake};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, WorldConfig};
use serde::de::DeserializeSeed;
use serde_json::Value;
use twilight_model::gateway::event::{DispatchEvent, GatewayEvent, GatewayEventDeserializer};
use twilight_model::gateway::payload::incoming::GuildCreate;

/// The whole payload as it came (`{"op", "s", "t", "d"}`).
fn envelope(got: &Got) -> String {
    let d = got.d.as_deref().unwrap_or("null");
    let t = got
        .t
        .as_deref()
        .map_or("null".to_owned(), |t| format!("\"{t}\""));
    let s = got.s.map_or("null".to_owned(), |s| s.to_string());
    format!(r#"{{"op":{},"s":{s},"t":{t},"d":{d}}}"#, got.op)
}

/// Reads a payload as twilight-gateway does; panics with twilight's error.
fn twilight(got: &Got) -> GatewayEvent {
    let json = envelope(got);
    let deserializer = GatewayEventDeserializer::from_json(&json)
        .unwrap_or_else(|| panic!("twilight cannot read the envelope of {json:.200}"));
    let mut json_de = serde_json::Deserializer::from_str(&json);
    deserializer.deserialize(&mut json_de).unwrap_or_else(|e| {
        panic!(
            "twilight-model rejects {} (op {}): {e}\n{json:.600}",
            got.t.as_deref().unwrap_or("-"),
            got.op
        )
    })
}

fn dispatch(got: &Got) -> DispatchEvent {
    match twilight(got) {
        GatewayEvent::Dispatch(_, event) => event,
        other => panic!("not a dispatch: {other:?}"),
    }
}

/// twilight-model 0.18 declares RATE_LIMITED's `meta` as an externally tagged enum, so it wants
/// `"meta": {"RequestGuildMembers": {"guild_id": …}}` where Discord documents (and the testkit
/// sends) `"meta": {"guild_id": …}`: no client of twilight 0.18 can read Discord's RATE_LIMITED.
/// The testkit stays with Discord's shape; this checks that this tagging is the only difference.
fn rate_limited_reads_with_twilight(got: &Got) {
    let json = envelope(got);
    let deserializer = GatewayEventDeserializer::from_json(&json).unwrap();
    let error = deserializer
        .deserialize(&mut serde_json::Deserializer::from_str(&json))
        .expect_err("twilight-model 0.18 now reads Discord's RATE_LIMITED: drop this workaround");
    assert!(
        error.to_string().contains("unknown variant `guild_id`"),
        "{error}"
    );
    let mut value: Value = serde_json::from_str(&json).unwrap();
    let meta = value["d"]["meta"].take();
    value["d"]["meta"] = serde_json::json!({ "RequestGuildMembers": meta });
    let tagged = Got {
        d: Some(value["d"].to_string()),
        ..got.clone()
    };
    let DispatchEvent::RateLimited(r) = dispatch(&tagged) else {
        panic!("RATE_LIMITED")
    };
    assert!(r.retry_after > 0.0);
}

fn example(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway-model/tests/payload-examples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Keys the documented examples carry that Discord leaves out of what a bot receives, each with
/// why. Everything else in an example must be in the testkit's payload, with a compatible type.
const NOT_SENT_TO_BOTS: &[(&str, &str)] = &[
    (
        ".d.region",
        "deprecated; Discord omits it from new payloads",
    ),
    (
        ".d.widget_enabled",
        "only with the MANAGE_GUILD permission's fields",
    ),
    (".d.user.email", "OAuth2 `email` scope only; null for bots"),
    (
        ".d.user.premium_type",
        "Nitro subscription type: users only, bots have none",
    ),
    (".d.reactions", "only on messages that have reactions"),
    (
        ".d.activities[].details",
        "only when the activity has details",
    ),
    (".d.activities[].url", "streaming activities only"),
    (".d.meta.nonce", "only when the request had a nonce"),
    (
        ".d.nonce",
        "GUILD_MEMBERS_CHUNK: only when the request had a nonce",
    ),
];

/// Checks that every key of `example` is in `ours` with the same JSON type (null matches
/// anything: the documented field is nullable). Arrays compare their first elements.
fn same_shape(path: &str, example: &Value, ours: &Value, missing: &mut Vec<String>) {
    match (example, ours) {
        (Value::Object(e), Value::Object(o)) => {
            for (key, ev) in e {
                let p = format!("{path}.{key}");
                match o.get(key) {
                    Some(ov) => same_shape(&p, ev, ov, missing),
                    None if NOT_SENT_TO_BOTS.iter().any(|(k, _)| *k == p) => {}
                    None => missing.push(format!("{p} missing")),
                }
            }
        }
        (Value::Array(e), Value::Array(o)) => {
            if let (Some(e), Some(o)) = (e.first(), o.first()) {
                same_shape(&format!("{path}[]"), e, o, missing);
            }
        }
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => {}
        (e, o) => missing.push(format!("{path}: documented {e}, sent {o}")),
    }
}

fn check_against_example(name: &str, got: &Got) {
    let ours: Value = serde_json::from_str(&envelope(got)).unwrap();
    // Examples of a `d` alone (no `op`) are compared with the payload's `d`.
    let example_value = example(name);
    let ours = if example_value.get("op").is_none() {
        ours["d"].clone()
    } else {
        ours
    };
    let mut problems = Vec::new();
    same_shape("", &example_value, &ours, &mut problems);
    assert!(
        problems.is_empty(),
        "{} against {name}:\n{}",
        got.t.as_deref().unwrap_or("-"),
        problems.join("\n")
    );
}

/// One session that makes the fake gateway send each kind of payload at least once.
#[tokio::test]
async fn every_payload_kind_reads_with_twilight_model_and_matches_the_docs() {
    let config = GatewayConfig {
        identify_window: Duration::ZERO,
        world: WorldConfig {
            unavailable: 1,
            ..WorldConfig::uniform(11, 4, 1500)
        },
        ..GatewayConfig::default()
    };
    let gw = FakeGateway::start_with(config, 0).await.unwrap();
    let world = gw.world().clone();
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut seen = |kind: &'static str| *kinds.entry(kind).or_default() += 1;

    let mut c = Client::connect(gw.url(), Compression::ZlibStream).await;
    let hello = c.expect().await;
    assert!(matches!(twilight(&hello), GatewayEvent::Hello(_)));
    check_against_example("hello.op10.json", &hello);
    seen("HELLO");

    c.identify(Intents::all(), ShardId::ONE).await;
    let ready = c.expect_op(0, Some("READY")).await;
    let DispatchEvent::Ready(r) = dispatch(&ready) else {
        panic!("READY")
    };
    assert_eq!(r.guilds.len(), 4);
    check_against_example("composed/ready.dispatch.json", &ready);
    seen("READY");

    for _ in 0..3 {
        let got = c.expect_op(0, Some("GUILD_CREATE")).await;
        let DispatchEvent::GuildCreate(g) = dispatch(&got) else {
            panic!("GUILD_CREATE")
        };
        let GuildCreate::Available(guild) = *g else {
            panic!("available guild read as unavailable")
        };
        assert!(!guild.roles.is_empty() && !guild.members.is_empty());
        check_against_example("composed/guild-create.dispatch.json", &got);
        seen("GUILD_CREATE (available)");
    }
    let session_id = r.session_id.clone();
    let big = world.guilds()[0].clone();
    let last = world.guilds()[3].clone();
    let connection = gw.shard_connection(0).unwrap();

    // GUILD_CREATE unavailable, GUILD_DELETE (outage and removal).
    connection.dispatch("GUILD_CREATE", world.unavailable_guild_json(&last));
    let got = c.expect_op(0, Some("GUILD_CREATE")).await;
    let DispatchEvent::GuildCreate(g) = dispatch(&got) else {
        panic!()
    };
    assert!(matches!(*g, GuildCreate::Unavailable(_)));
    check_against_example("unavailable-guild.json", &got);
    seen("GUILD_CREATE (unavailable)");
    gw.make_unavailable(big.id);
    let got = c.expect_op(0, Some("GUILD_DELETE")).await;
    let DispatchEvent::GuildDelete(d) = dispatch(&got) else {
        panic!()
    };
    assert_eq!(d.unavailable, Some(true));
    check_against_example("unavailable-guild.json", &got);
    connection.dispatch("GUILD_DELETE", world.guild_removed_json(&last));
    let got = c.expect_op(0, Some("GUILD_DELETE")).await;
    assert!(matches!(dispatch(&got), DispatchEvent::GuildDelete(_)));
    seen("GUILD_DELETE");
    gw.make_available(big.id);
    c.expect_op(0, Some("GUILD_CREATE")).await;

    // GUILD_MEMBERS_CHUNK: all members with presences, by ids with not_found, and a query.
    let all = RequestGuildMembers::builder(big.id)
        .query("", 0)
        .presences(true)
        .nonce("conformance")
        .build()
        .unwrap();
    c.send(all).await;
    for i in 0..2 {
        let got = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await;
        let DispatchEvent::MemberChunk(chunk) = dispatch(&got) else {
            panic!()
        };
        assert_eq!((chunk.chunk_index, chunk.chunk_count), (i, 2));
        assert_eq!(chunk.nonce.as_deref(), Some("conformance"));
        assert!(!chunk.presences.is_empty());
        check_against_example("composed/guild-members-chunk.dispatch.json", &got);
        seen("GUILD_MEMBERS_CHUNK (presences)");
    }
    let by_ids = RequestGuildMembers::builder(big.id)
        .user_ids([world.member(&big, 3).id, Snowflake::new(4242)])
        .build()
        .unwrap();
    c.send(by_ids).await;
    let got = c.expect_op(0, Some("GUILD_MEMBERS_CHUNK")).await;
    let DispatchEvent::MemberChunk(chunk) = dispatch(&got) else {
        panic!()
    };
    assert_eq!(chunk.not_found.len(), 1);
    check_against_example("composed/guild-members-chunk.dispatch.json", &got);
    assert!(chunk.presences.is_empty());
    seen("GUILD_MEMBERS_CHUNK (not_found, no presences)");

    // RATE_LIMITED: a second full request inside 30 s.
    let again = RequestGuildMembers::builder(big.id)
        .query("", 0)
        .nonce("again")
        .build()
        .unwrap();
    c.send(again).await;
    let got = c.expect_op(0, Some("RATE_LIMITED")).await;
    rate_limited_reads_with_twilight(&got);
    check_against_example("composed/rate-limited.dispatch.json", &got);
    seen("RATE_LIMITED");

    // MESSAGE_CREATE, PRESENCE_UPDATE, TYPING_START, as the world writes them.
    connection.dispatch("MESSAGE_CREATE", world.message_create_json(&big, 1, 300));
    let got = c.expect_op(0, Some("MESSAGE_CREATE")).await;
    assert!(matches!(dispatch(&got), DispatchEvent::MessageCreate(_)));
    check_against_example("composed/message-create.dispatch.json", &got);
    seen("MESSAGE_CREATE");
    for index in 1..40 {
        connection.dispatch("PRESENCE_UPDATE", world.presence_update_json(&big, index));
        let got = c.expect_op(0, Some("PRESENCE_UPDATE")).await;
        assert!(matches!(dispatch(&got), DispatchEvent::PresenceUpdate(_)));
        if serde_json::from_str::<Value>(got.d.as_deref().unwrap()).unwrap()["activities"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            check_against_example("composed/presence-update.dispatch.json", &got);
        }
    }
    seen("PRESENCE_UPDATE");
    connection.dispatch("TYPING_START", world.typing_start_json(&big, 5));
    let got = c.expect_op(0, Some("TYPING_START")).await;
    assert!(matches!(dispatch(&got), DispatchEvent::TypingStart(_)));
    seen("TYPING_START");

    // Heartbeat ACK, a heartbeat request, RECONNECT, RESUMED, INVALID_SESSION.
    c.heartbeat(Some(1)).await;
    let ack = c.expect_op(11, None).await;
    assert!(matches!(twilight(&ack), GatewayEvent::HeartbeatAck));
    check_against_example("heartbeat-ack.op11.json", &ack);
    seen("HEARTBEAT_ACK");
    connection.inject(Fault::RequestHeartbeat);
    let got = c.expect_op(1, None).await;
    assert!(matches!(twilight(&got), GatewayEvent::Heartbeat));
    seen("HEARTBEAT (request)");
    connection.inject(Fault::Reconnect);
    let got = c.expect_op(7, None).await;
    assert!(matches!(twilight(&got), GatewayEvent::Reconnect));
    check_against_example("reconnect.op7.json", &got);
    seen("RECONNECT");
    let seq = got.s.unwrap_or(0).max(1);
    drop(c);
    let mut c = Client::connect(gw.url(), Compression::ZstdStream).await;
    c.expect_op(10, None).await;
    c.resume(&session_id, seq).await;
    let got = c.expect_op(0, Some("RESUMED")).await;
    assert!(matches!(dispatch(&got), DispatchEvent::Resumed));
    seen("RESUMED");
    gw.shard_connection(0)
        .unwrap()
        .inject(Fault::InvalidSession { resumable: false });
    let got = c.expect_op(9, None).await;
    assert!(matches!(
        twilight(&got),
        GatewayEvent::InvalidateSession(false)
    ));
    check_against_example("invalid-session.op9.json", &got);
    seen("INVALID_SESSION");

    let expected = [
        "GUILD_CREATE (available)",
        "GUILD_CREATE (unavailable)",
        "GUILD_DELETE",
        "GUILD_MEMBERS_CHUNK (not_found, no presences)",
        "GUILD_MEMBERS_CHUNK (presences)",
        "HEARTBEAT (request)",
        "HEARTBEAT_ACK",
        "HELLO",
        "INVALID_SESSION",
        "MESSAGE_CREATE",
        "PRESENCE_UPDATE",
        "RATE_LIMITED",
        "READY",
        "RECONNECT",
        "RESUMED",
        "TYPING_START",
    ];
    assert_eq!(kinds.keys().copied().collect::<Vec<_>>(), expected);
}
