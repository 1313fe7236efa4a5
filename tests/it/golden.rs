//! Golden tests: the shipped example report and hand-made cases, pinned through every
//! refactor (issue 10, step A).
//!
//! - Byte round-trip: every line of `reports/examples/lab-demo.jsonl` reads into the
//!   typed record and writes back to the same bytes.
//! - Re-judgement: the classifier, run again on the observations a record stores, gives
//!   the verdicts the record stores (DNS, HTTP, TLS, target blocking), for every target of
//!   lab-demo and for the hand-made cases in `tests/golden/cases/*.json` (the cases the
//!   lab demo lacks). These run without root and without a network.
//! - Workflow snapshots: `summary --format json`, `diff` and `check` on lab-demo, through
//!   the binary, against files in `tests/golden/`.
//!
//! A failure names the record (or case) and every field that differs, with both values.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use censorprobe::asn::AsnTable;
use censorprobe::classify::blockpage::BlockpageSet;
use censorprobe::classify::dns::reconsider_with_web_control;
use censorprobe::classify::dns::{DnsInputs, classify_dns};
use censorprobe::classify::web::{
    assess_http, assess_tls, classify_http_attempt, classify_tls_attempt, skipped_http,
    skipped_tls, target_blocking,
};
use censorprobe::classify::web_control::{refine_http, refine_tls};
use censorprobe::ipclass::ForgedIpList;
use censorprobe::observation::web::{
    AttemptObservations, HttpObservation, PathFacts, TlsObservation,
};
use censorprobe::observation::web_control::{WebControlObservation, WebControlResult};
use censorprobe::observation::{ControlObservation, DnsQueryObservation};
use censorprobe::output::{JsonlSink, OpenReport, RecordSink};
use censorprobe::probe::web::proof::{MAX_PROOF_ADDRESSES, plan_tls_proof};
use censorprobe::record::assessment::{DnsAssessment, EvidenceKind};
use censorprobe::record::assessment::{HttpAssessment, HttpIpResult, TlsAssessment, TlsIpResult};
use censorprobe::record::{DnsSection, Observations, ReportRecord, TargetRecord};
use censorprobe::vocab::Blocking;
use censorprobe::vocab::PoisoningMethod;
use serde::Deserialize;
use serde_json::Value;

use crate::support::{args, repo_path, run_binary};

const LAB_DEMO: &str = "reports/examples/lab-demo.jsonl";

fn lab_demo_text() -> String {
    std::fs::read_to_string(repo_path(LAB_DEMO)).unwrap()
}

// ---------------------------------------------------------------------------------
// A3: byte round-trip.

/// Some text of `s` around byte `at`.
fn around(s: &str, at: usize) -> String {
    let (from, to) = (at.saturating_sub(80).min(s.len()), (at + 80).min(s.len()));
    String::from_utf8_lossy(&s.as_bytes()[from..to]).into_owned()
}

/// Where `written` first differs from `stored` (from the given offsets on), in context.
fn first_difference(stored: &str, written: &str, from: (usize, usize)) -> String {
    let (s, w) = (&stored[from.0..], &written[from.1..]);
    let step = w
        .bytes()
        .zip(s.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(s.len()));
    format!(
        "first difference at byte {} of the line:\n  stored:  …{}\n  written: …{}",
        from.0 + step,
        around(stored, from.0 + step),
        around(written, from.1 + step)
    )
}

/// Every line of lab-demo reads into the typed record and writes back to the same bytes.
/// This pins field names, field order, what is skipped when empty, and every wire word,
/// for every record kind. It needs `serde_json`'s `float_roundtrip` feature: without it
/// the float parser may land one ULP off, and e.g. `"listened_ms":500.95960299999996`
/// would write back as `500.959603` (resume replays records, so that would change reports).
#[test]
fn lab_demo_round_trips_byte_for_byte() {
    let text = lab_demo_text();
    let mut differing = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let record: ReportRecord = serde_json::from_str(line).unwrap();
        let written = serde_json::to_string(&record).unwrap();
        if written != line {
            differing.push(format!(
                "line {}: {}",
                n + 1,
                first_difference(line, &written, (0, 0))
            ));
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
}

// ---------------------------------------------------------------------------------
// Comparing JSON with a path to every difference.

/// Every place where `actual` differs from `expected`, as `path: expected … actual …`.
/// With `subset`, only the keys `expected` gives are compared (an expected `null` also
/// matches an absent key); arrays must have the same length either way.
fn differences(path: &str, expected: &Value, actual: &Value, subset: bool, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, e_value) in e {
                let a_value = a.get(key).unwrap_or(&Value::Null);
                differences(&format!("{path}.{key}"), e_value, a_value, subset, out);
            }
            if !subset {
                for key in a.keys().filter(|k| !e.contains_key(*k)) {
                    out.push(format!("{path}.{key}: not stored, re-judged as {}", a[key]));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e_item, a_item)) in e.iter().zip(a).enumerate() {
                differences(&format!("{path}[{i}]"), e_item, a_item, subset, out);
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("{path}: expected {expected}, re-judged {actual}")),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

// ---------------------------------------------------------------------------------
// Re-judging stored observations the way the scan judges them (src/scan/dns.rs
// probe_dns, with the scan's own rules for when TLS proof is taken; classify::web
// judge_web for the web stages).

/// The DNS observations of one target: what `probe_dns` stores beside the verdict.
struct DnsStored<'a> {
    queries: &'a [DnsQueryObservation],
    control: Option<&'a ControlObservation>,
    tls_proof: &'a [TlsObservation],
    benign_query: Option<&'a DnsQueryObservation>,
}

impl<'a> From<&'a DnsSection> for DnsStored<'a> {
    fn from(section: &'a DnsSection) -> Self {
        DnsStored {
            queries: &section.queries,
            control: section.control.as_ref(),
            tls_proof: &section.tls_proof,
            benign_query: section.benign_query.as_deref(),
        }
    }
}

/// The DNS verdict `probe_dns` reaches from these observations: judged once; when only
/// inconsistency stands against the answer and the TLS stage runs, the addresses not
/// contacted for proof are noted and the proven ones (a stored handshake valid for the
/// name) make it judged again. (The first judgement without proof equals a judgement
/// with an empty proof list, so one call with the proven addresses is the same.)
fn rejudge_dns(stored: &DnsStored<'_>, forged_ips: &ForgedIpList, tls_runs: bool) -> DnsAssessment {
    let proven: Vec<IpAddr> = stored
        .tls_proof
        .iter()
        .filter(|o| o.valid_for_name())
        .map(|o| o.ip)
        .collect();
    let mut inputs = DnsInputs {
        queries: stored.queries,
        control: stored.control,
        forged_ips,
        tls_proven: &[],
        benign_query: stored.benign_query,
    };
    let mut assessment = classify_dns(&inputs);
    let mut proof_skipped = Vec::new();
    if tls_runs && censorprobe::scan::wants_tls_proof(&assessment) {
        let plan = plan_tls_proof(
            &censorprobe::probe::dns_stage::first_reply_ips(stored.queries),
            MAX_PROOF_ADDRESSES,
        );
        proof_skipped = censorprobe::scan::proof_skipped_evidence(&plan, MAX_PROOF_ADDRESSES);
        if !proven.is_empty() {
            inputs.tls_proven = &proven;
            assessment = classify_dns(&inputs);
        }
    } else {
        assert!(
            stored.tls_proof.is_empty(),
            "TLS proof stored where the scan would not have run one"
        );
    }
    assessment.evidence.extend(proof_skipped);
    assessment
}

/// One address's stored HTTP probes, with the response bodies the report leaves out.
fn rejudge_http_attempt(
    observations: AttemptObservations<HttpObservation>,
    path: PathFacts,
    control_name: &str,
    blockpages: &BlockpageSet,
) -> HttpIpResult {
    let mut result = classify_http_attempt(observations, path, control_name, blockpages);
    // As `WebStage::classify`: bodies are dropped once judged.
    let obs = &mut result.observations;
    for o in [
        Some(&mut obs.control),
        Some(&mut obs.test),
        obs.residual.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(r) = o.response.as_mut() {
            r.body_prefix = Vec::new();
        }
    }
    result
}

fn rejudge_http(
    domain: &str,
    stored: &HttpAssessment,
    control_name: &str,
    blockpages: &BlockpageSet,
    helper: Option<&WebControlResult>,
) -> HttpAssessment {
    if let (Some(reason), true) = (&stored.reason, stored.attempts.is_empty()) {
        return skipped_http(domain, reason);
    }
    let results = stored
        .attempts
        .iter()
        .map(|a| {
            let result = rejudge_http_attempt(
                a.observations.clone(),
                a.path.clone(),
                control_name,
                blockpages,
            );
            // As `judge_web_with_control`: each address again with the helper's view.
            match helper {
                Some(helper) => refine_http(result, helper),
                None => result,
            }
        })
        .collect();
    assess_http(domain, results)
}

fn rejudge_tls(
    domain: &str,
    stored: &TlsAssessment,
    control_name: &str,
    helper: Option<&WebControlResult>,
) -> TlsAssessment {
    if let (Some(reason), true) = (&stored.reason, stored.attempts.is_empty()) {
        return skipped_tls(domain, reason);
    }
    let results: Vec<TlsIpResult> = stored
        .attempts
        .iter()
        .map(|a| {
            let result = classify_tls_attempt(a.observations.clone(), a.path.clone(), control_name);
            match helper {
                Some(helper) => refine_tls(result, helper),
                None => result,
            }
        })
        .collect();
    assess_tls(domain, results)
}

/// Every field of one lab-demo record that the classifier does not reproduce.
fn rejudge_record(
    record: &TargetRecord,
    control_name: &str,
    tls_runs: bool,
    blockpages: &BlockpageSet,
) -> Vec<String> {
    let mut out = Vec::new();
    // `options.forged_ips` is 0 in lab-demo: no list was given.
    let forged_ips = ForgedIpList::default();
    let helper = record.web_control.as_ref().and_then(|w| w.result());
    let dns = record.dns.as_ref().map(|section| {
        if section.is_lean() {
            // A lean section kept no observations to judge again: it must be an `ok`
            // name's, and its stored judgement stands for the target summary below.
            if !record.is_entirely_ok() {
                out.push("dns: lean, but the target is not entirely ok".to_owned());
            }
            return section.assessment.clone();
        }
        let mut judged = rejudge_dns(&DnsStored::from(section), &forged_ips, tls_runs);
        // As the scan: the section is reconsidered with the web control's answers.
        if let Some(web_control) = &record.web_control {
            let mut reconsidered = section.clone();
            reconsidered.assessment = judged;
            reconsider_with_web_control(&mut reconsidered, web_control, &AsnTable::empty());
            judged = reconsidered.assessment;
        }
        differences(
            "dns",
            &json(&section.assessment),
            &json(&judged),
            false,
            &mut out,
        );
        judged
    });
    let http = record.http.as_ref().map(|stored| {
        let judged = rejudge_http(&record.domain, stored, control_name, blockpages, helper);
        differences("http", &json(stored), &json(&judged), false, &mut out);
        judged
    });
    let tls = record.tls.as_ref().map(|stored| {
        let judged = rejudge_tls(&record.domain, stored, control_name, helper);
        differences("tls", &json(stored), &json(&judged), false, &mut out);
        judged
    });
    // The target summary from the stored sections, and from the re-judged ones.
    let stored_target = json(&serde_json::json!({
        "blocking": record.blocking, "accessible": record.accessible,
    }));
    let from_stored = target_blocking(
        record.dns.as_ref().map(|d| &d.assessment),
        record.http.as_ref(),
        record.tls.as_ref(),
    );
    differences(
        "target (stored stages)",
        &stored_target,
        &json(&from_stored),
        false,
        &mut out,
    );
    let from_judged = target_blocking(dns.as_ref(), http.as_ref(), tls.as_ref());
    differences(
        "target (re-judged stages)",
        &stored_target,
        &json(&from_judged),
        false,
        &mut out,
    );
    out
}

#[test]
fn lab_demo_verdicts_are_rejudged_identically() {
    assert_rejudged(&lab_demo_text(), 0);
}

/// Re-judges every target of a report (lab-demo, full or rewritten lean): the records
/// with observations give their stored verdicts again; `lean` of them are lean, `ok`.
fn assert_rejudged(text: &str, lean: usize) {
    let mut header = None;
    let mut targets = Vec::new();
    for line in text.lines() {
        match serde_json::from_str(line).unwrap() {
            ReportRecord::Header(h) => header = Some(h),
            ReportRecord::Target(t) => targets.push(*t),
            _ => {}
        }
    }
    let header = header.expect("a header");
    let options = &header.options;
    assert_eq!(options.forged_ips, 0, "re-judged without a forged-IP list");
    assert_eq!(options.blockpages, None, "the built-in fingerprints");
    let control_name = options.control_name.as_str();
    let tls_runs = options.tests.iter().any(|t| t == "tls");
    let blockpages = BlockpageSet::builtin();
    assert_eq!(targets.len(), 30);
    let lean_seen = targets
        .iter()
        .filter(|t| t.dns.as_ref().is_some_and(DnsSection::is_lean))
        .count();
    assert_eq!(lean_seen, lean, "lean records");
    let mut failures = Vec::new();
    for record in &targets {
        let diffs = rejudge_record(record, control_name, tls_runs, &blockpages);
        if !diffs.is_empty() {
            failures.push(format!("{}:\n    {}", record.domain, diffs.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "stored verdicts the classifier does not reproduce:\n  {}",
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------
// Lean records: lab-demo as a scan with the default `--observations` writes it.

/// A writer whose bytes the test reads afterwards.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// lab-demo written again through the JSONL report with `--observations default`, its
/// DNS judged again as a scan judges it now (structured facts: the stored sentences of
/// the full form are produced, not stored).
fn lean_lab_demo() -> String {
    let shared = Shared::default();
    let mut sink = JsonlSink::new(OpenReport::Writer(Box::new(shared.clone())), None)
        .with_observations(Observations::Default);
    let mut tls_runs = false;
    for line in lab_demo_text().lines() {
        match serde_json::from_str(line).unwrap() {
            ReportRecord::Header(mut header) => {
                header.options.observations = Observations::Default;
                tls_runs = header.options.tests.iter().any(|t| t == "tls");
                sink.header(&header).unwrap();
            }
            ReportRecord::Target(mut target) => {
                if let Some(section) = target.dns.as_mut() {
                    section.assessment = rejudge_dns(
                        &DnsStored::from(&*section),
                        &ForgedIpList::default(),
                        tls_runs,
                    );
                    if let Some(web_control) = &target.web_control {
                        reconsider_with_web_control(section, web_control, &AsnTable::empty());
                    }
                }
                sink.target(&target).unwrap();
            }
            ReportRecord::Consensus(consensus) => sink.consensus(&consensus).unwrap(),
            ReportRecord::Summary(summary) => sink.finish(&summary).unwrap(),
        }
    }
    String::from_utf8(shared.0.lock().unwrap().clone()).unwrap()
}

/// lab-demo's targets whose outcome is entirely `ok` (the ones written lean).
const LAB_DEMO_OK: usize = 5;

#[test]
fn lean_lab_demo_leaves_out_only_the_ok_targets_observations() {
    let full = lab_demo_text();
    let lean = lean_lab_demo();
    assert_eq!(full.lines().count(), lean.lines().count());
    let (mut lean_lines, mut full_bytes, mut lean_bytes) = (0, 0, 0);
    for (n, (stored, written)) in full.lines().zip(lean.lines()).enumerate() {
        // Every line reads back and writes back to its bytes.
        let record: ReportRecord = serde_json::from_str(written).unwrap();
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            written,
            "line {}",
            n + 1
        );
        let ReportRecord::Target(target) = record else {
            continue;
        };
        if target.is_entirely_ok() {
            lean_lines += 1;
            full_bytes += stored.len();
            lean_bytes += written.len();
            assert!(target.dns.as_ref().unwrap().is_lean(), "{written}");
            // (The web control's own lookup, kept whole like the web observations the
            // evidence rests on, names its resolver: only the DNS section is looked at.)
            let dns_section = serde_json::from_str::<Value>(written).unwrap()["dns"].to_string();
            for raw in ["\"queries\"", "\"control\":{\"control\"", "\"resolver\""] {
                assert!(!dns_section.contains(raw), "{raw} in {written}");
            }
            // Its DNS facts are structured: no sentence stored, one produced on demand.
            // (A fact of the web control keeps its sentence: it names the helper's
            // addresses or AS, which the record's lean form does not keep otherwise.)
            let line: Value = serde_json::from_str(written).unwrap();
            for (fact, parsed) in line["dns"]["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .zip(&target.dns.as_ref().unwrap().assessment.evidence)
            {
                let of_web_control = matches!(
                    parsed.kind,
                    EvidenceKind::WebControlCommonAddress
                        | EvidenceKind::WebControlSamePrefix
                        | EvidenceKind::WebControlSameAs
                        | EvidenceKind::WebControlTlsProof
                        // ...and so does the note of what TLS proof did not contact.
                        | EvidenceKind::TlsProofSkipped
                );
                assert_eq!(fact.get("detail").is_some(), of_web_control, "{fact}");
            }
            let dns = &target.dns.as_ref().unwrap().assessment;
            assert!(dns.evidence.iter().all(|e| !e.describe().is_empty()));
        } else {
            assert_eq!(stored, written, "line {}: not ok, kept whole", n + 1);
        }
    }
    println!("lab-demo ok targets: {full_bytes} bytes full, {lean_bytes} lean");
    assert_eq!(lean_lines, LAB_DEMO_OK);
    assert!(lean_bytes < full_bytes);
}

#[test]
fn lean_lab_demo_verdicts_are_rejudged_or_ok() {
    assert_rejudged(&lean_lab_demo(), LAB_DEMO_OK);
}

/// `summary`, `diff` and `check` read a lean report as the full one it came from.
#[tokio::test]
async fn workflows_read_the_lean_lab_demo_as_the_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let full = repo_path(LAB_DEMO);
    let lean = dir.path().join("lean.jsonl");
    std::fs::write(&lean, lean_lab_demo()).unwrap();
    let expect = repo_path("tests/golden/lab-demo.expect.toml");
    let (full_arg, lean_arg) = (full.to_str().unwrap(), lean.to_str().unwrap());
    let output = |report: &str| {
        let report = report.to_owned();
        let expect = expect.to_str().unwrap().to_owned();
        async move {
            let summary = run_binary(&args(&["summary", &report, "--format", "json"])).await;
            let check =
                run_binary(&args(&["check", "--expect", &expect, "--report", &report])).await;
            let mask = |t: &str| t.replace(&report, "<report>");
            (
                summary.status.code(),
                mask(&summary.stdout),
                check.status.code(),
                mask(&check.stdout),
                mask(&check.stderr),
            )
        }
    };
    let (from_full, from_lean) = (output(full_arg).await, output(lean_arg).await);
    assert_eq!(from_full.0, Some(0));
    assert_eq!(from_lean, from_full);
    let diff = run_binary(&args(&["diff", "--json", full_arg, lean_arg])).await;
    assert_eq!(diff.status.code(), Some(0), "no change: {diff:#?}");
}

// ---------------------------------------------------------------------------------
// Hand-made cases: observations plus the verdicts they must give.

/// One case file (`tests/golden/cases/*.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case is about, for the reader.
    about: String,
    #[serde(default = "lab_control_name")]
    control_name: String,
    /// The `--forged-ips` list, one address or network a line.
    #[serde(default)]
    forged_ips: Vec<String>,
    /// Whether the scan ran the TLS stage (TLS as proof needs it).
    #[serde(default)]
    tls_runs: bool,
    #[serde(default)]
    dns: Option<DnsCase>,
    #[serde(default)]
    http: Option<WebCase>,
    #[serde(default)]
    tls: Option<WebCase>,
    /// What a web control saw (`scan --web-control`): the DNS section is reconsidered
    /// and each address judged again with it, as the scan does.
    #[serde(default)]
    web_control: Option<WebControlObservation>,
    expect: Expected,
}

fn lab_control_name() -> String {
    "control.lab.example".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsCase {
    queries: Vec<DnsQueryObservation>,
    #[serde(default)]
    control: Option<ControlObservation>,
    #[serde(default)]
    tls_proof: Vec<TlsObservation>,
    #[serde(default)]
    benign_query: Option<DnsQueryObservation>,
}

/// A web stage's observations: skipped with a reason, or one run per address. HTTP
/// responses may carry a `body` (text), which the report never stores: the harness
/// puts it back where the classifier reads it (`body_prefix`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebCase {
    #[serde(default)]
    skipped: Option<String>,
    #[serde(default)]
    runs: Vec<RunCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunCase {
    observations: Value,
    path: PathFacts,
}

/// The expected verdicts: each given key must equal the re-judged value (keys not
/// given are not compared; `null` means absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    #[serde(default)]
    dns: Option<Value>,
    #[serde(default)]
    http: Option<Value>,
    #[serde(default)]
    tls: Option<Value>,
    blocking: Blocking,
    accessible: Option<bool>,
}

/// The HTTP observations of a run, with any `body` of a response restored.
fn http_observations(value: &Value) -> AttemptObservations<HttpObservation> {
    let mut observations: AttemptObservations<HttpObservation> =
        serde_json::from_value(value.clone()).expect("HTTP observations");
    let body = |role: &str| -> Option<Vec<u8>> {
        value[role]["response"]["body"]
            .as_str()
            .map(|b| b.as_bytes().to_vec())
    };
    for (role, obs) in [
        ("control", Some(&mut observations.control)),
        ("test", Some(&mut observations.test)),
        ("residual", observations.residual.as_mut()),
    ] {
        if let (Some(obs), Some(body)) = (obs, body(role)) {
            obs.response
                .as_mut()
                .unwrap_or_else(|| panic!("a body without a response ({role})"))
                .body_prefix = body;
        }
    }
    observations
}

/// Every difference between a case's expectations and the classifier's verdicts.
fn run_case(case: &Case, domain: &str) -> Vec<String> {
    let mut out = Vec::new();
    let forged_ips = ForgedIpList::parse(&case.forged_ips.join("\n")).expect("a forged-IP list");
    let blockpages = BlockpageSet::builtin();
    let dns = case.dns.as_ref().map(|d| {
        let stored = DnsStored {
            queries: &d.queries,
            control: d.control.as_ref(),
            tls_proof: &d.tls_proof,
            benign_query: d.benign_query.as_ref(),
        };
        let assessment = rejudge_dns(&stored, &forged_ips, case.tls_runs);
        match &case.web_control {
            Some(web_control) => {
                let mut section = DnsSection {
                    assessment,
                    resolver: d.queries[0].server,
                    sink: None,
                    queries: d.queries.clone(),
                    control: d.control.clone(),
                    tls_proof: d.tls_proof.clone(),
                    benign_query: d.benign_query.clone().map(std::sync::Arc::new),
                };
                reconsider_with_web_control(&mut section, web_control, &AsnTable::empty());
                section.assessment
            }
            None => assessment,
        }
    });
    let helper = case
        .web_control
        .as_ref()
        .and_then(WebControlObservation::result);
    let http = case.http.as_ref().map(|web| match &web.skipped {
        Some(reason) => skipped_http(domain, reason),
        None => assess_http(
            domain,
            web.runs
                .iter()
                .map(|run| {
                    let judged = rejudge_http_attempt(
                        http_observations(&run.observations),
                        run.path.clone(),
                        &case.control_name,
                        &blockpages,
                    );
                    match helper {
                        Some(helper) => refine_http(judged, helper),
                        None => judged,
                    }
                })
                .collect(),
        ),
    });
    let tls = case.tls.as_ref().map(|web| match &web.skipped {
        Some(reason) => skipped_tls(domain, reason),
        None => assess_tls(
            domain,
            web.runs
                .iter()
                .map(|run| {
                    let judged = classify_tls_attempt(
                        serde_json::from_value(run.observations.clone()).expect("TLS observations"),
                        run.path.clone(),
                        &case.control_name,
                    );
                    match helper {
                        Some(helper) => refine_tls(judged, helper),
                        None => judged,
                    }
                })
                .collect(),
        ),
    });
    for (stage, expected, judged) in [
        ("dns", &case.expect.dns, dns.as_ref().map(json)),
        ("http", &case.expect.http, http.as_ref().map(json)),
        ("tls", &case.expect.tls, tls.as_ref().map(json)),
    ] {
        match (expected, judged) {
            (Some(expected), Some(judged)) => {
                differences(stage, expected, &judged, true, &mut out);
            }
            (None, None) => {}
            (Some(_), None) => out.push(format!(
                "{stage}: expected, but the case has no observations"
            )),
            (None, Some(_)) => out.push(format!("{stage}: observed, but nothing is expected")),
        }
    }
    let target = target_blocking(dns.as_ref(), http.as_ref(), tls.as_ref());
    differences(
        "target",
        &json(&serde_json::json!({
            "blocking": case.expect.blocking, "accessible": case.expect.accessible,
        })),
        &json(&target),
        false,
        &mut out,
    );
    out
}

fn case_files() -> Vec<PathBuf> {
    let dir = repo_path("tests/golden/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn case_name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

fn load_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("case {}: does not read: {e}", case_name(path)))
}

/// The cases the example report lacks; each file name says which.
const CASES: [&str; 12] = [
    "web-control-tcp-ip-blocking",
    "web-control-down",
    "web-control-http-diff",
    "web-control-geo-dns",
    "blockpage",
    "residual",
    "selective-silence-benign",
    "tls-proof-inconsistent",
    "cert-invalid",
    "forged-ip-list",
    "dns-injection",
    "bogon",
];

#[test]
fn hand_made_cases_give_their_verdicts() {
    let files = case_files();
    let names: Vec<String> = files.iter().map(|p| case_name(p)).collect();
    for wanted in CASES {
        assert!(
            names.iter().any(|n| n == wanted),
            "no case {wanted}: {names:?}"
        );
    }
    let mut failures = Vec::new();
    for path in &files {
        let case = load_case(path);
        assert!(!case.about.is_empty());
        let domain = case_domain(&case).unwrap_or_else(|| case_name(path));
        let diffs = run_case(&case, &domain);
        if !diffs.is_empty() {
            failures.push(format!(
                "case {} ({}):\n    {}",
                case_name(path),
                case.about,
                diffs.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n  "));
}

/// The tested name: the DNS queries' name, else the HTTP test's Host.
fn case_domain(case: &Case) -> Option<String> {
    case.dns
        .as_ref()
        .and_then(|d| d.queries.first())
        .map(|q| q.qname.clone())
        .or_else(|| {
            case.http
                .as_ref()
                .and_then(|w| w.runs.first())
                .and_then(|r| r.observations["test"]["host"].as_str())
                .map(str::to_owned)
        })
}

// ---------------------------------------------------------------------------------
// A5: workflow snapshots of lab-demo through the binary.

/// Compares `actual` with the snapshot file; `UPDATE_GOLDEN=1` rewrites the file
/// instead (review the diff before committing it: the output format is the contract).
fn assert_snapshot(file: &str, actual: &str) {
    let path = repo_path(&format!("tests/golden/{file}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "snapshot {}: {e} (UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "output differs from the snapshot {file} from line {}:\n  snapshot: {:?}\n  output:   {:?}\n\
             whole output:\n{actual}",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line),
        );
    }
}

/// Replaces the (machine-dependent) paths the output names.
fn mask_paths(text: &str, paths: &[(&Path, &str)]) -> String {
    paths.iter().fold(text.to_owned(), |text, (path, name)| {
        text.replace(path.to_str().unwrap(), name)
    })
}

/// Replaces the value of every XML attribute `name="…"` (a duration, say) with `*`.
fn mask_attribute(xml: &str, name: &str) -> String {
    let opening = format!(" {name}=\"");
    let mut out = String::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&opening) {
        let value_start = at + opening.len();
        let value_len = rest[value_start..].find('"').expect("a closing quote");
        out.push_str(&rest[..value_start]);
        out.push('*');
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn summary_json_of_lab_demo_matches_the_snapshot() {
    let report = repo_path(LAB_DEMO);
    let run = run_binary(&args(&[
        "summary",
        report.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .await;
    assert_eq!(run.status.code(), Some(0), "{run:#?}");
    let masked = mask_paths(&run.stdout, &[(&report, "<lab-demo.jsonl>")]);
    assert!(masked.contains("\"<lab-demo.jsonl>\""), "{masked}");
    assert_snapshot("lab-demo.summary.json", &masked);
}

/// lab-demo with two records edited: `open.example` now DNS-poisoned (newly blocked),
/// `www.video.example` now clean over HTTP (newly unblocked).
fn edited_lab_demo() -> String {
    let mut lines = Vec::new();
    let mut edited = 0;
    for line in lab_demo_text().lines() {
        let mut record: ReportRecord = serde_json::from_str(line).unwrap();
        if let ReportRecord::Target(target) = &mut record {
            match target.domain.as_str() {
                "open.example" => {
                    let dns = &mut target.dns.as_mut().unwrap().assessment;
                    dns.verdict = censorprobe::vocab::DnsVerdict::DnsPoisoning;
                    dns.method = Some(PoisoningMethod::Inconsistent);
                    dns.methods = vec![PoisoningMethod::Inconsistent];
                    dns.forged_ips = vec!["198.19.250.1".parse().unwrap()];
                    target.blocking = Blocking::At(censorprobe::vocab::BlockingLayer::Dns);
                    target.accessible = Some(false);
                    edited += 1;
                }
                "www.video.example" => {
                    let http = target.http.as_mut().unwrap();
                    http.verdict = censorprobe::vocab::HttpVerdict::Ok;
                    http.stage = None;
                    target.blocking = Blocking::No;
                    target.accessible = Some(true);
                    edited += 1;
                }
                _ => {}
            }
        }
        lines.push(serde_json::to_string(&record).unwrap());
    }
    assert_eq!(edited, 2);
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn diff_of_lab_demo_against_an_edited_copy_matches_the_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let old = repo_path(LAB_DEMO);
    let new = dir.path().join("edited.jsonl");
    std::fs::write(&new, edited_lab_demo()).unwrap();
    let paths = [
        (old.as_path(), "<lab-demo.jsonl>"),
        (new.as_path(), "<edited.jsonl>"),
    ];
    let (old_arg, new_arg) = (old.to_str().unwrap(), new.to_str().unwrap());

    let run = run_binary(&args(&["diff", old_arg, new_arg])).await;
    assert_eq!(run.status.code(), Some(1), "changes: {run:#?}");
    assert_snapshot("lab-demo.diff.txt", &mask_paths(&run.stdout, &paths));

    let run = run_binary(&args(&["diff", "--json", old_arg, new_arg])).await;
    assert_eq!(run.status.code(), Some(1), "changes: {run:#?}");
    assert_snapshot("lab-demo.diff.json", &mask_paths(&run.stdout, &paths));

    // Against itself: nothing changed.
    let run = run_binary(&args(&["diff", "--json", old_arg, old_arg])).await;
    assert_eq!(run.status.code(), Some(0), "no change: {run:#?}");
}

#[tokio::test]
async fn check_of_lab_demo_matches_the_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let report = repo_path(LAB_DEMO);
    let expect = repo_path("tests/golden/lab-demo.expect.toml");
    let junit = dir.path().join("check.xml");
    let markdown = dir.path().join("check.md");
    let run = run_binary(&args(&[
        "check",
        "--expect",
        expect.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--markdown",
        markdown.to_str().unwrap(),
    ]))
    .await;
    // Some expectations are written to fail, so the output shows both kinds.
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    let paths = [
        (report.as_path(), "<lab-demo.jsonl>"),
        (expect.as_path(), "<lab-demo.expect.toml>"),
    ];
    let output = format!(
        "--- stdout\n{}--- stderr\n{}",
        mask_paths(&run.stdout, &paths),
        mask_paths(&run.stderr, &paths)
    );
    assert_snapshot("lab-demo.check.txt", &output);
    let markdown = std::fs::read_to_string(&markdown).unwrap();
    assert_snapshot("lab-demo.check.md", &mask_paths(&markdown, &paths));
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(
        junit.contains(" time=\""),
        "JUnit carries the run time: {junit}"
    );
    assert_snapshot(
        "lab-demo.check.xml",
        &mask_attribute(&mask_paths(&junit, &paths), "time"),
    );
}
