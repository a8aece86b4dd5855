//! The upstream side: each shard's READY, its dispatches into the cache and the replay log,
//! the answers routed to the clients that asked, and every attached client brought up to the
//! log's head.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use gateway_model::Intents;

use super::session::ClientSession;
use super::{Client, ProxyCore};
use crate::cache::{Guild, GuildCache, Slot, json};
use crate::config::ProxyConfig;
use crate::intents;
use crate::log::{Entry, ReplayLog};

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
    /// The bot's user id, from READY: the one member a session without GUILD_PRESENCES gets.
    pub(super) bot: Option<u64>,
    /// The upstream position of the next dispatch ([`ProxyCore::handle_upstream_at`]).
    pub(super) next_upstream: u64,
}

impl ShardState {
    pub(super) fn new(config: &ProxyConfig) -> Self {
        Self {
            log: ReplayLog::new(config.log),
            cache: GuildCache::new(config.cache.clone()),
            template: None,
            attached: BTreeSet::new(),
            waiting: Vec::new(),
            bot: None,
            next_upstream: 1,
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

/// How far [`pump`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pumped {
    /// Up to the log's head.
    Done,
    /// Held back by the send window; the rest follows as the socket takes what was sent.
    Held,
    /// The session's place is no longer in the log: it fell too far behind.
    Gone,
}

/// Brings session `s` towards the log's head on client `c`, within `window` bytes not yet
/// taken by its socket: first the GUILD_CREATEs of its start, then the log.
pub(super) fn pump(
    state: &ShardState,
    s: &mut ClientSession,
    c: &mut Client,
    window: usize,
    now: Instant,
) -> Pumped {
    let log = &state.log;
    let mut room = window.saturating_sub(c.unsent);
    while let Some(&guild) = s.pending.front() {
        if room == 0 {
            c.stalled_since.get_or_insert(now);
            return Pumped::Held;
        }
        s.pending.pop_front();
        // A guild gone since READY has its GUILD_DELETE in the log.
        if let Some(Slot::Available(g)) = state.cache.guild(guild) {
            let d = g.to_json_for(s.intents, state.bot);
            room = room.saturating_sub(d.len() + 48);
            s.cover(guild, log.next_pos());
            c.conn
                .send_dispatch("GUILD_CREATE", s.synthetic(s.pos, true), &d);
        }
    }
    while s.pos < log.next_pos() {
        if room == 0 {
            c.stalled_since.get_or_insert(now);
            return Pumped::Held;
        }
        let Some(entry) = log.get(s.pos) else {
            return Pumped::Gone;
        };
        let gets = s.gets(entry);
        if let Some(seq) = s.advance(gets) {
            // An answer to it alone is in no other process's log.
            s.changed |= entry.to.is_some();
            match shaped(entry, s.intents, state.bot) {
                Some(d) => c.conn.send_dispatch(&entry.name, seq, &d),
                None => c.conn.send_dispatch(&entry.name, seq, &entry.data),
            }
            // An estimate (the frame may be compressed); `flush` counts what was sent exactly.
            room = room.saturating_sub(entry.name.len() + entry.data.len() + 32);
        }
    }
    s.trim(log);
    Pumped::Done
}

/// A live GUILD_CREATE for a session without GUILD_PRESENCES, shaped as Discord shapes it for
/// that session (see [`Guild::to_json_for`]); `None` when the entry goes as the upstream sent it.
fn shaped(entry: &Entry, intents: Intents, bot: Option<u64>) -> Option<String> {
    if &*entry.name != "GUILD_CREATE" || intents.contains(Intents::GUILD_PRESENCES) {
        return None;
    }
    // A GUILD_CREATE the cache could not read goes as the upstream sent it: the cache logged
    // why when it applied the dispatch, and a client is better off with Discord's shape than
    // with nothing.
    let guild = Guild::from_json(&entry.data, |_| true).ok()?;
    Some(guild.to_json_for(intents, bot))
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
        state.bot = json::str_field(&ready.data, &["user", "id"]).and_then(|id| id.parse().ok());
        let gone = state.cache.reset(guilds);
        if !first {
            tracing::info!(shard, gone = gone.len(), "upstream has a new session");
            for id in gone {
                let data: Arc<str> = format!(r#"{{"id":"{id}"}}"#).into();
                state.log.push(
                    now,
                    "GUILD_DELETE".into(),
                    data,
                    Intents::GUILDS,
                    None,
                    None,
                );
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
        // One scan of `d` for its guild serves the cache, the intents and the routing.
        let guild_id = json::str_field(data, &["guild_id"]);
        let in_guild = guild_id.is_some();
        let guild = guild_id.and_then(|g| g.parse::<u64>().ok());
        let held_by = state.cache.apply_in(name, data, guild).unwrap_or_else(|e| {
            tracing::warn!(shard, event = name, error = %e, "dispatch not cached");
            None
        });
        let name: Arc<str> = name.into();
        if let Some(state) = self.shards.get_mut(&shard) {
            state.log.set_upstream(state.next_upstream);
            state.next_upstream += 1;
        }
        for (to, data) in self.route(&name, data, guild) {
            // An answer to one session is its alone: no GUILD_CREATE stands in for it.
            let (required, held_by) = match &to {
                Some(_) => (Intents::empty(), None),
                None => (intents::required(&name, in_guild), held_by),
            };
            if let Some(state) = self.shards.get_mut(&shard) {
                state
                    .log
                    .push(now, Arc::clone(&name), data, required, to, held_by);
            }
        }
        self.deliver(now, shard);
    }

    /// Who a dispatch goes to, with its `d` for each: an answer to one client's request goes to
    /// that client alone (a member chunk under the client's own nonce), the rest to every
    /// client whose intents ask for it.
    fn route(
        &mut self,
        name: &str,
        data: &str,
        guild: Option<u64>,
    ) -> Vec<(Option<Arc<str>>, Arc<str>)> {
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
            "VOICE_SERVER_UPDATE" => guild
                .and_then(|g| self.requests.voice_answer(g))
                .map(|s| vec![(Some(s), data.into())])
                .unwrap_or_default(),
            "SOUNDBOARD_SOUNDS" | "CHANNEL_INFO" => {
                let askers = match (name, guild) {
                    ("SOUNDBOARD_SOUNDS", Some(g)) => self.requests.soundboard_answer(g),
                    (_, Some(g)) => self.requests.channel_info_answer(g),
                    (_, None) => Vec::new(),
                };
                // One copy of `d`, shared by every asker's entry.
                let d: Arc<str> = data.into();
                askers
                    .into_iter()
                    .map(|s| (Some(s), Arc::clone(&d)))
                    .collect()
            }
            _ => vec![(None, data.into())],
        }
    }

    /// Brings every session attached to `shard` up to its log's head.
    pub(super) fn deliver(&mut self, now: Instant, shard: u32) {
        let Some(state) = self.shards.get(&shard) else {
            return;
        };
        let sessions: Vec<Arc<str>> = state.attached.iter().cloned().collect();
        for session in sessions {
            self.catch_up(now, &session);
        }
    }

    /// Brings attached session `session` towards its log's head, then RESUMED if it was
    /// resuming and got there; a session that fell out of the log gets op 9.
    pub(super) fn catch_up(&mut self, now: Instant, session: &Arc<str>) {
        let window = self.config.send_window;
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let Some(client) = s.client else {
            return;
        };
        let (Some(state), Some(c)) = (self.shards.get(&s.shard), self.clients.get_mut(&client))
        else {
            return;
        };
        match pump(state, s, c, window, now) {
            Pumped::Done if s.resuming => {
                s.resuming = false;
                let head = state.log.next_pos();
                let replayed = s.seq;
                c.conn
                    .send_dispatch("RESUMED", s.synthetic(head, false), "{}");
                tracing::debug!(client, session = %s.id, seq = replayed, "client resumed");
            }
            Pumped::Done | Pumped::Held => {}
            Pumped::Gone => {
                tracing::warn!(client, session = %s.id, "client fell out of the replay log");
                let id = Arc::clone(&s.id);
                return self.invalid_session(now, client, &id);
            }
        }
        self.flush(now, client);
    }
}

/// A string as raw JSON (`None` stays `None`: the field is taken out).
fn raw_string(value: Option<&str>) -> Option<String> {
    value.and_then(|v| sonic_rs::to_string(v).ok())
}
