//! `STATE_DIR/master.pid`: the running master's process id.
//!
//! The master reloads on SIGHUP, and on a machine that also runs an agent
//! `kill -HUP $(pidof edge-gw)` would reach both. The PID file lets
//! operators (and `systemctl reload`, through the units' `ExecReload`)
//! signal the master alone: `kill -HUP $(cat STATE_DIR/master.pid)`.

use std::fs;
use std::path::{Path, PathBuf};

/// The PID file of a master whose state directory is `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("master.pid")
}

/// The written PID file, removed again when dropped (a clean exit), so a
/// stale file does not point at some later process with the same id.
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's id to the state directory's PID file,
    /// replacing one a crashed master left behind.
    pub fn write(state_dir: &Path) -> Result<PidFile, String> {
        let path = path(state_dir);
        let pid = std::process::id();
        // Written next to it and renamed, so a reader never sees half a
        // number.
        let tmp = state_dir.join("master.pid.tmp");
        fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(PidFile { path, pid })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: a second master started on the same state dir
        // (which then failed) must not remove the running one's file.
        let ours = fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.pid.to_string());
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}
