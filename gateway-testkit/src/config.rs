//! How the fake gateway behaves.

use std::sync::Arc;
use std::time::Duration;

use gateway_model::Intents;

use crate::WorldConfig;

/// What the server does with a full member list request (`query: ""`, `limit: 0`) from a session
/// without GUILD_MEMBERS. Discord's behaviour is undocumented; one report says it never answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingMembersIntent {
    /// Never answer (the reported behaviour).
    #[default]
    Ignore,
    /// Close the connection with this code.
    Close(u16),
}

/// The fake gateway's configuration. Every field has a default matching Discord's documented
/// behaviour; tests change what they exercise. `Debug` leaves the token out.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The bot token clients must identify with, with or without a `Bot ` prefix (else close
    /// 4004). Default `"testkit-token"`.
    pub token: String,
    /// HELLO's heartbeat interval. Default 41.25 s, as Discord sends.
    pub heartbeat_interval: Duration,
    /// Close with 4009 when no heartbeat arrived for this long. Default: 1.5 × the interval.
    /// `None` never closes.
    pub heartbeat_timeout: Option<Duration>,
    /// The privileged intents this fake application may use (others close 4014). Default: all.
    pub allowed_intents: Intents,
    /// IDENTIFYs allowed per 5 s, one per bucket `shard_id % max_concurrency`; an identify in a
    /// bucket used less than 5 s before gets INVALID_SESSION false. Default 1.
    pub max_concurrency: u32,
    /// The identify window. Default 5 s.
    pub identify_window: Duration,
    /// Most guilds one shard may hold before IDENTIFY closes 4011. Default 2500.
    pub max_guilds_per_shard: usize,
    /// Dispatches kept per session for RESUME to replay. Default 2048.
    pub resume_buffer: usize,
    /// How long a session stays resumable after its connection closed without 1000/1001.
    /// Default 3 minutes.
    pub session_ttl: Duration,
    /// Payloads a connection may send per 60 s before close 4008. Default 120.
    pub commands_per_minute: usize,
    /// Largest payload a client may send (else close 4002, "Error while decoding payload.").
    /// Default 4096.
    pub max_client_payload: usize,
    /// Interval between full member list requests for one guild. Default 30 s.
    pub full_member_request_interval: Duration,
    /// Full member list requests without GUILD_MEMBERS.
    pub missing_members_intent: MissingMembersIntent,
    /// The shard count `GET /gateway/bot` recommends. Default 1.
    pub recommended_shards: u32,
    /// Session starts (IDENTIFYs answered with READY) allowed per
    /// [`session_start_reset`](Self::session_start_reset) window, reported by `GET /gateway/bot`.
    /// An IDENTIFY past it is closed with 4004, as Discord resets the token of a bot that spends
    /// more. Default 1000.
    pub session_start_limit: u32,
    /// The session start window. Default 24 hours.
    pub session_start_reset: Duration,
    /// Longest websocket frame or message a client may send; a longer one is refused from its
    /// header, before it is buffered, and the connection closed with 4002. Default 64 KiB.
    pub max_client_frame: usize,
    /// Time a client has to send its request head and finish the websocket handshake. Default
    /// 10 s.
    pub handshake_timeout: Duration,
    /// Most connections (websocket or HTTP) open at once; more are dropped at accept. Default
    /// 4096.
    pub max_connections: usize,
    /// Recorded payloads and closed connections kept for assertions; the oldest go first.
    /// Default 100,000.
    pub history_limit: usize,
    /// Bytes of frames that may wait for one client that does not read them (TCP pushes back).
    /// The client is still read meanwhile (its heartbeats count), and it is dropped only past
    /// this bound, with [`DropReason::NotReading`](crate::DropReason::NotReading) in its
    /// [`ConnectionInfo`](crate::ConnectionInfo). Default 256 MiB, so that a test may queue tens
    /// of thousands of dispatches at once for a client that reads slowly.
    pub max_unread_bytes: usize,
    /// The world.
    pub world: WorldConfig,
    /// Dispatches (event name, JSON `d`) that `POST /testkit/replay` and
    /// `POST /testkit/shards/{n}/replay` send to live sessions: in steps of 1,000, between which
    /// the gateway reads its clients, or with `?at-once` in one step, every one compressed before
    /// the first is written (so that a client's throughput measures the client, not the server).
    /// Default: none.
    pub replay: Arc<[(String, String)]>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            token: "testkit-token".to_owned(),
            heartbeat_interval: Duration::from_millis(41_250),
            heartbeat_timeout: None,
            allowed_intents: Intents::all(),
            max_concurrency: 1,
            identify_window: Duration::from_secs(5),
            max_guilds_per_shard: 2500,
            resume_buffer: 2048,
            session_ttl: Duration::from_secs(180),
            commands_per_minute: 120,
            max_client_payload: 4096,
            full_member_request_interval: Duration::from_secs(30),
            missing_members_intent: MissingMembersIntent::Ignore,
            recommended_shards: 1,
            session_start_limit: 1000,
            session_start_reset: Duration::from_secs(24 * 3600),
            max_client_frame: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            history_limit: 100_000,
            max_unread_bytes: 256 << 20,
            world: WorldConfig::default(),
            replay: Arc::from(Vec::new()),
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("token", &"<redacted>")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_concurrency", &self.max_concurrency)
            .field("identify_window", &self.identify_window)
            .field("session_start_limit", &self.session_start_limit)
            .field("world", &self.world)
            .field("replay", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl GatewayConfig {
    /// The heartbeat timeout in effect.
    pub(crate) fn heartbeat_deadline(&self) -> Option<Duration> {
        match self.heartbeat_timeout {
            Some(t) => Some(t),
            None => Some(self.heartbeat_interval + self.heartbeat_interval / 2),
        }
    }

    /// The rules each connection keeps, for the server side.
    pub(crate) fn connection_config(&self) -> gateway_server::ConnectionConfig {
        let mut config = gateway_server::ConnectionConfig::default();
        config.heartbeat_interval = self.heartbeat_interval;
        config.heartbeat_timeout = self.heartbeat_deadline();
        config.commands_per_minute = self.commands_per_minute;
        config.max_payload = self.max_client_payload;
        config.name = "gateway-testkit";
        config
    }
}
