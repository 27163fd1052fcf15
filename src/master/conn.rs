//! One connection task: moves bytes between a socket and a
//! [`MasterSession`], and session events into the registry.
//!
//! Memory: the task holds no read buffer of its own. It waits for
//! readiness, then reads into a per-thread buffer and hands the bytes to the
//! session at once, so an idle agent costs its session and socket only.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::{Async, Timer};

use super::Master;
use super::conn_handle::{Cmd, ConnHandle};
use crate::proto::decoder::MAX_FEED;
use crate::proto::v2::CloseCode;
use crate::session::master::{MasterEvent, MasterSession};
use crate::session::{Clock, CloseInfo};

thread_local! {
    /// Shared by every connection task on this thread: a task reads into it
    /// and hands the bytes to its session before yielding.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_FEED]);
}

/// Reads at most this many times per wakeup, so one busy peer cannot
/// starve the others on its thread.
const READS_PER_WAKE: usize = 16;

enum Wake {
    Readable,
    Command,
    Timer,
}

/// Serves one accepted connection until it closes.
pub async fn serve(master: Arc<Master>, stream: Async<TcpStream>, addr: SocketAddr, id: u64) {
    let handle = ConnHandle::new(id);
    let cfg = master.session_config();
    let mut session = MasterSession::new(cfg, Instant::now());
    master.lock_registry().conn_opened(handle.clone(), addr);
    let mut stream = stream;
    let mut closed: Option<CloseInfo> = None;
    let write_timeout = master.settings().write_timeout;

    loop {
        // 1. Write what the session queued.
        while let Some(bytes) = session.poll_transmit() {
            let write = async { stream.write_all(&bytes).await.map(|()| true) };
            let timeout = async {
                Timer::after(write_timeout).await;
                Ok(false)
            };
            match write.or(timeout).await {
                Ok(true) => {}
                Ok(false) => {
                    session.close(
                        CloseCode::SlowConsumer,
                        &format!(
                            "slow consumer: a write stalled for {} s",
                            write_timeout.as_secs()
                        ),
                    );
                    master.lock_registry().send_failed(id);
                    break;
                }
                Err(e) => {
                    session.handle_eof(&format!("write failed: {e}"));
                    break;
                }
            }
        }
        // 2. Session events into the registry.
        drain_events(&master, &mut session, id, &handle, &mut closed);
        if session.is_closed() {
            // Flush a final Close frame if the socket still takes it.
            while let Some(bytes) = session.poll_transmit() {
                let write = async { stream.write_all(&bytes).await.is_ok() };
                let timeout = async {
                    Timer::after(Duration::from_millis(200)).await;
                    false
                };
                if !write.or(timeout).await {
                    break;
                }
            }
            break;
        }
        // 3. Wait for input, a command or a deadline.
        let listener = handle.listen();
        let cmds = handle.take();
        if !cmds.is_empty() {
            run_commands(&master, &mut session, id, cmds);
            continue;
        }
        let resend = master.lock_registry().next_resend(id);
        let deadline = [session.poll_timeout(), resend].into_iter().flatten().min();
        let readable = async {
            let _ = stream.readable().await;
            Wake::Readable
        };
        let command = async {
            listener.await;
            Wake::Command
        };
        let timer = async {
            match deadline {
                Some(t) => Timer::at(t).await,
                None => Timer::never().await,
            };
            Wake::Timer
        };
        match readable.or(command).or(timer).await {
            Wake::Readable => read_available(&master, &mut stream, &mut session),
            Wake::Command => {}
            Wake::Timer => {}
        }
        let cmds = handle.take();
        run_commands(&master, &mut session, id, cmds);
        session.handle_timeout(Instant::now());
        pump_pushes(&master, &mut session, id);
    }
    let info = closed.unwrap_or(CloseInfo {
        code: CloseCode::Normal,
        reason: "closed".into(),
        by_peer: false,
        frame_error: None,
    });
    let peer = session.peer().map(|p| p.uuid.to_string());
    log::info!(
        "connection {id} from {addr}{} closed: {} ({})",
        peer.map(|u| format!(" (uuid {u})")).unwrap_or_default(),
        info.code.name(),
        info.reason
    );
    let mut reg = master.lock_registry();
    reg.conn_closed(id, &info, Clock::now().unix_ms);
    master.publish(&mut reg);
}

/// Reads whatever the socket has, without blocking, into the session.
fn read_available(master: &Master, stream: &mut Async<TcpStream>, session: &mut MasterSession) {
    let keys = master.keys();
    for _ in 0..READS_PER_WAKE {
        let clock = Clock::now();
        let r = READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match stream.get_ref().read(&mut buf[..]) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection",
                )),
                Ok(n) => {
                    session.handle_input(&buf[..n], clock, &*keys);
                    Ok(n)
                }
                Err(e) => Err(e),
            }
        });
        match r {
            Ok(n) if n < MAX_FEED => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                session.handle_eof(&e.to_string());
                return;
            }
        }
        if session.is_closed() {
            return;
        }
    }
}

fn run_commands(
    master: &Master,
    session: &mut MasterSession,
    id: u64,
    cmds: std::collections::VecDeque<Cmd>,
) {
    for cmd in cmds {
        let r = match cmd {
            Cmd::Wake => {
                pump_pushes(master, session, id);
                Ok(())
            }
            Cmd::Event(e) => session.send_event(&e),
            Cmd::LegacyFanout(body) => session.send_legacy_fanout(&body),
            Cmd::Kick(code, reason) => {
                session.close(code, &reason);
                Ok(())
            }
        };
        if r.is_err() {
            master.lock_registry().send_failed(id);
        }
        if session.is_closed() {
            return;
        }
    }
}

/// Sends the agent's due pushes.
fn pump_pushes(master: &Master, session: &mut MasterSession, id: u64) {
    if session.peer().is_none() {
        return;
    }
    let due = master.lock_registry().due_pushes(id, Instant::now());
    for p in due {
        if session.send_push(&p).is_err() {
            master.lock_registry().send_failed(id);
            return;
        }
    }
}

fn drain_events(
    master: &Master,
    session: &mut MasterSession,
    id: u64,
    handle: &Arc<ConnHandle>,
    closed: &mut Option<CloseInfo>,
) {
    let traffic = session.take_traffic();
    let mut events = Vec::new();
    while let Some(e) = session.poll_event() {
        events.push(e);
    }
    if events.is_empty() && traffic.total_in() == 0 && traffic.total_out() == 0 {
        return;
    }
    let clock = Clock::now();
    let mut delivered = Vec::new();
    let mut wake = false;
    {
        let mut reg = master.lock_registry();
        for e in events {
            match e {
                MasterEvent::Joined(peer) => {
                    log::info!(
                        "{} {} joined (v{}, {}, group {:?})",
                        match peer.role {
                            crate::proto::v2::Role::Agent => "agent",
                            crate::proto::v2::Role::Subscriber => "subscriber",
                        },
                        peer.uuid,
                        peer.version.as_u8(),
                        if peer.sealed { "sealed" } else { "plaintext" },
                        peer.group
                    );
                    reg.joined(id, &peer, clock.mono, clock.unix_ms);
                    wake = true;
                }
                MasterEvent::Report(r) => reg.report(id, r, clock.mono, clock.unix_ms),
                MasterEvent::LegacyReport(b) => reg.legacy_report(id, b, clock.unix_ms),
                MasterEvent::Subscribed(scope) => reg.subscribed(id, scope),
                MasterEvent::LegacySubscribed { code } => {
                    log::debug!("connection {id} registered for legacy pushes (code {code:?})");
                    reg.legacy_subscribed(id);
                }
                MasterEvent::PushAcked(ack) => {
                    if let Some((uuid, _done)) = reg.push_acked(id, ack) {
                        delivered.push((ack.id, uuid));
                    }
                }
                MasterEvent::Closed(info) => *closed = Some(info),
            }
        }
        reg.traffic(id, &traffic, clock.mono, clock.unix_ms);
        master.publish(&mut reg);
    }
    if !delivered.is_empty() {
        master.record_deliveries(&delivered);
    }
    if wake {
        let _ = handle.send(Cmd::Wake);
    }
}
