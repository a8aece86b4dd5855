//! Everything a client receives: the payload view, typed events, and raw dispatches.

mod guild;
mod members_chunk;
mod payload;
mod ready;
mod types;

pub use guild::{GuildCreate, GuildDelete, UnavailableGuild};
pub use members_chunk::{GuildMembersChunk, RateLimited, RateLimitedMeta};
pub use payload::Payload;
pub use ready::{Hello, PartialApplication, Ready, User};
pub use types::{EVENT_TYPES, EventTypes};

use std::borrow::Cow;

use serde::Deserialize;

use crate::{JsonError, OpCode, RawJson};

/// A dispatch the stack does not read itself: its name, its sequence and its raw `d`, which the
/// caller deserializes on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDispatch {
    /// The event name (`t`): borrowed from the event table for every name Discord documents,
    /// owned for others.
    pub name: Cow<'static, str>,
    /// The event's `d`.
    pub data: RawJson,
}

impl RawDispatch {
    /// A raw dispatch named `name` (no allocation for a name in the event table).
    pub fn new(name: &str, data: RawJson) -> Self {
        Self::with_kind(name, EventTypes::from_event_name(name), data)
    }

    /// The same, for a caller that already has `kind`, which must be
    /// [`EventTypes::from_event_name`]`(name)`: the name is looked up once per event.
    pub fn with_kind(name: &str, kind: EventTypes, data: RawJson) -> Self {
        debug_assert_eq!(kind, EventTypes::from_event_name(name));
        let name = match kind.wire_name() {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(name.to_owned()),
        };
        Self { name, data }
    }

    /// Deserializes `d` into any type, borrowing where the type allows.
    pub fn deserialize<'a, T: Deserialize<'a>>(&'a self) -> Result<T, JsonError> {
        self.data.deserialize()
    }
}

/// The payload of a dispatch (op 0).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DispatchEvent {
    /// READY.
    Ready(Box<Ready>),
    /// RESUMED: the replay after RESUME is complete.
    Resumed,
    /// GUILD_CREATE.
    GuildCreate(Box<GuildCreate>),
    /// GUILD_DELETE.
    GuildDelete(GuildDelete),
    /// GUILD_MEMBERS_CHUNK.
    GuildMembersChunk(Box<GuildMembersChunk>),
    /// RATE_LIMITED.
    RateLimited(RateLimited),
    /// Any other dispatch, raw.
    Other(RawDispatch),
}

impl DispatchEvent {
    /// The event name.
    pub fn name(&self) -> &str {
        match self {
            Self::Ready(_) => "READY",
            Self::Resumed => "RESUMED",
            Self::GuildCreate(_) => "GUILD_CREATE",
            Self::GuildDelete(_) => "GUILD_DELETE",
            Self::GuildMembersChunk(_) => "GUILD_MEMBERS_CHUNK",
            Self::RateLimited(_) => "RATE_LIMITED",
            Self::Other(raw) => &raw.name,
        }
    }
}

/// A dispatch with its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// `s`.
    pub seq: u64,
    /// The event.
    pub event: DispatchEvent,
}

/// A received payload, typed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GatewayEvent {
    /// Op 0.
    Dispatch(Dispatch),
    /// Op 1 from the server: send a heartbeat now.
    HeartbeatRequest,
    /// Op 7: reconnect and resume.
    Reconnect,
    /// Op 9: the session is invalid.
    InvalidSession {
        /// Whether the session may be resumed (`d`).
        resumable: bool,
    },
    /// Op 10.
    Hello(Hello),
    /// Op 11.
    HeartbeatAck,
}

/// Why a payload could not become a [`GatewayEvent`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A dispatch without `s`.
    #[error("dispatch without a sequence number")]
    MissingSequence,
    /// A dispatch without `t`.
    #[error("dispatch without an event name")]
    MissingEventName,
    /// `d` does not match the event's shape.
    #[error("invalid {event} data: {source}")]
    InvalidData {
        /// The event name, or the opcode's name.
        event: Box<str>,
        /// The parse error.
        source: JsonError,
    },
    /// An opcode a server does not send, or one this crate does not know.
    #[error("unexpected opcode {}", .0.value())]
    UnexpectedOpcode(OpCode),
}

impl GatewayEvent {
    /// Types a received payload.
    ///
    /// Dispatches whose type is not in `wanted` give `Ok(None)` without their `d` being read or
    /// copied (the payload's `seq` is still there for the caller to record). Non-dispatch opcodes
    /// are always typed.
    pub fn from_payload(
        payload: &Payload<'_>,
        wanted: EventTypes,
    ) -> Result<Option<Self>, EventError> {
        let data = payload.data.unwrap_or("null");
        let invalid = |event: &str, e: JsonError| EventError::InvalidData {
            event: event.into(),
            source: e,
        };
        Ok(Some(match payload.op {
            OpCode::Dispatch => {
                let seq = payload.seq.ok_or(EventError::MissingSequence)?;
                let name = payload
                    .event_name
                    .as_deref()
                    .ok_or(EventError::MissingEventName)?;
                let kind = EventTypes::from_event_name(name);
                if !wanted.intersects(kind) {
                    return Ok(None);
                }
                let event = Self::dispatch(name, kind, data).map_err(|e| invalid(name, e))?;
                Self::Dispatch(Dispatch { seq, event })
            }
            OpCode::Heartbeat => Self::HeartbeatRequest,
            OpCode::Reconnect => Self::Reconnect,
            OpCode::InvalidSession => Self::InvalidSession {
                resumable: sonic_rs::from_str::<Option<bool>>(data)
                    .map_err(|e| invalid("INVALID_SESSION", e.into()))?
                    .unwrap_or(false),
            },
            OpCode::Hello => {
                Self::Hello(sonic_rs::from_str(data).map_err(|e| invalid("HELLO", e.into()))?)
            }
            OpCode::HeartbeatAck => Self::HeartbeatAck,
            other => return Err(EventError::UnexpectedOpcode(other)),
        }))
    }

    fn dispatch(name: &str, kind: EventTypes, data: &str) -> Result<DispatchEvent, JsonError> {
        Ok(match kind {
            EventTypes::READY => {
                let mut ready: Box<Ready> = sonic_rs::from_str(data)?;
                ready.raw = Some(RawJson::from_validated(data));
                DispatchEvent::Ready(ready)
            }
            EventTypes::RESUMED => DispatchEvent::Resumed,
            EventTypes::GUILD_CREATE => {
                DispatchEvent::GuildCreate(Box::new(GuildCreate::from_json(data)?))
            }
            EventTypes::GUILD_DELETE => DispatchEvent::GuildDelete(sonic_rs::from_str(data)?),
            EventTypes::GUILD_MEMBERS_CHUNK => {
                DispatchEvent::GuildMembersChunk(Box::new(GuildMembersChunk::from_json(data)?))
            }
            EventTypes::RATE_LIMITED => DispatchEvent::RateLimited(sonic_rs::from_str(data)?),
            _ => DispatchEvent::Other(RawDispatch::with_kind(
                name,
                kind,
                RawJson::from_validated(data),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_name_is_borrowed_from_the_table_and_another_owned() {
        let data = || RawJson::from_string("{}").unwrap();
        let known = RawDispatch::new("MESSAGE_CREATE", data());
        assert!(matches!(known.name, Cow::Borrowed("MESSAGE_CREATE")));
        let unknown = RawDispatch::new("SOMETHING_NEW", data());
        assert!(matches!(&unknown.name, Cow::Owned(n) if n == "SOMETHING_NEW"));
    }

    #[test]
    fn every_event_type_names_itself_and_only_single_bits_do() {
        for (name, kind) in EVENT_TYPES {
            assert_eq!(kind.wire_name(), Some(*name));
        }
        assert_eq!(EventTypes::UNKNOWN.wire_name(), None);
        assert_eq!((EventTypes::READY | EventTypes::RESUMED).wire_name(), None);
        assert_eq!(EventTypes::empty().wire_name(), None);
    }
}
