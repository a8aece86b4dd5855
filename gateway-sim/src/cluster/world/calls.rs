//! The node's calls to Redis: latency, partitions and call deadlines on the way, and Redis applying them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_cluster::core::{Acquired, Renewal, Renewed, UpkeepDone, UpkeepRequest};
use gateway_cluster::{Entry, Lease};
use gateway_shard::ResumeInfo;
use rand::Rng;

use super::{Ev, World, link};
use crate::Failure;
use crate::cluster::redis::{Appended, StreamEntry};

/// A call to Redis, as it arrives.
#[derive(Debug)]
pub(super) enum Op {
    Upkeep(UpkeepRequest, Instant),
    Save(Vec<(Lease, ResumeInfo)>),
    Release(Lease),
    Publish(Entry),
    Flush,
    Handoff(Vec<(Lease, Option<ResumeInfo>)>),
}

/// An answer to a node.
#[derive(Debug)]
pub(super) enum Reply {
    Upkeep(UpkeepDone),
    Saved(Vec<(u32, u64, bool)>),
    Written(u32, Arc<str>, u64),
    Flushed,
    HandedOff,
}

impl World {
    pub(super) fn latency(&mut self) -> Duration {
        let now = self.agenda.now();
        if self.slow_until.is_some_and(|t| t > now) {
            Duration::from_millis(self.rng.random_range(200..4_000))
        } else {
            Duration::from_millis(self.rng.random_range(1..20))
        }
    }

    /// Sends a call to Redis; it fails at the call limit if it cannot make the round trip.
    pub(super) fn call(&mut self, node: usize, op: Op) {
        let now = self.agenda.now();
        let life = self.nodes[node].life;
        let publisher = matches!(op, Op::Publish(_) | Op::Flush);
        let (up, down) = (self.latency(), self.latency());
        let limit = self.core_config(node).call_limit();
        let partitioned = self.nodes[node].partitioned_until.filter(|t| *t > now);
        if publisher {
            // The publisher retries until it is written: after the partition, in order.
            let at = partitioned.unwrap_or(now) + up;
            let ev = Ev::Apply {
                node,
                life,
                op,
                answer: true,
            };
            self.agenda.send(link(node, true), true, at - now, ev);
            return;
        }
        let answer = partitioned.is_none() && up + down <= limit;
        if !answer {
            let reply = match &op {
                Op::Upkeep(request, sent) => Some(Reply::Upkeep(failed_upkeep(request, *sent))),
                Op::Save(saves) => Some(Reply::Saved(
                    saves
                        .iter()
                        .map(|(l, i)| (l.shard, i.sequence, false))
                        .collect(),
                )),
                Op::Handoff(_) => Some(Reply::HandedOff),
                _ => None,
            };
            if let Some(reply) = reply {
                self.agenda.after(limit, Ev::Reply { node, life, reply });
            }
        }
        if partitioned.is_none() {
            let ev = Ev::Apply {
                node,
                life,
                op,
                answer,
            };
            self.agenda.send(link(node, false), true, up, ev);
        }
    }

    pub(super) fn answer(&mut self, node: usize, life: u64, reply: Reply, publisher: bool) {
        let down = self.latency();
        let ev = Ev::Reply { node, life, reply };
        self.agenda.send(link(node, publisher), false, down, ev);
    }
}

/// What a timed-out round of upkeep tells the core.
pub(super) fn failed_upkeep(request: &UpkeepRequest, sent: Instant) -> UpkeepDone {
    let renewed = (request.renew.iter())
        .map(|l| Renewal {
            shard: l.shard,
            token: l.token,
            sent,
            outcome: Renewed::Failed("redis did not answer in time (simulated)".into()),
        })
        .collect();
    UpkeepDone {
        renewed,
        acquired: Vec::new(),
    }
}

/// Redis applies a call.
impl World {
    pub(super) fn apply(
        &mut self,
        node: usize,
        life: u64,
        op: Op,
        answer: bool,
    ) -> Result<(), Failure> {
        let now = self.agenda.now();
        let ttl = self.config.lease_ttl;
        let name = self.nodes[node].name.clone();
        let reply = match op {
            Op::Upkeep(request, sent) => {
                let renewed = (request.renew.iter())
                    .map(|l| Renewal {
                        shard: l.shard,
                        token: l.token,
                        sent,
                        outcome: if self.redis.renew(now, l.shard, l.value(), ttl) {
                            Renewed::Held
                        } else {
                            Renewed::Lost
                        },
                    })
                    .collect();
                let mut acquired = Vec::new();
                for id in request.candidates {
                    if acquired.len() >= request.room {
                        break;
                    }
                    if let Some(token) = self.redis.acquire(now, &name, id, ttl) {
                        let lease = Lease::new(&name, id, token, sent);
                        let session = Ok(self.redis.load(id));
                        acquired.push(Acquired { lease, session });
                    }
                }
                Some(Reply::Upkeep(UpkeepDone { renewed, acquired }))
            }
            Op::Save(saves) => Some(Reply::Saved(
                (saves.iter())
                    .map(|(l, i)| {
                        (
                            l.shard,
                            i.sequence,
                            self.redis.save(now, l.shard, l.value(), i),
                        )
                    })
                    .collect(),
            )),
            Op::Release(lease) => {
                // Not announced: the node gave the shard up because it could not run it.
                self.redis.release(now, lease.shard, lease.value());
                None
            }
            Op::Publish(entry) => self.publish(entry)?,
            Op::Flush => Some(Reply::Flushed),
            Op::Handoff(handoff) => {
                for (lease, session) in &handoff {
                    if let Some(info) = session {
                        self.redis.save(now, lease.shard, lease.value(), info);
                    }
                    self.redis.release(now, lease.shard, lease.value());
                }
                if !handoff.is_empty() {
                    self.announce_release(node, now);
                }
                Some(Reply::HandedOff)
            }
        };
        let publisher = matches!(reply, Some(Reply::Written(..) | Reply::Flushed));
        if let Some(reply) = reply.filter(|_| answer) {
            self.answer(node, life, reply, publisher);
        }
        Ok(())
    }

    /// A publisher's APPEND landed: refused under an older lease (nothing written), skipped as
    /// there already (written, but not seen again), or added and checked by the consumer.
    fn publish(&mut self, entry: Entry) -> Result<Option<Reply>, Failure> {
        let seen = StreamEntry {
            name: entry.name.to_string(),
            session: entry.session.to_string(),
            seq: entry.seq,
        };
        match self.redis.append(entry.shard, entry.fence, &seen) {
            Appended::Fenced => {
                self.report.fenced += 1;
                return Ok(None);
            }
            Appended::Skipped => self.report.repeats += 1,
            Appended::Added => {
                let shard = entry.shard;
                if let Err(e) = self.streams[shard as usize].see(&seen) {
                    return Err(self.fail(format!("shard {shard}'s stream: {e}")));
                }
            }
        }
        Ok(Some(Reply::Written(entry.shard, entry.session, entry.seq)))
    }

    /// A release landed: every other running node not cut off from Redis hears of it a link's
    /// latency later (a cut-off one misses it and relies on its upkeep, as a real one would).
    fn announce_release(&mut self, from: usize, now: Instant) {
        for node in 0..self.nodes.len() {
            let n = &self.nodes[node];
            let cut_off = n.partitioned_until.is_some_and(|t| t > now);
            if node == from || n.core.is_none() || cut_off {
                continue;
            }
            let life = n.life;
            let latency = self.latency();
            self.agenda.after(latency, Ev::Notice { node, life });
        }
    }

    pub(super) fn reply(&mut self, node: usize, reply: Reply) {
        let now = self.agenda.now();
        self.with_core(node, |core| match reply {
            Reply::Upkeep(done) => core.handle_upkeep(now, done),
            Reply::Saved(saved) => core.handle_saved(now, saved),
            Reply::Written(shard, session, seq) => core.handle_written(now, shard, session, seq),
            Reply::Flushed => core.handle_flushed(now),
            Reply::HandedOff => core.handle_handed_off(now),
        });
    }
}
