//! The flow table: which connections the probe registered, and the packets captured for
//! each so far. Plain data (no sockets, no threads), so routing is unit-tested.
//!
//! A flow is registered by our local port and the server's address before its SYN is
//! sent: the socket is bound to the unspecified address, so our IP is only learned from
//! the first packet of the flow (the kernel picks the source address at connect). A port
//! bound by `bind(0)` is exclusive on the host, so (local port, server) names one flow.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::observation::packets::{ConnectionPackets, FlowKey};
use crate::packet::{ConnectionBuilder, ParsedPacket, Transport, parse_ip};

/// Flows held at once at most: a scan holds one per open probe connection, so this is
/// far above what the connection budget lets run at default settings; beyond it a
/// connection is recorded as not captured rather than growing memory.
pub const MAX_FLOWS: usize = 8192;

/// Packets kept over all flows at most (each flow also stops at
/// [`crate::packet::MAX_PACKETS_PER_CONNECTION`]): about 300 bytes each, so the table
/// stays under ~40 MB whatever the servers send. Packets beyond it are counted in the
/// flow's `dropped`.
pub const MAX_PACKETS_HELD: usize = 131_072;

/// (our local port, the server's address).
type SlotKey = (u16, SocketAddr);

#[derive(Debug)]
enum Slot {
    /// Registered, no packet seen yet (our address is not known).
    Waiting,
    Building {
        builder: ConnectionBuilder,
        /// Packets not kept because the table was at [`MAX_PACKETS_HELD`].
        over_budget: u32,
    },
}

/// Why a flow could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("capture table full ({limit} flows)")]
    Full { limit: usize },
    #[error("flow already registered")]
    Duplicate,
}

/// Registered flows and their packets.
#[derive(Debug)]
pub struct FlowTable {
    flows: HashMap<SlotKey, Slot>,
    max_flows: usize,
    max_packets: usize,
    packets_held: usize,
}

impl Default for FlowTable {
    fn default() -> Self {
        FlowTable::with_limits(MAX_FLOWS, MAX_PACKETS_HELD)
    }
}

impl FlowTable {
    pub fn with_limits(max_flows: usize, max_packets: usize) -> FlowTable {
        FlowTable {
            flows: HashMap::new(),
            max_flows,
            max_packets,
            packets_held: 0,
        }
    }

    /// Flows registered now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Packets held over all flows now.
    pub fn packets_held(&self) -> usize {
        self.packets_held
    }

    /// Start capturing the flow from our `local_port` to `server`.
    pub fn register(&mut self, local_port: u16, server: SocketAddr) -> Result<(), RegisterError> {
        if self.flows.len() >= self.max_flows {
            return Err(RegisterError::Full {
                limit: self.max_flows,
            });
        }
        match self.flows.entry((local_port, server)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(RegisterError::Duplicate),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Slot::Waiting);
                Ok(())
            }
        }
    }

    /// Stop capturing a flow and return its packets. `local` is our end as far as the
    /// caller knows it (used when no packet revealed our address).
    pub fn take(&mut self, local: SocketAddr, server: SocketAddr) -> Option<ConnectionPackets> {
        match self.flows.remove(&(local.port(), server))? {
            Slot::Waiting => Some(
                ConnectionBuilder::new(FlowKey {
                    client: local,
                    server,
                })
                .finish(),
            ),
            Slot::Building {
                builder,
                over_budget,
            } => {
                self.packets_held = self.packets_held.saturating_sub(builder.len());
                let mut packets = builder.finish();
                packets.dropped = packets.dropped.saturating_add(over_budget);
                Some(packets)
            }
        }
    }

    /// Whether a TCP packet between these endpoints may belong to a registered flow.
    fn may_hold(&self, source: SocketAddr, destination: SocketAddr) -> bool {
        self.flows.contains_key(&(destination.port(), source))
            || self.flows.contains_key(&(source.port(), destination))
    }

    /// Route one captured IP packet (the IP header first) arriving at `at_us`. TCP
    /// packets of no registered flow are refused from their headers alone, before the
    /// full parse. Returns whether a flow took the packet.
    pub fn route_bytes(&mut self, bytes: &[u8], at_us: u64) -> bool {
        if let Some((source, destination)) = tcp_endpoints(bytes)
            && !self.may_hold(source, destination)
        {
            return false;
        }
        match parse_ip(bytes) {
            Ok(packet) => self.route(&packet, at_us),
            Err(_) => false,
        }
    }

    /// Route one parsed packet: a TCP segment of a flow (either way) or an ICMP error
    /// quoting one of our segments.
    pub fn route(&mut self, packet: &ParsedPacket<'_>, at_us: u64) -> bool {
        let (key, client) = match &packet.transport {
            Transport::Tcp { .. } => {
                let Some((source, destination)) = packet.endpoints() else {
                    return false;
                };
                if self.flows.contains_key(&(destination.port(), source)) {
                    ((destination.port(), source), destination)
                } else if self.flows.contains_key(&(source.port(), destination)) {
                    ((source.port(), destination), source)
                } else {
                    return false;
                }
            }
            Transport::Icmp {
                quoted: Some(quoted),
                ..
            } if quoted.protocol == 6 => {
                ((quoted.source.port(), quoted.destination), quoted.source)
            }
            _ => return false,
        };
        let at_budget = self.packets_held >= self.max_packets;
        let Some(slot) = self.flows.get_mut(&key) else {
            return false;
        };
        if let Slot::Waiting = slot {
            *slot = Slot::Building {
                builder: ConnectionBuilder::new(FlowKey {
                    client,
                    server: key.1,
                }),
                over_budget: 0,
            };
        }
        let Slot::Building {
            builder,
            over_budget,
        } = slot
        else {
            unreachable!("set above");
        };
        if at_budget {
            *over_budget = over_budget.saturating_add(1);
            return true;
        }
        let before = builder.len();
        let taken = builder.push(packet, at_us);
        self.packets_held += builder.len() - before;
        taken
    }
}

/// Source and destination of an unfragmented TCP packet, read from the headers without
/// parsing the rest (no allocation): the cheap test that drops traffic not ours.
fn tcp_endpoints(bytes: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let version = bytes.first()? >> 4;
    let (source, destination, transport): (IpAddr, IpAddr, &[u8]) = match version {
        4 => {
            let header_len = usize::from(bytes[0] & 0x0f) * 4;
            if *bytes.get(9)? != 6 || header_len < 20 {
                return None;
            }
            let fragment = u16::from_be_bytes([*bytes.get(6)?, *bytes.get(7)?]) & 0x3fff;
            if fragment != 0 {
                return None;
            }
            let s: [u8; 4] = bytes.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = bytes.get(16..20)?.try_into().ok()?;
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                bytes.get(header_len..)?,
            )
        }
        6 => {
            if *bytes.get(6)? != 6 {
                return None;
            }
            let s: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = bytes.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                bytes.get(40..)?,
            )
        }
        _ => return None,
    };
    let ports = transport.get(..4)?;
    Some((
        SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
        SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::packets::{IcmpKind, PacketBody, PacketDirection};

    /// An IPv4 packet with a TCP segment (checksums zero: the parser does not check them).
    fn tcp_packet(
        source: SocketAddr,
        destination: SocketAddr,
        flags: u8,
        ttl: u8,
        ip_id: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (source.ip(), destination.ip()) else {
            panic!("IPv4 only");
        };
        let total = (40 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&ip_id.to_be_bytes());
        p.extend_from_slice(&[0x40, 0, ttl, 6, 0, 0]);
        p.extend_from_slice(&s.octets());
        p.extend_from_slice(&d.octets());
        p.extend_from_slice(&source.port().to_be_bytes());
        p.extend_from_slice(&destination.port().to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0x10, 0, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn time_exceeded(router: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
        let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted[..28]);
        let total = (20 + icmp.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 9, 0, 0, 63, 1, 0, 0]);
        p.extend_from_slice(&router.octets());
        p.extend_from_slice(&to.octets());
        p.extend_from_slice(&icmp);
        p
    }

    const SYN: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const PSH_ACK: u8 = 0x18;
    const RST_ACK: u8 = 0x14;

    fn client() -> SocketAddr {
        "198.18.0.2:40000".parse().unwrap()
    }
    fn server() -> SocketAddr {
        "198.18.1.2:443".parse().unwrap()
    }
    fn unbound() -> SocketAddr {
        "0.0.0.0:40000".parse().unwrap()
    }

    #[test]
    fn both_directions_and_quoting_icmp_errors_reach_the_registered_flow() {
        let mut table = FlowTable::default();
        table.register(40000, server()).unwrap();
        assert!(table.route_bytes(&tcp_packet(client(), server(), SYN, 64, 7, b""), 0));
        assert!(table.route_bytes(&tcp_packet(server(), client(), SYN_ACK, 61, 0, b""), 900));
        let trigger = tcp_packet(client(), server(), PSH_ACK, 64, 8, b"\x16\x03\x01");
        assert!(table.route_bytes(&trigger, 1_000));
        assert!(table.route_bytes(
            &tcp_packet(server(), client(), RST_ACK, 248, 0x9920, b""),
            16_000
        ));
        let router: Ipv4Addr = "198.18.0.1".parse().unwrap();
        let IpAddr::V4(ours) = client().ip() else {
            unreachable!()
        };
        assert!(table.route_bytes(&time_exceeded(router, ours, &trigger), 17_000));
        assert_eq!(table.packets_held(), 5);

        let packets = table.take(unbound(), server()).unwrap();
        assert_eq!(
            packets.flow.client,
            client(),
            "our address is learned from the SYN"
        );
        assert_eq!(packets.trigger, Some(2));
        let directions: Vec<_> = packets.packets.iter().map(|p| p.direction).collect();
        assert_eq!(
            directions,
            [
                PacketDirection::ToServer,
                PacketDirection::ToClient,
                PacketDirection::ToServer,
                PacketDirection::ToClient,
                PacketDirection::ToClient
            ]
        );
        let reset = &packets.packets[3];
        assert_eq!((reset.ip.ttl, reset.ip.ip_id), (248, Some(0x9920)));
        assert_eq!(reset.at_us, 16_000);
        let PacketBody::Icmp(icmp) = &packets.packets[4].body else {
            panic!("not ICMP");
        };
        assert_eq!(icmp.kind, IcmpKind::TimeExceeded);
        assert_eq!(icmp.from, IpAddr::V4(router));
        assert!(table.is_empty());
        assert_eq!(table.packets_held(), 0);
    }

    #[test]
    fn traffic_of_no_registered_flow_is_ignored() {
        let mut table = FlowTable::default();
        table.register(40000, server()).unwrap();
        let other_server: SocketAddr = "198.18.1.3:443".parse().unwrap();
        let other_port: SocketAddr = "198.18.0.2:40001".parse().unwrap();
        assert!(!table.route_bytes(&tcp_packet(client(), other_server, SYN, 64, 1, b""), 0));
        assert!(!table.route_bytes(&tcp_packet(other_port, server(), SYN, 64, 1, b""), 0));
        assert!(!table.route_bytes(&tcp_packet(server(), other_port, SYN_ACK, 64, 1, b""), 0));
        assert!(!table.route_bytes(b"\x45garbage", 0));
        assert_eq!(table.packets_held(), 0);
        // Registered but silent: an empty capture with our end as the caller knew it.
        let packets = table.take(unbound(), server()).unwrap();
        assert!(packets.packets.is_empty());
        assert_eq!(packets.flow.client, unbound());
        assert!(table.take(unbound(), server()).is_none(), "taken once");
    }

    #[test]
    fn the_table_is_bounded_in_flows_and_packets() {
        let mut table = FlowTable::with_limits(2, 3);
        table.register(1, server()).unwrap();
        assert_eq!(table.register(1, server()), Err(RegisterError::Duplicate));
        table.register(2, server()).unwrap();
        assert_eq!(
            table.register(3, server()),
            Err(RegisterError::Full { limit: 2 })
        );
        let ours = |port| SocketAddr::new(client().ip(), port);
        for n in 0..5 {
            assert!(table.route_bytes(&tcp_packet(server(), ours(1), 0x10, 60, n, b""), 0));
        }
        assert_eq!(table.packets_held(), 3);
        let packets = table.take(ours(1), server()).unwrap();
        assert_eq!((packets.packets.len(), packets.dropped), (3, 2));
        assert_eq!(table.packets_held(), 0);
        // Freed room is usable again.
        table.register(3, server()).unwrap();
        assert!(table.route_bytes(&tcp_packet(server(), ours(3), 0x10, 60, 0, b""), 0));
    }
}
