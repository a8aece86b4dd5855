//! IDENTIFY (op 2): start a new session.

use serde::{Deserialize, Serialize};

use crate::{Intents, ShardId, Token, UpdatePresence};

/// The `large_threshold` of IDENTIFY: member count above which a guild is "large" and its offline
/// members are left out of GUILD_CREATE. Always within `50..=250`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct LargeThreshold(u8);

/// A `large_threshold` outside `50..=250`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("large_threshold {0} is outside 50..=250")]
pub struct LargeThresholdOutOfRange(pub u64);

impl LargeThreshold {
    /// The smallest value and Discord's default.
    pub const MIN: Self = Self(50);
    /// The largest value.
    pub const MAX: Self = Self(250);

    /// A threshold, if within `50..=250`.
    pub fn new(value: u64) -> Result<Self, LargeThresholdOutOfRange> {
        match u8::try_from(value) {
            Ok(v) if (50..=250).contains(&v) => Ok(Self(v)),
            _ => Err(LargeThresholdOutOfRange(value)),
        }
    }

    /// The value.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Default for LargeThreshold {
    fn default() -> Self {
        Self::MIN
    }
}

impl TryFrom<u8> for LargeThreshold {
    type Error = LargeThresholdOutOfRange;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::new(value.into())
    }
}

impl From<LargeThreshold> for u8 {
    fn from(t: LargeThreshold) -> Self {
        t.0
    }
}

/// The client's `properties` in IDENTIFY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionProperties {
    /// Operating system.
    pub os: String,
    /// Library name.
    pub browser: String,
    /// Library name.
    pub device: String,
}

impl Default for ConnectionProperties {
    /// This OS, and this library's name.
    fn default() -> Self {
        Self {
            os: std::env::consts::OS.to_owned(),
            browser: "gateway-rs".to_owned(),
            device: "gateway-rs".to_owned(),
        }
    }
}

/// IDENTIFY (op 2) data.
///
/// `compress` is always sent as `false`: this stack uses transport compression, which replaces
/// per-payload compression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::manual_non_exhaustive)] // `compress` is private so that it is always written false.
pub struct Identify {
    /// The bot token; serialized only here and in RESUME.
    #[serde(serialize_with = "crate::token::serialize")]
    pub token: Token,
    /// Client properties.
    pub properties: ConnectionProperties,
    #[serde(serialize_with = "always_false", skip_deserializing)]
    compress: (),
    /// Member count above which guilds are large.
    #[serde(default)]
    pub large_threshold: LargeThreshold,
    /// This session's shard; absent for an unsharded bot.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<ShardId>,
    /// Presence to start with.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub presence: Option<UpdatePresence>,
    /// Which events to receive.
    pub intents: Intents,
}

fn always_false<S: serde::Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(false)
}

impl Identify {
    /// IDENTIFY with default properties and threshold, no shard and no presence.
    pub fn new(token: Token, intents: Intents) -> Self {
        Self {
            token,
            properties: ConnectionProperties::default(),
            compress: (),
            large_threshold: LargeThreshold::default(),
            shard: None,
            presence: None,
            intents,
        }
    }

    /// Sets the shard.
    #[must_use]
    pub fn with_shard(mut self, shard: ShardId) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Sets the initial presence.
    #[must_use]
    pub fn with_presence(mut self, presence: UpdatePresence) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Sets the large threshold.
    #[must_use]
    pub fn with_large_threshold(mut self, threshold: LargeThreshold) -> Self {
        self.large_threshold = threshold;
        self
    }

    /// Sets the client properties.
    #[must_use]
    pub fn with_properties(mut self, properties: ConnectionProperties) -> Self {
        self.properties = properties;
        self
    }
}

/// RESUME (op 6) data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The bot token; serialized only here and in IDENTIFY.
    #[serde(serialize_with = "crate::token::serialize")]
    pub token: Token,
    /// The session to resume, from READY.
    pub session_id: String,
    /// The last sequence number received.
    pub seq: u64,
}
