//! Which intents deliver which dispatch, as Discord documents it: one table. A client gets a
//! dispatch only if its IDENTIFY asked for one of the intents the table names for it (the guild
//! intent for a dispatch with a `guild_id`, the direct-message one for a dispatch without).
//! Dispatches the table does not name (READY, INTERACTION_CREATE, USER_UPDATE, entitlements,
//! subscriptions, …) go to every client, as Discord sends them whatever the intents.

use gateway_model::Intents;

/// `(event, the intent in a guild, the intent outside one)`.
const TABLE: &[(&str, Intents, Intents)] = {
    const G: Intents = Intents::GUILDS;
    const M: Intents = Intents::GUILD_MEMBERS;
    const MOD: Intents = Intents::GUILD_MODERATION;
    const EX: Intents = Intents::GUILD_EXPRESSIONS;
    const INT: Intents = Intents::GUILD_INTEGRATIONS;
    const V: Intents = Intents::GUILD_VOICE_STATES;
    const P: Intents = Intents::GUILD_PRESENCES;
    const MSG: Intents = Intents::GUILD_MESSAGES;
    const DM: Intents = Intents::DIRECT_MESSAGES;
    const R: Intents = Intents::GUILD_MESSAGE_REACTIONS;
    const DR: Intents = Intents::DIRECT_MESSAGE_REACTIONS;
    const T: Intents = Intents::GUILD_MESSAGE_TYPING;
    const DT: Intents = Intents::DIRECT_MESSAGE_TYPING;
    const SE: Intents = Intents::GUILD_SCHEDULED_EVENTS;
    const AC: Intents = Intents::AUTO_MODERATION_CONFIGURATION;
    const AE: Intents = Intents::AUTO_MODERATION_EXECUTION;
    const PO: Intents = Intents::GUILD_MESSAGE_POLLS;
    const DPO: Intents = Intents::DIRECT_MESSAGE_POLLS;
    &[
        ("GUILD_CREATE", G, G),
        ("GUILD_UPDATE", G, G),
        ("GUILD_DELETE", G, G),
        ("GUILD_ROLE_CREATE", G, G),
        ("GUILD_ROLE_UPDATE", G, G),
        ("GUILD_ROLE_DELETE", G, G),
        ("CHANNEL_CREATE", G, G),
        ("CHANNEL_UPDATE", G, G),
        ("CHANNEL_DELETE", G, G),
        ("CHANNEL_PINS_UPDATE", G, DM),
        ("THREAD_CREATE", G, G),
        ("THREAD_UPDATE", G, G),
        ("THREAD_DELETE", G, G),
        ("THREAD_LIST_SYNC", G, G),
        ("THREAD_MEMBER_UPDATE", G, G),
        ("THREAD_MEMBERS_UPDATE", G.union(M), G.union(M)),
        ("STAGE_INSTANCE_CREATE", G, G),
        ("STAGE_INSTANCE_UPDATE", G, G),
        ("STAGE_INSTANCE_DELETE", G, G),
        ("VOICE_CHANNEL_STATUS_UPDATE", G, G),
        ("VOICE_CHANNEL_START_TIME_UPDATE", G, G),
        ("GUILD_MEMBER_ADD", M, M),
        ("GUILD_MEMBER_UPDATE", M, M),
        ("GUILD_MEMBER_REMOVE", M, M),
        ("GUILD_AUDIT_LOG_ENTRY_CREATE", MOD, MOD),
        ("GUILD_BAN_ADD", MOD, MOD),
        ("GUILD_BAN_REMOVE", MOD, MOD),
        ("GUILD_EMOJIS_UPDATE", EX, EX),
        ("GUILD_STICKERS_UPDATE", EX, EX),
        ("GUILD_SOUNDBOARD_SOUND_CREATE", EX, EX),
        ("GUILD_SOUNDBOARD_SOUND_UPDATE", EX, EX),
        ("GUILD_SOUNDBOARD_SOUND_DELETE", EX, EX),
        ("GUILD_SOUNDBOARD_SOUNDS_UPDATE", EX, EX),
        ("GUILD_INTEGRATIONS_UPDATE", INT, INT),
        ("INTEGRATION_CREATE", INT, INT),
        ("INTEGRATION_UPDATE", INT, INT),
        ("INTEGRATION_DELETE", INT, INT),
        (
            "WEBHOOKS_UPDATE",
            Intents::GUILD_WEBHOOKS,
            Intents::GUILD_WEBHOOKS,
        ),
        (
            "INVITE_CREATE",
            Intents::GUILD_INVITES,
            Intents::GUILD_INVITES,
        ),
        (
            "INVITE_DELETE",
            Intents::GUILD_INVITES,
            Intents::GUILD_INVITES,
        ),
        ("VOICE_CHANNEL_EFFECT_SEND", V, V),
        ("VOICE_STATE_UPDATE", V, V),
        ("PRESENCE_UPDATE", P, P),
        ("MESSAGE_CREATE", MSG, DM),
        ("MESSAGE_UPDATE", MSG, DM),
        ("MESSAGE_DELETE", MSG, DM),
        ("MESSAGE_DELETE_BULK", MSG, MSG),
        ("MESSAGE_REACTION_ADD", R, DR),
        ("MESSAGE_REACTION_REMOVE", R, DR),
        ("MESSAGE_REACTION_REMOVE_ALL", R, DR),
        ("MESSAGE_REACTION_REMOVE_EMOJI", R, DR),
        ("TYPING_START", T, DT),
        ("GUILD_SCHEDULED_EVENT_CREATE", SE, SE),
        ("GUILD_SCHEDULED_EVENT_UPDATE", SE, SE),
        ("GUILD_SCHEDULED_EVENT_DELETE", SE, SE),
        ("GUILD_SCHEDULED_EVENT_USER_ADD", SE, SE),
        ("GUILD_SCHEDULED_EVENT_USER_REMOVE", SE, SE),
        ("AUTO_MODERATION_RULE_CREATE", AC, AC),
        ("AUTO_MODERATION_RULE_UPDATE", AC, AC),
        ("AUTO_MODERATION_RULE_DELETE", AC, AC),
        ("AUTO_MODERATION_ACTION_EXECUTION", AE, AE),
        ("MESSAGE_POLL_VOTE_ADD", PO, DPO),
        ("MESSAGE_POLL_VOTE_REMOVE", PO, DPO),
    ]
};

/// The intents of which a client needs one to get dispatch `name` (in a guild when
/// `in_guild`); empty when every client gets it.
pub fn required(name: &str, in_guild: bool) -> Intents {
    TABLE
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or(
            Intents::empty(),
            |(_, guild, dm)| if in_guild { *guild } else { *dm },
        )
}

/// Whether a client that identified with `intents` gets a dispatch that needs `required`.
pub fn delivers(intents: Intents, required: Intents) -> bool {
    required.is_empty() || intents.intersects(required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_where_they_were_sent() {
        assert_eq!(required("MESSAGE_CREATE", true), Intents::GUILD_MESSAGES);
        assert_eq!(required("MESSAGE_CREATE", false), Intents::DIRECT_MESSAGES);
        assert!(required("INTERACTION_CREATE", true).is_empty());
        assert!(delivers(
            Intents::GUILD_MESSAGES,
            required("MESSAGE_CREATE", true)
        ));
        assert!(!delivers(Intents::GUILDS, required("MESSAGE_CREATE", true)));
        assert!(delivers(Intents::empty(), required("USER_UPDATE", false)));
    }

    #[test]
    fn every_event_is_named_once() {
        for (i, (name, _, _)) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|(n, _, _)| n != name),
                "{name} twice"
            );
        }
    }
}
