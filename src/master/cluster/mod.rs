//! Several masters serving one fleet through Redis (`docs/cluster.md`).
//!
//! A master started with `--cluster redis://…` runs two threads of its
//! own besides the executor, each with one blocking Redis connection (the
//! way the push log has its thread: no Redis I/O on executor threads):
//! - the **worker** (`worker.rs`) owns this master's claims on its agents
//!   and does every write: claims on join, one batched refresh per tick
//!   (owner leases, this master's record and view, the other masters'
//!   views read back), pushes accepted here, acks, reports for other
//!   masters' subscribers;
//! - the **listener** (`listen.rs`) is subscribed to this master's channel
//!   (`kick`, `push` notes) and to the fan-out channel, and turns what
//!   arrives into jobs for the worker or fan-out to local subscribers.
//!
//! The executor side talks to them through [`Cluster`]: bounded queues,
//! never waiting on Redis except a push's reply, which the API awaits.
//! What lives in Redis, and the fencing rule: [`scripts`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::PushError;
use super::registry::Registry;
use super::registry::remote::RemoteReport;
use super::settings::ClusterSettings;
use crate::master::conn_handle::ConnId;
use crate::proto::Uuid;
use crate::proto::v2;

mod listen;
pub mod scripts;
mod wire;
mod worker;

/// Jobs waiting for the worker thread: joins, acks and reports queue
/// here between two Redis round trips. Past it, pushes are refused (503)
/// and the rest dropped and counted (a refresh claims a missed join, a
/// lost ack only means a resend the agent answers as a duplicate).
pub const JOB_QUEUE: usize = 65_536;

/// Acks kept while Redis is unreachable, written when it is back; past
/// this they are dropped and counted (the pushes are then delivered again
/// and the agents answer them as duplicates).
pub const ACKS_KEPT: usize = 100_000;

/// Work for the worker thread.
pub(crate) enum Job {
    /// A v2 agent joined this master on connection `conn`.
    Claim(Uuid, ConnId),
    /// An agent left this master.
    Release(Uuid),
    /// A push accepted by this master's API, with where to answer.
    Push(Box<PushRequest>),
    /// Pushes acked by agents of this master: (push id, agent).
    Acks(Vec<(u64, Uuid)>),
    /// Reports for other masters' subscribers.
    Reports(Vec<RemoteReport>),
    /// Another master claimed `uuid` from the session with this epoch.
    Kick(Uuid, u64),
    /// Pushes may be waiting for `uuid`.
    Fetch(Uuid),
    /// The listener (re)connected: notes may have been missed.
    Resync,
    /// A push's state in Redis, for `GET /api/pushes/{id}`.
    Status(u64, smol::channel::Sender<Option<Value>>),
}

/// A push for the worker to make durable in Redis.
pub(crate) struct PushRequest {
    pub(crate) push: v2::Push,
    pub(crate) targets: Vec<Uuid>,
    pub(crate) reply: smol::channel::Sender<Result<u64, PushError>>,
}

/// Figures for `/api/status`, `/api/cluster` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct ClusterStats {
    /// Redis errors by kind (`connect`, `io`, `script`, `timeout`, …).
    pub errors: BTreeMap<&'static str, u64>,
    /// Registry writes (claims, refreshed leases, releases).
    pub registry_writes: u64,
    /// Sessions closed because another master owns their agent.
    pub fenced: u64,
    /// Pushes accepted into Redis by this master.
    pub pushes_accepted: u64,
    /// Pushes fetched from Redis and queued for agents here.
    pub pushes_fetched: u64,
    /// Acks written to Redis.
    pub acks: u64,
    /// Jobs dropped because the queue was full, by kind.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Reports received from other masters for local subscribers.
    pub reports_in: u64,
    /// Reports sent for other masters' subscribers.
    pub reports_out: u64,
    /// Times Redis became unreachable.
    pub outages: u64,
}

/// One master of the cluster, as the last refresh saw it.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// Whether its record is live (refreshed within the lease).
    pub alive: bool,
    /// Its record (agents, subscribers, HTTP address…), when alive.
    pub info: Value,
}

/// The fleet as the other masters publish it.
#[derive(Clone, Debug, Default)]
pub struct FleetView {
    /// Every master that ever joined, live ones with their record.
    pub nodes: Vec<NodeView>,
    /// Agents held by other live masters: uuid text → summary (with
    /// `node` and `epoch`).
    pub agents: BTreeMap<String, Value>,
}

/// The executor side's handle on the cluster threads.
pub struct Cluster {
    /// This master's name.
    pub node: String,
    /// How long a claim and a master's record live without a refresh.
    pub lease: Duration,
    jobs: SyncSender<Job>,
    up: AtomicBool,
    /// Round trip of the last refresh, µs (u32: no 64-bit atomics needed).
    rtt_us: AtomicU32,
    stats: Mutex<ClusterStats>,
    view: RwLock<Arc<FleetView>>,
}

impl Cluster {
    /// Starts the worker and listener threads for `settings`, refreshing
    /// every `tick`. Fails only if a thread cannot be started; Redis
    /// being down is a state, not an error.
    pub fn start(
        settings: &ClusterSettings,
        tick: Duration,
        registry: Arc<Mutex<Registry>>,
        http_addr: String,
    ) -> Result<Arc<Cluster>, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("cluster: bad Redis URL: {e}"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(JOB_QUEUE);
        let lease = (tick * 6).max(Duration::from_secs(2));
        let cluster = Arc::new(Cluster {
            node: settings.node.clone(),
            lease,
            jobs: tx,
            up: AtomicBool::new(false),
            rtt_us: AtomicU32::new(0),
            stats: Mutex::new(ClusterStats::default()),
            view: RwLock::new(Arc::new(FleetView::default())),
        });
        let w = worker::Worker::new(
            cluster.clone(),
            client.clone(),
            rx,
            registry.clone(),
            tick,
            http_addr,
        );
        std::thread::Builder::new()
            .name("edge-gw-cluster".into())
            .spawn(move || w.run())
            .map_err(|e| format!("cannot start the cluster thread: {e}"))?;
        let l = listen::Listener::new(cluster.clone(), client, registry);
        std::thread::Builder::new()
            .name("edge-gw-cluster-sub".into())
            .spawn(move || l.run())
            .map_err(|e| format!("cannot start the cluster listener thread: {e}"))?;
        Ok(cluster)
    }

    /// Whether Redis answered the last round trip.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Round trip of the last refresh.
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(u64::from(self.rtt_us.load(Ordering::Relaxed)))
    }

    /// A copy of the figures.
    pub fn stats(&self) -> ClusterStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The fleet as the other masters publish it.
    pub fn view(&self) -> Arc<FleetView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_view(&self, v: FleetView) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
    }

    fn count(&self, f: impl FnOnce(&mut ClusterStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Queues a job; false (counted under `what`) when the queue is full.
    fn send(&self, job: Job, what: &'static str) -> bool {
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.count(|s| *s.dropped.entry(what).or_default() += 1);
                crate::log_limited!(
                    log::Level::Warn,
                    "cluster-queue",
                    "cluster: job queue full, {what} dropped (Redis slow or unreachable)"
                );
                false
            }
        }
    }

    /// A v2 agent joined here on `conn`: claim it.
    pub fn joined(&self, uuid: Uuid, conn: ConnId) {
        self.send(Job::Claim(uuid, conn), "claim");
    }

    /// An agent left here.
    pub fn left(&self, uuid: Uuid) {
        self.send(Job::Release(uuid), "release");
    }

    /// Acked pushes, for Redis to forget.
    pub fn acked(&self, delivered: &[(u64, Uuid)]) {
        self.send(Job::Acks(delivered.to_vec()), "acks");
    }

    /// Reports for other masters' subscribers.
    pub fn reports(&self, r: Vec<RemoteReport>) {
        self.send(Job::Reports(r), "reports");
    }

    /// Makes a push durable in Redis for `targets` (anywhere in the
    /// cluster) and notes it to their masters. Answers once Redis has it:
    /// with `appendfsync always`, once it is on Redis's disk.
    pub async fn accept_push(&self, push: v2::Push, targets: Vec<Uuid>) -> Result<u64, PushError> {
        if !self.up() {
            return Err(PushError::Unavailable(
                "the cluster's Redis is unreachable: the push could not be made durable".into(),
            ));
        }
        let (tx, rx) = smol::channel::bounded(1);
        let req = PushRequest {
            push,
            targets,
            reply: tx,
        };
        if !self.send(Job::Push(Box::new(req)), "push") {
            return Err(PushError::Unavailable("the cluster's queue is full".into()));
        }
        rx.recv()
            .await
            .unwrap_or_else(|_| Err(PushError::Unavailable("the cluster thread stopped".into())))
    }

    /// A push's state across the cluster, from Redis: `None` when Redis
    /// does not know it (unknown, delivered everywhere, or Redis away).
    pub async fn push_status(&self, id: u64) -> Option<Value> {
        if !self.up() {
            return None;
        }
        let (tx, rx) = smol::channel::bounded(1);
        if !self.send(Job::Status(id, tx), "status") {
            return None;
        }
        rx.recv().await.ok().flatten()
    }

    /// Uuids the other masters hold that `to` names (`*`, `group:NAME` or
    /// a uuid), for a push accepted here.
    pub fn resolve(&self, to: &str) -> Vec<Uuid> {
        let v = self.view();
        v.agents
            .iter()
            .filter(|(u, a)| {
                if to == "*" {
                    true
                } else if let Some(g) = to.strip_prefix("group:") {
                    a["group"] == g
                } else {
                    u.as_str() == to
                }
            })
            .filter_map(|(u, _)| Uuid::from_text(u))
            .collect()
    }
}
