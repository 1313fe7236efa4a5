//! What a scan measures beyond each target once: resuming an interrupted report, and
//! repeating every target.
//!
//! Repeats are spread over time as round-robin passes over the (ordered) list: pass k
//! measures every target's k-th attempt, and starts only when pass k-1 is done and at
//! least `--repeat-interval` after pass k-1 started. Two attempts on one target are
//! thus never in flight together and are a whole pass apart; residual-censorship
//! cooldowns on shared paths are kept by the web stage's path guard as in any scan.
//!
//! A pass holds no targets: it walks the scheduled order of the compact list and makes
//! each [`Target`] as the dispatcher draws it, so memory does not grow with the list.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::ScanError;
use super::resume::PriorRun;
use crate::output::OutputFormat;
use crate::scheduler::{DispatchOutcome, ScheduledOrder, Shard};
use crate::targets::{SkippedInput, Target, TargetList, TargetStore};

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

/// One unit of work: a scheduled target and the number of the attempt (1-based).
#[derive(Debug)]
pub struct Attempt {
    pub target: ScheduledTarget,
    pub attempt: u32,
}

/// A target of the schedule, made in full only when asked: a name waiting in the late-
/// reply window holds this (a shared pointer and an index), not the target's strings.
#[derive(Debug, Clone)]
pub struct ScheduledTarget {
    schedule: Arc<Schedule>,
    index: u32,
}

impl ScheduledTarget {
    /// The target's normalised name ([`Target::domain`]).
    pub fn domain(&self) -> &str {
        self.schedule.targets.domain(self.index as usize)
    }

    /// Whether the target is an address ([`Target::address`] is set).
    pub fn is_address(&self) -> bool {
        self.schedule.targets.is_address(self.index as usize)
    }

    /// The target, made in full.
    pub fn to_target(&self) -> Target {
        self.schedule.targets.target(self.index as usize)
    }
}

/// The scheduled targets every pass walks.
#[derive(Debug)]
struct Schedule {
    targets: TargetStore,
    order: ScheduledOrder,
    /// Attempts a resumed report already holds, by index in `targets` (only those
    /// with at least one).
    done: HashMap<u32, u32>,
}

impl Schedule {
    fn done(&self, index: usize) -> u32 {
        if self.done.is_empty() {
            return 0;
        }
        self.done.get(&(index as u32)).copied().unwrap_or(0)
    }
}

/// One pass: the scheduled targets whose attempt number `attempt` is still to do, in
/// the scheduled order. Iterating it makes each target as it is drawn.
#[derive(Debug, Clone)]
pub struct Pass {
    attempt: u32,
    len: usize,
    schedule: Arc<Schedule>,
}

impl Pass {
    /// The attempt this pass measures (1-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Attempts in the pass.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl IntoIterator for Pass {
    type Item = Attempt;
    type IntoIter = PassIter;
    fn into_iter(self) -> PassIter {
        PassIter {
            left: self.len,
            pass: self,
            position: 0,
        }
    }
}

/// The attempts of a [`Pass`], each target made when drawn.
#[derive(Debug)]
pub struct PassIter {
    pass: Pass,
    /// Next position in the scheduled order.
    position: usize,
    left: usize,
}

impl Iterator for PassIter {
    type Item = Attempt;
    fn next(&mut self) -> Option<Attempt> {
        let schedule = &self.pass.schedule;
        while self.position < schedule.order.len() {
            let index = schedule.order.index(self.position);
            self.position += 1;
            if schedule.done(index) < self.pass.attempt {
                self.left -= 1;
                return Some(Attempt {
                    target: ScheduledTarget {
                        schedule: Arc::clone(schedule),
                        index: u32::try_from(index)
                            .expect("the store holds fewer than 2^32 targets"),
                    },
                    attempt: self.pass.attempt,
                });
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for PassIter {}

/// The work of one scan: the passes over the scheduled targets still to measure, what
/// the report being resumed holds, and the list's counts for the header.
#[derive(Debug)]
pub struct Passes {
    pub plan: ScanPlan,
    pub passes: Vec<Pass>,
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
        self.passes.iter().map(Pass::len).sum()
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

    /// Schedules `list` (ordered by `seed`, cut to the `shard`) into the passes still
    /// to run after `prior`.
    pub fn schedule(
        &self,
        list: TargetList,
        seed: u64,
        shard: Option<Shard>,
        prior: PriorRun,
    ) -> Passes {
        let targets_loaded = list.targets.len();
        let order = ScheduledOrder::new(targets_loaded, seed, shard);
        let mut done = HashMap::new();
        if !prior.attempts.is_empty() {
            for index in order.iter() {
                let attempts = prior.done(list.targets.domain(index));
                if attempts > 0 {
                    done.insert(index as u32, attempts);
                }
            }
        }
        let targets_scheduled = order.len();
        let schedule = Arc::new(Schedule {
            targets: list.targets,
            order,
            done,
        });
        Passes {
            plan: self.clone(),
            passes: self.passes(&schedule),
            prior,
            targets_loaded,
            targets_scheduled,
            skipped_inputs: list.skipped,
            skipped_inputs_omitted: list.skipped_omitted,
        }
    }

    /// The passes to run: pass k holds every target whose k-th attempt is still to do.
    /// Targets keep the scheduled order in every pass; empty passes are left out.
    fn passes(&self, schedule: &Arc<Schedule>) -> Vec<Pass> {
        (1..=self.repeat)
            .map(|attempt| {
                let finished = schedule.done.values().filter(|&&d| d >= attempt).count();
                Pass {
                    attempt,
                    len: schedule.order.len() - finished,
                    schedule: Arc::clone(schedule),
                }
            })
            .filter(|pass| !pass.is_empty())
            .collect()
    }

    /// Runs the passes one after another with `run_pass`, which dispatches one pass and
    /// stops early when the run is interrupted; `stop` also ends a wait between passes.
    pub async fn run_passes<F, Fut, S>(
        &self,
        passes: Vec<Pass>,
        stop: S,
        mut run_pass: F,
    ) -> DispatchOutcome
    where
        F: FnMut(Pass) -> Fut,
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

    fn names(pass: &Pass) -> Vec<(String, u32)> {
        let attempts: Vec<Attempt> = pass.clone().into_iter().collect();
        assert_eq!(
            attempts.len(),
            pass.len(),
            "the pass walks as many as it says"
        );
        attempts
            .into_iter()
            .map(|a| {
                let target = a.target.to_target();
                assert_eq!(a.target.domain(), target.domain);
                assert_eq!(a.target.is_address(), target.address.is_some());
                (target.domain, a.attempt)
            })
            .collect()
    }

    const SEED: u64 = 7;

    fn schedule(plan: &ScanPlan, domains: &[&str], prior: PriorRun) -> Passes {
        let list = TargetList {
            targets: domains.iter().map(|d| target(d)).collect(),
            ..TargetList::default()
        };
        plan.schedule(list, SEED, None, prior)
    }

    /// `domains` in the scheduled order of [`SEED`], with `attempt`, keeping `kept`.
    fn in_order(domains: &[&str], attempt: u32, kept: &[&str]) -> Vec<(String, u32)> {
        crate::scheduler::order(domains.to_vec(), SEED, None)
            .into_iter()
            .filter(|d| kept.contains(d))
            .map(|d| (d.to_owned(), attempt))
            .collect()
    }

    #[test]
    fn passes_are_round_robin_and_skip_what_is_done() {
        let plan = ScanPlan {
            repeat: 3,
            ..ScanPlan::default()
        };
        let list = ["a.test", "b.test", "c.test", "d.test", "e.test"];
        let mut prior = PriorRun::default();
        prior.attempts.insert("a.test".into(), 3);
        prior.attempts.insert("b.test".into(), 1);
        prior.attempts.insert("d.test".into(), 1);
        prior.attempts.insert("e.test".into(), 2);
        prior.attempts.insert("not-listed.test".into(), 1);
        let passes = schedule(&plan, &list, prior);
        assert_eq!(passes.targets_loaded, 5);
        assert_eq!(passes.targets_scheduled, 5);
        assert_eq!(passes.passes.len(), 3);
        assert_eq!(names(&passes.passes[0]), in_order(&list, 1, &["c.test"]));
        let second = in_order(&list, 2, &["b.test", "c.test", "d.test"]);
        assert_eq!(second.len(), 3);
        assert_eq!(names(&passes.passes[1]), second);
        let third = in_order(&list, 3, &["b.test", "c.test", "d.test", "e.test"]);
        assert_eq!(names(&passes.passes[2]), third);
        assert_eq!(passes.attempts(), 1 + 3 + 4);

        let mut prior = PriorRun::default();
        prior.attempts.insert("a.test".into(), 3);
        prior.attempts.insert("b.test".into(), 1);
        let single = schedule(&ScanPlan::default(), &list[..3], prior);
        assert_eq!(single.passes.len(), 1);
        assert_eq!(names(&single.passes[0]), [("c.test".to_owned(), 1)]);
        let mut prior = PriorRun::default();
        for done in &list[..3] {
            prior.attempts.insert((*done).to_owned(), 1);
        }
        let none = schedule(&ScanPlan::default(), &list[..3], prior);
        assert!(none.passes.is_empty());
        assert_eq!(none.attempts(), 0);
        assert_eq!(none.targets_scheduled, 3);
    }

    #[test]
    fn shards_of_passes_are_disjoint_cover_the_list_and_count_right() {
        let domains: Vec<String> = (0..103).map(|i| format!("n{i}.test")).collect();
        let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
        let plan = ScanPlan {
            repeat: 2,
            ..ScanPlan::default()
        };
        let mut seen = std::collections::HashSet::new();
        for index in 0..4 {
            let mut prior = PriorRun::default();
            prior.attempts.insert("n5.test".into(), 1);
            let list = TargetList {
                targets: refs.iter().map(|d| target(d)).collect(),
                ..TargetList::default()
            };
            let passes = plan.schedule(list, SEED, Some(Shard { index, count: 4 }), prior);
            assert_eq!(passes.targets_loaded, 103);
            let first = names(&passes.passes[0]);
            let second = names(&passes.passes[1]);
            let has_n5 = second.iter().any(|(d, _)| d == "n5.test");
            assert_eq!(passes.targets_scheduled, first.len() + usize::from(has_n5));
            assert_eq!(second.len(), passes.targets_scheduled);
            assert!((25..=26).contains(&passes.targets_scheduled));
            for (domain, _) in second {
                assert!(seen.insert(domain.clone()), "{domain} in two shards");
            }
        }
        assert_eq!(seen.len(), 103);
    }

    #[tokio::test(start_paused = true)]
    async fn passes_are_spread_by_the_interval_and_stop_on_interrupt() {
        let plan = ScanPlan {
            repeat: 3,
            repeat_interval: Duration::from_secs(60),
            ..ScanPlan::default()
        };
        let list = ["a.test", "b.test"];
        let passes = schedule(&plan, &list, PriorRun::default()).passes;
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

        let passes = schedule(&plan, &list, PriorRun::default()).passes;
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
