//! The agent role: runs on a router, keeps one TCP connection to a master
//! and reports health.
//!
//! Placeholder until issue #4 lands; only the entry point's signature is
//! fixed, because `src/main.rs` calls it.

use crate::config::AgentOptions;

/// Runs the agent until it fails or is stopped.
///
/// Not implemented yet: logs the options and returns an error.
pub fn run(opts: AgentOptions) -> Result<(), String> {
    log::info!("agent options: {opts:?}");
    Err("the agent role is not implemented yet (issue #4)".into())
}
