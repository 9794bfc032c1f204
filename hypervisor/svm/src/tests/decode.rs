//! Exit decoding, QEMU-style (no nRIP, no IOIO address size) and Bochs-style (nRIP).

use super::*;
use crate::*;

const QEMU: bool = false;
const BOCHS: bool = true;

fn decode(vmcb: &Vmcb, nrip: bool) -> Result<SvmExit, DecodeError> {
    SvmExit::decode(vmcb, nrip)
}

#[test]
fn vmmcall_without_nrip_is_three_bytes() {
    let v = exited(0x81, 0, 0);
    assert_eq!(decode(&v, QEMU), Ok(SvmExit::Vmmcall { next_rip: RIP + 3 }));
}

#[test]
fn vmmcall_with_nrip_uses_the_vmcb_field() {
    let mut v = exited(0x81, 0, 0);
    v.control.next_rip = RIP + 3;
    assert_eq!(
        decode(&v, BOCHS),
        Ok(SvmExit::Vmmcall { next_rip: RIP + 3 })
    );
    // nRIP is ignored when the CPU does not have NRIP-save.
    v.control.next_rip = 0xDEAD;
    assert_eq!(decode(&v, QEMU), Ok(SvmExit::Vmmcall { next_rip: RIP + 3 }));
}

#[test]
fn implausible_nrip_is_an_error() {
    let mut v = exited(0x81, 0, 0);
    for bad in [0, RIP, RIP + 16, RIP - 1] {
        v.control.next_rip = bad;
        assert_eq!(
            decode(&v, BOCHS),
            Err(DecodeError::NextRip {
                rip: RIP,
                next_rip: bad
            })
        );
    }
}

#[test]
fn cpuid_hlt_and_msr_lengths() {
    assert_eq!(
        decode(&exited(0x72, 0, 0), QEMU),
        Ok(SvmExit::Cpuid { next_rip: RIP + 2 })
    );
    assert_eq!(
        decode(&exited(0x78, 0, 0), QEMU),
        Ok(SvmExit::Hlt { next_rip: RIP + 1 })
    );
    assert_eq!(
        decode(&exited(0x7C, 0, 0), QEMU),
        Ok(SvmExit::Msr {
            write: false,
            next_rip: RIP + 2
        })
    );
    assert_eq!(
        decode(&exited(0x7C, 1, 0), QEMU),
        Ok(SvmExit::Msr {
            write: true,
            next_rip: RIP + 2
        })
    );
    let mut v = exited(0x7C, 1, 0);
    v.control.next_rip = RIP + 3; // with a prefix byte
    assert_eq!(
        decode(&v, BOCHS),
        Ok(SvmExit::Msr {
            write: true,
            next_rip: RIP + 3
        })
    );
    assert_eq!(
        decode(&exited(0x7C, 2, 0), QEMU),
        Err(DecodeError::MsrDirection(2))
    );
}

#[test]
fn next_rip_wraps_at_32_bits_outside_64_bit_mode() {
    let mut v = exited(0x72, 0, 0);
    v.save.cs.attrib = attrib::DATA & !attrib::TYPE_MASK | attrib::TYPE_CODE_XRA; // 32-bit code
    v.save.rip = 0xFFFF_FFFF;
    assert_eq!(decode(&v, QEMU), Ok(SvmExit::Cpuid { next_rip: 1 }));
    v.control.next_rip = 1;
    assert_eq!(decode(&v, BOCHS), Ok(SvmExit::Cpuid { next_rip: 1 }));
    v.control.next_rip = 0x1_0000_0001;
    assert!(matches!(
        decode(&v, BOCHS),
        Err(DecodeError::NextRip { .. })
    ));
}

#[test]
fn ioio_qemu_style_out_byte() {
    // OUT DX, AL to the COM1 data port: type OUT (bit 0 clear), SZ8 (bit 4).
    let v = exited(0x7B, (0x3F8 << 16) | (1 << 4), RIP + 1);
    let expected = IoAccess {
        port: 0x3F8,
        size: IoSize::Byte,
        write: true,
        string: false,
        rep: false,
        address_size: None,
        next_rip: RIP + 1,
    };
    assert_eq!(decode(&v, QEMU), Ok(SvmExit::Ioio(expected)));
    // With NRIP-save the next RIP still comes from EXITINFO2.
    assert_eq!(decode(&v, BOCHS), Ok(SvmExit::Ioio(expected)));
}

#[test]
fn ioio_bochs_style_with_address_size() {
    // IN EAX, DX from port 0x60 with A64 (bit 9), SZ32 (bit 6), type IN (bit 0).
    let v = exited(0x7B, (0x60 << 16) | (1 << 9) | (1 << 6) | 1, RIP + 1);
    let Ok(SvmExit::Ioio(io)) = decode(&v, BOCHS) else {
        panic!("not an IOIO exit")
    };
    assert_eq!(
        (io.port, io.size, io.write, io.address_size),
        (0x60, IoSize::Dword, false, Some(AddressSize::A64))
    );

    // REP OUTSW with 32-bit addressing (A32 bit 8, SZ16 bit 5, REP bit 3, STR bit 2).
    let v = exited(
        0x7B,
        (0x1F0 << 16) | (1 << 8) | (1 << 5) | (1 << 3) | (1 << 2),
        RIP + 3,
    );
    let Ok(SvmExit::Ioio(io)) = decode(&v, BOCHS) else {
        panic!("not an IOIO exit")
    };
    assert_eq!(
        (
            io.port,
            io.size,
            io.write,
            io.string,
            io.rep,
            io.address_size,
            io.next_rip
        ),
        (
            0x1F0,
            IoSize::Word,
            true,
            true,
            true,
            Some(AddressSize::A32),
            RIP + 3
        )
    );
    let v = exited(0x7B, (0x1F0 << 16) | (1 << 7) | (1 << 4), RIP + 2);
    let Ok(SvmExit::Ioio(io)) = decode(&v, BOCHS) else {
        panic!("not an IOIO exit")
    };
    assert_eq!(io.address_size, Some(AddressSize::A16));
}

#[test]
fn ioio_inconsistent_bits() {
    assert_eq!(
        decode(&exited(0x7B, 0x80 << 16, RIP + 1), QEMU),
        Err(DecodeError::IoioSize(0))
    );
    assert_eq!(
        decode(&exited(0x7B, 0b011 << 4, RIP + 1), QEMU),
        Err(DecodeError::IoioSize(0b011))
    );
    assert_eq!(
        decode(&exited(0x7B, (1 << 4) | (0b110 << 7), RIP + 1), BOCHS),
        Err(DecodeError::IoioAddressSize(0b110))
    );
    assert_eq!(
        decode(&exited(0x7B, 1 << 4, RIP), QEMU),
        Err(DecodeError::NextRip {
            rip: RIP,
            next_rip: RIP
        })
    );
}

#[test]
fn nested_page_faults() {
    // Write to a missing page, final translation.
    let v = exited(0x400, (1 << 32) | 0b0_0110, 0x1234_5000);
    let Ok(SvmExit::Npf(f)) = decode(&v, QEMU) else {
        panic!("not an NPF")
    };
    assert_eq!(f.gpa, 0x1234_5000);
    assert_eq!(
        (f.present, f.write, f.user, f.reserved, f.execute),
        (false, true, true, false, false)
    );
    assert_eq!(f.stage, NpfStage::FinalTranslation);

    // Fetch from a present page during the guest's table walk, with a reserved bit.
    let v = exited(0x400, (1 << 33) | 0b1_1001, 0x7000);
    let Ok(SvmExit::Npf(f)) = decode(&v, BOCHS) else {
        panic!("not an NPF")
    };
    assert_eq!(
        (f.present, f.write, f.user, f.reserved, f.execute),
        (true, false, false, true, true)
    );
    assert_eq!(f.stage, NpfStage::GuestTableWalk);

    assert_eq!(
        decode(&exited(0x400, 0b111, 0), QEMU),
        Err(DecodeError::NpfStage(0b111))
    );
    assert_eq!(
        decode(&exited(0x400, 3 << 32, 0), QEMU),
        Err(DecodeError::NpfStage(3 << 32))
    );
}

#[test]
fn events_without_information() {
    assert_eq!(decode(&exited(0x7F, 0, 0), QEMU), Ok(SvmExit::Shutdown));
    assert_eq!(decode(&exited(0x60, 0, 0), QEMU), Ok(SvmExit::Intr));
    assert_eq!(decode(&exited(0x61, 0, 0), BOCHS), Ok(SvmExit::Nmi));
}

#[test]
fn exceptions() {
    assert_eq!(
        decode(&exited(0x40 + 13, 0x18, 0), QEMU),
        Ok(SvmExit::Exception {
            vector: 13,
            error_code: Some(0x18),
            fault_address: None
        })
    );
    assert_eq!(
        decode(&exited(0x40 + 14, 0x2, 0xFFFF_8000_0000_1000), QEMU),
        Ok(SvmExit::Exception {
            vector: 14,
            error_code: Some(2),
            fault_address: Some(0xFFFF_8000_0000_1000)
        })
    );
    // #MC pushes no error code: EXITINFO1 is ignored.
    assert_eq!(
        decode(&exited(0x40 + 18, 0xFFFF_FFFF_FFFF, 0), QEMU),
        Ok(SvmExit::Exception {
            vector: 18,
            error_code: None,
            fault_address: None
        })
    );
    assert_eq!(
        decode(&exited(0x5F, 0, 0), QEMU),
        Ok(SvmExit::Exception {
            vector: 31,
            error_code: None,
            fault_address: None
        })
    );
    assert_eq!(
        decode(&exited(0x40 + 13, 1 << 32, 0), QEMU),
        Err(DecodeError::ErrorCode(1 << 32))
    );
}

#[test]
fn svm_instructions_are_reported_for_ud() {
    let cases = [
        (0x80, SvmInstruction::Vmrun),
        (0x82, SvmInstruction::Vmload),
        (0x83, SvmInstruction::Vmsave),
        (0x84, SvmInstruction::Stgi),
        (0x85, SvmInstruction::Clgi),
        (0x86, SvmInstruction::Skinit),
        (0x7A, SvmInstruction::Invlpga),
    ];
    for (code, insn) in cases {
        assert_eq!(
            decode(&exited(code, 0, 0), QEMU),
            Ok(SvmExit::SvmInstruction(insn))
        );
    }
}

#[test]
fn vmexit_invalid_in_both_encodings() {
    assert_eq!(
        decode(&exited(0x0000_0000_FFFF_FFFF, 0, 0), QEMU),
        Ok(SvmExit::Invalid)
    );
    assert_eq!(decode(&exited(u64::MAX, 0, 0), BOCHS), Ok(SvmExit::Invalid));
    assert!(ExitCode(0xFFFF_FFFF).is_invalid() && ExitCode::INVALID.is_invalid());
    assert!(!ExitCode::BUSY.is_invalid());
}

#[test]
fn everything_else_is_unknown() {
    for code in [0x6E, 0x03, 0x13, 0x403, u64::MAX - 1, 0x1_0000_0081] {
        assert_eq!(
            decode(&exited(code, 0, 0), QEMU),
            Ok(SvmExit::Unknown { code }),
            "{code:#x}"
        );
    }
}
