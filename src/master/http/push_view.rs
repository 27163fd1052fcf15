//! `GET /api/pushes/{id}`: a push's state per agent, answers included.
//!
//! Kept apart from the routes because it joins two tables with different
//! lifetimes: delivery states live for this run (the last
//! [`DONE_PUSHES_KEPT`](crate::master::registry::DONE_PUSHES_KEPT)), stored
//! answers survive restarts in the push log. A push known only by its
//! answers (the master restarted after delivery) still shows them.

use base64::Engine;
use serde_json::{Value, json};

use crate::master::push_log::Answer;
use crate::master::registry::{Delivery, Registry};
use crate::proto::Uuid;

/// The push's JSON view, or `None` when nothing is known about it. Each
/// target is `queued`, `delivered`, `cancelled`, `undeliverable` (with a
/// `reason`) or `answered` (with an `answer` object); `awaiting_answer` says a delivered target still owes
/// one.
pub fn push_json(reg: &Registry, id: u64) -> Option<Value> {
    let status = reg.push_status(id);
    let answers = reg.push_answers(id);
    if status.is_none() && answers.is_empty() {
        return None;
    }
    let answer_of = |u: &Uuid| answers.iter().find(|(a, _)| a == u).map(|(_, a)| a);
    let mut targets: Vec<Value> = Vec::new();
    let mut listed: Vec<Uuid> = Vec::new();
    if let Some(st) = status {
        for (u, d) in &st.targets {
            listed.push(*u);
            let state = match (d, answer_of(u)) {
                (_, Some(_)) => "answered",
                (Delivery::Queued, None) => "queued",
                (Delivery::Delivered, None) => "delivered",
                (Delivery::Cancelled, None) => "cancelled",
                (Delivery::Undeliverable { .. }, None) => "undeliverable",
            };
            let mut t = target_json(u, state, answer_of(u), reg.awaits_answer(id, u));
            if let Delivery::Undeliverable { inbox_bytes } = d {
                t["reason"] = json!(format!(
                    "push body larger than the agent's push inbox ({inbox_bytes} bytes)"
                ));
            }
            targets.push(t);
        }
    }
    for (u, a) in answers {
        if !listed.contains(u) {
            targets.push(target_json(u, "answered", Some(a), false));
        }
    }
    Some(json!({
        "id": id,
        "accepted_unix_ms": status.map(|s| s.unix_ms),
        "targets": targets,
    }))
}

fn target_json(u: &Uuid, state: &str, answer: Option<&Answer>, awaiting: bool) -> Value {
    let mut v = json!({ "uuid": u.to_string(), "state": state });
    if awaiting {
        v["awaiting_answer"] = json!(true);
    }
    if let Some(a) = answer {
        v["answer"] = answer_json(a);
    }
    v
}

/// An answer: `output` as text when it is UTF-8, else `output_base64`
/// (a hook may print anything; JSON strings cannot hold raw bytes).
pub fn answer_json(a: &Answer) -> Value {
    let mut v = json!({
        "exit": a.exit,
        "truncated": a.truncated,
        "at_unix_ms": a.at_unix_ms,
        "stored_unix_ms": a.stored_unix_ms,
    });
    match std::str::from_utf8(&a.output) {
        Ok(text) => v["output"] = json!(text),
        Err(_) => {
            v["output_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&a.output))
        }
    }
    v
}
