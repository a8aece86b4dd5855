//! The envelope scan: one pass over a payload's top level for `op`, `s`, `t` and the span of `d`.

use std::borrow::Cow;
use std::fmt;

use gateway_model::{OpCode, Payload};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top level of a received payload. `d` is only skipped over (and checked to be valid JSON),
/// never built; `t` is borrowed unless it has escapes. Keys may come in any order, and missing
/// keys read as `null`; other keys are ignored. Only an object is accepted.
struct Envelope<'a> {
    op: OpCode,
    s: Option<u64>,
    t: Option<Cow<'a, str>>,
    d: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

/// A top-level key, borrowed when it can be.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wrapper<'a>(#[serde(borrow)] Cow<'a, str>);
        Wrapper::deserialize(deserializer).map(|w| Key(w.0))
    }
}

/// `t`: a string borrowed when it has no escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a gateway payload object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut op = None;
        let (mut s, mut t, mut d) = (None, None, None);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "op" => set(&mut op, map.next_value::<OpCode>()?, "op")?,
                "s" => set(&mut s, map.next_value::<Option<u64>>()?, "s")?,
                "t" => set(
                    &mut t,
                    map.next_value::<Option<Name<'de>>>()?.map(|n| n.0),
                    "t",
                )?,
                "d" => set(&mut d, map.next_value::<Option<&'de RawValue>>()?, "d")?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope {
            op: op.ok_or_else(|| de::Error::missing_field("op"))?,
            s: s.flatten(),
            t: t.flatten(),
            d: d.flatten(),
        })
    }
}

fn set<T, E: de::Error>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(key));
    }
    *slot = Some(value);
    Ok(())
}

/// Reads the envelope of one complete payload.
pub fn scan(json: &[u8]) -> Result<Payload<'_>, serde_json::Error> {
    let e: Envelope<'_> = serde_json::from_slice(json)?;
    Ok(Payload {
        op: e.op,
        seq: e.s,
        event_name: e.t,
        data: e.d.map(RawValue::get),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_missing_keys() {
        let a = scan(br#"{"t":"X","s":3,"op":0,"d":{"a":[1,2]}}"#).unwrap();
        let b = scan(br#"{"d":{"a":[1,2]},"op":0,"t":"X","s":3}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.data, Some(r#"{"a":[1,2]}"#));
        let ack = scan(br#"{"op":11}"#).unwrap();
        assert_eq!(
            (ack.op, ack.seq, ack.event_name, ack.data),
            (OpCode::HeartbeatAck, None, None, None)
        );
        let nulls =
            scan(br#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["x"]}}"#)
                .unwrap();
        assert_eq!(nulls.op, OpCode::Hello);
        assert_eq!(
            scan(br#"{"op":9,"d":null,"extra":{"k":[]}}"#).unwrap().data,
            None
        );
    }

    #[test]
    fn escaped_names_are_unescaped() {
        let p = scan(br#"{"op":0,"s":1,"t":"READ\u0059","d":{}}"#).unwrap();
        assert_eq!(p.event_name.as_deref(), Some("READY"));
    }

    #[test]
    fn invalid_input() {
        for bad in [
            &br#"{"s":1}"#[..],
            b"[]",
            b"[1,2]",
            br#"{"op":1,"op":1}"#,
            b"{",
            br#"{"op":"0"}"#,
            br#"{"op":0,"d":{]}"#,
            b"\xff",
            br#"{"op":0} x"#,
        ] {
            assert!(scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
