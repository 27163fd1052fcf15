//! Parsing the command line with lexopt: which options exist, which modes
//! they belong to, and the usage errors for everything else.
//!
//! Options may come in any order (even before the mode), so they are
//! collected first and checked against the mode at the end; a mistake is a
//! [`Usage`] error naming the option, never a guess.

use std::ffi::OsString;
use std::path::PathBuf;

use log::LevelFilter;

use super::command::{Action, Command};
use super::completions::Shell;
use super::flags::{MODES, SHELLS, takes_value};
use super::option_value::{address, bad_value, nonempty, number, path, text};
use super::options::{
    AgentOptions, ClientCommand, ClientOptions, INTERVAL_RANGE, LocalCommand, MISS_LIMIT_RANGE,
    MasterOptions, WireVersion,
};
use super::suggest::suggest;
use crate::keys::{self, KeyTarget, KeygenOptions};
use crate::log_sink::LogTarget;
use crate::logger;

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
pub struct Usage(
    /// What is wrong, naming the option; the dispatcher adds the
    /// "edge-gw: " prefix and the pointer to `--help`.
    pub String,
);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage(e.to_string())
    }
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
    log_to: Option<LogTarget>,
    /// `--agent`'s masters; empty when it came without an address.
    masters: Vec<String>,
    listen: Vec<String>,
    http: Option<String>,
    state_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    legacy_v1: bool,
    allow_plaintext: bool,
    max_connections: Option<usize>,
    threads: Option<usize>,
    user: Option<String>,
    cluster: Option<String>,
    node_name: Option<String>,
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
    /// `push --wait DURATION`.
    push_wait: Option<std::time::Duration>,
    /// `inbox --answer ID`.
    answer: Option<u64>,
    /// `inbox --exit N` (with `--answer`).
    exit: Option<i32>,
    /// `inbox --resolve ID` (the verdict is the positional word).
    resolve: Option<u64>,
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

/// Parses this process's command line.
pub fn parse_env() -> Result<Command, Usage> {
    parse_from(std::env::args_os().skip(1).collect())
}

/// Parses `args` (without the program name). `-h`/`--help` anywhere
/// before `--` wins, even where the parser would take it for a value
/// (`edge-gw --agent --help`) or stop at an earlier mistake, and names the
/// mode given with it, if any.
pub fn parse_from(args: Vec<OsString>) -> Result<Command, Usage> {
    if let Some(mode) = help_asked(&args) {
        return Ok(Command::Help(mode));
    }
    parse(lexopt::Parser::from_args(args))
}

/// `Some(mode)` if `args` ask for help, with the mode they name (the first
/// mode word that is not an option's value).
fn help_asked(args: &[OsString]) -> Option<Option<&'static str>> {
    let mut help = false;
    let mut mode = None;
    let mut value_next = false;
    for arg in args {
        let Some(a) = arg.to_str() else {
            value_next = false;
            continue;
        };
        if a == "--" {
            break;
        }
        if a == "-h" || a == "--help" {
            help = true;
        } else if mode.is_none() && !value_next {
            let word = a.split_once('=').map_or(a, |(name, _)| name);
            mode = MODES.iter().copied().find(|m| *m == word);
        }
        value_next = !a.contains('=') && (a == "--agent" || takes_value(a));
    }
    help.then_some(mode)
}

/// Parses the command line (without the program name already consumed by
/// lexopt).
pub fn parse(mut p: lexopt::Parser) -> Result<Command, Usage> {
    use lexopt::Arg::{Long, Short, Value};
    let mut s = Seen::default();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(s.mode.map(|m| m.1))),
            Short('V') | Long("version") => return Ok(Command::Version),
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
            Long("log") => {
                s.note("--log", ANY_MODE, false)?;
                let value = text(&mut p, "--log")?;
                s.log_to = Some(
                    LogTarget::from_name(&value)
                        .ok_or_else(|| bad_value("--log", &value, "expected stderr or syslog"))?,
                );
            }
            Long("master") => s.set_mode(MASTER, "--master")?,
            Long("agent") => {
                s.set_mode(AGENT, "--agent")?;
                s.masters = agent_masters(&mut p)?;
            }
            Value(v) if s.mode.is_none() => match v.to_str() {
                Some("keygen") => s.set_mode(KEYGEN, "keygen")?,
                Some("status") => s.set_mode(STATUS, "status")?,
                Some("agents") => s.set_mode(AGENTS, "agents")?,
                Some("push") => s.set_mode(PUSH, "push")?,
                Some("report") => s.set_mode(REPORT, "report")?,
                Some("inbox") => s.set_mode(INBOX, "inbox")?,
                Some("completions") => return completions(&mut p),
                Some("manpage") => {
                    nothing_more(&mut p, "manpage")?;
                    return Ok(Command::Manpage);
                }
                _ => {
                    let typed = v.to_string_lossy();
                    return Err(Usage(format!(
                        "unknown command {typed:?}{}: use --master, --agent HOST:PORT, keygen, status, agents, push, report, inbox, completions or manpage",
                        did_you_mean(&typed)
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
            Long("wait") if s.mode.is_some_and(|m| m.0 == PUSH) => {
                s.note("--wait", PUSH, false)?;
                let value = text(&mut p, "--wait")?;
                s.push_wait = Some(duration(&value).ok_or_else(|| {
                    bad_value("--wait", &value, "expected seconds, e.g. 30, 30s, 2m or 1h")
                })?);
            }
            Long("wait") => {
                s.note("--wait", INBOX, true)?;
                s.wait = true;
            }
            Long("answer") => {
                s.note("--answer", INBOX, false)?;
                s.answer = Some(push_id(&mut p, "--answer")?);
            }
            Long("exit") => {
                s.note("--exit", INBOX, false)?;
                let value = text(&mut p, "--exit")?;
                s.exit = Some(
                    value
                        .parse()
                        .map_err(|_| bad_value("--exit", &value, "expected an exit status"))?,
                );
            }
            Long("resolve") => {
                s.note("--resolve", INBOX, false)?;
                s.resolve = Some(push_id(&mut p, "--resolve")?);
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
            Long("cluster") => {
                s.note("--cluster", MASTER, false)?;
                s.cluster = Some(nonempty(&mut p, "--cluster")?);
            }
            Long("node-name") => {
                s.note("--node-name", MASTER, false)?;
                s.node_name = Some(nonempty(&mut p, "--node-name")?);
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
                s.heartbeat = Some(number(&mut p, "--heartbeat", INTERVAL_RANGE)?);
            }
            Long("miss-limit") => {
                s.note("--miss-limit", MASTER, false)?;
                s.miss_limit = Some(number(&mut p, "--miss-limit", MISS_LIMIT_RANGE)?);
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
                s.interval = Some(number(&mut p, "--interval", INTERVAL_RANGE)?);
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
            _ => return Err(unknown(arg)),
        }
    }
    finish(s)
}

/// `--agent`'s value: the masters, comma-separated. The value may be left
/// out (the next word is an option, or there is none) when the `--config`
/// file names them (`master = ...`), so a router's whole setup can live in
/// one file; `finish` refuses `--agent` with neither.
fn agent_masters(p: &mut lexopt::Parser) -> Result<Vec<String>, Usage> {
    let value = match p.optional_value() {
        Some(v) => Some(v),
        // No host name starts with '-': such a word is the next option.
        None => p
            .raw_args()?
            .next_if(|a| !a.to_string_lossy().starts_with('-')),
    };
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let value = value
        .into_string()
        .map_err(|raw| bad_value("--agent", &raw.to_string_lossy(), "not valid UTF-8"))?;
    super::host_port::master_list(value.split(','))
        .map_err(|why| bad_value("--agent", &value, &why))
}

/// The usage error for an option nobody knows, with the nearest known
/// one when the typo is small.
fn unknown(arg: lexopt::Arg<'_>) -> Usage {
    let hint = match &arg {
        lexopt::Arg::Long(name) => did_you_mean(&format!("--{name}")),
        _ => String::new(),
    };
    Usage(format!("{}{hint}", arg.unexpected()))
}

/// `"; did you mean '--x'?"`, or nothing when no known name is near.
fn did_you_mean(typed: &str) -> String {
    suggest(typed)
        .map(|s| format!("; did you mean '{s}'?"))
        .unwrap_or_default()
}

/// `edge-gw completions SHELL`.
fn completions(p: &mut lexopt::Parser) -> Result<Command, Usage> {
    let shells = SHELLS.join(", ");
    let Some(lexopt::Arg::Value(name)) = p.next()? else {
        return Err(Usage(format!("completions needs a shell: {shells}")));
    };
    let name = name.to_string_lossy();
    let shell = Shell::from_name(&name).ok_or_else(|| {
        Usage(format!(
            "completions: no script for {name:?}; choose {shells}"
        ))
    })?;
    nothing_more(p, "completions")?;
    Ok(Command::Completions(shell))
}

/// Refuses anything after a command that takes nothing more.
fn nothing_more(p: &mut lexopt::Parser, command: &str) -> Result<(), Usage> {
    match p.next()? {
        None => Ok(()),
        Some(extra) => Err(Usage(format!(
            "{command} takes nothing more: {}",
            extra.unexpected()
        ))),
    }
}

/// A push id (a positive number, as the API gave it).
fn push_id(p: &mut lexopt::Parser, name: &str) -> Result<u64, Usage> {
    let value = text(p, name)?;
    value
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| bad_value(name, &value, "expected a push id"))
}

/// A `--wait` duration: plain seconds or a number with `s`, `m` or `h`,
/// at most a day (a wait longer than that is a mistake, not a plan).
fn duration(v: &str) -> Option<std::time::Duration> {
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (1..=86_400)
        .contains(&secs)
        .then(|| std::time::Duration::from_secs(secs))
}

/// Checks the collected options against the mode and builds the action.
fn finish(mut s: Seen) -> Result<Command, Usage> {
    let Some((mode, mode_name)) = s.mode else {
        return Err(Usage(format!(
            "no mode given; the commands are:\n{}",
            super::manual::commands_text().trim_end()
        )));
    };
    if let Some(&(name, modes)) = s.options.iter().find(|&&(_, modes)| modes & mode == 0) {
        return Err(Usage(format!(
            "option '{name}' belongs to {}, not to {mode_name}",
            mode_names(modes)
        )));
    }
    let inbox_words = mode == INBOX && (s.answer.is_some() || s.resolve.is_some());
    if !s.values.is_empty() && mode & (PUSH | REPORT) == 0 && !inbox_words {
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
        Action::Client(
            client,
            ClientCommand::Push {
                to,
                text,
                wait: s.push_wait,
            },
        )
    } else if mode == REPORT {
        if s.values.is_empty() {
            return Err(Usage("report needs at least one KEY=VALUE".into()));
        }
        // The agent's local socket splits its line on whitespace, so a
        // space inside a pair would arrive as two words: refuse it here,
        // as a usage error, instead of letting the agent refuse half of it.
        let bad_pair = |v: &String| match v.split_once('=') {
            Some((k, val)) => {
                k.is_empty()
                    || !k.bytes().all(|b| b.is_ascii_graphic())
                    || val.chars().any(char::is_whitespace)
            }
            None => true,
        };
        if let Some(bad) = s.values.iter().find(|v| bad_pair(v)) {
            return Err(Usage(format!(
                "report: {bad:?} is not KEY=VALUE (a key of printable characters, no spaces)"
            )));
        }
        Action::Local(s.state_dir, LocalCommand::Report(s.values))
    } else if mode == INBOX {
        let cmd = match (s.answer, s.resolve) {
            (Some(_), Some(_)) => {
                return Err(Usage(
                    "inbox: --answer and --resolve cannot be combined".into(),
                ));
            }
            (Some(id), None) => {
                if s.values.len() > 1 {
                    return Err(Usage(
                        "inbox --answer takes the output as one argument (quote it), or reads stdin".into(),
                    ));
                }
                LocalCommand::Answer {
                    id,
                    exit: s.exit.unwrap_or(0),
                    text: s.values.pop(),
                }
            }
            (None, Some(id)) => match s.values.as_slice() {
                [v] if v == "delivered" || v == "retry" => LocalCommand::Resolve {
                    id,
                    verdict: v.clone(),
                },
                _ => {
                    return Err(Usage(
                        "inbox --resolve ID takes one word: delivered or retry".into(),
                    ));
                }
            },
            (None, None) => {
                if s.exit.is_some() {
                    return Err(Usage("inbox: --exit goes with --answer ID".into()));
                }
                LocalCommand::Inbox { wait: s.wait }
            }
        };
        Action::Local(s.state_dir, cmd)
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
            cluster: s.cluster,
            node_name: s.node_name,
        })
    } else if mode == AGENT {
        if s.masters.is_empty() && s.config.is_none() {
            return Err(Usage(
                "--agent needs the master's HOST:PORT (several: comma-separated), or --config FILE naming them (master = ...)".into(),
            ));
        }
        Action::Agent(AgentOptions {
            masters: s.masters,
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
        log_to: s.log_to,
        action,
    })
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
            log_to,
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
            "--log",
            "syslog",
        ])
        else {
            panic!("not a master command");
        };
        assert_eq!(opts.listen, ["[::]:9503", "10.0.0.1:0"]);
        assert!(opts.legacy_v1);
        assert_eq!(opts.heartbeat_secs, Some(5));
        assert_eq!(opts.keyring, Some(PathBuf::from("/k")));
        assert_eq!((level, verbosity), (Some(LevelFilter::Warn), 2));
        assert_eq!(log_to, Some(LogTarget::Syslog));
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
        assert_eq!(opts.masters, ["m.example:9503"]);
        assert_eq!(opts.wire, Some(WireVersion::V1));
        assert_eq!(opts.interval_secs, Some(3600));
        assert_eq!(opts.uuid.as_deref(), Some("abc"));
    }

    #[test]
    fn agent_master_lists() {
        let masters = |args: &[&str]| match parse_args(args) {
            Ok(Command::Run {
                action: Action::Agent(opts),
                ..
            }) => opts.masters,
            other => panic!("{args:?} parsed as {other:?}"),
        };
        assert_eq!(
            masters(&["--agent", "m1:9503,m2:9503,[::1]:9503"]),
            ["m1:9503", "m2:9503", "[::1]:9503"]
        );
        assert_eq!(masters(&["--agent=m1:1, m2:2"]), ["m1:1", "m2:2"]);
        // Without an address, the config file names the masters.
        assert!(masters(&["--agent", "--config", "a.toml"]).is_empty());
        assert!(masters(&["--config", "a.toml", "--agent"]).is_empty());
        for (bad, names) in [
            ("m1:9503,m2", "\"m2\": expected HOST:PORT"),
            ("m1:9503,m2:0", "\"m2:0\": the port must not be 0"),
            ("m1:9503,m2:65536", "\"m2:65536\""),
            ("m1:9503,,m2:1", "master 2 of the list is empty"),
            ("m1:9503,m1:9503", "listed twice"),
        ] {
            let e = usage_error(&["--agent", bad]);
            assert!(
                e.starts_with(&format!("invalid value '{bad}' for --agent")),
                "{e}"
            );
            assert!(e.contains(names), "{bad}: {e}");
        }
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
        assert!(usage_error(&["--agent"]).contains("needs the master's HOST:PORT"));
        assert!(usage_error(&["--agent", "--uuid", "u"]).contains("or --config FILE"));
        assert!(usage_error(&["--master", "--log-level", "loud"]).contains("--log-level"));
        assert!(usage_error(&["--agent", "m:1", "--log", "file"]).contains("--log"));
        for bad in ["bad key=1", "=1", "k=a b", "novalue"] {
            assert!(usage_error(&["report", bad]).contains("KEY=VALUE"), "{bad}");
        }
        assert!(matches!(parse_args(&["-V"]), Ok(Command::Version)));
        assert!(usage_error(&["--master", "--state-dir", ""]).contains("--state-dir"));
        assert!(usage_error(&["--agent", "h:1", "--group", " "]).contains("--group"));
    }

    #[test]
    fn help_and_version_win() {
        assert!(matches!(parse_args(&["-h"]), Ok(Command::Help(None))));
        assert!(matches!(
            parse_args(&["--master", "--help"]),
            Ok(Command::Help(Some("--master")))
        ));
        assert!(matches!(parse_args(&["--version"]), Ok(Command::Version)));
    }

    fn from(args: &[&str]) -> Result<Command, Usage> {
        parse_from(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn help_names_the_mode_wherever_it_is_asked() {
        for (args, mode) in [
            (&["--help"][..], None),
            (&["--help", "--master"][..], Some("--master")),
            (&["--agent", "--help"][..], Some("--agent")),
            (&["--agent=m:1", "-h"][..], Some("--agent")),
            (
                &["--agent", "m:1", "--bogus", "--help"][..],
                Some("--agent"),
            ),
            (
                &["--group", "push", "--agent", "m:1", "-h"][..],
                Some("--agent"),
            ),
            (&["inbox", "--answer", "3", "--help"][..], Some("inbox")),
            (&["completions", "--help"][..], Some("completions")),
        ] {
            match from(args) {
                Ok(Command::Help(m)) => assert_eq!(m, mode, "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        // After `--` it is push text.
        assert!(matches!(
            from(&["push", "--all", "--", "--help"]),
            Ok(Command::Run { .. })
        ));
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert!(
            usage_error(&["--agent", "m:1", "--intreval", "5"])
                .contains("did you mean '--interval'?")
        );
        assert!(usage_error(&["agnets"]).contains("did you mean 'agents'?"));
        assert!(!usage_error(&["--master", "--frobnicate"]).contains("did you mean"));
    }

    #[test]
    fn completions_and_manpage() {
        assert!(matches!(
            parse_args(&["completions", "bash"]),
            Ok(Command::Completions(Shell::Bash))
        ));
        assert!(matches!(parse_args(&["manpage"]), Ok(Command::Manpage)));
        assert!(usage_error(&["completions"]).contains("bash, zsh, fish"));
        assert!(usage_error(&["completions", "tcsh"]).contains("tcsh"));
        assert!(usage_error(&["completions", "bash", "x"]).contains("nothing more"));
        assert!(usage_error(&["manpage", "--to", "x"]).contains("nothing more"));
    }
}
