//! The cluster's listener thread: subscribed to this master's channel
//! and to the fan-out channel on a connection of its own (a subscribed
//! Redis connection can do nothing else).
//!
//! Notes for this master become worker jobs (`kick` → fence a session,
//! `push` → fetch); reports from other masters go straight to the local
//! subscribers through the registry. Notes are at most once (Redis
//! pub/sub); nothing depends on them alone: every (re)subscription asks
//! the worker to resync, and each refresh fetches pushes an agent here is
//! missing and fences claims another master took.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::scripts::{FANOUT_CHANNEL, node_channel};
use super::{Cluster, Job, wire};
use crate::master::registry::Registry;
use crate::proto::Uuid;

pub(super) struct Listener {
    c: Arc<Cluster>,
    client: redis::Client,
    registry: Arc<Mutex<Registry>>,
}

impl Listener {
    pub(super) fn new(
        c: Arc<Cluster>,
        client: redis::Client,
        registry: Arc<Mutex<Registry>>,
    ) -> Listener {
        Listener {
            c,
            client,
            registry,
        }
    }

    /// Subscribes, listens, and starts again after any error. The worker
    /// logs Redis's state; this thread only at debug level.
    pub(super) fn run(self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.listen() {
                Ok(()) => return,
                Err(e) => {
                    log::debug!("cluster listener: {e}; subscribing again");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn listen(&self) -> redis::RedisResult<()> {
        let mut con = self
            .client
            .get_connection_with_timeout(Duration::from_secs(2))?;
        let mut ps = con.as_pubsub();
        let mine = node_channel(&self.c.node);
        ps.subscribe(&mine)?;
        ps.subscribe(FANOUT_CHANNEL)?;
        // Woken every second even when quiet, so a dead connection that
        // never errors is noticed by the ping below.
        ps.set_read_timeout(Some(Duration::from_secs(1)))?;
        // Notes sent while we were not subscribed are lost: resync.
        let _ = self.c.jobs.try_send(Job::Resync);
        let mut quiet = 0u32;
        loop {
            let msg = match ps.get_message() {
                Ok(m) => m,
                Err(e) if e.is_timeout() => {
                    quiet += 1;
                    if quiet >= 5 {
                        quiet = 0;
                        ps.ping::<()>()?;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            quiet = 0;
            let payload = msg.get_payload_bytes();
            if msg.get_channel_name() == mine {
                self.note(payload);
            } else {
                self.fanout(payload);
            }
        }
    }

    /// `kick UUID EPOCH` or `push UUID`.
    fn note(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let mut words = text.split(' ');
        let job = match (words.next(), words.next(), words.next()) {
            (Some("kick"), Some(u), Some(e)) => Uuid::from_text(u)
                .zip(e.parse::<u64>().ok())
                .map(|(u, e)| Job::Kick(u, e)),
            (Some("push"), Some(u), None) => Uuid::from_text(u).map(Job::Fetch),
            _ => None,
        };
        match job {
            Some(j) => {
                let _ = self.c.send(j, "note");
            }
            None => crate::log_limited!(
                log::Level::Warn,
                "cluster-note",
                "cluster: unreadable note on this master's channel: {text:?}"
            ),
        }
    }

    fn fanout(&self, payload: &[u8]) {
        match wire::decode(payload) {
            Ok((from, r)) => {
                if from == self.c.node.as_bytes() {
                    return;
                }
                self.c.count(|s| s.reports_in += 1);
                self.registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remote_report(r);
            }
            Err(why) => crate::log_limited!(
                log::Level::Warn,
                "cluster-fanout",
                "cluster: unreadable fan-out message ({why})"
            ),
        }
    }
}
