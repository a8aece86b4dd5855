//! Plain HTTP on the gateway's port: the REST routes a bot asks before it connects (its login
//! included), and the
//! testkit's own control routes for tests written in any language.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v10/gateway` | `{"url": "ws://127.0.0.1:PORT"}` |
//! | `GET /api/v10/gateway/bot` | the URL, the recommended shard count and `session_start_limit` (needs `Authorization: Bot TOKEN`) |
//! | `GET /api/v10/users/@me` | the world's bot user, as READY carries it (needs `Authorization: Bot TOKEN`) |
//! | `GET /api/v10/oauth2/applications/@me` | the bot's application: its id, flags, owner (no team), bot user (needs `Authorization: Bot TOKEN`) |
//! | `GET /testkit/stats` | the server's [`Stats`](crate::Stats) |
//! | `POST /testkit/replay` | sends [`GatewayConfig::replay`](crate::GatewayConfig::replay) to every live session, in steps of 1,000 (the gateway keeps reading its clients meanwhile), or all in one step with `?at-once`: `{"sessions": S, "dispatched": N}` |
//! | `POST /testkit/shards/{n}/replay` | the same to shard `n`'s live session |
//! | `POST /testkit/shards/{n}/{fault}` | injects a fault on shard `n`'s live connection: `reconnect`, `drop`, `zombie`, `request-heartbeat`, `close/{code}`, `invalid-session/{true,false}` |
//!
//! Any API version in the path is accepted (`/api/v9/…`, `/api/…`), as bots pin different ones.
//! Every answer closes the connection (`Connection: close`).

use std::sync::Arc;

use gateway_model::{GatewayBot, SessionStartLimit};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Fault;
use crate::shared::{Shared, now};
use gateway_server::Head;

/// The largest request body read (and ignored).
const MAX_BODY: usize = 64 * 1024;

#[derive(Serialize)]
struct GatewayJson<'a> {
    url: &'a str,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    message: &'a str,
    code: u32,
}

#[derive(Serialize)]
struct OkJson {
    ok: bool,
}

#[derive(Serialize)]
struct ReplayJson {
    sessions: usize,
    dispatched: usize,
}

/// One HTTP answer.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(status: u16, body: &impl Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_string(body).unwrap_or_default(),
        }
    }

    /// A body already serialized.
    fn raw_json(status: u16, body: String) -> Self {
        Self { status, body }
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(status, &ErrorJson { message, code: 0 })
    }
}

/// Answers one plain HTTP request whose head was read, then closes.
///
/// The body is read (and dropped) within the handshake timeout: a client that announces a body
/// and never sends it is let go, like a slow handshake. The route itself runs on tokio's blocking
/// pool, since a large replay takes the gateway's lock many times over.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    mut tcp: TcpStream,
    head: Head,
    read: usize,
    connection: u64,
) {
    let Some(body) = head.content_length() else {
        return answer(
            tcp,
            &head,
            Answer::error(400, "400: Bad Request (Content-Length)"),
        )
        .await;
    };
    let drained = tokio::time::timeout(
        shared.config.handshake_timeout,
        drain_body(&mut tcp, body.min(MAX_BODY).saturating_sub(read)),
    );
    if drained.await.is_err() {
        tracing::debug!(connection, "http request body timed out");
        return;
    }
    let routed = tokio::task::spawn_blocking({
        let (shared, head) = (Arc::clone(shared), head.clone());
        move || route(&shared, &head)
    });
    match routed.await {
        Ok(routed) => answer(tcp, &head, routed).await,
        Err(e) => tracing::error!(connection, error = %e, "http route failed"),
    }
}

/// Reads and drops `left` bytes of body (or until the client stops), so that closing does not
/// reset the client's write.
async fn drain_body(tcp: &mut TcpStream, mut left: usize) {
    let mut sink = [0u8; 4096];
    while left > 0 {
        match tcp.read(&mut sink[..left.min(4096)]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left -= n,
        }
    }
}

/// Writes `answer` and closes.
async fn answer(mut tcp: TcpStream, head: &Head, answer: Answer) {
    tracing::debug!(method = %head.method, target = %head.target, status = answer.status, "http");
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.status,
        reason_phrase(answer.status),
        answer.body.len(),
        answer.body
    );
    if let Err(e) = tcp.write_all(response.as_bytes()).await {
        tracing::debug!(error = %e, "http answer not delivered");
        return;
    }
    if let Err(e) = tcp.shutdown().await {
        tracing::debug!(error = %e, "http shutdown");
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "",
    }
}

/// The path without its query and without `/api` and `/vN`.
fn route_path(target: &str) -> &str {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_prefix("/api").unwrap_or(path);
    match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.trim_start_matches(|c: char| c.is_ascii_digit())
        }
        _ => path,
    }
    .trim_end_matches('/')
}

fn route(shared: &Arc<Shared>, head: &Head) -> Answer {
    let path = route_path(&head.target);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (head.method.as_str(), segments.as_slice()) {
        ("GET", ["gateway"]) => Answer::json(200, &GatewayJson { url: &shared.url }),
        ("GET", ["gateway", "bot"]) => gateway_bot(shared, head),
        ("GET", ["users", "@me"]) => authorized(shared, head, "/users/@me", |d| {
            d.core.world().current_user_json()
        }),
        ("GET", ["oauth2", "applications", "@me"]) => {
            let allowed = shared.config.allowed_intents;
            authorized(shared, head, "/oauth2/applications/@me", |d| {
                d.core.world().current_application_json(allowed)
            })
        }
        ("GET", ["testkit", "stats"]) => Answer::json(200, &shared.lock().core.view().stats()),
        ("POST", ["testkit", "replay"]) => replay(shared, None, at_once(head)),
        ("POST", ["testkit", "shards", shard, "replay"]) => match shard.parse::<u32>() {
            Ok(shard) => replay(shared, Some(shard), at_once(head)),
            Err(_) => Answer::error(400, "the shard is not a number"),
        },
        ("POST", ["testkit", "shards", shard, fault @ ..]) => control(shared, shard, fault),
        (
            _,
            ["gateway"]
            | ["gateway", "bot"]
            | ["users", "@me"]
            | ["oauth2", "applications", "@me"]
            | ["testkit", ..],
        ) => Answer::error(405, "405: Method Not Allowed"),
        _ => Answer::error(404, "404: Not Found"),
    }
}

/// Whether the request carries the bot's token, as Discord's authorized routes require.
fn is_authorized(shared: &Shared, head: &Head, route: &str) -> bool {
    let expected = gateway_model::Token::new(shared.config.token.as_str());
    let given = head.header("authorization").map(gateway_model::Token::new);
    if given.is_none_or(|t| t.expose_secret() != expected.expose_secret()) {
        tracing::warn!(
            field = "Authorization",
            route,
            "REST request refused: missing or wrong token"
        );
        return false;
    }
    true
}

/// An authorized route's JSON body, read from the core.
fn authorized(
    shared: &Arc<Shared>,
    head: &Head,
    route: &str,
    body: impl FnOnce(&crate::shared::Driven) -> String,
) -> Answer {
    if !is_authorized(shared, head, route) {
        return Answer::error(401, "401: Unauthorized");
    }
    let body = body(&shared.lock());
    Answer::raw_json(200, body)
}

fn gateway_bot(shared: &Arc<Shared>, head: &Head) -> Answer {
    if !is_authorized(shared, head, "/gateway/bot") {
        return Answer::error(401, "401: Unauthorized");
    }
    let budget = shared.lock().core.budget(now());
    Answer::json(
        200,
        &GatewayBot {
            url: shared.url.clone(),
            shards: shared.config.recommended_shards.max(1),
            session_start_limit: SessionStartLimit {
                total: budget.total,
                remaining: budget.remaining,
                reset_after: u64::try_from(budget.reset_after.as_millis()).unwrap_or(u64::MAX),
                max_concurrency: shared.config.max_concurrency.max(1),
            },
        },
    )
}

/// Dispatches a replay queues per step: between steps the gateway's lock is free, so its
/// connections read their clients (heartbeats) and write while a large replay is queued.
const REPLAY_STEP: usize = 1_000;

/// Whether the request's query asks for `at-once`.
fn at_once(head: &Head) -> bool {
    head.target
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p == "at-once"))
}

/// Sends the configured replay dispatches to one shard's live session, or to every live session:
/// in steps of [`REPLAY_STEP`], or `at_once` (every dispatch compressed before the first is
/// written, so the gateway is not what a client's throughput measures; it reads no client
/// meanwhile).
fn replay(shared: &Arc<Shared>, shard: Option<u32>, at_once: bool) -> Answer {
    let events = Arc::clone(&shared.config.replay);
    let step = if at_once {
        events.len().max(1)
    } else {
        REPLAY_STEP
    };
    let sessions = match shard {
        Some(shard) => match shared.shard_connection(shard) {
            Some(connection) => vec![connection],
            None => return Answer::error(404, "no live session on that shard"),
        },
        None => shared.live_sessions(),
    };
    let dispatched = sessions
        .iter()
        .map(|c| c.dispatch_in_steps(events.iter().map(|(n, d)| (n, d)), step))
        .sum();
    Answer::json(
        200,
        &ReplayJson {
            sessions: sessions.len(),
            dispatched,
        },
    )
}

fn control(shared: &Arc<Shared>, shard: &str, fault: &[&str]) -> Answer {
    let Ok(shard) = shard.parse::<u32>() else {
        return Answer::error(400, "the shard is not a number");
    };
    let fault = match fault {
        ["reconnect"] => Fault::Reconnect,
        ["drop"] => Fault::Drop,
        ["zombie"] => Fault::Zombie,
        ["request-heartbeat"] => Fault::RequestHeartbeat,
        ["close", code] => match code.parse::<u16>() {
            Ok(code) => Fault::Close(code),
            Err(_) => return Answer::error(400, "the close code is not a number"),
        },
        ["invalid-session", resumable] => match resumable.parse::<bool>() {
            Ok(resumable) => Fault::InvalidSession { resumable },
            Err(_) => return Answer::error(400, "invalid-session takes true or false"),
        },
        _ => return Answer::error(404, "unknown fault"),
    };
    match shared.shard_connection(shard) {
        Some(connection) if connection.inject(fault) => Answer::json(200, &OkJson { ok: true }),
        _ => Answer::error(404, "no live session on that shard"),
    }
}

#[cfg(test)]
mod tests {
    use super::route_path;

    #[test]
    fn any_api_version_routes_the_same() {
        for target in [
            "/api/v10/gateway/bot",
            "/api/v9/gateway/bot?x=1",
            "/api/gateway/bot/",
            "/gateway/bot",
        ] {
            assert_eq!(route_path(target), "/gateway/bot", "{target}");
        }
    }
}
