//! `cargo xtask interop`: real third-party Discord clients against `gateway-testkit serve`.
//!
//! Each (client, compression) pair gets a fresh server and one run of the client's probe, as
//! `interop/CONTRACT.md` describes; the result is a PASS/FAIL table on stdout and in
//! `target/interop/report.md`.

mod pair;
pub(crate) mod process;
mod report;
mod rolling;
mod setup;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pair::PairResult;

/// `cargo xtask interop` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Run only these clients (comma-separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Client>,
    /// Run only these compressions (comma-separated; default every one a client supports).
    #[arg(long, value_enum, value_delimiter = ',')]
    compression: Vec<Compression>,
    /// Seconds a probe may run before it is killed.
    #[arg(long, default_value_t = 90)]
    timeout: u64,
    /// Install the probes' dependencies again even when their inputs did not change.
    #[arg(long)]
    reinstall: bool,
    /// Run every client through `gateway-proxy` (the server as its upstream), unchanged but
    /// for the REST base URL.
    #[arg(long)]
    proxy: bool,
    /// Instead of the probes: bots of the scripted clients (discordjs, hikari) through two
    /// `gateway-proxy` processes on a redis-server, across a rolling restart of both.
    #[arg(long, conflicts_with = "proxy")]
    rolling: bool,
}

/// A third-party client with a probe under `interop/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Client {
    /// Rust: twilight-gateway, twilight-http, twilight-model (`interop/twilight`).
    Twilight,
    /// Node: @discordjs/ws and @discordjs/rest (`interop/discordjs`).
    Discordjs,
    /// Python: hikari (`interop/hikari`).
    Hikari,
    /// Node: the full discord.js `Client` (`interop/discordjs-client`).
    #[value(name = "discordjs-client")]
    DiscordjsFull,
}

impl Client {
    /// Every client, in report order.
    const ALL: [Self; 4] = [
        Self::Twilight,
        Self::Discordjs,
        Self::Hikari,
        Self::DiscordjsFull,
    ];

    /// The name used on the command line, in the table and for `interop/<name>`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Twilight => "twilight",
            Self::Discordjs => "discordjs",
            Self::Hikari => "hikari",
            Self::DiscordjsFull => "discordjs-client",
        }
    }
}

/// A transport compression of the gateway connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Compression {
    /// `compress=zlib-stream`.
    #[value(name = "zlib-stream")]
    ZlibStream,
    /// `compress=zstd-stream`.
    #[value(name = "zstd-stream")]
    ZstdStream,
    /// No transport compression.
    #[value(name = "none")]
    None,
}

impl Compression {
    /// Every compression, in report order.
    pub(crate) const ALL: [Self; 3] = [Self::ZlibStream, Self::ZstdStream, Self::None];

    /// The contract's spelling (`--compression` of a probe).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::ZlibStream => "zlib-stream",
            Self::ZstdStream => "zstd-stream",
            Self::None => "none",
        }
    }
}

/// Paths every step uses.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The workspace root.
    pub(crate) root: PathBuf,
    /// The workspace's target directory.
    pub(crate) target: PathBuf,
    /// `target/interop`: installs, builds, logs and the report.
    pub(crate) out: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map_or_else(|| root.join("target"), |t| root.join(t));
        Self {
            root: root.to_path_buf(),
            out: target.join("interop"),
            target,
        }
    }

    /// `interop/<client>` in the sources.
    pub(crate) fn probe_dir(&self, client: Client) -> PathBuf {
        self.root.join("interop").join(client.name())
    }

    /// Where the logs of one run go.
    pub(crate) fn logs(&self) -> PathBuf {
        self.out.join("logs")
    }
}

/// Builds the server, prepares the selected probes, runs every pair and writes the report.
/// `Ok(false)` when a pair failed.
pub(crate) fn run(options: &Options, root: &Path) -> Result<bool, String> {
    let layout = Layout::new(root);
    std::fs::create_dir_all(layout.logs())
        .map_err(|e| format!("cannot create {}: {e}", layout.logs().display()))?;
    if options.rolling {
        return run_rolling(options, &layout);
    }
    let server = setup::build_server(&layout)?;
    let proxy = match options.proxy {
        true => Some(setup::build_proxy(&layout)?),
        false => None,
    };

    let clients: Vec<Client> = Client::ALL
        .into_iter()
        .filter(|c| options.only.is_empty() || options.only.contains(c))
        .collect();
    let timeout = Duration::from_secs(options.timeout);
    let mut results: Vec<PairResult> = Vec::new();
    for client in clients {
        eprintln!("[interop] preparing {}…", client.name());
        let probe = setup::prepare(&layout, client, options.reinstall);
        if let Err(e) = &probe {
            eprintln!("[interop] {}: {e}", client.name());
        }
        for compression in setup::compressions(client) {
            if !options.compression.is_empty() && !options.compression.contains(&compression) {
                continue;
            }
            let result = match &probe {
                Ok(probe) => {
                    let servers = pair::Servers {
                        testkit: &server,
                        proxy: proxy.as_deref(),
                    };
                    pair::run(&layout, &servers, probe, client, compression, timeout)
                }
                Err(e) => PairResult::setup_failed(client, compression, e),
            };
            eprintln!(
                "[interop] {} {}: {}",
                client.name(),
                compression.as_str(),
                if result.passed { "PASS" } else { "FAIL" }
            );
            results.push(result);
        }
    }
    if results.is_empty() {
        return Err("no (client, compression) pair matches the filters".to_owned());
    }

    let table = report::terminal(&results);
    println!("{table}");
    let (file, title) = match options.proxy {
        true => (
            "report-proxy.md",
            "Real clients through `gateway-proxy`, `gateway-testkit serve` upstream",
        ),
        false => ("report.md", "Real clients against `gateway-testkit serve`"),
    };
    let path = layout.out.join(file);
    std::fs::write(&path, report::markdown(&results, title))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("[interop] report written to {}", path.display());
    Ok(results.iter().all(|r| r.passed))
}

/// `--rolling`: the rolling restart with the selected scripted clients; its table on stdout
/// and in `target/interop/report-rolling.md`.
fn run_rolling(options: &Options, layout: &Layout) -> Result<bool, String> {
    let clients: Vec<Client> = rolling::CLIENTS
        .into_iter()
        .filter(|c| options.only.is_empty() || options.only.contains(c))
        .collect();
    if clients.is_empty() {
        return Err("--rolling runs discordjs and hikari; --only names neither".to_owned());
    }
    let outcome = rolling::run(layout, &clients)?;
    let verdict = if outcome.passed { "PASS" } else { "FAIL" };
    let text = format!(
        "# A rolling restart of two `gateway-proxy` processes on Redis, real bots through them\n\n\
         Each proxy got SIGTERM and started again, one after the other; the fake gateway counted \
         {} IDENTIFY (2 expected: the first node's). {verdict}\n\n\
         | bot | shard | READY | RESUMED | counters (first..=last) | gaps | verdict |\n\
         |---|---:|---:|---:|---|---:|---|\n{}\n",
        outcome.identifies,
        outcome.rows.join("\n"),
    );
    println!("{text}");
    let path = layout.out.join("report-rolling.md");
    std::fs::write(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("[interop] report written to {}", path.display());
    Ok(outcome.passed)
}
