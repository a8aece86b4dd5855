//! Building the server and installing each probe, skipping installs whose inputs did not change.

use std::collections::BTreeMap;
use std::ffi::OsString;
// Stable for a given toolchain, which is all a stamp needs: a new toolchain only reinstalls.
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Client, Compression, Layout};

/// Lines of an install log quoted when the install fails.
const LOG_TAIL: usize = 6;

/// A probe ready to run.
#[derive(Debug)]
pub(crate) struct Probe {
    /// The client library and its version, e.g. `twilight-gateway 0.18.0`.
    pub(crate) version: String,
    /// How it is started.
    launch: Launch,
}

/// How a probe is started.
#[derive(Debug)]
enum Launch {
    /// One binary per compression (twilight fixes it at compile time).
    PerCompression(BTreeMap<Compression, PathBuf>),
    /// An interpreter and a script.
    Script {
        /// `python`, `node`…
        interpreter: PathBuf,
        /// The probe's source file.
        script: PathBuf,
    },
}

impl Probe {
    /// The command that runs the probe for `compression`, without the contract's arguments.
    pub(crate) fn command(&self, compression: Compression) -> Result<Command, String> {
        match &self.launch {
            Launch::PerCompression(binaries) => binaries
                .get(&compression)
                .map(Command::new)
                .ok_or_else(|| format!("no probe binary for {}", compression.as_str())),
            Launch::Script {
                interpreter,
                script,
            } => {
                let mut command = Command::new(interpreter);
                command.arg(script);
                Ok(command)
            }
        }
    }
}

impl Probe {
    /// The command that runs another script beside a scripted probe (`rolling.mjs` beside
    /// `probe.mjs`), with the same interpreter and installs.
    pub(crate) fn script(&self, file: &str) -> Result<Command, String> {
        match &self.launch {
            Launch::Script {
                interpreter,
                script,
            } => {
                let mut command = Command::new(interpreter);
                command.arg(script.with_file_name(file));
                Ok(command)
            }
            Launch::PerCompression(_) => Err(format!("{} has no scripts", self.version)),
        }
    }
}

/// The compressions a client is run with: all three, except where its library lacks one.
pub(crate) fn compressions(client: Client) -> Vec<Compression> {
    match client {
        Client::Twilight | Client::Hikari => Compression::ALL.to_vec(),
        // @discordjs/ws 2.0 has no zstd-stream (and Node 20's node:zlib no zstd).
        Client::Discordjs => vec![Compression::ZlibStream, Compression::None],
        // discord.js's Client compresses only with the zlib-sync native addon, not installed here.
        Client::DiscordjsFull => vec![Compression::None],
    }
}

/// `cargo build -p gateway-testkit` (debug); the path of the binary.
pub(crate) fn build_server(layout: &Layout) -> Result<PathBuf, String> {
    build_binary(layout, "gateway-testkit")
}

/// Builds `gateway-proxy` (for `--proxy`); the binary's path.
pub(crate) fn build_proxy(layout: &Layout) -> Result<PathBuf, String> {
    build_binary(layout, "gateway-proxy")
}

/// Builds `package`'s binary of the same name (debug); its path.
fn build_binary(layout: &Layout, package: &str) -> Result<PathBuf, String> {
    eprintln!("[interop] building {package}…");
    let status = cargo()
        .args(["build", "--quiet", "-p", package])
        .current_dir(&layout.root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p {package} failed ({status})"));
    }
    let binary = layout.target.join("debug").join(package);
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("{} is missing after the build", binary.display()))
    }
}

/// Installs what `client`'s probe needs (unless already done for the same inputs).
pub(crate) fn prepare(layout: &Layout, client: Client, reinstall: bool) -> Result<Probe, String> {
    match client {
        Client::Twilight => twilight(layout, reinstall),
        Client::Discordjs => node(layout, Client::Discordjs, "@discordjs/ws", reinstall),
        Client::DiscordjsFull => node(layout, Client::DiscordjsFull, "discord.js", reinstall),
        Client::Hikari => hikari(layout, reinstall),
    }
}

/// Builds the twilight probe once per compression feature and copies each binary aside.
fn twilight(layout: &Layout, reinstall: bool) -> Result<Probe, String> {
    let dir = layout.probe_dir(Client::Twilight);
    let manifest = require(&dir, "Cargo.toml")?;
    require(&dir, "Cargo.lock")?;
    require(&dir, "src/main.rs")?;
    let bin_dir = layout.out.join("bin");
    let variants = [
        (Compression::ZlibStream, Some("zlib")),
        (Compression::ZstdStream, Some("zstd")),
        (Compression::None, None),
    ];
    let binaries: BTreeMap<Compression, PathBuf> = variants
        .iter()
        .map(|(c, _)| (*c, bin_dir.join(format!("twilight-{}", c.as_str()))))
        .collect();
    let stamp = Stamp::new(
        layout,
        "twilight",
        &[
            dir.join("Cargo.toml"),
            dir.join("Cargo.lock"),
            dir.join("src"),
        ],
    );
    if reinstall || !stamp.fresh() || !binaries.values().all(|b| b.is_file()) {
        std::fs::create_dir_all(&bin_dir)
            .map_err(|e| format!("cannot create {}: {e}", bin_dir.display()))?;
        let target_dir = layout.out.join("twilight");
        for (compression, feature) in variants {
            eprintln!(
                "[interop] building the twilight probe for {}…",
                compression.as_str()
            );
            let mut build = cargo();
            build
                .args(["build", "--locked", "--manifest-path"])
                .arg(&manifest);
            build.arg("--target-dir").arg(&target_dir);
            if let Some(feature) = feature {
                build.args(["--features", feature]);
            }
            let log = layout
                .logs()
                .join(format!("setup-twilight-{}.log", compression.as_str()));
            run_logged(build.current_dir(&dir), &log)?;
            let built = target_dir.join("debug").join("interop-twilight");
            let copy = &binaries[&compression];
            std::fs::copy(&built, copy).map_err(|e| {
                format!("cannot copy {} to {}: {e}", built.display(), copy.display())
            })?;
        }
        stamp.write()?;
    }
    let version = locked_version(&dir.join("Cargo.toml"), "twilight-gateway")
        .unwrap_or_else(|| "?".to_owned());
    Ok(Probe {
        version: format!("twilight-gateway {version}"),
        launch: Launch::PerCompression(binaries),
    })
}

/// `npm ci` in `interop/<client>`; the probe reports `package`'s installed version.
fn node(layout: &Layout, client: Client, package: &str, reinstall: bool) -> Result<Probe, String> {
    let dir = layout.probe_dir(client);
    require(&dir, "package.json")?;
    require(&dir, "package-lock.json")?;
    let script = require(&dir, "probe.mjs")?;
    let stamp = Stamp::new(
        layout,
        client.name(),
        &[dir.join("package.json"), dir.join("package-lock.json")],
    );
    if reinstall || !stamp.fresh() || !dir.join("node_modules").is_dir() {
        eprintln!("[interop] npm ci in {}…", dir.display());
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir);
        let log = layout.logs().join(format!("setup-{}.log", client.name()));
        run_logged(&mut npm, &log)?;
        stamp.write()?;
    }
    let installed = dir.join("node_modules").join(package).join("package.json");
    let version = std::fs::read_to_string(installed)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    Ok(Probe {
        version: format!("{package} {version}"),
        launch: Launch::Script {
            interpreter: PathBuf::from("node"),
            script,
        },
    })
}

/// A venv at `target/interop/venv` with `interop/hikari/requirements.txt`.
fn hikari(layout: &Layout, reinstall: bool) -> Result<Probe, String> {
    let dir = layout.probe_dir(Client::Hikari);
    let requirements = require(&dir, "requirements.txt")?;
    let script = require(&dir, "probe.py")?;
    let venv = layout.out.join("venv");
    let python = venv.join("bin").join("python");
    let stamp = Stamp::new(layout, "hikari", std::slice::from_ref(&requirements));
    if reinstall || !stamp.fresh() || !python.is_file() {
        let log = layout.logs().join("setup-hikari.log");
        if !python.is_file() {
            eprintln!("[interop] creating {}…", venv.display());
            let mut create = Command::new("python3");
            create.args(["-m", "venv"]).arg(&venv);
            run_logged(&mut create, &log)?;
        }
        eprintln!("[interop] pip install -r {}…", requirements.display());
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "install", "--disable-pip-version-check", "-r"])
            .arg(&requirements);
        run_logged(&mut pip, &log)?;
        stamp.write()?;
    }
    let version = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('hikari'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned());
    Ok(Probe {
        version: format!("hikari {version}"),
        launch: Launch::Script {
            interpreter: python,
            script,
        },
    })
}

/// `dir/name`, or the "probe missing" error.
fn require(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("probe missing: {} does not exist", path.display()))
    }
}

/// The cargo that runs xtask.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// Runs `command` with its output appended to `log`; on failure, an error quoting the log's end.
fn run_logged(command: &mut Command, log: &Path) -> Result<(), String> {
    let open = || {
        File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))
    };
    let status = command
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .status()
        .map_err(|e| {
            format!(
                "install failed: cannot run {:?}: {e}",
                command.get_program()
            )
        })?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join(" / ");
    Err(format!(
        "install failed: {:?} exited with {status} (log {}): {tail}",
        command.get_program(),
        log.display()
    ))
}

/// The version of package `name` that the `Cargo.lock` beside `manifest` pins (read from the
/// lock file itself: `cargo metadata --offline` fails when an optional dependency was never
/// downloaded).
fn locked_version(manifest: &Path, name: &str) -> Option<String> {
    let lock = std::fs::read_to_string(manifest.with_file_name("Cargo.lock")).ok()?;
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    lines.find(|line| line.trim() == wanted)?;
    let version = lines.next()?.trim().strip_prefix("version = \"")?;
    Some(version.trim_end_matches('"').to_owned())
}

/// A record that an install step ran for inputs with this content.
#[derive(Debug)]
struct Stamp {
    /// `target/interop/stamps/<name>`.
    path: PathBuf,
    /// Hash of the inputs' paths and contents.
    value: String,
}

impl Stamp {
    /// The stamp of `name` for `inputs` (files, or folders walked in order).
    fn new(layout: &Layout, name: &str, inputs: &[PathBuf]) -> Self {
        let mut hash = DefaultHasher::new();
        for input in inputs {
            hash_path(&mut hash, input);
        }
        Self {
            path: layout.out.join("stamps").join(name),
            value: format!("{:016x}\n", hash.finish()),
        }
    }

    /// Whether the step already ran for the same inputs.
    fn fresh(&self) -> bool {
        std::fs::read_to_string(&self.path).is_ok_and(|v| v == self.value)
    }

    /// Records that the step ran.
    fn write(&self) -> Result<(), String> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&self.path, &self.value)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

/// Feeds a file's path and content, or a folder's entries in name order, to `hash`.
fn hash_path(hash: &mut DefaultHasher, path: &Path) {
    path.hash(hash);
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for entry in entries {
            hash_path(hash, &entry);
        }
    } else {
        std::fs::read(path).unwrap_or_default().hash(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::{Client, Layout, prepare};

    #[test]
    fn a_missing_probe_is_an_error_not_a_crash() {
        let root = std::env::temp_dir().join(format!("xtask-interop-{}", std::process::id()));
        let layout = Layout::new(&root);
        for client in Client::ALL {
            let error = prepare(&layout, client, false).err().unwrap_or_default();
            assert!(error.starts_with("probe missing: "), "{error}");
        }
        assert!(!root.exists(), "nothing is created for a missing probe");
    }
}
