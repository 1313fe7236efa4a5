//! When to send a query again: the retransmission timeout learnt from one server's
//! round trips on one socket.
//!
//! A query with no reply is sent again. An attempt that another may follow waits twice
//! the 99th percentile of the round trips this server's replies took (at least
//! [`MIN_RETRANSMIT`], at most the timeout; doubled at each further attempt), so a lost
//! packet to a server that answers in milliseconds costs a quarter second, not the
//! whole timeout, while a slow recursive resolver, whose slow answers set the
//! percentile, is not asked twice for what it is still resolving. Before enough replies
//! have been seen the timeout applies. The question is listened to as long as before:
//! the last attempt waits until every attempt would have waited the whole timeout.
//!
//! Sending again early costs no accuracy: every attempt has its own query id, so a late
//! reply to the first attempt is still taken for what it is (a reply to the first), and
//! the judge compares replies within one attempt for the injection signature.

use std::time::Duration;

/// The shortest wait before a query is sent again: below it, ordinary queueing at a
/// busy server would draw duplicate queries.
pub(super) const MIN_RETRANSMIT: Duration = Duration::from_millis(250);
/// Replies seen before the percentile is trusted.
const MIN_SAMPLES: u32 = 64;
/// Samples after which the counts are halved, so that the percentile follows the
/// server's load rather than the whole scan's history.
const DECAY_AFTER: u32 = 8_192;
/// Buckets of round-trip times by powers of two of microseconds: the last holds
/// everything from about 4 s.
const BUCKETS: usize = 23;

/// A histogram of one server's round-trip times (powers of two of microseconds), for
/// its 99th percentile.
#[derive(Debug, Clone, Default)]
pub(super) struct RoundTrips {
    counts: [u32; BUCKETS],
    total: u32,
}

impl RoundTrips {
    /// One reply came `rtt` after the attempt it answers left.
    pub(super) fn record(&mut self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let bucket = (micros.ilog2() as usize).min(BUCKETS - 1);
        self.counts[bucket] += 1;
        self.total += 1;
        if self.total >= DECAY_AFTER {
            self.total = 0;
            for count in &mut self.counts {
                *count /= 2;
                self.total += *count;
            }
        }
    }

    /// How long an attempt that another may follow waits for its reply: twice the
    /// upper bound of the bucket holding the 99th percentile, within
    /// [[`MIN_RETRANSMIT`], `timeout`]; `timeout` until enough replies were seen.
    pub(super) fn retransmit_after(&self, timeout: Duration) -> Duration {
        if self.total < MIN_SAMPLES {
            return timeout;
        }
        // The smallest bucket with at least 99 % of the samples at or below it.
        let wanted = u64::from(self.total) * 99;
        let mut seen = 0u64;
        let mut upper_micros = u64::MAX;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen * 100 >= wanted {
                upper_micros = if bucket == BUCKETS - 1 {
                    u64::MAX
                } else {
                    1u64 << (bucket + 1)
                };
                break;
            }
        }
        Duration::from_micros(upper_micros.saturating_mul(2))
            .max(MIN_RETRANSMIT)
            .min(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[test]
    fn the_timeout_applies_until_enough_replies_were_seen() {
        let mut trips = RoundTrips::default();
        for _ in 0..MIN_SAMPLES - 1 {
            trips.record(Duration::from_millis(1));
        }
        assert_eq!(trips.retransmit_after(TIMEOUT), TIMEOUT);
        trips.record(Duration::from_millis(1));
        assert_eq!(trips.retransmit_after(TIMEOUT), MIN_RETRANSMIT);
    }

    #[test]
    fn a_slow_percent_of_replies_sets_the_wait() {
        // 98 % answered in 2 ms, 2 % in 300 ms: the 99th percentile is in the bucket
        // from 262 ms to 524 ms, and twice its top is past the timeout.
        let mut trips = RoundTrips::default();
        for i in 0..1_000 {
            let ms = if i % 50 == 0 { 300 } else { 2 };
            trips.record(Duration::from_millis(ms));
        }
        assert_eq!(
            trips.retransmit_after(TIMEOUT),
            Duration::from_micros(1 << 20).min(TIMEOUT)
        );
        assert_eq!(
            trips.retransmit_after(Duration::from_secs(5)),
            Duration::from_micros(1 << 20)
        );
        // Half a percent slow: the percentile stays with the fast ones.
        let mut trips = RoundTrips::default();
        for i in 0..1_000 {
            let ms = if i % 200 == 0 { 300 } else { 40 };
            trips.record(Duration::from_millis(ms));
        }
        // 40 ms is in the bucket up to 65.5 ms: twice that is 131 ms, below the floor.
        assert_eq!(trips.retransmit_after(TIMEOUT), MIN_RETRANSMIT);
        for _ in 0..1_000 {
            trips.record(Duration::from_millis(200));
        }
        // 200 ms is in the bucket up to 262 ms: 524 ms.
        assert_eq!(
            trips.retransmit_after(TIMEOUT),
            Duration::from_micros(1 << 19)
        );
    }

    #[test]
    fn the_wait_never_exceeds_the_timeout_and_follows_the_servers_load() {
        let mut trips = RoundTrips::default();
        for _ in 0..1_000 {
            trips.record(Duration::from_secs(60));
        }
        assert_eq!(trips.retransmit_after(TIMEOUT), TIMEOUT);
        // Old samples are halved away: a server that became fast is trusted again.
        for _ in 0..4 * DECAY_AFTER {
            trips.record(Duration::from_millis(3));
        }
        assert_eq!(trips.retransmit_after(TIMEOUT), MIN_RETRANSMIT);
        assert!(trips.total < DECAY_AFTER);
    }
}
