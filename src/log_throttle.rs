//! Rate-limited log lines: the first occurrence of a repeated event is
//! logged, then at most one summary line per interval says how many more
//! happened.
//!
//! Why: a fault that repeats per request (a full disk refusing every push,
//! a flood of refused connections) otherwise writes one line per event,
//! which buries the first, useful line, fills the journal of a small
//! router and costs a write per event exactly when the process is under
//! pressure. Counters (in `/metrics`) keep the exact numbers; the log only
//! has to say that it is happening and roughly how much.
//!
//! Each call site names itself with a static key (e.g. `"http.refused.per_ip"`),
//! so unrelated faults never suppress each other. Summaries are written
//! lazily, by the next occurrence after the interval, because a timer per
//! key would need a thread or a task; a burst that stops leaves its last
//! count unreported in the log, but never in the counters.
//!
//! Use [`log_limited!`](crate::log_limited) at call sites; [`LogThrottle`]
//! holds the state and is testable with a caller-supplied clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default interval between two lines of the same key: long enough that a
/// flood writes a handful of lines a minute, short enough that an operator
/// watching the log sees a fault is still going on.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);

/// The throttle shared by every [`log_limited!`](crate::log_limited) call:
/// keys are per site, so one table is enough, and a static avoids threading
/// a handle through every module that logs.
pub static GLOBAL: LogThrottle = LogThrottle::new(DEFAULT_EVERY);

/// One key's state.
#[derive(Debug)]
struct Site {
    key: &'static str,
    /// When a line for this key was last written.
    last_logged: Instant,
    /// Occurrences since then that were not written.
    suppressed: u64,
}

/// Decides, per static key, which occurrences of an event are written.
///
/// A plain list rather than a map: there are a few dozen call sites at
/// most, a linear scan of them is cheaper than hashing, and a `Vec` can be
/// built in a `const fn` so the table can be a `static`.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    sites: Mutex<Vec<Site>>,
}

impl LogThrottle {
    /// A throttle writing at most one line per `every` per key.
    pub const fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every,
            sites: Mutex::new(Vec::new()),
        }
    }

    /// Records one occurrence of `key` at `now`. `Some(n)`: write a line now;
    /// `n` occurrences were suppressed since the previous line of this key
    /// (0 for the first one, or after a quiet interval). `None`: suppress
    /// this one; it is counted into the next line.
    pub fn admit(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let Some(site) = sites.iter_mut().find(|s| s.key == key) else {
            sites.push(Site {
                key,
                last_logged: now,
                suppressed: 0,
            });
            return Some(0);
        };
        if now.saturating_duration_since(site.last_logged) >= self.every {
            site.last_logged = now;
            return Some(std::mem::take(&mut site.suppressed));
        }
        site.suppressed += 1;
        None
    }

    /// The interval, for the summary text ("... in the last 10 s").
    pub fn every(&self) -> Duration {
        self.every
    }
}

/// Logs like `log::log!`, but at most once per
/// [`DEFAULT_EVERY`] for the static `key`; the line that ends a quiet
/// interval says how many were suppressed before it.
///
/// ```
/// edge_gw::log_limited!(log::Level::Warn, "doc.example", "refused {}", 1);
/// ```
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $key:expr, $($arg:tt)+) => {{
        let level: ::log::Level = $level;
        if ::log::log_enabled!(level) {
            let throttle = &$crate::log_throttle::GLOBAL;
            match throttle.admit($key, ::std::time::Instant::now()) {
                Some(0) => ::log::log!(level, $($arg)+),
                Some(n) => ::log::log!(
                    level,
                    "{} (and {} more like this in the last {} s, not logged)",
                    format_args!($($arg)+),
                    n,
                    throttle.every().as_secs()
                ),
                None => {}
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn first_then_one_summary_per_interval() {
        let t = LogThrottle::new(10 * S);
        let t0 = Instant::now();
        assert_eq!(t.admit("a", t0), Some(0), "the first is written");
        for i in 1..=107 {
            assert_eq!(t.admit("a", t0 + S * i / 20), None, "within the interval");
        }
        assert_eq!(
            t.admit("a", t0 + 10 * S),
            Some(107),
            "the summary counts them"
        );
        assert_eq!(t.admit("a", t0 + 11 * S), None);
        assert_eq!(t.admit("a", t0 + 20 * S), Some(1));
        // A quiet interval: the next one is written at once, nothing to sum.
        assert_eq!(t.admit("a", t0 + 100 * S), Some(0));
    }

    #[test]
    fn keys_are_independent() {
        let t = LogThrottle::new(10 * S);
        let t0 = Instant::now();
        assert_eq!(t.admit("a", t0), Some(0));
        assert_eq!(t.admit("b", t0), Some(0), "another site is not suppressed");
        assert_eq!(t.admit("a", t0 + S), None);
        assert_eq!(t.admit("b", t0 + 10 * S), Some(0));
        assert_eq!(t.admit("a", t0 + 10 * S), Some(1));
    }

    #[test]
    fn clock_going_backwards_suppresses_rather_than_panics() {
        let t = LogThrottle::new(10 * S);
        let t0 = Instant::now() + 100 * S;
        assert_eq!(t.admit("a", t0), Some(0));
        assert_eq!(t.admit("a", t0 - 50 * S), None);
        assert_eq!(t.admit("a", t0 + 10 * S), Some(1));
    }

    #[test]
    fn macro_compiles_at_every_level() {
        crate::log_limited!(log::Level::Error, "test.macro", "x {}", 1);
        crate::log_limited!(log::Level::Debug, "test.macro", "y");
    }
}
