//! The options the command line hands to each mode: plain structs, filled
//! by [`super::parse`] and nothing else.
//!
//! A field is `None` (or an empty list) when the option was not given; the
//! role then takes the value from its `--config` file, else the built-in
//! default. Reading those files is the role's job, not this module's:
//! `master::settings` reads the master's TOML file, `agent::settings` the
//! agent's flat TOML subset, and both apply the command line last so it
//! wins. Every default lives in the `DEFAULT_*` constants below so the
//! manual (`--help`), the settings code and the config files cannot
//! disagree.

use std::fmt;
use std::path::PathBuf;

/// Default address the master accepts agents on.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9503";
/// Default address of the master's HTTP interface (local only by default).
pub const DEFAULT_HTTP: &str = "127.0.0.1:9580";
/// Default seconds between agent reports.
pub const DEFAULT_INTERVAL_SECS: u32 = 10;
/// Default seconds between master heartbeats.
pub const DEFAULT_HEARTBEAT_SECS: u32 = 10;
/// Default number of missed heartbeats before an agent counts as gone.
pub const DEFAULT_MISS_LIMIT: u32 = 3;
/// Allowed agent report intervals and master heartbeats, in seconds.
pub const INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 1..=3600;
/// Allowed miss limits.
pub const MISS_LIMIT_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

/// Wire protocol version an agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireVersion {
    /// The legacy PHP system's plaintext protocol; the master must run
    /// with `legacy_v1`.
    V1,
    /// edge-gw's protocol, secured by Noise NNpsk0 with a pre-shared key.
    #[default]
    V2,
}

impl WireVersion {
    /// Parses `v1` or `v2` (any case).
    pub fn from_name(name: &str) -> Option<WireVersion> {
        if name.eq_ignore_ascii_case("v1") {
            Some(WireVersion::V1)
        } else if name.eq_ignore_ascii_case("v2") {
            Some(WireVersion::V2)
        } else {
            None
        }
    }

    /// `"v1"` or `"v2"`.
    pub fn name(self) -> &'static str {
        match self {
            WireVersion::V1 => "v1",
            WireVersion::V2 => "v2",
        }
    }
}

impl fmt::Display for WireVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of `edge-gw --agent` as given on the command line (`None`:
/// not given; the config file, then the default applies).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentOptions {
    /// The masters, each `HOST:PORT`, in the order they are tried
    /// (`--agent A,B,C`). Empty: not given; `master` in the config file
    /// must name them.
    pub masters: Vec<String>,
    /// The agent key file (see [`crate::keys::AgentKey`]). Default: none;
    /// wire v2 needs a key, v1 does not.
    pub key_file: Option<PathBuf>,
    /// The agent's uuid; overrides the one in the key file, and is needed
    /// with a fleet key or wire v1. Default: none (take it from the key file).
    pub uuid: Option<String>,
    /// Group name reported to the master. Default: none.
    pub group: Option<String>,
    /// Seconds between health reports, within [`INTERVAL_RANGE`].
    /// Default: the config file's, else [`DEFAULT_INTERVAL_SECS`] (10).
    pub interval_secs: Option<u32>,
    /// Command run when the master pushes to this agent. Default: none.
    pub on_push: Option<String>,
    /// Directory for state kept across restarts. Default: see
    /// `agent::default_state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Wire protocol version. Default: the config file's, else
    /// [`WireVersion::V2`].
    pub wire: Option<WireVersion>,
    /// Agent configuration file (TOML; see `agent::settings`). Default: none.
    pub config: Option<PathBuf>,
}

/// Options of `edge-gw --master` as given on the command line. `None` (or
/// an empty list) means "not given": the config file, then the built-in
/// default applies (see `master::settings`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterOptions {
    /// Addresses (`HOST:PORT`) to accept agents on; port 0 picks a free
    /// port. Default: one entry, [`DEFAULT_LISTEN`] (`0.0.0.0:9503`).
    pub listen: Vec<String>,
    /// Address (`HOST:PORT`) of the HTTP interface. Default:
    /// [`DEFAULT_HTTP`] (`127.0.0.1:9580`).
    pub http: Option<String>,
    /// Directory for state kept across restarts. Default: see
    /// `master::settings::default_state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Master configuration file (TOML). Default: none.
    pub config: Option<PathBuf>,
    /// Also accept legacy v1 (plaintext) agents. Default: false.
    pub legacy_v1: bool,
    /// Also accept unencrypted v2 sessions. Default: false.
    pub allow_plaintext: bool,
    /// Seconds between heartbeats, within [`INTERVAL_RANGE`].
    /// Default: [`DEFAULT_HEARTBEAT_SECS`] (10).
    pub heartbeat_secs: Option<u32>,
    /// Missed heartbeats before an agent counts as gone, within
    /// [`MISS_LIMIT_RANGE`]. Default: [`DEFAULT_MISS_LIMIT`] (3).
    pub miss_limit: Option<u32>,
    /// Keyring file with the agents' pre-shared keys (see
    /// [`crate::keys::Keyring`]). Default: `STATE_DIR/keyring`.
    pub keyring: Option<PathBuf>,
    /// Most simultaneous connections. Default: 20000.
    pub max_connections: Option<usize>,
    /// Worker threads. Default: the cores available, at most 16
    /// (`master::settings::default_threads`).
    pub threads: Option<usize>,
    /// User to switch to after binding the listeners. Default: none.
    pub user: Option<String>,
    /// Redis URL of the cluster this master joins (`redis://HOST:PORT/DB`,
    /// no password: that comes from the config file or
    /// `cluster_password_file`). Default: none, a standalone master.
    pub cluster: Option<String>,
    /// This master's name in the cluster. Default: the host name.
    pub node_name: Option<String>,
}

/// Options of the API clients `edge-gw status|agents|push`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientOptions {
    /// The master's HTTP address. Default: [`DEFAULT_HTTP`].
    pub http: Option<String>,
    /// The master's state directory, where `api.token` is. Default: the
    /// master's default state directory.
    pub state_dir: Option<PathBuf>,
    /// The API token file. Default: `STATE_DIR/api.token`.
    pub token_file: Option<PathBuf>,
}

/// What an API client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `edge-gw status`: the WorkerMan-style status table.
    Status,
    /// `edge-gw agents`: the agents as JSON.
    Agents,
    /// `edge-gw push`: send a push.
    Push {
        /// A uuid, `group:NAME` or `*`.
        to: String,
        /// The message text.
        text: String,
        /// `--wait DURATION`: ask for results and print them as they come,
        /// for at most this long (exit status 5 when some are missing).
        wait: Option<std::time::Duration>,
    },
}

/// What a local client of a running agent does (`edge-gw report|inbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalCommand {
    /// Add `KEY=VALUE` metrics to the next report.
    Report(Vec<String>),
    /// Take one pushed message (and ack it once printed).
    Inbox {
        /// Wait for a message instead of exiting when the inbox is empty.
        wait: bool,
    },
    /// Answer a push taken with `inbox` that wants a result
    /// (`inbox --answer ID [--exit N] [TEXT]`).
    Answer {
        /// Push id.
        id: u64,
        /// Exit status to report (default 0).
        exit: i32,
        /// The output; `None` reads it from stdin.
        text: Option<String>,
    },
    /// The operator's verdict on a push whose hook a crash cut off
    /// (`inbox --resolve ID delivered|retry`).
    Resolve {
        /// Push id.
        id: u64,
        /// `delivered` or `retry`.
        verdict: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let agent = AgentOptions::default();
        assert_eq!(agent.interval_secs, None);
        assert_eq!(agent.wire, None);
        assert!(agent.masters.is_empty(), "from the config file then");
        // Master defaults are applied by master::settings, after the
        // config file: the options only say what the command line gave.
        let master = MasterOptions::default();
        assert!(master.listen.is_empty() && master.http.is_none());
        assert!(!master.legacy_v1);
    }

    #[test]
    fn wire_names() {
        assert_eq!(WireVersion::from_name("v1"), Some(WireVersion::V1));
        assert_eq!(WireVersion::from_name("V2"), Some(WireVersion::V2));
        assert_eq!(WireVersion::from_name("2"), None);
        assert_eq!(WireVersion::V1.to_string(), "v1");
    }
}
