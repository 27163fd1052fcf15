//! Real processes on loopback for the end-to-end tests: a master and
//! agents started from the built binary, with temporary state directories,
//! killed when dropped. Every wait is bounded.

#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod legacy;

pub const BIN: &str = env!("CARGO_BIN_EXE_edge-gw");

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("edge-gw-e2e-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Kept for a post-mortem when asked (logs of masters and agents).
        if std::env::var_os("EDGE_GW_KEEP_TEST_DIRS").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit`
/// naming `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process, killed on drop; its stderr goes to a file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[&str], log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .env("EDGE_GW_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Sends a signal (by number) to the process.
    pub fn signal(&self, sig: i32) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for exit up to `limit`; returns the exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A master process on loopback.
pub struct Master {
    pub proc: Proc,
    pub port: u16,
    pub http: u16,
    pub state: PathBuf,
    pub token: String,
}

impl Master {
    /// Starts a master with `extra` arguments on fresh ports.
    pub fn start(dir: &TempDir, extra: &[&str]) -> Master {
        Self::start_on(dir, free_port(), free_port(), extra)
    }

    /// Starts (or restarts) a master on the given ports.
    pub fn start_on(dir: &TempDir, port: u16, http: u16, extra: &[&str]) -> Master {
        let state = dir.path().join("master");
        let base = master_args(&state, port, http);
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let n = std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let proc = Proc::spawn(&args, dir.path().join(format!("master-{n}.log")));
        let token_file = state.join("api.token");
        let token = wait_for(Duration::from_secs(10), "the master's API token", || {
            std::fs::read_to_string(&token_file)
                .ok()
                .filter(|t| t.ends_with('\n'))
        });
        let m = Master {
            proc,
            port,
            http,
            state,
            token: token.trim().to_string(),
        };
        wait_for(Duration::from_secs(10), "the master's HTTP API", || {
            m.try_get("/api/status").ok()
        });
        m
    }

    /// Makes a per-device key for `uuid` with `edge-gw keygen` (appended
    /// to this master's keyring), has the master reload its keyring with
    /// SIGHUP, waits until it has, and returns the agent's key file.
    pub fn enrol(&self, dir: &TempDir, uuid: &str) -> PathBuf {
        let key = dir.path().join(format!("{uuid}.key"));
        let keyring = self.state.join("keyring");
        keygen(uuid, &key, &keyring);
        let keys = std::fs::read_to_string(&keyring)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        self.proc.signal(1); // SIGHUP: reload the keyring
        wait_for(Duration::from_secs(30), "the keyring reload", || {
            self.proc
                .log_text()
                .contains(&format!("reload: keyring has {keys} keys"))
                .then_some(())
        });
        key
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn fleet_key(&self) -> PathBuf {
        self.state.join("fleet.key")
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        edge_gw::cli::api_client::request(
            &format!("127.0.0.1:{}", self.http),
            &self.token,
            method,
            path,
            body,
        )
    }

    pub fn try_get(&self, path: &str) -> Result<Value, String> {
        self.try_request("GET", path, None)
    }

    pub fn get(&self, path: &str) -> Value {
        self.try_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn push(&self, to: &str, text: &str) -> u64 {
        let v = self
            .try_request(
                "POST",
                "/api/push",
                Some(&serde_json::json!({ "to": to, "body": text })),
            )
            .unwrap_or_else(|e| panic!("push: {e}"));
        v["id"].as_u64().unwrap()
    }

    /// The agent's JSON, once it exists.
    pub fn agent(&self, uuid: &str) -> Option<Value> {
        self.try_get(&format!("/api/agents/{uuid}")).ok()
    }

    /// Waits until `uuid` is online with at least `reports` reports.
    pub fn wait_reports(&self, uuid: &str, reports: u64, limit: Duration) -> Value {
        wait_for(limit, &format!("{reports} reports from {uuid}"), || {
            self.agent(uuid).filter(|a| {
                a["online"] == true && a["counters"]["reports"].as_u64().unwrap_or(0) >= reports
            })
        })
    }

    pub fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).unwrap();
        use std::io::Write;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

/// `edge-gw --master` on loopback ports `port` (agents) and `http`, its
/// state in `state`: the arguments every test master starts with.
pub fn master_args(state: &Path, port: u16, http: u16) -> Vec<String> {
    vec![
        "--master".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--state-dir".into(),
        state.to_str().unwrap().into(),
    ]
}

/// Makes a per-device key for `uuid` with `edge-gw keygen`: the key file
/// `key`, its entry appended to `keyring`.
pub fn keygen(uuid: &str, key: &Path, keyring: &Path) {
    let st = std::process::Command::new(BIN)
        .args(["keygen", "--uuid", uuid, "--out"])
        .arg(key)
        .arg("--keyring")
        .arg(keyring)
        .status()
        .unwrap();
    assert!(st.success(), "keygen for {uuid}");
}

/// Starts an agent process on `master`.
pub fn agent(dir: &TempDir, name: &str, master: &Master, extra: &[&str]) -> Proc {
    agent_on(dir.path(), name, &master.addr(), &master.fleet_key(), extra)
}

/// Starts agent `name` on `masters` (as `--agent` takes them: one
/// `HOST:PORT` or several, comma-separated) with `key`, reporting every
/// second, its state in `dir/agent-NAME`, its log in `dir`.
pub fn agent_on(dir: &Path, name: &str, masters: &str, key: &Path, extra: &[&str]) -> Proc {
    let state = dir.join(format!("agent-{name}"));
    let mut args = vec![
        "--agent",
        masters,
        "--key-file",
        key.to_str().unwrap(),
        "--uuid",
        name,
        "--interval",
        "1",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(&args, dir.join(format!("agent-{name}-{n}.log")))
}

/// One unsealed, uncompressed frame of any version, type and uuid, made by
/// the library's encoder (the raw-bytes tests build theirs by hand in
/// `legacy.rs`).
pub fn plain_frame(
    version: edge_gw::proto::Version,
    t: edge_gw::proto::MsgType,
    uuid: &str,
    body: &[u8],
) -> Vec<u8> {
    frame_for(
        version,
        t,
        edge_gw::proto::Uuid::from_text(uuid).unwrap(),
        body,
    )
}

/// [`plain_frame`] for any uuid, the all-zero one included.
pub fn frame_for(
    version: edge_gw::proto::Version,
    t: edge_gw::proto::MsgType,
    uuid: edge_gw::proto::Uuid,
    body: &[u8],
) -> Vec<u8> {
    use edge_gw::proto::frame::{Compress, Encode, encode};
    encode(
        &Encode {
            version,
            msg_type: t,
            uuid,
            compress: Compress::Never,
            v1_cipher_flag: false,
            max_frame: 1 << 20,
        },
        body,
        None,
    )
    .unwrap()
}
