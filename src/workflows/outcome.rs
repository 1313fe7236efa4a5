//! A generic view of one target's measurement: each stage's verdict, the target's
//! blocking and accessibility.
//!
//! It is read from the JSON of a target record, not from the typed record, so that
//! stages and fields other modules add (`http`, `tls`, `blocking`, `accessible`) are
//! picked up when present and the workflows still work on reports without them. Every
//! stage object is read the same way: `verdict`, optional `method`, optional `stage`.

use crate::classify::web::{HttpVerdict, TlsVerdict};
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::project::{Keep, Projector};
use crate::report::TargetRecord;
use crate::verdict::{DnsVerdict, PoisoningMethod};

/// The stages a target record may carry, in the order they run.
pub const STAGES: [&str; 3] = ["dns", "http", "tls"];

/// Values of the target-level `blocking` field that name a stage.
pub const BLOCKING_STAGES: [&str; 4] = ["dns", "tcp_ip", "http", "tls"];

/// Verdicts that by themselves say a stage was interfered with (used only to derive
/// `blocking` for records that do not carry it).
const CENSORSHIP_VERDICTS: [(&str, &str); 4] = [
    ("dns", "dns_poisoning"),
    ("http", "rst_injection"),
    ("http", "blockpage"),
    ("tls", "rst_injection"),
];

/// Where in a connection the HTTP stage's outcome happened.
pub const HTTP_WHERE: [&str; 3] = ["connect", "request", "response"];
/// Where in a connection the TLS stage's outcome happened.
pub const TLS_WHERE: [&str; 2] = ["connect", "handshake"];

/// The verdict a consensus gives a stage whose attempts have no majority.
pub const NO_MAJORITY: &str = "no_majority";

/// The verdicts a stage can have, for validating user input.
pub fn stage_verdicts(stage: &str) -> Vec<&'static str> {
    match stage {
        "dns" => DnsVerdict::ALL.iter().map(|v| v.as_str()).collect(),
        "http" => HttpVerdict::ALL.iter().map(|v| v.as_str()).collect(),
        "tls" => TlsVerdict::ALL.iter().map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// The methods a stage's verdict can name, when the vocabulary is closed (DNS).
pub fn stage_methods(stage: &str) -> Option<Vec<&'static str>> {
    match stage {
        "dns" => Some(PoisoningMethod::ALL.iter().map(|m| m.as_str()).collect()),
        _ => None,
    }
}

/// The values of a stage's `stage` field (where it happened), when it has one.
pub fn stage_wheres(stage: &str) -> Option<Vec<&'static str>> {
    match stage {
        "http" => Some(HTTP_WHERE.to_vec()),
        "tls" => Some(TLS_WHERE.to_vec()),
        _ => None,
    }
}

/// One stage's verdict as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageOutcome {
    pub verdict: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Where in the connection it happened (`connect`, `request`, `handshake`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

impl fmt::Display for StageOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.verdict)?;
        match (&self.method, &self.stage) {
            (Some(method), Some(at)) => write!(f, " ({method}, at {at})"),
            (Some(method), None) => write!(f, " ({method})"),
            (None, Some(at)) => write!(f, " (at {at})"),
            (None, None) => Ok(()),
        }
    }
}

/// The target-level blocking verdict: `false`, the blocked stage, or null (unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Blocking {
    NotBlocked,
    Blocked(String),
    Unknown,
}

impl Blocking {
    /// Reads the JSON value of a `blocking` field; anything but `false` or a layer
    /// name ([`BLOCKING_STAGES`]) is unknown, never blocked.
    pub fn from_json(value: &Value) -> Blocking {
        match value {
            Value::Bool(false) => Blocking::NotBlocked,
            Value::String(stage) if BLOCKING_STAGES.contains(&stage.as_str()) => {
                Blocking::Blocked(stage.clone())
            }
            _ => Blocking::Unknown,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Blocking::NotBlocked => Value::Bool(false),
            Blocking::Blocked(stage) => Value::String(stage.clone()),
            Blocking::Unknown => Value::Null,
        }
    }

    /// A map key / table cell: `false`, the stage, or `null`.
    pub fn key(&self) -> String {
        match self {
            Blocking::NotBlocked => "false".to_owned(),
            Blocking::Blocked(stage) => stage.clone(),
            Blocking::Unknown => "null".to_owned(),
        }
    }

    /// Parses a [`Blocking::key`].
    pub fn from_key(key: &str) -> Blocking {
        match key {
            "false" => Blocking::NotBlocked,
            "null" => Blocking::Unknown,
            stage => Blocking::Blocked(stage.to_owned()),
        }
    }

    pub fn is_blocked(&self) -> bool {
        matches!(self, Blocking::Blocked(_))
    }
}

impl fmt::Display for Blocking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocking::NotBlocked => f.write_str("not blocked"),
            Blocking::Blocked(stage) => write!(f, "blocked ({stage})"),
            Blocking::Unknown => f.write_str("unknown"),
        }
    }
}

impl Serialize for Blocking {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Blocking {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Blocking::from_json(&Value::deserialize(deserializer)?))
    }
}

/// The parts of a stage object the workflows read.
#[derive(Debug, Clone, Default, Deserialize)]
struct StageHead {
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    forged_ips: Vec<String>,
}

/// The parts of a target record the workflows read; serde skips everything else
/// without building it, so this is cheap enough for the writer's hot path.
#[derive(Debug, Clone, Deserialize)]
pub struct TargetHead {
    domain: String,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    dns: Option<StageHead>,
    #[serde(default)]
    http: Option<StageHead>,
    #[serde(default)]
    tls: Option<StageHead>,
    #[serde(default, deserialize_with = "blocking_field")]
    blocking: Option<Blocking>,
    #[serde(default, deserialize_with = "accessible_field")]
    accessible: Option<Value>,
}

/// A present `blocking` field: `false`, a layer (`dns`, `tcp_ip`, `http`, `tls`) or null.
/// Anything else (`"false"`, `true`, `"yes"`) makes the record unreadable, so that it
/// is reported as such rather than counted as censored.
fn blocking_field<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Blocking>, D::Error> {
    use crate::classify::web::Blocking as Written;
    Ok(Some(match Written::deserialize(deserializer)? {
        Written::No => Blocking::NotBlocked,
        Written::At(layer) => Blocking::Blocked(layer.as_str().to_owned()),
        Written::Inconclusive => Blocking::Unknown,
    }))
}

/// A present `accessible` field: a boolean or null (a string is an error, not unknown).
fn accessible_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Option::<bool>::deserialize(deserializer).map(|a| Some(a.map_or(Value::Null, Value::Bool)))
}

/// What one target's measurement (or the consensus of its attempts) says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetOutcome {
    pub domain: String,
    pub categories: Vec<String>,
    /// Stages that ran (null or absent stages are left out), by name.
    pub stages: BTreeMap<String, StageOutcome>,
    pub blocking: Blocking,
    /// True when the record had no `blocking` field and it was derived from the stages.
    pub blocking_derived: bool,
    pub accessible: Option<bool>,
    /// Addresses the DNS stage judged forged (over every attempt for a consensus).
    pub forged_ips: Vec<String>,
    /// The attempt number of a repeated measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Attempts behind this outcome (1 for a single measurement).
    pub attempts: u32,
    /// Share of attempts agreeing with the blocking value (1 for a single measurement).
    pub consistency: f64,
}

impl TargetOutcome {
    /// Reads a typed target record through a projection of the same JSON fields, without
    /// serializing its observations (cheap enough for the report writer).
    pub fn from_record(record: &TargetRecord) -> serde_json::Result<TargetOutcome> {
        const STAGE: &[(&str, Keep)] = &[
            ("verdict", Keep::Whole),
            ("method", Keep::Whole),
            ("stage", Keep::Whole),
            ("forged_ips", Keep::Whole),
        ];
        const RECORD: &[(&str, Keep)] = &[
            ("domain", Keep::Whole),
            ("categories", Keep::Whole),
            ("attempt", Keep::Whole),
            ("dns", Keep::Fields(STAGE)),
            ("http", Keep::Fields(STAGE)),
            ("tls", Keep::Fields(STAGE)),
            ("blocking", Keep::Whole),
            ("accessible", Keep::Whole),
        ];
        let projected = record.serialize(Projector { fields: RECORD })?;
        serde_json::from_value::<TargetHead>(projected).map(TargetOutcome::from)
    }

    /// Reads a target record from its JSON value.
    pub fn from_value(value: &Value) -> serde_json::Result<TargetOutcome> {
        TargetHead::deserialize(value).map(TargetOutcome::from)
    }

    /// Reads a target record from its JSON text, skipping the fields it does not need
    /// (much faster than building the whole tree first).
    pub fn from_slice(json: &[u8]) -> serde_json::Result<TargetOutcome> {
        serde_json::from_slice::<TargetHead>(json).map(TargetOutcome::from)
    }

    pub fn stage(&self, name: &str) -> Option<&StageOutcome> {
        self.stages.get(name)
    }

    /// The stage that `blocking` names, with its outcome (for `tcp_ip`, the first stage
    /// that did not end `ok`).
    pub fn blocking_stage(&self) -> Option<(&str, &StageOutcome)> {
        let Blocking::Blocked(stage) = &self.blocking else {
            return None;
        };
        if let Some((name, outcome)) = self.stages.get_key_value(stage.as_str()) {
            return Some((name.as_str(), outcome));
        }
        STAGES.iter().find_map(|name| {
            self.stages
                .get_key_value(*name)
                .filter(|(_, outcome)| outcome.verdict != "ok")
                .map(|(name, outcome)| (name.as_str(), outcome))
        })
    }

    /// A one-line description: blocking, then each stage's verdict.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.blocking.to_string()];
        for name in STAGES {
            if let Some(stage) = self.stages.get(name) {
                parts.push(format!("{name}: {stage}"));
            }
        }
        if self.attempts > 1 {
            parts.push(format!(
                "{} attempts, consistency {:.2}",
                self.attempts, self.consistency
            ));
        }
        parts.join("; ")
    }

    /// A short class for progress counts: `not blocked`, `blocked:<stage>` or `unknown`.
    pub fn progress_class(&self) -> String {
        match &self.blocking {
            Blocking::NotBlocked => "not blocked".to_owned(),
            Blocking::Blocked(stage) => format!("blocked:{stage}"),
            Blocking::Unknown => "unknown".to_owned(),
        }
    }
}

impl From<TargetHead> for TargetOutcome {
    fn from(head: TargetHead) -> TargetOutcome {
        let mut stages = BTreeMap::new();
        let mut forged_ips = Vec::new();
        for (name, stage) in [("dns", head.dns), ("http", head.http), ("tls", head.tls)] {
            let Some(stage) = stage else { continue };
            forged_ips.extend(stage.forged_ips);
            if let Some(verdict) = stage.verdict {
                stages.insert(
                    name.to_owned(),
                    StageOutcome {
                        verdict,
                        method: stage.method,
                        stage: stage.stage,
                    },
                );
            }
        }
        let (blocking, blocking_derived) = match head.blocking {
            Some(blocking) => (blocking, false),
            None => (derive_blocking(&stages), true),
        };
        let accessible = match &head.accessible {
            Some(value) => value.as_bool(),
            None => derive_accessible(&stages, &blocking),
        };
        TargetOutcome {
            domain: head.domain,
            categories: head.categories,
            stages,
            blocking,
            blocking_derived,
            accessible,
            forged_ips,
            attempt: head.attempt,
            attempts: 1,
            consistency: 1.0,
        }
    }
}

/// `blocking` for records written before the web stages existed: a stage whose verdict
/// is itself a censorship finding blocks; every stage `ok` (or a genuine NXDOMAIN)
/// does not; anything else is unknown.
fn derive_blocking(stages: &BTreeMap<String, StageOutcome>) -> Blocking {
    for name in STAGES {
        if let Some(stage) = stages.get(name)
            && CENSORSHIP_VERDICTS.contains(&(name, stage.verdict.as_str()))
        {
            return Blocking::Blocked(name.to_owned());
        }
    }
    let settled = |s: &StageOutcome| matches!(s.verdict.as_str(), "ok" | "nxdomain" | "skipped");
    if !stages.is_empty() && stages.values().all(settled) {
        Blocking::NotBlocked
    } else {
        Blocking::Unknown
    }
}

/// `accessible` for records without it: every stage `ok` → true; blocked, or a name
/// that does not exist → false; otherwise unknown.
fn derive_accessible(stages: &BTreeMap<String, StageOutcome>, blocking: &Blocking) -> Option<bool> {
    if blocking.is_blocked() {
        return Some(false);
    }
    if stages.is_empty() {
        return None;
    }
    if stages.values().all(|s| s.verdict == "ok") {
        Some(true)
    } else if stages.values().any(|s| s.verdict == "nxdomain") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(value: &Value) -> TargetOutcome {
        TargetOutcome::from_value(value).unwrap()
    }

    #[test]
    fn dns_only_records_derive_blocking_and_accessible() {
        let poisoned = outcome(&json!({
            "domain": "a.test",
            "dns": {"verdict": "dns_poisoning", "method": "injection", "forged_ips": ["10.10.34.34"], "queries": []}
        }));
        assert_eq!(poisoned.blocking, Blocking::Blocked("dns".into()));
        assert!(poisoned.blocking_derived);
        assert_eq!(poisoned.accessible, Some(false));
        assert_eq!(poisoned.forged_ips, ["10.10.34.34"]);
        assert_eq!(
            poisoned.stage("dns").unwrap().method.as_deref(),
            Some("injection")
        );

        let fine = outcome(&json!({"domain": "b.test", "dns": {"verdict": "ok"}}));
        assert_eq!(fine.blocking, Blocking::NotBlocked);
        assert_eq!(fine.accessible, Some(true));

        let gone = outcome(&json!({"domain": "c.test", "dns": {"verdict": "nxdomain"}}));
        assert_eq!(gone.blocking, Blocking::NotBlocked);
        assert_eq!(gone.accessible, Some(false));

        let unsure = outcome(&json!({"domain": "d.test", "dns": {"verdict": "timeout"}}));
        assert_eq!(unsure.blocking, Blocking::Unknown);
        assert_eq!(unsure.accessible, None);

        let literal = outcome(&json!({"domain": "198.18.0.1", "dns": null}));
        assert!(literal.stages.is_empty());
        assert_eq!(literal.blocking, Blocking::Unknown);
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
        assert_eq!(record.blocking, Blocking::Blocked("http".into()));
        assert!(!record.blocking_derived);
        assert_eq!(record.accessible, Some(false));
        let (stage, http) = record.blocking_stage().unwrap();
        assert_eq!(stage, "http");
        assert_eq!(http.stage.as_deref(), Some("request"));

        let null = outcome(
            &json!({"domain": "f.test", "dns": {"verdict": "ok"}, "blocking": null, "accessible": null}),
        );
        assert_eq!(null.blocking, Blocking::Unknown, "a recorded null is kept");
        assert_eq!(null.accessible, None);

        let tcp = outcome(&json!({
            "domain": "g.test",
            "dns": {"verdict": "ok"},
            "http": {"verdict": "timeout", "stage": "connect"},
            "blocking": "tcp_ip"
        }));
        assert_eq!(tcp.blocking_stage().unwrap().0, "http");
    }

    #[test]
    fn a_typed_record_reads_as_its_json() {
        use crate::report::DnsSection;
        use crate::verdict::{DnsAssessment, Evidence, EvidenceKind};
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
            blocking: crate::classify::web::Blocking::At(crate::classify::web::BlockingLayer::Dns),
            accessible: Some(false),
        };
        let via_json = |r: &TargetRecord| {
            TargetOutcome::from_value(&serde_json::to_value(r).unwrap()).unwrap()
        };
        let projected = TargetOutcome::from_record(&record).unwrap();
        assert_eq!(projected, via_json(&record));
        assert_eq!(projected.attempt, Some(2));
        assert_eq!(projected.forged_ips, ["10.10.34.34"]);
        assert_eq!(projected.blocking, Blocking::Blocked("dns".into()));
        record.dns = None;
        assert_eq!(
            TargetOutcome::from_record(&record).unwrap(),
            via_json(&record)
        );
    }

    #[test]
    fn blocking_keys_round_trip() {
        for blocking in [
            Blocking::NotBlocked,
            Blocking::Unknown,
            Blocking::Blocked("tls".into()),
        ] {
            assert_eq!(Blocking::from_key(&blocking.key()), blocking);
            let json = serde_json::to_value(&blocking).unwrap();
            assert_eq!(serde_json::from_value::<Blocking>(json).unwrap(), blocking);
        }
    }
}
