//! Gateway intents: which groups of events a session receives.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

bitflags::bitflags! {
    /// The intents bitfield sent in IDENTIFY.
    ///
    /// All 21 documented bits are named. Unknown bits survive deserialization
    /// ([`Intents::from_bits_retain`]) so that a server can reject them with close code 4013.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Intents: u64 {
        /// Guild, role, channel, thread and stage events.
        const GUILDS = 1 << 0;
        /// Member add, update and remove. **Privileged.**
        const GUILD_MEMBERS = 1 << 1;
        /// Audit log entries and bans.
        const GUILD_MODERATION = 1 << 2;
        /// Emojis, stickers and soundboard sounds.
        const GUILD_EXPRESSIONS = 1 << 3;
        /// Integrations.
        const GUILD_INTEGRATIONS = 1 << 4;
        /// Webhooks.
        const GUILD_WEBHOOKS = 1 << 5;
        /// Invites.
        const GUILD_INVITES = 1 << 6;
        /// Voice states and voice channel effects.
        const GUILD_VOICE_STATES = 1 << 7;
        /// Presence updates. **Privileged.**
        const GUILD_PRESENCES = 1 << 8;
        /// Guild messages.
        const GUILD_MESSAGES = 1 << 9;
        /// Guild message reactions.
        const GUILD_MESSAGE_REACTIONS = 1 << 10;
        /// Guild typing indicators.
        const GUILD_MESSAGE_TYPING = 1 << 11;
        /// Direct messages.
        const DIRECT_MESSAGES = 1 << 12;
        /// Direct message reactions.
        const DIRECT_MESSAGE_REACTIONS = 1 << 13;
        /// Direct message typing indicators.
        const DIRECT_MESSAGE_TYPING = 1 << 14;
        /// Message content fields. **Privileged.** Gates no event of its own.
        const MESSAGE_CONTENT = 1 << 15;
        /// Scheduled events.
        const GUILD_SCHEDULED_EVENTS = 1 << 16;
        /// Auto moderation rules.
        const AUTO_MODERATION_CONFIGURATION = 1 << 20;
        /// Auto moderation actions.
        const AUTO_MODERATION_EXECUTION = 1 << 21;
        /// Poll votes in guilds.
        const GUILD_MESSAGE_POLLS = 1 << 24;
        /// Poll votes in direct messages.
        const DIRECT_MESSAGE_POLLS = 1 << 25;
    }
}

impl Intents {
    /// The intents an application must enable in the developer portal before it may ask for them
    /// (close code 4014 otherwise).
    pub const PRIVILEGED: Self = Self::GUILD_MEMBERS
        .union(Self::GUILD_PRESENCES)
        .union(Self::MESSAGE_CONTENT);

    /// Every documented intent that needs no approval.
    pub const NON_PRIVILEGED: Self = Self::all().difference(Self::PRIVILEGED);

    /// Whether any privileged intent is set.
    pub const fn is_privileged(self) -> bool {
        self.intersects(Self::PRIVILEGED)
    }

    /// Bits set that Discord does not document (a server answers them with 4013).
    pub const fn unknown_bits(self) -> u64 {
        self.bits() & !Self::all().bits()
    }
}

impl Serialize for Intents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.bits())
    }
}

impl<'de> Deserialize<'de> for Intents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(Self::from_bits_retain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_sums() {
        assert_eq!(Intents::all().iter().count(), 21);
        assert_eq!(Intents::all().bits(), 53_608_447);
        assert_eq!(Intents::NON_PRIVILEGED.bits(), 53_575_421);
        assert_eq!(Intents::PRIVILEGED.bits(), 2 | 256 | 32768);
    }

    #[test]
    fn unknown_bits_are_kept() {
        let i: Intents = sonic_rs::from_str(&(1u64 << 17 | 1).to_string()).unwrap();
        assert_eq!(i.unknown_bits(), 1 << 17);
        assert!(i.contains(Intents::GUILDS));
        assert_eq!(
            sonic_rs::to_string(&i).unwrap(),
            (1u64 << 17 | 1).to_string()
        );
    }
}
