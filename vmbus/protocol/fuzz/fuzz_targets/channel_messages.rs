//! Fuzz target: arbitrary bytes as channel messages, fed to a VMBus server.
//!
//! Input format (so that the fuzzer can build sequences): byte 0 bit 0 chooses a server that
//! is already connected with its offers delivered; then a list of steps, each starting with an
//! opcode byte. Opcodes 0..=4: a message of `len` bytes follows (`len` = next byte); 5: the host
//! completes an open (relid, success flag); 6: the host completes a close (relid); 7: the host
//! rescinds (relid). Every message is decoded (never panics) and, if valid, handled; an error
//! must leave the server unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vmbus_core::server::{OfferParams, Server, ServerConfig};
use vmbus_protocol::{
    ChannelId, ChannelMessage, Guid, InitiateContact, InterruptTarget, VersionNumber, device_class,
    status,
};

fn server(connected: bool) -> Server {
    let mut s = Server::new(ServerConfig {
        max_total_gpadl_pages: 4096,
        max_gpadls: 64,
        ..ServerConfig::default()
    });
    for (i, class) in [
        device_class::STORVSC,
        device_class::NETVSC,
        device_class::MICA_ECHO,
    ]
    .into_iter()
    .enumerate()
    {
        s.offer(OfferParams::new(class, Guid::ZERO, i as u32))
            .expect("fresh server has room");
    }
    if connected {
        s.handle(ChannelMessage::InitiateContact(InitiateContact {
            version: VersionNumber::WIN10_V5_3,
            target_vcpu: 0,
            interrupt: InterruptTarget::Sint { sint: 2, vtl: 0 },
            monitor_page1: 0,
            monitor_page2: 0,
        }))
        .expect("supported version");
        s.handle(ChannelMessage::RequestOffers).expect("connected");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut s = server(first & 1 == 1);
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let arg = |rest: &mut &[u8]| -> u8 {
            let (&b, t) = rest.split_first().unwrap_or((&0, &[]));
            *rest = t;
            b
        };
        let before = s.clone();
        let result = match op % 8 {
            0..=4 => {
                let len = usize::from(arg(&mut rest)).min(rest.len());
                let (bytes, t) = rest.split_at(len);
                rest = t;
                match ChannelMessage::decode(bytes) {
                    Ok(msg) => {
                        // What decodes must encode back to the same message.
                        let again = msg.to_vec().expect("decoded message encodes");
                        assert_eq!(ChannelMessage::decode(&again), Ok(msg.clone()));
                        s.handle(msg).map(drop)
                    }
                    Err(_) => Ok(()),
                }
            }
            5 => {
                let relid = ChannelId(u32::from(arg(&mut rest) % 8));
                let ok = arg(&mut rest) & 1 == 0;
                let st = if ok {
                    status::SUCCESS
                } else {
                    status::UNSUCCESSFUL
                };
                s.complete_open(relid, st).map(drop)
            }
            6 => s
                .complete_close(ChannelId(u32::from(arg(&mut rest) % 8)))
                .map(drop),
            _ => s
                .rescind(ChannelId(u32::from(arg(&mut rest) % 8)))
                .map(drop),
        };
        if result.is_err() {
            assert_eq!(s, before, "an error changed the server");
        }
        assert!(s.total_gpadl_pages() <= 4096);
    }
});
