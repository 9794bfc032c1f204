//! Shared bits of the emulator tests in `tests/`: where the images are, and the timeouts.
//!
//! The tests need images built by `cargo xtask build`; `cargo xtask test` builds them and
//! points `MICA_ARTIFACTS` at them (and `MICA_LOG_DIR` at the directory for failure logs).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

/// Environment variable naming the directory holding `mica.elf`, `mica.iso`, `mica-test.elf`
/// and `mica-test.iso`.
pub const ARTIFACTS_ENV: &str = "MICA_ARTIFACTS";

/// Timeout of a QEMU run.
pub const QEMU_TIMEOUT: Duration = Duration::from_secs(90);

/// Timeout of a Bochs run (Bochs is slower, and GRUB runs first).
pub const BOCHS_TIMEOUT: Duration = Duration::from_secs(240);

/// The path of `file` in the artifacts directory.
///
/// # Panics
/// If `MICA_ARTIFACTS` is unset (the tests were not started by `cargo xtask test`) or the file
/// is missing.
pub fn artifact(file: &str) -> PathBuf {
    let Some(dir) = std::env::var_os(ARTIFACTS_ENV).filter(|d| !d.is_empty()) else {
        panic!("{ARTIFACTS_ENV} is not set: run via `cargo xtask test`");
    };
    let path = PathBuf::from(dir).join(file);
    assert!(
        path.is_file(),
        "{} is missing: run via `cargo xtask test` (it builds the images)",
        path.display()
    );
    path
}

/// The release hypervisor ELF (Multiboot1 and Multiboot2 headers).
/// The artifacts folder (`MICA_ARTIFACTS`), for files a test makes itself (scenario ISOs).
pub fn artifact_dir() -> PathBuf {
    match std::env::var_os(ARTIFACTS_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => panic!("{ARTIFACTS_ENV} is not set: run via `cargo xtask test`"),
    }
}

pub fn mica_elf() -> PathBuf {
    artifact("mica.elf")
}

/// The GRUB ISO booting `mica.elf` with Multiboot2.
pub fn mica_iso() -> PathBuf {
    artifact("mica.iso")
}

/// The hypervisor built with `--features test-hooks` (`test=fault`, `test=panic`).
/// The test guest kernel (`tests/guests/test_guest`), given to the hypervisor as a module.
pub fn test_guest_elf() -> PathBuf {
    artifact("guests/test_guest.elf")
}

pub fn mica_test_elf() -> PathBuf {
    artifact("mica-test.elf")
}
