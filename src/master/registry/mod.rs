//! The fleet: every agent ever seen this run (online or not), every open
//! connection, per-agent and global counters, push bookkeeping.
//!
//! No I/O here: shards' connections report session events and the HTTP side
//! reads snapshots, all under one mutex held only for short, non-blocking
//! updates. The master shares it between its shards' connections, the HTTP
//! side and the push log's committer thread (through
//! [`super::push_router`], so the push log does not know this type).
//!
//! This file holds the [`Registry`] type itself, agents and connections:
//! joins, leaves, traffic counters, kicks and the fleet view. The rest of
//! its methods live beside the state they work on:
//! - [`reports`]: health reports, history, fan-out to subscribers;
//! - [`downsample`]: the long history (one-minute averages over a day);
//! - [`pushes`]: push addresses, outbox room, queueing, handing due pushes
//!   to connections, acks, push statuses;
//! - [`legacy_memory`]: what legacy clients may leave behind (cut and
//!   charged bodies) and forgetting them after a retention time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::budget::MemoryBudget;
use super::conn_handle::{Cmd, ConnHandle, ConnId};
use crate::proto::v2::{self, CloseCode, Role, Scope};
use crate::proto::{Uuid, Version};
use crate::session::master::Peer;
use crate::session::outbox::OutboxLimits;
use crate::session::{CloseInfo, Traffic};

pub mod agents;
pub mod answers;
pub mod downsample;
pub mod identity;
pub mod inbox_fit;
pub mod lazy_outbox;
pub mod legacy_memory;
pub mod oversize_fanout;
pub mod pushes;
pub mod remote;
pub mod reports;
pub mod texts;

pub use agents::{AgentRef, Agents};
pub use answers::{AnswerCheck, AnswerLimits};
pub use downsample::LongHistory;
pub use identity::IdentityRefused;
pub use lazy_outbox::LazyOutbox;
pub use legacy_memory::LegacyLimits;
pub use pushes::{DONE_PUSHES_KEPT, Delivery, PushStatus};
pub use reports::{Cadence, HISTORY_LEN, Latest, Point};

/// Counters of one agent. The ones every connection moves stay inline;
/// the rest, which most agents never touch, live in [`RareStats`],
/// allocated on first use (issue 12: idle bytes per agent). All stay
/// `u64`: they are exported as monotonic Prometheus counters.
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
    /// Sessions opened (joins).
    pub sessions: u64,
    /// The rarely moved counters (`None`: all zero).
    rare: Option<Box<RareStats>>,
}

/// An agent's counters that stay zero for most agents: errors, evictions,
/// failed sends and push outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RareStats {
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
}

/// All zero, for agents that never moved a rare counter.
static NO_RARE_STATS: RareStats = RareStats {
    evictions: 0,
    errors: BTreeMap::new(),
    send_failures: 0,
    pushes_delivered: 0,
    pushes_duplicate: 0,
    pushes_refused: 0,
};

impl AgentStats {
    /// The rarely moved counters (zeros when none moved).
    pub fn rare(&self) -> &RareStats {
        self.rare.as_deref().unwrap_or(&NO_RARE_STATS)
    }

    /// The rarely moved counters, allocated on first use.
    pub fn rare_mut(&mut self) -> &mut RareStats {
        self.rare.get_or_insert_with(Box::default)
    }
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
///
/// Kept small (issue 12: idle bytes per connection): what only reports
/// fill lives in `Reported`, boxed on the first report; rare counters in
/// `RareStats`; group and software texts are interned ([`texts`]), one
/// copy per distinct text however many agents share it.
#[derive(Debug)]
pub struct Agent {
    /// Its uuid.
    pub uuid: Uuid,
    /// Whether that session was sealed.
    pub sealed: bool,
    /// Whether it has ever joined sealed this run: from then on its uuid
    /// is an authenticated identity no unauthenticated session may claim
    /// ([`identity`]).
    pub authenticated: bool,
    /// Wire version of the current or last session.
    pub version: Option<Version>,
    /// CRC-32 of the key of the current or last sealed session.
    pub key_id: u32,
    /// The push inbox its last session announced (`None`: not told), kept
    /// while offline so pushes that could never fit are refused then too.
    pub inbox: Option<v2::InboxLimits>,
    /// Group label (interned).
    pub group: Arc<str>,
    /// Its software text (interned).
    pub software: Arc<str>,
    /// Address of the current or last connection.
    pub addr: Option<SocketAddr>,
    /// The live connection, if online.
    pub conn: Option<Arc<ConnHandle>>,
    /// When the current session joined, Unix ms (only shown: no monotonic
    /// time is kept for it, 16 bytes less per agent).
    pub connected_since: Option<u64>,
    /// Last frame seen (monotonic) and as Unix ms.
    pub last_seen: Option<(Instant, u64)>,
    /// Counters.
    pub stats: AgentStats,
    /// Pushes awaiting its ack (allocated only while some wait).
    pub outbox: LazyOutbox,
    /// How its last session ended.
    pub last_close: Option<Box<LastClose>>,
    /// What its reports left (`None`: it never reported).
    reported: Option<Box<Reported>>,
}

impl Agent {
    fn new(uuid: Uuid, empty: Arc<str>) -> Agent {
        Agent {
            uuid,
            sealed: false,
            authenticated: false,
            version: None,
            key_id: 0,
            inbox: None,
            group: empty.clone(),
            software: empty,
            addr: None,
            conn: None,
            connected_since: None,
            last_seen: None,
            stats: AgentStats::default(),
            outbox: LazyOutbox::default(),
            last_close: None,
            reported: None,
        }
    }

    /// Whether a session is live.
    pub fn online(&self) -> bool {
        self.conn.is_some()
    }

    /// Latest health.
    pub fn latest(&self) -> Option<&Latest> {
        self.reported.as_ref()?.latest.as_ref()
    }

    /// Recent health points, oldest first.
    pub fn history(&self) -> &VecDeque<Point> {
        self.reported.as_ref().map_or(&NO_HISTORY, |r| &r.history)
    }

    /// One-minute averages over a day ([`downsample`]).
    pub fn history_long(&self) -> &LongHistory {
        self.reported
            .as_ref()
            .map_or(&LongHistory::EMPTY, |r| &r.history_long)
    }

    /// When its live reports arrive ([`Cadence`]).
    pub fn cadence(&self) -> Cadence {
        self.reported
            .as_ref()
            .map_or_else(Cadence::default, |r| r.cadence)
    }

    /// Reports received.
    pub fn reports(&self) -> u64 {
        self.reported.as_ref().map_or(0, |r| r.reports)
    }

    /// Reports the agent dropped from its own full ring (its last count).
    pub fn agent_dropped_reports(&self) -> u64 {
        self.reported
            .as_ref()
            .map_or(0, |r| r.agent_dropped_reports)
    }

    /// What its reports left, allocated on the first one.
    fn reported_mut(&mut self) -> &mut Reported {
        self.reported.get_or_insert_with(Box::default)
    }
}

/// No history, for agents that never reported.
static NO_HISTORY: VecDeque<Point> = VecDeque::new();

/// What an agent's reports leave behind: nothing of it exists for an agent
/// that only keeps its connection (heartbeats), which costs one pointer.
#[derive(Debug, Default)]
struct Reported {
    /// Latest health.
    latest: Option<Latest>,
    /// Recent health points, oldest first.
    history: VecDeque<Point>,
    /// One-minute averages over a day ([`downsample`]).
    history_long: LongHistory,
    /// When its live reports arrive ([`Cadence`]).
    cadence: Cadence,
    /// Previous network totals, for rates: (monotonic, rx, tx).
    prev_net: Option<(Instant, u64, u64)>,
    /// Reports received.
    reports: u64,
    /// Reports the agent dropped from its own full ring (its last count).
    agent_dropped_reports: u64,
}

/// What an open connection is: 16 bytes (issue 12: idle bytes per
/// connection). A subscriber's uuid, which names no agent, is kept apart
/// ([`Registry::subscriber_uuids`]).
#[derive(Debug)]
struct Conn {
    handle: Arc<ConnHandle>,
    /// The agent that joined on it, if one did.
    agent: Option<AgentRef>,
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
    pub frames_in: [u64; 13],
    /// Frames out by type number.
    pub frames_out: [u64; 13],
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
    /// Legacy fan-out messages not sent: the escaped report made a frame
    /// over `max_frame` ([`oversize_fanout`]). One per subscriber missed.
    pub fanout_dropped_too_large: u64,
    /// Sends that failed.
    pub send_failures: u64,
    /// v1 requests with the compress flag, by what the body was
    /// (`session::legacy::FlaggedBody`): old clients set the flag on plain
    /// bodies, and an operator may want to know which do.
    pub legacy_compress_flag: [u64; 3],
    /// Unauthenticated sessions refused for claiming an authenticated
    /// uuid, by kind (`v1`, `plaintext`): see [`identity`].
    pub identity_refused: BTreeMap<&'static str, u64>,
    /// Offline legacy agents forgotten after the retention time.
    pub legacy_forgotten: u64,
    /// Push results stored (synced to the push log).
    pub push_results_stored: u64,
    /// Push results refused, by reason (`not_awaited`, `agent_bytes`,
    /// `not_an_agent`, `queue_full`).
    pub push_results_refused: BTreeMap<&'static str, u64>,
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
    /// An agent's answer to a push is stored: push id, agent, exit status.
    PushAnswered(u64, Uuid, i32),
}

/// The fleet.
#[derive(Debug)]
pub struct Registry {
    /// Every agent, by uuid and by the [`AgentRef`] its connections hold.
    agents: Agents,
    conns: HashMap<ConnId, Conn>,
    /// The uuids subscriber connections joined with (few; they name no
    /// agent, so their connection entries hold none).
    subscriber_uuids: HashMap<ConnId, Uuid>,
    /// Connections with a v2 subscription and its scope (few: dashboards,
    /// collectors; kept apart so a connection entry stays small).
    subscribers: Vec<(ConnId, Scope)>,
    /// Connections registered for legacy fan-out.
    legacy_subscribers: Vec<ConnId>,
    /// Statuses of the pushes accepted this run.
    pushes: pushes::PushTable,
    /// Push results awaited and stored.
    answers: answers::AnswerTable,
    /// Bounds on push results.
    pub answer_limits: answers::AnswerLimits,
    /// Global counters.
    pub counters: Counters,
    /// Outbox bounds.
    pub limits: OutboxLimits,
    /// What legacy clients may leave behind, and for how long.
    pub legacy_limits: LegacyLimits,
    /// Charged for kept legacy bodies; the master's, once it is set.
    budget: Arc<MemoryBudget>,
    /// Events not yet taken by the broadcaster.
    events: Vec<FleetEvent>,
    /// What is needed to warn once per oversized legacy report.
    oversize_fanout: oversize_fanout::OversizeFanout,
    /// Reports for other masters of a cluster ([`remote`]).
    remote: remote::RemoteState,
    /// Agents' group and software texts, one copy each.
    texts: texts::Texts,
    /// Monotonic start, for uptime.
    pub started: Instant,
    next_conn: u64,
}

impl Registry {
    /// An empty fleet.
    pub fn new(limits: OutboxLimits, now: Instant) -> Registry {
        Registry {
            agents: Agents::default(),
            conns: HashMap::new(),
            subscriber_uuids: HashMap::new(),
            subscribers: Vec::new(),
            legacy_subscribers: Vec::new(),
            pushes: pushes::PushTable::default(),
            answers: answers::AnswerTable::default(),
            answer_limits: answers::AnswerLimits::default(),
            counters: Counters::default(),
            limits,
            legacy_limits: LegacyLimits::default(),
            budget: Arc::new(MemoryBudget::new(usize::MAX)),
            events: Vec::new(),
            oversize_fanout: oversize_fanout::OversizeFanout::default(),
            remote: remote::RemoteState::default(),
            texts: texts::Texts::default(),
            started: now,
            next_conn: 1,
        }
    }

    /// Charges kept legacy bodies to `budget` (the master's) from now on;
    /// until set, a budget of its own without a limit counts them.
    pub fn set_budget(&mut self, budget: Arc<MemoryBudget>) {
        self.budget = budget;
    }

    /// A fresh connection id.
    pub fn next_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// All agents, by uuid.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    /// One agent.
    pub fn agent(&self, uuid: &Uuid) -> Option<&Agent> {
        self.agents.get(uuid)
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
                agent: None,
            },
        );
    }

    /// A connection's peer joined. A v2 agent already online with the same
    /// uuid is told to close (`replaced`): the newest session wins. The
    /// agent's unacked pushes are handed to the new session.
    ///
    /// An unauthenticated peer (v1, plaintext) claiming a uuid that has
    /// joined sealed is refused first, before anything is touched: the
    /// caller must close that connection (it stays without a uuid, so
    /// nothing it sends reaches an agent). Counted; see [`identity`].
    /// Returns the refusal, `None` when the peer joined. (Not a `Result`:
    /// most callers, tests among them, join peers that cannot be refused.)
    pub fn joined(
        &mut self,
        id: ConnId,
        peer: &Peer,
        addr: SocketAddr,
        mono: Instant,
        unix_ms: u64,
    ) -> Option<IdentityRefused> {
        if let Err(refused) = identity::check(self.agent(&peer.uuid), peer) {
            self.identity_refused(refused.who);
            return Some(refused);
        }
        // An unknown connection (closed meanwhile) has nothing to join.
        let conn = self.conns.get_mut(&id)?;
        if peer.role == Role::Subscriber {
            self.subscriber_uuids.insert(id, peer.uuid);
            return None;
        }
        let handle = conn.handle.clone();
        let empty = self.texts.empty();
        let (agent, a) = self
            .agents
            .get_or_insert_with(peer.uuid, || Agent::new(peer.uuid, empty))?;
        conn.agent = Some(agent);
        // A v2 uuid is one authenticated device: its newest session wins.
        // Legacy clients open several connections under one uuid (a push
        // subscriber beside a reporter), so v1 never replaces.
        if let Some(old) = a.conn.take()
            && old.id != id
        {
            // The agent's pushes now go to this session (the outbox is
            // reset below): the old one must not send what it was handed.
            old.withdraw_pushes();
            if peer.version == Version::V2 {
                let _ = old.send(Cmd::Kick(
                    CloseCode::Replaced,
                    format!("replaced by a newer session from {addr}"),
                ));
            }
        }
        if !peer.group.is_empty() || peer.version == Version::V2 {
            self.texts.replace(&mut a.group, &peer.group);
        }
        a.addr = Some(addr);
        a.version = Some(peer.version);
        a.sealed = peer.sealed;
        a.authenticated |= peer.sealed;
        self.texts.replace(&mut a.software, &peer.software);
        a.inbox = peer.inbox;
        a.key_id = peer.key_id;
        a.conn = Some(handle);
        a.connected_since = Some(unix_ms);
        a.last_seen = Some((mono, unix_ms));
        a.stats.sessions += 1;
        if let Some(r) = &mut a.reported {
            r.prev_net = None;
        }
        // Unacked pushes are due again on the new session.
        a.outbox.disconnected();
        inbox_fit::drop_unfit(a, &mut self.pushes);
        let limits = self.limits;
        a.hand_out(&limits, mono);
        self.events.push(FleetEvent::Join(peer.uuid));
        None
    }

    /// Adds a session's traffic to the agent's and global counters.
    pub fn traffic(&mut self, id: ConnId, t: &Traffic, mono: Instant, unix_ms: u64) {
        let c = &mut self.counters;
        for i in 0..13 {
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

    /// The uuid that joined on connection `id`, if one did: the close
    /// log names it, as the join log does.
    /// (An agent forgotten meanwhile no longer names it.)
    pub fn uuid_of(&self, id: ConnId) -> Option<Uuid> {
        match self.conns.get(&id)?.agent {
            Some(r) => Some(self.agents.by_ref(r)?.uuid),
            None => self.subscriber_uuids.get(&id).copied(),
        }
    }

    fn agent_of_mut(&mut self, id: ConnId) -> Option<&mut Agent> {
        let r = self.conns.get(&id)?.agent?;
        let a = self.agents.by_ref_mut(r)?;
        a.conn.as_ref().is_some_and(|c| c.id == id).then_some(a)
    }

    /// A send to a connection failed.
    pub fn send_failed(&mut self, id: ConnId) {
        self.counters.send_failures += 1;
        if let Some(a) = self.agent_of_mut(id) {
            a.stats.rare_mut().send_failures += 1;
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
        self.subscriber_uuids.remove(&id);
        let Some(a) = conn.agent.and_then(|r| self.agents.by_ref_mut(r)) else {
            return;
        };
        let uuid = a.uuid;
        if let Some(kind) = info.frame_error {
            *a.stats.rare_mut().errors.entry(kind).or_default() += 1;
        }
        if info.code == CloseCode::Evicted {
            a.stats.rare_mut().evictions += 1;
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
        let Agent {
            group,
            software,
            outbox,
            reported,
            ..
        } = *self.agents.remove(uuid)?;
        if let Some(r) = &reported {
            legacy_memory::release(&self.budget, &r.latest);
        }
        self.texts.release(group);
        self.texts.release(software);
        let ids: Vec<u64> = outbox.ids().map(|(id, _)| id).collect();
        for id in &ids {
            self.pushes.mark(*id, *uuid, Delivery::Cancelled);
        }
        Some(ids)
    }

    /// Makes sure an agent entry exists (for pushes to a uuid that has a
    /// key but has not connected yet, and for recovered pushes).
    pub fn ensure_agent(&mut self, uuid: Uuid) {
        let empty = self.texts.empty();
        self.agents
            .get_or_insert_with(uuid, || Agent::new(uuid, empty));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 agent peer named `name` in `group` (shared by the registry's
    /// test modules).
    pub(super) fn peer(name: &str, group: &str) -> Peer {
        Peer {
            uuid: Uuid::from_text(name).unwrap(),
            version: Version::V2,
            role: Role::Agent,
            group: group.into(),
            sealed: true,
            minor: 0,
            software: "t".into(),
            key_id: 0,
            inbox: None,
        }
    }

    /// Any peer address.
    pub(super) fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn connections_name_their_agent_or_subscriber_uuid_until_closed() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        for i in 1..=3 {
            r.conn_opened(ConnHandle::new(i));
        }
        r.joined(1, &peer("a", "g"), addr(), t, 0);
        let mut sub = peer("s", "");
        sub.role = Role::Subscriber;
        r.joined(2, &sub, addr(), t, 0);
        assert_eq!(r.uuid_of(1), Some(peer("a", "g").uuid));
        assert_eq!(r.uuid_of(2), Some(sub.uuid));
        assert_eq!(r.uuid_of(3), None, "a connection that never joined");
        assert!(r.agent(&sub.uuid).is_none(), "a subscriber is no agent");
        let info = CloseInfo {
            code: CloseCode::Normal,
            reason: "x".into(),
            by_peer: true,
            frame_error: None,
        };
        r.conn_closed(2, &info, 0);
        assert_eq!(r.uuid_of(2), None);
        assert!(r.subscriber_uuids.is_empty());
        r.conn_closed(1, &info, 0);
        assert!(r.forget(&peer("a", "g").uuid).is_some());
        assert!(
            r.texts.is_empty(),
            "its group and software texts go with it"
        );
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
}
