//! `wss://` on loopback: a rustls server with a self-signed certificate in front of the fake
//! gateway. By default the shard refuses it (certificates are verified against the webpki roots);
//! it connects once the caller trusts that root with `ShardConfig::with_tls_root`.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gateway_codec::Compression;
use gateway_model::{Intents, Token};
use gateway_shard::{Shard, ShardConfig, ShardEvent, ShardEvents};
use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A TLS terminator on 127.0.0.1 that forwards to `backend`; returns its port.
async fn tls_front(backend: std::net::SocketAddr) -> (u16, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the TLS handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                // Either side closing ends the tunnel.
                drop(tokio::io::copy_bidirectional(&mut tls, &mut plain).await);
            });
        }
    });
    (port, cert)
}

async fn until(events: &mut ShardEvents, mut want: impl FnMut(&ShardEvent) -> bool) -> ShardEvent {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("no event in time")
            .expect("events ended");
        if want(&e) {
            return e;
        }
    }
}

#[tokio::test]
async fn a_self_signed_gateway_is_refused_unless_its_root_is_trusted() {
    let gw = FakeGateway::start_with(
        GatewayConfig {
            identify_window: Duration::ZERO,
            world: WorldConfig::uniform(1, 1, 5),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let (port, cert) = tls_front(gw.local_addr()).await;
    let config = ShardConfig::new(Token::new(gw.config().token.clone()), Intents::GUILDS)
        .with_gateway_url(format!("wss://localhost:{port}"))
        .with_compression(Compression::ZlibStream)
        .with_seed(2);

    // Verified against the webpki roots: refused, and the user is told why.
    let (shard, mut events) = Shard::spawn(config.clone()).unwrap();
    let ShardEvent::ConnectFailed { reason, .. } = until(&mut events, |e| {
        matches!(e, ShardEvent::ConnectFailed { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert!(
        reason.contains("certificate") || reason.contains("UnknownIssuer"),
        "{reason}"
    );
    assert_eq!(gw.stats().connections, 0, "nothing reached the gateway");
    shard.close(false).await;

    // The caller trusts the test root: READY over wss://.
    let (shard, mut events) = Shard::spawn(config.with_tls_root(cert)).unwrap();
    until(&mut events, |e| matches!(e, ShardEvent::Ready(_))).await;
    assert!(shard.is_connected());
    shard.close(false).await;
}
