//! Whether a push fits the inboxes of its targets.
//!
//! An agent refuses (does not ack) a push its inbox cannot hold, and the
//! master resends unacked pushes: a push larger than the whole inbox was
//! accepted with 202 and resent forever. Agents now announce their inbox
//! in their Hello ([`v2::InboxLimits`]); the API asks here before
//! accepting a push, refuses it when no target could ever take it, and
//! marks the targets too small for it undeliverable (with the reason in
//! `GET /api/pushes/{id}`) instead of queueing it for them. Agents that
//! announced nothing (older ones) are assumed to fit, as before.

use super::{Delivery, Registry};
use crate::proto::Uuid;
use crate::proto::v2;

/// A target whose announced inbox is smaller than a push body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooSmall {
    /// The agent.
    pub uuid: Uuid,
    /// The inbox size it announced, bytes.
    pub inbox_bytes: u32,
}

impl Registry {
    /// The targets whose announced inbox cannot hold a body of `len`
    /// bytes, in `targets` order.
    pub fn inbox_too_small(&self, targets: &[Uuid], len: usize) -> Vec<TooSmall> {
        targets
            .iter()
            .filter_map(|u| {
                let limits: v2::InboxLimits = self.agents.get(u)?.inbox?;
                (len > limits.bytes as usize).then_some(TooSmall {
                    uuid: *u,
                    inbox_bytes: limits.bytes,
                })
            })
            .collect()
    }

    /// Records `too_small` as undeliverable targets of the accepted push
    /// `id`, so its status says why they will never get it.
    pub fn mark_undeliverable(&mut self, id: u64, too_small: &[TooSmall]) {
        for t in too_small {
            let d = Delivery::Undeliverable {
                inbox_bytes: t.inbox_bytes,
            };
            self.pushes.add_target(id, t.uuid, d);
        }
    }
}

/// The 413 answer when no target could take a push of `len` bytes.
pub fn refusal(too_small: &[TooSmall], len: usize) -> String {
    let names: Vec<String> = too_small
        .iter()
        .take(20)
        .map(|t| format!("{} ({} bytes)", t.uuid, t.inbox_bytes))
        .collect();
    let more = too_small.len().saturating_sub(names.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "push body of {len} bytes is larger than the push inbox of {}{more}: it could never be delivered",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::super::tests::{addr, peer};
    use super::*;
    use crate::master::conn_handle::ConnHandle;
    use crate::session::outbox::OutboxLimits;

    #[test]
    fn targets_too_small_are_named_and_marked_others_are_not() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let inbox = |bytes| {
            Some(v2::InboxLimits {
                messages: 10,
                bytes,
            })
        };
        for (i, (name, limit)) in [("small", inbox(100)), ("big", inbox(1000)), ("old", None)]
            .into_iter()
            .enumerate()
        {
            r.conn_opened(ConnHandle::new(i as u64));
            let mut p = peer(name, "g");
            p.inbox = limit;
            r.joined(i as u64, &p, addr(), t, 0);
        }
        let all = r.resolve("group:g");
        let small = peer("small", "g").uuid;
        let want = vec![TooSmall {
            uuid: small,
            inbox_bytes: 100,
        }];
        assert_eq!(r.inbox_too_small(&all, 101), want);
        assert_eq!(r.inbox_too_small(&all, 100), vec![], "exactly full fits");
        assert_eq!(r.inbox_too_small(&all, 1001).len(), 2, "old agents fit");
        assert!(refusal(&want, 101).contains("small (100 bytes)"));
        // Marked undeliverable beside the queued targets, with the limit.
        let rest: Vec<Uuid> = all.iter().copied().filter(|u| *u != small).collect();
        let p = v2::Push {
            id: 9,
            sender: String::new(),
            group: "g".into(),
            body: vec![0; 101],
        };
        r.enqueue(Arc::new(p), &rest, t, 0);
        r.mark_undeliverable(9, &want);
        let st = r.push_status(9).unwrap();
        assert_eq!(st.targets.len(), 3);
        assert!(
            st.targets
                .contains(&(small, Delivery::Undeliverable { inbox_bytes: 100 }))
        );
        assert_eq!(r.live_push_count(), 1, "still queued for the others");
    }
}
