//! Verifying a report: small steps, each with its own refusal.
//!
//! 1. decode the report and the certificate completely ([`Report::decode`]);
//! 2. pair them: the report's KEY_INFO names the certificate's kind, their generations agree;
//! 3. chain: the pinned ASK (VCEK) or ASVK (VLEK) of that generation signed the certificate, and
//!    ARK, ASK/ASVK and the certificate are valid at the given time;
//! 4. bind: CHIP_ID equals the VCEK's hwID, REPORTED_TCB equals the certificate's TCB;
//! 5. signature: ECDSA P-384/SHA-384 over the received bytes 0x0..0x2A0;
//! 6. policy: the now authentic content against the [`Policy`] and the expected REPORT_DATA.
//!
//! Steps 2 and 4 compare two pieces of evidence and run before the signature so that the most
//! common operational mistake, a VCEK for another chip or TCB, is named as such instead of as
//! a bad signature. Policy checks run only on a report whose signature verified.

mod anchors;
mod cert;
mod checks;

use std::time::SystemTime;

use serde::Serialize;

pub use anchors::TrustAnchors;
pub use cert::{oids, SigningCertificate};

use crate::error::{ChainError, EvidenceError, PolicyError, VerifyError};
use crate::policy::{MeasurementRule, Policy};
use crate::report::{
    Generation, GenerationHint, GuestPolicy, PlatformInfo, Report, SigningKeyKind, Tcb,
};
use anchors::CaChain;

/// Verifies SNP reports against a policy and trust anchors. Cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Verifier {
    policy: Policy,
    trust: TrustAnchors,
}

/// An accepted report: what was verified and what the report says.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// True when the trust anchors were a simulated chain: no hardware protection at all.
    pub simulated: bool,
    /// The CPU generation whose roots verified the certificate (for simulated chains, the one
    /// the report or certificate names).
    pub generation: Generation,
    /// Report VERSION.
    pub report_version: u32,
    /// VCEK or VLEK.
    pub signing_key: SigningKeyKind,
    /// MEASUREMENT, hex.
    #[serde(serialize_with = "ser_hex")]
    pub measurement: [u8; 48],
    /// Whether MEASUREMENT was checked against an allow-list (false with `allow_any_measurement`).
    pub measurement_checked: bool,
    /// REPORT_DATA, hex.
    #[serde(serialize_with = "ser_hex")]
    pub report_data: [u8; 64],
    /// Whether REPORT_DATA was compared with an expected binding.
    pub report_data_checked: bool,
    /// HOST_DATA, hex.
    #[serde(serialize_with = "ser_hex")]
    pub host_data: [u8; 32],
    /// CHIP_ID, hex (zero when masked).
    #[serde(serialize_with = "ser_hex")]
    pub chip_id: [u8; 64],
    /// ID_KEY_DIGEST, hex.
    #[serde(serialize_with = "ser_hex")]
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST, hex.
    #[serde(serialize_with = "ser_hex")]
    pub author_key_digest: [u8; 48],
    /// The guest policy, decoded.
    pub policy: GuestPolicy,
    /// PLATFORM_INFO, decoded.
    pub platform_info: PlatformInfo,
    /// VMPL of the requester.
    pub vmpl: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// REPORTED_TCB (equal to the signing certificate's TCB).
    pub reported_tcb: Tcb,
    /// CURRENT_TCB.
    pub current_tcb: Tcb,
    /// COMMITTED_TCB.
    pub committed_tcb: Tcb,
    /// LAUNCH_TCB.
    pub launch_tcb: Tcb,
    /// The signing certificate's subject.
    pub signing_cert_subject: String,
    /// The signing certificate's issuer.
    pub signing_cert_issuer: String,
}

/// `chain` signed `vek`, or the error naming the signer and generation that did not.
fn require_issued(
    chain: &CaChain,
    vek: &SigningCertificate,
    generation: Generation,
) -> Result<(), ChainError> {
    chain
        .issued(&vek.x509, vek.kind)
        .map_err(|reason| ChainError::NotSignedByPinnedKey {
            kind: vek.kind,
            signer: chain.signer(vek.kind).1,
            generation,
            reason,
        })
}

impl Verifier {
    /// A verifier for `policy` with `trust` as its only anchors, refusing a policy that is not
    /// usable with them ([`Policy::check_for`]: AMD's roots need a minimum TCB).
    pub fn try_new(policy: Policy, trust: TrustAnchors) -> Result<Self, PolicyError> {
        policy.check_for(&trust)?;
        Ok(Verifier { policy, trust })
    }

    /// As [`Verifier::try_new`], infallible: a policy not usable with `trust` makes every
    /// [`Verifier::verify`] fail with [`VerifyError::Configuration`], so nothing is accepted.
    pub fn new(policy: Policy, trust: TrustAnchors) -> Self {
        Verifier { policy, trust }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The trust anchors.
    pub fn trust(&self) -> &TrustAnchors {
        &self.trust
    }

    /// Verifies `report` (1184 raw bytes) signed by `signing_cert` (VCEK or VLEK, DER or PEM).
    /// `expected_report_data` is the binding the caller computed (TLS key hash, nonce); `None`
    /// skips that check and the verdict says so. `at` is the time certificates must be valid at.
    pub fn verify(
        &self,
        report: &[u8],
        signing_cert: &[u8],
        expected_report_data: Option<&[u8; 64]>,
        at: SystemTime,
    ) -> Result<Verdict, VerifyError> {
        let report = Report::decode(report)?;
        let vek = SigningCertificate::parse(signing_cert)?;
        if report.signing_key() != vek.kind {
            return Err(EvidenceError::SigningKeyKind {
                expected: report.signing_key(),
                found: vek.kind,
            }
            .into());
        }
        let (chain, generation) = self.issuing_chain(report.hint(), &vek)?;
        chain.check_validity(vek.kind, at)?;
        cert::check_validity(&vek.x509, kind_label(vek.kind), at)?;
        checks::binding(&report, &vek, generation)?;
        checks::signature(&report, &vek)?;
        // Checked per call (a few byte compares) so that `new` is no way around it. Here, not
        // first: evidence that fails the chain or signature is named as such either way.
        self.policy.check_for(&self.trust)?;
        checks::policy(&self.policy, &report, generation, expected_report_data)?;
        Ok(self.verdict(&report, &vek, generation, expected_report_data.is_some()))
    }

    /// As [`Verifier::verify`], for a peer that also sent CA certificates (ASK, ASVK, ARK; as
    /// in an extended report's certificate table). Each must be byte-identical to a pinned
    /// certificate, else the report is refused; they are never used as anchors.
    pub fn verify_with_peer_chain(
        &self,
        report: &[u8],
        signing_cert: &[u8],
        peer_ca_certs: &[&[u8]],
        expected_report_data: Option<&[u8; 64]>,
        at: SystemTime,
    ) -> Result<Verdict, VerifyError> {
        self.trust.check_peer_certificates(peer_ca_certs)?;
        self.verify(report, signing_cert, expected_report_data, at)
    }

    /// Verifies a VCEK or VLEK alone: that a trusted chain issued it and that it and its CA
    /// certificates are valid at `at`. Returns the decoded certificate and its generation.
    pub fn verify_signing_certificate(
        &self,
        signing_cert: &[u8],
        at: SystemTime,
    ) -> Result<(SigningCertificate, Generation), VerifyError> {
        let vek = SigningCertificate::parse(signing_cert)?;
        let (chain, generation) = self.issuing_chain(GenerationHint::Unknown, &vek)?;
        chain.check_validity(vek.kind, at)?;
        cert::check_validity(&vek.x509, kind_label(vek.kind), at)?;
        Ok((vek, generation))
    }

    /// Finds the chain that issued `vek` and the generation of the evidence.
    fn issuing_chain(
        &self,
        hint: GenerationHint,
        vek: &SigningCertificate,
    ) -> Result<(&CaChain, Generation), VerifyError> {
        if let Some(g) = vek.generation_hint {
            if !hint.admits(g) {
                return Err(EvidenceError::Generation {
                    report: hint.describe(),
                    certificate: g,
                }
                .into());
            }
        }
        if self.trust.is_simulated() {
            let chain = &self.trust.chains()[0];
            let generation = match (hint, vek.generation_hint) {
                (GenerationHint::Known(g), _) | (_, Some(g)) => g,
                (GenerationHint::TurinLike, None) => Generation::Turin,
                (_, None) => Generation::Milan,
            };
            require_issued(chain, vek, generation)?;
            return Ok((chain, generation));
        }
        let named = match (hint, vek.generation_hint) {
            (GenerationHint::Known(g), _) | (_, Some(g)) => Some(g),
            _ => None,
        };
        if let Some(generation) = named {
            let chain = self.trust.chain_for(generation).ok_or_else(|| {
                ChainError::GenerationNotTrusted {
                    generation,
                    trusted: list(&self.trust.generations()),
                }
            })?;
            require_issued(chain, vek, generation)?;
            return Ok((chain, generation));
        }
        // A v2 report and a certificate that names no generation: try each admissible chain.
        let tried: Vec<Generation> = self
            .trust
            .generations()
            .into_iter()
            .filter(|g| hint.admits(*g))
            .collect();
        for g in &tried {
            let chain = self.trust.chain_for(*g).expect("listed above");
            if chain.issued(&vek.x509, vek.kind).is_ok() {
                return Ok((chain, *g));
            }
        }
        Err(ChainError::NoPinnedChainVerifies {
            kind: vek.kind,
            tried: list(&tried),
            issuer: vek.issuer(),
        }
        .into())
    }

    fn verdict(
        &self,
        r: &Report,
        vek: &SigningCertificate,
        generation: Generation,
        report_data_checked: bool,
    ) -> Verdict {
        Verdict {
            simulated: self.trust.is_simulated(),
            generation,
            report_version: r.version(),
            signing_key: r.signing_key(),
            measurement: *r.measurement(),
            measurement_checked: matches!(self.policy.measurements, MeasurementRule::AllowList(_)),
            report_data: *r.report_data(),
            report_data_checked,
            host_data: *r.host_data(),
            chip_id: *r.chip_id(),
            id_key_digest: *r.id_key_digest(),
            author_key_digest: *r.author_key_digest(),
            policy: r.policy(),
            platform_info: r.platform_info(),
            vmpl: r.vmpl(),
            guest_svn: r.guest_svn(),
            reported_tcb: r.reported_tcb(generation),
            current_tcb: r.current_tcb(generation),
            committed_tcb: r.committed_tcb(generation),
            launch_tcb: r.launch_tcb(generation),
            signing_cert_subject: vek.subject(),
            signing_cert_issuer: vek.issuer(),
        }
    }
}

fn kind_label(kind: SigningKeyKind) -> &'static str {
    match kind {
        SigningKeyKind::Vcek => "VCEK",
        SigningKeyKind::Vlek => "VLEK",
    }
}

fn list(gens: &[Generation]) -> String {
    if gens.is_empty() {
        return "none".into();
    }
    gens.iter().map(|g| g.name()).collect::<Vec<_>>().join(", ")
}

fn ser_hex<S: serde::Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}
