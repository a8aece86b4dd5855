//! Raw JSON kept as text, parsed later into whatever type the caller wants.

use std::fmt;

use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error as _};
use serde::{Serialize, Serializer};

/// An error from parsing JSON into a model type.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct JsonError(Parser);

/// The parser that failed: sonic-rs for most types, serde_json where it measured faster (the
/// typed events whose large arrays are kept raw).
#[derive(Debug, thiserror::Error)]
enum Parser {
    #[error(transparent)]
    Sonic(#[from] sonic_rs::Error),
    #[error(transparent)]
    SerdeJson(#[from] serde_json::Error),
}

impl From<sonic_rs::Error> for JsonError {
    fn from(e: sonic_rs::Error) -> Self {
        Self(e.into())
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        Self(e.into())
    }
}

/// A JSON value kept as its text, for the caller to deserialize on demand.
///
/// [`from_string`](Self::from_string) checks the whole text up front. A dispatch's `d` is kept
/// as the codec's envelope scan found it ([`from_payload_data`](Self::from_payload_data)): checked
/// at its two ends, its full syntax checked when it is deserialized, so a `d` that is kept and
/// never read costs no parse.
///
/// Model types that hold a `RawJson` are (de)serialized with sonic-rs, the stack's JSON crate: use
/// [`crate::json`] (or `sonic_rs` directly), not another JSON crate, to read or write them.
#[derive(Clone, PartialEq, Eq)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// Checks that `json` is one valid JSON value and keeps it.
    pub fn from_string(json: impl Into<String>) -> Result<Self, JsonError> {
        let json = json.into();
        sonic_rs::from_str::<serde::de::IgnoredAny>(&json)?;
        Ok(Self(json.into_boxed_str()))
    }

    /// A payload's `d` (`null` if it has none) as the codec's envelope scan found it: one JSON
    /// value at its two ends, its full syntax checked when it is deserialized. Every dispatch
    /// handed over raw takes this rule, whether the shard reads typed or raw dispatches, so that
    /// a large `d` is never parsed only to be kept.
    #[must_use]
    pub fn from_payload_data(payload: &crate::Payload<'_>) -> Self {
        Self::from_validated(payload.data.unwrap_or("null"))
    }

    /// Keeps text that an earlier parse already validated.
    pub(crate) fn from_validated(json: &str) -> Self {
        Self(json.into())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// The JSON text, owned (no copy).
    pub fn into_inner(self) -> Box<str> {
        self.0
    }

    /// Deserializes the value, borrowing from it where the target type allows.
    pub fn deserialize<'a, T: Deserialize<'a>>(&'a self) -> Result<T, JsonError> {
        Ok(sonic_rs::from_str(&self.0)?)
    }

    /// Deserializes the value into an owned type.
    pub fn deserialize_owned<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        Ok(sonic_rs::from_str(&self.0)?)
    }
}

impl Default for RawJson {
    /// JSON `null`.
    fn default() -> Self {
        Self("null".into())
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        if self.0.len() <= SHOWN {
            write!(f, "RawJson({})", self.0)
        } else {
            let cut = (0..=SHOWN)
                .rev()
                .find(|&i| self.0.is_char_boundary(i))
                .unwrap_or(0);
            write!(f, "RawJson({}… {} bytes)", &self.0[..cut], self.0.len())
        }
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // sonic-rs writes a LazyValue's text as it is.
        let lazy: sonic_rs::LazyValue<'_> =
            sonic_rs::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        lazy.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let lazy = sonic_rs::LazyValue::deserialize(deserializer)?;
        let raw = lazy.as_raw_str();
        if raw.is_empty() {
            return Err(D::Error::custom("RawJson needs the sonic-rs deserializer"));
        }
        Ok(Self(raw.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_and_round_trips() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct Holder {
            a: RawJson,
            b: u8,
        }
        let h: Holder = sonic_rs::from_str(r#"{"a": [1, {"x":"y"}], "b": 2}"#).unwrap();
        assert_eq!(h.a.get(), r#"[1, {"x":"y"}]"#);
        assert_eq!(
            sonic_rs::to_string(&h).unwrap(),
            r#"{"a":[1, {"x":"y"}],"b":2}"#
        );
        let v: Vec<sonic_rs::Value> = h.a.deserialize().unwrap();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn rejects_invalid_text() {
        assert!(RawJson::from_string("{").is_err());
        assert!(RawJson::from_string("1 2").is_err());
        assert!(RawJson::from_string(" {\"a\":1} ").is_ok());
    }
}
