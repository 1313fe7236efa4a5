//! The HTTP probe: one plain HTTP/1.1 GET to (ip, port) with exactly the given Host
//! header, written byte for byte (our header case and order), the response parsed
//! with httparse, and every way the exchange can end recorded.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::net::{self, ConnectionBudget, IoFailure, classify_io_error, ms_between};
use super::tcpinfo::{self, StallPolicy};
use crate::capture::ProbeCapture;
use crate::observation::web::{HttpExchangeEnd, HttpHeader, HttpObservation, HttpResponse};
use crate::vocab::Stage;

/// A common browser User-Agent: a probe that announces itself may be treated
/// differently from the users whose experience it measures.
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Largest response head accepted (status lines plus headers, interim 1xx responses
/// included) before the response is called malformed.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers parsed from one response.
const MAX_HEADERS: usize = 128;
/// Most interim (1xx) responses accepted before the final one.
pub const MAX_INTERIM_RESPONSES: usize = 8;
/// Longest chunk-size line (size, extensions, CRLF) accepted in a chunked body.
pub const MAX_CHUNK_SIZE_LINE: usize = 4 * 1024;
/// Chunked framing (size lines and CRLFs) may exceed the body decoded so far by this
/// many bytes: a server whose framing outweighs its body is malformed, however slowly
/// it sends it.
const FRAMING_ALLOWANCE: u64 = 64 * 1024;
/// Size of the read buffer per connection.
const READ_BUFFER: usize = 16 * 1024;

/// Why a response was called malformed: its bytes are no HTTP/1.x response, or it
/// crossed one of the bounds that keep a hostile server from costing the probe
/// unbounded memory or time while it sends data all the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedResponse {
    #[error("invalid HTTP response head: {0}")]
    InvalidHead(httparse::Error),
    #[error("response head exceeds {limit} bytes without ending (interim responses included)")]
    HeadTooLarge { limit: usize },
    #[error("more than {limit} interim (1xx) responses")]
    TooManyInterimResponses { limit: usize },
    #[error("invalid chunk-size line in chunked body")]
    InvalidChunkSize,
    #[error("chunk-size line exceeds {limit} bytes without ending")]
    ChunkSizeLineTooLong { limit: usize },
    #[error("chunk data not followed by CRLF")]
    ChunkDataNotTerminated,
    #[error("more than {limit} header lines in a response head")]
    TooManyHeaderLines { limit: usize },
    #[error(
        "chunked framing of {framing} bytes for a body of {body} bytes (framing may exceed the body by {allowance} bytes)"
    )]
    FramingOutweighsBody {
        framing: u64,
        body: u64,
        allowance: u64,
    },
    #[error(
        "{limit} bytes received without a complete response (framing outweighs the {body_cap}-byte body cap)"
    )]
    TooManyBytes { limit: u64, body_cap: usize },
}

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
    capture: ProbeCapture,
}

impl HttpProber {
    /// `config.user_agent` must be a valid header value (visible ASCII and spaces).
    pub fn new(config: HttpProbeConfig, budget: ConnectionBudget) -> Self {
        HttpProber {
            config,
            budget,
            capture: ProbeCapture::Off,
        }
    }

    /// Capture each probe connection's packets (see [`crate::capture`]).
    #[must_use]
    pub fn with_capture(mut self, capture: ProbeCapture) -> Self {
        self.capture = capture;
        self
    }

    pub fn config(&self) -> &HttpProbeConfig {
        &self.config
    }

    /// One GET to (ip, port) with `Host: host`. Never fails: every outcome is an
    /// observation. `host` must satisfy [`valid_host_header`] (the caller checks).
    pub async fn probe(&self, ip: IpAddr, port: u16, host: &str) -> HttpObservation {
        let request = build_request(host, &self.config.user_agent);
        let (connect, start, conn, flow) = net::connect(
            ip,
            port,
            self.config.connect_timeout,
            &self.budget,
            &self.capture,
        )
        .await;
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
            let end = Instant::now();
            obs.total_ms = ms_between(start, end);
            obs.capture = flow.finish(false, end, &mut obs.connect).await;
            return obs;
        };
        let mut stream = conn.stream;
        let permit = conn.permit;
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
                let end = Instant::now();
                obs.total_ms = ms_between(start, end);
                // The socket and its slot are not needed while late packets settle.
                drop((stream, permit));
                obs.capture = flow.finish(false, end, &mut obs.connect).await;
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
                Ok(Ok(0)) => match reader.end_at_eof(obs.bytes_received) {
                    Ok(end) => break end,
                    Err(malformed) => {
                        obs.error = Some(malformed.to_string());
                        break HttpExchangeEnd::MalformedResponse;
                    }
                },
                Ok(Ok(n)) => {
                    if obs.first_byte_ms.is_none() {
                        obs.first_byte_ms = Some(ms_between(request_done, Instant::now()));
                    }
                    obs.bytes_received += n as u64;
                    match reader.feed(&buf[..n]) {
                        Ok(true) => break HttpExchangeEnd::Complete,
                        Ok(false) => {}
                        Err(malformed) => {
                            obs.error = Some(malformed.to_string());
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
        let exchange_end = Instant::now();
        obs.total_ms = ms_between(start, exchange_end);
        let capped = obs.response.as_ref().is_some_and(|r| r.body_capped);
        let clean = end == HttpExchangeEnd::Complete;
        if clean && !capped {
            // `Connection: close`: the server closes now; let it close first.
            net::await_server_close(&mut stream).await;
        }
        drop((stream, permit));
        obs.capture = flow.finish(clean, exchange_end, &mut obs.connect).await;
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
    /// Expecting a chunk-size line; this many of its bytes were already searched for
    /// the line end (so a slowly arriving line is scanned once, not on every read).
    Size(usize),
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

/// Incremental HTTP/1.x response reader: header bytes are buffered until the head is
/// complete, then body bytes are decoded according to the framing.
///
/// Every step is bounded and linear in the bytes received: a head is handed to httparse
/// only when its end has arrived (and a few times early on, to reject non-HTTP bytes at
/// once), each byte is searched for a line end once, and the head, the interim
/// responses, the chunk-size lines and the bytes on the wire all have caps.
struct ResponseReader {
    head: Vec<u8>,
    /// Bytes of `head` already searched for the end of the head, and the line ends
    /// found in them.
    head_scanned: usize,
    head_lines: usize,
    /// Bytes of earlier (interim) heads, counted against [`MAX_HEADER_BYTES`].
    interim_bytes: usize,
    interim_responses: usize,
    response: Option<HttpResponse>,
    framing: Option<Framing>,
    /// Undecoded chunked-encoding bytes carried between reads.
    pending: Vec<u8>,
    /// Chunked-encoding bytes that were framing, not body.
    framing_bytes: u64,
    sink: BodySink,
    complete: bool,
    /// Bytes fed so far, and the most allowed before the response is complete.
    wire_bytes: u64,
    wire_limit: u64,
}

/// Below this many buffered head bytes, every read is checked by httparse at once, so
/// that bytes which are no HTTP response are rejected without waiting for a line end.
const EARLY_HEAD_CHECK: usize = 16;

impl ResponseReader {
    fn new(body_cap: usize, body_keep: usize) -> Self {
        ResponseReader {
            head: Vec::new(),
            head_scanned: 0,
            head_lines: 0,
            interim_bytes: 0,
            interim_responses: 0,
            response: None,
            framing: None,
            pending: Vec::new(),
            framing_bytes: 0,
            sink: BodySink {
                cap: body_cap,
                keep: body_keep.min(body_cap),
                length: 0,
                capped: false,
                hasher: Sha256::new(),
                prefix: Vec::new(),
            },
            complete: false,
            wire_bytes: 0,
            wire_limit: MAX_HEADER_BYTES as u64 + 2 * body_cap as u64 + FRAMING_ALLOWANCE,
        }
    }

    /// Feed received bytes; `Ok(true)` once the response is complete.
    fn feed(&mut self, data: &[u8]) -> Result<bool, MalformedResponse> {
        if self.complete {
            return Ok(true);
        }
        self.wire_bytes += data.len() as u64;
        let done = self.feed_unchecked(data)?;
        if !done && self.wire_bytes > self.wire_limit {
            return Err(MalformedResponse::TooManyBytes {
                limit: self.wire_limit,
                body_cap: self.sink.cap,
            });
        }
        Ok(done)
    }

    fn feed_unchecked(&mut self, data: &[u8]) -> Result<bool, MalformedResponse> {
        if self.framing.is_none() {
            self.head.extend_from_slice(data);
            let Some(body_start) = self.parse_head(data.len())? else {
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

    /// Parse the buffered head, of which the last `fresh` bytes just arrived;
    /// `Some(offset of the body)` once complete.
    fn parse_head(&mut self, mut fresh: usize) -> Result<Option<usize>, MalformedResponse> {
        loop {
            let (head_end, lines) = scan_head(&self.head, self.head_scanned);
            self.head_lines += lines;
            self.head_scanned = head_end.unwrap_or(self.head.len());
            // The status line, the headers and the blank line.
            if self.head_lines > MAX_HEADERS + 2 {
                return Err(MalformedResponse::TooManyHeaderLines { limit: MAX_HEADERS });
            }
            // httparse looks at the head when it may have something to say: while it is
            // short, when a line has ended, and at its end. So an invalid line is refused
            // as soon as it is whole, however the reads split it.
            let early = self.head.len() - fresh < EARLY_HEAD_CHECK;
            if head_end.is_none() && !early && lines == 0 {
                return self.incomplete_head();
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            let status = parsed.parse(&self.head).map_err(head_error)?;
            let httparse::Status::Complete(head_len) = status else {
                if head_end.is_some() {
                    // httparse sees no end where the blank line is: not a response head.
                    return Err(MalformedResponse::InvalidHead(httparse::Error::Status));
                }
                return self.incomplete_head();
            };
            // The same bound whether the head arrived in one read or in many: a limit
            // that depended on how reads split would make the verdict depend on timing.
            if self.interim_bytes + head_len > MAX_HEADER_BYTES {
                return Err(MalformedResponse::HeadTooLarge {
                    limit: MAX_HEADER_BYTES,
                });
            }
            let code = parsed.code.unwrap_or(0);
            if (100..200).contains(&code) && code != 101 {
                // An interim response (100 Continue, 103 Early Hints): the real one follows.
                self.interim_responses += 1;
                self.interim_bytes += head_len;
                if self.interim_responses > MAX_INTERIM_RESPONSES {
                    return Err(MalformedResponse::TooManyInterimResponses {
                        limit: MAX_INTERIM_RESPONSES,
                    });
                }
                self.head.drain(..head_len);
                // What follows is a new head, none of it searched yet.
                self.head_scanned = 0;
                self.head_lines = 0;
                fresh = self.head.len();
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
                Some(Framing::Chunked(ChunkState::Size(0)))
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

    /// The head has not ended yet: wait for more, unless it is already too large.
    fn incomplete_head(&self) -> Result<Option<usize>, MalformedResponse> {
        if self.interim_bytes + self.head.len() > MAX_HEADER_BYTES {
            return Err(MalformedResponse::HeadTooLarge {
                limit: MAX_HEADER_BYTES,
            });
        }
        Ok(None)
    }

    fn feed_body(&mut self, data: &[u8]) -> Result<bool, MalformedResponse> {
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
                let before = self.pending.len() as u64 + self.sink.length as u64;
                let finished = decode_chunks(state, &mut self.pending, &mut self.sink)?;
                // What left `pending` without reaching the body was framing.
                self.framing_bytes += before - self.pending.len() as u64 - self.sink.length as u64;
                let body = self.sink.length as u64;
                if !finished && self.framing_bytes > body + FRAMING_ALLOWANCE {
                    return Err(MalformedResponse::FramingOutweighsBody {
                        framing: self.framing_bytes,
                        body,
                        allowance: FRAMING_ALLOWANCE,
                    });
                }
                finished
            }
        };
        self.complete = done || self.sink.full();
        Ok(self.complete)
    }

    /// What the server's close means at this point of the exchange.
    /// A head cut by the close is judged as httparse sees it, so that bytes which are
    /// no HTTP response are `malformed` whether they came in one read or many.
    fn end_at_eof(&mut self, bytes_received: u64) -> Result<HttpExchangeEnd, MalformedResponse> {
        if bytes_received == 0 {
            return Ok(HttpExchangeEnd::EofWithoutResponse);
        }
        if self.framing.is_none() && !self.head.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            httparse::Response::new(&mut headers)
                .parse(&self.head)
                .map_err(head_error)?;
        }
        Ok(match self.framing {
            Some(Framing::UntilClose) if self.response.is_some() => {
                self.complete = true;
                HttpExchangeEnd::Complete
            }
            _ => HttpExchangeEnd::EofDuringResponse,
        })
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

/// httparse's error as ours: more headers than it has room for is our header-line bound,
/// whichever of the two notices first.
fn head_error(error: httparse::Error) -> MalformedResponse {
    match error {
        httparse::Error::TooManyHeaders => {
            MalformedResponse::TooManyHeaderLines { limit: MAX_HEADERS }
        }
        other => MalformedResponse::InvalidHead(other),
    }
}

/// Searches `head` for the end of a response head, looking only at line ends from
/// `from` on: the offset just past its blank line (`\r\n\r\n`, or a bare `\n\n` as
/// httparse accepts), and how many line ends were passed on the way (up to that end).
fn scan_head(head: &[u8], from: usize) -> (Option<usize>, usize) {
    let mut lines = 0;
    for i in memchr::memchr_iter(b'\n', &head[from..]).map(|i| from + i) {
        lines += 1;
        if (i >= 1 && head[i - 1] == b'\n')
            || (i >= 2 && head[i - 1] == b'\r' && head[i - 2] == b'\n')
        {
            return (Some(i + 1), lines);
        }
    }
    (None, lines)
}

/// Decode as much chunked encoding from `pending` as possible; `Ok(true)` after the
/// last chunk. Chunk-size lines are parsed by httparse once their line end arrived.
///
/// The response is complete at the last chunk: trailers are never read, so they cost
/// nothing (whatever follows is discarded while waiting for the server's close).
fn decode_chunks(
    state: &mut ChunkState,
    pending: &mut Vec<u8>,
    sink: &mut BodySink,
) -> Result<bool, MalformedResponse> {
    let mut pos = 0;
    let mut finished = false;
    while !sink.full() {
        match *state {
            ChunkState::Size(scanned) => {
                let line = &pending[pos..];
                let Some(newline) = memchr::memchr(b'\n', &line[scanned..]) else {
                    if line.len() > MAX_CHUNK_SIZE_LINE {
                        return Err(MalformedResponse::ChunkSizeLineTooLong {
                            limit: MAX_CHUNK_SIZE_LINE,
                        });
                    }
                    *state = ChunkState::Size(line.len());
                    break;
                };
                let line_len = scanned + newline + 1;
                if line_len > MAX_CHUNK_SIZE_LINE {
                    return Err(MalformedResponse::ChunkSizeLineTooLong {
                        limit: MAX_CHUNK_SIZE_LINE,
                    });
                }
                match httparse::parse_chunk_size(&line[..line_len]) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        pos += used;
                        finished = true;
                        break;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        pos += used;
                        *state = ChunkState::Data(size);
                    }
                    Ok(httparse::Status::Partial) | Err(_) => {
                        return Err(MalformedResponse::InvalidChunkSize);
                    }
                }
            }
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
                    return Err(MalformedResponse::ChunkDataNotTerminated);
                }
                pos += 2;
                *state = ChunkState::Size(0);
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

/// What [`decode_response`] made of a sequence of reads.
#[doc(hidden)]
#[derive(Debug)]
pub struct DecodedResponse {
    /// How the exchange ended: complete, malformed, or closed by the server after the
    /// last read.
    pub end: HttpExchangeEnd,
    pub error: Option<String>,
    pub response: Option<HttpResponse>,
    /// Most undecoded bytes (head and chunk framing) held between reads.
    pub peak_buffered: usize,
}

/// The probe's response reading without a socket: `reads` are handed to the reader one
/// by one, as [`HttpProber::probe`] does with what each `read` returns, and the server
/// closes after the last one. Not a stable API: it exists for the fuzz targets and
/// property tests, which feed it hostile bytes.
#[doc(hidden)]
pub fn decode_response(reads: &[&[u8]], body_cap: usize, body_keep: usize) -> DecodedResponse {
    let mut reader = ResponseReader::new(body_cap, body_keep);
    let mut received = 0u64;
    let mut peak_buffered = 0;
    let mut error = None;
    let mut end = None;
    for read in reads.iter().filter(|r| !r.is_empty()) {
        received += read.len() as u64;
        let fed = reader.feed(read);
        peak_buffered = peak_buffered.max(reader.head.len() + reader.pending.len());
        match fed {
            Ok(true) => end = Some(HttpExchangeEnd::Complete),
            Ok(false) => continue,
            Err(reason) => {
                error = Some(reason.to_string());
                end = Some(HttpExchangeEnd::MalformedResponse);
            }
        }
        break;
    }
    let end = end.unwrap_or_else(|| match reader.end_at_eof(received) {
        Ok(end) => end,
        Err(reason) => {
            error = Some(reason.to_string());
            HttpExchangeEnd::MalformedResponse
        }
    });
    DecodedResponse {
        end,
        error,
        response: reader.into_response(),
        peak_buffered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::web::ConnectStatus;
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

    /// Feeds `bytes` in pieces of `piece` bytes; the result of the last feed and how
    /// many bytes were fed until it.
    fn feed_in_pieces(
        reader: &mut ResponseReader,
        bytes: &[u8],
        piece: usize,
    ) -> (Result<bool, MalformedResponse>, usize) {
        let mut fed = 0;
        for chunk in bytes.chunks(piece) {
            fed += chunk.len();
            match reader.feed(chunk) {
                Ok(false) => {}
                other => return (other, fed),
            }
        }
        (Ok(false), fed)
    }

    #[test]
    fn head_end_is_found_with_crlf_or_bare_lf() {
        assert_eq!(scan_head(b"HTTP/1.1 200 OK\r\n\r\nbody", 0), (Some(19), 2));
        assert_eq!(scan_head(b"HTTP/1.1 200 OK\n\nbody", 0), (Some(17), 2));
        assert_eq!(scan_head(b"HTTP/1.1 200 OK\r\nA: b\r\n", 0), (None, 2));
        // A line end already searched is looked back from, not searched again.
        assert_eq!(scan_head(b"HTTP/1.1 200 OK\r\n\r\n", 18), (Some(19), 1));
    }

    #[test]
    fn a_head_arriving_byte_by_byte_is_parsed_to_the_end() {
        let response = b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 3\r\n\r\nabc";
        let mut reader = ResponseReader::new(1024, 1024);
        let (result, fed) = feed_in_pieces(&mut reader, response, 1);
        assert_eq!(result, Ok(true));
        assert_eq!(fed, response.len());
        let response = reader.into_response().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body_length, 3);
    }

    #[test]
    fn non_http_bytes_are_rejected_at_once() {
        let mut reader = ResponseReader::new(1024, 1024);
        assert!(matches!(
            reader.feed(b"\x15\x03\x01\x00\x02\x02\x28"),
            Err(MalformedResponse::InvalidHead(_))
        ));
    }

    #[test]
    fn an_endless_chunk_size_line_is_malformed_at_its_bound() {
        let mut reader = ResponseReader::new(64 * 1024, 1024);
        let mut flood = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=".to_vec();
        let head_len = flood.len() - 4;
        flood.resize(head_len + 2 * MAX_CHUNK_SIZE_LINE, b'a');
        let (result, fed) = feed_in_pieces(&mut reader, &flood, 7);
        assert_eq!(
            result,
            Err(MalformedResponse::ChunkSizeLineTooLong {
                limit: MAX_CHUNK_SIZE_LINE
            })
        );
        assert!(fed - head_len <= MAX_CHUNK_SIZE_LINE + 7, "{fed}");
    }

    #[test]
    fn endless_interim_responses_are_malformed() {
        let mut reader = ResponseReader::new(64 * 1024, 1024);
        let flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(100);
        let (result, _) = feed_in_pieces(&mut reader, &flood, 1000);
        assert_eq!(
            result,
            Err(MalformedResponse::TooManyInterimResponses {
                limit: MAX_INTERIM_RESPONSES
            })
        );
        // Up to the bound, interim responses are skipped.
        let mut reader = ResponseReader::new(64 * 1024, 1024);
        let mut fine =
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n".repeat(MAX_INTERIM_RESPONSES);
        fine.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(feed_in_pieces(&mut reader, &fine, 5).0, Ok(true));
        assert_eq!(reader.into_response().unwrap().status, 204);
    }

    #[test]
    fn too_many_header_lines_are_malformed_before_the_head_ends() {
        let mut reader = ResponseReader::new(64 * 1024, 1024);
        let mut flood = b"HTTP/1.1 200 OK\r\n".to_vec();
        flood.extend(b"X-A: b\r\n".repeat(1000));
        let (result, fed) = feed_in_pieces(&mut reader, &flood, 10);
        assert_eq!(
            result,
            Err(MalformedResponse::TooManyHeaderLines { limit: MAX_HEADERS })
        );
        assert!(fed <= 17 + 8 * (MAX_HEADERS + 2) + 10, "{fed}");
    }

    #[test]
    fn endless_header_lines_are_malformed_at_the_head_bound() {
        let mut reader = ResponseReader::new(64 * 1024, 1024);
        // Few lines, each long.
        let mut flood = b"HTTP/1.1 200 OK\r\n".to_vec();
        let line = format!("X-A: {}\r\n", "b".repeat(2000));
        flood.extend(line.as_bytes().repeat(2 * MAX_HEADER_BYTES / line.len()));
        let (result, fed) = feed_in_pieces(&mut reader, &flood, 100);
        assert_eq!(
            result,
            Err(MalformedResponse::HeadTooLarge {
                limit: MAX_HEADER_BYTES
            })
        );
        assert!(fed <= MAX_HEADER_BYTES + 100);
    }

    #[test]
    fn framing_that_outweighs_the_body_is_malformed() {
        let body_cap = 4096;
        let mut reader = ResponseReader::new(body_cap, 1024);
        let mut flood = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        flood.extend(
            b"1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n"
                .repeat(10_000),
        );
        let (result, fed) = feed_in_pieces(&mut reader, &flood, 16 * 1024);
        assert!(
            matches!(result, Err(MalformedResponse::FramingOutweighsBody { .. })),
            "{result:?}"
        );
        assert!(fed as u64 <= FRAMING_ALLOWANCE + 2 * 16 * 1024, "{fed}");
        // Ordinary chunked framing within the cap is fine.
        let mut reader = ResponseReader::new(body_cap, 1024);
        let mut ordinary = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        ordinary.extend(b"10\r\n0123456789abcdef\r\n".repeat(100));
        ordinary.extend(b"0\r\n\r\n");
        assert_eq!(feed_in_pieces(&mut reader, &ordinary, 3).0, Ok(true));
        assert_eq!(reader.into_response().unwrap().body_length, 1600);
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
