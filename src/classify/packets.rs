//! Judging a connection's captured packets: which packets toward the client were injected
//! (and by which injector), from the facts in [`ConnectionPackets`].
//!
//! The server's SYN-ACK is the baseline (IP TTL, IP ID, DF, window, options). Every RST,
//! FIN and ICMP error toward the client is a suspect, reported with its facts; RSTs and
//! FINs are grouped into bursts (identical headers, each within [`BURST_GAP_US`] of the
//! previous one) and judged with typed [`InjectionSign`]s. A sign is either a proof on
//! its own (a TTL unlike the SYN-ACK's, identical copies the client's segments cannot
//! explain, a payload on a RST, the server still talking after it) or a support
//! (IP ID 0 without DF, DF or IP ID unlike the server's, arrival before the server could
//! have answered); a burst is injected on one proof or two supports of different kinds.
//! A single RST that looks like the server's packets is genuine. ICMP errors are
//! reported, never judged injected.
//!
//! Injected bursts are then named by the [`InjectorSet`] (`unknown_injector` when no row
//! matches).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::classify::injectors::{InjectorSet, UNKNOWN_INJECTOR, spaced_hex};
use crate::observation::packets::{
    ConnectionPackets, IcmpFacts, PacketDirection, PacketFacts, TcpFlagSet, TcpOptionFacts,
};

/// TTL difference from the baseline still taken as the same sender (a route change by a
/// hop or two during one connection).
pub const TTL_JITTER: u8 = 2;

/// Packets toward the client at most this far apart (µs) with identical headers form one
/// burst.
pub const BURST_GAP_US: u64 = 1_000;

/// An arrival after the trigger shorter than this share of the handshake RTT cannot
/// be the server's answer (half: the server's answer takes a full round trip, and
/// handshake RTTs vary by less than that on one path).
const EARLY_SHARE_OF_RTT: f64 = 0.5;

/// Below this handshake RTT (µs) arrival times say nothing (a local server, the lab).
const EARLY_MIN_RTT_US: u64 = 2_000;

/// IP IDs further than this (mod 2^16) from every one the server used are "unlike the
/// server's" when the server's IDs form a counter.
const IP_ID_DISTANCE: u16 = 2_048;

pub use crate::record::assessment::InjectorMatch;

/// Where the baseline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    /// This connection's SYN-ACK.
    SynAck,
    /// The SYN-ACK of another connection to the same server address (the benign control
    /// run just before), used when this connection got none (a reset connect).
    Reference,
}

/// The server's SYN-ACK: what the server's own packets look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub source: BaselineSource,
    pub ttl: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<bool>,
    pub window: u16,
    #[serde(default, skip_serializing_if = "TcpOptionFacts::is_empty")]
    pub options: TcpOptionFacts,
    /// SYN to SYN-ACK as the client saw it, when both were captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_rtt_ms: Option<f64>,
}

/// How much a sign proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignStrength {
    /// Enough on its own.
    Proof,
    /// Injected only with a second support of another kind.
    Support,
}

/// One reason to think a packet toward the client did not come from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sign", rename_all = "snake_case")]
pub enum InjectionSign {
    /// The IP TTL differs from the SYN-ACK's by more than [`TTL_JITTER`].
    TtlUnlikeBaseline { ttl: u8, baseline: u8 },
    /// Several identical packets within a millisecond, more than the client sent
    /// segments that could have drawn them (`proof`), or as many (`support`).
    IdenticalBurst {
        count: u32,
        span_ms: f64,
        client_segments: u32,
    },
    /// A RST carrying payload.
    PayloadOnRst { bytes: u32, head_hex: String },
    /// IP ID 0 with DF clear: a sender that does not number its packets yet allows
    /// fragmenting them.
    IpIdZeroWithoutDf,
    /// The same non-zero IP ID on separate packets (genuine senders number each packet).
    FixedIpId { ip_id: u16, packets: u32 },
    /// The server's packets number IP IDs as a counter; this one is far from it.
    IpIdUnlikeServer { ip_id: u16, server_ip_ids: Vec<u16> },
    /// DF unlike the SYN-ACK's.
    DfUnlikeBaseline { df: bool, baseline: bool },
    /// Arrived sooner after the trigger than the server could have answered.
    ArrivedBeforeServerCould {
        after_trigger_ms: f64,
        handshake_rtt_ms: f64,
    },
    /// A packet from the server arrived on the flow after this one (a genuine RST ends
    /// the server's side; no data follows a genuine FIN).
    ServerSpokeAfter {
        at_ms: f64,
        flags: TcpFlagSet,
        ttl: u8,
        payload_len: u32,
    },
}

impl InjectionSign {
    pub fn strength(&self) -> SignStrength {
        match self {
            InjectionSign::TtlUnlikeBaseline { .. }
            | InjectionSign::PayloadOnRst { .. }
            | InjectionSign::ServerSpokeAfter { .. } => SignStrength::Proof,
            InjectionSign::IdenticalBurst {
                count,
                client_segments,
                ..
            } if count > client_segments => SignStrength::Proof,
            _ => SignStrength::Support,
        }
    }

    /// The sign's kind, for counting supports of different kinds.
    fn kind(&self) -> u8 {
        match self {
            InjectionSign::TtlUnlikeBaseline { .. } => 0,
            InjectionSign::IdenticalBurst { .. } => 1,
            InjectionSign::PayloadOnRst { .. } => 2,
            InjectionSign::IpIdZeroWithoutDf => 3,
            InjectionSign::FixedIpId { .. } => 4,
            InjectionSign::IpIdUnlikeServer { .. } => 5,
            InjectionSign::DfUnlikeBaseline { .. } => 6,
            InjectionSign::ArrivedBeforeServerCould { .. } => 7,
            InjectionSign::ServerSpokeAfter { .. } => 8,
        }
    }
}

impl fmt::Display for InjectionSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectionSign::TtlUnlikeBaseline { ttl, baseline } => {
                write!(f, "IP TTL {ttl} unlike the SYN-ACK's {baseline}")
            }
            InjectionSign::IdenticalBurst {
                count,
                span_ms,
                client_segments,
            } => write!(
                f,
                "{count} identical copies within {span_ms:.2} ms (the client sent {client_segments} segment(s) that could draw them)"
            ),
            InjectionSign::PayloadOnRst { bytes, head_hex } => {
                write!(
                    f,
                    "a RST with {bytes} payload bytes ({})",
                    spaced_hex(head_hex)
                )
            }
            InjectionSign::IpIdZeroWithoutDf => f.write_str("IP ID 0 with DF clear"),
            InjectionSign::FixedIpId { ip_id, packets } => {
                write!(f, "IP ID {ip_id:#06x} on {packets} separate packets")
            }
            InjectionSign::IpIdUnlikeServer {
                ip_id,
                server_ip_ids,
            } => {
                let ids: Vec<String> = server_ip_ids.iter().map(|i| format!("{i:#06x}")).collect();
                write!(
                    f,
                    "IP ID {ip_id:#06x} far from the server's ({})",
                    ids.join(", ")
                )
            }
            InjectionSign::DfUnlikeBaseline { df, baseline } => write!(
                f,
                "DF {} unlike the SYN-ACK's ({})",
                if *df { "set" } else { "clear" },
                if *baseline { "set" } else { "clear" }
            ),
            InjectionSign::ArrivedBeforeServerCould {
                after_trigger_ms,
                handshake_rtt_ms,
            } => write!(
                f,
                "arrived {after_trigger_ms:.1} ms after the trigger, under the handshake RTT of {handshake_rtt_ms:.1} ms"
            ),
            InjectionSign::ServerSpokeAfter {
                at_ms,
                flags,
                ttl,
                payload_len,
            } => write!(
                f,
                "the server still sent {flags} (TTL {ttl}, {payload_len} payload bytes) at {at_ms:.1} ms"
            ),
        }
    }
}

/// One RST, FIN or ICMP error toward the client, with its facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspectPacket {
    /// Index into the connection's `packets`.
    pub index: usize,
    /// Milliseconds after the flow's first captured packet.
    pub at_ms: f64,
    /// Milliseconds after the trigger was sent (absent without a trigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_trigger_ms: Option<f64>,
    pub ttl: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<bool>,
    /// TCP flags (absent for ICMP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<TcpFlagSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u16>,
    /// Sequence number relative to the server's ISN (from the SYN-ACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel_seq: Option<u32>,
    /// Acknowledgment number relative to the client's ISN (from the SYN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel_ack: Option<u32>,
    #[serde(default)]
    pub payload_len: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub payload_hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFacts>,
    /// Index into the judgement's `bursts` (RST/FIN only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<usize>,
    pub injected: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signs: Vec<InjectionSign>,
}

impl SuspectPacket {
    fn headline(&self) -> String {
        let what = match (&self.flags, &self.icmp) {
            (Some(flags), _) => flags.to_string(),
            (None, Some(icmp)) => format!("ICMP {:?} from {}", icmp.kind, icmp.from),
            (None, None) => "packet".to_owned(),
        };
        let mut parts = vec![format!("TTL {}", self.ttl)];
        if let Some(id) = self.ip_id {
            parts.push(format!("IP ID {id:#06x}"));
        }
        if let Some(df) = self.df {
            parts.push(format!("DF {}", u8::from(df)));
        }
        if self.payload_len > 0 {
            parts.push(format!("{} payload bytes", self.payload_len));
        }
        let when = self.after_trigger_ms.map_or_else(
            || format!("at {:.1} ms", self.at_ms),
            |ms| format!("{ms:.1} ms after the trigger"),
        );
        format!("{what} {when} ({})", parts.join(", "))
    }
}

/// RST/FIN packets toward the client with identical headers, each within
/// [`BURST_GAP_US`] of the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketBurst {
    /// Indexes into the judgement's `suspects`.
    pub suspects: Vec<usize>,
    pub flags: TcpFlagSet,
    pub count: u32,
    pub span_ms: f64,
    /// The copies also carry the same sequence and acknowledgment numbers.
    pub same_seq: bool,
    pub injected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<InjectorMatch>,
}

/// What the packets of one connection show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketJudgement {
    /// At least one RST/FIN toward the client was judged injected.
    pub injected: bool,
    /// Set when `injected`: the first injected burst a fingerprint names, else
    /// `unknown_injector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<InjectorMatch>,
    /// The server's SYN-ACK facts, when one was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// Every RST, FIN and ICMP error toward the client, in arrival order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspects: Vec<SuspectPacket>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bursts: Vec<PacketBurst>,
}

impl PacketJudgement {
    /// One sentence with the values, for evidence.
    pub fn describe(&self) -> String {
        let baseline = self.baseline.as_ref().map_or_else(
            || "no SYN-ACK captured".to_owned(),
            |b| {
                let from = match b.source {
                    BaselineSource::SynAck => "SYN-ACK",
                    BaselineSource::Reference => "control's SYN-ACK",
                };
                format!(
                    "{from} TTL {}{}{}",
                    b.ttl,
                    b.ip_id
                        .map(|i| format!(", IP ID {i:#06x}"))
                        .unwrap_or_default(),
                    b.df.map(|d| format!(", DF {}", u8::from(d)))
                        .unwrap_or_default()
                )
            },
        );
        if !self.injected {
            if self.suspects.is_empty() {
                return format!(
                    "the capture shows no injected packet: no RST, FIN or ICMP error toward the client ({baseline})"
                );
            }
            let seen: Vec<String> = self.suspects.iter().map(SuspectPacket::headline).collect();
            return format!(
                "the capture shows no injected packet: {} ({baseline})",
                seen.join("; ")
            );
        }
        let mut parts = Vec::new();
        for burst in self.bursts.iter().filter(|b| b.injected) {
            let Some(first) = burst.suspects.first().and_then(|&i| self.suspects.get(i)) else {
                continue;
            };
            let signs: Vec<String> = first.signs.iter().map(ToString::to_string).collect();
            let name = burst
                .injector
                .as_ref()
                .map(|m| format!("; injector {}: {}", m.name, m.facts.join(", ")))
                .unwrap_or_default();
            let copies = if burst.count > 1 {
                format!("{} × ", burst.count)
            } else {
                String::new()
            };
            parts.push(format!(
                "{copies}{} injected: {}{name}",
                first.headline(),
                signs.join("; ")
            ));
        }
        format!(
            "the capture shows injected packets: {} ({baseline})",
            parts.join(" | ")
        )
    }
}

/// Judge one connection's packets against the injector fingerprints.
pub fn judge_connection(packets: &ConnectionPackets, injectors: &InjectorSet) -> PacketJudgement {
    judge_connection_with_reference(packets, None, injectors)
}

/// Like [`judge_connection`]; when `packets` hold no SYN-ACK (a reset connect), the
/// SYN-ACK of `reference` (another connection to the same server address, e.g. the
/// benign control) is the baseline.
pub fn judge_connection_with_reference(
    packets: &ConnectionPackets,
    reference: Option<&ConnectionPackets>,
    injectors: &InjectorSet,
) -> PacketJudgement {
    let own = baseline_of(packets, BaselineSource::SynAck);
    let baseline = own.as_ref().map(|(b, _)| b.clone()).or_else(|| {
        reference
            .filter(|r| r.flow.server.ip() == packets.flow.server.ip())
            .and_then(|r| baseline_of(r, BaselineSource::Reference))
            .map(|(b, _)| b)
    });
    let server_isn = own.as_ref().map(|(_, isn)| *isn);
    let client_isn = packets
        .packets
        .iter()
        .filter(|p| p.direction == PacketDirection::ToServer)
        .find_map(|p| {
            p.tcp()
                .filter(|t| t.flags.0 & (TcpFlagSet::SYN | TcpFlagSet::ACK) == TcpFlagSet::SYN)
                .map(|t| t.seq)
        });
    let trigger_us = packets
        .trigger
        .and_then(|i| packets.packets.get(i))
        .map(|p| p.at_us);

    let mut suspects: Vec<SuspectPacket> = packets
        .packets
        .iter()
        .enumerate()
        .filter(|(_, p)| p.direction == PacketDirection::ToClient)
        .filter(|(_, p)| match p.tcp() {
            Some(t) => t.flags.is_rst() || t.flags.is_fin(),
            None => p.icmp().is_some(),
        })
        .map(|(index, p)| suspect_facts(index, p, trigger_us, server_isn, client_isn))
        .collect();

    let mut bursts = group_bursts(packets, &suspects);
    for (b, burst) in bursts.iter().enumerate() {
        for &s in &burst.suspects {
            suspects[s].burst = Some(b);
        }
    }

    let server_ip_ids = server_ip_ids(packets);
    for b in 0..bursts.len() {
        let signs = burst_signs(
            packets,
            &bursts[b],
            &suspects,
            baseline.as_ref(),
            &server_ip_ids,
            trigger_us,
            &bursts,
        );
        let injected = proves_injection(&signs);
        bursts[b].injected = injected;
        for &s in &bursts[b].suspects {
            suspects[s].signs.clone_from(&signs);
            suspects[s].injected = injected;
        }
        if injected {
            let members: Vec<&PacketFacts> = bursts[b]
                .suspects
                .iter()
                .filter_map(|&s| packets.packets.get(suspects[s].index))
                .collect();
            bursts[b].injector = Some(match injectors.find(&members) {
                Some((fp, facts)) => InjectorMatch {
                    name: fp.name.clone(),
                    facts,
                },
                None => InjectorMatch {
                    name: UNKNOWN_INJECTOR.to_owned(),
                    facts: unknown_facts(&suspects[bursts[b].suspects[0]], bursts[b].count),
                },
            });
        }
    }

    let injected = bursts.iter().any(|b| b.injected);
    let matches = || bursts.iter().filter_map(|b| b.injector.as_ref());
    let injector = matches()
        .find(|m| !m.is_unknown())
        .or_else(|| matches().next())
        .cloned();
    PacketJudgement {
        injected,
        injector,
        baseline,
        suspects,
        bursts,
    }
}

/// The facts written for injected packets no fingerprint names.
fn unknown_facts(first: &SuspectPacket, count: u32) -> Vec<String> {
    let flags = first
        .flags
        .map_or_else(|| "?".to_owned(), |f| f.to_string());
    let mut facts = vec![
        format!("{count} × {flags}"),
        format!("IP TTL {}", first.ttl),
    ];
    if let Some(id) = first.ip_id {
        facts.push(format!("IP ID {id:#06x}"));
    }
    if let Some(df) = first.df {
        facts.push(if df { "IP DF set" } else { "IP DF clear" }.to_owned());
    }
    facts.push(if first.payload_len == 0 {
        "no payload".to_owned()
    } else {
        format!("{} payload bytes", first.payload_len)
    });
    facts
}

/// The first SYN-ACK toward the client, with the server's ISN.
fn baseline_of(packets: &ConnectionPackets, source: BaselineSource) -> Option<(Baseline, u32)> {
    let syn_us = packets
        .packets
        .iter()
        .find(|p| {
            p.direction == PacketDirection::ToServer
                && p.tcp()
                    .is_some_and(|t| t.flags.has(TcpFlagSet::SYN) && !t.flags.has(TcpFlagSet::ACK))
        })
        .map(|p| p.at_us);
    let (syn_ack, tcp) = packets.packets.iter().find_map(|p| {
        let tcp = p.tcp()?;
        (p.direction == PacketDirection::ToClient && tcp.flags.is_syn_ack() && !tcp.flags.is_rst())
            .then_some((p, tcp))
    })?;
    let handshake_rtt_ms = syn_us
        .filter(|&syn| syn <= syn_ack.at_us)
        .map(|syn| (syn_ack.at_us - syn) as f64 / 1000.0);
    Some((
        Baseline {
            source,
            ttl: syn_ack.ip.ttl,
            ip_id: syn_ack.ip.ip_id,
            df: syn_ack.ip.df,
            window: tcp.window,
            options: tcp.options.clone(),
            handshake_rtt_ms,
        },
        tcp.seq,
    ))
}

fn suspect_facts(
    index: usize,
    p: &PacketFacts,
    trigger_us: Option<u64>,
    server_isn: Option<u32>,
    client_isn: Option<u32>,
) -> SuspectPacket {
    let tcp = p.tcp();
    SuspectPacket {
        index,
        at_ms: p.at_us as f64 / 1000.0,
        after_trigger_ms: trigger_us.map(|t| (p.at_us as f64 - t as f64) / 1000.0),
        ttl: p.ip.ttl,
        ip_id: p.ip.ip_id,
        df: p.ip.df,
        flags: tcp.map(|t| t.flags),
        window: tcp.map(|t| t.window),
        rel_seq: tcp.and_then(|t| server_isn.map(|isn| t.seq.wrapping_sub(isn))),
        rel_ack: tcp
            .filter(|t| t.flags.has(TcpFlagSet::ACK))
            .and_then(|t| client_isn.map(|isn| t.ack.wrapping_sub(isn))),
        payload_len: tcp.map_or(0, |t| t.payload_len),
        payload_hex: tcp.map(|t| t.payload_hex.clone()).unwrap_or_default(),
        icmp: p.icmp().cloned(),
        burst: None,
        injected: false,
        signs: Vec::new(),
    }
}

/// The headers that must be identical within a burst (sequence numbers may step).
fn burst_key(s: &SuspectPacket) -> impl PartialEq + '_ {
    (
        s.flags,
        s.ttl,
        s.ip_id,
        s.df,
        s.window,
        s.payload_len,
        s.payload_hex.as_str(),
    )
}

fn group_bursts(packets: &ConnectionPackets, suspects: &[SuspectPacket]) -> Vec<PacketBurst> {
    let mut bursts: Vec<PacketBurst> = Vec::new();
    let at = |s: usize| {
        packets
            .packets
            .get(suspects[s].index)
            .map_or(0, |p| p.at_us)
    };
    for (i, suspect) in suspects.iter().enumerate() {
        let Some(flags) = suspect.flags else {
            continue;
        };
        let open = bursts.iter_mut().rev().find(|b| {
            let last = *b.suspects.last().expect("bursts are never empty");
            burst_key(&suspects[last]) == burst_key(suspect)
                && at(i).saturating_sub(at(last)) <= BURST_GAP_US
        });
        match open {
            Some(burst) => burst.suspects.push(i),
            None => bursts.push(PacketBurst {
                suspects: vec![i],
                flags,
                count: 0,
                span_ms: 0.0,
                same_seq: true,
                injected: false,
                injector: None,
            }),
        }
    }
    for burst in &mut bursts {
        burst.count = u32::try_from(burst.suspects.len()).unwrap_or(u32::MAX);
        let first = burst.suspects[0];
        let last = *burst.suspects.last().expect("bursts are never empty");
        burst.span_ms = at(last).saturating_sub(at(first)) as f64 / 1000.0;
        let seqs = |s: usize| {
            packets
                .packets
                .get(suspects[s].index)
                .and_then(PacketFacts::tcp)
                .map(|t| (t.seq, t.ack))
        };
        burst.same_seq = burst.suspects.iter().all(|&s| seqs(s) == seqs(first));
    }
    bursts
}

/// IP IDs of the server's own packets (toward the client, neither RST nor FIN).
fn server_ip_ids(packets: &ConnectionPackets) -> Vec<u16> {
    packets
        .packets
        .iter()
        .filter(|p| p.direction == PacketDirection::ToClient)
        .filter(|p| {
            p.tcp()
                .is_some_and(|t| !t.flags.is_rst() && !t.flags.is_fin())
        })
        .filter_map(|p| p.ip.ip_id)
        .collect()
}

fn id_distance(a: u16, b: u16) -> u16 {
    let d = a.wrapping_sub(b);
    d.min(d.wrapping_neg())
}

fn burst_signs(
    packets: &ConnectionPackets,
    burst: &PacketBurst,
    suspects: &[SuspectPacket],
    baseline: Option<&Baseline>,
    server_ip_ids: &[u16],
    trigger_us: Option<u64>,
    bursts: &[PacketBurst],
) -> Vec<InjectionSign> {
    let first = &suspects[burst.suspects[0]];
    let last_index = suspects[*burst.suspects.last().expect("bursts are never empty")].index;
    let first_at_us = packets.packets.get(first.index).map_or(0, |p| p.at_us);
    let mut signs = Vec::new();

    if let Some(b) = baseline {
        if first.ttl.abs_diff(b.ttl) > TTL_JITTER {
            signs.push(InjectionSign::TtlUnlikeBaseline {
                ttl: first.ttl,
                baseline: b.ttl,
            });
        }
        if let (Some(df), Some(base)) = (first.df, b.df)
            && df != base
        {
            signs.push(InjectionSign::DfUnlikeBaseline { df, baseline: base });
        }
    }
    if burst.count > 1 {
        // Segments toward the server since the trigger (or the start) up to the burst:
        // a genuine stack sends one RST per segment it refuses.
        let from_us = trigger_us.unwrap_or(0);
        let client_segments = packets
            .packets
            .iter()
            .filter(|p| {
                p.direction == PacketDirection::ToServer
                    && p.tcp().is_some()
                    && p.at_us >= from_us
                    && p.at_us <= first_at_us
            })
            .count();
        signs.push(InjectionSign::IdenticalBurst {
            count: burst.count,
            span_ms: burst.span_ms,
            client_segments: u32::try_from(client_segments).unwrap_or(u32::MAX),
        });
    }
    if burst.flags.is_rst() && first.payload_len > 0 {
        signs.push(InjectionSign::PayloadOnRst {
            bytes: first.payload_len,
            head_hex: first.payload_hex.clone(),
        });
    }
    if first.ip_id == Some(0) && first.df == Some(false) {
        signs.push(InjectionSign::IpIdZeroWithoutDf);
    }
    if let Some(id) = first.ip_id.filter(|&id| id != 0) {
        // The same ID on another, separate burst (copies within a burst are counted there).
        let elsewhere = bursts
            .iter()
            .filter(|other| !std::ptr::eq(*other, burst))
            .filter(|other| suspects[other.suspects[0]].ip_id == Some(id))
            .map(|other| other.count)
            .sum::<u32>();
        if elsewhere > 0 {
            signs.push(InjectionSign::FixedIpId {
                ip_id: id,
                packets: elsewhere + 1,
            });
        }
        let nonzero: Vec<u16> = server_ip_ids.iter().copied().filter(|&i| i != 0).collect();
        if !nonzero.is_empty() && nonzero.iter().all(|&s| id_distance(s, id) > IP_ID_DISTANCE) {
            let counter_like = nonzero
                .windows(2)
                .all(|w| id_distance(w[0], w[1]) <= IP_ID_DISTANCE);
            if counter_like {
                signs.push(InjectionSign::IpIdUnlikeServer {
                    ip_id: id,
                    server_ip_ids: nonzero.into_iter().take(8).collect(),
                });
            }
        }
    }
    if let (Some(after), Some(rtt)) = (
        first.after_trigger_ms,
        baseline.and_then(|b| b.handshake_rtt_ms),
    ) && rtt * 1000.0 >= EARLY_MIN_RTT_US as f64
        && after >= 0.0
        && after < rtt * EARLY_SHARE_OF_RTT
    {
        signs.push(InjectionSign::ArrivedBeforeServerCould {
            after_trigger_ms: after,
            handshake_rtt_ms: rtt,
        });
    }
    if let Some(later) = server_spoke_after(packets, burst.flags, last_index, baseline) {
        signs.push(later);
    }
    signs
}

/// A later packet from the server that a genuine RST (no packet at all) or FIN (no
/// SYN-ACK, no data beyond the FIN) would exclude.
fn server_spoke_after(
    packets: &ConnectionPackets,
    flags: TcpFlagSet,
    after_index: usize,
    baseline: Option<&Baseline>,
) -> Option<InjectionSign> {
    let suspect = packets
        .packets
        .get(after_index)
        .and_then(PacketFacts::tcp)?;
    let fin_end = suspect.seq.wrapping_add(suspect.payload_len);
    packets
        .packets
        .iter()
        .skip(after_index + 1)
        .filter(|p| p.direction == PacketDirection::ToClient)
        .filter(|p| baseline.is_none_or(|b| p.ip.ttl.abs_diff(b.ttl) <= TTL_JITTER))
        .find_map(|p| {
            let tcp = p.tcp()?;
            if tcp.flags.is_rst() {
                return None;
            }
            let telling = if flags.is_rst() {
                true
            } else {
                // Retransmitted data from before the FIN may still come.
                let beyond_fin = tcp.seq.wrapping_sub(fin_end) < 1 << 31;
                tcp.flags.is_syn_ack() || (tcp.payload_len > 0 && beyond_fin)
            };
            telling.then(|| InjectionSign::ServerSpokeAfter {
                at_ms: p.at_us as f64 / 1000.0,
                flags: tcp.flags,
                ttl: p.ip.ttl,
                payload_len: tcp.payload_len,
            })
        })
}

/// One proof, or supports of two different kinds.
fn proves_injection(signs: &[InjectionSign]) -> bool {
    if signs.iter().any(|s| s.strength() == SignStrength::Proof) {
        return true;
    }
    let mut kinds: Vec<u8> = signs
        .iter()
        .filter(|s| s.strength() == SignStrength::Support)
        .map(InjectionSign::kind)
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds.len() >= 2
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::observation::packets::{FlowKey, IpFacts, PacketBody, TcpFacts};

    pub(crate) const CLIENT_ISN: u32 = 1_000;
    pub(crate) const SERVER_ISN: u32 = 5_000;

    fn flags(text: &str) -> TcpFlagSet {
        text.parse().unwrap()
    }

    /// A TCP packet of the flow.
    pub(crate) fn tcp(
        at_us: u64,
        direction: PacketDirection,
        (ttl, ip_id, df): (u8, u16, bool),
        flag_text: &str,
        (seq, ack): (u32, u32),
        payload: &[u8],
    ) -> PacketFacts {
        PacketFacts {
            at_us,
            direction,
            ip: IpFacts {
                ttl,
                ip_id: Some(ip_id),
                df: Some(df),
            },
            body: PacketBody::Tcp(TcpFacts {
                flags: flags(flag_text),
                seq,
                ack,
                window: 65_535,
                options: TcpOptionFacts::default(),
                payload_len: u32::try_from(payload.len()).unwrap(),
                payload_hex: hex::encode(payload),
            }),
            sent_ttl: (direction == PacketDirection::ToServer).then_some(ttl),
        }
    }

    pub(crate) fn flow() -> FlowKey {
        FlowKey {
            client: "198.18.0.10:40000".parse().unwrap(),
            server: "198.18.1.2:443".parse().unwrap(),
        }
    }

    /// SYN, SYN-ACK (server TTL 52, DF, IP ID 0x1000), ACK, trigger (100 bytes at 20 ms;
    /// handshake RTT 20 ms).
    pub(crate) fn handshake_and_trigger() -> Vec<PacketFacts> {
        use PacketDirection::*;
        vec![
            tcp(0, ToServer, (64, 7, true), "SYN", (CLIENT_ISN, 0), &[]),
            tcp(
                20_000,
                ToClient,
                (52, 0x1000, true),
                "SYN+ACK",
                (SERVER_ISN, CLIENT_ISN + 1),
                &[],
            ),
            tcp(
                20_100,
                ToServer,
                (64, 8, true),
                "ACK",
                (CLIENT_ISN + 1, SERVER_ISN + 1),
                &[],
            ),
            tcp(
                20_200,
                ToServer,
                (64, 9, true),
                "PSH+ACK",
                (CLIENT_ISN + 1, SERVER_ISN + 1),
                &[0x16; 100],
            ),
        ]
    }

    pub(crate) fn connection(extra: Vec<PacketFacts>) -> ConnectionPackets {
        let mut packets = handshake_and_trigger();
        packets.extend(extra);
        ConnectionPackets {
            flow: flow(),
            trigger: Some(3),
            packets,
            dropped: 0,
        }
    }

    /// A packet toward the client answering the trigger, `after_us` after it.
    pub(crate) fn reply(
        after_us: u64,
        ip: (u8, u16, bool),
        flag_text: &str,
        payload: &[u8],
    ) -> PacketFacts {
        tcp(
            20_200 + after_us,
            PacketDirection::ToClient,
            ip,
            flag_text,
            (SERVER_ISN + 1, CLIENT_ISN + 101),
            payload,
        )
    }

    fn judge(c: &ConnectionPackets) -> PacketJudgement {
        judge_connection(c, &InjectorSet::builtin())
    }

    fn injector(j: &PacketJudgement) -> &str {
        j.injector.as_ref().map_or("-", |m| m.name.as_str())
    }

    #[test]
    fn gfw_type_i_one_rst_ip_id_0_df_clear() {
        let c = connection(vec![reply(15_000, (60, 0, false), "RST", &[])]);
        let j = judge(&c);
        assert!(j.injected);
        assert_eq!(injector(&j), "gfw_type_i");
        let facts = &j.injector.as_ref().unwrap().facts;
        assert!(facts.contains(&"1 RST".to_owned()), "{facts:?}");
        assert!(facts.contains(&"IP ID 0x0000".to_owned()), "{facts:?}");
        assert!(facts.contains(&"IP DF clear".to_owned()));
        let s = &j.suspects[0];
        assert!(s.signs.contains(&InjectionSign::TtlUnlikeBaseline {
            ttl: 60,
            baseline: 52
        }));
        assert!(s.signs.contains(&InjectionSign::IpIdZeroWithoutDf));
        assert_eq!((s.rel_seq, s.rel_ack), (Some(1), None));
        assert_eq!(s.after_trigger_ms, Some(15.0));
        assert!(j.describe().contains("gfw_type_i"), "{}", j.describe());
    }

    #[test]
    fn gfw_type_ii_three_identical_rst_ack_with_df() {
        let c = connection(vec![
            reply(15_000, (45, 0x3a2b, true), "RST+ACK", &[]),
            reply(15_200, (45, 0x3a2b, true), "RST+ACK", &[]),
            reply(15_400, (45, 0x3a2b, true), "RST+ACK", &[]),
        ]);
        let j = judge(&c);
        assert!(j.injected);
        assert_eq!(injector(&j), "gfw_type_ii");
        assert_eq!(j.bursts.len(), 1);
        assert_eq!(j.bursts[0].count, 3);
        let facts = &j.injector.as_ref().unwrap().facts;
        assert!(
            facts.contains(&"3 identical RST+ACK within 0.40 ms".to_owned()),
            "{facts:?}"
        );
        assert!(
            facts.contains(&"IP ID 0x3a2b in all 3".to_owned()),
            "{facts:?}"
        );
        assert!(facts.contains(&"IP DF set".to_owned()));
        assert!(j.suspects[0].signs.iter().any(|s| matches!(
            s,
            InjectionSign::IdenticalBurst {
                count: 3,
                client_segments: 1,
                ..
            }
        )));
        assert_eq!(j.suspects[0].rel_ack, Some(101));
    }

    #[test]
    fn three_identical_resets_prove_injection_even_with_the_servers_ttl() {
        // Same TTL and DF as the SYN-ACK: only the burst betrays the injector.
        let c = connection(vec![
            reply(15_000, (52, 0x3a2b, true), "RST+ACK", &[]),
            reply(15_100, (52, 0x3a2b, true), "RST+ACK", &[]),
            reply(15_200, (52, 0x3a2b, true), "RST+ACK", &[]),
        ]);
        let j = judge(&c);
        assert!(j.injected);
        assert_eq!(injector(&j), "gfw_type_ii");
    }

    #[test]
    fn gfw_type_iii_rst_ack_ip_id_in_range_ttl_248() {
        let c = connection(vec![reply(14_000, (248, 0x9920, false), "RST+ACK", &[])]);
        let j = judge(&c);
        assert!(j.injected);
        assert_eq!(injector(&j), "gfw_type_iii");
        let facts = &j.injector.as_ref().unwrap().facts;
        assert!(
            facts.contains(&"IP ID 0x9920 in 0x9916–0x9933".to_owned()),
            "{facts:?}"
        );
        assert!(facts.contains(&"IP TTL 248".to_owned()));
    }

    #[test]
    fn henan_rst_ack_with_its_payload() {
        let payload = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
        // The server's answer still arrives: Henan resets the client side only.
        let mut late = reply(40_000, (52, 0x1001, true), "PSH+ACK", &[0x16; 50]);
        late.at_us += 1;
        let c = connection(vec![
            reply(8_000, (58, 1, false), "RST+ACK", &payload),
            late,
        ]);
        let j = judge(&c);
        assert!(j.injected);
        assert_eq!(injector(&j), "henan");
        let facts = &j.injector.as_ref().unwrap().facts;
        assert!(
            facts.contains(&"payload 01 02 03 04 05 06 07 08 09 00 (10 bytes)".to_owned()),
            "{facts:?}"
        );
        let signs = &j.suspects[0].signs;
        assert!(
            signs
                .iter()
                .any(|s| matches!(s, InjectionSign::PayloadOnRst { bytes: 10, .. }))
        );
        assert!(
            signs
                .iter()
                .any(|s| matches!(s, InjectionSign::ServerSpokeAfter { .. }))
        );
    }

    #[test]
    fn fin_ack_injection_is_an_unknown_injector() {
        let c = connection(vec![reply(12_000, (40, 0x4444, false), "FIN+ACK", &[])]);
        let j = judge(&c);
        assert!(j.injected);
        let m = j.injector.as_ref().unwrap();
        assert_eq!(m.name, UNKNOWN_INJECTOR);
        assert!(m.facts.contains(&"1 × FIN+ACK".to_owned()), "{:?}", m.facts);
        assert!(m.facts.contains(&"IP TTL 40".to_owned()));
    }

    #[test]
    fn a_genuine_server_rst_is_not_injected() {
        // TTL within jitter of the SYN-ACK's, DF like the server's, after a full RTT.
        let c = connection(vec![reply(25_000, (51, 0, true), "RST+ACK", &[])]);
        let j = judge(&c);
        assert!(!j.injected, "{}", j.describe());
        assert_eq!(j.injector, None);
        assert_eq!(j.suspects.len(), 1);
        assert!(j.suspects[0].signs.is_empty(), "{:?}", j.suspects[0].signs);
        assert!(
            j.describe().contains("no injected packet"),
            "{}",
            j.describe()
        );
        // A genuine close: FIN from the server after its answer, pure ACKs after it.
        let c = connection(vec![
            reply(25_000, (52, 0x1001, true), "PSH+ACK", &[0x16; 200]),
            tcp(
                45_300,
                PacketDirection::ToClient,
                (52, 0x1002, true),
                "FIN+ACK",
                (SERVER_ISN + 201, CLIENT_ISN + 101),
                &[],
            ),
            tcp(
                45_400,
                PacketDirection::ToClient,
                (52, 0x1003, true),
                "ACK",
                (SERVER_ISN + 202, CLIENT_ISN + 102),
                &[],
            ),
        ]);
        assert!(!judge(&c).injected);
    }

    #[test]
    fn a_single_support_is_not_enough() {
        // Early arrival alone (the server's stack may be on the path's near side).
        let c = connection(vec![reply(5_000, (52, 0, true), "RST+ACK", &[])]);
        let j = judge(&c);
        assert!(!j.injected);
        assert!(matches!(
            j.suspects[0].signs[..],
            [InjectionSign::ArrivedBeforeServerCould { .. }]
        ));
        // Early and IP ID 0 without DF (a DF unlike the SYN-ACK's too): injected.
        let c = connection(vec![reply(5_000, (52, 0, false), "RST+ACK", &[])]);
        let j = judge(&c);
        assert!(j.injected);
        assert_eq!(injector(&j), UNKNOWN_INJECTOR);
    }

    #[test]
    fn a_reset_connect_is_injected_when_the_server_answers_after_it() {
        use PacketDirection::*;
        let c = ConnectionPackets {
            flow: flow(),
            trigger: None,
            packets: vec![
                tcp(0, ToServer, (64, 7, true), "SYN", (CLIENT_ISN, 0), &[]),
                tcp(
                    3_000,
                    ToClient,
                    (40, 0, false),
                    "RST+ACK",
                    (0, CLIENT_ISN + 1),
                    &[],
                ),
                tcp(
                    20_000,
                    ToClient,
                    (52, 0, true),
                    "SYN+ACK",
                    (SERVER_ISN, CLIENT_ISN + 1),
                    &[],
                ),
            ],
            dropped: 0,
        };
        let j = judge(&c);
        assert!(j.injected, "{}", j.describe());
        assert!(
            j.suspects[0]
                .signs
                .iter()
                .any(|s| matches!(s, InjectionSign::ServerSpokeAfter { .. }))
        );
        // A refused connect alone says nothing: a closed port answers with a RST.
        let refused = ConnectionPackets {
            packets: c.packets[..2].to_vec(),
            ..c.clone()
        };
        let plain = judge(&ConnectionPackets {
            packets: vec![
                refused.packets[0].clone(),
                tcp(
                    3_000,
                    ToClient,
                    (52, 0, true),
                    "RST+ACK",
                    (0, CLIENT_ISN + 1),
                    &[],
                ),
            ],
            ..refused.clone()
        });
        assert!(!plain.injected);
        // With the control's SYN-ACK as the reference baseline, the TTL tells.
        let reference = connection(Vec::new());
        let j =
            judge_connection_with_reference(&refused, Some(&reference), &InjectorSet::builtin());
        assert!(j.injected);
        assert_eq!(
            j.baseline.as_ref().unwrap().source,
            BaselineSource::Reference
        );
    }

    #[test]
    fn stored_observations_judge_the_same_after_a_json_round_trip() {
        let c = connection(vec![
            reply(15_000, (45, 0x3a2b, true), "RST+ACK", &[]),
            reply(15_200, (45, 0x3a2b, true), "RST+ACK", &[]),
            reply(15_400, (45, 0x3a2b, true), "RST+ACK", &[]),
            reply(16_000, (60, 0, false), "RST", &[]),
        ]);
        let stored = serde_json::to_string(
            &crate::observation::packets::CaptureObservation::Captured(c.clone()),
        )
        .unwrap();
        let crate::observation::packets::CaptureObservation::Captured(back) =
            serde_json::from_str(&stored).unwrap()
        else {
            panic!("captured");
        };
        assert_eq!(back, c);
        let (a, b) = (judge(&c), judge(&back));
        assert_eq!(a, b);
        assert_eq!(a.bursts.len(), 2);
        assert_eq!(injector(&a), "gfw_type_ii");
        assert_eq!(a.bursts[1].injector.as_ref().unwrap().name, "gfw_type_i");
        // The judgement itself round-trips too.
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<PacketJudgement>(&text).unwrap(), a);
    }

    #[test]
    fn icmp_errors_are_reported_not_judged() {
        let mut icmp = reply(9_000, (250, 77, false), "RST", &[]);
        icmp.body = PacketBody::Icmp(IcmpFacts {
            from: "198.18.5.1".parse().unwrap(),
            kind: crate::observation::packets::IcmpKind::TimeExceeded,
            quoted_ttl: Some(1),
            quoted_seq: Some(CLIENT_ISN + 1),
        });
        let j = judge(&connection(vec![icmp]));
        assert!(!j.injected);
        assert_eq!(j.suspects.len(), 1);
        assert!(j.suspects[0].icmp.is_some());
        assert!(j.bursts.is_empty());
    }

    mod hostile {
        use super::*;
        use crate::observation::packets::IcmpKind;
        use proptest::prelude::*;

        fn packet() -> impl Strategy<Value = PacketFacts> {
            let ip = (any::<u8>(), any::<Option<u16>>(), any::<Option<bool>>())
                .prop_map(|(ttl, ip_id, df)| IpFacts { ttl, ip_id, df });
            let tcp = (
                any::<u8>(),
                any::<u32>(),
                any::<u32>(),
                any::<u16>(),
                any::<u32>(),
                "[0-9a-fA-F]{0,21}|.{0,5}",
            )
                .prop_map(|(flags, seq, ack, window, payload_len, payload_hex)| {
                    PacketBody::Tcp(TcpFacts {
                        flags: TcpFlagSet(flags),
                        seq,
                        ack,
                        window,
                        options: TcpOptionFacts::default(),
                        payload_len,
                        payload_hex,
                    })
                });
            let icmp = (any::<u8>(), any::<Option<u8>>(), any::<Option<u32>>()).prop_map(
                |(code, quoted_ttl, quoted_seq)| {
                    PacketBody::Icmp(IcmpFacts {
                        from: "198.18.9.9".parse().unwrap(),
                        kind: IcmpKind::Unreachable { code },
                        quoted_ttl,
                        quoted_seq,
                    })
                },
            );
            // Small times often, so that bursts and RTT comparisons happen.
            let at = prop_oneof![0u64..50_000, any::<u64>()];
            (at, any::<bool>(), ip, prop_oneof![4 => tcp, 1 => icmp]).prop_map(
                |(at_us, to_server, ip, body)| PacketFacts {
                    at_us,
                    direction: if to_server {
                        PacketDirection::ToServer
                    } else {
                        PacketDirection::ToClient
                    },
                    ip,
                    body,
                    sent_ttl: None,
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]
            #[test]
            fn judge_connection_never_panics_and_stays_consistent(
                packets in proptest::collection::vec(packet(), 0..24),
                trigger in any::<Option<u8>>(),
                with_reference in any::<bool>(),
            ) {
                let c = ConnectionPackets {
                    flow: flow(),
                    trigger: trigger.map(usize::from),
                    packets,
                    dropped: 0,
                };
                let reference = connection(Vec::new());
                let j = judge_connection_with_reference(
                    &c,
                    with_reference.then_some(&reference),
                    InjectorSet::builtin_shared(),
                );
                let _ = j.describe();
                prop_assert_eq!(j.injected, j.bursts.iter().any(|b| b.injected));
                prop_assert_eq!(j.injected, j.injector.is_some());
                for s in &j.suspects {
                    prop_assert!(s.index < c.packets.len());
                    prop_assert!(s.burst.is_none_or(|b| b < j.bursts.len()));
                }
                for b in &j.bursts {
                    prop_assert_eq!(b.count as usize, b.suspects.len());
                }
            }
        }
    }
}
