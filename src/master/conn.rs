//! One connection task: moves bytes between a socket and a
//! [`MasterSession`], and session events into the registry.
//!
//! Memory: the task holds no read buffer of its own. It waits for
//! readiness, then reads into a per-thread buffer and hands the bytes to the
//! session at once, so an idle agent costs its session and socket only.
//! What the session does hold (a partial frame, queued frames) is charged
//! to the master's memory budget every turn; a connection whose growth
//! the budget refuses is closed (`busy`, reason "memory budget full").

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::{Async, Timer};

use super::Master;
use super::budget::ConnCharge;
use super::conn_handle::{Cmd, ConnHandle};
use super::push_log::Answer;
use super::registry::AnswerCheck;
use crate::os::{self, OsEntropy};
use crate::proto::decoder::MAX_FEED;
use crate::proto::v2::CloseCode;
use crate::session::CloseInfo;
use crate::session::master::{MasterEvent, MasterSession, SendError};

thread_local! {
    /// Shared by every connection task on this thread: a task reads into it
    /// and hands the bytes to its session before yielding.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_FEED]);
}

/// Reads at most this many times per wakeup, so one busy peer cannot
/// starve the others on its thread.
const READS_PER_WAKE: usize = 16;

/// Traffic counters are handed to the registry with the next event or at
/// most this late: one registry lock per frame cost more than the frame's
/// own work at high rates (BENCHMARKS.md).
const TRAFFIC_FLUSH: Duration = Duration::from_millis(100);

enum Wake {
    Readable,
    Commands(VecDeque<Cmd>),
    Timer,
}

/// The task's one timer and what it waits for.
///
/// The session's deadline (handshake timeout, then eviction) moves later
/// with every frame; re-arming a reactor timer per frame was measurable.
/// So the timer is only moved earlier, never later: when it fires early
/// the session finds nothing due and the timer is armed again for the
/// current deadline.
struct Deadlines {
    timer: Timer,
    armed: Option<Instant>,
    /// When the agent's outbox next has a push to resend (handed with
    /// every push, refreshed by the registry when it passes).
    resend: Option<Instant>,
    /// When counted traffic must be handed to the registry.
    traffic: Option<Instant>,
    last_traffic_flush: Instant,
}

impl Deadlines {
    fn new(now: Instant) -> Deadlines {
        Deadlines {
            timer: Timer::never(),
            armed: None,
            resend: None,
            traffic: None,
            last_traffic_flush: now,
        }
    }

    /// Arms the timer for the earliest deadline if it would not fire by then.
    fn arm(&mut self, session: Option<Instant>) {
        let Some(next) = [session, self.resend, self.traffic]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        if self.armed.is_none_or(|t| next < t) {
            self.timer.set_at(next);
            self.armed = Some(next);
        }
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve(master: Arc<Master>, stream: Async<TcpStream>, addr: SocketAddr, id: u64) {
    let handle = ConnHandle::new(id);
    let cfg = master.session_config();
    let now = os::now();
    let mut session = MasterSession::new(cfg, now);
    master.lock_registry().conn_opened(handle.clone());
    let mut stream = stream;
    // Boxed: only set at the end, and the task's size is per connection.
    let mut closed: Option<Box<CloseInfo>> = None;
    let mut due = Deadlines::new(now.mono);
    // Given back when the task ends, whatever way it ends.
    let mut charge = ConnCharge::new(master.budget.clone());

    loop {
        // 0. Charge what the last turn left held. Refused growth closes
        //    the connection; the close is reported and flushed below like
        //    any other.
        if !session.is_closed()
            && charge
                .update(
                    session.decoder_bytes(),
                    session.queued_bytes(),
                    session.is_authenticated(),
                )
                .is_err()
        {
            let b = &master.budget;
            session.close(
                CloseCode::Busy,
                &format!(
                    "memory budget full ({} of {} bytes held, {} by unauthenticated peers)",
                    b.total(),
                    b.limit(),
                    b.unauthenticated()
                ),
            );
        }
        // 1. Session events (and, now and then, traffic) into the registry,
        //    before the replies to the same input go out: a peer that has
        //    read our answer to its Subscribe (or its Hello) may rely on the
        //    subscription (or the join) being in effect. Writing first let a
        //    report on another connection miss a subscriber that had already
        //    seen its heartbeat answered (a flaky e2e test found it).
        let now = Instant::now();
        if session.has_events()
            || session.is_closed()
            || (session.has_traffic() && now >= due.last_traffic_flush + TRAFFIC_FLUSH)
        {
            drain_events(&master, &mut session, id, addr, &mut closed);
            due.last_traffic_flush = now;
            due.traffic = None;
        } else if session.has_traffic() && due.traffic.is_none() {
            due.traffic = Some(due.last_traffic_flush + TRAFFIC_FLUSH);
        }
        if session.is_closed() {
            // Flush a final Close frame if the socket still takes it.
            while let Some(bytes) = session.poll_transmit() {
                let sent = write_frame(
                    &master,
                    &mut stream,
                    &bytes,
                    Some(Duration::from_millis(200)),
                )
                .await;
                if !matches!(sent, Ok(true)) {
                    break;
                }
            }
            break;
        }
        // 2. Write what the session queued.
        while let Some(bytes) = session.poll_transmit() {
            match write_frame(&master, &mut stream, &bytes, None).await {
                Ok(true) => {}
                Ok(false) => {
                    let write_timeout = master.settings().write_timeout;
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
        if session.is_closed() {
            // A failed write closed it: the next turn reports the close.
            continue;
        }
        // 3. Wait for input, a command or a deadline.
        due.arm(session.poll_timeout());
        let readable = async {
            let _ = stream.readable().await;
            Wake::Readable
        };
        let command = async { Wake::Commands(poll_fn(|cx| handle.poll_take(cx)).await) };
        let timer = async {
            (&mut due.timer).await;
            Wake::Timer
        };
        match readable.or(command).or(timer).await {
            Wake::Readable => read_available(&master, &mut stream, &mut session),
            Wake::Commands(cmds) => run_commands(&master, &mut session, id, cmds, &mut due),
            Wake::Timer => {
                due.armed = None;
                let now = os::now();
                session.handle_timeout(now);
                if due.resend.is_some_and(|t| t <= now.mono) {
                    // The one way back into push bookkeeping: the registry
                    // has no timer, so the task asks when the resend time
                    // it was handed passes. What is due comes back as
                    // `Cmd::Push`, like every push.
                    due.resend = master.lock_registry().resend_due(id, now.mono);
                }
            }
        }
    }
    let info = closed.map(|c| *c).unwrap_or(CloseInfo {
        code: CloseCode::Normal,
        reason: "closed".into(),
        by_peer: false,
        frame_error: None,
    });
    let mut reg = master.lock_registry();
    // The session forgets its peer once closed; the registry still knows.
    let peer = session.peer().map(|p| p.uuid).or_else(|| reg.uuid_of(id));
    // Reasons such as "evicted: silent for 30 s" repeat the code's name.
    let name = info.code.name();
    let reason = info
        .reason
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(&info.reason);
    log::info!(
        "connection {id} from {addr}{} closed: {name} ({reason})",
        peer.map(|u| format!(" (uuid {u})")).unwrap_or_default(),
    );
    reg.conn_closed(id, &info, os::unix_ms());
    master.publish(&mut reg);
}

/// Writes one frame: at once if the socket takes it all (the usual case,
/// no timer involved), else waiting for room for at most `timeout` (the
/// master's write timeout if `None`). `Ok(false)` means the timeout passed.
async fn write_frame(
    master: &Master,
    stream: &mut Async<TcpStream>,
    bytes: &[u8],
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match stream.get_ref().write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if rest.is_empty() {
        return Ok(true);
    }
    let timeout = timeout.unwrap_or_else(|| master.settings().write_timeout);
    let write = async { stream.write_all(rest).await.map(|()| true) };
    let timeout = async {
        Timer::after(timeout).await;
        Ok(false)
    };
    write.or(timeout).await
}

/// Reads whatever the socket has, without blocking, into the session.
fn read_available(master: &Master, stream: &mut Async<TcpStream>, session: &mut MasterSession) {
    let keys = master.keys();
    for _ in 0..READS_PER_WAKE {
        let clock = os::now();
        let r = READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match stream.get_ref().read(&mut buf[..]) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection",
                )),
                Ok(n) => {
                    session.handle_input(&buf[..n], clock, &*keys, &mut OsEntropy);
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

/// Runs the registry's commands in order. Pushes are sent as handed; after
/// one push fails to go out, the rest taken in this round are skipped
/// (counted once): they stay unacked in the outbox and are handed again
/// at their resend time or on the next session.
fn run_commands(
    master: &Master,
    session: &mut MasterSession,
    id: u64,
    cmds: VecDeque<Cmd>,
    due: &mut Deadlines,
) {
    let mut push_failed = false;
    for cmd in cmds {
        let r = match cmd {
            Cmd::Push { push, resend_at } => {
                due.resend = Some(resend_at);
                if push_failed {
                    continue;
                }
                let r = session.send_push(&push);
                push_failed = r.is_err();
                r
            }
            Cmd::Event(body) => session.send_event(&body),
            Cmd::ResultStored(push_id) => session.confirm_result(push_id),
            Cmd::LegacyFanout(body) => match session.send_legacy_fanout(&body) {
                // Too large for any frame: a drop with a reason, not a
                // send failure of this connection.
                Err(SendError::Encode(e)) => {
                    let unlogged = master
                        .lock_registry()
                        .legacy_fanout_too_large(&body, Instant::now());
                    if let Some(n) = unlogged {
                        let more = match n {
                            0 => String::new(),
                            n => format!("; {n} more such reports since the last warning"),
                        };
                        log::warn!(
                            "a legacy report was not forwarded to legacy subscribers: its \
                             JSON-escaped fan-out: {e} (counted in fanout_dropped_too_large, \
                             once per subscriber{more})"
                        );
                    }
                    continue;
                }
                r => r,
            },
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

fn drain_events(
    master: &Master,
    session: &mut MasterSession,
    id: u64,
    addr: SocketAddr,
    closed: &mut Option<Box<CloseInfo>>,
) {
    let traffic = session.take_traffic();
    let mut events = Vec::new();
    while let Some(e) = session.poll_event() {
        events.push(e);
    }
    if events.is_empty() && traffic.is_empty() {
        return;
    }
    let clock = os::now();
    let mut delivered = Vec::new();
    // Set when the registry refuses the join: what the session said after
    // it in this batch must not reach the registry.
    let mut refused = None;
    let mut answered = Vec::new();
    {
        let mut reg = master.lock_registry();
        for e in events {
            if refused.is_some() && !matches!(e, MasterEvent::Closed(_)) {
                continue;
            }
            match e {
                MasterEvent::IdentityRefused { uuid, who } => {
                    log::warn!(
                        "connection {id} from {addr}: {} session refused: uuid {uuid} has its own \
                         key and joins only sealed",
                        who.name()
                    );
                    reg.identity_refused(who);
                }
                MasterEvent::Joined(peer) => {
                    if let Some(r) = reg.joined(id, &peer, addr, clock.mono, clock.unix_ms) {
                        log::warn!("connection {id} from {addr}: {}", r.reason);
                        refused = Some(r.reason);
                        continue;
                    }
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
                }
                MasterEvent::Report(r) => reg.report(id, r, clock.mono, clock.unix_ms),
                MasterEvent::LegacyReport(b) => reg.legacy_report(id, b, clock.unix_ms),
                MasterEvent::Subscribed(scope) => reg.subscribed(id, scope),
                MasterEvent::LegacySubscribed { code } => {
                    log::debug!("connection {id} registered for legacy pushes (code {code:?})");
                    reg.legacy_subscribed(id);
                }
                MasterEvent::PushAcked(ack) => {
                    if let Some((uuid, _done)) = reg.push_acked(id, ack, clock.mono) {
                        delivered.push((ack.id, uuid));
                    }
                }
                MasterEvent::PushAnswered(r) => answered.push(r),
                MasterEvent::Closed(info) => *closed = Some(Box::new(info)),
            }
        }
        reg.traffic(id, &traffic, clock.mono, clock.unix_ms);
        master.publish(&mut reg);
    }
    if !delivered.is_empty() {
        master.record_deliveries(&delivered);
    }
    if let Some(reason) = refused {
        session.refuse(CloseCode::AuthFailed, &reason);
        return;
    }
    for r in answered {
        store_answer(master, session, id, r, clock.unix_ms);
    }
}

/// An agent's answer: checked by the registry, then queued for a synced
/// `Answered` record (the confirmation comes back as `Cmd::ResultStored`
/// once it is on disk), confirmed at once when already stored or refused.
fn store_answer(
    master: &Master,
    session: &mut MasterSession,
    id: u64,
    r: crate::proto::v2::PushResult,
    now_ms: u64,
) {
    let check = master.lock_registry().check_answer(id, &r);
    match check {
        AnswerCheck::Take(uuid) => {
            let bytes = r.output.len();
            let answer = Answer {
                exit: r.exit,
                output: r.output,
                truncated: r.truncated,
                at_unix_ms: r.at_unix_ms,
                stored_unix_ms: now_ms,
            };
            if !master.record_answer(r.id, uuid, answer) {
                let mut reg = master.lock_registry();
                reg.answer_not_queued(r.id, uuid, bytes);
                *reg.counters
                    .push_results_refused
                    .entry("queue_full")
                    .or_default() += 1;
            }
        }
        AnswerCheck::Storing => {}
        AnswerCheck::Stored => {
            let _ = session.confirm_result(r.id);
        }
        AnswerCheck::Refused(reason) => {
            log::debug!("connection {id}: result of push {} refused: {reason}", r.id);
            let _ = session.confirm_result(r.id);
        }
    }
}
