//! The assessments a target record carries: each verdict with the evidence it rests on.
//! Produced only by [`crate::classify`]; part of the record contract.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

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
    /// Several replies to one attempt of a query disagree.
    DisagreeingReplies,
    /// Replies to different attempts of one query disagree while the replies to each
    /// attempt agree: the answer changed between the sends (a load-balanced resolver, a
    /// short-lived CDN answer). No injection signature by itself: an injector answers the
    /// attempt it sees, beside the genuine reply to that same attempt.
    AnswerChangedBetweenAttempts,
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
    /// With a web control: the resolver's addresses share some with the web control's
    /// own lookups (an answer for the helper's region, not a forgery).
    WebControlCommonAddress,
    /// With a web control: the resolver's addresses lie in the same /24 (IPv4) or /48
    /// (IPv6) as some of the web control's.
    WebControlSamePrefix,
    /// With a web control: the resolver's addresses belong to the same AS as some of
    /// the web control's (`--asn-db`).
    WebControlSameAs,
    /// With a web control: its TLS handshake to the resolver's address, with the name
    /// as SNI, gave a chain valid for the name.
    WebControlTlsProof,
    /// With a web control: its answers do not vouch for the resolver's addresses
    /// either (no common address, prefix, AS or valid certificate).
    WebControlDisagrees,
}

/// One fact a verdict rests on, with the observed values behind it.
///
/// The facts of an `ok` judgement are built structured: `detail` stays empty and the
/// sentence is produced from the kind and the fields ([`Evidence::describe`]) only when
/// something shows it (a full report line, the OONI export), so judging a clean name
/// formats no text. The full form on the wire always carries the sentence (`detail`);
/// the lean form of an `ok` record carries the structured fields instead
/// ([`crate::record::TargetRecord::lean_view`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    /// Query type the fact is about, when it is about one.
    #[serde(default)]
    pub qtype: Option<String>,
    /// Human-readable statement of the fact, with the values; empty for a structured
    /// fact, whose statement [`Evidence::describe`] produces.
    #[serde(default)]
    pub detail: String,
    /// Addresses the fact is about (forged answers, control addresses...).
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// When the fact was observed, in milliseconds after the query was sent: the
    /// control's lookup time (`control_resolved`), the resolver's first reply
    /// (`common_address`). Written in the lean form only (the full form's `detail`
    /// states it).
    #[serde(default)]
    pub ms: Option<f64>,
}

impl Evidence {
    pub fn new(kind: EvidenceKind, qtype: Option<&str>, detail: impl Into<String>) -> Self {
        Evidence {
            kind,
            qtype: qtype.map(str::to_owned),
            detail: detail.into(),
            ips: Vec::new(),
            ms: None,
        }
    }

    /// A fact stated by its kind and fields alone (no sentence is formatted).
    pub fn structured(kind: EvidenceKind, qtype: Option<&str>) -> Self {
        Evidence::new(kind, qtype, String::new())
    }

    #[must_use]
    pub fn with_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.ips = ips.into_iter().collect();
        self
    }

    #[must_use]
    pub fn with_ms(mut self, ms: f64) -> Self {
        self.ms = Some(ms);
        self
    }

    /// Whether the fact is stated by its fields alone (no `detail` sentence stored).
    pub fn is_structured(&self) -> bool {
        self.detail.is_empty()
    }

    /// The human sentence: `detail` when stored, else produced from the kind and the
    /// fields (the same words the classifier wrote before facts were structured).
    pub fn describe(&self) -> Cow<'_, str> {
        if !self.detail.is_empty() {
            return Cow::Borrowed(&self.detail);
        }
        Cow::Owned(match self.kind {
            EvidenceKind::ControlResolved => match self.ms {
                Some(ms) => format!(
                    "the control resolved the name to {} in {ms:.1} ms",
                    join_ips(&self.ips)
                ),
                None => format!("the control resolved the name to {}", join_ips(&self.ips)),
            },
            EvidenceKind::CommonAddress => format!(
                "the resolver's addresses share {} with the control's",
                join_ips(&self.ips)
            ),
            EvidenceKind::NoControl => {
                "no control configured: answers were not compared with an uncensored path"
                    .to_owned()
            }
            EvidenceKind::ControlNoData => "the control found no data of this type".to_owned(),
            EvidenceKind::ResolverNoData | EvidenceKind::ResolverNxdomain => {
                let label = if self.kind == EvidenceKind::ResolverNoData {
                    "no data"
                } else {
                    "NXDOMAIN"
                };
                match self.ms {
                    Some(ms) => format!("the resolver answered {label} after {ms:.1} ms"),
                    None => format!("the resolver answered {label}"),
                }
            }
            EvidenceKind::ControlNxdomain => "the control says the name does not exist".to_owned(),
            EvidenceKind::BogonRangeInUse => format!(
                "{} lie(s) in a bogon range the resolver's answer for the benign name uses \
                 too: this network's normal address space, not a forgery",
                join_ips(&self.ips)
            ),
            // A kind without a sentence of its own: its name and addresses.
            other => {
                let name = serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                    .unwrap_or_default();
                if self.ips.is_empty() {
                    name
                } else {
                    format!("{name}: {}", join_ips(&self.ips))
                }
            }
        })
    }

    /// The lean form: the kind and the structured fields, the sentence only when the
    /// fact has no structured form. `ips` is left out of a structured fact when it
    /// equals `genuine_ips` (the common case of an `ok` name): reading restores it
    /// ([`Evidence::restore_lean_ips`]).
    pub fn lean<'a>(&'a self, genuine_ips: &'a [IpAddr]) -> LeanEvidence<'a> {
        LeanEvidence {
            evidence: self,
            genuine_ips,
        }
    }

    /// A structured fact whose lean form may leave `ips` out when it equals the
    /// section's `genuine_ips`.
    fn may_imply_ips(&self) -> bool {
        self.is_structured()
            && matches!(
                self.kind,
                EvidenceKind::CommonAddress | EvidenceKind::ControlResolved
            )
    }

    /// Reading a lean record: a structured fact whose `ips` was left out had the
    /// section's `genuine_ips`. (The lean form never leaves an empty `ips` of such a
    /// fact implied: it writes the sentence instead.)
    pub fn restore_lean_ips(&mut self, genuine_ips: &[IpAddr]) {
        if self.ips.is_empty() && self.may_imply_ips() {
            self.ips = genuine_ips.to_vec();
        }
    }
}

/// Addresses as the evidence sentences list them.
pub fn join_ips(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "nothing".to_owned();
    }
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The full form: `kind`, `qtype`, `detail` (produced when not stored), `ips`.
impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Evidence", 4)?;
        out.serialize_field("kind", &self.kind)?;
        if let Some(qtype) = &self.qtype {
            out.serialize_field("qtype", qtype)?;
        }
        out.serialize_field("detail", &self.describe())?;
        if !self.ips.is_empty() {
            out.serialize_field("ips", &self.ips)?;
        }
        out.end()
    }
}

/// The lean form of one evidence item (see [`Evidence::lean`]): `kind`, `qtype`,
/// `detail` only when stored, `ips` unless implied, `ms` (to 0.1 ms).
#[derive(Debug, Clone, Copy)]
pub struct LeanEvidence<'a> {
    evidence: &'a Evidence,
    genuine_ips: &'a [IpAddr],
}

impl Serialize for LeanEvidence<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let evidence = self.evidence;
        let mut out = serializer.serialize_struct("Evidence", 5)?;
        out.serialize_field("kind", &evidence.kind)?;
        if let Some(qtype) = &evidence.qtype {
            out.serialize_field("qtype", qtype)?;
        }
        let implied = evidence.may_imply_ips();
        // An answer without addresses is stated by its kind and `ms` (the full form's
        // sentence describes the reply, which the lean form leaves out).
        let stated_by_fields = evidence.ms.is_some()
            && matches!(
                evidence.kind,
                EvidenceKind::ResolverNoData | EvidenceKind::ResolverNxdomain
            );
        if !evidence.detail.is_empty() && !stated_by_fields {
            out.serialize_field("detail", &evidence.detail)?;
        } else if implied && evidence.ips.is_empty() {
            // Read back, no `ips` would mean `genuine_ips`: state the fact instead.
            out.serialize_field("detail", &evidence.describe())?;
        }
        let ips_implied = implied && evidence.ips == self.genuine_ips;
        if !evidence.ips.is_empty() && !ips_implied {
            out.serialize_field("ips", &evidence.ips)?;
        }
        if let Some(ms) = evidence.ms {
            out.serialize_field("ms", &round_tenth(ms))?;
        }
        out.end()
    }
}

/// Milliseconds to 0.1 ms, as the lean form writes them.
pub fn round_tenth(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
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
    /// The injected packets match an injector fingerprint (or none: `unknown_injector`).
    InjectorMatched,
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
    /// The web control (`scan --web-control`) connected to this address and port from
    /// its uncensored vantage.
    WebControlConnected,
    /// The web control's connect to this address and port failed too (the same way:
    /// the server is down; another way: undecided).
    WebControlConnectFailed,
    /// The web control would not contact this address (a bogon, outside its
    /// allow-list): it says nothing about it.
    WebControlRefusedAddress,
    /// The web control has no observation of this address and port.
    WebControlNotTested,
    /// The web control's response from this address is no basis for comparing pages:
    /// none arrived complete, or its status is not 2xx and differs from ours.
    WebControlNotComparable,
    /// Our page and the web control's are alike by OONI's `web_connectivity` rules.
    WebControlPageMatches,
    /// Our page differs from the web control's by OONI's `web_connectivity` rules.
    WebControlPageDiffers,
}

/// Which injector the injected packets match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectorMatch {
    /// The fingerprint's name from the injector file (`gfw_type_ii`, `henan`), or
    /// `unknown_injector` when injected packets match no fingerprint.
    pub name: String,
    /// The facts that matched, with their values ("3 identical RST+ACK within 0.30 ms",
    /// "IP DF set").
    pub facts: Vec<String>,
}

impl InjectorMatch {
    /// The name given to injected packets no fingerprint matches.
    pub const UNKNOWN: &'static str = "unknown_injector";

    pub fn is_unknown(&self) -> bool {
        self.name == Self::UNKNOWN
    }
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
    /// The injector of the test connection's injected packets (packet capture), when
    /// the capture proved injection: a fingerprint's name or `unknown_injector`, with
    /// the matching facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<InjectorMatch>,
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
    /// The headline address's injector (see [`IpResult::injector`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<InjectorMatch>,
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
