//! Researcher and CI workflows through the real binary: `check` (every exit status,
//! JUnit and Markdown parsed back), `diff`, `summary` (every format, blocklists),
//! repeated measurements and their consensus, truncated reports, `--resume`,
//! `--format ooni`, progress.
//!
//! Most tests feed reports written with the crate's own record types, so they need no
//! scan. The `live_*` tests run scans against loopback DNS fakes with `--control none`,
//! and (for the web part of `--format ooni`) against loopback HTTP and TLS lab servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use censorprobe::record::assessment::{DnsAssessment, Evidence, EvidenceKind};
use censorprobe::record::{DnsSection, HeaderRecord, ReportRecord, SummaryBuilder, TargetRecord};
use censorprobe::report::consensus::ConsensusRecord;
use censorprobe::report::outcome::TargetOutcome;
use censorprobe::targets::TargetSource;
use censorprobe::vocab::Majority;
use censorprobe::vocab::{Blocking, BlockingLayer};
use censorprobe::vocab::{DnsVerdict, PoisoningMethod};
use quick_xml::events::Event;
use serde_json::{Value, json};

use crate::support::{
    Behaviour, Report, Run, args, assert_schema_valid, fake_dns, json as json_of, run_binary,
};

// ---------------------------------------------------------------------------------
// Reports made with the real record types.

const FORGED: &str = "10.10.34.34";

fn dns(verdict: DnsVerdict, method: Option<PoisoningMethod>, forged: &[&str]) -> DnsSection {
    let (kind, detail) = match verdict {
        DnsVerdict::DnsPoisoning => (EvidenceKind::DisagreeingReplies, "replies disagree"),
        DnsVerdict::Ok => (EvidenceKind::CommonAddress, "agrees with the control"),
        DnsVerdict::Timeout => (EvidenceKind::ResolverSilent, "no reply"),
        _ => (EvidenceKind::ControlFailed, "control failed"),
    };
    DnsSection {
        assessment: DnsAssessment {
            verdict,
            method,
            methods: method.into_iter().collect(),
            rcode: (verdict == DnsVerdict::Error).then(|| "ServFail".to_owned()),
            forged_ips: forged.iter().map(|ip| ip.parse().unwrap()).collect(),
            genuine_ips: Vec::new(),
            evidence: vec![Evidence::new(kind, Some("A"), detail)],
        },
        resolver: "198.18.0.53:53".parse().unwrap(),
        sink: None,
        queries: Vec::new(),
        control: None,
        tls_proof: Vec::new(),
        benign_query: None,
    }
}

fn ok() -> DnsSection {
    dns(DnsVerdict::Ok, None, &[])
}

fn poisoned(method: PoisoningMethod, forged: &[&str]) -> DnsSection {
    dns(DnsVerdict::DnsPoisoning, Some(method), forged)
}

fn target(domain: &str, category: Option<&str>, section: DnsSection) -> TargetRecord {
    let blocking =
        censorprobe::classify::web::target_blocking(Some(&section.assessment), None, None);
    TargetRecord {
        domain: domain.to_owned(),
        address: None,
        pinned_ips: Vec::new(),
        sources: vec![TargetSource {
            source: "list.txt".into(),
            line: Some(1),
            input: domain.to_owned(),
            category_code: category.map(str::to_owned),
        }],
        sources_omitted: 0,
        categories: category.into_iter().map(str::to_owned).collect(),
        attempt: None,
        started_at: "2024-05-01T10:00:00Z".to_owned(),
        duration_ms: 12.5,
        dns: Some(section),
        addresses: None,
        http: None,
        tls: None,
        blocking: blocking.blocking,
        // These hand-made records have no web stage; a clean one stands for a site the
        // web stage reached, as in a full scan.
        accessible: blocking.accessible.or(matches!(
            blocking.blocking,
            censorprobe::vocab::Blocking::No
        )
        .then_some(true)),
        location: None,
        web_control: None,
    }
}

/// A JSONL report being put together line by line.
#[derive(Default)]
struct ReportText {
    lines: Vec<String>,
    summary: Option<SummaryBuilder>,
}

impl ReportText {
    fn new(targets: usize) -> ReportText {
        let header = ReportRecord::Header(HeaderRecord {
            tool: "censorprobe".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: censorprobe::record::SCHEMA_VERSION,
            started_at: "2024-05-01T10:00:00Z".to_owned(),
            vantage: Some("lab".to_owned()),
            resolver: "198.18.0.53:53".parse().unwrap(),
            control: "none".to_owned(),
            sink: None,
            options: Box::default(),
            targets_loaded: targets,
            targets_scheduled: targets,
            skipped_inputs: Vec::new(),
            skipped_inputs_omitted: 0,
        });
        ReportText {
            lines: vec![serde_json::to_string(&header).unwrap()],
            summary: Some(SummaryBuilder::new(targets, 0)),
        }
    }

    fn target(mut self, record: TargetRecord) -> Self {
        if let Some(summary) = &mut self.summary {
            summary.add(&record);
        }
        self.lines
            .push(serde_json::to_string(&ReportRecord::Target(Box::new(record))).unwrap());
        self
    }

    /// A target record with fields the typed record does not carry yet (http, tls...).
    fn target_with(mut self, record: &TargetRecord, extra: &Value) -> Self {
        let mut value =
            serde_json::to_value(ReportRecord::Target(Box::new(record.clone()))).unwrap();
        for (key, field) in extra.as_object().unwrap() {
            value[key] = field.clone();
        }
        self.lines.push(value.to_string());
        self
    }

    fn consensus(mut self, attempts: &[TargetRecord]) -> Self {
        let outcomes: Vec<TargetOutcome> = attempts
            .iter()
            .map(|r| TargetOutcome::from_value(&serde_json::to_value(r).unwrap()).unwrap())
            .collect();
        let record = ReportRecord::Consensus(Box::new(ConsensusRecord::of(&outcomes)));
        self.lines.push(serde_json::to_string(&record).unwrap());
        self
    }

    fn raw(mut self, line: &str) -> Self {
        self.lines.push(line.to_owned());
        self
    }

    /// Ends with a summary record, as a scan that finished does.
    fn finished(mut self) -> String {
        let summary = self.summary.take().unwrap().finish(1.0, false);
        self.lines
            .push(serde_json::to_string(&ReportRecord::Summary(summary)).unwrap());
        self.lines.join("\n") + "\n"
    }

    /// Ends mid-way through a line, as a scan killed while writing does.
    fn killed(self, fragment: &str) -> String {
        self.lines.join("\n") + "\n" + fragment
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn path_arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// Every line must be a valid report record (lines with fields the schema does not
/// know yet are skipped by the caller).
fn assert_report_valid(text: &str) {
    for line in text.lines() {
        assert_schema_valid(&serde_json::from_str(line).unwrap());
    }
}

/// The reference report most tests use.
fn lab_report() -> String {
    ReportText::new(5)
        .target(target(
            "blocked.test",
            Some("NEWS"),
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .target(target(
            "also-blocked.test",
            Some("NEWS"),
            poisoned(PoisoningMethod::KnownForgedIp, &[FORGED, "10.10.34.35"]),
        ))
        .target(target("open.test", Some("HUMR"), ok()))
        .target(target("mirror1.mirror.test", None, ok()))
        .target(target(
            "slow.test",
            None,
            dns(DnsVerdict::Timeout, None, &[]),
        ))
        .finished()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

// ---------------------------------------------------------------------------------
// check

const HOLDING: &str = r#"
[[expect]]
domain = "blocked.test"
blocked = true
dns = "dns_poisoning"
dns_method = ["injection", "known_forged_ip"]

[[expect]]
name = "mirrors reachable"
pattern = "*.mirror.test"
accessible = true
blocking = false

[[expect]]
domains = ["open.test", "OPEN.test."]
dns = ["ok", "nxdomain"]
"#;

const FAILING: &str = r#"
[[expect]]
domain = "blocked.test"
accessible = true

[[expect]]
domain = "open.test"
blocked = false

[[expect]]
pattern = "*.test"
blocked = true

[[expect]]
domains = ["slow.test", "never.test"]
blocked = false

[[expect]]
pattern = "*.nowhere"
blocked = true
"#;

async fn check(report: &Path, expect: &Path, extra: &[&str]) -> Run {
    let mut argv = args(&[
        "check",
        "--expect",
        &path_arg(expect),
        "--report",
        &path_arg(report),
    ]);
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    run_binary(&argv).await
}

#[tokio::test]
async fn check_exit_statuses_and_failure_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = lab_report();
    assert_report_valid(&text);
    let report = write(dir.path(), "lab.jsonl", &text);

    let holding = write(dir.path(), "holding.toml", HOLDING);
    let run = check(&report, &holding, &[]).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    assert!(run.stdout.is_empty(), "no failure lines: {run:#?}");
    assert!(
        run.stderr.contains("3 of 3 expectation(s) hold"),
        "{run:#?}"
    );

    let failing = write(dir.path(), "failing.toml", FAILING);
    let run = check(&report, &failing, &[]).await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    let out = lines(&run.stdout);
    assert!(out.iter().all(|l| l.starts_with("FAIL ")), "{out:#?}");
    // blocked.test not accessible; *.test: open, mirror1 not blocked and slow unknown;
    // slow.test unknown and never.test not measured; *.nowhere matches nothing.
    // open.test blocked = false holds.
    assert_eq!(out.len(), 7, "one line per failing domain: {out:#?}");
    let line = |needle: &str| {
        out.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}: {out:#?}"))
    };
    assert!(
        line("blocked.test: expected accessible").contains("observed not accessible"),
        "{out:#?}"
    );
    assert!(
        line("never.test: not measured").starts_with("FAIL slow.test, never.test: not blocked: "),
        "{out:#?}"
    );
    assert!(
        line("slow.test: expected not blocked").contains("observed unknown"),
        "{out:#?}"
    );
    assert!(
        line("*.nowhere").contains("matches no measured domain"),
        "{out:#?}"
    );
    assert!(
        line("mirror1.mirror.test: expected blocked").contains("observed not blocked"),
        "{out:#?}"
    );
    assert!(
        run.stderr.contains("1 of 5 expectation(s) hold"),
        "{run:#?}"
    );
    assert!(
        !out.iter()
            .any(|l| l.starts_with("FAIL open.test: not blocked")),
        "open.test is not blocked: {out:#?}"
    );
}

#[tokio::test]
async fn check_usage_and_input_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let report = write(dir.path(), "lab.jsonl", &lab_report());
    let holding = write(dir.path(), "holding.toml", HOLDING);
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write(dir.path(), "syntax.toml", "[[expect]\n"),
            "syntax.toml",
        ),
        (
            write(
                dir.path(),
                "typo.toml",
                "[[expect]]\ndomain = \"a.test\"\nblokced = true\n",
            ),
            "blokced",
        ),
        (
            write(
                dir.path(),
                "verdict.toml",
                "[[expect]]\ndomain = \"a.test\"\ndns = \"censored\"\n",
            ),
            "censored",
        ),
        (
            write(dir.path(), "empty.toml", "# nothing\n"),
            "no [[expect]]",
        ),
        (dir.path().join("missing.toml"), "missing.toml"),
    ];
    for (expect, needle) in cases {
        let run = check(&report, &expect, &[]).await;
        assert_eq!(run.status.code(), Some(2), "{expect:?}: {run:#?}");
        let err = lines(&run.stderr);
        assert_eq!(err.len(), 1, "one line: {run:#?}");
        assert!(
            err[0].starts_with("censorprobe: error:") && err[0].contains(needle),
            "{run:#?}"
        );
        assert!(run.stdout.is_empty());
    }
    // An unreadable report, targets next to --report, a missing --expect.
    let run = check(&dir.path().join("absent.jsonl"), &holding, &[]).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(run.stderr.contains("absent.jsonl"), "{run:#?}");
    let run = check(&report, &holding, &["extra.test"]).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(run.stderr.contains("--report"), "{run:#?}");
    let run = run_binary(&args(&["check", "--report", &path_arg(&report)])).await;
    assert_eq!(run.status.code(), Some(2), "clap usage error: {run:#?}");
    // Expectations naming only patterns leave a scan nothing to measure.
    let patterns = write(
        dir.path(),
        "patterns.toml",
        "[[expect]]\npattern = \"*.test\"\nblocked = true\n",
    );
    let run = run_binary(&args(&[
        "check",
        "--expect",
        &path_arg(&patterns),
        "--resolver",
        "127.0.0.1",
    ]))
    .await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(run.stderr.contains("no targets"), "{run:#?}");
    // --format ooni cannot be checked.
    let run = run_binary(&args(&[
        "check",
        "--expect",
        &path_arg(&holding),
        "--format",
        "ooni",
        "blocked.test",
    ]))
    .await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
}

/// A `<testsuite>`'s counts and its test cases (name, failure message) from JUnit XML.
#[derive(Debug, Default)]
struct Junit {
    suite: BTreeMap<String, String>,
    cases: Vec<(String, Option<String>, String)>,
}

fn parse_junit(xml: &str) -> Junit {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut junit = Junit::default();
    let mut in_failure = false;
    let attrs = |e: &quick_xml::events::BytesStart<'_>| -> BTreeMap<String, String> {
        e.attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().unwrap().into_owned(),
                )
            })
            .collect()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuite" => junit.suite = attrs(&e),
                b"testcase" => junit
                    .cases
                    .push((attrs(&e)["name"].clone(), None, String::new())),
                b"failure" => {
                    junit.cases.last_mut().unwrap().1 = Some(attrs(&e)["message"].clone());
                    in_failure = true;
                }
                _ => {}
            },
            Event::Text(t) if in_failure => {
                junit.cases.last_mut().unwrap().2 += &t.decode().unwrap();
            }
            Event::GeneralRef(r) if in_failure => {
                let name = r.decode().unwrap();
                let text = quick_xml::escape::unescape(&format!("&{name};"))
                    .unwrap()
                    .into_owned();
                junit.cases.last_mut().unwrap().2 += &text;
            }
            Event::End(e) if e.name().as_ref() == b"failure" => in_failure = false,
            Event::Eof => break,
            _ => {}
        }
    }
    junit
}

/// The rows of the first Markdown table: cells split on unescaped pipes.
fn parse_markdown_table(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let mut cells = Vec::new();
            let mut cell = String::new();
            let mut chars = l.trim().trim_start_matches('|').chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => cell.extend(chars.next()),
                    '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
                    c => cell.push(c),
                }
            }
            cells
        })
        .collect()
}

#[tokio::test]
async fn check_writes_junit_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let report = write(dir.path(), "lab.jsonl", &lab_report());
    let expect = write(
        dir.path(),
        "mixed.toml",
        r#"
[[expect]]
name = "news <blocked> & \"poisoned\""
pattern = "*blocked.test"
blocked = true

[[expect]]
name = "open | reachable"
domain = "open.test"
accessible = false

[[expect]]
domain = "slow.test"
dns = "timeout"
"#,
    );
    let junit_path = dir.path().join("junit.xml");
    let md_path = dir.path().join("summary.md");
    let run = check(
        &report,
        &expect,
        &[
            "--junit",
            &path_arg(&junit_path),
            "--markdown",
            &path_arg(&md_path),
        ],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");

    let junit = parse_junit(&std::fs::read_to_string(&junit_path).unwrap());
    assert_eq!(junit.suite["tests"], "3");
    assert_eq!(junit.suite["failures"], "1");
    assert_eq!(junit.suite["errors"], "0");
    let names: Vec<&str> = junit.cases.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "news <blocked> & \"poisoned\"",
            "open | reachable",
            "slow.test: dns verdict timeout"
        ]
    );
    assert_eq!(junit.cases[0].1, None);
    let failure = junit.cases[1].1.as_deref().unwrap();
    assert!(
        failure.contains("open.test: expected not accessible, observed accessible"),
        "{failure}"
    );
    assert_eq!(
        junit.cases[1].2.trim(),
        failure,
        "the body lists every failure"
    );
    assert_eq!(junit.cases[2].1, None);

    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.starts_with("## censorprobe check ("), "{md}");
    assert!(md.contains("2 of 3 expectations hold"), "{md}");
    let rows = parse_markdown_table(&md);
    // The pattern matched two domains: one row each.
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let results: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        results,
        [
            ("✅", "news <blocked> & \"poisoned\"", "blocked.test"),
            ("✅", "news <blocked> & \"poisoned\"", "also-blocked.test"),
            ("❌", "open | reachable", "open.test"),
            ("✅", "slow.test: dns verdict timeout", "slow.test"),
        ]
    );
    assert_eq!(rows[2][3], "not accessible");
    assert!(rows[2][4].contains("observed accessible"), "{rows:#?}");
    assert!(rows.iter().all(|r| r.len() == 5), "{rows:#?}");
}

#[tokio::test]
async fn check_reads_web_stages_when_records_have_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = ReportText::new(2)
        .target_with(
            &target("keyword.test", None, ok()),
            &json!({
                "http": {"verdict": "rst_injection", "stage": "request", "ip": "198.18.1.1", "port": 80},
                "tls": {"verdict": "ok", "stage": "handshake"},
                "blocking": "http",
                "accessible": false,
            }),
        )
        .target_with(
            &target("dead.test", None, ok()),
            &json!({
                "http": {"verdict": "timeout", "stage": "connect"},
                "tls": {"verdict": "timeout", "stage": "connect"},
                "blocking": null,
                "accessible": null,
            }),
        )
        .finished();
    let report = write(dir.path(), "web.jsonl", &text);
    let expect = write(
        dir.path(),
        "web.toml",
        r#"
[[expect]]
domain = "keyword.test"
blocked = true
blocking = ["http", "tls"]
accessible = false
dns = "ok"
http = "rst_injection"
http_stage = "request"
tls = "ok"

[[expect]]
domain = "dead.test"
http = ["timeout", "refused"]
http_stage = "connect"
"#,
    );
    let run = check(&report, &expect, &[]).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");

    // A recorded null blocking is not derived away: neither blocked nor not blocked.
    let strict = write(
        dir.path(),
        "strict.toml",
        "[[expect]]\ndomain = \"dead.test\"\nblocked = false\n\n[[expect]]\ndomain = \"keyword.test\"\nblocking = \"dns\"\n",
    );
    let run = check(&report, &strict, &[]).await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert_eq!(lines(&run.stdout).len(), 2, "{run:#?}");
    assert!(run.stdout.contains("observed blocking http"), "{run:#?}");
}

#[tokio::test]
async fn truncated_reports_count_every_complete_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = ReportText::new(4)
        .target(target(
            "blocked.test",
            None,
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .raw("{\"record\":\"target\",\"domain\":\"garbled")
        .target(target("open.test", None, ok()))
        .killed("{\"record\":\"target\",\"domain\":\"cut.te");
    let report = write(dir.path(), "killed.jsonl", &text);

    let run = run_binary(&args(&["summary", &path_arg(&report), "--format", "json"])).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["all"]["domains"], 2);
    assert_eq!(summary["target_records"], 2);
    assert_eq!(summary["unparsed_lines"], 2);
    assert_eq!(summary["complete"], false);
    assert!(
        run.stderr.contains("2 lines could not be parsed") && run.stderr.contains("line 3"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("incomplete last line"), "{run:#?}");
    assert!(run.stderr.contains("no summary record"), "{run:#?}");

    let expect = write(
        dir.path(),
        "e.toml",
        "[[expect]]\ndomains = [\"blocked.test\"]\nblocked = true\n\n[[expect]]\ndomain = \"cut.test\"\nblocked = true\n",
    );
    let run = check(&report, &expect, &[]).await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert_eq!(lines(&run.stdout).len(), 1);
    assert!(run.stdout.contains("cut.test: not measured"), "{run:#?}");

    let run = run_binary(&args(&["summary", "--quiet", &path_arg(&report)])).await;
    assert_eq!(run.status.code(), Some(0));
    assert!(run.stderr.is_empty(), "--quiet: {run:#?}");
    assert!(run.stdout.contains("(incomplete scan)"), "{run:#?}");
}

// ---------------------------------------------------------------------------------
// diff

fn diff_reports(dir: &Path) -> (PathBuf, PathBuf) {
    let old = ReportText::new(7)
        .target(target("newly.test", None, ok()))
        .target(target(
            "freed.test",
            None,
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .target(target(
            "method.test",
            None,
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .target(target(
            "flaky.test",
            None,
            dns(DnsVerdict::Timeout, None, &[]),
        ))
        .target(target(
            "same.test",
            None,
            poisoned(PoisoningMethod::Bogon, &["127.0.0.2"]),
        ))
        .target(target("gone.test", None, ok()))
        .finished();
    let new = ReportText::new(7)
        .target(target(
            "newly.test",
            None,
            poisoned(PoisoningMethod::Inconsistent, &[]),
        ))
        .target(target("freed.test", None, ok()))
        .target(target(
            "method.test",
            None,
            poisoned(PoisoningMethod::KnownForgedIp, &[FORGED]),
        ))
        .target(target(
            "flaky.test",
            None,
            dns(DnsVerdict::Error, None, &[]),
        ))
        .target(target(
            "same.test",
            None,
            poisoned(PoisoningMethod::Bogon, &["127.0.0.2"]),
        ))
        .target(target("added.test", None, ok()))
        .finished();
    (write(dir, "old.jsonl", &old), write(dir, "new.jsonl", &new))
}

#[tokio::test]
async fn diff_classifies_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = diff_reports(dir.path());
    let run = run_binary(&args(&["diff", &path_arg(&old), &path_arg(&new)])).await;
    assert_eq!(run.status.code(), Some(1), "changes: {run:#?}");
    let text = &run.stdout;
    let section = |title: &str| -> Vec<String> {
        let mut lines = text.lines().skip_while(|l| !l.starts_with(title));
        let head = lines
            .next()
            .unwrap_or_else(|| panic!("no {title:?}: {text}"));
        assert!(head.starts_with(title));
        lines
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    let blocked = section("newly blocked (1):");
    assert_eq!(blocked.len(), 1, "{text}");
    assert!(blocked[0].starts_with("newly.test"), "{text}");
    assert!(blocked[0].contains("blocking: false -> dns"), "{text}");
    assert!(
        blocked[0].contains("dns: ok -> dns_poisoning (inconsistent)"),
        "{text}"
    );
    let freed = section("newly unblocked (1):");
    assert!(
        freed[0].starts_with("freed.test") && freed[0].contains("blocking: dns -> false"),
        "{text}"
    );
    let changed = section("changed verdict or method (2):");
    assert!(
        changed[0].starts_with("flaky.test") && changed[0].contains("dns: timeout -> error"),
        "{text}"
    );
    assert!(
        changed[1].starts_with("method.test")
            && changed[1]
                .contains("dns: dns_poisoning (injection) -> dns_poisoning (known_forged_ip)"),
        "{text}"
    );
    assert!(
        !changed[1].contains("blocking"),
        "still blocked by DNS: {text}"
    );
    assert!(text.contains("only in OLD (1): gone.test"), "{text}");
    assert!(text.contains("only in NEW (1): added.test"), "{text}");
    assert!(text.contains("unchanged: 1"), "{text}");

    let run = run_binary(&args(&["diff", "--json", &path_arg(&old), &path_arg(&new)])).await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["changed"], true);
    assert_eq!(json["newly_blocked"][0]["domain"], "newly.test");
    assert_eq!(json["newly_blocked"][0]["new"]["blocking"], "dns");
    assert_eq!(json["newly_blocked"][0]["old"]["blocking"], false);
    assert_eq!(json["newly_unblocked"][0]["domain"], "freed.test");
    let changed: Vec<&str> = json["changed_verdict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["flaky.test", "method.test"]);
    assert_eq!(json["changed_verdict"][1]["changes"][0]["field"], "dns");
    assert_eq!(json["only_in_old"], json!(["gone.test"]));
    assert_eq!(json["only_in_new"], json!(["added.test"]));
    assert_eq!(json["unchanged"], 1);
}

#[tokio::test]
async fn diff_exit_status_says_whether_anything_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = diff_reports(dir.path());
    let run = run_binary(&args(&["diff", &path_arg(&old), &path_arg(&old)])).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    assert!(run.stdout.contains("newly blocked (0):"), "{run:#?}");
    assert!(run.stdout.contains("unchanged: 6"), "{run:#?}");

    // Coverage alone (a domain measured in one report only) is not a change.
    let partial = ReportText::new(1)
        .target(target("newly.test", None, ok()))
        .finished();
    let partial = write(dir.path(), "partial.jsonl", &partial);
    let run = run_binary(&args(&[
        "diff",
        "--json",
        &path_arg(&old),
        &path_arg(&partial),
    ]))
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["changed"], false);
    assert_eq!(json["only_in_old"].as_array().unwrap().len(), 5);

    // A report killed mid-way still compares; what it could not read is said on stderr.
    let killed = ReportText::new(2)
        .target(target(
            "newly.test",
            None,
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .killed("{\"record\":\"tar");
    let killed = write(dir.path(), "killed.jsonl", &killed);
    let run = run_binary(&args(&["diff", &path_arg(&old), &path_arg(&killed)])).await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert!(run.stdout.contains("newly blocked (1):"), "{run:#?}");
    assert!(
        run.stderr.contains("1 line could not be parsed"),
        "{run:#?}"
    );

    let run = run_binary(&args(&["diff", &path_arg(&old), "/nonexistent/new.jsonl"])).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert_eq!(lines(&run.stderr).len(), 1, "{run:#?}");
    assert!(run.stderr.contains("/nonexistent/new.jsonl"), "{run:#?}");
    let run = run_binary(&args(&["diff", &path_arg(&old)])).await;
    assert_eq!(run.status.code(), Some(2), "usage: {run:#?}");
}

// ---------------------------------------------------------------------------------
// summary

async fn summary(report: &Path, format: &str) -> String {
    let run = run_binary(&args(&["summary", &path_arg(report), "--format", format])).await;
    assert_eq!(run.status.code(), Some(0), "{format}: {run:#?}");
    run.stdout
}

#[tokio::test]
async fn summary_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let report = write(dir.path(), "lab.jsonl", &lab_report());

    let text = summary(&report, "text").await;
    assert!(text.contains("5 domain(s), 5 target record(s)"), "{text}");
    assert!(
        text.contains("  blocking: dns 2, false 2, null 1"),
        "{text}"
    );
    assert!(
        text.contains("  dns: dns_poisoning 2, ok 2, timeout 1"),
        "{text}"
    );
    assert!(
        text.contains("  dns methods: injection 1, known_forged_ip 1"),
        "{text}"
    );
    assert!(text.contains("    NEWS: 2/2"), "{text}");
    assert!(
        text.contains("forged addresses: 10.10.34.34 (2), 10.10.34.35 (1)"),
        "{text}"
    );

    let json: Value = serde_json::from_str(&summary(&report, "json").await).unwrap();
    assert_eq!(json["all"]["domains"], 5);
    assert_eq!(
        json["all"]["blocking"],
        json!({"dns": 2, "false": 2, "null": 1})
    );
    assert_eq!(json["all"]["stages"]["dns"]["verdicts"]["dns_poisoning"], 2);
    assert_eq!(json["categories"]["NEWS"]["domains"], 2);
    assert_eq!(json["categories"]["HUMR"]["accessible"]["true"], 1);
    assert_eq!(json["categories"]["uncategorized"]["domains"], 2);
    assert_eq!(json["forged_ips"][FORGED], 2);
    assert_eq!(json["complete"], true);

    let csv_text = summary(&report, "csv").await;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["category", "stage", "field", "value", "count"]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let has = |row: [&str; 5]| rows.iter().any(|r| r == &row);
    assert!(has(["*", "", "domains", "", "5"]), "{csv_text}");
    assert!(
        has(["*", "dns", "verdict", "dns_poisoning", "2"]),
        "{csv_text}"
    );
    assert!(
        has(["*", "dns", "method", "known_forged_ip", "1"]),
        "{csv_text}"
    );
    assert!(has(["*", "", "blocking", "dns", "2"]), "{csv_text}");
    assert!(has(["NEWS", "", "blocking", "dns", "2"]), "{csv_text}");
    assert!(has(["HUMR", "dns", "verdict", "ok", "1"]), "{csv_text}");
    assert!(
        has(["uncategorized", "dns", "verdict", "timeout", "1"]),
        "{csv_text}"
    );

    let md = summary(&report, "markdown").await;
    assert!(
        md.starts_with("## censorprobe summary: 5 domain(s), 2 blocked"),
        "{md}"
    );
    assert!(md.contains("| dns | dns_poisoning | | 2 |"), "{md}");
    assert!(md.contains("| NEWS | 2 | 2 | 0 |"), "{md}");
    assert!(
        md.contains("| blocked.test | dns | dns_poisoning | injection |"),
        "{md}"
    );

    let blocklist = summary(&report, "blocklist").await;
    let entries: Vec<&str> = blocklist.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        entries,
        [
            "also-blocked.test\tdns\tdns_poisoning\tknown_forged_ip",
            "blocked.test\tdns\tdns_poisoning\tinjection",
            "10.10.34.34\t2",
            "10.10.34.35\t1",
        ]
    );
    assert!(
        blocklist.starts_with("# censorprobe blocklist from "),
        "{blocklist}"
    );
    assert!(
        blocklist.contains("2 censored domain(s), 2 forged address(es)"),
        "{blocklist}"
    );

    // --out writes a file instead of stdout.
    let out = dir.path().join("blocklist.tsv");
    let run = run_binary(&args(&[
        "summary",
        &path_arg(&report),
        "--format",
        "blocklist",
        "--out",
        &path_arg(&out),
    ]))
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    assert!(run.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), blocklist);

    let run = run_binary(&args(&["summary", &path_arg(&report), "--format", "yaml"])).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
}

#[tokio::test]
async fn blocklist_names_the_web_stage_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let text = ReportText::new(2)
        .target_with(
            &target("keyword.test", None, ok()),
            &json!({"http": {"verdict": "rst_injection", "stage": "request"}, "blocking": "http", "accessible": false}),
        )
        .target_with(
            &target("sni.test", None, ok()),
            &json!({"http": {"verdict": "ok"}, "tls": {"verdict": "rst_injection", "stage": "handshake"}, "blocking": "tls", "accessible": false}),
        )
        .finished();
    let report = write(dir.path(), "web.jsonl", &text);
    let blocklist = summary(&report, "blocklist").await;
    assert!(
        blocklist.contains("keyword.test\thttp\trst_injection\trequest\n"),
        "{blocklist}"
    );
    assert!(
        blocklist.contains("sni.test\ttls\trst_injection\thandshake\n"),
        "{blocklist}"
    );
    let json: Value = serde_json::from_str(&summary(&report, "json").await).unwrap();
    assert_eq!(
        json["all"]["stages"]["http"]["verdicts"]["rst_injection"],
        1
    );
    assert_eq!(json["all"]["stages"]["tls"]["verdicts"]["rst_injection"], 1);
}

// ---------------------------------------------------------------------------------
// repeated measurements

fn attempt(mut record: TargetRecord, n: u32) -> TargetRecord {
    record.attempt = Some(n);
    record
}

/// flaky.test: poisoned in 2 of 3 attempts; coin.test: 1 of 2 (no majority);
/// steady.test: clean in all 3.
fn repeat_report() -> String {
    let flaky = [
        attempt(
            target(
                "flaky.test",
                None,
                poisoned(PoisoningMethod::Injection, &[FORGED]),
            ),
            1,
        ),
        attempt(target("flaky.test", None, ok()), 2),
        attempt(
            target(
                "flaky.test",
                None,
                poisoned(PoisoningMethod::Injection, &["10.10.34.36"]),
            ),
            3,
        ),
    ];
    let coin = [
        attempt(
            target(
                "coin.test",
                None,
                poisoned(PoisoningMethod::Injection, &[FORGED]),
            ),
            1,
        ),
        attempt(target("coin.test", None, ok()), 2),
    ];
    let steady: Vec<TargetRecord> = (1..=3)
        .map(|n| attempt(target("steady.test", None, ok()), n))
        .collect();
    let mut report = ReportText::new(8);
    for record in flaky.iter().chain(&coin).chain(&steady) {
        report = report.target(record.clone());
    }
    report
        .consensus(&flaky)
        .consensus(&coin)
        .consensus(&steady)
        .finished()
}

#[tokio::test]
async fn consensus_records_decide_summary_check_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let text = repeat_report();
    assert_report_valid(&text);
    let parsed = Report::parse(&text);
    assert_eq!(parsed.consensus.len(), 3);
    let flaky = parsed
        .consensus
        .iter()
        .find(|c| c.domain == "flaky.test")
        .unwrap();
    assert_eq!(flaky.blocking.majority, Blocking::At(BlockingLayer::Dns));
    assert_eq!(flaky.consistency.to_bits(), 0.667_f64.to_bits());
    assert_eq!(
        json_of(&flaky.stages.dns.as_ref().unwrap().verdicts),
        json!({"dns_poisoning": 2, "ok": 1})
    );
    assert_eq!(flaky.forged_ips, [FORGED, "10.10.34.36"]);
    let coin = parsed
        .consensus
        .iter()
        .find(|c| c.domain == "coin.test")
        .unwrap();
    assert_eq!(
        coin.blocking.majority,
        Blocking::Inconclusive,
        "one reset is not a finding"
    );
    assert_eq!(
        coin.stages.dns.as_ref().unwrap().verdict,
        Majority::NoMajority
    );
    let report = write(dir.path(), "repeat.jsonl", &text);

    let json: Value = serde_json::from_str(&summary(&report, "json").await).unwrap();
    assert_eq!(
        json["all"]["domains"], 3,
        "counted per domain, not per attempt"
    );
    assert_eq!(json["target_records"], 8);
    assert_eq!(json["consensus_records"], 3);
    assert_eq!(
        json["all"]["blocking"],
        json!({"dns": 1, "false": 1, "null": 1})
    );
    assert_eq!(json["all"]["stages"]["dns"]["verdicts"]["no_majority"], 1);
    assert_eq!(json["forged_ips"][FORGED], 2);

    let expect = write(
        dir.path(),
        "repeat.toml",
        r#"
[[expect]]
domain = "flaky.test"
blocked = true
dns_method = "injection"

[[expect]]
domain = "steady.test"
blocked = false
min_consistency = 1.0

[[expect]]
domain = "flaky.test"
min_consistency = 0.9

[[expect]]
domain = "coin.test"
blocked = true
"#,
    );
    let run = check(&report, &expect, &[]).await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    let out = lines(&run.stdout);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(
        out[0].contains(
            "flaky.test: expected consistency >= 0.9, observed consistency 0.667 over 3 attempt(s)"
        ),
        "{out:#?}"
    );
    assert!(
        out[1].contains("coin.test: expected blocked, observed unknown"),
        "{out:#?}"
    );

    // Against a single measurement where coin.test was blocked: the consensus of
    // the repeat run is what counts for it.
    let single = ReportText::new(3)
        .target(target(
            "flaky.test",
            None,
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .target(target(
            "coin.test",
            None,
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .target(target("steady.test", None, ok()))
        .finished();
    let single = write(dir.path(), "single.jsonl", &single);
    let run = run_binary(&args(&[
        "diff",
        "--json",
        &path_arg(&single),
        &path_arg(&report),
    ]))
    .await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["changed_verdict"][0]["domain"], "coin.test");
    assert_eq!(json["changed_verdict"][0]["new"]["attempts"], 2);
    assert_eq!(json["unchanged"], 2);
}

// ---------------------------------------------------------------------------------
// scan options checked before anything starts

#[tokio::test]
async fn scan_workflow_options_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let report = path_arg(&dir.path().join("r.jsonl"));
    let other = path_arg(&dir.path().join("other.jsonl"));
    let cases: [(&[&str], &str); 5] = [
        (
            &["scan", "--resume", &report, "--out", &other, "a.test"],
            "appended",
        ),
        (
            &["scan", "--resume", &report, "--format", "ooni", "a.test"],
            "ooni",
        ),
        (&["scan", "--repeat", "0", "a.test"], "--repeat"),
        (&["scan", "--format", "xml", "a.test"], "--format"),
        (
            // A UDP control is asked through the resolver's sockets: one family.
            &[
                "scan",
                "--resolver",
                "127.0.0.1",
                "--control",
                "udp:[::1]",
                "--tests",
                "dns",
                "a.test",
            ],
            "must be of one address family",
        ),
    ];
    for (argv, needle) in cases {
        let run = run_binary(&args(argv)).await;
        assert_eq!(run.status.code(), Some(2), "{argv:?}: {run:#?}");
        assert!(run.stderr.contains(needle), "{argv:?}: {run:#?}");
        assert!(run.stdout.is_empty());
    }
}

// ---------------------------------------------------------------------------------
// Live scans against loopback fakes (need the control path; run with --control none).

/// A resolver fake that answers `flaky.test` with an injector's race (a forged answer
/// at once, the genuine one later) on its 1st, 3rd, 5th... query and with the genuine
/// answer alone otherwise; every other name gets one genuine answer.
async fn alternating_dns() -> std::net::SocketAddr {
    let genuine = Behaviour::a([198, 18, 9, 9]);
    let race = Behaviour::injected([10, 10, 34, 34], [198, 18, 9, 9], Duration::from_millis(40));
    fake_dns(
        &[("flaky.test", Behaviour::Cycle(vec![race, genuine.clone()]))],
        genuine,
    )
    .await
}

fn scan_args(resolver: std::net::SocketAddr, extra: &[&str]) -> Vec<String> {
    // DNS stage only: the fakes' answers are lab addresses, and no lab is up to route them.
    let mut argv = args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        "none",
        "--qtype",
        "A",
        "--retries",
        "0",
        "--dns-timeout",
        "300ms",
        "--dns-wait",
        "150ms",
        "--seed",
        "5",
    ]);
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    argv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_repeat_reports_every_attempt_and_the_consensus() {
    let resolver = alternating_dns().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("repeat.jsonl");
    let run = run_binary(&scan_args(
        resolver,
        &[
            "--repeat",
            "3",
            "--out",
            &path_arg(&out),
            "--progress-interval",
            "0s",
            "flaky.test",
            "steady.test",
        ],
    ))
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let report = Report::parse(&text);
    assert_eq!(report.header.options.repeat, Some(3));
    assert_eq!(report.targets.len(), 6);
    for domain in ["flaky.test", "steady.test"] {
        let attempts: Vec<u64> = report
            .targets
            .iter()
            .filter(|t| t.domain == domain)
            .map(|t| u64::from(t.attempt.unwrap()))
            .collect();
        assert_eq!(
            attempts,
            [1, 2, 3],
            "{domain}: attempts in order, one per pass"
        );
    }
    let flaky: Vec<DnsVerdict> = report
        .targets
        .iter()
        .filter(|t| t.domain == "flaky.test")
        .map(|t| t.dns_verdict().unwrap())
        .collect();
    assert_eq!(
        flaky,
        [
            DnsVerdict::DnsPoisoning,
            DnsVerdict::Ok,
            DnsVerdict::DnsPoisoning
        ]
    );
    assert_eq!(report.consensus.len(), 2);
    let consensus = |d: &str| report.consensus.iter().find(|c| c.domain == d).unwrap();
    assert_eq!(
        consensus("flaky.test").blocking.majority,
        Blocking::At(BlockingLayer::Dns)
    );
    assert_eq!(
        consensus("flaky.test").consistency.to_bits(),
        0.667_f64.to_bits()
    );
    assert_eq!(
        consensus("flaky.test").stages.dns.as_ref().unwrap().method,
        Some(PoisoningMethod::Injection)
    );
    assert_eq!(consensus("steady.test").blocking.majority, Blocking::No);
    assert_eq!(
        consensus("steady.test").consistency.to_bits(),
        1.0_f64.to_bits()
    );
    // Each consensus follows its target's last attempt.
    let position = |pred: &dyn Fn(&Value) -> bool| {
        text.lines()
            .position(|l| pred(&serde_json::from_str::<Value>(l).unwrap()))
            .unwrap()
    };
    let last = position(&|v| v["domain"] == "flaky.test" && v["attempt"] == 3);
    let agreed = position(&|v| v["record"] == "consensus" && v["domain"] == "flaky.test");
    assert_eq!(agreed, last + 1, "{text}");
    assert_eq!(report.summary.targets_measured, 6);
    assert_eq!(report.summary.censored, ["flaky.test"]);
    // Not a terminal: plain progress lines on stderr.
    let progress: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("censorprobe: progress "))
        .collect();
    assert!(progress.len() >= 6, "{run:#?}");
    assert!(progress.last().unwrap().contains("6/6 (100%)"), "{run:#?}");
    assert!(progress.last().unwrap().contains("not blocked"), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_resume_measures_only_what_is_missing() {
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 7, 7])).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("resume.jsonl");
    let names = [
        "a.resume.test",
        "b.resume.test",
        "c.resume.test",
        "d.resume.test",
    ];
    let mut extra = vec!["--quiet", "--out"];
    let out_arg = path_arg(&out);
    extra.push(&out_arg);
    extra.extend(names);
    let run = run_binary(&scan_args(resolver, &extra)).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    assert!(run.stderr.is_empty(), "--quiet: {run:#?}");
    // Simulate a kill after two records: keep the header and two targets, then half a line.
    let full = std::fs::read_to_string(&out).unwrap();
    let kept: Vec<&str> = full.lines().take(3).collect();
    let measured: Vec<String> = kept[1..]
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["domain"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let fragment = &full.lines().nth(3).unwrap()[..40];
    std::fs::write(&out, format!("{}\n{fragment}", kept.join("\n"))).unwrap();

    let mut extra = vec!["--quiet", "--resume"];
    extra.push(&out_arg);
    extra.extend(names);
    let run = run_binary(&scan_args(resolver, &extra)).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let text = std::fs::read_to_string(&out).unwrap();
    // Every line parses: the cut line is gone, not glued to the next record.
    assert_report_valid(&text);
    let values: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let headers: Vec<&Value> = values.iter().filter(|v| v["record"] == "header").collect();
    assert_eq!(headers.len(), 2, "the resumed run adds its header");
    assert_eq!(
        headers[1]["options"]["resume"]["targets_already_measured"],
        2
    );
    assert_eq!(
        headers[1]["options"]["resume"]["cut_incomplete_last_line"],
        true
    );
    assert_eq!(headers[1]["targets_scheduled"], 4);
    let targets: Vec<&str> = values
        .iter()
        .filter(|v| v["record"] == "target")
        .map(|v| v["domain"].as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), 4, "each target once: {targets:?}");
    for name in names {
        assert_eq!(
            targets.iter().filter(|t| **t == name).count(),
            1,
            "{name}: {targets:?}"
        );
    }
    assert_eq!(
        &targets[..2],
        measured.as_slice(),
        "earlier records stay first"
    );
    let summary = values.iter().rfind(|v| v["record"] == "summary").unwrap();
    assert_eq!(
        summary["targets_measured"], 4,
        "the summary covers both runs"
    );
    assert_eq!(summary["dns"]["ok"], 4);

    // Resuming a complete report measures nothing more.
    let run = run_binary(&scan_args(resolver, &extra)).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let again = std::fs::read_to_string(&out).unwrap();
    let targets = again
        .lines()
        .filter(|l| l.contains("\"record\":\"target\""))
        .count();
    assert_eq!(targets, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_check_scans_the_domains_it_names() {
    let resolver = alternating_dns().await;
    let dir = tempfile::tempdir().unwrap();
    let expect = write(
        dir.path(),
        "ci.toml",
        "[[expect]]\ndomain = \"flaky.test\"\nblocked = true\ndns_method = \"injection\"\n\n[[expect]]\ndomain = \"steady.test\"\nblocked = false\n",
    );
    let junit = dir.path().join("junit.xml");
    let mut argv = scan_args(
        resolver,
        &["--expect", &path_arg(&expect), "--junit", &path_arg(&junit)],
    );
    argv[0] = "check".to_owned();
    let run = run_binary(&argv).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    let junit = parse_junit(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(junit.suite["tests"], "2");
    assert_eq!(junit.suite["failures"], "0");

    // The next query for flaky.test is genuine: the same expectation now fails.
    let report = dir.path().join("second.jsonl");
    let mut argv = scan_args(
        resolver,
        &["--expect", &path_arg(&expect), "--out", &path_arg(&report)],
    );
    argv[0] = "check".to_owned();
    let run = run_binary(&argv).await;
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert_eq!(lines(&run.stdout).len(), 1, "{run:#?}");
    assert!(run.stdout.contains("FAIL flaky.test"), "{run:#?}");
    let parsed = Report::parse(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(parsed.targets.len(), 2, "--out keeps the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_ooni_format_writes_one_measurement_per_target() {
    let resolver = alternating_dns().await;
    let run = run_binary(&scan_args(
        resolver,
        &[
            "--format",
            "ooni",
            "--vantage",
            "lab",
            "flaky.test",
            "steady.test",
        ],
    ))
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let measurements: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        measurements.len(),
        2,
        "no header or summary lines: {}",
        run.stdout
    );
    let report_id = &measurements[0]["report_id"];
    for m in &measurements {
        assert_eq!(&m["report_id"], report_id, "one report id per run");
        assert_eq!(m["test_name"], "web_connectivity");
        assert_eq!(m["software_name"], "censorprobe");
        assert_eq!(m["data_format_version"], "0.2.0");
        assert_eq!(m["annotations"]["vantage"], "lab");
        assert_eq!(m["resolver_ip"], "127.0.0.1");
        for key in [
            "queries",
            "tcp_connect",
            "tls_handshakes",
            "requests",
            "network_events",
        ] {
            assert!(m["test_keys"][key].is_array(), "{key}: {m:#}");
        }
        assert!(
            m["measurement_start_time"].as_str().unwrap().len() == 19,
            "YYYY-MM-DD hh:mm:ss: {m:#}"
        );
    }
    let flaky = measurements
        .iter()
        .find(|m| m["input"] == "http://flaky.test/")
        .unwrap();
    let queries = flaky["test_keys"]["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 2, "both replies of the race: {flaky:#}");
    assert_eq!(queries[0]["answers"][0]["ipv4"], "10.10.34.34");
    assert_eq!(queries[1]["answers"][0]["ipv4"], "198.18.9.9");
    assert_eq!(flaky["test_keys"]["blocking"], "dns");
    assert_eq!(flaky["test_keys"]["dns_consistency"], "inconsistent");
    assert_eq!(
        flaky["test_keys"]["x_censorprobe"]["verdicts"]["dns"]["method"],
        "injection"
    );
    let steady = measurements
        .iter()
        .find(|m| m["input"] == "http://steady.test/")
        .unwrap();
    assert_eq!(steady["test_keys"]["blocking"], false);
    // A DNS-only scan cannot say whether the site itself is reachable.
    assert_eq!(steady["test_keys"]["accessible"], serde_json::Value::Null);
    let events = steady["test_keys"]["network_events"].as_array().unwrap();
    assert_eq!(
        events.iter().filter(|e| e["operation"] == "read").count(),
        1
    );
}

/// `--format ooni` of a scan whose HTTP and TLS probes ran: the binary against
/// loopback lab servers (pinned address, the lab CA trusted with `--ca`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_ooni_format_maps_web_probes() {
    use censorprobe::servers::ca::LabCa;
    use censorprobe::servers::web::{
        HttpBehaviour, HttpLabConfig, LabServer, TlsBehaviour, TlsIdentity, TlsLabConfig,
    };
    let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 71));
    let ca = LabCa::new("censorprobe workflows CA").unwrap();
    let (chain, key) = ca
        .issue(&["example.com", "good.test", "blocked.test"], &[])
        .unwrap();
    let http = LabServer::spawn_http(
        std::net::SocketAddr::new(ip, 0),
        HttpLabConfig::default().on("blocked.test", HttpBehaviour::Reset),
    )
    .await
    .unwrap();
    let tls = LabServer::spawn_tls(
        std::net::SocketAddr::new(ip, 0),
        TlsLabConfig::new(TlsIdentity { chain, key }).on("blocked.test", TlsBehaviour::Reset),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file).unwrap();
    let http_port = http.local_addr().port().to_string();
    let tls_port = tls.local_addr().port().to_string();
    let good = format!("good.test,{ip}");
    let blocked = format!("blocked.test,{ip}");
    let run = run_binary(&args(&[
        "scan",
        "--tests",
        "http,tls",
        "--resolver",
        "127.0.0.1:53",
        "--control",
        "none",
        "--ca",
        &path_arg(&ca_file),
        "--http-port",
        &http_port,
        "--tls-port",
        &tls_port,
        "--connect-timeout",
        "1s",
        "--web-timeout",
        "1s",
        "--residual-wait",
        "2s",
        "--format",
        "ooni",
        &good,
        &blocked,
    ]))
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let measurements: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(measurements.len(), 2, "{}", run.stdout);
    let keys_of = |domain: &str| {
        measurements
            .iter()
            .find(|m| m["input"] == format!("http://{domain}/"))
            .map(|m| m["test_keys"].clone())
            .unwrap()
    };

    let good = keys_of("good.test");
    assert_eq!(good["x_censorprobe"]["unmapped"], json!([]), "{good:#}");
    assert_eq!(good["queries"], json!([]), "no DNS stage");
    let connects = good["tcp_connect"].as_array().unwrap();
    assert_eq!(connects.len(), 2, "{good:#}");
    assert!(
        connects
            .iter()
            .all(|c| c["ip"] == ip.to_string() && c["status"]["success"] == true)
    );
    assert_eq!(good["requests"][0]["response"]["code"], 200);
    assert_eq!(
        good["requests"][0]["request"]["headers"]["Host"],
        "good.test"
    );
    assert_eq!(good["tls_handshakes"][0]["failure"], Value::Null);
    assert_eq!(good["tls_handshakes"][0]["tls_version"], "TLSv1.3");
    assert_eq!(good["blocking"], false);
    assert_eq!(good["accessible"], true);

    let blocked = keys_of("blocked.test");
    assert_eq!(blocked["requests"][0]["failure"], "connection_reset");
    assert_eq!(blocked["tls_handshakes"][0]["failure"], "connection_reset");
    assert_eq!(blocked["http_experiment_failure"], "connection_reset");
    assert_eq!(blocked["tcp_connect"][0]["status"]["success"], true);
    assert_eq!(blocked["blocking"], "http-failure");
    assert_eq!(blocked["x_censorprobe"]["blocking"], "http");
    assert_eq!(
        blocked["x_censorprobe"]["attempts"]["http"][0]["control"]["passed"],
        true
    );
    let reads: Vec<&Value> = blocked["network_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "read")
        .collect();
    assert_eq!(reads.len(), 2, "{blocked:#}");
    assert!(reads.iter().all(|e| e["failure"] == "connection_reset"));
}

// ---------------------------------------------------------------------------------
// Careless options and signals (issue 8: no panic, bounded everything).

/// Asserts a run refused its arguments the way every usage error is refused: status 2,
/// exactly one line on stderr, no panic, nothing on stdout.
fn assert_one_line_usage_error(argv: &[&str], run: &Run, needle: &str) {
    assert_eq!(run.status.code(), Some(2), "{argv:?}: {run:#?}");
    assert!(!run.stderr.contains("panicked"), "{argv:?}: {run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "{argv:?}: {run:#?}");
    assert!(run.stderr.contains(needle), "{argv:?}: {run:#?}");
    assert!(run.stdout.is_empty(), "{argv:?}: {run:#?}");
}

#[tokio::test]
async fn out_of_range_options_are_one_line_and_status_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--rate", "1e-19"], "--rate"),
        (&["--rate=-1"], "--rate"),
        (&["--rate", "NaN"], "--rate"),
        (&["--rate", "inf"], "--rate"),
        (&["--concurrency", "18446744073709551615"], "--concurrency"),
        (&["--concurrency", "0"], "--concurrency"),
        (&["--max-ips", "0"], "--max-ips"),
        (&["--http-port", "0"], "--http-port"),
        (&["--tls-port", "0"], "--tls-port"),
        (&["--retries", "4294967295"], "--retries"),
        (&["--dns-wait", "1e16s"], "--dns-wait"),
        (&["--dns-wait", "99999m"], "--dns-wait"),
        (&["--dns-timeout", "1e16"], "--dns-timeout"),
        (&["--dns-timeout", "0"], "--dns-timeout"),
        (&["--control-timeout", "0s"], "--control-timeout"),
        (&["--connect-timeout", "1e16s"], "--connect-timeout"),
        (&["--web-timeout", "0ms"], "--web-timeout"),
        (&["--residual-wait", "1e16s"], "--residual-wait"),
        (&["--residual-recheck", "0"], "--residual-recheck"),
        (&["--repeat-interval", "1e16s"], "--repeat-interval"),
        (&["--progress-interval", "1e16s"], "--progress-interval"),
        (&["--dns-wait=-1s"], "--dns-wait"),
    ];
    for (options, needle) in cases {
        // Loopback resolver: should a value slip through, the scan stays on this host.
        let mut argv = vec![
            "scan",
            "--control",
            "none",
            "--tests",
            "dns",
            "--resolver",
            "127.0.0.1:9",
        ];
        argv.extend_from_slice(options);
        argv.push("a.test");
        let run = run_binary(&args(&argv)).await;
        assert_one_line_usage_error(&argv, &run, needle);
    }
}

#[tokio::test]
async fn durations_take_exponents_and_the_limits_are_inclusive() {
    // Each accepted value is paired with a refused `--max-ips 0`: the refusal naming
    // `--max-ips` shows that the value before it parsed, and no scan starts.
    let accepted: &[&[&str]] = &[
        &["--dns-wait", "1e3ms"],
        &["--dns-wait", "1m"],
        &["--repeat-interval", "1e3s"],
        &["--rate", "0"],
        &["--concurrency", "100000"],
    ];
    for options in accepted {
        // Loopback resolver: should a value slip through, the scan stays on this host.
        let mut argv = vec![
            "scan",
            "--control",
            "none",
            "--tests",
            "dns",
            "--resolver",
            "127.0.0.1:9",
        ];
        argv.extend_from_slice(options);
        argv.extend_from_slice(&["--max-ips", "0", "a.test"]);
        let run = run_binary(&args(&argv)).await;
        assert_one_line_usage_error(&argv, &run, "--max-ips");
    }
}

/// A scan against a resolver that never answers, with many targets: it is still
/// running when the test sends `signal`.
async fn signalled_scan(signal: nix::sys::signal::Signal) -> (Option<i32>, Report, String) {
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 8, 8])).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let mut argv = scan_args(resolver, &["--rate", "20", "--out", &path_arg(&out)]);
    argv.extend((0..200).map(|i| format!("n{i}.slow.test")));
    let child = tokio::process::Command::new(crate::support::BIN)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let written = std::fs::read_to_string(&out).unwrap_or_default();
        if written.lines().count() > 3 {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
    let output = child.wait_with_output().await.unwrap();
    let report = Report::parse(&std::fs::read_to_string(&out).unwrap());
    (
        output.status.code(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_stop_a_scan_like_ctrl_c() {
    use nix::sys::signal::Signal;
    for (signal, status) in [(Signal::SIGTERM, 143), (Signal::SIGHUP, 129)] {
        let (code, report, stderr) = signalled_scan(signal).await;
        assert_eq!(code, Some(status), "{signal}: {stderr}");
        assert!(report.summary.interrupted, "{signal}");
        let measured = report.summary.targets_measured;
        assert_eq!(measured, report.targets.len(), "{signal}");
        assert!((3..200).contains(&measured), "{signal}: {measured}");
        assert!(stderr.contains("interrupted"), "{signal}: {stderr}");
    }
}

/// A fast scan of many `ok` names (lean records, buffered output) stopped by SIGTERM
/// while records wait in the report's buffer: nothing measured is lost. The report
/// ends with the summary, every line parses, and the summary counts exactly the target
/// records written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_buffered_record_before_the_summary() {
    use nix::sys::signal::Signal;
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 8, 8])).await;
    let dir = tempfile::tempdir().unwrap();
    let names = dir.path().join("names.txt");
    let list: Vec<String> = (0..50_000).map(|i| format!("n{i}.fast.test")).collect();
    let list = list.join("\n");
    std::fs::write(&names, list).unwrap();
    let out = dir.path().join("report.jsonl");
    let argv = args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        "none",
        "--qtype",
        "A",
        "--dns-wait",
        "0s",
        "--rate",
        "0",
        "--concurrency",
        "500",
        "--seed",
        "5",
        "--targets",
        &path_arg(&names),
        "--out",
        &path_arg(&out),
        "--quiet",
    ]);
    let child = tokio::process::Command::new(crate::support::BIN)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Some records have reached the file: the scan is under way.
    for _ in 0..800 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let written = std::fs::read_to_string(&out).unwrap_or_default();
        if written.lines().count() > 50 {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "the last line is complete");
    let records: Vec<ReportRecord> = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1))
        })
        .collect();
    let Some(ReportRecord::Summary(summary)) = records.last() else {
        panic!("the report ends with a summary: {:?}", text.lines().last());
    };
    assert!(summary.interrupted);
    let targets: Vec<&TargetRecord> = records
        .iter()
        .filter_map(|r| match r {
            ReportRecord::Target(t) => Some(&**t),
            _ => None,
        })
        .collect();
    assert!(
        (50..50_000).contains(&targets.len()),
        "stopped part-way: {}",
        targets.len()
    );
    assert_eq!(summary.targets_measured, targets.len());
    assert_eq!(summary.dns.values().sum::<usize>(), targets.len());
    // The default report: the `ok` names' records lean (no raw observations), any
    // other (a name the busy fake missed) whole.
    let lean = targets
        .iter()
        .filter(|t| t.dns.as_ref().unwrap().is_lean())
        .count();
    assert_eq!(lean, summary.dns["ok"]);
    assert!(lean > 0, "some names answered");
}

// ---------------------------------------------------------------------------------
// Readers of hostile or mistaken input (issue 8).

#[tokio::test]
async fn a_file_that_is_not_a_report_is_an_error_not_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.jsonl", &lab_report());
    let binary = dir.path().join("binary.jsonl");
    std::fs::write(&binary, (0..=255u8).cycle().take(5000).collect::<Vec<u8>>()).unwrap();
    let empty = write(dir.path(), "empty.jsonl", "");
    let header_only = write(
        dir.path(),
        "header.jsonl",
        &ReportText::new(0).lines.join("\n"),
    );
    let json_not_report = write(dir.path(), "other.jsonl", "{\"a\":1}\n[1,2]\n");
    for bad in [&binary, &empty, &header_only, &json_not_report] {
        let run = run_binary(&args(&["diff", &path_arg(&good), &path_arg(bad)])).await;
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {run:#?}");
        assert_eq!(lines(&run.stderr).len(), 1, "{bad:?}: {run:#?}");
        assert!(run.stderr.contains("no target record"), "{run:#?}");
        assert!(run.stderr.contains(&path_arg(bad)), "{run:#?}");
        let run = run_binary(&args(&["diff", &path_arg(bad), &path_arg(&good)])).await;
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {run:#?}");
        let run = run_binary(&args(&["summary", &path_arg(bad)])).await;
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert!(run.stderr.contains("no target record"), "{run:#?}");
    }
}

#[tokio::test]
async fn a_blocking_value_that_is_not_a_layer_is_never_censored() {
    let dir = tempfile::tempdir().unwrap();
    let record = target("stringly.test", None, ok());
    let text = ReportText::new(3)
        .target(target("fine.test", None, ok()))
        .target_with(&record, &json!({"blocking": "false"}))
        .target_with(
            &target("yes.test", None, ok()),
            &json!({"blocking": true, "accessible": "true"}),
        )
        .finished();
    let report = write(dir.path(), "strings.jsonl", &text);
    let run = run_binary(&args(&["summary", &path_arg(&report), "--format", "json"])).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["censored"], json!([]), "{json:#}");
    assert_eq!(json["all"]["domains"], 1, "{json:#}");
    assert_eq!(json["unparsed_lines"], 2, "{json:#}");
    assert!(
        run.stderr.contains("2 lines could not be parsed"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("\"false\""), "{run:#?}");
}

#[tokio::test]
async fn an_overlong_line_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let huge = format!(
        "{{\"record\":\"target\",\"pad\":\"{}\"}}",
        "z".repeat(20 << 20)
    );
    let text = ReportText::new(2)
        .target(target("before.test", None, ok()))
        .raw(&huge)
        .target(target(
            "after.test",
            None,
            poisoned(PoisoningMethod::Injection, &[FORGED]),
        ))
        .finished();
    let report = write(dir.path(), "huge.jsonl", &text);
    let run = run_binary(&args(&["summary", &path_arg(&report), "--format", "json"])).await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["all"]["domains"], 2, "{json:#}");
    assert_eq!(json["unparsed_lines"], 1, "{json:#}");
    assert!(
        run.stderr.contains("line 3: line is 20971") && run.stderr.contains("skipped"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn resume_refuses_a_file_that_is_not_a_censorprobe_report() {
    let dir = tempfile::tempdir().unwrap();
    let ooni = concat!(
        r#"{"annotations":{},"input":"a.test","measurement_start_time":"2024-05-01 10:00:00","test_name":"dnscheck","test_keys":{}}"#,
        "\n",
        r#"{"annotations":{},"input":"b.test","measurement_start_time":"2024-05-01 10:00:01","test_name":"dnscheck","test_keys":{}}"#,
        "\n"
    );
    let path = write(dir.path(), "ooni.jsonl", ooni);
    let argv = [
        "scan",
        "--control",
        "none",
        "--tests",
        "dns",
        "--resolver",
        "127.0.0.1:9",
        "--dns-timeout",
        "10ms",
        "--resume",
        &path_arg(&path),
        "a.test",
    ];
    let run = run_binary(&args(&argv)).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("not a censorprobe JSONL report"),
        "{run:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        ooni,
        "left as it was"
    );
}

#[tokio::test]
async fn summary_output_is_safe_for_terminals_and_spreadsheets() {
    let dir = tempfile::tempdir().unwrap();
    let mut hostile = target(
        "evil\u{1b}[2J\u{1b}]8;;http://x\u{7}|pipe.test",
        Some("=HYPERLINK(\"http://x\",\"y\")"),
        poisoned(PoisoningMethod::Injection, &[FORGED]),
    );
    hostile.categories = vec!["=HYPERLINK(\"http://x\",\"y\")".to_owned()];
    let text = ReportText::new(1).target(hostile).finished();
    let report = write(dir.path(), "hostile.jsonl", &text);
    for format in ["text", "markdown", "blocklist", "csv"] {
        let out = summary(&report, format).await;
        // Tabs separate blocklist columns; no other control character gets through.
        assert!(
            !out.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{format}: {out:?}"
        );
        // The CSV has counts per category only, no domains.
        assert!(format == "csv" || out.contains("evil"), "{format}: {out:?}");
    }
    let csv = summary(&report, "csv").await;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv.as_bytes());
    for record in reader.records() {
        for cell in &record.unwrap() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "formula cell {cell:?} in {csv}"
            );
        }
    }
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    // A `|` in a hand-made report cannot open a new Markdown column: every row of the
    // censored-domain table keeps its four cells.
    let markdown = summary(&report, "markdown").await;
    let row = markdown
        .lines()
        .find(|l| l.contains("evil"))
        .expect("the censored domain is listed");
    assert!(row.contains("\\|pipe.test"), "{row}");
    assert_eq!(row.replace("\\|", "").matches('|').count(), 5, "{row}");
    let run = run_binary(&args(&["diff", &path_arg(&report), &path_arg(&report)])).await;
    assert!(!run.stdout.contains('\u{1b}'), "{run:#?}");
}

#[tokio::test]
async fn an_io_error_names_the_os_error_once() {
    let run = run_binary(&args(&["summary", "/nonexistent/r.jsonl"])).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{run:#?}"
    );
    let run = run_binary(&args(&[
        "scan",
        "--control",
        "none",
        "--targets",
        "/nonexistent/list.txt",
    ]))
    .await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{run:#?}"
    );
}

#[tokio::test]
async fn warnings_are_plain_text_and_quiet_silences_them() {
    // Resuming a report with a garbled line logs a warning through `tracing`.
    let dir = tempfile::tempdir().unwrap();
    let text = ReportText::new(1)
        .target(target("a.test", None, ok()))
        .raw("garbled line")
        .finished();
    let report = write(dir.path(), "garbled.jsonl", &text);
    let scan = |quiet: bool| {
        let mut argv = vec![
            "scan".to_owned(),
            "--control".into(),
            "none".into(),
            "--tests".into(),
            "dns".into(),
            "--resolver".into(),
            "127.0.0.1:9".into(),
            "--resume".into(),
            path_arg(&report),
            "a.test".into(),
        ];
        if quiet {
            argv.push("-q".into());
        }
        async move {
            let output = tokio::process::Command::new(crate::support::BIN)
                .args(&argv)
                .env_remove("RUST_LOG")
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&output.stderr).into_owned()
        }
    };
    let loud = scan(false).await;
    assert!(loud.contains("could not be parsed"), "{loud}");
    assert!(!loud.contains('\u{1b}'), "ANSI codes on a pipe: {loud:?}");
    let quiet = scan(true).await;
    assert!(!quiet.contains("WARN"), "{quiet}");
    assert!(!quiet.contains('\u{1b}'), "{quiet:?}");
}
