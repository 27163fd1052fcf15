//! The cluster scenarios (issue 11, "Cost"): masters started with
//! `--cluster` on a `redis-server` of the tool's own (AOF on, `appendfsync
//! always`: see [`crate::redis`]), measured beside a standalone master in
//! the same run, round by round.
//!
//! - `cluster_heartbeat`: the heartbeat rate and server CPU per round trip
//!   of one master with and without `--cluster` (the goal: a gap under 5 %);
//! - `cluster_push`: API push on master A → agent on master B, p50/p99 at
//!   a fixed rate, beside the same on one standalone master;
//! - `cluster_failover`: N agents on master A of a cluster; A is killed
//!   with SIGKILL; how long until all N are back on the survivors, as the
//!   agents, the survivors' API and Redis's owner entries see it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::edge::{EdgeClient, Work};
use crate::engine::{Factory, Failover, Run, Spec, now_ns};
use crate::procs::{self, ClusterOpts, Master, MasterOpts};
use crate::redis::Redis;
use crate::report::{Results, Sample, pct, si};
use crate::scenarios::{
    Config, Meas, Sys, boxed, drive_pushes, hb_factory, measure, progress, ratio_target, record,
    record_latency, rotate, wait_quiet,
};

/// The master's `heartbeat` in the heartbeat comparison: a cluster master
/// refreshes Redis twice per heartbeat, so 2 s means one refresh (claims
/// confirmed, record and view of every agent written, the others' read)
/// every second, its most frequent at a realistic setting, several inside
/// every measured interval. Both systems get the same.
const HB_HEARTBEAT: u32 = 2;

/// The masters' `heartbeat` in the push comparison: B publishes its
/// view twice per heartbeat, and A must have it before it can route a
/// push to B's agents, so a short one keeps the wait before measuring
/// short. The receivers are never silent long enough to be evicted
/// (10 heartbeats) within one measurement.
const PUSH_HEARTBEAT: u32 = 2;

/// Before each measurement, as `scenarios::start` does: wait (bounded)
/// until the rest of the machine is quiet, so servers of the last
/// measurement are gone and others' builds are less likely in the way.
fn quiet(cfg: &Config) {
    if cfg.quiet_wait > 0.0 {
        wait_quiet(cfg);
    }
}

/// Starts a master, in the cluster of `redis` as `node` if given, sharing
/// the keys of the master whose state directory is `seed`.
fn master(
    cfg: &Config,
    base: &Path,
    redis: Option<&Redis>,
    node: &str,
    seed: Option<&Path>,
    heartbeat: Option<u32>,
) -> Result<Master, String> {
    Master::start(&MasterOpts {
        bin: cfg.master_bin.clone(),
        base: base.to_path_buf(),
        compress: false,
        threads: cfg.master_threads,
        per_ip: None,
        cluster: redis.map(|r| ClusterOpts {
            url: r.url(),
            node: node.to_string(),
            seed: seed.map(Path::to_path_buf),
        }),
        heartbeat,
    })
}

/// Waits until `cond` holds (polled every `every`), at most `limit`.
fn wait_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> Result<bool, String>,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    loop {
        if cond()? {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(every);
    }
}

/// Whether Redis is up for the master `m`, as its `/api/cluster` says.
fn joined(m: &Master) -> Result<bool, String> {
    Ok(m.api("GET", "/api/cluster", None)?["redis_up"] == true)
}

/// Scenario: heartbeat round trips/s of one sealed master, standalone and
/// with `--cluster`, interleaved; the ratio and the CPU per round trip.
pub fn cluster_heartbeat(cfg: &Config, res: &mut Results) {
    const SCEN: &str = "cluster heartbeat";
    let systems = [Sys::Sealed, Sys::SealedCluster];
    let n = cfg.agents;
    for round in 0..cfg.rounds {
        for sys in rotate(&systems, round) {
            let r = (|| -> Result<(Meas, serde_json::Value), String> {
                quiet(cfg);
                let redis = match sys {
                    Sys::SealedCluster => {
                        Some(Redis::start(cfg.redis_dir.as_ref().unwrap_or(&cfg.base))?)
                    }
                    _ => None,
                };
                let m = master(
                    cfg,
                    &cfg.base,
                    redis.as_ref(),
                    "m1",
                    None,
                    Some(HB_HEARTBEAT),
                )?;
                if redis.is_some() {
                    wait_until(
                        "the master joins its cluster",
                        Duration::from_secs(20),
                        Duration::from_millis(20),
                        || joined(&m),
                    )?;
                }
                let mut run = Run::start(Spec {
                    name: format!("{SCEN} {}", sys.name()),
                    target: m.server.addr,
                    clients: n,
                    threads: cfg.threads,
                    window: cfg.window,
                    ip_base: Some(0),
                    factory: hb_factory(Sys::Sealed, Some(m.psk), cfg.depth),
                });
                run.open(Duration::from_secs(60))?;
                run.wait_ready(Duration::from_secs(120))?;
                let meas = measure(
                    cfg,
                    &run,
                    Some(m.server.pid()),
                    redis.as_ref().map(Redis::pid),
                );
                run.stop();
                let meas = meas?;
                let writes = match &redis {
                    Some(_) => {
                        m.api("GET", "/api/cluster", None)?["counters"]["registry_writes"].clone()
                    }
                    None => serde_json::Value::Null,
                };
                Ok((meas, writes))
            })();
            let (r, writes) = match r {
                Ok((m, w)) => (Ok(m), w),
                Err(e) => (Err(e), serde_json::Value::Null),
            };
            record(
                res,
                SCEN,
                sys,
                n,
                round,
                "rtt/s",
                r,
                json!({ "depth": cfg.depth, "heartbeat_s": HB_HEARTBEAT, "registry_writes": writes }),
            );
        }
    }
    ratio_target(
        res,
        SCEN,
        Sys::SealedCluster,
        Sys::Sealed,
        n,
        0.95,
        "cluster: heartbeat rtt/s with --cluster ≥ 95% of standalone",
    );
    // Server CPU per round trip, median over rounds, µs.
    let per_rtt = |res: &Results, sys: Sys, redis: bool| -> Option<f64> {
        let mut v: Vec<f64> = res
            .samples
            .iter()
            .filter(|s| s.scenario == SCEN && s.system == sys.name() && s.n == n)
            .map(|s| {
                let cores = if redis {
                    s.extra["redis_cores"].as_f64().unwrap_or(f64::NAN)
                } else {
                    s.server_cores
                };
                cores / s.value * 1e6
            })
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    if let (Some(a), Some(b)) = (
        per_rtt(res, Sys::Sealed, false),
        per_rtt(res, Sys::SealedCluster, false),
    ) {
        let redis = per_rtt(res, Sys::SealedCluster, true)
            .map(|r| format!(", Redis {r:.3} µs"))
            .unwrap_or_default();
        res.notes.push(format!(
            "{SCEN} N={n}: master CPU per round trip {a:.2} µs standalone, {b:.2} µs with --cluster ({:+.1} %){redis} (medians over rounds)",
            (b / a - 1.0) * 100.0
        ));
    }
}

/// Scenario: `POST /api/push` on master A to agents on master B of one
/// cluster at `cfg.cluster_rate`/s; beside it, the same through one
/// standalone master, and within the cluster to agents on A itself.
pub fn cluster_push(cfg: &Config, res: &mut Results) {
    const SCEN: &str = "cluster push";
    let arms = ["standalone", "cluster A→A", "cluster A→B"];
    let n = cfg.push_agents.max(1);
    for round in 0..cfg.rounds {
        let k = round % arms.len();
        for arm in arms[k..].iter().chain(&arms[..k]) {
            let label = format!("edge-gw sealed {arm}");
            let r = push_once(cfg, arm, n);
            record_latency(res, SCEN, Sys::Sealed, &label, round, r);
        }
    }
    for arm in arms {
        let name = format!("edge-gw sealed {arm}");
        if let (Some(p50), Some(p99)) = (
            res.median_of(SCEN, &format!("{name} p50"), 0),
            res.median_of(SCEN, &format!("{name} p99"), 0),
        ) {
            res.notes.push(format!(
                "{SCEN} at {}/s, {arm}: p50 {p50:.0} µs, p99 {p99:.0} µs (medians over rounds)",
                si(cfg.cluster_rate as f64)
            ));
        }
    }
}

fn push_factory(psk: [u8; 32]) -> Factory {
    Arc::new(move |i| {
        boxed(EdgeClient::new(
            &format!("push-{i}"),
            Some(psk),
            false,
            Work::PushReceiver,
        ))
    })
}

fn push_once(
    cfg: &Config,
    arm: &str,
    n: usize,
) -> Result<(Meas, Vec<u64>, serde_json::Value), String> {
    quiet(cfg);
    let base = &cfg.base;
    let redis = match arm {
        "standalone" => None,
        _ => Some(Redis::start(cfg.redis_dir.as_ref().unwrap_or(&cfg.base))?),
    };
    let a = master(cfg, base, redis.as_ref(), "a", None, Some(PUSH_HEARTBEAT))?;
    let b = match (&redis, arm) {
        (Some(r), "cluster A→B") => Some(master(
            cfg,
            base,
            Some(r),
            "b",
            Some(&a.state_dir()),
            Some(PUSH_HEARTBEAT),
        )?),
        _ => None,
    };
    let holder = b.as_ref().unwrap_or(&a);
    let mut run = Run::start(Spec {
        name: format!("cluster push {arm}"),
        target: holder.server.addr,
        clients: n,
        threads: cfg.threads,
        window: cfg.window,
        ip_base: Some(0),
        factory: push_factory(a.psk),
    });
    run.open(Duration::from_secs(60))?;
    run.wait_ready(Duration::from_secs(120))?;
    // A routes a push to B's agents from B's view, which B publishes
    // once per tick: wait until A has it (and Redis has the claims).
    let mut settle = 0.0;
    if redis.is_some() {
        let want = if b.is_some() { n } else { 0 };
        settle = wait_until(
            "master A sees the agents",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                let c = a.api("GET", "/api/cluster", None)?;
                Ok(c["redis_up"] == true && c["agents_elsewhere"].as_u64() >= Some(want as u64))
            },
        )?
        .as_secs_f64();
    }
    let (meas, lat, mut extra) = drive_pushes(
        cfg,
        run,
        &a.http,
        &a.token,
        n,
        cfg.cluster_rate,
        (Some(a.server.pid()), redis.as_ref().map(Redis::pid)),
    )?;
    extra["arm"] = json!(arm);
    extra["view_settle_s"] = json!(settle);
    if redis.is_some() {
        extra["cluster_counters_a"] = a.api("GET", "/api/cluster", None)?["counters"].clone();
    }
    Ok((meas, lat, extra))
}

/// Scenario: N agents on master A of a cluster of `cfg.cluster_masters`;
/// SIGKILL A; time until every agent is handshaken on a survivor, until
/// the survivors' API counts them online, until Redis names a survivor as
/// the owner of each.
pub fn cluster_failover(cfg: &Config, res: &mut Results) {
    const SCEN: &str = "cluster failover";
    let n = cfg.failover_agents;
    let k = cfg.cluster_masters.max(2);
    for round in 0..cfg.rounds {
        match failover_once(cfg, n, k) {
            Ok(f) => {
                progress(
                    SCEN,
                    Sys::Sealed,
                    n,
                    round,
                    &format!(
                        "all on survivors: sessions {:.2} s, survivors' API {:.2} s, Redis owners {:.2} s \
                         (per agent p50 {:.2} s p99 {:.2} s; {} moves; join: storm {:.2} s, claims {:.2} s)",
                        f.sessions,
                        f.api,
                        f.claims,
                        f.extra["per_agent_p50_s"].as_f64().unwrap_or(f64::NAN),
                        f.extra["per_agent_p99_s"].as_f64().unwrap_or(f64::NAN),
                        f.extra["moves"],
                        f.extra["join_storm_s"].as_f64().unwrap_or(f64::NAN),
                        f.extra["join_claims_s"].as_f64().unwrap_or(f64::NAN),
                    ),
                );
                for (what, v) in [
                    ("sessions on survivors", f.sessions),
                    ("online in survivors' API", f.api),
                    ("owned by survivors in Redis", f.claims),
                ] {
                    res.add(Sample {
                        scenario: SCEN,
                        system: format!("{k} masters: {what}"),
                        n,
                        round,
                        value: v,
                        unit: "s",
                        server_cores: f64::NAN,
                        gen_cores: f64::NAN,
                        other_cores: f64::NAN,
                        extra: f.extra.clone(),
                    });
                }
            }
            Err(e) => res.fail(format!("{SCEN} N={n} round {round}: {e}")),
        }
    }
    for what in [
        "sessions on survivors",
        "online in survivors' API",
        "owned by survivors in Redis",
    ] {
        if let Some(t) = res.median_of(SCEN, &format!("{k} masters: {what}"), n) {
            res.notes.push(format!(
                "{SCEN}: {n} agents of a killed master, {what} after {t:.2} s (median over rounds)"
            ));
        }
    }
}

struct FailoverRun {
    sessions: f64,
    api: f64,
    claims: f64,
    extra: serde_json::Value,
}

fn failover_once(cfg: &Config, n: usize, k: usize) -> Result<FailoverRun, String> {
    quiet(cfg);
    let base = &cfg.base;
    let redis = Redis::start(cfg.redis_dir.as_ref().unwrap_or(&cfg.base))?;
    let mut masters = vec![master(cfg, base, Some(&redis), "m0", None, None)?];
    let seed = masters[0].state_dir();
    for i in 1..k {
        masters.push(master(
            cfg,
            base,
            Some(&redis),
            &format!("m{i}"),
            Some(&seed),
            None,
        )?);
    }
    for m in &masters {
        wait_until(
            "the masters join their cluster",
            Duration::from_secs(20),
            Duration::from_millis(20),
            || joined(m),
        )?;
    }
    let psk = masters[0].psk;
    let mut run = Run::start_failover(
        Spec {
            name: "cluster failover".into(),
            target: masters[0].server.addr,
            clients: n,
            threads: cfg.threads,
            window: cfg.window,
            ip_base: Some(0),
            factory: Arc::new(move |i| {
                boxed(EdgeClient::new(
                    &format!("fo-{i}"),
                    Some(psk),
                    false,
                    Work::Idle,
                ))
            }),
        },
        Failover {
            targets: masters.iter().map(|m| m.server.addr).collect(),
        },
    );
    run.open(Duration::from_secs(60))?;
    let storm = run.wait_ready(Duration::from_secs(300))?.as_secs_f64();
    // The cluster settles first: every agent claimed by m0 in Redis.
    let claims0 = Instant::now();
    wait_until(
        "m0 claims its agents in Redis",
        Duration::from_secs(600),
        Duration::from_millis(100),
        || Ok(redis.owners()?.get("m0").copied().unwrap_or(0) >= n as u64),
    )?;
    let join_claims = claims0.elapsed().as_secs_f64();
    run.go();
    let over0 = procs::listen_overflows();
    let mut dead = masters.remove(0);
    let killed_ns = now_ns();
    run.shared.lat_from.store(killed_ns, Ordering::Relaxed);
    let t0 = Instant::now();
    dead.server
        .child
        .kill()
        .map_err(|e| format!("SIGKILL the master: {e}"))?;
    let _ = dead.server.child.wait();
    let (mut sessions, mut api, mut claims) = (None, None, None);
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    let limit = Duration::from_secs(600);
    let mut per_master = BTreeMap::new();
    // Every poll: seconds since the kill, agents handshaken on survivors,
    // online in the survivors' API, owned by survivors in Redis: where
    // the time goes.
    let mut timeline: Vec<(f64, u64, u64, u64)> = Vec::new();
    while sessions.is_none() || api.is_none() || claims.is_none() {
        run.check()?;
        if sessions.is_none() && run.shared.on_backup.load(Ordering::Acquire) >= n {
            let at = run.shared.last_backup_ns.load(Ordering::Relaxed);
            sessions = Some(at.saturating_sub(killed_ns) as f64 / 1e9);
        }
        if last_poll.elapsed() >= Duration::from_millis(100) {
            last_poll = Instant::now();
            let el = t0.elapsed().as_secs_f64();
            let on = run.shared.on_backup.load(Ordering::Acquire) as u64;
            let mut online = 0;
            for m in &masters {
                let o = m.api("GET", "/api/status", None)?["agents"]["online"]
                    .as_u64()
                    .unwrap_or(0);
                per_master.insert(format!("{}", m.server.addr), o);
                online += o;
            }
            if api.is_none() && online >= n as u64 {
                api = Some(el);
            }
            let owned: u64 = redis
                .owners()?
                .iter()
                .filter(|(node, _)| node.as_str() != "m0")
                .map(|(_, c)| *c)
                .sum();
            if claims.is_none() && owned >= n as u64 {
                claims = Some(el);
            }
            timeline.push(((el * 1000.0).round() / 1000.0, on, online, owned));
        }
        if t0.elapsed() > limit {
            return Err(format!(
                "not all {n} agents back within {limit:?}: {} sessions on survivors, survivors' API {per_master:?}, Redis owners {:?}",
                run.shared.on_backup.load(Ordering::Relaxed),
                redis.owners().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let over = procs::listen_overflows() - over0;
    let moves = run.shared.moves.load(Ordering::Relaxed);
    let out = run.stop();
    let mut lat = out.lat;
    lat.sort_unstable();
    let sessions = sessions.unwrap_or(f64::NAN);
    let (api, claims) = (api.unwrap_or(f64::NAN), claims.unwrap_or(f64::NAN));
    Ok(FailoverRun {
        sessions,
        api,
        claims,
        extra: json!({
            "masters": k,
            "per_agent_p10_s": pct(&lat, 10.0) as f64 / 1e9,
            "per_agent_p25_s": pct(&lat, 25.0) as f64 / 1e9,
            "per_agent_p50_s": pct(&lat, 50.0) as f64 / 1e9,
            "per_agent_p75_s": pct(&lat, 75.0) as f64 / 1e9,
            "per_agent_p99_s": pct(&lat, 99.0) as f64 / 1e9,
            "per_agent_max_s": lat.last().copied().unwrap_or(0) as f64 / 1e9,
            "moves": moves,
            "listen_overflows": over,
            "join_storm_s": storm,
            "join_claims_s": join_claims,
            "online_per_survivor": per_master,
            "timeline_s_sessions_api_owned": timeline,
        }),
    })
}
