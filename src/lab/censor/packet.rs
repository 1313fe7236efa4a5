//! Frames the censor reads and writes, parsed and built with `pnet_packet`.

use std::net::Ipv4Addr;

use pnet::packet::Packet;
use pnet::packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet::packet::icmp::{self, IcmpTypes, MutableIcmpPacket};
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::{self, Ipv4Flags, Ipv4Packet, MutableIpv4Packet};
use pnet::packet::tcp::{self, MutableTcpPacket, TcpPacket};
use pnet::packet::udp::{self, MutableUdpPacket, UdpPacket};
use pnet::util::MacAddr;

use crate::lab::plan;

const ETHERNET_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const TCP_HEADER: usize = 20;

/// Which link a frame leaves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Toward the vantage point (`cvp0`).
    Client,
    /// Toward the Internet side (`cnet0`).
    Server,
}

impl Link {
    /// Source and destination MAC of frames on this link.
    fn macs(self) -> (MacAddr, MacAddr) {
        let mac = |m: [u8; 6]| MacAddr::new(m[0], m[1], m[2], m[3], m[4], m[5]);
        match self {
            Link::Client => (
                mac(plan::CENSOR_VANTAGE_MAC),
                mac(plan::CENSOR_CLIENT_PEER_MAC),
            ),
            Link::Server => (
                mac(plan::CENSOR_INTERNET_MAC),
                mac(plan::CENSOR_SERVER_PEER_MAC),
            ),
        }
    }

    /// Routers between the censor and the end of this link's side: a forged packet is
    /// written with this much more TTL so that its receiver sees the fingerprint's.
    pub fn routers_beyond(self) -> u8 {
        match self {
            Link::Client => plan::CENSOR_HOP - 1,
            Link::Server => plan::SERVER_HOP - plan::CENSOR_HOP - 1,
        }
    }
}

/// A frame to write on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    pub link: Link,
    pub frame: Vec<u8>,
    /// The packet the censor read, passed on (not something it made up).
    pub forwarded: bool,
}

impl Emit {
    /// `ip` passed on toward `link`.
    pub fn forward(ip: &Ipv4Packet<'_>, link: Link) -> Emit {
        Emit {
            link,
            frame: forward(ip, link),
            forwarded: true,
        }
    }

    /// A frame the censor made.
    pub fn forged(link: Link, frame: Vec<u8>) -> Emit {
        Emit {
            link,
            frame,
            forwarded: false,
        }
    }
}

/// The IP-header fingerprint of a forged packet. `ttl` is the TTL its receiver sees: the
/// frame builders add the routers on the way ([`Link::routers_beyond`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub ttl: u8,
    pub ip_id: u16,
    /// The IP Don't Fragment bit.
    pub dont_fragment: bool,
}

impl Fingerprint {
    /// `ttl` and `ip_id`, DF clear.
    pub const fn new(ttl: u8, ip_id: u16) -> Fingerprint {
        Fingerprint {
            ttl,
            ip_id,
            dont_fragment: false,
        }
    }

    fn on(self, link: Link) -> Fingerprint {
        Fingerprint {
            ttl: self.ttl.saturating_add(link.routers_beyond()),
            ..self
        }
    }
}

/// The IPv4 packet inside an Ethernet frame, cut to its total length (frames of short
/// packets carry padding).
pub fn ipv4_of(frame: &[u8]) -> Option<Ipv4Packet<'_>> {
    let ethernet = EthernetPacket::new(frame)?;
    if ethernet.get_ethertype() != EtherTypes::Ipv4 {
        return None;
    }
    let ip_bytes = &frame[ETHERNET_HEADER..];
    let header = Ipv4Packet::new(ip_bytes)?;
    let total = usize::from(header.get_total_length());
    let header_len = usize::from(header.get_header_length()) * 4;
    if total < header_len || total > ip_bytes.len() || header_len < IPV4_HEADER {
        return None;
    }
    Ipv4Packet::new(&ip_bytes[..total])
}

/// Whether a frame read from the inspection link came the route of packets that arrived
/// with TTL 1 (see [`crate::lab::nft`]): their TTL ends at the censor.
pub fn is_expiring(frame: &[u8]) -> bool {
    EthernetPacket::new(frame)
        .is_some_and(|ethernet| ethernet.get_destination().octets() == plan::INSPECT_EXPIRING_MAC)
}

/// Whether the packet is a fragment (its transport header may be elsewhere).
pub fn is_fragment(ip: &Ipv4Packet<'_>) -> bool {
    ip.get_fragment_offset() != 0 || ip.get_flags() & Ipv4Flags::MoreFragments != 0
}

/// Re-frame an IPv4 packet read on the inspection link for `link`, recomputing the
/// transport checksum (the vantage point's stack leaves it to offload, which the copy
/// read from a packet socket does not carry). The TTL is left alone: the kernel took the
/// censor's hop off already when it routed the packet to the inspection link.
pub fn forward(ip: &Ipv4Packet<'_>, link: Link) -> Vec<u8> {
    let bytes = ip.packet();
    let mut frame = vec![0u8; ETHERNET_HEADER + bytes.len()];
    frame[ETHERNET_HEADER..].copy_from_slice(bytes);
    write_ethernet(&mut frame, link);
    if !is_fragment(ip) {
        let header_len = usize::from(ip.get_header_length()) * 4;
        let (source, destination) = (ip.get_source(), ip.get_destination());
        let l4 = &mut frame[ETHERNET_HEADER + header_len..];
        match ip.get_next_level_protocol() {
            IpNextHeaderProtocols::Tcp => {
                if let Some(mut segment) = MutableTcpPacket::new(l4) {
                    segment.set_checksum(0);
                    let sum = tcp::ipv4_checksum(&segment.to_immutable(), &source, &destination);
                    segment.set_checksum(sum);
                }
            }
            IpNextHeaderProtocols::Udp => {
                if let Some(mut datagram) = MutableUdpPacket::new(l4) {
                    datagram.set_checksum(0);
                    let sum = udp::ipv4_checksum(&datagram.to_immutable(), &source, &destination);
                    datagram.set_checksum(if sum == 0 { 0xffff } else { sum });
                }
            }
            _ => {}
        }
    }
    frame
}

fn write_ethernet(frame: &mut [u8], link: Link) {
    let (source, destination) = link.macs();
    let mut ethernet = MutableEthernetPacket::new(frame).expect("frame holds a header");
    ethernet.set_source(source);
    ethernet.set_destination(destination);
    ethernet.set_ethertype(EtherTypes::Ipv4);
}

fn write_ipv4(
    buf: &mut [u8],
    source: Ipv4Addr,
    destination: Ipv4Addr,
    protocol: pnet::packet::ip::IpNextHeaderProtocol,
    fingerprint: Fingerprint,
) {
    let total = buf.len() as u16;
    let mut ip = MutableIpv4Packet::new(buf).expect("buffer holds an IPv4 header");
    ip.set_version(4);
    ip.set_header_length(5);
    ip.set_total_length(total);
    ip.set_identification(fingerprint.ip_id);
    ip.set_flags(if fingerprint.dont_fragment {
        Ipv4Flags::DontFragment
    } else {
        0
    });
    ip.set_ttl(fingerprint.ttl);
    ip.set_next_level_protocol(protocol);
    ip.set_source(source);
    ip.set_destination(destination);
    ip.set_checksum(0);
    let sum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(sum);
}

/// A UDP datagram (forged DNS answer) as a frame for `link`.
pub fn udp_frame(
    link: Link,
    source: (Ipv4Addr, u16),
    destination: (Ipv4Addr, u16),
    payload: &[u8],
    fingerprint: Fingerprint,
) -> Vec<u8> {
    let mut frame = vec![0u8; ETHERNET_HEADER + IPV4_HEADER + UDP_HEADER + payload.len()];
    write_ethernet(&mut frame, link);
    {
        let l4 = &mut frame[ETHERNET_HEADER + IPV4_HEADER..];
        let mut datagram = MutableUdpPacket::new(l4).expect("sized for UDP");
        datagram.set_source(source.1);
        datagram.set_destination(destination.1);
        datagram.set_length((UDP_HEADER + payload.len()) as u16);
        datagram.set_payload(payload);
        let sum = udp::ipv4_checksum(&datagram.to_immutable(), &source.0, &destination.0);
        datagram.set_checksum(if sum == 0 { 0xffff } else { sum });
    }
    write_ipv4(
        &mut frame[ETHERNET_HEADER..],
        source.0,
        destination.0,
        IpNextHeaderProtocols::Udp,
        fingerprint.on(link),
    );
    frame
}

/// A TCP segment without options (an injected reset) as a frame for `link`.
pub struct Segment<'a> {
    pub source: (Ipv4Addr, u16),
    pub destination: (Ipv4Addr, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Bytes after the header (Henan's firewall puts some on its resets).
    pub payload: &'a [u8],
}

pub fn tcp_frame(link: Link, segment: &Segment<'_>, fingerprint: Fingerprint) -> Vec<u8> {
    let mut frame = vec![0u8; ETHERNET_HEADER + IPV4_HEADER + TCP_HEADER + segment.payload.len()];
    write_ethernet(&mut frame, link);
    {
        let l4 = &mut frame[ETHERNET_HEADER + IPV4_HEADER..];
        let mut tcp = MutableTcpPacket::new(l4).expect("sized for TCP");
        tcp.set_source(segment.source.1);
        tcp.set_destination(segment.destination.1);
        tcp.set_sequence(segment.seq);
        tcp.set_acknowledgement(segment.ack);
        tcp.set_data_offset(5);
        tcp.set_flags(segment.flags);
        tcp.set_window(segment.window);
        tcp.set_payload(segment.payload);
        let sum = tcp::ipv4_checksum(
            &tcp.to_immutable(),
            &segment.source.0,
            &segment.destination.0,
        );
        tcp.set_checksum(sum);
    }
    write_ipv4(
        &mut frame[ETHERNET_HEADER..],
        segment.source.0,
        segment.destination.0,
        IpNextHeaderProtocols::Tcp,
        fingerprint.on(link),
    );
    frame
}

/// What a router quotes of a packet it drops: the IP header and 8 bytes of what follows.
const ICMP_QUOTE_AFTER_HEADER: usize = 8;
const ICMP_HEADER: usize = 8;
/// The TTL the censor namespace's kernel would give its own ICMP errors.
const ICMP_ERROR_TTL: u8 = 64;

/// The ICMP time-exceeded (in transit) a router at `from` sends to the source of `ip`,
/// quoting it, as a frame toward the vantage point. Like the kernel's: TTL 64, DF clear.
pub fn time_exceeded(from: Ipv4Addr, ip: &Ipv4Packet<'_>) -> Vec<u8> {
    let header_len = usize::from(ip.get_header_length()) * 4;
    let original = ip.packet();
    let quoted = &original[..original.len().min(header_len + ICMP_QUOTE_AFTER_HEADER)];
    let mut frame = vec![0u8; ETHERNET_HEADER + IPV4_HEADER + ICMP_HEADER + quoted.len()];
    write_ethernet(&mut frame, Link::Client);
    {
        let l4 = &mut frame[ETHERNET_HEADER + IPV4_HEADER..];
        let mut message = MutableIcmpPacket::new(l4).expect("sized for ICMP");
        message.set_icmp_type(IcmpTypes::TimeExceeded);
        message.set_icmp_code(icmp::IcmpCode::new(0));
        // 4 unused bytes, then the quote.
        message.set_payload(&[[0u8; 4].as_slice(), quoted].concat());
        let sum = icmp::checksum(&message.to_immutable());
        message.set_checksum(sum);
    }
    write_ipv4(
        &mut frame[ETHERNET_HEADER..],
        from,
        ip.get_source(),
        IpNextHeaderProtocols::Icmp,
        Fingerprint::new(ICMP_ERROR_TTL, rand::random()),
    );
    frame
}

/// UDP header and payload of a packet, when it is an unfragmented UDP datagram.
pub fn udp_of<'a>(ip: &'a Ipv4Packet<'a>) -> Option<UdpPacket<'a>> {
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Udp || is_fragment(ip) {
        return None;
    }
    UdpPacket::new(ip.payload())
}

/// TCP segment of a packet, when it is an unfragmented TCP segment.
pub fn tcp_of<'a>(ip: &'a Ipv4Packet<'a>) -> Option<TcpPacket<'a>> {
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp || is_fragment(ip) {
        return None;
    }
    TcpPacket::new(ip.payload())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let fp = Fingerprint {
            ttl: 101,
            ip_id: 0x1234,
            dont_fragment: true,
        };
        let client = (Ipv4Addr::new(198, 18, 0, 2), 40000);
        let server = (Ipv4Addr::new(198, 19, 1, 1), 80);
        let frame = tcp_frame(
            Link::Client,
            &Segment {
                source: server,
                destination: client,
                seq: 7,
                ack: 9,
                flags: tcp::TcpFlags::RST | tcp::TcpFlags::ACK,
                window: 0,
                payload: &[1, 2, 3],
            },
            fp,
        );
        let ethernet = EthernetPacket::new(&frame).unwrap();
        assert_eq!(
            ethernet.get_destination().octets(),
            plan::CENSOR_CLIENT_PEER_MAC
        );
        let ip = ipv4_of(&frame).unwrap();
        assert_eq!(
            ip.get_ttl(),
            101 + plan::CENSOR_HOP - 1,
            "written with the routers before the vantage point added"
        );
        assert_eq!(ip.get_identification(), 0x1234);
        assert_eq!(ip.get_flags(), Ipv4Flags::DontFragment);
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        let segment = tcp_of(&ip).unwrap();
        assert_eq!(segment.get_sequence(), 7);
        assert_eq!(segment.payload(), [1, 2, 3]);
        assert_eq!(
            tcp::ipv4_checksum(&segment, &ip.get_source(), &ip.get_destination()),
            segment.get_checksum()
        );

        let udp = udp_frame(Link::Client, server, client, b"hello", fp);
        let ip = ipv4_of(&udp).unwrap();
        let datagram = udp_of(&ip).unwrap();
        assert_eq!(datagram.payload(), b"hello");
        assert_eq!(
            udp::ipv4_checksum(&datagram, &ip.get_source(), &ip.get_destination()),
            datagram.get_checksum()
        );
    }

    #[test]
    fn forwarding_rewrites_macs_and_repairs_the_transport_checksum() {
        let fp = Fingerprint::new(63, 1);
        let mut frame = udp_frame(
            Link::Client,
            (Ipv4Addr::new(198, 18, 0, 2), 5353),
            (Ipv4Addr::new(198, 19, 0, 53), 53),
            b"query",
            fp,
        );
        // A checksum left to offload, plus Ethernet padding.
        frame[ETHERNET_HEADER + IPV4_HEADER + 6] = 0xab;
        frame.extend_from_slice(&[0; 8]);
        let ip = ipv4_of(&frame).unwrap();
        let out = forward(&ip, Link::Server);
        assert_eq!(
            EthernetPacket::new(&out)
                .unwrap()
                .get_destination()
                .octets(),
            plan::CENSOR_SERVER_PEER_MAC
        );
        let ip = ipv4_of(&out).unwrap();
        let datagram = udp_of(&ip).unwrap();
        assert_eq!(datagram.payload(), b"query");
        assert_eq!(
            udp::ipv4_checksum(&datagram, &ip.get_source(), &ip.get_destination()),
            datagram.get_checksum()
        );
        assert_eq!(
            out.len(),
            ETHERNET_HEADER + usize::from(ip.get_total_length())
        );
    }

    #[test]
    fn time_exceeded_quotes_the_expired_packet_with_valid_checksums() {
        let trigger = tcp_frame(
            Link::Server,
            &Segment {
                source: (plan::VANTAGE_IP, 40000),
                destination: (Ipv4Addr::new(198, 19, 1, 1), 443),
                seq: 1,
                ack: 2,
                flags: tcp::TcpFlags::ACK | tcp::TcpFlags::PSH,
                window: 500,
                payload: b"hello",
            },
            Fingerprint::new(0, 77),
        );
        let expired = ipv4_of(&trigger).unwrap();
        let frame = time_exceeded(plan::CENSOR_VANTAGE_SIDE_IP, &expired);
        let ip = ipv4_of(&frame).unwrap();
        assert_eq!(ip.get_source(), plan::CENSOR_VANTAGE_SIDE_IP);
        assert_eq!(ip.get_destination(), plan::VANTAGE_IP);
        assert_eq!(ip.get_next_level_protocol(), IpNextHeaderProtocols::Icmp);
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        let message = icmp::IcmpPacket::new(ip.payload()).unwrap();
        assert_eq!(message.get_icmp_type(), IcmpTypes::TimeExceeded);
        assert_eq!(message.get_icmp_code(), icmp::IcmpCode::new(0));
        assert_eq!(icmp::checksum(&message), message.get_checksum());
        // The quote: the expired packet's IP header and its first 8 TCP bytes (ports and
        // sequence number), which is how a prober matches the error to its probe.
        let quote = &message.payload()[4..];
        assert_eq!(quote, &expired.packet()[..IPV4_HEADER + 8]);
    }
}
