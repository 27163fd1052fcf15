//! The JSON shapes of agents and health points, shared by the API answers
//! (`api`) and the live events (`events`).
//!
//! A leaf of its own so that the dashboard gets the same agent object from
//! `GET /api/agents` and from a `join` event, without the event stream
//! depending on the API handlers.

use serde_json::{Value, json};

use crate::master::registry::downsample::LONG_BUCKET_MS;
use crate::master::registry::{Agent, Latest, Point, Registry};
use crate::proto::v2;

/// A health point as JSON, rounded to what a chart can show (one decimal
/// for percentages, whole bytes per second) so that the API answers and the
/// event stream stay small.
pub fn point_json(p: &Point) -> Value {
    json!({
        "unix_ms": p.unix_ms,
        "cpu": round1(f64::from(p.cpu)),
        "mem": round1(f64::from(p.mem)),
        "load1": (f64::from(p.load1) * 100.0).round() / 100.0,
        "rx_bps": p.rx_bps.round(),
        "tx_bps": p.tx_bps.round(),
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The fullest filesystem of the latest v2 report, percent used (`None`
/// without one): the fleet table's "disk" column and its problem filter,
/// without sending every agent's mounts in the list.
fn disk_used_max(a: &Agent) -> Option<f64> {
    let Some(Latest::V2(r)) = a.latest() else {
        return None;
    };
    r.health
        .fs
        .iter()
        .filter(|f| f.total_kb > 0)
        .map(|f| f.total_kb.saturating_sub(f.avail_kb) as f64 * 100.0 / f.total_kb as f64)
        .reduce(f64::max)
        .map(round1)
}

fn health_json(h: &v2::Health) -> Value {
    json!({
        "uptime_s": h.uptime_s,
        "cpu_percent": f64::from(h.cpu_permille) / 10.0,
        "cpu_cores_percent": h.cpu_cores.iter().map(|&c| f64::from(c) / 10.0).collect::<Vec<_>>(),
        "load": h.load_x100.iter().map(|&l| f64::from(l) / 100.0).collect::<Vec<_>>(),
        "memory_kb": {
            "total": h.memory.total_kb, "available": h.memory.available_kb,
            "free": h.memory.free_kb, "buffers": h.memory.buffers_kb, "cached": h.memory.cached_kb,
        },
        "processes": h.processes,
        "net": h.net.iter().map(|n| json!({
            "name": n.name, "rx_bytes": n.rx_bytes, "tx_bytes": n.tx_bytes,
            "rx_packets": n.rx_packets, "tx_packets": n.tx_packets,
            "rx_errors": n.rx_errors, "tx_errors": n.tx_errors,
        })).collect::<Vec<_>>(),
        "fs": h.fs.iter().map(|f| json!({"mount": f.mount, "total_kb": f.total_kb, "avail_kb": f.avail_kb})).collect::<Vec<_>>(),
        "temps": h.temps.iter().map(|t| json!({"zone": t.zone, "celsius": f64::from(t.milli_c) / 1000.0})).collect::<Vec<_>>(),
        "conntrack": h.conntrack,
        "custom": h.custom.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

/// An agent as JSON; `detail` adds the full latest health and history.
/// The summary (no detail) is what lists and `join` events carry: enough
/// for a fleet table without sending every agent's history.
pub fn agent_json(a: &Agent, reg: &Registry, detail: bool) -> Value {
    let now = std::time::Instant::now();
    let _ = reg; // kept for group-level fields later
    let s = &a.stats;
    let rare = s.rare();
    let cadence = a.cadence();
    let mut v = json!({
        "uuid": a.uuid.to_string(),
        "group": &*a.group,
        "online": a.online(),
        "address": a.addr.map(|x| x.to_string()),
        "wire": a.version.map(|v| format!("v{}", v.as_u8())),
        "sealed": a.sealed,
        "software": &*a.software,
        "connected_since_unix_ms": a.connected_since,
        "last_seen_unix_ms": a.last_seen.map(|c| c.1),
        "last_seen_ago_s": a.last_seen.map(|c| now.saturating_duration_since(c.0).as_secs()),
        "latest": a.history().back().map(point_json),
        "disk_used_max_pct": disk_used_max(a),
        // Measured on the master's clock (reports::Cadence), for "stale":
        // no report for more than three intervals.
        "interval_ms": (cadence.interval_ms > 0).then_some(cadence.interval_ms),
        "last_report_ago_ms": cadence.last.map(|t| now.saturating_duration_since(t).as_millis() as u64),
        "pushes_queued": a.outbox.len(),
        "counters": {
            "frames_in": s.frames_in, "frames_out": s.frames_out,
            "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
            "reports": a.reports(), "sessions": s.sessions, "evictions": rare.evictions,
            "errors": rare.errors, "send_failures": rare.send_failures,
            "pushes_delivered": rare.pushes_delivered, "pushes_duplicate": rare.pushes_duplicate,
            "pushes_refused": rare.pushes_refused, "agent_dropped_reports": a.agent_dropped_reports(),
        },
        "last_close": a.last_close.as_ref().map(|c| json!({"code": c.code, "reason": c.reason, "unix_ms": c.unix_ms})),
    });
    if detail && let Value::Object(o) = &mut v {
        o.insert(
            "health".into(),
            match a.latest() {
                Some(Latest::V2(r)) => json!({
                    "seq": r.seq, "unix_ms": r.unix_ms, "age_ms": r.age_ms,
                    "dropped": r.dropped, "host": health_json(&r.health),
                }),
                Some(Latest::Legacy(text)) => json!({ "legacy_body": text }),
                None => Value::Null,
            },
        );
        o.insert(
            "history".into(),
            Value::Array(a.history().iter().map(point_json).collect()),
        );
        // One-minute averages over up to a day (registry::downsample),
        // each stamped with the start of its minute; the last one is the
        // minute in progress.
        o.insert(
            "history_long".into(),
            Value::Array(
                a.history_long()
                    .buckets()
                    .map(|b| point_json(&b.point()))
                    .collect(),
            ),
        );
        o.insert("history_long_bucket_ms".into(), json!(LONG_BUCKET_MS));
        o.insert(
            "pushes".into(),
            Value::Array(
                a.outbox
                    .ids()
                    .map(|(id, sent)| json!({"id": id, "in_flight": sent}))
                    .collect(),
            ),
        );
    }
    v
}
