//! Push results the master has not confirmed yet, kept durably so that a
//! result survives a reconnect and an agent restart between the consumer's
//! answer and the master's `PushResultStored`, and is re-sent, never
//! re-run.
//!
//! # Format
//! `STATE_DIR/results/<id>.res`, one file per result: the postcard
//! [`PushResult`]. Written to a temp file, synced, renamed and the
//! directory synced *before* the push is recorded as delivered in the
//! [`DeliveryJournal`](super::delivery_journal::DeliveryJournal): a result
//! file therefore proves the consumer finished, and a push the journal
//! holds as interrupted but that has a result is delivered (see
//! `agent::run`, at start). Removed once the master confirms.
//!
//! # Bounds
//! One file per push that wanted a result and is not confirmed; each is
//! at most the agent's `result_max_bytes` plus a few bytes. A master that
//! never confirms (it is older, minor 0, and never asks for results) gets
//! none, so nothing piles up.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::proto::v2::PushResult;

/// Results waiting for the master's confirmation, on disk and in memory.
#[derive(Debug, Default)]
pub struct ResultStore {
    /// `STATE_DIR/results`; `None` keeps results in memory only.
    dir: Option<PathBuf>,
    /// By push id.
    pending: BTreeMap<u64, PushResult>,
    /// Recently confirmed ids (this run, at most [`CONFIRMED_KEPT`]), so a
    /// second local answer is refused here; across a restart the master
    /// is the guard (it stores one answer per push and agent).
    confirmed: VecDeque<u64>,
}

/// Confirmed push ids remembered for refusing a second answer.
const CONFIRMED_KEPT: usize = 1024;

impl ResultStore {
    /// Loads the unconfirmed results under `dir` (created when missing).
    /// A file that does not parse (cut by a crash before its rename could
    /// not happen; a foreign file could) is logged and left alone.
    pub fn open(dir: Option<PathBuf>) -> ResultStore {
        let mut s = ResultStore {
            dir,
            pending: BTreeMap::new(),
            confirmed: VecDeque::new(),
        };
        let Some(dir) = &s.dir else { return s };
        if let Err(e) = std::fs::create_dir_all(dir) {
            log::warn!("cannot create {}: {e}", dir.display());
            return s;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return s;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "res") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| postcard::from_bytes::<PushResult>(&b).ok())
            {
                Some(r) => {
                    s.pending.insert(r.id, r);
                }
                None => log::warn!("{}: not a push result, ignored", path.display()),
            }
        }
        s
    }

    /// Keeps `r` durably until [`confirmed`](Self::confirmed). On an error
    /// the result is kept in memory only (sent this run, lost on a
    /// restart): the caller decides whether to go on.
    pub fn store(&mut self, r: PushResult) -> io::Result<()> {
        let id = r.id;
        let written = match &self.dir {
            Some(dir) => write_synced(dir, id, &r),
            None => Ok(()),
        };
        self.pending.insert(id, r);
        written
    }

    /// The master stored the result of push `id`: forget it.
    pub fn confirmed(&mut self, id: u64) {
        if !self.confirmed.contains(&id) {
            if self.confirmed.len() == CONFIRMED_KEPT {
                self.confirmed.pop_front();
            }
            self.confirmed.push_back(id);
        }
        if self.pending.remove(&id).is_some()
            && let Some(dir) = &self.dir
        {
            let path = file_of(dir, id);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                log::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }

    /// A result not yet confirmed.
    pub fn get(&self, id: u64) -> Option<&PushResult> {
        self.pending.get(&id)
    }

    /// Ids of the results not yet confirmed, oldest push first: what a new
    /// session sends again.
    pub fn ids(&self) -> Vec<u64> {
        self.pending.keys().copied().collect()
    }

    /// Whether push `id` has a result waiting (the consumer finished).
    pub fn has(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// Whether push `id` was answered: waiting, or confirmed recently.
    pub fn answered(&self, id: u64) -> bool {
        self.has(id) || self.confirmed.contains(&id)
    }
}

fn file_of(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.res"))
}

/// Temp file, fsync, rename, directory fsync: the file is either whole or
/// absent after any crash.
fn write_synced(dir: &Path, id: u64, r: &PushResult) -> io::Result<()> {
    let bytes = postcard::to_allocvec(r).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{id}.res.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, file_of(dir, id))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_a_restart_until_confirmed() {
        let d = std::env::temp_dir().join(format!("edge-gw-results-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let r = PushResult {
            id: 7,
            exit: 3,
            output: b"hi\n".to_vec(),
            truncated: false,
            at_unix_ms: 5,
        };
        let mut s = ResultStore::open(Some(d.clone()));
        s.store(r.clone()).unwrap();
        let mut again = ResultStore::open(Some(d.clone()));
        assert_eq!(again.get(7), Some(&r));
        again.confirmed(7);
        assert!(ResultStore::open(Some(d.clone())).ids().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
