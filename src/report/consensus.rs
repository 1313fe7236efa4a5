//! Repeated measurements: the majority verdict of a target's attempts and how
//! consistent they were. Censors are not deterministic, and one reset is not a finding.
//!
//! A value is the majority when more than half of the attempts have it; with no such
//! value there is no majority (`no_majority` for a stage, null for blocking). The
//! consistency ratio is the share of attempts that agree with the most common value
//! (1.0 when all agree), whether or not it is a majority.

use std::collections::BTreeMap;

pub use crate::record::consensus::{
    ConsensusRecord, ConsensusStages, StageConsensus, ValueConsensus,
};

use super::outcome::{StageOutcome, StageOutcomes, TargetOutcome, accessible_key};

use crate::vocab::{Blocking, BlockingKey, Majority, PoisoningMethod, StageVerdict};

/// Counts of values among attempts.
#[derive(Debug, Clone)]
pub struct Tally<K> {
    counts: Vec<(K, u32)>,
    total: u32,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Tally {
            counts: Vec::new(),
            total: 0,
        }
    }
}

impl<K: Copy + PartialEq> Tally<K> {
    pub fn add(&mut self, key: K) {
        match self.counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((key, 1)),
        }
        self.total += 1;
    }

    /// The value more than half of the entries have.
    pub fn majority(&self) -> Option<K> {
        self.counts
            .iter()
            .find(|(_, n)| *n * 2 > self.total)
            .map(|(k, _)| *k)
    }

    /// Share of entries agreeing with the most common value (0 with no entries).
    pub fn consistency(&self) -> f64 {
        match self.counts.iter().map(|(_, n)| *n).max() {
            Some(max) if self.total > 0 => round3(f64::from(max) / f64::from(self.total)),
            _ => 0.0,
        }
    }

    /// The counts by wire name (a map written in the report, so in the names' order).
    pub fn counts(&self, name: impl Fn(K) -> &'static str) -> BTreeMap<String, u32> {
        self.counts
            .iter()
            .map(|(k, n)| (name(*k).to_owned(), *n))
            .collect()
    }

    pub fn total(&self) -> u32 {
        self.total
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl<V: StageVerdict> StageConsensus<V> {
    /// The consensus of the stage `pick` selects (at least one attempt ran it).
    fn of(
        attempts: &[TargetOutcome],
        pick: impl Fn(&TargetOutcome) -> Option<&StageOutcome<V>>,
    ) -> Option<StageConsensus<V>> {
        attempts.iter().find_map(&pick)?;
        let mut verdicts = Tally::default();
        let mut methods = Tally::default();
        for attempt in attempts {
            let stage = pick(attempt);
            verdicts.add(stage.map_or(Majority::NotRun, |s| s.verdict));
            if let Some(method) = stage.and_then(|s| s.method) {
                methods.add(method);
            }
        }
        let verdict = verdicts.majority().unwrap_or(Majority::NoMajority);
        // Method and place are those of the attempts that had the majority verdict.
        let mut majority_methods = Tally::default();
        let mut majority_places = Tally::default();
        for stage in attempts.iter().filter_map(&pick) {
            if stage.verdict == verdict {
                majority_methods.add(stage.method);
                majority_places.add(stage.stage);
            }
        }
        Some(StageConsensus {
            verdict,
            method: majority_methods.majority().flatten(),
            stage: majority_places.majority().flatten(),
            consistency: verdicts.consistency(),
            verdicts: verdicts.counts(Majority::as_str),
            methods: methods.counts(PoisoningMethod::as_str),
        })
    }

    fn outcome(&self) -> StageOutcome<V> {
        StageOutcome {
            verdict: self.verdict,
            method: self.method,
            stage: self.stage,
        }
    }
}

impl<T: Copy + PartialEq> ValueConsensus<T> {
    fn of(tally: &Tally<T>, none: T, name: impl Fn(T) -> &'static str) -> ValueConsensus<T> {
        ValueConsensus {
            majority: tally.majority().unwrap_or(none),
            consistency: tally.consistency(),
            counts: tally.counts(name),
        }
    }
}

impl ConsensusRecord {
    /// The consensus of a target's attempts (at least one).
    pub fn of(attempts: &[TargetOutcome]) -> ConsensusRecord {
        let first = attempts.first().expect("a consensus of no attempts");
        let mut blocking = Tally::default();
        let mut accessible = Tally::default();
        let mut forged_ips: Vec<String> = Vec::new();
        for attempt in attempts {
            blocking.add(attempt.blocking);
            accessible.add(attempt.accessible);
            for ip in &attempt.forged_ips {
                if !forged_ips.contains(ip) {
                    forged_ips.push(ip.clone());
                }
            }
        }
        ConsensusRecord {
            domain: first.domain.clone(),
            categories: first.categories.clone(),
            attempts: blocking.total(),
            consistency: blocking.consistency(),
            blocking: ValueConsensus::of(&blocking, Blocking::Inconclusive, |b| {
                BlockingKey::from(b).as_str()
            }),
            accessible: ValueConsensus::of(&accessible, None, accessible_key),
            stages: ConsensusStages {
                dns: StageConsensus::of(attempts, |a| a.stages.dns.as_ref()),
                http: StageConsensus::of(attempts, |a| a.stages.http.as_ref()),
                tls: StageConsensus::of(attempts, |a| a.stages.tls.as_ref()),
            },
            forged_ips,
        }
    }

    /// The consensus as an outcome, so every workflow treats it like one measurement.
    pub fn outcome(&self) -> TargetOutcome {
        TargetOutcome {
            domain: self.domain.clone(),
            categories: self.categories.clone(),
            stages: StageOutcomes {
                dns: self.stages.dns.as_ref().map(StageConsensus::outcome),
                http: self.stages.http.as_ref().map(StageConsensus::outcome),
                tls: self.stages.tls.as_ref().map(StageConsensus::outcome),
            },
            blocking: self.blocking.majority,
            blocking_derived: false,
            accessible: self.accessible.majority,
            forged_ips: self.forged_ips.clone(),
            injectors: Vec::new(),
            attempt: None,
            attempts: self.attempts,
            consistency: self.consistency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{BlockingLayer, DnsVerdict};
    use serde_json::{Value, json};

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
        assert_eq!(Tally::<&str>::default().majority(), None);
        assert!(Tally::<&str>::default().consistency().abs() < 1e-9);
    }

    #[test]
    fn two_of_three_poisoned_is_a_majority() {
        let consensus =
            ConsensusRecord::of(&[poisoned("injection"), clean(), poisoned("injection")]);
        assert_eq!(consensus.attempts, 3);
        assert_eq!(
            consensus.blocking.majority,
            Blocking::At(BlockingLayer::Dns)
        );
        assert!((consensus.consistency - 0.667).abs() < 1e-9);
        let dns = consensus.stages.dns.as_ref().unwrap();
        assert_eq!(dns.verdict, Majority::Of(DnsVerdict::DnsPoisoning));
        assert_eq!(dns.method, Some(PoisoningMethod::Injection));
        assert_eq!(dns.verdicts["dns_poisoning"], 2);
        assert_eq!(dns.verdicts["ok"], 1);
        assert_eq!(consensus.accessible.majority, Some(false));
        assert_eq!(consensus.forged_ips, ["10.10.34.34"]);
        let outcome = consensus.outcome();
        assert_eq!(outcome.blocking, Blocking::At(BlockingLayer::Dns));
        assert_eq!(outcome.attempts, 3);
    }

    #[test]
    fn one_reset_is_not_a_finding() {
        let consensus = ConsensusRecord::of(&[poisoned("injection"), clean()]);
        assert_eq!(consensus.blocking.majority, Blocking::Inconclusive);
        assert_eq!(
            consensus.stages.dns.as_ref().unwrap().verdict,
            Majority::NoMajority
        );
        assert_eq!(consensus.stages.dns.as_ref().unwrap().method, None);
        assert!((consensus.consistency - 0.5).abs() < 1e-9);
        assert_eq!(consensus.outcome().blocking, Blocking::Inconclusive);

        let unanimous = ConsensusRecord::of(&[clean(), clean(), clean()]);
        assert_eq!(unanimous.blocking.majority, Blocking::No);
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
        let dns = consensus.stages.dns.as_ref().unwrap();
        assert_eq!(dns.verdict, Majority::Of(DnsVerdict::DnsPoisoning));
        assert_eq!(dns.method, Some(PoisoningMethod::Injection));
        assert_eq!(dns.methods["inconsistent"], 1);

        let split = ConsensusRecord::of(&[poisoned("injection"), poisoned("bogon")]);
        assert_eq!(
            split.stages.dns.as_ref().unwrap().verdict,
            Majority::Of(DnsVerdict::DnsPoisoning)
        );
        assert_eq!(
            split.stages.dns.as_ref().unwrap().method,
            None,
            "methods split evenly"
        );
    }

    #[test]
    fn consensus_record_round_trips() {
        let consensus = ConsensusRecord::of(&[poisoned("injection"), clean(), clean()]);
        let text = serde_json::to_string(&consensus).unwrap();
        let back: ConsensusRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, consensus);
        assert_eq!(back.outcome().blocking, Blocking::No);
    }

    #[test]
    fn a_stage_most_attempts_did_not_run_has_the_verdict_none() {
        let with_http = attempt(
            &json!({"domain": "x.test", "dns": {"verdict": "ok"}, "http": {"verdict": "rst_injection", "stage": "request"}}),
        );
        let consensus = ConsensusRecord::of(&[with_http, clean(), clean()]);
        let http = consensus.stages.http.as_ref().unwrap();
        assert_eq!(http.verdict, Majority::NotRun);
        assert_eq!(http.stage, None);
        assert_eq!(http.verdicts["none"], 2);
        assert_eq!(http.verdicts["rst_injection"], 1);
        let text = serde_json::to_value(&consensus).unwrap();
        assert_eq!(text["stages"]["http"]["verdict"], "none");
        assert_eq!(text["blocking"]["counts"], json!({"false": 2, "http": 1}));
        assert_eq!(text["accessible"]["counts"], json!({"false": 1, "true": 2}));
        assert_eq!(text["accessible"]["majority"], json!(true));
        assert!(consensus.stages.tls.is_none());
        let outcome = consensus.outcome();
        assert_eq!(outcome.stages.http.unwrap().verdict, Majority::NotRun);
    }
}
