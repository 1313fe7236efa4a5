//! Ordering, sharding, pacing and bounded concurrency.
//!
//! The order is a seeded permutation of the list's indices, computed one position at a
//! time ([`Permutation`]: no shuffled copy of the list), and shard `I/N` takes every N-th
//! element of that permutation starting at I, as `ZMap` does: shards run with the same
//! seed are disjoint and together cover the list. Pacing spaces work evenly at `rate`
//! units a second (no bursts, no catch-up after a stall); the scan's pipeline
//! (`scan::pipeline`) bounds the targets in flight.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

/// A `--shard` that names no part of the work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("invalid option --shard: {input:?}: {reason}")]
    BadShard { input: String, reason: &'static str },
}

/// `--shard I/N`: the I-th (0-based) of N disjoint parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let bad = |reason: &'static str| ShardError::BadShard {
            input: s.to_owned(),
            reason,
        };
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected I/N, e.g. 0/4"))?;
        let index: u32 = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad("I counts from 0 and must be below N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A seeded bijection of `[0, len)` onto itself, computed one position at a time (no
/// table): a balanced Feistel network over the smallest even number of bits that holds
/// `len`, cycle-walked back into range (`ZMap` walks a cyclic group for the same end).
/// The domain is less than `4 * len`, so a position takes under 4 rounds of the network
/// on average. The same `len` and seed give the same permutation on every machine.
#[derive(Debug, Clone)]
pub struct Permutation {
    len: u64,
    half_bits: u32,
    keys: [u64; FEISTEL_ROUNDS],
}

const FEISTEL_ROUNDS: usize = 6;

impl Permutation {
    pub fn new(len: u64, seed: u64) -> Self {
        let bits = u64::BITS - len.saturating_sub(1).leading_zeros();
        // The round keys come from the seed by splitmix64, defined here, not by a
        // library generator whose output may change between versions: a seed must give
        // the same order in every run, shard and release.
        let mut state = seed;
        Permutation {
            len,
            half_bits: bits.div_ceil(2).max(1),
            keys: std::array::from_fn(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                mix(state)
            }),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `position` (below `len`) goes.
    pub fn apply(&self, position: u64) -> u64 {
        assert!(position < self.len, "position {position} of {}", self.len);
        let mut x = position;
        loop {
            x = self.feistel(x);
            if x < self.len {
                return x;
            }
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.keys {
            (left, right) = (right, left ^ (mix(right ^ key) & mask));
        }
        (left << self.half_bits) | right
    }
}

/// The `splitmix64` finaliser: every input bit moves about half the output bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The scheduled order of a list of `total` items: position `j` is the list index at
/// position `I + j*N` of the seeded [`Permutation`] for shard `I/N` (all of it without
/// a shard). Shards run with one seed are disjoint and together cover the list. Nothing
/// is held per item.
#[derive(Debug, Clone)]
pub struct ScheduledOrder {
    permutation: Permutation,
    first: u64,
    step: u64,
    len: usize,
}

impl ScheduledOrder {
    pub fn new(total: usize, seed: u64, shard: Option<Shard>) -> Self {
        let (first, step) = shard.map_or((0, 1), |s| (u64::from(s.index), u64::from(s.count)));
        let total_u64 = total as u64;
        let len = if total_u64 > first {
            (total_u64 - first - 1) / step + 1
        } else {
            0
        };
        ScheduledOrder {
            permutation: Permutation::new(total_u64, seed),
            first,
            step,
            len: len as usize,
        }
    }

    /// Items scheduled (this shard's part).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The list index scheduled at `position` (below [`len`](Self::len)).
    pub fn index(&self, position: usize) -> usize {
        assert!(position < self.len, "position {position} of {}", self.len);
        self.permutation
            .apply(self.first + position as u64 * self.step) as usize
    }

    /// The list indices in scheduled order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        (0..self.len).map(|position| self.index(position))
    }
}

/// Orders `items` by `seed` and keeps this shard's part ([`ScheduledOrder`] over a
/// `Vec`, for small lists).
pub fn order<T>(items: Vec<T>, seed: u64, shard: Option<Shard>) -> Vec<T> {
    let scheduled = ScheduledOrder::new(items.len(), seed, shard);
    let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
    scheduled
        .iter()
        .map(|i| {
            items[i]
                .take()
                .expect("a permutation visits each index once")
        })
        .collect()
}

/// Spaces work evenly: each unit of work may start `1/rate` seconds after the previous.
/// Owned by the single dispatcher, so it needs no lock.
#[derive(Debug)]
pub struct Pacer {
    per_unit: Option<Duration>,
    next: Instant,
}

impl Pacer {
    /// `rate` units per second; 0 means unpaced.
    pub fn new(rate: f64) -> Self {
        Pacer {
            per_unit: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next: Instant::now(),
        }
    }

    /// Waits until `units` more units may start.
    pub async fn wait(&mut self, units: u32) {
        let Some(per_unit) = self.per_unit else {
            return;
        };
        let now = Instant::now();
        // After a stall (the consumer was slower than the rate), do not burst to catch
        // up; a timer that woke a tick late keeps the schedule. (Reset at every late
        // wake-up, the schedule lost up to a tick per sleep: at 100,000 units a second it
        // started 1,800 units of two a second, not 50,000.)
        if self.next + TIMER_TICK * 2 < now {
            self.next = now;
        }
        let start = self.next;
        self.next += per_unit * units;
        // Timers tick in milliseconds: a start less than a tick away goes now, so high
        // rates are kept on average (bursts of at most a tick's worth), as the DNS
        // engine's rate gate does.
        if start > now + TIMER_TICK {
            tokio::time::sleep_until(start).await;
        }
    }
}

/// The granularity of tokio's timers.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// How a run of the dispatcher ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchOutcome {
    pub started: usize,
    pub interrupted: bool,
}

/// Spreads the first `names` starts of a pass evenly over `over` (the late-reply window);
/// later starts are not held. A pass that may hold 60,000 names would otherwise start
/// them in one burst: the burst overflowed the resolver's receive buffer (about 2,000
/// names of a local bench needed a retry in the first second, against a few dozen a
/// second after), and their windows all closed together, so a third of them waited,
/// finished, for the judge at once (about 10 MB). Past the first window the names in
/// flight set the pace, and a steady scan starts about `names` a window anyway: the
/// ramp costs it no rate.
#[derive(Debug)]
pub struct Ramp {
    start: Instant,
    step: Duration,
    names: u32,
    started: u32,
}

impl Ramp {
    /// Starts sooner than this before their time go at once (the timer's granularity).
    const SLACK: Duration = Duration::from_millis(1);

    pub fn new(names: usize, over: Duration) -> Self {
        let names = u32::try_from(names).unwrap_or(u32::MAX);
        Ramp {
            start: Instant::now(),
            step: over.checked_div(names).unwrap_or(Duration::ZERO),
            names,
            started: 0,
        }
    }

    /// Waits until the next start's time in the ramp (at once past the ramp).
    pub async fn wait(&mut self) {
        if self.started >= self.names || self.step.is_zero() {
            return;
        }
        let due = self.start + self.step.saturating_mul(self.started);
        self.started += 1;
        if due > Instant::now() + Self::SLACK {
            tokio::time::sleep_until(due).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn shards_are_disjoint_and_cover_the_list() {
        let items: Vec<u32> = (0..1000).collect();
        let mut seen = HashSet::new();
        for index in 0..7 {
            let part = order(items.clone(), 42, Some(Shard { index, count: 7 }));
            assert!(part.len() >= 142 && part.len() <= 143, "{}", part.len());
            for item in part {
                assert!(seen.insert(item), "{item} in two shards");
            }
        }
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn order_depends_on_seed_only() {
        let items: Vec<u32> = (0..100).collect();
        assert_eq!(order(items.clone(), 7, None), order(items.clone(), 7, None));
        assert_ne!(order(items.clone(), 7, None), order(items.clone(), 8, None));
        assert_ne!(order(items.clone(), 7, None), items);
    }

    fn permuted(len: u64, seed: u64) -> Vec<u64> {
        let permutation = Permutation::new(len, seed);
        (0..len).map(|p| permutation.apply(p)).collect()
    }

    #[test]
    fn the_permutation_is_a_bijection_for_every_length() {
        let lengths = (0..=300).chain([1000, 1024, 1025, 4097, 65_535, 65_537, 100_003]);
        for len in lengths {
            for seed in [0, 1, 42, u64::MAX] {
                let mut got = permuted(len, seed);
                got.sort_unstable();
                assert!(
                    got.iter().copied().eq(0..len),
                    "len {len}, seed {seed}: not a permutation"
                );
            }
        }
    }

    #[test]
    fn the_permutation_is_fixed_by_its_seed() {
        assert_eq!(permuted(1000, 9), permuted(1000, 9));
        assert_ne!(permuted(1000, 9), permuted(1000, 10));
        // Pinned: the order of a seed may not change between releases (shards of one
        // seed run by different versions must still split the list exactly).
        assert_eq!(permuted(10, 42), [2, 7, 4, 0, 8, 3, 6, 9, 5, 1]);
    }

    #[test]
    fn the_permutation_scatters_the_list() {
        let len = 10_000;
        let order = permuted(len, 3);
        let neighbours = order
            .windows(2)
            .filter(|w| w[0].abs_diff(w[1]) == 1)
            .count();
        assert!(neighbours < 50, "{neighbours} neighbours kept together");
        let fixed = order
            .iter()
            .enumerate()
            .filter(|(i, p)| *i as u64 == **p)
            .count();
        assert!(fixed < 50, "{fixed} fixed points");
        // The first hundred positions reach across the whole list.
        let first: Vec<u64> = order[..100].to_vec();
        assert!(first.iter().any(|&i| i < len / 10) && first.iter().any(|&i| i > len * 9 / 10));
    }

    #[test]
    fn the_permutation_holds_huge_lengths() {
        for len in [u64::from(u32::MAX) + 1, u64::MAX] {
            let permutation = Permutation::new(len, 5);
            for position in [0, 1, len / 2, len - 1] {
                assert!(permutation.apply(position) < len);
            }
            assert_ne!(permutation.apply(0), permutation.apply(1));
        }
    }

    proptest::proptest! {
        #[test]
        fn shards_of_the_order_are_exact(
            len in 0usize..3000,
            count in 1u32..17,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let whole: Vec<usize> = ScheduledOrder::new(len, seed, None).iter().collect();
            let mut seen = vec![false; len];
            for index in 0..count {
                let part = ScheduledOrder::new(len, seed, Some(Shard { index, count }));
                let got: Vec<usize> = part.iter().collect();
                // Shard I/N is every N-th element of the whole order, from I.
                let expected: Vec<usize> =
                    whole.iter().copied().skip(index as usize).step_by(count as usize).collect();
                proptest::prop_assert_eq!(&got, &expected);
                proptest::prop_assert_eq!(part.len(), got.len());
                for i in got {
                    proptest::prop_assert!(!seen[i], "{} in two shards", i);
                    seen[i] = true;
                }
            }
            proptest::prop_assert!(seen.iter().all(|s| *s), "every item in a shard");
        }
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    /// How long `starts` starts of one unit took on the (virtual) clock.
    async fn time_of(pacer: &mut Pacer, starts: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..starts {
            pacer.wait(1).await;
        }
        start.elapsed()
    }

    /// A wake-up later than asked (timers tick in milliseconds) does not push the
    /// schedule back: a late start is caught up; only a stall resets it.
    #[tokio::test(start_paused = true)]
    async fn a_late_wake_up_keeps_the_pacers_schedule_and_a_stall_resets_it() {
        // 10,000 a second: 0.1 ms apart, well within a timer tick.
        let mut pacer = Pacer::new(10_000.0);
        // 30 starts are 3 ms of schedule; only those more than a tick ahead waited.
        let took = time_of(&mut pacer, 30).await;
        assert!(took <= Duration::from_millis(3), "{took:?}");
        // Woken 0.5 ms late: the schedule holds (the next 5 go at once).
        tokio::time::advance(Duration::from_micros(500)).await;
        assert_eq!(time_of(&mut pacer, 5).await, Duration::ZERO);
        // A stall of 50 ms: no burst of 500 starts to catch up.
        tokio::time::advance(Duration::from_millis(50)).await;
        let took = time_of(&mut pacer, 100).await;
        assert!(took >= Duration::from_millis(8), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_work_evenly() {
        // 50 units at 100/s: the 50th starts 490 ms after the first (virtual clock).
        assert_eq!(
            time_of(&mut Pacer::new(100.0), 50).await,
            Duration::from_millis(490)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_starts_are_spread_over_the_window_and_later_ones_are_not_held() {
        let mut ramp = Ramp::new(4, Duration::from_secs(1));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..6 {
            ramp.wait().await;
            at.push(start.elapsed().as_millis());
        }
        assert_eq!(at, [0, 250, 500, 750, 750, 750]);
        // No window: nothing is held.
        let mut ramp = Ramp::new(4, Duration::ZERO);
        let start = Instant::now();
        for _ in 0..4 {
            ramp.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
