//! Keepalive arithmetic on the monotonic clock.
//!
//! A peer is alive while something arrived from it within
//! `interval × miss_limit`. Only [`Instant`]s are used: routers boot with
//! their wall clock in 1970 and step it later, which must not evict anyone.

use std::time::{Duration, Instant};

/// Heartbeat settings shared by both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How often the agent sends a heartbeat.
    pub interval: Duration,
    /// How many intervals may pass in silence before the peer is dead.
    pub miss_limit: u32,
}

impl Default for Keepalive {
    /// 10 s × 3, the defaults of the master and agent.
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(10),
            miss_limit: 3,
        }
    }
}

impl Keepalive {
    /// Silence after which the peer is declared dead.
    pub fn timeout(&self) -> Duration {
        self.interval.saturating_mul(self.miss_limit.max(1))
    }
}

/// When the peer was last heard from.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    last_rx: Instant,
}

impl Liveness {
    /// Starts counting at `now`.
    pub fn new(now: Instant) -> Liveness {
        Liveness { last_rx: now }
    }

    /// Something valid arrived.
    pub fn heard(&mut self, now: Instant) {
        // Instants from one monotonic clock never go back; max() guards a
        // caller mixing clocks.
        self.last_rx = self.last_rx.max(now);
    }

    /// Last time something arrived.
    pub fn last_heard(&self) -> Instant {
        self.last_rx
    }

    /// When the peer will be dead if nothing arrives.
    pub fn deadline(&self, k: &Keepalive) -> Instant {
        self.last_rx + k.timeout()
    }

    /// Whether the peer is dead at `now`.
    pub fn is_dead(&self, k: &Keepalive, now: Instant) -> bool {
        now >= self.deadline(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_exactly_after_interval_times_misses() {
        let t0 = Instant::now();
        let k = Keepalive {
            interval: Duration::from_secs(10),
            miss_limit: 3,
        };
        let mut l = Liveness::new(t0);
        assert!(!l.is_dead(&k, t0 + Duration::from_millis(29_999)));
        assert!(l.is_dead(&k, t0 + Duration::from_secs(30)));
        l.heard(t0 + Duration::from_secs(25));
        assert!(!l.is_dead(&k, t0 + Duration::from_secs(54)));
        assert_eq!(l.deadline(&k), t0 + Duration::from_secs(55));
        // An older instant never moves the deadline back.
        l.heard(t0);
        assert_eq!(l.last_heard(), t0 + Duration::from_secs(25));
        // miss_limit 0 is treated as 1, never "dead at once".
        let k0 = Keepalive {
            interval: Duration::from_secs(1),
            miss_limit: 0,
        };
        assert_eq!(k0.timeout(), Duration::from_secs(1));
    }
}
