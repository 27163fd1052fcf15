//! Version 2 bodies: typed messages serialised with postcard.
//!
//! # Forward compatibility
//! - The header's message type says which struct a body holds; a peer that
//!   gets a type it does not know closes with [`CloseCode::Protocol`] and a
//!   reason naming the type, never guesses.
//! - Fields are only ever appended at the *end of a message body* (the
//!   top-level struct), never removed or reordered; nested structs such as
//!   [`Health`] or [`NetIf`] are frozen once released (postcard has no
//!   field delimiters, so a field added inside would shift everything
//!   after it). Decoders ignore trailing bytes ([`decode`] uses
//!   `postcard::take_from_bytes`), so an older peer reads a newer peer's
//!   messages. New data goes into a new trailing field of the message (for
//!   example a `Report` extension struct). A newer peer learns the older
//!   one's [`PROTO_MINOR`] from [`Hello`]/[`Welcome`] and sends only fields
//!   and types that minor knows.
//! - [`Close`] is frozen: its layout never changes, so any version can
//!   explain why it hangs up. A frame with a wire version the receiver does
//!   not know is answered with a plain v2 `Close` naming the versions it
//!   speaks ([`CloseCode::UnsupportedVersion`]).

use serde::{Deserialize, Serialize};

use super::error::FrameError;
use super::header::MsgType;

/// Minor protocol revision of this build, exchanged in Hello/Welcome.
pub const PROTO_MINOR: u16 = 0;
/// Longest text field a decoder accepts in a name (group, interface, ...).
pub const MAX_NAME: usize = 64;

/// What a connection wants to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A monitored device: reports health, receives pushes.
    Agent,
    /// A dashboard or tool that only receives other agents' reports.
    Subscriber,
}

/// Handshake message 1 payload (agent → master).
///
/// Decoded with [`Hello::decode`], not serde: `inbox` was appended after
/// the first release, and a Hello from an older agent ends before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hello {
    /// Sender's [`PROTO_MINOR`].
    pub minor: u16,
    /// Agent or subscriber.
    pub role: Role,
    /// Group label ("" for none).
    pub group: String,
    /// Software version text, e.g. `edge-gw 0.1.0`.
    pub software: String,
    /// The agent's report interval in milliseconds (informational).
    pub interval_ms: u32,
    /// What the agent's push inbox can hold, so the master can refuse a
    /// push that could never fit instead of resending it forever. `None`
    /// from agents older than this field (and from peers without an
    /// inbox, such as subscribers).
    pub inbox: Option<InboxLimits>,
}

/// The bounds of an agent's push inbox, announced in its [`Hello`].
/// Frozen once released (nested in `Hello`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxLimits {
    /// Most pushes waiting at once.
    pub messages: u32,
    /// Most push body bytes waiting at once: a push whose body is larger
    /// can never be taken.
    pub bytes: u32,
}

/// The fields [`Hello`] was first released with: what every agent sends,
/// decoded first so that an older agent's Hello, which ends here, decodes.
#[derive(Deserialize)]
struct HelloFirstRelease {
    minor: u16,
    role: Role,
    group: String,
    software: String,
    interval_ms: u32,
}

impl Hello {
    /// Decodes a Hello body: the first-release fields, then the fields
    /// appended since, each only if the body goes on (an older agent's
    /// Hello stops early). Trailing bytes after the known fields are a
    /// newer agent's and are ignored, as in [`decode`].
    pub fn decode(body: &[u8]) -> Result<Hello, FrameError> {
        let (first, rest): (HelloFirstRelease, _) = take(MsgType::Hello, body)?;
        let inbox = if rest.is_empty() {
            None
        } else {
            take::<Option<InboxLimits>>(MsgType::Hello, rest)?.0
        };
        Ok(Hello {
            minor: first.minor,
            role: first.role,
            group: first.group,
            software: first.software,
            interval_ms: first.interval_ms,
            inbox,
        })
    }
}

/// Handshake message 2 payload (master → agent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Master's [`PROTO_MINOR`].
    pub minor: u16,
    /// Heartbeat interval the agent must keep, milliseconds.
    pub heartbeat_ms: u32,
    /// Missed intervals before either side declares the other dead.
    pub miss_limit: u8,
    /// Master's wall clock, Unix milliseconds (0 if unknown), so an agent
    /// that booted in 1970 can timestamp its reports.
    pub unix_ms: u64,
    /// Software version text.
    pub software: String,
}

/// Keepalive (agent → master).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sequence number, echoed in the ack for round-trip measurement.
    pub seq: u32,
}

/// Keepalive answer (master → agent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The heartbeat's sequence number.
    pub seq: u32,
    /// Master's wall clock, Unix milliseconds (0 if unknown).
    pub unix_ms: u64,
}

/// Memory figures in KiB, as `/proc/meminfo` gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// MemTotal.
    pub total_kb: u64,
    /// MemAvailable (or an estimate on old kernels).
    pub available_kb: u64,
    /// MemFree.
    pub free_kb: u64,
    /// Buffers.
    pub buffers_kb: u64,
    /// Cached.
    pub cached_kb: u64,
}

/// Counters of one network interface (`/proc/net/dev`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetIf {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// Usage of one mounted filesystem (`statvfs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsUsage {
    /// Mount point.
    pub mount: String,
    /// Size in KiB.
    pub total_kb: u64,
    /// Available to unprivileged users, KiB.
    pub avail_kb: u64,
}

/// One temperature sensor (`/sys/class/thermal`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Temperature {
    /// Zone type or name.
    pub zone: String,
    /// Millidegrees Celsius.
    pub milli_c: i32,
}

/// A host health snapshot. Percentages are in per-mille to stay integral.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Seconds since boot.
    pub uptime_s: u64,
    /// Total CPU busy, per-mille, over the last interval.
    pub cpu_permille: u16,
    /// Per-core CPU busy, per-mille.
    pub cpu_cores: Vec<u16>,
    /// Load averages ×100 (1, 5, 15 minutes).
    pub load_x100: [u32; 3],
    /// Memory.
    pub memory: Memory,
    /// Number of processes.
    pub processes: u32,
    /// Network interfaces.
    pub net: Vec<NetIf>,
    /// Filesystems.
    pub fs: Vec<FsUsage>,
    /// Temperatures.
    pub temps: Vec<Temperature>,
    /// Tracked connections, where the kernel has conntrack.
    pub conntrack: Option<u32>,
    /// Custom key/value metrics added by local processes.
    pub custom: Vec<(String, String)>,
}

/// A health report (agent → master). Sent live or from the store-and-
/// forward ring after a reconnect, so it carries its own timestamps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Report sequence number since the agent started.
    pub seq: u32,
    /// Wall clock when taken, Unix milliseconds; 0 when the agent had no
    /// trustworthy clock (a router that booted in 1970).
    pub unix_ms: u64,
    /// How long ago it was taken, by the agent's monotonic clock, in
    /// milliseconds at the moment of sending.
    pub age_ms: u32,
    /// Reports dropped from the agent's full ring buffer so far.
    pub dropped: u32,
    /// The snapshot.
    pub health: Health,
}

/// Which reports a subscriber wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Every agent.
    All,
    /// Agents of one group.
    Group(String),
}

/// Subscribe to other agents' reports (any connection → master).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// What to receive.
    pub scope: Scope,
}

/// A pushed message (master → agent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// Master-assigned id; the agent acks and de-duplicates by it.
    pub id: u64,
    /// Who pushed (API user or connection), for the local consumer.
    pub sender: String,
    /// Target group, if the push was addressed to a group.
    pub group: String,
    /// Payload, opaque bytes.
    pub body: Vec<u8>,
}

/// How a push ended at the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckStatus {
    /// The local consumer took it; the master may forget it.
    Delivered,
    /// Already delivered earlier (a resend after reconnect); forget it.
    Duplicate,
}

/// Push acknowledgement (agent → master).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAck {
    /// The push id.
    pub id: u64,
    /// Outcome.
    pub status: AckStatus,
}

/// Why a connection is being closed. Numbers are stable on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// Orderly close.
    Normal,
    /// The master is shutting down.
    Shutdown,
    /// No traffic for the miss limit.
    Evicted,
    /// A frame failed a check.
    BadFrame,
    /// The handshake failed: wrong key, unknown uuid.
    AuthFailed,
    /// A newer session with the same uuid took over.
    Replaced,
    /// The peer read too slowly; its send queue overflowed.
    SlowConsumer,
    /// The peer's wire version is not spoken here.
    UnsupportedVersion,
    /// An operator removed the agent.
    Kicked,
    /// A message out of place or of an unknown type.
    Protocol,
    /// Connection or rate limit reached.
    Busy,
    /// No finished handshake within the handshake timeout.
    HandshakeTimeout,
    /// A code from a newer peer.
    Other(u16),
}

impl CloseCode {
    /// Wire number.
    pub fn to_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::Shutdown => 1,
            CloseCode::Evicted => 2,
            CloseCode::BadFrame => 3,
            CloseCode::AuthFailed => 4,
            CloseCode::Replaced => 5,
            CloseCode::SlowConsumer => 6,
            CloseCode::UnsupportedVersion => 7,
            CloseCode::Kicked => 8,
            CloseCode::Protocol => 9,
            CloseCode::Busy => 10,
            CloseCode::HandshakeTimeout => 11,
            CloseCode::Other(n) => n,
        }
    }

    /// From the wire number.
    pub fn from_u16(n: u16) -> CloseCode {
        match n {
            0 => CloseCode::Normal,
            1 => CloseCode::Shutdown,
            2 => CloseCode::Evicted,
            3 => CloseCode::BadFrame,
            4 => CloseCode::AuthFailed,
            5 => CloseCode::Replaced,
            6 => CloseCode::SlowConsumer,
            7 => CloseCode::UnsupportedVersion,
            8 => CloseCode::Kicked,
            9 => CloseCode::Protocol,
            10 => CloseCode::Busy,
            11 => CloseCode::HandshakeTimeout,
            n => CloseCode::Other(n),
        }
    }

    /// Stable short name for logs, counters and the API.
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::Shutdown => "shutdown",
            CloseCode::Evicted => "evicted",
            CloseCode::BadFrame => "bad_frame",
            CloseCode::AuthFailed => "auth_failed",
            CloseCode::Replaced => "replaced",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::UnsupportedVersion => "unsupported_version",
            CloseCode::Kicked => "kicked",
            CloseCode::Protocol => "protocol",
            CloseCode::Busy => "busy",
            CloseCode::HandshakeTimeout => "handshake_timeout",
            CloseCode::Other(_) => "other",
        }
    }
}

impl Serialize for CloseCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.to_u16())
    }
}

impl<'de> Deserialize<'de> for CloseCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u16::deserialize(d).map(CloseCode::from_u16)
    }
}

/// Error or orderly close, with a reason. Frozen layout (see module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// Machine-readable reason.
    pub code: CloseCode,
    /// Human-readable reason, for the peer's log.
    pub reason: String,
}

/// Another agent's report forwarded to a subscriber (master → subscriber).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The reporting agent's uuid (trailing NULs removed).
    pub agent: Vec<u8>,
    /// Its group.
    pub group: String,
    /// The report.
    pub report: Report,
}

/// The body of an [`Event`] carrying `report`, serialised from borrows:
/// fan-out encodes it once for all subscribers without cloning the report.
/// Byte-identical to `Message::Event(..).to_body()`.
pub fn event_body(agent: &[u8], group: &str, report: &Report) -> Vec<u8> {
    /// Same fields in the same order as [`Event`]: postcard has no field
    /// names, so the encodings are equal.
    #[derive(Serialize)]
    struct EventRef<'a> {
        agent: &'a [u8],
        group: &'a str,
        report: &'a Report,
    }
    // ok: as in `Message::to_body`, serialising into a Vec cannot fail.
    postcard::to_allocvec(&EventRef {
        agent,
        group,
        report,
    })
    .unwrap_or_default()
}

/// A decoded version 2 message of any type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Type 1 (plaintext sessions; sealed sessions carry it in the handshake).
    Hello(Hello),
    /// Type 2 (plaintext sessions).
    Welcome(Welcome),
    /// Type 3.
    Heartbeat(Heartbeat),
    /// Type 4.
    HeartbeatAck(HeartbeatAck),
    /// Type 5.
    Subscribe(Subscribe),
    /// Type 6.
    Push(Push),
    /// Type 7.
    Report(Report),
    /// Type 8.
    PushAck(PushAck),
    /// Type 9.
    Close(Close),
    /// Type 10.
    Event(Event),
}

impl Message {
    /// The header type for this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Hello(_) => MsgType::Hello,
            Message::Welcome(_) => MsgType::Welcome,
            Message::Heartbeat(_) => MsgType::Heartbeat,
            Message::HeartbeatAck(_) => MsgType::HeartbeatAck,
            Message::Subscribe(_) => MsgType::Subscribe,
            Message::Push(_) => MsgType::Push,
            Message::Report(_) => MsgType::Report,
            Message::PushAck(_) => MsgType::PushAck,
            Message::Close(_) => MsgType::Close,
            Message::Event(_) => MsgType::Event,
        }
    }

    /// Serialises the body (the header is the caller's).
    pub fn to_body(&self) -> Vec<u8> {
        let r = match self {
            Message::Hello(m) => postcard::to_allocvec(m),
            Message::Welcome(m) => postcard::to_allocvec(m),
            Message::Heartbeat(m) => postcard::to_allocvec(m),
            Message::HeartbeatAck(m) => postcard::to_allocvec(m),
            Message::Subscribe(m) => postcard::to_allocvec(m),
            Message::Push(m) => postcard::to_allocvec(m),
            Message::Report(m) => postcard::to_allocvec(m),
            Message::PushAck(m) => postcard::to_allocvec(m),
            Message::Close(m) => postcard::to_allocvec(m),
            Message::Event(m) => postcard::to_allocvec(m),
        };
        // ok: serialising these plain structs into a Vec cannot fail; an
        // empty body would be rejected by the peer as malformed anyway.
        r.unwrap_or_default()
    }

    /// Decodes a body of the given header type.
    pub fn decode(t: MsgType, body: &[u8]) -> Result<Message, FrameError> {
        Ok(match t {
            MsgType::Hello => Message::Hello(Hello::decode(body)?),
            MsgType::Welcome => Message::Welcome(decode(t, body)?),
            MsgType::Heartbeat => Message::Heartbeat(decode(t, body)?),
            MsgType::HeartbeatAck => Message::HeartbeatAck(decode(t, body)?),
            MsgType::Subscribe => Message::Subscribe(decode(t, body)?),
            MsgType::Push => Message::Push(decode(t, body)?),
            MsgType::Report => Message::Report(decode(t, body)?),
            MsgType::PushAck => Message::PushAck(decode(t, body)?),
            MsgType::Close => Message::Close(decode(t, body)?),
            MsgType::Event => Message::Event(decode(t, body)?),
        })
    }
}

/// Decodes one struct, ignoring trailing bytes (fields a newer peer added).
/// Postcard length prefixes are checked against the remaining input before
/// anything is allocated, so a lying length cannot cause a large allocation.
pub fn decode<'a, T: Deserialize<'a>>(t: MsgType, body: &'a [u8]) -> Result<T, FrameError> {
    take(t, body).map(|(v, _rest)| v)
}

/// Decodes one value from the front of `body` and returns the rest.
fn take<'a, T: Deserialize<'a>>(t: MsgType, body: &'a [u8]) -> Result<(T, &'a [u8]), FrameError> {
    postcard::take_from_bytes(body).map_err(|e| FrameError::BadBody {
        msg_type: t.name(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn samples() -> Vec<Message> {
        let health = Health {
            uptime_s: 12345,
            cpu_permille: 125,
            cpu_cores: vec![100, 150],
            load_x100: [50, 40, 30],
            memory: Memory {
                total_kb: 262144,
                available_kb: 100000,
                free_kb: 50000,
                buffers_kb: 1000,
                cached_kb: 20000,
            },
            processes: 42,
            net: vec![NetIf {
                name: "eth0".into(),
                rx_bytes: u64::MAX,
                ..NetIf::default()
            }],
            fs: vec![FsUsage {
                mount: "/overlay".into(),
                total_kb: 1000,
                avail_kb: 10,
            }],
            temps: vec![Temperature {
                zone: "cpu".into(),
                milli_c: -5000,
            }],
            conntrack: Some(17),
            custom: vec![("wan".into(), "up".into())],
        };
        let report = Report {
            seq: 3,
            unix_ms: 1_700_000_000_000,
            age_ms: 10,
            dropped: 1,
            health,
        };
        vec![
            Message::Hello(Hello {
                minor: 0,
                role: Role::Agent,
                group: "site-a".into(),
                software: "edge-gw 0.1.0".into(),
                interval_ms: 10_000,
                inbox: Some(InboxLimits {
                    messages: 100,
                    bytes: 256 << 10,
                }),
            }),
            Message::Welcome(Welcome {
                minor: 0,
                heartbeat_ms: 10_000,
                miss_limit: 3,
                unix_ms: 0,
                software: "x".into(),
            }),
            Message::Heartbeat(Heartbeat { seq: 7 }),
            Message::HeartbeatAck(HeartbeatAck {
                seq: 7,
                unix_ms: 99,
            }),
            Message::Subscribe(Subscribe {
                scope: Scope::Group("g".into()),
            }),
            Message::Push(Push {
                id: u64::MAX - 1,
                sender: "api".into(),
                group: String::new(),
                body: vec![0, 1, 2, 255],
            }),
            Message::Report(report.clone()),
            Message::PushAck(PushAck {
                id: 9,
                status: AckStatus::Duplicate,
            }),
            Message::Close(Close {
                code: CloseCode::Other(999),
                reason: "bye".into(),
            }),
            Message::Event(Event {
                agent: b"dev".to_vec(),
                group: "g".into(),
                report,
            }),
        ]
    }

    #[test]
    fn borrowed_event_body_is_the_event_encoding() {
        let Some(Message::Event(e)) = samples().pop() else {
            panic!("the last sample is an Event");
        };
        assert_eq!(
            event_body(&e.agent, &e.group, &e.report),
            Message::Event(e.clone()).to_body()
        );
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let b = m.to_body();
            assert_eq!(Message::decode(m.msg_type(), &b).unwrap(), m);
        }
    }

    #[test]
    fn trailing_fields_from_a_newer_peer_are_ignored() {
        for m in samples() {
            let mut b = m.to_body();
            b.extend_from_slice(&[1, 2, 3, 4]);
            assert_eq!(Message::decode(m.msg_type(), &b).unwrap(), m);
        }
    }

    /// Both directions of the Hello extension: a Hello from an agent that
    /// predates `inbox` decodes with `None`, and a master that predates it
    /// (the first-release struct, as old code decoded it) reads a new
    /// agent's Hello.
    #[test]
    fn hello_inbox_field_interoperates_with_older_peers() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct OldHello {
            minor: u16,
            role: Role,
            group: String,
            software: String,
            interval_ms: u32,
        }
        let old = OldHello {
            minor: 0,
            role: Role::Agent,
            group: "g".into(),
            software: "edge-gw 0.0.9".into(),
            interval_ms: 5000,
        };
        let from_old = Hello::decode(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(from_old.inbox, None);
        assert_eq!(from_old.software, old.software);
        let new = Hello {
            minor: 0,
            role: Role::Agent,
            group: "g".into(),
            software: "edge-gw 0.0.9".into(),
            interval_ms: 5000,
            inbox: Some(InboxLimits {
                messages: 3,
                bytes: 1 << 18,
            }),
        };
        let body = Message::Hello(new.clone()).to_body();
        assert_eq!(decode::<OldHello>(MsgType::Hello, &body).unwrap(), old);
        assert_eq!(Hello::decode(&body).unwrap(), new);
        // A bad extension is an error, not a silent `None`.
        let mut bad = postcard::to_allocvec(&old).unwrap();
        bad.push(7);
        assert!(Hello::decode(&bad).is_err());
    }

    #[test]
    fn truncated_bodies_are_errors_with_the_type_named() {
        for m in samples() {
            let b = m.to_body();
            let e = Message::decode(m.msg_type(), &b[..b.len() - 1]);
            if let Err(FrameError::BadBody { msg_type, .. }) = e {
                assert_eq!(msg_type, m.msg_type().name());
            } else {
                panic!("{m:?} decoded from a truncated body: {e:?}");
            }
        }
    }

    /// The frozen Close layout: varint code, then length-prefixed UTF-8.
    #[test]
    fn close_layout_is_frozen() {
        let b = Message::Close(Close {
            code: CloseCode::UnsupportedVersion,
            reason: "v9".into(),
        })
        .to_body();
        assert_eq!(b, [7, 2, b'v', b'9']);
        for n in 0..=12u16 {
            assert_eq!(CloseCode::from_u16(n).to_u16(), n);
        }
    }

    #[test]
    fn lying_length_prefix_is_an_error_not_an_allocation() {
        // A Push whose body claims 2^32 bytes.
        let mut b = vec![1, 0, 0]; // id=1, sender "", group ""
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(Message::decode(MsgType::Push, &b).is_err());
    }
}
