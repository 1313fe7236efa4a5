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
        30,
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
    let records = variant_records(report)
        .into_iter()
        .map(|record| serde_json::from_value::<TargetRecord>(record).unwrap())
        .chain(web_control_variants(report));
    for record in records {
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

// ---- Web control variants: lab-demo records judged again with what a web control
// (`scan --web-control`) saw, as the scan would (`judge_web_with_control`).

use crate::observation::web::{ConnectObservation, ConnectStatus, HttpObservation};
use crate::observation::web_control::{
    HelperConnect, HelperDns, HelperLookup, HelperLookupStatus, WebControlObservation,
    WebControlResult,
};

fn helper_connect(status: ConnectStatus) -> ConnectObservation {
    ConnectObservation {
        status,
        errno: None,
        error: None,
        connect_ms: 12.5,
        local_addr: None,
    }
}

/// A helper that resolved `domain` to the addresses the record tested and connected to
/// each tested (ip, port) with `status`; `page` is its GET of the HTTP address.
fn helper_of(
    record: &TargetRecord,
    status: ConnectStatus,
    page: Option<HttpObservation>,
) -> WebControlObservation {
    let mut addresses = Vec::new();
    let mut connects = Vec::new();
    let http = record
        .http
        .iter()
        .flat_map(|h| h.attempts.iter().map(|a| (a.ip, a.port)));
    let tls = record
        .tls
        .iter()
        .flat_map(|t| t.attempts.iter().map(|a| (a.ip, a.port)));
    for (ip, port) in http.chain(tls) {
        if !addresses.contains(&ip) {
            addresses.push(ip);
        }
        connects.push(HelperConnect {
            address: std::net::SocketAddr::new(ip, port),
            connect: helper_connect(status),
        });
    }
    WebControlObservation::Answered {
        helper: "https://198.19.9.2:8443".to_owned(),
        software: "censorprobe 0.1.0".to_owned(),
        ms: 84.0,
        result: Box::new(WebControlResult {
            name: record.domain.clone(),
            dns: HelperDns {
                resolver: HelperLookup {
                    resolver: "udp:198.19.9.53:53".to_owned(),
                    status: HelperLookupStatus::Resolved,
                    addresses,
                    error: None,
                    ms: 3.5,
                },
                doh: None,
            },
            connects,
            http: page.into_iter().collect(),
            tls: Vec::new(),
            refused: Vec::new(),
            ms: 61.0,
        }),
    }
}

/// The record judged again from its stored web observations with `web_control`.
fn judged_with(mut record: TargetRecord, web_control: WebControlObservation) -> TargetRecord {
    use crate::observation::web::{PathRun, StageRun, WebObservations};
    fn runs<V, O: Clone>(a: &crate::record::assessment::WebAssessment<V, O>) -> StageRun<O> {
        StageRun::Probed(
            a.attempts
                .iter()
                .map(|a| PathRun {
                    observations: a.observations.clone(),
                    path: a.path.clone(),
                })
                .collect(),
        )
    }
    let control_name = record
        .http
        .as_ref()
        .and_then(|h| h.control.as_ref())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let observations = WebObservations {
        name: record.domain.clone(),
        addresses: record.addresses.clone(),
        http: record.http.as_ref().map(runs),
        tls: record.tls.as_ref().map(runs),
    };
    let result = crate::classify::web::judge_web_with_control(
        observations,
        Some(&web_control),
        &control_name,
        &crate::classify::blockpage::BlockpageSet::builtin(),
        crate::classify::injectors::InjectorSet::builtin_shared(),
    );
    let blocking = crate::classify::web::target_blocking(
        record.dns.as_ref().map(|d| &d.assessment),
        result.http.as_ref(),
        result.tls.as_ref(),
    );
    record.http = result.http;
    record.tls = result.tls;
    record.blocking = blocking.blocking;
    record.accessible = blocking.accessible;
    record.web_control = Some(web_control);
    record
}

fn web_control_variants(report: &str) -> Vec<TargetRecord> {
    use crate::vocab::HttpVerdict;
    let target = |domain| -> TargetRecord {
        serde_json::from_value(lab_demo_target(report, domain)).unwrap()
    };
    let mut variants = Vec::new();

    // Dropped at connect here, connected from the helper: tcp_ip.
    let dropped = target("ip-blocked-drop.example");
    let helper = helper_of(&dropped, ConnectStatus::Ok, None);
    variants.push(judged_with(dropped, helper));

    // Refused here and at the helper: down.
    let closed = target("closed-port.example");
    let helper = helper_of(&closed, ConnectStatus::Refused, None);
    variants.push(judged_with(closed, helper));

    // Another page than the helper's from the same address: http-diff.
    let open = target("open.example");
    let http = open.http.as_ref().unwrap();
    let mut page = http.attempts[0].observations.test.clone();
    let response = page.response.as_mut().unwrap();
    response.title = Some("Open Example: the real front page".to_owned());
    response.body_length *= 4;
    // No uncommon header in common with ours (`Content-Length` and `Connection` are
    // uncommon by OONI's list): OONI's rule sees only the status match.
    response.headers = vec![crate::observation::web::HttpHeader {
        name: "X-Served-By".to_owned(),
        value: "front-1".to_owned(),
    }];
    let helper = helper_of(&open, ConnectStatus::Ok, Some(page.clone()));
    let diff = judged_with(open.clone(), helper);
    assert_eq!(diff.http.as_ref().unwrap().verdict, HttpVerdict::HttpDiff);
    variants.push(diff);

    // The same page: ok, and the comparison keys say why.
    let page = http.attempts[0].observations.test.clone();
    let helper = helper_of(&open, ConnectStatus::Ok, Some(page));
    let same = judged_with(open.clone(), helper);
    assert_eq!(same.http.as_ref().unwrap().verdict, HttpVerdict::Ok);
    variants.push(same);

    // A helper that did not answer: the record as it was, and `control_failure`.
    let mut failed = open;
    failed.web_control = Some(WebControlObservation::Failed {
        helper: "https://198.19.9.2:8443".to_owned(),
        error: "timed out after 10 s".to_owned(),
        ms: 10_000.0,
    });
    variants.push(failed);
    variants
}
