//! GUILD_MEMBERS_CHUNK and RATE_LIMITED: the answers to REQUEST_GUILD_MEMBERS.

use serde::{Deserialize, Serialize};

use crate::{OpCode, RawJson, Snowflake};

/// GUILD_MEMBERS_CHUNK: one part of the answer to REQUEST_GUILD_MEMBERS.
///
/// Members and presences stay raw JSON, for the caller to deserialize into its own types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildMembersChunk {
    /// The guild.
    pub guild_id: Snowflake,
    /// The members, as a JSON array.
    pub members: RawJson,
    /// This chunk's index, `0..chunk_count`.
    #[serde(default)]
    pub chunk_index: u32,
    /// How many chunks answer the request.
    #[serde(default = "one")]
    pub chunk_count: u32,
    /// Requested user ids that are not members (Discord may echo these as numbers).
    #[serde(default)]
    pub not_found: Vec<Snowflake>,
    /// The members' presences, as a JSON array, when asked for and allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presences: Option<RawJson>,
    /// The request's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

fn one() -> u32 {
    1
}

/// What a rate-limited request was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitedMeta {
    /// REQUEST_GUILD_MEMBERS for this guild and nonce.
    RequestGuildMembers {
        /// The guild.
        guild_id: Snowflake,
        /// The request's nonce.
        nonce: Option<String>,
    },
    /// Another opcode's metadata, kept raw.
    Other(RawJson),
}

/// RATE_LIMITED: a request was refused; retry after `retry_after` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRateLimited", into = "RawRateLimited")]
pub struct RateLimited {
    /// The opcode that was rate limited (8 is the only one documented).
    pub opcode: OpCode,
    /// Seconds to wait before retrying.
    pub retry_after: f64,
    /// What was limited.
    pub meta: RateLimitedMeta,
}

#[derive(Serialize, Deserialize)]
struct RawRateLimited {
    opcode: OpCode,
    retry_after: f64,
    #[serde(default)]
    meta: RawJson,
}

#[derive(Serialize, Deserialize)]
struct MembersMeta {
    guild_id: Snowflake,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

impl TryFrom<RawRateLimited> for RateLimited {
    type Error = crate::JsonError;

    fn try_from(raw: RawRateLimited) -> Result<Self, Self::Error> {
        let meta = if raw.opcode == OpCode::RequestGuildMembers {
            let m: MembersMeta = raw.meta.deserialize()?;
            RateLimitedMeta::RequestGuildMembers {
                guild_id: m.guild_id,
                nonce: m.nonce,
            }
        } else {
            RateLimitedMeta::Other(raw.meta)
        };
        Ok(Self {
            opcode: raw.opcode,
            retry_after: raw.retry_after,
            meta,
        })
    }
}

impl From<RateLimited> for RawRateLimited {
    fn from(r: RateLimited) -> Self {
        let meta = match r.meta {
            RateLimitedMeta::RequestGuildMembers { guild_id, nonce } => {
                let json = sonic_rs::to_string(&MembersMeta { guild_id, nonce })
                    .unwrap_or_else(|_| String::from("null"));
                RawJson::from_validated(&json)
            }
            RateLimitedMeta::Other(raw) => raw,
        };
        Self {
            opcode: r.opcode,
            retry_after: r.retry_after,
            meta,
        }
    }
}
