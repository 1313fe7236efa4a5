//! The wire vocabulary, pinned: every string a report (or a workflow's output) uses for
//! a verdict, a method, a stage, a blocking layer, an attempt outcome, a probe role or
//! an address source, as a literal list compared with what serde writes and reads.
//!
//! A refactor may move or re-derive these types, but a report written before it must
//! read the same after it and a report written after it must be byte-identical: any
//! change of a string here is a format change (a new `schema_version`), not a cleanup.

use std::collections::BTreeSet;
use std::path::Path;

use censorprobe::observation::web::{AttemptOutcome, ProbeRole};

use censorprobe::lab::scenario::Scenario;
use censorprobe::observation::web::AddressSource;
use censorprobe::record::{ReportRecord, SummaryBuilder, TargetRecord};
use censorprobe::report::consensus::ConsensusRecord;
use censorprobe::report::outcome::TargetOutcome;
use censorprobe::vocab::Stage;
use censorprobe::vocab::{Blocking, BlockingLayer, HttpVerdict, TlsVerdict};
use censorprobe::vocab::{DnsVerdict, PoisoningMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::support::{args, repo_path, run_binary};

/// What serde writes for each value: every one must be a JSON string.
fn written<T: Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .map(|v| match serde_json::to_value(v).unwrap() {
            Value::String(s) => s,
            other => panic!("a wire word is a JSON string, not {other}"),
        })
        .collect()
}

/// Serde writes exactly `expected` for `values` (in order), and reads each word back
/// to the same value.
fn assert_wire<T>(values: &[T], expected: &[&str])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(written(values), expected, "wire words of {values:?}");
    for (value, word) in values.iter().zip(expected) {
        let read: T = serde_json::from_value(Value::String((*word).to_owned()))
            .unwrap_or_else(|e| panic!("{word:?} does not read back: {e}"));
        assert_eq!(&read, value, "{word:?} reads back as another value");
    }
    let distinct: BTreeSet<&&str> = expected.iter().collect();
    assert_eq!(distinct.len(), expected.len(), "two values share a word");
}

#[test]
fn dns_verdicts() {
    let words = [
        "ok",
        "dns_poisoning",
        "timeout",
        "nxdomain",
        "error",
        "inconclusive",
    ];
    assert_wire(DnsVerdict::ALL, &words);
    // `as_str` keys the summary counts: it must say what serde says.
    let keys: Vec<&str> = DnsVerdict::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(keys, words);
}

#[test]
fn poisoning_methods() {
    let words = [
        "injection",
        "known_forged_ip",
        "bogon",
        "forged_nxdomain",
        "inconsistent",
    ];
    assert_wire(PoisoningMethod::ALL, &words);
    let keys: Vec<&str> = PoisoningMethod::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(keys, words);
    // Declared strongest first: the derived order picks `method`.
    let mut sorted = PoisoningMethod::ALL.to_vec();
    sorted.sort();
    assert_eq!(sorted, PoisoningMethod::ALL);
}

#[test]
fn http_verdicts() {
    // `malformed_response` is in the code (and the schema) though the issue-10 plan's
    // table leaves it out.
    let words = [
        "ok",
        "rst_injection",
        "timeout",
        "refused",
        "eof",
        "blockpage",
        "malformed_response",
        "error",
        "inconclusive",
        "skipped",
        "tcp_ip_blocking",
        "http_diff",
        "down",
    ];
    assert_wire(HttpVerdict::ALL, &words);
    let keys: Vec<&str> = HttpVerdict::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(keys, words);
}

#[test]
fn tls_verdicts() {
    let words = [
        "ok",
        "rst_injection",
        "timeout",
        "refused",
        "eof",
        "cert_invalid",
        "tls_alert",
        "error",
        "inconclusive",
        "skipped",
        "tcp_ip_blocking",
        "down",
    ];
    assert_wire(TlsVerdict::ALL, &words);
    let keys: Vec<&str> = TlsVerdict::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(keys, words);
}

/// Every `Stage`; the match fails to compile when a variant is added, so the list
/// below cannot silently fall behind.
const STAGES: [Stage; 4] = [
    Stage::Connect,
    Stage::Request,
    Stage::Response,
    Stage::Handshake,
];
const _: fn(Stage) = |stage| match stage {
    Stage::Connect | Stage::Request | Stage::Response | Stage::Handshake => {}
};

#[test]
fn stages() {
    let words = ["connect", "request", "response", "handshake"];
    assert_wire(&STAGES, &words);
    let keys: Vec<&str> = STAGES.iter().map(|s| s.as_str()).collect();
    assert_eq!(keys, words);
}

const LAYERS: [BlockingLayer; 4] = [
    BlockingLayer::Dns,
    BlockingLayer::TcpIp,
    BlockingLayer::Http,
    BlockingLayer::Tls,
];
const _: fn(BlockingLayer) = |layer| match layer {
    BlockingLayer::Dns | BlockingLayer::TcpIp | BlockingLayer::Http | BlockingLayer::Tls => {}
};

#[test]
fn blocking_layers() {
    let words = ["dns", "tcp_ip", "http", "tls"];
    let keys: Vec<&str> = LAYERS.iter().map(|l| l.as_str()).collect();
    assert_eq!(keys, words);
    // A layer is written as the target's `blocking` value.
    let blocked: Vec<Blocking> = LAYERS.iter().map(|l| Blocking::At(*l)).collect();
    assert_wire(&blocked, &words);
    // The order a user meets them in: `target_blocking` reports the least one.
    let mut sorted = LAYERS;
    sorted.sort();
    assert_eq!(sorted, LAYERS);
}

/// A record's `blocking` field alone, to see what a missing field reads as.
#[derive(Debug, serde::Deserialize)]
struct BlockingField {
    blocking: Blocking,
}

#[test]
fn target_blocking_values() {
    let values = [
        (Blocking::No, "false"),
        (Blocking::At(BlockingLayer::Dns), "\"dns\""),
        (Blocking::At(BlockingLayer::TcpIp), "\"tcp_ip\""),
        (Blocking::At(BlockingLayer::Http), "\"http\""),
        (Blocking::At(BlockingLayer::Tls), "\"tls\""),
        (Blocking::Inconclusive, "null"),
    ];
    for (value, json) in values {
        assert_eq!(serde_json::to_string(&value).unwrap(), json, "{value:?}");
        let read: Blocking = serde_json::from_str(json).unwrap();
        assert_eq!(read, value, "{json} reads back");
        let field: BlockingField =
            serde_json::from_str(&format!("{{\"blocking\":{json}}}")).unwrap();
        assert_eq!(field.blocking, value, "as a field: {json}");
    }
    // A missing field is inconclusive, not an error (records written before the field).
    let field: BlockingField = serde_json::from_str("{}").unwrap();
    assert_eq!(field.blocking, Blocking::Inconclusive);
    // `true` says nothing about where: rejected, with today's message.
    let err = serde_json::from_str::<Blocking>("true").unwrap_err();
    assert!(
        err.to_string()
            .contains("blocking is false, a layer name or null, never true"),
        "{err}"
    );
    for bad in ["\"false\"", "\"null\"", "\"tcp\"", "\"DNS\"", "1", "[]"] {
        assert!(
            serde_json::from_str::<Blocking>(bad).is_err(),
            "{bad} must not read as a blocking value"
        );
    }
}

const OUTCOMES: [AttemptOutcome; 11] = [
    AttemptOutcome::Ok,
    AttemptOutcome::Alert,
    AttemptOutcome::Refused,
    AttemptOutcome::ConnectTimeout,
    AttemptOutcome::ConnectReset,
    AttemptOutcome::ConnectError,
    AttemptOutcome::Reset,
    AttemptOutcome::Timeout,
    AttemptOutcome::Eof,
    AttemptOutcome::MalformedResponse,
    AttemptOutcome::Error,
];
const _: fn(AttemptOutcome) = |outcome| match outcome {
    AttemptOutcome::Ok
    | AttemptOutcome::Alert
    | AttemptOutcome::Refused
    | AttemptOutcome::ConnectTimeout
    | AttemptOutcome::ConnectReset
    | AttemptOutcome::ConnectError
    | AttemptOutcome::Reset
    | AttemptOutcome::Timeout
    | AttemptOutcome::Eof
    | AttemptOutcome::MalformedResponse
    | AttemptOutcome::Error => {}
};

#[test]
fn attempt_outcomes() {
    // `malformed_response` is in the code though the plan's table leaves it out.
    let words = [
        "ok",
        "alert",
        "refused",
        "connect_timeout",
        "connect_reset",
        "connect_error",
        "reset",
        "timeout",
        "eof",
        "malformed_response",
        "error",
    ];
    assert_wire(&OUTCOMES, &words);
    let keys: Vec<&str> = OUTCOMES.iter().map(|o| o.as_str()).collect();
    assert_eq!(keys, words);
}

const ROLES: [ProbeRole; 3] = [ProbeRole::Control, ProbeRole::Test, ProbeRole::Residual];
const _: fn(ProbeRole) = |role| match role {
    ProbeRole::Control | ProbeRole::Test | ProbeRole::Residual => {}
};

#[test]
fn probe_roles() {
    assert_wire(&ROLES, &["control", "test", "residual"]);
}

const SOURCES: [AddressSource; 5] = [
    AddressSource::Via,
    AddressSource::Literal,
    AddressSource::Pinned,
    AddressSource::Control,
    AddressSource::Resolver,
];
const _: fn(AddressSource) = |source| match source {
    AddressSource::Via
    | AddressSource::Literal
    | AddressSource::Pinned
    | AddressSource::Control
    | AddressSource::Resolver => {}
};

#[test]
fn address_sources() {
    assert_wire(
        &SOURCES,
        &["via", "literal", "pinned", "control", "resolver"],
    );
}

/// The target records of the shipped example report, as a scan without its web control
/// would have judged them: the names only the helper decides (IP blocking, a closed
/// port, a page unlike the helper's) are judged again from their stored observations
/// without it, which leaves the IP-blocked and closed-port names inconclusive.
fn lab_demo_targets() -> Vec<TargetRecord> {
    let text = std::fs::read_to_string(repo_path("reports/examples/lab-demo.jsonl")).unwrap();
    text.lines()
        .filter_map(|line| match serde_json::from_str(line).unwrap() {
            ReportRecord::Target(record) => Some(without_web_control(*record)),
            _ => None,
        })
        .collect()
}

/// A record judged again without its web control, where the helper decided a verdict.
fn without_web_control(mut record: TargetRecord) -> TargetRecord {
    use censorprobe::classify::blockpage::BlockpageSet;
    use censorprobe::classify::web::{
        assess_http, assess_tls, classify_http_attempt, classify_tls_attempt, target_blocking,
    };
    const CONTROL_NAME: &str = "control.lab.example";
    let decided_by_helper = record.http.as_ref().is_some_and(|h| {
        matches!(
            h.verdict,
            HttpVerdict::TcpIpBlocking | HttpVerdict::Down | HttpVerdict::HttpDiff
        )
    }) || record
        .tls
        .as_ref()
        .is_some_and(|t| matches!(t.verdict, TlsVerdict::TcpIpBlocking | TlsVerdict::Down));
    if record.web_control.take().is_none() || !decided_by_helper {
        return record;
    }
    let blockpages = BlockpageSet::builtin();
    if let Some(http) = record.http.take() {
        let attempts = http
            .attempts
            .iter()
            .map(|a| {
                classify_http_attempt(
                    a.observations.clone(),
                    a.path.clone(),
                    CONTROL_NAME,
                    &blockpages,
                )
            })
            .collect();
        record.http = Some(assess_http(&record.domain, attempts));
    }
    if let Some(tls) = record.tls.take() {
        let attempts = tls
            .attempts
            .iter()
            .map(|a| classify_tls_attempt(a.observations.clone(), a.path.clone(), CONTROL_NAME))
            .collect();
        record.tls = Some(assess_tls(&record.domain, attempts));
    }
    let target = target_blocking(
        record.dns.as_ref().map(|d| &d.assessment),
        record.http.as_ref(),
        record.tls.as_ref(),
    );
    record.blocking = target.blocking;
    record.accessible = target.accessible;
    record
}

/// [`lab_demo_targets`] as a report file (the example report's header, then the targets).
fn lab_demo_without_web_control_report(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_path("reports/examples/lab-demo.jsonl")).unwrap();
    let mut out = String::new();
    out.push_str(text.lines().next().unwrap());
    out.push('\n');
    for target in lab_demo_targets() {
        out.push_str(&serde_json::to_string(&ReportRecord::Target(Box::new(target))).unwrap());
        out.push('\n');
    }
    let path = dir.join("lab-demo-without-web-control.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

fn keys(map: &Value) -> Vec<String> {
    map.as_object()
        .unwrap_or_else(|| panic!("an object: {map}"))
        .keys()
        .cloned()
        .collect()
}

/// The null blocking value has two spellings as a map key: `"inconclusive"` in the
/// report's own summary record, `"null"` in every workflow's output (consensus,
/// `summary`, `diff`, `check`). Both are part of the format.
#[test]
fn null_blocking_key_is_inconclusive_in_the_summary_record() {
    let targets = lab_demo_targets();
    assert!(
        targets.iter().any(|t| t.blocking == Blocking::Inconclusive),
        "lab-demo has an inconclusive target"
    );
    let mut builder = SummaryBuilder::new(targets.len(), 0);
    for target in &targets {
        builder.add(target);
    }
    let summary = serde_json::to_value(builder.finish(1.0, false)).unwrap();
    assert_eq!(
        keys(&summary["blocking"]),
        ["dns", "false", "http", "inconclusive", "tls"]
    );
    // The summary's verdict keys are the wire words, every DNS verdict present.
    assert_eq!(
        keys(&summary["dns"]),
        [
            "dns_poisoning",
            "error",
            "inconclusive",
            "nxdomain",
            "ok",
            "timeout"
        ]
    );
    assert_eq!(
        keys(&summary["http"]),
        ["ok", "refused", "rst_injection", "skipped", "timeout"]
    );
}

#[test]
fn null_blocking_key_is_null_in_the_consensus() {
    let targets = lab_demo_targets();
    let inconclusive = targets
        .iter()
        .find(|t| t.blocking == Blocking::Inconclusive)
        .unwrap();
    let clean = targets.iter().find(|t| t.domain == "open.example").unwrap();
    let outcome =
        |r: &TargetRecord| TargetOutcome::from_value(&serde_json::to_value(r).unwrap()).unwrap();
    // Two attempts that disagree: no majority verdict for the web stages, counts keyed
    // by wire word.
    let consensus = ConsensusRecord::of(&[outcome(inconclusive), outcome(clean)]);
    let json = serde_json::to_value(&consensus).unwrap();
    assert_eq!(keys(&json["blocking"]["counts"]), ["false", "null"]);
    assert_eq!(keys(&json["accessible"]["counts"]), ["false", "true"]);
    assert_eq!(json["stages"]["http"]["verdict"], "no_majority");
    assert_eq!(keys(&json["stages"]["http"]["verdicts"]), ["ok", "refused"]);

    // A stage that did not run in an attempt counts as `none`.
    let mut without_tls = clean.clone();
    without_tls.tls = None;
    let consensus = ConsensusRecord::of(&[outcome(clean), outcome(&without_tls)]);
    let json = serde_json::to_value(&consensus).unwrap();
    assert_eq!(keys(&json["stages"]["tls"]["verdicts"]), ["none", "ok"]);
    assert_eq!(keys(&json["blocking"]["counts"]), ["false"]);
    assert_eq!(json["blocking"]["majority"], false);

    let consensus = ConsensusRecord::of(&[outcome(inconclusive), outcome(inconclusive)]);
    let json = serde_json::to_value(&consensus).unwrap();
    assert_eq!(keys(&json["blocking"]["counts"]), ["null"]);
    assert_eq!(json["blocking"]["majority"], Value::Null);
    assert_eq!(json["stages"]["http"]["verdict"], "refused");
    assert_eq!(json["stages"]["http"]["stage"], "connect");
}

#[tokio::test]
async fn null_blocking_key_is_null_in_the_summary_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let report = lab_demo_without_web_control_report(dir.path());
    let run = run_binary(&args(&[
        "summary",
        report.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        keys(&summary["all"]["blocking"]),
        ["dns", "false", "http", "null", "tls"]
    );
    assert_eq!(keys(&summary["all"]["accessible"]), ["false", "true"]);
    assert_eq!(keys(&summary["all"]["stages"]), ["dns", "http", "tls"]);
}

/// A lab scenario's expected `blocking`: TOML has no null, so the report's null is the
/// word `"null"`; `true` names no layer and is refused.
#[test]
fn lab_scenario_blocking_words() {
    let scenario = |blocking: &str| {
        Scenario::parse(
            &format!(
                "[[names]]\nname = \"a.example\"\na = [\"198.19.1.1\"]\nexpect = {{ blocking = {blocking} }}\n"
            ),
            Path::new("x.toml"),
        )
    };
    for word in [
        "false",
        "\"dns\"",
        "\"tcp_ip\"",
        "\"http\"",
        "\"tls\"",
        "\"null\"",
    ] {
        let parsed = scenario(word).unwrap_or_else(|e| panic!("blocking = {word}: {e}"));
        let written = parsed.to_toml();
        assert!(
            written.contains(&format!("blocking = {word}")),
            "blocking = {word} is written back: {written}"
        );
    }
    let err = scenario("true").unwrap_err().to_string();
    assert!(err.contains("ambiguous"), "{err}");
    for bad in ["\"false\"", "\"inconclusive\"", "\"unknown\"", "\"tcp\""] {
        assert!(scenario(bad).is_err(), "blocking = {bad} must be refused");
    }
}
