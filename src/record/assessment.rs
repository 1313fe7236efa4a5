//! The assessments a target record carries: each verdict with the evidence it rests on.
//! Produced only by [`crate::classify`]; part of the record contract.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::observation::web::{
    AddressPlan, AttemptObservations, AttemptOutcome, HttpObservation, PathFacts, ProbeRole,
    TlsObservation,
};
use crate::vocab::{Blocking, Claim, DnsVerdict, HttpVerdict, PoisoningMethod, Stage, TlsVerdict};

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

/// The web stage's judgement of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebStageResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<AddressPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAssessment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsAssessment>,
}

/// The benign control of one attempt, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlSummary {
    /// The control Host / SNI.
    pub name: String,
    pub outcome: AttemptOutcome,
    pub passed: bool,
}

/// What kind of fact a web evidence item states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebEvidenceKind {
    /// The benign control worked on this (ip, port).
    ControlPassed,
    /// The benign control failed on this (ip, port).
    ControlFailed,
    /// A probe's TCP connect failed.
    ConnectFailed,
    /// Control and test both failed at connect: IP-level blocking or a dead host.
    BothFailedAtConnect,
    /// A connection was reset after the connect.
    ConnectionReset,
    /// No (complete) answer before the deadline after the connect.
    ConnectionTimeout,
    /// Closed by the other side without a complete answer.
    ConnectionClosed,
    /// An HTTP response arrived.
    ResponseReceived,
    /// The bytes received are no HTTP/1.x response, or crossed a parse bound.
    MalformedResponse,
    /// A local or protocol error.
    ProbeError,
    /// The response matches a block-page fingerprint.
    BlockpageMatch,
    /// The TLS handshake completed.
    HandshakeCompleted,
    CertificateValid,
    CertificateInvalid,
    /// A TLS alert arrived.
    AlertReceived,
    /// The post-test control failed: the path was blocked after the test.
    ResidualBlocking,
    /// The post-test control passed.
    NoResidualBlocking,
    /// Packet capture judged an RST on this connection injected.
    CaptureInjectedRst,
    /// Packet capture saw this connection and found no injection.
    CaptureNoInjection,
    /// The probes waited for the path (a residual penalty or another test settling).
    PathWaited,
    /// The path stayed penalised for the whole residual wait.
    PenaltyOutlived,
    /// The probes were re-run alone on the path (result not attributable before).
    Requeued,
    /// Which rule attributed the test's failure to this name (see the path guard).
    Attribution,
    /// Outcomes at the target's other addresses.
    OtherAddresses,
    /// Why the stage was skipped.
    NoTrustedAddress,
}

/// One fact a web verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebEvidence {
    pub kind: WebEvidenceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ProbeRole>,
    /// Human-readable statement of the fact, with the values.
    pub detail: String,
}

impl WebEvidence {
    pub fn new(kind: WebEvidenceKind, role: Option<ProbeRole>, detail: impl Into<String>) -> Self {
        WebEvidence {
            kind,
            role,
            detail: detail.into(),
        }
    }
}

/// The verdict for one (ip, port) and the observations behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpResult<V, O> {
    pub ip: IpAddr,
    pub port: u16,
    pub verdict: V,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    pub control: ControlSummary,
    /// The post-test control failed (`true`) or passed (`false`); absent when not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<bool>,
    pub evidence: Vec<WebEvidence>,
    pub path: PathFacts,
    pub observations: AttemptObservations<O>,
}

pub type HttpIpResult = IpResult<HttpVerdict, HttpObservation>;
pub type TlsIpResult = IpResult<TlsVerdict, TlsObservation>;

/// Timings of the reported test connection, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub connect_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<f64>,
    pub total_ms: f64,
}

/// A stage's judgement of one target: the headline verdict (from the most telling
/// address) and every address's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebAssessment<V, O> {
    pub verdict: V,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// The address the headline verdict is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The Host header / SNI tested.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<bool>,
    /// Why the stage was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub evidence: Vec<WebEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<IpResult<V, O>>,
}

pub type HttpAssessment = WebAssessment<HttpVerdict, HttpObservation>;
pub type TlsAssessment = WebAssessment<TlsVerdict, TlsObservation>;

impl HttpAssessment {
    pub fn claim(&self) -> Claim {
        self.verdict.claim(self.stage)
    }
}

impl TlsAssessment {
    pub fn claim(&self) -> Claim {
        self.verdict.claim(self.stage)
    }
}

/// The target-level summary written into each target record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetBlocking {
    pub blocking: Blocking,
    /// Whether the site is reachable from this vantage: `false` when blocked, when the
    /// name does not exist or when no web probe reached it; `null` when no web stage
    /// ran and nothing says otherwise.
    pub accessible: Option<bool>,
}
