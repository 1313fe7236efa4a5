//! What the probes saw, without judgement. Only [`crate::classify`] turns these into verdicts.

pub mod packets;
pub mod web;
pub mod web_control;

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
    /// A trusted resolver asked over UDP beside the resolver under test (the scan's
    /// `--control udp:`): done at its first valid reply, retried more than the resolver
    /// (a lost control packet must not decide a verdict).
    Control,
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

/// One resource record of a reply's answer section. Made with [`DnsRecord::new`] (or read
/// from a report), and not edited after: the address an A or AAAA record carries is
/// parsed once, there, as the classifier asks for it several times per name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "DnsRecordFields")]
pub struct DnsRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
    /// `data` parsed, for A and AAAA records (a function of `rtype` and `data`).
    #[serde(skip_serializing)]
    ip: Option<IpAddr>,
}

/// A [`DnsRecord`] as it is written in a report.
#[derive(Deserialize)]
struct DnsRecordFields {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: u32,
    data: String,
}

impl From<DnsRecordFields> for DnsRecord {
    fn from(fields: DnsRecordFields) -> Self {
        DnsRecord::new(fields.name, fields.rtype, fields.ttl, fields.data)
    }
}

impl DnsRecord {
    pub fn new(name: String, rtype: String, ttl: u32, data: String) -> Self {
        let ip = match rtype.as_str() {
            "A" | "AAAA" => data.parse().ok(),
            _ => None,
        };
        DnsRecord {
            name,
            rtype,
            ttl,
            data,
            ip,
        }
    }

    /// An A or AAAA record carrying `ip` (its type and text follow from the address).
    pub fn of_address(name: String, ttl: u32, ip: IpAddr) -> Self {
        DnsRecord {
            name,
            rtype: if ip.is_ipv4() { "A" } else { "AAAA" }.to_owned(),
            ttl,
            data: ip.to_string(),
            ip: Some(ip),
        }
    }

    /// The address this record carries, for A and AAAA records.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
}

/// One reply received on the probe's socket for a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsReply {
    /// Source address of the reply packet (an injector spoofs the resolver's).
    pub from: SocketAddr,
    /// Milliseconds since the first send of this query.
    pub elapsed_ms: f64,
    /// Which attempt (1-based) this reply answers: the one whose query id it carries. A
    /// late reply to the first attempt that arrives after the retry left answers the
    /// first. (Reports written before this distinction held the attempt outstanding
    /// when the reply arrived.)
    pub attempt: u32,
    /// IP TTL (IPv4) or hop limit (IPv6) of the packet, from `IP_RECVTTL`.
    pub ip_ttl: Option<u8>,
    /// IPv4 identification of the packet, from the packet capture (when it ran): an
    /// injector's forged reply often has a fixed or patterned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    /// IPv4 don't-fragment bit of the packet, from the packet capture (when it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<bool>,
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
    /// Records not kept (answer and authority sections are capped; the count is here).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records_omitted: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Replies to one query beyond those kept in full: counted, timed and digested, not
/// stored (a flood must not fill the report or the memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OmittedReplies {
    pub count: usize,
    /// Bytes of DNS message in them.
    pub bytes: usize,
    /// Arrival of the first and last of them, in milliseconds since the first send.
    pub first_ms: u64,
    pub last_ms: u64,
    /// How many of them are byte-identical to the first reply kept.
    pub identical_to_first: usize,
    /// SHA-256 of their payloads in arrival order (hex), to tell floods apart.
    pub sha256: String,
}

/// The TCP retry of a question whose UDP reply came truncated (TC=1), as resolvers do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsTcpExchange {
    /// Milliseconds from the connect to the end of the exchange.
    pub elapsed_ms: f64,
    /// The reply read over TCP (its `ip_ttl` is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<DnsReply>,
    /// Why there is no reply: connect, send or read error, or timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A silent question asked again with a benign query sent beside it, at the same time
/// to the same resolver: tells a name's queries being dropped from a resolver that
/// drops queries in general (rate limit, loss).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceRecheck {
    pub query: DnsQueryObservation,
    pub benign: DnsQueryObservation,
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
    /// Replies beyond those kept in `replies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted_replies: Option<OmittedReplies>,
    /// The TCP retry, when the first valid reply was truncated (TC=1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Box<DnsTcpExchange>>,
    /// When the question went unanswered: the re-checks, each with a benign query beside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rechecks: Vec<SilenceRecheck>,
}

impl DnsQueryObservation {
    pub fn answered(&self) -> bool {
        !self.replies.is_empty()
    }

    /// Replies that came from the server asked, repeat the question and are responses.
    pub fn valid_replies(&self) -> impl Iterator<Item = &DnsReply> + '_ {
        self.replies
            .iter()
            .filter(|r| r.from == self.server && r.question_matches && r.flags.qr)
    }

    /// Every reply received, kept or omitted.
    pub fn reply_count(&self) -> usize {
        self.replies.len() + self.omitted_replies.as_ref().map_or(0, |o| o.count)
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
/// One change of the send rate, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateChange {
    /// Seconds since the engine started.
    pub at_s: f64,
    pub from_qps: f64,
    pub to_qps: f64,
    /// Loss rate of the window that caused the change.
    pub loss: f64,
}

/// What the rate control did during a scan (the summary's `dns_rate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DnsRateReport {
    /// `--rate`: the most the probe would send (0: unpaced, no rate control).
    pub max_qps: f64,
    /// The rate at the end of the scan.
    pub final_qps: f64,
    /// The lowest rate the scan backed off to.
    pub lowest_qps: f64,
    /// How many times the rate was cut because the resolver dropped queries.
    pub backoffs: u32,
    /// Attempts to the resolver answered and lost (every attempt, every rate).
    pub attempts_answered: u64,
    pub attempts_lost: u64,
    /// Loss the probe took as not caused by its rate (e.g. names dropped by a censor).
    pub baseline_loss: f64,
    /// The first rate changes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<RateChange>,
    /// Rate changes not listed in `changes`.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub changes_omitted: u64,
    /// UDP queries sent, every role and attempt (retries included).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub queries_sent: u64,
    /// Of `queries_sent`, the attempts after the first of a question.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub retries: u64,
    /// Attempts to the resolver lost, over those whose outcome is known.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub loss_rate: f64,
    /// Queries sent a second, from the first send to the last.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub achieved_qps: f64,
    /// The most names (groups of questions) the engine had in flight at once.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max_names_in_flight: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
