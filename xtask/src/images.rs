//! `cargo xtask build`: the hypervisor ELFs and their GRUB ISOs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, Result, bail, io_err};
use crate::tools::{self, BARE_METAL_TARGET, Need};
use crate::workspace::{self, HYPERVISOR_PACKAGE};

/// Cargo feature of `mica` that builds the test image.
pub const TEST_HOOKS_FEATURE: &str = "test-hooks";

/// The built images, all in `target/mica/`.
#[derive(Debug, Clone)]
pub struct Images {
    /// `mica.elf`.
    pub elf: PathBuf,
    /// `mica.iso` (GRUB, Multiboot2, empty command line).
    pub iso: PathBuf,
    /// `mica-test.elf` (`--features test-hooks`).
    pub test_elf: PathBuf,
    /// `mica-test.iso`.
    pub test_iso: PathBuf,
    /// `guests/test_guest.elf`: the test guest kernel, passed to the hypervisor as a module.
    pub test_guest: PathBuf,
}

/// Cargo profile of the release hypervisor image (size-optimised, LTO; see Cargo.toml).
pub const HYPERVISOR_PROFILE: &str = "hypervisor";

/// Package of the test guest kernel (`tests/guests/test_guest`).
pub const TEST_GUEST_PACKAGE: &str = "test_guest";

/// Builds both ELFs (release unless `debug`), checks their Multiboot headers, makes the ISOs
/// and prints the sizes.
pub fn build(debug: bool) -> Result<Images> {
    tools::ensure_packages(&[Need::Grub])?;
    tools::ensure_bare_metal_target()?;
    if !workspace::hypervisor_dir().join("Cargo.toml").is_file() {
        bail!(
            "{} does not exist yet: there is no hypervisor (package `{HYPERVISOR_PACKAGE}`) to build",
            workspace::hypervisor_dir().display()
        );
    }
    let profile = if debug { "debug" } else { "release" };
    // The hypervisor image uses the size-optimised `hypervisor` profile (Cargo.toml); the
    // test guest the plain release profile.
    let image_profile = if debug { "debug" } else { HYPERVISOR_PROFILE };
    let target = workspace::target_dir();
    let hooks_target = target.join(TEST_HOOKS_FEATURE);
    cargo_build(&target, debug, false)?;
    cargo_build(&hooks_target, debug, true)?;
    let mut guest = process::cargo();
    guest.args([
        "build",
        "-p",
        TEST_GUEST_PACKAGE,
        "--target",
        BARE_METAL_TARGET,
    ]);
    if !debug {
        guest.arg("--release");
    }
    guest.arg("--target-dir").arg(&target);
    process::run(&mut guest)?;

    let out = workspace::artifacts_dir();
    fs::create_dir_all(&out).map_err(io_err("create", &out))?;
    let images = Images {
        elf: out.join("mica.elf"),
        iso: out.join("mica.iso"),
        test_elf: out.join("mica-test.elf"),
        test_iso: out.join("mica-test.iso"),
        test_guest: out.join("guests").join("test_guest.elf"),
    };
    let guests = out.join("guests");
    fs::create_dir_all(&guests).map_err(io_err("create", &guests))?;
    let built = |dir: &Path| {
        dir.join(BARE_METAL_TARGET)
            .join(image_profile)
            .join(HYPERVISOR_PACKAGE)
    };
    copy(&built(&target), &images.elf)?;
    copy(&built(&hooks_target), &images.test_elf)?;
    copy(
        &target
            .join(BARE_METAL_TARGET)
            .join(profile)
            .join(TEST_GUEST_PACKAGE),
        &images.test_guest,
    )?;

    check_multiboot(&images.elf)?;
    check_multiboot(&images.test_elf)?;
    make_iso(&images.elf, "", &images.iso)?;
    make_iso(&images.test_elf, "", &images.test_iso)?;

    println!("images ({profile}) in {}:", out.display());
    for path in [
        &images.elf,
        &images.iso,
        &images.test_elf,
        &images.test_iso,
        &images.test_guest,
    ] {
        println!("  {:<16} {:>10} bytes", file_name(path), file_size(path)?);
    }
    Ok(images)
}

fn cargo_build(target_dir: &Path, debug: bool, hooks: bool) -> Result<()> {
    let mut command = process::cargo();
    command.args([
        "build",
        "-p",
        HYPERVISOR_PACKAGE,
        "--target",
        BARE_METAL_TARGET,
    ]);
    if !debug {
        command.args(["--profile", HYPERVISOR_PROFILE]);
    }
    if hooks {
        command.args(["--features", TEST_HOOKS_FEATURE]);
    }
    command.arg("--target-dir").arg(target_dir);
    process::run(&mut command)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).map(drop).map_err(|err| {
        process::Error(format!(
            "Cannot copy {} to {}: {err}",
            from.display(),
            to.display()
        ))
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Size of a file in bytes.
pub fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path).map_err(io_err("read", path))?.len())
}

/// `grub-file` must accept the ELF as both Multiboot1 (QEMU `-kernel`) and Multiboot2 (GRUB).
fn check_multiboot(elf: &Path) -> Result<()> {
    for (flag, what) in [
        ("--is-x86-multiboot", "Multiboot1"),
        ("--is-x86-multiboot2", "Multiboot2"),
    ] {
        let mut command = Command::new("grub-file");
        command.arg(flag).arg(elf);
        if !process::succeeds(&mut command) {
            bail!(
                "grub-file rejects {} as {what} (`{}` failed): the image has no valid {what} header",
                elf.display(),
                process::display(&command)
            );
        }
    }
    Ok(())
}

/// Makes a GRUB rescue ISO at `iso` that boots `elf` (as `/boot/mica.elf`) with `cmdline`.
pub fn make_iso(elf: &Path, cmdline: &str, iso: &Path) -> Result<()> {
    emu_harness::IsoSpec::new(elf, cmdline)
        .write(iso)
        .map_err(|err| process::Error(format!("Cannot make {}: {err}", iso.display())))
}

/// The root partition's boot files and the ISOs that boot Mica with them.
#[derive(Debug, Clone)]
pub struct RootImages {
    /// `root/vmlinuz`: Debian's stock kernel.
    pub kernel: PathBuf,
    /// `root/initramfs.cpio`: busybox, rootd, hvctl, the test guest, the example configs.
    pub initramfs: PathBuf,
    /// `mica-root.iso`: GRUB boots Mica, Mica boots the root to a shell on COM2.
    pub iso: PathBuf,
    /// `mica-smoke.iso`: as `mica-root.iso`, but the root runs the smoke test and powers off.
    pub smoke_iso: PathBuf,
}

/// Host target of the root partition's programs (linked statically).
pub const ROOT_PROGRAM_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The root partition's programs and where they go in the initramfs.
const ROOT_PROGRAMS: [(&str, &str); 2] = [("rootd", "/sbin/rootd"), ("hvctl", "/bin/hvctl")];
/// Kernel argument that makes the root's `/init` run the smoke test.
pub const SMOKE_ARG: &str = "mica.smoke";

/// Module command lines of the root kernel and initramfs (labels the hypervisor looks for).
pub fn root_modules(root: &RootImages, kernel_args: &str) -> Vec<(PathBuf, String)> {
    vec![
        (
            root.kernel.clone(),
            format!("linux {kernel_args}").trim().to_owned(),
        ),
        (root.initramfs.clone(), "initrd".to_owned()),
    ]
}

/// Builds rootd and hvctl (static), the root image from Debian's packages (cached),
/// `mica-root.iso`, and with `smoke` also `mica-smoke.iso`.
pub fn build_root(images: &Images, smoke: bool) -> Result<RootImages> {
    tools::ensure_packages(&[Need::Grub])?;
    let mut command = process::cargo();
    command.args(["build", "--release", "--target", ROOT_PROGRAM_TARGET]);
    for (package, _) in ROOT_PROGRAMS {
        command.args(["-p", package]);
    }
    // Static: the initramfs has no C library. Target-specific flags leave host builds (and
    // their cache) alone.
    command.env(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "-C target-feature=+crt-static",
    );
    process::run(&mut command)?;
    let built = workspace::target_dir()
        .join(ROOT_PROGRAM_TARGET)
        .join("release");
    let mut files: Vec<(PathBuf, String, u32)> = ROOT_PROGRAMS
        .iter()
        .map(|(package, dest)| (built.join(package), (*dest).to_owned(), 0o755))
        .collect();
    files.push((
        images.test_guest.clone(),
        "/lib/mica/guests/test_guest.elf".to_owned(),
        0o644,
    ));
    let out = workspace::artifacts_dir().join("root");
    let spec = crate::root_image::RootImageSpec {
        overlay: Some(workspace::root().join("root-partition").join("initramfs")),
        files,
    };
    let image = crate::root_image::build(&spec, &out)?;
    println!(
        "root image: {} {} ({} bytes), initramfs {} bytes",
        image.kernel_package,
        image.kernel_version,
        file_size(&image.kernel)?,
        file_size(&image.initramfs)?
    );
    let dir = workspace::artifacts_dir();
    let root = RootImages {
        kernel: image.kernel,
        initramfs: image.initramfs,
        iso: dir.join("mica-root.iso"),
        smoke_iso: dir.join("mica-smoke.iso"),
    };
    let mut isos = vec![(&root.iso, "")];
    if smoke {
        isos.push((&root.smoke_iso, SMOKE_ARG));
    }
    for (iso, args) in isos {
        let mut spec = emu_harness::IsoSpec::new(&images.elf, "");
        for (file, cmdline) in root_modules(&root, args) {
            spec = spec.module(file, cmdline);
        }
        spec.write(iso)
            .map_err(|err| process::Error(format!("Cannot make {}: {err}", iso.display())))?;
        println!("  {:<16} {:>10} bytes", file_name(iso), file_size(iso)?);
    }
    Ok(root)
}
