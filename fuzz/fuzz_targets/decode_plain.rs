//! Bytes off the wire → `FrameDecoder` → frames → `open_body(None)` →
//! `Message::decode` (v2).
//!
//! Input: one control byte, then the stream. Control bits 0–6: feed size
//! (0 = the whole stream at once); bit 7: repair the header CRCs first.
//!
//! Checks, beyond "no panic": the frames and the final error do not depend
//! on how the stream is split; frames respect the cap; the buffer stays
//! within one frame plus one feed; what opens fits the cap; a decoded
//! message re-encodes to itself.
#![no_main]

use edge_gw::proto::decoder::MAX_FEED;
use edge_gw::proto::frame::open_body;
use edge_gw::proto::v2::Message;
use edge_gw::proto::{Frame, FrameDecoder, HEADER_LEN, Version};
use edge_gw_fuzz::{feed_chunked, repair_headers};
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer reaches `TooLong` and the bound checks.
const MAX: u32 = 16 << 10;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if ctl & 0x80 != 0 {
        repair_headers(&mut bytes, None);
    }
    let chunk = usize::from(ctl & 0x7f);

    let mut d = FrameDecoder::new(MAX);
    let mut frames = Vec::new();
    let chunked = feed_chunked(&mut d, &bytes, chunk, |f| {
        assert!(frame_within_cap(&f));
        frames.push(f);
    });
    assert!(d.buffered() <= MAX as usize + MAX_FEED);

    // Differential: the same stream in one feed gives the same result.
    let mut whole = FrameDecoder::new(MAX);
    let mut frames_whole = Vec::new();
    let at_once = feed_chunked(&mut whole, &bytes, 0, |f| frames_whole.push(f));
    assert_eq!(chunked, at_once, "error depends on the split");
    assert_eq!(frames, frames_whole, "frames depend on the split");

    for f in frames {
        let (version, t) = (f.header.version, f.header.msg_type);
        let Ok(body) = open_body(f, None, MAX) else {
            continue;
        };
        assert!(body.len() <= MAX as usize, "inflated past the cap");
        if version == Version::V2
            && let Ok(m) = Message::decode(t, &body)
        {
            assert_eq!(m.msg_type(), t);
            assert_eq!(Message::decode(t, &m.to_body()), Ok(m));
        }
    }
});

/// A frame never exceeds the cap and its body is exactly what the header
/// announced.
fn frame_within_cap(f: &Frame) -> bool {
    f.header.length <= MAX && f.body.len() + HEADER_LEN == f.header.length as usize
}
