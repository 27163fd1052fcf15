//! What an operator reads: usage errors exit 2 in every mode, `-V` prints
//! the version, and the master's log names the uuid when an agent leaves
//! as when it joins, with signals named as the agent names them. Real
//! processes; every wait is bounded.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{BIN, Master, TempDir, agent, wait_for};

const T: Duration = Duration::from_secs(30);

fn status_of(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2_in_every_mode() {
    let dir = TempDir::new("usage");
    let state = dir.path().to_str().unwrap();
    for args in [
        vec!["report", "bad key=1", "--state-dir", state],
        vec!["report", "=1", "--state-dir", state],
        vec!["report", "--state-dir", state],
        vec!["inbox", "--to", "x", "--state-dir", state],
        vec!["push", "--all"],
        vec!["--agent", "m:1", "--log", "file"],
        vec!["--master", "--log-level", "loud"],
    ] {
        let (code, _, err) = status_of(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("--help"), "{args:?}: {err}");
    }
}

#[test]
fn dash_capital_v_prints_the_version() {
    let (code, out, _) = status_of(&["-V"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert_eq!(status_of(&["--version"]).1, out);
}

#[test]
fn the_master_names_the_uuid_on_leave_and_signals_as_the_agent_does() {
    let dir = TempDir::new("leave");
    let mut m = Master::start(&dir, &["--heartbeat", "1"]);
    let mut a = agent(&dir, "lv-1", &m, &[]);
    m.wait_reports("lv-1", 1, T);
    a.signal(15);
    assert_eq!(a.wait_exit(Duration::from_secs(5)), Some(0));
    let line = wait_for(T, "the master's close line", || {
        m.proc
            .log_text()
            .lines()
            .find(|l| l.contains(" closed: "))
            .map(String::from)
    });
    assert!(line.contains("(uuid lv-1) closed: normal"), "{line}");
    assert!(a.log_text().contains("SIGTERM: stopping"));
    m.proc.signal(15);
    assert_eq!(m.proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(m.proc.log_text().contains("SIGTERM: stopping"));
}
