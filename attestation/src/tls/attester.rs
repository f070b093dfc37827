//! Where a node's own evidence comes from.

use super::binding::Binding;
use crate::sim::SimulatedTee;

/// A source of attestation evidence: the SNP guest device on real hardware, the simulated TEE
/// in development.
pub trait Attester: Send + Sync {
    /// A report whose REPORT_DATA is `binding.report_data()`, with the certificate that signs
    /// it, and the binding it was made for.
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError>;

    /// A report whose REPORT_DATA is exactly `report_data`, with the DER certificate that
    /// signs it: for evidence that binds something other than a TLS session (the coordinator's
    /// privacy-receipt key). The caller defines what `report_data` commits to, under a label of
    /// its own so no such report can pass for a TLS binding ([`Binding::report_data`] hashes
    /// its own label first).
    ///
    /// The default refuses: an attester that can only prove TLS sessions (a test double, a
    /// relay of someone else's evidence) says so instead of producing anything.
    fn attest_report_data(
        &self,
        report_data: &[u8; 64],
    ) -> Result<(Vec<u8>, Vec<u8>), AttestError> {
        let _ = report_data;
        Err(AttestError {
            reason:
                "this attester makes reports for TLS bindings only, not for arbitrary REPORT_DATA"
                    .into(),
        })
    }
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

    fn attest_report_data(
        &self,
        report_data: &[u8; 64],
    ) -> Result<(Vec<u8>, Vec<u8>), AttestError> {
        let report = self.report(report_data).map_err(|e| AttestError {
            reason: e.to_string(),
        })?;
        Ok((report, self.vcek_der().to_vec()))
    }
}

impl<A: Attester + ?Sized> Attester for std::sync::Arc<A> {
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError> {
        (**self).attest(binding)
    }

    fn attest_report_data(
        &self,
        report_data: &[u8; 64],
    ) -> Result<(Vec<u8>, Vec<u8>), AttestError> {
        (**self).attest_report_data(report_data)
    }
}
