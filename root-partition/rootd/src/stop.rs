//! Why a child stopped, decoded from the `MICA_STOP_REASON` and `MICA_STOP_GPA` properties
//! (`hypercall::abi::stop_code`: kind in bits 7:0, detail in bits 63:32) into a typed value
//! with a readable text.

use core::fmt;

use hypercall::abi::stop_code;
use serde::{Deserialize, Serialize};

use crate::hv::RawStop;

/// Why a partition stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// rootd (or the hypervisor on its behalf) stopped it.
    Requested,
    /// The guest wrote `status` to its exit port.
    Exited {
        /// The exit status (0: success).
        status: u32,
    },
    /// A vCPU triple-faulted.
    TripleFault,
    /// A vCPU used an I/O port it may not use.
    BadIoPort {
        /// The port.
        port: u16,
        /// Access size in bytes.
        size: u8,
        /// OUT rather than IN.
        write: bool,
    },
    /// A vCPU touched guest-physical memory outside its RAM.
    OutsideMemory {
        /// The faulting GPA.
        gpa: u64,
    },
    /// A vCPU broke a page's permissions.
    AccessViolation {
        /// The faulting GPA.
        gpa: u64,
    },
    /// The hardware refused the vCPU state.
    InvalidState,
    /// A hypervisor limit was reached.
    HypervisorLimit,
    /// An exit the hypervisor does not handle.
    UnhandledExit {
        /// The backend's exit code (low 32 bits).
        code: u32,
    },
    /// A stop code this rootd does not know (a newer hypervisor).
    Unknown {
        /// The raw property value.
        raw: u64,
    },
}

impl StopReason {
    /// Decodes the property values; `None` means "not stopped" ([`stop_code::NONE`]).
    #[must_use]
    pub const fn decode(raw: RawStop) -> Option<Self> {
        let kind = (raw.code & 0xFF) as u8;
        let detail = (raw.code >> 32) as u32;
        Some(match kind {
            stop_code::NONE => return None,
            stop_code::REQUESTED => Self::Requested,
            stop_code::EXITED => Self::Exited { status: detail },
            stop_code::TRIPLE_FAULT => Self::TripleFault,
            // Port in bits 15:0, size in 23:16, write in bit 24 (hypercall::abi::stop_code).
            stop_code::BAD_IO_PORT => Self::BadIoPort {
                port: (detail & 0xFFFF) as u16,
                size: (detail >> 16) as u8,
                write: detail & (1 << 24) != 0,
            },
            stop_code::OUTSIDE_MEMORY => Self::OutsideMemory { gpa: raw.gpa },
            stop_code::ACCESS_VIOLATION => Self::AccessViolation { gpa: raw.gpa },
            stop_code::INVALID_STATE => Self::InvalidState,
            stop_code::HYPERVISOR_LIMIT => Self::HypervisorLimit,
            stop_code::UNHANDLED_EXIT => Self::UnhandledExit { code: detail },
            _ => Self::Unknown { raw: raw.code },
        })
    }

    /// Whether the guest ended by itself with status 0.
    #[must_use]
    pub const fn is_success(&self) -> bool {
        matches!(self, Self::Exited { status: 0 })
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Requested => f.write_str("stopped on request"),
            Self::Exited { status } => write!(f, "exited with status {status}"),
            Self::TripleFault => f.write_str("triple fault"),
            Self::BadIoPort { port, size, write } => {
                let (verb, preposition) = if write {
                    ("write", "to")
                } else {
                    ("read", "from")
                };
                write!(
                    f,
                    "{verb} of {size} byte(s) {preposition} I/O port {port:#x} is not allowed"
                )
            }
            Self::OutsideMemory { gpa } => {
                write!(f, "access to {gpa:#x}, outside its memory")
            }
            Self::AccessViolation { gpa } => {
                write!(f, "access to {gpa:#x} against the page's permissions")
            }
            Self::InvalidState => f.write_str("invalid vCPU state"),
            Self::HypervisorLimit => f.write_str("a hypervisor limit was reached"),
            Self::UnhandledExit { code } => write!(f, "unhandled exit {code:#x}"),
            Self::Unknown { raw } => write!(f, "unknown stop code {raw:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(code: u64, gpa: u64) -> Option<StopReason> {
        StopReason::decode(RawStop { code, gpa })
    }

    #[test]
    fn every_kind_decodes_to_readable_text() {
        let cases: [(u64, u64, &str); 12] = [
            (1, 0, "stopped on request"),
            (2, 0, "exited with status 0"),
            (2 | (3 << 32), 0, "exited with status 3"),
            (3, 0, "triple fault"),
            (
                4 | (0x1_0060 << 32),
                0,
                "read of 1 byte(s) from I/O port 0x60 is not allowed",
            ),
            (
                4 | (0x104_0070 << 32),
                0,
                "write of 4 byte(s) to I/O port 0x70 is not allowed",
            ),
            (5, 0x40_0000, "access to 0x400000, outside its memory"),
            (
                6,
                0x20_1000,
                "access to 0x201000 against the page's permissions",
            ),
            (7, 0, "invalid vCPU state"),
            (8, 0, "a hypervisor limit was reached"),
            (9 | (0x7b << 32), 0, "unhandled exit 0x7b"),
            (
                4 | (0x101_03F8 << 32),
                0,
                "write of 1 byte(s) to I/O port 0x3f8 is not allowed",
            ),
        ];
        for (code, gpa, text) in cases {
            let reason = decode(code, gpa).unwrap();
            assert_eq!(reason.to_string(), text, "{code:#x}");
        }
    }

    #[test]
    fn none_unknown_and_success() {
        assert_eq!(decode(0, 0), None);
        assert_eq!(decode(0x42, 0), Some(StopReason::Unknown { raw: 0x42 }));
        assert!(decode(2, 0).unwrap().is_success());
        assert!(!decode(2 | (1 << 32), 0).unwrap().is_success());
        assert!(!decode(1, 0).unwrap().is_success());
        assert_eq!(
            decode(4 | (0x104_0070 << 32), 0),
            Some(StopReason::BadIoPort {
                port: 0x70,
                size: 4,
                write: true
            })
        );
    }

    #[test]
    fn json_round_trip() {
        let reason = StopReason::BadIoPort {
            port: 0x60,
            size: 1,
            write: false,
        };
        let text = serde_json::to_string(&reason).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"bad_io_port","port":96,"size":1,"write":false}"#
        );
        assert_eq!(serde_json::from_str::<StopReason>(&text).unwrap(), reason);
    }
}
