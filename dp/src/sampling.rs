//! Poisson sampling of record indices.
//!
//! DP-SGD's privacy analysis (every accountant in [`crate::accountant`]) assumes each record
//! joins each step's batch *independently* with probability `q`: batch sizes vary, a batch
//! may be empty, and a record may appear in consecutive batches. Shuffling into fixed-size
//! batches is a different mechanism whose guarantees the accountants do not cover, so the
//! data shards draw batches here.
//!
//! Each inclusion compares 64 fresh bits from ChaCha20 (seeded by the operating system)
//! against `round(q * 2^64)`, so the inclusion probability is `q` to within `2^-64` and no
//! floating-point arithmetic touches the decision.

use crate::noise::os_chacha;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use thiserror::Error;

/// Why a sampler could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SamplingError {
    /// The sampling rate must lie in (0, 1].
    #[error("sampling rate q must be in (0, 1], got {q}")]
    InvalidRate {
        /// The rate given.
        q: f64,
    },
    /// The operating system could not provide a seed.
    #[error("operating system entropy unavailable: {0}")]
    Entropy(String),
}

/// Draws Poisson-sampled batches of record indices.
pub struct PoissonSampler {
    q: f64,
    /// Include a record when 64 random bits fall below this; `None` means q = 1.
    threshold: Option<u64>,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for PoissonSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoissonSampler")
            .field("q", &self.q)
            .finish_non_exhaustive()
    }
}

impl PoissonSampler {
    /// A sampler with rate `q`, seeded from the operating system.
    pub fn from_os(q: f64) -> Result<Self, SamplingError> {
        Self::with_rng(q, os_chacha().map_err(SamplingError::Entropy)?)
    }

    /// **Tests only**: a reproducible sampler. Predictable batches weaken nothing in the DP
    /// proof, but they let an observer learn who was sampled.
    pub fn danger_seeded_for_tests(q: f64, seed: u64) -> Result<Self, SamplingError> {
        Self::with_rng(q, ChaCha20Rng::seed_from_u64(seed))
    }

    fn with_rng(q: f64, rng: ChaCha20Rng) -> Result<Self, SamplingError> {
        if !(q > 0.0 && q <= 1.0) {
            return Err(SamplingError::InvalidRate { q });
        }
        let threshold = (q < 1.0).then(|| (q * 2f64.powi(64)).round() as u64);
        Ok(PoissonSampler { q, threshold, rng })
    }

    /// The sampling rate.
    pub fn rate(&self) -> f64 {
        self.q
    }

    /// The indices in `0..n` included in one batch, ascending.
    pub fn sample(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(((n as f64) * self.q * 1.1) as usize + 16);
        self.sample_into(n, &mut out);
        out
    }

    /// As [`Self::sample`], reusing `out` (cleared first).
    pub fn sample_into(&mut self, n: usize, out: &mut Vec<usize>) {
        out.clear();
        match self.threshold {
            None => out.extend(0..n),
            Some(t) => out.extend((0..n).filter(|_| self.rng.next_u64() < t)),
        }
    }
}
