//! `censorprobe check --expect FILE`: what must hold, per domain or pattern, and
//! whether it does.
//!
//! ```toml
//! [[expect]]
//! domain = "blocked.example"        # or domains = [...], or pattern = "*.example.org"
//! blocked = true                    # some stage is blocked (false: nothing is)
//! dns = "dns_poisoning"             # a verdict, or a list: one of several
//! dns_method = ["injection", "known_forged_ip"]
//!
//! [[expect]]
//! name = "our mirrors are reachable"  # the test case's name (optional)
//! pattern = "*.mirror.example"
//! accessible = true
//! min_consistency = 0.8             # with --repeat: attempts must agree this much
//! ```
//!
//! Keys: `blocked` (bool), `blocking` (`false`, `"dns"`, `"tcp_ip"`, `"http"`, `"tls"`
//! or a list), `accessible` (bool), per stage `dns`/`http`/`tls` (verdict),
//! `<stage>_method` and `<stage>_stage` (where it happened), each a value or a list,
//! and `min_consistency`. An expectation holds for a domain when every key holds; a
//! pattern must match at least one measured domain and holds when it holds for each.
//! A domain that was not measured fails. Unknown keys and values are input errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::outcome::{
    BLOCKING_STAGES, Blocking, TargetOutcome, stage_methods, stage_verdicts, stage_wheres,
};
use super::reader::LoadedReport;
use crate::error::{Error, Result};
use crate::targets::normalize_host;

/// A TOML value that may be one string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// One `[[expect]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    name: Option<String>,
    domain: Option<String>,
    domains: Option<Vec<String>>,
    pattern: Option<String>,
    blocked: Option<bool>,
    blocking: Option<toml::Value>,
    accessible: Option<bool>,
    dns: Option<OneOrMany>,
    dns_method: Option<OneOrMany>,
    http: Option<OneOrMany>,
    http_method: Option<OneOrMany>,
    http_stage: Option<OneOrMany>,
    tls: Option<OneOrMany>,
    tls_method: Option<OneOrMany>,
    tls_stage: Option<OneOrMany>,
    min_consistency: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    #[serde(default)]
    expect: Vec<ExpectSpec>,
}

/// Which domains an expectation is about.
#[derive(Debug, Clone)]
pub enum Selector {
    Domains(Vec<String>),
    Pattern(glob::Pattern),
}

impl Selector {
    fn describe(&self) -> String {
        match self {
            Selector::Domains(domains) => domains.join(", "),
            Selector::Pattern(pattern) => pattern.as_str().to_owned(),
        }
    }
}

/// What a stage field of an outcome is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageField {
    Verdict,
    Method,
    Where,
}

/// One condition on an outcome.
#[derive(Debug, Clone)]
pub enum Condition {
    Blocked(bool),
    Blocking(Vec<Blocking>),
    Accessible(bool),
    Stage {
        stage: &'static str,
        field: StageField,
        any_of: Vec<String>,
    },
    MinConsistency(f64),
}

fn list(values: &[String]) -> String {
    if values.len() == 1 {
        values[0].clone()
    } else {
        format!("one of [{}]", values.join(", "))
    }
}

impl Condition {
    /// What is expected, e.g. `dns verdict dns_poisoning`.
    pub fn expected(&self) -> String {
        match self {
            Condition::Blocked(true) => "blocked".to_owned(),
            Condition::Blocked(false) => "not blocked".to_owned(),
            Condition::Blocking(values) => format!(
                "blocking {}",
                list(&values.iter().map(Blocking::key).collect::<Vec<_>>())
            ),
            Condition::Accessible(true) => "accessible".to_owned(),
            Condition::Accessible(false) => "not accessible".to_owned(),
            Condition::Stage {
                stage,
                field,
                any_of,
            } => {
                let field = match field {
                    StageField::Verdict => "verdict",
                    StageField::Method => "method",
                    StageField::Where => "stage",
                };
                format!("{stage} {field} {}", list(any_of))
            }
            Condition::MinConsistency(min) => format!("consistency >= {min}"),
        }
    }

    /// What was observed, for the same aspect.
    pub fn observed(&self, outcome: &TargetOutcome) -> String {
        let null = || "null".to_owned();
        match self {
            Condition::Blocked(_) => outcome.blocking.to_string(),
            Condition::Blocking(_) => format!("blocking {}", outcome.blocking.key()),
            Condition::Accessible(_) => match outcome.accessible {
                Some(true) => "accessible".to_owned(),
                Some(false) => "not accessible".to_owned(),
                None => "accessible null".to_owned(),
            },
            Condition::Stage { stage, field, .. } => match outcome.stage(stage) {
                None => format!("{stage} not measured"),
                Some(s) => {
                    let (name, value) = match field {
                        StageField::Verdict => ("verdict", Some(s.verdict.clone())),
                        StageField::Method => ("method", s.method.clone()),
                        StageField::Where => ("stage", s.stage.clone()),
                    };
                    format!("{stage} {name} {} [{s}]", value.unwrap_or_else(null))
                }
            },
            Condition::MinConsistency(_) => format!(
                "consistency {} over {} attempt(s)",
                outcome.consistency, outcome.attempts
            ),
        }
    }

    pub fn holds(&self, outcome: &TargetOutcome) -> bool {
        match self {
            Condition::Blocked(blocked) => match outcome.blocking {
                Blocking::Blocked(_) => *blocked,
                Blocking::NotBlocked => !*blocked,
                // An inconclusive measurement proves neither.
                Blocking::Unknown => false,
            },
            Condition::Blocking(values) => values.contains(&outcome.blocking),
            Condition::Accessible(accessible) => outcome.accessible == Some(*accessible),
            Condition::Stage {
                stage,
                field,
                any_of,
            } => outcome.stage(stage).is_some_and(|s| {
                let value = match field {
                    StageField::Verdict => Some(&s.verdict),
                    StageField::Method => s.method.as_ref(),
                    StageField::Where => s.stage.as_ref(),
                };
                value.is_some_and(|v| any_of.contains(v))
            }),
            Condition::MinConsistency(min) => outcome.consistency + 1e-9 >= *min,
        }
    }
}

/// One expectation, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub name: String,
    pub selector: Selector,
    pub conditions: Vec<Condition>,
}

impl Expectation {
    /// `dns verdict dns_poisoning, blocked`.
    pub fn expected(&self) -> String {
        self.conditions
            .iter()
            .map(Condition::expected)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A parsed expectations file.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub path: PathBuf,
    pub items: Vec<Expectation>,
}

impl Expectations {
    pub fn load(path: &Path) -> Result<Expectations> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::BadExpectations {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Expectations::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Expectations> {
        let bad = |reason: String| Error::BadExpectations {
            path: path.to_owned(),
            reason,
        };
        let file: ExpectFile = toml::from_str(text).map_err(|e| bad(one_line(&e.to_string())))?;
        if file.expect.is_empty() {
            return Err(bad("no [[expect]] tables".to_owned()));
        }
        let items = file
            .expect
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                expectation(spec).map_err(|reason| bad(format!("[[expect]] #{}: {reason}", i + 1)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Expectations {
            path: path.to_owned(),
            items,
        })
    }

    /// The domains the expectations name exactly (patterns name none): what `check`
    /// measures when no targets are given, and always measures in addition to them.
    pub fn domains(&self) -> Vec<String> {
        let mut domains = Vec::new();
        for item in &self.items {
            if let Selector::Domains(names) = &item.selector {
                for name in names {
                    if !domains.contains(name) {
                        domains.push(name.clone());
                    }
                }
            }
        }
        domains
    }

    /// Evaluates every expectation against a report.
    pub fn evaluate(&self, report: &LoadedReport) -> CheckOutcome {
        let results = self
            .items
            .iter()
            .map(|item| {
                let domains: Vec<Option<&TargetOutcome>> = match &item.selector {
                    Selector::Domains(names) => names.iter().map(|n| report.outcome(n)).collect(),
                    Selector::Pattern(pattern) => report
                        .outcomes
                        .iter()
                        .filter(|o| pattern.matches(&o.domain))
                        .map(Some)
                        .collect(),
                };
                let mut cases = Vec::new();
                match &item.selector {
                    Selector::Domains(names) => {
                        for (name, outcome) in names.iter().zip(&domains) {
                            cases.push(case(item, name, *outcome));
                        }
                    }
                    Selector::Pattern(pattern) => {
                        for outcome in domains.iter().flatten() {
                            cases.push(case(item, &outcome.domain, Some(outcome)));
                        }
                        if cases.is_empty() {
                            cases.push(DomainCase {
                                domain: None,
                                observed: "no measured domain matches".to_owned(),
                                failures: vec![format!(
                                    "pattern {} matches no measured domain",
                                    pattern.as_str()
                                )],
                            });
                        }
                    }
                }
                ExpectationResult {
                    name: item.name.clone(),
                    expected: item.expected(),
                    cases,
                }
            })
            .collect();
        CheckOutcome { results }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn case(item: &Expectation, domain: &str, outcome: Option<&TargetOutcome>) -> DomainCase {
    let Some(outcome) = outcome else {
        return DomainCase {
            domain: Some(domain.to_owned()),
            observed: "not measured".to_owned(),
            failures: vec!["not measured (no record in the report)".to_owned()],
        };
    };
    let failures = item
        .conditions
        .iter()
        .filter(|c| !c.holds(outcome))
        .map(|c| {
            format!(
                "expected {}, observed {}",
                c.expected(),
                c.observed(outcome)
            )
        })
        .collect();
    DomainCase {
        domain: Some(domain.to_owned()),
        observed: outcome.describe(),
        failures,
    }
}

fn normalise_domain(input: &str) -> Result<String, String> {
    normalize_host(input)
        .map(|h| h.name())
        .map_err(|e| format!("domain {input:?}: {e}"))
}

fn check_values(key: &str, values: &[String], allowed: Option<&[&str]>) -> Result<(), String> {
    if values.is_empty() {
        return Err(format!("{key}: empty list"));
    }
    if let Some(allowed) = allowed {
        for value in values {
            if !allowed.contains(&value.as_str()) {
                return Err(format!(
                    "{key}: unknown value {value:?} (expected one of {})",
                    allowed.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn expectation(spec: ExpectSpec) -> Result<Expectation, String> {
    let selector = match (spec.domain, spec.domains, spec.pattern) {
        (Some(domain), None, None) => Selector::Domains(vec![normalise_domain(&domain)?]),
        (None, Some(domains), None) if !domains.is_empty() => Selector::Domains(
            domains
                .iter()
                .map(|d| normalise_domain(d))
                .collect::<Result<_, _>>()?,
        ),
        (None, None, Some(pattern)) => Selector::Pattern(
            glob::Pattern::new(&pattern.trim().trim_end_matches('.').to_ascii_lowercase())
                .map_err(|e| format!("pattern {pattern:?}: {e}"))?,
        ),
        _ => return Err("give exactly one of domain, domains (non-empty) or pattern".to_owned()),
    };
    let mut conditions = Vec::new();
    if let Some(blocked) = spec.blocked {
        conditions.push(Condition::Blocked(blocked));
    }
    if let Some(blocking) = spec.blocking {
        let items = match blocking {
            toml::Value::Array(items) => items,
            one => vec![one],
        };
        let mut values = Vec::new();
        for item in items {
            values.push(match item {
                toml::Value::Boolean(false) => Blocking::NotBlocked,
                toml::Value::String(s) if BLOCKING_STAGES.contains(&s.as_str()) => {
                    Blocking::Blocked(s)
                }
                other => {
                    return Err(format!(
                        "blocking: {other} is not false or one of {}",
                        BLOCKING_STAGES.join(", ")
                    ));
                }
            });
        }
        if values.is_empty() {
            return Err("blocking: empty list".to_owned());
        }
        conditions.push(Condition::Blocking(values));
    }
    if let Some(accessible) = spec.accessible {
        conditions.push(Condition::Accessible(accessible));
    }
    let stage_keys: [(&'static str, StageField, Option<OneOrMany>); 8] = [
        ("dns", StageField::Verdict, spec.dns),
        ("dns", StageField::Method, spec.dns_method),
        ("http", StageField::Verdict, spec.http),
        ("http", StageField::Method, spec.http_method),
        ("http", StageField::Where, spec.http_stage),
        ("tls", StageField::Verdict, spec.tls),
        ("tls", StageField::Method, spec.tls_method),
        ("tls", StageField::Where, spec.tls_stage),
    ];
    for (stage, field, values) in stage_keys {
        let Some(values) = values else { continue };
        let values = values.into_vec();
        let (key, allowed) = match field {
            StageField::Verdict => (stage.to_owned(), Some(stage_verdicts(stage))),
            StageField::Method => (format!("{stage}_method"), stage_methods(stage)),
            StageField::Where => (format!("{stage}_stage"), stage_wheres(stage)),
        };
        check_values(&key, &values, allowed.as_deref())?;
        conditions.push(Condition::Stage {
            stage,
            field,
            any_of: values,
        });
    }
    if let Some(min) = spec.min_consistency {
        if !(0.0..=1.0).contains(&min) {
            return Err(format!("min_consistency {min} is not between 0 and 1"));
        }
        conditions.push(Condition::MinConsistency(min));
    }
    if conditions.is_empty() {
        return Err(
            "states nothing to check (blocked, blocking, accessible, dns, http, tls, ...)"
                .to_owned(),
        );
    }
    let mut expectation = Expectation {
        name: String::new(),
        selector,
        conditions,
    };
    expectation.name = spec.name.unwrap_or_else(|| {
        format!(
            "{}: {}",
            expectation.selector.describe(),
            expectation.expected()
        )
    });
    Ok(expectation)
}

/// The outcome of one expectation for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCase {
    /// None for a pattern that matched nothing.
    pub domain: Option<String>,
    /// What the report says about the domain, in one line.
    pub observed: String,
    /// Why it does not hold (empty: it holds).
    pub failures: Vec<String>,
}

impl DomainCase {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The outcome of one expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectationResult {
    pub name: String,
    pub expected: String,
    pub cases: Vec<DomainCase>,
}

impl ExpectationResult {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(DomainCase::passed)
    }

    /// One line per failing domain: `FAIL name: domain: expected ..., observed ...`.
    pub fn failure_lines(&self) -> Vec<String> {
        self.cases
            .iter()
            .filter(|c| !c.passed())
            .map(|c| {
                format!(
                    "FAIL {}: {}: {}",
                    self.name,
                    c.domain.as_deref().unwrap_or("-"),
                    c.failures.join("; ")
                )
            })
            .collect()
    }
}

/// Every expectation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub results: Vec<ExpectationResult>,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        self.results.iter().all(ExpectationResult::passed)
    }

    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| !r.passed()).count()
    }

    pub fn failure_lines(&self) -> Vec<String> {
        self.results
            .iter()
            .flat_map(ExpectationResult::failure_lines)
            .collect()
    }

    /// Counts for the closing line.
    pub fn totals(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("expectations", self.results.len()),
            ("failed", self.failures()),
            ("passed", self.results.len() - self.failures()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Expectations> {
        Expectations::parse(Path::new("e.toml"), text)
    }

    #[test]
    fn parses_every_key() {
        let e = parse(
            r#"
            [[expect]]
            domain = "Blocked.Example."
            blocked = true
            dns = "dns_poisoning"
            dns_method = ["injection", "known_forged_ip"]

            [[expect]]
            name = "mirrors"
            pattern = "*.mirror.example"
            accessible = true
            blocking = [false]
            http = ["ok"]
            http_stage = "response"
            tls = "ok"
            tls_stage = ["handshake"]
            min_consistency = 0.5

            [[expect]]
            domains = ["a.example", "b.example"]
            blocking = ["dns", "http"]
            "#,
        )
        .unwrap();
        assert_eq!(e.items.len(), 3);
        assert_eq!(
            e.items[0].name,
            "blocked.example: blocked, dns verdict dns_poisoning, dns method one of [injection, known_forged_ip]"
        );
        assert_eq!(e.items[1].name, "mirrors");
        assert_eq!(e.items[1].conditions.len(), 7);
        assert_eq!(e.domains(), ["blocked.example", "a.example", "b.example"]);
    }

    #[test]
    fn input_errors_say_what_is_wrong() {
        let cases = [
            ("", "no [[expect]]"),
            (
                "[[expect]]\ndomain = \"a.example\"\nblockd = true\n",
                "blockd",
            ),
            ("[[expect]]\ndomain = \"a.example\"\n", "states nothing"),
            ("[[expect]]\nblocked = true\n", "exactly one of"),
            (
                "[[expect]]\ndomain = \"a.example\"\npattern = \"*\"\nblocked = true\n",
                "exactly one of",
            ),
            (
                "[[expect]]\ndomain = \"a.example\"\ndns = \"poisoned\"\n",
                "\"poisoned\"",
            ),
            (
                "[[expect]]\ndomain = \"a.example\"\ndns_method = \"guess\"\n",
                "guess",
            ),
            (
                "[[expect]]\ndomain = \"a.example\"\nhttp_stage = \"tls\"\n",
                "http_stage",
            ),
            (
                "[[expect]]\ndomain = \"a.example\"\nblocking = true\n",
                "blocking",
            ),
            (
                "[[expect]]\ndomain = \"a.example\"\nblocking = \"dnss\"\n",
                "dnss",
            ),
            (
                "[[expect]]\ndomain = \"a example\"\nblocked = true\n",
                "a example",
            ),
            ("[[expect]]\npattern = \"[\"\nblocked = true\n", "pattern"),
            (
                "[[expect]]\ndomain = \"a.example\"\nmin_consistency = 2.0\n",
                "min_consistency",
            ),
            ("[[expect]\n", "e.toml"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    fn outcome(json: &serde_json::Value) -> TargetOutcome {
        TargetOutcome::from_value(json).unwrap()
    }

    #[test]
    fn conditions_hold_or_say_why_not() {
        let poisoned = outcome(
            &serde_json::json!({"domain": "x.example", "dns": {"verdict": "dns_poisoning", "method": "injection"}}),
        );
        let unknown =
            outcome(&serde_json::json!({"domain": "x.example", "dns": {"verdict": "timeout"}}));
        let blocked = Condition::Blocked(true);
        assert!(blocked.holds(&poisoned));
        assert!(!blocked.holds(&unknown));
        assert!(
            !Condition::Blocked(false).holds(&unknown),
            "unknown proves neither"
        );
        let method = Condition::Stage {
            stage: "dns",
            field: StageField::Method,
            any_of: vec!["bogon".into(), "injection".into()],
        };
        assert!(method.holds(&poisoned));
        assert!(!method.holds(&unknown));
        assert_eq!(method.observed(&unknown), "dns method null [timeout]");
        let http = Condition::Stage {
            stage: "http",
            field: StageField::Verdict,
            any_of: vec!["ok".into()],
        };
        assert!(!http.holds(&poisoned));
        assert_eq!(http.observed(&poisoned), "http not measured");
        assert!(Condition::Blocking(vec![Blocking::Blocked("dns".into())]).holds(&poisoned));
        assert!(Condition::Accessible(false).holds(&poisoned));
        assert!(!Condition::Accessible(true).holds(&unknown));
        assert!(Condition::MinConsistency(1.0).holds(&poisoned));
    }
}
