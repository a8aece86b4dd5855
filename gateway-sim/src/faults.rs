//! Faults and traffic, drawn from the seed: when they come and what they are. Pure: the
//! simulation applies what is drawn here.

use std::time::Duration;

use gateway_testkit::{ChunkFault, Fault, SplitAt};
use rand::Rng;

use crate::SimConfig;

/// The largest message a simulated shard reads; oversize faults go past it.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;

/// Close codes a gateway may send that a shard recovers from (the fatal ones, 4004 and
/// 4010–4014, stop it by design; 4008 is what the shard must never earn).
const CLOSE_CODES: [u16; 10] = [1000, 1001, 4000, 4001, 4002, 4003, 4005, 4007, 4009, 1011];

/// One fault, as drawn.
#[derive(Debug)]
pub(crate) enum Planned {
    /// Injected on the shard's live connection now.
    Now(&'static str, Fault),
    /// Queued for whichever connection opens next.
    NextConnection(Fault),
    /// A close with this code this long from now.
    CloseLater(Duration, u16),
    /// The network fails under the connection.
    Cut,
    /// A burst of this many dispatches, then the network fails while they are on the wire.
    CutMidBurst(u32),
}

/// An exponential wait with this mean (capped at 20 means).
pub(crate) fn exponential(rng: &mut impl Rng, mean: Duration) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    mean.mul_f64(-u.ln()).min(mean * 20)
}

/// The mean time between faults, over all shards.
pub(crate) fn fault_mean(config: &SimConfig) -> Duration {
    let per_hour = config.faults_per_shard_hour * f64::from(config.shards);
    Duration::from_secs_f64(3600.0 / per_hour.max(1e-6))
}

/// The mean time between dispatches, over all shards.
pub(crate) fn traffic_mean(config: &SimConfig) -> Duration {
    let per_minute = config.dispatches_per_shard_minute * f64::from(config.shards);
    Duration::from_secs_f64(60.0 / per_minute.max(1e-6))
}

/// A dispatch's `d`, of a drawn size.
pub(crate) fn traffic_data(rng: &mut impl Rng) -> String {
    let n: u64 = rng.random();
    format!(
        r#"{{"n":{n},"content":"{}"}}"#,
        "m".repeat((n % 200) as usize)
    )
}

/// Draws one fault.
pub(crate) fn draw(rng: &mut impl Rng) -> Planned {
    let close = |rng: &mut dyn rand::RngCore| CLOSE_CODES[rng.random_range(0..CLOSE_CODES.len())];
    match rng.random_range(0..15u32) {
        0 => Planned::Now("drop", Fault::Drop),
        1 => Planned::Now("zombie", Fault::Zombie),
        2 => Planned::Now("close", Fault::Close(close(rng))),
        3 => Planned::Now("op 7", Fault::Reconnect),
        4 => Planned::Now(
            "op 9",
            Fault::InvalidSession {
                resumable: rng.random_bool(0.5),
            },
        ),
        5 => Planned::Now("corrupt", Fault::CorruptNext),
        6 => Planned::Now("oversize", Fault::Oversize(MAX_MESSAGE + 1024)),
        7 => Planned::Now("chunks", Fault::Chunks(chunk_fault(rng))),
        8 => Planned::Now("stall RESUMED", Fault::StallResumed),
        9 => Planned::Now("heartbeat request", Fault::RequestHeartbeat),
        10 => {
            let points = vec![
                SplitAt::FromStart(rng.random_range(1..40)),
                SplitAt::FromEnd(rng.random_range(1..8)),
            ];
            Planned::Now("split", Fault::SplitNext(points))
        }
        11 => Planned::NextConnection(if rng.random_bool(0.5) {
            Fault::ReconnectBeforeHello
        } else {
            Fault::StallReady
        }),
        12 => Planned::CloseLater(Duration::from_secs(rng.random_range(1..5)), close(rng)),
        13 => Planned::Cut,
        _ => Planned::CutMidBurst(rng.random_range(1..5)),
    }
}

fn chunk_fault(rng: &mut impl Rng) -> ChunkFault {
    match rng.random_range(0..5) {
        0 => ChunkFault::DropAll,
        1 => ChunkFault::Drop(vec![rng.random_range(0..3)]),
        2 => ChunkFault::Delay(
            vec![rng.random_range(0..3)],
            Duration::from_millis(rng.random_range(100..20_000)),
        ),
        3 => ChunkFault::Reverse,
        _ => ChunkFault::Duplicate(vec![rng.random_range(0..3)]),
    }
}
