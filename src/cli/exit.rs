//! The exit statuses of `edge-gw` and how results become them.
//!
//! Scripts and service managers act on these numbers, and the manual
//! (EXIT STATUS) promises them, so they are named once, here.

use std::process::ExitCode;

use super::output::say;
use super::parse::Usage;

/// Exit status: the role or keygen failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: bad command line.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the requested role is not built in. Routers ship without
/// the master, and a script asking for it must be able to tell "not here"
/// from "failed".
pub const EXIT_NO_ROLE: u8 = 3;

/// Reports a command-line mistake with a pointer to `--help`; exit status
/// [`EXIT_USAGE`].
pub fn usage_error(usage: Usage) -> ExitCode {
    let Usage(message) = usage;
    say(format_args!(
        "edge-gw: {message}\nTry 'edge-gw --help' for more information."
    ));
    ExitCode::from(EXIT_USAGE)
}

/// Exit status for a role's result.
#[cfg(any(feature = "agent", feature = "master"))]
pub(super) fn outcome(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("edge-gw: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// A text tool left out of agent-only (router) builds to keep them small:
/// exit status 3, as for a missing role.
#[cfg(not(feature = "master"))]
pub(super) fn not_in_router_build(what: &str) -> ExitCode {
    say(format_args!(
        "edge-gw: `{what}` is not in this agent-only build (kept small for routers); run it with a server build (--features master)"
    ));
    ExitCode::from(EXIT_NO_ROLE)
}

/// Refuses a role that was left out of the build.
#[cfg(not(all(feature = "agent", feature = "master")))]
pub(super) fn no_role(role: &str) -> ExitCode {
    say(format_args!(
        "edge-gw: this build has no {role} role; rebuild with --features {role}"
    ));
    ExitCode::from(EXIT_NO_ROLE)
}
