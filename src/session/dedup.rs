//! The agent's memory of push ids it already delivered, so a resend after a
//! reconnect (at-least-once delivery) reaches the local consumer once.

use std::collections::VecDeque;

/// How many delivered ids are remembered by default. The master resends
/// only unacked pushes, and an agent acks within a few at a time, so the
/// window only has to cover pushes delivered but whose ack was lost with
/// the connection.
pub const DEFAULT_WINDOW: usize = 1024;

/// A bounded set of recently delivered push ids; the oldest is forgotten
/// first. Lookups are linear, which at this size beats hashing on a router.
#[derive(Clone, Debug)]
pub struct RecentIds {
    ids: VecDeque<u64>,
    cap: usize,
}

impl RecentIds {
    /// Remembers at most `cap` ids (at least 1).
    pub fn new(cap: usize) -> RecentIds {
        RecentIds {
            ids: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Whether `id` was delivered recently.
    pub fn contains(&self, id: u64) -> bool {
        self.ids.iter().rev().any(|&x| x == id)
    }

    /// Records a delivered id; returns false if it was already known.
    pub fn insert(&mut self, id: u64) -> bool {
        if self.contains(id) {
            return false;
        }
        if self.ids.len() == self.cap {
            self.ids.pop_front();
        }
        self.ids.push_back(id);
        true
    }

    /// Ids remembered, oldest first (to persist across restarts).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.ids.iter().copied()
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_oldest_forgotten() {
        let mut r = RecentIds::new(3);
        assert!(r.insert(1) && r.insert(2) && r.insert(3));
        assert!(!r.insert(2));
        assert!(r.insert(4));
        assert!(!r.contains(1));
        assert!(r.contains(2) && r.contains(4));
        assert_eq!(r.iter().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(RecentIds::new(0).cap, 1);
    }
}
