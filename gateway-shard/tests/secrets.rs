//! The token never shows: not in `Debug` or `Display` of the session, the configuration, the shard
//! or any error, and not in the `tracing` output of a whole session with reconnects, resumes,
//! re-identifies and refusals (the fake gateway's own log lines included).

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_codec::Compression;
use gateway_model::{Intents, Token};
use gateway_shard::{
    CommandError, PresenceUpdate, Session, Shard, ShardConfig, ShardError, ShardEvent, ShardEvents,
};
use gateway_testkit::{FakeGateway, Fault, GatewayConfig, WorldConfig};

const SECRET: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.SeCrEt.TOKENtokenTOKEN0123456789";
/// Any 12 characters of the token's last part would be a leak.
const TELLTALE: &str = "TOKENtokenTO";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(TELLTALE),
        "the token shows in {what}: {text}"
    );
}

/// Reads events, each checked for the token, until one matches `until`.
async fn clean_until(events: &mut ShardEvents, until: impl Fn(&ShardEvent) -> bool) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("no event in time")
            .expect("events ended");
        assert_clean("an event", &format!("{e:?}"));
        if until(&e) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_shows_nowhere() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let gw = FakeGateway::start_with(
        GatewayConfig {
            token: SECRET.to_owned(),
            identify_window: Duration::ZERO,
            world: WorldConfig::uniform(1, 2, 20),
            ..GatewayConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let config = ShardConfig::new(Token::new(format!("Bot {SECRET}")), Intents::GUILDS)
        .with_gateway_url(gw.url())
        .with_compression(Compression::ZlibStream)
        .with_seed(9);
    assert_clean("ShardConfig's Debug", &format!("{config:?}"));
    let mut session = Session::new(&config, Instant::now());
    assert_clean("Session's Debug", &format!("{session:?}"));
    let now = Instant::now();
    session.handle_timeout(now);
    session.handle_connected(now);
    let hello = r#"{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}"#;
    let mut compressor = gateway_codec::Compressor::new(Compression::ZlibStream).unwrap();
    session.handle_message(now, &compressor.compress_to_vec(hello.as_bytes()).unwrap());
    session.handle_identify_permitted(now);
    // The IDENTIFY, token inside, now waits in the session.
    assert_clean(
        "Session's Debug with a pending IDENTIFY",
        &format!("{session:?}"),
    );
    while let Some(output) = session.poll_output(now) {
        assert_clean("an Output's Debug", &format!("{output:?}"));
    }
    let group_error = gateway_shard::GroupError::Command(CommandError::NotRunning);
    let identify_error = gateway_shard::identify::IdentifyError::Unavailable("refused".into());
    let rest_error = gateway_shard::GatewayBotError::Unauthorized;
    for shown in [
        format!("{group_error} {group_error:?}"),
        format!("{identify_error} {identify_error:?}"),
        format!("{rest_error} {rest_error:?}"),
    ] {
        assert_clean("an error", &shown);
    }

    let (shard, mut events) = Shard::start(config.clone()).await.unwrap();
    assert_clean("Shard's Debug", &format!("{shard:?}"));
    // The first READY is still in the stream: read up to it, so that each fault below waits for
    // the READY or RESUMED that follows it, not for this one.
    clean_until(&mut events, |e| matches!(e, ShardEvent::Ready(_))).await;
    // A resume, a re-identify, and a zombie's resume.
    for fault in [
        Fault::Reconnect,
        Fault::InvalidSession { resumable: false },
        Fault::Close(4000),
    ] {
        gw.shard_connection(0).unwrap().inject(fault);
        clean_until(&mut events, |e| {
            matches!(e, ShardEvent::Ready(_) | ShardEvent::Resumed { .. })
        })
        .await;
    }
    // Refusals: a command the shard refuses, and a wrong token the gateway refuses.
    let too_big = PresenceUpdate {
        activity: Some(Some(gateway_model::Activity::playing("z".repeat(4_000)))),
        ..PresenceUpdate::default()
    };
    let refused: CommandError = shard.update_presence(too_big).await.unwrap_err();
    assert_clean("a CommandError", &format!("{refused} {refused:?}"));
    let wrong = ShardConfig::new(Token::new("Bot wrong-TOKENtokenTOKEN"), Intents::GUILDS)
        .with_gateway_url(gw.url())
        .with_seed(1);
    let error: ShardError = Shard::start(wrong).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("wrong-TOKEN"), "{shown}");
    shard.close(false).await;
    drop(gw);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("resumed") && log.contains("ready"),
        "the log was captured"
    );
    assert_clean("the tracing output", &log);
    assert!(
        !log.contains("wrong-TOKEN"),
        "a refused token shows in the log"
    );
}
