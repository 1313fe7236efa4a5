//! `--repeat N`: the consensus record of a target, written right after its last attempt.

use std::collections::HashMap;

use super::{OutputError, RecordSink};
use crate::record::{HeaderRecord, SummaryRecord, TargetRecord};
use crate::report::consensus::ConsensusRecord;
use crate::report::outcome::TargetOutcome;

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

/// Passes every record to `inner`, and after a target's last attempt its consensus.
/// Seeded with the attempts a resumed run recorded; at the header it writes the
/// consensus records that run owes (all attempts recorded, the consensus not).
#[derive(Debug)]
pub struct ConsensusSink<S> {
    inner: S,
    tracker: RepeatTracker,
    /// Attempts of the resumed run whose consensus is owed, written at the header.
    owed: Vec<Vec<TargetOutcome>>,
}

impl<S: RecordSink> ConsensusSink<S> {
    /// `per_target` attempts make a consensus; `prior` holds a resumed run's recorded
    /// attempts of targets without a consensus yet.
    pub fn new(
        inner: S,
        per_target: u32,
        prior: HashMap<String, Vec<TargetOutcome>>,
    ) -> ConsensusSink<S> {
        let mut tracker = RepeatTracker::new(per_target);
        let mut owed = Vec::new();
        for (domain, attempts) in prior {
            if attempts.len() as u32 >= tracker.per_target {
                owed.push(attempts);
            } else {
                tracker.seed(&domain, attempts);
            }
        }
        owed.sort_by(|a, b| a[0].domain.cmp(&b[0].domain));
        ConsensusSink {
            inner,
            tracker,
            owed,
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: RecordSink> RecordSink for ConsensusSink<S> {
    fn header(&mut self, header: &HeaderRecord) -> Result<(), OutputError> {
        self.inner.header(header)?;
        if self.owed.is_empty() {
            return Ok(());
        }
        for attempts in std::mem::take(&mut self.owed) {
            self.inner.consensus(&ConsensusRecord::of(&attempts))?;
        }
        self.inner.flush()
    }

    fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError> {
        self.inner.target(record)?;
        // Judged the way check, diff and summary judge the written record.
        if let Some(consensus) = self.tracker.add(TargetOutcome::from(record)) {
            self.inner.consensus(&consensus)?;
        }
        Ok(())
    }

    fn consensus(&mut self, consensus: &ConsensusRecord) -> Result<(), OutputError> {
        self.inner.consensus(consensus)
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.inner.flush()
    }

    fn finish(&mut self, summary: &SummaryRecord) -> Result<(), OutputError> {
        self.inner.finish(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// A sink that notes the calls it gets.
    #[derive(Default)]
    struct Calls(Vec<String>);

    impl RecordSink for Calls {
        fn header(&mut self, _: &HeaderRecord) -> Result<(), OutputError> {
            self.0.push("header".into());
            Ok(())
        }
        fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError> {
            self.0.push(format!("target {}", record.domain));
            Ok(())
        }
        fn consensus(&mut self, consensus: &ConsensusRecord) -> Result<(), OutputError> {
            self.0.push(format!(
                "consensus {} of {}",
                consensus.domain, consensus.attempts
            ));
            Ok(())
        }
        fn flush(&mut self) -> Result<(), OutputError> {
            self.0.push("flush".into());
            Ok(())
        }
        fn finish(&mut self, _: &SummaryRecord) -> Result<(), OutputError> {
            self.0.push("finish".into());
            Ok(())
        }
    }

    fn lab_demo() -> (HeaderRecord, TargetRecord) {
        use crate::record::ReportRecord;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("reports/examples/lab-demo.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        let (mut header, mut target) = (None, None);
        for line in text.lines() {
            match serde_json::from_str(line).unwrap() {
                ReportRecord::Header(h) => header = Some(h),
                ReportRecord::Target(t) => target = Some(*t),
                _ => {}
            }
        }
        (header.unwrap(), target.unwrap())
    }

    fn named(domain: &str) -> TargetOutcome {
        let mut outcome = clean();
        outcome.domain = domain.to_owned();
        outcome
    }

    #[test]
    fn consensus_follows_the_last_attempt_and_owed_ones_the_header() {
        let (header, record) = lab_demo();
        let prior = HashMap::from([
            (
                "owed.test".to_owned(),
                vec![named("owed.test"), named("owed.test")],
            ),
            ("half.test".to_owned(), vec![named("half.test")]),
        ]);
        let mut sink = ConsensusSink::new(Calls::default(), 2, prior);
        sink.header(&header).unwrap();
        let mut half = record.clone();
        half.domain = "half.test".into();
        let mut fresh = record;
        fresh.domain = "fresh.test".into();
        sink.target(&fresh).unwrap();
        sink.target(&half).unwrap();
        sink.target(&fresh).unwrap();
        sink.flush().unwrap();
        assert_eq!(
            sink.into_inner().0,
            [
                "header",
                "consensus owed.test of 2",
                "flush",
                "target fresh.test",
                "target half.test",
                "consensus half.test of 2",
                "target fresh.test",
                "consensus fresh.test of 2",
                "flush",
            ]
        );
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
}
