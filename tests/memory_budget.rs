//! The master's memory under floods from peers that never authenticate: a
//! real master process, real sockets on loopback, a real sealed agent
//! beside the flood. Figures (RSS, budget gauges) are printed; only
//! generous bounds are asserted, never timings.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use edge_gw::proto::frame::{Compress, Encode, encode};
use edge_gw::proto::{HEADER_LEN, Header, MsgType, Uuid, Version};
use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// A master with `--legacy-v1` and a config file holding `settings`
/// (plus a per-IP rate high enough for a flood from one address).
fn master(dir: &TempDir, settings: &str) -> Master {
    let cfg = dir.path().join("master.toml");
    std::fs::write(&cfg, format!("handshakes_per_ip = 100000\n{settings}")).unwrap();
    Master::start(dir, &["--legacy-v1", "--config", cfg.to_str().unwrap()])
}

/// The master process's resident memory, from `/proc`.
fn rss(m: &Master) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", m.proc.child.id())).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn budget(m: &Master) -> Value {
    m.get("/api/status")["memory_budget"].clone()
}

fn held(m: &Master, kind: &str) -> u64 {
    budget(m)["held_bytes"][kind].as_u64().unwrap()
}

fn legacy(t: MsgType, uuid: &str, body: &[u8]) -> Vec<u8> {
    let e = Encode {
        version: Version::V1,
        msg_type: t,
        uuid: Uuid::from_text(uuid).unwrap(),
        compress: Compress::Never,
        v1_cipher_flag: false,
        max_frame: 1 << 20,
    };
    encode(&e, body, None).unwrap()
}

/// A legacy report frame of `body_len` bytes, announced in full.
fn big_report(uuid: &str, body_len: usize) -> Vec<u8> {
    legacy(MsgType::Report, uuid, &vec![b'r'; body_len])
}

#[test]
fn partial_frames_from_unauthenticated_peers_stay_within_the_budget() {
    let dir = TempDir::new("mem-partial");
    // Half of 16 MiB for unauthenticated peers: room for a handful of the
    // 1 MiB partial frames below, not for 120 of them.
    let m = master(&dir, "memory_budget = 16777216\n");
    let _bystander = agent(&dir, "bystander", &m, &[]);
    m.wait_reports("bystander", 1, T);
    let rss0 = rss(&m);

    // 60 sealed-looking Hellos announcing a 1 MiB frame: refused on the
    // header, before anything is reserved.
    let mut flood = Vec::new();
    for i in 0..60 {
        let h = Header {
            version: Version::V2,
            msg_type: MsgType::Hello,
            cipher: true,
            compress: false,
            length: (MIB - 16) as u32,
            uuid: Uuid::from_text(&format!("flood-v2-{i}")).unwrap(),
        };
        let mut s = TcpStream::connect(m.addr()).unwrap();
        let _ = s.write_all(&h.encode());
        let _ = s.write_all(&[0u8; 4000]);
        flood.push(s);
    }
    // 120 legacy clients: a key request, then all but the last byte of a
    // report of nearly max_frame. Each is a partial frame the master must
    // hold until the last byte, or refuse.
    for i in 0..120 {
        let uuid = format!("flood-v1-{i}");
        let mut s = TcpStream::connect(m.addr()).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&legacy(MsgType::Hello, &uuid, b""));
        let report = big_report(&uuid, (MIB as usize) - 1024);
        // A refused connection is closed while this is written: fine.
        let _ = s.write_all(&report[..report.len() - 1]);
        flood.push(s);
    }
    let status = wait_for(T, "the flood to be refused", || {
        let st = m.get("/api/status");
        let b = &st["memory_budget"];
        let refused = b["refusals"]["unauthenticated_connection"]
            .as_u64()
            .unwrap_or(0);
        let too_long = st["counters"]["frame_errors"]["too_long"]
            .as_u64()
            .unwrap_or(0);
        (refused >= 100 && too_long >= 60).then_some(st)
    });
    let b = &status["memory_budget"];
    let partial = b["held_bytes"]["partial_frames"].as_u64().unwrap();
    let unauth = b["unauthenticated_bytes"].as_u64().unwrap();
    let rss1 = rss(&m);
    eprintln!(
        "partial-frame flood (60 v2 + 120 v1 of ~1 MiB): RSS {} -> {} MiB; \
         budget {b}",
        rss0 / MIB,
        rss1 / MIB
    );
    // Held within the unauthenticated half, give or take one frame per
    // worker thread charged before its refusal.
    assert!(unauth <= 8 * MIB + 2 * MIB, "{b}");
    assert!(partial <= 16 * MIB, "{b}");
    // Generous: the flood itself would be 120 MiB of partial frames.
    assert!(rss1 < rss0 + 64 * MIB, "RSS {rss0} -> {rss1}");
    let metrics = m.metrics();
    assert!(
        metrics.contains("edge_gw_memory_budget_limit_bytes 16777216"),
        "{metrics}"
    );
    assert!(metrics.contains("edge_gw_memory_budget_bytes{kind=\"partial_frames\"}"));
    assert!(
        metrics.contains(
            "edge_gw_memory_budget_refusals_total{refused=\"unauthenticated_connection\"}"
        )
    );

    // The sealed agent kept reporting through the flood, and still does.
    let before = m.agent("bystander").unwrap()["counters"]["reports"]
        .as_u64()
        .unwrap();
    let a = m.wait_reports("bystander", before + 2, T);
    assert_eq!(a["sealed"], true);

    // The flood gone, nothing stays charged.
    drop(flood);
    wait_for(T, "the flood's charge to be given back", || {
        (held(&m, "partial_frames") == 0 && budget(&m)["unauthenticated_bytes"] == 0).then_some(())
    });
    eprintln!("after the flood left: RSS {} MiB", rss(&m) / MIB);
}

#[test]
fn legacy_uuid_sprawl_is_bounded_and_forgotten_after_retention() {
    let dir = TempDir::new("mem-sprawl");
    let m = master(
        &dir,
        "memory_budget = 67108864\nlegacy_retention = 2\nmax_health_body = 65536\n",
    );
    let rss0 = rss(&m);
    // 120 legacy clients under fresh uuids, each sending one ~1 MiB
    // report and leaving.
    let n = 120u64;
    for i in 0..n {
        let uuid = format!("sprawl-{i}");
        let mut s = TcpStream::connect(m.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&legacy(MsgType::Hello, &uuid, b"")).unwrap();
        s.write_all(&big_report(&uuid, (MIB as usize) - 1024))
            .unwrap();
        // The whole key reply (unread bytes would make the close a reset,
        // which can discard the report before the master reads it).
        let mut head = [0u8; HEADER_LEN];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len - HEADER_LEN];
        s.read_exact(&mut body).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let st = wait_for(T, "every report to be counted", || {
        let st = m.get("/api/status");
        (st["counters"]["reports"].as_u64() >= Some(n)).then_some(st)
    });
    let bodies = st["memory_budget"]["held_bytes"]["health_bodies"]
        .as_u64()
        .unwrap();
    let known = st["agents"]["known"].as_u64().unwrap();
    let rss1 = rss(&m);
    eprintln!(
        "legacy sprawl ({n} uuids x ~1 MiB): RSS {} -> {} MiB, {known} agents known, \
         {bodies} body bytes kept",
        rss0 / MIB,
        rss1 / MIB
    );
    // Each kept body is cut to 64 KiB (the reports were 1 MiB).
    assert!(bodies <= known * (65 << 10), "{bodies} for {known}");
    // Generous: keeping every report whole was 120 MiB (and RSS kept it).
    assert!(rss1 < rss0 + 64 * MIB, "RSS {rss0} -> {rss1}");
    if let Some(a) = m.agent(&format!("sprawl-{}", n - 1)) {
        let body = a["health"]["legacy_body"].as_str().unwrap_or("");
        assert!(body.len() <= 65536, "{}", body.len());
    }

    // Offline, unheard for the retention time: forgotten, charge returned.
    let st = wait_for(T, "the legacy entries to be forgotten", || {
        let st = m.get("/api/status");
        (st["agents"]["known"] == 0 && st["legacy_forgotten"].as_u64() >= Some(n)).then_some(st)
    });
    assert_eq!(st["memory_budget"]["held_bytes"]["health_bodies"], 0);
    let metrics = m.metrics();
    assert!(
        metrics.contains(&format!("edge_gw_legacy_agents_forgotten_total {n}")),
        "{metrics}"
    );
    eprintln!("after the retention time: RSS {} MiB", rss(&m) / MIB);
}
