//! What the command line asks for, once parsed: the vocabulary between
//! the parser ([`super::parse`]) and the dispatcher (`src/main.rs`).
//!
//! Kept apart from the parser so the dispatcher can match on it without
//! seeing how options are spelled.

use std::path::PathBuf;

use log::LevelFilter;

use super::completions::Shell;
use super::options::{AgentOptions, ClientCommand, ClientOptions, LocalCommand, MasterOptions};
use crate::keys::KeygenOptions;
use crate::log_sink::LogTarget;

/// What the command line asks for.
#[derive(Debug)]
// Built once at startup; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// `-h`/`--help`: print the manual, or with a mode (`--master`,
    /// `push`, as spelled in [`super::flags::MODES`]) that mode's part of
    /// it. Wins over everything else, so a user can always get help, even
    /// from a broken command line.
    Help(Option<&'static str>),
    /// `--version`: print the version and the built-in roles.
    Version,
    /// `edge-gw completions SHELL`: print the shell's completion script.
    Completions(Shell),
    /// `edge-gw manpage`: print the manual as a man page.
    Manpage,
    /// Run a mode.
    Run {
        /// `--log-level`, if given.
        level: Option<LevelFilter>,
        /// Number of `-v` minus number of `-q`.
        verbosity: i32,
        /// `--log`, if given: where log lines go.
        log_to: Option<LogTarget>,
        /// The mode and its options.
        action: Action,
    },
}

/// The mode to run, with the options that belong to it.
#[derive(Debug)]
pub enum Action {
    /// `edge-gw --master`.
    Master(MasterOptions),
    /// `edge-gw --agent HOST:PORT`.
    Agent(AgentOptions),
    /// `edge-gw keygen`.
    Keygen(KeygenOptions),
    /// `edge-gw status|agents|push`: a client of the master's HTTP API.
    Client(ClientOptions, ClientCommand),
    /// `edge-gw report|inbox`: a client of the running agent's local
    /// socket in the given state directory (`None`: the agent's default).
    Local(Option<PathBuf>, LocalCommand),
}
