//! The proxy core's configuration: what it serves, who may connect, and its bounds.

use std::ops::Range;
use std::time::Duration;

use gateway_model::{Intents, Token};
use gateway_server::ConnectionConfig;

use crate::cache::CacheConfig;
use crate::log::LogLimits;

/// What the proxy's core keeps and allows. `Debug` leaves the tokens out.
#[derive(Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The bot's token: a client may identify with it (with or without `Bot `).
    pub token: Token,
    /// Other tokens clients may identify with instead of the bot's.
    pub client_secrets: Vec<Token>,
    /// The bot's shard count; a client's `[shard_id, num_shards]` must use it.
    pub shards: u32,
    /// The shards this proxy serves (the others close 4010).
    pub range: Range<u32>,
    /// The upstream's intents: a client's must be within them (else 4014).
    pub intents: Intents,
    /// The proxy's websocket URL, READY's `resume_gateway_url` for clients.
    pub url: String,
    /// Each client connection's rules (HELLO's interval, the heartbeat deadline, the payload
    /// budget, the payload size).
    pub connection: ConnectionConfig,
    /// Each shard's replay log.
    pub log: LogLimits,
    /// How long a client session stays resumable after its connection went.
    pub session_ttl: Duration,
    /// Commands one client may have forwarded upstream per 60 s (its share of the shard's
    /// 120); over it the client is closed with 4008.
    pub forwarded_per_minute: usize,
    /// Bytes sent to one client that its socket may not have taken yet: past it, the client's
    /// cursor waits in the log (a replay too), and the rest follows as the socket takes it.
    pub send_window: usize,
    /// A client whose socket takes nothing for this long while it is behind is closed with
    /// 4000 (it is too slow for its shard); its session stays, to resume from the log.
    pub stall_timeout: Duration,
    /// What the guild cache keeps.
    pub cache: CacheConfig,
    /// What becomes of clients' presence updates (op 3).
    pub presence: PresencePolicy,
    /// Share with the other proxy processes of one cluster: write down each session when it
    /// leaves its connection, and while it is on one ([`ProxyOutput::SessionSaved`]), so
    /// that any of them takes its RESUME; announce all-members requests so that the limit
    /// holds for the whole bot. Default off.
    ///
    /// [`ProxyOutput::SessionSaved`]: crate::ProxyOutput::SessionSaved
    pub share_sessions: bool,
    /// The most other processes' sessions kept (the oldest go first). Default 100,000.
    pub max_shared_sessions: usize,
    /// Seeds the client session ids and tags this proxy's member request nonces: proxies
    /// sharing shards (on Redis) need seeds of their own.
    pub seed: u64,
}

impl ProxyConfig {
    /// A proxy for all `shards` of the bot with `token`, upstream on `intents`, known to
    /// clients as `url`. Discord's limits elsewhere: a replay log of 64 MiB or 10 minutes per
    /// shard, sessions resumable for 3 minutes, 60 forwarded commands per client per minute,
    /// a send window of 1 MiB per client, closed after 30 s without progress.
    pub fn new(token: Token, shards: u32, intents: Intents, url: impl Into<String>) -> Self {
        Self {
            token,
            client_secrets: Vec::new(),
            shards,
            range: 0..shards,
            intents,
            url: url.into(),
            connection: ConnectionConfig::default(),
            log: LogLimits {
                max_bytes: 64 << 20,
                max_age: Duration::from_secs(600),
            },
            session_ttl: Duration::from_secs(180),
            forwarded_per_minute: 60,
            send_window: 1 << 20,
            stall_timeout: Duration::from_secs(30),
            cache: CacheConfig::default(),
            presence: PresencePolicy::default(),
            share_sessions: false,
            max_shared_sessions: 100_000,
            seed: 0,
        }
    }
}

/// What the proxy does with a client's presence update (op 3). Every client of a shard shares
/// the bot's one presence there; the upstream IDENTIFY always sends the presence the upstream
/// shard was configured with (so after an upstream new session the configured one shows again,
/// until a client sets another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PresencePolicy {
    /// Forwarded to the client's shard: the last writer wins.
    #[default]
    LastWriterWins,
    /// Dropped: the configured presence stays (it still counts against the client's share).
    Ignore,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("token", &"<redacted>")
            .field("client_secrets", &self.client_secrets.len())
            .field("shards", &self.shards)
            .field("range", &self.range)
            .field("intents", &self.intents)
            .field("url", &self.url)
            .field("log", &self.log)
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}
