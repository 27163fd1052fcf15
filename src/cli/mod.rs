//! The `edge-gw` command line.
//!
//! (Being moved here from `src/main.rs`.)

pub mod host_port;
pub mod options;
