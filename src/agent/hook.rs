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

/// `/bin/sh -c cmd` with the push's metadata in the environment, in a
/// process group of its own (so a cut-off hook is killed with its
/// children).
fn shell(cmd: &str, push: &Push) -> std::process::Command {
    let mut sh = std::process::Command::new("/bin/sh");
    sh.arg("-c")
        .arg(cmd)
        .env("EDGE_GW_PUSH_ID", push.id.to_string())
        .env("EDGE_GW_PUSH_SENDER", &push.sender)
        .env("EDGE_GW_PUSH_GROUP", &push.group)
        .env("EDGE_GW_PUSH_BYTES", push.body.len().to_string())
        .process_group(0);
    sh
}

/// Runs `cmd` through `/bin/sh -c` with the push body on stdin and its
/// metadata in the environment: `EDGE_GW_PUSH_ID`, `EDGE_GW_PUSH_SENDER`,
/// `EDGE_GW_PUSH_GROUP`, `EDGE_GW_PUSH_BYTES`.
pub async fn run(cmd: &str, push: &Push, timeout: Duration) -> Result<(), String> {
    let sh = shell(cmd, push);
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

/// What a hook answered to a push that wanted a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookAnswer {
    /// Exit status; -1 when killed by a signal.
    pub exit: i32,
    /// Stdout, then (when the hook wrote any) [`STDERR_MARK`] and stderr,
    /// cut at the cap.
    pub output: Vec<u8>,
    /// The output was longer than the cap.
    pub truncated: bool,
}

/// Line between a result's stdout and stderr: a reader can tell them
/// apart without a second field on the wire.
pub const STDERR_MARK: &[u8] = b"\n--- stderr ---\n";

/// The sysexits "temporary failure" status: for a push that wants a
/// result, the hook's way to say "not taken, retry later" (every other
/// status is an answer).
pub const EX_TEMPFAIL: i32 = 75;

/// Like [`run`], for a push that wants a result: the hook's stdout and
/// stderr are captured (at most `cap` bytes kept, the rest read and
/// dropped so the hook never blocks on a full pipe) and any exit status is
/// returned as the answer. `Err` only when the hook could not start or
/// timed out (then it is killed with its group, as in [`run`]).
pub async fn run_for_result(
    cmd: &str,
    push: &Push,
    timeout: Duration,
    cap: usize,
) -> Result<HookAnswer, String> {
    let mut sh = shell(cmd, push);
    sh.env("EDGE_GW_PUSH_WANTS_RESULT", "1");
    let mut child = Command::from(sh)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    let mut group = GroupKill(Some(child.id()));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let body = push.body.clone();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&body).await;
            let _ = stdin.close().await;
        }
    };
    let work = async {
        let ((out, err), ()) = smol::future::zip(
            smol::future::zip(read_capped(stdout, cap), read_capped(stderr, cap)),
            feed,
        )
        .await;
        let status = child.status().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, out, err))
    };
    let limit = async {
        smol::Timer::after(timeout).await;
        Err(format!("timed out after {} s", timeout.as_secs()))
    };
    let (status, (mut output, out_cut), (err, err_cut)) = work.or(limit).await?;
    group.0 = None;
    let mut truncated = out_cut;
    if !err.is_empty() {
        output.extend_from_slice(STDERR_MARK);
        output.extend_from_slice(&err);
        truncated |= err_cut;
    }
    if output.len() > cap {
        output.truncate(cap);
        truncated = true;
    }
    Ok(HookAnswer {
        exit: status.code().unwrap_or(-1),
        output,
        truncated,
    })
}

/// Reads a pipe to its end, keeping the first `cap` bytes; whether more
/// came.
async fn read_capped(
    pipe: Option<impl smol::io::AsyncRead + Unpin>,
    cap: usize,
) -> (Vec<u8>, bool) {
    use smol::io::AsyncReadExt;
    let Some(mut pipe) = pipe else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (kept, cut)
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
            want_result: false,
        }
    }

    #[test]
    fn a_result_is_the_exit_status_and_output_capped() {
        let p = push();
        let a = smol::block_on(run_for_result(
            "cat; echo; echo oops >&2; exit 3",
            &p,
            Duration::from_secs(10),
            1024,
        ))
        .unwrap();
        assert_eq!(a.exit, 3);
        assert_eq!(a.output, b"hello hook\n\n--- stderr ---\noops\n".to_vec());
        assert!(!a.truncated);
        let a = smol::block_on(run_for_result(
            "head -c 100000 /dev/zero",
            &p,
            Duration::from_secs(10),
            100,
        ))
        .unwrap();
        assert_eq!((a.exit, a.output.len(), a.truncated), (0, 100, true));
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
