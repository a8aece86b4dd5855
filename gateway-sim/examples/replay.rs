//! Replays one seed and prints its report or its failure: `cargo run -p gateway-sim --example
//! replay -- SEED [SHARDS] [SECONDS]`.

use std::time::Duration;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().unwrap_or(0));
    let seed = args.next().unwrap_or(0);
    let shards = args.next().unwrap_or(20) as u32;
    let seconds = args.next().unwrap_or(600);
    let mut config = gateway_sim::SimConfig::new(seed, shards, Duration::from_secs(seconds));
    config.trace = 80;
    match gateway_sim::run(config) {
        Ok(report) => println!("{report:#?}"),
        Err(failure) => println!("{failure}"),
    }
}
