//! Scenario `nat`: many devices behind one address (a NAT'd site, a
//! carrier-grade NAT) reconnecting at once, and what the master's per-IP
//! rate limit (`handshakes_per_ip`, burst 4×) does to them.
//!
//! Two parts:
//! - a model, in simulated time, of N devices that lost the master at the
//!   same moment, each retrying with the agent's own backoff
//!   ([`Backoff`]: full jitter, 1 s doubling to 60 s) against the master's
//!   own limiter ([`RateLimiter`]), with handshakes served at
//!   `--nat-capacity` per second: how long until the whole site is back,
//!   for each candidate limit. No server runs; it is deterministic.
//! - a real run: `--nat-devices` sealed clients from *one* source address
//!   (127.0.0.1) against a real master with the limit as shipped (or
//!   `--per-ip R`): either all connect, and how fast, or how many the
//!   master refused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_gw::agent::backoff::Backoff;
use edge_gw::master::listener::{Admission, RateLimiter};
use serde_json::json;

use crate::edge::{EdgeClient, Work};
use crate::engine::{Factory, Run, Spec};
use crate::procs::{self, Master, MasterOpts};
use crate::report::{Results, Sample};
use crate::scenarios::Config;

/// Limits the model compares: the old default, the new one, and around.
const MODEL_RATES: [u32; 5] = [50, 200, 500, 1000, 2000];
/// Site sizes the model compares: a legacy deployment's burst, a large
/// site, a carrier-grade NAT.
const MODEL_DEVICES: [usize; 3] = [400, 2000, 10_000];

/// What the model found for one (limit, devices) pair.
struct Outcome {
    /// Seconds until the last device is connected.
    all: f64,
    /// Seconds until half, and 99 %, are.
    p50: f64,
    p99: f64,
    /// Connections refused on the way.
    refused: u64,
    /// Refusal bursts the master would log (one warning each).
    bursts: u64,
}

/// xorshift64*: deterministic randomness for the devices' jitter.
struct Rng(u64);

impl Rng {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

/// Simulates `n` devices behind one address reconnecting to a master that
/// admits `per_ip` per second (burst 4×) and handshakes `capacity` per
/// second.
fn model(n: usize, per_ip: u32, capacity: f64) -> Outcome {
    let ip = IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1));
    let t0 = Instant::now();
    let mut limiter = RateLimiter::new(per_ip);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (n as u64) ^ (u64::from(per_ip) << 32));
    let mut backoff: Vec<Backoff> = (0..n)
        .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(60)))
        .collect();
    // The agent's first retry after losing its session is already jittered.
    let mut heap: BinaryHeap<Reverse<(Duration, usize)>> = (0..n)
        .map(|i| Reverse((backoff[i].next_with(rng.next_u32()), i)))
        .collect();
    let per_handshake = Duration::from_secs_f64(1.0 / capacity);
    let mut cpu_free = Duration::ZERO;
    let mut done = Vec::with_capacity(n);
    let (mut refused, mut bursts) = (0u64, 0u64);
    while let Some(Reverse((at, i))) = heap.pop() {
        match limiter.admit(ip, t0 + at) {
            Admission::Allowed { .. } => {
                cpu_free = cpu_free.max(at) + per_handshake;
                done.push(cpu_free.as_secs_f64());
            }
            Admission::Refused { first } => {
                refused += 1;
                bursts += u64::from(first);
                heap.push(Reverse((at + backoff[i].next_with(rng.next_u32()), i)));
            }
        }
    }
    done.sort_by(f64::total_cmp);
    let at = |q: f64| done[((n as f64 * q) as usize).min(n - 1)];
    Outcome {
        all: done.last().copied().unwrap_or(0.0),
        p50: at(0.5),
        p99: at(0.99),
        refused,
        bursts,
    }
}

/// Runs both parts; see the module docs.
pub fn nat(cfg: &Config, res: &mut Results) {
    for &n in &MODEL_DEVICES {
        for &rate in &MODEL_RATES {
            let o = model(n, rate, cfg.nat_capacity);
            eprintln!(
                "  nat model        per_ip={rate:<5} N={n:<6}: all back in {:.1} s (p50 {:.2} s, p99 {:.1} s), {} refused, {} logged burst(s)",
                o.all, o.p50, o.p99, o.refused, o.bursts
            );
            res.add(Sample {
                scenario: "nat model",
                system: format!("per_ip={rate}"),
                n,
                round: 0,
                value: o.all,
                unit: "s",
                server_cores: f64::NAN,
                gen_cores: f64::NAN,
                other_cores: f64::NAN,
                extra: json!({
                    "p50_s": o.p50, "p99_s": o.p99, "refused": o.refused,
                    "bursts": o.bursts, "capacity_per_s": cfg.nat_capacity,
                }),
            });
        }
    }
    real(cfg, res);
}

/// The real run: sealed clients from one source address.
fn real(cfg: &Config, res: &mut Results) {
    let n = cfg.nat_devices;
    let label = cfg
        .per_ip
        .map_or_else(|| "per_ip=default".to_string(), |r| format!("per_ip={r}"));
    let r = (|| -> Result<(f64, f64), String> {
        let m = Master::start(&MasterOpts {
            bin: cfg.master_bin.clone(),
            base: cfg.base.clone(),
            compress: false,
            threads: cfg.master_threads,
            per_ip: cfg.per_ip,
            cluster: None,
            heartbeat: None,
        })?;
        let psk = Some(m.psk);
        let factory: Factory = Arc::new(move |i| {
            Box::new(EdgeClient::new(&format!("nat-{i}"), psk, false, Work::Idle))
        });
        let mut run = Run::start(Spec {
            name: format!("nat {label}"),
            target: m.server.addr,
            clients: n,
            threads: cfg.threads,
            window: cfg.window,
            // One source address for everyone: the point of the scenario.
            ip_base: None,
            factory,
        });
        let s0 = procs::cpu(m.server.pid());
        run.open(Duration::from_secs(60))?;
        let took = run.wait_ready(Duration::from_secs(120));
        let srv = procs::cpu(m.server.pid()).secs_since(&s0);
        let refused = m
            .api("GET", "/api/status", None)
            .ok()
            .and_then(|st| st["counters"]["connections_refused"]["rate_limited"].as_u64())
            .unwrap_or(0);
        run.stop();
        match took {
            Ok(t) => Ok((t.as_secs_f64(), srv)),
            Err(e) => Err(format!("{refused} refused by the per-IP limit ({e})")),
        }
    })();
    match r {
        Ok((took, srv)) => {
            eprintln!(
                "  nat real         {label} N={n}: all connected in {took:.3} s, server {srv:.2} CPU s"
            );
            res.add(Sample {
                scenario: "nat real",
                system: format!("edge-gw sealed, one IP, {label}"),
                n,
                round: 0,
                value: took,
                unit: "s",
                server_cores: srv / took,
                gen_cores: f64::NAN,
                other_cores: f64::NAN,
                extra: json!({ "server_cpu_s": srv }),
            });
        }
        Err(e) => {
            eprintln!("  nat real         {label} N={n}: {e}");
            res.fail(format!("nat real {label} N={n}: {e}"));
        }
    }
}
