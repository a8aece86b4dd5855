//! One connection: the protocol as Discord speaks it, with faults on cue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};
use gateway_codec::{Compression, Compressor};
use gateway_model::{
    CloseAction, CloseCode, Command, Intents, RequestGuildMembers, ShardId, Snowflake,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::config::MissingMembersIntent;
use crate::handshake::{Replayed, parse_query};
use crate::inbound::{self, Rejection};
use crate::outbound;
use crate::state::{Control, Session, Shared};
use crate::{
    ChunkFault, ConnectionInfo, Fault, Guild, Received, Recorded, SplitAt, Trigger, members,
};

type Ws = WebSocketStream<TokioAdapter<Replayed>>;

/// The connection is over.
struct Closed;

type Flow = Result<(), Closed>;

/// Something to do later on this connection.
enum Timed {
    Fault(Fault),
    Send(String),
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    ws: Ws,
    compressor: Compressor,
    compression: Compression,
    session: Option<String>,
    received: VecDeque<Instant>,
    last_heartbeat: Instant,
    zombie: bool,
    stall_ready: bool,
    stall_resumed: bool,
    corrupt_next: bool,
    /// Dispatches still to lose (see [`Fault::LoseNext`]).
    lose_next: usize,
    split_next: Option<Vec<SplitAt>>,
    chunk_faults: VecDeque<ChunkFault>,
    seq_faults: Vec<(u64, Fault)>,
    timed: Vec<(Instant, Timed)>,
}

/// Serves one websocket connection, from its handshake (due by `deadline`) until it ends.
pub(crate) async fn run(shared: Arc<Shared>, stream: Replayed, id: u64, deadline: Instant) {
    let mut uri = None;
    let mut user_agent = None;
    #[allow(clippy::result_large_err)] // the error type is tungstenite's callback signature
    let callback = |req: &Request, resp: Response| {
        uri = Some(req.uri().clone());
        user_agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(resp)
    };
    // Frames are refused from their header when over the limit, before they are buffered.
    let limit = shared.config.max_client_frame.max(1);
    let ws_config = WebSocketConfig::default()
        .max_frame_size(Some(limit))
        .max_message_size(Some(limit));
    let handshake =
        async_tungstenite::tokio::accept_hdr_async_with_config(stream, callback, Some(ws_config));
    let ws = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(connection = id, error = %e, "websocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(connection = id, "websocket handshake timed out");
            return;
        }
    };
    let query = uri
        .as_ref()
        .and_then(|u| u.query())
        .unwrap_or("")
        .to_owned();
    let (compression, reject) = parse_query(&query);
    let (tx, rx) = mpsc::unbounded_channel();
    let pre = shared.update(|s| {
        s.stats.connections += 1;
        s.stats.open_connections += 1;
        s.controls.insert(id, tx);
        let limit = shared.config.history_limit;
        s.add_connection(
            ConnectionInfo {
                id,
                compression,
                shard: None,
                session_id: None,
                open: true,
                closed_with: None,
                accepted_at: shared.elapsed(),
                user_agent: user_agent.clone(),
            },
            limit,
        );
        s.next_connection_faults.pop_front()
    });
    let compressor = match Compressor::new(compression) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "compressor");
            return;
        }
    };
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        id,
        ws,
        compressor,
        compression,
        session: None,
        received: VecDeque::new(),
        last_heartbeat: Instant::now(),
        zombie: false,
        stall_ready: false,
        stall_resumed: false,
        corrupt_next: false,
        lose_next: 0,
        split_next: None,
        chunk_faults: VecDeque::new(),
        seq_faults: Vec::new(),
        timed: Vec::new(),
    };
    // Both end the connection (`Err(Closed)`); how it ended is in its ConnectionInfo.
    let ended = match reject {
        Some((code, rule)) => {
            tracing::warn!(connection = id, code, field = "query", rule = %rule, query = %query, "connection refused");
            conn.close(code).await
        }
        None => conn.serve(pre, rx).await,
    };
    debug_assert!(ended.is_err());
    conn.finish();
}

impl Conn {
    async fn serve(
        &mut self,
        pre: Option<Fault>,
        mut rx: mpsc::UnboundedReceiver<Control>,
    ) -> Flow {
        match pre {
            Some(Fault::StallHello) => return self.drain().await,
            Some(Fault::ReconnectBeforeHello) => {
                self.send(r#"{"t":null,"s":null,"op":7,"d":null}"#).await?
            }
            _ => {}
        }
        let interval = self.shared.config.heartbeat_interval.as_millis();
        self.send(&format!(
            r#"{{"t":null,"s":null,"op":10,"d":{{"heartbeat_interval":{interval},"_trace":["[\"gateway-testkit\",{{\"micros\":0}}]"]}}}}"#
        ))
        .await?;
        self.last_heartbeat = Instant::now();
        if let Some(fault) = pre.filter(|f| !matches!(f, Fault::ReconnectBeforeHello)) {
            self.fault(fault).await?;
        }
        let timeout = self.shared.config.heartbeat_deadline();
        loop {
            let heartbeat_deadline = timeout.map(|t| self.last_heartbeat + t);
            let next_timed = self.timed.iter().map(|(at, _)| *at).min();
            tokio::select! {
                biased;
                control = rx.recv() => match control {
                    Some(c) => self.control(c).await?,
                    None => return Err(Closed),
                },
                _ = sleep_until(next_timed.unwrap_or_else(Instant::now)), if next_timed.is_some() => {
                    self.fire_timed().await?;
                }
                message = self.ws.next() => match message {
                    Some(Ok(m)) => self.on_message(m).await?,
                    Some(Err(WsError::Capacity(e))) => {
                        return self.reject(Rejection {
                            code: CloseCode::DecodeError,
                            field: "frame",
                            rule: e.to_string(),
                        }, "<refused frame>".into()).await;
                    }
                    Some(Err(_)) | None => return Err(Closed),
                },
                _ = sleep_until(heartbeat_deadline.unwrap_or_else(Instant::now)), if heartbeat_deadline.is_some() => {
                    tracing::debug!(connection = self.id, "no heartbeat in time");
                    return self.close(CloseCode::SessionTimedOut.as_u16()).await;
                }
            }
        }
    }

    /// Reads and ignores everything until the client leaves.
    async fn drain(&mut self) -> Flow {
        while let Some(Ok(_)) = self.ws.next().await {}
        Err(Closed)
    }

    async fn fire_timed(&mut self) -> Flow {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.timed.len() {
            if self.timed[i].0 <= now {
                due.push(self.timed.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|(at, _)| *at);
        for (_, t) in due {
            match t {
                Timed::Fault(f) => self.fault(f).await?,
                Timed::Send(d) => self.dispatch("GUILD_MEMBERS_CHUNK", &d).await?,
            }
        }
        Ok(())
    }

    async fn control(&mut self, control: Control) -> Flow {
        match control {
            Control::Fault(Trigger::Now, f) => self.fault(f).await,
            Control::Fault(Trigger::After(d), f) => {
                self.timed.push((Instant::now() + d, Timed::Fault(f)));
                Ok(())
            }
            Control::Fault(Trigger::AfterSeq(seq), f) => {
                if self.current_seq().is_some_and(|s| s >= seq) {
                    self.fault(f).await
                } else {
                    self.seq_faults.push((seq, f));
                    Ok(())
                }
            }
            Control::Dispatch { name, data } => {
                if self.session.is_some() {
                    self.dispatch(&name, &data).await
                } else {
                    Ok(())
                }
            }
            Control::GuildAvailable(guild_id) => {
                let Some((guild, intents, threshold)) = self.guild_on_this_shard(guild_id) else {
                    return Ok(());
                };
                let d = self
                    .shared
                    .world
                    .guild_create_json(&guild, intents, threshold);
                self.dispatch("GUILD_CREATE", &d).await
            }
            Control::GuildUnavailable(guild_id) => {
                let Some((guild, _, _)) = self.guild_on_this_shard(guild_id) else {
                    return Ok(());
                };
                let d = self.shared.world.unavailable_guild_json(&guild);
                self.dispatch("GUILD_DELETE", &d).await
            }
        }
    }

    async fn fault(&mut self, fault: Fault) -> Flow {
        tracing::debug!(connection = self.id, ?fault, "fault");
        match fault {
            Fault::Close(code) => self.close(code).await,
            Fault::Drop => Err(Closed),
            Fault::Zombie => {
                self.zombie = true;
                Ok(())
            }
            Fault::InvalidSession { resumable } => {
                self.send(&format!(r#"{{"t":null,"s":null,"op":9,"d":{resumable}}}"#))
                    .await?;
                if !resumable {
                    self.drop_session();
                }
                Ok(())
            }
            Fault::Reconnect | Fault::ReconnectBeforeHello => {
                self.send(r#"{"t":null,"s":null,"op":7,"d":null}"#).await
            }
            Fault::RequestHeartbeat => self.send(r#"{"t":null,"s":null,"op":1,"d":null}"#).await,
            Fault::SplitNext(points) => {
                self.split_next = Some(points);
                Ok(())
            }
            Fault::CorruptNext => {
                self.corrupt_next = true;
                Ok(())
            }
            Fault::LoseNext(n) => {
                self.lose_next = n;
                Ok(())
            }
            Fault::Oversize(size) => {
                let d = format!(r#"{{"padding":"{}"}}"#, "x".repeat(size));
                match self.session {
                    Some(_) => self.dispatch("TESTKIT_OVERSIZE", &d).await,
                    None => {
                        self.send(&format!(
                            r#"{{"t":"TESTKIT_OVERSIZE","s":0,"op":0,"d":{d}}}"#
                        ))
                        .await
                    }
                }
            }
            Fault::StallHello => Ok(()),
            Fault::StallResumed => {
                self.stall_resumed = true;
                Ok(())
            }
            Fault::StallReady => {
                self.stall_ready = true;
                Ok(())
            }
            Fault::Chunks(c) => {
                self.chunk_faults.push_back(c);
                Ok(())
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Flow {
        let text = match message {
            Message::Text(t) => t.to_string(),
            // Discord reads JSON in binary frames too.
            Message::Binary(b) => match String::from_utf8(b.to_vec()) {
                Ok(t) => t,
                Err(_) => {
                    let raw = format!("<{} binary bytes, not UTF-8>", b.len());
                    let rule = "a JSON payload must be UTF-8".to_owned();
                    return self
                        .reject(
                            Rejection {
                                code: CloseCode::DecodeError,
                                field: "payload",
                                rule,
                            },
                            raw,
                        )
                        .await;
                }
            },
            Message::Close(frame) => {
                let code = frame.map(|f| u16::from(f.code));
                if matches!(code, Some(1000 | 1001)) {
                    // Closing with 1000 or 1001 ends the session.
                    self.drop_session();
                }
                return Err(Closed);
            }
            _ => return Ok(()),
        };
        let now = Instant::now();
        self.received.push_back(now);
        while self
            .received
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.received.pop_front();
        }
        if self.received.len() > self.shared.config.commands_per_minute {
            let rule = format!(
                "over {} payloads in 60 s",
                self.shared.config.commands_per_minute
            );
            let raw = inbound::redacted(&text);
            return self
                .reject(
                    Rejection {
                        code: CloseCode::RateLimited,
                        field: "payload",
                        rule,
                    },
                    raw,
                )
                .await;
        }
        match inbound::read_command(&text, &self.shared.config, &self.shared.world) {
            Ok(command) => {
                self.record(Received::Command(command.clone()));
                self.command(command).await
            }
            Err(rejection) => self.reject(rejection, inbound::redacted(&text)).await,
        }
    }

    /// Closes over a payload Discord would refuse: a warning naming the field and the rule, the
    /// payload recorded without its token (and cut to the client payload limit), and Discord's code
    /// and words in the close frame.
    async fn reject(&mut self, rejection: Rejection, mut raw: String) -> Flow {
        let limit = self.shared.config.max_client_payload;
        if raw.len() > limit {
            let mut cut = limit;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            raw.truncate(cut);
            raw.push('…');
        }
        tracing::warn!(
            connection = self.id,
            code = rejection.code.as_u16(),
            field = rejection.field,
            rule = %rejection.rule,
            "client payload refused"
        );
        self.record(Received::Invalid {
            raw,
            reason: format!("{}: {}", rejection.field, rejection.rule),
        });
        self.close(rejection.code.as_u16()).await
    }

    async fn command(&mut self, command: Command) -> Flow {
        match (command, self.session.is_some()) {
            (Command::Heartbeat(_), _) => {
                self.shared.update(|s| s.stats.heartbeats += 1);
                self.last_heartbeat = Instant::now();
                if self.zombie {
                    return Ok(());
                }
                self.send(r#"{"t":null,"s":null,"op":11,"d":null}"#).await
            }
            (Command::Identify(_) | Command::Resume(_), true) => {
                tracing::warn!(
                    connection = self.id,
                    code = 4005,
                    field = "op",
                    rule = "IDENTIFY or RESUME on an authenticated connection",
                    "closing"
                );
                self.close(CloseCode::AlreadyAuthenticated.as_u16()).await
            }
            (Command::Identify(identify), false) => {
                let shard = identify.shard.unwrap_or(ShardId::ONE);
                self.identify(
                    shard,
                    identify.intents,
                    identify.large_threshold.get().into(),
                )
                .await
            }
            (Command::Resume(resume), false) => self.resume(&resume.session_id, resume.seq).await,
            (_, false) => {
                tracing::warn!(
                    connection = self.id,
                    code = 4003,
                    field = "op",
                    rule = "a command before IDENTIFY or RESUME",
                    "closing"
                );
                self.close(CloseCode::NotAuthenticated.as_u16()).await
            }
            (Command::RequestGuildMembers(request), true) => self.request_members(request).await,
            (Command::RequestSoundboardSounds(r), true) => {
                for guild_id in r.guild_ids {
                    let d = format!(r#"{{"guild_id":"{guild_id}","soundboard_sounds":[]}}"#);
                    self.dispatch("SOUNDBOARD_SOUNDS", &d).await?;
                }
                Ok(())
            }
            (Command::RequestChannelInfo(r), true) => {
                let d = format!(r#"{{"guild_id":"{}","channels":[]}}"#, r.guild_id);
                self.dispatch("CHANNEL_INFO", &d).await
            }
            // Presence and voice updates are recorded; nothing answers them here.
            (_, true) => Ok(()),
        }
    }

    async fn identify(&mut self, shard: ShardId, intents: Intents, large_threshold: usize) -> Flow {
        let config = &self.shared.config;
        let bucket = shard.number() % config.max_concurrency.max(1);
        let window = config.identify_window;
        let now = Instant::now();
        let stall = self.stall_ready;
        let allowed = self.shared.update(|s| {
            s.stats.identifies += 1;
            match s.identify_buckets.get(&bucket) {
                Some(last) if now.duration_since(*last) < window => Some(false),
                // A session starts (and spends the budget) only when READY is sent.
                _ if !stall && !s.session_starts.spend(now, config) => None,
                _ => {
                    s.identify_buckets.insert(bucket, now);
                    Some(true)
                }
            }
        });
        let Some(allowed) = allowed else {
            let rule = format!(
                "the session start limit ({} per {:?}) is spent",
                config.session_start_limit, config.session_start_reset
            );
            let rejection = Rejection {
                code: CloseCode::AuthenticationFailed,
                field: "d.token",
                rule,
            };
            return self
                .reject(rejection, "<IDENTIFY over the session start limit>".into())
                .await;
        };
        if !allowed {
            tracing::debug!(
                connection = self.id,
                bucket,
                "identify over max_concurrency"
            );
            return self.send(r#"{"t":null,"s":null,"op":9,"d":false}"#).await;
        }
        if std::mem::take(&mut self.stall_ready) {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let world = &shared.world;
        let session_id = self.shared.update(|s| {
            s.sessions_started += 1;
            let id = world.session_id(s.sessions_started);
            s.sessions.insert(
                id.clone(),
                Session {
                    shard,
                    intents,
                    large_threshold,
                    seq: 0,
                    buffer: VecDeque::new(),
                    connection: Some(self.id),
                    detached_at: None,
                },
            );
            if let Some(c) = s.connection_mut(self.id) {
                c.shard = Some(shard);
                c.session_id = Some(id.clone());
            }
            id
        });
        self.session = Some(session_id.clone());
        let allowed_intents = self.shared.config.allowed_intents;
        let ready = world.ready_json(
            &session_id,
            &self.shared.url,
            [shard.number(), shard.total()],
            allowed_intents,
        );
        self.dispatch("READY", &ready).await?;
        self.shared.update(|s| s.stats.readies += 1);
        let available: Vec<_> = {
            let state = shared.lock();
            world
                .guilds_of_shard(shard.number(), shard.total())
                .filter(|g| !g.unavailable_at_start || state.made_available.contains(&g.id))
                .cloned()
                .collect()
        };
        for guild in available {
            let d = world.guild_create_json(&guild, intents, large_threshold);
            self.dispatch("GUILD_CREATE", &d).await?;
        }
        Ok(())
    }

    async fn resume(&mut self, session_id: &str, seq: u64) -> Flow {
        let now = Instant::now();
        let ttl = self.shared.config.session_ttl;
        enum Outcome {
            Invalid,
            BadSeq,
            Replay(Vec<Arc<str>>),
        }
        let outcome = self.shared.update(|s| {
            s.stats.resumes += 1;
            let Some(session) = s.sessions.get_mut(session_id) else {
                return Outcome::Invalid;
            };
            if session
                .detached_at
                .is_some_and(|t| now.duration_since(t) > ttl)
            {
                s.sessions.remove(session_id);
                return Outcome::Invalid;
            }
            if seq > session.seq {
                return Outcome::BadSeq;
            }
            let oldest = session.buffer.front().map_or(session.seq + 1, |(s, _)| *s);
            if seq + 1 < oldest {
                return Outcome::Invalid;
            }
            session.connection = Some(self.id);
            session.detached_at = None;
            let shard = session.shard;
            let replay = session
                .buffer
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, p)| Arc::clone(p))
                .collect();
            if let Some(c) = s.connection_mut(self.id) {
                c.shard = Some(shard);
                c.session_id = Some(session_id.to_owned());
            }
            Outcome::Replay(replay)
        });
        match outcome {
            Outcome::Invalid => self.send(r#"{"t":null,"s":null,"op":9,"d":false}"#).await,
            Outcome::BadSeq => {
                tracing::warn!(
                    connection = self.id,
                    code = 4007,
                    field = "d.seq",
                    rule = "RESUME with a sequence number never sent",
                    "closing"
                );
                self.close(CloseCode::InvalidSeq.as_u16()).await
            }
            Outcome::Replay(replay) => {
                self.session = Some(session_id.to_owned());
                for payload in replay {
                    self.send(&payload).await?;
                    self.shared.update(|s| s.stats.dispatches += 1);
                }
                if std::mem::take(&mut self.stall_resumed) {
                    return Ok(());
                }
                self.dispatch("RESUMED", "{}").await?;
                self.shared.update(|s| s.stats.resumed += 1);
                Ok(())
            }
        }
    }

    async fn request_members(&mut self, request: RequestGuildMembers) -> Flow {
        self.shared.update(|s| s.stats.member_requests += 1);
        let guild_id = request.guild_id();
        let Some((guild, intents, _)) = self.guild_on_this_shard(guild_id) else {
            return Ok(());
        };
        if request.is_full_list() {
            if !intents.contains(Intents::GUILD_MEMBERS) {
                return match self.shared.config.missing_members_intent {
                    MissingMembersIntent::Ignore => Ok(()),
                    MissingMembersIntent::Close(code) => self.close(code).await,
                };
            }
            let now = Instant::now();
            let interval = self.shared.config.full_member_request_interval;
            let retry_after = self
                .shared
                .update(|s| match s.full_member_requests.get(&guild_id) {
                    Some(last) if now.duration_since(*last) < interval => {
                        Some(interval - now.duration_since(*last))
                    }
                    _ => {
                        s.full_member_requests.insert(guild_id, now);
                        None
                    }
                });
            if let Some(wait) = retry_after {
                let d = members::rate_limited_json(guild_id, request.nonce(), wait);
                return self.dispatch("RATE_LIMITED", &d).await;
            }
        }
        let presences = request.presences() && intents.contains(Intents::GUILD_PRESENCES);
        let chunks = members::chunks(&self.shared.world, &guild, &request, presences);
        let (chunks, delayed) = members::apply_fault(chunks, self.chunk_faults.pop_front());
        let now = Instant::now();
        self.timed.extend(
            delayed
                .into_iter()
                .map(|(by, c)| (now + by, Timed::Send(c))),
        );
        for chunk in chunks {
            self.dispatch("GUILD_MEMBERS_CHUNK", &chunk).await?;
        }
        Ok(())
    }

    /// The world's guild `guild_id` with this session's intents and large threshold, if the
    /// session's shard carries it.
    fn guild_on_this_shard(&self, guild_id: Snowflake) -> Option<(Guild, Intents, usize)> {
        let guild = self.shared.world.guild(guild_id)?.clone();
        let (shard, intents, threshold) = self.session_params()?;
        (guild.id.shard_index(shard.total()) == shard.number())
            .then_some((guild, intents, threshold))
    }

    fn session_params(&self) -> Option<(ShardId, Intents, usize)> {
        let id = self.session.as_ref()?;
        let state = self.shared.lock();
        let s = state.sessions.get(id)?;
        Some((s.shard, s.intents, s.large_threshold))
    }

    fn current_seq(&self) -> Option<u64> {
        let id = self.session.as_ref()?;
        self.shared.lock().sessions.get(id).map(|s| s.seq)
    }

    /// Sends a dispatch in the session's sequence, keeping it for resume.
    async fn dispatch(&mut self, name: &str, data: &str) -> Flow {
        let limit = self.shared.config.resume_buffer;
        let Some(id) = self.session.clone() else {
            return Ok(());
        };
        let payload = self.shared.update(|s| {
            s.stats.dispatches += 1;
            let session = s.sessions.get_mut(&id)?;
            session.seq += 1;
            let payload: Arc<str> =
                format!(r#"{{"t":"{name}","s":{},"op":0,"d":{data}}}"#, session.seq).into();
            session
                .buffer
                .push_back((session.seq, Arc::clone(&payload)));
            while session.buffer.len() > limit {
                session.buffer.pop_front();
            }
            Some((session.seq, payload))
        });
        let Some((seq, payload)) = payload else {
            return Ok(());
        };
        if self.lose_next > 0 {
            self.lose_next -= 1;
        } else {
            self.send(&payload).await?;
        }
        let due: Vec<Fault> = {
            let (due, keep) = std::mem::take(&mut self.seq_faults)
                .into_iter()
                .partition(|(s, _)| *s <= seq);
            self.seq_faults = keep;
            due.into_iter().map(|(_, f)| f).collect()
        };
        for fault in due {
            Box::pin(self.fault(fault)).await?;
        }
        Ok(())
    }

    /// Sends one payload, compressed, applying any pending split or corruption.
    async fn send(&mut self, json: &str) -> Flow {
        let corrupt = std::mem::take(&mut self.corrupt_next);
        let split = self.split_next.take().unwrap_or_default();
        let messages = outbound::frames(
            &mut self.compressor,
            self.compression,
            json,
            corrupt,
            &split,
        )
        .map_err(|_| Closed)?;
        for message in messages {
            self.ws.feed(message).await.map_err(|_| Closed)?;
        }
        self.ws.flush().await.map_err(|_| Closed)
    }

    /// Closes with `code`; sessions the code ends are forgotten.
    async fn close(&mut self, code: u16) -> Flow {
        tracing::debug!(connection = self.id, code, "closing");
        if CloseCode::from_u16(code).action() != CloseAction::Resume {
            self.drop_session();
        }
        self.shared.update(|s| {
            if let Some(c) = s.connection_mut(self.id) {
                c.closed_with = Some(code);
            }
        });
        let frame = CloseFrame {
            code: WsCloseCode::from(code),
            reason: inbound::close_reason(code).into(),
        };
        if let Err(e) = self.ws.close(Some(frame)).await {
            tracing::debug!(connection = self.id, error = %e, "close frame not delivered");
        }
        Err(Closed)
    }

    /// Forgets this connection's session: it can no longer be resumed.
    fn drop_session(&mut self) {
        if let Some(id) = self.session.take() {
            self.shared.update(|s| {
                s.sessions.remove(&id);
            });
        }
    }

    fn record(&self, received: Received) {
        let at = self.shared.elapsed();
        let connection = self.id;
        let limit = self.shared.config.history_limit;
        self.shared.update(|s| {
            s.record(
                Recorded {
                    connection,
                    at,
                    received,
                },
                limit,
            )
        });
    }

    /// The connection ended: detach its session, which stays resumable for the session TTL.
    fn finish(&mut self) {
        let now = Instant::now();
        let session = self.session.take();
        let id = self.id;
        self.shared.update(|s| {
            s.stats.open_connections = s.stats.open_connections.saturating_sub(1);
            s.controls.remove(&id);
            if let Some(c) = s.connection_mut(id) {
                c.open = false;
            }
            if let Some(session) = session
                .and_then(|sid| s.sessions.get_mut(&sid))
                .filter(|session| session.connection == Some(id))
            {
                session.connection = None;
                session.detached_at = Some(now);
            }
        });
    }
}
