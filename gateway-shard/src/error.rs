//! What can go wrong.

use gateway_model::{CloseCode, MissingIntent, RequestGuildMembersError};

/// Why a shard stopped, or could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The gateway closed with a code after which reconnecting cannot help (4004, 4010–4014).
    #[error("the gateway closed with {code}: {reason}")]
    Fatal {
        /// The close code.
        code: CloseCode,
        /// Why it is fatal.
        reason: &'static str,
    },
    /// The shard did not become ready within the start timeout.
    #[error("not ready within {0:?}")]
    StartTimeout(std::time::Duration),
    /// The shard was closed.
    #[error("the shard was closed")]
    Closed,
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Fewer sessions may start than there are shards to identify: starting would spend the
    /// budget and leave shards down (and Discord resets the token of a bot that goes over).
    #[error(
        "{remaining} session starts left, {needed} shards to identify; the budget resets in {reset_after:?}"
    )]
    SessionStartLimit {
        /// Session starts left.
        remaining: u32,
        /// Shards that would identify.
        needed: u32,
        /// When the budget resets.
        reset_after: std::time::Duration,
    },
    /// The identify queue could not take the session start budget (its store is unreachable).
    #[error(transparent)]
    Identify(crate::identify::IdentifyError),
    /// `GET /gateway/bot` failed.
    #[cfg(feature = "rest")]
    #[error(transparent)]
    GatewayBot(#[from] crate::rest::GatewayBotError),
}

/// Why a command was not queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The shard has stopped.
    #[error("the shard is not running")]
    NotRunning,
    /// The command queue is full.
    #[error("the command queue is full ({0} commands)")]
    QueueFull(usize),
    /// The session lacks an intent the request needs.
    #[error(transparent)]
    MissingIntent(#[from] MissingIntent),
    /// The request is invalid.
    #[error(transparent)]
    Invalid(#[from] RequestGuildMembersError),
    /// The guild is not on this shard.
    #[error("guild {guild} belongs to shard {expected}, not this one")]
    WrongShard {
        /// The guild.
        guild: gateway_model::Snowflake,
        /// The shard it belongs to.
        expected: u32,
    },
    /// The payload cannot be sent (over 4096 bytes).
    #[error(transparent)]
    Encode(#[from] gateway_codec::EncodeError),
}
