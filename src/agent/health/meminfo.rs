//! Memory figures from `/proc/meminfo`.
//!
//! Lines are `Key:   value kB`. Only five keys are looked at; the other
//! forty-odd lines are skipped without parsing their values.
//!
//! `MemAvailable` exists since Linux 3.14. On older kernels it is estimated
//! as `MemFree + Buffers + Cached` (capped at `MemTotal`), the figure
//! `free` used before 3.14. It over-estimates: part of `Cached` cannot be
//! dropped (tmpfs and shared memory, which on a router with `/tmp` in RAM
//! can be a lot), and the kernel also keeps reserves. A master comparing
//! routers should treat old-kernel values as an upper bound.

use crate::proto::v2::Memory;

use super::source::count_error;

/// Parses `/proc/meminfo`. Lines without a colon, and wanted keys whose
/// value is not a `u64` with an optional `kB` unit, are counted in `errors`
/// and skipped (the field stays 0).
pub(super) fn parse(text: &str, errors: &mut u32) -> Memory {
    let mut m = Memory::default();
    let mut available = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            count_error(errors);
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut m.total_kb,
            "MemFree" => &mut m.free_kb,
            "Buffers" => &mut m.buffers_kb,
            "Cached" => &mut m.cached_kb,
            "MemAvailable" => available.insert(0),
            _ => continue,
        };
        match parse_kb(value) {
            Some(v) => *slot = v,
            None => count_error(errors),
        }
    }
    m.available_kb = match available {
        Some(v) => v,
        None => {
            let estimate = m
                .free_kb
                .saturating_add(m.buffers_kb)
                .saturating_add(m.cached_kb);
            if m.total_kb > 0 {
                estimate.min(m.total_kb)
            } else {
                estimate
            }
        }
    };
    m
}

/// `"   1234 kB"` → 1234. The unit is optional; any other unit or extra
/// text is malformed.
fn parse_kb(value: &str) -> Option<u64> {
    let mut it = value.split_ascii_whitespace();
    let n = it.next()?.parse().ok()?;
    match (it.next(), it.next()) {
        (None, _) | (Some("kB"), None) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture_text;
    use super::*;

    fn parse_set(set: &str) -> (Memory, u32) {
        let mut e = 0;
        let m = parse(&fixture_text(set, "proc/meminfo"), &mut e);
        (m, e)
    }

    #[test]
    fn modern_fixture() {
        assert_eq!(
            parse_set("linux-6.18-x86_64"),
            (
                Memory {
                    total_kb: 24684084,
                    available_kb: 24310944,
                    free_kb: 23177604,
                    buffers_kb: 3832,
                    cached_kb: 1306728,
                },
                0
            )
        );
    }

    #[test]
    fn old_fixture_estimates_available() {
        // No MemAvailable on 2.6.18: 212348 + 102316 + 512904.
        assert_eq!(
            parse_set("linux-2.6.18-i686"),
            (
                Memory {
                    total_kb: 1034640,
                    available_kb: 827568,
                    free_kb: 212348,
                    buffers_kb: 102316,
                    cached_kb: 512904,
                },
                0
            )
        );
    }

    #[test]
    fn openwrt_fixture() {
        assert_eq!(
            parse_set("openwrt-22.03-mt7621"),
            (
                Memory {
                    total_kb: 124048,
                    available_kb: 71284,
                    free_kb: 58232,
                    buffers_kb: 4212,
                    cached_kb: 25364,
                },
                0
            )
        );
    }

    #[test]
    fn estimate_is_capped_at_total() {
        let mut e = 0;
        let m = parse(
            "MemTotal: 100 kB\nMemFree: 60 kB\nBuffers: 30 kB\nCached: 30 kB\n",
            &mut e,
        );
        assert_eq!((m.available_kb, e), (100, 0));
    }

    #[test]
    fn explicit_zero_available_is_kept() {
        let mut e = 0;
        let m = parse(
            "MemTotal: 100 kB\nMemFree: 60 kB\nMemAvailable: 0 kB\n",
            &mut e,
        );
        assert_eq!(m.available_kb, 0);
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let text = "MemTotal 1000 kB\n\
                    MemTotal: 2048 kB\n\
                    MemFree: 99999999999999999999999 kB\n\
                    Buffers: abc kB\n\
                    Cached: 100 MB\n\
                    Cached: 100 kB extra\n\
                    HugePages_Total:       0\n\
                    Weird: not a number\n\
                    \n\
                    :\n\
                    Buffers: 7\n";
        let mut e = 0;
        let m = parse(text, &mut e);
        assert_eq!(e, 5);
        assert_eq!(
            m,
            Memory {
                total_kb: 2048,
                available_kb: 7,
                free_kb: 0,
                buffers_kb: 7,
                cached_kb: 0,
            }
        );
    }
}
