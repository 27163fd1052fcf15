//! Where the committer hands the pushes it has made durable, and asks
//! about room before it writes them.
//!
//! The push log only knows records, files and its thread; the fleet (who
//! the targets are, their outboxes, their connections) is the master's.
//! The master implements this trait over its registry
//! ([`crate::master::push_router`]) and gives it to the committer at spawn,
//! so this module does not depend on the registry and can be tested with a
//! sink of its own.

use std::sync::Arc;

use super::file::KeptAnswers;
use super::record::Answer;
use crate::proto::Uuid;
use crate::proto::v2::Push;
use crate::session::Clock;
use crate::session::outbox::OverflowKind;

/// The receiving side of the push log, called from the committer thread.
///
/// Calls are short and never wait for I/O: the committer calls them
/// between disk writes, and whatever locks they take are shared with
/// agent connections.
pub trait PushSink: Send + 'static {
    /// Whether every target has room for one more push of `body_len`
    /// bytes beyond `promised(target)` (messages, body bytes) already
    /// promised to it by earlier pushes of the same batch. A refusal is
    /// counted by the sink (it is a fleet figure), and the push is then
    /// neither written nor queued.
    fn check_room(
        &self,
        targets: &[Uuid],
        body_len: usize,
        promised: &dyn Fn(&Uuid) -> (usize, usize),
    ) -> Result<(), OverflowKind>;

    /// Takes a push whose `Accepted` record is synced: queues it for
    /// `targets` and starts its delivery. Returns the targets that had no
    /// room after all (the room check makes that impossible unless the
    /// limits shrank in between).
    fn queue(&self, push: Arc<Push>, targets: &[Uuid], now: Clock) -> Vec<Uuid>;

    /// Pushes still waiting for at least one target, in O(1): read after
    /// every round to decide whether compaction is due.
    fn live_count(&self) -> usize;

    /// Every push still waiting, with the targets it waits for, in id
    /// order: what a compacted log must keep. Only called when compaction
    /// is due.
    fn live_pushes(&self) -> Vec<(Arc<Push>, Vec<Uuid>)>;

    /// Takes answers whose `Answered` records are synced: shows them (API,
    /// events) and confirms each to its agent's connection.
    fn answers_stored(&self, answers: Vec<(u64, Uuid, Answer)>);

    /// Answers and awaited answers still kept, in O(1): part of the
    /// compaction check.
    fn kept_answer_count(&self) -> usize;

    /// What a compacted log must keep of push results.
    fn kept_answers(&self) -> KeptAnswers;
}
