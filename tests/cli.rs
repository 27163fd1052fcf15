//! End-to-end tests of the `edge-gw` command line: they run the real
//! binary. No network; every run is bounded by a timeout.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Upper bound for one run; nothing here should take more than a blink.
const TIMEOUT: Duration = Duration::from_secs(20);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs edge-gw with `args` in directory `cwd`, killing it after TIMEOUT.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    run_program(env!("CARGO_BIN_EXE_edge-gw"), cwd, args)
}

/// Runs `program` with `args` in `cwd`, killing it after TIMEOUT.
fn run_program(program: &str, cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_remove("EDGE_GW_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for edge-gw") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

fn run(args: &[&str]) -> Output {
    run_in(&std::env::temp_dir(), args)
}

/// A unique scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("edge-gw-cli-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn arg(&self, file: &str) -> String {
        self.path(file).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// The `key = ...` value of a key file.
fn key_in_file(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("read key file");
    text.lines()
        .find_map(|l| l.strip_prefix("key = "))
        .expect("key line")
        .to_owned()
}

const UUID: &str = "0123456789abcdef0123456789abcdefA";

#[test]
fn version_names_package_and_roles() {
    let out = run(&["--version"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(concat!("edge-gw ", env!("CARGO_PKG_VERSION")))
    );
    let roles = lines.next().expect("roles line");
    assert!(roles.starts_with("roles: "), "{roles}");
    assert_eq!(roles.contains("agent"), cfg!(feature = "agent"), "{roles}");
    assert_eq!(
        roles.contains("master"),
        cfg!(feature = "master"),
        "{roles}"
    );
}

#[test]
fn help_reads_like_a_man_page() {
    let out = run(&["--help"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "ROLES",
        "MASTER OPTIONS",
        "AGENT OPTIONS",
        "KEYGEN OPTIONS",
        "FILES",
        "EXAMPLES",
        "EXIT STATUS",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(section)),
            "no {section} section"
        );
    }
    assert!(out.stdout.contains("Default: 0.0.0.0:9503"));
    assert_eq!(run(&["-h"]).stdout, out.stdout);
    // Each role section says whether the role is missing from this build.
    let not_built = out.stdout.matches("NOT IN THIS BUILD").count();
    let missing = usize::from(!cfg!(feature = "agent")) + usize::from(!cfg!(feature = "master"));
    assert_eq!(not_built, missing);
}

#[test]
fn bad_option_exits_2_naming_it() {
    let out = run(&["--master", "--frobnicate"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--frobnicate"), "{}", out.stderr);
    assert!(out.stderr.contains("--help"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_values_exit_2() {
    for (args, needle) in [
        (&["--agent", "h:1", "--interval", "0"][..], "--interval"),
        (&["--agent", "h:1", "--wire", "v9"][..], "--wire"),
        (&["--agent", "no-port"][..], "--agent"),
        (&["--master", "--listen", "x"][..], "--listen"),
        (&["--master", "--interval", "5"][..], "--interval"),
        (&[][..], "no mode"),
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn keygen_writes_0600_file_matching_printed_line() {
    let dir = TempDir::new("keygen");
    let out = run(&["keygen", "--uuid", UUID, "--out", &dir.arg("r1.key")]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let file = dir.path("r1.key");
    assert_eq!(mode_of(&file), 0o600);
    let key = key_in_file(&file);
    assert_eq!(key.len(), 64);
    assert_eq!(out.stdout, format!("{UUID} {key}\n"));
    assert!(
        fs::read_to_string(&file)
            .unwrap()
            .contains(&format!("uuid = {UUID}"))
    );
    // The secret goes to stdout only, never into the log on stderr.
    assert!(!out.stderr.contains(&key), "{}", out.stderr);
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = TempDir::new("overwrite");
    let file = dir.path("r1.key");
    let first = run(&["keygen", "--uuid", "r1", "--out", &dir.arg("r1.key")]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let before = fs::read_to_string(&file).unwrap();
    let second = run(&["keygen", "--uuid", "r1", "--out", &dir.arg("r1.key")]);
    assert_eq!(second.code, Some(1));
    assert!(
        second.stderr.contains("already exists"),
        "{}",
        second.stderr
    );
    assert!(second.stdout.is_empty());
    assert_eq!(fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn keygen_needs_uuid_or_fleet() {
    let out = run(&["keygen", "--out", "/nonexistent/k"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--uuid"), "{}", out.stderr);
    assert!(out.stderr.contains("--fleet"), "{}", out.stderr);
}

#[test]
fn keygen_default_out_is_uuid_dot_key() {
    let dir = TempDir::new("default-out");
    let out = run_in(&dir.0, &["keygen", "--uuid", "r7"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let key = key_in_file(&dir.path("r7.key"));
    assert_eq!(out.stdout, format!("r7 {key}\n"));
}

#[test]
fn keygen_appends_to_keyring() {
    let dir = TempDir::new("keyring");
    let ring = dir.path("keyring");
    let fleet = run(&[
        "keygen",
        "--fleet",
        "--out",
        &dir.arg("fleet.key"),
        "--keyring",
        &dir.arg("keyring"),
    ]);
    assert_eq!(fleet.code, Some(0), "{}", fleet.stderr);
    assert!(fleet.stdout.is_empty(), "{}", fleet.stdout);
    assert_eq!(mode_of(&ring), 0o600);
    let device = run(&[
        "keygen",
        "--uuid",
        UUID,
        "--out",
        &dir.arg("r1.key"),
        "--keyring",
        &dir.arg("keyring"),
    ]);
    assert_eq!(device.code, Some(0), "{}", device.stderr);

    let fleet_key = key_in_file(&dir.path("fleet.key"));
    let device_key = key_in_file(&dir.path("r1.key"));
    assert!(
        !fs::read_to_string(dir.path("fleet.key"))
            .unwrap()
            .contains("uuid =")
    );
    assert_eq!(
        fs::read_to_string(&ring).unwrap(),
        format!("* {fleet_key}\n{UUID} {device_key}\n")
    );

    // Same uuid again: refused, no new key file, keyring untouched.
    let again = run(&[
        "keygen",
        "--uuid",
        UUID,
        "--out",
        &dir.arg("r1-again.key"),
        "--keyring",
        &dir.arg("keyring"),
    ]);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("already has a key"),
        "{}",
        again.stderr
    );
    assert!(!dir.path("r1-again.key").exists());
    assert_eq!(fs::read_to_string(&ring).unwrap().lines().count(), 2);
}

#[cfg(not(feature = "master"))]
#[test]
fn missing_master_role_exits_3() {
    let out = run(&["--master"]);
    assert_eq!(out.code, Some(3));
    assert!(out.stderr.contains("--features master"), "{}", out.stderr);
}

#[cfg(not(feature = "agent"))]
#[test]
fn missing_agent_role_exits_3() {
    let out = run(&["--agent", "127.0.0.1:9503"]);
    assert_eq!(out.code, Some(3));
    assert!(out.stderr.contains("--features agent"), "{}", out.stderr);
}

/// Whether `program` can be run here (zsh, fish and groff are not on
/// every machine; bash is).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn mode_help_shows_that_modes_part_of_the_manual() {
    let whole = run(&["--help"]).stdout;
    for (args, has, lacks) in [
        (
            &["--master", "--help"][..],
            "MASTER OPTIONS",
            "AGENT OPTIONS",
        ),
        (
            &["--agent", "--help"][..],
            "AGENT OPTIONS",
            "MASTER OPTIONS",
        ),
        (
            &["--agent", "m:1", "-h"][..],
            "--key-file FILE",
            "--listen ADDR",
        ),
        (&["keygen", "--help"][..], "KEYGEN OPTIONS", "AGENT OPTIONS"),
        (
            &["push", "--help"][..],
            "edge-gw push ... --wait",
            "edge-gw inbox",
        ),
        (
            &["inbox", "-h"][..],
            "edge-gw inbox --resolve",
            "edge-gw push",
        ),
        (
            &["completions", "--help"][..],
            "edge-gw completions bash",
            "MASTER",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert!(out.stdout.contains(has), "{args:?}: {}", out.stdout);
        assert!(!out.stdout.contains(lacks), "{args:?}: {}", out.stdout);
        assert!(out.stdout.contains("GLOBAL OPTIONS"), "{args:?}");
        assert!(
            out.stdout.len() < whole.len() / 2,
            "{args:?}: not the whole manual"
        );
    }
    // Help wins over a broken line, and is the whole manual without a mode.
    assert_eq!(run(&["--frobnicate", "--help"]).stdout, whole);
}

#[test]
fn bare_edge_gw_lists_every_command_and_exits_2() {
    let out = run(&[]);
    assert_eq!(out.code, Some(2));
    assert!(out.stdout.is_empty());
    for command in [
        "--master",
        "--agent HOST:PORT",
        "keygen",
        "status",
        "agents",
        "push",
        "report",
        "inbox",
        "completions SHELL",
        "manpage",
    ] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.trim_start().starts_with(command)),
            "{command} missing: {}",
            out.stderr
        );
    }
}

#[test]
fn mistyped_options_and_commands_get_the_nearest_name() {
    for (args, hint) in [
        (
            &["--agent", "m:1", "--intreval", "5"][..],
            "did you mean '--interval'?",
        ),
        (
            &["--master", "--lsiten", "h:1"][..],
            "did you mean '--listen'?",
        ),
        (
            &["--master", "--state_dir", "/x"][..],
            "did you mean '--state-dir'?",
        ),
        (&["agnets"][..], "did you mean 'agents'?"),
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}");
        assert!(out.stderr.contains(hint), "{args:?}: {}", out.stderr);
    }
    let far = run(&["--master", "--frobnicate"]);
    assert_eq!(far.code, Some(2));
    assert!(!far.stderr.contains("did you mean"), "{}", far.stderr);
}

#[test]
fn bash_completion_is_valid_and_completes_by_mode() {
    let dir = TempDir::new("completion");
    let out = run(&["completions", "bash"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let script = dir.path("edge-gw.bash");
    fs::write(&script, &out.stdout).unwrap();
    let check = run_program(
        "bash",
        dir.path(".").as_path(),
        &["-n", script.to_str().unwrap()],
    );
    assert_eq!(check.code, Some(0), "bash -n: {}", check.stderr);
    // Complete as bash would: the words so far, the cursor's word last.
    let complete = |words: &str| {
        let cword = words.split(' ').count() - 1;
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _edge_gw; echo \"${{COMPREPLY[*]}}\"",
            script.display()
        );
        let out = run_program("bash", dir.path(".").as_path(), &["-c", &program]);
        assert_eq!(out.code, Some(0), "{words}: {}", out.stderr);
        out.stdout.trim().to_string()
    };
    assert_eq!(complete("edge-gw --master --li"), "--listen");
    assert_eq!(complete("edge-gw --agent m:1 --wire ''"), "v1 v2");
    assert_eq!(
        complete("edge-gw --agent m:1 --li"),
        "",
        "--listen is the master's"
    );
    assert_eq!(complete("edge-gw stat"), "status");
    assert_eq!(complete("edge-gw push --al"), "--all");
    assert_eq!(complete("edge-gw completions ''"), "bash zsh fish");
    assert_eq!(complete("edge-gw --log-level d"), "debug");
}

#[test]
fn zsh_and_fish_completions_parse_where_those_shells_exist() {
    for (shell, check) in [("zsh", "-n"), ("fish", "--no-execute")] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stdout.contains("--state-dir") || out.stdout.contains("state-dir"));
        if !have(shell) {
            eprintln!("{shell} not installed: its script was not syntax-checked");
            continue;
        }
        let dir = TempDir::new(shell);
        let script = dir.path("script");
        fs::write(&script, &out.stdout).unwrap();
        let checked = run_program(
            shell,
            dir.path(".").as_path(),
            &[check, script.to_str().unwrap()],
        );
        assert_eq!(checked.code, Some(0), "{shell}: {}", checked.stderr);
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("bash, zsh, fish"), "{}", bad.stderr);
}

#[test]
fn manpage_is_roff_made_from_the_help_text() {
    let out = run(&["manpage"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(".TH EDGE-GW 1"));
    for section in [
        "NAME",
        "SYNOPSIS",
        "COMMANDS",
        "MASTER OPTIONS",
        "EXIT STATUS",
    ] {
        assert!(
            out.stdout.contains(&format!(".SH \"{section}")),
            "{section}"
        );
    }
    if !have("groff") {
        eprintln!("groff not installed: the page was not rendered");
        return;
    }
    let dir = TempDir::new("manpage");
    let page = dir.path("edge-gw.1");
    fs::write(&page, &out.stdout).unwrap();
    let p = page.to_str().unwrap();
    let lint = run_program("groff", dir.path(".").as_path(), &["-man", "-ww", "-z", p]);
    assert_eq!(lint.code, Some(0));
    assert_eq!(lint.stderr, "", "groff warnings");
    // Plain characters (no overstrike) on long lines (no hyphenation).
    let text = run_program(
        "groff",
        dir.path(".").as_path(),
        &["-man", "-Tascii", "-P-cbou", "-rLL=500n", p],
    );
    // Every option of the help text is in the rendered page.
    let rendered = text.stdout;
    for option in [
        "--listen",
        "--key-file",
        "--on-push",
        "--token-file",
        "--resolve",
    ] {
        assert!(rendered.contains(option), "{option}");
    }
}
