//! The `edge-gw` binary: parses the command line and dispatches to the
//! mode it names.
//!
//! Everything else lives in the library, in [`edge_gw::cli`] (parsing,
//! manual, exit statuses, running the modes), so it can be tested there and
//! this file stays a table of contents.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::process::ExitCode;

use edge_gw::cli::{Action, Command, exit, logging, manual, output, parse, roles, subcommands};

fn main() -> ExitCode {
    let command = match parse::parse_env() {
        Ok(command) => command,
        Err(usage) => return exit::usage_error(usage),
    };
    match command {
        Command::Help(mode) => output::print_stdout(&manual::help_for(mode)),
        Command::Version => output::print_stdout(&manual::version_text()),
        Command::Completions(shell) => roles::completions(shell),
        Command::Manpage => roles::manpage(),
        Command::Run {
            level,
            verbosity,
            log_to,
            action,
        } => {
            logging::init(level, verbosity, log_to);
            match action {
                Action::Master(opts) => roles::run_master(opts),
                Action::Agent(opts) => roles::run_agent(opts),
                Action::Keygen(opts) => subcommands::run_keygen(&opts),
                Action::Client(opts, cmd) => subcommands::run_client(opts, cmd),
                Action::Local(dir, cmd) => subcommands::run_local(dir, cmd),
            }
        }
    }
}
