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
