//! `/metrics` as a scraper sees it: build info and start time, every close
//! reason from the start, custom metrics from `edge-gw report`, numbers
//! without f32 noise, health series dropped when an agent goes offline,
//! HEAD answered and other methods refused. Real master and agent on
//! loopback; every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{BIN, Master, TempDir, agent, wait_for};

const T: Duration = Duration::from_secs(30);

/// One raw HTTP exchange; the whole response as text.
fn exchange(m: &Master, method: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "{method} /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The sample lines of `name` (without HELP/TYPE).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .collect()
}

#[test]
fn a_fresh_master_exports_build_info_start_time_and_every_close_reason() {
    let dir = TempDir::new("metricsfresh");
    let m = Master::start(&dir, &[]);
    let text = m.metrics();
    let head = text.split("\r\n\r\n").next().unwrap();
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let build = samples(&text, "edge_gw_build_info");
    assert_eq!(
        build,
        [format!(
            "edge_gw_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )]
    );
    let start = samples(&text, "process_start_time_seconds");
    let secs: f64 = start[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 1.7e9, "{start:?}");
    let closes = samples(&text, "edge_gw_closes_total");
    for reason in [
        "normal",
        "shutdown",
        "evicted",
        "auth_failed",
        "handshake_timeout",
        "other",
    ] {
        assert!(
            closes.contains(&format!("edge_gw_closes_total{{reason=\"{reason}\"}} 0").as_str()),
            "{reason} missing: {closes:?}"
        );
    }
    assert!(!samples(&text, "edge_gw_frame_errors_total").is_empty());
}

#[test]
fn head_has_the_headers_and_no_body_and_other_methods_get_405() {
    let dir = TempDir::new("metricshead");
    let m = Master::start(&dir, &[]);
    let head = exchange(&m, "HEAD");
    let (headers, body) = head.split_once("\r\n\r\n").unwrap();
    assert!(headers.starts_with("HTTP/1.1 200 "), "{headers}");
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 0);
    assert_eq!(body, "", "HEAD sent a body");
    for method in ["POST", "DELETE", "PUT"] {
        let r = exchange(&m, method);
        assert!(r.starts_with("HTTP/1.1 405 "), "{method}: {r}");
    }
}

#[test]
fn agent_series_are_clean_and_health_goes_with_the_agent() {
    let dir = TempDir::new("metricsagent");
    let m = Master::start(&dir, &["--heartbeat", "1"]);
    let mut a = agent(&dir, "mx-1", &m, &[]);
    m.wait_reports("mx-1", 1, T);
    let state = dir.path().join("agent-mx-1");
    let st = std::process::Command::new(BIN)
        .args(["report", "clients=7", "wan=up", "temp_c=41.5"])
        .arg("--state-dir")
        .arg(&state)
        .status()
        .unwrap();
    assert!(st.success());
    let text = wait_for(T, "the custom metrics in /metrics", || {
        let t = m.metrics();
        t.contains("edge_gw_agent_custom{uuid=\"mx-1\",group=\"\",key=\"clients\"} 7")
            .then_some(t)
    });
    let custom = samples(&text, "edge_gw_agent_custom");
    assert!(
        custom.iter().any(|l| l.ends_with("key=\"temp_c\"} 41.5")),
        "{custom:?}"
    );
    assert!(
        !custom.iter().any(|l| l.contains("wan")),
        "text values are not samples"
    );
    for name in [
        "edge_gw_agent_cpu_ratio",
        "edge_gw_agent_memory_used_ratio",
        "edge_gw_agent_load1",
    ] {
        let lines = samples(&text, name);
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        let value = lines[0].rsplit(' ').next().unwrap();
        let decimals = value.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 5, "{name} has float noise: {value}");
    }

    a.signal(15);
    assert_eq!(a.wait_exit(Duration::from_secs(5)), Some(0));
    let text = wait_for(T, "the agent offline in /metrics", || {
        let t = m.metrics();
        t.contains("edge_gw_agent_up{uuid=\"mx-1\",group=\"\"} 0")
            .then_some(t)
    });
    for gone in [
        "edge_gw_agent_cpu_ratio",
        "edge_gw_agent_memory_used_ratio",
        "edge_gw_agent_load1",
        "edge_gw_agent_network_receive_bytes_per_second",
        "edge_gw_agent_custom",
    ] {
        assert!(
            samples(&text, gone).is_empty(),
            "{gone} kept for an offline agent"
        );
    }
    assert_eq!(samples(&text, "edge_gw_agent_reports_total").len(), 1);
    assert_eq!(samples(&text, "edge_gw_agent_push_queue_messages").len(), 1);
}
