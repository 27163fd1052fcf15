//! The master's CPU per sealed join, in process, std only.
//!
//! A sealed join on the master is: a `MasterSession` for the accepted
//! connection, the agent's Noise message 1 (Hello) in, the Welcome
//! (message 2) out, the agent's first sealed frame in (key confirmation),
//! the `Joined` event out, and the registry's `conn_opened` + `joined`.
//! This bench runs N such joins against real `AgentSession`s in memory,
//! each agent with its own uuid and device key in a keyring of N keys,
//! and times only the master's share: agent work (making the Hello,
//! reading the Welcome) happens between the timed steps and is not
//! counted. It then times the bare Noise responder (`proto::crypto`) step
//! by step, so the session's overhead over the handshake shows.
//!
//! The figure is the best of several rounds (the least disturbed by other
//! work on the machine) and the median, in µs per join. The load tool's
//! `storm` scenario measures the same join over real sockets, with the
//! master's shell (accept, epoll, threads) included.
//!
//! ```text
//! cargo bench --profile release-fast --bench join              # N = 2,000, 7 rounds
//! EDGE_GW_BENCH_JOINS=200 EDGE_GW_BENCH_ROUNDS=2 cargo bench --bench join   # smoke
//! ```

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_gw::keys::Keyring;
use edge_gw::master::conn_handle::ConnHandle;
use edge_gw::master::registry::Registry;
use edge_gw::os::OsEntropy;
use edge_gw::proto::Uuid;
use edge_gw::proto::crypto::{Ephemeral, Handshake};
use edge_gw::session::agent::{AgentConfig, AgentSession};
use edge_gw::session::dedup::RecentIds;
use edge_gw::session::master::{MasterConfig, MasterEvent, MasterSession};
use edge_gw::session::outbox::OutboxLimits;

/// Parses a positive count from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(v) if v > 0 => v,
            _ => {
                eprintln!("{name} must be a positive whole number, not {s:?}");
                std::process::exit(2);
            }
        },
        Err(_) => default,
    }
}

fn uuid_text(i: usize) -> String {
    format!("bench-agent-{i:08}")
}

/// A distinct device key per agent (the bytes do not matter, distinctness
/// does: every handshake derives its own keys).
fn psk(i: usize) -> [u8; 32] {
    let mut k = [0x5au8; 32];
    k[..8].copy_from_slice(&(i as u64).to_le_bytes());
    k
}

fn keyring(n: usize) -> Keyring {
    let mut text = String::with_capacity(n * 100);
    for i in 0..n {
        let hex: String = psk(i).iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!("{} {hex}\n", uuid_text(i)));
    }
    match Keyring::parse(&text) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("bench keyring: {e}");
            std::process::exit(1);
        }
    }
}

/// A phase's wall time. (Thread CPU time from /proc advances in
/// scheduler ticks on some kernels, too coarse for these steps: the best
/// of several rounds stands in for "undisturbed" instead.)
#[derive(Default, Clone, Copy)]
struct Cost {
    wall: Duration,
}

impl Cost {
    /// Runs `f` and measures it.
    fn of<T>(f: impl FnOnce() -> T) -> (T, Cost) {
        let t = Instant::now();
        let out = f();
        (out, Cost { wall: t.elapsed() })
    }
}

/// One round of `n` sealed joins, each master step run for all `n`
/// connections in one batch (so agent work never sits inside a timed
/// span); the sessions stay alive until the end of the round, as
/// connections on a master do. Returns the cost of each step: Hello in
/// and Welcome out, the confirming frame in, the registry.
fn join_round(n: usize, keys: &Keyring, cfg: &Arc<MasterConfig>) -> [Cost; 3] {
    let now = edge_gw::os::now();
    let mut agents: Vec<AgentSession> = (0..n)
        .map(|i| {
            let agent_cfg = AgentConfig {
                uuid: Uuid::from_text(&uuid_text(i)).unwrap(),
                group: "bench".into(),
                psk: Some(psk(i)),
                ..AgentConfig::default()
            };
            AgentSession::new(agent_cfg, RecentIds::new(16), now, &mut OsEntropy)
        })
        .collect();
    let hellos: Vec<Vec<u8>> = agents
        .iter_mut()
        .map(|a| a.poll_transmit().unwrap())
        .collect();

    let ((mut masters, welcomes), hello_cost) = Cost::of(|| {
        let mut masters = Vec::with_capacity(n);
        let mut welcomes = Vec::with_capacity(n);
        for hello in &hellos {
            let mut m = MasterSession::new(cfg.clone(), now);
            m.handle_input(hello, now, keys, &mut OsEntropy);
            welcomes.push(m.poll_transmit());
            masters.push(m);
        }
        (masters, welcomes)
    });

    let confirms: Vec<Vec<u8>> = agents
        .iter_mut()
        .zip(welcomes)
        .map(|(a, welcome)| {
            a.handle_input(&welcome.expect("the master sent no Welcome"), now);
            let mut confirm = Vec::new();
            while let Some(b) = a.poll_transmit() {
                confirm.extend_from_slice(&b);
            }
            assert!(!confirm.is_empty(), "the agent sent nothing after Welcome");
            confirm
        })
        .collect();

    let (peers, confirm_cost) = Cost::of(|| {
        let mut peers = Vec::with_capacity(n);
        for (m, confirm) in masters.iter_mut().zip(&confirms) {
            m.handle_input(confirm, now, keys, &mut OsEntropy);
            let mut peer = None;
            while let Some(e) = m.poll_event() {
                if let MasterEvent::Joined(p) = e {
                    peer = Some(p);
                }
            }
            while let Some(b) = m.poll_transmit() {
                black_box(b);
            }
            black_box(m.take_traffic());
            peers.push(peer);
        }
        peers
    });

    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut registry = Registry::new(OutboxLimits::default(), now.mono);
    let ((), registry_cost) = Cost::of(|| {
        for peer in &peers {
            let peer = peer.as_ref().expect("a join did not complete");
            let id = registry.next_conn_id();
            registry.conn_opened(ConnHandle::new(id));
            let refused = registry.joined(id, peer, addr, now.mono, now.unix_ms);
            assert!(refused.is_none());
        }
    });
    black_box((&masters, &registry));
    [hello_cost, confirm_cost, registry_cost]
}

/// The bare Noise responder, step by step, each step batched over `n`
/// handshakes: setup, read message 1, write message 2, split.
fn noise_round(n: usize) -> [Cost; 4] {
    let uuid = Uuid::from_text(&uuid_text(0)).unwrap();
    let key = psk(0);
    let ephemeral = || {
        let mut e = [0u8; 32];
        edge_gw::session::Entropy::fill(&mut OsEntropy, &mut e).unwrap();
        Ephemeral(e)
    };
    let m1: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let mut i = Handshake::initiator(&key, &uuid, ephemeral()).unwrap();
            i.write(b"hello").unwrap()
        })
        .collect();
    let es: Vec<Ephemeral> = (0..n).map(|_| ephemeral()).collect();
    let (mut rs, setup) = Cost::of(|| {
        es.iter()
            .map(|e| Handshake::responder(&key, &uuid, *e).unwrap())
            .collect::<Vec<_>>()
    });
    let ((), read) = Cost::of(|| {
        for (r, m) in rs.iter_mut().zip(&m1) {
            black_box(r.read(m).unwrap());
        }
    });
    let ((), write) = Cost::of(|| {
        for r in rs.iter_mut() {
            black_box(r.write(b"welcome").unwrap());
        }
    });
    let ((), split) = Cost::of(|| {
        for r in rs {
            black_box(r.finish().unwrap());
        }
    });
    [setup, read, write, split]
}

fn us_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

/// Best and median of `xs` (sorted in place).
fn best_median(xs: &mut [f64]) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[0], xs[xs.len() / 2])
}

/// Prints one row per step and a last row for their sum (`names` has one
/// more entry than each round has steps): best and median over rounds,
/// µs per join.
fn print_rows(names: &[&str], rounds: &[Vec<Cost>], n: usize) {
    let Some((total_name, step_names)) = names.split_last() else {
        return;
    };
    let row = |name: &str, pick: &dyn Fn(&[Cost]) -> Duration| {
        let mut v: Vec<f64> = rounds.iter().map(|r| us_per(pick(r), n)).collect();
        let (best, median) = best_median(&mut v);
        println!("{name:<44} {best:>9.1} {median:>9.1}");
    };
    for (k, name) in step_names.iter().enumerate() {
        row(name, &|r| r[k].wall);
    }
    row(total_name, &|r| r.iter().map(|c| c.wall).sum());
}

fn main() {
    let n = env_count("EDGE_GW_BENCH_JOINS", 2_000);
    let rounds = env_count("EDGE_GW_BENCH_ROUNDS", 7);
    let keys = keyring(n);
    let cfg = Arc::new(MasterConfig::default());
    println!("edge-gw sealed join, master side: N = {n} joins per round, {rounds} rounds");
    println!(
        "size_of::<MasterSession>() = {} B",
        std::mem::size_of::<MasterSession>()
    );

    // Warm-up: first-touch page faults and lazy tables out of the figures.
    join_round(n.min(200), &keys, &cfg);
    let joins: Vec<Vec<Cost>> = (0..rounds)
        .map(|_| join_round(n, &keys, &cfg).to_vec())
        .collect();
    println!("{:<44} {:>9} {:>9}", "step (µs per join)", "best", "median");
    print_rows(
        &[
            "session: new + Hello in + Welcome out",
            "session: confirming frame in + Joined",
            "registry: conn_opened + joined",
            "master's share of a sealed join",
        ],
        &joins,
        n,
    );
    let noise: Vec<Vec<Cost>> = (0..rounds).map(|_| noise_round(n).to_vec()).collect();
    print_rows(
        &[
            "noise: responder setup (Builder)",
            "noise: read message 1 (psk, e)",
            "noise: write message 2 (e, ee)",
            "noise: split into transport",
            "noise: responder in all",
        ],
        &noise,
        n,
    );
}
