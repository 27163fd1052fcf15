//! The master role: accepts agents, keeps the fleet registry, routes
//! pushes, serves the HTTP API, metrics and dashboard.
//!
//! Shells around the sans-I/O [`crate::session::master`]: [`shard`]s (one
//! epoll loop per thread) accept agents (with a connection cap and the
//! per-IP rate limit of [`listener`]) and serve each connection on one
//! thread, [`registry`] is the fleet,
//! [`push_log`] makes accepted pushes durable on its own thread (no disk
//! I/O on the shards or the executor) and hands them to [`push_router`], which queues
//! them in the registry; [`http`] serves operators. [`budget`] bounds the
//! memory peers can make all of these hold.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use event_listener::Event;
use smol::Async;

use crate::cli::options::MasterOptions;
use crate::keys::{AgentKey, Keyring, Psk};
use crate::proto::frame::Compress;
use crate::proto::{Uuid, v2};
use crate::session::TxLimits;
use crate::session::liveness::Keepalive;
use crate::session::master::MasterConfig;
use crate::session::outbox::OutboxLimits;

pub mod budget;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod conn_handle;
pub mod http;
pub mod listener;
pub mod pid_file;
pub mod push_log;
pub mod push_router;
pub mod registry;
pub mod settings;
pub mod shard;
pub mod state_dir;

use budget::MemoryBudget;
use http::{Admission, HttpCounters, Watchers};
use push_log::{Committer, LogFile, LogStats};
use push_router::OutboxRouter;
use registry::{AnswerLimits, LegacyLimits, Registry};
use settings::Settings;

/// Everything the master's tasks share.
pub struct Master {
    settings: RwLock<Arc<Settings>>,
    session_cfg: RwLock<Arc<MasterConfig>>,
    keys: RwLock<Arc<Keyring>>,
    /// Bumped after every keyring swap: shards keep their own `Arc` of
    /// the keyring and fetch it again only when this moves, rather than
    /// taking the lock and the shared reference count per read.
    keys_version: AtomicU32,
    /// Shared with the push log's committer thread, which queues accepted
    /// pushes through [`OutboxRouter`].
    registry: Arc<Mutex<Registry>>,
    push_log: Committer,
    watchers: Watchers,
    /// Open HTTP connections, capped in total and per IP.
    http_admission: Arc<Admission>,
    /// HTTP connections refused or timed out, by reason.
    http_counters: HttpCounters,
    /// Bearer token of the API.
    pub token: String,
    /// Set when shutting down.
    pub stopping: AtomicBool,
    /// Notified when shutting down.
    pub stop_event: Event,
    /// Wall clock at start, Unix ms.
    pub started_unix_ms: u64,
    /// Keyring reloads refused because they would revoke every key.
    pub keyring_reloads_refused: AtomicU32,
    /// Bytes peers make the master hold, against `memory_budget`: charged
    /// by shards' connections (partial frames, send queues) and the registry
    /// (kept legacy bodies).
    pub budget: Arc<MemoryBudget>,
    /// Connections per shard ([`shard`]).
    pub shard_load: shard::load::Load,
    /// The cluster threads' handle, when this master serves with others
    /// (`--cluster`).
    #[cfg(feature = "cluster")]
    pub cluster: Option<Arc<cluster::Cluster>>,
}

fn session_config(s: &Settings) -> MasterConfig {
    MasterConfig {
        keepalive: Keepalive {
            interval: s.heartbeat,
            miss_limit: s.miss_limit,
        },
        handshake_timeout: s.handshake_timeout,
        max_frame: s.max_frame,
        pre_auth_max_frame: crate::session::master::PRE_AUTH_MAX_FRAME,
        legacy_v1: s.legacy_v1,
        legacy_idle: s.legacy_idle_timeout,
        allow_plaintext: s.allow_plaintext,
        compress: if s.compress {
            Compress::IfSmaller(crate::proto::compress::DEFAULT_LEVEL)
        } else {
            Compress::Never
        },
        tx: TxLimits {
            max_frames: s.send_queue_frames,
            max_bytes: s.send_queue_bytes,
        },
        software: concat!("edge-gw ", env!("CARGO_PKG_VERSION")).to_string(),
    }
}

fn legacy_limits(s: &Settings) -> LegacyLimits {
    LegacyLimits {
        max_health_body: s.max_health_body,
        retention: s.legacy_retention,
    }
}

fn outbox_limits(s: &Settings) -> OutboxLimits {
    OutboxLimits {
        max_msgs: s.outbox_messages,
        max_bytes: s.outbox_bytes,
        max_in_flight: s.outbox_in_flight,
        resend_after: s.push_resend,
    }
}

fn answer_limits(s: &Settings) -> AnswerLimits {
    AnswerLimits {
        keep: s.push_results_keep,
        max_age_ms: u64::try_from(s.push_results_max_age.as_millis()).unwrap_or(u64::MAX),
        agent_bytes: s.push_results_agent_bytes,
    }
}

impl Master {
    /// The master's shared state, with the push log's committer thread
    /// started on the opened log (`next_id` as recovered from it) and
    /// `registry` already holding the recovered pushes.
    fn new(
        settings: Settings,
        keys: Keyring,
        registry: Registry,
        log: LogFile,
        next_id: u64,
        token: String,
        http_addr: String,
    ) -> Result<Master, String> {
        let budget = Arc::new(MemoryBudget::new(settings.memory_budget));
        let threads = settings.threads;
        let mut registry = registry;
        registry.set_budget(budget.clone());
        registry.legacy_limits = legacy_limits(&settings);
        let registry = Arc::new(Mutex::new(registry));
        let router = Box::new(OutboxRouter::new(registry.clone()));
        let push_log = Committer::spawn(log, next_id, router)
            .map_err(|e| format!("cannot start the push log thread: {e}"))?;
        #[cfg(feature = "cluster")]
        let cluster = match &settings.cluster {
            Some(c) => Some(cluster::Cluster::start(
                c,
                cluster_tick(&settings),
                registry.clone(),
                http_addr,
            )?),
            None => None,
        };
        #[cfg(not(feature = "cluster"))]
        let _ = http_addr;
        Ok(Master {
            session_cfg: RwLock::new(Arc::new(session_config(&settings))),
            settings: RwLock::new(Arc::new(settings)),
            keys: RwLock::new(Arc::new(keys)),
            keys_version: AtomicU32::new(0),
            registry,
            push_log,
            watchers: Watchers::default(),
            http_admission: Arc::default(),
            http_counters: HttpCounters::default(),
            token,
            stopping: AtomicBool::new(false),
            stop_event: Event::new(),
            started_unix_ms: crate::os::unix_ms(),
            keyring_reloads_refused: AtomicU32::new(0),
            budget,
            shard_load: shard::load::Load::new(threads),
            #[cfg(feature = "cluster")]
            cluster,
        })
    }

    /// Current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Session settings for new connections.
    pub fn session_config(&self) -> Arc<MasterConfig> {
        self.session_cfg
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The keyring.
    pub fn keys(&self) -> Arc<Keyring> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Which keyring [`keys`](Self::keys) returns: it changes after every
    /// reload that swapped it (see `keys_version`).
    pub fn keys_version(&self) -> u32 {
        self.keys_version.load(Ordering::Acquire)
    }

    /// Locks the registry (never held across an await).
    pub fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The push log's figures as last published by its committer thread
    /// (never waits for the disk).
    pub fn store_stats(&self) -> LogStats {
        self.push_log.stats()
    }

    /// Live watchers (SSE streams).
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// The HTTP connection caps' state: the HTTP accept loop takes slots
    /// from it, status and metrics show how many are open.
    pub fn http_admission(&self) -> &Arc<Admission> {
        &self.http_admission
    }

    /// HTTP refusals and timeouts, for `/api/status` and `/metrics`.
    pub fn http_counters(&self) -> &HttpCounters {
        &self.http_counters
    }

    /// Sends the registry's new events to the live watchers.
    pub fn publish(&self, reg: &mut Registry) {
        let events = reg.take_events();
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.cluster {
            for ev in &events {
                if let Some((uuid, conn)) = reg.is_v2_join(ev) {
                    c.joined(uuid, conn);
                } else if let registry::FleetEvent::Leave(uuid, ..) = ev
                    && !reg.agent(uuid).is_some_and(|a| a.online())
                {
                    c.left(*uuid);
                }
            }
            if reg.remote_wanted() {
                let reports = reg.take_remote_reports();
                if !reports.is_empty() {
                    c.reports(reports);
                }
            }
        }
        if !events.is_empty() {
            self.watchers.publish(&events, reg);
        }
    }

    /// Queues an agent's answer (already checked by the registry) for a
    /// synced record in the push log; its agent is confirmed once it is on
    /// disk. `false` when the committer thread is behind or gone: the
    /// answer stays with the agent, which sends it again later.
    pub fn record_answer(&self, id: u64, uuid: Uuid, answer: push_log::Answer) -> bool {
        self.push_log.record_answer(id, uuid, answer)
    }

    /// Records acked deliveries in the push log. Never waits: the records
    /// go to the committer thread (which also compacts the log when it is
    /// mostly dead records), or are dropped and counted when it is behind
    /// (a lost record only means a resend after a restart, which the agent
    /// answers as a duplicate). Called from shards' connections.
    pub fn record_deliveries(&self, delivered: &[(u64, Uuid)]) {
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.cluster {
            c.acked(delivered);
        }
        self.push_log.record_deliveries(delivered);
    }

    /// Accepts a push for `targets`: the committer thread checks room,
    /// persists it (fsync, shared with the other pushes waiting at that
    /// moment) and hands it to the registry, which queues it and hands it
    /// to the online agents' connections. Returns the push id once all
    /// that is done.
    pub async fn accept_push(
        &self,
        targets: &[Uuid],
        sender: &str,
        group: &str,
        body: Vec<u8>,
    ) -> Result<u64, PushError> {
        self.accept_push_wanting(targets, sender, group, body, false)
            .await
    }

    /// [`accept_push`](Self::accept_push) for a push that may want its
    /// consumers' results back (`want_result`): its targets are then
    /// awaited in the push log and the registry until they answer.
    pub async fn accept_push_wanting(
        &self,
        targets: &[Uuid],
        sender: &str,
        group: &str,
        body: Vec<u8>,
        want_result: bool,
    ) -> Result<u64, PushError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(PushError::ShuttingDown);
        }
        let max = self.settings().max_frame as usize;
        // Room for the header, the push fields and the AEAD tag.
        if body.len() + 256 > max {
            return Err(PushError::TooLarge(max - 256));
        }
        let push = v2::Push {
            id: 0,
            sender: sender.to_string(),
            group: group.to_string(),
            body,
            want_result,
        };
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.cluster {
            if want_result {
                return Err(PushError::Unsupported(
                    "push results (want_result) are not available in cluster mode yet",
                ));
            }
            return c.accept_push(push, targets.to_vec()).await;
        }
        self.push_log.accept(push, targets.to_vec()).await
    }

    /// The next connection on `listener`, or `None` once the master stops.
    pub async fn accept_or_stop(
        &self,
        listener: &Async<TcpListener>,
    ) -> Option<std::io::Result<(Async<std::net::TcpStream>, std::net::SocketAddr)>> {
        use smol::future::FutureExt;
        // Listen first, then check the flag: a stop between the two still
        // wakes the listener.
        let stop = async {
            self.stop_event.listen().await;
            None
        };
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let accept = async { Some(listener.accept().await) };
        accept.or(stop).await
    }

    /// Re-reads the keyring (SIGHUP) and kicks agents whose key is gone.
    ///
    /// A keyring that would revoke every key at once (empty, cut inside its
    /// first comment, or sharing no key with the current one) is refused
    /// unless `keyring_revoke_all` is set: one truncated file must not drop
    /// the fleet. What a reload revokes is logged before it is done.
    pub fn reload_keys(&self) -> Result<usize, String> {
        let settings = self.settings();
        let ring = Keyring::load(&settings.keyring).map_err(|e| e.to_string())?;
        let n = ring.len();
        let old = self.keys();
        if !old.is_empty() && !ring.keeps_any_of(&old) && !settings.keyring_revoke_all {
            self.keyring_reloads_refused.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "{} has {n} keys and keeps none of the {} current ones: it would revoke every \
                 agent; refused (to mean it, set keyring_revoke_all = true in the config for \
                 this reload)",
                settings.keyring.display(),
                old.len()
            ));
        }
        let mut reg = self.lock_registry();
        let revoked: Vec<Uuid> = reg
            .agents()
            .filter(|a| {
                // The key that authenticated the session must still be the
                // one the keyring gives for this uuid.
                a.online()
                    && a.sealed
                    && ring
                        .lookup(a.uuid.trimmed())
                        .is_none_or(|k| crc32fast::hash(k.as_bytes()) != a.key_id)
            })
            .map(|a| a.uuid)
            .collect();
        if !revoked.is_empty() {
            let names: Vec<String> = revoked.iter().take(20).map(Uuid::to_string).collect();
            log::warn!(
                "reload: revoking {} connected agent(s): {}{}",
                revoked.len(),
                names.join(", "),
                if revoked.len() > names.len() {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        self.keys_version.fetch_add(1, Ordering::Release);
        for u in revoked {
            log::warn!("agent {u}: key revoked, closing its session");
            reg.kick(
                &u,
                v2::CloseCode::AuthFailed,
                "key revoked by the master's keyring",
            );
        }
        Ok(n)
    }

    /// Re-reads the config file (SIGHUP). Settings that need a restart
    /// (addresses, state dir, threads, user) are kept and named in the log.
    pub fn reload_settings(&self) -> Result<(), String> {
        let old = self.settings();
        let Some(file) = old.config_file.clone() else {
            return Ok(());
        };
        let opts = MasterOptions {
            config: Some(file),
            ..MasterOptions::default()
        };
        let mut new = Settings::load(&opts)?;
        for (name, changed) in [
            ("listen", new.listen != old.listen),
            ("http", new.http != old.http),
            ("state_dir", new.state_dir != old.state_dir),
            ("threads", new.threads != old.threads),
            ("user", new.user != old.user),
        ] {
            if changed {
                log::warn!("reload: {name} changes only on restart; keeping the running value");
            }
        }
        new.listen.clone_from(&old.listen);
        new.http.clone_from(&old.http);
        new.state_dir.clone_from(&old.state_dir);
        new.threads = old.threads;
        new.user.clone_from(&old.user);
        new.keyring.clone_from(&old.keyring);
        *self.session_cfg.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(session_config(&new));
        self.budget.set_limit(new.memory_budget);
        {
            let mut reg = self.lock_registry();
            reg.limits = outbox_limits(&new);
            reg.legacy_limits = legacy_limits(&new);
            reg.answer_limits = answer_limits(&new);
        }
        crate::cli::logging::config_level(new.log_level);
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        Ok(())
    }
}

/// Why a push was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// An outbox is full (429 for messages, 507 for bytes).
    Full(crate::session::outbox::OverflowKind),
    /// The body is larger than a frame can carry.
    TooLarge(usize),
    /// The push log could not be written (500).
    Store(String),
    /// The master is stopping (503).
    ShuttingDown,
    /// The cluster's Redis could not make the push durable (503), with
    /// the reason.
    Unavailable(String),
    /// Not possible in this mode (501), with the reason.
    Unsupported(&'static str),
}

/// How often a cluster master refreshes its claims and reads the other
/// masters' views: twice per heartbeat, so every master agrees within
/// one heartbeat interval, but at most every 5 s.
#[cfg(feature = "cluster")]
fn cluster_tick(s: &Settings) -> Duration {
    (s.heartbeat / 2).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

/// Runs the master until SIGTERM/SIGINT.
pub fn run(opts: MasterOptions) -> Result<(), String> {
    let settings = Settings::load(&opts)?;
    #[cfg(not(feature = "cluster"))]
    if settings.cluster.is_some() {
        return Err(
            "this build has no cluster support (cargo feature `cluster`); remove --cluster / `cluster`".into(),
        );
    }
    crate::cli::logging::config_level(settings.log_level);
    listener::raise_fd_limit();
    // The master compresses on a fixed set of threads all day.
    crate::proto::compress::keep_compressor_per_thread();

    // Bind first: a master that cannot have its ports must fail before it
    // writes keys and a token nobody will use, and privileged ports need
    // root. Then prepare the state dir, drop privileges while this is
    // still the only thread, and hand the sockets to the reactor.
    let mut bound = Vec::new();
    for a in &settings.listen {
        bound.push(listener::bind(a).map_err(|e| format!("cannot listen on {a}: {e}"))?);
    }
    let http_listener = listener::bind(&settings.http)
        .map_err(|e| format!("cannot listen on {} (http): {e}", settings.http))?;
    let init = state_dir::prepare(&settings)?;
    let keys = Keyring::load(&settings.keyring).map_err(|e| e.to_string())?;
    let (log, recovered) =
        LogFile::open(&settings.state_dir).map_err(|e| format!("push log: {e}"))?;
    if let Some(user) = &settings.user {
        state_dir::drop_privileges(user, &settings.state_dir)?;
    }
    let agent_listeners = bound;
    let http_listener = Async::new(http_listener).map_err(|e| e.to_string())?;
    // Handlers before the PID file and the API appear: SIGHUP's default
    // action kills, and a reload sent as soon as they exist must not. Not
    // earlier: they start the reactor's thread, and the privilege drop
    // above needs the process to have only one.
    let signals = async_signal::Signals::new([
        async_signal::Signal::Term,
        async_signal::Signal::Int,
        async_signal::Signal::Hup,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // After binding, so only a master that runs leaves a PID file.
    let _pid_file = pid_file::PidFile::write(&settings.state_dir)?;

    let now = Instant::now();
    let mut registry = Registry::new(outbox_limits(&settings), now);
    registry.answer_limits = answer_limits(&settings);
    for (push, targets) in &recovered.pending {
        for t in targets {
            registry.ensure_agent(*t);
        }
        let clock = crate::os::now();
        registry.enqueue(push.clone(), targets, clock.mono, clock.unix_ms);
    }
    // After the pending pushes: the log knows better who already answered.
    for (id, targets) in &recovered.awaiting {
        registry.await_answers(*id, targets);
    }
    registry.restore_answers(recovered.answers);
    if !recovered.pending.is_empty() {
        log::info!(
            "push log: {} undelivered pushes recovered",
            recovered.pending.len()
        );
    }
    let http_addr = http_listener
        .get_ref()
        .local_addr()
        .map_err(|e| e.to_string())?;
    let master = Arc::new(Master::new(
        settings.clone(),
        keys,
        registry,
        log,
        recovered.next_id,
        init.token,
        http_addr.to_string(),
    )?);

    for l in &agent_listeners {
        if let Ok(a) = l.local_addr() {
            log::info!("listening for agents on {a}");
        }
    }
    log::info!("HTTP API, metrics and dashboard on http://{http_addr}/");
    log::info!(
        "an agent joins with: edge-gw --agent THIS_HOST:{} --key-file {} --uuid NAME  (copy the key file to the device; `edge-gw keygen` makes per-device keys)",
        agent_listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map_or(9503, |a| a.port()),
        init.fleet_key_file.display()
    );

    // Agents are served by the shards, one thread each; the executor runs
    // the HTTP API and the master's own tasks (signals, watchdog, ageing)
    // on this thread and at most one more.
    let threads = settings.threads.max(1);
    log::info!("{threads} shard thread(s) serving agents");
    let shards = shard::Shards::start(master.clone(), agent_listeners, threads)?;
    let ex = Arc::new(smol::Executor::new());
    let (stop_tx, stop_rx) = smol::channel::unbounded::<()>();
    let mut workers = Vec::new();
    for i in 1..threads.min(2) {
        let ex = ex.clone();
        let stop_rx = stop_rx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("edge-gw-api-{i}"))
                .spawn(move || smol::block_on(ex.run(stop_rx.recv())))
                .map_err(|e| e.to_string())?,
        );
    }
    let result = smol::block_on(ex.run(async {
        ex.spawn(http::accept_loop(master.clone(), http_listener, ex.clone()))
            .detach();
        ex.spawn(forget_stale_legacy(master.clone())).detach();
        // systemd (Type=notify): ready now that the listeners are bound and
        // the PID file written; the watchdog is pinged from this executor
        // only while the registry lock can be taken and every shard turns
        // its loop.
        crate::sd_notify::ready(&format!("serving on http://{http_addr}/"));
        let m = master.clone();
        let shards_alive = shards.liveness();
        ex.spawn(async move {
            crate::sd_notify::watchdog(|| {
                drop(m.lock_registry());
                shards_alive.check()
            })
            .await
        })
        .detach();
        lifecycle(master.clone(), signals).await
    }));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    shards.stop();
    result
}

/// Waits for signals: SIGHUP reloads, SIGTERM/SIGINT shut down.
async fn lifecycle(master: Arc<Master>, mut signals: async_signal::Signals) -> Result<(), String> {
    use async_signal::Signal;
    use smol::stream::StreamExt;
    while let Some(sig) = signals.next().await {
        match sig {
            Ok(Signal::Hup) => {
                log::info!("SIGHUP: reloading config and keyring");
                crate::sd_notify::reloading();
                if let Err(e) = master.reload_settings() {
                    log::error!("reload: config not changed: {e}");
                }
                match master.reload_keys() {
                    Ok(n) => log::info!("reload: keyring has {n} keys"),
                    Err(e) => log::error!("reload: keyring not changed: {e}"),
                }
                crate::sd_notify::ready("reloaded");
            }
            Ok(s) => {
                // Named as the agent names them: "SIGTERM: stopping".
                let name = if s == Signal::Int {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                log::info!("{name}: stopping");
                crate::sd_notify::stopping();
                break;
            }
            Err(e) => log::warn!("signal stream: {e}"),
        }
    }
    shutdown(&master).await;
    Ok(())
}

/// Forgets offline legacy agents once not heard for `legacy_retention`,
/// and push results past `push_results_max_age`, checking a few times per
/// retention period (at most once a minute, at least every 250 ms): the
/// registry has no timer of its own.
async fn forget_stale_legacy(master: Arc<Master>) {
    while !master.stopping.load(Ordering::Relaxed) {
        let every = (master.settings().legacy_retention / 4)
            .clamp(Duration::from_millis(250), Duration::from_secs(60));
        smol::Timer::after(every).await;
        let n = master.lock_registry().forget_stale_legacy(Instant::now());
        if n > 0 {
            log::debug!("forgot {n} offline legacy agent(s) past legacy_retention");
        }
        // Push results age out even when no new answer arrives to prune
        // them (the next compaction then drops them from the log).
        master.lock_registry().prune_answers(crate::os::unix_ms());
    }
}

/// Stops accepting, closes every session with reason `shutdown`, waits a
/// little for the Close frames to go out, then lets the committer thread write
/// what is queued, sync the push log and end.
async fn shutdown(master: &Master) {
    master.stopping.store(true, Ordering::SeqCst);
    master.stop_event.notify(usize::MAX);
    master
        .lock_registry()
        .kick_all(v2::CloseCode::Shutdown, "master shutting down");
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline && master.lock_registry().connections() > 0 {
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    let left = master.lock_registry().connections();
    if left > 0 {
        log::warn!("{left} connections still open at exit");
    }
    master.push_log.stop().await;
}

/// A fleet key file for agents, created with the state directory.
pub(crate) fn write_fleet_key(path: &Path, psk: &Psk) -> Result<(), String> {
    AgentKey {
        uuid: None,
        psk: psk.clone(),
    }
    .write_new(path)
    .map_err(|e| e.to_string())
}

/// Bounded queue helper shared by watcher streams.
pub(crate) fn push_bounded<T>(q: &mut VecDeque<T>, item: T, max: usize) -> bool {
    if q.len() >= max {
        return false;
    }
    q.push_back(item);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_accept_push_group_commits_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("edge-gw-master-push-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = MasterOptions {
            state_dir: Some(dir.clone()),
            ..MasterOptions::default()
        };
        let settings = Settings::load(&opts).unwrap();
        let (log, rec) = LogFile::open(&dir).unwrap();
        let mut registry = Registry::new(outbox_limits(&settings), Instant::now());
        let agents: Vec<Uuid> = (0..4)
            .map(|i| Uuid::from_text(&format!("agent-{i}")).unwrap())
            .collect();
        for a in &agents {
            registry.ensure_agent(*a);
        }
        let master = Arc::new(
            Master::new(
                settings,
                Keyring::default(),
                registry,
                log,
                rec.next_id,
                "token".into(),
                String::new(),
            )
            .unwrap(),
        );

        // Held while the senders queue their pushes: the committer thread
        // blocks on its first room check, so the pushes pile up and are
        // committed in a few batches however the threads are scheduled.
        let guard = master.lock_registry();
        let senders: Vec<_> = agents
            .iter()
            .map(|&agent| {
                let m = master.clone();
                std::thread::spawn(move || {
                    let ex = smol::LocalExecutor::new();
                    smol::block_on(ex.run(async {
                        let tasks: Vec<_> = (0..50)
                            .map(|i| {
                                let m = m.clone();
                                ex.spawn(async move {
                                    let body = format!("{agent} {i}").into_bytes();
                                    m.accept_push(&[agent], "test", "", body).await
                                })
                            })
                            .collect();
                        let mut ids = Vec::new();
                        for t in tasks {
                            ids.push(t.await);
                        }
                        ids
                    }))
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while master.store_stats().pending_pushes < 200 {
            assert!(Instant::now() < deadline, "{:?}", master.store_stats());
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(guard);
        let mut ids: Vec<u64> = Vec::new();
        for s in senders {
            for r in s.join().unwrap() {
                ids.push(r.unwrap());
            }
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=200).collect::<Vec<u64>>(), "distinct, no gaps");
        // One sender after another: strictly increasing.
        let later: Vec<u64> = (0..3)
            .map(|i| smol::block_on(master.accept_push(&agents[..1], "test", "", vec![i])).unwrap())
            .collect();
        assert_eq!(later, [201, 202, 203]);

        smol::block_on(shutdown(&master));
        assert_eq!(
            smol::block_on(master.accept_push(&agents[..1], "test", "", vec![])),
            Err(PushError::ShuttingDown)
        );
        let st = master.store_stats();
        // Less the final sync at shutdown. The 200 concurrent pushes take at
        // most three syncs (the batch the thread held when blocked, the rest
        // of the queue, one straggler), the 3 sequential ones one each.
        let syncs = st.syncs - 1;
        eprintln!("group commit: {syncs} fsyncs for 203 pushes");
        assert!(syncs <= 6, "{st:?}");

        let (_, rec) = LogFile::open(&dir).unwrap();
        assert_eq!(rec.next_id, 204);
        let logged: Vec<u64> = rec.pending.iter().map(|p| p.0.id).collect();
        assert_eq!(logged, (1..=203).collect::<Vec<u64>>());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
