//! The core's rules, one input at a time on a hand-moved clock.

use std::time::{Duration, Instant};

use gateway_model::{
    Dispatch, DispatchEvent, PartialApplication, RawDispatch, RawJson, Ready, Snowflake, User,
};

use super::*;

const S: Duration = Duration::from_secs(1);

/// A node's core on a clock the test moves.
struct Harness {
    core: NodeCore,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new(total: u32) -> Self {
        let t0 = Instant::now();
        Self {
            core: NodeCore::new(CoreConfig::new("a", total), t0),
            t0,
            now: t0,
        }
    }

    fn at(&mut self, secs: f64) -> Instant {
        self.now = self.t0 + Duration::from_secs_f64(secs);
        self.now
    }

    fn outputs(&mut self) -> Vec<NodeOutput> {
        std::iter::from_fn(|| self.core.poll_output(self.now)).collect()
    }

    /// Runs the timer if due, and returns what came out.
    fn tick(&mut self, secs: f64) -> Vec<NodeOutput> {
        let now = self.at(secs);
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        self.outputs()
    }

    /// Takes `shard`'s lease at the current time, with `session` stored.
    fn take(&mut self, shard: u32, session: Option<ResumeInfo>) -> Vec<NodeOutput> {
        let lease = Lease::new("a", shard, 1, self.now);
        let acquired = vec![Acquired {
            lease,
            session: Ok(session),
        }];
        let done = UpkeepDone {
            renewed: vec![],
            acquired,
        };
        self.core.handle_upkeep(self.now, done);
        self.outputs()
    }

    fn event(&mut self, shard: u32, event: ShardEvent) -> Vec<NodeOutput> {
        self.core.handle_shard_event(self.now, shard, event);
        self.outputs()
    }
}

fn upkeep(outputs: &[NodeOutput]) -> Option<&UpkeepRequest> {
    outputs.iter().find_map(|o| match o {
        NodeOutput::Upkeep(r) => Some(r),
        _ => None,
    })
}

/// A round that renewed shard 0's lease (token 1), sent at `sent`, with this outcome.
fn renewal(sent: Instant, outcome: Renewed) -> UpkeepDone {
    UpkeepDone {
        renewed: vec![Renewal {
            shard: 0,
            token: 1,
            sent,
            outcome,
        }],
        acquired: vec![],
    }
}

fn ready(session: &str) -> ShardEvent {
    ShardEvent::Ready(Box::new(Ready {
        v: Some(10),
        user: User {
            id: Snowflake::new(1),
            username: "bot".into(),
            discriminator: None,
            global_name: None,
            avatar: None,
            bot: true,
        },
        guilds: vec![],
        session_id: session.into(),
        resume_gateway_url: "wss://resume.example".into(),
        shard: None,
        application: PartialApplication {
            id: Snowflake::new(2),
            flags: 0,
        },
        raw: Some(RawJson::from_string(format!(r#"{{"session_id":"{session}"}}"#)).unwrap()),
    }))
}

fn dispatch(seq: u64) -> ShardEvent {
    ShardEvent::Dispatch(Dispatch {
        seq,
        event: DispatchEvent::Other(RawDispatch {
            name: "MESSAGE_CREATE".into(),
            data: RawJson::from_string(format!(r#"{{"n":{seq}}}"#)).unwrap(),
        }),
    })
}

fn published(outputs: &[NodeOutput]) -> Vec<(String, u64, String)> {
    (outputs.iter())
        .filter_map(|o| match o {
            NodeOutput::Publish(e) => Some((e.name.to_string(), e.seq, e.data.to_string())),
            _ => None,
        })
        .collect()
}

#[test]
fn each_round_renews_what_is_held_and_looks_for_the_rest_up_to_the_limit() {
    let mut h = Harness::new(4);
    h.core.config.max_shards = 2;
    let out = h.tick(0.0);
    let round = upkeep(&out).unwrap();
    assert!(round.renew.is_empty());
    assert_eq!((round.candidates.len(), round.room), (4, 2));
    let out = h.take(1, None);
    assert!(matches!(
        &out[0],
        NodeOutput::Event(NodeEvent::Took { shard: 1, .. })
    ));
    assert!(matches!(&out[1], NodeOutput::Start { lease, resuming: None } if lease.shard == 1));
    // No second round while one is out; the next is a third of the TTL after the first.
    assert!(upkeep(&h.tick(3.0)).is_none());
    let out = h.tick(10.0 / 3.0);
    let round = upkeep(&out).unwrap();
    assert_eq!(round.renew.len(), 1);
    assert_eq!(round.room, 1);
    assert!(!round.candidates.contains(&1));
}

#[test]
fn a_lease_that_cannot_be_renewed_stops_its_shard_by_the_ttl_less_the_margin() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    h.take(0, None);
    // A failed renewal leaves the deadline where it was: 8 s from the take.
    h.tick(4.0);
    h.core
        .handle_upkeep(h.now, renewal(h.now, Renewed::Failed("timeout".into())));
    assert!(
        h.tick(7.9)
            .iter()
            .all(|o| !matches!(o, NodeOutput::Stop { .. }))
    );
    let out = h.tick(8.0);
    assert!(out.contains(&NodeOutput::Stop { shard: 0 }));
    assert!(matches!(
        &out[1],
        NodeOutput::Event(NodeEvent::Lost { shard: 0, .. })
    ));
    assert_eq!(h.core.held().count(), 0);
}

#[test]
fn a_renewal_that_answers_after_the_deadline_does_not_save_the_lease() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    h.take(0, None);
    h.tick(4.0);
    // Sent at 0.5 s (in time), answered at 9 s: the lease counts from 0.5 s, so its deadline
    // (8.5 s) has passed.
    h.at(9.0);
    let sent = h.t0 + S / 2;
    h.core.handle_upkeep(h.now, renewal(sent, Renewed::Held));
    assert!(h.outputs().contains(&NodeOutput::Stop { shard: 0 }));
}

#[test]
fn a_lease_another_node_holds_stops_the_shard_at_once_and_its_events_are_not_published() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    h.take(0, None);
    h.event(0, ready("s1"));
    h.tick(3.4);
    h.core.handle_upkeep(h.now, renewal(h.now, Renewed::Lost));
    assert!(h.outputs().contains(&NodeOutput::Stop { shard: 0 }));
    assert!(h.event(0, dispatch(2)).is_empty());
}

#[test]
fn events_are_published_in_their_session_and_news_goes_to_the_operator() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    h.take(0, None);
    // Before READY there is no session to publish in.
    assert!(published(&h.event(0, dispatch(1))).is_empty());
    let out = h.event(0, ready("s1"));
    assert!(matches!(
        &out[0],
        NodeOutput::Event(NodeEvent::Shard(0, ShardEvent::Ready(_)))
    ));
    // READY's `d` goes whole, as the gateway sent it.
    assert_eq!(
        published(&out),
        [("READY".to_owned(), 1, r#"{"session_id":"s1"}"#.to_owned())]
    );
    let out = h.event(0, dispatch(2));
    assert_eq!(
        published(&out),
        [("MESSAGE_CREATE".to_owned(), 2, r#"{"n":2}"#.to_owned())]
    );
    assert_eq!(out.len(), 1, "dispatches are not repeated to the operator");
    let ack = ShardEvent::HeartbeatAck { latency: S };
    assert!(h.event(0, ack).is_empty());
}

#[test]
fn sessions_are_saved_up_to_what_was_written_and_only_in_the_session_written() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    h.take(0, None);
    h.event(0, ready("s1"));
    h.event(0, dispatch(2));
    h.event(0, dispatch(3));
    // Nothing written yet: nothing to save.
    assert!(!h.tick(1.0).iter().any(|o| matches!(o, NodeOutput::Save(_))));
    h.core.handle_written(h.now, 0, "s1".into(), 2);
    let out = h.tick(2.0);
    let saves = out.iter().find_map(|o| match o {
        NodeOutput::Save(s) => Some(s.clone()),
        _ => None,
    });
    let saves = saves.unwrap();
    assert_eq!(saves.len(), 1);
    assert_eq!(saves[0].1.sequence, 2, "never past what was written");
    assert_eq!(saves[0].1.resume_url, "wss://resume.example");
    h.core.handle_saved(h.now, vec![(0, 2, true)]);
    // Nothing new: no save.
    assert!(!h.tick(3.0).iter().any(|o| matches!(o, NodeOutput::Save(_))));
    // Written in an older session: not this session's position.
    h.event(0, ready("s2"));
    h.core.handle_written(h.now, 0, "s1".into(), 3);
    assert!(!h.tick(4.0).iter().any(|o| matches!(o, NodeOutput::Save(_))));
}

#[test]
fn a_new_sessions_first_write_is_saved_at_once_then_every_round() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    h.take(0, None);
    h.tick(0.1);
    h.event(0, ready("s1"));
    h.core.handle_written(h.now, 0, "s1".into(), 1);
    let saved_now = h.tick(0.1).iter().any(|o| matches!(o, NodeOutput::Save(_)));
    assert!(saved_now, "stored at once, not at the next round");
    h.core.handle_saved(h.now, vec![(0, 1, true)]);
    h.event(0, dispatch(2));
    h.core.handle_written(h.now, 0, "s1".into(), 2);
    let again = h.tick(0.2).iter().any(|o| matches!(o, NodeOutput::Save(_)));
    assert!(!again, "later writes wait for the round");
    assert!(h.tick(1.2).iter().any(|o| matches!(o, NodeOutput::Save(_))));
}

#[test]
fn a_shard_taken_with_a_stored_session_resumes_it_and_publishes_in_it() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    let stored = ResumeInfo {
        session_id: "s1".into(),
        sequence: 40,
        resume_url: "wss://r".into(),
    };
    let out = h.take(0, Some(stored.clone()));
    assert!(out.contains(&NodeOutput::Start {
        lease: Lease::new("a", 0, 1, h.t0),
        resuming: Some(stored),
    }));
    assert_eq!(published(&h.event(0, dispatch(41)))[0].1, 41);
}

#[test]
fn a_graceful_shutdown_closes_publishes_stores_at_the_last_written_then_releases() {
    let mut h = Harness::new(2);
    h.tick(0.0);
    h.take(0, None);
    h.event(0, ready("s1"));
    h.event(0, dispatch(2));
    h.core.handle_shutdown(h.now);
    assert_eq!(h.outputs(), [NodeOutput::Close(vec![0])]);
    // No new shard is taken while shutting down, and one taken meanwhile goes back.
    let out = h.tick(4.0);
    let round = upkeep(&out).unwrap();
    assert_eq!((round.renew.len(), round.room), (1, 0));
    let late = Lease::new("a", 1, 1, h.now);
    let done = UpkeepDone {
        renewed: vec![],
        acquired: vec![Acquired {
            lease: late.clone(),
            session: Ok(None),
        }],
    };
    h.core.handle_upkeep(h.now, done);
    assert_eq!(h.outputs(), [NodeOutput::Release(late)]);
    // The shard closed, having delivered #3: published, then written.
    let closed = ResumeInfo {
        session_id: "s1".into(),
        sequence: 3,
        resume_url: "wss://resume.example".into(),
    };
    h.event(0, dispatch(3));
    h.core.handle_closed(h.now, 0, Some(closed.clone()));
    assert_eq!(h.outputs(), [NodeOutput::Flush]);
    h.core.handle_written(h.now, 0, "s1".into(), 3);
    h.core.handle_flushed(h.now);
    let out = h.outputs();
    let [NodeOutput::Handoff(handoff)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(handoff[0].1, Some(closed.clone()));
    h.core.handle_handed_off(h.now);
    let out = h.outputs();
    assert_eq!(
        out,
        [
            NodeOutput::Event(NodeEvent::Released {
                shard: 0,
                session: Some(closed)
            }),
            NodeOutput::Stopped
        ]
    );
    assert!(h.core.is_stopped());
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn a_shard_whose_lease_is_lost_while_closing_is_not_handed_over() {
    let mut h = Harness::new(1);
    h.tick(0.0);
    h.take(0, None);
    h.core.handle_shutdown(h.now);
    h.outputs();
    // It never answers, and its lease runs out.
    let out = h.tick(8.0);
    assert!(out.contains(&NodeOutput::Stop { shard: 0 }));
    assert!(out.contains(&NodeOutput::Flush));
    h.core.handle_flushed(h.now);
    assert_eq!(h.outputs(), [NodeOutput::Handoff(vec![])]);
}

#[test]
fn a_node_with_nothing_shuts_down_at_once() {
    let mut h = Harness::new(1);
    h.core.handle_shutdown(h.now);
    assert_eq!(h.outputs(), [NodeOutput::Flush]);
    h.core.handle_flushed(h.now);
    h.core.handle_handed_off(h.now);
    assert_eq!(
        h.outputs(),
        [NodeOutput::Handoff(vec![]), NodeOutput::Stopped]
    );
}

#[test]
fn a_release_notice_brings_the_next_round_forward_when_there_is_room() {
    let mut h = Harness::new(4);
    h.core.config.max_shards = 2;
    assert!(upkeep(&h.tick(0.0)).is_some());
    h.take(1, None);
    // A notice while the round is out: the next one follows it at once, not 1/3 TTL later.
    h.at(0.5);
    h.core.handle_release_notice(h.now);
    assert_eq!(h.core.poll_timeout(), Some(h.now));
    let round = upkeep(&h.tick(0.5)).cloned().unwrap();
    assert_eq!(round.room, 1);
    // Full: a notice changes nothing.
    h.take(2, None);
    let due = h.core.poll_timeout();
    h.at(0.6);
    h.core.handle_release_notice(h.now);
    assert_eq!(h.core.poll_timeout(), due);
}
