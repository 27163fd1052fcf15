//! Simulated edge-gw clients built from the library's own protocol code:
//! v2 agents and subscribers (real Noise handshakes through
//! `proto::crypto::Handshake`, frames through `proto::frame::encode`) and
//! legacy v1 clients.
//!
//! A sealed v2 client does what `session::agent::AgentSession` does on the
//! wire — Hello (Noise message 1), Welcome (message 2), then a first sealed
//! frame that proves the keys — but sends heartbeats and reports on demand
//! instead of on timers, and checks only what it must. Every received
//! frame's header CRC is checked; the handshake, the key confirmation and
//! the first [`VERIFY_FIRST`] frames of each connection are opened
//! (authenticated, inflated, decoded) in full; after that, throughput
//! clients count frames by header, so that the generator spends less per
//! message than the server it measures. Latency and push clients open
//! every frame.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edge_gw::os::OsEntropy;
use edge_gw::proto::compress::{DEFAULT_LEVEL, deflate_if_smaller, inflate_capped};
use edge_gw::proto::crypto::{Handshake, TAG_LEN, Transport};
use edge_gw::proto::frame::{Compress, Encode, encode, mark_handshake};
use edge_gw::proto::v2::{self, Message, Role};
use edge_gw::proto::{DEFAULT_MAX_FRAME, HEADER_LEN, Header, MsgType, Uuid, Version};
use edge_gw::session::Entropy;

use crate::engine::{Io, Proto, now_ns};

/// Frames opened in full on every connection before counting by header.
pub const VERIFY_FIRST: u32 = 4;

pub use crate::sample::typical_report;

/// The typical report's v2 body (postcard), also the MQTT payload.
pub fn report_body() -> Vec<u8> {
    Message::Report(typical_report(1)).to_body()
}

/// A legacy agent's JSON report, as the PHP-era agents send it.
pub const V1_REPORT: &[u8] = br#"{"uuid":"0123456789abcdef0123456789abcdefA","time":"2024-01-01 12:00:00","cpu":"13.7%","cpu_cores":["12.0%","9.8%","20.1%","13.0%"],"load":"0.45 0.38 0.30","mem_total":"247736","mem_free":"120312","mem_available":"163420","disk":[{"path":"/","total":"14336","avail":"0"},{"path":"/tmp","total":"123868","avail":"121004"},{"path":"/overlay","total":"81920","avail":"60112"}],"net":[{"if":"eth0","rx":"8641975230","tx":"6913580247"},{"if":"wlan0","rx":"3703703670","tx":"2962962963"}],"temp":"54.3","conntrack":"312"}"#;

/// Length of the frame at the start of `buf`, once its length field is in.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let n = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if !(HEADER_LEN..=DEFAULT_MAX_FRAME as usize).contains(&n) {
        return Err(format!("frame length {n} out of bounds"));
    }
    Ok(Some(n))
}

/// Cuts `data` (after what `rx` kept) into frames and hands each to `f`;
/// keeps an incomplete tail in `rx`.
fn split_frames(
    rx: &mut Vec<u8>,
    data: &[u8],
    mut f: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let owned;
    let buf: &[u8] = if rx.is_empty() {
        data
    } else {
        rx.extend_from_slice(data);
        owned = std::mem::take(rx);
        &owned
    };
    let mut pos = 0;
    while let Some(len) = frame_len(&buf[pos..])? {
        if buf.len() - pos < len {
            break;
        }
        f(&buf[pos..pos + len])?;
        pos += len;
    }
    rx.clear();
    rx.extend_from_slice(&buf[pos..]);
    Ok(())
}

fn parse_header(frame: &[u8]) -> Result<(Header, &[u8; HEADER_LEN]), String> {
    let head: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().expect("45 bytes");
    let h = Header::parse(head, DEFAULT_MAX_FRAME).map_err(|e| format!("bad frame: {e}"))?;
    Ok((h, head))
}

/// What a v2 client does once connected.
#[derive(Clone)]
pub enum Work {
    /// Nothing (idle memory, connect storm).
    Idle,
    /// Closed-loop heartbeats, `depth` outstanding.
    Heartbeat { depth: usize },
    /// `depth` groups outstanding of `batch` reports then one heartbeat
    /// as a fence: its ack proves the master took the reports before it.
    Report {
        batch: usize,
        depth: usize,
        body: Arc<Vec<u8>>,
    },
    /// Subscribes to every report; counts Events (or, with `latency`,
    /// opens each and records its age from the timestamp the publisher
    /// put in `unix_ms`).
    Subscriber { latency: bool },
    /// Sends reports, keeping `window` not yet delivered to all of
    /// `subscribers` (the run's ops count deliveries).
    FanPublisher {
        window: u64,
        subscribers: u64,
        body: Arc<Vec<u8>>,
    },
    /// Sends a report every `interval` (first after `phase`), stamped with
    /// its send time.
    Paced { interval: Duration, phase: Duration },
    /// Takes pushes (body `t=<ns>`), records their latency and acks them.
    PushReceiver,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Welcome,
    Confirm,
    Run,
}

/// A v2 client.
pub struct EdgeClient {
    uuid: Uuid,
    compress: Compress,
    work: Work,
    hs: Option<Box<Handshake>>,
    t: Option<Box<Transport>>,
    hello: Vec<u8>,
    subscriber: bool,
    phase: Phase,
    rx: Vec<u8>,
    verified: u32,
    /// Precomputed plaintext heartbeat frame.
    hb_plain: Vec<u8>,
    sent: u64,
    next: Option<Instant>,
    /// The report body deflated once (compressing clients).
    zbody: Option<Arc<Vec<u8>>>,
}

impl EdgeClient {
    /// A client named `uuid`; `psk` makes it sealed. Its Hello (Noise
    /// message 1, one X25519 key generation) is made here, before the run.
    pub fn new(uuid: &str, psk: Option<[u8; 32]>, compress: bool, work: Work) -> EdgeClient {
        let uuid = Uuid::from_text(uuid).expect("uuid of at most 33 bytes");
        let subscriber = matches!(work, Work::Subscriber { .. });
        let hello = Message::Hello(v2::Hello {
            minor: v2::PROTO_MINOR,
            role: if subscriber {
                Role::Subscriber
            } else {
                Role::Agent
            },
            group: "bench".into(),
            software: "edge-gw-load".into(),
            interval_ms: 1000,
            inbox: None,
        })
        .to_body();
        let plain = |t: MsgType| Encode {
            version: Version::V2,
            msg_type: t,
            uuid,
            compress: Compress::Never,
            v1_cipher_flag: false,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let (hs, hello) = match psk {
            Some(psk) => {
                let mut hs = Handshake::initiator(
                    &psk,
                    &uuid,
                    OsEntropy.ephemeral().expect("random source"),
                )
                .expect("handshake state");
                let msg1 = hs.write(&hello).expect("handshake message 1");
                let mut f = encode(&plain(MsgType::Hello), &msg1, None).expect("hello frame");
                mark_handshake(&mut f);
                (Some(Box::new(hs)), f)
            }
            None => (
                None,
                encode(&plain(MsgType::Hello), &hello, None).expect("hello frame"),
            ),
        };
        let hb_body = Message::Heartbeat(v2::Heartbeat { seq: 0 }).to_body();
        let hb_plain = encode(&plain(MsgType::Heartbeat), &hb_body, None).expect("heartbeat");
        EdgeClient {
            uuid,
            compress: if compress {
                Compress::IfSmaller(DEFAULT_LEVEL)
            } else {
                Compress::Never
            },
            work,
            hs,
            t: None,
            hello,
            subscriber,
            phase: Phase::Welcome,
            rx: Vec::new(),
            verified: 0,
            hb_plain,
            sent: 0,
            next: None,
            zbody: None,
        }
    }

    fn send_body(&mut self, t: MsgType, body: &[u8], out: &mut Vec<u8>) {
        let e = Encode {
            version: Version::V2,
            msg_type: t,
            uuid: self.uuid,
            compress: self.compress,
            v1_cipher_flag: false,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let f = encode(&e, body, self.t.as_deref_mut().map(|t| &mut t.send)).expect("frame fits");
        out.extend_from_slice(&f);
    }

    fn send(&mut self, m: &Message, out: &mut Vec<u8>) {
        self.send_body(m.msg_type(), &m.to_body(), out);
    }

    fn heartbeat(&mut self, out: &mut Vec<u8>) {
        if self.t.is_none() {
            out.extend_from_slice(&self.hb_plain);
        } else {
            self.send(&Message::Heartbeat(v2::Heartbeat { seq: 0 }), out);
        }
    }

    /// Authenticates, inflates and returns a body.
    fn open(
        &mut self,
        h: &Header,
        head: &[u8; HEADER_LEN],
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let mut b = body.to_vec();
        match (h.cipher, self.t.as_deref_mut()) {
            (true, Some(t)) => t
                .recv
                .open_in_place(head, &mut b)
                .map_err(|e| format!("{} frame: {e}", h.msg_type.name()))?,
            (false, None) => {}
            _ => return Err(format!("{} frame: cipher flag mismatch", h.msg_type.name())),
        }
        if h.compress {
            b = inflate_capped(&b, DEFAULT_MAX_FRAME).map_err(|e| e.to_string())?;
        }
        Ok(b)
    }

    /// Opens and decodes the first frames of a connection; later ones are
    /// counted by header only.
    fn verify(&mut self, h: &Header, head: &[u8; HEADER_LEN], body: &[u8]) -> Result<(), String> {
        if self.verified < VERIFY_FIRST {
            self.verified += 1;
            let b = self.open(h, head, body)?;
            Message::decode(h.msg_type, &b).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn closed(&mut self, h: &Header, head: &[u8; HEADER_LEN], body: &[u8]) -> String {
        let reason = if self.verified >= VERIFY_FIRST && h.cipher {
            "(sealed, not opened)".to_string()
        } else {
            match self.open(h, head, body) {
                Ok(b) => match v2::decode::<v2::Close>(MsgType::Close, &b) {
                    Ok(c) => format!("{}: {}", c.code.name(), c.reason),
                    Err(e) => e.to_string(),
                },
                Err(e) => e,
            }
        };
        format!("master closed the session: {reason}")
    }

    /// Sends `n` copies of a report body. A compressing client deflates
    /// the body once and reuses it (a real agent compresses each report on
    /// its own CPU; here that would be the generator's CPU, and miniz
    /// allocates a fresh ~300 KB compressor per call), then frames and
    /// seals each copy exactly as `frame::encode` does.
    fn send_reports(&mut self, n: usize, body: &[u8], out: &mut Vec<u8>) {
        if self.compress == Compress::Never {
            for _ in 0..n {
                self.send_body(MsgType::Report, body, out);
            }
            return;
        }
        let z = self
            .zbody
            .get_or_insert_with(|| {
                Arc::new(deflate_if_smaller(body, DEFAULT_LEVEL).unwrap_or_default())
            })
            .clone();
        if z.is_empty() {
            self.compress = Compress::Never;
            return self.send_reports(n, body, out);
        }
        for _ in 0..n {
            let tag = if self.t.is_some() { TAG_LEN } else { 0 };
            let head = Header {
                version: Version::V2,
                msg_type: MsgType::Report,
                cipher: self.t.is_some(),
                compress: true,
                length: (HEADER_LEN + z.len() + tag) as u32,
                uuid: self.uuid,
            }
            .encode();
            let at = out.len();
            out.extend_from_slice(&head);
            out.extend_from_slice(&z);
            if let Some(t) = self.t.as_deref_mut() {
                let tag = t
                    .send
                    .seal_in_place(&head, &mut out[at + HEADER_LEN..])
                    .expect("nonce left");
                out.extend_from_slice(&tag);
            }
        }
    }

    fn frame(&mut self, f: &[u8], io: &mut Io<'_>) -> Result<(), String> {
        let (h, head) = parse_header(f)?;
        let body = &f[HEADER_LEN..];
        if h.msg_type == MsgType::Close {
            return Err(self.closed(&h, head, body));
        }
        match self.phase {
            Phase::Welcome => {
                if h.msg_type != MsgType::Welcome {
                    return Err(format!("expected welcome, got {}", h.msg_type.name()));
                }
                let payload = match self.hs.take() {
                    Some(mut hs) => {
                        let p = hs.read(body).map_err(|e| e.to_string())?;
                        self.t = Some(Box::new(hs.finish().map_err(|e| e.to_string())?));
                        p
                    }
                    None => body.to_vec(),
                };
                let _: v2::Welcome =
                    v2::decode(MsgType::Welcome, &payload).map_err(|e| e.to_string())?;
                if self.subscriber {
                    let sub = Message::Subscribe(v2::Subscribe {
                        scope: v2::Scope::All,
                    });
                    self.send(&sub, io.out);
                }
                // The first sealed frame confirms the keys; its ack says
                // the master counts this client as joined.
                self.heartbeat(io.out);
                self.phase = Phase::Confirm;
            }
            Phase::Confirm => {
                if h.msg_type != MsgType::HeartbeatAck {
                    return Err(format!("expected heartbeat ack, got {}", h.msg_type.name()));
                }
                let b = self.open(&h, head, body)?;
                Message::decode(h.msg_type, &b).map_err(|e| e.to_string())?;
                self.phase = Phase::Run;
                io.ready = true;
            }
            Phase::Run => self.run_frame(&h, head, body, io)?,
        }
        Ok(())
    }

    fn run_frame(
        &mut self,
        h: &Header,
        head: &[u8; HEADER_LEN],
        body: &[u8],
        io: &mut Io<'_>,
    ) -> Result<(), String> {
        match (h.msg_type, &self.work) {
            (MsgType::HeartbeatAck, Work::Heartbeat { .. }) => {
                self.verify(h, head, body)?;
                io.ops += 1;
                self.heartbeat(io.out);
            }
            (MsgType::HeartbeatAck, Work::Report { batch, body: r, .. }) => {
                let (batch, r) = (*batch, r.clone());
                self.verify(h, head, body)?;
                io.ops += batch as u64;
                self.send_reports(batch, &r, io.out);
                self.heartbeat(io.out);
            }
            (MsgType::Event, Work::Subscriber { latency: false }) => {
                self.verify(h, head, body)?;
                io.ops += 1;
            }
            (MsgType::Event, Work::Subscriber { latency: true }) => {
                let b = self.open(h, head, body)?;
                let e: v2::Event = v2::decode(MsgType::Event, &b).map_err(|e| e.to_string())?;
                io.lat.push(now_ns().saturating_sub(e.report.unix_ms));
                io.ops += 1;
            }
            (MsgType::Push, Work::PushReceiver) => {
                let b = self.open(h, head, body)?;
                let p: v2::Push = v2::decode(MsgType::Push, &b).map_err(|e| e.to_string())?;
                let sent = std::str::from_utf8(&p.body)
                    .ok()
                    .and_then(|s| s.strip_prefix("t="))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or("push body is not t=<ns>")?;
                io.lat.push(now_ns().saturating_sub(sent));
                io.ops += 1;
                let ack = Message::PushAck(v2::PushAck {
                    id: p.id,
                    status: v2::AckStatus::Delivered,
                });
                self.send(&ack, io.out);
            }
            (MsgType::HeartbeatAck, _) => self.verify(h, head, body)?,
            (t, _) => return Err(format!("unexpected {} frame", t.name())),
        }
        Ok(())
    }

    fn publish_due(&mut self, io: &mut Io<'_>) {
        if let Work::FanPublisher {
            window,
            subscribers,
            body,
        } = &self.work
        {
            let (window, subs, body) = (*window, *subscribers, body.clone());
            let done = io.shared.ops.load(Ordering::Relaxed) / subs.max(1);
            while self.sent < done + window {
                self.send_reports(1, &body, io.out);
                self.sent += 1;
            }
        }
    }
}

impl Proto for EdgeClient {
    fn start(&mut self, io: &mut Io<'_>) {
        io.out.extend_from_slice(&self.hello);
        self.hello = Vec::new();
    }

    fn input(&mut self, data: &[u8], io: &mut Io<'_>) -> Result<(), String> {
        let mut rx = std::mem::take(&mut self.rx);
        let r = split_frames(&mut rx, data, |f| self.frame(f, io));
        self.rx = rx;
        r
    }

    fn go(&mut self, io: &mut Io<'_>) {
        match &self.work {
            Work::Heartbeat { depth } => {
                for _ in 0..*depth {
                    self.heartbeat(io.out);
                }
            }
            Work::Report { batch, depth, body } => {
                let (batch, depth, body) = (*batch, *depth, body.clone());
                for _ in 0..depth {
                    self.send_reports(batch, &body, io.out);
                    self.heartbeat(io.out);
                }
            }
            Work::FanPublisher { .. } => {
                self.publish_due(io);
                self.next = Some(Instant::now());
            }
            Work::Paced { phase, .. } => self.next = Some(Instant::now() + *phase),
            _ => {}
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        self.next
    }

    fn tick(&mut self, now: Instant, io: &mut Io<'_>) {
        match self.work.clone() {
            Work::FanPublisher { .. } => {
                self.publish_due(io);
                self.next = Some(now + Duration::from_micros(100));
            }
            Work::Paced { interval, .. } => {
                let Some(mut next) = self.next else { return };
                let mut n = 0;
                while next <= now && n < 1000 {
                    io.lag.push(now.duration_since(next).as_nanos() as u64);
                    let mut r = typical_report(self.sent as u32);
                    r.unix_ms = now_ns();
                    self.send(&Message::Report(r), io.out);
                    self.sent += 1;
                    next += interval;
                    n += 1;
                }
                self.next = Some(next);
            }
            _ => {}
        }
    }
}

/// What a legacy v1 client does.
#[derive(Clone)]
pub enum LegacyWork {
    Heartbeat {
        depth: usize,
    },
    Report {
        batch: usize,
        depth: usize,
    },
    /// Registers for pushes (type 5), counts type-6 frames.
    Subscriber,
    FanPublisher {
        window: u64,
        subscribers: u64,
    },
}

/// A legacy v1 client: no handshake; a heartbeat answered means the server
/// took the connection. With `compress`, reports are zlib bodies and a
/// subscriber asks for compressed fan-out.
pub struct LegacyClient {
    uuid: Uuid,
    compress: bool,
    work: LegacyWork,
    rx: Vec<u8>,
    ready: bool,
    hb: Vec<u8>,
    report: Vec<u8>,
    sent: u64,
    next: Option<Instant>,
}

impl LegacyClient {
    pub fn new(uuid: &str, compress: bool, work: LegacyWork) -> LegacyClient {
        let uuid = Uuid::from_text(uuid).expect("uuid of at most 33 bytes");
        let e = |t, c| Encode {
            version: Version::V1,
            msg_type: t,
            uuid,
            compress: c,
            v1_cipher_flag: false,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let zip = if compress {
            Compress::IfSmaller(DEFAULT_LEVEL)
        } else {
            Compress::Never
        };
        LegacyClient {
            uuid,
            compress,
            work,
            rx: Vec::new(),
            ready: false,
            hb: encode(&e(MsgType::Heartbeat, Compress::Never), b"", None).expect("frame"),
            report: encode(&e(MsgType::Report, zip), V1_REPORT, None).expect("frame"),
            sent: 0,
            next: None,
        }
    }

    fn frame(&mut self, f: &[u8], io: &mut Io<'_>) -> Result<(), String> {
        let (h, _) = parse_header(f)?;
        if h.version != Version::V1 {
            return Err(format!("v{} frame on a v1 connection", h.version.as_u8()));
        }
        if !self.ready {
            if h.msg_type != MsgType::HeartbeatAck {
                return Err(format!(
                    "expected heartbeat reply, got {}",
                    h.msg_type.name()
                ));
            }
            self.ready = true;
            io.ready = true;
            return Ok(());
        }
        match (h.msg_type, &self.work) {
            (MsgType::HeartbeatAck, LegacyWork::Heartbeat { .. }) => {
                io.ops += 1;
                io.out.extend_from_slice(&self.hb);
            }
            (MsgType::HeartbeatAck, LegacyWork::Report { batch, .. }) => {
                io.ops += *batch as u64;
                for _ in 0..*batch {
                    io.out.extend_from_slice(&self.report);
                }
                io.out.extend_from_slice(&self.hb);
            }
            (MsgType::Push, LegacyWork::Subscriber) => io.ops += 1,
            (t, _) => return Err(format!("unexpected legacy {} frame", t.name())),
        }
        Ok(())
    }

    fn publish_due(&mut self, io: &mut Io<'_>) {
        if let LegacyWork::FanPublisher {
            window,
            subscribers,
        } = self.work
        {
            let done = io.shared.ops.load(Ordering::Relaxed) / subscribers.max(1);
            while self.sent < done + window {
                io.out.extend_from_slice(&self.report);
                self.sent += 1;
            }
        }
    }
}

impl Proto for LegacyClient {
    fn start(&mut self, io: &mut Io<'_>) {
        if let LegacyWork::Subscriber = self.work {
            let c = if self.compress {
                Compress::Always(DEFAULT_LEVEL)
            } else {
                Compress::Never
            };
            let e = Encode {
                version: Version::V1,
                msg_type: MsgType::Subscribe,
                uuid: self.uuid,
                compress: c,
                v1_cipher_flag: false,
                max_frame: DEFAULT_MAX_FRAME,
            };
            let sub = encode(&e, br#"{"code":"bench","status":"1"}"#, None).expect("frame");
            io.out.extend_from_slice(&sub);
        }
        io.out.extend_from_slice(&self.hb);
    }

    fn input(&mut self, data: &[u8], io: &mut Io<'_>) -> Result<(), String> {
        let mut rx = std::mem::take(&mut self.rx);
        let r = split_frames(&mut rx, data, |f| self.frame(f, io));
        self.rx = rx;
        r
    }

    fn go(&mut self, io: &mut Io<'_>) {
        match self.work {
            LegacyWork::Heartbeat { depth } => {
                for _ in 0..depth {
                    io.out.extend_from_slice(&self.hb);
                }
            }
            LegacyWork::Report { batch, depth } => {
                for _ in 0..depth {
                    for _ in 0..batch {
                        io.out.extend_from_slice(&self.report);
                    }
                    io.out.extend_from_slice(&self.hb);
                }
            }
            LegacyWork::FanPublisher { .. } => {
                self.publish_due(io);
                self.next = Some(Instant::now());
            }
            LegacyWork::Subscriber => {}
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        self.next
    }

    fn tick(&mut self, now: Instant, io: &mut Io<'_>) {
        self.publish_due(io);
        self.next = Some(now + Duration::from_micros(100));
    }
}
