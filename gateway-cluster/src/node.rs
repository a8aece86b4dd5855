//! A node: one process's share of the bot. It takes shard leases up to its limit, runs those
//! shards (resuming their stored sessions), publishes their events, keeps their sessions stored,
//! and on shutdown closes them resumably, stores where they stood and lets the leases go.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_model::{DispatchEvent, ShardId};
use gateway_shard::drive::{now, sleep_until, wait};
use gateway_shard::identify::{BoxFuture, RedisIdentifyQueue};
use gateway_shard::{ResumeInfo, Shard, ShardConfig, ShardEvent};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::error::ClusterError;
use crate::keys::Keys;
use crate::lease::{Lease, Leases};
use crate::publish::{Entry, PublishConfig, Publisher};
use crate::sessions::SessionStore;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Redis, e.g. `redis://127.0.0.1/`.
    pub redis_url: String,
    /// The application: every key starts with `{app}:`.
    pub app: String,
    /// This node's name (unique among the application's nodes).
    pub node: String,
    /// What every shard starts from (its shard id, identify queue and resume are set per shard).
    pub shard: ShardConfig,
    /// The bot's shard count.
    pub total: u32,
    /// The bot's `max_concurrency`.
    pub max_concurrency: u32,
    /// The most shards this node runs; the rest are left to other nodes.
    pub max_shards: u32,
    /// How long a lease lives without renewal. Default 10 s; renewed every third of it.
    pub lease_ttl: Duration,
    /// How much earlier than the TTL a node that could not renew stops its shard. Default a
    /// fifth of the TTL.
    pub lease_margin: Duration,
    /// How often each shard's session is stored while it runs (what a crash can lose: the
    /// events after it are replayed, at least once). Default 1 s.
    pub save_every: Duration,
    /// Event fan-out.
    pub publish: PublishConfig,
    /// The identify window per bucket (Discord's 5 s; shorter against a fake gateway).
    pub identify_window: Duration,
}

impl NodeConfig {
    /// Node `node` of application `app` on Redis `redis_url`, for a bot of `total` shards.
    pub fn new(
        redis_url: impl Into<String>,
        app: impl Into<String>,
        node: impl Into<String>,
        shard: ShardConfig,
        total: u32,
    ) -> Self {
        Self {
            redis_url: redis_url.into(),
            app: app.into(),
            node: node.into(),
            shard,
            total: total.max(1),
            max_concurrency: 1,
            max_shards: total.max(1),
            lease_ttl: Duration::from_secs(10),
            lease_margin: Duration::from_secs(2),
            save_every: Duration::from_secs(1),
            publish: PublishConfig::default(),
            identify_window: gateway_shard::identify::IDENTIFY_WINDOW,
        }
    }
}

/// What a node did, for operators.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeEvent {
    /// It took shard `shard`'s lease (fencing token `token`), and starts it, resuming if a
    /// session was stored.
    Took {
        /// The shard.
        shard: u32,
        /// The fencing token.
        token: u64,
        /// The stored session it resumes.
        resuming: Option<ResumeInfo>,
    },
    /// It lost shard `shard`'s lease (taken over, or not renewed in time) and stopped it.
    Lost {
        /// The shard.
        shard: u32,
        /// Why.
        reason: String,
    },
    /// It handed shard `shard` over on shutdown: session stored, lease released.
    Released {
        /// The shard.
        shard: u32,
        /// The stored session.
        session: Option<ResumeInfo>,
    },
    /// One of its shards said something (dispatches are published, not repeated here).
    Shard(u32, ShardEvent),
}

/// A running node.
#[derive(Debug)]
pub struct ClusterNode {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ClusterError>>,
}

/// A node's events.
#[derive(Debug)]
pub struct NodeEvents {
    rx: mpsc::UnboundedReceiver<NodeEvent>,
}

impl NodeEvents {
    /// The next event; `None` once the node stopped.
    pub async fn next(&mut self) -> Option<NodeEvent> {
        self.rx.recv().await
    }
}

/// A shard this node runs.
struct Held {
    lease: Lease,
    shard: Shard,
    /// The session the user is in, and its last dispatch handed to the publisher.
    session: Option<Arc<str>>,
    saved: u64,
}

impl ClusterNode {
    /// Connects to Redis and starts the node.
    pub async fn start(config: NodeConfig) -> Result<(Self, NodeEvents), ClusterError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let connection = ConnectionManager::new(client).await?;
        let queue = RedisIdentifyQueue::connect(
            &config.redis_url,
            Keys::new(config.app.clone()).identify_prefix(),
        )
        .await?;
        let (stop, stopped) = oneshot::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let span = tracing::info_span!("node", node = %config.node);
        let task =
            tokio::spawn(run(config, connection, Arc::new(queue), stopped, tx).instrument(span));
        Ok((
            Self {
                stop: Some(stop),
                task,
            },
            NodeEvents { rx },
        ))
    }

    /// Shuts down gracefully: every shard closed resumably, its session stored with the last
    /// sequence published, its lease released, so that another node resumes it with no
    /// IDENTIFY and no repeat.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        if let Some(stop) = self.stop.take()
            && stop.send(()).is_err()
        {
            tracing::debug!("the node had already stopped");
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "the node task failed");
                Err(ClusterError::Stopped)
            }
        }
    }
}

async fn run(
    config: NodeConfig,
    connection: ConnectionManager,
    queue: Arc<RedisIdentifyQueue>,
    mut stopped: oneshot::Receiver<()>,
    tx: mpsc::UnboundedSender<NodeEvent>,
) -> Result<(), ClusterError> {
    let keys = Keys::new(config.app.clone());
    let leases = Leases::new(
        connection.clone(),
        keys.clone(),
        config.node.clone(),
        config.lease_ttl,
    );
    let store = SessionStore::new(
        connection.clone(),
        keys.clone(),
        (config.lease_ttl / 4).max(Duration::from_millis(50)),
    );
    let publisher = Publisher::spawn(connection, keys, config.publish);
    let (events_tx, mut events) = mpsc::channel::<(u32, ShardEvent)>(1024);
    let mut held: BTreeMap<u32, Held> = BTreeMap::new();
    let mut pending: Option<Entry> = None;
    let mut tick = tokio::time::interval((config.lease_ttl / 3).max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut save = tokio::time::interval(config.save_every.max(Duration::from_millis(10)));
    save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Redis work runs beside the loop, so that a slow Redis never delays a lease deadline.
    let mut upkeep: Option<BoxFuture<'static, Upkeep>> = None;
    let mut saving: Option<BoxFuture<'static, Vec<(u32, u64, bool)>>> = None;
    loop {
        let deadline = held
            .values()
            .map(|h| h.lease.stop_by(config.lease_ttl, config.lease_margin))
            .min();
        tokio::select! {
            _ = &mut stopped => break,
            () = sleep_until(deadline) => {
                let now = now();
                let late: Vec<u32> = held
                    .iter()
                    .filter(|(_, h)| h.lease.stop_by(config.lease_ttl, config.lease_margin) <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in late {
                    stop(&mut held, &tx, id, "the lease could not be renewed in time".to_owned());
                }
            }
            _ = tick.tick(), if upkeep.is_none() => {
                upkeep = Some(plan_upkeep(&config, &leases, &store, &held));
                metrics::gauge!("gateway_shards_held").set(held.len() as f64);
            }
            done = wait(&mut upkeep) => {
                upkeep = None;
                apply_upkeep(&config, &leases, &queue, &events_tx, &tx, &mut held, done);
            }
            _ = save.tick(), if saving.is_none() => saving = plan_saves(&store, &publisher, &held),
            saved = wait(&mut saving) => {
                saving = None;
                for (id, seq, ok) in saved {
                    if let Some(h) = held.get_mut(&id).filter(|_| ok) {
                        h.saved = h.saved.max(seq);
                    }
                }
            }
            () = publisher.ready(), if pending.is_some() => {
                if let Some(entry) = pending.take() {
                    pending = publisher.try_publish(entry).err();
                }
            }
            event = events.recv(), if pending.is_none() => {
                let Some((shard, event)) = event else { continue };
                pending = forward(&mut held, &publisher, &tx, shard, event);
            }
        }
    }
    shutdown(
        held, events_tx, events, pending, publisher, &store, &leases, &tx,
    )
    .await;
    Ok(())
}

/// Stops a shard whose lease is (or may be) another node's: at once, still resumable by that
/// node. The close goes to the shard's driver now; nothing here waits for it.
fn stop(
    held: &mut BTreeMap<u32, Held>,
    tx: &mpsc::UnboundedSender<NodeEvent>,
    id: u32,
    reason: String,
) {
    let Some(h) = held.remove(&id) else { return };
    tracing::warn!(shard = id, %reason, "lease lost: shard stopped");
    tokio::spawn(async move { h.shard.close(true).await });
    metrics::counter!("gateway_lease_changes_total", "change" => "lost").increment(1);
    drop(tx.send(NodeEvent::Lost { shard: id, reason }));
}

/// Publishes a shard's event (or gives the entry back when the publisher is full).
fn forward(
    held: &mut BTreeMap<u32, Held>,
    publisher: &Publisher,
    tx: &mpsc::UnboundedSender<NodeEvent>,
    shard: u32,
    event: ShardEvent,
) -> Option<Entry> {
    crate::metrics::shard_event(shard, &event);
    let h = held.get_mut(&shard)?;
    let entry = match event {
        ShardEvent::Ready(ref ready) => {
            let session: Arc<str> = ready.session_id.as_str().into();
            h.session = Some(Arc::clone(&session));
            drop(tx.send(NodeEvent::Shard(shard, event)));
            Some(Entry {
                name: "READY".into(),
                shard,
                session,
                seq: 1,
                data: "".into(),
                queued: now(),
            })
        }
        ShardEvent::Resumed { seq, .. } => {
            drop(tx.send(NodeEvent::Shard(shard, event)));
            h.session.as_ref().map(|session| Entry {
                name: "RESUMED".into(),
                shard,
                session: Arc::clone(session),
                seq,
                data: "".into(),
                queued: now(),
            })
        }
        ShardEvent::Dispatch(d) => {
            let (name, data): (Cow<'static, str>, Box<str>) = match d.event {
                // The raw `d` moves into the entry: relaying copies nothing.
                DispatchEvent::Other(raw) => (raw.name, raw.data.into_inner()),
                // Only READY and RESUMED are typed in raw mode, and they come as their own events.
                typed => (typed.name().to_owned().into(), "".into()),
            };
            h.session.as_ref().map(|session| Entry {
                name,
                shard,
                session: Arc::clone(session),
                seq: d.seq,
                data,
                queued: now(),
            })
        }
        ShardEvent::HeartbeatAck { .. } => None,
        other => {
            drop(tx.send(NodeEvent::Shard(shard, other)));
            None
        }
    };
    entry.and_then(|e| publisher.try_publish(e).err())
}

/// What one round of upkeep found in Redis.
struct Upkeep {
    /// Each held lease renewed: when the renewal was sent, and whether it held.
    renewed: Vec<(u32, u64, Instant, Result<bool, ClusterError>)>,
    /// Leases taken, with the session stored for each.
    acquired: Vec<(Lease, Result<Option<ResumeInfo>, ClusterError>)>,
}

/// Renews every held lease (all at once), then takes free ones up to the limit.
fn plan_upkeep(
    config: &NodeConfig,
    leases: &Leases,
    store: &SessionStore,
    held: &BTreeMap<u32, Held>,
) -> BoxFuture<'static, Upkeep> {
    let renew: Vec<Lease> = held.values().map(|h| h.lease.clone()).collect();
    let room = config
        .max_shards
        .saturating_sub(u32::try_from(held.len()).unwrap_or(u32::MAX));
    // Each node starts looking at a different shard, so that nodes spread out.
    let offset = config
        .node
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let total = config.total;
    let candidates: Vec<u32> = (0..total)
        .map(|i| offset.wrapping_add(i) % total)
        .filter(|id| !held.contains_key(id))
        .collect();
    let (leases, store) = (leases.clone(), store.clone());
    Box::pin(async move {
        let renewals = renew.into_iter().map(|mut lease| {
            let leases = leases.clone();
            async move {
                let sent = now();
                let result = leases.renew(&mut lease).await;
                (lease.shard, lease.token, sent, result)
            }
        });
        let renewed = futures_util::future::join_all(renewals).await;
        let mut acquired = Vec::new();
        for id in candidates {
            if acquired.len() as u32 >= room {
                break;
            }
            match leases.acquire(id).await {
                Ok(Some(lease)) => {
                    let session = store.load(id).await;
                    acquired.push((lease, session));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(shard = id, error = %e, "cannot take a lease");
                    break;
                }
            }
        }
        Upkeep { renewed, acquired }
    })
}

/// Applies a round of upkeep: confirms renewed leases, stops shards whose lease is gone, starts
/// the shards newly leased.
#[allow(clippy::too_many_arguments)]
fn apply_upkeep(
    config: &NodeConfig,
    leases: &Leases,
    queue: &Arc<RedisIdentifyQueue>,
    events_tx: &mpsc::Sender<(u32, ShardEvent)>,
    tx: &mpsc::UnboundedSender<NodeEvent>,
    held: &mut BTreeMap<u32, Held>,
    upkeep: Upkeep,
) {
    for (id, token, sent, result) in upkeep.renewed {
        let Some(h) = held.get_mut(&id).filter(|h| h.lease.token == token) else {
            continue;
        };
        match result {
            Ok(true) => h.lease.confirm(sent),
            Ok(false) => stop(held, tx, id, "the lease is another node's now".to_owned()),
            // The deadline decides: a renewal may still succeed in time.
            Err(e) => tracing::warn!(shard = id, error = %e, "lease renewal failed"),
        }
    }
    for (lease, session) in upkeep.acquired {
        let id = lease.shard;
        let started = session.and_then(|resuming| {
            start_shard(config, queue, events_tx, &lease, resuming.clone())
                .map(|shard| (shard, resuming))
        });
        match started {
            Ok((shard, resuming)) => {
                metrics::counter!("gateway_lease_changes_total", "change" => "taken").increment(1);
                // A resumed session's replayed dispatches belong to the stored session.
                let session = resuming.as_ref().map(|r| Arc::from(r.session_id.as_str()));
                drop(tx.send(NodeEvent::Took {
                    shard: id,
                    token: lease.token,
                    resuming,
                }));
                held.insert(
                    id,
                    Held {
                        lease,
                        shard,
                        session,
                        saved: 0,
                    },
                );
            }
            Err(e) => {
                tracing::error!(shard = id, error = %e, "cannot start the shard; letting the lease go");
                let leases = leases.clone();
                tokio::spawn(async move {
                    if let Err(e) = leases.release(&lease).await {
                        tracing::warn!(shard = lease.shard, error = %e, "lease not released; it expires");
                    }
                });
            }
        }
    }
}

fn start_shard(
    config: &NodeConfig,
    queue: &Arc<RedisIdentifyQueue>,
    events_tx: &mpsc::Sender<(u32, ShardEvent)>,
    lease: &Lease,
    resuming: Option<ResumeInfo>,
) -> Result<Shard, ClusterError> {
    let id = lease.shard;
    let shard_id = ShardId::new(id, config.total)
        .map_err(|e| gateway_shard::ShardError::Config(e.to_string()))?;
    let queue: Arc<dyn gateway_shard::identify::IdentifyQueue> = Arc::clone(queue) as _;
    let mut shard_config = config
        .shard
        .clone()
        .with_shard(shard_id)
        .with_identify_queue(queue, config.max_concurrency)
        .with_raw_dispatches(true);
    shard_config.resume = resuming;
    let (shard, mut events) = Shard::spawn(shard_config)?;
    let events_tx = events_tx.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if events_tx.send((id, event)).await.is_err() {
                break;
            }
        }
    });
    Ok(shard)
}

/// Stores each shard's session at the last sequence published (never past it: a crash then
/// replays from there, and nothing published is lost). `None` if there is nothing new.
fn plan_saves(
    store: &SessionStore,
    publisher: &Publisher,
    held: &BTreeMap<u32, Held>,
) -> Option<BoxFuture<'static, Vec<(u32, u64, bool)>>> {
    let saves: Vec<(Lease, ResumeInfo)> = held
        .iter()
        .filter_map(|(id, h)| {
            let (session, seq) = publisher.written(*id)?;
            let info = h.shard.resume_info()?;
            (*session == *info.session_id && seq > h.saved).then(|| {
                (
                    h.lease.clone(),
                    ResumeInfo {
                        sequence: seq,
                        ..info
                    },
                )
            })
        })
        .collect();
    if saves.is_empty() {
        return None;
    }
    let store = store.clone();
    Some(Box::pin(async move {
        let mut done = Vec::with_capacity(saves.len());
        for (lease, info) in saves {
            let ok = match store.save(&lease, &info).await {
                Ok(true) => true,
                Ok(false) => {
                    tracing::warn!(
                        shard = lease.shard,
                        "session not stored: the lease is another node's"
                    );
                    false
                }
                Err(e) => {
                    tracing::warn!(shard = lease.shard, error = %e, "session not stored");
                    false
                }
            };
            done.push((lease.shard, info.sequence, ok));
        }
        done
    }))
}

/// The graceful end: close every shard resumably, publish everything it delivered, store its
/// session at the last sequence (all published), release its lease.
#[allow(clippy::too_many_arguments)]
async fn shutdown(
    held: BTreeMap<u32, Held>,
    events_tx: mpsc::Sender<(u32, ShardEvent)>,
    mut events: mpsc::Receiver<(u32, ShardEvent)>,
    mut pending: Option<Entry>,
    publisher: Publisher,
    store: &SessionStore,
    leases: &Leases,
    tx: &mpsc::UnboundedSender<NodeEvent>,
) {
    drop(events_tx);
    let mut held = held;
    let mut sessions = BTreeMap::new();
    for (id, h) in &held {
        sessions.insert(*id, h.shard.close(true).await);
    }
    // Every event the shards delivered before closing goes out first.
    loop {
        if let Some(entry) = pending.take() {
            publisher.ready().await;
            pending = publisher.try_publish(entry).err();
            continue;
        }
        let Some((shard, event)) = events.recv().await else {
            break;
        };
        pending = forward(&mut held, &publisher, tx, shard, event);
    }
    let written: BTreeMap<u32, _> = held
        .keys()
        .map(|id| (*id, publisher.written(*id)))
        .collect();
    publisher.flush().await;
    for (id, h) in held {
        let session = sessions
            .remove(&id)
            .flatten()
            .map(|info| match &written[&id] {
                Some((session, seq)) if **session == *info.session_id => ResumeInfo {
                    sequence: *seq,
                    ..info
                },
                _ => info,
            });
        if let Some(info) = &session
            && let Err(e) = store.save(&h.lease, info).await
        {
            tracing::warn!(shard = id, error = %e, "session not stored on shutdown");
        }
        if let Err(e) = leases.release(&h.lease).await {
            tracing::warn!(shard = id, error = %e, "lease not released; it expires");
        }
        metrics::counter!("gateway_lease_changes_total", "change" => "released").increment(1);
        drop(tx.send(NodeEvent::Released { shard: id, session }));
    }
}
