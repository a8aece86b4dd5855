//! Answers to REQUEST_GUILD_MEMBERS: which members, cut into chunks of at most 1000.

use std::time::Duration;

use gateway_model::{MemberSelection, RequestGuildMembers, Snowflake, Status};
use serde::Serialize;

use crate::ChunkFault;
use crate::payloads::{MemberJson, PresenceJson};
use crate::world::{Guild, Member, World};

/// Members per GUILD_MEMBERS_CHUNK.
pub const CHUNK_SIZE: usize = 1000;
/// The most members a prefix query returns.
const QUERY_CAP: usize = 100;

#[derive(Serialize)]
struct ChunkJson<'a> {
    guild_id: Snowflake,
    members: Vec<MemberJson<'a>>,
    chunk_index: usize,
    chunk_count: usize,
    not_found: &'a [Snowflake],
    #[serde(skip_serializing_if = "Option::is_none")]
    presences: Option<Vec<PresenceJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// The `d` of every chunk answering `request`, in order. `presences` is whether presences are both
/// asked for and allowed.
pub(crate) fn chunks(
    world: &World,
    guild: &Guild,
    request: &RequestGuildMembers,
    presences: bool,
) -> Vec<String> {
    let (members, not_found): (Vec<Member>, Vec<Snowflake>) = match request.selection() {
        MemberSelection::Query { query, limit } => {
            let query = query.to_lowercase();
            let cap = match (*limit as usize, query.is_empty()) {
                (0, true) => usize::MAX,
                (0, false) => QUERY_CAP,
                (n, _) => n.min(QUERY_CAP),
            };
            let matching = world
                .members(guild)
                .filter(|m| {
                    query.is_empty()
                        || m.username.to_lowercase().starts_with(&query)
                        || m.nick
                            .as_ref()
                            .is_some_and(|n| n.to_lowercase().starts_with(&query))
                })
                .take(cap)
                .collect();
            (matching, Vec::new())
        }
        MemberSelection::UserIds(ids) => {
            let mut found = Vec::new();
            let mut not_found = Vec::new();
            for &id in ids {
                match world.members(guild).find(|m| m.id == id) {
                    Some(m) => found.push(m),
                    None => not_found.push(id),
                }
            }
            (found, not_found)
        }
    };
    let count = members.len().div_ceil(CHUNK_SIZE).max(1);
    (0..count)
        .map(|i| {
            let part = members
                .get(i * CHUNK_SIZE..((i + 1) * CHUNK_SIZE).min(members.len()))
                .unwrap_or(&[]);
            let chunk = ChunkJson {
                guild_id: guild.id,
                members: part.iter().map(|m| m.json(guild)).collect(),
                chunk_index: i,
                chunk_count: count,
                not_found: if i == 0 { &not_found } else { &[] },
                presences: presences.then(|| {
                    part.iter()
                        .filter(|m| m.status != Status::Offline)
                        .map(Member::presence_json)
                        .collect()
                }),
                nonce: request.nonce(),
            };
            sonic_rs::to_string(&chunk).unwrap_or_default()
        })
        .collect()
}

#[derive(Serialize)]
struct RateLimitedJson<'a> {
    opcode: u8,
    retry_after: f64,
    meta: RateLimitedMetaJson<'a>,
}

#[derive(Serialize)]
struct RateLimitedMetaJson<'a> {
    guild_id: Snowflake,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// RATE_LIMITED's `d` for a full member request made again within the interval: retry `wait`
/// later (seconds, to the millisecond).
pub(crate) fn rate_limited_json(
    guild_id: Snowflake,
    nonce: Option<&str>,
    wait: Duration,
) -> String {
    let json = RateLimitedJson {
        opcode: 8,
        retry_after: (wait.as_secs_f64() * 1000.0).round() / 1000.0,
        meta: RateLimitedMetaJson { guild_id, nonce },
    };
    sonic_rs::to_string(&json).unwrap_or_default()
}

/// Applies a test's [`ChunkFault`] to the chunks answering one request: the chunks to send now,
/// in order, and those to send after a delay.
pub(crate) fn apply_fault(
    chunks: Vec<String>,
    fault: Option<ChunkFault>,
) -> (Vec<String>, Vec<(Duration, String)>) {
    let mut chunks: Vec<(u32, String)> = (0..).zip(chunks).collect();
    let mut delayed = Vec::new();
    match fault {
        None => {}
        Some(ChunkFault::DropAll) => chunks.clear(),
        Some(ChunkFault::Drop(indices)) => chunks.retain(|(i, _)| !indices.contains(i)),
        Some(ChunkFault::Reverse) => chunks.reverse(),
        Some(ChunkFault::Duplicate(indices)) => {
            let dups: Vec<_> = chunks
                .iter()
                .filter(|(i, _)| indices.contains(i))
                .cloned()
                .collect();
            chunks.extend(dups);
        }
        Some(ChunkFault::Delay(indices, by)) => {
            let (late, now): (Vec<_>, Vec<_>) =
                chunks.into_iter().partition(|(i, _)| indices.contains(i));
            chunks = now;
            delayed = late.into_iter().map(|(_, c)| (by, c)).collect();
        }
    }
    (chunks.into_iter().map(|(_, c)| c).collect(), delayed)
}

impl World {
    /// The `d` of every GUILD_MEMBERS_CHUNK answering `request` (presences included when
    /// `presences`).
    pub fn members_chunk_json(
        &self,
        guild: &Guild,
        request: &RequestGuildMembers,
        presences: bool,
    ) -> Vec<String> {
        chunks(self, guild, request, presences)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorldConfig;
    use gateway_model::GuildMembersChunk;

    fn read(d: &str) -> GuildMembersChunk {
        sonic_rs::from_str(d).unwrap()
    }

    #[test]
    fn full_list_in_chunks_of_1000() {
        let w = World::new(WorldConfig::uniform(1, 1, 2500));
        let g = &w.guilds()[0];
        let r = RequestGuildMembers::builder(g.id)
            .query("", 0)
            .nonce("n1")
            .build()
            .unwrap();
        let chunks: Vec<_> = chunks(&w, g, &r, false).iter().map(|c| read(c)).collect();
        assert_eq!(chunks.len(), 3);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(
                (c.chunk_index, c.chunk_count, c.nonce.as_deref()),
                (i as u32, 3, Some("n1"))
            );
            assert!(c.presences.is_none());
        }
        let total: usize = chunks
            .iter()
            .map(|c| {
                c.members
                    .deserialize::<Vec<sonic_rs::Value>>()
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(total, 2500);
    }

    #[test]
    fn query_limit_user_ids_and_presences() {
        let w = World::new(WorldConfig::uniform(2, 1, 3000));
        let g = &w.guilds()[0];
        let r = RequestGuildMembers::builder(g.id)
            .query("NO", 5)
            .build()
            .unwrap();
        let c = read(&chunks(&w, g, &r, true)[0]);
        let members: Vec<sonic_rs::Value> = c.members.deserialize().unwrap();
        assert_eq!(members.len(), 5);
        assert!(c.presences.is_some());
        let known = w.member(g, 7).id;
        let r = RequestGuildMembers::builder(g.id)
            .user_ids([known, Snowflake::new(42)])
            .build()
            .unwrap();
        let c = read(&chunks(&w, g, &r, false)[0]);
        assert_eq!(c.not_found, vec![Snowflake::new(42)]);
        assert_eq!(
            c.members
                .deserialize::<Vec<sonic_rs::Value>>()
                .unwrap()
                .len(),
            1
        );
        let none = RequestGuildMembers::builder(g.id)
            .query("zzz", 10)
            .build()
            .unwrap();
        let c = read(&chunks(&w, g, &none, false)[0]);
        assert_eq!((c.chunk_index, c.chunk_count), (0, 1));
    }
}
