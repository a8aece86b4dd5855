//! Sessions shared between proxy processes on one cluster ([`ProxyConfig::share_sessions`]):
//! each session is written down ([`ProxyOutput::SessionSaved`]) when it leaves its connection,
//! and while on one once it settles and every 30 s, in upstream positions, which every process
//! reading the shard's stream shares; the records
//! other processes wrote come in through [`ProxyCore::handle_shared_session`], and a RESUME of
//! a session this process does not hold takes it from them. On shutdown every session is
//! written down before its client is closed to resume, wherever it reconnects.
//!
//! [`ProxyConfig::share_sessions`]: crate::ProxyConfig::share_sessions

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::ClientSession;
use super::{ClientId, ProxyCore, ProxyOutput};
use crate::record::SessionRecord;

/// How long a session on a connection goes unwritten after it was sent what other processes
/// cannot count (a burst: a start's GUILD_CREATEs, member chunks): one record for the burst.
pub(super) const RECORD_SETTLE: Duration = Duration::from_millis(100);
/// How often a session on a connection is written down again, so that its place stays in the
/// other processes' logs.
pub(super) const RECORD_REFRESH: Duration = Duration::from_secs(30);

/// Other processes' sessions, until they expire.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Each record with when it expires and when it was read.
    records: std::collections::HashMap<Arc<str>, (SessionRecord, Instant, Instant)>,
    /// Ids by expiry, as written (a record written again leaves a stale item, skipped).
    expiries: VecDeque<(Instant, Arc<str>)>,
}

impl Shared {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.front().map(|(at, _)| *at)
    }
}

impl ProxyCore {
    /// Upstream entries are numbered (a cluster's stream positions): the next one of shard
    /// `shard` is at `pos`. Proxies reading one stream then agree on where each session
    /// stands, and take each other's RESUMEs.
    pub fn handle_upstream_at(&mut self, shard: u32, pos: u64) {
        if let Some(state) = self.shards.get_mut(&shard) {
            state.next_upstream = pos;
        }
    }

    /// Another process wrote session `record` down: it may be resumed here. One this process
    /// has on a connection stays as it is.
    pub fn handle_shared_session(&mut self, now: Instant, record: SessionRecord) {
        if record.origin == self.config.seed {
            return; // its own, read back
        }
        let id: Arc<str> = record.id.as_str().into();
        if let Some(local) = self.sessions.get(&id) {
            if local.client.is_some() {
                return;
            }
            // Resumed elsewhere since it left here: the record is newer.
            self.drop_session(&id);
        }
        if !self.shards.contains_key(&record.shard) {
            return;
        }
        while self.shared.records.len() >= self.config.max_shared_sessions.max(1) {
            let Some((at, oldest)) = self.shared.expiries.pop_front() else {
                break;
            };
            if self
                .shared
                .records
                .get(&oldest)
                .is_some_and(|(_, e, _)| *e == at)
            {
                self.shared.records.remove(&oldest);
            }
        }
        let expires = now + Duration::from_millis(record.ttl_ms);
        self.shared.expiries.push_back((expires, Arc::clone(&id)));
        self.shared.records.insert(id, (record, expires, now));
    }

    /// Another process sent an all-members request for `guild` upstream under `nonce`, `age`
    /// ago ([`ProxyOutput::MembersAsked`]): askers here join it until its last chunk, and none
    /// goes upstream for the guild within 30 s of it.
    pub fn handle_shared_members_request(
        &mut self,
        now: Instant,
        guild: u64,
        nonce: String,
        age: Duration,
    ) {
        self.requests.foreign_full(now, guild, nonce, age);
    }

    /// Another process ended session `id` (closed with 1000, expired, or invalid).
    pub fn handle_shared_session_ended(&mut self, id: &str) {
        self.shared.records.remove(id);
        if self.sessions.get(id).is_some_and(|s| s.client.is_none()) {
            let id: Arc<str> = id.into();
            self.drop_session(&id);
        }
    }

    /// The proxy stops: every client is closed with 4000 after what was sent to it, and its
    /// session written down (when shared), to resume here or on another process. A driver
    /// posts the records before it carries out the closes, so that a client that reconnects
    /// at once finds its session wherever it lands.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let clients: Vec<ClientId> = self.clients.keys().copied().collect();
        for client in clients {
            if let Some(c) = self.clients.get_mut(&client) {
                c.conn
                    .close(gateway_model::CloseCode::UnknownError.as_u16());
            }
            self.flush(now, client);
        }
    }

    /// Session `id` left its connection: written down for the other processes.
    pub(super) fn share_detached(&mut self, now: Instant, id: &Arc<str>) {
        if !self.config.share_sessions {
            return;
        }
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let Some(state) = self.shards.get(&s.shard) else {
            return;
        };
        let ttl = u64::try_from(self.config.session_ttl.as_millis()).unwrap_or(u64::MAX);
        match s.to_record(&state.log, ttl, self.config.seed, now) {
            Some(record) => self.out.push_back(ProxyOutput::SessionSaved(record)),
            None => tracing::debug!(session = %id, "session outside the log: not shared"),
        }
    }

    /// Sessions on a connection are written down too, so that their clients resume on
    /// another process if this one dies without a word (SIGKILL): once each settles after
    /// being sent what the others cannot count from their logs (its start, its RESUMED, an
    /// answer to it alone), and every [`RECORD_REFRESH`] so that the place stays in their
    /// logs. Such a record stays resumable for the session TTL after the next refresh would
    /// have come.
    pub(super) fn share_live(&mut self, now: Instant) {
        if !self.config.share_sessions {
            return;
        }
        let ttl = self.config.session_ttl + RECORD_REFRESH;
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        for s in self.sessions.values_mut() {
            if s.record_due(RECORD_SETTLE, RECORD_REFRESH)
                .is_none_or(|at| at > now)
            {
                continue;
            }
            s.recorded_at = Some(now);
            s.changed = false;
            let Some(state) = self.shards.get(&s.shard) else {
                continue;
            };
            if let Some(record) = s.to_record(&state.log, ttl, self.config.seed, now) {
                self.out.push_back(ProxyOutput::SessionSaved(record));
            }
        }
    }

    /// Session `id` ended here: the other processes forget it too.
    pub(super) fn share_ended(&mut self, id: &str) {
        if self.config.share_sessions {
            self.out
                .push_back(ProxyOutput::SessionEnded { id: id.to_owned() });
        }
    }

    /// A RESUME of `id`, which this process does not hold: taken from another process's
    /// record, detached, if its place is in the log here. Whether it now holds it.
    pub(super) fn take_shared(&mut self, now: Instant, id: &str) -> bool {
        let Some((record, expires, read_at)) = self.shared.records.remove(id) else {
            return false;
        };
        let Some(state) = self.shards.get(&record.shard) else {
            return false;
        };
        // It expires here when it would have there.
        let detached_at = expires.checked_sub(self.config.session_ttl).unwrap_or(now);
        let Some(session) = ClientSession::from_record(&record, &state.log, detached_at, read_at)
        else {
            tracing::debug!(session = %id, "shared session outside the log here");
            return false;
        };
        let id = Arc::clone(&session.id);
        self.sessions.insert(Arc::clone(&id), session);
        // Taken: the others forget it.
        self.share_ended(&id);
        true
    }

    /// Forgets other processes' sessions past their TTL.
    pub(super) fn expire_shared(&mut self, now: Instant) {
        while let Some((at, id)) = self.shared.expiries.front() {
            if *at > now {
                break;
            }
            if self.shared.records.get(id).is_some_and(|(_, e, _)| e == at) {
                self.shared.records.remove(id);
            }
            self.shared.expiries.pop_front();
        }
    }
}
