//! The push log: makes a push the API accepted (202) survive a crash or
//! SIGKILL of the master, and replays the undelivered ones at start.
//!
//! `pushes.log` in the state directory is an append-only log of
//! `Accepted` and `Delivered` records (format: [`record`]; replay,
//! appends, compaction and the fsync policy: [`file`](mod@file)). It is written on a
//! thread of its own, the [`committer`], so that no disk I/O runs on an
//! executor thread: accepted pushes are written and synced in groups and
//! only then answered; delivery records are written unsynced in batches.
//!
//! The push log does not know the fleet. The committer is handed a
//! [`PushSink`] at spawn (the master's is
//! [`OutboxRouter`](crate::master::push_router::OutboxRouter), over the
//! registry): it asks the sink about room before writing a push, hands it
//! every push once synced, and asks it which pushes are still live when
//! compacting.

pub mod committer;
pub mod file;
pub mod record;
pub mod sink;
#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
pub(crate) use committer::Worker;
pub use committer::{Committer, DELIVERY_QUEUE, LogStats, MAX_BATCH, PUSH_QUEUE};
pub use file::{COMPACT_MIN_BYTES, LogFile, Recovered};
pub use record::{MAX_RECORD, Record};
pub use sink::PushSink;
