//! Filesystem usage of configured mount points via `statvfs(2)`.
//!
//! The root directory of the other readers does not apply: statvfs asks
//! the kernel about a live mount, which a fixture cannot fake.
//!
//! `statvfs` blocks while the filesystem does: an unreachable NFS or CIFS
//! mount hangs the caller. Configure local mounts only (`/`, `/overlay`,
//! `/tmp`, a USB disk).

use crate::proto::v2::FsUsage;

use super::source::bounded_name;

/// Size and space available to unprivileged users of the filesystem
/// holding `mount`, in KiB. `None` if it cannot be queried (missing path,
/// unmounted USB disk, permission): such mounts are left out of the report.
pub(super) fn usage(mount: &str) -> Option<FsUsage> {
    let st = rustix::fs::statvfs(mount).ok()?;
    // f_frsize is the unit of f_blocks/f_bavail; some old kernels and
    // filesystems leave it 0 and mean f_bsize.
    let unit = if st.f_frsize != 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Some(FsUsage {
        mount: bounded_name(mount),
        total_kb: kib(st.f_blocks, unit),
        avail_kb: kib(st.f_bavail, unit),
    })
}

/// `blocks × unit / 1024` without overflow (saturating at `u64::MAX`).
fn kib(blocks: u64, unit: u64) -> u64 {
    let v = u128::from(blocks) * u128::from(unit) / 1024;
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_size() {
        let u = usage("/").unwrap();
        assert_eq!(u.mount, "/");
        assert!(u.total_kb > 0);
        assert!(u.avail_kb <= u.total_kb);
    }

    #[test]
    fn missing_mount_is_none() {
        assert_eq!(usage("/nonexistent/edge-gw/mount"), None);
        assert_eq!(usage(""), None);
        // An interior NUL cannot become a C string: an error, not a panic.
        assert_eq!(usage("/\0x"), None);
    }

    #[test]
    fn kib_arithmetic() {
        assert_eq!(kib(1000, 4096), 4000);
        assert_eq!(kib(3, 512), 1);
        assert_eq!(kib(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(kib(0, 0), 0);
    }
}
