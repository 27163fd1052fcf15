//! The push log's own thread, the committer: group commit for accepted
//! pushes, batched delivery records, compaction.
//!
//! An `fdatasync` takes up to milliseconds on a disk. Done on an executor
//! thread under a lock, one per push, it stalled every agent connection
//! served by that thread and capped accepted pushes at one per sync. Here
//! the log lives on a plain thread (`edge-gw-store`) that owns the
//! [`LogFile`] and the next push id. API handlers queue their push with a
//! reply channel and await the answer; the thread takes every push waiting
//! (up to [`MAX_BATCH`]), asks its [`PushSink`] for room, writes all their
//! `Accepted` records, syncs once, hands the pushes to the sink (which
//! routes them to their agents) and answers each handler.
//!
//! # Invariants
//! - A push is answered `Ok` (202) and queued for its agents only after
//!   its record is synced.
//! - Room: pushes are checked in order against the outboxes plus what
//!   earlier pushes of the same batch will add, and only this thread adds
//!   to outboxes (through the sink; acks only remove), so the enqueue
//!   after the sync cannot overflow. A push without room is answered [`PushError::Full`] and
//!   never written.
//! - Ids: assigned here, in order, from the recovered next id; an id used
//!   by a batch that failed is not used again (its records are cut off,
//!   but if that cut failed they may still be on disk).
//! - Queues are bounded. Pushes: [`PUSH_QUEUE`], a handler waits for room
//!   (back-pressure on the API, whose connections are capped anyway).
//!   Deliveries: [`DELIVERY_QUEUE`], never waited for: a connection's shard
//!   must not stall on the disk, and a lost `Delivered` record only means
//!   a resend after a restart, which the agent answers as a duplicate.
//!   Each one dropped is counted ([`LogStats::deliveries_dropped`]).
//! - If the thread is gone, pending and new pushes fail with an error
//!   instead of waiting forever.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smol::channel::{self, Receiver, Sender, TrySendError};
use smol::future::FutureExt;

use super::file::{COMPACT_MIN_BYTES, LogFile};
use super::record::Answer;
use super::sink::PushSink;
use crate::master::PushError;
use crate::proto::{Uuid, v2};

/// Most pushes written with one sync.
pub const MAX_BATCH: usize = 256;
/// Pushes queued for the committer thread before handlers wait.
pub const PUSH_QUEUE: usize = 512;
/// Delivery records queued for the committer thread before they are dropped.
pub const DELIVERY_QUEUE: usize = 16_384;
/// Answers queued for the committer thread before the next is refused
/// (unconfirmed: its agent sends it again on its next connection).
pub const ANSWER_QUEUE: usize = 1024;
/// Most delivery records written per round, so pushes are not kept
/// waiting behind a long run of them.
const MAX_DELIVERY_BATCH: usize = 4096;
/// At most one warning this often about dropped delivery records.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long the thread waits for more acks after the first one, unless a
/// push comes: one wake-up and one write for many acks instead of one per
/// ack, leaving the CPU to the connections. Acks are not synced anyway.
const DELIVERY_LINGER: Duration = Duration::from_millis(10);

/// What the push log looks like, published by the committer thread after
/// every round so that status pages never wait for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Size of the log, bytes.
    pub bytes: u64,
    /// Records in the log.
    pub records: u64,
    /// Times compacted.
    pub compactions: u64,
    /// `fdatasync`/`fsync` calls done (accepted pushes / syncs is the
    /// group-commit batch size).
    pub syncs: u64,
    /// Pushes handed to the committer thread and not answered yet.
    pub pending_pushes: usize,
    /// Delivery records not written because the queue to the committer thread
    /// was full (or the thread had stopped). Each means at most one resend
    /// after a restart, answered by the agent as a duplicate.
    pub deliveries_dropped: usize,
}

impl LogStats {
    fn of(log: &LogFile) -> LogStats {
        LogStats {
            bytes: log.bytes(),
            records: log.records(),
            compactions: log.compactions,
            syncs: log.syncs,
            ..LogStats::default()
        }
    }
}

/// A push waiting for the committer thread.
struct PushReq {
    /// The push; its id is set by the committer thread.
    push: v2::Push,
    targets: Vec<Uuid>,
    /// Capacity 1, answered exactly once.
    reply: Sender<Result<u64, PushError>>,
}

/// What the committer thread and its handle share.
struct Shared {
    /// Published by the committer thread (a Mutex, not atomics: 32-bit
    /// MIPS has no 64-bit atomics).
    stats: Mutex<LogStats>,
    /// Pushes handed over and not answered (see [`LogStats`]).
    pending: AtomicUsize,
}

/// The handle to the committer thread, owned by the master: the way in
/// for accepted pushes and delivery records.
pub struct Committer {
    pushes: Sender<PushReq>,
    deliveries: Sender<(u64, Uuid)>,
    answers: Sender<(u64, Uuid, Answer)>,
    shared: Arc<Shared>,
    deliveries_dropped: AtomicUsize,
    last_drop_log: Mutex<Option<Instant>>,
    stopping: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The committer thread's side.
pub(crate) struct Worker {
    log: LogFile,
    next_id: u64,
    /// Where synced pushes go, and who knows about room and live pushes.
    sink: Box<dyn PushSink>,
    pushes: Receiver<PushReq>,
    deliveries: Receiver<(u64, Uuid)>,
    answers: Receiver<(u64, Uuid, Answer)>,
    shared: Arc<Shared>,
}

/// What woke the committer thread.
enum Wake {
    Push(PushReq),
    Delivery((u64, Uuid)),
    Answer((u64, Uuid, Answer)),
    DeliveriesClosed,
    AnswersClosed,
    PushesClosed,
}

/// Counts a push as pending until handed to the committer thread; uncounts it
/// if it never is (the send failed, or the caller dropped the future while
/// waiting for room in the queue).
struct Counted<'a>(Option<&'a AtomicUsize>);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Counted<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        Counted(Some(n))
    }

    fn handed_over(mut self) {
        self.0 = None;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Committer {
    /// Starts the committer thread with the opened (and replayed) log, the
    /// next push id it recovered, and the sink synced pushes are handed to.
    pub fn spawn(log: LogFile, next_id: u64, sink: Box<dyn PushSink>) -> io::Result<Committer> {
        let (handle, worker) = Committer::unstarted(log, next_id, sink);
        handle.start(worker)?;
        Ok(handle)
    }

    /// The handle and the thread's side, not started yet (tests queue
    /// requests first to get a known batch).
    pub(crate) fn unstarted(
        log: LogFile,
        next_id: u64,
        sink: Box<dyn PushSink>,
    ) -> (Committer, Worker) {
        let (push_tx, push_rx) = channel::bounded(PUSH_QUEUE);
        let (del_tx, del_rx) = channel::bounded(DELIVERY_QUEUE);
        let (ans_tx, ans_rx) = channel::bounded(ANSWER_QUEUE);
        let shared = Arc::new(Shared {
            stats: Mutex::new(LogStats::of(&log)),
            pending: AtomicUsize::new(0),
        });
        let handle = Committer {
            pushes: push_tx,
            deliveries: del_tx,
            answers: ans_tx,
            shared: shared.clone(),
            deliveries_dropped: AtomicUsize::new(0),
            last_drop_log: Mutex::new(None),
            stopping: AtomicBool::new(false),
            thread: Mutex::new(None),
        };
        let worker = Worker {
            log,
            next_id,
            sink,
            pushes: push_rx,
            deliveries: del_rx,
            answers: ans_rx,
            shared,
        };
        (handle, worker)
    }

    /// Runs `worker` (from [`unstarted`](Self::unstarted)) on its thread.
    pub(crate) fn start(&self, worker: Worker) -> io::Result<()> {
        // If the spawn fails, the worker is dropped, which fails whatever
        // was queued (see `Drop for Worker`).
        let t = std::thread::Builder::new()
            .name("edge-gw-store".into())
            .spawn(move || worker.run())?;
        *lock(&self.thread) = Some(t);
        Ok(())
    }

    /// Accepts `push` (its id is ignored) for `targets`: waits until it is
    /// synced to the log and handed to the sink, and returns its id; or the
    /// reason it was refused.
    pub async fn accept(&self, push: v2::Push, targets: Vec<Uuid>) -> Result<u64, PushError> {
        let (reply, answer) = channel::bounded(1);
        let counted = Counted::new(&self.shared.pending);
        if self
            .pushes
            .send(PushReq {
                push,
                targets,
                reply,
            })
            .await
            .is_err()
        {
            return Err(self.gone());
        }
        // Handed over: the committer thread uncounts it when it answers.
        counted.handed_over();
        // The committer thread answers every request it takes, and fails the
        // ones left queued when it ends: a closed reply channel means it
        // died in between.
        answer.recv().await.unwrap_or_else(|_| Err(self.gone()))
    }

    fn gone(&self) -> PushError {
        if self.stopping.load(Ordering::SeqCst) {
            PushError::ShuttingDown
        } else {
            PushError::Store("the push log thread has stopped".into())
        }
    }

    /// Queues delivery records for the log without waiting: when the queue
    /// is full they are dropped and counted (see the module docs).
    pub fn record_deliveries(&self, delivered: &[(u64, Uuid)]) {
        for d in delivered {
            match self.deliveries.try_send(*d) {
                Ok(()) => {}
                Err(e) => self.dropped_delivery(matches!(e, TrySendError::Closed(_))),
            }
        }
    }

    /// Queues an agent's answer to push `id` for a synced `Answered`
    /// record, without waiting; once synced the sink is told
    /// ([`PushSink::answers_stored`]) and confirms it to the agent. `false`
    /// when the queue is full or the thread stopped: the answer is not
    /// confirmed, so the agent keeps it and sends it again later.
    pub fn record_answer(&self, id: u64, uuid: Uuid, answer: Answer) -> bool {
        self.answers.try_send((id, uuid, answer)).is_ok()
    }

    fn dropped_delivery(&self, closed: bool) {
        let n = self.deliveries_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Rare by design; contended or recent means someone just logged.
        let Ok(mut last) = self.last_drop_log.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < DROP_LOG_EVERY) {
            return;
        }
        *last = Some(now);
        let why = if closed {
            "the push log thread has stopped".to_string()
        } else {
            format!("its queue ({DELIVERY_QUEUE}) is full: the disk is behind")
        };
        log::warn!(
            "push log: delivery records dropped ({n} so far): {why}; such pushes may be sent again after a restart and the agents answer them as duplicates"
        );
    }

    /// The latest published figures, without touching the disk.
    pub fn stats(&self) -> LogStats {
        let mut s = *lock(&self.shared.stats);
        s.pending_pushes = self.shared.pending.load(Ordering::Relaxed);
        s.deliveries_dropped = self.deliveries_dropped.load(Ordering::Relaxed);
        s
    }

    /// Pushes queued and not yet taken by the committer thread.
    pub fn queued_pushes(&self) -> usize {
        self.pushes.len()
    }

    /// Stops the committer thread after it has written everything queued and
    /// synced the log, and waits for it. Pushes sent afterwards fail with
    /// [`PushError::ShuttingDown`]; delivery records are dropped.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Deliveries first: the thread ends once the push queue is closed
        // and empty, and by then no delivery can arrive behind its last
        // look at the delivery queue.
        self.deliveries.close();
        self.answers.close();
        self.pushes.close();
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            // Joined off the executor: the final sync may take a while.
            if smol::unblock(move || t.join()).await.is_err() {
                log::error!(
                    "push log thread panicked; the last pushes were answered with an error"
                );
            }
        }
    }
}

impl Worker {
    fn run(mut self) {
        let mut deliveries_open = true;
        let mut answers_open = true;
        loop {
            // futures-lite's block_on only parks this thread; smol's would
            // also drive the I/O reactor from here, taking agents' socket
            // events onto the committer thread.
            let wake = smol::future::block_on(self.next(deliveries_open, answers_open));
            let mut reqs = Vec::new();
            let mut dels = Vec::new();
            let mut answers = Vec::new();
            let mut stop = false;
            match wake {
                Wake::Push(r) => reqs.push(r),
                Wake::Answer(a) => answers.push(a),
                Wake::AnswersClosed => answers_open = false,
                Wake::Delivery(d) => {
                    dels.push(d);
                    if let Some(r) = smol::future::block_on(self.push_within(DELIVERY_LINGER)) {
                        reqs.push(r);
                    }
                }
                Wake::DeliveriesClosed => deliveries_open = false,
                Wake::PushesClosed => stop = true,
            }
            // Everything waiting now joins this round: the group in group
            // commit.
            while reqs.len() < MAX_BATCH {
                let Ok(r) = self.pushes.try_recv() else { break };
                reqs.push(r);
            }
            loop {
                while dels.len() < MAX_DELIVERY_BATCH {
                    let Ok(d) = self.deliveries.try_recv() else {
                        break;
                    };
                    dels.push(d);
                }
                // Written before the pushes: the batch's sync then covers
                // them too, at no cost.
                self.record(&dels);
                // On the last round, empty the (closed) delivery queue.
                if !stop || dels.len() < MAX_DELIVERY_BATCH {
                    break;
                }
                dels.clear();
            }
            while answers.len() < MAX_BATCH {
                let Ok(a) = self.answers.try_recv() else {
                    break;
                };
                answers.push(a);
            }
            self.store_answers(answers);
            self.commit(reqs);
            self.maybe_compact();
            self.publish();
            if stop {
                break;
            }
        }
        if let Err(e) = self.log.sync() {
            log::error!("push log: final sync failed: {e}");
        }
        self.publish();
    }

    /// Waits for a push, a delivery record or an answer, pushes first.
    async fn next(&self, deliveries_open: bool, answers_open: bool) -> Wake {
        let push = async {
            match self.pushes.recv().await {
                Ok(r) => Wake::Push(r),
                Err(_) => Wake::PushesClosed,
            }
        };
        let delivery = async {
            if !deliveries_open {
                return std::future::pending().await;
            }
            match self.deliveries.recv().await {
                Ok(d) => Wake::Delivery(d),
                Err(_) => Wake::DeliveriesClosed,
            }
        };
        let answer = async {
            if !answers_open {
                return std::future::pending().await;
            }
            match self.answers.recv().await {
                Ok(a) => Wake::Answer(a),
                Err(_) => Wake::AnswersClosed,
            }
        };
        push.or(delivery).or(answer).await
    }

    /// Writes answers with one sync, then hands them to the sink, which
    /// shows them and confirms them to their agents: an agent forgets a
    /// result only once it is on disk here. On a write error nothing is
    /// confirmed and the agents send them again on their next connection.
    fn store_answers(&mut self, answers: Vec<(u64, Uuid, Answer)>) {
        if answers.is_empty() {
            return;
        }
        if let Err(e) = self.log.answered_batch(&answers) {
            log::error!(
                "push log: cannot write or sync {} push results: {e}; their agents will send them again",
                answers.len()
            );
            return;
        }
        self.sink.answers_stored(answers);
    }

    /// A push arriving within `linger`, if any (none at once if the queue
    /// is closed and empty).
    async fn push_within(&self, linger: Duration) -> Option<PushReq> {
        let push = async { self.pushes.recv().await.ok() };
        let timeout = async {
            smol::Timer::after(linger).await;
            None
        };
        push.or(timeout).await
    }

    fn record(&mut self, dels: &[(u64, Uuid)]) {
        if dels.is_empty() {
            return;
        }
        if let Err(e) = self.log.delivered_batch(dels) {
            crate::log_limited!(
                log::Level::Error,
                "push_log.delivered_write",
                "push log: cannot record {} deliveries: {e}; those pushes may be sent again after a restart",
                dels.len()
            );
        }
    }

    /// Room checks, one write and one sync for the batch, then handing the
    /// pushes to the sink and answers.
    fn commit(&mut self, reqs: Vec<PushReq>) {
        if reqs.is_empty() {
            return;
        }
        // (messages, bytes) promised to each agent by this batch so far.
        let mut promised: HashMap<Uuid, (usize, usize)> = HashMap::new();
        let mut batch = Vec::with_capacity(reqs.len());
        for mut r in reqs {
            let len = r.push.body.len();
            // One call per push, not per batch: the sink's locks are shared
            // with agent tasks, which get them in between.
            let room = self.sink.check_room(&r.targets, len, &|u| {
                promised.get(u).copied().unwrap_or_default()
            });
            if let Err(kind) = room {
                self.answer(&r.reply, Err(PushError::Full(kind)));
                continue;
            }
            for t in &r.targets {
                let p = promised.entry(*t).or_default();
                p.0 += 1;
                p.1 += len;
            }
            r.push.id = self.next_id;
            self.next_id += 1;
            batch.push(r);
        }
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let (first, last) = (first.push.id, last.push.id);
        let written = self
            .log
            .accepted_batch(batch.iter().map(|r| (&r.push, r.targets.as_slice())));
        if let Err(e) = written {
            // A full or failing disk refuses every push: one line per
            // burst, not one per push (the API answers each with 507).
            crate::log_limited!(
                log::Level::Error,
                "push_log.accepted_write",
                "push log: cannot write or sync pushes {first}..={last}: {e}; all {} refused",
                batch.len()
            );
            let reason = e.to_string();
            for r in batch {
                self.answer(&r.reply, Err(PushError::Store(reason.clone())));
            }
            return;
        }
        // Before the answers, so a client that got its 202 sees the log
        // figures with its push in them.
        self.publish();
        let now = crate::os::now();
        for r in batch {
            let id = r.push.id;
            let refused = self.sink.queue(Arc::new(r.push), &r.targets, now);
            if !refused.is_empty() {
                // Cannot happen: the room check counted the whole batch,
                // only this thread adds to outboxes, acks only remove. A
                // config reload that shrank the limits in between could.
                log::error!(
                    "push {id}: outbox full for {} agents after the room check",
                    refused.len()
                );
            }
            // Queued first, answered second: a client that reads the push's
            // status right after its 202 finds it.
            self.answer(&r.reply, Ok(id));
        }
    }

    fn answer(&self, reply: &Sender<Result<u64, PushError>>, result: Result<u64, PushError>) {
        // Capacity 1 and one answer: it cannot be full. Closed means the
        // handler went away; the push stands (or not) all the same.
        let _ = reply.try_send(result);
        self.shared.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// Compacts when the log is mostly dead records. The live count is
    /// O(1); the walk over every outbox happens only when compaction is
    /// due. All accepted pushes are in the sink by now (they are handed to
    /// it right after their sync, on this thread), so none is left out.
    fn maybe_compact(&mut self) {
        if self.log.bytes() <= COMPACT_MIN_BYTES {
            return;
        }
        let live = self.sink.live_count() + self.sink.kept_answer_count();
        if !self.log.should_compact(live) {
            return;
        }
        let live = self.sink.live_pushes();
        let kept = self.sink.kept_answers();
        match self.log.compact_keeping(&live, self.next_id, &kept) {
            Ok(()) => log::info!(
                "push log compacted: {} live pushes, {} bytes",
                live.len(),
                self.log.bytes()
            ),
            Err(e) => crate::log_limited!(
                log::Level::Error,
                "push_log.compaction",
                "push log: compaction failed: {e}"
            ),
        }
    }

    fn publish(&self) {
        *lock(&self.shared.stats) = LogStats::of(&self.log);
    }
}

impl Drop for Worker {
    /// However the thread ends (even by a panic), no handler waits forever:
    /// the queue is closed and what is left in it is failed.
    fn drop(&mut self) {
        self.pushes.close();
        self.deliveries.close();
        self.answers.close();
        while let Ok(r) = self.pushes.try_recv() {
            self.answer(
                &r.reply,
                Err(PushError::Store("the push log thread has stopped".into())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::pin::Pin;

    use smol::future::{Future, poll_once};

    use super::*;
    use crate::master::push_log::test_support::{push, uuid};
    use crate::session::outbox::OverflowKind;

    fn tmpdir(name: &str) -> PathBuf {
        crate::master::push_log::test_support::tmpdir("store-thread", name)
    }

    /// A sink with room for everything that keeps what it is handed: the
    /// committer's own behaviour, without a fleet (the committer with the
    /// master's registry behind it is tested in `push_router`).
    #[derive(Default)]
    struct Kept(Mutex<Vec<(u64, Vec<Uuid>)>>);

    impl PushSink for Arc<Kept> {
        fn check_room(
            &self,
            _: &[Uuid],
            _: usize,
            _: &dyn Fn(&Uuid) -> (usize, usize),
        ) -> Result<(), OverflowKind> {
            Ok(())
        }

        fn queue(
            &self,
            push: Arc<v2::Push>,
            targets: &[Uuid],
            _: crate::session::Clock,
        ) -> Vec<Uuid> {
            lock(&self.0).push((push.id, targets.to_vec()));
            Vec::new()
        }

        fn live_count(&self) -> usize {
            lock(&self.0).len()
        }

        fn live_pushes(&self) -> Vec<(Arc<v2::Push>, Vec<Uuid>)> {
            Vec::new()
        }

        fn answers_stored(&self, _: Vec<(u64, Uuid, crate::master::push_log::Answer)>) {}

        fn kept_answer_count(&self) -> usize {
            0
        }

        fn kept_answers(&self) -> crate::master::push_log::KeptAnswers {
            crate::master::push_log::KeptAnswers::default()
        }
    }

    /// A log in a fresh directory with a [`Kept`] sink, the thread not
    /// started yet.
    fn setup(name: &str) -> (PathBuf, Arc<Kept>, Committer, Worker) {
        let d = tmpdir(name);
        let (log, rec) = LogFile::open(&d).unwrap();
        let kept = Arc::new(Kept::default());
        let (h, w) = Committer::unstarted(log, rec.next_id, Box::new(kept.clone()));
        (d, kept, h, w)
    }

    type Answer<'a> = Pin<Box<dyn Future<Output = Result<u64, PushError>> + 'a>>;

    /// Hands a push to the (not yet started) committer thread: polled once,
    /// the request is in the queue and the future waits for its answer.
    fn queue<'a>(h: &'a Committer, body: &[u8], targets: &[Uuid]) -> Answer<'a> {
        let mut f: Answer<'a> = Box::pin(h.accept(push(body), targets.to_vec()));
        assert!(smol::block_on(poll_once(f.as_mut())).is_none());
        f
    }

    #[test]
    fn a_dead_committer_thread_fails_pushes_instead_of_hanging() {
        let a = uuid("a");
        let (d, _kept, h, w) = setup("dead");
        let waiting = queue(&h, b"x", &[a]);
        // The thread's side goes away with a request queued (as when the
        // thread panics).
        drop(w);
        assert!(matches!(smol::block_on(waiting), Err(PushError::Store(_))));
        assert!(matches!(
            smol::block_on(h.accept(push(b"y"), vec![a])),
            Err(PushError::Store(_))
        ));
        assert_eq!(h.stats().pending_pushes, 0);
        // Stopping a handle whose thread never ran returns at once.
        smol::block_on(h.stop());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_push_queue_makes_the_sender_wait() {
        let a = uuid("a");
        let (d, kept, h, w) = setup("full");
        let answers: Vec<Answer<'_>> = (0..PUSH_QUEUE).map(|_| queue(&h, b"x", &[a])).collect();
        // The queue is full: the next sender waits for room...
        let mut waiting = Box::pin(h.accept(push(b"y"), vec![a]));
        assert!(smol::block_on(poll_once(waiting.as_mut())).is_none());
        assert_eq!(h.queued_pushes(), PUSH_QUEUE);
        assert_eq!(h.stats().pending_pushes, PUSH_QUEUE + 1);
        // ...and one that gives up is no longer counted.
        drop(waiting);
        assert_eq!(h.stats().pending_pushes, PUSH_QUEUE);
        h.start(w).unwrap();
        let ids: Vec<u64> = answers
            .into_iter()
            .map(|f| smol::block_on(f).unwrap())
            .collect();
        assert_eq!(ids, (1..=PUSH_QUEUE as u64).collect::<Vec<u64>>());
        assert_eq!(kept.live_count(), PUSH_QUEUE, "all handed to the sink");
        smol::block_on(h.stop());
        let st = h.stats();
        assert_eq!(st.pending_pushes, 0);
        // Two batches of MAX_BATCH, one final sync.
        assert_eq!(st.syncs, 3, "{st:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn deliveries_beyond_the_queue_are_counted_not_waited_for() {
        let a = uuid("a");
        let (d, _kept, h, w) = setup("deliveries");
        let before = h.stats().records;
        let dels: Vec<(u64, Uuid)> = (0..DELIVERY_QUEUE as u64 + 10).map(|i| (i, a)).collect();
        // The thread is not running: a blocking send would never return.
        h.record_deliveries(&dels);
        assert_eq!(h.stats().deliveries_dropped, 10);
        h.start(w).unwrap();
        smol::block_on(h.stop());
        let st = h.stats();
        assert_eq!(st.records, before + DELIVERY_QUEUE as u64);
        assert_eq!(
            st.syncs, 1,
            "deliveries are not synced, only the final sync"
        );
        h.record_deliveries(&[(1, a)]);
        assert_eq!(h.stats().deliveries_dropped, 11, "after stop: dropped too");
        let _ = std::fs::remove_dir_all(&d);
    }
}
