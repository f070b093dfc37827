//! Trust anchors: the certificates a signing key must chain to.
//!
//! Only two doors: the AMD roots compiled into this crate ([`TrustAnchors::amd`]), or a chain
//! the caller names explicitly as simulated ([`TrustAnchors::simulated`]), whose every verdict
//! says `simulated: true`. Nothing a peer sends ever becomes an anchor: the sev crate's
//! `Chain::verify` accepts any self-signed ARK, so it is not used for trust decisions.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use sev::certs::snp::{Certificate as SevCertificate, Verifiable};
use x509_cert::der::Encode;
use x509_cert::Certificate;

use super::cert::{check_validity, der, parse_certificate};
use crate::error::{ChainError, Input, MalformedError, VerifyError};
use crate::report::{Generation, SigningKeyKind};
use crate::roots;

/// One ARK with the keys it signed.
#[derive(Debug, Clone)]
pub(crate) struct CaChain {
    /// The generation for pinned AMD chains; `None` for a simulated chain.
    pub(crate) generation: Option<Generation>,
    pub(crate) ark: Certificate,
    pub(crate) ask: Certificate,
    /// The VLEK signer; for a simulated chain the ASK signs VLEKs too.
    pub(crate) asvk: Option<Certificate>,
    pub(crate) ders: Vec<Vec<u8>>,
}

impl CaChain {
    fn new(
        generation: Option<Generation>,
        ark: Certificate,
        ask: Certificate,
        asvk: Option<Certificate>,
    ) -> Result<Self, String> {
        // Anchors are checked once, by two implementations (sev's over the rsa crate, and ring)
        // which must agree; per-report checks use ring alone.
        let both = |signer: &Certificate, signee: &Certificate| -> Result<(), String> {
            sev_signs(signer, signee).map_err(|e| e.to_string())?;
            signs(signer, signee)
        };
        both(&ark, &ark).map_err(|e| format!("ARK is not self-signed: {e}"))?;
        both(&ark, &ask).map_err(|e| format!("ASK is not signed by the ARK: {e}"))?;
        if let Some(asvk) = &asvk {
            both(&ark, asvk).map_err(|e| format!("ASVK is not signed by the ARK: {e}"))?;
        }
        let mut ders = vec![der(&ark), der(&ask)];
        ders.extend(asvk.as_ref().map(der));
        Ok(CaChain {
            generation,
            ark,
            ask,
            asvk,
            ders,
        })
    }

    /// The key that signs `kind`, and its name.
    pub(crate) fn signer(&self, kind: SigningKeyKind) -> (&Certificate, &'static str) {
        match (kind, &self.asvk) {
            (SigningKeyKind::Vlek, Some(asvk)) => (asvk, "ASVK"),
            _ => (&self.ask, "ASK"),
        }
    }

    /// Checks that the signer for `kind` signed `vek` (RSASSA-PSS with SHA-384) and that the
    /// names link up. Returns the crypto library's reason on failure.
    pub(crate) fn issued(&self, vek: &Certificate, kind: SigningKeyKind) -> Result<(), String> {
        let (signer, name) = self.signer(kind);
        if vek.tbs_certificate.issuer != signer.tbs_certificate.subject {
            return Err(format!(
                "issuer {} is not the {name} subject {}",
                vek.tbs_certificate.issuer, signer.tbs_certificate.subject
            ));
        }
        signs(signer, vek)
    }

    /// Checks the validity of the CA certificates used for `kind` at `at`.
    pub(crate) fn check_validity(
        &self,
        kind: SigningKeyKind,
        at: SystemTime,
    ) -> Result<(), ChainError> {
        check_validity(&self.ark, "ARK", at)?;
        let (signer, name) = self.signer(kind);
        check_validity(signer, name, at)
    }
}

const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// `signer`'s RSA key signed `signee` with RSASSA-PSS, SHA-384, MGF1-SHA-384 and a 48-byte
/// salt, as AMD signs its certificates (ring's check; it fixes those parameters itself).
fn signs(signer: &Certificate, signee: &Certificate) -> Result<(), String> {
    if signee.signature_algorithm.oid.to_string() != RSASSA_PSS {
        return Err(format!(
            "signature algorithm {} is not RSASSA-PSS",
            signee.signature_algorithm.oid
        ));
    }
    let tbs = signee
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("re-encode the certificate body: {e}"))?;
    let signature = signee
        .signature
        .as_bytes()
        .ok_or("signature is not a whole number of bytes")?;
    let key = signer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PSS_2048_8192_SHA384, key)
        .verify(&tbs, signature)
        .map_err(|_| {
            "RSASSA-PSS/SHA-384 signature does not verify with the issuer's key".to_string()
        })
}

/// The same check by the sev crate (`Verifiable for (&Certificate, &Certificate)`).
fn sev_signs(signer: &Certificate, signee: &Certificate) -> std::io::Result<()> {
    let signer = SevCertificate::from(signer.clone());
    let signee = SevCertificate::from(signee.clone());
    (&signer, &signee).verify()
}

/// What a signing certificate must chain to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    chains: Arc<Vec<CaChain>>,
    simulated: bool,
}

impl TrustAnchors {
    /// AMD's pinned roots for Milan, Genoa and Turin (ARK -> ASK for VCEKs, ARK -> ASVK for VLEKs).
    pub fn amd() -> Self {
        Self::amd_only(&Generation::ALL)
    }

    /// AMD's pinned roots for the listed generations only: for a fleet known to run on them.
    pub fn amd_only(generations: &[Generation]) -> Self {
        let chains = pinned()
            .iter()
            .filter(|c| c.generation.is_some_and(|g| generations.contains(&g)))
            .cloned()
            .collect();
        TrustAnchors {
            chains: Arc::new(chains),
            simulated: false,
        }
    }

    /// A locally generated chain for a simulated TEE (DER or PEM). The ASK signs both VCEKs
    /// and VLEKs. Checked to be self-consistent (ARK self-signed, ARK signs ASK); every verdict
    /// made with these anchors carries `simulated: true`.
    pub fn simulated(ark: &[u8], ask: &[u8]) -> Result<Self, VerifyError> {
        let ark = parse_certificate(ark, Input::CaCertificate)?;
        let ask = parse_certificate(ask, Input::CaCertificate)?;
        let chain = CaChain::new(None, ark, ask, None)
            .map_err(|reason| ChainError::InvalidSimulatedChain { reason })?;
        Ok(TrustAnchors {
            chains: Arc::new(vec![chain]),
            simulated: true,
        })
    }

    /// Whether these are simulated anchors.
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    /// The generations with pinned roots here (empty for simulated anchors).
    pub fn generations(&self) -> Vec<Generation> {
        self.chains.iter().filter_map(|c| c.generation).collect()
    }

    pub(crate) fn chains(&self) -> &[CaChain] {
        &self.chains
    }

    pub(crate) fn chain_for(&self, generation: Generation) -> Option<&CaChain> {
        self.chains
            .iter()
            .find(|c| c.generation == Some(generation))
    }

    /// Refuses any peer-sent CA certificate that is not byte-identical to one of ours.
    pub(crate) fn check_peer_certificates(&self, peer: &[&[u8]]) -> Result<(), VerifyError> {
        for bytes in peer {
            let cert = parse_certificate(bytes, Input::CaCertificate)?;
            let der = der(&cert);
            if !self.chains.iter().any(|c| c.ders.contains(&der)) {
                return Err(ChainError::PeerCertificateNotPinned {
                    subject: cert.tbs_certificate.subject.to_string(),
                    sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der)),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// The pinned AMD chains, parsed and checked once per process.
fn pinned() -> &'static [CaChain] {
    static PINNED: OnceLock<Vec<CaChain>> = OnceLock::new();
    PINNED.get_or_init(|| {
        Generation::ALL
            .into_iter()
            .map(|g| {
                let pems = roots::pems(g);
                let parse = |b: &[u8]| -> Result<Certificate, MalformedError> {
                    parse_certificate(b, Input::CaCertificate)
                };
                // The bytes are compiled in and checked by tests: failing here is a build defect.
                let (ark, ask, asvk) = (
                    parse(pems.ark).expect("pinned ARK parses"),
                    parse(pems.ask).expect("pinned ASK parses"),
                    parse(pems.asvk).expect("pinned ASVK parses"),
                );
                CaChain::new(Some(g), ark, ask, Some(asvk)).expect("pinned AMD chain verifies")
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_roots_verify_and_match_their_fingerprints() {
        let expected = [
            (Generation::Milan, ["69d063b4", "67d303bd", "c5e081f5"]),
            (Generation::Genoa, ["4c6598d1", "5464738c", "197e6107"]),
            (Generation::Turin, ["1f084161", "5b77ef5f", "104e10a8"]),
        ];
        let anchors = TrustAnchors::amd();
        for (g, prefixes) in expected {
            let chain = anchors.chain_for(g).unwrap();
            for (der, prefix) in chain.ders.iter().zip(prefixes) {
                let fp = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der));
                assert!(
                    fp.starts_with(prefix),
                    "{g}: {fp} does not start with {prefix}"
                );
            }
            for cert in [&chain.ark, &chain.ask] {
                let cn = super::super::cert::common_name(&cert.tbs_certificate.subject).unwrap();
                assert!(cn.ends_with(g.name()), "{cn}");
            }
        }
        assert!(!anchors.is_simulated());
        assert_eq!(
            TrustAnchors::amd_only(&[Generation::Genoa]).generations(),
            vec![Generation::Genoa]
        );
    }

    #[test]
    fn a_chain_from_another_generation_does_not_verify() {
        let anchors = TrustAnchors::amd();
        let milan = anchors.chain_for(Generation::Milan).unwrap();
        let genoa = anchors.chain_for(Generation::Genoa).unwrap();
        assert!(signs(&genoa.ark, &milan.ask).is_err());
        assert!(sev_signs(&genoa.ark, &milan.ask).is_err());
        assert!(signs(&milan.ark, &milan.ask).is_ok());
    }
}
