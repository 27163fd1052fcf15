//! The `edge-gw` command line: one binary, many modes.
//!
//! `edge-gw --master` and `edge-gw --agent HOST:PORT` run the two roles;
//! `keygen`, `status`, `agents`, `push`, `report` and `inbox` are one-shot
//! subcommands; `completions` and `manpage` print text. This module turns
//! `argv` into a [`Command`] ([`parse`]; every option in one table,
//! [`flags`], with "did you mean" from [`suggest`]), prints the manual
//! ([`manual`], also as [`manpage`] and [`completions`]), starts logging
//! ([`logging`]) and runs
//! the chosen mode ([`roles`], [`subcommands`]), turning the outcome into
//! the exit statuses the manual promises ([`exit`]). `src/main.rs` only
//! wires these together.
//!
//! Roles left out of the build (Cargo features `agent`, `master`) are still
//! parsed, so usage errors look the same in every build, but running them
//! exits with status 3 and no code of the missing role is linked in.

#[cfg(feature = "master")]
pub mod api_client;
pub mod command;
pub mod completions;
pub mod exit;
pub mod flags;
pub mod host_port;
pub mod logging;
#[cfg(feature = "master")]
pub mod manpage;
pub mod manual;
mod option_value;
pub mod options;
pub mod output;
pub mod parse;
#[cfg(feature = "master")]
pub mod push_wait;
pub mod roles;
pub mod subcommands;
pub mod suggest;

pub use command::{Action, Command};
pub use parse::Usage;
