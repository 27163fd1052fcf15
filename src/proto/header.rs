//! The 45-byte frame header shared by wire versions 1 and 2.
//!
//! Layout (all integers little-endian), as the legacy PHP master writes it:
//!
//! | offset | size | field        |
//! |-------:|-----:|--------------|
//! | 0      | 1    | version      |
//! | 1      | 1    | msg_type     |
//! | 2      | 1    | cipher flag  |
//! | 3      | 1    | compress flag|
//! | 4      | 4    | msg_length (whole frame, header included) |
//! | 8      | 4    | head_crc: CRC-32 of bytes 0..8 |
//! | 12     | 33   | uuid         |
//!
//! Parsing checks every field before the caller allocates anything for the
//! body: a header that passes [`Header::parse`] announces a length that fits
//! the configured maximum.

use std::fmt;

use super::error::FrameError;

/// Size of the header on the wire.
pub const HEADER_LEN: usize = 45;
/// Size of the uuid field.
pub const UUID_LEN: usize = 33;
/// Default largest frame (header included) a decoder accepts: 1 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// Wire format version, the first byte of every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// The legacy PHP system's format: JSON bodies, no authentication.
    V1 = 1,
    /// edge-gw's format: postcard bodies, Noise handshake, sealed frames.
    V2 = 2,
}

impl Version {
    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Highest message type number defined for this version.
    fn max_type(self) -> u8 {
        match self {
            Version::V1 => 7,
            Version::V2 => MsgType::PushResultStored as u8,
        }
    }
}

/// Message type, the second byte of every frame.
///
/// Numbers 1–7 mean the same in both versions (v1 names in brackets); 8–12
/// exist only in version 2
/// (11–12 from minor 1 on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// Key exchange, first message (v1: key request).
    Hello = 1,
    /// Key exchange, answer (v1: key reply).
    Welcome = 2,
    /// Keepalive from the agent.
    Heartbeat = 3,
    /// Keepalive answer from the master.
    HeartbeatAck = 4,
    /// Subscribe to reports of other agents (v1: push registration).
    Subscribe = 5,
    /// Data pushed to a connection (v1: push reply / fanned-out report).
    Push = 6,
    /// Health report from an agent.
    Report = 7,
    /// Agent confirms a push was taken by its local consumer (v2).
    PushAck = 8,
    /// Error or orderly close, with a reason (v2).
    Close = 9,
    /// Another agent's report, forwarded to a subscriber (v2).
    Event = 10,
    /// A push consumer's answer, agent → master (v2, minor ≥ 1).
    PushResult = 11,
    /// The master stored a push result, master → agent (v2, minor ≥ 1).
    PushResultStored = 12,
}

impl MsgType {
    /// Decodes a type byte valid for `version`.
    pub fn from_u8(version: Version, b: u8) -> Option<MsgType> {
        if b > version.max_type() {
            return None;
        }
        Some(match b {
            1 => MsgType::Hello,
            2 => MsgType::Welcome,
            3 => MsgType::Heartbeat,
            4 => MsgType::HeartbeatAck,
            5 => MsgType::Subscribe,
            6 => MsgType::Push,
            7 => MsgType::Report,
            8 => MsgType::PushAck,
            9 => MsgType::Close,
            10 => MsgType::Event,
            11 => MsgType::PushResult,
            12 => MsgType::PushResultStored,
            _ => return None,
        })
    }

    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// A short lowercase name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            MsgType::Hello => "hello",
            MsgType::Welcome => "welcome",
            MsgType::Heartbeat => "heartbeat",
            MsgType::HeartbeatAck => "heartbeat_ack",
            MsgType::Subscribe => "subscribe",
            MsgType::Push => "push",
            MsgType::Report => "report",
            MsgType::PushAck => "push_ack",
            MsgType::Close => "close",
            MsgType::Event => "event",
            MsgType::PushResult => "push_result",
            MsgType::PushResultStored => "push_result_stored",
        }
    }

    /// Every type, in wire order (for metric tables).
    pub const ALL: [MsgType; 12] = [
        MsgType::Hello,
        MsgType::Welcome,
        MsgType::Heartbeat,
        MsgType::HeartbeatAck,
        MsgType::Subscribe,
        MsgType::Push,
        MsgType::Report,
        MsgType::PushAck,
        MsgType::Close,
        MsgType::Event,
        MsgType::PushResult,
        MsgType::PushResultStored,
    ];
}

/// The 33-byte sender id. Raw bytes, not padded by legacy clients; ids
/// shorter than 33 bytes are padded with NUL bytes by [`Uuid::from_text`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; UUID_LEN]);

impl Uuid {
    /// The all-zero id (used before an id is known).
    pub const ZERO: Uuid = Uuid([0; UUID_LEN]);

    /// Builds an id from text of at most 33 bytes, padding with NUL.
    pub fn from_text(s: &str) -> Option<Uuid> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > UUID_LEN || b.contains(&0) {
            return None;
        }
        let mut out = [0u8; UUID_LEN];
        out[..b.len()].copy_from_slice(b);
        Some(Uuid(out))
    }

    /// The significant bytes: trailing NUL padding removed.
    pub fn trimmed(&self) -> &[u8] {
        let end = self.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl fmt::Display for Uuid {
    /// Printable ASCII as is, anything else as `\xNN`, so logs stay one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.trimmed() {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// A checked frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Wire version.
    pub version: Version,
    /// Message type.
    pub msg_type: MsgType,
    /// v1: the sender wants its replies encrypted (never honoured by the
    /// legacy system). v2: the body is sealed with the session keys.
    pub cipher: bool,
    /// The body (after decryption, in v2) is zlib-compressed.
    pub compress: bool,
    /// Length of the whole frame, header included.
    pub length: u32,
    /// Sender id.
    pub uuid: Uuid,
}

impl Header {
    /// Length of the body this header announces.
    pub fn body_len(&self) -> usize {
        (self.length as usize).saturating_sub(HEADER_LEN)
    }

    /// Serialises the header, computing the CRC.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.version.as_u8();
        out[1] = self.msg_type.as_u8();
        out[2] = u8::from(self.cipher);
        out[3] = u8::from(self.compress);
        out[4..8].copy_from_slice(&self.length.to_le_bytes());
        let crc = super::crc::crc32(&out[0..8]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        out[12..].copy_from_slice(&self.uuid.0);
        out
    }

    /// Checks and parses a header. The CRC is checked first, so that no
    /// other field of a corrupted or desynchronised stream is trusted; then
    /// the length bounds (`max_frame` caps the announced length), version,
    /// type and flags.
    pub fn parse(b: &[u8; HEADER_LEN], max_frame: u32) -> Result<Header, FrameError> {
        let length = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let crc = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let computed = super::crc::crc32(&b[0..8]);
        if crc != computed {
            return Err(FrameError::BadCrc {
                expected: computed,
                found: crc,
            });
        }
        if (length as usize) < HEADER_LEN {
            return Err(FrameError::TooShort { length });
        }
        if length > max_frame {
            return Err(FrameError::TooLong {
                length,
                max: max_frame,
            });
        }
        let version = match b[0] {
            1 => Version::V1,
            2 => Version::V2,
            v => return Err(FrameError::UnknownVersion(v)),
        };
        let msg_type = MsgType::from_u8(version, b[1]).ok_or(FrameError::UnknownType {
            version: b[0],
            msg_type: b[1],
        })?;
        let cipher = flag(b[2], "cipher")?;
        let compress = flag(b[3], "compress")?;
        let mut uuid = [0u8; UUID_LEN];
        uuid.copy_from_slice(&b[12..]);
        Ok(Header {
            version,
            msg_type,
            cipher,
            compress,
            length,
            uuid: Uuid(uuid),
        })
    }
}

fn flag(b: u8, field: &'static str) -> Result<bool, FrameError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(FrameError::BadFlag { field, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The CRC vectors from LEGACY-PROTOCOL.md, observed on the PHP master.
    #[test]
    fn legacy_crc_vectors() {
        for (bytes, crc) in [
            ("010300002d000000", 0xca38b289u32),
            ("0105000049000000", 0x1dace7e7),
            ("0107000049000000", 0x8a33f6ce),
        ] {
            assert_eq!(crate::proto::crc::crc32(&hex(bytes)), crc, "{bytes}");
        }
        // And the encoder produces exactly that header: a 45-byte heartbeat.
        let h = Header {
            version: Version::V1,
            msg_type: MsgType::Heartbeat,
            cipher: false,
            compress: false,
            length: 45,
            uuid: Uuid::from_text("0123456789abcdef0123456789abcdefA").unwrap(),
        };
        let e = h.encode();
        assert_eq!(&e[..12], &hex("010300002d00000089b238ca")[..]);
        assert_eq!(&e[12..], b"0123456789abcdef0123456789abcdefA");
        assert_eq!(Header::parse(&e, DEFAULT_MAX_FRAME), Ok(h));
    }

    fn raw(version: u8, t: u8, c: u8, z: u8, len: u32) -> [u8; HEADER_LEN] {
        let mut b = [b'u'; HEADER_LEN];
        b[0] = version;
        b[1] = t;
        b[2] = c;
        b[3] = z;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&b[0..8]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn rejects_each_bad_field() {
        let max = 1000;
        assert_eq!(
            Header::parse(&raw(1, 3, 0, 0, 44), max),
            Err(FrameError::TooShort { length: 44 })
        );
        assert_eq!(
            Header::parse(&raw(1, 3, 0, 0, 1001), max),
            Err(FrameError::TooLong {
                length: 1001,
                max: 1000
            })
        );
        assert_eq!(
            Header::parse(&raw(3, 3, 0, 0, 45), max),
            Err(FrameError::UnknownVersion(3))
        );
        assert_eq!(
            Header::parse(&raw(1, 8, 0, 0, 45), max),
            Err(FrameError::UnknownType {
                version: 1,
                msg_type: 8
            })
        );
        assert!(Header::parse(&raw(2, 8, 0, 0, 45), max).is_ok());
        assert_eq!(
            Header::parse(&raw(2, 0, 0, 0, 45), max),
            Err(FrameError::UnknownType {
                version: 2,
                msg_type: 0
            })
        );
        assert_eq!(
            Header::parse(&raw(1, 3, 2, 0, 45), max),
            Err(FrameError::BadFlag {
                field: "cipher",
                value: 2
            })
        );
        assert_eq!(
            Header::parse(&raw(1, 3, 0, 7, 45), max),
            Err(FrameError::BadFlag {
                field: "compress",
                value: 7
            })
        );
        let mut b = raw(1, 3, 0, 0, 45);
        b[9] ^= 1;
        assert!(matches!(
            Header::parse(&b, max),
            Err(FrameError::BadCrc { .. })
        ));
    }

    #[test]
    fn uuid_text() {
        assert_eq!(Uuid::from_text(""), None);
        assert_eq!(Uuid::from_text(&"a".repeat(34)), None);
        let u = Uuid::from_text("router-7").unwrap();
        assert_eq!(u.trimmed(), b"router-7");
        assert_eq!(u.to_string(), "router-7");
        let mut odd = [0u8; UUID_LEN];
        odd[0] = b'a';
        odd[1] = 0xff;
        assert_eq!(Uuid(odd).to_string(), "a\\xff");
    }
}
