//! Load generator: N simulated agents over loopback against a real
//! `edge-gw --master`, Mosquitto and a bare epoll echo server, with the
//! real protocol and real handshakes. See BENCHMARKS.md for the results
//! and the full-run command.
//!
//! ```text
//! cargo bench --bench load                       # every scenario, defaults
//! cargo bench --bench load -- heartbeat storm    # some scenarios
//! cargo bench --bench load -- --smoke            # seconds, small N (CI)
//! cargo bench --bench load -- --help
//! ```
//!
//! Layout: [`engine`] runs client connections on epoll threads; [`edge`],
//! [`mqtt`] and [`echo`] are the clients (and the echo server); [`procs`]
//! starts the servers and reads /proc; [`scenarios`] measures; [`report`]
//! and [`svg`] print, save and plot.

#[path = "load/cluster.rs"]
mod cluster;
#[path = "load/echo.rs"]
mod echo;
#[path = "load/edge.rs"]
mod edge;
#[path = "load/engine.rs"]
mod engine;
#[path = "load/mqtt.rs"]
mod mqtt;
#[path = "load/nat.rs"]
mod nat;
#[path = "load/net.rs"]
mod net;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/redis.rs"]
mod redis;
#[path = "load/report.rs"]
mod report;
#[path = "common/sample.rs"]
mod sample;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/svg.rs"]
mod svg;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use report::Results;
use scenarios::{Config, Sys};

const ALL: [&str; 15] = [
    "heartbeat",
    "report",
    "fanout",
    "push-sub",
    "push-api",
    "storm",
    "idle",
    "agent",
    "legacy",
    "shutdown",
    "nat",
    "cluster_heartbeat",
    "cluster_push",
    "cluster_failover",
    "sweep",
];

const HELP: &str = "\
cargo bench --bench load -- [OPTIONS] [SCENARIO...]

Scenarios (default: all; sweep only with --sweep):
  heartbeat  closed-loop heartbeat round trips/s (edge-gw plain, sealed; Mosquitto PINGREQ; bare echo)
  report     report ingest/s (edge-gw plain, zip, sealed, sealed+zip; Mosquitto PUBLISH QoS 1)
  fanout     one report to N subscribers, deliveries/s (Mosquitto: QoS 0)
  push-sub   report -> subscriber latency at a fixed rate (Mosquitto: QoS 0)
  push-api   HTTP API push -> agent latency at a fixed rate (state on disk and tmpfs)
  storm      time until N clients are connected and handshaken
  idle       server RSS per idle connection, at N/10, N/4, N/2, N
  agent      RSS and CPU of one real `edge-gw --agent` reporting every second
  legacy     wire v1 heartbeats, reports, push-subscribe fan-out
  shutdown   SIGTERM to exit of a master holding --agents sealed agents (promise: 2 s)
  nat        devices behind one address reconnecting at once: the per-IP limit
             (handshakes_per_ip) modelled with the agent's backoff, then a real
             connect storm from one source address
  cluster_heartbeat
             heartbeat round trips/s and CPU per round trip of one sealed master,
             standalone and with --cluster (its own redis-server: AOF,
             appendfsync always); goal: a gap under 5 %
  cluster_push
             API push -> agent latency at --cluster-rate: one standalone master,
             a cluster's master A to its own agents, master A to agents on B
  cluster_failover
             --failover-agents agents on master A of --cluster-masters masters;
             SIGKILL A; time until all are back on the survivors (sessions,
             survivors' API, owners in Redis); the simulated agents fail over
             as edge-gw --agent A,B,C does (src/agent/masters.rs)
  sweep      heartbeat round trips/s at each N of --sweep (throughput vs N plot)

Options:
  --agents N          simulated agents in heartbeat/report/fanout/legacy (1000)
  --storm-agents N    clients in the connect storm (10000)
  --idle-agents N     idle connections for the memory scenario (10000)
  --sweep N,N,...     N values for the sweep
  --depth D           heartbeats in flight per connection (1)
  --batch B           reports per heartbeat fence (8)
  --report-depth D    fenced groups in flight per connection (2)
  --fan-window W      reports in flight in the fan-out (8)
  --rounds R          interleaved rounds (3)
  --secs S            measured seconds per measurement (2)
  --warmup S          seconds before measuring (0.5)
  --rate R            offered pushes or reports per second for latency (10000)
  --publishers P      publishing connections sharing --rate (10)
  --push-agents N     agents receiving API pushes (--agents)
  --push-conns K      keep-alive API connections pushing, one request in flight each (16)
  --threads T         load generator threads (2)
  --window W          connections handshaking at once (64; the listen queues hold 100-128)
  --master-threads T  the master's --threads (its default)
  --echo-threads T    echo server threads (2)
  --master-bin PATH   edge-gw binary for the master (the one cargo built)
  --agent-bin PATH    edge-gw binary for the agent scenario (same)
  --mosquitto PATH    Mosquitto binary, or 'none' (found on PATH or /usr/sbin)
  --legacy HOST:PORT  run the legacy scenario against this loopback server
  --nat-devices N     sealed clients from one address in the real nat run (2000)
  --nat-capacity H    handshakes/s the nat model's master serves (5900: the
                      storm's 10,000 sealed agents in 1.70 s, BENCHMARKS.md)
  --per-ip R          the master's handshakes_per_ip in the nat run (its default)
  --agent-secs S      measured seconds of the agent scenario (30)
  --cluster-rate R    offered pushes per second in cluster_push (1000)
  --failover-agents N agents of the killed master in cluster_failover (10000)
  --cluster-masters K masters in the cluster_failover cluster (3)
  --redis-dir DIR     where the cluster scenarios' redis-server keeps its AOF
                      (--tmp); e.g. /dev/shm to take the disk's fsync out
  --tmp DIR           where temporary state directories go (system temp)
  --tmpfs DIR         tmpfs for the push-api variant, or 'none' (/dev/shm)
  --json PATH         results file (TARGET/load-bench/results.json)
  --svg-dir DIR       plots (TARGET/load-bench)
  --systems LIST      only these systems: plain, zip, sealed, sealed+zip,
                      mosquitto, 'echo limit', v1, 'v1 zip' (all)
  --quiet C           before each measurement wait until other processes use
                      at most C cores (0.3) ...
  --quiet-wait S      ... for at most S seconds (10; 0: do not wait)
  --hold S            keep the idle scenario's connections S seconds longer
  --smoke             small and short: N=50, 1 round, fractions of a second
";

struct Cli {
    cfg: Config,
    only: Vec<String>,
    json: PathBuf,
    svg_dir: PathBuf,
    smoke: bool,
}

fn out_dir() -> PathBuf {
    // TARGET/release/edge-gw -> TARGET/load-bench
    Path::new(env!("CARGO_BIN_EXE_edge-gw"))
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("load-bench"))
        .unwrap_or_else(|| PathBuf::from("load-bench"))
}

fn find_mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

fn parse() -> Result<Option<Cli>, String> {
    use lexopt::Arg::{Long, Value};
    let mut p = lexopt::Parser::from_env();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_edge-gw"));
    let mut c = Config {
        agents: 1000,
        storm_agents: 10_000,
        idle_agents: 10_000,
        sweep: Vec::new(),
        depth: 1,
        batch: 8,
        report_depth: 2,
        fan_window: 8,
        rounds: 3,
        secs: 2.0,
        warmup: 0.5,
        rate: 10_000,
        publishers: 10,
        push_agents: 0,
        push_conns: 16,
        threads: 2,
        window: 64,
        master_threads: None,
        echo_threads: 2,
        master_bin: bin.clone(),
        agent_bin: bin,
        mosquitto: find_mosquitto(),
        legacy: None,
        nat_devices: 2000,
        nat_capacity: 5900.0,
        per_ip: None,
        agent_secs: 30.0,
        base: std::env::temp_dir(),
        tmpfs: Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()),
        systems: None,
        quiet: 0.3,
        quiet_wait: 10.0,
        hold: 0.0,
        cluster_rate: 1000,
        failover_agents: 10_000,
        cluster_masters: 3,
        redis_dir: None,
    };
    let mut only = Vec::new();
    let mut json = None;
    let mut svg_dir = None;
    let mut smoke = false;
    let mut set = Vec::new();
    fn num<T: std::str::FromStr>(p: &mut lexopt::Parser, name: &str) -> Result<T, String> {
        let v = p.value().map_err(|e| e.to_string())?;
        let s = v.to_string_lossy().to_string();
        s.parse()
            .map_err(|_| format!("{name}: '{s}' is not a valid number"))
    }
    fn text(p: &mut lexopt::Parser) -> Result<String, String> {
        Ok(p.value()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .to_string())
    }
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        if let Long(name) = &arg {
            set.push(name.to_string());
        }
        match arg {
            Long("help") | lexopt::Arg::Short('h') => {
                print!("{HELP}");
                return Ok(None);
            }
            Long("bench") => {}
            Long("serve-echo") => {
                let port: u16 = num(&mut p, "--serve-echo")?;
                let threads: usize = text(&mut p)?.parse().unwrap_or(2);
                echo::serve(port, threads);
            }
            Long("agents") => c.agents = num(&mut p, "--agents")?,
            Long("storm-agents") => c.storm_agents = num(&mut p, "--storm-agents")?,
            Long("idle-agents") => c.idle_agents = num(&mut p, "--idle-agents")?,
            Long("sweep") => {
                c.sweep = text(&mut p)?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .map_err(|_| format!("--sweep: bad N '{s}'"))
                    })
                    .collect::<Result<_, _>>()?
            }
            Long("depth") => c.depth = num(&mut p, "--depth")?,
            Long("batch") => c.batch = num(&mut p, "--batch")?,
            Long("report-depth") => c.report_depth = num(&mut p, "--report-depth")?,
            Long("fan-window") => c.fan_window = num(&mut p, "--fan-window")?,
            Long("rounds") => c.rounds = num(&mut p, "--rounds")?,
            Long("secs") => c.secs = num(&mut p, "--secs")?,
            Long("warmup") => c.warmup = num(&mut p, "--warmup")?,
            Long("rate") => c.rate = num(&mut p, "--rate")?,
            Long("publishers") => c.publishers = num(&mut p, "--publishers")?,
            Long("push-agents") => c.push_agents = num(&mut p, "--push-agents")?,
            Long("push-conns") => c.push_conns = num(&mut p, "--push-conns")?,
            Long("threads") => c.threads = num(&mut p, "--threads")?,
            Long("window") => c.window = num(&mut p, "--window")?,
            Long("master-threads") => c.master_threads = Some(num(&mut p, "--master-threads")?),
            Long("echo-threads") => c.echo_threads = num(&mut p, "--echo-threads")?,
            Long("master-bin") => c.master_bin = text(&mut p)?.into(),
            Long("agent-bin") => c.agent_bin = text(&mut p)?.into(),
            Long("mosquitto") => {
                let v = text(&mut p)?;
                c.mosquitto = (v != "none").then(|| v.into());
            }
            Long("legacy") => c.legacy = Some(text(&mut p)?),
            Long("nat-devices") => c.nat_devices = num(&mut p, "--nat-devices")?,
            Long("nat-capacity") => c.nat_capacity = num(&mut p, "--nat-capacity")?,
            Long("per-ip") => c.per_ip = Some(num(&mut p, "--per-ip")?),
            Long("agent-secs") => c.agent_secs = num(&mut p, "--agent-secs")?,
            Long("tmp") => c.base = text(&mut p)?.into(),
            Long("tmpfs") => {
                let v = text(&mut p)?;
                c.tmpfs = (v != "none").then(|| v.into());
            }
            Long("json") => json = Some(PathBuf::from(text(&mut p)?)),
            Long("svg-dir") => svg_dir = Some(PathBuf::from(text(&mut p)?)),
            Long("smoke") => smoke = true,
            Long("hold") => c.hold = num(&mut p, "--hold")?,
            Long("cluster-rate") => c.cluster_rate = num(&mut p, "--cluster-rate")?,
            Long("failover-agents") => c.failover_agents = num(&mut p, "--failover-agents")?,
            Long("cluster-masters") => c.cluster_masters = num(&mut p, "--cluster-masters")?,
            Long("redis-dir") => c.redis_dir = Some(text(&mut p)?.into()),
            Long("quiet") => c.quiet = num(&mut p, "--quiet")?,
            Long("quiet-wait") => c.quiet_wait = num(&mut p, "--quiet-wait")?,
            Long("systems") => {
                c.systems = Some(
                    text(&mut p)?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect(),
                )
            }
            Value(v) => {
                let s = v.to_string_lossy().to_string();
                if !ALL.contains(&s.as_str()) {
                    return Err(format!("unknown scenario '{s}' (see --help)"));
                }
                only.push(s);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if smoke {
        // Small and short; options given explicitly still win.
        let given = |n: &str| set.iter().any(|s| s == n);
        let d = |name: &str, f: &mut dyn FnMut()| {
            if !given(name) {
                f();
            }
        };
        d("agents", &mut || c.agents = 50);
        d("storm-agents", &mut || c.storm_agents = 50);
        d("nat-devices", &mut || c.nat_devices = 50);
        d("idle-agents", &mut || c.idle_agents = 50);
        d("rounds", &mut || c.rounds = 1);
        d("secs", &mut || c.secs = 0.3);
        d("warmup", &mut || c.warmup = 0.15);
        d("rate", &mut || c.rate = 1000);
        d("publishers", &mut || c.publishers = 2);
        d("push-conns", &mut || c.push_conns = 2);
        d("agent-secs", &mut || c.agent_secs = 1.0);
        d("quiet-wait", &mut || c.quiet_wait = 0.0);
        d("cluster-rate", &mut || c.cluster_rate = 200);
        d("failover-agents", &mut || c.failover_agents = 50);
    }
    if c.push_agents == 0 {
        c.push_agents = c.agents;
    }
    if let Some(l) = &c.legacy {
        net::loopback_target(l)?;
    }
    if !c.master_bin.is_file() {
        return Err(format!(
            "no master binary at {} (build it, or give --master-bin)",
            c.master_bin.display()
        ));
    }
    if only.is_empty() {
        only = ALL
            .iter()
            .filter(|s| **s != "sweep" || !c.sweep.is_empty())
            .map(|s| s.to_string())
            .collect();
    }
    Ok(Some(Cli {
        cfg: c,
        only,
        json: json.unwrap_or_else(|| out_dir().join("results.json")),
        svg_dir: svg_dir.unwrap_or_else(out_dir),
        smoke,
    }))
}

fn config_json(cli: &Cli) -> serde_json::Value {
    let c = &cli.cfg;
    serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "scenarios": cli.only,
        "agents": c.agents, "storm_agents": c.storm_agents, "idle_agents": c.idle_agents,
        "sweep": c.sweep, "depth": c.depth, "batch": c.batch, "report_depth": c.report_depth,
        "fan_window": c.fan_window, "rounds": c.rounds, "secs": c.secs, "warmup": c.warmup,
        "rate": c.rate, "publishers": c.publishers, "push_agents": c.push_agents,
        "push_conns": c.push_conns, "generator_threads": c.threads, "window": c.window,
        "master_threads": c.master_threads, "echo_threads": c.echo_threads,
        "master_bin": c.master_bin, "mosquitto": c.mosquitto,
        "mosquitto_version": c.mosquitto.as_ref().and_then(|m| {
            let out = std::process::Command::new(m).arg("-h").output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.lines().next().map(str::to_string)
        }),
        "legacy_target": c.legacy, "agent_secs": c.agent_secs,
        "nat_devices": c.nat_devices, "nat_capacity": c.nat_capacity, "per_ip": c.per_ip,
        "quiet_cores": c.quiet, "quiet_wait_s": c.quiet_wait,
        "cluster_rate": c.cluster_rate, "failover_agents": c.failover_agents,
        "cluster_masters": c.cluster_masters, "redis_dir": c.redis_dir,
        "redis_server": redis::find(),
    })
}

fn plots(res: &Results, dir: &Path) -> Result<Vec<PathBuf>, String> {
    use svg::{Axis, chart};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let mut save = |name: &str, text: String| -> Result<(), String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        written.push(p);
        Ok(())
    };
    let pick = |prefix: &str| -> Vec<(String, Vec<(f64, f64)>)> {
        res.series
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
            .collect()
    };
    let thr = pick("throughput: ");
    if !thr.is_empty() {
        save(
            "throughput-vs-n.svg",
            chart(
                "Heartbeat round trips/s vs connected agents",
                &Axis {
                    label: "agents (N)".into(),
                    log: true,
                },
                &Axis {
                    label: "round trips / s".into(),
                    log: false,
                },
                &thr,
            ),
        )?;
    }
    let mem = pick("memory: ");
    if !mem.is_empty() {
        save(
            "memory-vs-n.svg",
            chart(
                "Server RSS growth vs idle connections",
                &Axis {
                    label: "idle connections (N)".into(),
                    log: false,
                },
                &Axis {
                    label: "RSS increase (MiB)".into(),
                    log: false,
                },
                &mem,
            ),
        )?;
    }
    if !res.latency.is_empty() {
        // Percentile curves: x = percentile (as 1/(1-p) on a log axis),
        // y = latency; one point per 0.1% plus the tail.
        let mut series = Vec::new();
        for (name, v) in &res.latency {
            let mut v = v.clone();
            v.sort_unstable();
            let pts: Vec<(f64, f64)> = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99]
                .iter()
                .map(|&p| (1.0 / (1.0 - p / 100.0), report::pct(&v, p) as f64 / 1e3))
                .collect();
            series.push((name.clone(), pts));
        }
        save(
            "latency.svg",
            chart(
                "Push latency distribution (x: 2 = p50, 100 = p99, 1000 = p99.9)",
                &Axis {
                    label: "1 / (1 − percentile)".into(),
                    log: true,
                },
                &Axis {
                    label: "latency (µs)".into(),
                    log: true,
                },
                &series,
            ),
        )?;
    }
    Ok(written)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::from(2);
        }
    };
    let want = (cli
        .cfg
        .storm_agents
        .max(cli.cfg.idle_agents)
        .max(cli.cfg.failover_agents)
        .max(cli.cfg.agents) as u64)
        * 2
        + 4096;
    let nofile = net::raise_nofile(want.max(65_536));
    let t0 = Instant::now();
    let load_start = loadavg();
    let machine = report::machine();
    eprintln!("edge-gw load generator on {machine}");
    eprintln!(
        "open-file limit {nofile}; master {}; mosquitto {}",
        cli.cfg.master_bin.display(),
        cli.cfg
            .mosquitto
            .as_ref()
            .map_or("not found: its comparisons are skipped".into(), |p| p
                .display()
                .to_string())
    );
    let mut res = Results::default();
    if cli.cfg.mosquitto.is_none() {
        res.notes
            .push("mosquitto not found: comparisons with it skipped".into());
    }
    for s in &cli.only {
        eprintln!("== {s}");
        let c = &cli.cfg;
        match s.as_str() {
            "heartbeat" => scenarios::heartbeat(c, &mut res),
            "sweep" => scenarios::sweep(c, &mut res),
            "report" => scenarios::report(c, &mut res),
            "fanout" => scenarios::fanout(c, &mut res),
            "push-sub" => scenarios::push_sub(c, &mut res),
            "push-api" => scenarios::push_api(c, &mut res),
            "storm" => scenarios::storm(c, &mut res),
            "idle" => scenarios::idle(c, &mut res),
            "agent" => scenarios::agent(c, &mut res),
            "legacy" => scenarios::legacy(c, &mut res),
            "shutdown" => scenarios::shutdown(c, &mut res),
            "nat" => nat::nat(c, &mut res),
            "cluster_heartbeat" => cluster::cluster_heartbeat(c, &mut res),
            "cluster_push" => cluster::cluster_push(c, &mut res),
            "cluster_failover" => cluster::cluster_failover(c, &mut res),
            _ => unreachable!("checked in parse"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("\n{}", res.table());
    println!(
        "srv/gen/irq/oth: CPU cores used while measuring by the server / this load generator / \
         interrupts and softirq (mostly loopback TCP itself) / other processes"
    );
    for n in &res.notes {
        println!("note: {n}");
    }
    if !res.targets.is_empty() {
        println!("\nTargets:\n{}", res.targets_table());
    }
    for f in &res.failures {
        println!("FAILED: {f}");
    }
    let mut json = res.to_json(machine, config_json(&cli));
    json["duration_s"] = serde_json::json!(secs);
    json["loadavg_start"] = serde_json::json!(load_start.trim());
    json["loadavg_end"] = serde_json::json!(loadavg().trim());
    json["systems"] = serde_json::json!([
        Sys::Plain.name(),
        Sys::Zip.name(),
        Sys::Sealed.name(),
        Sys::SealedZip.name(),
        Sys::Mosquitto.name(),
        Sys::Echo.name(),
    ]);
    let mut failed = res.failures.len();
    if let Some(d) = cli.json.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match serde_json::to_string_pretty(&json)
        .map_err(|e| e.to_string())
        .and_then(|t| std::fs::write(&cli.json, t + "\n").map_err(|e| e.to_string()))
    {
        Ok(()) => println!("results: {}", cli.json.display()),
        Err(e) => {
            println!("FAILED: cannot write {}: {e}", cli.json.display());
            failed += 1;
        }
    }
    match plots(&res, &cli.svg_dir) {
        Ok(files) => {
            for f in files {
                println!("plot: {}", f.display());
            }
        }
        Err(e) => {
            println!("FAILED: plots: {e}");
            failed += 1;
        }
    }
    println!(
        "took {secs:.0} s{}",
        if cli.smoke { " (smoke)" } else { "" }
    );
    println!("{} passed, {failed} failed", res.passed);
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
