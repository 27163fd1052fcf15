//! What the dashboard reads about one agent, from a real master and a real
//! agent on loopback: the long history (`history_long`, one-minute
//! averages), the report cadence measured on the master's clock
//! (`interval_ms`, `last_report_ago_ms`, the basis of "stale") and the
//! fullest mount (`disk_used_max_pct`). Every wait is bounded.

mod support;

use std::time::Duration;

use support::{Master, TempDir, agent, wait_for};

const T: Duration = Duration::from_secs(30);

#[test]
fn agent_json_carries_long_history_cadence_and_disk() {
    let dir = TempDir::new("history");
    let m = Master::start(&dir, &[]);
    let _a = agent(&dir, "hist-1", &m, &[]);
    // Reports every second: after four the cadence is measured.
    m.wait_reports("hist-1", 4, T);
    // The summary, as the list (and join events) carry it.
    let list = m.get("/api/agents");
    let summary = list
        .as_array()
        .and_then(|l| l.iter().find(|a| a["uuid"] == "hist-1"))
        .cloned()
        .unwrap_or_default();
    let interval = summary["interval_ms"].as_u64().unwrap_or(0);
    assert!(
        (500..=3000).contains(&interval),
        "interval_ms {interval} for an agent reporting every second: {summary}"
    );
    let ago = summary["last_report_ago_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(ago < 5000, "last_report_ago_ms {ago}");
    let disk = summary["disk_used_max_pct"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=100.0).contains(&disk), "disk_used_max_pct {disk}");
    // The summary stays small: no history in it.
    assert!(summary.get("history_long").is_none(), "{summary}");

    let detail = m.get("/api/agents/hist-1");
    assert_eq!(detail["history_long_bucket_ms"], 60_000);
    let long = detail["history_long"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        (1..=2).contains(&long.len()),
        "a few seconds of reports make one minute (two across a minute's end): {long:?}"
    );
    let short = detail["history"].as_array().cloned().unwrap_or_default();
    let newest = short.last().map(|p| p["unix_ms"].as_u64().unwrap_or(0));
    let bucket = long.last().map(|b| b["unix_ms"].as_u64().unwrap_or(0));
    // The minute in progress starts at the minute of the newest report.
    assert_eq!(newest.map(|t| t / 60_000 * 60_000), bucket, "{detail}");
    // Its CPU is the average of the points of that minute.
    let minute: Vec<f64> = short
        .iter()
        .filter(|p| p["unix_ms"].as_u64().map(|t| t / 60_000 * 60_000) == bucket)
        .filter_map(|p| p["cpu"].as_f64())
        .collect();
    let avg = minute.iter().sum::<f64>() / minute.len() as f64;
    let got = long.last().and_then(|b| b["cpu"].as_f64()).unwrap_or(-1.0);
    // Stored in half percents, the points rounded to a tenth.
    assert!((got - avg).abs() <= 0.3, "bucket cpu {got}, average {avg}");

    // Silence: no report, so last_report_ago_ms grows past the interval.
    drop(_a);
    wait_for(T, "last_report_ago_ms past three intervals", || {
        let a = m.agent("hist-1")?;
        let ago = a["last_report_ago_ms"].as_u64()?;
        (ago > 3 * interval).then_some(())
    });
}
