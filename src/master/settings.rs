//! The master's settings: defaults, then the TOML config file, then the
//! command line (which wins). Every key of the file is documented in the
//! README's configuration table; unknown keys are an error, so a typo is
//! never silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::options::MasterOptions;

/// Fully resolved master settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Agent listener addresses.
    pub listen: Vec<String>,
    /// HTTP (API, metrics, dashboard) address.
    pub http: String,
    /// State directory (fleet key, keyring, API token, push log).
    pub state_dir: PathBuf,
    /// Keyring file.
    pub keyring: PathBuf,
    /// Accept legacy v1 connections.
    pub legacy_v1: bool,
    /// Silence after which a v1 connection is closed: the original's
    /// idle time (~150 s), so clients written for it are not dropped by
    /// the v2 heartbeat rule.
    pub legacy_idle_timeout: Duration,
    /// Accept unencrypted v2 sessions.
    pub allow_plaintext: bool,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Missed heartbeats before eviction.
    pub miss_limit: u32,
    /// Time allowed for a handshake.
    pub handshake_timeout: Duration,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// New connections per second allowed from one IP (burst: 4×). Many
    /// devices may share one address (NAT, carrier-grade NAT): the
    /// default lets 4,000 reconnect at once and 10,000 within ~20 s
    /// (`BENCHMARKS.md`, scenario `nat`).
    pub handshakes_per_ip: u32,
    /// Largest frame.
    pub max_frame: u32,
    /// Per-connection send queue: frames.
    pub send_queue_frames: usize,
    /// Per-connection send queue: bytes.
    pub send_queue_bytes: usize,
    /// A write stalled this long closes the connection (slow consumer):
    /// agents and HTTP clients alike, so a client that stops reading
    /// cannot hold a socket and its buffers for ever.
    pub write_timeout: Duration,
    /// Time allowed for a whole HTTP request (head and body), counted
    /// from the connection's accept or, on a kept-alive connection, from
    /// the request's first byte. A deadline for the whole request, not an
    /// idle timer, so a client sending a byte every few seconds
    /// (slowloris) still loses its slot.
    pub http_request_timeout: Duration,
    /// Most simultaneous HTTP connections: bounds the file descriptors
    /// the HTTP side can take from the agents.
    pub http_max_connections: usize,
    /// Most simultaneous HTTP connections from one IP, so one client
    /// cannot take every HTTP slot and lock operators out.
    pub http_per_ip: usize,
    /// Per-agent push queue: messages.
    pub outbox_messages: usize,
    /// Per-agent push queue: bytes.
    pub outbox_bytes: usize,
    /// Unacked pushes in flight per agent.
    pub outbox_in_flight: usize,
    /// Resend an unacked push after this long.
    pub push_resend: Duration,
    /// Most push results (one per agent and push) kept for the API; the
    /// oldest are dropped from memory and compacted out of the push log.
    pub push_results_keep: usize,
    /// Push results older than this are dropped the same way (the push
    /// log must not grow with every answer forever).
    pub push_results_max_age: Duration,
    /// Most result output bytes stored per agent: a misbehaving agent's
    /// flood of large results is refused and counted past it.
    pub push_results_agent_bytes: usize,
    /// Compress frames to agents when smaller.
    pub compress: bool,
    /// Worker threads (default: [`default_threads`]).
    pub threads: usize,
    /// Drop privileges to this user after binding.
    pub user: Option<String>,
    /// Let a keyring reload revoke every key at once (an empty keyring, or
    /// one that keeps none of the current keys). Off: such a reload is
    /// refused and logged, because a truncated or wrong file would
    /// otherwise drop the whole fleet. Set it for the one reload that
    /// means it (e.g. rotating the fleet key), then unset it.
    pub keyring_revoke_all: bool,
    /// Bytes peers may make the master hold in partial frames, send
    /// queues and kept health bodies, all connections together (see
    /// `master::budget`). Without it a flood of connections each holding a
    /// partial frame, or of legacy uuids each leaving a large report, grows
    /// memory without bound.
    pub memory_budget: usize,
    /// Largest legacy health body kept as an agent's latest (longer ones
    /// are cut; the whole report is still fanned out): a legacy client is
    /// unauthenticated, so what it leaves behind must be small.
    pub max_health_body: usize,
    /// How long an offline legacy v1 agent is remembered after it was last
    /// heard. Legacy uuids are unauthenticated and free to invent: without
    /// this every one ever seen would be kept for the life of the master.
    pub legacy_retention: Duration,
    /// The cluster this master serves with others, if any
    /// (`docs/cluster.md`).
    pub cluster: Option<ClusterSettings>,
    /// The config file these came from, for SIGHUP reloads.
    pub config_file: Option<PathBuf>,
    /// `log_level` from the config file: the level when neither the
    /// command line nor `$EDGE_GW_LOG` sets one, so a service's level can
    /// live with its other settings and change on SIGHUP.
    pub log_level: Option<log::LevelFilter>,
}

/// The config file: every key optional, names as the long flags with `-`
/// written `_`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Vec<String>>,
    http: Option<String>,
    state_dir: Option<PathBuf>,
    keyring: Option<PathBuf>,
    legacy_v1: Option<bool>,
    legacy_idle_timeout: Option<u32>,
    allow_plaintext: Option<bool>,
    heartbeat: Option<u32>,
    miss_limit: Option<u32>,
    handshake_timeout: Option<u32>,
    max_connections: Option<usize>,
    handshakes_per_ip: Option<u32>,
    max_frame: Option<u32>,
    send_queue_frames: Option<usize>,
    send_queue_bytes: Option<usize>,
    write_timeout: Option<u32>,
    http_request_timeout: Option<u32>,
    http_max_connections: Option<usize>,
    http_per_ip: Option<usize>,
    outbox_messages: Option<usize>,
    outbox_bytes: Option<usize>,
    outbox_in_flight: Option<usize>,
    push_resend: Option<u32>,
    push_results_keep: Option<usize>,
    push_results_max_age: Option<u32>,
    push_results_agent_bytes: Option<usize>,
    compress: Option<bool>,
    threads: Option<usize>,
    user: Option<String>,
    keyring_revoke_all: Option<bool>,
    memory_budget: Option<usize>,
    max_health_body: Option<usize>,
    legacy_retention: Option<u32>,
    log_level: Option<String>,
    cluster: Option<String>,
    node_name: Option<String>,
    cluster_password_file: Option<PathBuf>,
}

/// How this master joins a cluster.
#[derive(Clone, PartialEq)]
pub struct ClusterSettings {
    /// The Redis URL, password included when it came from the config file
    /// or `cluster_password_file` (never shown: see `Debug`).
    pub url: String,
    /// This master's name, unique in the cluster.
    pub node: String,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: settings are logged at debug level.
        f.debug_struct("ClusterSettings")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Resolves the cluster settings: the URL from the command line (which
/// must not carry a password: a command line is visible to every local
/// user in `ps`) or the file, the password from `cluster_password_file`
/// if given, the node name from the command line, the file or the host
/// name.
fn cluster_settings(opts: &MasterOptions, file: &File) -> Result<Option<ClusterSettings>, String> {
    let url = match (&opts.cluster, &file.cluster) {
        (Some(u), _) => {
            if url_has_password(u) {
                return Err(
                    "--cluster: the URL carries a password, which every local user can read in `ps`; put it in cluster_password_file (or the whole URL in the config file's `cluster`)"
                        .into(),
                );
            }
            u.clone()
        }
        (None, Some(u)) => u.clone(),
        (None, None) => return Ok(None),
    };
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://"))
    {
        return Err(format!(
            "cluster: expected a redis:// URL, got {:?}",
            url.split('@').next_back().unwrap_or("")
        ));
    }
    let url = match &file.cluster_password_file {
        Some(p) => {
            let pw = std::fs::read_to_string(p)
                .map_err(|e| format!("cluster_password_file {}: {e}", p.display()))?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                return Err(format!("cluster_password_file {} is empty", p.display()));
            }
            with_password(&url, pw)?
        }
        None => url,
    };
    let node = match opts.node_name.clone().or(file.node_name.clone()) {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
    };
    if node.is_empty()
        || node.len() > 64
        || !node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "node_name {node:?}: 1 to 64 letters, digits, '-', '_' or '.' (it names Redis keys and channels)"
        ));
    }
    Ok(Some(ClusterSettings { url, node }))
}

/// Whether a Redis URL's authority has a `user:password@` part.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `url` with `password` (percent-encoded) in its authority, keeping a
/// user name if the URL has one.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("cluster: not a URL".into());
    };
    if url_has_password(url) {
        return Err("cluster: both the URL and cluster_password_file give a password".into());
    }
    let mut enc = String::new();
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(char::from(b));
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    let (user, host) = match rest.split_once('@') {
        Some((u, h)) if !u.contains('/') => (u, h),
        _ => ("", rest),
    };
    Ok(format!("{scheme}://{user}:{enc}@{host}"))
}

/// The default state directory: `$STATE_DIRECTORY` (systemd), else
/// `/var/lib/edge-gw` for root, else `$XDG_STATE_HOME/edge-gw` or
/// `~/.local/state/edge-gw`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
        return PathBuf::from(d);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/edge-gw");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("edge-gw");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/edge-gw"),
        None => PathBuf::from("edge-gw-state"),
    }
}

/// Default of `handshakes_per_ip`. It was 50 (burst 200): a site of 2,000
/// devices behind one NAT address then took 83 s to reconnect after a
/// master restart and 10,000 behind a carrier-grade NAT 4 minutes, with
/// the agents' backoff (scenario `nat` of the load tool). At 1,000
/// (burst 4,000) they take 1 s and 18 s, and one address alone can still
/// take at most a sixth of the master's handshake capacity (~5,900/s on
/// two threads, `BENCHMARKS.md`).
pub const DEFAULT_HANDSHAKES_PER_IP: u32 = 1000;

/// Most worker threads by default: past this, more threads only add
/// contention on the registry lock (`BENCHMARKS.md`: scaling measured to
/// 8 threads).
pub const MAX_DEFAULT_THREADS: usize = 16;

/// Default of `threads`: the cores this process may use (std reads the
/// affinity mask and the cgroup's CPU quota, so a container limited to
/// two CPUs gets two), at most [`MAX_DEFAULT_THREADS`]; 2 if unknown.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_DEFAULT_THREADS)
}

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}

impl Settings {
    /// Resolves settings from the command line and its `--config` file.
    pub fn load(opts: &MasterOptions) -> Result<Settings, String> {
        let file = match &opts.config {
            Some(p) => read_file(p)?,
            None => File::default(),
        };
        let cluster = cluster_settings(opts, &file)?;
        let state_dir = opts
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(default_state_dir);
        let keyring = opts
            .keyring
            .clone()
            .or(file.keyring)
            .unwrap_or_else(|| state_dir.join("keyring"));
        let s = Settings {
            listen: if opts.listen.is_empty() {
                file.listen
                    .unwrap_or_else(|| vec![crate::cli::options::DEFAULT_LISTEN.into()])
            } else {
                opts.listen.clone()
            },
            http: opts
                .http
                .clone()
                .or(file.http)
                .unwrap_or_else(|| crate::cli::options::DEFAULT_HTTP.into()),
            state_dir,
            keyring,
            legacy_v1: opts.legacy_v1 || file.legacy_v1.unwrap_or(false),
            legacy_idle_timeout: file
                .legacy_idle_timeout
                .map_or(crate::session::legacy::DEFAULT_LEGACY_IDLE, secs),
            allow_plaintext: opts.allow_plaintext || file.allow_plaintext.unwrap_or(false),
            heartbeat: secs(
                opts.heartbeat_secs
                    .or(file.heartbeat)
                    .unwrap_or(crate::cli::options::DEFAULT_HEARTBEAT_SECS),
            ),
            miss_limit: opts
                .miss_limit
                .or(file.miss_limit)
                .unwrap_or(crate::cli::options::DEFAULT_MISS_LIMIT),
            handshake_timeout: secs(file.handshake_timeout.unwrap_or(10)),
            max_connections: opts
                .max_connections
                .or(file.max_connections)
                .unwrap_or(20_000),
            handshakes_per_ip: file.handshakes_per_ip.unwrap_or(DEFAULT_HANDSHAKES_PER_IP),
            max_frame: file.max_frame.unwrap_or(crate::proto::DEFAULT_MAX_FRAME),
            send_queue_frames: file.send_queue_frames.unwrap_or(1024),
            send_queue_bytes: file.send_queue_bytes.unwrap_or(4 << 20),
            write_timeout: secs(file.write_timeout.unwrap_or(10)),
            http_request_timeout: secs(file.http_request_timeout.unwrap_or(10)),
            http_max_connections: file.http_max_connections.unwrap_or(256),
            http_per_ip: file.http_per_ip.unwrap_or(64),
            outbox_messages: file.outbox_messages.unwrap_or(1000),
            outbox_bytes: file.outbox_bytes.unwrap_or(8 << 20),
            outbox_in_flight: file.outbox_in_flight.unwrap_or(32),
            push_resend: secs(file.push_resend.unwrap_or(30)),
            push_results_keep: file.push_results_keep.unwrap_or(10_000),
            push_results_max_age: secs(file.push_results_max_age.unwrap_or(7 * 24 * 3600)),
            push_results_agent_bytes: file.push_results_agent_bytes.unwrap_or(1 << 20),
            compress: file.compress.unwrap_or(true),
            threads: opts
                .threads
                .or(file.threads)
                .unwrap_or_else(default_threads),
            user: opts.user.clone().or(file.user),
            keyring_revoke_all: file.keyring_revoke_all.unwrap_or(false),
            memory_budget: file
                .memory_budget
                .unwrap_or(crate::master::budget::DEFAULT_MEMORY_BUDGET),
            max_health_body: file.max_health_body.unwrap_or(64 << 10),
            legacy_retention: secs(file.legacy_retention.unwrap_or(3600)),
            cluster,
            config_file: opts.config.clone(),
            log_level: match &file.log_level {
                Some(name) => Some(crate::logger::parse_level(name).ok_or_else(|| {
                    format!("log_level = {name:?}: expected error, warn, info, debug, trace or off")
                })?),
                None => None,
            },
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        let range = |name: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(format!("{name} = {v} is out of range {lo}..={hi}"))
            } else {
                Ok(())
            }
        };
        range("heartbeat", self.heartbeat.as_secs(), 1, 3600)?;
        range("miss_limit", u64::from(self.miss_limit), 1, 1000)?;
        range(
            "legacy_idle_timeout",
            self.legacy_idle_timeout.as_secs(),
            1,
            86_400,
        )?;
        range(
            "handshake_timeout",
            self.handshake_timeout.as_secs(),
            1,
            600,
        )?;
        range("max_connections", self.max_connections as u64, 1, 1_000_000)?;
        range(
            "handshakes_per_ip",
            u64::from(self.handshakes_per_ip),
            1,
            1_000_000,
        )?;
        range("max_frame", u64::from(self.max_frame), 1024, 64 << 20)?;
        range(
            "send_queue_frames",
            self.send_queue_frames as u64,
            4,
            1 << 20,
        )?;
        range(
            "send_queue_bytes",
            self.send_queue_bytes as u64,
            4096,
            1 << 30,
        )?;
        range("write_timeout", self.write_timeout.as_secs(), 1, 3600)?;
        range(
            "http_request_timeout",
            self.http_request_timeout.as_secs(),
            1,
            600,
        )?;
        range(
            "http_max_connections",
            self.http_max_connections as u64,
            1,
            65_536,
        )?;
        range("http_per_ip", self.http_per_ip as u64, 1, 65_536)?;
        range("outbox_messages", self.outbox_messages as u64, 1, 1 << 20)?;
        range("outbox_bytes", self.outbox_bytes as u64, 1024, 1 << 32)?;
        range("outbox_in_flight", self.outbox_in_flight as u64, 1, 4096)?;
        range("push_resend", self.push_resend.as_secs(), 1, 86_400)?;
        range(
            "push_results_keep",
            self.push_results_keep as u64,
            1,
            1 << 20,
        )?;
        range(
            "push_results_max_age",
            self.push_results_max_age.as_secs(),
            60,
            365 * 86_400,
        )?;
        range(
            "push_results_agent_bytes",
            self.push_results_agent_bytes as u64,
            1024,
            1 << 30,
        )?;
        range("threads", self.threads as u64, 1, 256)?;
        range("memory_budget", self.memory_budget as u64, 1 << 20, 1 << 40)?;
        range(
            "max_health_body",
            self.max_health_body as u64,
            256,
            16 << 20,
        )?;
        range(
            "legacy_retention",
            self.legacy_retention.as_secs(),
            1,
            30 * 86_400,
        )?;
        if self.listen.is_empty() {
            return Err("listen: at least one address is needed".into());
        }
        Ok(())
    }
}

fn read_file(p: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> MasterOptions {
        MasterOptions {
            state_dir: Some("/tmp/x".into()),
            ..MasterOptions::default()
        }
    }

    #[test]
    fn defaults() {
        let s = Settings::load(&opts()).unwrap();
        assert_eq!(s.listen, ["0.0.0.0:9503"]);
        assert_eq!(s.http, "127.0.0.1:9580");
        assert_eq!(s.heartbeat, Duration::from_secs(10));
        assert_eq!(s.miss_limit, 3);
        assert_eq!(s.keyring, PathBuf::from("/tmp/x/keyring"));
        assert!(!s.legacy_v1);
        assert_eq!(s.http_request_timeout, Duration::from_secs(10));
        assert_eq!((s.http_max_connections, s.http_per_ip), (256, 64));
        assert_eq!(s.legacy_idle_timeout, Duration::from_secs(150));
        assert_eq!(s.handshakes_per_ip, 1000);
        assert_eq!(s.memory_budget, 256 << 20);
        assert_eq!(s.max_health_body, 64 << 10);
        assert_eq!(s.legacy_retention, Duration::from_secs(3600));
    }

    #[test]
    fn memory_settings_from_the_file_and_their_ranges() {
        let dir = std::env::temp_dir().join(format!("edge-gw-settings-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.toml");
        std::fs::write(
            &f,
            "memory_budget = 16777216\nmax_health_body = 4096\nlegacy_retention = 2\n",
        )
        .unwrap();
        let mut o = opts();
        o.config = Some(f.clone());
        let s = Settings::load(&o).unwrap();
        assert_eq!(s.memory_budget, 16 << 20);
        assert_eq!(s.max_health_body, 4096);
        assert_eq!(s.legacy_retention, Duration::from_secs(2));
        // Below 1 MiB a budget could not hold one frame of the default size.
        std::fs::write(&f, "memory_budget = 1000\n").unwrap();
        let e = Settings::load(&o).unwrap_err();
        assert!(e.contains("memory_budget"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_then_command_line() {
        let dir = std::env::temp_dir().join(format!("edge-gw-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.toml");
        std::fs::write(
            &f,
            "listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nheartbeat = 5\nmiss_limit = 4\nlegacy_v1 = true\n",
        )
        .unwrap();
        let mut o = opts();
        o.config = Some(f.clone());
        o.miss_limit = Some(9);
        let s = Settings::load(&o).unwrap();
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.heartbeat, Duration::from_secs(5));
        assert_eq!(s.miss_limit, 9, "the command line wins");
        assert!(s.legacy_v1);

        std::fs::write(&f, "legacy_idle_timeout = 60\n").unwrap();
        let s = Settings::load(&o).unwrap();
        assert_eq!(s.legacy_idle_timeout, Duration::from_secs(60));
        std::fs::write(&f, "legacy_idle_timeout = 0\n").unwrap();
        assert!(Settings::load(&o).unwrap_err().contains("out of range"));
        std::fs::write(&f, "heartbeet = 5\n").unwrap();
        let e = Settings::load(&o).unwrap_err();
        assert!(e.contains("heartbeet"), "{e}");
        std::fs::write(&f, "heartbeat = 0\n").unwrap();
        assert!(Settings::load(&o).unwrap_err().contains("out of range"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cluster_url_password_and_node_name() {
        let dir = std::env::temp_dir().join(format!("edge-gw-cluster-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut o = opts();
        assert_eq!(
            Settings::load(&o).unwrap().cluster,
            None,
            "standalone by default"
        );
        o.cluster = Some("redis://10.0.0.5:6379/2".into());
        o.node_name = Some("m1".into());
        let c = Settings::load(&o).unwrap().cluster.unwrap();
        assert_eq!(
            (c.url.as_str(), c.node.as_str()),
            ("redis://10.0.0.5:6379/2", "m1")
        );
        // Never a password on the command line (visible in `ps`).
        o.cluster = Some("redis://:secret@10.0.0.5:6379/".into());
        let e = Settings::load(&o).unwrap_err();
        assert!(
            e.contains("cluster_password_file") && !e.contains("secret"),
            "{e}"
        );
        o.cluster = Some("http://10.0.0.5/".into());
        assert!(Settings::load(&o).unwrap_err().contains("redis://"));
        o.node_name = Some("bad name".into());
        o.cluster = Some("redis://10.0.0.5:6379/".into());
        assert!(Settings::load(&o).unwrap_err().contains("node_name"));
        // From the file: the password from its own file, percent-encoded,
        // a user name kept; Debug never shows it.
        let pw = dir.join("redis.password");
        std::fs::write(&pw, "p@ss word\n").unwrap();
        let f = dir.join("m.toml");
        std::fs::write(
            &f,
            format!(
                "cluster = \"redis://edge@10.0.0.5:6379/0\"\nnode_name = \"m-2\"\ncluster_password_file = \"{}\"\n",
                pw.display()
            ),
        )
        .unwrap();
        let o = MasterOptions {
            config: Some(f.clone()),
            ..opts()
        };
        let c = Settings::load(&o).unwrap().cluster.unwrap();
        assert_eq!(c.url, "redis://edge:p%40ss%20word@10.0.0.5:6379/0");
        assert_eq!(c.node, "m-2");
        assert!(!format!("{c:?}").contains("p%40ss"));
        std::fs::write(&pw, "").unwrap();
        assert!(Settings::load(&o).unwrap_err().contains("empty"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
