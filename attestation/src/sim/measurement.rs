//! The simulated launch digest: what stands in for SEV-SNP's MEASUREMENT.
//!
//! On hardware, MEASUREMENT is the PSP's SHA-384 chain over the guest's initial memory pages
//! and vCPU state (SNP ABI spec 56860, "LAUNCH_UPDATE"), so any changed byte of the image gives
//! another digest. The simulation has no VM image; the node's binary is the image. Its digest
//! covers the binary's bytes and the launch parameters the guest owner fixes (policy, VMPL, the
//! ID block's family, image and SVN), so the same binary launched differently is another guest,
//! as an ID block binds policy to the digest on hardware. Platform state (TCB, PLATFORM_INFO)
//! and the host's HOST_DATA are not part of it, as on hardware.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha384};

use super::report::LaunchConfig;

/// Domain label: a measurement from here never equals a digest of anything else.
const LABEL: &[u8] = b"bastion-ai/sim-tee/measurement/v1";

/// The measurement of the binary at `path` launched with the default launch parameters
/// ([`LaunchConfig::default`]): what a node started from that file reports, and what an
/// allow-list for it must contain.
pub fn binary_measurement(path: impl AsRef<Path>) -> io::Result<[u8; 48]> {
    binary_measurement_with(path, &LaunchConfig::default())
}

/// The measurement of the binary at `path` launched with `config`'s parameters (its
/// `measurement` field is ignored). The file is streamed, not read whole.
pub fn binary_measurement_with(
    path: impl AsRef<Path>,
    config: &LaunchConfig,
) -> io::Result<[u8; 48]> {
    let path = path.as_ref();
    let mut file = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("measure {}: {e}", path.display())))?;
    let mut hasher = Sha384::new();
    hasher.update(LABEL);
    // Fixed-width fields after the binary, its length first: no two inputs encode alike.
    let len = io::copy(&mut file, &mut hasher)
        .map_err(|e| io::Error::new(e.kind(), format!("measure {}: {e}", path.display())))?;
    hasher.update(len.to_le_bytes());
    hasher.update(config.policy.to_le_bytes());
    hasher.update(config.vmpl.to_le_bytes());
    hasher.update(config.family_id);
    hasher.update(config.image_id);
    hasher.update(config.guest_svn.to_le_bytes());
    Ok(hasher.finalize().into())
}

impl LaunchConfig {
    /// The default launch of the binary at `path`: [`LaunchConfig::default`] with the
    /// measurement of that file ([`binary_measurement`]). A node launches with
    /// `LaunchConfig::for_binary(std::env::current_exe()?)`.
    pub fn for_binary(path: impl AsRef<Path>) -> io::Result<Self> {
        let mut config = Self::default();
        config.measurement = binary_measurement_with(path, &config)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_changed_byte_or_launch_parameter_changes_the_measurement() {
        let dir = std::env::temp_dir().join(format!("bastion-measure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Over one copy buffer (8 KiB), so the streaming path is exercised.
        let image: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let a = file(&dir, "a", &image);
        let same = file(&dir, "same", &image);
        let mut longer = image.clone();
        longer.push(0);
        let longer = file(&dir, "longer", &longer);
        let m = binary_measurement(&a).unwrap();
        assert_eq!(
            m,
            binary_measurement(&same).unwrap(),
            "same bytes, same digest"
        );
        assert_ne!(m, binary_measurement(&longer).unwrap(), "one appended byte");
        let debug = LaunchConfig {
            policy: super::super::POLICY_DEBUG | LaunchConfig::default().policy,
            ..LaunchConfig::default()
        };
        assert_ne!(
            m,
            binary_measurement_with(&a, &debug).unwrap(),
            "policy is measured"
        );
        // Platform state is not: the same guest on patched firmware keeps its measurement.
        let patched = LaunchConfig {
            tcb: crate::Tcb {
                snp: 9,
                ..LaunchConfig::default().tcb
            },
            ..LaunchConfig::default()
        };
        assert_eq!(m, binary_measurement_with(&a, &patched).unwrap());
        assert_eq!(LaunchConfig::for_binary(&a).unwrap().measurement, m);
        let err = binary_measurement(dir.join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
