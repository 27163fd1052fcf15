//! The registry's handle on one connection: a small bounded command queue
//! and the note to its shard. Allocates nothing while idle; the first
//! command after the shard last took them notes the connection in the
//! shard's mailbox (one note however many commands follow).
//!
//! Everything the registry wants a connection to send comes this way,
//! pushes included: the connection never has to come back to the
//! registry to find out what a command meant.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::proto::frame::SharedBody;
use crate::proto::v2::{self, CloseCode};
use crate::session::legacy::LegacyFanout;

use super::shard::mailbox::{Mailbox, Token};

/// Most commands waiting for one connection. A subscriber that cannot keep
/// up with fan-out hits this and is closed as a slow consumer. Pushes do
/// not count against it (see [`ConnHandle::send_pushes`]).
pub const MAX_COMMANDS: usize = 256;

/// Work for a connection.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Send this push to the agent: the registry's outbox has marked it
    /// sent (it stays queued there until acked). Shared with the outbox,
    /// not copied.
    Push {
        /// The push, as accepted and logged.
        push: Arc<v2::Push>,
        /// When the agent's outbox next wants a resend (the earliest
        /// unacked push's send time plus `push_resend`): the connection
        /// asks the registry for the pushes due again at that time.
        resend_at: Instant,
    },
    /// Forward another agent's report (v2 subscriber): the Event body,
    /// serialised once for all subscribers.
    Event(Arc<SharedBody>),
    /// Forward a legacy report (v1 push subscriber): the fan-out bodies,
    /// each made once for all subscribers.
    LegacyFanout(Arc<LegacyFanout>),
    /// Tell the agent its result for this push is stored in the push log
    /// (`PushResultStored`), so it may forget it.
    ResultStored(u64),
    /// Close the connection.
    Kick(CloseCode, String),
}

/// Connection id, unique for the master's lifetime.
pub type ConnId = u64;

/// Shared between a connection's shard and the registry.
#[derive(Debug)]
pub struct ConnHandle {
    /// Connection id.
    pub id: ConnId,
    /// Where to note that commands wait (`None`: nobody is told; tests
    /// take the queue themselves).
    shard: Option<(Arc<Mailbox>, Token)>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Cmd>,
    /// The shard has been told and has not taken the queue since.
    noted: bool,
}

/// The queue was full; the command is handed back.
#[derive(Debug)]
pub struct Full(pub Cmd);

impl ConnHandle {
    /// A handle for connection `id` that tells nobody of its commands
    /// (tests of the registry take them with [`take`](Self::take)).
    pub fn new(id: ConnId) -> Arc<ConnHandle> {
        Arc::new(ConnHandle {
            id,
            shard: None,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// A handle for connection `id`, served at `token` by the shard that
    /// owns `mailbox`.
    pub fn in_shard(id: ConnId, mailbox: Arc<Mailbox>, token: Token) -> Arc<ConnHandle> {
        Arc::new(ConnHandle {
            id,
            shard: Some((mailbox, token)),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Notes the connection in its shard's mailbox, outside the queue's
    /// lock, if `first` says this is the first command since the last take.
    fn tell(&self, first: bool) {
        if first && let Some((mailbox, token)) = &self.shard {
            mailbox.notify(*token);
        }
    }

    /// Marks the queue as noted; `true` when it was not yet.
    fn note(inner: &mut Inner) -> bool {
        !std::mem::replace(&mut inner.noted, true)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a command and tells the shard. `Kick` and `Push` always fit:
    /// a kick ends everything anyway, and pushes are bounded by the
    /// agent's in-flight window (see [`send_pushes`](Self::send_pushes)).
    pub fn send(&self, cmd: Cmd) -> Result<(), Full> {
        let first = {
            let mut inner = self.lock();
            match cmd {
                Cmd::Kick(..) | Cmd::Push { .. } => inner.queue.push_back(cmd),
                _ if inner.queue.len() >= MAX_COMMANDS => return Err(Full(cmd)),
                _ => inner.queue.push_back(cmd),
            }
            Self::note(&mut inner)
        };
        self.tell(first);
        Ok(())
    }

    /// Hands pushes to the connection, in order, with one lock and one note.
    ///
    /// They always fit, whatever [`MAX_COMMANDS`] says: the registry hands
    /// out only what the agent's outbox lets into its in-flight window
    /// (`outbox_in_flight`, up to 4096, more than the command bound) per
    /// resend period, and refusing one would leave it marked sent but
    /// never sent until its resend.
    pub fn send_pushes(&self, pushes: Vec<Arc<v2::Push>>, resend_at: Instant) {
        let first = {
            let mut inner = self.lock();
            inner
                .queue
                .extend(pushes.into_iter().map(|push| Cmd::Push { push, resend_at }));
            Self::note(&mut inner)
        };
        self.tell(first);
    }

    /// Drops the pushes not yet taken by the shard: the agent's session
    /// moved to another connection, which is handed them again.
    pub fn withdraw_pushes(&self) {
        self.lock().queue.retain(|c| !matches!(c, Cmd::Push { .. }));
    }

    /// Takes every queued command (the shard, when noted). Commands sent
    /// after this note the connection again.
    pub fn take(&self) -> VecDeque<Cmd> {
        let mut inner = self.lock();
        inner.noted = false;
        std::mem::take(&mut inner.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(id: u64) -> Arc<v2::Push> {
        Arc::new(v2::Push {
            id,
            sender: String::new(),
            group: String::new(),
            body: Vec::new(),
            want_result: false,
        })
    }

    #[test]
    fn bounded_kick_and_pushes_always_fit() {
        let h = ConnHandle::new(1);
        let body = Arc::new(LegacyFanout::new(Vec::new()));
        for _ in 0..MAX_COMMANDS {
            h.send(Cmd::LegacyFanout(body.clone())).unwrap();
        }
        assert!(h.send(Cmd::LegacyFanout(body)).is_err());
        h.send(Cmd::Kick(CloseCode::Kicked, "x".into())).unwrap();
        h.send_pushes(vec![push(1), push(2)], Instant::now());
        assert_eq!(h.take().len(), MAX_COMMANDS + 3);
        assert!(h.take().is_empty());
    }

    #[test]
    fn a_push_command_is_no_larger_than_a_kick() {
        // Every queued command costs this much, fan-out ones included.
        assert!(std::mem::size_of::<Cmd>() <= 32);
    }

    #[test]
    fn withdrawn_pushes_leave_other_commands_in_order() {
        let h = ConnHandle::new(1);
        let t = Instant::now();
        h.send_pushes(vec![push(1)], t);
        h.send(Cmd::Kick(CloseCode::Replaced, "x".into())).unwrap();
        h.send_pushes(vec![push(2), push(3)], t);
        let ids = |q: VecDeque<Cmd>| -> Vec<Option<u64>> {
            q.iter()
                .map(|c| match c {
                    Cmd::Push { push, .. } => Some(push.id),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(ids(h.take()), [Some(1), None, Some(2), Some(3)]);
        h.send_pushes(vec![push(1)], t);
        h.send(Cmd::Kick(CloseCode::Replaced, "x".into())).unwrap();
        h.send_pushes(vec![push(2)], t);
        h.withdraw_pushes();
        assert_eq!(ids(h.take()), [None]);
    }

    #[test]
    fn the_shard_is_told_once_until_it_takes_the_queue() {
        use super::super::shard::mailbox::Mail;
        let mailbox = Arc::new(Mailbox::new().unwrap());
        let token = Token::new(5, 2);
        let h = ConnHandle::in_shard(1, mailbox.clone(), token);
        h.send_pushes(vec![push(1), push(2)], Instant::now());
        h.send(Cmd::Kick(CloseCode::Kicked, "x".into())).unwrap();
        let mut mail = Mail::default();
        mailbox.take(&mut mail);
        assert_eq!(mail.ready, [token], "noted once");
        assert_eq!(h.take().len(), 3);
        // Taken: the next command notes it again.
        h.send_pushes(vec![push(3)], Instant::now());
        mailbox.take(&mut mail);
        assert_eq!(mail.ready, [token]);
        // A full queue refuses without a note.
        let body = Arc::new(LegacyFanout::new(Vec::new()));
        while h.send(Cmd::LegacyFanout(body.clone())).is_ok() {}
        mailbox.take(&mut mail);
        assert!(mail.ready.is_empty(), "still noted from the push");
    }
}
