//! The workspace: where things are, which packages exist, which have loom tests, where the
//! cargo-fuzz projects are.

use std::fs;
use std::path::{Path, PathBuf};

use crate::process::{Result, bail, io_err};

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// `<root>/target`: xtask always builds images here, whatever `CARGO_TARGET_DIR` says, so the
/// paths below are stable.
pub fn target_dir() -> PathBuf {
    root().join("target")
}

/// `<root>/target/mica`: the images (`mica.elf`, `mica.iso`, `mica-test.elf`,
/// `mica-test.iso`) and the emulator test logs.
pub fn artifacts_dir() -> PathBuf {
    target_dir().join("mica")
}

/// Package name of the bare-metal hypervisor.
pub const HYPERVISOR_PACKAGE: &str = "mica";

/// Folder of the hypervisor package.
pub fn hypervisor_dir() -> PathBuf {
    root().join("hypervisor").join(HYPERVISOR_PACKAGE)
}

/// One workspace member.
#[derive(Debug, Clone)]
pub struct Package {
    /// `[package] name`.
    pub name: String,
    /// The parsed `Cargo.toml`.
    pub manifest: toml::Table,
}

impl Package {
    /// The crate declares `[target.'cfg(loom)'.dependencies]`: the marker for "has loom
    /// tests", run with `RUSTFLAGS="--cfg loom"`.
    pub fn has_loom_tests(&self) -> bool {
        declares_loom(&self.manifest)
    }
}

/// Whether a manifest has a `[target.'cfg(loom)'.dependencies]` table.
pub fn declares_loom(manifest: &toml::Table) -> bool {
    manifest
        .get("target")
        .and_then(|t| t.get("cfg(loom)"))
        .and_then(|t| t.get("dependencies"))
        .is_some_and(toml::Value::is_table)
}

fn read_manifest(path: &Path) -> Result<toml::Table> {
    let text = fs::read_to_string(path).map_err(io_err("read", path))?;
    match text.parse::<toml::Table>() {
        Ok(table) => Ok(table),
        Err(err) => bail!("Cannot parse {}: {err}", path.display()),
    }
}

/// Expands the root manifest's `workspace.members` (plain folders and `folder/*` globs, the
/// forms this workspace uses) minus `workspace.exclude`, in a stable order.
pub fn members() -> Result<Vec<Package>> {
    let root = root();
    let manifest = read_manifest(&root.join("Cargo.toml"))?;
    let workspace = manifest.get("workspace");
    let strings = |key: &str| -> Vec<String> {
        workspace
            .and_then(|w| w.get(key))
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let excluded: Vec<PathBuf> = strings("exclude").iter().map(|e| root.join(e)).collect();
    let mut dirs = Vec::new();
    for pattern in strings("members") {
        dirs.extend(expand_member(&root, &pattern)?);
    }
    dirs.sort();
    dirs.dedup();
    let mut packages = Vec::new();
    for dir in dirs {
        if excluded.contains(&dir) {
            continue;
        }
        let manifest = read_manifest(&dir.join("Cargo.toml"))?;
        let Some(name) = manifest
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
        else {
            continue; // A virtual manifest: no package of its own.
        };
        packages.push(Package { name, manifest });
    }
    Ok(packages)
}

/// Folders matching one `members` entry that hold a `Cargo.toml`.
fn expand_member(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    match pattern.strip_suffix("/*") {
        Some(prefix) if !prefix.contains('*') => Ok(subdirs_with(&root.join(prefix), "Cargo.toml")),
        _ if pattern.contains('*') => bail!(
            "Workspace member pattern {pattern:?} is not supported by xtask (only `dir` and `dir/*`)"
        ),
        _ => {
            let dir = root.join(pattern);
            Ok(if dir.join("Cargo.toml").is_file() {
                vec![dir]
            } else {
                Vec::new()
            })
        }
    }
}

/// Sorted subfolders of `dir` holding `file`. A missing `dir` has none.
fn subdirs_with(dir: &Path, file: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(file).is_file())
        .collect();
    found.sort();
    found
}

/// Names of the members with loom tests.
pub fn loom_packages() -> Result<Vec<String>> {
    Ok(members()?
        .into_iter()
        .filter(Package::has_loom_tests)
        .map(|p| p.name)
        .collect())
}

/// Whether a workspace member called `name` exists.
pub fn has_package(name: &str) -> Result<bool> {
    Ok(members()?.iter().any(|p| p.name == name))
}

/// cargo-fuzz projects: `*/*/fuzz/Cargo.toml` (a crate's own fuzz folder, e.g.
/// `vmbus/ring/fuzz`) and `*/fuzz/Cargo.toml` (one per top-level folder, e.g. `vmbus/fuzz`).
/// Returns the `fuzz` folders, sorted.
pub fn fuzz_projects() -> Vec<PathBuf> {
    fuzz_projects_under(&root())
}

fn fuzz_projects_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for top in subdirs_with_any(root) {
        if top
            .file_name()
            .is_some_and(|n| n == "target" || n == ".git")
        {
            continue;
        }
        let fuzz = top.join("fuzz");
        if fuzz.join("Cargo.toml").is_file() {
            found.push(fuzz);
        }
        for krate in subdirs_with_any(&top) {
            let fuzz = krate.join("fuzz");
            if fuzz.join("Cargo.toml").is_file() && !found.contains(&fuzz) {
                found.push(fuzz);
            }
        }
    }
    found.sort();
    found
}

fn subdirs_with_any(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loom_marker_is_the_cfg_loom_dependency_table() {
        let with: toml::Table = "[package]\nname = \"ring\"\n\
             [target.'cfg(loom)'.dependencies]\nloom = { workspace = true }\n"
            .parse()
            .expect("toml");
        assert!(declares_loom(&with));
        let without: toml::Table = "[package]\nname = \"x\"\n[dependencies]\nloom = \"0.7\"\n\
             [target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n"
            .parse()
            .expect("toml");
        assert!(!declares_loom(&without));
    }

    #[test]
    fn this_workspace_has_xtask_and_the_harness() {
        let members = members().expect("workspace parses");
        let names: Vec<&str> = members.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"xtask"), "{names:?}");
        assert!(names.contains(&"emu_harness"), "{names:?}");
        assert!(
            !members
                .iter()
                .any(|p| p.name == "xtask" && p.has_loom_tests())
        );
    }

    #[test]
    fn fuzz_projects_are_found_at_both_depths() {
        let root =
            std::env::temp_dir().join(format!("xtask-fuzz-discovery-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in [
            "vmbus/ring/fuzz",
            "vmbus/fuzz",
            "hypervisor/hypercall/fuzz",
            "boot/none",
        ] {
            fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        for manifest in ["vmbus/ring/fuzz", "vmbus/fuzz", "hypervisor/hypercall/fuzz"] {
            fs::write(root.join(manifest).join("Cargo.toml"), "").expect("write");
        }
        // A fuzz folder without a manifest is not a project.
        fs::create_dir_all(root.join("boot/none/fuzz")).expect("mkdir");
        let found = fuzz_projects_under(&root);
        let rel: Vec<String> = found
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            rel,
            ["hypervisor/hypercall/fuzz", "vmbus/fuzz", "vmbus/ring/fuzz"]
        );
        fs::remove_dir_all(root).expect("cleanup");
    }
}
