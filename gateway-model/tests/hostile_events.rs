//! Reading what the gateway sends never panics: `GatewayEvent::from_payload` on arbitrary bytes
//! as `d`, and on JSON in each typed event's shape with values of any kind and size, gives an
//! event or a typed error.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_model::{EventTypes, GatewayEvent, OpCode, Payload};
use proptest::prelude::*;
use serde_json::{Map, Value};

const NAMES: &[&str] = &[
    "READY",
    "RESUMED",
    "GUILD_CREATE",
    "GUILD_DELETE",
    "GUILD_MEMBERS_CHUNK",
    "RATE_LIMITED",
    "MESSAGE_CREATE",
    "SOMETHING_NEW",
];

/// The keys each typed event reads.
const SHAPES: &[(&str, &[&str])] = &[
    (
        "READY",
        &[
            "v",
            "user",
            "guilds",
            "session_id",
            "resume_gateway_url",
            "shard",
            "application",
        ],
    ),
    (
        "GUILD_CREATE",
        &[
            "id",
            "unavailable",
            "large",
            "member_count",
            "members",
            "presences",
            "name",
        ],
    ),
    ("GUILD_DELETE", &["id", "unavailable"]),
    (
        "GUILD_MEMBERS_CHUNK",
        &[
            "guild_id",
            "members",
            "chunk_index",
            "chunk_count",
            "not_found",
            "presences",
            "nonce",
        ],
    ),
    ("RATE_LIMITED", &["opcode", "retry_after", "meta"]),
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(1e300), Just(-1e300), Just(0.5), Just(-0.0)].prop_map(Value::from),
        "[0-9]{1,25}".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,12}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn read(op: u8, name: Option<&str>, data: &str) {
    let Ok(op) = serde_json::from_value::<OpCode>(Value::from(op)) else {
        return;
    };
    let payload = Payload {
        op,
        seq: Some(1),
        event_name: name.map(Into::into),
        data: Some(data),
    };
    // An event or a typed error; never a panic.
    drop(GatewayEvent::from_payload(&payload, EventTypes::all()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_d(op in prop::sample::select(vec![0u8, 1, 7, 9, 10, 11]), name in prop::sample::select(NAMES), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let data = String::from_utf8_lossy(&bytes);
        read(op, Some(name), &data);
    }

    #[test]
    fn json_in_each_events_shape(shape in prop::sample::select(SHAPES), values in prop::collection::vec(value(), 7)) {
        let (name, keys) = shape;
        let object: Map<String, Value> = keys.iter().map(|k| (*k).to_owned()).zip(values).collect();
        let data = Value::Object(object).to_string();
        read(0, Some(name), &data);
    }

    #[test]
    fn any_json_as_hello_and_invalid_session(v in value()) {
        let data = v.to_string();
        read(10, None, &data);
        read(9, None, &data);
    }
}
