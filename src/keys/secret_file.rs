//! What the agent key file and the keyring have in common: both are
//! secret text files with `#` comments.
//!
//! Reading them in one place keeps the "others can read this secret"
//! warning identical for both.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::KeyError;

/// The text of a line without its `#` comment and surrounding blanks.
///
/// Neither uuids nor hex keys can contain `#`, so cutting at the first one
/// is unambiguous and also allows trailing comments.
pub(super) fn strip_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(text, _)| text).trim()
}

/// Reads a whole secret file, warning when others may read it.
pub(super) fn read_secret_file(path: &Path) -> Result<String, KeyError> {
    let mut file = File::open(path).map_err(|e| KeyError::io(path, "open", e))?;
    // Asking the open file (not the path) avoids checking a different file
    // than the one read.
    let meta = file.metadata().map_err(|e| KeyError::io(path, "stat", e))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        log::warn!(
            "{} holds secret keys but is accessible by group or others (mode {:03o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| KeyError::io(path, "read", e))?;
    Ok(text)
}
