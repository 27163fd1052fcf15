//! Reconnect delays: exponential backoff with full jitter.
//!
//! Each delay is uniform in `[0, min(cap, base × 2^attempt)]`, from the
//! very first retry, so ten thousand agents that lose their master at the
//! same moment come back spread over the window instead of in one wave.

use std::time::Duration;

/// Backoff state of one agent.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at up to `base` and never exceed `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay, given a uniform random number; counts the attempt.
    pub fn next_with(&mut self, random: u32) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis((u64::from(random) * (ms + 1)) >> 32)
    }

    /// The next delay, with system randomness.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(getrandom::u32().unwrap_or(u32::MAX / 2))
    }

    /// A session held long enough: start over from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_secs());
            b.next_with(0);
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spans_zero_to_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(b.next_with(0), Duration::ZERO);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(b.next_with(u32::MAX), Duration::from_millis(1000));
        for _ in 0..100 {
            b.next_with(u32::MAX);
        }
        assert_eq!(b.next_with(u32::MAX), Duration::from_secs(60));
        assert_eq!(b.next_with(u32::MAX / 2), Duration::from_millis(30_000));
    }

    #[test]
    fn system_randomness_stays_in_bounds_and_spreads() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(1));
            seen.insert(d.as_millis() / 100);
        }
        // 200 draws over ten 100 ms buckets: all but a freak run hit most.
        assert!(seen.len() >= 6, "{seen:?}");
    }
}
