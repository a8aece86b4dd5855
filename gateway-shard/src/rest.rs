//! `GET /gateway/bot`: where to connect, how many shards to run, and how many sessions may still
//! start (feature `rest`, on by default). HTTPS through reqwest on rustls, trusting the same roots
//! as the websocket (webpki's, plus [`ShardConfig::tls_roots`](crate::ShardConfig::tls_roots)).

use std::time::Duration;

use gateway_model::{GatewayBot, Token};
use rustls::pki_types::CertificateDer;

use crate::connect::{USER_AGENT_VALUE, tls_config};

/// Discord's REST API, version 10.
pub const DISCORD_API: &str = "https://discord.com/api/v10";

/// The largest answer read.
const MAX_BODY: usize = 64 * 1024;

/// Why `GET /gateway/bot` gave no answer to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayBotError {
    /// The token was refused (401).
    #[error("GET /gateway/bot: the token was refused (401)")]
    Unauthorized,
    /// Another HTTP status.
    #[error("GET /gateway/bot answered {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        message: String,
    },
    /// The request did not complete (connection, TLS, timeout).
    #[error("GET /gateway/bot failed: {0}")]
    Transport(String),
    /// The answer is not a `GET /gateway/bot` answer (or is over 64 KiB).
    #[error("GET /gateway/bot answered an unreadable body: {0}")]
    Body(String),
}

/// Asks `api_base` (e.g. [`DISCORD_API`], or a fake gateway's `http://127.0.0.1:PORT/api/v10`)
/// for the gateway URL, the recommended shard count and the session start budget, through
/// `proxy` (`http://host:port`, as [`ShardConfig::proxy`](crate::ShardConfig::proxy)) if given.
pub async fn fetch_gateway_bot(
    api_base: &str,
    token: &Token,
    tls_roots: &[CertificateDer<'static>],
    proxy: Option<&str>,
) -> Result<GatewayBot, GatewayBotError> {
    let tls = tls_config(tls_roots).map_err(|e| GatewayBotError::Transport(e.to_string()))?;
    let mut client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(USER_AGENT_VALUE)
        .timeout(Duration::from_secs(15));
    if let Some(proxy) = proxy {
        let proxy = reqwest::Proxy::all(proxy)
            .map_err(|e| GatewayBotError::Transport(format!("proxy: {}", e.without_url())))?;
        client = client.proxy(proxy);
    }
    let client = client
        .build()
        .map_err(|e| GatewayBotError::Transport(e.to_string()))?;
    let url = format!("{}/gateway/bot", api_base.trim_end_matches('/'));
    let mut response = client
        .get(&url)
        .header("Authorization", format!("Bot {}", token.expose_secret()))
        .send()
        .await
        .map_err(|e| GatewayBotError::Transport(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| GatewayBotError::Transport(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(GatewayBotError::Body(format!("over {MAX_BODY} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    match status {
        200..=299 => {
            gateway_model::json::from_str(&text).map_err(|e| GatewayBotError::Body(e.to_string()))
        }
        401 => Err(GatewayBotError::Unauthorized),
        _ => Err(GatewayBotError::Status {
            status,
            message: text.chars().take(200).collect(),
        }),
    }
}
