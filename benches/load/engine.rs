//! The connection engine: N client connections spread over a few threads,
//! each thread one level-triggered epoll loop over non-blocking sockets.
//!
//! A [`Proto`] is one simulated client (an edge-gw agent, an MQTT client,
//! an echo client): it gets bytes and appends bytes to send; the engine
//! moves them. A run has phases, each started by the caller:
//!
//! 1. **build**: every thread makes its clients (precomputing what a real
//!    device would have ready before connecting, like its first handshake
//!    message);
//! 2. **open**: connect, at most `window` connections per run still
//!    handshaking at a time (the master's listen queue holds 128);
//!    [`Run::wait_ready`] returns when every client is ready (handshaken);
//! 3. **go**: every client starts its workload; the caller reads the
//!    shared counters around a measured interval;
//! 4. **stop**: threads drop their sockets and hand back latency samples.
//!
//! Counters are kept per thread and added to the shared atomics once per
//! loop turn, so the hot path touches no shared cache line per message.
//!
//! **Failover** ([`Run::start_failover`], the cluster scenarios): each
//! client holds a list of masters and, when its connection is lost (closed,
//! reset, refused), moves on exactly as a real `edge-gw --agent` does: the
//! next entry, after the wait the agent's own `agent::masters::MasterList`
//! gives (full jitter up to 1 s within a round, the growing backoff after
//! a whole round), with a fresh client from the factory (a new handshake).
//! Reconnects do not wait for the open window: real agents have none.
//! A reconnected client is not sent `go` again (the failover scenario's
//! clients are idle).

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::net::{self, Poller};

/// Nanoseconds since the tool started: the clock of latency timestamps
/// carried in messages (sender and receiver are both in this process).
pub fn now_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What a client can do to the world during a callback.
pub struct Io<'a> {
    /// Bytes to send (appended; the engine writes them after the call).
    pub out: &'a mut Vec<u8>,
    /// Completed operations (round trips, deliveries) to count.
    pub ops: u64,
    /// Set once the client is connected and handshaken.
    pub ready: bool,
    /// Latency samples, nanoseconds.
    pub lat: &'a mut Vec<u64>,
    /// Sender lag samples (how late a paced send went out), nanoseconds.
    pub lag: &'a mut Vec<u64>,
    /// The run's shared state (for counters other clients advance).
    pub shared: &'a Shared,
}

/// One simulated client.
pub trait Proto: Send {
    /// The socket is connected: queue the opening bytes.
    fn start(&mut self, io: &mut Io<'_>);
    /// Bytes arrived. An error ends the run.
    fn input(&mut self, data: &[u8], io: &mut Io<'_>) -> Result<(), String>;
    /// Every client is ready: start the workload.
    fn go(&mut self, _io: &mut Io<'_>) {}
    /// When [`tick`](Self::tick) wants to run next (paced senders).
    fn next_tick(&self) -> Option<Instant> {
        None
    }
    /// Time-driven work, called at or after [`next_tick`](Self::next_tick).
    fn tick(&mut self, _now: Instant, _io: &mut Io<'_>) {}
}

/// Makes client number `i`.
pub type Factory = Arc<dyn Fn(usize) -> Box<dyn Proto> + Send + Sync>;

/// State shared by a run's threads and its caller.
#[derive(Default)]
pub struct Shared {
    /// Clients in the run.
    pub n: usize,
    /// Completed operations.
    pub ops: AtomicU64,
    /// Clients built / ready.
    pub built: AtomicUsize,
    pub ready: AtomicUsize,
    open: AtomicBool,
    go: AtomicBool,
    stop: AtomicBool,
    /// Latency samples taken before this time (`now_ns`) are dropped:
    /// set past the warm-up by the caller.
    pub lat_from: AtomicU64,
    /// Connections that failed or closed before the stop.
    pub lost: AtomicUsize,
    /// The first failure, for the error message.
    pub error: Mutex<Option<String>>,
    /// When the last client became ready.
    all_ready_at: Mutex<Option<Instant>>,
    /// Latency and lag samples, handed back at the stop.
    lat: Mutex<Vec<u64>>,
    lag: Mutex<Vec<u64>>,
    /// Failover: clients whose current session, handshaken, is on a
    /// target other than the first.
    pub on_backup: AtomicUsize,
    /// Failover: sessions lost and reconnects started (including failed
    /// connects to a dead master).
    pub moves: AtomicU64,
    /// Failover: latest time (`now_ns`) a client became ready on a
    /// backup target.
    pub last_backup_ns: AtomicU64,
}

impl Shared {
    fn fail(&self, msg: String) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        let mut e = self.error.lock().unwrap();
        if e.is_none() {
            *e = Some(msg);
        }
    }
}

/// What to run.
pub struct Spec {
    /// Short name for messages.
    pub name: String,
    pub target: SocketAddr,
    pub clients: usize,
    pub threads: usize,
    /// Most connections handshaking at once.
    pub window: usize,
    /// Index of the first client's source address ([`net::source_ip`]),
    /// so runs alive at the same time use different addresses.
    pub ip_base: Option<usize>,
    pub factory: Factory,
}

/// Where failover clients go: every client's list starts with
/// `targets[0]`; the rest follow rotated by the client's number, so the
/// clients of a lost master spread over the survivors (as an operator
/// would order the lists of a fleet).
#[derive(Clone)]
pub struct Failover {
    pub targets: Vec<SocketAddr>,
}

impl Failover {
    fn list(&self, id: usize) -> Option<edge_gw::agent::masters::MasterList> {
        let (first, rest) = self.targets.split_first()?;
        let mut v = vec![first.to_string()];
        let k = if rest.is_empty() { 0 } else { id % rest.len() };
        v.extend(rest[k..].iter().chain(&rest[..k]).map(|a| a.to_string()));
        edge_gw::agent::masters::MasterList::new(v)
    }
}

/// A run in progress.
pub struct Run {
    pub name: String,
    pub shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    opened_at: Option<Instant>,
}

/// What a finished run hands back.
pub struct Outcome {
    pub lat: Vec<u64>,
    pub lag: Vec<u64>,
}

impl Run {
    /// Spawns the threads, which build their clients and wait.
    pub fn start(spec: Spec) -> Run {
        Run::start_inner(spec, None)
    }

    /// As [`start`](Self::start), with clients that fail over between
    /// `f.targets` (`spec.target` is ignored: the first target is used).
    pub fn start_failover(spec: Spec, f: Failover) -> Run {
        Run::start_inner(spec, Some(Arc::new(f)))
    }

    fn start_inner(spec: Spec, failover: Option<Arc<Failover>>) -> Run {
        let shared = Arc::new(Shared {
            n: spec.clients,
            ..Shared::default()
        });
        let threads = spec.threads.clamp(1, spec.clients.max(1));
        let window = (spec.window / threads).max(1);
        let handles = (0..threads)
            .map(|t| {
                let shared = shared.clone();
                let factory = spec.factory.clone();
                let ids: Vec<usize> = (t..spec.clients).step_by(threads).collect();
                let target = failover
                    .as_ref()
                    .and_then(|f| f.targets.first().copied())
                    .unwrap_or(spec.target);
                let ip_base = spec.ip_base;
                let failover = failover.clone();
                std::thread::Builder::new()
                    .name(format!("load-{t}"))
                    .spawn(move || {
                        let w = Worker {
                            shared: shared.clone(),
                            target,
                            ip_base,
                            window,
                            failover,
                            retries: RefCell::new(Vec::new()),
                            rng: Cell::new(now_ns() ^ ((t as u64 + 1) << 40) | 1),
                        };
                        if let Err(e) = w.run(ids, &factory) {
                            shared.fail(e);
                        }
                    })
                    .expect("spawn a load thread")
            })
            .collect();
        Run {
            name: spec.name,
            shared,
            threads: handles,
            opened_at: None,
        }
    }

    /// Waits for the clients to be built, then lets the threads connect.
    pub fn open(&mut self, limit: Duration) -> Result<(), String> {
        let end = Instant::now() + limit;
        while self.shared.built.load(Ordering::Acquire) < self.shared.n {
            self.check()?;
            if Instant::now() > end {
                return Err(format!("{}: clients not built within {limit:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.opened_at = Some(Instant::now());
        self.shared.open.store(true, Ordering::Release);
        Ok(())
    }

    /// Waits until every client is ready; returns the time since
    /// [`open`](Self::open).
    pub fn wait_ready(&self, limit: Duration) -> Result<Duration, String> {
        let t0 = self.opened_at.expect("open() first");
        let end = t0 + limit;
        loop {
            self.check()?;
            if let Some(t) = *self.shared.all_ready_at.lock().unwrap() {
                return Ok(t.saturating_duration_since(t0));
            }
            if Instant::now() > end {
                return Err(format!(
                    "{}: only {} of {} clients ready after {limit:?}",
                    self.name,
                    self.shared.ready.load(Ordering::Relaxed),
                    self.shared.n
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Starts the workload.
    pub fn go(&self) {
        self.shared.go.store(true, Ordering::Release);
    }

    /// Operations completed so far.
    pub fn ops(&self) -> u64 {
        self.shared.ops.load(Ordering::Relaxed)
    }

    /// An error if any connection failed.
    pub fn check(&self) -> Result<(), String> {
        if self.shared.lost.load(Ordering::Relaxed) > 0 {
            let e = self.shared.error.lock().unwrap().clone();
            return Err(format!(
                "{}: {} connection(s) failed; first: {}",
                self.name,
                self.shared.lost.load(Ordering::Relaxed),
                e.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Stops the threads and closes every connection.
    pub fn stop(mut self) -> Outcome {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Outcome {
            lat: std::mem::take(&mut *self.shared.lat.lock().unwrap()),
            lag: std::mem::take(&mut *self.shared.lag.lock().unwrap()),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Slot {
    id: usize,
    /// The epoll key: the slot's position in its worker's list.
    key: u64,
    sock: TcpStream,
    proto: Box<dyn Proto>,
    /// Bytes the socket did not take yet.
    pending: Vec<u8>,
    ready: bool,
    dead: bool,
    /// Failover: the client's masters, where its session is, when that
    /// session started, whether it is handshaken, when to reconnect.
    list: Option<edge_gw::agent::masters::MasterList>,
    at: SocketAddr,
    since: Instant,
    up: bool,
    retry_at: Option<Instant>,
    /// A failover reconnect still connecting (non-blocking).
    connecting: bool,
}

struct Worker {
    shared: Arc<Shared>,
    target: SocketAddr,
    ip_base: Option<usize>,
    window: usize,
    failover: Option<Arc<Failover>>,
    /// Failover: slots waiting to reconnect.
    retries: RefCell<Vec<usize>>,
    /// xorshift state for the reconnect jitter.
    rng: Cell<u64>,
}

/// Per-thread scratch and counters.
struct Local {
    out: Vec<u8>,
    ops: u64,
    ready: usize,
    lat: Vec<u64>,
    lag: Vec<u64>,
}

impl Worker {
    fn run(&self, ids: Vec<usize>, factory: &Factory) -> Result<(), String> {
        let mut todo: Vec<(usize, Box<dyn Proto>)> =
            ids.into_iter().map(|i| (i, factory(i))).collect();
        todo.reverse();
        self.shared.built.fetch_add(todo.len(), Ordering::AcqRel);
        while !self.shared.open.load(Ordering::Acquire) {
            if self.shared.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut poller = Poller::new().map_err(|e| format!("epoll: {e}"))?;
        let mut slots: Vec<Slot> = Vec::with_capacity(todo.len());
        let mut buf = vec![0u8; 64 * 1024];
        let mut l = Local {
            out: Vec::with_capacity(64 * 1024),
            ops: 0,
            ready: 0,
            lat: Vec::new(),
            lag: Vec::new(),
        };
        let mut went = false;
        let mut tickers: Vec<usize> = Vec::new();
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            // Open connections while the handshake window has room.
            while slots.len() - l.ready < self.window {
                let Some((id, proto)) = todo.pop() else {
                    break;
                };
                let src = self.ip_base.map(|b| net::source_ip(b + id));
                let sock = net::connect_from(src, self.target)
                    .map_err(|e| format!("client {id}: connect {}: {e}", self.target))?;
                let key = slots.len() as u64;
                poller
                    .add(&sock, key, false)
                    .map_err(|e| format!("epoll add: {e}"))?;
                slots.push(Slot {
                    id,
                    key,
                    sock,
                    proto,
                    pending: Vec::new(),
                    ready: false,
                    dead: false,
                    list: self.failover.as_ref().and_then(|f| f.list(id)),
                    at: self.target,
                    since: Instant::now(),
                    up: false,
                    retry_at: None,
                    connecting: false,
                });
                let k = slots.len() - 1;
                self.call(&mut slots[k], &mut l, &poller, |p, io| {
                    p.start(io);
                    Ok(())
                });
            }
            // Wait for readiness, or the next paced send.
            let now = Instant::now();
            let mut timeout = Duration::from_millis(if went { 20 } else { 2 });
            for &k in &tickers {
                if let Some(t) = slots[k].proto.next_tick() {
                    timeout = timeout.min(t.saturating_duration_since(now));
                }
            }
            for &k in self.retries.borrow().iter() {
                if let Some(t) = slots[k].retry_at {
                    timeout = timeout.min(t.saturating_duration_since(now));
                }
            }
            let ready = poller.wait(timeout).map_err(|e| format!("epoll: {e}"))?;
            for r in ready {
                let k = r.key as usize;
                if slots[k].dead {
                    continue;
                }
                if r.writable {
                    if slots[k].connecting {
                        self.connected(&mut slots[k], &mut l, &poller);
                    } else {
                        self.flush_pending(&mut slots[k], &poller);
                    }
                }
                if r.readable {
                    self.read(&mut slots[k], &mut buf, &mut l, &poller);
                }
            }
            if !went && self.shared.go.load(Ordering::Acquire) {
                went = true;
                for slot in &mut slots {
                    self.call(slot, &mut l, &poller, |p, io| {
                        p.go(io);
                        Ok(())
                    });
                }
                tickers = (0..slots.len())
                    .filter(|&k| slots[k].proto.next_tick().is_some())
                    .collect();
            }
            if !tickers.is_empty() {
                let now = Instant::now();
                for &k in &tickers {
                    if slots[k].proto.next_tick().is_some_and(|t| t <= now) {
                        self.call(&mut slots[k], &mut l, &poller, |p, io| {
                            p.tick(now, io);
                            Ok(())
                        });
                    }
                }
            }
            if !self.retries.borrow().is_empty() {
                let now = Instant::now();
                let due: Vec<usize> = {
                    let mut r = self.retries.borrow_mut();
                    let (due, keep) = r
                        .drain(..)
                        .partition(|&k| slots[k].retry_at.is_some_and(|t| t <= now));
                    *r = keep;
                    due
                };
                for k in due {
                    self.reconnect(&mut slots[k], &mut l, &poller, factory);
                }
            }
            if l.ops > 0 {
                self.shared.ops.fetch_add(l.ops, Ordering::Relaxed);
                l.ops = 0;
            }
        }
        if !l.lat.is_empty() {
            self.shared.lat.lock().unwrap().extend_from_slice(&l.lat);
        }
        if !l.lag.is_empty() {
            self.shared.lag.lock().unwrap().extend_from_slice(&l.lag);
        }
        Ok(())
    }

    /// Runs a client callback, then writes what it queued.
    fn call(
        &self,
        slot: &mut Slot,
        l: &mut Local,
        poller: &Poller,
        f: impl FnOnce(&mut dyn Proto, &mut Io<'_>) -> Result<(), String>,
    ) {
        let mut io = Io {
            out: &mut l.out,
            ops: 0,
            ready: false,
            lat: &mut l.lat,
            lag: &mut l.lag,
            shared: &self.shared,
        };
        let (lat0, lag0) = (io.lat.len(), io.lag.len());
        let r = f(slot.proto.as_mut(), &mut io);
        let (ops, ready) = (io.ops, io.ready);
        if (l.lat.len() > lat0 || l.lag.len() > lag0)
            && now_ns() < self.shared.lat_from.load(Ordering::Relaxed)
        {
            l.lat.truncate(lat0);
            l.lag.truncate(lag0);
        }
        l.ops += ops;
        if ready && !slot.ready {
            slot.ready = true;
            l.ready += 1;
            let before = self.shared.ready.fetch_add(1, Ordering::AcqRel);
            if before + 1 == self.shared.n {
                *self.shared.all_ready_at.lock().unwrap() = Some(Instant::now());
            }
        }
        if ready && !slot.up {
            slot.up = true;
            if slot.list.is_some() && slot.at != self.target {
                // A client handshaken again on a survivor: its time since
                // the caller's mark (`lat_from`, the kill) is a sample.
                let now = now_ns();
                let from = self.shared.lat_from.load(Ordering::Relaxed);
                if now >= from {
                    l.lat.push(now - from);
                }
                self.shared.last_backup_ns.fetch_max(now, Ordering::Relaxed);
                self.shared.on_backup.fetch_add(1, Ordering::AcqRel);
            }
        }
        if let Err(e) = r {
            self.kill(slot, poller, format!("client {}: {e}", slot.id));
            l.out.clear();
            return;
        }
        if !l.out.is_empty() {
            self.write(slot, &mut l.out, poller);
        }
    }

    fn read(&self, slot: &mut Slot, buf: &mut [u8], l: &mut Local, poller: &Poller) {
        loop {
            match (&slot.sock).read(buf) {
                Ok(0) => {
                    return self.lost(
                        slot,
                        poller,
                        format!("client {}: closed by the server", slot.id),
                    );
                }
                Ok(n) => {
                    self.call(slot, l, poller, |p, io| p.input(&buf[..n], io));
                    if slot.dead || n < buf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.lost(slot, poller, format!("client {}: read: {e}", slot.id)),
            }
        }
    }

    fn write(&self, slot: &mut Slot, out: &mut Vec<u8>, poller: &Poller) {
        if slot.dead {
            out.clear();
            return;
        }
        if !slot.pending.is_empty() {
            slot.pending.extend_from_slice(out);
            out.clear();
            return;
        }
        let mut done = 0;
        while done < out.len() {
            match (&slot.sock).write(&out[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.clear();
                    return self.lost(slot, poller, format!("client {}: write: {e}", slot.id));
                }
            }
        }
        if done < out.len() {
            slot.pending.extend_from_slice(&out[done..]);
            let _ = poller.set_write(&slot.sock, slot.key, true);
        }
        out.clear();
    }

    fn flush_pending(&self, slot: &mut Slot, poller: &Poller) {
        let mut done = 0;
        while done < slot.pending.len() {
            match (&slot.sock).write(&slot.pending[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return self.lost(slot, poller, format!("client {}: write: {e}", slot.id));
                }
            }
        }
        slot.pending.drain(..done);
        if slot.pending.is_empty() {
            let _ = poller.set_write(&slot.sock, slot.key, false);
        }
    }

    /// The connection is gone (closed, reset, refused): a failover client
    /// moves on, any other fails the run.
    fn lost(&self, slot: &mut Slot, poller: &Poller, why: String) {
        if slot.dead || slot.list.is_none() || self.shared.stop.load(Ordering::Acquire) {
            return self.kill(slot, poller, why);
        }
        poller.delete(&slot.sock);
        slot.dead = true;
        self.schedule(slot);
    }

    /// Picks the next master and the wait, as the real agent does.
    fn schedule(&self, slot: &mut Slot) {
        let Some(list) = slot.list.as_mut() else {
            return;
        };
        slot.pending.clear();
        slot.connecting = false;
        if slot.up && slot.at != self.target {
            self.shared.on_backup.fetch_sub(1, Ordering::AcqRel);
        }
        let lasted = if slot.up {
            slot.since.elapsed()
        } else {
            Duration::ZERO
        };
        slot.up = false;
        // xorshift64*: the jitter only has to be spread, not secret.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let random = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32;
        let mv = list.failed(lasted, random);
        slot.at = mv.to.parse().unwrap_or(slot.at);
        slot.retry_at = Some(Instant::now() + mv.delay);
        self.shared.moves.fetch_add(1, Ordering::Relaxed);
        self.retries.borrow_mut().push(slot.key as usize);
    }

    /// A failover client's wait is over: a new connection, a new client.
    fn reconnect(&self, slot: &mut Slot, l: &mut Local, poller: &Poller, factory: &Factory) {
        slot.retry_at = None;
        if self.shared.stop.load(Ordering::Acquire) {
            return;
        }
        let src = self.ip_base.map(|b| net::source_ip(b + slot.id));
        let (sock, pending) = match net::connect_start(src, slot.at) {
            Ok(s) => s,
            Err(_) => return self.schedule(slot),
        };
        if poller.add(&sock, slot.key, pending).is_err() {
            return self.schedule(slot);
        }
        slot.sock = sock;
        slot.proto = factory(slot.id);
        slot.dead = false;
        slot.since = Instant::now();
        slot.connecting = pending;
        if !pending {
            self.call(slot, l, poller, |p, io| {
                p.start(io);
                Ok(())
            });
        }
    }

    /// A non-blocking reconnect finished: start the client, or move on.
    fn connected(&self, slot: &mut Slot, l: &mut Local, poller: &Poller) {
        slot.connecting = false;
        match slot.sock.take_error() {
            Ok(None) => {
                let _ = poller.set_write(&slot.sock, slot.key, false);
                slot.since = Instant::now();
                self.call(slot, l, poller, |p, io| {
                    p.start(io);
                    Ok(())
                });
            }
            Ok(Some(e)) | Err(e) => {
                self.lost(slot, poller, format!("client {}: connect: {e}", slot.id))
            }
        }
    }

    fn kill(&self, slot: &mut Slot, poller: &Poller, why: String) {
        if slot.dead {
            return;
        }
        slot.dead = true;
        poller.delete(&slot.sock);
        if !self.shared.stop.load(Ordering::Acquire) {
            self.shared.fail(why);
        }
    }
}
