//! The master's HTTP side: what operators, dashboards and Prometheus see.
//!
//! Served on the `--http` address (one listener, plain HTTP/1.1; by default
//! on loopback, `127.0.0.1:9580`):
//!
//! | path | what | auth |
//! |---|---|---|
//! | `/`, `/index.html` | the dashboard page ([`dashboard`]) | none: the page asks for the token |
//! | `/metrics` | Prometheus text ([`metrics`]) | none |
//! | `/healthz` | `ok` | none |
//! | `/api/...` | the JSON API ([`api`]) and the live event stream ([`events`]) | bearer token |
//!
//! Methods ([`routes::methods`], one table): `HEAD` wherever `GET` is,
//! answered as the `GET` without its body; any other method a path does
//! not take is a 405 whose `Allow` header lists the ones it does.
//!
//! Auth: every `/api/` call needs the token from `STATE_DIR/api.token`, as
//! `Authorization: Bearer TOKEN` or, on `GET /api/events` only (the
//! browser's `EventSource` cannot set headers), `?token=TOKEN`; it is
//! compared in constant time ([`routes`]) and never logged.
//!
//! Limits ([`server`]): request heads up to 16 KiB, bodies up to twice the
//! frame size, no chunked bodies; at most `http_max_connections` (256)
//! open connections and `http_per_ip` (64) from one IP ([`admission`]);
//! a whole request within `http_request_timeout` (10 s) and every answer
//! taken within `write_timeout` (10 s), event streams included
//! ([`timed_io`]); 30 s idle between kept-alive requests; each event
//! stream queues at most [`events::MAX_QUEUED`] events before it is cut.
//! Refusals and timeouts are counted by reason ([`counters`]) and logged
//! once per burst.
//!
//! The modules depend on each other one way only: [`server`] → [`routes`]
//! → [`api`], [`metrics`], [`dashboard`]; [`server`] → [`events`];
//! [`api`] and [`events`] → [`json_views`]; [`server`] → [`admission`];
//! [`server`] and [`events`] → [`timed_io`], [`counters`]; the leaves [`request`],
//! [`reply`], [`json_views`], [`counters`] and [`timed_io`] import nothing
//! else from here ([`admission`] only [`counters`]' reason type).

pub mod admission;
pub mod api;
pub mod cluster_view;
pub mod counters;
pub mod dashboard;
pub mod events;
pub mod json_views;
pub mod metrics;
pub mod push_view;
pub mod reply;
pub mod request;
pub mod routes;
pub mod server;
pub mod timed_io;

pub use admission::Admission;
pub use counters::HttpCounters;
pub use events::Watchers;
pub use server::accept_loop;
