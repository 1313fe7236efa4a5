//! A generic view of one target's measurement: each stage's verdict, the target's
//! blocking and accessibility.
//!
//! The writer builds it from the typed record (`From<&TargetRecord>`); the workflows
//! that read reports back build it from a [`RecordHead`], the tolerant typed projection
//! of a record's JSON that the report reader yields, tolerating records that lack the
//! web stages or the target-level fields. Every
//! stage is read the same way: `verdict`, optional `method`, optional `stage`, each
//! typed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::record::TargetRecord;
use crate::vocab::{
    Blocking, BlockingLayer, Claim, DnsVerdict, HttpVerdict, Majority, PoisoningMethod, Stage,
    StageName, StageVerdict, TlsVerdict,
};

/// One stage's verdict as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageOutcome<V> {
    pub verdict: Majority<V>,
    /// The poisoning method (DNS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<PoisoningMethod>,
    /// Where in the connection it happened (HTTP, TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
}

impl<V: StageVerdict> StageOutcome<V> {
    fn claim(&self) -> Claim {
        match self.verdict {
            Majority::Of(verdict) => verdict.blocking_claim(self.stage),
            Majority::NoMajority => Claim::Unclear,
            Majority::NotRun => Claim::NotRun,
        }
    }
}

impl<V: StageVerdict> fmt::Display for StageOutcome<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verdict.as_str())?;
        match (self.method, self.stage) {
            (Some(method), Some(at)) => write!(f, " ({}, at {})", method.as_str(), at.as_str()),
            (Some(method), None) => write!(f, " ({})", method.as_str()),
            (None, Some(at)) => write!(f, " (at {})", at.as_str()),
            (None, None) => Ok(()),
        }
    }
}

/// One stage of an outcome, whichever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyStage<'a> {
    Dns(&'a StageOutcome<DnsVerdict>),
    Http(&'a StageOutcome<HttpVerdict>),
    Tls(&'a StageOutcome<TlsVerdict>),
}

impl AnyStage<'_> {
    pub fn name(self) -> StageName {
        match self {
            AnyStage::Dns(_) => StageName::Dns,
            AnyStage::Http(_) => StageName::Http,
            AnyStage::Tls(_) => StageName::Tls,
        }
    }

    /// The verdict's wire name (`no_majority` for a consensus without one).
    pub fn verdict_name(self) -> &'static str {
        match self {
            AnyStage::Dns(s) => s.verdict.as_str(),
            AnyStage::Http(s) => s.verdict.as_str(),
            AnyStage::Tls(s) => s.verdict.as_str(),
        }
    }

    pub fn method(self) -> Option<PoisoningMethod> {
        match self {
            AnyStage::Dns(s) => s.method,
            AnyStage::Http(s) => s.method,
            AnyStage::Tls(s) => s.method,
        }
    }

    /// Where in the connection it happened.
    pub fn place(self) -> Option<Stage> {
        match self {
            AnyStage::Dns(s) => s.stage,
            AnyStage::Http(s) => s.stage,
            AnyStage::Tls(s) => s.stage,
        }
    }

    pub fn is_ok(self) -> bool {
        match self {
            AnyStage::Dns(s) => s.verdict.is_ok(),
            AnyStage::Http(s) => s.verdict.is_ok(),
            AnyStage::Tls(s) => s.verdict.is_ok(),
        }
    }

    fn is_nxdomain(self) -> bool {
        match self {
            AnyStage::Dns(s) => s.verdict.verdict().is_some_and(StageVerdict::is_nxdomain),
            AnyStage::Http(_) | AnyStage::Tls(_) => false,
        }
    }

    fn claim(self) -> Claim {
        match self {
            AnyStage::Dns(s) => s.claim(),
            AnyStage::Http(s) => s.claim(),
            AnyStage::Tls(s) => s.claim(),
        }
    }
}

impl fmt::Display for AnyStage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyStage::Dns(s) => s.fmt(f),
            AnyStage::Http(s) => s.fmt(f),
            AnyStage::Tls(s) => s.fmt(f),
        }
    }
}

/// The stages that ran (written as a map from stage name; absent ones are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageOutcomes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<StageOutcome<DnsVerdict>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<StageOutcome<HttpVerdict>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<StageOutcome<TlsVerdict>>,
}

impl StageOutcomes {
    pub fn get(&self, name: StageName) -> Option<AnyStage<'_>> {
        match name {
            StageName::Dns => self.dns.as_ref().map(AnyStage::Dns),
            StageName::Http => self.http.as_ref().map(AnyStage::Http),
            StageName::Tls => self.tls.as_ref().map(AnyStage::Tls),
        }
    }

    /// The stages that ran, in the order they run.
    pub fn iter(&self) -> impl Iterator<Item = AnyStage<'_>> {
        StageName::ALL
            .iter()
            .copied()
            .filter_map(|name| self.get(name))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// An `accessible` value as a map key: `true`, `false` or `null`.
pub fn accessible_key(accessible: Option<bool>) -> &'static str {
    match accessible {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    }
}

/// `blocking` in words: `not blocked`, `blocked (<layer>)` or `unknown`.
pub fn blocking_text(blocking: Blocking) -> String {
    match blocking {
        Blocking::No => "not blocked".to_owned(),
        Blocking::At(layer) => format!("blocked ({})", layer.as_str()),
        Blocking::Inconclusive => "unknown".to_owned(),
    }
}

/// The parts of a stage object the workflows read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(bound = "V: StageVerdict")]
pub struct StageHead<V> {
    #[serde(default)]
    pub verdict: Option<Majority<V>>,
    #[serde(default)]
    pub method: Option<PoisoningMethod>,
    #[serde(default)]
    pub stage: Option<Stage>,
    #[serde(default)]
    pub forged_ips: Vec<String>,
    /// The injector the packet capture named (HTTP, TLS).
    #[serde(default)]
    pub injector: Option<InjectorName>,
}

/// The part of a stage's `injector` the workflows read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InjectorName {
    pub name: String,
}

impl<V: StageVerdict> StageHead<V> {
    /// The stage's outcome (none without a verdict); its forged addresses go to `forged_ips`.
    fn outcome(self, forged_ips: &mut Vec<String>) -> Option<StageOutcome<V>> {
        forged_ips.extend(self.forged_ips);
        Some(StageOutcome {
            verdict: self.verdict?,
            method: self.method,
            stage: self.stage,
        })
    }
}

/// The parts of a target record the workflows read: the tolerant typed projection of a
/// [`TargetRecord`] (same field names, every field optional, unknown fields ignored;
/// serde skips them without building them). `blocking` and `accessible` keep an absent
/// field apart from a recorded null.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordHead {
    pub domain: String,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub attempt: Option<u32>,
    #[serde(default)]
    pub dns: Option<StageHead<DnsVerdict>>,
    #[serde(default)]
    pub http: Option<StageHead<HttpVerdict>>,
    #[serde(default)]
    pub tls: Option<StageHead<TlsVerdict>>,
    #[serde(default)]
    pub blocking: Field<Blocking>,
    #[serde(default)]
    pub accessible: Field<Option<bool>>,
}

/// The projection of a typed record: what reading its JSON gives.
impl From<&TargetRecord> for RecordHead {
    fn from(record: &TargetRecord) -> RecordHead {
        let dns = record.dns.as_ref().map(|dns| &dns.assessment);
        RecordHead {
            domain: record.domain.clone(),
            categories: record.categories.clone(),
            attempt: record.attempt,
            dns: dns.map(|dns| StageHead {
                verdict: Some(Majority::Of(dns.verdict)),
                method: dns.method,
                stage: None,
                forged_ips: dns.forged_ips.iter().map(ToString::to_string).collect(),
                injector: None,
            }),
            http: record.http.as_ref().map(|http| StageHead {
                verdict: Some(Majority::Of(http.verdict)),
                method: None,
                stage: http.stage,
                forged_ips: Vec::new(),
                injector: injector_name(http.injector.as_ref()),
            }),
            tls: record.tls.as_ref().map(|tls| StageHead {
                verdict: Some(Majority::Of(tls.verdict)),
                method: None,
                stage: tls.stage,
                forged_ips: Vec::new(),
                injector: injector_name(tls.injector.as_ref()),
            }),
            blocking: Field::Present(record.blocking),
            accessible: Field::Present(record.accessible),
        }
    }
}

fn injector_name(m: Option<&crate::record::assessment::InjectorMatch>) -> Option<InjectorName> {
    m.map(|m| InjectorName {
        name: m.name.clone(),
    })
}

/// Distinct injector names of the HTTP and TLS stages, in stage order.
fn injector_names<'a>(names: impl IntoIterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names.into_iter().flatten() {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// A field that may be absent from a record, or present (null included): `blocking` is
/// `false`, a layer or null (anything else, `"false"`, `true`, `"yes"`, makes the record
/// unreadable, so that it is reported as such rather than counted as censored);
/// `accessible` a boolean or null.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Field<T> {
    #[default]
    Absent,
    Present(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Field::Present)
    }
}

/// What one target's measurement (or the consensus of its attempts) says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetOutcome {
    pub domain: String,
    pub categories: Vec<String>,
    /// Stages that ran (null or absent stages are left out).
    pub stages: StageOutcomes,
    pub blocking: Blocking,
    /// True when the record had no `blocking` field and it was derived from the stages.
    pub blocking_derived: bool,
    pub accessible: Option<bool>,
    /// Addresses the DNS stage judged forged (over every attempt for a consensus).
    pub forged_ips: Vec<String>,
    /// Injectors the packet capture named for the HTTP and TLS verdicts (distinct;
    /// empty without capture, and for a consensus of repeated attempts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub injectors: Vec<String>,
    /// The attempt number of a repeated measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Attempts behind this outcome (1 for a single measurement).
    pub attempts: u32,
    /// Share of attempts agreeing with the blocking value (1 for a single measurement).
    pub consistency: f64,
}

/// A typed record's outcome: a copy of its verdicts, no serialization (the report
/// writer judges every record with it when progress or `--repeat` is on).
impl From<&TargetRecord> for TargetOutcome {
    fn from(record: &TargetRecord) -> TargetOutcome {
        let dns = record.dns.as_ref().map(|dns| &dns.assessment);
        TargetOutcome {
            domain: record.domain.clone(),
            categories: record.categories.clone(),
            stages: StageOutcomes {
                dns: dns.map(|dns| StageOutcome {
                    verdict: Majority::Of(dns.verdict),
                    method: dns.method,
                    stage: None,
                }),
                http: record.http.as_ref().map(|http| StageOutcome {
                    verdict: Majority::Of(http.verdict),
                    method: None,
                    stage: http.stage,
                }),
                tls: record.tls.as_ref().map(|tls| StageOutcome {
                    verdict: Majority::Of(tls.verdict),
                    method: None,
                    stage: tls.stage,
                }),
            },
            blocking: record.blocking,
            blocking_derived: false,
            accessible: record.accessible,
            forged_ips: dns.map_or_else(Vec::new, |dns| {
                dns.forged_ips.iter().map(ToString::to_string).collect()
            }),
            injectors: injector_names([
                record
                    .http
                    .as_ref()
                    .and_then(|h| h.injector.as_ref())
                    .map(|m| m.name.as_str()),
                record
                    .tls
                    .as_ref()
                    .and_then(|t| t.injector.as_ref())
                    .map(|m| m.name.as_str()),
            ]),
            attempt: record.attempt,
            attempts: 1,
            consistency: 1.0,
        }
    }
}

impl TargetOutcome {
    /// Reads a target record from any deserializer (e.g. a JSON value) through its
    /// tolerant [`RecordHead`]; the report reader parses lines the same way.
    pub fn from_value<'de, D: Deserializer<'de>>(record: D) -> Result<TargetOutcome, D::Error> {
        RecordHead::deserialize(record).map(TargetOutcome::from)
    }

    pub fn stage(&self, name: StageName) -> Option<AnyStage<'_>> {
        self.stages.get(name)
    }

    /// The stage that `blocking` names, with its outcome (for `tcp_ip`, the first stage
    /// that did not end `ok`).
    pub fn blocking_stage(&self) -> Option<AnyStage<'_>> {
        let Blocking::At(layer) = self.blocking else {
            return None;
        };
        let named = match layer {
            BlockingLayer::Dns => Some(StageName::Dns),
            BlockingLayer::Http => Some(StageName::Http),
            BlockingLayer::Tls => Some(StageName::Tls),
            BlockingLayer::TcpIp => None,
        };
        named
            .and_then(|name| self.stage(name))
            .or_else(|| self.stages.iter().find(|stage| !stage.is_ok()))
    }

    /// A one-line description: blocking, then each stage's verdict.
    pub fn describe(&self) -> String {
        let mut parts = vec![blocking_text(self.blocking)];
        for stage in self.stages.iter() {
            parts.push(format!("{}: {stage}", stage.name()));
        }
        if self.attempts > 1 {
            parts.push(format!(
                "{} attempts, consistency {:.2}",
                self.attempts, self.consistency
            ));
        }
        parts.join("; ")
    }

    /// A short class for progress counts: `not blocked`, `blocked:<layer>` or `unknown`.
    pub fn progress_class(&self) -> String {
        match self.blocking {
            Blocking::No => "not blocked".to_owned(),
            Blocking::At(layer) => format!("blocked:{}", layer.as_str()),
            Blocking::Inconclusive => "unknown".to_owned(),
        }
    }
}

impl From<RecordHead> for TargetOutcome {
    fn from(head: RecordHead) -> TargetOutcome {
        let mut forged_ips = Vec::new();
        let injectors = injector_names([
            head.http
                .as_ref()
                .and_then(|h| h.injector.as_ref())
                .map(|i| i.name.as_str()),
            head.tls
                .as_ref()
                .and_then(|t| t.injector.as_ref())
                .map(|i| i.name.as_str()),
        ]);
        let stages = StageOutcomes {
            dns: head.dns.and_then(|s| s.outcome(&mut forged_ips)),
            http: head.http.and_then(|s| s.outcome(&mut forged_ips)),
            tls: head.tls.and_then(|s| s.outcome(&mut forged_ips)),
        };
        let (blocking, blocking_derived) = match head.blocking {
            Field::Present(blocking) => (blocking, false),
            Field::Absent => (legacy_blocking(&stages), true),
        };
        let accessible = match head.accessible {
            Field::Present(accessible) => accessible,
            Field::Absent => legacy_accessible(&stages, blocking),
        };
        TargetOutcome {
            domain: head.domain,
            categories: head.categories,
            stages,
            blocking,
            blocking_derived,
            accessible,
            forged_ips,
            injectors,
            attempt: head.attempt,
            attempts: 1,
            consistency: 1.0,
        }
    }
}

/// The rule of [`crate::classify::web::target_blocking`] over stage claims: the first
/// layer with a censorship claim; else null when some stage is unclear; else `false`.
fn blocking_from_claims(claims: impl IntoIterator<Item = Claim>) -> Blocking {
    let mut blocked: Option<BlockingLayer> = None;
    let mut unclear = false;
    for claim in claims {
        match claim {
            Claim::Blocked(layer) => blocked = Some(blocked.map_or(layer, |b| b.min(layer))),
            Claim::Unclear => unclear = true,
            Claim::Clean | Claim::NotRun => {}
        }
    }
    match blocked {
        Some(layer) => Blocking::At(layer),
        None if unclear => Blocking::Inconclusive,
        None => Blocking::No,
    }
}

/// `blocking` for records that do not carry it (written before the web stages
/// existed): the stages' claims, as the scan judges them; a record without any stage
/// is inconclusive.
fn legacy_blocking(stages: &StageOutcomes) -> Blocking {
    if stages.is_empty() {
        return Blocking::Inconclusive;
    }
    blocking_from_claims(stages.iter().map(AnyStage::claim))
}

/// `accessible` for records without it: blocked, or a name that does not exist →
/// false; every stage `ok` → true; otherwise unknown. (It differs from the scan's rule:
/// a DNS-only `ok` is accessible here, unknown there.)
fn legacy_accessible(stages: &StageOutcomes, blocking: Blocking) -> Option<bool> {
    if matches!(blocking, Blocking::At(_)) {
        return Some(false);
    }
    if stages.is_empty() {
        return None;
    }
    if stages.iter().all(AnyStage::is_ok) {
        Some(true)
    } else if stages.iter().any(AnyStage::is_nxdomain) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::BlockingKey;
    use serde_json::{Value, json};

    fn outcome(value: &Value) -> TargetOutcome {
        TargetOutcome::from_value(value).unwrap()
    }

    #[test]
    fn dns_only_records_derive_blocking_and_accessible() {
        let poisoned = outcome(&json!({
            "domain": "a.test",
            "dns": {"verdict": "dns_poisoning", "method": "injection", "forged_ips": ["10.10.34.34"], "queries": []}
        }));
        assert_eq!(poisoned.blocking, Blocking::At(BlockingLayer::Dns));
        assert!(poisoned.blocking_derived);
        assert_eq!(poisoned.accessible, Some(false));
        assert_eq!(poisoned.forged_ips, ["10.10.34.34"]);
        assert_eq!(
            poisoned.stages.dns.unwrap().method,
            Some(PoisoningMethod::Injection)
        );

        let fine = outcome(&json!({"domain": "b.test", "dns": {"verdict": "ok"}}));
        assert_eq!(fine.blocking, Blocking::No);
        assert_eq!(fine.accessible, Some(true));

        let gone = outcome(&json!({"domain": "c.test", "dns": {"verdict": "nxdomain"}}));
        assert_eq!(gone.blocking, Blocking::No);
        assert_eq!(gone.accessible, Some(false));

        let unsure = outcome(&json!({"domain": "d.test", "dns": {"verdict": "timeout"}}));
        assert_eq!(unsure.blocking, Blocking::Inconclusive);
        assert_eq!(unsure.accessible, None);

        let literal = outcome(&json!({"domain": "198.18.0.1", "dns": null}));
        assert!(literal.stages.is_empty());
        assert_eq!(literal.blocking, Blocking::Inconclusive);
    }

    #[test]
    fn records_without_blocking_derive_it_as_the_scan_does() {
        // An RST answering the SYN is TCP/IP blocking (before the typed outcome: http).
        let connect_rst = outcome(&json!({
            "domain": "a.test",
            "dns": {"verdict": "ok"},
            "http": {"verdict": "rst_injection", "stage": "connect"}
        }));
        assert_eq!(connect_rst.blocking, Blocking::At(BlockingLayer::TcpIp));
        assert!(connect_rst.blocking_derived);
        assert_eq!(connect_rst.accessible, Some(false));
        // The first layer a user meets wins.
        let both = outcome(&json!({
            "domain": "b.test",
            "dns": {"verdict": "ok"},
            "http": {"verdict": "blockpage", "stage": "response"},
            "tls": {"verdict": "rst_injection", "stage": "connect"}
        }));
        assert_eq!(both.blocking, Blocking::At(BlockingLayer::TcpIp));
        let keyword = outcome(&json!({
            "domain": "c.test",
            "http": {"verdict": "timeout", "stage": "request"},
            "tls": {"verdict": "ok"}
        }));
        assert_eq!(keyword.blocking, Blocking::At(BlockingLayer::Http));
        let unclear = outcome(&json!({
            "domain": "d.test",
            "dns": {"verdict": "ok"},
            "tls": {"verdict": "timeout", "stage": "connect"}
        }));
        assert_eq!(unclear.blocking, Blocking::Inconclusive);
        let skipped = outcome(&json!({
            "domain": "e.test",
            "dns": {"verdict": "ok"},
            "http": {"verdict": "skipped"}
        }));
        assert_eq!(skipped.blocking, Blocking::No);
        assert_eq!(skipped.accessible, None, "skipped is not ok");
    }

    #[test]
    fn unknown_verdicts_and_blocking_values_make_a_record_unreadable() {
        for bad in [
            json!({"domain": "a.test", "dns": {"verdict": "poisoned"}}),
            json!({"domain": "a.test", "http": {"verdict": "ok", "stage": "dns"}}),
            json!({"domain": "a.test", "blocking": true}),
            json!({"domain": "a.test", "blocking": "false"}),
            json!({"domain": "a.test", "accessible": "yes"}),
        ] {
            assert!(TargetOutcome::from_value(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recorded_blocking_and_web_stages_win() {
        let record = outcome(&json!({
            "domain": "e.test",
            "dns": {"verdict": "ok"},
            "http": {"verdict": "rst_injection", "stage": "request", "ip": "198.18.0.9"},
            "tls": {"verdict": "ok"},
            "blocking": "http",
            "accessible": false,
            "some_future_field": {"x": 1}
        }));
        assert_eq!(record.blocking, Blocking::At(BlockingLayer::Http));
        assert!(!record.blocking_derived);
        assert_eq!(record.accessible, Some(false));
        let http = record.blocking_stage().unwrap();
        assert_eq!(http.name(), StageName::Http);
        assert_eq!(http.place(), Some(Stage::Request));

        let null = outcome(
            &json!({"domain": "f.test", "dns": {"verdict": "ok"}, "blocking": null, "accessible": null}),
        );
        assert_eq!(
            null.blocking,
            Blocking::Inconclusive,
            "a recorded null is kept"
        );
        assert_eq!(null.accessible, None);

        let tcp = outcome(&json!({
            "domain": "g.test",
            "dns": {"verdict": "ok"},
            "http": {"verdict": "timeout", "stage": "connect"},
            "blocking": "tcp_ip"
        }));
        assert_eq!(tcp.blocking_stage().unwrap().name(), StageName::Http);
    }

    #[test]
    fn a_typed_record_reads_as_its_json() {
        use crate::classify::web::skipped_tls;
        use crate::record::DnsSection;
        use crate::record::assessment::{DnsAssessment, Evidence, EvidenceKind};
        let mut record = TargetRecord {
            domain: "a.test".into(),
            address: None,
            pinned_ips: Vec::new(),
            sources: Vec::new(),
            sources_omitted: 0,
            categories: vec!["NEWS".into()],
            attempt: Some(2),
            started_at: "2024-05-01T10:00:00Z".into(),
            duration_ms: 1.0,
            dns: Some(DnsSection {
                assessment: DnsAssessment {
                    verdict: DnsVerdict::DnsPoisoning,
                    method: Some(PoisoningMethod::Injection),
                    methods: vec![PoisoningMethod::Injection],
                    rcode: None,
                    forged_ips: vec!["10.10.34.34".parse().unwrap()],
                    genuine_ips: Vec::new(),
                    evidence: vec![Evidence::new(EvidenceKind::SinkReply, None, "sink")],
                },
                resolver: "198.18.0.53:53".parse().unwrap(),
                sink: None,
                queries: Vec::new(),
                control: None,
                tls_proof: Vec::new(),
                benign_query: None,
            }),
            addresses: None,
            http: None,
            tls: None,
            blocking: Blocking::At(BlockingLayer::Dns),
            accessible: Some(false),
            location: None,
            web_control: None,
        };
        let via_json = |r: &TargetRecord| {
            TargetOutcome::from_value(&serde_json::to_value(r).unwrap()).unwrap()
        };
        let typed = TargetOutcome::from(&record);
        assert_eq!(typed, via_json(&record));
        assert_eq!(typed.attempt, Some(2));
        assert_eq!(typed.forged_ips, ["10.10.34.34"]);
        assert_eq!(typed.blocking, Blocking::At(BlockingLayer::Dns));
        let mut tls = skipped_tls("a.test", "no trusted address");
        tls.verdict = TlsVerdict::RstInjection;
        tls.stage = Some(Stage::Handshake);
        record.tls = Some(tls);
        record.blocking = Blocking::At(BlockingLayer::Tls);
        let typed = TargetOutcome::from(&record);
        assert_eq!(typed, via_json(&record));
        assert_eq!(typed.stages.tls.unwrap().stage, Some(Stage::Handshake));
        record.dns = None;
        record.blocking = Blocking::Inconclusive;
        record.accessible = None;
        assert_eq!(TargetOutcome::from(&record), via_json(&record));
    }

    #[test]
    fn outcomes_serialize_with_their_wire_strings() {
        let record = outcome(&json!({
            "domain": "a.test",
            "dns": {"verdict": "dns_poisoning", "method": "bogon"},
            "http": {"verdict": "rst_injection", "stage": "connect"},
            "blocking": "tcp_ip",
            "accessible": false
        }));
        assert_eq!(
            serde_json::to_string(&record.stages).unwrap(),
            r#"{"dns":{"verdict":"dns_poisoning","method":"bogon"},"http":{"verdict":"rst_injection","stage":"connect"}}"#
        );
        assert_eq!(
            record.describe(),
            "blocked (tcp_ip); dns: dns_poisoning (bogon); http: rst_injection (at connect)"
        );
        assert_eq!(record.progress_class(), "blocked:tcp_ip");
        for (majority, wire) in [
            (Majority::NoMajority, "\"no_majority\""),
            (Majority::NotRun, "\"none\""),
            (Majority::Of(TlsVerdict::CertInvalid), "\"cert_invalid\""),
        ] {
            assert_eq!(serde_json::to_string(&majority).unwrap(), wire);
            assert_eq!(
                serde_json::from_str::<Majority<TlsVerdict>>(wire).unwrap(),
                majority
            );
        }
    }

    #[test]
    fn blocking_keys_name_every_value() {
        let keys: Vec<&str> = [Blocking::No, Blocking::Inconclusive]
            .into_iter()
            .chain(BlockingLayer::ALL.iter().copied().map(Blocking::At))
            .map(|b| BlockingKey::from(b).as_str())
            .collect();
        assert_eq!(keys, ["false", "null", "dns", "tcp_ip", "http", "tls"]);
        for &layer in BlockingLayer::ALL {
            assert_eq!(
                BlockingKey::from(Blocking::At(layer)).as_str(),
                layer.as_str()
            );
        }
    }
}
