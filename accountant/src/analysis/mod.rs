//! The mathematics behind the accountants, free of state and I/O: special functions, the RDP of
//! the subsampled Gaussian and its conversion to (ε, δ), and privacy loss distributions.

pub(crate) mod pld;
pub(crate) mod rdp;
pub(crate) mod special;
