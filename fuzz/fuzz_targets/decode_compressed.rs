//! Compressed bodies with a small inflation cap (64 KiB).
//!
//! Three frames are built from each input and run through the decoder and
//! `open_body`:
//! 1. the input itself as a body flagged compressed (v1 and plain v2), so
//!    the inflater sees arbitrary, often almost-valid, zlib data;
//! 2. the same body sealed with a fixed key (v2), so inflation runs after
//!    authentication, as on a real session;
//! 3. a real zlib stream of the input (level from the first byte), which
//!    must inflate to exactly the input, or fail with `InflateTooLarge`
//!    when the input is longer than a cap taken from the second byte.
//!
//! Memory: what `open_body` returns never exceeds the cap; its heap
//! capacity is checked too, since memory held is what a bomb costs.
#![no_main]

use edge_gw::proto::crypto::{CipherState, TAG_LEN};
use edge_gw::proto::frame::open_body;
use edge_gw::proto::{FrameDecoder, FrameError, HEADER_LEN, Header, MsgType, Uuid, Version};
use edge_gw_fuzz::feed_chunked;
use libfuzzer_sys::fuzz_target;

const CAP: u32 = 64 << 10;
const KEY: [u8; 32] = [0x5a; 32];

fuzz_target!(|data: &[u8]| {
    // Frames must fit the decoder; longer inputs say nothing new.
    if data.len() > (CAP as usize) - HEADER_LEN - TAG_LEN {
        return;
    }
    for version in [Version::V1, Version::V2] {
        let r = open_one(&frame(version, true, false, data), None, CAP);
        check_capped(&r, CAP);
    }

    let mut tx = CipherState::new(&KEY);
    let mut rx = CipherState::new(&KEY);
    let sealed = frame_sealed(data, &mut tx);
    check_capped(&open_one(&sealed, Some(&mut rx), CAP), CAP);

    let level = data.first().map_or(6, |b| b % 11);
    let cap = data.get(1).map_or(CAP, |&b| u32::from(b) * 64);
    let z = miniz_oxide::deflate::compress_to_vec_zlib(data, level);
    if z.len() + HEADER_LEN > CAP as usize {
        return;
    }
    let r = open_one(&frame(Version::V2, true, false, &z), None, cap);
    check_capped(&r, cap);
    if data.len() <= cap as usize {
        assert_eq!(r.as_deref(), Ok(data), "zlib round trip failed");
    } else {
        assert_eq!(r, Err(FrameError::InflateTooLarge { max: cap }));
    }
});

/// What `open_body` gave must respect the cap: as length, and as heap
/// capacity (at most twice the cap, from the output vector's doubling).
fn check_capped(r: &Result<Vec<u8>, FrameError>, cap: u32) {
    match r {
        Ok(body) => {
            assert!(body.len() <= cap as usize, "{} > cap {cap}", body.len());
            assert!(
                body.capacity() <= 2 * cap as usize,
                "capacity {} for cap {cap}",
                body.capacity()
            );
        }
        Err(
            FrameError::BadCompression(_)
            | FrameError::InflateTooLarge { .. }
            | FrameError::Unauthentic,
        ) => {}
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn header(version: Version, compress: bool, cipher: bool, body_len: usize) -> Header {
    Header {
        version,
        msg_type: MsgType::Report,
        cipher,
        compress,
        length: (HEADER_LEN + body_len) as u32,
        uuid: Uuid([b'z'; 33]),
    }
}

fn frame(version: Version, compress: bool, cipher: bool, body: &[u8]) -> Vec<u8> {
    let mut out = header(version, compress, cipher, body.len())
        .encode()
        .to_vec();
    out.extend_from_slice(body);
    out
}

/// `body` as the (still compressed-flagged) plaintext of a sealed v2
/// frame, the header authenticated as associated data.
fn frame_sealed(body: &[u8], tx: &mut CipherState) -> Vec<u8> {
    let head = header(Version::V2, true, true, body.len() + TAG_LEN).encode();
    let mut out = head.to_vec();
    out.extend_from_slice(body);
    let tag = tx.seal_in_place(&head, &mut out[HEADER_LEN..]).unwrap();
    out.extend_from_slice(&tag);
    out
}

/// Decodes exactly one frame from `bytes` and opens it.
fn open_one(bytes: &[u8], rx: Option<&mut CipherState>, cap: u32) -> Result<Vec<u8>, FrameError> {
    let mut d = FrameDecoder::new(CAP);
    let mut frames = Vec::new();
    feed_chunked(&mut d, bytes, 0, |f| frames.push(f)).unwrap();
    assert_eq!(frames.len(), 1);
    open_body(frames.remove(0), rx, cap)
}
