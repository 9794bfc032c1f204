//! QEMU configuration and command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// I/O port of QEMU's `isa-debug-exit` device: writing `v` there ends QEMU with status
/// `(v << 1) | 1`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// How QEMU loads the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuBoot {
    /// `-kernel ELF -append CMDLINE`: QEMU's own Multiboot1 loader.
    Kernel {
        /// The hypervisor ELF (needs the Multiboot1 a.out kludge).
        elf: PathBuf,
        /// Kernel command line (`-append`).
        cmdline: String,
        /// Multiboot modules (`-initrd "a args,b args"`), in order: file and the module's
        /// command line after the file name. Paths must not contain commas.
        modules: Vec<(PathBuf, String)>,
    },
    /// `-cdrom ISO`: a GRUB rescue ISO, loading the image with Multiboot2.
    Iso(PathBuf),
}

/// Where QEMU sends the first serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialSink {
    /// `-serial file:PATH`.
    File(PathBuf),
    /// `-serial stdio`: the terminal the caller inherited.
    Stdio,
}

/// One QEMU run: machine, CPU model, memory, boot path and extra arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// The QEMU binary (default `qemu-system-x86_64`, looked up in `PATH`).
    pub binary: PathBuf,
    /// `-machine` (default `pc`).
    pub machine: String,
    /// `-cpu` (default `EPYC`: SVM with NPT under TCG).
    pub cpu: String,
    /// `-m`, in MiB (default 256).
    pub memory_mib: u32,
    /// Kernel or ISO boot.
    pub boot: QemuBoot,
    /// `-icount shift=0,sleep=off`: the guest TSC counts emulated instructions, which makes
    /// `rdtsc` deltas exact and repeatable instruction counts.
    pub icount: bool,
    /// A second serial port (COM2, the root partition's console) sharing the first one's
    /// sink: both streams interleave in one log or terminal (a QEMU mux chardev; on a
    /// terminal, keyboard input goes to COM2, and Ctrl-A c switches).
    pub two_serial_ports: bool,
    /// Further arguments, appended last.
    pub extra_args: Vec<String>,
}

impl QemuConfig {
    fn with_boot(boot: QemuBoot) -> Self {
        Self {
            binary: PathBuf::from("qemu-system-x86_64"),
            machine: "pc".to_owned(),
            cpu: "EPYC".to_owned(),
            memory_mib: 256,
            boot,
            icount: false,
            two_serial_ports: false,
            extra_args: Vec::new(),
        }
    }

    /// Boots `elf` through QEMU's Multiboot1 loader with `cmdline`, on the defaults
    /// (`pc`, `EPYC`, 256 MiB).
    pub fn kernel(elf: impl Into<PathBuf>, cmdline: impl Into<String>) -> Self {
        Self::with_boot(QemuBoot::Kernel {
            elf: elf.into(),
            cmdline: cmdline.into(),
            modules: Vec::new(),
        })
    }

    /// Boots a GRUB ISO from the CD-ROM drive, on the defaults (`pc`, `EPYC`, 256 MiB).
    pub fn iso(iso: impl Into<PathBuf>) -> Self {
        Self::with_boot(QemuBoot::Iso(iso.into()))
    }

    /// Adds a Multiboot module with its command line (only for `-kernel` boots; an ISO
    /// carries its modules itself, see [`crate::IsoSpec`]).
    #[must_use]
    pub fn module(mut self, file: impl Into<PathBuf>, cmdline: impl Into<String>) -> Self {
        if let QemuBoot::Kernel { modules, .. } = &mut self.boot {
            modules.push((file.into(), cmdline.into()));
        }
        self
    }

    /// Sets the CPU model.
    #[must_use]
    pub fn cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = cpu.into();
        self
    }

    /// Sets the memory size in MiB.
    #[must_use]
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Turns instruction counting (`-icount shift=0,sleep=off`) on or off.
    #[must_use]
    pub fn icount(mut self, on: bool) -> Self {
        self.icount = on;
        self
    }

    /// Adds COM2 on the same sink as COM1 (see [`Self::two_serial_ports`]).
    #[must_use]
    pub fn two_serial_ports(mut self, on: bool) -> Self {
        self.two_serial_ports = on;
        self
    }

    /// Appends one extra argument.
    #[must_use]
    pub fn extra_arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Files the run reads (image, ISO, modules): checked before starting.
    pub fn input_files(&self) -> Vec<&Path> {
        match &self.boot {
            QemuBoot::Kernel { elf, modules, .. } => core::iter::once(elf.as_path())
                .chain(modules.iter().map(|(path, _)| path.as_path()))
                .collect(),
            QemuBoot::Iso(iso) => vec![iso.as_path()],
        }
    }

    /// The full argument list (without the binary), serial port sent to `serial`.
    ///
    /// # Errors
    /// A path that is not UTF-8, or a module path containing a comma (QEMU's `-initrd`
    /// separator).
    pub fn args(&self, serial: &SerialSink) -> Result<Vec<OsString>, HarnessError> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &str| args.push(OsString::from(a));
        push("-machine");
        push(&self.machine);
        push("-cpu");
        push(&self.cpu);
        push("-m");
        push(&format!("{}M", self.memory_mib));
        push("-display");
        push("none");
        push("-no-reboot");
        if self.two_serial_ports {
            push("-chardev");
            match serial {
                SerialSink::File(path) => push(&format!("file,id=com,mux=on,path={}", utf8(path)?)),
                SerialSink::Stdio => push("stdio,id=com,mux=on,signal=off"),
            }
            for _ in 0..2 {
                push("-serial");
                push("chardev:com");
            }
            push("-monitor");
            push("none");
        } else {
            push("-serial");
            match serial {
                SerialSink::File(path) => push(&format!("file:{}", utf8(path)?)),
                SerialSink::Stdio => push("stdio"),
            }
        }
        push("-device");
        push(&format!(
            "isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"
        ));
        if self.icount {
            push("-icount");
            push("shift=0,sleep=off");
        }
        match &self.boot {
            QemuBoot::Kernel {
                elf,
                cmdline,
                modules,
            } => {
                push("-kernel");
                push(utf8(elf)?);
                push("-append");
                push(cmdline);
                if !modules.is_empty() {
                    let mut list = Vec::with_capacity(modules.len());
                    for (module, args) in modules {
                        let text = utf8(module)?;
                        if text.contains(',') || text.contains(' ') {
                            return Err(HarnessError::UnusablePath {
                                path: module.clone(),
                                reason: "module paths must not contain ',' or spaces",
                            });
                        }
                        // QEMU reads ",," as a literal comma inside one module's string.
                        let args = args.replace(',', ",,");
                        list.push(if args.is_empty() {
                            text.to_owned()
                        } else {
                            format!("{text} {args}")
                        });
                    }
                    push("-initrd");
                    push(&list.join(","));
                }
            }
            QemuBoot::Iso(iso) => {
                push("-cdrom");
                // QEMU's option parser reads ",," as a literal comma.
                push(&utf8(iso)?.replace(',', ",,"));
            }
        }
        for extra in &self.extra_args {
            push(extra);
        }
        Ok(args)
    }
}

pub(crate) fn utf8(path: &Path) -> Result<&str, HarnessError> {
    path.to_str().ok_or_else(|| HarnessError::UnusablePath {
        path: path.to_owned(),
        reason: "not UTF-8",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.into_string().expect("test args are UTF-8"))
            .collect()
    }

    #[test]
    fn kernel_boot_uses_the_fixed_conventions() {
        let config = QemuConfig::kernel("/a/mica.elf", "test=fault");
        let args = strings(
            config
                .args(&SerialSink::File("/r/serial.log".into()))
                .expect("valid"),
        );
        let line = args.join(" ");
        assert_eq!(
            line,
            "-machine pc -cpu EPYC -m 256M -display none -no-reboot -serial file:/r/serial.log \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel /a/mica.elf -append test=fault"
        );
    }

    #[test]
    fn iso_boot_with_icount_and_extras() {
        let config = QemuConfig::iso("/a,b/mica.iso")
            .cpu("max")
            .memory_mib(512)
            .icount(true)
            .extra_arg("-smp")
            .extra_arg("2");
        let args = strings(config.args(&SerialSink::Stdio).expect("valid"));
        let pos = |s: &str| args.iter().position(|a| a == s).expect(s);
        assert_eq!(args[pos("-cpu") + 1], "max");
        assert_eq!(args[pos("-m") + 1], "512M");
        assert_eq!(args[pos("-serial") + 1], "stdio");
        assert_eq!(args[pos("-icount") + 1], "shift=0,sleep=off");
        assert_eq!(args[pos("-cdrom") + 1], "/a,,b/mica.iso");
        assert_eq!(&args[args.len() - 2..], ["-smp", "2"]);
        assert!(!args.iter().any(|a| a == "-kernel"));
    }

    #[test]
    fn modules_are_joined_and_commas_rejected() {
        let mut config = QemuConfig::kernel("/k", "")
            .module("/m/root.img", "")
            .module("/m/guest.elf", "g1 fuzz 10,20");
        let args = strings(config.args(&SerialSink::Stdio).expect("valid"));
        let at = args.iter().position(|a| a == "-initrd").expect("-initrd");
        assert_eq!(args[at + 1], "/m/root.img,/m/guest.elf g1 fuzz 10,,20");
        assert_eq!(config.input_files().len(), 3);

        config = config.module("/m/bad,name", "");
        let err = config.args(&SerialSink::Stdio).expect_err("comma");
        assert!(matches!(err, HarnessError::UnusablePath { .. }));
    }
}
