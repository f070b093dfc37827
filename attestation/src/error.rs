//! Why a report was refused.
//!
//! One public enum, [`VerifyError`], with a family per stage of verification so that a caller
//! (or a test) can match the exact reason. Each variant carries the evidence: the field, the
//! expected value and the value found. [`VerifyError::code`] is the one place that maps a
//! refusal to a short stable label for the wire and for metrics.
//!
//! Errors in the verification *policy file* are a different kind of problem (operator input,
//! not peer evidence) and have their own type, [`PolicyError`].

use std::time::SystemTime;

use crate::report::{Generation, SigningKeyKind};

/// A report (with its signing certificate) was refused. See the family enums for the reasons.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The report or the certificate could not be decoded.
    #[error(transparent)]
    Malformed(#[from] MalformedError),
    /// The signing certificate does not lead to a trusted root, or is out of its validity.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The report and its certificate disagree, or the report signature is wrong.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The report is authentic but the verification policy refuses what it says.
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    /// The report is authentic, but the verifier's own policy is not usable with its trust
    /// anchors (the caller's mistake, not the peer's), so its policy checks did not run and it
    /// is refused. See [`crate::Verifier::try_new`].
    #[error("verifier misconfigured, no report can be accepted: {0}")]
    Configuration(#[from] PolicyError),
}

impl VerifyError {
    /// A short, stable label for this refusal: rejection codes on the wire and metric labels.
    /// The label names the family and the variant, never a value from the evidence.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(e) => e.code(),
            Self::Chain(e) => e.code(),
            Self::Evidence(e) => e.code(),
            Self::Policy(e) => e.code(),
            Self::Configuration(e) => e.code(),
        }
    }
}

/// Which byte string failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// The attestation report.
    Report,
    /// The VCEK or VLEK certificate that signs the report.
    SigningCertificate,
    /// A CA certificate (ARK, ASK or ASVK) given to a trust-anchor constructor or sent by a peer.
    CaCertificate,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Report => "attestation report",
            Self::SigningCertificate => "signing certificate (VCEK/VLEK)",
            Self::CaCertificate => "CA certificate",
        })
    }
}

/// The bytes are not a well-formed report or certificate. Nothing about their origin is known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedError {
    /// An empty input.
    #[error("{input} is empty")]
    Empty {
        /// What was empty.
        input: Input,
    },
    /// The report is not exactly the size the SNP ABI defines.
    #[error("attestation report has {found} bytes, expected exactly {expected}")]
    ReportLength {
        /// 1184 (SNP ABI, table "ATTESTATION_REPORT structure").
        expected: usize,
        /// The length received.
        found: usize,
    },
    /// A report version this verifier does not know how to read.
    #[error("attestation report field VERSION is {found}, expected {min} to {max}")]
    ReportVersion {
        /// The lowest version supported.
        min: u32,
        /// The highest version supported.
        max: u32,
        /// The version in the report.
        found: u32,
    },
    /// SIGNATURE_ALGO is not ECDSA P-384 with SHA-384 (encoding 1), the only one SNP defines.
    #[error("attestation report field SIG_ALGO is {found}, expected 1 (ECDSA P-384 with SHA-384)")]
    SignatureAlgorithm {
        /// The value in the report.
        found: u32,
    },
    /// KEY_INFO.SIGNING_KEY holds a reserved encoding.
    #[error(
        "attestation report field KEY_INFO.SIGNING_KEY is {found}, expected 0 (VCEK) or 1 (VLEK)"
    )]
    SigningKeyEncoding {
        /// The 3-bit value in the report.
        found: u32,
    },
    /// The firmware did not sign the report (SIGNING_KEY = NONE or MASK_CHIP_KEY = 1).
    #[error("attestation report is unsigned (KEY_INFO = {key_info:#x}: SIGNING_KEY is NONE or MASK_CHIP_KEY is set)")]
    Unsigned {
        /// The KEY_INFO word.
        key_info: u32,
    },
    /// The unused high bytes of the little-endian R or S component are not zero.
    #[error("attestation report SIGNATURE.{component} has non-zero bytes above the 48-byte P-384 scalar")]
    SignaturePadding {
        /// "R" or "S".
        component: &'static str,
    },
    /// A v3+ report whose CPUID family/model is not a generation this verifier supports.
    #[error(
        "attestation report CPUID family {family:#x} model {model:#x} is not Milan, Genoa or Turin"
    )]
    UnknownCpu {
        /// CPUID_FAM_ID.
        family: u8,
        /// CPUID_MOD_ID.
        model: u8,
    },
    /// The sev crate refused the report bytes.
    #[error("attestation report could not be parsed: {reason}")]
    ReportParse {
        /// The parser's message.
        reason: String,
    },
    /// A certificate is neither DER nor PEM X.509.
    #[error("{input} is not an X.509 certificate in DER or PEM: {reason}")]
    Certificate {
        /// Which certificate.
        input: Input,
        /// The decoder's message.
        reason: String,
    },
    /// The signing certificate's key is not an ECDSA P-384 public key.
    #[error("signing certificate public key is not ECDSA P-384 ({reason})")]
    SigningKeyType {
        /// What is wrong with it.
        reason: String,
    },
    /// The signing certificate carries neither a hwID (VCEK) nor a cspID (VLEK) extension.
    #[error("signing certificate has neither the hwID extension 1.3.6.1.4.1.3704.1.4 (VCEK) nor the cspID extension 1.3.6.1.4.1.3704.1.5 (VLEK)")]
    UnknownSigningCertificate,
    /// An AMD extension is missing from the signing certificate.
    #[error("signing certificate lacks the AMD extension {oid} ({name})")]
    MissingExtension {
        /// Dotted OID.
        oid: &'static str,
        /// What it holds.
        name: &'static str,
    },
    /// An AMD extension of the signing certificate does not decode.
    #[error("signing certificate extension {oid} ({name}) is malformed: {reason}")]
    BadExtension {
        /// Dotted OID.
        oid: &'static str,
        /// What it holds.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl MalformedError {
    fn code(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "malformed.empty",
            Self::ReportLength { .. } => "malformed.report_length",
            Self::ReportVersion { .. } => "malformed.report_version",
            Self::SignatureAlgorithm { .. } => "malformed.signature_algorithm",
            Self::SigningKeyEncoding { .. } => "malformed.signing_key_encoding",
            Self::Unsigned { .. } => "malformed.unsigned",
            Self::SignaturePadding { .. } => "malformed.signature_padding",
            Self::UnknownCpu { .. } => "malformed.unknown_cpu",
            Self::ReportParse { .. } => "malformed.report_parse",
            Self::Certificate { .. } => "malformed.certificate",
            Self::SigningKeyType { .. } => "malformed.signing_key_type",
            Self::UnknownSigningCertificate => "malformed.unknown_signing_certificate",
            Self::MissingExtension { .. } => "malformed.missing_extension",
            Self::BadExtension { .. } => "malformed.bad_extension",
        }
    }
}

/// The signing certificate is not anchored in the trusted roots, or not valid at the given time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The report's generation has no pinned roots in these trust anchors.
    #[error("no trusted roots for {generation}: these trust anchors hold {trusted}")]
    GenerationNotTrusted {
        /// The generation of the report or certificate.
        generation: Generation,
        /// The generations trusted, comma-separated.
        trusted: String,
    },
    /// The signing certificate is not signed by the pinned ASK (VCEK) or ASVK (VLEK).
    #[error("{kind} is not signed by the pinned {signer} of {generation} ({reason})")]
    NotSignedByPinnedKey {
        /// VCEK or VLEK.
        kind: SigningKeyKind,
        /// "ASK" or "ASVK".
        signer: &'static str,
        /// Whose pinned key was tried.
        generation: Generation,
        /// The crypto library's message.
        reason: String,
    },
    /// A v2 report whose certificate names no known issuer was tried against every pinned chain.
    #[error("{kind} is not signed by the pinned keys of any trusted generation ({tried}); issuer: {issuer}")]
    NoPinnedChainVerifies {
        /// VCEK or VLEK.
        kind: SigningKeyKind,
        /// The generations tried.
        tried: String,
        /// The certificate's issuer name.
        issuer: String,
    },
    /// A CA certificate sent by the peer is not one of the pinned certificates.
    #[error("peer sent a CA certificate that is not pinned: subject {subject}, SHA-256 {sha256}")]
    PeerCertificateNotPinned {
        /// The certificate's subject.
        subject: String,
        /// Hex SHA-256 of its DER.
        sha256: String,
    },
    /// A certificate's notBefore is after the verification time.
    #[error("{cert} is not valid yet: notBefore {not_before}, verification time {at}", not_before = fmt_time(*.not_before), at = fmt_time(*.at))]
    NotYetValid {
        /// "VCEK", "ASK", "ARK", ...
        cert: &'static str,
        /// The certificate's notBefore.
        not_before: SystemTime,
        /// The verification time.
        at: SystemTime,
    },
    /// A certificate's notAfter is before the verification time.
    #[error("{cert} has expired: notAfter {not_after}, verification time {at}", not_after = fmt_time(*.not_after), at = fmt_time(*.at))]
    Expired {
        /// "VCEK", "ASK", "ARK", ...
        cert: &'static str,
        /// The certificate's notAfter.
        not_after: SystemTime,
        /// The verification time.
        at: SystemTime,
    },
    /// An explicitly given (simulated) chain is not internally consistent.
    #[error("simulated trust anchors are invalid: {reason}")]
    InvalidSimulatedChain {
        /// What failed.
        reason: String,
    },
}

impl ChainError {
    fn code(&self) -> &'static str {
        match self {
            Self::GenerationNotTrusted { .. } => "chain.generation_not_trusted",
            Self::NotSignedByPinnedKey { .. } => "chain.not_signed_by_pinned_key",
            Self::NoPinnedChainVerifies { .. } => "chain.no_pinned_chain_verifies",
            Self::PeerCertificateNotPinned { .. } => "chain.peer_certificate_not_pinned",
            Self::NotYetValid { .. } => "chain.not_yet_valid",
            Self::Expired { .. } => "chain.expired",
            Self::InvalidSimulatedChain { .. } => "chain.invalid_simulated_chain",
        }
    }
}

/// The report and the certificate do not belong together, or the signature does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The report says VCEK and the certificate is a VLEK, or the reverse.
    #[error(
        "attestation report KEY_INFO.SIGNING_KEY says {expected}, but the certificate is a {found}"
    )]
    SigningKeyKind {
        /// What the report says signed it.
        expected: SigningKeyKind,
        /// What the certificate is.
        found: SigningKeyKind,
    },
    /// The report's CPU generation differs from the certificate's.
    #[error(
        "attestation report is from {report}, but the signing certificate is for {certificate}"
    )]
    Generation {
        /// What the report says (from CPUID, or the chip-id shape of a v2 report).
        report: String,
        /// What the certificate says (issuer or product name).
        certificate: Generation,
    },
    /// CHIP_ID differs from the VCEK's hwID: the VCEK belongs to another chip.
    #[error("attestation report CHIP_ID {found} does not match the VCEK hwID {expected}")]
    ChipId {
        /// Hex hwID of the VCEK.
        expected: String,
        /// Hex CHIP_ID of the report.
        found: String,
    },
    /// REPORTED_TCB differs from the TCB the VCEK/VLEK was issued for.
    #[error("attestation report REPORTED_TCB.{field} is {found}, but the signing certificate was issued for {expected}")]
    Tcb {
        /// bootloader, tee, snp, microcode or fmc.
        field: &'static str,
        /// The certificate's TCB extension.
        expected: u8,
        /// The report's value.
        found: u8,
    },
    /// The ECDSA signature over bytes 0x0..0x2A0 does not verify with the certificate's key.
    #[error("attestation report SIGNATURE does not verify with the {kind} public key")]
    Signature {
        /// VCEK or VLEK.
        kind: SigningKeyKind,
    },
}

impl EvidenceError {
    fn code(&self) -> &'static str {
        match self {
            Self::SigningKeyKind { .. } => "evidence.signing_key_kind",
            Self::Generation { .. } => "evidence.generation",
            Self::ChipId { .. } => "evidence.chip_id",
            Self::Tcb { .. } => "evidence.tcb",
            Self::Signature { .. } => "evidence.signature",
        }
    }
}

/// An authentic report that the verification policy refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// Guest policy DEBUG = 1: the host can read and write guest memory.
    #[error("guest POLICY.DEBUG is 1 (policy {policy:#x}): the host may debug this guest; set allow_debug = true to accept")]
    DebugAllowed {
        /// The guest policy word.
        policy: u64,
    },
    /// Guest policy MIGRATE_MA = 1: a migration agent may export the guest.
    #[error("guest POLICY.MIGRATE_MA is 1 (policy {policy:#x}): a migration agent may be associated; set allow_migration_agent = true to accept")]
    MigrationAgentAllowed {
        /// The guest policy word.
        policy: u64,
    },
    /// Guest policy SMT = 1 while the verification policy forbids SMT.
    #[error("guest POLICY.SMT is 1 (policy {policy:#x}) but allow_smt = false")]
    SmtAllowed {
        /// The guest policy word.
        policy: u64,
    },
    /// Guest policy SINGLE_SOCKET = 0 while the verification policy requires it.
    #[error(
        "guest POLICY.SINGLE_SOCKET is 0 (policy {policy:#x}) but require_single_socket = true"
    )]
    SingleSocketNotRequired {
        /// The guest policy word.
        policy: u64,
    },
    /// The report was requested from a less privileged VMPL than allowed.
    #[error("attestation report VMPL is {found}, expected at most {max}")]
    Vmpl {
        /// max_vmpl of the policy.
        max: u32,
        /// VMPL in the report.
        found: u32,
    },
    /// The report version is below the policy's minimum.
    #[error("attestation report VERSION is {found}, expected at least {min}")]
    ReportVersion {
        /// min_report_version of the policy.
        min: u32,
        /// VERSION in the report.
        found: u32,
    },
    /// A component of REPORTED_TCB is below the policy's minimum.
    #[error("attestation report REPORTED_TCB.{field} is {found}, expected at least {min}")]
    TcbBelowMinimum {
        /// bootloader, tee, snp, microcode or fmc.
        field: &'static str,
        /// The policy's minimum.
        min: u8,
        /// The report's value.
        found: u8,
    },
    /// GUEST_SVN is below the policy's minimum.
    #[error("attestation report GUEST_SVN is {found}, expected at least {min}")]
    GuestSvn {
        /// min_guest_svn of the policy.
        min: u32,
        /// GUEST_SVN in the report.
        found: u32,
    },
    /// MEASUREMENT is not in the allow-list.
    #[error(
        "attestation report MEASUREMENT {found} is not among the {allowed} allowed measurement(s)"
    )]
    Measurement {
        /// How many measurements the policy allows.
        allowed: usize,
        /// Hex measurement of the report.
        found: String,
    },
    /// HOST_DATA differs from the policy's.
    #[error("attestation report HOST_DATA is {found}, expected {expected}")]
    HostData {
        /// Hex expected host data.
        expected: String,
        /// Hex host data of the report.
        found: String,
    },
    /// ID_KEY_DIGEST is not in the allow-list.
    #[error("attestation report ID_KEY_DIGEST {found} is not among the {allowed} allowed ID key digest(s)")]
    IdKeyDigest {
        /// How many digests the policy allows.
        allowed: usize,
        /// Hex digest of the report.
        found: String,
    },
    /// AUTHOR_KEY_DIGEST is not in the allow-list.
    #[error("attestation report AUTHOR_KEY_DIGEST {found} is not among the {allowed} allowed author key digest(s)")]
    AuthorKeyDigest {
        /// How many digests the policy allows.
        allowed: usize,
        /// Hex digest of the report.
        found: String,
    },
    /// The policy accepts only VCEK- or only VLEK-signed reports.
    #[error("attestation report is signed by a {found}, which the policy does not accept")]
    SigningKeyNotAllowed {
        /// VCEK or VLEK.
        found: SigningKeyKind,
    },
    /// LAUNCH_TCB (the TCB the guest was launched under) is below the policy's minimum.
    #[error("attestation report LAUNCH_TCB.{field} is {found}, expected at least {min}")]
    LaunchTcbBelowMinimum {
        /// bootloader, tee, snp, microcode or fmc.
        field: &'static str,
        /// The policy's minimum.
        min: u8,
        /// The report's value.
        found: u8,
    },
    /// Guest policy CIPHERTEXT_HIDING_DRAM = 0 while the policy requires ciphertext hiding:
    /// the firmware did not make it a launch condition.
    #[error("guest POLICY.CIPHERTEXT_HIDING_DRAM (bit 24) is 0 (policy {policy:#x}) but require_ciphertext_hiding = true")]
    CiphertextHidingNotRequired {
        /// The guest policy word.
        policy: u64,
    },
    /// PLATFORM_INFO.CIPHERTEXT_HIDING_DRAM_EN = 0 while the policy requires ciphertext hiding.
    #[error("PLATFORM_INFO.CIPHERTEXT_HIDING_DRAM_EN (bit 4) is 0 (platform info {platform_info:#x}) but require_ciphertext_hiding = true")]
    CiphertextHidingDisabled {
        /// The PLATFORM_INFO word.
        platform_info: u64,
    },
    /// PLATFORM_INFO.SMT_EN = 1 while the policy requires SMT off on the host.
    #[error("PLATFORM_INFO.SMT_EN (bit 0) is 1 (platform info {platform_info:#x}): the host runs SMT but require_smt_disabled = true")]
    PlatformSmtEnabled {
        /// The PLATFORM_INFO word.
        platform_info: u64,
    },
    /// PLATFORM_INFO.TSME_EN = 0 while the policy requires TSME.
    #[error("PLATFORM_INFO.TSME_EN (bit 1) is 0 (platform info {platform_info:#x}) but require_tsme = true")]
    TsmeDisabled {
        /// The PLATFORM_INFO word.
        platform_info: u64,
    },
    /// REPORT_DATA is not the expected binding (TLS key hash, nonce).
    #[error("attestation report REPORT_DATA is {found}, expected {expected}")]
    ReportData {
        /// Hex expected report data.
        expected: String,
        /// Hex report data of the report.
        found: String,
    },
}

impl PolicyViolation {
    fn code(&self) -> &'static str {
        match self {
            Self::DebugAllowed { .. } => "policy.debug_allowed",
            Self::MigrationAgentAllowed { .. } => "policy.migration_agent_allowed",
            Self::SmtAllowed { .. } => "policy.smt_allowed",
            Self::SingleSocketNotRequired { .. } => "policy.single_socket_not_required",
            Self::Vmpl { .. } => "policy.vmpl",
            Self::ReportVersion { .. } => "policy.report_version",
            Self::TcbBelowMinimum { .. } => "policy.tcb_below_minimum",
            Self::GuestSvn { .. } => "policy.guest_svn",
            Self::Measurement { .. } => "policy.measurement",
            Self::HostData { .. } => "policy.host_data",
            Self::IdKeyDigest { .. } => "policy.id_key_digest",
            Self::AuthorKeyDigest { .. } => "policy.author_key_digest",
            Self::SigningKeyNotAllowed { .. } => "policy.signing_key_not_allowed",
            Self::ReportData { .. } => "policy.report_data",
            Self::LaunchTcbBelowMinimum { .. } => "policy.launch_tcb_below_minimum",
            Self::CiphertextHidingNotRequired { .. } => "policy.ciphertext_hiding_not_required",
            Self::CiphertextHidingDisabled { .. } => "policy.ciphertext_hiding_disabled",
            Self::PlatformSmtEnabled { .. } => "policy.platform_smt_enabled",
            Self::TsmeDisabled { .. } => "policy.tsme_disabled",
        }
    }
}

/// The verification policy file is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not valid TOML, an unknown field, or a wrong type.
    #[error("policy is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    /// A hex field has the wrong length or is not hex.
    #[error("policy field {field}: {reason}")]
    Field {
        /// The field name (with its index for lists).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// No measurement allow-list and no explicit opt-out.
    #[error("policy lists no allowed_measurements: list the expected launch measurements (hex, 48 bytes), or set allow_any_measurement = true to accept any guest image")]
    NoMeasurements,
    /// Both an allow-list and allow_any_measurement = true: one of them would be ignored.
    #[error("policy sets both allowed_measurements and allow_any_measurement = true; keep one")]
    ConflictingMeasurementRules,
    /// allowed_signing_keys is empty, which would refuse everything.
    #[error("policy field allowed_signing_keys is empty; list \"vcek\", \"vlek\" or both")]
    NoSigningKeys,
    /// A policy for AMD's roots with no minimum TCB: evidence from unpatched firmware would pass.
    #[error("policy sets no min_tcb (bootloader, tee, snp and microcode all 0) but trusts AMD hardware roots: set [min_tcb] to the lowest firmware you accept (AMD's security bulletins list the fixed SVNs), or allow_any_tcb = true to inspect evidence only")]
    NoMinimumTcb,
}

impl PolicyError {
    /// A short, stable label, as [`VerifyError::code`].
    pub fn code(&self) -> &'static str {
        match self {
            Self::Toml(_) => "configuration.toml",
            Self::Field { .. } => "configuration.field",
            Self::NoMeasurements => "configuration.no_measurements",
            Self::ConflictingMeasurementRules => "configuration.conflicting_measurement_rules",
            Self::NoSigningKeys => "configuration.no_signing_keys",
            Self::NoMinimumTcb => "configuration.no_minimum_tcb",
        }
    }
}

/// RFC 3339 rendering of a time for messages.
pub(crate) fn fmt_time(t: SystemTime) -> String {
    match x509_cert::der::DateTime::from_system_time(t) {
        Ok(dt) => dt.to_string(),
        Err(_) => format!("{t:?}"),
    }
}
