//! A node: one process's share of the bot. It takes shard leases up to its limit, runs those
//! shards (resuming their stored sessions), publishes their events, keeps their sessions stored,
//! and on shutdown closes them resumably, stores where they stood and lets the leases go.
//!
//! Every decision is the [`NodeCore`](crate::core::NodeCore)'s; the [`driver`] runs it over
//! Redis and tokio.

use std::sync::Arc;
use std::time::Duration;

use gateway_shard::ShardConfig;
use gateway_shard::identify::RedisIdentifyQueue;
use gateway_shard::{RedisConnection, RedisOptions, RedisTarget};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::core::{CoreConfig, NodeEvent};
use crate::error::ClusterError;
use crate::keys::Keys;
use crate::publish::PublishConfig;

mod commands;
mod driver;
mod notice;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Redis: one server (`redis://127.0.0.1/`) or a Redis Cluster.
    pub redis: RedisTarget,
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
    /// events after it are replayed, at least once). Default 1 s. A new session is stored at
    /// once, as soon as its READY is in the stream.
    pub save_every: Duration,
    /// Event fan-out.
    pub publish: PublishConfig,
    /// The identify window per bucket (Discord's 5 s; shorter against a fake gateway).
    pub identify_window: Duration,
    /// Whether the node listens for other nodes' release notices and takes a released lease
    /// at once (default), rather than at its next round of upkeep, up to a third of the TTL
    /// later. It announces its own releases either way.
    pub release_notices: bool,
}

impl NodeConfig {
    /// Node `node` of application `app` on Redis `redis`, for a bot of `total` shards.
    pub fn new(
        redis: RedisTarget,
        app: impl Into<String>,
        node: impl Into<String>,
        shard: ShardConfig,
        total: u32,
    ) -> Self {
        Self {
            redis,
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
            release_notices: true,
        }
    }
}

impl NodeConfig {
    /// What the node's core decides by.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            node: self.node.clone(),
            total: self.total,
            max_shards: self.max_shards,
            lease_ttl: self.lease_ttl,
            lease_margin: self.lease_margin,
            save_every: self.save_every,
        }
    }
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

impl ClusterNode {
    /// Connects to Redis and starts the node.
    pub async fn start(config: NodeConfig) -> Result<(Self, NodeEvents), ClusterError> {
        let connection = RedisConnection::connect(&config.redis, RedisOptions::default()).await?;
        // The identify queue shares the node's connection.
        let queue = RedisIdentifyQueue::with_connection(
            connection.clone(),
            Keys::new(config.app.clone()).identify_prefix(),
            config.identify_window,
        );
        let (stop, stopped) = oneshot::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let span = tracing::info_span!("node", node = %config.node);
        let task = tokio::spawn(
            driver::run(config, connection, Arc::new(queue), stopped, tx).instrument(span),
        );
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
