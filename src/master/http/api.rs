//! The JSON API under `/api/`: what operators and the dashboard use to see
//! the fleet and push to it. Every call needs the bearer token (checked by
//! `routes` before anything here runs).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/status` | global counters, uptime, version |
//! | GET | `/api/agents` | every agent, summary |
//! | GET | `/api/agents/{uuid}` | one agent with health and history |
//! | DELETE | `/api/agents/{uuid}` | kick (`?forget=1`: forget an offline agent) |
//! | POST | `/api/push` | `{"to": uuid \| "group:NAME" \| "*", "body": text}` or `"body_base64"` → 202 `{"id"}` (`"undeliverable"`: targets whose inbox is too small); 400 empty group name, 404 no target, 413 too large (for the frame, or for every target's inbox), 429 / 507 a queue is full (messages / bytes) |
//! | GET | `/api/pushes/{id}` | per-agent delivery state |
//! | GET | `/api/cluster` | the masters of a cluster, Redis state, cluster counters (`null` standalone) |
//! | GET | `/api/events` | Server-Sent Events: join, leave, health, push_delivered |

use base64::Engine;
use serde_json::{Value, json};

use super::cluster_view;
use super::counters::{Refusal, Timeout};
use super::reply::Reply;
use super::request::Request;
use crate::master::registry::inbox_fit;
use crate::master::{Master, PushError};
use crate::proto::Uuid;
use crate::proto::v2;
use crate::session::legacy::FlaggedBody;
use crate::session::outbox::OverflowKind;

/// Answers a request under `/api/` whose token and method `routes` has
/// already checked; `method` is `GET` for a `HEAD` (the server drops the
/// body). Async because a push waits for its fsync on the store thread.
pub(super) async fn answer(m: &Master, r: &Request, method: &str) -> Reply {
    let Some(rest) = r.path.strip_prefix("/api/") else {
        return Reply::error(404, "no such API path");
    };
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, head, tail) {
        ("GET", "status", "") => Reply::json(200, &status(m)),
        ("GET", "agents", "") => Reply::json(200, &cluster_view::agents(m)),
        ("GET", "agents", uuid) => match cluster_view::agent(m, uuid) {
            Some(a) => Reply::json(200, &a),
            None => Reply::error(404, &format!("no agent {uuid}")),
        },
        ("GET", "cluster", "") => Reply::json(200, &cluster_view::cluster(m)),
        ("DELETE", "agents", uuid) => kick(m, r, uuid),
        ("POST", "push", "") => push(m, r).await,
        ("GET", "pushes", id) => {
            let Ok(id) = id.parse::<u64>() else {
                return Reply::error(400, "push id must be a number");
            };
            // In a cluster the push's targets may be on any master:
            // Redis knows them all while any is pending.
            if let Some(view) = cluster_view::push_status(m, id).await {
                return Reply::json(200, &view);
            }
            let reg = m.lock_registry();
            match super::push_view::push_json(&reg, id) {
                Some(view) => Reply::json(200, &view),
                None => Reply::error(
                    404,
                    &format!("no push {id} (unknown, or delivered long ago)"),
                ),
            }
        }
        ("GET", "events", "") => Reply::Events,
        // `routes::methods` refused every other method with a 405 and its
        // `Allow` already.
        _ => Reply::error(404, "no such API path"),
    }
}

fn kick(m: &Master, r: &Request, uuid: &str) -> Reply {
    let Some(u) = Uuid::from_text(uuid) else {
        return Reply::error(400, "bad uuid");
    };
    if let Some((node, http)) = cluster_view::held_elsewhere(m, uuid)
        && !m.lock_registry().agent(&u).is_some_and(|a| a.online())
    {
        return Reply::error(
            409,
            &format!(
                "agent {uuid} is held by master {node}: send this request to its API at http://{http}/"
            ),
        );
    }
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
    // "group:" names no group: resolved, it would match every agent
    // without one, which nobody asking for a group means.
    if to == "group:" {
        return Reply::error(400, "empty group name in \"to\": use \"group:NAME\"");
    }
    let sender = v.get("sender").and_then(Value::as_str).unwrap_or("api");
    let want_result = v.get("want_result").and_then(Value::as_bool) == Some(true);
    let mut targets = m.lock_registry().resolve(to);
    // In a cluster, agents other masters hold as well.
    for u in cluster_view::resolve_elsewhere(m, to) {
        if !targets.contains(&u) {
            targets.push(u);
        }
    }
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
    // Targets whose announced inbox can never hold it: refused when that is
    // every target, else left out and marked undeliverable.
    let too_small = m.lock_registry().inbox_too_small(&targets, body.len());
    if too_small.len() == targets.len() {
        m.lock_registry().push_refused_for_inbox();
        return Reply::error(413, &inbox_fit::refusal(&too_small, body.len()));
    }
    targets.retain(|u| !too_small.iter().any(|t| t.uuid == *u));
    let group = to.strip_prefix("group:").unwrap_or("");
    match m
        .accept_push_wanting(&targets, sender, group, body, want_result)
        .await
    {
        Ok(id) if !too_small.is_empty() => {
            m.lock_registry().mark_undeliverable(id, &too_small);
            Reply::json(
                202,
                &json!({
                    "id": id,
                    "targets": targets.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
                    "undeliverable": too_small.iter().map(|t| t.uuid.to_string()).collect::<Vec<_>>(),
                }),
            )
        }
        Ok(id) => Reply::json(
            202,
            &json!({ "id": id, "targets": targets.iter().map(|u| u.to_string()).collect::<Vec<_>>() }),
        ),
        Err(PushError::Full(OverflowKind::Messages)) => {
            Reply::error(429, "an agent's push queue is full (messages); retry later")
        }
        Err(PushError::Full(OverflowKind::Bytes)) => {
            Reply::error(507, "an agent's push queue is full (bytes); retry later")
        }
        Err(PushError::TooLarge(max)) => Reply::error(413, &format!("push body over {max} bytes")),
        Err(PushError::Store(e)) => Reply::error(500, &format!("push log: {e}")),
        Err(PushError::ShuttingDown) => Reply::error(503, "master is shutting down"),
        Err(PushError::Unavailable(why)) => Reply::error(503, &why),
        Err(PushError::Unsupported(why)) => Reply::error(501, why),
    }
}

fn status(m: &Master) -> Value {
    let reg = m.lock_registry();
    let c = &reg.counters;
    let names = crate::proto::MsgType::ALL;
    let by_type = |a: &[u64; 13]| {
        let mut o = serde_json::Map::new();
        for t in names {
            o.insert(t.name().into(), json!(a[usize::from(t.as_u8())]));
        }
        Value::Object(o)
    };
    let queued: usize = reg.agents().map(|a| a.outbox.len()).sum();
    let st = m.store_stats();
    let s = m.settings();
    let hc = m.http_counters();
    let refused: serde_json::Map<String, Value> = Refusal::ALL
        .iter()
        .map(|&r| (r.name().to_string(), json!(hc.refused_count(r))))
        .collect();
    let timed_out: serde_json::Map<String, Value> = Timeout::ALL
        .iter()
        .map(|&t| (t.name().to_string(), json!(hc.timed_out_count(t))))
        .collect();
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
            "results_stored": c.push_results_stored,
            "results_refused": c.push_results_refused,
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
            "fanout_dropped_too_large": c.fanout_dropped_too_large,
            "send_failures": c.send_failures,
            "legacy_compress_flag": FlaggedBody::ALL
                .iter()
                .map(|k| (k.name(), c.legacy_compress_flag[k.index()]))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "identity_refused": c.identity_refused,
            "watchers": m.watchers().len(),
            "watchers_dropped": m.watchers().dropped.load(std::sync::atomic::Ordering::Relaxed),
        },
        "http": {
            "connections": m.http_admission().open(),
            "refused": refused,
            "timed_out": timed_out,
        },
        "memory_budget": budget_json(&m.budget),
        "legacy_forgotten": c.legacy_forgotten,
        "cluster": cluster_view::cluster(m),
        "settings": {
            "listen": s.listen,
            "heartbeat_s": s.heartbeat.as_secs(),
            "miss_limit": s.miss_limit,
            "legacy_v1": s.legacy_v1,
            "legacy_idle_timeout_s": s.legacy_idle_timeout.as_secs(),
            "allow_plaintext": s.allow_plaintext,
            "max_connections": s.max_connections,
            "threads": s.threads,
            "http_max_connections": s.http_max_connections,
            "http_per_ip": s.http_per_ip,
            "http_request_timeout_s": s.http_request_timeout.as_secs(),
            "write_timeout_s": s.write_timeout.as_secs(),
        },
    })
}

/// The memory budget for `/api/status`: the same figures as `/metrics`.
fn budget_json(b: &crate::master::budget::MemoryBudget) -> Value {
    use crate::master::budget::{Kind, Refusal};
    let mut held = serde_json::Map::new();
    for k in Kind::ALL {
        held.insert(k.name().into(), json!(b.held(k)));
    }
    let mut refused = serde_json::Map::new();
    for r in Refusal::ALL {
        refused.insert(r.name().into(), json!(b.refusals(r)));
    }
    json!({
        "limit_bytes": b.limit(),
        "held_bytes": held,
        "unauthenticated_bytes": b.unauthenticated(),
        "refusals": refused,
    })
}
