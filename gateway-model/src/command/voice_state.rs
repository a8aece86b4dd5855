//! UPDATE_VOICE_STATE (op 4).

use serde::{Deserialize, Serialize};

use crate::Snowflake;

/// UPDATE_VOICE_STATE (op 4) data: join, move between, or leave a guild's voice channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateVoiceState {
    /// The guild.
    pub guild_id: Snowflake,
    /// The channel to join, or `None` to leave (sent as `null`).
    pub channel_id: Option<Snowflake>,
    /// Whether the bot mutes itself.
    pub self_mute: bool,
    /// Whether the bot deafens itself.
    pub self_deaf: bool,
}

impl UpdateVoiceState {
    /// Join (or move to) `channel_id`.
    pub const fn join(guild_id: Snowflake, channel_id: Snowflake) -> Self {
        Self {
            guild_id,
            channel_id: Some(channel_id),
            self_mute: false,
            self_deaf: false,
        }
    }

    /// Leave the guild's voice channel.
    pub const fn leave(guild_id: Snowflake) -> Self {
        Self {
            guild_id,
            channel_id: None,
            self_mute: false,
            self_deaf: false,
        }
    }
}
