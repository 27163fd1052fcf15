//! The master role.
