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
//!
//! One file per concept: `psk` the key, `uuid` the uuid rule shared
//! by both formats, `agent_key_file` and `keyring` the two file formats,
//! `secret_file` what those formats share, `keygen` the writer, `error`
//! what can go wrong. Everything is re-exported here, so callers name
//! `crate::keys::Psk` and never the file it lives in.

mod agent_key_file;
mod error;
mod keygen;
mod keyring;
mod psk;
mod secret_file;
#[cfg(test)]
mod test_support;
mod uuid;

pub use agent_key_file::AgentKey;
pub use error::{KeyError, Problem};
pub use keygen::{KeygenOptions, default_key_file, keygen};
pub use keyring::{KeyTarget, Keyring, keyring_line};
pub use psk::{PSK_LEN, Psk};
pub use uuid::{UUID_MAX_LEN, check_uuid};
