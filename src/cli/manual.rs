//! The manual (`--help`, `MODE --help`, the bare `edge-gw`'s command list)
//! and the version text (`--version`).
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

/// The manual's sections: each heading (a line at column 0) with the
/// lines under it, in order. The headings are the section markers, so the
/// text needs no other markup to be cut up for `MODE --help`, the bare
/// `edge-gw` and the man page.
pub fn sections(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if !line.is_empty() && !line.starts_with(' ') {
            out.push((line, Vec::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push(line);
        }
    }
    out
}

/// The body of the section whose heading starts with `heading`, trailing
/// blank lines cut.
fn section_body(text: &str, heading: &str) -> Option<String> {
    let (_, body) = sections(text)
        .into_iter()
        .find(|(h, _)| h.starts_with(heading))?;
    Some(body.join("\n").trim_end().to_string() + "\n")
}

/// The COMMANDS section: what a bare `edge-gw` lists.
pub fn commands_text() -> String {
    section_body(&help_text(), "COMMANDS").unwrap_or_default()
}

/// `--help`, or after a mode (`edge-gw --master --help`) the part of the
/// manual for that mode: its options section, or its entries under
/// CLIENT COMMANDS and TOOLS, then the global options.
pub fn help_for(mode: Option<&str>) -> String {
    let text = help_text();
    let Some(mode) = mode else {
        return text;
    };
    let heading = match mode {
        "--master" => Some("MASTER OPTIONS"),
        "--agent" => Some("AGENT OPTIONS"),
        "keygen" => Some("KEYGEN OPTIONS"),
        _ => None,
    };
    let mut out = format!("edge-gw {mode}: its part of the manual (all of it: edge-gw --help)\n\n");
    match heading {
        Some(h) => {
            for (title, body) in sections(&text)
                .into_iter()
                .filter(|(t, _)| t.starts_with(h))
            {
                out.push_str(title);
                out.push('\n');
                out.push_str(body.join("\n").trim_end());
                out.push_str("\n\n");
            }
        }
        None => {
            // Entries are the lines at four spaces that start with the
            // command, each with the deeper-indented lines under it.
            let entry = format!("    edge-gw {mode}");
            // SYNOPSIS names every command on shared lines: not an entry.
            for (title, body) in sections(&text)
                .into_iter()
                .filter(|(t, _)| *t != "SYNOPSIS")
            {
                let mut taken = Vec::new();
                let mut inside = false;
                for line in body {
                    if !line.starts_with("     ") && !line.trim().is_empty() {
                        inside = line == entry || line.starts_with(&format!("{entry} "));
                    }
                    if inside {
                        taken.push(line);
                    }
                }
                if !taken.is_empty() {
                    out.push_str(title);
                    out.push('\n');
                    out.push_str(taken.join("\n").trim_end());
                    out.push_str("\n\n");
                }
            }
        }
    }
    if let Some(global) = section_body(&text, "GLOBAL OPTIONS") {
        out.push_str("GLOBAL OPTIONS\n");
        out.push_str(&global);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_help_is_the_mode_section_and_the_global_options() {
        let master = help_for(Some("--master"));
        assert!(master.contains("MASTER OPTIONS"));
        assert!(master.contains("--listen ADDR"));
        assert!(master.contains("GLOBAL OPTIONS"));
        assert!(!master.contains("AGENT OPTIONS"));
        assert!(!master.contains("--key-file"));
        let push = help_for(Some("push"));
        assert!(push.contains("CLIENT COMMANDS"));
        assert!(push.contains("edge-gw push (--to UUID"));
        assert!(push.contains("edge-gw push ... --wait DURATION TEXT"));
        assert!(!push.contains("edge-gw inbox"));
        assert!(!help_for(Some("status")).contains("SYNOPSIS"));
        let inbox = help_for(Some("inbox"));
        assert_eq!(inbox.matches("    edge-gw inbox").count(), 3);
        assert!(help_for(Some("completions")).contains("TOOLS"));
        assert_eq!(help_for(None), help_text());
    }

    #[test]
    fn commands_lists_every_mode() {
        let commands = commands_text();
        for mode in super::super::flags::MODES {
            assert!(commands.contains(&format!("    {mode} ")), "{mode}");
        }
    }

    #[test]
    fn help_fits_80_columns() {
        for line in help_text().lines() {
            assert!(line.chars().count() <= 80, "too long: {line}");
        }
    }
}
