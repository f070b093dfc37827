//! Secure Gaussian noise (in progress).
