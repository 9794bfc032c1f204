//! Host tests of the SVM crate.

mod asid;
mod check;
mod decode;
mod event;
mod layout;
mod permission;
mod properties;

use zerocopy::FromZeros;

use crate::{Asid, Vmcb};

/// Guest entry RIP the tests use.
const RIP: u64 = 0x0010_0000;

/// A VMCB as [`Vmcb::init_long_mode_guest`] leaves it, with recognisable addresses.
fn guest() -> Vmcb {
    let mut vmcb = Vmcb::new_zeroed();
    vmcb.init_long_mode_guest(
        RIP,
        0x20_0000,
        0x30_0000,
        asid(1),
        0x40_0000,
        0x50_0000,
        0x60_0000,
    );
    vmcb
}

fn asid(n: u32) -> Asid {
    Asid::new(n).expect("test ASIDs are non-zero")
}

/// A guest VMCB that exited with `code`, `info1` and `info2`.
fn exited(code: u64, info1: u64, info2: u64) -> Vmcb {
    let mut vmcb = guest();
    vmcb.control.exit_code = code;
    vmcb.control.exit_info1 = info1;
    vmcb.control.exit_info2 = info2;
    vmcb
}
