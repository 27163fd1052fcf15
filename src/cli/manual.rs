//! The manual (`--help`) and the version text (`--version`).
//!
//! The manual's words live in `manual.txt`, a plain text file, so they can
//! be read and edited as text; this file only fills in what depends on the
//! build (the roles compiled in) and on the code (defaults, environment
//! variable), so the manual cannot drift from either.

use super::options::{
    DEFAULT_HEARTBEAT_SECS, DEFAULT_HTTP, DEFAULT_INTERVAL_SECS, DEFAULT_LISTEN, DEFAULT_MISS_LIMIT,
};
use crate::logger;

/// The roles built into this binary, e.g. `agent master`.
fn roles() -> &'static str {
    match (cfg!(feature = "agent"), cfg!(feature = "master")) {
        (true, true) => "agent master",
        (true, false) => "agent",
        (false, true) => "master",
        (false, false) => "none",
    }
}

/// The `--version` text: the version and the roles built in, because
/// which roles a binary has is what an operator needs to know first.
pub fn version_text() -> String {
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

/// The `--help` text: `manual.txt` with the build's roles and the
/// built-in defaults filled in.
///
/// `manual.txt` is a `format!` string: `{name}` marks a value filled in
/// below (the compiler refuses a name that is not), and a literal brace
/// must be written `{{` or `}}`.
pub fn help_text() -> String {
    format!(
        include_str!("manual.txt"),
        roles = roles(),
        env = logger::ENV_VAR,
        master_note = missing_note("master", cfg!(feature = "master")),
        agent_note = missing_note("agent", cfg!(feature = "agent")),
        listen = DEFAULT_LISTEN,
        http = DEFAULT_HTTP,
        heartbeat = DEFAULT_HEARTBEAT_SECS,
        miss_limit = DEFAULT_MISS_LIMIT,
        interval = DEFAULT_INTERVAL_SECS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_fits_80_columns() {
        for line in help_text().lines() {
            assert!(line.chars().count() <= 80, "too long: {line}");
        }
    }
}
