//! The scan's DNS pipeline: a name waiting for the DNS engine is an entry in a table,
//! not a task.
//!
//! In real mode a name is held for the late-reply window (`--dns-wait`) after its
//! first reply, so tens of thousands of names are in flight at once. A task per name
//! would hold a large future for each; here the dispatcher submits each name's questions
//! to the engine as one group and keeps only the target, its attempt number and its
//! start in a table. When the engine reports the group done (and the encrypted
//! control, if any, has answered), the name is judged on the dispatcher's own task.
//! Only a name that needs more continues in a task of its own: silence to re-check,
//! a bogon answer to compare with the benign query, addresses to prove with TLS, or the
//! web stages.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use slab::Slab;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::passes::{Attempt, ScheduledTarget};
use super::{ScanContext, complete_target, dns, probe_target};
use crate::observation::ControlObservation;
use crate::probe::dns::GroupDone;
use crate::probe::web::WebStage;
use crate::record::TargetRecord;
use crate::scheduler::{DispatchOutcome, Pacer, Ramp};

/// One name waiting for its DNS group (and its encrypted control lookup). Tens of
/// thousands wait at once in real mode: 80 bytes each (what only some names hold is
/// boxed, and the start's wall-clock time is the pipeline's clock read at `started`).
struct WaitingName {
    /// Made in full only when the record is: a waiting name holds none of its strings.
    target: ScheduledTarget,
    attempt: u32,
    started: Instant,
    /// Holds the name's place among the `--concurrency` names in flight.
    permit: OwnedSemaphorePermit,
    /// The finished group, its replies still as held, while the encrypted control is
    /// still waited for (without one the name is judged as its group finishes).
    queries: Option<Box<GroupDone>>,
    control: ControlSlot,
}

/// The encrypted control's part of a waiting name.
enum ControlSlot {
    /// No encrypted control: a UDP control's questions are in the group.
    NotAsked,
    Waiting,
    Done(Box<ControlObservation>),
}

/// The wall-clock time of an `Instant`, read from one reading of both clocks: a
/// waiting name keeps only its `Instant` (16 bytes less each), and the records of one
/// pass keep the order of their starts whatever the wall clock does meanwhile.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    wall: OffsetDateTime,
    at: Instant,
}

impl WallClock {
    fn now() -> Self {
        WallClock {
            wall: OffsetDateTime::now_utc(),
            at: Instant::now(),
        }
    }

    fn of(&self, at: Instant) -> OffsetDateTime {
        self.wall + at.saturating_duration_since(self.at)
    }
}

/// What the dispatcher, the judge and the tasks they start share.
struct Pipeline {
    context: Arc<ScanContext>,
    repeated: bool,
    results: mpsc::Sender<Box<TargetRecord>>,
    clock: WallClock,
    /// Keyed by the token the engine reports with; a slab, as tokens are reused.
    waiting: Mutex<Slab<WaitingName>>,
    /// Names that continue in a task of their own (and targets the pipeline does not
    /// take).
    tasks: Mutex<JoinSet<()>>,
}

impl Pipeline {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Slab<WaitingName>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap finished tasks so the set does not grow with the list.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(work);
    }

    /// The record, numbered, boxed for the writer's channel (a record is over a
    /// kilobyte: the channel moves a pointer, not the record, in and out).
    fn number(&self, record: TargetRecord, attempt: u32) -> Box<TargetRecord> {
        let mut record = Box::new(record);
        record.attempt = self.repeated.then_some(attempt);
        record
    }
}

/// How one pass is dispatched.
#[derive(Debug, Clone, Copy)]
pub(super) struct PassSettings {
    /// Targets in flight at most.
    pub(super) concurrency: usize,
    /// DNS queries a second (0: unpaced).
    pub(super) rate: f64,
    /// DNS queries per name.
    pub(super) cost: u32,
    /// Whether attempts are numbered (`--repeat`).
    pub(super) repeated: bool,
    /// The first `concurrency` starts are spread over this (the late-reply window; see
    /// [`Ramp`]).
    pub(super) ramp: std::time::Duration,
}

/// Runs one pass: names with a DNS stage through the table, everything else in a task
/// per target. At most `concurrency` targets are in flight; starts are paced at `rate`
/// DNS queries a second (`cost` queries per target). Stops starting new work when `stop`
/// resolves; work in flight is abandoned then (it was not measured to the end).
pub(super) async fn dispatch_pass(
    context: &Arc<ScanContext>,
    items: impl IntoIterator<Item = Attempt>,
    settings: PassSettings,
    results: mpsc::Sender<Box<TargetRecord>>,
    stop: impl Future<Output = ()>,
) -> DispatchOutcome {
    let PassSettings {
        concurrency,
        rate,
        cost,
        repeated,
        ramp,
    } = settings;
    let pipeline = Arc::new(Pipeline {
        context: Arc::clone(context),
        repeated,
        results,
        clock: WallClock::now(),
        // Room for every name in flight from the start: a table that doubled as it
        // filled would copy itself, and hold both copies for a moment, at its largest.
        // (Pages never written to take no memory.)
        waiting: Mutex::new(Slab::with_capacity(concurrency.max(1))),
        tasks: Mutex::new(JoinSet::new()),
    });
    let (group_done, groups) = mpsc::unbounded_channel::<GroupDone>();
    let (control_done, controls) = mpsc::unbounded_channel::<(u64, ControlObservation)>();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut started = 0;
    tokio::pin!(stop);

    let produce = produce(
        &pipeline,
        items,
        &permits,
        Ramp::new(concurrency, ramp),
        rate,
        cost,
        group_done,
        control_done,
        &mut started,
    );
    // The judge takes its turns like any other task. Run unconstrained (draining every
    // finished group it finds) it held fewer finished groups, but released permits by
    // the thousand: the names started in those bursts overflowed the server's receive
    // buffer, and `closest` lost four times as many names.
    let judge = judge(&pipeline, groups, controls);
    let mut interrupted = tokio::select! {
        biased;
        () = &mut stop => true,
        () = async { tokio::join!(produce, judge); } => false,
    };
    if !interrupted {
        // The table is empty and nothing is started any more: what is left are the
        // names that continued in tasks of their own.
        let mut tasks = std::mem::take(
            &mut *pipeline
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        tokio::select! {
            biased;
            () = &mut stop => { interrupted = true; tasks.abort_all(); }
            () = async { while tasks.join_next().await.is_some() {} } => {}
        }
    }
    pipeline
        .tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .abort_all();
    DispatchOutcome {
        started,
        interrupted,
    }
}

/// Starts every target of the pass: a name's questions go to the engine as a group
/// (its encrypted control lookup beside it), other targets to a task of their own.
#[allow(clippy::too_many_arguments)]
async fn produce(
    pipeline: &Arc<Pipeline>,
    items: impl IntoIterator<Item = Attempt>,
    permits: &Arc<Semaphore>,
    mut ramp: Ramp,
    rate: f64,
    cost: u32,
    group_done: mpsc::UnboundedSender<GroupDone>,
    control_done: mpsc::UnboundedSender<(u64, ControlObservation)>,
    started: &mut usize,
) {
    let context = &pipeline.context;
    let mut pacer = Pacer::new(rate);
    for Attempt { target, attempt } in items {
        let is_address = target.is_address();
        let through_table = !is_address && context.stages.dns;
        ramp.wait().await;
        pacer.wait(if is_address { 0 } else { cost }).await;
        let permit = Arc::clone(permits)
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        *started += 1;
        if !through_table {
            let task = Arc::clone(pipeline);
            let work = probe_target(Arc::clone(context), target.to_target());
            pipeline.spawn(async move {
                let pipeline = task;
                let record = pipeline.number(work.await, attempt);
                let _ = pipeline.results.send(record).await;
                drop(permit);
            });
            continue;
        }
        let started_clock = Instant::now();
        let questions = match context.dns.questions(target.domain()) {
            Ok(questions) => questions,
            Err(reason) => {
                // Nothing is asked for a name that cannot be put in a query.
                let section = dns::unencodable_name(&context.dns, target.domain(), &reason);
                finish(
                    pipeline,
                    target,
                    attempt,
                    pipeline.clock.of(started_clock),
                    started_clock,
                    section,
                    permit,
                )
                .await;
                continue;
            }
        };
        // The name is in the table before anything can report on it.
        let encrypted_control = context.dns.encrypted_control().is_some();
        let control_domain = encrypted_control.then(|| target.domain().to_owned());
        let token = pipeline.waiting().insert(WaitingName {
            target,
            attempt,
            started: started_clock,
            permit,
            queries: None,
            control: if encrypted_control {
                ControlSlot::Waiting
            } else {
                ControlSlot::NotAsked
            },
        }) as u64;
        if let Some(domain) = control_domain {
            let task = Arc::clone(pipeline);
            let control_done = control_done.clone();
            pipeline.spawn(async move {
                let pipeline = task;
                let control = pipeline
                    .context
                    .dns
                    .lookup_control(&domain)
                    .await
                    .expect("an encrypted control answers");
                let _ = control_done.send((token, control));
            });
        }
        context
            .dns
            .engine()
            .submit_group(questions, token, group_done.clone())
            .await;
    }
}

/// Receives finished groups and control lookups, and judges each name once it has both.
async fn judge(
    pipeline: &Arc<Pipeline>,
    mut groups: mpsc::UnboundedReceiver<GroupDone>,
    mut controls: mpsc::UnboundedReceiver<(u64, ControlObservation)>,
) {
    let mut groups_open = true;
    let mut controls_open = true;
    while groups_open || controls_open {
        let complete = tokio::select! {
            done = groups.recv(), if groups_open => if let Some(done) = done {
                let mut waiting = pipeline.waiting();
                let key = slab_key(done.token);
                match waiting.get_mut(key) {
                    Some(name) if matches!(name.control, ControlSlot::Waiting) => {
                        name.queries = Some(Box::new(done));
                        None
                    }
                    Some(_) => waiting.try_remove(key).map(|name| (name, Some(done))),
                    None => None,
                }
            } else {
                groups_open = false;
                None
            },
            done = controls.recv(), if controls_open => if let Some((token, control)) = done {
                let mut waiting = pipeline.waiting();
                let key = slab_key(token);
                match waiting.get_mut(key) {
                    Some(name) => {
                        name.control = ControlSlot::Done(Box::new(control));
                        match name.queries.take() {
                            Some(queries) => waiting
                                .try_remove(key)
                                .map(|name| (name, Some(*queries))),
                            None => None,
                        }
                    }
                    None => None,
                }
            } else {
                controls_open = false;
                None
            },
        };
        if let Some((name, queries)) = complete {
            judge_name(pipeline, name, queries).await;
        }
    }
}

/// The table key a token stands for (tokens are table keys).
fn slab_key(token: u64) -> usize {
    usize::try_from(token).expect("tokens are table keys")
}

/// Judges a name whose group is done (`queries`): here when nothing more is needed, in
/// a task of its own otherwise.
async fn judge_name(pipeline: &Arc<Pipeline>, name: WaitingName, queries: Option<GroupDone>) {
    let context = &pipeline.context;
    let WaitingName {
        target,
        attempt,
        started,
        permit,
        queries: _,
        control,
    } = name;
    let started_at = pipeline.clock.of(started);
    let control = match control {
        ControlSlot::Done(control) => Some(*control),
        ControlSlot::NotAsked | ControlSlot::Waiting => None,
    };
    let mut queries = queries
        .map(GroupDone::into_observations)
        .unwrap_or_default();
    if let Some(capture) = context.web.as_ref().and_then(WebStage::live_capture) {
        // The last replies may still be queued for the capture thread.
        capture.caught_up(crate::capture::CATCH_UP_LIMIT).await;
        capture.annotate_dns(&mut queries);
    }
    let observed = context.dns.observations_of(Vec::new(), queries, control);
    let tls_proof = context.stages.tls && context.web.is_some();
    match dns::judge_if_complete(&context.dns, &context.forged_ips, tls_proof, observed) {
        Ok(section) => {
            finish(
                pipeline, target, attempt, started_at, started, section, permit,
            )
            .await;
        }
        Err(observed) => {
            let pipeline_for_task = Arc::clone(pipeline);
            pipeline.spawn(async move {
                let pipeline = pipeline_for_task;
                let context = &pipeline.context;
                let tls_stage = context.web.as_ref().filter(|_| context.stages.tls);
                let section = dns::judge_observed(
                    &context.dns,
                    &context.forged_ips,
                    tls_stage,
                    target.domain(),
                    observed,
                )
                .await;
                complete_and_send(
                    &pipeline, target, attempt, started_at, started, section, permit,
                )
                .await;
            });
        }
    }
}

/// The record of a name whose DNS section is judged: written at once when no web stage
/// runs, after the web stages (in a task of its own) otherwise.
async fn finish(
    pipeline: &Arc<Pipeline>,
    target: ScheduledTarget,
    attempt: u32,
    started_at: OffsetDateTime,
    started: Instant,
    section: crate::record::DnsSection,
    permit: OwnedSemaphorePermit,
) {
    if pipeline.context.web.is_some() {
        let pipeline_for_task = Arc::clone(pipeline);
        pipeline.spawn(async move {
            let pipeline = pipeline_for_task;
            complete_and_send(
                &pipeline, target, attempt, started_at, started, section, permit,
            )
            .await;
        });
        return;
    }
    let record = super::target_record(
        target.to_target(),
        rfc3339(started_at),
        started,
        Some(section),
        None,
    );
    let _ = pipeline
        .results
        .send(pipeline.number(record, attempt))
        .await;
    drop(permit);
}

/// The web stages (when they run) and the record of a name whose DNS section is judged,
/// sent to the writer; the name's permit is released once its record is queued.
async fn complete_and_send(
    pipeline: &Pipeline,
    target: ScheduledTarget,
    attempt: u32,
    started_at: OffsetDateTime,
    started: Instant,
    section: crate::record::DnsSection,
    permit: OwnedSemaphorePermit,
) {
    let record = complete_target(
        &pipeline.context,
        target.to_target(),
        rfc3339(started_at),
        started,
        Some(section),
        None,
    )
    .await;
    let _ = pipeline
        .results
        .send(pipeline.number(record, attempt))
        .await;
    drop(permit);
}

/// A start time in the records' form (as [`crate::record::now_rfc3339`] gives it).
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tens of thousands wait at once: what only some names hold stays boxed.
    #[test]
    fn a_waiting_name_is_small() {
        assert!(
            std::mem::size_of::<WaitingName>() <= 80,
            "{}",
            std::mem::size_of::<WaitingName>()
        );
    }

    #[test]
    fn the_wall_clock_of_an_instant_follows_the_anchor() {
        let clock = WallClock::now();
        let later = clock.at + std::time::Duration::from_millis(1500);
        assert_eq!(
            clock.of(later) - clock.wall,
            time::Duration::milliseconds(1500)
        );
        // An instant before the anchor reads as the anchor, never earlier.
        let earlier = clock.at.checked_sub(std::time::Duration::from_secs(1));
        if let Some(earlier) = earlier {
            assert_eq!(clock.of(earlier), clock.wall);
        }
    }
}
