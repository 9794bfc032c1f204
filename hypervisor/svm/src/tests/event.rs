//! EVENTINJ encoding and EXITINTINFO decoding.

use super::*;
use crate::*;

#[test]
fn encodings() {
    assert_eq!(Event::general_protection(0).to_raw(), 0x8000_0B0D);
    assert_eq!(
        Event::exception(14, Some(2)).expect("#PF").to_raw(),
        0x0000_0002_8000_0B0E
    );
    assert_eq!(Event::invalid_opcode().to_raw(), 0x8000_0306);
    assert_eq!(
        Event::exception(8, Some(0)).expect("#DF").to_raw(),
        0x8000_0B08
    );
    assert_eq!(Event::nmi().to_raw(), 0x8000_0202);
    assert_eq!(
        Event::external_interrupt(0x20).expect("vector 32").to_raw(),
        0x8000_0020
    );
    assert_eq!(Event::software_interrupt(0x80).to_raw(), 0x8000_0480);
}

#[test]
fn validation() {
    assert_eq!(
        Event::exception(8, None),
        Err(EventError::ErrorCodeMismatch {
            vector: 8,
            expected: true
        })
    );
    assert_eq!(
        Event::exception(6, Some(0)),
        Err(EventError::ErrorCodeMismatch {
            vector: 6,
            expected: false
        })
    );
    assert_eq!(
        Event::exception(32, None),
        Err(EventError::ExceptionVector(32))
    );
    assert_eq!(Event::exception(2, None), Err(EventError::NmiAsException));
    assert_eq!(
        Event::external_interrupt(31),
        Err(EventError::InterruptVector(31))
    );
    assert_eq!(
        Event::new(EventType::Nmi, 2, Some(0)),
        Err(EventError::ErrorCodeOnNonException)
    );
    assert_eq!(
        Event::new(EventType::Nmi, 7, None).map(|e| e.vector()),
        Ok(2)
    );
    for v in [8, 10, 11, 12, 13, 14, 17, 21, 29, 30] {
        assert!(exception_has_error_code(v), "{v}");
    }
    assert_eq!((0..32).filter(|&v| exception_has_error_code(v)).count(), 10);
}

#[test]
fn decoding() {
    assert_eq!(Event::from_raw(0), Ok(None));
    assert_eq!(Event::from_raw(0x0000_0B0D), Ok(None), "valid bit clear");
    assert_eq!(
        Event::from_raw(0x8000_0B0D),
        Ok(Some(Event::general_protection(0)))
    );
    assert_eq!(
        Event::from_raw(0x8000_0100),
        Err(EventError::ReservedType(1))
    );
    assert_eq!(
        Event::from_raw(0x8000_0700),
        Err(EventError::ReservedType(7))
    );
    assert_eq!(
        Event::from_raw(0x8000_1000),
        Err(EventError::ReservedBits(0x1000))
    );
    assert_eq!(
        Event::from_raw(0x8000_0305),
        Ok(Some(Event::exception(5, None).expect("#BR")))
    );
}

#[test]
fn vmcb_injection_and_interrupted_event() {
    let mut v = guest();
    assert_eq!(v.control.pending_injection(), Ok(None));
    v.control.inject(Event::invalid_opcode());
    assert_eq!(v.control.event_inj, 0x8000_0306);
    assert_eq!(
        v.control.pending_injection(),
        Ok(Some(Event::invalid_opcode()))
    );
    v.control.clear_injection();
    assert_eq!(v.control.event_inj, 0);

    // A #PF was being delivered when a nested page fault hit the guest's IDT.
    v.control.exit_int_info = 0x0000_0004_8000_0B0E;
    let ev = v
        .control
        .interrupted_event()
        .expect("valid")
        .expect("present");
    assert_eq!(
        (ev.kind(), ev.vector(), ev.error_code()),
        (EventType::Exception, 14, Some(4))
    );
}
