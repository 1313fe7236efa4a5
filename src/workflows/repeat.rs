//! Repeated measurements: the majority verdict of a target's attempts and how
//! consistent they were. Censors are not deterministic, and one reset is not a finding.
//!
//! A value is the majority when more than half of the attempts have it; with no such
//! value there is no majority (`no_majority` for a stage, null for blocking). The
//! consistency ratio is the share of attempts that agree with the most common value
//! (1.0 when all agree), whether or not it is a majority.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::outcome::{Blocking, NO_MAJORITY, STAGES, StageOutcome, TargetOutcome};

/// Counts of values among attempts.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    counts: BTreeMap<String, u32>,
    total: u32,
}

impl Tally {
    pub fn add(&mut self, key: impl Into<String>) {
        *self.counts.entry(key.into()).or_default() += 1;
        self.total += 1;
    }

    /// The value more than half of the entries have.
    pub fn majority(&self) -> Option<&str> {
        self.counts
            .iter()
            .find(|(_, n)| **n * 2 > self.total)
            .map(|(k, _)| k.as_str())
    }

    /// Share of entries agreeing with the most common value (0 with no entries).
    pub fn consistency(&self) -> f64 {
        match self.counts.values().max() {
            Some(max) if self.total > 0 => round3(f64::from(*max) / f64::from(self.total)),
            _ => 0.0,
        }
    }

    pub fn counts(&self) -> &BTreeMap<String, u32> {
        &self.counts
    }

    pub fn total(&self) -> u32 {
        self.total
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The consensus of one stage over a target's attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageConsensus {
    /// The majority verdict, or `no_majority`.
    pub verdict: String,
    /// The majority method among the attempts with the majority verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The majority `stage` (where) among the attempts with the majority verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Share of attempts with the most common verdict.
    pub consistency: f64,
    /// Attempts per verdict (`none` where the stage did not run).
    pub verdicts: BTreeMap<String, u32>,
    /// Attempts per method.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, u32>,
}

/// The consensus of a target-level value (`blocking`, `accessible`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueConsensus {
    /// The majority value, or null when there is none.
    pub majority: Value,
    pub consistency: f64,
    /// Attempts per value (`false`, `true`, a stage name, `null`).
    pub counts: BTreeMap<String, u32>,
}

/// The `consensus` record written after a target's last attempt with `--repeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusRecord {
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Attempts the consensus rests on.
    pub attempts: u32,
    /// Share of attempts agreeing with the most common blocking value.
    pub consistency: f64,
    pub blocking: ValueConsensus,
    pub accessible: ValueConsensus,
    pub stages: BTreeMap<String, StageConsensus>,
    /// Every address the DNS stage judged forged, over all attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forged_ips: Vec<String>,
}

impl ConsensusRecord {
    /// The consensus of a target's attempts (at least one).
    pub fn of(attempts: &[TargetOutcome]) -> ConsensusRecord {
        let first = attempts.first().expect("a consensus of no attempts");
        let mut blocking = Tally::default();
        let mut accessible = Tally::default();
        let mut forged_ips: Vec<String> = Vec::new();
        for attempt in attempts {
            blocking.add(attempt.blocking.key());
            accessible.add(match attempt.accessible {
                Some(true) => "true",
                Some(false) => "false",
                None => "null",
            });
            for ip in &attempt.forged_ips {
                if !forged_ips.contains(ip) {
                    forged_ips.push(ip.clone());
                }
            }
        }
        let mut stages = BTreeMap::new();
        for name in STAGES {
            if attempts.iter().all(|a| a.stage(name).is_none()) {
                continue;
            }
            stages.insert(name.to_owned(), stage_consensus(name, attempts));
        }
        let blocking_majority = blocking
            .majority()
            .map_or(Value::Null, |k| Blocking::from_key(k).to_json());
        let accessible_majority = match accessible.majority() {
            Some("true") => Value::Bool(true),
            Some("false") => Value::Bool(false),
            _ => Value::Null,
        };
        ConsensusRecord {
            domain: first.domain.clone(),
            categories: first.categories.clone(),
            attempts: blocking.total(),
            consistency: blocking.consistency(),
            blocking: ValueConsensus {
                majority: blocking_majority,
                consistency: blocking.consistency(),
                counts: blocking.counts().clone(),
            },
            accessible: ValueConsensus {
                majority: accessible_majority,
                consistency: accessible.consistency(),
                counts: accessible.counts().clone(),
            },
            stages,
            forged_ips,
        }
    }

    /// The consensus as an outcome, so every workflow treats it like one measurement.
    pub fn outcome(&self) -> TargetOutcome {
        TargetOutcome {
            domain: self.domain.clone(),
            categories: self.categories.clone(),
            stages: self
                .stages
                .iter()
                .map(|(name, stage)| {
                    (
                        name.clone(),
                        StageOutcome {
                            verdict: stage.verdict.clone(),
                            method: stage.method.clone(),
                            stage: stage.stage.clone(),
                        },
                    )
                })
                .collect(),
            blocking: Blocking::from_json(&self.blocking.majority),
            blocking_derived: false,
            accessible: self.accessible.majority.as_bool(),
            forged_ips: self.forged_ips.clone(),
            attempt: None,
            attempts: self.attempts,
            consistency: self.consistency,
        }
    }
}

fn stage_consensus(name: &str, attempts: &[TargetOutcome]) -> StageConsensus {
    let mut verdicts = Tally::default();
    let mut methods = Tally::default();
    for attempt in attempts {
        let stage = attempt.stage(name);
        verdicts.add(stage.map_or("none", |s| s.verdict.as_str()));
        if let Some(method) = stage.and_then(|s| s.method.as_deref()) {
            methods.add(method);
        }
    }
    let verdict = verdicts.majority().unwrap_or(NO_MAJORITY).to_owned();
    // Method and place are those of the attempts that had the majority verdict.
    let mut majority_methods = Tally::default();
    let mut majority_wheres = Tally::default();
    for stage in attempts.iter().filter_map(|a| a.stage(name)) {
        if stage.verdict == verdict {
            majority_methods.add(stage.method.clone().unwrap_or_default());
            majority_wheres.add(stage.stage.clone().unwrap_or_default());
        }
    }
    let non_empty = |t: &Tally| t.majority().filter(|m| !m.is_empty()).map(str::to_owned);
    StageConsensus {
        method: non_empty(&majority_methods),
        stage: non_empty(&majority_wheres),
        verdict,
        consistency: verdicts.consistency(),
        verdicts: verdicts.counts().clone(),
        methods: methods.counts().clone(),
    }
}

/// Collects each target's attempts as they are written and yields its consensus when
/// the last one is in. Holds only the targets with attempts still to come.
#[derive(Debug)]
pub struct RepeatTracker {
    per_target: u32,
    pending: HashMap<String, Vec<TargetOutcome>>,
}

impl RepeatTracker {
    pub fn new(per_target: u32) -> Self {
        RepeatTracker {
            per_target: per_target.max(1),
            pending: HashMap::new(),
        }
    }

    /// Seeds the attempts an earlier (resumed) run recorded.
    pub fn seed(&mut self, domain: &str, attempts: Vec<TargetOutcome>) {
        self.pending.insert(domain.to_owned(), attempts);
    }

    /// Drops a target's attempts (its consensus was written some other way).
    pub fn forget(&mut self, domain: &str) {
        self.pending.remove(domain);
    }

    /// Adds one attempt; returns the consensus when it was the target's last.
    pub fn add(&mut self, outcome: TargetOutcome) -> Option<ConsensusRecord> {
        let domain = outcome.domain.clone();
        let attempts = self.pending.entry(domain.clone()).or_default();
        attempts.push(outcome);
        if attempts.len() as u32 >= self.per_target {
            let attempts = self.pending.remove(&domain).unwrap_or_default();
            Some(ConsensusRecord::of(&attempts))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attempt(value: &Value) -> TargetOutcome {
        TargetOutcome::from_value(value).unwrap()
    }

    fn poisoned(method: &str) -> TargetOutcome {
        attempt(
            &json!({"domain": "x.test", "dns": {"verdict": "dns_poisoning", "method": method, "forged_ips": ["10.10.34.34"]}}),
        )
    }

    fn clean() -> TargetOutcome {
        attempt(&json!({"domain": "x.test", "dns": {"verdict": "ok"}}))
    }

    #[test]
    fn majority_needs_more_than_half() {
        let mut tally = Tally::default();
        tally.add("a");
        tally.add("b");
        assert_eq!(tally.majority(), None, "a tie is no majority");
        assert!((tally.consistency() - 0.5).abs() < 1e-9);
        tally.add("a");
        assert_eq!(tally.majority(), Some("a"));
        assert!((tally.consistency() - 0.667).abs() < 1e-9);
        let mut spread = Tally::default();
        for k in ["a", "a", "b", "c", "d"] {
            spread.add(k);
        }
        assert_eq!(
            spread.majority(),
            None,
            "a plurality of 2/5 is not a majority"
        );
        assert!((spread.consistency() - 0.4).abs() < 1e-9);
        assert_eq!(Tally::default().majority(), None);
        assert!(Tally::default().consistency().abs() < 1e-9);
    }

    #[test]
    fn two_of_three_poisoned_is_a_majority() {
        let consensus =
            ConsensusRecord::of(&[poisoned("injection"), clean(), poisoned("injection")]);
        assert_eq!(consensus.attempts, 3);
        assert_eq!(consensus.blocking.majority, json!("dns"));
        assert!((consensus.consistency - 0.667).abs() < 1e-9);
        let dns = &consensus.stages["dns"];
        assert_eq!(dns.verdict, "dns_poisoning");
        assert_eq!(dns.method.as_deref(), Some("injection"));
        assert_eq!(dns.verdicts["dns_poisoning"], 2);
        assert_eq!(dns.verdicts["ok"], 1);
        assert_eq!(consensus.accessible.majority, json!(false));
        assert_eq!(consensus.forged_ips, ["10.10.34.34"]);
        let outcome = consensus.outcome();
        assert_eq!(outcome.blocking, Blocking::Blocked("dns".into()));
        assert_eq!(outcome.attempts, 3);
    }

    #[test]
    fn one_reset_is_not_a_finding() {
        let consensus = ConsensusRecord::of(&[poisoned("injection"), clean()]);
        assert_eq!(consensus.blocking.majority, Value::Null);
        assert_eq!(consensus.stages["dns"].verdict, NO_MAJORITY);
        assert_eq!(consensus.stages["dns"].method, None);
        assert!((consensus.consistency - 0.5).abs() < 1e-9);
        assert_eq!(consensus.outcome().blocking, Blocking::Unknown);

        let unanimous = ConsensusRecord::of(&[clean(), clean(), clean()]);
        assert_eq!(unanimous.blocking.majority, json!(false));
        assert!((unanimous.consistency - 1.0).abs() < 1e-9);
    }

    #[test]
    fn method_majority_is_among_the_majority_verdict() {
        let consensus = ConsensusRecord::of(&[
            poisoned("injection"),
            poisoned("inconsistent"),
            poisoned("injection"),
            clean(),
        ]);
        let dns = &consensus.stages["dns"];
        assert_eq!(dns.verdict, "dns_poisoning");
        assert_eq!(dns.method.as_deref(), Some("injection"));
        assert_eq!(dns.methods["inconsistent"], 1);

        let split = ConsensusRecord::of(&[poisoned("injection"), poisoned("bogon")]);
        assert_eq!(split.stages["dns"].verdict, "dns_poisoning");
        assert_eq!(split.stages["dns"].method, None, "methods split evenly");
    }

    #[test]
    fn tracker_yields_consensus_after_the_last_attempt() {
        let mut tracker = RepeatTracker::new(3);
        tracker.seed("x.test", vec![poisoned("injection")]);
        assert!(tracker.add(clean()).is_none());
        let consensus = tracker.add(poisoned("injection")).unwrap();
        assert_eq!(consensus.attempts, 3);
        assert!(tracker.pending.is_empty());
    }

    #[test]
    fn consensus_record_round_trips() {
        let consensus = ConsensusRecord::of(&[poisoned("injection"), clean(), clean()]);
        let text = serde_json::to_string(&consensus).unwrap();
        let back: ConsensusRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, consensus);
        assert_eq!(back.outcome().blocking, Blocking::NotBlocked);
    }
}
