//! Interop probe for twilight (twilight-gateway, twilight-http, twilight-model) against
//! `gateway-testkit serve`; the checks, CLI and output are those of `interop/CONTRACT.md`.
//!
//! Usage: `interop-twilight --rest http://127.0.0.1:PORT --token T --compression C`.
//! twilight-gateway fixes the compression at compile time (cargo features `zlib`, `zstd`), so a
//! binary only runs the compression it was built for and fails every check for the others.

mod http;
mod observe;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, ShardState,
    StreamExt as _,
};
use twilight_model::gateway::payload::outgoing::RequestGuildMembers;
use twilight_model::id::Id;

use observe::{ChunkRequest, Observations};

/// The contract's cap on a probe's run, less time to close and print.
const RUN_BUDGET: Duration = Duration::from_secs(55);
/// How long to wait for GUILD_CREATEs after READY before requesting members anyway.
const GUILDS_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for member chunks before testing the resume anyway.
const CHUNKS_WAIT: Duration = Duration::from_secs(15);
/// How long to wait for RESUMED after the reconnect request.
const RESUME_WAIT: Duration = Duration::from_secs(15);
/// How often the loop wakes without events, to move on by time.
const TICK: Duration = Duration::from_millis(250);

/// The compression this binary's twilight-gateway was built with.
pub(crate) const BUILT_COMPRESSION: &str = if cfg!(feature = "zstd") {
    "zstd-stream"
} else if cfg!(feature = "zlib") {
    "zlib-stream"
} else {
    "none"
};

/// Command-line arguments.
#[derive(Debug)]
struct Args {
    /// `host:port` of the REST base URL.
    host: String,
    /// The bot token.
    token: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(log_level())
        .init();
    eprintln!("interop-twilight: built for compression {BUILT_COMPRESSION}");
    let mut observed = Observations::default();
    match parse_args(std::env::args().skip(1)) {
        Ok(args) => run(&args, &mut observed).await,
        Err(e) => observed.end = Some(e),
    }
    let mut all_ok = true;
    for (name, verdict) in observed.verdicts() {
        match verdict {
            Ok(detail) => println!("CHECK {name} ok {}", observe::one_line(&detail)),
            Err(why) => {
                all_ok = false;
                println!("CHECK {name} fail {}", observe::one_line(&why));
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Log level on stderr: `INTEROP_LOG` (error, warn, info, debug, trace), info by default.
fn log_level() -> tracing_subscriber::filter::LevelFilter {
    std::env::var("INTEROP_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO)
}

/// Parses `--rest URL --token T --compression C`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut rest, mut token, mut compression) = (None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rest" => rest = Some(value),
            "--token" => token = Some(value),
            "--compression" => compression = Some(value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let rest = rest.ok_or("missing --rest")?;
    let token = token.ok_or("missing --token")?;
    let compression = compression.ok_or("missing --compression")?;
    if compression != BUILT_COMPRESSION {
        let feature = match compression.as_str() {
            "zlib-stream" => "--features zlib",
            "zstd-stream" => "--features zstd",
            "none" => "no compression feature",
            _ => return Err(format!("unknown --compression {compression}")),
        };
        return Err(format!(
            "this binary was built for {BUILT_COMPRESSION}; twilight-gateway fixes the compression \
             at compile time: build with {feature} for {compression}"
        ));
    }
    Ok(Args {
        host: http::host_of(&rest)?,
        token,
    })
}

/// Connects one shard the way a bot does and walks through the checks, recording into `observed`.
async fn run(args: &Args, observed: &mut Observations) {
    let started = Instant::now();
    let rest = twilight_http::Client::builder()
        .proxy(args.host.clone(), true)
        .token(args.token.clone())
        .timeout(Duration::from_secs(10))
        .build();
    let info = match rest.gateway().authed().await {
        Ok(response) => response
            .model()
            .await
            .map_err(|e| observe::with_sources(e.to_string(), &e)),
        Err(e) => Err(observe::with_sources(e.to_string(), &e)),
    };
    let info = match info {
        Ok(info) => info,
        Err(e) => {
            observed.end = Some(format!(
                "GET /api/v10/gateway/bot via twilight-http failed: {e}"
            ));
            return;
        }
    };
    eprintln!("gateway/bot: url {}, {} shard(s)", info.url, info.shards);
    let config = ConfigBuilder::new(args.token.clone(), Intents::GUILDS | Intents::GUILD_MEMBERS)
        .proxy_url(info.url)
        .build();
    let mut shard = Shard::with_config(ShardId::ONE, config);

    let deadline = started + RUN_BUDGET;
    observed.end = Some(loop {
        if let Some(reason) = step(&shard, args, observed).await {
            break reason;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break format!("gave up after {}s", RUN_BUDGET.as_secs());
        }
        let Ok(item) =
            tokio::time::timeout(left.min(TICK), shard.next_event(EventTypeFlags::all())).await
        else {
            continue;
        };
        match item {
            None => break "the shard stopped (fatal close)".to_owned(),
            Some(Ok(event)) => on_event(&event, observed),
            Some(Err(e)) => {
                eprintln!("receive error: {}", observe::chain(&e));
                observed.on_error(&e);
            }
        }
    });
    close(&mut shard).await;
}

/// Records one event.
fn on_event(event: &Event, observed: &mut Observations) {
    match event {
        Event::Ready(ready) => observed.on_ready(ready),
        Event::GuildCreate(guild) => observed.on_guild_create(guild),
        Event::GatewayHeartbeatAck => observed.heartbeat_acks += 1,
        Event::MemberChunk(chunk) => observed.on_member_chunk(chunk),
        Event::Resumed if observed.reconnect.is_some() => observed.resumed = true,
        Event::GatewayClose(frame) => {
            let text = frame.as_ref().map_or_else(
                || "close without frame".to_owned(),
                |f| format!("close {} {}", f.code, f.reason),
            );
            eprintln!("{text}");
            observed.connection_log.push(text);
        }
        Event::GatewayInvalidateSession(resumable) => {
            observed
                .connection_log
                .push(format!("INVALID_SESSION resumable={resumable}"));
        }
        Event::GatewayReconnect => eprintln!("op 7 RECONNECT received"),
        _ => {}
    }
}

/// Moves on when it is time: requests members, asks the server for a reconnect, or finishes
/// (`Some(reason)`).
async fn step(shard: &Shard, args: &Args, observed: &mut Observations) -> Option<String> {
    let now = Instant::now();
    let ready_at = observed.ready_at?;
    if observed.request.is_none() && observed.request_skipped.is_none() {
        if !observed.all_guilds_seen() && now < ready_at + GUILDS_WAIT {
            return None;
        }
        request_members(shard, observed);
        return None;
    }
    if observed.reconnect.is_none() {
        let waited_out = observed
            .request
            .as_ref()
            .is_none_or(|r| now >= r.at + CHUNKS_WAIT);
        if !observed.chunks_complete() && !waited_out {
            return None;
        }
        let result = http::post(&args.host, "/testkit/shards/0/reconnect").await;
        eprintln!("POST /testkit/shards/0/reconnect: {result:?}");
        observed.reconnect = Some((result, Instant::now()));
        return None;
    }
    let (result, sent_at) = observed.reconnect.as_ref()?;
    let resume_settled = observed.resumed
        || observed.ready_after_reconnect
        || result.is_err()
        || now >= *sent_at + RESUME_WAIT;
    (resume_settled && observed.heartbeat_acks >= 2).then(|| "all steps done".to_owned())
}

/// Requests every member of the largest guild, with a nonce.
fn request_members(shard: &Shard, observed: &mut Observations) {
    let Some((&guild_id, &member_count)) = observed.guilds.iter().max_by_key(|(_, count)| **count)
    else {
        observed.request_skipped = Some("no GUILD_CREATE parsed".to_owned());
        return;
    };
    let Some(id) = Id::new_checked(guild_id) else {
        observed.request_skipped = Some(format!("guild id {guild_id} is zero"));
        return;
    };
    let nonce = format!("interop-twilight-{}", std::process::id());
    shard.command(
        &RequestGuildMembers::builder(id)
            .nonce(nonce.clone())
            .query("", None),
    );
    eprintln!("requested members of guild {guild_id} ({member_count} members), nonce {nonce}");
    observed.request = Some(ChunkRequest {
        guild_id,
        member_count,
        nonce,
        at: Instant::now(),
    });
}

/// Closes the shard with 1000 and keeps it polled until the close frame is out.
///
/// twilight reports no event for a close it started (tokio-websockets ends the stream after the
/// handshake) and would reconnect on the next poll, so this polls until the shard says it is
/// disconnected, and a moment more to flush the frame.
async fn close(shard: &mut Shard) {
    shard.close(CloseFrame::NORMAL);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut flushed_by = None;
    while Instant::now() < deadline && flushed_by.is_none_or(|by| Instant::now() < by) {
        let poll = tokio::time::timeout(
            Duration::from_millis(20),
            shard.next_event(EventTypeFlags::empty()),
        );
        if let Ok(None | Some(Ok(Event::GatewayClose(_)))) = poll.await {
            return;
        }
        if flushed_by.is_none() && matches!(shard.state(), ShardState::Disconnected { .. }) {
            flushed_by = Some(Instant::now() + Duration::from_millis(100));
        }
    }
}
