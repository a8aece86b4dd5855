//! What clients send, read as Discord reads it: liberal in shape, strict only where Discord is.
//!
//! Real clients send more than the documented minimum: `Bot `-prefixed tokens (twilight), legacy
//! presences with `game` and no `activities` (hikari), `$os`-style property keys (older libraries),
//! `capabilities` and `client_state` (official clients), `compress`, heartbeats with `d` null or a
//! number, and unknown fields anywhere. Discord accepts all of them, so this module first rewrites a
//! client's payload into the documented shape ([`normalize`]) and then reads it with the model's
//! strict types. Only what Discord rejects is rejected, with Discord's close code and its words as
//! the close reason, and a [`Rejection`] that names the field and the rule.

use gateway_model::{CloseCode, Command};
use serde_json::{Map, Value};

/// Why a client's payload closes its connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule} (close {code})", code = code.as_u16())]
#[non_exhaustive]
pub struct Rejection {
    /// The close code Discord answers with.
    pub code: CloseCode,
    /// The field at fault, as a JSON path (`d.token`, `d.presence.status`).
    pub field: &'static str,
    /// The rule it broke, for the log and the recording (never the token).
    pub rule: String,
}

impl Rejection {
    /// A rejection with `code`, naming the field and the rule.
    pub fn new(code: CloseCode, field: &'static str, rule: impl Into<String>) -> Self {
        Self {
            code,
            field,
            rule: rule.into(),
        }
    }

    /// A rejection with 4002 (`DecodeError`), Discord's code for a payload it cannot read.
    pub fn decode(field: &'static str, rule: impl Into<String>) -> Self {
        Self::new(CloseCode::DecodeError, field, rule)
    }
}

/// The close frame's reason for `code`, in Discord's words.
pub fn close_reason(code: u16) -> &'static str {
    match code {
        4000 => "Unknown error.",
        4001 => "Unknown opcode.",
        4002 => "Error while decoding payload.",
        4003 => "Not authenticated.",
        4004 => "Authentication failed.",
        4005 => "Already authenticated.",
        4007 => "Invalid seq.",
        4008 => "Rate limited.",
        4009 => "Session timed out.",
        4010 => "Invalid shard.",
        4011 => "Sharding required.",
        4012 => "Invalid API version.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        _ => "",
    }
}

/// Reads one client payload of at most `max_payload` bytes (Discord's is 4096): the command it
/// is, or why Discord would close the connection. Who may identify, with which shard and
/// intents, is the server's to judge after this (see [`Rejection::new`]).
pub fn read_command(text: &str, max_payload: usize) -> Result<Command, Rejection> {
    if text.len() > max_payload {
        return Err(Rejection::decode(
            "payload",
            format!(
                "{} bytes, over the {} a client may send",
                text.len(),
                max_payload
            ),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Rejection::decode("payload", format!("not JSON: {e}")))?;
    let normalized = normalize(value)?;
    let json = serde_json::to_string(&normalized)
        .map_err(|e| Rejection::decode("payload", e.to_string()))?;
    // Only the first line of the parser's message: the lines after it quote the input around the
    // error, which can be the token.
    let command = Command::from_json(&json).map_err(|e| {
        let message = e.to_string();
        Rejection::decode("d", message.lines().next().unwrap_or_default())
    })?;
    if let Command::Identify(identify) = &command
        && identify.intents.unknown_bits() != 0
    {
        return Err(Rejection::new(
            CloseCode::InvalidIntents,
            "d.intents",
            format!("unknown intent bits {:#x}", identify.intents.unknown_bits()),
        ));
    }
    Ok(command)
}

/// A payload with a secret blanked, for recordings of payloads that were rejected: the token of
/// an IDENTIFY or RESUME is replaced by `<redacted>`, and text that is not JSON is not kept.
pub fn redacted(text: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return format!("<{} bytes that are not JSON>", text.len());
    };
    if let Some(token) = value
        .get_mut("d")
        .and_then(Value::as_object_mut)
        .and_then(|d| d.get_mut("token"))
    {
        *token = Value::String("<redacted>".to_owned());
    }
    serde_json::to_string(&value).unwrap_or_default()
}

/// Rewrites a payload into the documented shape the model reads, or rejects it as Discord would.
fn normalize(value: Value) -> Result<Value, Rejection> {
    let Value::Object(mut payload) = value else {
        return Err(Rejection::decode("payload", "not a JSON object"));
    };
    let op = match payload.get("op") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| Rejection::decode("op", format!("{n} is not an opcode")))?,
        Some(other) => {
            return Err(Rejection::decode(
                "op",
                format!("{other} is not an integer"),
            ));
        }
        None => return Err(Rejection::decode("op", "missing")),
    };
    let d = payload.remove("d").unwrap_or(Value::Null);
    let d = match op {
        1 => heartbeat(d)?,
        2 => identify(d)?,
        3 => presence(d, "d")?,
        4 => object(d, "d")?,
        6 => resume(d)?,
        8 => request_members(d)?,
        31 | 43 => object(d, "d")?,
        _ => {
            return Err(Rejection::new(
                CloseCode::UnknownOpcode,
                "op",
                format!("{op} is not a command a client sends"),
            ));
        }
    };
    Ok(serde_json::json!({ "op": op, "d": d }))
}

fn object(d: Value, field: &'static str) -> Result<Value, Rejection> {
    match d {
        Value::Object(_) => Ok(d),
        other => Err(Rejection::decode(
            field,
            format!("expected an object, got {}", kind(&other)),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// HEARTBEAT: `d` is the last sequence number, or null; a missing `d` is null.
fn heartbeat(d: Value) -> Result<Value, Rejection> {
    match d {
        Value::Null => Ok(Value::Null),
        Value::Number(ref n) if n.as_u64().is_some() => Ok(d),
        other => Err(Rejection::decode(
            "d",
            format!(
                "a heartbeat's d is a sequence number or null, got {}",
                kind(&other)
            ),
        )),
    }
}

/// IDENTIFY: the token with or without `Bot `, any property keys, optional threshold and presence,
/// extra fields ignored.
fn identify(d: Value) -> Result<Value, Rejection> {
    let Value::Object(mut d) = object(d, "d")? else {
        return Err(Rejection::decode("d", "expected an object"));
    };
    match d.get("token") {
        Some(Value::String(_)) => {}
        _ => {
            return Err(Rejection::new(
                CloseCode::AuthenticationFailed,
                "d.token",
                "missing or not a string",
            ));
        }
    }
    let properties = match d.remove("properties") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            return Err(Rejection::decode(
                "d.properties",
                format!("expected an object, got {}", kind(&other)),
            ));
        }
    };
    d.insert("properties".into(), connection_properties(&properties));
    match d.get("large_threshold") {
        None | Some(Value::Null) => {
            d.remove("large_threshold");
        }
        Some(Value::Number(n)) if n.as_u64().is_some_and(|t| (50..=250).contains(&t)) => {}
        Some(other) => {
            return Err(Rejection::decode(
                "d.large_threshold",
                format!("{other} is outside 50..=250"),
            ));
        }
    }
    match d.get("shard") {
        None | Some(Value::Null) => {
            d.remove("shard");
        }
        Some(shard) => {
            let pair = shard
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)));
            if !pair.is_some_and(|(n, t)| n < t && t <= u64::from(u32::MAX)) {
                return Err(Rejection::new(
                    CloseCode::InvalidShard,
                    "d.shard",
                    format!("{shard} is not [id, count] with id < count"),
                ));
            }
        }
    }
    match d.remove("presence") {
        None | Some(Value::Null) => {}
        Some(p) => {
            d.insert("presence".into(), presence(p, "d.presence")?);
        }
    }
    match d.get("intents") {
        Some(Value::Number(n)) if n.as_u64().is_some() => {}
        Some(other) => {
            return Err(Rejection::new(
                CloseCode::InvalidIntents,
                "d.intents",
                format!("{other} is not an integer"),
            ));
        }
        None => {
            return Err(Rejection::new(
                CloseCode::InvalidIntents,
                "d.intents",
                "missing: gateway v10 requires intents",
            ));
        }
    }
    // `capabilities`, `client_state`, `guild_subscriptions` and anything else are accepted and
    // have no effect here; `compress` is read by `asks_payload_compression`.
    Ok(Value::Object(d))
}

/// Whether an IDENTIFY's text asks for payload compression (`"compress": true`). Read apart
/// from the strict parse, whose type always writes `false`.
pub fn asks_payload_compression(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct D {
        #[serde(default)]
        compress: Option<Value>,
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        d: D,
    }
    serde_json::from_str::<Envelope>(text)
        .is_ok_and(|e| matches!(e.d.compress, Some(Value::Bool(true))))
}

/// `properties` with either key spelling (`os` or the pre-v8 `$os`); absent keys are empty.
fn connection_properties(p: &Map<String, Value>) -> Value {
    let read = |key: &str| {
        p.get(key)
            .or_else(|| p.get(&format!("${key}")))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    serde_json::json!({ "os": read("os"), "browser": read("browser"), "device": read("device") })
}

/// A presence (op 3's `d`, or IDENTIFY's `presence`): `since` null, a number or anything else
/// (read as null); `activities` absent (the legacy `game` is read in its place); `afk` optional.
fn presence(p: Value, field: &'static str) -> Result<Value, Rejection> {
    let Value::Object(mut p) = object(p, field)? else {
        return Err(Rejection::decode(field, "expected an object"));
    };
    let since = p
        .get("since")
        .and_then(Value::as_u64)
        .map_or(Value::Null, Value::from);
    let status = match p.remove("status") {
        None | Some(Value::Null) => Value::from("online"),
        Some(Value::String(s)) => match s.as_str() {
            "online" | "dnd" | "idle" | "invisible" | "offline" => Value::String(s),
            _ => {
                return Err(Rejection::decode(
                    field,
                    format!("status {s:?} is not online, dnd, idle, invisible or offline"),
                ));
            }
        },
        Some(other) => {
            return Err(Rejection::decode(
                field,
                format!("status is {}, not a string", kind(&other)),
            ));
        }
    };
    let afk = p.get("afk").and_then(Value::as_bool).unwrap_or(false);
    let activities = match (p.remove("activities"), p.remove("game")) {
        (Some(Value::Array(list)), _) => list,
        (None | Some(Value::Null), Some(game @ Value::Object(_))) => vec![game],
        (None | Some(Value::Null), _) => Vec::new(),
        (Some(other), _) => {
            return Err(Rejection::decode(
                field,
                format!("activities is {}, not an array", kind(&other)),
            ));
        }
    };
    let activities = activities
        .into_iter()
        .map(|a| activity(a, field))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::json!({
        "since": since,
        "activities": activities,
        "status": status,
        "afk": afk,
    }))
}

/// One activity: the fields a bot may set; `type` defaults to 0 (playing), extra fields ignored.
fn activity(a: Value, field: &'static str) -> Result<Value, Rejection> {
    let Value::Object(a) = a else {
        return Err(Rejection::decode(
            field,
            format!("an activity is {}, not an object", kind(&a)),
        ));
    };
    let mut out = Map::new();
    out.insert(
        "name".into(),
        a.get("name").cloned().unwrap_or_else(|| Value::from("")),
    );
    out.insert(
        "type".into(),
        a.get("type")
            .cloned()
            .filter(|t| !t.is_null())
            .unwrap_or_else(|| Value::from(0)),
    );
    for key in ["url", "state"] {
        if let Some(v) = a.get(key).filter(|v| v.is_string()) {
            out.insert(key.into(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// RESUME: the token with or without `Bot `; a null `seq` (nothing received yet) is 0.
fn resume(d: Value) -> Result<Value, Rejection> {
    let Value::Object(mut d) = object(d, "d")? else {
        return Err(Rejection::decode("d", "expected an object"));
    };
    if !d.get("token").is_some_and(Value::is_string) {
        return Err(Rejection::new(
            CloseCode::AuthenticationFailed,
            "d.token",
            "missing or not a string",
        ));
    }
    if d.get("seq").is_none_or(Value::is_null) {
        d.insert("seq".into(), Value::from(0));
    }
    Ok(Value::Object(d))
}

/// REQUEST_GUILD_MEMBERS: null optional fields are absent, and a nonce over 32 bytes is dropped,
/// as Discord drops it.
fn request_members(d: Value) -> Result<Value, Rejection> {
    let Value::Object(mut d) = object(d, "d")? else {
        return Err(Rejection::decode("d", "expected an object"));
    };
    d.retain(|_, v| !v.is_null());
    if d.get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|n| n.len() > gateway_model::MAX_NONCE_LEN)
    {
        tracing::warn!(
            field = "d.nonce",
            "nonce longer than 32 bytes: dropped, as Discord drops it"
        );
        d.remove("nonce");
    }
    Ok(Value::Object(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_model::{ActivityType, Status};

    fn read(text: &str) -> Result<Command, Rejection> {
        read_command(text, 4096)
    }

    fn code(text: &str) -> u16 {
        read(text).map_or_else(|r| r.code.as_u16(), |c| panic!("accepted: {c:?}"))
    }

    #[test]
    fn hikari_identify_with_legacy_presence() {
        let text = r#"{"op":2,"d":{"token":"testkit-token","compress":false,"large_threshold":250,
            "properties":{"os":"Linux","browser":"hikari (2.7.0; ...)","device":"hikari"},
            "shard":[0,1],"intents":3276799,
            "presence":{"since":null,"afk":false,"game":null,"status":"online"}}}"#;
        let Ok(Command::Identify(identify)) = read(text) else {
            panic!("rejected")
        };
        let presence = identify.presence.expect("presence");
        assert_eq!(
            (presence.status, presence.activities.len()),
            (Status::Online, 0)
        );
    }

    #[test]
    fn bot_prefix_dollar_keys_capabilities_and_no_threshold() {
        let text = r#"{"op":2,"d":{"token":"Bot testkit-token","capabilities":16381,
            "properties":{"$os":"linux","$browser":"twilight.rs","$device":"twilight.rs"},
            "client_state":{"guild_versions":{}},"compress":true,"intents":513,"extra":[1,{}]}}"#;
        let Ok(Command::Identify(identify)) = read(text) else {
            panic!("rejected")
        };
        assert_eq!(identify.properties.browser, "twilight.rs");
        assert_eq!(identify.large_threshold.get(), 50);
    }

    #[test]
    fn presences_with_game_and_since_of_any_kind() {
        for since in ["null", "1700000000000", r#"{"t":1}"#, "\"x\""] {
            let text = format!(
                r#"{{"op":3,"d":{{"since":{since},"game":{{"name":"chess","type":0}},"status":"idle"}}}}"#
            );
            let Ok(Command::UpdatePresence(p)) = read(&text) else {
                panic!("rejected {since}")
            };
            assert_eq!(p.activities[0].name, "chess");
            assert_eq!(p.activities[0].kind, ActivityType::Playing);
            assert!(!p.afk);
        }
    }

    #[test]
    fn heartbeats_with_null_a_number_or_no_d() {
        for text in [r#"{"op":1,"d":null}"#, r#"{"op":1,"d":42}"#, r#"{"op":1}"#] {
            assert!(matches!(read(text), Ok(Command::Heartbeat(_))), "{text}");
        }
        assert_eq!(code(r#"{"op":1,"d":"x"}"#), 4002);
    }

    #[test]
    fn rejects_what_discord_rejects_with_its_code() {
        let identify = |d: &str| format!(r#"{{"op":2,"d":{d}}}"#);
        let props = r#""properties":{"os":"l","browser":"b","device":"d"}"#;
        assert_eq!(
            code(&identify(&format!(r#"{{{props},"intents":1}}"#))),
            4004
        );
        assert_eq!(
            code(&identify(&format!(
                r#"{{"token":"testkit-token",{props},"intents":1,"shard":[1,1]}}"#
            ))),
            4010
        );
        assert_eq!(
            code(&identify(&format!(
                r#"{{"token":"testkit-token",{props},"intents":4194304}}"#
            ))),
            4013
        );
        assert_eq!(code(r#"{"op":99,"d":null}"#), 4001);
        assert_eq!(code("{not json"), 4002);
        assert_eq!(code(r#"{"op":"2"}"#), 4002);
        assert_eq!(code(&"x".repeat(5000)), 4002);
    }

    #[test]
    fn long_nonce_is_dropped_null_fields_ignored() {
        let text = format!(
            r#"{{"op":8,"d":{{"guild_id":"81384788765712384","query":"","limit":0,"user_ids":null,"presences":null,"nonce":"{}"}}}}"#,
            "n".repeat(40)
        );
        let Ok(Command::RequestGuildMembers(r)) = read(&text) else {
            panic!("rejected")
        };
        assert_eq!(r.nonce(), None);
    }

    #[test]
    fn resume_errors_never_quote_the_token() {
        // No session_id: the parser fails right after the token; its message must not quote it.
        let rejection = read(r#"{"op":6,"d":{"token":"testkit-token-secret","seq":1}}"#)
            .expect_err("no session_id");
        assert!(!rejection.rule.contains("secret"), "{}", rejection.rule);
        assert!(
            read(r#"{"op":6,"d":{"token":"Bot testkit-token","session_id":"s","seq":null}}"#)
                .is_ok()
        );
    }

    #[test]
    fn redaction_hides_the_token_and_non_json() {
        let r = redacted(r#"{"op":2,"d":{"token":"secret-token","intents":1}}"#);
        assert!(
            !r.contains("secret-token") && r.contains("<redacted>"),
            "{r}"
        );
        assert!(!redacted("{secret-token").contains("secret"));
    }

    #[test]
    fn every_code_has_discords_reason() {
        for code in [
            4000, 4001, 4002, 4003, 4004, 4005, 4007, 4008, 4009, 4010, 4011, 4012, 4013, 4014,
        ] {
            assert!(close_reason(code).ends_with('.'), "{code}");
        }
    }
}
