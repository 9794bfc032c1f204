//! Properties: nothing in a VMCB makes decoding panic; encodings round-trip; the
//! permission maps agree with a bit-per-entry model.

use proptest::prelude::*;
use zerocopy::FromBytes;

use super::*;
use crate::*;

const CODES: [u64; 16] = [
    0x81,
    0x7B,
    0x400,
    0x78,
    0x72,
    0x7C,
    0x7F,
    0x60,
    0x61,
    0x4E,
    0x48,
    0x80,
    0xFFFF_FFFF,
    u64::MAX,
    0x64,
    0x401,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_vmcb_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), VMCB_SIZE), nrip in any::<bool>()) {
        let vmcb = Vmcb::read_from_bytes(&bytes).expect("exactly one VMCB");
        let _ = SvmExit::decode(&vmcb, nrip);
        let _ = vmcb.control.interrupted_event();
        let _ = check_vmrun_consistency(&vmcb, &HostCaps::baseline(48, 0x8000));
    }

    #[test]
    fn random_exit_info_never_panics(
        code in prop::sample::select(&CODES[..]),
        info1 in any::<u64>(),
        info2 in any::<u64>(),
        rip in any::<u64>(),
        next in any::<u64>(),
        nrip in any::<bool>(),
    ) {
        let mut v = exited(code, info1, info2);
        v.save.rip = rip;
        v.control.next_rip = next;
        if let Ok(SvmExit::Ioio(io)) = SvmExit::decode(&v, nrip) {
            prop_assert_eq!(io.next_rip, info2);
            prop_assert_eq!(u64::from(io.port), info1 >> 16 & 0xFFFF);
        }
    }

    #[test]
    fn exit_int_info_never_panics_and_round_trips(raw in any::<u64>()) {
        if let Ok(Some(ev)) = Event::from_raw(raw) {
            prop_assert_eq!(Event::from_raw(ev.to_raw()), Ok(Some(ev)));
        }
    }

    #[test]
    fn valid_exceptions_round_trip(vector in 0u8..32, code in any::<u32>()) {
        let error_code = exception_has_error_code(vector).then_some(code);
        if let Ok(ev) = Event::exception(vector, error_code) {
            prop_assert_eq!(Event::from_raw(ev.to_raw()), Ok(Some(ev)));
        } else {
            prop_assert_eq!(vector, 2);
        }
    }

    #[test]
    fn iopm_matches_model(ops in proptest::collection::vec((any::<u16>(), any::<bool>()), 0..64), probe in any::<u16>()) {
        let mut buf = [0u8; IOPM_SIZE];
        let mut map = IoPermissionMap::intercept_all(&mut buf);
        let mut model = std::collections::HashMap::new();
        for (port, intercept) in ops {
            map.set(port, intercept);
            model.insert(port, intercept);
        }
        let expect = |p: u32| u16::try_from(p).map_or(true, |p| *model.get(&p).unwrap_or(&true));
        let p = u32::from(probe);
        prop_assert_eq!(map.intercepts_port(probe), expect(p));
        prop_assert_eq!(map.intercepts_access(probe, IoSize::Dword), (p..p + 4).any(expect));
    }

    #[test]
    fn msrpm_matches_model(
        ops in proptest::collection::vec((0u32..0x6000, any::<bool>(), any::<bool>()), 0..64),
        probe in 0u32..0x6000,
    ) {
        // Spread 0..0x6000 over the three ranges plus their neighbours.
        let msr = |i: u32| [0, 0xC000_0000, 0xC001_0000][(i / 0x2000) as usize] + i % 0x2000;
        let mut buf = [0u8; MSRPM_SIZE];
        let mut map = MsrPermissionMap::intercept_all(&mut buf);
        let mut model = std::collections::HashMap::new();
        for (i, write, intercept) in ops {
            let access = if write { MsrAccess::Write } else { MsrAccess::Read };
            prop_assert!(map.set(msr(i), access, intercept).is_ok());
            model.insert((msr(i), write), intercept);
        }
        let got = map.intercepts(msr(probe));
        prop_assert_eq!(got.read, *model.get(&(msr(probe), false)).unwrap_or(&true));
        prop_assert_eq!(got.write, *model.get(&(msr(probe), true)).unwrap_or(&true));
        prop_assert_eq!(map.intercepts(msr(probe) | 0x2000), MsrIntercept { read: true, write: true });
    }

    #[test]
    fn asid_allocator_never_double_allocates(ops in proptest::collection::vec(any::<Option<u8>>(), 0..200)) {
        let mut a = AsidAllocator::new(17, true);
        let mut held = std::collections::BTreeSet::new();
        for op in ops {
            match op {
                None => match a.allocate() {
                    Ok(g) => prop_assert!(held.insert(g.asid.get())),
                    Err(e) => { prop_assert_eq!(e, AsidError::Exhausted); prop_assert_eq!(held.len(), 16); }
                },
                Some(n) => {
                    let n = u32::from(n % 16) + 1;
                    let r = a.free(asid(n));
                    prop_assert_eq!(r.is_ok(), held.remove(&n));
                }
            }
            prop_assert_eq!(a.in_use() as usize, held.len());
        }
    }
}
