//! A master that cannot bind its ports fails before it writes anything:
//! no fleet key, keyring or API token left behind for a master that never
//! ran (the README's try-out tells users to check the ports first).

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{Proc, TempDir, free_port};

#[test]
fn busy_port_fails_before_the_state_dir_is_written() {
    let dir = TempDir::new("busyport");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let http = format!("127.0.0.1:{}", free_port());
    let state = dir.path().join("master");
    let mut m = Proc::spawn(
        &[
            "--master",
            "--listen",
            &listen,
            "--http",
            &http,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        dir.path().join("master.log"),
    );
    assert_eq!(m.wait_exit(Duration::from_secs(30)), Some(1));
    let log = m.log_text();
    assert!(log.contains(&format!("cannot listen on {listen}")), "{log}");
    for file in ["fleet.key", "keyring", "api.token", "master.pid"] {
        assert!(
            !state.join(file).exists(),
            "{file} written by a master that never ran"
        );
    }
}

/// `--threads` defaults to the CPUs the process may use: pinned to one
/// CPU (as a cgroup quota or `taskset` would), the master runs one
/// shard thread.
#[test]
fn default_threads_follow_the_cpus_the_process_may_use() {
    let dir = TempDir::new("threads");
    let state = dir.path().join("master");
    let log = dir.path().join("master.log");
    /// Killed however the test ends: a master left running would hold
    /// cargo test's output open.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = std::process::Command::new("taskset")
        .args(["-c", "0", support::BIN, "--master", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--http")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--state-dir")
        .arg(&state)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("taskset (util-linux)");
    let child = Killed(child);
    let said = support::wait_for(Duration::from_secs(20), "the thread count line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("shard thread(s)"))
            .map(str::to_string)
    });
    drop(child);
    assert!(said.contains(" 1 shard thread(s)"), "{said}");
}
