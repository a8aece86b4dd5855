//! Gateway opcodes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `op` of a gateway payload.
///
/// An opcode this crate does not know is kept as [`OpCode::Other`], not rejected: what to do with it
/// is the caller's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpCode {
    /// 0, receive: an event was dispatched.
    Dispatch,
    /// 1, send and receive: keep-alive; from the server, a request to heartbeat now.
    Heartbeat,
    /// 2, send: start a new session.
    Identify,
    /// 3, send: update the client's presence.
    PresenceUpdate,
    /// 4, send: join, move between or leave voice channels.
    VoiceStateUpdate,
    /// 6, send: resume a session.
    Resume,
    /// 7, receive: reconnect and resume.
    Reconnect,
    /// 8, send: request guild members.
    RequestGuildMembers,
    /// 9, receive: the session is invalid; `d` says whether it may be resumed.
    InvalidSession,
    /// 10, receive: first message on a connection, carries the heartbeat interval.
    Hello,
    /// 11, receive: a heartbeat was acknowledged.
    HeartbeatAck,
    /// 31, send: request soundboard sounds.
    RequestSoundboardSounds,
    /// 43, send: request ephemeral channel information.
    RequestChannelInfo,
    /// Any other value.
    Other(u64),
}

impl OpCode {
    /// The wire value.
    pub const fn value(self) -> u64 {
        match self {
            Self::Dispatch => 0,
            Self::Heartbeat => 1,
            Self::Identify => 2,
            Self::PresenceUpdate => 3,
            Self::VoiceStateUpdate => 4,
            Self::Resume => 6,
            Self::Reconnect => 7,
            Self::RequestGuildMembers => 8,
            Self::InvalidSession => 9,
            Self::Hello => 10,
            Self::HeartbeatAck => 11,
            Self::RequestSoundboardSounds => 31,
            Self::RequestChannelInfo => 43,
            Self::Other(v) => v,
        }
    }

    /// The opcode for a wire value.
    pub const fn from_value(value: u64) -> Self {
        match value {
            0 => Self::Dispatch,
            1 => Self::Heartbeat,
            2 => Self::Identify,
            3 => Self::PresenceUpdate,
            4 => Self::VoiceStateUpdate,
            6 => Self::Resume,
            7 => Self::Reconnect,
            8 => Self::RequestGuildMembers,
            9 => Self::InvalidSession,
            10 => Self::Hello,
            11 => Self::HeartbeatAck,
            31 => Self::RequestSoundboardSounds,
            43 => Self::RequestChannelInfo,
            v => Self::Other(v),
        }
    }

    /// Whether a bot may send this opcode.
    pub const fn is_sendable(self) -> bool {
        matches!(
            self,
            Self::Heartbeat
                | Self::Identify
                | Self::PresenceUpdate
                | Self::VoiceStateUpdate
                | Self::Resume
                | Self::RequestGuildMembers
                | Self::RequestSoundboardSounds
                | Self::RequestChannelInfo
        )
    }
}

impl Serialize for OpCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.value())
    }
}

impl<'de> Deserialize<'de> for OpCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(Self::from_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_round_trip_and_unknown_are_kept() {
        for v in 0..=64u64 {
            let op = OpCode::from_value(v);
            assert_eq!(op.value(), v);
            let known = matches!(v, 0..=4 | 6..=11 | 31 | 43);
            assert_eq!(!matches!(op, OpCode::Other(_)), known, "op {v}");
            let back: OpCode = sonic_rs::from_str(&sonic_rs::to_string(&op).unwrap()).unwrap();
            assert_eq!(back, op);
        }
    }
}
