//! Pushes that answer (issue 17), end to end with real master and agent
//! processes on loopback: the hook's exit status and output reach the API
//! and `edge-gw push --wait`, survive a SIGKILL of either side, are capped
//! on the agent, and a hostile agent's oversized results are refused and
//! counted without closing anything.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edge_gw::proto::Uuid;
use edge_gw::proto::v2::PushResult;
use edge_gw::session::agent::{AgentConfig, AgentEvent, AgentSession};
use edge_gw::session::dedup::RecentIds;
use serde_json::{Value, json};
use support::*;

const T: Duration = Duration::from_secs(40);

/// Master settings for quick tests: resends and heartbeats every second.
fn master_config(dir: &TempDir, extra: &str) -> String {
    let p = dir.path().join("master.toml");
    std::fs::write(&p, format!("push_resend = 1\nheartbeat = 1\n{extra}")).unwrap();
    p.to_str().unwrap().to_string()
}

/// `POST /api/push` with `want_result`; the push id.
fn push_wanting(m: &Master, to: &str, body: &str) -> u64 {
    let v = m
        .try_request(
            "POST",
            "/api/push",
            Some(&json!({ "to": to, "body": body, "want_result": true })),
        )
        .unwrap_or_else(|e| panic!("push: {e}"));
    v["id"].as_u64().unwrap()
}

/// Waits until `uuid` answered push `id`; its `answer` object.
fn wait_answer(m: &Master, id: u64, uuid: &str) -> Value {
    wait_for(T, &format!("{uuid}'s answer to push {id}"), || {
        let v = m.try_get(&format!("/api/pushes/{id}")).ok()?;
        v["targets"]
            .as_array()?
            .iter()
            .find(|t| t["uuid"] == uuid && t["state"] == "answered")
            .map(|t| t["answer"].clone())
    })
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_hook_that_echoes_and_exits_3_is_the_answer() {
    let dir = TempDir::new("res-exit3");
    let cfg = master_config(&dir, "");
    let m = Master::start(&dir, &["--config", &cfg]);
    let hook = "echo \"got $(cat)\"; echo careful >&2; exit 3";
    let _a = agent(&dir, "r3", &m, &["--on-push", hook]);
    m.wait_reports("r3", 1, T);
    let id = push_wanting(&m, "r3", "uptime");
    let a = wait_answer(&m, id, "r3");
    assert_eq!(a["exit"], 3);
    assert_eq!(a["output"], "got uptime\n\n--- stderr ---\ncareful\n");
    assert_eq!(a["truncated"], false);
    // Only with the token, as every /api/ path.
    let anon = edge_gw::cli::api_client::request(
        &format!("127.0.0.1:{}", m.http),
        "not-the-token",
        "GET",
        &format!("/api/pushes/{id}"),
        None,
    );
    assert!(anon.is_err_and(|e| e.contains("401")));
    // A push that wants no result is delivered as before, exit 3 or not:
    // today's meaning (not taken) holds, so it stays queued.
    let plain = m.push("r3", "no answer wanted");
    std::thread::sleep(Duration::from_secs(2));
    let st = m.get(&format!("/api/pushes/{plain}"));
    assert_eq!(st["targets"][0]["state"], "queued");
    let status = m.get("/api/status");
    assert_eq!(status["pushes"]["results_stored"], 1);
}

#[test]
fn group_push_with_wait_prints_one_answer_per_agent_and_times_out_distinctly() {
    let dir = TempDir::new("res-group");
    let cfg = master_config(&dir, "");
    let m = Master::start(&dir, &["--config", &cfg]);
    let hook = "echo \"answer from $EDGE_GW_PUSH_GROUP\"";
    let _a1 = agent(&dir, "lab-1", &m, &["--group", "lab", "--on-push", hook]);
    let mut a2 = agent(&dir, "lab-2", &m, &["--group", "lab", "--on-push", hook]);
    m.wait_reports("lab-1", 1, T);
    m.wait_reports("lab-2", 1, T);
    let http = format!("127.0.0.1:{}", m.http);
    let token = m.state.join("api.token");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--http", &http, "--token-file", token.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = run(&["push", "--group", "lab", "--wait", "30s", "hostname"]);
    assert_eq!(code, Some(0), "{out}");
    for a in ["lab-1", "lab-2"] {
        assert_eq!(
            out.matches(&format!("== {a}: exit 0 ==")).count(),
            1,
            "{out}"
        );
    }
    assert_eq!(out.matches("answer from lab").count(), 2, "{out}");

    // lab-2 is gone: the wait runs out, says what is known, exit 5.
    a2.kill9();
    wait_for(T, "lab-2 offline", || {
        m.agent("lab-2").filter(|a| a["online"] == false)
    });
    let (code, out) = run(&["push", "--to", "lab-2", "--wait", "2", "hostname"]);
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("timed out after 2 s"), "{out}");
    assert!(out.contains("lab-2: queued"), "{out}");
}

#[test]
fn agent_killed_before_the_confirmation_resends_the_same_result_without_a_second_run() {
    let dir = TempDir::new("res-agent-kill");
    let port = free_port();
    let http = free_port();
    let cfg = master_config(&dir, "");
    let mut m = Master::start_on(&dir, port, http, &["--config", &cfg]);
    let runs = dir.path().join("runs");
    // Appends a line per run, then sleeps: the window to take the master
    // away, so the result cannot be confirmed.
    let hook = format!(
        "echo run >> {}; sleep 2; echo \"the one answer\"; exit 7",
        runs.display()
    );
    let mut a = agent(&dir, "once-r", &m, &["--on-push", &hook]);
    m.wait_reports("once-r", 1, T);
    let id = push_wanting(&m, "once-r", "x");
    wait_for(T, "the hook to start", || {
        (!lines(&runs).is_empty()).then_some(())
    });
    m.proc.kill9();
    // The hook finishes with no master to confirm; then the agent dies.
    wait_for(T, "the agent to record the delivery", || {
        a.log_text()
            .contains(&format!("push {id} delivered to the hook"))
            .then_some(())
    });
    a.kill9();
    let m = Master::start_on(&dir, port, http, &["--config", &cfg]);
    let _a = agent(&dir, "once-r", &m, &["--on-push", &hook]);
    let ans = wait_answer(&m, id, "once-r");
    assert_eq!(ans["exit"], 7);
    assert_eq!(ans["output"], "the one answer\n");
    assert_eq!(lines(&runs), ["run"], "the hook ran again");
}

#[test]
fn a_stored_result_survives_a_sigkill_of_the_master() {
    let dir = TempDir::new("res-master-kill");
    let port = free_port();
    let http = free_port();
    let cfg = master_config(&dir, "");
    let mut m = Master::start_on(&dir, port, http, &["--config", &cfg]);
    let _a = agent(&dir, "keep-r", &m, &["--on-push", "echo kept; exit 0"]);
    m.wait_reports("keep-r", 1, T);
    let id = push_wanting(&m, "keep-r", "x");
    wait_answer(&m, id, "keep-r");
    m.proc.kill9();
    let m = Master::start_on(&dir, port, http, &["--config", &cfg]);
    let v = m.get(&format!("/api/pushes/{id}"));
    assert_eq!(v["targets"][0]["state"], "answered", "{v}");
    assert_eq!(v["targets"][0]["answer"]["output"], "kept\n");
}

#[test]
fn output_over_the_agent_cap_is_cut_and_marked() {
    let dir = TempDir::new("res-cap");
    let cfg = master_config(&dir, "");
    let m = Master::start(&dir, &["--config", &cfg]);
    let agent_cfg = dir.path().join("agent.conf");
    std::fs::write(&agent_cfg, "result_max_bytes = 100\n").unwrap();
    let hook = "head -c 5000 /dev/zero | tr '\\0' a";
    let _a = agent(
        &dir,
        "cap-r",
        &m,
        &["--on-push", hook, "--config", agent_cfg.to_str().unwrap()],
    );
    m.wait_reports("cap-r", 1, T);
    let id = push_wanting(&m, "cap-r", "x");
    let a = wait_answer(&m, id, "cap-r");
    assert_eq!(a["output"], "a".repeat(100));
    assert_eq!(a["truncated"], true);
}

/// A fake agent from the library's session over a real socket.
struct FakeAgent {
    s: AgentSession,
    tcp: TcpStream,
}

impl FakeAgent {
    fn join(m: &Master, name: &str) -> FakeAgent {
        let key = edge_gw::keys::AgentKey::load(&m.fleet_key()).unwrap();
        let cfg = AgentConfig {
            uuid: Uuid::from_text(name).unwrap(),
            psk: Some(*key.psk.as_bytes()),
            ..AgentConfig::default()
        };
        let s = AgentSession::new(
            cfg,
            RecentIds::new(4),
            edge_gw::os::now(),
            &mut edge_gw::os::OsEntropy,
        );
        let tcp = TcpStream::connect(m.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut f = FakeAgent { s, tcp };
        wait_for(T, "the fake agent's handshake", || {
            f.step();
            f.s.is_open().then_some(())
        });
        f
    }

    /// Writes what is queued, reads what came, keeps the heartbeat.
    fn step(&mut self) -> Vec<AgentEvent> {
        while let Some(b) = self.s.poll_transmit() {
            self.tcp.write_all(&b).unwrap();
        }
        let mut buf = [0u8; 16384];
        match self.tcp.read(&mut buf) {
            Ok(0) => panic!("the master closed the fake agent"),
            Ok(n) => self.s.handle_input(&buf[..n], edge_gw::os::now()),
            Err(_) => {}
        }
        self.s.handle_timeout(edge_gw::os::now());
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }
}

#[test]
fn a_hostile_agents_oversized_results_are_refused_counted_and_close_nothing() {
    let dir = TempDir::new("res-hostile");
    let cfg = master_config(&dir, "push_results_agent_bytes = 1024\n");
    let m = Master::start(&dir, &["--config", &cfg]);
    let _good = agent(&dir, "good-r", &m, &["--on-push", "echo fine"]);
    m.wait_reports("good-r", 1, T);
    let mut bad = FakeAgent::join(&m, "bad-r");
    wait_for(T, "the fake agent online", || {
        bad.step();
        m.agent("bad-r").filter(|a| a["online"] == true)
    });
    let id = push_wanting(&m, "bad-r", "x");
    let push = wait_for(T, "the push at the fake agent", || {
        bad.step().into_iter().find_map(|e| match e {
            AgentEvent::Push(p) => Some(p),
            _ => None,
        })
    });
    assert!(push.want_result);
    bad.s.ack_push(id).unwrap();
    // Over the master's per-agent budget, then answers nobody asked for.
    let huge = PushResult {
        id,
        exit: 0,
        output: vec![b'x'; 2000],
        truncated: false,
        at_unix_ms: 0,
    };
    bad.s.send_push_result(&huge).unwrap();
    for other in 1000..1010 {
        bad.s
            .send_push_result(&PushResult {
                id: other,
                ..huge.clone()
            })
            .unwrap();
    }
    // Every one is confirmed (so it is not resent), none stored.
    let mut confirmed = 0;
    wait_for(T, "confirmations of the refused results", || {
        confirmed += bad
            .step()
            .iter()
            .filter(|e| matches!(e, AgentEvent::PushResultStored(_)))
            .count();
        (confirmed == 11).then_some(())
    });
    let st = m.get("/api/status");
    assert_eq!(st["pushes"]["results_refused"]["agent_bytes"], 1, "{st}");
    assert_eq!(st["pushes"]["results_refused"]["not_awaited"], 10, "{st}");
    assert!(
        m.metrics()
            .contains("edge_gw_push_results_refused_total{reason=\"agent_bytes\"} 1")
    );
    let v = m.get(&format!("/api/pushes/{id}"));
    assert_eq!(v["targets"][0]["state"], "delivered", "{v}");
    // Nothing was closed: both agents are online, the good one answers.
    assert_eq!(m.agent("bad-r").unwrap()["online"], true);
    let good = push_wanting(&m, "good-r", "x");
    assert_eq!(wait_answer(&m, good, "good-r")["output"], "fine\n");
    bad.step();
    assert!(!bad.s.is_closed());
}

/// `edge-gw` with `args`, the exit status, stdout and stderr.
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_socket_consumer_answers_with_inbox_answer() {
    let dir = TempDir::new("res-inbox");
    let cfg = master_config(&dir, "");
    let m = Master::start(&dir, &["--config", &cfg]);
    let _a = agent(&dir, "sock-r", &m, &[]);
    m.wait_reports("sock-r", 1, T);
    let state = dir.path().join("agent-sock-r");
    let state = state.to_str().unwrap();
    let id = push_wanting(&m, "sock-r", "rotate the key");
    let (code, out, err) = wait_for(T, "the push in the inbox", || {
        let r = cli(&["inbox", "--state-dir", state]);
        (r.0 == Some(0)).then_some(r)
    });
    // Text bodies end with a newline on the terminal.
    assert_eq!((code, out.as_str()), (Some(0), "rotate the key\n"));
    assert!(err.contains(&format!("--answer {id}")), "{err}");
    let id_s = id.to_string();
    let (code, _, err) = cli(&[
        "inbox",
        "--state-dir",
        state,
        "--answer",
        &id_s,
        "--exit",
        "2",
        "rotated",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let a = wait_answer(&m, id, "sock-r");
    assert_eq!(
        (a["exit"].as_i64(), a["output"].as_str()),
        (Some(2), Some("rotated"))
    );
    // Answered once: a second answer is refused by the agent.
    let (code, _, err) = cli(&["inbox", "--state-dir", state, "--answer", &id_s, "again"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("answered already") || err.contains("not delivered"),
        "{err}"
    );
}

#[test]
fn inbox_resolve_settles_a_push_whose_hook_a_crash_cut_off() {
    let dir = TempDir::new("res-resolve");
    let cfg = master_config(&dir, "");
    let m = Master::start(&dir, &["--config", &cfg]);
    let runs = dir.path().join("runs");
    let hook = format!("echo run >> {}; sleep 30", runs.display());
    let mut a = agent(&dir, "res-r", &m, &["--on-push", &hook]);
    m.wait_reports("res-r", 1, T);
    let state = dir.path().join("agent-res-r");
    let state = state.to_str().unwrap();
    let (code, _, err) = cli(&["inbox", "--state-dir", state, "--resolve", "99", "retry"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not held as interrupted"), "{err}");
    let id = m.push("res-r", "x");
    wait_for(T, "the hook to start", || {
        (!lines(&runs).is_empty()).then_some(())
    });
    a.kill9();
    let a = agent(&dir, "res-r", &m, &["--on-push", &hook]);
    let held = format!("push {id}: held until RESOLVE");
    wait_for(T, &held, || a.log_text().contains(&held).then_some(()));
    let (code, _, err) = cli(&[
        "inbox",
        "--state-dir",
        state,
        "--resolve",
        &id.to_string(),
        "delivered",
    ]);
    assert_eq!(code, Some(0), "{err}");
    wait_for(T, "the push delivered", || {
        let st = m.get(&format!("/api/pushes/{id}"));
        (st["targets"][0]["state"] == "delivered").then_some(())
    });
    assert_eq!(lines(&runs), ["run"]);
}
