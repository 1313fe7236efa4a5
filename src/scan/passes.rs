//! What a scan measures beyond each target once: resuming an interrupted report, and
//! repeating every target.
//!
//! Repeats are spread over time as round-robin passes over the (shuffled) list: pass k
//! measures every target's k-th attempt, and starts only when pass k-1 is done and at
//! least `--repeat-interval` after pass k-1 started. Two attempts on one target are
//! thus never in flight together and are a whole pass apart; residual-censorship
//! cooldowns on shared paths are kept by the web stage's path guard as in any scan.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use super::ScanError;
use super::resume::PriorRun;
use crate::output::OutputFormat;
use crate::scheduler::{DispatchOutcome, Shard, order};
use crate::targets::{SkippedInput, Target, TargetList};

/// Resuming and repeating, as asked for.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    pub resume: Option<PathBuf>,
    pub repeat: u32,
    pub repeat_interval: Duration,
    /// The output format (a resumed report is always JSONL).
    pub format: OutputFormat,
}

impl Default for ScanPlan {
    /// One measurement per target, JSONL (library use).
    fn default() -> Self {
        ScanPlan {
            resume: None,
            repeat: 1,
            repeat_interval: Duration::ZERO,
            format: OutputFormat::Jsonl,
        }
    }
}

/// One unit of work: a target and the number of the attempt (1-based).
pub type Attempt = (Target, u32);

/// The work of one scan: the passes over the scheduled targets still to measure, what
/// the report being resumed holds, and the list's counts for the header.
#[derive(Debug)]
pub struct Passes {
    pub plan: ScanPlan,
    pub passes: Vec<Vec<Attempt>>,
    pub prior: PriorRun,
    pub targets_loaded: usize,
    pub targets_scheduled: usize,
    pub skipped_inputs: Vec<SkippedInput>,
    pub skipped_inputs_omitted: usize,
}

impl Passes {
    /// Every target of `list` once, in the order of `seed` (and only the `shard`).
    pub fn once(list: TargetList, seed: u64, shard: Option<Shard>) -> Passes {
        ScanPlan::default().schedule(list, seed, shard, PriorRun::default())
    }

    /// Attempts in all passes.
    pub fn attempts(&self) -> usize {
        self.passes.iter().map(Vec::len).sum()
    }
}

impl ScanPlan {
    /// Refuses option combinations that cannot work (checked before anything starts).
    pub fn validate(&self, out: Option<&std::path::Path>) -> Result<(), ScanError> {
        let Some(path) = &self.resume else {
            return Ok(());
        };
        let bad = |reason: &str| ScanError::BadResume {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if self.format != OutputFormat::Jsonl {
            return Err(bad(
                "--resume continues a JSONL report; --format ooni cannot",
            ));
        }
        if let Some(out) = out
            && out != path.as_path()
        {
            return Err(bad(
                "new records are appended to the resumed report: drop --out, or give the same file",
            ));
        }
        Ok(())
    }

    /// Reads what the report being resumed holds (nothing without `--resume`).
    pub fn load_prior(&self, out: Option<&std::path::Path>) -> Result<PriorRun, ScanError> {
        self.validate(out)?;
        match &self.resume {
            Some(path) => PriorRun::load(path, self.repeat),
            None => Ok(PriorRun::default()),
        }
    }

    /// Schedules `list` (shuffled by `seed`, cut to the `shard`) into the passes still
    /// to run after `prior`.
    pub fn schedule(
        &self,
        list: TargetList,
        seed: u64,
        shard: Option<Shard>,
        prior: PriorRun,
    ) -> Passes {
        let targets_loaded = list.targets.len();
        let scheduled = order(list.targets, seed, shard);
        Passes {
            plan: self.clone(),
            passes: self.passes(&scheduled, &prior),
            prior,
            targets_loaded,
            targets_scheduled: scheduled.len(),
            skipped_inputs: list.skipped,
            skipped_inputs_omitted: list.skipped_omitted,
        }
    }

    /// The passes to run: pass k holds every target whose k-th attempt is still to do.
    /// Targets keep the scheduled order in every pass.
    pub fn passes(&self, scheduled: &[Target], prior: &PriorRun) -> Vec<Vec<Attempt>> {
        (1..=self.repeat)
            .map(|attempt| {
                scheduled
                    .iter()
                    .filter(|t| prior.done(&t.domain) < attempt)
                    .map(|t| (t.clone(), attempt))
                    .collect::<Vec<_>>()
            })
            .filter(|pass| !pass.is_empty())
            .collect()
    }

    /// Runs the passes one after another with `run_pass`, which dispatches one pass and
    /// stops early when the run is interrupted; `stop` also ends a wait between passes.
    pub async fn run_passes<F, Fut, S>(
        &self,
        passes: Vec<Vec<Attempt>>,
        stop: S,
        mut run_pass: F,
    ) -> DispatchOutcome
    where
        F: FnMut(Vec<Attempt>) -> Fut,
        Fut: Future<Output = DispatchOutcome>,
        S: Future<Output = ()> + Clone,
    {
        let mut total = DispatchOutcome {
            started: 0,
            interrupted: false,
        };
        let mut previous_start: Option<tokio::time::Instant> = None;
        for pass in passes {
            if let Some(start) = previous_start {
                tokio::select! {
                    biased;
                    () = stop.clone() => {
                        total.interrupted = true;
                        break;
                    }
                    () = tokio::time::sleep_until(start + self.repeat_interval) => {}
                }
            }
            previous_start = Some(tokio::time::Instant::now());
            let outcome = run_pass(pass).await;
            total.started += outcome.started;
            if outcome.interrupted {
                total.interrupted = true;
                break;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::TargetSource;
    use futures::FutureExt;

    fn target(domain: &str) -> Target {
        Target {
            domain: domain.to_owned(),
            address: None,
            pinned_ips: Vec::new(),
            sources: vec![TargetSource {
                source: "cli".into(),
                line: None,
                input: domain.to_owned(),
                category_code: None,
            }],
            sources_omitted: 0,
        }
    }

    fn names(pass: &[Attempt]) -> Vec<(String, u32)> {
        pass.iter().map(|(t, n)| (t.domain.clone(), *n)).collect()
    }

    #[test]
    fn passes_are_round_robin_and_skip_what_is_done() {
        let plan = ScanPlan {
            repeat: 3,
            ..ScanPlan::default()
        };
        let list = [target("a.test"), target("b.test"), target("c.test")];
        let mut prior = PriorRun::default();
        prior.attempts.insert("a.test".into(), 3);
        prior.attempts.insert("b.test".into(), 1);
        let passes = plan.passes(&list, &prior);
        assert_eq!(passes.len(), 3);
        assert_eq!(names(&passes[0]), [("c.test".to_owned(), 1)]);
        assert_eq!(
            names(&passes[1]),
            [("b.test".to_owned(), 2), ("c.test".to_owned(), 2)]
        );
        assert_eq!(
            names(&passes[2]),
            [("b.test".to_owned(), 3), ("c.test".to_owned(), 3)]
        );
        let single = ScanPlan::default().passes(&list, &prior);
        assert_eq!(names(&single[0]), [("c.test".to_owned(), 1)]);
        prior.attempts.insert("c.test".into(), 1);
        assert!(ScanPlan::default().passes(&list, &prior).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn passes_are_spread_by_the_interval_and_stop_on_interrupt() {
        let plan = ScanPlan {
            repeat: 3,
            repeat_interval: Duration::from_secs(60),
            ..ScanPlan::default()
        };
        let list = [target("a.test"), target("b.test")];
        let passes = plan.passes(&list, &PriorRun::default());
        let begun = tokio::time::Instant::now();
        let mut starts = Vec::new();
        let outcome = plan
            .run_passes(passes, std::future::pending::<()>().shared(), |pass| {
                starts.push(begun.elapsed());
                async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    DispatchOutcome {
                        started: pass.len(),
                        interrupted: false,
                    }
                }
            })
            .await;
        assert_eq!(outcome.started, 6);
        assert!(!outcome.interrupted);
        assert_eq!(
            starts,
            [
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(120)
            ]
        );

        let passes = plan.passes(&list, &PriorRun::default());
        let mut runs = 0;
        let stop = tokio::time::sleep(Duration::from_secs(30)).shared();
        let outcome = plan
            .run_passes(passes, stop, |pass| {
                runs += 1;
                async move {
                    DispatchOutcome {
                        started: pass.len(),
                        interrupted: false,
                    }
                }
            })
            .await;
        assert_eq!(runs, 1, "interrupted while waiting for the second pass");
        assert!(outcome.interrupted);
        assert_eq!(outcome.started, 2);
    }

    #[test]
    fn resume_rules() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.jsonl");
        let plan = ScanPlan {
            resume: Some(report.clone()),
            ..ScanPlan::default()
        };
        assert!(plan.load_prior(None).unwrap().is_resuming());
        assert!(plan.load_prior(Some(&report)).is_ok());
        let other = dir.path().join("other.jsonl");
        let err = plan.load_prior(Some(&other)).unwrap_err();
        assert!(err.to_string().contains("appended"), "{err}");
        let ooni = ScanPlan {
            format: OutputFormat::Ooni,
            ..plan
        };
        assert!(ooni.load_prior(None).is_err());
        assert!(!ScanPlan::default().load_prior(None).unwrap().is_resuming());
    }
}
