//! The TLS probe: a rustls `ClientHello` with the target as SNI, a handshake completed
//! with a verifier that accepts any chain (so a bad certificate is observed, not a
//! handshake failure), and the chain judged separately against the trusted roots.
//!
//! The handshake is driven by hand over a tokio `TcpStream` (rustls'
//! `ClientConnection` with `read_tls`/`write_tls`) rather than through
//! `tokio_rustls::TlsConnector`, because a failed handshake must still tell how far it
//! got, what the server sent, and which alert or error ended it.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::net::{self, ConnectionBudget, IoFailure, classify_io_error, ms_between};
use super::tcpinfo::{self, StallPolicy};
use crate::capture::ProbeCapture;
use crate::probe::ProbeError;
use crate::vocab::Stage;

type Result<T, E = ProbeError> = std::result::Result<T, E>;
use crate::observation::web::{
    CertProblem, CertValidity, CertificateInfo, TlsAlert, TlsHandshakeEnd, TlsObservation,
    TlsProgress,
};

/// ALPN offered by default, as a browser would.
pub const DEFAULT_ALPN: [&str; 2] = ["h2", "http/1.1"];

const READ_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct TlsProbeConfig {
    pub connect_timeout: Duration,
    /// Deadline for the whole TLS handshake, counted from the end of the connect.
    pub handshake_timeout: Duration,
    pub alpn: Vec<String>,
}

impl Default for TlsProbeConfig {
    fn default() -> Self {
        TlsProbeConfig {
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            alpn: DEFAULT_ALPN.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// A verifier that accepts every chain, so that the handshake completes with
/// whatever the server (or a middlebox) presents, while still checking the handshake
/// signatures with the provider's algorithms (a signature that does not verify is a
/// broken handshake, not a certificate problem). Validity is judged afterwards.
#[derive(Debug)]
struct AcceptAnyChain {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Sends TLS probes. One `ClientConfig` is shared by every handshake; cheap to clone.
#[derive(Debug, Clone)]
pub struct TlsProber {
    client_config: Arc<ClientConfig>,
    /// `None` when no trust anchor was configured (nothing can be judged valid).
    validator: Option<Arc<WebPkiServerVerifier>>,
    config: TlsProbeConfig,
    budget: ConnectionBudget,
    capture: ProbeCapture,
}

impl TlsProber {
    /// `roots` are the trust anchors for the validity judgement (webpki roots plus
    /// `--ca` files, as built by the caller).
    pub fn new(
        roots: Arc<RootCertStore>,
        config: TlsProbeConfig,
        budget: ConnectionBudget,
    ) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AcceptAnyChain {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut client_config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(ProbeError::TlsSetup)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        client_config.alpn_protocols = config.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // Every probe must send a fresh, full `ClientHello` and see the server's chain:
        // no session resumption.
        client_config.resumption = rustls::client::Resumption::disabled();
        let validator = if roots.is_empty() {
            None
        } else {
            let built = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(ProbeError::CertificateValidator)?;
            Some(built)
        };
        let client_config = Arc::new(client_config);
        // Starting a connection depends only on the config: prove once that it can,
        // so that probes never fail for a local reason.
        ClientConnection::new(
            Arc::clone(&client_config),
            ServerName::try_from("example.com").expect("valid name"),
        )
        .map_err(ProbeError::TlsSetup)?;
        Ok(TlsProber {
            client_config,
            validator,
            config,
            budget,
            capture: ProbeCapture::Off,
        })
    }

    /// Capture each probe connection's packets (see [`crate::capture`]).
    #[must_use]
    pub fn with_capture(mut self, capture: ProbeCapture) -> Self {
        self.capture = capture;
        self
    }

    /// The capture this prober's connections go through.
    pub fn capture(&self) -> &ProbeCapture {
        &self.capture
    }

    pub fn config(&self) -> &TlsProbeConfig {
        &self.config
    }

    /// The crypto provider used by the probe (ring), for callers building servers
    /// or verifiers that must match it.
    pub fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// TLS as proof of a DNS answer: a handshake to (ip, 443) with `name` as SNI. The
    /// answer is consistent with the name when [`TlsObservation::valid_for_name`].
    pub async fn prove_address(&self, name: &str, ip: IpAddr) -> Result<TlsObservation> {
        self.probe(ip, 443, name).await
    }

    /// One TLS handshake to (ip, port) with `name` as SNI (no SNI when `name` is an
    /// address literal). Fails only when `name` cannot be a TLS server name; every
    /// network outcome is an observation.
    pub async fn probe(&self, ip: IpAddr, port: u16, name: &str) -> Result<TlsObservation> {
        let server_name = server_name(name)?;
        Ok(self.probe_as(ip, port, name, &server_name).await)
    }

    /// [`TlsProber::probe`] with the server name already checked (`server_name` must
    /// come from [`server_name`]`(name)`).
    pub async fn probe_as(
        &self,
        ip: IpAddr,
        port: u16,
        name: &str,
        server_name: &ServerName<'static>,
    ) -> TlsObservation {
        let sni = match server_name {
            ServerName::DnsName(dns) => Some(dns.as_ref().to_owned()),
            _ => None,
        };
        let (connect, start, conn, flow) = net::connect(
            ip,
            port,
            self.config.connect_timeout,
            &self.budget,
            &self.capture,
        )
        .await;
        let mut obs = TlsObservation {
            ip,
            port,
            name: name.to_owned(),
            sni,
            connect,
            handshake: None,
            progress: None,
            failed_at: None,
            client_hello_bytes: 0,
            bytes_sent: 0,
            bytes_received: 0,
            version: None,
            cipher: None,
            alpn: None,
            alert: None,
            error: None,
            errno: None,
            chain: Vec::new(),
            validity: None,
            first_byte_ms: None,
            handshake_ms: None,
            total_ms: 0.0,
            capture: None,
        };
        let Some(conn) = conn else {
            obs.failed_at = Some(Stage::Connect);
            let end = Instant::now();
            obs.total_ms = ms_between(start, end);
            obs.capture = flow.finish(false, end, &mut obs.connect).await;
            return obs;
        };
        let mut stream = conn.stream;
        let permit = conn.permit;
        let mut tls = ClientConnection::new(Arc::clone(&self.client_config), server_name.clone())
            .expect("the client config was proven able to start a connection in TlsProber::new");
        let end = self.handshake(&mut tls, &mut stream, &mut obs).await;
        obs.handshake = Some(end);
        if let Some(version) = tls.protocol_version() {
            obs.version = Some(version_name(version));
        }
        if let Some(suite) = tls.negotiated_cipher_suite() {
            let id = suite.suite();
            obs.cipher = Some(id.as_str().map_or_else(|| format!("{id:?}"), str::to_owned));
        }
        if end == TlsHandshakeEnd::Complete {
            obs.progress = Some(TlsProgress::Complete);
            obs.alpn = tls
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let chain = tls.peer_certificates().unwrap_or_default();
            obs.chain = chain.iter().map(describe_certificate).collect();
            obs.validity = Some(judge_chain(
                self.validator.as_deref(),
                chain,
                server_name,
                name,
            ));
        } else {
            obs.failed_at = Some(Stage::Handshake);
        }
        let exchange_end = Instant::now();
        obs.total_ms = ms_between(start, exchange_end);
        if end == TlsHandshakeEnd::Complete {
            // Close politely, and let the server close the TCP connection first (see
            // `net::CLOSE_GRACE`). The observation is complete either way.
            tls.send_close_notify();
            let mut out = Vec::new();
            while tls.wants_write() && tls.write_tls(&mut out).is_ok() {}
            if tokio::time::timeout(net::CLOSE_GRACE, stream.write_all(&out))
                .await
                .is_ok()
            {
                net::await_server_close(&mut stream).await;
            }
        }
        drop((stream, permit));
        let clean = end == TlsHandshakeEnd::Complete;
        obs.capture = flow.finish(clean, exchange_end, &mut obs.connect).await;
        obs
    }

    /// Drive the handshake to its end, filling in byte counts, progress and timings.
    async fn handshake(
        &self,
        tls: &mut ClientConnection,
        stream: &mut TcpStream,
        obs: &mut TlsObservation,
    ) -> TlsHandshakeEnd {
        let hs_start = Instant::now();
        let deadline = tokio::time::Instant::from_std(hs_start + self.config.handshake_timeout);
        let mut out = Vec::with_capacity(2048);
        let mut buf = vec![0u8; READ_BUFFER];
        let mut first_flight_done: Option<Instant> = None;
        loop {
            if let Err(end) = flush(tls, stream, &mut out, deadline, obs).await {
                return end;
            }
            if first_flight_done.is_none() {
                first_flight_done = Some(Instant::now());
                obs.client_hello_bytes = obs.bytes_sent as usize;
                obs.progress = Some(TlsProgress::ClientHelloSent);
            }
            if !tls.is_handshaking() {
                obs.handshake_ms = Some(ms_between(hs_start, Instant::now()));
                return TlsHandshakeEnd::Complete;
            }
            let read = {
                // Before any answer: the ClientHello never ACKed while retransmitted
                // is a drop.
                let (mut receiver, sender) = stream.split();
                let sent_at = first_flight_done.unwrap_or(hs_start);
                tokio::select! {
                    biased;
                    read = tokio::time::timeout_at(deadline, receiver.read(&mut buf)) => read,
                    stall = tcpinfo::dropped_in_path(
                        sender.as_ref(), obs.bytes_sent, sent_at, StallPolicy::default()
                    ), if obs.bytes_received == 0 => {
                        obs.error = Some(stall.to_string());
                        return TlsHandshakeEnd::Timeout;
                    }
                }
            };
            let n = match read {
                Err(_elapsed) => return TlsHandshakeEnd::Timeout,
                Ok(Ok(0)) => return TlsHandshakeEnd::Eof,
                Ok(Ok(n)) => n,
                Ok(Err(err)) => return io_end(&err, obs),
            };
            if obs.first_byte_ms.is_none() {
                let sent_at = first_flight_done.unwrap_or(hs_start);
                obs.first_byte_ms = Some(ms_between(sent_at, Instant::now()));
            }
            obs.bytes_received += n as u64;
            if obs.progress < Some(TlsProgress::ServerResponded) {
                obs.progress = Some(TlsProgress::ServerResponded);
            }
            let failure = feed(tls, &buf[..n]);
            if tls.protocol_version().is_some()
                && obs.progress < Some(TlsProgress::ServerHelloReceived)
            {
                obs.progress = Some(TlsProgress::ServerHelloReceived);
            }
            if let Some(err) = failure {
                // rustls may have queued an alert for the peer: send it, best effort.
                let _ = flush(tls, stream, &mut out, deadline, obs).await;
                return match err {
                    rustls::Error::AlertReceived(desc) => {
                        obs.alert = Some(TlsAlert {
                            description: alert_name(desc),
                            code: u8::from(desc),
                        });
                        obs.error = Some(format!("received fatal alert: {desc:?}"));
                        TlsHandshakeEnd::AlertReceived
                    }
                    other => {
                        obs.error = Some(other.to_string());
                        TlsHandshakeEnd::ProtocolError
                    }
                };
            }
        }
    }
}

/// Hand received bytes to rustls; the first error it reports, if any.
fn feed(tls: &mut ClientConnection, mut data: &[u8]) -> Option<rustls::Error> {
    while !data.is_empty() {
        if let Err(err) = tls.read_tls(&mut data) {
            return Some(rustls::Error::General(format!(
                "buffering received TLS data: {err}"
            )));
        }
        if let Err(err) = tls.process_new_packets() {
            return Some(err);
        }
    }
    None
}

/// Write everything rustls has queued.
async fn flush(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    deadline: tokio::time::Instant,
    obs: &mut TlsObservation,
) -> Result<(), TlsHandshakeEnd> {
    while tls.wants_write() {
        out.clear();
        if let Err(err) = tls.write_tls(out) {
            obs.error = Some(err.to_string());
            return Err(TlsHandshakeEnd::ProtocolError);
        }
        match tokio::time::timeout_at(deadline, stream.write_all(out)).await {
            Ok(Ok(())) => obs.bytes_sent += out.len() as u64,
            Ok(Err(err)) => return Err(io_end(&err, obs)),
            Err(_elapsed) => return Err(TlsHandshakeEnd::Timeout),
        }
    }
    Ok(())
}

fn io_end(err: &io::Error, obs: &mut TlsObservation) -> TlsHandshakeEnd {
    obs.errno = err.raw_os_error();
    obs.error = Some(err.to_string());
    match classify_io_error(err) {
        IoFailure::Reset => TlsHandshakeEnd::Reset,
        IoFailure::TimedOut => TlsHandshakeEnd::Timeout,
        IoFailure::Refused | IoFailure::Other => TlsHandshakeEnd::IoError,
    }
}

/// The TLS server name for `name`: a DNS name (sent as SNI) or an address literal
/// (no SNI; the certificate is judged against the address).
pub fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|source| ProbeError::BadServerName {
        input: name.to_owned(),
        source,
    })
}

fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLS1.2".to_owned(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS1.3".to_owned(),
        other => format!("{other:?}"),
    }
}

/// `HandshakeFailure` → `handshake_failure`.
fn alert_name(desc: rustls::AlertDescription) -> String {
    let Some(name) = desc.as_str() else {
        return format!("unknown_{}", u8::from(desc));
    };
    let mut snake = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            snake.push(c);
            prev_lower = true;
        }
    }
    snake
}

/// Judge a presented chain against the trusted roots, for `name`.
pub fn judge_chain(
    validator: Option<&WebPkiServerVerifier>,
    chain: &[CertificateDer<'static>],
    server_name: &ServerName<'_>,
    name: &str,
) -> CertValidity {
    let invalid = |problem: CertProblem, error: String| CertValidity {
        valid: false,
        checked_name: name.to_owned(),
        problem: Some(problem),
        error: Some(error),
    };
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return invalid(
            CertProblem::NoCertificate,
            "the server sent no certificate".to_owned(),
        );
    };
    let Some(validator) = validator else {
        return invalid(
            CertProblem::NoTrustAnchors,
            "no trust anchors are configured".to_owned(),
        );
    };
    match validator.verify_server_cert(end_entity, intermediates, server_name, &[], UnixTime::now())
    {
        Ok(_) => CertValidity {
            valid: true,
            checked_name: name.to_owned(),
            problem: None,
            error: None,
        },
        Err(err) => invalid(cert_problem(&err), err.to_string()),
    }
}

fn cert_problem(err: &rustls::Error) -> CertProblem {
    let rustls::Error::InvalidCertificate(cert_err) = err else {
        return CertProblem::Other;
    };
    match cert_err {
        CertificateError::UnknownIssuer => CertProblem::UnknownIssuer,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            CertProblem::NameMismatch
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => CertProblem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            CertProblem::NotYetValid
        }
        CertificateError::Revoked => CertProblem::Revoked,
        CertificateError::BadSignature => CertProblem::BadSignature,
        CertificateError::BadEncoding => CertProblem::BadEncoding,
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            CertProblem::InvalidPurpose
        }
        _ => CertProblem::Other,
    }
}

/// Subject, issuer, names, validity period and fingerprint of one certificate.
pub fn describe_certificate(der: &CertificateDer<'_>) -> CertificateInfo {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let sha256 = hex::encode(Sha256::digest(der.as_ref()));
    let rfc3339 = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.timestamp().to_string())
    };
    match X509Certificate::from_der(der.as_ref()) {
        Ok((_, cert)) => {
            let mut san_dns = Vec::new();
            let mut san_ips = Vec::new();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for general_name in &san.value.general_names {
                    match general_name {
                        GeneralName::DNSName(dns) => san_dns.push((*dns).to_owned()),
                        GeneralName::IPAddress(bytes) => {
                            if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                                san_ips.push(IpAddr::from(v4));
                            } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                                san_ips.push(IpAddr::from(v6));
                            }
                        }
                        _ => {}
                    }
                }
            }
            CertificateInfo {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                serial: hex::encode(cert.raw_serial()),
                san_dns,
                san_ips,
                not_before: rfc3339(cert.validity().not_before),
                not_after: rfc3339(cert.validity().not_after),
                is_ca: cert.is_ca(),
                sha256,
                parse_error: None,
            }
        }
        Err(err) => CertificateInfo {
            subject: String::new(),
            issuer: String::new(),
            serial: String::new(),
            san_dns: Vec::new(),
            san_ips: Vec::new(),
            not_before: String::new(),
            not_after: String::new(),
            is_ca: false,
            sha256,
            parse_error: Some(err.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::web::ConnectStatus;
    use crate::servers::web::test_pki::TestPki;
    use crate::servers::web::{LabServer, TlsBehaviour, TlsLabConfig};
    use std::net::{Ipv4Addr, SocketAddr};

    fn prober(pki: &TestPki, handshake_timeout: Duration) -> TlsProber {
        TlsProber::new(
            pki.root_store(),
            TlsProbeConfig {
                connect_timeout: Duration::from_secs(5),
                handshake_timeout,
                ..TlsProbeConfig::default()
            },
            ConnectionBudget::new(64),
        )
        .unwrap()
    }

    async fn server(pki: &TestPki, rules: &[(&str, TlsBehaviour)]) -> LabServer {
        let mut config =
            TlsLabConfig::new(pki.identity(&["good.test", "example.com", "127.0.0.1"]));
        for (name, behaviour) in rules {
            config = config.on(name, behaviour.clone());
        }
        LabServer::spawn_tls(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
            .await
            .unwrap()
    }

    #[test]
    fn alert_names_are_snake_case() {
        assert_eq!(
            alert_name(rustls::AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
        assert_eq!(
            alert_name(rustls::AlertDescription::UnknownCA),
            "unknown_ca"
        );
        assert_eq!(
            alert_name(rustls::AlertDescription::NoApplicationProtocol),
            "no_application_protocol"
        );
    }

    #[tokio::test]
    async fn good_server_handshake_is_valid_and_chain_recorded() {
        let pki = TestPki::new();
        let srv = server(&pki, &[]).await;
        let addr = srv.local_addr();
        let obs = prober(&pki, Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "good.test")
            .await
            .unwrap();
        assert_eq!(obs.connect.status, ConnectStatus::Ok);
        assert_eq!(obs.handshake, Some(TlsHandshakeEnd::Complete));
        assert_eq!(obs.progress, Some(TlsProgress::Complete));
        assert_eq!(obs.sni.as_deref(), Some("good.test"));
        assert_eq!(obs.version.as_deref(), Some("TLS1.3"));
        assert!(
            obs.cipher
                .as_deref()
                .is_some_and(|c| c.starts_with("TLS13_"))
        );
        assert_eq!(obs.alpn.as_deref(), Some("http/1.1"));
        assert!(obs.client_hello_bytes > 0);
        assert_eq!(
            obs.chain.len(),
            2,
            "leaf and intermediate-free CA chain as served"
        );
        assert!(obs.chain[0].san_dns.iter().any(|n| n == "good.test"));
        assert_eq!(obs.chain[0].sha256.len(), 64);
        assert!(obs.valid_for_name(), "{:?}", obs.validity);
    }

    #[tokio::test]
    async fn unrelated_name_completes_but_is_invalid_for_name() {
        let pki = TestPki::new();
        let srv = server(&pki, &[]).await;
        let addr = srv.local_addr();
        let obs = prober(&pki, Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "other.test")
            .await
            .unwrap();
        assert_eq!(obs.handshake, Some(TlsHandshakeEnd::Complete));
        let validity = obs.validity.unwrap();
        assert!(!validity.valid);
        assert_eq!(validity.problem, Some(CertProblem::NameMismatch));
        assert!(validity.error.is_some());
    }

    #[tokio::test]
    async fn self_signed_wrong_certificate_is_unknown_issuer() {
        let pki = TestPki::new();
        let srv = server(&pki, &[("good.test", TlsBehaviour::WrongCert)]).await;
        let addr = srv.local_addr();
        let obs = prober(&pki, Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "good.test")
            .await
            .unwrap();
        assert_eq!(obs.handshake, Some(TlsHandshakeEnd::Complete));
        assert_eq!(
            obs.validity.unwrap().problem,
            Some(CertProblem::UnknownIssuer)
        );
    }

    #[tokio::test]
    async fn address_literal_sends_no_sni_and_checks_the_address() {
        let pki = TestPki::new();
        let srv = server(&pki, &[]).await;
        let addr = srv.local_addr();
        let obs = prober(&pki, Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "127.0.0.1")
            .await
            .unwrap();
        assert_eq!(obs.sni, None);
        assert!(obs.valid_for_name(), "{:?}", obs.validity);
    }

    #[tokio::test]
    async fn reset_silence_close_and_alert() {
        let pki = TestPki::new();
        let srv = server(
            &pki,
            &[
                ("reset.test", TlsBehaviour::Reset),
                ("silent.test", TlsBehaviour::Silent),
                ("close.test", TlsBehaviour::Close),
                ("alert.test", TlsBehaviour::Alert),
            ],
        )
        .await;
        let addr = srv.local_addr();
        let p = prober(&pki, Duration::from_millis(400));

        let obs = p.probe(addr.ip(), addr.port(), "reset.test").await.unwrap();
        assert_eq!(obs.handshake, Some(TlsHandshakeEnd::Reset));
        assert_eq!(obs.failed_at, Some(Stage::Handshake));
        assert_eq!(obs.progress, Some(TlsProgress::ClientHelloSent));

        let obs = p
            .probe(addr.ip(), addr.port(), "silent.test")
            .await
            .unwrap();
        assert_eq!(obs.handshake, Some(TlsHandshakeEnd::Timeout));
        assert_eq!(obs.bytes_received, 0);

        let obs = p.probe(addr.ip(), addr.port(), "close.test").await.unwrap();
        assert_eq!(obs.handshake, Some(TlsHandshakeEnd::Eof));

        let obs = p.probe(addr.ip(), addr.port(), "alert.test").await.unwrap();
        assert_eq!(obs.handshake, Some(TlsHandshakeEnd::AlertReceived));
        let alert = obs.alert.unwrap();
        assert_eq!(alert.description, "no_application_protocol");
        assert_eq!(alert.code, 120);
        assert!(obs.chain.is_empty());
        assert!(obs.validity.is_none());
    }

    #[tokio::test]
    async fn closed_port_fails_at_connect() {
        let pki = TestPki::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let obs = prober(&pki, Duration::from_secs(1))
            .probe(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "good.test")
            .await
            .unwrap();
        assert_eq!(obs.connect.status, ConnectStatus::Refused);
        assert_eq!(obs.failed_at, Some(Stage::Connect));
        assert_eq!(obs.handshake, None);
    }

    #[test]
    fn a_bad_server_name_keeps_the_cause() {
        let err = server_name("a b.test").unwrap_err();
        assert!(matches!(err, ProbeError::BadServerName { .. }), "{err:?}");
        let source = std::error::Error::source(&err).expect("the rustls error is kept");
        assert!(
            source.is::<rustls_pki_types::InvalidDnsNameError>(),
            "{source:?}"
        );
    }

    #[test]
    fn empty_root_store_judges_nothing_valid() {
        let pki = TestPki::new();
        let id = pki.identity(&["good.test"]);
        let sn = server_name("good.test").unwrap();
        let v = judge_chain(None, &id.chain, &sn, "good.test");
        assert!(!v.valid);
        assert_eq!(v.problem, Some(CertProblem::NoTrustAnchors));
        let v = judge_chain(None, &[], &sn, "good.test");
        assert_eq!(v.problem, Some(CertProblem::NoCertificate));
    }
}
