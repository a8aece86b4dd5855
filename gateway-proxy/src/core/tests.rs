//! The proxy core on a hand-moved clock: upstream dispatches in, clients' frames in, and what
//! each client was sent read back as JSON.

use std::time::{Duration, Instant};

use gateway_model::{Command, Intents, Token};
use gateway_server::{Frame, Transmit};
use serde_json::{Value, json};

use super::*;

const TOKEN: &str = "bot-token";
/// Two guilds on shard 0 of 2 (ids with (id >> 22) % 2 == 0).
const G1: u64 = 4 << 22;
const G2: u64 = 6 << 22;

struct Harness {
    core: ProxyCore,
    now: Instant,
    outputs: Vec<ProxyOutput>,
    /// The next upstream entry's position (a cluster's stream position).
    upstream_pos: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// A proxy process on a cluster, its sessions shared, with `seed`.
    fn sharing(seed: u64) -> Self {
        Self::with(|c| {
            c.share_sessions = true;
            c.seed = seed;
        })
    }

    fn with(tune: impl FnOnce(&mut ProxyConfig)) -> Self {
        let mut config = ProxyConfig::new(
            Token::new(TOKEN),
            2,
            Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_MESSAGES,
            "ws://127.0.0.1:7878",
        );
        config.range = 0..1;
        config.forwarded_per_minute = 5;
        tune(&mut config);
        let now = Instant::now();
        let mut h = Self {
            core: ProxyCore::new(config),
            now,
            outputs: Vec::new(),
            upstream_pos: 1,
        };
        let ready = json!({
            "v": 10, "user": {"id": "1", "username": "bot", "flags": 0},
            "guilds": [{"id": G1.to_string(), "unavailable": true}, {"id": G2.to_string(), "unavailable": true}],
            "session_id": "upstream", "resume_gateway_url": "wss://discord", "shard": [0, 2],
            "application": {"id": "1", "flags": 0}
        });
        h.core.handle_upstream_ready(
            now,
            0,
            UpstreamReady {
                data: ready.to_string(),
            },
        );
        h.upstream("GUILD_CREATE", &guild(G1));
        h
    }

    fn upstream(&mut self, name: &str, d: &Value) {
        self.core.handle_upstream_at(0, self.upstream_pos);
        self.upstream_pos += 1;
        self.core
            .handle_upstream_dispatch(self.now, 0, name, &d.to_string());
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.core.poll_output(self.now) {
            self.outputs.push(o);
        }
    }

    fn open(&mut self, client: ClientId) {
        self.core
            .handle_open(self.now, client, "v=10&encoding=json");
        self.drain();
    }

    fn send(&mut self, client: ClientId, payload: Value) {
        let frame = Frame::Text(payload.to_string());
        self.core.handle_frame(self.now, client, frame);
        self.drain();
    }

    fn identify(&mut self, client: ClientId, intents: Intents) {
        self.open(client);
        self.send(client, identify(intents));
    }

    /// Everything sent to `client` so far (and forgotten), as JSON; a close as `{"close": code}`.
    fn sent(&mut self, client: ClientId) -> Vec<Value> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            ProxyOutput::Client {
                client: c,
                transmit,
            } if *c == client => {
                match transmit {
                    Transmit::Frames(frames) => out.extend(frames.iter().map(|f| match f {
                        Frame::Text(t) => serde_json::from_str(t).unwrap(),
                        Frame::Binary(_) => panic!("binary"),
                    })),
                    Transmit::Close { code, .. } => out.push(json!({ "close": code })),
                    Transmit::Drop => out.push(json!("drop")),
                }
                false
            }
            ProxyOutput::Abort { client: c, code } if *c == client => {
                out.push(json!({ "abort": code }));
                false
            }
            _ => true,
        });
        out
    }

    /// The sessions it wrote down for other processes.
    fn saved(&mut self) -> Vec<SessionRecord> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            ProxyOutput::SessionSaved(record) => {
                out.push(record.clone());
                false
            }
            _ => true,
        });
        out
    }

    /// Moves the clock on and runs the timers.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.core.handle_timeout(self.now);
        self.drain();
    }

    fn upstream_commands(&mut self) -> Vec<(u32, Command)> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            ProxyOutput::Upstream { shard, command } => {
                out.push((*shard, command.clone()));
                false
            }
            _ => true,
        });
        out
    }

    fn dispatches(&mut self, client: ClientId) -> Vec<(u64, String, Value)> {
        self.sent(client)
            .into_iter()
            .filter(|p| p["op"] == 0)
            .map(|p| {
                (
                    p["s"].as_u64().unwrap(),
                    p["t"].as_str().unwrap().to_owned(),
                    p["d"].clone(),
                )
            })
            .collect()
    }
}

fn guild(id: u64) -> Value {
    json!({"id": id.to_string(), "name": "g", "member_count": 1, "channels": [{"id": "10", "type": 0}],
           "members": [{"user": {"id": "1"}, "roles": []}], "roles": [], "extra": {"kept": true}})
}

fn identify(intents: Intents) -> Value {
    json!({"op": 2, "d": {"token": format!("Bot {TOKEN}"), "properties": {}, "intents": intents.bits(), "shard": [0, 2]}})
}

fn message(n: u64) -> Value {
    json!({"id": n.to_string(), "channel_id": "10", "guild_id": G1.to_string(), "content": "x"})
}

#[test]
fn a_client_gets_ready_with_every_guild_then_the_cache_then_live_in_one_sequence() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS | Intents::GUILD_MESSAGES);
    let sent = h.sent(1);
    assert_eq!(sent[0]["op"], 10, "HELLO first");
    let d: Vec<_> = sent.iter().filter(|p| p["op"] == 0).collect();
    assert_eq!(d[0]["t"], "READY");
    let ready = &d[0]["d"];
    assert_eq!(
        ready["guilds"].as_array().unwrap().len(),
        2,
        "every guild of the shard"
    );
    assert_eq!(ready["resume_gateway_url"], "ws://127.0.0.1:7878");
    assert_eq!(ready["user"]["flags"], 0, "the upstream's user, whole");
    assert_ne!(ready["session_id"], "upstream");
    assert_eq!(d[1]["t"], "GUILD_CREATE");
    assert_eq!(
        d[1]["d"],
        guild(G1),
        "the cached guild, as the upstream sent it"
    );
    assert_eq!(d.len(), 2, "the unavailable guild is only listed");
    h.upstream("GUILD_CREATE", &guild(G2));
    h.upstream("MESSAGE_CREATE", &message(1));
    let live = h.dispatches(1);
    assert_eq!(
        live.iter()
            .map(|(s, t, _)| (*s, t.as_str()))
            .collect::<Vec<_>>(),
        [(3, "GUILD_CREATE"), (4, "MESSAGE_CREATE")]
    );
}

#[test]
fn each_client_gets_what_its_intents_ask_for_in_its_own_sequence() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS);
    h.identify(2, Intents::GUILDS | Intents::GUILD_MESSAGES);
    h.sent(1);
    h.sent(2);
    for n in 1..=3 {
        h.upstream("MESSAGE_CREATE", &message(n));
        h.upstream(
            "CHANNEL_UPDATE",
            &json!({"id": "10", "guild_id": G1.to_string(), "type": 0, "name": format!("c{n}")}),
        );
    }
    let one: Vec<_> = h
        .dispatches(1)
        .into_iter()
        .map(|(s, t, _)| (s, t))
        .collect();
    let two: Vec<_> = h.dispatches(2).into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(
        one,
        (3..=5)
            .map(|s| (s, "CHANNEL_UPDATE".to_owned()))
            .collect::<Vec<_>>()
    );
    assert_eq!(two, (3..=8).collect::<Vec<_>>());
}

#[test]
fn a_resume_replays_what_was_missed_then_resumed() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS | Intents::GUILD_MESSAGES);
    let ready = h.dispatches(1);
    let session = ready[0].2["session_id"].as_str().unwrap().to_owned();
    h.upstream("MESSAGE_CREATE", &message(1));
    // The client read up to #3 and then its connection went.
    h.core.handle_disconnected(h.now, 1);
    h.sent(1);
    for n in 2..=4 {
        h.upstream("MESSAGE_CREATE", &message(n));
    }
    h.open(2);
    h.send(
        2,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 2}}),
    );
    let got: Vec<_> = h
        .dispatches(2)
        .into_iter()
        .map(|(s, t, d)| (s, t, d["id"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "MESSAGE_CREATE".into(), json!("1")),
            (4, "MESSAGE_CREATE".into(), json!("2")),
            (5, "MESSAGE_CREATE".into(), json!("3")),
            (6, "MESSAGE_CREATE".into(), json!("4")),
            (7, "RESUMED".into(), Value::Null),
        ]
    );
    h.upstream("MESSAGE_CREATE", &message(5));
    assert_eq!(h.dispatches(2)[0].0, 8, "live again, in sequence");
}

#[test]
fn a_resume_outside_the_log_gets_op_9_then_4007_and_a_new_identify_works() {
    let mut h = Harness::new();
    h.open(1);
    h.send(
        1,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": "nope", "seq": 1}}),
    );
    let sent = h.sent(1);
    assert_eq!(sent[1], json!({"t": null, "s": null, "op": 9, "d": false}));
    assert_eq!(sent[2], json!({"close": 4007}));
    h.identify(2, Intents::GUILDS);
    assert_eq!(h.dispatches(2)[0].1, "READY");
    assert!(h.upstream_commands().is_empty(), "nothing goes upstream");
}

#[test]
fn a_session_ends_after_its_ttl_and_heartbeats_are_answered_here() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS);
    h.send(1, json!({"op": 1, "d": 2}));
    assert_eq!(h.sent(1).last().unwrap()["op"], 11);
    let session = h.core.sessions.keys().next().cloned().unwrap();
    h.core.handle_disconnected(h.now, 1);
    h.now += h.core.config.session_ttl + Duration::from_secs(1);
    assert!(h.core.poll_timeout().is_some_and(|t| t <= h.now));
    h.core.handle_timeout(h.now);
    assert!(!h.core.sessions.contains_key(&session));
}

#[test]
fn who_may_identify() {
    let mut h = Harness::new();
    let cases = [
        (
            json!({"op": 2, "d": {"token": "other", "properties": {}, "intents": 1, "shard": [0, 2]}}),
            4004,
        ),
        (
            json!({"op": 2, "d": {"token": TOKEN, "properties": {}, "intents": 1, "shard": [0, 1]}}),
            4011,
        ),
        (
            json!({"op": 2, "d": {"token": TOKEN, "properties": {}, "intents": 1, "shard": [1, 2]}}),
            4010,
        ),
        (
            json!({"op": 2, "d": {"token": TOKEN, "properties": {}, "intents": 1, "shard": [0, 4]}}),
            4010,
        ),
        (identify(Intents::GUILD_PRESENCES), 4014),
    ];
    for (i, (payload, code)) in cases.into_iter().enumerate() {
        let client = 10 + i as u64;
        h.open(client);
        h.send(client, payload.clone());
        assert_eq!(
            h.sent(client).last().unwrap(),
            &json!({ "close": code }),
            "{payload}"
        );
    }
}

#[test]
fn member_requests_go_up_once_and_come_back_to_each_asker_under_its_nonce() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS | Intents::GUILD_MEMBERS);
    h.identify(2, Intents::GUILDS | Intents::GUILD_MEMBERS);
    h.sent(1);
    h.sent(2);
    let request = |nonce: &str| json!({"op": 8, "d": {"guild_id": G1.to_string(), "query": "", "limit": 0, "nonce": nonce}});
    h.send(1, request("one"));
    h.send(2, request("two"));
    let up = h.upstream_commands();
    assert_eq!(up.len(), 1, "{up:?}");
    let Command::RequestGuildMembers(r) = &up[0].1 else {
        panic!()
    };
    let ours = r.nonce().unwrap().to_owned();
    h.upstream("GUILD_MEMBERS_CHUNK", &json!({"guild_id": G1.to_string(), "members": [{"user": {"id": "9"}, "roles": []}], "chunk_index": 0, "chunk_count": 1, "nonce": ours}));
    let one = h.dispatches(1);
    let two = h.dispatches(2);
    assert_eq!((one.len(), two.len()), (1, 1));
    assert_eq!(
        (one[0].2["nonce"].clone(), two[0].2["nonce"].clone()),
        (json!("one"), json!("two"))
    );
    h.send(1, request("again"));
    let limited = h.dispatches(1);
    assert_eq!(limited[0].1, "RATE_LIMITED");
    assert_eq!(limited[0].2["meta"]["nonce"], "again");
    assert!(h.upstream_commands().is_empty());
    assert!(
        h.dispatches(2).is_empty(),
        "the other client hears nothing of it"
    );
}

#[test]
fn over_its_share_a_client_is_closed_alone_and_a_slow_one_is_aborted_to_resume() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS);
    h.identify(2, Intents::GUILDS);
    let presence =
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "idle", "afk": false}});
    for _ in 0..6 {
        h.send(1, presence.clone());
    }
    assert_eq!(h.sent(1).last().unwrap(), &json!({"close": 4008}));
    assert_eq!(h.upstream_commands().len(), 5);
    // Client 2's socket takes nothing: past its window the rest waits in the log, and after the
    // stall timeout it is closed to resume.
    h.sent(2);
    for n in 0..200 {
        h.upstream("CHANNEL_UPDATE", &json!({"id": "10", "guild_id": G1.to_string(), "type": 0, "name": "x".repeat(10_000), "n": n}));
    }
    let got = h.dispatches(2).len();
    assert!(got < 200, "{got} sent past the window");
    let stall_at = h.now + h.core.config.stall_timeout;
    assert!(
        h.core.poll_timeout().is_some_and(|at| at <= stall_at),
        "the stall is on the core's timer, not left to another deadline"
    );
    h.now += h.core.config.stall_timeout;
    h.core.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.sent(2).last().unwrap(), &json!({"abort": 4000}));
    assert_eq!(h.core.counts().sessions, 2, "both sessions resumable");
}

#[test]
fn clients_asked_to_reconnect_get_op_7_and_resume() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS);
    let session = h.dispatches(1)[0].2["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(h.core.handle_reconnect_clients(h.now, 0), 1);
    h.drain();
    assert_eq!(h.sent(1).last().unwrap()["op"], 7);
    h.core.handle_disconnected(h.now, 1);
    h.open(2);
    h.send(
        2,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 2}}),
    );
    assert_eq!(h.dispatches(2).last().unwrap().1, "RESUMED");
}

#[test]
fn presence_updates_follow_the_policy() {
    let presence =
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "idle", "afk": false}});
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS);
    h.send(1, presence.clone());
    let sent = h.upstream_commands();
    assert!(
        matches!(sent.as_slice(), [(0, Command::UpdatePresence(_))]),
        "last writer wins: forwarded to the client's shard, {sent:?}"
    );
    let mut h = Harness::new();
    h.core.config.presence = crate::PresencePolicy::Ignore;
    h.identify(1, Intents::GUILDS);
    h.send(1, presence);
    assert!(h.upstream_commands().is_empty(), "ignored: never upstream");
}

#[test]
fn the_start_is_paced_by_the_send_window_and_a_guild_create_holds_what_came_before_it() {
    let mut h = Harness::new();
    h.core.config.send_window = 1; // one payload at a time, then the socket must take it
    h.upstream("GUILD_CREATE", &guild(G2));
    h.identify(
        1,
        Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_MESSAGES,
    );
    let first: Vec<String> = h.dispatches(1).into_iter().map(|d| d.1).collect();
    assert_eq!(first, ["READY"], "past the window, the GUILD_CREATEs wait");
    // While they wait, G2 changes and a message comes in it.
    let renamed = json!({"id": "10", "guild_id": G2.to_string(), "type": 0, "name": "renamed"});
    h.upstream("CHANNEL_UPDATE", &renamed);
    let mut in_g2 = message(7);
    in_g2["guild_id"] = json!(G2.to_string());
    h.upstream("MESSAGE_CREATE", &in_g2);
    // A member joins: this session's GUILD_CREATE (no GUILD_PRESENCES) lists no members but the
    // bot, so the join is not in it and must come.
    let join = json!({"guild_id": G2.to_string(), "user": {"id": "9"}, "roles": []});
    h.upstream("GUILD_MEMBER_ADD", &join);
    assert!(h.dispatches(1).is_empty(), "held at the window");
    let mut got = Vec::new();
    for _ in 0..10 {
        h.core.handle_sent(h.now, 1, 1 << 20);
        h.drain();
        got.extend(h.dispatches(1));
    }
    let names: Vec<&str> = got.iter().map(|d| d.1.as_str()).collect();
    // G2's GUILD_CREATE as the cache has it now: the CHANNEL_UPDATE is in it, and is not sent
    // again; the message, which no GUILD_CREATE holds, follows.
    assert_eq!(
        names,
        [
            "GUILD_CREATE",
            "GUILD_CREATE",
            "MESSAGE_CREATE",
            "GUILD_MEMBER_ADD"
        ],
        "{got:?}"
    );
    assert_eq!(got[1].2["id"], G2.to_string());
    assert_eq!(got[1].2["channels"][0]["name"], "renamed");
    let seqs: Vec<u64> = got.iter().map(|d| d.0).collect();
    assert_eq!(seqs, [2, 3, 4, 5], "contiguous");
    // A RESUME from the last one walks the log with the same rule.
    let session = h.core.sessions.keys().next().unwrap().clone();
    h.core.handle_disconnected(h.now, 1);
    h.open(2);
    h.send(
        2,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": &*session, "seq": 3}}),
    );
    for _ in 0..4 {
        h.core.handle_sent(h.now, 2, 1 << 20);
        h.drain();
    }
    let replay: Vec<(u64, String)> = h.dispatches(2).into_iter().map(|d| (d.0, d.1)).collect();
    let names = ["MESSAGE_CREATE", "GUILD_MEMBER_ADD", "RESUMED"].map(str::to_owned);
    assert_eq!(
        replay,
        [
            (4, names[0].clone()),
            (5, names[1].clone()),
            (6, names[2].clone())
        ]
    );
}

#[test]
fn a_live_guild_create_is_shaped_for_a_session_without_presences() {
    let mut h = Harness::new();
    h.identify(1, Intents::GUILDS);
    h.dispatches(1);
    let mut g2 = guild(G2);
    g2["members"] = json!([{"user": {"id": "1"}, "roles": []}, {"user": {"id": "2"}, "roles": []}]);
    g2["presences"] = json!([{"user": {"id": "2"}, "status": "online"}]);
    h.upstream("GUILD_CREATE", &g2);
    let got = h.dispatches(1);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].2["members"],
        json!([{"user": {"id": "1"}, "roles": []}]),
        "the bot alone"
    );
    assert_eq!(got[0].2["presences"], json!([]));
    assert_eq!(
        got[0].2["extra"],
        json!({"kept": true}),
        "every other field as sent"
    );
}

/// Two proxy processes reading one upstream stream: a session on A is written down once it
/// settled after its start; A then dies without a word (SIGKILL: no record at detach), and
/// the client RESUMEs on B with the last sequence number it read, past the record's place. B
/// walks its own log forward from the record and replays exactly what the client missed.
#[test]
fn a_session_on_a_process_that_died_resumes_on_another_from_its_live_record() {
    let (mut a, mut b) = (Harness::sharing(1), Harness::sharing(2));
    a.identify(1, Intents::GUILDS | Intents::GUILD_MESSAGES);
    let session = a.dispatches(1)[0].2["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(a.saved().is_empty(), "written once settled, not at once");
    a.advance(Duration::from_millis(150));
    let records = a.saved();
    assert_eq!(records.len(), 1, "written once its start settled");
    assert_eq!(records[0].seq, 2, "READY and the GUILD_CREATE");
    a.advance(Duration::from_millis(150));
    assert!(a.saved().is_empty(), "nothing new to write");
    b.core.handle_shared_session(b.now, records[0].clone());
    for n in 1..=4 {
        a.upstream("MESSAGE_CREATE", &message(n));
        b.upstream("MESSAGE_CREATE", &message(n));
    }
    let read = a.dispatches(1);
    assert_eq!(read.last().unwrap().0, 6);
    // A is gone; the client had read up to #5 (message 3).
    b.open(9);
    b.send(
        9,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 5}}),
    );
    let got: Vec<_> = b
        .dispatches(9)
        .into_iter()
        .map(|(s, t, d)| (s, t, d["id"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (6, "MESSAGE_CREATE".into(), json!("4")),
            (7, "RESUMED".into(), Value::Null),
        ]
    );
    // Its own records, read back, change nothing; a RESUME past what B has read is refused.
    b.advance(Duration::from_millis(150));
    let mine = b.saved();
    assert_eq!(mine.len(), 1, "written again after its RESUMED");
    b.core.handle_shared_session(b.now, mine[0].clone());
    b.upstream("MESSAGE_CREATE", &message(5));
    assert_eq!(b.dispatches(9)[0].0, 8, "live again, in sequence");
}

/// A RESUME taken from a live record with a sequence number past everything this process has
/// read is refused as Discord refuses a sequence number never sent (4007).
#[test]
fn a_resume_past_what_this_process_read_is_refused() {
    let (mut a, mut b) = (Harness::sharing(1), Harness::sharing(2));
    a.identify(1, Intents::GUILDS | Intents::GUILD_MESSAGES);
    let session = a.dispatches(1)[0].2["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.advance(Duration::from_millis(150));
    b.core.handle_shared_session(b.now, a.saved().remove(0));
    a.upstream("MESSAGE_CREATE", &message(1));
    b.open(9);
    b.send(
        9,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 3}}),
    );
    assert!(b.sent(9).contains(&json!({"close": 4007})));
}

/// The all-members limit across processes: A's request goes up and is announced; B, told of
/// it, sends none for the guild and gives its asker the chunks it sees under A's nonce (every
/// process reads every chunk), under the asker's own nonce; one of its own read back, or one
/// older than the window, changes nothing.
#[test]
fn an_all_members_request_of_another_process_is_joined_not_sent_again() {
    let (mut a, mut b) = (Harness::sharing(1), Harness::sharing(2));
    for h in [&mut a, &mut b] {
        h.identify(1, Intents::GUILDS | Intents::GUILD_MEMBERS);
        h.sent(1);
    }
    let request = |nonce: &str| json!({"op": 8, "d": {"guild_id": G1.to_string(), "query": "", "limit": 0, "nonce": nonce}});
    a.send(1, request("on-a"));
    let asked: Vec<_> = a
        .outputs
        .iter()
        .filter_map(|o| match o {
            ProxyOutput::MembersAsked { guild, nonce } => Some((*guild, nonce.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1, "announced");
    let (guild, ours) = asked[0].clone();
    assert_eq!(a.upstream_commands().len(), 1);
    // A reads its own note back: nothing changes.
    a.core
        .handle_shared_members_request(a.now, guild, ours.clone(), Duration::ZERO);
    b.core
        .handle_shared_members_request(b.now, guild, ours.clone(), Duration::from_secs(2));
    b.send(1, request("on-b"));
    assert!(b.upstream_commands().is_empty(), "joined, not sent again");
    let chunk = json!({"guild_id": G1.to_string(), "members": [{"user": {"id": "9"}, "roles": []}], "chunk_index": 0, "chunk_count": 1, "nonce": ours});
    a.upstream("GUILD_MEMBERS_CHUNK", &chunk);
    b.upstream("GUILD_MEMBERS_CHUNK", &chunk);
    assert_eq!(a.dispatches(1)[0].2["nonce"], "on-a");
    assert_eq!(b.dispatches(1)[0].2["nonce"], "on-b");
    // Within the window, after the last chunk, B's next asker is limited as A's would be.
    b.send(1, request("again"));
    assert_eq!(b.dispatches(1)[0].1, "RATE_LIMITED");
    assert!(b.upstream_commands().is_empty());
    // A note older than the window is no reason to wait.
    let (mut c, guild) = (Harness::sharing(3), G1);
    c.identify(1, Intents::GUILDS | Intents::GUILD_MEMBERS);
    (c.core).handle_shared_members_request(c.now, guild, ours, Duration::from_secs(31));
    c.send(1, request("on-c"));
    assert_eq!(c.upstream_commands().len(), 1);
}

/// A client's share of its shard's command budget follows its session to another process:
/// four commands on A, then two on B within the minute, is over five.
#[test]
fn a_clients_command_budget_follows_it_to_another_process() {
    let (mut a, mut b) = (Harness::sharing(1), Harness::sharing(2));
    a.identify(1, Intents::GUILDS);
    let session = a.dispatches(1)[0].2["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let presence =
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "idle", "afk": false}});
    for _ in 0..4 {
        a.send(1, presence.clone());
    }
    assert_eq!(a.upstream_commands().len(), 4);
    a.core.handle_disconnected(a.now, 1);
    a.drain();
    let record = a.saved().pop().expect("written at detach");
    assert_eq!(record.forwarded_ms_ago.len(), 4);
    b.core.handle_shared_session(b.now, record);
    b.open(9);
    b.send(
        9,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 2}}),
    );
    b.sent(9);
    b.send(9, presence.clone());
    assert_eq!(b.upstream_commands().len(), 1, "the fifth");
    b.send(9, presence);
    assert_eq!(b.sent(9).last().unwrap(), &json!({"close": 4008}));
    assert!(b.upstream_commands().is_empty());
}
