//! AMD's SEV-SNP root certificates, pinned as bytes in the tree, one folder per generation.
//! See README.md beside this file for their sources and fingerprints.

use crate::report::Generation;

/// The PEM bytes of one generation's AMD CA certificates.
pub(crate) struct PinnedPems {
    /// AMD Root Key, self-signed.
    pub(crate) ark: &'static [u8],
    /// AMD SEV Key: signs VCEKs.
    pub(crate) ask: &'static [u8],
    /// AMD SEV VLEK Key: signs VLEKs.
    pub(crate) asvk: &'static [u8],
}

/// The pinned PEMs for `generation`.
pub(crate) fn pems(generation: Generation) -> PinnedPems {
    match generation {
        Generation::Milan => PinnedPems {
            ark: include_bytes!("milan/ark.pem"),
            ask: include_bytes!("milan/ask.pem"),
            asvk: include_bytes!("milan/asvk.pem"),
        },
        Generation::Genoa => PinnedPems {
            ark: include_bytes!("genoa/ark.pem"),
            ask: include_bytes!("genoa/ask.pem"),
            asvk: include_bytes!("genoa/asvk.pem"),
        },
        Generation::Turin => PinnedPems {
            ark: include_bytes!("turin/ark.pem"),
            ask: include_bytes!("turin/ask.pem"),
            asvk: include_bytes!("turin/asvk.pem"),
        },
    }
}
