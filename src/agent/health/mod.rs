//! Host health from /proc and /sys.
//!
//! [`HealthReader`] fills a [`v2::Health`] from plain file reads (no shell,
//! no child process) below a root directory: `/` in production, a captured
//! fixture directory in tests. It runs every 1–10 s for years on routers
//! with 32 MB of RAM, so:
//!
//! - files the running kernel lacks are skipped and their fields stay
//!   default (0, empty, `None`); that is not an error;
//! - malformed content is skipped and counted ([`HealthReader::parse_errors`]),
//!   never a panic, whatever the bytes;
//! - one read buffer and one path buffer are reused for every file, each
//!   read is capped at [`MAX_FILE_BYTES`], and every list in the report is
//!   capped ([`MAX_CORES`], [`MAX_INTERFACES`], [`MAX_ZONES`],
//!   [`MAX_MOUNTS`]; names at [`v2::MAX_NAME`] bytes), so memory use is
//!   flat after the first report.
//!
//! | Field | Source |
//! |---|---|
//! | `uptime_s` | `/proc/uptime` |
//! | `cpu_permille`, `cpu_cores` | `/proc/stat`, delta from the previous read |
//! | `load_x100` | `/proc/loadavg` |
//! | `memory` | `/proc/meminfo` |
//! | `processes` | numeric entries of `/proc` |
//! | `net` | `/proc/net/dev` |
//! | `fs` | `statvfs` of the configured mounts (not below the root) |
//! | `temps` | `/sys/class/thermal/thermal_zone*` |
//! | `conntrack` | `/proc/sys/net/netfilter/nf_conntrack_count` or the older `ip_conntrack_count` |
//! | `custom` | left empty for the caller |

mod cpu;
mod fs;
mod loadavg;
mod meminfo;
mod misc;
mod netdev;
mod source;
mod thermal;

use std::path::{Path, PathBuf};

use crate::proto::v2;

use self::cpu::CpuMeter;
use self::source::Source;

/// Most bytes read from one file. procfs files are generated on read and a
/// buggy driver or a huge machine could make one enormous; everything read
/// here sits near the top (the `cpu` lines come first in `/proc/stat`), so
/// the rest is not worth the memory on a 32 MB router. A capped read drops
/// its last, probably cut, line.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Most CPUs reported in `cpu_cores`; CPUs numbered higher are left out
/// (the total still covers them).
pub const MAX_CORES: usize = 256;
/// Most interfaces reported, in `/proc/net/dev` (ifindex) order.
pub const MAX_INTERFACES: usize = 64;
/// Most thermal zones reported, lowest zone numbers first.
pub const MAX_ZONES: usize = 32;
/// Most mount points queried; [`HealthReader::new`] drops the rest.
pub const MAX_MOUNTS: usize = 16;

/// Reads host health; keeps the previous CPU counters between reads.
///
/// ```no_run
/// use edge_gw::agent::health::HealthReader;
///
/// let mut reader = HealthReader::new("/".into(), vec!["/".into(), "/overlay".into()]);
/// let health = reader.read();
/// println!("cpu {}‰, {} interfaces", health.cpu_permille, health.net.len());
/// ```
#[derive(Debug)]
pub struct HealthReader {
    src: Source,
    mounts: Vec<String>,
    cpu: CpuMeter,
    /// Scratch for thermal zone numbers.
    zones: Vec<u32>,
    errors: u32,
}

impl HealthReader {
    /// A reader of the files below `root` (`/` on a live system) that also
    /// reports the usage of `mounts` (live paths, not below `root`; at most
    /// [`MAX_MOUNTS`], the rest are dropped with a warning). Reads nothing
    /// yet.
    pub fn new(root: PathBuf, mut mounts: Vec<String>) -> HealthReader {
        if mounts.len() > MAX_MOUNTS {
            log::warn!(
                "health: {} mount points configured, reporting the first {MAX_MOUNTS}",
                mounts.len()
            );
            mounts.truncate(MAX_MOUNTS);
        }
        HealthReader {
            src: Source::new(root),
            mounts,
            cpu: CpuMeter::default(),
            zones: Vec::new(),
            errors: 0,
        }
    }

    /// The root directory files are read below.
    pub fn root(&self) -> &Path {
        self.src.root()
    }

    /// The mount points whose usage is reported.
    pub fn mounts(&self) -> &[String] {
        &self.mounts
    }

    /// Takes a snapshot. Never fails: what cannot be read stays default.
    ///
    /// `cpu_permille` and `cpu_cores` cover the time since the previous
    /// call. The first call (and a CPU seen for the first time, or whose
    /// counters went backwards) reports the average since boot instead;
    /// discard the first snapshot to see only live intervals. `custom` is
    /// left empty for the caller to fill.
    pub fn read(&mut self) -> v2::Health {
        let mut h = v2::Health::default();
        let errors = &mut self.errors;

        let stat = self.src.read(format_args!("proc/stat"));
        (h.cpu_permille, h.cpu_cores) = self.cpu.update(stat.as_deref(), errors);

        if let Some(t) = self.src.read(format_args!("proc/uptime")) {
            h.uptime_s = misc::parse_uptime(&t, errors);
        }
        if let Some(t) = self.src.read(format_args!("proc/loadavg")) {
            h.load_x100 = loadavg::parse(&t, errors);
        }
        if let Some(t) = self.src.read(format_args!("proc/meminfo")) {
            h.memory = meminfo::parse(&t, errors);
        }
        if let Some(t) = self.src.read(format_args!("proc/net/dev")) {
            netdev::parse(&t, errors, &mut h.net);
        }
        h.processes = misc::count_processes(&mut self.src).unwrap_or(0);
        h.conntrack = misc::read_conntrack(&mut self.src, errors);
        thermal::read(&mut self.src, &mut self.zones, errors, &mut h.temps);
        h.fs = self.mounts.iter().filter_map(|m| fs::usage(m)).collect();
        h
    }

    /// Malformed lines and values skipped since this reader was created
    /// (saturating). A kernel format this module does not know shows up
    /// here rather than as a crash; worth logging when it grows.
    pub fn parse_errors(&self) -> u32 {
        self.errors
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::proto::v2::{FsUsage, Memory, NetIf, Temperature};

    /// `tests/fixtures/health/<set>`.
    pub(crate) fn fixture_root(set: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/health")
            .join(set)
    }

    /// A fixture file as text (lossy, like the reader).
    pub(crate) fn fixture_text(set: &str, rel: &str) -> String {
        let bytes = std::fs::read(fixture_root(set).join(rel)).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn openwrt_router_full_read() {
        let mut r = HealthReader::new(fixture_root("openwrt-22.03-mt7621"), vec![]);
        let h = r.read();
        assert_eq!(h.uptime_s, 264512);
        assert_eq!(h.load_x100, [121, 118, 112]);
        assert_eq!(
            h.memory,
            Memory {
                total_kb: 124048,
                available_kb: 71284,
                free_kb: 58232,
                buffers_kb: 4212,
                cached_kb: 25364,
            }
        );
        assert_eq!(h.processes, 6);
        assert_eq!(h.net.len(), 10);
        assert_eq!(h.net[7].name, "br-lan");
        assert_eq!(h.temps, []);
        assert_eq!(h.conntrack, Some(87));
        assert_eq!(h.fs, []);
        assert_eq!(h.custom, []);
        assert_eq!(h.cpu_cores.len(), 4);
        assert_eq!(r.parse_errors(), 0);
    }

    #[test]
    fn old_kernel_full_read() {
        let mut r = HealthReader::new(fixture_root("linux-2.6.18-i686"), vec![]);
        let h = r.read();
        assert_eq!(h.uptime_s, 115768);
        assert_eq!(h.memory.available_kb, 827568);
        assert_eq!(h.net[1].rx_bytes, 3965453012);
        assert_eq!(h.conntrack, Some(1187));
        assert_eq!(h.temps, []);
        assert_eq!(r.parse_errors(), 0);
    }

    #[test]
    fn modern_host_full_read() {
        let mut r = HealthReader::new(fixture_root("linux-6.18-x86_64"), vec!["/".into()]);
        let h = r.read();
        assert_eq!(h.uptime_s, 929);
        assert_eq!(h.load_x100, [36, 80, 53]);
        assert_eq!(h.memory.total_kb, 24684084);
        assert_eq!(h.processes, 5);
        assert_eq!(
            h.net[3],
            NetIf {
                name: "eth0".into(),
                rx_bytes: 96267736,
                tx_bytes: 384712,
                rx_packets: 5449,
                tx_packets: 3531,
                rx_errors: 0,
                tx_errors: 0,
            }
        );
        assert_eq!(
            h.temps,
            [
                Temperature {
                    zone: "acpitz".into(),
                    milli_c: 27800
                },
                Temperature {
                    zone: "x86_pkg_temp".into(),
                    milli_c: 45000
                }
            ]
        );
        assert_eq!(h.conntrack, Some(0));
        // statvfs ignores the fixture root: this is the live "/".
        assert_eq!(h.fs.len(), 1);
        assert_eq!(h.fs[0].mount, "/");
        assert_eq!(r.parse_errors(), 0);
    }

    #[test]
    fn cpu_delta_across_two_reads() {
        // The reader always reads proc/stat, so point a second reader's
        // root at a copy whose stat is the later snapshot.
        let dir = std::env::temp_dir().join(format!("edge-gw-health-delta-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        let stat = dir.join("proc/stat");
        let set = "openwrt-22.03-mt7621";
        std::fs::write(&stat, fixture_text(set, "proc/stat")).unwrap();
        let mut r = HealthReader::new(dir.clone(), vec![]);
        let first = r.read();
        // Since-boot average of the first snapshot, cpu0: busy 412345 +
        // 298765 + 217654 = 928764 of 928764 + 25520012 + 1234 = 26450010
        // → 35.11 → 35.
        assert_eq!(first.cpu_cores[0], 35);
        std::fs::write(&stat, fixture_text(set, "proc/stat.2")).unwrap();
        let second = r.read();
        assert_eq!(second.cpu_permille, 310);
        assert_eq!(second.cpu_cores, [390, 50, 800, 0]);
        // Only proc/stat exists: everything else default, nothing counted.
        assert_eq!(second.memory, Memory::default());
        assert_eq!(second.net, []);
        assert_eq!(second.processes, 0);
        assert_eq!(r.parse_errors(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_root_gives_defaults() {
        let mut r = HealthReader::new(
            fixture_root("does-not-exist"),
            vec!["/nonexistent/m".into()],
        );
        assert_eq!(r.read(), v2::Health::default());
        assert_eq!(r.read(), v2::Health::default());
        assert_eq!(r.parse_errors(), 0);
    }

    #[test]
    fn hostile_fixture_does_not_panic_and_counts() {
        let mut r = HealthReader::new(fixture_root("hostile"), vec![]);
        let h = r.read();
        // proc/stat: garbage lines, plus valid cpu1 "1 0 1 8" → 200.
        assert_eq!(h.cpu_permille, 0);
        assert_eq!(h.cpu_cores, [0, 200]);
        assert_eq!(h.uptime_s, 0);
        assert_eq!(h.load_x100, [0; 3]);
        assert_eq!(h.memory.total_kb, 2048);
        assert_eq!(h.memory.available_kb, 1024);
        assert_eq!(h.net.len(), 1);
        assert_eq!(h.net[0].name, "ok0");
        assert_eq!(h.processes, 2);
        assert_eq!(h.conntrack, None);
        assert_eq!(h.temps.len(), 2);
        // stat 4 + uptime 1 + loadavg 1 + meminfo 3 + net/dev 4
        // + conntrack 1 + thermal 1.
        assert_eq!(r.parse_errors(), 15);
        r.read();
        assert_eq!(r.parse_errors(), 30);
    }

    #[test]
    fn mounts_are_capped() {
        let mounts: Vec<String> = (0..40).map(|_| "/".to_string()).collect();
        let mut r = HealthReader::new(fixture_root("does-not-exist"), mounts);
        assert_eq!(r.mounts().len(), MAX_MOUNTS);
        assert_eq!(r.root(), fixture_root("does-not-exist"));
        let h = r.read();
        assert_eq!(h.fs.len(), MAX_MOUNTS);
        assert!(h.fs.iter().all(|f: &FsUsage| f.mount == "/"));
    }

    /// The live machine, against values read independently here.
    #[test]
    fn live_root_matches_independent_reads() {
        let mut r = HealthReader::new("/".into(), vec!["/".into()]);
        let first = r.read();
        let h = r.read();
        assert_eq!(r.parse_errors(), 0);

        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total: u64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(h.memory.total_kb, total);
        assert!(h.memory.available_kb <= total);

        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let max_cpu = stat
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .next()?
                    .strip_prefix("cpu")?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .unwrap();
        assert_eq!(h.cpu_cores.len(), max_cpu + 1);
        assert!(h.cpu_permille <= 1000 && first.cpu_permille <= 1000);
        assert!(h.cpu_cores.iter().all(|&c| c <= 1000));

        // The lines of /proc/net/dev after the two headers.
        let netdev = std::fs::read_to_string("/proc/net/dev").unwrap();
        assert_eq!(
            h.net.len(),
            netdev.lines().skip(2).count().min(MAX_INTERFACES)
        );
        assert!(h.net.iter().any(|n| n.name == "lo"));

        let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
        let up: u64 = uptime.split('.').next().unwrap().parse().unwrap();
        // Our read came first; a few seconds of slack for slow CI.
        assert!(h.uptime_s <= up && up - h.uptime_s < 60);

        // Processes come and go; this test's own process is one of them.
        let pids = std::fs::read_dir("/proc")
            .unwrap()
            .filter(|e| {
                let e = e.as_ref().unwrap();
                e.file_name()
                    .to_str()
                    .is_some_and(|s| s.parse::<u32>().is_ok())
            })
            .count() as u32;
        assert!(h.processes > 0);
        assert!(h.processes.abs_diff(pids) < 200);
        assert!(Path::new(&format!("/proc/{}", std::process::id())).exists());

        assert_eq!(h.fs.len(), 1);
        assert!(h.fs[0].total_kb > 0);
    }

    /// Reading arbitrary bytes as each file never panics and never yields
    /// a per-mille over 1000.
    mod garbage {
        use super::*;
        use proptest::prelude::*;

        fn arb_text() -> impl Strategy<Value = String> {
            prop_oneof![
                // Arbitrary bytes, made text the way Source does.
                proptest::collection::vec(any::<u8>(), 0..512)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                // Lines of plausible tokens, to get past the first checks.
                proptest::collection::vec(
                    proptest::collection::vec(
                        prop_oneof![
                            Just("cpu".to_string()),
                            Just("cpu0".to_string()),
                            Just("cpu7".to_string()),
                            Just("eth0:".to_string()),
                            Just("MemTotal:".to_string()),
                            Just("MemAvailable:".to_string()),
                            Just("kB".to_string()),
                            Just("|".to_string()),
                            Just(":".to_string()),
                            Just("18446744073709551616".to_string()),
                            Just("18446744073709551615".to_string()),
                            any::<u64>().prop_map(|n| n.to_string()),
                            (0u32..100).prop_map(|n| n.to_string()),
                            "[0-9]{1,3}\\.[0-9]{0,3}",
                        ],
                        0..20,
                    )
                    .prop_map(|t| t.join(" ")),
                    0..20,
                )
                .prop_map(|l| l.join("\n")),
            ]
        }

        proptest! {
            #[test]
            fn parsers_never_panic(a in arb_text(), b in arb_text()) {
                let mut e = 0;
                let mut m = CpuMeter::default();
                let (t, c) = m.update(Some(&a), &mut e);
                prop_assert!(t <= 1000 && c.iter().all(|&x| x <= 1000));
                let (t, c) = m.update(Some(&b), &mut e);
                prop_assert!(t <= 1000 && c.iter().all(|&x| x <= 1000));
                prop_assert!(c.len() <= MAX_CORES);
                let _ = meminfo::parse(&a, &mut e);
                let _ = loadavg::parse(&a, &mut e);
                let _ = misc::parse_uptime(&a, &mut e);
                let mut net = Vec::new();
                netdev::parse(&a, &mut e, &mut net);
                prop_assert!(net.len() <= MAX_INTERFACES);
                prop_assert!(net.iter().all(|n| n.name.len() <= v2::MAX_NAME));
            }

            #[test]
            fn permille_is_bounded(pb in any::<u64>(), pi in any::<u64>(), cb in any::<u64>(), ci in any::<u64>()) {
                let prev = cpu::Ticks { busy: pb, idle: pi };
                let cur = cpu::Ticks { busy: cb, idle: ci };
                prop_assert!(cpu::permille(Some(prev), cur) <= 1000);
                prop_assert!(cpu::permille(None, cur) <= 1000);
            }
        }
    }
}
