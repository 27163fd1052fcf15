//! CPU busy per-mille from the `cpu` lines of `/proc/stat`.
//!
//! `/proc/stat` holds cumulative ticks (USER_HZ, normally 100 per second)
//! per state since boot: `user nice system idle iowait irq softirq steal
//! guest guest_nice`. Kernels before 2.6.11 print fewer columns (4 at
//! least); `guest` and `guest_nice` are already included in `user` and
//! `nice`, so only the first eight are summed, or they would count twice.
//!
//! Busy = total − idle − iowait: a CPU waiting for I/O is free to run
//! other work.
//!
//! # First reading and resets
//! A per-mille needs two snapshots. Where there is no usable previous one
//! (the first [`CpuMeter::update`], a core that just appeared, or counters
//! that went backwards after a hotplug, a checkpoint/restore or the
//! kernel's known idle/iowait accounting races) the previous snapshot is
//! taken as all zeros, which yields the average since boot (or since the
//! reset). That is a real measurement, unlike a 0 that a graph would show
//! as "idle"; callers that want only live intervals discard the first
//! report.

use super::MAX_CORES;
use super::source::count_error;

/// Cumulative ticks of one `cpu` line, reduced to what busy needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ticks {
    /// user + nice + system + irq + softirq + steal.
    pub(super) busy: u64,
    /// idle + iowait.
    pub(super) idle: u64,
}

/// The `cpu` lines of one `/proc/stat` read.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    /// The aggregate `cpu` line.
    pub(super) all: Option<Ticks>,
    /// `cpuN` at index N. Offline CPUs have no line, so holes are `None`.
    pub(super) cores: Vec<Option<Ticks>>,
}

impl Snapshot {
    /// Refills from the text of `/proc/stat`, reusing the core vector.
    /// Malformed `cpu` lines are counted in `errors` and skipped; other
    /// lines (`intr`, `ctxt`, ...) are not looked at.
    pub(super) fn parse(&mut self, text: &str, errors: &mut u32) {
        self.all = None;
        self.cores.clear();
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let Some(which) = fields.next().and_then(|l| l.strip_prefix("cpu")) else {
                continue;
            };
            let Some(ticks) = parse_ticks(fields) else {
                count_error(errors);
                continue;
            };
            match which {
                "" => self.all = Some(ticks),
                n => match n.parse::<usize>() {
                    // More cores than a report carries are left out, not
                    // errors: the line is fine.
                    Ok(i) if i >= MAX_CORES => {}
                    Ok(i) => {
                        if self.cores.len() <= i {
                            self.cores.resize(i + 1, None);
                        }
                        self.cores[i] = Some(ticks);
                    }
                    Err(_) => count_error(errors),
                },
            }
        }
    }
}

/// Sums the tick columns after the label; `None` if there are fewer than
/// four, one of the first eight is not a `u64`, or the sum overflows.
fn parse_ticks<'a>(fields: impl Iterator<Item = &'a str>) -> Option<Ticks> {
    let mut t = Ticks::default();
    let mut n = 0;
    // Columns 9 and 10 (guest, guest_nice) are inside user/nice already.
    for (i, f) in fields.take(8).enumerate() {
        let v: u64 = f.parse().ok()?;
        if i == 3 || i == 4 {
            t.idle = t.idle.checked_add(v)?;
        } else {
            t.busy = t.busy.checked_add(v)?;
        }
        n += 1;
    }
    // busy + idle must fit too, or per-mille arithmetic could not add them.
    t.busy.checked_add(t.idle)?;
    (n >= 4).then_some(t)
}

/// Busy per-mille between two snapshots of one CPU, 0..=1000, rounded
/// half up. See the module docs for `prev == None` and backward counters.
pub(super) fn permille(prev: Option<Ticks>, cur: Ticks) -> u16 {
    let base = match prev {
        Some(p) if cur.busy >= p.busy && cur.idle >= p.idle => p,
        _ => Ticks::default(),
    };
    // No underflow: base is either <= cur in both fields or zero.
    let mut busy = cur.busy - base.busy;
    let mut idle = cur.idle - base.idle;
    // u64 arithmetic, not u128: a 128-bit division is a 2 KB helper
    // routine on 32-bit routers. Halving both keeps the ratio (to within
    // rounding) and `busy * 1000 + all / 2` in range; it happens only past
    // 2^64 / 2002 ticks (never, at 100 ticks a second).
    while busy > u64::MAX / 2002 || idle > u64::MAX / 2002 {
        busy >>= 1;
        idle >>= 1;
    }
    let all = busy + idle;
    if all == 0 {
        // No tick elapsed (reads closer together than 10 ms).
        return 0;
    }
    // busy <= all, so the quotient is at most 1000 and fits.
    u16::try_from((busy * 1000 + all / 2) / all).unwrap_or(1000)
}

/// Keeps the previous snapshot and turns each new one into per-mille.
#[derive(Debug, Default)]
pub(super) struct CpuMeter {
    prev: Snapshot,
    cur: Snapshot,
}

impl CpuMeter {
    /// Feeds the text of `/proc/stat` (`None` if it was unreadable) and
    /// returns the total busy per-mille and one value per core (index =
    /// CPU number; offline CPUs in between read 0).
    ///
    /// An unreadable or `cpu`-less file keeps the previous snapshot, so the
    /// next good read measures the whole gap instead of falling back to the
    /// since-boot average.
    pub(super) fn update(&mut self, text: Option<&str>, errors: &mut u32) -> (u16, Vec<u16>) {
        let Some(text) = text else {
            return (0, Vec::new());
        };
        self.cur.parse(text, errors);
        if self.cur.all.is_none() && self.cur.cores.is_empty() {
            return (0, Vec::new());
        }
        let total = self.cur.all.map_or(0, |t| permille(self.prev.all, t));
        let cores = self
            .cur
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Some(t) => permille(self.prev.cores.get(i).copied().flatten(), *t),
                None => 0,
            })
            .collect();
        std::mem::swap(&mut self.prev, &mut self.cur);
        (total, cores)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture_text;
    use super::*;

    fn snap(text: &str) -> (Snapshot, u32) {
        let mut s = Snapshot::default();
        let mut e = 0;
        s.parse(text, &mut e);
        (s, e)
    }

    fn t(busy: u64, idle: u64) -> Option<Ticks> {
        Some(Ticks { busy, idle })
    }

    #[test]
    fn modern_fixture_parses() {
        // cpu  42412 0 9307 134132 378 0 55 34 0 0
        // cpu0 19413 0 4186 69478 61 0 16 13 0 0
        // cpu1 22999 0 5121 64654 317 0 38 20 0 0
        let (s, e) = snap(&fixture_text("linux-6.18-x86_64", "proc/stat"));
        assert_eq!(e, 0);
        assert_eq!(s.all, t(42412 + 9307 + 55 + 34, 134132 + 378));
        assert_eq!(
            s.cores,
            [
                t(19413 + 4186 + 16 + 13, 69478 + 61),
                t(22999 + 5121 + 38 + 20, 64654 + 317)
            ]
        );
    }

    #[test]
    fn old_fixture_parses_eight_columns() {
        // cpu0 113204 3418 144187 11311718 3675 127 438 0
        let (s, e) = snap(&fixture_text("linux-2.6.18-i686", "proc/stat"));
        assert_eq!(e, 0);
        assert_eq!(s.cores.len(), 2);
        assert_eq!(
            s.cores[0],
            t(113204 + 3418 + 144187 + 127 + 438, 11311718 + 3675)
        );
    }

    #[test]
    fn openwrt_fixture_has_four_cores() {
        // cpu3 389012 0 276543 25692345 1022 0 92310 0 0 0
        let (s, e) = snap(&fixture_text("openwrt-22.03-mt7621", "proc/stat"));
        assert_eq!(e, 0);
        assert_eq!(s.cores.len(), 4);
        assert_eq!(s.cores[3], t(389012 + 276543 + 92310, 25692345 + 1022));
    }

    /// Per-mille between `proc/stat` and `proc/stat.2` of a fixture.
    fn fixture_delta(set: &str) -> (u16, Vec<u16>) {
        let mut m = CpuMeter::default();
        let mut e = 0;
        m.update(Some(&fixture_text(set, "proc/stat")), &mut e);
        let r = m.update(Some(&fixture_text(set, "proc/stat.2")), &mut e);
        assert_eq!(e, 0);
        r
    }

    #[test]
    fn modern_delta() {
        // Captured around a 3 s busy loop. Deltas: cpu busy 300+1=301,
        // idle 299 → 301000/600 = 501.67 → 502; cpu0 busy 1 idle 298 →
        // 3.34 → 3; cpu1 busy 300 idle 0 → 1000.
        assert_eq!(fixture_delta("linux-6.18-x86_64"), (502, vec![3, 1000]));
    }

    #[test]
    fn old_delta_rounds_half_up() {
        // cpu busy +267 of 2000 ticks = 133.5 → 134; cpu0 205/1000,
        // cpu1 62/1000.
        assert_eq!(fixture_delta("linux-2.6.18-i686"), (134, vec![205, 62]));
    }

    #[test]
    fn openwrt_delta() {
        // One second, 100 ticks per core: 39, 5, 80 and 0 busy ticks;
        // total 124 of 400.
        assert_eq!(
            fixture_delta("openwrt-22.03-mt7621"),
            (310, vec![390, 50, 800, 0])
        );
    }

    #[test]
    fn first_reading_is_since_boot_average() {
        let mut m = CpuMeter::default();
        let mut e = 0;
        // busy 1+2+3 = 6 (guest 50 not added), idle 90+4 = 94 → 60.
        let (total, cores) = m.update(Some("cpu 1 2 3 90 4 0 0 0 50 0\n"), &mut e);
        assert_eq!((total, cores, e), (60, vec![], 0));
    }

    #[test]
    fn minimal_four_column_line() {
        let (s, e) = snap("cpu 10 0 10 80\n");
        assert_eq!((s.all, e), (t(20, 80), 0));
    }

    #[test]
    fn hotplug_holes_and_backward_counters() {
        let mut m = CpuMeter::default();
        let mut e = 0;
        m.update(
            Some("cpu 100 0 0 300\ncpu0 50 0 0 150\ncpu1 50 0 0 150\n"),
            &mut e,
        );
        // cpu1 went offline, cpu2 came online (hole at 1 reads 0); cpu0
        // moved 10 busy / 10 idle; cpu2 has no history: its own average.
        let (total, cores) = m.update(
            Some("cpu 130 0 0 320\ncpu0 60 0 0 160\ncpu2 5 0 0 15\n"),
            &mut e,
        );
        assert_eq!((total, cores), (600, vec![500, 0, 250]));
        // Counters went backwards (a reset): since-reset average, no panic,
        // no value over 1000.
        let (total, cores) = m.update(Some("cpu 1 0 0 3\ncpu0 3 0 0 0\n"), &mut e);
        assert_eq!((total, cores), (250, vec![1000]));
        // Busy forward, idle backward (idle/iowait accounting race).
        m.update(Some("cpu 10 0 0 100\n"), &mut e);
        let (total, _) = m.update(Some("cpu 20 0 0 99\n"), &mut e);
        assert_eq!(total, 168); // 20 / 119
        assert_eq!(e, 0);
    }

    #[test]
    fn no_elapsed_ticks_is_zero() {
        let mut m = CpuMeter::default();
        let mut e = 0;
        m.update(Some("cpu 5 0 5 90\n"), &mut e);
        assert_eq!(m.update(Some("cpu 5 0 5 90\n"), &mut e).0, 0);
    }

    #[test]
    fn unreadable_stat_keeps_previous_snapshot() {
        let mut m = CpuMeter::default();
        let mut e = 0;
        m.update(Some("cpu 0 0 0 100\n"), &mut e);
        assert_eq!(m.update(None, &mut e), (0, vec![]));
        assert_eq!(m.update(Some("intr 1 2\n"), &mut e), (0, vec![]));
        // Measured against the first snapshot: 100 busy of 200.
        assert_eq!(m.update(Some("cpu 100 0 0 200\n"), &mut e).0, 500);
    }

    #[test]
    fn malformed_lines_are_counted() {
        let text = "cpu 1 2 3\n\
                    cpu0 1 2 3 x\n\
                    cpuX 1 2 3 4\n\
                    cpu1 18446744073709551616 0 0 0\n\
                    cpu2 18446744073709551615 0 0 1\n\
                    cpu\n\
                    cpu3 1 1 1 1\n\
                    cpu999999 1 1 1 1\n\
                    intr garbage\n";
        let (s, e) = snap(text);
        assert_eq!(e, 6);
        assert_eq!(s.all, None);
        assert_eq!(s.cores, [None, None, None, t(3, 1)]);
    }

    #[test]
    fn extreme_counters_stay_in_range() {
        let max = u64::MAX / 2;
        assert_eq!(
            permille(
                None,
                Ticks {
                    busy: max,
                    idle: max
                }
            ),
            500
        );
        assert_eq!(permille(None, Ticks { busy: max, idle: 0 }), 1000);
        let all = Ticks {
            busy: u64::MAX,
            idle: u64::MAX,
        };
        assert_eq!(permille(None, all), 500);
        assert_eq!(
            permille(
                None,
                Ticks {
                    busy: u64::MAX / 4,
                    idle: u64::MAX - u64::MAX / 4
                }
            ),
            250
        );
        assert_eq!(permille(t(max, 0), Ticks { busy: 0, idle: 0 }), 0);
    }
}
