//! GRUB rescue ISOs: the hypervisor image booted with Multiboot2, a command line and boot
//! modules. Bochs can only boot CD images, so every Bochs scenario is an ISO; `cargo xtask
//! build` makes the plain ones with the same code.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// What goes on the ISO.
#[derive(Debug, Clone)]
pub struct IsoSpec {
    /// The hypervisor ELF (copied as `/boot/mica.elf`).
    pub elf: PathBuf,
    /// The hypervisor command line.
    pub cmdline: String,
    /// Boot modules: file and the module's command line (`label args...`).
    pub modules: Vec<(PathBuf, String)>,
}

impl IsoSpec {
    /// An ISO booting `elf` with `cmdline` and no modules.
    pub fn new(elf: impl Into<PathBuf>, cmdline: impl Into<String>) -> Self {
        Self {
            elf: elf.into(),
            cmdline: cmdline.into(),
            modules: Vec::new(),
        }
    }

    /// Adds a boot module.
    #[must_use]
    pub fn module(mut self, file: impl Into<PathBuf>, cmdline: impl Into<String>) -> Self {
        self.modules.push((file.into(), cmdline.into()));
        self
    }

    /// The GRUB configuration: no menu delay, console on the serial port, one entry.
    ///
    /// # Errors
    /// A command line GRUB cannot pass (a word containing a single quote).
    pub fn grub_cfg(&self) -> Result<String, HarnessError> {
        let mut entry = String::from("multiboot2 /boot/mica.elf");
        push_words(&mut entry, &self.cmdline)?;
        for (index, (_, cmdline)) in self.modules.iter().enumerate() {
            entry.push_str(&format!("\n    module2 /boot/module{index}"));
            push_words(&mut entry, cmdline)?;
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

    /// Writes the ISO to `iso` with `grub-mkrescue` (packages `grub-pc-bin`, `xorriso`,
    /// `mtools`).
    ///
    /// # Errors
    /// Missing inputs, I/O errors, or `grub-mkrescue` failing (its output is in the error).
    pub fn write(&self, iso: &Path) -> Result<(), HarnessError> {
        let stem = iso
            .file_stem()
            .map_or_else(|| "iso".into(), |s| s.to_string_lossy().into_owned());
        let staging = iso.with_file_name(format!("{stem}.root"));
        match fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(HarnessError::Io {
                    path: staging,
                    source,
                });
            }
        }
        let boot = staging.join("boot");
        let grub = boot.join("grub");
        fs::create_dir_all(&grub).map_err(HarnessError::io(&grub))?;
        copy(&self.elf, &boot.join("mica.elf"))?;
        for (index, (file, _)) in self.modules.iter().enumerate() {
            copy(file, &boot.join(format!("module{index}")))?;
        }
        let cfg = grub.join("grub.cfg");
        fs::write(&cfg, self.grub_cfg()?).map_err(HarnessError::io(&cfg))?;
        let output = Command::new("grub-mkrescue")
            .arg("-o")
            .arg(iso)
            .arg(&staging)
            .output()
            .map_err(|source| HarnessError::Spawn {
                program: "grub-mkrescue".into(),
                source,
            })?;
        let _ = fs::remove_dir_all(&staging);
        if !output.status.success() {
            return Err(HarnessError::Tool {
                program: "grub-mkrescue".into(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(())
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), HarnessError> {
    if !from.is_file() {
        return Err(HarnessError::MissingFile(from.to_path_buf()));
    }
    fs::copy(from, to).map(drop).map_err(HarnessError::io(to))
}

fn push_words(line: &mut String, words: &str) -> Result<(), HarnessError> {
    for word in words.split_whitespace() {
        line.push(' ');
        line.push_str(&grub_word(word)?);
    }
    Ok(())
}

/// One command-line word as GRUB's parser must see it: single-quoted unless plain.
fn grub_word(word: &str) -> Result<String, HarnessError> {
    if word.contains('\'') {
        return Err(HarnessError::UnusablePath {
            path: word.into(),
            reason: "GRUB cannot pass a command-line word containing a single quote",
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_one_multiboot2_entry_on_serial() {
        let cfg = IsoSpec::new("mica.elf", "").grub_cfg().expect("empty");
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
    fn words_are_quoted_and_modules_listed() {
        let cfg = IsoSpec::new("mica.elf", "test=fault  log=debug;x")
            .module("guest.elf", "g1 hello")
            .module("guest.elf", "g2 spin")
            .grub_cfg()
            .expect("quotable");
        assert!(
            cfg.contains("multiboot2 /boot/mica.elf test=fault 'log=debug;x'\n"),
            "{cfg}"
        );
        assert!(cfg.contains("module2 /boot/module0 g1 hello\n"), "{cfg}");
        assert!(cfg.contains("module2 /boot/module1 g2 spin\n"), "{cfg}");
        assert!(IsoSpec::new("mica.elf", "it's").grub_cfg().is_err());
    }
}
