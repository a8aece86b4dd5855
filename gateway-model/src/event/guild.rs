//! Guild availability: READY's unavailable guilds, GUILD_CREATE and GUILD_DELETE.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{JsonError, RawJson, Snowflake};

/// A guild known only by id, as in READY's `guilds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnavailableGuild {
    /// The guild.
    pub id: Snowflake,
    /// Whether it is unavailable; READY's guilds all are.
    #[serde(default)]
    pub unavailable: bool,
}

/// GUILD_DELETE: either an outage (`unavailable: true`) or the bot leaving the guild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuildDelete {
    /// The guild.
    pub id: Snowflake,
    /// Set (true) during an outage; absent when the bot was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<bool>,
}

impl GuildDelete {
    /// Whether the guild is only unavailable (an outage), not left.
    pub fn is_outage(self) -> bool {
        self.unavailable == Some(true)
    }

    /// Whether the bot was removed from the guild.
    pub fn is_removal(self) -> bool {
        !self.is_outage()
    }
}

/// The fields of GUILD_CREATE the stack reads.
#[derive(Deserialize)]
struct Fields {
    id: Snowflake,
    #[serde(default)]
    unavailable: bool,
    #[serde(default)]
    member_count: Option<u64>,
    #[serde(default)]
    large: Option<bool>,
}

/// GUILD_CREATE: a guild became available, was lazily loaded after READY, or was joined.
///
/// The stack reads only the fields below; the whole guild is kept in [`GuildCreate::raw`] for the
/// caller to deserialize into its own type.
#[derive(Debug, Clone, PartialEq)]
pub struct GuildCreate {
    /// The guild.
    pub id: Snowflake,
    /// Whether the guild is still unavailable (during an outage GUILD_CREATE may carry only
    /// `{id, unavailable: true}`).
    pub unavailable: bool,
    /// Total members, when available.
    pub member_count: Option<u64>,
    /// Whether the guild is above the session's `large_threshold`.
    pub large: Option<bool>,
    /// The whole `d`.
    pub raw: RawJson,
}

impl GuildCreate {
    /// Reads a GUILD_CREATE `d`, keeping its text.
    pub fn from_json(json: &str) -> Result<Self, JsonError> {
        // serde_json skips the guild's large arrays at about twice sonic-rs's validating speed
        // (measured: docs/PERFORMANCE.md).
        let f: Fields = serde_json::from_str(json)?;
        Ok(Self {
            id: f.id,
            unavailable: f.unavailable,
            member_count: f.member_count,
            large: f.large,
            raw: RawJson::from_validated(json),
        })
    }
}

impl Serialize for GuildCreate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GuildCreate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <RawJson as Deserialize>::deserialize(deserializer)?;
        Self::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}
