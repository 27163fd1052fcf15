//! PHP-compatible JSON writing and reading.
