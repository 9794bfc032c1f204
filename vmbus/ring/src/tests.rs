//! Unit tests: packet kinds, hand-computed Linux layouts, corruption classes, notification rules,
//! and the shared-file memory.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::wire::{FEATURE_PENDING_SEND_SIZE, TransferPageRange, packet_type};
use crate::*;

fn pair(
    data_len: u32,
) -> (
    RingWriter<&'static FlatRingMem>,
    RingReader<&'static FlatRingMem>,
) {
    let mem: &'static FlatRingMem = Box::leak(Box::new(FlatRingMem::new(data_len).unwrap()));
    (RingWriter::new(mem).unwrap(), RingReader::new(mem).unwrap())
}

fn read_one<M: RingMem>(reader: &mut RingReader<M>) -> (Vec<u8>, bool) {
    let mut buf = vec![0u8; 8192];
    let outcome = reader.try_read(&mut buf).unwrap();
    buf.truncate(outcome.len);
    (buf, outcome.signal)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

// ---- Layouts against hand-computed Linux rings -------------------------------------------

#[test]
fn in_band_13_byte_payload_matches_linux_layout() {
    let (mut writer, _reader) = pair(4096);
    let payload: Vec<u8> = (1..=13).collect();
    let first =
        OutgoingPacket::in_band(0x1122_3344_5566_7788, &payload).with_completion_requested(true);
    let second = OutgoingPacket::in_band(7, &payload);
    let _ = writer.try_write(&first).unwrap();
    let _ = writer.try_write(&second).unwrap();

    let data = writer.mem().data_bytes();
    // Descriptor: type 6, offset8 2 (16 bytes), len8 4 (16 + 13 padded to 32), flags 1.
    assert_eq!(
        &data[..16],
        &[
            6, 0, 2, 0, 4, 0, 1, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11
        ]
    );
    assert_eq!(&data[16..29], &payload[..]);
    assert_eq!(&data[29..32], &[0, 0, 0], "padding is zero");
    // Trailer: the packet's start (old write index 0) in the upper 32 bits.
    assert_eq!(le64(&data, 32), 0);
    // Second packet starts at 40; its trailer at 40 + 32 carries 40 << 32.
    assert_eq!(&data[40..46], &[6, 0, 2, 0, 4, 0]);
    assert_eq!(le64(&data, 72), 40u64 << 32);
    let control = writer.mem().control_bytes();
    assert_eq!(
        le32(&control, 0),
        80,
        "write_index past two 40-byte packets"
    );
    assert_eq!(le32(&control, 4), 0, "read_index untouched");
    assert_eq!(le32(&control, 64), FEATURE_PENDING_SEND_SIZE);
}

#[test]
fn transfer_page_layout() {
    let (mut writer, mut reader) = pair(4096);
    let ranges = [
        TransferPageRange::new(100, 0),
        TransferPageRange::new(60, 4096),
    ];
    let packet = OutgoingPacket::transfer_pages(9, 0xcafe, true, &ranges, b"rndis");
    let _ = writer.try_write(&packet).unwrap();
    let data = writer.mem().data_bytes();
    // 16 descriptor + 8 header + 2 * 8 ranges = 40 = offset8 5; + 8 payload = 48 = len8 6.
    assert_eq!(&data[..8], &[7, 0, 5, 0, 6, 0, 0, 0]);
    assert_eq!(&data[16..24], &[0xfe, 0xca, 1, 0, 2, 0, 0, 0]);
    assert_eq!((le32(&data, 24), le32(&data, 28)), (100, 0));
    assert_eq!((le32(&data, 32), le32(&data, 36)), (60, 4096));
    assert_eq!(&data[40..48], b"rndis\0\0\0");

    let (bytes, _) = read_one(&mut reader);
    let parsed = Packet::parse(&bytes).unwrap();
    assert_eq!(parsed.transaction_id, 9);
    assert_eq!(parsed.payload, b"rndis\0\0\0");
    let PacketKind::TransferPages(xfer) = parsed.kind else {
        panic!("wrong kind {:?}", parsed.kind)
    };
    assert_eq!(xfer.set_id, 0xcafe);
    assert!(xfer.sender_owns_set);
    assert_eq!(xfer.ranges, &ranges);
}

#[test]
fn gpa_direct_layout_and_round_trip() {
    let (mut writer, mut reader) = pair(4096);
    let pfns_a = [0x1000, 0x1001];
    let pfns_b = [0x2222];
    // 5000 bytes from offset 100 span 2 pages; 16 bytes at 4000 span 1.
    let ranges = [
        GpaRange::new(5000, 100, &pfns_a).unwrap(),
        GpaRange::new(16, 4000, &pfns_b).unwrap(),
    ];
    let packet =
        OutgoingPacket::gpa_direct(0x55, &ranges, &[0xab; 20]).with_completion_requested(true);
    let _ = writer.try_write(&packet).unwrap();
    let data = writer.mem().data_bytes();
    // 16 + 8 + (8 + 16) + (8 + 8) = 64 = offset8 8; + 24 payload = 88 = len8 11.
    assert_eq!(&data[..8], &[9, 0, 8, 0, 11, 0, 1, 0]);
    assert_eq!((le32(&data, 16), le32(&data, 20)), (0, 2));
    assert_eq!((le32(&data, 24), le32(&data, 28)), (5000, 100));
    assert_eq!((le64(&data, 32), le64(&data, 40)), (0x1000, 0x1001));
    assert_eq!((le32(&data, 48), le32(&data, 52)), (16, 4000));
    assert_eq!(le64(&data, 56), 0x2222);
    assert_eq!(&data[64..84], &[0xab; 20]);
    assert_eq!(le64(&data, 88), 0, "trailer of a packet at 0");

    let (bytes, _) = read_one(&mut reader);
    let parsed = Packet::parse(&bytes).unwrap();
    assert!(parsed.completion_requested());
    let PacketKind::GpaDirect(gpa) = parsed.kind else {
        panic!("wrong kind {:?}", parsed.kind)
    };
    let got: Vec<(u32, u32, Vec<u64>)> = gpa
        .ranges()
        .map(|r| (r.byte_count, r.byte_offset, r.pfns().collect()))
        .collect();
    assert_eq!(
        got,
        vec![(5000, 100, vec![0x1000, 0x1001]), (16, 4000, vec![0x2222])]
    );
}

#[test]
fn in_band_and_completion_round_trip() {
    let (mut writer, mut reader) = pair(4096);
    let _ = writer
        .try_write(&OutgoingPacket::in_band(1, b"hello vmbus"))
        .unwrap();
    let _ = writer
        .try_write(&OutgoingPacket::completion(1, &[]))
        .unwrap();

    let (bytes, _) = read_one(&mut reader);
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(packet.kind, PacketKind::InBand);
    assert_eq!(packet.transaction_id, 1);
    assert!(!packet.completion_requested());
    assert_eq!(&packet.payload[..11], b"hello vmbus");
    assert_eq!(packet.payload.len(), 16, "payload is returned padded");

    let (bytes, _) = read_one(&mut reader);
    let packet = Packet::parse(&bytes).unwrap();
    assert_eq!(packet.kind, PacketKind::Completion);
    assert!(packet.payload.is_empty());
    assert_eq!(bytes.len(), 16);
    assert_eq!(reader.try_read(&mut [0u8; 64]), Err(ReadError::Empty));
}

#[test]
fn gpa_range_builder_checks_pfn_count() {
    assert_eq!(
        GpaRange::new(4096, 1, &[1]),
        Err(PacketError::PfnCountMismatch {
            expected: 2,
            actual: 1
        })
    );
    assert_eq!(
        GpaRange::new(8, 4096, &[1]),
        Err(PacketError::GpaOffsetOutsidePage { byte_offset: 4096 })
    );
    assert_eq!(GpaRange::new(0, 0, &[]), Err(PacketError::EmptyGpaRange));
    assert!(GpaRange::new(4096, 0, &[1]).is_ok());
}

// ---- Packet parser on hostile bytes --------------------------------------------------------

fn descriptor_bytes(ty: u16, offset8: u16, len8: u16) -> Vec<u8> {
    let mut bytes = vec![0u8; usize::from(len8) * 8];
    let mut head = [0u8; 16];
    head[0..2].copy_from_slice(&ty.to_le_bytes());
    head[2..4].copy_from_slice(&offset8.to_le_bytes());
    head[4..6].copy_from_slice(&len8.to_le_bytes());
    let n = bytes.len().min(16);
    bytes[..n].copy_from_slice(&head[..n]);
    bytes
}

#[test]
fn parser_rejects_malformed_packets() {
    assert_eq!(
        Packet::parse(&[0u8; 8]),
        Err(PacketError::TooShort { len: 8 })
    );
    let mut long = descriptor_bytes(6, 2, 2);
    long.extend_from_slice(&[0; 8]);
    assert_eq!(
        Packet::parse(&long),
        Err(PacketError::LengthMismatch {
            len8: 2,
            actual: 24
        })
    );
    assert_eq!(
        Packet::parse(&descriptor_bytes(6, 1, 2)),
        Err(PacketError::BadOffset {
            offset8: 1,
            len8: 2
        })
    );
    assert_eq!(
        Packet::parse(&descriptor_bytes(6, 3, 2)),
        Err(PacketError::BadOffset {
            offset8: 3,
            len8: 2
        })
    );
    assert_eq!(
        Packet::parse(&descriptor_bytes(packet_type::SYNCH, 2, 2)),
        Err(PacketError::UnsupportedType(1))
    );
    assert_eq!(
        Packet::parse(&descriptor_bytes(7, 2, 3)),
        Err(PacketError::HeaderTruncated { packet_type: 7 })
    );
    // Transfer-page header announcing 2 ranges with room for 1.
    let mut xfer = descriptor_bytes(7, 4, 4);
    xfer[20..24].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        Packet::parse(&xfer),
        Err(PacketError::RangesBeyondHeader { range_count: 2 })
    );
    // Range count near u32::MAX must not overflow.
    xfer[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Packet::parse(&xfer),
        Err(PacketError::RangesBeyondHeader {
            range_count: u32::MAX
        })
    );
    // GPA range whose PFNs would run past the header.
    let mut gpa = descriptor_bytes(9, 5, 5);
    gpa[20..24].copy_from_slice(&1u32.to_le_bytes());
    gpa[24..28].copy_from_slice(&8192u32.to_le_bytes());
    assert_eq!(
        Packet::parse(&gpa),
        Err(PacketError::RangesBeyondHeader { range_count: 1 })
    );
    // GPA range starting outside its page.
    gpa[24..28].copy_from_slice(&8u32.to_le_bytes());
    gpa[28..32].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(
        Packet::parse(&gpa),
        Err(PacketError::GpaOffsetOutsidePage { byte_offset: 5000 })
    );
    // Zero-byte GPA range.
    gpa[24..32].copy_from_slice(&[0; 8]);
    assert_eq!(Packet::parse(&gpa), Err(PacketError::EmptyGpaRange));
}

// ---- Corruption classes on the ring ------------------------------------------------------

/// A 256-byte ring whose control fields and data are set by hand.
fn hostile(write: u32, read: u32, data: &[u8]) -> RingReader<FlatRingMem> {
    let mut control = vec![0u8; 68];
    control[0..4].copy_from_slice(&write.to_le_bytes());
    control[4..8].copy_from_slice(&read.to_le_bytes());
    let mut area = vec![0u8; 256];
    area[..data.len()].copy_from_slice(data);
    RingReader::new(FlatRingMem::from_bytes(&control, &area).unwrap()).unwrap()
}

fn corrupt(reader: &mut RingReader<FlatRingMem>) -> CorruptKind {
    match reader.try_read(&mut [0u8; 4096]) {
        Err(ReadError::Corrupt(kind)) => {
            // Retrying neither panics nor moves: the same error again.
            assert_eq!(
                reader.try_read(&mut [0u8; 4096]),
                Err(ReadError::Corrupt(kind))
            );
            kind
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn write_index_beyond_data_area() {
    assert_eq!(
        corrupt(&mut hostile(256, 0, &[])),
        CorruptKind::IndexOutOfRange {
            field: ControlField::WriteIndex,
            index: 256,
            data_len: 256
        }
    );
    assert!(matches!(
        corrupt(&mut hostile(u32::MAX, 0, &[])),
        CorruptKind::IndexOutOfRange { .. }
    ));
}

#[test]
fn unaligned_write_index() {
    assert_eq!(
        corrupt(&mut hostile(44, 0, &[])),
        CorruptKind::UnalignedIndex {
            field: ControlField::WriteIndex,
            index: 44
        }
    );
}

#[test]
fn bad_read_index_is_refused_at_open() {
    let control = [0u8, 0, 0, 0, 12, 0, 0, 0];
    let mem = FlatRingMem::from_bytes(&control, &[0u8; 256]).unwrap();
    assert_eq!(
        RingReader::new(&mem).unwrap_err(),
        OpenError::Corrupt(CorruptKind::UnalignedIndex {
            field: ControlField::ReadIndex,
            index: 12
        })
    );
}

#[test]
fn fewer_bytes_than_a_packet() {
    assert_eq!(
        corrupt(&mut hostile(16, 0, &descriptor_bytes(6, 2, 2))),
        CorruptKind::Truncated { available: 16 }
    );
}

#[test]
fn zero_length_packet() {
    assert_eq!(
        corrupt(&mut hostile(64, 0, &descriptor_bytes(6, 2, 0))),
        CorruptKind::ZeroLength
    );
}

#[test]
fn length_shorter_than_descriptor() {
    let mut bytes = descriptor_bytes(6, 2, 2);
    bytes[4] = 1;
    assert_eq!(
        corrupt(&mut hostile(64, 0, &bytes)),
        CorruptKind::LengthTooSmall { len8: 1 }
    );
}

#[test]
fn offset_inside_descriptor() {
    for offset8 in [0, 1] {
        assert_eq!(
            corrupt(&mut hostile(64, 0, &descriptor_bytes(6, offset8, 4))),
            CorruptKind::OffsetInsideDescriptor { offset8 }
        );
    }
}

#[test]
fn offset_beyond_length() {
    assert_eq!(
        corrupt(&mut hostile(64, 0, &descriptor_bytes(6, 5, 4))),
        CorruptKind::OffsetBeyondLength {
            offset8: 5,
            len8: 4
        }
    );
}

#[test]
fn length_beyond_published_data() {
    // 32 bytes published, the descriptor claims 32 + trailer.
    assert_eq!(
        corrupt(&mut hostile(32, 0, &descriptor_bytes(6, 2, 4))),
        CorruptKind::LengthBeyondAvailable {
            needed: 40,
            available: 32
        }
    );
    // len8 = 0xffff, far beyond the ring.
    assert_eq!(
        corrupt(&mut hostile(248, 0, &descriptor_bytes(6, 2, 0xffff)[..16])),
        CorruptKind::LengthBeyondAvailable {
            needed: 0xffff * 8 + 8,
            available: 248
        }
    );
}

#[test]
fn packet_larger_than_buffer_is_not_corruption() {
    let (mut writer, mut reader) = pair(4096);
    let _ = writer
        .try_write(&OutgoingPacket::in_band(3, &[7; 100]))
        .unwrap();
    assert_eq!(
        reader.try_read(&mut [0u8; 64]),
        Err(ReadError::BufferTooSmall { needed: 120 })
    );
    // Nothing was consumed: a large enough buffer gets the packet.
    let (bytes, _) = read_one(&mut reader);
    assert_eq!(Packet::parse(&bytes).unwrap().transaction_id, 3);
}

#[test]
fn packet_wrapping_around_the_end_reads_back_whole() {
    let (mut writer, mut reader) = pair(64);
    let payload: Vec<u8> = (0..16).collect();
    // 16 + 16 + 8 = 40 bytes per packet: the second one starts at 40 and wraps at 64.
    for id in 0..5 {
        let _ = writer
            .try_write(&OutgoingPacket::in_band(id, &payload))
            .unwrap();
        let (bytes, _) = read_one(&mut reader);
        let packet = Packet::parse(&bytes).unwrap();
        assert_eq!((packet.transaction_id, packet.payload), (id, &payload[..]));
    }
}

#[test]
fn reader_never_trusts_its_published_index() {
    let (mut writer, mut reader) = pair(256);
    let _ = writer
        .try_write(&OutgoingPacket::in_band(1, &[1; 8]))
        .unwrap();
    // The peer scribbles over read_index; the reader keeps its own.
    reader
        .mem()
        .store_control(ControlField::ReadIndex, 0x40, Ordering::Relaxed);
    let (bytes, _) = read_one(&mut reader);
    assert_eq!(Packet::parse(&bytes).unwrap().transaction_id, 1);
    assert_eq!(reader.try_read(&mut [0u8; 64]), Err(ReadError::Empty));
}

#[test]
fn writer_rejects_corrupt_read_index() {
    let (mut writer, _reader) = pair(256);
    writer
        .mem()
        .store_control(ControlField::ReadIndex, 1000, Ordering::Relaxed);
    assert_eq!(
        writer.try_write(&OutgoingPacket::in_band(1, &[])),
        Err(WriteError::Corrupt(CorruptKind::IndexOutOfRange {
            field: ControlField::ReadIndex,
            index: 1000,
            data_len: 256
        }))
    );
}

#[test]
fn full_and_too_large() {
    let (mut writer, mut reader) = pair(64);
    // Usable space 56: a 40-byte packet fits once, not twice.
    let packet = OutgoingPacket::in_band(0, &[0; 16]);
    assert_eq!(packet.ring_len(), 40);
    let _ = writer.try_write(&packet).unwrap();
    assert_eq!(
        writer.try_write(&packet),
        Err(WriteError::Full {
            needed: 40,
            free: 16
        })
    );
    // Exactly filling the ring is refused: 56 = the whole usable space is fine, 64 is not.
    let _ = read_one(&mut reader);
    assert!(
        writer
            .try_write(&OutgoingPacket::in_band(0, &[0; 32]))
            .is_ok()
    );
    assert_eq!(
        writer.try_write(&OutgoingPacket::in_band(0, &[0; 40])),
        Err(WriteError::TooLarge {
            needed: 64,
            max: 56
        })
    );
    // A packet len8 cannot describe.
    let (mut big_writer, _) = pair(1 << 20);
    let huge = vec![0u8; 0xffff * 8];
    assert!(matches!(
        big_writer.try_write(&OutgoingPacket::in_band(0, &huge)),
        Err(WriteError::TooLarge { .. })
    ));
}

#[test]
fn data_len_is_checked() {
    assert!(FlatRingMem::new(0).is_err());
    assert!(FlatRingMem::new(24).is_err());
    assert!(FlatRingMem::new(100).is_err());
    assert!(FlatRingMem::new(MAX_DATA_LEN + 8).is_err());
    assert!(FlatRingMem::new(32).is_ok());
}

// ---- Notification rules -----------------------------------------------------------------

#[test]
fn writer_signals_only_on_empty_to_non_empty() {
    let (mut writer, mut reader) = pair(4096);
    let packet = OutgoingPacket::in_band(0, &[1; 8]);
    assert!(
        writer.try_write(&packet).unwrap().signal,
        "empty -> non-empty"
    );
    assert!(
        !writer.try_write(&packet).unwrap().signal,
        "already non-empty"
    );
    let _ = read_one(&mut reader);
    assert!(
        !writer.try_write(&packet).unwrap().signal,
        "reader has not caught up"
    );
    let _ = read_one(&mut reader);
    let _ = read_one(&mut reader);
    assert!(writer.try_write(&packet).unwrap().signal, "empty again");
}

#[test]
fn masked_reader_gets_no_signal_and_rechecks_on_unmask() {
    let (mut writer, mut reader) = pair(4096);
    reader.mask_interrupts();
    let packet = OutgoingPacket::in_band(0, &[1; 8]);
    assert!(!writer.try_write(&packet).unwrap().signal);
    assert!(
        reader.unmask_interrupts(),
        "data arrived while masked: do not sleep"
    );
    let _ = read_one(&mut reader);
    assert!(!reader.unmask_interrupts(), "empty: may sleep");
    assert!(
        writer.try_write(&packet).unwrap().signal,
        "unmasked and empty"
    );
}

#[test]
fn pending_send_size_crossing_signals_exactly_once() {
    let (mut writer, mut reader) = pair(128);
    // 24-byte ring entries (no payload): usable space 120 holds five.
    let small = OutgoingPacket::in_band(0, &[]);
    for _ in 0..5 {
        let _ = writer.try_write(&small).unwrap();
    }
    let big = OutgoingPacket::in_band(1, &[0; 48]); // 72 bytes in the ring
    let Err(WriteError::Full { needed, free }) = writer.try_write(&big) else {
        panic!("ring should be full")
    };
    assert_eq!((needed, free), (72, 0));
    assert_eq!(writer.request_space_signal(needed), Ok(SpaceWait::Sleep));
    assert_eq!(
        writer
            .mem()
            .load_control(ControlField::PendingSendSize, Ordering::Relaxed),
        72
    );

    // Free space goes 0 -> 24 -> 48 -> 72 -> 96 -> 120; only the step reaching 72 signals.
    let signals: Vec<bool> = (0..5).map(|_| read_one(&mut reader).1).collect();
    assert_eq!(signals, [false, false, true, false, false]);

    let outcome = writer.try_write(&big).unwrap();
    assert!(outcome.signal, "ring was empty");
    assert_eq!(
        writer
            .mem()
            .load_control(ControlField::PendingSendSize, Ordering::Relaxed),
        0,
        "a successful write withdraws the request"
    );
}

#[test]
fn batch_commit_decides_once() {
    let (mut writer, mut reader) = pair(128);
    for _ in 0..5 {
        let _ = writer.try_write(&OutgoingPacket::in_band(0, &[])).unwrap();
    }
    assert_eq!(writer.request_space_signal(48), Ok(SpaceWait::Sleep));
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        assert_eq!(reader.peek(&mut buf), Ok(16));
    }
    assert_eq!(
        writer.free_bytes(),
        Ok(0),
        "peeked space is not released yet"
    );
    assert!(reader.commit().signal, "0 -> 72 free crosses 48");
    assert!(!reader.commit().signal, "nothing new to release");
}

#[test]
fn rollback_rereads_peeked_packets() {
    let (mut writer, mut reader) = pair(256);
    let _ = writer.try_write(&OutgoingPacket::in_band(1, &[])).unwrap();
    let _ = writer.try_write(&OutgoingPacket::in_band(2, &[])).unwrap();
    let mut buf = [0u8; 64];
    let _ = reader.peek(&mut buf).unwrap();
    reader.rollback();
    let (bytes, _) = read_one(&mut reader);
    assert_eq!(Packet::parse(&bytes).unwrap().transaction_id, 1);
}

#[test]
fn space_already_free_means_retry_now() {
    let (mut writer, mut reader) = pair(64);
    let packet = OutgoingPacket::in_band(0, &[0; 16]);
    let _ = writer.try_write(&packet).unwrap();
    let Err(WriteError::Full { needed, .. }) = writer.try_write(&packet) else {
        panic!("should be full")
    };
    // The reader frees the space before the writer registers its request.
    assert!(!read_one(&mut reader).1, "no request yet: no signal");
    assert_eq!(
        writer.request_space_signal(needed),
        Ok(SpaceWait::Available)
    );
}

#[test]
fn no_reader_signal_without_request_or_feature() {
    let (mut writer, mut reader) = pair(64);
    let packet = OutgoingPacket::in_band(0, &[0; 16]);
    let _ = writer.try_write(&packet).unwrap();
    assert!(!read_one(&mut reader).1, "writer never asked");

    let _ = writer.try_write(&packet).unwrap();
    writer
        .mem()
        .store_control(ControlField::FeatureBits, 0, Ordering::Relaxed);
    let _ = writer.try_write(&packet).unwrap_err();
    assert_eq!(writer.request_space_signal(40), Ok(SpaceWait::PollOnly));
    // Even if a peer sets pending_send_sz, without the feature the reader does not signal.
    writer
        .mem()
        .store_control(ControlField::PendingSendSize, 40, Ordering::Relaxed);
    assert!(!read_one(&mut reader).1);
}

// ---- Shared-file memory --------------------------------------------------------------------

mod shared_file {
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("vmbus-ring-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn create_open_and_exchange() {
        let path = temp_path("exchange");
        let created = SharedFileRingMem::create(&path, 8192).unwrap();
        let opened = SharedFileRingMem::open(&path).unwrap();
        assert_eq!(opened.data_len(), 8192);
        assert_eq!(
            opened.load_control(ControlField::FeatureBits, Ordering::Relaxed),
            FEATURE_PENDING_SEND_SIZE
        );
        let mut writer = RingWriter::new(&created).unwrap();
        let mut reader = RingReader::new(&opened).unwrap();
        let _ = writer
            .try_write(&OutgoingPacket::in_band(42, b"across mappings"))
            .unwrap();
        let (bytes, _) = read_one(&mut reader);
        assert_eq!(
            &Packet::parse(&bytes).unwrap().payload[..15],
            b"across mappings"
        );
        // The file holds the wire layout: write_index 40 at offset 0, the descriptor at 4096.
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 4096 + 8192);
        assert_eq!(le32(&raw, 0), 40);
        assert_eq!(le32(&raw, 4), 40);
        assert_eq!(&raw[4096..4102], &[6, 0, 2, 0, 4, 0]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn open_validates_size() {
        let path = temp_path("sizes");
        assert!(matches!(
            SharedFileRingMem::create(&path, 1000),
            Err(SharedFileError::BadDataLen { .. })
        ));
        for (len, short) in [
            (0u64, true),
            (4096, true),
            (4096 + 100, true),
            (3 * 4096 + 8, false),
        ] {
            std::fs::write(&path, vec![0u8; len as usize]).unwrap();
            let err = SharedFileRingMem::open(&path).unwrap_err();
            if short {
                assert!(
                    matches!(err, SharedFileError::TooShort { .. }),
                    "{len}: {err:?}"
                );
            } else {
                assert!(
                    matches!(err, SharedFileError::BadDataLen { .. }),
                    "{len}: {err:?}"
                );
            }
        }
        assert!(matches!(
            SharedFileRingMem::open(&temp_path("missing")),
            Err(SharedFileError::Io(_))
        ));
        // create refuses to clobber a file another process may have mapped.
        assert!(matches!(
            SharedFileRingMem::create(&path, 4096),
            Err(SharedFileError::Io(_))
        ));
        std::fs::remove_file(&path).unwrap();
    }

    const CHILD_ENV: &str = "VMBUS_RING_CHILD_PATH";
    const CHILD_PACKETS: u64 = 2000;

    /// Bounded busy-wait step: yields, and fails the test instead of hanging forever.
    fn spin(tries: &mut u64, what: &str) {
        *tries += 1;
        assert!(*tries < 200_000_000, "gave up waiting: {what}");
        std::thread::yield_now();
    }

    /// The writer half of `two_processes_exchange_packets`, run in a child process.
    #[test]
    fn two_processes_child_writer() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return; // Only meaningful when spawned by the parent test.
        };
        let mem = SharedFileRingMem::open(std::path::Path::new(&path)).unwrap();
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut tries = 0;
        for id in 0..CHILD_PACKETS {
            let payload = vec![id as u8; (id % 300) as usize];
            while let Err(err) = writer.try_write(&OutgoingPacket::in_band(id, &payload)) {
                assert!(matches!(err, WriteError::Full { .. }), "{err:?}");
                spin(&mut tries, "space");
            }
        }
    }

    #[test]
    fn two_processes_exchange_packets() {
        let path = temp_path("processes");
        let mem = SharedFileRingMem::create(&path, 4096).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::shared_file::two_processes_child_writer",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut tries = 0;
        for id in 0..CHILD_PACKETS {
            let outcome = loop {
                match reader.try_read(&mut buf) {
                    Ok(outcome) => break outcome,
                    Err(ReadError::Empty) => spin(&mut tries, "data"),
                    Err(err) => panic!("{err:?}"),
                }
            };
            let packet = Packet::parse(&buf[..outcome.len]).unwrap();
            assert_eq!(packet.transaction_id, id);
            let len = (id % 300) as usize;
            assert!(packet.payload[..len].iter().all(|&b| b == id as u8));
            assert!(packet.payload[len..].iter().all(|&b| b == 0));
        }
        assert!(child.wait().unwrap().success());
        assert_eq!(reader.try_read(&mut buf), Err(ReadError::Empty));
        std::fs::remove_file(&path).unwrap();
    }
}

// ---- Index arithmetic ---------------------------------------------------------------------

mod index_math {
    use proptest::prelude::*;

    use crate::ring::{advance, used_bytes};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn used_and_advance_agree(words in 1u32..(1 << 28), a in any::<u32>(), b in any::<u32>()) {
            let size = words * 8;
            let (read, write) = ((a % words) * 8, (b % words) * 8);
            let used = used_bytes(write, read, size);
            prop_assert!(used < size);
            prop_assert_eq!(used % 8, 0);
            prop_assert_eq!(advance(read, used, size), write);
            let back = used_bytes(read, write, size);
            if used == 0 {
                prop_assert_eq!(back, 0);
            } else {
                prop_assert_eq!(used + back, size);
            }
            prop_assert!(advance(write, size - 8, size) < size);
        }
    }
}

#[test]
fn descriptor_head_matches_the_descriptor_layout() {
    use zerocopy::IntoBytes;
    let packet = OutgoingPacket::transfer_pages(0x1122_3344_5566_7788, 7, true, &[], &[1; 20])
        .with_completion_requested(true);
    let head = packet.descriptor_head().unwrap();
    let descriptor = wire::PacketDescriptor {
        packet_type: packet_type::DATA_USING_XFER_PAGES.into(),
        offset8: 3.into(),
        len8: 6.into(),
        flags: wire::FLAG_COMPLETION_REQUESTED.into(),
        transaction_id: 0x1122_3344_5566_7788.into(),
    };
    assert_eq!(&head.to_le_bytes()[..], &descriptor.as_bytes()[..8]);
    let mut emitted = Vec::new();
    packet.emit(head, |piece| emitted.extend_from_slice(piece));
    assert_eq!(&emitted[..16], descriptor.as_bytes());
    assert_eq!(emitted.len() as u64, packet.packet_len());
}

// ---- Cached indices and batches ----------------------------------------------------------

#[test]
fn writer_reports_a_corrupt_read_index_on_reload() {
    let (mut writer, mut reader) = pair(256);
    let packet = OutgoingPacket::in_band(0, &[0; 16]); // 40 ring bytes
    let _ = writer.try_write(&packet).unwrap();
    let _ = read_one(&mut reader);
    writer
        .mem()
        .store_control(ControlField::ReadIndex, 1001, Ordering::Relaxed);
    // The cached index allows a few more writes; the reload it then needs sees the corruption.
    let error = (0..10)
        .find_map(|_| writer.try_write(&packet).err())
        .expect("the writer must reload before the ring is full");
    assert_eq!(
        error,
        WriteError::Corrupt(CorruptKind::IndexOutOfRange {
            field: ControlField::ReadIndex,
            index: 1001,
            data_len: 256
        })
    );
    // Nothing was published by the failed write, and the error stays.
    assert_eq!(writer.try_write(&packet), Err(error));
    assert_eq!(writer.try_write_batch(&[packet]), Err(error));
}

#[test]
fn reader_reports_a_corrupt_write_index_on_reload() {
    let (mut writer, mut reader) = pair(256);
    let _ = writer
        .try_write(&OutgoingPacket::in_band(1, &[1; 8]))
        .unwrap();
    let _ = read_one(&mut reader);
    reader
        .mem()
        .store_control(ControlField::WriteIndex, 12, Ordering::Relaxed);
    let unaligned = ReadError::Corrupt(CorruptKind::UnalignedIndex {
        field: ControlField::WriteIndex,
        index: 12,
    });
    assert_eq!(reader.peek(&mut [0u8; 64]), Err(unaligned));
    assert_eq!(reader.peek_batch(&mut [0u8; 64], 4), Err(unaligned));
    assert_eq!(reader.read_batch(&mut [0u8; 64], 4), Err(unaligned));
    assert!(
        reader.has_data(),
        "a corrupt index must not look like sleep-worthy emptiness"
    );
}

#[test]
fn reader_sees_data_published_after_its_cached_index() {
    let (mut writer, mut reader) = pair(4096);
    let _ = writer.try_write(&OutgoingPacket::in_band(1, &[])).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(reader.peek(&mut buf), Ok(16));
    assert_eq!(reader.peek(&mut buf), Err(ReadError::Empty));
    let _ = writer.try_write(&OutgoingPacket::in_band(2, &[])).unwrap();
    assert_eq!(reader.peek(&mut buf), Ok(16), "empty by the cache: reload");
    assert_eq!(Packet::parse(&buf[..16]).unwrap().transaction_id, 2);
}

/// A batch write leaves exactly the bytes the same packets written one by one leave: the wire
/// format does not depend on batching or staging (small and large packets, across the wrap).
#[test]
fn batch_write_is_byte_identical_to_single_writes() {
    let big = vec![0x77u8; 700]; // larger than the staging limit: copied in pieces
    let pfns = [0x10, 0x11];
    let ranges = [GpaRange::new(4096, 2048, &pfns).unwrap()];
    let xfer = [TransferPageRange::new(1, 2)];
    let packets = [
        OutgoingPacket::in_band(1, b"abc"),
        OutgoingPacket::completion(2, &[9; 64]).with_completion_requested(true),
        OutgoingPacket::in_band(3, &big),
        OutgoingPacket::gpa_direct(4, &ranges, &[5; 13]),
        OutgoingPacket::transfer_pages(5, 1, true, &xfer, &[]),
    ];
    for lead in [0usize, 1, 40] {
        let (mut single, mut single_reader) = pair(2048);
        let (mut batch, mut batch_reader) = pair(2048);
        // Move both rings' indices so the batch wraps around the end.
        let filler = OutgoingPacket::in_band(0, &[0; 1000]);
        for (writer, reader) in [
            (&mut single, &mut single_reader),
            (&mut batch, &mut batch_reader),
        ] {
            for _ in 0..lead.min(1) {
                let _ = writer.try_write(&filler).unwrap();
                let _ = read_one(reader);
            }
            for _ in 0..lead {
                let _ = writer.try_write(&OutgoingPacket::in_band(0, &[])).unwrap();
                let _ = read_one(reader);
            }
        }
        for packet in &packets {
            let _ = single.try_write(packet).unwrap();
        }
        let outcome = batch.try_write_batch(&packets).unwrap();
        assert_eq!(outcome.written, packets.len());
        assert_eq!(single.mem().data_bytes(), batch.mem().data_bytes());
        assert_eq!(single.mem().control_bytes(), batch.mem().control_bytes());

        let mut buf = vec![0u8; 4096];
        let read = batch_reader.read_batch(&mut buf, 16).unwrap();
        let ids: Vec<u64> = read
            .packets
            .iter()
            .map(|bytes| Packet::parse(bytes).unwrap().transaction_id)
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }
}

#[test]
fn batch_write_signals_once_by_the_linux_rule() {
    let (mut writer, mut reader) = pair(4096);
    let packets = [OutgoingPacket::in_band(0, &[1; 8]); 3];
    let outcome = writer.try_write_batch(&packets).unwrap();
    assert_eq!(
        outcome,
        BatchWriteOutcome {
            written: 3,
            signal: true
        },
        "empty before the batch"
    );
    assert!(!writer.try_write_batch(&packets).unwrap().signal);
    let mut buf = vec![0u8; 4096];
    assert_eq!(reader.read_batch(&mut buf, 100).unwrap().packets.len(), 6);
    reader.mask_interrupts();
    assert!(
        !writer.try_write_batch(&packets).unwrap().signal,
        "masked: no signal"
    );
    assert!(reader.unmask_interrupts(), "the re-check sees the batch");
    assert_eq!(reader.read_batch(&mut buf, 100).unwrap().packets.len(), 3);
    assert!(!reader.unmask_interrupts());
    assert!(writer.try_write_batch(&packets).unwrap().signal);
    assert_eq!(
        writer.try_write_batch(&[]),
        Ok(BatchWriteOutcome {
            written: 0,
            signal: false
        })
    );
}

#[test]
fn batch_write_stops_at_the_first_packet_that_does_not_fit() {
    let (mut writer, mut reader) = pair(128);
    // Usable space 120: three 40-byte packets.
    let packets = [OutgoingPacket::in_band(0, &[0; 16]); 5];
    assert_eq!(writer.try_write_batch(&packets).unwrap().written, 3);
    assert_eq!(
        writer.try_write_batch(&packets[3..]),
        Err(WriteError::Full {
            needed: 40,
            free: 0
        })
    );
    let _ = read_one(&mut reader);
    assert_eq!(writer.try_write_batch(&packets[3..]).unwrap().written, 1);

    // A packet that can never fit ends the batch before it, and is reported when it is first.
    let (mut writer, _reader) = pair(128);
    let huge = [0u8; 200];
    let mixed = [
        OutgoingPacket::in_band(0, &[]),
        OutgoingPacket::in_band(1, &huge),
    ];
    assert_eq!(writer.try_write_batch(&mixed).unwrap().written, 1);
    assert!(matches!(
        writer.try_write_batch(&mixed[1..]),
        Err(WriteError::TooLarge { .. })
    ));
}

#[test]
fn batch_write_withdraws_the_space_request() {
    let (mut writer, mut reader) = pair(128);
    let packets = [OutgoingPacket::in_band(0, &[0; 16]); 4];
    assert_eq!(writer.try_write_batch(&packets).unwrap().written, 3);
    assert_eq!(writer.request_space_signal(40), Ok(SpaceWait::Sleep));
    assert!(
        read_one(&mut reader).1,
        "free space 0 -> 40 reaches the request"
    );
    assert_eq!(writer.try_write_batch(&packets[3..]).unwrap().written, 1);
    assert_eq!(
        writer
            .mem()
            .load_control(ControlField::PendingSendSize, Ordering::Relaxed),
        0
    );
}

#[test]
fn read_batch_commits_once_and_decides_the_space_signal_once() {
    let (mut writer, mut reader) = pair(128);
    for _ in 0..5 {
        let _ = writer.try_write(&OutgoingPacket::in_band(0, &[])).unwrap();
    }
    assert_eq!(writer.request_space_signal(48), Ok(SpaceWait::Sleep));
    let mut buf = [0u8; 128];
    let batch = reader.read_batch(&mut buf, 3).unwrap();
    assert_eq!(batch.packets.len(), 3);
    assert!(batch.signal, "0 -> 72 free crosses 48, decided once");
    assert_eq!(writer.free_bytes(), Ok(72));
    let batch = reader.read_batch(&mut buf, 3).unwrap();
    assert_eq!((batch.packets.len(), batch.signal), (2, false));
    assert_eq!(reader.read_batch(&mut buf, 3), Err(ReadError::Empty));
}

#[test]
fn peek_batch_limits_and_buffer_sizes() {
    let (mut writer, mut reader) = pair(4096);
    for id in 0..4 {
        let _ = writer
            .try_write(&OutgoingPacket::in_band(id, &[id as u8; 8]))
            .unwrap();
    }
    // Each packet is 24 bytes plus an 8-byte trailer.
    assert_eq!(
        reader.peek_batch(&mut [0u8; 8], 4),
        Err(ReadError::BufferTooSmall { needed: 24 }),
        "too small for a descriptor: the size is still reported"
    );
    assert_eq!(
        reader.peek_batch(&mut [0u8; 23], 4),
        Err(ReadError::BufferTooSmall { needed: 24 })
    );
    assert_eq!(reader.peek_batch(&mut [0u8; 64], 0).unwrap().len(), 0);
    // 56 bytes take one packet (24) and its trailer, and not the second (32 + 24 = 56: fits).
    assert_eq!(reader.peek_batch(&mut [0u8; 56], 4).unwrap().len(), 2);
    reader.rollback();
    assert_eq!(reader.peek_batch(&mut [0u8; 55], 4).unwrap().len(), 1);
    let mut buf = [0u8; 256];
    let batch = reader.peek_batch(&mut buf, 2).unwrap();
    let ids: Vec<u64> = batch
        .iter()
        .map(|bytes| Packet::parse(bytes).unwrap().transaction_id)
        .collect();
    assert_eq!(ids, [1, 2]);
    assert!(!reader.commit().signal);
    assert_eq!(read_one(&mut reader).0.len(), 24);
}

#[test]
fn batch_read_stops_before_a_corrupt_packet_and_reports_it_next() {
    let (mut writer, mut reader) = pair(256);
    let _ = writer.try_write(&OutgoingPacket::in_band(1, &[])).unwrap();
    let _ = writer.try_write(&OutgoingPacket::in_band(2, &[])).unwrap();
    // Corrupt the second descriptor (at 24): len8 0.
    let mut data = writer.mem().data_bytes();
    data[24 + 4] = 0;
    data[24 + 5] = 0;
    let control = writer.mem().control_bytes();
    let mem = FlatRingMem::from_bytes(&control, &data).unwrap();
    let mut reader2 = RingReader::new(&mem).unwrap();
    let mut buf = [0u8; 256];
    assert_eq!(reader2.read_batch(&mut buf, 8).unwrap().packets.len(), 1);
    assert_eq!(
        reader2.read_batch(&mut buf, 8),
        Err(ReadError::Corrupt(CorruptKind::ZeroLength))
    );
    // The untouched ring reads both.
    assert_eq!(reader.read_batch(&mut buf, 8).unwrap().packets.len(), 2);
}
