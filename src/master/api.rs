//! The HTTP routes: JSON API under `/api/` (bearer token), Prometheus
//! metrics at `/metrics`, the dashboard at `/`.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/status` | global counters, uptime, version |
//! | GET | `/api/agents` | every agent, summary |
//! | GET | `/api/agents/{uuid}` | one agent with health and history |
//! | DELETE | `/api/agents/{uuid}` | kick (`?forget=1`: forget an offline agent) |
//! | POST | `/api/push` | `{"to": uuid \| "group:NAME" \| "*", "body": text}` or `"body_base64"` → 202 `{"id"}`; 404 no target, 413 too large, 429 / 507 a queue is full (messages / bytes) |
//! | GET | `/api/pushes/{id}` | per-agent delivery state |
//! | GET | `/api/events` | Server-Sent Events: join, leave, health, push_delivered |

use base64::Engine;
use serde_json::{Value, json};

use super::Master;
use super::http::{Reply, Request};
use super::registry::{Agent, Delivery, Latest, Point, Registry};
use crate::proto::Uuid;
use crate::proto::v2;
use crate::session::legacy::FlaggedBody;
use crate::session::outbox::OverflowKind;

/// The dashboard page, embedded in the binary.
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// Routes one request. Async because a push waits for its fsync on the
/// store thread.
pub async fn route(m: &Master, r: &Request) -> Reply {
    let path = r.path.as_str();
    match (r.method.as_str(), path) {
        ("GET", "/") | ("GET", "/index.html") => Reply::Full {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: DASHBOARD.as_bytes().to_vec(),
        },
        ("GET", "/metrics") => Reply::Full {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: super::metrics::render(m).into_bytes(),
        },
        ("GET", "/healthz") => Reply::Full {
            status: 200,
            content_type: "text/plain",
            body: b"ok\n".to_vec(),
        },
        _ if path.starts_with("/api/") => {
            let token = r.bearer.as_deref().or(r.param("token"));
            if !token.is_some_and(|t| constant_time_eq(t.as_bytes(), m.token.as_bytes())) {
                return Reply::error(
                    401,
                    "missing or wrong bearer token (see STATE_DIR/api.token)",
                );
            }
            api(m, r).await
        }
        _ => Reply::error(404, "no such page"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn api(m: &Master, r: &Request) -> Reply {
    let rest = &r.path["/api/".len()..];
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (r.method.as_str(), head, tail) {
        ("GET", "status", "") => Reply::json(200, &status(m)),
        ("GET", "agents", "") => {
            let reg = m.lock_registry();
            let list: Vec<Value> = reg.agents().map(|a| agent_json(a, &reg, false)).collect();
            Reply::json(200, &Value::Array(list))
        }
        ("GET", "agents", uuid) => {
            let reg = m.lock_registry();
            match Uuid::from_text(uuid).and_then(|u| reg.agent(&u)) {
                Some(a) => Reply::json(200, &agent_json(a, &reg, true)),
                None => Reply::error(404, &format!("no agent {uuid}")),
            }
        }
        ("DELETE", "agents", uuid) => kick(m, r, uuid),
        ("POST", "push", "") => push(m, r).await,
        ("GET", "pushes", id) => {
            let Ok(id) = id.parse::<u64>() else {
                return Reply::error(400, "push id must be a number");
            };
            let reg = m.lock_registry();
            match reg.push_status(id) {
                Some(st) => Reply::json(
                    200,
                    &json!({
                        "id": st.id,
                        "accepted_unix_ms": st.unix_ms,
                        "targets": st.targets.iter().map(|(u, d)| json!({
                            "uuid": u.to_string(),
                            "state": match d {
                                Delivery::Queued => "queued",
                                Delivery::Delivered => "delivered",
                                Delivery::Cancelled => "cancelled",
                            }
                        })).collect::<Vec<_>>(),
                    }),
                ),
                None => Reply::error(
                    404,
                    &format!("no push {id} (unknown, or delivered long ago)"),
                ),
            }
        }
        ("GET", "events", "") => Reply::Events,
        (_, "status" | "agents" | "push" | "pushes" | "events", _) => {
            Reply::error(405, "method not allowed here")
        }
        _ => Reply::error(404, "no such API path"),
    }
}

fn kick(m: &Master, r: &Request, uuid: &str) -> Reply {
    let Some(u) = Uuid::from_text(uuid) else {
        return Reply::error(400, "bad uuid");
    };
    let mut reg = m.lock_registry();
    if reg.agent(&u).is_none() {
        return Reply::error(404, &format!("no agent {uuid}"));
    }
    let kicked = reg.kick(&u, v2::CloseCode::Kicked, "kicked by an operator");
    if r.param("forget").is_some_and(|v| v == "1" || v == "true") {
        if kicked {
            return Reply::error(400, "agent is online: kick it first, then forget it");
        }
        let cancelled = reg.forget(&u).unwrap_or_default();
        m.publish(&mut reg);
        return Reply::json(
            200,
            &json!({ "forgotten": true, "cancelled_pushes": cancelled }),
        );
    }
    Reply::json(200, &json!({ "kicked": kicked }))
}

async fn push(m: &Master, r: &Request) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
        return Reply::error(400, "body must be JSON: {\"to\": ..., \"body\": ...}");
    };
    let Some(to) = v.get("to").and_then(Value::as_str) else {
        return Reply::error(400, "missing \"to\": a uuid, \"group:NAME\" or \"*\"");
    };
    let body = match (v.get("body"), v.get("body_base64")) {
        (Some(Value::String(s)), None) => s.clone().into_bytes(),
        (None, Some(Value::String(b))) => {
            match base64::engine::general_purpose::STANDARD.decode(b.as_bytes()) {
                Ok(b) => b,
                Err(e) => return Reply::error(400, &format!("body_base64: {e}")),
            }
        }
        _ => {
            return Reply::error(
                400,
                "give exactly one of \"body\" (text) or \"body_base64\"",
            );
        }
    };
    let sender = v.get("sender").and_then(Value::as_str).unwrap_or("api");
    let mut targets = m.lock_registry().resolve(to);
    // A device with its own key that has not connected yet can be pushed
    // to: the push waits for its first session.
    if targets.is_empty()
        && !to.starts_with("group:")
        && to != "*"
        && let Some(u) = Uuid::from_text(to)
        && m.keys().uuids().any(|k| k == to)
    {
        m.lock_registry().ensure_agent(u);
        targets.push(u);
    }
    if targets.is_empty() {
        return Reply::error(404, &format!("no agent matches {to:?}"));
    }
    let group = to.strip_prefix("group:").unwrap_or("");
    match m.accept_push(&targets, sender, group, body).await {
        Ok(id) => Reply::json(
            202,
            &json!({ "id": id, "targets": targets.iter().map(|u| u.to_string()).collect::<Vec<_>>() }),
        ),
        Err(super::PushError::Full(OverflowKind::Messages)) => {
            Reply::error(429, "an agent's push queue is full (messages); retry later")
        }
        Err(super::PushError::Full(OverflowKind::Bytes)) => {
            Reply::error(507, "an agent's push queue is full (bytes); retry later")
        }
        Err(super::PushError::TooLarge(max)) => {
            Reply::error(413, &format!("push body over {max} bytes"))
        }
        Err(super::PushError::Store(e)) => Reply::error(500, &format!("push log: {e}")),
        Err(super::PushError::ShuttingDown) => Reply::error(503, "master is shutting down"),
    }
}

fn status(m: &Master) -> Value {
    let reg = m.lock_registry();
    let c = &reg.counters;
    let names = crate::proto::MsgType::ALL;
    let by_type = |a: &[u64; 11]| {
        let mut o = serde_json::Map::new();
        for t in names {
            o.insert(t.name().into(), json!(a[usize::from(t.as_u8())]));
        }
        Value::Object(o)
    };
    let queued: usize = reg.agents().map(|a| a.outbox.len()).sum();
    let st = m.store_stats();
    let s = m.settings();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": reg.started.elapsed().as_secs(),
        "started_unix_ms": m.started_unix_ms,
        "agents": { "known": reg.agents().count(), "online": reg.online() },
        "connections": reg.connections(),
        "pushes": {
            "accepted": c.pushes_accepted,
            "delivered": c.pushes_delivered,
            "queued": queued,
            "refused": c.pushes_refused,
            "log_bytes": st.bytes,
            "log_records": st.records,
            "log_compactions": st.compactions,
            "log_syncs": st.syncs,
            "log_pending_pushes": st.pending_pushes,
            "log_deliveries_dropped": st.deliveries_dropped,
        },
        "counters": {
            "connections_accepted": c.accepted,
            "connections_refused": c.refused,
            "closes": c.closes,
            "frame_errors": c.frame_errors,
            "frames_in": by_type(&c.frames_in),
            "frames_out": by_type(&c.frames_out),
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "reports": c.reports,
            "fanout": c.fanout,
            "fanout_dropped": c.fanout_dropped,
            "send_failures": c.send_failures,
            "legacy_compress_flag": FlaggedBody::ALL
                .iter()
                .map(|k| (k.name(), c.legacy_compress_flag[k.index()]))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "watchers": m.watchers().len(),
            "watchers_dropped": m.watchers().dropped.load(std::sync::atomic::Ordering::Relaxed),
        },
        "settings": {
            "listen": s.listen,
            "heartbeat_s": s.heartbeat.as_secs(),
            "miss_limit": s.miss_limit,
            "legacy_v1": s.legacy_v1,
            "legacy_idle_timeout_s": s.legacy_idle_timeout.as_secs(),
            "allow_plaintext": s.allow_plaintext,
            "max_connections": s.max_connections,
        },
    })
}

/// A health point as JSON.
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
pub fn agent_json(a: &Agent, reg: &Registry, detail: bool) -> Value {
    let now = std::time::Instant::now();
    let _ = reg; // kept for group-level fields later
    let s = &a.stats;
    let mut v = json!({
        "uuid": a.uuid.to_string(),
        "group": a.group,
        "online": a.online(),
        "address": a.addr.map(|x| x.to_string()),
        "wire": a.version.map(|v| format!("v{}", v.as_u8())),
        "sealed": a.sealed,
        "software": a.software,
        "connected_since_unix_ms": a.connected_since.map(|c| c.1),
        "last_seen_unix_ms": a.last_seen.map(|c| c.1),
        "last_seen_ago_s": a.last_seen.map(|c| now.saturating_duration_since(c.0).as_secs()),
        "latest": a.history.back().map(point_json),
        "pushes_queued": a.outbox.len(),
        "counters": {
            "frames_in": s.frames_in, "frames_out": s.frames_out,
            "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
            "reports": s.reports, "sessions": s.sessions, "evictions": s.evictions,
            "errors": s.errors, "send_failures": s.send_failures,
            "pushes_delivered": s.pushes_delivered, "pushes_duplicate": s.pushes_duplicate,
            "pushes_refused": s.pushes_refused, "agent_dropped_reports": s.agent_dropped_reports,
        },
        "last_close": a.last_close.as_ref().map(|c| json!({"code": c.code, "reason": c.reason, "unix_ms": c.unix_ms})),
    });
    if detail && let Value::Object(o) = &mut v {
        o.insert(
            "health".into(),
            match &a.latest {
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
            Value::Array(a.history.iter().map(point_json).collect()),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
