//! The monitor wire protocol, free of sockets and clocks.
//!
//! A frame is a 45-byte [`header`] followed by a body. Version 1 is the
//! legacy PHP system's format (JSON bodies, [`v1`]); version 2 is edge-gw's
//! own (postcard bodies, [`v2`], optionally sealed by [`crypto`]).

pub mod json;
pub mod v1;
