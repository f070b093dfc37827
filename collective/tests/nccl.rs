//! NCCL entry points answer a clear error where NCCL cannot run: always without the `nccl`
//! feature, and with it on a machine without the CUDA driver or NCCL libraries (as CI).

use bastion_collective::nccl::{probe, LocalGpus};
use bastion_collective::CollectiveError;

/// True when this machine can load the CUDA driver library: then the NCCL path may work and
/// the "unavailable" expectation does not apply.
fn cuda_driver_installed() -> bool {
    ["/dev/nvidia0", "/dev/nvidiactl"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

#[test]
fn nccl_is_refused_with_a_reason_not_a_panic() {
    if cfg!(feature = "nccl") && cuda_driver_installed() {
        eprintln!("skipped: this machine has an NVIDIA device; see gpu_sum_matches_the_host_sum");
        return;
    }
    for result in [
        probe().map(|_| ()),
        LocalGpus::all().map(|_| ()),
        LocalGpus::new(&[0]).map(|_| ()),
    ] {
        match result {
            Err(CollectiveError::NcclUnavailable(reason)) => {
                if cfg!(feature = "nccl") {
                    assert!(
                        reason.contains("cannot be loaded") || reason.contains("CUDA"),
                        "{reason}"
                    );
                } else {
                    assert!(reason.contains("without the `nccl` feature"), "{reason}");
                }
            }
            other => panic!("expected NcclUnavailable, got {other:?}"),
        }
    }
}

/// On a GPU machine: `cargo test -p bastion-collective --features nccl -- --ignored`.
#[cfg(feature = "nccl")]
#[test]
#[ignore = "needs an NVIDIA GPU with CUDA and NCCL"]
fn gpu_sum_matches_the_host_sum() {
    let gpus = LocalGpus::all().expect("CUDA and NCCL on this machine");
    let n = gpus.len();
    let mut bufs: Vec<Vec<f32>> = (0..n)
        .map(|g| (0..1000).map(|i| (i * (g + 1)) as f32).collect())
        .collect();
    let mut views: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    gpus.all_reduce_host(&mut views).unwrap();
    let factor: usize = (1..=n).sum();
    for b in &bufs {
        for (i, v) in b.iter().enumerate() {
            assert_eq!(*v, (i * factor) as f32);
        }
    }
}
