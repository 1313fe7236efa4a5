//! Live TTL-limited probing (Censored Planet's `CenTrace` method): for TTL 1, 2, … a fresh
//! connection (new source port) completes its handshake at full TTL, then the trigger (an
//! HTTP GET with the name as Host, or a TLS `ClientHello` with the name as SNI) is sent
//! with the IP TTL (IPv6 hop limit) set to that TTL. A raw ICMP socket sees the routers'
//! time-exceeded errors quoting the trigger; the connection shows a reset, a close, data
//! from the server or nothing. The judgement is [`crate::classify::location`]'s.
//!
//! Blocking sockets on purpose: a trace is sequential by design (one connection at a time,
//! a pause between them), and the caller runs it on a thread of its own.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{SockaddrStorage, recvfrom, setsockopt, sockopt};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use socket2::{Domain, Protocol, Socket, Type};

use crate::observation::packets::IcmpKind;
use crate::packet::{Transport, parse_ip};
use crate::probe::web::http::{DEFAULT_USER_AGENT, build_request};
use crate::probe::web::tls::{DEFAULT_ALPN, TlsProber, server_name};
use crate::record::location::{
    ControlTrace, TraceObservation, TraceProtocol, TriggerOutcome, TtlObservation, server_hop,
};

/// How long ICMP errors may trail a connection's outcome (they travel as far as a reset).
const ICMP_SETTLE: Duration = Duration::from_millis(200);
/// The IP protocol number of TCP, as quoted in ICMP errors.
const IPPROTO_TCP: u8 = 6;

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(
        "locating a censor needs a raw ICMP socket to see the routers' time-exceeded errors \
         (run as root or with CAP_NET_RAW): {0}"
    )]
    NoRawSocket(io::Error),
    #[error("{name:?} cannot be the trigger's name: {reason}")]
    BadName { name: String, reason: String },
    #[error("cannot build the TLS ClientHello: {0}")]
    ClientHello(String),
}

/// The bounds of a trace.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The largest TTL tried (`CenTrace` and traceroute stop at 30-ish; default 32).
    pub max_ttl: u8,
    /// How long to wait for an answer after each trigger.
    pub window: Duration,
    /// The pause between two connections.
    pub pause: Duration,
    pub connect_timeout: Duration,
    /// The benign name traced first (same server) for the server's hop distance; `None`
    /// skips it (the server's distance then comes from the test trace alone).
    pub control_name: Option<String>,
    pub user_agent: String,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            max_ttl: 32,
            window: Duration::from_secs(2),
            pause: Duration::from_millis(300),
            connect_timeout: Duration::from_secs(5),
            control_name: Some(crate::observation::web::DEFAULT_CONTROL_NAME.to_owned()),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
        }
    }
}

/// Runs traces toward one address family; holds the raw ICMP socket.
#[derive(Debug)]
pub struct Tracer {
    icmp: Socket,
    ipv6: bool,
    config: TraceConfig,
}

impl Tracer {
    /// Opens the raw ICMP socket for `family_of`'s family: fails without root or
    /// `CAP_NET_RAW`.
    pub fn new(family_of: IpAddr, config: TraceConfig) -> Result<Tracer, LocateError> {
        let ipv6 = family_of.is_ipv6();
        let (domain, protocol) = if ipv6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let icmp =
            Socket::new(domain, Type::RAW, Some(protocol)).map_err(LocateError::NoRawSocket)?;
        Ok(Tracer { icmp, ipv6, config })
    }

    pub fn config(&self) -> &TraceConfig {
        &self.config
    }

    /// The control trace (benign name), then the test trace (judged by
    /// [`crate::classify::location::judge_trace`]). The control runs first so that the test name cannot have set off residual
    /// censorship against it.
    pub fn trace(
        &self,
        server: SocketAddr,
        protocol: TraceProtocol,
        name: &str,
    ) -> Result<TraceObservation, LocateError> {
        let test_trigger = self.trigger(protocol, name)?;
        let control = match &self.config.control_name {
            Some(control_name) => {
                let trigger = self.trigger(protocol, control_name)?;
                Some(ControlTrace {
                    name: control_name.clone(),
                    hops: self.trace_trigger(server, &trigger, None),
                })
            }
            None => None,
        };
        let known_server_hop = control.as_ref().and_then(|c| server_hop(&c.hops));
        if control.is_some() {
            std::thread::sleep(self.config.pause);
        }
        let hops = self.trace_trigger(server, &test_trigger, known_server_hop);
        Ok(TraceObservation {
            server: server.ip(),
            port: server.port(),
            protocol,
            name: name.to_owned(),
            control,
            hops,
        })
    }

    /// The trigger's bytes: the probe's own request or `ClientHello`.
    fn trigger(&self, protocol: TraceProtocol, name: &str) -> Result<Vec<u8>, LocateError> {
        match protocol {
            TraceProtocol::Http => {
                if !crate::probe::web::http::valid_host_header(name) {
                    return Err(LocateError::BadName {
                        name: name.to_owned(),
                        reason: "not a valid Host header".to_owned(),
                    });
                }
                Ok(build_request(name, &self.config.user_agent))
            }
            TraceProtocol::Tls => client_hello(name),
        }
    }

    fn trace_trigger(
        &self,
        server: SocketAddr,
        trigger: &[u8],
        known_server_hop: Option<u8>,
    ) -> Vec<TtlObservation> {
        let mut hops: Vec<TtlObservation> = Vec::new();
        while trace_should_continue(&hops, self.config.max_ttl, known_server_hop) {
            if !hops.is_empty() {
                std::thread::sleep(self.config.pause);
            }
            let ttl = hops.last().map_or(1, |hop| hop.ttl + 1);
            hops.push(self.probe_ttl(server, trigger, ttl));
        }
        hops
    }

    /// One connection: handshake at full TTL, the trigger at `ttl`, what came back.
    fn probe_ttl(&self, server: SocketAddr, trigger: &[u8], ttl: u8) -> TtlObservation {
        let handshake_failed = |error: &io::Error| TtlObservation {
            ttl,
            router: None,
            outcome: TriggerOutcome::HandshakeFailed {
                reason: io_reason(error),
            },
            after_ms: None,
        };
        let mut stream = match TcpStream::connect_timeout(&server, self.config.connect_timeout) {
            Ok(stream) => stream,
            Err(error) => return handshake_failed(&error),
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(error) => return handshake_failed(&error),
        };
        let hops = i32::from(ttl);
        let limited = if self.ipv6 {
            setsockopt(&stream, sockopt::Ipv6Ttl, &hops)
        } else {
            setsockopt(&stream, sockopt::Ipv4Ttl, &hops)
        };
        if let Err(errno) = limited {
            return TtlObservation {
                ttl,
                router: None,
                outcome: TriggerOutcome::Failed {
                    reason: format!("cannot set the TTL: {errno}"),
                },
                after_ms: None,
            };
        }
        let sent = Instant::now();
        let outcome = match stream.write_all(trigger) {
            Err(error) => outcome_of_error(&error),
            Ok(()) => self.read_outcome(&mut stream),
        };
        let after_ms = (!matches!(outcome, TriggerOutcome::Silence))
            .then(|| u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX));
        let router = self.time_exceeded_from(local, server, Instant::now() + ICMP_SETTLE);
        TtlObservation {
            ttl,
            router,
            outcome,
            after_ms,
        }
    }

    fn read_outcome(&self, stream: &mut TcpStream) -> TriggerOutcome {
        if let Err(error) = stream.set_read_timeout(Some(self.config.window)) {
            return TriggerOutcome::Failed {
                reason: io_reason(&error),
            };
        }
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => TriggerOutcome::Closed,
            Ok(bytes) => TriggerOutcome::ServerData { bytes },
            Err(error) => outcome_of_error(&error),
        }
    }

    /// The router whose ICMP time-exceeded quotes a segment of the flow `local` →
    /// `server`, waiting until `deadline` at most.
    fn time_exceeded_from(
        &self,
        local: SocketAddr,
        server: SocketAddr,
        deadline: Instant,
    ) -> Option<IpAddr> {
        let mut buffer = [0u8; 2048];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.icmp
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let Ok((length, from)) =
                recvfrom::<SockaddrStorage>(self.icmp.as_raw_fd(), &mut buffer)
            else {
                return None;
            };
            let datagram = &buffer[..length];
            let router = if self.ipv6 {
                let Some(from) = from.as_ref().and_then(|f| f.as_sockaddr_in6()) else {
                    continue;
                };
                let packet = with_ipv6_header(from.ip(), datagram);
                quoting_router(&packet, local, server)
            } else {
                quoting_router(datagram, local, server)
            };
            if router.is_some() {
                return router;
            }
        }
    }
}

/// Whether a trace should send the trigger with the next TTL (`hops` in TTL order).
/// It stops at `max_ttl`; once a handshake failed (every later one would too, residual
/// censorship or not); one TTL after the server first answered (`known_server_hop`
/// from a control trace counts too); once interference was seen at two consecutive TTLs.
pub fn trace_should_continue(
    hops: &[TtlObservation],
    max_ttl: u8,
    known_server_hop: Option<u8>,
) -> bool {
    let Some(last) = hops.last() else {
        return max_ttl >= 1;
    };
    if last.ttl >= max_ttl {
        return false;
    }
    if hops
        .iter()
        .any(|hop| matches!(hop.outcome, TriggerOutcome::HandshakeFailed { .. }))
    {
        return false;
    }
    let answered_at = match (server_hop(hops), known_server_hop) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if answered_at.is_some_and(|at| last.ttl > at) {
        return false;
    }
    let consecutive_interference = hops.windows(2).any(|pair| {
        pair[0].outcome.is_interference()
            && pair[1].outcome.is_interference()
            && pair[1].ttl == pair[0].ttl + 1
    });
    !consecutive_interference
}

/// The sender of a time-exceeded error in `packet` (an IP packet) quoting our flow.
fn quoting_router(packet: &[u8], local: SocketAddr, server: SocketAddr) -> Option<IpAddr> {
    let parsed = parse_ip(packet).ok()?;
    let Transport::Icmp {
        kind: IcmpKind::TimeExceeded,
        quoted: Some(quoted),
    } = parsed.transport
    else {
        return None;
    };
    (quoted.protocol == IPPROTO_TCP && quoted.source == local && quoted.destination == server)
        .then_some(parsed.source)
}

/// A raw `ICMPv6` socket gives the `ICMPv6` message without its IPv6 header: put one back
/// (source = the router) so that the shared parser reads it like a captured packet.
fn with_ipv6_header(source: Ipv6Addr, icmpv6: &[u8]) -> Vec<u8> {
    const NEXT_HEADER_ICMPV6: u8 = 58;
    let mut packet = Vec::with_capacity(40 + icmpv6.len());
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    packet.extend_from_slice(
        &u16::try_from(icmpv6.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    packet.extend_from_slice(&[NEXT_HEADER_ICMPV6, 64]);
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    packet.extend_from_slice(icmpv6);
    packet
}

fn outcome_of_error(error: &io::Error) -> TriggerOutcome {
    match error.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => TriggerOutcome::Reset,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TriggerOutcome::Silence,
        _ => TriggerOutcome::Failed {
            reason: io_reason(error),
        },
    }
}

fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (RST to the SYN)".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_owned(),
        _ => error.to_string(),
    }
}

/// The `ClientHello` the TLS probe sends for `name` (same provider, versions and ALPN);
/// no handshake is ever completed, so no certificate is checked.
pub fn client_hello(name: &str) -> Result<Vec<u8>, LocateError> {
    let server_name = server_name(name).map_err(|error| LocateError::BadName {
        name: name.to_owned(),
        reason: error.to_string(),
    })?;
    let mut config = ClientConfig::builder_with_provider(TlsProber::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LocateError::ClientHello(e.to_string()))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = DEFAULT_ALPN.iter().map(|p| p.as_bytes().to_vec()).collect();
    let mut connection = ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| LocateError::ClientHello(e.to_string()))?;
    let mut hello = Vec::new();
    connection
        .write_tls(&mut hello)
        .map_err(|e| LocateError::ClientHello(e.to_string()))?;
    Ok(hello)
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::record::location::fixtures::{data, hop, refused, router};

    #[test]
    fn the_client_hello_carries_the_sni() {
        let hello = client_hello("blocked.example").unwrap();
        assert_eq!(hello[0], 0x16, "a handshake record");
        assert!(
            hello
                .windows("blocked.example".len())
                .any(|w| w == b"blocked.example")
        );
    }

    #[test]
    fn a_time_exceeded_quoting_our_flow_names_the_router() {
        // IPv4 ICMP time-exceeded from 198.18.0.1 quoting 198.18.0.2:40000 -> 198.19.1.1:80.
        let mut quoted = vec![
            0x45, 0, 0, 40, 0, 1, 0x40, 0, 1, 6, 0, 0, 198, 18, 0, 2, 198, 19, 1, 1,
        ];
        quoted.extend_from_slice(&40000u16.to_be_bytes());
        quoted.extend_from_slice(&80u16.to_be_bytes());
        quoted.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
        let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted);
        let total = u16::try_from(20 + icmp.len()).unwrap().to_be_bytes();
        let mut packet = vec![
            0x45, 0, total[0], total[1], 0, 2, 0, 0, 64, 1, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        packet.extend_from_slice(&icmp);
        let local: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let server: SocketAddr = "198.19.1.1:80".parse().unwrap();
        assert_eq!(
            quoting_router(&packet, local, server),
            Some("198.18.0.1".parse().unwrap())
        );
        let other: SocketAddr = "198.18.0.2:40001".parse().unwrap();
        assert_eq!(quoting_router(&packet, other, server), None);
    }

    #[test]
    fn the_trace_stops_politely() {
        // Nothing yet: go on (unless max TTL is 0).
        assert!(trace_should_continue(&[], 32, None));
        assert!(!trace_should_continue(&[], 0, None));
        // Silence so far: go on, up to the max TTL.
        let silent = vec![hop(1, router(1), TriggerOutcome::Silence)];
        assert!(trace_should_continue(&silent, 32, None));
        assert!(!trace_should_continue(&silent, 1, None));
        // The server answered at 2: probe 3, then stop.
        let mut answered = vec![
            hop(1, router(1), TriggerOutcome::Silence),
            hop(2, None, data()),
        ];
        assert!(trace_should_continue(&answered, 32, None));
        answered.push(hop(3, None, data()));
        assert!(!trace_should_continue(&answered, 32, None));
        // The control's server hop bounds the test trace the same way.
        let resets = vec![
            hop(1, None, TriggerOutcome::Silence),
            hop(2, None, TriggerOutcome::Silence),
            hop(3, None, TriggerOutcome::Reset),
        ];
        assert!(trace_should_continue(&resets[..2], 32, Some(2)));
        assert!(!trace_should_continue(&resets, 32, Some(2)));
        // Interference at two consecutive TTLs: stop.
        let twice = vec![
            hop(1, None, TriggerOutcome::Reset),
            hop(2, None, TriggerOutcome::Closed),
        ];
        assert!(trace_should_continue(&twice[..1], 32, None));
        assert!(!trace_should_continue(&twice, 32, None));
        // A failed handshake: stop (residual or blocked, every later one fails too).
        let failed = vec![hop(1, None, TriggerOutcome::Reset), hop(2, None, refused())];
        assert!(!trace_should_continue(&failed, 32, None));
    }
}
