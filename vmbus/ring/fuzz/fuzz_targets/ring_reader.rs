//! Builds a ring from fuzzer bytes (control page, then data area) and drains it with the reader,
//! parsing every packet; then lets a writer try the same ring. Whatever the bytes, every call must
//! return `Ok` or a typed error: no panic, no out-of-bounds access, no endless loop.
//!
//! Input layout: bytes `[0, 68)` are the start of the control page (write index, read index,
//! interrupt mask, pending send size, ..., feature bits at 64); byte 68 picks the reader's buffer
//! size; the rest is the data area (zero-padded to a multiple of 8, at least 32 bytes, at most
//! 64 KiB).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmbus_ring::{
    FlatRingMem, MIN_DATA_LEN, OutgoingPacket, Packet, PacketKind, ReadError, RingReader,
    RingWriter,
};

const CONTROL_PREFIX: usize = 68;
const MAX_DATA: usize = 64 * 1024;

fuzz_target!(|input: &[u8]| {
    let (control, rest) = input.split_at(input.len().min(CONTROL_PREFIX));
    let (selector, data) = rest.split_first().map_or((0, &[][..]), |(s, d)| (*s, d));
    let data_len = data
        .len()
        .clamp(MIN_DATA_LEN as usize, MAX_DATA)
        .next_multiple_of(8);
    let mut area = vec![0u8; data_len];
    let copied = data.len().min(data_len);
    area[..copied].copy_from_slice(&data[..copied]);
    let mem = FlatRingMem::from_bytes(control, &area).expect("the data length is usable");

    if let Ok(mut reader) = RingReader::new(&mem) {
        let mut buf = vec![0u8; 16 + usize::from(selector) * 8];
        // Every packet takes at least 24 bytes; a too-small buffer costs one extra round.
        let bound = 2 * (data_len / 24) + 2;
        for _ in 0..=bound {
            match reader.try_read(&mut buf) {
                Ok(outcome) => {
                    if let Ok(packet) = Packet::parse(&buf[..outcome.len]) {
                        if let PacketKind::GpaDirect(gpa) = packet.kind {
                            for range in gpa.ranges() {
                                let _ = range.pfns().count();
                            }
                        }
                    }
                }
                Err(ReadError::BufferTooSmall { needed }) => buf.resize(needed, 0),
                Err(_) => {
                    let _ = reader.unmask_interrupts();
                    break;
                }
            }
        }
        // Terminated: the loop ended on an error or `Empty` well before the bound.
        assert!(reader.try_read(&mut buf).is_err());
    }

    if let Ok(mut writer) = RingWriter::new(&mem) {
        let _ = writer.try_write(&OutgoingPacket::in_band(1, b"fuzz"));
        let _ = writer.request_space_signal(64);
        let _ = writer.free_bytes();
    }
});
