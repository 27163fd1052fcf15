//! What can go wrong with keys: [`Problem`] says what is wrong with a text,
//! [`KeyError`] adds where (file, line) or which file operation failed.
//!
//! Both formats and keygen share these types so every key error reads the
//! same way: `FILE:LINE: problem`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What is wrong with the text of a key file or keyring (or a uuid).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The key contains something other than hex digits.
    NotHex,
    /// The key has `found` hex digits instead of 64.
    WrongLength {
        /// Number of hex digits present.
        found: usize,
    },
    /// The uuid breaks the rules of [`check_uuid`](super::check_uuid).
    BadUuid {
        /// The offending uuid.
        uuid: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Key file: a line is not `name = value`.
    ExpectedSetting,
    /// Key file: a setting other than `uuid` or `key`.
    UnknownSetting(String),
    /// Key file: the same setting twice.
    RepeatedSetting {
        /// The setting's name.
        name: String,
        /// Line of its first occurrence.
        first_line: usize,
    },
    /// Key file: there is no `key = ...` line.
    MissingKey,
    /// Keyring: a line does not have exactly two fields.
    FieldCount {
        /// Number of whitespace-separated fields present.
        found: usize,
    },
    /// Keyring: a uuid appears twice.
    DuplicateUuid {
        /// The repeated uuid.
        uuid: String,
        /// Line of its first occurrence.
        first_line: usize,
    },
    /// Keyring: more than one fleet (`*`) key.
    DuplicateFleet {
        /// Line of the first fleet key.
        first_line: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotHex => f.write_str("key is not hexadecimal (expected 64 hex digits)"),
            Problem::WrongLength { found } => {
                write!(f, "key has {found} hex digits, expected 64 (32 bytes)")
            }
            Problem::BadUuid { uuid, reason } => write!(f, "invalid uuid {uuid:?}: {reason}"),
            Problem::ExpectedSetting => f.write_str("expected `uuid = ...` or `key = ...`"),
            Problem::UnknownSetting(name) => {
                write!(f, "unknown setting `{name}` (expected `uuid` or `key`)")
            }
            Problem::RepeatedSetting { name, first_line } => {
                write!(f, "`{name}` is already set on line {first_line}")
            }
            Problem::MissingKey => f.write_str("no `key = <64 hex digits>` line"),
            Problem::FieldCount { found } => write!(
                f,
                "expected `<uuid> <64 hex digits>` or `* <64 hex digits>`, found {found} field(s)"
            ),
            Problem::DuplicateUuid { uuid, first_line } => {
                write!(f, "uuid {uuid} already has a key on line {first_line}")
            }
            Problem::DuplicateFleet { first_line } => {
                write!(f, "a fleet key (`*`) is already set on line {first_line}")
            }
        }
    }
}

/// Why loading, parsing or writing keys failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// A file operation failed.
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done, e.g. "read", "create".
        action: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// The text is malformed.
    Syntax {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// 1-based line number, when the problem belongs to a line.
        line: Option<usize>,
        /// What is wrong.
        problem: Problem,
    },
    /// A key file already exists; keys are never overwritten.
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// keygen: the keyring already holds a key for this uuid (or a fleet key).
    InKeyring {
        /// The keyring file.
        path: PathBuf,
        /// Line of the existing entry.
        line: usize,
        /// The uuid, or `None` for the fleet key.
        uuid: Option<String>,
    },
    /// The operating system's random source failed.
    Random(getrandom::Error),
}

impl KeyError {
    /// The syntax problem, if this is a syntax error (handy in tests and
    /// for callers that want to react to a specific mistake).
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            KeyError::Syntax { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Attaches the file name to a syntax error from [`AgentKey::parse`](super::AgentKey::parse) or
    /// [`Keyring::parse`](super::Keyring::parse).
    pub(super) fn in_file(self, file: &Path) -> KeyError {
        match self {
            KeyError::Syntax {
                path: None,
                line,
                problem,
            } => KeyError::Syntax {
                path: Some(file.to_path_buf()),
                line,
                problem,
            },
            other => other,
        }
    }

    /// An I/O error on `path` while doing `action` ("read", "create", ...).
    pub(super) fn io(path: &Path, action: &'static str, source: io::Error) -> KeyError {
        KeyError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Io {
                path,
                action,
                source,
            } => write!(f, "{}: cannot {action}: {source}", path.display()),
            KeyError::Syntax {
                path,
                line,
                problem,
            } => match (path, line) {
                (Some(p), Some(l)) => write!(f, "{}:{l}: {problem}", p.display()),
                (Some(p), None) => write!(f, "{}: {problem}", p.display()),
                (None, Some(l)) => write!(f, "line {l}: {problem}"),
                (None, None) => write!(f, "{problem}"),
            },
            KeyError::Exists { path } => write!(
                f,
                "{}: already exists; refusing to overwrite a key file (remove it or pick another file)",
                path.display()
            ),
            KeyError::InKeyring {
                path,
                line,
                uuid: Some(uuid),
            } => write!(
                f,
                "{}:{line}: uuid {uuid} already has a key; remove that line first to replace it",
                path.display()
            ),
            KeyError::InKeyring {
                path,
                line,
                uuid: None,
            } => write!(
                f,
                "{}:{line}: the keyring already has a fleet key; remove that line first to replace it",
                path.display()
            ),
            KeyError::Random(e) => write!(f, "cannot get random bytes from the system: {e}"),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Io { source, .. } => Some(source),
            // getrandom::Error is a std error only with getrandom's "std"
            // feature; its Display (used above) does not need it.
            _ => None,
        }
    }
}

/// Shorthand for a syntax error on `line` of text without a file name yet.
pub(super) fn syntax(line: usize, problem: Problem) -> KeyError {
    KeyError::Syntax {
        path: None,
        line: Some(line),
        problem,
    }
}
