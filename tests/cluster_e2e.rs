//! Several masters on one Redis (`docs/cluster.md`), end to end: real
//! `redis-server` processes started here on free loopback ports with
//! their own directories (never a system Redis, never port 6379), real
//! masters, real agents.
//!
//! `redis-server` comes from Debian's `redis-server` package (`.ci/run`
//! installs it and sets `EDGE_GW_REQUIRE_REDIS`); without it a plain
//! `cargo test` skips these tests and says so on stderr.
#![cfg(all(feature = "agent", feature = "cluster"))]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const T: Duration = Duration::from_secs(40);

/// A `redis-server` of our own, with AOF and `appendfsync always` (what
/// `docs/cluster.md` asks of a production Redis).
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// A fresh `redis-server`, or `None` (the test then returns at once)
    /// when this machine has none and `EDGE_GW_REQUIRE_REDIS` is unset:
    /// a developer's `cargo test` without Redis says these tests were
    /// skipped instead of failing; `.ci/run` installs Redis and sets the
    /// variable, so there they always run.
    fn start(dir: &TempDir) -> Option<Redis> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("EDGE_GW_REQUIRE_REDIS").is_none(),
                "redis-server not found: apt-get install redis-server"
            );
            // Straight to fd 2, past the test harness's capture, so a
            // passing run still shows it.
            let _ = std::io::stderr().write_all(
                b"SKIPPED: redis-server is not installed (apt-get install redis-server); a cluster test did not run\n",
            );
            return None;
        }
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: dir.path().join("redis"),
        };
        std::fs::create_dir_all(&r.dir).unwrap();
        r.restart();
        Some(r)
    }

    /// Starts it (again) on the same port and directory.
    fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): apt-get install redis-server")
            });
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(10), "redis-server to answer", || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"PING\r\n").ok()?;
            let mut b = [0u8; 7];
            s.read_exact(&mut b).ok()?;
            (&b == b"+PONG\r\n").then_some(())
        });
    }

    /// SIGKILL: what it acknowledged must be in its AOF already.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Masters of one cluster sharing one fleet key, heartbeat 1 s.
struct Fleet {
    dirs: Vec<TempDir>,
    masters: Vec<Option<Master>>,
}

/// Starts `n` masters `m0…` on the cluster at `url` (a proxy's for some).
fn masters(name: &str, urls: &[String]) -> Fleet {
    let mut f = Fleet {
        dirs: Vec::new(),
        masters: Vec::new(),
    };
    for (i, url) in urls.iter().enumerate() {
        let dir = TempDir::new(&format!("{name}-m{i}"));
        let cfg = dir.path().join("master.toml");
        std::fs::write(&cfg, "heartbeat = 1\npush_resend = 1\n").unwrap();
        if let Some(first) = f.dirs.first() {
            // The operator copies the fleet key and keyring to every
            // master of the cluster.
            let from = first.path().join("master");
            let to = dir.path().join("master");
            std::fs::create_dir_all(&to).unwrap();
            for file in ["fleet.key", "keyring"] {
                std::fs::copy(from.join(file), to.join(file)).unwrap();
            }
        }
        let node = format!("m{i}");
        let m = Master::start(
            &dir,
            &[
                "--cluster",
                url,
                "--node-name",
                &node,
                "--config",
                cfg.to_str().unwrap(),
                "--allow-plaintext",
                "--legacy-v1",
            ],
        );
        f.dirs.push(dir);
        f.masters.push(Some(m));
    }
    f
}

impl Fleet {
    fn m(&self, i: usize) -> &Master {
        self.masters[i].as_ref().expect("master is up")
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.masters[i].take() {
            m.proc.kill9();
        }
    }

    fn fleet_key(&self) -> PathBuf {
        self.dirs[0].path().join("master").join("fleet.key")
    }

    /// Starts an agent with `masters` (indices, in order) and a hook that
    /// appends each push's id to `DIR/pushes-NAME`, sleeping `hook_ms`.
    fn agent(&self, dir: &Path, name: &str, masters: &[usize], hook_ms: u32) -> Proc {
        let list: Vec<String> = masters.iter().map(|&i| self.m(i).addr()).collect();
        let list = list.join(",");
        let hook = format!(
            "echo \"$EDGE_GW_PUSH_ID\" >> {}; sleep {}",
            dir.join(format!("pushes-{name}")).display(),
            f64::from(hook_ms) / 1000.0
        );
        let key = self.fleet_key();
        agent_on(dir, name, &list, &key, &["--on-push", &hook])
    }
}

/// Push ids the hook of agent `name` ran for.
fn pushes_run(dir: &Path, name: &str) -> Vec<u64> {
    std::fs::read_to_string(dir.join(format!("pushes-{name}")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `/api/agents` of `m` as uuid → node, online agents only.
fn placement(m: &Master) -> Vec<(String, String)> {
    let Ok(Value::Array(list)) = m.try_get("/api/agents") else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = list
        .iter()
        .filter(|a| a["online"] == true)
        .map(|a| {
            (
                a["uuid"].as_str().unwrap_or("").to_string(),
                a["node"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn push(m: &Master, to: &str, body: &str) -> Result<u64, String> {
    m.try_request(
        "POST",
        "/api/push",
        Some(&json!({ "to": to, "body": body })),
    )
    .map(|v| v["id"].as_u64().unwrap_or(0))
}

/// Waits until agent `name` is online on master `node` in `m`'s view.
fn wait_on(m: &Master, name: &str, node: &str) {
    wait_for(T, &format!("{name} online on {node}"), || {
        placement(m)
            .iter()
            .any(|(u, n)| u == name && n == node)
            .then_some(())
    });
}

#[test]
fn every_master_lists_every_agent_with_its_node() {
    let dir = TempDir::new("cluster-view");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let f = masters("cluster-view", &[url.clone(), url.clone(), url]);
    let mut agents = Vec::new();
    let mut want = Vec::new();
    for i in 0..30 {
        let name = format!("a{i:02}");
        agents.push(f.agent(dir.path(), &name, &[i % 3], 0));
        want.push((name, format!("m{}", i % 3)));
    }
    want.sort();
    for k in 0..3 {
        wait_for(
            T,
            &format!("m{k} to list all 30 agents with their node"),
            || (placement(f.m(k)) == want).then_some(()),
        );
        let c = f.m(k).get("/api/cluster");
        let alive: Vec<&str> = c["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["alive"] == true)
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(alive, ["m0", "m1", "m2"], "{c}");
        assert_eq!(c["redis_up"], true);
        let one = f.m(k).get("/api/agents/a04");
        assert_eq!(one["node"], "m1", "{one}");
    }
    let text = f.m(0).metrics();
    assert!(text.contains("edge_gw_cluster_up 1"), "{text}");
    assert!(
        text.contains("edge_gw_cluster_node_agents{node=\"m2\"} 10"),
        "{text}"
    );
    // Every agent of the cluster, each with the master holding it.
    let up: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("edge_gw_agent_up{") && l.ends_with(" 1"))
        .collect();
    assert_eq!(up.len(), 30, "{up:?}");
    assert!(
        up.contains(&"edge_gw_agent_up{uuid=\"a04\",group=\"\",node=\"m1\"} 1"),
        "{up:?}"
    );
    assert!(
        up.contains(&"edge_gw_agent_up{uuid=\"a03\",group=\"\",node=\"m0\"} 1"),
        "{up:?}"
    );
}

#[test]
fn a_push_through_one_master_reaches_an_agent_on_another_once() {
    let dir = TempDir::new("cluster-push");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let f = masters("cluster-push", &[url.clone(), url.clone(), url]);
    let _a = f.agent(dir.path(), "far", &[2], 0);
    wait_on(f.m(0), "far", "m2");
    let id = push(f.m(0), "far", "hello").unwrap();
    wait_for(T, "the push to run once", || {
        (pushes_run(dir.path(), "far") == [id]).then_some(())
    });
    // And to all, through yet another master (once its view has the
    // agent: `*` means every agent that master knows of).
    wait_on(f.m(1), "far", "m2");
    let id2 = push(f.m(1), "*", "everyone").unwrap();
    wait_for(T, "the push to all", || {
        (pushes_run(dir.path(), "far") == [id, id2]).then_some(())
    });
    // Acked in Redis: nothing pending, so no resend after more ticks.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pushes_run(dir.path(), "far"), [id, id2]);
}

#[test]
fn pushes_pending_on_a_killed_master_are_delivered_once_by_the_survivors() {
    let dir = TempDir::new("cluster-kill");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let mut f = masters("cluster-kill", &[url.clone(), url.clone(), url]);
    let names: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    // Each agent prefers m2, then m0, then m1; its hook takes 0.2 s, so
    // ten pushes each are still pending when m2 dies.
    let _agents: Vec<Proc> = names
        .iter()
        .map(|n| f.agent(dir.path(), n, &[2, 0, 1], 200))
        .collect();
    for n in &names {
        wait_on(f.m(0), n, "m2");
    }
    let mut ids: Vec<Vec<u64>> = vec![Vec::new(); 10];
    for round in 0..10 {
        for (i, n) in names.iter().enumerate() {
            ids[i].push(push(f.m(0), n, &format!("p{round}")).unwrap());
        }
    }
    f.kill(2);
    for (i, n) in names.iter().enumerate() {
        wait_for(T, &format!("{n}'s ten pushes"), || {
            let mut got = pushes_run(dir.path(), n);
            got.sort();
            (got.len() >= 10).then_some(())
        });
        let mut got = pushes_run(dir.path(), n);
        got.sort();
        assert_eq!(got, ids[i], "{n}: every push exactly once");
    }
    // The views catch up within a tick of the new master (the dead one's
    // view lingers until its lease ends, but a newer epoch wins).
    for n in &names {
        wait_for(T, &format!("{n} shown on a survivor"), || {
            let p = placement(f.m(0));
            let node = p.iter().find(|(u, _)| u == n).map(|(_, node)| node.clone());
            matches!(node.as_deref(), Some("m0" | "m1")).then_some(())
        });
    }
    wait_for(T, "m2 shown as gone", || {
        let c = f.m(0).get("/api/cluster");
        c["nodes"]
            .as_array()?
            .iter()
            .any(|n| {
                // Gone, with when it was last seen.
                n["name"] == "m2"
                    && n["alive"] == false
                    && n["last_seen_unix_ms"].as_u64() > Some(0)
            })
            .then_some(())
    });
}

#[test]
fn a_push_survives_the_accepting_master_killed_after_its_202() {
    let dir = TempDir::new("cluster-accept-kill");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let mut f = masters("cluster-accept-kill", &[url.clone(), url]);
    let _a = f.agent(dir.path(), "dev", &[0], 0);
    wait_on(f.m(1), "dev", "m0");
    let id = push(f.m(1), "dev", "x").unwrap();
    f.kill(1);
    wait_for(T, "the push", || {
        (pushes_run(dir.path(), "dev") == [id]).then_some(())
    });
}

#[test]
fn redis_restarted_with_pushes_pending_loses_none() {
    let dir = TempDir::new("cluster-redis-restart");
    let Some(mut redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let f = masters("cluster-redis-restart", &[url.clone(), url]);
    let _a = f.agent(dir.path(), "slow", &[0], 500);
    wait_on(f.m(1), "slow", "m0");
    let ids: Vec<u64> = (0..6)
        .map(|i| push(f.m(1), "slow", &format!("{i}")).unwrap())
        .collect();
    // The accepting master shows the last one pending for its target,
    // though the agent is on the other master (Redis knows).
    let st = f.m(1).get(&format!("/api/pushes/{}", ids[5]));
    assert_eq!(st["source"], "cluster", "{st}");
    assert_eq!(st["targets"][0]["uuid"], "slow", "{st}");
    assert_eq!(st["targets"][0]["state"], "queued", "{st}");
    redis.kill();
    redis.restart();
    for m in [f.m(0), f.m(1)] {
        wait_for(T, "the masters to reconnect to Redis", || {
            (m.get("/api/cluster")["redis_up"] == true).then_some(())
        });
    }
    wait_for(T, "all six pushes", || {
        (pushes_run(dir.path(), "slow").len() >= 6).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut got = pushes_run(dir.path(), "slow");
    got.sort();
    assert_eq!(got, ids, "each exactly once");
}

#[test]
fn without_redis_agents_stay_and_pushes_get_503_until_it_is_back() {
    let dir = TempDir::new("cluster-redis-down");
    let Some(mut redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let f = masters("cluster-redis-down", &[url.clone(), url]);
    let _a = f.agent(dir.path(), "stay", &[0], 0);
    wait_on(f.m(1), "stay", "m0");
    let sessions = |m: &Master| m.get("/api/agents/stay")["counters"]["sessions"].as_u64();
    let before = sessions(f.m(0));
    redis.kill();
    wait_for(T, "edge_gw_cluster_up 0", || {
        f.m(0)
            .metrics()
            .contains("edge_gw_cluster_up 0")
            .then_some(())
    });
    let err = push(f.m(0), "stay", "x").unwrap_err();
    assert!(err.contains("503"), "{err}");
    // Past the lease the other master's view is no longer vouched for.
    wait_for(T, "m1 shown as not alive on m0", || {
        let c = f.m(0).get("/api/cluster");
        c["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["name"] == "m1" && n["alive"] == false)
            .then_some(())
    });
    // Heartbeats and reports go on: the agent keeps its session.
    let r0 = f.m(0).get("/api/agents/stay")["counters"]["reports"]
        .as_u64()
        .unwrap();
    f.m(0).wait_reports("stay", r0 + 2, T);
    assert_eq!(sessions(f.m(0)), before);
    redis.restart();
    wait_for(T, "edge_gw_cluster_up 1", || {
        f.m(0)
            .metrics()
            .contains("edge_gw_cluster_up 1")
            .then_some(())
    });
    let id = wait_for(T, "a push accepted again", || {
        push(f.m(1), "stay", "y").ok()
    });
    wait_for(T, "it delivered", || {
        pushes_run(dir.path(), "stay").contains(&id).then_some(())
    });
    assert_eq!(sessions(f.m(0)), before);
}

/// A TCP proxy to Redis that the test can cut: while cut, it closes
/// every connection and every new one at once.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (mut a, mut b) in [(s.try_clone().unwrap(), up.try_clone().unwrap()), (up, s)] {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        a.set_read_timeout(Some(Duration::from_millis(100)))
                            .unwrap();
                        let mut buf = [0u8; 16384];
                        loop {
                            if c.load(Ordering::SeqCst) {
                                let _ = a.shutdown(std::net::Shutdown::Both);
                                let _ = b.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match a.read(&mut buf) {
                                Ok(0) => {
                                    let _ = b.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                                Ok(n) => {
                                    if b.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Proxy { port, cut }
    }
}

#[test]
fn a_master_cut_off_from_redis_is_fenced_when_another_took_its_agent() {
    let dir = TempDir::new("cluster-partition");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let f = masters(
        "cluster-partition",
        &[format!("redis://127.0.0.1:{}/", proxy.port), redis.url()],
    );
    let old = f.agent(dir.path(), "dup", &[0], 0);
    wait_on(f.m(1), "dup", "m0");
    proxy.cut.store(true, Ordering::SeqCst);
    // Longer than the lease: m0's record and claims expire, m1 sees it gone.
    let lease = f.m(1).get("/api/cluster")["lease_ms"].as_u64().unwrap();
    wait_for(T, "m0 to expire in m1's view", || {
        let c = f.m(1).get("/api/cluster");
        c["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["name"] == "m0" && n["alive"] == false)
            .then_some(())
    });
    assert!(!placement(f.m(1)).iter().any(|(u, _)| u == "dup"));
    std::thread::sleep(Duration::from_millis(lease / 2));
    // A newer session of the same device joins m1 meanwhile.
    let dir2 = dir.path().join("second");
    std::fs::create_dir_all(&dir2).unwrap();
    let new = f.agent(&dir2, "dup", &[1], 0);
    wait_on(f.m(1), "dup", "m1");
    proxy.cut.store(false, Ordering::SeqCst);
    // m0 comes back, finds the claim taken and closes its session.
    wait_for(T, "m0 to fence its session", || {
        let c = f.m(0).get("/api/cluster");
        (c["counters"]["fenced"].as_u64()? >= 1).then_some(())
    });
    drop(old);
    // Never owned by both: every master shows it once, on m1.
    for k in 0..2 {
        wait_for(T, "one owner everywhere", || {
            let p = placement(f.m(k));
            let owners: Vec<_> = p.iter().filter(|(u, _)| u == "dup").collect();
            (owners.len() == 1 && owners[0].1 == "m1").then_some(())
        });
    }
    drop(new);
}

#[test]
fn reports_reach_subscribers_on_another_master() {
    use edge_gw::proto::v2::{Role, Scope};
    use edge_gw::session::agent::{AgentConfig, AgentEvent, AgentSession};
    use edge_gw::session::dedup::RecentIds;

    let dir = TempDir::new("cluster-fanout");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let f = masters("cluster-fanout", &[url.clone(), url]);
    // A v2 subscriber (plaintext) on m1.
    let mut s = TcpStream::connect(f.m(1).addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cfg = AgentConfig {
        uuid: edge_gw::proto::Uuid::from_text("watcher").unwrap(),
        role: Role::Subscriber,
        ..AgentConfig::default()
    };
    let mut sess = AgentSession::new(
        cfg,
        RecentIds::new(8),
        edge_gw::os::now(),
        &mut edge_gw::os::OsEntropy,
    );
    // A legacy v1 push subscriber on m1.
    let mut v1 = TcpStream::connect(f.m(1).addr()).unwrap();
    v1.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let legacy = |t, body: &[u8]| {
        plain_frame(
            edge_gw::proto::Version::V1,
            t,
            "0123456789abcdef0123456789abcdefL",
            body,
        )
    };
    v1.write_all(&legacy(
        edge_gw::proto::MsgType::Subscribe,
        br#"{"code":"x"}"#,
    ))
    .unwrap();
    // The reporters on m0: an agent (v2 reports) and a legacy client
    // (v1 reports, which legacy subscribers get, as on one master).
    let _a = f.agent(dir.path(), "src", &[0], 0);
    let mut v1_reporter = TcpStream::connect(f.m(0).addr()).unwrap();
    let reporter = |t, body: &[u8]| {
        plain_frame(
            edge_gw::proto::Version::V1,
            t,
            "legacy-reporter-0123456789abcdefX",
            body,
        )
    };
    v1_reporter
        .write_all(&reporter(edge_gw::proto::MsgType::Heartbeat, b""))
        .unwrap();
    let deadline = Instant::now() + T;
    let mut subscribed = false;
    let mut v2_seen = false;
    let mut v1_seen = false;
    let mut buf = vec![0u8; 1 << 16];
    let mut v1_bytes = Vec::new();
    while !(v2_seen && v1_seen) {
        assert!(
            Instant::now() < deadline,
            "v2 seen {v2_seen}, v1 seen {v1_seen}"
        );
        while let Some(out) = sess.poll_transmit() {
            s.write_all(&out).unwrap();
        }
        if let Ok(n) = s.read(&mut buf) {
            assert!(n > 0, "m1 closed the subscriber");
            sess.handle_input(&buf[..n], edge_gw::os::now());
        }
        sess.handle_timeout(edge_gw::os::now());
        while let Some(ev) = sess.poll_event() {
            match ev {
                AgentEvent::Connected { .. } if !subscribed => {
                    sess.subscribe(Scope::All).unwrap();
                    subscribed = true;
                }
                AgentEvent::Event(e) if e.agent.starts_with(b"src") => v2_seen = true,
                AgentEvent::Closed(c) => panic!("subscriber closed: {c:?}"),
                _ => {}
            }
        }
        if let Ok(n) = v1.read(&mut buf) {
            v1_bytes.extend_from_slice(&buf[..n]);
            v1_seen |= v1_bytes.windows(10).any(|w| w == b"src-legacy");
        }
        // The legacy clients keep their connections alive as PHP's did,
        // and the reporter reports.
        let _ = v1.write_all(&legacy(edge_gw::proto::MsgType::Heartbeat, b""));
        let _ = v1_reporter.write_all(&reporter(
            edge_gw::proto::MsgType::Report,
            br#"{"host":"src-legacy"}"#,
        ));
    }
}

#[test]
fn a_newer_session_on_another_master_replaces_the_old_one() {
    let dir = TempDir::new("cluster-replace");
    let Some(redis) = Redis::start(&dir) else {
        return;
    };
    let url = redis.url();
    let f = masters("cluster-replace", &[url.clone(), url]);
    let old = f.agent(dir.path(), "twin", &[0], 0);
    wait_on(f.m(1), "twin", "m0");
    // The same device (its key, its uuid) now connects to m1.
    let dir2 = dir.path().join("second");
    std::fs::create_dir_all(&dir2).unwrap();
    let new = f.agent(&dir2, "twin", &[1], 0);
    wait_for(T, "m0 to close the old session as replaced", || {
        old.log_text().contains("replaced").then_some(())
    });
    // Closed within a tick of the claim (its note, or the next confirm),
    // not after a lease ran out.
    let c = f.m(0).get("/api/cluster");
    assert!(c["counters"]["fenced"].as_u64() >= Some(1), "{c}");
    drop(old);
    wait_on(f.m(0), "twin", "m1");
    // An operator asking the wrong master is sent to the right one.
    let e = f
        .m(0)
        .try_request("DELETE", "/api/agents/twin", None)
        .unwrap_err();
    assert!(e.contains("409") && e.contains("m1"), "{e}");
    drop(new);
}
