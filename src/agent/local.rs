//! The agent's local socket (`STATE_DIR/agent.sock`, mode 0660): how local
//! processes add custom metrics to the next report and take pushes from
//! the inbox. A line protocol, one request per connection:
//!
//! | request | answer |
//! |---|---|
//! | `REPORT K=V ...` | `OK` or `ERR reason` |
//! | `TAKE` | `MSG <id> <len> <sender> <group>` + body, or `EMPTY`; then the client sends `ACK <id>` once it has the message safe, answered `OK` |
//! | `STATUS` | `STATUS connected=0/1 master=HOST:PORT ring=N inbox=N dropped=N ... interrupted=N` (`master=-` while disconnected) |
//! | `RESOLVE <id> delivered` / `RESOLVE <id> retry` | `OK`, or `ERR reason` if `<id>` is not interrupted |
//! | `ANSWER <id> <exit> <len>` + `<len>` bytes of output | `OK` once the result is stored (synced), or `ERR reason` |
//!
//! A push that wants a result is handed out as `MSG <id> <len> <sender>
//! <group> answer` (a sixth word; absent otherwise, so the header is what
//! it always was). After its `ACK`, the consumer answers with `ANSWER`
//! (`edge-gw inbox --answer ID`): the exit status it wants reported and
//! its output, cut at the agent's `result_max_bytes` (marked truncated).
//! Only a push this agent delivered and has not answered yet takes an
//! answer; the master takes only answers it asked for.
//!
//! A push is acked to the master only after the client's `ACK`, and the
//! agent records it as delivered (on disk, synced) before it answers `OK`:
//! a client that dies halfway leaves the message in the inbox, and a client
//! answered `OK` never sees that push again.
//!
//! `RESOLVE` is the operator's answer for a push whose `--on-push` hook was
//! interrupted by the agent's end (see [`super::delivery_journal`]):
//! `delivered` (the hook did its work: ack it) or `retry` (it did not: run
//! the hook again when the master resends it).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smol::Async;
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};

use super::state::Shared;

/// Longest request line.
const MAX_LINE: usize = 4096;

/// The socket path in a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.sock")
}

/// Serves the local socket until the task is dropped.
pub async fn serve(path: PathBuf, shared: Shared) -> io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    let listener = Async::new(listener)?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                crate::log_limited!(
                    log::Level::Warn,
                    "agent.local_accept",
                    "local socket: accept: {e}"
                );
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        // One client at a time is plenty for a router's local tools, and
        // keeps TAKE/ACK simple; a stuck client is cut off after 10 s.
        let one = handle(stream, &shared);
        let limit = async {
            smol::Timer::after(Duration::from_secs(10)).await;
            Ok(())
        };
        if let Err(e) = smol::future::or(one, limit).await {
            log::debug!("local socket client: {e}");
        }
    }
}

async fn read_line(r: &mut AsyncBufReader<&Async<UnixStream>>) -> io::Result<String> {
    let mut line = Vec::new();
    let mut limited = r.take(MAX_LINE as u64);
    limited.read_until(b'\n', &mut line).await?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or cut",
        ));
    }
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}

async fn handle(stream: Async<UnixStream>, shared: &Shared) -> io::Result<()> {
    let mut reader = AsyncBufReader::new(&stream);
    let line = read_line(&mut reader).await?;
    let mut words = line.split_whitespace();
    let reply = match words.next() {
        Some("REPORT") => {
            let kv: Vec<&str> = words.collect();
            match shared.state.borrow_mut().set_custom(&kv) {
                Ok(()) => "OK\n".to_string(),
                Err(e) => format!("ERR {e}\n"),
            }
        }
        Some("STATUS") => {
            let st = shared.state.borrow();
            let c = st.counters;
            format!(
                "STATUS connected={} master={} ring={} dropped={} inbox={} refused={} reports={} sent={} pushes={} delivered={} hook_failures={} sessions={} interrupted={}\n",
                u8::from(st.connected),
                st.master.as_deref().unwrap_or("-"),
                st.ring.len(),
                st.ring.dropped,
                st.inbox.len(),
                st.inbox.refused,
                c.reports_made,
                c.reports_sent,
                c.pushes,
                c.delivered,
                c.hook_failures,
                c.sessions,
                st.journal.interrupted().count()
            )
        }
        Some("RESOLVE") => resolve(shared, words.next(), words.next(), words.next()),
        Some("ANSWER") => {
            let args: Vec<&str> = words.collect();
            return answer(&stream, &mut reader, shared, &args).await;
        }
        Some("TAKE") => return take(&stream, &mut reader, shared).await,
        _ => format!("ERR unknown request {line:?}\n"),
    };
    (&stream).write_all(reply.as_bytes()).await
}

async fn take(
    stream: &Async<UnixStream>,
    reader: &mut AsyncBufReader<&Async<UnixStream>>,
    shared: &Shared,
) -> io::Result<()> {
    let msg = {
        let st = shared.state.borrow();
        if st.hook {
            None
        } else {
            st.inbox.front().cloned()
        }
    };
    if shared.state.borrow().hook {
        return stream
            .write_all_ref(b"ERR pushes go to the --on-push hook on this agent\n")
            .await;
    }
    let Some(p) = msg else {
        return stream.write_all_ref(b"EMPTY\n").await;
    };
    let head = format!(
        "MSG {} {} {} {}{}\n",
        p.id,
        p.body.len(),
        field(&p.sender),
        field(&p.group),
        if p.want_result { " answer" } else { "" }
    );
    stream.write_all_ref(head.as_bytes()).await?;
    stream.write_all_ref(&p.body).await?;
    let ack = read_line(reader).await?;
    if ack != format!("ACK {}", p.id) {
        return stream.write_all_ref(b"ERR expected ACK <id>\n").await;
    }
    {
        let mut st = shared.state.borrow_mut();
        if st.inbox.remove(p.id).is_some() {
            // Recorded before the OK: once the reader hears OK, no restart
            // of agent or master hands it this push again.
            if let Err(e) = st.journal.delivered_now(p.id) {
                log::warn!(
                    "push {}: cannot record its delivery ({e}); if the agent restarts before the master has the ack, it is handed out again",
                    p.id
                );
            }
            st.acked.push_back(p.id);
            st.counters.delivered += 1;
        }
    }
    shared.poke_conn();
    stream.write_all_ref(b"OK\n").await
}

/// `ANSWER <id> <exit> <len>` + output: a socket consumer's result for a
/// push it took, stored durably (and queued for the master) before `OK`.
async fn answer(
    stream: &Async<UnixStream>,
    reader: &mut AsyncBufReader<&Async<UnixStream>>,
    shared: &Shared,
    args: &[&str],
) -> io::Result<()> {
    use super::delivery_journal::Known;
    let parsed = match args {
        [id, exit, len] => match (id.parse::<u64>(), exit.parse::<i32>(), len.parse::<usize>()) {
            (Ok(id), Ok(exit), Ok(len)) if len <= MAX_ANSWER_READ => Some((id, exit, len)),
            _ => None,
        },
        _ => None,
    };
    let Some((id, exit, len)) = parsed else {
        return stream
            .write_all_ref(
                b"ERR usage: ANSWER <id> <exit> <len> (len at most 1 MiB), then the output\n",
            )
            .await;
    };
    let mut output = vec![0u8; len];
    reader.read_exact(&mut output).await?;
    let refusal = {
        let st = shared.state.borrow();
        if st.journal.known(id) != Known::Delivered {
            Some(format!(
                "ERR push {id} was not delivered here (TAKE and ACK it first)\n"
            ))
        } else if st.results.answered(id) {
            Some(format!("ERR push {id} is answered already\n"))
        } else {
            None
        }
    };
    if let Some(r) = refusal {
        return stream.write_all_ref(r.as_bytes()).await;
    }
    let cap = shared.state.borrow().result_cap;
    let truncated = output.len() > cap;
    output.truncate(cap);
    let r = {
        let mut st = shared.state.borrow_mut();
        let at_unix_ms = st.unix_ms(std::time::Instant::now());
        let r = st.results.store(crate::proto::v2::PushResult {
            id,
            exit,
            output,
            truncated,
            at_unix_ms,
        });
        st.results_unsent.push_back(id);
        r
    };
    shared.poke_conn();
    match r {
        Ok(()) => stream.write_all_ref(b"OK\n").await,
        Err(e) => {
            let line = format!("ERR kept in memory only, not on disk: {e}\n");
            stream.write_all_ref(line.as_bytes()).await
        }
    }
}

/// Most output bytes an `ANSWER` may announce (what is over the agent's
/// `result_max_bytes` is read and cut).
const MAX_ANSWER_READ: usize = 1 << 20;

/// `RESOLVE <id> delivered|retry`: the operator's verdict on a push whose
/// hook was interrupted, recorded before the answer.
fn resolve(
    shared: &Shared,
    id: Option<&str>,
    verdict: Option<&str>,
    extra: Option<&str>,
) -> String {
    use super::delivery_journal::Known;
    let (Some(id), Some(verdict), None) = (id.and_then(|i| i.parse::<u64>().ok()), verdict, extra)
    else {
        return "ERR usage: RESOLVE <id> delivered|retry\n".into();
    };
    let mut st = shared.state.borrow_mut();
    if st.journal.known(id) != Known::Interrupted {
        return format!("ERR push {id} is not held as interrupted\n");
    }
    let r = match verdict {
        "delivered" => {
            let r = st.journal.delivered_now(id);
            st.acked.push_back(id);
            r
        }
        "retry" => st.journal.retry(id),
        other => return format!("ERR {other:?}: answer delivered or retry\n"),
    };
    drop(st);
    shared.poke_conn();
    log::info!("push {id}: resolved as {verdict} by the operator");
    match r {
        Ok(()) => "OK\n".into(),
        Err(e) => format!("ERR recorded in memory only, not on disk: {e}\n"),
    }
}

/// A header field without spaces (`-` for empty).
fn field(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.replace(char::is_whitespace, "_")
    }
}

trait WriteAllRef {
    async fn write_all_ref(&self, b: &[u8]) -> io::Result<()>;
}

impl WriteAllRef for Async<UnixStream> {
    async fn write_all_ref(&self, b: &[u8]) -> io::Result<()> {
        let mut s = self;
        s.write_all(b).await
    }
}

// ---- client side, for `edge-gw report` and `edge-gw inbox` ----

fn connect(path: &Path) -> Result<UnixStream, String> {
    let s = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the agent at {}: {e} (is `edge-gw --agent` running with this --state-dir?)",
            path.display()
        )
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    Ok(s)
}

/// Sends `REPORT K=V ...`.
pub fn client_report(path: &Path, pairs: &[String]) -> Result<(), String> {
    let mut s = connect(path)?;
    writeln!(s, "REPORT {}", pairs.join(" ")).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    match line.trim() {
        "OK" => Ok(()),
        other => Err(other.trim_start_matches("ERR ").to_string()),
    }
}

/// Sends `STATUS` and returns the answer line.
pub fn client_status(path: &Path) -> Result<String, String> {
    let mut s = connect(path)?;
    s.write_all(b"STATUS\n").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim().to_string())
}

/// A message taken from the inbox.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken {
    /// Push id.
    pub id: u64,
    /// Sender.
    pub sender: String,
    /// Group.
    pub group: String,
    /// Body.
    pub body: Vec<u8>,
    /// The pusher wants an answer (`edge-gw inbox --answer ID`).
    pub want_result: bool,
}

/// Takes one message: calls `keep` with it, and acks it only if `keep`
/// succeeds (e.g. the body was written to stdout). `Ok(None)`: inbox empty.
pub fn client_take(
    path: &Path,
    keep: impl FnOnce(&Taken) -> io::Result<()>,
) -> Result<Option<Taken>, String> {
    let mut s = connect(path)?;
    s.write_all(b"TAKE\n").map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut head = String::new();
    r.read_line(&mut head).map_err(|e| e.to_string())?;
    let w: Vec<&str> = head.split_whitespace().collect();
    match w.as_slice() {
        ["EMPTY"] => Ok(None),
        ["MSG", id, len, sender, group, rest @ ..] if rest.len() <= 1 => {
            let id: u64 = id.parse().map_err(|_| "bad MSG id".to_string())?;
            let len: usize = len.parse().map_err(|_| "bad MSG length".to_string())?;
            if len > 64 << 20 {
                return Err("MSG length over 64 MiB".into());
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).map_err(|e| e.to_string())?;
            let unfield = |f: &str| {
                if f == "-" {
                    String::new()
                } else {
                    f.to_string()
                }
            };
            let t = Taken {
                id,
                sender: unfield(sender),
                group: unfield(group),
                body,
                want_result: rest == ["answer"],
            };
            keep(&t).map_err(|e| format!("message {id} not acked: {e}"))?;
            // From here the caller has the message but the agent may or
            // may not have recorded it: the only errors whose outcome is
            // unknown, so they name the id for the caller to dedupe by.
            let unknown = |e: String| {
                format!(
                    "message {id} kept, but its ack is unconfirmed ({e}): it may be handed out again"
                )
            };
            writeln!(s, "ACK {id}").map_err(|e| unknown(e.to_string()))?;
            let mut ok = String::new();
            r.read_line(&mut ok).map_err(|e| unknown(e.to_string()))?;
            if ok.trim() == "OK" {
                Ok(Some(t))
            } else if ok.is_empty() {
                Err(unknown("the agent closed the connection".into()))
            } else {
                Err(format!("agent refused the ack: {}", ok.trim()))
            }
        }
        _ => Err(head.trim().trim_start_matches("ERR ").to_string()),
    }
}

/// Sends `ANSWER <id> <exit> <len>` and the output.
pub fn client_answer(path: &Path, id: u64, exit: i32, output: &[u8]) -> Result<(), String> {
    let mut s = connect(path)?;
    writeln!(s, "ANSWER {id} {exit} {}", output.len()).map_err(|e| e.to_string())?;
    s.write_all(output).map_err(|e| e.to_string())?;
    one_line_answer(&s)
}

/// Sends `RESOLVE <id> delivered|retry`.
pub fn client_resolve(path: &Path, id: u64, verdict: &str) -> Result<(), String> {
    let mut s = connect(path)?;
    writeln!(s, "RESOLVE {id} {verdict}").map_err(|e| e.to_string())?;
    one_line_answer(&s)
}

/// Reads an `OK` / `ERR reason` answer.
fn one_line_answer(s: &UnixStream) -> Result<(), String> {
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    match line.trim() {
        "OK" => Ok(()),
        "" => Err("the agent closed the connection without an answer".into()),
        other => Err(other.trim_start_matches("ERR ").to_string()),
    }
}

/// Runs `edge-gw report` or `edge-gw inbox` against the agent using
/// `state_dir` (default: the agent's). Returns the exit status: 0 done,
/// 4 inbox empty.
pub fn run_cli(
    state_dir: Option<PathBuf>,
    cmd: &crate::cli::options::LocalCommand,
) -> Result<u8, String> {
    use crate::cli::options::LocalCommand;
    let path = socket_path(&state_dir.unwrap_or_else(super::default_state_dir));
    match cmd {
        LocalCommand::Report(pairs) => client_report(&path, pairs).map(|()| 0),
        LocalCommand::Answer { id, exit, text } => {
            let output = match text {
                Some(t) => t.clone().into_bytes(),
                None => {
                    let mut b = Vec::new();
                    std::io::stdin()
                        .lock()
                        .take(MAX_ANSWER_READ as u64)
                        .read_to_end(&mut b)
                        .map_err(|e| format!("reading the answer from stdin: {e}"))?;
                    b
                }
            };
            client_answer(&path, *id, *exit, &output).map(|()| 0)
        }
        LocalCommand::Resolve { id, verdict } => client_resolve(&path, *id, verdict).map(|()| 0),
        LocalCommand::Inbox { wait } => loop {
            let taken = client_take(&path, |t| {
                let mut out = std::io::stdout().lock();
                out.write_all(&t.body)?;
                // Text ends with a newline, so a shell prompt or the next
                // message does not run on; binary bodies stay byte-exact.
                if std::str::from_utf8(&t.body).is_ok() && !t.body.ends_with(b"\n") {
                    out.write_all(b"\n")?;
                }
                out.flush()
            })?;
            match taken {
                Some(t) => {
                    log::info!("took push {} from {:?}", t.id, t.sender);
                    if t.want_result {
                        log::warn!(
                            "push {} wants an answer: edge-gw inbox --answer {} [--exit N] [TEXT]",
                            t.id,
                            t.id
                        );
                    }
                    return Ok(0);
                }
                None if *wait => std::thread::sleep(Duration::from_millis(500)),
                None => {
                    log::warn!("inbox empty");
                    return Ok(4);
                }
            }
        },
    }
}
