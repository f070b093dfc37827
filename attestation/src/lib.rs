//! AMD SEV-SNP attestation for BastionAI: report verification against pinned AMD roots, a
//! simulated TEE for development and CI, and rustls verifiers that bind a peer's report to its
//! TLS key.
//!
//! # Verifying a report
//!
//! A [`Verifier`] holds a [`Policy`] (what an authentic report must say) and [`TrustAnchors`]
//! (what its signing key must chain to). [`Verifier::verify`] takes the 1184-byte report, the
//! VCEK or VLEK certificate (DER or PEM), the REPORT_DATA the caller expects (the hash of the
//! peer's TLS key and a nonce, or `None`), and the time certificates must be valid at. It
//! returns a [`Verdict`] or a [`VerifyError`] naming the exact check that failed.
//!
//! ```text
//!   pinned ARK (src/roots/{milan,genoa,turin})
//!     |-- ASK  --signs--> VCEK (hwID = CHIP_ID, TCB extensions = REPORTED_TCB)
//!     '-- ASVK --signs--> VLEK (cspID)
//!                            '--signs (ECDSA P-384, SHA-384, bytes 0x0..0x2A0)--> report
//! ```
//!
//! ```no_run
//! use bastion_attestation::{Policy, TrustAnchors, Verifier};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::from_toml(&std::fs::read_to_string("policy.toml")?)?;
//! // Refuses a policy without a minimum TCB: AMD's roots also sign unpatched firmware.
//! let verifier = Verifier::try_new(policy, TrustAnchors::amd())?;
//! let report = std::fs::read("report.bin")?;
//! let vcek = std::fs::read("vcek.der")?;
//! let binding = [0u8; 64]; // what the peer must have put in REPORT_DATA
//! let verdict = verifier.verify(&report, &vcek, Some(&binding), std::time::SystemTime::now())?;
//! assert!(!verdict.simulated);
//! # Ok(()) }
//! ```
//!
//! # The checks, in order
//!
//! 1. Decoding ([`MalformedError`]): exactly 1184 bytes; VERSION 2 to 5; SIG_ALGO 1 (ECDSA
//!    P-384/SHA-384); KEY_INFO names VCEK or VLEK (not NONE, not MASK_CHIP_KEY); signature
//!    padding zero; v3+ CPUID names Milan, Genoa or Turin. Certificate DER or PEM, P-384 key,
//!    hwID (VCEK) or cspID (VLEK) present, TCB extensions decodable.
//! 2. Pairing ([`EvidenceError`]): KEY_INFO's key kind is the certificate's kind; the report's
//!    generation (CPUID, or the chip-id shape of a v2 report) is the certificate's (issuer
//!    "SEV-Milan"/"SEV-VLEK-Genoa"/..., or product name).
//! 3. Chain ([`ChainError`]): the *pinned* ASK (VCEK) or ASVK (VLEK) of that generation signed
//!    the certificate; a v2 report whose certificate names no generation is tried against every
//!    pinned chain. ARK, ASK/ASVK and the certificate are valid at the given time. CA
//!    certificates a peer sends are never anchors ([`Verifier::verify_with_peer_chain`] refuses
//!    any that is not byte-identical to a pinned one).
//! 4. Binding ([`EvidenceError`]): CHIP_ID equals the VCEK's hwID (raw or DER-wrapped, 64 bytes
//!    or Turin's 8); REPORTED_TCB equals the certificate's bootloader, TEE, SNP, microcode (and
//!    on Turin FMC) SPLs.
//! 5. Signature ([`EvidenceError::Signature`]) over the bytes as received.
//! 6. Policy ([`PolicyViolation`]): debug and migration agent refused unless allowed, SMT and
//!    single socket as configured, signing key kind, VMPL at most `max_vmpl`, minimum report
//!    version, minimum REPORTED_TCB and LAUNCH_TCB, ciphertext hiding (guest policy and
//!    PLATFORM_INFO), host SMT off and TSME on where required, minimum guest SVN, MEASUREMENT
//!    in the allow-list, HOST_DATA, ID and author key digests, REPORT_DATA equal to the
//!    expected binding (constant-time).
//!
//! Before step 6 the verifier checks its own configuration ([`VerifyError::Configuration`]):
//! with AMD's roots the policy must set a minimum TCB, else no report is accepted.
//!
//! # On SEV-SNP hardware
//!
//! [`guest`] is the node's side: reports and sealing keys from `/dev/sev-guest` behind the
//! [`guest::GuestDevice`] trait, and [`guest::SnpGuest`], an [`tls::Attester`] whose evidence
//! peers verify with the same [`Verifier`] and [`TrustAnchors::amd`].
//!
//! # For a simulated TEE
//!
//! [`TrustAnchors::simulated`] takes a locally made ARK and ASK (DER or PEM); verdicts made with
//! it say `simulated: true`. What the simulated chain must look like to verify:
//! ARK self-signed and ASK signed by the ARK, both RSA (2048 to 8192 bits) with RSASSA-PSS,
//! SHA-384, MGF1-SHA-384 and a 48-byte salt, as AMD's; the VCEK signed by the ASK the same way,
//! with an ECDSA P-384 key, issuer equal to the ASK's subject, the hwID extension
//! ([`oids::HW_ID`], the 64-byte CHIP_ID) and the TCB extensions ([`oids::BOOTLOADER_SPL`], [`oids::TEE_SPL`], [`oids::SNP_SPL`],
//! [`oids::MICROCODE_SPL`], and [`oids::FMC_SPL`] for Turin) as DER INTEGERs equal to
//! REPORTED_TCB. The report is signed with ECDSA P-384/SHA-384 over bytes `0..`[`report::SIGNED_LEN`],
//! the signature written with [`report::write_signature`]. Naming a generation in the ASK's
//! subject (for example "SEV-Milan") or using a v3+ report with CPUID fixes the TCB layout;
//! otherwise a v2 report is read with the Milan/Genoa layout.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod guest;
pub mod policy;
pub mod report;
mod roots;
pub mod verify;

pub use error::{
    ChainError, EvidenceError, MalformedError, PolicyError, PolicyViolation, VerifyError,
};
pub use policy::{MeasurementRule, Policy, PolicyFile, TcbMinimum};
pub use report::{Generation, GuestPolicy, PlatformInfo, Report, SigningKeyKind, Tcb};
pub use verify::{oids, SigningCertificate, TrustAnchors, Verdict, Verifier};

pub mod sim;
pub mod tls;
