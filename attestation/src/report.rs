//! The SNP attestation report: decoded completely, with the sev crate, before anything acts on it.
//!
//! Layout facts come from the SEV-SNP firmware ABI specification (AMD 56860), table
//! "ATTESTATION_REPORT structure": 1184 bytes, the ECDSA P-384 signature at 0x2A0 covers bytes
//! 0x0..0x2A0, R and S are stored little-endian in 72-byte fields (48 significant bytes).
//!
//! The signature is checked over the *received* bytes, not over a re-encoding of the parsed
//! struct: re-encoding drops reserved bytes, so a report tampered only there would still pass.

use serde::Serialize;
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use crate::error::{Input, MalformedError};

/// Size of an SNP attestation report.
pub const REPORT_LEN: usize = 1184;
/// The signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Offset of the signature (R at +0, S at +72, each 72 bytes little-endian).
pub const SIGNATURE_OFFSET: usize = 0x2A0;
/// Report versions this verifier reads (v2: Milan/Genoa firmware before CPUID fields; v3/v4 add
/// CPUID family/model/stepping; v5 adds the mitigation vectors).
pub const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 2..=5;

const CHIP_ID: std::ops::Range<usize> = 0x1A0..0x1E0;
const CPUID_FAMILY: usize = 0x188;
const CPUID_MODEL: usize = 0x189;

/// An AMD EPYC generation with SEV-SNP that this verifier pins roots for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum Generation {
    /// 3rd generation EPYC (Zen 3).
    Milan,
    /// 4th generation EPYC (Zen 4).
    Genoa,
    /// 5th generation EPYC (Zen 5). Its TCB_VERSION layout adds an FMC field.
    Turin,
}

impl Generation {
    /// All generations with pinned roots.
    pub const ALL: [Generation; 3] = [Generation::Milan, Generation::Genoa, Generation::Turin];

    /// From CPUID family and model (as in v3+ reports), using the sev crate's table.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match sev::Generation::identify_cpu(family, model).ok()? {
            sev::Generation::Milan => Some(Self::Milan),
            sev::Generation::Genoa => Some(Self::Genoa),
            sev::Generation::Turin => Some(Self::Turin),
            _ => None,
        }
    }

    /// The name AMD uses in certificate names ("Milan" in "SEV-Milan", "ARK-Milan").
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// Turin and later lay TCB_VERSION out as FMC, bootloader, TEE, SNP, 3 reserved, microcode.
    pub fn has_fmc(self) -> bool {
        matches!(self, Self::Turin)
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which AMD key signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyKind {
    /// Versioned Chip Endorsement Key: per chip and TCB, chained ARK -> ASK -> VCEK.
    Vcek,
    /// Versioned Loaded Endorsement Key: per cloud provider, chained ARK -> ASVK -> VLEK.
    Vlek,
}

impl std::fmt::Display for SigningKeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        })
    }
}

/// A TCB_VERSION, decoded for its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Tcb {
    /// SVN of the PSP bootloader.
    pub bootloader: u8,
    /// SVN of the PSP operating system.
    pub tee: u8,
    /// SVN of the SNP firmware.
    pub snp: u8,
    /// Lowest microcode patch level of all cores.
    pub microcode: u8,
    /// SVN of the FMC firmware (Turin and later; `None` before).
    pub fmc: Option<u8>,
}

impl Tcb {
    /// Decodes the 8-byte TCB_VERSION of `generation`.
    pub fn from_bytes(generation: Generation, b: [u8; 8]) -> Self {
        if generation.has_fmc() {
            Tcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            }
        } else {
            Tcb {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            }
        }
    }

    /// Encodes as the 8-byte TCB_VERSION of `generation` (reserved bytes zero).
    pub fn to_bytes(self, generation: Generation) -> [u8; 8] {
        if generation.has_fmc() {
            [
                self.fmc.unwrap_or(0),
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ]
        } else {
            [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ]
        }
    }

    /// The components as (name, value), FMC only where the generation has it.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u8)> {
        [
            Some(("bootloader", self.bootloader)),
            Some(("tee", self.tee)),
            Some(("snp", self.snp)),
            Some(("microcode", self.microcode)),
            self.fmc.map(|v| ("fmc", v)),
        ]
        .into_iter()
        .flatten()
    }
}

/// The guest policy word, decoded into its flags (SNP ABI, table "Guest Policy Structure").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestPolicy {
    /// The raw 64-bit policy.
    #[serde(serialize_with = "ser_hex_u64")]
    pub raw: u64,
    /// Minimum ABI major version required.
    pub abi_major: u8,
    /// Minimum ABI minor version required.
    pub abi_minor: u8,
    /// Bit 16: the host may run the guest with SMT enabled.
    pub smt_allowed: bool,
    /// Bit 18: a migration agent may be associated with the guest.
    pub migrate_ma_allowed: bool,
    /// Bit 19: the host may debug the guest (read/write its memory).
    pub debug_allowed: bool,
    /// Bit 20: the guest may be activated on one socket only.
    pub single_socket_required: bool,
    /// Bit 21: CXL may be populated with devices or memory.
    pub cxl_allowed: bool,
    /// Bit 22: AES-256-XTS memory encryption required.
    pub mem_aes_256_xts: bool,
    /// Bit 23: RAPL must be disabled.
    pub rapl_disabled: bool,
    /// Bit 24: ciphertext hiding must be enabled.
    pub ciphertext_hiding: bool,
    /// Bit 25: page swap commands disabled for the guest.
    pub page_swap_disabled: bool,
}

impl GuestPolicy {
    /// Decodes the policy word.
    pub fn from_raw(raw: u64) -> Self {
        let bit = |n: u32| raw >> n & 1 == 1;
        GuestPolicy {
            raw,
            abi_minor: raw as u8,
            abi_major: (raw >> 8) as u8,
            smt_allowed: bit(16),
            migrate_ma_allowed: bit(18),
            debug_allowed: bit(19),
            single_socket_required: bit(20),
            cxl_allowed: bit(21),
            mem_aes_256_xts: bit(22),
            rapl_disabled: bit(23),
            ciphertext_hiding: bit(24),
            page_swap_disabled: bit(25),
        }
    }
}

/// PLATFORM_INFO, decoded (SNP ABI, table "PLATFORM_INFO Field").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlatformInfo {
    /// The raw 64-bit word.
    #[serde(serialize_with = "ser_hex_u64")]
    pub raw: u64,
    /// SMT is enabled on the host.
    pub smt_enabled: bool,
    /// Transparent SME is enabled.
    pub tsme_enabled: bool,
    /// The platform uses ECC memory.
    pub ecc_enabled: bool,
    /// RAPL is disabled.
    pub rapl_disabled: bool,
    /// Ciphertext hiding is enabled.
    pub ciphertext_hiding_enabled: bool,
    /// Alias check completed since reset with no aliasing found (v3+).
    pub alias_check_complete: bool,
}

impl PlatformInfo {
    fn from_raw(raw: u64) -> Self {
        let bit = |n: u32| raw >> n & 1 == 1;
        PlatformInfo {
            raw,
            smt_enabled: bit(0),
            tsme_enabled: bit(1),
            ecc_enabled: bit(2),
            rapl_disabled: bit(3),
            ciphertext_hiding_enabled: bit(4),
            alias_check_complete: bit(5),
        }
    }
}

/// What the report alone says about its generation, before any certificate is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GenerationHint {
    /// v3+: CPUID family/model name it.
    Known(Generation),
    /// v2 with an 8-byte chip id (56 zero bytes after it): Turin-shaped.
    TurinLike,
    /// v2 with a 64-byte chip id: Milan or Genoa, which share a TCB layout.
    PreTurin,
    /// v2 with CHIP_ID masked (all zero): nothing to go on.
    Unknown,
}

impl GenerationHint {
    pub(crate) fn admits(self, g: Generation) -> bool {
        match self {
            Self::Known(k) => k == g,
            Self::TurinLike => g == Generation::Turin,
            Self::PreTurin => g != Generation::Turin,
            Self::Unknown => true,
        }
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Self::Known(g) => format!("{g} (CPUID)"),
            Self::TurinLike => "Turin (v2 report with an 8-byte CHIP_ID)".into(),
            Self::PreTurin => "Milan or Genoa (v2 report with a 64-byte CHIP_ID)".into(),
            Self::Unknown => "an unknown generation".into(),
        }
    }
}

/// A decoded, not yet verified, attestation report: the received bytes plus typed fields.
#[derive(Debug, Clone)]
pub struct Report {
    bytes: Box<[u8; REPORT_LEN]>,
    parsed: AttestationReport,
    hint: GenerationHint,
    signing_key: SigningKeyKind,
}

impl Report {
    /// Decodes `bytes` completely. Checks size, version, signature algorithm, that the report is
    /// signed, and that the signature encoding is canonical; nothing about authenticity.
    pub fn decode(bytes: &[u8]) -> Result<Self, MalformedError> {
        if bytes.is_empty() {
            return Err(MalformedError::Empty {
                input: Input::Report,
            });
        }
        let bytes: Box<[u8; REPORT_LEN]> =
            bytes
                .to_vec()
                .into_boxed_slice()
                .try_into()
                .map_err(|b: Box<[u8]>| MalformedError::ReportLength {
                    expected: REPORT_LEN,
                    found: b.len(),
                })?;
        let version = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(MalformedError::ReportVersion {
                min: *SUPPORTED_VERSIONS.start(),
                max: *SUPPORTED_VERSIONS.end(),
                found: version,
            });
        }
        let sig_algo = u32::from_le_bytes(bytes[0x34..0x38].try_into().expect("4 bytes"));
        if sig_algo != 1 {
            return Err(MalformedError::SignatureAlgorithm { found: sig_algo });
        }
        let key_info = u32::from_le_bytes(bytes[0x48..0x4C].try_into().expect("4 bytes"));
        let signing_key = match (key_info >> 2) & 0b111 {
            _ if key_info & 0b10 != 0 => return Err(MalformedError::Unsigned { key_info }),
            0 => SigningKeyKind::Vcek,
            1 => SigningKeyKind::Vlek,
            7 => return Err(MalformedError::Unsigned { key_info }),
            other => return Err(MalformedError::SigningKeyEncoding { found: other }),
        };
        for (component, at) in [("R", SIGNATURE_OFFSET), ("S", SIGNATURE_OFFSET + 72)] {
            if bytes[at + 48..at + 72].iter().any(|&b| b != 0) {
                return Err(MalformedError::SignaturePadding { component });
            }
        }
        let chip_id = &bytes[CHIP_ID];
        let chip_id_masked = chip_id.iter().all(|&b| b == 0);
        let hint = if version >= 3 {
            let (family, model) = (bytes[CPUID_FAMILY], bytes[CPUID_MODEL]);
            GenerationHint::Known(
                Generation::from_cpuid(family, model)
                    .ok_or(MalformedError::UnknownCpu { family, model })?,
            )
        } else if chip_id_masked {
            GenerationHint::Unknown
        } else if chip_id[8..].iter().all(|&b| b == 0) {
            GenerationHint::TurinLike
        } else {
            GenerationHint::PreTurin
        };
        let parsed = parse_with_sev(&bytes, chip_id_masked && version == 2)?;
        Ok(Report {
            bytes,
            parsed,
            hint,
            signing_key,
        })
    }

    /// The bytes as received.
    pub fn bytes(&self) -> &[u8; REPORT_LEN] {
        &self.bytes
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }

    /// The sev crate's view of the report. Its TCB fields of a v2 report follow sev's guess of
    /// the layout; prefer [`Report::reported_tcb`] which uses the verified generation.
    pub fn sev(&self) -> &AttestationReport {
        &self.parsed
    }

    /// VERSION.
    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    /// Which key signed the report.
    pub fn signing_key(&self) -> SigningKeyKind {
        self.signing_key
    }

    /// The generation named by CPUID (v3+ reports only).
    pub fn cpuid_generation(&self) -> Option<Generation> {
        match self.hint {
            GenerationHint::Known(g) => Some(g),
            _ => None,
        }
    }

    pub(crate) fn hint(&self) -> GenerationHint {
        self.hint
    }

    /// GUEST_SVN.
    pub fn guest_svn(&self) -> u32 {
        self.parsed.guest_svn
    }

    /// POLICY, decoded.
    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy::from_raw(u64::from(self.parsed.policy))
    }

    /// PLATFORM_INFO, decoded.
    pub fn platform_info(&self) -> PlatformInfo {
        PlatformInfo::from_raw(u64::from(self.parsed.plat_info))
    }

    /// VMPL the report was requested from.
    pub fn vmpl(&self) -> u32 {
        self.parsed.vmpl
    }

    /// REPORT_DATA: what the guest bound into the report (key hash, nonce).
    pub fn report_data(&self) -> &[u8; 64] {
        &self.parsed.report_data
    }

    /// MEASUREMENT: the launch digest.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.parsed.measurement
    }

    /// HOST_DATA: data the host supplied at launch.
    pub fn host_data(&self) -> &[u8; 32] {
        &self.parsed.host_data
    }

    /// ID_KEY_DIGEST: SHA-384 of the key that signed the ID block (zero without an ID block).
    pub fn id_key_digest(&self) -> &[u8; 48] {
        &self.parsed.id_key_digest
    }

    /// AUTHOR_KEY_DIGEST: SHA-384 of the key that signed the ID key (zero without one).
    pub fn author_key_digest(&self) -> &[u8; 48] {
        &self.parsed.author_key_digest
    }

    /// CHIP_ID (zero when MASK_CHIP_ID is set).
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.parsed.chip_id
    }

    /// REPORTED_TCB decoded for `generation` (the TCB the VCEK was derived from).
    pub fn reported_tcb(&self, generation: Generation) -> Tcb {
        self.tcb_at(0x180, generation)
    }

    /// CURRENT_TCB decoded for `generation`.
    pub fn current_tcb(&self, generation: Generation) -> Tcb {
        self.tcb_at(0x38, generation)
    }

    /// COMMITTED_TCB decoded for `generation`.
    pub fn committed_tcb(&self, generation: Generation) -> Tcb {
        self.tcb_at(0x1E0, generation)
    }

    /// LAUNCH_TCB decoded for `generation`.
    pub fn launch_tcb(&self, generation: Generation) -> Tcb {
        self.tcb_at(0x1F0, generation)
    }

    fn tcb_at(&self, offset: usize, generation: Generation) -> Tcb {
        Tcb::from_bytes(
            generation,
            self.bytes[offset..offset + 8].try_into().expect("8 bytes"),
        )
    }

    /// The signature's R and S as big-endian P-384 scalars.
    pub(crate) fn signature_scalars(&self) -> ([u8; 48], [u8; 48]) {
        let be = |at: usize| {
            let mut out = [0u8; 48];
            out.copy_from_slice(&self.bytes[at..at + 48]);
            out.reverse();
            out
        };
        (be(SIGNATURE_OFFSET), be(SIGNATURE_OFFSET + 72))
    }
}

/// Parses with sev. sev's v2 decoder guesses the TCB layout from the chip id and refuses a masked
/// (all-zero) one; for that case it is handed a copy with a non-zero pre-Turin-shaped chip id
/// and the real (zero) chip id is put back. Our own TCB decoding does not depend on the guess.
fn parse_with_sev(
    bytes: &[u8; REPORT_LEN],
    masked_v2: bool,
) -> Result<AttestationReport, MalformedError> {
    let parse = |b: &[u8]| {
        AttestationReport::from_bytes(b).map_err(|e| MalformedError::ReportParse {
            reason: e.to_string(),
        })
    };
    if masked_v2 {
        let mut copy = *bytes;
        copy[CHIP_ID.start + 8] = 1;
        let mut parsed = parse(&copy)?;
        parsed.chip_id = [0; 64];
        Ok(parsed)
    } else {
        parse(bytes)
    }
}

/// Writes a P-384 signature given as big-endian R and S into a report buffer at
/// [`SIGNATURE_OFFSET`], in the little-endian, zero-padded layout of the SNP ABI. For
/// simulated TEEs that sign their own reports.
pub fn write_signature(report: &mut [u8; REPORT_LEN], r_be: &[u8; 48], s_be: &[u8; 48]) {
    let sig = &mut report[SIGNATURE_OFFSET..SIGNATURE_OFFSET + 144];
    sig.fill(0);
    for (i, b) in r_be.iter().rev().enumerate() {
        sig[i] = *b;
    }
    for (i, b) in s_be.iter().rev().enumerate() {
        sig[72 + i] = *b;
    }
}

fn ser_hex_u64<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_layouts_round_trip() {
        let t = Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        };
        assert_eq!(t.to_bytes(Generation::Milan), [3, 0, 0, 0, 0, 0, 8, 115]);
        assert_eq!(
            Tcb::from_bytes(Generation::Genoa, t.to_bytes(Generation::Genoa)),
            t
        );
        let t = Tcb { fmc: Some(1), ..t };
        assert_eq!(t.to_bytes(Generation::Turin), [1, 3, 0, 8, 0, 0, 0, 115]);
        assert_eq!(
            Tcb::from_bytes(Generation::Turin, t.to_bytes(Generation::Turin)),
            t
        );
    }

    #[test]
    fn policy_bits() {
        let p = GuestPolicy::from_raw(0x3001f);
        assert!(p.smt_allowed && !p.debug_allowed && !p.migrate_ma_allowed);
        assert_eq!((p.abi_major, p.abi_minor), (0, 0x1f));
        let p = GuestPolicy::from_raw(0x30000 | 1 << 19 | 1 << 18);
        assert!(p.debug_allowed && p.migrate_ma_allowed);
    }

    #[test]
    fn signature_round_trips_through_the_abi_layout() {
        let mut buf = [0u8; REPORT_LEN];
        buf[0] = 2;
        buf[0x34] = 1;
        let r: [u8; 48] = std::array::from_fn(|i| i as u8 + 1);
        let s: [u8; 48] = std::array::from_fn(|i| 200 - i as u8);
        write_signature(&mut buf, &r, &s);
        buf[CHIP_ID.start + 20] = 7;
        let rep = Report::decode(&buf).unwrap();
        assert_eq!(rep.signature_scalars(), (r, s));
    }
}
