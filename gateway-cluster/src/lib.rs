//! Shards across processes on Redis: leases, sessions that survive processes, event fan-out and
//! metrics.
//!
//! | module | holds |
//! |---|---|
//! | [`core`] | the node's sans-IO core: leases, renewals, stop-by deadlines, saves, publish and handoff decisions |
//! | [`Keys`] | every key of an application, under one hash tag (Redis Cluster friendly) |
//! | [`Lease`] | a held lease: fencing token, stop-by deadline |
//! | [`Entry`] | one event as it goes to a stream |
//! | [`Leases`] | shard leases in Redis: `SET NX PX`, compare-and-extend, fencing tokens |
//! | [`SessionStore`] | each shard's session, written only by the lease holder |
//! | [`Publisher`] | dispatches to Redis Streams, raw `d`, bounded and pipelined |
//! | [`Consumer`] | consumer groups: acks, reclaim of a dead consumer's entries, repeats dropped |
//! | [`CommandSender`] | commands to a shard from any process, sent by whichever node holds it |
//! | [`Tail`] | a reader of every entry from a position of its own, from each shard's session start |
//! | [`Board`], [`BoardReader`] | an application's notes that every process reads whole (a proxy's shared client sessions) |
//! | [`ClusterNode`] | one process's share of the bot: the core's driver over Redis and tokio |
//! | `metrics` | what a node reports through the `metrics` facade |
//!
//! # Guarantees
//! - **Never two processes connected for one shard.** A node that cannot renew a lease stops
//!   the shard before the lease can expire in Redis (it measures from when it *sent* the last
//!   renewal, less a margin), and a lease is only taken once expired or released.
//! - **A graceful handoff loses and repeats nothing, and spends no IDENTIFY.** On shutdown a node
//!   closes its shards resumably, publishes everything they delivered, stores each session at
//!   its last published sequence and releases the leases; the next node resumes from there.
//! - **A crash loses and repeats nothing in the stream.** The stored sequence trails by up to
//!   [`NodeConfig::save_every`]; the node that takes over resumes from it and the gateway replays
//!   what came after, some of which was already published. The stream's append script skips
//!   every entry at or below its last `(session, seq)`, so each event is in it once, at
//!   contiguous positions (`0-1`, `0-2`…) kept across handoffs and resumes.
//! - **A node that lost a shard cannot write to its stream.** Each entry carries the fencing
//!   token of the lease it came under, and the stream refuses one below its last entry's: a node
//!   paused past its lease, waking with a batch in hand, is turned away.
//! - Delivery to the application is at least once only across consumer crashes (an entry read
//!   and not acked is reclaimed); [`Consumer`] drops such repeats by `(session, seq)`.
//!
//! Everything but [`core`], [`Keys`], [`Lease`] and [`Entry`] needs the `redis` feature (on by
//! default).
//!
//! ```
//! # #[cfg(feature = "redis")] {
//! use std::time::Duration;
//! use gateway_cluster::{ConsumerConfig, Keys, NodeConfig};
//! use gateway_model::{Intents, Token};
//! use gateway_shard::ShardConfig;
//!
//! // Every key of the application shares one hash tag.
//! let keys = Keys::new("my-bot");
//! assert_eq!(keys.lease(3), "{my-bot}:lease:3");
//!
//! // A process running up to 8 of the bot's 16 shards…
//! let shard = ShardConfig::new(Token::new("token"), Intents::GUILDS);
//! // One Redis server; a comma-separated list of URLs is a Redis Cluster.
//! let redis = "redis://127.0.0.1/".parse().expect("a Redis URL");
//! let mut node = NodeConfig::new(redis, "my-bot", "node-a", shard, 16);
//! node.max_shards = 8;
//! node.lease_ttl = Duration::from_secs(10);
//! // …started with `ClusterNode::start(node).await?`, stopped with `.shutdown().await?`.
//!
//! // A consumer of all 16 streams, in group "workers".
//! let consumer = ConsumerConfig::new("my-bot", "workers", "worker-1", 0..16);
//! assert_eq!(consumer.shards.len(), 16);
//! # }
//! ```

// Tests read the clock to build inputs; the core does not (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

#[cfg(feature = "redis")]
mod board;
#[cfg(feature = "redis")]
mod command;
#[cfg(feature = "redis")]
mod consume;
pub mod core;
mod entry;
#[cfg(feature = "redis")]
mod error;
mod keys;
mod lease;
#[cfg(feature = "redis")]
mod leases;
#[cfg(feature = "redis")]
mod metrics;
#[cfg(feature = "redis")]
mod node;
#[cfg(feature = "redis")]
mod publish;
#[cfg(feature = "redis")]
mod sessions;
#[cfg(feature = "redis")]
mod tail;

#[cfg(feature = "redis")]
pub use board::{Board, BoardReader, Note};
#[cfg(feature = "redis")]
pub use command::CommandSender;
#[cfg(feature = "redis")]
pub use consume::{Consumer, ConsumerConfig, Delivery};
pub use core::NodeEvent;
pub use entry::Entry;
#[cfg(feature = "redis")]
pub use error::ClusterError;
pub use keys::Keys;
pub use lease::Lease;
#[cfg(feature = "redis")]
pub use leases::Leases;
#[cfg(feature = "redis")]
pub use node::{ClusterNode, NodeConfig, NodeEvents};
#[cfg(feature = "redis")]
pub use publish::{PublishConfig, Publisher, Written};
#[cfg(feature = "redis")]
pub use sessions::SessionStore;
#[cfg(feature = "redis")]
pub use tail::{Tail, Tailed};
