//! Verdicts and the evidence they rest on. Produced only by [`crate::classify`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::vocab::{DnsVerdict, PoisoningMethod};

/// What kind of fact an evidence item states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// The sink (no DNS service) answered: only an injector does that.
    SinkReply,
    /// Several replies to one query disagree.
    DisagreeingReplies,
    /// A reply carries an address from the known-forged list.
    KnownForgedIp,
    /// A reply carries bogon addresses.
    BogonAnswer,
    /// The resolver says NXDOMAIN / no data.
    ResolverNxdomain,
    ResolverNoData,
    /// The resolver's addresses share none with the control's.
    NoCommonAddress,
    /// The resolver's addresses share at least one with the control's.
    CommonAddress,
    /// No address in common with the control, but a certificate valid for the name.
    TlsProof,
    /// Addresses of the answer not contacted for TLS as proof (not public, or beyond the
    /// per-name cap): the count and the reason.
    TlsProofSkipped,
    /// The resolver answered with an error rcode.
    ResolverError,
    /// The resolver did not answer any attempt.
    ResolverSilent,
    /// The resolver answers a benign query but never answered this name, which the
    /// control resolves: the name's queries are dropped on the way (DNS blocking).
    SelectiveSilence,
    /// The resolver did not answer a benign query either: it is down or unreachable, so
    /// its silence says nothing about the name.
    ResolverUnresponsive,
    /// What the control said.
    ControlResolved,
    ControlNxdomain,
    ControlNoData,
    ControlFailed,
    /// No control was configured.
    NoControl,
    /// A reply differed from the query (id, question) or came from elsewhere.
    MismatchedReply,
    /// The packet's IP TTL differs between replies to one query.
    TtlMismatch,
    /// The name is an address literal: nothing to resolve.
    AddressLiteral,
    /// The resolver dropped queries in general: a benign query sent beside a silent
    /// one went unanswered too in some re-checks (rate limit, loss), so the silence
    /// proves nothing about the name.
    ResolverDropsQueries,
    /// The name's first queries went unanswered but a re-check was answered: the
    /// queries were lost, not blocked. The verdict rests on the answer.
    AnsweredOnRecheck,
    /// The reply was truncated (TC=1) and the question was asked again over TCP.
    TruncatedReply,
    /// The TCP retry of a truncated reply failed: nothing to judge the name on.
    TcpRetryFailed,
    /// More replies to one query than attempts: duplicates (count and timing).
    DuplicateReplies,
    /// The resolver's answer for the benign name lies in the same bogon range: that
    /// range is this network's normal address space (a lab, a fake-IP proxy).
    BogonRangeInUse,
    /// The name cannot be encoded in a DNS query, so it was not queried.
    InvalidName,
}

/// One fact a verdict rests on, with the observed values behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    /// Query type the fact is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    /// Human-readable statement of the fact, with the values.
    pub detail: String,
    /// Addresses the fact is about (forged answers, control addresses...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

impl Evidence {
    pub fn new(kind: EvidenceKind, qtype: Option<&str>, detail: impl Into<String>) -> Self {
        Evidence {
            kind,
            qtype: qtype.map(str::to_owned),
            detail: detail.into(),
            ips: Vec::new(),
        }
    }

    #[must_use]
    pub fn with_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.ips = ips.into_iter().collect();
        self
    }
}

/// The DNS stage's judgement of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsAssessment {
    pub verdict: DnsVerdict,
    /// The strongest poisoning method, for `dns_poisoning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<PoisoningMethod>,
    /// Every poisoning method that applies, strongest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<PoisoningMethod>,
    /// The resolver's error rcode, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// Addresses judged forged (from the sink, disagreeing replies, the forged list, bogons).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forged_ips: Vec<IpAddr>,
    /// Addresses judged genuine (the resolver's consistent answer or the control's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genuine_ips: Vec<IpAddr>,
    pub evidence: Vec<Evidence>,
}
