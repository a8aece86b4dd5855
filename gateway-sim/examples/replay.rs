//! Replays one seed and prints its report or its failure: `cargo run -p gateway-sim --example
//! replay -- SEED [SHARDS] [SECONDS]`.

// Tests and examples are drivers: they read the clock (see clippy.toml).
#![allow(clippy::disallowed_methods)]
use std::process::ExitCode;
use std::time::Duration;

/// The run the arguments ask for: a seed, then optionally shards (default 20) and virtual
/// seconds (default 600). A mistyped number is an error, never some other seed.
fn parse(args: &[String]) -> Result<(u64, u32, u64), String> {
    fn number<T: std::str::FromStr>(
        args: &[String],
        i: usize,
        name: &str,
    ) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        args.get(i)
            .map(|a| a.parse().map_err(|e| format!("{name} {a:?}: {e}")))
            .transpose()
    }
    if args.is_empty() || args.len() > 3 {
        return Err("usage: replay SEED [SHARDS] [SECONDS]".into());
    }
    let seed = number(args, 0, "SEED")?.unwrap_or_default();
    let shards = number(args, 1, "SHARDS")?.unwrap_or(20);
    let seconds = number(args, 2, "SECONDS")?.unwrap_or(600);
    Ok((seed, shards, seconds))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (seed, shards, seconds) = match parse(&args) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut config = gateway_sim::SimConfig::new(seed, shards, Duration::from_secs(seconds));
    config.trace = 80;
    match gateway_sim::run(config) {
        Ok(report) => {
            println!("{report:#?}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("{failure}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    /// On 0234392 a mistyped seed ran seed 0.
    #[test]
    fn a_mistyped_number_is_an_error_not_seed_0() {
        assert!(parse(&args(&["18x"])).unwrap_err().contains("SEED"));
        assert!(parse(&args(&["18", "ten"])).unwrap_err().contains("SHARDS"));
        assert!(parse(&args(&[])).is_err(), "the seed is needed");
        assert_eq!(parse(&args(&["18"])), Ok((18, 20, 600)));
        assert_eq!(parse(&args(&["18", "5", "60"])), Ok((18, 5, 60)));
    }
}
