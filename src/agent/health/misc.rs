//! Single-number sources: uptime, process count, conntrack count.

use rustix::fs::FileType;

use super::source::{Source, count_error};

/// Seconds since boot from `/proc/uptime` (`929.94 1330.77`: uptime, then
/// idle time summed over CPUs). Fractions are dropped.
pub(super) fn parse_uptime(text: &str, errors: &mut u32) -> u64 {
    let first = text.split_ascii_whitespace().next().unwrap_or_default();
    let (int, frac) = first.split_once('.').unwrap_or((first, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match int.parse::<u64>() {
        Ok(v) if digits(int) && digits(frac) => v,
        _ => {
            count_error(errors);
            0
        }
    }
}

/// Number of processes: the numeric directories of `/proc`, one per
/// process (thread group), which is what `ps` counts. Threads do not
/// appear there (only under `/proc/PID/task`), so this is not the
/// thread count of `/proc/loadavg`'s `1/83`, nor `/proc/stat`'s
/// `processes` (forks since boot) or `procs_running` (runnable now).
/// One `getdents` pass over a stack buffer, no per-entry allocation.
///
/// `None` if `/proc` cannot be listed.
pub(super) fn count_processes(src: &mut Source) -> Option<u32> {
    let mut n = 0u32;
    let listed = src.list_dir(format_args!("proc"), |name, ty| {
        // DT_UNKNOWN is allowed: some filesystems (fixtures on overlayfs or
        // NFS) do not fill in d_type.
        let dir_like = matches!(ty, FileType::Directory | FileType::Unknown);
        if dir_like && !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
            n = n.saturating_add(1);
        }
    });
    listed.then_some(n)
}

/// Tracked connections: `nf_conntrack_count` (2.6.15+), else the
/// `ip_conntrack_count` of older kernels using the `ip_conntrack` module.
/// `None` when neither exists (no conntrack module loaded) or the number
/// is malformed (counted in `errors`).
pub(super) fn read_conntrack(src: &mut Source, errors: &mut u32) -> Option<u32> {
    let text = match src.read(format_args!("proc/sys/net/netfilter/nf_conntrack_count")) {
        Some(t) => t,
        None => src.read(format_args!(
            "proc/sys/net/ipv4/netfilter/ip_conntrack_count"
        ))?,
    };
    let parsed = text.trim().parse::<u32>().ok();
    if parsed.is_none() {
        count_error(errors);
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fixture_root, fixture_text};
    use super::*;

    #[test]
    fn uptime_fixtures() {
        for (set, want) in [
            ("linux-6.18-x86_64", 929),
            ("linux-2.6.18-i686", 115768),
            ("openwrt-22.03-mt7621", 264512),
        ] {
            let mut e = 0;
            assert_eq!(
                parse_uptime(&fixture_text(set, "proc/uptime"), &mut e),
                want,
                "{set}"
            );
            assert_eq!(e, 0);
        }
    }

    #[test]
    fn uptime_malformed() {
        for bad in [
            "",
            "x 1.0",
            "-1.00 2",
            "1.x 2",
            "18446744073709551616.00 1",
            ".5 1",
            "1. 2",
        ] {
            let mut e = 0;
            assert_eq!(parse_uptime(bad, &mut e), 0, "{bad:?}");
            assert_eq!(e, 1, "{bad:?}");
        }
        let mut e = 0;
        assert_eq!(parse_uptime("18446744073709551615.99\n", &mut e), u64::MAX);
        assert_eq!(parse_uptime("42", &mut e), 42);
        assert_eq!(e, 0);
    }

    #[test]
    fn process_count_fixtures() {
        for (set, want) in [
            ("linux-6.18-x86_64", Some(5)),
            ("linux-2.6.18-i686", Some(4)),
            ("openwrt-22.03-mt7621", Some(6)),
            // proc/5 and proc/77 count; the file proc/99 and dir proc/12a
            // do not.
            ("hostile", Some(2)),
            ("does-not-exist", None),
        ] {
            let mut src = Source::new(fixture_root(set));
            assert_eq!(count_processes(&mut src), want, "{set}");
        }
    }

    #[test]
    fn conntrack_fixtures() {
        for (set, want, errors) in [
            ("linux-6.18-x86_64", Some(0), 0),
            // Only the old ip_conntrack path exists there.
            ("linux-2.6.18-i686", Some(1187), 0),
            ("openwrt-22.03-mt7621", Some(87), 0),
            ("hostile", None, 1),
            ("does-not-exist", None, 0),
        ] {
            let mut src = Source::new(fixture_root(set));
            let mut e = 0;
            assert_eq!(read_conntrack(&mut src, &mut e), want, "{set}");
            assert_eq!(e, errors, "{set}");
        }
    }
}
