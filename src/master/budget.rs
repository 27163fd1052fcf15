//! The master's memory budget: one configured figure (`memory_budget`)
//! bounding the bytes that peers can make the master hold — partial frames
//! in connection decoders, frames waiting in send queues, and health bodies
//! kept for the API — so that no flood of connections or uuids can grow
//! memory without bound.
//!
//! Bytes are counted atomically by kind and by class. Unauthenticated
//! holders (connections whose peer has not proved a key: handshakes,
//! legacy v1 and plaintext sessions, and the bodies legacy clients leave
//! behind) may use at most half of the budget, so that when a flood fills
//! it, authenticated agents still have the other half: the newest and
//! unauthenticated consumers are refused first. Authenticated connections
//! are refused only when the whole budget is spent. Every refusal is
//! counted, by what was refused.
//!
//! The counts are the sizes of buffers the master keeps (decoder capacity,
//! queued frame bytes, stored body bytes), not of every allocation: they
//! bound what peers control, not the process's resident size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The default budget: 256 MiB, about 13 KiB for each of the default
/// 20,000 connections, far more than an idle agent needs (its buffers are
/// empty) and enough for hundreds of maximal frames in flight at once.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// What the bytes are held for (the `kind` label of the gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Received bytes of frames not yet complete (decoder buffers).
    PartialFrames,
    /// Frames queued for sending to a connection.
    SendQueues,
    /// Health bodies kept as an agent's latest (legacy report bodies).
    HealthBodies,
}

impl Kind {
    /// Every kind, in the order metrics list them.
    pub const ALL: [Kind; 3] = [Kind::PartialFrames, Kind::SendQueues, Kind::HealthBodies];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PartialFrames => "partial_frames",
            Kind::SendQueues => "send_queues",
            Kind::HealthBodies => "health_bodies",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::PartialFrames => 0,
            Kind::SendQueues => 1,
            Kind::HealthBodies => 2,
        }
    }
}

/// What a full budget refused (the `refused` label of the counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A new connection, refused at accept: the whole budget was spent.
    Accept,
    /// An unauthenticated connection closed: its buffers did not fit in
    /// the unauthenticated half.
    Unauthenticated,
    /// An authenticated connection closed: the whole budget was spent.
    Authenticated,
    /// A legacy health body not kept (the report was still fanned out).
    HealthBody,
}

impl Refusal {
    /// Every refusal, in the order metrics list them.
    pub const ALL: [Refusal; 4] = [
        Refusal::Accept,
        Refusal::Unauthenticated,
        Refusal::Authenticated,
        Refusal::HealthBody,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Accept => "accept",
            Refusal::Unauthenticated => "unauthenticated_connection",
            Refusal::Authenticated => "authenticated_connection",
            Refusal::HealthBody => "health_body",
        }
    }

    fn index(self) -> usize {
        match self {
            Refusal::Accept => 0,
            Refusal::Unauthenticated => 1,
            Refusal::Authenticated => 2,
            Refusal::HealthBody => 3,
        }
    }
}

/// The budget was exceeded: the holder must let go (close, or not keep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget;

/// Atomically counted bytes against one limit; shared by every connection
/// task and the registry.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: AtomicUsize,
    held: [AtomicUsize; 3],
    /// The part of `held` charged by unauthenticated holders.
    unauthenticated: AtomicUsize,
    refusals: [AtomicU64; 4],
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit: AtomicUsize::new(limit),
            held: Default::default(),
            unauthenticated: AtomicUsize::new(0),
            refusals: Default::default(),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (config reload); what is held stays held.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes held for `kind`.
    pub fn held(&self, kind: Kind) -> usize {
        self.held[kind.index()].load(Ordering::Relaxed)
    }

    /// Bytes held, all kinds.
    pub fn total(&self) -> usize {
        self.held.iter().map(|h| h.load(Ordering::Relaxed)).sum()
    }

    /// Bytes held by unauthenticated holders.
    pub fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::Relaxed)
    }

    /// Times the budget refused `what`.
    pub fn refusals(&self, what: Refusal) -> u64 {
        self.refusals[what.index()].load(Ordering::Relaxed)
    }

    /// Counts a refusal.
    pub fn refuse(&self, what: Refusal) {
        self.refusals[what.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the whole budget is spent: new connections are refused.
    pub fn is_spent(&self) -> bool {
        self.total() >= self.limit()
    }

    /// Whether what is held is within the limits for a holder of this
    /// class: the whole limit for authenticated, half for the rest.
    fn fits(&self, authenticated: bool) -> bool {
        let limit = self.limit();
        self.total() <= limit && (authenticated || self.unauthenticated() <= limit / 2)
    }

    fn add(&self, kind: Kind, authenticated: bool, bytes: usize) {
        if bytes == 0 {
            // Every v2 report releases its agent's (absent) legacy body:
            // no shared cache line is written for nothing.
            return;
        }
        self.held[kind.index()].fetch_add(bytes, Ordering::Relaxed);
        if !authenticated {
            self.unauthenticated.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn sub(&self, kind: Kind, authenticated: bool, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.held[kind.index()].fetch_sub(bytes, Ordering::Relaxed);
        if !authenticated {
            self.unauthenticated.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Charges `bytes` for something not yet kept (a health body): charged
    /// and `Ok` if it fits, else nothing is charged, the refusal is
    /// counted and the caller must not keep it.
    pub fn try_charge(
        &self,
        kind: Kind,
        authenticated: bool,
        bytes: usize,
    ) -> Result<(), OverBudget> {
        self.add(kind, authenticated, bytes);
        if self.fits(authenticated) {
            Ok(())
        } else {
            self.sub(kind, authenticated, bytes);
            self.refuse(Refusal::HealthBody);
            Err(OverBudget)
        }
    }

    /// Gives back what [`try_charge`](Self::try_charge) charged.
    pub fn release(&self, kind: Kind, authenticated: bool, bytes: usize) {
        self.sub(kind, authenticated, bytes);
    }
}

/// One connection's buffers as charged to the budget. The connection
/// task updates it after every turn; dropping it gives everything back.
#[derive(Debug)]
pub struct ConnCharge {
    budget: Arc<MemoryBudget>,
    partial: usize,
    queued: usize,
    authenticated: bool,
}

impl ConnCharge {
    /// Nothing charged yet, for a peer not yet authenticated.
    pub fn new(budget: Arc<MemoryBudget>) -> ConnCharge {
        ConnCharge {
            budget,
            partial: 0,
            queued: 0,
            authenticated: false,
        }
    }

    /// Charges what the connection holds now (`partial` decoder bytes,
    /// `queued` send-queue bytes), moving its charge to the authenticated
    /// class once its peer is. The bytes are already held, so they are
    /// charged either way; `Err` means the budget for this class is
    /// exceeded and the connection must be closed (which is counted
    /// here), freeing them. A connection that holds no more than before
    /// is never refused: only growth is.
    pub fn update(
        &mut self,
        partial: usize,
        queued: usize,
        authenticated: bool,
    ) -> Result<(), OverBudget> {
        if (partial, queued, authenticated) == (self.partial, self.queued, self.authenticated) {
            // The usual turn of a busy agent: nothing to count again.
            return Ok(());
        }
        let grew = partial + queued > self.partial + self.queued;
        let b = &*self.budget;
        b.sub(Kind::PartialFrames, self.authenticated, self.partial);
        b.sub(Kind::SendQueues, self.authenticated, self.queued);
        b.add(Kind::PartialFrames, authenticated, partial);
        b.add(Kind::SendQueues, authenticated, queued);
        (self.partial, self.queued, self.authenticated) = (partial, queued, authenticated);
        if !grew || b.fits(authenticated) {
            return Ok(());
        }
        b.refuse(if authenticated {
            Refusal::Authenticated
        } else {
            Refusal::Unauthenticated
        });
        Err(OverBudget)
    }
}

impl Drop for ConnCharge {
    fn drop(&mut self) {
        let b = &*self.budget;
        b.sub(Kind::PartialFrames, self.authenticated, self.partial);
        b.sub(Kind::SendQueues, self.authenticated, self.queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_holders_get_half_authenticated_the_rest() {
        let b = Arc::new(MemoryBudget::new(1000));
        let mut flood = ConnCharge::new(b.clone());
        assert_eq!(flood.update(400, 0, false), Ok(()));
        let mut second = ConnCharge::new(b.clone());
        assert_eq!(second.update(200, 0, false), Err(OverBudget));
        assert_eq!(b.refusals(Refusal::Unauthenticated), 1);
        // Still charged until the connection is closed (dropped).
        assert_eq!(b.unauthenticated(), 600);
        drop(second);
        assert_eq!(b.unauthenticated(), 400);
        // An authenticated agent fits beside the flood.
        let mut agent = ConnCharge::new(b.clone());
        assert_eq!(agent.update(300, 200, true), Ok(()));
        assert_eq!(b.held(Kind::SendQueues), 200);
        assert_eq!(b.unauthenticated(), 400);
        // Shrinking is never refused, growing past the whole is.
        assert_eq!(flood.update(100, 0, false), Ok(()));
        assert_eq!(agent.update(800, 200, true), Err(OverBudget));
        assert_eq!(b.refusals(Refusal::Authenticated), 1);
        assert!(b.is_spent());
        drop((flood, agent));
        assert_eq!(b.total(), 0);
    }

    #[test]
    fn a_connection_moves_to_the_authenticated_class_when_its_peer_proves_a_key() {
        let b = Arc::new(MemoryBudget::new(1000));
        let mut c = ConnCharge::new(b.clone());
        c.update(100, 0, false).unwrap();
        assert_eq!(b.unauthenticated(), 100);
        c.update(100, 50, true).unwrap();
        assert_eq!((b.unauthenticated(), b.total()), (0, 150));
        drop(c);
        assert_eq!(b.total(), 0);
    }

    #[test]
    fn kept_bodies_are_charged_only_when_they_fit() {
        let b = MemoryBudget::new(1000);
        assert_eq!(b.try_charge(Kind::HealthBodies, false, 500), Ok(()));
        assert_eq!(
            b.try_charge(Kind::HealthBodies, false, 1),
            Err(OverBudget),
            "the unauthenticated half is full"
        );
        assert_eq!(b.held(Kind::HealthBodies), 500);
        assert_eq!(b.refusals(Refusal::HealthBody), 1);
        b.release(Kind::HealthBodies, false, 500);
        assert_eq!((b.total(), b.unauthenticated()), (0, 0));
    }
}
