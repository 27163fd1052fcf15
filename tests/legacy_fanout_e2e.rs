//! A legacy report whose escaped fan-out exceeds the frame limit, against
//! a real master: dropped with a reason (counted per subscriber, one
//! warning per report), and the subscribers keep getting later reports.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use edge_gw::proto::{Frame, FrameDecoder, MsgType, Version};
use support::*;

const T: Duration = Duration::from_secs(20);

fn legacy(t: MsgType, body: &[u8]) -> Vec<u8> {
    plain_frame(Version::V1, t, "0123456789abcdef0123456789abcdefL", body)
}

fn read_frame(tcp: &mut TcpStream, d: &mut FrameDecoder) -> Frame {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = d.next_frame().unwrap() {
            return f;
        }
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole frame");
        d.feed(&buf[..n]).unwrap();
    }
}

/// A legacy push subscriber, registered once its heartbeat is answered.
fn subscriber(m: &Master) -> (TcpStream, FrameDecoder) {
    let mut s = TcpStream::connect(m.addr()).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(&legacy(MsgType::Subscribe, br#"{"code":"demo"}"#))
        .unwrap();
    s.write_all(&legacy(MsgType::Heartbeat, b"")).unwrap();
    let mut d = FrameDecoder::new(4 << 20);
    assert_eq!(
        read_frame(&mut s, &mut d).header.msg_type,
        MsgType::HeartbeatAck
    );
    (s, d)
}

#[test]
fn an_oversized_legacy_fanout_is_a_counted_logged_drop() {
    let dir = TempDir::new("legacy-fanout");
    let m = Master::start(&dir, &["--legacy-v1"]);
    let mut subs = [subscriber(&m), subscriber(&m)];
    // ~600 kB of escaped quotes: the report fits a 1 MiB frame, its
    // fan-out (each `\"` escaped again to `\\\"`) does not.
    let mut big = br#"{"blob":""#.to_vec();
    big.extend(br#"\""#.repeat(300_000));
    big.extend(br#""}"#);
    let mut rep = TcpStream::connect(m.addr()).unwrap();
    // A first frame is capped at 8 KiB until the peer is known (the memory
    // budget's rule; the PHP master dropped frames over ~8 KB anyway):
    // the reporter says hello with a heartbeat first.
    rep.write_all(&legacy(MsgType::Heartbeat, b"")).unwrap();
    rep.write_all(&legacy(MsgType::Report, &big)).unwrap();
    rep.write_all(&legacy(MsgType::Report, br#"{"small":1}"#))
        .unwrap();
    // Each subscriber gets the small report next: the big one was dropped,
    // the connections were not.
    for (s, d) in &mut subs {
        let f = read_frame(s, d);
        assert_eq!(f.header.msg_type, MsgType::Push);
        assert!(
            String::from_utf8_lossy(&f.body).contains(r#"{\"small\":1}"#),
            "{:?}",
            String::from_utf8_lossy(&f.body[..f.body.len().min(200)])
        );
    }
    let st = m.get("/api/status");
    assert_eq!(st["counters"]["fanout_dropped_too_large"], 2, "{st}");
    assert_eq!(st["counters"]["send_failures"], 0, "{st}");
    assert!(
        m.metrics()
            .contains("edge_gw_fanout_dropped_too_large_total 2")
    );
    let log = m.proc.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("legacy report was not forwarded"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning per report, not per subscriber:\n{log}"
    );
}
