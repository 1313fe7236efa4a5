//! What the probes saw, without judgement. Only [`crate::classify`] turns these into verdicts.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Which server a DNS query was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsServerRole {
    /// The resolver under test.
    Resolver,
    /// An address that runs no DNS service: any reply from it is injected.
    Sink,
}

/// Header flags of a DNS reply, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsFlags {
    pub qr: bool,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub ad: bool,
    pub cd: bool,
}

/// One resource record of a reply's answer section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

impl DnsRecord {
    /// The address this record carries, for A and AAAA records.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.rtype.as_str() {
            "A" | "AAAA" => self.data.parse().ok(),
            _ => None,
        }
    }
}

/// One reply received on the probe's socket for a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsReply {
    /// Source address of the reply packet (an injector spoofs the resolver's).
    pub from: SocketAddr,
    /// Milliseconds since the first send of this query.
    pub elapsed_ms: f64,
    /// Which attempt (1-based) was outstanding when this reply arrived.
    pub attempt: u32,
    /// IP TTL (IPv4) or hop limit (IPv6) of the packet, from `IP_RECVTTL`.
    pub ip_ttl: Option<u8>,
    /// Size of the DNS message in bytes.
    pub size: usize,
    pub id: u16,
    pub flags: DnsFlags,
    /// Response code, in the mnemonic form (`NoError`, `NXDomain`, `ServFail`, ...).
    pub rcode: String,
    /// Whether the question section repeats exactly what was asked.
    pub question_matches: bool,
    pub answers: Vec<DnsRecord>,
    /// Authority-section records (an SOA here tells "no data" from an empty answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<DnsRecord>,
    /// Why the packet could not be parsed as a DNS message, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
}

impl DnsReply {
    /// A and AAAA addresses in the answer section.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.answers.iter().filter_map(DnsRecord::ip)
    }

    pub fn is_nxdomain(&self) -> bool {
        self.rcode == "NXDomain"
    }

    pub fn is_noerror(&self) -> bool {
        self.rcode == "NoError"
    }
}

/// Everything seen for one question sent to one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsQueryObservation {
    pub role: DnsServerRole,
    pub server: SocketAddr,
    pub qname: String,
    pub qtype: String,
    /// Local (source) port of the socket the query left from.
    pub source_port: u16,
    /// Query ids of every attempt, in order (a fresh random id per attempt).
    pub ids: Vec<u16>,
    /// Number of times the query was sent.
    pub attempts: u32,
    /// Every reply that matched this query (id and source port), in arrival order.
    /// Replies whose id is ours but whose source address or question differs are
    /// kept too: the classifier decides what they mean.
    pub replies: Vec<DnsReply>,
    /// How long the probe listened after the last send, in milliseconds.
    pub listened_ms: f64,
    /// A send error, if the query could not leave the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_error: Option<String>,
}

impl DnsQueryObservation {
    pub fn answered(&self) -> bool {
        !self.replies.is_empty()
    }
}

/// What the control path (encrypted DNS or an uncensored resolver) said for one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlOutcome {
    /// The name resolved; `ips` are the A/AAAA addresses, `records` every answer.
    Resolved {
        ips: Vec<IpAddr>,
        records: Vec<DnsRecord>,
    },
    /// The name exists but has no record of this type.
    NoData,
    /// The name does not exist.
    Nxdomain,
    /// The control could not answer (timeout, SERVFAIL, TLS failure...).
    Error { message: String },
}

/// The control's answer for one query type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlAnswer {
    pub qtype: String,
    #[serde(flatten)]
    pub outcome: ControlOutcome,
    pub elapsed_ms: f64,
}

/// The control resolution of one name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlObservation {
    /// `doh:URL`, `dot:IP:PORT#NAME` or `udp:IP:PORT`, as configured.
    pub control: String,
    pub answers: Vec<ControlAnswer>,
}

impl ControlObservation {
    pub fn answer(&self, qtype: &str) -> Option<&ControlAnswer> {
        self.answers.iter().find(|a| a.qtype == qtype)
    }
}
