//! What legacy v1 clients may leave behind in the registry, and for how
//! long.
//!
//! A legacy client never authenticates and picks its uuid freely, so
//! without limits a stream of short connections under fresh uuids, each
//! sending one large report, keeps every uuid and its last body for the
//! life of the master. Here: a kept body is cut to `max_health_body` and
//! charged to the memory budget (not kept at all when the unauthenticated
//! half of the budget is full), and an offline legacy agent is forgotten
//! once it has not been heard for `legacy_retention`.

use std::time::{Duration, Instant};

use super::{Latest, Registry};
use crate::master::budget::{Kind, MemoryBudget};
use crate::proto::{Uuid, Version};

/// Limits on what legacy clients leave behind (from the settings
/// `max_health_body` and `legacy_retention`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyLimits {
    /// Largest legacy body kept as an agent's latest, bytes.
    pub max_health_body: usize,
    /// How long an offline legacy agent is remembered after it was last
    /// heard.
    pub retention: Duration,
}

impl Default for LegacyLimits {
    fn default() -> Self {
        LegacyLimits {
            max_health_body: 64 << 10,
            retention: Duration::from_secs(3600),
        }
    }
}

/// Bytes of `latest` charged to the budget: legacy bodies only (v2
/// reports come from authenticated agents, one per agent with a key).
pub(super) fn charged(latest: &Option<Latest>) -> usize {
    match latest {
        Some(Latest::Legacy(text)) => text.capacity(),
        _ => 0,
    }
}

/// Gives back the budget's charge for a `latest` no longer kept.
pub(super) fn release(budget: &MemoryBudget, latest: &Option<Latest>) {
    budget.release(Kind::HealthBodies, false, charged(latest));
}

/// Keeps a legacy report body as `latest`: cut to `max` bytes (at a
/// character boundary) and charged to the budget. When the budget's
/// unauthenticated half is full the body is not kept (`latest` is
/// cleared; the refusal is counted by the budget) — the report was still
/// counted and fanned out.
pub(super) fn keep_legacy_body(
    budget: &MemoryBudget,
    max: usize,
    latest: &mut Option<Latest>,
    body: &[u8],
) {
    release(budget, latest);
    *latest = None;
    let text = String::from_utf8_lossy(&body[..body.len().min(max)]);
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kept = text[..end].to_string();
    if budget
        .try_charge(Kind::HealthBodies, false, kept.capacity())
        .is_ok()
    {
        *latest = Some(Latest::Legacy(kept));
    }
}

impl Registry {
    /// Forgets the offline legacy agents not heard for the retention time
    /// (their pushes, which a legacy client cannot receive, are
    /// cancelled); returns how many. Called by the master's periodic
    /// sweep.
    pub fn forget_stale_legacy(&mut self, now: Instant) -> usize {
        let retention = self.legacy_limits.retention;
        let stale: Vec<Uuid> = self
            .agents()
            .filter(|a| {
                a.version == Some(Version::V1)
                    && !a.online()
                    && a.last_seen
                        .is_none_or(|(t, _)| now.saturating_duration_since(t) >= retention)
            })
            .map(|a| a.uuid)
            .collect();
        let mut n = 0;
        for u in stale {
            if self.forget(&u).is_some() {
                n += 1;
            }
        }
        self.counters.legacy_forgotten += n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::addr;
    use super::*;
    use crate::master::budget::Refusal;
    use crate::master::conn_handle::ConnHandle;
    use crate::proto::v2::{CloseCode, Role};
    use crate::session::CloseInfo;
    use crate::session::master::Peer;
    use crate::session::outbox::OutboxLimits;

    fn legacy_peer(name: &str) -> Peer {
        Peer {
            uuid: Uuid::from_text(name).unwrap(),
            version: Version::V1,
            role: Role::Agent,
            group: String::new(),
            sealed: false,
            minor: 0,
            software: String::new(),
            key_id: 0,
            inbox: None,
        }
    }

    fn closed() -> CloseInfo {
        CloseInfo {
            code: CloseCode::Normal,
            reason: "x".into(),
            by_peer: true,
            frame_error: None,
        }
    }

    #[test]
    fn legacy_bodies_are_cut_charged_and_forgotten_after_retention() {
        let t = Instant::now();
        let budget = Arc::new(MemoryBudget::new(1 << 20));
        let mut r = Registry::new(OutboxLimits::default(), t);
        r.set_budget(budget.clone());
        r.legacy_limits = LegacyLimits {
            max_health_body: 1000,
            retention: Duration::from_secs(60),
        };
        for i in 1..=3u64 {
            r.conn_opened(ConnHandle::new(i));
            r.joined(i, &legacy_peer(&format!("v1-{i}")), addr(), t, 0);
            r.legacy_report(i, vec![b'x'; 5000], 0);
        }
        let held = budget.held(Kind::HealthBodies);
        assert!((3000..3100).contains(&held), "{held}");
        let a = r.agent(&Uuid::from_text("v1-1").unwrap()).unwrap();
        assert!(matches!(a.latest(), Some(Latest::Legacy(s)) if s.len() == 1000));

        // Online agents are kept; offline ones once not heard for the
        // retention time.
        r.conn_closed(1, &closed(), 0);
        r.conn_closed(2, &closed(), 0);
        assert_eq!(r.forget_stale_legacy(t + Duration::from_secs(59)), 0);
        assert_eq!(r.forget_stale_legacy(t + Duration::from_secs(60)), 2);
        assert_eq!(r.agents().count(), 1);
        assert_eq!(r.counters.legacy_forgotten, 2);
        let held = budget.held(Kind::HealthBodies);
        assert!((1000..1100).contains(&held), "{held}");
        // A v2 report replacing a legacy body gives its charge back.
        r.report(3, Box::default(), t, 0);
        assert_eq!(budget.held(Kind::HealthBodies), 0);
    }

    #[test]
    fn a_full_budget_keeps_no_legacy_body() {
        let t = Instant::now();
        // The unauthenticated half: 1 MiB.
        let budget = Arc::new(MemoryBudget::new(2 << 20));
        let mut r = Registry::new(OutboxLimits::default(), t);
        r.set_budget(budget.clone());
        r.legacy_limits.max_health_body = 600 << 10;
        for i in 1..=2u64 {
            r.conn_opened(ConnHandle::new(i));
            r.joined(i, &legacy_peer(&format!("v1-{i}")), addr(), t, 0);
            r.legacy_report(i, vec![b'x'; 600 << 10], 0);
        }
        assert_eq!(budget.refusals(Refusal::HealthBody), 1);
        let kept = |n: &str| {
            r.agent(&Uuid::from_text(n).unwrap())
                .unwrap()
                .latest()
                .cloned()
        };
        assert!(kept("v1-1").is_some());
        assert!(kept("v1-2").is_none());
        assert_eq!(r.counters.reports, 2, "the report itself still counts");
    }
}
