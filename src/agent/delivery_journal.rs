//! The agent's durable record of what the local consumer took, so that a
//! push is handed to the consumer at most once across any crash or restart
//! of the agent or the master, and so that an ack the master never got is
//! answered later as a duplicate instead of a second delivery.
//!
//! # Format
//! `STATE_DIR/delivered.ids`, an append-only text log, one record a line:
//!
//! | line | meaning |
//! |---|---|
//! | `<id>` | the consumer took push `<id>` (the hook exited 0, or an `edge-gw inbox` reader sent `ACK`) |
//! | `begin <id>` | the `--on-push` hook was started for `<id>` |
//! | `retry <id>` | the hook did not take `<id>` (failed, timed out, or was stopped by a clean shutdown); a resend runs it again |
//!
//! A bare id per line is what earlier agents wrote (a whole-file rewrite
//! after each ack), so an old file loads as it is, and an older agent
//! reading a new file skips the lines it cannot parse.
//!
//! # Durability
//! Every record is appended and `fsync`ed before the agent acts on it: a
//! delivered id before the ack is queued and before an `edge-gw inbox`
//! reader is answered `OK`, a `begin` before the hook starts. A torn last
//! line (a crash mid-write) does not parse and is skipped, which errs on
//! the safe side for each record kind (see [`DeliveryJournal::open`]).
//!
//! # Interrupted hooks
//! A `begin` with no later outcome means the agent stopped (crash, SIGKILL,
//! power loss) while the hook ran: the hook may have finished, may still be
//! running as an orphan, or may have been killed halfway. No one can tell
//! which, so such a push is *interrupted*: it is neither run again nor
//! acked until the operator says which it was (`RESOLVE` on the local
//! socket). Running it again could deliver it twice; acking it could lose
//! it.
//!
//! # Bounds
//! The log is rewritten (temp file, `fsync`, rename, directory `fsync`)
//! once it holds more than [`COMPACT_LINES`] lines, keeping the newest
//! [`DEFAULT_WINDOW`] delivered ids and the interrupted pushes.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::session::dedup::{DEFAULT_WINDOW, RecentIds};

/// Lines after which the log is compacted: a few windows' worth, so a
/// rewrite happens about once per thousand pushes, not on every one.
pub const COMPACT_LINES: usize = 4 * DEFAULT_WINDOW;
/// Most interrupted pushes remembered; only crashes during a hook add one,
/// so more than this means the log is not what this agent wrote.
pub const MAX_INTERRUPTED: usize = 64;

/// The durable delivery record and its in-memory view.
#[derive(Debug)]
pub struct DeliveryJournal {
    /// The log file; `None` runs from memory only (no state directory).
    path: Option<PathBuf>,
    /// Open for appending, once the first record is written.
    file: Option<File>,
    /// Ids the consumer took, newest last.
    delivered: RecentIds,
    /// Ids whose hook was started by an earlier run with no outcome known.
    interrupted: VecDeque<u64>,
    /// Ids whose hook this run started and has not yet finished.
    running: Vec<u64>,
    /// Lines in the file now (to know when to compact).
    lines: usize,
    /// Lines after which it is compacted ([`COMPACT_LINES`]; smaller in
    /// tests, so they do not sync thousands of lines).
    compact_lines: usize,
}

/// What a [`DeliveryJournal`] knows about a push id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// Never seen, or the consumer refused it: deliver it.
    New,
    /// The consumer took it: answer a resend as a duplicate.
    Delivered,
    /// Its hook was cut off by an earlier agent's end: hold it for the
    /// operator.
    Interrupted,
}

impl DeliveryJournal {
    /// Loads the log at `path` (missing: empty). `None` keeps everything in
    /// memory, for an agent without a usable state directory.
    ///
    /// A last line without its newline (a crash mid-write) and lines that
    /// do not parse are skipped, which is safe for each kind: a lost
    /// `begin` was written before its hook started, so the hook never ran;
    /// a lost delivered id after a `begin` leaves the push interrupted
    /// (held, not run again); a lost delivered id from an `edge-gw inbox`
    /// reader was never answered `OK`, so the reader saw an error.
    pub fn open(path: Option<PathBuf>) -> DeliveryJournal {
        let mut j = DeliveryJournal {
            path,
            file: None,
            delivered: RecentIds::new(DEFAULT_WINDOW),
            interrupted: VecDeque::new(),
            running: Vec::new(),
            lines: 0,
            compact_lines: COMPACT_LINES,
        };
        let text = match &j.path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    log::warn!("cannot read delivered push ids from {}: {e}", p.display());
                    String::new()
                }
            },
            None => String::new(),
        };
        let mut lines: Vec<&str> = text.split('\n').collect();
        // The piece after the last newline is empty, or a torn line.
        if let (Some(torn), Some(p)) = (lines.pop(), &j.path)
            && !torn.is_empty()
        {
            // Cut it off now, or the next record would complete it.
            let keep = (text.len() - torn.len()) as u64;
            if let Err(e) = OpenOptions::new()
                .write(true)
                .open(p)
                .and_then(|f| f.set_len(keep))
            {
                log::warn!("cannot cut the torn last line off {}: {e}", p.display());
            }
        }
        for line in lines {
            j.lines += 1;
            j.replay(line);
        }
        j
    }

    /// Applies one line of the log to the in-memory view.
    fn replay(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let (kind, id) = match (words.next(), words.next(), words.next()) {
            (Some(id), None, None) => ("", id),
            (Some(kind), Some(id), None) => (kind, id),
            _ => return,
        };
        let Ok(id) = id.parse::<u64>() else { return };
        match kind {
            "" => {
                self.interrupted.retain(|&x| x != id);
                self.delivered.insert(id);
            }
            "begin" if !self.delivered.contains(id) && !self.interrupted.contains(&id) => {
                if self.interrupted.len() == MAX_INTERRUPTED {
                    self.interrupted.pop_front();
                }
                self.interrupted.push_back(id);
            }
            "retry" => self.interrupted.retain(|&x| x != id),
            _ => {}
        }
    }

    /// What is known about push `id`.
    pub fn known(&self, id: u64) -> Known {
        if self.delivered.contains(id) {
            Known::Delivered
        } else if self.interrupted.contains(&id) {
            Known::Interrupted
        } else {
            Known::New
        }
    }

    /// The delivered ids, for a new session to answer resends with.
    pub fn delivered(&self) -> &RecentIds {
        &self.delivered
    }

    /// Pushes held because their hook was interrupted, oldest first.
    pub fn interrupted(&self) -> impl Iterator<Item = u64> + '_ {
        self.interrupted.iter().copied()
    }

    /// Ids whose hook this agent started and has not finished.
    pub fn running(&self) -> &[u64] {
        &self.running
    }

    /// Records, durably, that the hook is about to run for `id`. On an
    /// error the record may be missing: a crash during this hook then
    /// looks like a hook that never started (run again on restart).
    pub fn begin(&mut self, id: u64) -> io::Result<()> {
        self.running.push(id);
        self.append(&format!("begin {id}\n"))
    }

    /// Records, durably, that the consumer took `id`. The in-memory view
    /// changes even when the write fails, so this run still answers a
    /// resend as a duplicate; only a restart could forget it then.
    pub fn delivered_now(&mut self, id: u64) -> io::Result<()> {
        self.running.retain(|&x| x != id);
        self.interrupted.retain(|&x| x != id);
        self.delivered.insert(id);
        self.append(&format!("{id}\n"))
    }

    /// Records, durably, that the consumer did not take `id`, so a resend
    /// delivers it again (also the operator's "run it again" for an
    /// interrupted push).
    pub fn retry(&mut self, id: u64) -> io::Result<()> {
        self.running.retain(|&x| x != id);
        self.interrupted.retain(|&x| x != id);
        self.append(&format!("retry {id}\n"))
    }

    /// Appends one record and syncs it; compacts first when the log is
    /// long.
    fn append(&mut self, line: &str) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if self.lines >= self.compact_lines {
            // The record being appended is already in the in-memory view,
            // so the rewrite includes it: nothing more to append.
            return self.compact(&path);
        }
        if self.file.is_none() {
            self.file = Some(open_append(&path)?);
        }
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let before = f.metadata()?.len();
        let r = f.write_all(line.as_bytes()).and_then(|()| f.sync_data());
        if r.is_err() {
            // A failed write may have left part of a line, which the next
            // record would complete into a wrong one: cut it off, and
            // reopen next time.
            let _ = f.set_len(before);
            self.file = None;
        } else {
            self.lines += 1;
        }
        r
    }

    /// Rewrites the log with only what is still needed: the delivered
    /// window, the interrupted pushes, and the hooks running now.
    fn compact(&mut self, path: &Path) -> io::Result<()> {
        let mut text = String::new();
        for id in self.delivered.iter() {
            text.push_str(&format!("{id}\n"));
        }
        for id in self.interrupted.iter().chain(self.running.iter()) {
            text.push_str(&format!("begin {id}\n"));
        }
        let tmp = path.with_extension("ids.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(path);
        self.file = None;
        self.lines = text.lines().count();
        Ok(())
    }
}

/// Opens the log for appending; a file created now has its directory
/// synced too, or a crash could lose the file with its records.
fn open_append(path: &Path) -> io::Result<File> {
    let existed = path.exists();
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    if !existed {
        sync_dir(path);
    }
    Ok(f)
}

/// Syncs the directory holding `path` (best effort: some file systems
/// refuse to open a directory for syncing, and then there is nothing more
/// to do).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edge-gw-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn outcomes_survive_a_reopen_and_an_unfinished_hook_is_interrupted() {
        let d = dir("reopen");
        let p = d.join("delivered.ids");
        let mut j = DeliveryJournal::open(Some(p.clone()));
        j.begin(1).unwrap();
        j.delivered_now(1).unwrap();
        j.begin(2).unwrap();
        j.retry(2).unwrap();
        j.begin(3).unwrap();
        j.delivered_now(4).unwrap();
        assert_eq!(j.running(), [3]);
        let j = DeliveryJournal::open(Some(p.clone()));
        assert_eq!(j.known(1), Known::Delivered);
        assert_eq!(j.known(2), Known::New);
        assert_eq!(j.known(3), Known::Interrupted);
        assert_eq!(j.known(4), Known::Delivered);
        assert_eq!(j.interrupted().collect::<Vec<_>>(), [3]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn old_files_torn_lines_and_resolutions() {
        let d = dir("old");
        let p = d.join("delivered.ids");
        // An earlier agent's file, a foreign line, then a torn append.
        std::fs::write(&p, "7\n8\nbegin 9\nbegin 1\nwhat 2\nbegin 12").unwrap();
        let mut j = DeliveryJournal::open(Some(p.clone()));
        assert_eq!(j.known(7), Known::Delivered);
        assert_eq!(j.known(9), Known::Interrupted);
        assert_eq!(j.known(1), Known::Interrupted);
        assert_eq!(j.known(2), Known::New);
        assert_eq!(j.known(12), Known::New, "a torn last line is skipped");
        j.delivered_now(9).unwrap();
        j.retry(1).unwrap();
        let j = DeliveryJournal::open(Some(p));
        assert_eq!(j.known(9), Known::Delivered);
        assert_eq!(j.known(129), Known::New, "the torn line was cut off");
        assert_eq!(j.known(1), Known::New);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn compaction_keeps_the_window_and_the_interrupted() {
        let d = dir("compact");
        let p = d.join("delivered.ids");
        std::fs::write(&p, "begin 5\nbegin 6\n").unwrap();
        let mut j = DeliveryJournal::open(Some(p.clone()));
        j.compact_lines = 20;
        j.retry(6).unwrap();
        for id in 100..130 {
            j.delivered_now(id).unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        // 30 delivered ids and one held push: nothing else.
        assert_eq!(text.lines().count(), 31, "{text}");
        assert!(
            !text.contains("retry"),
            "settled records are dropped: {text}"
        );
        let j = DeliveryJournal::open(Some(p));
        assert_eq!(j.known(5), Known::Interrupted);
        assert_eq!(j.known(6), Known::New);
        assert_eq!(j.known(100), Known::Delivered, "inside the window");
        assert_eq!(j.known(129), Known::Delivered, "the newest id survives");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn memory_only_without_a_path() {
        let mut j = DeliveryJournal::open(None);
        j.begin(1).unwrap();
        j.delivered_now(1).unwrap();
        assert_eq!(j.known(1), Known::Delivered);
    }
}
