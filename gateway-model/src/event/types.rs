//! Dispatch event names and the bit each one has in an [`EventTypes`] filter: one table for both.

macro_rules! event_table {
    ($($name:ident = $bit:literal => $wire:literal,)*) => {
        bitflags::bitflags! {
            /// A set of dispatch event types: a filter that lets a caller skip parsing what it does
            /// not want.
            ///
            /// Every dispatch name Discord documents has a bit; [`EventTypes::UNKNOWN`] stands for
            /// any name not in the table.
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            pub struct EventTypes: u128 {
                $(
                    #[doc = concat!("`", $wire, "`")]
                    const $name = 1 << $bit;
                )*
                /// Any dispatch whose name is not in the table.
                const UNKNOWN = 1 << 127;
            }
        }

        /// `(name, bit)` for every known dispatch.
        pub const EVENT_TYPES: &[(&str, EventTypes)] = &[$(($wire, EventTypes::$name)),*];

        impl EventTypes {
            /// The bit of a dispatch name; [`EventTypes::UNKNOWN`] for names not in the table.
            pub fn from_event_name(name: &str) -> Self {
                match name {
                    $($wire => Self::$name,)*
                    _ => Self::UNKNOWN,
                }
            }

            /// The table's own copy of this single event type's name (`None` for
            /// [`EventTypes::UNKNOWN`] or a set of several): naming an event with it allocates
            /// nothing, and a name already looked up is not looked up again.
            pub fn wire_name(self) -> Option<&'static str> {
                if self.bits().count_ones() != 1 {
                    return None;
                }
                match self.bits().trailing_zeros() {
                    $($bit => Some($wire),)*
                    _ => None,
                }
            }
        }
    };
}

event_table! {
    READY = 0 => "READY",
    RESUMED = 1 => "RESUMED",
    APPLICATION_COMMAND_PERMISSIONS_UPDATE = 2 => "APPLICATION_COMMAND_PERMISSIONS_UPDATE",
    AUTO_MODERATION_RULE_CREATE = 3 => "AUTO_MODERATION_RULE_CREATE",
    AUTO_MODERATION_RULE_UPDATE = 4 => "AUTO_MODERATION_RULE_UPDATE",
    AUTO_MODERATION_RULE_DELETE = 5 => "AUTO_MODERATION_RULE_DELETE",
    AUTO_MODERATION_ACTION_EXECUTION = 6 => "AUTO_MODERATION_ACTION_EXECUTION",
    CHANNEL_CREATE = 7 => "CHANNEL_CREATE",
    CHANNEL_UPDATE = 8 => "CHANNEL_UPDATE",
    CHANNEL_DELETE = 9 => "CHANNEL_DELETE",
    CHANNEL_INFO = 10 => "CHANNEL_INFO",
    CHANNEL_PINS_UPDATE = 11 => "CHANNEL_PINS_UPDATE",
    THREAD_CREATE = 12 => "THREAD_CREATE",
    THREAD_UPDATE = 13 => "THREAD_UPDATE",
    THREAD_DELETE = 14 => "THREAD_DELETE",
    THREAD_LIST_SYNC = 15 => "THREAD_LIST_SYNC",
    THREAD_MEMBER_UPDATE = 16 => "THREAD_MEMBER_UPDATE",
    THREAD_MEMBERS_UPDATE = 17 => "THREAD_MEMBERS_UPDATE",
    ENTITLEMENT_CREATE = 18 => "ENTITLEMENT_CREATE",
    ENTITLEMENT_UPDATE = 19 => "ENTITLEMENT_UPDATE",
    ENTITLEMENT_DELETE = 20 => "ENTITLEMENT_DELETE",
    GUILD_CREATE = 21 => "GUILD_CREATE",
    GUILD_UPDATE = 22 => "GUILD_UPDATE",
    GUILD_DELETE = 23 => "GUILD_DELETE",
    GUILD_AUDIT_LOG_ENTRY_CREATE = 24 => "GUILD_AUDIT_LOG_ENTRY_CREATE",
    GUILD_BAN_ADD = 25 => "GUILD_BAN_ADD",
    GUILD_BAN_REMOVE = 26 => "GUILD_BAN_REMOVE",
    GUILD_EMOJIS_UPDATE = 27 => "GUILD_EMOJIS_UPDATE",
    GUILD_STICKERS_UPDATE = 28 => "GUILD_STICKERS_UPDATE",
    GUILD_INTEGRATIONS_UPDATE = 29 => "GUILD_INTEGRATIONS_UPDATE",
    GUILD_MEMBER_ADD = 30 => "GUILD_MEMBER_ADD",
    GUILD_MEMBER_REMOVE = 31 => "GUILD_MEMBER_REMOVE",
    GUILD_MEMBER_UPDATE = 32 => "GUILD_MEMBER_UPDATE",
    GUILD_MEMBERS_CHUNK = 33 => "GUILD_MEMBERS_CHUNK",
    GUILD_ROLE_CREATE = 34 => "GUILD_ROLE_CREATE",
    GUILD_ROLE_UPDATE = 35 => "GUILD_ROLE_UPDATE",
    GUILD_ROLE_DELETE = 36 => "GUILD_ROLE_DELETE",
    GUILD_SCHEDULED_EVENT_CREATE = 37 => "GUILD_SCHEDULED_EVENT_CREATE",
    GUILD_SCHEDULED_EVENT_UPDATE = 38 => "GUILD_SCHEDULED_EVENT_UPDATE",
    GUILD_SCHEDULED_EVENT_DELETE = 39 => "GUILD_SCHEDULED_EVENT_DELETE",
    GUILD_SCHEDULED_EVENT_USER_ADD = 40 => "GUILD_SCHEDULED_EVENT_USER_ADD",
    GUILD_SCHEDULED_EVENT_USER_REMOVE = 41 => "GUILD_SCHEDULED_EVENT_USER_REMOVE",
    GUILD_SOUNDBOARD_SOUND_CREATE = 42 => "GUILD_SOUNDBOARD_SOUND_CREATE",
    GUILD_SOUNDBOARD_SOUND_UPDATE = 43 => "GUILD_SOUNDBOARD_SOUND_UPDATE",
    GUILD_SOUNDBOARD_SOUND_DELETE = 44 => "GUILD_SOUNDBOARD_SOUND_DELETE",
    GUILD_SOUNDBOARD_SOUNDS_UPDATE = 45 => "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
    SOUNDBOARD_SOUNDS = 46 => "SOUNDBOARD_SOUNDS",
    INTEGRATION_CREATE = 47 => "INTEGRATION_CREATE",
    INTEGRATION_UPDATE = 48 => "INTEGRATION_UPDATE",
    INTEGRATION_DELETE = 49 => "INTEGRATION_DELETE",
    INTERACTION_CREATE = 50 => "INTERACTION_CREATE",
    INVITE_CREATE = 51 => "INVITE_CREATE",
    INVITE_DELETE = 52 => "INVITE_DELETE",
    MESSAGE_CREATE = 53 => "MESSAGE_CREATE",
    MESSAGE_UPDATE = 54 => "MESSAGE_UPDATE",
    MESSAGE_DELETE = 55 => "MESSAGE_DELETE",
    MESSAGE_DELETE_BULK = 56 => "MESSAGE_DELETE_BULK",
    MESSAGE_REACTION_ADD = 57 => "MESSAGE_REACTION_ADD",
    MESSAGE_REACTION_REMOVE = 58 => "MESSAGE_REACTION_REMOVE",
    MESSAGE_REACTION_REMOVE_ALL = 59 => "MESSAGE_REACTION_REMOVE_ALL",
    MESSAGE_REACTION_REMOVE_EMOJI = 60 => "MESSAGE_REACTION_REMOVE_EMOJI",
    MESSAGE_POLL_VOTE_ADD = 61 => "MESSAGE_POLL_VOTE_ADD",
    MESSAGE_POLL_VOTE_REMOVE = 62 => "MESSAGE_POLL_VOTE_REMOVE",
    PRESENCE_UPDATE = 63 => "PRESENCE_UPDATE",
    RATE_LIMITED = 64 => "RATE_LIMITED",
    STAGE_INSTANCE_CREATE = 65 => "STAGE_INSTANCE_CREATE",
    STAGE_INSTANCE_UPDATE = 66 => "STAGE_INSTANCE_UPDATE",
    STAGE_INSTANCE_DELETE = 67 => "STAGE_INSTANCE_DELETE",
    SUBSCRIPTION_CREATE = 68 => "SUBSCRIPTION_CREATE",
    SUBSCRIPTION_UPDATE = 69 => "SUBSCRIPTION_UPDATE",
    SUBSCRIPTION_DELETE = 70 => "SUBSCRIPTION_DELETE",
    TYPING_START = 71 => "TYPING_START",
    USER_UPDATE = 72 => "USER_UPDATE",
    VOICE_CHANNEL_EFFECT_SEND = 73 => "VOICE_CHANNEL_EFFECT_SEND",
    VOICE_CHANNEL_STATUS_UPDATE = 74 => "VOICE_CHANNEL_STATUS_UPDATE",
    VOICE_CHANNEL_START_TIME_UPDATE = 75 => "VOICE_CHANNEL_START_TIME_UPDATE",
    VOICE_STATE_UPDATE = 76 => "VOICE_STATE_UPDATE",
    VOICE_SERVER_UPDATE = 77 => "VOICE_SERVER_UPDATE",
    WEBHOOKS_UPDATE = 78 => "WEBHOOKS_UPDATE",
}

impl EventTypes {
    /// The dispatches the gateway stack itself reads: session start and resume, guild
    /// availability, member chunks and rate limits.
    pub const STACK: Self = Self::READY
        .union(Self::RESUMED)
        .union(Self::GUILD_CREATE)
        .union(Self::GUILD_DELETE)
        .union(Self::GUILD_MEMBERS_CHUNK)
        .union(Self::RATE_LIMITED);
}

impl Default for EventTypes {
    /// Every event, known or not.
    fn default() -> Self {
        Self::all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_is_unique_and_every_name_maps_back() {
        let mut seen = EventTypes::empty();
        for &(name, bit) in EVENT_TYPES {
            assert_eq!(bit.bits().count_ones(), 1, "{name}");
            assert!(!seen.intersects(bit), "{name} shares a bit");
            assert!(!bit.intersects(EventTypes::UNKNOWN), "{name}");
            seen |= bit;
            assert_eq!(EventTypes::from_event_name(name), bit);
        }
        assert_eq!(seen | EventTypes::UNKNOWN, EventTypes::all());
        assert_eq!(
            EventTypes::from_event_name("SOMETHING_NEW"),
            EventTypes::UNKNOWN
        );
    }

    #[test]
    fn names_are_unique() {
        for (i, (a, _)) in EVENT_TYPES.iter().enumerate() {
            assert!(EVENT_TYPES[i + 1..].iter().all(|(b, _)| a != b), "{a}");
        }
    }
}
