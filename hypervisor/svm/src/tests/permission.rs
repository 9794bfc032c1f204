//! Permission-map bit positions (APM vol. 2, 15.10.1 and 15.11).

use crate::*;

#[test]
fn iopm_starts_all_intercepted() {
    let mut buf = [0u8; IOPM_SIZE];
    let map = IoPermissionMap::intercept_all(&mut buf);
    assert!(map.as_bytes().iter().all(|&b| b == 0xFF));
    assert!(map.intercepts_port(0) && map.intercepts_port(0xFFFF));
}

#[test]
fn iopm_one_bit_per_port() {
    let mut buf = [0u8; IOPM_SIZE];
    let mut map = IoPermissionMap::intercept_all(&mut buf);
    map.allow(0x3F8);
    map.allow(0x3FF);
    map.allow(0xFFFF);
    map.allow(0);
    assert!(!map.intercepts_port(0x3F8) && map.intercepts_port(0x3F9));
    let b = map.as_bytes();
    assert_eq!(b[0x7F], 0b0111_1110); // ports 0x3F8 (bit 0) and 0x3FF (bit 7) cleared
    assert_eq!(b[0x1FFF], 0b0111_1111); // port 0xFFFF is bit 7 of byte 0x1FFF
    assert_eq!(b[0], 0b1111_1110);
    assert_eq!(b.iter().filter(|&&x| x != 0xFF).count(), 3);
}

#[test]
fn iopm_multi_byte_access_checks_every_port_it_touches() {
    let mut buf = [0u8; IOPM_SIZE];
    let mut map = IoPermissionMap::intercept_all(&mut buf);
    map.allow(0x3F8);
    assert!(!map.intercepts_access(0x3F8, IoSize::Byte));
    assert!(
        map.intercepts_access(0x3F8, IoSize::Word),
        "0x3F9 still intercepted"
    );
    map.set_range(0x3F8, 0x3FF, false);
    assert!(!map.intercepts_access(0x3F8, IoSize::Dword));
    assert!(!map.intercepts_access(0x3FC, IoSize::Dword));
    assert!(
        map.intercepts_access(0x3FD, IoSize::Dword),
        "0x400 still intercepted"
    );
    map.deny(0x3FA);
    assert!(map.intercepts_access(0x3F8, IoSize::Dword));
}

#[test]
fn iopm_accesses_past_port_ffff_always_exit() {
    let mut buf = [0u8; IOPM_SIZE];
    buf.fill(0);
    let mut map = IoPermissionMap::edit(&mut buf);
    assert_eq!(map.as_bytes()[0x2000], 0b111, "bits 0x10000-0x10002 set");
    map.set_range(0xFFF0, 0xFFFF, false);
    assert!(!map.intercepts_access(0xFFFF, IoSize::Byte));
    assert!(map.intercepts_access(0xFFFF, IoSize::Word));
    assert!(map.intercepts_access(0xFFFD, IoSize::Dword));
    assert!(!map.intercepts_access(0xFFFC, IoSize::Dword));
}

#[test]
fn msrpm_positions_follow_the_three_ranges() {
    assert_eq!(msrpm_position(0x0000_0000), Some((0x000, 0)));
    assert_eq!(msrpm_position(0x0000_0010), Some((0x004, 0))); // TSC
    assert_eq!(msrpm_position(0x0000_1FFF), Some((0x7FF, 6)));
    assert_eq!(msrpm_position(0xC000_0000), Some((0x800, 0)));
    assert_eq!(msrpm_position(0xC000_0080), Some((0x820, 0))); // EFER
    assert_eq!(msrpm_position(0xC000_0082), Some((0x820, 4))); // LSTAR
    assert_eq!(msrpm_position(0xC000_1FFF), Some((0xFFF, 6)));
    assert_eq!(msrpm_position(0xC001_0000), Some((0x1000, 0)));
    assert_eq!(msrpm_position(0xC001_1FFF), Some((0x17FF, 6)));
    for outside in [
        0x2000,
        0x4000_0000,
        0x4000_0001,
        0xBFFF_FFFF,
        0xC000_2000,
        0xC001_2000,
        u32::MAX,
    ] {
        assert_eq!(msrpm_position(outside), None, "{outside:#x}");
    }
}

#[test]
fn msrpm_read_and_write_bits() {
    let mut buf = [0u8; MSRPM_SIZE];
    let mut map = MsrPermissionMap::intercept_all(&mut buf);
    map.allow_read(0x10).expect("TSC in range");
    map.allow(0xC000_0100).expect("FS.base in range");
    map.allow_write(0xC001_0000).expect("in range");
    assert_eq!(
        map.intercepts(0x10),
        MsrIntercept {
            read: false,
            write: true
        }
    );
    assert_eq!(
        map.intercepts(0xC000_0100),
        MsrIntercept {
            read: false,
            write: false
        }
    );
    assert_eq!(
        map.intercepts(0xC001_0000),
        MsrIntercept {
            read: true,
            write: false
        }
    );
    let b = map.as_bytes();
    assert_eq!(b[0x004], 0b1111_1110);
    assert_eq!(b[0x800 + 0x40], 0b1111_1100);
    assert_eq!(b[0x1000], 0b1111_1101);
    assert_eq!(b.iter().filter(|&&x| x != 0xFF).count(), 3);

    map.deny(0xC000_0100);
    assert_eq!(
        map.intercepts(0xC000_0100),
        MsrIntercept {
            read: true,
            write: true
        }
    );
}

#[test]
fn msrs_outside_the_ranges_always_exit() {
    let mut buf = [0u8; MSRPM_SIZE];
    let mut map = MsrPermissionMap::edit(&mut buf);
    // A zeroed map allows everything it covers...
    assert_eq!(
        map.intercepts(0xC000_0080),
        MsrIntercept {
            read: false,
            write: false
        }
    );
    // ...but Hyper-V's synthetic MSRs are outside it and always exit.
    assert_eq!(map.allow(0x4000_0000), Err(MsrOutOfRange(0x4000_0000)));
    assert_eq!(
        map.intercepts(0x4000_0000),
        MsrIntercept {
            read: true,
            write: true
        }
    );
    map.deny(0x4000_0000);
    assert!(map.as_bytes().iter().all(|&b| b == 0));
}
