//! Legacy fan-out frames too large to send.
//!
//! A legacy report is forwarded to v1 subscribers inside a JSON string
//! ([`crate::proto::v1::fanout`]): escaping can double it, so a report
//! near `max_frame` (~1 MiB) makes a fan-out frame over it, which a
//! subscriber's session cannot encode. That used to be counted as a plain
//! send failure and logged nowhere. It is now a drop with a reason:
//! counted per subscriber that misses the report
//! ([`super::Counters::fanout_dropped_too_large`]), and logged once per
//! report however many subscribers miss it, and at most once per
//! [`LOG_EVERY`] (a client sending such reports in a loop must not flood
//! the log; the next line says how many were not logged).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::Registry;
use crate::session::legacy::LegacyFanout;

/// Shortest time between two warnings about oversized fan-out.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the registry remembers to log once per report.
#[derive(Debug, Default)]
pub(super) struct OversizeFanout {
    /// The fan-out body last seen too large: every subscriber's drop of
    /// the same report hands the same body. A `Weak` so the body is not
    /// kept alive, and its address cannot be reused while held here.
    last: Weak<LegacyFanout>,
    /// When the last warning was logged.
    logged_at: Option<Instant>,
    /// Reports dropped since that warning without one of their own.
    unlogged: u64,
}

impl Registry {
    /// A subscriber could not be sent the legacy fan-out `body`: it is over
    /// the frame limit. Counts the drop; returns `Some(n)` when the caller
    /// should log a warning (`n`: reports dropped since the last warning
    /// and not logged), `None` when this report was logged already or the
    /// last warning is less than [`LOG_EVERY`] old.
    pub fn legacy_fanout_too_large(
        &mut self,
        body: &Arc<LegacyFanout>,
        now: Instant,
    ) -> Option<u64> {
        self.counters.fanout_dropped_too_large += 1;
        let o = &mut self.oversize_fanout;
        if std::ptr::eq(o.last.as_ptr(), Arc::as_ptr(body)) {
            return None;
        }
        o.last = Arc::downgrade(body);
        if o.logged_at.is_some_and(|t| now < t + LOG_EVERY) {
            o.unlogged += 1;
            return None;
        }
        o.logged_at = Some(now);
        Some(std::mem::take(&mut o.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::outbox::OutboxLimits;

    #[test]
    fn counted_per_subscriber_logged_once_per_report_and_rate_limited() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let big = Arc::new(LegacyFanout::new(vec![b'x'; 8]));
        // Three subscribers miss the same report: one warning.
        assert_eq!(r.legacy_fanout_too_large(&big, t), Some(0));
        assert_eq!(r.legacy_fanout_too_large(&big.clone(), t), None);
        assert_eq!(r.legacy_fanout_too_large(&big, t), None);
        assert_eq!(r.counters.fanout_dropped_too_large, 3);
        // Two more reports soon after: counted, not logged...
        for _ in 0..2 {
            let next = Arc::new(LegacyFanout::new(vec![b'y'; 8]));
            assert_eq!(r.legacy_fanout_too_large(&next, t + LOG_EVERY / 2), None);
        }
        // ...until the next warning, which says so.
        let later = Arc::new(LegacyFanout::new(vec![b'z'; 8]));
        assert_eq!(r.legacy_fanout_too_large(&later, t + LOG_EVERY), Some(2));
        assert_eq!(r.counters.fanout_dropped_too_large, 6);
    }
}
