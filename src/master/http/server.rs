//! The HTTP/1.1 connection side: accepts connections, reads and parses
//! requests, hands each to [`super::routes`] and writes the [`Reply`].
//!
//! Deliberately small, because it faces the operators' network: heads are
//! capped at 16 KiB and bodies at twice the frame size (a base64 push of
//! the largest body still fits); open connections are capped in total
//! (`http_max_connections`) and per client IP (`http_per_ip`), extra ones
//! closed on accept ([`super::admission`]); a whole request must arrive
//! within `http_request_timeout` and every answer must be taken by the
//! client within `write_timeout` ([`super::timed_io`]); a kept-alive
//! connection idle for 30 s is closed. Chunked request bodies are refused.
//! Refusals and timeouts are counted ([`super::counters`]) and logged at
//! most once per burst ([`crate::log_limited`]).

use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use smol::{Async, Executor, Timer};

use super::counters::{Refusal, Timeout};
use super::events;
use super::reply::{Reply, response};
use super::request::{ReadError, Request, parse_head};
use super::routes::route;
use super::timed_io::{ReadEnd, WriteFail, read_before, write_within};
use crate::master::Master;

/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Idle time allowed between requests on one kept-alive connection. Not a
/// defence (the per-IP cap is): a browser keeps its connections open this
/// long to reuse them.
const IDLE: Duration = Duration::from_secs(30);

/// Reads one request (head, then exactly `Content-Length` body bytes) into
/// `buf`, keeping any bytes of the next request there for keep-alive.
///
/// `deadline` is when the whole request must be in; `None` means none has
/// started yet (a kept-alive connection between requests), so the wait for
/// its first byte is the idle wait, and the deadline starts with that byte.
async fn read_request(
    stream: &mut Async<TcpStream>,
    buf: &mut Vec<u8>,
    max_body: usize,
    mut deadline: Option<Instant>,
    request_timeout: Duration,
) -> Result<Request, ReadError> {
    loop {
        if let Some((mut req, head_len, body_len)) = parse_head(buf)? {
            if body_len > max_body {
                return Err(ReadError::Bad(413, format!("body over {max_body} bytes")));
            }
            while buf.len() < head_len + body_len {
                read_more(stream, buf, &mut deadline, request_timeout).await?;
            }
            req.body = buf[head_len..head_len + body_len].to_vec();
            buf.drain(..head_len + body_len);
            return Ok(req);
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(431, "request head too large".into()));
        }
        read_more(stream, buf, &mut deadline, request_timeout).await?;
    }
}

/// Appends one read's bytes to `buf`, within the request's `deadline`, or
/// within the idle time if no request has started (then the deadline
/// starts now, with the request's first bytes).
async fn read_more(
    stream: &mut Async<TcpStream>,
    buf: &mut Vec<u8>,
    deadline: &mut Option<Instant>,
    request_timeout: Duration,
) -> Result<(), ReadError> {
    let mut chunk = [0u8; 4096];
    let n = match *deadline {
        Some(d) => read_before(stream, &mut chunk, d)
            .await
            .map_err(|e| match e {
                // Nothing of a request came at all: an idle connection (a
                // browser's preconnect), closed quietly, because a 408 on
                // it could be read as the answer to the request sent next.
                ReadEnd::TimedOut if buf.is_empty() => ReadError::Closed,
                ReadEnd::TimedOut => ReadError::TimedOut,
                ReadEnd::Closed => ReadError::Closed,
            })?,
        None => {
            // Between requests, running out of time is a plain idle
            // close, not a slow request.
            let n = read_before(stream, &mut chunk, Instant::now() + IDLE)
                .await
                .map_err(|_| ReadError::Closed)?;
            *deadline = Some(Instant::now() + request_timeout);
            n
        }
    };
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Accepts HTTP connections until the master stops, one task each on
/// `ex`. The master starts it once on the `--http` listener.
pub async fn accept_loop(
    master: Arc<Master>,
    listener: Async<std::net::TcpListener>,
    ex: Arc<Executor<'static>>,
) {
    loop {
        let Some(r) = master.accept_or_stop(&listener).await else {
            return;
        };
        let (stream, addr) = match r {
            Ok(x) => x,
            Err(e) => {
                // Usually EMFILE: wait for descriptors to free up; said
                // once per burst, as it repeats for every waiting client.
                crate::log_limited!(
                    log::Level::Warn,
                    "http.accept_failed",
                    "HTTP accept failed: {e}; retrying in 50 ms"
                );
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let accepted = Instant::now();
        let s = master.settings();
        let slot =
            match master
                .http_admission()
                .admit(addr.ip(), s.http_max_connections, s.http_per_ip)
            {
                Ok(slot) => slot,
                Err(reason) => {
                    let limit = match reason {
                        Refusal::MaxConnections => s.http_max_connections,
                        Refusal::PerIp => s.http_per_ip,
                    };
                    master
                        .http_counters()
                        .note_refusal(addr.ip(), reason, limit);
                    continue;
                }
            };
        let m = master.clone();
        ex.spawn(async move {
            serve(&m, stream, addr.ip(), accepted).await;
            drop(slot);
        })
        .detach();
    }
}

/// Answers the requests of one connection in order until the client
/// closes, asks to close, a request is malformed or late, or the
/// connection turns into the event stream.
async fn serve(master: &Master, mut stream: Async<TcpStream>, ip: IpAddr, accepted: Instant) {
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let s = master.settings();
        let max_body = s.max_frame as usize * 2;
        // The first request's time runs from the accept, so a client that
        // connects and sends nothing is also cut; a request already in the
        // buffer (pipelined) has started too.
        let deadline = if first {
            Some(accepted + s.http_request_timeout)
        } else if !buf.is_empty() {
            Some(Instant::now() + s.http_request_timeout)
        } else {
            None
        };
        first = false;
        let req = match read_request(
            &mut stream,
            &mut buf,
            max_body,
            deadline,
            s.http_request_timeout,
        )
        .await
        {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::TimedOut) => {
                master
                    .http_counters()
                    .note_timeout(ip, Timeout::Request, s.http_request_timeout);
                let _ = send_error(&mut stream, 408, "request not complete in time", &s).await;
                return;
            }
            Err(ReadError::Bad(status, msg)) => {
                if let Err(WriteFail::Stalled) = send_error(&mut stream, status, &msg, &s).await {
                    master
                        .http_counters()
                        .note_timeout(ip, Timeout::Write, s.write_timeout);
                }
                return;
            }
        };
        let keep = req.keep_alive && !master.stopping.load(Ordering::Relaxed);
        match route(master, &req).await {
            Reply::Full {
                status,
                content_type,
                body,
                allow,
            } => {
                let mut bytes = response(status, content_type, &body, keep, allow);
                if req.method == "HEAD" {
                    // Same headers as GET (Content-Length included), no body.
                    bytes.truncate(bytes.len() - body.len());
                }
                match write_within(&mut stream, &bytes, s.write_timeout).await {
                    Ok(()) if keep => {}
                    Ok(()) | Err(WriteFail::Failed) => return,
                    Err(WriteFail::Stalled) => {
                        return master.http_counters().note_timeout(
                            ip,
                            Timeout::Write,
                            s.write_timeout,
                        );
                    }
                }
            }
            Reply::Events if req.method == "HEAD" => {
                // The stream's headers, no events; the stream's connection
                // is not reused, so neither is this one.
                let _ = write_within(&mut stream, events::HEAD.as_bytes(), s.write_timeout).await;
                return;
            }
            Reply::Events => return events::stream(master, stream, ip).await,
        }
    }
}

/// Answers a request that cannot be served with a JSON error, then the
/// caller closes: best effort, bounded by `write_timeout` like every write.
async fn send_error(
    stream: &mut Async<TcpStream>,
    status: u16,
    msg: &str,
    s: &crate::master::settings::Settings,
) -> Result<(), WriteFail> {
    let body = serde_json::json!({ "error": msg }).to_string();
    let bytes = response(status, super::reply::JSON, body.as_bytes(), false, None);
    write_within(stream, &bytes, s.write_timeout).await
}
