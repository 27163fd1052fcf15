//! Writing the command line's own text: messages to stderr, help and
//! version to stdout.
//!
//! Neither may panic: a closed pipe or a broken stderr must not turn a
//! clean exit status into an abort.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use super::exit::EXIT_FAILURE;

/// Writes a message to stderr. A broken stderr can't be reported
/// anywhere, so the error is dropped instead of panicking like `eprintln!`.
pub fn say(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Prints help or version text to stdout.
pub fn print_stdout(text: &str) -> ExitCode {
    match io::stdout().lock().write_all(text.as_bytes()) {
        // `edge-gw --help | head` closes the pipe early; that is no error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            say(format_args!("edge-gw: cannot write to stdout: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
        _ => ExitCode::SUCCESS,
    }
}
