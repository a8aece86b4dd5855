//! The proxy on tokio: shards upstream (a group, or a cluster on Redis: `upstream`), a
//! listener downstream, and one loop that owns
//! the [`ProxyCore`] and carries its inputs in and its outputs out. It holds no protocol rule.
//!
//! Every wait of the loop is a branch of its one `select!`, in this order: shutdown, the client
//! connections' frames (bounded by their budgets, and never to wait behind an upstream burst),
//! the core's timer, the shards' events, new sockets, and the health tick. Each
//! socket runs in its own task (its request head, then a websocket in `conn` or HTTP in
//! `http`); upstream has tasks of its own that send the core's commands in order.

mod conn;
mod http;
mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_model::DispatchEvent;
use gateway_server::{Replayed, Transmit};
use gateway_shard::{GroupEvents, ShardEvent, ShardGroup};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::conn::{FromClient, ToClient};
use self::http::{Health, Http, ShardHealth};
#[cfg(feature = "cluster")]
pub use self::upstream::ClusterUpstream;
use self::upstream::{Upstream, UpstreamEvent};
use crate::{ClientId, ProxyConfig, ProxyCore, ProxyOutput, UpstreamReady};

/// How long a stopping proxy waits for its sessions to be posted, then for its clients'
/// sockets to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How the proxy's sockets are served.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where `/api/*` requests go, unchanged. Default `https://discord.com`.
    pub rest: String,
    /// Time a socket has to send its request head and finish a websocket handshake.
    pub handshake_timeout: Duration,
    /// The largest websocket frame a client may send (refused from its header, close 4002).
    pub max_frame: usize,
    /// Serves `/metrics` from this recorder.
    pub metrics: Option<PrometheusHandle>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            rest: "https://discord.com".to_owned(),
            handshake_timeout: Duration::from_secs(10),
            max_frame: 64 * 1024,
            metrics: None,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The HTTP client for the REST upstream.
    #[error("REST client: {0}")]
    Rest(String),
}

/// A running proxy: its loop and its listener.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Serves `group`'s shards (its events in `events`) on `listener`, as `config` says.
    /// `config.url` should be the listener's websocket URL as clients reach it.
    pub fn start(
        config: ProxyConfig,
        group: ShardGroup,
        events: GroupEvents,
        listener: TcpListener,
        options: ServeOptions,
    ) -> Result<Self, ProxyError> {
        let upstream = Upstream::group(group, events, config.range.clone());
        Self::start_on(config, upstream, listener, options)
    }

    /// Serves the shards of a cluster on Redis (`upstream`) on `listener`, as `config` says:
    /// from each shard's session start in its stream, so that a proxy started again serves
    /// its clients the same guilds with no IDENTIFY. Proxies on one cluster need `config.seed`s
    /// of their own.
    #[cfg(feature = "cluster")]
    pub fn start_on_cluster(
        config: ProxyConfig,
        upstream: ClusterUpstream,
        listener: TcpListener,
        options: ServeOptions,
    ) -> Result<Self, ProxyError> {
        let upstream = Upstream::cluster(upstream, config.range.clone());
        Self::start_on(config, upstream, listener, options)
    }

    fn start_on(
        config: ProxyConfig,
        upstream: Upstream,
        listener: TcpListener,
        options: ServeOptions,
    ) -> Result<Self, ProxyError> {
        let addr = listener
            .local_addr()
            .map_err(|e| ProxyError::Rest(e.to_string()))?;
        let tls = gateway_shard::tls_config(&[]).map_err(|e| ProxyError::Rest(e.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ProxyError::Rest(e.to_string()))?;
        let (health_tx, health) = watch::channel(Health::default());
        let (to_loop, from_clients) = mpsc::channel(4096);
        let (sent, sent_rx) = mpsc::unbounded_channel();
        let http = Arc::new(Http {
            to_loop: to_loop.clone(),
            url: config.url.clone(),
            shards: config.shards,
            rest: options.rest.clone(),
            client,
            health,
            metrics: options.metrics.clone(),
        });
        let shutdown = CancellationToken::new();
        let driver = Driver {
            core: ProxyCore::new(config),
            routes: BTreeMap::new(),
            health: health_tx,
            next_client: 0,
            options,
            http,
            to_loop,
            sent,
        };
        let task =
            tokio::spawn(driver.run(upstream, from_clients, sent_rx, listener, shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops: every client is closed with 4000 (resumable), then the loop ends; a cluster node
    /// of this process hands its shards over.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the proxy's loop failed");
        }
    }

    /// Waits until the loop ends (on shutdown, or when the shards are gone).
    pub async fn join(&mut self) {
        if let Err(e) = (&mut self.task).await {
            tracing::error!(error = %e, "the proxy's loop failed");
        }
    }
}

/// Where one client's transmits go.
struct Route {
    tx: mpsc::UnboundedSender<ToClient>,
}

struct Driver {
    core: ProxyCore,
    routes: BTreeMap<ClientId, Route>,
    health: watch::Sender<Health>,
    next_client: ClientId,
    options: ServeOptions,
    http: Arc<Http>,
    to_loop: mpsc::Sender<FromClient>,
    sent: mpsc::UnboundedSender<(ClientId, usize)>,
}

impl Driver {
    async fn run(
        mut self,
        mut upstream: Upstream,
        mut from_clients: mpsc::Receiver<FromClient>,
        mut sent: mpsc::UnboundedReceiver<(ClientId, usize)>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline = self.core.poll_timeout();
            tokio::select! {
                // Clients first: each is bounded by its budget, and a heartbeat waiting behind
                // a burst from upstream must not make a live client look like a zombie.
                biased;
                () = shutdown.cancelled() => break,
                Some(message) = from_clients.recv() => self.client(message),
                Some((client, bytes)) = sent.recv() => self.core.handle_sent(now(), client, bytes),
                () = sleep_until(deadline) => self.core.handle_timeout(now()),
                event = upstream.next() => match event {
                    Some(UpstreamEvent::Shard(shard, event)) => self.upstream(shard, event),
                    #[cfg(feature = "cluster")]
                    Some(UpstreamEvent::Tailed(entry)) => self.tailed(entry),
                    #[cfg(feature = "cluster")]
                    Some(UpstreamEvent::Shared(note)) => self.shared(note),
                    None => break,
                },
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => self.accept(tcp),
                    Err(e) => tracing::warn!(error = %e, "accept"),
                },
                _ = tick.tick() => self.publish_health(&upstream),
            }
            self.drain(&upstream);
        }
        self.close_clients(&upstream, &mut from_clients).await;
        upstream.shutdown().await;
    }

    /// Closes every client to resume: their sessions posted first (on a cluster), then the
    /// closes after what was sent, then a wait of up to [`CLOSE_WAIT`] for the sockets to end.
    async fn close_clients(
        &mut self,
        upstream: &Upstream,
        from_clients: &mut mpsc::Receiver<FromClient>,
    ) {
        let now = now();
        self.core.handle_shutdown(now);
        let mut held = Vec::new();
        while let Some(output) = self.core.poll_output(now) {
            match output {
                ProxyOutput::SessionSaved(_)
                | ProxyOutput::SessionEnded { .. }
                | ProxyOutput::MembersAsked { .. } => upstream.share(output),
                other => held.push(other),
            }
        }
        if tokio::time::timeout(CLOSE_WAIT, upstream.flush_shared())
            .await
            .is_err()
        {
            tracing::warn!("sessions not all posted before the clients were closed");
        }
        for output in held {
            self.act(upstream, output);
        }
        for route in self.routes.values() {
            // A connection already gone has nothing to close.
            let _closed = route.tx.send(ToClient::Abort(
                gateway_model::CloseCode::UnknownError.as_u16(),
            ));
        }
        let deadline = clock() + CLOSE_WAIT;
        while !self.routes.is_empty() {
            match tokio::time::timeout_at(deadline, from_clients.recv()).await {
                Ok(Some(FromClient::Gone(client, _))) => {
                    self.routes.remove(&client);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// A note of the sessions other proxy processes share.
    #[cfg(feature = "cluster")]
    fn shared(&mut self, note: upstream::Shared) {
        match note {
            upstream::Shared::Saved(record) => self.core.handle_shared_session(now(), record),
            upstream::Shared::Ended(id) => self.core.handle_shared_session_ended(&id),
            upstream::Shared::Members { guild, nonce, age } => {
                (self.core).handle_shared_members_request(now(), guild, nonce, age);
            }
        }
    }

    /// An entry of a shard's stream: its READY (a new upstream session), a dispatch, or a
    /// RESUMED (the same session, on another connection or node: nothing for clients).
    #[cfg(feature = "cluster")]
    fn tailed(&mut self, entry: gateway_cluster::Tailed) {
        let now = now();
        self.core.handle_upstream_at(entry.shard, entry.pos);
        match entry.name.as_str() {
            "READY" if entry.data.is_empty() => {
                tracing::error!(
                    shard = entry.shard,
                    "a READY in the stream without its data"
                );
            }
            "READY" => {
                let ready = UpstreamReady { data: entry.data };
                self.core.handle_upstream_ready(now, entry.shard, ready);
            }
            "RESUMED" => {}
            name => {
                self.core
                    .handle_upstream_dispatch(now, entry.shard, name, &entry.data);
            }
        }
    }

    fn upstream(&mut self, shard: u32, event: ShardEvent) {
        let now = now();
        match event {
            ShardEvent::Ready(ready) => {
                // The READY as the gateway sent it, whole; one built by hand is written out.
                let data = match &ready.raw {
                    Some(raw) => Ok(raw.get().to_owned()),
                    None => sonic_rs::to_string(&*ready),
                };
                match data {
                    Ok(data) => self
                        .core
                        .handle_upstream_ready(now, shard, UpstreamReady { data }),
                    Err(e) => tracing::error!(shard, error = %e, "READY could not be written"),
                }
            }
            ShardEvent::Dispatch(dispatch) => match &dispatch.event {
                DispatchEvent::Other(raw) => {
                    self.core
                        .handle_upstream_dispatch(now, shard, &raw.name, raw.data.get());
                }
                typed => tracing::warn!(
                    shard,
                    event = typed.name(),
                    "typed dispatch: the group must run on raw dispatches"
                ),
            },
            ShardEvent::HeartbeatAck { latency } => {
                metrics::gauge!("gateway_proxy_upstream_latency_seconds", "shard" => shard.to_string())
                    .set(latency.as_secs_f64());
            }
            _ => {}
        }
    }

    fn client(&mut self, message: FromClient) {
        let now = now();
        match message {
            FromClient::Open { client, query, tx } => {
                self.routes.insert(client, Route { tx });
                self.core.handle_open(now, client, &query);
            }
            FromClient::Frame(client, frame) => self.core.handle_frame(now, client, frame),
            FromClient::Refused(client, rule) => self.core.handle_frame_refused(now, client, rule),
            FromClient::Reconnect(shard, reply) => {
                let asked = self.core.handle_reconnect_clients(now, shard);
                if reply.send(asked).is_err() {
                    tracing::debug!(shard, "the reconnect request went before its answer");
                }
            }
            FromClient::Gone(client, closed_with) => {
                self.routes.remove(&client);
                match closed_with {
                    Some(code) => self.core.handle_client_close(now, client, code),
                    None => self.core.handle_disconnected(now, client),
                }
            }
        }
    }

    /// Carries the core's outputs out.
    fn drain(&mut self, upstream: &Upstream) {
        let now = now();
        while let Some(output) = self.core.poll_output(now) {
            self.act(upstream, output);
        }
    }

    /// Carries one output out.
    fn act(&mut self, upstream: &Upstream, output: ProxyOutput) {
        match output {
            ProxyOutput::Client { client, transmit } => self.transmit(client, transmit),
            ProxyOutput::Abort { client, code } => {
                if let Some(route) = self.routes.remove(&client)
                    && route.tx.send(ToClient::Abort(code)).is_err()
                {
                    tracing::debug!(client, "aborted client already gone");
                }
            }
            ProxyOutput::Upstream { shard, command } => {
                if !upstream.send(shard, command) {
                    tracing::warn!(shard, "no command task for the shard: command dropped");
                }
            }
            ProxyOutput::SessionSaved(_)
            | ProxyOutput::SessionEnded { .. }
            | ProxyOutput::MembersAsked { .. } => upstream.share(output),
        }
    }

    fn transmit(&mut self, client: ClientId, transmit: Transmit) {
        let Some(route) = self.routes.get(&client) else {
            return;
        };
        // A task that ended has its `Gone` on the way.
        if route
            .tx
            .send(ToClient::Transmit(transmit, clock()))
            .is_err()
        {
            tracing::debug!(client, "transmit for a connection that ended");
        }
    }

    fn accept(&mut self, tcp: TcpStream) {
        // Each dispatch goes out as it comes, as Discord's do: no wait for the last one's ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay");
        }
        self.next_client += 1;
        let client = self.next_client;
        let options = self.options.clone();
        let http = Arc::clone(&self.http);
        let to_loop = self.to_loop.clone();
        let sent = self.sent.clone();
        let report_every = (self.core.config().send_window / 4).clamp(1, conn::REPORT_EVERY);
        tokio::spawn(serve_socket(
            tcp,
            Socket {
                client,
                report_every,
            },
            options,
            http,
            to_loop,
            sent,
        ));
    }

    fn publish_health(&mut self, upstream: &Upstream) {
        let shards: Vec<ShardHealth> = self
            .core
            .config()
            .range
            .clone()
            .map(|id| {
                let ready = self.core.is_shard_ready(id);
                // On a cluster the shard may run anywhere: its stream says it is up.
                let (connected, latency) = upstream.connection(id).unwrap_or((ready, None));
                ShardHealth {
                    id,
                    ready,
                    connected,
                    latency_ms: latency.map(|l| l.as_secs_f64() * 1000.0),
                }
            })
            .collect();
        let ready = shards.iter().all(|s| s.ready);
        self.health.send_replace(Health { ready, shards });
        let counts = self.core.counts();
        metrics::gauge!("gateway_proxy_clients").set(counts.clients as f64);
        metrics::gauge!("gateway_proxy_sessions").set(counts.sessions as f64);
        metrics::gauge!("gateway_proxy_replay_log_bytes").set(counts.log_bytes as f64);
        metrics::gauge!("gateway_proxy_replay_log_entries").set(counts.log_entries as f64);
        metrics::gauge!("gateway_proxy_cache_bytes").set(counts.cache_bytes as f64);
        metrics::gauge!("gateway_proxy_cache_guilds").set(counts.guilds as f64);
    }
}

/// Who a socket is to the loop, and how often it reports what it sent.
struct Socket {
    client: ClientId,
    report_every: usize,
}

/// One socket: its request head within the handshake timeout, then a websocket or HTTP.
async fn serve_socket(
    mut tcp: TcpStream,
    Socket {
        client,
        report_every,
    }: Socket,
    options: ServeOptions,
    http: Arc<Http>,
    to_loop: mpsc::Sender<FromClient>,
    sent: mpsc::UnboundedSender<(ClientId, usize)>,
) {
    let deadline = clock() + options.handshake_timeout;
    let (head, bytes) = match gateway_server::read_head_by(&mut tcp, deadline).await {
        Ok(head) => head,
        Err(e) => return tracing::debug!(client, error = %e, "no request head"),
    };
    let stream = Replayed::new(bytes, tcp);
    if !head.is_websocket() {
        return http::serve(http, stream).await;
    }
    match gateway_server::accept(stream, options.max_frame, deadline).await {
        Ok(accepted) => {
            let ws = accepted.ws;
            conn::serve(ws, client, report_every, accepted.query, to_loop, sent).await;
        }
        Err(e) => tracing::debug!(client, error = %e, "websocket handshake failed"),
    }
}

/// The clock, read here (the core takes time as an input): tokio's, so tests may pause it.
#[allow(clippy::disallowed_methods)] // the driver reads the clock for the core
fn clock() -> Instant {
    Instant::now()
}

fn now() -> std::time::Instant {
    clock().into_std()
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
