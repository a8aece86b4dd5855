//! Faults and traffic, drawn from the seed: when they come, which shard they hit, what they are.

use std::time::Duration;

use gateway_testkit::{ChunkFault, Fault, SplitAt, Trigger};
use rand::Rng;

use crate::net::Event;
use crate::sim::{MAX_MESSAGE, Sim};

/// Close codes a gateway may send that a shard recovers from (the fatal ones, 4004 and
/// 4010–4014, stop it by design; 4008 is what the shard must never earn).
const CLOSE_CODES: [u16; 10] = [1000, 1001, 4000, 4001, 4002, 4003, 4005, 4007, 4009, 1011];

/// An exponential wait with this mean.
fn exponential(rng: &mut impl Rng, mean: Duration) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    mean.mul_f64(-u.ln()).min(mean * 20)
}

fn fault_mean(sim: &Sim) -> Duration {
    let per_hour = sim.config.faults_per_shard_hour * f64::from(sim.shards());
    Duration::from_secs_f64(3600.0 / per_hour.max(1e-6))
}

fn traffic_mean(sim: &Sim) -> Duration {
    let per_minute = sim.config.dispatches_per_shard_minute * f64::from(sim.shards());
    Duration::from_secs_f64(60.0 / per_minute.max(1e-6))
}

impl Sim {
    /// The first fault, the first traffic, and perhaps a server restart.
    pub(crate) fn schedule_first(&mut self) {
        let sim = self;
        let mean = fault_mean(sim);
        let wait = exponential(&mut sim.rng, mean);
        sim.agenda.after(wait, Event::Fault);
        let mean = traffic_mean(sim);
        let wait = exponential(&mut sim.rng, mean);
        sim.agenda.after(wait, Event::Traffic);
        if sim
            .rng
            .random_bool(sim.config.restart_chance.clamp(0.0, 1.0))
        {
            let at = sim.config.duration.mul_f64(sim.rng.random_range(0.2..0.8));
            sim.agenda.after(at, Event::Restart);
        }
    }

    /// Sends a dispatch to a random shard's session, and schedules the next.
    pub(crate) fn traffic(&mut self) {
        let sim = self;
        let shard = sim.rng.random_range(0..sim.shards());
        if let Some(conn) = sim.live_conn(shard) {
            let n: u64 = sim.rng.random();
            let now = sim.agenda.now();
            let data = format!(
                r#"{{"n":{n},"content":"{}"}}"#,
                "m".repeat((n % 200) as usize)
            );
            sim.core.handle_dispatch(now, conn, "SIM_EVENT", &data);
        }
        let mean = traffic_mean(sim);
        let wait = exponential(&mut sim.rng, mean);
        sim.agenda.after(wait, Event::Traffic);
    }

    /// Injects one fault on a random shard, and schedules the next.
    pub(crate) fn inject(&mut self) {
        let sim = self;
        let shard = sim.rng.random_range(0..sim.shards());
        let now = sim.agenda.now();
        let kind = sim.rng.random_range(0..15u32);
        let fault = match kind {
            0 => Some(("drop", Fault::Drop)),
            1 => Some(("zombie", Fault::Zombie)),
            2 => {
                let code = CLOSE_CODES[sim.rng.random_range(0..CLOSE_CODES.len())];
                Some(("close", Fault::Close(code)))
            }
            3 => Some(("op 7", Fault::Reconnect)),
            4 => Some((
                "op 9",
                Fault::InvalidSession {
                    resumable: sim.rng.random_bool(0.5),
                },
            )),
            5 => Some(("corrupt", Fault::CorruptNext)),
            6 => Some(("oversize", Fault::Oversize(MAX_MESSAGE + 1024))),
            7 => Some(("chunks", Fault::Chunks(chunk_fault(sim)))),
            8 => Some(("stall RESUMED", Fault::StallResumed)),
            9 => Some(("heartbeat request", Fault::RequestHeartbeat)),
            10 => {
                let points = vec![
                    SplitAt::FromStart(sim.rng.random_range(1..40)),
                    SplitAt::FromEnd(sim.rng.random_range(1..8)),
                ];
                Some(("split", Fault::SplitNext(points)))
            }
            11 => {
                // op 7 before HELLO, or READY that never comes, on whoever connects next.
                let fault = if sim.rng.random_bool(0.5) {
                    Fault::ReconnectBeforeHello
                } else {
                    Fault::StallReady
                };
                sim.core.handle_next_connection_fault(now, fault);
                *sim.faults.entry("next connection").or_default() += 1;
                None
            }
            12 => {
                let after = sim.rng.random_range(1..5u64);
                let code = CLOSE_CODES[sim.rng.random_range(0..CLOSE_CODES.len())];
                if let Some(conn) = sim.live_conn(shard) {
                    sim.core.handle_fault(
                        now,
                        conn,
                        Trigger::After(Duration::from_secs(after)),
                        Fault::Close(code),
                    );
                    *sim.faults.entry("close later").or_default() += 1;
                }
                None
            }
            13 => {
                if let Some(conn) = sim.live_conn(shard) {
                    sim.trace(format!("shard {shard} conn {conn}: the network fails"));
                    sim.cut(shard, conn);
                    *sim.faults.entry("network cut").or_default() += 1;
                }
                None
            }
            _ => {
                // A burst of dispatches, then the network fails while they are on the wire: the
                // resume must bring back what was lost.
                if let Some(conn) = sim.live_conn(shard) {
                    for n in 0..sim.rng.random_range(1..5) {
                        sim.core.handle_dispatch(
                            now,
                            conn,
                            "SIM_EVENT",
                            &format!(r#"{{"burst":{n}}}"#),
                        );
                    }
                    sim.trace(format!(
                        "shard {shard} conn {conn}: the network fails mid-burst"
                    ));
                    sim.cut(shard, conn);
                    *sim.faults.entry("cut mid-burst").or_default() += 1;
                }
                None
            }
        };
        if let Some((name, fault)) = fault
            && let Some(conn) = sim.live_conn(shard)
        {
            sim.trace(format!("shard {shard} conn {conn}: fault {fault:?}"));
            sim.core.handle_fault(now, conn, Trigger::Now, fault);
            *sim.faults.entry(name).or_default() += 1;
        }
        let mean = fault_mean(sim);
        let wait = exponential(&mut sim.rng, mean);
        sim.agenda.after(wait, Event::Fault);
    }
}

fn chunk_fault(sim: &mut Sim) -> ChunkFault {
    match sim.rng.random_range(0..5) {
        0 => ChunkFault::DropAll,
        1 => ChunkFault::Drop(vec![sim.rng.random_range(0..3)]),
        2 => ChunkFault::Delay(
            vec![sim.rng.random_range(0..3)],
            Duration::from_millis(sim.rng.random_range(100..20_000)),
        ),
        3 => ChunkFault::Reverse,
        _ => ChunkFault::Duplicate(vec![sim.rng.random_range(0..3)]),
    }
}
