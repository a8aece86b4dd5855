//! Requests clients make through the shared shard, and where their answers go: member requests
//! (op 8) under proxy-unique nonces, with the all-members limit of one per guild per 30 s kept
//! for the whole bot; soundboard (op 31) and channel info (op 43) requests by guild; and the
//! voice server of a guild, for the client that last asked to join it (op 4).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a member request waits for its last chunk before its nonce is forgotten.
const MEMBER_REQUEST_TTL: Duration = Duration::from_secs(120);
/// The all-members limit (Discord's, per bot): one per guild per this long.
pub(crate) const FULL_REQUEST_INTERVAL: Duration = Duration::from_secs(30);

/// Who asked for one upstream member request, with the nonce each of them gave.
#[derive(Debug)]
struct MemberRequest {
    guild: u64,
    sent: Instant,
    askers: Vec<(Arc<str>, Option<String>)>,
}

/// What to do with a client's member request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberPlan {
    /// Send it upstream with this nonce.
    Send(String),
    /// An all-members request for the guild is on its way: its chunks go to this client too.
    Joined,
    /// The all-members limit is spent: answer RATE_LIMITED with this wait.
    Limited(Duration),
}

/// The pending requests and the routes of their answers.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Tells this proxy's nonces from another's: proxies on one Redis see every chunk of the
    /// shards they share, each keeping the answers to its own.
    tag: String,
    next_nonce: u64,
    members: BTreeMap<String, MemberRequest>,
    /// The last all-members request per guild: when, and its nonce while it is open.
    full: BTreeMap<u64, (Instant, Option<String>)>,
    soundboard: BTreeMap<u64, VecDeque<Arc<str>>>,
    channel_info: BTreeMap<u64, VecDeque<Arc<str>>>,
    voice: BTreeMap<u64, Arc<str>>,
}

impl Requests {
    /// No request yet; this proxy's nonces carry `tag` (at most 8 characters: a nonce is at
    /// most 32 bytes, and the count takes up to 20).
    pub(crate) fn new(tag: String) -> Self {
        Self {
            tag,
            ..Self::default()
        }
    }

    /// This proxy's nonce number `n`: `gp<tag>.<n>`.
    fn nonce(&self, n: u64) -> String {
        format!("gp{}.{n}", self.tag)
    }

    /// Whether `nonce` is one of this proxy's ([`Requests::nonce`]).
    fn is_ours(&self, nonce: &str) -> bool {
        (nonce.strip_prefix("gp"))
            .and_then(|rest| rest.strip_prefix(self.tag.as_str()))
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// A member request from `session` for `guild` (`full`: all members), with the client's
    /// own nonce.
    pub(crate) fn member(
        &mut self,
        now: Instant,
        session: &Arc<str>,
        guild: u64,
        full: bool,
        nonce: Option<String>,
    ) -> MemberPlan {
        if full && let Some((at, open)) = self.full.get(&guild) {
            let since = now.saturating_duration_since(*at);
            if let Some(open) = open.as_ref().and_then(|n| self.members.get_mut(n)) {
                open.askers.push((Arc::clone(session), nonce));
                return MemberPlan::Joined;
            }
            if since < FULL_REQUEST_INTERVAL {
                return MemberPlan::Limited(FULL_REQUEST_INTERVAL - since);
            }
        }
        self.next_nonce += 1;
        let ours = self.nonce(self.next_nonce);
        self.members.insert(
            ours.clone(),
            MemberRequest {
                guild,
                sent: now,
                askers: vec![(Arc::clone(session), nonce)],
            },
        );
        if full {
            self.full.insert(guild, (now, Some(ours.clone())));
        }
        MemberPlan::Send(ours)
    }

    /// Another process's all-members request for `guild`, under its `nonce`, sent `age` ago:
    /// its chunks reach this process too (from the shard's stream), so askers here join it,
    /// and the guild's window is spent for 30 s from it. One of this process's own, or one
    /// for a guild with a request open here, changes nothing.
    pub(crate) fn foreign_full(&mut self, now: Instant, guild: u64, nonce: String, age: Duration) {
        let sent = now.checked_sub(age).unwrap_or(now);
        let ours = self.is_ours(&nonce);
        let open_here = self.full.get(&guild).is_some_and(|(at, open)| {
            open.is_some() || now.saturating_duration_since(*at) < FULL_REQUEST_INTERVAL
        });
        if ours || open_here || age >= FULL_REQUEST_INTERVAL {
            return;
        }
        self.full.insert(guild, (sent, Some(nonce.clone())));
        let askers = Vec::new();
        (self.members).insert(
            nonce,
            MemberRequest {
                guild,
                sent,
                askers,
            },
        );
    }

    /// The askers of the request under our nonce `ours`; `last` (the last chunk, or a
    /// RATE_LIMITED) forgets it.
    pub(crate) fn member_answer(
        &mut self,
        ours: &str,
        last: bool,
    ) -> Vec<(Arc<str>, Option<String>)> {
        let askers = match self.members.get(ours) {
            Some(r) => r.askers.clone(),
            None => return Vec::new(),
        };
        if last && let Some(r) = self.members.remove(ours) {
            self.close_full(r.guild, ours);
        }
        askers
    }

    /// The upstream limited the request under `ours`: the all-members window is spent.
    fn close_full(&mut self, guild: u64, ours: &str) {
        if let Some((_, open)) = self.full.get_mut(&guild)
            && open.as_deref() == Some(ours)
        {
            *open = None;
        }
    }

    /// Op 31 for `guild` from `session`.
    pub(crate) fn soundboard(&mut self, session: &Arc<str>, guild: u64) {
        self.soundboard
            .entry(guild)
            .or_default()
            .push_back(Arc::clone(session));
    }

    /// Who gets SOUNDBOARD_SOUNDS for `guild` (every session that asked since the last one).
    pub(crate) fn soundboard_answer(&mut self, guild: u64) -> Vec<Arc<str>> {
        self.soundboard
            .remove(&guild)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Op 43 for `guild` from `session`.
    pub(crate) fn channel_info(&mut self, session: &Arc<str>, guild: u64) {
        self.channel_info
            .entry(guild)
            .or_default()
            .push_back(Arc::clone(session));
    }

    /// Who gets CHANNEL_INFO for `guild`.
    pub(crate) fn channel_info_answer(&mut self, guild: u64) -> Vec<Arc<str>> {
        self.channel_info
            .remove(&guild)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Op 4 for `guild` from `session`: its VOICE_SERVER_UPDATE goes to that session alone.
    pub(crate) fn voice(&mut self, session: &Arc<str>, guild: u64) {
        self.voice.insert(guild, Arc::clone(session));
    }

    /// Who gets VOICE_SERVER_UPDATE for `guild`.
    pub(crate) fn voice_answer(&self, guild: u64) -> Option<Arc<str>> {
        self.voice.get(&guild).cloned()
    }

    /// Forgets member requests whose chunks never finished, and all-members windows past.
    pub(crate) fn expire(&mut self, now: Instant) {
        let stale: Vec<(String, u64)> = self
            .members
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.sent) > MEMBER_REQUEST_TTL)
            .map(|(n, r)| (n.clone(), r.guild))
            .collect();
        for (nonce, guild) in stale {
            self.members.remove(&nonce);
            self.close_full(guild, &nonce);
        }
        self.full.retain(|_, (at, open)| {
            open.is_some() || now.saturating_duration_since(*at) < FULL_REQUEST_INTERVAL
        });
    }

    /// Open member requests.
    pub(crate) fn open_member_requests(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_all_members_request_goes_up_once_per_guild_per_30_s() {
        let now = Instant::now();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut r = Requests::default();
        let MemberPlan::Send(ours) = r.member(now, &a, 1, true, Some("mine".into())) else {
            panic!("first goes up")
        };
        assert_eq!(r.member(now, &b, 1, true, None), MemberPlan::Joined);
        let askers = r.member_answer(&ours, true);
        assert_eq!(
            askers,
            vec![(a.clone(), Some("mine".into())), (b.clone(), None)]
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(
            r.member(later, &b, 1, true, None),
            MemberPlan::Limited(Duration::from_secs(20))
        );
        assert!(
            matches!(r.member(later, &b, 1, false, None), MemberPlan::Send(_)),
            "a query is not limited"
        );
        assert!(matches!(
            r.member(now + FULL_REQUEST_INTERVAL, &b, 1, true, None),
            MemberPlan::Send(_)
        ));
        assert!(ours.len() <= 32);
    }

    #[test]
    fn answers_by_guild_go_to_who_asked() {
        let mut r = Requests::default();
        let a: Arc<str> = "a".into();
        r.soundboard(&a, 5);
        r.voice(&a, 5);
        assert_eq!(r.soundboard_answer(5), vec![a.clone()]);
        assert!(r.soundboard_answer(5).is_empty());
        assert_eq!(r.voice_answer(5), Some(a));
    }
}
