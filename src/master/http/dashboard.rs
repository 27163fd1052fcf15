//! The dashboard page served at `/`.
//!
//! One self-contained HTML file (styles and script inline) embedded in the
//! binary, so the master needs no files on disk to serve it and the page
//! always matches the API of the binary that serves it. It talks to the
//! JSON API and the event stream with the token the operator types in.
//! Built for fleets of thousands (README, "Dashboard"): problem views,
//! search, sort, group summaries, a virtually scrolled table painted once
//! per animation frame; tested in headless Chromium by
//! `tests/dashboard/run.sh` with 5,000 agents.

/// The dashboard page, embedded in the binary at build time (see the
/// module doc for why it is not read from disk).
pub const DASHBOARD: &str = include_str!("dashboard.html");
