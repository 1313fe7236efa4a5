//! Residual-censorship awareness per path, a path being one (server IP, server port)
//! seen from this vantage.
//!
//! After an on-path censor resets a connection for a keyword in the Host header or
//! SNI, it typically resets or drops every new connection on the same (client IP,
//! server IP, server port) for 90–180 s. Measured naively, that residual blocking
//! makes the next domain on the same address look censored too. The guard keeps
//! every path honest, adaptively:
//!
//! - Work on a path runs concurrently ([`AccessMode::Shared`]); nothing waits on a
//!   fixed delay, and a failure does not hold up the path.
//! - **Attribution from evidence.** Residual blocking shows itself: a benign control on
//!   the path fails. A failed test is its own when the benign controls around it (the
//!   one just before it and the one started at once after it) passed and no control on
//!   the path failed inside its window ([`AttributionRule::ControlsPassed`]). When the
//!   control after it failed, the path was blocked after the test (if a second control
//!   at once fails too, the path shows residual blocking and is
//!   [penalised](PathTicket::penalise)), and the failure is the test's own only if no
//!   other test on the path failed inside its window ([`AttributionRule::SoleTrigger`]):
//!   blocking that starts after a test is no ambiguity by itself
//!   ([`PathTicket::attribute_after_failed_control`]).
//!   Otherwise the evidence is ambiguous and the caller re-runs the test alone, in
//!   [`AccessMode::Exclusive`] ([`AttributionRule::AloneOnPath`]).
//! - **Learning.** Each path remembers whether it ever showed residual blocking. Paths
//!   that show none stay at full concurrency. A path that shows it is probed one test
//!   at a time from then on (a trigger then never hides behind another test's
//!   residual), and every episode's duration is measured, from the first failing
//!   control to the first passing one ([`PathGuard::residual_report`]).
//! - **Penalties.** Nobody uses a penalised path until a benign control passes again.
//!   The first re-check comes after the shortest residual duration measured on the
//!   path (or `recheck_initial` before one is known), then every `recheck_initial`
//!   while the path is known to show residual blocking, else with exponential backoff;
//!   at most `residual_wait` in all.
//! - Other paths are unaffected: the table is sharded, one short mutex hold per event.
//!
//! [`PortRotation`] spreads `--via` tests over a port range so that no two tests share
//! a path inside the residual window.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A `--via-ports` range that names no usable destination port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortRangeError {
    #[error("invalid port range {input:?}: {reason}")]
    BadPortRange { input: String, reason: &'static str },
}

/// One (server IP, server port) path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PathKey {
    pub ip: IpAddr,
    pub port: u16,
}

impl PathKey {
    pub fn new(ip: IpAddr, port: u16) -> Self {
        PathKey { ip, port }
    }
}

impl std::fmt::Display for PathKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PathGuardConfig {
    /// The longest a target waits for a penalised path (`--residual-wait`). A penalty
    /// older than this whose control still fails is not residual censorship: the path
    /// is released and judged like any other.
    pub residual_wait: Duration,
    /// First re-check of a penalised path, after the penalty began.
    pub recheck_initial: Duration,
    /// Longest interval between re-checks (the backoff doubles up to this).
    pub recheck_max: Duration,
}

impl Default for PathGuardConfig {
    fn default() -> Self {
        PathGuardConfig {
            residual_wait: Duration::from_secs(180),
            recheck_initial: Duration::from_secs(5),
            recheck_max: Duration::from_secs(30),
        }
    }
}

/// How a ticket uses its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Alongside other work on the path (the normal case).
    Shared,
    /// Alone on the path: for re-running a failure that could not be attributed.
    Exclusive,
}

/// Whether a failure observed under a ticket is the ticket's own (from
/// [`PathTicket::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// No other test on the path was disturbed during the ticket's window.
    Sole,
    /// Other tests on the path were disturbed meanwhile; one of them may have caused
    /// this failure.
    Overlapped { other_disturbances: u64 },
}

/// The rule that attributed a failed test to its target (recorded in the evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionRule {
    /// The benign controls just before and just after the test passed, and no control
    /// on the path failed inside the test's window: no residual blocking was active.
    ControlsPassed,
    /// The test ran alone on the path (a re-run, or a path known to show residual
    /// blocking, probed one test at a time).
    AloneOnPath,
    /// The control after the test failed (residual blocking), and no other test on
    /// the path failed inside this test's window: the trigger was this test.
    SoleTrigger,
    /// The evidence stayed ambiguous and no re-run was left.
    Ambiguous,
    /// The control before the test failed: no keyword claim is made.
    ControlFailed,
}

impl AttributionRule {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributionRule::ControlsPassed => "controls_passed",
            AttributionRule::AloneOnPath => "alone_on_path",
            AttributionRule::SoleTrigger => "sole_trigger",
            AttributionRule::Ambiguous => "ambiguous",
            AttributionRule::ControlFailed => "control_failed",
        }
    }

    /// One sentence for the evidence.
    pub fn explain(self) -> &'static str {
        match self {
            AttributionRule::ControlsPassed => {
                "attributed to this name: the benign controls just before and just after the test passed, \
                 and no control on the path failed in between (no residual blocking was active)"
            }
            AttributionRule::AloneOnPath => {
                "attributed to this name: the test ran alone on the path"
            }
            AttributionRule::SoleTrigger => {
                "attributed to this name: the path showed residual blocking after the test, and no other \
                 test on the path failed during this one"
            }
            AttributionRule::Ambiguous => {
                "not attributable: another test's residual blocking may have caused this failure, and no \
                 re-run was left"
            }
            AttributionRule::ControlFailed => {
                "the benign control before the test failed too: no keyword claim"
            }
        }
    }
}

/// What the guard learnt about one path's residual blocking during the scan (paths
/// that showed none are not listed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathResidual {
    pub ip: IpAddr,
    pub port: u16,
    /// Episodes of residual blocking (a benign control failing on a path that worked).
    pub triggers: u64,
    /// Episodes measured to their end (first failing control to first passing one).
    pub measured: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_min_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_median_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_max_ms: Option<f64>,
}

/// A path's residual behaviour so far.
#[derive(Debug, Clone, Default)]
struct ResidualHistory {
    triggers: u64,
    /// Measured episode durations.
    durations: Vec<Duration>,
}

impl ResidualHistory {
    fn shortest(&self) -> Option<Duration> {
        self.durations.iter().min().copied()
    }
}

#[derive(Debug)]
struct Penalty {
    since: Instant,
    next_check: Instant,
    backoff: Duration,
    /// A waiter is running the benign control right now.
    checking: bool,
}

#[derive(Debug)]
struct PathState {
    /// Tickets admitted and not yet released.
    in_flight: u32,
    /// Admitted tickets still probing (not yet settling).
    active: u32,
    /// Tests on this path that failed after a passing control (possible triggers).
    disturbances: u64,
    /// Tickets holding admissions shut while they settle a failure.
    settling: u32,
    exclusive: bool,
    exclusive_waiting: u32,
    penalty: Option<Penalty>,
    /// Last time a benign probe (or any passing probe) went through.
    last_ok: Option<Instant>,
    /// Start of the latest benign control that failed on this path.
    last_control_failure: Option<Instant>,
    /// Residual blocking seen on this path (None: none seen so far).
    residual: Option<ResidualHistory>,
    last_touch: Instant,
    notify: Arc<Notify>,
}

impl PathState {
    fn new(now: Instant) -> Self {
        PathState {
            in_flight: 0,
            active: 0,
            disturbances: 0,
            settling: 0,
            exclusive: false,
            exclusive_waiting: 0,
            penalty: None,
            last_ok: None,
            last_control_failure: None,
            residual: None,
            last_touch: now,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Nothing depends on this entry but its history, and nobody waits on it.
    fn idle(&self) -> bool {
        self.in_flight == 0
            && self.settling == 0
            && !self.exclusive
            && self.exclusive_waiting == 0
            && self.penalty.is_none()
            && self.residual.is_none()
            && Arc::strong_count(&self.notify) == 1
    }
}

const SHARDS: usize = 64;
/// The shortest interval between re-checks of a penalised path.
const MIN_RECHECK: Duration = Duration::from_millis(100);
/// A shard sweeps its stale idle entries after as many operations as it has entries
/// (amortised constant work per operation), but not more often than this.
const SWEEP_MIN: usize = 64;

#[derive(Debug, Default)]
struct Shard {
    paths: HashMap<PathKey, PathState>,
    ops: usize,
}

#[derive(Debug)]
struct Inner {
    config: PathGuardConfig,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

/// The per-path state table. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct PathGuard {
    inner: Arc<Inner>,
}

impl Default for PathGuard {
    fn default() -> Self {
        Self::new(PathGuardConfig::default())
    }
}

impl Inner {
    fn shard(&self, key: PathKey) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        self.shards[index].lock().expect("path table lock")
    }

    /// Lock the path's shard; sweeps stale idle entries now and then so that memory
    /// stays flat over long runs.
    fn lock(&self, key: PathKey) -> MutexGuard<'_, Shard> {
        let mut shard = self.shard(key);
        shard.ops += 1;
        if shard.ops >= shard.paths.len().max(SWEEP_MIN) {
            shard.ops = 0;
            let now = Instant::now();
            let keep_for = self.config.residual_wait;
            shard.paths.retain(|k, st| {
                *k == key || !st.idle() || now.duration_since(st.last_touch) < keep_for
            });
        }
        shard
    }

    /// Run `f` on the path's state (created if absent).
    fn with_path<R>(&self, key: PathKey, f: impl FnOnce(&mut PathState, Instant) -> R) -> R {
        let now = Instant::now();
        let mut shard = self.lock(key);
        f(shard.state(key, now), now)
    }
}

impl Shard {
    fn state(&mut self, key: PathKey, now: Instant) -> &mut PathState {
        let state = self.paths.entry(key).or_insert_with(|| PathState::new(now));
        state.last_touch = now;
        state
    }
}

enum Decision {
    Admit(Box<PathTicket>),
    Recheck,
    Wait(Option<Instant>),
}

impl PathGuard {
    pub fn new(config: PathGuardConfig) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        PathGuard {
            inner: Arc::new(Inner {
                config,
                shards,
                hasher: RandomState::new(),
            }),
        }
    }

    pub fn config(&self) -> &PathGuardConfig {
        &self.inner.config
    }

    /// Whether the path is penalised right now (residual blocking detected and not yet
    /// cleared by a passing control).
    pub fn is_penalised(&self, key: PathKey) -> bool {
        self.inner.with_path(key, |st, _| st.penalty.is_some())
    }

    /// What was learnt about every path that showed residual blocking, by path.
    pub fn residual_report(&self) -> Vec<PathResidual> {
        let mut report = Vec::new();
        for shard in &self.inner.shards {
            let shard = shard.lock().expect("path table lock");
            for (key, st) in &shard.paths {
                let Some(history) = &st.residual else {
                    continue;
                };
                let mut ms: Vec<f64> = history
                    .durations
                    .iter()
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .collect();
                ms.sort_by(f64::total_cmp);
                report.push(PathResidual {
                    ip: key.ip,
                    port: key.port,
                    triggers: history.triggers,
                    measured: ms.len() as u64,
                    residual_min_ms: ms.first().copied(),
                    residual_median_ms: ms.get(ms.len() / 2).copied(),
                    residual_max_ms: ms.last().copied(),
                });
            }
        }
        report.sort_by_key(|p| (p.ip, p.port));
        report
    }

    /// Whether the path showed residual blocking during this scan.
    pub fn shows_residual(&self, key: PathKey) -> bool {
        self.inner.with_path(key, |st, _| st.residual.is_some())
    }

    /// Number of paths with state in the table (for tests and diagnostics).
    pub fn tracked_paths(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().expect("path table lock").paths.len())
            .sum()
    }

    /// Obtain the right to probe `key`. Returns at once on a clean path. On a
    /// penalised path, waits until a benign control passes: `recheck` runs that
    /// control (one waiter at a time, with exponential backoff) and says whether it
    /// passed. After `residual_wait` the ticket is granted anyway, marked
    /// [`PathTicket::penalty_outlived`]. Waits briefly while another ticket settles a
    /// failure on the path, and for [`AccessMode::Exclusive`] until the path is idle.
    pub async fn acquire<F, Fut>(
        &self,
        key: PathKey,
        mode: AccessMode,
        mut recheck: F,
    ) -> PathTicket
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let began = Instant::now();
        let mut attempt = Acquire {
            guard: self,
            key,
            mode,
            give_up_at: began + self.inner.config.residual_wait,
            ignore_penalty: false,
            outlived: false,
            exclusive_registered: false,
        };
        loop {
            let notify: Arc<Notify>;
            let mut notified = None;
            let decision;
            {
                let now = Instant::now();
                let mut shard = self.inner.lock(key);
                let st = shard.state(key, now);
                notify = Arc::clone(&st.notify);
                decision = attempt.decide(st, now);
                if matches!(decision, Decision::Wait(_)) {
                    // Registered under the lock: no wake-up before the await is lost.
                    notified = Some(notify.notified());
                }
            }
            match decision {
                Decision::Admit(mut ticket) => {
                    ticket.waited = began.elapsed();
                    ticket.penalty_outlived = attempt.outlived;
                    return *ticket;
                }
                Decision::Recheck => {
                    let mut check = RecheckInProgress {
                        inner: &self.inner,
                        key,
                        done: false,
                    };
                    let passed = recheck().await;
                    check.finish(passed);
                }
                Decision::Wait(deadline) => {
                    let notified = notified.expect("registered for a wait");
                    match deadline {
                        Some(at) => {
                            let at = tokio::time::Instant::from_std(at);
                            let _ = tokio::time::timeout_at(at, notified).await;
                        }
                        None => notified.await,
                    }
                }
            }
        }
    }
}

/// One `acquire` in progress. Undoes its exclusive-wait registration if cancelled.
struct Acquire<'a> {
    guard: &'a PathGuard,
    key: PathKey,
    mode: AccessMode,
    give_up_at: Instant,
    ignore_penalty: bool,
    outlived: bool,
    exclusive_registered: bool,
}

impl Acquire<'_> {
    fn decide(&mut self, st: &mut PathState, now: Instant) -> Decision {
        let config = &self.guard.inner.config;
        if !self.ignore_penalty
            && let Some(penalty) = st.penalty.as_mut()
        {
            if now < self.give_up_at {
                if penalty.checking {
                    return Decision::Wait(Some(self.give_up_at));
                }
                if now >= penalty.next_check {
                    penalty.checking = true;
                    return Decision::Recheck;
                }
                return Decision::Wait(Some(penalty.next_check.min(self.give_up_at)));
            }
            // Waited `residual_wait`: go ahead, and tell the caller.
            self.ignore_penalty = true;
            self.outlived = true;
            if now.duration_since(penalty.since) >= config.residual_wait {
                // Failing for longer than any residual blocking lasts: the path is
                // down or blocked by address, not residually. Release it for
                // everyone, and forget that it ever worked.
                st.penalty = None;
                st.last_ok = None;
                st.notify.notify_waiters();
            }
        }
        if st.settling > 0 || st.exclusive {
            return Decision::Wait(None);
        }
        match self.mode {
            AccessMode::Shared if st.exclusive_waiting > 0 => return Decision::Wait(None),
            // A path that showed residual blocking is probed one test at a time: a
            // trigger then never hides behind another test's residual window.
            AccessMode::Shared if st.residual.is_some() && st.in_flight > 0 => {
                return Decision::Wait(None);
            }
            AccessMode::Exclusive if st.in_flight > 0 => {
                if !self.exclusive_registered {
                    self.exclusive_registered = true;
                    st.exclusive_waiting += 1;
                }
                return Decision::Wait(None);
            }
            _ => {}
        }
        if self.exclusive_registered {
            self.exclusive_registered = false;
            st.exclusive_waiting -= 1;
        }
        let alone = self.mode == AccessMode::Exclusive || st.residual.is_some();
        st.in_flight += 1;
        st.active += 1;
        if self.mode == AccessMode::Exclusive {
            st.exclusive = true;
        }
        let seen_working = st
            .last_ok
            .is_some_and(|t| now.duration_since(t) < config.residual_wait);
        Decision::Admit(Box::new(PathTicket {
            inner: Arc::clone(&self.guard.inner),
            key: self.key,
            mode: self.mode,
            disturbances_at_admit: st.disturbances,
            own_disturbances: 0,
            holds_gate: false,
            active: true,
            waited: Duration::ZERO,
            penalty_outlived: false,
            seen_working,
            alone,
        }))
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if self.exclusive_registered {
            self.guard.inner.with_path(self.key, |st, _| {
                st.exclusive_waiting -= 1;
                st.notify.notify_waiters();
            });
        }
    }
}

/// Records a re-check's result; if the re-check is cancelled, lets another waiter
/// take over.
struct RecheckInProgress<'a> {
    inner: &'a Inner,
    key: PathKey,
    done: bool,
}

impl RecheckInProgress<'_> {
    fn finish(&mut self, passed: bool) {
        self.done = true;
        let config = &self.inner.config;
        self.inner.with_path(self.key, |st, now| {
            if passed {
                if let (Some(penalty), Some(history)) = (st.penalty.take(), st.residual.as_mut()) {
                    history.durations.push(now.duration_since(penalty.since));
                }
                st.last_ok = Some(now);
            } else if let Some(penalty) = st.penalty.as_mut() {
                penalty.checking = false;
                penalty.backoff = match st.residual.as_ref().and_then(ResidualHistory::shortest) {
                    // The residual usually ends by now: look again soon, so that the
                    // wait ends close to its real end.
                    Some(shortest) => (shortest / 20).max(MIN_RECHECK).min(config.recheck_initial),
                    None => (penalty.backoff * 2).min(config.recheck_max),
                };
                penalty.next_check = now + penalty.backoff;
            }
            st.notify.notify_waiters();
        });
    }
}

impl Drop for RecheckInProgress<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.inner.with_path(self.key, |st, _| {
                if let Some(penalty) = st.penalty.as_mut() {
                    penalty.checking = false;
                }
                st.notify.notify_waiters();
            });
        }
    }
}

/// The right to probe one path, from [`PathGuard::acquire`]. Released when dropped
/// (or by [`PathTicket::settle`]).
#[derive(Debug)]
pub struct PathTicket {
    inner: Arc<Inner>,
    key: PathKey,
    mode: AccessMode,
    disturbances_at_admit: u64,
    own_disturbances: u64,
    /// This ticket keeps admissions to the path shut (it is settling a failure).
    holds_gate: bool,
    active: bool,
    waited: Duration,
    penalty_outlived: bool,
    seen_working: bool,
    /// No other ticket can be admitted to the path while this one is held.
    alone: bool,
}

impl PathTicket {
    pub fn key(&self) -> PathKey {
        self.key
    }

    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// How long `acquire` waited (penalty, settling or exclusivity).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The ticket was granted after waiting `residual_wait` on a path that stayed
    /// penalised: whatever is observed now may still be residual blocking.
    pub fn penalty_outlived(&self) -> bool {
        self.penalty_outlived
    }

    /// A probe on this path passed within `residual_wait` before admission: a benign
    /// control failing now is more likely residual blocking than a dead server.
    pub fn seen_working(&self) -> bool {
        self.seen_working
    }

    /// A probe on this path just passed.
    pub fn mark_working(&self) {
        self.inner
            .with_path(self.key, |st, now| st.last_ok = Some(now));
    }

    /// Whether this ticket is alone on its path (exclusive, or a path probed one test
    /// at a time): whatever it observes is its own.
    pub fn alone(&self) -> bool {
        self.alone
    }

    /// The test failed after a passing control: it may have triggered residual
    /// blocking. Counted against other tickets' windows (see [`PathTicket::settle`]);
    /// the path stays open.
    pub fn note_disturbance(&mut self) {
        self.own_disturbances += 1;
        self.inner.with_path(self.key, |st, _| st.disturbances += 1);
    }

    /// A benign control that started at `started` failed on this path.
    pub fn note_control_failure(&self, started: Instant) {
        self.inner.with_path(self.key, |st, _| {
            st.last_control_failure =
                Some(st.last_control_failure.map_or(started, |t| t.max(started)));
        });
    }

    /// The failed test's controls (the one before it started at `window_start`, and
    /// the one at once after it) both passed: the failure is the test's own unless a
    /// control on the path failed inside that window. `None`: ambiguous.
    pub fn attribute_between_passing_controls(
        &self,
        window_start: Instant,
    ) -> Option<AttributionRule> {
        if self.alone {
            return Some(AttributionRule::AloneOnPath);
        }
        let failed_inside = self.inner.with_path(self.key, |st, _| {
            st.last_control_failure.is_some_and(|t| t >= window_start)
        });
        (!failed_inside).then_some(AttributionRule::ControlsPassed)
    }

    /// A benign control failed on a path that should work: residual blocking. The path
    /// is known to show residual blocking from now on; nobody uses it until a re-check
    /// passes.
    pub fn penalise(&self) {
        self.penalise_from(Instant::now());
    }

    /// [`PathTicket::penalise`], the residual blocking having been seen first by a
    /// control that started at `first_failure` (the measured duration starts there).
    pub fn penalise_from(&self, first_failure: Instant) {
        let config = &self.inner.config;
        self.inner.with_path(self.key, |st, now| {
            let now = first_failure.min(now);
            let history = st.residual.get_or_insert_with(ResidualHistory::default);
            if st.penalty.is_none() {
                history.triggers += 1;
                // Look again just before the shortest episode measured so far ends
                // (then closely, see `RecheckInProgress::finish`): the measurement
                // converges on the real duration instead of on the re-check interval.
                let first = history
                    .shortest()
                    .map_or(config.recheck_initial, |d| d.mul_f64(0.9));
                st.penalty = Some(Penalty {
                    since: now,
                    next_check: now + first,
                    backoff: config.recheck_initial,
                    checking: false,
                });
            }
            st.notify.notify_waiters();
        });
    }

    /// The test failed after a passing control, and the control started at once after
    /// it (at `residual_start`) failed: the path was blocked after the test. A second
    /// control right after says whether that blocking `persists` (residual blocking:
    /// the path is penalised) or had already ended (a passing glitch, or the test's own
    /// residual window over by then: a blackholed test's wait plus a control whose SYN
    /// goes unanswered can outlast a short window). Either way the blocking started
    /// after the test, so it says nothing against the test: as for a persisting
    /// residual, the failure is the test's own when it ran alone
    /// ([`AttributionRule::AloneOnPath`]) or no other test on the path failed inside
    /// its window ([`AttributionRule::SoleTrigger`]). `None`: ambiguous (re-run alone).
    /// Releases the ticket.
    pub async fn attribute_after_failed_control(
        self,
        residual_start: Instant,
        persists: bool,
    ) -> Option<AttributionRule> {
        self.note_control_failure(residual_start);
        if persists {
            self.penalise_from(residual_start);
        }
        let alone = self.alone;
        match self.settle().await {
            Attribution::Sole if alone => Some(AttributionRule::AloneOnPath),
            Attribution::Sole => Some(AttributionRule::SoleTrigger),
            Attribution::Overlapped { .. } => None,
        }
    }

    /// Finish a ticket whose probes failed: wait until every other ticket on the path
    /// has finished probing (admissions stay shut meanwhile), then say whether another
    /// test was disturbed during this ticket's window. Releases the ticket.
    pub async fn settle(mut self) -> Attribution {
        let take_gate = !self.holds_gate;
        self.holds_gate = true;
        let was_active = std::mem::replace(&mut self.active, false);
        self.inner.with_path(self.key, |st, _| {
            if was_active {
                st.active -= 1;
            }
            if take_gate {
                st.settling += 1;
            }
            st.notify.notify_waiters();
        });
        if self.alone {
            return Attribution::Sole;
        }
        loop {
            let notify: Arc<Notify>;
            let mut notified = None;
            let others;
            {
                let now = Instant::now();
                let mut shard = self.inner.lock(self.key);
                let st = shard.state(self.key, now);
                notify = Arc::clone(&st.notify);
                if st.active == 0 {
                    others =
                        Some(st.disturbances - self.disturbances_at_admit - self.own_disturbances);
                } else {
                    others = None;
                    notified = Some(notify.notified());
                }
            }
            match others {
                Some(0) => return Attribution::Sole,
                Some(n) => {
                    return Attribution::Overlapped {
                        other_disturbances: n,
                    };
                }
                None => notified.expect("registered for a wait").await,
            }
        }
    }
}

impl Drop for PathTicket {
    fn drop(&mut self) {
        let active = self.active;
        let holds_gate = self.holds_gate;
        let exclusive = self.mode == AccessMode::Exclusive;
        self.inner.with_path(self.key, |st, _| {
            st.in_flight -= 1;
            if active {
                st.active -= 1;
            }
            if holds_gate {
                st.settling -= 1;
            }
            if exclusive {
                st.exclusive = false;
            }
            st.notify.notify_waiters();
        });
    }
}

/// Destination-port rotation for `--via`: every test gets the least recently used
/// port of the range, and a port is handed out again only once `window` (the
/// residual window) has passed since its last use; callers wait for that otherwise.
#[derive(Debug)]
pub struct PortRotation {
    ports: Mutex<VecDeque<(u16, Option<Instant>)>>,
    window: Duration,
}

impl PortRotation {
    pub fn new(range: RangeInclusive<u16>, window: Duration) -> Result<Self, PortRangeError> {
        if range.is_empty() {
            return Err(PortRangeError::BadPortRange {
                input: format!("{}-{}", range.start(), range.end()),
                reason: "the range is empty",
            });
        }
        if *range.start() == 0 {
            return Err(PortRangeError::BadPortRange {
                input: format!("{}-{}", range.start(), range.end()),
                reason: "port 0 cannot be a destination",
            });
        }
        Ok(PortRotation {
            ports: Mutex::new(range.map(|p| (p, None)).collect()),
            window,
        })
    }

    /// Parse `A-B` (or a single port).
    pub fn parse_range(input: &str) -> Result<RangeInclusive<u16>, PortRangeError> {
        let bad = |reason: &'static str| PortRangeError::BadPortRange {
            input: input.to_owned(),
            reason,
        };
        let (a, b) = input.split_once('-').unwrap_or((input, input));
        let a: u16 = a
            .trim()
            .parse()
            .map_err(|_| bad("ports are numbers 1-65535"))?;
        let b: u16 = b
            .trim()
            .parse()
            .map_err(|_| bad("ports are numbers 1-65535"))?;
        if a == 0 || a > b {
            return Err(bad("expected A-B with 1 <= A <= B"));
        }
        Ok(a..=b)
    }

    pub fn len(&self) -> usize {
        self.ports.lock().expect("port rotation lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The port for the next test; waits if every port was used within the window.
    pub async fn next_port(&self) -> u16 {
        let (port, ready_at) = {
            let mut ports = self.ports.lock().expect("port rotation lock");
            let (port, last) = ports.pop_front().expect("rotation is never empty");
            let now = Instant::now();
            let ready_at = last.map_or(now, |t| (t + self.window).max(now));
            // The port counts as used from the moment the caller may use it, which
            // keeps the queue ordered by last use.
            ports.push_back((port, Some(ready_at)));
            (port, ready_at)
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(ready_at)).await;
        port
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn key(last: u8, port: u16) -> PathKey {
        PathKey::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port)
    }

    fn quick_guard() -> PathGuard {
        PathGuard::new(PathGuardConfig {
            residual_wait: Duration::from_secs(5),
            recheck_initial: Duration::from_millis(10),
            recheck_max: Duration::from_millis(40),
        })
    }

    async fn never_called() -> bool {
        panic!("a clean path must not be re-checked")
    }

    #[tokio::test]
    async fn clean_path_admits_many_shared_tickets_at_once() {
        let guard = quick_guard();
        let mut tickets = Vec::new();
        for _ in 0..100 {
            tickets.push(
                guard
                    .acquire(key(1, 80), AccessMode::Shared, never_called)
                    .await,
            );
        }
        assert!(tickets.iter().all(|t| !t.penalty_outlived()));
        drop(tickets);
        // An exclusive ticket gets the path once they are released.
        let t = guard
            .acquire(key(1, 80), AccessMode::Exclusive, never_called)
            .await;
        assert_eq!(t.mode(), AccessMode::Exclusive);
    }

    #[tokio::test]
    async fn penalised_path_waits_for_a_passing_recheck_with_backoff() {
        let guard = quick_guard();
        let path = key(2, 80);
        let t = guard.acquire(path, AccessMode::Shared, never_called).await;
        t.mark_working();
        t.penalise();
        drop(t);
        assert!(guard.is_penalised(path));
        let checks = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&checks);
        let ticket = guard
            .acquire(path, AccessMode::Shared, move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move { n >= 3 }
            })
            .await;
        assert_eq!(
            checks.load(Ordering::SeqCst),
            3,
            "admitted only after the third re-check passed"
        );
        assert!(!ticket.penalty_outlived());
        assert!(!guard.is_penalised(path));
        assert!(
            ticket.seen_working(),
            "a passing re-check proves the path works"
        );
    }

    #[tokio::test]
    async fn other_paths_proceed_while_one_is_penalised() {
        let guard = quick_guard();
        let bad = key(3, 80);
        let t = guard.acquire(bad, AccessMode::Shared, never_called).await;
        t.penalise();
        drop(t);
        let still_waiting = tokio::time::timeout(
            Duration::from_millis(100),
            guard.acquire(bad, AccessMode::Shared, || async { false }),
        )
        .await;
        assert!(still_waiting.is_err(), "the penalised path stays closed");
        // Same IP, other port; and other IP, same port: no wait, no re-check.
        let _a = guard
            .acquire(key(3, 443), AccessMode::Shared, never_called)
            .await;
        let _b = guard
            .acquire(key(4, 80), AccessMode::Shared, never_called)
            .await;
        assert!(guard.is_penalised(bad));
    }

    #[tokio::test]
    async fn penalty_is_outlived_after_residual_wait() {
        let guard = PathGuard::new(PathGuardConfig {
            residual_wait: Duration::from_millis(150),
            recheck_initial: Duration::from_millis(10),
            recheck_max: Duration::from_millis(20),
        });
        let path = key(5, 80);
        let t = guard.acquire(path, AccessMode::Shared, never_called).await;
        t.mark_working();
        t.penalise();
        drop(t);
        let ticket = guard
            .acquire(path, AccessMode::Shared, || async { false })
            .await;
        assert!(ticket.penalty_outlived());
        assert!(
            !guard.is_penalised(path),
            "a path failing longer than residual_wait is released"
        );
        assert!(!ticket.seen_working(), "and is no longer known to work");
    }

    #[tokio::test]
    async fn cancelled_recheck_lets_another_waiter_take_over() {
        let guard = quick_guard();
        let path = key(6, 80);
        let t = guard.acquire(path, AccessMode::Shared, never_called).await;
        t.penalise();
        drop(t);
        let stuck = tokio::spawn({
            let guard = guard.clone();
            async move {
                guard
                    .acquire(path, AccessMode::Shared, std::future::pending::<bool>)
                    .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        stuck.abort();
        let _ = stuck.await;
        let t = tokio::time::timeout(
            Duration::from_secs(5),
            guard.acquire(path, AccessMode::Shared, || async { true }),
        )
        .await;
        assert!(t.is_ok(), "the abandoned re-check must not block the path");
    }

    #[tokio::test]
    async fn settle_attributes_a_lone_failure_to_its_ticket() {
        let guard = quick_guard();
        let path = key(7, 80);
        let ok_neighbour = guard.acquire(path, AccessMode::Shared, never_called).await;
        let mut failing = guard.acquire(path, AccessMode::Shared, never_called).await;
        failing.note_disturbance();
        drop(ok_neighbour);
        assert_eq!(failing.settle().await, Attribution::Sole);
    }

    #[tokio::test]
    async fn settle_flags_overlapping_disturbances_and_drains_first() {
        let guard = quick_guard();
        let path = key(8, 80);
        let mut a = guard.acquire(path, AccessMode::Shared, never_called).await;
        let mut b = guard.acquire(path, AccessMode::Shared, never_called).await;
        a.note_disturbance();
        // A failure alone does not hold up the path.
        drop(
            tokio::time::timeout(
                Duration::from_secs(5),
                guard.acquire(path, AccessMode::Shared, never_called),
            )
            .await
            .expect("the path stays open after a failure"),
        );
        let a_settles = tokio::spawn(async move { a.settle().await });
        // `a` waits for `b` to finish probing before judging.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!a_settles.is_finished());
        // Admissions are shut while a failure is being settled.
        let blocked = tokio::time::timeout(
            Duration::from_millis(50),
            guard.acquire(path, AccessMode::Shared, never_called),
        )
        .await;
        assert!(blocked.is_err());
        b.note_disturbance();
        let b_attr = b.settle().await;
        let a_attr = a_settles.await.unwrap();
        assert_eq!(
            a_attr,
            Attribution::Overlapped {
                other_disturbances: 1
            }
        );
        assert_eq!(
            b_attr,
            Attribution::Overlapped {
                other_disturbances: 1
            }
        );
        // Both released: the path admits again.
        let again = tokio::time::timeout(
            Duration::from_secs(5),
            guard.acquire(path, AccessMode::Shared, never_called),
        )
        .await;
        assert!(again.is_ok());
    }

    #[tokio::test]
    async fn failure_between_passing_controls_is_the_tests_own_unless_a_control_failed_inside() {
        let guard = quick_guard();
        let path = key(11, 80);
        let neighbour = guard.acquire(path, AccessMode::Shared, never_called).await;
        let mut failing = guard.acquire(path, AccessMode::Shared, never_called).await;
        let window_start = Instant::now();
        failing.note_disturbance();
        // A control failure before the window says nothing about this test.
        neighbour.note_control_failure(window_start.checked_sub(Duration::from_millis(1)).unwrap());
        assert_eq!(
            failing.attribute_between_passing_controls(window_start),
            Some(AttributionRule::ControlsPassed)
        );
        assert!(!failing.alone(), "two tickets run at once on a clean path");
        // One inside the window makes it ambiguous.
        neighbour.note_control_failure(Instant::now());
        assert_eq!(
            failing.attribute_between_passing_controls(window_start),
            None
        );
        drop((neighbour, failing));
        assert!(guard.residual_report().is_empty(), "no residual seen");
    }

    /// A blackholed test's own short residual: the control before it passed, the control
    /// at once after it failed (its SYN unanswered for the connect timeout), and by the
    /// second control the window was over. Nothing else failed on the path: the failure
    /// is the test's own, not ambiguous (no re-run, which would re-trigger the residual).
    #[tokio::test]
    async fn a_tests_own_residual_that_ended_before_the_second_control_is_no_ambiguity() {
        let guard = quick_guard();
        let path = key(14, 80);
        // Shared, on a path that never showed residual blocking.
        let mut blackholed = guard.acquire(path, AccessMode::Shared, never_called).await;
        assert!(!blackholed.alone());
        blackholed.mark_working();
        blackholed.note_disturbance();
        let residual_start = Instant::now();
        assert_eq!(
            blackholed
                .attribute_after_failed_control(residual_start, false)
                .await,
            Some(AttributionRule::SoleTrigger)
        );
        assert!(
            !guard.is_penalised(path),
            "blocking already over does not close the path"
        );
        // Alone on the path (a re-run): its own, whatever the second control saw.
        let mut alone = guard
            .acquire(path, AccessMode::Exclusive, never_called)
            .await;
        alone.note_disturbance();
        assert_eq!(
            alone
                .attribute_after_failed_control(Instant::now(), false)
                .await,
            Some(AttributionRule::AloneOnPath)
        );
        // Another test failing inside the window is what makes it ambiguous.
        let mut a = guard.acquire(path, AccessMode::Shared, never_called).await;
        let mut b = guard.acquire(path, AccessMode::Shared, never_called).await;
        a.note_disturbance();
        b.note_disturbance();
        drop(b);
        assert_eq!(
            a.attribute_after_failed_control(Instant::now(), false)
                .await,
            None
        );
        // Blocking that persists penalises the path; the attribution rule is the same.
        let mut trigger = guard.acquire(path, AccessMode::Shared, never_called).await;
        trigger.mark_working();
        trigger.note_disturbance();
        assert_eq!(
            trigger
                .attribute_after_failed_control(Instant::now(), true)
                .await,
            Some(AttributionRule::SoleTrigger)
        );
        assert!(guard.is_penalised(path));
    }

    #[tokio::test]
    async fn a_path_with_residual_is_probed_one_at_a_time_and_learns_the_duration() {
        let guard = quick_guard();
        let path = key(12, 80);
        let t = guard.acquire(path, AccessMode::Shared, never_called).await;
        t.mark_working();
        t.penalise();
        drop(t);
        let began = Instant::now();
        // Residual blocking that ends 120 ms after the penalty began.
        let first = guard
            .acquire(path, AccessMode::Shared, move || async move {
                began.elapsed() >= Duration::from_millis(120)
            })
            .await;
        assert!(
            first.alone(),
            "a path that showed residual runs one test at a time"
        );
        let second = tokio::time::timeout(
            Duration::from_millis(50),
            guard.acquire(path, AccessMode::Shared, never_called),
        )
        .await;
        assert!(second.is_err(), "the second test waits for the first");
        drop(first);
        let report = guard.residual_report();
        assert_eq!(report.len(), 1);
        assert_eq!((report[0].triggers, report[0].measured), (1, 1));
        let measured = report[0].residual_min_ms.unwrap();
        assert!((120.0..400.0).contains(&measured), "{measured}");
        assert!(guard.shows_residual(path));
    }

    #[tokio::test]
    async fn a_learnt_residual_is_waited_out_then_rechecked_closely() {
        let guard = PathGuard::new(PathGuardConfig {
            residual_wait: Duration::from_secs(5),
            recheck_initial: Duration::from_millis(300),
            recheck_max: Duration::from_secs(1),
        });
        let path = key(13, 80);
        let residual = Duration::from_millis(300);
        for episode in 0..2 {
            let t = guard.acquire(path, AccessMode::Shared, never_called).await;
            t.mark_working();
            let began = Instant::now();
            t.penalise();
            drop(t);
            let checks = Arc::new(AtomicU32::new(0));
            let counter = Arc::clone(&checks);
            let _ticket = guard
                .acquire(path, AccessMode::Shared, move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { began.elapsed() >= residual }
                })
                .await;
            let waited = began.elapsed();
            assert!(waited >= residual);
            if episode == 1 {
                // The first re-check comes once the learnt duration is over, and the
                // wait ends well within one re-check interval of the residual's end.
                assert!(checks.load(Ordering::SeqCst) <= 2, "{checks:?}");
                assert!(waited < residual + Duration::from_millis(200), "{waited:?}");
            }
        }
        let report = guard.residual_report();
        assert_eq!((report[0].triggers, report[0].measured), (2, 2));
    }

    #[tokio::test]
    async fn exclusive_waits_for_shared_and_blocks_new_shared() {
        let guard = quick_guard();
        let path = key(9, 80);
        let shared = guard.acquire(path, AccessMode::Shared, never_called).await;
        let exclusive = tokio::spawn({
            let guard = guard.clone();
            async move {
                guard
                    .acquire(path, AccessMode::Exclusive, never_called)
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!exclusive.is_finished());
        let late_shared = tokio::time::timeout(
            Duration::from_millis(50),
            guard.acquire(path, AccessMode::Shared, never_called),
        )
        .await;
        assert!(
            late_shared.is_err(),
            "a waiting exclusive ticket goes first"
        );
        drop(shared);
        let ticket = exclusive.await.unwrap();
        assert_eq!(ticket.mode(), AccessMode::Exclusive);
        assert_eq!(ticket.settle().await, Attribution::Sole);
    }

    #[tokio::test]
    async fn port_rotation_never_reuses_a_port_inside_the_window() {
        let rotation = PortRotation::new(20000..=20002, Duration::from_millis(200)).unwrap();
        // (port, asked at, got at)
        let mut used: Vec<(u16, Instant, Instant)> = Vec::new();
        for _ in 0..7 {
            let asked = Instant::now();
            let port = rotation.next_port().await;
            used.push((port, asked, Instant::now()));
        }
        let ports: Vec<u16> = used.iter().map(|(p, _, _)| *p).collect();
        assert_eq!(ports, [20000, 20001, 20002, 20000, 20001, 20002, 20000]);
        for (i, (port, asked, _)) in used.iter().enumerate() {
            for (later_port, _, later_got) in &used[i + 1..] {
                if later_port == port {
                    assert!(later_got.duration_since(*asked) >= Duration::from_millis(200));
                }
            }
        }
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(
            PortRotation::parse_range("10000-10010").unwrap(),
            10000..=10010
        );
        assert_eq!(PortRotation::parse_range("8080").unwrap(), 8080..=8080);
        assert!(PortRotation::parse_range("10-5").is_err());
        assert!(PortRotation::parse_range("0-5").is_err());
        assert!(PortRotation::parse_range("a-b").is_err());
        let (high, low) = (10, 9);
        assert!(PortRotation::new(high..=low, Duration::ZERO).is_err());
    }

    #[tokio::test]
    async fn idle_entries_are_swept() {
        let guard = PathGuard::new(PathGuardConfig {
            residual_wait: Duration::ZERO,
            ..PathGuardConfig::default()
        });
        for port in 1..=8192 {
            drop(
                guard
                    .acquire(key(10, port), AccessMode::Shared, never_called)
                    .await,
            );
        }
        assert!(guard.tracked_paths() < 8192, "stale entries are dropped");
    }
}
