//! The wire parser for captured packets (live capture and pcap files alike): one frame in,
//! the IP and TCP/UDP/ICMP facts out, with `pnet_packet` doing the header work. Nothing
//! here knows about flows or judges anything.

use std::net::{IpAddr, SocketAddr};

use pnet::packet::Packet;
use pnet::packet::ethernet::{EtherTypes, EthernetPacket};
use pnet::packet::icmp::IcmpPacket;
use pnet::packet::icmpv6::Icmpv6Packet;
use pnet::packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet::packet::ipv4::{Ipv4Flags, Ipv4Packet};
use pnet::packet::ipv6::Ipv6Packet;
use pnet::packet::tcp::{TcpOptionNumbers, TcpPacket};
use pnet::packet::udp::UdpPacket;

use crate::observation::packets::{
    ConnectionPackets, FlowKey, IcmpFacts, IcmpKind, IpFacts, PAYLOAD_HEAD_BYTES, PacketBody,
    PacketDirection, PacketFacts, TcpFacts, TcpFlagSet, TcpOptionFacts,
};

/// How a frame starts (pcap's `LINKTYPE` values; a live `AF_PACKET` socket gives Ethernet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1).
    Ethernet,
    /// `LINKTYPE_RAW` (101) / `LINKTYPE_IPV4` (228) / `LINKTYPE_IPV6` (229): the IP header first.
    RawIp,
    /// `LINKTYPE_LINUX_SLL` (113): Linux "cooked" capture, 16-byte header.
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): 20-byte header.
    LinuxSll2,
}

impl LinkType {
    /// The link type of a pcap/pcapng LINKTYPE number, when supported.
    pub fn from_pcap(linktype: u32) -> Option<LinkType> {
        match linktype {
            1 => Some(LinkType::Ethernet),
            101 | 228 | 229 | 12 | 14 => Some(LinkType::RawIp),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            _ => None,
        }
    }
}

/// Why a frame was not parsed (most are simply not ours: ARP, fragments, other protocols).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    #[error("frame too short for its link header")]
    ShortLink,
    #[error("not IPv4 or IPv6 (ethertype {0:#06x})")]
    NotIp(u16),
    #[error("IP header malformed or truncated")]
    BadIp,
    #[error("IPv4 fragment (transport header not in this packet)")]
    Fragment,
    #[error("transport header malformed or truncated")]
    BadTransport,
    #[error("IP protocol {0} is not TCP, UDP or ICMP")]
    OtherProtocol(u8),
}

/// The header quoted inside an ICMP error: which of our packets it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedHeader {
    /// The quoted packet's source and destination (our packet: source is the client).
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// IP protocol of the quoted packet (6 TCP, 17 UDP).
    pub protocol: u8,
    /// TTL left in the quoted IP header.
    pub ttl: u8,
    /// Quoted TCP sequence number (the first 8 transport bytes are always quoted).
    pub tcp_seq: Option<u32>,
}

/// The transport part of a parsed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport<'a> {
    Tcp {
        source_port: u16,
        destination_port: u16,
        facts: TcpFacts,
        /// The whole payload (cut to the IP length: padding is not payload).
        payload: &'a [u8],
    },
    Udp {
        source_port: u16,
        destination_port: u16,
        payload: &'a [u8],
    },
    Icmp {
        kind: IcmpKind,
        /// The header the error quotes, when it quotes a TCP or UDP packet.
        quoted: Option<QuotedHeader>,
    },
}

/// One parsed IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPacket<'a> {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub ip: IpFacts,
    pub transport: Transport<'a>,
}

impl ParsedPacket<'_> {
    /// Source and destination socket addresses of a TCP or UDP packet.
    pub fn endpoints(&self) -> Option<(SocketAddr, SocketAddr)> {
        let (s, d) = match &self.transport {
            Transport::Tcp {
                source_port,
                destination_port,
                ..
            }
            | Transport::Udp {
                source_port,
                destination_port,
                ..
            } => (*source_port, *destination_port),
            Transport::Icmp { .. } => return None,
        };
        Some((
            SocketAddr::new(self.source, s),
            SocketAddr::new(self.destination, d),
        ))
    }
}

/// Parse one frame of the given link type.
pub fn parse_frame(link: LinkType, frame: &[u8]) -> Result<ParsedPacket<'_>, PacketError> {
    let ip = match link {
        LinkType::Ethernet => {
            let ethernet = EthernetPacket::new(frame).ok_or(PacketError::ShortLink)?;
            let ethertype = ethernet.get_ethertype();
            if ethertype != EtherTypes::Ipv4 && ethertype != EtherTypes::Ipv6 {
                return Err(PacketError::NotIp(ethertype.0));
            }
            &frame[EthernetPacket::minimum_packet_size()..]
        }
        LinkType::RawIp => frame,
        LinkType::LinuxSll => frame.get(16..).ok_or(PacketError::ShortLink)?,
        LinkType::LinuxSll2 => frame.get(20..).ok_or(PacketError::ShortLink)?,
    };
    parse_ip(ip)
}

/// Parse an IPv4 or IPv6 packet (by its version nibble).
pub fn parse_ip(bytes: &[u8]) -> Result<ParsedPacket<'_>, PacketError> {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(bytes),
        Some(6) => parse_ipv6(bytes),
        _ => Err(PacketError::BadIp),
    }
}

fn parse_ipv4(bytes: &[u8]) -> Result<ParsedPacket<'_>, PacketError> {
    let header = Ipv4Packet::new(bytes).ok_or(PacketError::BadIp)?;
    let header_len = usize::from(header.get_header_length()) * 4;
    let total = usize::from(header.get_total_length());
    if header_len < Ipv4Packet::minimum_packet_size() || total < header_len || total > bytes.len() {
        return Err(PacketError::BadIp);
    }
    // Cut to the IP length: Ethernet pads short frames, and padding is not payload.
    let packet = Ipv4Packet::new(&bytes[..total]).ok_or(PacketError::BadIp)?;
    if packet.get_fragment_offset() != 0 || packet.get_flags() & Ipv4Flags::MoreFragments != 0 {
        return Err(PacketError::Fragment);
    }
    let ip = IpFacts {
        ttl: packet.get_ttl(),
        ip_id: Some(packet.get_identification()),
        df: Some(packet.get_flags() & Ipv4Flags::DontFragment != 0),
    };
    let source = IpAddr::V4(packet.get_source());
    let destination = IpAddr::V4(packet.get_destination());
    let body = &bytes[header_len..total];
    let transport = transport(packet.get_next_level_protocol(), body, false)?;
    Ok(ParsedPacket {
        source,
        destination,
        ip,
        transport,
    })
}

fn parse_ipv6(bytes: &[u8]) -> Result<ParsedPacket<'_>, PacketError> {
    let packet = Ipv6Packet::new(bytes).ok_or(PacketError::BadIp)?;
    let header_len = Ipv6Packet::minimum_packet_size();
    let end = header_len + usize::from(packet.get_payload_length());
    if end > bytes.len() {
        return Err(PacketError::BadIp);
    }
    let ip = IpFacts {
        ttl: packet.get_hop_limit(),
        ip_id: None,
        df: None,
    };
    // Extension headers are not followed: probes do not send them, and an injector that
    // adds one is rare enough to show up as "other protocol".
    let transport = transport(packet.get_next_header(), &bytes[header_len..end], true)?;
    Ok(ParsedPacket {
        source: IpAddr::V6(packet.get_source()),
        destination: IpAddr::V6(packet.get_destination()),
        ip,
        transport,
    })
}

fn transport(
    protocol: IpNextHeaderProtocol,
    body: &[u8],
    v6: bool,
) -> Result<Transport<'_>, PacketError> {
    match protocol {
        IpNextHeaderProtocols::Tcp => tcp(body),
        IpNextHeaderProtocols::Udp => {
            let udp = UdpPacket::new(body).ok_or(PacketError::BadTransport)?;
            Ok(Transport::Udp {
                source_port: udp.get_source(),
                destination_port: udp.get_destination(),
                payload: &body[UdpPacket::minimum_packet_size()..],
            })
        }
        IpNextHeaderProtocols::Icmp if !v6 => icmpv4(body),
        IpNextHeaderProtocols::Icmpv6 if v6 => icmpv6(body),
        other => Err(PacketError::OtherProtocol(other.0)),
    }
}

fn tcp(body: &[u8]) -> Result<Transport<'_>, PacketError> {
    let segment = TcpPacket::new(body).ok_or(PacketError::BadTransport)?;
    let offset = usize::from(segment.get_data_offset()) * 4;
    if offset < TcpPacket::minimum_packet_size() || offset > body.len() {
        return Err(PacketError::BadTransport);
    }
    let payload = &body[offset..];
    let mut options = TcpOptionFacts::default();
    for option in segment.get_options_iter() {
        let number = option.get_number();
        options.kinds.push(number.0);
        let data = option.payload();
        if number == TcpOptionNumbers::MSS && data.len() >= 2 {
            options.mss = Some(u16::from_be_bytes([data[0], data[1]]));
        } else if number == TcpOptionNumbers::WSCALE && !data.is_empty() {
            options.window_scale = Some(data[0]);
        } else if number == TcpOptionNumbers::SACK_PERMITTED {
            options.sack_permitted = true;
        } else if number == TcpOptionNumbers::TIMESTAMPS {
            options.timestamps = true;
        }
    }
    let facts = TcpFacts {
        flags: TcpFlagSet(segment.get_flags()),
        seq: segment.get_sequence(),
        ack: segment.get_acknowledgement(),
        window: segment.get_window(),
        options,
        payload_len: payload.len() as u32,
        payload_hex: hex::encode(&payload[..payload.len().min(PAYLOAD_HEAD_BYTES)]),
    };
    Ok(Transport::Tcp {
        source_port: segment.get_source(),
        destination_port: segment.get_destination(),
        facts,
        payload,
    })
}

fn icmpv4(body: &[u8]) -> Result<Transport<'_>, PacketError> {
    let icmp = IcmpPacket::new(body).ok_or(PacketError::BadTransport)?;
    let (icmp_type, code) = (icmp.get_icmp_type().0, icmp.get_icmp_code().0);
    let kind = match (icmp_type, code) {
        (11, 0) => IcmpKind::TimeExceeded,
        (3, code) => IcmpKind::Unreachable { code },
        (0 | 8, _) => return Err(PacketError::OtherProtocol(1)),
        (icmp_type, code) => IcmpKind::Other { icmp_type, code },
    };
    // Errors carry 4 unused bytes, then the quoted IP header and 8+ transport bytes.
    let quoted = body.get(8..).and_then(quoted_header);
    Ok(Transport::Icmp { kind, quoted })
}

fn icmpv6(body: &[u8]) -> Result<Transport<'_>, PacketError> {
    let icmp = Icmpv6Packet::new(body).ok_or(PacketError::BadTransport)?;
    let (icmp_type, code) = (icmp.get_icmpv6_type().0, icmp.get_icmpv6_code().0);
    let kind = match (icmp_type, code) {
        (3, 0) => IcmpKind::TimeExceeded,
        (1, code) => IcmpKind::Unreachable { code },
        // Informational messages (echo, neighbour discovery) are not about our flows.
        (128.., _) => return Err(PacketError::OtherProtocol(58)),
        (icmp_type, code) => IcmpKind::Other { icmp_type, code },
    };
    let quoted = body.get(8..).and_then(quoted_header);
    Ok(Transport::Icmp { kind, quoted })
}

/// The IP header and first transport bytes quoted in an ICMP error (often truncated:
/// routers quote as little as 8 transport bytes, so only ports and the sequence number).
fn quoted_header(bytes: &[u8]) -> Option<QuotedHeader> {
    let (source, destination, protocol, ttl, rest) = match bytes.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new(bytes)?;
            let header_len = usize::from(ip.get_header_length()) * 4;
            (
                IpAddr::V4(ip.get_source()),
                IpAddr::V4(ip.get_destination()),
                ip.get_next_level_protocol().0,
                ip.get_ttl(),
                bytes.get(header_len..)?,
            )
        }
        6 => {
            let ip = Ipv6Packet::new(bytes)?;
            (
                IpAddr::V6(ip.get_source()),
                IpAddr::V6(ip.get_destination()),
                ip.get_next_header().0,
                ip.get_hop_limit(),
                bytes.get(Ipv6Packet::minimum_packet_size()..)?,
            )
        }
        _ => return None,
    };
    if rest.len() < 4 {
        return None;
    }
    let source_port = u16::from_be_bytes([rest[0], rest[1]]);
    let destination_port = u16::from_be_bytes([rest[2], rest[3]]);
    let tcp_seq = (protocol == 6 && rest.len() >= 8)
        .then(|| u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]));
    Some(QuotedHeader {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
        protocol,
        ttl,
        tcp_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// An IPv4 header (no options) in front of `body`, checksums left zero (the parser
    /// does not check them: captures of offloaded packets carry none).
    fn ipv4(protocol: u8, ttl: u8, id: u16, df: bool, body: &[u8]) -> Vec<u8> {
        let total = (20 + body.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
        p.extend_from_slice(&[ttl, protocol, 0, 0]);
        p.extend_from_slice(&[198, 18, 0, 1]);
        p.extend_from_slice(&[198, 18, 1, 2]);
        p.extend_from_slice(body);
        p
    }

    fn tcp_segment(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&443u16.to_be_bytes());
        t.extend_from_slice(&40000u16.to_be_bytes());
        t.extend_from_slice(&1000u32.to_be_bytes());
        t.extend_from_slice(&2000u32.to_be_bytes());
        t.push(6 << 4); // 24-byte header: one MSS option
        t.push(flags);
        t.extend_from_slice(&1503u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&[2, 4, 0x05, 0xb4]);
        t.extend_from_slice(payload);
        t
    }

    #[test]
    fn a_henan_like_reset_keeps_ttl_id_df_flags_and_payload() {
        let payload = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
        let segment = tcp_segment(0x14, &payload);
        let mut packet = ipv4(6, 58, 1, false, &segment);
        packet.extend_from_slice(&[0; 6]); // Ethernet padding beyond the IP length
        let parsed = parse_frame(LinkType::RawIp, &packet).unwrap();
        assert_eq!(parsed.source, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(
            parsed.ip,
            IpFacts {
                ttl: 58,
                ip_id: Some(1),
                df: Some(false)
            }
        );
        let Transport::Tcp {
            facts,
            payload: p,
            source_port,
            ..
        } = parsed.transport
        else {
            panic!("not TCP");
        };
        assert_eq!(source_port, 443);
        assert_eq!(facts.flags.to_string(), "RST+ACK");
        assert_eq!(facts.window, 1503);
        assert_eq!(facts.options.mss, Some(1460));
        assert_eq!(facts.payload_len, 10);
        assert_eq!(p, &payload);
        assert_eq!(facts.payload_hex, "01020304050607080900");
    }

    #[test]
    fn a_time_exceeded_quotes_our_segment() {
        let ours = ipv4(6, 1, 7, true, &tcp_segment(0x18, b"GET /"));
        let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&ours[..28]);
        let packet = ipv4(1, 62, 9, false, &icmp);
        let parsed = parse_ip(&packet).unwrap();
        let Transport::Icmp { kind, quoted } = parsed.transport else {
            panic!("not ICMP");
        };
        assert_eq!(kind, IcmpKind::TimeExceeded);
        let quoted = quoted.unwrap();
        assert_eq!(quoted.ttl, 1);
        assert_eq!(quoted.protocol, 6);
        assert_eq!(quoted.source.port(), 443);
        assert_eq!(quoted.tcp_seq, Some(1000));
    }

    #[test]
    fn fragments_truncation_and_other_protocols_are_refused() {
        let mut fragment = ipv4(6, 64, 1, false, &tcp_segment(0x10, b""));
        fragment[6] = 0x20; // more fragments
        assert_eq!(parse_ip(&fragment), Err(PacketError::Fragment));
        let whole = ipv4(6, 64, 1, false, &tcp_segment(0x10, b""));
        assert_eq!(parse_ip(&whole[..30]), Err(PacketError::BadIp));
        let gre = ipv4(47, 64, 1, false, &[0; 8]);
        assert_eq!(parse_ip(&gre), Err(PacketError::OtherProtocol(47)));
        assert_eq!(
            parse_frame(LinkType::Ethernet, &[0; 10]),
            Err(PacketError::ShortLink)
        );
    }
}

/// Packets kept per connection: a bound that protects memory on long flows (the facts that
/// matter — handshake, trigger, the resets after it — come first).
pub const MAX_PACKETS_PER_CONNECTION: usize = 256;

/// Builds one connection's [`ConnectionPackets`] from parsed packets in arrival order,
/// used by live capture and pcap analysis alike. The caller routes packets to builders by
/// [`FlowKey`] (and ICMP errors by their quoted header).
#[derive(Debug, Clone)]
pub struct ConnectionBuilder {
    flow: FlowKey,
    /// Arrival time of the first packet, in microseconds on the caller's clock.
    first_us: Option<u64>,
    packets: ConnectionPackets,
}

impl ConnectionBuilder {
    pub fn new(flow: FlowKey) -> ConnectionBuilder {
        ConnectionBuilder {
            flow,
            first_us: None,
            packets: ConnectionPackets {
                flow,
                trigger: None,
                packets: Vec::new(),
                dropped: 0,
            },
        }
    }

    pub fn flow(&self) -> FlowKey {
        self.flow
    }

    /// Add a packet that arrived at `at_us` (microseconds, any epoch, non-decreasing).
    /// Packets that are neither of this flow (either way) nor an ICMP error quoting it are
    /// ignored; returns whether the packet was taken.
    pub fn push(&mut self, packet: &ParsedPacket<'_>, at_us: u64) -> bool {
        let (direction, body) = match &packet.transport {
            Transport::Tcp { facts, .. } => {
                let Some((source, destination)) = packet.endpoints() else {
                    return false;
                };
                let direction = if source == self.flow.client && destination == self.flow.server {
                    PacketDirection::ToServer
                } else if source == self.flow.server && destination == self.flow.client {
                    PacketDirection::ToClient
                } else {
                    return false;
                };
                (direction, PacketBody::Tcp(facts.clone()))
            }
            Transport::Icmp { kind, quoted } => {
                let Some(quoted) = quoted else { return false };
                if quoted.source != self.flow.client
                    || quoted.destination != self.flow.server
                    || packet.destination != self.flow.client.ip()
                {
                    return false;
                }
                (
                    PacketDirection::ToClient,
                    PacketBody::Icmp(IcmpFacts {
                        from: packet.source,
                        kind: *kind,
                        quoted_ttl: Some(quoted.ttl),
                        quoted_seq: quoted.tcp_seq,
                    }),
                )
            }
            Transport::Udp { .. } => return false,
        };
        if self.packets.packets.len() >= MAX_PACKETS_PER_CONNECTION {
            self.packets.dropped = self.packets.dropped.saturating_add(1);
            return true;
        }
        let first = *self.first_us.get_or_insert(at_us);
        let is_trigger = self.packets.trigger.is_none()
            && direction == PacketDirection::ToServer
            && matches!(&body, PacketBody::Tcp(tcp) if tcp.payload_len > 0);
        if is_trigger {
            self.packets.trigger = Some(self.packets.packets.len());
        }
        self.packets.packets.push(PacketFacts {
            at_us: at_us.saturating_sub(first),
            direction,
            ip: packet.ip,
            sent_ttl: (direction == PacketDirection::ToServer).then_some(packet.ip.ttl),
            body,
        });
        true
    }

    /// Packets seen so far.
    pub fn len(&self) -> usize {
        self.packets.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.packets.is_empty()
    }

    pub fn finish(self) -> ConnectionPackets {
        self.packets
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;

    fn segment(
        source: SocketAddr,
        destination: SocketAddr,
        flags: u8,
        payload: &[u8],
    ) -> ParsedPacket<'_> {
        ParsedPacket {
            source: source.ip(),
            destination: destination.ip(),
            ip: IpFacts {
                ttl: 60,
                ip_id: Some(0),
                df: Some(true),
            },
            transport: Transport::Tcp {
                source_port: source.port(),
                destination_port: destination.port(),
                facts: TcpFacts {
                    flags: TcpFlagSet(flags),
                    seq: 1,
                    ack: 1,
                    window: 100,
                    options: TcpOptionFacts::default(),
                    payload_len: payload.len() as u32,
                    payload_hex: hex::encode(payload),
                },
                payload,
            },
        }
    }

    #[test]
    fn packets_of_the_flow_are_kept_with_direction_time_and_trigger() {
        let client: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let server: SocketAddr = "198.18.1.2:80".parse().unwrap();
        let other: SocketAddr = "198.18.1.3:80".parse().unwrap();
        let mut builder = ConnectionBuilder::new(FlowKey { client, server });
        assert!(builder.push(&segment(client, server, TcpFlagSet::SYN, b""), 1_000));
        assert!(builder.push(&segment(server, client, 0x12, b""), 1_500));
        assert!(!builder.push(&segment(client, other, TcpFlagSet::SYN, b""), 1_600));
        assert!(builder.push(&segment(client, server, 0x18, b"GET / HTTP/1.1\r\n"), 2_000));
        assert!(builder.push(&segment(server, client, 0x14, b""), 2_015));
        let packets = builder.finish();
        assert_eq!(packets.trigger, Some(2));
        let at: Vec<u64> = packets.packets.iter().map(|p| p.at_us).collect();
        assert_eq!(at, [0, 500, 1_000, 1_015]);
        assert_eq!(packets.packets[1].direction, PacketDirection::ToClient);
        assert_eq!(packets.packets[0].sent_ttl, Some(60));
        assert_eq!(packets.packets[3].sent_ttl, None);
    }
}
