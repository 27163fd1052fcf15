//! The master's HTTP side: the JSON API, Prometheus metrics, the live
//! event stream and the dashboard.

pub mod api;
pub mod events;
pub mod metrics;
pub mod server;

pub use events::Watchers;
pub use server::accept_loop;
