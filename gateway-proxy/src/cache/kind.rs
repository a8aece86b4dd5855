//! The collections a guild holds, each with its key in GUILD_CREATE and the id its items are
//! kept by: one table.

/// One collection of a guild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// `channels`, by `id`.
    Channels,
    /// `threads`, by `id`.
    Threads,
    /// `roles`, by `id`.
    Roles,
    /// `members`, by `user.id`.
    Members,
    /// `presences`, by `user.id`.
    Presences,
    /// `voice_states`, by `user_id`.
    VoiceStates,
    /// `emojis`, by `id`.
    Emojis,
    /// `stickers`, by `id`.
    Stickers,
    /// `stage_instances`, by `id`.
    StageInstances,
    /// `guild_scheduled_events`, by `id`.
    ScheduledEvents,
    /// `soundboard_sounds`, by `sound_id`.
    SoundboardSounds,
}

/// Every kind, with its key and the path of its items' id.
const TABLE: &[(Kind, &str, &[&str])] = &[
    (Kind::Channels, "channels", &["id"]),
    (Kind::Threads, "threads", &["id"]),
    (Kind::Roles, "roles", &["id"]),
    (Kind::Members, "members", &["user", "id"]),
    (Kind::Presences, "presences", &["user", "id"]),
    (Kind::VoiceStates, "voice_states", &["user_id"]),
    (Kind::Emojis, "emojis", &["id"]),
    (Kind::Stickers, "stickers", &["id"]),
    (Kind::StageInstances, "stage_instances", &["id"]),
    (Kind::ScheduledEvents, "guild_scheduled_events", &["id"]),
    (Kind::SoundboardSounds, "soundboard_sounds", &["sound_id"]),
];

/// Every kind, in the table's order.
pub(super) const KINDS: &[Kind] = &[
    Kind::Channels,
    Kind::Threads,
    Kind::Roles,
    Kind::Members,
    Kind::Presences,
    Kind::VoiceStates,
    Kind::Emojis,
    Kind::Stickers,
    Kind::StageInstances,
    Kind::ScheduledEvents,
    Kind::SoundboardSounds,
];

impl Kind {
    fn row(self) -> &'static (Self, &'static str, &'static [&'static str]) {
        // Every kind has its row (a test checks it).
        TABLE
            .iter()
            .find(|(k, _, _)| *k == self)
            .unwrap_or(&TABLE[0])
    }

    /// Its key in GUILD_CREATE.
    pub fn key(self) -> &'static str {
        self.row().1
    }

    /// The kind kept under GUILD_CREATE key `key`.
    pub fn from_key(key: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, k, _)| *k == key)
            .map(|(kind, _, _)| *kind)
    }

    /// The id of one item's raw JSON.
    pub fn id_of(self, item: &str) -> Option<u64> {
        let value = sonic_rs::get_from_str(item, self.row().2).ok()?;
        super::guild::snowflake(&value)
    }

    /// The name of the cache option that keeps it (`members`, `voice_states`, …).
    pub fn name(self) -> &'static str {
        self.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row() {
        for kind in KINDS {
            assert_eq!(TABLE.iter().filter(|(k, _, _)| k == kind).count(), 1);
            assert_eq!(Kind::from_key(kind.key()), Some(*kind));
        }
        assert_eq!(KINDS.len(), TABLE.len());
    }

    #[test]
    fn ids_by_their_paths() {
        assert_eq!(
            Kind::Members.id_of(r#"{"user":{"id":"42"},"nick":null}"#),
            Some(42)
        );
        assert_eq!(Kind::VoiceStates.id_of(r#"{"user_id":"7"}"#), Some(7));
        assert_eq!(Kind::SoundboardSounds.id_of(r#"{"sound_id":"9"}"#), Some(9));
        assert_eq!(Kind::Channels.id_of(r#"{"name":"x"}"#), None);
    }
}
