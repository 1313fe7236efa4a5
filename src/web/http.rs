//! The HTTP probe: one plain HTTP/1.1 GET to (ip, port) with exactly the given Host
//! header, written byte for byte (our header case and order), the response parsed
//! with httparse, and every way the exchange can end recorded.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::net::{self, ConnectionBudget, IoFailure, classify_io_error, ms_between};
use super::observation::{HttpExchangeEnd, HttpHeader, HttpObservation, HttpResponse, Stage};
use super::tcpinfo::{self, StallPolicy};

/// A common browser User-Agent: a probe that announces itself may be treated
/// differently from the users whose experience it measures.
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Largest status line plus headers accepted before the response is called malformed.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers parsed from one response.
const MAX_HEADERS: usize = 128;
/// Size of the read buffer per connection.
const READ_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct HttpProbeConfig {
    pub connect_timeout: Duration,
    /// Deadline for writing the request and reading the whole response, counted from
    /// the end of the connect.
    pub response_timeout: Duration,
    pub user_agent: String,
    /// Body bytes read at most (the rest is not downloaded; `body_capped` says so).
    pub body_cap: usize,
    /// Body bytes kept in memory for block-page matching (not reported).
    pub body_keep: usize,
}

impl Default for HttpProbeConfig {
    fn default() -> Self {
        HttpProbeConfig {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            body_cap: 64 * 1024,
            body_keep: 16 * 1024,
        }
    }
}

/// Whether `value` can go into a header line as is: visible ASCII only (no spaces,
/// no CR/LF that would let a name inject headers).
pub fn valid_host_header(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The request, byte for byte: our header case and order, `Connection: close` so the
/// server ends the exchange.
pub fn build_request(host: &str, user_agent: &str) -> Vec<u8> {
    let mut request = Vec::with_capacity(96 + host.len() + user_agent.len());
    request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: ");
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(b"\r\nUser-Agent: ");
    request.extend_from_slice(user_agent.as_bytes());
    request.extend_from_slice(b"\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    request
}

/// Sends HTTP probes; cheap to share (`Clone`) between tasks.
#[derive(Debug, Clone)]
pub struct HttpProber {
    config: HttpProbeConfig,
    budget: ConnectionBudget,
}

impl HttpProber {
    /// `config.user_agent` must be a valid header value (visible ASCII and spaces).
    pub fn new(config: HttpProbeConfig, budget: ConnectionBudget) -> Self {
        HttpProber { config, budget }
    }

    pub fn config(&self) -> &HttpProbeConfig {
        &self.config
    }

    /// One GET to (ip, port) with `Host: host`. Never fails: every outcome is an
    /// observation. `host` must satisfy [`valid_host_header`] (the caller checks).
    pub async fn probe(&self, ip: IpAddr, port: u16, host: &str) -> HttpObservation {
        let request = build_request(host, &self.config.user_agent);
        let (connect, start, conn) =
            net::connect(ip, port, self.config.connect_timeout, &self.budget).await;
        let mut obs = HttpObservation {
            ip,
            port,
            host: host.to_owned(),
            connect,
            request_length: request.len(),
            request_bytes_sent: 0,
            exchange: None,
            failed_at: None,
            bytes_received: 0,
            response: None,
            error: None,
            errno: None,
            first_byte_ms: None,
            total_ms: 0.0,
            capture: None,
        };
        let Some(conn) = conn else {
            obs.failed_at = Some(Stage::Connect);
            obs.total_ms = ms_between(start, Instant::now());
            return obs;
        };
        let mut stream = conn.stream;
        let deadline = tokio::time::Instant::now() + self.config.response_timeout;

        // Write the request, counting what the kernel accepted.
        while obs.request_bytes_sent < request.len() {
            let write = stream.write(&request[obs.request_bytes_sent..]);
            let failure = match tokio::time::timeout_at(deadline, write).await {
                Ok(Ok(0)) => Some((HttpExchangeEnd::RequestFailed, None)),
                Ok(Ok(n)) => {
                    obs.request_bytes_sent += n;
                    None
                }
                Ok(Err(err)) => {
                    let end = match classify_io_error(&err) {
                        IoFailure::Reset => HttpExchangeEnd::ResetAfterRequest,
                        IoFailure::TimedOut => HttpExchangeEnd::TimeoutAfterRequest,
                        IoFailure::Refused | IoFailure::Other => HttpExchangeEnd::RequestFailed,
                    };
                    Some((end, Some(err)))
                }
                Err(_elapsed) => Some((HttpExchangeEnd::TimeoutAfterRequest, None)),
            };
            if let Some((end, err)) = failure {
                obs.exchange = Some(end);
                obs.failed_at = Some(Stage::Request);
                if let Some(err) = err {
                    obs.errno = err.raw_os_error();
                    obs.error = Some(err.to_string());
                }
                obs.total_ms = ms_between(start, Instant::now());
                return obs;
            }
        }
        let request_done = Instant::now();

        let mut reader = ResponseReader::new(self.config.body_cap, self.config.body_keep);
        let mut buf = vec![0u8; READ_BUFFER];
        let (mut receiver, sender) = stream.split();
        // Before any answer: the request never ACKed while retransmitted is a drop.
        let mut dropped = Box::pin(tcpinfo::dropped_in_path(
            sender.as_ref(),
            obs.request_bytes_sent as u64,
            request_done,
            StallPolicy::default(),
        ));
        let end = loop {
            let read = tokio::select! {
                biased;
                read = tokio::time::timeout_at(deadline, receiver.read(&mut buf)) => read,
                stall = &mut dropped, if obs.bytes_received == 0 => {
                    obs.error = Some(stall.to_string());
                    break HttpExchangeEnd::TimeoutAfterRequest;
                }
            };
            match read {
                Err(_elapsed) => {
                    break if obs.bytes_received == 0 {
                        HttpExchangeEnd::TimeoutAfterRequest
                    } else {
                        HttpExchangeEnd::TimeoutDuringResponse
                    };
                }
                Ok(Ok(0)) => break reader.end_at_eof(obs.bytes_received),
                Ok(Ok(n)) => {
                    if obs.first_byte_ms.is_none() {
                        obs.first_byte_ms = Some(ms_between(request_done, Instant::now()));
                    }
                    obs.bytes_received += n as u64;
                    match reader.feed(&buf[..n]) {
                        Ok(true) => break HttpExchangeEnd::Complete,
                        Ok(false) => {}
                        Err(reason) => {
                            obs.error = Some(reason);
                            break HttpExchangeEnd::MalformedResponse;
                        }
                    }
                }
                Ok(Err(err)) => {
                    let end = match classify_io_error(&err) {
                        IoFailure::Reset if obs.bytes_received == 0 => {
                            HttpExchangeEnd::ResetAfterRequest
                        }
                        IoFailure::Reset => HttpExchangeEnd::ResetDuringResponse,
                        IoFailure::TimedOut if obs.bytes_received == 0 => {
                            HttpExchangeEnd::TimeoutAfterRequest
                        }
                        IoFailure::TimedOut => HttpExchangeEnd::TimeoutDuringResponse,
                        IoFailure::Refused | IoFailure::Other => HttpExchangeEnd::ReadFailed,
                    };
                    obs.errno = err.raw_os_error();
                    obs.error = Some(err.to_string());
                    break end;
                }
            }
        };
        drop(dropped);
        obs.exchange = Some(end);
        if end != HttpExchangeEnd::Complete {
            obs.failed_at = Some(if obs.bytes_received == 0 {
                Stage::Request
            } else {
                Stage::Response
            });
        }
        obs.response = reader.into_response();
        obs.total_ms = ms_between(start, Instant::now());
        let capped = obs.response.as_ref().is_some_and(|r| r.body_capped);
        if end == HttpExchangeEnd::Complete && !capped {
            // `Connection: close`: the server closes now; let it close first.
            net::await_server_close(&mut stream).await;
        }
        obs
    }
}

/// How the body of a response is delimited.
#[derive(Debug)]
enum Framing {
    /// `Content-Length`: this many bytes remain.
    Length(u64),
    Chunked(ChunkState),
    /// No framing: the body ends when the server closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data; this many bytes remain.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
}

/// Body bytes as they are decoded: hashed and counted up to the cap, the first
/// `keep` bytes kept.
#[derive(Debug)]
struct BodySink {
    cap: usize,
    keep: usize,
    length: usize,
    capped: bool,
    hasher: Sha256,
    prefix: Vec<u8>,
}

impl BodySink {
    fn take(&mut self, bytes: &[u8]) {
        let room = self.cap - self.length;
        let used = &bytes[..bytes.len().min(room)];
        if used.len() < bytes.len() {
            // More body than the cap allows: stop here.
            self.capped = true;
        }
        self.hasher.update(used);
        let keep_room = self.keep.saturating_sub(self.prefix.len());
        self.prefix
            .extend_from_slice(&used[..used.len().min(keep_room)]);
        self.length += used.len();
    }

    fn full(&self) -> bool {
        self.capped
    }
}

/// Incremental HTTP/1.x response reader: header bytes go to httparse until the head is
/// complete, then body bytes are decoded according to the framing.
struct ResponseReader {
    head: Vec<u8>,
    response: Option<HttpResponse>,
    framing: Option<Framing>,
    /// Undecoded chunked-encoding bytes carried between reads.
    pending: Vec<u8>,
    sink: BodySink,
    complete: bool,
}

impl ResponseReader {
    fn new(body_cap: usize, body_keep: usize) -> Self {
        ResponseReader {
            head: Vec::new(),
            response: None,
            framing: None,
            pending: Vec::new(),
            sink: BodySink {
                cap: body_cap,
                keep: body_keep.min(body_cap),
                length: 0,
                capped: false,
                hasher: Sha256::new(),
                prefix: Vec::new(),
            },
            complete: false,
        }
    }

    /// Feed received bytes; `Ok(true)` once the response is complete.
    fn feed(&mut self, data: &[u8]) -> Result<bool, String> {
        if self.complete {
            return Ok(true);
        }
        if self.framing.is_none() {
            self.head.extend_from_slice(data);
            let Some(body_start) = self.parse_head()? else {
                return Ok(false);
            };
            let rest = self.head.split_off(body_start);
            if self.framing.is_none() {
                // A response without a body (204, 304).
                self.complete = true;
                return Ok(true);
            }
            return self.feed_body(&rest);
        }
        self.feed_body(data)
    }

    /// Parse the buffered head; `Some(offset of the body)` once complete.
    fn parse_head(&mut self) -> Result<Option<usize>, String> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            let status = parsed
                .parse(&self.head)
                .map_err(|e| format!("invalid HTTP response head: {e}"))?;
            let httparse::Status::Complete(head_len) = status else {
                if self.head.len() > MAX_HEADER_BYTES {
                    return Err(format!(
                        "response head exceeds {MAX_HEADER_BYTES} bytes without ending"
                    ));
                }
                return Ok(None);
            };
            let code = parsed.code.unwrap_or(0);
            if (100..200).contains(&code) && code != 101 {
                // An interim response (100 Continue, 103 Early Hints): the real one follows.
                self.head.drain(..head_len);
                continue;
            }
            let headers: Vec<HttpHeader> = parsed
                .headers
                .iter()
                .map(|h| HttpHeader {
                    name: h.name.to_owned(),
                    value: String::from_utf8_lossy(h.value).into_owned(),
                })
                .collect();
            let content_length = headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| h.value.trim().parse::<u64>().ok());
            let chunked = headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    && h.value.to_ascii_lowercase().contains("chunked")
            });
            self.framing = if code == 204 || code == 304 {
                None
            } else if chunked {
                Some(Framing::Chunked(ChunkState::Size))
            } else if let Some(len) = content_length {
                Some(Framing::Length(len))
            } else {
                Some(Framing::UntilClose)
            };
            self.response = Some(HttpResponse {
                version: format!("HTTP/1.{}", parsed.version.unwrap_or(1)),
                status: code,
                reason: parsed.reason.unwrap_or("").to_owned(),
                headers,
                header_bytes: head_len,
                content_length,
                chunked,
                body_length: 0,
                body_capped: false,
                body_sha256: String::new(),
                title: None,
                body_prefix: Vec::new(),
            });
            return Ok(Some(head_len));
        }
    }

    fn feed_body(&mut self, data: &[u8]) -> Result<bool, String> {
        let done = match self.framing.as_mut() {
            None => true,
            Some(Framing::Length(remaining)) => {
                let take = (*remaining).min(data.len() as u64) as usize;
                self.sink.take(&data[..take]);
                *remaining -= take as u64;
                *remaining == 0
            }
            Some(Framing::UntilClose) => {
                self.sink.take(data);
                false
            }
            Some(Framing::Chunked(state)) => {
                self.pending.extend_from_slice(data);
                decode_chunks(state, &mut self.pending, &mut self.sink)?
            }
        };
        self.complete = done || self.sink.full();
        Ok(self.complete)
    }

    /// What the server's close means at this point of the exchange.
    fn end_at_eof(&mut self, bytes_received: u64) -> HttpExchangeEnd {
        if bytes_received == 0 {
            return HttpExchangeEnd::EofWithoutResponse;
        }
        match self.framing {
            Some(Framing::UntilClose) if self.response.is_some() => {
                self.complete = true;
                HttpExchangeEnd::Complete
            }
            _ => HttpExchangeEnd::EofDuringResponse,
        }
    }

    fn into_response(self) -> Option<HttpResponse> {
        let mut response = self.response?;
        response.body_length = self.sink.length as u64;
        response.body_capped = self.sink.capped;
        response.body_sha256 = hex::encode(self.sink.hasher.finalize());
        response.title = extract_title(&self.sink.prefix);
        response.body_prefix = self.sink.prefix;
        Some(response)
    }
}

/// Decode as much chunked encoding from `pending` as possible; `Ok(true)` after the
/// last chunk. Chunk-size lines are parsed by httparse.
fn decode_chunks(
    state: &mut ChunkState,
    pending: &mut Vec<u8>,
    sink: &mut BodySink,
) -> Result<bool, String> {
    let mut pos = 0;
    let mut finished = false;
    while !sink.full() {
        match *state {
            ChunkState::Size => match httparse::parse_chunk_size(&pending[pos..]) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    pos += used;
                    finished = true;
                    break;
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    pos += used;
                    *state = ChunkState::Data(size);
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return Err("invalid chunk-size line in chunked body".to_owned()),
            },
            ChunkState::Data(remaining) => {
                let available = (pending.len() - pos) as u64;
                if available == 0 {
                    break;
                }
                let take = remaining.min(available) as usize;
                sink.take(&pending[pos..pos + take]);
                pos += take;
                let left = remaining - take as u64;
                *state = if left == 0 {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(left)
                };
            }
            ChunkState::DataEnd => {
                if pending.len() - pos < 2 {
                    break;
                }
                if &pending[pos..pos + 2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF".to_owned());
                }
                pos += 2;
                *state = ChunkState::Size;
            }
        }
    }
    pending.drain(..pos);
    Ok(finished)
}

/// The text of the first `<title>` element, whitespace collapsed, at most 256 chars.
pub fn extract_title(body: &[u8]) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let open = find(&lower, b"<title")?;
    let content_start = open + find(&lower[open..], b">")? + 1;
    let content_len =
        find(&lower[content_start..], b"</title").unwrap_or(lower.len() - content_start);
    let text = String::from_utf8_lossy(&body[content_start..content_start + content_len]);
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return None;
    }
    Some(collapsed.chars().take(256).collect())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::observation::ConnectStatus;
    use std::net::{Ipv4Addr, SocketAddr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn prober(response_timeout: Duration) -> HttpProber {
        HttpProber::new(
            HttpProbeConfig {
                connect_timeout: Duration::from_secs(5),
                response_timeout,
                ..HttpProbeConfig::default()
            },
            ConnectionBudget::new(64),
        )
    }

    /// A one-shot server: reads the request head, hands it to `reply`, which answers.
    async fn one_shot<F, Fut>(reply: F) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            reply(stream).await;
            head
        });
        (addr, handle)
    }

    #[test]
    fn request_is_written_byte_for_byte() {
        let req = build_request("Example.COM", "ua/1");
        assert_eq!(
            req,
            b"GET / HTTP/1.1\r\nHost: Example.COM\r\nUser-Agent: ua/1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn host_header_validation_rejects_injection() {
        assert!(valid_host_header("example.com"));
        assert!(valid_host_header("[::1]"));
        assert!(!valid_host_header("a.com\r\nX-Evil: 1"));
        assert!(!valid_host_header("a b"));
        assert!(!valid_host_header(""));
    }

    #[test]
    fn title_extraction() {
        assert_eq!(
            extract_title(b"<html><HEAD><Title lang=en>\n  Hello\t World </title>").as_deref(),
            Some("Hello World")
        );
        assert_eq!(extract_title(b"<html>no title</html>"), None);
    }

    #[tokio::test]
    async fn complete_response_with_content_length() {
        let (addr, server) = one_shot(|mut s| async move {
            s.write_all(b"HTTP/1.1 200 OK\r\nServer: t\r\nX-Two: 2\r\nContent-Length: 27\r\n\r\n<title>Hi there</title>body")
                .await
                .unwrap();
        })
        .await;
        let obs = prober(Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "Host.Example")
            .await;
        let head = server.await.unwrap();
        assert_eq!(head, build_request("Host.Example", DEFAULT_USER_AGENT));
        assert_eq!(obs.connect.status, ConnectStatus::Ok);
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::Complete));
        assert_eq!(obs.failed_at, None);
        assert_eq!(obs.request_bytes_sent, obs.request_length);
        let resp = obs.response.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.reason, "OK");
        let names: Vec<&str> = resp.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Server", "X-Two", "Content-Length"]);
        assert_eq!(resp.body_length, 27);
        assert_eq!(resp.title.as_deref(), Some("Hi there"));
        assert_eq!(
            resp.body_sha256,
            hex::encode(Sha256::digest(b"<title>Hi there</title>body"))
        );
        assert!(!resp.body_capped);
    }

    #[tokio::test]
    async fn chunked_body_is_decoded_across_reads() {
        let (addr, _server) = one_shot(|mut s| async move {
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
                .await
                .unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b"lo\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
                .await
                .unwrap();
            // Keep the connection open: completion must come from the framing.
            tokio::time::sleep(Duration::from_secs(3)).await;
        })
        .await;
        let obs = prober(Duration::from_secs(2))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::Complete));
        let resp = obs.response.unwrap();
        assert!(resp.chunked);
        assert_eq!(resp.body_length, 11);
        assert_eq!(
            resp.body_sha256,
            hex::encode(Sha256::digest(b"hello world"))
        );
    }

    #[tokio::test]
    async fn body_until_close_and_cap() {
        let (addr, _server) = one_shot(|mut s| async move {
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
            s.write_all(&[b'x'; 100]).await.unwrap();
        })
        .await;
        let mut p = prober(Duration::from_secs(5));
        p.config.body_cap = 40;
        p.config.body_keep = 10;
        let obs = p.probe(addr.ip(), addr.port(), "a").await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::Complete));
        let resp = obs.response.unwrap();
        assert_eq!(resp.version, "HTTP/1.0");
        assert_eq!(resp.body_length, 40);
        assert!(resp.body_capped);
        assert_eq!(resp.body_prefix.len(), 10);
    }

    #[tokio::test]
    async fn interim_response_is_skipped() {
        let (addr, _server) = one_shot(|mut s| async move {
            s.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        })
        .await;
        let obs = prober(Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::Complete));
        assert_eq!(obs.response.unwrap().status, 404);
    }

    #[tokio::test]
    async fn reset_after_request() {
        let (addr, _server) = one_shot(|s| async move {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        })
        .await;
        let obs = prober(Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::ResetAfterRequest));
        assert_eq!(obs.failed_at, Some(Stage::Request));
        assert_eq!(obs.errno, Some(libc::ECONNRESET));
    }

    #[tokio::test]
    async fn eof_without_response() {
        let (addr, _server) = one_shot(|s| async move { drop(s) }).await;
        let obs = prober(Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::EofWithoutResponse));
        assert_eq!(obs.failed_at, Some(Stage::Request));
    }

    #[tokio::test]
    async fn silence_times_out_after_request() {
        let (addr, _server) = one_shot(|s| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(s);
        })
        .await;
        let obs = prober(Duration::from_millis(300))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::TimeoutAfterRequest));
        assert_eq!(obs.failed_at, Some(Stage::Request));
    }

    #[tokio::test]
    async fn truncated_and_reset_responses() {
        let (addr, _server) = one_shot(|mut s| async move {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
                .await
                .unwrap();
        })
        .await;
        let obs = prober(Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::EofDuringResponse));
        assert_eq!(obs.failed_at, Some(Stage::Response));
        assert_eq!(obs.response.as_ref().unwrap().body_length, 5);

        let (addr, _server) = one_shot(|mut s| async move {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        })
        .await;
        let obs = prober(Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::ResetDuringResponse));
        assert_eq!(obs.failed_at, Some(Stage::Response));
        assert!(obs.response.is_none());
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let (addr, _server) = one_shot(|mut s| async move {
            s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let obs = prober(Duration::from_secs(5))
            .probe(addr.ip(), addr.port(), "a")
            .await;
        assert_eq!(obs.exchange, Some(HttpExchangeEnd::MalformedResponse));
        assert!(obs.error.is_some());
    }

    #[tokio::test]
    async fn closed_port_fails_at_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let obs = prober(Duration::from_secs(1))
            .probe(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "a")
            .await;
        assert_eq!(obs.connect.status, ConnectStatus::Refused);
        assert_eq!(obs.failed_at, Some(Stage::Connect));
        assert_eq!(obs.exchange, None);
        assert_eq!(obs.request_bytes_sent, 0);
    }
}
