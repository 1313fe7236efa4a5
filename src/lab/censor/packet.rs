//! Frames the censor reads and writes, parsed and built with `pnet_packet`.

use std::net::Ipv4Addr;

use pnet::packet::Packet;
use pnet::packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
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
            Link::Client => (mac(plan::CENSOR_VANTAGE_MAC), mac(plan::VANTAGE_MAC)),
            Link::Server => (mac(plan::CENSOR_INTERNET_MAC), mac(plan::INTERNET_MAC)),
        }
    }
}

/// A frame to write on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    pub link: Link,
    pub frame: Vec<u8>,
}

/// The IP-header fingerprint of a forged packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub ttl: u8,
    pub ip_id: u16,
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

/// Whether the packet is a fragment (its transport header may be elsewhere).
pub fn is_fragment(ip: &Ipv4Packet<'_>) -> bool {
    ip.get_fragment_offset() != 0 || ip.get_flags() & Ipv4Flags::MoreFragments != 0
}

/// Re-frame an IPv4 packet read on the inspection link for `link`, recomputing the
/// transport checksum (the vantage point's stack leaves it to offload, which the copy
/// read from a packet socket does not carry).
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
    ip.set_flags(0);
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
        fingerprint,
    );
    frame
}

/// A bare TCP segment (an injected reset) as a frame for `link`.
pub struct Segment {
    pub source: (Ipv4Addr, u16),
    pub destination: (Ipv4Addr, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

pub fn tcp_frame(link: Link, segment: &Segment, fingerprint: Fingerprint) -> Vec<u8> {
    let mut frame = vec![0u8; ETHERNET_HEADER + IPV4_HEADER + TCP_HEADER];
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
        fingerprint,
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
            },
            fp,
        );
        let ethernet = EthernetPacket::new(&frame).unwrap();
        assert_eq!(ethernet.get_destination().octets(), plan::VANTAGE_MAC);
        let ip = ipv4_of(&frame).unwrap();
        assert_eq!(ip.get_ttl(), 101);
        assert_eq!(ip.get_identification(), 0x1234);
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        let segment = tcp_of(&ip).unwrap();
        assert_eq!(segment.get_sequence(), 7);
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
        let fp = Fingerprint { ttl: 63, ip_id: 1 };
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
            plan::INTERNET_MAC
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
}
