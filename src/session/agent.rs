//! The agent's side of its one connection to a master, sans I/O.
//!
//! On creation the session queues its opening frame: a Noise handshake
//! message carrying [`v2::Hello`] (sealed sessions), a plain Hello
//! (plaintext v2), or a legacy key request (v1). It then keeps the
//! heartbeat, declares the master dead after `interval × miss_limit` of
//! silence (a half-open connection), turns pushes into events once each,
//! and acks them only when the shell says the local consumer took them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::dedup::RecentIds;
use super::liveness::{Keepalive, Liveness};
use super::{Clock, CloseInfo, Entropy, Receiver, Traffic, TxLimits, TxQueue, receive};
use crate::proto::crypto::{CryptoError, Handshake, Transport};
use crate::proto::frame::{Compress, Encode, encode, mark_handshake, open_body};
use crate::proto::v2::{self, AckStatus, Close, CloseCode, Message, Role};
use crate::proto::{Frame, FrameDecoder, FrameError, MsgType, Uuid, Version};

/// Settings of an agent's sessions.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This device's id.
    pub uuid: Uuid,
    /// Group label ("" for none).
    pub group: String,
    /// Agent, or a subscriber that only receives reports.
    pub role: Role,
    /// Pre-shared key; `None` asks for a plaintext v2 session.
    pub psk: Option<[u8; 32]>,
    /// Wire version to speak.
    pub wire: Version,
    /// Heartbeat settings until the master's Welcome says otherwise (v1
    /// keeps these).
    pub keepalive: Keepalive,
    /// Time allowed from connect to the Welcome.
    pub handshake_timeout: Duration,
    /// Report interval, told to the master.
    pub report_interval: Duration,
    /// Largest frame accepted or sent.
    pub max_frame: u32,
    /// Compression of frames sent.
    pub compress: Compress,
    /// Bound of the send queue.
    pub tx: TxLimits,
    /// Most pushes handed to the shell and not yet acked or refused.
    pub max_pending_pushes: usize,
    /// Software version text sent in Hello.
    pub software: String,
    /// The push inbox bounds told to the master in Hello, so it refuses
    /// pushes that could never fit rather than resend them forever.
    pub inbox: Option<v2::InboxLimits>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            uuid: Uuid::ZERO,
            group: String::new(),
            role: Role::Agent,
            psk: None,
            wire: Version::V2,
            keepalive: Keepalive::default(),
            handshake_timeout: Duration::from_secs(10),
            report_interval: Duration::from_secs(10),
            max_frame: crate::proto::DEFAULT_MAX_FRAME,
            compress: Compress::IfSmaller(crate::proto::compress::DEFAULT_LEVEL),
            tx: TxLimits {
                max_frames: 64,
                max_bytes: 256 << 10,
            },
            max_pending_pushes: 64,
            software: concat!("edge-gw ", env!("CARGO_PKG_VERSION")).to_string(),
            inbox: None,
        }
    }
}

/// What a session reports to the agent shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// The master answered the handshake (v2) or the key request (v1).
    Connected {
        /// The keepalive now in force.
        keepalive: Keepalive,
        /// Master's wall clock, Unix ms (0 unknown): lets a router that
        /// booted in 1970 date its reports.
        master_unix_ms: u64,
        /// Master's software text (v2).
        master_software: String,
    },
    /// A heartbeat was answered.
    HeartbeatAck {
        /// Round-trip time of the answered heartbeat.
        rtt: Duration,
        /// Master's wall clock, Unix ms (v1: seconds × 1000).
        master_unix_ms: u64,
    },
    /// A new push for the local consumer. Call
    /// [`AgentSession::ack_push`] once it was taken, or
    /// [`AgentSession::refuse_push`] if it could not be.
    Push(v2::Push),
    /// Another agent's report (subscriber role).
    Event(v2::Event),
    /// The master stored the result of push `id` durably (minor ≥ 1): the
    /// shell may forget its copy and stop resending it.
    PushResultStored(u64),
    /// A legacy type-6 body (v1): pushed data or a fanned-out report.
    LegacyData(Vec<u8>),
    /// The session is over; no more events follow.
    Closed(CloseInfo),
}

/// Counters kept across sessions by the shell (they live in the session
/// only for its lifetime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentCounters {
    /// Resent pushes answered as duplicates without redelivery.
    pub duplicates: u64,
    /// Pushes not taken because too many were pending (the master resends).
    pub refused_pending_full: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
}

/// Why a send was not queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Not connected yet, or closed, or the wrong wire version.
    NotOpen,
    /// The send queue is full; the item was not queued (the caller keeps
    /// it, e.g. in its store-and-forward ring).
    QueueFull,
    /// The frame could not be encoded (too large).
    Encode(FrameError),
}

enum State {
    /// Waiting for the Welcome; `None` for a plaintext Hello.
    AwaitWelcome(Option<Box<Handshake>>),
    /// A v2 session.
    Open(Option<Box<Transport>>),
    /// A legacy v1 connection.
    Legacy {
        /// Whether the key reply arrived.
        keyed: bool,
    },
    /// Over.
    Closed,
}

/// The agent's state machine for one connection.
pub struct AgentSession {
    cfg: AgentConfig,
    decoder: FrameDecoder,
    state: State,
    keepalive: Keepalive,
    created: Instant,
    live: Liveness,
    next_heartbeat: Option<Instant>,
    hb_seq: u32,
    /// The unanswered heartbeat: its sequence number and send time.
    hb_outstanding: Option<(u32, Instant)>,
    tx: TxQueue,
    events: VecDeque<AgentEvent>,
    recent: RecentIds,
    pending: VecDeque<u64>,
    counters: AgentCounters,
    traffic: Traffic,
    /// The master's [`v2::PROTO_MINOR`] from its Welcome (0 until then and
    /// for v1): results go only to masters that know them.
    master_minor: u16,
}

impl AgentSession {
    /// Starts a session at `now` and queues its opening frame. `recent` is
    /// the memory of delivered push ids, carried from session to session;
    /// `entropy` supplies the handshake's randomness.
    pub fn new(
        cfg: AgentConfig,
        recent: RecentIds,
        now: Clock,
        entropy: &mut dyn Entropy,
    ) -> AgentSession {
        let mut s = AgentSession {
            decoder: FrameDecoder::new(cfg.max_frame).with_idle_capacity(4096),
            state: State::Closed,
            keepalive: cfg.keepalive,
            created: now.mono,
            live: Liveness::new(now.mono),
            next_heartbeat: None,
            hb_seq: 0,
            hb_outstanding: None,
            tx: TxQueue::default(),
            events: VecDeque::new(),
            recent,
            pending: VecDeque::new(),
            counters: AgentCounters::default(),
            traffic: Traffic::default(),
            master_minor: 0,
            cfg,
        };
        s.open(now, entropy);
        s
    }

    fn open(&mut self, now: Clock, entropy: &mut dyn Entropy) {
        match self.cfg.wire {
            Version::V1 => {
                self.state = State::Legacy { keyed: false };
                // The legacy master ignores the key request's body.
                self.queue_frame(Version::V1, MsgType::Hello, b"", Compress::Never, false);
                self.next_heartbeat = Some(now.mono);
            }
            Version::V2 => {
                let hello = Message::Hello(v2::Hello {
                    minor: v2::PROTO_MINOR,
                    role: self.cfg.role,
                    group: self.cfg.group.clone(),
                    software: self.cfg.software.clone(),
                    interval_ms: u32::try_from(self.cfg.report_interval.as_millis())
                        .unwrap_or(u32::MAX),
                    inbox: self.cfg.inbox,
                })
                .to_body();
                match self.cfg.psk {
                    Some(psk) => {
                        let r = entropy
                            .ephemeral()
                            .map_err(|_| CryptoError::Random)
                            .and_then(|e| Handshake::initiator(&psk, &self.cfg.uuid, e))
                            .and_then(|mut hs| Ok((hs.write(&hello)?, hs)));
                        match r {
                            Ok((msg1, hs)) => {
                                self.state = State::AwaitWelcome(Some(Box::new(hs)));
                                self.queue_frame(
                                    Version::V2,
                                    MsgType::Hello,
                                    &msg1,
                                    Compress::Never,
                                    true,
                                );
                            }
                            Err(e) => self.finish(
                                CloseCode::AuthFailed,
                                format!("handshake: {e}"),
                                false,
                                None,
                            ),
                        }
                    }
                    None => {
                        self.state = State::AwaitWelcome(None);
                        self.queue_frame(
                            Version::V2,
                            MsgType::Hello,
                            &hello,
                            Compress::Never,
                            false,
                        );
                    }
                }
            }
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether reports and acks can be sent.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_) | State::Legacy { .. })
    }

    /// The keepalive in force (the master's, once connected).
    pub fn keepalive(&self) -> Keepalive {
        self.keepalive
    }

    /// Counters of this session.
    pub fn counters(&self) -> AgentCounters {
        self.counters
    }

    /// Traffic counted since the last call (then reset).
    pub fn take_traffic(&mut self) -> Traffic {
        self.traffic.take()
    }

    /// Delivered push ids, to carry into the next session.
    pub fn into_recent(self) -> RecentIds {
        self.recent
    }

    /// Delivered push ids remembered.
    pub fn recent(&self) -> &RecentIds {
        &self.recent
    }

    /// The next frame to write, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop()
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.tx.bytes()
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitWelcome(_) => Some(self.created + self.cfg.handshake_timeout),
            State::Open(_) | State::Legacy { .. } => {
                let dead = self.live.deadline(&self.keepalive);
                Some(self.next_heartbeat.map_or(dead, |h| h.min(dead)))
            }
            State::Closed => None,
        }
    }

    /// Applies timers: handshake timeout, half-open detection, heartbeats.
    pub fn handle_timeout(&mut self, now: Clock) {
        match self.state {
            State::AwaitWelcome(_) => {
                if now.mono >= self.created + self.cfg.handshake_timeout {
                    // Whole milliseconds, no float or u128: their
                    // formatting is ~15 KB of a router build (board/README.md).
                    let ms =
                        u64::try_from(self.cfg.handshake_timeout.as_millis()).unwrap_or(u64::MAX);
                    let within = if ms % 1000 == 0 {
                        format!("{} s", ms / 1000)
                    } else {
                        format!("{ms} ms")
                    };
                    self.close(
                        CloseCode::HandshakeTimeout,
                        &format!("master did not answer the handshake within {within}"),
                    );
                }
            }
            State::Open(_) | State::Legacy { .. } => {
                if self.live.is_dead(&self.keepalive, now.mono) {
                    let k = self.keepalive;
                    let reason = format!(
                        "master silent for {} s ({} heartbeats unanswered): connection is half-open or the master is stuck",
                        k.timeout().as_secs(),
                        k.miss_limit
                    );
                    return self.close(CloseCode::Evicted, &reason);
                }
                if self.next_heartbeat.is_some_and(|t| now.mono >= t) {
                    self.send_heartbeat(now.mono);
                }
            }
            State::Closed => {}
        }
    }

    fn send_heartbeat(&mut self, now: Instant) {
        let interval = self.keepalive.interval;
        // Schedule from the planned time, but never fall behind by more
        // than one interval (a suspended process must not burst).
        let next = self.next_heartbeat.map_or(now, |t| t + interval);
        self.next_heartbeat = Some(if next <= now { now + interval } else { next });
        let seq = self.hb_seq;
        self.hb_seq = self.hb_seq.wrapping_add(1);
        let sent = match self.state {
            State::Legacy { .. } => {
                self.queue_frame(Version::V1, MsgType::Heartbeat, b"", Compress::Never, false)
            }
            _ => self
                .send_v2(&Message::Heartbeat(v2::Heartbeat { seq }))
                .is_ok(),
        };
        if sent {
            self.counters.heartbeats += 1;
            if self.hb_outstanding.is_none() {
                self.hb_outstanding = Some((seq, now));
            }
        }
    }

    /// Feeds received bytes.
    pub fn handle_input(&mut self, data: &[u8], now: Clock) {
        receive(self, data, |s, frame| s.handle_frame(frame, now));
    }

    /// The transport closed without a Close frame.
    pub fn handle_eof(&mut self, reason: &str) {
        if !self.is_closed() {
            self.finish(
                CloseCode::Normal,
                format!("connection lost: {reason}"),
                true,
                None,
            );
        }
    }

    /// Closes the session, telling a v2 master why.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.is_closed() {
            return;
        }
        if let State::Open(_) | State::AwaitWelcome(None) = self.state {
            let msg = Message::Close(Close {
                code,
                reason: reason.to_string(),
            });
            let e = self.encode_opts(Version::V2, MsgType::Close, Compress::Never);
            let seal = match &mut self.state {
                State::Open(Some(t)) => Some(&mut t.send),
                _ => None,
            };
            if let Ok(bytes) = encode(&e, &msg.to_body(), seal) {
                self.tx.push_final(bytes);
            }
        }
        self.finish(code, reason.to_string(), false, None);
    }

    /// Sends a health report (v2).
    pub fn send_report(&mut self, report: &v2::Report) -> Result<(), SendError> {
        self.send_v2(&Message::Report(report.clone()))
    }

    /// Sends a legacy report body (v1, type 7 JSON).
    pub fn send_legacy_report(&mut self, body: &[u8]) -> Result<(), SendError> {
        if !matches!(self.state, State::Legacy { .. }) {
            return Err(SendError::NotOpen);
        }
        let e = self.encode_opts(Version::V1, MsgType::Report, self.cfg.compress);
        let bytes = encode(&e, body, None).map_err(SendError::Encode)?;
        self.push_tx(bytes)
    }

    /// Subscribes to other agents' reports (v2).
    pub fn subscribe(&mut self, scope: v2::Scope) -> Result<(), SendError> {
        self.send_v2(&Message::Subscribe(v2::Subscribe { scope }))
    }

    /// The local consumer took push `id`: remember it and ack it.
    pub fn ack_push(&mut self, id: u64) -> Result<(), SendError> {
        self.pending.retain(|&p| p != id);
        self.recent.insert(id);
        self.send_v2(&Message::PushAck(v2::PushAck {
            id,
            status: AckStatus::Delivered,
        }))
    }

    /// Whether the master knows push results (its Welcome said minor ≥ 1):
    /// an older master would close on the unknown message type, so the
    /// shell keeps results for a newer master instead.
    pub fn master_takes_results(&self) -> bool {
        matches!(self.state, State::Open(_)) && self.master_minor >= v2::MINOR_PUSH_RESULTS
    }

    /// Sends the local consumer's answer to a push that wanted one. The
    /// shell keeps `result` until [`AgentEvent::PushResultStored`] names
    /// it and sends it again after a reconnect; the master stores a repeat
    /// once. [`SendError::NotOpen`] as well when the master is too old to
    /// take results ([`master_takes_results`](Self::master_takes_results)).
    pub fn send_push_result(&mut self, result: &v2::PushResult) -> Result<(), SendError> {
        if !self.master_takes_results() {
            return Err(SendError::NotOpen);
        }
        self.send_v2(&Message::PushResult(result.clone()))
    }

    /// The local consumer could not take push `id` (inbox full, hook
    /// failed): no ack, so the master keeps it and resends it later.
    pub fn refuse_push(&mut self, id: u64) {
        self.pending.retain(|&p| p != id);
    }

    fn handle_frame(&mut self, frame: Frame, now: Clock) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::AwaitWelcome(hs) => {
                // Back to a live state while the Welcome is handled, so a
                // refusal in there closes with a reason (and a Close frame)
                // instead of returning early on "already closed".
                self.state = State::AwaitWelcome(None);
                self.welcome(frame, hs, now)
            }
            State::Open(mut transport) => {
                let t = frame.header.msg_type;
                let opened = if frame.header.version == Version::V2 {
                    open_body(
                        frame,
                        transport.as_deref_mut().map(|t| &mut t.recv),
                        self.cfg.max_frame,
                    )
                } else {
                    Err(FrameError::UnknownVersion(frame.header.version.as_u8()))
                };
                self.state = State::Open(transport);
                match opened.and_then(|b| Message::decode(t, &b)) {
                    Ok(m) => {
                        self.live.heard(now.mono);
                        self.v2_message(m, now);
                    }
                    Err(e) => self.bad_frame(e),
                }
            }
            State::Legacy { keyed } => {
                self.state = State::Legacy { keyed };
                self.legacy_frame(frame, now);
            }
            State::Closed => {}
        }
    }

    fn welcome(&mut self, frame: Frame, hs: Option<Box<Handshake>>, now: Clock) {
        let h = frame.header;
        if h.version != Version::V2 {
            return self.bad_frame(FrameError::UnknownVersion(h.version.as_u8()));
        }
        if h.msg_type == MsgType::Close {
            // The master refused the handshake (plain Close: no keys yet).
            let reason = v2::decode::<Close>(MsgType::Close, &frame.body)
                .map(|c| (c.code, format!("master refused: {}", c.reason)))
                .unwrap_or((
                    CloseCode::Protocol,
                    "master closed with a malformed reason".into(),
                ));
            return self.finish(reason.0, reason.1, true, None);
        }
        if h.msg_type != MsgType::Welcome || h.compress || h.cipher != hs.is_some() {
            return self.close(
                CloseCode::Protocol,
                &format!("expected welcome, got {}", h.msg_type.name()),
            );
        }
        let (payload, transport) = match hs {
            Some(mut hs) => {
                let r = hs.read(&frame.body).and_then(|p| Ok((p, hs.finish()?)));
                match r {
                    Ok((p, t)) => (p, Some(Box::new(t))),
                    Err(e) => {
                        return self.finish(
                            CloseCode::AuthFailed,
                            format!("master failed to prove the pre-shared key ({e}); check the key file and the master's keyring"),
                            false,
                            None,
                        );
                    }
                }
            }
            None => (frame.body, None),
        };
        let w: v2::Welcome = match v2::decode(MsgType::Welcome, &payload) {
            Ok(w) => w,
            Err(e) => return self.bad_frame(e),
        };
        self.state = State::Open(transport);
        self.master_minor = w.minor;
        self.live.heard(now.mono);
        if w.heartbeat_ms > 0 {
            self.keepalive = Keepalive {
                interval: Duration::from_millis(u64::from(w.heartbeat_ms)),
                miss_limit: u32::from(w.miss_limit.max(1)),
            };
        }
        self.events.push_back(AgentEvent::Connected {
            keepalive: self.keepalive,
            master_unix_ms: w.unix_ms,
            master_software: w.software,
        });
        // The first sealed frame confirms the keys to the master: send a
        // heartbeat at once rather than wait an interval.
        self.next_heartbeat = None;
        self.send_heartbeat(now.mono);
    }

    fn v2_message(&mut self, m: Message, now: Clock) {
        match m {
            Message::HeartbeatAck(a) => {
                if let Some((seq, sent)) = self.hb_outstanding
                    && seq == a.seq
                {
                    self.hb_outstanding = None;
                    self.events.push_back(AgentEvent::HeartbeatAck {
                        rtt: now.mono.saturating_duration_since(sent),
                        master_unix_ms: a.unix_ms,
                    });
                }
            }
            Message::Push(p) => self.push(p),
            Message::Event(e) => self.events.push_back(AgentEvent::Event(e)),
            Message::PushResultStored(r) => {
                self.events.push_back(AgentEvent::PushResultStored(r.id))
            }
            Message::Close(c) => {
                self.finish(c.code, format!("master closed: {}", c.reason), true, None)
            }
            other => self.close(
                CloseCode::Protocol,
                &format!("{} is not sent to an agent", other.msg_type().name()),
            ),
        }
    }

    fn push(&mut self, p: v2::Push) {
        if self.recent.contains(p.id) {
            // Delivered before; the ack was lost with a connection.
            self.counters.duplicates += 1;
            let _ = self.send_v2(&Message::PushAck(v2::PushAck {
                id: p.id,
                status: AckStatus::Duplicate,
            }));
        } else if self.pending.contains(&p.id) {
            // Resent while the consumer still has it: the ack will follow.
            self.counters.duplicates += 1;
        } else if self.pending.len() >= self.cfg.max_pending_pushes {
            // Not acked, so the master keeps it and resends later.
            self.counters.refused_pending_full += 1;
        } else {
            self.pending.push_back(p.id);
            self.events.push_back(AgentEvent::Push(p));
        }
    }

    fn legacy_frame(&mut self, frame: Frame, now: Clock) {
        let t = frame.header.msg_type;
        let body = match open_body(frame, None, self.cfg.max_frame) {
            Ok(b) => b,
            Err(e) => return self.bad_frame(e),
        };
        self.live.heard(now.mono);
        match t {
            MsgType::Welcome => {
                if let State::Legacy { keyed: false } = self.state {
                    self.state = State::Legacy { keyed: true };
                    self.events.push_back(AgentEvent::Connected {
                        keepalive: self.keepalive,
                        master_unix_ms: 0,
                        master_software: String::new(),
                    });
                }
            }
            MsgType::HeartbeatAck => {
                if let Some((_, sent)) = self.hb_outstanding.take() {
                    self.events.push_back(AgentEvent::HeartbeatAck {
                        rtt: now.mono.saturating_duration_since(sent),
                        master_unix_ms: legacy_heartbeat_secs(&body).map_or(0, |s| s * 1000),
                    });
                }
            }
            MsgType::Push => self.events.push_back(AgentEvent::LegacyData(body)),
            other => self.finish(
                CloseCode::Protocol,
                format!(
                    "legacy master sent {} (type {})",
                    other.name(),
                    other.as_u8()
                ),
                false,
                None,
            ),
        }
    }

    fn send_v2(&mut self, msg: &Message) -> Result<(), SendError> {
        let e = self.encode_opts(Version::V2, msg.msg_type(), self.cfg.compress);
        let State::Open(transport) = &mut self.state else {
            return Err(SendError::NotOpen);
        };
        let bytes = encode(
            &e,
            &msg.to_body(),
            transport.as_deref_mut().map(|t| &mut t.send),
        )
        .map_err(SendError::Encode)?;
        self.push_tx(bytes)
    }

    fn push_tx(&mut self, bytes: Vec<u8>) -> Result<(), SendError> {
        self.traffic.count_out(&bytes);
        self.tx
            .push(bytes, &self.cfg.tx)
            .map_err(|_| SendError::QueueFull)
    }

    fn encode_opts(&self, version: Version, msg_type: MsgType, compress: Compress) -> Encode {
        Encode {
            version,
            msg_type,
            uuid: self.cfg.uuid,
            compress,
            v1_cipher_flag: false,
            max_frame: self.cfg.max_frame,
        }
    }

    /// Queues an unsealed frame; `handshake` sets the cipher flag that marks
    /// a Noise handshake message.
    fn queue_frame(
        &mut self,
        version: Version,
        t: MsgType,
        body: &[u8],
        compress: Compress,
        handshake: bool,
    ) -> bool {
        let e = self.encode_opts(version, t, compress);
        match encode(&e, body, None) {
            Ok(mut bytes) => {
                if handshake {
                    mark_handshake(&mut bytes);
                }
                self.push_tx(bytes).is_ok()
            }
            Err(_) => false,
        }
    }

    fn bad_frame(&mut self, e: FrameError) {
        let kind = e.kind();
        self.close(CloseCode::BadFrame, &format!("bad frame from master: {e}"));
        if let Some(AgentEvent::Closed(info)) = self.events.back_mut() {
            info.frame_error = Some(kind);
        }
    }

    fn finish(
        &mut self,
        code: CloseCode,
        reason: String,
        by_peer: bool,
        frame_error: Option<&'static str>,
    ) {
        self.state = State::Closed;
        self.pending.clear();
        self.events.push_back(AgentEvent::Closed(CloseInfo {
            code,
            reason,
            by_peer,
            frame_error,
        }));
    }
}

/// The `heartbeat` seconds of a legacy heartbeat reply, without a JSON
/// parser (the agent-only build has none): the reply's shape is fixed.
fn legacy_heartbeat_secs(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"heartbeat\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: &[u8] = &body[at..];
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    digits[..n].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

impl Receiver for AgentSession {
    fn decoder(&mut self) -> &mut FrameDecoder {
        &mut self.decoder
    }

    fn is_closed(&self) -> bool {
        AgentSession::is_closed(self)
    }

    fn count_in(&mut self, frame: &Frame) {
        self.traffic
            .count_in(frame.header.msg_type.as_u8(), frame.header.length as usize);
    }

    fn bad_frame(&mut self, e: FrameError) {
        AgentSession::bad_frame(self, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_heartbeat_parse() {
        assert_eq!(
            legacy_heartbeat_secs(
                br#"{"errCode":0,"msg":"success","data":{"heartbeat":1700000000}}"#
            ),
            Some(1_700_000_000)
        );
        assert_eq!(legacy_heartbeat_secs(b"{}"), None);
        assert_eq!(
            legacy_heartbeat_secs(br#""heartbeat":99999999999999999999999"#),
            None
        );
    }
}
