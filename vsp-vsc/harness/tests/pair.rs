//! VSP/VSC pairs in one process (two threads) through the real VMBus handshake, including
//! hostile peers on either side.

use std::time::Duration;

use echo_vsc::{EchoConfig, EchoVsc};
use echo_vsp::EchoVsp;
use vmbus_ring::{ControlField, CorruptKind, RingMem};
use vsp_vsc_harness::devices::{Sabotage, SaboteurVsc};
use vsp_vsc_harness::{
    ChannelError, Endpoint, HarnessError, Notifier, PairOptions, Vsp, Wake, run_in_process,
};

fn options(ring_bytes: usize) -> PairOptions {
    PairOptions {
        ring_bytes,
        setup_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(20),
        ..PairOptions::default()
    }
}

fn echo(ring_bytes: usize, messages: u64, size: usize, window: usize) {
    let mut vsp = EchoVsp::new();
    let mut vsc = EchoVsc::new(EchoConfig {
        messages,
        size,
        window,
    });
    let report = run_in_process(&mut vsp, &mut vsc, &options(ring_bytes))
        .into_result()
        .unwrap_or_else(|err| panic!("size {size}: {err:?}"));
    assert_eq!(report.messages, messages);
    assert_eq!(report.bytes, messages * size as u64);
    assert_eq!(vsp.requests, messages, "the VSP answered every request");
    assert_eq!(vsp.bytes, messages * size as u64);
}

#[test]
fn echo_many_small_messages_wrap_the_ring() {
    // 4 KiB rings: thousands of packets wrap them hundreds of times, at unaligned sizes too.
    for size in [0, 1, 7, 64, 333] {
        echo(4096, 2000, size, 8);
    }
}

#[test]
fn echo_messages_larger_than_half_the_ring_block_and_resume() {
    // A 2500-byte request in a 4 KiB ring: a second one never fits beside the first, so the
    // writer must wait for the reader's pending-send-size signal (window 4 keeps it trying).
    echo(4096, 300, 2500, 4);
    // Largest that fits a 4 KiB ring: 4096 - 8 gap - 8 trailer - 16 descriptor - 8 echo header.
    echo(4096, 100, 4056, 2);
    // 64 KiB payloads through 96 KiB rings.
    echo(96 * 1024, 50, 64 * 1024, 3);
}

#[test]
fn corrupt_control_page_from_the_client_is_a_typed_error() {
    for (sabotage, expected) in [
        (
            Sabotage::ControlPage,
            CorruptKind::UnalignedIndex {
                field: ControlField::WriteIndex,
                index: 4,
            },
        ),
        (Sabotage::Packet, CorruptKind::ZeroLength),
    ] {
        let mut vsp = EchoVsp::new();
        let mut vsc = SaboteurVsc {
            interface: echo_protocol::INTERFACE_ID,
            sabotage,
            timeout: Duration::from_secs(20),
        };
        let result = run_in_process(&mut vsp, &mut vsc, &options(4096));
        // The saboteur only succeeds if the VSP closed the channel.
        result.client.expect("the VSP closed the channel");
        match result.server {
            Err(HarnessError::Channel(ChannelError::Corrupt(kind))) => assert_eq!(kind, expected),
            other => panic!("{sabotage:?}: expected a corrupt ring, got {other:?}"),
        }
        assert_eq!(vsp.requests, 0);
    }
}

/// A VSP that answers the first request with a packet whose descriptor claims more bytes than
/// it wrote, then waits for the client to close the channel.
struct LyingVsp;

impl Vsp for LyingVsp {
    fn interface_id(&self) -> vmbus_protocol::Guid {
        echo_protocol::INTERFACE_ID
    }

    fn serve<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<(), ChannelError> {
        let mut buf = vec![0u8; 8192];
        channel.recv(&mut buf)?;
        let mem = channel.writer().mem();
        // Completion, offset8 2, len8 200 (1600 bytes), but only 24 bytes published.
        let descriptor = [
            11u8, 0, 2, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        mem.write_data(0, &descriptor);
        mem.store_control(
            ControlField::WriteIndex,
            24,
            std::sync::atomic::Ordering::Release,
        );
        channel.notifier().signal();
        for _ in 0..1000 {
            if channel.notifier().wait(Duration::from_millis(20)) == Wake::Closed {
                return Ok(());
            }
        }
        Err(ChannelError::Timeout(Duration::from_secs(20)))
    }
}

#[test]
fn corrupt_packet_from_the_vsp_is_a_typed_error_for_the_vsc() {
    let mut vsc = EchoVsc::new(EchoConfig {
        messages: 10,
        size: 16,
        window: 1,
    });
    let result = run_in_process(&mut LyingVsp, &mut vsc, &options(4096));
    result.server.expect("the VSC closed the channel");
    match result.client {
        Err(HarnessError::Channel(ChannelError::Corrupt(kind))) => assert_eq!(
            kind,
            CorruptKind::LengthBeyondAvailable {
                needed: 1608,
                available: 24
            }
        ),
        other => panic!("expected a corrupt ring, got {other:?}"),
    }
}

#[test]
fn a_device_nobody_offers_is_reported() {
    let mut vsp = EchoVsp::new();
    let mut vsc = SaboteurVsc {
        interface: vmbus_protocol::device_class::NETVSC,
        sabotage: Sabotage::Packet,
        timeout: Duration::from_secs(1),
    };
    let mut opts = options(4096);
    opts.setup_timeout = Duration::from_secs(1);
    let result = run_in_process(&mut vsp, &mut vsc, &opts);
    assert!(matches!(
        result.client,
        Err(HarnessError::NotOffered(guid)) if guid == vmbus_protocol::device_class::NETVSC
    ));
    // The server gives up on the silent client after its setup timeout.
    assert!(matches!(result.server, Err(HarnessError::Timeout(_))));
}
