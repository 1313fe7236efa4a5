//! Offline analysis of capture files (`censorprobe pcap FILE…`): pcap and pcapng read
//! with `pcap-parser`, frames parsed by [`crate::packet::parse_frame`], TCP flows rebuilt
//! with [`ConnectionBuilder`] (the client is the side that sent the SYN; ICMP errors join
//! the flow they quote), the trigger named by [`crate::sniff`], each flow judged by
//! [`judge_connection`], and the TTL-limited trace that CenTrace captures allow (the same
//! trigger sent with IP TTL 0, 1, 2, … on successive connections to one server).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use pcap_parser::{Block, PcapBlockOwned, PcapError};

use crate::classify::injectors::InjectorSet;
use crate::classify::packets::judge_connection;
use crate::observation::packets::{
    ConnectionPackets, FlowKey, IcmpKind, PacketBody, PacketDirection, PacketFacts, TcpFlagSet,
};
use crate::packet::{ConnectionBuilder, LinkType, ParsedPacket, Transport, parse_frame};
use crate::record::pcap::{
    CaptureFormat, CensorPlacement, FlowJudgement, FlowOutcome, HopSource, PcapCaptureRecord,
    PcapFlow, PcapTrigger, ResponseGroup, ResponseKind, TriggerProtocol, TtlHop, TtlTrace,
};
use crate::sniff::{Sniffed, sniff};

/// Why a capture file could not be analysed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcapAnalysisError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: not a pcap or pcapng file")]
    NotACapture { file: String },
    #[error("{file}: malformed capture: {detail}")]
    Malformed { file: String, detail: String },
}

/// What the analysis keeps beyond the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct PcapOptions {
    /// Put every packet of every flow in the record (for re-judging).
    pub keep_packets: bool,
}

/// Client payload kept per flow to name the trigger (a `ClientHello` fits easily).
const MAX_TRIGGER_BYTES: usize = 16 * 1024;
/// The largest block the reader grows its buffer to (snap lengths are at most 256 KiB).
const MAX_READ_BUFFER: usize = 4 * 1024 * 1024;
/// A server packet whose IP TTL is this close to its SYN-ACK's comes from the server.
const SAME_SENDER_TTL_SLACK: i16 = 2;

/// Analyse one capture file.
pub fn analyse_file(
    path: &Path,
    injectors: &InjectorSet,
    options: PcapOptions,
) -> Result<PcapCaptureRecord, PcapAnalysisError> {
    let file = std::fs::File::open(path).map_err(|source| PcapAnalysisError::Open {
        path: path.display().to_string(),
        source,
    })?;
    analyse_reader(&path.display().to_string(), file, injectors, options)
}

/// Analyse a capture read from `reader`; `file` names it in the record.
pub fn analyse_reader<R: Read + Send>(
    file: &str,
    reader: R,
    injectors: &InjectorSet,
    options: PcapOptions,
) -> Result<PcapCaptureRecord, PcapAnalysisError> {
    let mut flows = FlowAssembler::default();
    let summary = read_frames(file, reader, |at_us, link, frame| {
        match link.map(|link| parse_frame(link, frame)) {
            Some(Ok(packet)) => flows.push(&packet, at_us),
            _ => flows.skipped += 1,
        }
    })?;
    let mut record = PcapCaptureRecord {
        record: "pcap_capture".to_owned(),
        file: file.to_owned(),
        format: summary.format,
        frames: summary.frames,
        skipped_frames: flows.skipped,
        unmatched_packets: flows.unmatched,
        flows: Vec::new(),
        traces: Vec::new(),
    };
    let first_us = flows.first_us.unwrap_or(0);
    for state in flows.states {
        let packets = state.builder.finish();
        record.flows.push(describe_flow(
            packets,
            state.start_us.saturating_sub(first_us),
            &state.sniffed,
            injectors,
            options,
        ));
    }
    record.traces = ttl_traces(&record.flows);
    Ok(record)
}

/// CenTrace pairs each test capture with a control capture (`control_name`, CenTrace's
/// `example.com`) to the same server: a trace whose own capture never reached the server
/// takes the server's hop distance from another capture of the same run, a test trace
/// learns the control's answer at the server, and its placement is decided again.
pub fn share_server_hops(records: &mut [PcapCaptureRecord], control_name: &str) {
    let mut hops: HashMap<IpAddr, u8> = HashMap::new();
    let mut control_answers: HashMap<IpAddr, String> = HashMap::new();
    for trace in records.iter().flat_map(|r| &r.traces) {
        if let (Some(hop), Some(HopSource::ThisCapture)) = (trace.server_hop, trace.server_hop_from)
        {
            let entry = hops.entry(trace.server.ip()).or_insert(hop);
            *entry = (*entry).min(hop);
        }
        if trace.trigger_name.as_deref() == Some(control_name)
            && let Some(answer) = &trace.server_answer
        {
            control_answers.insert(trace.server.ip(), answer.clone());
        }
    }
    for trace in records.iter_mut().flat_map(|r| &mut r.traces) {
        let mut changed = false;
        if trace.server_hop.is_none()
            && let Some(&hop) = hops.get(&trace.server.ip())
        {
            trace.server_hop = Some(hop);
            trace.server_hop_from = Some(HopSource::OtherCapture);
            changed = true;
        }
        if trace.trigger_name.as_deref() != Some(control_name)
            && let Some(answer) = control_answers.get(&trace.server.ip())
        {
            trace.control_answer = Some(answer.clone());
            changed = true;
        }
        if changed {
            decide_placement(trace);
        }
    }
}

/// What the reader saw of the file itself.
struct ReadSummary {
    format: CaptureFormat,
    frames: u64,
}

/// One pcapng interface: how its frames start and how its clock counts.
struct Interface {
    link: Option<LinkType>,
    /// Timestamp units per second.
    resolution: u64,
    offset: i64,
}

/// Calls `on_frame(at_us, link, bytes)` for every frame, in file order. `link` is `None`
/// for link types the parser does not know.
fn read_frames<R: Read + Send>(
    file: &str,
    reader: R,
    mut on_frame: impl FnMut(u64, Option<LinkType>, &[u8]),
) -> Result<ReadSummary, PcapAnalysisError> {
    let malformed = |detail: String| PcapAnalysisError::Malformed {
        file: file.to_owned(),
        detail,
    };
    let mut capacity = 1 << 16;
    let mut reader = pcap_parser::create_reader(capacity, reader).map_err(|_| {
        PcapAnalysisError::NotACapture {
            file: file.to_owned(),
        }
    })?;
    let mut format = CaptureFormat::Pcap;
    let mut legacy_link = None;
    let mut legacy_nanoseconds = false;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut frames = 0u64;
    let mut last_us = 0u64;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        legacy_link = u32::try_from(header.network.0)
                            .ok()
                            .and_then(LinkType::from_pcap);
                        legacy_nanoseconds = header.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(frame) => {
                        let fraction = if legacy_nanoseconds {
                            u64::from(frame.ts_usec) / 1000
                        } else {
                            u64::from(frame.ts_usec)
                        };
                        last_us = u64::from(frame.ts_sec) * 1_000_000 + fraction;
                        frames += 1;
                        on_frame(last_us, legacy_link, frame.data);
                    }
                    PcapBlockOwned::NG(block) => {
                        format = CaptureFormat::Pcapng;
                        match block {
                            // A new section restarts the interface numbering.
                            Block::SectionHeader(_) => interfaces.clear(),
                            Block::InterfaceDescription(interface) => {
                                interfaces.push(Interface {
                                    link: u32::try_from(interface.linktype.0)
                                        .ok()
                                        .and_then(LinkType::from_pcap),
                                    resolution: interface.ts_resolution().unwrap_or(1_000_000),
                                    offset: interface.ts_offset(),
                                });
                            }
                            Block::EnhancedPacket(packet) => {
                                let interface = interfaces.get(packet.if_id as usize);
                                if let Some(interface) = interface {
                                    last_us =
                                        pcapng_micros(packet.ts_high, packet.ts_low, interface);
                                }
                                frames += 1;
                                let data =
                                    &packet.data[..(packet.caplen as usize).min(packet.data.len())];
                                on_frame(last_us, interface.and_then(|i| i.link), data);
                            }
                            // Simple packets carry no timestamp: they take the last one.
                            Block::SimplePacket(packet) => {
                                frames += 1;
                                on_frame(
                                    last_us,
                                    interfaces.first().and_then(|i| i.link),
                                    packet.data,
                                );
                            }
                            _ => {}
                        }
                    }
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof | PcapError::UnexpectedEof) => break,
            Err(PcapError::Incomplete(_)) => {
                reader
                    .refill()
                    .map_err(|e| malformed(format!("read failed: {e:?}")))?;
            }
            Err(PcapError::BufferTooSmall) if capacity < MAX_READ_BUFFER => {
                capacity *= 4;
                if !reader.grow(capacity) {
                    return Err(malformed("a block is too large to read".to_owned()));
                }
                reader
                    .refill()
                    .map_err(|e| malformed(format!("read failed: {e:?}")))?;
            }
            Err(error) => return Err(malformed(format!("{error:?}"))),
        }
    }
    Ok(ReadSummary { format, frames })
}

/// A pcapng timestamp in microseconds since the epoch.
fn pcapng_micros(high: u32, low: u32, interface: &Interface) -> u64 {
    let ticks = (u64::from(high) << 32) | u64::from(low);
    let resolution = interface.resolution.max(1);
    let seconds = (ticks / resolution).saturating_add_signed(interface.offset);
    let fraction = u128::from(ticks % resolution) * 1_000_000 / u128::from(resolution);
    seconds
        .saturating_mul(1_000_000)
        .saturating_add(fraction as u64)
}

/// One flow being rebuilt.
struct FlowState {
    builder: ConnectionBuilder,
    start_us: u64,
    /// The client's payload so far, until the trigger's name is known.
    client_bytes: Vec<u8>,
    sniffed: Sniffed,
}

/// Routes parsed packets to their flows.
#[derive(Default)]
struct FlowAssembler {
    index: HashMap<FlowKey, usize>,
    states: Vec<FlowState>,
    first_us: Option<u64>,
    skipped: u64,
    unmatched: u64,
}

impl FlowAssembler {
    fn push(&mut self, packet: &ParsedPacket<'_>, at_us: u64) {
        self.first_us.get_or_insert(at_us);
        let key = match &packet.transport {
            Transport::Tcp { facts, .. } => {
                let Some((source, destination)) = packet.endpoints() else {
                    return;
                };
                let forward = FlowKey {
                    client: source,
                    server: destination,
                };
                let backward = FlowKey {
                    client: destination,
                    server: source,
                };
                if self.index.contains_key(&forward) {
                    forward
                } else if self.index.contains_key(&backward) {
                    backward
                } else if facts.flags.0 & (TcpFlagSet::SYN | TcpFlagSet::ACK) == TcpFlagSet::SYN {
                    self.open(forward, at_us)
                } else if facts.flags.is_syn_ack() {
                    // The capture missed the SYN: the SYN-ACK still says who the client is.
                    self.open(backward, at_us)
                } else {
                    self.unmatched += 1;
                    return;
                }
            }
            Transport::Icmp {
                quoted: Some(quoted),
                ..
            } => {
                let key = FlowKey {
                    client: quoted.source,
                    server: quoted.destination,
                };
                if !self.index.contains_key(&key) {
                    self.unmatched += 1;
                    return;
                }
                key
            }
            Transport::Icmp { quoted: None, .. } | Transport::Udp { .. } => {
                self.skipped += 1;
                return;
            }
        };
        let state = &mut self.states[self.index[&key]];
        if !state.builder.push(packet, at_us) {
            self.unmatched += 1;
            return;
        }
        if let Transport::Tcp { payload, .. } = &packet.transport
            && !payload.is_empty()
            && packet.source == key.client.ip()
            && matches!(state.sniffed, Sniffed::Incomplete)
        {
            let room = MAX_TRIGGER_BYTES.saturating_sub(state.client_bytes.len());
            state
                .client_bytes
                .extend_from_slice(&payload[..payload.len().min(room)]);
            state.sniffed = match sniff(&state.client_bytes) {
                Sniffed::Incomplete if room > payload.len() => Sniffed::Incomplete,
                Sniffed::Incomplete => Sniffed::Nothing,
                named => named,
            };
            if !matches!(state.sniffed, Sniffed::Incomplete) {
                state.client_bytes = Vec::new();
            }
        }
    }

    fn open(&mut self, key: FlowKey, at_us: u64) -> FlowKey {
        self.index.insert(key, self.states.len());
        self.states.push(FlowState {
            builder: ConnectionBuilder::new(key),
            start_us: at_us,
            client_bytes: Vec::new(),
            sniffed: Sniffed::Incomplete,
        });
        key
    }
}

/// Builds the record of one flow from its packets.
fn describe_flow(
    packets: ConnectionPackets,
    start_us: u64,
    sniffed: &Sniffed,
    injectors: &InjectorSet,
    options: PcapOptions,
) -> PcapFlow {
    let judged = judge_connection(&packets, injectors);
    let judgement = FlowJudgement {
        injected: judged.injected,
        injector: judged.injector.as_ref().map(|m| m.name.clone()),
        facts: judged
            .injector
            .as_ref()
            .map(|m| m.facts.clone())
            .unwrap_or_default(),
        summary: judged.describe(),
    };
    let syn_ack = packets.packets.iter().find(|p| {
        p.direction == PacketDirection::ToClient && p.tcp().is_some_and(|t| t.flags.is_syn_ack())
    });
    let client_isn = packets
        .packets
        .iter()
        .find(|p| {
            p.direction == PacketDirection::ToServer
                && p.tcp().is_some_and(|t| t.flags.has(TcpFlagSet::SYN))
        })
        .and_then(|p| p.tcp().map(|t| t.seq));
    let server_isn = syn_ack.and_then(|p| p.tcp().map(|t| t.seq));
    let baseline_ttl = syn_ack.map(|p| p.ip.ttl);
    let trigger = packets.trigger.map(|index| {
        let packet = &packets.packets[index];
        let (protocol, name) = match sniffed {
            Sniffed::HttpHost(host) => (TriggerProtocol::Http, Some(host.clone())),
            Sniffed::TlsSni(sni) => (TriggerProtocol::Tls, Some(sni.clone())),
            Sniffed::Incomplete | Sniffed::Nothing => (TriggerProtocol::Unknown, None),
        };
        PcapTrigger {
            protocol,
            name,
            sent_ttl: packet.ip.ttl,
            sent_ip_id: packet.ip.ip_id,
            payload_len: packet.tcp().map_or(0, |t| t.payload_len),
        }
    });
    let (outcome, responses) = match packets.trigger {
        Some(index) => {
            let trigger_at = packets.packets[index].at_us;
            let window = response_window(&packets.packets[index + 1..]);
            let responses =
                group_responses(window, trigger_at, baseline_ttl, server_isn, client_isn);
            (outcome_of(window, baseline_ttl), responses)
        }
        None => (FlowOutcome::NoTrigger, Vec::new()),
    };
    PcapFlow {
        client: packets.flow.client,
        server: packets.flow.server,
        start_us,
        syn_ack: syn_ack.map(|p| p.ip),
        trigger,
        outcome,
        responses,
        judgement,
        packets: options.keep_packets.then_some(packets),
    }
}

/// The packets after the trigger up to the client's own FIN or RST: what the trigger
/// drew (the server's answer to the client's later FIN is not about the trigger).
fn response_window(after_trigger: &[PacketFacts]) -> &[PacketFacts] {
    let end = after_trigger
        .iter()
        .position(|p| {
            p.direction == PacketDirection::ToServer
                && p.tcp()
                    .is_some_and(|t| t.flags.is_fin() || t.flags.is_rst())
        })
        .unwrap_or(after_trigger.len());
    &after_trigger[..end]
}

/// Whether a packet with this IP TTL comes from the sender of the SYN-ACK (unknown
/// without a SYN-ACK).
fn like_server(ttl: u8, baseline_ttl: Option<u8>) -> Option<bool> {
    baseline_ttl.map(|base| (i16::from(ttl) - i16::from(base)).abs() <= SAME_SENDER_TTL_SLACK)
}

/// What the trigger drew, by the first telling packet toward the client.
fn outcome_of(window: &[PacketFacts], baseline_ttl: Option<u8>) -> FlowOutcome {
    let mut icmp = None;
    for packet in window
        .iter()
        .filter(|p| p.direction == PacketDirection::ToClient)
    {
        match &packet.body {
            PacketBody::Tcp(tcp) if tcp.flags.is_rst() => return FlowOutcome::Reset,
            PacketBody::Tcp(tcp) if tcp.payload_len > 0 => {
                return if like_server(packet.ip.ttl, baseline_ttl) == Some(false) {
                    FlowOutcome::ForeignData
                } else {
                    FlowOutcome::ServerData
                };
            }
            PacketBody::Tcp(tcp) if tcp.flags.is_fin() => return FlowOutcome::Fin,
            PacketBody::Tcp(_) => {}
            PacketBody::Icmp(facts) => {
                let kind = if facts.kind == IcmpKind::TimeExceeded {
                    FlowOutcome::TimeExceeded
                } else {
                    FlowOutcome::IcmpError
                };
                icmp.get_or_insert(kind);
            }
        }
    }
    icmp.unwrap_or(FlowOutcome::Nothing)
}

/// Groups the telling packets toward the client (RST, FIN, ICMP errors, the first data
/// segment); identical consecutive packets become one group with a count.
fn group_responses(
    window: &[PacketFacts],
    trigger_at: u64,
    baseline_ttl: Option<u8>,
    server_isn: Option<u32>,
    client_isn: Option<u32>,
) -> Vec<ResponseGroup> {
    let mut groups: Vec<ResponseGroup> = Vec::new();
    let mut data_seen = false;
    for packet in window
        .iter()
        .filter(|p| p.direction == PacketDirection::ToClient)
    {
        let kind = match &packet.body {
            PacketBody::Tcp(tcp) => {
                let data = tcp.payload_len > 0 && !tcp.flags.is_rst();
                let telling = tcp.flags.is_rst() || tcp.flags.is_fin() || (data && !data_seen);
                if !telling {
                    continue;
                }
                data_seen |= data && like_server(packet.ip.ttl, baseline_ttl) != Some(false);
                ResponseKind::Tcp {
                    flags: tcp.flags,
                    window: tcp.window,
                    relative_seq: server_isn.map(|isn| tcp.seq.wrapping_sub(isn)),
                    relative_ack: client_isn.map(|isn| tcp.ack.wrapping_sub(isn)),
                    payload_len: tcp.payload_len,
                    payload_hex: tcp.payload_hex.clone(),
                }
            }
            PacketBody::Icmp(icmp) => ResponseKind::Icmp {
                from: icmp.from,
                kind: icmp.kind,
            },
        };
        let after = packet.at_us.saturating_sub(trigger_at);
        if let Some(last) = groups.last_mut()
            && last.kind == kind
            && last.ip == packet.ip
        {
            last.count += 1;
            last.spread_us = after.saturating_sub(last.after_trigger_us);
            continue;
        }
        groups.push(ResponseGroup {
            after_trigger_us: after,
            count: 1,
            spread_us: 0,
            ip: packet.ip,
            ttl_minus_syn_ack: matches!(kind, ResponseKind::Tcp { .. })
                .then_some(baseline_ttl)
                .flatten()
                .map(|ttl| i16::from(packet.ip.ttl) - i16::from(ttl)),
            kind,
        });
    }
    groups
}

impl ResponseGroup {
    /// Whether the IP TTL says the SYN-ACK's sender (the server) sent it; unknown without
    /// a SYN-ACK.
    fn like_server(&self) -> Option<bool> {
        self.ttl_minus_syn_ack
            .map(|delta| delta.abs() <= SAME_SENDER_TTL_SLACK)
    }
    /// Data from the server: its answer to the request.
    fn is_server_data(&self) -> bool {
        matches!(&self.kind, ResponseKind::Tcp { flags, payload_len, .. }
            if *payload_len > 0 && !flags.is_rst())
            && self.like_server() != Some(false)
    }
    /// A RST, a FIN, or data from another sender than the server (an injected block
    /// page): what blocks a connection.
    fn is_blocking(&self) -> bool {
        matches!(&self.kind, ResponseKind::Tcp { flags, .. } if flags.is_rst() || flags.is_fin())
            || (matches!(&self.kind, ResponseKind::Tcp { payload_len, .. } if *payload_len > 0)
                && self.like_server() == Some(false))
    }
    /// Sent by the server itself: its data, or a packet with the SYN-ACK's IP TTL.
    fn sent_by_server(&self) -> bool {
        self.is_server_data() || self.like_server() == Some(true)
    }
}

/// The TTL-limited traces of a capture: flows grouped by server and trigger name, when
/// their triggers went out with more than one IP TTL.
fn ttl_traces(flows: &[PcapFlow]) -> Vec<TtlTrace> {
    let mut groups: BTreeMap<(String, Option<String>), Vec<&PcapFlow>> = BTreeMap::new();
    for flow in flows {
        if let Some(trigger) = &flow.trigger {
            groups
                .entry((flow.server.to_string(), trigger.name.clone()))
                .or_default()
                .push(flow);
        }
    }
    let mut traces = Vec::new();
    for ((_, name), flows) in groups {
        let mut by_ttl: BTreeMap<u8, Vec<&PcapFlow>> = BTreeMap::new();
        for flow in &flows {
            if let Some(trigger) = &flow.trigger {
                by_ttl.entry(trigger.sent_ttl).or_default().push(flow);
            }
        }
        if by_ttl.len() < 2 {
            continue;
        }
        let hops: Vec<TtlHop> = by_ttl
            .iter()
            .map(|(&ttl, flows)| ttl_hop(ttl, flows))
            .collect();
        let server_hop = by_ttl
            .iter()
            .find(|(_, flows)| {
                flows
                    .iter()
                    .any(|f| f.responses.iter().any(ResponseGroup::sent_by_server))
            })
            .map(|(&ttl, _)| ttl);
        let server_answer = server_hop.and_then(|hop| {
            by_ttl[&hop]
                .iter()
                .flat_map(|f| &f.responses)
                .find(|g| g.is_server_data())
                .and_then(http_status_line)
        });
        let mut trace = TtlTrace {
            server: flows[0].server,
            server_answer,
            control_answer: None,
            routers_at_blocking: Vec::new(),
            trigger_name: name,
            protocol: flows[0].trigger.as_ref().map(|t| t.protocol),
            first_blocking_ttl: None,
            router_before_blocking: None,
            server_hop,
            server_hop_from: server_hop.map(|_| HopSource::ThisCapture),
            placement: CensorPlacement::None,
            injector: hops.iter().find_map(|h| h.injector.clone()),
            evidence: Vec::new(),
            hops,
        };
        decide_placement(&mut trace);
        traces.push(trace);
    }
    traces
}

fn ttl_hop(ttl: u8, flows: &[&PcapFlow]) -> TtlHop {
    let mut routers: Vec<IpAddr> = Vec::new();
    let mut blocking = Vec::new();
    let mut injector = None;
    for flow in flows {
        for group in &flow.responses {
            if let ResponseKind::Icmp {
                from,
                kind: IcmpKind::TimeExceeded,
            } = group.kind
                && !routers.contains(&from)
            {
                routers.push(from);
            }
        }
        // Blocking counts only before the server's data: a FIN after the page is a close.
        blocking.extend(
            flow.responses
                .iter()
                .take_while(|g| !g.is_server_data())
                .filter(|g| g.is_blocking())
                .cloned(),
        );
        if injector.is_none() {
            injector.clone_from(&flow.judgement.injector);
        }
    }
    TtlHop {
        ttl,
        flows: flows.len() as u32,
        routers,
        server_data: flows.iter().any(|f| f.outcome == FlowOutcome::ServerData),
        silent: flows.iter().all(|f| f.responses.is_empty()),
        blocking,
        injector,
    }
}

/// Decides on-path or endpoint from the blocking TTL, the server's hop and the routers.
fn decide_placement(trace: &mut TtlTrace) {
    trace.evidence.clear();
    trace.first_blocking_ttl = trace
        .hops
        .iter()
        .find(|h| !h.blocking.is_empty())
        .map(|h| h.ttl);
    trace.routers_at_blocking = trace
        .first_blocking_ttl
        .and_then(|ttl| trace.hops.iter().find(|h| h.ttl == ttl))
        .map(|h| h.routers.clone())
        .unwrap_or_default();
    trace.router_before_blocking = trace.first_blocking_ttl.and_then(|ttl| {
        trace
            .hops
            .iter()
            .rev()
            .filter(|h| h.ttl < ttl)
            .find_map(|h| h.routers.first().copied())
    });
    let routers_after_blocking = trace.first_blocking_ttl.and_then(|ttl| {
        trace
            .hops
            .iter()
            .find(|h| h.ttl > ttl && !h.routers.is_empty())
            .map(|h| h.ttl)
    });
    let Some(blocking) = trace.first_blocking_ttl else {
        if let (Some(answer), Some(control)) = (&trace.server_answer, &trace.control_answer)
            && status_code(answer) != status_code(control)
        {
            trace.placement = CensorPlacement::Endpoint;
            trace.evidence.push(format!(
                "no RST or FIN on the path; the server answers {answer:?} where the control gets {control:?}"
            ));
            return;
        }
        trace.placement = CensorPlacement::None;
        trace.evidence.push(format!(
            "no RST or FIN before data at any of {} trigger TTLs",
            trace.hops.len()
        ));
        return;
    };
    let first = &trace
        .hops
        .iter()
        .find(|h| h.ttl == blocking)
        .expect("found above")
        .blocking[0];
    trace.evidence.push(format!(
        "from TTL {blocking} the trigger draws {}",
        describe_group(first)
    ));
    if !trace.routers_at_blocking.is_empty() {
        let routers: Vec<String> = trace
            .routers_at_blocking
            .iter()
            .map(ToString::to_string)
            .collect();
        trace.evidence.push(format!(
            "at TTL {blocking} the trigger also expires at {}: the censor sits at or before that router",
            routers.join(", ")
        ));
    }
    if let Some(router) = trace.router_before_blocking {
        trace
            .evidence
            .push(format!("the last router before it is {router}"));
    }
    trace.placement = match (trace.server_hop, routers_after_blocking) {
        (Some(server), _) if blocking < server => {
            trace.evidence.push(format!(
                "the server is {server} hops away: the trigger at TTL {blocking} cannot reach it"
            ));
            CensorPlacement::OnPath
        }
        (Some(server), _) => {
            trace.evidence.push(format!(
                "the server is {server} hops away: blocking appears only where the trigger reaches it"
            ));
            CensorPlacement::Endpoint
        }
        (None, Some(ttl)) => {
            trace.evidence.push(format!(
                "a router still answers at TTL {ttl}: the trigger travelled past the censor"
            ));
            CensorPlacement::OnPath
        }
        (None, None) => {
            trace
                .evidence
                .push("the server's hop distance is unknown".to_owned());
            CensorPlacement::Inconclusive
        }
    };
}

/// The status line of an HTTP answer in a data group (the first bytes are kept).
fn http_status_line(group: &ResponseGroup) -> Option<String> {
    let ResponseKind::Tcp { payload_hex, .. } = &group.kind else {
        return None;
    };
    let bytes = hex::decode(payload_hex).ok()?;
    let line = bytes.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.starts_with("HTTP/").then(|| line.to_owned())
}

/// The status code of a status line (`HTTP/1.1 403 Forbidden` -> `403`).
fn status_code(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

/// "3 identical RST+ACK (IP TTL 128, IP ID 4242, DF) 15 µs after the trigger".
pub fn describe_group(group: &ResponseGroup) -> String {
    let what = match &group.kind {
        ResponseKind::Tcp { flags, .. } => flags.to_string(),
        ResponseKind::Icmp { from, kind } => format!("ICMP {kind:?} from {from}"),
    };
    let identical = if group.count > 1 {
        format!("{} identical ", group.count)
    } else {
        String::new()
    };
    let id = group
        .ip
        .ip_id
        .map_or(String::new(), |id| format!(", IP ID {id}"));
    let df = if group.ip.df == Some(true) {
        ", DF"
    } else {
        ""
    };
    let payload = match &group.kind {
        ResponseKind::Tcp { payload_len, .. } if *payload_len > 0 => {
            format!(" with {payload_len} payload bytes")
        }
        _ => String::new(),
    };
    format!(
        "{identical}{what}{payload} (IP TTL {}{id}{df}) {} µs after the trigger",
        group.ip.ttl, group.after_trigger_us
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 4] = [198, 18, 0, 2];
    const SERVER: [u8; 4] = [198, 18, 1, 2];
    const ROUTER: [u8; 4] = [198, 18, 5, 1];

    /// An IPv4 packet (no options, checksums zero: the parser does not check them).
    fn ipv4(
        source: [u8; 4],
        destination: [u8; 4],
        protocol: u8,
        ttl: u8,
        id: u16,
        body: &[u8],
    ) -> Vec<u8> {
        let total = (20 + body.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&0x4000u16.to_be_bytes());
        p.extend_from_slice(&[ttl, protocol, 0, 0]);
        p.extend_from_slice(&source);
        p.extend_from_slice(&destination);
        p.extend_from_slice(body);
        p
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        source: [u8; 4],
        destination: [u8; 4],
        ports: (u16, u16),
        ttl: u8,
        id: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&ports.0.to_be_bytes());
        t.extend_from_slice(&ports.1.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.push(5 << 4);
        t.push(flags);
        t.extend_from_slice(&1000u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(payload);
        ipv4(source, destination, 6, ttl, id, &t)
    }

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n";

    /// Two connections to one server: the request at TTL 1 expires at a router; at
    /// TTL 2 it draws two identical resets (the server's SYN-ACKs come with TTL 60).
    fn frames() -> Vec<(u64, Vec<u8>)> {
        let mut frames = Vec::new();
        for (ttl, port) in [(1u8, 40001u16), (2, 40002)] {
            let base = u64::from(ttl) * 10_000_000;
            let out = (port, 80);
            let back = (80, port);
            frames.push((base, tcp(CLIENT, SERVER, out, 64, 1, 100, 0, 0x02, b"")));
            frames.push((
                base + 1_000,
                tcp(SERVER, CLIENT, back, 60, 0, 500, 101, 0x12, b""),
            ));
            frames.push((
                base + 2_000,
                tcp(CLIENT, SERVER, out, 64, 2, 101, 501, 0x10, b""),
            ));
            let request = tcp(CLIENT, SERVER, out, ttl, 3, 101, 501, 0x18, REQUEST);
            frames.push((base + 3_000, request.clone()));
            if ttl == 1 {
                let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
                icmp.extend_from_slice(&request[..28]);
                frames.push((base + 4_000, ipv4(ROUTER, CLIENT, 1, 250, 7, &icmp)));
            } else {
                let reset = tcp(
                    SERVER,
                    CLIENT,
                    back,
                    200,
                    4242,
                    501,
                    101 + REQUEST.len() as u32,
                    0x14,
                    b"",
                );
                frames.push((base + 4_000, reset.clone()));
                frames.push((base + 4_100, reset));
            }
            frames.push((
                base + 9_000,
                tcp(CLIENT, SERVER, out, 64, 4, 142, 501, 0x11, b""),
            ));
        }
        frames
    }

    /// A legacy pcap, `LINKTYPE_RAW`, microsecond timestamps.
    fn legacy_pcap() -> Vec<u8> {
        let mut file = Vec::new();
        file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        file.extend_from_slice(&2u16.to_le_bytes());
        file.extend_from_slice(&4u16.to_le_bytes());
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&65535u32.to_le_bytes());
        file.extend_from_slice(&101u32.to_le_bytes());
        for (at_us, frame) in frames() {
            file.extend_from_slice(&((at_us / 1_000_000) as u32).to_le_bytes());
            file.extend_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(&frame);
        }
        file
    }

    fn pcapng_block(kind: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let length = (12 + padded) as u32;
        let mut block = Vec::new();
        block.extend_from_slice(&kind.to_le_bytes());
        block.extend_from_slice(&length.to_le_bytes());
        block.extend_from_slice(body);
        block.resize(8 + padded, 0);
        block.extend_from_slice(&length.to_le_bytes());
        block
    }

    /// The same frames as pcapng: section, one raw-IP interface (default µs clock),
    /// enhanced packet blocks.
    fn pcapng() -> Vec<u8> {
        let mut section = Vec::new();
        section.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        section.extend_from_slice(&1u16.to_le_bytes());
        section.extend_from_slice(&0u16.to_le_bytes());
        section.extend_from_slice(&(-1i64).to_le_bytes());
        let mut file = pcapng_block(0x0a0d_0d0a, &section);
        let mut interface = Vec::new();
        interface.extend_from_slice(&101u16.to_le_bytes());
        interface.extend_from_slice(&0u16.to_le_bytes());
        interface.extend_from_slice(&65535u32.to_le_bytes());
        file.extend(pcapng_block(1, &interface));
        for (at_us, frame) in frames() {
            let mut packet = Vec::new();
            packet.extend_from_slice(&0u32.to_le_bytes());
            packet.extend_from_slice(&((at_us >> 32) as u32).to_le_bytes());
            packet.extend_from_slice(&(at_us as u32).to_le_bytes());
            packet.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            packet.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            packet.extend_from_slice(&frame);
            file.extend(pcapng_block(6, &packet));
        }
        file
    }

    fn analyse(bytes: &[u8]) -> PcapCaptureRecord {
        analyse_reader(
            "synthetic",
            bytes,
            &InjectorSet::builtin(),
            PcapOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn pcap_and_pcapng_give_the_same_flows_and_trace() {
        let legacy = analyse(&legacy_pcap());
        let next = analyse(&pcapng());
        assert_eq!(legacy.format, CaptureFormat::Pcap);
        assert_eq!(next.format, CaptureFormat::Pcapng);
        assert_eq!(legacy.frames, 13);
        assert_eq!(legacy.flows, next.flows);
        assert_eq!(legacy.traces, next.traces);
        assert_eq!((legacy.skipped_frames, legacy.unmatched_packets), (0, 0));
    }

    #[test]
    fn a_ttl_limited_trigger_expires_at_a_router_then_draws_a_reset_burst() {
        let record = analyse(&legacy_pcap());
        assert_eq!(record.flows.len(), 2);
        let first = &record.flows[0];
        assert_eq!(first.client.to_string(), "198.18.0.2:40001");
        assert_eq!(first.outcome, FlowOutcome::TimeExceeded);
        let trigger = first.trigger.as_ref().unwrap();
        assert_eq!(trigger.name.as_deref(), Some("blocked.example"));
        assert_eq!(trigger.protocol, TriggerProtocol::Http);
        assert_eq!(trigger.sent_ttl, 1);
        let second = &record.flows[1];
        assert_eq!(second.outcome, FlowOutcome::Reset);
        let burst = &second.responses[0];
        assert_eq!(
            (burst.count, burst.spread_us, burst.after_trigger_us),
            (2, 100, 1_000)
        );
        assert_eq!(burst.ttl_minus_syn_ack, Some(140));
        assert!(
            matches!(burst.kind, ResponseKind::Tcp { relative_seq: Some(1), relative_ack: Some(ack), .. } if ack == 1 + REQUEST.len() as u32)
        );
        let [trace] = record.traces.as_slice() else {
            panic!("one trace: {:?}", record.traces);
        };
        assert_eq!(trace.hops[0].routers, [IpAddr::from(ROUTER)]);
        assert_eq!(trace.first_blocking_ttl, Some(2));
        assert_eq!(trace.router_before_blocking, Some(IpAddr::from(ROUTER)));
        // The server never answered: placement needs its distance.
        assert_eq!(trace.server_hop, None);
        assert_eq!(trace.placement, CensorPlacement::Inconclusive);
    }

    #[test]
    fn a_control_capture_lends_the_server_distance() {
        let mut test = analyse(&legacy_pcap());
        let mut control = test.clone();
        let trace = &mut control.traces[0];
        trace.trigger_name = Some("example.com".to_owned());
        trace.server_hop = Some(3);
        trace.server_hop_from = Some(HopSource::ThisCapture);
        test.file = "test".to_owned();
        let mut records = [test, control];
        share_server_hops(&mut records, "example.com");
        let trace = &records[0].traces[0];
        assert_eq!(trace.server_hop, Some(3));
        assert_eq!(trace.server_hop_from, Some(HopSource::OtherCapture));
        assert_eq!(trace.placement, CensorPlacement::OnPath);
    }

    #[test]
    fn truncated_and_foreign_files() {
        let whole = legacy_pcap();
        let cut = analyse(&whole[..whole.len() - 10]);
        assert_eq!(
            cut.frames, 12,
            "the cut last frame is dropped, the rest kept"
        );
        assert!(matches!(
            analyse_reader(
                "x",
                &b"hello world, no capture here"[..],
                &InjectorSet::builtin(),
                PcapOptions::default()
            ),
            Err(PcapAnalysisError::NotACapture { .. })
        ));
    }
}
