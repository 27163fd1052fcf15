//! The agent's default uuid: stable across reboots, derived from
//! `/etc/machine-id` (32 hex characters, plus the letter `M`, as legacy
//! clients used 32 hex + one letter) or, where there is none (many
//! routers), from the first non-zero MAC address (`mac-` + 12 hex).

use std::path::Path;

use crate::proto::UUID_LEN;

/// The default uuid under `root` (`/` in production).
pub fn default_uuid(root: &Path) -> Option<String> {
    if let Ok(id) = std::fs::read_to_string(root.join("etc/machine-id")) {
        let id = id.trim();
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(format!("{}M", id.to_ascii_lowercase()));
        }
    }
    first_mac(root).map(|mac| format!("mac-{mac}"))
}

fn first_mac(root: &Path) -> Option<String> {
    let dir = root.join("sys/class/net");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    // Sorted, so the choice does not depend on directory order.
    names.sort();
    names.into_iter().find_map(|n| {
        let text = std::fs::read_to_string(dir.join(&n).join("address")).ok()?;
        let hex: String = text.trim().split(':').collect();
        (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && hex != "000000000000")
            .then(|| hex.to_ascii_lowercase())
    })
}

/// Checks that a uuid fits the 33-byte header field.
pub fn fits(uuid: &str) -> bool {
    !uuid.is_empty() && uuid.len() <= UUID_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_then_mac() {
        let root = std::env::temp_dir().join(format!("edge-gw-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("sys/class/net/eth0")).unwrap();
        std::fs::create_dir_all(root.join("sys/class/net/br-lan")).unwrap();
        std::fs::create_dir_all(root.join("sys/class/net/lo")).unwrap();
        std::fs::write(root.join("sys/class/net/lo/address"), "00:00:00:00:00:00\n").unwrap();
        std::fs::write(
            root.join("sys/class/net/br-lan/address"),
            "00:00:00:00:00:00\n",
        )
        .unwrap();
        std::fs::write(
            root.join("sys/class/net/eth0/address"),
            "AA:bb:cc:00:11:22\n",
        )
        .unwrap();
        assert_eq!(default_uuid(&root).as_deref(), Some("mac-aabbcc001122"));
        std::fs::write(
            root.join("etc/machine-id"),
            "0123456789ABCDEF0123456789abcdef\n",
        )
        .unwrap();
        let id = default_uuid(&root).unwrap();
        assert_eq!(id, "0123456789abcdef0123456789abcdefM");
        assert_eq!(id.len(), UUID_LEN);
        assert!(fits(&id));
        let _ = std::fs::remove_dir_all(&root);
    }
}
