//! The testkit's own answers, built from typed values: op 43's SOUNDBOARD_SOUNDS and op 31's
//! CHANNEL_INFO (empty lists), and the padding of an oversize payload. The protocol's envelopes
//! are `gateway_server::envelope`'s.

use serde::Serialize;

#[derive(Serialize)]
struct SoundboardSounds {
    guild_id: gateway_model::Snowflake,
    soundboard_sounds: [(); 0],
}

/// SOUNDBOARD_SOUNDS' `d` for a guild without sounds.
pub(crate) fn soundboard_sounds(guild_id: gateway_model::Snowflake) -> String {
    let d = SoundboardSounds {
        guild_id,
        soundboard_sounds: [],
    };
    serde_json::to_string(&d).unwrap_or_default()
}

#[derive(Serialize)]
struct ChannelInfo {
    guild_id: gateway_model::Snowflake,
    channels: [(); 0],
}

/// CHANNEL_INFO's `d` for a guild with no channel info.
pub(crate) fn channel_info(guild_id: gateway_model::Snowflake) -> String {
    let d = ChannelInfo {
        guild_id,
        channels: [],
    };
    serde_json::to_string(&d).unwrap_or_default()
}

#[derive(Serialize)]
struct Padding {
    padding: String,
}

/// A `d` of about `size` bytes (the oversize fault's).
pub(crate) fn padding(size: usize) -> String {
    serde_json::to_string(&Padding {
        padding: "x".repeat(size),
    })
    .unwrap_or_default()
}
