//! The on-disk record format of `pushes.log`.
//!
//! The file starts with the 8-byte magic `EGWPLOG1`, then records:
//! `[u32 LE length][u32 LE CRC-32 of payload][payload]`, the payload a
//! postcard [`Record`]. A record that does not parse (short, too long,
//! bad CRC, bad payload) ends the log when it is read: that is how a torn
//! tail from a crash mid-write is found (see [`super::file`]).
//!
//! Kept apart from the file handling so the format can be read in one
//! place: changing anything here changes what older logs replay as.
//!
//! New record kinds are appended to [`Record`] only (postcard numbers
//! variants in order), so every older log replays unchanged. The reverse
//! does not hold: a master built before `Awaiting`/`Answered` existed
//! reads the first such record as a torn tail and cuts the log there,
//! losing what follows. Downgrading a master whose log holds push results
//! therefore needs the log emptied of them first (let the pushes be
//! delivered and the answers age out, or move `pushes.log` aside).

use std::io;

use serde::{Deserialize, Serialize};

use crate::proto::v2::Push;
use crate::proto::{UUID_LEN, Uuid};

/// The first bytes of every push log: tells a push log from any other
/// file in the state directory before anything is replayed.
pub const MAGIC: &[u8; 8] = b"EGWPLOG1";
/// Largest record accepted when reading (a push body is capped below this).
pub const MAX_RECORD: u32 = 4 << 20;

/// One log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A push accepted for these agents.
    Accepted {
        /// The push.
        push: Push,
        /// Target uuids (trailing NULs trimmed).
        targets: Vec<Vec<u8>>,
    },
    /// A push delivered to one agent.
    Delivered {
        /// Push id.
        id: u64,
        /// The agent.
        uuid: Vec<u8>,
    },
    /// Ids below this were used (kept across compaction).
    NextId(u64),
    /// Push `id` wants its consumers' results from these agents (written
    /// in the same synced batch as its `Accepted` record, and again by
    /// compaction for agents that have not answered yet): after a restart
    /// the master still knows whose answer to take.
    Awaiting {
        /// Push id.
        id: u64,
        /// Agents whose answer is still wanted (trailing NULs trimmed).
        targets: Vec<Vec<u8>>,
    },
    /// One agent's answer to push `id`, synced before the agent is told
    /// it is stored.
    Answered {
        /// Push id.
        id: u64,
        /// The agent.
        uuid: Vec<u8>,
        /// What it answered.
        answer: Answer,
    },
}

/// A consumer's answer as the push log keeps it. Its own struct, not
/// [`crate::proto::v2::PushResult`]: the log format is frozen like a
/// nested wire struct, and the wire message may grow trailing fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Exit status (-1: killed by a signal).
    pub exit: i32,
    /// Output as the agent sent it (already capped there, and bounded
    /// again by the master's per-agent byte budget).
    pub output: Vec<u8>,
    /// The agent cut the output at its cap.
    pub truncated: bool,
    /// When the consumer finished, agent wall clock, Unix ms (0 unknown).
    pub at_unix_ms: u64,
    /// When the master stored it, Unix ms: what `push_results_max_age`
    /// counts from.
    pub stored_unix_ms: u64,
}

/// The uuid a record names (stored with its trailing NULs trimmed), or
/// `None` for an empty or overlong one.
pub(super) fn uuid_of(b: &[u8]) -> Option<Uuid> {
    if b.is_empty() || b.len() > UUID_LEN {
        return None;
    }
    let mut u = [0u8; UUID_LEN];
    u[..b.len()].copy_from_slice(b);
    Some(Uuid(u))
}

/// One framed record, on its own (compaction writes them one by one).
pub(super) fn encode_record(r: &Record) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_record_into(r, &mut out)?;
    Ok(out)
}

/// Appends one framed record to `out`.
pub(super) fn encode_record_into(r: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = postcard::to_allocvec(r).map_err(io::Error::other)?;
    out.reserve(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Parses one record at the start of `b`: the record and bytes used, or
/// `None` for a torn or corrupt record.
pub(super) fn read_record(b: &[u8]) -> Option<(Record, usize)> {
    let len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = b.get(8..8 + len as usize)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let r = postcard::from_bytes(payload).ok()?;
    Some((r, 8 + len as usize))
}
