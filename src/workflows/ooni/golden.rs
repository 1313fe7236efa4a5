//! Snapshot of the OONI export: `tests/golden/lab-demo.ooni.jsonl` holds the measurement
//! of every target record of `reports/examples/lab-demo.jsonl`, one JSON line each, as
//! [`measurement`] writes it. The run's random `report_id` is replaced by
//! [`MASKED_REPORT_ID`]; nothing else in a measurement depends on when or where the
//! mapping runs (every time comes from the report).
//!
//! The comparison is byte for byte, so it also pins the key order of every object.
//! After an intended change of the mapping, rewrite the snapshot with
//! `UPDATE_GOLDEN=1 cargo test --lib workflows::ooni::golden` and review its diff.

use std::path::PathBuf;

use super::{OoniContext, measurement};
use crate::report::{ReportRecord, TargetRecord};

const REPORT: &str = "reports/examples/lab-demo.jsonl";
const SNAPSHOT: &str = "tests/golden/lab-demo.ooni.jsonl";

/// Stands in for the random part of a run's report id.
pub const MASKED_REPORT_ID: &str = "MASKED_REPORT_ID";

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
        24,
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
