//! How many connections each shard serves: for `/metrics`, so an operator
//! (and the tests) can see the connections spread over the shards.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Connections per shard (see the module docs).
#[derive(Debug)]
pub struct Load {
    conns: Box<[AtomicUsize]>,
}

impl Load {
    /// Counts for `shards` shards (at least one).
    pub fn new(shards: usize) -> Load {
        Load {
            conns: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Shard `i` took a connection.
    pub fn opened(&self, i: usize) {
        if let Some(c) = self.conns.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Shard `i` dropped a connection.
    pub fn closed(&self, i: usize) {
        if let Some(c) = self.conns.get(i) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Connections per shard, in shard order.
    pub fn connections(&self) -> impl Iterator<Item = usize> + '_ {
        self.conns.iter().map(|c| c.load(Ordering::Relaxed))
    }
}
