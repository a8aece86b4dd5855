//! The JSON functions model types are meant to be read and written with (sonic-rs).
//!
//! Types holding [`RawJson`](crate::RawJson) keep raw text through sonic-rs's lazy values, which
//! only sonic-rs's (de)serializer understands; these helpers keep callers on it.

use serde::{Deserialize, Serialize};

use crate::JsonError;

/// Reads a value from JSON text, borrowing where the type allows.
pub fn from_str<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, JsonError> {
    Ok(sonic_rs::from_str(json)?)
}

/// Writes a value as JSON text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, JsonError> {
    Ok(sonic_rs::to_string(value)?)
}

/// Appends a value as JSON to `buf`.
pub fn to_writer<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), JsonError> {
    Ok(sonic_rs::to_writer(buf, value)?)
}
