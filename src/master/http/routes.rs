//! The routing table: which handler answers which request, and the token
//! check that guards everything under `/api/`.
//!
//! Separate from `server` (which only moves bytes) and from
//! [`super::api`] (which only answers authenticated API calls), so the
//! server depends on the routes and the routes on the handlers, never the
//! other way round.

use super::api;
use super::dashboard::DASHBOARD;
use super::metrics;
use super::reply::Reply;
use super::request::Request;
use crate::master::Master;

/// The event stream's path: the one API path that takes `?token=`.
const EVENTS_PATH: &str = "/api/events";

/// Routes one request to its handler. Async because a push waits for its
/// fsync on the store thread.
pub async fn route(m: &Master, r: &Request) -> Reply {
    let path = r.path.as_str();
    match (r.method.as_str(), path) {
        ("GET", "/") | ("GET", "/index.html") => Reply::Full {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: DASHBOARD.as_bytes().to_vec(),
        },
        // HEAD: the server sends the headers only.
        ("GET" | "HEAD", "/metrics") => Reply::Full {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(m).into_bytes(),
        },
        (_, "/metrics") => Reply::error(405, "/metrics answers GET and HEAD"),
        ("GET", "/healthz") => Reply::Full {
            status: 200,
            content_type: "text/plain",
            body: b"ok\n".to_vec(),
        },
        _ if path.starts_with("/api/") => {
            // `?token=` only where a header cannot be set: the browser's
            // `EventSource`. Elsewhere a token in the address would end up
            // in proxy logs, browser history and Referer headers, and it
            // would let a plain link trigger a push or a kick.
            let query_token = (r.method == "GET" && path == EVENTS_PATH)
                .then(|| r.param("token"))
                .flatten();
            let token = r.bearer.as_deref().or(query_token);
            if !token.is_some_and(|t| constant_time_eq(t.as_bytes(), m.token.as_bytes())) {
                return Reply::error(
                    401,
                    "missing or wrong bearer token (see STATE_DIR/api.token)",
                );
            }
            api::answer(m, r).await
        }
        _ => Reply::error(404, "no such page"),
    }
}

/// Compares without an early exit, so the answer time does not tell how
/// many leading bytes of a guessed token were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
