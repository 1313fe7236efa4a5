//! Compare a scan report (JSONL records) with a scenario's expectations: for every name,
//! every expected field against what the probe reported, shown per name and as a
//! confusion matrix per stage (expected verdict against reported verdict).
//!
//! Target records are read through the report reader
//! ([`crate::report::read::read_str`]) as [`LabRecord`]s. A stage's verdict is
//! checked together with its detail: `dns.verdict` with `dns.method` (absent when the
//! scenario names none), `http.verdict` with `http.stage`, `tls.verdict` with
//! `tls.stage`; `dns.methods`, `blocking` and `accessible` are checked when the
//! scenario gives them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::scenario::{Expectation, Scenario};
use crate::report::read::{ReportLine, read_str};
use crate::vocab::StageName;

/// One field of one name: what the scenario expects and what the report says (`None`:
/// absent), in words for display. Whether they agree is decided on the typed values
/// (`passed`), never on the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub field: &'static str,
    pub expected: Option<String>,
    pub actual: Option<String>,
    passed: bool,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.passed
    }
}

/// Every check of a report against a scenario.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub checks: Vec<Check>,
    /// Scenario names with no record in the report.
    pub missing: Vec<String>,
    /// Every scenario name, in scenario order.
    pub names: Vec<String>,
}

/// The fields shown as columns of the per-name table and as confusion matrices.
const HEADLINE_FIELDS: [&str; 5] = ["dns", "http", "tls", "blocking", "accessible"];

impl Comparison {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed())
    }

    pub fn is_perfect(&self) -> bool {
        self.missing.is_empty() && self.checks.iter().all(Check::passed)
    }

    /// Names every check of which passed.
    pub fn names_passed(&self) -> usize {
        self.names
            .iter()
            .filter(|name| {
                !self.missing.contains(name)
                    && self
                        .checks
                        .iter()
                        .filter(|c| &c.name == *name)
                        .all(Check::passed)
            })
            .count()
    }

    /// Counts of (expected, reported) values of one field, e.g. `"http"`.
    pub fn confusion(&self, field: &str) -> BTreeMap<(String, String), usize> {
        let mut matrix = BTreeMap::new();
        for check in self.checks.iter().filter(|c| c.field == field) {
            *matrix
                .entry((show(check.expected.as_ref()), show(check.actual.as_ref())))
                .or_insert(0) += 1;
        }
        matrix
    }

    fn check(&self, name: &str, field: &str) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| c.name == name && c.field == field)
    }

    /// The cell of the per-name table: the reported value with its detail, and what was
    /// expected when it differs.
    fn cell(&self, name: &str, field: &str) -> String {
        let Some(check) = self.check(name, field) else {
            return "-".to_owned();
        };
        let detail_field = match field {
            "dns" => Some("dns_method"),
            "http" => Some("http_stage"),
            "tls" => Some("tls_stage"),
            _ => None,
        };
        let detail = detail_field.and_then(|f| self.check(name, f));
        let with_detail = |value: Option<&String>, detail: Option<&String>| {
            let value = show(value);
            match detail {
                Some(d) if field == "dns" => format!("{value}/{d}"),
                Some(d) => format!("{value}@{d}"),
                None => value,
            }
        };
        let got = with_detail(
            check.actual.as_ref(),
            detail.and_then(|d| d.actual.as_ref()),
        );
        let expected = with_detail(
            check.expected.as_ref(),
            detail.and_then(|d| d.expected.as_ref()),
        );
        if got == expected {
            got
        } else {
            format!("{got} (expected {expected})")
        }
    }
}

fn show(value: Option<&String>) -> String {
    value.map_or_else(|| "none".to_owned(), Clone::clone)
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.names.iter().map(String::len).max().unwrap_or(4).max(4);
        writeln!(
            f,
            "per name, as reported (a difference shows what was expected):"
        )?;
        let header: Vec<String> = HEADLINE_FIELDS.iter().map(|h| (*h).to_owned()).collect();
        let mut rows: Vec<(bool, String, Vec<String>)> = Vec::new();
        for name in &self.names {
            let ok = !self.missing.contains(name)
                && self
                    .checks
                    .iter()
                    .filter(|c| &c.name == name)
                    .all(Check::passed);
            let cells = HEADLINE_FIELDS
                .iter()
                .map(|field| self.cell(name, field))
                .collect();
            rows.push((ok, name.clone(), cells));
        }
        let widths: Vec<usize> = (0..HEADLINE_FIELDS.len())
            .map(|i| {
                rows.iter()
                    .map(|(_, _, cells)| cells[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |mark: &str, name: &str, cells: &[String]| {
            let mut text = format!("  {mark} {name:<width$}");
            for (cell, w) in cells.iter().zip(&widths) {
                let _ = write!(text, "  {cell:<w$}");
            }
            text.trim_end().to_owned()
        };
        writeln!(f, "{}", line(" ", "name", &header))?;
        for (ok, name, cells) in &rows {
            writeln!(f, "{}", line(if *ok { "ok" } else { "XX" }, name, cells))?;
        }
        for check in self
            .failures()
            .filter(|c| !HEADLINE_FIELDS.contains(&c.field) && !c.field.ends_with("_stage"))
            .filter(|c| c.field != "dns_method")
        {
            writeln!(
                f,
                "  XX {} {}: expected {}, got {}",
                check.name,
                check.field,
                show(check.expected.as_ref()),
                show(check.actual.as_ref())
            )?;
        }
        for name in &self.missing {
            writeln!(f, "  XX {name}: no record in the report")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "confusion matrices (rows: expected, columns: reported; off the diagonal is wrong):"
        )?;
        for field in ["dns", "http", "tls", "blocking"] {
            let matrix = self.confusion(field);
            if matrix.is_empty() {
                continue;
            }
            let values: BTreeSet<&String> = matrix.keys().flat_map(|(e, a)| [e, a]).collect();
            let values: Vec<&String> = values.into_iter().collect();
            let first = values
                .iter()
                .map(|v| v.len())
                .max()
                .unwrap_or(0)
                .max(field.len());
            let mut head = format!("  {field:<first$}");
            for v in &values {
                let _ = write!(head, "  {v:>w$}", w = v.len().max(2));
            }
            writeln!(f, "{head}")?;
            for expected in &values {
                if !matrix.keys().any(|(e, _)| e == *expected) {
                    continue;
                }
                let mut row = format!("  {expected:<first$}");
                for got in &values {
                    let count = matrix.get(&((*expected).clone(), (*got).clone()));
                    let text = count.map_or_else(|| ".".to_owned(), ToString::to_string);
                    let _ = write!(row, "  {text:>w$}", w = got.len().max(2));
                }
                writeln!(f, "{row}")?;
            }
        }
        writeln!(f)?;
        let passed = self.checks.iter().filter(|c| c.passed()).count();
        writeln!(
            f,
            "expectations: {}/{} names as expected, {passed}/{} checks pass, {} names without a record{}",
            self.names_passed(),
            self.names.len(),
            self.checks.len(),
            self.missing.len(),
            if self.is_perfect() {
                ": a perfect match"
            } else {
                ""
            }
        )
    }
}

/// One field of a target record as the lab reads it: absent (`None`), or the JSON
/// text the report wrote (`null` included). It is read as the expected type when
/// compared, so that a word this version does not know (or a value of the wrong kind)
/// is still shown as written, and agrees with nothing.
type Written = Option<Box<RawValue>>;

/// A present field, null included (serde gives a missing one its default, `None`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Written, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

/// The parts of a stage the lab checks.
#[derive(Debug, Default, Deserialize)]
struct LabStage {
    #[serde(default, deserialize_with = "present")]
    verdict: Written,
    #[serde(default, deserialize_with = "present")]
    method: Written,
    #[serde(default, deserialize_with = "present")]
    methods: Written,
    #[serde(default, deserialize_with = "present")]
    stage: Written,
    /// The injector the verdict names (its `name`; the facts are not checked).
    #[serde(default)]
    injector: Option<LabInjector>,
}

#[derive(Debug, Default, Deserialize)]
struct LabInjector {
    name: String,
}

/// The parts of a target record the lab checks, each as the report wrote it.
#[derive(Debug, Deserialize)]
pub struct LabRecord {
    domain: String,
    #[serde(default)]
    dns: Option<LabStage>,
    #[serde(default)]
    http: Option<LabStage>,
    #[serde(default)]
    tls: Option<LabStage>,
    #[serde(default, deserialize_with = "present")]
    blocking: Written,
    #[serde(default, deserialize_with = "present")]
    accessible: Written,
}

impl LabRecord {
    fn stage(&self, name: StageName) -> Option<&LabStage> {
        match name {
            StageName::Dns => self.dns.as_ref(),
            StageName::Http => self.http.as_ref(),
            StageName::Tls => self.tls.as_ref(),
        }
    }
}

/// The JSON value of a present, non-null field.
fn non_null(value: Option<&RawValue>) -> Option<&RawValue> {
    value.filter(|v| v.get() != "null")
}

/// A value in words: a string as written, anything else as its JSON text; null is
/// no value.
fn text(value: Option<&RawValue>) -> Option<String> {
    let value = non_null(value)?;
    Some(serde_json::from_str::<String>(value.get()).unwrap_or_else(|_| value.get().to_owned()))
}

/// The report's `blocking`: JSON null is a value here ("null"), not an absence.
fn blocking_text(record: &LabRecord) -> Option<String> {
    match record.blocking.as_deref()? {
        null if null.get() == "null" => Some("null".to_owned()),
        other => text(Some(other)),
    }
}

/// `dns.methods` in words: its strings, comma-separated.
fn methods_text(record: &LabRecord) -> Option<String> {
    let methods = record.dns.as_ref()?.methods.as_deref()?;
    let items: Vec<Box<RawValue>> = serde_json::from_str(methods.get()).ok()?;
    let words: Vec<String> = items
        .iter()
        .filter_map(|item| serde_json::from_str(item.get()).ok())
        .collect();
    Some(words.join(","))
}

/// Whether the report's value is the expected one, read as `T`. An absent value (and
/// JSON null, unless `null_is_value`) agrees only with no expectation; a value that is
/// no `T` (an unknown word) agrees with nothing.
fn agrees<T>(expected: Option<&T>, value: Option<&RawValue>, null_is_value: bool) -> bool
where
    T: PartialEq + DeserializeOwned,
{
    let value = if null_is_value {
        value
    } else {
        non_null(value)
    };
    match (expected, value) {
        (None, None) => true,
        (Some(expected), Some(value)) => {
            serde_json::from_str::<T>(value.get()).is_ok_and(|actual| actual == *expected)
        }
        _ => false,
    }
}

/// The checks for one name's expectation against its record (`None`: no record).
fn checks_of(name: &str, expect: &Expectation, record: Option<&LabRecord>) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push =
        |field: &'static str, expected: Option<String>, actual: Option<String>, passed: bool| {
            checks.push(Check {
                name: name.to_owned(),
                field,
                expected,
                actual,
                passed,
            });
        };
    // A field of a stage, as written.
    let at = |stage: StageName, field: fn(&LabStage) -> &Written| {
        record
            .and_then(|r| r.stage(stage))
            .and_then(|s| field(s).as_deref())
    };
    let get = |stage: StageName, field: fn(&LabStage) -> &Written| text(at(stage, field));
    if let Some(verdict) = expect.dns {
        push(
            "dns",
            Some(verdict.as_str().to_owned()),
            get(StageName::Dns, |s| &s.verdict),
            agrees(Some(&verdict), at(StageName::Dns, |s| &s.verdict), false),
        );
        push(
            "dns_method",
            expect.dns_method.map(|m| m.as_str().to_owned()),
            get(StageName::Dns, |s| &s.method),
            agrees(
                expect.dns_method.as_ref(),
                at(StageName::Dns, |s| &s.method),
                false,
            ),
        );
    }
    if let Some(methods) = &expect.dns_methods {
        push(
            "dns_methods",
            Some(
                methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            record.and_then(methods_text),
            agrees(Some(methods), at(StageName::Dns, |s| &s.methods), false),
        );
    }
    if let Some(verdict) = expect.http {
        push(
            "http",
            Some(verdict.as_str().to_owned()),
            get(StageName::Http, |s| &s.verdict),
            agrees(Some(&verdict), at(StageName::Http, |s| &s.verdict), false),
        );
        push(
            "http_stage",
            expect.http_stage.map(|s| s.as_str().to_owned()),
            get(StageName::Http, |s| &s.stage),
            agrees(
                expect.http_stage.as_ref(),
                at(StageName::Http, |s| &s.stage),
                false,
            ),
        );
    }
    if let Some(verdict) = expect.tls {
        push(
            "tls",
            Some(verdict.as_str().to_owned()),
            get(StageName::Tls, |s| &s.verdict),
            agrees(Some(&verdict), at(StageName::Tls, |s| &s.verdict), false),
        );
        push(
            "tls_stage",
            expect.tls_stage.map(|s| s.as_str().to_owned()),
            get(StageName::Tls, |s| &s.stage),
            agrees(
                expect.tls_stage.as_ref(),
                at(StageName::Tls, |s| &s.stage),
                false,
            ),
        );
    }
    for (field, expected, stage) in [
        ("http_injector", &expect.http_injector, StageName::Http),
        ("tls_injector", &expect.tls_injector, StageName::Tls),
    ] {
        if let Some(expected) = expected {
            let actual = record
                .and_then(|r| r.stage(stage))
                .and_then(|s| s.injector.as_ref())
                .map(|i| i.name.clone());
            let passed = actual.as_deref() == Some(expected.as_str());
            push(field, Some(expected.clone()), actual, passed);
        }
    }
    if let Some(blocking) = expect.blocking {
        // The report's null is a value here (inconclusive), not an absence.
        push(
            "blocking",
            Some(blocking.to_string()),
            record.and_then(blocking_text),
            agrees(
                Some(&blocking.0),
                record.and_then(|r| r.blocking.as_deref()),
                true,
            ),
        );
    }
    if let Some(accessible) = expect.accessible {
        push(
            "accessible",
            Some(accessible.to_string()),
            record.and_then(|r| text(r.accessible.as_deref())),
            agrees(
                Some(&accessible),
                record.and_then(|r| r.accessible.as_deref()),
                false,
            ),
        );
    }
    checks
}

/// Compare the records of a JSONL report with the scenario's expectations.
pub fn compare(scenario: &Scenario, report: &str) -> Comparison {
    let mut records: HashMap<String, LabRecord> = HashMap::new();
    // Lines that are no target record are left out: the names without one are missing.
    read_str(report, |_, line: ReportLine<LabRecord>| {
        if let ReportLine::Target(record) = line {
            let domain = record.domain.trim_end_matches('.').to_ascii_lowercase();
            records.insert(domain, *record);
        }
        Ok(())
    });
    let mut comparison = Comparison::default();
    for entry in &scenario.names {
        comparison.names.push(entry.name.clone());
        let record = records.get(&entry.name);
        if record.is_none() {
            comparison.missing.push(entry.name.clone());
        }
        comparison
            .checks
            .extend(checks_of(&entry.name, &entry.expect, record));
    }
    comparison
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SCENARIO: &str = r#"
[[names]]
name = "a.example"
a = ["198.19.1.1"]
expect = { dns = "dns_poisoning", dns_method = "injection", dns_methods = ["injection", "bogon"], http = "ok", blocking = "dns" }

[[names]]
name = "b.example"
a = ["198.19.1.1"]
expect = { http = "rst_injection", http_stage = "request", blocking = false, accessible = false }

[[names]]
name = "c.example"
a = ["198.19.1.1"]
expect = { dns = "ok", blocking = "null" }

[[names]]
name = "d.example"
a = ["198.19.1.1"]
expect = { dns = "ok" }
"#;

    #[test]
    fn the_injector_a_verdict_names_is_checked_by_name() {
        let scenario = Scenario::parse(
            r#"
[[names]]
name = "i.example"
a = ["198.19.1.1"]
expect = { http = "rst_injection", http_injector = "gfw_type_i", tls = "rst_injection", tls_injector = "henan" }
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        let report = |http: &str, tls: &str| {
            format!(
                r#"{{"record":"target","domain":"i.example","http":{{"verdict":"rst_injection"{http}}},"tls":{{"verdict":"rst_injection"{tls}}}}}"#
            )
        };
        let named = report(
            r#","injector":{"name":"gfw_type_i","facts":["1 × RST"]}"#,
            r#","injector":{"name":"henan","facts":[]}"#,
        );
        assert!(compare(&scenario, &named).is_perfect());
        // Another injector, and none (no capture), both fail.
        let wrong = report(r#","injector":{"name":"unknown_injector","facts":[]}"#, "");
        let comparison = compare(&scenario, &wrong);
        let failures: Vec<(&str, Option<&str>)> = comparison
            .failures()
            .map(|c| (c.field, c.actual.as_deref()))
            .collect();
        assert_eq!(
            failures,
            vec![
                ("http_injector", Some("unknown_injector")),
                ("tls_injector", None)
            ]
        );
    }

    #[test]
    fn every_expected_field_and_its_detail_is_checked() {
        let scenario = Scenario::parse(SCENARIO, Path::new("t.toml")).unwrap();
        let report = [
            r#"{"record":"header","tool":"censorprobe"}"#,
            r#"{"record":"target","domain":"a.example","dns":{"verdict":"dns_poisoning","method":"injection","methods":["injection","bogon"]},"http":{"verdict":"ok"},"blocking":"dns"}"#,
            r#"{"record":"target","domain":"b.example","http":{"verdict":"rst_injection","stage":"response"},"blocking":false,"accessible":false}"#,
            r#"{"record":"target","domain":"c.example","dns":{"verdict":"ok","method":"bogon"},"blocking":null}"#,
            r#"{"record":"summary"}"#,
        ]
        .join("\n");
        let comparison = compare(&scenario, &report);
        assert_eq!(comparison.missing, vec!["d.example".to_owned()]);
        let failures: Vec<(&str, &str)> = comparison
            .failures()
            .map(|c| (c.name.as_str(), c.field))
            .collect();
        assert_eq!(
            failures,
            vec![
                ("b.example", "http_stage"),
                ("c.example", "dns_method"),
                ("d.example", "dns"),
            ],
            "a stage and a method nobody expected are failures; null blocking is a value"
        );
        assert!(!comparison.is_perfect());
        assert_eq!(comparison.names_passed(), 1);
        let matrix = comparison.confusion("http");
        assert_eq!(matrix.get(&("ok".to_owned(), "ok".to_owned())), Some(&1));
        let text = comparison.to_string();
        assert!(
            text.contains("rst_injection@response (expected rst_injection@request)"),
            "{text}"
        );
        assert!(text.contains("ok/bogon (expected ok)"), "{text}");
        assert!(text.contains("d.example: no record"), "{text}");
        assert!(text.contains("1/4 names as expected"), "{text}");
    }

    #[test]
    fn values_are_compared_typed_not_as_words() {
        let scenario = Scenario::parse(SCENARIO, Path::new("t.toml")).unwrap();
        // Words that read like the expected ones but are not the report's values: the
        // string "null" is not null, the string "false" is not false, and "rst" is no
        // verdict. Each fails, and is shown as the report wrote it. (a.example has no
        // record: its checks are covered above.)
        let report = [
            r#"{"record":"target","domain":"b.example","http":{"verdict":"rst","stage":"request"},"blocking":"false","accessible":"false"}"#,
            r#"{"record":"target","domain":"c.example","dns":{"verdict":"ok"},"blocking":"null"}"#,
            r#"{"record":"target","domain":"d.example","dns":{"verdict":"ok"}}"#,
        ]
        .join("\n");
        let comparison = compare(&scenario, &report);
        let failures: Vec<(&str, &str, Option<&str>)> = comparison
            .failures()
            .filter(|c| c.name != "a.example")
            .map(|c| (c.name.as_str(), c.field, c.actual.as_deref()))
            .collect();
        assert_eq!(
            failures,
            vec![
                ("b.example", "http", Some("rst")),
                ("b.example", "blocking", Some("false")),
                ("b.example", "accessible", Some("false")),
                ("c.example", "blocking", Some("null")),
            ]
        );
        let passed: Vec<(&str, &str)> = comparison
            .checks
            .iter()
            .filter(|c| c.passed() && c.name != "a.example")
            .map(|c| (c.name.as_str(), c.field))
            .collect();
        assert_eq!(
            passed,
            vec![
                ("b.example", "http_stage"),
                ("c.example", "dns"),
                ("c.example", "dns_method"),
                ("d.example", "dns"),
                ("d.example", "dns_method"),
            ]
        );
    }
}
