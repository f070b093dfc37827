//! All-reduce across the GPUs of ONE VM through NCCL (feature `nccl`).
//!
//! NCCL does not encrypt: between GPUs of one confidential VM its traffic stays inside the
//! VM's protected memory and links, but across VMs it would cross the host in the clear. So
//! cross-VM traffic always goes through the attested, encrypted [`crate::Ring`]; NCCL only
//! sums the GPUs of one node first (and can spread the result back after).
//!
//! CUDA and NCCL are loaded at run time (cudarc's `dynamic-loading`), so this builds without
//! CUDA. Every entry first checks that both libraries can be loaded and a device exists, and
//! answers [`CollectiveError::NcclUnavailable`] otherwise: cudarc would panic on a call into a
//! missing library.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};

use crate::CollectiveError;

/// Checks that the CUDA driver and NCCL libraries load and that at least one GPU exists;
/// returns the number of GPUs.
pub fn probe() -> Result<usize, CollectiveError> {
    if !libraries_present() {
        return Err(CollectiveError::NcclUnavailable(
            "the CUDA driver library (libcuda) or NCCL (libnccl) cannot be loaded on this machine"
                .into(),
        ));
    }
    let count = CudaContext::device_count()
        .map_err(|e| CollectiveError::NcclUnavailable(format!("CUDA driver: {e:?}")))?;
    if count < 1 {
        return Err(CollectiveError::NcclUnavailable("no CUDA device".into()));
    }
    Ok(count as usize)
}

// The one unsafe site of this crate: cudarc's presence checks are `unsafe fn` because
// loading a shared library runs its initialisers.
#[allow(unsafe_code)]
fn libraries_present() -> bool {
    // SAFETY: this loads the system's CUDA driver and NCCL libraries, exactly as the first
    // cudarc call would; nothing else is called through them here.
    unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nccl::sys::is_culib_present() }
}

/// The GPUs of this VM that take part in intra-node all-reduces.
#[derive(Debug, Clone)]
pub struct LocalGpus {
    devices: Vec<usize>,
}

impl LocalGpus {
    /// The given device ordinals; fails with [`CollectiveError::NcclUnavailable`] where
    /// CUDA or NCCL is missing, and with [`CollectiveError::Config`] for a missing device.
    pub fn new(devices: &[usize]) -> Result<Self, CollectiveError> {
        let count = probe()?;
        if devices.is_empty() {
            return Err(CollectiveError::Config("no GPUs given".into()));
        }
        if let Some(d) = devices.iter().find(|&&d| d >= count) {
            return Err(CollectiveError::Config(format!(
                "GPU {d} does not exist: this VM has {count}"
            )));
        }
        Ok(Self {
            devices: devices.to_vec(),
        })
    }

    /// Every GPU of this VM.
    pub fn all() -> Result<Self, CollectiveError> {
        let count = probe()?;
        Self::new(&(0..count).collect::<Vec<_>>())
    }

    /// How many GPUs.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Never true: a group has at least one GPU.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Sums `buffers` (one per GPU, in device order, equal lengths) through NCCL; every
    /// buffer ends with the sum. Host buffers are copied to and from the devices: this is the
    /// reference path and test; a trainer with gradients already on its GPUs uses
    /// [`LocalGpus::communicators`] and its own device buffers.
    pub fn all_reduce_host(&self, buffers: &mut [&mut [f32]]) -> Result<(), CollectiveError> {
        if buffers.len() != self.devices.len() {
            return Err(CollectiveError::Config(format!(
                "{} buffers for {} GPUs",
                buffers.len(),
                self.devices.len()
            )));
        }
        if let Some(b) = buffers.iter().find(|b| b.len() != buffers[0].len()) {
            return Err(CollectiveError::Config(format!(
                "buffers differ in length: {} and {}",
                buffers[0].len(),
                b.len()
            )));
        }
        let id = Id::new().map_err(|e| CollectiveError::Nccl(format!("ncclGetUniqueId: {e:?}")))?;
        let world = self.devices.len();
        // One thread per GPU: ncclCommInitRank blocks until all ranks joined, and a
        // communicator (raw pointer) stays on the thread that made it.
        std::thread::scope(|scope| {
            let workers: Vec<_> = buffers
                .iter_mut()
                .zip(&self.devices)
                .enumerate()
                .map(|(rank, (buffer, &device))| {
                    let id = Id::uninit(*id.internal());
                    scope.spawn(move || -> Result<(), CollectiveError> {
                        let stream = stream_on(device)?;
                        let comm = Comm::from_rank(Arc::clone(&stream), rank, world, id)
                            .map_err(|e| nccl_err("ncclCommInitRank", device, e))?;
                        let mut on_gpu = stream
                            .clone_htod(&buffer[..])
                            .map_err(|e| driver_err("copy to GPU", device, e))?;
                        comm.all_reduce_in_place(&mut on_gpu, &ReduceOp::Sum)
                            .map_err(|e| nccl_err("ncclAllReduce", device, e))?;
                        stream
                            .memcpy_dtoh(&on_gpu, &mut buffer[..])
                            .map_err(|e| driver_err("copy from GPU", device, e))?;
                        stream
                            .synchronize()
                            .map_err(|e| driver_err("synchronize", device, e))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(CollectiveError::Nccl("a GPU worker thread panicked".into()))
                    })
                })
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
        })
    }

    /// One NCCL communicator per GPU, all in one clique, for callers that keep gradients on
    /// the devices. Communicators are not `Send`: each stays on the thread that uses it.
    pub fn communicators(&self) -> Result<Vec<Comm>, CollectiveError> {
        let streams = self
            .devices
            .iter()
            .map(|&d| stream_on(d))
            .collect::<Result<Vec<_>, _>>()?;
        Comm::from_devices(streams)
            .map_err(|e| CollectiveError::Nccl(format!("ncclCommInitAll: {e:?}")))
    }
}

fn stream_on(device: usize) -> Result<Arc<CudaStream>, CollectiveError> {
    let ctx = CudaContext::new(device).map_err(|e| driver_err("CUDA context", device, e))?;
    ctx.new_stream()
        .map_err(|e| driver_err("CUDA stream", device, e))
}

fn nccl_err(op: &str, device: usize, e: impl std::fmt::Debug) -> CollectiveError {
    CollectiveError::Nccl(format!("{op} on GPU {device}: {e:?}"))
}

fn driver_err(op: &str, device: usize, e: impl std::fmt::Debug) -> CollectiveError {
    CollectiveError::Nccl(format!("{op} on GPU {device}: {e:?}"))
}
