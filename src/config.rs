//! Runtime configuration of the roles.
