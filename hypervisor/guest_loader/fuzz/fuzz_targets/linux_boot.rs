//! Fuzzes the Linux boot protocol: arbitrary bzImage bytes and placement must never panic,
//! and whatever boots must have written only the scratch area, with the zero page's
//! pointers where the spec put things.
#![no_main]

use guest_loader::linux::{CMDLINE_OFFSET, ZERO_PAGE_OFFSET};
use guest_loader::{
    BzImage, E820Entry, E820Table, E820Type, FakeRam, GuestRam, LinuxBootSpec, LinuxError,
    prepare_linux_boot, scratch_size,
};
use libfuzzer_sys::fuzz_target;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Fake RAM: enough for the scratch area of a 4 GiB identity map at up to 512 KiB.
const RAM_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // Header: kernel load (u32, in 4 KiB units of the low 64 bits), scratch page (u8),
    // identity GiBs (u8), initrd start page and size (u16 each), command-line length (u8).
    let Some((head, image)) = data.split_at_checked(11) else {
        return;
    };
    let word = |i: usize| u64::from(u16::from_le_bytes([head[i], head[i + 1]]));
    let kernel_load = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]])) * 0x1000;
    let scratch = u64::from(head[4]) * 0x1000;
    let identity_limit = u64::from(head[5] % 6) * GIB;
    let initrd = (word(6) * 0x1000, word(8) * 0x100);
    let cmdline_len = usize::from(head[10]).min(image.len());
    let cmdline = core::str::from_utf8(&image[..cmdline_len]).unwrap_or("console=ttyS0");

    let Ok(bz) = BzImage::parse(image) else {
        return;
    };
    let e820 = E820Table::for_root(
        &[
            E820Entry::new(0, 0xA_0000, E820Type::Ram),
            E820Entry::new(MIB, 64 * GIB, E820Type::Ram),
        ],
        &[(0x7000_0000, 0x7100_0000)],
    )
    .expect("a small map");
    let spec = LinuxBootSpec {
        kernel_load,
        scratch,
        cmdline,
        initrd: Some(initrd),
        e820: &e820,
        acpi_rsdp: None,
        identity_limit,
    };
    let mut ram = FakeRam::new(RAM_SIZE);
    match prepare_linux_boot(&mut ram, &bz, &spec) {
        Ok(entry) => {
            let end = scratch + scratch_size(identity_limit).expect("accepted limit");
            for &(gpa, len) in ram.writes() {
                assert!(scratch <= gpa && gpa + len <= end);
            }
            assert_eq!(entry.rsi, scratch + ZERO_PAGE_OFFSET);
            assert_eq!(entry.rip, kernel_load + 0x200);
            let mut ptr = [0u8; 4];
            ram.read(entry.rsi + 0x228, &mut ptr).expect("zero page in RAM");
            assert_eq!(u64::from(u32::from_le_bytes(ptr)), scratch + CMDLINE_OFFSET);
            let (window_start, window_end) =
                bz.decompression_window(kernel_load).expect("accepted load");
            assert!(end <= window_start || window_end <= scratch);
        }
        Err(LinuxError::Ram(error)) => assert!(error.gpa + error.len > RAM_SIZE as u64),
        Err(_) => {}
    }
});
