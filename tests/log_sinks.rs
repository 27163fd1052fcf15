//! Where log lines go: journald priority prefixes when stderr is the
//! journal, wall-clock stamps on plain stderr, `--log syslog` off stderr,
//! and `log_level` from the agent's config file. Real agent processes
//! pointed at a closed port (they log, retry and are killed); every wait
//! is bounded.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{BIN, TempDir, free_port, wait_for};

const T: Duration = Duration::from_secs(30);

/// An agent that cannot reach its master, its stderr in `log`.
fn agent(dir: &TempDir, log: &Path, extra: &[&str], env: &[(&str, String)]) -> Child {
    let master = format!("127.0.0.1:{}", free_port());
    let state = dir.path().join("state");
    let mut c = Command::new(BIN);
    c.args(["--agent", &master, "--uuid", "log-1", "--state-dir"])
        .arg(&state)
        .args(extra)
        .env_remove("EDGE_GW_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits for the "cannot reach" warning every run logs, then stops.
fn run_until_warned(mut child: Child, log: &Path) -> String {
    let text = wait_for(T, "the agent's warning", || {
        let t = read(log);
        t.contains("cannot reach the master").then_some(t)
    });
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn journal_lines_carry_priorities_when_stderr_is_the_journal() {
    let dir = TempDir::new("journal");
    let log = dir.path().join("stderr");
    std::fs::File::create(&log).unwrap();
    let m = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", m.dev(), m.ino());
    let child = agent(&dir, &log, &[], &[("JOURNAL_STREAM", stream)]);
    let text = run_until_warned(child, &log);
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>INFO ") && l.contains("starting")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("<4>WARN ") && l.contains("cannot reach")),
        "{text}"
    );
}

#[test]
fn plain_stderr_is_stamped_with_the_wall_clock() {
    let dir = TempDir::new("plain");
    let log = dir.path().join("stderr");
    // A stream that is not our stderr: inherited, so not the journal.
    let child = agent(&dir, &log, &[], &[("JOURNAL_STREAM", "1:2".into())]);
    let text = run_until_warned(child, &log);
    for line in text.lines() {
        let b = line.as_bytes();
        assert!(
            b.len() > 24 && b[4] == b'-' && b[10] == b'T' && b[23] == b'Z',
            "not a UTC stamp: {line}"
        );
    }
}

#[test]
fn config_log_level_applies_unless_the_command_line_sets_one() {
    let dir = TempDir::new("cfglevel");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "log_level = \"warn\"\n").unwrap();
    let log = dir.path().join("stderr");
    let child = agent(&dir, &log, &["--config", cfg.to_str().unwrap()], &[]);
    let text = run_until_warned(child, &log);
    assert!(
        !text.contains(" INFO "),
        "log_level = warn let INFO through: {text}"
    );

    let log = dir.path().join("stderr-cli");
    let child = agent(
        &dir,
        &log,
        &["--config", cfg.to_str().unwrap(), "--log-level", "info"],
        &[],
    );
    let text = run_until_warned(child, &log);
    assert!(text.contains(" INFO "), "--log-level must win: {text}");
}

#[test]
fn log_syslog_leaves_stderr_or_says_why_not() {
    let dir = TempDir::new("syslog");
    let log = dir.path().join("stderr");
    let mut child = agent(&dir, &log, &["--log", "syslog"], &[]);
    if Path::new("/dev/log").exists() {
        // Lines go to the syslog daemon. The "starting" line is logged
        // before the local socket exists, so once it does, stderr would
        // already hold that line had it gone there.
        let state = dir.path().join("state").join("agent.sock");
        wait_for(T, "the agent's local socket", || {
            state.exists().then_some(())
        });
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(read(&log), "", "--log syslog wrote to stderr");
    } else {
        let text = run_until_warned(child, &log);
        assert!(
            text.contains("--log syslog: cannot reach /dev/log"),
            "{text}"
        );
    }
}
