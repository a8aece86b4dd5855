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

/// GUILD_MEMBERS_CHUNK's fields with the member and presence arrays borrowed, for serde_json.
#[derive(Deserialize)]
struct Borrowed<'a> {
    guild_id: Snowflake,
    #[serde(borrow)]
    members: &'a serde_json::value::RawValue,
    #[serde(default)]
    chunk_index: u32,
    #[serde(default = "one")]
    chunk_count: u32,
    #[serde(default)]
    not_found: Vec<Snowflake>,
    #[serde(default, borrow)]
    presences: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    nonce: Option<String>,
}

impl GuildMembersChunk {
    /// Parses a GUILD_MEMBERS_CHUNK's `d`, validating it, with the members and presences kept
    /// raw.
    ///
    /// This is what the gateway stack uses: serde_json skips the member array at about twice
    /// sonic-rs's validating speed (measured: docs/PERFORMANCE.md). Deserializing the type with
    /// sonic-rs gives the same value.
    pub fn from_json(json: &str) -> Result<Self, crate::JsonError> {
        let b: Borrowed<'_> = serde_json::from_str(json)?;
        Ok(Self {
            guild_id: b.guild_id,
            members: RawJson::from_validated(b.members.get()),
            chunk_index: b.chunk_index,
            chunk_count: b.chunk_count,
            not_found: b.not_found,
            presences: b.presences.map(|p| RawJson::from_validated(p.get())),
            nonce: b.nonce,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_json_agrees_with_the_derived_deserializer() {
        for json in [
            r#"{"guild_id":"1","members":[{"user":{"id":"2","username":"a \"b\""}}],"chunk_index":1,"chunk_count":3,"not_found":[4,"5"],"nonce":"n"}"#,
            r#"{"guild_id":1,"members":[],"presences":null}"#,
            r#"{"members":[ ],"presences":[{"status":"online"}],"guild_id":"9","nonce":null}"#,
        ] {
            let fast = GuildMembersChunk::from_json(json).unwrap();
            let derived: GuildMembersChunk = sonic_rs::from_str(json).unwrap();
            assert_eq!(fast, derived, "{json}");
        }
    }

    #[test]
    fn from_json_rejects_what_is_not_a_chunk() {
        for json in [
            r#"{"guild_id":"1","members":[1,]}"#,
            r#"{"guild_id":"1"}"#,
            r#"{"guild_id":"x","members":[]}"#,
            r#"{"guild_id":"1","members":["\x"]}"#,
            "[]",
        ] {
            assert!(GuildMembersChunk::from_json(json).is_err(), "{json}");
        }
    }
}
