//! The HTTP/1.1 connection side: accepts connections, reads and parses
//! requests, hands each to [`super::routes`] and writes the [`Reply`].
//!
//! Deliberately small, because it faces the operators' network: heads are
//! capped at 16 KiB and bodies at twice the frame size (a base64 push of
//! the largest body still fits), at most 256 connections are open at once
//! (more are closed on accept), a connection idle for 30 s is closed, and
//! keep-alive is supported. Chunked request bodies are refused.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Executor, Timer};

use super::events;
use super::reply::{Reply, response};
use super::request::{ReadError, Request, parse_head};
use super::routes::route;
use crate::master::Master;

/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Idle time allowed between requests on one connection.
const IDLE: Duration = Duration::from_secs(30);
/// Most simultaneous HTTP connections: operators and dashboards are few,
/// so the cap only matters against a flood, which must not starve agents
/// of file descriptors.
const MAX_HTTP_CONNS: u32 = 256;

/// Reads one request (head, then exactly `Content-Length` body bytes) into
/// `buf`, keeping any bytes of the next request there for keep-alive.
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

/// One read, bounded by the idle timeout so a silent client cannot hold a
/// connection slot for ever.
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

/// Accepts HTTP connections until the master stops, one task each on
/// `ex`. The master starts it once on the `--http` listener.
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

/// Answers the requests of one connection in order until the client
/// closes, asks to close, a request is malformed, or the connection turns
/// into the event stream.
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
        match route(&master, &req).await {
            Reply::Full {
                status,
                content_type,
                body,
            } => {
                let mut bytes = response(status, content_type, &body, keep);
                if req.method == "HEAD" {
                    // Same headers as GET (Content-Length included), no body.
                    bytes.truncate(bytes.len() - body.len());
                }
                if stream.write_all(&bytes).await.is_err() || !keep {
                    return;
                }
            }
            Reply::Events => return events::stream(&master, stream).await,
        }
    }
}
