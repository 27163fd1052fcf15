//! An HTTP request as the handlers see it, and the parsing of its head.
//!
//! Kept apart from the socket code in `server` so that the
//! handlers can depend on it without depending on the server, and so that
//! parsing is testable on plain bytes.

/// A parsed request: only what the routes use, already decoded, so the
/// handlers never deal with raw headers or percent escapes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...: routes match on it.
    pub method: String,
    /// Path without the query, percent-decoded, so a uuid with escaped
    /// characters still finds its agent.
    pub path: String,
    /// Query pairs, percent-decoded, in request order (the first of a
    /// repeated name wins in [`param`](Self::param)).
    pub query: Vec<(String, String)>,
    /// The bearer token from `Authorization`, if any: the API's only
    /// credential.
    pub bearer: Option<String>,
    /// Body bytes, complete (never streamed: bodies are capped at twice
    /// the frame size).
    pub body: Vec<u8>,
    /// Client wants the connection kept open (HTTP/1.1 default, or
    /// `Connection: keep-alive`), so the server reads the next request.
    pub keep_alive: bool,
}

impl Request {
    /// A query parameter by name, so handlers can read options such as
    /// `?forget=1` or `?token=` (for the event stream only: `EventSource`
    /// cannot set headers) without scanning the pairs themselves.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read: decides whether the server answers
/// before closing the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Connection closed, or idle (no byte of a request) until its
    /// deadline: nothing to answer.
    Closed,
    /// The request was started but not complete by its deadline (slow or
    /// slowloris client): counted, answered 408 if the socket takes it,
    /// closed.
    TimedOut,
    /// Malformed request: answer with this status and message, then close,
    /// because the rest of the stream cannot be trusted to be in step.
    Bad(u16, String),
}

/// Parses a complete request head (through the blank line) in `head`;
/// `Ok(None)` if more bytes are needed. Returns the request (without body)
/// and the head length and content length, so the caller knows how many
/// more bytes to read and where the body starts.
pub fn parse_head(head: &[u8]) -> Result<Option<(Request, usize, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Bad(400, format!("bad request: {e}"))),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut r = Request {
        method: req.method.unwrap_or("GET").to_string(),
        path: percent_decode(path),
        query: query
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect(),
        keep_alive: req.version == Some(1),
        ..Request::default()
    };
    let mut length = 0usize;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| ReadError::Bad(400, "bad Content-Length".into()))?;
        } else if h.name.eq_ignore_ascii_case("authorization") {
            if let Some(t) = value.trim().strip_prefix("Bearer ") {
                r.bearer = Some(t.trim().to_string());
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                r.keep_alive = false;
            } else if v.contains("keep-alive") {
                r.keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Bad(
                400,
                "chunked request bodies are not supported".into(),
            ));
        }
    }
    Ok(Some((r, n, length)))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        let raw = b"POST /api/push?x=a%20b&y HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer tok\r\nContent-Length: 5\r\n\r\nhello";
        let (r, n, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/push"));
        assert_eq!(r.param("x"), Some("a b"));
        assert_eq!(r.param("y"), Some(""));
        assert_eq!(r.bearer.as_deref(), Some("tok"));
        assert_eq!((n, len), (raw.len() - 5, 5));
        assert!(r.keep_alive);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost:").unwrap(), None);
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(ReadError::Bad(400, _))
        ));
        let (r, ..) = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
