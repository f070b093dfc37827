//! Encrypted, atomically written training checkpoints.
