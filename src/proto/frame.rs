//! A frame (a checked header and its body), how one is built, and how a
//! received one's body is opened: compression then sealing on the way out,
//! authentication then inflation on the way in. The [`super::decoder`]
//! cuts a byte stream into [`Frame`]s.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::compress::{deflate, deflate_if_smaller, inflate_capped};
use super::crypto::{CipherState, TAG_LEN};
use super::error::FrameError;
use super::header::{HEADER_LEN, Header, MsgType, Uuid, Version};

/// A raw frame: checked header and the body bytes exactly as on the wire
/// (possibly sealed and/or compressed; see [`open_body`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The checked header.
    pub header: Header,
    /// Body bytes as received.
    pub body: Vec<u8>,
}

/// Compression choice for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compress {
    /// Send the body plain.
    Never,
    /// Compress at this level (1–10) only when that makes the body smaller.
    IfSmaller(u8),
    /// Always compress at this level: a legacy peer asked for compressed
    /// replies and gets them, as the PHP master did.
    Always(u8),
}

/// How to encode one outgoing frame.
#[derive(Clone, Copy, Debug)]
pub struct Encode {
    /// Wire version.
    pub version: Version,
    /// Message type.
    pub msg_type: MsgType,
    /// The uuid field.
    pub uuid: Uuid,
    /// Whether to compress the body.
    pub compress: Compress,
    /// v1 only: the "reply cipher" flag to write. v2 sets the flag from
    /// whether a cipher is given to [`encode`].
    pub v1_cipher_flag: bool,
    /// Largest frame allowed.
    pub max_frame: u32,
}

/// Encodes a frame. With `seal` (v2 sessions), the possibly compressed body
/// is encrypted with the finished header as associated data.
pub fn encode(
    e: &Encode,
    body: &[u8],
    seal: Option<&mut CipherState>,
) -> Result<Vec<u8>, FrameError> {
    let compressed = match e.compress {
        Compress::Never => None,
        Compress::IfSmaller(level) => deflate_if_smaller(body, level),
        Compress::Always(level) => Some(deflate(body, level)),
    };
    match &compressed {
        Some(z) => frame(e, z, true, seal),
        None => frame(e, body, false, seal),
    }
}

/// A body sent to many peers (fan-out): serialised once by the caller and
/// compressed at most once, on first need, whatever the number of frames
/// made from it. Only sealing is per peer.
#[derive(Debug)]
pub struct SharedBody {
    plain: Vec<u8>,
    /// The compressed form for the first level asked: `None` inside when
    /// compressing would not make it smaller.
    zipped: OnceLock<(u8, Option<Vec<u8>>)>,
}

impl SharedBody {
    /// A body to share.
    pub fn new(plain: Vec<u8>) -> SharedBody {
        SharedBody {
            plain,
            zipped: OnceLock::new(),
        }
    }

    /// The uncompressed body.
    pub fn plain(&self) -> &[u8] {
        &self.plain
    }

    /// The compressed body at `level` (`None`: `if_smaller` and it would
    /// not be). Made once; a different level than the first one asked is
    /// made fresh each time (all peers of one master share a level, so
    /// this does not happen in practice).
    fn zipped(&self, level: u8, if_smaller: bool) -> Option<Cow<'_, [u8]>> {
        let make = |plain: &[u8]| {
            if if_smaller {
                deflate_if_smaller(plain, level)
            } else {
                Some(deflate(plain, level))
            }
        };
        let (l, z) = self.zipped.get_or_init(|| (level, make(&self.plain)));
        if *l == level {
            match z {
                Some(z) if if_smaller && z.len() >= self.plain.len() => None,
                Some(z) => Some(Cow::Borrowed(z)),
                // Stored for "if smaller": not smaller. "Always" still
                // needs a compressed body.
                None if if_smaller => None,
                None => Some(Cow::Owned(deflate(&self.plain, level))),
            }
        } else {
            make(&self.plain).map(Cow::Owned)
        }
    }
}

/// Encodes a frame from a [`SharedBody`]: the same bytes as [`encode`]
/// with the body, without serialising or compressing it again.
pub fn encode_shared(
    e: &Encode,
    body: &SharedBody,
    seal: Option<&mut CipherState>,
) -> Result<Vec<u8>, FrameError> {
    let zipped = match e.compress {
        Compress::Never => None,
        Compress::IfSmaller(level) => body.zipped(level, true),
        Compress::Always(level) => body.zipped(level, false),
    };
    match &zipped {
        Some(z) => frame(e, z, true, seal),
        None => frame(e, &body.plain, false, seal),
    }
}

/// Header, body, and the tag when sealed.
fn frame(
    e: &Encode,
    plain: &[u8],
    compressed: bool,
    seal: Option<&mut CipherState>,
) -> Result<Vec<u8>, FrameError> {
    let tag_len = if seal.is_some() { TAG_LEN } else { 0 };
    let length = HEADER_LEN + plain.len() + tag_len;
    if length > e.max_frame as usize {
        return Err(FrameError::EncodeTooLong {
            length,
            max: e.max_frame,
        });
    }
    let header = Header {
        version: e.version,
        msg_type: e.msg_type,
        cipher: match e.version {
            Version::V1 => e.v1_cipher_flag,
            Version::V2 => seal.is_some(),
        },
        compress: compressed,
        // ok: length <= max_frame, a u32.
        length: length as u32,
        uuid: e.uuid,
    };
    let head = header.encode();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&head);
    out.extend_from_slice(plain);
    if let Some(cipher) = seal {
        let tag = cipher.seal_in_place(&head, &mut out[HEADER_LEN..])?;
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// Sets the cipher flag of an encoded plain frame and fixes its CRC: in v2
/// a Hello or Welcome with the flag carries a Noise handshake message
/// rather than a plain body.
pub fn mark_handshake(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        bytes[2] = 1;
        let crc = super::crc::crc32(&bytes[0..8]);
        bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Opens a received body: authenticates and decrypts it when `open` is
/// given (v2 sealed sessions), then inflates it if flagged.
///
/// The cipher flag must match: a v2 session with keys accepts only sealed
/// frames and a session without keys only plain ones
/// ([`FrameError::CipherMismatch`]); a v1 frame is never accepted where
/// keys are given. In v1 the flag means "reply encrypted" and says nothing
/// about the body, so it is not checked there.
pub fn open_body(
    frame: Frame,
    open: Option<&mut CipherState>,
    max_frame: u32,
) -> Result<Vec<u8>, FrameError> {
    let Frame { header, mut body } = frame;
    match header.version {
        Version::V2 => match (header.cipher, open) {
            (true, Some(cipher)) => cipher.open_in_place(&header.encode(), &mut body)?,
            (false, None) => {}
            _ => return Err(FrameError::CipherMismatch),
        },
        // A v1 frame carries no seal: on a sealed session it is a forgery
        // (found by the decode_encrypted fuzz target: a sealed frame with
        // its version byte set to 1 used to open unauthenticated).
        Version::V1 if open.is_some() => return Err(FrameError::CipherMismatch),
        Version::V1 => {}
    }
    if header.compress {
        body = inflate_capped(&body, max_frame)?;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::decoder::FrameDecoder;

    #[test]
    fn shared_body_frames_equal_encoded_ones() {
        let big = b"cpu=12 mem=34 load=0.5 ".repeat(60);
        for body in [&b"tiny"[..], &big[..]] {
            let shared = SharedBody::new(body.to_vec());
            // Twice each, in an order that exercises the cached form.
            for c in [
                Compress::IfSmaller(6),
                Compress::Always(6),
                Compress::Never,
                Compress::IfSmaller(6),
                Compress::Always(9),
                Compress::Always(6),
            ] {
                for v in [Version::V1, Version::V2] {
                    let e = enc(v, c);
                    assert_eq!(
                        encode_shared(&e, &shared, None).unwrap(),
                        encode(&e, body, None).unwrap(),
                        "{c:?} {v:?} {} bytes",
                        body.len()
                    );
                }
            }
        }
    }

    fn enc(version: Version, compress: Compress) -> Encode {
        Encode {
            version,
            msg_type: MsgType::Report,
            uuid: Uuid::from_text("dev-1").unwrap(),
            compress,
            v1_cipher_flag: false,
            max_frame: 1 << 20,
        }
    }

    fn decode_one(bytes: &[u8]) -> Frame {
        let mut d = FrameDecoder::new(1 << 20);
        d.feed(bytes).unwrap();
        d.next_frame().unwrap().unwrap()
    }

    #[test]
    fn plain_and_compressed_round_trip() {
        let body = b"{\"cpu\":12.5,\"mem\":1024}".repeat(40);
        for c in [Compress::Never, Compress::IfSmaller(6), Compress::Always(9)] {
            let bytes = encode(&enc(Version::V1, c), &body, None).unwrap();
            let f = decode_one(&bytes);
            assert_eq!(f.header.compress, c != Compress::Never);
            assert_eq!(open_body(f, None, 1 << 20).unwrap(), body);
        }
    }

    #[test]
    fn sealed_round_trip_and_header_bound() {
        let mut tx = CipherState::new(&[3; 32]);
        let mut rx = CipherState::new(&[3; 32]);
        let body = vec![b'z'; 1000];
        let bytes = encode(
            &enc(Version::V2, Compress::IfSmaller(6)),
            &body,
            Some(&mut tx),
        )
        .unwrap();
        let f = decode_one(&bytes);
        assert!(f.header.cipher && f.header.compress);
        assert_eq!(open_body(f, Some(&mut rx), 1 << 20).unwrap(), body);

        // Flip the compress flag (and fix the CRC): the AEAD catches it.
        let mut bytes = encode(&enc(Version::V2, Compress::Never), b"abc", Some(&mut tx)).unwrap();
        bytes[3] = 1;
        let crc = crc32fast::hash(&bytes[0..8]);
        bytes[8..12].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            open_body(decode_one(&bytes), Some(&mut rx), 1 << 20),
            Err(FrameError::Unauthentic)
        );
    }

    #[test]
    fn cipher_flag_must_match_session() {
        let plain = encode(&enc(Version::V2, Compress::Never), b"x", None).unwrap();
        let mut k = CipherState::new(&[1; 32]);
        assert_eq!(
            open_body(decode_one(&plain), Some(&mut k), 1 << 20),
            Err(FrameError::CipherMismatch)
        );
        let sealed = encode(&enc(Version::V2, Compress::Never), b"x", Some(&mut k)).unwrap();
        assert_eq!(
            open_body(decode_one(&sealed), None, 1 << 20),
            Err(FrameError::CipherMismatch)
        );
    }

    #[test]
    fn encode_respects_max() {
        let mut e = enc(Version::V1, Compress::Never);
        e.max_frame = 100;
        assert!(encode(&e, &[0; 55], None).is_ok());
        assert_eq!(
            encode(&e, &[0; 56], None),
            Err(FrameError::EncodeTooLong {
                length: 101,
                max: 100
            })
        );
    }
}
