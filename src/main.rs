//! The `edge-gw` command line.
//!
//! Only argument parsing, validation and dispatch live here; the work is
//! done by the library. Roles left out of the build (Cargo features
//! `agent`, `master`) are still parsed, so usage errors look the same in
//! every build, but running them exits with status 3 and no code of the
//! missing role is linked in.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use edge_gw::config::{
    self, AgentOptions, ClientCommand, ClientOptions, LocalCommand, MasterOptions, WireVersion,
};
use edge_gw::keys::{self, KeyTarget, KeygenOptions};
use edge_gw::logger;
use log::LevelFilter;

/// Exit status: the role or keygen failed.
const EXIT_FAILURE: u8 = 1;
/// Exit status: bad command line.
const EXIT_USAGE: u8 = 2;
/// Exit status: the requested role is not built in.
#[cfg(not(all(feature = "agent", feature = "master")))]
const EXIT_NO_ROLE: u8 = 3;

/// Mode bits, so each option can say which modes it belongs to.
const MASTER: u8 = 1;
const AGENT: u8 = 2;
const KEYGEN: u8 = 4;
const STATUS: u8 = 8;
const AGENTS: u8 = 16;
const PUSH: u8 = 32;
const REPORT: u8 = 64;
const INBOX: u8 = 128;
/// The API client modes.
const CLIENT: u8 = STATUS | AGENTS | PUSH;
const ANY_MODE: u8 = u8::MAX;

/// A command-line mistake: reported with a hint, exit status 2.
#[derive(Debug)]
struct Usage(String);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage(e.to_string())
    }
}

/// What the command line asks for.
#[derive(Debug)]
// Built once at startup; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    Help,
    Version,
    Run {
        /// `--log-level`, if given.
        level: Option<LevelFilter>,
        /// Number of `-v` minus number of `-q`.
        verbosity: i32,
        action: Action,
    },
}

/// The mode to run.
#[derive(Debug)]
enum Action {
    Master(MasterOptions),
    Agent(AgentOptions),
    Keygen(KeygenOptions),
    Client(ClientOptions, ClientCommand),
    Local(Option<PathBuf>, LocalCommand),
}

/// Everything seen on the command line, before it is sorted into a mode.
///
/// Options may come in any order (even before the mode), so they are
/// collected first and checked against the mode at the end.
#[derive(Default)]
struct Seen {
    /// The mode bit and how it was spelled.
    mode: Option<(u8, &'static str)>,
    /// Options given, with the modes they belong to.
    options: Vec<(&'static str, u8)>,
    level: Option<LevelFilter>,
    verbosity: i32,
    master_addr: String,
    listen: Vec<String>,
    http: Option<String>,
    state_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    legacy_v1: bool,
    allow_plaintext: bool,
    max_connections: Option<usize>,
    threads: Option<usize>,
    user: Option<String>,
    keyring: Option<PathBuf>,
    heartbeat: Option<u32>,
    miss_limit: Option<u32>,
    key_file: Option<PathBuf>,
    uuid: Option<String>,
    group: Option<String>,
    interval: Option<u32>,
    on_push: Option<String>,
    wire: Option<WireVersion>,
    fleet: bool,
    out: Option<PathBuf>,
    token_file: Option<PathBuf>,
    to: Option<String>,
    all: bool,
    wait: bool,
    /// Positional words after the mode (push text, report pairs).
    values: Vec<String>,
}

impl Seen {
    /// Records option `name`, valid in `modes`. Options that can't be
    /// repeated are refused the second time rather than silently letting
    /// the last one win.
    fn note(&mut self, name: &'static str, modes: u8, repeatable: bool) -> Result<(), Usage> {
        if !repeatable && self.options.iter().any(|&(n, _)| n == name) {
            return Err(Usage(format!("option '{name}' is given more than once")));
        }
        self.options.push((name, modes));
        Ok(())
    }

    fn set_mode(&mut self, mode: u8, name: &'static str) -> Result<(), Usage> {
        if let Some((_, other)) = self.mode {
            return Err(Usage(if other == name {
                format!("'{name}' is given more than once")
            } else {
                format!("'{other}' and '{name}' cannot be combined; choose one mode")
            }));
        }
        self.mode = Some((mode, name));
        Ok(())
    }
}

/// How the modes in `modes` are spelled, for messages.
fn mode_names(modes: u8) -> String {
    let names: Vec<&str> = [
        (MASTER, "--master"),
        (AGENT, "--agent"),
        (KEYGEN, "keygen"),
        (STATUS, "status"),
        (AGENTS, "agents"),
        (PUSH, "push"),
        (REPORT, "report"),
        (INBOX, "inbox"),
    ]
    .into_iter()
    .filter(|&(bit, _)| modes & bit != 0)
    .map(|(_, name)| name)
    .collect();
    names.join(" or ")
}

fn bad_value(name: &str, value: &str, why: &str) -> Usage {
    Usage(format!("invalid value '{value}' for {name}: {why}"))
}

/// The option's value as UTF-8 text.
fn text(p: &mut lexopt::Parser, name: &str) -> Result<String, Usage> {
    p.value()?
        .into_string()
        .map_err(|raw| bad_value(name, &raw.to_string_lossy(), "not valid UTF-8"))
}

/// The option's value as non-empty text.
fn nonempty(p: &mut lexopt::Parser, name: &str) -> Result<String, Usage> {
    let value = text(p, name)?;
    if value.trim().is_empty() {
        return Err(bad_value(name, &value, "must not be empty"));
    }
    Ok(value)
}

/// The option's value as a path; any bytes but none is fine.
fn path(p: &mut lexopt::Parser, name: &str) -> Result<PathBuf, Usage> {
    let value: OsString = p.value()?;
    if value.is_empty() {
        return Err(bad_value(name, "", "must not be empty"));
    }
    Ok(PathBuf::from(value))
}

/// The option's value as a whole number within `range`.
fn number(
    p: &mut lexopt::Parser,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Usage> {
    let value = text(p, name)?;
    match value.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(bad_value(
            name,
            &value,
            &format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// The option's value as `HOST:PORT`; port 0 ("any free port") only if
/// `any_port` is set.
fn address(p: &mut lexopt::Parser, name: &str, any_port: bool) -> Result<String, Usage> {
    let value = text(p, name)?;
    match config::split_host_port(&value) {
        Ok((_, 0)) if !any_port => Err(bad_value(name, &value, "the port must not be 0")),
        Ok(_) => Ok(value),
        Err(why) => Err(bad_value(name, &value, &why)),
    }
}

/// Parses the command line (without the program name already consumed by
/// lexopt).
fn parse(mut p: lexopt::Parser) -> Result<Command, Usage> {
    use lexopt::Arg::{Long, Short, Value};
    let mut s = Seen::default();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("version") => return Ok(Command::Version),
            Short('q') | Long("quiet") => s.verbosity = s.verbosity.saturating_sub(1),
            Short('v') | Long("verbose") => s.verbosity = s.verbosity.saturating_add(1),
            Long("log-level") => {
                s.note("--log-level", ANY_MODE, false)?;
                let value = text(&mut p, "--log-level")?;
                let level = logger::parse_level(&value).ok_or_else(|| {
                    bad_value(
                        "--log-level",
                        &value,
                        "expected error, warn, info, debug, trace or off",
                    )
                })?;
                s.level = Some(level);
            }
            Long("master") => s.set_mode(MASTER, "--master")?,
            Long("agent") => {
                s.set_mode(AGENT, "--agent")?;
                s.master_addr = address(&mut p, "--agent", false)?;
            }
            Value(v) if s.mode.is_none() => match v.to_str() {
                Some("keygen") => s.set_mode(KEYGEN, "keygen")?,
                Some("status") => s.set_mode(STATUS, "status")?,
                Some("agents") => s.set_mode(AGENTS, "agents")?,
                Some("push") => s.set_mode(PUSH, "push")?,
                Some("report") => s.set_mode(REPORT, "report")?,
                Some("inbox") => s.set_mode(INBOX, "inbox")?,
                _ => {
                    return Err(Usage(format!(
                        "unknown command {:?}: use --master, --agent HOST:PORT, keygen, status, agents, push, report or inbox",
                        v.to_string_lossy()
                    )));
                }
            },
            Value(v) => s.values.push(
                v.into_string()
                    .map_err(|v| Usage(format!("argument {v:?} is not valid UTF-8")))?,
            ),
            Long("token-file") => {
                s.note("--token-file", CLIENT, false)?;
                s.token_file = Some(path(&mut p, "--token-file")?);
            }
            Long("to") => {
                s.note("--to", PUSH, false)?;
                s.to = Some(nonempty(&mut p, "--to")?);
            }
            Long("all") => {
                s.note("--all", PUSH, true)?;
                s.all = true;
            }
            Long("wait") => {
                s.note("--wait", INBOX, true)?;
                s.wait = true;
            }
            Long("listen") => {
                s.note("--listen", MASTER, true)?;
                s.listen.push(address(&mut p, "--listen", true)?);
            }
            Long("http") => {
                s.note("--http", MASTER | CLIENT, false)?;
                s.http = Some(address(&mut p, "--http", true)?);
            }
            Long("state-dir") => {
                s.note("--state-dir", ANY_MODE & !KEYGEN, false)?;
                s.state_dir = Some(path(&mut p, "--state-dir")?);
            }
            Long("config") => {
                s.note("--config", MASTER | AGENT, false)?;
                s.config = Some(path(&mut p, "--config")?);
            }
            Long("legacy-v1") => {
                s.note("--legacy-v1", MASTER, true)?;
                s.legacy_v1 = true;
            }
            Long("allow-plaintext") => {
                s.note("--allow-plaintext", MASTER, true)?;
                s.allow_plaintext = true;
            }
            Long("max-connections") => {
                s.note("--max-connections", MASTER, false)?;
                s.max_connections =
                    Some(number(&mut p, "--max-connections", 1..=1_000_000)? as usize);
            }
            Long("threads") => {
                s.note("--threads", MASTER, false)?;
                s.threads = Some(number(&mut p, "--threads", 1..=256)? as usize);
            }
            Long("user") => {
                s.note("--user", MASTER, false)?;
                s.user = Some(nonempty(&mut p, "--user")?);
            }
            Long("keyring") => {
                s.note("--keyring", MASTER | KEYGEN, false)?;
                s.keyring = Some(path(&mut p, "--keyring")?);
            }
            Long("heartbeat") => {
                s.note("--heartbeat", MASTER, false)?;
                s.heartbeat = Some(number(&mut p, "--heartbeat", config::INTERVAL_RANGE)?);
            }
            Long("miss-limit") => {
                s.note("--miss-limit", MASTER, false)?;
                s.miss_limit = Some(number(&mut p, "--miss-limit", config::MISS_LIMIT_RANGE)?);
            }
            Long("key-file") => {
                s.note("--key-file", AGENT, false)?;
                s.key_file = Some(path(&mut p, "--key-file")?);
            }
            Long("uuid") => {
                s.note("--uuid", AGENT | KEYGEN, false)?;
                let value = text(&mut p, "--uuid")?;
                if let Err(problem) = keys::check_uuid(&value) {
                    return Err(Usage(format!("--uuid: {problem}")));
                }
                s.uuid = Some(value);
            }
            Long("group") => {
                s.note("--group", AGENT | PUSH, false)?;
                s.group = Some(nonempty(&mut p, "--group")?);
            }
            Long("interval") => {
                s.note("--interval", AGENT, false)?;
                s.interval = Some(number(&mut p, "--interval", config::INTERVAL_RANGE)?);
            }
            Long("on-push") => {
                s.note("--on-push", AGENT, false)?;
                s.on_push = Some(nonempty(&mut p, "--on-push")?);
            }
            Long("wire") => {
                s.note("--wire", AGENT, false)?;
                let value = text(&mut p, "--wire")?;
                let wire = WireVersion::from_name(&value)
                    .ok_or_else(|| bad_value("--wire", &value, "expected v1 or v2"))?;
                s.wire = Some(wire);
            }
            Long("fleet") => {
                s.note("--fleet", KEYGEN, true)?;
                s.fleet = true;
            }
            Long("out") => {
                s.note("--out", KEYGEN, false)?;
                s.out = Some(path(&mut p, "--out")?);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    finish(s)
}

/// Checks the collected options against the mode and builds the action.
fn finish(mut s: Seen) -> Result<Command, Usage> {
    let Some((mode, mode_name)) = s.mode else {
        return Err(Usage(
            "no mode given: use --master, --agent HOST:PORT or keygen".into(),
        ));
    };
    if let Some(&(name, modes)) = s.options.iter().find(|&&(_, modes)| modes & mode == 0) {
        return Err(Usage(format!(
            "option '{name}' belongs to {}, not to {mode_name}",
            mode_names(modes)
        )));
    }
    if !s.values.is_empty() && mode & (PUSH | REPORT) == 0 {
        return Err(Usage(format!(
            "unexpected argument '{}' for {mode_name}",
            s.values[0]
        )));
    }
    let client = ClientOptions {
        http: s.http.clone(),
        state_dir: s.state_dir.clone(),
        token_file: s.token_file.clone(),
    };
    let action = if mode == STATUS {
        Action::Client(client, ClientCommand::Status)
    } else if mode == AGENTS {
        Action::Client(client, ClientCommand::Agents)
    } else if mode == PUSH {
        let to = match (s.to, s.group, s.all) {
            (Some(u), None, false) => u,
            (None, Some(g), false) => format!("group:{g}"),
            (None, None, true) => "*".to_string(),
            _ => {
                return Err(Usage(
                    "push needs exactly one of --to UUID, --group NAME or --all".into(),
                ));
            }
        };
        if s.values.len() != 1 {
            return Err(Usage(
                "push takes the message as one argument (quote it)".into(),
            ));
        }
        let text = s.values.remove(0);
        Action::Client(client, ClientCommand::Push { to, text })
    } else if mode == REPORT {
        if s.values.is_empty() {
            return Err(Usage("report needs at least one KEY=VALUE".into()));
        }
        if let Some(bad) = s.values.iter().find(|v| !v.contains('=')) {
            return Err(Usage(format!("report: {bad:?} is not KEY=VALUE")));
        }
        Action::Local(s.state_dir, LocalCommand::Report(s.values))
    } else if mode == INBOX {
        Action::Local(s.state_dir, LocalCommand::Inbox { wait: s.wait })
    } else if mode == MASTER {
        Action::Master(MasterOptions {
            // Any --listen replaces the default rather than adding to it.
            listen: s.listen,
            http: s.http,
            state_dir: s.state_dir,
            config: s.config,
            legacy_v1: s.legacy_v1,
            allow_plaintext: s.allow_plaintext,
            heartbeat_secs: s.heartbeat,
            miss_limit: s.miss_limit,
            keyring: s.keyring,
            max_connections: s.max_connections,
            threads: s.threads,
            user: s.user,
        })
    } else if mode == AGENT {
        Action::Agent(AgentOptions {
            master: s.master_addr,
            key_file: s.key_file,
            uuid: s.uuid,
            group: s.group,
            interval_secs: s.interval,
            on_push: s.on_push,
            state_dir: s.state_dir,
            wire: s.wire,
            config: s.config,
        })
    } else {
        let target = match (s.uuid, s.fleet) {
            (Some(uuid), false) => KeyTarget::Device(uuid),
            (None, true) => KeyTarget::Fleet,
            (Some(_), true) => {
                return Err(Usage(
                    "keygen takes either --uuid or --fleet, not both".into(),
                ));
            }
            (None, false) => {
                return Err(Usage(
                    "keygen needs --uuid ID (a device key) or --fleet (the fleet key)".into(),
                ));
            }
        };
        Action::Keygen(KeygenOptions {
            target,
            out: s.out,
            keyring: s.keyring,
        })
    };
    Ok(Command::Run {
        level: s.level,
        verbosity: s.verbosity,
        action,
    })
}

/// Writes a message to stderr. A broken stderr can't be reported
/// anywhere, so the error is dropped instead of panicking like `eprintln!`.
fn say(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Prints help or version text to stdout.
fn print_stdout(text: &str) -> ExitCode {
    match io::stdout().lock().write_all(text.as_bytes()) {
        // `edge-gw --help | head` closes the pipe early; that is no error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            say(format_args!("edge-gw: cannot write to stdout: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The roles built into this binary, e.g. `agent master`.
fn roles() -> &'static str {
    match (cfg!(feature = "agent"), cfg!(feature = "master")) {
        (true, true) => "agent master",
        (true, false) => "agent",
        (false, true) => "master",
        (false, false) => "none",
    }
}

fn version_text() -> String {
    format!(
        "edge-gw {}\nroles: {}\n",
        env!("CARGO_PKG_VERSION"),
        roles()
    )
}

/// The note under a role's OPTIONS heading when the role is not built in.
fn missing_note(role: &str, built: bool) -> String {
    if built {
        String::new()
    } else {
        format!(
            "    NOT IN THIS BUILD: rebuild with --features {role} to use these\n    \
             options; asking for this role exits with status 3.\n"
        )
    }
}

fn help_text() -> String {
    format!(
        r"NAME
    edge-gw - edge monitoring gateway: one binary, agent on routers,
    master on servers

SYNOPSIS
    edge-gw --master [--listen ADDR]... [--http ADDR] [--state-dir DIR]
            [--config FILE] [--legacy-v1] [--keyring FILE]
            [--heartbeat SECS] [--miss-limit N]
    edge-gw --agent HOST:PORT [--key-file FILE] [--uuid ID] [--group NAME]
            [--interval SECS] [--on-push CMD] [--state-dir DIR]
            [--wire v1|v2]
    edge-gw keygen (--uuid ID | --fleet) [--out FILE] [--keyring FILE]
    edge-gw status | agents | push ... | report ... | inbox
    edge-gw --version | --help

    The global options (--log-level, -q, -v) go with any mode.

DESCRIPTION
    edge-gw monitors a fleet of edge routers. On each router it runs as an
    agent that keeps one TCP connection to a master and reports the
    router's health. On a server it runs as the master, which accepts
    thousands of agents.

    Agents and master speak wire protocol v2, secured by Noise NNpsk0 with
    a 32-byte pre-shared key: one key per device, or one fleet key for all
    devices without a key of their own. The master finds an agent's key in
    its keyring by the agent's uuid. Wire v1 is the legacy PHP system's
    plaintext protocol; the master accepts it only with --legacy-v1.

    Keys are made by 'edge-gw keygen' and only ever read from files, never
    taken from the command line.

ROLES
    The agent and master roles are Cargo features, so router builds can
    leave the master out. This build: {roles}.
    Asking for a role that is not built in exits with status 3.

GLOBAL OPTIONS
    --log-level LEVEL
        error, warn, info, debug, trace or off. Logs go to stderr, stamped
        with seconds since start. Default: ${env}, else info.
    -q, --quiet
        Log one level less; repeatable, applied after --log-level.
    -v, --verbose
        Log one level more; repeatable, applied after --log-level.
    --version
        Print the version and the built-in roles.
    -h, --help
        Print this help.

MASTER OPTIONS (edge-gw --master)
{master_note}    --listen ADDR
        Accept agents on ADDR (HOST:PORT; port 0 picks a free port).
        Repeat for several addresses. Default: {listen}.
    --http ADDR
        Serve the HTTP interface on ADDR. Default: {http}.
    --state-dir DIR
        Fleet key, keyring, API token and push log (created on first
        start, secrets mode 0600). Default: $STATE_DIRECTORY, else
        /var/lib/edge-gw as root, else ~/.local/state/edge-gw.
    --config FILE
        Read settings from a TOML file (keys as the long options, with _
        for -; see the README for every key). Options given here win.
        SIGHUP re-reads it and the keyring.
    --legacy-v1
        Also accept legacy v1 (plaintext, unauthenticated) agents.
        Default: off. A v1 connection silent for legacy_idle_timeout
        (150 s) is closed. Old sites sit behind NAT: new connections
        from one address, v1 and v2 alike, are limited by
        handshakes_per_ip (1000/s, bursts of 4000; config file keys).
    --allow-plaintext
        Also accept v2 agents without a key (no encryption, no
        authentication). Default: off.
    --keyring FILE
        The agents' pre-shared keys (see FILES). Default: STATE_DIR/keyring.
    --max-connections N
        Most simultaneous connections. Default: 20000.
    --threads N
        Worker threads. Default: 2.
    --user NAME
        Drop root privileges to user NAME after binding the ports.
    --heartbeat SECS
        Seconds between heartbeats, 1 to 3600. Default: {heartbeat}.
    --miss-limit N
        Missed heartbeats before an agent counts as gone, 1 to 1000.
        Default: {miss_limit}.

AGENT OPTIONS (edge-gw --agent HOST:PORT)
{agent_note}    --agent HOST:PORT
        Report to the master at HOST:PORT (IPv6 in brackets, e.g.
        [2001:db8::1]:9503).
    --key-file FILE
        The agent key file (see FILES); wire v2 needs one. Default: none.
    --uuid ID
        This device's uuid; overrides the key file's. Needed with a fleet
        key or wire v1. Default: the uuid in the key file.
    --group NAME
        Group name reported to the master. Default: none.
    --interval SECS
        Seconds between health reports, 1 to 3600. Default: {interval}.
    --on-push CMD
        Run CMD (through /bin/sh) for each pushed message, the message on
        stdin, EDGE_GW_PUSH_ID/_SENDER/_GROUP in the environment; exit 0
        means delivered (then acked), anything else or 30 s means the
        master resends it later. Default: none (messages wait for
        'edge-gw inbox').
    --state-dir DIR
        Local socket (agent.sock) and delivered push ids. Default:
        $STATE_DIRECTORY, else /var/lib/edge-gw-agent.
    --wire v1|v2
        Wire protocol version. Default: v2.
    --config FILE
        Read agent settings from a TOML file: the options above (interval,
        group, key_file, uuid, on_push, state_dir, wire) plus mounts,
        report_ring, report_ring_bytes, inbox_messages, inbox_bytes and
        hook_timeout (see the README). Options given here win.

KEYGEN OPTIONS (edge-gw keygen)
    Makes a new random key, writes the agent key file and prints the line
    the master's keyring needs, or appends it with --keyring. On error
    nothing is left behind. Available in every build.
    --uuid ID
        Make the key of device ID: 1 to 33 letters, digits or - _ . :
        (clients use 32 hex digits and a letter).
    --fleet
        Make the fleet key instead; its key file has no uuid.
    --out FILE
        Write the agent key file to FILE, mode 0600. An existing file is
        never overwritten. Default: ./ID.key, or ./fleet.key.
    --keyring FILE
        Append the entry to keyring FILE (created with mode 0600 if
        missing) instead of printing it. Refused if ID (or, with --fleet,
        the fleet) already has a key there.

CLIENT COMMANDS
    edge-gw status [--http ADDR] [--state-dir DIR | --token-file FILE]
        The master's status table: a global block, then one row per agent.
    edge-gw agents [--http ADDR] [--state-dir DIR | --token-file FILE]
        Every agent as JSON.
    edge-gw push (--to UUID | --group NAME | --all) TEXT [--http ADDR] ...
        Push TEXT; prints the push id once the master stored it.
    edge-gw report KEY=VALUE... [--state-dir DIR]
        Add custom metrics to the running agent's next report.
    edge-gw inbox [--wait] [--state-dir DIR]
        Take one pushed message from the running agent, print it, and
        let the agent ack it. Exit status 4 if the inbox is empty.

FILES
    Agent key file (--key-file; written by keygen)
        Secret; mode 0600 (edge-gw warns if others can read it):
            # edge-gw agent key (keep secret, mode 0600)
            uuid = 0123456789abcdef0123456789abcdefA
            key = <64 hex digits>
        A fleet key file has no uuid line.

    Keyring (--keyring)
        Secret; mode 0600. One key per line, '#' starts a comment:
            <uuid> <64 hex digits>     the key of one device
            * <64 hex digits>          the fleet key (at most one)
        A device's own key wins over the fleet key. A uuid listed twice is
        an error.

    State directory (--state-dir)
        Where a role keeps what must survive a restart.

ENVIRONMENT
    {env}
        Log level when --log-level is not given.

EXAMPLES
    Start a master that knows the agents' keys:
        edge-gw --master --keyring /etc/edge-gw/keyring \
                --state-dir /var/lib/edge-gw

    Create a key for a router, then join the router to the master:
        edge-gw keygen --uuid 0123456789abcdef0123456789abcdefA \
                --out router1.key --keyring /etc/edge-gw/keyring
        scp -p router1.key root@router1:/etc/edge-gw/agent.key
        # then, on the router:
        edge-gw --agent master.example.net:9503 \
                --key-file /etc/edge-gw/agent.key

    Legacy mode, keeping v1 agents working during a migration:
        edge-gw --master --legacy-v1 --keyring /etc/edge-gw/keyring
        # on a router still speaking v1:
        edge-gw --agent master.example.net:9503 --wire v1 \
                --uuid 0123456789abcdef0123456789abcdefA

EXIT STATUS
    0   Success.
    1   Runtime error: the role failed, or keygen could not do its work.
    2   Usage error: unknown option, bad or missing value.
    3   The requested role is not built into this binary.
    4   edge-gw inbox: no message waiting.
",
        roles = roles(),
        env = logger::ENV_VAR,
        master_note = missing_note("master", cfg!(feature = "master")),
        agent_note = missing_note("agent", cfg!(feature = "agent")),
        listen = config::DEFAULT_LISTEN,
        http = config::DEFAULT_HTTP,
        heartbeat = config::DEFAULT_HEARTBEAT_SECS,
        miss_limit = config::DEFAULT_MISS_LIMIT,
        interval = config::DEFAULT_INTERVAL_SECS,
    )
}

/// Moves `level` by `steps` (positive: more verbose), staying within
/// off..=trace.
fn adjust_level(level: LevelFilter, steps: i32) -> LevelFilter {
    const ORDER: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let Some(index) = ORDER.iter().position(|&l| l == level) else {
        return level;
    };
    let max = ORDER.len() - 1;
    let moved = if steps >= 0 {
        index.saturating_add(steps.unsigned_abs() as usize).min(max)
    } else {
        index.saturating_sub(steps.unsigned_abs() as usize)
    };
    ORDER.get(moved).copied().unwrap_or(level)
}

/// Starts logging: `--log-level`, else `$EDGE_GW_LOG`, else info; then
/// `-v`/`-q`.
fn init_logging(cli: Option<LevelFilter>, verbosity: i32) {
    let (base, bad_env) = match cli {
        Some(level) => (level, None),
        None => match logger::env_level() {
            Ok(level) => (level.unwrap_or(LevelFilter::Info), None),
            Err(value) => (LevelFilter::Info, Some(value)),
        },
    };
    logger::init(adjust_level(base, verbosity));
    // A stray environment variable should not stop a router's monitoring,
    // so a bad value is only a warning.
    if let Some(value) = bad_env {
        log::warn!(
            "ignoring {}={value:?}: expected error, warn, info, debug, trace or off",
            logger::ENV_VAR
        );
    }
}

/// Exit status for a role's result.
#[cfg(any(feature = "agent", feature = "master"))]
fn outcome(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("edge-gw: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Refuses a role that was left out of the build.
#[cfg(not(all(feature = "agent", feature = "master")))]
fn no_role(role: &str) -> ExitCode {
    say(format_args!(
        "edge-gw: this build has no {role} role; rebuild with --features {role}"
    ));
    ExitCode::from(EXIT_NO_ROLE)
}

#[cfg(feature = "master")]
fn run_master(opts: MasterOptions) -> ExitCode {
    outcome(edge_gw::master::run(opts))
}

#[cfg(not(feature = "master"))]
fn run_master(_opts: MasterOptions) -> ExitCode {
    no_role("master")
}

#[cfg(feature = "agent")]
fn run_agent(opts: AgentOptions) -> ExitCode {
    outcome(edge_gw::agent::run(opts))
}

#[cfg(not(feature = "agent"))]
fn run_agent(_opts: AgentOptions) -> ExitCode {
    no_role("agent")
}

#[cfg(feature = "master")]
fn run_client(opts: ClientOptions, cmd: ClientCommand) -> ExitCode {
    outcome(edge_gw::master::client::run(&opts, &cmd))
}

#[cfg(not(feature = "master"))]
fn run_client(_opts: ClientOptions, _cmd: ClientCommand) -> ExitCode {
    no_role("master")
}

#[cfg(feature = "agent")]
fn run_local(dir: Option<PathBuf>, cmd: LocalCommand) -> ExitCode {
    match edge_gw::agent::local::run_cli(dir, &cmd) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say(format_args!("edge-gw: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(not(feature = "agent"))]
fn run_local(_dir: Option<PathBuf>, _cmd: LocalCommand) -> ExitCode {
    no_role("agent")
}

fn run_keygen(opts: &KeygenOptions) -> ExitCode {
    match keys::keygen(opts, &mut io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("edge-gw: keygen: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn main() -> ExitCode {
    let command = match parse(lexopt::Parser::from_env()) {
        Ok(command) => command,
        Err(Usage(message)) => {
            say(format_args!(
                "edge-gw: {message}\nTry 'edge-gw --help' for more information."
            ));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Help => print_stdout(&help_text()),
        Command::Version => print_stdout(&version_text()),
        Command::Run {
            level,
            verbosity,
            action,
        } => {
            init_logging(level, verbosity);
            match action {
                Action::Master(opts) => run_master(opts),
                Action::Agent(opts) => run_agent(opts),
                Action::Keygen(opts) => run_keygen(&opts),
                Action::Client(opts, cmd) => run_client(opts, cmd),
                Action::Local(dir, cmd) => run_local(dir, cmd),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Command, Usage> {
        parse(lexopt::Parser::from_args(args.iter().copied()))
    }

    fn usage_error(args: &[&str]) -> String {
        match parse_args(args) {
            Err(Usage(message)) => message,
            Ok(command) => panic!("{args:?} parsed as {command:?}"),
        }
    }

    #[test]
    fn master_defaults_and_options() {
        let Ok(Command::Run {
            action: Action::Master(opts),
            ..
        }) = parse_args(&["--master"])
        else {
            panic!("not a master command");
        };
        assert_eq!(opts, MasterOptions::default());

        let Ok(Command::Run {
            action: Action::Master(opts),
            level,
            verbosity,
        }) = parse_args(&[
            "--listen=[::]:9503",
            "--master",
            "--listen",
            "10.0.0.1:0",
            "--legacy-v1",
            "--heartbeat",
            "5",
            "--keyring",
            "/k",
            "-vv",
            "--log-level",
            "warn",
        ])
        else {
            panic!("not a master command");
        };
        assert_eq!(opts.listen, ["[::]:9503", "10.0.0.1:0"]);
        assert!(opts.legacy_v1);
        assert_eq!(opts.heartbeat_secs, Some(5));
        assert_eq!(opts.keyring, Some(PathBuf::from("/k")));
        assert_eq!((level, verbosity), (Some(LevelFilter::Warn), 2));
    }

    #[test]
    fn agent_options() {
        let Ok(Command::Run {
            action: Action::Agent(opts),
            ..
        }) = parse_args(&[
            "--agent",
            "m.example:9503",
            "--wire",
            "v1",
            "--interval",
            "3600",
            "--uuid",
            "abc",
        ])
        else {
            panic!("not an agent command");
        };
        assert_eq!(opts.master, "m.example:9503");
        assert_eq!(opts.wire, Some(WireVersion::V1));
        assert_eq!(opts.interval_secs, Some(3600));
        assert_eq!(opts.uuid.as_deref(), Some("abc"));
    }

    #[test]
    fn keygen_targets() {
        let Ok(Command::Run {
            action: Action::Keygen(opts),
            ..
        }) = parse_args(&["keygen", "--fleet", "--out", "f.key"])
        else {
            panic!("not keygen");
        };
        assert_eq!(opts.target, KeyTarget::Fleet);
        assert_eq!(opts.out, Some(PathBuf::from("f.key")));
        assert!(usage_error(&["keygen"]).contains("--uuid ID"));
        assert!(usage_error(&["keygen", "--uuid", "a", "--fleet"]).contains("not both"));
        assert!(usage_error(&["keygen", "--uuid", "a/b"]).contains("--uuid"));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        assert!(usage_error(&[]).contains("no mode"));
        assert!(usage_error(&["--master", "--bogus"]).contains("--bogus"));
        assert!(usage_error(&["--master", "stray"]).contains("stray"));
        assert!(
            usage_error(&["--master", "--interval", "5"])
                .contains("'--interval' belongs to --agent")
        );
        assert!(usage_error(&["keygen", "--uuid", "a", "--listen", "h:1"]).contains("--listen"));
        assert!(usage_error(&["--master", "--agent", "h:1"]).contains("cannot be combined"));
        assert!(
            usage_error(&["--master", "--http", "h:1", "--http", "h:2"]).contains("more than once")
        );
        assert!(usage_error(&["--agent", "h:1", "--interval", "0"]).contains("from 1 to 3600"));
        assert!(usage_error(&["--agent", "h:1", "--interval", "3601"]).contains("'3601'"));
        assert!(usage_error(&["--agent", "h:1", "--wire", "v3"]).contains("v1 or v2"));
        assert!(usage_error(&["--agent", "nohost"]).contains("HOST:PORT"));
        assert!(usage_error(&["--agent", "h:0"]).contains("must not be 0"));
        assert!(usage_error(&["--agent"]).contains("missing argument"));
        assert!(usage_error(&["--master", "--log-level", "loud"]).contains("--log-level"));
        assert!(usage_error(&["--master", "--state-dir", ""]).contains("--state-dir"));
        assert!(usage_error(&["--agent", "h:1", "--group", " "]).contains("--group"));
    }

    #[test]
    fn help_and_version_win() {
        assert!(matches!(parse_args(&["-h"]), Ok(Command::Help)));
        assert!(matches!(
            parse_args(&["--master", "--help"]),
            Ok(Command::Help)
        ));
        assert!(matches!(parse_args(&["--version"]), Ok(Command::Version)));
    }

    #[test]
    fn help_fits_80_columns() {
        for line in help_text().lines() {
            assert!(line.chars().count() <= 80, "too long: {line}");
        }
    }

    #[test]
    fn verbosity_steps() {
        assert_eq!(adjust_level(LevelFilter::Info, 0), LevelFilter::Info);
        assert_eq!(adjust_level(LevelFilter::Info, 1), LevelFilter::Debug);
        assert_eq!(adjust_level(LevelFilter::Info, 9), LevelFilter::Trace);
        assert_eq!(adjust_level(LevelFilter::Info, -2), LevelFilter::Error);
        assert_eq!(adjust_level(LevelFilter::Info, -9), LevelFilter::Off);
        assert_eq!(adjust_level(LevelFilter::Off, i32::MIN), LevelFilter::Off);
        assert_eq!(adjust_level(LevelFilter::Off, i32::MAX), LevelFilter::Trace);
    }
}
