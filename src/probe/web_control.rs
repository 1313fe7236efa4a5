//! The probe's side of the web control (`scan --web-control URL`): a client that asks a
//! `censorprobe helper` on an uncensored vantage to measure the names the scan measures.
//!
//! Targets ask one at a time ([`WebControlClient::ask`]); a batcher task gathers the
//! queries into batches (up to `batch` names, or what arrived within `linger` of the
//! first), keeps at most `max_in_flight` batches on the wire, and gives each batch a
//! deadline. Whatever goes wrong with a batch (helper down, slow, refusing the token,
//! answering nonsense) becomes [`WebControlObservation::Failed`] for each of its names:
//! the probe's own observations never wait longer than the deadline and are never lost.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::observation::web_control::{
    WEB_CONTROL_PATH, WEB_CONTROL_VERSION, WebControlObservation, WebControlQuery, WebControlReply,
    WebControlRequest,
};
use crate::probe::web::tls::TlsProber;

/// Names in one batch when `--web-control-batch` names no number.
pub const DEFAULT_BATCH: usize = 20;
/// How long the first name of a batch waits for more to join it.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(50);
/// Deadline of one batch (request to complete reply) when `--web-control-timeout` names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Batches on the wire at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// The most addresses one name asks the helper to test (the helper bounds them too).
pub const MAX_QUERY_ADDRESSES: usize = 8;
/// The largest reply read: a helper's answer carries observations, not pages.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// The most of an error body quoted in a failure.
const ERROR_BODY_QUOTED: usize = 200;

/// Why a web control client cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebControlError {
    #[error("invalid option --web-control: {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot read the web control token {path}")]
    TokenRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the web control token file {path} is empty")]
    EmptyToken { path: String },
    #[error("cannot set up TLS for the web control")]
    Tls(#[source] rustls::Error),
}

/// Where the helper is and how to talk to it.
#[derive(Debug, Clone)]
pub struct WebControlConfig {
    /// The helper's base URL (`https://host:port`); the endpoint is [`WEB_CONTROL_PATH`].
    pub url: String,
    /// The bearer token (never recorded).
    pub token: String,
    /// Trust anchors for the helper's certificate; empty: the Mozilla roots.
    pub roots: Vec<CertificateDer<'static>>,
    pub batch: usize,
    pub linger: Duration,
    pub timeout: Duration,
    pub max_in_flight: usize,
}

impl WebControlConfig {
    /// A configuration with the default batching and deadline.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> WebControlConfig {
        WebControlConfig {
            url: url.into(),
            token: token.into(),
            roots: Vec::new(),
            batch: DEFAULT_BATCH,
            linger: DEFAULT_LINGER,
            timeout: DEFAULT_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Reads a token file: its content, surrounding whitespace (a trailing newline) removed.
pub fn read_token(path: &Path) -> Result<String, WebControlError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebControlError::TokenRead {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(WebControlError::EmptyToken {
            path: path.display().to_string(),
        });
    }
    Ok(token.to_owned())
}

/// The endpoint of a helper's base URL; only `https` (the token must not travel in clear).
pub fn endpoint(url: &str) -> Result<Uri, WebControlError> {
    let bad = |reason: &str| WebControlError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(bad("the scheme must be https"));
    }
    if parsed.host().is_none() {
        return Err(bad("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(bad("a base URL has no query, fragment or user"));
    }
    let base = parsed.as_str().trim_end_matches('/');
    format!("{base}{WEB_CONTROL_PATH}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))
}

/// One name waiting for its batch.
struct Pending {
    query: WebControlQuery,
    reply: oneshot::Sender<WebControlObservation>,
}

/// Asks the helper; cheap to share (`Arc`). Dropping it ends the batcher once the
/// batches in flight are answered.
#[derive(Debug)]
pub struct WebControlClient {
    queue: mpsc::Sender<Pending>,
    helper: String,
}

type HelperHttp = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What every batch shares.
struct Batcher {
    http: HelperHttp,
    endpoint: Uri,
    helper: String,
    authorization: String,
    timeout: Duration,
}

impl WebControlClient {
    /// Starts the batcher (needs a Tokio runtime). Nothing is sent before a name asks.
    pub fn start(config: WebControlConfig) -> Result<WebControlClient, WebControlError> {
        let endpoint = endpoint(&config.url)?;
        let roots = if config.roots.is_empty() {
            RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }
        } else {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(config.roots.iter().cloned());
            store
        };
        let tls = ClientConfig::builder_with_provider(TlsProber::provider())
            .with_safe_default_protocol_versions()
            .map_err(WebControlError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        // Keep-alive (and HTTP/2 when the helper offers it): batches reuse connections.
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let helper = config.url.clone();
        let batcher = Arc::new(Batcher {
            http,
            endpoint,
            helper: helper.clone(),
            authorization: format!("Bearer {}", config.token),
            timeout: config.timeout,
        });
        let batch = config.batch.max(1);
        let (queue, rx) = mpsc::channel(batch * 4);
        tokio::spawn(run_batcher(
            batcher,
            rx,
            batch,
            config.linger,
            config.max_in_flight.max(1),
        ));
        Ok(WebControlClient { queue, helper })
    }

    /// The helper's URL, as records name it.
    pub fn helper(&self) -> &str {
        &self.helper
    }

    /// What the helper saw for `query`, or why it said nothing.
    pub async fn ask(&self, query: WebControlQuery) -> WebControlObservation {
        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Pending { query, reply }).await.is_err() {
            return self.failed("the web control client stopped", started);
        }
        match answer.await {
            Ok(observation) => observation,
            Err(_) => self.failed("the web control client stopped", started),
        }
    }

    fn failed(&self, error: &str, started: Instant) -> WebControlObservation {
        WebControlObservation::Failed {
            helper: self.helper.clone(),
            error: error.to_owned(),
            ms: elapsed_ms(started),
        }
    }
}

/// The query for a name: `addresses` de-duplicated in order and bounded.
pub fn query(
    name: &str,
    addresses: impl IntoIterator<Item = IpAddr>,
    http_port: Option<u16>,
    tls_port: Option<u16>,
) -> WebControlQuery {
    let mut unique: Vec<IpAddr> = Vec::new();
    for ip in addresses {
        if unique.len() == MAX_QUERY_ADDRESSES {
            break;
        }
        if !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    WebControlQuery {
        name: name.to_owned(),
        addresses: unique,
        http_port,
        tls_port,
    }
}

async fn run_batcher(
    batcher: Arc<Batcher>,
    mut rx: mpsc::Receiver<Pending>,
    batch: usize,
    linger: Duration,
    max_in_flight: usize,
) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while pending.len() < batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => pending.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let batcher = Arc::clone(&batcher);
        tokio::spawn(async move {
            batcher.send(pending).await;
            drop(permit);
        });
    }
}

impl Batcher {
    /// Sends one batch and answers each of its names.
    async fn send(&self, pending: Vec<Pending>) {
        let started = Instant::now();
        let (queries, replies): (Vec<WebControlQuery>, Vec<_>) =
            pending.into_iter().map(|p| (p.query, p.reply)).unzip();
        let names: Vec<String> = queries.iter().map(|q| q.name.clone()).collect();
        let outcome = tokio::time::timeout(self.timeout, self.exchange(queries)).await;
        let ms = elapsed_ms(started);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "timeout: no complete reply within {:?}",
                self.timeout
            )),
        };
        match outcome {
            Ok(reply) => {
                let software = reply.software;
                let mut results = reply.results.into_iter();
                for (name, answer) in names.iter().zip(replies) {
                    let observation = match results.next() {
                        Some(result) if result.name.eq_ignore_ascii_case(name) => {
                            WebControlObservation::Answered {
                                helper: self.helper.clone(),
                                software: software.clone(),
                                ms,
                                result: Box::new(result),
                            }
                        }
                        Some(result) => self.failed(
                            format!(
                                "bad reply: result for {:?} where {name:?} was asked",
                                result.name
                            ),
                            ms,
                        ),
                        None => self.failed(format!("bad reply: no result for {name:?}"), ms),
                    };
                    // A target that stopped waiting (the scan was interrupted) is no error.
                    let _ = answer.send(observation);
                }
            }
            Err(error) => {
                for answer in replies {
                    let _ = answer.send(self.failed(error.clone(), ms));
                }
            }
        }
    }

    fn failed(&self, error: String, ms: f64) -> WebControlObservation {
        WebControlObservation::Failed {
            helper: self.helper.clone(),
            error,
            ms,
        }
    }

    /// The request and its reply, checked; `Err` is the one-line reason.
    async fn exchange(&self, targets: Vec<WebControlQuery>) -> Result<WebControlReply, String> {
        let asked = targets.len();
        let body = serde_json::to_vec(&WebControlRequest {
            version: WEB_CONTROL_VERSION,
            targets,
        })
        .map_err(|e| format!("cannot encode the request: {e}"))?;
        let request = Request::post(self.endpoint.clone())
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| format!("unreachable: {}", error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reply cut short: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!("HTTP {status}: {}", quote(&body)));
        }
        let reply: WebControlReply = serde_json::from_slice(&body)
            .map_err(|e| format!("bad reply: not a web control reply: {e}"))?;
        if reply.version != WEB_CONTROL_VERSION {
            return Err(format!(
                "bad reply: protocol version {} (this probe speaks {WEB_CONTROL_VERSION})",
                reply.version
            ));
        }
        if reply.results.len() != asked {
            return Err(format!(
                "bad reply: {} results for {asked} names",
                reply.results.len()
            ));
        }
        Ok(reply)
    }
}

/// An error and its causes on one line (hyper's own message is only the outermost).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of an error body, on one line.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_QUOTED)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_base_urls_are_accepted() {
        assert_eq!(
            endpoint("https://198.18.0.9:8443").unwrap().to_string(),
            "https://198.18.0.9:8443/v1/web-control"
        );
        assert_eq!(
            endpoint("https://helper.example/base/")
                .unwrap()
                .to_string(),
            "https://helper.example/base/v1/web-control"
        );
        for bad in [
            "http://198.18.0.9:8080",
            "helper.example",
            "https://h.example/?a=1",
            "https://user@h.example/",
        ] {
            assert!(
                matches!(endpoint(bad), Err(WebControlError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_query_keeps_addresses_in_order_without_repeats_and_bounded() {
        let ips: Vec<IpAddr> = (1..=20)
            .map(|i| IpAddr::from([198, 18, 0, i]))
            .chain([IpAddr::from([198, 18, 0, 1])])
            .collect();
        let q = query("example.com", [ips[1], ips[0], ips[1]], Some(80), None);
        assert_eq!(q.addresses, vec![ips[1], ips[0]]);
        let q = query("example.com", ips.clone(), None, Some(443));
        assert_eq!(q.addresses, ips[..MAX_QUERY_ADDRESSES].to_vec());
    }

    #[test]
    fn a_token_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "s3cret");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(
            read_token(&path),
            Err(WebControlError::EmptyToken { .. })
        ));
        assert!(matches!(
            read_token(&dir.path().join("missing")),
            Err(WebControlError::TokenRead { .. })
        ));
    }
}
