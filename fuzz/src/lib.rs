//! Helpers shared by the fuzz targets.
//!
//! Random bytes almost never carry a valid header CRC, so on its own a
//! fuzzer spends its time in the CRC check. [`repair_headers`] fixes the
//! CRCs (and optionally the uuids) of the frames an input describes, so a
//! target can let one control bit decide whether its input reaches the code
//! behind the CRC.

use edge_gw::proto::{Frame, FrameDecoder, FrameError, HEADER_LEN, Uuid};
use edge_gw::session::CloseInfo;

/// Walks `bytes` as a sequence of frames (each header's length field says
/// where the next begins) and rewrites each header's CRC, and its uuid when
/// `uuid` is given, so that the headers pass the CRC check and the other
/// fields decide what happens. Stops at a length that cannot advance.
pub fn repair_headers(bytes: &mut [u8], uuid: Option<&Uuid>) {
    let mut at = 0;
    while let Some(head) = bytes.get_mut(at..at + HEADER_LEN) {
        if let Some(u) = uuid {
            head[12..].copy_from_slice(&u.0);
        }
        let crc = crc32fast::hash(&head[0..8]);
        head[8..12].copy_from_slice(&crc.to_le_bytes());
        let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if length < HEADER_LEN {
            return;
        }
        at = at.saturating_add(length);
    }
}

/// Builds a stream of frames with correct lengths and CRCs from a compact
/// description, so the fuzzer spends its effort on field values and bodies
/// rather than on finding consistent lengths. Records are
/// `version type flags n body[n]`: flags bits 0–1 are the cipher byte and
/// bits 2–3 the compress byte (2 and 3 are invalid values, on purpose);
/// with bit 4 and compress = 1 the body is zlib-compressed here, so it
/// inflates. A short last record takes what is left.
pub fn frames_from_records(mut input: &[u8], uuid: &Uuid) -> Vec<u8> {
    let mut out = Vec::new();
    while let [version, msg_type, flags, n, rest @ ..] = input {
        let n = usize::from(*n).min(rest.len());
        let (raw, tail) = rest.split_at(n);
        input = tail;
        let compress = (flags >> 2) & 3;
        let body = if compress == 1 && flags & 0x10 != 0 {
            miniz_oxide::deflate::compress_to_vec_zlib(raw, 6)
        } else {
            raw.to_vec()
        };
        let length = (HEADER_LEN + body.len()) as u32;
        let mut head = vec![*version, *msg_type, flags & 3, compress];
        head.extend_from_slice(&length.to_le_bytes());
        let crc = crc32fast::hash(&head);
        head.extend_from_slice(&crc.to_le_bytes());
        head.extend_from_slice(&uuid.0);
        out.extend_from_slice(&head);
        out.extend_from_slice(&body);
    }
    out
}

/// Feeds `bytes` to `d` in pieces of `chunk` bytes (0: all at once),
/// draining after every feed as the decoder's contract requires, and hands
/// each frame to `on_frame`. Returns the error that ends the stream, if any.
pub fn feed_chunked(
    d: &mut FrameDecoder,
    bytes: &[u8],
    chunk: usize,
    mut on_frame: impl FnMut(Frame),
) -> Result<(), FrameError> {
    let chunk = if chunk == 0 {
        bytes.len().max(1)
    } else {
        chunk
    };
    for piece in bytes.chunks(chunk) {
        d.feed(piece)?;
        while let Some(f) = d.next_frame()? {
            on_frame(f);
        }
    }
    Ok(())
}

/// Checks a session's event stream after an input: at most one `Closed`
/// event, always the last, with a non-empty reason, and present exactly
/// when the session says it is closed. Panics (a fuzz finding) otherwise.
pub fn check_events<E: std::fmt::Debug>(
    events: &[E],
    is_closed: bool,
    closed: impl Fn(&E) -> Option<&CloseInfo>,
) {
    let closes = events.iter().filter(|e| closed(e).is_some()).count();
    assert!(closes <= 1, "several Closed events: {events:?}");
    assert_eq!(
        is_closed,
        closes == 1,
        "is_closed() disagrees with the events: {events:?}"
    );
    if closes == 1 {
        let last = events.last().and_then(&closed);
        let Some(info) = last else {
            panic!("events after Closed: {events:?}");
        };
        assert!(!info.reason.trim().is_empty(), "Closed without a reason");
        if let Some(kind) = info.frame_error {
            assert!(FrameError::KINDS.contains(&kind), "unknown kind {kind}");
        }
    }
}
