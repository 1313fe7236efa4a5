//! Live capture of the probe's own connections, where the probe may (root or
//! `CAP_NET_RAW`): every TCP packet of a registered flow, both ways, and the ICMP errors
//! that quote it, with the IP/TCP facts an injector gets wrong
//! ([`crate::observation::packets`]).
//!
//! One `AF_PACKET` socket of type `SOCK_DGRAM`, bound to no interface, read by a thread
//! of its own. Why this socket rather than a pnet datalink channel: a `SOCK_DGRAM`
//! packet socket delivers IP packets without their link header from *every* interface
//! (Ethernet, loopback, tunnels, PPP alike), so there is no interface to choose and no
//! link type to handle; a pnet channel is per interface and hands link-layer frames.
//! A classic BPF filter (attached through socket2's safe API) keeps only TCP, ICMP and
//! UDP from port 53 in the kernel; TCP of flows that are not ours is dropped from its
//! header fields before any parsing ([`FlowTable`]). DNS replies are logged with their IP
//! ID and DF bit ([`dns::DnsReplyLog`]) until the scan adds them to its DNS observations
//! ([`Capture::annotate_dns`]). The capture runs only in scans with a web stage, so a
//! DNS-only scan at full rate reads no packet here.
//!
//! Flows are registered by the web probes before their SYN ([`Capture::register`]) and
//! taken after the exchange ([`FlowTicket::finish`]). The thread may lag behind the
//! probes on a busy machine, so taking a flow (or a DNS reply's facts) first waits until
//! the thread has read everything the kernel queued before that moment
//! ([`Capture::caught_up`]): the kernel hands a packet to the packet socket before the
//! probe's own socket sees it, so an empty queue after that moment means nothing of the
//! exchange is still unread. Without the right, the scan runs
//! as without capture and each web observation says `capture: unavailable` with the
//! reason.

pub mod dns;
mod table;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use crate::observation::DnsQueryObservation;
use crate::observation::packets::{CaptureObservation, ConnectionPackets};
use crate::packet::Transport;

pub use crate::record::CaptureMode;
pub use table::{FlowTable, MAX_FLOWS, MAX_PACKETS_HELD, RegisterError};

/// Why a capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "no permission to capture packets (needs root or CAP_NET_RAW): opening an AF_PACKET socket failed: {0}"
    )]
    NotPermitted(#[source] io::Error),
    #[error("cannot open a packet capture socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot start the capture thread: {0}")]
    Thread(#[source] io::Error),
}

/// How long after a failed exchange the capture keeps listening for late packets
/// (injected resets arrive a median 15 ms after the trigger; genuine server packets
/// that follow an injected reset take a round trip more). Clean exchanges do not wait.
pub const SETTLE: Duration = Duration::from_millis(200);

/// `ETH_P_ALL` in network byte order, as `socket(AF_PACKET, ..., protocol)` wants it.
const ETH_P_ALL_BE: i32 = (libc::ETH_P_ALL as u16).to_be() as i32;

/// `PACKET_OUTGOING` (`sll_pkttype`): a packet this host sent.
const PACKET_OUTGOING: u8 = 4;
/// `PACKET_OTHERHOST`: a frame for another host, seen in promiscuous mode.
const PACKET_OTHERHOST: u8 = 3;

/// How often the capture thread checks whether it should stop.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The longest a probe waits for the capture thread to catch up before taking what it
/// has (a thread that far behind is dropping packets anyway).
pub const CATCH_UP_LIMIT: Duration = Duration::from_millis(500);

/// Largest packet read (GRO on virtual interfaces hands up to 64 KiB at once).
const RECEIVE_BUFFER: usize = 65_536;

/// Kernel receive buffer of the socket: bursts of a busy scan must not overflow it.
const SOCKET_BUFFER: usize = 8 << 20;

/// The BPF program (for a `SOCK_DGRAM` packet socket offsets start at the IP header):
/// accept IPv4 protocol 6 (TCP), 1 (ICMP) or 17 (UDP) from source port 53, IPv6 next
/// header 6, 58 (`ICMPv6`) or 17 from port 53 (no extension headers), drop everything
/// else in the kernel. Jump offsets count from the next instruction.
fn capture_filter() -> [SockFilter; 19] {
    const LDB_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const LDH_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LDH_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
    const LDX_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (IPv4 IHL)
    const RSH_K: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    [
        SockFilter::new(LDB_ABS, 0, 0, 0),         // 0: A = first byte
        SockFilter::new(RSH_K, 0, 0, 4),           // 1: A = IP version
        SockFilter::new(JEQ_K, 0, 7, 4),           // 2: IPv4 -> 3, else -> 10
        SockFilter::new(LDB_ABS, 0, 0, 9),         // 3: A = IPv4 protocol
        SockFilter::new(JEQ_K, 12, 0, 6),          // 4: TCP -> accept
        SockFilter::new(JEQ_K, 11, 0, 1),          // 5: ICMP -> accept
        SockFilter::new(JEQ_K, 0, 11, 17),         // 6: UDP -> 7, else drop
        SockFilter::new(LDX_MSH, 0, 0, 0),         // 7: X = IPv4 header length
        SockFilter::new(LDH_IND, 0, 0, 0),         // 8: A = UDP source port
        SockFilter::new(JEQ_K, 7, 8, 53),          // 9: DNS -> accept, else drop
        SockFilter::new(JEQ_K, 0, 7, 6),           // 10: IPv6 -> 11, else drop
        SockFilter::new(LDB_ABS, 0, 0, 6),         // 11: A = IPv6 next header
        SockFilter::new(JEQ_K, 4, 0, 6),           // 12: TCP -> accept
        SockFilter::new(JEQ_K, 3, 0, 58),          // 13: ICMPv6 -> accept
        SockFilter::new(JEQ_K, 0, 3, 17),          // 14: UDP -> 15, else drop
        SockFilter::new(LDH_ABS, 0, 0, 40),        // 15: A = UDP source port
        SockFilter::new(JEQ_K, 0, 1, 53),          // 16: DNS -> accept, else drop
        SockFilter::new(RET_K, 0, 0, 0x0004_0000), // 17: accept whole packet
        SockFilter::new(RET_K, 0, 0, 0),           // 18: drop
    ]
}

/// What the capture thread and the probes share.
#[derive(Debug)]
struct Shared {
    table: Mutex<FlowTable>,
    dns: Mutex<dns::DnsReplyLog>,
    stop: AtomicBool,
    /// The clock of `at_us`.
    epoch: Instant,
    /// Packets read from the socket (after the kernel filter), for the figures.
    packets_read: AtomicU64,
    /// Microseconds after `epoch` at which the thread last found the socket's queue
    /// empty, having routed everything before: every packet queued earlier is routed.
    drained_us: AtomicU64,
    /// The wall clock at the start, in µs since the Unix epoch: packets are timed from it
    /// (the kernel stamps packets by the wall clock).
    wall_epoch_us: u64,
    /// Woken each time `drained_us` moves.
    drained: tokio::sync::Notify,
    /// Our end of the thread's wake-up pair: a byte here makes the thread look at its
    /// queue now rather than at its next poll interval.
    wake: UnixDatagram,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, FlowTable> {
        // A panic while routing leaves the table consistent enough to go on.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Stops the thread when the last [`Capture`] handle goes.
#[derive(Debug)]
struct Running {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running capture; cheap to clone, shared by every probe of a scan.
#[derive(Debug, Clone)]
pub struct Capture {
    running: Arc<Running>,
}

impl Capture {
    /// Open the packet socket and start the capture thread.
    pub fn start() -> Result<Capture, CaptureError> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::DGRAM,
            Some(Protocol::from(ETH_P_ALL_BE)),
        )
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => CaptureError::NotPermitted(err),
            _ => CaptureError::Socket(err),
        })?;
        socket
            .attach_filter(&capture_filter())
            .map_err(CaptureError::Socket)?;
        // Stamped by the kernel from the first packet on (set before any flow can be
        // registered, so no packet of a flow is queued without its time).
        if let Err(err) = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        ) {
            tracing::info!(
                "packet capture: no kernel timestamps ({err}); packets are timed as read"
            );
        }
        // Non-blocking: an empty queue is how the thread knows it has caught up.
        socket.set_nonblocking(true).map_err(CaptureError::Socket)?;
        let (wake, woken) = UnixDatagram::pair().map_err(CaptureError::Socket)?;
        wake.set_nonblocking(true).map_err(CaptureError::Socket)?;
        woken.set_nonblocking(true).map_err(CaptureError::Socket)?;
        // A smaller buffer than asked for only means drops under extreme load.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let loopback = nix::net::if_::if_nametoindex("lo").ok().map(|i| i as usize);
        let shared = Arc::new(Shared {
            table: Mutex::new(FlowTable::default()),
            dns: Mutex::new(dns::DnsReplyLog::default()),
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
            packets_read: AtomicU64::new(0),
            drained_us: AtomicU64::new(0),
            wall_epoch_us: wall_clock_us(),
            drained: tokio::sync::Notify::new(),
            wake,
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("capture".to_owned())
            .spawn(move || read_packets(&socket, &woken, &thread_shared, loopback))
            .map_err(CaptureError::Thread)?;
        Ok(Capture {
            running: Arc::new(Running {
                shared,
                thread: Some(thread),
            }),
        })
    }

    /// Start capturing the flow from our bound `local` address to `server` (before the
    /// SYN is sent). `Err` carries the reason the flow is not captured.
    pub fn register(&self, local: SocketAddr, server: SocketAddr) -> Result<FlowTicket, String> {
        let shared = &self.running.shared;
        shared
            .table()
            .register(local.port(), server)
            .map_err(|err| err.to_string())?;
        Ok(FlowTicket {
            capture: self.clone(),
            local,
            server,
            taken: false,
        })
    }

    /// Add the IP ID and DF bit the capture saw to each reply of these DNS queries (those
    /// it saw: a reply that arrived before the capture started, or was dropped by a full
    /// log, keeps only what the socket gave).
    pub fn annotate_dns(&self, queries: &mut [DnsQueryObservation]) {
        let mut log = self
            .running
            .shared
            .dns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.is_empty() {
            return;
        }
        for query in queries {
            for reply in &mut query.replies {
                if let Some(ip) = log.take(
                    query.source_port,
                    reply.from,
                    reply.id,
                    reply.size,
                    reply.ip_ttl,
                ) {
                    reply.ip_id = ip.ip_id;
                    reply.df = ip.df;
                }
            }
        }
    }

    /// Wait until the capture thread has routed every packet the kernel queued before
    /// this call, at most `limit`; false when it did not catch up in time.
    pub async fn caught_up(&self, limit: Duration) -> bool {
        let shared = &self.running.shared;
        let wanted = shared.epoch.elapsed().as_micros() as u64;
        let deadline = tokio::time::Instant::now() + limit;
        let mut woken = false;
        loop {
            let notified = shared.drained.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain between the check and the wait
            // still wakes us.
            notified.as_mut().enable();
            if shared.drained_us.load(Ordering::Acquire) >= wanted {
                return true;
            }
            if !woken {
                // A full pair means a wake-up is already pending: nothing lost.
                let _ = shared.wake.send(&[1]);
                woken = true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Packets read from the socket so far (after the kernel filter).
    pub fn packets_read(&self) -> u64 {
        self.running.shared.packets_read.load(Ordering::Relaxed)
    }

    /// Flows registered now.
    pub fn flows(&self) -> usize {
        self.running.shared.table().len()
    }
}

/// One registered flow; [`FlowTicket::finish`] takes its packets, dropping the ticket
/// unregisters the flow.
#[derive(Debug)]
pub struct FlowTicket {
    capture: Capture,
    local: SocketAddr,
    server: SocketAddr,
    taken: bool,
}

impl FlowTicket {
    /// The flow's packets, after waiting [`SETTLE`] from `exchange_end` when the
    /// exchange did not end cleanly (late injected or genuine packets), and for the
    /// capture thread to catch up.
    pub async fn finish(mut self, clean: bool, exchange_end: Instant) -> ConnectionPackets {
        if !clean {
            tokio::time::sleep_until(tokio::time::Instant::from_std(exchange_end + SETTLE)).await;
        }
        self.capture.caught_up(CATCH_UP_LIMIT).await;
        self.take()
    }

    fn take(&mut self) -> ConnectionPackets {
        self.taken = true;
        let taken = self
            .capture
            .running
            .shared
            .table()
            .take(self.local, self.server);
        taken.unwrap_or_else(|| {
            crate::packet::ConnectionBuilder::new(crate::observation::packets::FlowKey {
                client: self.local,
                server: self.server,
            })
            .finish()
        })
    }
}

impl Drop for FlowTicket {
    fn drop(&mut self) {
        if !self.taken {
            let _ = self
                .capture
                .running
                .shared
                .table()
                .take(self.local, self.server);
        }
    }
}

/// The capture thread: read, drop what is not ours, route the rest, until told to stop.
/// When the queue is empty it says so ([`Shared::drained_us`]) and sleeps until a packet
/// comes, a probe asks it to catch up (`woken`), or the poll interval ends.
fn read_packets(socket: &Socket, woken: &UnixDatagram, shared: &Shared, loopback: Option<usize>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let fd = socket.as_raw_fd();
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let interval = PollTimeout::try_from(POLL_INTERVAL).unwrap_or(PollTimeout::MAX);
    let mut control = nix::cmsg_space!(nix::sys::time::TimeSpec);
    // Kernel timestamps are wall-clock time; packets are timed from the capture's start.
    let wall_epoch_us = shared.wall_epoch_us;
    while !shared.stop.load(Ordering::Relaxed) {
        // Taken before the read: when the read finds nothing, everything queued before
        // this moment has been routed.
        let before_read = shared.epoch.elapsed().as_micros() as u64;
        let (len, from, stamped_us) = match receive(fd, &mut buffer, &mut control) {
            Ok(received) => received,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                shared.drained_us.store(before_read, Ordering::Release);
                shared.drained.notify_waiters();
                let mut fds = [
                    PollFd::new(socket.as_fd(), PollFlags::POLLIN),
                    PollFd::new(woken.as_fd(), PollFlags::POLLIN),
                ];
                match nix::poll::poll(&mut fds, interval) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(err) => {
                        tracing::warn!("packet capture stopped: {err}");
                        return;
                    }
                }
                // Empty the wake-up pair: one look at the queue answers them all.
                let mut byte = [0u8; 16];
                while woken.recv(&mut byte).is_ok() {}
                continue;
            }
            Err(err) => {
                tracing::warn!("packet capture stopped: {err}");
                return;
            }
        };
        // The kernel's time of the packet, not the moment this thread got to it: a
        // burst read after a pause must keep its spacing (injectors are told apart by it).
        // A packet queued without a stamp (or with one from another clock) is timed as
        // read, on the same clock.
        let read_us = wall_clock_us();
        let at_us = stamped_us
            .filter(|&us| us >= wall_epoch_us && us <= read_us)
            .unwrap_or(read_us)
            .saturating_sub(wall_epoch_us);
        if let Some(from) = from {
            let pkttype = from.pkttype();
            // On loopback every packet shows twice, as sent and as received: keep one.
            if pkttype == PACKET_OTHERHOST
                || (pkttype == PACKET_OUTGOING && Some(from.ifindex()) == loopback)
            {
                continue;
            }
        }
        shared.packets_read.fetch_add(1, Ordering::Relaxed);
        if log_dns_reply(&buffer[..len], shared) {
            continue;
        }
        let mut table = shared.table();
        if table.is_empty() {
            continue;
        }
        table.route_bytes(&buffer[..len], at_us);
    }
}

/// Microseconds since the Unix epoch, by the wall clock (the kernel's timestamps' clock).
fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One packet from the socket: its length, where it was seen, and the kernel's time of
/// it in wall-clock microseconds (when the socket gives timestamps).
fn receive(
    fd: std::os::fd::RawFd,
    buffer: &mut [u8],
    control: &mut [u8],
) -> Result<(usize, Option<nix::sys::socket::LinkAddr>, Option<u64>), nix::errno::Errno> {
    use nix::sys::socket::{ControlMessageOwned, LinkAddr, MsgFlags, recvmsg};
    let mut iov = [std::io::IoSliceMut::new(buffer)];
    let message = recvmsg::<LinkAddr>(fd, &mut iov, Some(control), MsgFlags::empty())?;
    let stamped_us = message.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|cmsg| match cmsg {
            ControlMessageOwned::ScmTimestampns(ts) => Some(
                u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000
                    + u64::try_from(ts.tv_nsec()).unwrap_or(0) / 1_000,
            ),
            _ => None,
        })
    });
    Ok((message.bytes, message.address, stamped_us))
}

/// Log a DNS reply (UDP from port 53) with its IP facts; false for anything else.
fn log_dns_reply(bytes: &[u8], shared: &Shared) -> bool {
    // Only UDP is parsed here: TCP goes to the flow table, which refuses most of it from
    // its header fields without a full parse.
    let udp = match bytes.first().map(|b| b >> 4) {
        Some(4) => bytes.get(9) == Some(&17),
        Some(6) => bytes.get(6) == Some(&17),
        _ => false,
    };
    if !udp {
        return false;
    }
    let Ok(packet) = crate::packet::parse_ip(bytes) else {
        return false;
    };
    let Transport::Udp {
        source_port: 53,
        destination_port,
        payload,
    } = packet.transport
    else {
        return false;
    };
    if payload.len() >= 2 {
        let id = u16::from_be_bytes([payload[0], payload[1]]);
        shared
            .dns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                destination_port,
                SocketAddr::new(packet.source, 53),
                id,
                payload.len(),
                packet.ip,
            );
    }
    true
}

/// What a prober knows of the capture: whether it runs, or why not.
#[derive(Debug, Clone, Default)]
pub enum ProbeCapture {
    /// `--capture off`: observations carry no `capture` field.
    #[default]
    Off,
    Live(Capture),
    /// Every observation says `unavailable` with this reason.
    Unavailable(Arc<str>),
}

impl ProbeCapture {
    /// The capture of `--capture mode`: `Require` fails when it cannot start, `Auto`
    /// turns the failure into the reason every observation carries.
    pub fn start(mode: CaptureMode) -> Result<ProbeCapture, CaptureError> {
        match mode {
            CaptureMode::Off => Ok(ProbeCapture::Off),
            CaptureMode::Require => Capture::start().map(ProbeCapture::Live),
            CaptureMode::Auto => Ok(match Capture::start() {
                Ok(capture) => ProbeCapture::Live(capture),
                Err(err) => {
                    tracing::info!("packet capture unavailable: {err}");
                    ProbeCapture::Unavailable(err.to_string().into())
                }
            }),
        }
    }

    pub fn live(&self) -> Option<&Capture> {
        match self {
            ProbeCapture::Live(capture) => Some(capture),
            _ => None,
        }
    }

    /// What an observation says when its flow was not captured: absent with capture
    /// off, otherwise why not.
    pub fn not_captured(&self, why: Option<&str>) -> Option<CaptureObservation> {
        match (self, why) {
            (ProbeCapture::Off, _) => None,
            (ProbeCapture::Unavailable(reason), _) => Some(CaptureObservation::Unavailable {
                reason: reason.to_string(),
            }),
            (ProbeCapture::Live(_), why) => Some(CaptureObservation::Unavailable {
                reason: why
                    .unwrap_or("the connection's socket was never bound")
                    .to_owned(),
            }),
        }
    }
}

/// Removes the captured packets from a record's web observations: for records written
/// lean (entirely `ok` under `--observations default`), where the packets of clean
/// connections would only weigh.
pub fn drop_packets(record: &mut crate::record::TargetRecord) {
    fn strip<O>(
        attempts: &mut [crate::record::assessment::IpResult<impl Sized, O>],
        f: fn(&mut O),
    ) {
        for attempt in attempts {
            f(&mut attempt.observations.control);
            f(&mut attempt.observations.test);
            if let Some(residual) = &mut attempt.observations.residual {
                f(residual);
            }
        }
    }
    if let Some(http) = &mut record.http {
        strip(&mut http.attempts, |o| o.capture = None);
    }
    if let Some(tls) = &mut record.tls {
        strip(&mut tls.attempts, |o| o.capture = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::packets::PacketDirection;

    /// A real capture on loopback (needs root or `CAP_NET_RAW`: fails loudly without):
    /// the handshake of a registered flow is captured once each way (loopback shows every
    /// packet twice), an unregistered connection leaves nothing in the table.
    #[tokio::test]
    async fn a_loopback_connection_is_captured_once_each_way() {
        let capture = Capture::start().expect("this test needs root or CAP_NET_RAW");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 16];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            }
        });
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let local = socket.local_addr().unwrap();
        let ticket = capture.register(local, server).unwrap();
        // Another connection to the same server, not registered.
        drop(tokio::net::TcpStream::connect(server).await.unwrap());
        let mut stream = socket.connect(server).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"hello")
            .await
            .unwrap();
        drop(stream);
        accept.await.unwrap();
        let packets = ticket.finish(false, Instant::now()).await;
        assert_eq!(
            packets.flow.client.ip(),
            server.ip(),
            "learned from the SYN"
        );
        assert_eq!(packets.flow.client.port(), local.port());
        let seen: Vec<(PacketDirection, String)> = packets
            .packets
            .iter()
            .filter_map(|p| p.tcp().map(|t| (p.direction, t.flags.to_string())))
            .collect();
        let count = |direction, flags: &str| {
            seen.iter()
                .filter(|(d, f)| *d == direction && f == flags)
                .count()
        };
        assert_eq!(count(PacketDirection::ToServer, "SYN"), 1, "{seen:?}");
        assert_eq!(count(PacketDirection::ToClient, "SYN+ACK"), 1, "{seen:?}");
        let trigger = packets.trigger.expect("the payload was seen going out");
        assert_eq!(
            packets.packets[trigger].tcp().unwrap().payload_hex,
            "68656c6c6f"
        );
        assert_eq!(capture.flows(), 0, "taken flows leave the table");
        assert!(capture.packets_read() >= seen.len() as u64);
    }

    /// A clean exchange is taken the moment it ends; a capture thread that is behind
    /// must still have routed every packet of it by then. The thread is stalled on the
    /// DNS log (held here while a datagram from port 53 reaches it), so the flow table
    /// stays free and only the wait for the thread keeps the flow whole. Needs root or
    /// `CAP_NET_RAW`: fails loudly without.
    #[tokio::test]
    async fn a_flow_taken_at_once_waits_for_a_capture_thread_that_is_behind() {
        let capture = Capture::start().expect("this test needs root or CAP_NET_RAW");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 16];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
            tokio::io::AsyncWriteExt::write_all(&mut stream, b"world")
                .await
                .unwrap();
        });
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let local = socket.local_addr().unwrap();
        let ticket = capture.register(local, server).unwrap();

        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let held = capture.clone();
        let staller = std::thread::spawn(move || {
            let _log = held.running.shared.dns.lock().unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(400));
        });
        locked_rx.recv().unwrap();
        // A loopback address of our own, so that no resolver on this host is in the way.
        let dns_source = std::net::UdpSocket::bind((
            std::net::Ipv4Addr::new(127, 53, (std::process::id() % 250) as u8 + 1, 53),
            53,
        ))
        .expect("a port-53 socket on loopback (root)");
        dns_source
            .send_to(&[0u8; 12], dns_source.local_addr().unwrap())
            .unwrap();

        let mut stream = socket.connect(server).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"hello")
            .await
            .unwrap();
        let mut reply = [0u8; 5];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut reply)
            .await
            .unwrap();
        accept.await.unwrap();
        assert!(
            !capture.caught_up(Duration::from_millis(20)).await,
            "the stalled thread is behind, and says so"
        );
        assert!(!staller.is_finished(), "the exchange ended while stalled");

        let packets = ticket.finish(true, Instant::now()).await;
        staller.join().unwrap();
        let seen: Vec<(PacketDirection, String, u32)> = packets
            .packets
            .iter()
            .filter_map(|p| {
                p.tcp()
                    .map(|t| (p.direction, t.flags.to_string(), t.payload_len))
            })
            .collect();
        let has = |direction, flags: &str, payload| {
            seen.iter()
                .any(|(d, f, l)| *d == direction && f == flags && *l == payload)
        };
        assert!(has(PacketDirection::ToServer, "SYN", 0), "{seen:?}");
        assert!(has(PacketDirection::ToClient, "SYN+ACK", 0), "{seen:?}");
        assert!(packets.trigger.is_some(), "our payload: {seen:?}");
        assert!(
            seen.iter()
                .any(|(d, _, l)| *d == PacketDirection::ToClient && *l == 5),
            "the server's reply, read before the flow was taken: {seen:?}"
        );
        // Read in one go after the stall, the packets keep the kernel's times: the reply
        // came 60 ms after the request.
        let at = |direction, payload| {
            packets
                .packets
                .iter()
                .find(|p| {
                    p.direction == direction && p.tcp().is_some_and(|t| t.payload_len == payload)
                })
                .map(|p| p.at_us)
                .unwrap()
        };
        let (request, reply) = (
            at(PacketDirection::ToServer, 5),
            at(PacketDirection::ToClient, 5),
        );
        assert!(
            reply >= request + 50_000,
            "request at {request} µs, reply at {reply} µs"
        );
    }
}
