//! Socket reads and writes with a time limit, for every byte the HTTP side
//! moves: a client that sends too slowly or stops reading must lose its
//! connection rather than hold it (and its slot, buffers and file
//! descriptor) for ever.
//!
//! Reads take a deadline (an instant), not an idle time, because a limit
//! renewed by every byte is what a slowloris client exploits. Writes take
//! the agents' `write_timeout` for each answer or batch of events, as
//! agent connections do for each frame batch.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Timer};

/// How a limited read ended without data.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed, or the socket failed: nothing to answer.
    Closed,
    /// The limit passed first.
    TimedOut,
}

/// How a limited write failed.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteFail {
    /// The peer did not take the bytes within the limit: it stopped reading.
    Stalled,
    /// The socket failed (peer gone): nothing to count.
    Failed,
}

/// One read into `chunk` that gives up at `deadline`.
pub async fn read_before(
    stream: &mut Async<TcpStream>,
    chunk: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadEnd> {
    let read = async {
        match stream.read(chunk).await {
            Ok(0) | Err(_) => Err(ReadEnd::Closed),
            Ok(n) => Ok(n),
        }
    };
    let timeout = async {
        Timer::at(deadline).await;
        Err(ReadEnd::TimedOut)
    };
    read.or(timeout).await
}

/// Writes all of `bytes` within `limit`, as agent connections do with
/// `write_timeout`: one answer (or one batch of events) must be taken by
/// the client in that time. Answers are small against the socket buffers,
/// so only a client that stopped reading hits it.
pub async fn write_within(
    stream: &mut Async<TcpStream>,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), WriteFail> {
    let write = async { stream.write_all(bytes).await.map_err(|_| WriteFail::Failed) };
    let timeout = async {
        Timer::after(limit).await;
        Err(WriteFail::Stalled)
    };
    write.or(timeout).await
}
