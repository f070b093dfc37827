//! Where a node's own evidence comes from.

use super::binding::Binding;
use crate::sim::SimulatedTee;

/// A source of attestation evidence: the SNP guest device on real hardware, the simulated TEE
/// in development.
pub trait Attester: Send + Sync {
    /// A report whose REPORT_DATA is `binding.report_data()`, with the certificate that signs
    /// it, and the binding it was made for.
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError>;
}

/// A report, its signing certificate, and the binding the sender says it carries.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The 1184-byte SNP attestation report.
    pub report: Vec<u8>,
    /// The VCEK (or VLEK) certificate, DER.
    pub vcek_der: Vec<u8>,
    /// What the report binds, as its maker claims. Never trusted: the receiver recomputes the
    /// binding from its own view of the session and uses this only to explain a mismatch, and
    /// only after checking that it hashes to the report's authentic REPORT_DATA.
    pub binding: Binding,
}

/// The node could not produce its own evidence.
#[derive(Debug, thiserror::Error)]
#[error("cannot obtain an attestation report: {reason}")]
pub struct AttestError {
    /// Why, in the words of the device or the simulator.
    pub reason: String,
}

impl Attester for SimulatedTee {
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError> {
        let report = self
            .report(&binding.report_data())
            .map_err(|e| AttestError {
                reason: e.to_string(),
            })?;
        Ok(Evidence {
            report,
            vcek_der: self.vcek_der().to_vec(),
            binding: binding.clone(),
        })
    }
}

impl<A: Attester + ?Sized> Attester for std::sync::Arc<A> {
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError> {
        (**self).attest(binding)
    }
}
