//! Reading small procfs/sysfs files below a root directory.
//!
//! One [`Source`] owns the only read buffer and path buffer of a
//! [`super::HealthReader`]: both are cleared and refilled on every read, so
//! after the first report the steady state allocates nothing here.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Read as _;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags, RawDir};

use super::MAX_FILE_BYTES;
use crate::proto::v2::MAX_NAME;

/// Files below one root, read through reused buffers.
#[derive(Debug)]
pub(super) struct Source {
    root: PathBuf,
    /// Scratch for the relative path text (`format_args!` is written here).
    rel: String,
    /// Scratch for `root` + `rel`.
    path: PathBuf,
    /// Scratch for file contents.
    buf: Vec<u8>,
}

impl Source {
    /// Files are looked up below `root` (`/` in production).
    pub(super) fn new(root: PathBuf) -> Source {
        Source {
            root,
            rel: String::new(),
            path: PathBuf::new(),
            buf: Vec::new(),
        }
    }

    /// The root directory.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Builds `root/rel` in the path buffer.
    fn set_path(&mut self, rel: fmt::Arguments<'_>) {
        self.rel.clear();
        // ok: writing into a String only fails if a Display impl does, and
        // the callers format literals and integers.
        let _ = self.rel.write_fmt(rel);
        self.path.as_mut_os_string().clear();
        self.path.push(&self.root);
        // `rel` never starts with '/', so push appends instead of replacing.
        self.path.push(self.rel.trim_start_matches('/'));
    }

    /// Reads `root/rel`, at most [`MAX_FILE_BYTES`].
    ///
    /// `None` if the file is missing or unreadable: kernels differ in what
    /// they have, and sensors may refuse reads (EIO, ENODATA) when idle.
    /// Invalid UTF-8 is replaced (U+FFFD) rather than rejected, so one odd
    /// interface name or a capped read cut inside a character does not hide
    /// the whole file; such bytes then fail number parsing line by line.
    pub(super) fn read(&mut self, rel: fmt::Arguments<'_>) -> Option<Cow<'_, str>> {
        self.set_path(rel);
        self.buf.clear();
        let file = File::open(&self.path).ok()?;
        // An error mid-read leaves a prefix of unknown completeness: skip.
        file.take(MAX_FILE_BYTES).read_to_end(&mut self.buf).ok()?;
        if self.buf.len() as u64 >= MAX_FILE_BYTES {
            // Capped: the last line is probably cut short, and a cut number
            // would be read as a wrong but plausible value. Drop it.
            let keep = self
                .buf
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            self.buf.truncate(keep);
        }
        Some(String::from_utf8_lossy(&self.buf))
    }

    /// Calls `f` with the name and type of each entry of the directory
    /// `root/rel` (`.` and `..` included); `false` if it cannot be opened.
    ///
    /// Uses `rustix::fs::RawDir` over a stack buffer, which hands out names
    /// without allocating; std's `read_dir` allocates one per entry, and
    /// `/proc` is listed every second. A read error ends the listing early:
    /// what was seen so far is kept.
    pub(super) fn list_dir(
        &mut self,
        rel: fmt::Arguments<'_>,
        mut f: impl FnMut(&[u8], FileType),
    ) -> bool {
        self.set_path(rel);
        let fd: OwnedFd = match rustix::fs::open(
            &self.path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => return false,
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut dir = RawDir::new(fd, &mut buf);
        while let Some(Ok(entry)) = dir.next() {
            f(entry.file_name().to_bytes(), entry.file_type());
        }
        true
    }
}

/// Copies a name for the report, cut to [`MAX_NAME`] bytes on a character
/// boundary: the master's decoder rejects longer names.
pub(super) fn bounded_name(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Adds one to a parse-error counter; saturates instead of wrapping after
/// years of a broken file being read every second.
pub(super) fn count_error(errors: &mut u32) {
    *errors = errors.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_char_boundaries() {
        assert_eq!(bounded_name("eth0"), "eth0");
        let long = "x".repeat(100);
        assert_eq!(bounded_name(&long).len(), MAX_NAME);
        // 63 ASCII bytes then a 2-byte character straddling the limit.
        let s = format!("{}é", "a".repeat(63));
        assert_eq!(bounded_name(&s), "a".repeat(63));
    }

    #[test]
    fn missing_file_is_none() {
        let mut s = Source::new(PathBuf::from("/nonexistent-edge-gw-root"));
        assert!(s.read(format_args!("proc/stat")).is_none());
        assert!(!s.list_dir(format_args!("proc"), |_, _| {}));
    }

    #[test]
    fn capped_read_drops_the_cut_line() {
        let dir = std::env::temp_dir().join(format!("edge-gw-health-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 10 000 lines of 8 bytes: 80 000 bytes, over the 65 536 cap, which
        // falls inside line 8193 (8192 × 8 = 65 536 exactly ends line 8192).
        let text = "1234567\n".repeat(10_000);
        std::fs::write(dir.join("big"), &text).unwrap();
        let mut s = Source::new(dir.clone());
        let got = s.read(format_args!("big")).unwrap().into_owned();
        assert_eq!(got.len(), 65_536);
        assert!(got.ends_with("1234567\n"));
        // A cap inside a line: 9-byte lines, 65 536 = 7281 × 9 + 7.
        std::fs::write(dir.join("big9"), "12345678\n".repeat(10_000)).unwrap();
        let got = s.read(format_args!("big9")).unwrap().into_owned();
        assert_eq!(got.len(), 7281 * 9);
        assert!(got.ends_with("12345678\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let dir = std::env::temp_dir().join(format!("edge-gw-health-utf8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"ok 1\n\xff\xfe 2\n").unwrap();
        let mut s = Source::new(dir.clone());
        assert_eq!(
            s.read(format_args!("f")).unwrap(),
            "ok 1\n\u{fffd}\u{fffd} 2\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_saturate() {
        let mut e = u32::MAX - 1;
        count_error(&mut e);
        count_error(&mut e);
        assert_eq!(e, u32::MAX);
    }
}
