//! A shard's configuration.

use std::time::Duration;

use gateway_codec::{Compression, Limits};
use gateway_model::{ConnectionProperties, EventTypes, Intents, LargeThreshold, ShardId, Token};

#[cfg(feature = "tokio")]
use std::sync::Arc;

#[cfg(feature = "tokio")]
use crate::identify::{IdentifyQueue, LocalIdentifyQueue};
use crate::{Backoff, PresenceUpdate, ResumeInfo};

/// Discord's gateway, for bots that do not ask `GET /gateway/bot`.
pub const DISCORD_GATEWAY: &str = "wss://gateway.discord.gg";

/// How long each step of connecting may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP, TLS and websocket handshake. Default 15 s.
    pub handshake: Duration,
    /// From the websocket opening to HELLO. Default 20 s.
    pub hello: Duration,
    /// From IDENTIFY or RESUME to READY or RESUMED. Default 60 s.
    pub ready: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(15),
            hello: Duration::from_secs(20),
            ready: Duration::from_secs(60),
        }
    }
}

/// Everything a shard needs. Build one with [`ShardConfig::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The bot token.
    pub token: Token,
    /// The intents.
    pub intents: Intents,
    /// This shard's id and the shard count.
    pub shard: ShardId,
    /// Member count above which a guild is large.
    pub large_threshold: LargeThreshold,
    /// Transport compression. Default zlib-stream.
    pub compression: Compression,
    /// The gateway URL, without a query string. Default [`DISCORD_GATEWAY`].
    pub gateway_url: String,
    /// The presence to identify with; if nothing is set, no presence is sent at IDENTIFY.
    pub initial_presence: PresenceUpdate,
    /// Client properties sent in IDENTIFY.
    pub properties: ConnectionProperties,
    /// Step timeouts.
    pub timeouts: Timeouts,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// Decoder limits.
    pub limits: Limits,
    /// Which dispatches reach the user (READY and RESUMED always do, as their own events).
    pub event_types: EventTypes,
    /// Deliver every dispatch but READY and RESUMED raw ([`DispatchEvent::Other`]), with `d`
    /// exactly as the codec found it: for relaying events elsewhere without re-serializing them
    /// (and without typing them). Default false.
    ///
    /// [`DispatchEvent::Other`]: gateway_model::DispatchEvent::Other
    pub raw_dispatches: bool,
    /// Seed of the shard's randomness (heartbeat jitter, backoff spread).
    pub seed: u64,
    /// Commands that may wait in the queue.
    pub queue_capacity: usize,
    #[cfg(feature = "tokio")]
    /// Events the channel to the user holds (in a group, the group's one channel, which all its
    /// shards send to). Default 1024.
    pub event_buffer: usize,
    #[cfg(feature = "tokio")]
    /// Bytes of events (their payloads' `d`) that may wait for the user beyond the channel before
    /// the shard stops reading the socket, so that TCP pushes back on the gateway. Heartbeats and
    /// commands go on meanwhile, and the quiet is not taken for a zombie. Default 256 KiB: a burst
    /// of a few hundred messages, while a thousand shards behind a slow consumer hold about
    /// 256 MB between them (reading stops once the budget is reached; the last message read may
    /// take it past, a large GUILD_CREATE by its size).
    pub event_buffer_bytes: usize,
    #[cfg(feature = "tokio")]
    /// An HTTP proxy (`http://host:port`) to reach the gateway through with CONNECT.
    pub proxy: Option<String>,
    /// A session to resume instead of identifying, exported by [`Shard::close`](crate::Shard::close).
    pub resume: Option<ResumeInfo>,
    #[cfg(feature = "tokio")]
    /// How long [`Shard::start`](crate::Shard::start) waits for READY. Default: no limit.
    pub start_timeout: Option<Duration>,
    #[cfg(feature = "tokio")]
    /// The identify queue every IDENTIFY waits in. Default: a queue of this shard's own; a
    /// [`ShardGroup`](crate::ShardGroup) shares one among its shards.
    pub identify_queue: Arc<dyn IdentifyQueue>,
    #[cfg(feature = "tokio")]
    /// The bot's `max_concurrency` (identify buckets). Default 1.
    pub max_concurrency: u32,
    #[cfg(feature = "tokio")]
    /// Limits simultaneous websocket handshakes across the shards that share it.
    pub connect_limit: Option<Arc<tokio::sync::Semaphore>>,
    #[cfg(feature = "tokio")]
    /// Certificates trusted for `wss://` besides the webpki roots (Mozilla's), for a gateway or
    /// proxy with a private CA. Certificates are always verified. Default: none.
    pub tls_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl ShardConfig {
    /// A configuration for an unsharded bot with the defaults.
    pub fn new(token: Token, intents: Intents) -> Self {
        Self {
            token,
            intents,
            shard: ShardId::ONE,
            large_threshold: LargeThreshold::MAX,
            compression: Compression::ZlibStream,
            gateway_url: DISCORD_GATEWAY.to_owned(),
            initial_presence: PresenceUpdate::default(),
            properties: ConnectionProperties::default(),
            timeouts: Timeouts::default(),
            backoff: Backoff::default(),
            limits: Limits::default(),
            event_types: EventTypes::all(),
            raw_dispatches: false,
            seed: random_seed(),
            queue_capacity: 1024,
            #[cfg(feature = "tokio")]
            event_buffer: 1024,
            #[cfg(feature = "tokio")]
            event_buffer_bytes: 256 << 10,
            #[cfg(feature = "tokio")]
            proxy: None,
            resume: None,
            #[cfg(feature = "tokio")]
            start_timeout: None,
            #[cfg(feature = "tokio")]
            identify_queue: Arc::new(LocalIdentifyQueue::new()),
            #[cfg(feature = "tokio")]
            max_concurrency: 1,
            #[cfg(feature = "tokio")]
            connect_limit: None,
            #[cfg(feature = "tokio")]
            tls_roots: Vec::new(),
        }
    }

    #[cfg(feature = "tokio")]
    /// Trusts `root` for `wss://` as well as the webpki roots: for a gateway behind a private CA
    /// (or a self-signed test certificate). Verification itself is never turned off.
    #[must_use]
    pub fn with_tls_root(mut self, root: rustls::pki_types::CertificateDer<'static>) -> Self {
        self.tls_roots.push(root);
        self
    }

    #[cfg(feature = "tokio")]
    /// Sets how many bytes of events may wait for the user before the shard stops reading.
    #[must_use]
    pub fn with_event_buffer_bytes(mut self, bytes: usize) -> Self {
        self.event_buffer_bytes = bytes;
        self
    }

    #[cfg(feature = "tokio")]
    /// Sets the identify queue and the bot's `max_concurrency`.
    #[must_use]
    pub fn with_identify_queue(
        mut self,
        queue: Arc<dyn IdentifyQueue>,
        max_concurrency: u32,
    ) -> Self {
        self.identify_queue = queue;
        self.max_concurrency = max_concurrency.max(1);
        self
    }

    /// Sets the shard.
    #[must_use]
    pub fn with_shard(mut self, shard: ShardId) -> Self {
        self.shard = shard;
        self
    }

    /// Sets the gateway URL (no query string).
    #[must_use]
    pub fn with_gateway_url(mut self, url: impl Into<String>) -> Self {
        self.gateway_url = url.into();
        self
    }

    /// Sets the compression.
    #[must_use]
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the initial presence.
    #[must_use]
    pub fn with_presence(mut self, presence: PresenceUpdate) -> Self {
        self.initial_presence = presence;
        self
    }

    /// Sets the seed of the shard's randomness.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Resumes an exported session instead of identifying.
    #[must_use]
    pub fn with_resume(mut self, resume: ResumeInfo) -> Self {
        self.resume = Some(resume);
        self
    }

    /// Sets the dispatch filter.
    #[must_use]
    pub fn with_event_types(mut self, event_types: EventTypes) -> Self {
        self.event_types = event_types;
        self
    }

    /// Delivers every dispatch but READY and RESUMED raw (see [`raw_dispatches`](Self::raw_dispatches)).
    #[must_use]
    pub fn with_raw_dispatches(mut self, raw: bool) -> Self {
        self.raw_dispatches = raw;
        self
    }

    /// Sets the step timeouts.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets the backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the large threshold.
    #[must_use]
    pub fn with_large_threshold(mut self, threshold: LargeThreshold) -> Self {
        self.large_threshold = threshold;
        self
    }

    #[cfg(feature = "tokio")]
    /// Sets the proxy.
    #[must_use]
    pub fn with_proxy(mut self, proxy: impl Into<String>) -> Self {
        self.proxy = Some(proxy.into());
        self
    }

    /// Sets the decoder limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// A config's default seed, drawn from OS randomness (std's `RandomState`): the one place where
/// randomness enters the shard; set [`ShardConfig::seed`] for a run that replays exactly.
#[allow(clippy::disallowed_methods)]
fn random_seed() -> u64 {
    std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8)
}
