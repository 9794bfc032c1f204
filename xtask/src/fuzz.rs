//! `cargo xtask fuzz`: run every cargo-fuzz target of the workspace for a bounded time.
//!
//! cargo-fuzz needs nightly-only rustc flags (`-Zsanitizer=address`, sanitizer coverage
//! passes). The toolchain is pinned to stable (rust-toolchain.toml), so the runs set
//! `RUSTC_BOOTSTRAP=1`, which lets the pinned stable compiler accept them. The default
//! AddressSanitizer works this way: the stable x86_64 Linux standard library component ships
//! the ASan runtime.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::process::{self, Result, bail};
use crate::tools;
use crate::workspace;

/// Seconds per target in a smoke run (`--smoke`, and `cargo xtask test`).
pub const SMOKE_SECONDS: u64 = 20;
/// Seconds per target otherwise.
pub const DEFAULT_SECONDS: u64 = 300;

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Short run: 20 s per target (unless --seconds says otherwise).
    #[arg(long)]
    pub smoke: bool,
    /// Seconds per target (libFuzzer -max_total_time) [default: 300, or 20 with --smoke].
    #[arg(long, value_name = "N")]
    pub seconds: Option<u64>,
    /// Memory limit per fuzzer process in MiB (libFuzzer -rss_limit_mb).
    #[arg(long, value_name = "MB", default_value_t = 2048)]
    pub rss_limit_mb: u64,
    /// Run only this fuzz target (default: every target of every project).
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
}

impl FuzzArgs {
    /// The smoke run `cargo xtask test` does.
    pub fn smoke() -> Self {
        Self {
            smoke: true,
            seconds: None,
            rss_limit_mb: 2048,
            target: None,
        }
    }
}

/// Runs the selected targets one after another; the first crash fails the command.
pub fn run(args: &FuzzArgs) -> Result<()> {
    let projects = workspace::fuzz_projects();
    if projects.is_empty() {
        println!(
            "note: no cargo-fuzz projects yet (looked for */fuzz/Cargo.toml and */*/fuzz/Cargo.toml); nothing to fuzz"
        );
        return Ok(());
    }
    tools::ensure_cargo_fuzz()?;
    let seconds = args.seconds.unwrap_or(if args.smoke {
        SMOKE_SECONDS
    } else {
        DEFAULT_SECONDS
    });

    let mut ran = 0usize;
    let mut all_targets = Vec::new();
    for project in &projects {
        let targets = list_targets(project)?;
        all_targets.extend(targets.iter().cloned());
        for target in targets {
            if args.target.as_ref().is_some_and(|wanted| *wanted != target) {
                continue;
            }
            run_target(project, &target, seconds, args.rss_limit_mb)?;
            ran += 1;
        }
    }
    if let Some(wanted) = &args.target
        && ran == 0
    {
        bail!(
            "No fuzz target named {wanted:?}; targets: {}",
            all_targets.join(", ")
        );
    }
    println!("fuzz: {ran} target(s) ran {seconds} s each without a crash");
    Ok(())
}

/// `cargo fuzz` for `project`, run from the folder that holds it.
fn cargo_fuzz(project: &Path) -> process::Result<std::process::Command> {
    let Some(parent) = project.parent() else {
        bail!("Fuzz project {} has no parent folder", project.display());
    };
    let mut command = process::cargo();
    command.current_dir(parent).env("RUSTC_BOOTSTRAP", "1");
    Ok(command)
}

fn list_targets(project: &Path) -> Result<Vec<String>> {
    let mut command = cargo_fuzz(project)?;
    command.args(["fuzz", "list", "--fuzz-dir"]).arg(project);
    let listed = process::output(&mut command)?;
    Ok(listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Build folder of a project's fuzz targets: `target/fuzz/<path with '-' for '/'>`, so the
/// source tree stays clean and projects do not share (incompatible) build settings.
fn fuzz_target_dir(project: &Path) -> PathBuf {
    let root = workspace::root();
    let rel = project.strip_prefix(&root).unwrap_or(project);
    let name: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    workspace::target_dir().join("fuzz").join(name.join("-"))
}

fn artifacts(project: &Path, target: &str) -> BTreeSet<PathBuf> {
    let dir = project.join("artifacts").join(target);
    fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn run_target(project: &Path, target: &str, seconds: u64, rss_limit_mb: u64) -> Result<()> {
    let before = artifacts(project, target);
    let mut command = cargo_fuzz(project)?;
    command
        .args(["fuzz", "run", "--fuzz-dir"])
        .arg(project)
        .arg("--target-dir")
        .arg(fuzz_target_dir(project))
        .arg(target)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={rss_limit_mb}"));
    match process::run(&mut command) {
        Ok(()) => Ok(()),
        Err(err) => {
            let new: Vec<String> = artifacts(project, target)
                .difference(&before)
                .map(|p| p.display().to_string())
                .collect();
            if new.is_empty() {
                Err(err)
            } else {
                bail!(
                    "Fuzz target {target} found a crash; reproduce with \
                     `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir {} --target-dir {} {target} <artifact>`. \
                     Artifact(s):\n  {}",
                    project.display(),
                    fuzz_target_dir(project).display(),
                    new.join("\n  ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_builds_go_under_target_fuzz() {
        let project = workspace::root().join("vmbus").join("ring").join("fuzz");
        assert_eq!(
            fuzz_target_dir(&project),
            workspace::target_dir().join("fuzz").join("vmbus-ring-fuzz")
        );
    }

    #[test]
    fn new_artifacts_are_told_apart_from_old_ones() {
        let project = std::env::temp_dir().join(format!("xtask-artifacts-{}", std::process::id()));
        let dir = project.join("artifacts").join("ring");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("crash-old"), b"x").expect("write");
        let before = artifacts(&project, "ring");
        fs::write(dir.join("crash-new"), b"y").expect("write");
        let after = artifacts(&project, "ring");
        let new: Vec<&PathBuf> = after.difference(&before).collect();
        assert_eq!(new, [&dir.join("crash-new")]);
        assert!(artifacts(&project, "other").is_empty());
        fs::remove_dir_all(project).expect("cleanup");
    }
}
