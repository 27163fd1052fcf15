//! The open push log file: replay and torn-tail recovery at open,
//! all-or-nothing appends, compaction. The record format is in
//! [`super::record`]; who writes when is in [`super::committer`].
//!
//! # Recovery
//! A torn or corrupt tail (a crash mid-write) ends the log: it is cut off
//! at the last good record, with a warning. Such a tail was never
//! acknowledged, because acknowledgement waits for the fsync.
//!
//! # Fsync policy
//! - `Accepted`: written and `fdatasync`ed *before* the API answers 202
//!   and before the push is queued for its agents. The master writes the
//!   `Accepted` records of every push waiting at that moment with one
//!   write and one `fdatasync` (group commit, [`super::committer`]), so
//!   the sync rate, not the push rate, is bounded by the disk.
//! - `Delivered`: written without a sync. Losing one in a crash means the
//!   push is sent again after restart; the agent answers it as a duplicate
//!   (it remembers delivered ids), so nothing is delivered twice to the
//!   consumer while the agent keeps its memory. For the same reason the
//!   master drops (and counts) delivery records rather than block an
//!   agent's connection when the push log falls behind.
//!
//! A write or sync that fails cuts the log back to where that batch
//! started, so a push answered with an error is not replayed later.
//!
//! # Compaction
//! When the log holds more than [`COMPACT_MIN_BYTES`] and less than a
//! quarter of its records are still live, it is rewritten with only the
//! undelivered pushes: written to `pushes.log.tmp`, synced, renamed over
//! the log, and the directory synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{
    Answer, MAGIC, Record, encode_record, encode_record_into, read_record, uuid_of,
};
use crate::proto::Uuid;
use crate::proto::v2::Push;

/// Logs smaller than this are never compacted.
pub const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// A batch is written in pieces of about this size: one `write` per record
/// costs a syscall each, one buffer for a whole batch of large pushes
/// would cost their size again in memory.
const WRITE_CHUNK: usize = 256 << 10;

/// What a log held at startup.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The next push id to assign.
    pub next_id: u64,
    /// Undelivered pushes with their remaining targets, in id order.
    pub pending: Vec<(Arc<Push>, Vec<Uuid>)>,
    /// Bytes cut off a torn tail (0 for a clean log).
    pub truncated: u64,
    /// Pushes that want results, with the agents that have not answered.
    pub awaiting: Vec<(u64, Vec<Uuid>)>,
    /// Stored answers (push id, agent, answer), in log order.
    pub answers: Vec<(u64, Uuid, Answer)>,
}

/// What a compacted log keeps of push results besides the live pushes.
#[derive(Debug, Default)]
pub struct KeptAnswers {
    /// Pushes still waiting for answers, with the agents not answered.
    pub awaiting: Vec<(u64, Vec<Uuid>)>,
    /// Answers not yet past `push_results_keep` / `push_results_max_age`.
    pub answers: Vec<(u64, Uuid, Answer)>,
}

/// The open `pushes.log`, positioned at its end, with the figures the
/// committer publishes and the compaction check reads.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    bytes: u64,
    records: u64,
    /// Records written since open or compaction.
    pub appended: u64,
    /// Times compacted.
    pub compactions: u64,
    /// fsyncs done.
    pub syncs: u64,
}

impl LogFile {
    /// Opens (or creates) `dir/pushes.log` and replays it.
    pub fn open(dir: &Path) -> io::Result<(LogFile, Recovered)> {
        let path = dir.join("pushes.log");
        // Push bodies may be private: owner-only, like the keys.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let mut rec = Recovered {
            next_id: 1,
            ..Recovered::default()
        };
        if data.is_empty() {
            file.write_all(MAGIC)?;
            file.sync_all()?;
            sync_dir(dir)?;
            data.extend_from_slice(MAGIC);
        } else if !data.starts_with(MAGIC) {
            return Err(io::Error::other(format!(
                "{}: not an edge-gw push log (bad magic)",
                path.display()
            )));
        }
        // Replay: accepted pushes minus deliveries, in id order.
        let mut pending: std::collections::BTreeMap<u64, (Arc<Push>, Vec<Uuid>)> =
            std::collections::BTreeMap::new();
        let mut awaiting: std::collections::BTreeMap<u64, Vec<Uuid>> =
            std::collections::BTreeMap::new();
        let mut pos = MAGIC.len();
        let mut records = 0u64;
        while pos < data.len() {
            let Some(r) = read_record(&data[pos..]) else {
                break;
            };
            let (record, used) = r;
            pos += used;
            records += 1;
            match record {
                Record::Accepted { push, targets } => {
                    rec.next_id = rec.next_id.max(push.id.saturating_add(1));
                    let ts: Vec<Uuid> = targets.iter().filter_map(|t| uuid_of(t)).collect();
                    pending.insert(push.id, (Arc::new(push), ts));
                }
                Record::Delivered { id, uuid } => {
                    if let (Some(p), Some(u)) = (pending.get_mut(&id), uuid_of(&uuid)) {
                        p.1.retain(|t| *t != u);
                        if p.1.is_empty() {
                            pending.remove(&id);
                        }
                    }
                }
                Record::NextId(n) => rec.next_id = rec.next_id.max(n),
                Record::Awaiting { id, targets } => {
                    awaiting.insert(id, targets.iter().filter_map(|t| uuid_of(t)).collect());
                }
                Record::Answered { id, uuid, answer } => {
                    if let Some(u) = uuid_of(&uuid) {
                        if let Some(w) = awaiting.get_mut(&id) {
                            w.retain(|t| *t != u);
                        }
                        // A repeat (stored twice around a crash) replaces.
                        rec.answers.retain(|(i, a, _)| !(*i == id && *a == u));
                        rec.answers.push((id, u, answer));
                    }
                }
            }
        }
        // `want_result` is not in the Accepted record (see record.rs).
        for (id, (push, _)) in pending.iter_mut() {
            if awaiting.contains_key(id) {
                Arc::make_mut(push).want_result = true;
            }
        }
        awaiting.retain(|_, w| !w.is_empty());
        rec.awaiting = awaiting.into_iter().collect();
        if pos < data.len() {
            rec.truncated = (data.len() - pos) as u64;
            log::warn!(
                "{}: cutting {} bytes of torn or corrupt tail at offset {pos} (never acknowledged)",
                path.display(),
                rec.truncated
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        rec.pending = pending.into_values().collect();
        Ok((
            LogFile {
                path,
                file,
                bytes: pos as u64,
                records,
                appended: 0,
                compactions: 0,
                syncs: 0,
            },
            rec,
        ))
    }

    /// Size of the log.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records in the log.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Appends `records`, then syncs once if `sync`. All or nothing: on
    /// an error the file is cut back to its length before the call, so a
    /// torn record cannot sit in front of later ones (replay stops at the
    /// first bad record) and records answered with an error are not
    /// replayed after a restart.
    fn append_all(
        &mut self,
        records: impl IntoIterator<Item = Record>,
        sync: bool,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut written = 0u64;
        let mut count = 0u64;
        let mut result = Ok(());
        for r in records {
            result = encode_record_into(&r, &mut buf);
            count += 1;
            if result.is_ok() && buf.len() >= WRITE_CHUNK {
                result = self.file.write_all(&buf);
                written += buf.len() as u64;
                buf.clear();
            }
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() && !buf.is_empty() {
            result = self.file.write_all(&buf);
            written += buf.len() as u64;
        }
        if result.is_ok() && sync {
            result = self.file.sync_data();
        }
        if let Err(e) = result {
            self.cut_back();
            return Err(e);
        }
        if sync {
            self.syncs += 1;
        }
        self.bytes += written;
        self.records += count;
        self.appended += count;
        Ok(())
    }

    /// Truncates the file to the last complete append after a failed one.
    fn cut_back(&mut self) {
        if let Err(e) = self.file.set_len(self.bytes) {
            log::error!(
                "{}: cannot cut a failed write back to {} bytes: {e}; pushes refused with an error may be delivered after a restart",
                self.path.display(),
                self.bytes
            );
            // Later appends land after whatever is there: count it.
            if let Ok(m) = self.file.metadata() {
                self.bytes = m.len();
            }
        }
    }

    /// Persists an accepted push; returns once it is on disk.
    pub fn accepted(&mut self, push: &Push, targets: &[Uuid]) -> io::Result<()> {
        self.accepted_batch([(push, targets)])
    }

    /// Persists accepted pushes with one write per 256 KiB and one
    /// `fdatasync` for all of them (group commit); returns once all are on
    /// disk. On an error none of them is in the log.
    pub fn accepted_batch<'a>(
        &mut self,
        pushes: impl IntoIterator<Item = (&'a Push, &'a [Uuid])>,
    ) -> io::Result<()> {
        let records = pushes.into_iter().flat_map(|(push, targets)| {
            let targets: Vec<Vec<u8>> = targets.iter().map(|u| u.trimmed().to_vec()).collect();
            let awaiting = push.want_result.then(|| Record::Awaiting {
                id: push.id,
                targets: targets.clone(),
            });
            std::iter::once(Record::Accepted {
                push: push.clone(),
                targets,
            })
            .chain(awaiting)
        });
        self.append_all(records, true)
    }

    /// Records a delivery (not synced; see the module docs).
    pub fn delivered(&mut self, id: u64, uuid: &Uuid) -> io::Result<()> {
        self.delivered_batch(&[(id, *uuid)])
    }

    /// Records deliveries with as few writes as possible, not synced.
    pub fn delivered_batch(&mut self, delivered: &[(u64, Uuid)]) -> io::Result<()> {
        let records = delivered.iter().map(|(id, uuid)| Record::Delivered {
            id: *id,
            uuid: uuid.trimmed().to_vec(),
        });
        self.append_all(records, false)
    }

    /// Persists answers with one `fdatasync`; returns once they are on
    /// disk, so the agents may then be told to forget them.
    pub fn answered_batch(&mut self, answers: &[(u64, Uuid, Answer)]) -> io::Result<()> {
        let records = answers.iter().map(|(id, uuid, answer)| Record::Answered {
            id: *id,
            uuid: uuid.trimmed().to_vec(),
            answer: answer.clone(),
        });
        self.append_all(records, true)
    }

    /// Flushes everything to disk (shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        self.syncs += 1;
        Ok(())
    }

    /// Whether compaction is worth it with `live` pushes outstanding.
    pub fn should_compact(&self, live: usize) -> bool {
        self.bytes > COMPACT_MIN_BYTES && (live as u64) * 4 < self.records
    }

    /// Rewrites the log with only `live` pushes (and the next id), for a
    /// master that keeps no results.
    pub fn compact(&mut self, live: &[(Arc<Push>, Vec<Uuid>)], next_id: u64) -> io::Result<()> {
        self.compact_keeping(live, next_id, &KeptAnswers::default())
    }

    /// Rewrites the log with only `live` pushes, the next id, and the
    /// answers still kept and awaited (`push_results_keep`,
    /// `push_results_max_age` decide which, in the registry).
    pub fn compact_keeping(
        &mut self,
        live: &[(Arc<Push>, Vec<Uuid>)],
        next_id: u64,
        kept: &KeptAnswers,
    ) -> io::Result<()> {
        let tmp = self.path.with_extension("log.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut bytes = MAGIC.len() as u64;
        f.write_all(MAGIC)?;
        let mut records = 1u64;
        let head = encode_record(&Record::NextId(next_id))?;
        f.write_all(&head)?;
        bytes += head.len() as u64;
        for (push, targets) in live {
            let r = encode_record(&Record::Accepted {
                push: (**push).clone(),
                targets: targets.iter().map(|u| u.trimmed().to_vec()).collect(),
            })?;
            f.write_all(&r)?;
            bytes += r.len() as u64;
            records += 1;
        }
        let awaiting = kept.awaiting.iter().map(|(id, targets)| Record::Awaiting {
            id: *id,
            targets: targets.iter().map(|u| u.trimmed().to_vec()).collect(),
        });
        let answers = kept
            .answers
            .iter()
            .map(|(id, uuid, answer)| Record::Answered {
                id: *id,
                uuid: uuid.trimmed().to_vec(),
                answer: answer.clone(),
            });
        for record in awaiting.chain(answers) {
            let r = encode_record(&record)?;
            f.write_all(&r)?;
            bytes += r.len() as u64;
            records += 1;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.bytes = bytes;
        self.records = records;
        self.compactions += 1;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edge-gw-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn push(id: u64) -> Push {
        Push {
            id,
            sender: "api".into(),
            group: String::new(),
            body: format!("body {id}").into_bytes(),
            want_result: false,
        }
    }

    #[test]
    fn replay_keeps_only_undelivered() {
        let d = tmpdir("replay");
        let a = Uuid::from_text("a").unwrap();
        let b = Uuid::from_text("b").unwrap();
        {
            let (mut s, rec) = LogFile::open(&d).unwrap();
            assert_eq!(rec.next_id, 1);
            s.accepted(&push(1), &[a, b]).unwrap();
            s.accepted(&push(2), &[a]).unwrap();
            s.delivered(1, &a).unwrap();
            s.delivered(2, &a).unwrap();
        }
        let (_, rec) = LogFile::open(&d).unwrap();
        assert_eq!(rec.next_id, 3);
        assert_eq!(rec.pending.len(), 1);
        assert_eq!(rec.pending[0].0.id, 1);
        assert_eq!(rec.pending[0].1, vec![b]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_tail_is_cut() {
        let d = tmpdir("torn");
        let a = Uuid::from_text("a").unwrap();
        {
            let (mut s, _) = LogFile::open(&d).unwrap();
            s.accepted(&push(1), &[a]).unwrap();
            s.accepted(&push(2), &[a]).unwrap();
        }
        let p = d.join("pushes.log");
        let len = std::fs::metadata(&p).unwrap().len();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 3).unwrap();
        let (mut s, rec) = LogFile::open(&d).unwrap();
        assert_eq!(rec.pending.len(), 1);
        assert!(rec.truncated > 0);
        // Appending after the cut works and replays.
        s.accepted(&push(3), &[a]).unwrap();
        drop(s);
        let (_, rec) = LogFile::open(&d).unwrap();
        let ids: Vec<u64> = rec.pending.iter().map(|p| p.0.id).collect();
        assert_eq!(ids, [1, 3]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn compaction_keeps_live_and_next_id() {
        let d = tmpdir("compact");
        let a = Uuid::from_text("a").unwrap();
        let (mut s, _) = LogFile::open(&d).unwrap();
        for id in 1..=100 {
            s.accepted(&push(id), &[a]).unwrap();
            if id != 50 {
                s.delivered(id, &a).unwrap();
            }
        }
        let before = s.bytes();
        let live = vec![(Arc::new(push(50)), vec![a])];
        s.compact(&live, 101).unwrap();
        assert!(s.bytes() < before);
        s.accepted(&push(101), &[a]).unwrap();
        drop(s);
        let (_, rec) = LogFile::open(&d).unwrap();
        assert_eq!(rec.next_id, 102);
        let ids: Vec<u64> = rec.pending.iter().map(|p| p.0.id).collect();
        assert_eq!(ids, [50, 101]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_batch_is_one_sync_and_replays() {
        let d = tmpdir("batch");
        let a = Uuid::from_text("a").unwrap();
        let b = Uuid::from_text("b").unwrap();
        let pushes: Vec<Push> = (1..=3).map(push).collect();
        let targets = [a, b];
        {
            let (mut s, _) = LogFile::open(&d).unwrap();
            s.accepted_batch(pushes.iter().map(|p| (p, &targets[..])))
                .unwrap();
            assert_eq!((s.syncs, s.records()), (1, 3));
            s.delivered_batch(&[(1, a), (1, b), (2, a)]).unwrap();
            assert_eq!((s.syncs, s.records()), (1, 6));
            assert_eq!(
                s.bytes(),
                std::fs::metadata(d.join("pushes.log")).unwrap().len()
            );
        }
        let (_, rec) = LogFile::open(&d).unwrap();
        assert_eq!(rec.next_id, 4);
        let got: Vec<(u64, Vec<Uuid>)> =
            rec.pending.iter().map(|(p, t)| (p.id, t.clone())).collect();
        assert_eq!(got, [(2, vec![b]), (3, vec![a, b])]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn answers_and_awaited_targets_replay_and_survive_compaction() {
        let d = tmpdir("answers");
        let a = Uuid::from_text("a").unwrap();
        let b = Uuid::from_text("b").unwrap();
        let ans = Answer {
            exit: 3,
            output: b"hello\n".to_vec(),
            truncated: false,
            at_unix_ms: 1,
            stored_unix_ms: 2,
        };
        let wanting = Push {
            want_result: true,
            ..push(1)
        };
        {
            let (mut s, _) = LogFile::open(&d).unwrap();
            s.accepted(&wanting, &[a, b]).unwrap();
            s.delivered(1, &a).unwrap();
            s.answered_batch(&[(1, a, ans.clone())]).unwrap();
        }
        let (mut s, rec) = LogFile::open(&d).unwrap();
        assert_eq!(rec.answers, vec![(1, a, ans.clone())]);
        assert_eq!(rec.awaiting, vec![(1, vec![b])]);
        // The pending push still wants its result (not in its record).
        assert!(rec.pending[0].0.want_result);
        let kept = KeptAnswers {
            awaiting: rec.awaiting.clone(),
            answers: rec.answers.clone(),
        };
        s.compact_keeping(&rec.pending, rec.next_id, &kept).unwrap();
        drop(s);
        let (_, again) = LogFile::open(&d).unwrap();
        assert_eq!(again.answers, rec.answers);
        assert_eq!(again.awaiting, rec.awaiting);
        assert!(again.pending[0].0.want_result);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn foreign_file_is_refused() {
        let d = tmpdir("foreign");
        std::fs::write(d.join("pushes.log"), b"hello").unwrap();
        let e = LogFile::open(&d).unwrap_err();
        assert!(e.to_string().contains("bad magic"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
