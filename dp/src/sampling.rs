//! Poisson sampling (in progress).
