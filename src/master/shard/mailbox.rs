//! How other threads reach a shard: an eventfd that wakes its epoll wait,
//! and the lists of what they want it to look at (connections with new
//! commands, sockets handed over by another shard's accept, a stop).
//!
//! Waking costs one eventfd write per sleep of the shard at most: a flag
//! says a wakeup is already on its way, so a burst of fan-out to hundreds
//! of the shard's connections is one syscall, not hundreds.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::super::conn_handle::ConnId;

/// A connection's place in its shard: slot index and the slot's generation,
/// so a note for a connection that has closed (and whose slot was reused)
/// is recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

impl Token {
    /// The token of `slot` in generation `generation`.
    pub fn new(slot: u32, generation: u32) -> Token {
        Token((u64::from(generation) << 32) | u64::from(slot))
    }

    /// The slot index.
    pub fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The slot's generation.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A socket accepted by one shard for another to serve.
#[derive(Debug)]
pub struct HandedOver {
    /// The connection.
    pub stream: TcpStream,
    /// Its peer.
    pub addr: SocketAddr,
    /// Its id, taken from the registry when it was admitted.
    pub id: ConnId,
}

/// What a shard takes from its mailbox in one go. Both lists are bounded
/// without a cap of their own: a connection is noted at most once until
/// the shard takes its commands (`ConnHandle`), and a socket is handed
/// over only once admitted under `max_connections`.
#[derive(Debug, Default)]
pub struct Mail {
    /// Connections with commands waiting in their handles.
    pub ready: Vec<Token>,
    /// Sockets to serve.
    pub handed_over: Vec<HandedOver>,
    /// The master is done: close everything and end the thread.
    pub stop: bool,
}

/// A shard's mailbox (see the module docs).
#[derive(Debug)]
pub struct Mailbox {
    wake_fd: OwnedFd,
    /// Set by the first notifier after the shard last emptied the box;
    /// later notifiers skip the eventfd write.
    signalled: AtomicBool,
    /// Liveness checks sent ([`ping`](Mailbox::ping)) and the last one the
    /// shard answered by taking its mail.
    pings_sent: AtomicU32,
    pings_answered: AtomicU32,
    mail: Mutex<Mail>,
}

impl Mailbox {
    /// A mailbox with its own non-blocking eventfd.
    pub fn new() -> std::io::Result<Mailbox> {
        use rustix::event::{EventfdFlags, eventfd};
        let wake_fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Mailbox {
            wake_fd,
            signalled: AtomicBool::new(false),
            pings_sent: AtomicU32::new(0),
            pings_answered: AtomicU32::new(0),
            mail: Mutex::new(Mail::default()),
        })
    }

    /// The eventfd the shard's epoll watches.
    pub fn wake_fd(&self) -> &OwnedFd {
        &self.wake_fd
    }

    fn lock(&self) -> MutexGuard<'_, Mail> {
        self.mail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the shard that connection `token` has commands.
    pub fn notify(&self, token: Token) {
        self.lock().ready.push(token);
        self.wake();
    }

    /// Hands the shard an accepted socket to serve.
    pub fn hand_over(&self, conn: HandedOver) {
        self.lock().handed_over.push(conn);
        self.wake();
    }

    /// Asks the shard to close its connections and end.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake();
    }

    /// Asks the shard to show it still turns its loop (the systemd
    /// watchdog's check): answered when it next takes its mail.
    pub fn ping(&self) {
        self.pings_sent.fetch_add(1, Ordering::AcqRel);
        self.wake();
    }

    /// Whether the shard has answered every [`ping`](Self::ping) so far.
    pub fn answered(&self) -> bool {
        self.pings_answered.load(Ordering::Acquire) == self.pings_sent.load(Ordering::Acquire)
    }

    /// Whether mail is (probably) waiting: the shard looks before sleeping.
    pub fn is_signalled(&self) -> bool {
        self.signalled.load(Ordering::Acquire)
    }

    fn wake(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            // EAGAIN (the counter is full) still leaves it readable.
            let _ = rustix::io::write(&self.wake_fd, &1u64.to_ne_bytes());
        }
    }

    /// Takes everything waiting, swapping in `spare`'s emptied vectors so
    /// their capacity is reused. The flag is cleared and the eventfd
    /// drained *before* the lists are taken: a notifier that comes after
    /// the take finds the flag clear and writes again, so nothing waits
    /// unseen.
    pub fn take(&self, spare: &mut Mail) {
        self.signalled.store(false, Ordering::Release);
        self.pings_answered
            .store(self.pings_sent.load(Ordering::Acquire), Ordering::Release);
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.wake_fd, &mut buf);
        spare.ready.clear();
        spare.handed_over.clear();
        let mut mail = self.lock();
        std::mem::swap(&mut mail.ready, &mut spare.ready);
        std::mem::swap(&mut mail.handed_over, &mut spare.handed_over);
        spare.stop = mail.stop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: &OwnedFd) -> bool {
        let mut buf = [0u8; 8];
        // A non-blocking eventfd reads 8 bytes when set, EAGAIN when not.
        rustix::io::read(fd, &mut buf).is_ok()
    }

    #[test]
    fn tokens_keep_slot_and_generation() {
        let t = Token::new(7, 3);
        assert_eq!((t.slot(), t.generation()), (7, 3));
        let t = Token::new(u32::MAX, u32::MAX);
        assert_eq!((t.slot(), t.generation()), (u32::MAX as usize, u32::MAX));
    }

    #[test]
    fn a_burst_of_notes_is_one_wakeup_and_none_is_lost() {
        let m = Mailbox::new().unwrap();
        for i in 0..100 {
            m.notify(Token::new(i, 0));
        }
        assert!(m.is_signalled());
        let mut mail = Mail::default();
        m.take(&mut mail);
        assert_eq!(mail.ready.len(), 100);
        assert!(!readable(m.wake_fd()), "take drained the eventfd");
        // A note after the take wakes the shard again.
        m.notify(Token::new(1, 1));
        assert!(readable(m.wake_fd()));
        m.take(&mut mail);
        assert_eq!(mail.ready, [Token::new(1, 1)]);
        assert!(!mail.stop);
        m.stop();
        m.take(&mut mail);
        assert!(mail.stop && mail.ready.is_empty());
    }

    #[test]
    fn a_ping_is_answered_by_the_next_take() {
        let m = Mailbox::new().unwrap();
        assert!(m.answered(), "nothing asked yet");
        m.ping();
        assert!(!m.answered());
        assert!(m.is_signalled(), "a ping wakes the shard");
        m.take(&mut Mail::default());
        assert!(m.answered());
    }
}
