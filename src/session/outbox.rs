//! The master's per-agent queue of pushes awaiting acknowledgement.
//!
//! Delivery is at-least-once: a push leaves the outbox only when the agent
//! acks it, which it does after its local consumer took it. A push sent but
//! not acked is sent again after `resend_after` (the agent's inbox was full)
//! and after every reconnect. The outbox is bounded in messages and bytes;
//! a push that does not fit is handed back with the reason, never dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::v2::Push;

/// Bounds and timing of an outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most pushes queued for one agent.
    pub max_msgs: usize,
    /// Most body bytes queued for one agent.
    pub max_bytes: usize,
    /// Most pushes sent and not yet acked at once.
    pub max_in_flight: usize,
    /// Resend a push not acked within this long.
    pub resend_after: Duration,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_msgs: 1000,
            max_bytes: 8 << 20,
            max_in_flight: 32,
            resend_after: Duration::from_secs(30),
        }
    }
}

/// Which bound a rejected push would have broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowKind {
    /// Too many queued pushes (the API answers 429).
    Messages,
    /// Too many queued bytes (the API answers 507).
    Bytes,
}

/// A push the outbox could not take, handed back with the reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow {
    /// The bound that was hit.
    pub kind: OverflowKind,
    /// The push, unchanged.
    pub push: Arc<Push>,
}

#[derive(Debug)]
struct Entry {
    push: Arc<Push>,
    sent_at: Option<Instant>,
    sends: u32,
}

/// Pushes for one agent, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl Outbox {
    /// An empty outbox (allocates nothing until the first push).
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Queues a push, or hands it back if a bound would break.
    pub fn enqueue(&mut self, push: Arc<Push>, l: &OutboxLimits) -> Result<(), Overflow> {
        if self.entries.len() >= l.max_msgs {
            return Err(Overflow {
                kind: OverflowKind::Messages,
                push,
            });
        }
        if self.bytes + push.body.len() > l.max_bytes {
            return Err(Overflow {
                kind: OverflowKind::Bytes,
                push,
            });
        }
        self.bytes += push.body.len();
        self.entries.push_back(Entry {
            push,
            sent_at: None,
            sends: 0,
        });
        Ok(())
    }

    /// The next push to send now, oldest first, within the in-flight
    /// window; it is marked as sent at `now`.
    pub fn next_due(&mut self, now: Instant, l: &OutboxLimits) -> Option<Arc<Push>> {
        let waiting = |e: &Entry| e.sent_at.is_some_and(|t| now < t + l.resend_after);
        let in_flight = self.entries.iter().filter(|e| waiting(e)).count();
        if in_flight >= l.max_in_flight {
            return None;
        }
        let e = self.entries.iter_mut().find(|e| !waiting(e))?;
        e.sent_at = Some(now);
        e.sends = e.sends.saturating_add(1);
        Some(e.push.clone())
    }

    /// When the earliest unacked push becomes due for a resend.
    pub fn next_resend(&self, l: &OutboxLimits) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| e.sent_at)
            .min()
            .map(|t| t + l.resend_after)
    }

    /// The agent acked `id`: forget it. Returns the push and how many
    /// times it was sent, or `None` for an id not queued (a late duplicate
    /// ack, harmless).
    pub fn ack(&mut self, id: u64) -> Option<(Arc<Push>, u32)> {
        let i = self.entries.iter().position(|e| e.push.id == id)?;
        let e = self.entries.remove(i)?;
        self.bytes -= e.push.body.len();
        if self.entries.is_empty() {
            self.entries = VecDeque::new();
        }
        Some((e.push, e.sends))
    }

    /// The connection is gone: everything sent and unacked is due again
    /// on the next connection.
    pub fn disconnected(&mut self) {
        for e in &mut self.entries {
            e.sent_at = None;
        }
    }

    /// Removes a push without an ack (operator cancel, agent deleted).
    pub fn remove(&mut self, id: u64) -> Option<Arc<Push>> {
        self.ack(id).map(|(p, _)| p)
    }

    /// Queued pushes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queued body bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The queued pushes, oldest first.
    pub fn pushes(&self) -> impl Iterator<Item = &Arc<Push>> + '_ {
        self.entries.iter().map(|e| &e.push)
    }

    /// Ids queued, oldest first, with whether each is in flight.
    pub fn ids(&self) -> impl Iterator<Item = (u64, bool)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.push.id, e.sent_at.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(id: u64, len: usize) -> Arc<Push> {
        Arc::new(Push {
            id,
            sender: "t".into(),
            group: String::new(),
            body: vec![b'x'; len],
            want_result: false,
        })
    }

    fn limits() -> OutboxLimits {
        OutboxLimits {
            max_msgs: 3,
            max_bytes: 100,
            max_in_flight: 2,
            resend_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn bounds_hand_the_push_back() {
        let l = limits();
        let mut o = Outbox::new();
        o.enqueue(push(1, 60), &l).unwrap();
        let e = o.enqueue(push(2, 41), &l).unwrap_err();
        assert_eq!((e.kind, e.push.id), (OverflowKind::Bytes, 2));
        o.enqueue(push(2, 40), &l).unwrap();
        o.enqueue(push(3, 0), &l).unwrap();
        let e = o.enqueue(push(4, 0), &l).unwrap_err();
        assert_eq!(e.kind, OverflowKind::Messages);
        assert_eq!((o.len(), o.bytes()), (3, 100));
    }

    #[test]
    fn window_resend_ack_and_reconnect() {
        let l = limits();
        let t0 = Instant::now();
        let mut o = Outbox::new();
        for id in 1..=3 {
            o.enqueue(push(id, 1), &l).unwrap();
        }
        // Window of 2 in flight.
        assert_eq!(o.next_due(t0, &l).unwrap().id, 1);
        assert_eq!(o.next_due(t0, &l).unwrap().id, 2);
        assert!(o.next_due(t0, &l).is_none());
        assert_eq!(o.next_resend(&l), Some(t0 + l.resend_after));
        // Ack of 1 opens the window for 3.
        assert_eq!(o.ack(1).map(|(p, n)| (p.id, n)), Some((1, 1)));
        assert!(o.ack(1).is_none(), "a duplicate ack is harmless");
        assert_eq!(o.next_due(t0, &l).unwrap().id, 3);
        // Not acked within resend_after: 2 is resent, oldest first.
        let t1 = t0 + l.resend_after;
        assert_eq!(o.next_due(t1, &l).unwrap().id, 2);
        assert_eq!(o.next_due(t1, &l).unwrap().id, 3);
        // Reconnect: all unacked due again at once, in order.
        o.disconnected();
        assert_eq!(o.next_due(t1, &l).unwrap().id, 2);
        assert_eq!(o.ack(2).map(|(_, n)| n), Some(3));
        assert_eq!(o.ids().collect::<Vec<_>>(), [(3, false)]);
    }
}
