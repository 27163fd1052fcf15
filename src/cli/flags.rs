//! Every command and long option `edge-gw` knows, in one table: what the
//! shell completions offer ([`super::completions`]), what "did you mean"
//! suggests ([`super::suggest`]) and what `--MODE --help` finds.
//!
//! The parser ([`super::parse`]) stays the authority on what an option
//! does; a test checks that this table names exactly the options the
//! parser matches, so neither can gain one the other lacks.

/// The modes, as spelled on the command line: the two role flags, then the
/// subcommands, then the tools that print text.
pub const MODES: &[&str] = &[
    "--master",
    "--agent",
    "keygen",
    "status",
    "agents",
    "push",
    "report",
    "inbox",
    "completions",
    "manpage",
];

/// The subcommand words of [`MODES`] (the rest are options).
pub fn subcommands() -> impl Iterator<Item = &'static str> {
    MODES.iter().copied().filter(|m| !m.starts_with('-'))
}

/// What an option's value is, so a shell can complete it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A switch: no value.
    None,
    /// A file name.
    File,
    /// A directory name.
    Dir,
    /// A command line (`--on-push`).
    Command,
    /// A user name.
    User,
    /// One of these words.
    Words(&'static [&'static str]),
    /// Anything else (addresses, numbers, names): nothing to offer.
    Text,
}

/// One long option: its name with the dashes, the short form if any, its
/// value, and the modes it belongs to (empty: every mode).
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// `--name`.
    pub name: &'static str,
    /// `-x`, if there is one.
    pub short: Option<&'static str>,
    /// What follows it.
    pub value: Value,
    /// The [`MODES`] it goes with; empty for the global options.
    pub modes: &'static [&'static str],
}

const fn flag(name: &'static str, value: Value, modes: &'static [&'static str]) -> Flag {
    Flag {
        name,
        short: None,
        value,
        modes,
    }
}

const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];
const CLIENT: &[&str] = &["status", "agents", "push"];
const NOT_KEYGEN: &[&str] = &[
    "--master", "--agent", "status", "agents", "push", "report", "inbox",
];

/// Every long option. `--wait` is listed twice: a switch for `inbox`, a
/// duration for `push`.
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--help",
        short: Some("-h"),
        value: Value::None,
        modes: &[],
    },
    Flag {
        name: "--version",
        short: Some("-V"),
        value: Value::None,
        modes: &[],
    },
    Flag {
        name: "--quiet",
        short: Some("-q"),
        value: Value::None,
        modes: &[],
    },
    Flag {
        name: "--verbose",
        short: Some("-v"),
        value: Value::None,
        modes: &[],
    },
    flag("--log-level", Value::Words(LEVELS), &[]),
    flag("--log", Value::Words(&["stderr", "syslog"]), &[]),
    flag("--listen", Value::Text, &["--master"]),
    flag(
        "--http",
        Value::Text,
        &["--master", "status", "agents", "push"],
    ),
    flag("--state-dir", Value::Dir, NOT_KEYGEN),
    flag("--config", Value::File, &["--master", "--agent"]),
    flag("--legacy-v1", Value::None, &["--master"]),
    flag("--allow-plaintext", Value::None, &["--master"]),
    flag("--keyring", Value::File, &["--master", "keygen"]),
    flag("--max-connections", Value::Text, &["--master"]),
    flag("--threads", Value::Text, &["--master"]),
    flag("--user", Value::User, &["--master"]),
    flag("--cluster", Value::Text, &["--master"]),
    flag("--node-name", Value::Text, &["--master"]),
    flag("--heartbeat", Value::Text, &["--master"]),
    flag("--miss-limit", Value::Text, &["--master"]),
    flag("--key-file", Value::File, &["--agent"]),
    flag("--uuid", Value::Text, &["--agent", "keygen"]),
    flag("--group", Value::Text, &["--agent", "push"]),
    flag("--interval", Value::Text, &["--agent"]),
    flag("--on-push", Value::Command, &["--agent"]),
    flag("--wire", Value::Words(&["v1", "v2"]), &["--agent"]),
    flag("--fleet", Value::None, &["keygen"]),
    flag("--out", Value::File, &["keygen"]),
    flag("--token-file", Value::File, CLIENT),
    flag("--to", Value::Text, &["push"]),
    flag("--all", Value::None, &["push"]),
    flag("--wait", Value::Text, &["push"]),
    flag("--wait", Value::None, &["inbox"]),
    flag("--answer", Value::Text, &["inbox"]),
    flag("--exit", Value::Text, &["inbox"]),
    flag("--resolve", Value::Text, &["inbox"]),
];

/// The shells `edge-gw completions` writes for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// The options of `mode` (global ones included), in table order, each
/// name once.
pub fn flags_of(mode: &str) -> Vec<&'static Flag> {
    FLAGS
        .iter()
        .filter(|f| f.modes.is_empty() || f.modes.contains(&mode))
        .collect()
}

/// Whether `name` (`--x`) takes a value in any mode.
pub fn takes_value(name: &str) -> bool {
    FLAGS
        .iter()
        .any(|f| f.name == name && f.value != Value::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The long options the parser matches, read from its source: the
    /// table and the parser must list the same ones.
    #[test]
    fn the_table_names_exactly_what_the_parser_matches() {
        let src = include_str!("parse.rs");
        let parsed: BTreeSet<String> = src
            .split("Long(\"")
            .skip(1)
            .filter_map(|rest| rest.split_once('"').map(|(name, _)| format!("--{name}")))
            .collect();
        let table: BTreeSet<String> = FLAGS
            .iter()
            .map(|f| f.name.to_string())
            .chain(
                MODES
                    .iter()
                    .filter(|m| m.starts_with("--"))
                    .map(|m| m.to_string()),
            )
            .collect();
        assert_eq!(parsed, table);
    }

    /// Every option the manual describes is in the table, and every one
    /// in the table is described.
    #[test]
    fn the_manual_describes_every_option_in_the_table() {
        let manual = super::super::manual::help_text();
        // `--to` must be found as itself, not inside `--token-file`.
        let mentions = |name: &str| {
            manual.match_indices(name).any(|(i, _)| {
                !manual[i + name.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            })
        };
        for f in FLAGS {
            assert!(mentions(f.name), "{}", f.name);
        }
        for word in subcommands() {
            assert!(manual.contains(&format!("edge-gw {word}")), "{word}");
        }
    }

    #[test]
    fn flags_of_a_mode() {
        let master: Vec<&str> = flags_of("--master").iter().map(|f| f.name).collect();
        assert!(master.contains(&"--listen") && master.contains(&"--log-level"));
        assert!(!master.contains(&"--key-file"));
        assert!(takes_value("--wait") && !takes_value("--fleet"));
    }
}
