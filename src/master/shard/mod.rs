//! Shards: the master's agent connections, each owned by one thread.
//!
//! `--threads N` starts N shards. A shard is a plain readiness loop over
//! its own epoll: it accepts from the shared listening sockets (each shard
//! watches them with `EPOLLEXCLUSIVE`, so one connection wakes one shard),
//! hands every new connection round robin to a shard (itself or another,
//! through that shard's [`Mailbox`]), and from then on that connection's
//! socket, session, deadlines and traffic live on that one thread: its
//! wakeups never cross threads, and nothing needs a waker, a task or a
//! reactor timer per connection.
//!
//! Other threads reach a connection only through the registry's
//! [`ConnHandle`]: a command queued there
//! notes the connection in its shard's mailbox, which wakes the shard's
//! epoll through an eventfd (once per sleep, however many notes).
//!
//! Deadlines (handshake timeout, eviction, push resend, write timeout) are
//! one min-heap per shard ([`timers`]); traffic counters go to the
//! registry for all of a shard's connections under one lock every
//! [`TRAFFIC_FLUSH`].
//!
//! The HTTP API, the push log's committer, the cluster's threads and the
//! signal handling live elsewhere (see `docs/ARCHITECTURE.md`, "Threads").

pub mod conn;
pub mod load;
pub mod mailbox;
pub mod timers;

use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::epoll;

use super::Master;
use super::conn_handle::ConnHandle;
use super::listener::{RateLimiter, admit_and_log};
use crate::keys::Keyring;
use crate::proto::decoder::MAX_FEED;
use conn::{Conn, State};
use mailbox::{HandedOver, Mail, Mailbox, Token};
use timers::Timers;

/// Traffic counters are handed to the registry at most this late: one
/// registry lock per frame cost more than the frame's own work at high
/// rates (BENCHMARKS.md); one per shard per flush costs nothing.
pub const TRAFFIC_FLUSH: Duration = Duration::from_millis(100);

/// Connections a shard accepts per readiness of a listener before it
/// serves its other sockets again.
const ACCEPTS_PER_WAKE: usize = 64;

/// Readiness events taken per epoll wait.
const EVENTS_PER_WAIT: usize = 256;

/// epoll data of the mailbox's eventfd.
const WAKE: u64 = u64::MAX;
/// epoll data of listener `i`: `LISTENER - i`. Connection tokens are
/// slot | generation << 32 with slots far below 2^32 - 2^16.
const LISTENER: u64 = u64::MAX - 1;

/// What every shard shares: the listening sockets, the per-IP limit on new
/// connections and where to hand them.
struct Acceptor {
    listeners: Vec<TcpListener>,
    limiter: Mutex<RateLimiter>,
    next_shard: AtomicUsize,
    mailboxes: Vec<Arc<Mailbox>>,
}

/// The running shards (see the module docs).
pub struct Shards {
    mailboxes: Vec<Arc<Mailbox>>,
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts `n` shard threads serving agents on `listeners`.
    pub fn start(
        master: Arc<Master>,
        listeners: Vec<TcpListener>,
        n: usize,
    ) -> Result<Shards, String> {
        let n = n.max(1);
        for l in &listeners {
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
        }
        let mut mailboxes = Vec::with_capacity(n);
        for _ in 0..n {
            mailboxes.push(Arc::new(
                Mailbox::new().map_err(|e| format!("cannot create an eventfd: {e}"))?,
            ));
        }
        let acceptor = Arc::new(Acceptor {
            listeners,
            limiter: Mutex::new(RateLimiter::new(master.settings().handshakes_per_ip)),
            next_shard: AtomicUsize::new(0),
            mailboxes: mailboxes.clone(),
        });
        let mut threads = Vec::with_capacity(n);
        for index in 0..n {
            let shard = Shard::new(index, master.clone(), acceptor.clone())
                .map_err(|e| format!("cannot start shard {index}: {e}"))?;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("edge-gw-shard-{index}"))
                    .spawn(move || shard.run())
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Shards { mailboxes, threads })
    }

    /// What the systemd watchdog asks the shards (see [`Liveness`]).
    pub fn liveness(&self) -> Liveness {
        Liveness {
            mailboxes: self.mailboxes.clone(),
        }
    }

    /// Tells every shard to drop its connections and end, and waits.
    pub fn stop(self) {
        for m in &self.mailboxes {
            m.stop();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The watchdog's view of the shards: each check asks every shard to
/// answer through its mailbox and reports whether all answered the
/// previous one (a watchdog period ago).
pub struct Liveness {
    mailboxes: Vec<Arc<Mailbox>>,
}

impl Liveness {
    /// Whether every shard answered the last check; then checks again.
    /// A shard that did not is stuck: it is logged, and the caller skips
    /// its watchdog ping so systemd restarts the master.
    pub fn check(&self) -> bool {
        let mut all = true;
        for (i, m) in self.mailboxes.iter().enumerate() {
            if !m.answered() {
                log::error!(
                    "shard {i} has not turned its loop for a watchdog period: it is stuck; \
                     not telling the systemd watchdog the master is alive"
                );
                all = false;
            }
            m.ping();
        }
        all
    }
}

/// What a shard's connections share while one of them is served: the
/// master, the epoll, the timers, the buffers.
pub struct Ctx {
    /// The master.
    pub master: Arc<Master>,
    /// The keyring handshakes are checked against, and its version: taken
    /// again from the master only when a reload swapped it.
    pub keys: Arc<Keyring>,
    keys_version: u32,
    epoll: OwnedFd,
    /// The shard's deadlines.
    pub timers: Timers,
    /// Every read lands here first; only a partial frame is kept (by the
    /// session).
    pub read_buf: Box<[u8]>,
    /// Frames gathered for one write.
    pub write_buf: Vec<u8>,
    /// Connections with traffic not yet handed to the registry.
    pub traffic: Vec<Token>,
}

impl Ctx {
    /// Takes the master's keyring again if a reload swapped it since.
    fn refresh_keys(&mut self) {
        // The version first: a keyring read after it is at least as new.
        let v = self.master.keys_version();
        if v != self.keys_version {
            self.keys = self.master.keys();
            self.keys_version = v;
        }
    }

    /// Watches `stream` for writability (`out`) or input.
    pub fn watch(&self, stream: &std::net::TcpStream, token: Token, out: bool) {
        let flags = if out {
            epoll::EventFlags::OUT
        } else {
            epoll::EventFlags::IN
        };
        if let Err(e) = epoll::modify(
            &self.epoll,
            stream,
            epoll::EventData::new_u64(token.0),
            flags,
        ) {
            log::warn!("epoll: cannot change what a connection waits for: {e}");
        }
    }
}

/// One slot of a shard's connection table.
#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Box<Conn>>,
}

/// One shard: its epoll, its connections, its timers.
struct Shard {
    index: usize,
    ctx: Ctx,
    acceptor: Arc<Acceptor>,
    mailbox: Arc<Mailbox>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    /// Listeners taken out of the epoll after an accept error, until then.
    paused: Vec<Option<Instant>>,
    accept_backoff: Duration,
    last_traffic_flush: Instant,
}

impl Shard {
    fn new(index: usize, master: Arc<Master>, acceptor: Arc<Acceptor>) -> std::io::Result<Shard> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let mailbox = acceptor.mailboxes[index].clone();
        epoll::add(
            &epoll,
            mailbox.wake_fd(),
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )?;
        for (i, l) in acceptor.listeners.iter().enumerate() {
            epoll::add(
                &epoll,
                l,
                epoll::EventData::new_u64(LISTENER - i as u64),
                epoll::EventFlags::IN | epoll::EventFlags::EXCLUSIVE,
            )?;
        }
        Ok(Shard {
            index,
            ctx: Ctx {
                keys_version: master.keys_version(),
                keys: master.keys(),
                master,
                epoll,
                timers: Timers::default(),
                read_buf: vec![0; MAX_FEED].into_boxed_slice(),
                write_buf: Vec::new(),
                traffic: Vec::new(),
            },
            paused: vec![None; acceptor.listeners.len()],
            acceptor,
            mailbox,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            accept_backoff: Duration::from_millis(10),
            last_traffic_flush: Instant::now(),
        })
    }

    /// The loop: wait, serve what is ready, the mail, the deadlines.
    fn run(mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS_PER_WAIT);
        let mut mail = Mail::default();
        loop {
            let timeout = self.timeout();
            events.clear();
            let ts = timeout.map(|d| rustix::event::Timespec {
                tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(d.subsec_nanos()),
            });
            match epoll::wait(
                &self.ctx.epoll,
                rustix::buffer::spare_capacity(&mut events),
                ts.as_ref(),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    // Nothing the loop can fix: count on the next turn.
                    crate::log_limited!(
                        log::Level::Error,
                        "shard.epoll",
                        "shard {}: epoll_wait failed: {e}",
                        self.index
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            self.ctx.refresh_keys();
            for ev in &events {
                let flags = ev.flags;
                match ev.data.u64() {
                    WAKE => {}
                    d if d > LISTENER - self.acceptor.listeners.len() as u64 && d <= LISTENER => {
                        self.accept((LISTENER - d) as usize);
                    }
                    d => self.ready(Token(d), flags),
                }
            }
            if self.mailbox.is_signalled() {
                self.mailbox.take(&mut mail);
                for h in mail.handed_over.drain(..) {
                    self.open(h);
                }
                for &t in &mail.ready {
                    self.serve(t, |c, ctx| c.on_commands(ctx));
                }
                if mail.stop {
                    return;
                }
            }
            let now = Instant::now();
            self.deadlines(now);
            if !self.ctx.traffic.is_empty() && now >= self.last_traffic_flush + TRAFFIC_FLUSH {
                self.flush_traffic(now);
            }
        }
    }

    /// How long the next wait may sleep.
    fn timeout(&self) -> Option<Duration> {
        if self.mailbox.is_signalled() {
            return Some(Duration::ZERO);
        }
        let traffic =
            (!self.ctx.traffic.is_empty()).then_some(self.last_traffic_flush + TRAFFIC_FLUSH);
        [self.ctx.timers.next(), traffic]
            .into_iter()
            .chain(self.paused.iter().copied())
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Serves the connection at `t` with `f`, if it is still there, and
    /// drops it when `f` says it is done.
    fn serve(&mut self, t: Token, f: impl FnOnce(&mut Conn, &mut Ctx) -> State) {
        let Some(slot) = self.slots.get_mut(t.slot()) else {
            return;
        };
        if slot.generation != t.generation() {
            return;
        }
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        if f(conn, &mut self.ctx) == State::Done {
            self.close(t);
        }
    }

    /// A connection's socket is ready.
    fn ready(&mut self, t: Token, flags: epoll::EventFlags) {
        let input = epoll::EventFlags::IN | epoll::EventFlags::ERR | epoll::EventFlags::HUP;
        if flags.contains(epoll::EventFlags::OUT) {
            self.serve(t, |c, ctx| c.on_writable(ctx));
        }
        if flags.intersects(input) {
            self.serve(t, |c, ctx| c.on_readable(ctx));
        }
    }

    /// Serves the connections whose deadline has come.
    fn deadlines(&mut self, now: Instant) {
        while let Some((at, t)) = self.ctx.timers.pop_due(now) {
            let current = self
                .slots
                .get(t.slot())
                .filter(|s| s.generation == t.generation())
                .and_then(|s| s.conn.as_ref())
                .is_some_and(|c| c.armed() == Some(at));
            if current {
                self.serve(t, |c, ctx| c.on_timer(ctx, now));
            }
        }
        for i in 0..self.paused.len() {
            if self.paused[i].is_some_and(|t| t <= now) {
                self.paused[i] = None;
                self.resume_listener(i);
            }
        }
        let slots = &self.slots;
        self.ctx.timers.compact(self.live, |at, t| {
            slots
                .get(t.slot())
                .filter(|s| s.generation == t.generation())
                .and_then(|s| s.conn.as_ref())
                .is_some_and(|c| c.armed() == Some(at))
        });
    }

    /// Hands every noted connection's traffic to the registry, one lock.
    fn flush_traffic(&mut self, now: Instant) {
        self.last_traffic_flush = now;
        let clock = crate::os::now();
        let master = self.ctx.master.clone();
        let mut reg = master.lock_registry();
        for t in self.ctx.traffic.drain(..) {
            if let Some(c) = self
                .slots
                .get_mut(t.slot())
                .filter(|s| s.generation == t.generation())
                .and_then(|s| s.conn.as_mut())
            {
                c.flush_traffic(&mut reg, clock);
            }
        }
        master.publish(&mut reg);
    }

    /// Accepts what listener `i` has, admitting each connection by the
    /// master's caps and handing it to the next shard in turn.
    fn accept(&mut self, i: usize) {
        let master = self.ctx.master.clone();
        for _ in 0..ACCEPTS_PER_WAKE {
            if master.stopping.load(Ordering::SeqCst) {
                // Stopped: leave the backlog to the close at exit.
                let _ = epoll::delete(&self.ctx.epoll, &self.acceptor.listeners[i]);
                return;
            }
            let (stream, addr) = match self.acceptor.listeners[i].accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Usually EMFILE: the level-triggered listener would
                    // spin, so it leaves this epoll until descriptors may
                    // have freed up.
                    crate::log_limited!(
                        log::Level::Warn,
                        "listener.accept",
                        "accept failed: {e}; retrying in {:?}",
                        self.accept_backoff
                    );
                    let _ = epoll::delete(&self.ctx.epoll, &self.acceptor.listeners[i]);
                    self.paused[i] = Some(Instant::now() + self.accept_backoff);
                    self.accept_backoff = (self.accept_backoff * 2).min(Duration::from_secs(1));
                    return;
                }
            };
            self.accept_backoff = Duration::from_millis(10);
            let max = master.settings().max_connections;
            let (refuse, id) = {
                let mut reg = master.lock_registry();
                let reason = if reg.connections() >= max {
                    Some("max_connections")
                } else if master.budget.is_spent() {
                    // Newest first: with every byte of the budget held, a
                    // new connection is refused before any it would take from.
                    master.budget.refuse(super::budget::Refusal::Accept);
                    Some("memory_budget")
                } else if !admit_and_log(
                    &mut self
                        .acceptor
                        .limiter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()),
                    addr.ip(),
                ) {
                    Some("rate_limited")
                } else {
                    None
                };
                if let Some(r) = reason {
                    *reg.counters.refused.entry(r).or_default() += 1;
                }
                (reason, reg.next_conn_id())
            };
            if let Some(reason) = refuse {
                log::debug!("refused connection from {addr}: {reason}");
                continue;
            }
            let n = self.acceptor.mailboxes.len();
            let to = self.acceptor.next_shard.fetch_add(1, Ordering::Relaxed) % n;
            let h = HandedOver { stream, addr, id };
            if to == self.index {
                self.open(h);
            } else {
                self.acceptor.mailboxes[to].hand_over(h);
            }
        }
    }

    fn resume_listener(&mut self, i: usize) {
        if self.ctx.master.stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = epoll::add(
            &self.ctx.epoll,
            &self.acceptor.listeners[i],
            epoll::EventData::new_u64(LISTENER - i as u64),
            epoll::EventFlags::IN | epoll::EventFlags::EXCLUSIVE,
        ) {
            log::error!("shard {}: cannot watch the listener again: {e}", self.index);
        }
    }

    /// Starts serving an admitted connection.
    fn open(&mut self, h: HandedOver) {
        let HandedOver { stream, addr, id } = h;
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("connection {id} from {addr}: {e}");
            return;
        }
        let _ = stream.set_nodelay(true);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let Ok(s) = u32::try_from(self.slots.len()) else {
                    log::error!(
                        "connection {id} from {addr}: shard {} has no slot left",
                        self.index
                    );
                    return;
                };
                self.slots.push(Slot::default());
                s
            }
        };
        let t = Token::new(slot, self.slots[slot as usize].generation);
        let master = self.ctx.master.clone();
        let handle = ConnHandle::in_shard(id, self.mailbox.clone(), t);
        master.lock_registry().conn_opened(handle.clone());
        if let Err(e) = epoll::add(
            &self.ctx.epoll,
            &stream,
            epoll::EventData::new_u64(t.0),
            epoll::EventFlags::IN,
        ) {
            log::warn!("connection {id} from {addr}: cannot watch it: {e}");
        }
        let conn = Conn::new(&master, stream, addr, handle, t);
        self.slots[slot as usize].conn = Some(Box::new(conn));
        self.live += 1;
        master.shard_load.opened(self.index);
        // Arms the handshake deadline.
        self.serve(t, |c, ctx| c.on_commands(ctx));
    }

    /// Drops the connection at `t` (it is done), telling the registry.
    fn close(&mut self, t: Token) {
        let Some(slot) = self.slots.get_mut(t.slot()) else {
            return;
        };
        let Some(conn) = slot.conn.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.live -= 1;
        self.ctx.master.shard_load.closed(self.index);
        let _ = epoll::delete(&self.ctx.epoll, conn.stream().as_fd());
        conn.finish(&self.ctx.master);
        if let Ok(s) = u32::try_from(t.slot()) {
            self.free.push(s);
        }
    }
}
