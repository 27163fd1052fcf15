//! The master's keyring: which pre-shared key each agent uuid uses, plus
//! the optional fleet key for everyone else, and the one-line entry format
//! keygen writes into it.

use std::collections::HashMap;
use std::path::Path;

use super::error::syntax;
use super::secret_file::{read_secret_file, strip_comment};
use super::{KeyError, Problem, Psk, check_uuid};

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
pub(super) struct ParsedKeyring {
    /// The keyring itself.
    pub(super) keyring: Keyring,
    /// Line of each device entry, by uuid.
    pub(super) lines: HashMap<String, usize>,
    /// Line of the fleet entry, if any.
    pub(super) fleet_line: Option<usize>,
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

    /// Like [`Keyring::parse`], but also says on which line each entry is.
    pub(super) fn parse_with_lines(text: &str) -> Result<ParsedKeyring, KeyError> {
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

    /// Whether `uuid` (the raw wire field, NUL padding ignored) has a key
    /// of its own, not just the fleet key [`lookup`](Self::lookup) falls
    /// back to: the master keeps such uuids away from unauthenticated
    /// (legacy v1, plaintext) sessions.
    pub fn has_device_key(&self, uuid: &[u8]) -> bool {
        let end = uuid.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let uuid = &uuid[..end];
        self.devices
            .binary_search_by(|(u, _)| u.as_bytes().cmp(uuid))
            .is_ok()
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

    /// Whether any key of `old` still stands here: the same uuid with the
    /// same key, or the same fleet key. A keyring that keeps none revokes
    /// every device at once; the master refuses to reload to it unless the
    /// operator says so (`keyring_revoke_all`).
    pub fn keeps_any_of(&self, old: &Keyring) -> bool {
        let fleet_kept = old.fleet.is_some() && old.fleet == self.fleet;
        fleet_kept
            || old.devices.iter().any(|(uuid, key)| {
                self.devices
                    .binary_search_by(|(u, _)| u.cmp(uuid))
                    .ok()
                    .and_then(|i| self.devices.get(i))
                    .is_some_and(|(_, k)| k == key)
            })
    }

    /// The uuids that have their own key, in sorted order.
    pub fn uuids(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|(uuid, _)| &**uuid)
    }
}

/// Whose key [`keygen`](super::keygen()) makes.
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::keys::test_support::{HEX_A, HEX_B, HEX_C, TempDir, UUID, psk};

    fn keyring_problem(text: &str) -> (Option<usize>, Problem) {
        match Keyring::parse(text).unwrap_err() {
            KeyError::Syntax { line, problem, .. } => (line, problem),
            other => panic!("expected syntax error, got {other:?}"),
        }
    }

    #[test]
    fn load_names_file_and_line() {
        let dir = TempDir::new("load");
        let ring = dir.path("ring");
        fs::write(&ring, format!("{UUID} {HEX_A}\n{UUID} {HEX_B}\n")).unwrap();
        let message = Keyring::load(&ring).unwrap_err().to_string();
        assert!(message.contains("ring:2:"), "{message}");
        assert!(message.contains("line 1"), "{message}");
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
        // Only listed uuids have a key of their own; the fleet key does
        // not count.
        assert!(ring.has_device_key(&wire));
        assert!(ring.has_device_key(UUID.as_bytes()));
        assert!(!ring.has_device_key(b"stranger"));
        assert!(!ring.has_device_key(&[0u8; 33]));
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

    #[test]
    fn keeps_any_of_tells_a_reload_that_revokes_everything() {
        let a = "r1 0101010101010101010101010101010101010101010101010101010101010101\n";
        let b = "r2 0202020202020202020202020202020202020202020202020202020202020202\n";
        let f = "* 0303030303030303030303030303030303030303030303030303030303030303\n";
        let ring = |t: &str| Keyring::parse(t).unwrap();
        let old = ring(&format!("{a}{b}{f}"));
        assert!(ring(a).keeps_any_of(&old));
        assert!(ring(f).keeps_any_of(&old));
        assert!(!ring("").keeps_any_of(&old));
        assert!(!ring("# cut inside the first comm").keeps_any_of(&old));
        let rotated = "r1 0909090909090909090909090909090909090909090909090909090909090909\n";
        assert!(!ring(rotated).keeps_any_of(&old));
        // Nothing to revoke: an empty keyring replacing an empty one.
        assert!(!ring("").keeps_any_of(&ring("")));
    }

    proptest::proptest! {
        #[test]
        fn prop_parser_never_panics(text in "\\PC{0,200}") {
            let _ = Keyring::parse(&text);
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
