//! The gateway payloads the server sends, built from typed values: the envelope
//! `{"t", "s", "op", "d"}` in Discord's field order, with the model's [`OpCode`].

use gateway_model::OpCode;
use serde::Serialize;

#[derive(Serialize)]
struct Envelope<'a, D: Serialize + ?Sized> {
    t: Option<&'a str>,
    s: Option<u64>,
    op: OpCode,
    d: &'a D,
}

#[derive(Serialize)]
struct HelloData<'a> {
    heartbeat_interval: u64,
    _trace: [&'a str; 1],
}

#[derive(Serialize)]
struct Micros {
    micros: u64,
}

fn to_json<D: Serialize + ?Sized>(t: Option<&str>, s: Option<u64>, op: OpCode, d: &D) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(&Envelope { t, s, op, d }).unwrap_or_default()
}

/// HELLO (op 10) with the heartbeat interval in milliseconds, and `_trace` naming the server
/// (`server`, as Discord names its gateway node).
pub fn hello(interval_ms: u64, server: &str) -> String {
    let trace = serde_json::to_string(&(server, Micros { micros: 0 })).unwrap_or_default();
    let d = HelloData {
        heartbeat_interval: interval_ms,
        _trace: [&trace],
    };
    to_json(None, None, OpCode::Hello, &d)
}

/// HEARTBEAT ACK (op 11).
pub fn heartbeat_ack() -> String {
    to_json(None, None, OpCode::HeartbeatAck, &())
}

/// A HEARTBEAT request from the server (op 1).
pub fn heartbeat_request() -> String {
    to_json(None, None, OpCode::Heartbeat, &())
}

/// RECONNECT (op 7).
pub fn reconnect() -> String {
    to_json(None, None, OpCode::Reconnect, &())
}

/// INVALID_SESSION (op 9) with whether the session may be resumed.
pub fn invalid_session(resumable: bool) -> String {
    to_json(None, None, OpCode::InvalidSession, &resumable)
}

/// A dispatch (op 0) named `name` with sequence number `seq`; `data` is its `d`, as the world (or
/// a test) wrote it: sent as given, unparsed, so a test can also send a `d` that is not JSON.
pub fn dispatch(name: &str, seq: u64, data: &str) -> String {
    let head = Head {
        t: name,
        s: seq,
        op: OpCode::Dispatch,
    };
    // Serializing this plain struct cannot fail; it ends with `}`, which `d` replaces.
    let mut json = serde_json::to_string(&head).unwrap_or_default();
    json.pop();
    json.reserve(data.len() + 6);
    json.push_str(r#","d":"#);
    json.push_str(data);
    json.push('}');
    json
}

#[derive(Serialize)]
struct Head<'a> {
    t: &'a str,
    s: u64,
    op: OpCode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_discords_shape() {
        assert_eq!(
            hello(41250, "gateway-testkit"),
            r#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["[\"gateway-testkit\",{\"micros\":0}]"]}}"#
        );
        assert_eq!(heartbeat_ack(), r#"{"t":null,"s":null,"op":11,"d":null}"#);
        assert_eq!(
            invalid_session(false),
            r#"{"t":null,"s":null,"op":9,"d":false}"#
        );
        assert_eq!(reconnect(), r#"{"t":null,"s":null,"op":7,"d":null}"#);
        assert_eq!(
            dispatch("RESUMED", 5, "{}"),
            r#"{"t":"RESUMED","s":5,"op":0,"d":{}}"#
        );
        assert_eq!(
            dispatch("A\"B", 1, "[]"),
            r#"{"t":"A\"B","s":1,"op":0,"d":[]}"#
        );
    }
}
