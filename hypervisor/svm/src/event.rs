//! Event injection (EVENTINJ) and interrupted-event information (EXITINTINFO), which share
//! one format (AMD APM vol. 2, 15.20 and 15.7.2):
//!
//! | bits  | field                                                              |
//! |-------|--------------------------------------------------------------------|
//! | 7:0   | vector                                                             |
//! | 10:8  | type: 0 external interrupt, 2 NMI, 3 exception, 4 software interrupt |
//! | 11    | EV: error code valid                                               |
//! | 30:12 | reserved, zero                                                     |
//! | 31    | V: valid                                                           |
//! | 63:32 | error code                                                         |

use thiserror::Error;

/// What kind of event is injected or was being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventType {
    /// External (maskable) interrupt, vector 32-255.
    ExternalInterrupt = 0,
    /// Non-maskable interrupt (vector 2, the field's vector is ignored).
    Nmi = 2,
    /// Exception (fault or trap), vector 0-31 except 2.
    Exception = 3,
    /// Software interrupt (INTn), any vector.
    SoftwareInterrupt = 4,
}

impl EventType {
    /// Decodes the 3-bit TYPE field; 1, 5, 6 and 7 are reserved.
    pub const fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::ExternalInterrupt),
            2 => Some(Self::Nmi),
            3 => Some(Self::Exception),
            4 => Some(Self::SoftwareInterrupt),
            _ => None,
        }
    }
}

/// An event that is inconsistent, so VMRUN would reject it (VMEXIT_INVALID) or the guest
/// would see an impossible exception frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EventError {
    /// TYPE is one of the reserved encodings (1, 5, 6, 7).
    #[error("Reserved event type {0}")]
    ReservedType(u8),
    /// Bits 30:12 are not zero.
    #[error("Reserved event bits set: {0:#x}")]
    ReservedBits(u64),
    /// An exception vector above 31.
    #[error("Exception vector {0} is above 31")]
    ExceptionVector(u8),
    /// Vector 2 as an exception; an NMI must use the NMI type.
    #[error("Vector 2 injected as an exception instead of an NMI")]
    NmiAsException,
    /// An external interrupt vector below 32 (those are the exception vectors).
    #[error("External interrupt vector {0} is below 32")]
    InterruptVector(u8),
    /// The error-code-valid bit does not match whether this exception pushes an error code.
    #[error("Exception {vector} error code presence must be {expected}")]
    ErrorCodeMismatch {
        /// Exception vector.
        vector: u8,
        /// Whether the architecture pushes an error code for it.
        expected: bool,
    },
    /// An error code on an interrupt or NMI.
    #[error("Error code on a non-exception event")]
    ErrorCodeOnNonException,
}

/// Whether exception `vector` pushes an error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP,
/// #VC and #SX.
pub const fn exception_has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// A validated event to inject, or one decoded from EXITINTINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    kind: EventType,
    vector: u8,
    error_code: Option<u32>,
}

const VALID: u64 = 1 << 31;
const ERROR_CODE_VALID: u64 = 1 << 11;
const RESERVED: u64 = 0x7FFF_F000;
const NMI_VECTOR: u8 = 2;

impl Event {
    /// Builds an event, checking that the combination is one the CPU accepts:
    /// exceptions use vectors 0-31 except 2 and carry an error code exactly when the
    /// architecture pushes one; external interrupts use vectors 32-255; NMIs and interrupts
    /// carry no error code. An NMI's vector is always recorded as 2.
    pub const fn new(
        kind: EventType,
        vector: u8,
        error_code: Option<u32>,
    ) -> Result<Self, EventError> {
        match kind {
            EventType::Exception => {
                if vector > 31 {
                    return Err(EventError::ExceptionVector(vector));
                }
                if vector == NMI_VECTOR {
                    return Err(EventError::NmiAsException);
                }
                let expected = exception_has_error_code(vector);
                if expected != error_code.is_some() {
                    return Err(EventError::ErrorCodeMismatch { vector, expected });
                }
                Ok(Self {
                    kind,
                    vector,
                    error_code,
                })
            }
            EventType::ExternalInterrupt | EventType::Nmi | EventType::SoftwareInterrupt => {
                if error_code.is_some() {
                    return Err(EventError::ErrorCodeOnNonException);
                }
                match kind {
                    EventType::ExternalInterrupt if vector < 32 => {
                        Err(EventError::InterruptVector(vector))
                    }
                    EventType::Nmi => Ok(Self {
                        kind,
                        vector: NMI_VECTOR,
                        error_code: None,
                    }),
                    _ => Ok(Self {
                        kind,
                        vector,
                        error_code: None,
                    }),
                }
            }
        }
    }

    /// An exception; see [`Event::new`] for the rules.
    pub const fn exception(vector: u8, error_code: Option<u32>) -> Result<Self, EventError> {
        Self::new(EventType::Exception, vector, error_code)
    }

    /// #UD, for instructions the guest may not execute (VMRUN, VMLOAD, ...).
    pub const fn invalid_opcode() -> Self {
        Self {
            kind: EventType::Exception,
            vector: 6,
            error_code: None,
        }
    }

    /// #GP with error code `error_code` (usually 0).
    pub const fn general_protection(error_code: u32) -> Self {
        Self {
            kind: EventType::Exception,
            vector: 13,
            error_code: Some(error_code),
        }
    }

    /// An external interrupt with vector 32-255.
    pub const fn external_interrupt(vector: u8) -> Result<Self, EventError> {
        Self::new(EventType::ExternalInterrupt, vector, None)
    }

    /// A non-maskable interrupt.
    pub const fn nmi() -> Self {
        Self {
            kind: EventType::Nmi,
            vector: NMI_VECTOR,
            error_code: None,
        }
    }

    /// A software interrupt (INTn) with any vector.
    pub const fn software_interrupt(vector: u8) -> Self {
        Self {
            kind: EventType::SoftwareInterrupt,
            vector,
            error_code: None,
        }
    }

    /// The event type.
    pub const fn kind(&self) -> EventType {
        self.kind
    }

    /// The vector.
    pub const fn vector(&self) -> u8 {
        self.vector
    }

    /// The error code, if the event carries one.
    pub const fn error_code(&self) -> Option<u32> {
        self.error_code
    }

    /// The EVENTINJ encoding, with the valid bit set.
    pub const fn to_raw(&self) -> u64 {
        let mut raw = VALID | self.vector as u64 | ((self.kind as u64) << 8);
        if let Some(code) = self.error_code {
            raw |= ERROR_CODE_VALID | ((code as u64) << 32);
        }
        raw
    }

    /// Decodes an EVENTINJ or EXITINTINFO value: `Ok(None)` if the valid bit is clear,
    /// otherwise the event, validated as in [`Event::new`].
    pub const fn from_raw(raw: u64) -> Result<Option<Self>, EventError> {
        if raw & VALID == 0 {
            return Ok(None);
        }
        if raw & RESERVED != 0 {
            return Err(EventError::ReservedBits(raw & RESERVED));
        }
        let type_bits = ((raw >> 8) & 0x7) as u8;
        let Some(kind) = EventType::from_raw(type_bits) else {
            return Err(EventError::ReservedType(type_bits));
        };
        let vector = (raw & 0xFF) as u8;
        let error_code = if raw & ERROR_CODE_VALID != 0 {
            Some((raw >> 32) as u32)
        } else {
            None
        };
        match Self::new(kind, vector, error_code) {
            Ok(event) => Ok(Some(event)),
            Err(e) => Err(e),
        }
    }
}
