//! Send-rate control of the DNS probe: additive increase, multiplicative decrease (AIMD)
//! on the loss rate of queries to the resolver.
//!
//! A resolver that rate-limits drops queries above its limit; left alone, a scan at a
//! higher rate turns those drops into timeouts that look like censorship. So the probe
//! counts, per window of attempts sent at one rate, how many got no reply, and halves
//! the rate when the loss is high. Loss that does not fall when the rate is halved is
//! not caused by the rate (a censor dropping many names of the list, say): it is then
//! taken as the baseline and the rate climbs back.
//!
//! A window is the next [`WINDOW`] attempts *sent*, judged once each has its outcome:
//! answers arrive in milliseconds and losses only at the timeout, so closing a window
//! on the first outcomes to arrive would undercount the loss. Attempts sent while a
//! window waits for its outcomes are not sampled.

pub use crate::observation::{DnsRateReport, RateChange};
use std::sync::Mutex;
use std::time::Duration;

// The runtime's clock, so that pacing follows tokio's (pausable) time.
use tokio::time::Instant;

/// Attempt outcomes that make one window.
const WINDOW: u32 = 50;
/// Loss above the baseline that counts as "the resolver drops queries".
const LOSS_MARGIN: f64 = 0.05;
/// Rate changes kept in the report (the rest are counted).
const CHANGES_KEPT: usize = 64;
/// The runtime's timer resolution.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// AIMD state. Pure: the caller passes the time, so it is unit-testable.
#[derive(Debug, Clone)]
pub struct AimdRate {
    max: f64,
    min: f64,
    rate: f64,
    /// The current window; sampled attempts carry its id.
    window: u64,
    window_sent: u32,
    window_answered: u32,
    window_lost: u32,
    /// Loss and answered fraction of the window that caused the last cut, while the
    /// windows since have kept cutting.
    last_cut: Option<(f64, f64)>,
    baseline_loss: f64,
    report: DnsRateReport,
}

impl AimdRate {
    /// Starts at `max_qps`; `max_qps <= 0` means unpaced and disables the control.
    pub fn new(max_qps: f64) -> Self {
        let max = if max_qps.is_finite() && max_qps > 0.0 {
            max_qps
        } else {
            0.0
        };
        AimdRate {
            max,
            min: (max / 64.0).max(1.0).min(max),
            rate: max,
            window: 0,
            window_sent: 0,
            window_answered: 0,
            window_lost: 0,
            last_cut: None,
            baseline_loss: 0.0,
            report: DnsRateReport {
                max_qps: max,
                final_qps: max,
                lowest_qps: max,
                ..DnsRateReport::default()
            },
        }
    }

    /// Queries a second now; 0 when unpaced.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// An attempt leaves now: the window id when it is sampled.
    pub fn on_send(&mut self) -> Option<u64> {
        if self.max == 0.0 || self.window_sent >= WINDOW {
            return None;
        }
        self.window_sent += 1;
        Some(self.window)
    }

    /// Records the outcome of one attempt (`sample`: what [`AimdRate::on_send`] gave
    /// it), `at` after the engine started.
    pub fn record(&mut self, sample: Option<u64>, answered: bool, at: Duration) {
        if answered {
            self.report.attempts_answered += 1;
        } else {
            self.report.attempts_lost += 1;
        }
        if sample != Some(self.window) {
            return;
        }
        if answered {
            self.window_answered += 1;
        } else {
            self.window_lost += 1;
        }
        let total = self.window_answered + self.window_lost;
        if total < WINDOW {
            return;
        }
        let loss = f64::from(self.window_lost) / f64::from(total);
        self.window += 1;
        self.window_sent = 0;
        self.window_answered = 0;
        self.window_lost = 0;
        if loss > self.baseline_loss + LOSS_MARGIN {
            let answered_fraction = 1.0 - loss;
            if let Some((cut_loss, cut_answered)) = self.last_cut {
                // Halving the rate left the loss where it was and did not raise the share
                // answered (a rate limiter's would have): this loss is not the rate's
                // doing. Loss that rose, or nothing answered at all, proves nothing of
                // the kind: keep cutting.
                let unmoved = (loss - cut_loss).abs() <= LOSS_MARGIN
                    && cut_answered > 0.0
                    && answered_fraction <= cut_answered * 1.5;
                if unmoved {
                    self.baseline_loss = loss;
                    self.last_cut = None;
                    return;
                }
            }
            self.last_cut = Some((loss, answered_fraction));
            if self.rate > self.min {
                self.report.backoffs += 1;
                self.change((self.rate / 2.0).max(self.min), loss, at);
            }
        } else {
            self.last_cut = None;
            // Loss well below the baseline: the baseline was a passing state.
            if loss < self.baseline_loss - LOSS_MARGIN {
                self.baseline_loss = loss;
            }
            if self.rate < self.max {
                let step = (self.max / 128.0).max(1.0);
                self.change((self.rate + step).min(self.max), loss, at);
            }
        }
    }

    fn change(&mut self, to: f64, loss: f64, at: Duration) {
        let from = self.rate;
        self.rate = to;
        self.report.lowest_qps = self.report.lowest_qps.min(to);
        if self.report.changes.len() < CHANGES_KEPT {
            self.report.changes.push(RateChange {
                at_s: at.as_secs_f64(),
                from_qps: from,
                to_qps: to,
                loss,
            });
        } else {
            self.report.changes_omitted += 1;
        }
    }

    pub fn report(&self) -> DnsRateReport {
        let mut report = self.report.clone();
        report.final_qps = self.rate;
        report.baseline_loss = self.baseline_loss;
        report
    }
}

/// The engine's pacer: spaces queries evenly at the AIMD rate. Shared by the engine's
/// callers (who wait their turn) and its socket tasks (who report outcomes and charge
/// retries, never waiting).
#[derive(Debug)]
pub struct RateGate {
    started: Instant,
    /// False when unpaced: then only the totals are kept, without the lock.
    paced: bool,
    answered: std::sync::atomic::AtomicU64,
    lost: std::sync::atomic::AtomicU64,
    state: Mutex<GateState>,
    /// Callers wait here in turn (tokio's mutex is fair), so only one sleeps at a time
    /// and a rate change applies to the very next query.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct GateState {
    aimd: AimdRate,
    next_slot: Instant,
}

impl RateGate {
    pub fn new(max_qps: f64) -> Self {
        let now = Instant::now();
        RateGate {
            started: now,
            paced: max_qps.is_finite() && max_qps > 0.0,
            answered: std::sync::atomic::AtomicU64::new(0),
            lost: std::sync::atomic::AtomicU64::new(0),
            state: Mutex::new(GateState {
                aimd: AimdRate::new(max_qps),
                next_slot: now,
            }),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // A panic elsewhere cannot leave this state inconsistent: keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `units` queries may leave.
    pub async fn admit(&self, units: u32) {
        if !self.paced {
            return;
        }
        let _turn = self.turn.lock().await;
        let slot = {
            let mut state = self.lock();
            let rate = state.aimd.rate();
            if rate <= 0.0 {
                return;
            }
            let now = Instant::now();
            // After an idle spell, do not burst to catch up; a timer that woke a tick
            // late keeps the schedule.
            let slot = if state.next_slot + TIMER_TICK * 2 < now {
                now
            } else {
                state.next_slot
            };
            state.next_slot = slot + Duration::from_secs_f64(f64::from(units) / rate);
            slot
        };
        // Timers tick in milliseconds: a slot less than one tick away leaves now, so high
        // rates are kept on average (bursts of at most a tick's worth) instead of being
        // capped at one query per tick.
        if slot > Instant::now() + TIMER_TICK {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// Counts a query that leaves without waiting (a retry): later queries wait for it.
    pub fn charge(&self, units: u32) {
        if !self.paced {
            return;
        }
        let mut state = self.lock();
        let rate = state.aimd.rate();
        if rate > 0.0 {
            let now = Instant::now();
            let slot = state.next_slot.max(now);
            state.next_slot = slot + Duration::from_secs_f64(f64::from(units) / rate);
        }
    }

    /// An attempt leaves now: its sample stamp (see [`AimdRate::on_send`]).
    pub fn on_send(&self) -> Option<u64> {
        if !self.paced {
            return None;
        }
        self.lock().aimd.on_send()
    }

    /// Records whether an attempt was answered.
    pub fn record(&self, sample: Option<u64>, answered: bool) {
        if !self.paced {
            let counter = if answered { &self.answered } else { &self.lost };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let at = self.started.elapsed();
        self.lock().aimd.record(sample, answered, at);
    }

    pub fn report(&self) -> DnsRateReport {
        let mut report = self.lock().aimd.report();
        report.attempts_answered += self.answered.load(std::sync::atomic::Ordering::Relaxed);
        report.attempts_lost += self.lost.load(std::sync::atomic::Ordering::Relaxed);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_rate(aimd: &AimdRate, expected: f64, why: &str) {
        assert!(
            (aimd.rate() - expected).abs() < 1e-9,
            "rate {} instead of {expected}: {why}",
            aimd.rate()
        );
    }

    /// Feeds one window at the current rate with the given loss fraction.
    fn window(aimd: &mut AimdRate, loss_fraction: f64) {
        let lost = (loss_fraction * f64::from(WINDOW)).round() as u32;
        let samples: Vec<Option<u64>> = (0..WINDOW).map(|_| aimd.on_send()).collect();
        // Answers first, losses at the timeout: the order outcomes really arrive in.
        for (i, sample) in samples.into_iter().enumerate().rev() {
            aimd.record(
                sample,
                u32::try_from(i).unwrap() >= lost,
                Duration::from_secs(1),
            );
        }
    }

    /// The loss a token bucket refilling at `limit` a second inflicts at `rate`.
    fn limiter_loss(rate: f64, limit: f64) -> f64 {
        if rate <= limit {
            0.0
        } else {
            1.0 - limit / rate
        }
    }

    #[test]
    fn backs_off_below_a_rate_limit_and_climbs_back_towards_it() {
        let mut aimd = AimdRate::new(1000.0);
        for _ in 0..200 {
            let loss = limiter_loss(aimd.rate(), 100.0);
            window(&mut aimd, loss);
        }
        let report = aimd.report();
        assert!(report.backoffs >= 4, "{report:#?}");
        assert!(report.lowest_qps <= 100.0, "{report:#?}");
        // The sawtooth stays around the limit, never back at the start.
        assert!(aimd.rate() <= 160.0, "{report:#?}");
        assert!(report.baseline_loss < 0.1, "{report:#?}");
    }

    #[test]
    fn loss_that_does_not_follow_the_rate_is_taken_as_baseline() {
        // A censor drops 30% of the list's names whatever the rate.
        let mut aimd = AimdRate::new(1000.0);
        for _ in 0..100 {
            window(&mut aimd, 0.3);
        }
        let report = aimd.report();
        assert_eq!(
            report.backoffs, 1,
            "one cut, then the loss is understood: {report:#?}"
        );
        assert!((report.baseline_loss - 0.3).abs() < 0.01);
        assert_rate(&aimd, 1000.0, "climbed back to the maximum");
    }

    #[test]
    fn a_limit_far_below_the_rate_is_still_found() {
        let mut aimd = AimdRate::new(1000.0);
        for _ in 0..100 {
            let loss = limiter_loss(aimd.rate(), 20.0);
            window(&mut aimd, loss);
        }
        assert!(aimd.rate() <= 40.0, "{:#?}", aimd.report());
    }

    #[test]
    fn only_sampled_attempts_count_and_a_window_waits_for_all_its_outcomes() {
        let mut aimd = AimdRate::new(100.0);
        let samples: Vec<Option<u64>> = (0..WINDOW).map(|_| aimd.on_send()).collect();
        assert!(samples.iter().all(|s| *s == Some(0)));
        // Sent while the window waits: not sampled, and their losses do not count.
        for _ in 0..(WINDOW * 3) {
            let sample = aimd.on_send();
            assert_eq!(sample, None);
            aimd.record(sample, false, Duration::ZERO);
        }
        assert_rate(&aimd, 100.0, "");
        // The window's answers arrive first; its losses, at the timeout, decide.
        for (i, sample) in samples.into_iter().enumerate() {
            aimd.record(sample, i < 10, Duration::ZERO);
            if i + 1 < usize::try_from(WINDOW).unwrap() {
                assert_rate(&aimd, 100.0, "judged before the window is complete");
            }
        }
        assert_rate(&aimd, 50.0, "80% lost");
        assert_eq!(aimd.report().attempts_lost, u64::from(WINDOW * 3 + 40));
        // Late outcomes of the old window are ignored by the new one.
        aimd.record(Some(0), false, Duration::ZERO);
        assert_eq!(aimd.on_send(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_paces_at_the_current_rate_even_above_a_query_per_tick() {
        let gate = RateGate::new(5_000.0);
        let start = tokio::time::Instant::now();
        for _ in 0..5_000 {
            gate.admit(1).await;
        }
        // 5,000 queries at 5,000 a second: about one second (virtual clock), not five.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1_010),
            "{elapsed:?}"
        );
    }

    #[test]
    fn unpaced_means_no_control_and_a_floor_holds() {
        let mut aimd = AimdRate::new(0.0);
        window(&mut aimd, 1.0);
        assert_rate(&aimd, 0.0, "");
        assert_eq!(aimd.report().backoffs, 0);
        let mut aimd = AimdRate::new(10.0);
        for _ in 0..20 {
            window(&mut aimd, 1.0);
        }
        assert_rate(&aimd, 1.0, "never below the floor");
    }
}
