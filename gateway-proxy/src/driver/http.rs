//! The proxy's HTTP side, on the same port as its websockets (hyper, on the stream that replays
//! the request head): discovery (`GET /api/v*/gateway`, `/gateway/bot`), `GET /healthz`,
//! `GET /metrics`, and every other `/api/*` request passed through unchanged to the REST
//! upstream, so that a bot changes its REST base URL and nothing else.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::watch;

use gateway_server::Replayed;

/// The largest request body passed through (Discord's attachment limit is lower).
const MAX_BODY: usize = 128 << 20;

/// What `/healthz` reports: each upstream shard.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Health {
    /// Every shard has a session.
    pub(crate) ready: bool,
    pub(crate) shards: Vec<ShardHealth>,
}

/// One upstream shard in `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ShardHealth {
    pub(crate) id: u32,
    /// READY came.
    pub(crate) ready: bool,
    /// Its websocket is open.
    pub(crate) connected: bool,
    /// The last heartbeat's round trip, in milliseconds.
    pub(crate) latency_ms: Option<f64>,
}

/// What the HTTP side serves from.
pub(crate) struct Http {
    /// The loop, for the admin routes.
    pub(crate) to_loop: tokio::sync::mpsc::Sender<super::conn::FromClient>,
    /// The websocket URL clients get.
    pub(crate) url: String,
    pub(crate) shards: u32,
    /// Where `/api/*` goes (`https://discord.com`).
    pub(crate) rest: String,
    pub(crate) client: reqwest::Client,
    pub(crate) health: watch::Receiver<Health>,
    pub(crate) metrics: Option<PrometheusHandle>,
}

/// Serves one HTTP connection (keep-alive included).
pub(crate) async fn serve(http: Arc<Http>, stream: Replayed) {
    let service = hyper::service::service_fn(move |req| {
        let http = Arc::clone(&http);
        async move { Ok::<_, Infallible>(route(&http, req).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

async fn route(http: &Http, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let get = req.method() == Method::GET;
    let api = path.strip_prefix("/api").map(strip_version);
    match (get, path.as_str(), api) {
        (true, "/healthz", _) => healthz(http),
        (true, "/metrics", _) => match &http.metrics {
            Some(handle) => text(StatusCode::OK, handle.render()),
            None => text(StatusCode::NOT_FOUND, "metrics off".into()),
        },
        (false, _, None) if req.method() == Method::POST => admin(http, &path).await,
        (true, _, Some("/gateway")) => json(StatusCode::OK, &Gateway { url: &http.url }),
        (true, _, Some("/gateway/bot")) => json(StatusCode::OK, &gateway_bot(http)),
        (_, _, Some(_)) => pass_through(http, req).await,
        _ => text(StatusCode::NOT_FOUND, "not found".into()),
    }
}

/// `POST /shards/{n}/reconnect`: op 7 to every client of shard `n` (they resume). The fake
/// gateway's spelling, `/testkit/shards/{n}/reconnect`, is the same route, so a test written
/// against the fake gateway drives the proxy's clients the same way.
async fn admin(http: &Http, path: &str) -> Response<Full<Bytes>> {
    let shard = path
        .strip_prefix("/testkit")
        .unwrap_or(path)
        .strip_prefix("/shards/")
        .and_then(|rest| rest.strip_suffix("/reconnect"))
        .and_then(|n| n.parse::<u32>().ok());
    let Some(shard) = shard else {
        return text(StatusCode::NOT_FOUND, "not found".into());
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let asked = match http
        .to_loop
        .send(super::conn::FromClient::Reconnect(shard, tx))
        .await
    {
        Ok(()) => rx.await.unwrap_or(0),
        Err(_) => 0,
    };
    let status = if asked > 0 {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    json(
        status,
        &Reconnected {
            ok: asked > 0,
            clients: asked,
        },
    )
}

#[derive(Serialize)]
struct Reconnected {
    ok: bool,
    clients: usize,
}

/// `/v10/gateway` → `/gateway`; a path with no version stays.
fn strip_version(path: &str) -> &str {
    match path.strip_prefix("/v") {
        Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
        None => path,
    }
}

#[derive(Serialize)]
struct Gateway<'a> {
    url: &'a str,
}

#[derive(Serialize)]
struct GatewayBot<'a> {
    url: &'a str,
    shards: u32,
    session_start_limit: SessionStartLimit,
}

#[derive(Serialize)]
struct SessionStartLimit {
    total: u32,
    remaining: u32,
    reset_after: u64,
    max_concurrency: u32,
}

/// Identifying to the proxy costs no upstream session start: the budget is whole, and large
/// enough for every shard (@discordjs/ws refuses to connect when `remaining` is under the
/// shard count).
fn gateway_bot(http: &Http) -> GatewayBot<'_> {
    let total = http.shards.max(1000);
    GatewayBot {
        url: &http.url,
        shards: http.shards,
        session_start_limit: SessionStartLimit {
            total,
            remaining: total,
            reset_after: 0,
            max_concurrency: http.shards.clamp(1, 16),
        },
    }
}

fn healthz(http: &Http) -> Response<Full<Bytes>> {
    let health = http.health.borrow().clone();
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &health)
}

/// The request, unchanged, to the REST upstream; its answer, unchanged, back.
async fn pass_through(http: &Http, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return text(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")),
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{target}", http.rest.trim_end_matches('/'));
    let mut request = http.client.request(parts.method, &url).body(body);
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            request = request.header(name, value);
        }
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "REST upstream");
            return text(
                StatusCode::BAD_GATEWAY,
                "the REST upstream did not answer".into(),
            );
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "REST upstream body");
            return text(
                StatusCode::BAD_GATEWAY,
                "the REST upstream's answer broke off".into(),
            );
        }
    };
    let mut out = Response::new(Full::new(body));
    *out.status_mut() = status;
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding"
        ) {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let body = sonic_rs::to_vec(body).unwrap_or_default();
    let mut out = Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() = status;
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() = status;
    out.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_off_api_paths() {
        assert_eq!(strip_version("/v10/gateway/bot"), "/gateway/bot");
        assert_eq!(strip_version("/v9/gateway"), "/gateway");
        assert_eq!(strip_version("/gateway"), "/gateway");
        assert_eq!(strip_version("/v10"), "");
    }
}
