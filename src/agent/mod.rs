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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use smol::LocalExecutor;
use smol::future::FutureExt;

use crate::cli::options::{AgentOptions, WireVersion};
use crate::keys::AgentKey;
use crate::proto::Uuid;
use crate::proto::frame::Compress;
use crate::proto::v2::{self, Role};
use crate::session::TxLimits;
use crate::session::agent::AgentConfig;
use crate::session::liveness::Keepalive;

pub mod backoff;
pub mod conn;
pub mod delivery;
pub mod delivery_journal;
pub mod health;
pub mod hook;
pub mod identity;
pub mod inbox;
pub mod local;
pub mod result_store;
pub mod ring;
pub mod settings;
pub mod state;

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

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(opts: AgentOptions) -> Result<(), String> {
    let set = settings::AgentSettings::load(&opts)?;
    let key = match &set.key_file {
        Some(p) => Some(AgentKey::load(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let uuid_text = set
        .uuid
        .clone()
        .or_else(|| key.as_ref().and_then(|k| k.uuid.clone()))
        .or_else(|| identity::default_uuid(std::path::Path::new("/")))
        .ok_or("no uuid: give --uuid (no /etc/machine-id and no MAC address found)")?;
    let uuid = Uuid::from_text(&uuid_text)
        .ok_or_else(|| format!("uuid {uuid_text:?} does not fit the 33-byte field"))?;
    let wire = match set.wire {
        WireVersion::V1 => crate::proto::Version::V1,
        WireVersion::V2 => crate::proto::Version::V2,
    };
    if wire == crate::proto::Version::V2 && key.is_none() {
        log::warn!("no --key-file: asking for a plaintext session (the master must allow it)");
    }
    let interval = set.interval;
    let state_dir = set.state_dir.clone();
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        log::warn!("state dir {}: {e}; running without it", state_dir.display());
    }
    let session = AgentConfig {
        uuid,
        group: set.group.clone().unwrap_or_default(),
        role: Role::Agent,
        psk: key.as_ref().map(|k| *k.psk.as_bytes()),
        wire,
        keepalive: if wire == crate::proto::Version::V1 {
            // The legacy master closes idle connections after 120 s: its own
            // test client beats every 15 s.
            Keepalive {
                interval: Duration::from_secs(15),
                miss_limit: 4,
            }
        } else {
            Keepalive::default()
        },
        handshake_timeout: Duration::from_secs(10),
        report_interval: interval,
        max_frame: crate::proto::DEFAULT_MAX_FRAME,
        compress: Compress::IfSmaller(crate::proto::compress::DEFAULT_LEVEL),
        tx: TxLimits {
            max_frames: 64,
            max_bytes: 256 << 10,
        },
        max_pending_pushes: set.inbox_messages,
        software: concat!("edge-gw ", env!("CARGO_PKG_VERSION")).to_string(),
        inbox: Some(crate::proto::v2::InboxLimits {
            messages: u32::try_from(set.inbox_messages).unwrap_or(u32::MAX),
            bytes: u32::try_from(set.inbox_bytes).unwrap_or(u32::MAX),
        }),
    };
    log::info!(
        "agent {uuid} starting: master {}, wire {}, interval {} s, state dir {}",
        set.master,
        set.wire,
        interval.as_secs(),
        state_dir.display()
    );
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
            "push {id}: an earlier run of the agent stopped while the --on-push hook ran for it; it is held, not run again and not acked, until you check what the hook did and answer `RESOLVE {id} delivered` or `RESOLVE {id} retry` on {}",
            local::socket_path(&state_dir).display()
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
    let cfg = conn::ConnConfig {
        master: set.master.clone(),
        session,
    };
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(main(&ex, cfg, shared, set)))
}

async fn main(
    ex: &LocalExecutor<'_>,
    cfg: conn::ConnConfig,
    shared: Shared,
    set: settings::AgentSettings,
) -> Result<(), String> {
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let sock = local::socket_path(&set.state_dir);
    let local_task = ex.spawn(local::serve(sock.clone(), shared.clone()));
    let reports = ex.spawn(report_timer(
        shared.clone(),
        set.interval,
        set.mounts.clone(),
    ));
    let delivery = ex.spawn(delivery::run(
        shared.clone(),
        set.on_push.clone(),
        set.hook_timeout,
        set.result_max_bytes,
    ));
    let conn_task = ex.spawn(conn::run(cfg, shared.clone(), stop_rx));
    let signalled = stop_signal().await?;
    log::info!("{signalled}: stopping");
    let _ = stop_tx.send(()).await;
    // Give the session up to 2 s to send its Close, and a running hook
    // what is left of them to finish (its outcome is then recorded).
    let deadline = Instant::now() + Duration::from_secs(2);
    let done = async {
        conn_task.await;
        true
    };
    let limit = async {
        smol::Timer::at(deadline).await;
        false
    };
    if !done.or(limit).await {
        log::warn!("session did not close within 2 s");
    }
    while !shared.state.borrow().journal.running().is_empty() && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    // Cancelling drops the worker's future at once, which kills a hook
    // still running; only then is it recorded as not taken.
    let _ = delivery.cancel().await;
    delivery::stopped(&shared);
    drop((local_task, reports));
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

/// Makes one report per interval and hands it to the connection task
/// (through the ring, which holds it while disconnected).
async fn report_timer(shared: Shared, interval: Duration, mounts: Vec<String>) {
    let mut reader = health::HealthReader::new(PathBuf::from("/"), mounts);
    let mut seq = 0u32;
    let mut next = Instant::now();
    loop {
        smol::Timer::at(next).await;
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

/// Resolves with the name of the first SIGTERM or SIGINT.
async fn stop_signal() -> Result<&'static str, String> {
    use async_signal::{Signal, Signals};
    use smol::stream::StreamExt;
    let mut signals = Signals::new([Signal::Term, Signal::Int])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    loop {
        match signals.next().await {
            Some(Ok(Signal::Int)) => return Ok("SIGINT"),
            Some(Ok(_)) => return Ok("SIGTERM"),
            Some(Err(e)) => log::warn!("signal stream: {e}"),
            None => return Ok("signal stream ended"),
        }
    }
}
