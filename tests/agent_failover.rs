//! An agent given several masters (`--agent A,B`, or `master = [...]` in
//! its config file): it joins the first it reaches, sticks to it, and fails
//! over to the next when that one dies, goes silent, refuses its key or
//! is taken off the list by a SIGHUP — and never flaps back. Real masters
//! and a real agent on loopback; every wait is bounded.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{BIN, Master, Proc, TempDir, agent_on, free_port, keygen, wait_for};

const T: Duration = Duration::from_secs(30);
const SIGHUP: i32 = 1;
const SIGSTOP: i32 = 19;

/// A device key for `uuid` in a keyring both masters read, as a cluster's
/// masters share their keys.
fn shared_key(dir: &TempDir, uuid: &str) -> (PathBuf, PathBuf) {
    let key = dir.path().join(format!("{uuid}.key"));
    let keyring = dir.path().join("keyring");
    keygen(uuid, &key, &keyring);
    (key, keyring)
}

/// A master reading `keyring`, heartbeat 1 s (so silence shows in ~3 s).
fn master(dir: &TempDir, keyring: &Path) -> Master {
    Master::start(
        dir,
        &["--heartbeat", "1", "--keyring", keyring.to_str().unwrap()],
    )
}

/// The agent `uuid` on `masters` (as `--agent` takes them), reporting
/// every second.
fn agent(dir: &TempDir, uuid: &str, masters: &str, key: &Path) -> Proc {
    agent_on(dir.path(), uuid, masters, key, &[])
}

/// The agent's `STATUS` line from its local socket.
fn local_status(dir: &TempDir, uuid: &str) -> String {
    let sock = dir.path().join(format!("agent-{uuid}")).join("agent.sock");
    edge_gw::agent::local::client_status(&sock).unwrap_or_default()
}

/// Waits until `m` has had `more` reports from `uuid` beyond `after`;
/// with the agent reporting every second and the master beating every
/// second, that is `more` heartbeat intervals of a settled session.
fn settle(m: &Master, uuid: &str, more: u64) -> serde_json::Value {
    let now = m.wait_reports(uuid, 1, T)["counters"]["reports"]
        .as_u64()
        .unwrap();
    m.wait_reports(uuid, now + more, T)
}

#[test]
fn fails_over_when_its_master_dies_and_does_not_flap_back() {
    let (da, db) = (TempDir::new("fo-a"), TempDir::new("fo-b"));
    let (key, keyring) = shared_key(&da, "fo-1");
    let (pa, ha) = (free_port(), free_port());
    let mut a = Master::start_on(
        &da,
        pa,
        ha,
        &["--heartbeat", "1", "--keyring", keyring.to_str().unwrap()],
    );
    let b = master(&db, &keyring);
    let ag = agent(&da, "fo-1", &format!("{},{}", a.addr(), b.addr()), &key);

    // The first listed master that answers gets it; the other never sees it.
    settle(&a, "fo-1", 2);
    assert!(b.agent("fo-1").is_none(), "joined both masters");
    assert!(
        local_status(&da, "fo-1").contains(&format!("connected=1 master={} ", a.addr())),
        "{}",
        local_status(&da, "fo-1")
    );

    // A dies: the agent is on B within the bound, B's first session.
    a.proc.kill9();
    let on_b = b.wait_reports("fo-1", 1, T);
    assert_eq!(on_b["counters"]["sessions"], 1);
    let log = ag.log_text();
    assert!(
        log.contains(&format!("disconnected from the master at {}", a.addr())),
        "{log}"
    );
    assert!(
        log.contains(&format!("moving to the master at {}", b.addr())),
        "{log}"
    );
    assert!(
        log.contains(&format!("connected to the master at {}", b.addr())),
        "{log}"
    );
    wait_for(T, "STATUS naming B", || {
        local_status(&da, "fo-1")
            .contains(&format!("master={} ", b.addr()))
            .then_some(())
    });

    // A comes back on its port: the agent stays with B (no "back to the
    // first"), over several heartbeat intervals.
    let a = Master::start_on(
        &da,
        pa,
        ha,
        &["--heartbeat", "1", "--keyring", keyring.to_str().unwrap()],
    );
    let still = settle(&b, "fo-1", 5);
    assert_eq!(still["online"], true);
    assert_eq!(still["counters"]["sessions"], 1, "the agent left B");
    assert!(a.agent("fo-1").is_none(), "the agent flapped back to A");
    assert_eq!(
        ag.log_text().matches("connected to the master at").count(),
        2,
        "{}",
        ag.log_text()
    );
}

#[test]
fn a_closed_first_entry_is_skipped() {
    let db = TempDir::new("fo-closed");
    let (key, keyring) = shared_key(&db, "fo-2");
    let b = master(&db, &keyring);
    let closed = format!("127.0.0.1:{}", free_port());
    let ag = agent(&db, "fo-2", &format!("{closed},{}", b.addr()), &key);
    let on_b = b.wait_reports("fo-2", 1, T);
    assert_eq!(on_b["counters"]["sessions"], 1);
    let log = ag.log_text();
    assert!(
        log.contains(&format!("cannot reach the master at {closed}")),
        "{log}"
    );
    assert!(
        log.contains("masters (in this order)"),
        "the start line lists them: {log}"
    );
}

#[test]
fn a_silent_master_is_left_for_the_next() {
    let (da, db) = (TempDir::new("fo-stop-a"), TempDir::new("fo-stop-b"));
    let (key, keyring) = shared_key(&da, "fo-3");
    let a = master(&da, &keyring);
    let b = master(&db, &keyring);
    let ag = agent(&da, "fo-3", &format!("{},{}", a.addr(), b.addr()), &key);
    a.wait_reports("fo-3", 1, T);
    // Stopped, not dead: the TCP connection stays open and nothing comes
    // back (half-open, as after a power cut on the master's side). The
    // agent's liveness check (heartbeat 1 s × 3 misses) gives up on it.
    a.proc.signal(SIGSTOP);
    b.wait_reports("fo-3", 1, T);
    let log = ag.log_text();
    assert!(
        log.contains(&format!("disconnected from the master at {}", a.addr())),
        "{log}"
    );
    // Dropped with `a` (SIGKILL ends a stopped process too).
}

#[test]
fn a_master_refusing_the_key_is_passed_over() {
    let (dc, db) = (TempDir::new("fo-auth-c"), TempDir::new("fo-auth-b"));
    let (key, keyring) = shared_key(&db, "fo-4");
    // C has its own keyring, without the agent's key.
    let c = Master::start(&dc, &["--heartbeat", "1"]);
    let b = master(&db, &keyring);
    let ag = agent(&db, "fo-4", &format!("{},{}", c.addr(), b.addr()), &key);
    b.wait_reports("fo-4", 1, T);
    let log = ag.log_text();
    assert!(
        log.contains(&format!("master at {} refused the session", c.addr())),
        "{log}"
    );
    assert!(log.contains("check --key-file"), "{log}");
    assert!(c.agent("fo-4").is_none());
}

#[test]
fn sighup_keeps_a_listed_master_and_leaves_an_unlisted_one() {
    let (da, db) = (TempDir::new("fo-hup-a"), TempDir::new("fo-hup-b"));
    let (key, keyring) = shared_key(&da, "fo-5");
    let a = master(&da, &keyring);
    let b = master(&db, &keyring);
    let cfg = da.path().join("agent.toml");
    let write = |masters: &[&str]| {
        let list: Vec<String> = masters.iter().map(|m| format!("\"{m}\"")).collect();
        std::fs::write(
            &cfg,
            format!(
                "master = [{}]\nkey_file = \"{}\"\nuuid = \"fo-5\"\ninterval = 1\n",
                list.join(", "),
                key.display()
            ),
        )
        .unwrap();
    };
    write(&[&a.addr(), &b.addr()]);
    let state = da.path().join("agent-fo-5");
    // The masters come from the config file alone.
    let ag = Proc::spawn(
        &[
            "--agent",
            "--config",
            cfg.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        da.path().join("agent-fo-5.log"),
    );
    a.wait_reports("fo-5", 1, T);

    // Reordered, A still listed: the session stays.
    write(&[&b.addr(), &a.addr()]);
    ag.signal(SIGHUP);
    wait_for(T, "the keep line", || {
        ag.log_text()
            .contains(&format!(
                "SIGHUP: the master at {} is still listed; keeping the session",
                a.addr()
            ))
            .then_some(())
    });
    let kept = settle(&a, "fo-5", 3);
    assert_eq!(kept["counters"]["sessions"], 1, "a listed master was left");
    assert!(b.agent("fo-5").is_none());

    // A taken off the list: the agent moves to B.
    write(&[&b.addr()]);
    ag.signal(SIGHUP);
    b.wait_reports("fo-5", 1, T);
    let log = ag.log_text();
    assert!(
        log.contains(&format!("the master at {} is no longer listed", a.addr())),
        "{log}"
    );
    wait_for(T, "A to see the agent leave", || {
        a.agent("fo-5").filter(|j| j["online"] == false)
    });
}

#[test]
fn bad_master_lists_are_refused_with_the_entry_named() {
    let dir = TempDir::new("fo-bad");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(BIN).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--agent", "127.0.0.1:9503,m2"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("master \"m2\": expected HOST:PORT"), "{err}");
    let (code, err) = run(&["--agent", "127.0.0.1:9503,127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("\"127.0.0.1:0\": the port must not be 0"),
        "{err}"
    );
    let (code, err) = run(&["--agent"]);
    assert_eq!(code, Some(2), "{err}");

    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "master = [\"m1:9503\", \"m1:99999\"]\n").unwrap();
    let (code, err) = run(&["--agent", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("agent.toml:1: master \"m1:99999\""), "{err}");
    std::fs::write(&cfg, "interval = 5\n").unwrap();
    let (code, err) = run(&["--agent", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no master"), "{err}");
}
