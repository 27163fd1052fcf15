//! The master's side of one connection, sans I/O.
//!
//! The first frame decides what the connection is:
//! - a v2 `Hello` with the cipher flag: a Noise handshake with the
//!   pre-shared key found for the header's uuid; the agent counts as joined
//!   once its first sealed frame proves it holds the session keys (message
//!   1 alone could be a replay);
//! - a plain v2 `Hello`: a plaintext session, only if the master allows it;
//! - any v1 frame: a legacy connection, only with `--legacy-v1`, answered
//!   exactly as the PHP master did (see `LEGACY-PROTOCOL.md`) but without
//!   its bugs (lengths are checked, compressed bodies are inflated).
//!
//! Every close carries a [`CloseCode`] and a reason, reported as
//! [`MasterEvent::Closed`]; v2 peers are told the reason in a Close frame.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::identity::{Unauthenticated, malformed_uuid, unauthenticated_claim};
use super::legacy::{self, LegacyFanout};
use super::liveness::{Keepalive, Liveness};
use super::{Clock, CloseInfo, Entropy, Receiver, Traffic, TxLimits, TxQueue, receive};
use crate::proto::crypto::{CryptoError, Handshake, Transport};
use crate::proto::frame::{
    Compress, Encode, SharedBody, encode, encode_shared, mark_handshake, open_body,
};
use crate::proto::v2::{self, Close, CloseCode, Message, Role, Welcome};
use crate::proto::{Frame, FrameDecoder, FrameError, MsgType, Uuid, Version, v1};

/// Settings shared by all sessions of one master.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// Heartbeat interval and miss limit told to agents and enforced.
    pub keepalive: Keepalive,
    /// Time allowed from accept to a confirmed handshake.
    pub handshake_timeout: Duration,
    /// Largest frame accepted or sent.
    pub max_frame: u32,
    /// Largest frame accepted before the peer is known: the first frame of
    /// any connection and the frame confirming a sealed handshake. Kept
    /// small so that what an unauthenticated peer can make the master hold
    /// is a small fixed amount per connection, not `max_frame`.
    pub pre_auth_max_frame: u32,
    /// Accept legacy version 1 connections (unauthenticated).
    pub legacy_v1: bool,
    /// Silence after which a v1 connection is closed: the original's idle
    /// time, not `keepalive` (old clients beat every 15-60 s).
    pub legacy_idle: Duration,
    /// Accept version 2 sessions without encryption (benchmarks, labs).
    pub allow_plaintext: bool,
    /// Compression of v2 frames the master sends.
    pub compress: Compress,
    /// Bound of each connection's send queue.
    pub tx: TxLimits,
    /// Software version text sent in Welcome.
    pub software: String,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            keepalive: Keepalive::default(),
            handshake_timeout: Duration::from_secs(10),
            max_frame: crate::proto::DEFAULT_MAX_FRAME,
            pre_auth_max_frame: PRE_AUTH_MAX_FRAME,
            legacy_v1: false,
            legacy_idle: legacy::DEFAULT_LEGACY_IDLE,
            allow_plaintext: false,
            compress: Compress::IfSmaller(crate::proto::compress::DEFAULT_LEVEL),
            tx: TxLimits::default(),
            software: concat!("edge-gw ", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// The default [`MasterConfig::pre_auth_max_frame`]: room for the largest
/// sealed Hello (header, 4 KiB payload, Noise overhead) with margin, and
/// for the first frame of a legacy client, which the PHP master's runtime
/// dropped above about 8 KB anyway (`LEGACY-PROTOCOL.md`).
pub const PRE_AUTH_MAX_FRAME: u32 = 8 * 1024;

/// Where the master finds an agent's pre-shared key.
pub trait KeyLookup {
    /// The key for `uuid` (its device key, else the fleet key).
    fn psk_for(&self, uuid: &Uuid) -> Option<[u8; 32]>;

    /// Whether `uuid` has a device key of its own (not just the fleet
    /// key): such a uuid is an authenticated identity that no v1 or
    /// plaintext session may claim ([`super::identity`]). The default
    /// says no, for lookups that hold no device keys; one that does must
    /// answer, or its devices lose that protection.
    fn has_device_key(&self, _uuid: &Uuid) -> bool {
        false
    }
}

impl KeyLookup for crate::keys::Keyring {
    fn psk_for(&self, uuid: &Uuid) -> Option<[u8; 32]> {
        self.lookup(uuid.trimmed()).map(|k| *k.as_bytes())
    }

    fn has_device_key(&self, uuid: &Uuid) -> bool {
        self.has_device_key(uuid.trimmed())
    }
}

/// Who is on the other end, once known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's uuid.
    pub uuid: Uuid,
    /// Wire version.
    pub version: Version,
    /// Agent or subscriber (v1 connections count as agents).
    pub role: Role,
    /// Group label ("" for none; v1 has none).
    pub group: String,
    /// Whether frames are sealed.
    pub sealed: bool,
    /// Peer's protocol minor (v2).
    pub minor: u16,
    /// Peer's software text (v2).
    pub software: String,
    /// CRC-32 of the pre-shared key that authenticated the session (0 for
    /// none): lets a keyring reload tell whether the key still stands.
    pub key_id: u32,
    /// The push inbox the agent announced in its Hello (v2 agents since
    /// the field exists), so the master can refuse pushes it could never
    /// take.
    pub inbox: Option<v2::InboxLimits>,
}

/// What a session keeps of `peer`: everything but its group and software
/// texts (see [`MasterSession::peer`]).
fn kept(peer: &Peer) -> Peer {
    Peer {
        group: String::new(),
        software: String::new(),
        ..*peer
    }
}

/// How a v2 message to a joined peer is encoded (compression per config;
/// sealing is decided by the session state).
fn v2_encode(cfg: &MasterConfig, t: MsgType, uuid: Uuid) -> Encode {
    Encode {
        version: Version::V2,
        msg_type: t,
        uuid,
        compress: cfg.compress,
        v1_cipher_flag: false,
        max_frame: cfg.max_frame,
    }
}

/// How a v1 frame to a legacy peer is encoded: its flags echoed, compressed
/// at the legacy level when it asked, as the PHP master did.
fn legacy_encode(t: MsgType, uuid: Uuid, cipher: bool, compress: bool, max_frame: u32) -> Encode {
    Encode {
        version: Version::V1,
        msg_type: t,
        uuid,
        compress: if compress {
            Compress::Always(crate::proto::compress::LEGACY_LEVEL)
        } else {
            Compress::Never
        },
        v1_cipher_flag: cipher,
        max_frame,
    }
}

/// What a session reports to the master shell.
#[derive(Clone, Debug, PartialEq)]
pub enum MasterEvent {
    /// The peer is authenticated (or, for v1/plaintext, identified).
    Joined(Peer),
    /// A v2 health report (boxed: it is large and events are queued).
    Report(Box<v2::Report>),
    /// A v1 report body (JSON text, inflated), to fan out as the legacy
    /// master did.
    LegacyReport(Vec<u8>),
    /// A v2 subscription.
    Subscribed(v2::Scope),
    /// A v1 push registration with its `code`.
    LegacySubscribed {
        /// The `code` member as text.
        code: String,
    },
    /// An agent acknowledged a push.
    PushAcked(v2::PushAck),
    /// An unauthenticated session tried to claim a uuid that has a device
    /// key of its own and was refused before it joined (a `Closed`
    /// follows). Its own event so the shell can count it and warn: it is
    /// an impersonation attempt or a badly configured client, not an
    /// ordinary close.
    IdentityRefused {
        /// The uuid it claimed.
        uuid: Uuid,
        /// What kind of session it was.
        who: Unauthenticated,
    },
    /// An agent answered a push that wanted a result (minor ≥ 1). The
    /// shell stores it durably, then calls
    /// [`MasterSession::confirm_result`]; nothing here checks that the
    /// push wanted a result or went to this agent (the registry does).
    PushAnswered(v2::PushResult),
    /// The connection is over; no more events follow.
    Closed(CloseInfo),
}

/// Error returned when sending on a session that cannot take the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Not joined yet, already closed, or the wrong wire version for this.
    NotOpen,
    /// The send queue overflowed: the session is now closed as a slow
    /// consumer.
    SlowConsumer,
    /// The frame could not be encoded (too large).
    Encode(FrameError),
}

enum State {
    /// Nothing received yet.
    Start,
    /// Sealed handshake done; waiting for the agent's first sealed frame.
    Confirming(Box<Transport>, Box<Peer>),
    /// A v2 session (sealed or plaintext).
    Open(Option<Box<Transport>>),
    /// A legacy v1 connection (boxed: rare, and its key would make every
    /// session 24 bytes larger).
    Legacy(Box<Legacy>),
    /// Over.
    Closed,
}

/// Per-connection legacy state: what the PHP master kept in Redis.
struct Legacy {
    /// The connection's cipher key, made on the first key request.
    key: Option<[u8; 32]>,
    /// Flags of the push registration, echoed on fanned-out frames.
    subscription: Option<(bool, bool)>,
}

/// The master's state machine for one connection.
pub struct MasterSession {
    cfg: Arc<MasterConfig>,
    decoder: FrameDecoder,
    state: State,
    /// Who the peer is, without its group and software texts: those go to
    /// the shell in [`MasterEvent::Joined`] and are not kept here (two
    /// heap blocks per idle connection that the session never reads).
    peer: Option<Peer>,
    /// When a frame last proved the peer alive; before the peer is known
    /// (`Start`, `Confirming`), when the connection was accepted, which
    /// the handshake timeout counts from.
    live: Liveness,
    tx: TxQueue,
    events: VecDeque<MasterEvent>,
    /// Boxed and only while counts wait to be taken: an idle connection
    /// holds no counters.
    traffic: Option<Box<Traffic>>,
    /// The first byte the peer sent (its wire version, unless garbage):
    /// a peer that opened with v1 never gets a v2 frame, not even a Close.
    first_byte: Option<u8>,
}

impl MasterSession {
    /// A session for a connection accepted at `now`.
    pub fn new(cfg: Arc<MasterConfig>, now: Clock) -> MasterSession {
        MasterSession {
            decoder: FrameDecoder::new(cfg.pre_auth_max_frame.min(cfg.max_frame)),
            cfg,
            state: State::Start,
            peer: None,
            live: Liveness::new(now.mono),
            tx: TxQueue::default(),
            events: VecDeque::new(),
            traffic: None,
            first_byte: None,
        }
    }

    /// The peer, once joined: its uuid, version, role, sealing, minor,
    /// key and inbox. Its group and software texts are empty here: they
    /// are handed over once, in [`MasterEvent::Joined`].
    pub fn peer(&self) -> Option<&Peer> {
        match self.state {
            State::Open(_) | State::Legacy(_) => self.peer.as_ref(),
            _ => None,
        }
    }

    /// Whether the session has ended (flush [`poll_transmit`](Self::poll_transmit), then close the socket).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Last time a valid frame arrived.
    pub fn last_heard(&self) -> Instant {
        self.live.last_heard()
    }

    /// Traffic counted since the last call (then reset).
    pub fn take_traffic(&mut self) -> Traffic {
        self.traffic.take().map(|t| *t).unwrap_or_default()
    }

    /// Whether traffic was counted since the last
    /// [`take_traffic`](Self::take_traffic).
    pub fn has_traffic(&self) -> bool {
        self.traffic.is_some()
    }

    /// Whether events wait for [`poll_event`](Self::poll_event).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Bytes waiting in the send queue.
    pub fn queued_bytes(&self) -> usize {
        self.tx.bytes()
    }

    /// Heap bytes held by buffers (decoder + queue), for memory metrics.
    pub fn buffer_bytes(&self) -> usize {
        self.decoder.capacity() + self.tx.bytes()
    }

    /// Heap bytes the frame decoder holds (a partial frame, reserved in
    /// full once its header has passed the checks): what the shell charges
    /// to the master's memory budget for received bytes.
    pub fn decoder_bytes(&self) -> usize {
        self.decoder.capacity()
    }

    /// Whether the peer has proved who it is: a sealed v2 session whose
    /// keys are confirmed. Plaintext and legacy v1 peers, and every peer
    /// before its handshake is confirmed, are not; the shell refuses their
    /// memory first when the budget is short.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Open(Some(_)))
    }

    /// When the connection was accepted: until the peer is known nothing
    /// has moved [`Liveness`] on from the time the session was made.
    fn accepted(&self) -> Instant {
        self.live.last_heard()
    }

    /// The frame size cap for the current state: small until the first
    /// frame has said what the connection is (and, for a sealed session,
    /// until its keys are confirmed), `max_frame` after.
    fn frame_cap(&self) -> u32 {
        match self.state {
            State::Start | State::Confirming(..) => {
                self.cfg.pre_auth_max_frame.min(self.cfg.max_frame)
            }
            State::Open(_) | State::Legacy(_) | State::Closed => self.cfg.max_frame,
        }
    }

    /// The next frame to write, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop()
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<MasterEvent> {
        let e = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // An event is a few hundred bytes (a report): an idle
            // connection must not keep a deque of them allocated.
            self.events = VecDeque::new();
        }
        e
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Start | State::Confirming(..) => Some(self.accepted() + self.opening_timeout()),
            State::Open(_) => Some(self.live.deadline(&self.cfg.keepalive)),
            State::Legacy(_) => Some(self.live.last_heard() + self.cfg.legacy_idle),
            State::Closed => None,
        }
    }

    /// Applies timers: handshake timeout and eviction after silence.
    pub fn handle_timeout(&mut self, now: Clock) {
        match self.state {
            State::Start | State::Confirming(..) => {
                let limit = self.opening_timeout();
                if now.mono >= self.accepted() + limit {
                    let secs = limit.as_secs_f32();
                    self.close(
                        CloseCode::HandshakeTimeout,
                        &format!("no handshake within {secs} s"),
                    );
                }
            }
            State::Legacy(_) => {
                let idle = self.cfg.legacy_idle;
                if now.mono >= self.live.last_heard() + idle {
                    let reason = format!(
                        "evicted: legacy v1 connection idle for {} s",
                        idle.as_secs()
                    );
                    self.close(CloseCode::Evicted, &reason);
                }
            }
            State::Open(_) => {
                if self.live.is_dead(&self.cfg.keepalive, now.mono) {
                    let k = self.cfg.keepalive;
                    let reason = format!(
                        "evicted: silent for {} s ({} missed heartbeats of {} s)",
                        k.timeout().as_secs(),
                        k.miss_limit,
                        k.interval.as_secs_f32()
                    );
                    self.close(CloseCode::Evicted, &reason);
                }
            }
            State::Closed => {}
        }
    }

    /// Feeds received bytes. `keys` is asked for the pre-shared key of the
    /// uuid in a v2 Hello; `entropy` supplies the randomness of a handshake
    /// or a legacy key.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        now: Clock,
        keys: &dyn KeyLookup,
        entropy: &mut dyn Entropy,
    ) {
        if self.first_byte.is_none() {
            // Which wire the peer opened with decides what a refusal may
            // write back (a v1 client cannot parse a v2 Close).
            self.first_byte = data.first().copied();
        }
        receive(self, data, |s, frame| {
            s.handle_frame(frame, now, keys, entropy)
        });
    }

    /// The transport closed (EOF or error) without a Close frame.
    pub fn handle_eof(&mut self, reason: &str) {
        if !self.is_closed() {
            self.finish(CloseInfo {
                code: CloseCode::Normal,
                reason: reason.to_string(),
                by_peer: true,
                frame_error: None,
            });
        }
    }

    /// Closes the session, telling a v2 peer why.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.is_closed() {
            return;
        }
        self.send_close(code, reason);
        self.finish(CloseInfo {
            code,
            reason: reason.to_string(),
            by_peer: false,
            frame_error: None,
        });
    }

    /// Refuses a peer the session had let join (the master's registry
    /// found its uuid belongs to an authenticated agent): drops the replies
    /// not yet written (a key reply, a Welcome) so the refused peer gets
    /// nothing but the close, then closes with `code` and `reason` (a v2
    /// peer reads a Close; a legacy one is hung up on).
    pub fn refuse(&mut self, code: CloseCode, reason: &str) {
        self.tx.clear();
        self.close(code, reason);
    }

    /// Sends a push to a joined v2 agent. `want_result` is cleared toward
    /// an agent older than [`v2::MINOR_PUSH_RESULTS`]: it acks as before
    /// and the push shows as delivered without an answer.
    pub fn send_push(&mut self, push: &v2::Push) -> Result<(), SendError> {
        let mut push = push.clone();
        push.want_result &= self.peer_minor() >= v2::MINOR_PUSH_RESULTS;
        self.send_v2(&Message::Push(push))
    }

    /// Tells the agent its result for push `id` is stored (or refused for
    /// good), so it stops resending it. Only ever an answer to a
    /// [`MasterEvent::PushAnswered`], so only minor ≥ 1 agents get it.
    pub fn confirm_result(&mut self, id: u64) -> Result<(), SendError> {
        self.send_v2(&Message::PushResultStored(v2::PushResultStored { id }))
    }

    fn peer_minor(&self) -> u16 {
        self.peer.as_ref().map_or(0, |p| p.minor)
    }

    /// Sends another agent's report to a v2 subscriber.
    pub fn send_event(&mut self, body: &SharedBody) -> Result<(), SendError> {
        let State::Open(ref mut transport) = self.state else {
            return Err(SendError::NotOpen);
        };
        let Some(peer) = &self.peer else {
            return Err(SendError::NotOpen);
        };
        let e = v2_encode(&self.cfg, MsgType::Event, peer.uuid);
        let bytes = encode_shared(&e, body, transport.as_deref_mut().map(|t| &mut t.send))
            .map_err(SendError::Encode)?;
        self.queue(bytes)
    }

    /// Sends a legacy fan-out frame (type 6) to a v1 connection that
    /// registered for pushes, with its own uuid and flags, as the PHP
    /// master did: the success or the "request a key first" body by the
    /// cipher flag it registered with, each made once for all subscribers.
    pub fn send_legacy_fanout(&mut self, fanout: &LegacyFanout) -> Result<(), SendError> {
        let State::Legacy(ref legacy) = self.state else {
            return Err(SendError::NotOpen);
        };
        let Some((cipher, compress)) = legacy.subscription else {
            return Err(SendError::NotOpen);
        };
        let uuid = self.peer.as_ref().map_or(Uuid::ZERO, |p| p.uuid);
        let e = legacy_encode(MsgType::Push, uuid, cipher, compress, self.cfg.max_frame);
        let bytes = encode_shared(&e, fanout.body(cipher), None).map_err(SendError::Encode)?;
        self.queue(bytes)
    }

    fn send_v2(&mut self, msg: &Message) -> Result<(), SendError> {
        let State::Open(ref mut transport) = self.state else {
            return Err(SendError::NotOpen);
        };
        let Some(peer) = &self.peer else {
            return Err(SendError::NotOpen);
        };
        let e = v2_encode(&self.cfg, msg.msg_type(), peer.uuid);
        let bytes = encode(
            &e,
            &msg.to_body(),
            transport.as_deref_mut().map(|t| &mut t.send),
        )
        .map_err(SendError::Encode)?;
        self.queue(bytes)
    }

    fn send_legacy(
        &mut self,
        t: MsgType,
        body: &[u8],
        cipher: bool,
        compress: bool,
    ) -> Result<(), SendError> {
        let uuid = self.peer.as_ref().map_or(Uuid::ZERO, |p| p.uuid);
        let e = legacy_encode(t, uuid, cipher, compress, self.cfg.max_frame);
        let bytes = encode(&e, body, None).map_err(SendError::Encode)?;
        self.queue(bytes)
    }

    fn queue(&mut self, bytes: Vec<u8>) -> Result<(), SendError> {
        self.traffic
            .get_or_insert_with(Box::default)
            .count_out(&bytes);
        match self.tx.push(bytes, &self.cfg.tx) {
            Ok(()) => Ok(()),
            Err(_) => {
                let (n, b) = (self.tx.len(), self.tx.bytes());
                self.tx.clear();
                self.close(
                    CloseCode::SlowConsumer,
                    &format!("slow consumer: send queue full ({n} frames, {b} bytes)"),
                );
                Err(SendError::SlowConsumer)
            }
        }
    }

    fn handle_frame(
        &mut self,
        frame: Frame,
        now: Clock,
        keys: &dyn KeyLookup,
        entropy: &mut dyn Entropy,
    ) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Start => self.first_frame(frame, now, keys, entropy),
            State::Confirming(mut transport, peer) => {
                // The first sealed frame proves the agent holds the keys;
                // open_body refuses anything unsealed, v1 included.
                let t = frame.header.msg_type;
                match open_body(frame, Some(&mut transport.recv), self.cfg.max_frame) {
                    Ok(body) => {
                        self.live.heard(now.mono);
                        self.peer = Some(kept(&peer));
                        self.state = State::Open(Some(transport));
                        self.events.push_back(MasterEvent::Joined(*peer));
                        self.v2_message(t, &body, now);
                    }
                    Err(e) => {
                        self.state = State::Confirming(transport, peer);
                        self.bad_frame(e);
                    }
                }
            }
            State::Open(mut transport) => {
                let version = frame.header.version;
                let t = frame.header.msg_type;
                let opened = if version == Version::V2 {
                    open_body(
                        frame,
                        transport.as_deref_mut().map(|t| &mut t.recv),
                        self.cfg.max_frame,
                    )
                } else {
                    Err(FrameError::UnknownVersion(1))
                };
                self.state = State::Open(transport);
                match opened {
                    Ok(body) => {
                        self.live.heard(now.mono);
                        self.v2_message(t, &body, now);
                    }
                    Err(e) => self.bad_frame(e),
                }
            }
            State::Legacy(legacy) => {
                self.state = State::Legacy(legacy);
                if frame.header.version != Version::V1 {
                    return self.close(CloseCode::Protocol, "wire version changed mid-connection");
                }
                self.live.heard(now.mono);
                self.v1_frame(frame, now, entropy);
            }
            State::Closed => {}
        }
    }

    fn first_frame(
        &mut self,
        frame: Frame,
        now: Clock,
        keys: &dyn KeyLookup,
        entropy: &mut dyn Entropy,
    ) {
        let h = frame.header;
        if h.version == Version::V1 {
            if !self.cfg.legacy_v1 {
                // A legacy client would not understand a v2 Close: just hang up.
                self.state = State::Start;
                return self.finish(CloseInfo {
                    code: CloseCode::UnsupportedVersion,
                    reason: "legacy wire version 1 is disabled (start the master with --legacy-v1)"
                        .into(),
                    by_peer: false,
                    frame_error: None,
                });
            }
            // A legacy client cannot read a v2 Close: refusals hang up
            // without a reply, the reason goes to the log and counters.
            if let Some(reason) = malformed_uuid(&h.uuid) {
                return self.finish(CloseInfo {
                    code: CloseCode::Protocol,
                    reason,
                    by_peer: false,
                    frame_error: None,
                });
            }
            let who = Unauthenticated::LegacyV1;
            if let Some(reason) = unauthenticated_claim(&h.uuid, keys, who) {
                self.events
                    .push_back(MasterEvent::IdentityRefused { uuid: h.uuid, who });
                return self.finish(CloseInfo {
                    code: CloseCode::AuthFailed,
                    reason,
                    by_peer: false,
                    frame_error: None,
                });
            }
            let peer = Peer {
                uuid: h.uuid,
                version: Version::V1,
                role: Role::Agent,
                group: String::new(),
                sealed: false,
                minor: 0,
                software: String::new(),
                key_id: 0,
                inbox: None,
            };
            self.peer = Some(kept(&peer));
            self.state = State::Legacy(Box::new(Legacy {
                key: None,
                subscription: None,
            }));
            self.live.heard(now.mono);
            self.events.push_back(MasterEvent::Joined(peer));
            return self.v1_frame(frame, now, entropy);
        }
        // Version 2: only a Hello may open.
        self.peer = Some(Peer {
            uuid: h.uuid,
            version: Version::V2,
            role: Role::Agent,
            group: String::new(),
            sealed: h.cipher,
            minor: 0,
            software: String::new(),
            key_id: 0,
            inbox: None,
        });
        if h.msg_type != MsgType::Hello {
            self.state = State::Start;
            return self.close(
                CloseCode::Protocol,
                &format!("expected hello, got {}", h.msg_type.name()),
            );
        }
        if h.compress {
            self.state = State::Start;
            return self.close(CloseCode::Protocol, "hello must not be compressed");
        }
        if let Some(reason) = malformed_uuid(&h.uuid) {
            self.state = State::Start;
            return self.close(CloseCode::Protocol, &reason);
        }
        if h.cipher {
            self.sealed_hello(frame, now, keys, entropy);
        } else {
            self.plain_hello(frame, now, keys);
        }
    }

    fn sealed_hello(
        &mut self,
        frame: Frame,
        now: Clock,
        keys: &dyn KeyLookup,
        entropy: &mut dyn Entropy,
    ) {
        let uuid = frame.header.uuid;
        self.state = State::Start;
        let Some(psk) = keys.psk_for(&uuid) else {
            return self.close(
                CloseCode::AuthFailed,
                &format!("authentication failed: no key for uuid {uuid} in the keyring"),
            );
        };
        let result = entropy
            .ephemeral()
            .map_err(|_| CryptoError::Random)
            .and_then(|e| Handshake::responder(&psk, &uuid, e))
            .and_then(|mut hs| {
                let payload = hs.read(&frame.body)?;
                Ok((hs, payload))
            });
        let (mut hs, payload) = match result {
            Ok(x) => x,
            Err(e) => {
                return self.close(
                    CloseCode::AuthFailed,
                    &format!("authentication failed for uuid {uuid}: {e}"),
                );
            }
        };
        let hello = match v2::Hello::decode(&payload) {
            Ok(h) => h,
            Err(e) => return self.bad_frame(e),
        };
        let welcome = self.welcome(now);
        let reply = hs
            .write(&Message::Welcome(welcome).to_body())
            .and_then(|msg2| Ok((msg2, hs.finish()?)));
        let (msg2, transport) = match reply {
            Ok(x) => x,
            Err(e) => {
                return self.close(CloseCode::AuthFailed, &format!("handshake failed: {e}"));
            }
        };
        let mut peer = self.peer_from(uuid, &hello, true);
        peer.key_id = crate::proto::crc::crc32(&psk);
        self.peer = Some(kept(&peer));
        // The Welcome is a Noise message, not an AEAD frame: encode plain
        // and set the cipher flag to say "handshake".
        let e = Encode {
            version: Version::V2,
            msg_type: MsgType::Welcome,
            uuid,
            compress: Compress::Never,
            v1_cipher_flag: false,
            max_frame: self.cfg.max_frame,
        };
        match encode(&e, &msg2, None) {
            Ok(mut bytes) => {
                mark_handshake(&mut bytes);
                self.state = State::Confirming(Box::new(transport), Box::new(peer));
                let _ = self.queue(bytes);
            }
            Err(e) => self.bad_frame(e),
        }
    }

    fn plain_hello(&mut self, frame: Frame, now: Clock, keys: &dyn KeyLookup) {
        let uuid = frame.header.uuid;
        self.state = State::Start;
        if !self.cfg.allow_plaintext {
            return self.close(
                CloseCode::AuthFailed,
                "plaintext sessions are disabled on this master: give the agent a key file",
            );
        }
        let who = Unauthenticated::Plaintext;
        if let Some(reason) = unauthenticated_claim(&uuid, keys, who) {
            self.events
                .push_back(MasterEvent::IdentityRefused { uuid, who });
            return self.close(CloseCode::AuthFailed, &reason);
        }
        let hello = match v2::Hello::decode(&frame.body) {
            Ok(h) => h,
            Err(e) => return self.bad_frame(e),
        };
        let peer = self.peer_from(uuid, &hello, false);
        self.peer = Some(kept(&peer));
        self.state = State::Open(None);
        self.live.heard(now.mono);
        let welcome = self.welcome(now);
        if self.send_v2(&Message::Welcome(welcome)).is_ok() {
            self.events.push_back(MasterEvent::Joined(peer));
        }
    }

    fn peer_from(&self, uuid: Uuid, hello: &v2::Hello, sealed: bool) -> Peer {
        Peer {
            uuid,
            version: Version::V2,
            role: hello.role,
            group: clip(&hello.group, v2::MAX_NAME),
            sealed,
            minor: hello.minor,
            software: clip(&hello.software, v2::MAX_NAME),
            key_id: 0,
            inbox: hello.inbox,
        }
    }

    fn welcome(&self, now: Clock) -> Welcome {
        let k = self.cfg.keepalive;
        Welcome {
            minor: v2::PROTO_MINOR,
            heartbeat_ms: u32::try_from(k.interval.as_millis()).unwrap_or(u32::MAX),
            miss_limit: u8::try_from(k.miss_limit).unwrap_or(u8::MAX),
            unix_ms: now.unix_ms,
            software: self.cfg.software.clone(),
        }
    }

    fn v2_message(&mut self, t: MsgType, body: &[u8], now: Clock) {
        let msg = match Message::decode(t, body) {
            Ok(m) => m,
            Err(e) => return self.bad_frame(e),
        };
        match msg {
            Message::Heartbeat(hb) => {
                let ack = Message::HeartbeatAck(v2::HeartbeatAck {
                    seq: hb.seq,
                    unix_ms: now.unix_ms,
                });
                let _ = self.send_v2(&ack);
            }
            Message::Report(r) => self.events.push_back(MasterEvent::Report(Box::new(r))),
            Message::Subscribe(s) => self.events.push_back(MasterEvent::Subscribed(s.scope)),
            Message::PushAck(a) => self.events.push_back(MasterEvent::PushAcked(a)),
            Message::PushResult(r) => self.events.push_back(MasterEvent::PushAnswered(r)),
            Message::Close(c) => self.finish(CloseInfo {
                code: c.code,
                reason: format!("peer closed: {}", clip(&c.reason, 256)),
                by_peer: true,
                frame_error: None,
            }),
            other => self.close(
                CloseCode::Protocol,
                &format!("{} is not sent to a master", other.msg_type().name()),
            ),
        }
    }

    fn v1_frame(&mut self, frame: Frame, now: Clock, entropy: &mut dyn Entropy) {
        let h = frame.header;
        let body = match legacy::open_request(frame, self.cfg.max_frame) {
            Ok((b, flagged)) => {
                if let Some(kind) = flagged {
                    let t = self.traffic.get_or_insert_with(Box::default);
                    let n = &mut t.legacy_compress_flag[kind.index()];
                    *n = n.wrapping_add(1);
                }
                b
            }
            Err(e) => return self.bad_frame(e),
        };
        let State::Legacy(legacy) = &mut self.state else {
            return;
        };
        match h.msg_type {
            MsgType::Hello => {
                // One key per connection, made on the first request.
                let key = *legacy.key.get_or_insert_with(|| legacy_key(entropy));
                let text = String::from_utf8_lossy(&key).into_owned();
                let _ =
                    self.send_legacy(MsgType::Welcome, &v1::key_reply(&text), false, h.compress);
            }
            MsgType::Heartbeat => {
                // Observed: success with the cipher flag echoed and a
                // plaintext body, key or no key (it never encrypted).
                let body = v1::heartbeat_reply(now.unix_ms / 1000);
                let _ = self.send_legacy(MsgType::HeartbeatAck, &body, h.cipher, h.compress);
            }
            MsgType::Subscribe => match v1::check_subscribe(&body) {
                Ok(sub) => {
                    // First registration wins, as in the legacy master.
                    if legacy.subscription.is_none() {
                        legacy.subscription = Some((h.cipher, h.compress));
                        self.events
                            .push_back(MasterEvent::LegacySubscribed { code: sub.code });
                    }
                }
                Err(e) => {
                    let reply = v1::bad_body_reply(e.decoded());
                    let _ = self.send_legacy(MsgType::Push, &reply, h.cipher, h.compress);
                    // A full queue has closed the session already (slow
                    // consumer): one Closed event, never two.
                    if self.is_closed() {
                        return;
                    }
                    self.finish(CloseInfo {
                        code: CloseCode::Protocol,
                        reason: format!("bad legacy push registration: {e}"),
                        by_peer: false,
                        frame_error: None,
                    });
                }
            },
            MsgType::Report => self.events.push_back(MasterEvent::LegacyReport(body)),
            other => self.finish(CloseInfo {
                code: CloseCode::Protocol,
                reason: format!(
                    "legacy client sent {} (type {}), which only a master sends",
                    other.name(),
                    other.as_u8()
                ),
                by_peer: false,
                frame_error: None,
            }),
        }
    }

    fn bad_frame(&mut self, e: FrameError) {
        if self.is_closed() {
            return;
        }
        let reason = format!("bad frame: {e}");
        // An unknown version may be a newer peer: tell it in the one
        // message every version understands (unless it spoke v1, which
        // does not).
        if let FrameError::UnknownVersion(_) = e {
            let close = Message::Close(Close {
                code: CloseCode::UnsupportedVersion,
                reason: e.to_string(),
            });
            let enc = Encode {
                version: Version::V2,
                msg_type: MsgType::Close,
                uuid: self.peer.as_ref().map_or(Uuid::ZERO, |p| p.uuid),
                compress: Compress::Never,
                v1_cipher_flag: false,
                max_frame: self.cfg.max_frame,
            };
            if !self.reads_only_v1()
                && let Ok(bytes) = encode(&enc, &close.to_body(), None)
            {
                self.tx.push_final(bytes);
            }
            return self.finish(CloseInfo {
                code: CloseCode::UnsupportedVersion,
                reason,
                by_peer: false,
                frame_error: Some(e.kind()),
            });
        }
        self.send_close(CloseCode::BadFrame, &reason);
        self.finish(CloseInfo {
            code: CloseCode::BadFrame,
            reason,
            by_peer: false,
            frame_error: Some(e.kind()),
        });
    }

    /// Queues a Close frame where the peer can read one (v2 only).
    fn send_close(&mut self, code: CloseCode, reason: &str) {
        if self.reads_only_v1() {
            return;
        }
        let uuid = self.peer.as_ref().map_or(Uuid::ZERO, |p| p.uuid);
        let msg = Message::Close(Close {
            code,
            reason: reason.to_string(),
        });
        let e = Encode {
            version: Version::V2,
            msg_type: MsgType::Close,
            uuid,
            compress: Compress::Never,
            v1_cipher_flag: false,
            max_frame: self.cfg.max_frame,
        };
        let seal = match &mut self.state {
            State::Open(Some(t)) | State::Confirming(t, _) => Some(&mut t.send),
            State::Open(None) | State::Start => None,
            // Legacy peers have no Close message; Closed has said it already.
            State::Legacy(_) | State::Closed => return,
        };
        if let Ok(bytes) = encode(&e, &msg.to_body(), seal) {
            self.tx.push_final(bytes);
        }
    }

    /// Whether the peer may speak only v1, so that any v2 frame is garbage
    /// to it: the original closed such connections without a word. True
    /// when its first byte was 1, and, with `--legacy-v1`, while it has
    /// sent nothing at all (v2 agents open with a Hello at once; a silent
    /// peer may be an old client).
    fn reads_only_v1(&self) -> bool {
        match self.first_byte {
            Some(b) => b == Version::V1.as_u8(),
            None => self.cfg.legacy_v1,
        }
    }

    /// How long a connection may take to open: the handshake timeout, or
    /// for a peer that may be an old v1 client the legacy idle time, as
    /// the original kept a connection open until its idle check whether
    /// or not a frame had come.
    fn opening_timeout(&self) -> Duration {
        if self.cfg.legacy_v1 && self.reads_only_v1() {
            self.cfg.handshake_timeout.max(self.cfg.legacy_idle)
        } else {
            self.cfg.handshake_timeout
        }
    }

    fn finish(&mut self, info: CloseInfo) {
        self.state = State::Closed;
        self.events.push_back(MasterEvent::Closed(info));
    }
}

impl Receiver for MasterSession {
    fn decoder(&mut self) -> &mut FrameDecoder {
        // Asked before every feed and every frame, so a state change made
        // by one frame sets the cap for the next.
        let cap = self.frame_cap();
        self.decoder.set_max_frame(cap);
        &mut self.decoder
    }

    fn is_closed(&self) -> bool {
        MasterSession::is_closed(self)
    }

    fn count_in(&mut self, frame: &Frame) {
        self.traffic
            .get_or_insert_with(Box::default)
            .count_in(frame.header.msg_type.as_u8(), frame.header.length as usize);
    }

    fn bad_frame(&mut self, e: FrameError) {
        MasterSession::bad_frame(self, e);
    }
}

/// A 32-character `[0-9a-zA-Z]` key, like the legacy master's.
fn legacy_key(entropy: &mut dyn Entropy) -> [u8; 32] {
    const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut raw = [0u8; 32];
    // The legacy key protects nothing (the PHP master never encrypted);
    // if the random source fails, a zero key is as good.
    let _ = entropy.fill(&mut raw);
    raw.map(|b| ALPHABET[usize::from(b) % ALPHABET.len()])
}

fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::HEADER_LEN;
    use crate::session::EntropyFailed;

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn legacy_key_alphabet() {
        struct Counting(u8);
        impl Entropy for Counting {
            fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed> {
                for b in buf {
                    self.0 = self.0.wrapping_add(37);
                    *b = self.0;
                }
                Ok(())
            }
        }
        let k = legacy_key(&mut Counting(0));
        assert!(k.iter().all(u8::is_ascii_alphanumeric));
    }

    struct Zeros;
    impl Entropy for Zeros {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed> {
            buf.fill(0);
            Ok(())
        }
    }

    struct NoKeys;
    impl KeyLookup for NoKeys {
        fn psk_for(&self, _: &Uuid) -> Option<[u8; 32]> {
            None
        }
    }

    fn clock() -> Clock {
        Clock {
            mono: Instant::now(),
            unix_ms: 0,
        }
    }

    fn v1(t: MsgType, body: &[u8]) -> Vec<u8> {
        let uuid = Uuid::from_text("legacy-1").unwrap();
        encode(&legacy_encode(t, uuid, false, false, 1 << 20), body, None).unwrap()
    }

    fn feed(s: &mut MasterSession, bytes: &[u8]) {
        let mut rng = Zeros;
        s.handle_input(bytes, clock(), &NoKeys, &mut rng);
    }

    #[test]
    fn an_unknown_peer_cannot_announce_a_large_frame() {
        let cfg = Arc::new(MasterConfig {
            legacy_v1: true,
            ..MasterConfig::default()
        });
        // A v2 Hello header announcing 1 MiB: refused on the header, before
        // anything is reserved for its body.
        let h = crate::proto::Header {
            version: Version::V2,
            msg_type: MsgType::Hello,
            cipher: true,
            compress: false,
            length: 1 << 20,
            uuid: Uuid::from_text("x").unwrap(),
        };
        let mut s = MasterSession::new(cfg.clone(), clock());
        feed(&mut s, &h.encode());
        assert!(s.is_closed());
        assert!(s.decoder_bytes() < 1024, "{}", s.decoder_bytes());
        let closed = std::iter::from_fn(|| s.poll_event()).last();
        assert!(
            matches!(&closed, Some(MasterEvent::Closed(c)) if c.frame_error == Some("too_long")),
            "{closed:?}"
        );

        // Once a legacy client has said what it is, its frames may be as
        // large as max_frame (it never authenticates: the shell's memory
        // budget bounds it, not the session).
        let mut s = MasterSession::new(cfg, clock());
        feed(&mut s, &v1(MsgType::Hello, b""));
        let big = v1(MsgType::Report, &vec![b'x'; 100 * 1024]);
        feed(&mut s, &big[..HEADER_LEN + 10]);
        assert!(!s.is_closed());
        assert!(s.decoder_bytes() >= big.len());
        assert!(!s.is_authenticated());
        feed(&mut s, &big[HEADER_LEN + 10..]);
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MasterEvent::LegacyReport(b) if b.len() == 100 * 1024)),
            "{events:?}"
        );
        assert_eq!(s.decoder_bytes(), 0);
    }
}
