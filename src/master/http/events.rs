//! Live watchers of the fleet (the dashboard's Server-Sent Events stream):
//! each has a bounded queue; one that falls behind is dropped and counted
//! rather than slowing anything down.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use event_listener::{Event, EventListener};

use super::api::{agent_json, point_json};
use crate::master::registry::{FleetEvent, Registry};

/// Events queued per watcher before it is dropped as too slow.
pub const MAX_QUEUED: usize = 1024;

/// One SSE stream.
#[derive(Debug, Default)]
pub struct Watcher {
    queue: Mutex<VecDeque<Arc<str>>>,
    notify: Event,
    /// Set when the watcher fell behind and was dropped.
    pub overflowed: AtomicBool,
}

impl Watcher {
    /// Interest in the next event (create, then [`take`](Self::take), then await).
    pub fn listen(&self) -> EventListener {
        self.notify.listen()
    }

    /// Takes queued SSE messages.
    pub fn take(&self) -> VecDeque<Arc<str>> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// All watchers.
#[derive(Debug, Default)]
pub struct Watchers {
    list: Mutex<Vec<Arc<Watcher>>>,
    /// Watchers dropped for falling behind.
    pub dropped: AtomicU32,
}

impl Watchers {
    /// Registers a new watcher.
    pub fn add(&self) -> Arc<Watcher> {
        let w = Arc::new(Watcher::default());
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w.clone());
        w
    }

    /// Removes a watcher.
    pub fn remove(&self, w: &Arc<Watcher>) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| !Arc::ptr_eq(x, w));
    }

    /// Number of watchers.
    pub fn len(&self) -> usize {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Formats `events` as SSE messages and queues them for every watcher.
    pub fn publish(&self, events: &[FleetEvent], reg: &Registry) {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if list.is_empty() {
            return;
        }
        let msgs: Vec<Arc<str>> = events.iter().map(|e| Arc::from(sse(e, reg))).collect();
        list.retain(|w| {
            let mut q = w.queue.lock().unwrap_or_else(|p| p.into_inner());
            for m in &msgs {
                if !crate::master::push_bounded(&mut q, m.clone(), MAX_QUEUED) {
                    w.overflowed.store(true, Ordering::Relaxed);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    w.notify.notify(1);
                    return false;
                }
            }
            w.notify.notify(1);
            true
        });
    }
}

/// One SSE message: `event: TYPE`, `data: JSON`.
fn sse(e: &FleetEvent, reg: &Registry) -> String {
    let (kind, data) = match e {
        FleetEvent::Join(u) => (
            "join",
            match reg.agent(u) {
                Some(a) => agent_json(a, reg, false),
                None => serde_json::json!({ "uuid": u.to_string() }),
            },
        ),
        FleetEvent::Leave(u, code, reason) => (
            "leave",
            serde_json::json!({ "uuid": u.to_string(), "code": code, "reason": reason }),
        ),
        FleetEvent::Health(u, p) => (
            "health",
            serde_json::json!({ "uuid": u.to_string(), "point": point_json(p) }),
        ),
        FleetEvent::PushDelivered(id, u) => (
            "push_delivered",
            serde_json::json!({ "id": id, "uuid": u.to_string() }),
        ),
    };
    format!("event: {kind}\ndata: {data}\n\n")
}
