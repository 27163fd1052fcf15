//! Where a legacy (v1) connection must behave like the PHP original and not
//! like a v2 session: how a request's compress flag is read, which body a
//! cipher-flagged subscriber gets, and how long a v1 peer may stay silent.
//!
//! Kept apart from [`super::master`] so each rule, with the observation of
//! the original that justifies it (`shared/LEGACY-PROTOCOL.md`), is in one
//! place.

use std::sync::OnceLock;
use std::time::Duration;

use crate::proto::compress::inflate_capped;
use crate::proto::frame::SharedBody;
use crate::proto::{Frame, FrameError, v1};

/// Default idle time of a v1 connection: the original closed a silent
/// connection after about 150 s (swoole's idle check), and its own clients
/// were written for that, some with a 60 s heartbeat. The v2 default
/// (10 s × 3) would drop them every 30 s.
pub const DEFAULT_LEGACY_IDLE: Duration = Duration::from_secs(150);

/// What a v1 request body with the compress flag set turned out to be.
///
/// On a request the flag means "compress what you send me": the original
/// never inflated a request body, so clients set it on plain and empty
/// bodies. Counted per case, so an operator sees which clients do what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlaggedBody {
    /// A real zlib stream, inflated (the original forwarded it deflated).
    Inflated,
    /// An empty body (a key request or heartbeat asking for zlib replies).
    Empty,
    /// Not a zlib stream: taken as the plain body it is, as the original
    /// did.
    NotZlib,
}

impl FlaggedBody {
    /// Every case, in the order of [`index`](Self::index).
    pub const ALL: [FlaggedBody; 3] = [
        FlaggedBody::Inflated,
        FlaggedBody::Empty,
        FlaggedBody::NotZlib,
    ];

    /// The label in metrics and the status API.
    pub fn name(self) -> &'static str {
        match self {
            FlaggedBody::Inflated => "inflated",
            FlaggedBody::Empty => "empty",
            FlaggedBody::NotZlib => "not_zlib",
        }
    }

    /// Position in a counter array.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The body of a v1 request, and what its compress flag turned out to mean
/// (`None`: the flag was not set).
///
/// A body that inflates is inflated; one that is empty or not a zlib stream
/// is taken as plain, as the original took every body. A zlib stream that
/// inflates past `max_frame` is still an error (a bomb, not a plain body).
pub fn open_request(
    frame: Frame,
    max_frame: u32,
) -> Result<(Vec<u8>, Option<FlaggedBody>), FrameError> {
    let Frame { header, body } = frame;
    if !header.compress {
        return Ok((body, None));
    }
    if body.is_empty() {
        return Ok((body, Some(FlaggedBody::Empty)));
    }
    match inflate_capped(&body, max_frame) {
        Ok(inflated) => Ok((inflated, Some(FlaggedBody::Inflated))),
        Err(FrameError::BadCompression(_)) => Ok((body, Some(FlaggedBody::NotZlib))),
        Err(e) => Err(e),
    }
}

/// One legacy report on its way to every v1 subscriber: each of the two
/// bodies the original sent is made once, on first need, whatever the
/// number of subscribers.
///
/// The original answered a subscriber that registered with the cipher flag
/// (whether or not it asked for a key) with `errCode -1 "请先请求密钥"` and
/// the report as `data`, and everyone else with success; clients of that
/// era may branch on `errCode`, so both are kept.
#[derive(Debug)]
pub struct LegacyFanout {
    report: Vec<u8>,
    success: OnceLock<SharedBody>,
    need_key: OnceLock<SharedBody>,
}

impl LegacyFanout {
    /// A fan-out of `report`, the report body as received (inflated).
    pub fn new(report: Vec<u8>) -> LegacyFanout {
        LegacyFanout {
            report,
            success: OnceLock::new(),
            need_key: OnceLock::new(),
        }
    }

    /// The body for a subscriber that registered with `cipher` set or not.
    pub fn body(&self, cipher: bool) -> &SharedBody {
        if cipher {
            self.need_key
                .get_or_init(|| SharedBody::new(v1::need_key_fanout(&self.report)))
        } else {
            self.success
                .get_or_init(|| SharedBody::new(v1::fanout(&self.report)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::{Compress, Encode, encode};
    use crate::proto::{FrameDecoder, MsgType, Uuid, Version};

    fn frame(compress_flag: bool, body: &[u8]) -> Frame {
        let e = Encode {
            version: Version::V1,
            msg_type: MsgType::Report,
            uuid: Uuid::ZERO,
            compress: Compress::Never,
            v1_cipher_flag: false,
            max_frame: 1 << 20,
        };
        let mut bytes = encode(&e, body, None).unwrap();
        bytes[3] = u8::from(compress_flag);
        let crc = crc32fast::hash(&bytes[..8]);
        bytes[8..12].copy_from_slice(&crc.to_le_bytes());
        let mut d = FrameDecoder::new(1 << 20);
        d.feed(&bytes).unwrap();
        d.next_frame().unwrap().unwrap()
    }

    #[test]
    fn compress_flag_cases() {
        let json = br#"{"code":"demo"}"#;
        assert_eq!(
            open_request(frame(false, json), 1 << 20),
            Ok((json.to_vec(), None))
        );
        assert_eq!(
            open_request(frame(true, b""), 1 << 20),
            Ok((Vec::new(), Some(FlaggedBody::Empty)))
        );
        assert_eq!(
            open_request(frame(true, json), 1 << 20),
            Ok((json.to_vec(), Some(FlaggedBody::NotZlib)))
        );
        let z = miniz_oxide::deflate::compress_to_vec_zlib(json, 9);
        assert_eq!(
            open_request(frame(true, &z), 1 << 20),
            Ok((json.to_vec(), Some(FlaggedBody::Inflated)))
        );
        // A bomb stays an error: it is zlib, just too large.
        let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&[0u8; 4096], 9);
        assert_eq!(
            open_request(frame(true, &bomb), 1000),
            Err(FrameError::InflateTooLarge { max: 1000 })
        );
    }

    #[test]
    fn fanout_bodies_per_cipher_flag_made_once() {
        let f = LegacyFanout::new(br#"{"a":1}"#.to_vec());
        assert_eq!(
            f.body(false).plain(),
            br#"{"errCode":0,"msg":"success","data":"{\"a\":1}"}"#
        );
        assert_eq!(
            f.body(true).plain(),
            br#"{"errCode":-1,"msg":"\u8bf7\u5148\u8bf7\u6c42\u5bc6\u94a5","data":"{\"a\":1}"}"#
        );
        assert!(std::ptr::eq(f.body(true), f.body(true)));
    }
}
