//! REQUEST_SOUNDBOARD_SOUNDS (op 31) and REQUEST_CHANNEL_INFO (op 43).

use serde::{Deserialize, Serialize};

use crate::Snowflake;

/// REQUEST_SOUNDBOARD_SOUNDS (op 31) data: one SOUNDBOARD_SOUNDS dispatch answers per guild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSoundboardSounds {
    /// The guilds to list sounds for.
    pub guild_ids: Vec<Snowflake>,
}

/// A field that REQUEST_CHANNEL_INFO can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelInfoField {
    /// The voice channel status.
    Status,
    /// When the voice channel's current session started.
    VoiceStartTime,
}

/// REQUEST_CHANNEL_INFO (op 43) data: answered with a CHANNEL_INFO dispatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestChannelInfo {
    /// The guild.
    pub guild_id: Snowflake,
    /// The fields wanted.
    pub fields: Vec<ChannelInfoField>,
}
