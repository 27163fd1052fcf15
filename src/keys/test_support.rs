//! Fixtures shared by the key tests: scratch directories and known keys,
//! so each file's tests can use the same keys without copying them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Psk;

/// A unique scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory; `name` tells the tests' leftovers apart.
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("edge-gw-keys-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // ok: test-only module (cfg(test)); a failing scratch set-up should fail the test
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// `file` inside the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A known key, as hex.
pub const HEX_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// A second known key, different from [`HEX_A`].
pub const HEX_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
/// A third known key, used as the fleet key.
pub const HEX_C: &str = "0101010101010101010101010101010101010101010101010101010101010101";
/// A uuid in the shape clients use: 32 hex digits and a letter.
pub const UUID: &str = "0123456789abcdef0123456789abcdefA";

/// The key written as `hex`.
pub fn psk(hex: &str) -> Psk {
    // ok: test-only module (cfg(test)); a failing scratch set-up should fail the test
    Psk::from_hex(hex).unwrap()
}

/// The permission bits of `path`.
pub fn mode_of(path: &Path) -> u32 {
    // ok: test-only module (cfg(test)); a failing scratch set-up should fail the test
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}
