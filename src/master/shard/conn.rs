//! One connection in a shard: the bytes between its socket and its
//! [`MasterSession`], and the session's events into the registry.
//!
//! Everything here runs on the shard's thread, driven by its epoll loop
//! (`super::Shard`): readable, writable, commands noted in the mailbox,
//! a deadline come due. Each of those ends in `Conn::turn`, which does
//! what the old per-connection task did per wakeup: charge the memory
//! budget, hand events to the registry, write what the session queued,
//! arm the next deadline.
//!
//! Memory: an idle connection holds its session, socket and this struct;
//! it reads into the shard's buffer and keeps bytes only for a partial
//! frame (in the session) or a write the socket did not take (`Behind`,
//! freed once written). What it holds is charged to the master's memory
//! budget every turn; a connection whose growth the budget refuses is
//! closed (`busy`, reason "memory budget full").

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::Master;
use super::super::budget::ConnCharge;
use super::super::conn_handle::{Cmd, ConnHandle};
use super::super::push_log::Answer;
use super::super::registry::AnswerCheck;
use super::Ctx;
use super::mailbox::Token;
use crate::os::{self, OsEntropy};
use crate::proto::decoder::MAX_FEED;
use crate::proto::v2::CloseCode;
use crate::session::CloseInfo;
use crate::session::master::{MasterEvent, MasterSession, SendError};

/// Reads at most this many times per readiness, so one busy peer cannot
/// starve the others on its shard (the epoll is level-triggered: what is
/// left is reported again on the next wait).
const READS_PER_WAKE: usize = 16;

/// Frames gathered into one write: several queued frames (a burst of
/// fan-out, pushes) go out in one syscall.
const WRITE_BATCH: usize = 64 * 1024;

/// How long a closed connection may take to write its last frames (the
/// Close frame) before its socket is dropped anyway.
const CLOSE_LINGER: Duration = Duration::from_millis(200);

/// One connection (see the module docs).
pub struct Conn {
    stream: TcpStream,
    session: MasterSession,
    handle: Arc<ConnHandle>,
    charge: ConnCharge,
    addr: SocketAddr,
    token: Token,
    /// What the socket did not take of the last write, boxed: an idle
    /// connection has none. Until it is gone the session's queue is left
    /// alone and nothing is read: the peer's backpressure reaches the
    /// session's bounded queue.
    behind: Option<Box<Behind>>,
    /// The earliest deadline the shard's timers hold for it.
    armed: Option<Instant>,
    /// When the agent's outbox next has a push to resend (handed with
    /// every push, refreshed by the registry when it passes).
    resend: Option<Instant>,
    /// Closed: flushing its last frames until then.
    closing_until: Option<Instant>,
    /// How it closed, once the session said so. Boxed: only set at the end.
    closed: Option<Box<CloseInfo>>,
    /// Whether epoll reports writability (only while `out` holds bytes).
    watching_out: bool,
    /// In the shard's list of connections with traffic to count.
    traffic_noted: bool,
    /// A write stalled past the write timeout: nothing more is written.
    stalled: bool,
}

/// What a handler left the connection as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Still served.
    Open,
    /// Done: the shard drops it (after [`Conn::finish`]).
    Done,
}

impl Conn {
    /// A connection just accepted, already registered with the registry
    /// through `handle`.
    pub fn new(
        master: &Master,
        stream: TcpStream,
        addr: SocketAddr,
        handle: Arc<ConnHandle>,
        token: Token,
    ) -> Conn {
        Conn {
            stream,
            session: MasterSession::new(master.session_config(), os::now()),
            handle,
            charge: ConnCharge::new(master.budget.clone()),
            addr,
            token,
            behind: None,
            armed: None,
            resend: None,
            closing_until: None,
            closed: None,
            watching_out: false,
            traffic_noted: false,
            stalled: false,
        }
    }

    /// The socket, for epoll.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The deadline the shard's timers hold for it.
    pub fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// The socket has input (or an error or hang-up to report).
    pub fn on_readable(&mut self, ctx: &mut Ctx) -> State {
        self.read_available(ctx);
        self.turn(ctx)
    }

    /// The socket takes output again.
    pub fn on_writable(&mut self, ctx: &mut Ctx) -> State {
        if let Err(e) = self.write_out() {
            self.behind = None;
            self.session.handle_eof(&format!("write failed: {e}"));
        }
        self.turn(ctx)
    }

    /// The registry queued commands for it.
    pub fn on_commands(&mut self, ctx: &mut Ctx) -> State {
        let cmds = self.handle.take();
        if !self.session.is_closed() {
            run_commands(
                &ctx.master,
                &mut self.session,
                self.handle.id,
                cmds,
                &mut self.resend,
            );
        }
        self.turn(ctx)
    }

    /// Its armed deadline came due at `now`.
    pub fn on_timer(&mut self, ctx: &mut Ctx, now: Instant) -> State {
        self.armed = None;
        if self.closing_until.is_some_and(|t| t <= now) {
            return State::Done;
        }
        if self.behind.as_ref().is_some_and(|b| b.deadline <= now) {
            let write_timeout = ctx.master.settings().write_timeout;
            self.behind = None;
            self.stalled = true;
            self.session.close(
                CloseCode::SlowConsumer,
                &format!(
                    "slow consumer: a write stalled for {} s",
                    write_timeout.as_secs()
                ),
            );
            ctx.master.lock_registry().send_failed(self.handle.id);
        }
        let clock = os::now();
        self.session.handle_timeout(clock);
        if self.resend.is_some_and(|t| t <= clock.mono) {
            // The one way back into push bookkeeping: the registry has no
            // timer, so the connection asks when the resend time it was
            // handed passes. What is due comes back as `Cmd::Push`, like
            // every push.
            self.resend = ctx
                .master
                .lock_registry()
                .resend_due(self.handle.id, clock.mono);
        }
        self.turn(ctx)
    }

    /// Hands counted traffic to the registry (the shard does this for all
    /// its noted connections under one lock, every `TRAFFIC_FLUSH`).
    pub fn flush_traffic(
        &mut self,
        reg: &mut super::super::registry::Registry,
        clock: crate::session::Clock,
    ) {
        self.traffic_noted = false;
        if self.session.has_traffic() {
            let t = self.session.take_traffic();
            reg.traffic(self.handle.id, &t, clock.mono, clock.unix_ms);
        }
    }

    /// What every handler ends with, like one turn of the old task's loop.
    fn turn(&mut self, ctx: &mut Ctx) -> State {
        loop {
            // 0. Charge what is held. Refused growth closes the connection;
            //    the close is reported and flushed below like any other.
            if !self.session.is_closed()
                && self
                    .charge
                    .update(
                        self.session.decoder_bytes(),
                        self.session.queued_bytes()
                            + self.behind.as_ref().map_or(0, |b| b.bytes.len()),
                        self.session.is_authenticated(),
                    )
                    .is_err()
            {
                let b = &ctx.master.budget;
                self.session.close(
                    CloseCode::Busy,
                    &format!(
                        "memory budget full ({} of {} bytes held, {} by unauthenticated peers)",
                        b.total(),
                        b.limit(),
                        b.unauthenticated()
                    ),
                );
            }
            // 1. Session events into the registry, before the replies to
            //    the same input go out: a peer that has read our answer to
            //    its Subscribe (or its Hello) may rely on the subscription
            //    (or the join) being in effect. Traffic alone waits for the
            //    shard's next flush.
            if self.session.has_events() || self.session.is_closed() {
                self.drain(ctx);
            } else if self.session.has_traffic() && !self.traffic_noted {
                self.traffic_noted = true;
                ctx.traffic.push(self.token);
            }
            if self.session.is_closed() {
                return self.closing(ctx);
            }
            // 2. Write what the session queued, unless the socket is still
            //    behind with the last write.
            if self.behind.is_none()
                && let Err(e) = self.transmit(ctx)
            {
                self.behind = None;
                self.session.handle_eof(&format!("write failed: {e}"));
                // Closed: the next round reports it.
                continue;
            }
            self.watch(ctx);
            return State::Open;
        }
    }

    /// Hands the session's events (and traffic) to the registry.
    fn drain(&mut self, ctx: &Ctx) {
        drain_events(
            &ctx.master,
            &mut self.session,
            self.handle.id,
            self.addr,
            &mut self.closed,
        );
    }

    /// The session is closed: write its last frames if the socket takes
    /// them within [`CLOSE_LINGER`], then done.
    fn closing(&mut self, ctx: &mut Ctx) -> State {
        if self.stalled {
            return State::Done;
        }
        // A refused join closes the session inside `drain_events`; its
        // Closed event is taken here.
        if self.session.has_events() {
            self.drain(ctx);
        }
        if self.behind.is_none() && self.transmit(ctx).is_err() {
            return State::Done;
        }
        if self.behind.is_none() {
            return State::Done;
        }
        if self.closing_until.is_none() {
            self.closing_until = Some(Instant::now() + CLOSE_LINGER);
        }
        self.watch(ctx);
        State::Open
    }

    /// Writes what the session queued, several frames per write, until it
    /// has no more or the socket takes no more (the rest waits in [`Behind`]).
    fn transmit(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        while self.behind.is_none() {
            let Some(first) = self.session.poll_transmit() else {
                return Ok(());
            };
            let Some(second) = self.session.poll_transmit() else {
                // The usual case, one frame: written without a copy.
                return self.write_some(ctx, &first);
            };
            let batch = &mut ctx.write_buf;
            batch.clear();
            batch.extend_from_slice(&first);
            batch.extend_from_slice(&second);
            while batch.len() < WRITE_BATCH {
                match self.session.poll_transmit() {
                    Some(f) => batch.extend_from_slice(&f),
                    None => break,
                }
            }
            let batch = std::mem::take(&mut ctx.write_buf);
            let r = self.write_some(ctx, &batch);
            ctx.write_buf = batch;
            r?;
            if ctx.write_buf.capacity() > 4 * WRITE_BATCH {
                // One huge frame: do not keep its capacity per shard.
                ctx.write_buf = Vec::with_capacity(WRITE_BATCH);
            }
        }
        Ok(())
    }

    /// Writes `bytes` as far as the socket takes them now; the rest
    /// waits in [`Behind`], given the write timeout to go out.
    fn write_some(&mut self, ctx: &Ctx, bytes: &[u8]) -> io::Result<()> {
        let rest = &bytes[write_now(&mut self.stream, bytes)?..];
        if !rest.is_empty() {
            self.behind = Some(Box::new(Behind {
                bytes: rest.to_vec(),
                deadline: Instant::now() + ctx.master.settings().write_timeout,
            }));
        }
        Ok(())
    }

    /// Writes what is behind; frees it once written.
    fn write_out(&mut self) -> io::Result<()> {
        let Some(behind) = self.behind.as_mut() else {
            return Ok(());
        };
        let written = write_now(&mut self.stream, &behind.bytes)?;
        if written == behind.bytes.len() {
            self.behind = None;
        } else {
            behind.bytes.drain(..written);
        }
        Ok(())
    }

    /// Watches for writability while a write is behind, for input
    /// otherwise, and arms the earliest deadline if the timers do not
    /// already hold an earlier one for it.
    fn watch(&mut self, ctx: &mut Ctx) {
        let want_out = self.behind.is_some();
        if want_out != self.watching_out {
            self.watching_out = want_out;
            ctx.watch(&self.stream, self.token, want_out);
        }
        let next = [
            self.session.poll_timeout(),
            self.resend,
            self.behind.as_ref().map(|b| b.deadline),
            self.closing_until,
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(next) = next
            && self.armed.is_none_or(|t| next < t)
        {
            self.armed = Some(next);
            ctx.timers.arm(next, self.token);
        }
    }

    /// Reads whatever the socket has, without blocking, into the session.
    fn read_available(&mut self, ctx: &mut Ctx) {
        for _ in 0..READS_PER_WAKE {
            let clock = os::now();
            match self.stream.read(&mut ctx.read_buf[..]) {
                Ok(0) => {
                    self.session.handle_eof("peer closed the connection");
                    return;
                }
                Ok(n) => {
                    self.session.handle_input(
                        &ctx.read_buf[..n],
                        clock,
                        &*ctx.keys,
                        &mut OsEntropy,
                    );
                    if n < MAX_FEED {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.session.handle_eof(&e.to_string());
                    return;
                }
            }
            if self.session.is_closed() {
                return;
            }
        }
    }

    /// Logs the close and tells the registry; the shard drops it next.
    pub fn finish(self, master: &Master) {
        let id = self.handle.id;
        let info = self.closed.map(|c| *c).unwrap_or(CloseInfo {
            code: CloseCode::Normal,
            reason: "closed".into(),
            by_peer: false,
            frame_error: None,
        });
        let mut reg = master.lock_registry();
        // The session forgets its peer once closed; the registry still knows.
        let peer = self
            .session
            .peer()
            .map(|p| p.uuid)
            .or_else(|| reg.uuid_of(id));
        // Reasons such as "evicted: silent for 30 s" repeat the code's name.
        let name = info.code.name();
        let reason = info
            .reason
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(": "))
            .unwrap_or(&info.reason);
        log::info!(
            "connection {id} from {}{} closed: {name} ({reason})",
            self.addr,
            peer.map(|u| format!(" (uuid {u})")).unwrap_or_default(),
        );
        reg.conn_closed(id, &info, os::unix_ms());
        master.publish(&mut reg);
    }
}

/// Writes as much of `bytes` as the socket takes without blocking; how
/// much that was.
fn write_now(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// A write the socket did not take (see [`Conn`]).
struct Behind {
    bytes: Vec<u8>,
    /// When the stalled write gives up: the master's write timeout after
    /// the socket first refused it.
    deadline: Instant,
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
    resend: &mut Option<Instant>,
) {
    let mut push_failed = false;
    for cmd in cmds {
        let r = match cmd {
            Cmd::Push { push, resend_at } => {
                *resend = Some(resend_at);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_adds_little_to_an_idle_session() {
        // What a connection costs beyond its session, in its shard's slot
        // (its socket's kernel memory aside): BENCHMARKS.md, idle memory.
        let shell = std::mem::size_of::<Conn>() - std::mem::size_of::<MasterSession>();
        assert!(
            shell <= 160,
            "the shell's part of a connection grew to {shell} B"
        );
    }
}
