//! A shard's guilds as raw JSON, kept current by the dispatches that change them, so that a
//! client that identifies gets each guild's GUILD_CREATE as Discord would send it now.
//!
//! `UPDATES` is the policy: which dispatch changes which collection, and how. Items keep the
//! JSON Discord sent for them (`guild_id` and a voice state's `member` taken out, as
//! GUILD_CREATE lists them); partial updates (GUILD_MEMBER_UPDATE, PRESENCE_UPDATE) are merged
//! over the cached item field by field.

mod guild;
pub(crate) mod json;
mod kind;

use std::collections::BTreeMap;

pub use guild::{CacheError, Guild, Items, kinds};
pub use kind::Kind;

/// Which collections are cached. A collection not cached goes out as an empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    skip: Vec<Kind>,
}

impl Default for CacheConfig {
    /// Everything.
    fn default() -> Self {
        Self { skip: Vec::new() }
    }
}

impl CacheConfig {
    /// Everything but `kinds`.
    pub fn without(kinds: impl IntoIterator<Item = Kind>) -> Self {
        Self {
            skip: kinds.into_iter().collect(),
        }
    }

    /// Whether `kind` is cached.
    pub fn keeps(&self, kind: Kind) -> bool {
        !self.skip.contains(&kind)
    }
}

/// What a dispatch does to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Update {
    /// GUILD_CREATE: the guild, whole.
    Create,
    /// GUILD_UPDATE: its top-level fields (and the collections it lists) replaced.
    Guild,
    /// GUILD_DELETE: gone, or (`unavailable`) in an outage.
    Delete,
    /// The item in `d` (or in `d[field]`) added or replaced.
    Upsert(Kind, Option<&'static str>),
    /// The item whose id is at this path of `d` removed.
    Remove(Kind, &'static [&'static str]),
    /// The whole collection replaced by `d[field]`.
    Replace(Kind, &'static str),
    /// GUILD_MEMBER_ADD: a member, and `member_count` up.
    AddMember,
    /// GUILD_MEMBER_UPDATE: merged over the member.
    MergeMember,
    /// GUILD_MEMBER_REMOVE: the member and its presence gone, `member_count` down.
    RemoveMember,
    /// GUILD_MEMBERS_CHUNK: members and presences added.
    Chunk,
    /// PRESENCE_UPDATE: merged over the presence (offline removes it); the user's fields merged
    /// over the member's user.
    Presence,
    /// VOICE_STATE_UPDATE: kept, or removed when it leaves (`channel_id` null).
    Voice,
    /// THREAD_LIST_SYNC: the threads of the channels it names (or all) replaced.
    ThreadSync,
}

/// Every dispatch that changes the cache.
const UPDATES: &[(&str, Update)] = &[
    ("GUILD_CREATE", Update::Create),
    ("GUILD_UPDATE", Update::Guild),
    ("GUILD_DELETE", Update::Delete),
    ("CHANNEL_CREATE", Update::Upsert(Kind::Channels, None)),
    ("CHANNEL_UPDATE", Update::Upsert(Kind::Channels, None)),
    ("CHANNEL_DELETE", Update::Remove(Kind::Channels, &["id"])),
    ("THREAD_CREATE", Update::Upsert(Kind::Threads, None)),
    ("THREAD_UPDATE", Update::Upsert(Kind::Threads, None)),
    ("THREAD_DELETE", Update::Remove(Kind::Threads, &["id"])),
    ("THREAD_LIST_SYNC", Update::ThreadSync),
    (
        "GUILD_ROLE_CREATE",
        Update::Upsert(Kind::Roles, Some("role")),
    ),
    (
        "GUILD_ROLE_UPDATE",
        Update::Upsert(Kind::Roles, Some("role")),
    ),
    (
        "GUILD_ROLE_DELETE",
        Update::Remove(Kind::Roles, &["role_id"]),
    ),
    ("GUILD_MEMBER_ADD", Update::AddMember),
    ("GUILD_MEMBER_UPDATE", Update::MergeMember),
    ("GUILD_MEMBER_REMOVE", Update::RemoveMember),
    ("GUILD_MEMBERS_CHUNK", Update::Chunk),
    ("PRESENCE_UPDATE", Update::Presence),
    ("VOICE_STATE_UPDATE", Update::Voice),
    (
        "GUILD_EMOJIS_UPDATE",
        Update::Replace(Kind::Emojis, "emojis"),
    ),
    (
        "GUILD_STICKERS_UPDATE",
        Update::Replace(Kind::Stickers, "stickers"),
    ),
    (
        "STAGE_INSTANCE_CREATE",
        Update::Upsert(Kind::StageInstances, None),
    ),
    (
        "STAGE_INSTANCE_UPDATE",
        Update::Upsert(Kind::StageInstances, None),
    ),
    (
        "STAGE_INSTANCE_DELETE",
        Update::Remove(Kind::StageInstances, &["id"]),
    ),
    (
        "GUILD_SCHEDULED_EVENT_CREATE",
        Update::Upsert(Kind::ScheduledEvents, None),
    ),
    (
        "GUILD_SCHEDULED_EVENT_UPDATE",
        Update::Upsert(Kind::ScheduledEvents, None),
    ),
    (
        "GUILD_SCHEDULED_EVENT_DELETE",
        Update::Remove(Kind::ScheduledEvents, &["id"]),
    ),
    (
        "GUILD_SOUNDBOARD_SOUND_CREATE",
        Update::Upsert(Kind::SoundboardSounds, None),
    ),
    (
        "GUILD_SOUNDBOARD_SOUND_UPDATE",
        Update::Upsert(Kind::SoundboardSounds, None),
    ),
    (
        "GUILD_SOUNDBOARD_SOUND_DELETE",
        Update::Remove(Kind::SoundboardSounds, &["sound_id"]),
    ),
    (
        "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
        Update::Replace(Kind::SoundboardSounds, "soundboard_sounds"),
    ),
];

/// The fields an item of `kind` carries in an event but not in GUILD_CREATE.
fn event_only(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Channels | Kind::Threads | Kind::Members | Kind::Presences => &["guild_id"],
        Kind::VoiceStates => &["guild_id", "member"],
        _ => &[],
    }
}

/// One guild of the shard: its JSON, or an outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Known from READY or GUILD_DELETE `unavailable`, not (or no longer) available.
    Unavailable,
    /// Available, as raw JSON.
    Available(Box<Guild>),
}

/// A shard's guilds.
#[derive(Debug, Default)]
pub struct GuildCache {
    config: CacheConfig,
    guilds: BTreeMap<u64, Slot>,
}

impl GuildCache {
    /// An empty cache keeping what `config` says.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            guilds: BTreeMap::new(),
        }
    }

    /// A new upstream session listed these guilds (READY): each becomes unavailable until its
    /// GUILD_CREATE, and guilds it does not list are gone. The ids gone, for GUILD_DELETE.
    pub fn reset(&mut self, guilds: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let listed: BTreeMap<u64, Slot> = guilds
            .into_iter()
            .map(|id| (id, Slot::Unavailable))
            .collect();
        let gone = self
            .guilds
            .keys()
            .filter(|id| !listed.contains_key(id))
            .copied()
            .collect();
        let mut old = std::mem::take(&mut self.guilds);
        // A guild still listed keeps its JSON until its new GUILD_CREATE replaces it.
        self.guilds = listed
            .into_keys()
            .map(|id| (id, old.remove(&id).unwrap_or(Slot::Unavailable)))
            .collect();
        gone
    }

    /// Applies dispatch `name` with `d` = `data`. Dispatches that change nothing cached are
    /// ignored; one that does but cannot be read is an error (the cache is left as it was).
    /// `Some` when the guild's GUILD_CREATE now holds all the dispatch says (a client sent that
    /// GUILD_CREATE afterwards needs no copy of the dispatch), and for which sessions.
    pub fn apply(&mut self, name: &str, data: &str) -> Result<Option<Held>, CacheError> {
        let guild_id = json::str_field(data, &["guild_id"]).and_then(|s| s.parse().ok());
        self.apply_in(name, data, guild_id)
    }

    /// [`apply`](Self::apply), with the dispatch's `guild_id` read by the caller, which
    /// needs it too (the proxy routes by it): `d` is scanned for it once.
    pub fn apply_in(
        &mut self,
        name: &str,
        data: &str,
        guild_id: Option<u64>,
    ) -> Result<Option<Held>, CacheError> {
        let whole = |guild| Held {
            guild,
            with_presences: false,
        };
        let Some((_, update)) = UPDATES.iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        match (*update, guild_id) {
            (Update::Create, _) => self.create(data).map(|g| Some(whole(g))),
            (Update::Guild, _) => self.guild_update(data).map(|g| Some(whole(g))),
            (Update::Delete, _) => Ok(self.delete(data).map(whole)),
            (update, Some(guild)) => match self.guilds.get_mut(&guild) {
                Some(Slot::Available(g)) => {
                    apply_to(g, &self.config, update, data)?;
                    Ok(holds(update, &self.config).map(|with_presences| Held {
                        guild,
                        with_presences,
                    }))
                }
                _ => Ok(None),
            },
            // Not in a guild (a DM channel, a presence without one): nothing cached.
            (_, None) => Ok(None),
        }
    }

    /// The guilds, in id order.
    pub fn guilds(&self) -> impl Iterator<Item = (u64, &Slot)> {
        self.guilds.iter().map(|(id, slot)| (*id, slot))
    }

    /// Guild `id`.
    pub fn guild(&self, id: u64) -> Option<&Slot> {
        self.guilds.get(&id)
    }

    /// Bytes of JSON held.
    pub fn bytes(&self) -> usize {
        self.guilds
            .values()
            .map(|s| match s {
                Slot::Available(g) => g.bytes(),
                Slot::Unavailable => 0,
            })
            .sum()
    }

    /// Guilds known.
    pub fn len(&self) -> usize {
        self.guilds.len()
    }

    /// Whether no guild is known.
    pub fn is_empty(&self) -> bool {
        self.guilds.is_empty()
    }

    fn create(&mut self, data: &str) -> Result<u64, CacheError> {
        let id = guild_id_of(data)?;
        if json::field(data, "unavailable") == Some("true") {
            self.guilds.insert(id, Slot::Unavailable);
            return Ok(id);
        }
        let config = &self.config;
        let guild = Guild::from_json(data, |k| config.keeps(k))?;
        self.guilds.insert(id, Slot::Available(Box::new(guild)));
        Ok(id)
    }

    fn guild_update(&mut self, data: &str) -> Result<u64, CacheError> {
        let id = guild_id_of(data)?;
        let Some(Slot::Available(guild)) = self.guilds.get_mut(&id) else {
            return Ok(id);
        };
        let fields = json::fields(data).ok_or_else(|| not_object("GUILD_UPDATE"))?;
        for (key, value) in fields {
            match Kind::from_key(&key) {
                Some(kind) if self.config.keeps(kind) => guild.replace_items(kind, value)?,
                Some(_) => {}
                None => guild.set_field(&key, value),
            }
        }
        Ok(id)
    }

    fn delete(&mut self, data: &str) -> Option<u64> {
        let id = guild_id_of(data).ok()?;
        if json::field(data, "unavailable") == Some("true") {
            self.guilds.insert(id, Slot::Unavailable);
        } else {
            self.guilds.remove(&id);
        }
        Some(id)
    }
}

fn not_object(what: &'static str) -> CacheError {
    CacheError::NotAnObject {
        what,
        detail: "expected an object".to_owned(),
    }
}

/// A guild's own id (`id`).
fn guild_id_of(data: &str) -> Result<u64, CacheError> {
    json::str_field(data, &["id"])
        .and_then(|s| s.parse().ok())
        .ok_or(CacheError::NoId { kind: "guild" })
}

/// A guild whose cached GUILD_CREATE holds all a dispatch said, once applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The guild.
    pub guild: u64,
    /// Only for sessions with GUILD_PRESENCES: the others get a GUILD_CREATE without members
    /// and presences (see [`Guild::to_json_for`]), which does not hold a member's change.
    pub with_presences: bool,
}

/// Whether, once `update` is applied, a guild's GUILD_CREATE holds all it said, and for whom
/// (`Some(true)`: sessions with GUILD_PRESENCES only). What it changed must be kept, whole: a
/// VOICE_STATE_UPDATE's `member` and a THREAD_LIST_SYNC's `members` are not, so those are
/// never held; a member count kept without the member is not either.
fn holds(update: Update, config: &CacheConfig) -> Option<bool> {
    let keeps = |kind| config.keeps(kind);
    let member_kind = |kind| matches!(kind, Kind::Members | Kind::Presences);
    match update {
        Update::Upsert(kind, _) | Update::Remove(kind, _) | Update::Replace(kind, _) => {
            keeps(kind).then_some(member_kind(kind))
        }
        Update::Create | Update::Guild | Update::Delete => Some(false),
        Update::AddMember | Update::RemoveMember | Update::MergeMember => {
            keeps(Kind::Members).then_some(true)
        }
        Update::Chunk => (keeps(Kind::Members) && keeps(Kind::Presences)).then_some(true),
        Update::Presence => keeps(Kind::Presences).then_some(true),
        Update::Voice | Update::ThreadSync => None,
    }
}

fn apply_to(
    guild: &mut Guild,
    config: &CacheConfig,
    update: Update,
    data: &str,
) -> Result<(), CacheError> {
    let keeps = |kind| config.keeps(kind);
    match update {
        Update::Upsert(kind, field) if keeps(kind) => {
            let item = match field {
                Some(f) => json::field(data, f).ok_or_else(|| not_object(kind.key()))?,
                None => data,
            };
            upsert(guild, kind, item)
        }
        Update::Remove(kind, path) if keeps(kind) => {
            let id = id_at(data, path).ok_or(CacheError::NoId { kind: kind.key() })?;
            guild.items_mut(kind).shift_remove(&id);
            Ok(())
        }
        Update::Replace(kind, field) if keeps(kind) => {
            let items = json::field(data, field).ok_or_else(|| not_object(kind.key()))?;
            guild.replace_items(kind, items)
        }
        Update::AddMember => {
            count_members(guild, 1);
            if keeps(Kind::Members) {
                upsert(guild, Kind::Members, data)?;
            }
            Ok(())
        }
        Update::MergeMember if keeps(Kind::Members) => merge_into(guild, Kind::Members, data),
        Update::RemoveMember => {
            count_members(guild, -1);
            let id = id_at(data, &["user", "id"]).ok_or(CacheError::NoId { kind: "members" })?;
            guild.items_mut(Kind::Members).shift_remove(&id);
            if keeps(Kind::Presences) {
                guild.items_mut(Kind::Presences).shift_remove(&id);
            }
            Ok(())
        }
        Update::Chunk => chunk(guild, config, data),
        Update::Presence => presence(guild, config, data),
        Update::Voice if keeps(Kind::VoiceStates) => {
            if json::field(data, "channel_id") == Some("null") {
                let id = id_at(data, &["user_id"]).ok_or(CacheError::NoId {
                    kind: "voice_states",
                })?;
                guild.items_mut(Kind::VoiceStates).shift_remove(&id);
                Ok(())
            } else {
                upsert(guild, Kind::VoiceStates, data)
            }
        }
        Update::ThreadSync if keeps(Kind::Threads) => thread_sync(guild, data),
        _ => Ok(()),
    }
}

/// The snowflake at `path` of `data`.
fn id_at(data: &str, path: &[&str]) -> Option<u64> {
    json::str_field(data, path).and_then(|s| s.parse().ok())
}

/// Adds or replaces an item, as GUILD_CREATE lists it.
fn upsert(guild: &mut Guild, kind: Kind, item: &str) -> Result<(), CacheError> {
    let id = kind
        .id_of(item)
        .ok_or(CacheError::NoId { kind: kind.key() })?;
    let item = json::without(item, event_only(kind)).ok_or_else(|| not_object(kind.key()))?;
    guild.items_mut(kind).insert(id, item.into());
    Ok(())
}

/// Merges a partial item over the cached one (or adds it).
fn merge_into(guild: &mut Guild, kind: Kind, item: &str) -> Result<(), CacheError> {
    let id = kind
        .id_of(item)
        .ok_or(CacheError::NoId { kind: kind.key() })?;
    let items = guild.items_mut(kind);
    let merged = match items.get(&id) {
        Some(old) => json::merge(old, item, event_only(kind)),
        None => json::without(item, event_only(kind)),
    };
    let merged = merged.ok_or_else(|| not_object(kind.key()))?;
    items.insert(id, merged.into());
    Ok(())
}

fn count_members(guild: &mut Guild, by: i64) {
    if let Some(count) = guild
        .field("member_count")
        .and_then(|c| c.parse::<i64>().ok())
    {
        guild.set_field("member_count", &(count + by).max(0).to_string());
    }
}

fn chunk(guild: &mut Guild, config: &CacheConfig, data: &str) -> Result<(), CacheError> {
    for (kind, key) in [(Kind::Members, "members"), (Kind::Presences, "presences")] {
        if !config.keeps(kind) {
            continue;
        }
        let Some(items) = json::field(data, key) else {
            continue;
        };
        for item in guild::items_of(kind, items)?.values() {
            upsert(guild, kind, item)?;
        }
    }
    Ok(())
}

fn presence(guild: &mut Guild, config: &CacheConfig, data: &str) -> Result<(), CacheError> {
    let id = Kind::Presences
        .id_of(data)
        .ok_or(CacheError::NoId { kind: "presences" })?;
    if config.keeps(Kind::Members)
        && let Some(user) = json::field(data, "user")
        && let Some(member) = guild.items(Kind::Members).and_then(|m| m.get(&id))
        && let Some(old_user) = json::field(member, "user")
        && let Some(merged_user) = json::merge(old_user, user, &[])
        && let Some(fields) = json::fields(member)
    {
        let member = json::object(fields.iter().map(|(k, v)| {
            (
                k.as_str(),
                if k == "user" {
                    merged_user.as_str()
                } else {
                    *v
                },
            )
        }));
        guild.items_mut(Kind::Members).insert(id, member.into());
    }
    if !config.keeps(Kind::Presences) {
        return Ok(());
    }
    if json::str_field(data, &["status"]).as_deref() == Some("offline") {
        guild.items_mut(Kind::Presences).shift_remove(&id);
        return Ok(());
    }
    // A presence in GUILD_CREATE names its user by id alone.
    let user = format!(r#"{{"id":"{id}"}}"#);
    let fields = json::fields(data).ok_or_else(|| not_object("presences"))?;
    let item = json::object(
        fields
            .iter()
            .filter(|(k, _)| k != "guild_id")
            .map(|(k, v)| (k.as_str(), if k == "user" { user.as_str() } else { *v })),
    );
    let items = guild.items_mut(Kind::Presences);
    let merged = match items.get(&id) {
        Some(old) => json::merge(old, &item, &[]).unwrap_or(item),
        None => item,
    };
    items.insert(id, merged.into());
    Ok(())
}

fn thread_sync(guild: &mut Guild, data: &str) -> Result<(), CacheError> {
    // Unreadable ids would drop threads the sync does not cover: the dispatch is refused whole.
    let channels: Option<Vec<u64>> = match json::field(data, "channel_ids") {
        None => None,
        Some(ids) => Some(
            sonic_rs::from_str::<Vec<String>>(ids)
                .map_err(|e| guild::not_object("THREAD_LIST_SYNC channel_ids", &e))?
                .iter()
                .map(|s| {
                    s.parse().map_err(|_| CacheError::NotAnObject {
                        what: "THREAD_LIST_SYNC channel_ids",
                        detail: format!("{s:?} is not a snowflake"),
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let threads = guild.items_mut(Kind::Threads);
    threads.retain(|_, thread| {
        let parent = json::str_field(thread, &["parent_id"]).and_then(|s| s.parse().ok());
        match (&channels, parent) {
            (None, _) => false,
            (Some(ids), Some(p)) => !ids.contains(&p),
            (Some(_), None) => true,
        }
    });
    if let Some(list) = json::field(data, "threads") {
        for item in guild::items_of(Kind::Threads, list)?.values() {
            upsert(guild, Kind::Threads, item)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
