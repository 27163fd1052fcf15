//! Command-line clients of the master's API (`edge-gw status`, ...).
