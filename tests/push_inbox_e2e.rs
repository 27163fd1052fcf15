//! Pushes larger than an agent's inbox, against real processes: agents
//! announce their inbox in their Hello, and the master refuses a push no
//! target could take (413 naming them) or marks the targets too small for
//! it undeliverable, instead of resending it every 30 s forever.
#![cfg(all(feature = "agent", feature = "master"))]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn a_push_larger_than_the_inbox_is_refused_or_marked_undeliverable() {
    let dir = TempDir::new("inbox");
    let m = Master::start(&dir, &[]);
    // "small" keeps the default 256 KiB inbox; "big" has 1 MiB.
    let _small = agent(&dir, "small", &m, &["--group", "g"]);
    let conf = dir.path().join("big.conf");
    std::fs::write(&conf, "inbox_bytes = 1048576\n").unwrap();
    let out = dir.path().join("pushed");
    let hook = format!("cat > {}", out.display());
    let _big = agent(
        &dir,
        "big",
        &m,
        &[
            "--group",
            "g",
            "--config",
            conf.to_str().unwrap(),
            "--on-push",
            &hook,
        ],
    );
    m.wait_reports("small", 1, T);
    m.wait_reports("big", 1, T);
    let body = "x".repeat(300_000);

    // Addressed to the small agent alone: refused at the API, named.
    let e = m
        .try_request(
            "POST",
            "/api/push",
            Some(&json!({ "to": "small", "body": body })),
        )
        .unwrap_err();
    assert!(e.contains("HTTP 413"), "{e}");
    assert!(e.contains("small (262144 bytes)"), "{e}");
    let st = m.get("/api/status");
    assert_eq!(st["pushes"]["refused"]["inbox_too_small"], 1, "{st}");

    // To the group: queued for the agent that can take it, undeliverable
    // (with the reason) for the one that cannot; never resent to it.
    let v = m
        .try_request(
            "POST",
            "/api/push",
            Some(&json!({ "to": "group:g", "body": body })),
        )
        .unwrap();
    assert_eq!(v["targets"], json!(["big"]), "{v}");
    assert_eq!(v["undeliverable"], json!(["small"]), "{v}");
    let id = v["id"].as_u64().unwrap();
    let st = wait_for(T, "the push to be delivered to big", || {
        let st = m.get(&format!("/api/pushes/{id}"));
        let targets = st["targets"].as_array()?.clone();
        targets
            .iter()
            .any(|t| t["uuid"] == "big" && t["state"] == "delivered")
            .then_some(targets)
    });
    let small = st.iter().find(|t| t["uuid"] == "small").unwrap();
    assert_eq!(small["state"], "undeliverable", "{st:?}");
    assert!(
        small["reason"]
            .as_str()
            .unwrap()
            .contains("push inbox (262144 bytes)"),
        "{st:?}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().len(), 300_000);
    let a = m.agent("small").unwrap();
    assert_eq!(a["counters"]["pushes_refused"], 0, "{a}");
}
