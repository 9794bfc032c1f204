//! Mica's test guest: a `no_std` 64-bit kernel started as a child partition. The first word
//! of its argument string picks the scenario ([`command::Command`]); each prints grep-able
//! lines on the debug console and ends with `GUEST PASS <name>` and exit value 0, or
//! `GUEST FAIL <name>: <reason>` and exit value 1 (or, by design, is stopped by the
//! hypervisor). A bad argument string gives `GUEST FAIL args: <reason>`.
//!
//! Built for `x86_64-unknown-none` only (`cargo build -p test_guest --target
//! x86_64-unknown-none --release`); on the host the binary just says so, and `cargo test`
//! runs the unit tests of the pure parts (argument parsing, fuzz generation, pattern).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(
    not(target_os = "none"),
    allow(
        dead_code,
        reason = "only the bare-metal scenarios use these modules; the host build runs their unit tests"
    )
)]

mod command;
mod fuzz;
#[cfg(target_os = "none")]
mod scenarios;

#[cfg(target_os = "none")]
guest_rt::entry_point!(scenarios::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "test_guest is a bare-metal guest kernel: build it with \
         `cargo build -p test_guest --target x86_64-unknown-none --release`"
    );
    std::process::exit(2);
}
