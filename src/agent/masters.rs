//! Which master the agent tries next, and how long it waits first.
//!
//! An agent given several masters (`--agent A,B,C`) sticks to the one it
//! reaches: nothing here ever moves it while its session holds, and no
//! "return to the first" pulls it back, so two healthy masters never see
//! it flap between them. Only a failure moves it — a refused or timed-out
//! connect, a closed connection, a silent master caught by the liveness
//! check, a refused handshake — and then to the entry after the one that
//! failed (round robin), so a master that refuses the agent's key is not
//! hammered while the others are there.
//!
//! Waits, all with full jitter (see [`Backoff`]): a move within a round
//! waits up to the backoff's base (1 s), so agents that lose one master
//! together reach the next one spread out instead of in one wave; after a
//! full round of failures the backoff grows as it does for a single
//! master. A session that lasted [`STABLE`] counts as the master having
//! worked: the backoff and the round start over.
//!
//! Sans-I/O: the caller passes how long the session lasted and a random
//! number, so the tests below run rotations with simulated time.

use std::time::Duration;

use super::backoff::Backoff;

/// A session that lasted this long resets the backoff and the round.
pub const STABLE: Duration = Duration::from_secs(60);
/// The first wait's ceiling, and every in-round wait's.
const BASE: Duration = Duration::from_secs(1);
/// The longest wait between rounds.
const CAP: Duration = Duration::from_secs(60);

/// The agent's masters and its place among them.
#[derive(Clone, Debug)]
pub struct MasterList {
    /// `HOST:PORT` entries, in the configured order; never empty.
    addrs: Vec<String>,
    /// The entry tried now, or connected to.
    at: usize,
    /// Failures since the start or the last stable session.
    failures: u32,
    backoff: Backoff,
}

/// Where to go after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// The master to try next (the same one when there is only one).
    pub to: String,
    /// How long to wait before trying it.
    pub delay: Duration,
    /// The whole list failed since the start or the last stable session:
    /// the wait is the growing between-rounds backoff.
    pub round_done: bool,
}

impl MasterList {
    /// A list starting at its first entry; `None` if `addrs` is empty
    /// (settings never are: [`super::settings::AgentSettings::load`]
    /// refuses them).
    pub fn new(addrs: Vec<String>) -> Option<MasterList> {
        if addrs.is_empty() {
            return None;
        }
        Some(MasterList {
            addrs,
            at: 0,
            failures: 0,
            backoff: Backoff::new(BASE, CAP),
        })
    }

    /// The master to try now (or connected to).
    pub fn current(&self) -> &str {
        self.addrs.get(self.at).map_or("", String::as_str)
    }

    /// Every entry, in order.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The current master failed after a session of `lasted` (zero: it was
    /// never reached): moves to the next entry and says how long to wait,
    /// given a uniform `random` number.
    pub fn failed(&mut self, lasted: Duration, random: u32) -> Move {
        if lasted >= STABLE {
            self.backoff.reset();
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.at = (self.at + 1) % self.addrs.len();
        let n = u32::try_from(self.addrs.len()).unwrap_or(u32::MAX);
        let round_done = self.failures.is_multiple_of(n);
        let delay = if round_done {
            self.backoff.next_with(random)
        } else {
            jitter(BASE, random)
        };
        Move {
            to: self.current().to_string(),
            delay,
            round_done,
        }
    }

    /// Failures since the start or the last stable session.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Takes a new list (SIGHUP): the current master keeps its place if
    /// the new list has it (returns true); otherwise the list starts over
    /// at its first entry. An empty list is ignored (returns false).
    pub fn relist(&mut self, addrs: Vec<String>) -> bool {
        if addrs.is_empty() {
            return false;
        }
        let kept = addrs.iter().position(|a| a == self.current());
        self.at = kept.unwrap_or(0);
        self.addrs = addrs;
        if kept.is_none() {
            self.failures = 0;
            self.backoff.reset();
        }
        kept.is_some()
    }
}

/// A uniform wait in `[0, ceiling]`.
fn jitter(ceiling: Duration, random: u32) -> Duration {
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX / 2);
    Duration::from_millis((u64::from(random) * (ms.saturating_add(1))) >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(addrs: &[&str]) -> MasterList {
        MasterList::new(addrs.iter().map(|a| a.to_string()).collect()).unwrap()
    }

    #[test]
    fn empty_is_refused() {
        assert!(MasterList::new(Vec::new()).is_none());
    }

    #[test]
    fn round_robin_from_the_failed_one() {
        let mut l = list(&["a:1", "b:1", "c:1"]);
        assert_eq!(l.current(), "a:1");
        assert_eq!(l.failed(Duration::ZERO, 0).to, "b:1");
        assert_eq!(l.failed(Duration::ZERO, 0).to, "c:1");
        assert_eq!(l.failed(Duration::ZERO, 0).to, "a:1", "wraps around");
        // Connected to c later: its failure moves on to a, not back to
        // the first master the agent had tried.
        let mut l = list(&["a:1", "b:1", "c:1"]);
        l.failed(Duration::ZERO, 0);
        l.failed(Duration::ZERO, 0);
        assert_eq!(l.current(), "c:1");
        assert_eq!(l.failed(Duration::from_secs(3600), 0).to, "a:1");
    }

    #[test]
    fn sticks_while_nothing_fails() {
        // No call but `failed` moves it: a healthy session with b stays
        // with b whatever a does (there is no "back to the first").
        let mut l = list(&["a:1", "b:1"]);
        l.failed(Duration::ZERO, 0);
        assert_eq!(l.current(), "b:1");
        for _ in 0..10 {
            assert_eq!(l.current(), "b:1");
        }
    }

    #[test]
    fn in_round_waits_are_short_rounds_back_off() {
        let mut l = list(&["a:1", "b:1"]);
        let max = u32::MAX;
        // a fails: b is tried within the base (1 s), jittered.
        let m = l.failed(Duration::ZERO, max);
        assert_eq!((m.delay, m.round_done), (BASE, false));
        // b fails too: a round is done, the backoff starts (ceiling 1 s).
        let m = l.failed(Duration::ZERO, max);
        assert_eq!((m.delay, m.round_done), (Duration::from_secs(1), true));
        // Rounds grow: 2 s, 4 s, ... up to the cap; in-round waits stay
        // within the base.
        let mut round_waits = Vec::new();
        for _ in 0..16 {
            let m = l.failed(Duration::ZERO, max);
            if m.round_done {
                round_waits.push(m.delay.as_secs());
            } else {
                assert!(m.delay <= BASE, "{m:?}");
            }
        }
        assert_eq!(round_waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        // Full jitter: the same state with random 0 waits nothing.
        assert_eq!(l.failed(Duration::ZERO, 0).delay, Duration::ZERO);
    }

    #[test]
    fn a_single_master_backs_off_as_before() {
        let mut l = list(&["a:1"]);
        let waits: Vec<u64> = (0..8)
            .map(|_| {
                let m = l.failed(Duration::ZERO, u32::MAX);
                assert_eq!(m.to, "a:1");
                assert!(m.round_done);
                m.delay.as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn a_stable_session_starts_over() {
        let mut l = list(&["a:1", "b:1"]);
        for _ in 0..9 {
            l.failed(Duration::ZERO, u32::MAX);
        }
        assert_eq!(l.current(), "b:1");
        // b held for an hour, then failed: a gets an in-round wait, and
        // the next round's backoff starts from the base again.
        let m = l.failed(Duration::from_secs(3600), u32::MAX);
        assert_eq!((m.to.as_str(), m.round_done), ("a:1", false));
        assert_eq!(l.failures(), 1);
        let m = l.failed(Duration::ZERO, u32::MAX);
        assert_eq!((m.delay, m.round_done), (Duration::from_secs(1), true));
        // Short sessions do not reset: a master that accepts and drops
        // the agent at once still ends rounds and grows the backoff.
        let m = l.failed(STABLE - Duration::from_millis(1), u32::MAX);
        assert!(!m.round_done);
        let m = l.failed(STABLE - Duration::from_millis(1), u32::MAX);
        assert_eq!((m.delay, m.round_done), (Duration::from_secs(2), true));
    }

    #[test]
    fn relist_keeps_the_current_master_if_listed() {
        let mut l = list(&["a:1", "b:1", "c:1"]);
        l.failed(Duration::ZERO, 0);
        assert_eq!(l.current(), "b:1");
        assert!(l.relist(vec!["c:1".into(), "b:1".into(), "d:1".into()]));
        assert_eq!(l.current(), "b:1");
        assert_eq!(
            l.failed(Duration::ZERO, 0).to,
            "d:1",
            "next in the new order"
        );
        assert!(!l.relist(vec!["x:1".into(), "y:1".into()]));
        assert_eq!(l.current(), "x:1", "starts over at the first");
        assert_eq!(l.failures(), 0);
        assert!(!l.relist(Vec::new()));
        assert_eq!(l.addrs(), ["x:1", "y:1"], "an empty list is ignored");
    }
}
