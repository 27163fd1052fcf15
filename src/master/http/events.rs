//! The live event stream, `GET /api/events` (Server-Sent Events): the
//! dashboard's view of joins, leaves, health points and push deliveries as
//! they happen.
//!
//! Every open stream is a [`Watcher`] with a bounded queue; one that falls
//! behind is dropped and counted rather than slowing anything down, because
//! events are published while the registry is locked.

use std::collections::VecDeque;
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::{Event, EventListener};
use smol::future::FutureExt;
use smol::{Async, Timer};

use super::counters::Timeout;
use super::json_views::{agent_json, point_json};
use super::timed_io::{WriteFail, write_within};
use crate::master::Master;
use crate::master::registry::{FleetEvent, Registry};

/// Events queued per watcher before it is dropped as too slow: bounds the
/// memory one stalled browser can hold on the master.
pub const MAX_QUEUED: usize = 1024;

/// One open event stream. Its queue is filled by [`Watchers::publish`]
/// (under the registry lock) and drained by the stream's own task, so
/// neither waits for the other's socket.
#[derive(Debug, Default)]
pub struct Watcher {
    queue: Mutex<VecDeque<Arc<str>>>,
    notify: Event,
    /// Set when the watcher fell behind and was dropped, so its stream tells
    /// the page to reconnect instead of silently missing events.
    pub overflowed: AtomicBool,
}

impl Watcher {
    /// Interest in the next event. Create it, then [`take`](Self::take),
    /// then await it: in that order an event queued after the take still
    /// wakes the stream.
    pub fn listen(&self) -> EventListener {
        self.notify.listen()
    }

    /// Takes all queued SSE messages, so they go out in one write.
    pub fn take(&self) -> VecDeque<Arc<str>> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// All open event streams. The master owns it, so that every change to the
/// registry can be published to the streams from wherever it happens.
#[derive(Debug, Default)]
pub struct Watchers {
    list: Mutex<Vec<Arc<Watcher>>>,
    /// Watchers dropped for falling behind, shown in `/api/status` and
    /// `/metrics` so an operator can see streams being cut.
    pub dropped: AtomicU32,
}

impl Watchers {
    /// Registers a new watcher; it receives the events published from now
    /// on.
    pub fn add(&self) -> Arc<Watcher> {
        let w = Arc::new(Watcher::default());
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w.clone());
        w
    }

    /// Removes a watcher when its stream ends, so events are no longer
    /// queued for it.
    pub fn remove(&self, w: &Arc<Watcher>) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| !Arc::ptr_eq(x, w));
    }

    /// Number of open streams, shown in `/api/status` and `/metrics`.
    pub fn len(&self) -> usize {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no stream is open (the companion of [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Formats `events` as SSE messages once and queues them for every
    /// watcher. A watcher whose queue is full is dropped here rather than
    /// waited for, because the caller holds the registry lock.
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
        FleetEvent::PushAnswered(id, u, exit) => (
            "push_answered",
            serde_json::json!({ "id": id, "uuid": u.to_string(), "exit": exit }),
        ),
    };
    format!("event: {kind}\ndata: {data}\n\n")
}

/// The event stream's status line and headers (also a `HEAD`'s whole
/// answer). No `Content-Length`: the stream ends when the connection does.
pub(super) const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";

/// Streams fleet events as Server-Sent Events on `stream` until the client
/// leaves, falls behind, stops reading, or the master stops. The server
/// hands a connection over here after `GET /api/events`; the connection is
/// not reused after.
pub(super) async fn stream(master: &Master, mut stream: Async<TcpStream>, ip: IpAddr) {
    let head = format!("{HEAD}: edge-gw fleet events\n\n");
    if send(master, &mut stream, ip, head.as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let w = master.watchers().add();
    loop {
        let listener = w.listen();
        let msgs = w.take();
        if w.overflowed.load(Ordering::Relaxed) {
            let _ = send(
                master,
                &mut stream,
                ip,
                b"event: overflow\ndata: {\"error\":\"too slow, reconnect\"}\n\n",
            )
            .await;
            break;
        }
        if !msgs.is_empty() {
            let mut out = Vec::new();
            for m in msgs {
                out.extend_from_slice(m.as_bytes());
            }
            if send(master, &mut stream, ip, &out).await.is_err() {
                break;
            }
            continue;
        }
        // Checked after sending what was queued, so the last `leave`
        // events before a shutdown still reach the page.
        if master.stopping.load(Ordering::Relaxed) {
            break;
        }
        // Wake on an event, on shutdown, or every 15 s for a keepalive
        // comment (which also notices a client that went away).
        let ev = async {
            listener.await;
            true
        };
        let stop = async {
            master.stop_event.listen().await;
            true
        };
        let tick = async {
            Timer::after(Duration::from_secs(15)).await;
            false
        };
        if !ev.or(stop).or(tick).await
            && send(master, &mut stream, ip, b": keepalive\n\n")
                .await
                .is_err()
        {
            break;
        }
    }
    master.watchers().remove(&w);
}

/// One write to the stream, bounded by `write_timeout` like the agents'
/// writes: a client that stops reading would otherwise keep the socket
/// (and the kernel its buffers) for as long as it answers window probes.
/// A stalled write is counted and logged; a failed one (client gone) is
/// not, as that is how streams normally end.
async fn send(
    master: &Master,
    stream: &mut Async<TcpStream>,
    ip: IpAddr,
    bytes: &[u8],
) -> Result<(), WriteFail> {
    let limit = master.settings().write_timeout;
    let r = write_within(stream, bytes, limit).await;
    if r == Err(WriteFail::Stalled) {
        master
            .http_counters()
            .note_timeout(ip, Timeout::Write, limit);
    }
    r
}
