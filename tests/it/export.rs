//! `censorprobe export --format parquet` through the real binary, read back by an
//! independent reader: pyarrow (Arrow's C++ Parquet implementation), run through
//! `scripts/check-parquet.py`. `.ci/install-deps` installs it into a virtual environment outside the checkout; the
//! tests fail (never skip) when it is missing.
//!
//! What the file must hold is computed here from the report with serde (the typed
//! records): one row per target × stage × address, the identity of each row's report
//! (vantage, shard, tool version), verdicts, addresses and timings.

use std::path::{Path, PathBuf};

use censorprobe::record::{HeaderRecord, TargetRecord};
use censorprobe::vocab::{Blocking, PoisoningMethod, Stage};
use serde_json::{Map, Value, json};

use crate::support::{args, repo_path, run_binary};

const LAB_DEMO: &str = "reports/examples/lab-demo.jsonl";

/// The Python that has pyarrow: `CENSORPROBE_PARQUET_PYTHON`, else the virtual
/// environment `.ci/install-deps` makes (outside the checkout, in
/// `${CENSORPROBE_CACHE:-$HOME/.cache/censorprobe}/pyarrow-venv`), else `python3` from
/// the PATH.
fn reader_python() -> PathBuf {
    if let Some(python) = std::env::var_os("CENSORPROBE_PARQUET_PYTHON") {
        return python.into();
    }
    let cache = std::env::var_os("CENSORPROBE_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/censorprobe")
        },
        PathBuf::from,
    );
    let venv = cache.join("pyarrow-venv/bin/python3");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs the independent reader on `file` with `expected`; panics with its findings.
fn check_with_pyarrow(file: &Path, expected: &Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, serde_json::to_vec_pretty(expected).unwrap()).unwrap();
    let python = reader_python();
    let output = std::process::Command::new(&python)
        .arg(repo_path("scripts/check-parquet.py"))
        .arg(file)
        .arg(&expected_path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (the independent Parquet reader; run .ci/install-deps): {e}",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the independent reader ({}) refused the export ({}); run .ci/install-deps if pyarrow \
         is missing:\n{stderr}{stdout}",
        python.display(),
        output.status
    );
    stdout
}

/// A report's records, typed with serde, with their 1-based line numbers.
struct Parsed {
    header: HeaderRecord,
    targets: Vec<(usize, TargetRecord)>,
}

fn parse_report(text: &str) -> Parsed {
    let mut header = None;
    let mut targets = Vec::new();
    for (at, line) in text.lines().enumerate() {
        let value: Value = serde_json::from_str(line).unwrap();
        match value["record"].as_str() {
            Some("header") => header = Some(serde_json::from_value(value).unwrap()),
            Some("target") => targets.push((at + 1, serde_json::from_value(value).unwrap())),
            _ => {}
        }
    }
    Parsed {
        header: header.expect("the report has a header"),
        targets,
    }
}

/// Microseconds since the epoch of an RFC 3339 time.
fn micros(text: &str) -> i64 {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    i64::try_from(time.unix_timestamp_nanos() / 1000).unwrap()
}

/// Rows of one target per stage: a row per address the DNS verdict names (at least
/// one), a row per address probed by HTTP and TLS (at least one).
fn rows_per_stage(target: &TargetRecord) -> [(&'static str, usize); 3] {
    let dns = target.dns.as_ref().map_or(0, |d| {
        (d.assessment.forged_ips.len() + d.assessment.genuine_ips.len()).max(1)
    });
    let http = target.http.as_ref().map_or(0, |h| h.attempts.len().max(1));
    let tls = target.tls.as_ref().map_or(0, |t| t.attempts.len().max(1));
    [("dns", dns), ("http", http), ("tls", tls)]
}

fn export(reports: &[&Path], out: &Path, extra: &[&str]) -> Vec<String> {
    let mut list = args(&["export", "--format", "parquet"]);
    list.extend(reports.iter().map(|p| p.display().to_string()));
    list.extend(args(&["--out", &out.display().to_string()]));
    list.extend(args(extra));
    list
}

/// Checks for every target of `parsed` (its rows, its outcome and identity columns).
fn target_checks(parsed: &Parsed, report_file: &str, checks: &mut Vec<Value>) {
    let header = &parsed.header;
    for (line, target) in &parsed.targets {
        let rows: usize = rows_per_stage(target).iter().map(|(_, n)| n).sum();
        let (blocked, layer) = match target.blocking {
            Blocking::No => (json!(false), Value::Null),
            Blocking::At(layer) => (json!(true), json!(layer.as_str())),
            Blocking::Inconclusive => (Value::Null, Value::Null),
        };
        checks.push(json!({
            "where": {"report_file": report_file, "domain": target.domain},
            "count": rows,
            "values": {
                "record_line": line,
                "vantage": header.vantage,
                "shard": header.options.shard,
                "tool_version": header.version,
                "scan_started_at": micros(&header.started_at),
                "target_started_at": micros(&target.started_at),
                "target_duration_ms": target.duration_ms,
                "blocked": blocked,
                "blocking_layer": layer,
                "accessible": target.accessible,
                "categories": target.categories,
            },
        }));
    }
}

/// The whole lab demo report, exported in small row groups, reads back with pyarrow:
/// row counts per stage, column types, and the values of every target.
#[tokio::test]
async fn lab_demo_export_reads_back_with_pyarrow() {
    let report = repo_path(LAB_DEMO);
    let parsed = parse_report(&std::fs::read_to_string(&report).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lab-demo.parquet");
    let run = run_binary(&export(&[&report], &out, &["--row-group-rows", "16"])).await;
    assert!(run.status.success(), "{run:#?}");

    let mut per_stage = Map::new();
    for (_, target) in &parsed.targets {
        for (stage, n) in rows_per_stage(target) {
            if n > 0 {
                let count = per_stage.entry(stage).or_insert(json!(0));
                *count = json!(count.as_u64().unwrap() + n as u64);
            }
        }
    }
    let rows: u64 = per_stage.values().map(|n| n.as_u64().unwrap()).sum();
    assert!(
        run.stderr.contains(&format!("wrote {rows} rows")),
        "{run:#?}"
    );
    let report_file = report.display().to_string();
    let mut checks = Vec::new();
    target_checks(&parsed, &report_file, &mut checks);

    // A poisoned name: one row per forged and per genuine address, with the method.
    let (_, poisoned) = parsed
        .targets
        .iter()
        .find(|(_, t)| !t.dns.as_ref().unwrap().assessment.forged_ips.is_empty())
        .unwrap();
    let dns = &poisoned.dns.as_ref().unwrap().assessment;
    for (role, ips) in [("forged", &dns.forged_ips), ("genuine", &dns.genuine_ips)] {
        for ip in ips {
            checks.push(json!({
                "where": {"domain": poisoned.domain, "stage": "dns", "address": ip.to_string()},
                "count": 1,
                "values": {
                    "address_role": role,
                    "verdict": dns.verdict.as_str(),
                    "method": dns.method.map(PoisoningMethod::as_str),
                    "methods": dns.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                    "port": null,
                },
            }));
        }
    }
    // Every probed address of the web stages: verdict, where it failed, the injector,
    // and the test probe's timings.
    for (_, target) in &parsed.targets {
        for attempt in target.http.iter().flat_map(|h| &h.attempts) {
            let test = &attempt.observations.test;
            checks.push(json!({
                "where": {"domain": target.domain, "stage": "http", "address": attempt.ip.to_string()},
                "count": 1,
                "values": {
                    "verdict": attempt.verdict.as_str(),
                    "port": attempt.port,
                    "address_role": "probed",
                    "failed_at": attempt.stage.map(Stage::as_str),
                    "injector": attempt.injector.as_ref().map(|i| i.name.clone()),
                    "control_passed": attempt.control.passed,
                    "connect_ms": test.connect.connect_ms,
                    "first_byte_ms": test.first_byte_ms,
                    "handshake_ms": null,
                    "total_ms": test.total_ms,
                    "method": null,
                },
            }));
        }
        for attempt in target.tls.iter().flat_map(|t| &t.attempts) {
            let test = &attempt.observations.test;
            checks.push(json!({
                "where": {"domain": target.domain, "stage": "tls", "address": attempt.ip.to_string()},
                "count": 1,
                "values": {
                    "verdict": attempt.verdict.as_str(),
                    "failed_at": attempt.stage.map(Stage::as_str),
                    "injector": attempt.injector.as_ref().map(|i| i.name.clone()),
                    "handshake_ms": test.handshake_ms,
                    "total_ms": test.total_ms,
                },
            }));
        }
        // A stage that probed nothing (a name that does not resolve): one row, no address.
        if let Some(http) = target.http.as_ref().filter(|h| h.attempts.is_empty()) {
            checks.push(json!({
                "where": {"domain": target.domain, "stage": "http"},
                "count": 1,
                "values": {"verdict": http.verdict.as_str(), "address": null, "port": null},
            }));
        }
    }
    assert!(
        parsed
            .targets
            .iter()
            .any(|(_, t)| t.http.as_ref().is_some_and(|h| h.attempts.is_empty())),
        "the lab demo has a name whose web stages probed nothing"
    );

    let words = "dictionary<values=string, indices=int32, ordered=0>";
    let expected = json!({
        "rows": rows,
        "min_row_groups": rows.div_ceil(16),
        "types": {
            "report_file": words,
            "vantage": words,
            "stage": words,
            "verdict": words,
            "method": words,
            "record_line": "uint64",
            "scan_started_at": "timestamp[us, tz=UTC]",
            "target_started_at": "timestamp[us, tz=UTC]",
            "target_duration_ms": "double",
            "blocked": "bool",
            "address": "string",
            "port": "uint16",
            "connect_ms": "double",
            "methods": "list<item: string>",
        },
        "count_by": {"stage": per_stage},
        "rows_where": checks,
    });
    let said = check_with_pyarrow(&out, &expected);
    assert!(said.contains("all hold"), "{said}");
}

/// Shard reports from two vantages, passed as a directory: one table, each row saying
/// which vantage and shard it comes from.
#[tokio::test]
async fn shard_reports_merge_into_one_table_with_their_identity() {
    let text = std::fs::read_to_string(repo_path(LAB_DEMO)).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let header = lines.iter().find(|l| l["record"] == "header").unwrap();
    let targets: Vec<&Value> = lines.iter().filter(|l| l["record"] == "target").collect();
    let half = targets.len() / 2;
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut files = Vec::new();
    for (index, (vantage, part)) in [("vp-a", &targets[..half]), ("vp-b", &targets[half..])]
        .into_iter()
        .enumerate()
    {
        let mut shard_header = header.clone();
        shard_header["vantage"] = json!(vantage);
        shard_header["options"]["shard"] = json!(format!("{}/2", index + 1));
        let mut report = serde_json::to_string(&shard_header).unwrap() + "\n";
        for target in part {
            report += &(serde_json::to_string(target).unwrap() + "\n");
        }
        let path = shards.join(format!("shard-{}.jsonl", index + 1));
        std::fs::write(&path, &report).unwrap();
        files.push((path, parse_report(&report)));
    }
    // Not a report: left out of the directory's listing.
    std::fs::write(shards.join("notes.txt"), "not a report\n").unwrap();

    let out = dir.path().join("shards.parquet");
    let run = run_binary(&export(&[&shards], &out, &[])).await;
    assert!(run.status.success(), "{run:#?}");
    assert!(run.stderr.contains("from 2 reports"), "{run:#?}");

    let mut checks = Vec::new();
    let mut per_vantage = Map::new();
    let mut per_shard = Map::new();
    let mut rows = 0;
    for (path, parsed) in &files {
        target_checks(parsed, &path.display().to_string(), &mut checks);
        let n: usize = parsed
            .targets
            .iter()
            .flat_map(|(_, t)| rows_per_stage(t))
            .map(|(_, n)| n)
            .sum();
        rows += n;
        per_vantage.insert(parsed.header.vantage.clone().unwrap(), json!(n));
        per_shard.insert(parsed.header.options.shard.clone().unwrap(), json!(n));
    }
    let expected = json!({
        "rows": rows,
        "count_by": {"vantage": per_vantage, "shard": per_shard},
        "rows_where": checks,
    });
    check_with_pyarrow(&out, &expected);
}

/// A file without a target record is refused (status 2, the file named), and no
/// output file is left behind.
#[tokio::test]
async fn export_refuses_a_file_that_is_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "not json\n{\"also\": \"not a record\"}\n").unwrap();
    let out = dir.path().join("out.parquet");
    let run = run_binary(&export(&[&junk], &out, &[])).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(run.stderr.contains("junk.jsonl"), "{run:#?}");
    assert!(run.stderr.contains("no target record"), "{run:#?}");
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "a temporary file was left: {left:?}");
}

/// A damaged line (a scan killed mid-write) is counted and named on stderr; every
/// complete record is exported.
#[tokio::test]
async fn a_damaged_line_is_counted_and_the_rest_exported() {
    let text = std::fs::read_to_string(repo_path(LAB_DEMO)).unwrap();
    let parsed = parse_report(&text);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, r#"{"record":"target","domain":"cut-sh"#);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("damaged.jsonl");
    std::fs::write(&report, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("damaged.parquet");
    let run = run_binary(&export(&[&report], &out, &[])).await;
    assert!(run.status.success(), "{run:#?}");
    assert!(
        run.stderr.contains("1 line could not be parsed (line 4"),
        "{run:#?}"
    );
    let rows: usize = parsed
        .targets
        .iter()
        .flat_map(|(_, t)| rows_per_stage(t))
        .map(|(_, n)| n)
        .sum();
    check_with_pyarrow(&out, &json!({"rows": rows}));
}
