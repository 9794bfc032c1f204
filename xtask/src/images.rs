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
}

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
    let target = workspace::target_dir();
    let hooks_target = target.join(TEST_HOOKS_FEATURE);
    cargo_build(&target, debug, false)?;
    cargo_build(&hooks_target, debug, true)?;

    let out = workspace::artifacts_dir();
    fs::create_dir_all(&out).map_err(io_err("create", &out))?;
    let images = Images {
        elf: out.join("mica.elf"),
        iso: out.join("mica.iso"),
        test_elf: out.join("mica-test.elf"),
        test_iso: out.join("mica-test.iso"),
    };
    let built = |dir: &Path| {
        dir.join(BARE_METAL_TARGET)
            .join(profile)
            .join(HYPERVISOR_PACKAGE)
    };
    copy(&built(&target), &images.elf)?;
    copy(&built(&hooks_target), &images.test_elf)?;

    check_multiboot(&images.elf)?;
    check_multiboot(&images.test_elf)?;
    make_iso(&images.elf, "", &images.iso)?;
    make_iso(&images.test_elf, "", &images.test_iso)?;

    println!("images ({profile}) in {}:", out.display());
    for path in [&images.elf, &images.iso, &images.test_elf, &images.test_iso] {
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
        command.arg("--release");
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

/// The GRUB configuration: no menu delay, console on the serial port, one Multiboot2 entry.
///
/// # Errors
/// A command line GRUB cannot be given (a word containing a single quote).
pub fn grub_cfg(cmdline: &str) -> Result<String> {
    let mut entry = String::from("multiboot2 /boot/mica.elf");
    for word in cmdline.split_whitespace() {
        entry.push(' ');
        entry.push_str(&grub_word(word)?);
    }
    Ok(format!(
        "set timeout=0\n\
         set default=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         menuentry \"Mica\" {{\n    {entry}\n    boot\n}}\n"
    ))
}

/// One command-line word as GRUB's parser must see it: single-quoted unless plain.
fn grub_word(word: &str) -> Result<String> {
    if word.contains('\'') {
        bail!("Kernel command line word {word:?} contains a single quote, which GRUB cannot pass");
    }
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "=,._:/+-".contains(c));
    Ok(if plain {
        word.to_owned()
    } else {
        format!("'{word}'")
    })
}

/// Makes a GRUB rescue ISO at `iso` that boots `elf` (as `/boot/mica.elf`) with `cmdline`.
pub fn make_iso(elf: &Path, cmdline: &str, iso: &Path) -> Result<()> {
    let stem = iso
        .file_stem()
        .map_or_else(|| "iso".into(), |s| s.to_string_lossy().into_owned());
    let staging = iso.with_file_name(format!("{stem}.root"));
    match fs::remove_dir_all(&staging) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => bail!("Cannot clear {}: {err}", staging.display()),
    }
    let grub_dir = staging.join("boot").join("grub");
    fs::create_dir_all(&grub_dir).map_err(io_err("create", &grub_dir))?;
    copy(elf, &staging.join("boot").join("mica.elf"))?;
    let cfg = grub_dir.join("grub.cfg");
    fs::write(&cfg, grub_cfg(cmdline)?).map_err(io_err("write", &cfg))?;
    // grub-mkrescue is chatty (xorriso progress): show its output only if it fails.
    process::output(
        Command::new("grub-mkrescue")
            .arg("-o")
            .arg(iso)
            .arg(&staging),
    )?;
    let _ = fs::remove_dir_all(&staging);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_one_multiboot2_entry_on_serial() {
        let cfg = grub_cfg("").expect("empty");
        let lines: Vec<&str> = cfg.lines().map(str::trim).collect();
        for expected in [
            "set timeout=0",
            "serial --unit=0 --speed=115200",
            "terminal_input serial console",
            "terminal_output serial console",
            "multiboot2 /boot/mica.elf",
            "boot",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing in\n{cfg}");
        }
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("menuentry")).count(),
            1
        );
    }

    #[test]
    fn command_line_words_are_quoted_for_grub() {
        let cfg = grub_cfg("test=fault  log=debug;x").expect("quotable");
        assert!(
            cfg.contains("multiboot2 /boot/mica.elf test=fault 'log=debug;x'\n"),
            "{cfg}"
        );
        assert!(grub_cfg("it's").is_err());
    }
}
