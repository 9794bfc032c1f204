//! GUIDs as VMBus puts them on the wire, and the device classes Mica offers.
//!
//! Wire layout (the Windows/EFI "mixed-endian" form, `guid_t` in Linux): `data1` as a
//! little-endian `u32`, `data2` and `data3` as little-endian `u16`s, then the eight bytes of
//! `data4` in order. The text form `aabbccdd-eeff-gghh-iijj-kkllmmnnoopp` lists `data1`,
//! `data2`, `data3` as numbers and `data4` byte by byte.

use core::fmt;

/// A GUID (interface type, instance, hv_sock endpoint).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid {
    /// First group, stored little-endian on the wire.
    pub data1: u32,
    /// Second group, stored little-endian on the wire.
    pub data2: u16,
    /// Third group, stored little-endian on the wire.
    pub data3: u16,
    /// Last two groups, stored byte by byte.
    pub data4: [u8; 8],
}

/// Why a GUID string did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuidParseError {
    /// The string is not 36 characters long.
    #[error("GUID text must be 36 characters")]
    Length,
    /// A dash is missing or a digit is not hexadecimal.
    #[error("Malformed GUID text")]
    Syntax,
}

const fn hex_digit(c: u8) -> Result<u8, GuidParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(GuidParseError::Syntax),
    }
}

/// Reads the hex byte at `s[at..at + 2]`; `at + 1 < s.len()` is checked by the caller.
const fn hex_byte(s: &[u8], at: usize) -> Result<u8, GuidParseError> {
    let hi = match hex_digit(s[at]) {
        Ok(v) => v,
        Err(e) => return Err(e),
    };
    let lo = match hex_digit(s[at + 1]) {
        Ok(v) => v,
        Err(e) => return Err(e),
    };
    Ok((hi << 4) | lo)
}

impl Guid {
    /// Size of a GUID on the wire.
    pub const SIZE: usize = 16;

    /// The all-zero GUID.
    pub const ZERO: Self = Self::from_fields(0, 0, 0, [0; 8]);

    /// Builds a GUID from its four groups (as in Linux's `GUID_INIT`).
    pub const fn from_fields(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Self {
        Self {
            data1,
            data2,
            data3,
            data4,
        }
    }

    /// Parses the text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (no braces).
    pub const fn parse(text: &str) -> Result<Self, GuidParseError> {
        let s = text.as_bytes();
        if s.len() != 36 {
            return Err(GuidParseError::Length);
        }
        if s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
            return Err(GuidParseError::Syntax);
        }
        // Byte positions of the 16 hex pairs in text order.
        const POS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut b = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            b[i] = match hex_byte(s, POS[i]) {
                Ok(v) => v,
                Err(e) => return Err(e),
            };
            i += 1;
        }
        Ok(Self {
            data1: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            data2: u16::from_be_bytes([b[4], b[5]]),
            data3: u16::from_be_bytes([b[6], b[7]]),
            data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        })
    }

    /// Parses a GUID literal at compile time; a malformed literal fails the build.
    ///
    /// Only for `const` items: use [`Guid::parse`] for text that comes from outside.
    pub const fn from_literal(text: &str) -> Self {
        match Self::parse(text) {
            Ok(g) => g,
            Err(_) => panic!("malformed GUID literal"),
        }
    }

    /// The 16 wire bytes.
    pub const fn to_bytes(&self) -> [u8; 16] {
        let a = self.data1.to_le_bytes();
        let b = self.data2.to_le_bytes();
        let c = self.data3.to_le_bytes();
        let d = self.data4;
        [
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ]
    }

    /// Reads a GUID from its 16 wire bytes.
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        Self {
            data1: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            data2: u16::from_le_bytes([b[4], b[5]]),
            data3: u16::from_le_bytes([b[6], b[7]]),
            data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// Device class GUIDs (the `if_type` of an offer) that Linux's VSC drivers bind to.
pub mod device_class {
    use super::Guid;

    /// Synthetic SCSI controller (`hv_storvsc`, `HV_SCSI_GUID`).
    pub const STORVSC: Guid = Guid::from_literal("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f");
    /// Synthetic IDE controller (`hv_storvsc` in IDE mode, `HV_IDE_GUID`).
    pub const IDE: Guid = Guid::from_literal("32412632-86cb-44a2-9b5c-50d1417354f5");
    /// Synthetic network adapter (`hv_netvsc`, `HV_NIC_GUID`).
    pub const NETVSC: Guid = Guid::from_literal("f8615163-df3e-46c5-913f-f2d2f965ed0e");
    /// Synthetic video / framebuffer (`hyperv_fb`, `HV_SYNTHVID_GUID`).
    pub const SYNTHVID: Guid = Guid::from_literal("da0a7802-e377-4aac-8e77-0558eb1073f8");
    /// Synthetic keyboard (`hyperv-keyboard`, `HV_KBD_GUID`).
    pub const KEYBOARD: Guid = Guid::from_literal("f912ad6d-2b17-48ea-bd65-f927a61c7684");
    /// Synthetic mouse (`hid-hyperv`, `HV_MOUSE_GUID`).
    pub const MOUSE: Guid = Guid::from_literal("cfa8b69e-5b4a-4cc0-b98b-8ba1a1f3f95a");
    /// Shutdown integration service (`hv_utils`, `HV_SHUTDOWN_GUID`).
    pub const SHUTDOWN: Guid = Guid::from_literal("0e0b6031-5213-4934-818b-38d90ced39db");
    /// Time synchronisation integration service (`hv_utils`, `HV_TS_GUID`).
    pub const TIMESYNC: Guid = Guid::from_literal("9527e630-d0ae-497b-adce-e80ab0175caf");
    /// Heartbeat integration service (`hv_utils`, `HV_HEART_BEAT_GUID`).
    pub const HEARTBEAT: Guid = Guid::from_literal("57164f39-9115-4e78-ab55-382f3bd5422d");
    /// Key-value pair exchange integration service (`hv_utils`, `HV_KVP_GUID`).
    pub const KVP: Guid = Guid::from_literal("a9a0f4e7-5a45-4d96-b827-8a841e8c03e6");

    /// Mica-private echo test device: a VSP that sends every packet back unchanged.
    ///
    /// Generated once for Mica (a random version-4 GUID from the Linux kernel RNG, 2026-11-21):
    /// no other project uses it, so no stock Linux driver binds to it. Never change it: test
    /// guests and VSPs match on it.
    pub const MICA_ECHO: Guid = Guid::from_literal("cbdd044d-a59b-4504-a60e-80bc55e4d3d5");
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn wire_bytes_are_mixed_endian() {
        // storvsc as Linux's GUID_INIT(0xba6163d9, 0x04a1, 0x4d29, 0xb6, 0x05, ...) lays it out.
        let expected = [
            0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1,
            0xdc, 0x7f,
        ];
        assert_eq!(device_class::STORVSC.to_bytes(), expected);
        assert_eq!(Guid::from_bytes(expected), device_class::STORVSC);
    }

    #[test]
    fn text_round_trip() {
        let text = "f8615163-df3e-46c5-913f-f2d2f965ed0e";
        let g = Guid::parse(text).unwrap();
        assert_eq!(g.data1, 0xf861_5163);
        assert_eq!(g.data2, 0xdf3e);
        assert_eq!(g.data3, 0x46c5);
        assert_eq!(g.data4, [0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e]);
        assert_eq!(g.to_string(), text);
        assert_eq!(Guid::parse("F8615163-DF3E-46C5-913F-F2D2F965ED0E"), Ok(g));
    }

    #[test]
    fn bad_text_is_rejected() {
        assert_eq!(Guid::parse(""), Err(GuidParseError::Length));
        assert_eq!(
            Guid::parse("f8615163-df3e-46c5-913f_f2d2f965ed0e"),
            Err(GuidParseError::Syntax)
        );
        assert_eq!(
            Guid::parse("g8615163-df3e-46c5-913f-f2d2f965ed0e"),
            Err(GuidParseError::Syntax)
        );
        // Multi-byte characters must not cause slicing panics.
        assert!(Guid::parse("ééééééééééééééééééé-ééééééééééééééé").is_err());
    }

    #[test]
    fn well_known_guids_are_distinct() {
        use device_class::*;
        let all = [
            STORVSC, IDE, NETVSC, SYNTHVID, KEYBOARD, MOUSE, SHUTDOWN, TIMESYNC, HEARTBEAT, KVP,
            MICA_ECHO,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
