//! SIGHUP on a machine that runs both roles: the agent re-reads its config
//! and key file and reconnects only when something the session carries
//! changed; the master writes `STATE_DIR/master.pid` so it can be
//! signalled alone. Real processes on loopback; every wait is bounded.

mod support;

use std::time::Duration;

use support::{Master, Proc, TempDir, wait_for};

const T: Duration = Duration::from_secs(30);
const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;

fn write_config(path: &std::path::Path, group: &str, key: &std::path::Path) {
    std::fs::write(
        path,
        format!(
            "group = \"{group}\"\ninterval = 1\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn agent_survives_sighup_and_reconnects_only_on_a_relevant_change() {
    let dir = TempDir::new("agenthup");
    let m = Master::start(&dir, &["--heartbeat", "1"]);
    let cfg = dir.path().join("agent.toml");
    write_config(&cfg, "before", &m.fleet_key());
    let state = dir.path().join("a");
    let addr = m.addr();
    let mut a = Proc::spawn(
        &[
            "--agent",
            &addr,
            "--config",
            cfg.to_str().unwrap(),
            "--uuid",
            "hup-1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        dir.path().join("agent.log"),
    );
    let first = m.wait_reports("hup-1", 1, T);
    assert_eq!(first["group"], "before");
    assert_eq!(first["counters"]["sessions"], 1);

    // Nothing changed: the agent says so and keeps its session.
    a.signal(SIGHUP);
    wait_for(T, "the agent's unchanged-reload line", || {
        a.log_text()
            .contains("SIGHUP: config and key file unchanged")
            .then_some(())
    });
    assert_eq!(a.child.try_wait().unwrap(), None, "SIGHUP killed the agent");
    let reports = first["counters"]["reports"].as_u64().unwrap();
    let same = m.wait_reports("hup-1", reports + 1, T);
    assert_eq!(
        same["counters"]["sessions"], 1,
        "no reconnect without a change"
    );

    // A broken file is logged and the agent keeps running as it was.
    std::fs::write(&cfg, "grup = \"typo\"\n").unwrap();
    a.signal(SIGHUP);
    wait_for(T, "the agent's failed-reload line", || {
        a.log_text().contains("SIGHUP: reload failed").then_some(())
    });
    assert_eq!(a.child.try_wait().unwrap(), None);

    // The group is carried by the session: a new one, with the new group.
    write_config(&cfg, "after", &m.fleet_key());
    a.signal(SIGHUP);
    let moved = wait_for(T, "the agent back with its new group", || {
        m.agent("hup-1")
            .filter(|x| x["online"] == true && x["group"] == "after")
    });
    assert_eq!(moved["counters"]["sessions"], 2);
    let why = moved["last_close"]["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("agent reloading its settings"),
        "the master is told why the session ended: {moved}"
    );
    let log = a.log_text();
    assert!(log.contains("SIGHUP: group changed; reconnecting"), "{log}");
    assert_eq!(count(&log, "stopping"), 0, "{log}");

    a.signal(SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn master_pid_file_names_the_master_alone() {
    let dir = TempDir::new("masterpid");
    let mut m = Master::start(&dir, &[]);
    let pid_file = m.state.join("master.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid.trim(), m.proc.child.id().to_string());

    // The README's reload command.
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -HUP $(cat '{}')", pid_file.display()))
        .status()
        .unwrap();
    assert!(st.success());
    wait_for(T, "the master's reload", || {
        m.proc
            .log_text()
            .contains("reload: keyring has")
            .then_some(())
    });

    m.proc.signal(SIGTERM);
    assert_eq!(m.proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!pid_file.exists(), "a clean exit removes the PID file");
}
