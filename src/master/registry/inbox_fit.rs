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
//!
//! Pushes queued before the agent said how much it takes (its first
//! session, or recovered from the push log after a restart) are checked
//! when it joins ([`drop_unfit`]).

use super::pushes::PushTable;
use super::{Agent, Delivery, Registry};
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

    /// Counts a push refused because no target's inbox could hold it
    /// (`pushes.refused.inbox_too_small` in `/api/status`).
    pub fn push_refused_for_inbox(&mut self) {
        *self
            .counters
            .pushes_refused
            .entry("inbox_too_small")
            .or_default() += 1;
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

/// Takes out of `a`'s outbox the pushes its announced inbox can never
/// hold and marks them undeliverable: queued before the agent announced
/// its inbox, they would otherwise be resent forever. Called on every
/// join, once the announcement is stored. Nothing is written to the push
/// log: its compaction keeps only what is in an outbox, and a push
/// recovered before that is dropped again on the next join.
pub(super) fn drop_unfit(a: &mut Agent, table: &mut PushTable) {
    let Some(limits) = a.inbox else { return };
    let unfit: Vec<u64> = a
        .outbox
        .pushes()
        .filter(|p| p.body.len() > limits.bytes as usize)
        .map(|p| p.id)
        .collect();
    for id in unfit {
        a.outbox.remove(id);
        let d = Delivery::Undeliverable {
            inbox_bytes: limits.bytes,
        };
        table.mark(id, a.uuid, d);
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

    #[test]
    fn pushes_queued_before_the_announcement_are_dropped_when_it_comes() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let u = peer("late", "g").uuid;
        // Queued while the agent had never connected (a device key only).
        r.ensure_agent(u);
        for (id, len) in [(1, 50), (2, 500)] {
            let p = v2::Push {
                id,
                sender: String::new(),
                group: String::new(),
                body: vec![0; len],
            };
            r.enqueue(Arc::new(p), &[u], t, 0);
        }
        let h = ConnHandle::new(1);
        r.conn_opened(h.clone());
        let mut p = peer("late", "g");
        p.inbox = Some(v2::InboxLimits {
            messages: 10,
            bytes: 100,
        });
        r.joined(1, &p, addr(), t, 0);
        // Only the one that fits is handed out; the other is final.
        let handed: Vec<u64> = h
            .take()
            .into_iter()
            .filter_map(|c| match c {
                crate::master::conn_handle::Cmd::Push { push, .. } => Some(push.id),
                _ => None,
            })
            .collect();
        assert_eq!(handed, vec![1]);
        assert_eq!(
            r.push_status(2).unwrap().targets,
            vec![(u, Delivery::Undeliverable { inbox_bytes: 100 })]
        );
        assert_eq!(r.agent(&u).unwrap().outbox.len(), 1);
        assert_eq!(r.live_push_count(), 1);
    }
}
