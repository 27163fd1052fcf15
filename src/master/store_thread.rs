//! The push log's own thread: group commit for accepted pushes, batched
//! delivery records, compaction.
//!
//! An `fdatasync` takes up to milliseconds on a disk. Done on an executor
//! thread under a lock, one per push, it stalled every agent connection
//! served by that thread and capped accepted pushes at one per sync. Here
//! the store lives on a plain thread (`edge-gw-store`) that owns the
//! [`Store`] and the next push id. API handlers queue their push with a
//! reply channel and await the answer; the thread takes every push waiting
//! (up to [`MAX_BATCH`]), checks room, writes all their `Accepted` records,
//! syncs once, queues the pushes for their agents and answers each
//! handler.
//!
//! # Invariants
//! - A push is answered `Ok` (202) and queued for its agents only after
//!   its record is synced.
//! - Room: pushes are checked in order against the outboxes plus what
//!   earlier pushes of the same batch will add, and only this thread adds
//!   to outboxes (acks only remove), so the enqueue after the sync cannot
//!   overflow. A push without room is answered [`PushError::Full`] and
//!   never written.
//! - Ids: assigned here, in order, from the recovered next id; an id used
//!   by a batch that failed is not used again (its records are cut off,
//!   but if that cut failed they may still be on disk).
//! - Queues are bounded. Pushes: [`PUSH_QUEUE`], a handler waits for room
//!   (back-pressure on the API, whose connections are capped anyway).
//!   Deliveries: [`DELIVERY_QUEUE`], never waited for: a connection task
//!   must not stall on the disk, and a lost `Delivered` record only means
//!   a resend after a restart, which the agent answers as a duplicate.
//!   Each one dropped is counted ([`StoreStats::deliveries_dropped`]).
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

use super::PushError;
use super::registry::Registry;
use super::store::{COMPACT_MIN_BYTES, Store};
use crate::proto::{Uuid, v2};
use crate::session::outbox::OverflowKind;

/// Most pushes written with one sync.
pub const MAX_BATCH: usize = 256;
/// Pushes queued for the store thread before handlers wait.
pub const PUSH_QUEUE: usize = 512;
/// Delivery records queued for the store thread before they are dropped.
pub const DELIVERY_QUEUE: usize = 16_384;
/// Most delivery records written per round, so pushes are not kept
/// waiting behind a long run of them.
const MAX_DELIVERY_BATCH: usize = 4096;
/// At most one warning this often about dropped delivery records.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long the thread waits for more acks after the first one, unless a
/// push comes: one wake-up and one write for many acks instead of one per
/// ack, leaving the CPU to the connections. Acks are not synced anyway.
const DELIVERY_LINGER: Duration = Duration::from_millis(10);

/// What the push log looks like, published by the store thread after
/// every round so that status pages never wait for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Size of the log, bytes.
    pub bytes: u64,
    /// Records in the log.
    pub records: u64,
    /// Times compacted.
    pub compactions: u64,
    /// `fdatasync`/`fsync` calls done (accepted pushes / syncs is the
    /// group-commit batch size).
    pub syncs: u64,
    /// Pushes handed to the store thread and not answered yet.
    pub pending_pushes: usize,
    /// Delivery records not written because the queue to the store thread
    /// was full (or the thread had stopped). Each means at most one resend
    /// after a restart, answered by the agent as a duplicate.
    pub deliveries_dropped: usize,
}

impl StoreStats {
    fn of(store: &Store) -> StoreStats {
        StoreStats {
            bytes: store.bytes(),
            records: store.records(),
            compactions: store.compactions,
            syncs: store.syncs,
            ..StoreStats::default()
        }
    }
}

/// A push waiting for the store thread.
struct PushReq {
    /// The push; its id is set by the store thread.
    push: v2::Push,
    targets: Vec<Uuid>,
    /// Capacity 1, answered exactly once.
    reply: Sender<Result<u64, PushError>>,
}

/// What the store thread and its handle share.
struct Shared {
    /// Published by the store thread (a Mutex, not atomics: 32-bit MIPS
    /// has no 64-bit atomics).
    stats: Mutex<StoreStats>,
    /// Pushes handed over and not answered (see [`StoreStats`]).
    pending: AtomicUsize,
}

/// The handle to the store thread, owned by the master.
pub struct StoreThread {
    pushes: Sender<PushReq>,
    deliveries: Sender<(u64, Uuid)>,
    shared: Arc<Shared>,
    deliveries_dropped: AtomicUsize,
    last_drop_log: Mutex<Option<Instant>>,
    stopping: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The store thread's side.
struct Worker {
    store: Store,
    next_id: u64,
    registry: Arc<Mutex<Registry>>,
    pushes: Receiver<PushReq>,
    deliveries: Receiver<(u64, Uuid)>,
    shared: Arc<Shared>,
}

/// What woke the store thread.
enum Wake {
    Push(PushReq),
    Delivery((u64, Uuid)),
    DeliveriesClosed,
    PushesClosed,
}

/// Counts a push as pending until handed to the store thread; uncounts it
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

impl StoreThread {
    /// Starts the store thread with the opened (and replayed) log, the
    /// next push id it recovered, and the registry pushes are queued in.
    pub fn spawn(
        store: Store,
        next_id: u64,
        registry: Arc<Mutex<Registry>>,
    ) -> io::Result<StoreThread> {
        let (handle, worker) = StoreThread::new(store, next_id, registry);
        handle.start(worker)?;
        Ok(handle)
    }

    /// The handle and the thread's side, not started yet (tests queue
    /// requests first to get a known batch).
    fn new(store: Store, next_id: u64, registry: Arc<Mutex<Registry>>) -> (StoreThread, Worker) {
        let (push_tx, push_rx) = channel::bounded(PUSH_QUEUE);
        let (del_tx, del_rx) = channel::bounded(DELIVERY_QUEUE);
        let shared = Arc::new(Shared {
            stats: Mutex::new(StoreStats::of(&store)),
            pending: AtomicUsize::new(0),
        });
        let handle = StoreThread {
            pushes: push_tx,
            deliveries: del_tx,
            shared: shared.clone(),
            deliveries_dropped: AtomicUsize::new(0),
            last_drop_log: Mutex::new(None),
            stopping: AtomicBool::new(false),
            thread: Mutex::new(None),
        };
        let worker = Worker {
            store,
            next_id,
            registry,
            pushes: push_rx,
            deliveries: del_rx,
            shared,
        };
        (handle, worker)
    }

    fn start(&self, worker: Worker) -> io::Result<()> {
        // If the spawn fails, the worker is dropped, which fails whatever
        // was queued (see `Drop for Worker`).
        let t = std::thread::Builder::new()
            .name("edge-gw-store".into())
            .spawn(move || worker.run())?;
        *lock(&self.thread) = Some(t);
        Ok(())
    }

    /// Accepts `push` (its id is ignored) for `targets`: waits until it is
    /// synced to the log and queued for the agents, and returns its id; or
    /// the reason it was refused.
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
        // Handed over: the store thread uncounts it when it answers.
        counted.handed_over();
        // The store thread answers every request it takes, and fails the
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
    pub fn stats(&self) -> StoreStats {
        let mut s = *lock(&self.shared.stats);
        s.pending_pushes = self.shared.pending.load(Ordering::Relaxed);
        s.deliveries_dropped = self.deliveries_dropped.load(Ordering::Relaxed);
        s
    }

    /// Pushes queued and not yet taken by the store thread.
    pub fn queued_pushes(&self) -> usize {
        self.pushes.len()
    }

    /// Stops the store thread after it has written everything queued and
    /// synced the log, and waits for it. Pushes sent afterwards fail with
    /// [`PushError::ShuttingDown`]; delivery records are dropped.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Deliveries first: the thread ends once the push queue is closed
        // and empty, and by then no delivery can arrive behind its last
        // look at the delivery queue.
        self.deliveries.close();
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
        loop {
            // futures-lite's block_on only parks this thread; smol's would
            // also drive the I/O reactor from here, taking agents' socket
            // events onto the store thread.
            let wake = smol::future::block_on(self.next(deliveries_open));
            let mut reqs = Vec::new();
            let mut dels = Vec::new();
            let mut stop = false;
            match wake {
                Wake::Push(r) => reqs.push(r),
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
            self.commit(reqs);
            self.maybe_compact();
            self.publish();
            if stop {
                break;
            }
        }
        if let Err(e) = self.store.sync() {
            log::error!("push log: final sync failed: {e}");
        }
        self.publish();
    }

    /// Waits for a push or a delivery record, pushes first.
    async fn next(&self, deliveries_open: bool) -> Wake {
        let push = async {
            match self.pushes.recv().await {
                Ok(r) => Wake::Push(r),
                Err(_) => Wake::PushesClosed,
            }
        };
        if !deliveries_open {
            return push.await;
        }
        let delivery = async {
            match self.deliveries.recv().await {
                Ok(d) => Wake::Delivery(d),
                Err(_) => Wake::DeliveriesClosed,
            }
        };
        push.or(delivery).await
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
        if let Err(e) = self.store.delivered_batch(dels) {
            log::error!(
                "push log: cannot record {} deliveries: {e}; those pushes may be sent again after a restart",
                dels.len()
            );
        }
    }

    /// Room checks, one write and one sync for the batch, then queueing and
    /// answers.
    fn commit(&mut self, reqs: Vec<PushReq>) {
        if reqs.is_empty() {
            return;
        }
        // (messages, bytes) promised to each agent by this batch so far.
        let mut promised: HashMap<Uuid, (usize, usize)> = HashMap::new();
        let mut batch = Vec::with_capacity(reqs.len());
        for mut r in reqs {
            let len = r.push.body.len();
            // Locked per push, not per batch: agent tasks get the registry
            // in between.
            let room = {
                let mut reg = lock(&self.registry);
                let room = reg.check_room_with(&r.targets, len, |u| {
                    promised.get(u).copied().unwrap_or_default()
                });
                if let Err(kind) = room {
                    let reason = match kind {
                        OverflowKind::Messages => "outbox_messages",
                        OverflowKind::Bytes => "outbox_bytes",
                    };
                    *reg.counters.pushes_refused.entry(reason).or_default() += 1;
                }
                room
            };
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
            .store
            .accepted_batch(batch.iter().map(|r| (&r.push, r.targets.as_slice())));
        if let Err(e) = written {
            log::error!(
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
        let now = crate::os::unix_ms();
        for r in batch {
            let id = r.push.id;
            let refused = lock(&self.registry).enqueue(Arc::new(r.push), &r.targets, now);
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
    /// due. All accepted pushes are in the registry by now (they are queued
    /// right after their sync, on this thread), so none is left out.
    fn maybe_compact(&mut self) {
        if self.store.bytes() <= COMPACT_MIN_BYTES {
            return;
        }
        let live = lock(&self.registry).live_push_count();
        if !self.store.should_compact(live) {
            return;
        }
        let live = lock(&self.registry).live_pushes();
        match self.store.compact(&live, self.next_id) {
            Ok(()) => log::info!(
                "push log compacted: {} live pushes, {} bytes",
                live.len(),
                self.store.bytes()
            ),
            Err(e) => log::error!("push log: compaction failed: {e}"),
        }
    }

    fn publish(&self) {
        *lock(&self.shared.stats) = StoreStats::of(&self.store);
    }
}

impl Drop for Worker {
    /// However the thread ends (even by a panic), no handler waits forever:
    /// the queue is closed and what is left in it is failed.
    fn drop(&mut self) {
        self.pushes.close();
        self.deliveries.close();
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
    use crate::session::outbox::OutboxLimits;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "edge-gw-store-thread-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn uuid(s: &str) -> Uuid {
        Uuid::from_text(s).unwrap()
    }

    fn push(body: &[u8]) -> v2::Push {
        v2::Push {
            id: 0,
            sender: "test".into(),
            group: String::new(),
            body: body.to_vec(),
        }
    }

    /// A log in a fresh directory and a registry knowing `agents`, with the
    /// thread not started yet.
    fn setup(
        name: &str,
        limits: OutboxLimits,
        agents: &[Uuid],
    ) -> (PathBuf, Arc<Mutex<Registry>>, StoreThread, Worker) {
        let d = tmpdir(name);
        let (store, rec) = Store::open(&d).unwrap();
        let mut reg = Registry::new(limits, Instant::now());
        for a in agents {
            reg.ensure_agent(*a);
        }
        let reg = Arc::new(Mutex::new(reg));
        let (h, w) = StoreThread::new(store, rec.next_id, reg.clone());
        (d, reg, h, w)
    }

    type Answer<'a> = Pin<Box<dyn Future<Output = Result<u64, PushError>> + 'a>>;

    /// Hands a push to the (not yet started) store thread: polled once, the
    /// request is in the queue and the future waits for its answer.
    fn queue<'a>(h: &'a StoreThread, body: &[u8], targets: &[Uuid]) -> Answer<'a> {
        let mut f: Answer<'a> = Box::pin(h.accept(push(body), targets.to_vec()));
        assert!(smol::block_on(poll_once(f.as_mut())).is_none());
        f
    }

    #[test]
    fn queued_pushes_share_one_sync_and_survive_reopen() {
        let agents: Vec<Uuid> = (0..4).map(|i| uuid(&format!("agent-{i}"))).collect();
        let (d, reg, h, w) = setup("group", OutboxLimits::default(), &agents);
        let answers: Vec<Answer<'_>> = (0..200)
            .map(|i| queue(&h, format!("push {i}").as_bytes(), &[agents[i % 4]]))
            .collect();
        assert_eq!(h.queued_pushes(), 200);
        assert_eq!(h.stats().pending_pushes, 200);
        // Nothing is queued for an agent before its sync.
        assert_eq!(reg.lock().unwrap().live_push_count(), 0);
        h.start(w).unwrap();
        let ids: Vec<u64> = answers
            .into_iter()
            .map(|f| smol::block_on(f).unwrap())
            .collect();
        assert_eq!(ids, (1..=200).collect::<Vec<u64>>());
        for a in &agents {
            assert_eq!(reg.lock().unwrap().agent(a).unwrap().outbox.len(), 50);
        }
        smol::block_on(h.stop());
        let st = h.stats();
        // One sync for the batch of 200, one at stop.
        assert_eq!(st.syncs, 2, "{st:?}");
        assert_eq!(st.pending_pushes, 0);
        assert_eq!(
            smol::block_on(h.accept(push(b"late"), vec![agents[0]])),
            Err(PushError::ShuttingDown)
        );

        let (store, rec) = Store::open(&d).unwrap();
        assert_eq!(rec.next_id, 201);
        let got: Vec<(u64, Vec<u8>, Vec<Uuid>)> = rec
            .pending
            .iter()
            .map(|(p, t)| (p.id, p.body.clone(), t.clone()))
            .collect();
        let want: Vec<(u64, Vec<u8>, Vec<Uuid>)> = (0..200)
            .map(|i| {
                (
                    i as u64 + 1,
                    format!("push {i}").into_bytes(),
                    vec![agents[i % 4]],
                )
            })
            .collect();
        assert_eq!(got, want);
        // Ids go on from the recovered next id.
        let h = StoreThread::spawn(store, rec.next_id, reg).unwrap();
        assert_eq!(
            smol::block_on(h.accept(push(b"after"), vec![agents[0]])),
            Ok(201)
        );
        smol::block_on(h.stop());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn one_batch_fills_a_nearly_full_outbox_exactly() {
        let (a, b, c) = (uuid("a"), uuid("b"), uuid("c"));
        let limits = OutboxLimits {
            max_msgs: 5,
            max_bytes: 100,
            ..OutboxLimits::default()
        };
        let (d, reg, h, w) = setup("room", limits, &[a, b, c]);
        {
            // Room left: a, 2 messages; b, 40 bytes.
            let mut r = reg.lock().unwrap();
            for id in 1001..=1003 {
                let p = v2::Push { id, ..push(b"") };
                assert!(r.enqueue(Arc::new(p), &[a], 0).is_empty());
            }
            let p = v2::Push {
                id: 1004,
                ..push(&[0; 60])
            };
            assert!(r.enqueue(Arc::new(p), &[b], 0).is_empty());
        }
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(queue(&h, b"x", &[a]));
        }
        for _ in 0..4 {
            answers.push(queue(&h, &[1; 15], &[b]));
        }
        // All or nothing: refused because of a, so nothing promised to c.
        answers.push(queue(&h, &[2; 50], &[c, a]));
        answers.push(queue(&h, &[3; 100], &[c]));
        assert_eq!(h.queued_pushes(), 10);
        h.start(w).unwrap();
        let results: Vec<Result<u64, PushError>> =
            answers.into_iter().map(smol::block_on).collect();
        let full = |k| Err(PushError::Full(k));
        assert_eq!(
            results,
            [
                Ok(1),
                Ok(2),
                full(OverflowKind::Messages),
                full(OverflowKind::Messages),
                Ok(3),
                Ok(4),
                full(OverflowKind::Bytes),
                full(OverflowKind::Bytes),
                full(OverflowKind::Messages),
                Ok(5),
            ]
        );
        {
            let r = reg.lock().unwrap();
            let a = &r.agent(&a).unwrap().outbox;
            let b = &r.agent(&b).unwrap().outbox;
            let c = &r.agent(&c).unwrap().outbox;
            assert_eq!((a.len(), b.len(), b.bytes(), c.bytes()), (5, 3, 90, 100));
            let refused: Vec<_> = r.counters.pushes_refused.iter().collect();
            assert_eq!(refused, [(&"outbox_bytes", &2), (&"outbox_messages", &3)]);
        }
        smol::block_on(h.stop());
        assert_eq!(h.stats().syncs, 2, "one batch, one final sync");
        // Refused pushes were never written.
        let (_, rec) = Store::open(&d).unwrap();
        let ids: Vec<u64> = rec.pending.iter().map(|p| p.0.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_dead_store_thread_fails_pushes_instead_of_hanging() {
        let a = uuid("a");
        let (d, _reg, h, w) = setup("dead", OutboxLimits::default(), &[a]);
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
        let (d, _reg, h, w) = setup("full", OutboxLimits::default(), &[a]);
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
        let (d, _reg, h, w) = setup("deliveries", OutboxLimits::default(), &[a]);
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

    #[test]
    fn log_is_compacted_when_no_push_is_live() {
        let a = uuid("a");
        let (d, reg, h, w) = setup("compact", OutboxLimits::default(), &[a]);
        h.start(w).unwrap();
        let body = vec![7u8; 200 << 10];
        for id in 1..=6 {
            assert_eq!(smol::block_on(h.accept(push(&body), vec![a])), Ok(id));
        }
        assert!(h.stats().bytes > COMPACT_MIN_BYTES);
        assert_eq!(h.stats().compactions, 0, "all six pushes are live");
        // Forgetting the (offline) agent cancels its pushes: none is live.
        assert_eq!(reg.lock().unwrap().forget(&a).unwrap().len(), 6);
        assert_eq!(reg.lock().unwrap().live_push_count(), 0);
        // Any delivery record wakes the thread, which then compacts.
        h.record_deliveries(&[(1, a)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while h.stats().compactions == 0 {
            assert!(Instant::now() < deadline, "no compaction: {:?}", h.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(h.stats().bytes < COMPACT_MIN_BYTES);
        smol::block_on(h.stop());
        let (_, rec) = Store::open(&d).unwrap();
        assert!(rec.pending.is_empty());
        assert_eq!(rec.next_id, 7);
        let _ = std::fs::remove_dir_all(&d);
    }
}
