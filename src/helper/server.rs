//! The helper's HTTPS server: hyper (HTTP/2 and HTTP/1.1) over tokio-rustls.
//!
//! Each request goes through, in order: the per-client rate limit (429; before anything
//! else, so that a flood of bad tokens is throttled too), the path and method (404,
//! 405), the bearer token (401, compared in constant time), the size of the body (413),
//! the JSON and its version (400), the number of names (413), a measuring slot (the
//! requests measured at once are bounded; a request waits briefly for one, then 503) and
//! the request's time limit (504). Every error is a JSON [`ErrorReply`].

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::observation::web_control::{
    WEB_CONTROL_PATH, WEB_CONTROL_VERSION, WebControlReply, WebControlRequest,
};

use super::HelperError;
use super::measure::Measurer;

/// Unauthenticated liveness check (`GET`): `{"status":"ok","software":...}`.
pub const HEALTH_PATH: &str = "/v1/health";

/// Names of one request measured at once (the rest wait; the order of the reply is the
/// request's).
const NAMES_IN_FLIGHT: usize = 32;
/// Open client connections at most; more are closed at once.
const MAX_CONNECTIONS: usize = 1024;
/// Time a client has for its TLS handshake, and for sending a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often idle rate-limit entries are dropped (memory stays bounded by active clients).
const RATE_LIMIT_SWEEP: Duration = Duration::from_secs(60);

/// The server's limits.
#[derive(Debug, Clone)]
pub struct HelperLimits {
    /// Requests measured at once; others wait up to `queue_wait`, then get 503.
    pub max_concurrency: usize,
    pub queue_wait: Duration,
    /// Requests a second per client address (IPv6: per /64); 0 turns the limit off.
    pub rate_per_client: f64,
    /// Requests a client may send at once before the rate applies.
    pub burst: u32,
    /// Largest request body, in bytes (413 beyond).
    pub max_request_bytes: usize,
    /// Most names in one request (413 beyond).
    pub max_names: usize,
    /// The whole request at most (504 beyond).
    pub request_timeout: Duration,
}

impl Default for HelperLimits {
    fn default() -> Self {
        HelperLimits {
            max_concurrency: 16,
            queue_wait: Duration::from_secs(5),
            rate_per_client: 10.0,
            burst: 20,
            max_request_bytes: 256 * 1024,
            max_names: 100,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// What went wrong with a request, on the wire (`snake_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    RateLimited,
    NotFound,
    MethodNotAllowed,
    Unauthorized,
    TooLarge,
    BadRequest,
    UnsupportedVersion,
    TooManyNames,
    Busy,
    Timeout,
}

impl ErrorCode {
    fn status(self) -> StatusCode {
        match self {
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::TooLarge | ErrorCode::TooManyNames => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest | ErrorCode::UnsupportedVersion => StatusCode::BAD_REQUEST,
            ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: ErrorCode,
    pub message: String,
}

/// The liveness answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Health {
    status: String,
    software: String,
}

struct Shared {
    limits: HelperLimits,
    token_digest: [u8; 32],
    measurer: Measurer,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    slots: Semaphore,
    software: String,
}

/// A bound helper, ready to serve.
pub struct HelperServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HelperServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// A helper serving in a task of its own; stops when dropped.
#[derive(Debug)]
pub struct RunningHelper {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningHelper {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for RunningHelper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The software string of replies.
pub fn software() -> String {
    format!("censorprobe {}", env!("CARGO_PKG_VERSION"))
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The rate-limit key of a client: its address, or its /64 for IPv6 (one host usually
/// has a whole /64 to rotate through).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

fn rate_limiter(limits: &HelperLimits) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    if limits.rate_per_client <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / limits.rate_per_client);
    let burst = NonZeroU32::new(limits.burst.max(1)).expect("at least 1");
    let quota = Quota::with_period(period)?.allow_burst(burst);
    Some(RateLimiter::keyed(quota))
}

impl HelperServer {
    /// Binds `listen` (port 0 picks a free port). `token` is the bearer token clients
    /// must present.
    pub async fn bind(
        listen: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        token: &str,
        limits: HelperLimits,
        measurer: Measurer,
    ) -> Result<Self, HelperError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| HelperError::Listen {
                addr: listen,
                source,
            })?;
        let shared = Shared {
            token_digest: digest(token.as_bytes()),
            limiter: rate_limiter(&limits),
            slots: Semaphore::new(limits.max_concurrency.max(1)),
            limits,
            measurer,
            software: software(),
        };
        Ok(HelperServer {
            listener,
            acceptor: TlsAcceptor::from(tls),
            shared: Arc::new(shared),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves in a new task until the returned handle is dropped.
    pub fn spawn(self) -> RunningHelper {
        let local_addr = self.local_addr();
        let task = tokio::spawn(self.run(std::future::pending()));
        RunningHelper { local_addr, task }
    }

    /// Serves until `shutdown` resolves, then lets open connections finish their
    /// requests (at most the request timeout) before returning.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(64);
        let builder = Arc::new(builder);
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let sweeper = tokio::spawn({
            let shared = Arc::clone(&self.shared);
            async move {
                let mut tick = tokio::time::interval(RATE_LIMIT_SWEEP);
                loop {
                    tick.tick().await;
                    if let Some(limiter) = &shared.limiter {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                }
            }
        });
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of descriptors or a connection reset while queued:
                        // keep serving once things settle.
                        tracing::warn!(%err, "helper: accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let acceptor = self.acceptor.clone();
            let shared = Arc::clone(&self.shared);
            let builder = Arc::clone(&builder);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(Ok(tls)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(handle(&shared, peer.ip(), request).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(err) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%peer, %err, "helper: connection ended with an error");
                }
            });
        }
        sweeper.abort();
        drop(self.listener);
        let _ = tokio::time::timeout(
            self.shared.limits.request_timeout + HANDSHAKE_TIMEOUT,
            graceful.shutdown(),
        )
        .await;
    }
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).expect("replies serialise");
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(code: ErrorCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = json_response(
        code.status(),
        &ErrorReply {
            error: code,
            message: message.into(),
        },
    );
    let headers = response.headers_mut();
    match code {
        ErrorCode::Unauthorized => {
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        ErrorCode::RateLimited | ErrorCode::Busy => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        ErrorCode::MethodNotAllowed => {
            headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        }
        _ => {}
    }
    response
}

/// Whether the request carries the token (`Authorization: Bearer TOKEN`). The digests
/// are compared in constant time, so neither the token's bytes nor its length leak
/// through timing.
fn authorized(token_digest: &[u8; 32], headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return false;
    };
    let Some(presented) = value
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
    else {
        return false;
    };
    bool::from(digest(presented).ct_eq(token_digest))
}

async fn handle(
    shared: &Shared,
    peer: IpAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(limiter) = &shared.limiter
        && limiter.check_key(&client_key(peer)).is_err()
    {
        return error_response(
            ErrorCode::RateLimited,
            format!(
                "more than {} requests a second from this client",
                shared.limits.rate_per_client
            ),
        );
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, HEALTH_PATH) => {
            return json_response(
                StatusCode::OK,
                &Health {
                    status: "ok".to_owned(),
                    software: shared.software.clone(),
                },
            );
        }
        (&Method::POST, WEB_CONTROL_PATH) => {}
        (_, WEB_CONTROL_PATH) => {
            return error_response(ErrorCode::MethodNotAllowed, "POST a web-control request");
        }
        (_, path) => return error_response(ErrorCode::NotFound, format!("no such path {path:?}")),
    }
    if !authorized(&shared.token_digest, request.headers()) {
        return error_response(ErrorCode::Unauthorized, "missing or wrong bearer token");
    }
    let max_bytes = shared.limits.max_request_bytes;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        error_response(
            ErrorCode::TooLarge,
            format!("the request is larger than {max_bytes} bytes"),
        )
    };
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return too_large();
    }
    let body = match Limited::new(request.into_body(), max_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => return too_large(),
        Err(err) => {
            return error_response(
                ErrorCode::BadRequest,
                format!("reading the request failed: {err}"),
            );
        }
    };
    let query: WebControlRequest = match serde_json::from_slice(&body) {
        Ok(query) => query,
        Err(err) => {
            return error_response(
                ErrorCode::BadRequest,
                format!("not a web-control request: {err}"),
            );
        }
    };
    if query.version != WEB_CONTROL_VERSION {
        return error_response(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported (this helper speaks {WEB_CONTROL_VERSION})",
                query.version
            ),
        );
    }
    if query.targets.len() > shared.limits.max_names {
        return error_response(
            ErrorCode::TooManyNames,
            format!(
                "{} names in one request; at most {}",
                query.targets.len(),
                shared.limits.max_names
            ),
        );
    }
    let Ok(Ok(_slot)) =
        tokio::time::timeout(shared.limits.queue_wait, shared.slots.acquire()).await
    else {
        return error_response(
            ErrorCode::Busy,
            "the helper is measuring as many requests as it may; retry later",
        );
    };
    let measurer = &shared.measurer;
    // Owned queries: a future borrowing the request would not be `Send` for every
    // lifetime the connection task needs.
    let measure_all = futures::stream::iter(query.targets)
        .map(move |target| async move { measurer.measure(&target).await })
        .buffered(NAMES_IN_FLIGHT)
        .collect::<Vec<_>>();
    match tokio::time::timeout(shared.limits.request_timeout, measure_all).await {
        Ok(results) => json_response(
            StatusCode::OK,
            &WebControlReply {
                version: WEB_CONTROL_VERSION,
                software: shared.software.clone(),
                results,
            },
        ),
        Err(_elapsed) => error_response(
            ErrorCode::Timeout,
            format!(
                "the request took longer than the helper's {} ms",
                shared.limits.request_timeout.as_millis()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole() {
        let token = digest(b"0123456789abcdef");
        let mut headers = HeaderMap::new();
        assert!(!authorized(&token, &headers));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert!(authorized(&token, &headers));
        for wrong in [
            "Bearer 0123456789abcdeF",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "Basic 0123456789abcdef",
            "0123456789abcdef",
        ] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(wrong));
            assert!(!authorized(&token, &headers), "{wrong}");
        }
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        assert_eq!(
            client_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn error_codes_have_their_statuses() {
        assert_eq!(
            ErrorCode::TooManyNames.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ErrorCode::RateLimited.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let response = error_response(ErrorCode::Unauthorized, "no");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[http::header::WWW_AUTHENTICATE], "Bearer");
    }
}
