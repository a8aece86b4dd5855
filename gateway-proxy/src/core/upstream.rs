//! The upstream side: each shard's READY, its dispatches into the cache and the replay log,
//! the answers routed to the clients that asked, and every attached client brought up to the
//! log's head.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use gateway_model::Intents;
use gateway_server::Connection;

use super::session::ClientSession;
use super::{ClientId, ProxyCore};
use crate::cache::{GuildCache, json};
use crate::config::ProxyConfig;
use crate::intents;
use crate::log::ReplayLog;

/// An upstream session's READY, as the shard received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamReady {
    /// READY's `d`, raw JSON: its `user`, `application`, `shard` and `v` are what clients
    /// get; `guilds` lists the shard's guilds.
    pub data: String,
}

/// One upstream shard as the proxy holds it.
#[derive(Debug)]
pub(super) struct ShardState {
    pub(super) log: ReplayLog,
    pub(super) cache: GuildCache,
    /// READY's top-level fields, but `session_id`, `resume_gateway_url` and `guilds`.
    template: Option<Vec<(String, String)>>,
    /// Sessions on a connection, brought up to the log's head after every entry.
    pub(super) attached: BTreeSet<Arc<str>>,
    /// Sessions that identified before the shard's first READY.
    pub(super) waiting: Vec<Arc<str>>,
}

impl ShardState {
    pub(super) fn new(config: &ProxyConfig) -> Self {
        Self {
            log: ReplayLog::new(config.log),
            cache: GuildCache::new(config.cache.clone()),
            template: None,
            attached: BTreeSet::new(),
            waiting: Vec::new(),
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        self.template.is_some()
    }

    /// A client's READY: the upstream's, with the client's session, the proxy's URL, and every
    /// guild of the shard (unavailable until its GUILD_CREATE).
    pub(super) fn ready_json(&self, session: &str, url: &str) -> Option<String> {
        let template = self.template.as_ref()?;
        let guilds = {
            let items: Vec<String> = self
                .cache
                .guilds()
                .map(|(id, _)| format!(r#"{{"id":"{id}","unavailable":true}}"#))
                .collect();
            format!("[{}]", items.join(","))
        };
        let session = sonic_rs::to_string(session).ok()?;
        let url = sonic_rs::to_string(url).ok()?;
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(template.len() + 3);
        for (key, value) in template {
            fields.push((key, value));
            if key == "user" {
                fields.push(("guilds", &guilds));
                fields.push(("session_id", &session));
                fields.push(("resume_gateway_url", &url));
            }
        }
        if !template.iter().any(|(k, _)| k == "user") {
            fields.extend([
                ("guilds", guilds.as_str()),
                ("session_id", &session),
                ("resume_gateway_url", &url),
            ]);
        }
        Some(json::object(fields))
    }
}

/// Brings attached session `s` up to the log's head on `conn`.
pub(super) fn pump(log: &ReplayLog, s: &mut ClientSession, conn: &mut Connection) {
    while s.pos < log.next_pos() {
        let Some(entry) = log.get(s.pos) else {
            // Behind the log's start: only a session resumed from a position still held is
            // attached, so this does not happen; the session skips to what is held.
            s.pos = log.first_pos();
            continue;
        };
        let gets = entry.is_for(&s.id, s.intents);
        if let Some(seq) = s.advance(gets) {
            conn.send_dispatch(&entry.name, seq, &entry.data);
        }
    }
    s.trim(log);
}

impl ProxyCore {
    /// Upstream shard `shard` has a session: READY. Clients see nothing of it but, after a new
    /// upstream session, GUILD_DELETE for the guilds it no longer lists; the shard's guilds
    /// follow as GUILD_CREATE dispatches, as they come.
    pub fn handle_upstream_ready(&mut self, now: Instant, shard: u32, ready: UpstreamReady) {
        let Some(state) = self.shards.get_mut(&shard) else {
            return;
        };
        let Some(fields) = json::fields(&ready.data) else {
            tracing::warn!(shard, "upstream READY is not a JSON object");
            return;
        };
        let guilds: Vec<u64> = fields
            .iter()
            .find(|(k, _)| k == "guilds")
            .map(|(_, list)| {
                sonic_rs::to_array_iter(*list)
                    .filter_map(Result::ok)
                    .filter_map(|g| json::str_field(g.as_raw_str(), &["id"]))
                    .filter_map(|id| id.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let template = fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "session_id" | "resume_gateway_url" | "guilds"))
            .map(|(k, v)| (k.clone(), (*v).to_owned()))
            .collect();
        let first = state.template.replace(template).is_none();
        let gone = state.cache.reset(guilds);
        if !first {
            tracing::info!(shard, gone = gone.len(), "upstream has a new session");
            for id in gone {
                let data: Arc<str> = format!(r#"{{"id":"{id}"}}"#).into();
                state
                    .log
                    .push(now, "GUILD_DELETE".into(), data, Intents::GUILDS, None);
            }
        }
        for session in std::mem::take(&mut state.waiting) {
            self.start(now, &session);
        }
        self.deliver(now, shard);
    }

    /// A dispatch from upstream shard `shard` (not READY or RESUMED): into the cache, into the
    /// log for the clients it is for, and out to those attached.
    pub fn handle_upstream_dispatch(&mut self, now: Instant, shard: u32, name: &str, data: &str) {
        let Some(state) = self.shards.get_mut(&shard) else {
            return;
        };
        if let Err(e) = state.cache.apply(name, data) {
            tracing::warn!(shard, event = name, error = %e, "dispatch not cached");
        }
        let name: Arc<str> = name.into();
        for (to, data) in self.route(&name, data) {
            let required = match &to {
                Some(_) => Intents::empty(),
                None => intents::required(&name, json::field(&data, "guild_id").is_some()),
            };
            if let Some(state) = self.shards.get_mut(&shard) {
                state.log.push(now, Arc::clone(&name), data, required, to);
            }
        }
        self.deliver(now, shard);
    }

    /// Who a dispatch goes to, with its `d` for each: an answer to one client's request goes to
    /// that client alone (a member chunk under the client's own nonce), the rest to every
    /// client whose intents ask for it.
    fn route(&mut self, name: &str, data: &str) -> Vec<(Option<Arc<str>>, Arc<str>)> {
        let guild = || json::str_field(data, &["guild_id"]).and_then(|g| g.parse::<u64>().ok());
        match name {
            "GUILD_MEMBERS_CHUNK" => {
                let Some(ours) = json::str_field(data, &["nonce"]) else {
                    return Vec::new();
                };
                let index = json::field(data, "chunk_index").and_then(|i| i.parse::<u64>().ok());
                let count = json::field(data, "chunk_count").and_then(|i| i.parse::<u64>().ok());
                let last = matches!((index, count), (Some(i), Some(c)) if i + 1 >= c);
                self.requests
                    .member_answer(&ours, last)
                    .into_iter()
                    .filter_map(|(session, theirs)| {
                        let theirs = raw_string(theirs.as_deref());
                        let d = json::with_field(data, "nonce", theirs.as_deref())?;
                        Some((Some(session), d.into()))
                    })
                    .collect()
            }
            "RATE_LIMITED" => {
                let Some(ours) = json::str_field(data, &["meta", "nonce"]) else {
                    return Vec::new();
                };
                let meta = json::field(data, "meta").unwrap_or("{}");
                self.requests
                    .member_answer(&ours, true)
                    .into_iter()
                    .filter_map(|(session, theirs)| {
                        let theirs = raw_string(theirs.as_deref());
                        let meta = json::with_field(meta, "nonce", theirs.as_deref())?;
                        let d = json::with_field(data, "meta", Some(&meta))?;
                        Some((Some(session), d.into()))
                    })
                    .collect()
            }
            "VOICE_SERVER_UPDATE" => guild()
                .and_then(|g| self.requests.voice_answer(g))
                .map(|s| vec![(Some(s), data.into())])
                .unwrap_or_default(),
            "SOUNDBOARD_SOUNDS" => guild()
                .map(|g| self.requests.soundboard_answer(g))
                .unwrap_or_default()
                .into_iter()
                .map(|s| (Some(s), data.into()))
                .collect(),
            "CHANNEL_INFO" => guild()
                .map(|g| self.requests.channel_info_answer(g))
                .unwrap_or_default()
                .into_iter()
                .map(|s| (Some(s), data.into()))
                .collect(),
            _ => vec![(None, data.into())],
        }
    }

    /// Brings every session attached to `shard` up to its log's head.
    pub(super) fn deliver(&mut self, now: Instant, shard: u32) {
        let Some(state) = self.shards.get(&shard) else {
            return;
        };
        let mut touched: Vec<ClientId> = Vec::with_capacity(state.attached.len());
        for session in &state.attached {
            let Some(s) = self.sessions.get_mut(session) else {
                continue;
            };
            let Some(c) = s.client.and_then(|id| self.clients.get_mut(&id)) else {
                continue;
            };
            pump(&state.log, s, &mut c.conn);
            touched.extend(s.client);
        }
        for client in touched {
            self.flush(now, client);
        }
    }
}

/// A string as raw JSON (`None` stays `None`: the field is taken out).
fn raw_string(value: Option<&str>) -> Option<String> {
    value.and_then(|v| sonic_rs::to_string(v).ok())
}
