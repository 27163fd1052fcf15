//! A small HTTP/1.1 server for the API, metrics and dashboard. Requests are
//! parsed by `httparse`; heads are capped at 16 KiB and bodies at the push
//! size limit, idle connections time out, and keep-alive is supported.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Executor, Timer};

use crate::master::Master;

/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Idle time allowed between requests on one connection.
const IDLE: Duration = Duration::from_secs(30);
/// Most simultaneous HTTP connections.
const MAX_HTTP_CONNS: u32 = 256;

/// A parsed request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path without the query, percent-decoded.
    pub path: String,
    /// Query pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The bearer token from `Authorization`, if any.
    pub bearer: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Client wants the connection kept open.
    pub keep_alive: bool,
}

impl Request {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
pub enum Reply {
    /// A complete response.
    Full {
        /// Status code.
        status: u16,
        /// Content type.
        content_type: &'static str,
        /// Body.
        body: Vec<u8>,
    },
    /// Switch to a Server-Sent Events stream.
    Events,
}

impl Reply {
    /// A JSON response.
    pub fn json(status: u16, v: &serde_json::Value) -> Reply {
        let mut body = v.to_string().into_bytes();
        body.push(b'\n');
        Reply::Full {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// A JSON error `{"error": msg}`.
    pub fn error(status: u16, msg: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": msg }))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Connection closed or timed out between requests.
    Closed,
    /// Malformed request: answer with this status and close.
    Bad(u16, String),
}

/// Parses a complete request head (through the blank line) in `head`;
/// `Ok(None)` if more bytes are needed. Returns the request (without body)
/// and the head length and content length.
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

async fn read_request(
    stream: &mut Async<TcpStream>,
    buf: &mut Vec<u8>,
    max_body: usize,
) -> Result<Request, ReadError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((mut req, head_len, body_len)) = parse_head(buf)? {
            if body_len > max_body {
                return Err(ReadError::Bad(413, format!("body over {max_body} bytes")));
            }
            while buf.len() < head_len + body_len {
                let n = read_some(stream, &mut chunk).await?;
                buf.extend_from_slice(&chunk[..n]);
            }
            req.body = buf[head_len..head_len + body_len].to_vec();
            buf.drain(..head_len + body_len);
            return Ok(req);
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(431, "request head too large".into()));
        }
        let n = read_some(stream, &mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_some(stream: &mut Async<TcpStream>, chunk: &mut [u8]) -> Result<usize, ReadError> {
    let read = async { stream.read(chunk).await.ok() };
    let timeout = async {
        Timer::after(IDLE).await;
        None
    };
    match read.or(timeout).await {
        Some(0) | None => Err(ReadError::Closed),
        Some(n) => Ok(n),
    }
}

/// Serialises a complete response.
pub fn response(status: u16, content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Accepts HTTP connections until the master stops.
pub async fn accept_loop(
    master: Arc<Master>,
    listener: Async<std::net::TcpListener>,
    ex: Arc<Executor<'static>>,
) {
    let open = Arc::new(std::sync::atomic::AtomicU32::new(0));
    loop {
        let Some(r) = master.accept_or_stop(&listener).await else {
            return;
        };
        let Ok((stream, _addr)) = r else {
            Timer::after(Duration::from_millis(50)).await;
            continue;
        };
        if open.load(Ordering::Relaxed) >= MAX_HTTP_CONNS {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (m, o) = (master.clone(), open.clone());
        ex.spawn(async move {
            serve(m, stream).await;
            o.fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
}

async fn serve(master: Arc<Master>, mut stream: Async<TcpStream>) {
    let mut buf = Vec::new();
    let max_body = master.settings().max_frame as usize * 2;
    loop {
        let req = match read_request(&mut stream, &mut buf, max_body).await {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, msg)) => {
                let body = serde_json::json!({ "error": msg }).to_string();
                let _ = stream
                    .write_all(&response(
                        status,
                        "application/json",
                        body.as_bytes(),
                        false,
                    ))
                    .await;
                return;
            }
        };
        let keep = req.keep_alive && !master.stopping.load(Ordering::Relaxed);
        match super::api::route(&master, &req).await {
            Reply::Full {
                status,
                content_type,
                body,
            } => {
                if stream
                    .write_all(&response(status, content_type, &body, keep))
                    .await
                    .is_err()
                    || !keep
                {
                    return;
                }
            }
            Reply::Events => return events(&master, stream).await,
        }
    }
}

/// Streams fleet events as Server-Sent Events until the client leaves.
async fn events(master: &Master, mut stream: Async<TcpStream>) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n: edge-gw fleet events\n\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let w = master.watchers().add();
    loop {
        let listener = w.listen();
        let msgs = w.take();
        if w.overflowed.load(Ordering::Relaxed) {
            let _ = stream
                .write_all(b"event: overflow\ndata: {\"error\":\"too slow, reconnect\"}\n\n")
                .await;
            break;
        }
        if !msgs.is_empty() {
            let mut out = Vec::new();
            for m in msgs {
                out.extend_from_slice(m.as_bytes());
            }
            if stream.write_all(&out).await.is_err() {
                break;
            }
            continue;
        }
        // Checked after sending what was queued, so the last `leave`
        // events before a shutdown still reach the page.
        if master.stopping.load(Ordering::Relaxed) {
            break;
        }
        // Wake on an event, on shutdown, or every 15 s for a keepalive
        // comment (which also notices a client that went away).
        let ev = async {
            listener.await;
            true
        };
        let stop = async {
            master.stop_event.listen().await;
            true
        };
        let tick = async {
            Timer::after(Duration::from_secs(15)).await;
            false
        };
        if !ev.or(stop).or(tick).await && stream.write_all(b": keepalive\n\n").await.is_err() {
            break;
        }
    }
    master.watchers().remove(&w);
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
