//! Making sure the tools a command needs are installed: Debian packages, the bare-metal rustup
//! target, cargo-fuzz. A fresh Debian machine gets everything from `cargo xtask ci`.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::process::{self, Result, bail};

/// The bare-metal target the hypervisor is built for.
pub const BARE_METAL_TARGET: &str = "x86_64-unknown-none";

/// Debian packages by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `grub-mkrescue`, `grub-file`: building the ISOs and checking the Multiboot headers.
    Grub,
    /// `qemu-system-x86_64`.
    Qemu,
    /// `bochs` with its BIOS images.
    Bochs,
}

impl Need {
    /// The packages for this purpose.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Self::Grub => &["grub-pc-bin", "grub-common", "xorriso", "mtools"],
            Self::Qemu => &["qemu-system-x86"],
            Self::Bochs => &["bochs", "bochsbios", "vgabios"],
        }
    }
}

/// `bochs` depends on one GUI plugin package and apt would pick the wxWidgets one; Mica runs
/// Bochs headless (its built-in RFB display), so when `bochs` is installed the small terminal
/// plugin is installed with it to satisfy that dependency.
const BOCHS_GUI_STAND_IN: &str = "bochs-term";

/// Whether `apt-get update` already ran in this process.
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Installs whichever packages of `needs` are missing (see the module docs for how).
pub fn ensure_packages(needs: &[Need]) -> Result<()> {
    let wanted: BTreeSet<&str> = needs.iter().flat_map(|n| n.packages()).copied().collect();
    if !process::succeeds(Command::new("dpkg-query").arg("--version")) {
        eprintln!(
            "note: not a Debian system (no dpkg-query); make sure these are installed: {}",
            wanted.iter().copied().collect::<Vec<_>>().join(" ")
        );
        return Ok(());
    }
    let mut missing: Vec<&str> = wanted.into_iter().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if missing.contains(&"bochs") && !missing.contains(&BOCHS_GUI_STAND_IN) {
        missing.push(BOCHS_GUI_STAND_IN);
    }
    install(&missing)
}

/// `dpkg-query` says the package is installed.
fn is_installed(package: &str) -> bool {
    process::output(
        Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Status}"])
            .arg(package),
    )
    .is_ok_and(|status| status.trim() == "installed")
}

fn is_root() -> bool {
    process::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// `apt-get update` once per process, then `apt-get install`, as root or through `sudo -n`.
fn install(packages: &[&str]) -> Result<()> {
    let install_line = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    let sudo = if is_root() {
        false
    } else if process::succeeds(Command::new("sudo").args(["-n", "true"])) {
        true
    } else {
        bail!(
            "Missing packages: {}. Install them with:\n  \
             sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive {install_line}'",
            packages.join(" ")
        );
    };
    let apt = |args: &[&str]| {
        let mut command = if sudo {
            let mut c = Command::new("sudo");
            c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            c
        } else {
            let mut c = Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        command.args(args);
        command
    };
    eprintln!("note: installing missing packages: {}", packages.join(" "));
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        process::run(&mut apt(&["update"]))?;
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    process::run(&mut apt(&args))
}

/// Adds the `x86_64-unknown-none` target to the active toolchain if it is missing.
pub fn ensure_bare_metal_target() -> Result<()> {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"])
        .current_dir(crate::workspace::root());
    match process::output(&mut list) {
        Ok(installed) if installed.lines().any(|l| l.trim() == BARE_METAL_TARGET) => Ok(()),
        Ok(_) => process::run(
            Command::new("rustup")
                .args(["target", "add", BARE_METAL_TARGET])
                .current_dir(crate::workspace::root()),
        ),
        Err(err) => {
            eprintln!(
                "note: cannot ask rustup for installed targets ({err}); assuming \
                 {BARE_METAL_TARGET} is available"
            );
            Ok(())
        }
    }
}

/// Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) if `cargo fuzz` does not run.
pub fn ensure_cargo_fuzz() -> Result<()> {
    if process::succeeds(process::cargo().args(["fuzz", "--version"])) {
        return Ok(());
    }
    process::run(process::cargo().args(["install", "cargo-fuzz", "--locked"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_sets_cover_the_emulators_and_grub() {
        assert!(Need::Grub.packages().contains(&"grub-pc-bin"));
        assert!(Need::Grub.packages().contains(&"xorriso"));
        assert!(Need::Grub.packages().contains(&"mtools"));
        assert_eq!(Need::Qemu.packages(), ["qemu-system-x86"]);
        assert!(Need::Bochs.packages().contains(&"bochsbios"));
        assert!(Need::Bochs.packages().contains(&"vgabios"));
    }

    #[test]
    fn dpkg_query_knows_a_package_that_is_always_there() {
        if process::succeeds(Command::new("dpkg-query").arg("--version")) {
            assert!(is_installed("dpkg"));
            assert!(!is_installed("no-such-package-mica-xtask"));
        }
    }
}
