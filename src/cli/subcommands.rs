//! Running the one-shot subcommands: `keygen` (every build), the master's
//! API clients `status`, `agents` and `push` (master builds) and the
//! running agent's local clients `report` and `inbox` (agent builds).
//!
//! Each prints its own result and turns failure into an exit status; a
//! subcommand whose role is not built in exits with status 3.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::EXIT_FAILURE;
#[cfg(not(all(feature = "agent", feature = "master")))]
use super::exit::no_role;
#[cfg(feature = "master")]
use super::exit::outcome;
use super::options::{ClientCommand, ClientOptions, LocalCommand};
use super::output::say;
use crate::keys::{self, KeygenOptions};

/// `edge-gw status|agents|push`: one request to the master's HTTP API.
#[cfg(feature = "master")]
pub fn run_client(opts: ClientOptions, cmd: ClientCommand) -> ExitCode {
    if let ClientCommand::Push {
        to,
        text,
        wait: Some(wait),
    } = &cmd
    {
        return match super::push_wait::run(&opts, to, text, *wait) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                say(format_args!("edge-gw: {e}"));
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    outcome(super::api_client::run(&opts, &cmd))
}

/// `edge-gw status|agents|push` in a build without the master: exit
/// status 3.
#[cfg(not(feature = "master"))]
pub fn run_client(_opts: ClientOptions, _cmd: ClientCommand) -> ExitCode {
    no_role("master")
}

/// `edge-gw report|inbox`: talks to the running agent's local socket;
/// the exit status is the agent's answer (4: inbox empty).
#[cfg(feature = "agent")]
pub fn run_local(dir: Option<PathBuf>, cmd: LocalCommand) -> ExitCode {
    match crate::agent::local::run_cli(dir, &cmd) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say(format_args!("edge-gw: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `edge-gw report|inbox` in a build without the agent: exit status 3.
#[cfg(not(feature = "agent"))]
pub fn run_local(_dir: Option<PathBuf>, _cmd: LocalCommand) -> ExitCode {
    no_role("agent")
}

/// `edge-gw keygen`: writes the key file, prints or appends the keyring
/// line; exit status 1 with the reason if anything fails.
pub fn run_keygen(opts: &KeygenOptions) -> ExitCode {
    match keys::keygen(opts, &mut io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("edge-gw: keygen: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
