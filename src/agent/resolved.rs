//! What the agent runs with: its settings (defaults, config file, command
//! line), the key read from the key file, and the uuid picked from the
//! command line, the key file or the machine.
//!
//! Kept apart from the start-up code because SIGHUP resolves it a second
//! time and compares the two (see [`super::reload`]): both must be made
//! the same way, or a reload would see changes nobody made.

use std::time::Duration;

use super::identity;
use super::settings::AgentSettings;
use crate::cli::options::{AgentOptions, WireVersion};
use crate::keys::AgentKey;
use crate::proto::frame::Compress;
use crate::proto::v2::Role;
use crate::proto::{Uuid, Version};
use crate::session::TxLimits;
use crate::session::agent::AgentConfig;
use crate::session::liveness::Keepalive;

/// The agent's settings with the key file read and the uuid chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Settings from the defaults, the config file and the command line.
    pub set: AgentSettings,
    /// The uuid this agent introduces itself with.
    pub uuid: Uuid,
    /// The pre-shared key from the key file; `None` asks for plaintext.
    pub psk: Option<[u8; 32]>,
    /// The wire version, as the codec names it.
    pub wire: Version,
}

impl Resolved {
    /// Reads the config file and the key file named by `opts` and picks
    /// the uuid; an error names the file or value at fault.
    pub fn load(opts: &AgentOptions) -> Result<Resolved, String> {
        let set = AgentSettings::load(opts)?;
        let key = match &set.key_file {
            Some(p) => Some(AgentKey::load(p).map_err(|e| e.to_string())?),
            None => None,
        };
        let uuid_text = set
            .uuid
            .clone()
            .or_else(|| key.as_ref().and_then(|k| k.uuid.clone()))
            .or_else(|| identity::default_uuid(std::path::Path::new("/")))
            .ok_or("no uuid: give --uuid (no /etc/machine-id and no MAC address found)")?;
        let uuid = Uuid::from_text(&uuid_text)
            .ok_or_else(|| format!("uuid {uuid_text:?} does not fit the 33-byte field"))?;
        let wire = match set.wire {
            WireVersion::V1 => Version::V1,
            WireVersion::V2 => Version::V2,
        };
        Ok(Resolved {
            psk: key.as_ref().map(|k| *k.psk.as_bytes()),
            set,
            uuid,
            wire,
        })
    }

    /// The session settings these resolve to.
    pub fn session_config(&self) -> AgentConfig {
        AgentConfig {
            uuid: self.uuid,
            group: self.set.group.clone().unwrap_or_default(),
            role: Role::Agent,
            psk: self.psk,
            wire: self.wire,
            keepalive: if self.wire == Version::V1 {
                // The legacy master closes idle connections after 120 s: its
                // own test client beats every 15 s.
                Keepalive {
                    interval: Duration::from_secs(15),
                    miss_limit: 4,
                }
            } else {
                Keepalive::default()
            },
            handshake_timeout: Duration::from_secs(10),
            report_interval: self.set.interval,
            max_frame: crate::proto::DEFAULT_MAX_FRAME,
            compress: Compress::IfSmaller(crate::proto::compress::DEFAULT_LEVEL),
            tx: TxLimits {
                max_frames: 64,
                max_bytes: 256 << 10,
            },
            max_pending_pushes: self.set.inbox_messages,
            software: concat!("edge-gw ", env!("CARGO_PKG_VERSION")).to_string(),
            inbox: Some(crate::proto::v2::InboxLimits {
                messages: u32::try_from(self.set.inbox_messages).unwrap_or(u32::MAX),
                bytes: u32::try_from(self.set.inbox_bytes).unwrap_or(u32::MAX),
            }),
        }
    }
}
