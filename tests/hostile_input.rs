//! Property tests of every parser that reads network or file input: DNS replies, HTTP
//! responses (head, chunked bodies), the TLS handshake and certificates, the lab
//! censor's frames, target lists and reports. Each property feeds structured hostile
//! input (valid messages built with the real encoders, then truncated, bit-flipped,
//! with inflated counts and lengths) and asserts: no panic, and what is kept is bounded
//! relative to the input (or by a fixed cap).
//!
//! The number of cases per property is small enough for CI (`cargo test --test
//! hostile_input`); `PROPTEST_CASES=N` runs N per property instead. The same parsers
//! have cargo-fuzz targets in `fuzz/` (nightly).

use std::fmt::{Debug, Write as _};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, NULL, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sha2::{Digest, Sha256};

use censorprobe::lab::Scenario;
use censorprobe::lab::censor::engine::Engine;
use censorprobe::lab::censor::packet::{self, Fingerprint, Link, Segment};
use censorprobe::lab::plan;
use censorprobe::observation::web::{HttpExchangeEnd, TlsHandshakeEnd};
use censorprobe::observation::{DnsRecord, DnsServerRole};
use censorprobe::probe::dns::MAX_RECORDS_KEPT;
use censorprobe::probe::dns::{DnsQuestion, reply_of_datagram};
use censorprobe::probe::web::ConnectionBudget;
use censorprobe::probe::web::http::decode_response;
use censorprobe::probe::web::tls::{TlsProbeConfig, TlsProber, describe_certificate};
use censorprobe::targets::{TargetList, TargetLoader, normalize_host};

/// Runs `test` on `cases` inputs from `strategy` (or `PROPTEST_CASES`), shrinking and
/// printing the smallest failing input.
fn check<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    // CI replays one fixed sequence of cases, so a red run is reproducible and never a
    // coin toss; `PROPTEST_RANDOM=1` explores new cases (run it when hunting bugs).
    let mut runner = if std::env::var_os("PROPTEST_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        )
    };
    if let Err(failure) = runner.run(&strategy, test) {
        panic!("{failure}");
    }
}

/// How a valid encoding is damaged before it is parsed.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// Cut at this fraction (per mille) of the length.
    Truncate(u16),
    /// XOR these bytes (positions per mille of the length) with these masks.
    Flip(Vec<(u16, u8)>),
    /// Overwrite a big-endian u16 (a count or length field) at this byte offset.
    SetU16(usize, u16),
    /// Insert bytes at this fraction (per mille).
    Splice(u16, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => Just(Mutation::None),
        2 => (0u16..1000).prop_map(Mutation::Truncate),
        3 => prop::collection::vec((0u16..1000, 1u8..=255), 1..8).prop_map(Mutation::Flip),
        2 => (0usize..64, any::<u16>()).prop_map(|(at, v)| Mutation::SetU16(at, v)),
        1 => (0u16..1000, prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Splice(at, bytes)),
    ]
}

fn at(len: usize, per_mille: u16) -> usize {
    len * usize::from(per_mille) / 1000
}

fn mutate(mut bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    match mutation {
        Mutation::None => {}
        Mutation::Truncate(p) => bytes.truncate(at(bytes.len(), *p)),
        Mutation::Flip(flips) => {
            for (p, mask) in flips {
                let i = at(bytes.len(), *p);
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= mask;
                }
            }
        }
        Mutation::SetU16(offset, value) => {
            if *offset + 2 <= bytes.len() {
                bytes[*offset..*offset + 2].copy_from_slice(&value.to_be_bytes());
            }
        }
        Mutation::Splice(p, insert) => {
            let i = at(bytes.len(), *p);
            bytes.splice(i..i, insert.iter().copied());
        }
    }
    bytes
}

/// Cut `bytes` into reads at the given fractions (per mille), as a socket might.
fn split<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| at(bytes.len(), *c)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

// ---------------------------------------------------------------------------------------
// DNS replies

fn dns_name() -> impl Strategy<Value = Name> {
    prop_oneof![
        4 => prop::collection::vec("[a-z0-9_]([a-z0-9_-]{0,10}[a-z0-9_])?", 1..5)
            .prop_map(|labels| Name::from_ascii(labels.join(".") + ".").expect("valid labels")),
        1 => prop::collection::vec(prop::collection::vec(any::<u8>(), 1..63), 1..5)
            .prop_filter_map("name too long", |labels| Name::from_labels(labels).ok()),
        1 => Just(Name::from_ascii(format!("{}.{}.{}.{}.", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61))).expect("253 octets")),
        1 => Just(Name::root()),
    ]
}

/// Record data; `false` when the encoding is deliberately not what its type says.
fn rdata() -> impl Strategy<Value = (RData, bool)> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| (RData::A(A(Ipv4Addr::from(b))), true)),
        any::<[u8; 16]>().prop_map(|b| (RData::AAAA(AAAA(Ipv6Addr::from(b))), true)),
        dns_name().prop_map(|n| (RData::CNAME(CNAME(n)), true)),
        dns_name().prop_map(|n| (RData::NS(NS(n)), true)),
        dns_name().prop_map(|n| (RData::PTR(PTR(n)), true)),
        (any::<u16>(), dns_name()).prop_map(|(p, n)| (RData::MX(MX::new(p, n)), true)),
        prop::collection::vec("(?s).{0,40}", 1..4).prop_map(|t| (RData::TXT(TXT::new(t)), true)),
        (dns_name(), dns_name(), any::<u32>(), any::<i32>())
            .prop_map(|(m, r, s, t)| (RData::SOA(SOA::new(m, r, s, t, t, t, s)), true)),
        (
            prop::sample::select(vec![16u16, 33, 43, 46, 48, 64, 65, 99, 257, 65_280, 65_534]),
            prop::collection::vec(any::<u8>(), 1..100)
        )
            .prop_map(|(code, bytes)| (
                RData::Unknown {
                    code: RecordType::from(code),
                    rdata: NULL::with(bytes)
                },
                false
            )),
    ]
}

fn record() -> impl Strategy<Value = (Record, bool)> {
    (dns_name(), any::<u32>(), rdata())
        .prop_map(|(name, ttl, (data, valid))| (Record::from_rdata(name, ttl, data), valid))
}

#[derive(Debug, Clone)]
struct DnsCase {
    question: Name,
    message: Vec<u8>,
    answers: usize,
    well_formed: bool,
}

fn dns_message() -> impl Strategy<Value = DnsCase> {
    (
        any::<u16>(),
        any::<[bool; 6]>(),
        prop::sample::select(vec![
            ResponseCode::NoError,
            ResponseCode::FormErr,
            ResponseCode::ServFail,
            ResponseCode::NXDomain,
            ResponseCode::Refused,
            ResponseCode::from(0, 11),
        ]),
        dns_name(),
        prop::collection::vec(record(), 0..8),
        prop::collection::vec(record(), 0..3),
    )
        .prop_filter_map(
            "not encodable",
            |(id, flags, rcode, question, answers, authorities)| {
                let kind = if flags[0] {
                    MessageType::Response
                } else {
                    MessageType::Query
                };
                let mut message = Message::new(id, kind, OpCode::Query);
                message.metadata.authoritative = flags[1];
                message.metadata.truncation = flags[2];
                message.metadata.recursion_available = flags[3];
                message.metadata.response_code = rcode;
                message.add_query(Query::query(question.clone(), RecordType::A));
                let mut well_formed = true;
                let count = answers.len();
                for (record, valid) in answers {
                    well_formed &= valid;
                    message.add_answer(record);
                }
                for (record, valid) in authorities {
                    well_formed &= valid;
                    message.add_authority(record);
                }
                if flags[4] {
                    let mut edns = Edns::new();
                    edns.set_max_payload(if flags[5] { 512 } else { 4096 });
                    message.set_edns(edns);
                }
                let bytes = message.to_vec().ok()?;
                Some(DnsCase {
                    question,
                    message: bytes,
                    answers: count,
                    well_formed,
                })
            },
        )
}

/// A reply whose records all point (compression) at one long owner name: the
/// largest expansion of text per received byte.
fn compression_bomb(records: u16, rtype: RecordType) -> Vec<u8> {
    let mut bytes = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
    bytes.extend_from_slice(&records.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    for label in ["a", "b", "c", "d"] {
        bytes.push(if label == "d" { 61 } else { 63 });
        bytes.extend(std::iter::repeat_n(
            label.as_bytes()[0],
            if label == "d" { 61 } else { 63 },
        ));
    }
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
    for _ in 0..records {
        bytes.extend_from_slice(&[0xc0, 0x0c]);
        bytes.extend_from_slice(&u16::from(rtype).to_be_bytes());
        bytes.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        match rtype {
            RecordType::A => bytes.extend_from_slice(&[0, 4, 198, 18, 0, 1]),
            _ => bytes.extend_from_slice(&[0, 2, 0xc0, 0x0c]),
        }
    }
    bytes
}

fn record_text(record: &DnsRecord) -> usize {
    record.name.len() + record.rtype.len() + record.data.len()
}

/// Text a reply keeps, in bytes.
fn reply_text(reply: &censorprobe::observation::DnsReply) -> usize {
    reply.rcode.len()
        + reply.malformed.as_ref().map_or(0, String::len)
        + reply.answers.iter().map(record_text).sum::<usize>()
        + reply.authorities.iter().map(record_text).sum::<usize>()
}

/// Text kept per received byte is at most this: a 2-byte compression pointer can stand
/// for a 253-octet name (twice for a CNAME record of 14 bytes).
const DNS_EXPANSION: usize = 48;

fn dns_question(name: Name) -> DnsQuestion {
    DnsQuestion {
        qname: name.into(),
        qtype: RecordType::A,
        server: SocketAddr::from((Ipv4Addr::LOCALHOST, 53)),
        role: DnsServerRole::Resolver,
    }
}

#[test]
fn dns_replies_parse_without_panic_and_keep_bounded_text() {
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    check(500, (dns_message(), mutation()), |(case, mutation)| {
        let untouched = matches!(mutation, Mutation::None);
        let bytes = mutate(case.message.clone(), &mutation);
        let question = dns_question(case.question.clone());
        let Some(reply) = reply_of_datagram(&bytes, &question, from) else {
            prop_assert!(bytes.len() < 2);
            return Ok(());
        };
        prop_assert_eq!(reply.size, bytes.len());
        prop_assert_eq!(reply.id, u16::from_be_bytes([bytes[0], bytes[1]]));
        let kept = reply_text(&reply);
        prop_assert!(
            kept <= DNS_EXPANSION * bytes.len() + 256,
            "{kept} bytes of text kept from a {}-byte datagram",
            bytes.len()
        );
        if untouched && case.well_formed {
            prop_assert_eq!(reply.malformed, None);
            prop_assert_eq!(reply.answers.len(), case.answers.min(MAX_RECORDS_KEPT));
            prop_assert!(reply.question_matches);
        }
        Ok(())
    });
}

#[test]
fn dns_compression_pointers_expand_text_by_a_bounded_factor() {
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    let question = dns_question(Name::from_ascii("example.").unwrap());
    let mut worst = 0.0f64;
    for rtype in [
        RecordType::A,
        RecordType::CNAME,
        RecordType::NS,
        RecordType::PTR,
    ] {
        for records in [1u16, 10, 100, 1000, 4000] {
            let bytes = compression_bomb(records, rtype);
            let reply = reply_of_datagram(&bytes, &question, from).unwrap();
            assert_eq!(reply.malformed, None, "{rtype} x{records}");
            // Kept up to the cap; the rest counted, never lost without a trace.
            let records = usize::from(records);
            assert_eq!(reply.answers.len(), records.min(MAX_RECORDS_KEPT));
            assert_eq!(
                reply.records_omitted,
                records.saturating_sub(MAX_RECORDS_KEPT)
            );
            let ratio = reply_text(&reply) as f64 / bytes.len() as f64;
            worst = worst.max(ratio);
            assert!(
                reply_text(&reply) <= DNS_EXPANSION * bytes.len(),
                "{rtype} x{records}: ratio {ratio:.1}"
            );
        }
    }
    println!("worst DNS text expansion: {worst:.1} bytes kept per byte received");
}

// ---------------------------------------------------------------------------------------
// HTTP responses

const BODY_CAP: usize = 4096;
const BODY_KEEP: usize = 1024;
/// The reader's head limit (64 KiB) plus slack for the read that crosses it.
const HEAD_LIMIT: usize = 64 * 1024;

fn status_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (
            0u8..2,
            prop_oneof![
                prop::sample::select(vec![100u16, 101, 103, 200, 204, 206, 301, 304, 404, 500]),
                0u16..1000,
            ],
            "[ -~]{0,20}"
        )
            .prop_map(|(minor, code, reason)| format!("HTTP/1.{minor} {code:03} {reason}\r\n").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut b| { b.extend_from_slice(b"\r\n"); b }),
    ]
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    let line = |(name, value): (String, String)| format!("{name}: {value}\r\n").into_bytes();
    prop_oneof![
        2 => (
            Just("Content-Length".to_owned()),
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                (0u32..5000).prop_map(|n| n.to_string()),
                prop::sample::select(vec!["-1", "1,1", " 5 ", "99999999999999999999999", ""]).prop_map(str::to_owned),
            ]
        )
            .prop_map(line),
        2 => (
            Just("Transfer-Encoding".to_owned()),
            prop::sample::select(vec!["chunked", "gzip, chunked", "identity", "CHUNKED", "chunked, gzip"]).prop_map(str::to_owned)
        )
            .prop_map(line),
        3 => ("[A-Za-z-]{1,20}", "[ -~]{0,60}").prop_map(line),
        1 => prop::collection::vec(any::<u8>(), 0..60).prop_map(|mut b| { b.extend_from_slice(b"\r\n"); b }),
    ]
}

/// A chunk: its declared size (or the true one), an extension, data, and what follows
/// the data (CRLF, or not).
fn chunk() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 0..300),
        prop_oneof![
            4 => Just(None),
            1 => any::<u64>().prop_map(|n| Some(format!("{n:x}"))),
            1 => Just(Some("1ffffffffffffffff0".to_owned())),
            1 => "[0-9a-fA-FxX+ -]{1,20}".prop_map(Some),
        ],
        prop_oneof![3 => Just(String::new()), 1 => ";[a-z=\" ]{0,30}"],
        prop_oneof![5 => Just(b"\r\n".to_vec()), 1 => prop::collection::vec(any::<u8>(), 0..3)],
    )
        .prop_map(|(data, size, extension, end)| {
            let size = size.unwrap_or_else(|| format!("{:x}", data.len()));
            let mut bytes = format!("{size}{extension}\r\n").into_bytes();
            bytes.extend_from_slice(&data);
            bytes.extend_from_slice(&end);
            bytes
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3000),
        (prop::collection::vec(chunk(), 0..12), any::<bool>()).prop_map(|(chunks, last)| {
            let mut bytes = chunks.concat();
            if last {
                bytes.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
            }
            bytes
        }),
        "(?s).{0,200}<title>[ -~]{0,300}</title>.{0,100}".prop_map(String::into_bytes),
    ]
}

fn http_response() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(status_line(), 0..3),
        status_line(),
        prop::collection::vec(header(), 0..140),
        any::<bool>(),
        body(),
    )
        .prop_map(|(interim, status, headers, end_head, body)| {
            let mut bytes = Vec::new();
            for line in interim {
                bytes.extend_from_slice(&line);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(&status);
            bytes.extend_from_slice(&headers.concat());
            if end_head {
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(&body);
            bytes
        })
}

fn cuts() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(0u16..1000, 0..12)
}

fn check_http_bounds(reads: &[&[u8]]) -> Result<HttpExchangeEnd, TestCaseError> {
    let input: usize = reads.iter().map(|r| r.len()).sum();
    let largest_read = reads.iter().map(|r| r.len()).max().unwrap_or(0);
    let decoded = decode_response(reads, BODY_CAP, BODY_KEEP);
    prop_assert!(
        decoded.peak_buffered <= HEAD_LIMIT + 2 * largest_read + 1024,
        "{} bytes buffered from reads of at most {largest_read}",
        decoded.peak_buffered
    );
    if decoded.end == HttpExchangeEnd::MalformedResponse {
        prop_assert!(decoded.error.is_some());
    }
    if let Some(response) = &decoded.response {
        prop_assert!(response.body_length <= BODY_CAP as u64);
        prop_assert!(response.body_prefix.len() <= BODY_KEEP);
        prop_assert!(response.headers.len() <= 128);
        prop_assert!(response.header_bytes <= input);
        let header_text: usize = response
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum();
        // Lossy UTF-8 decoding turns one bad byte into three.
        prop_assert!(header_text + response.reason.len() <= 3 * input);
        prop_assert!(
            response
                .title
                .as_ref()
                .is_none_or(|t| t.chars().count() <= 256)
        );
        prop_assert_eq!(response.body_sha256.len(), 64);
    }
    Ok(decoded.end)
}

#[test]
fn http_responses_decode_without_panic_and_buffer_bounded() {
    check(250, (http_response(), cuts()), |(bytes, cuts)| {
        check_http_bounds(&split(&bytes, &cuts)).map(drop)
    });
}

#[test]
fn http_byte_by_byte_reads_decode_like_one_read() {
    check(64, http_response(), |bytes| {
        let one = decode_response(&[&bytes], BODY_CAP, BODY_KEEP);
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        check_http_bounds(&singles)?;
        let many = decode_response(&singles, BODY_CAP, BODY_KEEP);
        prop_assert_eq!(one.end, many.end);
        prop_assert_eq!(
            one.response
                .map(|r| (r.status, r.body_length, r.body_sha256)),
            many.response
                .map(|r| (r.status, r.body_length, r.body_sha256))
        );
        Ok(())
    });
}

/// Well-framed responses, in any split, decode to exactly the body sent.
#[test]
fn http_well_framed_bodies_decode_exactly_in_any_split() {
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..BODY_CAP),
        prop::collection::vec(1usize..600, 1..20),
        any::<bool>(),
        prop::collection::vec(("X-[A-Za-z]{1,10}", "[ -~]{0,40}"), 0..10),
        cuts(),
    );
    check(
        300,
        strategy,
        |(body, chunk_sizes, chunked, headers, cuts)| {
            let mut bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n".to_vec();
            for (name, value) in &headers {
                bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            if chunked {
                bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                let mut sizes = chunk_sizes.iter().cycle();
                while !rest.is_empty() {
                    let n = (*sizes.next().unwrap()).min(rest.len());
                    bytes.extend_from_slice(format!("{n:X};ext=1\r\n").as_bytes());
                    bytes.extend_from_slice(&rest[..n]);
                    bytes.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            } else {
                bytes.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                bytes.extend_from_slice(&body);
            }
            // Bytes after the response are never read into the body.
            bytes.extend_from_slice(b"HTTP/1.1 500 trailing garbage\r\n\r\n");
            let reads = split(&bytes, &cuts);
            let decoded = decode_response(&reads, BODY_CAP, BODY_KEEP);
            prop_assert_eq!(
                decoded.end,
                HttpExchangeEnd::Complete,
                "{:?}",
                decoded.error
            );
            let response = decoded.response.unwrap();
            prop_assert_eq!(response.status, 200);
            prop_assert_eq!(response.chunked, chunked);
            prop_assert_eq!(response.body_length, body.len() as u64);
            prop_assert_eq!(response.body_sha256, hex::encode(Sha256::digest(&body)));
            prop_assert_eq!(
                &response.body_prefix[..],
                &body[..body.len().min(BODY_KEEP)]
            );
            Ok(())
        },
    );
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The real probe, against a loopback server that sends the bytes and closes, ends as
/// `decode_response` says: the socket-free reader is the probe's reader.
#[test]
fn http_probe_over_a_socket_agrees_with_decode_response() {
    use censorprobe::probe::web::http::{HttpProbeConfig, HttpProber};
    let prober = HttpProber::new(
        HttpProbeConfig {
            response_timeout: Duration::from_secs(10),
            body_cap: BODY_CAP,
            body_keep: BODY_KEEP,
            ..HttpProbeConfig::default()
        },
        ConnectionBudget::new(16),
    );
    check(150, http_response(), |bytes| {
        let decoded = decode_response(&[&bytes], BODY_CAP, BODY_KEEP);
        let obs = runtime().block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let response = bytes.clone();
            let server = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                // Read the whole request first: closing with unread data would reset.
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
            let obs = prober.probe(addr.ip(), addr.port(), "fuzz.test").await;
            let _ = server.await;
            obs
        });
        prop_assert_eq!(obs.exchange, Some(decoded.end), "{:?}", obs.error);
        prop_assert_eq!(
            obs.response
                .map(|r| (r.status, r.headers.len(), r.body_length, r.body_sha256)),
            decoded
                .response
                .map(|r| (r.status, r.headers.len(), r.body_length, r.body_sha256))
        );
        Ok(())
    });
}

/// A chunk-size line that never ends must not be buffered without limit.
#[test]
fn http_endless_chunk_size_line_is_refused_with_bounded_buffer() {
    let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    bytes.resize(bytes.len() + 1024 * 1024, b'a');
    let reads: Vec<&[u8]> = bytes.chunks(16 * 1024).collect();
    let decoded = decode_response(&reads, BODY_CAP, BODY_KEEP);
    assert!(
        decoded.peak_buffered <= HEAD_LIMIT + 2 * 16 * 1024,
        "{} bytes of one chunk-size line buffered",
        decoded.peak_buffered
    );
    assert_eq!(decoded.end, HttpExchangeEnd::MalformedResponse);
}

/// Interim (1xx) responses without end must not keep the reader going for ever.
#[test]
fn http_endless_interim_responses_are_refused() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(40_000);
    let reads: Vec<&[u8]> = bytes.chunks(16 * 1024).collect();
    let decoded = decode_response(&reads, BODY_CAP, BODY_KEEP);
    assert_eq!(
        decoded.end,
        HttpExchangeEnd::MalformedResponse,
        "a megabyte of interim responses read to the end"
    );
}

// ---------------------------------------------------------------------------------------
// TLS: the probe's handshake against a server sending hostile bytes, and certificates

struct TlsFixture {
    runtime: tokio::runtime::Runtime,
    prober: TlsProber,
    /// Real first flights of a rustls server: TLS 1.2 (plaintext certificate) and 1.3.
    flights: Vec<Vec<u8>>,
    ca: censorprobe::servers::ca::LabCa,
}

fn tls_fixture() -> &'static TlsFixture {
    static FIXTURE: OnceLock<TlsFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = censorprobe::servers::ca::LabCa::new("fuzz CA").unwrap();
        let roots = Arc::new(censorprobe::trust::root_store(&[ca.cert_der()]));
        let prober = TlsProber::new(
            roots,
            TlsProbeConfig {
                connect_timeout: Duration::from_secs(5),
                handshake_timeout: Duration::from_secs(5),
                ..TlsProbeConfig::default()
            },
            ConnectionBudget::new(16),
        )
        .unwrap();
        let flights = [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .map(|version| server_flight(&ca, version))
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        TlsFixture {
            runtime,
            prober,
            flights,
            ca,
        }
    })
}

/// What a rustls server sends in answer to a `ClientHello`, produced in memory.
fn server_flight(
    ca: &censorprobe::servers::ca::LabCa,
    version: &'static rustls::SupportedProtocolVersion,
) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = ca.issue(&["good.test"], &[]).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut client =
        rustls::ClientConnection::new(Arc::new(client_config), "good.test".try_into().unwrap())
            .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    server.read_tls(&mut &hello[..]).unwrap();
    server.process_new_packets().unwrap();
    let mut flight = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut flight).unwrap();
    }
    flight
}

/// A TLS record: content type, version, body; the length field true or not.
fn tls_record() -> impl Strategy<Value = Vec<u8>> {
    let handshake = (
        prop::sample::select(vec![1u8, 2, 4, 8, 11, 12, 13, 14, 15, 20, 24, 0, 255]),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(kind, body, length)| {
            let length = length.map_or(body.len() as u32, |l| l & 0x00ff_ffff);
            let mut bytes = vec![kind];
            bytes.extend_from_slice(&length.to_be_bytes()[1..]);
            bytes.extend_from_slice(&body);
            bytes
        });
    (
        prop::sample::select(vec![20u8, 21, 22, 23, 24, 0, 255]),
        prop::sample::select(vec![0x0303u16, 0x0301, 0x0300, 0x0304, 0x7f17, 0xffff]),
        prop_oneof![
            3 => handshake,
            1 => (1u8..=2, any::<u8>()).prop_map(|(level, desc)| vec![level, desc]),
            1 => prop::collection::vec(any::<u8>(), 0..400),
        ],
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(kind, version, body, length)| {
            let length = length.unwrap_or(body.len() as u16);
            let mut bytes = vec![kind];
            bytes.extend_from_slice(&version.to_be_bytes());
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(&body);
            bytes
        })
}

#[derive(Debug, Clone)]
enum Flight {
    /// One of the fixture's real server flights, damaged.
    Real(usize, Mutation),
    Records(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, Copy)]
enum Close {
    Fin,
    Reset,
}

fn run_tls_case(
    bytes: &[u8],
    cuts: &[u16],
    close: Close,
) -> censorprobe::observation::web::TlsObservation {
    let fixture = tls_fixture();
    fixture.runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pieces: Vec<Vec<u8>> = split(bytes, cuts).into_iter().map(<[u8]>::to_vec).collect();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 4096];
            let _ = stream.read(&mut hello).await;
            stream.set_nodelay(true).unwrap();
            for piece in pieces {
                if stream.write_all(&piece).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
                tokio::task::yield_now().await;
            }
            if let Close::Reset = close {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
            drop(stream);
        });
        let obs = fixture
            .prober
            .probe(addr.ip(), addr.port(), "good.test")
            .await
            .unwrap();
        let _ = server.await;
        obs
    })
}

#[test]
fn tls_handshake_with_hostile_server_bytes_ends_cleanly() {
    let flight = prop_oneof![
        (0usize..2, mutation()).prop_map(|(i, m)| Flight::Real(i, m)),
        prop::collection::vec(tls_record(), 1..6).prop_map(Flight::Records),
    ];
    let close = prop_oneof![Just(Close::Fin), Just(Close::Reset)];
    check(300, (flight, cuts(), close), |(flight, cuts, close)| {
        let fixture = tls_fixture();
        let bytes = match &flight {
            Flight::Real(i, mutation) => mutate(fixture.flights[*i].clone(), mutation),
            Flight::Records(records) => records.concat(),
        };
        let sent = bytes.len() as u64;
        let obs = run_tls_case(&bytes, &cuts, close);
        let end = obs
            .handshake
            .expect("a connected probe records how the handshake ended");
        // Nothing here completes a handshake: a server's flight replayed to another
        // client fails its signature or key schedule.
        prop_assert_ne!(end, TlsHandshakeEnd::Complete);
        prop_assert!(obs.chain.is_empty() && obs.validity.is_none());
        prop_assert!(obs.bytes_received <= sent);
        prop_assert!(obs.error.as_ref().is_none_or(|e| e.len() <= 4096));
        if end == TlsHandshakeEnd::AlertReceived {
            prop_assert!(obs.alert.is_some());
        }
        Ok(())
    });
}

#[test]
fn tls_alert_of_any_code_is_recorded() {
    check(64, any::<u8>(), |code| {
        let obs = run_tls_case(&[21, 3, 3, 0, 2, 2, code], &[], Close::Fin);
        // close_notify (0) is not an error to rustls; every other code ends the handshake.
        if code != 0 {
            prop_assert_eq!(obs.handshake, Some(TlsHandshakeEnd::AlertReceived));
            prop_assert_eq!(obs.alert.map(|a| a.code), Some(code));
        }
        Ok(())
    });
}

#[test]
fn certificates_describe_without_panic_and_bounded() {
    let names = prop::collection::vec("[a-z]{1,10}\\.test", 1..4);
    let ips = prop::collection::vec(any::<[u8; 4]>(), 0..3);
    check(400, (names, ips, mutation()), |(names, ips, mutation)| {
        let fixture = tls_fixture();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let ips: Vec<IpAddr> = ips.into_iter().map(IpAddr::from).collect();
        let (chain, _) = fixture.ca.issue(&names, &ips).unwrap();
        let untouched = matches!(mutation, Mutation::None);
        let der = mutate(chain[0].to_vec(), &mutation);
        let info = describe_certificate(&rustls_pki_types::CertificateDer::from(der.clone()));
        prop_assert_eq!(info.sha256.len(), 64);
        let text = info.subject.len()
            + info.issuer.len()
            + info.serial.len()
            + info.san_dns.iter().map(String::len).sum::<usize>()
            + 16 * info.san_ips.len()
            + info.parse_error.as_ref().map_or(0, String::len);
        // Hex and escaped renderings double or quadruple bytes.
        prop_assert!(
            text <= 4 * der.len() + 512,
            "{text} bytes from {}",
            der.len()
        );
        if untouched {
            prop_assert_eq!(info.parse_error, None);
            prop_assert_eq!(
                info.san_dns,
                names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()
            );
            prop_assert_eq!(info.san_ips, ips);
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// The lab censor's frames

const CENSOR_SCENARIO: &str = r#"
[censor]
ip_ttl = 99
ip_id = 4242

[pools]
bogon = ["10.10.34.34", "2001:db8::1"]

[[dns_rules]]
pattern = "inject.example"
action = "inject"
pool = "bogon"

[[dns_rules]]
pattern = "drop.example"
action = "drop"

[[dns_rules]]
pattern = "only.example"
action = "censor_only"
pool = "bogon"

[[http_rules]]
pattern = "rst.example"
match = "subdomain"
action = "rst_ack"
count = 16
direction = "both"
residual = { action = "reset", secs = 90 }

[[tls_rules]]
pattern = "sni.example"
match = "suffix"
action = "drop"
"#;

const CENSOR_NAMES: [&str; 6] = [
    "inject.example",
    "drop.example",
    "only.example",
    "www.rst.example",
    "a.sni.example",
    "fine.example",
];

fn client_hello(sni: &str) -> Vec<u8> {
    static HELLOS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let hellos = HELLOS.get_or_init(|| {
        CENSOR_NAMES
            .iter()
            .map(|name| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                let mut conn = rustls::ClientConnection::new(
                    Arc::new(config),
                    (*name).to_owned().try_into().unwrap(),
                )
                .unwrap();
                let mut out = Vec::new();
                conn.write_tls(&mut out).unwrap();
                out
            })
            .collect()
    });
    let i = CENSOR_NAMES.iter().position(|n| *n == sni).unwrap();
    hellos[i].clone()
}

#[derive(Debug, Clone)]
enum Payload {
    Dns(String, u16),
    Http(String),
    Hello(String),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
struct FrameCase {
    from_client: bool,
    tcp: bool,
    flags: u8,
    seq: u32,
    payload: Payload,
    payload_mutation: Mutation,
    frame_mutation: Mutation,
    /// Extra bytes after the IP packet (Ethernet padding, or junk).
    padding: Vec<u8>,
}

fn frame_case() -> impl Strategy<Value = FrameCase> {
    let name = prop::sample::select(CENSOR_NAMES.to_vec()).prop_map(str::to_owned);
    let payload = prop_oneof![
        (name.clone(), any::<u16>()).prop_map(|(n, t)| Payload::Dns(n, t)),
        name.clone().prop_map(Payload::Http),
        name.prop_map(Payload::Hello),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Payload::Raw),
    ];
    (
        any::<bool>(),
        any::<bool>(),
        any::<u8>(),
        any::<u32>(),
        payload,
        mutation(),
        mutation(),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(
            |(from_client, tcp, flags, seq, payload, payload_mutation, frame_mutation, padding)| {
                FrameCase {
                    from_client,
                    tcp,
                    flags,
                    seq,
                    payload,
                    payload_mutation,
                    frame_mutation,
                    padding,
                }
            },
        )
}

fn build_frame(case: &FrameCase) -> Vec<u8> {
    let client = (plan::VANTAGE_IP, 40_000);
    let server = (Ipv4Addr::new(198, 19, 1, 1), 80);
    let resolver = (plan::RESOLVER_IP, 53);
    let fp = Fingerprint::new(63, 1);
    let payload = match &case.payload {
        Payload::Dns(name, qtype) => {
            let mut query = Message::query();
            query.add_query(Query::query(
                Name::from_ascii(name).unwrap(),
                RecordType::from(*qtype % 40),
            ));
            query.to_vec().unwrap()
        }
        Payload::Http(host) => format!("GET / HTTP/1.1\r\nHost: {host}:80\r\n\r\n").into_bytes(),
        Payload::Hello(name) => client_hello(name),
        Payload::Raw(bytes) => bytes.clone(),
    };
    let payload = mutate(payload, &case.payload_mutation);
    let mut frame = if case.tcp || !case.from_client {
        let (source, destination) = if case.from_client {
            (client, server)
        } else {
            (server, client)
        };
        let segment = Segment {
            source,
            destination,
            seq: case.seq,
            ack: 5000,
            flags: case.flags,
            window: 500,
            payload: &[],
        };
        let mut frame = packet::tcp_frame(Link::Server, &segment, fp);
        frame.extend_from_slice(&payload);
        let total = (frame.len() - 14) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame
    } else {
        packet::udp_frame(Link::Server, client, resolver, &payload, fp)
    };
    frame = mutate(frame, &case.frame_mutation);
    frame.extend_from_slice(&case.padding);
    frame
}

#[test]
fn censor_frames_never_panic_and_emit_bounded_parsable_frames() {
    let scenario = Scenario::parse(CENSOR_SCENARIO, Path::new("fuzz.toml")).unwrap();
    check(800, prop::collection::vec(frame_case(), 1..6), |cases| {
        let mut engine = Engine::new(&scenario);
        let start = Instant::now();
        for (i, case) in cases.iter().enumerate() {
            let frame = build_frame(case);
            let emitted = engine.handle(&frame, start + Duration::from_secs(i as u64 * 7));
            let _ = engine.take_events();
            // One forwarded frame plus at most 16 resets each way.
            prop_assert!(emitted.len() <= 33, "{} frames", emitted.len());
            for emit in &emitted {
                // A forged DNS answer repeats the question with its name written out
                // (up to 255 octets; the query may have compressed it).
                prop_assert!(
                    emit.frame.len() <= frame.len().max(54) + 320,
                    "{}-byte frame emitted for a {}-byte frame",
                    emit.frame.len(),
                    frame.len()
                );
                prop_assert!(
                    packet::ipv4_of(&emit.frame).is_some(),
                    "the censor wrote a frame it cannot read back"
                );
            }
        }
        Ok(())
    });
}

#[test]
fn packet_helpers_accept_any_bytes() {
    check(
        3000,
        prop::collection::vec(any::<u8>(), 0..200),
        |mut bytes| {
            // Mostly IPv4 frames, so the deeper parsers are reached.
            if bytes.len() >= 15 && bytes[0] & 1 == 0 {
                bytes[12] = 0x08;
                bytes[13] = 0x00;
                bytes[14] = 0x40 | (bytes[14] & 0x0f);
            }
            if let Some(ip) = packet::ipv4_of(&bytes) {
                let _ = packet::udp_of(&ip).map(|u| u.get_destination());
                let _ = packet::tcp_of(&ip).map(|t| t.get_flags());
                for link in [Link::Client, Link::Server] {
                    let out = packet::forward(&ip, link);
                    prop_assert_eq!(out.len(), 14 + usize::from(ip.get_total_length()));
                    prop_assert!(out.len() <= bytes.len());
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// Target lists

fn target_field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9-]{1,12}(\\.[a-z0-9_-]{1,12}){1,3}\\.?",
        2 => "(https?|ftp|HTTP)://[a-zA-Z0-9.@:-]{0,30}(/[ -~]{0,20})?",
        1 => any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string()),
        1 => any::<[u8; 16]>().prop_map(|b| format!("[{}]", Ipv6Addr::from(b))),
        1 => "(?s).{0,40}",
        1 => "[a-z]{60,70}\\.[a-z]{60,70}\\.[a-z]{60,70}\\.[a-z]{60,70}",
        1 => "[äöüßé日本xn-]{1,10}\\.(example|テスト)",
        1 => "0x[0-9a-f]{1,8}(\\.[0-9]{1,3}){0,2}",
    ]
}

fn target_line() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string()),
        any::<[u8; 16]>().prop_map(|b| Ipv6Addr::from(b).to_string()),
        "category=[A-Za-z0-9]{0,20}",
        "[ -~]{0,10}",
    ];
    prop_oneof![
        6 => (target_field(), prop::collection::vec(field, 0..5), prop::option::of("#[ -~]{0,20}"))
            .prop_map(|(target, fields, comment)| {
                let mut line = target;
                for f in fields {
                    line.push(',');
                    line.push_str(&f);
                }
                if let Some(c) = comment {
                    line.push(' ');
                    line.push_str(&c);
                }
                line.into_bytes()
            }),
        1 => prop::collection::vec(any::<u8>(), 0..60),
        1 => Just(Vec::new()),
    ]
}

fn csv_field() -> impl Strategy<Value = String> {
    prop_oneof![
        target_field(),
        "[A-Z]{0,6}",
        "\"([^\"]|\"\"){0,20}\"",
        "\"[^\"]{0,10}",
        "(?s)[ -~\n\r]{0,20}",
    ]
}

fn target_file() -> impl Strategy<Value = Vec<u8>> {
    let plain = (
        any::<bool>(),
        prop::collection::vec(target_line(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(bom, lines, crlf)| {
            let mut bytes = if bom {
                b"\xEF\xBB\xBF".to_vec()
            } else {
                Vec::new()
            };
            bytes.extend_from_slice(&lines.join(if crlf { &b"\r\n"[..] } else { &b"\n"[..] }));
            bytes
        });
    let csv = (
        prop::sample::select(vec![
            "url,category_code",
            "URL , Category_Code,notes",
            "url,category_code,category_description,date_added,source,notes",
        ]),
        prop::collection::vec(prop::collection::vec(csv_field(), 0..6), 0..30),
    )
        .prop_map(|(header, rows)| {
            let mut text = format!("{header}\n");
            for row in rows {
                text.push_str(&row.join(","));
                text.push('\n');
            }
            text.into_bytes()
        });
    prop_oneof![plain, csv]
}

/// Bytes a loaded list keeps (strings, and 16 per address).
fn list_bytes(list: &TargetList) -> usize {
    let targets: usize = list
        .targets
        .iter()
        .map(|t| {
            t.domain.len()
                + 16 * t.pinned_ips.len()
                + t.sources
                    .iter()
                    .map(|s| {
                        s.source.len()
                            + s.input.len()
                            + s.category_code.as_ref().map_or(0, String::len)
                    })
                    .sum::<usize>()
        })
        .sum();
    let skipped: usize = list
        .skipped
        .iter()
        .map(|s| s.source.len() + s.input.len() + s.reason.len())
        .sum();
    targets + skipped
}

#[test]
fn target_lists_load_without_panic_and_keep_bounded_data() {
    check(300, target_file(), |bytes| {
        // The CSV reader also ends records at a lone CR.
        let lines = bytes.split(|b| matches!(b, b'\n' | b'\r')).count();
        let mut loader = TargetLoader::new(false);
        loader.add_reader("list", &bytes[..]).unwrap();
        let list = loader.finish();
        let entries =
            list.skipped.len() + list.targets.iter().map(|t| t.sources.len()).sum::<usize>();
        prop_assert!(entries <= lines, "{entries} entries from {lines} lines");
        for target in &list.targets {
            prop_assert!(target.domain.len() <= 253 || target.address.is_some());
            prop_assert!(target.domain.is_ascii());
        }
        // Each entry keeps its line, a reason or a name (at most 253 octets, or a few
        // times the line after IDNA), and the source's name.
        let kept = list_bytes(&list);
        prop_assert!(
            kept <= 4 * bytes.len() + 512 * entries,
            "{kept} bytes kept from {}",
            bytes.len()
        );
        // What the compact store holds is bounded alike (before any target is made).
        let stored = list.targets.heap_bytes();
        prop_assert!(
            stored <= 4 * bytes.len() + 512 * entries + 4096,
            "{stored} bytes stored from {}",
            bytes.len()
        );

        let mut strict = TargetLoader::new(true);
        let failed = strict.add_reader("list", &bytes[..]).is_err();
        let strict_list = strict.finish();
        prop_assert_eq!(failed, !list.skipped.is_empty());
        prop_assert_eq!(strict_list.skipped.len(), usize::from(failed));
        Ok(())
    });
}

#[test]
fn normalize_host_accepts_any_text() {
    check(1000, prop_oneof![target_field(), "(?s).{0,300}"], |text| {
        if let Ok(host) = normalize_host(&text) {
            let name = host.name();
            prop_assert!(name.is_ascii() && name.len() <= 253, "{name:?}");
        }
        Ok(())
    });
}

/// One line with a great many pinned addresses must not take time or memory without
/// bound: it is refused, or its pins are capped.
#[test]
fn a_line_with_twenty_thousand_pins_is_bounded() {
    let mut line = "pins.example".to_owned();
    for i in 0..20_000u32 {
        write!(line, ",{}", Ipv4Addr::from(0x0a00_0000 + i)).unwrap();
    }
    let mut loader = TargetLoader::new(false);
    loader.add_reader("list", line.as_bytes()).unwrap();
    let list = loader.finish();
    let pins: usize = list.targets.iter().map(|t| t.pinned_ips.len()).sum();
    assert!(pins <= 4096, "{pins} addresses pinned from one line");
    assert!(
        list_bytes(&list) <= 64 * 1024,
        "{} bytes kept",
        list_bytes(&list)
    );
}

/// A target line of megabytes is refused without keeping it whole.
#[test]
fn a_huge_target_line_is_not_kept_whole() {
    let line = format!("{}.example\n", "a".repeat(8 * 1024 * 1024));
    let mut loader = TargetLoader::new(false);
    loader.add_reader("list", line.as_bytes()).unwrap();
    let list = loader.finish();
    assert!(list.targets.is_empty());
    assert!(
        list_bytes(&list) <= 64 * 1024,
        "{} bytes kept",
        list_bytes(&list)
    );
}

// ---------------------------------------------------------------------------------------
// Reports

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "(?s).{0,20}".prop_map(Value::String),
        prop::sample::select(vec![
            "ok",
            "dns_poisoning",
            "timeout",
            "rst_injection",
            "blocked",
            "dns",
            "http",
            "tls",
            "injection",
            "bogon"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "record",
                    "domain",
                    "dns",
                    "http",
                    "tls",
                    "verdict",
                    "method",
                    "methods",
                    "stage",
                    "forged_ips",
                    "blocking",
                    "accessible",
                    "attempts",
                    "interrupted",
                    "x"
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn report_line() -> impl Strategy<Value = Vec<u8>> {
    use serde_json::json;
    let record = (
        prop::sample::select(vec![
            "header",
            "target",
            "summary",
            "consensus",
            "capture",
            "target",
        ]),
        prop::sample::select(vec!["a.example", "b.example", "A.EXAMPLE.", ""]),
        json_value(),
        json_value(),
    )
        .prop_map(|(kind, domain, dns, extra)| {
            let mut value = json!({"record": kind, "domain": domain, "dns": dns, "x": extra});
            if kind == "consensus" {
                value["attempts"] = json!(2);
                value["outcome"] = json!({"domain": domain});
            }
            serde_json::to_vec(&value).unwrap()
        });
    prop_oneof![
        4 => record,
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..80),
        1 => (1usize..300).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        1 => (1usize..300).prop_map(|depth| "{\"a\":".repeat(depth).into_bytes()),
    ]
}

fn report_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((report_line(), mutation()), 0..30),
        any::<bool>(),
    )
        .prop_map(|(lines, newline_at_end)| {
            let mut bytes = Vec::new();
            for (line, mutation) in lines {
                bytes.extend_from_slice(&mutate(line, &mutation));
                bytes.push(b'\n');
            }
            if !newline_at_end {
                bytes.pop();
            }
            bytes
        })
}

#[test]
fn reports_read_without_panic_and_bounded() {
    use censorprobe::report::read::LoadedReport;
    use censorprobe::scan::resume::PriorRun;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.jsonl");
    check(200, report_file(), |bytes| {
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&bytes))
            .unwrap();
        let lines = bytes.split(|b| *b == b'\n').count();
        let report = LoadedReport::load(&path).unwrap();
        prop_assert!(report.stats.lines <= lines);
        prop_assert!(report.stats.unparsed.len() <= report.stats.lines);
        prop_assert!(report.outcomes.len() <= report.stats.lines);
        prop_assert!(report.stats.complete_len <= bytes.len() as u64);
        let reasons: usize = report.stats.unparsed.iter().map(|u| u.reason.len()).sum();
        // A reason may quote a value of its line.
        prop_assert!(reasons <= bytes.len() + 256 * report.stats.unparsed.len());
        let _ = report.warning();
        for repeat in [1, 3] {
            // A file with no censorprobe record is refused for --resume, never appended to.
            match PriorRun::load(&path, repeat) {
                Ok(prior) => prop_assert!(prior.target_records <= report.stats.lines),
                Err(error) => prop_assert!(
                    error.to_string().contains("not a censorprobe JSONL report"),
                    "{error}"
                ),
            }
        }
        Ok(())
    });
}

#[test]
fn lab_expectations_compare_any_report_text() {
    const SCENARIO: &str = r#"
[[names]]
name = "a.example"
a = ["198.19.1.1"]
expect = { dns = "dns_poisoning", dns_method = "injection", dns_methods = ["injection", "bogon"], http = "ok", blocking = "dns" }

[[names]]
name = "b.example"
a = ["198.19.1.1"]
expect = { http = "rst_injection", http_stage = "request", blocking = false, accessible = false }
"#;
    let scenario = Scenario::parse(SCENARIO, Path::new("fuzz.toml")).unwrap();
    check(200, report_file(), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        let comparison = censorprobe::lab::expect::compare(&scenario, &text);
        prop_assert_eq!(comparison.names.len(), 2);
        // Exactly the checks the scenario asks for, whatever the report holds.
        prop_assert_eq!(comparison.checks.len(), 10);
        let shown = comparison.to_string();
        prop_assert!(shown.len() <= 4096 + 2 * text.len());
        Ok(())
    });
}
