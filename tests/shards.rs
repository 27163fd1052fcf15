//! The master's shards (`--threads`): 2,000 connections spread over four
//! shards are each served, reached by a push whichever shard holds them,
//! and each evicted once silent. Real master process, real sockets.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use edge_gw::proto::{MsgType, Uuid, Version};
use edge_gw::session::agent::{AgentConfig, AgentEvent, AgentSession};
use edge_gw::session::dedup::RecentIds;
use edge_gw::session::liveness::Keepalive;
use support::*;

const SHARDS: usize = 4;
const N: usize = 2000;

/// A fake agent: the library's session over a blocking socket.
struct Fake {
    tcp: TcpStream,
    session: AgentSession,
}

impl Fake {
    /// Joins as `name`: sealed with the fleet key when `psk` is given,
    /// plaintext otherwise. Then stays silent.
    fn join(addr: &str, name: &str, psk: Option<[u8; 32]>) -> Fake {
        let cfg = AgentConfig {
            uuid: Uuid::from_text(name).unwrap(),
            psk,
            keepalive: Keepalive::default(),
            ..AgentConfig::default()
        };
        let session = AgentSession::new(
            cfg,
            RecentIds::new(4),
            edge_gw::os::now(),
            &mut edge_gw::os::OsEntropy,
        );
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut f = Fake { tcp, session };
        while !f.session.is_open() {
            f.flush();
            assert!(f.read(), "{name}: the master closed during the join");
        }
        // Sealed: the key-confirming heartbeat.
        f.flush();
        f
    }

    fn flush(&mut self) {
        while let Some(b) = self.session.poll_transmit() {
            self.tcp.write_all(&b).unwrap();
        }
    }

    /// Reads once into the session; `false` at the end of the stream.
    fn read(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let n = self.tcp.read(&mut buf).unwrap();
        self.session.handle_input(&buf[..n], edge_gw::os::now());
        n > 0
    }

    /// Reads until a push arrives; its body.
    fn next_push(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(e) = self.session.poll_event() {
                if let AgentEvent::Push(p) = e {
                    return p.body;
                }
            }
            assert!(Instant::now() < deadline, "no push");
            assert!(self.read(), "closed before the push");
        }
    }
}

/// Raises this process's open-file limit to fit `n` more sockets.
fn room_for(n: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    let want = (n + 256) as u64;
    if l.current.is_some_and(|c| c < want) {
        l.current = Some(l.maximum.map_or(want, |m| m.min(want)));
        setrlimit(Resource::Nofile, l).unwrap();
    }
}

fn shard_connections(m: &Master) -> Vec<u64> {
    let text = m.metrics();
    (0..SHARDS)
        .map(|i| {
            let name = format!("edge_gw_shard_connections{{shard=\"{i}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&name))
                .unwrap_or_else(|| panic!("no {name} in /metrics"))
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn two_thousand_connections_over_four_shards_are_served_pushed_and_evicted() {
    room_for(N);
    let dir = TempDir::new("shards");
    let threads = SHARDS.to_string();
    // Evicted 10 s after the last frame: time for every join first.
    let m = Master::start(
        &dir,
        &[
            "--threads",
            &threads,
            "--allow-plaintext",
            "--heartbeat",
            "5",
            "--miss-limit",
            "2",
        ],
    );
    let psk = *edge_gw::keys::AgentKey::load(&m.fleet_key())
        .unwrap()
        .psk
        .as_bytes();
    // Most plaintext (cheap for this debug-built test), every 100th sealed.
    let mut fakes: Vec<Fake> = (0..N)
        .map(|i| Fake::join(&m.addr(), &format!("s-{i}"), (i % 100 == 99).then_some(psk)))
        .collect();
    // A sealed agent is registered once its key-confirming heartbeat is
    // read, which the fake sent last.
    wait_for(Duration::from_secs(10), "every agent online", || {
        (m.get("/api/status")["agents"]["online"] == N as u64).then_some(())
    });
    assert_eq!(m.get("/api/status")["connections"], N as u64);
    // Handed round robin: each shard holds a quarter.
    assert_eq!(shard_connections(&m), vec![(N / SHARDS) as u64; SHARDS]);

    // The last 8 joined (so the last to be evicted) sit on every shard
    // twice, one of them sealed: each gets its push.
    for (i, f) in fakes.iter_mut().enumerate().skip(N - 8) {
        let text = format!("to s-{i}");
        m.push(&format!("s-{i}"), &text);
        assert_eq!(f.next_push(), text.as_bytes(), "s-{i}");
    }

    // Silent from now on: every one is evicted, by its own shard.
    wait_for(Duration::from_secs(40), "every connection evicted", || {
        (m.get("/api/status")["connections"] == 0).then_some(())
    });
    let status = m.get("/api/status");
    assert_eq!(status["agents"]["online"], 0);
    assert_eq!(status["counters"]["closes"]["evicted"], N as u64);
    assert_eq!(shard_connections(&m), vec![0; SHARDS]);
    // Each was told why before its socket closed.
    for (i, f) in fakes.iter_mut().enumerate() {
        let mut rest = Vec::new();
        let _ = f.tcp.read_to_end(&mut rest);
        assert!(!rest.is_empty(), "s-{i}: no Close frame before the close");
    }
}

/// A legacy v1 frame from one fixed client id.
fn legacy(uuid: &str, t: MsgType, body: &[u8]) -> Vec<u8> {
    plain_frame(Version::V1, t, uuid, body)
}

/// A subscriber that stops reading: the master's writes to it back up in
/// the shard (the socket takes no more), and after `write_timeout` it is
/// closed as a slow consumer, while the reporter feeding it is served on.
#[test]
fn a_subscriber_that_stops_reading_is_closed_as_a_slow_consumer() {
    let dir = TempDir::new("slow-consumer");
    let cfg = dir.path().join("master.toml");
    std::fs::write(&cfg, "write_timeout = 1\n").unwrap();
    let m = Master::start(
        &dir,
        &[
            "--threads",
            "2",
            "--legacy-v1",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let sub_id = "0123456789abcdef0123456789abcdefS";
    let mut sub = TcpStream::connect(m.addr()).unwrap();
    // A small receive buffer: the backlog forms after a few reports.
    rustix::net::sockopt::set_socket_recv_buffer_size(&sub, 4096).unwrap();
    sub.write_all(&legacy(sub_id, MsgType::Subscribe, br#"{"code":"slow"}"#))
        .unwrap();
    sub.write_all(&legacy(sub_id, MsgType::Heartbeat, b""))
        .unwrap();
    // Registered once its heartbeat is answered (the first bytes back).
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = [0u8; 1];
    assert_eq!(sub.read(&mut first).unwrap(), 1, "heartbeat answered");
    // From here on it reads nothing. The reporter sends 4 KB reports
    // until the master gives up on the subscriber.
    let rep_id = "0123456789abcdef0123456789abcdefR";
    let mut rep = TcpStream::connect(m.addr()).unwrap();
    rep.write_all(&legacy(rep_id, MsgType::Heartbeat, b""))
        .unwrap();
    let body = format!(r#"{{"blob":"{}"}}"#, "x".repeat(4000));
    let report = legacy(rep_id, MsgType::Report, body.as_bytes());
    let t0 = Instant::now();
    let closed = wait_for(Duration::from_secs(30), "the slow consumer closed", || {
        for _ in 0..50 {
            rep.write_all(&report).unwrap();
        }
        let st = m.get("/api/status");
        let n = st["counters"]["closes"]["slow_consumer"]
            .as_u64()
            .unwrap_or(0);
        (n > 0).then_some(n)
    });
    assert_eq!(closed, 1);
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "closed before the write timeout"
    );
    // The reporter is still served: its heartbeat is answered.
    rep.write_all(&legacy(rep_id, MsgType::Heartbeat, b""))
        .unwrap();
    rep.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut d = edge_gw::proto::FrameDecoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        let n = rep.read(&mut buf).unwrap();
        assert!(n > 0, "the reporter was closed");
        d.feed(&buf[..n]).unwrap();
        if let Some(f) = d.next_frame().unwrap() {
            assert_eq!(f.header.msg_type, MsgType::HeartbeatAck);
            break;
        }
    }
    let log = m.proc.log_text();
    assert!(
        log.contains("slow consumer: a write stalled for 1 s"),
        "{log}"
    );
}
