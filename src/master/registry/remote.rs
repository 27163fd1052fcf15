//! What the registry does for the cluster (`master::cluster`), kept here
//! so the registry stays ignorant of Redis: reports other masters'
//! subscribers want (out), reports from other masters for ours (in),
//! pushes fetched from Redis for an agent this master holds, and closing
//! a session another master now owns.
//!
//! Without a cluster none of this is used: `remote_wanted` stays false,
//! so a report costs nothing more.

use std::sync::Arc;
use std::time::Instant;

use super::{Agent, FleetEvent, Registry};
use crate::master::conn_handle::{Cmd, ConnId};
use crate::proto::Uuid;
use crate::proto::frame::SharedBody;
use crate::proto::v2::{self, CloseCode};
use crate::session::legacy::LegacyFanout;

/// Reports kept for other masters between two hand-overs to the cluster
/// thread (the shards' connections hand them over after every event batch,
/// so this only fills if that thread is stuck; the rest are dropped and
/// counted).
pub const REMOTE_OUT_MAX: usize = 4096;

/// A report for other masters' subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteReport {
    /// A v2 report event body (`v2::event_body`), for v2 subscribers in
    /// the scope of `group`.
    Event {
        /// The reporting agent's group.
        group: String,
        /// The event body.
        body: Vec<u8>,
    },
    /// A legacy v1 report body, for legacy push subscribers.
    Legacy {
        /// The reporting agent's group.
        group: String,
        /// The report body as received.
        body: Vec<u8>,
    },
}

/// The registry's cluster state.
#[derive(Debug, Default)]
pub(super) struct RemoteState {
    /// Some other master has subscribers: reports are handed out.
    pub(super) wanted: bool,
    /// Reports not yet taken by the cluster thread.
    pub(super) out: Vec<RemoteReport>,
    /// Reports dropped because `out` was full.
    pub(super) dropped: u64,
}

impl RemoteState {
    pub(super) fn hand_out(&mut self, r: RemoteReport) {
        if self.out.len() >= REMOTE_OUT_MAX {
            self.dropped += 1;
        } else {
            self.out.push(r);
        }
    }
}

impl Registry {
    /// Whether other masters have subscribers (set by the cluster thread):
    /// reports are then kept for it as well.
    pub fn set_remote_wanted(&mut self, wanted: bool) {
        self.remote.wanted = wanted;
        if !wanted {
            self.remote.out.clear();
        }
    }

    /// Whether reports are kept for other masters.
    pub fn remote_wanted(&self) -> bool {
        self.remote.wanted
    }

    /// Takes the reports kept for other masters.
    pub fn take_remote_reports(&mut self) -> Vec<RemoteReport> {
        std::mem::take(&mut self.remote.out)
    }

    /// Reports dropped for other masters (the cluster thread fell behind).
    pub fn remote_reports_dropped(&self) -> u64 {
        self.remote.dropped
    }

    /// Subscribers of any kind on this master (v2 and legacy).
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len() + self.legacy_subscribers.len()
    }

    /// A report from another master: fanned out to this master's
    /// subscribers in scope, with the same queues and slow-consumer rule
    /// as local ones. Nothing is stored: the agent is not ours.
    pub fn remote_report(&mut self, r: RemoteReport) {
        match r {
            RemoteReport::Event { group, body } => {
                if !self.subscribers.is_empty() {
                    self.fan_out(Some(&group), Cmd::Event(Arc::new(SharedBody::new(body))));
                }
            }
            RemoteReport::Legacy { group, body } => {
                if !self.legacy_subscribers.is_empty() {
                    let f = LegacyFanout::new(body);
                    self.fan_out(Some(&group), Cmd::LegacyFanout(Arc::new(f)));
                }
            }
        }
    }

    /// Pushes fetched from Redis for `uuid`: the ones its outbox does not
    /// hold yet are queued and handed to its connection, as an accepted
    /// push is on a single master. Returns how many were new. Nothing
    /// when the agent is not online here (it moved; its new master
    /// fetches them).
    pub fn remote_pushes(
        &mut self,
        uuid: &Uuid,
        pushes: Vec<v2::Push>,
        now: Instant,
        unix_ms: u64,
    ) -> usize {
        let limits = self.limits;
        let Some(a) = self.agents.get_mut(uuid) else {
            return 0;
        };
        if !a.online() {
            return 0;
        }
        let mut new = Vec::new();
        for p in pushes {
            if a.outbox.ids().any(|(id, _)| id == p.id) {
                continue;
            }
            let p = Arc::new(p);
            if a.outbox.enqueue(p.clone(), &limits).is_err() {
                a.stats.rare_mut().pushes_refused += 1;
                break;
            }
            new.push(p.id);
        }
        if !new.is_empty() {
            a.hand_out(&limits, now);
        }
        for id in &new {
            self.pushes.insert(super::pushes::PushStatus {
                id: *id,
                unix_ms,
                targets: vec![(*uuid, super::Delivery::Queued)],
            });
        }
        new.len()
    }

    /// The connection holding `uuid`, if online here.
    pub fn conn_of(&self, uuid: &Uuid) -> Option<ConnId> {
        self.agents.get(uuid)?.conn.as_ref().map(|c| c.id)
    }

    /// Another master now owns `uuid`: closes the session `conn` with
    /// `replaced` (only that one: a newer local session stays). Returns
    /// whether a session was told to close.
    pub fn fenced(&mut self, uuid: &Uuid, conn: ConnId, reason: &str) -> bool {
        match self.agents.get(uuid).and_then(|a| a.conn.as_ref()) {
            Some(h) if h.id == conn => h
                .send(Cmd::Kick(CloseCode::Replaced, reason.to_string()))
                .is_ok(),
            _ => false,
        }
    }

    /// The online agents after `after` in uuid order (all from the first
    /// when `None`), for the cluster's view of this master, built a chunk
    /// per lock.
    pub fn online_agents_after(&self, after: Option<&Uuid>) -> impl Iterator<Item = &Agent> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.agents
            .range((from, Bound::Unbounded))
            .filter(|a| a.online())
    }

    /// Whether `ev` is a v2 join (the cluster claims those).
    pub fn is_v2_join(&self, ev: &FleetEvent) -> Option<(Uuid, ConnId)> {
        let FleetEvent::Join(u) = ev else { return None };
        let a = self.agents.get(u)?;
        if a.version != Some(crate::proto::Version::V2) {
            return None;
        }
        Some((*u, a.conn.as_ref()?.id))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::tests::{addr, peer};
    use super::*;
    use crate::master::conn_handle::ConnHandle;
    use crate::session::outbox::OutboxLimits;

    #[test]
    fn online_agents_walked_in_chunks_by_cursor() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        for (i, name) in ["e", "a", "d", "b", "c"].iter().enumerate() {
            let h = ConnHandle::new(i as u64 + 1);
            r.conn_opened(h);
            r.joined(i as u64 + 1, &peer(name, ""), addr(), t, 0);
        }
        // "d" goes offline: skipped, but the walk goes on past it.
        r.agents
            .get_mut(&Uuid::from_text("d").unwrap())
            .unwrap()
            .conn = None;
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let chunk: Vec<Uuid> = r
                .online_agents_after(after.as_ref())
                .take(2)
                .map(|a| a.uuid)
                .collect();
            after = chunk.last().copied();
            seen.extend(chunk.iter().map(|u| u.to_string()));
            if chunk.len() < 2 {
                break;
            }
        }
        assert_eq!(seen, ["a", "b", "c", "e"]);
    }
}
