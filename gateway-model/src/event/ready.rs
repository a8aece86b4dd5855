//! HELLO and READY: the start of a connection and of a session.

use serde::{Deserialize, Serialize};

use crate::{ShardId, Snowflake, UnavailableGuild};

/// HELLO (op 10): the first payload on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Milliseconds between heartbeats.
    pub heartbeat_interval: u64,
}

/// The bot's own user, as READY carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user id.
    pub id: Snowflake,
    /// The username.
    pub username: String,
    /// The legacy discriminator (`"0"` for migrated users).
    #[serde(default)]
    pub discriminator: Option<String>,
    /// The display name.
    #[serde(default)]
    pub global_name: Option<String>,
    /// The avatar hash.
    #[serde(default)]
    pub avatar: Option<String>,
    /// Whether this is a bot account.
    #[serde(default)]
    pub bot: bool,
}

/// The application fields READY carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialApplication {
    /// The application id.
    pub id: Snowflake,
    /// Application flags; bits 12–15 and 18–19 tell which privileged intents are enabled.
    pub flags: u64,
}

/// READY: a session started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// API version.
    #[serde(default)]
    pub v: Option<u8>,
    /// The bot's user.
    pub user: User,
    /// The session's guilds, all unavailable until their GUILD_CREATE.
    pub guilds: Vec<UnavailableGuild>,
    /// The session id, for RESUME.
    pub session_id: String,
    /// Where to reconnect to resume this session.
    pub resume_gateway_url: String,
    /// The shard, if IDENTIFY named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardId>,
    /// The application.
    pub application: PartialApplication,
    /// READY's whole `d` as the gateway sent it, for what the fields above leave out (the
    /// user's `flags`, `mfa_enabled`, `verified`…): a proxy passes it on whole. `None` for a
    /// READY built rather than read.
    #[serde(skip)]
    pub raw: Option<crate::RawJson>,
}
