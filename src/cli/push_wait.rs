//! `edge-gw push ... --wait DURATION`: a push that wants its consumers'
//! results, and the answers printed as they arrive.
//!
//! Polls `GET /api/pushes/{id}` (twice a second) rather than following the
//! event stream: a poll shows answers stored before it started, survives a
//! master restart in between, and needs no second connection type in the
//! client. Exit status: 0 when every target answered (whatever their exit
//! statuses: they are printed), [`EXIT_WAIT_TIMEOUT`] when the time ran
//! out first (what is known per target is printed; the push stays queued
//! as usual).

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::api_client::{read_token_for, request};
use crate::cli::options::ClientOptions;

/// Exit status of `push --wait` when not every target answered in time.
pub const EXIT_WAIT_TIMEOUT: u8 = 5;

/// How often the push's status is asked for.
const POLL: Duration = Duration::from_millis(500);

/// Pushes `text` to `to` asking for results and prints them for at most
/// `wait`. Returns the exit status.
pub fn run(opts: &ClientOptions, to: &str, text: &str, wait: Duration) -> Result<u8, String> {
    let (http, token) = read_token_for(opts)?;
    let body = json!({ "to": to, "body": text, "sender": "cli", "want_result": true });
    let r = request(&http, &token, "POST", "/api/push", Some(&body))?;
    let id = r["id"]
        .as_u64()
        .ok_or("the master's answer has no push id")?;
    let targets: Vec<String> = r["targets"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "push {id} accepted for {}; waiting up to {} s for answers",
        targets.join(", "),
        wait.as_secs()
    );
    let deadline = Instant::now() + wait;
    let mut printed: BTreeSet<String> = BTreeSet::new();
    let mut last = Value::Null;
    loop {
        // A failed poll (master restarting) is retried until the deadline.
        if let Ok(v) = request(&http, &token, "GET", &format!("/api/pushes/{id}"), None) {
            for t in v["targets"].as_array().into_iter().flatten() {
                let uuid = t["uuid"].as_str().unwrap_or("?").to_string();
                if t["state"] == "answered" && printed.insert(uuid.clone()) {
                    print_answer(&mut out, &uuid, &t["answer"]);
                }
            }
            last = v;
        }
        if targets.iter().all(|t| printed.contains(t)) {
            return Ok(0);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    let _ = writeln!(
        out,
        "timed out after {} s; push {id} stays queued as usual:",
        wait.as_secs()
    );
    for t in &targets {
        let state = last["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["uuid"] == t.as_str())
            .and_then(|x| x["state"].as_str())
            .unwrap_or("unknown");
        let _ = writeln!(out, "  {t}: {state}");
    }
    Ok(EXIT_WAIT_TIMEOUT)
}

/// `== AGENT: exit N ==`, then the output (text, or base64 marked as
/// such), then a truncation note when the agent cut it.
fn print_answer(out: &mut impl Write, uuid: &str, a: &Value) {
    let _ = writeln!(out, "== {uuid}: exit {} ==", a["exit"]);
    if let Some(text) = a["output"].as_str() {
        let _ = out.write_all(text.as_bytes());
        if !text.is_empty() && !text.ends_with('\n') {
            let _ = writeln!(out);
        }
    } else if let Some(b64) = a["output_base64"].as_str() {
        let n = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_or(0, |b| b.len());
        let _ = writeln!(out, "({n} bytes of binary output, base64:)\n{b64}");
    }
    if a["truncated"] == true {
        let _ = writeln!(out, "(output truncated by the agent)");
    }
    let _ = out.flush();
}
