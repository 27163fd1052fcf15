//! The fleet: every agent ever seen this run (online or not), every open
//! connection, per-agent and global counters, push bookkeeping.
//!
//! No I/O here: connection tasks report session events and the HTTP side
//! reads snapshots, all under one mutex held only for short, non-blocking
//! updates.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::conn_handle::{Cmd, ConnHandle, ConnId};
use crate::proto::frame::SharedBody;
use crate::proto::v2::{self, CloseCode, Role, Scope};
use crate::proto::{Uuid, Version};
use crate::session::legacy::LegacyFanout;
use crate::session::master::Peer;
use crate::session::outbox::{Outbox, OutboxLimits};
use crate::session::{CloseInfo, Traffic};

/// Health points kept per agent for charts.
pub const HISTORY_LEN: usize = 120;
/// Push statuses kept for `GET /api/pushes/{id}` once fully delivered.
pub const DONE_PUSHES_KEPT: usize = 10_000;

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

/// The latest health an agent sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Latest {
    /// A v2 report.
    V2(Box<v2::Report>),
    /// A legacy v1 report body (JSON text, as received).
    Legacy(String),
}

/// Counters of one agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Reports received.
    pub reports: u64,
    /// Sessions opened (joins).
    pub sessions: u64,
    /// Times evicted for silence.
    pub evictions: u64,
    /// Frame errors by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Sends that failed (queue overflow, encode error).
    pub send_failures: u64,
    /// Pushes acked as delivered.
    pub pushes_delivered: u64,
    /// Pushes acked as duplicates (resent after a lost ack).
    pub pushes_duplicate: u64,
    /// Pushes refused because the outbox was full.
    pub pushes_refused: u64,
    /// Reports the agent dropped from its own full ring (its last count).
    pub agent_dropped_reports: u64,
}

/// How the last session of an agent ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastClose {
    /// Close code name.
    pub code: &'static str,
    /// Reason text.
    pub reason: String,
    /// When, Unix ms.
    pub unix_ms: u64,
}

/// An agent known to the master.
#[derive(Debug)]
pub struct Agent {
    /// Its uuid.
    pub uuid: Uuid,
    /// Group label.
    pub group: String,
    /// Address of the current or last connection.
    pub addr: Option<SocketAddr>,
    /// Wire version of the current or last session.
    pub version: Option<Version>,
    /// Whether that session was sealed.
    pub sealed: bool,
    /// Its software text.
    pub software: String,
    /// CRC-32 of the key of the current or last sealed session.
    pub key_id: u32,
    /// The live connection, if online.
    pub conn: Option<Arc<ConnHandle>>,
    /// When the current session joined (monotonic) and as Unix ms.
    pub connected_since: Option<(Instant, u64)>,
    /// Last frame seen (monotonic) and as Unix ms.
    pub last_seen: Option<(Instant, u64)>,
    /// Latest health.
    pub latest: Option<Latest>,
    /// Recent health points, oldest first.
    pub history: VecDeque<Point>,
    /// Counters.
    pub stats: AgentStats,
    /// Pushes awaiting its ack.
    pub outbox: Outbox,
    /// How its last session ended.
    pub last_close: Option<Box<LastClose>>,
    /// Previous network totals, for rates: (monotonic, rx, tx).
    prev_net: Option<(Instant, u64, u64)>,
}

impl Agent {
    fn new(uuid: Uuid) -> Agent {
        Agent {
            uuid,
            group: String::new(),
            addr: None,
            version: None,
            sealed: false,
            software: String::new(),
            key_id: 0,
            conn: None,
            connected_since: None,
            last_seen: None,
            latest: None,
            history: VecDeque::new(),
            stats: AgentStats::default(),
            outbox: Outbox::new(),
            last_close: None,
            prev_net: None,
        }
    }

    /// Whether a session is live.
    pub fn online(&self) -> bool {
        self.conn.is_some()
    }
}

/// What an open connection is.
#[derive(Debug)]
struct Conn {
    handle: Arc<ConnHandle>,
    uuid: Option<Uuid>,
    role: Option<Role>,
}

/// Delivery state of one push for one agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In the agent's outbox.
    Queued,
    /// Acked by the agent.
    Delivered,
    /// Removed without delivery (agent deleted).
    Cancelled,
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

/// Global counters (master lifetime).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused (cap or rate limit), by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Closes by code name.
    pub closes: BTreeMap<&'static str, u64>,
    /// Frame errors by kind.
    pub frame_errors: BTreeMap<&'static str, u64>,
    /// Frames in by type number.
    pub frames_in: [u64; 11],
    /// Frames out by type number.
    pub frames_out: [u64; 11],
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Reports received.
    pub reports: u64,
    /// Pushes accepted by the API.
    pub pushes_accepted: u64,
    /// Pushes refused by the API (outbox full), by reason.
    pub pushes_refused: BTreeMap<&'static str, u64>,
    /// Push deliveries acked.
    pub pushes_delivered: u64,
    /// Fan-out messages forwarded to subscribers.
    pub fanout: u64,
    /// Fan-out messages dropped (subscriber queue full, then closed).
    pub fanout_dropped: u64,
    /// Sends that failed.
    pub send_failures: u64,
    /// v1 requests with the compress flag, by what the body was
    /// (`session::legacy::FlaggedBody`): old clients set the flag on plain
    /// bodies, and an operator may want to know which do.
    pub legacy_compress_flag: [u64; 3],
}

/// An event for live watchers (the dashboard's SSE stream).
#[derive(Clone, Debug, PartialEq)]
pub enum FleetEvent {
    /// An agent joined.
    Join(Uuid),
    /// An agent left, with the close code name and reason.
    Leave(Uuid, &'static str, String),
    /// New health from an agent.
    Health(Uuid, Point),
    /// A push was delivered to an agent.
    PushDelivered(u64, Uuid),
}

/// The fleet.
#[derive(Debug)]
pub struct Registry {
    /// Boxed: a map node then holds a key and a pointer per agent, not a
    /// ~450-byte `Agent` in half-empty node slots (idle memory per agent).
    agents: BTreeMap<Uuid, Box<Agent>>,
    conns: HashMap<ConnId, Conn>,
    /// Connections with a v2 subscription and its scope (few: dashboards,
    /// collectors; kept apart so a connection entry stays small).
    subscribers: Vec<(ConnId, Scope)>,
    /// Connections registered for legacy fan-out.
    legacy_subscribers: Vec<ConnId>,
    pushes: BTreeMap<u64, PushStatus>,
    done_pushes: VecDeque<u64>,
    /// Pushes in `pushes` with a target still `Queued`: the push log's
    /// compaction check reads this on every ack, so it must be O(1).
    live: usize,
    /// Global counters.
    pub counters: Counters,
    /// Outbox bounds.
    pub limits: OutboxLimits,
    /// Events not yet taken by the broadcaster.
    events: Vec<FleetEvent>,
    /// Monotonic start, for uptime.
    pub started: Instant,
    next_conn: u64,
}

impl Registry {
    /// An empty fleet.
    pub fn new(limits: OutboxLimits, now: Instant) -> Registry {
        Registry {
            agents: BTreeMap::new(),
            conns: HashMap::new(),
            subscribers: Vec::new(),
            legacy_subscribers: Vec::new(),
            pushes: BTreeMap::new(),
            done_pushes: VecDeque::new(),
            live: 0,
            counters: Counters::default(),
            limits,
            events: Vec::new(),
            started: now,
            next_conn: 1,
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// All agents, by uuid.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values().map(|a| &**a)
    }

    /// One agent.
    pub fn agent(&self, uuid: &Uuid) -> Option<&Agent> {
        self.agents.get(uuid).map(|a| &**a)
    }

    /// Number of agents online.
    pub fn online(&self) -> usize {
        self.agents.values().filter(|a| a.online()).count()
    }

    /// Number of open connections (agents, subscribers, handshakes).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Takes the events for live watchers.
    pub fn take_events(&mut self) -> Vec<FleetEvent> {
        std::mem::take(&mut self.events)
    }

    /// A connection was accepted.
    pub fn conn_opened(&mut self, handle: Arc<ConnHandle>) {
        self.counters.accepted += 1;
        self.conns.insert(
            handle.id,
            Conn {
                handle,
                uuid: None,
                role: None,
            },
        );
    }

    /// A connection's peer joined. A v2 agent already online with the same
    /// uuid is told to close (`replaced`): the newest session wins.
    pub fn joined(
        &mut self,
        id: ConnId,
        peer: &Peer,
        addr: SocketAddr,
        mono: Instant,
        unix_ms: u64,
    ) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.uuid = Some(peer.uuid);
        conn.role = Some(peer.role);
        if peer.role == Role::Subscriber {
            return;
        }
        let handle = conn.handle.clone();
        let a = self
            .agents
            .entry(peer.uuid)
            .or_insert_with(|| Box::new(Agent::new(peer.uuid)));
        // A v2 uuid is one authenticated device: its newest session wins.
        // Legacy clients open several connections under one uuid (a push
        // subscriber beside a reporter), so v1 never replaces.
        if let Some(old) = a.conn.take()
            && old.id != id
            && peer.version == Version::V2
        {
            let _ = old.send(Cmd::Kick(
                CloseCode::Replaced,
                format!("replaced by a newer session from {addr}"),
            ));
        }
        if !peer.group.is_empty() || peer.version == Version::V2 {
            a.group.clone_from(&peer.group);
        }
        a.addr = Some(addr);
        a.version = Some(peer.version);
        a.sealed = peer.sealed;
        a.software.clone_from(&peer.software);
        a.key_id = peer.key_id;
        a.conn = Some(handle.clone());
        a.connected_since = Some((mono, unix_ms));
        a.last_seen = Some((mono, unix_ms));
        a.stats.sessions += 1;
        a.prev_net = None;
        // Unacked pushes are due again on the new session.
        a.outbox.disconnected();
        let has_pushes = !a.outbox.is_empty();
        self.events.push(FleetEvent::Join(peer.uuid));
        if has_pushes {
            let _ = handle.send(Cmd::Wake);
        }
    }

    /// Adds a session's traffic to the agent's and global counters.
    pub fn traffic(&mut self, id: ConnId, t: &Traffic, mono: Instant, unix_ms: u64) {
        let c = &mut self.counters;
        for i in 0..11 {
            c.frames_in[i] += u64::from(t.frames_in[i]);
            c.frames_out[i] += u64::from(t.frames_out[i]);
        }
        c.bytes_in += u64::from(t.bytes_in);
        c.bytes_out += u64::from(t.bytes_out);
        for (sum, n) in c
            .legacy_compress_flag
            .iter_mut()
            .zip(t.legacy_compress_flag)
        {
            *sum += u64::from(n);
        }
        if let Some(a) = self.agent_of_mut(id) {
            a.stats.frames_in += t.total_in();
            a.stats.frames_out += t.total_out();
            a.stats.bytes_in += u64::from(t.bytes_in);
            a.stats.bytes_out += u64::from(t.bytes_out);
            if t.total_in() > 0 {
                a.last_seen = Some((mono, unix_ms));
            }
        }
    }

    fn agent_of_mut(&mut self, id: ConnId) -> Option<&mut Agent> {
        let uuid = self.conns.get(&id)?.uuid?;
        let a = self.agents.get_mut(&uuid)?;
        a.conn.as_ref().is_some_and(|c| c.id == id).then_some(a)
    }

    /// A v2 report arrived; returns the event to fan out, if anyone
    /// subscribed.
    pub fn report(&mut self, id: ConnId, report: Box<v2::Report>, mono: Instant, unix_ms: u64) {
        self.counters.reports += 1;
        let has_subscribers = !self.subscribers.is_empty();
        let Some(a) = self.agent_of_mut(id) else {
            return;
        };
        a.stats.reports += 1;
        a.stats.agent_dropped_reports = u64::from(report.dropped);
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
        let (rx_bps, tx_bps) = match a.prev_net {
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
            a.prev_net = Some((mono, rx, tx));
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
        if a.history.len() == HISTORY_LEN {
            a.history.pop_front();
        }
        a.history.push_back(p);
        let uuid = a.uuid;
        // Serialised once here for every subscriber (each session only
        // frames and seals it), straight from the report kept as latest.
        let event = has_subscribers.then(|| {
            (
                a.group.clone(),
                SharedBody::new(v2::event_body(uuid.trimmed(), &a.group, &report)),
            )
        });
        a.latest = Some(Latest::V2(report));
        self.events.push(FleetEvent::Health(uuid, p));
        if let Some((group, body)) = event {
            self.fan_out(Some(&group), Cmd::Event(Arc::new(body)));
        }
    }

    /// A v1 report arrived: fan it out to legacy and v2 subscribers.
    pub fn legacy_report(&mut self, id: ConnId, body: Vec<u8>, unix_ms: u64) {
        self.counters.reports += 1;
        let mut group = None;
        if let Some(a) = self.agent_of_mut(id) {
            a.stats.reports += 1;
            a.latest = Some(Latest::Legacy(String::from_utf8_lossy(&body).into_owned()));
            let p = Point {
                unix_ms,
                ..Point::default()
            };
            if a.history.len() == HISTORY_LEN {
                a.history.pop_front();
            }
            a.history.push_back(p);
            group = Some(a.group.clone());
            let uuid = a.uuid;
            self.events.push(FleetEvent::Health(uuid, p));
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
    fn fan_out(&mut self, group: Option<&String>, cmd: Cmd) {
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

    /// An agent acked a push. Returns whether the push is now delivered
    /// everywhere (so the store can forget it) and the agent's uuid.
    pub fn push_acked(&mut self, id: ConnId, ack: v2::PushAck) -> Option<(Uuid, bool)> {
        let a = self.agent_of_mut(id)?;
        a.outbox.ack(ack.id)?;
        match ack.status {
            v2::AckStatus::Delivered => a.stats.pushes_delivered += 1,
            v2::AckStatus::Duplicate => a.stats.pushes_duplicate += 1,
        }
        let uuid = a.uuid;
        let has_more = !a.outbox.is_empty();
        let handle = a.conn.clone();
        self.counters.pushes_delivered += 1;
        self.events.push(FleetEvent::PushDelivered(ack.id, uuid));
        if has_more && let Some(h) = handle {
            let _ = h.send(Cmd::Wake);
        }
        let done = self.mark(ack.id, uuid, Delivery::Delivered);
        Some((uuid, done))
    }

    fn mark(&mut self, push_id: u64, uuid: Uuid, d: Delivery) -> bool {
        let Some(st) = self.pushes.get_mut(&push_id) else {
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
            self.done_pushes.push_back(push_id);
            while self.done_pushes.len() > DONE_PUSHES_KEPT {
                if let Some(old) = self.done_pushes.pop_front() {
                    self.pushes.remove(&old);
                }
            }
        }
        done
    }

    /// Pushes due for the agent on connection `id`, marked as sent, and
    /// when the next one will be due for a resend.
    pub fn due_pushes(
        &mut self,
        id: ConnId,
        now: Instant,
    ) -> (Vec<Arc<v2::Push>>, Option<Instant>) {
        let limits = self.limits;
        let Some(a) = self.agent_of_mut(id) else {
            return (Vec::new(), None);
        };
        let due = std::iter::from_fn(|| a.outbox.next_due(now, &limits)).collect();
        (due, a.outbox.next_resend(&limits))
    }

    /// A send to a connection failed.
    pub fn send_failed(&mut self, id: ConnId) {
        self.counters.send_failures += 1;
        if let Some(a) = self.agent_of_mut(id) {
            a.stats.send_failures += 1;
        }
    }

    /// A connection ended.
    pub fn conn_closed(&mut self, id: ConnId, info: &CloseInfo, unix_ms: u64) {
        *self.counters.closes.entry(info.code.name()).or_default() += 1;
        if let Some(kind) = info.frame_error {
            *self.counters.frame_errors.entry(kind).or_default() += 1;
        }
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        // Both lists are short (subscribers, not agents).
        self.subscribers.retain(|&(s, _)| s != id);
        self.legacy_subscribers.retain(|&s| s != id);
        let Some(uuid) = conn.uuid else { return };
        let Some(a) = self.agents.get_mut(&uuid) else {
            return;
        };
        if let Some(kind) = info.frame_error {
            *a.stats.errors.entry(kind).or_default() += 1;
        }
        if info.code == CloseCode::Evicted {
            a.stats.evictions += 1;
        }
        if a.conn.as_ref().is_some_and(|c| c.id == id) {
            a.conn = None;
            a.outbox.disconnected();
            a.last_close = Some(Box::new(LastClose {
                code: info.code.name(),
                reason: info.reason.clone(),
                unix_ms,
            }));
            self.events.push(FleetEvent::Leave(
                uuid,
                info.code.name(),
                info.reason.clone(),
            ));
        }
    }

    /// Tells an online agent to close; returns false if it is not online.
    pub fn kick(&mut self, uuid: &Uuid, code: CloseCode, reason: &str) -> bool {
        match self.agents.get(uuid).and_then(|a| a.conn.as_ref()) {
            Some(h) => h.send(Cmd::Kick(code, reason.to_string())).is_ok(),
            None => false,
        }
    }

    /// Closes every connection (shutdown).
    pub fn kick_all(&mut self, code: CloseCode, reason: &str) {
        for c in self.conns.values() {
            let _ = c.handle.send(Cmd::Kick(code, reason.to_string()));
        }
    }

    /// Forgets an offline agent and cancels its pushes.
    pub fn forget(&mut self, uuid: &Uuid) -> Option<Vec<u64>> {
        let a = self.agents.get(uuid)?;
        if a.online() {
            return None;
        }
        let a = self.agents.remove(uuid)?;
        let ids: Vec<u64> = a.outbox.ids().map(|(id, _)| id).collect();
        for id in &ids {
            self.mark(*id, *uuid, Delivery::Cancelled);
        }
        Some(ids)
    }

    /// Makes sure an agent entry exists (for pushes to a uuid that has a
    /// key but has not connected yet, and for recovered pushes).
    pub fn ensure_agent(&mut self, uuid: Uuid) {
        self.agents
            .entry(uuid)
            .or_insert_with(|| Box::new(Agent::new(uuid)));
    }

    /// Agents a push address names: a uuid, `group:NAME` or `*`.
    pub fn resolve(&self, to: &str) -> Vec<Uuid> {
        if to == "*" {
            return self.agents.keys().copied().collect();
        }
        if let Some(g) = to.strip_prefix("group:") {
            return self
                .agents
                .values()
                .filter(|a| a.group == g)
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
    ) -> Result<(), crate::session::outbox::OverflowKind> {
        use crate::session::outbox::OverflowKind;
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
    /// wakes the online ones. Targets without room are skipped and
    /// reported (only possible for recovered pushes; the API checks first).
    pub fn enqueue(&mut self, push: Arc<v2::Push>, targets: &[Uuid], unix_ms: u64) -> Vec<Uuid> {
        let mut refused = Vec::new();
        let mut status = Vec::with_capacity(targets.len());
        for u in targets {
            let limits = self.limits;
            let a = self
                .agents
                .entry(*u)
                .or_insert_with(|| Box::new(Agent::new(*u)));
            match a.outbox.enqueue(push.clone(), &limits) {
                Ok(()) => {
                    status.push((*u, Delivery::Queued));
                    if let Some(h) = &a.conn {
                        let _ = h.send(Cmd::Wake);
                    }
                }
                Err(_) => {
                    a.stats.pushes_refused += 1;
                    refused.push(*u);
                }
            }
        }
        self.counters.pushes_accepted += 1;
        let live = status.iter().any(|t| t.1 == Delivery::Queued);
        let old = self.pushes.insert(
            push.id,
            PushStatus {
                id: push.id,
                unix_ms,
                targets: status,
            },
        );
        // Ids are unique, but a replaced status must not stay counted.
        if old.is_some_and(|o| o.targets.iter().any(|t| t.1 == Delivery::Queued)) {
            self.live = self.live.saturating_sub(1);
        }
        if live {
            self.live += 1;
        }
        refused
    }

    /// A push's status.
    pub fn push_status(&self, id: u64) -> Option<&PushStatus> {
        self.pushes.get(&id)
    }

    /// Number of pushes with at least one target still queued: what
    /// `live_pushes().len()` would be, in O(1), so the push log can decide
    /// whether compaction is due without walking every outbox.
    pub fn live_push_count(&self) -> usize {
        self.live
    }

    /// Every undelivered push with its remaining targets (for store
    /// compaction).
    pub fn live_pushes(&self) -> Vec<(Arc<v2::Push>, Vec<Uuid>)> {
        let mut by_id: BTreeMap<u64, (Arc<v2::Push>, Vec<Uuid>)> = BTreeMap::new();
        for a in self.agents.values() {
            for p in a.outbox_pushes() {
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

impl Agent {
    fn outbox_pushes(&self) -> impl Iterator<Item = &Arc<v2::Push>> {
        self.outbox.pushes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer(name: &str, group: &str) -> Peer {
        Peer {
            uuid: Uuid::from_text(name).unwrap(),
            version: Version::V2,
            role: Role::Agent,
            group: group.into(),
            sealed: true,
            minor: 0,
            software: "t".into(),
            key_id: 0,
        }
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn newer_session_replaces_older() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let h1 = ConnHandle::new(1);
        let h2 = ConnHandle::new(2);
        r.conn_opened(h1.clone());
        r.conn_opened(h2.clone());
        r.joined(1, &peer("a", "g"), addr(), t, 0);
        r.joined(2, &peer("a", "g"), addr(), t, 0);
        assert!(matches!(
            h1.take().pop_front(),
            Some(Cmd::Kick(CloseCode::Replaced, _))
        ));
        // The old connection's close does not mark the agent offline.
        let info = CloseInfo {
            code: CloseCode::Replaced,
            reason: "x".into(),
            by_peer: false,
            frame_error: None,
        };
        r.conn_closed(1, &info, 0);
        assert!(r.agent(&peer("a", "g").uuid).unwrap().online());
        assert_eq!(r.online(), 1);
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

    #[test]
    fn push_to_group_queue_ack_and_status() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        for (i, (n, g)) in [("a", "x"), ("b", "x"), ("c", "y")].iter().enumerate() {
            let h = ConnHandle::new(i as u64);
            r.conn_opened(h);
            r.joined(i as u64, &peer(n, g), addr(), t, 0);
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
        });
        assert!(r.enqueue(p, &targets, 0).is_empty());
        let (due, resend) = r.due_pushes(0, t);
        assert_eq!(due.len(), 1);
        assert_eq!(resend, Some(t + r.limits.resend_after), "resent if unacked");
        assert!(r.due_pushes(0, t).0.is_empty(), "in flight, not due again");
        let ack = v2::PushAck {
            id: 5,
            status: v2::AckStatus::Delivered,
        };
        assert_eq!(r.push_acked(0, ack).map(|x| x.1), Some(false));
        assert_eq!(r.push_acked(1, ack).map(|x| x.1), Some(true));
        assert!(r.push_acked(1, ack).is_none(), "a second ack is ignored");
        let st = r.push_status(5).unwrap();
        assert!(st.targets.iter().all(|t| t.1 == Delivery::Delivered));
        assert!(r.live_pushes().is_empty());
        let _ = Duration::ZERO;
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
        });
        r.enqueue(p, &[u], 0);
        assert_eq!(
            r.check_room_with(&[u], 0, |_| (0, 0)),
            Err(crate::session::outbox::OverflowKind::Messages)
        );
    }

    #[test]
    fn room_with_pending_counts_the_batch() {
        use crate::session::outbox::OverflowKind;
        let limits = OutboxLimits {
            max_msgs: 3,
            max_bytes: 10,
            ..OutboxLimits::default()
        };
        let mut r = Registry::new(limits, Instant::now());
        let u = Uuid::from_text("a").unwrap();
        let unknown = Uuid::from_text("b").unwrap();
        r.ensure_agent(u);
        let p = Arc::new(v2::Push {
            id: 1,
            sender: String::new(),
            group: String::new(),
            body: vec![0; 4],
        });
        r.enqueue(p, &[u], 0);
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
            })
        };
        r.enqueue(push(1), &both, 0);
        r.enqueue(push(2), &both[..1], 0);
        r.enqueue(push(3), &[c], 0);
        let check = |r: &Registry, n: usize| {
            assert_eq!(r.live_push_count(), n);
            assert_eq!(r.live_pushes().len(), n);
        };
        check(&r, 3);
        let ack = |id| v2::PushAck {
            id,
            status: v2::AckStatus::Delivered,
        };
        r.push_acked(0, ack(1));
        check(&r, 3);
        r.push_acked(1, ack(1));
        check(&r, 2);
        // An ack for a push that is not queued changes nothing.
        r.push_acked(1, ack(2));
        check(&r, 2);
        r.push_acked(0, ack(2));
        check(&r, 1);
        r.forget(&c);
        check(&r, 0);
    }
}
