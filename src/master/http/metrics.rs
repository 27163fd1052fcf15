//! `/metrics` in the Prometheus text exposition format (version 0.0.4):
//! conventional names, `_total` counters, base units (bytes, seconds,
//! ratios 0–1), per-agent gauges labelled by uuid and group.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::counters::{Refusal, Timeout};
use crate::master::Master;
use crate::master::registry::Agent;
use crate::master::registry::{Latest, Point};
use crate::proto::MsgType;
use crate::proto::v2::CloseCode;
use crate::session::legacy::FlaggedBody;

/// Escapes a label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn val(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.head(name, kind, help);
        self.val(name, "", v);
    }
}

/// Renders every metric, for `GET /metrics`. Holds the registry lock only
/// for the fleet figures and releases it before reading `/proc` and the
/// push log's figures, so a scrape delays the agents' tasks as little as
/// possible.
pub fn render(m: &Master) -> String {
    let reg = m.lock_registry();
    let c = &reg.counters;
    let mut o = Out(String::with_capacity(4096));
    o.one("edge_gw_up", "gauge", "The master is running.", 1);
    o.head(
        "edge_gw_build_info",
        "gauge",
        "Always 1; the labels say which build answers (for joins and upgrade tracking).",
    );
    o.val(
        "edge_gw_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1,
    );
    o.one(
        "process_start_time_seconds",
        "gauge",
        "Start time of the master process, seconds since the Unix epoch.",
        m.started_unix_ms as f64 / 1000.0,
    );
    o.one(
        "edge_gw_uptime_seconds",
        "gauge",
        "Seconds since the master started.",
        reg.started.elapsed().as_secs(),
    );
    o.one(
        "edge_gw_agents_connected",
        "gauge",
        "Agents with a live session.",
        reg.online(),
    );
    o.one(
        "edge_gw_agents_known",
        "gauge",
        "Agents known this run, online or not.",
        reg.agents().count(),
    );
    o.one(
        "edge_gw_connections",
        "gauge",
        "Open connections (agents, subscribers, handshakes).",
        reg.connections(),
    );
    o.head(
        "edge_gw_shard_connections",
        "gauge",
        "Open connections served by each shard (one thread each, --threads).",
    );
    for (i, n) in m.shard_load.connections().enumerate() {
        o.val("edge_gw_shard_connections", &format!("shard=\"{i}\""), n);
    }
    o.one(
        "edge_gw_connections_accepted_total",
        "counter",
        "Connections accepted.",
        c.accepted,
    );
    o.head(
        "edge_gw_connections_refused_total",
        "counter",
        "Connections refused, by reason.",
    );
    for r in ["max_connections", "rate_limited", "memory_budget"] {
        o.val(
            "edge_gw_connections_refused_total",
            &format!("reason=\"{r}\""),
            c.refused.get(r).copied().unwrap_or(0),
        );
    }
    o.head(
        "edge_gw_closes_total",
        "counter",
        "Connections closed, by reason.",
    );
    // Every reason from the start, zeros included: a series that appears
    // only when its first close happens makes rate() and alerts miss it.
    for r in close_reasons() {
        o.val(
            "edge_gw_closes_total",
            &format!("reason=\"{r}\""),
            c.closes.get(r).copied().unwrap_or(0),
        );
    }
    o.head(
        "edge_gw_frame_errors_total",
        "counter",
        "Bad frames, by kind.",
    );
    for k in crate::proto::FrameError::KINDS {
        o.val(
            "edge_gw_frame_errors_total",
            &format!("kind=\"{k}\""),
            c.frame_errors.get(k).copied().unwrap_or(0),
        );
    }
    o.head(
        "edge_gw_legacy_compress_flag_total",
        "counter",
        "v1 requests with the compress flag, by body: inflated, empty, not_zlib (taken as plain).",
    );
    for kind in FlaggedBody::ALL {
        o.val(
            "edge_gw_legacy_compress_flag_total",
            &format!("body=\"{}\"", kind.name()),
            c.legacy_compress_flag[kind.index()],
        );
    }
    o.head(
        "edge_gw_frames_total",
        "counter",
        "Frames by message type and direction.",
    );
    for t in MsgType::ALL {
        let i = usize::from(t.as_u8());
        o.val(
            "edge_gw_frames_total",
            &format!("type=\"{}\",direction=\"in\"", t.name()),
            c.frames_in[i],
        );
        o.val(
            "edge_gw_frames_total",
            &format!("type=\"{}\",direction=\"out\"", t.name()),
            c.frames_out[i],
        );
    }
    o.head(
        "edge_gw_bytes_total",
        "counter",
        "Frame bytes by direction.",
    );
    o.val("edge_gw_bytes_total", "direction=\"in\"", c.bytes_in);
    o.val("edge_gw_bytes_total", "direction=\"out\"", c.bytes_out);
    o.one(
        "edge_gw_reports_total",
        "counter",
        "Health reports received.",
        c.reports,
    );
    o.one(
        "edge_gw_pushes_accepted_total",
        "counter",
        "Pushes accepted by the API.",
        c.pushes_accepted,
    );
    o.one(
        "edge_gw_push_deliveries_total",
        "counter",
        "Push deliveries acknowledged by agents.",
        c.pushes_delivered,
    );
    o.one(
        "edge_gw_push_results_stored_total",
        "counter",
        "Push results stored in the push log.",
        c.push_results_stored,
    );
    o.head(
        "edge_gw_push_results_refused_total",
        "counter",
        "Push results refused (not awaited, over the agent's byte budget, queue full).",
    );
    for reason in ["not_awaited", "agent_bytes", "not_an_agent", "queue_full"] {
        o.val(
            "edge_gw_push_results_refused_total",
            &format!("reason=\"{reason}\""),
            c.push_results_refused.get(reason).copied().unwrap_or(0),
        );
    }
    let queued: usize = reg.agents().map(|a| a.outbox.len()).sum();
    o.one(
        "edge_gw_push_queue_messages",
        "gauge",
        "Pushes waiting for an agent's ack, summed over agents.",
        queued,
    );
    o.one(
        "edge_gw_fanout_total",
        "counter",
        "Reports forwarded to subscribers.",
        c.fanout,
    );
    o.one(
        "edge_gw_fanout_dropped_total",
        "counter",
        "Reports not forwarded: subscriber queue full.",
        c.fanout_dropped,
    );
    o.one(
        "edge_gw_fanout_dropped_too_large_total",
        "counter",
        "Legacy reports not forwarded to a subscriber: the escaped fan-out frame exceeds max_frame.",
        c.fanout_dropped_too_large,
    );
    o.head(
        "edge_gw_identity_refused_total",
        "counter",
        "Unauthenticated sessions refused for claiming an authenticated uuid, by wire.",
    );
    for w in ["v1", "plaintext"] {
        o.val(
            "edge_gw_identity_refused_total",
            &format!("wire=\"{w}\""),
            c.identity_refused.get(w).copied().unwrap_or(0),
        );
    }
    o.one(
        "edge_gw_send_failures_total",
        "counter",
        "Frames that could not be queued to a connection.",
        c.send_failures,
    );
    o.one(
        "edge_gw_event_watchers",
        "gauge",
        "Open /api/events streams.",
        m.watchers().len(),
    );
    o.one(
        "edge_gw_event_watchers_dropped_total",
        "counter",
        "Event streams dropped for falling behind.",
        m.watchers().dropped.load(Ordering::Relaxed),
    );
    o.one(
        "edge_gw_http_connections",
        "gauge",
        "Open HTTP connections (API, metrics, dashboard, event streams).",
        m.http_admission().open(),
    );
    let hc = m.http_counters();
    o.head(
        "edge_gw_http_connections_refused_total",
        "counter",
        "HTTP connections closed on accept, by reason (max_connections, per_ip).",
    );
    for r in Refusal::ALL {
        o.val(
            "edge_gw_http_connections_refused_total",
            &format!("reason=\"{}\"", r.name()),
            hc.refused_count(r),
        );
    }
    o.head(
        "edge_gw_http_connections_timed_out_total",
        "counter",
        "HTTP connections closed for taking too long, by reason (request: not sent in http_request_timeout; write: not read in write_timeout).",
    );
    for t in Timeout::ALL {
        o.val(
            "edge_gw_http_connections_timed_out_total",
            &format!("reason=\"{}\"", t.name()),
            hc.timed_out_count(t),
        );
    }

    // Values are printed from the figures the agent measured (CPU in
    // permille, load in hundredths), rounded back from the f32 history
    // points, so a scrape shows 0.009, not 0.008999999761581421. Health
    // series exist only while the agent is online: an offline agent's
    // last CPU figure is not its current one (`edge_gw_agent_up` and the
    // counters stay).
    type Gauge = (
        &'static str,
        &'static str,
        fn(&crate::master::registry::Agent) -> Option<f64>,
    );
    let gauges: [Gauge; 7] = [
        (
            "edge_gw_agent_up",
            "1 if the agent has a live session.",
            |a| Some(if a.online() { 1.0 } else { 0.0 }),
        ),
        ("edge_gw_agent_cpu_ratio", "Agent CPU busy, 0-1.", |a| {
            health(a).map(|p| (f64::from(p.cpu) * 10.0).round() / 1000.0)
        }),
        (
            "edge_gw_agent_memory_used_ratio",
            "Agent memory used (total - available), 0-1.",
            |a| health(a).map(|p| (f64::from(p.mem) * 1000.0).round() / 100_000.0),
        ),
        ("edge_gw_agent_load1", "Agent 1-minute load average.", |a| {
            health(a).map(|p| (f64::from(p.load1) * 100.0).round() / 100.0)
        }),
        (
            "edge_gw_agent_network_receive_bytes_per_second",
            "Agent receive rate, all interfaces but lo.",
            |a| health(a).map(|p| p.rx_bps.round()),
        ),
        (
            "edge_gw_agent_network_transmit_bytes_per_second",
            "Agent transmit rate, all interfaces but lo.",
            |a| health(a).map(|p| p.tx_bps.round()),
        ),
        (
            "edge_gw_agent_push_queue_messages",
            "Pushes waiting for this agent's ack.",
            |a| Some(a.outbox.len() as f64),
        ),
    ];
    // In a cluster every agent is shown, each with the master holding it
    // (`node`): this master's from the registry, the others' from the
    // views they publish (no offline ones: those are their masters').
    let remote = RemoteAgents::of(m, &reg);
    for (name, help, f) in gauges {
        o.head(name, "gauge", help);
        for a in reg.agents() {
            if let Some(v) = f(a) {
                o.val(name, &remote.labels(a), v);
            }
        }
        remote.gauge(&mut o, name);
    }
    o.head(
        "edge_gw_agent_custom",
        "gauge",
        "Numeric metrics a local process added with `edge-gw report KEY=VALUE` (online agents).",
    );
    for a in reg.agents().filter(|a| a.online()) {
        let Some(Latest::V2(report)) = a.latest() else {
            continue;
        };
        for (key, value) in &report.health.custom {
            // Prometheus samples are numbers; text values stay in the API.
            if let Ok(v) = value.trim().parse::<f64>() {
                let labels = format!("{},key=\"{}\"", remote.labels(a), esc(key));
                o.val("edge_gw_agent_custom", &labels, v);
            }
        }
    }
    o.head(
        "edge_gw_agent_reports_total",
        "counter",
        "Reports received from this agent.",
    );
    for a in reg.agents() {
        o.val(
            "edge_gw_agent_reports_total",
            &remote.labels(a),
            a.reports(),
        );
    }
    remote.gauge(&mut o, "edge_gw_agent_reports_total");
    o.one(
        "edge_gw_legacy_agents_forgotten_total",
        "counter",
        "Offline legacy v1 agents forgotten after legacy_retention.",
        c.legacy_forgotten,
    );
    #[cfg(feature = "cluster")]
    let remote_backlog_dropped = reg.remote_reports_dropped();
    drop(reg);
    budget_metrics(&mut o, &m.budget);
    process_metrics(&mut o);
    let st = m.store_stats();
    o.one(
        "edge_gw_push_log_bytes",
        "gauge",
        "Size of the push log on disk.",
        st.bytes,
    );
    o.one(
        "edge_gw_keyring_reloads_refused_total",
        "counter",
        "keyring reloads refused because they would revoke every key (keyring_revoke_all unset).",
        m.keyring_reloads_refused.load(Ordering::Relaxed),
    );
    o.one(
        "edge_gw_push_log_syncs_total",
        "counter",
        "fsyncs of the push log; accepted pushes per sync is the group-commit batch size.",
        st.syncs,
    );
    o.one(
        "edge_gw_push_log_pending_pushes",
        "gauge",
        "Pushes waiting for the push log to write and sync them (their API requests are waiting).",
        st.pending_pushes,
    );
    o.one(
        "edge_gw_push_log_deliveries_dropped_total",
        "counter",
        "Push acks not recorded in the push log because its queue was full (disk behind); each may cause one resend after a restart, answered as a duplicate.",
        st.deliveries_dropped,
    );
    #[cfg(feature = "cluster")]
    if let Some(c) = &m.cluster {
        cluster_metrics(&mut o, c, remote_backlog_dropped);
    }
    o.0
}

/// A counter with a `kind` label, every kind present from the start.
#[cfg(feature = "cluster")]
fn by_kind(
    o: &mut Out,
    name: &str,
    help: &str,
    kinds: &[&str],
    counts: &std::collections::BTreeMap<&'static str, u64>,
) {
    o.head(name, "counter", help);
    for k in kinds {
        o.val(
            name,
            &format!("kind=\"{k}\""),
            counts.get(k).copied().unwrap_or(0),
        );
    }
}

/// The cluster's figures (`edge_gw_cluster_*`), only for a master started
/// with `--cluster`; every error kind is present from the start.
#[cfg(feature = "cluster")]
fn cluster_metrics(o: &mut Out, c: &crate::master::cluster::Cluster, backlog_dropped: u64) {
    let st = c.stats();
    let v = c.view();
    o.one(
        "edge_gw_cluster_up",
        "gauge",
        "1 while the cluster's Redis answers; 0: serving connected agents only, pushes refused with 503.",
        u8::from(c.up()),
    );
    o.one(
        "edge_gw_cluster_redis_rtt_seconds",
        "gauge",
        "Round trip of the last registry refresh to Redis.",
        c.rtt().as_secs_f64(),
    );
    by_kind(
        o,
        "edge_gw_cluster_errors_total",
        "Redis errors by kind (connect, io, timeout, auth, server).",
        &["connect", "io", "timeout", "auth", "server"],
        &st.errors,
    );
    o.one(
        "edge_gw_cluster_outages_total",
        "counter",
        "Times Redis became unreachable.",
        st.outages,
    );
    o.one(
        "edge_gw_cluster_registry_writes_total",
        "counter",
        "Claims, lease refreshes and releases written to Redis.",
        st.registry_writes,
    );
    o.one(
        "edge_gw_cluster_fenced_total",
        "counter",
        "Sessions closed here because another master holds their agent now.",
        st.fenced,
    );
    o.one(
        "edge_gw_cluster_pushes_accepted_total",
        "counter",
        "Pushes this master's API made durable in Redis.",
        st.pushes_accepted,
    );
    o.one(
        "edge_gw_cluster_pushes_fetched_total",
        "counter",
        "Pushes fetched from Redis for agents on this master.",
        st.pushes_fetched,
    );
    by_kind(
        o,
        "edge_gw_cluster_dropped_total",
        "Cluster jobs dropped (queue full or Redis away), by kind.",
        &[
            "claim", "release", "acks", "reports", "push", "note", "status",
        ],
        &st.dropped,
    );
    o.one(
        "edge_gw_cluster_reports_backlog_dropped_total",
        "counter",
        "Reports for other masters' subscribers dropped before the cluster thread took them (its backlog of 4,096 was full).",
        backlog_dropped,
    );
    o.one(
        "edge_gw_cluster_reports_forwarded_total",
        "counter",
        "Reports sent to other masters' subscribers.",
        st.reports_out,
    );
    o.one(
        "edge_gw_cluster_reports_received_total",
        "counter",
        "Reports from other masters delivered to subscribers here.",
        st.reports_in,
    );
    o.head(
        "edge_gw_cluster_node_up",
        "gauge",
        "Masters of the cluster: 1 live, 0 gone (its record expired).",
    );
    for n in &v.nodes {
        o.val(
            "edge_gw_cluster_node_up",
            &format!("node=\"{}\"", esc(&n.name)),
            u8::from(n.alive),
        );
    }
    o.head(
        "edge_gw_cluster_node_agents",
        "gauge",
        "Agents each live master holds, as it last published.",
    );
    for n in v.nodes.iter().filter(|n| n.alive) {
        o.val(
            "edge_gw_cluster_node_agents",
            &format!("node=\"{}\"", esc(&n.name)),
            n.info["agents"].as_u64().unwrap_or(0),
        );
    }
}

/// The memory budget: what peers make the master hold, by kind, against
/// its limit, and what a full budget refused.
fn budget_metrics(o: &mut Out, b: &crate::master::budget::MemoryBudget) {
    use crate::master::budget::{Kind, Refusal};
    o.head(
        "edge_gw_memory_budget_bytes",
        "gauge",
        "Bytes held against memory_budget, by kind.",
    );
    for k in Kind::ALL {
        o.val(
            "edge_gw_memory_budget_bytes",
            &format!("kind=\"{}\"", k.name()),
            b.held(k),
        );
    }
    o.one(
        "edge_gw_memory_budget_unauthenticated_bytes",
        "gauge",
        "Part of the held bytes held for unauthenticated peers (at most half the limit).",
        b.unauthenticated(),
    );
    o.one(
        "edge_gw_memory_budget_limit_bytes",
        "gauge",
        "The memory_budget setting.",
        b.limit(),
    );
    o.head(
        "edge_gw_memory_budget_refusals_total",
        "counter",
        "What a full memory budget refused: new connections, connections closed, legacy bodies not kept.",
    );
    for r in Refusal::ALL {
        o.val(
            "edge_gw_memory_budget_refusals_total",
            &format!("refused=\"{}\"", r.name()),
            b.refusals(r),
        );
    }
}

/// The `uuid` and `group` labels of an agent's series.
/// The agents other masters of a cluster hold, as their views show them,
/// and the `node` label of this master's own; empty without a cluster.
struct RemoteAgents {
    /// `,node="NAME"` for this master's agents ("" standalone).
    node_label: String,
    /// The other masters' views (shared, not copied per scrape).
    #[cfg(feature = "cluster")]
    view: std::sync::Arc<crate::master::cluster::FleetView>,
    /// Online elsewhere, not online here: (labels, uuid key in `view`).
    #[cfg(feature = "cluster")]
    agents: Vec<(String, String)>,
}

impl RemoteAgents {
    fn of(m: &Master, reg: &crate::master::registry::Registry) -> RemoteAgents {
        #[cfg(feature = "cluster")]
        if let Some(c) = &m.cluster {
            let view = c.view();
            let agents = view
                .agents
                .iter()
                .filter(|(u, _)| {
                    !crate::proto::Uuid::from_text(u)
                        .and_then(|u| reg.agent(&u))
                        .is_some_and(|a| a.online())
                })
                .map(|(u, a)| {
                    let labels = format!(
                        "uuid=\"{}\",group=\"{}\",node=\"{}\"",
                        esc(u),
                        esc(a["group"].as_str().unwrap_or("")),
                        esc(a["node"].as_str().unwrap_or(""))
                    );
                    (labels, u.clone())
                })
                .collect();
            return RemoteAgents {
                node_label: format!(",node=\"{}\"", esc(&c.node)),
                view,
                agents,
            };
        }
        let _ = (m, reg);
        RemoteAgents {
            node_label: String::new(),
            #[cfg(feature = "cluster")]
            view: std::sync::Arc::default(),
            #[cfg(feature = "cluster")]
            agents: Vec::new(),
        }
    }

    /// The labels of one of this master's agents.
    fn labels(&self, a: &Agent) -> String {
        format!("{}{}", agent_labels(a), self.node_label)
    }

    /// The other masters' agents' samples of the per-agent family `name`,
    /// from their summaries (the same rounding as this master's).
    #[cfg(feature = "cluster")]
    fn gauge(&self, o: &mut Out, name: &str) {
        for (labels, uuid) in &self.agents {
            let Some(a) = self.view.agents.get(uuid) else {
                continue;
            };
            let p = &a["latest"];
            let v = match name {
                "edge_gw_agent_up" => Some(1.0),
                "edge_gw_agent_cpu_ratio" => p["cpu"].as_f64().map(|x| (x * 10.0).round() / 1000.0),
                "edge_gw_agent_memory_used_ratio" => {
                    p["mem"].as_f64().map(|x| (x * 1000.0).round() / 100_000.0)
                }
                "edge_gw_agent_load1" => p["load1"].as_f64().map(|x| (x * 100.0).round() / 100.0),
                "edge_gw_agent_network_receive_bytes_per_second" => {
                    p["rx_bps"].as_f64().map(f64::round)
                }
                "edge_gw_agent_network_transmit_bytes_per_second" => {
                    p["tx_bps"].as_f64().map(f64::round)
                }
                "edge_gw_agent_push_queue_messages" => a["pushes_queued"].as_f64(),
                "edge_gw_agent_reports_total" => a["counters"]["reports"].as_f64(),
                _ => None,
            };
            if let Some(v) = v {
                o.val(name, labels, v);
            }
        }
    }

    /// Without the cluster feature there are no other masters.
    #[cfg(not(feature = "cluster"))]
    fn gauge(&self, _o: &mut Out, _name: &str) {}
}

fn agent_labels(a: &Agent) -> String {
    format!(
        "uuid=\"{}\",group=\"{}\"",
        esc(&a.uuid.to_string()),
        esc(&a.group)
    )
}

/// The latest health point of an online agent; `None` once it is offline.
fn health(a: &Agent) -> Option<&Point> {
    a.online().then(|| a.history().back()).flatten()
}

/// Every close reason the master can count, in code order, then "other".
fn close_reasons() -> impl Iterator<Item = &'static str> {
    // Codes past the named ones all map to Other ("other").
    (0..=CloseCode::HandshakeTimeout.to_u16() + 1).map(|n| CloseCode::from_u16(n).name())
}

/// The conventional `process_*` metrics from `/proc/self`: memory per
/// idle agent is a first-class figure (RSS / `edge_gw_connections`).
fn process_metrics(o: &mut Out) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    if let Some(rss) = kb("VmRSS:") {
        o.one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the master process.",
            rss * 1024,
        );
    }
    if let Some(n) = kb("Threads:") {
        o.one(
            "process_threads",
            "gauge",
            "Threads of the master process.",
            n,
        );
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        o.one(
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            d.count(),
        );
    }
    // utime + stime, fields 14 and 15 after the parenthesised name.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    if let Some(rest) = stat.rsplit_once(')').map(|x| x.1) {
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(u), Some(s)) = (
            f.get(11).and_then(|x| x.parse::<u64>().ok()),
            f.get(12).and_then(|x| x.parse::<u64>().ok()),
        ) {
            // Linux reports in USER_HZ, 100 on every architecture we build.
            o.one(
                "process_cpu_seconds_total",
                "counter",
                "CPU time used by the master.",
                (u + s) as f64 / 100.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_read_this_process() {
        let mut o = Out(String::new());
        process_metrics(&mut o);
        assert!(o.0.contains("process_resident_memory_bytes "), "{}", o.0);
        assert!(o.0.contains("process_cpu_seconds_total "));
        assert!(o.0.contains("process_open_fds "));
    }

    #[test]
    fn every_close_reason_once() {
        let r: Vec<&str> = close_reasons().collect();
        assert_eq!(r.first(), Some(&"normal"));
        assert_eq!(r.last(), Some(&"other"));
        assert!(r.contains(&"handshake_timeout") && r.contains(&"evicted"));
        let mut d = r.clone();
        d.dedup();
        assert_eq!(d.len(), r.len());
    }

    #[test]
    fn label_escaping() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
