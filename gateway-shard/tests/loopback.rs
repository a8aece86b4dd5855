//! The real shard over a real websocket against the testkit's fake gateway on 127.0.0.1, with
//! real compression. No mocks.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_codec::{Compression, Limits};
use gateway_model::{
    Activity, CloseAction, Command, DispatchEvent, Intents, RequestGuildMembers, Snowflake, Status,
    Token,
};
use gateway_shard::{
    PresenceUpdate, Reconnect, Shard, ShardConfig, ShardError, ShardEvent, Timeouts,
};
use gateway_testkit::{
    ChunkFault, FakeGateway, Fault, GatewayConfig, Received, SplitAt, WorldConfig,
};

mod common;

use common::Checked;

const COMPRESSIONS: [Compression; 2] = [Compression::ZlibStream, Compression::ZstdStream];

async fn gateway(world: WorldConfig) -> FakeGateway {
    gateway_with(GatewayConfig {
        world,
        ..GatewayConfig::default()
    })
    .await
}

async fn gateway_with(config: GatewayConfig) -> FakeGateway {
    let config = GatewayConfig {
        identify_window: Duration::ZERO,
        ..config
    };
    FakeGateway::start_with(config, 0).await.unwrap()
}

fn config(gw: &FakeGateway, compression: Compression) -> ShardConfig {
    ShardConfig::new(
        Token::new(gw.config().token.clone()),
        Intents::GUILDS | Intents::GUILD_MEMBERS,
    )
    .with_gateway_url(gw.url())
    .with_compression(compression)
    .with_seed(3)
}

/// The next event, which must come, checked for continuity (see `common`).
async fn next(events: &mut Checked) -> ShardEvent {
    events.next().await
}

/// Skips events (checking each) until one matches.
async fn until(events: &mut Checked, want: impl FnMut(&ShardEvent) -> bool) -> ShardEvent {
    events.until(want).await
}

fn is_ready(e: &ShardEvent) -> bool {
    matches!(e, ShardEvent::Ready(_))
}

fn is_resumed(e: &ShardEvent) -> bool {
    matches!(e, ShardEvent::Resumed { .. })
}

#[tokio::test]
async fn connects_and_is_ready_with_events_in_the_documented_order() {
    for compression in [
        Compression::None,
        Compression::ZlibStream,
        Compression::ZstdStream,
    ] {
        let gw = gateway(WorldConfig::uniform(1, 3, 20)).await;
        let (shard, events) = Shard::start(config(&gw, compression)).await.unwrap();
        let mut events = Checked::new(
            events,
            "connects_and_is_ready_with_events_in_the_documented_order",
        );
        assert!(shard.is_connected() && shard.is_alive());
        assert_eq!(shard.user_id(), Some(gw.world().bot_id));
        assert_eq!(
            next(&mut events).await,
            ShardEvent::Connected { resuming: false }
        );
        assert!(is_ready(&next(&mut events).await));
        for seq in 2..=4 {
            let ShardEvent::Dispatch(d) = next(&mut events).await else {
                panic!()
            };
            assert_eq!(d.seq, seq);
            assert!(matches!(d.event, DispatchEvent::GuildCreate(_)));
        }
        shard.close(false).await;
        assert!(matches!(
            next(&mut events).await,
            ShardEvent::Disconnected {
                next: Reconnect::Stop,
                ..
            }
        ));
        assert_eq!(shard.join().await, Ok(()));
        assert!(!shard.is_alive());
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_carry_the_sequence_and_acks_give_latency() {
    let gw = gateway_with(GatewayConfig {
        heartbeat_interval: Duration::from_secs(10),
        world: WorldConfig::uniform(1, 2, 5),
        ..GatewayConfig::default()
    })
    .await;
    let (shard, events) = Shard::start(config(&gw, Compression::ZlibStream))
        .await
        .unwrap();
    let mut events = Checked::new(
        events,
        "heartbeats_carry_the_sequence_and_acks_give_latency",
    );
    assert_eq!(shard.heartbeat_latency(), None);
    until(&mut events, |e| {
        matches!(e, ShardEvent::HeartbeatAck { .. })
    })
    .await;
    until(&mut events, |e| {
        matches!(e, ShardEvent::HeartbeatAck { .. })
    })
    .await;
    assert!(shard.heartbeat_latency().is_some());
    let heartbeats: Vec<_> = gw
        .recorded()
        .into_iter()
        .filter_map(|r| match r.command() {
            Some(Command::Heartbeat(h)) => Some((r.at, h.0)),
            _ => None,
        })
        .collect();
    assert_eq!(heartbeats.len(), 2);
    assert_eq!(
        heartbeats[1].1,
        Some(3),
        "the last sequence (READY + 2 GUILD_CREATE)"
    );
    assert_eq!(heartbeats[1].0 - heartbeats[0].0, Duration::from_secs(10));
    // Server-requested heartbeat: answered at once.
    gw.shard_connection(0)
        .unwrap()
        .inject(Fault::RequestHeartbeat);
    gw.wait_for_heartbeats(3).await;
}

/// Dispatches delivered to the user, in order, must have consecutive sequence numbers.
fn assert_continuous(seqs: &[u64]) {
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "gap or repeat in {seqs:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn zombie_then_resume_loses_and_repeats_nothing() {
    for compression in COMPRESSIONS {
        let gw = gateway_with(GatewayConfig {
            heartbeat_interval: Duration::from_secs(10),
            world: WorldConfig::uniform(1, 2, 5),
            ..GatewayConfig::default()
        })
        .await;
        let (_shard, events) = Shard::start(config(&gw, compression)).await.unwrap();
        let mut events = Checked::new(events, "zombie_then_resume_loses_and_repeats_nothing");
        let conn = gw.shard_connection(0).unwrap();
        conn.inject(Fault::Zombie);
        for i in 0..5 {
            conn.dispatch("TYPING_START", format!(r#"{{"n":{i}}}"#));
        }
        let mut seqs = Vec::new();
        loop {
            match next(&mut events).await {
                ShardEvent::Dispatch(d) => seqs.push(d.seq),
                ShardEvent::Disconnected { next, code, .. } => {
                    assert_eq!(
                        (next, code),
                        (Reconnect::Resume, Some(4000)),
                        "{compression}"
                    );
                    break;
                }
                _ => {}
            }
        }
        assert!(matches!(
            next(&mut events).await,
            ShardEvent::Connected { resuming: true }
        ));
        loop {
            match next(&mut events).await {
                ShardEvent::Dispatch(d) => seqs.push(d.seq),
                // RESUMED is a dispatch too: it takes the next sequence number.
                ShardEvent::Resumed { .. } => {
                    seqs.push(seqs.last().unwrap() + 1);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let conn = gw.shard_connection(0).unwrap();
        for i in 5..8 {
            conn.dispatch("TYPING_START", format!(r#"{{"n":{i}}}"#));
        }
        for _ in 0..3 {
            let ShardEvent::Dispatch(d) =
                until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await
            else {
                panic!()
            };
            seqs.push(d.seq);
        }
        assert_continuous(&seqs);
        assert_eq!(
            seqs.len(),
            2 + 5 + 1 + 3,
            "{compression}: 2 GUILD_CREATE, 5 before, RESUMED, 3 after"
        );
        assert_eq!(gw.stats().resumed, 1);
    }
}

#[tokio::test]
async fn every_close_code_of_the_policy_table() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    for (code, action, _) in gateway_model::CLOSE_POLICY {
        let (shard, events) = Shard::start(config(&gw, Compression::ZlibStream))
            .await
            .unwrap();
        let mut events = Checked::new(events, "every_close_code_of_the_policy_table");
        until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await;
        gw.shard_connection(0).unwrap().inject(Fault::Close(code));
        let ShardEvent::Disconnected {
            code: got,
            next: then,
            ..
        } = until(&mut events, |e| {
            matches!(e, ShardEvent::Disconnected { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert_eq!(got, Some(code));
        match action {
            CloseAction::Resume => {
                assert_eq!(then, Reconnect::Resume, "{code}");
                until(&mut events, is_resumed).await;
            }
            CloseAction::Reidentify => {
                assert_eq!(then, Reconnect::Reidentify, "{code}");
                until(&mut events, is_ready).await;
            }
            CloseAction::Fatal => {
                assert_eq!(then, Reconnect::Stop, "{code}");
                assert!(
                    matches!(shard.join().await, Err(ShardError::Fatal { .. })),
                    "{code}"
                );
                assert!(!shard.is_alive());
                continue;
            }
        }
        shard.close(false).await;
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_session_true_resumes_and_false_reidentifies() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let (_shard, events) = Shard::start(config(&gw, Compression::ZlibStream))
        .await
        .unwrap();
    let mut events = Checked::new(
        events,
        "invalid_session_true_resumes_and_false_reidentifies",
    );
    until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await;
    gw.shard_connection(0)
        .unwrap()
        .inject(Fault::InvalidSession { resumable: true });
    until(&mut events, is_resumed).await;
    gw.shard_connection(0)
        .unwrap()
        .inject(Fault::InvalidSession { resumable: false });
    until(&mut events, is_ready).await;
    assert_eq!((gw.stats().readies, gw.stats().resumed), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn reconnect_before_and_after_hello() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    gw.on_next_connection(Fault::ReconnectBeforeHello);
    let (_shard, events) = Shard::start(config(&gw, Compression::ZlibStream))
        .await
        .unwrap();
    let mut events = Checked::new(events, "reconnect_before_and_after_hello");
    assert!(
        gw.stats().connections >= 2,
        "the first connection was left at RECONNECT"
    );
    until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await;
    gw.shard_connection(0).unwrap().inject(Fault::Reconnect);
    until(&mut events, is_resumed).await;
}

#[tokio::test]
async fn a_dropped_connection_resumes() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let (_shard, events) = Shard::start(config(&gw, Compression::ZstdStream))
        .await
        .unwrap();
    let mut events = Checked::new(events, "a_dropped_connection_resumes");
    until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await;
    gw.shard_connection(0).unwrap().inject(Fault::Drop);
    let ShardEvent::Disconnected {
        code, next: then, ..
    } = until(&mut events, |e| {
        matches!(e, ShardEvent::Disconnected { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!((code, then), (None, Reconnect::Resume));
    until(&mut events, is_resumed).await;
}

#[tokio::test]
async fn dispatches_lost_with_a_dropped_connection_are_replayed_in_order() {
    for compression in COMPRESSIONS {
        let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
        let (_shard, events) = Shard::start(config(&gw, compression)).await.unwrap();
        let mut events = Checked::new(
            events,
            "dispatches_lost_with_a_dropped_connection_are_replayed_in_order",
        );
        let ShardEvent::Dispatch(first) =
            until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await
        else {
            unreachable!()
        };
        let conn = gw.shard_connection(0).unwrap();
        conn.inject(Fault::LoseNext(4));
        for i in 0..4 {
            conn.dispatch("TYPING_START", format!(r#"{{"n":{i}}}"#));
        }
        conn.inject(Fault::Drop);
        let mut seqs = vec![first.seq];
        let replayed = loop {
            match next(&mut events).await {
                ShardEvent::Dispatch(d) => seqs.push(d.seq),
                ShardEvent::Resumed { replayed, .. } => break replayed,
                ShardEvent::Disconnected { next, .. } => {
                    assert_eq!(next, Reconnect::Resume, "{compression}");
                }
                _ => {}
            }
        };
        assert_eq!(replayed, 4, "{compression}");
        assert_eq!(seqs.len(), 5, "{compression}: GUILD_CREATE and the 4 lost");
        assert_continuous(&seqs);
    }
}

#[tokio::test]
async fn split_corrupt_and_oversize_messages() {
    for compression in COMPRESSIONS {
        let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
        let limits = Limits {
            max_message_size: 64 * 1024,
            ..Limits::default()
        };
        let (shard, events) = Shard::start(config(&gw, compression).with_limits(limits))
            .await
            .unwrap();
        let mut events = Checked::new(events, "split_corrupt_and_oversize_messages");
        until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await;
        // Split through the zlib suffix: still one event.
        let conn = gw.shard_connection(0).unwrap();
        conn.inject(Fault::SplitNext(vec![
            SplitAt::FromStart(2),
            SplitAt::FromEnd(2),
        ]));
        conn.dispatch("TYPING_START", "{}");
        let ShardEvent::Dispatch(d) = next(&mut events).await else {
            panic!()
        };
        assert_eq!(d.event.name(), "TYPING_START");
        // A corrupt frame: the shard reconnects and resumes; it does not die.
        conn.inject(Fault::CorruptNext);
        conn.dispatch("TYPING_START", "{}");
        until(&mut events, is_resumed).await;
        assert!(shard.is_alive());
        // An oversize message cannot be received, and a resume would replay it: a new session.
        gw.shard_connection(0)
            .unwrap()
            .inject(Fault::Oversize(100 * 1024));
        let e = until(&mut events, |e| {
            matches!(e, ShardEvent::Disconnected { .. })
        })
        .await;
        assert!(
            matches!(
                e,
                ShardEvent::Disconnected {
                    next: Reconnect::Reidentify,
                    ..
                }
            ),
            "{e:?}"
        );
        until(&mut events, is_ready).await;
        assert!(shard.is_alive(), "{compression}");
    }
}

#[tokio::test(start_paused = true)]
async fn hello_and_ready_timeouts_reconnect() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    gw.on_next_connection(Fault::StallHello);
    gw.on_next_connection(Fault::StallReady);
    let timeouts = Timeouts {
        handshake: Duration::from_secs(5),
        hello: Duration::from_secs(10),
        ready: Duration::from_secs(10),
    };
    let started = tokio::time::Instant::now();
    let (_shard, _events) =
        Shard::start(config(&gw, Compression::ZlibStream).with_timeouts(timeouts))
            .await
            .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(20));
    assert_eq!(gw.stats().connections, 3);
    assert_eq!(gw.stats().identifies, 2);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_commands_never_trips_the_rate_limit() {
    let gw = gateway(WorldConfig::uniform(1, 1, 50)).await;
    let guild = gw.world().guilds()[0].id;
    let (shard, events) = Shard::start(config(&gw, Compression::ZlibStream))
        .await
        .unwrap();
    let mut events = Checked::new(events, "a_flood_of_commands_never_trips_the_rate_limit");
    for i in 0..300 {
        let r = RequestGuildMembers::builder(guild)
            .query("a", 1)
            .nonce(format!("n{i}"))
            .build()
            .unwrap();
        shard.request_guild_members(r).await.unwrap();
    }
    assert!(shard.queue_depth() > 0 || gw.stats().member_requests > 0);
    let mut chunks = 0;
    while chunks < 300 {
        match next(&mut events).await {
            ShardEvent::Dispatch(d) if d.event.name() == "GUILD_MEMBERS_CHUNK" => chunks += 1,
            ShardEvent::Disconnected { code, .. } => panic!("disconnected with {code:?}"),
            _ => {}
        }
    }
    assert_eq!(gw.stats().connections, 1, "never closed 4008");
    assert!(gw.connections().iter().all(|c| c.closed_with.is_none()));
}

#[tokio::test]
async fn presence_and_voice_payloads() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let presence = PresenceUpdate {
        status: Some(Status::Dnd),
        ..Default::default()
    };
    let (shard, _events) =
        Shard::start(config(&gw, Compression::ZlibStream).with_presence(presence))
            .await
            .unwrap();
    shard
        .update_presence(PresenceUpdate {
            activity: Some(Some(Activity::playing("chess"))),
            ..Default::default()
        })
        .await
        .unwrap();
    let guild = gw.world().guilds()[0].id;
    shard
        .update_voice_state(guild, Some(Snowflake::new(77)), true, false)
        .await
        .unwrap();
    shard
        .update_voice_state(guild, None, false, false)
        .await
        .unwrap();
    gw.wait_for(|v| {
        v.recorded()
            .iter()
            .filter(|r| matches!(r.command(), Some(Command::UpdateVoiceState(_))))
            .count()
            == 2
    })
    .await;
    let recorded = gw.recorded();
    let Some(Command::Identify(identify)) = recorded[0].command() else {
        panic!()
    };
    assert_eq!(
        identify.presence.as_ref().map(|p| p.status),
        Some(Status::Dnd)
    );
    let presences: Vec<_> = recorded
        .iter()
        .filter_map(|r| match r.command() {
            Some(Command::UpdatePresence(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(presences.len(), 1);
    assert_eq!(
        (
            presences[0].status,
            presences[0].activities[0].name.as_str()
        ),
        (Status::Dnd, "chess"),
        "merged"
    );
    let voices: Vec<_> = recorded
        .iter()
        .filter_map(|r| match r.command() {
            Some(Command::UpdateVoiceState(v)) => Some(*v),
            _ => None,
        })
        .collect();
    assert_eq!(
        (voices[0].channel_id, voices[0].self_mute),
        (Some(Snowflake::new(77)), true)
    );
    assert_eq!(voices[1].channel_id, None);
    assert!(
        recorded
            .iter()
            .all(|r| !matches!(r.received, Received::Invalid { .. }))
    );
}

#[tokio::test]
async fn member_request_errors_are_typed() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let guild = gw.world().guilds()[0].id;
    let cfg = ShardConfig::new(Token::new(gw.config().token.clone()), Intents::GUILDS)
        .with_gateway_url(gw.url());
    let (shard, _events) = Shard::start(cfg).await.unwrap();
    let full = RequestGuildMembers::builder(guild)
        .query("", 0)
        .build()
        .unwrap();
    assert!(matches!(
        shard.request_guild_members(full).await,
        Err(gateway_shard::CommandError::MissingIntent(_))
    ));
    shard.close(false).await;
    let r = RequestGuildMembers::builder(guild)
        .query("a", 1)
        .build()
        .unwrap();
    assert!(matches!(
        shard.request_guild_members(r).await,
        Err(gateway_shard::CommandError::NotRunning)
    ));
}

#[tokio::test]
async fn a_session_exported_by_one_shard_is_resumed_by_another() {
    let gw = gateway(WorldConfig::uniform(1, 2, 5)).await;
    let (first, events) = Shard::start(config(&gw, Compression::ZlibStream))
        .await
        .unwrap();
    let mut events = Checked::new(
        events,
        "a_session_exported_by_one_shard_is_resumed_by_another",
    );
    let mut last = 0;
    for _ in 0..2 {
        let ShardEvent::Dispatch(d) =
            until(&mut events, |e| matches!(e, ShardEvent::Dispatch(_))).await
        else {
            panic!()
        };
        last = d.seq;
    }
    let exported = first.close(true).await.expect("a resumable session");
    assert_eq!(exported.sequence, last);
    assert_eq!(
        gw.connections()[0].closed_with,
        None,
        "closed by the client with 4000"
    );
    let (_second, events) =
        Shard::start(config(&gw, Compression::ZstdStream).with_resume(exported))
            .await
            .unwrap();
    let mut events = Checked::new(
        events,
        "a_session_exported_by_one_shard_is_resumed_by_another",
    );
    assert_eq!(
        next(&mut events).await,
        ShardEvent::Connected { resuming: true }
    );
    assert!(matches!(
        next(&mut events).await,
        ShardEvent::Resumed { replayed: 0, .. }
    ));
    assert_eq!(gw.stats().identifies, 1);
}

#[tokio::test]
async fn fatal_errors_stop_the_shard_with_a_typed_error() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let bad = ShardConfig::new(Token::new("wrong"), Intents::GUILDS).with_gateway_url(gw.url());
    assert!(matches!(
        Shard::start(bad).await,
        Err(ShardError::Fatal { .. })
    ));
    let privileged = GatewayConfig {
        allowed_intents: Intents::empty(),
        ..GatewayConfig::default()
    };
    let gw = gateway_with(privileged).await;
    let cfg = ShardConfig::new(
        Token::new(gw.config().token.clone()),
        Intents::GUILD_PRESENCES,
    )
    .with_gateway_url(gw.url());
    let err = Shard::start(cfg).await.unwrap_err();
    assert!(
        matches!(err, ShardError::Fatal { code, .. } if code.as_u16() == 4014),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("testkit-token"));
    let cfg =
        ShardConfig::new(Token::new("x"), Intents::GUILDS).with_gateway_url("http://not-a-gateway");
    assert!(matches!(
        Shard::start(cfg).await,
        Err(ShardError::Config(_))
    ));
}

#[tokio::test]
async fn chunks_flow_through_the_shard() {
    let gw = gateway(WorldConfig::uniform(1, 1, 2500)).await;
    let guild = gw.world().guilds()[0].id;
    let (shard, events) = Shard::start(config(&gw, Compression::ZstdStream))
        .await
        .unwrap();
    let mut events = Checked::new(events, "chunks_flow_through_the_shard");
    gw.shard_connection(0)
        .unwrap()
        .inject(Fault::Chunks(ChunkFault::Reverse));
    shard
        .request_guild_members(
            RequestGuildMembers::builder(guild)
                .query("", 0)
                .nonce("x")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut indices = Vec::new();
    while indices.len() < 3 {
        if let ShardEvent::Dispatch(d) = next(&mut events).await
            && let DispatchEvent::GuildMembersChunk(c) = d.event
        {
            assert_eq!(c.nonce.as_deref(), Some("x"));
            indices.push(c.chunk_index);
        }
    }
    assert_eq!(indices, vec![2, 1, 0]);
}

#[tokio::test]
async fn connects_through_an_http_connect_proxy() {
    let gw = gateway(WorldConfig::uniform(1, 1, 5)).await;
    let (proxy_url, seen) = common::http_proxy().await;
    let (shard, _events) = Shard::start(config(&gw, Compression::ZlibStream).with_proxy(proxy_url))
        .await
        .unwrap();
    assert!(shard.is_connected());
    assert!(seen.lock().unwrap()[0].starts_with("CONNECT 127.0.0.1:"));
}
