//! Routes the pushes the push log has made durable into the fleet: the
//! master's [`PushSink`], over the shared registry.
//!
//! This is where "accepted" turns into "on its way": the committer thread
//! asks here whether the targets' outboxes have room (counting refusals
//! among the fleet's figures), and hands each synced push here to be
//! queued in those outboxes and given to the online agents' connections
//! (see [`super::registry::pushes`]). The push log itself stays ignorant
//! of the registry.

use std::sync::{Arc, Mutex, MutexGuard};

use super::push_log::{Answer, KeptAnswers, PushSink};
use super::registry::Registry;
use crate::proto::Uuid;
use crate::proto::v2::Push;
use crate::session::Clock;
use crate::session::outbox::OverflowKind;

/// The push log's sink: the registry the master shares with its
/// shards' connections and HTTP side.
pub struct OutboxRouter {
    registry: Arc<Mutex<Registry>>,
}

impl OutboxRouter {
    /// A sink queueing into `registry`.
    pub fn new(registry: Arc<Mutex<Registry>>) -> OutboxRouter {
        OutboxRouter { registry }
    }

    /// Locks the registry; every call takes it once and briefly, so agent
    /// tasks get it between the pushes of a batch.
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PushSink for OutboxRouter {
    fn check_room(
        &self,
        targets: &[Uuid],
        body_len: usize,
        promised: &dyn Fn(&Uuid) -> (usize, usize),
    ) -> Result<(), OverflowKind> {
        let mut reg = self.lock();
        let room = reg.check_room_with(targets, body_len, promised);
        if let Err(kind) = room {
            let reason = match kind {
                OverflowKind::Messages => "outbox_messages",
                OverflowKind::Bytes => "outbox_bytes",
            };
            *reg.counters.pushes_refused.entry(reason).or_default() += 1;
        }
        room
    }

    fn queue(&self, push: Arc<Push>, targets: &[Uuid], now: Clock) -> Vec<Uuid> {
        self.lock().enqueue(push, targets, now.mono, now.unix_ms)
    }

    fn live_count(&self) -> usize {
        self.lock().live_push_count()
    }

    fn live_pushes(&self) -> Vec<(Arc<Push>, Vec<Uuid>)> {
        self.lock().live_pushes()
    }

    fn answers_stored(&self, answers: Vec<(u64, Uuid, Answer)>) {
        self.lock()
            .answers_stored(answers, crate::os::now().unix_ms);
    }

    fn kept_answer_count(&self) -> usize {
        self.lock().kept_answer_count()
    }

    fn kept_answers(&self) -> KeptAnswers {
        self.lock().kept_answers()
    }
}

/// The committer with the registry behind it: room across a batch, what
/// reaches the outboxes, compaction from the registry's live pushes.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::pin::Pin;
    use std::time::{Duration, Instant};

    use smol::future::{Future, poll_once};

    use super::*;
    use crate::master::PushError;
    use crate::master::push_log::test_support::{push, uuid};
    use crate::master::push_log::{COMPACT_MIN_BYTES, Committer, LogFile, Worker};
    use crate::proto::v2;
    use crate::session::outbox::OutboxLimits;

    fn tmpdir(name: &str) -> PathBuf {
        crate::master::push_log::test_support::tmpdir("push-router", name)
    }

    /// A log in a fresh directory and a registry knowing `agents`, with the
    /// committer thread not started yet.
    fn setup(
        name: &str,
        limits: OutboxLimits,
        agents: &[Uuid],
    ) -> (PathBuf, Arc<Mutex<Registry>>, Committer, Worker) {
        let d = tmpdir(name);
        let (log, rec) = LogFile::open(&d).unwrap();
        let mut reg = Registry::new(limits, Instant::now());
        for a in agents {
            reg.ensure_agent(*a);
        }
        let reg = Arc::new(Mutex::new(reg));
        let sink = Box::new(OutboxRouter::new(reg.clone()));
        let (h, w) = Committer::unstarted(log, rec.next_id, sink);
        (d, reg, h, w)
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

        let (log, rec) = LogFile::open(&d).unwrap();
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
        let h = Committer::spawn(log, rec.next_id, Box::new(OutboxRouter::new(reg))).unwrap();
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
                assert!(r.enqueue(Arc::new(p), &[a], Instant::now(), 0).is_empty());
            }
            let p = v2::Push {
                id: 1004,
                ..push(&[0; 60])
            };
            assert!(r.enqueue(Arc::new(p), &[b], Instant::now(), 0).is_empty());
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
        let (_, rec) = LogFile::open(&d).unwrap();
        let ids: Vec<u64> = rec.pending.iter().map(|p| p.0.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
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
        let (_, rec) = LogFile::open(&d).unwrap();
        assert!(rec.pending.is_empty());
        assert_eq!(rec.next_id, 7);
        let _ = std::fs::remove_dir_all(&d);
    }
}
