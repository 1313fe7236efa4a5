//! The records of `censorprobe pcap`: one line per capture file, with every TCP flow it
//! holds (trigger, what came back, the packet judgement) and, per server, the TTL-limited
//! trace that CenTrace-style captures allow (routers per hop, the first hop that draws an
//! injection, the server's hop distance, on-path or at the endpoint).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

pub use super::location::CensorPlacement;

use crate::observation::packets::{ConnectionPackets, IcmpKind, IpFacts, TcpFlagSet};

/// One capture file's analysis (`"record": "pcap_capture"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcapCaptureRecord {
    /// Always `pcap_capture`.
    pub record: String,
    /// The file as given on the command line.
    pub file: String,
    /// `pcap` or `pcapng`.
    pub format: CaptureFormat,
    /// Frames in the file.
    pub frames: u64,
    /// Frames that were not IPv4/IPv6 TCP or ICMP errors (ARP, UDP, fragments, malformed).
    pub skipped_frames: u64,
    /// TCP segments and ICMP errors that belong to no flow whose start was captured.
    pub unmatched_packets: u64,
    /// Every TCP flow, in the order its first packet appears.
    pub flows: Vec<PcapFlow>,
    /// One TTL-limited trace per (server, trigger name): flows whose triggers were sent
    /// with different IP TTLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<TtlTrace>,
}

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureFormat {
    Pcap,
    Pcapng,
}

/// The application protocol the trigger spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerProtocol {
    Http,
    Tls,
    /// Payload that is neither an HTTP request nor a TLS `ClientHello` with a name.
    Unknown,
}

/// The first payload the client sent: the request that a censor reacts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcapTrigger {
    pub protocol: TriggerProtocol,
    /// HTTP Host or TLS SNI (lower case, no port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The IP TTL the client sent it with (a TTL-limited probe when small).
    pub sent_ttl: u8,
    /// Its IPv4 identification (some injectors copy it into their reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ip_id: Option<u16>,
    pub payload_len: u32,
}

/// What the packets toward the client after the trigger amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowOutcome {
    /// The server sent data (its answer to the request).
    ServerData,
    /// Data from another sender than the server (IP TTL unlike the SYN-ACK's) arrived
    /// first: an injected block page.
    ForeignData,
    /// A RST (or RST+ACK) arrived before any data.
    Reset,
    /// A FIN arrived before any data.
    Fin,
    /// A router said the trigger's TTL ran out.
    TimeExceeded,
    /// An ICMP unreachable or other error quoting the flow.
    IcmpError,
    /// Nothing came back for the trigger.
    Nothing,
    /// The client sent no payload (no handshake, or the capture ends before it).
    NoTrigger,
}

/// Identical packets toward the client, grouped (a GFW type II burst is one group of 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseGroup {
    /// Microseconds after the trigger of the first packet of the group.
    pub after_trigger_us: u64,
    /// How many identical packets (same flags, IP TTL, IP ID, DF, seq, ack, window).
    pub count: u32,
    /// Microseconds between the first and the last of the group.
    pub spread_us: u64,
    pub ip: IpFacts,
    #[serde(flatten)]
    pub kind: ResponseKind,
    /// IP TTL minus the SYN-ACK's (the server's) IP TTL: far from 0 says another sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_minus_syn_ack: Option<i16>,
}

impl ResponseGroup {
    /// A TCP segment (not an ICMP error).
    pub fn is_tcp(&self) -> bool {
        matches!(self.kind, ResponseKind::Tcp { .. })
    }
}

/// A TCP segment or an ICMP error toward the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "proto", rename_all = "snake_case")]
pub enum ResponseKind {
    Tcp {
        flags: TcpFlagSet,
        window: u16,
        /// Sequence number relative to the server's initial one (SYN-ACK), when seen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relative_seq: Option<u32>,
        /// Acknowledgement relative to the client's initial sequence number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relative_ack: Option<u32>,
        payload_len: u32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        payload_hex: String,
    },
    Icmp {
        from: IpAddr,
        kind: IcmpKind,
    },
}

/// One TCP connection of the capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcapFlow {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Microseconds since the capture's first frame at which the flow's first packet came.
    pub start_us: u64,
    /// The server's SYN-ACK IP facts: the baseline for what the server's packets look like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_ack: Option<IpFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<PcapTrigger>,
    pub outcome: FlowOutcome,
    /// Packets toward the client after the trigger, until the client closed (its FIN/RST):
    /// what the trigger drew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<ResponseGroup>,
    /// `classify::packets::judge_connection` on the flow's packets.
    pub judgement: FlowJudgement,
    /// Every packet of the flow (only with `--packets`), for re-judging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<ConnectionPackets>,
}

/// The packet judgement of a flow, as recorded (the classifier's `PacketJudgement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowJudgement {
    /// At least one RST/FIN toward the client was judged injected.
    pub injected: bool,
    /// The injector fingerprint that matched (`gfw_type_ii`, `unknown_injector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<String>,
    /// The facts that matched, with their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
    /// One sentence with the values.
    pub summary: String,
}

/// What one trigger TTL drew from the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlHop {
    /// The IP TTL the trigger was sent with.
    pub ttl: u8,
    /// Flows that sent their trigger with this TTL.
    pub flows: u32,
    /// The routers whose ICMP time-exceeded quoted the trigger (usually one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<IpAddr>,
    /// The server sent data.
    pub server_data: bool,
    /// RST, FIN or foreign-data groups toward the client before the server's data (a
    /// censor's or the server's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking: Vec<ResponseGroup>,
    /// Injector named by the packet judgement for a flow at this TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<String>,
    /// Nothing came back for any flow at this TTL.
    pub silent: bool,
}

/// Where the server's hop distance comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopSource {
    /// This capture: the first TTL at which the server answered.
    ThisCapture,
    /// Another capture given in the same run, to the same server address (CenTrace pairs
    /// each test domain with a control domain to the same server).
    OtherCapture,
}

/// The TTL-limited trace toward one server for one trigger name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlTrace {
    pub server: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TriggerProtocol>,
    /// One entry per trigger TTL, ascending.
    pub hops: Vec<TtlHop>,
    /// The first TTL whose trigger drew a RST or FIN before any data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_blocking_ttl: Option<u8>,
    /// The routers whose time-exceeded came at `first_blocking_ttl` itself (the censor's
    /// own hop, when the trigger travels on past it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers_at_blocking: Vec<IpAddr>,
    /// The router that answered at the hop before `first_blocking_ttl` (the last router
    /// known to be before the censor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_before_blocking: Option<IpAddr>,
    /// The first TTL at which the server itself answered (data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hop: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hop_from: Option<HopSource>,
    /// The HTTP status line of the server's first data at `server_hop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_answer: Option<String>,
    /// The control capture's `server_answer` to the same server (given in the same run):
    /// a different status says the endpoint itself blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_answer: Option<String>,
    pub placement: CensorPlacement,
    /// The injector named for the blocking flows, when the judgement names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<String>,
    /// Sentences with the values behind `placement`.
    pub evidence: Vec<String>,
}
