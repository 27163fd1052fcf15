//! Store-and-forward: reports made while the master is unreachable wait
//! here, oldest first, and are sent on reconnect with their original
//! timestamps. Bounded in reports and bytes; when full the *oldest* report
//! is dropped (fresh data matters more on a dashboard) and counted, and the
//! count travels upstream in every report.

use std::collections::VecDeque;
use std::time::Instant;

use crate::proto::v2::Report;

/// One buffered report and when it was taken (monotonic).
#[derive(Clone, Debug)]
pub struct Buffered {
    /// The report.
    pub report: Report,
    /// When it was taken.
    pub taken: Instant,
    /// Approximate encoded size, for the byte bound.
    pub size: usize,
}

/// The bounded report ring.
#[derive(Debug)]
pub struct ReportRing {
    items: VecDeque<Buffered>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    /// Reports dropped because the ring was full.
    pub dropped: u32,
}

impl ReportRing {
    /// A ring of at most `max_items` reports and `max_bytes` bytes.
    pub fn new(max_items: usize, max_bytes: usize) -> ReportRing {
        ReportRing {
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
            dropped: 0,
        }
    }

    /// Adds a report, dropping the oldest ones to make room.
    pub fn push(&mut self, report: Report, taken: Instant) {
        let size = postcard::experimental::serialized_size(&report).unwrap_or(256);
        while !self.items.is_empty()
            && (self.items.len() >= self.max_items || self.bytes + size > self.max_bytes)
        {
            self.pop();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.bytes += size;
        self.items.push_back(Buffered {
            report,
            taken,
            size,
        });
    }

    /// The oldest report.
    pub fn front(&self) -> Option<&Buffered> {
        self.items.front()
    }

    /// Removes the oldest report (it was sent).
    pub fn pop(&mut self) -> Option<Buffered> {
        let b = self.items.pop_front()?;
        self.bytes -= b.size;
        Some(b)
    }

    /// Reports waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(seq: u32) -> Report {
        Report {
            seq,
            ..Report::default()
        }
    }

    #[test]
    fn oldest_dropped_and_counted() {
        let t = Instant::now();
        let mut ring = ReportRing::new(3, 1 << 20);
        for s in 0..5 {
            ring.push(r(s), t);
        }
        assert_eq!(ring.dropped, 2);
        let seqs: Vec<u32> = std::iter::from_fn(|| ring.pop())
            .map(|b| b.report.seq)
            .collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(ring.bytes(), 0);
    }

    #[test]
    fn byte_bound() {
        let t = Instant::now();
        let one = postcard::experimental::serialized_size(&r(1)).unwrap();
        let mut ring = ReportRing::new(100, one * 2);
        for s in 0..4 {
            ring.push(r(s), t);
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.dropped, 2);
        assert_eq!(ring.front().unwrap().report.seq, 2);
    }
}
