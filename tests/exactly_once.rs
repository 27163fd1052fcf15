//! Exactly once to the consumer, in every crash and restart order of a real
//! master and a real agent (hardening item 5: a 202 push delivered twice).
//!
//! The `--on-push` hook appends `EDGE_GW_PUSH_ID` to `runs` when it starts,
//! sleeps about 2 s (the window to kill things in), and appends it to `done`
//! when it ends. Every test asserts that `runs` names the push once, after
//! the master says the push is delivered: a second run would start before
//! its ack, so it would show by then. SIGKILL is [`Proc::kill9`]; a hook
//! outlives an agent killed that way, as it does on a router. The one
//! test that expects two runs is the documented one: a clean stop kills a
//! hook that outlasts the shutdown, which counts as not taken.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(40);
const UUID: &str = "once-1";

/// One master and one agent on fixed ports, either of which may be down.
struct Rig {
    dir: TempDir,
    port: u16,
    http: u16,
    config: PathBuf,
    master: Option<Master>,
    agent: Option<Proc>,
    /// `--on-push` command, or `None` for an `edge-gw inbox` consumer.
    hook: Option<String>,
}

impl Rig {
    /// A rig whose hook sleeps `hook_secs` (`None`: no hook, pushes wait
    /// for `edge-gw inbox`).
    fn new(name: &str, hook_secs: Option<u32>) -> Rig {
        let dir = TempDir::new(name);
        let config = dir.path().join("master.toml");
        // Resend unacked pushes every second, heartbeats every second: a
        // test never waits on the 30 s defaults.
        std::fs::write(&config, "push_resend = 1\nheartbeat = 1\n").unwrap();
        let hook = hook_secs.map(|secs| {
            format!(
                "echo \"$EDGE_GW_PUSH_ID\" >> {runs}; sleep {secs}; echo \"$EDGE_GW_PUSH_ID\" >> {done}",
                runs = dir.path().join("runs").display(),
                done = dir.path().join("done").display()
            )
        });
        let mut rig = Rig {
            port: free_port(),
            http: free_port(),
            dir,
            config,
            master: None,
            agent: None,
            hook,
        };
        rig.start_master();
        rig.start_agent();
        rig.master().wait_reports(UUID, 1, T);
        rig
    }

    fn master(&self) -> &Master {
        self.master.as_ref().expect("the master is up")
    }

    fn start_master(&mut self) {
        let cfg = self.config.to_str().unwrap().to_string();
        self.master = Some(Master::start_on(
            &self.dir,
            self.port,
            self.http,
            &["--config", &cfg],
        ));
    }

    /// Starts the agent; the master may be down (it keeps retrying).
    fn start_agent(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let key = self.dir.path().join("master").join("fleet.key");
        let state = self.state();
        let mut args = vec![
            "--agent",
            &addr,
            "--key-file",
            key.to_str().unwrap(),
            "--uuid",
            UUID,
            "--interval",
            "1",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        if let Some(h) = &self.hook {
            args.extend_from_slice(&["--on-push", h]);
        }
        let n = std::fs::read_dir(self.dir.path()).map_or(0, |d| d.count());
        self.agent = Some(Proc::spawn(
            &args,
            self.dir.path().join(format!("agent-{n}.log")),
        ));
    }

    fn kill_master(&mut self) {
        if let Some(mut m) = self.master.take() {
            m.proc.kill9();
        }
    }

    fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill9();
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("agent-state")
    }

    fn agent_log(&self) -> String {
        self.agent.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Ids the hook appended to `file` (`runs` or `done`).
    fn ids(&self, file: &str) -> Vec<u64> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn wait_file_has(&self, file: &str, id: u64) {
        wait_for(T, &format!("push {id} in {file}"), || {
            self.ids(file).contains(&id).then_some(())
        });
    }

    /// Waits until the agent logged that the hook's outcome is recorded.
    fn wait_recorded(&self, id: u64) {
        let line = format!("push {id} delivered to the hook");
        wait_for(T, &line, || self.agent_log().contains(&line).then_some(()));
    }

    fn wait_delivered(&self, id: u64) {
        wait_for(T, &format!("push {id} delivered"), || {
            let st = self.master().get(&format!("/api/pushes/{id}"));
            (st["targets"][0]["state"] == "delivered").then_some(())
        });
    }

    /// Waits until the restarted agent was sent the push and held it.
    fn wait_held(&self, id: u64) {
        let line = format!("push {id}: held until RESOLVE");
        wait_for(T, &line, || self.agent_log().contains(&line).then_some(()));
        assert!(
            self.request("STATUS").ends_with(" interrupted=1"),
            "{}",
            self.request("STATUS")
        );
    }

    /// One request line on the agent's local socket; the answer line.
    fn request(&self, line: &str) -> String {
        let mut s = UnixStream::connect(self.state().join("agent.sock")).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        writeln!(s, "{line}").unwrap();
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).unwrap();
        answer.trim().to_string()
    }

    /// Pushes one message and waits until its hook is running.
    fn push_and_wait_hook(&self) -> u64 {
        let id = self.master().push(UUID, "once");
        self.wait_file_has("runs", id);
        id
    }

    fn assert_ran_once(&self, id: u64) {
        assert_eq!(self.ids("runs"), [id], "{}", self.agent_log());
    }
}

#[test]
fn master_killed_during_the_hook_comes_back() {
    let mut r = Rig::new("m-hook", Some(2));
    let id = r.push_and_wait_hook();
    r.kill_master();
    r.wait_recorded(id);
    r.start_master();
    r.wait_delivered(id);
    r.assert_ran_once(id);
}

#[test]
fn master_killed_during_the_hook_agent_killed_before_the_ack_agent_first() {
    let mut r = Rig::new("m-a-am", Some(2));
    let id = r.push_and_wait_hook();
    r.kill_master();
    // The hook finished while the master was away: the ack never left.
    r.wait_recorded(id);
    r.kill_agent();
    r.start_agent();
    r.start_master();
    r.wait_delivered(id);
    r.assert_ran_once(id);
    let a = r.master().agent(UUID).unwrap();
    assert_eq!(a["counters"]["pushes_duplicate"], 1, "{a}");
}

#[test]
fn master_killed_during_the_hook_agent_killed_before_the_ack_master_first() {
    let mut r = Rig::new("m-a-ma", Some(2));
    let id = r.push_and_wait_hook();
    r.kill_master();
    r.wait_recorded(id);
    r.kill_agent();
    r.start_master();
    r.start_agent();
    r.wait_delivered(id);
    r.assert_ran_once(id);
}

#[test]
fn master_killed_during_the_hook_agent_stopped_cleanly_after_it() {
    let mut r = Rig::new("m-term", Some(2));
    let id = r.push_and_wait_hook();
    r.kill_master();
    r.wait_recorded(id);
    let mut a = r.agent.take().unwrap();
    a.signal(15);
    assert_eq!(a.wait_exit(T), Some(0));
    r.start_agent();
    r.start_master();
    r.wait_delivered(id);
    r.assert_ran_once(id);
}

#[test]
fn agent_stopped_cleanly_during_a_long_hook_runs_it_again() {
    // The hook outlasts the 2 s shutdown: it is killed, and like a hook
    // that timed out it counts as not taken, so it is not held.
    let mut r = Rig::new("a-term", Some(30));
    let id = r.push_and_wait_hook();
    let mut a = r.agent.take().unwrap();
    a.signal(15);
    assert_eq!(a.wait_exit(T), Some(0));
    assert!(
        a.log_text()
            .contains(&format!("push {id}: hook stopped by the shutdown"))
    );
    r.start_agent();
    wait_for(T, "the hook's second run", || {
        (r.ids("runs") == [id, id]).then_some(())
    });
    assert!(r.request("STATUS").ends_with(" interrupted=0"));
    // A clean stop again, so the second run is killed too, not orphaned.
    let mut a = r.agent.take().unwrap();
    a.signal(15);
    assert_eq!(a.wait_exit(T), Some(0));
    assert!(r.ids("done").is_empty(), "both runs were killed");
}

#[test]
fn agent_killed_during_the_hook_holds_the_push_until_resolved() {
    let mut r = Rig::new("a-hook", Some(2));
    let id = r.push_and_wait_hook();
    r.kill_agent();
    // The hook outlives the agent and finishes.
    r.wait_file_has("done", id);
    r.start_agent();
    r.wait_held(id);
    r.assert_ran_once(id);
    assert_eq!(r.request(&format!("RESOLVE {id} delivered")), "OK");
    r.wait_delivered(id);
    r.assert_ran_once(id);
    assert!(r.request("STATUS").ends_with(" interrupted=0"));
}

#[test]
fn both_killed_during_the_hook_agent_first() {
    let mut r = Rig::new("b-am", Some(2));
    let id = r.push_and_wait_hook();
    r.kill_master();
    r.kill_agent();
    r.wait_file_has("done", id);
    r.start_agent();
    r.start_master();
    r.wait_held(id);
    r.assert_ran_once(id);
    assert_eq!(r.request(&format!("RESOLVE {id} delivered")), "OK");
    r.wait_delivered(id);
    r.assert_ran_once(id);
}

#[test]
fn both_killed_during_the_hook_master_first_then_the_operator_retries() {
    let mut r = Rig::new("b-ma", Some(2));
    let id = r.push_and_wait_hook();
    r.kill_agent();
    r.kill_master();
    r.wait_file_has("done", id);
    r.start_master();
    r.start_agent();
    r.wait_held(id);
    r.assert_ran_once(id);
    assert!(r.request("RESOLVE 999 delivered").starts_with("ERR"));
    // The operator found the hook's work undone and asks for another run:
    // the only way a hook runs twice for one push id.
    assert_eq!(r.request(&format!("RESOLVE {id} retry")), "OK");
    r.wait_delivered(id);
    assert_eq!(r.ids("runs"), [id, id]);
}

#[test]
fn inbox_reader_answered_ok_never_sees_the_push_again() {
    let mut r = Rig::new("inbox", None);
    let id = r.master().push(UUID, "via the socket");
    wait_for(T, "the push in the inbox", || {
        r.request("STATUS").contains(" inbox=1 ").then_some(())
    });
    r.kill_master();
    let take = |state: &PathBuf| {
        std::process::Command::new(BIN)
            .arg("inbox")
            .arg("--state-dir")
            .arg(state)
            .output()
            .unwrap()
    };
    let got = take(&r.state());
    assert!(got.status.success(), "{got:?}");
    assert_eq!(got.stdout, b"via the socket\n", "text ends with a newline");
    // Taken while the master was away: the ack never left.
    r.kill_agent();
    r.start_agent();
    r.start_master();
    r.wait_delivered(id);
    assert_eq!(take(&r.state()).status.code(), Some(4), "inbox empty");
    let a = r.master().agent(UUID).unwrap();
    assert_eq!(a["counters"]["pushes_duplicate"], 1, "{a}");
}
