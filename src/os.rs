//! What the sans-I/O core gets from the operating system: the time and the
//! random source.
//!
//! `src/proto` and `src/session` read neither a clock nor a random source;
//! the shells (`agent`, `master`, the tools) call these and pass the result
//! in, and tests pass simulated time and fixed bytes instead.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::session::{Clock, Entropy, EntropyFailed};

/// The real time now: the monotonic clock for every deadline, and the wall
/// clock (0 before the Unix epoch) for what is only reported.
pub fn now() -> Clock {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Clock {
        mono: Instant::now(),
        unix_ms,
    }
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970, as
/// on a router before NTP).
pub fn unix_ms() -> u64 {
    now().unix_ms
}

/// The operating system's random source (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed> {
        getrandom::fill(buf).map_err(|_| EntropyFailed)
    }
}
