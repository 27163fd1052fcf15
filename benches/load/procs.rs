//! The servers under load, each a child process started fresh for every
//! measurement and killed after it: the edge-gw master (the release
//! binary, with a temporary state directory), Mosquitto (with a generated
//! config on a free loopback port) and the bare echo server. Also what
//! /proc says about a process: resident memory and CPU time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net;

/// CPU time of a process, all threads: (utime + stime in clock ticks,
/// on-CPU nanoseconds from schedstat).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub ticks: u64,
    pub ns: u64,
}

impl Cpu {
    /// CPU seconds between two readings (schedstat if present, else ticks
    /// at the kernel's USER_HZ of 100).
    pub fn secs_since(&self, before: &Cpu) -> f64 {
        if self.ns > 0 {
            self.ns.saturating_sub(before.ns) as f64 / 1e9
        } else {
            self.ticks.saturating_sub(before.ticks) as f64 / 100.0
        }
    }
}

/// Reads `/proc/PID/stat` utime+stime and the threads' schedstat.
pub fn cpu(pid: u32) -> Cpu {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let mut ns = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Cpu { ticks, ns }
}

/// Busy CPU time of the whole machine (all cores), in seconds, from
/// /proc/stat: (tasks: user, nice, system, steal; interrupts: irq and
/// softirq). Loopback TCP is processed largely in softirq, which the
/// kernel charges to no process: it is the third party of every
/// measurement here.
pub fn machine_busy() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    (
        (get(0) + get(1) + get(2) + get(7)) as f64 / 100.0,
        (get(5) + get(6)) as f64 / 100.0,
    )
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A field of `/proc/PID/smaps_rollup` in KiB (`Pss`, `Private_Dirty`, ...).
pub fn rollup_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident memory in bytes.
pub fn rss(pid: u32) -> u64 {
    status_kib(pid, "VmRSS").unwrap_or(0) * 1024
}

/// Waits until the RSS of `pid` has not changed by more than 64 KiB for
/// 300 ms (at most `limit`), and returns it.
pub fn settled_rss(pid: u32, limit: Duration) -> u64 {
    let end = Instant::now() + limit;
    let mut last = rss(pid);
    let mut stable_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = rss(pid);
        if now.abs_diff(last) > 64 * 1024 {
            stable_since = Instant::now();
        }
        last = now;
        if stable_since.elapsed() >= Duration::from_millis(300) || Instant::now() > end {
            return now;
        }
    }
}

/// `TcpExtListenOverflows` from /proc/net/netstat: SYNs dropped because
/// a listen queue was full (a storm that outran `accept`).
pub fn listen_overflows() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    if lines.len() < 2 {
        return 0;
    }
    let names = lines[0].split_whitespace();
    let values = lines[1].split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(base: &Path, name: &str) -> Result<TempDir, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = base.join(format!("edge-gw-load-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process, killed and reaped on drop.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    // Last, so the directory goes after the process.
    pub _dir: TempDir,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Err(format!("{} exited ({st}): {}", self.name, self.log_tail())),
            _ => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let f = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))
}

/// How to start a master.
#[derive(Clone, Debug)]
pub struct MasterOpts {
    pub bin: PathBuf,
    /// Where the temporary state directory goes (disk or tmpfs).
    pub base: PathBuf,
    /// Compress frames to agents and subscribers.
    pub compress: bool,
    /// `--threads`; `None`: the master's default.
    pub threads: Option<usize>,
    /// `handshakes_per_ip`; `None`: the master's default.
    pub per_ip: Option<u32>,
    /// Join a cluster (`--cluster`); `None`: a standalone master.
    pub cluster: Option<ClusterOpts>,
    /// `heartbeat` in seconds; `None`: 60, so idle clients are never
    /// evicted during a run. A cluster master refreshes Redis twice per
    /// heartbeat (at most every 5 s).
    pub heartbeat: Option<u32>,
}

/// How a master joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// The Redis URL (`cluster = ...` in the config file).
    pub url: String,
    /// `node_name`, unique in the cluster.
    pub node: String,
    /// Another master's state directory whose `fleet.key` and `keyring`
    /// this one starts with: every master of a cluster shares them, as
    /// an operator copies them (docs/cluster.md).
    pub seed: Option<PathBuf>,
}

/// A running master with what a client needs from its state directory.
pub struct Master {
    pub server: Server,
    pub http: String,
    pub token: String,
    /// The fleet key: valid for every agent uuid.
    pub psk: [u8; 32],
}

impl Master {
    pub fn start(o: &MasterOpts) -> Result<Master, String> {
        let dir = TempDir::new(&o.base, "master")?;
        let port = net::free_port().map_err(|e| e.to_string())?;
        let http_port = net::free_port().map_err(|e| e.to_string())?;
        let state = dir.0.join("state");
        let config = dir.0.join("master.toml");
        let mut cluster = String::new();
        if let Some(c) = &o.cluster {
            cluster = format!("cluster = \"{}\"\nnode_name = \"{}\"\n", c.url, c.node);
            if let Some(seed) = &c.seed {
                std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
                for f in ["fleet.key", "keyring"] {
                    std::fs::copy(seed.join(f), state.join(f))
                        .map_err(|e| format!("seeding {f} from {}: {e}", seed.display()))?;
                }
            }
        }
        // Plaintext and legacy sessions allowed (the variants need them);
        // long heartbeat and miss limit so idle clients are not evicted
        // during a run; the rest as shipped.
        let toml = format!(
            "listen = [\"127.0.0.1:{port}\"]\nhttp = \"127.0.0.1:{http_port}\"\nstate_dir = \"{}\"\n\
             allow_plaintext = true\nlegacy_v1 = true\nheartbeat = {}\nmiss_limit = 10\n\
             handshake_timeout = 60\nmax_connections = 100000\ncompress = {}\n{}{}{cluster}",
            state.display(),
            o.heartbeat.unwrap_or(60),
            o.compress,
            o.threads
                .map(|t| format!("threads = {t}\n"))
                .unwrap_or_default(),
            o.per_ip
                .map(|r| format!("handshakes_per_ip = {r}\n"))
                .unwrap_or_default()
        );
        std::fs::write(&config, toml).map_err(|e| e.to_string())?;
        let log = dir.0.join("master.log");
        let mut cmd = Command::new(&o.bin);
        cmd.arg("--master").arg("--config").arg(&config);
        let child = spawn("edge-gw --master", &mut cmd, &log)?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut server = Server {
            name: "edge-gw master",
            child,
            addr,
            log,
            _dir: dir,
        };
        let token_file = state.join("api.token");
        let end = Instant::now() + Duration::from_secs(20);
        let token = loop {
            server.check_alive()?;
            if let Ok(t) = std::fs::read_to_string(&token_file)
                && t.ends_with('\n')
            {
                break t.trim().to_string();
            }
            if Instant::now() > end {
                return Err(format!("master did not start: {}", server.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        net::wait_listening(addr, Duration::from_secs(20))?;
        let http = format!("127.0.0.1:{http_port}");
        let key = edge_gw::keys::AgentKey::load(&state.join("fleet.key"))
            .map_err(|e| format!("fleet key: {e}"))?;
        let psk = *key.psk.as_bytes();
        let m = Master {
            server,
            http,
            token,
            psk,
        };
        // Wait for the API too (the push scenario uses it).
        let end = Instant::now() + Duration::from_secs(20);
        while m.api("GET", "/api/status", None).is_err() {
            if Instant::now() > end {
                return Err("master API did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(m)
    }

    /// One API request (the project's own client).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        edge_gw::cli::api_client::request(&self.http, &self.token, method, path, body)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.server._dir.0.join("state")
    }
}

/// Starts Mosquitto on a free loopback port, logging connections as the
/// master does (to a file), without persistence, Nagle off like the
/// master's sockets.
pub fn mosquitto(bin: &Path, base: &Path) -> Result<Server, String> {
    let dir = TempDir::new(base, "mosquitto")?;
    let port = net::free_port().map_err(|e| e.to_string())?;
    let log = dir.0.join("mosquitto.log");
    let conf = dir.0.join("mosquitto.conf");
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
         max_connections -1\nset_tcp_nodelay true\nuser root\n\
         log_dest file {}\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
         connection_messages true\nlog_timestamp true\n",
        log.display()
    );
    std::fs::write(&conf, text).map_err(|e| e.to_string())?;
    let child = spawn(
        "mosquitto",
        Command::new(bin).arg("-c").arg(&conf),
        &dir.0.join("stderr.log"),
    )?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut s = Server {
        name: "mosquitto",
        child,
        addr,
        log,
        _dir: dir,
    };
    if let Err(e) = net::wait_listening(addr, Duration::from_secs(10)) {
        s.check_alive()?;
        return Err(e);
    }
    Ok(s)
}

/// Starts the bare echo server: this binary again, with `--serve-echo`.
pub fn echo(threads: usize, base: &Path) -> Result<Server, String> {
    let dir = TempDir::new(base, "echo")?;
    let port = net::free_port().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = dir.0.join("echo.log");
    let child = spawn(
        "echo server",
        Command::new(exe)
            .arg("--serve-echo")
            .arg(port.to_string())
            .arg(threads.to_string()),
        &log,
    )?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut s = Server {
        name: "echo",
        child,
        addr,
        log,
        _dir: dir,
    };
    if let Err(e) = net::wait_listening(addr, Duration::from_secs(10)) {
        s.check_alive()?;
        return Err(e);
    }
    Ok(s)
}

/// Starts a real agent process against `master`, reporting every second.
pub fn agent(bin: &Path, master: &Master, base: &Path) -> Result<Server, String> {
    let dir = TempDir::new(base, "agent")?;
    let log = dir.0.join("agent.log");
    let key = master.state_dir().join("fleet.key");
    let mut cmd = Command::new(bin);
    cmd.arg("--agent")
        .arg(master.server.addr.to_string())
        .arg("--key-file")
        .arg(&key)
        .arg("--uuid")
        .arg("footprint-1")
        .arg("--interval")
        .arg("1")
        .arg("--state-dir")
        .arg(dir.0.join("state"));
    let child = spawn("edge-gw --agent", &mut cmd, &log)?;
    Ok(Server {
        name: "edge-gw agent",
        child,
        addr: master.server.addr,
        log,
        _dir: dir,
    })
}
