//! How the root partition's user space reaches the hypervisor (Mica-private, no kernel
//! module needed).
//!
//! - **Doorbell.** A root process issues a hypercall with the TLFS register convention
//!   (RCX = control, RDX = input GPA or fast data, R8 = output GPA or fast data; RAX =
//!   result) and then executes `out DOORBELL_PORT, al` (the immediate form, so DX stays
//!   free for the call). The hypervisor intercepts only this port of the root and treats
//!   the OUT as a hypercall from any CPL. Linux decides who may execute it: the CPU checks
//!   the TSS I/O permission bitmap (`ioperm`, which needs `CAP_SYS_RAWIO`) before the
//!   intercept, so an unprivileged process gets #GP (SIGSEGV) and never reaches Mica.
//! - **Shared window.** Parameter pages must be root RAM the process can address by
//!   physical address. The hypervisor sets aside a window of its own pages, marks it
//!   reserved in the root's e820 map (so Linux never allocates it, and `/dev/mem` allows
//!   mapping it under `STRICT_DEVMEM`) and identity-maps it into the root. The kernel
//!   command line tells where: [`WINDOW_PARAM`]`=<start>,<bytes>` (hexadecimal with `0x`).
//! - **Wake-ups.** [`crate::CallCode::MicaRunPartitions`] lends the calling CPU to the
//!   children until something needs the root (a physical interrupt, a child stopping, a
//!   console line); the root's own timer bounds every such call.

/// The root's hypercall doorbell I/O port (`out 0xE8, al`).
pub const DOORBELL_PORT: u16 = 0xE8;

/// Kernel command-line parameter naming the shared window (`mica.window=0x...,0x...`).
pub const WINDOW_PARAM: &str = "mica.window";

/// Pages in the shared window: page 0 is the input page, page 1 the output page of the
/// doorbell hypercalls; the rest is reserved for event flags and mapped channel pages.
pub const WINDOW_PAGES: u64 = 16;

/// Parses the value of [`WINDOW_PARAM`] (`0xSTART,0xBYTES`) from a kernel command line.
#[must_use]
pub fn parse_window(cmdline: &str) -> Option<(u64, u64)> {
    let value = cmdline
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix(WINDOW_PARAM)?.strip_prefix('='))?;
    let (start, len) = value.split_once(',')?;
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let (start, len) = (hex(start)?, hex(len)?);
    (len != 0 && start.checked_add(len).is_some()).then_some((start, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_parameter_round_trip_and_rejects() {
        assert_eq!(
            parse_window("console=ttyS1 mica.window=0x3fe00000,0x10000 quiet"),
            Some((0x3fe0_0000, 0x1_0000))
        );
        for bad in [
            "",
            "mica.window=",
            "mica.window=0x1000",
            "mica.window=4096,0x10",
            "mica.window=0x1000,0x0",
            "mica.window=0xffffffffffffffff,0x10",
            "xmica.window=0x1000,0x10",
        ] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
    }
}
