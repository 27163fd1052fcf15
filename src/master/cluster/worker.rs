//! The cluster's worker thread: one blocking Redis connection, this
//! master's claims, every write to Redis.
//!
//! A loop: wait for jobs until the next tick, do them, refresh on the
//! tick. Any Redis error drops the connection; the thread then keeps
//! serving what needs no Redis (claims made while it is away are
//! remembered with epoch 0, acks kept up to [`ACKS_KEPT`], pushes refused
//! with 503) and reconnects with backoff. Back, it claims what joined
//! meanwhile, writes the kept acks, and the first refresh confirms every
//! claim (fencing off the ones another master took) and fetches pushes
//! waiting for its agents.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::scripts::{self, NODES_KEY, PUSH_SEQ_KEY};
use super::{ACKS_KEPT, Cluster, FleetView, Job, NodeView, PushRequest, wire};
use crate::master::PushError;
use crate::master::conn_handle::ConnId;
use crate::master::registry::Registry;
use crate::proto::Uuid;
use crate::proto::v2;
use crate::session::outbox::OverflowKind;

/// Time allowed for connecting and for one Redis round trip.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A master not seen for this long leaves the list of masters.
const FORGET_NODE_MS: u64 = 24 * 3600 * 1000;
/// Agents summarised per registry lock when the view is built.
const VIEW_CHUNK: usize = 256;
/// Claims confirmed (or acks written) per script call: bounds how long
/// one call holds Redis (a script blocks every other client while it
/// runs).
const CONFIRM_CHUNK: usize = 1000;

/// One claim of this master on an agent.
#[derive(Clone, Copy, Debug)]
struct Claim {
    /// Its epoch in Redis; 0 until Redis has it.
    epoch: u64,
    /// The session it is for.
    conn: ConnId,
}

struct Scripts {
    claim: redis::Script,
    confirm: redis::Script,
    release: redis::Script,
    accept: redis::Script,
    fetch: redis::Script,
    ack: redis::Script,
    status: redis::Script,
}

/// The worker thread's state.
pub(super) struct Worker {
    c: Arc<Cluster>,
    client: redis::Client,
    rx: Receiver<Job>,
    registry: Arc<Mutex<Registry>>,
    tick: Duration,
    http_addr: String,
    started_unix_ms: u64,
    con: Option<redis::Connection>,
    claims: HashMap<Uuid, Claim>,
    acks: Vec<(u64, Uuid)>,
    next_connect: Instant,
    backoff: Duration,
    down_since: Option<Instant>,
    ever_up: bool,
    /// When the last refresh went through: past the lease without one,
    /// the other masters' views are dropped rather than shown stale.
    last_refresh: Instant,
    scripts: Scripts,
}

/// Why a Redis call failed, as the counters name it.
fn kind(e: &redis::RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "connect"
    } else if e.is_io_error() || e.is_connection_dropped() {
        "io"
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "auth"
    } else {
        "server"
    }
}

impl Worker {
    pub(super) fn new(
        c: Arc<Cluster>,
        client: redis::Client,
        rx: Receiver<Job>,
        registry: Arc<Mutex<Registry>>,
        tick: Duration,
        http_addr: String,
    ) -> Worker {
        Worker {
            c,
            client,
            rx,
            registry,
            tick,
            http_addr,
            started_unix_ms: crate::os::unix_ms(),
            con: None,
            claims: HashMap::new(),
            acks: Vec::new(),
            next_connect: Instant::now(),
            backoff: Duration::from_millis(250),
            down_since: Some(Instant::now()),
            ever_up: false,
            last_refresh: Instant::now(),
            scripts: Scripts {
                claim: redis::Script::new(scripts::CLAIM),
                confirm: redis::Script::new(scripts::CONFIRM),
                release: redis::Script::new(scripts::RELEASE),
                accept: redis::Script::new(scripts::ACCEPT),
                fetch: redis::Script::new(scripts::FETCH),
                ack: redis::Script::new(scripts::ACK),
                status: redis::Script::new(scripts::STATUS),
            },
        }
    }

    fn reg(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until the master drops its handle.
    pub(super) fn run(mut self) {
        let mut next_tick = Instant::now();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut jobs = Vec::new();
            match self.rx.recv_timeout(wait) {
                Ok(j) => jobs.push(j),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while jobs.len() < 1024 {
                match self.rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            if self.con.is_none() && Instant::now() >= self.next_connect && self.connect() {
                next_tick = Instant::now();
            }
            // Writes of one batch go to Redis together: with
            // `appendfsync always` Redis syncs its AOF once per round of
            // its event loop, so a pipeline of pushes costs one fsync, not
            // one each (a push per round trip capped a master at ~250/s on
            // a 4 ms disk: BENCHMARKS.md, "Cluster").
            let mut pushes = Vec::new();
            let mut fetches = BTreeSet::new();
            let mut joins = Vec::new();
            for j in jobs {
                match j {
                    Job::Resync => next_tick = Instant::now(),
                    Job::Push(req) => pushes.push(*req),
                    Job::Claim(u, conn) => {
                        self.claims.insert(u, Claim { epoch: 0, conn });
                        joins.push(u);
                    }
                    Job::Fetch(u) => {
                        fetches.insert(u);
                    }
                    Job::Acks(v) => self.keep_acks(v),
                    Job::Release(u) => self.release(u),
                    Job::Reports(v) => self.publish_reports(v),
                    Job::Kick(u, epoch) => {
                        if self.claims.get(&u).is_some_and(|c| c.epoch == epoch) {
                            self.fence(u, "replaced by a newer session on another master");
                        }
                    }
                    Job::Status(id, reply) => {
                        let _ = reply.try_send(self.status(id));
                    }
                }
            }
            self.claim_batch(joins);
            self.push_batch(pushes);
            self.flush_acks();
            let fetches: Vec<Uuid> = fetches
                .into_iter()
                .filter(|u| self.claims.contains_key(u))
                .collect();
            self.fetch_batch(&fetches, false);
            if Instant::now() >= next_tick {
                self.refresh();
                next_tick = Instant::now() + self.tick;
            }
        }
    }

    /// Connects; on success checks Redis's persistence (once) and marks
    /// the cluster up. Returns whether connected.
    fn connect(&mut self) -> bool {
        let con = self
            .client
            .get_connection_with_timeout(IO_TIMEOUT)
            .and_then(|con| {
                con.set_read_timeout(Some(IO_TIMEOUT))?;
                con.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(con)
            });
        let mut con = match con {
            Ok(c) => c,
            Err(e) => {
                self.failed(&e, "connect");
                return false;
            }
        };
        // Push ids start above any a standalone master's log handed out,
        // so an agent's de-duplication window never mistakes one for the
        // other when a master joins a cluster.
        let seed = crate::os::unix_ms().saturating_mul(1000);
        let init: redis::RedisResult<()> = redis::cmd("SET")
            .arg(PUSH_SEQ_KEY)
            .arg(seed)
            .arg("NX")
            .query(&mut con);
        if let Err(e) = init {
            self.failed(&e, "init");
            return false;
        }
        // EVALSHA in pipelines needs the scripts in Redis's cache (empty
        // after a Redis restart, which is also a reconnect here).
        let mut load = redis::pipe();
        for script in [scripts::ACCEPT, scripts::CLAIM, scripts::FETCH] {
            load.cmd("SCRIPT").arg("LOAD").arg(script);
        }
        if let Err(e) = load.query::<Vec<String>>(&mut con) {
            self.failed(&e, "init");
            return false;
        }
        if !self.ever_up {
            check_persistence(&mut con);
        }
        match self.down_since.take() {
            Some(t) if self.ever_up => log::warn!(
                "cluster: Redis is back after {:.1} s; re-registering {} agents",
                t.elapsed().as_secs_f64(),
                self.claims.len()
            ),
            _ => log::info!(
                "cluster: joined as node {:?} (lease {} ms)",
                self.c.node,
                self.c.lease.as_millis()
            ),
        }
        self.ever_up = true;
        self.con = Some(con);
        self.backoff = Duration::from_millis(250);
        self.c.up.store(true, Ordering::Relaxed);
        // Claims made while Redis was away, then the kept acks.
        let unclaimed: Vec<Uuid> = self
            .claims
            .iter()
            .filter(|(_, c)| c.epoch == 0)
            .map(|(u, _)| *u)
            .collect();
        self.claim_batch(unclaimed);
        self.flush_acks();
        self.con.is_some()
    }

    /// A Redis call failed: count it, drop the connection, log the state
    /// change once, retry with backoff.
    fn failed(&mut self, e: &redis::RedisError, during: &str) {
        let k = kind(e);
        self.c.count(|s| *s.errors.entry(k).or_default() += 1);
        self.con = None;
        self.next_connect = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        if self.c.up.swap(false, Ordering::Relaxed) || self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            self.c.count(|s| s.outages += 1);
            log::error!(
                "cluster: lost Redis ({during}: {e}); serving the connected agents, pushes answered 503 until it is back"
            );
        } else if !self.ever_up {
            crate::log_limited!(
                log::Level::Warn,
                "cluster-connect",
                "cluster: cannot reach Redis ({during}: {e}); retrying"
            );
        }
    }

    /// A push's state in Redis as `GET /api/pushes/{id}` shows it.
    fn status(&mut self, id: u64) -> Option<Value> {
        let con = self.con.as_mut()?;
        let r: redis::RedisResult<Vec<String>> = self.scripts.status.arg(id).invoke(con);
        let flat = match r {
            Ok(f) => f,
            Err(e) => {
                self.failed(&e, "status");
                return None;
            }
        };
        let (at, rest) = flat.split_first()?;
        let targets: Vec<Value> = rest
            .chunks_exact(2)
            .map(|t| json!({ "uuid": t[0], "state": t[1] }))
            .collect();
        Some(json!({
            "id": id,
            "accepted_unix_ms": at.parse::<u64>().ok(),
            "targets": targets,
            "source": "cluster",
        }))
    }

    /// Claims `us` in Redis (a new epoch each), in pipelines of
    /// [`CONFIRM_CHUNK`] (one AOF fsync per pipeline, not per join: a storm
    /// of joins after a master died waited ~20 s for one fsync each), then
    /// fetches their waiting pushes. Uuids no longer held here are skipped.
    fn claim_batch(&mut self, us: Vec<Uuid>) {
        let us: Vec<Uuid> = us
            .into_iter()
            .filter(|u| self.claims.contains_key(u))
            .collect();
        let lease = lease_ms(self.c.lease);
        for chunk in us.chunks(CONFIRM_CHUNK) {
            let Some(con) = self.con.as_mut() else { return };
            let mut p = redis::pipe();
            for u in chunk {
                p.cmd("EVALSHA")
                    .arg(self.scripts.claim.get_hash())
                    .arg(0)
                    .arg(u.to_string())
                    .arg(&self.c.node)
                    .arg(lease);
            }
            match p.query::<Vec<u64>>(con) {
                Ok(epochs) => {
                    for (u, epoch) in chunk.iter().zip(epochs) {
                        if let Some(c) = self.claims.get_mut(u) {
                            c.epoch = epoch;
                        }
                    }
                    let n = chunk.len() as u64;
                    self.c.count(|s| s.registry_writes += n);
                }
                Err(e) => return self.failed(&e, "claim"),
            }
            self.fetch_batch(chunk, true);
        }
    }

    fn release(&mut self, u: Uuid) {
        let Some(claim) = self.claims.remove(&u) else {
            return;
        };
        let Some(con) = self.con.as_mut() else { return };
        if claim.epoch == 0 {
            return;
        }
        let r: redis::RedisResult<i64> = self
            .scripts
            .release
            .arg(u.to_string())
            .arg(&self.c.node)
            .arg(claim.epoch)
            .invoke(con);
        match r {
            Ok(_) => self.c.count(|s| s.registry_writes += 1),
            Err(e) => self.failed(&e, "release"),
        }
    }

    /// Another master owns `u` now: close our session, forget the claim.
    fn fence(&mut self, u: Uuid, why: &str) {
        let Some(claim) = self.claims.remove(&u) else {
            return;
        };
        self.c.count(|s| s.fenced += 1);
        let closed = self.reg().fenced(&u, claim.conn, why);
        log::info!(
            "cluster: agent {u} is held by another master now; {}",
            if closed {
                "closing its session here"
            } else {
                "its session here is already gone"
            }
        );
    }

    /// Keeps acks for the next write, up to [`ACKS_KEPT`] (the rest are
    /// dropped and counted: a resend the agent answers as a duplicate).
    fn keep_acks(&mut self, v: Vec<(u64, Uuid)>) {
        let room = ACKS_KEPT.saturating_sub(self.acks.len());
        if v.len() > room {
            let n = (v.len() - room) as u64;
            self.c.count(|s| *s.dropped.entry("acks").or_default() += n);
        }
        self.acks.extend(v.into_iter().take(room));
    }

    /// Makes pushes durable in Redis: one `ACCEPT` script each, all in one
    /// pipeline, answered one by one (each is all or nothing for its own
    /// targets; later ones see the room earlier ones took).
    fn push_batch(&mut self, reqs: Vec<PushRequest>) {
        if reqs.is_empty() {
            return;
        }
        let unavailable = |reqs: Vec<PushRequest>, why: &str| {
            for r in reqs {
                let _ = r
                    .reply
                    .try_send(Err(PushError::Unavailable(why.to_string())));
            }
        };
        let limits = self.reg().limits;
        let Some(con) = self.con.as_mut() else {
            return unavailable(
                reqs,
                "the cluster's Redis is unreachable: the push could not be made durable",
            );
        };
        let now = crate::os::unix_ms();
        let mut p = redis::pipe();
        for r in &reqs {
            let c = p
                .cmd("EVALSHA")
                .arg(self.scripts.accept.get_hash())
                .arg(0)
                .arg(limits.max_msgs)
                .arg(limits.max_bytes)
                .arg(r.push.body.len())
                .arg(&r.push.sender)
                .arg(&r.push.group)
                .arg(&r.push.body)
                .arg(now);
            for t in &r.targets {
                c.arg(t.to_string());
            }
        }
        let answers = match p.query::<Vec<(u64, String)>>(con) {
            Ok(a) if a.len() == reqs.len() => a,
            Ok(_) => return unavailable(reqs, "the cluster's Redis answered a push batch short"),
            Err(e) => {
                let msg = format!(
                    "the cluster's Redis failed while storing the push ({e}); it may or may not have been stored"
                );
                self.failed(&e, "push");
                return unavailable(reqs, &msg);
            }
        };
        let mut refused: Vec<&'static str> = Vec::new();
        for (r, (id, reason)) in reqs.into_iter().zip(answers) {
            let answer = if id > 0 {
                self.c.count(|s| s.pushes_accepted += 1);
                Ok(id)
            } else if reason == "outbox_bytes" {
                refused.push("outbox_bytes");
                Err(PushError::Full(OverflowKind::Bytes))
            } else {
                refused.push("outbox_messages");
                Err(PushError::Full(OverflowKind::Messages))
            };
            // The API may have given up waiting; nothing to do then.
            let _ = r.reply.try_send(answer);
        }
        if !refused.is_empty() {
            let mut reg = self.reg();
            for why in refused {
                *reg.counters.pushes_refused.entry(why).or_default() += 1;
            }
        }
    }

    /// Writes the kept acks, if Redis is there.
    fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        // In chunks: a script blocks every other Redis client while it
        // runs, and after an outage up to ACKS_KEPT acks wait here.
        while !self.acks.is_empty() {
            let Some(con) = self.con.as_mut() else { return };
            let n = self.acks.len().min(CONFIRM_CHUNK);
            let mut inv = self.scripts.ack.prepare_invoke();
            for (id, u) in &self.acks[..n] {
                inv.arg(u.to_string()).arg(*id);
            }
            let r: redis::RedisResult<u64> = inv.invoke(con);
            match r {
                Ok(_) => {
                    self.acks.drain(..n);
                    self.c.count(|s| s.acks += n as u64);
                }
                Err(e) => return self.failed(&e, "ack"),
            }
        }
    }

    fn publish_reports(&mut self, v: Vec<super::RemoteReport>) {
        let Some(con) = self.con.as_mut() else {
            let n = v.len() as u64;
            self.c
                .count(|s| *s.dropped.entry("reports").or_default() += n);
            return;
        };
        let mut p = redis::pipe();
        for r in &v {
            p.cmd("PUBLISH")
                .arg(scripts::FANOUT_CHANNEL)
                .arg(wire::encode(&self.c.node, r))
                .ignore();
        }
        match p.query::<()>(con) {
            Ok(()) => {
                let n = v.len() as u64;
                self.c.count(|s| s.reports_out += n);
            }
            Err(e) => self.failed(&e, "publish"),
        }
    }

    /// Fetches the pushes waiting for each of `us` (one pipeline) and
    /// queues the new ones. `all`: every one (a claim, a repair); else only
    /// those newer than the newest its outbox holds (a note of a new push),
    /// so a burst of pushes to one agent does not fetch its whole list
    /// again for each.
    fn fetch_batch(&mut self, us: &[Uuid], all: bool) {
        if us.is_empty() {
            return;
        }
        let (max, after): (usize, Vec<u64>) = {
            let reg = self.reg();
            let after = us
                .iter()
                .map(|u| {
                    let newest = reg
                        .agent(u)
                        .and_then(|a| a.outbox.ids().map(|(id, _)| id).max())
                        .unwrap_or(0);
                    if all { 0 } else { newest }
                })
                .collect();
            (reg.limits.max_msgs, after)
        };
        let Some(con) = self.con.as_mut() else { return };
        let mut p = redis::pipe();
        for (u, after) in us.iter().zip(&after) {
            p.cmd("EVALSHA")
                .arg(self.scripts.fetch.get_hash())
                .arg(0)
                .arg(u.to_string())
                .arg(max)
                .arg(*after);
        }
        let lists = match p.query::<Vec<Vec<Vec<u8>>>>(con) {
            Ok(l) => l,
            Err(e) => return self.failed(&e, "fetch"),
        };
        let clock = crate::os::now();
        let mut fetched = 0;
        let mut reg = self.reg();
        for (u, flat) in us.iter().zip(lists) {
            let pushes: Vec<v2::Push> = flat
                .chunks_exact(4)
                .filter_map(|rec| {
                    let id = std::str::from_utf8(&rec[0]).ok()?.parse::<u64>().ok()?;
                    Some(v2::Push {
                        id,
                        sender: String::from_utf8_lossy(&rec[1]).into_owned(),
                        group: String::from_utf8_lossy(&rec[2]).into_owned(),
                        body: rec[3].clone(),
                        want_result: false,
                    })
                })
                .collect();
            if !pushes.is_empty() {
                fetched += reg.remote_pushes(u, pushes, clock.mono, clock.unix_ms);
            }
        }
        drop(reg);
        self.c.count(|s| s.pushes_fetched += fetched as u64);
    }

    /// The tick: confirm claims (fencing), publish this master's record and
    /// view, read the others', fetch pushes the agents here are missing.
    fn refresh(&mut self) {
        if self.con.is_none() {
            // Without Redis the other masters' views age; once they are
            // older than the lease nobody could vouch for them any more.
            let view = self.c.view();
            let vouched = !view.agents.is_empty()
                || view.nodes.iter().any(|n| n.alive && n.name != self.c.node);
            if self.last_refresh.elapsed() > self.c.lease && vouched {
                let mut stale = (*self.c.view()).clone();
                stale.agents.clear();
                for n in stale.nodes.iter_mut().filter(|n| n.name != self.c.node) {
                    n.alive = false;
                }
                self.c.set_view(stale);
                self.reg().set_remote_wanted(false);
            }
            return;
        }
        let lease = lease_ms(self.c.lease);
        // What this master holds, read in chunks of VIEW_CHUNK agents per
        // lock: at 10,000 agents the whole view takes ~100 ms to build,
        // which must not stall every shard at once.
        let mut view = Vec::new();
        let mut missed = Vec::new();
        let mut after: Option<Uuid> = None;
        loop {
            let reg = self.reg();
            let mut n = 0;
            let from = after;
            for a in reg.online_agents_after(from.as_ref()).take(VIEW_CHUNK) {
                n += 1;
                after = Some(a.uuid);
                let mut j = crate::master::http::json_views::agent_json(a, &reg, false);
                j["node"] = json!(self.c.node);
                let v2 = a.version == Some(crate::proto::Version::V2);
                if let Some(conn) = a.conn.as_ref().map(|c| c.id) {
                    match self.claims.get(&a.uuid) {
                        Some(c) => j["epoch"] = json!(c.epoch),
                        None if v2 => missed.push((a.uuid, conn)),
                        None => {}
                    }
                }
                view.push(j);
            }
            if n < VIEW_CHUNK {
                break;
            }
        }
        // Claims whose session ended without a Release reaching us.
        let gone: Vec<Uuid> = {
            let reg = self.reg();
            self.claims
                .iter()
                .filter(|(u, c)| reg.conn_of(u) != Some(c.conn))
                .map(|(u, _)| *u)
                .collect()
        };
        for u in gone {
            self.release(u);
        }
        let subs = self.reg().subscriber_count();
        let missed: Vec<Uuid> = missed
            .into_iter()
            .map(|(u, conn)| {
                self.claims.insert(u, Claim { epoch: 0, conn });
                u
            })
            .collect();
        self.claim_batch(missed);
        // Confirm the claims Redis has, in chunks.
        let held: Vec<(Uuid, u64)> = self
            .claims
            .iter()
            .filter(|(_, c)| c.epoch > 0)
            .map(|(u, c)| (*u, c.epoch))
            .collect();
        let started = Instant::now();
        for chunk in held.chunks(CONFIRM_CHUNK) {
            let Some(con) = self.con.as_mut() else { return };
            let mut inv = self.scripts.confirm.prepare_invoke();
            inv.arg(&self.c.node).arg(lease);
            for (u, e) in chunk {
                inv.arg(u.to_string()).arg(*e);
            }
            let r: redis::RedisResult<(Vec<String>, Vec<String>)> = inv.invoke(con);
            let (fenced, pending) = match r {
                Ok(x) => x,
                Err(e) => return self.failed(&e, "refresh"),
            };
            let n = chunk.len() as u64;
            self.c.count(|s| s.registry_writes += n);
            for u in fenced.iter().filter_map(|u| Uuid::from_text(u)) {
                self.fence(u, "fenced: another master holds this agent now");
            }
            let missing: Vec<Uuid> = {
                let reg = self.reg();
                pending
                    .chunks_exact(2)
                    .filter_map(|pair| {
                        let u = Uuid::from_text(&pair[0])?;
                        let n = pair[1].parse::<usize>().ok()?;
                        let have = reg.agent(&u).map_or(0, |a| a.outbox.len());
                        (have < n).then_some(u)
                    })
                    .collect()
            };
            self.fetch_batch(&missing, true);
        }
        // This master's record and view; the others' read back.
        let record = json!({
            "name": self.c.node,
            "http": self.http_addr,
            "agents": view.len(),
            "subscribers": subs,
            "started_unix_ms": self.started_unix_ms,
            "version": env!("CARGO_PKG_VERSION"),
        });
        let Some(con) = self.con.as_mut() else { return };
        let node_key = scripts::node_key(&self.c.node);
        let view_key = scripts::view_key(&self.c.node);
        let t0 = Instant::now();
        let now_ms = crate::os::unix_ms();
        let r: redis::RedisResult<((), (), (), BTreeMap<String, u64>)> = redis::pipe()
            .cmd("SET")
            .arg(&node_key)
            .arg(record.to_string())
            .arg("PX")
            .arg(lease)
            .cmd("HSET")
            .arg(NODES_KEY)
            .arg(&self.c.node)
            .arg(now_ms)
            .cmd("SET")
            .arg(&view_key)
            .arg(Value::Array(view).to_string())
            .arg("PX")
            .arg(lease)
            .cmd("HGETALL")
            .arg(NODES_KEY)
            .query(con);
        let nodes = match r {
            Ok((_, _, _, n)) => n,
            Err(e) => return self.failed(&e, "refresh"),
        };
        let rtt = t0.elapsed();
        // Masters gone for longer than FORGET_NODE_MS leave the list (any
        // master may do it; a master that comes back adds itself again).
        let forget: Vec<&String> = nodes
            .iter()
            .filter(|(n, seen)| {
                **n != self.c.node && now_ms.saturating_sub(**seen) > FORGET_NODE_MS
            })
            .map(|(n, _)| n)
            .collect();
        if !forget.is_empty() {
            let r: redis::RedisResult<()> =
                redis::cmd("HDEL").arg(NODES_KEY).arg(&forget).query(con);
            if let Err(e) = r {
                return self.failed(&e, "refresh");
            }
            log::info!("cluster: forgot masters gone for over a day: {forget:?}");
        }
        let others: Vec<(&String, u64)> = nodes
            .iter()
            .filter(|(n, _)| **n != self.c.node && !forget.contains(n))
            .map(|(n, seen)| (n, *seen))
            .collect();
        let mut fleet = FleetView::default();
        if !others.is_empty() {
            let mut p = redis::pipe();
            for (n, _) in &others {
                p.cmd("GET").arg(scripts::node_key(n));
                p.cmd("GET").arg(scripts::view_key(n));
            }
            let r: redis::RedisResult<Vec<Option<String>>> = p.query(con);
            let got = match r {
                Ok(g) => g,
                Err(e) => return self.failed(&e, "refresh"),
            };
            let mut agents: BTreeMap<String, Value> = BTreeMap::new();
            for ((n, seen), pair) in others.iter().zip(got.chunks(2)) {
                let info = pair[0]
                    .as_deref()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok());
                fleet.nodes.push(NodeView {
                    name: (*n).clone(),
                    alive: info.is_some(),
                    info: info.unwrap_or_else(|| json!({ "last_seen_unix_ms": seen })),
                });
                let list = pair
                    .get(1)
                    .and_then(|v| v.as_deref())
                    .and_then(|s| serde_json::from_str::<Value>(s).ok());
                for a in list
                    .as_ref()
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(u) = a["uuid"].as_str() else {
                        continue;
                    };
                    let newer = agents
                        .get(u)
                        .is_none_or(|old| old["epoch"].as_u64() < a["epoch"].as_u64());
                    if newer {
                        agents.insert(u.to_string(), a.clone());
                    }
                }
            }
            fleet.agents = agents;
        }
        fleet.nodes.push(NodeView {
            name: self.c.node.clone(),
            alive: true,
            info: record,
        });
        fleet.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let wanted = fleet.nodes.iter().any(|n| {
            n.name != self.c.node && n.alive && n.info["subscribers"].as_u64().unwrap_or(0) > 0
        });
        self.reg().set_remote_wanted(wanted);
        self.c.set_view(fleet);
        self.last_refresh = Instant::now();
        let us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        self.c.rtt_us.store(us, Ordering::Relaxed);
        log::trace!(
            "cluster: refreshed {} claims in {:?}",
            held.len(),
            started.elapsed()
        );
    }
}

fn lease_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Warns loudly when Redis would lose pushes it acknowledged: without
/// `appendonly yes` a restart loses every one, without `appendfsync
/// always` a crash of its machine loses up to a second of them.
fn check_persistence(con: &mut redis::Connection) {
    let get = |con: &mut redis::Connection, name: &str| -> Option<String> {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query::<Vec<String>>(con)
            .ok()
            .and_then(|v| v.get(1).cloned())
    };
    match (get(con, "appendonly"), get(con, "appendfsync")) {
        (Some(aof), Some(fsync)) => {
            if aof != "yes" {
                log::warn!(
                    "cluster: Redis runs with appendonly {aof}: every push answered 202 is LOST if Redis restarts; set `appendonly yes` and `appendfsync always` (docs/cluster.md)"
                );
            } else if fsync != "always" {
                log::warn!(
                    "cluster: Redis runs with appendfsync {fsync}: pushes answered 202 in the last second are lost if Redis's machine crashes; set `appendfsync always` (docs/cluster.md)"
                );
            } else {
                log::info!(
                    "cluster: Redis persistence checked (appendonly yes, appendfsync always)"
                );
            }
        }
        _ => log::warn!(
            "cluster: cannot read Redis's persistence settings (CONFIG GET refused); make sure it runs with appendonly yes and appendfsync always (docs/cluster.md)"
        ),
    }
}
