//! What a handler answers, and how an answer becomes response bytes.
//!
//! A leaf: handlers build a [`Reply`] without knowing about sockets, and
//! `server` writes it, so neither depends on the other.

/// JSON's media type. No `charset` parameter: RFC 8259 §11 defines none
/// for `application/json` (JSON exchanged between systems is UTF-8), unlike
/// the `text/*` types this server sends, which all name `charset=utf-8`.
pub const JSON: &str = "application/json";

/// What a handler answers. The server owns the connection, so a handler
/// only says what to send, never writes.
pub enum Reply {
    /// A complete response, written with `Content-Length` so the
    /// connection can stay open for the next request.
    Full {
        /// Status code.
        status: u16,
        /// Content type (static: every route knows its type up front).
        content_type: &'static str,
        /// Body.
        body: Vec<u8>,
        /// The methods the path takes, sent as `Allow` (RFC 9110 §15.5.6
        /// requires it on a 405); `None` elsewhere.
        allow: Option<&'static str>,
    },
    /// Switch this connection to the Server-Sent Events stream: the server
    /// hands it over to `events` for as long as the client stays.
    Events,
}

impl Reply {
    /// A JSON response, newline-terminated so `curl` output ends cleanly.
    pub fn json(status: u16, v: &serde_json::Value) -> Reply {
        Reply::full(status, JSON, json_body(v))
    }

    /// A plain answer of `content_type`, without `Allow`.
    pub fn full(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply::Full {
            status,
            content_type,
            body,
            allow: None,
        }
    }

    /// 405: the path exists but not for this method. `allow` lists the
    /// methods it takes, so a client can correct itself without the docs.
    pub fn not_allowed(method: &str, path: &str, allow: &'static str) -> Reply {
        let msg = format!("{path} does not take {method}: it takes {allow}");
        Reply::Full {
            status: 405,
            content_type: JSON,
            body: json_body(&serde_json::json!({ "error": msg })),
            allow: Some(allow),
        }
    }

    /// A JSON error `{"error": msg}`: every failure of the API has this one
    /// shape, so clients need one way to show it.
    pub fn error(status: u16, msg: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": msg }))
    }
}

/// A JSON value as a body, newline-terminated.
fn json_body(v: &serde_json::Value) -> Vec<u8> {
    let mut body = v.to_string().into_bytes();
    body.push(b'\n');
    body
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// Serialises a complete response: status line, headers, body. Every
/// answer carries `Cache-Control: no-store` because fleet state is live:
/// a cached page or API answer would show a fleet that no longer exists.
/// `allow` becomes an `Allow` header (a 405 must carry one).
pub fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    allow: Option<&str>,
) -> Vec<u8> {
    let allow = allow.map(|a| format!("Allow: {a}\r\n")).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bytes() {
        assert_eq!(
            response(404, "application/json", b"{}", false, None),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{}"
        );
        assert_eq!(
            response(405, "application/json", b"{}", true, Some("GET, HEAD")),
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAllow: GET, HEAD\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\n{}"
        );
        let Reply::Full { body, .. } = Reply::error(400, "no") else {
            panic!("an error is a full reply");
        };
        assert_eq!(body, b"{\"error\":\"no\"}\n");
    }
}
