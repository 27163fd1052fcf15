//! The `--on-push` hook: runs the operator's command with the pushed
//! message on stdin. Exit status 0 means delivered; anything else, or a
//! timeout, means not delivered (the master resends it later).
//!
//! The hook runs in a process group of its own, and a hook that is cut
//! off (timeout, or the agent's clean shutdown) is killed with its whole
//! group: a child it started (`sleep`, `curl`, …) must not go on doing the
//! work while the resend runs the hook again.

use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use smol::Async;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;

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
    let (status, _, _) = spawn_and_wait(shell(cmd, push), &push.body, timeout, None).await?;
    if status.success() {
        return Ok(());
    }
    Err(match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    })
}

/// Output kept from one stream, and whether more came.
type Captured = (Vec<u8>, bool);

/// First and longest pause between checks whether the hook has exited.
const EXIT_POLL: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(200));
/// How long a killed hook's shell is waited for, to reap it.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// Starts `sh` with `body` on its stdin and waits for it, at most
/// `timeout` (writing stdin included: a hook that neither reads nor exits
/// is cut off too). With `capture`, stdout and stderr are read (at most
/// that many bytes kept of each); without, they are the agent's own.
///
/// std's `Child`, its pipes driven by the agent's reactor and its exit
/// noticed by `try_wait` on a timer (5 ms, doubling to 200 ms): one hook at
/// a time needs no more. This replaces `async-process`, whose SIGCHLD
/// handler and reaper thread cost a router more flash than this file (and
/// a thread of our own that blocks in `wait` ~4 KB more than polling).
/// On a timeout, or when the caller drops this future (the delivery worker
/// cancelled at shutdown), the hook's process group is killed.
async fn spawn_and_wait(
    mut sh: std::process::Command,
    body: &[u8],
    timeout: Duration,
    capture: Option<usize>,
) -> Result<(ExitStatus, Captured, Captured), String> {
    let out: fn() -> Stdio = if capture.is_some() {
        Stdio::piped
    } else {
        Stdio::inherit
    };
    let child = sh
        .stdin(Stdio::piped())
        .stdout(out())
        .stderr(out())
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    // Armed from here on, so every early return below kills the hook.
    let mut hook = Running { child, armed: true };
    let stdin = hook.child.stdin.take().map(Async::new).transpose();
    let stdout = hook.child.stdout.take().map(Async::new).transpose();
    let stderr = hook.child.stderr.take().map(Async::new).transpose();
    let (stdin, stdout, stderr) = match (stdin, stdout, stderr) {
        (Ok(i), Ok(o), Ok(e)) => (i, o, e),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return Err(format!("cannot watch the hook's pipes: {e}"));
        }
    };
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A hook that ignores stdin closes the pipe early: not an
            // error. Dropping `stdin` closes it: the hook sees the end.
            let _ = stdin.write_all(body).await;
        }
    };
    let cap = capture.unwrap_or(0);
    let work = async {
        let ((out, err), ()) = smol::future::zip(
            smol::future::zip(read_capped(stdout, cap), read_capped(stderr, cap)),
            feed,
        )
        .await;
        let status = exited(&mut hook.child).await?;
        Ok::<_, String>((status, out, err))
    };
    let limit = async {
        smol::Timer::after(timeout).await;
        Err(format!("timed out after {} s", timeout.as_secs()))
    };
    let result = work.or(limit).await;
    if result.is_ok() {
        // The shell exited on its own: what it left running is the
        // hook's business (a hook may start a daemon).
        hook.armed = false;
    } else {
        hook.kill();
        let reaped = async { exited(&mut hook.child).await.is_ok() };
        let given_up = async {
            smol::Timer::after(REAP_LIMIT).await;
            false
        };
        let _ = reaped.or(given_up).await;
    }
    result
}

/// Waits for `child` to exit, and reaps it.
async fn exited(child: &mut Child) -> Result<ExitStatus, String> {
    let mut pause = EXIT_POLL.0;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {
                smol::Timer::after(pause).await;
                pause = (pause * 2).min(EXIT_POLL.1);
            }
            Err(e) => return Err(e.to_string()),
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
    let (status, (mut output, out_cut), (err, err_cut)) =
        spawn_and_wait(sh, &push.body, timeout, Some(cap)).await?;
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

/// A started hook. Dropped armed (the delivery worker cancelled at
/// shutdown), it kills the hook's process group. The shell leads the group
/// (`process_group(0)`) and is reaped only by our own `try_wait`, so the
/// group id is still the hook's when it is killed. A shell killed on drop
/// is reaped if it is gone already, else by init once the agent exits.
struct Running {
    child: Child,
    armed: bool,
}

impl Running {
    /// Kills the hook's process group, the shell included (once).
    fn kill(&mut self) {
        if !std::mem::replace(&mut self.armed, false) {
            return;
        }
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.try_wait();
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
        // Gone, or a zombie waiting for a reaper: not sleeping on.
        wait_gone(&pid);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Waits (bounded) until `pid`'s process is gone or a zombie.
    fn wait_gone(pid: &str) {
        let stat = format!("/proc/{}/stat", pid.trim());
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()));
            if matches!(state, None | Some('Z')) {
                return;
            }
            assert!(std::time::Instant::now() < end, "{pid} lives on");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_hook_that_never_reads_a_large_push_times_out() {
        // More than a pipe holds: writing stdin blocks, and the timeout
        // covers that write too.
        let mut p = push();
        p.body = vec![b'x'; 1 << 20];
        let start = std::time::Instant::now();
        let e = smol::block_on(run("sleep 30", &p, Duration::from_millis(300))).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        let e = smol::block_on(run_for_result(
            "sleep 30",
            &p,
            Duration::from_millis(300),
            10,
        ))
        .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_cancelled_hook_is_killed_with_its_children() {
        // The delivery worker dropped at shutdown drops the hook's future.
        let dir = std::env::temp_dir().join(format!("edge-gw-hook-cancel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        let cmd = format!(
            "sleep 60 & echo $! > {}.tmp; mv {0}.tmp {0}; wait",
            pid_file.display()
        );
        let hook = async {
            run(&cmd, &push(), Duration::from_secs(60))
                .await
                .map(|()| None)
        };
        let seen = async {
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while !pid_file.exists() {
                assert!(std::time::Instant::now() < end, "the hook never started");
                smol::Timer::after(Duration::from_millis(20)).await;
            }
            Ok(Some(std::fs::read_to_string(&pid_file).unwrap()))
        };
        let pid = smol::block_on(hook.or(seen))
            .unwrap()
            .expect("cancelled, not finished");
        wait_gone(&pid);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
