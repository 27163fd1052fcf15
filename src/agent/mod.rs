//! The agent role: runs on a router, keeps one TCP connection to a master,
//! reports health every interval, buffers reports while disconnected, and
//! hands pushes to a local consumer before acking them.
//!
//! One thread, a few tasks on a local executor: [`conn`] (the session),
//! the report timer, the push [`delivery`] worker (the [`hook`]; or the
//! [`local`] socket), and the local socket server. They share [`state`],
//! which holds the [`delivery_journal`]: what the consumer took, kept on
//! disk before any ack, so a push reaches the consumer once whatever the
//! order in which agent and master crash and restart.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::LocalExecutor;
use smol::future::FutureExt;

use crate::cli::options::AgentOptions;
use crate::proto::v2;

pub mod backoff;
pub mod conn;
pub mod delivery;
pub mod delivery_journal;
pub mod health;
pub mod hook;
pub mod identity;
pub mod inbox;
pub mod local;
pub mod masters;
pub mod reload;
pub mod resolved;
pub mod result_store;
pub mod ring;
pub mod settings;
pub mod state;

use reload::Changes;
use resolved::Resolved;
use state::Shared;

/// Reports kept while disconnected (1 hour at the default 10 s interval).
pub const RING_REPORTS: usize = 360;
/// Bytes of reports kept while disconnected.
pub const RING_BYTES: usize = 256 << 10;
/// Pushes waiting for the local consumer.
pub const INBOX_MESSAGES: usize = 64;
/// Bytes of pushes waiting for the local consumer.
pub const INBOX_BYTES: usize = 256 << 10;
/// Time a `--on-push` hook may take.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on a push result's output (agent setting
/// `result_max_bytes`): enough for a screenful of command output, small
/// next to a router's memory and the master's per-agent budget.
pub const RESULT_MAX_BYTES: usize = 16 << 10;

/// The default agent state directory: `$STATE_DIRECTORY` (systemd), else
/// `/var/lib/edge-gw-agent` (on OpenWrt `/var` is RAM: nothing wears the
/// flash).
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/edge-gw-agent"))
}

/// Runs the agent until SIGTERM/SIGINT; SIGHUP reloads (see [`reload`]).
pub fn run(opts: AgentOptions) -> Result<(), String> {
    // Handlers first: SIGHUP's default action kills, and a reload may come
    // while the agent is still starting.
    let signals = async_signal::Signals::new([
        async_signal::Signal::Term,
        async_signal::Signal::Int,
        async_signal::Signal::Hup,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let run = Resolved::load(&opts)?;
    crate::cli::logging::config_level(run.set.log_level);
    if run.wire == crate::proto::Version::V2 && run.psk.is_none() {
        log::warn!("no --key-file: asking for a plaintext session (the master must allow it)");
    }
    let set = &run.set;
    if let Err(e) = std::fs::create_dir_all(&set.state_dir) {
        log::warn!(
            "state dir {}: {e}; running without it",
            set.state_dir.display()
        );
    }
    log::info!(
        "agent {} starting: {} {}, wire {}, interval {} s, state dir {}",
        run.uuid,
        if set.masters.len() == 1 {
            "master"
        } else {
            "masters (in this order)"
        },
        set.masters.join(", "),
        set.wire,
        set.interval.as_secs(),
        set.state_dir.display()
    );
    let state_dir = &set.state_dir;
    let mut journal =
        delivery_journal::DeliveryJournal::open(Some(state_dir.join("delivered.ids")));
    let results = result_store::ResultStore::open(Some(state_dir.join("results")));
    // A result is stored before the delivery is journalled: an interrupted
    // push with a result finished its hook, and is delivered.
    let finished: Vec<u64> = journal
        .interrupted()
        .filter(|id| results.has(*id))
        .collect();
    for id in finished {
        log::info!("push {id}: its hook finished before the agent stopped (result kept)");
        if let Err(e) = journal.delivered_now(id) {
            log::warn!("push {id}: cannot record its delivery ({e})");
        }
    }
    for id in journal.interrupted() {
        log::error!(
            "push {id}: an earlier run of the agent stopped while the --on-push hook ran for it; it is held, not run again and not acked, until you check what the hook did and answer `edge-gw inbox --resolve {id} delivered` or `... retry` (state dir {})",
            state_dir.display()
        );
    }
    let shared = Shared::new(
        ring::ReportRing::new(set.report_ring, set.report_ring_bytes),
        inbox::Inbox::new(set.inbox_messages, set.inbox_bytes),
        journal,
        set.on_push.is_some(),
    );
    shared.state.borrow_mut().results = results;
    shared.state.borrow_mut().result_cap = set.result_max_bytes;
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(main(&ex, &opts, run, shared, signals)))
}

/// The running connection task, the channel that stops it (carrying
/// the reason its Close gives the master), and its list of masters.
struct Connection {
    task: smol::Task<()>,
    stop: smol::channel::Sender<&'static str>,
    masters: Rc<RefCell<masters::MasterList>>,
}

impl Connection {
    fn start(
        ex: &LocalExecutor<'_>,
        list: masters::MasterList,
        run: &Resolved,
        shared: &Shared,
    ) -> Connection {
        let (stop, stop_rx) = smol::channel::bounded::<&'static str>(1);
        let masters = Rc::new(RefCell::new(list));
        let cfg = conn::ConnConfig {
            masters: masters.clone(),
            session: run.session_config(),
        };
        Connection {
            task: ex.spawn(conn::run(cfg, shared.clone(), stop_rx)),
            stop,
            masters,
        }
    }

    /// Closes the session with `reason` (it sends its Close) and waits up
    /// to 2 s for it.
    async fn stop(self, reason: &'static str) {
        let _ = self.stop.send(reason).await;
        let done = async {
            self.task.await;
            true
        };
        let limit = async {
            smol::Timer::after(Duration::from_secs(2)).await;
            false
        };
        if !done.or(limit).await {
            log::warn!("session did not close within 2 s");
        }
    }
}

async fn main(
    ex: &LocalExecutor<'_>,
    opts: &AgentOptions,
    mut run: Resolved,
    shared: Shared,
    mut signals: async_signal::Signals,
) -> Result<(), String> {
    use async_signal::Signal;
    use smol::stream::StreamExt;
    let sock = local::socket_path(&run.set.state_dir);
    let local_task = ex.spawn(local::serve(sock.clone(), shared.clone()));
    let (retime, retime_rx) = smol::channel::unbounded::<(Duration, Vec<String>)>();
    let reports = ex.spawn(report_timer(
        shared.clone(),
        run.set.interval,
        run.set.mounts.clone(),
        retime_rx,
    ));
    let delivery = ex.spawn(delivery::run(
        shared.clone(),
        run.set.on_push.clone(),
        run.set.hook_timeout,
        run.set.result_max_bytes,
    ));
    // Settings always name a master (`AgentSettings::load` refuses them
    // otherwise), so this and the one on reload never fail in practice.
    let list = masters::MasterList::new(run.set.masters.clone()).ok_or("no master listed")?;
    let mut connection = Connection::start(ex, list, &run, &shared);
    // systemd (Type=notify): ready once the tasks had a turn (the local
    // socket is bound in its task's first step), not when the master
    // answers: a master that is down must not fail the agent's start.
    smol::future::yield_now().await;
    crate::sd_notify::ready(&format!("agent {} running", run.uuid));
    let watchdog = ex.spawn(crate::sd_notify::watchdog(|| true));
    let signalled = loop {
        match signals.next().await {
            Some(Ok(Signal::Hup)) => {
                crate::sd_notify::reloading();
                let connected = shared.state.borrow().master.clone();
                let Some(next) = reload_on_sighup(opts, &run, connected.as_deref()) else {
                    crate::sd_notify::ready("reload: running settings kept");
                    continue;
                };
                let Some(list) = masters::MasterList::new(next.run.set.masters.clone()) else {
                    log::error!("SIGHUP: no master listed; keeping the running settings");
                    crate::sd_notify::ready("reload: running settings kept");
                    continue;
                };
                if next.reconnect {
                    connection.stop(conn::RELOADING).await;
                    connection = Connection::start(ex, list, &next.run, &shared);
                } else if next.run.set.masters != run.set.masters {
                    connection
                        .masters
                        .borrow_mut()
                        .relist(next.run.set.masters.clone());
                }
                if next.retime {
                    let _ = retime
                        .send((next.run.set.interval, next.run.set.mounts.clone()))
                        .await;
                }
                run = next.run;
                crate::sd_notify::ready("reloaded");
            }
            Some(Ok(Signal::Int)) => break "SIGINT",
            Some(Ok(_)) => break "SIGTERM",
            Some(Err(e)) => log::warn!("signal stream: {e}"),
            None => break "the signal stream ended",
        }
    };
    log::info!("{signalled}: stopping");
    crate::sd_notify::stopping();
    // Give the session up to 2 s to send its Close, and a running hook
    // what is left of them to finish (its outcome is then recorded).
    let deadline = Instant::now() + Duration::from_secs(2);
    connection.stop(conn::STOPPED).await;
    while !shared.state.borrow().journal.running().is_empty() && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    // Cancelling drops the worker's future at once, which kills a hook
    // still running; only then is it recorded as not taken.
    let _ = delivery.cancel().await;
    delivery::stopped(&shared);
    drop((local_task, reports, watchdog));
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

/// What a SIGHUP leads to: the settings to run with from now on, and
/// which tasks must take them.
struct Next {
    run: Resolved,
    reconnect: bool,
    retime: bool,
}

/// Resolves the config file and key file again and logs what changed;
/// `None` when nothing is to be done (nothing changed, or the files are
/// broken: the agent keeps running as it was rather than dying on a typo).
fn reload_on_sighup(opts: &AgentOptions, run: &Resolved, connected: Option<&str>) -> Option<Next> {
    let new = match Resolved::load(opts) {
        Ok(new) => new,
        Err(e) => {
            log::error!("SIGHUP: reload failed, keeping the running settings: {e}");
            return None;
        }
    };
    let changes = Changes::between(run, &new);
    if changes.is_empty() {
        log::info!("SIGHUP: config and key file unchanged; nothing to do");
        return None;
    }
    for name in &changes.restart_only {
        log::warn!("SIGHUP: {name} changes only on restart; keeping the running value");
    }
    if !changes.in_place.is_empty() {
        crate::cli::logging::config_level(new.set.log_level);
        log::info!("SIGHUP: applied {}", changes.in_place.join(", "));
    }
    let reconnect = changes.needs_reconnect(connected, &new);
    if changes.session.contains(&"master") {
        log::info!(
            "SIGHUP: the masters are now {} (were {})",
            new.set.masters.join(", "),
            run.set.masters.join(", ")
        );
    }
    if reconnect {
        log::info!(
            "SIGHUP: {} changed; reconnecting with the new settings{}",
            changes.session.join(", "),
            match connected {
                Some(c) if !new.set.masters.iter().any(|m| m == c) => {
                    format!(" (the master at {c} is no longer listed)")
                }
                _ => String::new(),
            }
        );
    } else if let Some(c) = connected.filter(|_| changes.session.contains(&"master")) {
        log::info!("SIGHUP: the master at {c} is still listed; keeping the session");
    }
    Some(Next {
        run: Changes::applied(run, new),
        reconnect,
        retime: reconnect || changes.in_place.contains(&"mounts"),
    })
}

/// Makes one report per interval and hands it to the connection task
/// (through the ring, which holds it while disconnected). A new interval
/// or mount list from `retime` (SIGHUP) takes effect at once, without
/// restarting the sequence numbers.
async fn report_timer(
    shared: Shared,
    mut interval: Duration,
    mounts: Vec<String>,
    retime: smol::channel::Receiver<(Duration, Vec<String>)>,
) {
    let mut reader = health::HealthReader::new(PathBuf::from("/"), mounts);
    let mut seq = 0u32;
    let mut next = Instant::now();
    loop {
        let tick = async {
            smol::Timer::at(next).await;
            None
        };
        let changed = async { retime.recv().await.ok() };
        if let Some((new_interval, new_mounts)) = tick.or(changed).await {
            interval = new_interval;
            reader = health::HealthReader::new(PathBuf::from("/"), new_mounts);
            next = Instant::now() + interval;
            continue;
        }
        let now = Instant::now();
        next += interval;
        if next <= now {
            // Suspended or stalled: skip the missed slots, no burst.
            next = now + interval;
        }
        let mut health = reader.read();
        let mut st = shared.state.borrow_mut();
        health.custom = st.custom.clone();
        let report = v2::Report {
            seq,
            unix_ms: st.unix_ms(now),
            age_ms: 0,
            dropped: st.ring.dropped,
            health,
        };
        seq = seq.wrapping_add(1);
        st.ring.push(report, now);
        st.counters.reports_made += 1;
        drop(st);
        shared.poke_conn();
    }
}
