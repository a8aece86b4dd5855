//! Opening the websocket: TCP (directly or through an HTTP CONNECT proxy), TLS with rustls and
//! webpki roots for `wss://`, then the websocket handshake.

use std::sync::Once;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::ClientStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::Uri;
use async_tungstenite::tungstenite::http::header::{HeaderValue, USER_AGENT};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The websocket read buffer per connection (tungstenite's default is 128 KiB).
const READ_BUFFER: usize = 8 * 1024;

/// An open gateway connection.
pub(crate) type Socket = WebSocketStream<ClientStream<TcpStream>>;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("TCP connect to {0} failed: {1}")]
    Tcp(String, std::io::Error),
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("websocket handshake failed: {0}")]
    Handshake(#[from] async_tungstenite::tungstenite::Error),
}

/// rustls needs a process-wide crypto provider; install ring's unless the application chose one.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means the application installed its own provider first: that one stays.
        if rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
        {
            tracing::debug!("a crypto provider was already installed");
        }
    });
}

fn host_port(uri: &Uri) -> Result<(String, u16), ConnectError> {
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::Url(uri.to_string()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss") | Some("https") => 443,
        _ => 80,
    });
    Ok((host, port))
}

/// The `User-Agent` of the websocket handshake, in the form Discord asks of bot libraries
/// (`DiscordBot ($url, $version)`); some gateways refuse a handshake without one.
pub const USER_AGENT_VALUE: &str = concat!(
    "DiscordBot (https://github.com/gateway-rs/gateway, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// A TLS client configuration that trusts the webpki roots and `extra`, with ring (installed as
/// the process default if none is): the shard's own, for a REST client beside it.
pub fn tls_config(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra {
        roots.add(root.clone())?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A TLS connector that trusts the webpki roots and `extra`; `None` when there is nothing extra
/// (the websocket crate's own connector then uses the webpki roots).
pub(crate) fn tls_connector(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Option<tokio_rustls::TlsConnector>, rustls::Error> {
    if extra.is_empty() {
        return Ok(None);
    }
    Ok(Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        tls_config(extra)?,
    ))))
}

/// Opens `url` (`ws://` or `wss://`), through `proxy` (`http://host:port`) if given, with `tls`
/// for `wss://` (the webpki roots when `None`).
pub(crate) async fn connect(
    url: &str,
    proxy: Option<&str>,
    max_message: usize,
    tls: Option<tokio_rustls::TlsConnector>,
) -> Result<Socket, ConnectError> {
    install_crypto_provider();
    let uri: Uri = url.parse().map_err(|_| ConnectError::Url(url.to_owned()))?;
    let (host, port) = host_port(&uri)?;
    let tcp = match proxy {
        None => TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ConnectError::Tcp(format!("{host}:{port}"), e))?,
        Some(proxy) => through_proxy(proxy, &host, port).await?,
    };
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay");
    }
    // tungstenite's defaults (a 128 KiB read buffer, 128 KiB of write batching) cost more per
    // connection than the whole decoder; gateway messages are small and each is flushed at once.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    let (socket, _) = async_tungstenite::tokio::client_async_tls_with_connector_and_config(
        request,
        tcp,
        tls,
        Some(config),
    )
    .await?;
    Ok(socket)
}

/// An HTTP CONNECT tunnel to `host:port`.
async fn through_proxy(proxy: &str, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let proxy_uri: Uri = proxy
        .parse()
        .map_err(|_| ConnectError::Url(proxy.to_owned()))?;
    let (proxy_host, proxy_port) = host_port(&proxy_uri)?;
    let mut tcp = TcpStream::connect((proxy_host.as_str(), proxy_port))
        .await
        .map_err(|e| ConnectError::Tcp(format!("{proxy_host}:{proxy_port}"), e))?;
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| ConnectError::Proxy(e.to_string()))?;
    // Read the response head, byte by byte so nothing past it is consumed.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(ConnectError::Proxy("response head over 8 KiB".into()));
        }
        let mut byte = [0u8; 1];
        let n = tcp
            .read(&mut byte)
            .await
            .map_err(|e| ConnectError::Proxy(e.to_string()))?;
        if n == 0 {
            return Err(ConnectError::Proxy("closed during CONNECT".into()));
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head);
    let ok = status
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("200");
    if !ok {
        return Err(ConnectError::Proxy(format!(
            "CONNECT refused: {}",
            status.lines().next().unwrap_or("")
        )));
    }
    Ok(tcp)
}
