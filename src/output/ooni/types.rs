//! The OONI measurement as typed, serializable structs.
//!
//! Every object of the OONI output has always been written with its keys in
//! alphabetical order (it was built as `serde_json::Value`, whose maps are sorted), so
//! **every struct here declares its fields alphabetically**; serde writes them in
//! declaration order. The snapshot test (`golden.rs`) pins the bytes.
//!
//! `Option<T>` with `skip_serializing_if` is a key that is absent when `None`; a plain
//! `Option<T>` is a key written as `null`; `Option<Option<T>>` (skipped when `None`) is
//! a key present only on some entries whose value may be `null`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::vocab::{BlockingLayer, HttpVerdict, Stage, TlsVerdict};

use super::sorted::{
    AlertView, CertificateView, EvidenceView, PathView, ValidityView, WebEvidenceView,
};
use crate::observation::DnsServerRole;
use crate::observation::web::TlsProgress;
use crate::record::assessment::ControlSummary;
use crate::vocab::{DnsVerdict, PoisoningMethod};

/// One OONI measurement (the base data format, df-000).
#[derive(Debug, Serialize)]
pub struct Measurement<'a> {
    pub annotations: Annotations<'a>,
    pub data_format_version: &'static str,
    pub extensions: Extensions,
    pub input: String,
    pub measurement_start_time: String,
    pub probe_asn: &'static str,
    pub probe_cc: &'static str,
    pub probe_ip: &'static str,
    pub probe_network_name: &'static str,
    pub report_id: &'a str,
    pub resolver_asn: &'static str,
    pub resolver_ip: &'a str,
    pub resolver_network_name: &'static str,
    pub software_name: &'static str,
    pub software_version: &'a str,
    pub test_helpers: TestHelpers<'a>,
    pub test_keys: TestKeys<'a>,
    pub test_name: &'static str,
    pub test_runtime: f64,
    pub test_start_time: &'a str,
    pub test_version: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Annotations<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_code: Option<&'a str>,
    pub engine_name: &'static str,
    pub engine_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vantage: Option<&'a str>,
}

/// Versions of the data formats used (all of them at 0).
#[derive(Debug, Default, Serialize)]
pub struct Extensions {
    pub dnst: u8,
    pub httpt: u8,
    pub netevents: u8,
    pub tcpconnect: u8,
    pub tlshandshake: u8,
}

#[derive(Debug, Serialize)]
pub struct TestHelpers<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<&'a str>,
}

/// `test_keys` in the shape of `web_connectivity` 0.4.
#[derive(Debug, Serialize)]
pub struct TestKeys<'a> {
    pub accessible: Option<bool>,
    pub agent: &'static str,
    pub blocking: WcBlocking,
    /// The page comparison with the web control (null without one: see
    /// [`ComparisonKeys`]).
    pub body_length_match: Option<bool>,
    pub body_proportion: Option<f64>,
    pub client_resolver: &'a str,
    pub control: ControlKeys,
    pub control_failure: Option<String>,
    pub dns_consistency: Option<&'static str>,
    pub dns_experiment_failure: Option<String>,
    pub headers_match: Option<bool>,
    pub http_experiment_failure: Option<String>,
    pub network_events: Vec<NetworkEvent>,
    pub queries: Vec<DnsQuery>,
    pub requests: Vec<HttpTransaction>,
    pub retries: Option<u32>,
    pub socksproxy: Option<String>,
    pub status_code_match: Option<bool>,
    pub tcp_connect: Vec<TcpConnect>,
    pub title_match: Option<bool>,
    pub tls_handshakes: Vec<TlsHandshake<'a>>,
    pub x_censorprobe: XCensorprobe<'a>,
}

/// WC's `blocking`: `false`, `dns`, `tcp_ip`, `http-diff`, `http-failure`, or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WcBlocking {
    No,
    /// A layer WC names the same way (`dns`, `tcp_ip`).
    Layer(BlockingLayer),
    /// An HTTP block page.
    HttpDiff,
    /// HTTP or TLS interference other than a block page.
    HttpFailure,
    Inconclusive,
}

impl Serialize for WcBlocking {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WcBlocking::No => serializer.serialize_bool(false),
            WcBlocking::Layer(layer) => serializer.serialize_str(layer.as_str()),
            WcBlocking::HttpDiff => serializer.serialize_str("http-diff"),
            WcBlocking::HttpFailure => serializer.serialize_str("http-failure"),
            WcBlocking::Inconclusive => serializer.serialize_none(),
        }
    }
}

/// WC's `control`, in the shape of OONI's test-helper answer: with a web control
/// (`scan --web-control`), its DNS lookup, TCP connects and HTTP GET; without one, the
/// control resolution (`dns`) only.
#[derive(Debug, Default, Serialize)]
pub struct ControlKeys {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<ControlDns>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<ControlHttpRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_connect: Option<BTreeMap<String, ControlTcpConnect>>,
}

/// The test helper's HTTP GET: `-1` for the body length and status code when it failed.
#[derive(Debug, Serialize)]
pub struct ControlHttpRequest {
    pub body_length: i64,
    pub failure: Option<String>,
    pub headers: HeaderMap,
    pub status_code: i64,
    pub title: String,
}

/// The test helper's TCP connect to one `ip:port`.
#[derive(Debug, Serialize)]
pub struct ControlTcpConnect {
    pub failure: Option<String>,
    pub status: bool,
}

/// WC's comparison of the probe's page with the test helper's (every key null when
/// there is nothing to compare).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ComparisonKeys {
    pub body_length_match: Option<bool>,
    pub body_proportion: Option<f64>,
    pub headers_match: Option<bool>,
    pub status_code_match: Option<bool>,
    pub title_match: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ControlDns {
    pub addrs: Vec<IpAddr>,
    pub failure: Option<String>,
}

/// One `queries` entry (df-002-dnst): one reply, or an unanswered query.
#[derive(Debug, Clone, Serialize)]
pub struct DnsQuery {
    pub answers: Vec<DnsAnswer>,
    pub engine: &'static str,
    pub failure: Option<&'static str>,
    pub hostname: String,
    pub query_type: String,
    /// Replies only; null for an rcode without a number here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<Option<u8>>,
    pub resolver_address: String,
    pub resolver_hostname: Option<String>,
    pub resolver_port: Option<String>,
    pub t: f64,
    pub t0: f64,
    pub transaction_id: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_dns_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_ip_ttl: Option<Option<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_question_matches: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_reply_from: Option<String>,
    pub x_role: DnsServerRole,
}

/// One answer of a `queries` entry.
#[derive(Debug, Clone, Serialize)]
pub struct DnsAnswer {
    pub answer_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    pub ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_data: Option<String>,
}

/// One `network_events` entry (df-008).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_bytes: Option<u64>,
    pub operation: &'static str,
    pub proto: &'static str,
    pub t: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t0: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<&'static [&'static str]>,
    pub transaction_id: usize,
}

/// One `tcp_connect` entry (df-005).
#[derive(Debug, Clone, Serialize)]
pub struct TcpConnect {
    pub ip: IpAddr,
    pub port: u16,
    pub status: TcpConnectStatus,
    pub t: f64,
    pub t0: f64,
    pub tags: &'static [&'static str],
    pub transaction_id: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpConnectStatus {
    pub blocked: bool,
    pub failure: Option<String>,
    pub success: bool,
}

/// One `requests` entry (df-001).
#[derive(Debug, Clone, Serialize)]
pub struct HttpTransaction {
    pub address: String,
    pub alpn: &'static str,
    pub failure: Option<String>,
    pub network: &'static str,
    pub request: HttpRequest,
    pub response: HttpResponseKeys,
    pub t: f64,
    pub t0: f64,
    pub tags: &'static [&'static str],
    pub transaction_id: usize,
    pub x_failed_at: Option<Stage>,
}

/// `headers` of a request or response: the first value of each name.
pub(super) type HeaderMap = BTreeMap<String, String>;
/// `headers_list`: every header, in order.
pub(super) type HeaderList = Vec<[String; 2]>;

#[derive(Debug, Clone, Serialize)]
pub struct HttpRequest {
    pub body: &'static str,
    pub body_is_truncated: bool,
    pub headers: HeaderMap,
    pub headers_list: HeaderList,
    pub method: &'static str,
    pub tor: Tor,
    pub url: String,
    pub x_transport: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
#[allow(clippy::struct_field_names)] // the field names are OONI's keys
pub struct Tor {
    pub exit_ip: Option<String>,
    pub exit_name: Option<String>,
    pub is_tor: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpResponseKeys {
    /// Bodies are not recorded.
    pub body: Option<String>,
    pub body_is_truncated: bool,
    pub code: u16,
    pub headers: HeaderMap,
    pub headers_list: HeaderList,
    /// What censorprobe recorded of a response (none without one). Its keys sort
    /// after every OONI key above, so flattening keeps the order.
    #[serde(flatten)]
    pub recorded: Option<RecordedResponse>,
}

#[derive(Debug, Clone, Serialize)]
#[allow(clippy::struct_field_names)] // the field names are the output's keys
pub struct RecordedResponse {
    pub x_body_length: u64,
    pub x_body_sha256: String,
    pub x_reason: String,
    pub x_title: Option<String>,
    pub x_version: String,
}

/// One `tls_handshakes` entry (df-006).
#[derive(Debug, Clone, Serialize)]
pub struct TlsHandshake<'a> {
    pub address: String,
    pub cipher_suite: String,
    pub failure: Option<String>,
    pub negotiated_protocol: String,
    pub network: &'static str,
    pub no_tls_verify: bool,
    /// OONI wants DER, which the record does not keep: see `x_peer_certificates`.
    pub peer_certificates: [String; 0],
    pub server_name: String,
    pub t: f64,
    pub t0: f64,
    pub tags: &'static [&'static str],
    pub tls_version: String,
    pub transaction_id: usize,
    pub x_alert: Option<AlertView<'a>>,
    pub x_error: Option<&'a str>,
    pub x_peer_certificates: Vec<CertificateView<'a>>,
    pub x_progress: Option<TlsProgress>,
    pub x_sni_sent: bool,
    pub x_validity: Option<ValidityView<'a>>,
}

/// `test_keys.x_censorprobe`: censorprobe's own verdicts, in its own terms.
#[derive(Debug, Serialize)]
pub struct XCensorprobe<'a> {
    pub attempt: Option<u32>,
    pub attempts: StageAttempts<'a>,
    pub blocking: crate::vocab::Blocking,
    pub categories: &'a [String],
    pub evidence: StageEvidence<'a>,
    /// Parts of the record the mapping could not read. The record is typed now, so
    /// this stays empty; the key is kept for readers of earlier output.
    pub unmapped: Vec<String>,
    pub verdicts: StageVerdicts,
}

/// `x_censorprobe.attempts`: every address's judgement, by web stage that ran.
#[derive(Debug, Default, Serialize)]
pub struct StageAttempts<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<AttemptKeys<'a, HttpVerdict>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Vec<AttemptKeys<'a, TlsVerdict>>>,
}

/// censorprobe's judgement of one address, linked to its OONI transaction.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptKeys<'a, V> {
    pub control: &'a ControlSummary,
    pub failure: Option<String>,
    pub ip: IpAddr,
    pub path: PathView,
    pub port: u16,
    pub residual: Option<bool>,
    pub stage: Option<Stage>,
    pub transaction_id: usize,
    pub verdict: V,
}

/// `x_censorprobe.evidence`: each stage's evidence, as recorded.
#[derive(Debug, Default, Serialize)]
pub struct StageEvidence<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<EvidenceView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<WebEvidenceView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Vec<WebEvidenceView<'a>>>,
}

/// `x_censorprobe.verdicts`: each stage's headline verdict.
#[derive(Debug, Default, Serialize)]
pub struct StageVerdicts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsVerdictKeys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<WebVerdictKeys<HttpVerdict>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<WebVerdictKeys<TlsVerdict>>,
}

#[derive(Debug, Serialize)]
pub struct DnsVerdictKeys {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forged_ips: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<PoisoningMethod>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<PoisoningMethod>,
    pub verdict: DnsVerdict,
}

#[derive(Debug, Serialize)]
pub struct WebVerdictKeys<V> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residual: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    pub verdict: V,
}
