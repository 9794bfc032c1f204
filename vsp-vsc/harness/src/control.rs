//! The control plane: the real VMBus handshake between a `vmbus_core` server and client, over
//! two message rings in the shared region, and the orchestration around a device's run.
//!
//! Server side ([`serve`]): offer the VSP's interface GUID, answer version negotiation and
//! request-offers, assemble the client's GPADL, check that it names the region's ring-buffer
//! pages, complete the open and hand the ring pair to the VSP (on its own thread) while this
//! thread keeps serving channel messages: a close stops the VSP (then `complete_close`), then
//! the GPADL teardown and unload are answered.
//!
//! Client side ([`connect`]): initiate contact, collect the offers, pick the one with the VSC's
//! interface GUID, initialise both rings (indices zero, pending-send-size feature on, as Linux
//! does), describe the ring buffer in a GPADL, open the channel with the downstream page offset,
//! run the VSC, then close the channel, tear the GPADL down and unload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vmbus_core::client::{Client, ClientAction, ClientConfig, OpenParams};
use vmbus_core::server::{OfferParams, OpenRequest, Server, ServerAction, ServerConfig};
use vmbus_protocol::{
    ChannelId, ChannelMessage, GpaRange, GpadlId, Guid, MAX_MESSAGE_SIZE, UserDefined, status,
};
use vmbus_ring::wire::FEATURE_PENDING_SEND_SIZE;
use vmbus_ring::{OutgoingPacket, Packet, PacketKind, ReadError, RingReader, RingWriter};
use vsp_vsc_channel::{ChannelError, Endpoint, Notifier, Vsc, Vsp};

use crate::layout::{Geometry, MSG_TO_CLIENT_PAGE, MSG_TO_SERVER_PAGE, RING_BUFFER_PAGE};
use crate::notify::poll_with_backoff;
use crate::shm::{RegionRingMem, SharedRegion};
use crate::{HarnessError, PairOptions};

/// Connection ID the guest would signal the channel's VSP on (any value: no hypervisor here).
const CHANNEL_CONNECTION_ID: u32 = 0x2000;
/// NTSTATUS `STATUS_UNSUCCESSFUL`, returned for an open whose ring the harness cannot map.
const STATUS_UNSUCCESSFUL: u32 = 0xC000_0001;

/// How long one side waits for the other's next channel message.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// One direction pair of control-plane message rings.
#[derive(Debug)]
struct MessagePipe {
    tx: RingWriter<RegionRingMem>,
    rx: RingReader<RegionRingMem>,
    buf: Vec<u8>,
}

impl MessagePipe {
    fn new(
        region: &Arc<SharedRegion>,
        tx_page: usize,
        rx_page: usize,
    ) -> Result<Self, HarnessError> {
        let ring = |page| {
            RegionRingMem::new(region.clone(), page, 1).ok_or(HarnessError::BadFile(
                "region too small for the message rings",
            ))
        };
        let tx =
            RingWriter::new(ring(tx_page)?).map_err(|_| HarnessError::ControlRing("bad index"))?;
        let rx =
            RingReader::new(ring(rx_page)?).map_err(|_| HarnessError::ControlRing("bad index"))?;
        Ok(Self {
            tx,
            rx,
            buf: vec![0; 4096],
        })
    }

    fn server(region: &Arc<SharedRegion>) -> Result<Self, HarnessError> {
        Self::new(region, MSG_TO_CLIENT_PAGE, MSG_TO_SERVER_PAGE)
    }

    fn client(region: &Arc<SharedRegion>) -> Result<Self, HarnessError> {
        Self::new(region, MSG_TO_SERVER_PAGE, MSG_TO_CLIENT_PAGE)
    }

    fn send(&mut self, msg: &ChannelMessage) -> Result<(), HarnessError> {
        let mut bytes = [0u8; MAX_MESSAGE_SIZE];
        let len = msg
            .encode(&mut bytes)
            .map_err(|_| HarnessError::ControlRing("message does not encode"))?;
        let packet = OutgoingPacket::in_band(len as u64, &bytes[..len]);
        let tx = &mut self.tx;
        poll_with_backoff(CONTROL_TIMEOUT, || match tx.try_write(&packet) {
            Ok(_) => Some(Ok(())),
            Err(vmbus_ring::WriteError::Full { .. }) => None,
            Err(_) => Some(Err(HarnessError::ControlRing("corrupt message ring"))),
        })
        .unwrap_or(Err(HarnessError::Timeout(
            "the peer to read channel messages",
        )))
    }

    /// The next message's bytes, or `None` if none arrived within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, HarnessError> {
        let (rx, buf) = (&mut self.rx, &mut self.buf);
        let got = poll_with_backoff(timeout, || match rx.try_read(buf) {
            Ok(outcome) => Some(Ok(outcome.len)),
            Err(ReadError::Empty) => None,
            Err(_) => Some(Err(HarnessError::ControlRing("corrupt message ring"))),
        });
        let Some(len) = got.transpose()? else {
            return Ok(None);
        };
        let packet = Packet::parse(self.buf.get(..len).unwrap_or_default())
            .map_err(|_| HarnessError::ControlRing("malformed packet"))?;
        let msg_len = usize::try_from(packet.transaction_id).unwrap_or(usize::MAX);
        if packet.kind != PacketKind::InBand || msg_len > MAX_MESSAGE_SIZE {
            return Err(HarnessError::ControlRing("not a channel message"));
        }
        let bytes = packet
            .payload
            .get(..msg_len)
            .ok_or(HarnessError::ControlRing("message length beyond packet"))?;
        Ok(Some(bytes.to_vec()))
    }

    fn expect(&mut self, what: &'static str) -> Result<Vec<u8>, HarnessError> {
        self.recv(CONTROL_TIMEOUT)?
            .ok_or(HarnessError::Timeout(what))
    }
}

/// The rings named by an open request, checked against the region: the GPADL must cover whole,
/// consecutive pages of the region's ring buffer, and both rings need a control page and at
/// least one data page. Returns (client-to-server, server-to-client).
fn map_open_request(
    region: &Arc<SharedRegion>,
    req: &OpenRequest,
) -> Option<(RegionRingMem, RegionRingMem)> {
    let mut pages = Vec::new();
    for range in &req.ring {
        if range.byte_offset() != 0 || range.byte_count() as usize != range.pfns().len() * 4096 {
            return None;
        }
        pages.extend_from_slice(range.pfns());
    }
    let first = usize::try_from(*pages.first()?).ok()?;
    let consecutive = pages
        .iter()
        .enumerate()
        .all(|(i, &pfn)| u64::try_from(first + i).ok() == Some(pfn));
    let total = pages.len();
    let down = usize::try_from(req.downstream_page_offset).ok()?;
    if !consecutive || first < RING_BUFFER_PAGE || down < 2 || total.checked_sub(down)? < 2 {
        return None;
    }
    let up = RegionRingMem::new(region.clone(), first, down - 1)?;
    let downstream = RegionRingMem::new(region.clone(), first + down, total - down - 1)?;
    Some((up, downstream))
}

/// Carries out server actions; returns the open request if one came.
fn do_server_actions(
    pipe: &mut MessagePipe,
    actions: vmbus_core::Actions<ServerAction>,
    opened: &mut Option<OpenRequest>,
    close: &mut Option<ChannelId>,
    unloaded: &mut bool,
) -> Result<(), HarnessError> {
    for action in actions {
        match action {
            ServerAction::Send(msg) => pipe.send(&msg)?,
            ServerAction::OpenChannel(req) => *opened = Some(req),
            ServerAction::CloseChannel { relid } => *close = Some(relid),
            ServerAction::Unloaded => *unloaded = true,
            _ => {}
        }
    }
    Ok(())
}

/// Runs the server side over `region`: handshake, `vsp` on the opened channel, then close and
/// unload. Returns the VSP's result once the client unloaded (or went silent after the VSP
/// finished).
pub fn serve<V, N>(
    vsp: &mut V,
    region: &Arc<SharedRegion>,
    notifier: N,
    options: &PairOptions,
) -> Result<(), HarnessError>
where
    V: Vsp + Send,
    N: Notifier + Clone + Send,
{
    let mut pipe = MessagePipe::server(region)?;
    let mut server = Server::new(ServerConfig::default());
    let offer = OfferParams::new(vsp.interface_id(), options.instance, CHANNEL_CONNECTION_ID);
    let (relid, actions) = server.offer(offer)?;
    let (mut opened, mut close, mut unloaded) = (None, None, false);
    do_server_actions(&mut pipe, actions, &mut opened, &mut close, &mut unloaded)?;

    // Handshake until the client opens the channel.
    let deadline = Instant::now() + options.setup_timeout;
    let (up, down) = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let bytes = pipe
            .recv(remaining)?
            .ok_or(HarnessError::Timeout("the client to open the channel"))?;
        let actions = server.handle_bytes(&bytes)?;
        do_server_actions(&mut pipe, actions, &mut opened, &mut close, &mut unloaded)?;
        if let Some(req) = opened.take() {
            match map_open_request(region, &req) {
                Some(rings) if req.relid == relid => {
                    let actions = server.complete_open(req.relid, status::SUCCESS)?;
                    do_server_actions(&mut pipe, actions, &mut opened, &mut close, &mut unloaded)?;
                    break rings;
                }
                _ => {
                    let actions = server.complete_open(req.relid, STATUS_UNSUCCESSFUL)?;
                    do_server_actions(&mut pipe, actions, &mut opened, &mut close, &mut unloaded)?;
                }
            }
        }
    };
    let out = RingWriter::new(down).map_err(|e| ChannelError::Corrupt(open_corrupt(e)))?;
    let inp = RingReader::new(up).map_err(|e| ChannelError::Corrupt(open_corrupt(e)))?;
    let closer = notifier.clone();
    let mut endpoint = Endpoint::new(out, inp, notifier).with_idle_timeout(options.idle_timeout);

    std::thread::scope(|scope| {
        let mut device = Some(scope.spawn(move || vsp.serve(&mut endpoint)));
        let mut vsp_result: Option<Result<(), HarnessError>> = None;
        let mut silent_since: Option<Instant> = None;
        let result = loop {
            if unloaded {
                break Ok(());
            }
            if device.as_ref().is_some_and(|d| d.is_finished()) {
                vsp_result = device.take().map(join_device);
            }
            match pipe.recv(Duration::from_millis(50)) {
                Ok(Some(bytes)) => {
                    silent_since = None;
                    let step = server
                        .handle_bytes(&bytes)
                        .map_err(HarnessError::from)
                        .and_then(|actions| {
                            do_server_actions(
                                &mut pipe,
                                actions,
                                &mut opened,
                                &mut close,
                                &mut unloaded,
                            )
                        });
                    if let Err(err) = step {
                        break Err(err);
                    }
                }
                Ok(None) => {
                    // Once the VSP is done, give the client a bounded time to close and unload.
                    if vsp_result.is_some() || closer.is_closed() {
                        let since = *silent_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > CONTROL_TIMEOUT {
                            break Ok(());
                        }
                    }
                }
                Err(err) => break Err(err),
            }
            if let Some(relid) = close.take() {
                // Stop the VSP, wait until it let go of the ring, then confirm the close.
                closer.close();
                if let Some(handle) = device.take() {
                    vsp_result = Some(join_device(handle));
                }
                let step = server
                    .complete_close(relid)
                    .map_err(HarnessError::from)
                    .and_then(|actions| {
                        do_server_actions(
                            &mut pipe,
                            actions,
                            &mut opened,
                            &mut close,
                            &mut unloaded,
                        )
                    });
                if let Err(err) = step {
                    break Err(err);
                }
            }
        };
        closer.close();
        if let Some(handle) = device.take() {
            vsp_result = Some(join_device(handle));
        }
        // The device's own error says most about what went wrong; report it first.
        match vsp_result {
            Some(Err(err)) => Err(err),
            _ => result,
        }
    })
}

fn join_device(
    handle: std::thread::ScopedJoinHandle<'_, Result<(), ChannelError>>,
) -> Result<(), HarnessError> {
    match handle.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(HarnessError::Channel(err)),
        Err(_) => Err(HarnessError::Panicked),
    }
}

fn open_corrupt(err: vmbus_ring::OpenError) -> vmbus_ring::CorruptKind {
    match err {
        vmbus_ring::OpenError::Corrupt(kind) => kind,
        vmbus_ring::OpenError::InvalidDataLen(e) => vmbus_ring::CorruptKind::IndexOutOfRange {
            field: vmbus_ring::ControlField::WriteIndex,
            index: 0,
            data_len: e.data_len,
        },
    }
}

/// What the client's handshake produced.
struct ClientChannel {
    client: Client,
    relid: ChannelId,
    gpadl: GpadlId,
    up: RegionRingMem,
    down: RegionRingMem,
}

/// Carries out client actions; collects what the handshake waits for.
#[derive(Default)]
struct ClientEvents {
    offers_complete: bool,
    gpadl_status: Option<u32>,
    open_status: Option<u32>,
    torn_down: bool,
    unloaded: bool,
    failed: bool,
}

fn do_client_actions(
    pipe: &mut MessagePipe,
    actions: vmbus_core::Actions<ClientAction>,
    events: &mut ClientEvents,
) -> Result<(), HarnessError> {
    for action in actions {
        match action {
            ClientAction::Send(msg) => pipe.send(&msg)?,
            ClientAction::ConnectFailed => events.failed = true,
            ClientAction::OffersComplete => events.offers_complete = true,
            ClientAction::GpadlCreated { status, .. } => events.gpadl_status = Some(status),
            ClientAction::OpenResult { status, .. } => events.open_status = Some(status),
            ClientAction::GpadlTornDown { .. } => events.torn_down = true,
            ClientAction::Unloaded => events.unloaded = true,
            _ => {}
        }
    }
    Ok(())
}

/// Receives and handles client messages until `done` holds.
fn client_until(
    pipe: &mut MessagePipe,
    client: &mut Client,
    events: &mut ClientEvents,
    what: &'static str,
    done: impl Fn(&ClientEvents) -> bool,
) -> Result<(), HarnessError> {
    while !done(events) {
        let bytes = pipe.expect(what)?;
        let actions = client.handle_bytes(&bytes)?;
        do_client_actions(pipe, actions, events)?;
        if events.failed {
            return Err(HarnessError::ConnectFailed);
        }
    }
    Ok(())
}

fn client_handshake(
    region: &Arc<SharedRegion>,
    geometry: Geometry,
    interface: Guid,
    pipe: &mut MessagePipe,
) -> Result<ClientChannel, HarnessError> {
    let mut client = Client::new(ClientConfig::default());
    let mut events = ClientEvents::default();
    let contact = client.connect()?;
    pipe.send(&contact)?;
    client_until(pipe, &mut client, &mut events, "the offers", |e| {
        e.offers_complete
    })?;
    let relid = client
        .offers()
        .find(|offer| offer.interface_type == interface)
        .map(|offer| offer.child_relid)
        .ok_or(HarnessError::NotOffered(interface))?;

    // Lay the two rings out in the ring buffer and initialise them, as the guest does.
    let down_offset = geometry.downstream_page_offset();
    let data_pages = geometry.ring_data_pages;
    let up = RegionRingMem::new(region.clone(), RING_BUFFER_PAGE, data_pages)
        .ok_or(HarnessError::BadFile("region too small for its rings"))?;
    let down = RegionRingMem::new(region.clone(), RING_BUFFER_PAGE + down_offset, data_pages)
        .ok_or(HarnessError::BadFile("region too small for its rings"))?;
    up.init(FEATURE_PENDING_SEND_SIZE);
    down.init(FEATURE_PENDING_SEND_SIZE);

    let pfns = (RING_BUFFER_PAGE..RING_BUFFER_PAGE + geometry.ring_buffer_pages())
        .map(|page| page as u64)
        .collect();
    let range = GpaRange::whole_pages(pfns)
        .map_err(|_| HarnessError::BadGeometry("ring buffer does not fit one GPA range"))?;
    let (gpadl, messages) = client.create_gpadl(relid, &[range])?;
    for msg in &messages {
        pipe.send(msg)?;
    }
    client_until(pipe, &mut client, &mut events, "the GPADL", |e| {
        e.gpadl_status.is_some()
    })?;
    match events.gpadl_status {
        Some(status::SUCCESS) => {}
        other => return Err(HarnessError::GpadlRefused(other.unwrap_or(0))),
    }
    let open = client.open_channel(
        relid,
        OpenParams {
            ring_gpadl: gpadl,
            downstream_page_offset: down_offset as u32,
            target_vp: 0,
            user_data: UserDefined::default(),
        },
    )?;
    pipe.send(&open)?;
    client_until(pipe, &mut client, &mut events, "the open result", |e| {
        e.open_status.is_some()
    })?;
    match events.open_status {
        Some(status::SUCCESS) => Ok(ClientChannel {
            client,
            relid,
            gpadl,
            up,
            down,
        }),
        other => Err(HarnessError::OpenRefused(other.unwrap_or(0))),
    }
}

/// Runs the client side over `region`: handshake, `vsc` on the opened channel, then close the
/// channel, tear the GPADL down and unload. Returns the VSC's outcome.
pub fn connect<C, N>(
    vsc: &mut C,
    region: &Arc<SharedRegion>,
    geometry: Geometry,
    notifier: N,
    options: &PairOptions,
) -> Result<C::Outcome, HarnessError>
where
    C: Vsc,
    N: Notifier,
{
    let mut pipe = MessagePipe::client(region)?;
    let ClientChannel {
        mut client,
        relid,
        gpadl,
        up,
        down,
    } = client_handshake(region, geometry, vsc.interface_id(), &mut pipe)?;
    let out = RingWriter::new(up).map_err(|e| ChannelError::Corrupt(open_corrupt(e)))?;
    let inp = RingReader::new(down).map_err(|e| ChannelError::Corrupt(open_corrupt(e)))?;
    let mut endpoint = Endpoint::new(out, inp, notifier).with_idle_timeout(options.idle_timeout);
    let outcome = vsc.run(&mut endpoint);
    if outcome.is_err() {
        endpoint.close();
    }

    // Orderly shutdown through the control plane, as a guest driver unloading does.
    let mut events = ClientEvents::default();
    let shutdown = (|| {
        pipe.send(&client.close_channel(relid)?)?;
        pipe.send(&client.teardown_gpadl(relid, gpadl)?)?;
        client_until(
            &mut pipe,
            &mut client,
            &mut events,
            "the GPADL teardown",
            |e| e.torn_down,
        )?;
        pipe.send(&client.unload()?)?;
        client_until(&mut pipe, &mut client, &mut events, "the unload", |e| {
            e.unloaded
        })
    })();
    let outcome = outcome?;
    shutdown?;
    Ok(outcome)
}
