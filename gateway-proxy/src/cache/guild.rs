//! One guild as raw JSON: its top-level fields as Discord sent them, in their order, and its
//! collections (channels, members, …) as ordered maps of each item's own JSON by id. Nothing is
//! read into a model, so no field a model lacks is lost.

use gateway_model::Intents;
use indexmap::IndexMap;
use sonic_rs::JsonValueTrait;

use super::kind::{KINDS, Kind};

/// Why a guild's JSON could not be cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Not a JSON object, or broken JSON.
    #[error("{what}: not a JSON object ({detail})")]
    NotAnObject {
        /// What was read.
        what: &'static str,
        /// The parser's words.
        detail: String,
    },
    /// An item without the id it is kept by.
    #[error("an item of {kind} without its id")]
    NoId {
        /// The collection.
        kind: &'static str,
    },
}

/// One part of the guild's JSON, in the order Discord sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// A field and its raw value.
    Field(Box<str>, Box<str>),
    /// A collection, kept in [`Guild::collections`].
    Collection(Kind),
}

/// A guild's items of one kind, by id, in the order they came.
pub type Items = IndexMap<u64, Box<str>>;

/// One available guild, as raw JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Guild {
    parts: Vec<Part>,
    collections: Vec<(Kind, Items)>,
}

impl Guild {
    /// A guild from GUILD_CREATE's `d`, keeping the collections `keep` says (the others are
    /// sent as empty lists).
    pub fn from_json(json: &str, keep: impl Fn(Kind) -> bool) -> Result<Self, CacheError> {
        let mut guild = Self::default();
        for item in sonic_rs::to_object_iter(json) {
            let (key, value) = item.map_err(|e| not_object("GUILD_CREATE", &e))?;
            match Kind::from_key(&key) {
                Some(kind) => {
                    guild.parts.push(Part::Collection(kind));
                    let items = if keep(kind) {
                        items_of(kind, value.as_raw_str())?
                    } else {
                        Items::new()
                    };
                    guild.collections.push((kind, items));
                }
                None => guild
                    .parts
                    .push(Part::Field(key.as_ref().into(), value.as_raw_str().into())),
            }
        }
        Ok(guild)
    }

    /// The guild as GUILD_CREATE's `d`.
    pub fn to_json(&self) -> String {
        self.write(|_, _| true)
    }

    /// The guild as GUILD_CREATE's `d` for a session with `intents`, shaped as Discord shapes it:
    /// without GUILD_PRESENCES there are no presences, and of the members only the bot itself
    /// (user `bot`) and those in a voice channel.
    pub fn to_json_for(&self, intents: Intents, bot: Option<u64>) -> String {
        if intents.contains(Intents::GUILD_PRESENCES) {
            return self.to_json();
        }
        let voice = self.items(Kind::VoiceStates);
        self.write(|kind, id| match kind {
            Kind::Presences => false,
            Kind::Members => Some(id) == bot || voice.is_some_and(|v| v.contains_key(&id)),
            _ => true,
        })
    }

    /// The guild's JSON with the items `keep` says, by kind and id.
    fn write(&self, keep: impl Fn(Kind, u64) -> bool) -> String {
        let mut out = String::with_capacity(self.bytes() + 64);
        out.push('{');
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match part {
                Part::Field(key, value) => {
                    push_key(&mut out, key);
                    out.push_str(value);
                }
                Part::Collection(kind) => {
                    push_key(&mut out, kind.key());
                    out.push('[');
                    let items = self.items(*kind).into_iter().flat_map(|i| i.iter());
                    let kept = items
                        .filter(|(id, _)| keep(*kind, **id))
                        .map(|(_, item)| item);
                    for (j, item) in kept.enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        out.push_str(item);
                    }
                    out.push(']');
                }
            }
        }
        out.push('}');
        out
    }

    /// The raw value of top-level field `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.parts.iter().find_map(|p| match p {
            Part::Field(k, v) if &**k == key => Some(&**v),
            _ => None,
        })
    }

    /// Sets top-level field `key` to the raw JSON `value` (added at the end if new).
    pub fn set_field(&mut self, key: &str, value: &str) {
        for part in &mut self.parts {
            if let Part::Field(k, v) = part
                && &**k == key
            {
                *v = value.into();
                return;
            }
        }
        self.parts.push(Part::Field(key.into(), value.into()));
    }

    /// The items of `kind`, if the guild has that collection.
    pub fn items(&self, kind: Kind) -> Option<&Items> {
        self.collections
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, items)| items)
    }

    /// The items of `kind`, the collection added (at the end) if the guild had none.
    pub fn items_mut(&mut self, kind: Kind) -> &mut Items {
        let index = match self.collections.iter().position(|(k, _)| *k == kind) {
            Some(index) => index,
            None => {
                self.parts.push(Part::Collection(kind));
                self.collections.push((kind, Items::new()));
                self.collections.len() - 1
            }
        };
        &mut self.collections[index].1
    }

    /// Replaces the items of `kind` with those of the JSON array `json`.
    pub fn replace_items(&mut self, kind: Kind, json: &str) -> Result<(), CacheError> {
        let items = items_of(kind, json)?;
        *self.items_mut(kind) = items;
        Ok(())
    }

    /// Bytes of JSON held (keys, values and items).
    pub fn bytes(&self) -> usize {
        let fields: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Field(k, v) => k.len() + v.len() + 4,
                Part::Collection(kind) => kind.key().len() + 5,
            })
            .sum();
        let items: usize = self
            .collections
            .iter()
            .flat_map(|(_, items)| items.values())
            .map(|i| i.len() + 1)
            .sum();
        fields + items
    }

    /// Items held, of every kind.
    pub fn item_count(&self) -> usize {
        self.collections.iter().map(|(_, items)| items.len()).sum()
    }
}

/// Appends `"key":`.
fn push_key(out: &mut String, key: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

pub(super) fn not_object(what: &'static str, e: &sonic_rs::Error) -> CacheError {
    CacheError::NotAnObject {
        what,
        detail: e.to_string().lines().next().unwrap_or_default().to_owned(),
    }
}

/// The items of the JSON array `json`, by the id `kind` keeps them by.
pub(super) fn items_of(kind: Kind, json: &str) -> Result<Items, CacheError> {
    let mut items = Items::new();
    for item in sonic_rs::to_array_iter(json) {
        let item = item.map_err(|e| not_object(kind.key(), &e))?;
        let raw = item.as_raw_str();
        let id = kind
            .id_of(raw)
            .ok_or(CacheError::NoId { kind: kind.key() })?;
        items.insert(id, raw.into());
    }
    // Built by doubling: what the doubling left spare is a third of the entries on average.
    items.shrink_to_fit();
    Ok(items)
}

/// A snowflake read from a raw JSON string value (`"123"`) or number.
pub(super) fn snowflake(value: &sonic_rs::LazyValue<'_>) -> Option<u64> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_u64())
}

/// Every kind of collection a guild has, in a fixed order (for the figures).
pub fn kinds() -> &'static [Kind] {
    KINDS
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: &str = r#"{"id":"1","name":"g","channels":[{"id":"10","name":"a"},{"id":"11","name":"b"}],"members":[{"user":{"id":"5"},"roles":[]}],"unknown_field":{"x":[1,2]},"voice_states":[]}"#;

    #[test]
    fn a_guild_comes_back_byte_for_byte() {
        let guild = Guild::from_json(GUILD, |_| true).unwrap();
        assert_eq!(guild.to_json(), GUILD);
        assert_eq!(guild.items(Kind::Channels).map(Items::len), Some(2));
        assert_eq!(guild.field("unknown_field"), Some(r#"{"x":[1,2]}"#));
    }

    #[test]
    fn without_presences_a_session_gets_no_presences_and_only_the_bot_and_voice_members() {
        let json = r#"{"id":"1","members":[{"user":{"id":"7"}},{"user":{"id":"8"}},{"user":{"id":"9"}}],"presences":[{"user":{"id":"8"},"status":"online"}],"voice_states":[{"user_id":"9","channel_id":"3"}]}"#;
        let guild = Guild::from_json(json, |_| true).unwrap();
        assert_eq!(guild.to_json_for(Intents::all(), Some(7)), json);
        assert_eq!(
            guild.to_json_for(Intents::GUILDS | Intents::GUILD_MEMBERS, Some(7)),
            r#"{"id":"1","members":[{"user":{"id":"7"}},{"user":{"id":"9"}}],"presences":[],"voice_states":[{"user_id":"9","channel_id":"3"}]}"#
        );
    }

    #[test]
    fn collections_not_kept_go_out_empty() {
        let guild = Guild::from_json(GUILD, |k| k != Kind::Members).unwrap();
        assert!(guild.to_json().contains(r#""members":[]"#));
    }

    #[test]
    fn broken_json_and_items_without_ids_are_errors() {
        assert!(Guild::from_json("[1]", |_| true).is_err());
        assert!(Guild::from_json(r#"{"channels":[{"name":"x"}]}"#, |_| true).is_err());
    }
}
