//! Simulated MQTT 3.1.1 clients, for the same scenarios against Mosquitto.
//!
//! The packets are encoded by hand: the tool needs CONNECT, PINGREQ,
//! PUBLISH (QoS 0 and 1), PUBACK, SUBSCRIBE and DISCONNECT out, and
//! CONNACK, PINGRESP, PUBLISH, PUBACK and SUBACK in — each a fixed header
//! plus a few fields (MQTT 3.1.1 §3). The maintained Rust clients
//! (`rumqttc`) require the tokio runtime, and `mqttbytes`, the stand-alone
//! codec, has had no release since 2021; forty lines here keep the
//! generator on the same threads-and-epoll engine as the other clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::engine::{Io, Proto, now_ns};

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 0x90;
const PINGREQ: [u8; 2] = [0xC0, 0x00];
const PINGRESP: u8 = 0xD0;

/// Appends the "remaining length" varint (§2.2.3).
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT with a clean session and no keepalive.
pub fn connect(client_id: &str) -> Vec<u8> {
    let mut v = Vec::new();
    put_str(&mut v, b"MQTT");
    v.push(4); // protocol level 3.1.1
    v.push(0x02); // clean session
    v.extend_from_slice(&0u16.to_be_bytes()); // keepalive off
    put_str(&mut v, client_id.as_bytes());
    let mut out = vec![CONNECT];
    put_len(&mut out, v.len());
    out.extend_from_slice(&v);
    out
}

/// PUBLISH at QoS 0 (`id` None) or 1.
pub fn publish(out: &mut Vec<u8>, topic: &[u8], id: Option<u16>, payload: &[&[u8]]) {
    let len =
        2 + topic.len() + id.map_or(0, |_| 2) + payload.iter().map(|p| p.len()).sum::<usize>();
    out.push(PUBLISH | if id.is_some() { 0x02 } else { 0 });
    put_len(out, len);
    put_str(out, topic);
    if let Some(id) = id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    for p in payload {
        out.extend_from_slice(p);
    }
}

fn subscribe(topic: &[u8]) -> Vec<u8> {
    let mut out = vec![SUBSCRIBE];
    put_len(&mut out, 2 + 2 + topic.len() + 1);
    out.extend_from_slice(&1u16.to_be_bytes());
    put_str(&mut out, topic);
    out.push(0); // QoS 0
    out
}

/// Length of the packet at the start of `buf` and of its fixed header,
/// once known.
fn packet_len(buf: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let mut n = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i + n, 2 + i)));
        }
    }
    Err("malformed MQTT remaining length".into())
}

/// What an MQTT client does once connected.
#[derive(Clone)]
pub enum Work {
    Idle,
    /// PINGREQ/PINGRESP, `depth` outstanding.
    Ping {
        depth: usize,
    },
    /// PUBLISH QoS 1 / PUBACK, `depth` outstanding.
    Publish1 {
        depth: usize,
        payload: Arc<Vec<u8>>,
    },
    /// Subscribed to `topic` at QoS 0; counts PUBLISHes (with `latency`,
    /// reads the send time from the first 8 payload bytes).
    Subscriber {
        topic: &'static str,
        latency: bool,
    },
    /// QoS 0 to `topic`, keeping `window` not yet delivered to all.
    FanPublisher {
        topic: &'static str,
        window: u64,
        subscribers: u64,
        payload: Arc<Vec<u8>>,
    },
    /// QoS 0 to `topic` every `interval`, stamped with the send time.
    Paced {
        topic: &'static str,
        interval: Duration,
        phase: Duration,
        payload: Arc<Vec<u8>>,
    },
}

pub struct MqttClient {
    id: String,
    work: Work,
    rx: Vec<u8>,
    connected: bool,
    ready: bool,
    pid: u16,
    topic: Vec<u8>,
    sent: u64,
    next: Option<Instant>,
}

impl MqttClient {
    pub fn new(id: String, work: Work) -> MqttClient {
        let topic = format!("bench/in/{id}").into_bytes();
        MqttClient {
            id,
            work,
            rx: Vec::new(),
            connected: false,
            ready: false,
            pid: 0,
            topic,
            sent: 0,
            next: None,
        }
    }

    fn next_pid(&mut self) -> u16 {
        self.pid = self.pid.wrapping_add(1).max(1);
        self.pid
    }

    fn publish1(&mut self, out: &mut Vec<u8>, payload: &[u8]) {
        let id = self.next_pid();
        publish(out, &self.topic, Some(id), &[payload]);
    }

    fn packet(&mut self, p: &[u8], head: usize, io: &mut Io<'_>) -> Result<(), String> {
        let kind = p[0] & 0xF0;
        if !self.connected {
            if kind != CONNACK || p.len() < 4 || p[3] != 0 {
                return Err(format!("connect refused: {p:02x?}"));
            }
            self.connected = true;
            match &self.work {
                Work::Subscriber { topic, .. } => {
                    io.out.extend_from_slice(&subscribe(topic.as_bytes()))
                }
                _ => {
                    self.ready = true;
                    io.ready = true;
                }
            }
            return Ok(());
        }
        match (kind, &self.work) {
            (SUBACK, Work::Subscriber { .. }) if !self.ready => {
                if p.get(head + 2) == Some(&0x80) {
                    return Err("subscription refused".into());
                }
                self.ready = true;
                io.ready = true;
            }
            (PINGRESP, Work::Ping { .. }) => {
                io.ops += 1;
                io.out.extend_from_slice(&PINGREQ);
            }
            (PUBACK, Work::Publish1 { payload, .. }) => {
                let payload = payload.clone();
                io.ops += 1;
                self.publish1(io.out, &payload);
            }
            (PUBLISH, Work::Subscriber { latency, .. }) => {
                if *latency {
                    let topic_len = u16::from_be_bytes([p[head], p[head + 1]]) as usize;
                    let at = head + 2 + topic_len + if p[0] & 0x06 != 0 { 2 } else { 0 };
                    let ts = p.get(at..at + 8).ok_or("publish without a timestamp")?;
                    let ts = u64::from_le_bytes(ts.try_into().expect("8 bytes"));
                    io.lat.push(now_ns().saturating_sub(ts));
                }
                io.ops += 1;
            }
            (k, _) => return Err(format!("unexpected MQTT packet type {:#x}", k >> 4)),
        }
        Ok(())
    }

    fn publish_due(&mut self, io: &mut Io<'_>) {
        if let Work::FanPublisher {
            topic,
            window,
            subscribers,
            payload,
        } = &self.work
        {
            let done = io.shared.ops.load(Ordering::Relaxed) / (*subscribers).max(1);
            while self.sent < done + *window {
                publish(io.out, topic.as_bytes(), None, &[payload]);
                self.sent += 1;
            }
        }
    }
}

impl Proto for MqttClient {
    fn start(&mut self, io: &mut Io<'_>) {
        io.out.extend_from_slice(&connect(&self.id));
    }

    fn input(&mut self, data: &[u8], io: &mut Io<'_>) -> Result<(), String> {
        let mut rx = std::mem::take(&mut self.rx);
        let owned;
        let buf: &[u8] = if rx.is_empty() {
            data
        } else {
            rx.extend_from_slice(data);
            owned = std::mem::take(&mut rx);
            &owned
        };
        let mut pos = 0;
        let mut r = Ok(());
        loop {
            match packet_len(&buf[pos..]) {
                Ok(Some((len, head))) if buf.len() - pos >= len => {
                    if let Err(e) = self.packet(&buf[pos..pos + len], head, io) {
                        r = Err(e);
                        break;
                    }
                    pos += len;
                }
                Ok(_) => break,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        rx.clear();
        rx.extend_from_slice(&buf[pos..]);
        self.rx = rx;
        r
    }

    fn go(&mut self, io: &mut Io<'_>) {
        match self.work.clone() {
            Work::Ping { depth } => {
                for _ in 0..depth {
                    io.out.extend_from_slice(&PINGREQ);
                }
            }
            Work::Publish1 { depth, payload } => {
                for _ in 0..depth {
                    self.publish1(io.out, &payload);
                }
            }
            Work::FanPublisher { .. } => {
                self.publish_due(io);
                self.next = Some(Instant::now());
            }
            Work::Paced { phase, .. } => self.next = Some(Instant::now() + phase),
            Work::Idle | Work::Subscriber { .. } => {}
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        self.next
    }

    fn tick(&mut self, now: Instant, io: &mut Io<'_>) {
        match &self.work {
            Work::FanPublisher { .. } => {
                self.publish_due(io);
                self.next = Some(now + Duration::from_micros(100));
            }
            Work::Paced {
                topic,
                interval,
                payload,
                ..
            } => {
                let Some(mut next) = self.next else { return };
                let mut n = 0;
                while next <= now && n < 1000 {
                    io.lag.push(now.duration_since(next).as_nanos() as u64);
                    let ts = now_ns().to_le_bytes();
                    publish(io.out, topic.as_bytes(), None, &[&ts, payload]);
                    next += *interval;
                    n += 1;
                }
                self.next = Some(next);
            }
            _ => {}
        }
    }
}
