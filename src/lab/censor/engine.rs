//! The censor's decisions, independent of sockets: given one frame the kernel steered to
//! the censor (a DNS query or a TCP segment from the vantage point, or a TCP segment on
//! its way back), say which frames to write and where. Forged packets are emitted before
//! the genuine packet is forwarded, so they always win the race, as the GFW's do from its
//! position near the client. A dropped flow is dropped both ways.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use pnet::packet::Packet;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::tcp::{TcpFlags, TcpPacket};
use rand::Rng;
use rand::seq::IndexedRandom;

use super::packet::{self, Emit, Fingerprint, Link, Segment};
use super::rules::RuleIndex;
use crate::lab::plan;
use crate::lab::scenario::{
    CensorDefaults, Direction, DnsAction, DnsRule, FlowAction, IdPattern, Injection, IpIdMode,
    KeywordProtocol, KeywordRule, ResidualAction, Scenario, TtlPattern,
};
use crate::sniff::{Sniffed, sniff};

/// How much of a client's first bytes the censor buffers to find a Host or SNI.
const MAX_INSPECT: usize = 16 * 1024;
/// Flows idle this long are forgotten.
const FLOW_IDLE: Duration = Duration::from_secs(120);
/// Sequence offsets of successive injected resets: GFW's RST+ACK bursts step by 1460 and
/// 4380 bytes, so a burst still hits the window if the first reset arrives late.
const BURST_OFFSETS: [u32; 16] = [
    0, 1460, 4380, 10220, 21900, 45260, 91980, 185_420, 372_300, 746_060, 1_493_580, 2_988_620,
    5_978_700, 11_958_860, 23_919_180, 47_839_820,
];

/// Something the censor did, for its log and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    DnsForged {
        qname: String,
        action: DnsAction,
    },
    DnsDropped {
        qname: String,
    },
    Keyword {
        protocol: &'static str,
        name: String,
        action: FlowAction,
        client: (Ipv4Addr, u16),
        server: (Ipv4Addr, u16),
    },
    ResidualHit {
        client: Ipv4Addr,
        server: (Ipv4Addr, u16),
        action: ResidualAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowVerdict {
    Undecided,
    Pass,
    Dropped,
}

#[derive(Debug)]
struct Flow {
    verdict: FlowVerdict,
    first_bytes: Vec<u8>,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Penalty {
    action: ResidualAction,
    until: Instant,
    fingerprint: Fingerprint,
}

/// The censor's rules and state.
pub struct Engine {
    defaults: CensorDefaults,
    pools: HashMap<String, Vec<IpAddr>>,
    dns_rules: RuleIndex<DnsRule>,
    http_rules: RuleIndex<KeywordRule>,
    tls_rules: RuleIndex<KeywordRule>,
    flows: HashMap<FlowKey, Flow>,
    residual: HashMap<(Ipv4Addr, Ipv4Addr, u16), Penalty>,
    last_sweep: Instant,
    events: Vec<Event>,
}

impl Engine {
    pub fn new(scenario: &Scenario) -> Engine {
        Engine {
            defaults: scenario.censor,
            pools: scenario
                .pools
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dns_rules: RuleIndex::new(scenario.dns_rules.clone()),
            http_rules: RuleIndex::new(scenario.http_rules.clone()),
            tls_rules: RuleIndex::new(scenario.tls_rules.clone()),
            flows: HashMap::new(),
            residual: HashMap::new(),
            last_sweep: Instant::now(),
            events: Vec::new(),
        }
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn fingerprint(&self, ttl: Option<u8>, id: Option<IpIdMode>) -> Fingerprint {
        let ip_id = match id.unwrap_or(self.defaults.ip_id) {
            IpIdMode::Fixed(id) => id,
            IpIdMode::Random => rand::rng().random(),
        };
        Fingerprint::new(ttl.unwrap_or(self.defaults.ip_ttl), ip_id)
    }

    /// Decide what to do with one frame read from the inspection link.
    pub fn handle(&mut self, frame: &[u8], now: Instant) -> Vec<Emit> {
        if now.duration_since(self.last_sweep) > Duration::from_secs(10) {
            self.sweep(now);
        }
        let Some(ip) = packet::ipv4_of(frame) else {
            return Vec::new();
        };
        if packet::is_expiring(frame) {
            return self.expiring(&ip, now);
        }
        self.decide(&ip, now)
    }

    /// A packet from the vantage point whose TTL ends at the censor: inspected like any
    /// other (the injection a TTL-limited trigger draws is how a censor is located), but
    /// nothing of it goes on; its sender gets an ICMP time-exceeded from the censor's
    /// address, as from a router.
    fn expiring(&mut self, ip: &Ipv4Packet<'_>, now: Instant) -> Vec<Emit> {
        let mut out: Vec<Emit> = self
            .decide(ip, now)
            .into_iter()
            .filter(|emit| !emit.forwarded)
            .collect();
        out.push(Emit::forged(
            Link::Client,
            packet::time_exceeded(plan::CENSOR_VANTAGE_SIDE_IP, ip),
        ));
        out
    }

    fn decide(&mut self, ip: &Ipv4Packet<'_>, now: Instant) -> Vec<Emit> {
        let ip = ip.to_immutable();
        if let Some(datagram) = packet::udp_of(&ip)
            && datagram.get_destination() == 53
        {
            return self.dns(&ip, datagram.get_source(), datagram.payload());
        }
        let from_server = plan::is_internet_address(ip.get_source());
        if let Some(segment) = packet::tcp_of(&ip) {
            return if from_server {
                self.tcp_from_server(&ip, &segment, now)
            } else {
                self.tcp(&ip, &segment, now)
            };
        }
        let link = if from_server {
            Link::Client
        } else {
            Link::Server
        };
        vec![Emit::forward(&ip, link)]
    }

    /// A segment from a server to the vantage point: delivered, unless its flow is being
    /// dropped (an in-path drop swallows both directions, the server's FIN too).
    fn tcp_from_server(
        &mut self,
        ip: &Ipv4Packet<'_>,
        segment: &TcpPacket<'_>,
        now: Instant,
    ) -> Vec<Emit> {
        let key = FlowKey {
            client: (ip.get_destination(), segment.get_destination()),
            server: (ip.get_source(), segment.get_source()),
        };
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.last_seen = now;
            if flow.verdict == FlowVerdict::Dropped {
                return Vec::new();
            }
        }
        vec![Emit::forward(ip, Link::Client)]
    }

    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        self.flows
            .retain(|_, f| now.duration_since(f.last_seen) < FLOW_IDLE);
        self.residual.retain(|_, p| p.until > now);
    }

    fn dns(&mut self, ip: &Ipv4Packet<'_>, client_port: u16, payload: &[u8]) -> Vec<Emit> {
        let forward = Emit::forward(ip, Link::Server);
        let Ok(query) = Message::from_vec(payload) else {
            return vec![forward];
        };
        let Some(question) = query.queries.first() else {
            return vec![forward];
        };
        if query.metadata.message_type != MessageType::Query {
            return vec![forward];
        }
        let qname = question.name().to_ascii();
        let Some(rule) = self.dns_rules.first_match(&qname).cloned() else {
            return vec![forward];
        };
        let client = (ip.get_source(), client_port);
        let resolver = (ip.get_destination(), 53);
        if rule.action == DnsAction::Drop {
            self.events.push(Event::DnsDropped { qname });
            return Vec::new();
        }
        let mut forged = Message::response(query.metadata.id, query.metadata.op_code);
        forged.metadata.recursion_desired = query.metadata.recursion_desired;
        forged.metadata.recursion_available = true;
        forged.add_query(question.clone());
        if rule.action == DnsAction::Nxdomain {
            forged.metadata.response_code = ResponseCode::NXDomain;
        } else if let Some(answer) = self.forged_answer(&rule, question) {
            forged.add_answer(answer);
        }
        let Ok(bytes) = forged.to_vec() else {
            return vec![forward];
        };
        let fingerprint = self.fingerprint(rule.ip_ttl, rule.ip_id);
        let mut out = vec![Emit::forged(
            Link::Client,
            packet::udp_frame(Link::Client, resolver, client, &bytes, fingerprint),
        )];
        if rule.action != DnsAction::CensorOnly {
            out.push(forward);
        }
        self.events.push(Event::DnsForged {
            qname,
            action: rule.action,
        });
        out
    }

    /// One forged record of the query's type from the rule's pool (none when the pool
    /// holds no address of that family).
    fn forged_answer(&self, rule: &DnsRule, question: &hickory_proto::op::Query) -> Option<Record> {
        let pool = self.pools.get(rule.pool.as_deref()?)?;
        let want_v4 = match question.query_type() {
            RecordType::A => true,
            RecordType::AAAA => false,
            _ => return None,
        };
        let candidates: Vec<&IpAddr> = pool.iter().filter(|ip| ip.is_ipv4() == want_v4).collect();
        let ip = **candidates.choose(&mut rand::rng())?;
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Some(Record::from_rdata(
            question.name().clone(),
            self.defaults.answer_ttl,
            rdata,
        ))
    }

    fn tcp(&mut self, ip: &Ipv4Packet<'_>, segment: &TcpPacket<'_>, now: Instant) -> Vec<Emit> {
        let key = FlowKey {
            client: (ip.get_source(), segment.get_source()),
            server: (ip.get_destination(), segment.get_destination()),
        };
        let flags = segment.get_flags();
        let forward = || Emit::forward(ip, Link::Server);
        if flags & TcpFlags::SYN != 0 && flags & TcpFlags::ACK == 0 {
            self.flows.remove(&key);
            if let Some(out) = self.residual_on_syn(&key, segment, now) {
                return out;
            }
        }
        let flow = self.flows.entry(key).or_insert_with(|| Flow {
            verdict: FlowVerdict::Undecided,
            first_bytes: Vec::new(),
            last_seen: now,
        });
        flow.last_seen = now;
        match flow.verdict {
            FlowVerdict::Dropped => return Vec::new(),
            FlowVerdict::Pass => return vec![forward()],
            FlowVerdict::Undecided => {}
        }
        let payload = segment.payload();
        if payload.is_empty() {
            return vec![forward()];
        }
        if flow.first_bytes.len() < MAX_INSPECT {
            flow.first_bytes.extend_from_slice(payload);
        }
        let (protocol, name) = match sniff(&flow.first_bytes) {
            Sniffed::Incomplete if flow.first_bytes.len() < MAX_INSPECT => {
                return vec![forward()];
            }
            Sniffed::Incomplete | Sniffed::Nothing => {
                flow.verdict = FlowVerdict::Pass;
                flow.first_bytes = Vec::new();
                return vec![forward()];
            }
            Sniffed::HttpHost(host) => ("http", host),
            Sniffed::TlsSni(sni) => ("tls", sni),
        };
        flow.first_bytes = Vec::new();
        let rules = if protocol == "http" {
            &self.http_rules
        } else {
            &self.tls_rules
        };
        let Some(rule) = rules.first_match(&name).cloned() else {
            flow.verdict = FlowVerdict::Pass;
            return vec![forward()];
        };
        self.inject(ip, &key, &rule, (protocol, name), segment, now)
    }

    /// A SYN on a (client, server IP, server port) still under a residual penalty: the
    /// censor answers it instead of the server (`Some`), or the penalty has expired.
    fn residual_on_syn(
        &mut self,
        key: &FlowKey,
        segment: &TcpPacket<'_>,
        now: Instant,
    ) -> Option<Vec<Emit>> {
        let penalty_key = (key.client.0, key.server.0, key.server.1);
        if let Some(penalty) = self.residual.get(&penalty_key).copied() {
            if penalty.until > now {
                self.events.push(Event::ResidualHit {
                    client: key.client.0,
                    server: key.server,
                    action: penalty.action,
                });
                return Some(match penalty.action {
                    ResidualAction::Drop => Vec::new(),
                    ResidualAction::Reset => {
                        let reset = Segment {
                            source: key.server,
                            destination: key.client,
                            seq: 0,
                            ack: segment.get_sequence().wrapping_add(1),
                            flags: TcpFlags::RST | TcpFlags::ACK,
                            window: 0,
                            payload: &[],
                        };
                        vec![Emit::forged(
                            Link::Client,
                            packet::tcp_frame(Link::Client, &reset, penalty.fingerprint),
                        )]
                    }
                });
            }
            self.residual.remove(&penalty_key);
        }
        None
    }

    /// A keyword rule matched the flow's first bytes: record the event, arm the residual
    /// penalty and emit the rule's resets (the request itself still reaches the server).
    fn inject(
        &mut self,
        ip: &Ipv4Packet<'_>,
        key: &FlowKey,
        rule: &KeywordRule,
        (protocol, name): (&'static str, String),
        segment: &TcpPacket<'_>,
        now: Instant,
    ) -> Vec<Emit> {
        let payload = segment.payload();
        let forward = || Emit::forward(ip, Link::Server);
        let keyword_protocol = if protocol == "http" {
            KeywordProtocol::Http
        } else {
            KeywordProtocol::Tls
        };
        let injection = rule.injection(keyword_protocol, &self.defaults);
        let mut burst = Burst::new(&injection);
        self.events.push(Event::Keyword {
            protocol,
            name,
            action: injection.action,
            client: key.client,
            server: key.server,
        });
        if let Some(residual) = injection.residual {
            self.residual.insert(
                (key.client.0, key.server.0, key.server.1),
                Penalty {
                    action: residual.action,
                    until: now + Duration::from_secs(u64::from(residual.secs)),
                    fingerprint: burst.next(),
                },
            );
        }
        let flow = self.flows.get_mut(key).expect("flow inserted above");
        if injection.action == FlowAction::Drop {
            flow.verdict = FlowVerdict::Dropped;
            return Vec::new();
        }
        if let (FlowAction::Page, Some(page)) = (injection.action, &injection.page) {
            flow.verdict = FlowVerdict::Dropped;
            return forged_page(key, segment, page, burst.next());
        }
        flow.verdict = FlowVerdict::Pass;
        let reset_flags = if injection.action == FlowAction::RstAck {
            TcpFlags::RST | TcpFlags::ACK
        } else {
            TcpFlags::RST
        };
        let client_next = segment.get_sequence().wrapping_add(payload.len() as u32);
        let server_next = segment.get_acknowledgement();
        let offsets = |identical: bool| {
            BURST_OFFSETS
                .iter()
                .take(usize::from(injection.count))
                .map(move |offset| if identical { 0 } else { *offset })
        };
        let mut out = Vec::new();
        for offset in offsets(injection.identical) {
            let reset = Segment {
                source: key.server,
                destination: key.client,
                seq: server_next.wrapping_add(offset),
                ack: client_next,
                flags: reset_flags,
                window: 0,
                payload: &injection.payload,
            };
            out.push(Emit::forged(
                Link::Client,
                packet::tcp_frame(Link::Client, &reset, burst.next()),
            ));
        }
        // On-path: the request itself still reaches the server.
        out.push(forward());
        if injection.direction == Direction::Both {
            let mut burst = Burst::new(&injection);
            for offset in offsets(injection.identical) {
                let reset = Segment {
                    source: key.client,
                    destination: key.server,
                    seq: client_next.wrapping_add(offset),
                    ack: server_next,
                    flags: reset_flags,
                    window: 0,
                    payload: &injection.payload,
                };
                out.push(Emit::forged(
                    Link::Server,
                    packet::tcp_frame(Link::Server, &reset, burst.next()),
                ));
            }
        }
        out
    }
}

/// A `page` rule's answer to the request in `segment`: the page in the server's name,
/// with a FIN (the client reads a complete response), and a reset that frees the server,
/// which never saw the request. Nothing of the flow is forwarded from then on.
fn forged_page(
    key: &FlowKey,
    segment: &TcpPacket<'_>,
    page: &[u8],
    fingerprint: Fingerprint,
) -> Vec<Emit> {
    let client_next = segment
        .get_sequence()
        .wrapping_add(segment.payload().len() as u32);
    let server_next = segment.get_acknowledgement();
    let answer = Segment {
        source: key.server,
        destination: key.client,
        seq: server_next,
        ack: client_next,
        flags: TcpFlags::PSH | TcpFlags::ACK | TcpFlags::FIN,
        window: 502,
        payload: page,
    };
    let reset = Segment {
        source: key.client,
        destination: key.server,
        seq: segment.get_sequence(),
        ack: 0,
        flags: TcpFlags::RST,
        window: 0,
        payload: &[],
    };
    vec![
        Emit::forged(
            Link::Client,
            packet::tcp_frame(Link::Client, &answer, fingerprint),
        ),
        Emit::forged(
            Link::Server,
            packet::tcp_frame(Link::Server, &reset, fingerprint),
        ),
    ]
}

/// The fingerprints of one burst of forged packets: what is drawn once per burst (a
/// varying TTL, GFW type II's IP ID) is the same on each.
struct Burst {
    ttl: u8,
    ip_id: IdPattern,
    shared_ip_id: u16,
    dont_fragment: bool,
}

impl Burst {
    fn new(injection: &Injection) -> Burst {
        let mut rng = rand::rng();
        let ttl = match injection.ttl {
            TtlPattern::Fixed(ttl) => ttl,
            TtlPattern::Range(low, high) => loop {
                let ttl = rng.random_range(low..=high);
                // Never the servers' own TTL: the forgery must be telling.
                if ttl.abs_diff(plan::SERVER_TTL_SEEN) > 1 || low == high {
                    break ttl;
                }
            },
        };
        Burst {
            ttl,
            ip_id: injection.ip_id,
            shared_ip_id: rng.random(),
            dont_fragment: injection.dont_fragment,
        }
    }

    fn next(&mut self) -> Fingerprint {
        let ip_id = match self.ip_id {
            IdPattern::Fixed(id) => id,
            IdPattern::Random => rand::rng().random(),
            IdPattern::RandomPerBurst => self.shared_ip_id,
            IdPattern::Range(low, high) => rand::rng().random_range(low..=high),
        };
        Fingerprint {
            ttl: self.ttl,
            ip_id,
            dont_fragment: self.dont_fragment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use pnet::packet::ethernet::EthernetPacket;
    use std::path::Path;

    const SCENARIO: &str = r#"
[censor]
ip_ttl = 99
ip_id = 4242

[pools]
bogon = ["10.10.34.34"]

[[dns_rules]]
pattern = "inject.example"
action = "inject"
pool = "bogon"

[[dns_rules]]
pattern = "drop.example"
action = "drop"

[[dns_rules]]
pattern = "only.example"
action = "censor_only"
pool = "bogon"

[[http_rules]]
pattern = "rst.example"
match = "subdomain"
action = "rst_ack"
count = 3
direction = "both"
residual = { action = "reset", secs = 90 }

[[tls_rules]]
pattern = "sni.example"
match = "suffix"
action = "drop"
"#;

    fn engine() -> Engine {
        Engine::new(&Scenario::parse(SCENARIO, Path::new("t.toml")).unwrap())
    }

    const CLIENT: (Ipv4Addr, u16) = (plan::VANTAGE_IP, 40000);
    const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(198, 19, 1, 1), 80);
    const FP: Fingerprint = Fingerprint::new(63, 1);

    fn dns_query(name: &str) -> Vec<u8> {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        packet::udp_frame(
            Link::Server,
            CLIENT,
            (plan::RESOLVER_IP, 53),
            &q.to_vec().unwrap(),
            FP,
        )
    }

    fn segment(flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut frame = packet::tcp_frame(
            Link::Server,
            &Segment {
                source: CLIENT,
                destination: SERVER,
                seq,
                ack: 5000,
                flags,
                window: 500,
                payload,
            },
            FP,
        );
        // As read from the inspection link: addressed to its peer.
        frame[..6].copy_from_slice(&plan::INSPECT_PEER_MAC);
        frame
    }

    fn dns_reply(emit: &Emit) -> Message {
        let ip = packet::ipv4_of(&emit.frame).unwrap();
        let udp = packet::udp_of(&ip).unwrap();
        Message::from_vec(udp.payload()).unwrap()
    }

    #[test]
    fn dns_injection_sends_the_forgery_first_then_the_query() {
        let mut engine = engine();
        let out = engine.handle(&dns_query("inject.example."), Instant::now());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].link, Link::Client);
        let forged = dns_reply(&out[0]);
        assert_eq!(
            forged.answers[0].data,
            RData::A(A(Ipv4Addr::new(10, 10, 34, 34)))
        );
        let ip = packet::ipv4_of(&out[0].frame).unwrap();
        assert_eq!(ip.get_source(), plan::RESOLVER_IP, "spoofs the resolver");
        assert_eq!(
            (ip.get_ttl(), ip.get_identification()),
            (99 + plan::CENSOR_HOP - 1, 4242),
            "the vantage point sees TTL 99 after the routers"
        );
        assert_eq!(out[1].link, Link::Server);
    }

    #[test]
    fn in_path_dns_rules_drop_or_answer_alone() {
        let mut engine = engine();
        assert!(
            engine
                .handle(&dns_query("drop.example."), Instant::now())
                .is_empty()
        );
        let out = engine.handle(&dns_query("only.example."), Instant::now());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].link, Link::Client);
        let out = engine.handle(&dns_query("benign.example."), Instant::now());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].link, Link::Server);
    }

    #[test]
    fn matching_host_draws_a_reset_burst_both_ways_then_residual_resets() {
        let mut engine = engine();
        let now = Instant::now();
        assert_eq!(
            engine.handle(&segment(TcpFlags::SYN, 100, b""), now).len(),
            1
        );
        let request = b"GET / HTTP/1.1\r\nHost: www.rst.example:80\r\n\r\n";
        let out = engine.handle(&segment(TcpFlags::ACK | TcpFlags::PSH, 101, request), now);
        let links: Vec<Link> = out.iter().map(|e| e.link).collect();
        assert_eq!(
            links,
            [
                Link::Client,
                Link::Client,
                Link::Client,
                Link::Server,
                Link::Server,
                Link::Server,
                Link::Server
            ]
        );
        let ip = packet::ipv4_of(&out[1].frame).unwrap();
        let rst = packet::tcp_of(&ip).unwrap();
        assert_eq!(rst.get_flags(), TcpFlags::RST | TcpFlags::ACK);
        assert_eq!(rst.get_sequence(), 5000 + 1460);
        assert_eq!(rst.get_acknowledgement(), 101 + request.len() as u32);
        let to_server = packet::ipv4_of(&out[4].frame).unwrap();
        let to_server = packet::tcp_of(&to_server).unwrap();
        assert_eq!(to_server.get_sequence(), 101 + request.len() as u32);

        // A new connection to the same server and port is reset by the residual rule.
        let out = engine.handle(
            &segment(TcpFlags::SYN, 900, b""),
            now + Duration::from_secs(5),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].link, Link::Client);
        assert_eq!(
            EthernetPacket::new(&out[0].frame)
                .unwrap()
                .get_destination()
                .octets(),
            plan::CENSOR_CLIENT_PEER_MAC
        );
        // ... until the penalty expires.
        let out = engine.handle(
            &segment(TcpFlags::SYN, 901, b""),
            now + Duration::from_secs(91),
        );
        assert_eq!(out[0].link, Link::Server);
    }

    #[test]
    fn benign_and_unknown_payloads_pass() {
        let mut censor = engine();
        let now = Instant::now();
        let request = b"GET / HTTP/1.1\r\nHost: fine.example\r\n\r\n";
        let out = censor.handle(&segment(TcpFlags::ACK, 1, request), now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].link, Link::Server);
        let mut partial = engine();
        let out = partial.handle(&segment(TcpFlags::ACK, 1, b"GET / HTTP/1.1\r\nHo"), now);
        assert_eq!(out.len(), 1, "partial requests are forwarded while waiting");
        let out = partial.handle(
            &segment(TcpFlags::ACK, 19, b"st: a.rst.example\r\n\r\n"),
            now,
        );
        assert!(
            out.len() > 1,
            "the name completed in the second segment matches"
        );
    }

    #[test]
    fn matching_sni_drops_the_flow_from_then_on() {
        let mut censor = engine();
        let now = Instant::now();
        let hello = client_hello("www.sni.example");
        assert!(
            censor
                .handle(&segment(TcpFlags::ACK, 1, &hello), now)
                .is_empty()
        );
        assert!(
            censor
                .handle(&segment(TcpFlags::ACK, 1, &hello), now)
                .is_empty()
        );
        let mut other = engine();
        assert_eq!(
            other
                .handle(&segment(TcpFlags::ACK, 1, &client_hello("ok.example")), now)
                .len(),
            1
        );
    }

    #[test]
    fn a_dropped_flow_is_dropped_both_ways_others_reach_the_client() {
        let mut censor = engine();
        let now = Instant::now();
        let from_server = |flags| {
            packet::tcp_frame(
                Link::Server,
                &Segment {
                    source: SERVER,
                    destination: CLIENT,
                    seq: 5000,
                    ack: 1,
                    flags,
                    window: 500,
                    payload: &[],
                },
                FP,
            )
        };
        // Before anything is known about the flow, the server's segments pass.
        let out = censor.handle(&from_server(TcpFlags::SYN | TcpFlags::ACK), now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].link, Link::Client);
        let hello = client_hello("www.sni.example");
        assert!(
            censor
                .handle(&segment(TcpFlags::ACK, 1, &hello), now)
                .is_empty()
        );
        // The server gives up on the silent client: its FIN never arrives.
        assert!(
            censor
                .handle(&from_server(TcpFlags::FIN | TcpFlags::ACK), now)
                .is_empty()
        );
    }

    /// A real `ClientHello` from rustls.
    fn client_hello(sni: &str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            std::sync::Arc::new(config),
            rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    const PROFILES: &str = r#"
[[http_rules]]
pattern = "type1.example"
injector = "gfw_type_i"

[[http_rules]]
pattern = "type3.example"
injector = "gfw_type_iii"

[[http_rules]]
pattern = "henan.example"
injector = "henan"

[[http_rules]]
pattern = "override.example"
injector = "gfw_type_iii"
ip_ttl = 200
count = 2
residual = { action = "drop", secs = 7 }

[[tls_rules]]
pattern = "type2.example"
injector = "gfw_type_ii"
"#;

    /// One forged packet as the vantage point sees it.
    #[derive(Debug, PartialEq, Eq)]
    struct Forged {
        ttl_seen: u8,
        ip_id: u16,
        dont_fragment: bool,
        flags: u8,
        seq: u32,
        payload: Vec<u8>,
    }

    fn forged(emit: &Emit) -> Forged {
        assert!(!emit.forwarded);
        let ip = packet::ipv4_of(&emit.frame).unwrap();
        assert_eq!(pnet::packet::ipv4::checksum(&ip), ip.get_checksum());
        let tcp = packet::tcp_of(&ip).unwrap();
        assert_eq!(
            pnet::packet::tcp::ipv4_checksum(&tcp, &ip.get_source(), &ip.get_destination()),
            tcp.get_checksum(),
            "the TCP checksum covers the payload"
        );
        assert_eq!(ip.get_fragment_offset(), 0);
        Forged {
            ttl_seen: ip.get_ttl() - emit.link.routers_beyond(),
            ip_id: ip.get_identification(),
            dont_fragment: ip.get_flags() & pnet::packet::ipv4::Ipv4Flags::DontFragment != 0,
            flags: tcp.get_flags(),
            seq: tcp.get_sequence(),
            payload: tcp.payload().to_vec(),
        }
    }

    /// The censor's answer to a trigger for `name` (HTTP Host, or SNI when `tls`) on a
    /// fresh flow from `port`, split into forged packets toward the client, toward the
    /// server, and whether the trigger itself was passed on.
    fn trigger(
        engine: &mut Engine,
        name: &str,
        tls: bool,
        now: Instant,
    ) -> (Vec<Forged>, Vec<Forged>, bool) {
        assert_eq!(
            engine.handle(&segment(TcpFlags::SYN, 100, b""), now).len(),
            1
        );
        let payload = if tls {
            client_hello(name)
        } else {
            format!("GET / HTTP/1.1\r\nHost: {name}\r\n\r\n").into_bytes()
        };
        let out = engine.handle(&segment(TcpFlags::ACK | TcpFlags::PSH, 101, &payload), now);
        split(&out)
    }

    fn split(out: &[Emit]) -> (Vec<Forged>, Vec<Forged>, bool) {
        let to = |link| {
            out.iter()
                .filter(|e| !e.forwarded && e.link == link)
                .map(forged)
                .collect::<Vec<_>>()
        };
        (
            to(Link::Client),
            to(Link::Server),
            out.iter().any(|e| e.forwarded),
        )
    }

    fn profiles() -> Engine {
        Engine::new(&Scenario::parse(PROFILES, Path::new("p.toml")).unwrap())
    }

    /// Whether a new connection to the same server and port, `after` the trigger, is
    /// still answered by the censor (residual blocking) rather than passed on.
    fn residual_blocks(engine: &mut Engine, now: Instant, after: u64) -> bool {
        let out = engine.handle(
            &segment(TcpFlags::SYN, 7000, b""),
            now + Duration::from_secs(after),
        );
        !out.iter().any(|e| e.forwarded)
    }

    #[test]
    fn gfw_type_i_sends_one_bare_rst_with_ip_id_0_and_blocks_residually() {
        let now = Instant::now();
        for _ in 0..20 {
            let mut engine = profiles();
            let (client, server, passed) = trigger(&mut engine, "type1.example", false, now);
            assert!(server.is_empty() && passed);
            assert_eq!(client.len(), 1);
            let rst = &client[0];
            assert_eq!(rst.flags, TcpFlags::RST, "no ACK");
            assert_eq!((rst.ip_id, rst.dont_fragment), (0, false));
            assert!((55..=118).contains(&rst.ttl_seen), "{rst:?}");
            assert!(rst.ttl_seen.abs_diff(plan::SERVER_TTL_SEEN) > 1, "{rst:?}");
            assert!(rst.payload.is_empty());
            assert!(residual_blocks(&mut engine, now, 89), "HTTP residual: 90 s");
            assert!(!residual_blocks(&mut engine, now, 91));
        }
    }

    #[test]
    fn gfw_type_ii_sends_three_identical_rst_acks_with_df_and_one_random_id() {
        let now = Instant::now();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..10 {
            let mut engine = profiles();
            let (client, server, passed) = trigger(&mut engine, "type2.example", true, now);
            assert!(server.is_empty() && passed);
            assert_eq!(client.len(), 3);
            assert!(
                client.iter().all(|f| *f == client[0]),
                "identical: {client:?}"
            );
            let rst = &client[0];
            assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
            assert!(rst.dont_fragment);
            assert!((39..=238).contains(&rst.ttl_seen), "{rst:?}");
            assert!(rst.payload.is_empty());
            ids.insert(rst.ip_id);
            assert!(
                residual_blocks(&mut engine, now, 179),
                "SNI residual: 180 s"
            );
            assert!(!residual_blocks(&mut engine, now, 181));
        }
        assert!(ids.len() > 1, "the IP ID varies between bursts: {ids:?}");
    }

    #[test]
    fn gfw_type_iii_sends_one_rst_ack_ttl_248_ip_id_in_its_range() {
        let now = Instant::now();
        for _ in 0..20 {
            let mut engine = profiles();
            let (client, server, _) = trigger(&mut engine, "type3.example", false, now);
            assert!(server.is_empty());
            assert_eq!(client.len(), 1);
            let rst = &client[0];
            assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
            assert_eq!((rst.ttl_seen, rst.dont_fragment), (248, false));
            assert!((0x9916..=0x9933).contains(&rst.ip_id), "{rst:?}");
            assert!(residual_blocks(&mut engine, now, 60));
        }
    }

    #[test]
    fn henan_sends_one_rst_ack_with_its_payload_to_the_client_only_and_no_residual() {
        let now = Instant::now();
        let mut engine = profiles();
        let (client, server, passed) = trigger(&mut engine, "henan.example", false, now);
        assert!(passed);
        assert!(server.is_empty(), "client side only");
        assert_eq!(
            client,
            [Forged {
                ttl_seen: 58,
                ip_id: 1,
                dont_fragment: false,
                flags: TcpFlags::RST | TcpFlags::ACK,
                seq: 5000,
                payload: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
            }]
        );
        assert!(
            !residual_blocks(&mut engine, now, 1),
            "no residual blocking"
        );
    }

    #[test]
    fn explicit_fields_override_the_profile() {
        let now = Instant::now();
        let mut engine = profiles();
        let (client, _, _) = trigger(&mut engine, "override.example", false, now);
        assert_eq!(client.len(), 2);
        assert!(client.iter().all(|f| f.ttl_seen == 200), "{client:?}");
        assert_ne!(client[0].seq, client[1].seq, "not an identical burst");
        let out = engine.handle(
            &segment(TcpFlags::SYN, 7000, b""),
            now + Duration::from_secs(5),
        );
        assert!(out.is_empty(), "the rule's own residual: drop for 7 s");
        assert!(!residual_blocks(&mut engine, now, 8));
    }

    /// A `page` rule answers the request itself, in the server's name and with a TTL
    /// like the server's; the request never reaches the server (which is reset), and the
    /// flow is dropped both ways from then on.
    #[test]
    fn a_page_rule_answers_with_its_page_and_keeps_the_request_from_the_server() {
        let scenario = Scenario::parse(
            r#"
[[http_rules]]
pattern = "diff.example"
action = "page"
page = { body = "<html><head><title>Notice</title></head><body>not here</body></html>" }
"#,
            Path::new("p.toml"),
        )
        .unwrap();
        let mut engine = Engine::new(&scenario);
        let now = Instant::now();
        assert_eq!(
            engine.handle(&segment(TcpFlags::SYN, 100, b""), now).len(),
            1
        );
        let request = b"GET / HTTP/1.1\r\nHost: diff.example\r\n\r\n";
        let out = engine.handle(&segment(TcpFlags::ACK | TcpFlags::PSH, 101, request), now);
        assert!(out.iter().all(|e| !e.forwarded), "the request stops here");
        assert_eq!(
            out.iter().map(|e| e.link).collect::<Vec<_>>(),
            [Link::Client, Link::Server]
        );
        let page = forged(&out[0]);
        assert_eq!(
            page.ttl_seen,
            plan::SERVER_TTL_SEEN,
            "passes for the server's"
        );
        assert_eq!(page.flags, TcpFlags::PSH | TcpFlags::ACK | TcpFlags::FIN);
        assert_eq!(page.seq, 5000, "the server's next sequence number");
        let text = String::from_utf8(page.payload).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            !text.contains("Content-Length"),
            "ended by the close: {text}"
        );
        assert!(text.ends_with("<title>Notice</title></head><body>not here</body></html>"));
        let ip = packet::ipv4_of(&out[0].frame).unwrap();
        let tcp = packet::tcp_of(&ip).unwrap();
        assert_eq!(tcp.get_acknowledgement(), 101 + request.len() as u32);
        let reset = forged(&out[1]);
        assert_eq!(
            (reset.flags, reset.seq),
            (TcpFlags::RST, 101),
            "frees the server"
        );
        // The client's acknowledgement and the server's segments go nowhere.
        assert!(
            engine
                .handle(
                    &segment(TcpFlags::ACK, 101 + request.len() as u32, b""),
                    now
                )
                .is_empty()
        );
        assert_eq!(engine.take_events().len(), 1);
    }

    #[test]
    fn page_rules_need_a_page_and_http() {
        let err = Scenario::parse(
            "[[http_rules]]\npattern = \"a.example\"\naction = \"page\"\n\n\
             [[tls_rules]]\npattern = \"b.example\"\naction = \"page\"\npage = { body = \"x\" }\n\n\
             [[http_rules]]\npattern = \"c.example\"\naction = \"rst\"\npage = { body = \"x\" }\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"a.example\": action page needs a page"),
            "{err}"
        );
        assert!(err.contains("for HTTP rules only"), "{err}");
        assert!(
            err.contains("\"c.example\": a page is only for action page"),
            "{err}"
        );
    }

    fn expiring(frame: Vec<u8>) -> Vec<u8> {
        let mut frame = frame;
        frame[..6].copy_from_slice(&plan::INSPECT_EXPIRING_MAC);
        frame
    }

    #[test]
    fn a_trigger_expiring_at_the_censor_draws_the_injection_and_a_time_exceeded() {
        let now = Instant::now();
        let mut engine = profiles();
        assert_eq!(
            engine.handle(&segment(TcpFlags::SYN, 100, b""), now).len(),
            1
        );
        let request = b"GET / HTTP/1.1\r\nHost: type3.example\r\n\r\n";
        let out = engine.handle(
            &expiring(segment(TcpFlags::ACK | TcpFlags::PSH, 101, request)),
            now,
        );
        assert!(
            out.iter().all(|e| !e.forwarded),
            "nothing goes past the censor"
        );
        assert!(out.iter().all(|e| e.link == Link::Client));
        assert_eq!(out.len(), 2, "{out:?}");
        let reset = forged(&out[0]);
        assert_eq!(reset.ttl_seen, 248);
        let ip = packet::ipv4_of(&out[1].frame).unwrap();
        assert_eq!(ip.get_source(), plan::CENSOR_VANTAGE_SIDE_IP);
        assert_eq!(ip.get_destination(), plan::VANTAGE_IP);
        assert_eq!(ip.payload()[0], 11, "ICMP time exceeded");

        // A benign packet expiring here only draws the time-exceeded.
        let mut engine = profiles();
        let out = engine.handle(&expiring(segment(TcpFlags::SYN, 1, b"")), now);
        assert_eq!(out.len(), 1);
        assert!(!out[0].forwarded);
        let ip = packet::ipv4_of(&out[0].frame).unwrap();
        assert_eq!(ip.get_source(), plan::CENSOR_VANTAGE_SIDE_IP);
    }

    #[test]
    fn profiles_need_no_action_but_refuse_drop() {
        let err = Scenario::parse(
            "[[http_rules]]\npattern = \"a.example\"\ninjector = \"henan\"\naction = \"drop\"\n\n[[tls_rules]]\npattern = \"b.example\"\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("contradicts"), "{err}");
        assert!(err.contains("give an action or an injector"), "{err}");
    }

    #[test]
    fn sniffs_the_sni_of_a_rustls_client_hello() {
        match sniff(&client_hello("www.sni.example")) {
            Sniffed::TlsSni(name) => assert_eq!(name, "www.sni.example"),
            _ => panic!("no SNI found"),
        }
        let hello = client_hello("www.sni.example");
        assert!(matches!(sniff(&hello[..40]), Sniffed::Incomplete));
    }
}
