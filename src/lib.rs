//! edge-gw: an edge monitoring gateway.
//!
//! The library holds everything; the binary (`src/main.rs`) only
//! dispatches. Here are the wire protocol ([`proto`]), the sans-I/O
//! session state machines ([`session`]), key handling ([`keys`]), the
//! clock and random source the shells hand the core ([`os`]), logging
//! ([`logger`], and where its lines go: [`log_sink`]), the command line
//! ([`cli`]) and the two roles, each behind its Cargo feature (`agent`,
//! `master`). The roles are thin smol shells around [`session`].
#![forbid(unsafe_code)]
// Kept so by CI (`cargo clippy -- -D warnings`): every public item says
// what it is for, and library code returns errors instead of panicking
// (tests may unwrap).
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cli;
pub mod keys;
pub mod log_sink;
pub mod log_throttle;
pub mod logger;
pub mod os;
pub mod proto;
pub mod sd_notify;
pub mod session;

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "master")]
pub mod master;
