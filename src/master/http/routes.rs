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

/// What a path that only reads takes. `HEAD` wherever `GET` is: RFC 9110
/// §9.3.2 asks it of every general-purpose server, and monitoring probes
/// use it.
const READ: &str = "GET, HEAD";

/// The methods `path` takes, in the form the `Allow` header lists them;
/// `None`: no such path (404). One table for the whole server, so the
/// 405's `Allow` and the handlers cannot disagree about a path.
pub fn methods(path: &str) -> Option<&'static str> {
    match path {
        "/" | "/index.html" | "/metrics" | "/healthz" => Some(READ),
        "/api/status" | "/api/agents" | "/api/cluster" | EVENTS_PATH => Some(READ),
        "/api/push" => Some("POST"),
        _ if sub_path(path, "/api/agents/") => Some("GET, HEAD, DELETE"),
        _ if sub_path(path, "/api/pushes/") => Some(READ),
        _ => None,
    }
}

/// `path` is `prefix` followed by one non-empty segment.
fn sub_path(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

/// Routes one request to its handler. Async because a push waits for its
/// fsync on the store thread.
pub async fn route(m: &Master, r: &Request) -> Reply {
    let path = r.path.as_str();
    let Some(allow) = methods(path) else {
        return Reply::error(404, "no such page");
    };
    if !allow.split(", ").any(|a| a == r.method) {
        return Reply::not_allowed(&r.method, path, allow);
    }
    // A HEAD is answered as its GET; the server sends the headers only.
    let method = if r.method == "HEAD" { "GET" } else { &r.method };
    match (method, path) {
        ("GET", "/" | "/index.html") => Reply::full(
            200,
            "text/html; charset=utf-8",
            DASHBOARD.as_bytes().to_vec(),
        ),
        ("GET", "/metrics") => Reply::full(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(m).into_bytes(),
        ),
        ("GET", "/healthz") => Reply::full(200, "text/plain; charset=utf-8", b"ok\n".to_vec()),
        _ if path.starts_with("/api/") => {
            // `?token=` only where a header cannot be set: the browser's
            // `EventSource`. Elsewhere a token in the address would end up
            // in proxy logs, browser history and Referer headers, and it
            // would let a plain link trigger a push or a kick.
            let query_token = (method == "GET" && path == EVENTS_PATH)
                .then(|| r.param("token"))
                .flatten();
            let token = r.bearer.as_deref().or(query_token);
            if !token.is_some_and(|t| constant_time_eq(t.as_bytes(), m.token.as_bytes())) {
                return Reply::error(
                    401,
                    "missing or wrong bearer token (see STATE_DIR/api.token)",
                );
            }
            api::answer(m, r, method).await
        }
        // `methods` lists only what the arms above answer.
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

    #[test]
    fn method_table() {
        assert_eq!(methods("/metrics"), Some("GET, HEAD"));
        assert_eq!(methods("/api/push"), Some("POST"));
        assert_eq!(methods("/api/agents/r1"), Some("GET, HEAD, DELETE"));
        assert_eq!(methods("/api/pushes/7"), Some("GET, HEAD"));
        assert_eq!(methods("/api/agents/"), None);
        assert_eq!(methods("/api/agents/r1/x"), None);
        assert_eq!(methods("/api/nothing"), None);
        assert_eq!(methods("/nothing"), None);
    }
}
