//! Typed protocol errors. Every variant has a stable [`kind`](FrameError::kind)
//! used as a counter label, and a `Display` that names the reason for logs.

use std::fmt;

/// Why a byte stream could not be cut into frames, or a frame's body could
/// not be opened. After a framing error the stream is unusable (its frame
/// boundaries are lost) and the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Header CRC-32 mismatch.
    BadCrc {
        /// CRC computed over bytes 0..8.
        expected: u32,
        /// CRC found in the header.
        found: u32,
    },
    /// `msg_length` smaller than the header itself.
    TooShort {
        /// Announced length.
        length: u32,
    },
    /// `msg_length` above the configured maximum.
    TooLong {
        /// Announced length.
        length: u32,
        /// Configured maximum.
        max: u32,
    },
    /// Version byte not 1 or 2.
    UnknownVersion(u8),
    /// Message type not defined for the frame's version.
    UnknownType {
        /// Version byte.
        version: u8,
        /// Type byte.
        msg_type: u8,
    },
    /// A flag byte other than 0 or 1.
    BadFlag {
        /// `cipher` or `compress`.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// The sender fed more unparsed bytes than one maximal frame can hold.
    BufferFull {
        /// Bytes that would have been buffered.
        buffered: usize,
    },
    /// zlib body is not valid RFC 1950 data.
    BadCompression(&'static str),
    /// zlib body inflates past the maximum (a zlib bomb).
    InflateTooLarge {
        /// Configured maximum.
        max: u32,
    },
    /// Body failed AEAD authentication (tampered, replayed, reordered or
    /// sealed with another key).
    Unauthentic,
    /// A sealed frame arrived where no session key exists, or a plain frame
    /// where the session is sealed.
    CipherMismatch,
    /// The send counter ran out; the session must be re-established.
    NonceExhausted,
    /// The body does not decode as the message its type announces.
    BadBody {
        /// Message type name.
        msg_type: &'static str,
        /// Decoder's reason.
        reason: String,
    },
    /// A frame longer than the maximum would result from encoding.
    EncodeTooLong {
        /// Resulting length.
        length: usize,
        /// Configured maximum.
        max: u32,
    },
}

impl FrameError {
    /// Stable short name, used as a metrics label and in close reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::BadCrc { .. } => "bad_crc",
            FrameError::TooShort { .. } => "too_short",
            FrameError::TooLong { .. } => "too_long",
            FrameError::UnknownVersion(_) => "unknown_version",
            FrameError::UnknownType { .. } => "unknown_type",
            FrameError::BadFlag { .. } => "bad_flag",
            FrameError::BufferFull { .. } => "buffer_full",
            FrameError::BadCompression(_) => "bad_compression",
            FrameError::InflateTooLarge { .. } => "inflate_too_large",
            FrameError::Unauthentic => "unauthentic",
            FrameError::CipherMismatch => "cipher_mismatch",
            FrameError::NonceExhausted => "nonce_exhausted",
            FrameError::BadBody { .. } => "bad_body",
            FrameError::EncodeTooLong { .. } => "encode_too_long",
        }
    }

    /// Every kind, for pre-registering counters.
    pub const KINDS: [&'static str; 14] = [
        "bad_crc",
        "too_short",
        "too_long",
        "unknown_version",
        "unknown_type",
        "bad_flag",
        "buffer_full",
        "bad_compression",
        "inflate_too_large",
        "unauthentic",
        "cipher_mismatch",
        "nonce_exhausted",
        "bad_body",
        "encode_too_long",
    ];
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadCrc { expected, found } => write!(
                f,
                "bad header CRC (computed {expected:#010x}, frame says {found:#010x})"
            ),
            FrameError::TooShort { length } => {
                write!(
                    f,
                    "frame length {length} is shorter than the 45-byte header"
                )
            }
            FrameError::TooLong { length, max } => {
                write!(f, "frame length {length} exceeds the maximum {max}")
            }
            FrameError::UnknownVersion(v) => {
                write!(
                    f,
                    "unsupported wire version {v} (this build speaks 1 and 2)"
                )
            }
            FrameError::UnknownType { version, msg_type } => {
                write!(
                    f,
                    "unknown message type {msg_type} for wire version {version}"
                )
            }
            FrameError::BadFlag { field, value } => {
                write!(f, "{field} flag is {value}, must be 0 or 1")
            }
            FrameError::BufferFull { buffered } => {
                write!(
                    f,
                    "{buffered} unparsed bytes buffered, more than one frame may hold"
                )
            }
            FrameError::BadCompression(why) => write!(f, "bad zlib body: {why}"),
            FrameError::InflateTooLarge { max } => {
                write!(f, "compressed body inflates past the maximum {max}")
            }
            FrameError::Unauthentic => write!(
                f,
                "frame failed authentication (tampered, replayed, reordered or wrong key)"
            ),
            FrameError::CipherMismatch => {
                write!(
                    f,
                    "cipher flag does not match the session's encryption state"
                )
            }
            FrameError::NonceExhausted => write!(f, "session nonce counter exhausted"),
            FrameError::BadBody { msg_type, reason } => {
                write!(f, "malformed {msg_type} body: {reason}")
            }
            FrameError::EncodeTooLong { length, max } => {
                write!(
                    f,
                    "encoded frame of {length} bytes exceeds the maximum {max}"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_table_matches_kind() {
        let samples = [
            FrameError::BadCrc {
                expected: 0,
                found: 1,
            },
            FrameError::TooShort { length: 0 },
            FrameError::TooLong { length: 0, max: 0 },
            FrameError::UnknownVersion(0),
            FrameError::UnknownType {
                version: 0,
                msg_type: 0,
            },
            FrameError::BadFlag {
                field: "cipher",
                value: 2,
            },
            FrameError::BufferFull { buffered: 0 },
            FrameError::BadCompression("x"),
            FrameError::InflateTooLarge { max: 0 },
            FrameError::Unauthentic,
            FrameError::CipherMismatch,
            FrameError::NonceExhausted,
            FrameError::BadBody {
                msg_type: "x",
                reason: String::new(),
            },
            FrameError::EncodeTooLong { length: 0, max: 0 },
        ];
        let kinds: Vec<_> = samples.iter().map(FrameError::kind).collect();
        assert_eq!(kinds, FrameError::KINDS);
    }
}
