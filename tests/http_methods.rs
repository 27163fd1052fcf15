//! HTTP methods as RFC 9110 wants them, seen on the wire of a real master
//! on loopback: a 405 names the methods the path takes in `Allow`, `HEAD`
//! is answered wherever `GET` is (same headers, no body), and every text
//! answer names its charset. Every read is bounded by a socket timeout.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Master, TempDir};

const T: Duration = Duration::from_secs(30);

/// One request on its own connection (closed after); the status line,
/// the header lines and the body.
fn exchange(m: &Master, method: &str, path: &str, token: bool) -> (String, Vec<String>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let auth = if token {
        format!("Authorization: Bearer {}\r\n", m.token)
    } else {
        String::new()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.split("\r\n").map(str::to_string);
    let status = lines.next().unwrap_or_default();
    (status, lines.collect(), body.to_string())
}

/// The value of header `name` (case-insensitive), if sent.
fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn a_405_lists_the_methods_the_path_takes() {
    let dir = TempDir::new("http-allow");
    let m = Master::start(&dir, &[]);
    for (method, path, allow) in [
        ("POST", "/metrics", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
        ("PUT", "/healthz", "GET, HEAD"),
        ("POST", "/api/status", "GET, HEAD"),
        ("DELETE", "/api/agents", "GET, HEAD"),
        ("POST", "/api/agents/r1", "GET, HEAD, DELETE"),
        ("GET", "/api/push", "POST"),
        ("DELETE", "/api/pushes/3", "GET, HEAD"),
        ("POST", "/api/events", "GET, HEAD"),
    ] {
        let (status, headers, body) = exchange(&m, method, path, true);
        assert!(
            status.starts_with("HTTP/1.1 405 "),
            "{method} {path}: {status}"
        );
        assert_eq!(header(&headers, "Allow"), Some(allow), "{method} {path}");
        assert!(
            body.contains(allow),
            "{method} {path}: the error says it too: {body}"
        );
    }
    // A path that does not exist is a 404 without `Allow`, whatever the method.
    for (method, path) in [
        ("GET", "/nothing"),
        ("POST", "/api/nothing"),
        ("GET", "/api/agents/a/b"),
    ] {
        let (status, headers, _) = exchange(&m, method, path, true);
        assert!(
            status.starts_with("HTTP/1.1 404 "),
            "{method} {path}: {status}"
        );
        assert_eq!(header(&headers, "Allow"), None, "{method} {path}");
    }
    // Allowed methods still need the token.
    let (status, _, _) = exchange(&m, "GET", "/api/status", false);
    assert!(status.starts_with("HTTP/1.1 401 "), "{status}");
}

#[test]
fn head_answers_wherever_get_does_with_the_same_headers_and_no_body() {
    let dir = TempDir::new("http-head");
    let m = Master::start(&dir, &[]);
    for (path, token) in [
        ("/", false),
        ("/index.html", false),
        ("/metrics", false),
        ("/healthz", false),
        ("/api/status", true),
        ("/api/agents", true),
    ] {
        let (get_status, get_headers, get_body) = exchange(&m, "GET", path, token);
        let (status, headers, body) = exchange(&m, "HEAD", path, token);
        assert!(
            get_status.starts_with("HTTP/1.1 200 "),
            "GET {path}: {get_status}"
        );
        assert_eq!(status, get_status, "HEAD {path}");
        assert_eq!(body, "", "HEAD {path} sent a body");
        assert_eq!(
            header(&headers, "Content-Type"),
            header(&get_headers, "Content-Type"),
            "HEAD {path}"
        );
        let length: usize = header(&headers, "Content-Length").unwrap().parse().unwrap();
        assert!(length > 0, "HEAD {path}: Content-Length {length}");
        // /metrics and /api/status change between two requests (uptime,
        // counters); the static ones must match byte for byte.
        if matches!(path, "/" | "/index.html" | "/healthz") {
            assert_eq!(length, get_body.len(), "HEAD {path}");
        }
    }
    // HEAD of the event stream: its headers, then the connection closes
    // (read_to_string returning at all proves no event stream was started).
    let (status, headers, body) = exchange(&m, "HEAD", "/api/events", true);
    assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
    assert_eq!(
        header(&headers, "Content-Type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(body, "");
    // HEAD of an agent that does not exist: the GET's 404, no body.
    let (status, _, body) = exchange(&m, "HEAD", "/api/agents/nobody", true);
    assert!(status.starts_with("HTTP/1.1 404 "), "{status}");
    assert_eq!(body, "");
}

#[test]
fn every_text_answer_names_its_charset() {
    let dir = TempDir::new("http-charset");
    let m = Master::start(&dir, &[]);
    for (path, token, want) in [
        ("/", false, "text/html; charset=utf-8"),
        (
            "/metrics",
            false,
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        ("/healthz", false, "text/plain; charset=utf-8"),
        // RFC 8259 defines no charset parameter for JSON: it is UTF-8.
        ("/api/status", true, "application/json"),
    ] {
        let (status, headers, _) = exchange(&m, "GET", path, token);
        assert!(status.starts_with("HTTP/1.1 200 "), "{path}: {status}");
        assert_eq!(header(&headers, "Content-Type"), Some(want), "{path}");
    }
}
