//! Shared helpers of the integration tests: the real binary, report parsing, schema
//! validation, and a scriptable loopback DNS server.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use censorprobe::record::{HeaderRecord, SummaryRecord, TargetRecord};
use censorprobe::report::consensus::ConsensusRecord;
use censorprobe::report::read::{ReportLine, read_str};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::Value;
use tokio::net::UdpSocket;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_censorprobe");

pub(crate) fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let text = std::fs::read_to_string(repo_path("reports/schema/censorprobe-report.schema.json"))
        .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the report schema compiles")
});

/// Validates one record against the report schema, panicking with every error.
pub(crate) fn assert_schema_valid(record: &Value) {
    let errors: Vec<String> = SCHEMA
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "record does not match the schema: {errors:#?}\n{record:#}"
    );
}

/// A parsed JSONL report: the typed records, read by the same reader as the workflows.
#[derive(Debug)]
pub(crate) struct Report {
    pub header: HeaderRecord,
    pub targets: Vec<TargetRecord>,
    /// With `--repeat`: one consensus record per target.
    pub consensus: Vec<ConsensusRecord>,
    pub summary: SummaryRecord,
}

impl Report {
    /// Parses a whole report: every line must be JSON that matches the schema (the wire
    /// format, checked on its own parse) and a typed record of a known type.
    pub(crate) fn parse(text: &str) -> Report {
        for line in text.lines() {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad JSONL line {line:?}: {e}"));
            assert_schema_valid(&record);
        }
        let mut header = None;
        let mut summary = None;
        let mut targets = Vec::new();
        let mut consensus = Vec::new();
        let stats = read_str(text, |_, line: ReportLine<TargetRecord>| {
            match line {
                ReportLine::Header(record) => header = Some(*record),
                ReportLine::Target(record) => targets.push(*record),
                ReportLine::Consensus(record) => consensus.push(*record),
                ReportLine::Summary(record) => summary = Some(*record),
            }
            Ok(())
        });
        assert!(
            stats.unparsed.is_empty() && stats.unknown_records.is_empty(),
            "unreadable lines or unknown record types: {stats:#?}"
        );
        Report {
            header: header.expect("a header record"),
            targets,
            consensus,
            summary: summary.expect("a summary record"),
        }
    }

    pub(crate) fn target(&self, domain: &str) -> &TargetRecord {
        self.targets
            .iter()
            .find(|t| t.domain == domain)
            .unwrap_or_else(|| panic!("no record for {domain}"))
    }
}

/// A record as its JSON, for assertions on fields deep inside it (replies, rechecks).
pub(crate) fn json(record: &impl serde::Serialize) -> Value {
    serde_json::to_value(record).expect("records serialize")
}

/// Output of one run of the binary.
#[derive(Debug)]
pub(crate) struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) async fn run_binary(args: &[String]) -> Run {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the binary runs");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub(crate) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// What the fake server does with one name.
#[derive(Debug, Clone)]
pub(crate) enum Behaviour {
    /// Reply after each delay with an A answer (an empty list is NOERROR with no data).
    Answers(Vec<(Duration, Vec<Ipv4Addr>)>),
    Nxdomain,
    ServFail,
    /// Never answer.
    Drop,
    /// The n-th query for the name gets the n-th behaviour, round robin.
    Cycle(Vec<Behaviour>),
    /// Over UDP a truncated reply (TC=1, no answer); over TCP (with `FakeOptions::tcp`)
    /// these addresses.
    Truncated(Vec<Ipv4Addr>),
    /// Truncated over UDP, and the TCP connection is closed without a reply.
    TruncatedNoTcp,
    /// The same reply, `records` A records in it, sent `copies` times.
    Flood {
        copies: usize,
        records: usize,
    },
}

/// How a fake DNS server behaves as a whole.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FakeOptions {
    /// Token bucket: queries above this rate (a second) are dropped, whatever the name.
    pub limit_qps: Option<f64>,
    /// Tokens the bucket holds (the burst allowed).
    pub burst: f64,
    /// Also serve DNS over TCP on the same port.
    pub tcp: bool,
}

impl Behaviour {
    pub(crate) fn a(ip: [u8; 4]) -> Behaviour {
        Behaviour::Answers(vec![(Duration::ZERO, vec![Ipv4Addr::from(ip)])])
    }

    /// An on-path injector's race: the forged answer at once, the genuine one later.
    pub(crate) fn injected(
        forged: [u8; 4],
        genuine: [u8; 4],
        genuine_after: Duration,
    ) -> Behaviour {
        Behaviour::Answers(vec![
            (Duration::ZERO, vec![Ipv4Addr::from(forged)]),
            (genuine_after, vec![Ipv4Addr::from(genuine)]),
        ])
    }
}

/// A loopback DNS server answering by name; names it does not know get `default`.
/// Runs until the test's runtime ends.
pub(crate) async fn fake_dns(rules: &[(&str, Behaviour)], default: Behaviour) -> SocketAddr {
    fake_dns_with(rules, default, FakeOptions::default()).await
}

/// Binds UDP (and with `tcp`, TCP on the same port number).
async fn bind_fake(tcp: bool) -> (UdpSocket, Option<tokio::net::TcpListener>) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if !tcp {
            return (udp, None);
        }
        if let Ok(listener) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, Some(listener));
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn reply_bytes(query: &Message, code: ResponseCode, ips: &[Ipv4Addr], truncated: bool) -> Vec<u8> {
    let question = query.queries[0].clone();
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = true;
    reply.metadata.recursion_available = true;
    reply.metadata.truncation = truncated;
    reply.metadata.response_code = code;
    reply.add_query(question.clone());
    if question.query_type() == RecordType::A {
        for ip in ips {
            reply.add_answer(Record::from_rdata(
                question.name().clone(),
                300,
                RData::A(A(*ip)),
            ));
        }
    }
    reply.to_vec().unwrap()
}

/// Answers DNS over TCP: `Truncated` names get their addresses, `Answers` the first
/// set, `Nxdomain` NXDOMAIN; anything else gets the connection closed.
async fn serve_tcp(
    listener: tokio::net::TcpListener,
    rules: Arc<HashMap<String, Behaviour>>,
    default: Behaviour,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let rules = Arc::clone(&rules);
        let default = default.clone();
        tokio::spawn(async move {
            let Ok(len) = stream.read_u16().await else {
                return;
            };
            let mut buf = vec![0; usize::from(len)];
            if stream.read_exact(&mut buf).await.is_err() {
                return;
            }
            let Ok(query) = Message::from_vec(&buf) else {
                return;
            };
            let Some(question) = query.queries.first() else {
                return;
            };
            let name = question
                .name()
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let bytes = match rules.get(&name).unwrap_or(&default) {
                Behaviour::Truncated(ips) => reply_bytes(&query, ResponseCode::NoError, ips, false),
                Behaviour::Answers(list) if !list.is_empty() => {
                    reply_bytes(&query, ResponseCode::NoError, &list[0].1, false)
                }
                Behaviour::Nxdomain => reply_bytes(&query, ResponseCode::NXDomain, &[], false),
                _ => return,
            };
            let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let _ = stream.write_all(&framed).await;
        });
    }
}

/// [`fake_dns`] with a rate limit and/or TCP.
pub(crate) async fn fake_dns_with(
    rules: &[(&str, Behaviour)],
    default: Behaviour,
    options: FakeOptions,
) -> SocketAddr {
    let rules: Arc<HashMap<String, Behaviour>> = Arc::new(
        rules
            .iter()
            .map(|(n, b)| ((*n).to_owned(), b.clone()))
            .collect(),
    );
    let (socket, listener) = bind_fake(options.tcp).await;
    let socket = Arc::new(socket);
    let addr = socket.local_addr().unwrap();
    if let Some(listener) = listener {
        tokio::spawn(serve_tcp(listener, Arc::clone(&rules), default.clone()));
    }
    tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        let mut queries_seen: HashMap<String, usize> = HashMap::new();
        let mut tokens = options.burst;
        let mut refilled = std::time::Instant::now();
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            if let Some(qps) = options.limit_qps {
                let now = std::time::Instant::now();
                tokens = (tokens + now.duration_since(refilled).as_secs_f64() * qps)
                    .min(options.burst.max(1.0));
                refilled = now;
                if tokens < 1.0 {
                    continue; // over the limit: dropped, as a rate-limiting resolver does
                }
                tokens -= 1.0;
            }
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let Some(question) = query.queries.first().cloned() else {
                continue;
            };
            let name = question
                .name()
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let mut behaviour = rules.get(&name).unwrap_or(&default).clone();
            if let Behaviour::Cycle(list) = &behaviour {
                let seen = queries_seen.entry(name.clone()).or_default();
                let next = list[*seen % list.len()].clone();
                *seen += 1;
                behaviour = next;
            }
            let respond = |code: ResponseCode, ips: &[Ipv4Addr]| {
                let mut reply =
                    Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                reply.metadata.recursion_desired = true;
                reply.metadata.recursion_available = true;
                reply.metadata.response_code = code;
                reply.add_query(question.clone());
                if question.query_type() == RecordType::A {
                    for ip in ips {
                        reply.add_answer(Record::from_rdata(
                            question.name().clone(),
                            300,
                            RData::A(A(*ip)),
                        ));
                    }
                }
                reply.to_vec().unwrap()
            };
            match behaviour {
                Behaviour::Drop | Behaviour::Cycle(_) => {}
                Behaviour::Truncated(_) | Behaviour::TruncatedNoTcp => {
                    let bytes = reply_bytes(&query, ResponseCode::NoError, &[], true);
                    let _ = socket.send_to(&bytes, peer).await;
                }
                Behaviour::Flood { copies, records } => {
                    let ips: Vec<Ipv4Addr> = (0..records)
                        .map(|i| Ipv4Addr::from(0xC612_0000 | u32::try_from(i).unwrap()))
                        .collect();
                    let bytes = reply_bytes(&query, ResponseCode::NoError, &ips, false);
                    let socket = Arc::clone(&socket);
                    tokio::spawn(async move {
                        for _ in 0..copies {
                            let _ = socket.send_to(&bytes, peer).await;
                        }
                    });
                }
                Behaviour::Nxdomain => {
                    let _ = socket
                        .send_to(&respond(ResponseCode::NXDomain, &[]), peer)
                        .await;
                }
                Behaviour::ServFail => {
                    let _ = socket
                        .send_to(&respond(ResponseCode::ServFail, &[]), peer)
                        .await;
                }
                Behaviour::Answers(list) => {
                    for (delay, ips) in list {
                        let bytes = respond(ResponseCode::NoError, &ips);
                        let socket = Arc::clone(&socket);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = socket.send_to(&bytes, peer).await;
                        });
                    }
                }
            }
        }
    });
    addr
}

/// Start a lab of `scenario` under a fresh id (`prefix` + random), its state in the temp
/// directory; `file` names the scenario in errors.
pub(crate) fn start_lab_with(
    scenario: censorprobe::lab::Scenario,
    file: &Path,
    prefix: &str,
) -> censorprobe::lab::Lab {
    let id = format!("{prefix}{}", censorprobe::lab::topology::random_id());
    censorprobe::lab::Lab::start(
        scenario,
        file,
        &censorprobe::lab::LabOptions {
            id: Some(id.clone()),
            state_dir: Some(std::env::temp_dir().join(format!("censorprobe-lab-{id}"))),
        },
    )
    .unwrap()
}
