//! `edge-gw keygen`: makes a new key and writes both halves, the agent's
//! key file and the master's keyring line, so they cannot drift apart.
//!
//! This is the only place that writes secrets to disk besides
//! [`AgentKey::write_new`]; it is all-or-nothing, so a failed run never
//! leaves half a key behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{AgentKey, KeyError, KeyTarget, Keyring, check_uuid, keyring_line};

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

/// A keyring that keygen will replace with a copy holding one more line.
struct KeyringUpdate {
    path: PathBuf,
    /// The keyring's text as read (empty if there was none).
    text: String,
}

impl KeyringUpdate {
    /// Writes the old text plus `line` to a temporary file beside the
    /// keyring (mode 0600), syncs it and renames it over the keyring, then
    /// syncs the directory: a master reloading at any moment, or a crash
    /// at any moment, sees the old keyring or the new one, never a file cut
    /// in the middle (which a reload could read as "no keys"). Keygens of
    /// one keyring must not run concurrently (the later rename wins).
    fn commit(&self, line: &str) -> Result<(), KeyError> {
        let sep = if !self.text.is_empty() && !self.text.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        let text = format!("{}{sep}{line}\n", self.text);
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "keyring".to_owned());
        let tmp = self
            .path
            .with_file_name(format!(".{name}.keygen-{}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(KeyError::io(&self.path, "replace", e));
        }
        // The rename itself must survive a crash too.
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

/// Reads the keyring (if it exists) and checks that `target` has no entry
/// yet.
fn read_keyring_for_update(path: &Path, target: &KeyTarget) -> Result<KeyringUpdate, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(KeyError::io(path, "read", e)),
    };
    // Adding to a broken keyring would only bury the error; the master
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
    Ok(KeyringUpdate {
        path: path.to_path_buf(),
        text,
    })
}

/// `edge-gw keygen`: makes a new key, writes the agent key file (mode
/// 0600, never overwriting) and either adds the master's keyring line to
/// `opts.keyring` (atomically: a temporary file renamed over it) or writes it
/// to `stdout`. Returns the key file's path.
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
    let keyring = match &opts.keyring {
        Some(path) => Some(read_keyring_for_update(path, &opts.target)?),
        None => None,
    };
    let key_file = opts
        .out
        .clone()
        .unwrap_or_else(|| default_key_file(&opts.target));

    let result = AgentKey::generate(uuid).and_then(|key| {
        key.write_new(&key_file)?;
        let line = keyring_line(&opts.target, &key.psk);
        let delivered = match &keyring {
            Some(k) => k.commit(&line),
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
                Some(k) => format!("; added its entry to {}", k.path.display()),
                None => "; add the line printed above to the master's keyring".to_owned(),
            }
        );
        Ok(())
    });
    result.map(|()| key_file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Problem;
    use crate::keys::test_support::{TempDir, UUID, mode_of};

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
        // Replaced whole (a reload never sees half a file): a new inode,
        // still 0600, no temporary file left beside it.
        assert_eq!(mode_of(&ring), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("keygen"))
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");

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
}
