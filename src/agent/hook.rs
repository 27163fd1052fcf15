//! The `--on-push` hook: runs the operator's command with the pushed
//! message on stdin. Exit status 0 means delivered; anything else, or a
//! timeout, means not delivered (the master resends it later).
//!
//! The hook runs in a process group of its own, and a hook that is cut
//! off (timeout, or the agent's clean shutdown) is killed with its whole
//! group: a child it started (`sleep`, `curl`, …) must not go on doing the
//! work while the resend runs the hook again.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::process::Command;

use crate::proto::v2::Push;

/// Runs `cmd` through `/bin/sh -c` with the push body on stdin and its
/// metadata in the environment: `EDGE_GW_PUSH_ID`, `EDGE_GW_PUSH_SENDER`,
/// `EDGE_GW_PUSH_GROUP`, `EDGE_GW_PUSH_BYTES`.
pub async fn run(cmd: &str, push: &Push, timeout: Duration) -> Result<(), String> {
    let mut sh = std::process::Command::new("/bin/sh");
    sh.arg("-c")
        .arg(cmd)
        .env("EDGE_GW_PUSH_ID", push.id.to_string())
        .env("EDGE_GW_PUSH_SENDER", &push.sender)
        .env("EDGE_GW_PUSH_GROUP", &push.group)
        .env("EDGE_GW_PUSH_BYTES", push.body.len().to_string())
        .process_group(0);
    let mut child = Command::from(sh)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    // Declared after `child`, so dropped before it: the group is killed
    // while the shell is not yet reaped and its group id cannot be reused.
    let mut group = GroupKill(Some(child.id()));
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that ignores stdin closes the pipe early: not an error.
        let _ = stdin.write_all(&push.body).await;
        let _ = stdin.close().await;
    }
    let wait = async { child.status().await.map_err(|e| e.to_string()) };
    let limit = async {
        smol::Timer::after(timeout).await;
        Err(format!("timed out after {} s", timeout.as_secs()))
    };
    let status = wait.or(limit).await;
    if status.is_ok() {
        // The shell exited on its own: what it left running is the
        // hook's business (a hook may start a daemon).
        group.0 = None;
    }
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(match s.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        }),
        Err(e) => {
            // `group` kills the hook's children, then kill_on_drop the
            // shell, as they go away.
            Err(e)
        }
    }
}

/// Kills a hook's process group when dropped armed: on a timeout, and when
/// the delivery worker is cancelled at shutdown.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let pid = self
            .0
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push() -> Push {
        Push {
            id: 42,
            sender: "api".into(),
            group: "g".into(),
            body: b"hello hook".to_vec(),
        }
    }

    #[test]
    fn stdin_env_and_status() {
        let dir = std::env::temp_dir().join(format!("edge-gw-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let cmd = format!(
            "cat > {}; echo \"$EDGE_GW_PUSH_ID $EDGE_GW_PUSH_SENDER $EDGE_GW_PUSH_GROUP $EDGE_GW_PUSH_BYTES\" >> {}",
            out.display(),
            out.display()
        );
        smol::block_on(run(&cmd, &push(), Duration::from_secs(10))).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "hello hook42 api g 10\n"
        );
        let e = smol::block_on(run("exit 3", &push(), Duration::from_secs(10))).unwrap_err();
        assert_eq!(e, "exit status 3");
        let e = smol::block_on(run("sleep 5", &push(), Duration::from_millis(200))).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_timed_out_hook_is_killed_with_its_children() {
        let dir = std::env::temp_dir().join(format!("edge-gw-hook-kids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        let cmd = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
        let e = smol::block_on(run(&cmd, &push(), Duration::from_millis(500))).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // Gone, or a zombie waiting for a reaper: not sleeping on.
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()));
            if matches!(state, None | Some('Z')) {
                break;
            }
            assert!(std::time::Instant::now() < end, "the hook's child lives on");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
