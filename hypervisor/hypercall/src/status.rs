//! `HV_STATUS`: the 16-bit result code of every hypercall (TLFS "Hypercall Status Codes").
//!
//! [`HvStatus`] holds every code Mica knows, success included; [`HvError`] holds the same
//! codes minus success, so a handler's `Err` can never claim success. Both enums are
//! generated from one table so their numeric values cannot drift apart.
//!
//! The TLFS also defines one "restore state needs processor feature X" code per CPU feature
//! (0x21-0x2F, 0x31, 0x32, 0x34-0x36, 0x39-0x3B, 0x40, 0x42-0x4F, 0x52-0x54, 0x56). Mica has
//! no save/restore-by-hypercall and never returns them; they are left out, and
//! [`HvStatus::from_raw`] answers `None` for them.

use core::fmt;

macro_rules! hv_status_table {
    ($( $name:ident = $value:literal, $c_name:literal, $msg:literal; )+) => {
        /// A hypercall result code (`HV_STATUS`), as the TLFS numbers it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum HvStatus {
            /// `HV_STATUS_SUCCESS` (0x0000): the call succeeded.
            Success = 0x0000,
            $(
                #[doc = concat!("`", $c_name, "` (", stringify!($value), "): ", $msg, ".")]
                $name = $value,
            )+
        }

        /// A failed hypercall's result code: every [`HvStatus`] except success.
        ///
        /// This is what a [`crate::HypercallHandler`] returns to fail a call.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum HvError {
            $(
                #[doc = concat!("`", $c_name, "` (", stringify!($value), "): ", $msg, ".")]
                $name = $value,
            )+
        }

        impl HvStatus {
            /// Every status code this crate knows, in numeric order.
            pub const ALL: &'static [HvStatus] = &[HvStatus::Success, $(HvStatus::$name,)+];

            /// The status for a raw `HV_STATUS` value, or `None` if Mica does not know it.
            #[must_use]
            pub const fn from_raw(raw: u16) -> Option<Self> {
                match raw {
                    0x0000 => Some(Self::Success),
                    $( $value => Some(Self::$name), )+
                    _ => None,
                }
            }

            /// The TLFS name of the code, e.g. `"HV_STATUS_ACCESS_DENIED"`.
            #[must_use]
            pub const fn tlfs_name(self) -> &'static str {
                match self {
                    Self::Success => "HV_STATUS_SUCCESS",
                    $( Self::$name => $c_name, )+
                }
            }
        }

        impl HvError {
            /// The error for a status, or `None` for [`HvStatus::Success`].
            #[must_use]
            pub const fn from_status(status: HvStatus) -> Option<Self> {
                match status {
                    HvStatus::Success => None,
                    $( HvStatus::$name => Some(Self::$name), )+
                }
            }

            /// The guest-visible status carrying this error.
            #[must_use]
            pub const fn status(self) -> HvStatus {
                match self {
                    $( Self::$name => HvStatus::$name, )+
                }
            }

            const fn message(self) -> &'static str {
                match self {
                    $( Self::$name => $msg, )+
                }
            }
        }
    };
}

hv_status_table! {
    InvalidHypercallCode = 0x0002, "HV_STATUS_INVALID_HYPERCALL_CODE", "Unknown hypercall code";
    InvalidHypercallInput = 0x0003, "HV_STATUS_INVALID_HYPERCALL_INPUT", "Malformed hypercall input value";
    InvalidAlignment = 0x0004, "HV_STATUS_INVALID_ALIGNMENT", "Parameter block misaligned, crossing a page or outside RAM";
    InvalidParameter = 0x0005, "HV_STATUS_INVALID_PARAMETER", "Invalid input parameter";
    AccessDenied = 0x0006, "HV_STATUS_ACCESS_DENIED", "Caller lacks the required privilege";
    InvalidPartitionState = 0x0007, "HV_STATUS_INVALID_PARTITION_STATE", "Partition is in the wrong state";
    OperationDenied = 0x0008, "HV_STATUS_OPERATION_DENIED", "Operation denied";
    UnknownProperty = 0x0009, "HV_STATUS_UNKNOWN_PROPERTY", "Unknown partition property";
    PropertyValueOutOfRange = 0x000A, "HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE", "Property value out of range";
    InsufficientMemory = 0x000B, "HV_STATUS_INSUFFICIENT_MEMORY", "Insufficient memory";
    PartitionTooDeep = 0x000C, "HV_STATUS_PARTITION_TOO_DEEP", "Partition hierarchy too deep";
    InvalidPartitionId = 0x000D, "HV_STATUS_INVALID_PARTITION_ID", "Invalid partition ID";
    InvalidVpIndex = 0x000E, "HV_STATUS_INVALID_VP_INDEX", "Invalid virtual processor index";
    NotFound = 0x0010, "HV_STATUS_NOT_FOUND", "Not found";
    InvalidPortId = 0x0011, "HV_STATUS_INVALID_PORT_ID", "Invalid port ID";
    InvalidConnectionId = 0x0012, "HV_STATUS_INVALID_CONNECTION_ID", "Invalid connection ID";
    InsufficientBuffers = 0x0013, "HV_STATUS_INSUFFICIENT_BUFFERS", "Not enough message buffers";
    NotAcknowledged = 0x0014, "HV_STATUS_NOT_ACKNOWLEDGED", "Previous virtual interrupt not acknowledged";
    InvalidVpState = 0x0015, "HV_STATUS_INVALID_VP_STATE", "Virtual processor is in the wrong state";
    Acknowledged = 0x0016, "HV_STATUS_ACKNOWLEDGED", "Previous virtual interrupt already acknowledged";
    InvalidSaveRestoreState = 0x0017, "HV_STATUS_INVALID_SAVE_RESTORE_STATE", "Invalid save/restore state";
    InvalidSynicState = 0x0018, "HV_STATUS_INVALID_SYNIC_STATE", "Required SynIC feature disabled";
    ObjectInUse = 0x0019, "HV_STATUS_OBJECT_IN_USE", "Object in use";
    InvalidProximityDomainInfo = 0x001A, "HV_STATUS_INVALID_PROXIMITY_DOMAIN_INFO", "Invalid proximity domain information";
    NoData = 0x001B, "HV_STATUS_NO_DATA", "No data available";
    Inactive = 0x001C, "HV_STATUS_INACTIVE", "Debug connection inactive";
    NoResources = 0x001D, "HV_STATUS_NO_RESOURCES", "Resource unavailable";
    FeatureUnavailable = 0x001E, "HV_STATUS_FEATURE_UNAVAILABLE", "Feature unavailable to the caller";
    PartialPacket = 0x001F, "HV_STATUS_PARTIAL_PACKET", "Partial debug packet";
    ProcessorFeatureNotSupported = 0x0020, "HV_STATUS_PROCESSOR_FEATURE_NOT_SUPPORTED", "Processor feature not supported";
    ProcessorCacheLineFlushSizeIncompatible = 0x0030, "HV_STATUS_PROCESSOR_CACHE_LINE_FLUSH_SIZE_INCOMPATIBLE", "Cache line flush size incompatible";
    InsufficientBuffer = 0x0033, "HV_STATUS_INSUFFICIENT_BUFFER", "Buffer too small";
    IncompatibleProcessor = 0x0037, "HV_STATUS_INCOMPATIBLE_PROCESSOR", "Incompatible processor";
    InsufficientDeviceDomains = 0x0038, "HV_STATUS_INSUFFICIENT_DEVICE_DOMAINS", "No device domain left";
    CpuidFeatureValidationError = 0x003C, "HV_STATUS_CPUID_FEATURE_VALIDATION_ERROR", "CPUID feature validation failed";
    CpuidXsaveFeatureValidationError = 0x003D, "HV_STATUS_CPUID_XSAVE_FEATURE_VALIDATION_ERROR", "CPUID XSAVE feature validation failed";
    ProcessorStartupTimeout = 0x003E, "HV_STATUS_PROCESSOR_STARTUP_TIMEOUT", "Processor startup timed out";
    SmxEnabled = 0x003F, "HV_STATUS_SMX_ENABLED", "SMX enabled by firmware";
    InvalidLpIndex = 0x0041, "HV_STATUS_INVALID_LP_INDEX", "Invalid logical processor index";
    InvalidRegisterValue = 0x0050, "HV_STATUS_INVALID_REGISTER_VALUE", "Invalid register value";
    NxNotDetected = 0x0055, "HV_STATUS_NX_NOT_DETECTED", "NX not detected";
    InvalidDeviceId = 0x0057, "HV_STATUS_INVALID_DEVICE_ID", "Invalid device ID";
    InvalidDeviceState = 0x0058, "HV_STATUS_INVALID_DEVICE_STATE", "Device is in the wrong state";
    PendingPageRequests = 0x0059, "HV_STATUS_PENDING_PAGE_REQUESTS", "Pending page requests discarded";
    PageRequestInvalid = 0x0060, "HV_STATUS_PAGE_REQUEST_INVALID", "Invalid page request";
    OperationFailed = 0x0071, "HV_STATUS_OPERATION_FAILED", "Operation failed";
    NotAllowedWithNestedVirtActive = 0x0072, "HV_STATUS_NOT_ALLOWED_WITH_NESTED_VIRT_ACTIVE", "Not allowed while nested virtualization is active";
    TimeOut = 0x0078, "HV_STATUS_TIME_OUT", "Timed out";
    CallPending = 0x0079, "HV_STATUS_CALL_PENDING", "Call pending";
    VtlAlreadyEnabled = 0x0086, "HV_STATUS_VTL_ALREADY_ENABLED", "VTL already enabled";
}

impl HvStatus {
    /// The raw 16-bit value placed in bits 15:0 of RAX.
    #[must_use]
    pub const fn raw(self) -> u16 {
        self as u16
    }

    /// Whether this is [`HvStatus::Success`].
    #[must_use]
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }
}

impl HvError {
    /// The raw 16-bit value (never 0).
    #[must_use]
    pub const fn raw(self) -> u16 {
        self as u16
    }
}

impl From<HvError> for HvStatus {
    fn from(error: HvError) -> Self {
        error.status()
    }
}

impl fmt::Display for HvStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.tlfs_name(), self.raw())
    }
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for HvError {}

const _: () = assert!(size_of::<HvStatus>() == 2);
const _: () = assert!(size_of::<HvError>() == 2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_the_tlfs() {
        assert_eq!(HvStatus::Success.raw(), 0);
        assert_eq!(HvStatus::InvalidHypercallCode.raw(), 2);
        assert_eq!(HvStatus::InvalidHypercallInput.raw(), 3);
        assert_eq!(HvStatus::InvalidAlignment.raw(), 4);
        assert_eq!(HvStatus::InvalidParameter.raw(), 5);
        assert_eq!(HvStatus::AccessDenied.raw(), 6);
        assert_eq!(HvStatus::InvalidPartitionState.raw(), 7);
        assert_eq!(HvStatus::OperationDenied.raw(), 8);
        assert_eq!(HvStatus::UnknownProperty.raw(), 9);
        assert_eq!(HvStatus::PropertyValueOutOfRange.raw(), 0xA);
        assert_eq!(HvStatus::InsufficientMemory.raw(), 0xB);
        assert_eq!(HvStatus::PartitionTooDeep.raw(), 0xC);
        assert_eq!(HvStatus::InvalidPartitionId.raw(), 0xD);
        assert_eq!(HvStatus::InvalidVpIndex.raw(), 0xE);
        assert_eq!(HvStatus::InvalidPortId.raw(), 0x11);
        assert_eq!(HvStatus::InsufficientBuffers.raw(), 0x13);
        assert_eq!(HvStatus::InvalidVpState.raw(), 0x15);
        assert_eq!(HvStatus::InsufficientBuffer.raw(), 0x33);
        assert_eq!(HvStatus::InvalidRegisterValue.raw(), 0x50);
        assert_eq!(HvStatus::TimeOut.raw(), 0x78);
        assert_eq!(HvStatus::VtlAlreadyEnabled.raw(), 0x86);
    }

    #[test]
    fn raw_round_trips_and_table_is_sorted_and_unique() {
        for pair in HvStatus::ALL.windows(2) {
            assert!(
                pair[0].raw() < pair[1].raw(),
                "{:?} before {:?}",
                pair[0],
                pair[1]
            );
        }
        for &status in HvStatus::ALL {
            assert_eq!(HvStatus::from_raw(status.raw()), Some(status));
            match HvError::from_status(status) {
                None => assert_eq!(status, HvStatus::Success),
                Some(error) => {
                    assert_eq!(error.status(), status);
                    assert_eq!(error.raw(), status.raw());
                    assert_eq!(HvStatus::from(error), status);
                }
            }
        }
    }

    #[test]
    fn unknown_and_reserved_values_are_rejected() {
        for raw in [0x0001, 0x000F, 0x0021, 0x0031, 0x0051, 0x1001, 0xFFFF] {
            assert_eq!(HvStatus::from_raw(raw), None, "{raw:#x}");
        }
        let known = (0..=u16::MAX)
            .filter(|&r| HvStatus::from_raw(r).is_some())
            .count();
        assert_eq!(known, HvStatus::ALL.len());
    }

    #[test]
    fn display_names_the_code() {
        assert_eq!(
            HvStatus::AccessDenied.to_string(),
            "HV_STATUS_ACCESS_DENIED (0x0006)"
        );
        assert_eq!(
            HvError::AccessDenied.to_string(),
            "Caller lacks the required privilege"
        );
    }
}
