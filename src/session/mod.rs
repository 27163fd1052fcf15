//! Sans-I/O session state machines.
//!
//! Sessions take received bytes, the current [`Clock`] and, where a
//! handshake or key needs it, randomness ([`Entropy`]) from their caller,
//! and hand back bytes to send ([`TxQueue`]), the next deadline, and
//! events. They own no socket and read no clock or random source
//! (`crate::os` supplies the real ones), so every timing rule (heartbeats, misses,
//! eviction, handshake timeouts) is tested with simulated time. The agent and
//! master roles are thin shells that move bytes between these and sockets.
//!
//! - [`agent::AgentSession`]: the device's one connection to its master.
//! - [`master::MasterSession`]: the master's view of one connection.
//! - [`outbox::Outbox`]: the master's per-agent queue of unacked pushes.
//! - [`dedup::RecentIds`]: the agent's memory of delivered push ids.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::proto::crypto::Ephemeral;
use crate::proto::{Frame, FrameDecoder, FrameError};

pub mod dedup;
#[cfg(feature = "master")]
pub mod identity;
#[cfg(feature = "master")]
pub mod legacy;
pub mod liveness;
pub mod outbox;

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "master")]
pub mod master;
#[cfg(all(test, feature = "agent", feature = "master"))]
mod tests;

/// The time as a session sees it, supplied by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Monotonic time: the only time used for keepalives and eviction.
    pub mono: Instant,
    /// Wall clock, Unix milliseconds, only ever *reported* (0 if unknown).
    pub unix_ms: u64,
}

impl Clock {
    /// The same clock `d` later (for simulated time in tests and tools).
    pub fn advance(self, d: Duration) -> Clock {
        Clock {
            mono: self.mono + d,
            unix_ms: self.unix_ms + u64::try_from(d.as_millis()).unwrap_or(0),
        }
    }
}

/// Randomness supplied by the caller: the OS random source in the shells
/// (`crate::os::OsEntropy`), fixed or counting bytes in tests, so a
/// session's handshake can be replayed byte for byte.
pub trait Entropy {
    /// Fills `buf` with random bytes; `Err` if the source failed.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed>;

    /// Fresh randomness for one Noise handshake.
    fn ephemeral(&mut self) -> Result<Ephemeral, EntropyFailed> {
        let mut bytes = [0u8; 32];
        self.fill(&mut bytes)?;
        Ok(Ephemeral(bytes))
    }
}

/// The random source failed: the session closes rather than go on with
/// predictable keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntropyFailed;

impl std::fmt::Display for EntropyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the random source failed")
    }
}

impl std::error::Error for EntropyFailed {}

/// What [`receive`] needs of a session: both sessions cut bytes into
/// frames the same way and differ only in what a frame does.
pub(crate) trait Receiver {
    /// The session's frame decoder.
    fn decoder(&mut self) -> &mut FrameDecoder;
    /// Whether the session has ended (input is then ignored).
    fn is_closed(&self) -> bool;
    /// Counts a received frame in the session's traffic.
    fn count_in(&mut self, frame: &Frame);
    /// Closes the session because of undecodable input.
    fn bad_frame(&mut self, e: FrameError);
}

/// Feeds received bytes to `s`'s decoder and hands each whole frame to
/// `handle`, until the bytes are used up, a frame is bad (the session
/// closes with its reason) or a frame closed the session.
pub(crate) fn receive<S: Receiver>(s: &mut S, data: &[u8], mut handle: impl FnMut(&mut S, Frame)) {
    if s.is_closed() {
        return;
    }
    if let Err(e) = s.decoder().feed(data) {
        return s.bad_frame(e);
    }
    while !s.is_closed() {
        match s.decoder().next_frame() {
            Ok(Some(frame)) => {
                s.count_in(&frame);
                handle(s, frame);
            }
            Ok(None) => break,
            Err(e) => return s.bad_frame(e),
        }
    }
}

/// Limits of a connection's outgoing queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLimits {
    /// Most frames waiting to be written.
    pub max_frames: usize,
    /// Most bytes waiting to be written.
    pub max_bytes: usize,
}

impl Default for TxLimits {
    fn default() -> Self {
        TxLimits {
            max_frames: 1024,
            max_bytes: 4 << 20,
        }
    }
}

/// Frames waiting to be written, bounded in frames and bytes. A full queue
/// means the peer reads too slowly: the owner closes the connection with
/// reason `slow consumer` rather than let one reader hold memory.
#[derive(Debug, Default)]
pub struct TxQueue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// The queue was full; the frame is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull(pub Vec<u8>);

impl TxQueue {
    /// Appends a frame unless that would break `limits`.
    pub fn push(&mut self, frame: Vec<u8>, limits: &TxLimits) -> Result<(), QueueFull> {
        if self.frames.len() >= limits.max_frames || self.bytes + frame.len() > limits.max_bytes {
            return Err(QueueFull(frame));
        }
        self.bytes += frame.len();
        self.frames.push_back(frame);
        Ok(())
    }

    /// Appends a frame regardless of limits: for the final Close frame,
    /// which must go out even when the queue overflowed.
    pub fn push_final(&mut self, frame: Vec<u8>) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Takes the oldest frame to write.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let f = self.frames.pop_front()?;
        self.bytes -= f.len();
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            // An idle connection keeps no queue storage (thousands of idle
            // agents: this is per-connection memory, not a hot path).
            self.frames = VecDeque::new();
        }
        Some(f)
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops everything (after a close).
    pub fn clear(&mut self) {
        self.frames = VecDeque::new();
        self.bytes = 0;
    }
}

/// Why and how a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// Machine-readable reason.
    pub code: crate::proto::v2::CloseCode,
    /// Human-readable reason.
    pub reason: String,
    /// The peer said so (a Close frame), rather than this side deciding.
    pub by_peer: bool,
    /// For [`CloseCode::BadFrame`](crate::proto::v2::CloseCode::BadFrame): the frame error kind, for counters.
    pub frame_error: Option<&'static str>,
}

/// Counters a session keeps about its own traffic since the shell last
/// took them ([`take`](Traffic::take)), so the registry can sum them
/// without parsing anything. 32-bit counts: the shell takes them after
/// every read, long before they could wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames received, by message type number (index 0: unknown).
    pub frames_in: [u32; 11],
    /// Frames queued for sending, by message type number.
    pub frames_out: [u32; 11],
    /// Bytes received (whole frames).
    pub bytes_in: u32,
    /// Bytes queued for sending.
    pub bytes_out: u32,
    /// v1 requests with the compress flag set, by what their body was
    /// (indexed by `legacy::FlaggedBody::index`).
    pub legacy_compress_flag: [u32; 3],
}

impl Traffic {
    /// Counts a received frame.
    pub fn count_in(&mut self, msg_type: u8, len: usize) {
        let i = usize::from(msg_type).min(10);
        self.frames_in[i] = self.frames_in[i].wrapping_add(1);
        self.bytes_in = self.bytes_in.wrapping_add(len as u32);
    }

    /// Counts a frame queued for sending (its type is byte 1).
    pub fn count_out(&mut self, frame: &[u8]) {
        let i = usize::from(frame.get(1).copied().unwrap_or(0)).min(10);
        self.frames_out[i] = self.frames_out[i].wrapping_add(1);
        self.bytes_out = self.bytes_out.wrapping_add(frame.len() as u32);
    }

    /// Whether nothing was counted (every frame has bytes, so the byte
    /// counts say it).
    pub fn is_empty(&self) -> bool {
        self.bytes_in == 0 && self.bytes_out == 0
    }

    /// Returns the counts and resets them.
    pub fn take(&mut self) -> Traffic {
        std::mem::take(self)
    }

    /// Total frames received.
    pub fn total_in(&self) -> u64 {
        self.frames_in.iter().map(|&n| u64::from(n)).sum()
    }

    /// Total frames sent.
    pub fn total_out(&self) -> u64 {
        self.frames_out.iter().map(|&n| u64::from(n)).sum()
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn tx_queue_bounds_hand_back_the_frame() {
        let l = TxLimits {
            max_frames: 2,
            max_bytes: 10,
        };
        let mut q = TxQueue::default();
        q.push(vec![0; 4], &l).unwrap();
        assert_eq!(q.push(vec![1; 7], &l), Err(QueueFull(vec![1; 7])));
        q.push(vec![0; 6], &l).unwrap();
        assert_eq!(q.push(vec![2], &l), Err(QueueFull(vec![2])));
        q.push_final(vec![9; 3]);
        assert_eq!((q.len(), q.bytes()), (3, 13));
        assert_eq!(q.pop(), Some(vec![0; 4]));
        assert_eq!(q.bytes(), 9);
    }
}
