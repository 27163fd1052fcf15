//! Legacy v1 compatibility (issue 14), on raw bytes against a real
//! `edge-gw --master --legacy-v1`: what an old PHP-era client sees must be
//! what the original server (swoole-monitor-master) sent it. Each test
//! names the observed behaviour of the original it checks
//! (`shared/LEGACY-PROTOCOL.md`).
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::legacy::{self, CLIENT_UUID, HEAD, raw, zlib};
use support::*;

const T: Duration = Duration::from_secs(20);

/// `{"errCode":0,"msg":"success","data":{"heartbeat":` — a heartbeat
/// reply up to its timestamp.
const HEARTBEAT_OK: &str = r#"{"errCode":0,"msg":"success","data":{"heartbeat":"#;
/// `请先请求密钥` as PHP's `json_encode` writes it.
const NEED_KEY: &str = r#"\u8bf7\u5148\u8bf7\u6c42\u5bc6\u94a5"#;

/// A subscriber registered with `cipher`/`compress` flags, once the
/// master's registry has it: a connection's frame counts reach the
/// registry together with its registration, so the status API tells when
/// a report would reach it.
fn subscriber(m: &Master, cipher: u8, compress: u8) -> TcpStream {
    let before = subscribes(m);
    let mut sub = legacy::connect(&m.addr());
    sub.write_all(&raw(
        5,
        cipher,
        compress,
        br#"{"code":"demo","status":"1"}"#,
    ))
    .unwrap();
    sub.write_all(&raw(3, 0, 0, b"")).unwrap();
    let hb = legacy::read(&mut sub);
    assert_eq!(hb.flags(), [1, 4, 0, 0]);
    wait_for(T, "the subscription in the registry", || {
        (subscribes(m) > before).then_some(())
    });
    sub
}

/// Push registrations (type 5 frames) the registry has counted.
fn subscribes(m: &Master) -> u64 {
    status(m)["counters"]["frames_in"]["subscribe"]
        .as_u64()
        .unwrap_or(0)
}

/// Prints the master's log if the test fails, so a failure says what the
/// master saw.
struct LogOnPanic<'a>(&'a Master);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("master log:\n{}", self.0.proc.log_text());
        }
    }
}

fn status(m: &Master) -> serde_json::Value {
    m.get("/api/status")
}

/// Item 1: compress=1 means "compress what you send me"; the original never
/// inflated a request, so a plain or empty body with the flag is normal.
#[test]
fn compress_flag_on_plain_bodies_is_a_request_for_compressed_replies() {
    let dir = TempDir::new("legacy-compress");
    let m = Master::start(&dir, &["--legacy-v1"]);
    let _log = LogOnPanic(&m);

    // Key request and heartbeat, compress=1, empty body: zlib replies.
    let mut c = legacy::connect(&m.addr());
    c.write_all(&raw(1, 0, 1, b"")).unwrap();
    let key = legacy::read(&mut c);
    assert_eq!(key.flags(), [1, 2, 0, 1]);
    assert_eq!(&key.body[..2], &[0x78, 0xda], "level 9, as PHP wrote it");
    assert!(
        key.text()
            .starts_with(r#"{"errCode":0,"msg":"success","data":{"cipher_key":""#)
    );
    c.write_all(&raw(3, 0, 1, b"")).unwrap();
    let hb = legacy::read(&mut c);
    assert_eq!(hb.flags(), [1, 4, 0, 1]);
    assert_eq!(&hb.head[12..HEAD], CLIENT_UUID);
    assert!(hb.text().starts_with(HEARTBEAT_OK), "{}", hb.text());

    // Push-subscribe, compress=1, plain JSON body: accepted, and its
    // fan-out frames are zlib.
    let mut sub = subscriber(&m, 0, 1);

    // A report, compress=1, plain body: forwarded as is.
    let mut rep = legacy::connect(&m.addr());
    let report = br#"{"host":"r1","cpu":"3%"}"#;
    rep.write_all(&raw(7, 0, 1, report)).unwrap();
    let fan = legacy::read(&mut sub);
    assert_eq!(fan.flags(), [1, 6, 0, 1]);
    assert_eq!(&fan.body[..2], &[0x78, 0xda]);
    assert_eq!(
        fan.text(),
        r#"{"errCode":0,"msg":"success","data":"{\"host\":\"r1\",\"cpu\":\"3%\"}"}"#
    );

    // A report that really is zlib is still inflated (better than the
    // original, which forwarded the deflated bytes).
    rep.write_all(&raw(7, 0, 1, &zlib(br#"{"z":1}"#))).unwrap();
    let fan = legacy::read(&mut sub);
    assert_eq!(
        fan.text(),
        r#"{"errCode":0,"msg":"success","data":"{\"z\":1}"}"#
    );

    // Nobody was disconnected, and each case was counted.
    for tcp in [&mut c, &mut sub, &mut rep] {
        assert!(legacy::open_and_quiet(tcp));
    }
    // Counters reach the registry within 100 ms of the frame.
    wait_for(T, "the compress-flag counters", || {
        let st = status(&m);
        let flagged = &st["counters"]["legacy_compress_flag"];
        (flagged == &serde_json::json!({"empty": 2, "inflated": 1, "not_zlib": 2})).then_some(())
    });
    let metrics = m.metrics();
    assert!(
        metrics.contains("edge_gw_legacy_compress_flag_total{body=\"not_zlib\"} 2"),
        "{metrics}"
    );
}

/// Item 2: reply_cipher=1 is answered per reply type as the original did
/// (no encryption is ever applied).
#[test]
fn cipher_flag_is_answered_per_reply_type_like_the_original() {
    let dir = TempDir::new("legacy-cipher");
    let m = Master::start(&dir, &["--legacy-v1"]);
    let _log = LogOnPanic(&m);

    // Heartbeat, cipher=1, no key asked: success, flag 1, plaintext body.
    let mut c = legacy::connect(&m.addr());
    c.write_all(&raw(3, 1, 0, b"")).unwrap();
    let hb = legacy::read(&mut c);
    assert_eq!(hb.flags(), [1, 4, 1, 0]);
    assert!(hb.text().starts_with(HEARTBEAT_OK), "{}", hb.text());

    // Key request, cipher=1: flag 0, the normal body.
    c.write_all(&raw(1, 1, 0, b"")).unwrap();
    let key = legacy::read(&mut c);
    assert_eq!(key.flags(), [1, 2, 0, 0]);
    assert!(key.text().contains("cipher_key"));

    // Fan-out to cipher=1 subscribers, with and without a key: flag 1,
    // errCode -1 "请先请求密钥", the report as `data`.
    let mut plain = subscriber(&m, 0, 0);
    let mut no_key = subscriber(&m, 1, 0);
    let mut with_key = subscriber(&m, 1, 0);
    with_key.write_all(&raw(1, 0, 0, b"")).unwrap();
    assert_eq!(legacy::read(&mut with_key).flags(), [1, 2, 0, 0]);
    let mut zipped = subscriber(&m, 1, 1);

    let mut rep = legacy::connect(&m.addr());
    rep.write_all(&raw(7, 0, 0, br#"{"a":"/"}"#)).unwrap();
    let want = format!(r#"{{"errCode":-1,"msg":"{NEED_KEY}","data":"{{\"a\":\"\/\"}}"}}"#);
    for sub in [&mut no_key, &mut with_key] {
        let fan = legacy::read(sub);
        assert_eq!(fan.flags(), [1, 6, 1, 0]);
        assert_eq!(fan.text(), want);
    }
    let fan = legacy::read(&mut zipped);
    assert_eq!(fan.flags(), [1, 6, 1, 1]);
    assert_eq!(fan.text(), want);
    let fan = legacy::read(&mut plain);
    assert_eq!(fan.flags(), [1, 6, 0, 0]);
    assert_eq!(
        fan.text(),
        r#"{"errCode":0,"msg":"success","data":"{\"a\":\"\/\"}"}"#
    );
}

/// Item 3: a bad frame from a v1 client is closed silently, as the
/// original did: nothing a v1 client cannot parse is written.
#[test]
fn bad_frames_from_v1_clients_are_closed_without_a_v2_frame() {
    let dir = TempDir::new("legacy-bad");
    let m = Master::start(&dir, &["--legacy-v1"]);
    let _log = LogOnPanic(&m);
    let heartbeat = raw(3, 0, 0, b"");
    let fix_crc = |mut f: Vec<u8>| {
        let crc = crc32fast::hash(&f[..8]);
        f[8..12].copy_from_slice(&crc.to_le_bytes());
        f
    };
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut f = heartbeat.clone();
    f[8] ^= 0xff;
    cases.push(("bad_crc", f));
    let mut f = heartbeat.clone();
    f[4..8].copy_from_slice(&20u32.to_le_bytes());
    cases.push(("too_short", fix_crc(f)));
    cases.push(("unknown_type", raw(8, 0, 0, b"")));
    cases.push(("bad_flag", raw(3, 2, 0, b"")));
    cases.push(("bad_flag", raw(3, 0, 2, b"")));
    let mut f = heartbeat.clone();
    f[0] = 9;
    cases.push(("unknown_version", fix_crc(f)));

    for (kind, bad) in &cases {
        // As the first frame, and after a good one (a legacy connection).
        // A first frame with an unknown version is not from a v1 client:
        // that one is told in a v2 Close (tests/master_e2e.rs).
        for after_good in [false, true] {
            if *kind == "unknown_version" && !after_good {
                continue;
            }
            let mut c = legacy::connect(&m.addr());
            if after_good {
                c.write_all(&heartbeat).unwrap();
                assert_eq!(legacy::read(&mut c).flags(), [1, 4, 0, 0]);
            }
            c.write_all(bad).unwrap();
            let rest = legacy::read_to_close(&mut c);
            assert!(
                rest.is_empty(),
                "{kind} (after a good frame: {after_good}): wrote {rest:02x?}"
            );
        }
    }
    // A v2 frame on a legacy connection: the version the client did not use.
    let mut c = legacy::connect(&m.addr());
    c.write_all(&heartbeat).unwrap();
    legacy::read(&mut c);
    let mut v2 = heartbeat.clone();
    v2[0] = 2;
    c.write_all(&fix_crc(v2)).unwrap();
    assert!(legacy::read_to_close(&mut c).is_empty());

    // Logged and counted as before.
    let st = status(&m);
    let errors = &st["counters"]["frame_errors"];
    for (kind, n) in [
        ("bad_crc", 2),
        ("too_short", 2),
        ("unknown_type", 2),
        ("bad_flag", 4),
        ("unknown_version", 1),
    ] {
        assert_eq!(errors[kind], n, "{kind}: {st}");
    }
    assert!(m.proc.log_text().contains("bad frame: "));
}

/// Item 4: v1 connections get the original's idle time, not the v2
/// heartbeat × miss limit (here 1 s × 1).
#[test]
fn legacy_connections_have_their_own_idle_time() {
    let dir = TempDir::new("legacy-idle");
    let cfg = dir.path().join("master.toml");
    std::fs::write(&cfg, "legacy_idle_timeout = 12\nhandshake_timeout = 1\n").unwrap();
    let m = Master::start(
        &dir,
        &[
            "--legacy-v1",
            "--heartbeat",
            "1",
            "--miss-limit",
            "1",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let _log = LogOnPanic(&m);
    // A client that connects and waits before its first frame, and one
    // that goes quiet after a heartbeat: both outlive the v2 timeouts.
    let mut late = legacy::connect(&m.addr());
    let mut quiet = legacy::connect(&m.addr());
    quiet.write_all(&raw(3, 0, 0, b"")).unwrap();
    legacy::read(&mut quiet);
    std::thread::sleep(Duration::from_secs(3));
    for c in [&mut late, &mut quiet] {
        c.write_all(&raw(3, 0, 0, b"")).unwrap();
        let hb = legacy::read(c);
        assert_eq!(hb.flags(), [1, 4, 0, 0]);
    }
    // Silence past the legacy idle time: closed without a frame.
    assert!(legacy::read_to_close(&mut quiet).is_empty());
    let log = m.proc.log_text();
    assert!(log.contains("idle for 12 s"), "{log}");
    let st = status(&m);
    assert_eq!(st["settings"]["legacy_idle_timeout_s"], 12, "{st}");
}

/// Item 5: old deployments sit behind NAT; a burst of 400 connections from
/// one address is served, not refused.
#[test]
fn burst_of_legacy_clients_from_one_address_is_served() {
    let dir = TempDir::new("legacy-burst");
    let m = Master::start(&dir, &["--legacy-v1"]);
    let _log = LogOnPanic(&m);
    let mut conns: Vec<TcpStream> = (0..400).map(|_| legacy::connect(&m.addr())).collect();
    for c in &mut conns {
        c.write_all(&raw(3, 0, 0, b"")).unwrap();
    }
    for c in &mut conns {
        assert_eq!(legacy::read(c).flags(), [1, 4, 0, 0]);
    }
    let st = status(&m);
    assert_eq!(
        st["counters"]["connections_refused"]["rate_limited"].as_u64(),
        None,
        "{st}"
    );
}

/// Item 5: when the per-IP limit does refuse, the log says so once per
/// burst, not once per connection.
#[test]
fn rate_limit_refusals_are_logged_once_per_burst() {
    let dir = TempDir::new("legacy-limit");
    let cfg = dir.path().join("master.toml");
    std::fs::write(&cfg, "handshakes_per_ip = 5\n").unwrap();
    let m = Master::start(&dir, &["--legacy-v1", "--config", cfg.to_str().unwrap()]);
    let _log = LogOnPanic(&m);
    let conns: Vec<TcpStream> = (0..100).map(|_| legacy::connect(&m.addr())).collect();
    let st = wait_for(T, "100 connections accepted or refused", || {
        let st = status(&m);
        let c = &st["counters"];
        let seen = c["connections_accepted"].as_u64().unwrap_or(0)
            + c["connections_refused"]["rate_limited"]
                .as_u64()
                .unwrap_or(0);
        (seen >= 100).then_some(st)
    });
    let refused = st["counters"]["connections_refused"]["rate_limited"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused >= 50, "{st}");
    drop(conns);
    let log = m.proc.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("refusing new connections from 127.0.0.1"))
        .count();
    assert_eq!(lines, 1, "{log}");
}

/// Item 6: a large report to a subscriber that asked for compression is
/// compressed (JSON-string escaping would otherwise make it 4× larger).
#[test]
fn large_report_to_a_compressing_subscriber_is_compressed() {
    let dir = TempDir::new("legacy-large");
    let m = Master::start(&dir, &["--legacy-v1"]);
    let _log = LogOnPanic(&m);
    let mut zipped = subscriber(&m, 0, 1);
    let mut plain = subscriber(&m, 0, 0);
    // 40 KB that escapes to 160 KB: every byte a control character.
    let mut report = b"{\"log\":\"".to_vec();
    report.extend(std::iter::repeat_n(b"\x01\x02\x03\x04", 10_000).flatten());
    report.extend_from_slice(b"\"}");
    let mut rep = legacy::connect(&m.addr());
    rep.write_all(&raw(7, 0, 0, &report)).unwrap();
    let big = legacy::read(&mut plain);
    assert_eq!(big.flags(), [1, 6, 0, 0]);
    assert!(big.body.len() > 160_000, "{}", big.body.len());
    let small = legacy::read(&mut zipped);
    assert_eq!(small.flags(), [1, 6, 0, 1]);
    assert!(small.body.len() < 10_000, "{}", small.body.len());
    assert_eq!(small.text().into_bytes(), big.body);
}
