//! Push bookkeeping: which agents a push address names, room in their
//! outboxes, queueing an accepted push, handing due pushes to the agents'
//! connections, acks, and the status table `GET /api/pushes/{id}` reads.
//!
//! # One way to the connection
//! The registry owns every agent's [`Outbox`](crate::session::outbox::Outbox)
//! (it outlives connections: unacked pushes wait there for the next
//! session). Whenever something can make a push due — a push queued, an
//! ack that frees a slot of the in-flight window, a new session — the
//! registry takes the due pushes from the outbox (which marks them sent)
//! and hands them to the live connection as [`Cmd::Push`](crate::master::conn_handle::Cmd::Push), with the time
//! the outbox next wants a resend. The connection only sends what it is
//! handed.
//!
//! The single way back is the resend timer ([`Registry::resend_due`]):
//! the registry has no clock and no task of its own (it is a data
//! structure behind a mutex), and the resend time moves with every ack,
//! so the connection (its deadline in its shard's timers) asks when that
//! time passes. The answer comes the same way as every other push, as
//! `Cmd::Push`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::{Agent, Registry};
use crate::master::conn_handle::ConnId;
use crate::proto::Uuid;
use crate::proto::v2;
use crate::session::outbox::{OutboxLimits, OverflowKind};

/// Push statuses kept for `GET /api/pushes/{id}` once fully delivered.
pub const DONE_PUSHES_KEPT: usize = 10_000;

/// Delivery state of one push for one agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In the agent's outbox.
    Queued,
    /// Acked by the agent.
    Delivered,
    /// Removed without delivery (agent deleted).
    Cancelled,
    /// Never queued: the body is larger than the push inbox the agent
    /// announced (`inbox_bytes`), so it could never be taken.
    Undeliverable {
        /// The inbox size the agent announced, for the reason shown.
        inbox_bytes: u32,
    },
}

/// Status of a push, for the API.
#[derive(Clone, Debug)]
pub struct PushStatus {
    /// Id.
    pub id: u64,
    /// Accepted at, Unix ms.
    pub unix_ms: u64,
    /// Per-agent state.
    pub targets: Vec<(Uuid, Delivery)>,
}

/// The statuses of pushes accepted this run, for the API and for the push
/// log's compaction check.
#[derive(Debug, Default)]
pub(super) struct PushTable {
    statuses: BTreeMap<u64, PushStatus>,
    /// Fully delivered or cancelled pushes, oldest first: only the last
    /// [`DONE_PUSHES_KEPT`] keep their status.
    done: VecDeque<u64>,
    /// Pushes in `statuses` with a target still `Queued`: the push log's
    /// compaction check reads this on every ack, so it must be O(1).
    live: usize,
}

impl PushTable {
    /// Sets `uuid`'s state for `push_id`; returns whether no target of
    /// the push is queued any more.
    pub(super) fn mark(&mut self, push_id: u64, uuid: Uuid, d: Delivery) -> bool {
        let Some(st) = self.statuses.get_mut(&push_id) else {
            return false;
        };
        let was_live = st.targets.iter().any(|t| t.1 == Delivery::Queued);
        for t in &mut st.targets {
            if t.0 == uuid {
                t.1 = d;
            }
        }
        let done = st.targets.iter().all(|t| t.1 != Delivery::Queued);
        if was_live && done {
            self.live = self.live.saturating_sub(1);
        }
        if done {
            self.done.push_back(push_id);
            while self.done.len() > DONE_PUSHES_KEPT {
                if let Some(old) = self.done.pop_front() {
                    self.statuses.remove(&old);
                }
            }
        }
        done
    }

    /// Adds a target that was never queued (its state is final, so the
    /// push's liveness does not change). Nothing if the status is gone.
    pub(super) fn add_target(&mut self, push_id: u64, uuid: Uuid, d: Delivery) {
        if let Some(st) = self.statuses.get_mut(&push_id) {
            st.targets.push((uuid, d));
        }
    }

    /// Records a newly queued push.
    pub(super) fn insert(&mut self, status: PushStatus) {
        let live = status.targets.iter().any(|t| t.1 == Delivery::Queued);
        let old = self.statuses.insert(status.id, status);
        // Ids are unique, but a replaced status must not stay counted.
        if old.is_some_and(|o| o.targets.iter().any(|t| t.1 == Delivery::Queued)) {
            self.live = self.live.saturating_sub(1);
        }
        if live {
            self.live += 1;
        }
    }
}

impl Agent {
    /// Hands the pushes its outbox has due now (marking them sent) to its
    /// live connection, with the time the outbox next wants a resend.
    /// Nothing when offline: the outbox keeps them for the next session.
    pub(super) fn hand_out(&mut self, limits: &OutboxLimits, now: Instant) {
        let Some(conn) = &self.conn else { return };
        let due: Vec<Arc<v2::Push>> =
            std::iter::from_fn(|| self.outbox.next_due(now, limits)).collect();
        // Always set once something was marked sent.
        let Some(resend_at) = self.outbox.next_resend(limits) else {
            return;
        };
        if !due.is_empty() {
            conn.send_pushes(due, resend_at);
        }
    }
}

impl Registry {
    /// Agents a push address names: a uuid, `group:NAME` or `*`.
    pub fn resolve(&self, to: &str) -> Vec<Uuid> {
        if to == "*" {
            return self.agents.keys().copied().collect();
        }
        if let Some(g) = to.strip_prefix("group:") {
            return self
                .agents
                .values()
                .filter(|a| &*a.group == g)
                .map(|a| a.uuid)
                .collect();
        }
        Uuid::from_text(to)
            .filter(|u| self.agents.contains_key(u))
            .into_iter()
            .collect()
    }

    /// Checks that every target's outbox can take one more push of
    /// `body_len` bytes, for a batch of pushes checked before
    /// any of them is queued: `pending(uuid)` is the (messages, body bytes)
    /// already promised to that agent by earlier pushes of the batch, so
    /// that every push that passes still fits once the whole batch is
    /// queued. An unknown agent counts as an empty outbox (`enqueue`
    /// creates it).
    pub fn check_room_with(
        &self,
        targets: &[Uuid],
        body_len: usize,
        pending: impl Fn(&Uuid) -> (usize, usize),
    ) -> Result<(), OverflowKind> {
        for u in targets {
            let (msgs, bytes) = self
                .agents
                .get(u)
                .map_or((0, 0), |a| (a.outbox.len(), a.outbox.bytes()));
            let (more_msgs, more_bytes) = pending(u);
            // The same bounds, in the same order, as `Outbox::enqueue`.
            if msgs + more_msgs >= self.limits.max_msgs {
                return Err(OverflowKind::Messages);
            }
            if bytes + more_bytes + body_len > self.limits.max_bytes {
                return Err(OverflowKind::Bytes);
            }
        }
        Ok(())
    }

    /// Queues an accepted (already persisted) push for its targets and
    /// hands it at once to the online ones whose in-flight window has
    /// room. Targets without room are skipped and reported (only possible
    /// for recovered pushes; the API checks first).
    pub fn enqueue(
        &mut self,
        push: Arc<v2::Push>,
        targets: &[Uuid],
        mono: Instant,
        unix_ms: u64,
    ) -> Vec<Uuid> {
        let mut refused = Vec::new();
        let mut status = Vec::with_capacity(targets.len());
        let limits = self.limits;
        for u in targets {
            let empty = self.texts.empty();
            let Some((_, a)) = self.agents.get_or_insert_with(*u, || Agent::new(*u, empty)) else {
                // Only with 2^32 agents: refused like a full outbox.
                refused.push(*u);
                continue;
            };
            match a.outbox.enqueue(push.clone(), &limits) {
                Ok(()) => {
                    status.push((*u, Delivery::Queued));
                    a.hand_out(&limits, mono);
                }
                Err(_) => {
                    a.stats.rare_mut().pushes_refused += 1;
                    refused.push(*u);
                }
            }
        }
        self.counters.pushes_accepted += 1;
        if push.want_result {
            let queued: Vec<Uuid> = status.iter().map(|t| t.0).collect();
            self.await_answers(push.id, &queued);
        }
        self.pushes.insert(PushStatus {
            id: push.id,
            unix_ms,
            targets: status,
        });
        refused
    }

    /// An agent acked a push: the outbox forgets it and, if more are
    /// queued, hands out the ones the freed slot lets through. Returns the
    /// agent's uuid and whether the push is now delivered everywhere (so
    /// the push log can forget it).
    pub fn push_acked(
        &mut self,
        id: ConnId,
        ack: v2::PushAck,
        mono: Instant,
    ) -> Option<(Uuid, bool)> {
        let limits = self.limits;
        let a = self.agent_of_mut(id)?;
        a.outbox.ack(ack.id)?;
        match ack.status {
            v2::AckStatus::Delivered => a.stats.rare_mut().pushes_delivered += 1,
            v2::AckStatus::Duplicate => a.stats.rare_mut().pushes_duplicate += 1,
        }
        let uuid = a.uuid;
        if !a.outbox.is_empty() {
            a.hand_out(&limits, mono);
        }
        self.counters.pushes_delivered += 1;
        self.events
            .push(super::FleetEvent::PushDelivered(ack.id, uuid));
        let done = self.pushes.mark(ack.id, uuid, Delivery::Delivered);
        Some((uuid, done))
    }

    /// The resend time the connection `id` was handed has passed: hands it
    /// the pushes due again (as [`Cmd::Push`](crate::master::conn_handle::Cmd::Push),
    /// like any other) and returns when to ask next, `None` when nothing is
    /// in flight. The connection's only call into push bookkeeping (see the
    /// module docs for why it cannot be avoided).
    pub fn resend_due(&mut self, id: ConnId, now: Instant) -> Option<Instant> {
        let limits = self.limits;
        let a = self.agent_of_mut(id)?;
        a.hand_out(&limits, now);
        a.outbox.next_resend(&limits)
    }

    /// A push's status.
    pub fn push_status(&self, id: u64) -> Option<&PushStatus> {
        self.pushes.statuses.get(&id)
    }

    /// Number of pushes with at least one target still queued: what
    /// `live_pushes().len()` would be, in O(1), so the push log can decide
    /// whether compaction is due without walking every outbox.
    pub fn live_push_count(&self) -> usize {
        self.pushes.live
    }

    /// Every undelivered push with its remaining targets (for push log
    /// compaction).
    pub fn live_pushes(&self) -> Vec<(Arc<v2::Push>, Vec<Uuid>)> {
        let mut by_id: BTreeMap<u64, (Arc<v2::Push>, Vec<Uuid>)> = BTreeMap::new();
        for a in self.agents.values() {
            for p in a.outbox.pushes() {
                by_id
                    .entry(p.id)
                    .or_insert_with(|| (p.clone(), Vec::new()))
                    .1
                    .push(a.uuid);
            }
        }
        by_id.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::super::tests::{addr, peer};
    use super::*;
    use crate::master::conn_handle::{Cmd, ConnHandle};

    /// The pushes a connection was handed, by id, and the last resend time.
    fn handed(cmds: VecDeque<Cmd>) -> (Vec<u64>, Option<Instant>) {
        let mut ids = Vec::new();
        let mut resend = None;
        for c in cmds {
            match c {
                Cmd::Push { push, resend_at } => {
                    ids.push(push.id);
                    resend = Some(resend_at);
                }
                other => panic!("not a push: {other:?}"),
            }
        }
        (ids, resend)
    }

    #[test]
    fn push_to_group_queue_ack_and_status() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let mut handles = Vec::new();
        for (i, (n, g)) in [("a", "x"), ("b", "x"), ("c", "y")].iter().enumerate() {
            let h = ConnHandle::new(i as u64);
            r.conn_opened(h.clone());
            r.joined(i as u64, &peer(n, g), addr(), t, 0);
            handles.push(h);
        }
        let targets = r.resolve("group:x");
        assert_eq!(targets.len(), 2);
        assert_eq!(r.resolve("*").len(), 3);
        assert_eq!(r.resolve("nobody"), vec![]);
        let p = Arc::new(v2::Push {
            id: 5,
            sender: "api".into(),
            group: "x".into(),
            body: b"hi".to_vec(),
            want_result: false,
        });
        assert!(r.enqueue(p, &targets, t, 0).is_empty());
        // Handed to both online targets at once, with the resend time.
        let resend = Some(t + r.limits.resend_after);
        assert_eq!(handed(handles[0].take()), (vec![5], resend));
        assert_eq!(handed(handles[1].take()), (vec![5], resend));
        assert!(handles[2].take().is_empty(), "not a target");
        // Asked before the resend time: in flight, not handed again.
        assert_eq!(r.resend_due(0, t), resend);
        assert!(handles[0].take().is_empty());
        let ack = v2::PushAck {
            id: 5,
            status: v2::AckStatus::Delivered,
        };
        assert_eq!(r.push_acked(0, ack, t).map(|x| x.1), Some(false));
        assert_eq!(r.push_acked(1, ack, t).map(|x| x.1), Some(true));
        assert!(r.push_acked(1, ack, t).is_none(), "a second ack is ignored");
        let st = r.push_status(5).unwrap();
        assert!(st.targets.iter().all(|t| t.1 == Delivery::Delivered));
        assert!(r.live_pushes().is_empty());
        assert_eq!(r.resend_due(0, t), None, "nothing in flight");
    }

    #[test]
    fn window_resend_and_reconnect_hand_out_in_order() {
        let t = Instant::now();
        let limits = OutboxLimits {
            max_in_flight: 2,
            ..OutboxLimits::default()
        };
        let mut r = Registry::new(limits, t);
        let h = ConnHandle::new(1);
        r.conn_opened(h.clone());
        r.joined(1, &peer("a", "g"), addr(), t, 0);
        let u = peer("a", "g").uuid;
        for id in 1..=3 {
            let p = v2::Push {
                id,
                sender: String::new(),
                group: String::new(),
                body: vec![],
                want_result: false,
            };
            r.enqueue(Arc::new(p), &[u], t, 0);
        }
        let resend = t + limits.resend_after;
        // The window holds two; the third waits for an ack.
        assert_eq!(handed(h.take()), (vec![1, 2], Some(resend)));
        let ack = |id| v2::PushAck {
            id,
            status: v2::AckStatus::Delivered,
        };
        r.push_acked(1, ack(1), t);
        assert_eq!(handed(h.take()), (vec![3], Some(resend)));
        // Unacked past the resend time: handed again, oldest first.
        let later = resend;
        let next = Some(later + limits.resend_after);
        assert_eq!(r.resend_due(1, later), next);
        // Still waiting on the old connection when a new session joins:
        // withdrawn there (it is told to close), and the new session gets
        // everything unacked.
        let h2 = ConnHandle::new(2);
        r.conn_opened(h2.clone());
        r.joined(2, &peer("a", "g"), addr(), later, 0);
        let old: Vec<_> = h.take().into_iter().collect();
        assert!(
            matches!(old.as_slice(), [Cmd::Kick(v2::CloseCode::Replaced, _)]),
            "{old:?}"
        );
        assert_eq!(handed(h2.take()), (vec![2, 3], next));
    }

    #[test]
    fn room_check_names_the_bound() {
        let t = Instant::now();
        let limits = OutboxLimits {
            max_msgs: 1,
            max_bytes: 10,
            ..OutboxLimits::default()
        };
        let mut r = Registry::new(limits, t);
        let u = Uuid::from_text("a").unwrap();
        r.ensure_agent(u);
        assert!(r.check_room_with(&[u], 11, |_| (0, 0)).is_err());
        assert!(r.check_room_with(&[u], 10, |_| (0, 0)).is_ok());
        let p = Arc::new(v2::Push {
            id: 1,
            sender: String::new(),
            group: String::new(),
            body: vec![],
            want_result: false,
        });
        r.enqueue(p, &[u], t, 0);
        assert_eq!(
            r.check_room_with(&[u], 0, |_| (0, 0)),
            Err(OverflowKind::Messages)
        );
    }

    #[test]
    fn room_with_pending_counts_the_batch() {
        let limits = OutboxLimits {
            max_msgs: 3,
            max_bytes: 10,
            ..OutboxLimits::default()
        };
        let t = Instant::now();
        let mut r = Registry::new(limits, t);
        let u = Uuid::from_text("a").unwrap();
        let unknown = Uuid::from_text("b").unwrap();
        r.ensure_agent(u);
        let p = Arc::new(v2::Push {
            id: 1,
            sender: String::new(),
            group: String::new(),
            body: vec![0; 4],
            want_result: false,
        });
        r.enqueue(p, &[u], t, 0);
        assert_eq!(r.check_room_with(&[u], 2, |_| (1, 2)), Ok(()));
        assert_eq!(
            r.check_room_with(&[u], 0, |_| (2, 0)),
            Err(OverflowKind::Messages)
        );
        assert_eq!(
            r.check_room_with(&[u], 3, |_| (1, 4)),
            Err(OverflowKind::Bytes)
        );
        // An agent not known yet is an empty outbox, bounds still apply.
        assert_eq!(r.check_room_with(&[unknown], 10, |_| (0, 0)), Ok(()));
        assert_eq!(
            r.check_room_with(&[unknown], 11, |_| (0, 0)),
            Err(OverflowKind::Bytes)
        );
    }

    #[test]
    fn live_push_count_follows_acks_and_forget() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        for (i, n) in ["a", "b"].iter().enumerate() {
            r.conn_opened(ConnHandle::new(i as u64));
            r.joined(i as u64, &peer(n, "g"), addr(), t, 0);
        }
        let c = Uuid::from_text("c").unwrap();
        r.ensure_agent(c);
        let both = r.resolve("group:g");
        let push = |id| {
            Arc::new(v2::Push {
                id,
                sender: String::new(),
                group: String::new(),
                body: vec![1],
                want_result: false,
            })
        };
        r.enqueue(push(1), &both, t, 0);
        r.enqueue(push(2), &both[..1], t, 0);
        r.enqueue(push(3), &[c], t, 0);
        let check = |r: &Registry, n: usize| {
            assert_eq!(r.live_push_count(), n);
            assert_eq!(r.live_pushes().len(), n);
        };
        check(&r, 3);
        let ack = |id| v2::PushAck {
            id,
            status: v2::AckStatus::Delivered,
        };
        r.push_acked(0, ack(1), t);
        check(&r, 3);
        r.push_acked(1, ack(1), t);
        check(&r, 2);
        // An ack for a push that is not queued changes nothing.
        r.push_acked(1, ack(2), t);
        check(&r, 2);
        r.push_acked(0, ack(2), t);
        check(&r, 1);
        r.forget(&c);
        check(&r, 0);
    }
}
