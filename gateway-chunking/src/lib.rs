//! The member chunk tracker: requests guild members with nonces, tracks every chunk, and reports
//! finished, missed and incomplete requests per guild, per shard and for the whole bot.
//!
//! | module | holds |
//! |---|---|
//! | [`Tracker`] | the sans-IO core: fed shard events and the time, polled for member requests, events and its next deadline |
//! | [`ChunkTracker`] | the async wrapper beside a [`ShardGroup`](gateway_shard::ShardGroup): sends the requests through the shards, resolves request handles, streams events |
//! | [`ChunkEvent`], [`ChunkRequestFinished`], [`Outcome`] | what it reports |
//!
//! Unlike the tracker it follows (yuyo's), it finishes every request on a precise deadline,
//! reports each shard exactly once per READY and the whole start exactly once after every shard
//! identified, counts duplicate chunks instead of crashing, and handles RATE_LIMITED,
//! GUILD_DELETE and disconnects.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use gateway_chunking::{ChunkEvent, Outcome, Tracker, TrackerConfig, TrackerOutput};
//! use gateway_model::{GuildMembersChunk, Intents, RawJson, RequestGuildMembers, Snowflake};
//!
//! let guild = Snowflake::new(41771983444115456);
//! let mut tracker = Tracker::new(TrackerConfig::new(1, [0], Intents::GUILD_MEMBERS));
//! let now = Instant::now();
//! let nonce = tracker.handle_request(now, RequestGuildMembers::builder(guild).query("", 0), guild)?;
//! let Some(TrackerOutput::Send { shard, request }) = tracker.poll_output(now) else {
//!     unreachable!("a request to send")
//! };
//! assert_eq!((shard, request.nonce()), (0, Some(nonce.as_str())));
//!
//! // One of two chunks arrives, then nothing for 5 s.
//! let chunk = GuildMembersChunk {
//!     guild_id: guild, members: RawJson::default(), chunk_index: 0, chunk_count: 2,
//!     not_found: vec![], presences: None, nonce: Some(nonce),
//! };
//! tracker.handle_chunk(now, 0, &chunk);
//! tracker.handle_timeout(now + Duration::from_secs(5));
//! let later = now + Duration::from_secs(5);
//! let Some(TrackerOutput::Event(ChunkEvent::RequestFinished(done))) = tracker.poll_output(later)
//! else {
//!     unreachable!()
//! };
//! assert_eq!(done.outcome, Outcome::Incomplete);
//! assert_eq!(done.missed_chunks.into_iter().collect::<Vec<_>>(), vec![1]);
//! # Ok::<(), gateway_chunking::TrackError>(())
//! ```

// Tests read the clock to build inputs; the library itself does not (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
#[cfg(feature = "tokio")]
mod chunk_tracker;
mod tracker;

#[cfg(feature = "tokio")]
pub use chunk_tracker::{ChunkRequestHandle, ChunkTracker, TrackedEvent, TrackedEvents};
pub use tracker::{
    ChunkEvent, ChunkRequestFinished, FULL_REQUEST_INTERVAL, MAX_CHUNK_COUNT, MAX_RETRY_AFTER,
    Outcome, TrackError, Tracker, TrackerConfig, TrackerOutput,
};
