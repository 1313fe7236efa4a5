//! `summary` throughput: a report of `SUMMARY_RECORDS` target records (default 100,000),
//! made from the target records of `reports/examples/lab-demo.jsonl` (real records with
//! every observation, 5-12 KB each) under distinct domains, read back the way
//! `censorprobe summary` reads it. Prints the report size, the time to load it, to
//! summarise it and to render text and CSV, and peak memory. Asserts nothing (timing
//! goals live here, not in tests).
//!
//! Run with `cargo bench --bench summary_throughput`.

use std::io::Write as _;
use std::time::Instant;

use censorprobe::report::read::LoadedReport;
use censorprobe::workflows::summarize::{ReportSummary, SummaryFormat};
use serde_json::Value;

const MIB: f64 = 1024.0 * 1024.0;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time of this process so far (user + system): on a shared machine a better
/// measure of the work than wall time.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    seconds(usage.user_time()) + seconds(usage.system_time())
}

fn main() {
    let records: usize = std::env::var("SUMMARY_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let demo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/examples/lab-demo.jsonl"),
    )
    .expect("the demo report");
    let mut header = None;
    let mut summary = None;
    let mut templates: Vec<Value> = Vec::new();
    for line in demo.lines() {
        let value: Value = serde_json::from_str(line).expect("demo lines are JSON");
        match value["record"].as_str() {
            Some("header") => header = Some(line.to_owned()),
            Some("target") => templates.push(value),
            Some("summary") => summary = Some(value),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("report.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("report file"));
    writeln!(out, "{}", header.expect("a header")).unwrap();
    for i in 0..records {
        let mut record = templates[i % templates.len()].clone();
        let domain = format!("n{i}.{}", record["domain"].as_str().unwrap_or("x.test"));
        record["domain"] = Value::String(domain);
        serde_json::to_writer(&mut out, &record).unwrap();
        out.write_all(b"\n").unwrap();
    }
    // A whole summary record (the demo's, with this report's count): the reader reads
    // summaries typed.
    let mut summary = summary.expect("a summary");
    summary["interrupted"] = Value::Bool(false);
    summary["targets_measured"] = Value::from(records);
    writeln!(out, "{summary}").unwrap();
    out.flush().unwrap();
    drop(out);
    let bytes = std::fs::metadata(&path).unwrap().len();

    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let report = LoadedReport::load(&path).expect("the report loads");
    let load = started.elapsed();
    let load_cpu = cpu_seconds() - cpu_before;
    let started = Instant::now();
    let summary = ReportSummary::of(&report);
    let summarise = started.elapsed();
    let started = Instant::now();
    let text = summary.render(SummaryFormat::Text);
    let csv = summary.render(SummaryFormat::Csv);
    let render = started.elapsed();
    let total = load + summarise + render;
    println!(
        "summary_throughput: {records} records, {:.0} MiB report",
        bytes as f64 / MIB
    );
    println!(
        "  load {:.2} s, {load_cpu:.2} s CPU ({:.0} records/s, {:.0} MiB/s), summarise {:.3} s, render text+csv {:.3} s ({} + {} bytes)",
        load.as_secs_f64(),
        records as f64 / load.as_secs_f64(),
        bytes as f64 / MIB / load.as_secs_f64(),
        summarise.as_secs_f64(),
        render.as_secs_f64(),
        text.len(),
        csv.len()
    );
    println!(
        "  total {:.2} s; {} domains, {} censored; peak RSS {:.0} MiB",
        total.as_secs_f64(),
        summary.all.domains,
        summary.censored.len(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );
}
