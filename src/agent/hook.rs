//! The `--on-push` hook: runs the operator's command with the pushed
//! message on stdin. Exit status 0 means delivered; anything else, or a
//! timeout, means not delivered (the master resends it later).

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
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("EDGE_GW_PUSH_ID", push.id.to_string())
        .env("EDGE_GW_PUSH_SENDER", &push.sender)
        .env("EDGE_GW_PUSH_GROUP", &push.group)
        .env("EDGE_GW_PUSH_BYTES", push.body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
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
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(match s.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        }),
        Err(e) => {
            // kill_on_drop ends the process when `child` goes away.
            Err(e)
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
}
