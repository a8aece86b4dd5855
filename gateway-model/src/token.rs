//! The bot token, which never shows itself.

use std::fmt;

use serde::{Deserialize, Deserializer, Serializer};

/// A bot token.
///
/// `Debug` and `Display` print `<redacted>`; the only way out is [`Token::expose_secret`], and the only
/// types that serialize it are [`Identify`](crate::Identify) and [`Resume`](crate::Resume).
///
/// ```
/// use gateway_model::Token;
/// let token = Token::new("MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs");
/// assert_eq!(format!("{token:?} {token}"), "Token(<redacted>) <redacted>");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Box<str>);

impl Token {
    /// Wraps a token. A leading `Bot ` (the HTTP authorization prefix) is removed: the gateway wants
    /// the bare token.
    pub fn new(token: impl Into<String>) -> Self {
        let token = token.into();
        match token.strip_prefix("Bot ") {
            Some(bare) => Self(bare.into()),
            None => Self(token.into_boxed_str()),
        }
    }

    /// The token itself. Keep it out of logs.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Serializes a token; used only by the commands that carry it.
pub(crate) fn serialize<S: Serializer>(token: &Token, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&token.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_itself() {
        let token = Token::new("Bot secret-value");
        assert_eq!(token.expose_secret(), "secret-value");
        assert!(!format!("{token:?}{token}{token:#?}").contains("secret"));
    }
}
