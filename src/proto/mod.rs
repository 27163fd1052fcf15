//! The monitor wire protocol, free of sockets and clocks.
//!
//! A frame is a 45-byte [`header`] followed by a body. The [`decoder`] cuts
//! a byte stream into frames, checking each header before it allocates;
//! [`frame`] defines a frame, builds frames and opens bodies ([`compress`]ed and, in version
//! 2, sealed by [`crypto`]). Version 1 is the legacy PHP system's format
//! (JSON bodies, [`v1`], with its PHP-compatible JSON writer in [`v1::json`]); version 2 is edge-gw's own (postcard
//! bodies, [`v2`]).

pub mod compress;
pub mod crc;
pub mod crypto;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod header;
pub mod v1;
pub mod v2;

pub use decoder::FrameDecoder;
pub use error::FrameError;
pub use frame::Frame;
pub use header::{DEFAULT_MAX_FRAME, HEADER_LEN, Header, MsgType, UUID_LEN, Uuid, Version};
