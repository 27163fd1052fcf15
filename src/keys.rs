//! Pre-shared keys: key files, the master keyring, keygen.
