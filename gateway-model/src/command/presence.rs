//! Presence (op 3): status and activities.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A user's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Online.
    #[default]
    Online,
    /// Do not disturb.
    Dnd,
    /// Idle (AFK).
    Idle,
    /// Invisible: shown as offline.
    Invisible,
    /// Offline.
    Offline,
}

/// The kind of an activity a bot may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityType {
    /// 0: "Playing {name}".
    Playing,
    /// 1: "Streaming {details}"; needs a twitch.tv or youtube.com `url`.
    Streaming,
    /// 2: "Listening to {name}".
    Listening,
    /// 3: "Watching {name}".
    Watching,
    /// 4: a custom status: `{emoji} {state}`.
    Custom,
    /// 5: "Competing in {name}".
    Competing,
}

impl ActivityType {
    /// The wire value.
    pub const fn value(self) -> u8 {
        match self {
            Self::Playing => 0,
            Self::Streaming => 1,
            Self::Listening => 2,
            Self::Watching => 3,
            Self::Custom => 4,
            Self::Competing => 5,
        }
    }

    /// The type for a wire value, if it is one a bot may set.
    pub const fn from_value(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Playing,
            1 => Self::Streaming,
            2 => Self::Listening,
            3 => Self::Watching,
            4 => Self::Custom,
            5 => Self::Competing,
            _ => return None,
        })
    }
}

impl Serialize for ActivityType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.value())
    }
}

impl<'de> Deserialize<'de> for ActivityType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(deserializer)?;
        Self::from_value(v).ok_or_else(|| {
            de::Error::invalid_value(
                de::Unexpected::Unsigned(v.into()),
                &"an activity type 0..=5",
            )
        })
    }
}

impl fmt::Display for ActivityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An activity a bot may set: only `name`, `type`, `url` and `state` are accepted from bots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// The activity's name.
    pub name: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub kind: ActivityType,
    /// Stream URL, for [`ActivityType::Streaming`].
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub url: Option<String>,
    /// The custom status text, or the party state.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<String>,
}

impl Activity {
    fn new(kind: ActivityType, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            url: None,
            state: None,
        }
    }

    /// "Playing {name}".
    pub fn playing(name: impl Into<String>) -> Self {
        Self::new(ActivityType::Playing, name)
    }

    /// "Streaming", linking to a twitch.tv or youtube.com `url`.
    pub fn streaming(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::new(ActivityType::Streaming, name)
        }
    }

    /// "Listening to {name}".
    pub fn listening(name: impl Into<String>) -> Self {
        Self::new(ActivityType::Listening, name)
    }

    /// "Watching {name}".
    pub fn watching(name: impl Into<String>) -> Self {
        Self::new(ActivityType::Watching, name)
    }

    /// "Competing in {name}".
    pub fn competing(name: impl Into<String>) -> Self {
        Self::new(ActivityType::Competing, name)
    }

    /// A custom status showing `state`.
    pub fn custom(state: impl Into<String>) -> Self {
        Self {
            state: Some(state.into()),
            ..Self::new(ActivityType::Custom, "Custom Status")
        }
    }
}

/// UPDATE_PRESENCE (op 3) data, also the `presence` of IDENTIFY.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdatePresence {
    /// Unix time in milliseconds since the client went idle; `None` if not idle.
    pub since: Option<u64>,
    /// The activities shown.
    pub activities: Vec<Activity>,
    /// The status.
    pub status: Status,
    /// Whether the client is AFK.
    pub afk: bool,
}

impl UpdatePresence {
    /// A presence with one status and no activity.
    pub fn status(status: Status) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// Sets the activities.
    #[must_use]
    pub fn with_activities(mut self, activities: impl IntoIterator<Item = Activity>) -> Self {
        self.activities = activities.into_iter().collect();
        self
    }
}
