//! What a packet capture saw of one probe connection, without judgement: the packets of
//! the flow both ways (and ICMP errors quoting it), with the IP and TCP header facts that
//! betray an injector. Live capture ([`crate::capture`]) and offline pcap analysis
//! ([`crate::workflows::pcap`]) both produce these; [`crate::classify::packets`] judges them.
//! Stored in records so that a report can be re-judged without root.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A TCP connection as the client saw it: our end and the server's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowKey {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// Which way a packet travelled, relative to the probe's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketDirection {
    /// From the client (the probe) toward the server.
    ToServer,
    /// Toward the client: from the server, or from anything on the path.
    ToClient,
}

/// The IP header facts of one packet: what injectors get wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpFacts {
    /// IPv4 TTL or IPv6 hop limit, as received.
    pub ttl: u8,
    /// IPv4 identification (absent for IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    /// IPv4 don't-fragment bit (absent for IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<bool>,
}

/// TCP header flags, written as `SYN+ACK`, `RST`, `FIN+PSH+ACK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlagSet(pub u8);

impl TcpFlagSet {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// Names in the order they are written.
    const NAMES: [(u8, &'static str); 8] = [
        (Self::SYN, "SYN"),
        (Self::FIN, "FIN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::ACK, "ACK"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
    ];

    pub fn has(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
    pub fn is_rst(self) -> bool {
        self.has(Self::RST)
    }
    pub fn is_fin(self) -> bool {
        self.has(Self::FIN)
    }
    pub fn is_syn_ack(self) -> bool {
        self.has(Self::SYN | Self::ACK)
    }
}

impl fmt::Display for TcpFlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("+")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A flag set that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCP flag {0:?} (expected names such as SYN, ACK, RST joined by +)")]
pub struct BadTcpFlag(String);

impl FromStr for TcpFlagSet {
    type Err = BadTcpFlag;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "none" {
            return Ok(TcpFlagSet(0));
        }
        let mut bits = 0;
        for part in text.split('+') {
            let part = part.trim();
            let (bit, _) = Self::NAMES
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(part))
                .ok_or_else(|| BadTcpFlag(part.to_string()))?;
            bits |= bit;
        }
        Ok(TcpFlagSet(bits))
    }
}

impl Serialize for TcpFlagSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TcpFlagSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The TCP options of a segment that fingerprint a stack (a SYN-ACK's are the baseline).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcpOptionFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_scale: Option<u8>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sack_permitted: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timestamps: bool,
    /// Option kinds in wire order (NOP = 1 included), for stacks the fields above do not
    /// tell apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<u8>,
}

impl TcpOptionFacts {
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

/// The bytes of a payload kept in a record: at most this many.
pub const PAYLOAD_HEAD_BYTES: usize = 64;

/// The TCP facts of one segment. `seq`/`ack` are as on the wire; the judgement makes them
/// relative to the flow's initial sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFacts {
    pub flags: TcpFlagSet,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    #[serde(default, skip_serializing_if = "TcpOptionFacts::is_empty")]
    pub options: TcpOptionFacts,
    /// Payload length in bytes (from the IP length: Ethernet padding is not payload).
    pub payload_len: u32,
    /// The first [`PAYLOAD_HEAD_BYTES`] of the payload, hex (a RST's payload is an
    /// injector's signature).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub payload_hex: String,
}

/// What kind of ICMP error arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IcmpKind {
    /// Time exceeded in transit (IPv4 type 11 code 0, IPv6 type 3 code 0): a router at
    /// the hop where the TTL ran out.
    TimeExceeded,
    /// Destination unreachable, with its code.
    Unreachable { code: u8 },
    /// Any other ICMP error quoting the flow.
    Other { icmp_type: u8, code: u8 },
}

/// An ICMP error quoting one of the flow's packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpFacts {
    /// The router or host that sent it.
    pub from: IpAddr,
    pub kind: IcmpKind,
    /// The TTL left in the quoted header (0 or 1 for a time-exceeded), when quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_ttl: Option<u8>,
    /// The quoted TCP sequence number, which says which of our segments expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_seq: Option<u32>,
}

/// TCP segment or ICMP error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "proto", rename_all = "snake_case")]
pub enum PacketBody {
    Tcp(TcpFacts),
    Icmp(IcmpFacts),
}

/// One captured packet of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketFacts {
    /// Microseconds after the flow's first captured packet.
    pub at_us: u64,
    pub direction: PacketDirection,
    pub ip: IpFacts,
    #[serde(flatten)]
    pub body: PacketBody,
    /// For segments we sent: the IP TTL we set (a TTL-limited trigger); same as `ip.ttl`.
    /// Absent on packets toward the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ttl: Option<u8>,
}

impl PacketFacts {
    pub fn tcp(&self) -> Option<&TcpFacts> {
        match &self.body {
            PacketBody::Tcp(tcp) => Some(tcp),
            PacketBody::Icmp(_) => None,
        }
    }
    pub fn icmp(&self) -> Option<&IcmpFacts> {
        match &self.body {
            PacketBody::Icmp(icmp) => Some(icmp),
            PacketBody::Tcp(_) => None,
        }
    }
}

/// Everything a capture saw of one TCP connection, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionPackets {
    pub flow: FlowKey,
    /// Index into `packets` of the trigger: the first segment toward the server that
    /// carried payload (the request or `ClientHello`), when it was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<usize>,
    pub packets: Vec<PacketFacts>,
    /// Packets of the flow not kept (a bound protects memory on long flows).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why no capture ran for a connection or a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CaptureObservation {
    /// The capture ran; these are the connection's packets (possibly none).
    Captured(ConnectionPackets),
    /// No capture: the reason (no `CAP_NET_RAW`, no interface, capture disabled...).
    Unavailable { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_sets_round_trip_through_their_names() {
        let syn_ack = TcpFlagSet(TcpFlagSet::SYN | TcpFlagSet::ACK);
        assert_eq!(syn_ack.to_string(), "SYN+ACK");
        assert_eq!("SYN+ACK".parse::<TcpFlagSet>().unwrap(), syn_ack);
        let rst = TcpFlagSet(TcpFlagSet::RST);
        assert_eq!(serde_json::to_string(&rst).unwrap(), "\"RST\"");
        assert_eq!(
            serde_json::from_str::<TcpFlagSet>("\"rst+ack\"").unwrap(),
            TcpFlagSet(TcpFlagSet::RST | TcpFlagSet::ACK)
        );
        assert!("RST+BOGUS".parse::<TcpFlagSet>().is_err());
        assert_eq!(TcpFlagSet(0).to_string(), "none");
    }
}
