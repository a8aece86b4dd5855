//! Gateway close codes and the one table that says what each one means for a session.

use std::fmt;

/// What a client does after the gateway closed its connection with a given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseAction {
    /// Reconnect (to `resume_gateway_url`) and RESUME the session.
    Resume,
    /// Reconnect to the configured gateway URL and IDENTIFY a new session.
    Reidentify,
    /// Stop: reconnecting cannot succeed until the configuration or the application changes.
    Fatal,
}

/// A websocket close code as the gateway uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 4000: unknown error.
    UnknownError,
    /// 4001: an invalid opcode, or an invalid payload for an opcode, was sent.
    UnknownOpcode,
    /// 4002: a payload could not be decoded (bad JSON, over 4096 bytes).
    DecodeError,
    /// 4003: a payload was sent before IDENTIFY, or the session was invalidated.
    NotAuthenticated,
    /// 4004: the token is wrong.
    AuthenticationFailed,
    /// 4005: IDENTIFY was sent twice.
    AlreadyAuthenticated,
    /// 4007: RESUME carried an invalid sequence.
    InvalidSeq,
    /// 4008: more than 120 payloads in 60 s.
    RateLimited,
    /// 4009: the session timed out.
    SessionTimedOut,
    /// 4010: the shard in IDENTIFY is invalid.
    InvalidShard,
    /// 4011: the bot has too many guilds for its shard count.
    ShardingRequired,
    /// 4012: invalid API version.
    InvalidApiVersion,
    /// 4013: invalid intents bitfield.
    InvalidIntents,
    /// 4014: a privileged intent that is not enabled for the application.
    DisallowedIntents,
    /// Any other code, including the websocket codes 1000–1015.
    Other(u16),
}

/// `(code, action, reason)`: the close policy, one row per gateway code.
///
/// Discord documents only whether a client may reconnect after each code; whether it resumes or
/// starts a new session comes from the text of each code's description, written beside it here.
/// Codes not in this table (websocket codes such as 1000, 1006 and 1011, the unused 4006, anything
/// new) resume: a resume that cannot succeed is answered with INVALID_SESSION `false`, which then
/// re-identifies, so guessing "resume" never loses a session that could be kept.
pub const CLOSE_POLICY: [(u16, CloseAction, &str); 14] = [
    (
        4000,
        CloseAction::Resume,
        "unknown error: the docs say to reconnect; nothing says the session is gone",
    ),
    (
        4001,
        CloseAction::Resume,
        "we sent an invalid opcode or payload; the session itself is intact",
    ),
    (
        4002,
        CloseAction::Resume,
        "we sent a payload the gateway could not decode; the session itself is intact",
    ),
    (
        4003,
        CloseAction::Resume,
        "not authenticated: the docs say to reconnect; if the session was invalidated the RESUME gets INVALID_SESSION false and we re-identify",
    ),
    (
        4004,
        CloseAction::Fatal,
        "authentication failed: the token is wrong, and retrying it only burns identifies",
    ),
    (
        4005,
        CloseAction::Resume,
        "already authenticated: a second IDENTIFY was sent on a live session, which is still there",
    ),
    (
        4007,
        CloseAction::Reidentify,
        "invalid seq on resume: the docs say to start a new session",
    ),
    (
        4008,
        CloseAction::Resume,
        "rate limited: the connection was dropped for sending too fast; the session is kept",
    ),
    (
        4009,
        CloseAction::Reidentify,
        "session timed out: the docs say to start a new one",
    ),
    (
        4010,
        CloseAction::Fatal,
        "invalid shard: the shard id or count in IDENTIFY is wrong",
    ),
    (
        4011,
        CloseAction::Fatal,
        "sharding required: the bot needs more shards than it asked for",
    ),
    (
        4012,
        CloseAction::Fatal,
        "invalid API version: the URL's version is not served",
    ),
    (
        4013,
        CloseAction::Fatal,
        "invalid intents: the bitfield has bits Discord does not know",
    ),
    (
        4014,
        CloseAction::Fatal,
        "disallowed intents: a privileged intent is not enabled for this application",
    ),
];

impl CloseCode {
    /// The close code for a wire value.
    pub const fn from_u16(code: u16) -> Self {
        match code {
            4000 => Self::UnknownError,
            4001 => Self::UnknownOpcode,
            4002 => Self::DecodeError,
            4003 => Self::NotAuthenticated,
            4004 => Self::AuthenticationFailed,
            4005 => Self::AlreadyAuthenticated,
            4007 => Self::InvalidSeq,
            4008 => Self::RateLimited,
            4009 => Self::SessionTimedOut,
            4010 => Self::InvalidShard,
            4011 => Self::ShardingRequired,
            4012 => Self::InvalidApiVersion,
            4013 => Self::InvalidIntents,
            4014 => Self::DisallowedIntents,
            other => Self::Other(other),
        }
    }

    /// The wire value.
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::UnknownError => 4000,
            Self::UnknownOpcode => 4001,
            Self::DecodeError => 4002,
            Self::NotAuthenticated => 4003,
            Self::AuthenticationFailed => 4004,
            Self::AlreadyAuthenticated => 4005,
            Self::InvalidSeq => 4007,
            Self::RateLimited => 4008,
            Self::SessionTimedOut => 4009,
            Self::InvalidShard => 4010,
            Self::ShardingRequired => 4011,
            Self::InvalidApiVersion => 4012,
            Self::InvalidIntents => 4013,
            Self::DisallowedIntents => 4014,
            Self::Other(code) => code,
        }
    }

    fn policy_row(self) -> Option<&'static (u16, CloseAction, &'static str)> {
        let code = self.as_u16();
        CLOSE_POLICY.iter().find(|row| row.0 == code)
    }

    /// What to do after the gateway closed with this code (see [`CLOSE_POLICY`]).
    pub fn action(self) -> CloseAction {
        self.policy_row().map_or(CloseAction::Resume, |row| row.1)
    }

    /// Why [`CloseCode::action`] answers what it does.
    pub fn reason(self) -> &'static str {
        self.policy_row().map_or(
            "not a gateway close code: reconnect and resume; a resume that cannot succeed gets INVALID_SESSION false",
            |row| row.2,
        )
    }

    /// Whether reconnecting cannot help.
    pub fn is_fatal(self) -> bool {
        self.action() == CloseAction::Fatal
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self::from_u16(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.as_u16()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.as_u16(), self)
    }
}

#[cfg(test)]
mod tests {
    use super::CloseAction::*;
    use super::*;

    fn check(code: u16, expected: CloseAction) {
        let c = CloseCode::from_u16(code);
        assert_eq!(c.as_u16(), code);
        assert_eq!(c.action(), expected, "{code}: {}", c.reason());
        assert!(!c.reason().is_empty());
    }

    #[test]
    fn code_4000_resumes() {
        check(4000, Resume);
    }
    #[test]
    fn code_4001_resumes() {
        check(4001, Resume);
    }
    #[test]
    fn code_4002_resumes() {
        check(4002, Resume);
    }
    #[test]
    fn code_4003_resumes() {
        check(4003, Resume);
    }
    #[test]
    fn code_4004_is_fatal() {
        check(4004, Fatal);
    }
    #[test]
    fn code_4005_resumes() {
        check(4005, Resume);
    }
    #[test]
    fn code_4006_is_unknown_and_resumes() {
        assert_eq!(CloseCode::from_u16(4006), CloseCode::Other(4006));
        check(4006, Resume);
    }
    #[test]
    fn code_4007_reidentifies() {
        check(4007, Reidentify);
    }
    #[test]
    fn code_4008_resumes() {
        check(4008, Resume);
    }
    #[test]
    fn code_4009_reidentifies() {
        check(4009, Reidentify);
    }
    #[test]
    fn code_4010_is_fatal() {
        check(4010, Fatal);
    }
    #[test]
    fn code_4011_is_fatal() {
        check(4011, Fatal);
    }
    #[test]
    fn code_4012_is_fatal() {
        check(4012, Fatal);
    }
    #[test]
    fn code_4013_is_fatal() {
        check(4013, Fatal);
    }
    #[test]
    fn code_4014_is_fatal() {
        check(4014, Fatal);
    }
    #[test]
    fn websocket_codes_resume() {
        for code in [1000, 1001, 1006, 1011, 1012] {
            check(code, Resume);
        }
    }
    #[test]
    fn table_has_each_code_once() {
        for (i, a) in CLOSE_POLICY.iter().enumerate() {
            assert!(CLOSE_POLICY[i + 1..].iter().all(|b| b.0 != a.0));
            assert!(!matches!(CloseCode::from_u16(a.0), CloseCode::Other(_)));
        }
    }
}
