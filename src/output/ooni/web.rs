//! The web stages' part of an OONI measurement. Each address's *test* connection (the
//! probe with the target's Host / SNI) becomes one transaction: a `tcp_connect` entry
//! (df-005), a `requests` entry (df-001, HTTP) or a `tls_handshakes` entry (df-006,
//! TLS), and its `network_events` (df-008), with df-007 failure strings. Handshakes
//! made for "TLS as proof" of a DNS answer are mapped the same way, tagged `tls_proof`.
//!
//! The benign control and residual probes are not OONI transactions: OONI's `control`
//! is a test helper's view from elsewhere, not a harmless name on the same path, so
//! they stay in censorprobe's terms under `x_censorprobe.attempts`.
//!
//! Observations are timed from the start of their own connection, not from the start
//! of the measurement, so each connection's `t0` is 0 and its `t` values count from
//! the start of its connect.

use std::net::{IpAddr, SocketAddr};

use super::sorted::{AlertView, PathView, ValidityView, views};
use super::types::{
    AttemptKeys, HeaderList, HeaderMap, HttpRequest, HttpResponseKeys, HttpTransaction,
    NetworkEvent, RecordedResponse, TcpConnect, TcpConnectStatus, TlsHandshake, Tor,
};
use crate::observation::web::{
    CertProblem, ConnectObservation, ConnectStatus, HttpExchangeEnd, HttpHeader, HttpObservation,
    HttpResponse, TlsHandshakeEnd, TlsObservation,
};
use crate::probe::web::http::{DEFAULT_USER_AGENT, build_request};
use crate::record::assessment::{HttpAssessment, IpResult, TlsAssessment};
use crate::vocab::{Claim, HttpVerdict, TlsVerdict};

/// The df-007 failure string of an OS error number (`unknown_failure TEXT` for the
/// numbers df-007 has no name for).
pub(super) fn errno_failure(errno: Option<i32>, text: Option<&str>) -> String {
    let named = match errno {
        Some(libc::ECONNREFUSED) => "connection_refused",
        Some(libc::ECONNRESET) => "connection_reset",
        Some(libc::ECONNABORTED) => "connection_aborted",
        Some(libc::ETIMEDOUT) => "generic_timeout_error",
        Some(libc::EHOSTUNREACH) => "host_unreachable",
        Some(libc::ENETUNREACH) => "network_unreachable",
        Some(libc::ENETDOWN) => "network_down",
        Some(libc::ENETRESET) => "network_reset",
        _ => {
            let text = text.map_or_else(
                || errno.map_or_else(|| "error".to_owned(), |e| format!("errno {e}")),
                str::to_owned,
            );
            return format!("unknown_failure {text}");
        }
    };
    named.to_owned()
}

/// The failure of a TCP connect (`None`: it succeeded).
pub(super) fn connect_failure(connect: &ConnectObservation) -> Option<String> {
    match connect.status {
        ConnectStatus::Ok => None,
        ConnectStatus::Refused => Some("connection_refused".to_owned()),
        ConnectStatus::Timeout => Some("generic_timeout_error".to_owned()),
        ConnectStatus::Reset => Some("connection_reset".to_owned()),
        ConnectStatus::Error => Some(errno_failure(connect.errno, connect.error.as_deref())),
    }
}

/// The failure of an HTTP exchange, the connect included (`None`: a whole response).
pub(super) fn http_failure(obs: &HttpObservation) -> Option<String> {
    if let Some(failure) = connect_failure(&obs.connect) {
        return Some(failure);
    }
    let failure = match obs.exchange? {
        HttpExchangeEnd::Complete => return None,
        HttpExchangeEnd::ResetAfterRequest | HttpExchangeEnd::ResetDuringResponse => {
            "connection_reset".to_owned()
        }
        HttpExchangeEnd::EofWithoutResponse | HttpExchangeEnd::EofDuringResponse => {
            "eof_error".to_owned()
        }
        HttpExchangeEnd::TimeoutAfterRequest | HttpExchangeEnd::TimeoutDuringResponse => {
            "generic_timeout_error".to_owned()
        }
        HttpExchangeEnd::MalformedResponse => format!(
            "unknown_failure malformed HTTP response: {}",
            obs.error.as_deref().unwrap_or("not HTTP/1.x")
        ),
        HttpExchangeEnd::RequestFailed | HttpExchangeEnd::ReadFailed => {
            errno_failure(obs.errno, obs.error.as_deref())
        }
    };
    Some(failure)
}

/// The failure of a certificate judged not valid for the name.
pub(super) fn cert_failure(problem: Option<CertProblem>) -> &'static str {
    match problem {
        Some(CertProblem::NameMismatch) => "ssl_invalid_hostname",
        Some(CertProblem::UnknownIssuer | CertProblem::NoTrustAnchors) => "ssl_unknown_authority",
        _ => "ssl_invalid_certificate",
    }
}

/// The failure of a TLS handshake after a successful connect (`None`: it completed
/// with a chain valid for the name).
pub(super) fn tls_failure(obs: &TlsObservation) -> Option<String> {
    if let Some(failure) = connect_failure(&obs.connect) {
        return Some(failure);
    }
    let failure = match obs.handshake? {
        TlsHandshakeEnd::Complete => match &obs.validity {
            Some(validity) if !validity.valid => cert_failure(validity.problem).to_owned(),
            _ => return None,
        },
        TlsHandshakeEnd::AlertReceived | TlsHandshakeEnd::ProtocolError => {
            "ssl_failed_handshake".to_owned()
        }
        TlsHandshakeEnd::Reset => "connection_reset".to_owned(),
        TlsHandshakeEnd::Eof => "eof_error".to_owned(),
        TlsHandshakeEnd::Timeout => "generic_timeout_error".to_owned(),
        TlsHandshakeEnd::IoError => errno_failure(obs.errno, obs.error.as_deref()),
    };
    Some(failure)
}

/// What went wrong on the wire while the handshake ran (the `read` event's failure):
/// a reset, a close, silence or an I/O error, not a judgement of what arrived.
fn tls_transport_failure(obs: &TlsObservation) -> Option<String> {
    match obs.handshake? {
        TlsHandshakeEnd::Reset
        | TlsHandshakeEnd::Eof
        | TlsHandshakeEnd::Timeout
        | TlsHandshakeEnd::IoError => tls_failure(obs),
        _ => None,
    }
}

/// `TLS1.3` → `TLSv1.3`, as OONI writes versions.
pub(super) fn ooni_tls_version(version: &str) -> String {
    version.strip_prefix("TLS").map_or_else(
        || version.to_owned(),
        |rest| {
            if rest.starts_with('v') {
                version.to_owned()
            } else {
                format!("TLSv{rest}")
            }
        },
    )
}

/// rustls's `TLS13_AES_128_GCM_SHA256` → IANA's `TLS_AES_128_GCM_SHA256` (OONI's
/// names); TLS 1.2 suite names are already IANA's.
pub(super) fn ooni_cipher_suite(cipher: &str) -> String {
    cipher
        .strip_prefix("TLS13_")
        .map_or_else(|| cipher.to_owned(), |rest| format!("TLS_{rest}"))
}

fn address(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

fn seconds(ms: f64) -> f64 {
    ms / 1000.0
}

/// `headers_list` (every header, in order) and `headers` (the first value of each name).
fn headers_keys<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (HeaderList, HeaderMap) {
    let mut list = Vec::new();
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        list.push([name.to_owned(), value.to_owned()]);
        map.entry(name.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    (list, map)
}

/// The request headers as the HTTP probe writes them, parsed back from the probe's own
/// request builder. A record whose request length differs was sent with another
/// User-Agent; only its Host header is then certain.
fn request_headers(host: &str, request_length: usize) -> Vec<(String, String)> {
    let request = build_request(host, DEFAULT_USER_AGENT);
    let only_host = || vec![("Host".to_owned(), host.to_owned())];
    if request.len() != request_length {
        return only_host();
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&request) {
        Ok(httparse::Status::Complete(_)) => parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        _ => only_host(),
    }
}

fn response_keys(response: Option<&HttpResponse>) -> HttpResponseKeys {
    let Some(response) = response else {
        return HttpResponseKeys {
            body: None,
            body_is_truncated: false,
            code: 0,
            headers: HeaderMap::new(),
            headers_list: HeaderList::new(),
            recorded: None,
        };
    };
    let (headers_list, headers) = headers_keys(
        response
            .headers
            .iter()
            .map(|HttpHeader { name, value }| (name.as_str(), value.as_str())),
    );
    HttpResponseKeys {
        body: None,
        body_is_truncated: response.body_capped,
        code: response.status,
        headers,
        headers_list,
        recorded: Some(RecordedResponse {
            x_body_length: response.body_length,
            x_body_sha256: response.body_sha256.clone(),
            x_reason: response.reason.clone(),
            x_title: response.title.clone(),
            x_version: response.version.clone(),
        }),
    }
}

/// Whether the test connect itself failed and the verdict calls that blocking.
fn connect_blocked(connect: &ConnectObservation, claim: Claim) -> bool {
    !connect.is_ok() && matches!(claim, Claim::Blocked(_))
}

const HTTP_TAGS: &[&str] = &["http"];
const TLS_TAGS: &[&str] = &["tls"];
const TLS_PROOF_TAGS: &[&str] = &["tls_proof"];

/// The web part of one measurement, built transaction by transaction.
#[derive(Debug, Default)]
pub(super) struct WebLists<'a> {
    pub tcp_connect: Vec<TcpConnect>,
    pub tls_handshakes: Vec<TlsHandshake<'a>>,
    pub requests: Vec<HttpTransaction>,
    pub network_events: Vec<NetworkEvent>,
    next_transaction: usize,
}

/// What the mapping of one stage gives the measurement's own keys.
#[derive(Debug)]
pub(super) struct StageMapping<'a, V> {
    /// The headline address's test failure (`http_experiment_failure` for HTTP).
    pub headline_failure: Option<String>,
    /// `x_censorprobe.attempts.<stage>`.
    pub attempts: Vec<AttemptKeys<'a, V>>,
}

impl<'a> WebLists<'a> {
    /// Transactions are numbered from `first_transaction` (after the DNS queries').
    pub(super) fn new(first_transaction: usize) -> Self {
        WebLists {
            next_transaction: first_transaction,
            ..WebLists::default()
        }
    }

    /// `tcp_connect` entry and `connect` event of one connection; its transaction id.
    fn connect(
        &mut self,
        ip: IpAddr,
        port: u16,
        connect: &ConnectObservation,
        blocked: bool,
        tags: &'static [&'static str],
    ) -> usize {
        let transaction_id = self.next_transaction;
        self.next_transaction += 1;
        let failure = connect_failure(connect);
        let t = seconds(connect.connect_ms);
        self.tcp_connect.push(TcpConnect {
            ip,
            port,
            status: TcpConnectStatus {
                blocked,
                failure: failure.clone(),
                success: failure.is_none(),
            },
            t,
            t0: 0.0,
            tags,
            transaction_id,
        });
        self.network_events.push(NetworkEvent {
            address: Some(address(ip, port)),
            failure,
            num_bytes: None,
            operation: "connect",
            proto: "tcp",
            t,
            t0: Some(0.0),
            tags: Some(tags),
            transaction_id,
        });
        transaction_id
    }

    fn io_event(
        &mut self,
        operation: &'static str,
        num_bytes: u64,
        failure: Option<&str>,
        (t0, t): (f64, f64),
        transaction_id: usize,
        tags: &'static [&'static str],
    ) {
        self.network_events.push(NetworkEvent {
            address: None,
            failure: failure.map(str::to_owned),
            num_bytes: Some(num_bytes),
            operation,
            proto: "tcp",
            t,
            t0: Some(t0),
            tags: Some(tags),
            transaction_id,
        });
    }

    /// One HTTP test connection: `tcp_connect`, `requests`, `network_events`.
    /// Returns the request's failure.
    fn http_test(&mut self, obs: &HttpObservation, blocked: bool) -> Option<String> {
        let tags = HTTP_TAGS;
        let transaction_id = self.connect(obs.ip, obs.port, &obs.connect, blocked, tags);
        let failure = http_failure(obs);
        let connected = obs.connect.is_ok();
        let connect_t = seconds(obs.connect.connect_ms);
        let total_t = seconds(obs.total_ms);
        if connected {
            let short_write = obs.request_bytes_sent < obs.request_length;
            let write_failure = match obs.exchange {
                Some(HttpExchangeEnd::RequestFailed) => failure.clone(),
                _ if short_write => failure.clone(),
                _ => None,
            };
            let write_failed = write_failure.is_some();
            self.io_event(
                "write",
                obs.request_bytes_sent as u64,
                write_failure.as_deref(),
                (connect_t, if write_failed { total_t } else { connect_t }),
                transaction_id,
                tags,
            );
            if !write_failed {
                self.io_event(
                    "read",
                    obs.bytes_received,
                    failure.as_deref(),
                    (connect_t, total_t),
                    transaction_id,
                    tags,
                );
            }
        }
        let headers = request_headers(&obs.host, obs.request_length);
        let (headers_list, headers_map) =
            headers_keys(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let url = if obs.port == 80 {
            format!("http://{}/", obs.host)
        } else {
            format!("http://{}:{}/", obs.host, obs.port)
        };
        self.requests.push(HttpTransaction {
            address: address(obs.ip, obs.port),
            alpn: "",
            failure: failure.clone(),
            network: "tcp",
            request: HttpRequest {
                body: "",
                body_is_truncated: false,
                headers: headers_map,
                headers_list,
                method: "GET",
                tor: Tor::default(),
                url,
                x_transport: "tcp",
            },
            response: response_keys(obs.response.as_ref()),
            t: total_t,
            t0: 0.0,
            tags,
            transaction_id,
            x_failed_at: obs.failed_at,
        });
        failure
    }

    /// One TLS connection: `tcp_connect`, `tls_handshakes` (when the connect
    /// succeeded), `network_events`. Returns the handshake's failure.
    fn tls_connection(
        &mut self,
        obs: &'a TlsObservation,
        blocked: bool,
        tags: &'static [&'static str],
    ) -> Option<String> {
        let transaction_id = self.connect(obs.ip, obs.port, &obs.connect, blocked, tags);
        let failure = tls_failure(obs);
        if !obs.connect.is_ok() {
            return failure;
        }
        let t0 = seconds(obs.connect.connect_ms);
        let t = obs
            .handshake_ms
            .map_or(seconds(obs.total_ms), |h| t0 + seconds(h));
        self.io_event(
            "write",
            obs.bytes_sent,
            None,
            (t0, t0),
            transaction_id,
            tags,
        );
        self.io_event(
            "read",
            obs.bytes_received,
            tls_transport_failure(obs).as_deref(),
            (t0, t),
            transaction_id,
            tags,
        );
        self.tls_handshakes.push(TlsHandshake {
            address: address(obs.ip, obs.port),
            cipher_suite: obs
                .cipher
                .as_deref()
                .map(ooni_cipher_suite)
                .unwrap_or_default(),
            failure: failure.clone(),
            negotiated_protocol: obs.alpn.clone().unwrap_or_default(),
            network: "tcp",
            no_tls_verify: false,
            peer_certificates: [],
            server_name: obs.sni.clone().unwrap_or_else(|| obs.name.clone()),
            t,
            t0,
            tags,
            tls_version: obs
                .version
                .as_deref()
                .map(ooni_tls_version)
                .unwrap_or_default(),
            transaction_id,
            x_alert: obs.alert.as_ref().map(AlertView::from),
            x_error: obs.error.as_deref(),
            x_peer_certificates: views(&obs.chain),
            x_progress: obs.progress,
            x_sni_sent: obs.sni.is_some(),
            x_validity: obs.validity.as_ref().map(ValidityView::from),
        });
        failure
    }

    /// Every address's test connection of the HTTP stage.
    pub(super) fn http(&mut self, assessment: &'a HttpAssessment) -> StageMapping<'a, HttpVerdict> {
        let mut mapping = StageMapping {
            headline_failure: None,
            attempts: Vec::new(),
        };
        for attempt in &assessment.attempts {
            let test = &attempt.observations.test;
            let claim = attempt.verdict.claim(attempt.stage);
            let blocked = connect_blocked(&test.connect, claim);
            let transaction_id = self.next_transaction;
            let failure = self.http_test(test, blocked);
            if headline(assessment.ip, assessment.port, attempt.ip, attempt.port) {
                mapping.headline_failure.clone_from(&failure);
            }
            mapping
                .attempts
                .push(attempt_keys(attempt, transaction_id, failure));
        }
        mapping
    }

    /// Every address's test connection of the TLS stage.
    pub(super) fn tls(&mut self, assessment: &'a TlsAssessment) -> StageMapping<'a, TlsVerdict> {
        let mut mapping = StageMapping {
            headline_failure: None,
            attempts: Vec::new(),
        };
        for attempt in &assessment.attempts {
            let test = &attempt.observations.test;
            let claim = attempt.verdict.claim(attempt.stage);
            let blocked = connect_blocked(&test.connect, claim);
            let transaction_id = self.next_transaction;
            let failure = self.tls_connection(test, blocked, TLS_TAGS);
            if headline(assessment.ip, assessment.port, attempt.ip, attempt.port) {
                mapping.headline_failure.clone_from(&failure);
            }
            mapping
                .attempts
                .push(attempt_keys(attempt, transaction_id, failure));
        }
        mapping
    }

    /// The DNS stage's "TLS as proof" handshakes.
    pub(super) fn tls_proof(&mut self, handshakes: &'a [TlsObservation]) {
        for obs in handshakes {
            self.tls_connection(obs, false, TLS_PROOF_TAGS);
        }
    }
}

fn headline(ip: Option<IpAddr>, port: Option<u16>, attempt_ip: IpAddr, attempt_port: u16) -> bool {
    ip == Some(attempt_ip) && port == Some(attempt_port)
}

/// censorprobe's judgement of one address, linked to its OONI transaction.
fn attempt_keys<V: Copy, O>(
    attempt: &IpResult<V, O>,
    transaction_id: usize,
    failure: Option<String>,
) -> AttemptKeys<'_, V> {
    AttemptKeys {
        control: &attempt.control,
        failure,
        ip: attempt.ip,
        path: PathView::from(&attempt.path),
        port: attempt.port,
        residual: attempt.residual,
        stage: attempt.stage,
        transaction_id,
        verdict: attempt.verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_get_df007_names_or_unknown_failure() {
        assert_eq!(
            errno_failure(Some(libc::EHOSTUNREACH), Some("No route to host")),
            "host_unreachable"
        );
        assert_eq!(
            errno_failure(Some(libc::ENETUNREACH), None),
            "network_unreachable"
        );
        assert_eq!(
            errno_failure(Some(libc::ETIMEDOUT), None),
            "generic_timeout_error"
        );
        assert_eq!(
            errno_failure(Some(libc::ENOBUFS), Some("No buffer space available")),
            "unknown_failure No buffer space available"
        );
        assert_eq!(
            errno_failure(Some(libc::ENOBUFS), None),
            format!("unknown_failure errno {}", libc::ENOBUFS)
        );
    }

    #[test]
    fn certificate_problems_map_to_hostname_authority_or_certificate() {
        assert_eq!(
            cert_failure(Some(CertProblem::NameMismatch)),
            "ssl_invalid_hostname"
        );
        assert_eq!(
            cert_failure(Some(CertProblem::UnknownIssuer)),
            "ssl_unknown_authority"
        );
        assert_eq!(
            cert_failure(Some(CertProblem::Expired)),
            "ssl_invalid_certificate"
        );
    }

    #[test]
    fn versions_and_suites_use_ooni_names() {
        assert_eq!(ooni_tls_version("TLS1.3"), "TLSv1.3");
        assert_eq!(ooni_tls_version("TLS1.2"), "TLSv1.2");
        assert_eq!(ooni_tls_version("TLSv1.2"), "TLSv1.2");
        assert_eq!(
            ooni_cipher_suite("TLS13_AES_128_GCM_SHA256"),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            ooni_cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }

    #[test]
    fn request_headers_are_the_probes_own() {
        let request = build_request("a.test", DEFAULT_USER_AGENT);
        let headers = request_headers("a.test", request.len());
        assert_eq!(headers[0], ("Host".to_owned(), "a.test".to_owned()));
        assert_eq!(headers[1].1, DEFAULT_USER_AGENT);
        assert_eq!(headers.len(), 4);
        // Another User-Agent was sent: only the Host header is certain.
        assert_eq!(
            request_headers("a.test", request.len() + 3),
            [("Host".to_owned(), "a.test".to_owned())]
        );
    }
}
