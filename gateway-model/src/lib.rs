//! Discord Gateway v10 payload types whose JSON is exactly Discord's.
//!
//! | module | holds |
//! |---|---|
//! | [`Snowflake`] | ids: read from strings or numbers, written as strings, with their creation time |
//! | [`Intents`] | the intents bitfield, privileged set named |
//! | [`OpCode`] | opcodes; unknown values kept |
//! | [`CloseCode`], [`CLOSE_POLICY`] | close codes and the one table of what each means: resume, re-identify or stop |
//! | [`Token`] | the bot token, redacted in `Debug` and `Display` |
//! | [`command`] | everything a client sends, and [`Command`] for any of it |
//! | [`event`] | the received [`Payload`] view, [`GatewayEvent`], the [`EventTypes`] filter, raw dispatches |
//! | [`RawJson`] | JSON kept as text, deserialized on demand into the caller's own types |
//! | [`GatewayBot`] | the `GET /gateway/bot` answer: URL, shard count, session start budget |
//! | [`json`] | the sonic-rs functions to read and write these types |
//!
//! Commands are built valid or not at all:
//!
//! ```
//! use gateway_model::{Command, Identify, Intents, ShardId, Token, RequestGuildMembers, Snowflake};
//!
//! let identify = Identify::new(Token::new("my_token"), Intents::GUILDS | Intents::GUILD_MESSAGES)
//!     .with_shard(ShardId::new(0, 2)?);
//! let json = gateway_model::json::to_string(&Command::from(identify))?;
//! assert!(json.starts_with(r#"{"op":2,"d":{"token":"my_token","#));
//!
//! let too_many = RequestGuildMembers::builder(Snowflake::new(1)).query("a", 101).build();
//! assert!(too_many.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Received payloads become typed events; every dispatch the stack does not read stays raw:
//!
//! ```
//! use gateway_model::{DispatchEvent, EventTypes, GatewayEvent, OpCode, Payload};
//!
//! let payload = Payload {
//!     op: OpCode::Dispatch,
//!     seq: Some(7),
//!     event_name: Some("MESSAGE_CREATE".into()),
//!     data: Some(r#"{"id":"1","content":"hi"}"#),
//! };
//! let Some(GatewayEvent::Dispatch(dispatch)) = GatewayEvent::from_payload(&payload, EventTypes::all())? else {
//!     unreachable!()
//! };
//! let DispatchEvent::Other(raw) = dispatch.event else { unreachable!() };
//!
//! #[derive(serde::Deserialize)]
//! struct Message<'a> { content: &'a str }
//! assert_eq!(raw.deserialize::<Message<'_>>()?.content, "hi");
//!
//! // Filtered out: not parsed, not copied.
//! assert!(GatewayEvent::from_payload(&payload, EventTypes::STACK)?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Tests read the clock to build inputs; the library itself does not (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
mod close_code;
pub mod command;
pub mod event;
mod gateway_bot;
mod intents;
pub mod json;
mod opcode;
mod raw_json;
mod shard_id;
mod snowflake;
mod token;

pub use close_code::{CLOSE_POLICY, CloseAction, CloseCode};
pub use command::{
    Activity, ActivityType, ChannelInfoField, Command, CommandError, ConnectionProperties,
    Heartbeat, Identify, LargeThreshold, LargeThresholdOutOfRange, MAX_LIMIT, MAX_NONCE_LEN,
    MAX_USER_IDS, MemberSelection, MissingIntent, RequestChannelInfo, RequestGuildMembers,
    RequestGuildMembersBuilder, RequestGuildMembersError, RequestSoundboardSounds, Resume, Status,
    UpdatePresence, UpdateVoiceState,
};
pub use event::{
    Dispatch, DispatchEvent, EventError, EventTypes, GatewayEvent, GuildCreate, GuildDelete,
    GuildMembersChunk, Hello, PartialApplication, Payload, RateLimited, RateLimitedMeta,
    RawDispatch, Ready, UnavailableGuild, User,
};
pub use gateway_bot::{GatewayBot, SessionStartLimit};
pub use intents::Intents;
pub use opcode::OpCode;
pub use raw_json::{JsonError, RawJson};
pub use shard_id::{InvalidShardId, ShardId};
pub use snowflake::{DISCORD_EPOCH_MS, Snowflake};
pub use token::Token;
