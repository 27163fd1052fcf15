//! The cluster's share of the API (`docs/cluster.md`): every agent of
//! the fleet whichever master holds it, each with its `node`, and the
//! live masters with their load (`GET /api/cluster`).
//!
//! Local agents come from the registry, the others from the views the
//! other masters publish in Redis once per tick (summaries: no history).
//! An agent online here is shown from here; one offline here but online
//! elsewhere from there. Without a cluster every function here returns
//! the standalone answer.

use serde_json::Value;
#[cfg(feature = "cluster")]
use serde_json::json;

use super::json_views::agent_json;
use crate::master::Master;
use crate::proto::Uuid;

/// Every agent, for `GET /api/agents`.
pub fn agents(m: &Master) -> Value {
    let reg = m.lock_registry();
    #[cfg(feature = "cluster")]
    if let Some(c) = &m.cluster {
        let view = c.view();
        let mut list = Vec::new();
        for a in reg.agents() {
            let text = a.uuid.to_string();
            // Offline here but online elsewhere: shown from there below.
            if !a.online() && view.agents.contains_key(&text) {
                continue;
            }
            let mut j = agent_json(a, &reg, false);
            j["node"] = json!(c.node);
            list.push(j);
        }
        for (u, a) in &view.agents {
            if Uuid::from_text(u).is_some_and(|u| reg.agent(&u).is_some_and(|a| a.online())) {
                continue;
            }
            list.push(a.clone());
        }
        return Value::Array(list);
    }
    Value::Array(reg.agents().map(|a| agent_json(a, &reg, false)).collect())
}

/// One agent, for `GET /api/agents/{uuid}`: from here when it is online
/// here (or known here and nowhere else), else the other master's summary.
pub fn agent(m: &Master, uuid: &str) -> Option<Value> {
    let reg = m.lock_registry();
    let local = Uuid::from_text(uuid).and_then(|u| reg.agent(&u));
    #[cfg(feature = "cluster")]
    if let Some(c) = &m.cluster {
        if let Some(a) = local.filter(|a| a.online()) {
            let mut j = agent_json(a, &reg, true);
            j["node"] = json!(c.node);
            return Some(j);
        }
        if let Some(a) = c.view().agents.get(uuid) {
            return Some(a.clone());
        }
        return local.map(|a| {
            let mut j = agent_json(a, &reg, true);
            j["node"] = json!(c.node);
            j
        });
    }
    local.map(|a| agent_json(a, &reg, true))
}

/// `GET /api/cluster`, and the `cluster` part of `/api/status`: `null`
/// for a standalone master.
pub fn cluster(m: &Master) -> Value {
    #[cfg(feature = "cluster")]
    if let Some(c) = &m.cluster {
        let v = c.view();
        let st = c.stats();
        let nodes: Vec<Value> = v
            .nodes
            .iter()
            .map(|n| {
                let mut j = if n.info.is_object() {
                    n.info.clone()
                } else {
                    json!({})
                };
                j["name"] = json!(n.name);
                j["alive"] = json!(n.alive);
                j
            })
            .collect();
        return json!({
            "node": c.node,
            "redis_up": c.up(),
            "redis_rtt_ms": c.rtt().as_secs_f64() * 1000.0,
            "lease_ms": c.lease.as_millis() as u64,
            "nodes": nodes,
            "agents_elsewhere": v.agents.len(),
            "counters": {
                "errors": st.errors,
                "registry_writes": st.registry_writes,
                "fenced": st.fenced,
                "pushes_accepted": st.pushes_accepted,
                "pushes_fetched": st.pushes_fetched,
                "acks": st.acks,
                "dropped": st.dropped,
                "reports_in": st.reports_in,
                "reports_out": st.reports_out,
                "outages": st.outages,
            },
        });
    }
    let _ = m;
    Value::Null
}

/// Agents other masters hold that a push address names (`*`,
/// `group:NAME`, a uuid); none without a cluster.
pub fn resolve_elsewhere(m: &Master, to: &str) -> Vec<Uuid> {
    #[cfg(feature = "cluster")]
    if let Some(c) = &m.cluster {
        return c.resolve(to);
    }
    let _ = (m, to);
    Vec::new()
}

/// A push's state across the cluster (from Redis), when this master is
/// in one and Redis knows the push; `None` otherwise (the caller falls
/// back to this master's own view).
pub async fn push_status(m: &Master, id: u64) -> Option<Value> {
    #[cfg(feature = "cluster")]
    if let Some(c) = &m.cluster {
        return c.push_status(id).await;
    }
    let _ = (m, id);
    None
}

/// The master holding `uuid` elsewhere in the cluster, and its HTTP
/// address, for an answer that sends the operator there.
pub fn held_elsewhere(m: &Master, uuid: &str) -> Option<(String, String)> {
    #[cfg(feature = "cluster")]
    if let Some(c) = &m.cluster {
        let v = c.view();
        let a = v.agents.get(uuid)?;
        let node = a["node"].as_str().unwrap_or("?").to_string();
        let http = v
            .nodes
            .iter()
            .find(|n| n.name == node)
            .and_then(|n| n.info["http"].as_str())
            .unwrap_or("?")
            .to_string();
        return Some((node, http));
    }
    let _ = (m, uuid);
    None
}
