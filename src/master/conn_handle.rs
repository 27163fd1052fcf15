//! The registry's handle on one connection task: a small bounded command
//! queue and a wakeup. Allocates nothing while idle.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use event_listener::{Event, EventListener};

use crate::proto::v2::{self, CloseCode};

/// Most commands waiting for one connection. A subscriber that cannot keep
/// up with fan-out hits this and is closed as a slow consumer.
pub const MAX_COMMANDS: usize = 256;

/// Work for a connection task.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Check the agent's outbox for pushes due.
    Wake,
    /// Forward another agent's report (v2 subscriber).
    Event(Arc<v2::Event>),
    /// Forward a legacy report body (v1 push subscriber).
    LegacyFanout(Arc<Vec<u8>>),
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
    queue: Mutex<VecDeque<Cmd>>,
    notify: Event,
}

/// The queue was full; the command is handed back.
#[derive(Debug)]
pub struct Full(pub Cmd);

impl ConnHandle {
    /// A handle for connection `id`.
    pub fn new(id: ConnId) -> Arc<ConnHandle> {
        Arc::new(ConnHandle {
            id,
            queue: Mutex::new(VecDeque::new()),
            notify: Event::new(),
        })
    }

    /// Queues a command and wakes the task. `Wake` is coalesced; `Kick`
    /// always fits (it ends everything anyway).
    pub fn send(&self, cmd: Cmd) -> Result<(), Full> {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            match cmd {
                Cmd::Wake if q.iter().any(|c| matches!(c, Cmd::Wake)) => {}
                Cmd::Kick(..) => q.push_back(cmd),
                _ if q.len() >= MAX_COMMANDS => return Err(Full(cmd)),
                _ => q.push_back(cmd),
            }
        }
        self.notify.notify(1);
        Ok(())
    }

    /// Registers interest in the next command. Create the listener, then
    /// check [`take`](Self::take), then await: no wakeup is lost.
    pub fn listen(&self) -> EventListener {
        self.notify.listen()
    }

    /// Takes every queued command.
    pub fn take(&self) -> VecDeque<Cmd> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_wake_coalesced_kick_always_fits() {
        let h = ConnHandle::new(1);
        h.send(Cmd::Wake).unwrap();
        h.send(Cmd::Wake).unwrap();
        assert_eq!(h.take().len(), 1);
        for _ in 0..MAX_COMMANDS {
            h.send(Cmd::LegacyFanout(Arc::new(vec![]))).unwrap();
        }
        assert!(h.send(Cmd::LegacyFanout(Arc::new(vec![]))).is_err());
        h.send(Cmd::Kick(CloseCode::Kicked, "x".into())).unwrap();
        assert_eq!(h.take().len(), MAX_COMMANDS + 1);
        assert!(h.take().is_empty());
    }
}
