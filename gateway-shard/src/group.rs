//! A group of shards: `0..N`, or a range `a..b` of a total `N`, sharing one identify queue.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use gateway_model::{ChannelInfoField, Command, RequestGuildMembers, ShardId, Snowflake};
use tokio::sync::{Semaphore, mpsc};

use crate::identify::{IdentifyQueue, LocalIdentifyQueue};
use crate::sink::EventSink;
use crate::{
    CommandError, PresenceUpdate, ResumeInfo, SessionState, Shard, ShardConfig, ShardError,
    ShardEvent,
};
use gateway_model::{GatewayBot, SessionStartLimit};

/// Where a group's shard count comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardCount {
    /// This many shards, with this `max_concurrency`.
    Fixed {
        /// The bot's shard count.
        total: u32,
        /// The bot's `max_concurrency`.
        max_concurrency: u32,
    },
    /// Whatever `GET /gateway/bot` at `api_base` says when the group starts: the shard count,
    /// `max_concurrency`, the gateway URL and the session start budget, as hikari, twilight and
    /// discord.js do (feature `rest`).
    #[cfg(feature = "rest")]
    Recommended {
        /// The REST API to ask, e.g. [`DISCORD_API`](crate::DISCORD_API).
        api_base: String,
    },
}

/// How to run a group.
#[derive(Debug, Clone)]
pub struct ShardGroupConfig {
    /// The configuration every shard starts from (its `shard` is set per shard).
    pub shard: ShardConfig,
    /// The bot's shard count, or where to ask for it.
    pub count: ShardCount,
    /// The shards this group runs; `None` runs every shard of the bot.
    pub range: Option<Range<u32>>,
    /// The queue every identify of every shard waits in. Default: one in-process queue.
    pub identify_queue: Arc<dyn IdentifyQueue>,
    /// The most websocket handshakes at once, so a network blip does not reconnect every shard
    /// in the same instant. Default 4.
    pub reconnect_concurrency: usize,
    /// Sessions to resume, by shard id (from [`ShardGroup::close`]).
    pub resume: BTreeMap<u32, ResumeInfo>,
    /// The session start budget from `GET /gateway/bot`: given to the identify queue, and
    /// checked at start against the shards that must identify. Default: unknown (not checked),
    /// unless the count is `ShardCount::Recommended`, which fetches it.
    pub session_start_limit: Option<SessionStartLimit>,
}

impl ShardGroupConfig {
    /// Every shard `0..total` of the bot.
    pub fn new(shard: ShardConfig, total: u32, max_concurrency: u32) -> Self {
        Self::with_count(
            shard,
            ShardCount::Fixed {
                total: total.max(1),
                max_concurrency: max_concurrency.max(1),
            },
        )
    }

    /// Every shard of the bot, as many as Discord recommends: [`ShardGroup::start`] asks
    /// `GET /gateway/bot` on Discord's API (see [`with_api_base`](Self::with_api_base)) with the
    /// shard's token, and uses its URL, shard count, `max_concurrency` and session start budget.
    #[cfg(feature = "rest")]
    pub fn recommended(shard: ShardConfig) -> Self {
        Self::with_count(
            shard,
            ShardCount::Recommended {
                api_base: crate::DISCORD_API.to_owned(),
            },
        )
    }

    fn with_count(shard: ShardConfig, count: ShardCount) -> Self {
        Self {
            shard,
            count,
            range: None,
            identify_queue: Arc::new(LocalIdentifyQueue::new()),
            reconnect_concurrency: 4,
            resume: BTreeMap::new(),
            session_start_limit: None,
        }
    }

    /// Every shard of the bot as a `GET /gateway/bot` answer recommends: its URL, shard count,
    /// `max_concurrency` and session start budget.
    pub fn from_gateway_bot(shard: ShardConfig, info: &GatewayBot) -> Self {
        let mut config = Self::new(shard, 1, 1);
        config.apply(info);
        config
    }

    /// Takes a `GET /gateway/bot` answer as this group's count, URL and budget.
    fn apply(&mut self, info: &GatewayBot) {
        self.shard.gateway_url.clone_from(&info.url);
        let limit = info.session_start_limit;
        self.count = ShardCount::Fixed {
            total: info.shards.max(1),
            max_concurrency: limit.max_concurrency.max(1),
        };
        self.session_start_limit = Some(limit);
    }

    /// Asks another REST API for the recommended count (a fake gateway's
    /// `http://127.0.0.1:PORT/api/v10`). Changes nothing for a fixed count.
    #[cfg(feature = "rest")]
    #[must_use]
    pub fn with_api_base(mut self, url: impl Into<String>) -> Self {
        if let ShardCount::Recommended { api_base } = &mut self.count {
            *api_base = url.into();
        }
        self
    }

    /// Runs only shards `range` of the total (several processes can split one bot).
    #[must_use]
    pub fn with_range(mut self, range: Range<u32>) -> Self {
        self.range = Some(range);
        self
    }

    /// Shares an identify queue (with other groups, in this process or, with Redis, others).
    #[must_use]
    pub fn with_identify_queue(mut self, queue: Arc<dyn IdentifyQueue>) -> Self {
        self.identify_queue = queue;
        self
    }

    /// Resumes exported sessions.
    #[must_use]
    pub fn with_resume(mut self, sessions: BTreeMap<u32, ResumeInfo>) -> Self {
        self.resume = sessions;
        self
    }

    /// The count, `max_concurrency` and the range to run, or why they are not known.
    fn layout(&self) -> Result<(u32, u32, Range<u32>), ShardError> {
        let (total, max_concurrency) = match &self.count {
            ShardCount::Fixed {
                total,
                max_concurrency,
            } => (*total, *max_concurrency),
            #[cfg(feature = "rest")]
            ShardCount::Recommended { .. } => {
                return Err(ShardError::Config(
                    "the shard count is not known yet: ShardGroup::start asks GET /gateway/bot"
                        .to_owned(),
                ));
            }
        };
        let range = self.range.clone().unwrap_or(0..total);
        if range.start >= range.end || range.end > total {
            return Err(ShardError::Config(format!(
                "shard range {range:?} not within 0..{total}"
            )));
        }
        Ok((total, max_concurrency, range))
    }
}

/// One shard's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard id.
    pub id: u32,
    /// Where it stands.
    pub state: SessionState,
    /// Its latest heartbeat latency.
    pub latency: Option<Duration>,
    /// Its error, if it stopped with one.
    pub error: Option<ShardError>,
}

/// Progress of [`ShardGroup::start`] (and [`ShardGroup::wait_ready`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartProgress {
    /// Shards ready so far.
    pub ready: usize,
    /// Shards in the group.
    pub total: usize,
    /// Each shard's state.
    pub shards: Vec<(u32, SessionState)>,
    /// Why shards that are not up failed last (a refused connection, a close code and reason),
    /// so that a start that does not progress says why.
    pub failures: Vec<(u32, String)>,
}

/// Running shards, with one merged event stream tagged by shard id.
#[derive(Debug)]
pub struct ShardGroup {
    shards: BTreeMap<u32, Shard>,
    total: u32,
    gateway_bot: Option<GatewayBot>,
}

/// The group's events: `(shard id, event)`.
#[derive(Debug)]
pub struct GroupEvents {
    rx: mpsc::Receiver<(u32, ShardEvent)>,
}

impl GroupEvents {
    /// The next event of any shard.
    pub async fn next(&mut self) -> Option<(u32, ShardEvent)> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for GroupEvents {
    type Item = (u32, ShardEvent);

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Why a group command could not be routed or queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No shard of this group covers the guild.
    #[error("guild {guild} is on shard {shard}, which this group does not run")]
    NoLocalShard {
        /// The guild.
        guild: Snowflake,
        /// Its shard.
        shard: u32,
    },
    /// The shard refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Some shards refused a presence update that the others took: the group's shards now show
    /// different presences until the next update.
    #[error("{} of the group's shards refused the presence update (first: shard {}: {})",
        .failed.len(),
        .failed.first().map_or(0, |f| f.0),
        .failed.first().map_or_else(String::new, |f| f.1.to_string()))]
    Presence {
        /// Each shard that refused it, and why.
        failed: Vec<(u32, CommandError)>,
        /// The shards that took it.
        updated: Vec<u32>,
    },
}

impl ShardGroup {
    /// Starts every shard (each waits its turn in the identify queue) and returns at once.
    ///
    /// The count must be known (`ShardCount::Fixed`), and the session start budget is not
    /// checked; [`launch`](Self::launch) also asks `GET /gateway/bot` and checks the budget.
    pub fn spawn(config: ShardGroupConfig) -> Result<(Self, GroupEvents), ShardError> {
        let (total, max_concurrency, range) = config.layout()?;
        let limit = Arc::new(Semaphore::new(config.reconnect_concurrency.max(1)));
        let buffer = config.shard.event_buffer.max(1);
        let (tx, rx) = mpsc::channel(buffer);
        let mut shards = BTreeMap::new();
        for id in range {
            let shard_id =
                ShardId::new(id, total).map_err(|e| ShardError::Config(e.to_string()))?;
            let mut shard_config = config
                .shard
                .clone()
                .with_shard(shard_id)
                .with_identify_queue(Arc::clone(&config.identify_queue), max_concurrency)
                .with_seed(config.shard.seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            shard_config.connect_limit = Some(Arc::clone(&limit));
            shard_config.resume = config.resume.get(&id).cloned();
            let sink = EventSink::Group {
                shard: id,
                tx: tx.clone(),
            };
            shards.insert(id, Shard::spawn_into(shard_config, sink)?);
        }
        Ok((
            Self {
                shards,
                total,
                gateway_bot: None,
            },
            GroupEvents { rx },
        ))
    }

    /// Starts every shard and waits until all are READY (or one stops with an error), calling
    /// `progress` whenever a shard's state changes: [`launch`](Self::launch), then
    /// [`wait_ready`](Self::wait_ready), and on an error the group is closed.
    ///
    /// The events are handed back only once every shard is READY: what happened meanwhile (a
    /// `ConnectFailed` per attempt while the gateway is down) waits in the stream until then. To
    /// see each event as it happens, call `launch` and `wait_ready` and read the events beside it.
    pub async fn start(
        config: ShardGroupConfig,
        progress: impl FnMut(&StartProgress),
    ) -> Result<(Self, GroupEvents), ShardError> {
        let (group, events) = Self::launch(config).await?;
        match group.wait_ready(progress).await {
            Ok(()) => Ok((group, events)),
            Err(e) => {
                group.close(false).await;
                Err(e)
            }
        }
    }

    /// Starts every shard (each waits its turn in the identify queue) and returns at once with
    /// the events, which come as they happen from then on (each `ConnectFailed` while the
    /// gateway cannot be reached, say); [`wait_ready`](Self::wait_ready) waits for READY.
    ///
    /// With `ShardCount::Recommended`, it first asks `GET /gateway/bot` with the shard's token
    /// (see [`gateway_bot`](Self::gateway_bot)). With a known session start budget (fetched, or
    /// [`ShardGroupConfig::session_start_limit`]), it refuses to start
    /// ([`ShardError::SessionStartLimit`]) when fewer sessions may start than there are shards to
    /// identify, and hands the budget to the identify queue, which counts every identify.
    pub async fn launch(
        #[allow(unused_mut)] mut config: ShardGroupConfig,
    ) -> Result<(Self, GroupEvents), ShardError> {
        #[allow(unused_mut)]
        let mut gateway_bot = None;
        #[cfg(feature = "rest")]
        if let ShardCount::Recommended { api_base } = &config.count {
            let shard = &config.shard;
            let info = crate::rest::fetch_gateway_bot(
                api_base,
                &shard.token,
                &shard.tls_roots,
                shard.proxy.as_deref(),
            )
            .await?;
            tracing::info!(
                shards = info.shards,
                max_concurrency = info.session_start_limit.max_concurrency,
                remaining = info.session_start_limit.remaining,
                "GET /gateway/bot"
            );
            config.apply(&info);
            gateway_bot = Some(info);
        }
        let (_, _, range) = config.layout()?;
        if let Some(limit) = config.session_start_limit {
            let needed = range.filter(|id| !config.resume.contains_key(id)).count();
            let needed = u32::try_from(needed).unwrap_or(u32::MAX);
            if limit.remaining < needed {
                return Err(ShardError::SessionStartLimit {
                    remaining: limit.remaining,
                    needed,
                    reset_after: Duration::from_millis(limit.reset_after),
                });
            }
            config
                .identify_queue
                .set_session_start_limit(limit)
                .await
                .map_err(ShardError::Identify)?;
        }
        let (mut group, events) = Self::spawn(config)?;
        group.gateway_bot = gateway_bot;
        Ok((group, events))
    }

    /// Waits until every shard has been READY once, calling `progress` whenever a shard's state
    /// changes; an error if one stopped with an error, or stopped before it was ever READY (the
    /// group is left as it is: close it). The events go on meanwhile: read them beside this
    /// (in the same `select!`, or through a tracker that reads them).
    pub async fn wait_ready(
        &self,
        mut progress: impl FnMut(&StartProgress),
    ) -> Result<(), ShardError> {
        let mut watches: Vec<_> = self
            .shards
            .iter()
            .map(|(id, s)| (*id, s.status.clone()))
            .collect();
        let mut last = None;
        loop {
            let shards: Vec<(u32, SessionState)> = watches
                .iter()
                .map(|(id, w)| (*id, w.borrow().state))
                .collect();
            if let Some(err) = watches
                .iter()
                .find_map(|(_, w)| w.borrow().outcome.clone().and_then(Result::err))
            {
                return Err(err);
            }
            if watches
                .iter()
                .any(|(_, w)| !w.borrow().alive && !w.borrow().ready_once)
            {
                return Err(ShardError::Closed);
            }
            let ready = watches
                .iter()
                .filter(|(_, w)| w.borrow().ready_once)
                .count();
            let failures = watches
                .iter()
                .filter_map(|(id, w)| w.borrow().last_failure.clone().map(|f| (*id, f)))
                .collect();
            let report = StartProgress {
                ready,
                total: watches.len(),
                shards,
                failures,
            };
            if last.as_ref() != Some(&report) {
                progress(&report);
                last = Some(report);
            }
            if ready == watches.len() {
                return Ok(());
            }
            let changes = watches.iter_mut().map(|(_, w)| Box::pin(w.changed()));
            let (changed, index, rest) = futures_util::future::select_all(changes).await;
            drop(rest);
            if changed.is_err() {
                // That shard's driver is gone: its last status stays, and it is watched no more.
                let (id, _) = watches.remove(index);
                tracing::warn!(shard = id, "a shard's driver ended while the group started");
                if watches.is_empty() {
                    return Err(ShardError::Closed);
                }
            }
        }
    }

    /// The shards, by id.
    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.values()
    }

    /// One shard.
    pub fn shard(&self, id: u32) -> Option<&Shard> {
        self.shards.get(&id)
    }

    /// The `GET /gateway/bot` answer the group was sized by, when it asked
    /// ([`ShardCount::Recommended`]).
    pub fn gateway_bot(&self) -> Option<&GatewayBot> {
        self.gateway_bot.as_ref()
    }

    /// The bot's shard count.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The shard that carries `guild` (`(guild_id >> 22) % total`), if this group runs it.
    pub fn shard_for_guild(&self, guild: Snowflake) -> Result<&Shard, GroupError> {
        let shard = guild.shard_index(self.total);
        self.shards
            .get(&shard)
            .ok_or(GroupError::NoLocalShard { guild, shard })
    }

    /// Requests guild members on the guild's shard.
    pub async fn request_guild_members(
        &self,
        request: RequestGuildMembers,
    ) -> Result<(), GroupError> {
        Ok(self
            .shard_for_guild(request.guild_id())?
            .request_guild_members(request)
            .await?)
    }

    /// Updates the voice state on the guild's shard.
    pub async fn update_voice_state(
        &self,
        guild: Snowflake,
        channel: Option<Snowflake>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<(), GroupError> {
        Ok(self
            .shard_for_guild(guild)?
            .update_voice_state(guild, channel, self_mute, self_deaf)
            .await?)
    }

    /// Requests channel info on the guild's shard.
    pub async fn request_channel_info(
        &self,
        guild: Snowflake,
        fields: Vec<ChannelInfoField>,
    ) -> Result<(), GroupError> {
        Ok(self
            .shard_for_guild(guild)?
            .request_channel_info(guild, fields)
            .await?)
    }

    /// Sends a command that has no guild through shard 0 (or this group's first shard).
    pub async fn send_guildless(&self, command: impl Into<Command>) -> Result<(), GroupError> {
        let shard = self.shards.get(&0).or_else(|| self.shards.values().next());
        match shard {
            Some(s) => Ok(s.send(command).await?),
            None => Err(GroupError::Command(CommandError::NotRunning)),
        }
    }

    /// Updates the presence on every shard, all at once: a shard that refuses it does not stop
    /// the others ([`GroupError::Presence`] says which took it and which did not).
    pub async fn update_presence(&self, update: PresenceUpdate) -> Result<(), GroupError> {
        let updates = self.shards.iter().map(|(id, shard)| {
            let update = update.clone();
            async move { (*id, shard.update_presence(update).await) }
        });
        let (mut failed, mut updated) = (Vec::new(), Vec::new());
        for (id, result) in futures_util::future::join_all(updates).await {
            match result {
                Ok(()) => updated.push(id),
                Err(e) => failed.push((id, e)),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(GroupError::Presence { failed, updated })
        }
    }

    /// Each shard's status.
    pub fn status(&self) -> Vec<ShardStatus> {
        self.shards
            .iter()
            .map(|(id, s)| ShardStatus {
                id: *id,
                state: s.state(),
                latency: s.heartbeat_latency(),
                error: s.outcome().and_then(Result::err),
            })
            .collect()
    }

    /// Closes every shard. With `keep_resumable`, returns their sessions for a new group.
    pub async fn close(&self, keep_resumable: bool) -> BTreeMap<u32, ResumeInfo> {
        let closes = self
            .shards
            .iter()
            .map(|(id, s)| async move { (*id, s.close(keep_resumable).await) });
        futures_util::future::join_all(closes)
            .await
            .into_iter()
            .filter_map(|(id, r)| r.map(|r| (id, r)))
            .collect()
    }

    /// Waits until every shard stopped; the first error, if any.
    pub async fn join(&self) -> Result<(), ShardError> {
        let mut result = Ok(());
        for shard in self.shards.values() {
            if let Err(e) = shard.join().await
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }
}
