//! Loopback HTTP and TLS servers with per-Host / per-SNI behaviours, for the tests and
//! the censor lab: a good server, and the ways a censor (or a broken server) makes a
//! connection fail: reset (`SO_LINGER` 0, then close), silence, close without answering,
//! a slow answer, a block page, a wrong certificate, a TLS alert, an answer followed by a
//! reset, and residual blocking (every new connection on the port reset for a while after
//! a trigger). Also a listener that never accepts and a closed port. A TLS server can
//! present one identity or a certificate issued on demand for every name asked.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::ca::IssueOnDemand;

/// The marker the lab block page carries; `targets/blockpages.toml` matches it.
pub const LAB_BLOCKPAGE_MARKER: &str = "censorprobe-lab-blockpage";

/// How long a silent connection is held open at most.
const SILENT_HOLD: Duration = Duration::from_secs(120);
/// How long the server waits for a request head or `ClientHello`.
const READ_DEADLINE: Duration = Duration::from_secs(10);
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// What the HTTP server does with a request for a given Host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpBehaviour {
    /// 200 with a small page titled `censorprobe lab: HOST`.
    Serve,
    /// Read the request, then reset (`SO_LINGER` 0 and close).
    Reset,
    /// Read the request and never answer (hold the connection open).
    Silent,
    /// Read the request and close (FIN) without answering.
    Close,
    /// Wait this long, then serve.
    Slow(Duration),
    /// 200 with the good page grown to at least this many bytes of ordinary markup:
    /// pages in the wild run to tens of KiB, and the probe hashes, searches and
    /// matches what it reads.
    ServeLarge(usize),
    /// 403 with the lab block page.
    BlockPage,
    /// 200 with the good page of this name, whatever the Host: a host that serves one
    /// site only (the decoy a forged DNS answer points to).
    ServeAs(String),
    /// Serve, then close with a reset instead of a FIN (an abortive close, as some
    /// servers and load balancers do).
    ServeThenReset,
}

/// What the TLS server does with a `ClientHello` for a given SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsBehaviour {
    /// Complete the handshake with the good identity.
    Serve,
    /// Complete the handshake with the wrong (unrelated, self-signed) identity.
    WrongCert,
    /// Reset after reading the `ClientHello`.
    Reset,
    /// Read the `ClientHello` and never answer.
    Silent,
    /// Read the `ClientHello` and close without answering.
    Close,
    /// Answer with a fatal `no_application_protocol` alert (the server insists on an
    /// ALPN protocol no client offers; rustls sends the alert).
    Alert,
    /// Wait this long, then serve.
    Slow(Duration),
    /// Complete the handshake with the good identity, then reset.
    ServeThenReset,
}

/// Residual blocking: once a request for `trigger` arrives (it is reset), every new
/// connection to the server's port is reset for `duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidualRule {
    pub trigger: String,
    pub duration: Duration,
}

/// Behaviours of the lab HTTP server.
#[derive(Debug, Clone)]
pub struct HttpLabConfig {
    pub default: HttpBehaviour,
    /// By lowercase Host header value.
    pub rules: HashMap<String, HttpBehaviour>,
    pub residual: Option<ResidualRule>,
}

impl Default for HttpLabConfig {
    fn default() -> Self {
        HttpLabConfig {
            default: HttpBehaviour::Serve,
            rules: HashMap::new(),
            residual: None,
        }
    }
}

impl HttpLabConfig {
    #[must_use]
    pub fn on(mut self, host: &str, behaviour: HttpBehaviour) -> Self {
        self.rules.insert(host.to_ascii_lowercase(), behaviour);
        self
    }

    #[must_use]
    pub fn otherwise(mut self, behaviour: HttpBehaviour) -> Self {
        self.default = behaviour;
        self
    }

    #[must_use]
    pub fn residual(mut self, trigger: &str, duration: Duration) -> Self {
        self.residual = Some(ResidualRule {
            trigger: trigger.to_ascii_lowercase(),
            duration,
        });
        self
    }
}

/// A certificate chain (leaf first) and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// A self-signed certificate for `names`, trusted by nobody: the lab's "wrong
    /// certificate".
    pub fn self_signed(names: &[&str]) -> Result<Self, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(TlsIdentity {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        })
    }
}

/// Behaviours and certificates of the lab TLS server.
#[derive(Debug, Clone)]
pub struct TlsLabConfig {
    /// The good identity (valid for the names the lab serves).
    pub identity: TlsIdentity,
    /// When set, the good identity is a certificate issued for the SNI of each
    /// `ClientHello` (a CDN's behaviour); `identity` is not used then.
    pub per_name: Option<Arc<IssueOnDemand>>,
    /// Served for [`TlsBehaviour::WrongCert`]; a fresh self-signed certificate for
    /// `wrong.censorprobe.invalid` when not given.
    pub wrong_identity: Option<TlsIdentity>,
    pub default: TlsBehaviour,
    /// By lowercase SNI; a `ClientHello` without SNI gets `default`.
    pub rules: HashMap<String, TlsBehaviour>,
    pub residual: Option<ResidualRule>,
}

impl TlsLabConfig {
    pub fn new(identity: TlsIdentity) -> Self {
        TlsLabConfig {
            identity,
            per_name: None,
            wrong_identity: None,
            default: TlsBehaviour::Serve,
            rules: HashMap::new(),
            residual: None,
        }
    }

    /// Present a certificate issued on demand for every name asked.
    #[must_use]
    pub fn issue_per_name(mut self, issuer: Arc<IssueOnDemand>) -> Self {
        self.per_name = Some(issuer);
        self
    }

    #[must_use]
    pub fn on(mut self, sni: &str, behaviour: TlsBehaviour) -> Self {
        self.rules.insert(sni.to_ascii_lowercase(), behaviour);
        self
    }

    #[must_use]
    pub fn otherwise(mut self, behaviour: TlsBehaviour) -> Self {
        self.default = behaviour;
        self
    }

    #[must_use]
    pub fn residual(mut self, trigger: &str, duration: Duration) -> Self {
        self.residual = Some(ResidualRule {
            trigger: trigger.to_ascii_lowercase(),
            duration,
        });
        self
    }
}

/// Residual-blocking state of one server (one IP and port).
#[derive(Debug, Default)]
struct ResidualState {
    until: Mutex<Option<Instant>>,
}

impl ResidualState {
    fn active(&self) -> bool {
        let until = self.until.lock().expect("residual lock");
        until.is_some_and(|t| Instant::now() < t)
    }

    fn trigger(&self, duration: Duration) {
        *self.until.lock().expect("residual lock") = Some(Instant::now() + duration);
    }
}

/// A running lab server; stops when dropped.
#[derive(Debug)]
pub struct LabServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for LabServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct HttpShared {
    config: HttpLabConfig,
    residual: Arc<ResidualState>,
}

struct TlsShared {
    rules: HashMap<String, TlsBehaviour>,
    default: TlsBehaviour,
    residual_rule: Option<ResidualRule>,
    residual: Arc<ResidualState>,
    serve: Arc<ServerConfig>,
    wrong: Arc<ServerConfig>,
    alert: Arc<ServerConfig>,
}

impl LabServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Start an HTTP server on `bind` (port 0 picks a free port).
    pub async fn spawn_http(bind: SocketAddr, config: HttpLabConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(http_shared(config, Arc::default()));
        let task = tokio::spawn(accept_loop(listener, move |stream| {
            let shared = Arc::clone(&shared);
            async move { serve_http(stream, &shared).await }
        }));
        Ok(LabServer { local_addr, task })
    }

    /// Start a TLS server on `bind` (port 0 picks a free port).
    pub async fn spawn_tls(bind: SocketAddr, config: TlsLabConfig) -> io::Result<Self> {
        let shared = Arc::new(tls_shared(config, Arc::default())?);
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, move |stream| {
            let shared = Arc::clone(&shared);
            async move { serve_tls(stream, &shared).await }
        }));
        Ok(LabServer { local_addr, task })
    }

    /// Start a server that speaks HTTP and TLS on one port, telling them apart by the
    /// first byte (a TLS record starts with 0x16): what a `--via` server needs, since
    /// both probes rotate over the same ports. Residual blocking triggered by either
    /// protocol resets every new connection on the port, as a censor's would.
    pub async fn spawn_dual(
        bind: SocketAddr,
        http: HttpLabConfig,
        tls: TlsLabConfig,
    ) -> io::Result<Self> {
        let residual = Arc::new(ResidualState::default());
        let http = Arc::new(http_shared(http, Arc::clone(&residual)));
        let tls = Arc::new(tls_shared(tls, residual)?);
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, move |stream| {
            let http = Arc::clone(&http);
            let tls = Arc::clone(&tls);
            async move {
                let mut first = [0u8; 1];
                let peeked = tokio::time::timeout(READ_DEADLINE, stream.peek(&mut first)).await;
                match peeked {
                    Ok(Ok(1)) if first[0] == 0x16 => serve_tls(stream, &tls).await,
                    Ok(Ok(1)) => serve_http(stream, &http).await,
                    // Nothing arrived: residual blocking still resets, as it would.
                    _ if http.residual.active() => reset(stream),
                    _ => {}
                }
            }
        }));
        Ok(LabServer { local_addr, task })
    }
}

fn http_shared(config: HttpLabConfig, residual: Arc<ResidualState>) -> HttpShared {
    HttpShared { config, residual }
}

fn tls_shared(config: TlsLabConfig, residual: Arc<ResidualState>) -> io::Result<TlsShared> {
    let wrong = match config.wrong_identity {
        Some(id) => id,
        None => {
            TlsIdentity::self_signed(&["wrong.censorprobe.invalid"]).map_err(io::Error::other)?
        }
    };
    let good = match config.per_name {
        Some(issuer) => Identity::PerName(issuer),
        None => Identity::Single(config.identity),
    };
    Ok(TlsShared {
        rules: config.rules,
        default: config.default,
        residual_rule: config.residual,
        residual,
        serve: server_config(&good, &[b"http/1.1"])?,
        wrong: server_config(&Identity::Single(wrong), &[b"http/1.1"])?,
        alert: server_config(&good, &[b"censorprobe-lab-none"])?,
    })
}

/// Where a TLS server configuration gets its certificate.
enum Identity {
    Single(TlsIdentity),
    PerName(Arc<IssueOnDemand>),
}

fn server_config(identity: &Identity, alpn: &[&[u8]]) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth();
    let mut config = match identity {
        Identity::Single(identity) => builder
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(io::Error::other)?,
        Identity::PerName(issuer) => builder.with_cert_resolver(Arc::clone(issuer) as _),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

async fn accept_loop<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // Answers go out as written: a reset after an answer follows it.
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream));
            }
            // Out of descriptors or a connection aborted before accept: keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Close with an RST: `SO_LINGER` 0, then close.
pub fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Hold a connection open, discarding what arrives, until the peer closes.
async fn hold(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(SILENT_HOLD, async {
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Read a request head; its Host header (lowercase), or `None` if no head arrived.
async fn read_request_host(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 2048];
    let read_head = async {
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&head) {
                Ok(httparse::Status::Complete(_)) => {
                    let host = request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("host"))
                        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
                    return Some(host.unwrap_or_default());
                }
                Ok(httparse::Status::Partial) if head.len() < MAX_REQUEST_HEAD => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(READ_DEADLINE, read_head)
        .await
        .ok()
        .flatten()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The good page for `host`.
pub fn lab_page(host: &str) -> Vec<u8> {
    let host = html_escape(host);
    let body = format!(
        "<!doctype html><html><head><title>censorprobe lab: {host}</title></head>\
         <body><p>Served by the censorprobe lab for {host}.</p></body></html>"
    );
    response(200, "OK", &body)
}

/// The good page for `host`, its body grown with filler paragraphs to at least `bytes`.
pub fn lab_page_of_size(host: &str, bytes: usize) -> Vec<u8> {
    const FILLER: &str =
        "<p>Filler text of the censorprobe lab, standing in for a real page.</p>\n";
    let host = html_escape(host);
    let head =
        format!("<!doctype html><html><head><title>censorprobe lab: {host}</title></head><body>\n");
    let tail = "</body></html>";
    let fill = bytes.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(bytes + FILLER.len());
    body.push_str(&head);
    while body.len() < head.len() + fill {
        body.push_str(FILLER);
    }
    body.push_str(tail);
    response(200, "OK", &body)
}

/// The lab block page (403), matched by the `censorprobe-lab` fingerprint.
pub fn lab_blockpage() -> Vec<u8> {
    let body = format!(
        "<!doctype html><html><head><title>censorprobe lab: access denied</title></head>\
         <body><!-- {LAB_BLOCKPAGE_MARKER} --><p>Access to this site is blocked by the \
         censorprobe lab.</p></body></html>"
    );
    response(403, "Forbidden", &body)
}

fn response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve_http(mut stream: TcpStream, shared: &HttpShared) {
    if shared.residual.active() {
        reset(stream);
        return;
    }
    let Some(host) = read_request_host(&mut stream).await else {
        return;
    };
    let config = &shared.config;
    let mut behaviour = config.rules.get(&host).unwrap_or(&config.default).clone();
    if let Some(rule) = config.residual.as_ref().filter(|rule| rule.trigger == host) {
        shared.residual.trigger(rule.duration);
        behaviour = HttpBehaviour::Reset;
    }
    let page = match behaviour {
        HttpBehaviour::Serve => lab_page(&host),
        HttpBehaviour::ServeAs(site) => lab_page(&site),
        HttpBehaviour::ServeThenReset => {
            if stream.write_all(&lab_page(&host)).await.is_ok() {
                // With TCP_NODELAY the page leaves as it is written; the reset follows.
                let _ = stream.flush().await;
                reset(stream);
            }
            return;
        }
        HttpBehaviour::ServeLarge(bytes) => lab_page_of_size(&host, bytes),
        HttpBehaviour::BlockPage => lab_blockpage(),
        HttpBehaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            lab_page(&host)
        }
        HttpBehaviour::Reset => return reset(stream),
        HttpBehaviour::Silent => return hold(stream).await,
        HttpBehaviour::Close => return drop(stream),
    };
    if stream.write_all(&page).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

async fn serve_tls(mut stream: TcpStream, shared: &TlsShared) {
    if shared.residual.active() {
        reset(stream);
        return;
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buf = [0u8; 4096];
    let accept = async {
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            let mut data = &buf[..n];
            while !data.is_empty() {
                acceptor.read_tls(&mut data).ok()?;
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => return Some(Ok(accepted)),
                Ok(None) => {}
                Err((_err, mut alert)) => {
                    let mut out = Vec::new();
                    let _ = alert.write_all(&mut out);
                    return Some(Err(out));
                }
            }
        }
    };
    let accepted = match tokio::time::timeout(READ_DEADLINE, accept).await {
        Ok(Some(Ok(accepted))) => accepted,
        Ok(Some(Err(alert))) => {
            let _ = stream.write_all(&alert).await;
            return;
        }
        _ => return,
    };
    let sni = accepted
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    let mut behaviour = sni
        .as_deref()
        .and_then(|name| shared.rules.get(name))
        .unwrap_or(&shared.default)
        .clone();
    let triggered = shared
        .residual_rule
        .as_ref()
        .filter(|rule| sni.as_deref() == Some(rule.trigger.as_str()));
    if let Some(rule) = triggered {
        shared.residual.trigger(rule.duration);
        behaviour = TlsBehaviour::Reset;
    }
    let reset_after = behaviour == TlsBehaviour::ServeThenReset;
    let config = match behaviour {
        TlsBehaviour::Serve | TlsBehaviour::ServeThenReset => Arc::clone(&shared.serve),
        TlsBehaviour::WrongCert => Arc::clone(&shared.wrong),
        TlsBehaviour::Alert => Arc::clone(&shared.alert),
        TlsBehaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Arc::clone(&shared.serve)
        }
        TlsBehaviour::Reset => return reset(stream),
        TlsBehaviour::Silent => return hold(stream).await,
        TlsBehaviour::Close => return drop(stream),
    };
    let start = tokio_rustls::StartHandshake::from_parts(accepted, stream);
    let Ok(Ok(mut tls)) = tokio::time::timeout(READ_DEADLINE, start.into_stream(config)).await
    else {
        return;
    };
    if reset_after {
        let _ = tls.flush().await;
        let (stream, _) = tls.into_inner();
        reset(stream);
        return;
    }
    // The probe only handshakes; wait for its close_notify or close.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(READ_DEADLINE, async {
        while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let _ = tls.shutdown().await;
}

/// A listener that never accepts: connections complete in the kernel until the
/// backlog is full, then SYNs go unanswered. Keep it alive as long as needed.
pub fn never_accepting_listener(addr: SocketAddr, backlog: i32) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// An address with nothing listening: a port bound and released at once.
pub fn closed_port(ip: IpAddr) -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0))?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

/// A test-only certificate authority; the lab's real CA lives in `servers::ca`.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls::RootCertStore;
    use rustls::pki_types::PrivateKeyDer;

    use super::TlsIdentity;

    pub(crate) struct TestPki {
        params: CertificateParams,
        key: KeyPair,
        cert: rcgen::Certificate,
    }

    impl TestPki {
        pub(crate) fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "censorprobe test CA");
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().expect("CA key");
            let cert = params.self_signed(&key).expect("CA certificate");
            TestPki { params, key, cert }
        }

        pub(crate) fn root_store(&self) -> Arc<RootCertStore> {
            let mut store = RootCertStore::empty();
            store
                .add(self.cert.der().clone())
                .expect("CA is a valid anchor");
            Arc::new(store)
        }

        /// A leaf for `names` (DNS names or address literals), chain leaf then CA.
        pub(crate) fn identity(&self, names: &[&str]) -> TlsIdentity {
            let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, names[0]);
            let key = KeyPair::generate().expect("leaf key");
            let issuer = Issuer::from_params(&self.params, &self.key);
            let leaf = params.signed_by(&key, &issuer).expect("leaf certificate");
            TlsIdentity {
                chain: vec![leaf.der().clone(), self.cert.der().clone()],
                key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    async fn get(addr: SocketAddr, host: &str) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn http_behaviours_per_host() {
        let config = HttpLabConfig::default()
            .on("reset.test", HttpBehaviour::Reset)
            .on("close.test", HttpBehaviour::Close)
            .on("blocked.test", HttpBehaviour::BlockPage);
        let srv = LabServer::spawn_http(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
            .await
            .unwrap();
        let page = get(srv.local_addr(), "Good.Test").await.unwrap();
        assert!(page.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(String::from_utf8_lossy(&page).contains("censorprobe lab: good.test"));
        let err = get(srv.local_addr(), "reset.test").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(
            get(srv.local_addr(), "close.test")
                .await
                .unwrap()
                .is_empty()
        );
        let blocked = get(srv.local_addr(), "blocked.test").await.unwrap();
        assert!(blocked.starts_with(b"HTTP/1.1 403"));
        assert!(String::from_utf8_lossy(&blocked).contains(LAB_BLOCKPAGE_MARKER));
    }

    #[tokio::test]
    async fn large_page_has_the_title_and_at_least_the_size_asked_for() {
        let config = HttpLabConfig::default().otherwise(HttpBehaviour::ServeLarge(20_000));
        let srv = LabServer::spawn_http(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
            .await
            .unwrap();
        let page = get(srv.local_addr(), "big.test").await.unwrap();
        let text = String::from_utf8_lossy(&page);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"));
        assert!(body.len() >= 20_000, "{} bytes", body.len());
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("<title>censorprobe lab: big.test</title>"));
        assert!(body.ends_with("</body></html>"));
    }

    #[tokio::test]
    async fn residual_resets_every_connection_after_the_trigger_then_recovers() {
        let config = HttpLabConfig::default().residual("trigger.test", Duration::from_millis(400));
        let srv = LabServer::spawn_http(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
            .await
            .unwrap();
        assert!(get(srv.local_addr(), "benign.test").await.is_ok());
        assert!(get(srv.local_addr(), "trigger.test").await.is_err());
        assert!(
            get(srv.local_addr(), "benign.test").await.is_err(),
            "residual window"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            get(srv.local_addr(), "benign.test").await.is_ok(),
            "window over"
        );
    }

    #[tokio::test]
    async fn serve_then_reset_delivers_the_whole_answer_then_resets() {
        let config = HttpLabConfig::default()
            .otherwise(HttpBehaviour::ServeThenReset)
            .on(
                "decoy.test",
                HttpBehaviour::ServeAs("decoy.lab.test".to_owned()),
            );
        let srv = LabServer::spawn_http(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
            .await
            .unwrap();
        let mut stream = TcpStream::connect(srv.local_addr()).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: any.test\r\n\r\n")
            .await
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        let end = loop {
            match stream.read(&mut buf).await {
                Ok(0) => break io::ErrorKind::UnexpectedEof,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => break e.kind(),
            }
        };
        assert_eq!(received, lab_page("any.test"), "the whole page first");
        assert_eq!(
            end,
            io::ErrorKind::ConnectionReset,
            "then a reset, not a FIN"
        );
        let decoy = get(srv.local_addr(), "decoy.test").await.unwrap();
        assert!(String::from_utf8_lossy(&decoy).contains("censorprobe lab: decoy.lab.test"));
    }

    #[tokio::test]
    async fn closed_port_refuses() {
        let addr = closed_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
