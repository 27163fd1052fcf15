//! The push delivery worker: hands pushes from the inbox to the
//! `--on-push` hook, oldest first, and records each hook's start and
//! outcome in the [`DeliveryJournal`](super::delivery_journal) *before*
//! anything else can happen to the push — the start before the hook runs,
//! the outcome before the ack is queued — so that no restart order of
//! agent and master makes the hook run twice for one push id.
//!
//! Without a hook, `edge-gw inbox` takes pushes through the
//! [`local`](super::local) socket instead, and this worker does nothing.

use std::time::Duration;

use super::hook;
use super::state::Shared;

/// Runs the hook for each push that reaches the inbox, until dropped.
pub async fn run(shared: Shared, hook_cmd: Option<String>, timeout: Duration) {
    let Some(cmd) = hook_cmd else { return };
    loop {
        let _ = shared.wake_delivery.1.recv().await;
        loop {
            let Some(p) = shared.state.borrow().inbox.front().cloned() else {
                break;
            };
            if let Err(e) = shared.state.borrow_mut().journal.begin(p.id) {
                log::warn!(
                    "push {}: cannot record that its hook starts ({e}); if the agent dies during the hook, the hook runs again",
                    p.id
                );
            }
            let r = hook::run(&cmd, &p, timeout).await;
            let mut st = shared.state.borrow_mut();
            st.inbox.remove(p.id);
            match r {
                Ok(()) => {
                    if let Err(e) = st.journal.delivered_now(p.id) {
                        log::warn!(
                            "push {}: cannot record its delivery ({e}); if the agent restarts before the master has the ack, the hook runs again",
                            p.id
                        );
                    }
                    log::info!("push {} delivered to the hook", p.id);
                    st.acked.push_back(p.id);
                    st.counters.delivered += 1;
                }
                Err(e) => {
                    if let Err(w) = st.journal.retry(p.id) {
                        log::warn!("push {}: cannot record the hook's failure ({w})", p.id);
                    }
                    log::warn!(
                        "push {}: hook failed ({e}); not acked, the master will resend it",
                        p.id
                    );
                    st.refused.push_back(p.id);
                    st.counters.hook_failures += 1;
                }
            }
            drop(st);
            shared.poke_conn();
        }
    }
}

/// Called once the worker was dropped at shutdown, which killed a hook
/// still running (the `--on-push` contract: only exit 0 means taken, as
/// for a hook that times out). Records those pushes as not taken, so the
/// next agent runs them again instead of holding them as interrupted.
pub fn stopped(shared: &Shared) {
    let mut st = shared.state.borrow_mut();
    for id in st.journal.running().to_vec() {
        log::warn!("push {id}: hook stopped by the shutdown; it runs again after the restart");
        if let Err(e) = st.journal.retry(id) {
            log::warn!("push {id}: cannot record that its hook was stopped ({e})");
        }
    }
}
