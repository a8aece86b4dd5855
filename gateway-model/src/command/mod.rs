//! Everything a client sends: one type per command, and [`Command`] for any of them.

mod identify;
mod presence;
mod request_guild_members;
mod requests;
mod voice_state;

pub use identify::{
    ConnectionProperties, Identify, LargeThreshold, LargeThresholdOutOfRange, Resume,
};
pub use presence::{Activity, ActivityType, Status, UpdatePresence};
pub use request_guild_members::{
    MAX_LIMIT, MAX_NONCE_LEN, MAX_USER_IDS, MemberSelection, MissingIntent, RequestGuildMembers,
    RequestGuildMembersBuilder, RequestGuildMembersError,
};
pub use requests::{ChannelInfoField, RequestChannelInfo, RequestSoundboardSounds};
pub use voice_state::UpdateVoiceState;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::{JsonError, OpCode};

/// HEARTBEAT (op 1) data: the last sequence number received, or `None` before the first dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat(pub Option<u64>);

/// Any command a client sends, serialized as the whole payload `{"op": …, "d": …}`.
///
/// ```
/// use gateway_model::{Command, Heartbeat};
/// let json = gateway_model::json::to_string(&Command::Heartbeat(Heartbeat(Some(251))))?;
/// assert_eq!(json, r#"{"op":1,"d":251}"#);
/// assert_eq!(Command::from_json(&json)?, Command::Heartbeat(Heartbeat(Some(251))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Op 1.
    Heartbeat(Heartbeat),
    /// Op 2.
    Identify(Box<Identify>),
    /// Op 3.
    UpdatePresence(UpdatePresence),
    /// Op 4.
    UpdateVoiceState(UpdateVoiceState),
    /// Op 6.
    Resume(Resume),
    /// Op 8.
    RequestGuildMembers(RequestGuildMembers),
    /// Op 31.
    RequestSoundboardSounds(RequestSoundboardSounds),
    /// Op 43.
    RequestChannelInfo(RequestChannelInfo),
}

/// Why [`Command::from_json`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The opcode is not one a client sends.
    #[error("opcode {} is not a client command", .0.value())]
    NotACommand(OpCode),
    /// The payload or its `d` is not valid for the opcode.
    #[error("invalid command payload: {0}")]
    Json(#[from] JsonError),
}

impl From<sonic_rs::Error> for CommandError {
    fn from(e: sonic_rs::Error) -> Self {
        Self::Json(e.into())
    }
}

impl Command {
    /// The command's opcode.
    pub const fn op(&self) -> OpCode {
        match self {
            Self::Heartbeat(_) => OpCode::Heartbeat,
            Self::Identify(_) => OpCode::Identify,
            Self::UpdatePresence(_) => OpCode::PresenceUpdate,
            Self::UpdateVoiceState(_) => OpCode::VoiceStateUpdate,
            Self::Resume(_) => OpCode::Resume,
            Self::RequestGuildMembers(_) => OpCode::RequestGuildMembers,
            Self::RequestSoundboardSounds(_) => OpCode::RequestSoundboardSounds,
            Self::RequestChannelInfo(_) => OpCode::RequestChannelInfo,
        }
    }

    /// Reads a whole command payload, as a gateway server does.
    pub fn from_json(json: &str) -> Result<Self, CommandError> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            op: OpCode,
            #[serde(borrow, default)]
            d: Option<sonic_rs::LazyValue<'a>>,
        }
        let envelope: Envelope<'_> = sonic_rs::from_str(json)?;
        let d = envelope.d.as_ref().map_or("null", |d| d.as_raw_str());
        Ok(match envelope.op {
            OpCode::Heartbeat => Self::Heartbeat(sonic_rs::from_str(d)?),
            OpCode::Identify => Self::Identify(sonic_rs::from_str(d)?),
            OpCode::PresenceUpdate => Self::UpdatePresence(sonic_rs::from_str(d)?),
            OpCode::VoiceStateUpdate => Self::UpdateVoiceState(sonic_rs::from_str(d)?),
            OpCode::Resume => Self::Resume(sonic_rs::from_str(d)?),
            OpCode::RequestGuildMembers => Self::RequestGuildMembers(sonic_rs::from_str(d)?),
            OpCode::RequestSoundboardSounds => {
                Self::RequestSoundboardSounds(sonic_rs::from_str(d)?)
            }
            OpCode::RequestChannelInfo => Self::RequestChannelInfo(sonic_rs::from_str(d)?),
            other => return Err(CommandError::NotACommand(other)),
        })
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Command", 2)?;
        s.serialize_field("op", &self.op())?;
        match self {
            Self::Heartbeat(d) => s.serialize_field("d", d)?,
            Self::Identify(d) => s.serialize_field("d", d)?,
            Self::UpdatePresence(d) => s.serialize_field("d", d)?,
            Self::UpdateVoiceState(d) => s.serialize_field("d", d)?,
            Self::Resume(d) => s.serialize_field("d", d)?,
            Self::RequestGuildMembers(d) => s.serialize_field("d", d)?,
            Self::RequestSoundboardSounds(d) => s.serialize_field("d", d)?,
            Self::RequestChannelInfo(d) => s.serialize_field("d", d)?,
        }
        s.end()
    }
}

macro_rules! from_data {
    ($($variant:ident($ty:ty) $(boxed $boxed:tt)?),* $(,)?) => {$(
        impl From<$ty> for Command {
            fn from(d: $ty) -> Self {
                Self::$variant(from_data!(@wrap d $($boxed)?))
            }
        }
    )*};
    (@wrap $d:ident) => { $d };
    (@wrap $d:ident yes) => { Box::new($d) };
}

from_data!(
    Heartbeat(Heartbeat),
    Identify(Identify) boxed yes,
    UpdatePresence(UpdatePresence),
    UpdateVoiceState(UpdateVoiceState),
    Resume(Resume),
    RequestGuildMembers(RequestGuildMembers),
    RequestSoundboardSounds(RequestSoundboardSounds),
    RequestChannelInfo(RequestChannelInfo),
);
