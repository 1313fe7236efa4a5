//! A tolerant reader of JSONL reports, plain or compressed (`.zst`, `.gz`: see
//! [`crate::compress`]).
//!
//! Every complete line counts; a line that is not JSON (a scan killed mid-write, a
//! disk that filled up, an editor's stray change) is counted and reported with its
//! number, never fatal. A report without a summary record (a scan killed mid-way) reads
//! like any other. Records of a type this version does not know are counted apart.
//!
//! Memory is bounded: a line longer than [`MAX_RECORD_BYTES`] is skipped (and counted)
//! without being held in memory. No line is built as a JSON tree: the record type is
//! read first (borrowed from the line), then the typed record of that type straight
//! from the line ([`ReportLine`]); a target record as whatever projection the caller
//! asks for, by default the tolerant [`RecordHead`], which skips the fields it does not
//! name without building them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::outcome::{RecordHead, TargetOutcome};
use crate::compress::open_report_reader;
use crate::lines::read_line_bounded;
use crate::record::consensus::ConsensusRecord;
use crate::record::{HeaderRecord, SummaryRecord};

/// Longest line read as a record. Real target records are kilobytes (every DNS reply and
/// connection observation included); a longer line is damage, skipped and counted.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// Why a report could not be read at all (a damaged line is no error: it is counted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("cannot read report {path}")]
    ReportUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: no target record ({lines} non-empty line(s), {unparsed} could not be parsed): not a censorprobe report, or a scan that measured nothing"
    )]
    NoTargetRecords {
        path: PathBuf,
        lines: usize,
        unparsed: usize,
    },
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnparsedLine {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// What reading a report came across, besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Non-empty lines read.
    pub lines: usize,
    /// Lines that are censorprobe records (of a known or unknown type).
    pub records: usize,
    pub unparsed: Vec<UnparsedLine>,
    /// Records of a type this version does not know, per type.
    pub unknown_records: BTreeMap<String, usize>,
    /// Bytes up to and including the last newline (of the decompressed stream, for a
    /// compressed report).
    pub complete_len: u64,
    /// The file's last line had no newline: `Some(true)` if it parsed anyway,
    /// `Some(false)` if it is a fragment (a write cut short).
    pub unterminated_tail: Option<bool>,
}

impl ReadStats {
    /// One line for stderr when something could not be read, e.g.
    /// `2 lines could not be parsed (line 7: EOF while parsing...; line 9: ...)`.
    pub fn warning(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.unparsed.is_empty() {
            let n = self.unparsed.len();
            let first: Vec<String> = self
                .unparsed
                .iter()
                .take(3)
                .map(|u| format!("line {}: {}", u.line, u.reason))
                .collect();
            parts.push(format!(
                "{n} line{} could not be parsed ({}{})",
                if n == 1 { "" } else { "s" },
                first.join("; "),
                if n > 3 { "; ..." } else { "" }
            ));
        }
        for (kind, n) in &self.unknown_records {
            parts.push(format!("{n} record(s) of unknown type {kind:?} ignored"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// One record of a report, typed. A target record is read as `T`: the tolerant
/// projection [`RecordHead`] by default, or the full [`crate::record::TargetRecord`]
/// for a reader that needs every observation (resume's summary replay).
#[derive(Debug)]
pub enum ReportLine<T = RecordHead> {
    Header(Box<HeaderRecord>),
    /// A target record (one attempt, with `--repeat`).
    Target(Box<T>),
    Consensus(Box<ConsensusRecord>),
    Summary(Box<SummaryRecord>),
}

/// The `record` field of a line, found without building the rest.
#[derive(Deserialize)]
struct RecordKind<'a> {
    #[serde(borrow, default)]
    record: Option<Cow<'a, str>>,
}

/// Reads every line of the report at `path`, calling `visit` with its 1-based number and
/// record. `visit` may reject a record (e.g. a target whose fields are unusable): the
/// line is then counted as unparsed with that reason.
pub fn read_lines<T: DeserializeOwned>(
    path: &Path,
    visit: impl FnMut(usize, ReportLine<T>) -> Result<(), String>,
) -> Result<ReadStats, ReadError> {
    let unreadable = |source| ReadError::ReportUnreadable {
        path: path.to_owned(),
        source,
    };
    // Plain, zstd or gzip, found by the file's first bytes.
    let reader = open_report_reader(path).map_err(unreadable)?;
    read_from(reader, visit).map_err(unreadable)
}

/// Reads every line of a report held in memory, as [`read_lines`] does a file.
pub fn read_str<T: DeserializeOwned>(
    text: &str,
    visit: impl FnMut(usize, ReportLine<T>) -> Result<(), String>,
) -> ReadStats {
    read_from(text.as_bytes(), visit).expect("reading from memory cannot fail")
}

fn read_from<T: DeserializeOwned>(
    mut reader: impl BufRead,
    mut visit: impl FnMut(usize, ReportLine<T>) -> Result<(), String>,
) -> io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let length = read_line_bounded(&mut reader, &mut buf, MAX_RECORD_BYTES)?;
        if length.at_end() {
            break;
        }
        number += 1;
        if length.terminated {
            stats.complete_len += length.total;
        }
        let line = buf.trim_ascii();
        if line.is_empty() && !length.truncated {
            continue;
        }
        stats.lines += 1;
        let parsed = if length.truncated {
            Err(format!(
                "line is {} bytes long, more than the {} MiB a record may have: skipped",
                length.total,
                MAX_RECORD_BYTES >> 20
            ))
        } else {
            parse_line(line, &mut stats).and_then(|record| match record {
                Some(record) => visit(number, record),
                None => Ok(()),
            })
        };
        if !length.terminated {
            stats.unterminated_tail = Some(parsed.is_ok());
        }
        if let Err(reason) = parsed {
            stats.unparsed.push(UnparsedLine {
                line: number,
                reason: if length.terminated {
                    reason
                } else {
                    format!("incomplete last line ({reason})")
                },
            });
        }
    }
    Ok(stats)
}

/// The record type of a line as censorprobe writes it (`{"record":"target",...`), found
/// without a JSON pass; anything else goes through the parser. The record itself is
/// parsed in full afterwards, so a line that only looks right is still refused.
fn written_kind(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(br#"{"record":""#)?;
    let end = memchr::memchr(b'"', rest)?;
    let kind = &rest[..end];
    if kind.contains(&b'\\') || rest.get(end + 1) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(kind).ok()
}

/// The typed record of `kind` on `line`, or why it cannot be read.
fn typed<T: DeserializeOwned>(line: &[u8], kind: &str) -> Result<Box<T>, String> {
    serde_json::from_slice(line).map_err(|e| format!("{kind} record: {e}"))
}

fn parse_line<T: DeserializeOwned>(
    line: &[u8],
    stats: &mut ReadStats,
) -> Result<Option<ReportLine<T>>, String> {
    let kind = if let Some(kind) = written_kind(line) {
        Cow::Borrowed(kind)
    } else {
        let kind: RecordKind<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        kind.record
            .ok_or("not a report record (no \"record\" field)")?
    };
    stats.records += 1;
    Ok(Some(match kind.as_ref() {
        "header" => ReportLine::Header(typed(line, "header")?),
        "target" => ReportLine::Target(typed(line, "target")?),
        "summary" => ReportLine::Summary(typed(line, "summary")?),
        "consensus" => ReportLine::Consensus(typed(line, "consensus")?),
        other => {
            *stats.unknown_records.entry(other.to_owned()).or_default() += 1;
            return Ok(None);
        }
    }))
}

/// A report reduced to one outcome per domain, for check, diff and summary.
#[derive(Debug, Clone)]
pub struct LoadedReport {
    pub path: PathBuf,
    pub headers: Vec<HeaderRecord>,
    /// The last summary record, absent when the scan was killed.
    pub summary: Option<SummaryRecord>,
    /// One per domain, in first-seen order: the consensus of its attempts when the
    /// report has one, else its latest record. Forged addresses are those of every record.
    pub outcomes: Vec<TargetOutcome>,
    pub target_records: usize,
    pub consensus_records: usize,
    pub stats: ReadStats,
    index: HashMap<String, usize>,
}

impl LoadedReport {
    pub fn load(path: &Path) -> Result<LoadedReport, ReadError> {
        let mut report = LoadedReport {
            path: path.to_owned(),
            headers: Vec::new(),
            summary: None,
            outcomes: Vec::new(),
            target_records: 0,
            consensus_records: 0,
            stats: ReadStats::default(),
            index: HashMap::new(),
        };
        let mut has_consensus: HashMap<String, bool> = HashMap::new();
        let stats = read_lines(path, |_, line: ReportLine| {
            match line {
                ReportLine::Header(header) => report.headers.push(*header),
                ReportLine::Summary(summary) => report.summary = Some(*summary),
                ReportLine::Target(head) => {
                    let outcome = TargetOutcome::from(*head);
                    report.target_records += 1;
                    let consensus = has_consensus.get(&outcome.domain).copied();
                    report.merge(outcome, consensus != Some(true));
                }
                ReportLine::Consensus(consensus) => {
                    report.consensus_records += 1;
                    has_consensus.insert(consensus.domain.clone(), true);
                    report.merge(consensus.outcome(), true);
                }
            }
            Ok(())
        })?;
        report.stats = stats;
        Ok(report)
    }

    /// Records `outcome` for its domain; `replace` says whether it supersedes the one
    /// kept so far (a later attempt never supersedes a consensus).
    fn merge(&mut self, mut outcome: TargetOutcome, replace: bool) {
        let Some(&at) = self.index.get(&outcome.domain) else {
            self.index
                .insert(outcome.domain.clone(), self.outcomes.len());
            self.outcomes.push(outcome);
            return;
        };
        let kept = &mut self.outcomes[at];
        let mut forged = std::mem::take(&mut kept.forged_ips);
        for ip in outcome.forged_ips.drain(..) {
            if !forged.contains(&ip) {
                forged.push(ip);
            }
        }
        if replace {
            *kept = outcome;
        }
        kept.forged_ips = forged;
    }

    pub fn outcome(&self, domain: &str) -> Option<&TargetOutcome> {
        self.index.get(domain).map(|&at| &self.outcomes[at])
    }

    /// Whether the scan ran to the end: a summary record that says it was not interrupted.
    pub fn complete(&self) -> bool {
        self.summary.as_ref().is_some_and(|s| !s.interrupted)
    }

    /// Refuses a report with no target record: not a censorprobe report (binary, empty,
    /// another format), or a scan that measured nothing, where a summary or a diff would
    /// say "nothing" as if it were a finding.
    pub fn require_targets(&self) -> Result<(), ReadError> {
        if self.target_records + self.consensus_records > 0 {
            return Ok(());
        }
        Err(ReadError::NoTargetRecords {
            path: self.path.clone(),
            lines: self.stats.lines,
            unparsed: self.stats.unparsed.len(),
        })
    }

    /// The line for stderr when something could not be read, or the scan was cut short.
    pub fn warning(&self) -> Option<String> {
        let mut parts: Vec<String> = self.stats.warning().into_iter().collect();
        if self.summary.is_none() && self.target_records > 0 {
            parts.push("no summary record (the scan did not finish)".to_owned());
        }
        (!parts.is_empty()).then(|| format!("{}: {}", self.path.display(), parts.join(", ")))
    }
}

impl fmt::Display for UnparsedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// A directory of reports that could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read directory {}: {source}", path.display())]
pub struct ListReportsError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Whether a file in a searched directory is a report: `*.jsonl`, `*.jsonl.zst`,
/// `*.jsonl.gz` (an OONI export, `*.ooni.jsonl`, is not).
fn is_report_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    let name = name
        .strip_suffix(".zst")
        .or_else(|| name.strip_suffix(".gz"))
        .unwrap_or(&name);
    let extension = Path::new(name).extension();
    extension.is_some_and(|e| e == "jsonl") && !name.ends_with(".ooni.jsonl")
}

/// The report files named by `inputs` (for `history` and `export`): files as given,
/// directories searched recursively (in name order).
pub fn report_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ListReportsError> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(input.clone());
            continue;
        }
        let mut found = Vec::new();
        stack.push(input.clone());
        while let Some(dir) = stack.pop() {
            let unreadable = |source| ListReportsError {
                path: dir.clone(),
                source,
            };
            let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(unreadable)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(unreadable)?;
            for entry in entries {
                if entry.is_dir() {
                    stack.push(entry);
                } else if is_report_name(&entry) {
                    found.push(entry);
                }
            }
        }
        // In path order, so that runs are reproducible (the history itself does not
        // depend on the order).
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Runs `history`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Blocking;

    const DEMO: &str = include_str!("../../reports/examples/lab-demo.jsonl");

    /// A real header (the demo report's).
    fn header() -> &'static str {
        DEMO.lines().next().unwrap()
    }

    /// A real summary of a scan that finished (the demo report's).
    fn summary() -> &'static str {
        DEMO.lines().last().unwrap()
    }

    fn target(domain: &str, verdict: &str) -> String {
        format!(r#"{{"record":"target","domain":"{domain}","dns":{{"verdict":"{verdict}"}}}}"#)
    }

    #[test]
    fn a_killed_scan_reads_every_complete_line() {
        let header = header();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.jsonl");
        let text = format!(
            "{header}\n{}\n{}\n{{\"record\":\"target\",\"domain\":\"c.te",
            target("a.test", "ok"),
            target("b.test", "dns_poisoning")
        );
        std::fs::write(&path, &text).unwrap();
        let report = LoadedReport::load(&path).unwrap();
        assert_eq!(report.target_records, 2);
        assert_eq!(report.outcomes.len(), 2);
        assert!(report.summary.is_none());
        assert!(!report.complete());
        assert_eq!(report.stats.unparsed.len(), 1);
        assert_eq!(report.stats.unparsed[0].line, 4);
        assert_eq!(report.stats.unterminated_tail, Some(false));
        let complete = text.rfind('\n').unwrap() + 1;
        assert_eq!(report.stats.complete_len, complete as u64);
        let warning = report.warning().unwrap();
        assert!(warning.contains("1 line could not be parsed"), "{warning}");
        assert!(warning.contains("line 4"), "{warning}");
        assert!(warning.contains("no summary record"), "{warning}");
    }

    #[test]
    fn garbled_lines_in_the_middle_and_unknown_records() {
        let header = header();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbled.jsonl");
        let mut bytes = format!("{header}\n{}\n", target("a.test", "ok")).into_bytes();
        bytes.extend_from_slice(b"\xff\xfe not json\n");
        bytes.extend_from_slice(b"[1,2,3]\n\n");
        bytes.extend_from_slice(br#"{"record":"capture","x":1}"#);
        bytes.push(b'\n');
        bytes.extend_from_slice(br#"{"record":"target","dns":{"verdict":"ok"}}"#);
        bytes.push(b'\n');
        bytes.extend_from_slice(format!("{}\n", target("b.test", "timeout")).as_bytes());
        bytes.extend_from_slice(summary().as_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let report = LoadedReport::load(&path).unwrap();
        assert_eq!(report.target_records, 2);
        let lines: Vec<usize> = report.stats.unparsed.iter().map(|u| u.line).collect();
        assert_eq!(lines, [3, 4, 7], "{:?}", report.stats.unparsed);
        assert_eq!(report.stats.unknown_records["capture"], 1);
        assert_eq!(
            report.stats.unterminated_tail,
            Some(true),
            "a complete last line without newline counts"
        );
        assert!(report.complete());
        assert!(
            report
                .warning()
                .unwrap()
                .contains("3 lines could not be parsed")
        );
    }

    #[test]
    fn latest_record_or_consensus_per_domain() {
        let header = header();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repeat.jsonl");
        let consensus = ConsensusRecord::of(&[
            TargetOutcome::from_value(&serde_json::json!({"domain": "a.test", "dns": {"verdict": "dns_poisoning", "forged_ips": ["10.10.34.34"]}})).unwrap(),
            TargetOutcome::from_value(&serde_json::json!({"domain": "a.test", "dns": {"verdict": "dns_poisoning", "forged_ips": ["10.10.34.35"]}})).unwrap(),
        ]);
        let mut consensus_line = serde_json::to_value(&consensus).unwrap();
        consensus_line["record"] = "consensus".into();
        let text = format!(
            "{header}\n{}\n{}\n{consensus_line}\n{}\n{}\n",
            target("a.test", "dns_poisoning"),
            target("a.test", "dns_poisoning"),
            target("b.test", "ok"),
            target("b.test", "timeout"),
        );
        std::fs::write(&path, text).unwrap();
        let report = LoadedReport::load(&path).unwrap();
        assert_eq!(report.target_records, 4);
        assert_eq!(report.consensus_records, 1);
        let a = report.outcome("a.test").unwrap();
        assert_eq!(a.attempts, 2);
        assert_eq!(a.blocking, Blocking::At(crate::vocab::BlockingLayer::Dns));
        assert_eq!(a.forged_ips, ["10.10.34.34", "10.10.34.35"]);
        let b = report.outcome("b.test").unwrap();
        assert_eq!(
            b.stages.dns.unwrap().verdict.verdict(),
            Some(crate::vocab::DnsVerdict::Timeout),
            "the latest record"
        );
        assert!(report.stats.unparsed.is_empty());
    }

    #[test]
    fn the_written_record_type_is_found_without_parsing_and_checked_after() {
        let header = header();
        assert_eq!(
            written_kind(br#"{"record":"target","domain":"a"}"#),
            Some("target")
        );
        assert_eq!(written_kind(br#"{"domain":"a","record":"target"}"#), None);
        assert_eq!(written_kind(br#"{"record":"tar\"get","x":1}"#), None);
        assert_eq!(written_kind(br#"{"record":"target"}"#), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            format!(
                "{header}\n{{\"record\":\"target\",garbage\n{{\"domain\":\"b.test\",\"record\":\"target\"}}\n"
            ),
        )
        .unwrap();
        let report = LoadedReport::load(&path).unwrap();
        assert_eq!(report.target_records, 1);
        assert_eq!(report.outcomes[0].domain, "b.test");
        assert_eq!(report.stats.unparsed.len(), 1);
        assert_eq!(report.stats.unparsed[0].line, 2);
    }

    #[test]
    fn a_report_without_target_records_is_refused() {
        let header = header();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, format!("{header}\nnot json\n")).unwrap();
        let report = LoadedReport::load(&path).unwrap();
        let err = report.require_targets().unwrap_err().to_string();
        assert!(
            err.contains("no target record (2 non-empty line(s), 1 could not be parsed)"),
            "{err}"
        );
        std::fs::write(&path, format!("{header}\n{}\n", target("a.test", "ok"))).unwrap();
        LoadedReport::load(&path)
            .unwrap()
            .require_targets()
            .unwrap();
    }

    #[test]
    fn every_demo_record_reads_as_the_projection_of_its_typed_record() {
        use crate::record::ReportRecord;
        let mut heads = Vec::new();
        let (mut headers, mut summaries) = (0, Vec::new());
        let stats = read_str(DEMO, |_, line: ReportLine| {
            match line {
                ReportLine::Target(head) => heads.push(*head),
                ReportLine::Header(header) => {
                    assert_eq!(header.tool, "censorprobe");
                    headers += 1;
                }
                ReportLine::Summary(summary) => summaries.push(summary.interrupted),
                ReportLine::Consensus(_) => {}
            }
            Ok(())
        });
        assert!(stats.unparsed.is_empty(), "{:?}", stats.unparsed);
        assert_eq!((stats.lines, stats.records), (32, 32));
        assert_eq!((headers, summaries), (1, vec![false]));
        let typed: Vec<RecordHead> = DEMO
            .lines()
            .filter_map(|line| match serde_json::from_str(line).unwrap() {
                ReportRecord::Target(record) => Some(RecordHead::from(&*record)),
                _ => None,
            })
            .collect();
        assert_eq!(typed.len(), 30);
        assert_eq!(heads, typed);
    }

    #[test]
    fn absent_and_null_blocking_stay_apart() {
        use crate::report::outcome::Field;
        let text = [
            r#"{"record":"target","domain":"a.test","dns":{"verdict":"ok"}}"#,
            r#"{"record":"target","domain":"b.test","dns":{"verdict":"ok"},"blocking":null,"accessible":null}"#,
        ]
        .join("\n");
        let mut heads = Vec::new();
        read_str(&text, |_, line: ReportLine| {
            if let ReportLine::Target(head) = line {
                heads.push(*head);
            }
            Ok(())
        });
        assert_eq!(heads[0].blocking, Field::Absent);
        assert_eq!(heads[0].accessible, Field::Absent);
        assert_eq!(heads[1].blocking, Field::Present(Blocking::Inconclusive));
        assert_eq!(heads[1].accessible, Field::Present(None));
    }

    #[test]
    fn headers_and_summaries_are_read_typed() {
        let text = format!(
            "{}\n{{\"record\":\"header\",\"tool\":\"censorprobe\"}}\n{}\n{}\n",
            header(),
            target("a.test", "ok"),
            summary().replace(r#""interrupted":false"#, r#""interrupted":true"#)
        );
        let stats = read_str(&text, |_, _: ReportLine| Ok(()));
        assert_eq!(stats.records, 4);
        assert_eq!(stats.unparsed.len(), 1, "{:?}", stats.unparsed);
        assert_eq!(stats.unparsed[0].line, 2);
        assert!(
            stats.unparsed[0]
                .reason
                .starts_with("header record: missing field"),
            "{:?}",
            stats.unparsed
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, &text).unwrap();
        let report = LoadedReport::load(&path).unwrap();
        assert_eq!(report.headers.len(), 1);
        assert!(report.summary.as_ref().unwrap().interrupted);
        assert!(!report.complete(), "an interrupted scan is not complete");
    }

    #[test]
    fn an_unreadable_report_is_an_error() {
        let err = LoadedReport::load(Path::new("/nonexistent/report.jsonl")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/report.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn directories_are_searched_for_reports_of_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("2026-11-01");
        std::fs::create_dir(&nested).unwrap();
        for name in [
            "b.jsonl",
            "a.jsonl.zst",
            "c.jsonl.gz",
            "x.ooni.jsonl",
            "notes.txt",
        ] {
            std::fs::write(nested.join(name), "").unwrap();
        }
        std::fs::write(dir.path().join("top.jsonl"), "").unwrap();
        let files = report_files(&[dir.path().to_owned()]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "2026-11-01/a.jsonl.zst",
                "2026-11-01/b.jsonl",
                "2026-11-01/c.jsonl.gz",
                "top.jsonl"
            ]
        );
    }
}
