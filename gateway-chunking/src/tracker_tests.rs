use std::time::{Duration, Instant};

use gateway_model::{
    GuildCreate, GuildDelete, GuildMembersChunk, Intents, OpCode, PartialApplication, RateLimited,
    RateLimitedMeta, RawJson, Ready, RequestGuildMembers, Snowflake, UnavailableGuild, User,
};
use gateway_shard::Reconnect;

use super::*;

/// A guild id on `shard` of `count`.
fn guild_on(shard: u32, count: u32, n: u64) -> Snowflake {
    (1..)
        .map(|i| Snowflake::new((n * 1_000_000 + i) << 22))
        .find(|g| g.shard_index(count) == shard)
        .unwrap()
}

fn ready(guilds: &[Snowflake]) -> Ready {
    Ready {
        v: Some(10),
        user: User {
            id: Snowflake::new(1),
            username: "bot".into(),
            discriminator: None,
            global_name: None,
            avatar: None,
            bot: true,
        },
        guilds: guilds
            .iter()
            .map(|&id| UnavailableGuild {
                id,
                unavailable: true,
            })
            .collect(),
        session_id: "s".into(),
        resume_gateway_url: "ws://x".into(),
        shard: None,
        application: PartialApplication {
            id: Snowflake::new(2),
            flags: 0,
        },
        raw: None,
    }
}

fn create(id: Snowflake, large: bool) -> GuildCreate {
    GuildCreate::from_json(&format!(
        r#"{{"id":"{id}","large":{large},"member_count":5000}}"#
    ))
    .unwrap()
}

fn chunk(guild: Snowflake, nonce: &str, index: u32, count: u32) -> GuildMembersChunk {
    GuildMembersChunk {
        guild_id: guild,
        members: RawJson::default(),
        chunk_index: index,
        chunk_count: count,
        not_found: Vec::new(),
        presences: None,
        nonce: Some(nonce.to_owned()),
    }
}

struct H {
    t: Tracker,
    now: Instant,
    sent: Vec<(u32, RequestGuildMembers)>,
    events: Vec<ChunkEvent>,
}

impl H {
    fn new(shards: u32, auto: bool) -> Self {
        let mut c = TrackerConfig::new(shards, 0..shards, Intents::GUILDS | Intents::GUILD_MEMBERS);
        c.auto_chunk = auto;
        // Replayable nonces.
        c.seed = 0;
        Self {
            t: Tracker::new(c),
            now: Instant::now(),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.t.poll_output(self.now) {
            match output {
                TrackerOutput::Send { shard, request } => self.sent.push((shard, request)),
                TrackerOutput::Event(e) => self.events.push(e),
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.t.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.t.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.drain();
    }

    /// READY with the one large guild `g`, then its GUILD_CREATE: a session that auto-chunks
    /// it. Returns the nonce asked for, if a request went out.
    fn session_with(&mut self, g: Snowflake) -> Option<String> {
        self.t.handle_ready(self.now, 0, &ready(&[g]));
        self.t.handle_guild_create(self.now, 0, &create(g, true));
        self.drain();
        self.sent
            .iter()
            .rev()
            .find(|(_, r)| r.guild_id() == g)
            .and_then(|(_, r)| r.nonce())
            .map(str::to_owned)
    }

    fn nonce_for(&self, guild: Snowflake) -> String {
        self.sent
            .iter()
            .rev()
            .find(|(_, r)| r.guild_id() == guild)
            .and_then(|(_, r)| r.nonce())
            .unwrap()
            .to_owned()
    }

    fn finished(&self) -> Vec<&ChunkRequestFinished> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ChunkEvent::RequestFinished(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn shard_finished(&self) -> Vec<(u32, Vec<Snowflake>, Vec<Snowflake>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ChunkEvent::ShardFinishedChunking {
                    shard,
                    incomplete_guild_ids,
                    missed_guild_ids,
                    ..
                } => Some((
                    *shard,
                    incomplete_guild_ids.clone(),
                    missed_guild_ids.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    fn all_finished(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, ChunkEvent::FinishedChunking { .. }))
            .count()
    }
}

#[test]
fn several_identify_windows_finish_once_after_the_last_shard() {
    let mut h = H::new(4, true);
    for shard in 0..2 {
        let g = guild_on(shard, 4, 1);
        h.t.handle_ready(h.now, shard, &ready(&[g]));
        h.t.handle_guild_create(h.now, shard, &create(g, false));
    }
    h.drain();
    assert_eq!(h.shard_finished().len(), 2);
    assert_eq!(
        h.all_finished(),
        0,
        "shards 2 and 3 have not identified yet"
    );
    h.advance(Duration::from_secs(5));
    for shard in 2..4 {
        let g = guild_on(shard, 4, 1);
        h.t.handle_ready(h.now, shard, &ready(&[g]));
        h.t.handle_guild_create(h.now, shard, &create(g, false));
    }
    h.drain();
    assert_eq!(h.all_finished(), 1);
    // A later re-identify finishes its shard again, but never the whole start twice.
    h.t.handle_ready(h.now, 0, &ready(&[]));
    h.drain();
    assert_eq!((h.shard_finished().len(), h.all_finished()), (5, 1));
}

#[test]
fn a_large_guild_finishing_before_the_last_small_guild_create() {
    let mut h = H::new(1, true);
    let (large, small) = (guild_on(0, 1, 1), guild_on(0, 1, 2));
    h.t.handle_ready(h.now, 0, &ready(&[large, small]));
    h.t.handle_guild_create(h.now, 0, &create(large, true));
    h.drain();
    let nonce = h.nonce_for(large);
    h.t.handle_chunk(h.now, 0, &chunk(large, &nonce, 0, 1));
    h.drain();
    assert!(
        h.shard_finished().is_empty(),
        "the small guild has not arrived"
    );
    h.t.handle_guild_create(h.now, 0, &create(small, false));
    h.drain();
    assert_eq!(h.shard_finished(), vec![(0, vec![], vec![])]);
    assert_eq!(h.all_finished(), 1);
}

#[test]
fn a_shard_with_only_small_guilds_or_none_still_finishes() {
    let mut h = H::new(2, true);
    h.t.handle_ready(h.now, 0, &ready(&[]));
    let g = guild_on(1, 2, 1);
    h.t.handle_ready(h.now, 1, &ready(&[g]));
    h.t.handle_guild_create(h.now, 1, &create(g, false));
    h.drain();
    assert!(h.sent.is_empty());
    assert_eq!(h.shard_finished().len(), 2);
    assert_eq!(h.all_finished(), 1);
}

/// Before, a request its shard never took waited out its whole timeout as `NoReply`.
#[test]
fn a_request_that_could_not_be_sent_ends_at_once() {
    let mut h = H::new(1, false);
    let g = guild_on(0, 1, 1);
    let nonce =
        h.t.handle_request(h.now, RequestGuildMembers::builder(g).query("a", 10), g)
            .unwrap();
    h.drain();
    h.t.handle_send_failed(h.now, &nonce);
    h.drain();
    let f = h.finished();
    assert_eq!(
        f.iter().map(|f| f.outcome.clone()).collect::<Vec<_>>(),
        [Outcome::NotSent]
    );
    assert_eq!(h.t.open_requests(), 0);
}

#[test]
fn single_chunk_duplicates_and_out_of_range() {
    let mut h = H::new(1, false);
    let g = guild_on(0, 1, 1);
    let nonce =
        h.t.handle_request(h.now, RequestGuildMembers::builder(g).query("a", 10), g)
            .unwrap();
    assert!(nonce.len() <= 32);
    h.drain();
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 5, 2)); // out of range
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 0, 2));
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 0, 2)); // duplicate
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 1, 2));
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 1, 2)); // after the end: ignored
    h.drain();
    let f = h.finished();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (
            f[0].outcome.clone(),
            f[0].duplicate_chunks,
            f[0].out_of_range_chunks
        ),
        (Outcome::Complete, 1, 1)
    );
    assert_eq!(
        h.t.open_requests(),
        0,
        "nothing kept after a request finishes"
    );
}

#[test]
fn timeouts_incomplete_and_no_reply() {
    let mut h = H::new(1, false);
    let (a, b) = (guild_on(0, 1, 1), guild_on(0, 1, 2));
    let na =
        h.t.handle_request(h.now, RequestGuildMembers::builder(a).query("", 0), a)
            .unwrap();
    let _nb =
        h.t.handle_request(h.now, RequestGuildMembers::builder(b).query("x", 1), b)
            .unwrap();
    h.drain();
    h.advance(Duration::from_secs(3));
    let mut c = chunk(a, &na, 0, 3);
    c.not_found = vec![Snowflake::new(9)];
    h.t.handle_chunk(h.now, 0, &c);
    h.t.handle_chunk(h.now, 0, &chunk(a, &na, 2, 3));
    h.advance(Duration::from_millis(4999));
    // b timed out at 5 s with no reply; a's deadline moved with its last chunk.
    assert_eq!(h.finished().len(), 1);
    assert_eq!(h.finished()[0].outcome, Outcome::NoReply);
    h.advance(Duration::from_millis(1));
    let f = h.finished();
    assert_eq!(f[1].outcome, Outcome::Incomplete);
    assert_eq!(f[1].missed_chunks, [1].into_iter().collect());
    assert_eq!(
        f[1].not_found_ids,
        [Snowflake::new(9)].into_iter().collect()
    );
}

#[test]
fn guild_delete_for_a_startup_guild_is_missed() {
    let mut h = H::new(1, true);
    let (a, b) = (guild_on(0, 1, 1), guild_on(0, 1, 2));
    h.t.handle_ready(h.now, 0, &ready(&[a, b]));
    h.t.handle_guild_create(h.now, 0, &create(a, false));
    h.t.handle_guild_delete(
        h.now,
        0,
        GuildDelete {
            id: b,
            unavailable: Some(true),
        },
    );
    h.drain();
    assert_eq!(h.shard_finished(), vec![(0, vec![], vec![b])]);
}

#[test]
fn a_startup_guild_that_never_arrives_is_missed_after_the_timeout() {
    let mut h = H::new(1, true);
    let a = guild_on(0, 1, 1);
    h.t.handle_ready(h.now, 0, &ready(&[a]));
    h.drain();
    h.advance(Duration::from_secs(29));
    assert!(h.shard_finished().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.shard_finished(), vec![(0, vec![], vec![a])]);
}

#[test]
fn rate_limited_auto_requests_retry_after_and_then_finish() {
    let mut h = H::new(1, true);
    let g = guild_on(0, 1, 1);
    let nonce = h.session_with(g).expect("a request went out");
    let limited = RateLimited {
        opcode: OpCode::RequestGuildMembers,
        retry_after: 12.5,
        meta: RateLimitedMeta::RequestGuildMembers {
            guild_id: g,
            nonce: Some(nonce.clone()),
        },
    };
    h.t.handle_rate_limited(h.now, 0, &limited);
    h.drain();
    assert!(
        matches!(h.finished()[0].outcome, Outcome::RateLimited { .. }) && h.finished()[0].retrying
    );
    assert!(
        h.shard_finished().is_empty(),
        "still pending: it will be asked again"
    );
    h.advance(Duration::from_secs(12));
    assert_eq!(h.sent.len(), 1);
    // The 30 s window from the first request also holds.
    h.advance(Duration::from_secs(18));
    assert_eq!(h.sent.len(), 2);
    let retry = h.nonce_for(g);
    assert_ne!(retry, nonce);
    h.t.handle_chunk(h.now, 0, &chunk(g, &retry, 0, 1));
    h.drain();
    assert_eq!(h.shard_finished(), vec![(0, vec![], vec![])]);
    // A user's request that is rate limited just finishes.
    let mut u = H::new(1, false);
    let n =
        u.t.handle_request(u.now, RequestGuildMembers::builder(g).query("", 0), g)
            .unwrap();
    let limited = RateLimited {
        meta: RateLimitedMeta::RequestGuildMembers {
            guild_id: g,
            nonce: Some(n),
        },
        ..limited
    };
    u.t.handle_rate_limited(u.now, 0, &limited);
    u.drain();
    assert!(!u.finished()[0].retrying);
}

#[test]
fn a_disconnect_interrupts_and_a_reidentify_restarts() {
    let mut h = H::new(1, true);
    let (a, b) = (guild_on(0, 1, 1), guild_on(0, 1, 2));
    h.t.handle_ready(h.now, 0, &ready(&[a, b]));
    h.t.handle_guild_create(h.now, 0, &create(a, true));
    h.t.handle_guild_create(h.now, 0, &create(b, true));
    h.drain();
    let na = h.nonce_for(a);
    h.t.handle_chunk(h.now, 0, &chunk(a, &na, 0, 2));
    h.t.handle_disconnect(h.now, 0, Reconnect::Reidentify);
    h.drain();
    let f = h.finished();
    assert!(f.iter().all(|f| f.outcome == Outcome::Interrupted));
    assert_eq!(
        h.shard_finished(),
        vec![(0, vec![a], vec![b])],
        "a had chunks: incomplete; b none: missed"
    );
    // The re-identify's READY starts the shard's chunking anew.
    h.t.handle_ready(h.now, 0, &ready(&[a]));
    h.advance(Duration::from_secs(30));
    h.t.handle_guild_create(h.now, 0, &create(a, true));
    h.drain();
    let n = h.nonce_for(a);
    h.t.handle_chunk(h.now, 0, &chunk(a, &n, 0, 1));
    h.drain();
    assert_eq!(h.shard_finished().len(), 2);
    assert_eq!(h.all_finished(), 1);
}

#[test]
fn requests_need_a_local_shard_and_the_intents() {
    let mut c = TrackerConfig::new(4, [0, 1], Intents::GUILDS);
    c.auto_chunk = true;
    let mut t = Tracker::new(c);
    let now = Instant::now();
    let remote = guild_on(3, 4, 1);
    assert!(matches!(
        t.handle_request(
            now,
            RequestGuildMembers::builder(remote).query("a", 1),
            remote
        ),
        Err(TrackError::NoLocalShard { shard: 3, .. })
    ));
    let local = guild_on(0, 4, 1);
    assert!(matches!(
        t.handle_request(now, RequestGuildMembers::builder(local).query("", 0), local),
        Err(TrackError::MissingIntent(_))
    ));
    // Auto-chunking without GUILD_MEMBERS is ignored (with a warning) and the shard still finishes.
    t.handle_ready(now, 0, &ready(&[local]));
    t.handle_guild_create(now, 0, &create(local, true));
    assert!(
        !std::iter::from_fn(|| t.poll_output(now)).any(|o| matches!(o, TrackerOutput::Send { .. }))
    );
}

/// On 0234392 every config's seed was 0, so a restarted process sent its predecessor's nonces,
/// and chunks still in flight for those were taken for its own.
#[test]
fn each_config_draws_its_own_nonce_seed() {
    let config = || TrackerConfig::new(1, [0], Intents::GUILD_MEMBERS);
    assert_ne!(config().seed, config().seed);
}

proptest::proptest! {
    /// Any interleaving of chunks for several requests gives the same per-request results.
    #[test]
    fn interleavings_do_not_change_results(counts in proptest::collection::vec(1u32..6, 1..5), seed: u64) {
        use rand::seq::SliceRandom;
        let run = |shuffle: Option<u64>| {
            let mut h = H::new(1, false);
            let guilds: Vec<Snowflake> = (0..counts.len()).map(|i| guild_on(0, 1, i as u64 + 1)).collect();
            let nonces: Vec<String> = guilds.iter().map(|&g| h.t.handle_request(h.now, RequestGuildMembers::builder(g).query("a", 5), g).unwrap()).collect();
            let mut chunks: Vec<(usize, u32)> = counts.iter().enumerate().flat_map(|(i, &c)| (0..c).map(move |k| (i, k))).collect();
            if let Some(s) = shuffle {
                chunks.shuffle(&mut ChaCha8Rng::seed_from_u64(s));
            }
            for (i, k) in chunks {
                h.t.handle_chunk(h.now, 0, &chunk(guilds[i], &nonces[i], k, counts[i]));
            }
            h.drain();
            let mut results: Vec<(Snowflake, Outcome, Option<u32>)> = h.finished().iter().map(|f| (f.guild_id, f.outcome.clone(), f.chunk_count)).collect();
            results.sort_by_key(|r| r.0);
            results
        };
        proptest::prop_assert_eq!(run(None), run(Some(seed)));
    }
}

#[test]
fn hostile_retry_after_and_chunk_count_neither_panic_nor_grow() {
    for retry_after in [1e300, f64::INFINITY, f64::NAN, -5.0, 1.8e19] {
        let mut h = H::new(1, true);
        let g = guild_on(0, 1, 1);
        let nonce = h.session_with(g).expect("a request went out");
        let limited = RateLimited {
            opcode: OpCode::RequestGuildMembers,
            retry_after,
            meta: RateLimitedMeta::RequestGuildMembers {
                guild_id: g,
                nonce: Some(nonce),
            },
        };
        h.t.handle_rate_limited(h.now, 0, &limited);
        h.drain();
        let next = h.t.poll_timeout().expect("a retry is scheduled");
        assert!(next <= h.now + MAX_RETRY_AFTER, "{retry_after}");
        h.advance(MAX_RETRY_AFTER);
        assert_eq!(h.sent.len(), 2, "retried within the cap: {retry_after}");
    }

    let mut h = H::new(1, true);
    let g = guild_on(0, 1, 1);
    let nonce = h.session_with(g).expect("a request went out");
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 0, u32::MAX));
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 5, u32::MAX));
    h.drain();
    assert!(h.finished().is_empty(), "a bogus count finishes nothing");
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 0, 1));
    h.drain();
    let finished = h.finished();
    assert_eq!(finished[0].outcome, Outcome::Complete);
    assert_eq!(finished[0].out_of_range_chunks, 2);
}

/// Quick re-identifies while a full request waits out the 30 s window: the new session asks for
/// the guild once, never twice (once for the held request, once for its own GUILD_CREATE).
#[test]
fn a_held_request_never_doubles_after_a_reidentify() {
    let mut h = H::new(1, true);
    let g = guild_on(0, 1, 1);
    // Session 1: the guild is chunked at t = 0.
    let nonce = h.session_with(g).expect("a request went out");
    h.t.handle_chunk(h.now, 0, &chunk(g, &nonce, 0, 1));
    // Session 2 at t = 2: its GUILD_CREATE waits for the window (t = 30).
    h.advance(Duration::from_secs(2));
    h.t.handle_disconnect(h.now, 0, Reconnect::Reidentify);
    h.session_with(g);
    assert_eq!(h.sent.len(), 1);
    // Session 3: a disconnect at t = 10, and READY only at t = 31.
    h.advance(Duration::from_secs(8));
    h.t.handle_disconnect(h.now, 0, Reconnect::Resume);
    h.advance(Duration::from_secs(20));
    assert_eq!(h.sent.len(), 1, "nothing is sent while the shard is down");
    h.t.handle_disconnect(h.now, 0, Reconnect::Reidentify);
    h.advance(Duration::from_secs(1));
    h.session_with(g);
    h.advance(Duration::from_secs(120));
    let requests_in_session_3 = h.sent.len() - 1;
    assert_eq!(requests_in_session_3, 1, "one full download per session");
}

/// A request held while the shard is down goes out once it resumes.
#[test]
fn a_held_request_goes_out_after_resumed() {
    let mut h = H::new(1, true);
    let g = guild_on(0, 1, 1);
    let nonce = h.session_with(g).expect("a request went out");
    let limited = RateLimited {
        opcode: OpCode::RequestGuildMembers,
        retry_after: 5.0,
        meta: RateLimitedMeta::RequestGuildMembers {
            guild_id: g,
            nonce: Some(nonce),
        },
    };
    h.t.handle_rate_limited(h.now, 0, &limited);
    h.t.handle_disconnect(h.now, 0, Reconnect::Resume);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.sent.len(), 1, "held while down");
    h.t.handle_resumed(h.now, 0);
    h.drain();
    assert_eq!(h.sent.len(), 2);
}

#[derive(Debug, Clone)]
enum Hostile {
    Chunk(usize, u32, u32),
    Limited(usize, f64),
    Delete(usize),
    Down(bool),
    Advance(u64),
}

fn hostile() -> impl proptest::strategy::Strategy<Value = Hostile> {
    use proptest::prelude::*;
    prop_oneof![
        (0usize..4, any::<u32>(), any::<u32>()).prop_map(|(g, i, c)| Hostile::Chunk(g, i, c)),
        (
            0usize..4,
            prop_oneof![
                Just(1e300),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(-1.0),
                0.0f64..60.0
            ]
        )
            .prop_map(|(g, r)| Hostile::Limited(g, r)),
        (0usize..4).prop_map(Hostile::Delete),
        any::<bool>().prop_map(Hostile::Down),
        (0u64..200_000).prop_map(Hostile::Advance),
    ]
}

proptest::proptest! {
    /// Chunks with any index and count, RATE_LIMITED with any retry_after, GUILD_DELETEs and
    /// disconnects in any order: no panic, no more open requests than guilds, and no timeout that
    /// is due again right after it was handled (no spin).
    #[test]
    fn extreme_values_in_any_order(steps in proptest::collection::vec(hostile(), 1..80)) {
        let mut h = H::new(1, true);
        let guilds: Vec<Snowflake> = (0..4).map(|i| guild_on(0, 1, i + 1)).collect();
        h.t.handle_ready(h.now, 0, &ready(&guilds));
        for &g in &guilds {
            h.t.handle_guild_create(h.now, 0, &create(g, true));
        }
        h.drain();
        for step in steps {
            let nonce = |h: &H, g: usize| h.sent.iter().rev().find(|(_, r)| r.guild_id() == guilds[g]).and_then(|(_, r)| r.nonce()).unwrap_or("none").to_owned();
            match step {
                Hostile::Chunk(g, index, count) => {
                    let n = nonce(&h, g);
                    h.t.handle_chunk(h.now, 0, &chunk(guilds[g], &n, index, count));
                }
                Hostile::Limited(g, retry_after) => {
                    let limited = RateLimited {
                        opcode: OpCode::RequestGuildMembers,
                        retry_after,
                        meta: RateLimitedMeta::RequestGuildMembers { guild_id: guilds[g], nonce: Some(nonce(&h, g)) },
                    };
                    h.t.handle_rate_limited(h.now, 0, &limited);
                }
                Hostile::Delete(g) => h.t.handle_guild_delete(h.now, 0, GuildDelete { id: guilds[g], unavailable: Some(true) }),
                Hostile::Down(true) => h.t.handle_disconnect(h.now, 0, Reconnect::Resume),
                Hostile::Down(false) => h.t.handle_resumed(h.now, 0),
                Hostile::Advance(ms) => h.advance(Duration::from_millis(ms)),
            }
            h.drain();
            h.t.handle_timeout(h.now);
            h.drain();
            proptest::prop_assert!(h.t.poll_timeout().is_none_or(|at| at > h.now), "due again at once");
            proptest::prop_assert!(h.t.open_requests() <= guilds.len());
        }
    }
}
