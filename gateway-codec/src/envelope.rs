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
///
/// Discord writes every payload as `{"t":…,"s":…,"op":…,"d":…}`, `d` last. For that shape the
/// fast path reads the keys before `d` and takes `d` to be everything up to the object's closing
/// brace, without scanning it: the cost does not grow with `d`'s size. `d` is then checked only
/// at its two ends (and for UTF-8); its full syntax is checked when it is parsed into a type. Any
/// other shape (keys in another order, extra keys, escapes in `t`, a number that is not a plain
/// integer) goes through [`scan_validating`], which checks everything and errors precisely.
pub fn scan(json: &[u8]) -> Result<Payload<'_>, serde_json::Error> {
    match fast::scan(json) {
        Some(payload) => Ok(payload),
        None => scan_validating(json),
    }
}

/// Reads the envelope with a full serde_json parse: `d` is validated (skipped, not built).
pub fn scan_validating(json: &[u8]) -> Result<Payload<'_>, serde_json::Error> {
    let e: Envelope<'_> = serde_json::from_slice(json)?;
    Ok(Payload {
        op: e.op,
        seq: e.s,
        event_name: e.t,
        data: e.d.map(RawValue::get),
    })
}

/// The fast path for Discord's own key order.
mod fast {
    use std::borrow::Cow;

    use gateway_model::{OpCode, Payload};

    fn is_ws(c: u8) -> bool {
        matches!(c, b' ' | b'\n' | b'\r' | b'\t')
    }

    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        i
    }

    /// A plain JSON unsigned integer at `i`: its value and the index after it.
    fn integer(b: &[u8], i: usize) -> Option<(u64, usize)> {
        let digits = b
            .get(i..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || (digits > 1 && b[i] == b'0') {
            return None;
        }
        let mut v: u64 = 0;
        for &c in &b[i..i + digits] {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        Some((v, i + digits))
    }

    /// A string without escapes whose opening quote is at `i`: its text and the index after it.
    fn plain_string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
        let len = b
            .get(i + 1..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\')?;
        let end = i + 1 + len;
        (b[end] == b'"').then(|| (&b[i + 1..end], end + 1))
    }

    /// Whether `d` (which runs to the payload's closing brace) is one JSON value. Strings and
    /// scalars are short and checked whole; an object or array is checked at its two ends only,
    /// which is exact unless a key follows `d` in the payload, which Discord never sends (its
    /// text would then fail to parse as `d`'s type: an error, not a wrong sequence number).
    fn whole_value(d: &[u8]) -> bool {
        match (d.first(), d.last()) {
            (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']')) => true,
            (Some(b'"'), Some(b'"')) => string_end(d, 0) == Some(d.len()),
            (Some(_), Some(_)) => {
                matches!(d, b"null" | b"true" | b"false")
                    || ((d[0].is_ascii_digit() || d[0] == b'-')
                        && d.iter().all(|c| c.is_ascii_digit() || b"-+.eE".contains(c)))
            }
            _ => false,
        }
    }

    /// The index after the string whose opening quote is at `i`, escapes included.
    fn string_end(b: &[u8], i: usize) -> Option<usize> {
        let mut j = i + 1;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' => return Some(j + 1),
                _ => j += 1,
            }
        }
        None
    }

    fn payload<'a>(
        op: Option<u64>,
        s: Option<Option<u64>>,
        t: Option<Option<&'a str>>,
        data: Option<&'a str>,
    ) -> Option<Payload<'a>> {
        Some(Payload {
            op: OpCode::from_value(op?),
            seq: s.flatten(),
            event_name: t.flatten().map(Cow::Borrowed),
            data: data.filter(|d| *d != "null"),
        })
    }

    /// `None` when the payload is not in the simple shape; the caller then parses it fully.
    pub(super) fn scan(b: &[u8]) -> Option<Payload<'_>> {
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i += 1;
        let (mut op, mut s, mut t) = (None, None, None);
        loop {
            i = skip_ws(b, i);
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (key, after) = plain_string(b, i)?;
            i = skip_ws(b, after);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            let rest = b.get(i..)?;
            match key {
                b"op" if op.is_none() => {
                    let (v, next) = integer(b, i)?;
                    op = Some(v);
                    i = next;
                }
                b"s" if s.is_none() => {
                    if rest.starts_with(b"null") {
                        s = Some(None);
                        i += 4;
                    } else {
                        let (v, next) = integer(b, i)?;
                        s = Some(Some(v));
                        i = next;
                    }
                }
                b"t" if t.is_none() => {
                    if rest.starts_with(b"null") {
                        t = Some(None);
                        i += 4;
                    } else if rest.first() == Some(&b'"') {
                        let (text, next) = plain_string(b, i)?;
                        t = Some(Some(std::str::from_utf8(text).ok()?));
                        i = next;
                    } else {
                        return None;
                    }
                }
                // Discord's shape: `t`, `s` and `op` first, then `d`, which runs to the closing
                // brace. Any other order is read by the full parse.
                b"d" if op.is_some() && s.is_some() && t.is_some() => {
                    let close = b.iter().rposition(|&c| !is_ws(c))?;
                    if b[close] != b'}' || close <= i {
                        return None;
                    }
                    let d_end = b[..close].iter().rposition(|&c| !is_ws(c))? + 1;
                    let d = b.get(i..d_end)?;
                    if !whole_value(d) {
                        return None;
                    }
                    return payload(op, s, t, Some(std::str::from_utf8(d).ok()?));
                }
                _ => return None,
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') if skip_ws(b, i + 1) == b.len() => return payload(op, s, t, None),
                _ => return None,
            }
        }
    }
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
    fn discord_order_takes_the_fast_path_and_agrees_with_the_full_parse() {
        for json in [
            &br#"{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"content":"a}b","n":[1,{"x":null}]}}"#[..],
            br#"{"t":null,"s":null,"op":11,"d":null}"#,
            br#" { "t" : "X" , "s" : 1 , "op" : 0 , "d" : [1, 2] } "#,
            br#"{"t":null,"s":null,"op":11}"#,
            br#"{"op":11}"#,
            br#"{"t":"X","s":2,"op":0,"d":"a\"b"}"#,
            br#"{"t":"X","s":2,"op":0,"d":-1.5e3}"#,
            br#"{"t":null,"s":null,"op":9,"d":false}"#,
            br#"{"t":null,"s":null,"op":1,"d":251}"#,
            br#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}"#,
        ] {
            let fast = fast::scan(json).expect("fast path");
            assert_eq!(
                fast,
                scan_validating(json).unwrap(),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        // Other shapes fall back to the full parse.
        for other in [
            &br#"{"d":{},"op":0,"s":1,"t":"X"}"#[..],
            br#"{"t":"X","s":1,"op":0,"d":{},"extra":1}"#,
            br#"{"t":"A"B","s":1,"op":0,"d":{}}"#,
            br#"{"op":01}"#,
            br#"{"op":1.5}"#,
            br#"{"op":1,"d":{]}"#,
            br#"{"op":10,"d":{"heartbeat_interval":45000}}"#,
            br#"{"t":null,"s":null,"op":9,"d":"a","x":"b"}"#,
            br#"{"t":null,"s":null,"op":9,"d":1,"x":2}"#,
        ] {
            assert!(
                fast::scan(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
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
