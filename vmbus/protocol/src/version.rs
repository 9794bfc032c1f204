//! VMBus protocol versions (`VERSION_*` in include/linux/hyperv.h).

use core::fmt;

/// A VMBus protocol version: major in the high 16 bits, minor in the low 16 bits.
///
/// Ordering is numeric, which is the protocol's "newer than" relation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VersionNumber(pub u32);

impl VersionNumber {
    /// Windows Server 2008 (0.13); Linux 6.1 no longer negotiates it.
    pub const WS2008: Self = Self::new(0, 13);
    /// Windows 7 / Server 2008 R2 (1.1); Linux 6.1 no longer negotiates it.
    pub const WIN7: Self = Self::new(1, 1);
    /// Windows 8 / Server 2012 (2.4): the oldest version Linux 6.1 offers.
    pub const WIN8: Self = Self::new(2, 4);
    /// Windows 8.1 / Server 2012 R2 (3.0).
    pub const WIN8_1: Self = Self::new(3, 0);
    /// Windows 10 (4.0).
    pub const WIN10: Self = Self::new(4, 0);
    /// Windows 10 RS3 (4.1).
    pub const WIN10_V4_1: Self = Self::new(4, 1);
    /// Newer Windows 10 (5.0): the message SINT replaces the interrupt page in initiate
    /// contact, and the version response names the message connection ID to use afterwards.
    pub const WIN10_V5: Self = Self::new(5, 0);
    /// Windows 10 RS4 (5.1).
    pub const WIN10_V5_1: Self = Self::new(5, 1);
    /// Windows Server 2019 / RS5 (5.2).
    pub const WIN10_V5_2: Self = Self::new(5, 2);
    /// Windows Server 2022 (5.3): the server answers modify-channel with a response.
    pub const WIN10_V5_3: Self = Self::new(5, 3);

    /// Packs `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self(((major as u32) << 16) | minor as u32)
    }

    /// The major number.
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor number.
    pub const fn minor(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// Whether initiate contact carries the message SINT/VTL (5.0 and later) instead of an
    /// interrupt page, and the version response carries a message connection ID.
    pub const fn uses_message_sint(self) -> bool {
        self.0 >= Self::WIN10_V5.0
    }

    /// Whether the server answers modify-channel with a modify-channel response (5.3+).
    pub const fn has_modify_channel_response(self) -> bool {
        self.0 >= Self::WIN10_V5_3.0
    }
}

impl fmt::Display for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

impl fmt::Debug for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionNumber({self})")
    }
}

/// The versions Mica speaks, newest first: the list Linux 6.1 offers (`vmbus_versions[]` in
/// drivers/hv/connection.c), tried in this order by a client.
pub const SUPPORTED_VERSIONS: &[VersionNumber] = &[
    VersionNumber::WIN10_V5_3,
    VersionNumber::WIN10_V5_2,
    VersionNumber::WIN10_V5_1,
    VersionNumber::WIN10_V5,
    VersionNumber::WIN10_V4_1,
    VersionNumber::WIN10,
    VersionNumber::WIN8_1,
    VersionNumber::WIN8,
];

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn packing_matches_linux_macros() {
        // VERSION_WIN10_V5_3 = (5 << 16) | 3, VERSION_WIN8 = (2 << 16) | 4.
        assert_eq!(VersionNumber::WIN10_V5_3.0, 0x0005_0003);
        assert_eq!(VersionNumber::WIN8.0, 0x0002_0004);
        assert_eq!(VersionNumber::WS2008.0, 13);
        assert_eq!(VersionNumber(0x0004_0001).major(), 4);
        assert_eq!(VersionNumber(0x0004_0001).minor(), 1);
        assert_eq!(format!("{}", VersionNumber::WIN8_1), "3.0");
    }

    #[test]
    fn supported_list_is_strictly_newest_first() {
        for pair in SUPPORTED_VERSIONS.windows(2) {
            assert!(pair[0] > pair[1], "{:?} before {:?}", pair[0], pair[1]);
        }
        assert_eq!(SUPPORTED_VERSIONS.len(), 8);
        assert_eq!(SUPPORTED_VERSIONS.last(), Some(&VersionNumber::WIN8));
    }

    #[test]
    fn feature_thresholds() {
        assert!(!VersionNumber::WIN10_V4_1.uses_message_sint());
        assert!(VersionNumber::WIN10_V5.uses_message_sint());
        assert!(!VersionNumber::WIN10_V5_2.has_modify_channel_response());
        assert!(VersionNumber::WIN10_V5_3.has_modify_channel_response());
    }
}
