//! Wire format of the echo test device: the smallest useful VSP/VSC pair.
//!
//! Every echo message is the in-band payload of one VMBus packet: an 8-byte [`EchoHeader`]
//! (message type, exact payload length) followed by the payload. The length is on the wire
//! because a VMBus ring pads every payload to 8 bytes and does not record its exact size.
//!
//! - The VSC sends [`MessageType::Request`] packets, each with a transaction id of its choice.
//! - The VSP answers each with a completion packet carrying the same transaction id and a
//!   [`MessageType::Response`] message with the same payload.
//!
//! The device is offered under [`INTERFACE_ID`], a Mica-private interface GUID.
//!
//! **Invariant:** [`EchoMessage::parse`] accepts any bytes without panicking; everything a peer
//! sends is checked and rejected with a typed [`EchoError`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Interface GUID the echo VSP is offered under (`device_class::MICA_ECHO`).
pub const INTERFACE_ID: vmbus_protocol::Guid = vmbus_protocol::device_class::MICA_ECHO;

/// Size of [`EchoHeader`].
pub const HEADER_LEN: usize = 8;

/// Largest payload an echo message may carry. A VMBus packet holds at most `0xffff * 8` bytes
/// including its 16-byte descriptor, so this leaves room for both headers.
pub const MAX_PAYLOAD_LEN: usize = 0xffff * 8 - 16 - HEADER_LEN;

/// Header of every echo message.
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
pub struct EchoHeader {
    /// A [`MessageType`] value.
    pub msg_type: U32,
    /// Exact payload length in bytes (the packet may carry up to 7 bytes of padding more).
    pub payload_len: U32,
}

const _: () = assert!(size_of::<EchoHeader>() == HEADER_LEN);

/// Kind of an echo message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// VSC to VSP: please send this payload back.
    Request,
    /// VSP to VSC: the payload of the request with the same transaction id.
    Response,
}

impl MessageType {
    /// The value on the wire.
    pub const fn to_wire(self) -> u32 {
        match self {
            MessageType::Request => 1,
            MessageType::Response => 2,
        }
    }

    /// Parses a wire value.
    pub const fn from_wire(value: u32) -> Result<Self, EchoError> {
        match value {
            1 => Ok(MessageType::Request),
            2 => Ok(MessageType::Response),
            other => Err(EchoError::UnknownType(other)),
        }
    }
}

/// Why bytes are not a valid echo message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EchoError {
    /// Fewer bytes than a header.
    #[error("Echo message of {len} bytes is shorter than its header")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The message type is neither request nor response.
    #[error("Unknown echo message type {0}")]
    UnknownType(u32),
    /// The header announces more payload than the packet holds.
    #[error("Echo payload of {payload_len} bytes does not fit in {available} bytes")]
    LengthBeyondPacket {
        /// Announced payload length.
        payload_len: u32,
        /// Bytes after the header.
        available: usize,
    },
    /// A payload larger than [`MAX_PAYLOAD_LEN`] (when encoding).
    #[error("Echo payload of {len} bytes exceeds {MAX_PAYLOAD_LEN}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
    },
    /// The output buffer is too small (when encoding).
    #[error("Buffer of {len} bytes cannot hold a {needed}-byte echo message")]
    BufferTooSmall {
        /// Buffer length.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
}

/// A parsed echo message borrowing its packet's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoMessage<'a> {
    /// Request or response.
    pub msg_type: MessageType,
    /// The exact payload (padding removed).
    pub payload: &'a [u8],
}

impl<'a> EchoMessage<'a> {
    /// A request carrying `payload`.
    pub fn request(payload: &'a [u8]) -> Self {
        Self {
            msg_type: MessageType::Request,
            payload,
        }
    }

    /// A response carrying `payload`.
    pub fn response(payload: &'a [u8]) -> Self {
        Self {
            msg_type: MessageType::Response,
            payload,
        }
    }

    /// Parses a packet payload (trailing padding allowed).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EchoError> {
        let (header, rest) = EchoHeader::read_from_prefix(bytes)
            .map_err(|_| EchoError::TooShort { len: bytes.len() })?;
        let msg_type = MessageType::from_wire(header.msg_type.get())?;
        let payload_len = header.payload_len.get();
        let payload = usize::try_from(payload_len)
            .ok()
            .and_then(|len| rest.get(..len))
            .ok_or(EchoError::LengthBeyondPacket {
                payload_len,
                available: rest.len(),
            })?;
        Ok(Self { msg_type, payload })
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload.len())
    }

    /// Writes the message to the start of `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EchoError> {
        let len = self.payload.len();
        if len > MAX_PAYLOAD_LEN {
            return Err(EchoError::PayloadTooLarge { len });
        }
        let needed = HEADER_LEN + len;
        let buf_len = buf.len();
        let out = buf.get_mut(..needed).ok_or(EchoError::BufferTooSmall {
            len: buf_len,
            needed,
        })?;
        let (head, body) = out.split_at_mut(HEADER_LEN);
        let header = EchoHeader {
            msg_type: U32::new(self.msg_type.to_wire()),
            // `len <= MAX_PAYLOAD_LEN` fits in u32.
            payload_len: U32::new(len as u32),
        };
        head.copy_from_slice(header.as_bytes());
        body.copy_from_slice(self.payload);
        Ok(needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_round_trips_with_padding() {
        let mut buf = [0u8; 32];
        let n = EchoMessage::request(b"hello").encode(&mut buf).unwrap();
        assert_eq!(n, 13);
        assert_eq!(&buf[..8], &[1, 0, 0, 0, 5, 0, 0, 0]);
        // A ring pads the payload to 8 bytes: parsing must ignore the padding.
        let parsed = EchoMessage::parse(&buf[..16]).unwrap();
        assert_eq!(parsed, EchoMessage::request(b"hello"));
    }

    #[test]
    fn hostile_headers_are_rejected() {
        assert_eq!(
            EchoMessage::parse(&[1, 0, 0]),
            Err(EchoError::TooShort { len: 3 })
        );
        assert_eq!(
            EchoMessage::parse(&[7, 0, 0, 0, 0, 0, 0, 0]),
            Err(EchoError::UnknownType(7))
        );
        assert_eq!(
            EchoMessage::parse(&[2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1]),
            Err(EchoError::LengthBeyondPacket {
                payload_len: u32::MAX,
                available: 1
            })
        );
    }

    #[test]
    fn encode_checks_buffer() {
        let mut small = [0u8; 9];
        assert_eq!(
            EchoMessage::response(b"ab").encode(&mut small),
            Err(EchoError::BufferTooSmall { len: 9, needed: 10 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = EchoMessage::parse(&bytes);
        }

        #[test]
        fn encode_parse_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..300),
                                   response in any::<bool>(), pad in 0usize..8) {
            let msg = if response { EchoMessage::response(&payload) } else { EchoMessage::request(&payload) };
            let mut buf = vec![0u8; msg.encoded_len() + pad];
            prop_assert_eq!(msg.encode(&mut buf).unwrap(), msg.encoded_len());
            prop_assert_eq!(EchoMessage::parse(&buf).unwrap(), msg);
        }
    }
}
