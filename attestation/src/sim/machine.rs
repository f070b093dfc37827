//! One simulated machine as a node holds it: its chip, its VCEK, and the public AMD chain.
//!
//! This is what a real SEV-SNP host has. The PSP holds the chip secret and the VCEK private
//! key; the host fetches the VCEK certificate and the ARK and ASK *certificates* from AMD's key
//! server. Nobody but AMD holds the ARK and ASK private keys, so a host can sign reports for
//! its own chip only, and cannot certify another chip or TCB. A [`SimulatedChip`] keeps that
//! shape: it is issued by the [`SimulatedPlatform`](super::SimulatedPlatform) (the simulation's
//! AMD) and its directory never holds root keys.
//!
//! Inside the simulation the node plays its own PSP, so its directory does hold the chip secret
//! and the VCEK key: the node could sign any report *for its own chip*. That is the limit of a
//! simulation; it does not let a node mint evidence for another chip or another TCB.

use std::fs;
use std::path::Path;

use p384::ecdsa::SigningKey;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

use super::chip::{Chip, CHIP_SECRET_LEN};
use super::platform::{
    save_private_files, SimulatedTee, ARK_CERT, ARK_KEY, ASK_CERT, ASK_KEY, CHIP_SECRET, README,
};
use super::report::{LaunchConfig, GENERATION};
use super::SimError;
use crate::report::Tcb;
use crate::{Policy, SigningCertificate, TrustAnchors, Verifier};

/// The VCEK certificate (DER) in a chip directory.
pub(super) const VCEK_CERT: &str = "vcek.der";
/// The VCEK private key (PKCS#8 DER) in a chip directory.
pub(super) const VCEK_KEY: &str = "vcek.key.der";

const README_TEXT: &str = "\
SIMULATED SEV-SNP machine for one BastionAI node. NOT AMD. NOT CONFIDENTIAL.
ark.der/ask.der: the simulated ARK and ASK certificates (public; no private keys here).
vcek.der: this chip's VCEK certificate, issued by the simulated ASK.
vcek.key.der and chip.secret: this chip's VCEK private key and secret, in the clear.
";

/// A simulated machine for one node: chip secret, VCEK (key and certificate) for one TCB, and
/// the simulated ARK and ASK certificates. Holds no root private key.
#[derive(Clone)]
pub struct SimulatedChip {
    chip: Chip,
    vcek: SigningKey,
    vcek_der: Vec<u8>,
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    tcb: Tcb,
}

impl std::fmt::Debug for SimulatedChip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedChip")
            .field("chip_id", &hex::encode(&self.chip.chip_id()[..8]))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

impl SimulatedChip {
    pub(super) fn new(
        chip: Chip,
        vcek: SigningKey,
        vcek_der: Vec<u8>,
        ark_der: Vec<u8>,
        ask_der: Vec<u8>,
        tcb: Tcb,
    ) -> Self {
        SimulatedChip {
            chip,
            vcek,
            vcek_der,
            ark_der,
            ask_der,
            tcb,
        }
    }

    /// Saves the chip into `dir`, which must not exist yet: directory 0700, files 0600,
    /// written into a sibling first and renamed, so a reader never sees half a chip.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), SimError> {
        let key = self
            .vcek
            .to_pkcs8_der()
            .map_err(|e| SimError::crypto("encode the VCEK key as PKCS#8", e))?;
        save_private_files(
            dir.as_ref(),
            &[
                (README, README_TEXT.as_bytes()),
                (ARK_CERT, &self.ark_der),
                (ASK_CERT, &self.ask_der),
                (VCEK_CERT, &self.vcek_der),
                (VCEK_KEY, key.as_bytes()),
                (CHIP_SECRET, self.chip.secret()),
            ],
        )
    }

    /// Loads a chip saved by [`SimulatedChip::save`], checking that it is one: the VCEK chains
    /// to the saved ASK and ARK, the VCEK key is the certificate's, and the certificate's hwID
    /// is this chip's id. A directory holding root private keys is refused.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, SimError> {
        let dir = dir.as_ref();
        let wrong = |reason: String| SimError::WrongDirectory {
            dir: dir.to_path_buf(),
            expected: "simulated chip",
            reason,
        };
        if dir.join(ARK_KEY).exists() || dir.join(ASK_KEY).exists() {
            return Err(wrong(format!(
                "it holds the simulated ARK/ASK private keys ({ARK_KEY}, {ASK_KEY}), which no node may hold; give the node a directory made by SimulatedPlatform::issue_chip (`bastion cluster up --fresh` remakes them)"
            )));
        }
        if !dir.join(VCEK_KEY).exists() {
            return Err(wrong(format!(
                "there is no {VCEK_KEY} (the chip's VCEK private key); make one with SimulatedPlatform::issue_chip and SimulatedChip::save"
            )));
        }
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read(&path).map_err(|e| SimError::io("read", &path, e))
        };
        let bad = |name: &str, reason: String| SimError::BadChainFile {
            path: dir.join(name),
            reason,
        };
        let ark_der = read(ARK_CERT)?;
        let ask_der = read(ASK_CERT)?;
        let vcek_der = read(VCEK_CERT)?;
        let key_der = Zeroizing::new(read(VCEK_KEY)?);
        let vcek =
            SigningKey::from_pkcs8_der(&key_der).map_err(|e| bad(VCEK_KEY, e.to_string()))?;
        let secret: [u8; CHIP_SECRET_LEN] =
            read(CHIP_SECRET)?.try_into().map_err(|v: Vec<u8>| {
                bad(
                    CHIP_SECRET,
                    format!("expected {CHIP_SECRET_LEN} bytes, found {}", v.len()),
                )
            })?;
        let chip = Chip::from_secret(secret);

        // The same checks a peer's verifier makes, so a broken directory fails here and not as
        // a refusal on the far side.
        let trust = TrustAnchors::simulated(&ark_der, &ask_der)
            .map_err(|e| bad(ASK_CERT, e.to_string()))?;
        let (cert, _) = Verifier::new(Policy::any_measurement_dangerous(), trust)
            .verify_signing_certificate(&vcek_der, std::time::SystemTime::now())
            .map_err(|e| bad(VCEK_CERT, e.to_string()))?;
        if vcek.verifying_key().to_encoded_point(false).as_bytes() != cert.public_key_sec1() {
            return Err(bad(
                VCEK_KEY,
                "not the private key of the VCEK certificate".into(),
            ));
        }
        if cert.hw_id() != Some(&chip.chip_id()[..]) {
            return Err(bad(
                CHIP_SECRET,
                "the VCEK certificate's hwID is not this chip's id".into(),
            ));
        }
        let tcb = vcek_tcb(&cert).map_err(|reason| bad(VCEK_CERT, reason))?;
        tracing::warn!(
            dir = %dir.display(),
            "SIMULATED TEE: loaded a simulated chip; nothing it signs is evidence of real SEV-SNP hardware"
        );
        Ok(SimulatedChip {
            chip,
            vcek,
            vcek_der,
            ark_der,
            ask_der,
            tcb,
        })
    }

    /// Launches a simulated guest on this chip. `config.tcb` must be the TCB the VCEK was
    /// issued for: the chip cannot certify another.
    pub fn launch(&self, config: LaunchConfig) -> Result<SimulatedTee, SimError> {
        if config.tcb != self.tcb {
            return Err(SimError::TcbMismatch {
                chip: self.tcb,
                requested: config.tcb,
            });
        }
        Ok(SimulatedTee::start(
            self.chip.clone(),
            self.vcek.clone(),
            self.vcek_der.clone(),
            config,
        ))
    }

    /// The simulated ARK certificate (DER), for [`TrustAnchors::simulated`].
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }

    /// The simulated ASK certificate (DER), for [`TrustAnchors::simulated`].
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }

    /// This chip's VCEK certificate (DER).
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }

    /// This chip's CHIP_ID.
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip.chip_id()
    }

    /// The TCB the VCEK was issued for: the `tcb` every launch on this chip must use.
    pub fn tcb(&self) -> Tcb {
        self.tcb
    }
}

fn vcek_tcb(cert: &SigningCertificate) -> Result<Tcb, String> {
    cert.tcb(GENERATION).map_err(|e| e.to_string())
}
