//! The long health history of an agent: one-minute averages over the last
//! 24 hours, next to the 120 raw points of [`super::reports::HISTORY_LEN`].
//!
//! Kept apart from the raw history because it has its own memory budget
//! and its own arithmetic. Memory: a [`Bucket`] is 16 bytes, so a full day
//! ([`LONG_LEN`] = 1,440 buckets) is 23,040 bytes per agent, plus the
//! 48-byte accumulator of the minute in progress (both boxed on the first
//! report: an agent that never reports holds a pointer); 10,000 agents with a full
//! day each hold about 230 MB (225 MiB). The ring grows only as minutes
//! arrive, so an agent seen for an hour holds an hour. Adding a report is
//! O(1): it adds to the running sums of the current minute and, when a new
//! minute starts, closes the previous one into the ring.
//!
//! Times are those of the history points (the agent's clock when it sent
//! one). A point older than the minute in progress (a buffered report
//! replayed after a reconnect) is not averaged in: the ring stays in time
//! order without searching it.

use std::collections::VecDeque;

use super::reports::Point;

/// Width of one bucket, milliseconds.
pub const LONG_BUCKET_MS: u64 = 60_000;

/// Buckets kept: 24 hours of minutes.
pub const LONG_LEN: usize = 1440;

/// One minute of health, averaged; compact because there are up to
/// [`LONG_LEN`] per agent (16 bytes: the unit of the memory budget).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bucket {
    /// The minute, counted from the Unix epoch (fits a u32 until 10136).
    pub minute: u32,
    /// Average receive rate, bytes/s.
    pub rx_bps: f32,
    /// Average send rate, bytes/s.
    pub tx_bps: f32,
    /// Average 1-minute load, hundredths (saturates at 655.35).
    pub load_x100: u16,
    /// Average CPU busy, half percents (0–200).
    pub cpu_x2: u8,
    /// Average memory used, half percents (0–200).
    pub mem_x2: u8,
}

impl Bucket {
    /// The bucket as a history point stamped with the start of its minute.
    pub fn point(&self) -> Point {
        Point {
            unix_ms: u64::from(self.minute) * LONG_BUCKET_MS,
            cpu: f32::from(self.cpu_x2) / 2.0,
            mem: f32::from(self.mem_x2) / 2.0,
            load1: f32::from(self.load_x100) / 100.0,
            rx_bps: f64::from(self.rx_bps),
            tx_bps: f64::from(self.tx_bps),
        }
    }
}

/// Running sums of the minute in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Acc {
    minute: u32,
    n: u32,
    cpu: f64,
    mem: f64,
    load1: f64,
    rx: f64,
    tx: f64,
}

impl Acc {
    fn bucket(&self) -> Option<Bucket> {
        if self.n == 0 {
            return None;
        }
        let n = f64::from(self.n);
        // `as` saturates float-to-int casts (and maps NaN to 0), which is
        // the clamping wanted for values from agents.
        Some(Bucket {
            minute: self.minute,
            rx_bps: (self.rx / n).min(f64::from(f32::MAX)) as f32,
            tx_bps: (self.tx / n).min(f64::from(f32::MAX)) as f32,
            load_x100: (self.load1 / n * 100.0).round() as u16,
            cpu_x2: (self.cpu / n * 2.0).round().clamp(0.0, 200.0) as u8,
            mem_x2: (self.mem / n * 2.0).round().clamp(0.0, 200.0) as u8,
        })
    }
}

/// One agent's long history: closed minutes, oldest first, and the minute
/// in progress.
///
/// Nothing is allocated until the first point: an agent that only keeps
/// its connection (heartbeats, no reports) pays one pointer for it here,
/// not the 80 bytes of ring and running sums (issue 12: idle bytes per
/// connection). An agent that reports holds a ring of up to a day of
/// buckets beside which the box is noise.
#[derive(Clone, Debug, Default)]
pub struct LongHistory {
    inner: Option<Box<Minutes>>,
}

/// What a [`LongHistory`] holds once it has a point.
#[derive(Clone, Debug, Default)]
struct Minutes {
    ring: VecDeque<Bucket>,
    acc: Acc,
}

impl LongHistory {
    /// No points: what an agent that never reported shows.
    pub const EMPTY: LongHistory = LongHistory { inner: None };

    /// Adds one point: O(1), and at most one allocation per doubling of
    /// the ring until it holds a day.
    pub fn add(&mut self, p: &Point) {
        self.inner.get_or_insert_with(Box::default).add(p);
    }

    /// Every minute, oldest first, the one in progress (a partial average)
    /// last.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.inner
            .iter()
            .flat_map(|m| m.ring.iter().copied().chain(m.acc.bucket()))
    }

    /// Closed minutes held (the one in progress not counted).
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |m| m.ring.len())
    }

    /// Whether no point was ever added.
    pub fn is_empty(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|m| m.ring.is_empty() && m.acc.n == 0)
    }

    /// Bytes of buckets allocated on the heap (the ring's capacity).
    pub fn heap_bytes(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |m| m.ring.capacity() * std::mem::size_of::<Bucket>())
    }
}

impl Minutes {
    fn add(&mut self, p: &Point) {
        let minute = u32::try_from(p.unix_ms / LONG_BUCKET_MS).unwrap_or(u32::MAX);
        if self.acc.n > 0 && minute < self.acc.minute {
            return; // older than the minute in progress: see the module doc
        }
        if self.acc.n > 0 && minute > self.acc.minute {
            if let Some(b) = self.acc.bucket() {
                self.push(b);
            }
            self.acc = Acc::default();
        }
        // A non-finite value would poison the whole minute's average.
        let fin = |x: f64| if x.is_finite() { x } else { 0.0 };
        let a = &mut self.acc;
        a.minute = minute;
        a.n += 1;
        a.cpu += fin(f64::from(p.cpu));
        a.mem += fin(f64::from(p.mem));
        a.load1 += fin(f64::from(p.load1));
        a.rx += fin(p.rx_bps);
        a.tx += fin(p.tx_bps);
    }

    fn push(&mut self, b: Bucket) {
        if self.ring.len() == LONG_LEN {
            self.ring.pop_front();
        } else if self.ring.len() == self.ring.capacity() {
            // Grow by doubling but never past a day: VecDeque's own
            // doubling would reserve 2,048 buckets for 1,440.
            let want = (self.ring.capacity() * 2).clamp(16, LONG_LEN);
            self.ring.reserve_exact(want - self.ring.len());
        }
        self.ring.push_back(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(unix_ms: u64, cpu: f32) -> Point {
        Point {
            unix_ms,
            cpu,
            mem: cpu / 2.0,
            load1: cpu / 100.0,
            rx_bps: f64::from(cpu) * 1000.0,
            tx_bps: 5.0,
        }
    }

    #[test]
    fn holds_nothing_until_the_first_point() {
        // Issue 12: an agent that only keeps its connection pays a pointer.
        let mut h = LongHistory::default();
        assert_eq!(std::mem::size_of::<LongHistory>(), 8);
        assert!(h.is_empty() && h.buckets().next().is_none());
        assert_eq!(h.len(), 0);
        assert!(h.inner.is_none());
        h.add(&pt(0, 10.0));
        assert!(!h.is_empty());
        assert_eq!(h.buckets().count(), 1);
    }

    #[test]
    fn bucket_is_sixteen_bytes() {
        // The documented budget (README, ARCHITECTURE) rests on this.
        assert_eq!(std::mem::size_of::<Bucket>(), 16);
    }

    #[test]
    fn averages_each_minute_and_shows_the_one_in_progress() {
        let mut h = LongHistory::default();
        assert!(h.is_empty());
        let m0 = 29_000_000 * LONG_BUCKET_MS;
        for (i, cpu) in [10.0, 20.0, 30.0].into_iter().enumerate() {
            h.add(&pt(m0 + i as u64 * 5_000, cpu));
        }
        // Only the minute in progress so far, already visible.
        assert_eq!(h.len(), 0);
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].point().cpu, 20.0);
        h.add(&pt(m0 + LONG_BUCKET_MS + 1, 50.0));
        let b: Vec<_> = h.buckets().map(|b| b.point()).collect();
        assert_eq!(h.len(), 1);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].unix_ms, m0);
        assert_eq!((b[0].cpu, b[0].mem, b[0].load1), (20.0, 10.0, 0.2));
        assert_eq!((b[0].rx_bps, b[0].tx_bps), (20_000.0, 5.0));
        assert_eq!((b[1].unix_ms, b[1].cpu), (m0 + LONG_BUCKET_MS, 50.0));
    }

    #[test]
    fn older_points_are_not_averaged_in() {
        let mut h = LongHistory::default();
        let m0 = 29_000_000 * LONG_BUCKET_MS;
        h.add(&pt(m0 + 2 * LONG_BUCKET_MS, 40.0));
        h.add(&pt(m0, 90.0)); // replayed from before: ignored
        let b: Vec<_> = h.buckets().map(|b| b.point()).collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].cpu, 40.0);
    }

    #[test]
    fn keeps_one_day_and_no_more_memory_than_a_day() {
        let mut h = LongHistory::default();
        let m0 = 29_000_000 * LONG_BUCKET_MS;
        for i in 0..(LONG_LEN as u64 + 500) {
            h.add(&pt(m0 + i * LONG_BUCKET_MS, (i % 100) as f32));
        }
        assert_eq!(h.len(), LONG_LEN);
        assert!(h.heap_bytes() <= LONG_LEN * 16, "{} bytes", h.heap_bytes());
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b.len(), LONG_LEN + 1);
        // 1,940 minutes: 1,939 closed, the last in progress; the oldest
        // 499 closed ones fell out.
        assert_eq!(u64::from(b[0].minute), m0 / LONG_BUCKET_MS + 499);
        assert!(b.windows(2).all(|w| w[0].minute < w[1].minute));
    }

    #[test]
    fn wild_values_saturate_instead_of_wrapping() {
        let mut h = LongHistory::default();
        h.add(&Point {
            unix_ms: 60_000,
            cpu: 1e9,
            mem: -5.0,
            load1: 1e9,
            rx_bps: f64::NAN,
            tx_bps: 1e300,
        });
        h.add(&Point {
            unix_ms: 60_001,
            cpu: f32::INFINITY,
            ..Point::default()
        });
        let b = h.buckets().next().map(|b| b.point());
        let Some(p) = b else {
            panic!("no bucket");
        };
        // The infinite CPU counts as 0 in the average: 1e9 / 2 still caps.
        assert_eq!((p.cpu, p.mem, p.load1), (100.0, 0.0, 655.35));
        assert_eq!(p.rx_bps, 0.0);
        assert_eq!(p.tx_bps, f64::from(f32::MAX));
    }
}
