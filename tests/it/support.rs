//! Shared helpers of the integration tests: the real binary, report parsing, schema
//! validation, and a scriptable loopback DNS server.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::Value;
use tokio::net::UdpSocket;

pub const BIN: &str = env!("CARGO_BIN_EXE_censorprobe");

pub fn repo_path(relative: &str) -> PathBuf {
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
pub fn assert_schema_valid(record: &Value) {
    let errors: Vec<String> = SCHEMA
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "record does not match the schema: {errors:#?}\n{record:#}"
    );
}

/// A parsed JSONL report.
#[derive(Debug)]
pub struct Report {
    pub header: Value,
    pub targets: Vec<Value>,
    /// With `--repeat`: one consensus record per target.
    pub consensus: Vec<Value>,
    pub summary: Value,
}

impl Report {
    pub fn parse(text: &str) -> Report {
        let mut header = None;
        let mut summary = None;
        let mut targets = Vec::new();
        let mut consensus = Vec::new();
        for line in text.lines() {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad JSONL line {line:?}: {e}"));
            assert_schema_valid(&record);
            match record["record"].as_str() {
                Some("header") => header = Some(record),
                Some("target") => targets.push(record),
                Some("consensus") => consensus.push(record),
                Some("summary") => summary = Some(record),
                other => panic!("unknown record type {other:?}"),
            }
        }
        Report {
            header: header.expect("a header record"),
            targets,
            consensus,
            summary: summary.expect("a summary record"),
        }
    }

    pub fn target(&self, domain: &str) -> &Value {
        self.targets
            .iter()
            .find(|t| t["domain"] == domain)
            .unwrap_or_else(|| panic!("no record for {domain}"))
    }
}

/// Output of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run_binary(args: &[String]) -> Run {
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

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// What the fake server does with one name.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Reply after each delay with an A answer (an empty list is NOERROR with no data).
    Answers(Vec<(Duration, Vec<Ipv4Addr>)>),
    Nxdomain,
    ServFail,
    /// Never answer.
    Drop,
    /// The n-th query for the name gets the n-th behaviour, round robin.
    Cycle(Vec<Behaviour>),
}

impl Behaviour {
    pub fn a(ip: [u8; 4]) -> Behaviour {
        Behaviour::Answers(vec![(Duration::ZERO, vec![Ipv4Addr::from(ip)])])
    }

    /// An on-path injector's race: the forged answer at once, the genuine one later.
    pub fn injected(forged: [u8; 4], genuine: [u8; 4], genuine_after: Duration) -> Behaviour {
        Behaviour::Answers(vec![
            (Duration::ZERO, vec![Ipv4Addr::from(forged)]),
            (genuine_after, vec![Ipv4Addr::from(genuine)]),
        ])
    }
}

/// A loopback DNS server answering by name; names it does not know get `default`.
/// Runs until the test's runtime ends.
pub async fn fake_dns(rules: &[(&str, Behaviour)], default: Behaviour) -> SocketAddr {
    let rules: HashMap<String, Behaviour> = rules
        .iter()
        .map(|(n, b)| ((*n).to_owned(), b.clone()))
        .collect();
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        let mut queries_seen: HashMap<String, usize> = HashMap::new();
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
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
