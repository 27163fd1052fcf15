//! `edge-gw completions bash|zsh|fish`: shell completion scripts made from
//! the option table ([`super::flags`]) the parser is checked against, so
//! they offer exactly the options each mode takes.
//!
//! Each script finds the mode (the first of `--master`, `--agent`, or a
//! subcommand on the line), then completes the value of the option just
//! typed (files, directories, users, commands or a list of words) or the
//! options of that mode.
//!
//! The scripts are made only in builds with the master (servers and
//! desktops, where shells complete); a router's agent-only build keeps the
//! bytes (`board/README.md`) and answers with exit status 3.

#[cfg(feature = "master")]
use std::fmt::Write;

#[cfg(any(feature = "master", doc))]
use super::flags::SHELLS;
#[cfg(feature = "master")]
use super::flags::{FLAGS, Flag, MODES, Value, flags_of, subcommands};

/// A shell `edge-gw completions` writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    /// bash (with bash-completion's `complete -F`).
    Bash,
    /// zsh (a `#compdef` function; also works when sourced).
    Zsh,
    /// fish (`complete -c` lines).
    Fish,
}

impl Shell {
    /// The shell named `name`, if it is one of [`SHELLS`].
    pub fn from_name(name: &str) -> Option<Shell> {
        match name {
            "bash" => Some(Shell::Bash),
            "zsh" => Some(Shell::Zsh),
            "fish" => Some(Shell::Fish),
            _ => None,
        }
    }
}

/// The completion script for `shell`.
#[cfg(feature = "master")]
pub fn script(shell: Shell) -> String {
    match shell {
        Shell::Bash => bash(),
        Shell::Zsh => zsh(),
        Shell::Fish => fish(),
    }
}

/// The names of `flags`, space-separated, with the short forms.
#[cfg(feature = "master")]
fn names(flags: &[&Flag]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for f in flags {
        for n in f.short.into_iter().chain([f.name]) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out.join(" ")
}

/// What `edge-gw` offers with no mode yet: the modes and global options.
#[cfg(feature = "master")]
fn top_level() -> String {
    format!("{} {}", MODES.join(" "), names(&flags_of("")))
}

/// The options of `mode` whose value is `kind`, as a `a|b` pattern; `None`
/// if there are none. `--agent` takes its address as a value.
#[cfg(feature = "master")]
fn value_pattern(mode: &str, kind: fn(Value) -> bool) -> Option<String> {
    let mut names: Vec<&str> = flags_of(mode)
        .into_iter()
        .filter(|f| kind(f.value))
        .map(|f| f.name)
        .collect();
    if mode == "--agent" && kind(Value::Text) {
        names.push("--agent");
    }
    names.dedup();
    (!names.is_empty()).then(|| names.join("|"))
}

/// One `case` arm per value kind for bash and zsh, which share the
/// pattern syntax; `reply` says how each shell offers a kind.
#[cfg(feature = "master")]
fn value_arms(mode: &str, indent: &str, reply: &dyn Fn(Value) -> String) -> String {
    let mut out = String::new();
    let kinds: [fn(Value) -> bool; 5] = [
        |v| v == Value::File,
        |v| v == Value::Dir,
        |v| v == Value::User,
        |v| v == Value::Command,
        |v| v == Value::Text,
    ];
    let values = [
        Value::File,
        Value::Dir,
        Value::User,
        Value::Command,
        Value::Text,
    ];
    for (kind, value) in kinds.into_iter().zip(values) {
        if let Some(p) = value_pattern(mode, kind) {
            let _ = writeln!(out, "{indent}({p}) {}; return ;;", reply(value));
        }
    }
    for f in flags_of(mode) {
        if let Value::Words(words) = f.value {
            let _ = writeln!(
                out,
                "{indent}({}) {}; return ;;",
                f.name,
                reply(Value::Words(words))
            );
        }
    }
    out
}

#[cfg(feature = "master")]
fn bash_reply(v: Value) -> String {
    match v {
        Value::File => {
            "compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\"))".into()
        }
        Value::Dir => {
            "compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- \"$cur\"))".into()
        }
        Value::User => "COMPREPLY=($(compgen -u -- \"$cur\"))".into(),
        Value::Command => "COMPREPLY=($(compgen -c -- \"$cur\"))".into(),
        Value::Words(w) => format!("COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))", w.join(" ")),
        Value::Text | Value::None => "COMPREPLY=()".into(),
    }
}

#[cfg(feature = "master")]
fn bash() -> String {
    let modes = MODES.join("|");
    let mut arms = String::new();
    for mode in std::iter::once("").chain(MODES.iter().copied()) {
        let label = if mode.is_empty() { "''" } else { mode };
        let _ = writeln!(arms, "        {label})");
        let _ = writeln!(arms, "            case $prev in");
        arms.push_str(&value_arms(mode, "                ", &bash_reply));
        let _ = writeln!(arms, "            esac");
        let offer = match mode {
            "" => top_level(),
            "completions" => SHELLS.join(" "),
            _ => names(&flags_of(mode)),
        };
        let _ = writeln!(
            arms,
            "            COMPREPLY=($(compgen -W \"{offer}\" -- \"$cur\")) ;;"
        );
    }
    format!(
        r#"# bash completion for edge-gw, made by `edge-gw completions bash`.
# Install: edge-gw completions bash > /etc/bash_completion.d/edge-gw
#     (or ~/.local/share/bash-completion/completions/edge-gw)
_edge_gw() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local mode= w i
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        case $w in
            {modes}|--agent=*) mode=${{w%%=*}}; break ;;
        esac
    done
    case $mode in
{arms}    esac
}}
complete -F _edge_gw edge-gw
"#
    )
}

#[cfg(feature = "master")]
fn zsh_reply(v: Value) -> String {
    match v {
        Value::File => "_files".into(),
        Value::Dir => "_files -/".into(),
        Value::User => "_users".into(),
        Value::Command => "_command_names -e".into(),
        Value::Words(w) => format!("compadd -- {}", w.join(" ")),
        Value::Text | Value::None => "_message 'a value'".into(),
    }
}

#[cfg(feature = "master")]
fn zsh() -> String {
    let modes = MODES.join("|");
    let mut arms = String::new();
    for mode in std::iter::once("").chain(MODES.iter().copied()) {
        let label = if mode.is_empty() { "''" } else { mode };
        let _ = writeln!(arms, "        ({label})");
        let _ = writeln!(arms, "            case $prev in");
        arms.push_str(&value_arms(mode, "                ", &zsh_reply));
        let _ = writeln!(arms, "            esac");
        let offer = match mode {
            "" => top_level(),
            "completions" => SHELLS.join(" "),
            _ => names(&flags_of(mode)),
        };
        let _ = writeln!(arms, "            compadd -- {offer} ;;");
    }
    format!(
        r#"#compdef edge-gw
# zsh completion for edge-gw, made by `edge-gw completions zsh`.
# Install: edge-gw completions zsh > "${{fpath[1]}}/_edge-gw"
#     (or: source <(edge-gw completions zsh), after compinit)
_edge_gw() {{
    local mode= w i prev=${{words[CURRENT-1]}}
    for ((i = 2; i < CURRENT; i++)); do
        w=${{words[i]}}
        case $w in
            ({modes}|--agent=*) mode=${{w%%=*}}; break ;;
        esac
    done
    case $mode in
{arms}    esac
}}
if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
    _edge_gw "$@"
else
    compdef _edge_gw edge-gw
fi
"#
    )
}

/// The `complete` flags that say how fish completes an option's value.
#[cfg(feature = "master")]
fn fish_value(v: Value) -> String {
    match v {
        Value::None => String::new(),
        Value::File => " -r -F".into(),
        Value::Dir => " -x -a '(__fish_complete_directories)'".into(),
        Value::User => " -x -a '(__fish_complete_users)'".into(),
        Value::Command => " -x -a '(__fish_complete_command)'".into(),
        Value::Words(w) => format!(" -x -a '{}'", w.join(" ")),
        Value::Text => " -x".into(),
    }
}

#[cfg(feature = "master")]
fn fish() -> String {
    let modes = MODES.join(" ");
    let mut out = format!(
        r#"# fish completion for edge-gw, made by `edge-gw completions fish`.
# Install: edge-gw completions fish > ~/.config/fish/completions/edge-gw.fish
function __edge_gw_mode
    for w in (commandline -opc)[2..-1]
        switch $w
            case {modes}
                echo $w
                return 0
            case '--agent=*'
                echo --agent
                return 0
        end
    end
    return 1
end
function __edge_gw_in
    set -l m (__edge_gw_mode); or return 1
    contains -- $m $argv
end
complete -c edge-gw -f
complete -c edge-gw -n 'not __edge_gw_mode' -a '{subs}'
complete -c edge-gw -n 'not __edge_gw_mode' -l master
complete -c edge-gw -n 'not __edge_gw_mode' -l agent -x
complete -c edge-gw -n '__edge_gw_in completions' -x -a '{shells}'
"#,
        subs = subcommands().collect::<Vec<_>>().join(" "),
        shells = SHELLS.join(" "),
    );
    for f in FLAGS {
        let cond = if f.modes.is_empty() {
            String::new()
        } else {
            format!(" -n '__edge_gw_in {}'", f.modes.join(" "))
        };
        let short = f
            .short
            .map(|s| format!(" -s {}", s.trim_start_matches('-')))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "complete -c edge-gw{cond}{short} -l {}{}",
            f.name.trim_start_matches('-'),
            fish_value(f.value)
        );
    }
    out
}

#[cfg(all(test, feature = "master"))]
mod tests {
    use super::*;

    #[test]
    fn every_script_offers_every_mode_and_option() {
        for shell in SHELLS {
            let Some(s) = Shell::from_name(shell) else {
                panic!("{shell} not known");
            };
            let text = script(s);
            for m in MODES {
                assert!(text.contains(m.trim_start_matches('-')), "{shell}: {m}");
            }
            for f in FLAGS {
                assert!(
                    text.contains(f.name.trim_start_matches('-')),
                    "{shell}: {}",
                    f.name
                );
            }
        }
        assert_eq!(Shell::from_name("tcsh"), None);
    }

    #[test]
    fn bash_completes_values_by_kind() {
        let text = bash();
        assert!(
            text.contains("(--state-dir) compopt -o filenames"),
            "{text}"
        );
        assert!(text.contains("compgen -W \"v1 v2\""));
        assert!(text.contains("complete -F _edge_gw edge-gw"));
    }
}
