//! The state directory: created on first start with the fleet key, a
//! keyring holding it, and the API token (all mode 0600), and handed to
//! the service user when privileges are dropped.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::settings::Settings;
use crate::keys::{KeyTarget, Psk, keyring_line};

/// What the first start made or found.
#[derive(Debug)]
pub struct Init {
    /// The API bearer token.
    pub token: String,
    /// The fleet key file to copy to agents.
    pub fleet_key_file: PathBuf,
}

/// The API token file in a state directory.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join("api.token")
}

/// Creates what is missing in the state directory.
pub fn prepare(s: &Settings) -> Result<Init, String> {
    let dir = &s.state_dir;
    fs::create_dir_all(dir).map_err(|e| format!("state dir {}: {e}", dir.display()))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let fleet_key_file = dir.join("fleet.key");
    if !s.keyring.exists() {
        let psk = Psk::generate().map_err(|e| e.to_string())?;
        let line = keyring_line(&KeyTarget::Fleet, &psk);
        write_secret(
            &s.keyring,
            &format!(
                "# edge-gw master keyring: `<uuid> <hex key>` per device, `* <hex key>` for the fleet key\n{line}\n"
            ),
        )?;
        if !fleet_key_file.exists() {
            super::write_fleet_key(&fleet_key_file, &psk)?;
        }
        log::info!(
            "first start: created the fleet key {} and the keyring {}",
            fleet_key_file.display(),
            s.keyring.display()
        );
    }
    let token_file = token_path(dir);
    let token = match fs::read_to_string(&token_file) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let mut raw = [0u8; 24];
            getrandom::fill(&mut raw).map_err(|e| format!("random source: {e}"))?;
            let t: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            write_secret(&token_file, &format!("{t}\n"))?;
            log::info!("created the API token {}", token_file.display());
            t
        }
    };
    Ok(Init {
        token,
        fleet_key_file,
    })
}

fn write_secret(path: &Path, text: &str) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Looks a user up in `/etc/passwd`: (uid, gid).
fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let text = fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            let uid = f[2].parse().map_err(|_| format!("bad uid for {name}"))?;
            let gid = f[3].parse().map_err(|_| format!("bad gid for {name}"))?;
            return Ok((uid, gid));
        }
    }
    Err(format!("--user {name}: no such user in /etc/passwd"))
}

fn threads_in_process() -> Option<usize> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Hands the state directory to `user` and switches to it. Must run
/// before any other thread exists: Linux changes credentials per thread,
/// and without libc's broadcast only the calling thread would change.
pub fn drop_privileges(user: &str, state_dir: &Path) -> Result<(), String> {
    use rustix::fs::{Gid, Uid};
    let (uid, gid) = lookup_user(user)?;
    if let Some(n) = threads_in_process()
        && n != 1
    {
        return Err(format!(
            "--user: {n} threads already running; refusing a partial privilege drop"
        ));
    }
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    let mut paths = vec![state_dir.to_path_buf()];
    if let Ok(rd) = fs::read_dir(state_dir) {
        paths.extend(rd.flatten().map(|e| e.path()));
    }
    for p in paths {
        rustix::fs::chown(&p, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", p.display()))?;
    }
    rustix::thread::set_thread_groups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    rustix::thread::set_thread_gid(gid).map_err(|e| format!("setgid: {e}"))?;
    rustix::thread::set_thread_uid(uid).map_err(|e| format!("setuid: {e}"))?;
    if rustix::process::geteuid() != uid {
        return Err("privilege drop did not take effect".into());
    }
    log::info!("running as user {user} (uid {})", uid.as_raw());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::options::MasterOptions;

    #[test]
    fn first_start_creates_secrets_0600_and_second_start_reuses() {
        let dir = std::env::temp_dir().join(format!("edge-gw-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Settings::load(&MasterOptions {
            state_dir: Some(dir.clone()),
            ..MasterOptions::default()
        })
        .unwrap();
        let a = prepare(&s).unwrap();
        for f in ["keyring", "fleet.key", "api.token"] {
            let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let ring = crate::keys::Keyring::load(&dir.join("keyring")).unwrap();
        let key = crate::keys::AgentKey::load(&a.fleet_key_file).unwrap();
        assert_eq!(ring.fleet(), Some(&key.psk));
        let b = prepare(&s).unwrap();
        assert_eq!(a.token, b.token);
        assert_eq!(a.token.len(), 48);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_user_is_named() {
        let e = lookup_user("no-such-user-edge-gw").unwrap_err();
        assert!(e.contains("no-such-user-edge-gw"));
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
    }
}
