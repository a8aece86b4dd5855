//! What Discord answers to op 4 (voice state update): VOICE_STATE_UPDATE with the bot's new voice
//! state and, on a join or a move, VOICE_SERVER_UPDATE with a voice endpoint and token. The
//! endpoint is a name under `.localhost`, which resolves to loopback only: a bot that goes on to
//! open the voice websocket reaches nothing off this machine.

use gateway_model::{Snowflake, UpdateVoiceState};
use serde::Serialize;

use crate::payloads::UserJson;
use crate::world::World;

/// The voice endpoint every VOICE_SERVER_UPDATE names.
pub const VOICE_ENDPOINT: &str = "voice.testkit.localhost:443";

#[derive(Serialize)]
struct VoiceMemberJson<'a> {
    user: UserJson<'a>,
    roles: [(); 0],
    joined_at: &'a str,
    nick: Option<&'a str>,
    avatar: Option<&'a str>,
    premium_since: Option<&'a str>,
    deaf: bool,
    mute: bool,
    pending: bool,
    flags: u64,
}

#[derive(Serialize)]
struct VoiceStateJson<'a> {
    guild_id: Snowflake,
    channel_id: Option<Snowflake>,
    user_id: Snowflake,
    member: VoiceMemberJson<'a>,
    session_id: &'a str,
    deaf: bool,
    mute: bool,
    self_deaf: bool,
    self_mute: bool,
    self_video: bool,
    suppress: bool,
    request_to_speak_timestamp: Option<&'a str>,
}

#[derive(Serialize)]
struct VoiceServerJson<'a> {
    token: &'a str,
    guild_id: Snowflake,
    endpoint: &'a str,
}

/// The dispatches (name, `d`) that answer `update` in the gateway session `session_id`, in the
/// order Discord sends them.
pub(crate) fn answer(
    world: &World,
    session_id: &str,
    update: &UpdateVoiceState,
) -> Vec<(&'static str, String)> {
    let state = VoiceStateJson {
        guild_id: update.guild_id,
        channel_id: update.channel_id,
        user_id: world.bot_id,
        member: VoiceMemberJson {
            user: world.bot_user(),
            roles: [],
            joined_at: "2024-01-01T00:00:00.000000+00:00",
            nick: None,
            avatar: None,
            premium_since: None,
            deaf: false,
            mute: false,
            pending: false,
            flags: 0,
        },
        session_id,
        deaf: false,
        mute: false,
        self_deaf: update.self_deaf,
        self_mute: update.self_mute,
        self_video: false,
        suppress: false,
        request_to_speak_timestamp: None,
    };
    let mut out = vec![(
        "VOICE_STATE_UPDATE",
        serde_json::to_string(&state).unwrap_or_default(),
    )];
    if let Some(channel) = update.channel_id {
        let token = voice_token(update.guild_id, channel, session_id);
        let server = VoiceServerJson {
            token: &token,
            guild_id: update.guild_id,
            endpoint: VOICE_ENDPOINT,
        };
        out.push((
            "VOICE_SERVER_UPDATE",
            serde_json::to_string(&server).unwrap_or_default(),
        ));
    }
    out
}

/// A voice token: 16 hex digits, the same for the same guild, channel and session.
fn voice_token(guild: Snowflake, channel: Snowflake, session_id: &str) -> String {
    // FNV-1a: stable across runs and platforms, which std's hasher is not.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = guild
        .get()
        .to_le_bytes()
        .into_iter()
        .chain(channel.get().to_le_bytes());
    for b in bytes.chain(session_id.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorldConfig;

    #[test]
    fn a_join_gets_state_then_server_and_a_leave_only_state() {
        let world = World::new(WorldConfig::uniform(1, 1, 5));
        let guild = world.guilds()[0].id;
        let join = UpdateVoiceState::join(guild, Snowflake::new(77));
        let answer = answer(&world, "abc", &join);
        let names: Vec<_> = answer.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"]);
        let state: serde_json::Value = serde_json::from_str(&answer[0].1).unwrap();
        assert_eq!(state["channel_id"], "77");
        assert_eq!(state["session_id"], "abc");
        assert_eq!(state["user_id"], world.bot_id.to_string());
        let server: serde_json::Value = serde_json::from_str(&answer[1].1).unwrap();
        assert_eq!(server["endpoint"], VOICE_ENDPOINT);
        assert_eq!(server["token"].as_str().map(str::len), Some(16));
        let leave = UpdateVoiceState {
            channel_id: None,
            ..join
        };
        let answer = super::answer(&world, "abc", &leave);
        assert_eq!(answer.len(), 1);
        assert!(answer[0].1.contains(r#""channel_id":null"#));
    }
}
