//! The agent's key file: the key (and, for a device key, the uuid) an
//! agent presents to the master.
//!
//! A small `name = value` text file rather than raw bytes, so an operator
//! can see whose key it is and the master's keyring line can be checked
//! against it by eye.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::syntax;
use super::secret_file::{read_secret_file, strip_comment};
use super::{KeyError, Problem, Psk, check_uuid};

/// First line of every key file [`keygen`](super::keygen()) writes.
const KEY_FILE_HEADER: &str = "# edge-gw agent key (keep secret, mode 0600)";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{HEX_A, HEX_B, TempDir, UUID, mode_of, psk};

    fn key_file_problem(text: &str) -> (Option<usize>, Problem) {
        match AgentKey::parse(text).unwrap_err() {
            KeyError::Syntax { line, problem, .. } => (line, problem),
            other => panic!("expected syntax error, got {other:?}"),
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let agent = AgentKey {
            uuid: None,
            psk: psk(HEX_A),
        };
        assert!(!format!("{agent:?}").contains(&HEX_A[..16]));
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

    proptest::proptest! {
        #[test]
        fn prop_parser_never_panics(text in "\\PC{0,200}") {
            let _ = AgentKey::parse(&text);
        }
    }
}
