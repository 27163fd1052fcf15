//! Helpers shared by the push log's tests and the push router's.

use std::path::PathBuf;

use crate::proto::{Uuid, v2};

/// A fresh, empty scratch directory for one test.
pub(crate) fn tmpdir(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edge-gw-{tag}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    // ok: test-only module (cfg(test)); a failing scratch set-up should fail the test
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A uuid from text.
pub(crate) fn uuid(s: &str) -> Uuid {
    // ok: test-only module (cfg(test)); a failing scratch set-up should fail the test
    Uuid::from_text(s).unwrap()
}

/// A push with this body, id 0 (the log assigns ids).
pub(crate) fn push(body: &[u8]) -> v2::Push {
    v2::Push {
        id: 0,
        sender: "test".into(),
        group: String::new(),
        body: body.to_vec(),
        want_result: false,
    }
}
