//! An agent's push queue that costs one pointer while empty: most agents
//! have no push waiting most of the time, and an empty [`Outbox`] still
//! takes 40 bytes inline (issue 12: idle bytes per agent). The outbox is
//! allocated on the first push and freed again once it empties.

use std::sync::Arc;
use std::time::Instant;

use crate::proto::v2::Push;
use crate::session::outbox::{Outbox, OutboxLimits, Overflow};

/// [`Outbox`]'s interface over an outbox that exists only while pushes
/// wait.
#[derive(Debug, Default)]
pub struct LazyOutbox(Option<Box<Outbox>>);

impl LazyOutbox {
    /// Queues a push, or hands it back if a bound would break.
    pub fn enqueue(&mut self, push: Arc<Push>, l: &OutboxLimits) -> Result<(), Overflow> {
        let r = self.0.get_or_insert_with(Box::default).enqueue(push, l);
        self.free_if_empty();
        r
    }

    /// The next push to send now ([`Outbox::next_due`]).
    pub fn next_due(&mut self, now: Instant, l: &OutboxLimits) -> Option<Arc<Push>> {
        self.0.as_mut()?.next_due(now, l)
    }

    /// When the earliest unacked push becomes due for a resend.
    pub fn next_resend(&self, l: &OutboxLimits) -> Option<Instant> {
        self.0.as_ref()?.next_resend(l)
    }

    /// The agent acked `id` ([`Outbox::ack`]).
    pub fn ack(&mut self, id: u64) -> Option<(Arc<Push>, u32)> {
        let r = self.0.as_mut()?.ack(id);
        self.free_if_empty();
        r
    }

    /// The connection is gone: everything sent and unacked is due again.
    pub fn disconnected(&mut self) {
        if let Some(o) = &mut self.0 {
            o.disconnected();
        }
    }

    /// Removes a push without an ack (operator cancel, agent deleted).
    pub fn remove(&mut self, id: u64) -> Option<Arc<Push>> {
        let r = self.0.as_mut()?.remove(id);
        self.free_if_empty();
        r
    }

    /// Queued pushes.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |o| o.len())
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|o| o.is_empty())
    }

    /// Queued body bytes.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |o| o.bytes())
    }

    /// The queued pushes, oldest first.
    pub fn pushes(&self) -> impl Iterator<Item = &Arc<Push>> + '_ {
        self.0.iter().flat_map(|o| o.pushes())
    }

    /// Ids queued, oldest first, with whether each is in flight.
    pub fn ids(&self) -> impl Iterator<Item = (u64, bool)> + '_ {
        self.0.iter().flat_map(|o| o.ids())
    }

    fn free_if_empty(&mut self) {
        if self.0.as_ref().is_some_and(|o| o.is_empty()) {
            self.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(id: u64) -> Arc<Push> {
        Arc::new(Push {
            id,
            sender: String::new(),
            group: String::new(),
            body: b"x".to_vec(),
            want_result: false,
        })
    }

    #[test]
    fn holds_an_outbox_only_while_pushes_wait() {
        let l = OutboxLimits::default();
        let mut o = LazyOutbox::default();
        assert!(o.is_empty() && o.0.is_none());
        o.enqueue(push(1), &l).unwrap();
        o.enqueue(push(2), &l).unwrap();
        assert_eq!((o.len(), o.bytes()), (2, 2));
        assert_eq!(o.next_due(Instant::now(), &l).map(|p| p.id), Some(1));
        assert_eq!(o.ids().collect::<Vec<_>>(), [(1, true), (2, false)]);
        assert!(o.ack(1).is_some());
        assert!(o.0.is_some());
        assert!(o.remove(2).is_some());
        assert!(o.is_empty() && o.0.is_none(), "freed once empty");
        assert!(o.ack(3).is_none());
    }

    #[test]
    fn a_refused_first_push_leaves_nothing_allocated() {
        let l = OutboxLimits {
            max_bytes: 0,
            ..OutboxLimits::default()
        };
        let mut o = LazyOutbox::default();
        assert!(o.enqueue(push(1), &l).is_err());
        assert!(o.0.is_none());
    }
}
