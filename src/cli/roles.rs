//! Running the two long-lived roles, `--master` and `--agent`, or refusing
//! one that was left out of the build (exit status 3), so no code of a
//! missing role is linked in.

use std::process::ExitCode;

#[cfg(not(all(feature = "agent", feature = "master")))]
use super::exit::no_role;
#[cfg(any(feature = "agent", feature = "master"))]
use super::exit::outcome;
use super::options::{AgentOptions, MasterOptions};

/// `edge-gw --master`: runs until stopped; exit status 1 if it fails.
#[cfg(feature = "master")]
pub fn run_master(opts: MasterOptions) -> ExitCode {
    outcome(crate::master::run(opts))
}

/// `edge-gw --master` in a build without the master: exit status 3.
#[cfg(not(feature = "master"))]
pub fn run_master(_opts: MasterOptions) -> ExitCode {
    no_role("master")
}

/// `edge-gw completions SHELL`: the script on stdout.
#[cfg(feature = "master")]
pub fn completions(shell: super::completions::Shell) -> ExitCode {
    super::output::print_stdout(&super::completions::script(shell))
}

/// `edge-gw manpage`: the manual as roff on stdout.
#[cfg(feature = "master")]
pub fn manpage() -> ExitCode {
    super::output::print_stdout(&super::manpage::roff())
}

/// `edge-gw completions` in an agent-only (router) build: exit status 3.
#[cfg(not(feature = "master"))]
pub fn completions(_shell: super::completions::Shell) -> ExitCode {
    super::exit::not_in_router_build("completions")
}

/// `edge-gw manpage` in an agent-only (router) build: exit status 3.
#[cfg(not(feature = "master"))]
pub fn manpage() -> ExitCode {
    super::exit::not_in_router_build("manpage")
}

/// `edge-gw --agent`: runs until stopped; exit status 1 if it fails.
#[cfg(feature = "agent")]
pub fn run_agent(opts: AgentOptions) -> ExitCode {
    outcome(crate::agent::run(opts))
}

/// `edge-gw --agent` in a build without the agent: exit status 3.
#[cfg(not(feature = "agent"))]
pub fn run_agent(_opts: AgentOptions) -> ExitCode {
    no_role("agent")
}
