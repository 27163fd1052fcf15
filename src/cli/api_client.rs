//! Command-line clients of the master's API: `edge-gw status` (a
//! WorkerMan-style table: a global block, then one row per agent),
//! `edge-gw agents` (JSON) and `edge-gw push`. They find the token in the
//! master's state directory or take `--token-file`.
//!
//! Part of the command line, not of the master: it runs in a separate,
//! short-lived process and talks to the master only over HTTP. It is built
//! with the `master` feature because it shares the master's JSON and HTTP
//! parsing crates and its state-directory layout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::options::{ClientCommand, ClientOptions};

/// Runs one client command.
pub fn run(opts: &ClientOptions, cmd: &ClientCommand) -> Result<(), String> {
    let (http, token) = read_token_for(opts)?;
    let mut out = std::io::stdout().lock();
    let text = match cmd {
        ClientCommand::Status => {
            let status = request(&http, &token, "GET", "/api/status", None)?;
            let agents = request(&http, &token, "GET", "/api/agents", None)?;
            status_table(&status, &agents)
        }
        ClientCommand::Agents => {
            let agents = request(&http, &token, "GET", "/api/agents", None)?;
            serde_json::to_string_pretty(&agents).map_err(|e| e.to_string())? + "\n"
        }
        ClientCommand::Push { to, text, .. } => {
            let body = json!({ "to": to, "body": text, "sender": "cli" });
            let r = request(&http, &token, "POST", "/api/push", Some(&body))?;
            format!(
                "push {} accepted for {}\n",
                r["id"],
                r["targets"]
                    .as_array()
                    .map(|t| t
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            )
        }
    };
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

/// The API address and token for `opts` (the token from `--token-file`,
/// or the master's state directory).
pub fn read_token_for(opts: &ClientOptions) -> Result<(String, String), String> {
    let http = opts
        .http
        .clone()
        .unwrap_or_else(|| crate::cli::options::DEFAULT_HTTP.to_string());
    let token_file = opts.token_file.clone().unwrap_or_else(|| {
        crate::master::state_dir::token_path(
            &opts
                .state_dir
                .clone()
                .unwrap_or_else(crate::master::settings::default_state_dir),
        )
    });
    Ok((http, read_token(&token_file)?))
}

fn read_token(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            format!(
                "cannot read the API token {}: {e} (give --token-file or --state-dir)",
                path.display()
            )
        })
}

/// One HTTP/1.1 request; returns the JSON body of a 2xx answer, or an
/// error with the API's own message.
pub fn request(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let mut s = TcpStream::connect(addr)
        .map_err(|e| format!("cannot reach the master's API at {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let payload = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err("malformed HTTP response from the master".into()),
    };
    let code = resp.code.unwrap_or(0);
    let v: Value = serde_json::from_slice(&raw[n..]).unwrap_or(Value::Null);
    if (200..300).contains(&code) {
        Ok(v)
    } else {
        Err(format!(
            "{method} {path}: HTTP {code}: {}",
            v["error"].as_str().unwrap_or("(no message)")
        ))
    }
}

fn dur(secs: u64) -> String {
    format!(
        "{}d {:02}:{:02}:{:02}",
        secs / 86400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

fn rate(bps: f64) -> String {
    match bps {
        b if b >= 1e6 => format!("{:.1}M", b / 1e6),
        b if b >= 1e3 => format!("{:.1}k", b / 1e3),
        b => format!("{b:.0}"),
    }
}

fn sum_map(v: &Value) -> u64 {
    v.as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// The status table, as WorkerMan prints it: global block, then agents.
pub fn status_table(status: &Value, agents: &Value) -> String {
    let c = &status["counters"];
    let p = &status["pushes"];
    let mut o = String::new();
    let bar = |title: &str| format!("{:-^100}\n", format!(" {title} "));
    o += &bar("EDGE-GW STATUS");
    o += &format!(
        "edge-gw {:<10} uptime {}   agents {} online / {} known   connections {}\n",
        status["version"].as_str().unwrap_or("?"),
        dur(status["uptime_s"].as_u64().unwrap_or(0)),
        status["agents"]["online"],
        status["agents"]["known"],
        status["connections"],
    );
    o += &format!(
        "pushes: accepted {} delivered {} queued {}   reports {}   frames in {} out {}   bytes in {} out {}\n",
        p["accepted"],
        p["delivered"],
        p["queued"],
        c["reports"],
        sum_map(&c["frames_in"]),
        sum_map(&c["frames_out"]),
        c["bytes_in"],
        c["bytes_out"],
    );
    let list = |v: &Value| {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into())
    };
    o += &format!(
        "closes: {}   frame errors: {}   refused: {}   send failures {}\n",
        list(&c["closes"]),
        list(&c["frame_errors"]),
        list(&c["connections_refused"]),
        c["send_failures"],
    );
    if let Some(cl) = status["cluster"].as_object() {
        let masters: Vec<String> = cl
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|n| {
                let name = n["name"].as_str().unwrap_or("?");
                if n["alive"] == true {
                    format!("{name} ({} agents)", n["agents"].as_u64().unwrap_or(0))
                } else {
                    format!("{name} (gone)")
                }
            })
            .collect();
        o += &format!(
            "cluster: this master {}   Redis {}   masters: {}\n",
            cl.get("node").and_then(Value::as_str).unwrap_or("?"),
            if cl.get("redis_up") == Some(&Value::Bool(true)) {
                format!(
                    "up ({:.1} ms)",
                    cl.get("redis_rtt_ms")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0)
                )
            } else {
                "DOWN (pushes refused)".to_string()
            },
            masters.join(", ")
        );
    }
    // In a cluster every agent names the master holding it.
    let nodes = agents
        .as_array()
        .is_some_and(|l| l.iter().any(|a| a.get("node").is_some()));
    o += &bar("AGENTS");
    o += &format!(
        "{:<34} {:<10} {:<7} {:<4} {:<21} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>7} {:>6}{}\n",
        "uuid",
        "group",
        "state",
        "wire",
        "address",
        "cpu%",
        "mem%",
        "load",
        "rx/s",
        "tx/s",
        "seen",
        "reports",
        "pushes",
        if nodes { "  master" } else { "" }
    );
    for a in agents.as_array().into_iter().flatten() {
        let l = &a["latest"];
        let num = |k: &str| l[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
        o += &format!(
            "{:<34} {:<10} {:<7} {:<4} {:<21} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>7} {:>6}{}\n",
            a["uuid"].as_str().unwrap_or("?"),
            a["group"].as_str().unwrap_or(""),
            if a["online"].as_bool() == Some(true) {
                "online"
            } else {
                "offline"
            },
            a["wire"].as_str().unwrap_or("-"),
            a["address"].as_str().unwrap_or("-"),
            num("cpu"),
            num("mem"),
            l["load1"]
                .as_f64()
                .map_or("-".to_string(), |x| format!("{x:.2}")),
            l["rx_bps"].as_f64().map_or("-".to_string(), rate),
            l["tx_bps"].as_f64().map_or("-".to_string(), rate),
            a["last_seen_ago_s"]
                .as_u64()
                .map_or("-".to_string(), |s| format!("{s}s")),
            a["counters"]["reports"].to_string(),
            a["pushes_queued"].to_string(),
            a["node"]
                .as_str()
                .map_or(String::new(), |n| format!("  {n}")),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_global_block_and_a_row_per_agent() {
        let status = json!({
            "version": "0.1.0", "uptime_s": 3723, "agents": {"online": 1, "known": 2},
            "connections": 1, "pushes": {"accepted": 3, "delivered": 2, "queued": 1},
            "counters": {"reports": 10, "frames_in": {"report": 10, "heartbeat": 5},
                "frames_out": {"push": 3}, "bytes_in": 100, "bytes_out": 50,
                "closes": {"evicted": 1}, "frame_errors": {}, "connections_refused": {},
                "send_failures": 0}
        });
        let agents = json!([
            {"uuid": "r1", "group": "lab", "online": true, "wire": "v2", "address": "10.0.0.2:4000",
             "latest": {"cpu": 12.5, "mem": 40.0, "load1": 0.5, "rx_bps": 1500.0, "tx_bps": 20.0},
             "last_seen_ago_s": 3, "counters": {"reports": 10}, "pushes_queued": 1},
            {"uuid": "r2", "group": "", "online": false, "latest": null, "counters": {"reports": 0}, "pushes_queued": 0}
        ]);
        let t = status_table(&status, &agents);
        assert!(t.contains("uptime 0d 01:02:03"), "{t}");
        assert!(t.contains("agents 1 online / 2 known"));
        assert!(t.contains("frames in 15 out 3"));
        assert!(t.contains("closes: evicted 1"));
        let rows: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("r1") || l.starts_with("r2"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].contains("online") && rows[0].contains("12.5") && rows[0].contains("1.5k"));
        assert!(rows[1].contains("offline"));
        assert!(!t.contains("cluster:") && !t.contains("master\n"), "{t}");
    }

    #[test]
    fn table_in_a_cluster_names_masters_and_each_agents_master() {
        let status = json!({
            "version": "0.1.0", "uptime_s": 1, "agents": {"online": 1, "known": 1},
            "connections": 1, "pushes": {}, "counters": {},
            "cluster": {"node": "m1", "redis_up": true, "redis_rtt_ms": 0.4,
                "nodes": [{"name": "m1", "alive": true, "agents": 1},
                          {"name": "m2", "alive": false}]}
        });
        let agents = json!([
            {"uuid": "here", "online": true, "node": "m1", "counters": {}},
            {"uuid": "there", "online": true, "node": "m3", "counters": {}}
        ]);
        let t = status_table(&status, &agents);
        assert!(
            t.contains(
                "cluster: this master m1   Redis up (0.4 ms)   masters: m1 (1 agents), m2 (gone)"
            ),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("there") && l.ends_with("  m3")),
            "{t}"
        );
        let down = json!({"cluster": {"node": "m1", "redis_up": false, "nodes": []}});
        assert!(status_table(&down, &json!([])).contains("Redis DOWN"));
    }
}
