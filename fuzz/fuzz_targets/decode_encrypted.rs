//! Sealed v2 frames: the original or an error, never anything else.
//!
//! A fixed-key cipher pair. A valid sealed frame goes first and must open;
//! the fuzz input then supplies the next bytes on the wire. Control byte
//! bit 0 chooses how:
//! - 0: the input itself is the next frame (bit 1: repair its CRC first);
//! - 1: the input is a list of edits (position, xor) applied to the real
//!   second frame (bit 1: repair its CRC afterwards), which keeps the
//!   fuzzer next to a valid frame.
//!
//! Whatever opens must be exactly the second frame, byte for byte, with its
//! original body: the AEAD covers the header too, and the implicit nonce
//! pins the frame to its place.
#![no_main]

use edge_gw::proto::crypto::CipherState;
use edge_gw::proto::frame::{Compress, Encode, encode, open_body};
use edge_gw::proto::{FrameDecoder, MsgType, Uuid, Version};
use edge_gw_fuzz::{feed_chunked, repair_headers};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x17; 32];
const MAX: u32 = 64 << 10;
const FIRST: &[u8] = b"first frame: a heartbeat-sized body";
/// Long and repetitive, so the frame is compressed as well as sealed.
const SECOND: &[u8] = concat!(
    "second frame, compressed and sealed; ",
    "second frame, compressed and sealed; ",
    "second frame, compressed and sealed",
)
.as_bytes();

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let e = Encode {
        version: Version::V2,
        msg_type: MsgType::Report,
        uuid: Uuid([b'e'; 33]),
        compress: Compress::IfSmaller(6),
        v1_cipher_flag: false,
        max_frame: MAX,
    };
    let mut tx = CipherState::new(&KEY);
    let mut rx = CipherState::new(&KEY);
    let first = encode(&e, FIRST, Some(&mut tx)).unwrap();
    let second = encode(&e, SECOND, Some(&mut tx)).unwrap();

    let mut d = FrameDecoder::new(MAX);
    let mut frames = Vec::new();
    feed_chunked(&mut d, &first, 0, |f| frames.push(f)).unwrap();
    let opened = open_body(frames.remove(0), Some(&mut rx), MAX);
    assert_eq!(opened.as_deref(), Ok(FIRST));

    let mut wire = if ctl & 1 == 0 {
        rest.to_vec()
    } else {
        let mut w = second.clone();
        for edit in rest.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % w.len();
            w[at] ^= edit[2];
        }
        w
    };
    if ctl & 2 != 0 {
        repair_headers(&mut wire, None);
    }

    let _ = feed_chunked(&mut d, &wire, 0, |f| {
        let bytes = [&f.header.encode()[..], &f.body].concat();
        if let Ok(body) = open_body(f, Some(&mut rx), MAX) {
            assert_eq!(body, SECOND, "a forged frame opened");
            assert_eq!(bytes, second, "a changed frame opened");
        }
    });
});
