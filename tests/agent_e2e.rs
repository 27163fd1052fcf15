//! The agent as a user runs it, against the real master and against a
//! fake master built from the library's sans-I/O session.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_gw::keys::Keyring;

use edge_gw::session::liveness::Keepalive;
use edge_gw::session::master::{MasterConfig, MasterEvent, MasterSession};
use support::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn master_restart_then_buffered_reports_arrive_in_order() {
    let dir = TempDir::new("restart");
    let (port, http) = (free_port(), free_port());
    let mut m = Master::start_on(&dir, port, http, &["--heartbeat", "1"]);
    let a = agent(&dir, "buf-1", &m, &[]);
    m.wait_reports("buf-1", 2, T);
    m.proc.kill9();
    let down_at = support_unix_ms();
    std::thread::sleep(Duration::from_millis(3500));
    let up_at = support_unix_ms();
    let m = Master::start_on(&dir, port, http, &["--heartbeat", "1"]);
    // The buffered reports (about three) arrive right after the reconnect.
    let agent = m.wait_reports("buf-1", 4, T);
    let hist: Vec<u64> = agent["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["unix_ms"].as_u64().unwrap())
        .collect();
    let taken_while_down = hist.iter().filter(|&&t| t > down_at && t < up_at).count();
    assert!(taken_while_down >= 2, "{hist:?} ({down_at}..{up_at})");
    assert!(
        hist.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {hist:?}"
    );
    assert!(
        a.log_text().contains("cannot reach the master"),
        "{}",
        a.log_text()
    );
}

fn support_unix_ms() -> u64 {
    edge_gw::os::now().unix_ms
}

#[test]
fn hook_failure_is_redelivered_then_acked() {
    let dir = TempDir::new("hookfail");
    let cfg = dir.path().join("master.toml");
    std::fs::write(&cfg, "push_resend = 1\nheartbeat = 1\n").unwrap();
    let m = Master::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let marker = dir.path().join("failed-once");
    let out = dir.path().join("out");
    // Fails the first time, succeeds the second.
    let hook = format!(
        "if [ -f {m} ]; then cat > {o}; else touch {m}; exit 1; fi",
        m = marker.display(),
        o = out.display()
    );
    let a = agent(&dir, "hk-1", &m, &["--on-push", &hook]);
    m.wait_reports("hk-1", 1, T);
    let id = m.push("hk-1", "second time lucky");
    wait_for(T, "delivery after a failed hook", || {
        let st = m.get(&format!("/api/pushes/{id}"));
        (st["targets"][0]["state"] == "delivered").then_some(())
    });
    assert!(marker.exists());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "second time lucky");
    assert!(a.log_text().contains("hook failed (exit status 1)"));
    let agent = m.agent("hk-1").unwrap();
    assert_eq!(agent["counters"]["pushes_delivered"], 1);
}

#[test]
fn local_socket_custom_metrics_and_inbox() {
    let dir = TempDir::new("local");
    let m = Master::start(&dir, &["--heartbeat", "1"]);
    let _a = agent(&dir, "loc-1", &m, &[]);
    m.wait_reports("loc-1", 1, T);
    let state = dir.path().join("agent-loc-1");
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap()
    };
    assert!(run(&["report", "wan=up", "clients=7"]).status.success());
    wait_for(T, "custom metrics in a report", || {
        m.agent("loc-1").filter(|a| {
            a["health"]["host"]["custom"] == serde_json::json!([["wan", "up"], ["clients", "7"]])
        })
    });
    let empty = run(&["inbox"]);
    assert_eq!(empty.status.code(), Some(4));
    let id = m.push("loc-1", "via the socket");
    let got = wait_for(T, "the push in the inbox", || {
        let o = run(&["inbox"]);
        o.status.success().then_some(o.stdout)
    });
    assert_eq!(got, b"via the socket\n", "text ends with a newline");
    wait_for(T, "the ack", || {
        let st = m.get(&format!("/api/pushes/{id}"));
        (st["targets"][0]["state"] == "delivered").then_some(())
    });
}

/// A fake master on a real socket, built from the library's session: it
/// completes the handshake, then does whatever `after` says.
fn fake_master(
    keyring: Keyring,
    keepalive: Keepalive,
) -> (TcpListener, Arc<MasterConfig>, Keyring) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = Arc::new(MasterConfig {
        keepalive,
        ..MasterConfig::default()
    });
    (l, cfg, keyring)
}

fn keyring_with(key_file: &std::path::Path) -> Keyring {
    let k = edge_gw::keys::AgentKey::load(key_file).unwrap();
    Keyring::parse(&format!("* {}\n", k.psk.to_hex())).unwrap()
}

#[test]
fn half_open_connection_is_detected_and_redialled() {
    let dir = TempDir::new("halfopen");
    let key = dir.path().join("fleet.key");
    edge_gw::keys::AgentKey::generate(None)
        .unwrap()
        .write_new(&key)
        .unwrap();
    let (l, cfg, ring) = fake_master(
        keyring_with(&key),
        Keepalive {
            interval: Duration::from_secs(1),
            miss_limit: 2,
        },
    );
    let addr = l.local_addr().unwrap().to_string();
    let state = dir.path().join("a");
    let a = Proc::spawn(
        &[
            "--agent",
            &addr,
            "--key-file",
            key.to_str().unwrap(),
            "--uuid",
            "ho-1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        dir.path().join("agent.log"),
    );
    // First connection: handshake, then go silent (a dead NAT mapping).
    let (mut c1, _) = l.accept().unwrap();
    let joined = Instant::now();
    let mut s = MasterSession::new(cfg.clone(), edge_gw::os::now());
    c1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    while s.peer().is_none() {
        let n = c1.read(&mut buf).unwrap();
        s.handle_input(
            &buf[..n],
            edge_gw::os::now(),
            &ring,
            &mut edge_gw::os::OsEntropy,
        );
        while let Some(b) = s.poll_transmit() {
            c1.write_all(&b).unwrap();
        }
    }
    assert!(matches!(s.poll_event(), Some(MasterEvent::Joined(_))));
    // Never answer again; the agent must give up and dial again.
    l.set_nonblocking(false).unwrap();
    let (_c2, _) = l.accept().unwrap();
    let after = joined.elapsed();
    assert!(after >= Duration::from_secs(2), "redialled after {after:?}");
    assert!(after < Duration::from_secs(15), "redialled after {after:?}");
    wait_for(T, "the half-open log line", || {
        a.log_text().contains("half-open").then_some(())
    });
    drop(c1);
}

#[test]
fn wrong_key_is_rejected_with_a_clear_message() {
    let dir = TempDir::new("wrongkey");
    let m = Master::start(&dir, &[]);
    let other = dir.path().join("other.key");
    edge_gw::keys::AgentKey::generate(None)
        .unwrap()
        .write_new(&other)
        .unwrap();
    let state = dir.path().join("a");
    let addr = m.addr();
    let a = Proc::spawn(
        &[
            "--agent",
            &addr,
            "--key-file",
            other.to_str().unwrap(),
            "--uuid",
            "wk-1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        dir.path().join("agent.log"),
    );
    wait_for(T, "the agent's auth error", || {
        let t = a.log_text();
        (t.contains("refused the session") && t.contains("authentication failed")).then_some(t)
    });
    wait_for(T, "the master's auth error", || {
        m.proc.log_text().contains("auth_failed").then_some(())
    });
    assert!(
        m.agent("wk-1").is_none(),
        "an unauthenticated agent must not join"
    );
}

#[test]
fn agent_exits_cleanly_on_sigterm() {
    let dir = TempDir::new("agentterm");
    let m = Master::start(&dir, &["--heartbeat", "1"]);
    let mut a = agent(&dir, "st-1", &m, &[]);
    m.wait_reports("st-1", 1, T);
    a.signal(15);
    assert_eq!(a.wait_exit(Duration::from_secs(5)), Some(0));
    let agent = wait_for(T, "the agent to be offline", || {
        m.agent("st-1").filter(|a| a["online"] == false)
    });
    assert!(
        agent["last_close"]["reason"]
            .as_str()
            .unwrap()
            .contains("agent stopping")
    );
    let _ = TcpStream::connect(m.addr());
}

#[test]
fn agent_config_file_sets_group_mounts_and_interval() {
    let dir = TempDir::new("agentcfg");
    let m = Master::start(&dir, &["--heartbeat", "1"]);
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "# agent settings\ngroup = \"from-file\"\ninterval = 1\nmounts = [\"/\", \"{}\"]\nkey_file = \"{}\"\n",
            dir.path().display(),
            m.fleet_key().display()
        ),
    )
    .unwrap();
    let state = dir.path().join("a");
    let addr = m.addr();
    let _a = Proc::spawn(
        &[
            "--agent",
            &addr,
            "--config",
            cfg.to_str().unwrap(),
            "--uuid",
            "cf-1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        dir.path().join("agent.log"),
    );
    let a = m.wait_reports("cf-1", 2, T);
    assert_eq!(a["group"], "from-file");
    let fs = a["health"]["host"]["fs"].as_array().unwrap();
    assert_eq!(fs.len(), 2, "{fs:?}");
    assert_eq!(fs[1]["mount"], dir.path().to_str().unwrap());
    assert!(fs[0]["total_kb"].as_u64().unwrap() > 0);
}
