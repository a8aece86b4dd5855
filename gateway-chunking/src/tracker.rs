//! The tracker's sans-IO core.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use gateway_model::{
    DispatchEvent, GuildCreate, GuildDelete, GuildMembersChunk, Intents, RateLimited,
    RateLimitedMeta, Ready, RequestGuildMembers, Snowflake,
};
use gateway_shard::{Reconnect, ShardEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Discord's limit on full member list requests: one per guild per 30 s.
pub const FULL_REQUEST_INTERVAL: Duration = Duration::from_secs(30);
/// The longest `retry_after` a RATE_LIMITED is taken at: Discord's own limit is 30 s, so a larger
/// (or non-finite) value is bogus and waits this long instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// The largest `chunk_count` believed: 100,000 chunks of 1,000 is 100 million members, over any
/// guild's size. A chunk announcing more is counted as out of range and otherwise ignored, so a
/// hostile count cannot make the tracker hold a set of billions of missing indices.
pub const MAX_CHUNK_COUNT: u32 = 100_000;

/// `retry_after` seconds as a duration within `0..=MAX_RETRY_AFTER`.
fn retry_delay(retry_after: f64) -> Duration {
    if retry_after.is_nan() || retry_after <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(retry_after)
        .unwrap_or(MAX_RETRY_AFTER)
        .min(MAX_RETRY_AFTER)
}

/// How the tracker behaves.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// The bot's shard count.
    pub shard_count: u32,
    /// The shards this tracker serves (its group's range).
    pub shards: BTreeSet<u32>,
    /// The shards' intents.
    pub intents: Intents,
    /// A request with no chunk for this long finishes. Default 5 s.
    pub timeout: Duration,
    /// Request every large guild's member list on GUILD_CREATE.
    pub auto_chunk: bool,
    /// With auto-chunking, ask for presences too (when the shards have GUILD_PRESENCES).
    pub chunk_presences: bool,
    /// With auto-chunking, also request small guilds when presences are not available (to fill a
    /// member cache that GUILD_CREATE only partly fills).
    pub chunk_all_without_presences: bool,
    /// Request again the guilds whose requests were incomplete or unanswered.
    pub rerequest_missed: bool,
    /// The most tries of one guild's automatic request (rate limits and re-requests).
    pub max_tries: u32,
    /// Seed of the nonces. Default: drawn for each config from std's `RandomState` (OS
    /// randomness), so that a restarted process does not use its predecessor's nonces, which
    /// chunks still in flight for them would answer; set it for a run that replays exactly.
    pub seed: u64,
    /// READY guilds with neither GUILD_CREATE nor GUILD_DELETE this long after the shard's last
    /// startup progress count as missed. Default 30 s.
    pub guild_create_timeout: Duration,
}

impl TrackerConfig {
    /// The defaults for shards `shards` of `shard_count`, auto-chunking off.
    pub fn new(shard_count: u32, shards: impl IntoIterator<Item = u32>, intents: Intents) -> Self {
        Self {
            shard_count: shard_count.max(1),
            shards: shards.into_iter().collect(),
            intents,
            timeout: Duration::from_secs(5),
            auto_chunk: false,
            chunk_presences: false,
            chunk_all_without_presences: false,
            rerequest_missed: false,
            max_tries: 3,
            seed: random_seed(),
            guild_create_timeout: Duration::from_secs(30),
        }
    }
}

/// A config's default nonce seed, drawn from OS randomness (std's `RandomState`): the one place
/// where randomness enters the tracker.
#[allow(clippy::disallowed_methods)]
fn random_seed() -> u64 {
    std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8)
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every chunk arrived.
    Complete,
    /// Some chunks never arrived within the timeout.
    Incomplete,
    /// No chunk arrived within the timeout.
    NoReply,
    /// Discord answered RATE_LIMITED.
    RateLimited {
        /// Seconds to wait before asking again.
        retry_after: f64,
    },
    /// The shard disconnected before the request finished.
    Interrupted,
    /// The request never reached its shard (the shard had stopped, say).
    NotSent,
}

/// A finished request (`ChunkRequestFinished`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRequestFinished {
    /// The shard it went through.
    pub shard: u32,
    /// The guild.
    pub guild_id: Snowflake,
    /// The request's nonce.
    pub nonce: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How many chunks the answer has, once one arrived.
    pub chunk_count: Option<u32>,
    /// When the first chunk arrived.
    pub first_received_at: Option<Instant>,
    /// When the last chunk arrived.
    pub last_received_at: Option<Instant>,
    /// Chunk indices that never arrived (all of them when none did and the count is known).
    pub missed_chunks: BTreeSet<u32>,
    /// Requested user ids that are not members (union over chunks).
    pub not_found_ids: BTreeSet<Snowflake>,
    /// Chunks received twice.
    pub duplicate_chunks: u32,
    /// Chunks with an index outside `0..chunk_count`.
    pub out_of_range_chunks: u32,
    /// Whether the tracker asked (auto-chunking or a re-request), not the user.
    pub automatic: bool,
    /// Whether the tracker will ask again (rate limit or re-request).
    pub retrying: bool,
}

/// What the tracker reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChunkEvent {
    /// A tracked request finished.
    RequestFinished(ChunkRequestFinished),
    /// A shard finished the chunking its READY started; once per READY.
    ShardFinishedChunking {
        /// The shard.
        shard: u32,
        /// Guilds whose requests ended incomplete.
        incomplete_guild_ids: Vec<Snowflake>,
        /// Guilds with no answer at all, or that stayed unavailable.
        missed_guild_ids: Vec<Snowflake>,
        /// Guilds whose requests completed.
        complete_guild_ids: Vec<Snowflake>,
        /// From READY to this event.
        took: Duration,
    },
    /// Every shard of the group identified and finished chunking; once per start.
    FinishedChunking {
        /// From the first READY to this event.
        took: Duration,
    },
}

#[derive(Debug)]
struct Request {
    shard: u32,
    guild: Snowflake,
    count: Option<u32>,
    received: BTreeSet<u32>,
    first: Option<Instant>,
    last: Option<Instant>,
    deadline: Instant,
    not_found: BTreeSet<Snowflake>,
    duplicates: u32,
    out_of_range: u32,
    automatic: bool,
    tries: u32,
}

#[derive(Debug)]
struct Startup {
    ready_at: Instant,
    /// READY guilds still without GUILD_CREATE count as missed after this.
    deadline: Instant,
    /// READY's guilds with no result yet.
    pending: BTreeSet<Snowflake>,
    complete: Vec<Snowflake>,
    incomplete: Vec<Snowflake>,
    missed: Vec<Snowflake>,
}

/// An automatic request waiting for its guild's 30 s window or a rate limit.
#[derive(Debug, Clone, Copy)]
struct Delayed {
    at: Instant,
    shard: u32,
    guild: Snowflake,
    tries: u32,
}

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The request is invalid.
    #[error(transparent)]
    Invalid(#[from] gateway_model::RequestGuildMembersError),
    /// The shards lack an intent the request needs.
    #[error(transparent)]
    MissingIntent(#[from] gateway_model::MissingIntent),
    /// No shard of this tracker covers the guild.
    #[error("guild {guild} is on shard {shard}, which this tracker does not serve")]
    NoLocalShard {
        /// The guild.
        guild: Snowflake,
        /// Its shard.
        shard: u32,
    },
}

/// One thing the [`Tracker`] asks of its driver, from [`Tracker::poll_output`].
#[derive(Debug, Clone, PartialEq)]
#[must_use = "the driver must act on every output"]
pub enum TrackerOutput {
    /// Send this member request through this shard.
    Send {
        /// The shard whose connection carries the guild.
        shard: u32,
        /// The request, nonce included.
        request: RequestGuildMembers,
    },
    /// Tell the user.
    Event(ChunkEvent),
}

/// The chunk tracker as a state machine: feed it the shards' events and the time; poll it for
/// the member requests to send, its events, and when to call [`handle_timeout`](Self::handle_timeout).
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    rng: ChaCha8Rng,
    next_nonce: u64,
    requests: BTreeMap<String, Request>,
    startups: BTreeMap<u32, Startup>,
    delayed: Vec<Delayed>,
    /// Shards between a disconnect and their next READY or RESUMED: their due requests wait.
    down: BTreeSet<u32>,
    last_full_request: BTreeMap<Snowflake, Instant>,
    commands: VecDeque<(u32, RequestGuildMembers)>,
    events: VecDeque<ChunkEvent>,
    /// Shards of the group that finished their first startup.
    finished_shards: BTreeSet<u32>,
    first_ready: Option<Instant>,
    finished_fired: bool,
    warned_intent: bool,
}

impl Tracker {
    /// A tracker with no request open.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            next_nonce: 0,
            requests: BTreeMap::new(),
            startups: BTreeMap::new(),
            delayed: Vec::new(),
            down: BTreeSet::new(),
            last_full_request: BTreeMap::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            finished_shards: BTreeSet::new(),
            first_ready: None,
            finished_fired: false,
            warned_intent: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Turns auto-chunking on or off.
    pub fn set_auto_chunk_members(&mut self, on: bool, chunk_presences: bool) {
        self.config.auto_chunk = on;
        self.config.chunk_presences = chunk_presences;
    }

    /// Requests open now.
    pub fn open_requests(&self) -> usize {
        self.requests.len()
    }

    /// A fresh nonce: unique for the tracker's life, at most 32 bytes.
    fn nonce(&mut self) -> String {
        self.next_nonce += 1;
        format!("{:x}.{:016x}", self.next_nonce, self.rng.random::<u64>())
    }

    /// Tracks a user's request: checks it, gives it a nonce, and queues it. Returns the nonce.
    pub fn handle_request(
        &mut self,
        now: Instant,
        builder: gateway_model::RequestGuildMembersBuilder,
        guild: Snowflake,
    ) -> Result<String, TrackError> {
        let shard = guild.shard_index(self.config.shard_count);
        if !self.config.shards.contains(&shard) {
            return Err(TrackError::NoLocalShard { guild, shard });
        }
        let nonce = self.nonce();
        let request = builder.nonce(nonce.clone()).build()?;
        request.check_intents(self.config.intents)?;
        self.open(now, shard, request, false, 1);
        Ok(nonce)
    }

    fn open(
        &mut self,
        now: Instant,
        shard: u32,
        request: RequestGuildMembers,
        automatic: bool,
        tries: u32,
    ) {
        let Some(nonce) = request.nonce().map(str::to_owned) else {
            return;
        };
        if request.is_full_list() {
            self.last_full_request.insert(request.guild_id(), now);
        }
        let guild = request.guild_id();
        self.commands.push_back((shard, request));
        self.requests.insert(
            nonce,
            Request {
                shard,
                guild,
                count: None,
                received: BTreeSet::new(),
                first: None,
                last: None,
                deadline: now + self.config.timeout,
                not_found: BTreeSet::new(),
                duplicates: 0,
                out_of_range: 0,
                automatic,
                tries,
            },
        );
    }

    /// An automatic full-list request for `guild`, now or when its 30 s window allows.
    fn auto_request(&mut self, now: Instant, shard: u32, guild: Snowflake, tries: u32) {
        if let Some(last) = self.last_full_request.get(&guild) {
            let allowed = *last + FULL_REQUEST_INTERVAL;
            if now < allowed {
                if self.delayed.iter().any(|d| d.guild == guild) {
                    // One held request per guild: more GUILD_CREATEs do not add downloads.
                    return;
                }
                self.delayed.push(Delayed {
                    at: allowed,
                    shard,
                    guild,
                    tries,
                });
                return;
            }
        }
        let presences =
            self.config.chunk_presences && self.config.intents.contains(Intents::GUILD_PRESENCES);
        let nonce = self.nonce();
        match RequestGuildMembers::builder(guild)
            .query("", 0)
            .presences(presences)
            .nonce(nonce)
            .build()
        {
            Ok(request) => self.open(now, shard, request, true, tries),
            Err(e) => tracing::error!(%guild, error = %e, "cannot build the automatic request"),
        }
    }

    // ---- inputs ----

    /// Feeds one shard event.
    pub fn handle_shard_event(&mut self, now: Instant, shard: u32, event: &ShardEvent) {
        match event {
            ShardEvent::Ready(ready) => self.handle_ready(now, shard, ready),
            ShardEvent::Dispatch(d) => match &d.event {
                DispatchEvent::GuildCreate(g) => self.handle_guild_create(now, shard, g),
                DispatchEvent::GuildDelete(g) => self.handle_guild_delete(now, shard, *g),
                DispatchEvent::GuildMembersChunk(c) => self.handle_chunk(now, shard, c),
                DispatchEvent::RateLimited(r) => self.handle_rate_limited(now, shard, r),
                _ => {}
            },
            ShardEvent::Disconnected { next, .. } => self.handle_disconnect(now, shard, *next),
            ShardEvent::Resumed { .. } => self.handle_resumed(now, shard),
            _ => {}
        }
    }

    /// READY: chunking of the shard's guilds starts (replacing any earlier startup of the shard).
    ///
    /// A new session sends every guild again, so requests still held for the shard from an
    /// earlier session are dropped: the new GUILD_CREATEs schedule them once.
    pub fn handle_ready(&mut self, now: Instant, shard: u32, ready: &Ready) {
        self.down.remove(&shard);
        self.delayed.retain(|d| d.shard != shard);
        if self.startups.contains_key(&shard) {
            // A re-identify mid-chunking: the earlier startup ends with what it has.
            self.finish_startup(shard, now, true);
        }
        self.first_ready.get_or_insert(now);
        let pending = ready.guilds.iter().map(|g| g.id).collect();
        self.startups.insert(
            shard,
            Startup {
                ready_at: now,
                deadline: now + self.config.guild_create_timeout,
                pending,
                complete: Vec::new(),
                incomplete: Vec::new(),
                missed: Vec::new(),
            },
        );
        self.check_startup(shard, now);
    }

    /// GUILD_CREATE: auto-chunk it if configured and needed; otherwise it needs nothing.
    pub fn handle_guild_create(&mut self, now: Instant, shard: u32, guild: &GuildCreate) {
        let grace = self.config.guild_create_timeout;
        if let Some(startup) = self.startups.get_mut(&shard) {
            startup.deadline = now + grace;
        }
        if guild.unavailable {
            return self.handle_guild_delete(
                now,
                shard,
                GuildDelete {
                    id: guild.id,
                    unavailable: Some(true),
                },
            );
        }
        let members = self.config.intents.contains(Intents::GUILD_MEMBERS);
        let presences = self.config.intents.contains(Intents::GUILD_PRESENCES);
        let wanted = self.config.auto_chunk
            && (guild.large == Some(true)
                || (self.config.chunk_all_without_presences && !presences));
        if wanted && !members && !std::mem::replace(&mut self.warned_intent, true) {
            tracing::warn!("auto-chunking needs GUILD_MEMBERS; not requesting member lists");
        }
        if wanted && members {
            self.auto_request(now, shard, guild.id, 1);
        } else if let Some(startup) = self.startups.get_mut(&shard) {
            if startup.pending.remove(&guild.id) {
                startup.complete.push(guild.id);
            }
            self.check_startup(shard, now);
        }
    }

    /// GUILD_DELETE: a startup guild that stays unavailable counts as missed.
    pub fn handle_guild_delete(&mut self, now: Instant, shard: u32, guild: GuildDelete) {
        if let Some(startup) = self.startups.get_mut(&shard)
            && startup.pending.remove(&guild.id)
        {
            startup.missed.push(guild.id);
        }
        self.check_startup(shard, now);
    }

    /// GUILD_MEMBERS_CHUNK for one of the tracked nonces (others are ignored).
    pub fn handle_chunk(&mut self, now: Instant, _shard: u32, chunk: &GuildMembersChunk) {
        let Some(nonce) = chunk.nonce.as_deref() else {
            return;
        };
        let timeout = self.config.timeout;
        let Some(r) = self.requests.get_mut(nonce) else {
            return;
        };
        if chunk.chunk_count > MAX_CHUNK_COUNT {
            tracing::warn!(
                chunk_count = chunk.chunk_count,
                "GUILD_MEMBERS_CHUNK with an impossible chunk_count ignored"
            );
            r.out_of_range += 1;
            return;
        }
        let count = *r.count.get_or_insert(chunk.chunk_count.max(1));
        r.first.get_or_insert(now);
        r.last = Some(now);
        r.deadline = now + timeout;
        if chunk.chunk_index >= count {
            r.out_of_range += 1;
        } else if !r.received.insert(chunk.chunk_index) {
            r.duplicates += 1;
        }
        r.not_found.extend(chunk.not_found.iter().copied());
        if r.received.len() as u32 == count {
            let nonce = nonce.to_owned();
            self.finish(&nonce, Outcome::Complete, now);
        }
    }

    /// RATE_LIMITED for a tracked request: it ends now; an automatic one is asked again after
    /// `retry_after` (a bounded number of times).
    pub fn handle_rate_limited(&mut self, now: Instant, _shard: u32, limited: &RateLimited) {
        let RateLimitedMeta::RequestGuildMembers {
            nonce: Some(nonce), ..
        } = &limited.meta
        else {
            return;
        };
        if self.requests.contains_key(nonce) {
            let nonce = nonce.clone();
            self.finish(
                &nonce,
                Outcome::RateLimited {
                    retry_after: limited.retry_after,
                },
                now,
            );
        }
    }

    /// The shard disconnected: its open requests end as interrupted (a re-identify's READY
    /// starts its chunking anew).
    pub fn handle_disconnect(&mut self, now: Instant, shard: u32, next: Reconnect) {
        let open: Vec<String> = self
            .requests
            .iter()
            .filter(|(_, r)| r.shard == shard)
            .map(|(n, _)| n.clone())
            .collect();
        for nonce in open {
            self.finish(&nonce, Outcome::Interrupted, now);
        }
        self.down.insert(shard);
        match next {
            Reconnect::Stop => {
                self.delayed.retain(|d| d.shard != shard);
                if self.startups.contains_key(&shard) {
                    self.finish_startup(shard, now, true);
                }
            }
            // A new session is coming: its GUILD_CREATEs will ask again, once.
            Reconnect::Reidentify => self.delayed.retain(|d| d.shard != shard),
            Reconnect::Resume => {}
        }
    }

    /// The request with `nonce` could not be handed to its shard: it ends as
    /// [`Outcome::NotSent`] now, rather than at its timeout.
    pub fn handle_send_failed(&mut self, now: Instant, nonce: &str) {
        self.finish(nonce, Outcome::NotSent, now);
    }

    /// RESUMED: the shard's session goes on; requests held while it was down may go out.
    pub fn handle_resumed(&mut self, now: Instant, shard: u32) {
        if self.down.remove(&shard) {
            self.handle_timeout(now);
        }
    }

    /// Time passed: requests time out, delayed requests go out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for nonce in expired {
            let outcome = match self.requests.get(&nonce) {
                Some(r) if r.first.is_none() => Outcome::NoReply,
                _ => Outcome::Incomplete,
            };
            self.finish(&nonce, outcome, now);
        }
        let stalled: Vec<u32> = self
            .startups
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for shard in stalled {
            let open: BTreeSet<Snowflake> = self
                .requests
                .values()
                .filter(|r| r.shard == shard)
                .map(|r| r.guild)
                .chain(
                    self.delayed
                        .iter()
                        .filter(|d| d.shard == shard)
                        .map(|d| d.guild),
                )
                .collect();
            if let Some(startup) = self.startups.get_mut(&shard) {
                let never: Vec<Snowflake> = startup
                    .pending
                    .iter()
                    .filter(|g| !open.contains(g))
                    .copied()
                    .collect();
                for g in never {
                    startup.pending.remove(&g);
                    startup.missed.push(g);
                }
                startup.deadline = now + self.config.guild_create_timeout;
            }
            self.check_startup(shard, now);
        }
        // A shard that is down sends nothing: its due requests wait for READY (which drops them)
        // or RESUMED.
        let down = &self.down;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|d| d.at <= now && !down.contains(&d.shard));
        self.delayed = later;
        for d in due {
            self.auto_request(now, d.shard, d.guild, d.tries);
        }
    }

    // ---- outputs ----

    /// The next thing to do: member requests to send first, then events for the user. Call it
    /// until `None` after every input (the same drain rule as the shard's
    /// [`Session`](gateway_shard::Session); see [`Output`](gateway_shard::Output)).
    #[must_use = "the driver must act on every output"]
    pub fn poll_output(&mut self, _now: Instant) -> Option<TrackerOutput> {
        if let Some((shard, request)) = self.commands.pop_front() {
            return Some(TrackerOutput::Send { shard, request });
        }
        self.events.pop_front().map(TrackerOutput::Event)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let requests = self.requests.values().map(|r| r.deadline).min();
        // Requests held for a shard that is down wake nobody: RESUMED or READY decides.
        let delayed = self
            .delayed
            .iter()
            .filter(|d| !self.down.contains(&d.shard))
            .map(|d| d.at)
            .min();
        let startups = self
            .startups
            .values()
            .filter(|s| !s.pending.is_empty())
            .map(|s| s.deadline)
            .min();
        requests.into_iter().chain(delayed).chain(startups).min()
    }

    // ---- internals ----

    fn finish(&mut self, nonce: &str, outcome: Outcome, now: Instant) {
        let Some(r) = self.requests.remove(nonce) else {
            return;
        };
        let missed: BTreeSet<u32> = match r.count {
            Some(count) => (0..count).filter(|i| !r.received.contains(i)).collect(),
            None => BTreeSet::new(),
        };
        let retry = match &outcome {
            Outcome::RateLimited { retry_after }
                if r.automatic && r.tries < self.config.max_tries =>
            {
                Some(now + retry_delay(*retry_after))
            }
            Outcome::Incomplete | Outcome::NoReply
                if r.automatic
                    && self.config.rerequest_missed
                    && r.tries < self.config.max_tries =>
            {
                Some(now)
            }
            _ => None,
        };
        if let Some(at) = retry {
            // `last_full_request` keeps the 30 s window; a rate limit's retry_after says when.
            self.delayed.push(Delayed {
                at,
                shard: r.shard,
                guild: r.guild,
                tries: r.tries + 1,
            });
        }
        self.events
            .push_back(ChunkEvent::RequestFinished(ChunkRequestFinished {
                shard: r.shard,
                guild_id: r.guild,
                nonce: nonce.to_owned(),
                outcome: outcome.clone(),
                chunk_count: r.count,
                first_received_at: r.first,
                last_received_at: r.last,
                missed_chunks: missed,
                not_found_ids: r.not_found,
                duplicate_chunks: r.duplicates,
                out_of_range_chunks: r.out_of_range,
                automatic: r.automatic,
                retrying: retry.is_some(),
            }));
        if retry.is_some() {
            return;
        }
        if let Some(startup) = self.startups.get_mut(&r.shard) {
            if startup.pending.remove(&r.guild) {
                match outcome {
                    Outcome::Complete => startup.complete.push(r.guild),
                    Outcome::Incomplete => startup.incomplete.push(r.guild),
                    Outcome::Interrupted if r.first.is_some() => startup.incomplete.push(r.guild),
                    _ => startup.missed.push(r.guild),
                }
            }
            self.check_startup(r.shard, now);
        }
    }

    /// A startup is finished when every READY guild has a result and nothing is waiting.
    fn check_startup(&mut self, shard: u32, now: Instant) {
        let Some(startup) = self.startups.get(&shard) else {
            return;
        };
        let waiting = self
            .requests
            .values()
            .any(|r| r.shard == shard && startup.pending.contains(&r.guild))
            || self
                .delayed
                .iter()
                .any(|d| d.shard == shard && startup.pending.contains(&d.guild));
        if startup.pending.is_empty() && !waiting {
            self.finish_startup(shard, now, false);
        }
    }

    fn finish_startup(&mut self, shard: u32, now: Instant, cut_short: bool) {
        let Some(mut startup) = self.startups.remove(&shard) else {
            return;
        };
        if cut_short {
            startup.missed.extend(std::mem::take(&mut startup.pending));
        }
        self.events.push_back(ChunkEvent::ShardFinishedChunking {
            shard,
            incomplete_guild_ids: startup.incomplete,
            missed_guild_ids: startup.missed,
            complete_guild_ids: startup.complete,
            took: now.saturating_duration_since(startup.ready_at),
        });
        self.finished_shards.insert(shard);
        if !self.finished_fired
            && self
                .config
                .shards
                .iter()
                .all(|s| self.finished_shards.contains(s))
        {
            self.finished_fired = true;
            let took = self
                .first_ready
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            self.events.push_back(ChunkEvent::FinishedChunking { took });
        }
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
