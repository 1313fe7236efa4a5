//! The censor: a process in the censor namespace that reads what the kernel steers to it
//! (the vantage point's DNS queries and the TCP segments of its connections, both ways;
//! see [`crate::lab::nft`]) from the inspection link with a pnet datalink channel, and
//! writes forged, forwarded or no frames to the two real links.
//!
//! Why in-path for these packets, rather than a pure on-path tap racing the kernel: this
//! kernel has no netem to put distance between censor and servers, and on a veth lab the
//! genuine answer would often beat a user-space injector. Emitting the forgery before
//! forwarding the packet that triggered it reproduces what the GFW's position gives it
//! (forged first, genuine later) deterministically, and makes true in-path drops
//! possible. DNS replies and everything else stay in the kernel.

pub mod engine;
pub mod packet;
pub mod rules;

use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pnet::datalink::{self, Channel, DataLinkSender, NetworkInterface};

use super::error::{LabError, LabResult};
use super::plan;
use super::scenario::Scenario;
use engine::{Engine, Event};
use packet::Link;

fn interface(name: &str) -> LabResult<NetworkInterface> {
    datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| LabError::Censor(format!("no interface {name} in this namespace")))
}

/// A packet socket for `pnet`, with the receive buffer we want. Sending channels get a
/// tiny one: they never read, and the kernel then drops their copies early.
fn packet_socket(receive_buffer: usize) -> LabResult<i32> {
    let eth_p_all = i32::from(0x0003u16.to_be());
    let socket = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(eth_p_all)),
    )
    .map_err(|e| LabError::Censor(format!("packet socket: {e}")))?;
    let forced = nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::RcvBufForce,
        &receive_buffer,
    );
    if forced.is_err() {
        socket
            .set_recv_buffer_size(receive_buffer)
            .map_err(|e| LabError::Censor(format!("SO_RCVBUF: {e}")))?;
    }
    Ok(socket.into_raw_fd())
}

fn sender(name: &str) -> LabResult<Box<dyn DataLinkSender>> {
    let config = datalink::Config {
        socket_fd: Some(packet_socket(4096)?),
        promiscuous: false,
        ..datalink::Config::default()
    };
    match datalink::channel(&interface(name)?, config) {
        Ok(Channel::Ethernet(tx, _rx)) => Ok(tx),
        Ok(_) => Err(LabError::Censor(format!("{name}: not an Ethernet channel"))),
        Err(e) => Err(LabError::Censor(format!("{name}: {e}"))),
    }
}

/// Counters of what the censor did, for `lab status` and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CensorStats {
    pub frames: u64,
    pub dns_forged: u64,
    pub dns_dropped: u64,
    pub keyword_matches: u64,
    pub residual_hits: u64,
    pub send_errors: u64,
}

/// Run the censor in the current thread (which must be in the censor namespace) until
/// `stop` is set. `ready` is called once the sockets are open.
pub fn run(
    scenario: &Scenario,
    stop: &Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> LabResult<CensorStats> {
    let inspect = interface(plan::INSPECT_PEER_IF)?;
    let config = datalink::Config {
        socket_fd: Some(packet_socket(8 << 20)?),
        read_buffer_size: 65536,
        read_timeout: Some(Duration::from_millis(100)),
        promiscuous: false,
        ..datalink::Config::default()
    };
    let (_, mut rx) = match datalink::channel(&inspect, config) {
        Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => return Err(LabError::Censor("inspection link: not Ethernet".to_owned())),
        Err(e) => return Err(LabError::Censor(format!("inspection link: {e}"))),
    };
    let mut to_client = sender(plan::CENSOR_VANTAGE_IF)?;
    let mut to_server = sender(plan::CENSOR_INTERNET_IF)?;
    let mut engine = Engine::new(scenario);
    let mut stats = CensorStats::default();
    ready();
    while !stop.load(Ordering::Relaxed) {
        let frame = match rx.next() {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => {
                return Err(LabError::Censor(format!(
                    "reading the inspection link: {e}"
                )));
            }
        };
        stats.frames += 1;
        for emit in engine.handle(frame, Instant::now()) {
            let tx = match emit.link {
                Link::Client => &mut to_client,
                Link::Server => &mut to_server,
            };
            if let Some(Err(e)) = tx.send_to(&emit.frame, None) {
                stats.send_errors += 1;
                tracing::warn!("censor: cannot write a frame to {:?}: {e}", emit.link);
            }
        }
        for event in engine.take_events() {
            match &event {
                Event::DnsForged { .. } => stats.dns_forged += 1,
                Event::DnsDropped { .. } => stats.dns_dropped += 1,
                Event::Keyword { .. } => stats.keyword_matches += 1,
                Event::ResidualHit { .. } => stats.residual_hits += 1,
            }
            tracing::info!("censor: {event:?}");
        }
    }
    Ok(stats)
}
