//! A hashed timer wheel with millisecond ticks: inserting a deadline is a push onto the
//! bucket of its tick, expiring is draining the buckets up to now. Deadlines further
//! away than one turn of the wheel come out early; the caller checks the real deadline
//! of what comes out and inserts it again (as it does for deadlines that moved).

use std::time::{Duration, Instant};

/// Buckets, one per millisecond: one turn is about 4 seconds.
const BUCKETS: usize = 4096;
const TICK: Duration = Duration::from_millis(1);
/// Room a drained bucket keeps for the next turn (entries).
const KEPT_CAPACITY: usize = 16;

/// What the wheel keeps per deadline: the owner's key and a stamp that tells a stale
/// entry (its owner finished and the key was reused) from a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimerEntry {
    pub key: u32,
    pub stamp: u32,
}

#[derive(Debug)]
pub(super) struct TimerWheel {
    origin: Instant,
    buckets: Vec<Vec<TimerEntry>>,
    /// The next tick not yet expired.
    cursor: u64,
    len: usize,
}

impl TimerWheel {
    pub(super) fn new(origin: Instant) -> Self {
        TimerWheel {
            origin,
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            cursor: 0,
            len: 0,
        }
    }

    /// Tick whose expiry comes at or after `at` (rounded up: never early).
    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        let nanos = since.as_nanos();
        let tick = TICK.as_nanos();
        u64::try_from(nanos.div_ceil(tick)).unwrap_or(u64::MAX)
    }

    pub(super) fn insert(&mut self, at: Instant, entry: TimerEntry) {
        let tick = self.tick_of(at).max(self.cursor);
        self.buckets[(tick % BUCKETS as u64) as usize].push(entry);
        self.len += 1;
    }

    /// Moves every entry whose tick has come (and, for deadlines more than a turn
    /// away, some that have not: check them) into `due`.
    pub(super) fn expire(&mut self, now: Instant, due: &mut Vec<TimerEntry>) {
        let now_tick = u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX);
        let mut visited = 0;
        while self.cursor <= now_tick && visited < BUCKETS {
            let bucket = &mut self.buckets[(self.cursor % BUCKETS as u64) as usize];
            self.len -= bucket.len();
            due.append(bucket);
            if bucket.capacity() > KEPT_CAPACITY {
                // A burst (a batch of groups started at once) must not leave its room in
                // the bucket for good: over a long scan every bucket would meet one, and
                // the wheel would hold the largest burst thousands of times over.
                *bucket = Vec::new();
            }
            self.cursor += 1;
            visited += 1;
        }
        // Every bucket was visited: the rest of the gap holds nothing more.
        if visited == BUCKETS {
            self.cursor = now_tick.saturating_add(1);
        }
    }

    /// When the earliest bucket holding an entry comes due; `None` when empty.
    pub(super) fn next_due(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        (0..BUCKETS as u64)
            .map(|offset| self.cursor + offset)
            .find(|tick| !self.buckets[(tick % BUCKETS as u64) as usize].is_empty())
            .map(|tick| self.origin + TICK * u32::try_from(tick).unwrap_or(u32::MAX))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u32) -> TimerEntry {
        TimerEntry { key, stamp: 0 }
    }

    #[test]
    fn a_drained_bucket_does_not_keep_the_room_of_a_burst() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let at = origin + Duration::from_millis(5);
        for key in 0..1_000 {
            wheel.insert(at, entry(key));
        }
        wheel.insert(at, entry(1_000));
        let mut due = Vec::new();
        wheel.expire(origin + Duration::from_millis(5), &mut due);
        assert_eq!(due.len(), 1_001);
        assert!(
            wheel.buckets.iter().all(|b| b.capacity() <= KEPT_CAPACITY),
            "the burst's room was let go"
        );
        // A small bucket keeps its room for the next turn.
        for key in 0..4 {
            wheel.insert(origin + Duration::from_millis(7), entry(key));
        }
        due.clear();
        wheel.expire(origin + Duration::from_millis(7), &mut due);
        assert_eq!(due.len(), 4);
        assert!(wheel.buckets.iter().any(|b| b.capacity() >= 4));
    }

    #[test]
    fn entries_come_out_at_their_tick_never_before() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        wheel.insert(origin + Duration::from_micros(2_500), entry(1));
        wheel.insert(origin + Duration::from_millis(10), entry(2));
        let mut due = Vec::new();
        wheel.expire(origin + Duration::from_millis(2), &mut due);
        assert!(due.is_empty(), "2.5 ms is not due at 2 ms");
        assert_eq!(wheel.next_due(), Some(origin + Duration::from_millis(3)));
        wheel.expire(origin + Duration::from_millis(3), &mut due);
        assert_eq!(due, vec![entry(1)]);
        due.clear();
        wheel.expire(origin + Duration::from_millis(9), &mut due);
        assert!(due.is_empty());
        wheel.expire(origin + Duration::from_millis(50), &mut due);
        assert_eq!(due, vec![entry(2)]);
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_due(), None);
    }

    #[test]
    fn a_deadline_beyond_one_turn_comes_out_early_and_a_long_gap_loses_nothing() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let far = origin + Duration::from_millis(BUCKETS as u64 + 100);
        wheel.insert(far, entry(7));
        wheel.insert(origin + Duration::from_millis(5), entry(8));
        let mut due = Vec::new();
        wheel.expire(origin + Duration::from_millis(100), &mut due);
        // The far one shares the bucket of tick 100: out early, the caller re-inserts.
        assert_eq!(due, vec![entry(8), entry(7)]);
        due.clear();
        wheel.insert(far, entry(7));
        wheel.expire(origin + Duration::from_secs(60), &mut due);
        assert_eq!(due, vec![entry(7)]);
        // After a gap longer than a turn, new deadlines still come out.
        wheel.insert(origin + Duration::from_millis(60_003), entry(9));
        due.clear();
        wheel.expire(origin + Duration::from_millis(60_002), &mut due);
        assert!(due.is_empty());
        wheel.expire(origin + Duration::from_millis(60_003), &mut due);
        assert_eq!(due, vec![entry(9)]);
    }
}
