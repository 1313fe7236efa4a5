//! `censorprobe history`: what many reports (days of scans, several vantage points,
//! shards of one scan) say about each domain over time.
//!
//! Reports are read one line at a time and folded into one small state per domain,
//! vantage and day ([`DayState`]); no record is kept. Memory is therefore flat in the
//! reports' size and number of records: it grows only with domains × vantages × days,
//! the size of the output itself. Reports may come in any order (shards of one day,
//! days out of order): each day keeps its first and last measurement by time, and the
//! changes of state are found afterwards, in time order. A state that flips and flips
//! back between the first and last measurement of one day (with `--repeat`, or two
//! scans a day) shows in that day's counts (`measurements`, `blocked`), not as a change.
//!
//! The vantage of a record is the `vantage` of the header before it (`-` without one):
//! shards of one scan share a vantage and merge; vantage points stay apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::report::outcome::{Field, RecordHead, StageHead, TargetOutcome};
use crate::report::read::{ReadError, ReadStats, ReportLine, read_lines};
use crate::vocab::{Blocking, DnsVerdict, HttpVerdict, TlsVerdict};

/// The vantage of records after a header without one.
pub const UNLABELLED_VANTAGE: &str = "-";

/// Why the history could not be built or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The parts of a target record the history reads: the outcome's fields and the time.
#[derive(Debug, Deserialize)]
struct HistoryHead {
    domain: String,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    dns: Option<StageHead<DnsVerdict>>,
    #[serde(default)]
    http: Option<StageHead<HttpVerdict>>,
    #[serde(default)]
    tls: Option<StageHead<TlsVerdict>>,
    #[serde(default)]
    blocking: Field<Blocking>,
    #[serde(default)]
    accessible: Field<Option<bool>>,
}

impl HistoryHead {
    fn outcome(self) -> TargetOutcome {
        TargetOutcome::from(RecordHead {
            domain: self.domain,
            categories: Vec::new(),
            attempt: None,
            dns: self.dns,
            http: self.http,
            tls: self.tls,
            blocking: self.blocking,
            accessible: self.accessible,
        })
    }
}

/// A target's state at one measurement: `not_blocked`, the blocked layer (`dns`,
/// `tcp_ip`, `http`, `tls`) or `unknown`.
fn state_name(blocking: Blocking) -> &'static str {
    match blocking {
        Blocking::No => "not_blocked",
        Blocking::At(layer) => layer.as_str(),
        Blocking::Inconclusive => "unknown",
    }
}

/// One measurement: when, and the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    at: OffsetDateTime,
    blocking: Blocking,
}

/// What the measurements of one domain from one vantage on one (UTC) day say.
#[derive(Debug, Clone)]
struct DayState {
    measurements: u32,
    /// Measurements that found it blocked.
    blocked: u32,
    first: Point,
    last: Point,
    first_blocked: Option<OffsetDateTime>,
    last_blocked: Option<OffsetDateTime>,
    /// Of the blocked measurements: the layers, the stage verdicts and methods behind
    /// them, and the injectors the capture named (distinct, in order met).
    layers: Vec<&'static str>,
    verdicts: Vec<String>,
    methods: Vec<String>,
    injectors: Vec<String>,
}

fn add_distinct(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_owned());
    }
}

impl DayState {
    fn new(point: Point) -> DayState {
        DayState {
            measurements: 0,
            blocked: 0,
            first: point,
            last: point,
            first_blocked: None,
            last_blocked: None,
            layers: Vec::new(),
            verdicts: Vec::new(),
            methods: Vec::new(),
            injectors: Vec::new(),
        }
    }

    fn add(&mut self, point: Point, outcome: &TargetOutcome) {
        self.measurements += 1;
        if point.at < self.first.at {
            self.first = point;
        }
        if point.at >= self.last.at {
            self.last = point;
        }
        let Blocking::At(layer) = point.blocking else {
            return;
        };
        self.blocked += 1;
        self.first_blocked = Some(self.first_blocked.map_or(point.at, |t| t.min(point.at)));
        self.last_blocked = Some(self.last_blocked.map_or(point.at, |t| t.max(point.at)));
        if !self.layers.contains(&layer.as_str()) {
            self.layers.push(layer.as_str());
        }
        if let Some(stage) = outcome.blocking_stage() {
            add_distinct(
                &mut self.verdicts,
                &format!("{}:{}", stage.name(), stage.verdict_name()),
            );
            if let Some(method) = stage.method() {
                add_distinct(&mut self.methods, method.as_str());
            }
            if let Some(place) = stage.place() {
                add_distinct(&mut self.methods, place.as_str());
            }
        }
        for injector in &outcome.injectors {
            add_distinct(&mut self.injectors, injector);
        }
    }
}

/// Every day of one domain from one vantage.
#[derive(Debug, Clone, Default)]
struct Timeline {
    days: BTreeMap<time::Date, DayState>,
}

/// The history of every domain and vantage in a set of reports.
#[derive(Debug, Default)]
pub struct History {
    timelines: BTreeMap<(String, String), Timeline>,
    /// Reports read, and what reading each came across.
    pub reports: Vec<(PathBuf, ReadStats)>,
    /// Target records read, and those without a usable time (left out).
    pub records: u64,
    pub untimed_records: u64,
}

/// A time as the history writes it (RFC 3339, UTC).
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

impl History {
    /// Adds the report at `path` (plain, `.zst` or `.gz`).
    pub fn add_report(&mut self, path: &Path) -> Result<(), HistoryError> {
        let mut vantage = UNLABELLED_VANTAGE.to_owned();
        let mut header_time: Option<OffsetDateTime> = None;
        let stats = read_lines(path, |_, line: ReportLine<HistoryHead>| {
            match line {
                ReportLine::Header(header) => {
                    vantage = header
                        .vantage
                        .clone()
                        .unwrap_or_else(|| UNLABELLED_VANTAGE.to_owned());
                    header_time = OffsetDateTime::parse(&header.started_at, &Rfc3339).ok();
                }
                ReportLine::Target(head) => self.add_record(&vantage, header_time, *head),
                // A consensus repeats its attempts, which are counted one by one.
                ReportLine::Consensus(_) | ReportLine::Summary(_) => {}
            }
            Ok(())
        })?;
        self.reports.push((path.to_owned(), stats));
        Ok(())
    }

    fn add_record(
        &mut self,
        vantage: &str,
        header_time: Option<OffsetDateTime>,
        head: HistoryHead,
    ) {
        self.records += 1;
        let at = head
            .started_at
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .or(header_time);
        let Some(at) = at else {
            self.untimed_records += 1;
            return;
        };
        let at = at.to_offset(time::UtcOffset::UTC);
        let outcome = head.outcome();
        let point = Point {
            at,
            blocking: outcome.blocking,
        };
        let key = (outcome.domain.clone(), vantage.to_owned());
        let timeline = self.timelines.entry(key).or_default();
        timeline
            .days
            .entry(at.date())
            .or_insert_with(|| DayState::new(point))
            .add(point, &outcome);
    }

    /// Domain × vantage entries.
    pub fn len(&self) -> usize {
        self.timelines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timelines.is_empty()
    }

    /// The entries, by domain then vantage.
    pub fn entries(&self) -> impl Iterator<Item = HistoryEntry> + '_ {
        self.timelines
            .iter()
            .map(|((domain, vantage), timeline)| HistoryEntry::of(domain, vantage, timeline))
    }

    /// Writes the history as `format` to `out`, one entry at a time.
    pub fn write(&self, format: HistoryFormat, out: &mut dyn Write) -> io::Result<()> {
        match format {
            HistoryFormat::Text => {
                for entry in self.entries() {
                    out.write_all(entry.text().as_bytes())?;
                }
            }
            HistoryFormat::Json => {
                for entry in self.entries() {
                    serde_json::to_writer(&mut *out, &entry)?;
                    out.write_all(b"\n")?;
                }
            }
            HistoryFormat::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                for entry in self.entries() {
                    for day in &entry.days {
                        csv.serialize(CsvRow::of(&entry, day))
                            .map_err(io::Error::other)?;
                    }
                }
                csv.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the daily censored lists: `DIR/<vantage>/<YYYY-MM-DD>.txt`, the domains
    /// found blocked that day from that vantage, one a line, sorted (the form of GFW
    /// Report's daily lists). Returns the files written.
    pub fn write_daily_lists(&self, dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
        let mut lists: BTreeMap<(&str, time::Date), Vec<&str>> = BTreeMap::new();
        for ((domain, vantage), timeline) in &self.timelines {
            for (date, day) in &timeline.days {
                if day.blocked > 0 {
                    lists
                        .entry((vantage.as_str(), *date))
                        .or_default()
                        .push(domain.as_str());
                }
            }
        }
        let mut written = Vec::new();
        for ((vantage, date), mut domains) in lists {
            domains.sort_unstable();
            let vantage_dir = dir.join(file_name_of(vantage));
            let path = vantage_dir.join(format!("{date}.txt"));
            let write = |path: &Path| -> io::Result<()> {
                std::fs::create_dir_all(&vantage_dir)?;
                let mut text = String::with_capacity(domains.len() * 24);
                for domain in &domains {
                    text.push_str(domain);
                    text.push('\n');
                }
                std::fs::write(path, text)
            };
            write(&path).map_err(|source| HistoryError::Write {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }
}

/// A vantage label as a directory name: path separators and dots-only names replaced.
fn file_name_of(vantage: &str) -> String {
    let name: String = vantage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.chars().all(|c| c == '.') {
        "_".repeat(name.len().max(1))
    } else {
        name
    }
}

/// `--format` of `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFormat {
    /// A block per domain and vantage.
    Text,
    /// One row per domain, vantage and day (the entry's totals repeated on each).
    Csv,
    /// One JSON object per domain and vantage, a line each.
    Json,
}

/// One day of an entry.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryDay {
    pub day: String,
    pub measurements: u32,
    /// Measurements that found it blocked.
    pub blocked: u32,
    /// The state of the day's last measurement.
    pub state: &'static str,
    /// Of the blocked measurements: layers, stage verdicts (`stage:verdict`), methods
    /// (DNS poisoning method, or where in the connection), injectors.
    pub layers: Vec<&'static str>,
    pub verdicts: Vec<String>,
    pub methods: Vec<String>,
    pub injectors: Vec<String>,
}

/// A change of state between two measurements in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateChange {
    /// The first measurement in the new state.
    pub at: String,
    pub from: &'static str,
    pub to: &'static str,
}

/// What the reports say about one domain from one vantage.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub domain: String,
    pub vantage: String,
    pub first_blocked: Option<String>,
    pub last_blocked: Option<String>,
    pub days_blocked: u32,
    pub days_measured: u32,
    /// The state of the latest measurement, and when it was taken.
    pub current: &'static str,
    pub last_measured: String,
    pub days: Vec<HistoryDay>,
    pub changes: Vec<StateChange>,
}

impl HistoryEntry {
    fn of(domain: &str, vantage: &str, timeline: &Timeline) -> HistoryEntry {
        let mut changes = Vec::new();
        let mut previous: Option<Blocking> = None;
        let mut note = |point: Point, changes: &mut Vec<StateChange>| {
            if let Some(from) = previous
                && from != point.blocking
            {
                changes.push(StateChange {
                    at: rfc3339(point.at),
                    from: state_name(from),
                    to: state_name(point.blocking),
                });
            }
            previous = Some(point.blocking);
        };
        let mut days = Vec::new();
        for (date, day) in &timeline.days {
            note(day.first, &mut changes);
            note(day.last, &mut changes);
            days.push(HistoryDay {
                day: date.to_string(),
                measurements: day.measurements,
                blocked: day.blocked,
                state: state_name(day.last.blocking),
                layers: day.layers.clone(),
                verdicts: day.verdicts.clone(),
                methods: day.methods.clone(),
                injectors: day.injectors.clone(),
            });
        }
        let blocked_days = || timeline.days.values().filter(|d| d.blocked > 0);
        let last = timeline
            .days
            .values()
            .next_back()
            .expect("a timeline has a day")
            .last;
        HistoryEntry {
            domain: domain.to_owned(),
            vantage: vantage.to_owned(),
            first_blocked: blocked_days().find_map(|d| d.first_blocked).map(rfc3339),
            last_blocked: blocked_days()
                .filter_map(|d| d.last_blocked)
                .next_back()
                .map(rfc3339),
            days_blocked: blocked_days().count() as u32,
            days_measured: timeline.days.len() as u32,
            current: state_name(last.blocking),
            last_measured: rfc3339(last.at),
            days,
            changes,
        }
    }

    fn text(&self) -> String {
        let mut text = format!(
            "{} [{}]: {}, blocked {} of {} day(s)",
            self.domain, self.vantage, self.current, self.days_blocked, self.days_measured
        );
        if let (Some(first), Some(last)) = (&self.first_blocked, &self.last_blocked) {
            let _ = write!(text, ", first {first}, last {last}");
        }
        text.push('\n');
        for day in self.days.iter().filter(|d| d.blocked > 0) {
            let _ = write!(
                text,
                "  {} blocked {}/{}: {}",
                day.day,
                day.blocked,
                day.measurements,
                day.verdicts.join(", ")
            );
            if !day.methods.is_empty() {
                let _ = write!(text, " ({})", day.methods.join(", "));
            }
            if !day.injectors.is_empty() {
                let _ = write!(text, " by {}", day.injectors.join(", "));
            }
            text.push('\n');
        }
        for change in &self.changes {
            let _ = writeln!(text, "  {} {} -> {}", change.at, change.from, change.to);
        }
        text
    }
}

/// One CSV row: a day of an entry, with the entry's totals.
#[derive(Serialize)]
struct CsvRow<'a> {
    domain: &'a str,
    vantage: &'a str,
    day: &'a str,
    measurements: u32,
    blocked: u32,
    state: &'static str,
    layers: String,
    verdicts: String,
    methods: String,
    injectors: String,
    first_blocked: &'a str,
    last_blocked: &'a str,
    days_blocked: u32,
    days_measured: u32,
    current: &'static str,
}

impl<'a> CsvRow<'a> {
    fn of(entry: &'a HistoryEntry, day: &'a HistoryDay) -> CsvRow<'a> {
        CsvRow {
            domain: &entry.domain,
            vantage: &entry.vantage,
            day: &day.day,
            measurements: day.measurements,
            blocked: day.blocked,
            state: day.state,
            layers: day.layers.join(";"),
            verdicts: day.verdicts.join(";"),
            methods: day.methods.join(";"),
            injectors: day.injectors.join(";"),
            first_blocked: entry.first_blocked.as_deref().unwrap_or(""),
            last_blocked: entry.last_blocked.as_deref().unwrap_or(""),
            days_blocked: entry.days_blocked,
            days_measured: entry.days_measured,
            current: entry.current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(vantage: &str, at: &str) -> String {
        format!(
            r#"{{"record":"header","tool":"censorprobe","version":"0","schema_version":1,"started_at":"{at}","vantage":"{vantage}","resolver":"198.18.0.53:53","control":"none","options":{{}},"targets_loaded":1,"targets_scheduled":1,"skipped_inputs":[]}}"#
        )
    }

    fn dns_poisoned(domain: &str, at: &str) -> String {
        format!(
            r#"{{"record":"target","domain":"{domain}","started_at":"{at}","dns":{{"verdict":"dns_poisoning","method":"injection"}},"blocking":"dns","accessible":false}}"#
        )
    }

    fn reset(domain: &str, at: &str) -> String {
        format!(
            r#"{{"record":"target","domain":"{domain}","started_at":"{at}","dns":{{"verdict":"ok"}},"tls":{{"verdict":"rst_injection","stage":"handshake","injector":{{"name":"gfw-type-2"}}}},"blocking":"tls","accessible":false}}"#
        )
    }

    fn ok(domain: &str, at: &str) -> String {
        format!(
            r#"{{"record":"target","domain":"{domain}","started_at":"{at}","dns":{{"verdict":"ok"}},"blocking":false,"accessible":true}}"#
        )
    }

    fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    #[test]
    fn days_first_last_current_and_changes_over_reports_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let day2 = write(
            dir.path(),
            "day2.jsonl",
            &[
                header("cn-1", "2026-11-02T00:00:00Z"),
                ok("a.test", "2026-11-02T01:00:00Z"),
                reset("b.test", "2026-11-02T01:00:01Z"),
            ],
        );
        let day1 = write(
            dir.path(),
            "day1.jsonl",
            &[
                header("cn-1", "2026-11-01T00:00:00Z"),
                dns_poisoned("a.test", "2026-11-01T01:00:00Z"),
                ok("b.test", "2026-11-01T01:00:01Z"),
            ],
        );
        let day3 = write(
            dir.path(),
            "day3.jsonl",
            &[
                header("cn-1", "2026-11-03T00:00:00Z"),
                dns_poisoned("a.test", "2026-11-03T09:00:00Z"),
                dns_poisoned("a.test", "2026-11-03T01:00:00Z"),
                header("us-1", "2026-11-03T00:00:00Z"),
                ok("a.test", "2026-11-03T01:00:00Z"),
            ],
        );
        let mut history = History::default();
        for path in [&day2, &day3, &day1] {
            history.add_report(path).unwrap();
        }
        assert_eq!(history.records, 7);
        let entries: Vec<HistoryEntry> = history.entries().collect();
        let keys: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.domain.as_str(), e.vantage.as_str()))
            .collect();
        assert_eq!(
            keys,
            [("a.test", "cn-1"), ("a.test", "us-1"), ("b.test", "cn-1")]
        );
        let a = &entries[0];
        assert_eq!(a.days_blocked, 2);
        assert_eq!(a.days_measured, 3);
        assert_eq!(a.first_blocked.as_deref(), Some("2026-11-01T01:00:00Z"));
        assert_eq!(a.last_blocked.as_deref(), Some("2026-11-03T09:00:00Z"));
        assert_eq!(a.current, "dns");
        assert_eq!(a.days[2].measurements, 2);
        assert_eq!(a.days[2].blocked, 2);
        assert_eq!(a.days[0].verdicts, ["dns:dns_poisoning"]);
        assert_eq!(a.days[0].methods, ["injection"]);
        assert_eq!(
            a.changes,
            [
                StateChange {
                    at: "2026-11-02T01:00:00Z".into(),
                    from: "dns",
                    to: "not_blocked"
                },
                StateChange {
                    at: "2026-11-03T01:00:00Z".into(),
                    from: "not_blocked",
                    to: "dns"
                },
            ]
        );
        let us = &entries[1];
        assert_eq!((us.days_blocked, us.current), (0, "not_blocked"));
        assert!(us.changes.is_empty() && us.first_blocked.is_none());
        let b = &entries[2];
        assert_eq!(b.current, "tls");
        assert_eq!(b.days[1].injectors, ["gfw-type-2"]);
        assert_eq!(b.days[1].methods, ["handshake"]);
        assert_eq!(b.days[1].verdicts, ["tls:rst_injection"]);

        let lists = dir.path().join("daily");
        let written = history.write_daily_lists(&lists).unwrap();
        assert_eq!(written.len(), 3, "{written:?}");
        let read = |p: &str| std::fs::read_to_string(lists.join(p)).unwrap();
        assert_eq!(read("cn-1/2026-11-01.txt"), "a.test\n");
        assert_eq!(read("cn-1/2026-11-02.txt"), "b.test\n");
        assert_eq!(read("cn-1/2026-11-03.txt"), "a.test\n");
        assert!(!lists.join("us-1").exists(), "nothing blocked from us-1");

        let mut csv = Vec::new();
        history.write(HistoryFormat::Csv, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 1 + 3 + 1 + 2, "{csv}");
        assert!(
            rows[0].starts_with("domain,vantage,day,measurements,blocked,state,"),
            "{csv}"
        );
        assert!(
            rows.contains(&"b.test,cn-1,2026-11-02,1,1,tls,tls,tls:rst_injection,handshake,gfw-type-2,2026-11-02T01:00:01Z,2026-11-02T01:00:01Z,1,2,tls"),
            "{csv}"
        );
        let mut json = Vec::new();
        history.write(HistoryFormat::Json, &mut json).unwrap();
        let json: Vec<serde_json::Value> = String::from_utf8(json)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(json.len(), 3);
        assert_eq!(json[0]["changes"][0]["to"], "not_blocked");
        assert_eq!(json[0]["days"][2]["blocked"], 2);
        let mut text = Vec::new();
        history.write(HistoryFormat::Text, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("a.test [cn-1]: dns, blocked 2 of 3 day(s), first 2026-11-01T01:00:00Z, last 2026-11-03T09:00:00Z\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  2026-11-02 blocked 1/1: tls:rst_injection (handshake) by gfw-type-2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn vantage_labels_are_safe_directory_names() {
        assert_eq!(file_name_of("cn/bj-1"), "cn_bj-1");
        assert_eq!(file_name_of(".."), "__");
        assert_eq!(file_name_of("-"), "-");
    }
}
