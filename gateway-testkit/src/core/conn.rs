//! One connection's protocol, as Discord speaks it, with faults on cue: what the server does with
//! each client payload, fault and timer, as outputs for the connection's driver.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use gateway_model::{
    CloseCode, Command, Intents, RequestGuildMembers, ShardId, Snowflake, UpdateVoiceState,
};
use gateway_server::{Connection, Frame, Inbound, Rejection, Transmit, ends_session, envelope};

use super::{Cx, Output};
use crate::config::MissingMembersIntent;
use crate::state::Session;
use crate::{
    ChunkFault, DropReason, Fault, Guild, Received, Recorded, SplitAt, Trigger, admission, answers,
    members, shape,
};

/// The connection is over; its close (or drop) is already in the outputs.
pub(super) struct Closed;

pub(super) type Flow = Result<(), Closed>;

/// Something to do later on this connection.
enum Timed {
    Fault(Fault),
    Chunk(String),
}

/// One connection's protocol state: the server side every gateway speaks ([`Connection`]), and
/// the fake's session, faults and timers.
pub(super) struct Conn {
    pub(super) id: u64,
    server: Connection,
    pub(super) session: Option<String>,
    stall_ready: bool,
    stall_resumed: bool,
    corrupt_next: bool,
    /// Dispatches still to lose (see [`Fault::LoseNext`]).
    lose_next: usize,
    split_next: Option<Vec<SplitAt>>,
    chunk_faults: VecDeque<ChunkFault>,
    seq_faults: Vec<(u64, Fault)>,
    timed: Vec<(Instant, Timed)>,
    /// Everything the client sends is read and ignored ([`Fault::StallHello`]).
    ignoring: bool,
}

impl Conn {
    pub(super) fn new(id: u64, server: Connection) -> Self {
        Self {
            id,
            server,
            session: None,
            stall_ready: false,
            stall_resumed: false,
            corrupt_next: false,
            lose_next: 0,
            split_next: None,
            chunk_faults: VecDeque::new(),
            seq_faults: Vec::new(),
            timed: Vec::new(),
            ignoring: false,
        }
    }

    /// When this connection needs [`timeout`](Self::timeout) next.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let heartbeat = self.server.poll_timeout();
        let timed = self.timed.iter().map(|(at, _)| *at).min();
        [heartbeat, timed].into_iter().flatten().min()
    }

    /// The connection is up: HELLO, unless a fault for the next connection says otherwise.
    pub(super) fn open(&mut self, cx: &mut Cx<'_>, pre: Option<Fault>) -> Flow {
        match pre {
            Some(Fault::StallHello) => {
                self.ignoring = true;
                return Ok(());
            }
            Some(Fault::ReconnectBeforeHello) => self.send(cx, &envelope::reconnect())?,
            _ => {}
        }
        self.server.hello(cx.now);
        self.emit(cx)?;
        match pre {
            Some(Fault::ReconnectBeforeHello) | None => Ok(()),
            Some(fault) => self.fault(cx, fault),
        }
    }

    /// Time passed: timed faults and chunks, and the heartbeat deadline.
    pub(super) fn timeout(&mut self, cx: &mut Cx<'_>) -> Flow {
        let now = cx.now;
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
                Timed::Fault(f) => self.fault(cx, f)?,
                Timed::Chunk(d) => self.dispatch(cx, "GUILD_MEMBERS_CHUNK", &d)?,
            }
        }
        self.server.handle_timeout(now);
        self.emit(cx)
    }

    /// A fault injected by a test, now or on a trigger.
    pub(super) fn inject(&mut self, cx: &mut Cx<'_>, trigger: Trigger, fault: Fault) -> Flow {
        match trigger {
            Trigger::Now => self.fault(cx, fault),
            Trigger::After(d) => {
                self.timed.push((cx.now + d, Timed::Fault(fault)));
                Ok(())
            }
            Trigger::AfterSeq(seq) => {
                if self.current_seq(cx).is_some_and(|s| s >= seq) {
                    self.fault(cx, fault)
                } else {
                    self.seq_faults.push((seq, fault));
                    Ok(())
                }
            }
        }
    }

    /// GUILD_CREATE for a guild made available, if this session's shard carries it.
    pub(super) fn guild_available(&mut self, cx: &mut Cx<'_>, guild_id: Snowflake) -> Flow {
        let Some((guild, intents, threshold)) = self.guild_on_this_shard(cx, guild_id) else {
            return Ok(());
        };
        let d = cx.world.guild_create_json(&guild, intents, threshold);
        self.dispatch(cx, "GUILD_CREATE", &d)
    }

    /// GUILD_DELETE (unavailable) for a guild in an outage, if this session's shard carries it.
    pub(super) fn guild_unavailable(&mut self, cx: &mut Cx<'_>, guild_id: Snowflake) -> Flow {
        let Some((guild, _, _)) = self.guild_on_this_shard(cx, guild_id) else {
            return Ok(());
        };
        let d = cx.world.unavailable_guild_json(&guild);
        self.dispatch(cx, "GUILD_DELETE", &d)
    }

    fn fault(&mut self, cx: &mut Cx<'_>, fault: Fault) -> Flow {
        tracing::debug!(connection = self.id, ?fault, "fault");
        match fault {
            Fault::Close(code) => self.close(cx, code),
            Fault::Drop => self.drop_with(cx, DropReason::Fault),
            Fault::Zombie => {
                self.server.set_answer_heartbeats(false);
                Ok(())
            }
            Fault::InvalidSession { resumable } => {
                self.send(cx, &envelope::invalid_session(resumable))?;
                if !resumable {
                    self.drop_session(cx);
                }
                Ok(())
            }
            Fault::Reconnect | Fault::ReconnectBeforeHello => self.send(cx, &envelope::reconnect()),
            Fault::RequestHeartbeat => self.send(cx, &envelope::heartbeat_request()),
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
                let d = answers::padding(size);
                match self.session {
                    Some(_) => self.dispatch(cx, "TESTKIT_OVERSIZE", &d),
                    None => self.send(cx, &envelope::dispatch("TESTKIT_OVERSIZE", 0, &d)),
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

    /// A frame from the client, read by the server side ([`Connection::handle_frame`]), and
    /// IDENTIFY and RESUME judged by this application's rules.
    pub(super) fn frame(&mut self, cx: &mut Cx<'_>, frame: Frame) -> Flow {
        if self.ignoring {
            return Ok(());
        }
        let (config, world) = (cx.config, cx.world);
        let inbound = self
            .server
            .handle_frame(cx.now, frame, |c| admission::admit(c, config, world));
        match inbound {
            Inbound::Command { command, .. } => {
                self.record(cx, Received::Command(command.clone()));
                self.emit(cx)?;
                self.command(cx, command)
            }
            Inbound::Refused {
                rejection,
                redacted,
            } => self.rejected(cx, &rejection, redacted),
            _ => self.emit(cx),
        }
    }

    /// Another connection resumed this one's session: closed with 4000, a code that keeps the
    /// session (which now lives on the other connection).
    pub(super) fn superseded(&mut self, cx: &mut Cx<'_>) -> Flow {
        tracing::warn!(
            connection = self.id,
            "session resumed on another connection: closing this one"
        );
        self.set_session(None);
        self.close(cx, CloseCode::UnknownError.as_u16())
    }

    /// Drops the connection without a close frame, saying why in its record.
    pub(super) fn drop_with(&mut self, cx: &mut Cx<'_>, reason: DropReason) -> Flow {
        if let Some(c) = cx.state.connection_mut(self.id) {
            c.dropped = Some(reason);
        }
        self.server.drop_now();
        self.emit(cx)
    }

    /// Closes over a well-formed command Discord refuses here, saying which field and rule.
    fn refuse(
        &mut self,
        cx: &mut Cx<'_>,
        code: CloseCode,
        field: &'static str,
        rule: &str,
    ) -> Flow {
        self.server.refuse(&Rejection::new(code, field, rule));
        self.emit(cx)
    }

    /// The client closed; 1000 and 1001 end its session.
    pub(super) fn client_closed(&mut self, cx: &mut Cx<'_>, code: Option<u16>) {
        if let Some(c) = cx.state.connection_mut(self.id) {
            c.client_closed_with = Some(code);
        }
        if matches!(code, Some(1000 | 1001)) {
            self.drop_session(cx);
        }
    }

    /// Closes over a payload the server refuses (the websocket refused its frame, or the
    /// server side refused the payload): recorded without its token.
    pub(super) fn reject(&mut self, cx: &mut Cx<'_>, rule: String) -> Flow {
        match self.server.handle_frame_refused(rule) {
            Inbound::Refused {
                rejection,
                redacted,
            } => self.rejected(cx, &rejection, redacted),
            _ => self.emit(cx),
        }
    }

    /// Records a refused payload (its close is already queued) and emits the close.
    fn rejected(&mut self, cx: &mut Cx<'_>, rejection: &Rejection, raw: String) -> Flow {
        let reason = format!("{}: {}", rejection.field, rejection.rule);
        self.record(cx, Received::Invalid { raw, reason });
        self.emit(cx)
    }

    fn command(&mut self, cx: &mut Cx<'_>, command: Command) -> Flow {
        // The server side let through IDENTIFY and RESUME only before a session, and the
        // others only after.
        match command {
            Command::Heartbeat(_) => {
                cx.state.stats.heartbeats += 1;
                Ok(())
            }
            Command::Identify(identify) => {
                let shard = identify.shard.unwrap_or(ShardId::ONE);
                let threshold = identify.large_threshold.get().into();
                self.identify(cx, shard, identify.intents, threshold)
            }
            Command::Resume(resume) => self.resume(cx, &resume.session_id, resume.seq),
            Command::RequestGuildMembers(request) => self.request_members(cx, request),
            Command::RequestSoundboardSounds(r) => {
                for guild_id in r.guild_ids {
                    let d = answers::soundboard_sounds(guild_id);
                    self.dispatch(cx, "SOUNDBOARD_SOUNDS", &d)?;
                }
                Ok(())
            }
            Command::RequestChannelInfo(r) => {
                let d = answers::channel_info(r.guild_id);
                self.dispatch(cx, "CHANNEL_INFO", &d)
            }
            Command::UpdateVoiceState(update) => self.voice_state(cx, &update),
            // Presence updates are recorded; Discord answers them to others, not to the sender.
            _ => Ok(()),
        }
    }

    fn identify(
        &mut self,
        cx: &mut Cx<'_>,
        shard: ShardId,
        intents: Intents,
        large_threshold: usize,
    ) -> Flow {
        let config = cx.config;
        let bucket = shard.number() % config.max_concurrency.max(1);
        let now = cx.now;
        cx.state.stats.identifies += 1;
        let allowed = match cx.state.identify_buckets.get(&bucket) {
            Some(last) if now.duration_since(*last) < config.identify_window => Some(false),
            // A session starts (and spends the budget) only when READY is sent.
            _ if !self.stall_ready && !cx.state.session_starts.spend(now, config) => None,
            _ => {
                cx.state.identify_buckets.insert(bucket, now);
                Some(true)
            }
        };
        let Some(allowed) = allowed else {
            let rule = format!(
                "the session start limit ({} per {:?}) is spent",
                config.session_start_limit, config.session_start_reset
            );
            let rejection = Rejection::new(CloseCode::AuthenticationFailed, "d.token", rule);
            self.server.refuse(&rejection);
            let raw = "<IDENTIFY over the session start limit>".to_owned();
            return self.rejected(cx, &rejection, raw);
        };
        if !allowed {
            tracing::debug!(
                connection = self.id,
                bucket,
                "identify over max_concurrency"
            );
            return self.send(cx, &envelope::invalid_session(false));
        }
        if std::mem::take(&mut self.stall_ready) {
            return Ok(());
        }
        cx.state.sessions_started += 1;
        let session_id = cx.world.session_id(cx.state.sessions_started);
        cx.state.sessions.insert(
            session_id.clone(),
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
        if let Some(c) = cx.state.connection_mut(self.id) {
            c.shard = Some(shard);
            c.session_id = Some(session_id.clone());
        }
        self.set_session(Some(session_id.clone()));
        let allowed_intents = cx.config.allowed_intents;
        let ready = cx.world.ready_json(
            &session_id,
            cx.url,
            [shard.number(), shard.total()],
            allowed_intents,
        );
        self.dispatch(cx, "READY", &ready)?;
        cx.state.stats.readies += 1;
        let world = cx.world;
        let available: Vec<&Guild> = world
            .guilds_of_shard(shard.number(), shard.total())
            .filter(|g| !g.unavailable_at_start || cx.state.made_available.contains(&g.id))
            .collect();
        for guild in available {
            let d = world.guild_create_json(guild, intents, large_threshold);
            self.dispatch(cx, "GUILD_CREATE", &d)?;
        }
        Ok(())
    }

    fn resume(&mut self, cx: &mut Cx<'_>, session_id: &str, seq: u64) -> Flow {
        let now = cx.now;
        let ttl = cx.config.session_ttl;
        cx.state.stats.resumes += 1;
        let replay = 'outcome: {
            let Some(session) = cx.state.sessions.get_mut(session_id) else {
                break 'outcome None;
            };
            if session
                .detached_at
                .is_some_and(|t| now.duration_since(t) > ttl)
            {
                cx.state.sessions.remove(session_id);
                break 'outcome None;
            }
            if seq > session.seq {
                let rule = "RESUME with a sequence number never sent";
                return self.refuse(cx, CloseCode::InvalidSeq, "d.seq", rule);
            }
            let oldest = session.buffer.front().map_or(session.seq + 1, |(s, _)| *s);
            if seq + 1 < oldest {
                break 'outcome None;
            }
            // A session lives on one connection: one that still holds it is closed (see
            // `GatewayCore::handle_frame`).
            let holder = session.connection.filter(|c| *c != self.id);
            session.connection = Some(self.id);
            session.detached_at = None;
            let shard = session.shard;
            cx.state.superseded.extend(holder);
            let replay: Vec<Arc<str>> = session
                .buffer
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, p)| Arc::clone(p))
                .collect();
            if let Some(c) = cx.state.connection_mut(self.id) {
                c.shard = Some(shard);
                c.session_id = Some(session_id.to_owned());
            }
            Some(replay)
        };
        let Some(replay) = replay else {
            return self.send(cx, &envelope::invalid_session(false));
        };
        self.set_session(Some(session_id.to_owned()));
        for payload in replay {
            self.send(cx, &payload)?;
            cx.state.stats.dispatches += 1;
        }
        if std::mem::take(&mut self.stall_resumed) {
            return Ok(());
        }
        self.dispatch(cx, "RESUMED", "{}")?;
        cx.state.stats.resumed += 1;
        Ok(())
    }

    fn request_members(&mut self, cx: &mut Cx<'_>, request: RequestGuildMembers) -> Flow {
        cx.state.stats.member_requests += 1;
        let guild_id = request.guild_id();
        let Some((guild, intents, _)) = self.guild_on_this_shard(cx, guild_id) else {
            return Ok(());
        };
        if request.is_full_list() {
            if !intents.contains(Intents::GUILD_MEMBERS) {
                return match cx.config.missing_members_intent {
                    MissingMembersIntent::Ignore => Ok(()),
                    MissingMembersIntent::Close(code) => self.close(cx, code),
                };
            }
            let now = cx.now;
            let interval = cx.config.full_member_request_interval;
            let retry_after = match cx.state.full_member_requests.get(&guild_id) {
                Some(last) if now.duration_since(*last) < interval => {
                    Some(interval - now.duration_since(*last))
                }
                _ => {
                    cx.state.full_member_requests.insert(guild_id, now);
                    None
                }
            };
            if let Some(wait) = retry_after {
                let d = members::rate_limited_json(guild_id, request.nonce(), wait);
                return self.dispatch(cx, "RATE_LIMITED", &d);
            }
        }
        let presences = request.presences() && intents.contains(Intents::GUILD_PRESENCES);
        let chunks = members::chunks(cx.world, &guild, &request, presences);
        let (chunks, delayed) = members::apply_fault(chunks, self.chunk_faults.pop_front());
        let now = cx.now;
        self.timed.extend(
            delayed
                .into_iter()
                .map(|(by, c)| (now + by, Timed::Chunk(c))),
        );
        for chunk in chunks {
            self.dispatch(cx, "GUILD_MEMBERS_CHUNK", &chunk)?;
        }
        Ok(())
    }

    /// Op 4: VOICE_STATE_UPDATE, then VOICE_SERVER_UPDATE on a join, for a guild of this
    /// session's shard (Discord ignores the others).
    fn voice_state(&mut self, cx: &mut Cx<'_>, update: &UpdateVoiceState) -> Flow {
        let (Some(session_id), Some(_)) = (
            self.session.clone(),
            self.guild_on_this_shard(cx, update.guild_id),
        ) else {
            return Ok(());
        };
        for (name, d) in crate::voice::answer(cx.world, &session_id, update) {
            self.dispatch(cx, name, &d)?;
        }
        Ok(())
    }

    /// The world's guild `guild_id` with this session's intents and large threshold, if the
    /// session's shard carries it.
    fn guild_on_this_shard(
        &self,
        cx: &Cx<'_>,
        guild_id: Snowflake,
    ) -> Option<(Guild, Intents, usize)> {
        let guild = cx.world.guild(guild_id)?;
        let session = cx.state.sessions.get(self.session.as_ref()?)?;
        let shard = session.shard;
        (guild.id.shard_index(shard.total()) == shard.number())
            .then(|| (guild.clone(), session.intents, session.large_threshold))
    }

    fn current_seq(&self, cx: &Cx<'_>) -> Option<u64> {
        cx.state.sessions.get(self.session.as_ref()?).map(|s| s.seq)
    }

    /// Sends a dispatch in the session's sequence, keeping it for resume.
    pub(super) fn dispatch(&mut self, cx: &mut Cx<'_>, name: &str, data: &str) -> Flow {
        let limit = cx.config.resume_buffer;
        let Some(id) = self.session.as_ref() else {
            return Ok(());
        };
        cx.state.stats.dispatches += 1;
        let Some(session) = cx.state.sessions.get_mut(id) else {
            return Ok(());
        };
        session.seq += 1;
        let seq = session.seq;
        let payload: Arc<str> = envelope::dispatch(name, seq, data).into();
        session.buffer.push_back((seq, Arc::clone(&payload)));
        while session.buffer.len() > limit {
            session.buffer.pop_front();
        }
        if self.lose_next > 0 {
            self.lose_next -= 1;
        } else {
            self.send(cx, &payload)?;
        }
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.seq_faults)
            .into_iter()
            .partition(|(s, _)| *s <= seq);
        self.seq_faults = keep;
        for (_, fault) in due {
            self.fault(cx, fault)?;
        }
        Ok(())
    }

    /// Sends one payload, compressed, applying any pending split or corruption.
    fn send(&mut self, cx: &mut Cx<'_>, json: &str) -> Flow {
        self.server.send(json);
        self.emit(cx)
    }

    /// Moves what the server side asked for into the outputs, with a pending split or
    /// corruption applied to the next payload; a close forgets the session the code ends.
    pub(super) fn emit(&mut self, cx: &mut Cx<'_>) -> Flow {
        while let Some(transmit) = self.server.poll_transmit() {
            let output = match transmit {
                Transmit::Frames(frames) => {
                    let corrupt = std::mem::take(&mut self.corrupt_next);
                    let split = self.split_next.take().unwrap_or_default();
                    let frames = frames
                        .into_iter()
                        .flat_map(|f| shape::shape(f, corrupt, &split))
                        .collect();
                    Output::Frames {
                        conn: self.id,
                        frames,
                    }
                }
                Transmit::Close { code, reason } => {
                    if ends_session(code) {
                        self.drop_session(cx);
                    }
                    if let Some(c) = cx.state.connection_mut(self.id) {
                        c.closed_with = Some(code);
                    }
                    Output::Close {
                        conn: self.id,
                        code,
                        reason,
                    }
                }
                Transmit::Drop => {
                    if let Some(c) = cx.state.connection_mut(self.id) {
                        c.dropped.get_or_insert(DropReason::Compression);
                    }
                    Output::Drop { conn: self.id }
                }
            };
            cx.out.push_back(output);
        }
        if self.server.is_closed() {
            Err(Closed)
        } else {
            Ok(())
        }
    }

    /// Closes with `code`; sessions the code ends are forgotten.
    pub(super) fn close(&mut self, cx: &mut Cx<'_>, code: u16) -> Flow {
        self.server.close(code);
        self.emit(cx)
    }

    /// Whether this connection's server side is over.
    pub(super) fn is_closed(&self) -> bool {
        self.server.is_closed()
    }

    /// The connection's session, mirrored in the server side's authentication.
    fn set_session(&mut self, session: Option<String>) {
        self.server.set_authenticated(session.is_some());
        self.session = session;
    }

    /// Forgets this connection's session: it can no longer be resumed.
    fn drop_session(&mut self, cx: &mut Cx<'_>) {
        if let Some(id) = self.session.take() {
            cx.state.sessions.remove(&id);
        }
        self.server.set_authenticated(false);
    }

    fn record(&self, cx: &mut Cx<'_>, received: Received) {
        let at = cx.now.saturating_duration_since(cx.started);
        let limit = cx.config.history_limit;
        let recorded = Recorded {
            connection: self.id,
            at,
            received,
        };
        cx.state.record(recorded, limit);
    }

    /// The connection ended: detach its session, which stays resumable for the session TTL.
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) {
        let id = self.id;
        let state = &mut *cx.state;
        state.stats.open_connections = state.stats.open_connections.saturating_sub(1);
        let closed_at = cx.now.saturating_duration_since(cx.started);
        if let Some(c) = state.connection_mut(id) {
            c.open = false;
            c.closed_at = Some(closed_at);
        }
        if let Some(session) = self
            .session
            .take()
            .and_then(|sid| state.sessions.get_mut(&sid))
            .filter(|session| session.connection == Some(id))
        {
            session.connection = None;
            session.detached_at = Some(cx.now);
        }
    }
}
