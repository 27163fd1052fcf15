//! The registry's handle on one connection task: a small bounded command
//! queue and the task's waker. Allocates nothing while idle, and waiting
//! for a command costs no allocation either (the waker is stored in place).
//!
//! Everything the registry wants a connection to send comes this way,
//! pushes included: the connection never has to come back to the
//! registry to find out what a command meant.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::proto::frame::SharedBody;
use crate::proto::v2::{self, CloseCode};
use crate::session::legacy::LegacyFanout;

/// Most commands waiting for one connection. A subscriber that cannot keep
/// up with fan-out hits this and is closed as a slow consumer. Pushes do
/// not count against it (see [`ConnHandle::send_pushes`]).
pub const MAX_COMMANDS: usize = 256;

/// Work for a connection task.
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
    /// Close the connection.
    Kick(CloseCode, String),
}

/// Connection id, unique for the master's lifetime.
pub type ConnId = u64;

/// Shared between a connection task and the registry.
#[derive(Debug)]
pub struct ConnHandle {
    /// Connection id.
    pub id: ConnId,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Cmd>,
    /// The task to wake on the next command, set while it waits.
    waker: Option<Waker>,
}

/// The queue was full; the command is handed back.
#[derive(Debug)]
pub struct Full(pub Cmd);

impl ConnHandle {
    /// A handle for connection `id`.
    pub fn new(id: ConnId) -> Arc<ConnHandle> {
        Arc::new(ConnHandle {
            id,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a command and wakes the task. `Kick` and `Push` always fit:
    /// a kick ends everything anyway, and pushes are bounded by the
    /// agent's in-flight window (see [`send_pushes`](Self::send_pushes)).
    pub fn send(&self, cmd: Cmd) -> Result<(), Full> {
        let waker = {
            let mut inner = self.lock();
            match cmd {
                Cmd::Kick(..) | Cmd::Push { .. } => inner.queue.push_back(cmd),
                _ if inner.queue.len() >= MAX_COMMANDS => return Err(Full(cmd)),
                _ => inner.queue.push_back(cmd),
            }
            inner.waker.take()
        };
        // Woken outside the lock: the task takes it as soon as it runs.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Hands pushes to the task, in order, with one lock and one wakeup.
    ///
    /// They always fit, whatever [`MAX_COMMANDS`] says: the registry hands
    /// out only what the agent's outbox lets into its in-flight window
    /// (`outbox_in_flight`, up to 4096, more than the command bound) per
    /// resend period, and refusing one would leave it marked sent but
    /// never sent until its resend.
    pub fn send_pushes(&self, pushes: Vec<Arc<v2::Push>>, resend_at: Instant) {
        let waker = {
            let mut inner = self.lock();
            inner
                .queue
                .extend(pushes.into_iter().map(|push| Cmd::Push { push, resend_at }));
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Drops the pushes not yet taken by the task: the agent's session
    /// moved to another connection, which is handed them again.
    pub fn withdraw_pushes(&self) {
        self.lock().queue.retain(|c| !matches!(c, Cmd::Push { .. }));
    }

    /// Takes every queued command, or, when there is none, registers the
    /// task to be woken by the next [`send`](Self::send). Checking and
    /// registering happen under one lock, so no wakeup is lost.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<VecDeque<Cmd>> {
        let mut inner = self.lock();
        if !inner.queue.is_empty() {
            return Poll::Ready(std::mem::take(&mut inner.queue));
        }
        match &inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes every queued command without waiting (tests: the task uses
    /// [`poll_take`](Self::poll_take)).
    #[cfg(test)]
    pub fn take(&self) -> VecDeque<Cmd> {
        std::mem::take(&mut self.lock().queue)
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
    fn a_waiting_task_is_woken_once_by_a_send() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let h = ConnHandle::new(1);
        assert!(h.poll_take(&mut cx).is_pending());
        assert!(h.poll_take(&mut cx).is_pending(), "re-registering is fine");
        h.send_pushes(vec![push(1), push(2)], Instant::now());
        h.send(Cmd::Kick(CloseCode::Kicked, "x".into())).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        match h.poll_take(&mut cx) {
            Poll::Ready(q) => assert_eq!(q.len(), 3),
            Poll::Pending => panic!("a command was queued"),
        }
        // Not waiting: a send wakes nobody.
        h.send_pushes(vec![push(3)], Instant::now());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
