//! The simulated platform (roots plus one chip) and the guests launched on it.
//!
//! [`SimulatedPlatform`] holds the simulated ARK and ASK private keys: it is the simulation's
//! AMD, held by whoever makes the cluster (`bastion cluster up`, a test harness). Nodes get a
//! [`SimulatedChip`](super::SimulatedChip) from [`SimulatedPlatform::issue_chip`] instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use p384::ecdsa::SigningKey;
use rand_core::{OsRng, RngCore};

use super::chain::{cert_matches_key, Roots};
use super::chip::{Chip, CHIP_SECRET_LEN};
use super::machine::{self, SimulatedChip};
use super::report::{self, default_tcb, LaunchConfig};
use super::SimError;
use crate::report::Tcb;

/// Environment variable naming a chain directory for [`SimulatedPlatform::shared`].
pub const SIM_DIR_ENV: &str = "BASTION_SIM_TEE_DIR";

pub(super) const ARK_CERT: &str = "ark.der";
pub(super) const ASK_CERT: &str = "ask.der";
pub(super) const ARK_KEY: &str = "ark.key.der";
pub(super) const ASK_KEY: &str = "ask.key.der";
pub(super) const CHIP_SECRET: &str = "chip.secret";
pub(super) const README: &str = "README.txt";
const README_TEXT: &str = "\
SIMULATED SEV-SNP platform for BastionAI development and CI. NOT AMD. NOT CONFIDENTIAL.
ark.der/ask.der: the simulated ARK and ASK certificates (DER). Verifiers accept reports
signed under them only when configured with TrustAnchors::simulated, and say so.
*.key.der and chip.secret: the private keys and chip secret, in the clear.
This directory is the simulation's AMD: whoever holds it can certify any chip. Give nodes a
chip directory (SimulatedPlatform::issue_chip), never this one.
";

/// A simulated machine: the simulated AMD roots (ARK, ASK) and one chip.
///
/// Cheap to clone; the roots are shared.
#[derive(Clone)]
pub struct SimulatedPlatform {
    roots: Arc<Roots>,
    chip: Chip,
}

impl std::fmt::Debug for SimulatedPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedPlatform")
            .field("chip_id", &hex::encode(&self.chip.chip_id()[..8]))
            .finish_non_exhaustive()
    }
}

impl SimulatedPlatform {
    /// Generates a new chain (two RSA-4096 keys: seconds) and a new chip.
    pub fn generate() -> Result<Self, SimError> {
        tracing::warn!(
            "SIMULATED TEE: generating a local ARK/ASK chain; nothing it signs is evidence of real SEV-SNP hardware"
        );
        Ok(Self {
            roots: Arc::new(Roots::generate()?),
            chip: Chip::random(),
        })
    }

    /// The platform of this process, made once: loaded from (or generated into) the directory
    /// named by `BASTION_SIM_TEE_DIR` if set, else generated in memory.
    pub fn shared() -> Result<&'static Self, SimError> {
        static SHARED: OnceLock<SimulatedPlatform> = OnceLock::new();
        static INIT: Mutex<()> = Mutex::new(());
        if let Some(p) = SHARED.get() {
            return Ok(p);
        }
        // One generator at a time: the loser of a race would waste seconds of RSA keygen.
        let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(p) = SHARED.get() {
            return Ok(p);
        }
        let platform = match std::env::var_os(SIM_DIR_ENV) {
            Some(dir) => Self::load_or_generate(dir)?,
            None => Self::generate()?,
        };
        Ok(SHARED.get_or_init(|| platform))
    }

    /// Loads the chain in `dir` if there is one, else generates one and saves it there. Several
    /// processes may race: one directory wins, the others load it.
    pub fn load_or_generate(dir: impl AsRef<Path>) -> Result<Self, SimError> {
        let dir = dir.as_ref();
        if dir.join(ARK_CERT).exists() {
            return Self::load(dir);
        }
        let platform = Self::generate()?;
        match platform.save(dir) {
            Ok(()) => Ok(platform),
            Err(_) if dir.join(ARK_CERT).exists() => Self::load(dir),
            Err(e) => Err(e),
        }
    }

    /// Loads a chain saved by [`SimulatedPlatform::save`], checking that each certificate
    /// belongs to its key.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, SimError> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read(&path).map_err(|e| SimError::io("read", &path, e))
        };
        let bad = |name: &str, reason: String| SimError::BadChainFile {
            path: dir.join(name),
            reason,
        };
        if !dir.join(ARK_KEY).exists() && dir.join(machine::VCEK_KEY).exists() {
            return Err(SimError::WrongDirectory {
                dir: dir.to_path_buf(),
                expected: "simulated platform (ARK and ASK private keys)",
                reason: "it is a node's chip directory (VCEK key, no root keys); load it with SimulatedChip::load".into(),
            });
        }
        let ark_key = Roots::key_from_pkcs8(&read(ARK_KEY)?).map_err(|e| bad(ARK_KEY, e))?;
        let ask_key = Roots::key_from_pkcs8(&read(ASK_KEY)?).map_err(|e| bad(ASK_KEY, e))?;
        let ark_der = read(ARK_CERT)?;
        let ask_der = read(ASK_CERT)?;
        cert_matches_key(&ark_der, &ark_key).map_err(|e| bad(ARK_CERT, e))?;
        cert_matches_key(&ask_der, &ask_key).map_err(|e| bad(ASK_CERT, e))?;
        let secret: [u8; CHIP_SECRET_LEN] =
            read(CHIP_SECRET)?.try_into().map_err(|v: Vec<u8>| {
                bad(
                    CHIP_SECRET,
                    format!("expected {CHIP_SECRET_LEN} bytes, found {}", v.len()),
                )
            })?;
        tracing::warn!(
            dir = %dir.display(),
            "SIMULATED TEE: loaded a local ARK/ASK chain; nothing it signs is evidence of real SEV-SNP hardware"
        );
        Ok(Self {
            roots: Arc::new(Roots {
                ark_key,
                ask_key,
                ark_der,
                ask_der,
            }),
            chip: Chip::from_secret(secret),
        })
    }

    /// Saves the chain and chip secret into `dir`, which must not exist yet (or be empty).
    ///
    /// The files are written into a private sibling directory first, which is then renamed,
    /// so a reader never sees half a chain.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), SimError> {
        let ark_key = Roots::key_pkcs8(&self.roots.ark_key)?;
        let ask_key = Roots::key_pkcs8(&self.roots.ask_key)?;
        save_private_files(
            dir.as_ref(),
            &[
                (README, README_TEXT.as_bytes()),
                (ARK_CERT, &self.roots.ark_der),
                (ASK_CERT, &self.roots.ask_der),
                (ARK_KEY, &ark_key),
                (ASK_KEY, &ask_key),
                (CHIP_SECRET, self.chip.secret()),
            ],
        )
    }

    /// The simulated ARK certificate (DER): one of the two trust anchors a verifier must be
    /// given explicitly to accept this platform's reports.
    pub fn ark_der(&self) -> &[u8] {
        &self.roots.ark_der
    }

    /// The simulated ASK certificate (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.roots.ask_der
    }

    /// A new machine for a node: a new chip with its own secret and the VCEK for the default
    /// TCB ([`default_tcb`]), certified by the simulated ASK. What it holds (and
    /// [`SimulatedChip::save`] writes) is what a real host has: its chip's VCEK and the public
    /// ARK and ASK certificates, not the root keys.
    pub fn issue_chip(&self) -> Result<SimulatedChip, SimError> {
        self.issue_chip_at(default_tcb())
    }

    /// As [`SimulatedPlatform::issue_chip`], with the VCEK for `tcb`.
    pub fn issue_chip_at(&self, tcb: Tcb) -> Result<SimulatedChip, SimError> {
        let chip = Chip::random();
        let vcek_der = chip.vcek_cert(&self.roots.ask_key, tcb)?;
        let vcek = chip.vcek_key(tcb);
        Ok(SimulatedChip::new(
            chip,
            vcek,
            vcek_der,
            self.roots.ark_der.clone(),
            self.roots.ask_der.clone(),
            tcb,
        ))
    }

    /// Another machine under the same simulated AMD roots: a new chip with its own secret.
    /// It still holds the root keys; for a node, use [`SimulatedPlatform::issue_chip`].
    pub fn with_new_chip(&self) -> Self {
        Self {
            roots: Arc::clone(&self.roots),
            chip: Chip::random(),
        }
    }

    /// This chip's CHIP_ID.
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip.chip_id()
    }

    /// Launches a simulated guest: derives the VCEK for the configured TCB and has the
    /// simulated ASK certify it.
    pub fn launch(&self, config: LaunchConfig) -> Result<SimulatedTee, SimError> {
        let vcek_der = self.chip.vcek_cert(&self.roots.ask_key, config.tcb)?;
        let vcek = self.chip.vcek_key(config.tcb);
        Ok(SimulatedTee::start(
            self.chip.clone(),
            vcek,
            vcek_der,
            config,
        ))
    }
}

/// A guest running on a [`SimulatedPlatform`]: it asks its (simulated) secure processor for
/// reports and derived keys.
#[derive(Clone)]
pub struct SimulatedTee {
    chip: Chip,
    vcek: SigningKey,
    vcek_der: Vec<u8>,
    config: LaunchConfig,
    report_id: [u8; 32],
}

impl std::fmt::Debug for SimulatedTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedTee")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SimulatedTee {
    pub(super) fn start(
        chip: Chip,
        vcek: SigningKey,
        vcek_der: Vec<u8>,
        config: LaunchConfig,
    ) -> Self {
        let mut report_id = [0u8; 32];
        OsRng.fill_bytes(&mut report_id);
        tracing::warn!(
            measurement = %hex::encode(config.measurement),
            policy = format_args!("{:#x}", config.policy),
            "SIMULATED TEE: launched a simulated guest; its reports are not SEV-SNP evidence"
        );
        SimulatedTee {
            chip,
            vcek,
            vcek_der,
            config,
            report_id,
        }
    }

    /// A signed 1184-byte report carrying `report_data`, like SNP_GUEST_REQUEST(MSG_REPORT_REQ).
    pub fn report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, SimError> {
        let mut report = report::body(
            &self.config,
            &self.chip.chip_id(),
            &self.report_id,
            report_data,
        );
        report::sign(&mut report, &self.vcek);
        Ok(report.to_vec())
    }

    /// The VCEK certificate (DER) that verifies this guest's reports, as the host would fetch
    /// it from AMD's key server (here: issued by the simulated ASK).
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }

    /// What this guest was launched with.
    pub fn config(&self) -> &LaunchConfig {
        &self.config
    }

    /// A 32-byte key for `label`, like MSG_KEY_REQ: HKDF-SHA384 from the chip secret, mixing in
    /// the measurement and policy as the real request can (GUEST_FIELD_SELECT), so only the
    /// same guest image under the same policy on the same chip derives the same key.
    pub fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let mut key = [0u8; 32];
        self.chip.derive(
            &[
                b"sealing-key",
                &self.config.measurement,
                &self.config.policy.to_le_bytes(),
                label,
            ],
            &mut key,
        );
        key
    }
}

/// A fresh name beside `dir` for writing before the rename.
/// Writes `files` into a new directory `dir`: directory 0700, files 0600, written into a
/// private sibling first and renamed, so a reader never sees half of it.
pub(super) fn save_private_files(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), SimError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| SimError::io("create", parent, e))?;
    let tmp = unique_sibling(dir);
    create_private_dir(&tmp)?;
    let result = (|| {
        for (name, bytes) in files {
            write_private(&tmp.join(name), bytes)?;
        }
        fs::rename(&tmp, dir).map_err(|e| SimError::io("rename into place", dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

pub(super) fn unique_sibling(dir: &Path) -> PathBuf {
    let mut nonce = [0u8; 8];
    OsRng.fill_bytes(&mut nonce);
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        hex::encode(nonce)
    ));
    dir.with_file_name(name)
}

/// Writes a new file readable by its owner only (0600): keys and secrets live in these files.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| SimError::io("write", path, e))
}

pub(super) fn create_private_dir(path: &Path) -> Result<(), SimError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .map_err(|e| SimError::io("create", path, e))
}
