//! The HTTP side against hostile clients: a real master process, real
//! sockets on loopback, small configured time limits so every test ends in
//! seconds. Each test is a row of the hostile-input catalogue in
//! docs/security.md.
//!
//! Loopback clients use different source addresses of 127.0.0.0/8 (all
//! loopback on Linux) to play different client IPs, so the per-IP cap can
//! be exercised: the attacker is 127.0.0.2, the operator 127.0.0.1.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use edge_gw::proto::{MsgType, Version};
use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(20);

/// Starts a master with these lines in its config file.
fn master_with(dir: &TempDir, config: &str, extra: &[&str]) -> Master {
    let file = dir.path().join("master.toml");
    std::fs::write(&file, config).unwrap();
    let mut args = vec!["--config", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    Master::start(dir, &args)
}

/// A TCP connection to `to` from the loopback address `from`, with the
/// receive buffer set to `rcvbuf` bytes first if given (so the window it
/// announces is small from the start).
fn connect_from(from: &str, to: SocketAddr, rcvbuf: Option<usize>) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    if let Some(n) = rcvbuf {
        sockopt::set_socket_recv_buffer_size(&fd, n)?;
    }
    let src = SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0);
    rustix::net::bind(&fd, &src)?;
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

fn http_addr(m: &Master) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], m.http))
}

/// One request on a fresh connection from 127.0.0.1; the whole answer.
fn raw(m: &Master, request: &str) -> String {
    let mut s = TcpStream::connect(http_addr(m)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `/api/status`, retried while the HTTP side refuses connections.
fn status(m: &Master) -> Value {
    wait_for(T, "/api/status", || m.try_get("/api/status").ok())
}

fn http_count(m: &Master, kind: &str, reason: &str) -> u64 {
    status(m)["http"][kind][reason].as_u64().unwrap()
}

/// Log lines of the master containing every one of `words`.
fn log_lines(m: &Master, words: &[&str]) -> usize {
    m.proc
        .log_text()
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// Reads what the master sent on `s` (with a bounded wait), up to its
/// close. `None` if the connection is still open at the end of the wait.
fn read_until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            // Reset: closed too, with unsent bytes dropped.
            Err(_) => return Some(out),
        }
    }
}

/// The issue's slowloris: 260 connections from one IP, each sending its
/// request head a byte at a time. The attacker gets `http_per_ip` slots,
/// the rest are refused; operators from another IP are still served; the
/// slow requests are cut at `http_request_timeout` with 408; all of it
/// counted and logged once per burst, not once per connection.
#[test]
fn slowloris_from_one_ip_leaves_the_api_up_and_is_cut() {
    let dir = TempDir::new("slowloris");
    let m = master_with(&dir, "http_request_timeout = 1\n", &[]);
    let metrics = m.metrics();
    for line in [
        "edge_gw_http_connections_refused_total{reason=\"max_connections\"} 0",
        "edge_gw_http_connections_refused_total{reason=\"per_ip\"} 0",
        "edge_gw_http_connections_timed_out_total{reason=\"request\"} 0",
        "edge_gw_http_connections_timed_out_total{reason=\"write\"} 0",
    ] {
        assert!(metrics.contains(line), "every label from the start: {line}");
    }

    let mut slow: Vec<TcpStream> = (0..260)
        .map(|_| connect_from("127.0.0.2", http_addr(&m), None).unwrap())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"G");
        s.set_nonblocking(true).unwrap();
    }
    // The operator, from another IP, while the attack is on.
    let health = raw(
        &m,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    let refused = wait_for(T, "per-IP refusals counted", || {
        Some(http_count(&m, "refused", "per_ip")).filter(|&n| n > 0)
    });

    // Keep dribbling (one byte per connection every 200 ms) until the
    // master has closed every connection: the deadline is for the whole
    // head, so the dribble does not extend it.
    let head = b"ET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut answers: Vec<Option<Vec<u8>>> = vec![None; slow.len()];
    let end = Instant::now() + T;
    for i in 0.. {
        let mut open = 0;
        for (s, answer) in slow.iter_mut().zip(&mut answers) {
            if answer.is_some() {
                continue;
            }
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(n) => *answer = Some(buf[..n].to_vec()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    open += 1;
                    let _ = s.write_all(&head[i % head.len()..][..1]);
                }
                Err(_) => *answer = Some(Vec::new()),
            }
        }
        if open == 0 {
            break;
        }
        assert!(Instant::now() < end, "{open} slow connections still open");
        std::thread::sleep(Duration::from_millis(200));
    }
    let cut = answers
        .iter()
        .flatten()
        .filter(|a| a.starts_with(b"HTTP/1.1 408 Request Timeout"))
        .count() as u64;
    assert!(cut > 0, "admitted slow connections get a 408");
    let st = status(&m);
    let per_ip = st["http"]["refused"]["per_ip"].as_u64().unwrap();
    let timed_out = st["http"]["timed_out"]["request"].as_u64().unwrap();
    assert!(per_ip >= refused && timed_out >= cut, "{st}");
    assert_eq!(
        per_ip + timed_out,
        260,
        "every slow connection was refused or cut: {st}"
    );
    assert_eq!(st["http"]["refused"]["max_connections"], 0, "{st}");
    // The metrics say the same.
    assert!(m.metrics().contains(&format!(
        "edge_gw_http_connections_refused_total{{reason=\"per_ip\"}} {per_ip}"
    )));
    // Logged once per burst (plus at most a summary line or two), not once
    // per connection.
    let lines = log_lines(&m, &["refused", "http_per_ip"]);
    assert!(
        (1..=3).contains(&lines),
        "{lines} refusal lines for {per_ip}"
    );
    let lines = log_lines(&m, &["http_request_timeout"]);
    assert!(
        (1..=3).contains(&lines),
        "{lines} timeout lines for {timed_out}"
    );
}

/// Connections over the total cap are refused, counted and logged, and
/// the API answers again once the held connections are cut.
#[test]
fn connections_over_the_http_cap_are_counted_and_logged() {
    let dir = TempDir::new("http-cap");
    // The held connections must outlive the refusals below: a 1 s
    // deadline let them time out first on a loaded machine (2 runs in 20),
    // freeing slots, so an "over the cap" connection was served instead.
    let m = master_with(
        &dir,
        "http_request_timeout = 4\nhttp_max_connections = 4\n",
        &[],
    );
    // Fill the 4 slots. The harness's readiness request may still hold a
    // slot for a moment (its connection is being closed): a connection
    // refused for that is closed at once, so it is replaced. Admitted ones
    // stay open until the request deadline.
    let mut held: Vec<TcpStream> = Vec::new();
    while held.len() < 4 {
        let s = connect_from("127.0.0.3", http_addr(&m), None).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match (&s).read(&mut [0u8; 1]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                held.push(s)
            }
            _ => {} // closed: refused, try again
        }
    }
    // Over the cap: closed on accept. Each of these sees the close.
    for _ in 0..6 {
        let mut s = connect_from("127.0.0.4", http_addr(&m), None).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
        assert!(read_until_closed(&mut s).is_some(), "refused means closed");
    }
    // The held ones are cut at the request deadline; then status answers.
    let refused = http_count(&m, "refused", "max_connections");
    assert!(refused >= 6, "{refused}");
    assert!(log_lines(&m, &["refused", "http_max_connections"]) >= 1);
    // They sent nothing, so they are closed quietly: a 408 on an idle
    // connection could be taken as the answer to the next request.
    for mut h in held {
        assert_eq!(read_until_closed(&mut h), Some(Vec::new()));
    }
    assert_eq!(http_count(&m, "timed_out", "request"), 0);
}

/// The issue's stalled event stream: `GET /api/events` with a tiny receive
/// buffer, never read, while the fleet produces events (legacy reports,
/// the cheapest to make). The master must close it after `write_timeout`,
/// not keep it while the kernel answers window probes.
#[test]
fn event_stream_client_that_never_reads_is_closed() {
    let dir = TempDir::new("sse-stall");
    let m = master_with(&dir, "write_timeout = 1\n", &["--legacy-v1"]);
    let mut watcher = connect_from("127.0.0.1", http_addr(&m), Some(2048)).unwrap();
    watcher
        .write_all(
            format!(
                "GET /api/events?token={} HTTP/1.1\r\nHost: x\r\n\r\n",
                m.token
            )
            .as_bytes(),
        )
        .unwrap();
    wait_for(T, "the watcher", || {
        Some(()).filter(|()| status(&m)["counters"]["watchers"] == 1)
    });

    // Each report is one `health` event of a few hundred bytes. The kernel
    // buffers some MiB on loopback before the master's writes stall, so
    // reports go in small batches, fast, but paced so that the watcher's
    // queue (1024 events) does not overflow before the socket is full: the
    // case the issue describes is the write stalling, then the watcher
    // being dropped while its stream is stuck in that write.
    let batch = legacy_report(b"{}").repeat(100);
    let end = Instant::now() + T;
    let mut reporter: Option<TcpStream> = None;
    while status(&m)["counters"]["watchers"] != 0 {
        assert!(Instant::now() < end, "the watcher stayed: {}", status(&m));
        // Reconnect if the master closed the reporter for any reason.
        let r = reporter.get_or_insert_with(|| TcpStream::connect(m.addr()).unwrap());
        if r.write_all(&batch).is_err() {
            reporter = None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(reporter);
    // The socket itself must go too, without the client reading a byte:
    // the only HTTP connection left is the one asking.
    wait_for(T, "the stalled stream's socket released", || {
        Some(()).filter(|()| status(&m)["http"]["connections"] == 1)
    });
    let st = status(&m);
    assert!(
        st["http"]["timed_out"]["write"].as_u64() >= Some(1)
            || st["counters"]["watchers_dropped"].as_u64() >= Some(1),
        "{st}"
    );
    assert!(
        read_until_closed(&mut watcher).is_some(),
        "the master closed the stalled stream"
    );
}

/// The same for plain answers: pipelined requests whose answers are never
/// read are cut after `write_timeout`.
#[test]
fn pipelined_answers_never_read_are_cut() {
    let dir = TempDir::new("http-stall");
    let m = master_with(&dir, "write_timeout = 1\n", &[]);
    let mut c = connect_from("127.0.0.1", http_addr(&m), Some(2048)).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    // The dashboard page is tens of KiB: a few hundred of them fill any
    // socket buffer. The client's own writes stop when the master stops
    // reading, which is fine: it only has to block the master.
    let req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    let _ = c.write_all(req.as_bytes());
    wait_for(T, "the write timeout", || {
        Some(()).filter(|()| http_count(&m, "timed_out", "write") >= 1)
    });
    assert!(read_until_closed(&mut c).is_some(), "closed by the master");
}

/// `?token=` is the event stream's alone (EventSource cannot send
/// headers): elsewhere it is a 401, and it never reaches the log.
#[test]
fn query_token_only_opens_the_event_stream() {
    let dir = TempDir::new("query-token");
    let m = master_with(&dir, "", &[]);
    let t = &m.token;
    for (method, path, body) in [
        ("GET", "/api/status", ""),
        ("GET", "/api/agents", ""),
        ("POST", "/api/push", r#"{"to":"*","body":"x"}"#),
        ("DELETE", "/api/agents/nobody", ""),
    ] {
        let a = raw(
            &m,
            &format!(
                "{method} {path}?token={t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(a.starts_with("HTTP/1.1 401"), "{method} {path}: {a}");
    }
    let mut es = TcpStream::connect(http_addr(&m)).unwrap();
    es.set_read_timeout(Some(T)).unwrap();
    es.write_all(format!("GET /api/events?token={t} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = [0u8; 64];
    es.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"));
    drop(es);
    assert!(
        !m.proc.log_text().contains(t.as_str()),
        "the token is never logged"
    );
}

/// `"to": "group:"` names no group: a 400, not a push to every agent
/// without one.
#[test]
fn empty_group_name_is_refused() {
    let dir = TempDir::new("empty-group");
    let m = master_with(&dir, "", &["--legacy-v1"]);
    // A legacy reporter: an agent without a group.
    let mut r = TcpStream::connect(m.addr()).unwrap();
    r.write_all(&legacy_report(br#"{"host":"r1"}"#)).unwrap();
    wait_for(T, "the groupless agent", || {
        Some(()).filter(|()| status(&m)["agents"]["known"] == 1)
    });
    let e = m
        .try_request(
            "POST",
            "/api/push",
            Some(&serde_json::json!({ "to": "group:", "body": "x" })),
        )
        .unwrap_err();
    assert!(e.contains("400") && e.contains("empty group"), "{e}");
    assert_eq!(status(&m)["pushes"]["accepted"], 0);
}

/// A legacy v1 report frame (type 7), as the original report client sends.
fn legacy_report(body: &[u8]) -> Vec<u8> {
    plain_frame(
        Version::V1,
        MsgType::from_u8(Version::V1, 7).unwrap(),
        "0123456789abcdef0123456789abcdefA",
        body,
    )
}
