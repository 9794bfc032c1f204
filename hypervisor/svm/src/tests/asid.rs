//! ASID allocation and TLB control.

use super::*;
use crate::*;

#[test]
fn allocates_from_one_and_exhausts() {
    let mut a = AsidAllocator::new(4, true);
    assert_eq!(a.capacity(), 3);
    let got: Vec<u32> = (0..3)
        .map(|_| a.allocate().expect("free ASID").asid.get())
        .collect();
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(a.in_use(), 3);
    assert_eq!(a.allocate(), Err(AsidError::Exhausted));
}

#[test]
fn free_and_reuse_next_fit() {
    let mut a = AsidAllocator::new(8, false);
    let first = a.allocate().expect("1").asid;
    let second = a.allocate().expect("2").asid;
    a.free(first).expect("allocated");
    assert!(!a.is_allocated(first) && a.is_allocated(second));
    // Next-fit: 3 comes before the freed 1 is reused.
    assert_eq!(a.allocate().expect("3").asid.get(), 3);
    for _ in 0..4 {
        a.allocate().expect("4..7");
    }
    assert_eq!(a.allocate().expect("wraps to 1").asid, first);
    assert_eq!(a.allocate(), Err(AsidError::Exhausted));
}

#[test]
fn free_errors() {
    let mut a = AsidAllocator::new(4, true);
    let g = a.allocate().expect("1");
    a.free(g.asid).expect("allocated");
    assert_eq!(a.free(g.asid), Err(AsidError::NotAllocated(1)));
    assert_eq!(a.free(asid(4)), Err(AsidError::OutOfRange(4)));
    assert_eq!(a.in_use(), 0);
}

#[test]
fn degenerate_and_huge_asid_counts() {
    assert_eq!(
        AsidAllocator::new(0, true).allocate(),
        Err(AsidError::Exhausted)
    );
    assert_eq!(
        AsidAllocator::new(1, true).allocate(),
        Err(AsidError::Exhausted)
    );
    let a = AsidAllocator::new(u32::MAX, true);
    assert_eq!(a.capacity(), AsidAllocator::MAX_ASIDS - 1);
    assert_eq!(Asid::new(0), None);
}

#[test]
fn tlb_control_follows_flush_by_asid() {
    let mut with = AsidAllocator::new(16, true);
    let mut without = AsidAllocator::new(16, false);
    assert_eq!(
        with.allocate().expect("free").first_run,
        TlbControl::FlushAsid
    );
    assert_eq!(
        without.allocate().expect("free").first_run,
        TlbControl::FlushAll
    );
    assert_eq!(with.on_mapping_change(), TlbControl::FlushAsid);
    assert_eq!(without.on_mapping_change(), TlbControl::FlushAll);
    assert!(
        TlbControl::FlushAsid.needs_flush_by_asid() && !TlbControl::FlushAll.needs_flush_by_asid()
    );
    assert_eq!(TlbControl::from_raw(3), Some(TlbControl::FlushAsid));
    assert_eq!(TlbControl::from_raw(5), None);
}
