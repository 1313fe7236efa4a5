//! Snapshot of the OONI export: `tests/golden/lab-demo.ooni.jsonl` holds the measurement
//! of every target record of `reports/examples/lab-demo.jsonl`, one JSON line each, as
//! [`measurement`] writes it. The run's random `report_id` is replaced by
//! [`MASKED_REPORT_ID`]; nothing else in a measurement depends on when or where the
//! mapping runs (every time comes from the report).
//!
//! The comparison is byte for byte, so it also pins the key order of every object.
//! After an intended change of the mapping, rewrite the snapshot with
//! `UPDATE_GOLDEN=1 cargo test --lib output::ooni::golden` and review its diff.

use std::path::PathBuf;

use super::{OoniContext, measurement};
use crate::record::{ReportRecord, TargetRecord};

const REPORT: &str = "reports/examples/lab-demo.jsonl";
const SNAPSHOT: &str = "tests/golden/lab-demo.ooni.jsonl";

/// Stands in for the random part of a run's report id.
pub(super) const MASKED_REPORT_ID: &str = "MASKED_REPORT_ID";

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The OONI measurements of a JSONL report's target records, one line each.
fn ooni_lines(report: &str) -> String {
    let mut context: Option<OoniContext> = None;
    let mut out = String::new();
    for (number, line) in report.lines().enumerate() {
        let record: ReportRecord =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{REPORT}:{}: {e}", number + 1));
        match record {
            ReportRecord::Header(header) => {
                let mut header_context = OoniContext::from_header(&header);
                header_context.report_id = MASKED_REPORT_ID.to_owned();
                context = Some(header_context);
            }
            ReportRecord::Target(record) => {
                let context = context.as_ref().expect("the header comes first");
                out.push_str(&measurement_line(&record, context));
                out.push('\n');
            }
            ReportRecord::Consensus(_) | ReportRecord::Summary(_) => {}
        }
    }
    out
}

fn measurement_line(record: &TargetRecord, context: &OoniContext) -> String {
    serde_json::to_string(&measurement(record, context)).unwrap()
}

#[test]
fn lab_demo_measurements_match_the_snapshot_byte_for_byte() {
    let report = std::fs::read_to_string(repo_path(REPORT)).unwrap();
    let produced = ooni_lines(&report);
    assert_eq!(
        produced.lines().count(),
        28,
        "one measurement per target record of {REPORT}"
    );
    let snapshot_path = repo_path(SNAPSHOT);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&snapshot_path, &produced).unwrap();
    }
    let snapshot = std::fs::read_to_string(&snapshot_path)
        .unwrap_or_else(|e| panic!("{SNAPSHOT}: {e} (UPDATE_GOLDEN=1 writes it)"));
    for (number, (produced, stored)) in produced.lines().zip(snapshot.lines()).enumerate() {
        assert_eq!(
            produced,
            stored,
            "{SNAPSHOT}:{}: the measurement differs from the snapshot",
            number + 1
        );
    }
    assert_eq!(
        produced, snapshot,
        "{SNAPSHOT}: line count or line ends differ"
    );
}

#[test]
fn the_snapshot_notices_a_changed_record() {
    // The comparison can fail: one changed field of one record changes its line.
    let report = std::fs::read_to_string(repo_path(REPORT)).unwrap();
    let snapshot = std::fs::read_to_string(repo_path(SNAPSHOT)).unwrap();
    let edited = report.replacen(
        "\"domain\":\"open.example\"",
        "\"domain\":\"opened.example\"",
        1,
    );
    assert_ne!(edited, report, "{REPORT} has open.example");
    assert_ne!(ooni_lines(&edited), snapshot);
}

#[test]
fn report_ids_are_masked_and_nothing_else_varies_between_runs() {
    let report = std::fs::read_to_string(repo_path(REPORT)).unwrap();
    let first = ooni_lines(&report);
    assert_eq!(first, ooni_lines(&report));
    let line: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(line["report_id"], MASKED_REPORT_ID);
}

// ---- Variants: lab-demo records edited to reach what lab-demo does not show (a URL
// input, categories, a block page, TLS as proof, control failures, odd rcodes and
// answers, missing stages, a run without control or vantage). The snapshot
// `tests/golden/lab-demo-variants.ooni.jsonl` was written by the `Value`-based
// mapping, before the measurement was typed.

const VARIANTS_SNAPSHOT: &str = "tests/golden/lab-demo-variants.ooni.jsonl";

fn lab_demo_target(report: &str, domain: &str) -> serde_json::Value {
    report
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|record| record["domain"] == domain)
        .unwrap_or_else(|| panic!("{REPORT} has {domain}"))
}

fn variant_records(report: &str) -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut variants = Vec::new();

    let mut url = lab_demo_target(report, "open.example");
    url["sources"][0]["input"] = "https://open.example/path?q=1".into();
    url["categories"] = json!(["NEWS", "POLR"]);
    url["attempt"] = 2.into();
    variants.push(url);

    let mut blockpage = lab_demo_target(report, "www.video.example");
    blockpage["http"]["verdict"] = "blockpage".into();
    blockpage["http"]["attempts"][0]["verdict"] = "blockpage".into();
    variants.push(blockpage);

    let mut proof = lab_demo_target(report, "open.example");
    let handshake =
        lab_demo_target(report, "wrong-cert.example")["tls"]["attempts"][0]["observations"]["test"]
            .clone();
    let mut alerted = handshake.clone();
    alerted["handshake"] = "alert_received".into();
    alerted["alert"] = json!({"description": "handshake_failure", "code": 40});
    proof["dns"]["tls_proof"] = json!([handshake, alerted]);
    proof["dns"].as_object_mut().unwrap().remove("control");
    variants.push(proof);

    let mut odd_dns = lab_demo_target(report, "open.example");
    let reply = odd_dns["dns"]["queries"][0]["replies"][0].clone();
    let mut servfail = reply.clone();
    servfail["rcode"] = "ServFail".into();
    servfail["answers"] = json!([]);
    let mut unknown = reply.clone();
    unknown["rcode"] = "BADCOOKIE".into();
    unknown["ip_ttl"] = serde_json::Value::Null;
    unknown["elapsed_ms"] = 0.1.into();
    unknown["answers"] = json!([
        {"name": "open.example.", "type": "CNAME", "ttl": 60, "data": "alias.example."},
        {"name": "open.example.", "type": "TXT", "ttl": 60, "data": "\"hello\""},
        {"name": "open.example.", "type": "AAAA", "ttl": 60, "data": "2001:db8::1"}
    ]);
    odd_dns["dns"]["queries"][0]["replies"] = json!([servfail, unknown]);
    odd_dns["dns"]["control"]["answers"] = json!([
        {"qtype": "A", "status": "error", "message": "timed out", "elapsed_ms": 5000.0},
        {"qtype": "AAAA", "status": "nxdomain", "elapsed_ms": 2.0}
    ]);
    odd_dns["blocking"] = serde_json::Value::Null;
    odd_dns["accessible"] = serde_json::Value::Null;
    odd_dns["started_at"] = "not a time".into();
    variants.push(odd_dns);

    let mut no_stages = lab_demo_target(report, "open.example");
    no_stages["dns"] = serde_json::Value::Null;
    no_stages["http"] = serde_json::Value::Null;
    no_stages["tls"] = serde_json::Value::Null;
    variants.push(no_stages);

    variants
}

fn variant_lines(report: &str) -> String {
    let header = report.lines().next().unwrap();
    let ReportRecord::Header(header) = serde_json::from_str(header).unwrap() else {
        panic!("{REPORT} starts with its header");
    };
    let mut with_control = OoniContext::from_header(&header);
    with_control.report_id = MASKED_REPORT_ID.to_owned();
    let without_control = OoniContext {
        control: "none".to_owned(),
        vantage: None,
        ..with_control.clone()
    };
    let mut out = String::new();
    for record in variant_records(report) {
        let record: TargetRecord = serde_json::from_value(record).unwrap();
        for context in [&with_control, &without_control] {
            out.push_str(&measurement_line(&record, context));
            out.push('\n');
        }
    }
    out
}

#[test]
fn edited_lab_demo_records_match_their_snapshot_byte_for_byte() {
    let report = std::fs::read_to_string(repo_path(REPORT)).unwrap();
    let produced = variant_lines(&report);
    let snapshot_path = repo_path(VARIANTS_SNAPSHOT);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&snapshot_path, &produced).unwrap();
    }
    let snapshot = std::fs::read_to_string(&snapshot_path)
        .unwrap_or_else(|e| panic!("{VARIANTS_SNAPSHOT}: {e} (UPDATE_GOLDEN=1 writes it)"));
    for (number, (produced, stored)) in produced.lines().zip(snapshot.lines()).enumerate() {
        assert_eq!(
            produced,
            stored,
            "{VARIANTS_SNAPSHOT}:{}: the measurement differs from the snapshot",
            number + 1
        );
    }
    assert_eq!(
        produced, snapshot,
        "{VARIANTS_SNAPSHOT}: line count or line ends differ"
    );
}
