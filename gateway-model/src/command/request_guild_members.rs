//! REQUEST_GUILD_MEMBERS (op 8): a request that can only be built valid.

use serde::{Deserialize, Serialize};

use crate::{Intents, Snowflake};

/// The longest nonce Discord accepts, in bytes; a longer one is silently dropped by the gateway.
pub const MAX_NONCE_LEN: usize = 32;
/// The most members a query may ask for, and the most user ids one request may name.
pub const MAX_LIMIT: u32 = 100;
/// The most user ids one request may name.
pub const MAX_USER_IDS: usize = 100;

/// Why a [`RequestGuildMembers`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestGuildMembersError {
    /// `user_ids` cannot be combined with `query` or `limit`.
    #[error("user ids cannot be combined with a query or a limit")]
    UserIdsWithQuery,
    /// `limit` is outside `0..=100`.
    #[error("limit {0} is outside 0..=100")]
    LimitOutOfRange(u32),
    /// More than 100 user ids.
    #[error("{0} user ids, more than the 100 allowed")]
    TooManyUserIds(usize),
    /// The nonce is longer than 32 bytes.
    #[error("nonce of {0} bytes, longer than the 32 allowed")]
    NonceTooLong(usize),
    /// Neither a query nor any user id.
    #[error("neither a query nor user ids were given")]
    NoQueryOrUserIds,
}

/// A request needs an intent the session does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("missing intent {0:?}")]
pub struct MissingIntent(pub Intents);

/// What a request asks for: members whose username starts with a prefix, or given users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberSelection {
    /// Usernames starting with `query` (`""` = everyone), at most `limit` (0 = no limit, for the
    /// full list).
    Query {
        /// The username prefix.
        query: String,
        /// The most members to return; 0 with an empty query asks for every member.
        limit: u8,
    },
    /// These users (1 to 100).
    UserIds(Vec<Snowflake>),
}

/// REQUEST_GUILD_MEMBERS (op 8) data. Only a valid request can exist: build one with
/// [`RequestGuildMembers::builder`] (or deserialize one, which checks the same rules).
///
/// ```
/// use gateway_model::{Intents, RequestGuildMembers, MissingIntent, Snowflake};
/// let request = RequestGuildMembers::builder(Snowflake::new(41771983444115456))
///     .query("", 0)
///     .nonce("req-1")
///     .build()?;
/// assert!(request.is_full_list());
/// assert_eq!(
///     request.check_intents(Intents::GUILDS),
///     Err(MissingIntent(Intents::GUILD_MEMBERS))
/// );
/// # Ok::<(), gateway_model::RequestGuildMembersError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRequest", into = "RawRequest")]
pub struct RequestGuildMembers {
    guild_id: Snowflake,
    selection: MemberSelection,
    presences: bool,
    nonce: Option<String>,
}

impl RequestGuildMembers {
    /// Starts a request for `guild_id`.
    pub fn builder(guild_id: Snowflake) -> RequestGuildMembersBuilder {
        RequestGuildMembersBuilder {
            guild_id,
            query: None,
            limit: None,
            user_ids: None,
            presences: false,
            nonce: None,
        }
    }

    /// The guild.
    pub fn guild_id(&self) -> Snowflake {
        self.guild_id
    }

    /// What is asked for.
    pub fn selection(&self) -> &MemberSelection {
        &self.selection
    }

    /// Whether presences are asked for.
    pub fn presences(&self) -> bool {
        self.presences
    }

    /// The nonce the chunks will echo.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The same request under another nonce (at most 32 bytes), as a proxy sends it on: the
    /// old nonce comes back beside it.
    pub fn with_nonce(
        mut self,
        nonce: impl Into<String>,
    ) -> Result<(Self, Option<String>), RequestGuildMembersError> {
        let nonce = nonce.into();
        if nonce.len() > MAX_NONCE_LEN {
            return Err(RequestGuildMembersError::NonceTooLong(nonce.len()));
        }
        let old = self.nonce.replace(nonce);
        Ok((self, old))
    }

    /// Whether this asks for every member (`query: ""`, `limit: 0`), the form limited to once per
    /// guild per 30 s and gated by [`Intents::GUILD_MEMBERS`].
    pub fn is_full_list(&self) -> bool {
        matches!(&self.selection, MemberSelection::Query { query, limit: 0 } if query.is_empty())
    }

    /// Checks the request against the session's intents.
    ///
    /// Presences need [`Intents::GUILD_PRESENCES`]; the full member list needs
    /// [`Intents::GUILD_MEMBERS`]. (hikari's docstring names these two the other way round; the
    /// protocol and hikari's own code agree with this rule.)
    pub fn check_intents(&self, intents: Intents) -> Result<(), MissingIntent> {
        if self.presences && !intents.contains(Intents::GUILD_PRESENCES) {
            return Err(MissingIntent(Intents::GUILD_PRESENCES));
        }
        if self.is_full_list() && !intents.contains(Intents::GUILD_MEMBERS) {
            return Err(MissingIntent(Intents::GUILD_MEMBERS));
        }
        Ok(())
    }
}

/// Builds a [`RequestGuildMembers`]; [`build`](Self::build) checks every rule.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestGuildMembersBuilder {
    guild_id: Snowflake,
    query: Option<String>,
    limit: Option<u32>,
    user_ids: Option<Vec<Snowflake>>,
    presences: bool,
    nonce: Option<String>,
}

impl RequestGuildMembersBuilder {
    /// Members whose username starts with `query` (`""` for all), at most `limit` (0..=100; 0 with
    /// an empty query means every member).
    pub fn query(mut self, query: impl Into<String>, limit: u32) -> Self {
        self.query = Some(query.into());
        self.limit = Some(limit);
        self
    }

    /// Only the limit, for a request that names users too (an error at build) or has its query set
    /// elsewhere.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// These users (at most 100).
    pub fn user_ids(mut self, user_ids: impl IntoIterator<Item = Snowflake>) -> Self {
        self.user_ids = Some(user_ids.into_iter().collect());
        self
    }

    /// Whether to return the members' presences too.
    pub fn presences(mut self, presences: bool) -> Self {
        self.presences = presences;
        self
    }

    /// A nonce (at most 32 bytes) that every chunk of the answer echoes.
    pub fn nonce(mut self, nonce: impl Into<String>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// Checks the rules, in order: user ids with a query or limit, no query nor user ids, the
    /// limit's range, the number of user ids, the nonce's length.
    pub fn build(self) -> Result<RequestGuildMembers, RequestGuildMembersError> {
        use RequestGuildMembersError as E;
        let user_ids = self.user_ids.filter(|ids| !ids.is_empty());
        let selection = match (user_ids, self.query, self.limit) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err(E::UserIdsWithQuery),
            (None, None, _) => return Err(E::NoQueryOrUserIds),
            (None, Some(query), limit) => {
                let limit = limit.unwrap_or(0);
                if limit > MAX_LIMIT {
                    return Err(E::LimitOutOfRange(limit));
                }
                MemberSelection::Query {
                    query,
                    limit: limit as u8,
                }
            }
            (Some(ids), None, None) => {
                if ids.len() > MAX_USER_IDS {
                    return Err(E::TooManyUserIds(ids.len()));
                }
                MemberSelection::UserIds(ids)
            }
        };
        if let Some(nonce) = self.nonce.as_ref().filter(|n| n.len() > MAX_NONCE_LEN) {
            return Err(E::NonceTooLong(nonce.len()));
        }
        Ok(RequestGuildMembers {
            guild_id: self.guild_id,
            selection,
            presences: self.presences,
            nonce: self.nonce,
        })
    }
}

/// The wire form, before its rules are checked.
#[derive(Serialize, Deserialize)]
struct RawRequest {
    guild_id: Snowflake,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    limit: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    presences: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "one_or_many"
    )]
    user_ids: Option<Vec<Snowflake>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    nonce: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Snowflake>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Snowflake),
        Many(Vec<Snowflake>),
    }
    Ok(
        Option::<OneOrMany>::deserialize(deserializer)?.map(|v| match v {
            OneOrMany::One(id) => vec![id],
            OneOrMany::Many(ids) => ids,
        }),
    )
}

impl TryFrom<RawRequest> for RequestGuildMembers {
    type Error = RequestGuildMembersError;

    fn try_from(raw: RawRequest) -> Result<Self, Self::Error> {
        RequestGuildMembersBuilder {
            guild_id: raw.guild_id,
            query: raw.query,
            limit: raw.limit,
            user_ids: raw.user_ids,
            presences: raw.presences,
            nonce: raw.nonce,
        }
        .build()
    }
}

impl From<RequestGuildMembers> for RawRequest {
    fn from(r: RequestGuildMembers) -> Self {
        let (query, limit, user_ids) = match r.selection {
            MemberSelection::Query { query, limit } => (Some(query), Some(limit.into()), None),
            MemberSelection::UserIds(ids) => (None, None, Some(ids)),
        };
        Self {
            guild_id: r.guild_id,
            query,
            limit,
            presences: r.presences,
            user_ids,
            nonce: r.nonce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RequestGuildMembersError as E;
    use super::*;

    const GUILD: Snowflake = Snowflake::new(41_771_983_444_115_456);

    fn ids(n: u64) -> Vec<Snowflake> {
        (1..=n).map(Snowflake::new).collect()
    }

    #[test]
    fn each_rule_has_its_error() {
        let b = || RequestGuildMembers::builder(GUILD);
        assert_eq!(
            b().user_ids(ids(1)).query("a", 1).build(),
            Err(E::UserIdsWithQuery)
        );
        assert_eq!(
            b().user_ids(ids(1)).limit(1).build(),
            Err(E::UserIdsWithQuery)
        );
        assert_eq!(b().query("a", 101).build(), Err(E::LimitOutOfRange(101)));
        assert_eq!(b().user_ids(ids(101)).build(), Err(E::TooManyUserIds(101)));
        assert_eq!(
            b().query("", 0).nonce("x".repeat(33)).build(),
            Err(E::NonceTooLong(33))
        );
        assert_eq!(b().build(), Err(E::NoQueryOrUserIds));
        assert_eq!(b().user_ids([]).build(), Err(E::NoQueryOrUserIds));
        assert!(b().query("a", 100).nonce("x".repeat(32)).build().is_ok());
        assert!(b().user_ids(ids(100)).build().is_ok());
    }

    #[test]
    fn a_new_nonce_keeps_the_rules_and_gives_the_old_one_back() {
        let request = RequestGuildMembers::builder(GUILD)
            .query("", 0)
            .nonce("theirs")
            .build()
            .unwrap();
        let (ours, old) = request.clone().with_nonce("gp1").unwrap();
        assert_eq!(
            (ours.nonce(), old.as_deref()),
            (Some("gp1"), Some("theirs"))
        );
        assert_eq!(ours.selection(), request.selection());
        assert_eq!(request.with_nonce("x".repeat(33)), Err(E::NonceTooLong(33)));
    }

    #[test]
    fn intent_checks() {
        let full = RequestGuildMembers::builder(GUILD)
            .query("", 0)
            .build()
            .unwrap();
        let prefix = RequestGuildMembers::builder(GUILD)
            .query("ab", 10)
            .presences(true)
            .build()
            .unwrap();
        assert_eq!(
            full.check_intents(Intents::GUILDS),
            Err(MissingIntent(Intents::GUILD_MEMBERS))
        );
        assert_eq!(full.check_intents(Intents::GUILD_MEMBERS), Ok(()));
        assert_eq!(
            prefix.check_intents(Intents::GUILD_MEMBERS),
            Err(MissingIntent(Intents::GUILD_PRESENCES))
        );
        assert_eq!(prefix.check_intents(Intents::GUILD_PRESENCES), Ok(()));
        assert!(!prefix.is_full_list());
    }

    #[test]
    fn wire_form() {
        let r = RequestGuildMembers::builder(GUILD)
            .user_ids(ids(2))
            .nonce("n")
            .build()
            .unwrap();
        assert_eq!(
            sonic_rs::to_string(&r).unwrap(),
            r#"{"guild_id":"41771983444115456","user_ids":["1","2"],"nonce":"n"}"#
        );
        let single: RequestGuildMembers =
            sonic_rs::from_str(r#"{"guild_id":"1","user_ids":"5"}"#).unwrap();
        assert_eq!(
            single.selection(),
            &MemberSelection::UserIds(vec![Snowflake::new(5)])
        );
        assert!(
            sonic_rs::from_str::<RequestGuildMembers>(
                r#"{"guild_id":"1","query":"a","limit":500}"#
            )
            .is_err()
        );
    }
}
