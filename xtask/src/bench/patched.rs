//! Our probe built once more against tungstenite with
//! `docs/patches/tungstenite-0.30-release-large-read-buffer.patch` applied, so that the report
//! says what that upstream fix buys, measured beside the build a bot gets today.
//!
//! The patched source is a copy of the registry's tungstenite under `target/bench-patched/`, put in
//! place for one `cargo build` with `--config patch.crates-io.tungstenite.path=…`; the workspace's
//! `Cargo.lock`, which cargo rewrites for a path patch, is restored afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The patch, relative to the workspace root.
const PATCH: &str = "docs/patches/tungstenite-0.30-release-large-read-buffer.patch";

/// Builds `shard-probe` against the patched tungstenite; returns the binary.
pub(crate) fn build(root: &Path, target: &Path) -> Result<PathBuf, String> {
    eprintln!("[bench] building our probe against tungstenite with {PATCH}…");
    let source = tungstenite_source(root)?;
    let dir = target.join("bench-patched");
    let copy = dir.join("tungstenite");
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    }
    copy_dir(&source, &copy)?;
    let patch = std::fs::read_to_string(root.join(PATCH)).map_err(|e| format!("{PATCH}: {e}"))?;
    apply(&patch, &copy)?;
    let lock = root.join("Cargo.lock");
    let locked = std::fs::read(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--package", "shard-probe"])
        .arg("--config")
        .arg(format!(
            "patch.crates-io.tungstenite.path={:?}",
            copy.display().to_string()
        ))
        .arg("--target-dir")
        .arg(&dir)
        .current_dir(root)
        .status();
    std::fs::write(&lock, locked).map_err(|e| format!("{}: {e}", lock.display()))?;
    let status = status.map_err(|e| format!("cargo build (patched): {e}"))?;
    if !status.success() {
        return Err("building shard-probe against the patched tungstenite failed".into());
    }
    Ok(dir.join("release").join("shard-probe"))
}

/// The directory of the tungstenite the workspace resolves to (from `cargo metadata`).
fn tungstenite_source(root: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err("cargo metadata failed".into());
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "tungstenite")
        .and_then(|p| p["manifest_path"].as_str())
        .and_then(|m| Path::new(m).parent())
        .map(Path::to_path_buf)
        .ok_or_else(|| "tungstenite is not in the dependency graph".into())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let (path, dest) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Applies a unified diff of one file to the tree at `dir`: each hunk's old text (context and
/// `-` lines) must occur exactly once, and is replaced by its new text (context and `+` lines).
fn apply(patch: &str, dir: &Path) -> Result<(), String> {
    let file = patch
        .lines()
        .find_map(|l| l.strip_prefix("+++ b/"))
        .ok_or("the patch names no file")?;
    let path = dir.join(file);
    let mut text =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let hunks = patch.split("\n@@").skip(1);
    for hunk in hunks {
        let (mut old, mut new) = (String::new(), String::new());
        for line in hunk.lines().skip(1) {
            match line.split_at_checked(1) {
                Some((" ", rest)) => {
                    old.extend([rest, "\n"]);
                    new.extend([rest, "\n"]);
                }
                Some(("-", rest)) => old.extend([rest, "\n"]),
                Some(("+", rest)) => new.extend([rest, "\n"]),
                _ if line.is_empty() => {
                    old.push('\n');
                    new.push('\n');
                }
                _ => {}
            }
        }
        if text.matches(old.as_str()).count() != 1 {
            return Err(format!("the patch does not apply to {}", path.display()));
        }
        text = text.replacen(old.as_str(), &new, 1);
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_hunk_replaces_its_old_text_once() {
        let dir = std::env::temp_dir().join(format!("xtask-patch-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/a.rs"), "fn a() {\n    one();\n}\n").unwrap();
        let patch = "--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,3 +1,4 @@\n fn a() {\n-    one();\n+    two();\n+    three();\n }\n";
        apply(patch, &dir).unwrap();
        let text = std::fs::read_to_string(dir.join("src/a.rs")).unwrap();
        assert_eq!(text, "fn a() {\n    two();\n    three();\n}\n");
        assert!(apply(patch, &dir).is_err(), "the old text is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_shipped_patch_names_its_file_and_has_a_hunk() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let patch = std::fs::read_to_string(root.join(PATCH)).unwrap();
        assert!(patch.contains("+++ b/src/protocol/frame/mod.rs"));
        assert!(patch.contains("\n@@ "));
    }
}
