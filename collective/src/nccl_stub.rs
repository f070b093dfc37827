//! Stand-in for the `nccl` feature: the same entry points, each answering
//! [`CollectiveError::NcclUnavailable`]. Cross-VM traffic never uses NCCL in any build (it
//! does not encrypt); see the crate docs.

use crate::CollectiveError;

const NOT_BUILT: &str =
    "bastion-collective was built without the `nccl` feature (cargo build --features nccl)";

/// Always [`CollectiveError::NcclUnavailable`]: NCCL support is not compiled in.
pub fn probe() -> Result<usize, CollectiveError> {
    Err(CollectiveError::NcclUnavailable(NOT_BUILT.into()))
}

/// The GPUs of this VM (never constructed without the `nccl` feature).
#[derive(Debug, Clone)]
pub struct LocalGpus {
    _never: (),
}

impl LocalGpus {
    /// Always [`CollectiveError::NcclUnavailable`].
    pub fn new(_devices: &[usize]) -> Result<Self, CollectiveError> {
        Err(CollectiveError::NcclUnavailable(NOT_BUILT.into()))
    }

    /// Always [`CollectiveError::NcclUnavailable`].
    pub fn all() -> Result<Self, CollectiveError> {
        Err(CollectiveError::NcclUnavailable(NOT_BUILT.into()))
    }

    /// How many GPUs.
    pub fn len(&self) -> usize {
        0
    }

    /// Always true.
    pub fn is_empty(&self) -> bool {
        true
    }

    /// Always [`CollectiveError::NcclUnavailable`].
    pub fn all_reduce_host(&self, _buffers: &mut [&mut [f32]]) -> Result<(), CollectiveError> {
        Err(CollectiveError::NcclUnavailable(NOT_BUILT.into()))
    }
}
