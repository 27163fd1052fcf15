//! The agent's settings: defaults, then the `--config` file, then the
//! command line (which wins).
//!
//! The file is flat TOML — `key = value` lines, `#` comments, values that
//! are strings, whole numbers, booleans or lists of strings — read by a
//! small parser of that subset, because a full TOML parser would add more
//! to the router binary than the whole health reader. Unknown keys and
//! anything outside the subset (tables, dates, floats) are errors naming
//! the line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::options::{AgentOptions, DEFAULT_INTERVAL_SECS, INTERVAL_RANGE, WireVersion};

/// Fully resolved agent settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSettings {
    /// The masters, each `HOST:PORT`, in the order they are tried (at
    /// least one: [`AgentSettings::load`] refuses settings without).
    pub masters: Vec<String>,
    /// Key file.
    pub key_file: Option<PathBuf>,
    /// Uuid override.
    pub uuid: Option<String>,
    /// Group label.
    pub group: Option<String>,
    /// Report interval.
    pub interval: Duration,
    /// Push hook command.
    pub on_push: Option<String>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Wire version.
    pub wire: WireVersion,
    /// Mount points whose usage is reported.
    pub mounts: Vec<String>,
    /// Reports kept while disconnected.
    pub report_ring: usize,
    /// Bytes of reports kept while disconnected.
    pub report_ring_bytes: usize,
    /// Pushes waiting for the local consumer.
    pub inbox_messages: usize,
    /// Bytes of pushes waiting for the local consumer.
    pub inbox_bytes: usize,
    /// Time a hook may take.
    pub hook_timeout: Duration,
    /// Most bytes of a push result (the hook's stdout, then its stderr);
    /// longer output is cut and marked truncated.
    pub result_max_bytes: usize,
    /// `log_level` from the config file: the level when neither the
    /// command line nor `$EDGE_GW_LOG` sets one (changes on SIGHUP).
    pub log_level: Option<log::LevelFilter>,
}

/// One value of the flat TOML subset.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
    List(Vec<String>),
}

/// Parses `key = value` lines.
fn parse(text: &str) -> Result<Vec<(usize, String, Value)>, String> {
    let mut out: Vec<(usize, String, Value)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {n}: expected key = value"));
        };
        let key = k.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("line {n}: bad key {key:?}"));
        }
        if out.iter().any(|(_, k, _)| k == key) {
            return Err(format!("line {n}: {key} is set twice"));
        }
        let value = value(v.trim()).map_err(|e| format!("line {n}: {key}: {e}"))?;
        out.push((n, key.to_string(), value));
    }
    Ok(out)
}

/// A value, with an optional trailing comment.
fn value(v: &str) -> Result<Value, String> {
    if let Some(rest) = v.strip_prefix('"') {
        let (s, tail) = string(rest)?;
        comment_only(tail)?;
        return Ok(Value::Str(s));
    }
    if let Some(mut rest) = v.strip_prefix('[') {
        let mut items = Vec::new();
        loop {
            rest = rest.trim_start();
            if let Some(tail) = rest.strip_prefix(']') {
                comment_only(tail)?;
                return Ok(Value::List(items));
            }
            let Some(r) = rest.strip_prefix('"') else {
                return Err("lists hold strings in double quotes".into());
            };
            let (s, tail) = string(r)?;
            items.push(s);
            rest = tail.trim_start();
            if let Some(t) = rest.strip_prefix(',') {
                rest = t;
            } else if !rest.starts_with(']') {
                return Err("expected , or ] in the list".into());
            }
        }
    }
    let word = v.split('#').next().unwrap_or("").trim();
    match word {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        _ => word
            .replace('_', "")
            .parse::<u64>()
            .map(Value::Int)
            .map_err(|_| format!("{word:?} is not a string, whole number, boolean or list")),
    }
}

/// A basic string body after the opening quote: the string and the rest.
fn string(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                _ => return Err("unsupported escape in a string".into()),
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

fn comment_only(tail: &str) -> Result<(), String> {
    let t = tail.trim();
    if t.is_empty() || t.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected {t:?} after the value"))
    }
}

impl AgentSettings {
    /// Resolves settings from the command line and its `--config` file.
    pub fn load(opts: &AgentOptions) -> Result<AgentSettings, String> {
        let mut s = AgentSettings {
            masters: Vec::new(),
            key_file: None,
            uuid: None,
            group: None,
            interval: Duration::from_secs(u64::from(DEFAULT_INTERVAL_SECS)),
            on_push: None,
            state_dir: super::default_state_dir(),
            wire: WireVersion::V2,
            mounts: vec!["/".into()],
            report_ring: super::RING_REPORTS,
            report_ring_bytes: super::RING_BYTES,
            inbox_messages: super::INBOX_MESSAGES,
            inbox_bytes: super::INBOX_BYTES,
            hook_timeout: super::HOOK_TIMEOUT,
            result_max_bytes: super::RESULT_MAX_BYTES,
            log_level: None,
        };
        if let Some(p) = &opts.config {
            s.apply_file(p)?;
        }
        if !opts.masters.is_empty() {
            s.masters.clone_from(&opts.masters);
        }
        if s.masters.is_empty() {
            return Err(match &opts.config {
                Some(p) => format!(
                    "no master: give --agent HOST:PORT, or master = \"HOST:PORT\" (or a list) in {}",
                    p.display()
                ),
                None => "no master: give --agent HOST:PORT".into(),
            });
        }
        if opts.key_file.is_some() {
            s.key_file.clone_from(&opts.key_file);
        }
        if opts.uuid.is_some() {
            s.uuid.clone_from(&opts.uuid);
        }
        if opts.group.is_some() {
            s.group.clone_from(&opts.group);
        }
        if let Some(i) = opts.interval_secs {
            s.interval = Duration::from_secs(u64::from(i));
        }
        if opts.on_push.is_some() {
            s.on_push.clone_from(&opts.on_push);
        }
        if let Some(d) = &opts.state_dir {
            s.state_dir.clone_from(d);
        }
        if let Some(w) = opts.wire {
            s.wire = w;
        }
        Ok(s)
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let at = |n: usize, e: &str| format!("{}:{n}: {e}", path.display());
        for (n, key, v) in parse(&text).map_err(|e| format!("{}: {e}", path.display()))? {
            let range = |v: &Value, lo: u64, hi: u64| match v {
                Value::Int(i) if (lo..=hi).contains(i) => Ok(*i),
                _ => Err(at(
                    n,
                    &format!("{key} must be a whole number from {lo} to {hi}"),
                )),
            };
            let text = |v: &Value| match v {
                Value::Str(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(at(n, &format!("{key} must be a non-empty string"))),
            };
            match key.as_str() {
                // One string (commas allowed, as on the command line) or
                // a list of strings.
                "master" => {
                    let list = match &v {
                        Value::Str(s) => crate::cli::host_port::master_list(s.split(',')),
                        Value::List(l) => {
                            crate::cli::host_port::master_list(l.iter().map(String::as_str))
                        }
                        _ => Err(
                            "master must be \"HOST:PORT\" or a list [\"HOST:PORT\", ...]".into(),
                        ),
                    };
                    self.masters = list.map_err(|e| at(n, &e))?;
                }
                "key_file" => self.key_file = Some(PathBuf::from(text(&v)?)),
                "uuid" => self.uuid = Some(text(&v)?),
                "group" => self.group = Some(text(&v)?),
                "interval" => {
                    let i = range(
                        &v,
                        u64::from(*INTERVAL_RANGE.start()),
                        u64::from(*INTERVAL_RANGE.end()),
                    )?;
                    self.interval = Duration::from_secs(i);
                }
                "on_push" => self.on_push = Some(text(&v)?),
                "state_dir" => self.state_dir = PathBuf::from(text(&v)?),
                "wire" => {
                    let t = text(&v)?;
                    self.wire = WireVersion::from_name(&t)
                        .ok_or_else(|| at(n, "wire must be \"v1\" or \"v2\""))?;
                }
                "mounts" => match v {
                    Value::List(l) if l.len() <= super::health::MAX_MOUNTS => self.mounts = l,
                    _ => {
                        return Err(at(
                            n,
                            &format!(
                                "mounts must be a list of at most {} paths",
                                super::health::MAX_MOUNTS
                            ),
                        ));
                    }
                },
                "report_ring" => self.report_ring = range(&v, 1, 100_000)? as usize,
                "report_ring_bytes" => self.report_ring_bytes = range(&v, 1024, 64 << 20)? as usize,
                "inbox_messages" => self.inbox_messages = range(&v, 1, 10_000)? as usize,
                "inbox_bytes" => self.inbox_bytes = range(&v, 1024, 64 << 20)? as usize,
                "hook_timeout" => self.hook_timeout = Duration::from_secs(range(&v, 1, 3600)?),
                "result_max_bytes" => self.result_max_bytes = range(&v, 64, 1 << 20)? as usize,
                "log_level" => {
                    let name = text(&v)?;
                    self.log_level = Some(crate::logger::parse_level(&name).ok_or_else(|| {
                        at(
                            n,
                            "log_level must be error, warn, info, debug, trace or off",
                        )
                    })?);
                }
                other => return Err(at(n, &format!("unknown key {other:?}"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_parser() {
        let p =
            parse("# c\n a = \"x\\\"y\" # note\nb = 1_000\nc = true\nd = [\"/\", \"/overlay\",]\n")
                .unwrap();
        assert_eq!(p[0].2, Value::Str("x\"y".into()));
        assert_eq!(p[1].2, Value::Int(1000));
        assert_eq!(p[2].2, Value::Bool(true));
        assert_eq!(p[3].2, Value::List(vec!["/".into(), "/overlay".into()]));
        for bad in [
            "x",
            "a = 1.5",
            "a = \"open",
            "[t]",
            "a = [1]",
            "a = \"x\" y",
            "a = 1\na = 2",
            "b c = 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_then_command_line() {
        let dir =
            std::env::temp_dir().join(format!("edge-gw-agent-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("agent.toml");
        std::fs::write(
            &f,
            "interval = 30\ngroup = \"lab\"\nmounts = [\"/\", \"/tmp\"]\nreport_ring = 100\nwire = \"v1\"\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let opts = AgentOptions {
            masters: vec!["m:1".into()],
            config: Some(f.clone()),
            interval_secs: Some(5),
            ..AgentOptions::default()
        };
        let s = AgentSettings::load(&opts).unwrap();
        assert_eq!(s.interval, Duration::from_secs(5), "the command line wins");
        assert_eq!(s.group.as_deref(), Some("lab"));
        assert_eq!(s.mounts, ["/", "/tmp"]);
        assert_eq!(s.report_ring, 100);
        assert_eq!(s.wire, WireVersion::V1);
        assert_eq!(s.log_level, Some(log::LevelFilter::Debug));
        std::fs::write(&f, "intervall = 30\n").unwrap();
        let e = AgentSettings::load(&opts).unwrap_err();
        assert!(e.contains(":1: unknown key \"intervall\""), "{e}");
        std::fs::write(&f, "interval = 0\n").unwrap();
        assert!(
            AgentSettings::load(&opts)
                .unwrap_err()
                .contains("from 1 to 3600")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn masters_from_the_file_or_the_command_line() {
        let dir =
            std::env::temp_dir().join(format!("edge-gw-agent-masters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("agent.toml");
        let file_only = AgentOptions {
            config: Some(f.clone()),
            ..AgentOptions::default()
        };
        std::fs::write(&f, "master = [\"m1:9503\", \"m2:9503\"]\n").unwrap();
        let s = AgentSettings::load(&file_only).unwrap();
        assert_eq!(s.masters, ["m1:9503", "m2:9503"]);
        std::fs::write(&f, "master = \"m1:9503,m2:9503\"\n").unwrap();
        assert_eq!(
            AgentSettings::load(&file_only).unwrap().masters,
            ["m1:9503", "m2:9503"]
        );
        let both = AgentOptions {
            masters: vec!["c:1".into()],
            ..file_only.clone()
        };
        assert_eq!(
            AgentSettings::load(&both).unwrap().masters,
            ["c:1"],
            "the command line wins"
        );
        for (bad, names) in [
            (
                "master = [\"m1:9503\", \"m2\"]\n",
                ":1: master \"m2\": expected HOST:PORT",
            ),
            (
                "master = \"m1:0\"\n",
                ":1: master \"m1:0\": the port must not be 0",
            ),
            ("master = []\n", ":1: the list of masters is empty"),
            ("master = 9503\n", ":1: master must be"),
            (
                "# no master\ninterval = 5\n",
                "no master: give --agent HOST:PORT, or master =",
            ),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = AgentSettings::load(&file_only).unwrap_err();
            assert!(e.contains(names), "{bad:?}: {e}");
        }
        assert!(
            AgentSettings::load(&AgentOptions::default())
                .unwrap_err()
                .contains("no master")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
