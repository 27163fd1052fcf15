//! The registry's handle on one connection task: a small bounded command
//! queue and the task's waker. Allocates nothing while idle, and waiting
//! for a command costs no allocation either (the waker is stored in place).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::proto::frame::SharedBody;
use crate::proto::v2::CloseCode;
use crate::session::legacy::LegacyFanout;

/// Most commands waiting for one connection. A subscriber that cannot keep
/// up with fan-out hits this and is closed as a slow consumer.
pub const MAX_COMMANDS: usize = 256;

/// Work for a connection task.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Check the agent's outbox for pushes due.
    Wake,
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

    /// Queues a command and wakes the task. `Wake` is coalesced; `Kick`
    /// always fits (it ends everything anyway).
    pub fn send(&self, cmd: Cmd) -> Result<(), Full> {
        let waker = {
            let mut inner = self.lock();
            match cmd {
                Cmd::Wake if inner.queue.iter().any(|c| matches!(c, Cmd::Wake)) => {}
                Cmd::Kick(..) => inner.queue.push_back(cmd),
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

    #[test]
    fn bounded_wake_coalesced_kick_always_fits() {
        let h = ConnHandle::new(1);
        let body = Arc::new(LegacyFanout::new(Vec::new()));
        h.send(Cmd::Wake).unwrap();
        h.send(Cmd::Wake).unwrap();
        assert_eq!(h.take().len(), 1);
        for _ in 0..MAX_COMMANDS {
            h.send(Cmd::LegacyFanout(body.clone())).unwrap();
        }
        assert!(h.send(Cmd::LegacyFanout(body)).is_err());
        h.send(Cmd::Kick(CloseCode::Kicked, "x".into())).unwrap();
        assert_eq!(h.take().len(), MAX_COMMANDS + 1);
        assert!(h.take().is_empty());
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
        h.send(Cmd::Wake).unwrap();
        h.send(Cmd::Wake).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        match h.poll_take(&mut cx) {
            Poll::Ready(q) => assert_eq!(q.len(), 1),
            Poll::Pending => panic!("a command was queued"),
        }
        // Not waiting: a send wakes nobody.
        h.send(Cmd::Wake).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
