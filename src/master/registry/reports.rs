//! Health reports: what each agent last sent (latest, history points)
//! and the fan-out of every report to the subscribers whose scope covers
//! it.
//!
//! Kept apart from joins and pushes because it is the hot path: a report
//! costs one registry lock, and with subscribers one serialisation shared
//! by all of them, found by walking the subscriber list, not every
//! connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::{Conn, FleetEvent, Registry, legacy_memory};
use crate::master::conn_handle::{Cmd, ConnId};
use crate::proto::frame::SharedBody;
use crate::proto::v2::{self, CloseCode, Scope};
use crate::session::legacy::LegacyFanout;

/// Health points kept per agent for charts.
pub const HISTORY_LEN: usize = 120;

/// One point of an agent's health history.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    /// When received, Unix ms (master clock).
    pub unix_ms: u64,
    /// CPU busy, percent.
    pub cpu: f32,
    /// Memory used (total − available), percent.
    pub mem: f32,
    /// 1-minute load average.
    pub load1: f32,
    /// Receive rate over all interfaces, bytes/s.
    pub rx_bps: f64,
    /// Send rate over all interfaces, bytes/s.
    pub tx_bps: f64,
}

/// When an agent's reports arrive, on the master's monotonic clock: for
/// "no report for more than three intervals" without trusting the agent's
/// clock or its announced interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cadence {
    /// When the last live report arrived.
    pub last: Option<Instant>,
    /// Smoothed gap between live reports, ms (0: not known yet).
    pub interval_ms: u32,
}

impl Cadence {
    /// A live report arrived at `mono`. The gap is smoothed (1/8 weight)
    /// and capped at four times the current estimate first, so a gap
    /// while the agent was away moves the estimate a little, not to hours.
    pub fn live_report(&mut self, mono: Instant) {
        if let Some(t0) = self.last
            && mono > t0
        {
            let gap = u32::try_from((mono - t0).as_millis()).unwrap_or(u32::MAX);
            self.interval_ms = match self.interval_ms {
                0 => gap,
                cur => {
                    let g = u64::from(gap.min(cur.saturating_mul(4)));
                    ((u64::from(cur) * 7 + g) / 8) as u32
                }
            };
        }
        self.last = Some(mono);
    }
}

/// The latest health an agent sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Latest {
    /// A v2 report.
    V2(Box<v2::Report>),
    /// A legacy v1 report body (JSON text, as received).
    Legacy(String),
}

impl Registry {
    /// A v2 report arrived: keeps it as the agent's latest, adds a history
    /// point and fans it out to the subscribers in scope.
    pub fn report(&mut self, id: ConnId, report: Box<v2::Report>, mono: Instant, unix_ms: u64) {
        self.counters.reports += 1;
        let has_subscribers = !self.subscribers.is_empty();
        let remote = self.remote.wanted;
        let Some(a) = self.agent_of_mut(id) else {
            return;
        };
        let uuid = a.uuid;
        let event_group = (has_subscribers || remote).then(|| a.group.to_string());
        let r = a.reported_mut();
        r.reports += 1;
        r.agent_dropped_reports = u64::from(report.dropped);
        let h = &report.health;
        let (rx, tx) = h
            .net
            .iter()
            .filter(|n| n.name != "lo")
            .fold((0u64, 0u64), |(r, t), n| {
                (r.wrapping_add(n.rx_bytes), t.wrapping_add(n.tx_bytes))
            });
        // Rates only between live reports: a buffered report replayed
        // after a reconnect has an age and would skew them.
        let (rx_bps, tx_bps) = match r.prev_net {
            Some((t0, rx0, tx0)) if report.age_ms < 1000 && mono > t0 => {
                let dt = (mono - t0).as_secs_f64();
                (
                    rx.saturating_sub(rx0) as f64 / dt,
                    tx.saturating_sub(tx0) as f64 / dt,
                )
            }
            _ => (0.0, 0.0),
        };
        if report.age_ms < 1000 {
            r.prev_net = Some((mono, rx, tx));
            r.cadence.live_report(mono);
        }
        let m = &h.memory;
        let mem = if m.total_kb > 0 {
            (m.total_kb.saturating_sub(m.available_kb)) as f64 * 100.0 / m.total_kb as f64
        } else {
            0.0
        };
        let at = if report.unix_ms > 0 {
            report.unix_ms
        } else {
            unix_ms.saturating_sub(u64::from(report.age_ms))
        };
        let p = Point {
            unix_ms: at,
            cpu: f32::from(h.cpu_permille) / 10.0,
            mem: mem as f32,
            load1: h.load_x100[0] as f32 / 100.0,
            rx_bps,
            tx_bps,
        };
        if r.history.len() == HISTORY_LEN {
            r.history.pop_front();
        }
        r.history.push_back(p);
        r.history_long.add(&p);
        // Serialised once here for every subscriber (each session only
        // frames and seals it), straight from the report kept as latest.
        let event = event_group.map(|group| {
            let body = v2::event_body(uuid.trimmed(), &group, &report);
            (group, body)
        });
        let replaced = r.latest.replace(Latest::V2(report));
        // A legacy body this uuid kept before gives its charge back.
        legacy_memory::release(&self.budget, &replaced);
        self.events.push(FleetEvent::Health(uuid, p));
        if let Some((group, body)) = event {
            if remote {
                self.remote.hand_out(super::remote::RemoteReport::Event {
                    group: group.clone(),
                    body: body.clone(),
                });
            }
            if has_subscribers {
                self.fan_out(Some(&group), Cmd::Event(Arc::new(SharedBody::new(body))));
            }
        }
    }

    /// A v1 report arrived: fan it out to legacy and v2 subscribers.
    pub fn legacy_report(&mut self, id: ConnId, body: Vec<u8>, unix_ms: u64) {
        self.counters.reports += 1;
        let mut group = None;
        let budget = self.budget.clone();
        let max = self.legacy_limits.max_health_body;
        if let Some(a) = self.agent_of_mut(id) {
            group = Some(a.group.to_string());
            let uuid = a.uuid;
            let r = a.reported_mut();
            r.reports += 1;
            // Cut, charged, or not kept when the budget is short: the
            // client is unauthenticated and its uuid free to invent.
            legacy_memory::keep_legacy_body(&budget, max, &mut r.latest, &body);
            let p = Point {
                unix_ms,
                ..Point::default()
            };
            if r.history.len() == HISTORY_LEN {
                r.history.pop_front();
            }
            r.history.push_back(p);
            self.events.push(FleetEvent::Health(uuid, p));
        }
        if self.remote.wanted {
            self.remote.hand_out(super::remote::RemoteReport::Legacy {
                group: group.clone().unwrap_or_default(),
                body: body.clone(),
            });
        }
        if !self.legacy_subscribers.is_empty() {
            let fanout = LegacyFanout::new(body);
            self.fan_out(group.as_ref(), Cmd::LegacyFanout(Arc::new(fanout)));
        }
    }

    /// Sends `cmd` to every subscriber whose scope covers `group`.
    /// Legacy fan-out goes to legacy subscribers (as the PHP master did,
    /// the reporter included if it subscribed); v2 events to v2 ones.
    /// Walks the subscribers only, not every connection.
    pub(super) fn fan_out(&mut self, group: Option<&String>, cmd: Cmd) {
        let mut slow = Vec::new();
        let mut send = |conns: &HashMap<ConnId, Conn>, id: &ConnId| {
            let Some(c) = conns.get(id) else { return };
            self.counters.fanout += 1;
            if c.handle.send(cmd.clone()).is_err() {
                self.counters.fanout_dropped += 1;
                slow.push(c.handle.clone());
            }
        };
        if matches!(cmd, Cmd::LegacyFanout(_)) {
            for id in &self.legacy_subscribers {
                send(&self.conns, id);
            }
        } else {
            for (id, scope) in &self.subscribers {
                let wanted = match scope {
                    Scope::All => true,
                    Scope::Group(g) => group == Some(g),
                };
                if wanted {
                    send(&self.conns, id);
                }
            }
        }
        for h in slow {
            let _ = h.send(Cmd::Kick(
                CloseCode::SlowConsumer,
                "slow consumer: fan-out queue full".into(),
            ));
        }
    }

    /// A connection subscribed (v2); a new subscription replaces the old.
    pub fn subscribed(&mut self, id: ConnId, scope: Scope) {
        if !self.conns.contains_key(&id) {
            return;
        }
        match self.subscribers.iter_mut().find(|(s, _)| *s == id) {
            Some(entry) => entry.1 = scope,
            None => self.subscribers.push((id, scope)),
        }
    }

    /// A v1 connection registered for pushes.
    pub fn legacy_subscribed(&mut self, id: ConnId) {
        if self.conns.contains_key(&id) && !self.legacy_subscribers.contains(&id) {
            self.legacy_subscribers.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::tests::{addr, peer};
    use super::*;
    use crate::master::conn_handle::ConnHandle;
    use crate::proto::v2::Role;
    use crate::session::CloseInfo;
    use crate::session::outbox::OutboxLimits;

    #[test]
    fn cadence_follows_live_reports_and_shrugs_off_one_long_gap() {
        let t = Instant::now();
        let s = std::time::Duration::from_secs;
        let mut c = Cadence::default();
        c.live_report(t);
        assert_eq!(c.interval_ms, 0);
        for i in 1..=5 {
            c.live_report(t + s(5 * i));
        }
        assert_eq!(c.interval_ms, 5000);
        c.live_report(t + s(25 + 3600)); // away for an hour
        assert_eq!(c.interval_ms, (5000 * 7 + 20_000) / 8);
        assert_eq!(c.last, Some(t + s(3625)));
    }

    #[test]
    fn reports_feed_the_long_history() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        r.conn_opened(ConnHandle::new(1));
        r.joined(1, &peer("a", "g"), addr(), t, 0);
        for i in 0..3u64 {
            let mut rep = v2::Report {
                unix_ms: 120_000 + i * 30_000,
                ..Default::default()
            };
            rep.health.cpu_permille = 500;
            r.report(
                1,
                Box::new(rep),
                t + std::time::Duration::from_secs(i * 30),
                0,
            );
        }
        let Some(a) = r.agents().next() else {
            panic!("no agent");
        };
        let b: Vec<_> = a.history_long().buckets().map(|b| b.point()).collect();
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!((b[0].unix_ms, b[0].cpu), (120_000, 50.0));
        assert_eq!(a.cadence().interval_ms, 30_000);
    }

    #[test]
    fn reports_fan_out_to_subscribers_in_scope_only() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let hs: Vec<_> = (1..=4).map(ConnHandle::new).collect();
        for h in &hs {
            r.conn_opened(h.clone());
        }
        r.joined(1, &peer("a", "g"), addr(), t, 0);
        let mut sub = peer("s", "");
        sub.role = Role::Subscriber;
        r.joined(2, &sub, addr(), t, 0);
        r.subscribed(2, Scope::All);
        r.joined(3, &sub, addr(), t, 0);
        r.subscribed(3, Scope::Group("other".into()));
        // Connection 4 never subscribes.
        let report = || Box::new(v2::Report::default());
        r.report(1, report(), t, 0);
        let got: Vec<_> = hs.iter().map(|h| h.take()).collect();
        let want = v2::event_body(peer("a", "g").uuid.trimmed(), "g", &report());
        match got[1].front() {
            Some(Cmd::Event(b)) => assert_eq!(b.plain(), want),
            other => panic!("subscriber to all got {other:?}"),
        }
        assert!(got[2].is_empty() && got[3].is_empty() && got[0].is_empty());
        // A closed subscriber leaves the list.
        let info = CloseInfo {
            code: CloseCode::Normal,
            reason: "x".into(),
            by_peer: true,
            frame_error: None,
        };
        r.conn_closed(2, &info, 0);
        r.conn_closed(3, &info, 0);
        assert!(r.subscribers.is_empty());
        r.report(1, report(), t, 0);
        assert_eq!(r.counters.fanout, 1);
    }
}
