//! Compare a scan report (JSONL records) with a scenario's expectations: for every name,
//! every expected field against what the probe reported, shown per name and as a
//! confusion matrix per stage (expected verdict against reported verdict).
//!
//! Target records are the report lines with a `domain` field. A stage's verdict is
//! checked together with its detail: `dns.verdict` with `dns.method` (absent when the
//! scenario names none), `http.verdict` with `http.stage`, `tls.verdict` with
//! `tls.stage`; `dns.methods`, `blocking` and `accessible` are checked when the
//! scenario gives them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::scenario::{Expectation, Scenario};

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

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The report's `blocking`: JSON null is a value here ("null"), not an absence.
fn blocking_text(record: &Value) -> Option<String> {
    match record.get("blocking")? {
        Value::Null => Some("null".to_owned()),
        other => text(Some(other)),
    }
}

fn methods_text(record: &Value) -> Option<String> {
    let methods = record.get("dns")?.get("methods")?.as_array()?;
    Some(
        methods
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn lookup(record: &Value, outer: &str, inner: &str) -> Option<String> {
    text(record.get(outer).and_then(|o| o.get(inner)))
}

/// Whether the report's value is the expected one, read as `T`. An absent value (and
/// JSON null, unless `null_is_value`) agrees only with no expectation; a value that is
/// no `T` (an unknown word) agrees with nothing.
fn agrees<T>(expected: Option<&T>, value: Option<&Value>, null_is_value: bool) -> bool
where
    T: PartialEq + DeserializeOwned,
{
    match (expected, value.filter(|v| null_is_value || !v.is_null())) {
        (None, None) => true,
        (Some(expected), Some(value)) => {
            T::deserialize(value).is_ok_and(|actual| actual == *expected)
        }
        _ => false,
    }
}

/// The checks for one name's expectation against its record (`None`: no record).
fn checks_of(name: &str, expect: &Expectation, record: Option<&Value>) -> Vec<Check> {
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
    let get = |outer: &str, inner: &str| record.and_then(|r| lookup(r, outer, inner));
    let at =
        |outer: &str, inner: &str| record.and_then(|r| r.get(outer)).and_then(|o| o.get(inner));
    if let Some(verdict) = expect.dns {
        push(
            "dns",
            Some(verdict.as_str().to_owned()),
            get("dns", "verdict"),
            agrees(Some(&verdict), at("dns", "verdict"), false),
        );
        push(
            "dns_method",
            expect.dns_method.map(|m| m.as_str().to_owned()),
            get("dns", "method"),
            agrees(expect.dns_method.as_ref(), at("dns", "method"), false),
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
            agrees(Some(methods), at("dns", "methods"), false),
        );
    }
    if let Some(verdict) = expect.http {
        push(
            "http",
            Some(verdict.as_str().to_owned()),
            get("http", "verdict"),
            agrees(Some(&verdict), at("http", "verdict"), false),
        );
        push(
            "http_stage",
            expect.http_stage.map(|s| s.as_str().to_owned()),
            get("http", "stage"),
            agrees(expect.http_stage.as_ref(), at("http", "stage"), false),
        );
    }
    if let Some(verdict) = expect.tls {
        push(
            "tls",
            Some(verdict.as_str().to_owned()),
            get("tls", "verdict"),
            agrees(Some(&verdict), at("tls", "verdict"), false),
        );
        push(
            "tls_stage",
            expect.tls_stage.map(|s| s.as_str().to_owned()),
            get("tls", "stage"),
            agrees(expect.tls_stage.as_ref(), at("tls", "stage"), false),
        );
    }
    if let Some(blocking) = expect.blocking {
        // The report's null is a value here (inconclusive), not an absence.
        push(
            "blocking",
            Some(blocking.to_string()),
            record.and_then(blocking_text),
            agrees(
                Some(&blocking.0),
                record.and_then(|r| r.get("blocking")),
                true,
            ),
        );
    }
    if let Some(accessible) = expect.accessible {
        push(
            "accessible",
            Some(accessible.to_string()),
            record.and_then(|r| text(r.get("accessible"))),
            agrees(
                Some(&accessible),
                record.and_then(|r| r.get("accessible")),
                false,
            ),
        );
    }
    checks
}

/// Compare the records of a JSONL report with the scenario's expectations.
pub fn compare(scenario: &Scenario, report: &str) -> Comparison {
    let mut records: HashMap<String, Value> = HashMap::new();
    for line in report.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(domain) = value.get("domain").and_then(Value::as_str) {
            records.insert(domain.trim_end_matches('.').to_ascii_lowercase(), value);
        }
    }
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
    fn every_expected_field_and_its_detail_is_checked() {
        let scenario = Scenario::parse(SCENARIO, Path::new("t.toml")).unwrap();
        let report = [
            r#"{"record":"header","tool":"censorprobe"}"#,
            r#"{"domain":"a.example","dns":{"verdict":"dns_poisoning","method":"injection","methods":["injection","bogon"]},"http":{"verdict":"ok"},"blocking":"dns"}"#,
            r#"{"domain":"b.example","http":{"verdict":"rst_injection","stage":"response"},"blocking":false,"accessible":false}"#,
            r#"{"domain":"c.example","dns":{"verdict":"ok","method":"bogon"},"blocking":null}"#,
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
            r#"{"domain":"b.example","http":{"verdict":"rst","stage":"request"},"blocking":"false","accessible":"false"}"#,
            r#"{"domain":"c.example","dns":{"verdict":"ok"},"blocking":"null"}"#,
            r#"{"domain":"d.example","dns":{"verdict":"ok"}}"#,
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
