//! Agent and master sessions wired back to back, with simulated time.
//!
//! No sockets and no sleeping: bytes are moved between the two state
//! machines by [`Net::pump`], and time jumps from deadline to deadline in
//! [`Net::advance`], so every timing rule is checked exactly and instantly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::agent::{AgentConfig, AgentEvent, AgentSession};
use super::dedup::RecentIds;
use super::legacy::LegacyFanout;
use super::liveness::Keepalive;
use super::master::{KeyLookup, MasterConfig, MasterEvent, MasterSession};
use super::outbox::{Outbox, OutboxLimits};
use super::{Clock, CloseInfo, Entropy, EntropyFailed};
use crate::proto::frame::{Compress, Encode, SharedBody, encode};
use crate::proto::v2::{self, AckStatus, CloseCode, Message, Role};
use crate::proto::{FrameDecoder, HEADER_LEN, MsgType, Uuid, Version};

const PSK: [u8; 32] = [0x42; 32];

fn uuid() -> Uuid {
    Uuid::from_text("0123456789abcdef0123456789abcdefA").unwrap()
}

/// A deterministic random source (splitmix64 from a seed): handshakes in
/// these tests are the same bytes on every run.
struct Seq(u64);

impl Entropy for Seq {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed> {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// A random source that has failed.
struct Broken;

impl Entropy for Broken {
    fn fill(&mut self, _: &mut [u8]) -> Result<(), EntropyFailed> {
        Err(EntropyFailed)
    }
}

/// The time now, as a router that booted in 1970 sees it.
fn now() -> Clock {
    Clock {
        mono: Instant::now(),
        unix_ms: 0,
    }
}

/// A keyring of one device key.
struct OneKey(Uuid, [u8; 32]);

impl KeyLookup for OneKey {
    fn psk_for(&self, uuid: &Uuid) -> Option<[u8; 32]> {
        (*uuid == self.0).then_some(self.1)
    }
}

fn agent_cfg() -> AgentConfig {
    AgentConfig {
        uuid: uuid(),
        group: "site-a".into(),
        psk: Some(PSK),
        ..AgentConfig::default()
    }
}

fn master_cfg() -> MasterConfig {
    MasterConfig {
        legacy_v1: true,
        ..MasterConfig::default()
    }
}

struct Net {
    now: Clock,
    agent: AgentSession,
    master: MasterSession,
    keys: OneKey,
    /// The master's random source.
    rng: Seq,
    agent_events: Vec<AgentEvent>,
    master_events: Vec<MasterEvent>,
    /// Deliver agent -> master bytes (false: they vanish, a half-open link).
    up: bool,
    /// Deliver master -> agent bytes.
    down: bool,
}

impl Net {
    fn new(a: AgentConfig, m: MasterConfig) -> Net {
        let now = Clock {
            mono: Instant::now(),
            unix_ms: 0, // a router that booted in 1970
        };
        let agent = AgentSession::new(a, RecentIds::new(16), now, &mut Seq(2));
        Net {
            master: MasterSession::new(Arc::new(m), now),
            agent,
            now,
            keys: OneKey(uuid(), PSK),
            rng: Seq(3),
            agent_events: Vec::new(),
            master_events: Vec::new(),
            up: true,
            down: true,
        }
    }

    fn connected() -> Net {
        let mut n = Net::new(agent_cfg(), master_cfg());
        n.pump();
        assert!(n.agent.is_open(), "{:?}", n.agent_events);
        assert!(matches!(n.master_events[0], MasterEvent::Joined(_)));
        n
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.agent.poll_transmit() {
                moved = true;
                if self.up {
                    self.master
                        .handle_input(&b, self.now, &self.keys, &mut self.rng);
                }
            }
            while let Some(b) = self.master.poll_transmit() {
                moved = true;
                if self.down {
                    self.agent.handle_input(&b, self.now);
                }
            }
            while let Some(e) = self.agent.poll_event() {
                self.agent_events.push(e);
            }
            while let Some(e) = self.master.poll_event() {
                self.master_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances simulated time by `d`, firing every deadline on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now.mono + d;
        loop {
            let next = [self.agent.poll_timeout(), self.master.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|&t| t <= end)
                .min();
            let Some(t) = next else { break };
            let step = t.saturating_duration_since(self.now.mono);
            self.now = self.now.advance(step);
            self.agent.handle_timeout(self.now);
            self.master.handle_timeout(self.now);
            self.pump();
            if self.agent.is_closed() && self.master.is_closed() {
                break;
            }
        }
        let rest = end.saturating_duration_since(self.now.mono);
        self.now = self.now.advance(rest);
    }

    fn master_closed(&self) -> Option<&CloseInfo> {
        self.master_events.iter().find_map(|e| match e {
            MasterEvent::Closed(c) => Some(c),
            _ => None,
        })
    }

    fn agent_closed(&self) -> Option<&CloseInfo> {
        self.agent_events.iter().find_map(|e| match e {
            AgentEvent::Closed(c) => Some(c),
            _ => None,
        })
    }
}

#[test]
fn sealed_handshake_joins_after_key_confirmation() {
    let mut n = Net::new(agent_cfg(), master_cfg());
    // Agent -> master: the Noise message 1 only.
    let hello = n.agent.poll_transmit().unwrap();
    assert_eq!(&hello[..4], &[2, MsgType::Hello.as_u8(), 1, 0]);
    n.master.handle_input(&hello, n.now, &n.keys, &mut Seq(1));
    // Not joined yet: message 1 alone could be a replay.
    assert!(n.master.poll_event().is_none());
    let welcome = n.master.poll_transmit().unwrap();
    assert_eq!(&welcome[..3], &[2, MsgType::Welcome.as_u8(), 1]);
    n.agent.handle_input(&welcome, n.now);
    n.pump();
    let Some(MasterEvent::Joined(peer)) = n.master_events.first() else {
        panic!("{:?}", n.master_events);
    };
    assert!(peer.sealed);
    assert_eq!((peer.group.as_str(), peer.role), ("site-a", Role::Agent));
    assert!(matches!(n.agent_events[0], AgentEvent::Connected { .. }));
    assert_eq!(n.master.peer().unwrap().uuid, uuid());
}

#[test]
fn replayed_hello_never_joins() {
    // An attacker replays a recorded message 1 to a fresh session: the
    // master answers, but no sealed frame can follow, so nobody joins and
    // the handshake times out.
    let mut n = Net::new(agent_cfg(), master_cfg());
    let hello = n.agent.poll_transmit().unwrap();
    let mut m = MasterSession::new(Arc::new(master_cfg()), n.now);
    m.handle_input(&hello, n.now, &n.keys, &mut Seq(1));
    assert!(m.poll_transmit().is_some());
    m.handle_timeout(n.now.advance(Duration::from_secs(10)));
    assert!(matches!(
        m.poll_event(),
        Some(MasterEvent::Closed(CloseInfo {
            code: CloseCode::HandshakeTimeout,
            ..
        }))
    ));
}

#[test]
fn wrong_key_is_named_on_both_sides() {
    let mut n = Net::new(agent_cfg(), master_cfg());
    n.keys = OneKey(uuid(), [0x43; 32]);
    n.pump();
    let m = n.master_closed().unwrap();
    assert_eq!(m.code, CloseCode::AuthFailed);
    assert!(m.reason.contains("authentication failed"), "{}", m.reason);
    let a = n.agent_closed().unwrap();
    assert_eq!(a.code, CloseCode::AuthFailed);
    assert!(
        a.by_peer && a.reason.contains("master refused"),
        "{}",
        a.reason
    );
}

#[test]
fn unknown_uuid_is_refused() {
    let mut n = Net::new(agent_cfg(), master_cfg());
    n.keys = OneKey(Uuid::from_text("other").unwrap(), PSK);
    n.pump();
    assert!(
        n.master_closed()
            .unwrap()
            .reason
            .contains("no key for uuid")
    );
    assert_eq!(n.agent_closed().unwrap().code, CloseCode::AuthFailed);
}

#[test]
fn replayed_welcome_is_rejected_by_the_agent() {
    // Record a Welcome from one session and feed it to another: the agent
    // sees that this master does not hold the session's keys.
    let mut n1 = Net::new(agent_cfg(), master_cfg());
    let hello = n1.agent.poll_transmit().unwrap();
    n1.master
        .handle_input(&hello, n1.now, &n1.keys, &mut Seq(1));
    let old_welcome = n1.master.poll_transmit().unwrap();

    let mut n2 = Net::new(agent_cfg(), master_cfg());
    // A new session draws fresh randomness (the same seed would make the
    // old Welcome a perfect replay of this very handshake).
    n2.agent = AgentSession::new(agent_cfg(), RecentIds::new(16), n2.now, &mut Seq(99));
    n2.agent.handle_input(&old_welcome, n2.now);
    n2.pump();
    let a = n2.agent_closed().unwrap();
    assert_eq!(a.code, CloseCode::AuthFailed);
    assert!(a.reason.contains("failed to prove"), "{}", a.reason);
}

#[test]
fn plaintext_needs_the_master_to_allow_it() {
    let mut a = agent_cfg();
    a.psk = None;
    let mut n = Net::new(a.clone(), master_cfg());
    n.pump();
    assert!(
        n.master_closed()
            .unwrap()
            .reason
            .contains("plaintext sessions are disabled")
    );
    assert_eq!(n.agent_closed().unwrap().code, CloseCode::AuthFailed);

    let mut m = master_cfg();
    m.allow_plaintext = true;
    let mut n = Net::new(a, m);
    n.pump();
    assert!(n.agent.is_open());
    let Some(MasterEvent::Joined(peer)) = n.master_events.first() else {
        panic!()
    };
    assert!(!peer.sealed);
}

#[test]
fn heartbeats_keep_both_alive_and_measure_rtt() {
    let mut n = Net::connected();
    n.advance(Duration::from_secs(300));
    assert!(!n.agent.is_closed() && !n.master.is_closed());
    // One heartbeat at connect, then one per 10 s.
    assert_eq!(n.agent.counters().heartbeats, 31);
    let acks = n
        .agent_events
        .iter()
        .filter(|e| matches!(e, AgentEvent::HeartbeatAck { .. }))
        .count();
    assert_eq!(acks, 31);
}

#[test]
fn master_evicts_a_silent_agent_at_interval_times_misses() {
    let mut n = Net::connected();
    let joined_at = n.now.mono;
    n.up = false; // the agent's frames stop arriving
    n.advance(Duration::from_millis(29_999));
    assert!(!n.master.is_closed());
    n.advance(Duration::from_millis(1));
    let c = n.master_closed().unwrap();
    assert_eq!(c.code, CloseCode::Evicted);
    assert_eq!(n.now.mono - joined_at, Duration::from_secs(30));
}

#[test]
fn agent_detects_a_half_open_connection() {
    let mut n = Net::connected();
    n.down = false; // the master's replies stop arriving
    n.advance(Duration::from_secs(29));
    assert!(!n.agent.is_closed());
    n.advance(Duration::from_secs(1));
    let c = n.agent_closed().unwrap();
    assert_eq!(c.code, CloseCode::Evicted);
    assert!(c.reason.contains("half-open"), "{}", c.reason);
}

#[test]
fn keepalive_comes_from_the_master() {
    let mut m = master_cfg();
    m.keepalive = Keepalive {
        interval: Duration::from_secs(2),
        miss_limit: 5,
    };
    let mut n = Net::new(agent_cfg(), m);
    n.pump();
    assert_eq!(n.agent.keepalive().interval, Duration::from_secs(2));
    n.advance(Duration::from_secs(20));
    assert_eq!(n.agent.counters().heartbeats, 11);
}

#[test]
fn handshake_timeout_on_a_silent_connection() {
    let t0 = now();
    let mut m = MasterSession::new(Arc::new(MasterConfig::default()), t0);
    assert_eq!(m.poll_timeout(), Some(t0.mono + Duration::from_secs(10)));
    m.handle_timeout(t0.advance(Duration::from_secs(9)));
    assert!(!m.is_closed());
    m.handle_timeout(t0.advance(Duration::from_secs(10)));
    assert!(m.is_closed());
    assert!(m.poll_transmit().is_some(), "a v2 peer is told why");
}

#[test]
fn with_legacy_v1_a_silent_connection_waits_the_legacy_idle_time() {
    // It may be an old client that connects first and talks later: the
    // original kept it until its idle check, and closed without a word.
    let t0 = now();
    let mut m = MasterSession::new(Arc::new(master_cfg()), t0);
    assert_eq!(m.poll_timeout(), Some(t0.mono + Duration::from_secs(150)));
    m.handle_timeout(t0.advance(Duration::from_secs(149)));
    assert!(!m.is_closed());
    m.handle_timeout(t0.advance(Duration::from_secs(150)));
    assert!(m.is_closed());
    assert!(m.poll_transmit().is_none());
    // A peer whose first bytes are v2 still gets the handshake timeout.
    let mut m = MasterSession::new(Arc::new(master_cfg()), t0);
    m.handle_input(&[2, 1], t0, &OneKey(uuid(), PSK), &mut Seq(1));
    assert_eq!(m.poll_timeout(), Some(t0.mono + Duration::from_secs(10)));
}

#[test]
fn legacy_connection_idle_time_is_its_own() {
    let t0 = now();
    let mut m = MasterSession::new(Arc::new(master_cfg()), t0);
    m.handle_input(
        &v1_frame(3, 0, 0, b""),
        t0,
        &OneKey(uuid(), PSK),
        &mut Seq(1),
    );
    assert!(m.poll_transmit().is_some());
    // The v2 rule (10 s x 3) does not apply...
    m.handle_timeout(t0.advance(Duration::from_secs(149)));
    assert!(!m.is_closed());
    // ...the legacy idle time does, and nothing is written.
    assert_eq!(m.poll_timeout(), Some(t0.mono + Duration::from_secs(150)));
    m.handle_timeout(t0.advance(Duration::from_secs(150)));
    assert!(m.is_closed());
    assert!(m.poll_transmit().is_none());
}

fn push(id: u64) -> Arc<v2::Push> {
    Arc::new(v2::Push {
        id,
        sender: "api".into(),
        group: String::new(),
        body: format!("message {id}").into_bytes(),
    })
}

/// Sends everything due from `outbox` into the master session.
fn flush_outbox(n: &mut Net, outbox: &mut Outbox, l: &OutboxLimits) {
    while let Some(p) = outbox.next_due(n.now.mono, l) {
        n.master.send_push(&p).unwrap();
    }
    n.pump();
}

fn pushes_seen(n: &Net) -> Vec<u64> {
    n.agent_events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Push(p) => Some(p.id),
            _ => None,
        })
        .collect()
}

fn acks_seen(n: &mut Net, outbox: &mut Outbox) -> Vec<(u64, AckStatus)> {
    let mut acks = Vec::new();
    for e in n.master_events.drain(..) {
        if let MasterEvent::PushAcked(a) = e {
            outbox.ack(a.id);
            acks.push((a.id, a.status));
        }
    }
    acks
}

#[test]
fn push_ack_and_redelivery_after_reconnect() {
    let l = OutboxLimits::default();
    let mut outbox = Outbox::new();
    for id in 1..=3 {
        outbox.enqueue(push(id), &l).unwrap();
    }
    let mut n = Net::connected();
    flush_outbox(&mut n, &mut outbox, &l);
    assert_eq!(pushes_seen(&n), [1, 2, 3]);
    // The consumer takes 1 and 2; 2's ack is lost with the connection.
    n.agent.ack_push(1).unwrap();
    n.pump();
    n.up = false;
    n.agent.ack_push(2).unwrap();
    n.pump();
    assert_eq!(acks_seen(&mut n, &mut outbox), [(1, AckStatus::Delivered)]);
    assert_eq!(outbox.len(), 2);

    // Reconnect: a new pair of sessions, the agent keeps its memory.
    outbox.disconnected();
    let recent = std::mem::replace(
        &mut n.agent,
        AgentSession::new(agent_cfg(), RecentIds::new(1), n.now, &mut Seq(2)),
    )
    .into_recent();
    n.agent = AgentSession::new(agent_cfg(), recent, n.now, &mut Seq(2));
    n.master = MasterSession::new(Arc::new(master_cfg()), n.now);
    n.up = true;
    n.agent_events.clear();
    n.pump();
    flush_outbox(&mut n, &mut outbox, &l);
    // 2 was delivered before: answered as a duplicate, not redelivered.
    // 3 was never taken: delivered again.
    assert_eq!(pushes_seen(&n), [3]);
    assert_eq!(n.agent.counters().duplicates, 1);
    n.agent.ack_push(3).unwrap();
    n.pump();
    let acks = acks_seen(&mut n, &mut outbox);
    assert_eq!(acks, [(2, AckStatus::Duplicate), (3, AckStatus::Delivered)]);
    assert!(outbox.is_empty());
}

#[test]
fn refused_push_is_resent_later_and_resend_during_delivery_is_suppressed() {
    let l = OutboxLimits {
        resend_after: Duration::from_secs(5),
        ..OutboxLimits::default()
    };
    let mut outbox = Outbox::new();
    outbox.enqueue(push(7), &l).unwrap();
    let mut n = Net::connected();
    flush_outbox(&mut n, &mut outbox, &l);
    assert_eq!(pushes_seen(&n), [7]);

    // Resent while the consumer still works on it: no second event.
    n.advance(Duration::from_secs(5));
    flush_outbox(&mut n, &mut outbox, &l);
    assert_eq!(pushes_seen(&n), [7]);

    // The consumer gives up (inbox full): no ack, the master resends.
    n.agent.refuse_push(7);
    n.advance(Duration::from_secs(5));
    flush_outbox(&mut n, &mut outbox, &l);
    assert_eq!(pushes_seen(&n), [7, 7]);
    n.agent.ack_push(7).unwrap();
    n.pump();
    assert_eq!(acks_seen(&mut n, &mut outbox), [(7, AckStatus::Delivered)]);
    assert!(outbox.is_empty());
}

#[test]
fn pending_pushes_are_bounded() {
    let mut a = agent_cfg();
    a.max_pending_pushes = 2;
    let mut n = Net::new(a, master_cfg());
    n.pump();
    for id in 1..=3 {
        n.master.send_push(&push(id)).unwrap();
    }
    n.pump();
    assert_eq!(pushes_seen(&n), [1, 2]);
    assert_eq!(n.agent.counters().refused_pending_full, 1);
}

#[test]
fn reports_and_subscriptions_reach_the_master() {
    let mut n = Net::connected();
    let r = v2::Report {
        seq: 1,
        unix_ms: 0,
        age_ms: 0,
        dropped: 0,
        health: v2::Health {
            cpu_permille: 123,
            ..v2::Health::default()
        },
    };
    n.agent.send_report(&r).unwrap();
    n.agent.subscribe(v2::Scope::All).unwrap();
    n.pump();
    assert!(n.master_events.contains(&MasterEvent::Report(Box::new(r))));
    assert!(
        n.master_events
            .contains(&MasterEvent::Subscribed(v2::Scope::All))
    );
}

#[test]
fn a_shared_event_body_reaches_sealed_subscribers_compressed_or_not() {
    let mut big = v2::Report::default();
    big.health.custom = (0..40)
        .map(|i| (format!("metric-{i}"), "the same value again".into()))
        .collect();
    for (compress, report) in [
        (Compress::Never, v2::Report::default()),
        (Compress::IfSmaller(6), v2::Report::default()),
        (Compress::IfSmaller(6), big),
    ] {
        let body = SharedBody::new(v2::event_body(b"other", "g", &report));
        // Two subscribers, each with its own keys, from one body.
        for _ in 0..2 {
            let mut n = Net::new(
                agent_cfg(),
                MasterConfig {
                    compress,
                    ..master_cfg()
                },
            );
            n.pump();
            n.master.send_event(&body).unwrap();
            n.pump();
            let want = v2::Event {
                agent: b"other".to_vec(),
                group: "g".into(),
                report: report.clone(),
            };
            assert!(
                n.agent_events.contains(&AgentEvent::Event(want)),
                "{compress:?}: {:?}",
                n.agent_events
            );
        }
    }
}

#[test]
fn tampered_sealed_frame_closes_with_the_reason() {
    let mut n = Net::connected();
    n.agent.send_report(&v2::Report::default()).unwrap();
    let mut f = n.agent.poll_transmit().unwrap();
    let last = f.len() - 1;
    f[last] ^= 0x80;
    n.master.handle_input(&f, n.now, &n.keys, &mut Seq(1));
    n.pump();
    let c = n.master_closed().unwrap();
    assert_eq!(
        (c.code, c.frame_error),
        (CloseCode::BadFrame, Some("unauthentic"))
    );
    // The agent is told, in a sealed Close.
    let a = n.agent_closed().unwrap();
    assert_eq!(a.code, CloseCode::BadFrame);
    assert!(a.by_peer);
}

#[test]
fn slow_consumer_is_closed() {
    let mut m = master_cfg();
    m.tx = super::TxLimits {
        max_frames: 4,
        max_bytes: 1 << 20,
    };
    let mut n = Net::new(agent_cfg(), m);
    n.pump();
    let mut result = Ok(());
    for id in 0..5 {
        result = n.master.send_push(&push(id));
    }
    assert_eq!(result, Err(super::master::SendError::SlowConsumer));
    n.pump();
    assert_eq!(n.master_closed().unwrap().code, CloseCode::SlowConsumer);
}

#[test]
fn newer_wire_version_gets_a_close_it_can_read() {
    let mut m = MasterSession::new(Arc::new(master_cfg()), now());
    let mut f = [0u8; HEADER_LEN];
    f[0] = 3;
    f[1] = 1;
    f[4] = HEADER_LEN as u8;
    let crc = crc32fast::hash(&f[0..8]);
    f[8..12].copy_from_slice(&crc.to_le_bytes());
    m.handle_input(&f, now(), &OneKey(uuid(), PSK), &mut Seq(1));
    let reply = m.poll_transmit().unwrap();
    let mut d = FrameDecoder::new(1 << 20);
    d.feed(&reply).unwrap();
    let frame = d.next_frame().unwrap().unwrap();
    assert_eq!(frame.header.msg_type, MsgType::Close);
    let Message::Close(c) = Message::decode(MsgType::Close, &frame.body).unwrap() else {
        panic!()
    };
    assert_eq!(c.code, CloseCode::UnsupportedVersion);
    assert!(
        c.reason.contains("unsupported wire version 3"),
        "{}",
        c.reason
    );
    assert!(m.is_closed());
}

#[test]
fn bad_frames_close_with_their_kind() {
    type Spoil = fn(&mut [u8]);
    let cases: [(&str, Spoil); 4] = [
        ("bad_crc", |f| f[8] ^= 1),
        ("unknown_type", |f| f[1] = 77),
        ("bad_flag", |f| f[3] = 2),
        ("too_short", |f| f[4] = 10),
    ];
    for (kind, spoil) in cases {
        let mut n = Net::connected();
        n.agent.send_report(&v2::Report::default()).unwrap();
        let mut f = n.agent.poll_transmit().unwrap();
        spoil(&mut f);
        if kind != "bad_crc" {
            let crc = crc32fast::hash(&f[0..8]);
            f[8..12].copy_from_slice(&crc.to_le_bytes());
        }
        n.master.handle_input(&f, n.now, &n.keys, &mut Seq(1));
        n.pump();
        assert_eq!(n.master_closed().unwrap().frame_error, Some(kind), "{kind}");
    }
}

// ---- legacy v1, checked byte by byte ----

fn v1_frame(t: u8, cipher: u8, compress: u8, body: &[u8]) -> Vec<u8> {
    let e = Encode {
        version: Version::V1,
        msg_type: MsgType::from_u8(Version::V1, t).unwrap(),
        uuid: uuid(),
        compress: if compress == 1 {
            Compress::Always(9)
        } else {
            Compress::Never
        },
        v1_cipher_flag: cipher == 1,
        max_frame: 1 << 20,
    };
    encode(&e, body, None).unwrap()
}

fn legacy_master() -> MasterSession {
    MasterSession::new(Arc::new(master_cfg()), now())
}

fn one_frame(bytes: &[u8]) -> crate::proto::Frame {
    let mut d = FrameDecoder::new(1 << 20);
    d.feed(bytes).unwrap();
    d.next_frame().unwrap().unwrap()
}

#[test]
fn legacy_key_request() {
    let mut m = legacy_master();
    let keys = OneKey(uuid(), PSK);
    m.handle_input(&v1_frame(1, 1, 0, b"{}"), now(), &keys, &mut Seq(1));
    let reply = m.poll_transmit().unwrap();
    // type 2, cipher flag 0, compress echoed (0), the requester's uuid.
    assert_eq!(&reply[..4], &[1, 2, 0, 0]);
    assert_eq!(&reply[12..HEADER_LEN], &uuid().0);
    let body = std::str::from_utf8(&reply[HEADER_LEN..]).unwrap();
    let prefix = r#"{"errCode":0,"msg":"success","data":{"cipher_key":""#;
    assert!(body.starts_with(prefix) && body.ends_with("\"}}"), "{body}");
    let key = &body[prefix.len()..body.len() - 3];
    assert_eq!(key.len(), 32);
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
    // Same key for the same connection.
    m.handle_input(&v1_frame(1, 0, 1, b""), now(), &keys, &mut Seq(1));
    let f = one_frame(&m.poll_transmit().unwrap());
    assert!(f.header.compress);
    let again = crate::proto::compress::inflate_capped(&f.body, 1 << 20).unwrap();
    assert_eq!(&again[prefix.len()..again.len() - 3], key.as_bytes());
}

#[test]
fn legacy_heartbeat_reply_bytes() {
    let mut m = legacy_master();
    let now = Clock {
        mono: Instant::now(),
        unix_ms: 1_700_000_123_456,
    };
    m.handle_input(
        &v1_frame(3, 0, 0, b""),
        now,
        &OneKey(uuid(), PSK),
        &mut Seq(1),
    );
    let body = br#"{"errCode":0,"msg":"success","data":{"heartbeat":1700000123}}"#;
    let mut expected = vec![1u8, 4, 0, 0];
    expected.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    let crc = crc32fast::hash(&expected);
    expected.extend_from_slice(&crc.to_le_bytes());
    expected.extend_from_slice(&uuid().0);
    expected.extend_from_slice(body);
    assert_eq!(m.poll_transmit().unwrap(), expected);
}

#[test]
fn legacy_subscribe_and_fanout() {
    let mut sub = legacy_master();
    let keys = OneKey(uuid(), PSK);
    sub.handle_input(
        &v1_frame(5, 0, 0, br#"{"code":"demo","status":"1"}"#),
        now(),
        &keys,
        &mut Seq(1),
    );
    assert!(sub.poll_transmit().is_none(), "no reply on success");
    let events: Vec<_> = std::iter::from_fn(|| sub.poll_event()).collect();
    assert!(events.contains(&MasterEvent::LegacySubscribed {
        code: "demo".into()
    }));

    let mut reporter = legacy_master();
    // A compressed report: the original forwarded it still deflated.
    let report = br#"{"cpu":"12%","path":"/var"}"#;
    reporter.handle_input(&v1_frame(7, 0, 1, report), now(), &keys, &mut Seq(1));
    assert!(reporter.poll_transmit().is_none());
    let body = std::iter::from_fn(|| reporter.poll_event())
        .find_map(|e| match e {
            MasterEvent::LegacyReport(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!(body, report);
    sub.send_legacy_fanout(&LegacyFanout::new(body)).unwrap();
    let f = sub.poll_transmit().unwrap();
    assert_eq!(&f[..4], &[1, 6, 0, 0]);
    assert_eq!(
        &f[HEADER_LEN..],
        br#"{"errCode":0,"msg":"success","data":"{\"cpu\":\"12%\",\"path\":\"\/var\"}"}"#
    );
}

#[test]
fn legacy_bad_subscribe_gets_the_error_then_close() {
    let mut m = legacy_master();
    m.handle_input(
        &v1_frame(5, 0, 0, br#"{"status":"1"}"#),
        now(),
        &OneKey(uuid(), PSK),
        &mut Seq(1),
    );
    let f = m.poll_transmit().unwrap();
    assert_eq!(f[1], 6);
    assert_eq!(
        &f[HEADER_LEN..],
        br#"{"errCode":-1,"msg":"\u9519\u8bef\u683c\u5f0f\u7684\u6d88\u606f\u4f53","data":{"status":"1"}}"#
    );
    assert!(m.is_closed());
}

#[test]
fn legacy_master_only_types_close_and_v1_can_be_disabled() {
    for t in [2u8, 4, 6] {
        let mut m = legacy_master();
        m.handle_input(
            &v1_frame(t, 0, 0, b""),
            now(),
            &OneKey(uuid(), PSK),
            &mut Seq(1),
        );
        assert!(m.is_closed(), "type {t}");
        assert!(m.poll_transmit().is_none());
    }
    let mut m = MasterSession::new(Arc::new(MasterConfig::default()), now());
    m.handle_input(
        &v1_frame(3, 0, 0, b""),
        now(),
        &OneKey(uuid(), PSK),
        &mut Seq(1),
    );
    assert!(m.is_closed());
    let Some(MasterEvent::Closed(c)) = m.poll_event() else {
        panic!()
    };
    assert!(c.reason.contains("--legacy-v1"));
}

#[test]
fn legacy_agent_against_master() {
    let mut a = agent_cfg();
    a.wire = Version::V1;
    let mut n = Net::new(a, master_cfg());
    n.pump();
    assert!(matches!(n.agent_events[0], AgentEvent::Connected { .. }));
    n.agent.send_legacy_report(br#"{"cpu":1}"#).unwrap();
    n.pump();
    assert!(
        n.master_events
            .contains(&MasterEvent::LegacyReport(br#"{"cpu":1}"#.to_vec()))
    );
    n.advance(Duration::from_secs(100));
    assert!(!n.agent.is_closed() && !n.master.is_closed());
    assert!(n.agent.counters().heartbeats >= 10);
}

#[test]
fn a_session_pair_replays_byte_for_byte() {
    // Time and randomness come from the caller: the same inputs give the
    // same handshake and the same sealed frames, run after run.
    let run = || {
        let t0 = now();
        let mut a = AgentSession::new(agent_cfg(), RecentIds::new(4), t0, &mut Seq(7));
        let mut m = MasterSession::new(Arc::new(master_cfg()), t0);
        let keys = OneKey(uuid(), PSK);
        let mut wire = Vec::new();
        let mut rng = Seq(8);
        for _ in 0..3 {
            while let Some(b) = a.poll_transmit() {
                m.handle_input(&b, t0, &keys, &mut rng);
                wire.push(b);
            }
            while let Some(b) = m.poll_transmit() {
                a.handle_input(&b, t0);
                wire.push(b);
            }
        }
        assert!(a.is_open());
        a.send_report(&v2::Report::default()).unwrap();
        wire.extend(std::iter::from_fn(|| a.poll_transmit()));
        wire
    };
    assert_eq!(run(), run());
}

#[test]
fn a_failed_random_source_closes_instead_of_handshaking() {
    let t0 = now();
    let mut a = AgentSession::new(agent_cfg(), RecentIds::new(4), t0, &mut Broken);
    assert!(a.is_closed());
    let closed = std::iter::from_fn(|| a.poll_event()).last();
    assert!(
        matches!(&closed, Some(AgentEvent::Closed(info)) if info.reason.contains("random")),
        "{closed:?}"
    );

    let mut n = Net::new(agent_cfg(), master_cfg());
    let hello = n.agent.poll_transmit().unwrap();
    n.master.handle_input(&hello, n.now, &n.keys, &mut Broken);
    assert!(n.master.is_closed());
}
