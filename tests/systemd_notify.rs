//! systemd's `Type=notify` protocol as systemd would see it: the test binds
//! the notification socket itself (a path for the master, an abstract
//! `@name` for the agent), starts the real binary with `NOTIFY_SOCKET` and
//! a small `WATCHDOG_USEC`, and reads the datagrams: `READY=1` once the
//! role can serve, `WATCHDOG=1` again and again, `RELOADING=1` then
//! `READY=1` around a SIGHUP, `STOPPING=1` on SIGTERM. Every read is
//! bounded by a deadline.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, Master, Proc, TempDir, free_port, master_args};

const T: Duration = Duration::from_secs(30);
const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;
/// 200 ms: a ping every 100 ms, so two arrive quickly.
const WATCHDOG_USEC: &str = "200000";

/// Starts the binary with `args` and the notification environment.
fn spawn_notified(args: &[&str], notify: &str, log: std::path::PathBuf) -> Proc {
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .args(args)
        .env("EDGE_GW_LOG", "debug")
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    Proc { child, log }
}

/// Reads datagrams until one satisfies `want` or `limit` passes; returns
/// the datagrams read before it (the one wanted not included).
fn read_until(rx: &UnixDatagram, limit: Duration, want: &str, p: &Proc) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {want:?} within {limit:?}; got {seen:?}\n{}",
            p.log_text()
        );
        rx.set_read_timeout(Some(left)).unwrap();
        let Ok(n) = rx.recv(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == want) {
            return seen;
        }
        seen.push(msg);
    }
}

/// Two watchdog pings in a row, then SIGHUP's RELOADING=1 and READY=1,
/// then SIGTERM's STOPPING=1 and a clean exit.
fn watchdog_reload_stop(rx: &UnixDatagram, p: &mut Proc) {
    read_until(rx, T, "WATCHDOG=1", p);
    read_until(rx, T, "WATCHDOG=1", p);
    p.signal(SIGHUP);
    let before = read_until(rx, T, "RELOADING=1", p);
    assert!(
        before.iter().all(|m| m == "WATCHDOG=1"),
        "only pings before the reload: {before:?}"
    );
    read_until(rx, T, "READY=1", p);
    p.signal(SIGTERM);
    read_until(rx, T, "STOPPING=1", p);
    assert_eq!(p.wait_exit(T), Some(0), "{}", p.log_text());
}

#[test]
fn master_says_ready_after_binding_pings_the_watchdog_and_says_reloading_and_stopping() {
    let dir = TempDir::new("sdnotify-master");
    let sock = dir.path().join("notify");
    let rx = UnixDatagram::bind(&sock).unwrap();
    let state = dir.path().join("master");
    let http = free_port();
    let args = master_args(&state, free_port(), http);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m = spawn_notified(&args, sock.to_str().unwrap(), dir.path().join("master.log"));
    let before = read_until(&rx, T, "READY=1", &m);
    assert!(before.is_empty(), "nothing before READY=1: {before:?}");
    // Ready means usable: the PID file is there and the API answers.
    let pid = std::fs::read_to_string(state.join("master.pid")).unwrap();
    assert_eq!(pid.trim(), m.child.id().to_string());
    std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    watchdog_reload_stop(&rx, &mut m);
}

#[cfg(target_os = "linux")]
#[test]
fn agent_speaks_the_same_protocol_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let dir = TempDir::new("sdnotify-agent");
    let master = Master::start(&dir, &[]);
    let name = format!("edge-gw-test-notify-{}", std::process::id());
    let rx = UnixDatagram::bind_addr(
        &std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap(),
    )
    .unwrap();
    let state = dir.path().join("agent");
    let addr = master.addr();
    let key = master.fleet_key();
    let mut a = spawn_notified(
        &[
            "--agent",
            &addr,
            "--key-file",
            key.to_str().unwrap(),
            "--uuid",
            "notified",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &format!("@{name}"),
        dir.path().join("agent.log"),
    );
    read_until(&rx, T, "READY=1", &a);
    assert!(
        state.join("agent.sock").exists(),
        "the local socket is bound when the agent says ready"
    );
    watchdog_reload_stop(&rx, &mut a);
}
