//! The push inbox: pushes from the master wait here, bounded in messages
//! and bytes, until the local consumer (the `--on-push` hook or an
//! `edge-gw inbox` reader) takes them. A push that does not fit is refused
//! (not acked), so the master keeps it and resends it later: the inbox
//! never drops a message it accepted.

use std::collections::VecDeque;

use crate::proto::v2::Push;

/// The bounded inbox.
#[derive(Debug)]
pub struct Inbox {
    items: VecDeque<Push>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    /// Pushes refused because the inbox was full.
    pub refused: u32,
}

/// Why a push was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Already waiting here (a resend): nothing to do.
    AlreadyQueued,
    /// The inbox is full; the push is handed back.
    Full(Push),
}

impl Inbox {
    /// An inbox of at most `max_items` pushes and `max_bytes` body bytes.
    pub fn new(max_items: usize, max_bytes: usize) -> Inbox {
        Inbox {
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
            refused: 0,
        }
    }

    /// Takes a push for local delivery.
    pub fn offer(&mut self, p: Push) -> Result<(), Refused> {
        if self.items.iter().any(|q| q.id == p.id) {
            return Err(Refused::AlreadyQueued);
        }
        if self.items.len() >= self.max_items || self.bytes + p.body.len() > self.max_bytes {
            self.refused = self.refused.saturating_add(1);
            return Err(Refused::Full(p));
        }
        self.bytes += p.body.len();
        self.items.push_back(p);
        Ok(())
    }

    /// The oldest waiting push.
    pub fn front(&self) -> Option<&Push> {
        self.items.front()
    }

    /// Removes push `id` (delivered, or given up to be resent).
    pub fn remove(&mut self, id: u64) -> Option<Push> {
        let i = self.items.iter().position(|p| p.id == id)?;
        let p = self.items.remove(i)?;
        self.bytes -= p.body.len();
        Some(p)
    }

    /// Pushes waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64, n: usize) -> Push {
        Push {
            id,
            sender: "s".into(),
            group: String::new(),
            body: vec![b'x'; n],
            want_result: false,
        }
    }

    #[test]
    fn bounds_duplicates_and_order() {
        let mut i = Inbox::new(2, 10);
        i.offer(p(1, 4)).unwrap();
        assert_eq!(i.offer(p(1, 4)), Err(Refused::AlreadyQueued));
        assert_eq!(i.offer(p(2, 7)), Err(Refused::Full(p(2, 7))));
        i.offer(p(3, 6)).unwrap();
        assert_eq!(i.offer(p(4, 0)), Err(Refused::Full(p(4, 0))));
        assert_eq!(i.refused, 2);
        assert_eq!(i.front().unwrap().id, 1);
        assert_eq!(i.remove(1).unwrap().id, 1);
        assert!(i.remove(1).is_none());
        i.offer(p(4, 0)).unwrap();
        assert_eq!(i.len(), 2);
    }
}
