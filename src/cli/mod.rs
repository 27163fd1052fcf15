//! The `edge-gw` command line.
//!
//! (Being moved here from `src/main.rs`.)

#[cfg(feature = "master")]
pub mod api_client;
pub mod host_port;
pub mod options;
