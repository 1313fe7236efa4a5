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

use crate::report::outcome::{AnyStage, TargetOutcome, blocking_text};

use crate::report::read::LoadedReport;
use crate::vocab::{
    Blocking, BlockingKey, DnsVerdict, HttpVerdict, PoisoningMethod, Stage, StageName,
    StageVerdict, TlsVerdict,
};

type Result<T, E = CheckError> = std::result::Result<T, E>;

/// Why an expectations file cannot be checked. The cause is the
/// [`source`](std::error::Error::source) where there is one, not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    #[error("expectations {path}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("expectations {path}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: OneLineToml,
    },
    #[error("expectations {path}: {reason}")]
    BadExpectations { path: PathBuf, reason: String },
}

/// A TOML error shown on one line: `check` reports a usage error as one line of stderr,
/// and toml's own message spans several (it quotes the line with a caret).
#[derive(Debug)]
pub struct OneLineToml(pub toml::de::Error);

impl std::fmt::Display for OneLineToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&one_line(&self.0.to_string()))
    }
}

/// The TOML error is this one's text (on one line), so it is not a further source.
impl std::error::Error for OneLineToml {}
use crate::targets::normalize_host;
use crate::vocab::BlockingLayer;

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

/// One condition on an outcome.
#[derive(Debug, Clone)]
pub enum Condition {
    Blocked(bool),
    Blocking(Vec<Blocking>),
    Accessible(bool),
    DnsVerdict(Vec<DnsVerdict>),
    HttpVerdict(Vec<HttpVerdict>),
    TlsVerdict(Vec<TlsVerdict>),
    /// `dns_method`: the poisoning method.
    DnsMethod(Vec<PoisoningMethod>),
    /// `http_method`, `tls_method`: accepted for symmetry; the web stages record no
    /// method, so it never holds.
    WebMethod(StageName, Vec<String>),
    /// `<stage>_stage`: where in the connection the stage's outcome happened.
    Where(StageName, Vec<Stage>),
    MinConsistency(f64),
}

fn list<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let values: Vec<&str> = values.into_iter().collect();
    if values.len() == 1 {
        values[0].to_owned()
    } else {
        format!("one of [{}]", values.join(", "))
    }
}

fn verdicts<V: StageVerdict>(values: &[V]) -> String {
    list(values.iter().map(|v| v.name()))
}

/// The stage's verdict is one of `any_of`.
fn verdict_in<V: StageVerdict>(
    stage: Option<&crate::report::outcome::StageOutcome<V>>,
    any_of: &[V],
) -> bool {
    stage
        .and_then(|s| s.verdict.verdict())
        .is_some_and(|v| any_of.contains(&v))
}

impl Condition {
    /// The stage and field (`verdict`, `method`, `stage`) a stage condition is about.
    fn stage_field(&self) -> Option<(StageName, &'static str)> {
        Some(match self {
            Condition::DnsVerdict(_) => (StageName::Dns, "verdict"),
            Condition::HttpVerdict(_) => (StageName::Http, "verdict"),
            Condition::TlsVerdict(_) => (StageName::Tls, "verdict"),
            Condition::DnsMethod(_) => (StageName::Dns, "method"),
            Condition::WebMethod(stage, _) => (*stage, "method"),
            Condition::Where(stage, _) => (*stage, "stage"),
            _ => return None,
        })
    }

    /// What is expected, e.g. `dns verdict dns_poisoning`.
    pub fn expected(&self) -> String {
        let stage_values = match self {
            Condition::Blocked(true) => return "blocked".to_owned(),
            Condition::Blocked(false) => return "not blocked".to_owned(),
            Condition::Blocking(values) => {
                return format!(
                    "blocking {}",
                    list(values.iter().map(|b| BlockingKey::from(*b).as_str()))
                );
            }
            Condition::Accessible(true) => return "accessible".to_owned(),
            Condition::Accessible(false) => return "not accessible".to_owned(),
            Condition::MinConsistency(min) => return format!("consistency >= {min}"),
            Condition::DnsVerdict(values) => verdicts(values),
            Condition::HttpVerdict(values) => verdicts(values),
            Condition::TlsVerdict(values) => verdicts(values),
            Condition::DnsMethod(values) => list(values.iter().map(|m| m.as_str())),
            Condition::WebMethod(_, values) => list(values.iter().map(String::as_str)),
            Condition::Where(_, values) => list(values.iter().map(|w| w.as_str())),
        };
        let (stage, field) = self.stage_field().expect("a stage condition");
        format!("{stage} {field} {stage_values}")
    }

    /// What was observed, for the same aspect.
    pub fn observed(&self, outcome: &TargetOutcome) -> String {
        match self {
            Condition::Blocked(_) => blocking_text(outcome.blocking),
            Condition::Blocking(_) => {
                format!("blocking {}", BlockingKey::from(outcome.blocking))
            }
            Condition::Accessible(_) => match outcome.accessible {
                Some(true) => "accessible".to_owned(),
                Some(false) => "not accessible".to_owned(),
                None => "accessible null".to_owned(),
            },
            Condition::MinConsistency(_) => format!(
                "consistency {} over {} attempt(s)",
                outcome.consistency, outcome.attempts
            ),
            _ => {
                let (stage, field) = self.stage_field().expect("a stage condition");
                match outcome.stage(stage) {
                    None => format!("{stage} not measured"),
                    Some(s) => {
                        let value = match self {
                            Condition::DnsMethod(_) | Condition::WebMethod(..) => {
                                s.method().map(PoisoningMethod::as_str)
                            }
                            Condition::Where(..) => s.place().map(Stage::as_str),
                            _ => Some(s.verdict_name()),
                        };
                        format!("{stage} {field} {} [{s}]", value.unwrap_or("null"))
                    }
                }
            }
        }
    }

    pub fn holds(&self, outcome: &TargetOutcome) -> bool {
        let stages = &outcome.stages;
        match self {
            Condition::Blocked(blocked) => match outcome.blocking {
                Blocking::At(_) => *blocked,
                Blocking::No => !*blocked,
                // An inconclusive measurement proves neither.
                Blocking::Inconclusive => false,
            },
            Condition::Blocking(values) => values.contains(&outcome.blocking),
            Condition::Accessible(accessible) => outcome.accessible == Some(*accessible),
            Condition::DnsVerdict(any_of) => verdict_in(stages.dns.as_ref(), any_of),
            Condition::HttpVerdict(any_of) => verdict_in(stages.http.as_ref(), any_of),
            Condition::TlsVerdict(any_of) => verdict_in(stages.tls.as_ref(), any_of),
            Condition::DnsMethod(any_of) => stages
                .dns
                .and_then(|s| s.method)
                .is_some_and(|m| any_of.contains(&m)),
            Condition::WebMethod(..) => false,
            Condition::Where(stage, any_of) => outcome
                .stage(*stage)
                .and_then(AnyStage::place)
                .is_some_and(|w| any_of.contains(&w)),
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
        let text = std::fs::read_to_string(path).map_err(|source| CheckError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Expectations::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Expectations> {
        let bad = |reason: String| CheckError::BadExpectations {
            path: path.to_owned(),
            reason,
        };
        let file: ExpectFile = toml::from_str(text).map_err(|e| CheckError::Syntax {
            path: path.to_owned(),
            source: OneLineToml(e),
        })?;
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

/// Parses each value against the closed vocabulary `all`; the error names the key,
/// the value and what is allowed, on one line.
fn parse_values<T: Copy>(
    key: &str,
    values: &[String],
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<Vec<T>, String> {
    if values.is_empty() {
        return Err(format!("{key}: empty list"));
    }
    values
        .iter()
        .map(|value| {
            all.iter()
                .copied()
                .find(|v| name(*v) == value)
                .ok_or_else(|| {
                    let allowed: Vec<&str> = all.iter().map(|v| name(*v)).collect();
                    format!(
                        "{key}: unknown value {value:?} (expected one of {})",
                        allowed.join(", ")
                    )
                })
        })
        .collect()
}

fn parse_verdicts<V: StageVerdict>(key: &str, values: OneOrMany) -> Result<Vec<V>, String> {
    parse_values(key, &values.into_vec(), V::ALL, V::name)
}

fn parse_blocking(value: toml::Value) -> Result<Vec<Blocking>, String> {
    let items = match value {
        toml::Value::Array(items) => items,
        one => vec![one],
    };
    let mut values = Vec::new();
    for item in items {
        let layer = match &item {
            toml::Value::String(s) => BlockingLayer::ALL.iter().copied().find(|l| l.as_str() == s),
            _ => None,
        };
        values.push(match (item, layer) {
            (toml::Value::Boolean(false), _) => Blocking::No,
            (_, Some(layer)) => Blocking::At(layer),
            (other, None) => {
                let layers: Vec<&str> = BlockingLayer::ALL.iter().map(|l| l.as_str()).collect();
                return Err(format!(
                    "blocking: {other} is not false or one of {}",
                    layers.join(", ")
                ));
            }
        });
    }
    if values.is_empty() {
        return Err("blocking: empty list".to_owned());
    }
    Ok(values)
}

/// The per-stage conditions, in the order of the keys: each stage's verdict, method
/// and place.
fn stage_conditions(spec: StageSpecs) -> Result<Vec<Condition>, String> {
    let mut conditions = Vec::new();
    if let Some(values) = spec.dns {
        conditions.push(Condition::DnsVerdict(parse_verdicts("dns", values)?));
    }
    if let Some(values) = spec.dns_method {
        let methods = parse_values(
            "dns_method",
            &values.into_vec(),
            PoisoningMethod::ALL,
            PoisoningMethod::as_str,
        )?;
        conditions.push(Condition::DnsMethod(methods));
    }
    if let Some(values) = spec.http {
        conditions.push(Condition::HttpVerdict(parse_verdicts("http", values)?));
    }
    web_conditions(
        StageName::Http,
        spec.http_method,
        spec.http_stage,
        Stage::HTTP,
        &mut conditions,
    )?;
    if let Some(values) = spec.tls {
        conditions.push(Condition::TlsVerdict(parse_verdicts("tls", values)?));
    }
    web_conditions(
        StageName::Tls,
        spec.tls_method,
        spec.tls_stage,
        Stage::TLS,
        &mut conditions,
    )?;
    Ok(conditions)
}

/// A web stage's `<stage>_method` and `<stage>_stage` conditions.
fn web_conditions(
    stage: StageName,
    method: Option<OneOrMany>,
    place: Option<OneOrMany>,
    places: &[Stage],
    conditions: &mut Vec<Condition>,
) -> Result<(), String> {
    if let Some(values) = method {
        let values = values.into_vec();
        if values.is_empty() {
            return Err(format!("{stage}_method: empty list"));
        }
        conditions.push(Condition::WebMethod(stage, values));
    }
    if let Some(values) = place {
        let key = format!("{stage}_stage");
        let places = parse_values(&key, &values.into_vec(), places, Stage::as_str)?;
        conditions.push(Condition::Where(stage, places));
    }
    Ok(())
}

/// The stage keys of an `[[expect]]` table.
struct StageSpecs {
    dns: Option<OneOrMany>,
    dns_method: Option<OneOrMany>,
    http: Option<OneOrMany>,
    http_method: Option<OneOrMany>,
    http_stage: Option<OneOrMany>,
    tls: Option<OneOrMany>,
    tls_method: Option<OneOrMany>,
    tls_stage: Option<OneOrMany>,
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
        conditions.push(Condition::Blocking(parse_blocking(blocking)?));
    }
    if let Some(accessible) = spec.accessible {
        conditions.push(Condition::Accessible(accessible));
    }
    conditions.extend(stage_conditions(StageSpecs {
        dns: spec.dns,
        dns_method: spec.dns_method,
        http: spec.http,
        http_method: spec.http_method,
        http_stage: spec.http_stage,
        tls: spec.tls,
        tls_method: spec.tls_method,
        tls_stage: spec.tls_stage,
    })?);
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
    fn load_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let err = Expectations::load(&dir.path().join("missing.toml")).unwrap_err();
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        assert!(source.is::<std::io::Error>(), "{source:?}");
        let err = parse("[[expect]\n").unwrap_err();
        let source = std::error::Error::source(&err).expect("the TOML error is kept");
        let toml = source
            .downcast_ref::<OneLineToml>()
            .expect("the TOML error");
        assert!(!toml.to_string().contains('\n'), "{toml}");
        assert!(!toml.0.message().is_empty());
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
            let error = parse(text).unwrap_err();
            // As the binary prints it: the error and its sources.
            let err = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
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
        let method = Condition::DnsMethod(vec![PoisoningMethod::Bogon, PoisoningMethod::Injection]);
        assert!(method.holds(&poisoned));
        assert!(!method.holds(&unknown));
        assert_eq!(method.observed(&unknown), "dns method null [timeout]");
        let http = Condition::HttpVerdict(vec![HttpVerdict::Ok]);
        assert!(!http.holds(&poisoned));
        assert_eq!(http.observed(&poisoned), "http not measured");
        assert!(
            Condition::Blocking(vec![Blocking::At(crate::vocab::BlockingLayer::Dns)])
                .holds(&poisoned)
        );
        assert!(Condition::Accessible(false).holds(&poisoned));
        assert!(!Condition::Accessible(true).holds(&unknown));
        assert!(Condition::MinConsistency(1.0).holds(&poisoned));
    }
}
