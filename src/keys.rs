//! Pre-shared keys: key files, the master keyring, keygen.
//!
//! v2 sessions are Noise `NNpsk0`: both ends must hold the same 32-byte
//! pre-shared key ([`Psk`]). An agent reads its key from a small text key
//! file ([`AgentKey`]); the master finds the key for a connecting agent in
//! its [`Keyring`] by the uuid the agent announces. [`keygen`] creates both
//! halves at once so they cannot drift apart.
//!
//! Secrets never travel on the command line (it is visible in `ps` and in
//! shell history): keys are only generated here and read from files.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Length of a pre-shared key in bytes.
pub const PSK_LEN: usize = 32;

/// Longest uuid, in bytes: the wire carries the uuid in 33 bytes.
pub const UUID_MAX_LEN: usize = 33;

/// First line of every key file [`keygen`] writes.
const KEY_FILE_HEADER: &str = "# edge-gw agent key (keep secret, mode 0600)";

/// A 32-byte pre-shared key.
///
/// `Debug` shows only [`Psk::fingerprint`], so keys can sit in structs that
/// get logged without leaking.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; PSK_LEN]);

impl Psk {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; PSK_LEN]) -> Psk {
        Psk(bytes)
    }

    /// Draws a fresh key from the operating system's random source.
    pub fn generate() -> Result<Psk, KeyError> {
        let mut bytes = [0u8; PSK_LEN];
        getrandom::fill(&mut bytes).map_err(KeyError::Random)?;
        Ok(Psk(bytes))
    }

    /// The raw key, for the Noise handshake.
    pub fn as_bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }

    /// Parses exactly 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Psk, Problem> {
        // Check the characters first: "not hex" is the more useful message
        // when someone pasted the wrong thing entirely.
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Problem::NotHex);
        }
        if text.len() != PSK_LEN * 2 {
            return Err(Problem::WrongLength { found: text.len() });
        }
        let mut bytes = [0u8; PSK_LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            // ok: chunks_exact(2) yields slices of exactly two bytes.
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Psk(bytes))
    }

    /// The key as 64 lowercase hex digits: the form stored in files.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// An 8-hex-digit identifier for logs and `Debug`.
    ///
    /// It is a CRC-32 of the key: good for telling keys apart, NOT a
    /// cryptographic digest. It reveals 32 bits of information about the
    /// key, which leaves well over 200 unknown bits, so it is safe to log.
    pub fn fingerprint(&self) -> String {
        format!("{:08x}", crc32fast::hash(&self.0))
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(fp:{})", self.fingerprint())
    }
}

/// Value of one ASCII hex digit; the caller has checked `b` is one.
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        // Unreachable: from_hex checked is_ascii_hexdigit first.
        _ => 0,
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Checks that `uuid` can be used as an agent uuid in key files, the
/// keyring and file names.
///
/// Accepted: 1 to 33 ASCII letters, digits and `-`, `_`, `.`, `:`. Clients
/// use 32 hex digits and one letter; the wider set leaves room for test
/// rigs while keeping whitespace, `#` and `/` (which would break the file
/// formats and the default `--out` file name) out.
pub fn check_uuid(uuid: &str) -> Result<(), Problem> {
    let reason = if uuid.is_empty() {
        "it is empty"
    } else if uuid.len() > UUID_MAX_LEN {
        "it is longer than 33 bytes"
    } else if !uuid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        "only letters, digits and - _ . : are allowed"
    } else {
        return Ok(());
    };
    Err(Problem::BadUuid {
        uuid: uuid.to_owned(),
        reason,
    })
}

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
    /// The uuid breaks the rules of [`check_uuid`].
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

    /// Attaches the file name to a syntax error from [`AgentKey::parse`] or
    /// [`Keyring::parse`].
    fn in_file(self, file: &Path) -> KeyError {
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

    fn io(path: &Path, action: &'static str, source: io::Error) -> KeyError {
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
fn syntax(line: usize, problem: Problem) -> KeyError {
    KeyError::Syntax {
        path: None,
        line: Some(line),
        problem,
    }
}

/// The text of a line without its `#` comment and surrounding blanks.
///
/// Neither uuids nor hex keys can contain `#`, so cutting at the first one
/// is unambiguous and also allows trailing comments.
fn strip_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(text, _)| text).trim()
}

/// Reads a whole secret file, warning when others may read it.
fn read_secret_file(path: &Path) -> Result<String, KeyError> {
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

/// An agent's key file: its key and, for device keys, its uuid.
///
/// Format (blank lines and `#` comments allowed, settings in any order):
///
/// ```text
/// # edge-gw agent key (keep secret, mode 0600)
/// uuid = 0123456789abcdef0123456789abcdefA
/// key = <64 hex digits>
/// ```
///
/// `uuid` is absent in fleet key files; the agent then needs its uuid from
/// elsewhere (`--uuid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    /// The agent's uuid, if the file names one.
    pub uuid: Option<String>,
    /// The pre-shared key.
    pub psk: Psk,
}

impl AgentKey {
    /// A new key with a fresh random [`Psk`].
    pub fn generate(uuid: Option<String>) -> Result<AgentKey, KeyError> {
        Ok(AgentKey {
            uuid,
            psk: Psk::generate()?,
        })
    }

    /// Reads and parses a key file. Warns (via `log`) if the file is
    /// accessible by group or others.
    pub fn load(path: &Path) -> Result<AgentKey, KeyError> {
        let text = read_secret_file(path)?;
        AgentKey::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses key file text.
    pub fn parse(text: &str) -> Result<AgentKey, KeyError> {
        let mut uuid: Option<(String, usize)> = None;
        let mut psk: Option<(Psk, usize)> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = strip_comment(raw);
            if content.is_empty() {
                continue;
            }
            let Some((name, value)) = content.split_once('=') else {
                return Err(syntax(line, Problem::ExpectedSetting));
            };
            let (name, value) = (name.trim(), value.trim());
            let first_line = match name {
                "uuid" => uuid.as_ref().map(|(_, l)| *l),
                "key" => psk.as_ref().map(|(_, l)| *l),
                _ => return Err(syntax(line, Problem::UnknownSetting(name.to_owned()))),
            };
            if let Some(first_line) = first_line {
                let problem = Problem::RepeatedSetting {
                    name: name.to_owned(),
                    first_line,
                };
                return Err(syntax(line, problem));
            }
            if name == "uuid" {
                check_uuid(value).map_err(|p| syntax(line, p))?;
                uuid = Some((value.to_owned(), line));
            } else {
                let key = Psk::from_hex(value).map_err(|p| syntax(line, p))?;
                psk = Some((key, line));
            }
        }
        let Some((psk, _)) = psk else {
            return Err(KeyError::Syntax {
                path: None,
                line: None,
                problem: Problem::MissingKey,
            });
        };
        Ok(AgentKey {
            uuid: uuid.map(|(u, _)| u),
            psk,
        })
    }

    /// The key file text, as [`AgentKey::parse`] reads it.
    pub fn to_text(&self) -> String {
        let uuid_line = match &self.uuid {
            Some(uuid) => format!("uuid = {uuid}\n"),
            None => {
                "# fleet key: shared by all agents without their own key; give each agent --uuid\n"
                    .to_owned()
            }
        };
        format!(
            "{KEY_FILE_HEADER}\n{uuid_line}key = {}\n",
            self.psk.to_hex()
        )
    }

    /// Writes a new key file with mode 0600. Refuses to overwrite an
    /// existing file ([`KeyError::Exists`]) so a key in use is never lost.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        // create_new makes "exists" and "create" one atomic step, and the
        // mode is set at creation so the secret is never briefly readable.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    KeyError::Exists {
                        path: path.to_path_buf(),
                    }
                } else {
                    KeyError::io(path, "create", e)
                }
            })?;
        let written = file
            .write_all(self.to_text().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // Don't leave a truncated key file behind to be mistaken for a
            // good one; the removal is best effort, the write error matters.
            drop(file);
            let _ = fs::remove_file(path);
            return Err(KeyError::io(path, "write", e));
        }
        Ok(())
    }
}

/// The master's keys, looked up by agent uuid.
///
/// File format, one entry per line, `#` comments and blank lines allowed:
///
/// ```text
/// # device keys: <uuid> <64 hex digits>
/// 0123456789abcdef0123456789abcdefA 3f1c...e9
/// # fleet key for all other devices (at most one)
/// * 8a02...17
/// ```
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Device keys sorted by uuid bytes, for binary search: compact and
    /// fast enough for thousands of agents.
    devices: Vec<(Box<str>, Psk)>,
    /// Key for every device without its own entry.
    fleet: Option<Psk>,
}

/// A parsed keyring plus where each entry came from; keygen needs the line
/// numbers to report conflicts.
struct ParsedKeyring {
    keyring: Keyring,
    lines: HashMap<String, usize>,
    fleet_line: Option<usize>,
}

impl Keyring {
    /// Reads and parses a keyring file. Warns (via `log`) if the file is
    /// accessible by group or others.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let text = read_secret_file(path)?;
        Keyring::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses keyring text. Errors name the line and the reason; a uuid
    /// listed twice or a second fleet key is an error, because silently
    /// picking one would make the other entry a trap.
    pub fn parse(text: &str) -> Result<Keyring, KeyError> {
        Keyring::parse_with_lines(text).map(|parsed| parsed.keyring)
    }

    fn parse_with_lines(text: &str) -> Result<ParsedKeyring, KeyError> {
        let mut lines: HashMap<String, usize> = HashMap::new();
        let mut devices: Vec<(Box<str>, Psk)> = Vec::new();
        let mut fleet: Option<(Psk, usize)> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = strip_comment(raw);
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [uuid, key] = fields[..] else {
                return Err(syntax(
                    line,
                    Problem::FieldCount {
                        found: fields.len(),
                    },
                ));
            };
            if uuid == "*" {
                if let Some((_, first_line)) = fleet {
                    return Err(syntax(line, Problem::DuplicateFleet { first_line }));
                }
                let psk = Psk::from_hex(key).map_err(|p| syntax(line, p))?;
                fleet = Some((psk, line));
                continue;
            }
            check_uuid(uuid).map_err(|p| syntax(line, p))?;
            if let Some(&first_line) = lines.get(uuid) {
                let problem = Problem::DuplicateUuid {
                    uuid: uuid.to_owned(),
                    first_line,
                };
                return Err(syntax(line, problem));
            }
            let psk = Psk::from_hex(key).map_err(|p| syntax(line, p))?;
            lines.insert(uuid.to_owned(), line);
            devices.push((Box::from(uuid), psk));
        }
        devices.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        devices.shrink_to_fit();
        Ok(ParsedKeyring {
            keyring: Keyring {
                devices,
                fleet: fleet.as_ref().map(|(psk, _)| psk.clone()),
            },
            lines,
            fleet_line: fleet.map(|(_, line)| line),
        })
    }

    /// The key for the agent with this uuid: its own key if listed, else
    /// the fleet key, else `None`.
    ///
    /// `uuid` is the raw wire field; trailing NUL bytes (padding of the
    /// fixed 33-byte field) are ignored. An empty uuid gets the fleet key
    /// like any other unlisted one.
    pub fn lookup(&self, uuid: &[u8]) -> Option<&Psk> {
        let end = uuid.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let uuid = &uuid[..end];
        match self
            .devices
            .binary_search_by(|(u, _)| u.as_bytes().cmp(uuid))
        {
            Ok(i) => self.devices.get(i).map(|(_, psk)| psk),
            Err(_) => self.fleet.as_ref(),
        }
    }

    /// The fleet key, if there is one.
    pub fn fleet(&self) -> Option<&Psk> {
        self.fleet.as_ref()
    }

    /// Number of keys: device keys plus the fleet key if present.
    pub fn len(&self) -> usize {
        self.devices.len() + usize::from(self.fleet.is_some())
    }

    /// True if the keyring holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The uuids that have their own key, in sorted order.
    pub fn uuids(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|(uuid, _)| &**uuid)
    }
}

/// Whose key [`keygen`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTarget {
    /// A key for one device, by uuid.
    Device(String),
    /// The fleet key, used by every device without its own key.
    Fleet,
}

/// The keyring line the master needs for `psk`: `<uuid> <hex>` or
/// `* <hex>` (without newline).
pub fn keyring_line(target: &KeyTarget, psk: &Psk) -> String {
    match target {
        KeyTarget::Device(uuid) => format!("{uuid} {}", psk.to_hex()),
        KeyTarget::Fleet => format!("* {}", psk.to_hex()),
    }
}

/// What `edge-gw keygen` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeygenOptions {
    /// Device or fleet key.
    pub target: KeyTarget,
    /// Where to write the agent key file. Default: `<uuid>.key` (or
    /// `fleet.key`) in the current directory, see [`default_key_file`].
    pub out: Option<PathBuf>,
    /// Keyring to append the new entry to (created with mode 0600 if
    /// missing). Default: none, the entry is printed instead.
    pub keyring: Option<PathBuf>,
}

/// The key file keygen writes when no `--out` is given.
pub fn default_key_file(target: &KeyTarget) -> PathBuf {
    match target {
        KeyTarget::Device(uuid) => PathBuf::from(format!("{uuid}.key")),
        KeyTarget::Fleet => PathBuf::from("fleet.key"),
    }
}

/// A keyring opened for appending by keygen.
struct KeyringAppend {
    file: File,
    path: PathBuf,
    /// We made the file, so a failed keygen removes it again.
    created: bool,
    /// The existing text lacks a final newline; add one before our line.
    needs_newline: bool,
}

/// Opens (or creates, mode 0600) the keyring and checks that `target` has
/// no entry yet.
fn open_keyring_for_append(path: &Path, target: &KeyTarget) -> Result<KeyringAppend, KeyError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).mode(0o600);
    // Try create_new first to learn whether we created the file.
    let (mut file, created) = match options.clone().create_new(true).open(path) {
        Ok(file) => (file, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
            options
                .open(path)
                .map_err(|e| KeyError::io(path, "open", e))?,
            false,
        ),
        Err(e) => return Err(KeyError::io(path, "create", e)),
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| KeyError::io(path, "read", e))?;
    // Appending to a broken keyring would only bury the error; the master
    // would refuse it anyway.
    let parsed = Keyring::parse_with_lines(&text).map_err(|e| e.in_file(path))?;
    let existing = match target {
        KeyTarget::Device(uuid) => parsed.lines.get(uuid).copied(),
        KeyTarget::Fleet => parsed.fleet_line,
    };
    if let Some(line) = existing {
        return Err(KeyError::InKeyring {
            path: path.to_path_buf(),
            line,
            uuid: match target {
                KeyTarget::Device(uuid) => Some(uuid.clone()),
                KeyTarget::Fleet => None,
            },
        });
    }
    Ok(KeyringAppend {
        file,
        path: path.to_path_buf(),
        created,
        needs_newline: !text.is_empty() && !text.ends_with('\n'),
    })
}

/// `edge-gw keygen`: makes a new key, writes the agent key file (mode
/// 0600, never overwriting) and either appends the master's keyring line to
/// `opts.keyring` or writes it to `stdout`. Returns the key file's path.
///
/// Either everything is done or, on error, nothing is left behind: the
/// keyring is checked for conflicts before the key file is written, and the
/// key file is removed again if the keyring line cannot be delivered.
pub fn keygen(opts: &KeygenOptions, stdout: &mut dyn Write) -> Result<PathBuf, KeyError> {
    let uuid = match &opts.target {
        KeyTarget::Device(uuid) => {
            check_uuid(uuid).map_err(|problem| KeyError::Syntax {
                path: None,
                line: None,
                problem,
            })?;
            Some(uuid.clone())
        }
        KeyTarget::Fleet => None,
    };
    let mut keyring = match &opts.keyring {
        Some(path) => Some(open_keyring_for_append(path, &opts.target)?),
        None => None,
    };
    let key_file = opts
        .out
        .clone()
        .unwrap_or_else(|| default_key_file(&opts.target));

    let result = AgentKey::generate(uuid).and_then(|key| {
        key.write_new(&key_file)?;
        let line = keyring_line(&opts.target, &key.psk);
        let delivered = match keyring.as_mut() {
            Some(k) => {
                let text = format!("{}{line}\n", if k.needs_newline { "\n" } else { "" });
                // One write call so a concurrent reader sees the whole line
                // or nothing.
                k.file
                    .write_all(text.as_bytes())
                    .and_then(|()| k.file.sync_all())
                    .map_err(|e| KeyError::io(&k.path, "append to", e))
            }
            None => writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .map_err(|e| KeyError::io(Path::new("<stdout>"), "write", e)),
        };
        if let Err(e) = delivered {
            // A key file without its keyring entry is useless and confusing.
            let _ = fs::remove_file(&key_file);
            return Err(e);
        }
        log::info!(
            "wrote agent key file {} (key fingerprint {}){}",
            key_file.display(),
            key.psk.fingerprint(),
            match &keyring {
                Some(k) => format!("; appended its entry to {}", k.path.display()),
                None => "; add the line printed above to the master's keyring".to_owned(),
            }
        );
        Ok(())
    });
    if result.is_err()
        && let Some(k) = keyring.filter(|k| k.created)
    {
        drop(k.file);
        let _ = fs::remove_file(&k.path);
    }
    result.map(|()| key_file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A unique scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("edge-gw-keys-{}-{name}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, file: &str) -> PathBuf {
            self.0.join(file)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const HEX_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const HEX_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    const HEX_C: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const UUID: &str = "0123456789abcdef0123456789abcdefA";

    fn psk(hex: &str) -> Psk {
        Psk::from_hex(hex).unwrap()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn keyring_problem(text: &str) -> (Option<usize>, Problem) {
        match Keyring::parse(text).unwrap_err() {
            KeyError::Syntax { line, problem, .. } => (line, problem),
            other => panic!("expected syntax error, got {other:?}"),
        }
    }

    fn key_file_problem(text: &str) -> (Option<usize>, Problem) {
        match AgentKey::parse(text).unwrap_err() {
            KeyError::Syntax { line, problem, .. } => (line, problem),
            other => panic!("expected syntax error, got {other:?}"),
        }
    }

    #[test]
    fn hex_round_trip_and_case() {
        let key = psk(HEX_A);
        assert_eq!(key.to_hex(), HEX_A);
        assert_eq!(key.as_bytes()[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(Psk::from_hex(&HEX_A.to_uppercase()).unwrap(), key);
    }

    #[test]
    fn hex_errors() {
        assert_eq!(Psk::from_hex("xyz"), Err(Problem::NotHex));
        assert_eq!(
            Psk::from_hex(&HEX_A[1..]),
            Err(Problem::WrongLength { found: 63 })
        );
        assert_eq!(Psk::from_hex(""), Err(Problem::WrongLength { found: 0 }));
        let long = format!("{HEX_A}00");
        assert_eq!(
            Psk::from_hex(&long),
            Err(Problem::WrongLength { found: 66 })
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = psk(HEX_A);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&HEX_A[..16]), "{shown}");
        assert!(shown.contains(&key.fingerprint()));
        assert_eq!(key.fingerprint().len(), 8);
        assert_ne!(key.fingerprint(), psk(HEX_B).fingerprint());
        let agent = AgentKey {
            uuid: None,
            psk: key,
        };
        assert!(!format!("{agent:?}").contains(&HEX_A[..16]));
    }

    #[test]
    fn generate_differs() {
        let a = Psk::generate().unwrap();
        let b = Psk::generate().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn uuid_rules() {
        assert!(check_uuid(UUID).is_ok());
        assert!(check_uuid("router-1.lab:x_y").is_ok());
        for bad in ["", "a b", "a/b", "#x", "*", &"a".repeat(34)] {
            assert!(
                matches!(check_uuid(bad), Err(Problem::BadUuid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn agent_key_round_trip() {
        for uuid in [Some(UUID.to_owned()), None] {
            let key = AgentKey {
                uuid,
                psk: psk(HEX_B),
            };
            let text = key.to_text();
            assert!(text.starts_with(KEY_FILE_HEADER));
            assert_eq!(AgentKey::parse(&text).unwrap(), key);
        }
    }

    #[test]
    fn agent_key_lenient_layout() {
        let text = format!("\n  key=  {HEX_A}   # trailing comment\n\n uuid = {UUID}\n");
        let key = AgentKey::parse(&text).unwrap();
        assert_eq!(key.uuid.as_deref(), Some(UUID));
        assert_eq!(key.psk, psk(HEX_A));
    }

    #[test]
    fn agent_key_errors() {
        assert_eq!(
            key_file_problem("# comment\nkey abc\n"),
            (Some(2), Problem::ExpectedSetting)
        );
        assert_eq!(
            key_file_problem(&format!("key = {HEX_A}\ncolour = red\n")),
            (Some(2), Problem::UnknownSetting("colour".into()))
        );
        assert_eq!(
            key_file_problem(&format!("key = {HEX_A}\nkey = {HEX_B}\n")),
            (
                Some(2),
                Problem::RepeatedSetting {
                    name: "key".into(),
                    first_line: 1
                }
            )
        );
        assert_eq!(
            key_file_problem(&format!("uuid = a\nuuid = b\nkey = {HEX_A}\n")).1,
            Problem::RepeatedSetting {
                name: "uuid".into(),
                first_line: 1
            }
        );
        assert_eq!(key_file_problem("key = zz\n"), (Some(1), Problem::NotHex));
        assert_eq!(
            key_file_problem("\nkey = abcd\n"),
            (Some(2), Problem::WrongLength { found: 4 })
        );
        assert!(matches!(
            key_file_problem(&format!("uuid = a b\nkey = {HEX_A}\n")),
            (Some(1), Problem::BadUuid { .. })
        ));
        assert_eq!(
            key_file_problem(&format!("uuid = {UUID}\n")),
            (None, Problem::MissingKey)
        );
        assert_eq!(key_file_problem(""), (None, Problem::MissingKey));
    }

    #[test]
    fn load_names_file_and_line() {
        let dir = TempDir::new("load");
        let path = dir.path("bad.key");
        fs::write(&path, "# header\nkey = 1234\n").unwrap();
        let err = AgentKey::load(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("bad.key:2:"), "{message}");
        assert!(message.contains("4 hex digits"), "{message}");
        assert_eq!(err.problem(), Some(&Problem::WrongLength { found: 4 }));

        let missing = dir.path("missing.key");
        let err = AgentKey::load(&missing).unwrap_err();
        assert!(
            matches!(err, KeyError::Io { action: "open", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.key"));

        let ring = dir.path("ring");
        fs::write(&ring, format!("{UUID} {HEX_A}\n{UUID} {HEX_B}\n")).unwrap();
        let message = Keyring::load(&ring).unwrap_err().to_string();
        assert!(message.contains("ring:2:"), "{message}");
        assert!(message.contains("line 1"), "{message}");

        // A non-UTF-8 file is an I/O error naming the file, not a panic.
        let binary = dir.path("binary.key");
        fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let err = AgentKey::load(&binary).unwrap_err();
        assert!(
            matches!(err, KeyError::Io { action: "read", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn write_new_is_0600_and_refuses_overwrite() {
        let dir = TempDir::new("write");
        let path = dir.path("agent.key");
        let key = AgentKey::generate(Some(UUID.into())).unwrap();
        key.write_new(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(AgentKey::load(&path).unwrap(), key);

        let other = AgentKey::generate(None).unwrap();
        let err = other.write_new(&path).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err:?}");
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(AgentKey::load(&path).unwrap(), key, "old key must survive");

        let err = key.write_new(&dir.path("no/such/dir/k")).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Io {
                    action: "create",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn keyring_parse_and_lookup_precedence() {
        let text =
            format!("# master keyring\n\n{UUID} {HEX_A}\n* {HEX_C}  # fleet\n  other {HEX_B}\n");
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.len(), 3);
        assert!(!ring.is_empty());
        assert_eq!(
            ring.uuids().collect::<Vec<_>>(),
            ["0123456789abcdef0123456789abcdefA", "other"]
        );
        // Own key beats the fleet key.
        assert_eq!(ring.lookup(UUID.as_bytes()), Some(&psk(HEX_A)));
        assert_eq!(ring.lookup(b"other"), Some(&psk(HEX_B)));
        // Unlisted devices fall back to the fleet key.
        assert_eq!(ring.lookup(b"stranger"), Some(&psk(HEX_C)));
        assert_eq!(ring.fleet(), Some(&psk(HEX_C)));
        // Trailing NUL padding from the fixed-size wire field is ignored...
        let mut wire = [0u8; 33];
        wire[..5].copy_from_slice(b"other");
        assert_eq!(ring.lookup(&wire), Some(&psk(HEX_B)));
        // ...but other bytes are compared exactly.
        assert_eq!(ring.lookup(b"OTHER"), Some(&psk(HEX_C)));
        assert_eq!(ring.lookup(b"other "), Some(&psk(HEX_C)));
    }

    #[test]
    fn keyring_without_fleet_key() {
        let ring = Keyring::parse(&format!("{UUID} {HEX_A}\n")).unwrap();
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.lookup(b"stranger"), None);
        assert_eq!(ring.lookup(&[0u8; 33]), None);
        let empty = Keyring::parse("# nothing yet\n").unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(UUID.as_bytes()), None);
    }

    #[test]
    fn keyring_errors() {
        assert_eq!(
            keyring_problem(&format!("{UUID}\n")),
            (Some(1), Problem::FieldCount { found: 1 })
        );
        assert_eq!(
            keyring_problem(&format!("# c\n{UUID} {HEX_A} extra\n")),
            (Some(2), Problem::FieldCount { found: 3 })
        );
        assert_eq!(
            keyring_problem(&format!("{UUID} {HEX_A}\n\n{UUID} {HEX_B}\n")),
            (
                Some(3),
                Problem::DuplicateUuid {
                    uuid: UUID.into(),
                    first_line: 1
                }
            )
        );
        assert_eq!(
            keyring_problem(&format!("* {HEX_A}\n* {HEX_B}\n")),
            (Some(2), Problem::DuplicateFleet { first_line: 1 })
        );
        assert_eq!(keyring_problem("dev nothex\n"), (Some(1), Problem::NotHex));
        assert_eq!(
            keyring_problem("* abcd\n"),
            (Some(1), Problem::WrongLength { found: 4 })
        );
        assert!(matches!(
            keyring_problem(&format!("{} {HEX_A}\n", "x".repeat(34))),
            (Some(1), Problem::BadUuid { .. })
        ));
    }

    #[test]
    fn keyring_line_round_trip() {
        let key = psk(HEX_B);
        let device = keyring_line(&KeyTarget::Device(UUID.into()), &key);
        let fleet = keyring_line(&KeyTarget::Fleet, &key);
        assert_eq!(device, format!("{UUID} {HEX_B}"));
        assert_eq!(fleet, format!("* {HEX_B}"));
        let ring = Keyring::parse(&format!("{device}\n{fleet}\n")).unwrap();
        assert_eq!(ring.lookup(UUID.as_bytes()), Some(&key));
        assert_eq!(ring.fleet(), Some(&key));
    }

    fn run_keygen(opts: &KeygenOptions) -> (Result<PathBuf, KeyError>, String) {
        let mut out = Vec::new();
        let result = keygen(opts, &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn keygen_prints_matching_line() {
        let dir = TempDir::new("keygen-print");
        let out = dir.path("r1.key");
        let opts = KeygenOptions {
            target: KeyTarget::Device(UUID.into()),
            out: Some(out.clone()),
            keyring: None,
        };
        let (result, printed) = run_keygen(&opts);
        assert_eq!(result.unwrap(), out);
        assert_eq!(mode_of(&out), 0o600);
        let key = AgentKey::load(&out).unwrap();
        assert_eq!(key.uuid.as_deref(), Some(UUID));
        assert_eq!(
            printed,
            format!("{}\n", keyring_line(&opts.target, &key.psk))
        );

        // Second run: refuses, prints nothing, keeps the first key.
        let (result, printed) = run_keygen(&opts);
        assert!(matches!(result, Err(KeyError::Exists { .. })));
        assert!(printed.is_empty());
        assert_eq!(AgentKey::load(&out).unwrap(), key);
    }

    #[test]
    fn keygen_appends_to_keyring() {
        let dir = TempDir::new("keygen-ring");
        let ring = dir.path("keyring");
        let fleet = KeygenOptions {
            target: KeyTarget::Fleet,
            out: Some(dir.path("fleet.key")),
            keyring: Some(ring.clone()),
        };
        let (result, printed) = run_keygen(&fleet);
        result.unwrap();
        assert!(printed.is_empty(), "line goes to the keyring, not stdout");
        assert_eq!(mode_of(&ring), 0o600, "a new keyring is created 0600");
        let fleet_key = AgentKey::load(&dir.path("fleet.key")).unwrap();
        assert_eq!(fleet_key.uuid, None);

        // Existing keyring without final newline, with a comment: appended cleanly.
        let mut text = fs::read_to_string(&ring).unwrap();
        text.insert_str(0, "# keyring\n");
        text.push_str("# last line without newline");
        fs::write(&ring, &text).unwrap();
        let device = KeygenOptions {
            target: KeyTarget::Device("r2".into()),
            out: Some(dir.path("r2.key")),
            keyring: Some(ring.clone()),
        };
        run_keygen(&device).0.unwrap();
        let loaded = Keyring::load(&ring).unwrap();
        let r2 = AgentKey::load(&dir.path("r2.key")).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.lookup(b"r2"), Some(&r2.psk));
        assert_eq!(loaded.lookup(b"r3"), Some(&fleet_key.psk));

        // Conflicts are found before any key file is written.
        let again = KeygenOptions {
            out: Some(dir.path("r2-again.key")),
            ..device.clone()
        };
        let err = run_keygen(&again).0.unwrap_err();
        assert!(
            matches!(err, KeyError::InKeyring { line: 4, .. }),
            "{err:?}"
        );
        assert!(!dir.path("r2-again.key").exists());
        let fleet_again = KeygenOptions {
            out: Some(dir.path("fleet2.key")),
            ..fleet
        };
        let err = run_keygen(&fleet_again).0.unwrap_err();
        assert!(
            matches!(err, KeyError::InKeyring { uuid: None, .. }),
            "{err:?}"
        );
        assert!(!dir.path("fleet2.key").exists());
    }

    #[test]
    fn keygen_failure_leaves_nothing_behind() {
        let dir = TempDir::new("keygen-rollback");
        let ring = dir.path("keyring");
        let taken = dir.path("taken.key");
        fs::write(&taken, "not ours").unwrap();
        let opts = KeygenOptions {
            target: KeyTarget::Device("r1".into()),
            out: Some(taken.clone()),
            keyring: Some(ring.clone()),
        };
        assert!(matches!(run_keygen(&opts).0, Err(KeyError::Exists { .. })));
        assert!(!ring.exists(), "the keyring we created is removed again");
        assert_eq!(fs::read_to_string(&taken).unwrap(), "not ours");

        // A broken keyring is reported, not appended to.
        fs::write(&ring, "garbage\n").unwrap();
        let opts = KeygenOptions {
            out: Some(dir.path("new.key")),
            ..opts
        };
        let err = run_keygen(&opts).0.unwrap_err();
        assert_eq!(err.problem(), Some(&Problem::FieldCount { found: 1 }));
        assert!(!dir.path("new.key").exists());
        assert_eq!(fs::read_to_string(&ring).unwrap(), "garbage\n");

        // A bad uuid is refused before anything happens.
        let opts = KeygenOptions {
            target: KeyTarget::Device("a/b".into()),
            out: Some(dir.path("x.key")),
            keyring: None,
        };
        assert!(matches!(
            run_keygen(&opts).0.unwrap_err().problem(),
            Some(Problem::BadUuid { .. })
        ));
        assert!(!dir.path("x.key").exists());
    }

    #[test]
    fn default_key_file_names() {
        assert_eq!(
            default_key_file(&KeyTarget::Device("r1".into())),
            PathBuf::from("r1.key")
        );
        assert_eq!(
            default_key_file(&KeyTarget::Fleet),
            PathBuf::from("fleet.key")
        );
    }

    proptest::proptest! {
        #[test]
        fn prop_hex_round_trip(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let key = Psk::from_bytes(bytes);
            proptest::prop_assert_eq!(Psk::from_hex(&key.to_hex()), Ok(key));
        }

        #[test]
        fn prop_parsers_never_panic(text in "\\PC{0,200}") {
            let _ = Keyring::parse(&text);
            let _ = AgentKey::parse(&text);
        }

        #[test]
        fn prop_keyring_round_trip(
            entries in proptest::collection::btree_map(
                "[0-9a-f]{32}[A-Z]",
                proptest::array::uniform32(proptest::num::u8::ANY),
                0..20,
            )
        ) {
            let text: String = entries
                .iter()
                .map(|(uuid, key)| {
                    keyring_line(&KeyTarget::Device(uuid.clone()), &Psk::from_bytes(*key)) + "\n"
                })
                .collect();
            let ring = Keyring::parse(&text).unwrap();
            proptest::prop_assert_eq!(ring.len(), entries.len());
            for (uuid, key) in &entries {
                proptest::prop_assert_eq!(ring.lookup(uuid.as_bytes()), Some(&Psk::from_bytes(*key)));
            }
        }
    }
}
