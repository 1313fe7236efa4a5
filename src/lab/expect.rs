//! Compare a scan report (JSONL records) with a scenario's expectations: for every name,
//! every expected field (dns verdict and method, http/tls verdict and stage, blocking)
//! against what the probe reported.
//!
//! Target records are the report lines with a `domain` field; the fields read are
//! `dns.verdict`, `dns.method`, `http.verdict`, `http.stage`, `tls.verdict`, `tls.stage`
//! and `blocking` (issues 2 and 3 define them).

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use super::scenario::{Expectation, Scenario};

/// One expected field of one name, and what the report said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub field: &'static str,
    pub expected: String,
    /// `None` when the report has no value there (or no record for the name).
    pub actual: Option<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.actual.as_deref() == Some(self.expected.as_str())
    }
}

/// Every check of a report against a scenario.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub checks: Vec<Check>,
    /// Scenario names with no record in the report.
    pub missing: Vec<String>,
}

impl Comparison {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed())
    }

    pub fn is_perfect(&self) -> bool {
        self.missing.is_empty() && self.checks.iter().all(Check::passed)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passed = self.checks.iter().filter(|c| c.passed()).count();
        writeln!(
            f,
            "expectations: {passed}/{} checks pass, {} names without a record",
            self.checks.len(),
            self.missing.len()
        )?;
        for check in self.failures() {
            writeln!(
                f,
                "  MISMATCH {:<32} {:<11} expected {:<16} got {}",
                check.name,
                check.field,
                check.expected,
                check.actual.as_deref().unwrap_or("(nothing)")
            )?;
        }
        for name in &self.missing {
            writeln!(f, "  MISSING  {name}: no record in the report")?;
        }
        Ok(())
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

fn expected_fields(expect: &Expectation) -> Vec<(&'static str, [&'static str; 2], String)> {
    let mut fields = Vec::new();
    if let Some(v) = expect.dns {
        fields.push(("dns", ["dns", "verdict"], v.as_str().to_owned()));
    }
    if let Some(v) = expect.dns_method {
        fields.push(("dns_method", ["dns", "method"], v.as_str().to_owned()));
    }
    for (field, path, value) in [
        ("http", ["http", "verdict"], &expect.http),
        ("http_stage", ["http", "stage"], &expect.http_stage),
        ("tls", ["tls", "verdict"], &expect.tls),
        ("tls_stage", ["tls", "stage"], &expect.tls_stage),
    ] {
        if let Some(v) = value {
            fields.push((field, path, v.clone()));
        }
    }
    if let Some(b) = expect.blocking {
        fields.push(("blocking", ["blocking", ""], b.to_string()));
    }
    fields
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
        let record = records.get(&entry.name);
        if record.is_none() {
            comparison.missing.push(entry.name.clone());
        }
        for (field, [outer, inner], expected) in expected_fields(&entry.expect) {
            let actual = record.and_then(|r| {
                let outer = r.get(outer);
                if inner.is_empty() {
                    text(outer)
                } else {
                    text(outer.and_then(|o| o.get(inner)))
                }
            });
            comparison.checks.push(Check {
                name: entry.name.clone(),
                field,
                expected,
                actual,
            });
        }
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
expect = { dns = "dns_poisoning", dns_method = "injection", http = "ok", blocking = "dns" }

[[names]]
name = "b.example"
a = ["198.19.1.1"]
expect = { http = "rst_injection", http_stage = "request", blocking = false }

[[names]]
name = "c.example"
a = ["198.19.1.1"]
expect = { dns = "ok" }
"#;

    #[test]
    fn every_expected_field_is_checked_against_the_report() {
        let scenario = Scenario::parse(SCENARIO, Path::new("t.toml")).unwrap();
        let report = [
            r#"{"type":"header","tool":"censorprobe"}"#,
            r#"{"domain":"a.example","dns":{"verdict":"dns_poisoning","method":"injection"},"http":{"verdict":"ok"},"blocking":"dns"}"#,
            r#"{"domain":"b.example","http":{"verdict":"rst_injection","stage":"response"},"blocking":false}"#,
            r#"{"type":"summary"}"#,
        ]
        .join("\n");
        let comparison = compare(&scenario, &report);
        assert_eq!(comparison.checks.len(), 8);
        assert_eq!(comparison.missing, vec!["c.example".to_owned()]);
        let failures: Vec<(&str, &str)> = comparison
            .failures()
            .map(|c| (c.name.as_str(), c.field))
            .collect();
        assert_eq!(
            failures,
            vec![("b.example", "http_stage"), ("c.example", "dns")]
        );
        assert!(!comparison.is_perfect());
        let text = comparison.to_string();
        assert!(text.contains("6/8 checks pass"), "{text}");
        assert!(text.contains("MISSING  c.example"), "{text}");
    }
}
