//! Where the proxy's shards live: a [`ShardGroup`] in this process, or a cluster on Redis
//! ([`ClusterUpstream`], feature `cluster`), whose shards any process may hold. Either way the
//! loop gets each shard's events in order from [`Upstream::next`] and hands commands to
//! [`Upstream::send`]; neither holds a protocol rule.
//!
//! On a cluster, the events are the shards' Redis streams, read by a task of their own from
//! each shard's session start (its READY, then what followed): a proxy that starts, or starts
//! again, rebuilds its cache from Redis with no IDENTIFY. Commands go to the shard's command
//! stream, read by whichever node holds it.

use std::collections::BTreeMap;
use std::sync::Arc;

use gateway_model::Command;
use gateway_shard::{GroupEvents, ShardEvent, ShardGroup};
use tokio::sync::mpsc;

#[cfg(feature = "cluster")]
pub use self::cluster::ClusterUpstream;
#[cfg(feature = "cluster")]
pub(super) use self::cluster::Shared;

/// One event from upstream, in its shard's order.
pub(super) enum UpstreamEvent {
    /// From a shard of this process's group.
    Shard(u32, ShardEvent),
    /// An entry of a shard's stream on Redis.
    #[cfg(feature = "cluster")]
    Tailed(gateway_cluster::Tailed),
    /// A note of the sessions other proxy processes share.
    #[cfg(feature = "cluster")]
    Shared(Shared),
}

/// The shards, as the loop sees them.
pub(super) enum Upstream {
    /// A group in this process; one task per shard sends its commands in order.
    Group {
        group: Arc<ShardGroup>,
        events: GroupEvents,
        pumps: BTreeMap<u32, mpsc::UnboundedSender<Command>>,
    },
    /// Shards on Redis.
    #[cfg(feature = "cluster")]
    Cluster(cluster::Running),
}

impl Upstream {
    /// `group`'s shards `range`, with their events.
    pub(super) fn group(
        group: ShardGroup,
        events: GroupEvents,
        range: std::ops::Range<u32>,
    ) -> Self {
        let group = Arc::new(group);
        let pumps = range
            .map(|id| (id, spawn_pump(Arc::clone(&group), id)))
            .collect();
        Self::Group {
            group,
            events,
            pumps,
        }
    }

    /// Shards `range` of a cluster on Redis.
    #[cfg(feature = "cluster")]
    pub(super) fn cluster(upstream: ClusterUpstream, range: std::ops::Range<u32>) -> Self {
        Self::Cluster(cluster::Running::start(upstream, range))
    }

    /// The next event of any shard; `None` once upstream is gone. Cancel-safe.
    pub(super) async fn next(&mut self) -> Option<UpstreamEvent> {
        match self {
            Self::Group { events, .. } => events
                .next()
                .await
                .map(|(shard, event)| UpstreamEvent::Shard(shard, event)),
            #[cfg(feature = "cluster")]
            Self::Cluster(running) => running.next().await,
        }
    }

    /// Queues `command` for shard `shard`; false when nothing can take it.
    pub(super) fn send(&self, shard: u32, command: Command) -> bool {
        match self {
            Self::Group { pumps, .. } => pumps.get(&shard).is_some_and(|p| p.send(command).is_ok()),
            #[cfg(feature = "cluster")]
            Self::Cluster(running) => running.send(shard, command),
        }
    }

    /// Shares a session's record or end, or an all-members request, with the other proxy
    /// processes (a group has none).
    pub(super) fn share(&self, output: crate::ProxyOutput) {
        match (self, output) {
            #[cfg(feature = "cluster")]
            (Self::Cluster(running), crate::ProxyOutput::SessionSaved(record)) => {
                running.share(Shared::Saved(record));
            }
            #[cfg(feature = "cluster")]
            (Self::Cluster(running), crate::ProxyOutput::SessionEnded { id }) => {
                running.share(Shared::Ended(id));
            }
            #[cfg(feature = "cluster")]
            (Self::Cluster(running), crate::ProxyOutput::MembersAsked { guild, nonce }) => {
                let age = std::time::Duration::ZERO;
                running.share(Shared::Members { guild, nonce, age });
            }
            _ => {}
        }
    }

    /// Waits until what was shared is where the other processes read it.
    pub(super) async fn flush_shared(&self) {
        match self {
            Self::Group { .. } => {}
            #[cfg(feature = "cluster")]
            Self::Cluster(running) => running.flush().await,
        }
    }

    /// Whether shard `id`'s websocket is open here, and its last heartbeat round trip: `None`
    /// on a cluster (the shard may run in any process).
    pub(super) fn connection(&self, id: u32) -> Option<(bool, Option<std::time::Duration>)> {
        match self {
            Self::Group { group, .. } => {
                let shard = group.shard(id);
                Some((
                    shard.is_some_and(gateway_shard::Shard::is_connected),
                    shard.and_then(gateway_shard::Shard::heartbeat_latency),
                ))
            }
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => None,
        }
    }

    /// Ends upstream: a cluster node in this process hands its shards over (no IDENTIFY for
    /// the next holder); a group's shards close when it is dropped.
    pub(super) async fn shutdown(self) {
        match self {
            Self::Group { .. } => {}
            #[cfg(feature = "cluster")]
            Self::Cluster(running) => running.shutdown().await,
        }
    }
}

/// One shard's commands, sent in the order the core gave them.
fn spawn_pump(group: Arc<ShardGroup>, id: u32) -> mpsc::UnboundedSender<Command> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            let Some(shard) = group.shard(id) else {
                break;
            };
            if let Err(e) = shard.send(command).await {
                tracing::warn!(shard = id, error = %e, "command not sent upstream");
            }
        }
    });
    tx
}

#[cfg(feature = "cluster")]
mod cluster;
