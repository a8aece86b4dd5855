//! The client side: who may identify, a new client session's synthetic start (READY, then a
//! GUILD_CREATE per cached guild), RESUME from the replay log, and the commands clients send
//! through the shared shards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_model::{CloseCode, Command, Identify, Intents, RequestGuildMembers, Token};
use gateway_server::{Inbound, Rejection, envelope};

use super::requests::MemberPlan;
use super::session::{ClientSession, ResumeFrom};
use super::{ClientId, ProxyCore, ProxyOutput};
use crate::cache::Slot;
use crate::config::{PresencePolicy, ProxyConfig};

/// Judges an IDENTIFY or RESUME: the token is the bot's or a client secret (4004), the shard is
/// one of this proxy's under the bot's count (4010, 4011), the intents are within the
/// upstream's (4014).
fn admit(config: &ProxyConfig, command: &Command) -> Result<(), Rejection> {
    let token = match command {
        Command::Identify(identify) => &identify.token,
        Command::Resume(resume) => &resume.token,
        _ => return Ok(()),
    };
    check_token(config, token)?;
    if let Command::Identify(identify) = command {
        check_identify(config, identify)?;
    }
    Ok(())
}

fn check_token(config: &ProxyConfig, token: &Token) -> Result<(), Rejection> {
    let known = std::iter::once(&config.token).chain(&config.client_secrets);
    if known
        .into_iter()
        .any(|t| t.expose_secret() == token.expose_secret())
    {
        Ok(())
    } else {
        let rule = "neither the bot's token nor a client secret";
        Err(Rejection::new(
            CloseCode::AuthenticationFailed,
            "d.token",
            rule,
        ))
    }
}

fn check_identify(config: &ProxyConfig, identify: &Identify) -> Result<(), Rejection> {
    let (id, total) = identify.shard.map_or((0, 1), |s| (s.number(), s.total()));
    if total < config.shards {
        let rule = format!("{total} shards, where the bot has {}", config.shards);
        return Err(Rejection::new(CloseCode::ShardingRequired, "d.shard", rule));
    }
    if total > config.shards || !config.range.contains(&id) {
        let rule = format!(
            "[{id}, {total}] is not a shard this proxy serves ({:?} of {})",
            config.range, config.shards
        );
        return Err(Rejection::new(CloseCode::InvalidShard, "d.shard", rule));
    }
    let beyond = identify.intents & !config.intents;
    if !beyond.is_empty() {
        let rule = format!("{beyond:?} not among the upstream's intents");
        return Err(Rejection::new(
            CloseCode::DisallowedIntents,
            "d.intents",
            rule,
        ));
    }
    Ok(())
}

impl ProxyCore {
    /// A client's frame, read by its server side and judged by [`admit`].
    pub(super) fn client_frame(
        &mut self,
        now: Instant,
        client: ClientId,
        frame: gateway_server::Frame,
    ) {
        let config = &self.config;
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        if let Inbound::Command { command, .. } =
            c.conn.handle_frame(now, frame, |cmd| admit(config, cmd))
        {
            self.command(now, client, command);
        }
    }

    fn command(&mut self, now: Instant, client: ClientId, command: Command) {
        let session = self.clients.get(&client).and_then(|c| c.session.clone());
        match (command, session) {
            (Command::Heartbeat(_), _) => {}
            (Command::Identify(identify), _) => self.identify(now, client, &identify),
            (Command::Resume(resume), _) => {
                self.resume(now, client, &resume.session_id, resume.seq)
            }
            (command, Some(session)) => self.forward(now, client, &session, command),
            // The server side lets no other command through before IDENTIFY or RESUME.
            (_, None) => {}
        }
    }

    fn identify(&mut self, now: Instant, client: ClientId, identify: &Identify) {
        let shard = identify.shard.map_or(0, |s| s.number());
        let id = self.next_session_id();
        let session = ClientSession::new(Arc::clone(&id), shard, identify.intents, client);
        self.sessions.insert(Arc::clone(&id), session);
        if let Some(c) = self.clients.get_mut(&client) {
            c.session = Some(Arc::clone(&id));
            c.conn.set_authenticated(true);
        }
        tracing::debug!(client, shard, session = %id, "client identified");
        match self.shards.get_mut(&shard) {
            Some(state) if state.is_ready() => self.start(now, &id),
            Some(state) => state.waiting.push(id),
            None => {}
        }
    }

    /// A new session's start: READY, then a GUILD_CREATE per available cached guild (shaped by
    /// the session's intents, as Discord shapes it) as the send window allows, each as the
    /// cache has it when it goes, then the live stream from READY's place in the log (less what
    /// those GUILD_CREATEs already hold).
    pub(super) fn start(&mut self, now: Instant, session: &Arc<str>) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let (Some(state), Some(client)) = (self.shards.get_mut(&s.shard), s.client) else {
            return;
        };
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let head = state.log.next_pos();
        let Some(ready) = state.ready_json(session, &self.config.url) else {
            return;
        };
        c.conn
            .send_dispatch("READY", s.synthetic(head, true), &ready);
        s.recorded_at = Some(now);
        s.pending = state
            .cache
            .guilds()
            .filter(|(_, slot)| matches!(slot, Slot::Available(_)))
            .map(|(id, _)| id)
            .collect();
        state.attached.insert(Arc::clone(session));
        self.flush(now, client);
        self.catch_up(now, session);
    }

    fn resume(&mut self, now: Instant, client: ClientId, id: &str, seq: u64) {
        if !self.sessions.contains_key(id) {
            self.take_shared(now, id);
        }
        let from = self.sessions.get(id).and_then(|s| {
            let log = &self.shards.get(&s.shard)?.log;
            Some((s.resume_from(seq, log), s.client))
        });
        let pos = match from {
            Some((ResumeFrom::Pos(pos), holder)) => {
                if let Some(old) = holder.filter(|h| *h != client) {
                    self.supersede(now, old);
                }
                pos
            }
            Some((ResumeFrom::Future, _)) => {
                let rule = "RESUME with a sequence number never sent";
                return self.refuse(now, client, CloseCode::InvalidSeq, "d.seq", rule);
            }
            Some((ResumeFrom::Gone, _)) | None => return self.invalid_session(now, client, id),
        };
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(state) = self.shards.get_mut(&s.shard) else {
            return;
        };
        s.rewind(seq, pos);
        s.client = Some(client);
        s.detached_at = None;
        s.resuming = true;
        s.recorded_at = Some(now);
        c.session = Some(Arc::clone(&s.id));
        c.conn.set_authenticated(true);
        state.attached.insert(Arc::clone(&s.id));
        let session = Arc::clone(&s.id);
        self.catch_up(now, &session);
    }

    /// A RESUME of a session that is gone (or whose replay is no longer in the log): op 9
    /// `false` after what is queued, then a close with 4007, so every library starts a new
    /// session (with the proxy: no upstream IDENTIFY).
    pub(super) fn invalid_session(&mut self, now: Instant, client: ClientId, id: &str) {
        tracing::debug!(client, session = %id, "client RESUME outside the log: op 9");
        if let Some(session) = self.sessions.get(id).map(|s| Arc::clone(&s.id)) {
            self.end_session(&session);
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.conn.send(&envelope::invalid_session(false));
            c.conn.close(CloseCode::InvalidSeq.as_u16());
        }
        self.flush(now, client);
    }

    /// Another connection resumed `old`'s session: `old` is closed with 4000 (its session
    /// lives on, on the new connection).
    fn supersede(&mut self, now: Instant, old: ClientId) {
        if let Some(c) = self.clients.get_mut(&old) {
            c.session = None;
            c.conn.close(CloseCode::UnknownError.as_u16());
        }
        self.flush(now, old);
    }

    fn refuse(
        &mut self,
        now: Instant,
        client: ClientId,
        code: CloseCode,
        field: &'static str,
        rule: &str,
    ) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.conn.refuse(&Rejection::new(code, field, rule));
        }
        self.flush(now, client);
    }

    /// A command for upstream, within the client's share of its shard's budget.
    fn forward(&mut self, now: Instant, client: ClientId, session: &Arc<str>, command: Command) {
        let limit = self.config.forwarded_per_minute;
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        while s
            .forwarded
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            s.forwarded.pop_front();
        }
        s.forwarded.push_back(now);
        if s.forwarded.len() > limit {
            let rule = format!("over {limit} commands for the shard in 60 s");
            return self.refuse(now, client, CloseCode::RateLimited, "op", &rule);
        }
        let (home, intents) = (s.shard, s.intents);
        match command {
            Command::UpdatePresence(p) => match self.config.presence {
                PresencePolicy::LastWriterWins => self.upstream(home, Command::UpdatePresence(p)),
                PresencePolicy::Ignore => tracing::debug!(session = %session, "presence ignored"),
            },
            Command::UpdateVoiceState(v) => {
                if let Some(shard) = self.shard_of(v.guild_id.get()) {
                    self.requests.voice(session, v.guild_id.get());
                    self.upstream(shard, Command::UpdateVoiceState(v));
                }
            }
            Command::RequestGuildMembers(r) => self.members(now, session, home, intents, r),
            Command::RequestSoundboardSounds(mut r) => {
                r.guild_ids.retain(|g| self.shard_of(g.get()).is_some());
                for guild in &r.guild_ids {
                    self.requests.soundboard(session, guild.get());
                }
                if let Some(shard) = r.guild_ids.first().and_then(|g| self.shard_of(g.get())) {
                    self.upstream(shard, Command::RequestSoundboardSounds(r));
                }
            }
            Command::RequestChannelInfo(r) => {
                if let Some(shard) = self.shard_of(r.guild_id.get()) {
                    self.requests.channel_info(session, r.guild_id.get());
                    self.upstream(shard, Command::RequestChannelInfo(r));
                }
            }
            _ => {}
        }
    }

    fn members(
        &mut self,
        now: Instant,
        session: &Arc<str>,
        home: u32,
        intents: Intents,
        r: RequestGuildMembers,
    ) {
        let guild = r.guild_id().get();
        let Some(shard) = self.shard_of(guild) else {
            return;
        };
        if let Err(missing) = r.check_intents(intents) {
            tracing::debug!(session = %session, ?missing, "member request without its intent: ignored, as Discord does");
            return;
        }
        let theirs = r.nonce().map(str::to_owned);
        match self
            .requests
            .member(now, session, guild, r.is_full_list(), theirs.clone())
        {
            MemberPlan::Send(ours) => {
                if r.is_full_list() && self.config.share_sessions {
                    let nonce = ours.clone();
                    (self.out).push_back(ProxyOutput::MembersAsked { guild, nonce });
                }
                match r.with_nonce(ours) {
                    Ok((ours, _)) => self.upstream(shard, Command::RequestGuildMembers(ours)),
                    Err(e) => tracing::error!(error = %e, "proxy nonce refused"),
                }
            }
            MemberPlan::Joined => {}
            MemberPlan::Limited(wait) => {
                let nonce = theirs.and_then(|n| sonic_rs::to_string(&n).ok());
                let d = format!(
                    r#"{{"opcode":8,"retry_after":{:.3},"meta":{{"guild_id":"{guild}"{}}}}}"#,
                    wait.as_secs_f64(),
                    nonce
                        .map(|n| format!(r#","nonce":{n}"#))
                        .unwrap_or_default()
                );
                if let Some(state) = self.shards.get_mut(&home) {
                    state.log.push(
                        now,
                        "RATE_LIMITED".into(),
                        d.into(),
                        Intents::empty(),
                        Some(Arc::clone(session)),
                        None,
                    );
                }
                self.deliver(now, home);
            }
        }
    }

    fn upstream(&mut self, shard: u32, command: Command) {
        self.out.push_back(ProxyOutput::Upstream { shard, command });
    }
}
