//! Streaming frame decoder: bytes in, whole frames out.
//!
//! Check, then parse: nothing is allocated for a frame until its header has
//! passed every check of [`Header::parse`], including the length cap. Bytes
//! may arrive in any split, one at a time or many frames in one read.

use super::error::FrameError;
use super::frame::Frame;
use super::header::{HEADER_LEN, Header};

/// Most bytes a caller may [`feed`](FrameDecoder::feed) at once beyond one
/// partial frame. Callers read at most this much per read call.
pub const MAX_FEED: usize = 64 * 1024;

/// Cuts a byte stream into frames.
///
/// Memory: the internal buffer holds at most one partial frame plus one
/// [`MAX_FEED`] chunk, and is released when drained beyond
/// `idle_capacity` bytes, so an idle connection holds no buffer.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    max_frame: u32,
    /// At most `u32::MAX` like `max_frame` (frames are never larger).
    idle_capacity: u32,
    /// A framing error is final: the frame boundaries are lost. Boxed: it
    /// happens once in a connection's life, and inline it would cost every
    /// one of a master's idle connections 40 bytes.
    failed: Option<Box<FrameError>>,
}

impl FrameDecoder {
    /// A decoder accepting frames up to `max_frame` bytes, header included.
    /// It keeps no buffer between frames.
    pub fn new(max_frame: u32) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            max_frame,
            idle_capacity: 0,
            failed: None,
        }
    }

    /// Keeps up to `bytes` of buffer capacity between frames, trading idle
    /// memory for fewer allocations (the agent's one connection wants
    /// this; the master's thousands do not).
    pub fn with_idle_capacity(mut self, bytes: usize) -> FrameDecoder {
        self.idle_capacity = u32::try_from(bytes).unwrap_or(u32::MAX);
        self
    }

    /// Capacity kept between frames, as a `usize` for comparisons.
    fn idle_capacity(&self) -> usize {
        self.idle_capacity as usize
    }

    /// The configured frame size cap.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Changes the frame size cap from the next header parsed on. A session
    /// lowers it while its peer is unauthenticated, so an unknown peer
    /// cannot make the decoder reserve a large frame, and raises it once
    /// the peer has proved who it is. A frame whose header has already
    /// arrived is checked again against the new cap.
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Heap bytes held by the buffer (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends received bytes. Call [`next_frame`](Self::next_frame) until
    /// it returns `Ok(None)` before feeding more; a peer that makes the
    /// buffer exceed one maximal frame plus [`MAX_FEED`] is an error.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err((**e).clone());
        }
        let buffered = self.buffered() + data.len();
        if buffered > self.max_frame as usize + MAX_FEED {
            return Err(self.fail(FrameError::BufferFull { buffered }));
        }
        if self.pos > 0 {
            // Compact before growing: consumed bytes are never needed again.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next whole frame; `Ok(None)` when more bytes are needed
    /// (incomplete); an error when the stream is broken (final).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err((**e).clone());
        }
        let avail = &self.buf[self.pos..];
        let Some(head) = avail.first_chunk::<HEADER_LEN>() else {
            self.release_if_drained();
            self.hold_at_most(HEADER_LEN);
            return Ok(None);
        };
        let header = match Header::parse(head, self.max_frame) {
            Ok(h) => h,
            Err(e) => return Err(self.fail(e)),
        };
        let len = header.length as usize;
        if avail.len() < len {
            // The length is checked, so reserving the rest is bounded; one
            // allocation instead of repeated growth for large frames.
            // Consumed bytes go first, then exactly the frame's length is
            // reserved: the capacity the master's budget is charged for is
            // the frame, not an amortised doubling of it.
            let missing = len - avail.len();
            self.hold_at_most(len);
            self.buf.reserve_exact(missing);
            return Ok(None);
        }
        if self.pos == 0 && len == self.buf.len() && self.buf.capacity() > self.idle_capacity() {
            // The buffer holds exactly this frame (the usual case for a
            // large one): hand it over as the body instead of copying it,
            // so a large frame is held once, not twice for a moment (the
            // master's memory budget counts the buffer, not a copy).
            let mut body = std::mem::take(&mut self.buf);
            body.drain(..HEADER_LEN);
            return Ok(Some(Frame { header, body }));
        }
        let body = avail[HEADER_LEN..len].to_vec();
        self.pos += len;
        self.release_if_drained();
        Ok(Some(Frame { header, body }))
    }

    fn release_if_drained(&mut self) {
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
            if self.buf.capacity() > self.idle_capacity() {
                self.buf = Vec::new();
            }
        }
    }

    /// While waiting for more bytes, keeps no more capacity than the
    /// partial frame needs (`need` bytes, or the idle capacity if larger).
    /// Without this a read of many frames ending in a small partial one
    /// would keep the whole read's capacity for as long as the peer waits:
    /// per connection, that is memory a silent peer holds for free.
    /// Consumed bytes are dropped first; the next feed would drop them
    /// anyway, so this costs no extra copy.
    fn hold_at_most(&mut self, need: usize) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let keep = need.max(self.idle_capacity()).max(self.buf.len());
        if self.buf.capacity() > keep {
            self.buf.shrink_to(keep);
        }
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(Box::new(e.clone()));
        self.buf = Vec::new();
        self.pos = 0;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::header::{MsgType, Uuid, Version};

    fn frame(t: MsgType, body: &[u8]) -> Vec<u8> {
        let h = Header {
            version: Version::V1,
            msg_type: t,
            cipher: false,
            compress: false,
            length: (HEADER_LEN + body.len()) as u32,
            uuid: Uuid::from_text("abc").unwrap(),
        };
        let mut v = h.encode().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn one_byte_at_a_time_and_many_at_once() {
        let mut stream = frame(MsgType::Heartbeat, b"");
        stream.extend(frame(MsgType::Report, b"{\"x\":1}"));
        stream.extend(frame(MsgType::Subscribe, b"{\"code\":\"demo\"}"));

        let mut d = FrameDecoder::new(1024);
        let mut got = Vec::new();
        for b in &stream {
            d.feed(std::slice::from_ref(b)).unwrap();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        let mut d2 = FrameDecoder::new(1024);
        d2.feed(&stream).unwrap();
        let mut got2 = Vec::new();
        while let Some(f) = d2.next_frame().unwrap() {
            got2.push(f);
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got, got2);
        assert_eq!(got[1].body, b"{\"x\":1}");
        assert_eq!(got[2].header.msg_type, MsgType::Subscribe);
        // Drained: no buffer kept.
        assert_eq!(d.capacity(), 0);
        assert_eq!(d2.capacity(), 0);
    }

    #[test]
    fn oversized_header_rejected_before_body_arrives() {
        let mut f = frame(MsgType::Report, b"");
        f[4..8].copy_from_slice(&(2u32 << 20).to_le_bytes());
        let crc = crc32fast::hash(&f[0..8]);
        f[8..12].copy_from_slice(&crc.to_le_bytes());
        let mut d = FrameDecoder::new(1 << 20);
        d.feed(&f).unwrap();
        assert!(matches!(d.next_frame(), Err(FrameError::TooLong { .. })));
        // Final: the same error again, and feeding is refused.
        assert!(matches!(d.next_frame(), Err(FrameError::TooLong { .. })));
        assert!(d.feed(b"x").is_err());
        assert_eq!(d.capacity(), 0);
    }

    #[test]
    fn buffer_bound() {
        let mut d = FrameDecoder::new(100);
        assert!(d.feed(&vec![0u8; 100 + MAX_FEED]).is_ok());
        assert!(matches!(d.feed(b"x"), Err(FrameError::BufferFull { .. })));
    }

    #[test]
    fn a_partial_frame_holds_only_its_own_length() {
        // Many whole frames and a partial one in one read: the capacity the
        // read needed is given back, only the partial frame's is kept.
        let hb = frame(MsgType::Heartbeat, b"");
        let mut stream = Vec::new();
        while stream.len() < 16 * 1024 {
            stream.extend_from_slice(&hb);
        }
        let report = frame(MsgType::Report, &[b'x'; 300]);
        stream.extend_from_slice(&report[..100]);
        let mut d = FrameDecoder::new(1 << 20);
        d.feed(&stream).unwrap();
        while d.next_frame().unwrap().is_some() {}
        assert_eq!(d.buffered(), 100);
        assert!(d.capacity() <= report.len(), "{}", d.capacity());
        d.feed(&report[100..]).unwrap();
        assert_eq!(d.next_frame().unwrap().map(|f| f.body.len()), Some(300));
    }

    #[test]
    fn a_large_frame_is_reserved_once_exactly_and_handed_over_uncopied() {
        // A small frame, then the start of a large one, in one read.
        let mut stream = frame(MsgType::Heartbeat, b"");
        let big = frame(MsgType::Report, &[b'x'; 200_000]);
        stream.extend_from_slice(&big[..1000]);
        let mut d = FrameDecoder::new(1 << 20);
        d.feed(&stream).unwrap();
        assert!(d.next_frame().unwrap().is_some());
        assert_eq!(d.next_frame(), Ok(None));
        // Exactly the large frame: not the consumed bytes before it, not
        // an amortised doubling (the master's budget charges this).
        assert_eq!(d.capacity(), big.len());
        d.feed(&big[1000..]).unwrap();
        assert_eq!(d.capacity(), big.len(), "no regrowth");
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.body.len(), 200_000);
        assert_eq!(d.capacity(), 0, "the buffer went with the frame");
    }

    #[test]
    fn a_lowered_cap_refuses_the_frame_already_announced() {
        let big = frame(MsgType::Report, &[b'x'; 2000]);
        let mut d = FrameDecoder::new(1 << 20);
        d.feed(&big[..HEADER_LEN]).unwrap();
        assert_eq!(d.next_frame(), Ok(None));
        d.set_max_frame(1024);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLong { .. })));
        assert_eq!(d.capacity(), 0);
        let mut d = FrameDecoder::new(1024);
        d.set_max_frame(4096);
        d.feed(&big).unwrap();
        assert!(d.next_frame().unwrap().is_some());
    }

    #[test]
    fn idle_capacity_kept_when_asked() {
        let mut d = FrameDecoder::new(1024).with_idle_capacity(4096);
        d.feed(&frame(MsgType::Heartbeat, b"")).unwrap();
        assert!(d.next_frame().unwrap().is_some());
        assert!(d.capacity() > 0);
        assert_eq!(d.buffered(), 0);
    }
}
