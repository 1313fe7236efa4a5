//! The control resolution path (`DoH`, `DoT` or plain UDP to an uncensored resolver).
//!
//! The control answers the question "what does this name resolve to when nobody tampers
//! with the query?". Its answers are compared with the resolver under test by the
//! classifier; it never judges anything itself.
//!
//! Encrypted controls (`DoT`, `DoH`) keep up with a large scan: a bounded pool of
//! long-lived connections ([`pool`]), each carrying many queries at once (`DoT`
//! pipelining with replies matched by id, [`dot`]; HTTP/2 streams, [`doh`]), with
//! timeouts counted from the send and failed exchanges retried on another connection
//! before a lookup reports a failure. The trust anchors are those of
//! [`crate::trust::root_store`] (webpki roots plus `--ca`). No caching: every question
//! goes to the control and TTLs are reported as received.
//!
//! A plain UDP control goes through hickory-resolver, configured to be a plain stub: one
//! upstream, no search domains, no `/etc/hosts`, no system configuration, caching off, a
//! short timeout with a single retry.
//!
//! Either way a few special-use names are answered without asking the control
//! (`localhost`, `*.invalid`, `*.onion`, RFC 6761/7686).

mod answer;
mod doh;
mod dot;
mod pool;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{DnsRequestOptions, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    ServerOrderingStrategy,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::{ConnectionProvider, PoolContext, Resolver, TlsConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::sync::{OnceCell, Semaphore};

use super::ProbeError;

type Result<T, E = ProbeError> = std::result::Result<T, E>;
use crate::observation::{ControlAnswer, ControlObservation, ControlOutcome, DnsRecord};
use crate::probe::web::net::{ConnectionBudget, ConnectionPermit};

/// The documented default control: Cloudflare's public `DoH` service, by address so that
/// no bootstrap lookup through a possibly-censored resolver is needed.
pub const DEFAULT_CONTROL: &str = "doh:https://1.1.1.1/dns-query";

/// Default DNS-over-TLS port (RFC 7858).
pub const DOT_PORT: u16 = 853;
/// Default plain DNS port.
pub const DNS_PORT: u16 = 53;

/// Plain control: how many retries hickory makes after a failed attempt (timeouts, connection errors,
/// SERVFAIL). One retry absorbs a lost packet without hiding a dead control for long.
const RETRIES: usize = 1;

/// Plain control: lookups in flight at once. Beyond its per-connection limit (set to
/// the same value) hickory backs off and, after about 300 ms, fails the lookup with "no
/// connections available"; the semaphore makes callers wait for a slot instead, so a large
/// scan against a slow control never turns into spurious control errors.
const MAX_IN_FLIGHT: usize = 128;

/// Where the control resolution goes, as given to `--control`.
///
/// Syntax: `doh:URL` (an `https://` URL; host may be an IP literal or a name),
/// `dot:IP[:PORT]#NAME` (port 853 by default; NAME is the name the server's certificate must
/// carry), `udp:IP[:PORT]` (port 53 by default) or `none`. IPv6 addresses with a port are
/// written in brackets: `udp:[2001:db8::1]:5353`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlSpec {
    /// DNS over HTTPS; `url` is the normalised URL (`https://host[:port]/path`).
    Doh { url: String },
    /// DNS over TLS to `addr`, verifying the certificate for `name`.
    Dot {
        addr: std::net::SocketAddr,
        name: String,
    },
    /// Plain DNS over UDP (TCP on truncation) to `addr`.
    Udp { addr: std::net::SocketAddr },
    /// No control: verdicts that need one become `inconclusive`.
    None,
}

impl FromStr for ControlSpec {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        let bad = |reason: String| ProbeError::BadAddress {
            input: s.to_owned(),
            reason,
        };
        let Some((scheme, rest)) = s.split_once(':') else {
            return Err(bad_option(s));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "doh" => parse_doh_url(rest)
                .map(|url| Self::Doh { url })
                .map_err(bad),
            "dot" => {
                let (addr, name) = rest.split_once('#').ok_or_else(|| {
                    bad("DoT needs the server's TLS name: dot:IP[:PORT]#NAME".to_owned())
                })?;
                let addr = parse_socket_addr(addr, DOT_PORT).map_err(bad)?;
                let name = parse_tls_name(name).map_err(bad)?;
                Ok(Self::Dot { addr, name })
            }
            "udp" => parse_socket_addr(rest, DNS_PORT)
                .map(|addr| Self::Udp { addr })
                .map_err(bad),
            _ => Err(bad_option(s)),
        }
    }
}

fn bad_option(input: &str) -> ProbeError {
    ProbeError::BadOption {
        option: "--control",
        reason: format!(
            "{input:?} is not one of doh:URL, dot:IP[:PORT]#NAME, udp:IP[:PORT] or none"
        ),
    }
}

/// `https://host[:port]/path` → the URL in normal form.
fn parse_doh_url(input: &str) -> std::result::Result<String, String> {
    let url = url::Url::parse(input).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!("DoH URL must use https, not {:?}", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("DoH URL must not carry credentials".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("DoH URL must not have a query or fragment (RFC 8484 POST is used)".to_owned());
    }
    match url.host() {
        None => return Err("DoH URL has no host".to_owned()),
        Some(url::Host::Domain(domain)) => {
            parse_tls_name(domain)?;
        }
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {}
    }
    Ok(url.to_string())
}

/// `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT`.
fn parse_socket_addr(input: &str, default_port: u16) -> std::result::Result<SocketAddr, String> {
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = input
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(input);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("{input:?} is not IP, IP:PORT or [IPv6]:PORT"))
}

/// A name (or IP literal) the server certificate must match, lowercased.
fn parse_tls_name(input: &str) -> std::result::Result<String, String> {
    let name = input.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty TLS server name".to_owned());
    }
    ServerName::try_from(name.as_str())
        .map_err(|e| format!("{input:?} is not a valid TLS server name: {e}"))?;
    Ok(name)
}

impl fmt::Display for ControlSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Doh { url } => write!(f, "doh:{url}"),
            Self::Dot { addr, name } => write!(f, "dot:{addr}#{name}"),
            Self::Udp { addr } => write!(f, "udp:{addr}"),
            Self::None => f.write_str("none"),
        }
    }
}

/// How questions travel to the control.
enum Transport {
    /// Plain DNS through hickory-resolver (UDP, TCP on truncation).
    Plain {
        connections: Vec<ConnectionConfig>,
        opts: ResolverOpts,
    },
    /// `DoT` or `DoH` through this module's connection pool.
    Encrypted {
        protocol: pool::Protocol,
        server_name: ServerName<'static>,
        port: u16,
        tls: Arc<rustls::ClientConfig>,
    },
}

/// Where the control is: fixed addresses, or a `DoH` host name still to be looked up.
#[derive(Debug, Clone)]
enum Upstream {
    Addresses(Vec<IpAddr>),
    /// Looked up once, on first use, with the system resolver (see [`ControlResolver::new`]).
    HostName {
        host: String,
        port: u16,
    },
}

/// A stub resolver sending every question to the configured control.
pub struct ControlResolver {
    label: String,
    upstream: Upstream,
    transport: Transport,
    tls: rustls::ClientConfig,
    /// Bounds each exchange with the control (and each connection set-up).
    timeout: Duration,
    /// Upper bound on one lookup (all attempts), enforced on top of hickory's own timeouts
    /// (plain control) and on one reachability check.
    deadline: Duration,
    ready: OnceCell<std::result::Result<Ready, String>>,
    in_flight: Arc<Semaphore>,
    /// The scan's socket budget, when shared (see [`Self::share_fd_budget`]).
    fd_budget: Option<ConnectionBudget>,
}

impl fmt::Debug for ControlResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlResolver")
            .field("control", &self.label)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl ControlResolver {
    /// Builds the resolver for `spec`; `Ok(None)` for [`ControlSpec::None`].
    ///
    /// `timeout` bounds each attempt: connection set-up, and one exchange counted from when
    /// its query is sent. An encrypted control tries a lookup up to three times (each on
    /// another connection), a plain one twice. `extra_roots` are trusted in addition to the
    /// webpki roots (for `--ca`).
    ///
    /// A `doh:` URL whose host is a name (not an IP literal) needs a bootstrap lookup. It is
    /// made once, on first use, with the system resolver (`tokio::net::lookup_host`) — the
    /// very resolver that may be censored. That is safe because the TLS handshake then
    /// verifies the server's certificate for that host name: a forged address leads to a
    /// certificate failure (the control reports errors), never to forged control answers.
    /// Prefer an IP literal (as [`DEFAULT_CONTROL`] does) where the bootstrap itself may be
    /// blocked.
    ///
    /// Construction does no I/O; [`Self::check_reachable`] and [`Self::resolve`] must run
    /// inside a Tokio runtime.
    pub fn new(
        spec: &ControlSpec,
        extra_roots: &[CertificateDer<'static>],
        timeout: Duration,
    ) -> Result<Option<Self>> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(ProbeError::ControlTlsSetup)?
        .with_root_certificates(crate::trust::root_store(extra_roots))
        .with_no_client_auth();
        let with_alpn = |alpn: &[u8]| {
            let mut config = tls.clone();
            config.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(config)
        };
        let server_name = |name: &str| {
            ServerName::try_from(name.to_owned()).map_err(|e| ProbeError::BadAddress {
                input: spec.to_string(),
                reason: format!("{name:?} is not a valid TLS server name: {e}"),
            })
        };
        let (upstream, transport) = match spec {
            ControlSpec::None => return Ok(None),
            ControlSpec::Udp { addr } => {
                // UDP first; hickory retries over TCP only when a reply is truncated.
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                (
                    Upstream::Addresses(vec![addr.ip()]),
                    Transport::Plain {
                        connections: vec![udp, tcp],
                        opts: plain_opts(timeout),
                    },
                )
            }
            ControlSpec::Dot { addr, name } => (
                Upstream::Addresses(vec![addr.ip()]),
                Transport::Encrypted {
                    protocol: pool::Protocol::Dot,
                    server_name: server_name(name)?,
                    port: addr.port(),
                    // RFC 7858 needs no ALPN; "dot" (RFC 8310) is what servers expect.
                    tls: with_alpn(b"dot"),
                },
            ),
            ControlSpec::Doh { url } => {
                let bad = |reason: String| ProbeError::BadAddress {
                    input: url.clone(),
                    reason,
                };
                let parsed = url::Url::parse(url).map_err(|source| ProbeError::BadUrl {
                    input: url.clone(),
                    source,
                })?;
                let port = parsed.port_or_known_default().unwrap_or(443);
                let (upstream, server_name_text) = match parsed.host() {
                    Some(url::Host::Ipv4(ip)) => {
                        (Upstream::Addresses(vec![ip.into()]), ip.to_string())
                    }
                    Some(url::Host::Ipv6(ip)) => {
                        (Upstream::Addresses(vec![ip.into()]), ip.to_string())
                    }
                    Some(url::Host::Domain(host)) => (
                        Upstream::HostName {
                            host: host.to_owned(),
                            port,
                        },
                        host.to_owned(),
                    ),
                    None => return Err(bad("DoH URL has no host".to_owned())),
                };
                let uri = url
                    .parse::<http::Uri>()
                    .map_err(|e| bad(format!("not an HTTP URI: {e}")))?;
                (
                    upstream,
                    Transport::Encrypted {
                        protocol: pool::Protocol::Doh { uri },
                        server_name: server_name(&server_name_text)?,
                        port,
                        tls: with_alpn(b"h2"),
                    },
                )
            }
        };
        let attempts = match &transport {
            Transport::Plain { .. } => RETRIES + 1,
            Transport::Encrypted { .. } => pool::ATTEMPTS,
        };

        Ok(Some(Self {
            label: spec.to_string(),
            upstream,
            transport,
            tls,
            timeout,
            deadline: timeout * u32::try_from(attempts).unwrap_or(3) + timeout / 2,
            ready: OnceCell::new(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            fd_budget: None,
        }))
    }

    /// The control's sockets count against `budget`. A plain-UDP control opens a socket
    /// per lookup, and outside the scan's socket budget those descriptors ran a process
    /// under a low `RLIMIT_NOFILE` out of them (`EMFILE`), turning names into "no
    /// connection to the control" verdicts; each of its lookups holds a permit while it
    /// runs. Each connection of an encrypted control holds a permit while it is open.
    /// Inside the budget, a shortage makes lookups wait.
    ///
    /// Call it before the first lookup.
    pub fn share_fd_budget(&mut self, budget: ConnectionBudget) {
        self.fd_budget = Some(budget);
    }

    /// A permit of the shared socket budget, if any, held for one lookup.
    async fn fd_permit(&self) -> Option<ConnectionPermit> {
        match &self.fd_budget {
            Some(budget) => Some(budget.acquire().await),
            None => None,
        }
    }

    /// The control as configured (`doh:URL`, `dot:IP:PORT#NAME`, `udp:IP:PORT`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Checks that the control answers DNS at all, by asking it for the root zone's NS
    /// records (`. NS`), once per server address, over a connection of its own (outside
    /// the pool the lookups use).
    ///
    /// Any DNS response counts, whatever its code (NOERROR, NXDOMAIN, REFUSED, SERVFAIL...):
    /// the question is whether the path to the control works, not what it thinks of the
    /// root. Fails with [`ProbeError::ControlUnreachable`] on timeouts, refused connections, TLS
    /// failures (e.g. an untrusted certificate), HTTP errors and bootstrap failures, with
    /// the cause. (For a plain control the direct exchange keeps that cause: hickory's pool
    /// reports connection failures only as "no connections available".)
    pub async fn check_reachable(&self) -> Result<()> {
        let unreachable = |reason: String| ProbeError::ControlUnreachable {
            control: self.label.clone(),
            reason,
        };
        let ready = self.ready().await.map_err(unreachable)?;
        let mut failures = Vec::new();
        for &ip in ready.ips() {
            let attempt = match ready {
                Ready::Plain { .. } => {
                    let _slot = self.in_flight.acquire().await;
                    let _fd = self.fd_permit().await;
                    tokio::time::timeout(self.deadline, self.ask_root(ip)).await
                }
                Ready::Encrypted { pool, .. } => {
                    tokio::time::timeout(self.deadline, pool.probe(ip)).await
                }
            };
            match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(reason)) => failures.push(format!("{ip}: {reason}")),
                Err(_) => failures.push(format!(
                    "{ip}: no answer within {} ms",
                    self.deadline.as_millis()
                )),
            }
        }
        Err(unreachable(failures.join("; ")))
    }

    /// One `. NS` exchange with the plain control at `ip`.
    async fn ask_root(&self, ip: IpAddr) -> std::result::Result<(), String> {
        let Transport::Plain { connections, opts } = &self.transport else {
            return Err("not a plain DNS control".to_owned());
        };
        let connection = connections
            .first()
            .ok_or_else(|| "no transport configured".to_owned())?;
        let mut tls = TlsConfig::new().map_err(|e| describe_error(&e))?;
        tls.config = self.tls.clone();
        let cx = PoolContext::new(opts.clone(), tls);
        let provider = TokioRuntimeProvider::default();
        let exchange = provider
            .new_connection(ip, connection, &cx)
            .map_err(|e| describe_error(&e))?
            .await
            .map_err(|e| describe_error(&e))?;
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = true;
        exchange
            .lookup(Query::query(Name::root(), RecordType::NS), options)
            .first_answer()
            .await
            .map(|_response| ())
            .map_err(|e| describe_error(&e))
    }

    /// Asks the control for `name` once per query type (concurrently).
    ///
    /// `name` may carry a trailing dot; it is always looked up as a fully-qualified name.
    pub async fn resolve(&self, name: &str, qtypes: &[RecordType]) -> ControlObservation {
        let answers =
            futures::future::join_all(qtypes.iter().map(|&qtype| self.resolve_one(name, qtype)))
                .await;
        ControlObservation {
            control: self.label.clone(),
            answers,
        }
    }

    async fn resolve_one(&self, name: &str, qtype: RecordType) -> ControlAnswer {
        let answer = |outcome, elapsed_ms| ControlAnswer {
            qtype: qtype.to_string(),
            outcome,
            elapsed_ms,
        };
        let qname = match fqdn(name) {
            Ok(qname) => qname,
            Err(message) => return answer(ControlOutcome::Error { message }, 0.0),
        };
        let ready = match self.ready().await {
            Ok(ready) => ready,
            Err(message) => return answer(ControlOutcome::Error { message }, 0.0),
        };
        let (resolver, provider) = match ready {
            Ready::Plain {
                resolver, provider, ..
            } => (resolver, provider),
            Ready::Encrypted { pool, .. } => {
                if let Some(outcome) = answer::special_use_outcome(&qname, qtype) {
                    return answer(outcome, 0.0);
                }
                let start = Instant::now();
                let query = Query::query(qname.clone(), qtype);
                let (result, attempts) = pool.ask(&query).await;
                let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
                let outcome = match result {
                    Ok(reply) => answer::outcome_of_reply(&qname, qtype, &reply),
                    Err(e) if attempts > 1 => ControlOutcome::Error {
                        message: format!("{e} ({attempts} attempts)"),
                    },
                    Err(e) => ControlOutcome::Error {
                        message: e.to_string(),
                    },
                };
                return answer(outcome, elapsed_ms);
            }
        };
        let _slot = self.in_flight.acquire().await;
        let _fd = self.fd_permit().await;
        let start = Instant::now();
        let result = tokio::time::timeout(self.deadline, resolver.lookup(qname, qtype)).await;
        let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
        let outcome = match result {
            Ok(Ok(lookup)) => {
                let records: Vec<DnsRecord> = lookup
                    .answers()
                    .iter()
                    .map(crate::probe::dns::record_of)
                    .collect();
                if records.is_empty() {
                    ControlOutcome::NoData
                } else {
                    ControlOutcome::Resolved {
                        ips: records.iter().filter_map(DnsRecord::ip).collect(),
                        records,
                    }
                }
            }
            Ok(Err(NetError::NoConnections)) => ControlOutcome::Error {
                message: match provider.last_failure() {
                    Some(failure) => format!("no connection to the control: {failure}"),
                    None => describe_error(&NetError::NoConnections),
                },
            },
            Ok(Err(e)) => outcome_of_error(&e),
            Err(_) => ControlOutcome::Error {
                message: format!("no answer within {} ms", self.deadline.as_millis()),
            },
        };
        answer(outcome, elapsed_ms)
    }

    /// The upstream addresses and the hickory resolver, set up on first use (after the `DoH`
    /// bootstrap lookup, if any). A failed bootstrap is remembered: it is not retried for
    /// every name.
    async fn ready(&self) -> std::result::Result<&Ready, String> {
        self.ready
            .get_or_init(|| self.set_up())
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn set_up(&self) -> std::result::Result<Ready, String> {
        let ips = match &self.upstream {
            Upstream::Addresses(ips) => ips.clone(),
            Upstream::HostName { host, port } => {
                let found = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| format!("cannot resolve DoH host {host:?}: {e}"))?;
                let mut ips: Vec<IpAddr> = Vec::new();
                for addr in found {
                    if !ips.contains(&addr.ip()) {
                        ips.push(addr.ip());
                    }
                }
                if ips.is_empty() {
                    return Err(format!("DoH host {host:?} has no address"));
                }
                tracing::info!(%host, ?ips, "bootstrapped DoH control host with the system resolver");
                ips
            }
        };
        let (connections, opts) = match &self.transport {
            Transport::Plain { connections, opts } => (connections, opts),
            Transport::Encrypted {
                protocol,
                server_name,
                port,
                tls,
            } => {
                let endpoint = pool::Endpoint {
                    protocol: protocol.clone(),
                    server_name: server_name.clone(),
                    port: *port,
                    tls: Arc::clone(tls),
                    timeout: self.timeout,
                };
                let pool = pool::Pool::new(endpoint, ips.clone(), self.fd_budget.clone());
                return Ok(Ready::Encrypted { ips, pool });
            }
        };
        let servers = ips
            .iter()
            .map(|&ip| NameServerConfig::new(ip, true, connections.clone()))
            .collect();
        let provider = RecordingProvider::default();
        let resolver = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            provider.clone(),
        )
        .with_options(opts.clone())
        .with_tls_config(self.tls.clone())
        .build()
        .map_err(|e| format!("cannot build the control resolver: {e}"))?;
        Ok(Ready::Plain {
            ips,
            resolver,
            provider,
        })
    }
}

/// hickory-resolver as a plain stub (see the module documentation).
fn plain_opts(timeout: Duration) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = RETRIES;
    // Caching off: every question goes to the control, TTLs are reported as received.
    opts.cache_size = 0;
    opts.negative_max_ttl = Some(Duration::ZERO);
    opts.use_hosts_file = ResolveHosts::Never;
    opts.num_concurrent_reqs = 1;
    opts.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    opts.max_active_requests = MAX_IN_FLIGHT;
    opts.preserve_intermediates = true;
    opts.recursion_desired = true;
    opts
}

/// A control ready for questions.
enum Ready {
    Plain {
        ips: Vec<IpAddr>,
        resolver: Resolver<RecordingProvider>,
        provider: RecordingProvider,
    },
    Encrypted {
        ips: Vec<IpAddr>,
        pool: pool::Pool,
    },
}

impl Ready {
    fn ips(&self) -> &[IpAddr] {
        match self {
            Self::Plain { ips, .. } | Self::Encrypted { ips, .. } => ips,
        }
    }
}

/// hickory's connection provider, remembering why the last connection attempt failed.
///
/// hickory's server pool reports failed connections (refused, TLS certificate rejected,
/// handshake timeout) to the caller only as "no connections available"; the observation
/// should say what actually went wrong.
#[derive(Clone, Default)]
struct RecordingProvider {
    inner: TokioRuntimeProvider,
    last_failure: Arc<Mutex<Option<String>>>,
}

impl RecordingProvider {
    fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ConnectionProvider for RecordingProvider {
    type Conn = <TokioRuntimeProvider as ConnectionProvider>::Conn;
    type FutureConn =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Conn, NetError>> + Send>>;
    type RuntimeProvider = TokioRuntimeProvider;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        cx: &PoolContext,
    ) -> std::result::Result<Self::FutureConn, NetError> {
        let connecting = self.inner.new_connection(ip, config, cx)?;
        let last_failure = Arc::clone(&self.last_failure);
        Ok(Box::pin(async move {
            connecting.await.inspect_err(|e| {
                *last_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(format!("{ip}: {}", describe_error(e)));
            })
        }))
    }

    fn runtime_provider(&self) -> &Self::RuntimeProvider {
        &self.inner
    }
}

/// `name` as a fully-qualified DNS name (no search list applies).
fn fqdn(name: &str) -> std::result::Result<Name, String> {
    let mut qname =
        Name::from_ascii(name).map_err(|e| format!("invalid domain name {name:?}: {e}"))?;
    qname.set_fqdn(true);
    Ok(qname)
}

/// Splits hickory's errors into the three negative outcomes. Only an actual DNS response
/// makes NXDOMAIN or no-data; everything else is an error with its cause.
fn outcome_of_error(e: &NetError) -> ControlOutcome {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })) => {
            match *response_code {
                ResponseCode::NXDomain => ControlOutcome::Nxdomain,
                ResponseCode::NoError => ControlOutcome::NoData,
                other => ControlOutcome::Error {
                    message: format!("no records, response code {other:?}"),
                },
            }
        }
        other => ControlOutcome::Error {
            message: describe_error(other),
        },
    }
}

fn describe_error(e: &NetError) -> String {
    match e {
        NetError::Dns(DnsError::ResponseCode(code)) => format!("response code {code:?}"),
        NetError::Timeout => "timed out".to_owned(),
        NetError::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(tls) => format!("TLS handshake failed: {tls}"),
            None => format!("connection failed: {io}"),
        },
        NetError::NoConnections => "no connection to the control could be made".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn parse(s: &str) -> ControlSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_form_with_default_ports() {
        assert_eq!(parse("none"), ControlSpec::None);
        assert_eq!(
            parse("udp:198.18.0.53"),
            ControlSpec::Udp {
                addr: SocketAddr::new(Ipv4Addr::new(198, 18, 0, 53).into(), 53)
            }
        );
        assert_eq!(
            parse("udp:[2001:db8::1]:5353"),
            ControlSpec::Udp {
                addr: SocketAddr::new("2001:db8::1".parse::<Ipv6Addr>().unwrap().into(), 5353)
            }
        );
        assert_eq!(
            parse("udp:2001:db8::1"),
            ControlSpec::Udp {
                addr: SocketAddr::new("2001:db8::1".parse::<Ipv6Addr>().unwrap().into(), 53)
            }
        );
        assert_eq!(
            parse("dot:198.18.0.53#DNS.Lab.Example."),
            ControlSpec::Dot {
                addr: "198.18.0.53:853".parse().unwrap(),
                name: "dns.lab.example".to_owned()
            }
        );
        assert_eq!(
            parse("dot:198.18.0.53:8853#dns.lab.example"),
            ControlSpec::Dot {
                addr: "198.18.0.53:8853".parse().unwrap(),
                name: "dns.lab.example".to_owned()
            }
        );
        assert_eq!(
            parse(DEFAULT_CONTROL),
            ControlSpec::Doh {
                url: "https://1.1.1.1/dns-query".to_owned()
            }
        );
        assert_eq!(
            parse("doh:https://DNS.lab.example:8443/dns-query"),
            ControlSpec::Doh {
                url: "https://dns.lab.example:8443/dns-query".to_owned()
            }
        );
        assert_eq!(
            parse("doh:https://[2001:db8::1]/q"),
            ControlSpec::Doh {
                url: "https://[2001:db8::1]/q".to_owned()
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "none",
            "udp:198.18.0.53:53",
            "udp:[2001:db8::1]:5353",
            "dot:198.18.0.53:853#dns.lab.example",
            "dot:[::1]:853#localhost",
            "doh:https://1.1.1.1/dns-query",
            "doh:https://dns.lab.example:8443/dns-query",
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
    }

    #[test]
    fn rejects_bad_syntax_with_the_reason() {
        let cases = [
            ("tcp:1.2.3.4", "not one of"),
            ("1.2.3.4", "not one of"),
            ("udp:not-an-ip", "not IP"),
            ("udp:1.2.3.4:99999", "not IP"),
            ("dot:198.18.0.53", "TLS name"),
            ("dot:198.18.0.53#", "empty TLS server name"),
            ("dot:198.18.0.53#bad name!", "not a valid TLS server name"),
            ("doh:http://1.1.1.1/dns-query", "must use https"),
            ("doh:1.1.1.1", "not a URL"),
            ("doh:https://u:p@1.1.1.1/dns-query", "credentials"),
            ("doh:https://1.1.1.1/dns-query?dns=x", "query"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<ControlSpec>().unwrap_err();
            let text = err.to_string();
            assert!(text.contains(reason), "{input}: {text}");
            match err {
                ProbeError::BadAddress { .. } | ProbeError::BadOption { .. } => {}
                other => panic!("{input}: unexpected error kind {other:?}"),
            }
        }
    }

    #[test]
    fn none_builds_no_resolver() {
        assert!(
            ControlResolver::new(&ControlSpec::None, &[], Duration::from_secs(1))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn error_outcomes_keep_nxdomain_nodata_and_failures_apart() {
        let query = hickory_proto::op::Query::query(Name::root(), RecordType::A);
        let nx = NetError::from(NoRecords::new(query.clone(), ResponseCode::NXDomain));
        let nodata = NetError::from(NoRecords::new(query, ResponseCode::NoError));
        assert_eq!(outcome_of_error(&nx), ControlOutcome::Nxdomain);
        assert_eq!(outcome_of_error(&nodata), ControlOutcome::NoData);
        assert_eq!(
            outcome_of_error(&NetError::Dns(DnsError::ResponseCode(
                ResponseCode::ServFail
            ))),
            ControlOutcome::Error {
                message: "response code ServFail".to_owned()
            }
        );
        assert_eq!(
            outcome_of_error(&NetError::Timeout),
            ControlOutcome::Error {
                message: "timed out".to_owned()
            }
        );
    }
}
