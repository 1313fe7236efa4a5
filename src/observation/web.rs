//! What the HTTP and TLS probes saw on one connection, without judgement.
//! Only [`crate::classify::web`] turns these into verdicts.
//!
//! Timings are milliseconds measured with a monotonic clock from the moment the
//! probe started connecting (after it obtained a socket from the connection budget).

use std::net::{IpAddr, SocketAddr};

use crate::observation::packets::CaptureObservation;
use serde::{Deserialize, Serialize};

use crate::vocab::Stage;

/// The default benign name for controls: reserved by IANA for documentation, served
/// by many hosts' default virtual host, blocked nowhere.
pub const DEFAULT_CONTROL_NAME: &str = "example.com";

/// How the TCP connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectStatus {
    /// The TCP handshake completed.
    Ok,
    /// An RST answered our SYN (`ECONNREFUSED`).
    Refused,
    /// No answer before the connect deadline (or the kernel gave up: `ETIMEDOUT`).
    Timeout,
    /// The connection was reset while being set up (`ECONNRESET`).
    Reset,
    /// Any other failure (unreachable network or host, no buffer space...): see `errno`.
    Error,
}

/// The TCP connect of one probe connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectObservation {
    pub status: ConnectStatus,
    /// OS error number behind a failed connect, when the OS gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// The OS's error text for a failed connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time until the outcome was known.
    pub connect_ms: f64,
    /// Our end of the connection (for matching packet captures), once the socket was bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_addr: Option<SocketAddr>,
}

impl ConnectObservation {
    pub fn is_ok(&self) -> bool {
        self.status == ConnectStatus::Ok
    }
}

/// How an HTTP exchange ended, once the TCP connect had succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpExchangeEnd {
    /// A whole response arrived (framed by Content-Length, chunked encoding or the
    /// server's close), or the body reached the read cap.
    Complete,
    /// The connection was reset before any response byte (also: reset while writing).
    ResetAfterRequest,
    /// The server closed (FIN) before any response byte.
    EofWithoutResponse,
    /// No response byte arrived before the deadline.
    TimeoutAfterRequest,
    /// The connection was reset after part of the response had arrived.
    ResetDuringResponse,
    /// The server closed before the response was complete.
    EofDuringResponse,
    /// The deadline passed after part of the response had arrived.
    TimeoutDuringResponse,
    /// The bytes received are not an HTTP/1.x response, or crossed a parse bound (head
    /// size, interim responses, chunk-size line, bytes on the wire) before one was
    /// complete; `error` says which.
    MalformedResponse,
    /// The request could not be written for a reason other than a reset or a timeout.
    RequestFailed,
    /// Reading failed for a reason other than a reset.
    ReadFailed,
}

/// One HTTP response header, in the order and case received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    /// The value, decoded as UTF-8 with replacement characters where it is not.
    pub value: String,
}

/// The response to a probe's request, as far as it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Headers in the order received.
    pub headers: Vec<HttpHeader>,
    /// Size of the status line and headers, in bytes.
    pub header_bytes: usize,
    /// Declared `Content-Length`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    /// Whether the body came with chunked transfer encoding (it is decoded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chunked: bool,
    /// Body bytes received (decoded), up to the read cap.
    pub body_length: u64,
    /// Reading stopped at the cap: the body is longer than `body_length`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_capped: bool,
    /// SHA-256 of the `body_length` body bytes received, hex.
    pub body_sha256: String,
    /// The HTML `<title>`, whitespace collapsed, if the body has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The first bytes of the body, kept for the classifier's block-page matching and
    /// not written to reports (the hash and title are).
    #[serde(skip)]
    pub body_prefix: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

/// Everything seen for one HTTP request to (ip, port) with one Host header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpObservation {
    pub ip: IpAddr,
    pub port: u16,
    /// The Host header sent, exactly.
    pub host: String,
    pub connect: ConnectObservation,
    /// Size of our request.
    pub request_length: usize,
    /// Bytes of the request the kernel accepted before the exchange ended.
    pub request_bytes_sent: usize,
    /// How the exchange ended; absent when the connect failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<HttpExchangeEnd>,
    /// Where the connection broke; absent when the exchange completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<Stage>,
    /// Raw bytes received from the server (headers and body as on the wire).
    pub bytes_received: u64,
    /// Status line and headers, once they were complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
    /// OS or parser error text behind a failed exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// From the end of writing the request to the first response byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    /// From the start of the connect to the end of the exchange.
    pub total_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The connection's packets, when a capture ran (or why none ran).
    pub capture: Option<CaptureObservation>,
}

impl HttpObservation {
    /// A response was received completely (any status).
    pub fn completed(&self) -> bool {
        self.exchange == Some(HttpExchangeEnd::Complete) && self.response.is_some()
    }
}

/// How a TLS handshake ended, once the TCP connect had succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsHandshakeEnd {
    /// The handshake completed.
    Complete,
    /// The peer sent a fatal alert (see `alert`).
    AlertReceived,
    /// The connection was reset during the handshake.
    Reset,
    /// The peer closed (FIN) during the handshake.
    Eof,
    /// The handshake did not complete before the deadline.
    Timeout,
    /// Our TLS library rejected what the peer sent (see `error`).
    ProtocolError,
    /// Reading or writing failed for a reason other than a reset (see `errno`).
    IoError,
}

/// How far a TLS handshake got: the last milestone reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsProgress {
    /// Our `ClientHello` went out; nothing came back.
    ClientHelloSent,
    /// The server sent bytes, but no complete `ServerHello`.
    ServerResponded,
    /// The `ServerHello` was processed (version and cipher are known).
    ServerHelloReceived,
    /// The handshake completed.
    Complete,
}

/// A TLS alert the peer sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsAlert {
    /// The alert description in snake case (`handshake_failure`, `unrecognised_name`...).
    pub description: String,
    /// The alert's numeric code.
    pub code: u8,
}

/// One certificate of the chain the server presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// DNS names in the subjectAltName extension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub san_dns: Vec<String>,
    /// IP addresses in the subjectAltName extension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub san_ips: Vec<IpAddr>,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    pub is_ca: bool,
    /// SHA-256 of the DER encoding, hex.
    pub sha256: String,
    /// Set when the certificate could not be parsed (the other fields are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

/// Why a presented chain is not valid for the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertProblem {
    /// The server sent no certificate.
    NoCertificate,
    /// The chain does not lead to a trusted root (includes self-signed certificates).
    UnknownIssuer,
    /// The certificate does not name the target.
    NameMismatch,
    Expired,
    NotYetValid,
    Revoked,
    BadSignature,
    BadEncoding,
    /// The certificate is not for TLS server authentication.
    InvalidPurpose,
    /// No trust anchors were configured, so nothing can be valid.
    NoTrustAnchors,
    /// Another reason; see `error`.
    Other,
}

/// The separate validity judgement of the presented chain (webpki, with the
/// configured roots), made after the handshake completed without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertValidity {
    pub valid: bool,
    /// The name (or address) the chain was checked against.
    pub checked_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<CertProblem>,
    /// The verifier's error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything seen for one TLS handshake to (ip, port) with one SNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsObservation {
    pub ip: IpAddr,
    pub port: u16,
    /// The target name (what the chain is judged against).
    pub name: String,
    /// The SNI sent; absent when the name is an address literal (no SNI then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    pub connect: ConnectObservation,
    /// How the handshake ended; absent when the connect failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<TlsHandshakeEnd>,
    /// The last handshake milestone reached; absent when the connect failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TlsProgress>,
    /// Where the connection broke; absent when the handshake completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<Stage>,
    /// Size of our first flight (the `ClientHello` record).
    pub client_hello_bytes: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Negotiated protocol version (`TLS1.2`, `TLS1.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Negotiated cipher suite (IANA name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// Negotiated ALPN protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<TlsAlert>,
    /// TLS library or OS error text behind a failed handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// The chain as presented, leaf first (known once the handshake completed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<CertificateInfo>,
    /// Validity of the chain for `name`; absent when no handshake completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<CertValidity>,
    /// From the end of writing the `ClientHello` to the first server byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    /// From the start of the TLS handshake (after connect) to its completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<f64>,
    pub total_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The connection's packets, when a capture ran (or why none ran).
    pub capture: Option<CaptureObservation>,
}

impl TlsObservation {
    pub fn completed(&self) -> bool {
        self.handshake == Some(TlsHandshakeEnd::Complete)
    }

    /// The handshake completed and the chain is valid for the name: what "TLS as
    /// proof" needs to call an address consistent with the name.
    pub fn valid_for_name(&self) -> bool {
        self.completed() && self.validity.as_ref().is_some_and(|v| v.valid)
    }
}

/// What the path guard did for one address's probes (facts, not judgement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathFacts {
    /// The access mode of the run that produced the reported observations.
    pub mode: crate::pathguard::AccessMode,
    /// Times the probes were re-run because their result could not be attributed
    /// (overlap with another test's disturbance, or a penalised path).
    pub requeues: u32,
    /// Total time spent waiting for the path (penalty, settling, exclusivity).
    pub waited_ms: f64,
    /// The path stayed penalised for the whole `residual_wait`: what was observed
    /// may still be residual blocking.
    pub penalty_outlived: bool,
    /// The rule that attributed the test's failure to this name (absent when the test
    /// passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<crate::pathguard::AttributionRule>,
}

/// The probes on one (ip, port) for one name: the benign control first, then the
/// test, then (after a test that was reset or dropped) the residual control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptObservations<O> {
    pub control: O,
    pub test: O,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub residual: Option<O>,
    /// Time between the end of the test and the start of the residual control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_after_ms: Option<f64>,
}

/// Which probe of the control → test → residual sequence a fact is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRole {
    Control,
    Test,
    Residual,
}

/// What one probe connection did, in a word (no judgement about censorship).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// HTTP: a complete response; TLS: a completed handshake.
    Ok,
    /// TLS: the handshake ended with an alert from the other side.
    Alert,
    /// An RST answered the SYN.
    Refused,
    ConnectTimeout,
    ConnectReset,
    ConnectError,
    /// Reset after the connect.
    Reset,
    /// No (complete) answer before the deadline after the connect.
    Timeout,
    /// Closed by the other side before a complete answer.
    Eof,
    /// HTTP: bytes that are no HTTP/1.x response, or a parse bound crossed.
    MalformedResponse,
    /// Anything else (protocol error, I/O error).
    Error,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Alert => "alert",
            AttemptOutcome::Refused => "refused",
            AttemptOutcome::ConnectTimeout => "connect_timeout",
            AttemptOutcome::ConnectReset => "connect_reset",
            AttemptOutcome::ConnectError => "connect_error",
            AttemptOutcome::Reset => "reset",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::Eof => "eof",
            AttemptOutcome::MalformedResponse => "malformed_response",
            AttemptOutcome::Error => "error",
        }
    }

    /// The connection never got past the TCP connect.
    pub fn at_connect(self) -> bool {
        matches!(
            self,
            AttemptOutcome::Refused
                | AttemptOutcome::ConnectTimeout
                | AttemptOutcome::ConnectReset
                | AttemptOutcome::ConnectError
        )
    }

    /// Reset, dropped or refused: what residual blocking looks like.
    pub fn transport_failure(self) -> bool {
        matches!(
            self,
            AttemptOutcome::Refused
                | AttemptOutcome::ConnectTimeout
                | AttemptOutcome::ConnectReset
                | AttemptOutcome::Reset
                | AttemptOutcome::Timeout
                | AttemptOutcome::Eof
        )
    }

    fn of_connect(status: ConnectStatus) -> Option<AttemptOutcome> {
        match status {
            ConnectStatus::Ok => None,
            ConnectStatus::Refused => Some(AttemptOutcome::Refused),
            ConnectStatus::Timeout => Some(AttemptOutcome::ConnectTimeout),
            ConnectStatus::Reset => Some(AttemptOutcome::ConnectReset),
            ConnectStatus::Error => Some(AttemptOutcome::ConnectError),
        }
    }
}

impl HttpObservation {
    /// What this connection did, in a word.
    pub fn outcome(&self) -> AttemptOutcome {
        if let Some(outcome) = AttemptOutcome::of_connect(self.connect.status) {
            return outcome;
        }
        match self.exchange {
            Some(HttpExchangeEnd::Complete) if self.response.is_some() => AttemptOutcome::Ok,
            Some(HttpExchangeEnd::ResetAfterRequest | HttpExchangeEnd::ResetDuringResponse) => {
                AttemptOutcome::Reset
            }
            Some(HttpExchangeEnd::TimeoutAfterRequest | HttpExchangeEnd::TimeoutDuringResponse) => {
                AttemptOutcome::Timeout
            }
            Some(HttpExchangeEnd::EofWithoutResponse | HttpExchangeEnd::EofDuringResponse) => {
                AttemptOutcome::Eof
            }
            Some(HttpExchangeEnd::MalformedResponse) => AttemptOutcome::MalformedResponse,
            _ => AttemptOutcome::Error,
        }
    }

    /// As a benign control, this probe passed: a complete response arrived (any status:
    /// the server answering is what proves the path).
    pub fn control_passed(&self) -> bool {
        self.outcome() == AttemptOutcome::Ok
    }

    /// Reset, dropped or refused (after a test: run the residual control).
    pub fn transport_failure(&self) -> bool {
        self.outcome().transport_failure()
    }
}

impl TlsObservation {
    /// What this connection did, in a word.
    pub fn outcome(&self) -> AttemptOutcome {
        if let Some(outcome) = AttemptOutcome::of_connect(self.connect.status) {
            return outcome;
        }
        match self.handshake {
            Some(TlsHandshakeEnd::Complete) => AttemptOutcome::Ok,
            Some(TlsHandshakeEnd::AlertReceived) => AttemptOutcome::Alert,
            Some(TlsHandshakeEnd::Reset) => AttemptOutcome::Reset,
            Some(TlsHandshakeEnd::Timeout) => AttemptOutcome::Timeout,
            Some(TlsHandshakeEnd::Eof) => AttemptOutcome::Eof,
            _ => AttemptOutcome::Error,
        }
    }

    /// As a benign control, this probe passed: the server spoke TLS back, with a
    /// completed handshake or an alert (many servers refuse an unknown SNI with one).
    pub fn control_passed(&self) -> bool {
        matches!(self.outcome(), AttemptOutcome::Ok | AttemptOutcome::Alert)
    }

    /// Reset, dropped or refused (after a test: run the residual control).
    pub fn transport_failure(&self) -> bool {
        self.outcome().transport_failure()
    }
}

/// Where a target's probe addresses came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressSource {
    /// `--via`: one fixed server for every target.
    Via,
    /// The target is an address literal.
    Literal,
    /// Pinned in the target list (`domain,ip[,ip]`).
    Pinned,
    /// The control resolution (so a poisoned answer cannot hide what the wire does).
    Control,
    /// The resolver under test (no control answer), without addresses judged forged.
    Resolver,
}

/// The addresses a target's web probes go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPlan {
    pub source: AddressSource,
    pub ips: Vec<IpAddr>,
}

/// One address's probes for one protocol, before judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathRun<O> {
    pub observations: AttemptObservations<O>,
    pub path: PathFacts,
}

/// One protocol's observations for a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageRun<O> {
    Skipped(String),
    Probed(Vec<PathRun<O>>),
}

/// Everything the web stage observed for one target, before judgement. Packet-capture
/// facts can be added to the observations (`capture`) before
/// `classify::web::judge_web`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebObservations {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<AddressPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<StageRun<HttpObservation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<StageRun<TlsObservation>>,
}
