//! Who may claim which uuid, against a real master process: an
//! unauthenticated session (legacy v1, plaintext v2) never takes over a
//! sealed agent or a uuid with its own key, and no peer joins under an
//! empty or unprintable uuid. Raw bytes from the test play the attacker.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use edge_gw::proto::v2::{self, CloseCode, Message, Role};
use edge_gw::proto::{FrameDecoder, MsgType, Uuid, Version};
use support::*;

const T: Duration = Duration::from_secs(20);

fn hello() -> Vec<u8> {
    Message::Hello(v2::Hello {
        minor: 0,
        role: Role::Agent,
        group: String::new(),
        software: "attacker".into(),
        interval_ms: 1000,
        inbox: None,
    })
    .to_body()
}

/// Connects, writes `bytes`, and returns everything the master sends
/// until it closes the connection (bounded by a read timeout).
fn exchange(m: &Master, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(m.addr()).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    tcp.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A close with our bytes still unread is a reset: also an end.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("waiting for the master to close: {e}"),
        }
    }
}

/// The one Close frame in `bytes`.
fn only_close(bytes: &[u8]) -> v2::Close {
    let mut d = FrameDecoder::new(1 << 20);
    d.feed(bytes).unwrap();
    let f = d.next_frame().unwrap().expect("a whole frame");
    assert_eq!(f.header.msg_type, MsgType::Close);
    assert_eq!(d.next_frame().unwrap(), None, "nothing after the Close");
    v2::decode(MsgType::Close, &f.body).unwrap()
}

#[test]
fn a_v1_peer_cannot_take_over_a_sealed_agent() {
    let dir = TempDir::new("ident-takeover");
    let m = Master::start(&dir, &["--legacy-v1", "--heartbeat", "1"]);
    let out = dir.path().join("pushed");
    let hook = format!("cat > {}", out.display());
    // A fleet-key agent: its uuid has no key of its own, only its sealed
    // session makes it authenticated.
    let _a = agent(&dir, "victim", &m, &["--on-push", &hook]);
    let before = m.wait_reports("victim", 2, T);
    let uuid = Uuid::from_text("victim").unwrap();

    // The attack: a v1 key request, then a report under its uuid.
    let mut attack = frame_for(Version::V1, MsgType::Hello, uuid, b"");
    attack.extend(frame_for(
        Version::V1,
        MsgType::Report,
        uuid,
        br#"{"evil":1}"#,
    ));
    let got = exchange(&m, &attack);
    assert!(
        got.is_empty(),
        "a refused v1 peer is answered nothing: {got:?}"
    );

    // The agent is untouched and keeps reporting after the v1 socket closed.
    let n = before["counters"]["reports"].as_u64().unwrap();
    let a = m.wait_reports("victim", n + 2, T);
    assert_eq!(a["wire"], "v2");
    assert_eq!(a["sealed"], true);
    assert_eq!(a["online"], true);
    assert!(a["health"].get("legacy_body").is_none(), "{a}");
    assert_eq!(a["counters"]["sessions"], before["counters"]["sessions"]);
    // A push to it is delivered.
    let id = m.push("victim", "still mine");
    wait_for(T, "the push to be delivered", || {
        let st = m.get(&format!("/api/pushes/{id}"));
        (st["targets"][0]["state"] == "delivered").then_some(())
    });
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "still mine");

    // Counted and logged at WARN.
    let st = m.get("/api/status");
    assert_eq!(st["counters"]["identity_refused"]["v1"], 1, "{st}");
    assert!(
        m.metrics()
            .contains("edge_gw_identity_refused_total{wire=\"v1\"} 1")
    );
    let log = m.proc.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("uuid victim is online sealed")),
        "{log}"
    );
    assert!(
        !log.lines().any(|l| l.contains("agent victim joined (v1")),
        "a refused peer is not logged as joined: {log}"
    );
}

#[test]
fn a_uuid_with_its_own_key_and_an_empty_uuid_are_refused_at_the_first_frame() {
    let dir = TempDir::new("ident-devkey");
    let m = Master::start(&dir, &["--legacy-v1", "--allow-plaintext"]);
    m.enrol(&dir, "owned");
    let owned = Uuid::from_text("owned").unwrap();

    // v1: hung up on before any key reply.
    let got = exchange(&m, &frame_for(Version::V1, MsgType::Hello, owned, b""));
    assert!(got.is_empty(), "{got:?}");
    // Plaintext v2: a Close that says why.
    let close = only_close(&exchange(
        &m,
        &frame_for(Version::V2, MsgType::Hello, owned, &hello()),
    ));
    assert_eq!(close.code, CloseCode::AuthFailed);
    assert!(
        close.reason.contains("uuid owned has its own key"),
        "{close:?}"
    );

    // An all-NUL uuid: v1 hung up on, v2 told why; nobody joins as "".
    let got = exchange(&m, &frame_for(Version::V1, MsgType::Hello, Uuid::ZERO, b""));
    assert!(got.is_empty(), "{got:?}");
    let close = only_close(&exchange(
        &m,
        &frame_for(Version::V2, MsgType::Hello, Uuid::ZERO, &hello()),
    ));
    assert_eq!(close.code, CloseCode::Protocol);
    assert!(close.reason.contains("uuid is empty"), "{close:?}");

    let st = m.get("/api/status");
    assert_eq!(st["counters"]["identity_refused"]["v1"], 1, "{st}");
    assert_eq!(st["counters"]["identity_refused"]["plaintext"], 1, "{st}");
    assert_eq!(st["agents"]["known"], 0, "{st}");
    let log = m.proc.log_text();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("uuid owned has its own key"))
            .count(),
        2,
        "{log}"
    );
}
