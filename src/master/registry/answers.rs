//! Push results: whose answer each push still waits for, the answers
//! stored, and the bounds on them.
//!
//! # Path of an answer
//! An agent's `PushResult` reaches [`Registry::check_answer`] from its
//! connection's shard. Only an answer the push asked *this* agent for is
//! taken, and only while the agent's stored bytes stay within
//! [`AnswerLimits::agent_bytes`]; anything else is refused, counted in
//! `push_results_refused{reason}`, and confirmed all the same, so a
//! confused or hostile agent stops resending and nothing is closed. A
//! taken answer is reserved here (its bytes count at once, so a flood
//! cannot outrun the disk) and queued for the push log; once its record is
//! synced, [`Registry::answers_stored`] shows it, raises `push_answered`
//! and has the agent's connection confirm it.
//!
//! # Retention
//! At most [`AnswerLimits::keep`] answers are kept, none older than
//! [`AnswerLimits::max_age_ms`] (checked whenever answers are stored);
//! the push log's compaction writes only what is kept here.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::{FleetEvent, Registry};
use crate::master::conn_handle::{Cmd, ConnId};
use crate::master::push_log::{Answer, KeptAnswers};
use crate::proto::Uuid;
use crate::proto::v2;

/// Bounds on stored push results (master settings `push_results_keep`,
/// `push_results_max_age`, `push_results_agent_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerLimits {
    /// Most answers kept; the oldest go first.
    pub keep: usize,
    /// Answers older than this (ms since stored) are dropped; 0: no limit.
    pub max_age_ms: u64,
    /// Most output bytes stored (and being stored) per agent: one agent's
    /// flood of large results cannot fill the master's memory or disk.
    pub agent_bytes: usize,
}

impl Default for AnswerLimits {
    fn default() -> Self {
        AnswerLimits {
            keep: 10_000,
            max_age_ms: 7 * 24 * 3600 * 1000,
            agent_bytes: 1 << 20,
        }
    }
}

/// What became of an agent's answer at [`Registry::check_answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerCheck {
    /// Taken: store it in the push log for this agent.
    Take(Uuid),
    /// Already stored (a resend after a lost confirmation): confirm again.
    Stored,
    /// Being stored now (a resend racing the disk): say nothing, the
    /// confirmation follows.
    Storing,
    /// Refused for good, counted under this reason: confirm so the agent
    /// stops resending.
    Refused(&'static str),
}

/// The answers table, part of the [`Registry`].
#[derive(Debug, Default)]
pub(super) struct AnswerTable {
    /// Push id → agents whose answer is still wanted.
    awaiting: BTreeMap<u64, Vec<Uuid>>,
    /// Answers taken and not yet synced.
    storing: BTreeSet<(u64, Uuid)>,
    /// Push id → answers stored.
    stored: BTreeMap<u64, Vec<(Uuid, Answer)>>,
    /// Stored answers, oldest first (for `keep` and `max_age_ms`).
    order: VecDeque<(u64, Uuid)>,
    /// Output bytes stored or being stored, per agent.
    bytes: HashMap<Uuid, usize>,
}

impl AnswerTable {
    /// Shows a stored answer and queues it for retention (oldest first);
    /// its bytes are already charged to the agent.
    fn keep(&mut self, id: u64, uuid: Uuid, answer: Answer) {
        self.stored.entry(id).or_default().push((uuid, answer));
        self.order.push_back((id, uuid));
    }

    fn unreserve(&mut self, uuid: &Uuid, n: usize) {
        if let Some(b) = self.bytes.get_mut(uuid) {
            *b = b.saturating_sub(n);
            if *b == 0 {
                self.bytes.remove(uuid);
            }
        }
    }

    /// Drops the oldest answers past `keep` and those older than
    /// `max_age_ms` at `now_ms`.
    fn prune(&mut self, limits: &AnswerLimits, now_ms: u64) {
        while let Some(&(id, uuid)) = self.order.front() {
            let Some(list) = self.stored.get(&id) else {
                self.order.pop_front();
                continue;
            };
            let at = list
                .iter()
                .find(|(u, _)| *u == uuid)
                .map_or(0, |(_, a)| a.stored_unix_ms);
            let too_old = limits.max_age_ms > 0 && now_ms.saturating_sub(at) > limits.max_age_ms;
            if self.order.len() <= limits.keep && !too_old {
                break;
            }
            self.order.pop_front();
            let mut freed = 0;
            if let Some(list) = self.stored.get_mut(&id) {
                list.retain(|(u, a)| {
                    let keep = *u != uuid;
                    if !keep {
                        freed = a.output.len();
                    }
                    keep
                });
                if list.is_empty() {
                    self.stored.remove(&id);
                }
            }
            self.unreserve(&uuid, freed);
        }
    }
}

impl Registry {
    /// Push `id` wants answers from `targets` (a new push, or one replayed
    /// from the push log).
    pub fn await_answers(&mut self, id: u64, targets: &[Uuid]) {
        if !targets.is_empty() {
            self.answers.awaiting.insert(id, targets.to_vec());
        }
        // Bounded like stored answers: the oldest pushes (lowest ids) stop
        // waiting first; a late answer to one is refused as not awaited.
        while self.answers.awaiting.len() > self.answer_limits.keep.max(1) {
            self.answers.awaiting.pop_first();
        }
    }

    /// Answers replayed from the push log at start.
    pub fn restore_answers(&mut self, answers: Vec<(u64, Uuid, Answer)>) {
        for (id, uuid, answer) in answers {
            *self.answers.bytes.entry(uuid).or_default() += answer.output.len();
            self.answers.keep(id, uuid, answer);
        }
    }

    /// An agent on connection `conn` answered: whether to store it (see
    /// the module docs). A taken answer's bytes are reserved until
    /// [`answers_stored`](Self::answers_stored) or
    /// [`answer_not_queued`](Self::answer_not_queued).
    pub fn check_answer(&mut self, conn: ConnId, r: &v2::PushResult) -> AnswerCheck {
        let Some(uuid) = self.uuid_of(conn) else {
            return self.refuse_answer("not_an_agent");
        };
        let t = &mut self.answers;
        if t.storing.contains(&(r.id, uuid)) {
            return AnswerCheck::Storing;
        }
        if t.stored
            .get(&r.id)
            .is_some_and(|l| l.iter().any(|(u, _)| *u == uuid))
        {
            return AnswerCheck::Stored;
        }
        if !t.awaiting.get(&r.id).is_some_and(|w| w.contains(&uuid)) {
            return self.refuse_answer("not_awaited");
        }
        let limit = self.answer_limits.agent_bytes;
        let used = t.bytes.get(&uuid).copied().unwrap_or(0);
        if r.output.len() > limit.saturating_sub(used) {
            // Still awaited: a smaller answer later (after older ones aged
            // out) could be taken; this one never will.
            return self.refuse_answer("agent_bytes");
        }
        *t.bytes.entry(uuid).or_default() += r.output.len();
        t.storing.insert((r.id, uuid));
        AnswerCheck::Take(uuid)
    }

    fn refuse_answer(&mut self, reason: &'static str) -> AnswerCheck {
        *self
            .counters
            .push_results_refused
            .entry(reason)
            .or_default() += 1;
        AnswerCheck::Refused(reason)
    }

    /// A taken answer could not be queued for the push log (queue full or
    /// thread gone): it is released, and the agent, unconfirmed, sends it
    /// again on its next connection.
    pub fn answer_not_queued(&mut self, id: u64, uuid: Uuid, bytes: usize) {
        self.answers.storing.remove(&(id, uuid));
        self.answers.unreserve(&uuid, bytes);
    }

    /// Answers whose records are synced: shown from now on, announced as
    /// `push_answered`, confirmed to their agents' connections; then the
    /// oldest are dropped past the retention limits.
    pub fn answers_stored(&mut self, answers: Vec<(u64, Uuid, Answer)>, now_ms: u64) {
        for (id, uuid, answer) in answers {
            self.answers.storing.remove(&(id, uuid));
            if let Some(w) = self.answers.awaiting.get_mut(&id) {
                w.retain(|u| *u != uuid);
                if w.is_empty() {
                    self.answers.awaiting.remove(&id);
                }
            }
            self.events
                .push(FleetEvent::PushAnswered(id, uuid, answer.exit));
            self.answers.keep(id, uuid, answer);
            self.counters.push_results_stored += 1;
            if let Some(conn) = self.agents.get(&uuid).and_then(|a| a.conn.as_ref())
                && conn.send(Cmd::ResultStored(id)).is_err()
            {
                // Unconfirmed: the agent sends it again later and gets
                // `Stored` then.
                self.counters.send_failures += 1;
            }
        }
        let limits = self.answer_limits;
        self.answers.prune(&limits, now_ms);
    }

    /// Drops answers older than `push_results_max_age` at `now_ms`. Storing
    /// an answer prunes too, but a master that stops receiving answers
    /// must still let old ones go: the master calls this periodically.
    /// Returns how many answers are left.
    pub fn prune_answers(&mut self, now_ms: u64) -> usize {
        let limits = self.answer_limits;
        self.answers.prune(&limits, now_ms);
        self.answers.order.len()
    }

    /// The answers stored for push `id`, by agent.
    pub fn push_answers(&self, id: u64) -> &[(Uuid, Answer)] {
        self.answers.stored.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Whether push `id` still waits for `uuid`'s answer.
    pub fn awaits_answer(&self, id: u64, uuid: &Uuid) -> bool {
        self.answers
            .awaiting
            .get(&id)
            .is_some_and(|w| w.contains(uuid))
    }

    /// Stored answers plus pushes awaiting answers, in O(1)-ish (two map
    /// sizes): part of the push log's compaction check.
    pub fn kept_answer_count(&self) -> usize {
        self.answers.order.len() + self.answers.awaiting.len()
    }

    /// What a compacted push log keeps of push results.
    pub fn kept_answers(&self) -> KeptAnswers {
        KeptAnswers {
            awaiting: self
                .answers
                .awaiting
                .iter()
                .map(|(id, w)| (*id, w.clone()))
                .collect(),
            answers: self
                .answers
                .order
                .iter()
                .filter_map(|(id, uuid)| {
                    let list = self.answers.stored.get(id)?;
                    let (_, a) = list.iter().find(|(u, _)| u == uuid)?;
                    Some((*id, *uuid, a.clone()))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::super::tests::{addr, peer};
    use super::*;
    use crate::master::conn_handle::ConnHandle;
    use crate::session::outbox::OutboxLimits;

    fn result(id: u64, len: usize) -> v2::PushResult {
        v2::PushResult {
            id,
            exit: 3,
            output: vec![b'x'; len],
            truncated: false,
            at_unix_ms: 0,
        }
    }

    fn answer(len: usize, stored_unix_ms: u64) -> Answer {
        Answer {
            exit: 3,
            output: vec![b'x'; len],
            truncated: false,
            at_unix_ms: 0,
            stored_unix_ms,
        }
    }

    fn wanting(id: u64) -> Arc<v2::Push> {
        Arc::new(v2::Push {
            id,
            sender: "api".into(),
            group: String::new(),
            body: b"uptime".to_vec(),
            want_result: true,
        })
    }

    /// Two agents joined on connections 0 (a) and 1 (b).
    fn fleet() -> (Registry, Vec<Arc<ConnHandle>>, Uuid, Uuid) {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let mut handles = Vec::new();
        for (i, n) in ["a", "b"].iter().enumerate() {
            let h = ConnHandle::new(i as u64);
            r.conn_opened(h.clone());
            r.joined(i as u64, &peer(n, "g"), addr(), t, 0);
            handles.push(h);
        }
        let (a, b) = (peer("a", "g").uuid, peer("b", "g").uuid);
        (r, handles, a, b)
    }

    #[test]
    fn only_an_awaited_answer_is_taken_then_confirmed_once_stored() {
        let (mut r, handles, a, b) = fleet();
        r.enqueue(wanting(1), &[a], Instant::now(), 0);
        r.enqueue(
            Arc::new(v2::Push {
                want_result: false,
                ..(*wanting(2)).clone()
            }),
            &[a, b],
            Instant::now(),
            0,
        );
        let _ = handles[0].take();
        // b was not asked; push 2 wanted no result.
        assert_eq!(
            r.check_answer(1, &result(1, 4)),
            AnswerCheck::Refused("not_awaited")
        );
        assert_eq!(
            r.check_answer(0, &result(2, 4)),
            AnswerCheck::Refused("not_awaited")
        );
        assert_eq!(r.check_answer(0, &result(1, 4)), AnswerCheck::Take(a));
        // A resend while the disk is busy: nothing to do yet.
        assert_eq!(r.check_answer(0, &result(1, 4)), AnswerCheck::Storing);
        r.answers_stored(vec![(1, a, answer(4, 10))], 10);
        assert!(matches!(
            handles[0].take().pop_front(),
            Some(Cmd::ResultStored(1))
        ));
        assert_eq!(r.push_answers(1).len(), 1);
        assert!(!r.awaits_answer(1, &a));
        // A resend after a lost confirmation is confirmed, not stored.
        assert_eq!(r.check_answer(0, &result(1, 4)), AnswerCheck::Stored);
        assert_eq!(r.counters.push_results_stored, 1);
        assert_eq!(r.counters.push_results_refused.get("not_awaited"), Some(&2));
    }

    #[test]
    fn an_agent_over_its_byte_budget_is_refused_and_counted() {
        let (mut r, _handles, a, _) = fleet();
        r.answer_limits.agent_bytes = 100;
        r.enqueue(wanting(1), &[a], Instant::now(), 0);
        r.enqueue(wanting(2), &[a], Instant::now(), 0);
        assert_eq!(
            r.check_answer(0, &result(1, 101)),
            AnswerCheck::Refused("agent_bytes")
        );
        assert_eq!(r.check_answer(0, &result(1, 60)), AnswerCheck::Take(a));
        // Reserved at once: the second cannot outrun the disk.
        assert_eq!(
            r.check_answer(0, &result(2, 60)),
            AnswerCheck::Refused("agent_bytes")
        );
        // A reservation that never reached the log is released.
        r.answer_not_queued(1, a, 60);
        assert_eq!(r.check_answer(0, &result(2, 60)), AnswerCheck::Take(a));
        assert_eq!(r.counters.push_results_refused.get("agent_bytes"), Some(&2));
    }

    #[test]
    fn retention_keeps_the_newest_and_drops_the_old() {
        let (mut r, _handles, a, b) = fleet();
        r.answer_limits.keep = 2;
        r.answer_limits.max_age_ms = 1000;
        r.restore_answers(vec![
            (1, a, answer(10, 0)),
            (2, a, answer(10, 5000)),
            (3, b, answer(10, 5000)),
        ]);
        r.answers_stored(vec![(4, b, answer(10, 5500))], 5500);
        // 1 is too old and past `keep`, 2 past `keep`.
        assert!(r.push_answers(1).is_empty());
        assert!(r.push_answers(2).is_empty());
        assert_eq!(r.push_answers(3).len(), 1);
        assert_eq!(r.push_answers(4).len(), 1);
        let kept = r.kept_answers();
        let ids: Vec<u64> = kept.answers.iter().map(|k| k.0).collect();
        assert_eq!(ids, [3, 4]);
        // The whole budget of a is free again.
        assert!(!r.answers.bytes.contains_key(&a));
    }
    #[test]
    fn old_answers_age_out_without_new_ones() {
        let (mut r, _handles, a, b) = fleet();
        r.answer_limits.max_age_ms = 1000;
        r.restore_answers(vec![(1, a, answer(10, 0)), (2, b, answer(10, 800))]);
        assert_eq!(r.prune_answers(900), 2, "none old yet");
        assert_eq!(r.prune_answers(1500), 1, "the first is");
        assert!(r.push_answers(1).is_empty());
        assert_eq!(r.prune_answers(5000), 0);
        assert!(!r.answers.bytes.contains_key(&b));
    }
}
