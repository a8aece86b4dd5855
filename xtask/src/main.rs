//! `cargo xtask`: project chores. `cargo xtask bench` measures the stack and writes a report;
//! `cargo xtask interop` runs real third-party clients against the fake gateway; `cargo xtask
//! sim` runs the deterministic simulator over many seeds.

mod bench;
mod interop;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Project chores.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Measure decode speed and allocations; write target/bench/report.{json,md} and charts.
    Bench(bench::Options),
    /// Run real clients (twilight, discord.js, hikari) against gateway-testkit; write
    /// target/interop/report.md.
    Interop(interop::Options),
    /// Run the deterministic simulator: many seeds of shards under faults on virtual time, every
    /// invariant checked; report virtual time simulated per wall second.
    Sim(sim::Options),
    /// Used by `bench`: one cluster node in a process of its own, handing over on SIGTERM.
    #[command(hide = true)]
    ClusterProbe(bench::NodeProbeOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Task::Bench(options) => {
            if cfg!(debug_assertions) && std::env::var_os("XTASK_ALLOW_DEBUG").is_none() {
                // Timings of a debug build mean nothing: run the release build instead.
                return rerun_in_release();
            }
            match bench::run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Task::Interop(options) => match interop::run(&options, &workspace_root()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Task::Sim(options) => {
            if cfg!(debug_assertions) && std::env::var_os("XTASK_ALLOW_DEBUG").is_none() {
                // Thousands of shards on virtual time want the optimized build.
                return rerun_in_release();
            }
            if sim::run_seeds(&options) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Task::ClusterProbe(options) => match bench::node_probe(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn rerun_in_release() -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    eprintln!("building xtask in release mode…");
    let status = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .args(&args)
        .current_dir(workspace_root())
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's parent directory).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
