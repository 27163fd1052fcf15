//! A shard's deadlines: one min-heap of (when, connection) entries.
//!
//! A session's deadline (handshake timeout, then eviction) moves later with
//! every frame. Nothing is done per frame: a connection has at most one
//! live entry, armed only when its earliest deadline moves *earlier* than
//! that entry. When an entry comes due, the shard asks the connection what
//! is really due; usually nothing (the agent was heard since), and the
//! connection is armed again for its current deadline: one heap operation
//! per connection per eviction period, not per heartbeat.
//!
//! Entries left behind by an earlier arming, or by a connection that has
//! closed, are recognised when they come due (the connection's `armed`
//! time differs, or its slot's generation does) and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::mailbox::Token;

/// The heap (see the module docs).
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Token)>>,
}

impl Timers {
    /// Arms `token` for `at`.
    pub fn arm(&mut self, at: Instant, token: Token) {
        self.heap.push(Reverse((at, token)));
    }

    /// The earliest entry's time.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the next entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops entries `live` says are stale once they outnumber the live
    /// ones by far: a connection re-armed earlier and earlier (a resend
    /// after a join, a write stall) leaves one behind each time.
    pub fn compact(&mut self, live: usize, mut keep: impl FnMut(Instant, Token) -> bool) {
        if self.heap.len() > 64 && self.heap.len() > 4 * live {
            self.heap.retain(|Reverse((at, t))| keep(*at, *t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_due_in_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(t0 + Duration::from_secs(3), Token::new(3, 0));
        t.arm(t0 + Duration::from_secs(1), Token::new(1, 0));
        t.arm(t0 + Duration::from_secs(2), Token::new(2, 0));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert!(t.pop_due(t0).is_none());
        let due: Vec<usize> = std::iter::from_fn(|| t.pop_due(t0 + Duration::from_secs(2)))
            .map(|(_, tok)| tok.slot())
            .collect();
        assert_eq!(due, [1, 2]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn compaction_keeps_only_live_entries() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for i in 0..100 {
            t.arm(t0 + Duration::from_millis(i), Token::new(0, i as u32));
        }
        t.compact(50, |_, _| true);
        assert_eq!(t.len(), 100, "not yet 4x the live ones");
        t.compact(10, |_, tok| tok.generation() == 99);
        assert_eq!(t.len(), 1);
    }
}
