//! The verification policy: what an authentic report must say to be accepted.
//!
//! Read from TOML in two steps: [`PolicyFile`] is the file as written (unknown fields
//! rejected), [`Policy`] is the validated form the verifier uses (hex decoded to fixed-size
//! arrays). The defaults are the safe ones: no debug, no migration agent, VMPL 0, and a
//! measurement allow-list that must be given. Accepting any guest image takes the visibly
//! named `allow_any_measurement = true`.
//!
//! ```toml
//! allowed_measurements = ["7a1e5c26...841f"]   # 48-byte hex, one per accepted image
//! allow_debug = false                          # default
//! allow_migration_agent = false                # default
//! allow_smt = true                             # default; false requires POLICY.SMT = 0
//! require_single_socket = false                # default
//! max_vmpl = 0                                 # default
//! min_report_version = 2                       # default
//! min_guest_svn = 0                            # default
//! allowed_signing_keys = ["vcek", "vlek"]      # default
//! require_ciphertext_hiding = false            # default; true: guest POLICY bit 24 and PLATFORM_INFO bit 4
//! require_smt_disabled = false                 # default; true: PLATFORM_INFO.SMT_EN = 0
//! require_tsme = false                         # default; true: PLATFORM_INFO.TSME_EN = 1
//! allow_any_tcb = false                        # default; see below
//! host_data = "00..00"                         # optional, 32-byte hex
//! allowed_id_key_digests = []                  # optional, 48-byte hex each
//! allowed_author_key_digests = []              # optional, 48-byte hex each
//! [min_tcb]                                    # required for AMD roots (see below)
//! bootloader = 3
//! tee = 0
//! snp = 8
//! microcode = 115
//! fmc = 0                                      # Turin only
//! [min_launch_tcb]                             # optional, each field defaults to 0
//! snp = 8
//! ```
//!
//! A policy used with AMD's roots must set a minimum TCB: with `min_tcb` all zero, a report from
//! a machine that never installed a security fix would verify. [`Verifier::try_new`] refuses
//! that combination ([`PolicyError::NoMinimumTcb`]) and a verifier made with
//! [`Verifier::new`] refuses every report with it. `allow_any_tcb = true` is the visibly named
//! way out, for inspecting evidence. Simulated anchors may use zero: the simulated chip's TCB
//! is a number it chose.
//!
//! [`Verifier::try_new`]: crate::Verifier::try_new
//! [`Verifier::new`]: crate::Verifier::new

use serde::Deserialize;

use crate::error::PolicyError;
use crate::report::SigningKeyKind;
use crate::verify::TrustAnchors;

/// Which launch measurements are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasurementRule {
    /// Only these measurements.
    AllowList(Vec<[u8; 48]>),
    /// Any measurement: any guest image the host chose. Only for inspection tools and
    /// development; the verdict says `measurement_checked: false`.
    AnyMeasurementDangerous,
}

/// Minimum TCB components; a report's REPORTED_TCB must meet each of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcbMinimum {
    /// PSP bootloader SVN.
    pub bootloader: u8,
    /// PSP OS SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
    /// FMC SVN; checked only on generations that report it (Turin).
    pub fmc: u8,
}

impl TcbMinimum {
    /// True when bootloader, TEE, SNP and microcode are all zero: no minimum at all (an FMC
    /// minimum alone constrains only Turin).
    pub fn is_unset(&self) -> bool {
        [self.bootloader, self.tee, self.snp, self.microcode] == [0; 4]
    }

    /// The minimum for each component, by the names [`Tcb::fields`](crate::Tcb::fields) uses.
    pub(crate) fn get(&self, field: &str) -> u8 {
        match field {
            "bootloader" => self.bootloader,
            "tee" => self.tee,
            "snp" => self.snp,
            "microcode" => self.microcode,
            "fmc" => self.fmc,
            _ => 0,
        }
    }
}

/// The validated verification policy. Build it from TOML with [`Policy::from_toml`], or in code
/// with [`Policy::new`] (safe defaults around a measurement allow-list).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Accepted launch measurements.
    pub measurements: MeasurementRule,
    /// Accept guests whose policy lets the host debug them (reads guest memory). Default false.
    pub allow_debug: bool,
    /// Accept guests that may be associated with a migration agent. Default false.
    pub allow_migration_agent: bool,
    /// Accept guests that allow the host to use SMT. Default true: most hosts run SMT and a
    /// guest forbidding it does not launch there; set false where SMT side channels matter.
    pub allow_smt: bool,
    /// Require the guest policy's SINGLE_SOCKET bit. Default false.
    pub require_single_socket: bool,
    /// Highest VMPL a report may come from. Default 0: the most privileged guest level.
    pub max_vmpl: u32,
    /// Lowest report version. Default 2.
    pub min_report_version: u32,
    /// Lowest GUEST_SVN. Default 0.
    pub min_guest_svn: u32,
    /// Minimum REPORTED_TCB. Default all zero, which only simulated anchors accept (or
    /// `allow_any_tcb`).
    pub min_tcb: TcbMinimum,
    /// Accept an all-zero `min_tcb` with AMD's roots: any firmware, however outdated. For
    /// inspecting evidence only. Default false.
    pub allow_any_tcb: bool,
    /// Minimum LAUNCH_TCB: the TCB the guest was launched under (a firmware update since then
    /// raises REPORTED_TCB but not this). Default all zero.
    pub min_launch_tcb: TcbMinimum,
    /// Require ciphertext hiding for DRAM: the guest policy's CIPHERTEXT_HIDING_DRAM bit (24, the
    /// firmware refuses to launch the guest without it) and PLATFORM_INFO's
    /// CIPHERTEXT_HIDING_DRAM_EN bit (4, it is on now). Default false.
    pub require_ciphertext_hiding: bool,
    /// Require PLATFORM_INFO.SMT_EN = 0: the host runs without SMT (sibling-thread side
    /// channels). Default false.
    pub require_smt_disabled: bool,
    /// Require PLATFORM_INFO.TSME_EN = 1: transparent memory encryption for the host too.
    /// Default false.
    pub require_tsme: bool,
    /// Keys that may sign reports. Default both VCEK and VLEK.
    pub allowed_signing_keys: Vec<SigningKeyKind>,
    /// Required HOST_DATA, if any.
    pub host_data: Option<[u8; 32]>,
    /// Accepted ID_KEY_DIGEST values; empty means not checked.
    pub allowed_id_key_digests: Vec<[u8; 48]>,
    /// Accepted AUTHOR_KEY_DIGEST values; empty means not checked.
    pub allowed_author_key_digests: Vec<[u8; 48]>,
}

impl Policy {
    /// Safe defaults, accepting exactly these measurements.
    pub fn new(allowed_measurements: Vec<[u8; 48]>) -> Self {
        Self::with_rule(MeasurementRule::AllowList(allowed_measurements))
    }

    /// Safe defaults except that any measurement is accepted. For inspection (the `bastion
    /// attest verify` command without a policy file) and development only: a verifier built
    /// with this accepts any guest image, and (`allow_any_tcb`) any TCB.
    pub fn any_measurement_dangerous() -> Self {
        Policy {
            allow_any_tcb: true,
            ..Self::with_rule(MeasurementRule::AnyMeasurementDangerous)
        }
    }

    fn with_rule(measurements: MeasurementRule) -> Self {
        Policy {
            measurements,
            allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            require_single_socket: false,
            max_vmpl: 0,
            min_report_version: 2,
            min_guest_svn: 0,
            min_tcb: TcbMinimum::default(),
            allow_any_tcb: false,
            min_launch_tcb: TcbMinimum::default(),
            require_ciphertext_hiding: false,
            require_smt_disabled: false,
            require_tsme: false,
            allowed_signing_keys: vec![SigningKeyKind::Vcek, SigningKeyKind::Vlek],
            host_data: None,
            allowed_id_key_digests: Vec::new(),
            allowed_author_key_digests: Vec::new(),
        }
    }

    /// Parses and validates a policy file.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        toml::from_str::<PolicyFile>(text)?.validate()
    }

    /// Whether this policy may be used with `trust`: AMD's roots need a minimum TCB.
    pub fn check_for(&self, trust: &TrustAnchors) -> Result<(), PolicyError> {
        if !trust.is_simulated() && self.min_tcb.is_unset() && !self.allow_any_tcb {
            return Err(PolicyError::NoMinimumTcb);
        }
        Ok(())
    }
}

/// A policy file as written. Field meanings and defaults are those of [`Policy`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Hex launch measurements (48 bytes each).
    #[serde(default)]
    pub allowed_measurements: Vec<String>,
    /// Accept any measurement. Must be spelled out; conflicts with a non-empty list.
    #[serde(default)]
    pub allow_any_measurement: bool,
    /// See [`Policy::allow_debug`].
    #[serde(default)]
    pub allow_debug: bool,
    /// See [`Policy::allow_migration_agent`].
    #[serde(default)]
    pub allow_migration_agent: bool,
    /// See [`Policy::allow_smt`].
    #[serde(default = "yes")]
    pub allow_smt: bool,
    /// See [`Policy::require_single_socket`].
    #[serde(default)]
    pub require_single_socket: bool,
    /// See [`Policy::max_vmpl`].
    #[serde(default)]
    pub max_vmpl: u32,
    /// See [`Policy::min_report_version`].
    #[serde(default = "two")]
    pub min_report_version: u32,
    /// See [`Policy::min_guest_svn`].
    #[serde(default)]
    pub min_guest_svn: u32,
    /// See [`Policy::min_tcb`].
    #[serde(default)]
    pub min_tcb: TcbMinimum,
    /// See [`Policy::allow_any_tcb`].
    #[serde(default)]
    pub allow_any_tcb: bool,
    /// See [`Policy::min_launch_tcb`].
    #[serde(default)]
    pub min_launch_tcb: TcbMinimum,
    /// See [`Policy::require_ciphertext_hiding`].
    #[serde(default)]
    pub require_ciphertext_hiding: bool,
    /// See [`Policy::require_smt_disabled`].
    #[serde(default)]
    pub require_smt_disabled: bool,
    /// See [`Policy::require_tsme`].
    #[serde(default)]
    pub require_tsme: bool,
    /// See [`Policy::allowed_signing_keys`].
    #[serde(default = "both_keys")]
    pub allowed_signing_keys: Vec<SigningKeyKind>,
    /// Hex HOST_DATA (32 bytes).
    #[serde(default)]
    pub host_data: Option<String>,
    /// Hex ID key digests (48 bytes each).
    #[serde(default)]
    pub allowed_id_key_digests: Vec<String>,
    /// Hex author key digests (48 bytes each).
    #[serde(default)]
    pub allowed_author_key_digests: Vec<String>,
}

fn yes() -> bool {
    true
}
fn two() -> u32 {
    2
}
fn both_keys() -> Vec<SigningKeyKind> {
    vec![SigningKeyKind::Vcek, SigningKeyKind::Vlek]
}

impl PolicyFile {
    /// Checks the file and decodes its hex fields.
    pub fn validate(self) -> Result<Policy, PolicyError> {
        let measurements = match (
            self.allow_any_measurement,
            self.allowed_measurements.is_empty(),
        ) {
            (true, false) => return Err(PolicyError::ConflictingMeasurementRules),
            (false, true) => return Err(PolicyError::NoMeasurements),
            (true, true) => MeasurementRule::AnyMeasurementDangerous,
            (false, false) => MeasurementRule::AllowList(hex_list(
                "allowed_measurements",
                &self.allowed_measurements,
            )?),
        };
        if self.allowed_signing_keys.is_empty() {
            return Err(PolicyError::NoSigningKeys);
        }
        Ok(Policy {
            measurements,
            allow_debug: self.allow_debug,
            allow_migration_agent: self.allow_migration_agent,
            allow_smt: self.allow_smt,
            require_single_socket: self.require_single_socket,
            max_vmpl: self.max_vmpl,
            min_report_version: self.min_report_version,
            min_guest_svn: self.min_guest_svn,
            min_tcb: self.min_tcb,
            allow_any_tcb: self.allow_any_tcb,
            min_launch_tcb: self.min_launch_tcb,
            require_ciphertext_hiding: self.require_ciphertext_hiding,
            require_smt_disabled: self.require_smt_disabled,
            require_tsme: self.require_tsme,
            allowed_signing_keys: self.allowed_signing_keys,
            host_data: self
                .host_data
                .as_deref()
                .map(|h| hex_array("host_data", h))
                .transpose()?,
            allowed_id_key_digests: hex_list(
                "allowed_id_key_digests",
                &self.allowed_id_key_digests,
            )?,
            allowed_author_key_digests: hex_list(
                "allowed_author_key_digests",
                &self.allowed_author_key_digests,
            )?,
        })
    }
}

fn hex_list<const N: usize>(field: &str, items: &[String]) -> Result<Vec<[u8; N]>, PolicyError> {
    items
        .iter()
        .enumerate()
        .map(|(i, h)| hex_array(&format!("{field}[{i}]"), h))
        .collect()
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], PolicyError> {
    let bytes = hex::decode(text.trim()).map_err(|e| PolicyError::Field {
        field: field.to_string(),
        reason: format!("not hex: {e}"),
    })?;
    let found = bytes.len();
    bytes.try_into().map_err(|_| PolicyError::Field {
        field: field.to_string(),
        reason: format!(
            "expected {N} bytes ({} hex digits), found {found} bytes",
            2 * N
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

    #[test]
    fn defaults_are_safe() {
        let p = Policy::from_toml(&format!("allowed_measurements = [\"{M}\"]")).unwrap();
        assert!(!p.allow_debug && !p.allow_migration_agent);
        assert_eq!(p.max_vmpl, 0);
        assert_eq!(p.min_report_version, 2);
        assert!(matches!(p.measurements, MeasurementRule::AllowList(ref l) if l.len() == 1));
    }

    #[test]
    fn measurements_required_unless_explicitly_any() {
        assert!(matches!(
            Policy::from_toml(""),
            Err(PolicyError::NoMeasurements)
        ));
        let p = Policy::from_toml("allow_any_measurement = true").unwrap();
        assert_eq!(p.measurements, MeasurementRule::AnyMeasurementDangerous);
        let both = format!("allow_any_measurement = true\nallowed_measurements = [\"{M}\"]");
        assert!(matches!(
            Policy::from_toml(&both),
            Err(PolicyError::ConflictingMeasurementRules)
        ));
    }

    #[test]
    fn unknown_fields_and_bad_hex_are_refused() {
        assert!(matches!(
            Policy::from_toml("allow_any_measurement = true\nallow_debugg = true"),
            Err(PolicyError::Toml(_))
        ));
        let short = "allowed_measurements = [\"abcd\"]";
        let err = Policy::from_toml(short).unwrap_err();
        assert!(err.to_string().contains("allowed_measurements[0]"), "{err}");
        assert!(matches!(
            Policy::from_toml("allow_any_measurement = true\nallowed_signing_keys = []"),
            Err(PolicyError::NoSigningKeys)
        ));
        assert!(matches!(
            Policy::from_toml("allow_any_measurement = true\n[min_tcb]\nsnpp = 1"),
            Err(PolicyError::Toml(_))
        ));
    }

    #[test]
    fn new_knobs_default_off_and_parse() {
        let p = Policy::from_toml("allow_any_measurement = true").unwrap();
        assert!(!p.require_ciphertext_hiding && !p.require_smt_disabled && !p.require_tsme);
        assert!(!p.allow_any_tcb && p.min_tcb.is_unset() && p.min_launch_tcb.is_unset());
        let p = Policy::from_toml(
            "allow_any_measurement = true\nrequire_ciphertext_hiding = true\nrequire_smt_disabled = true\nrequire_tsme = true\n[min_launch_tcb]\nsnp = 8",
        )
        .unwrap();
        assert!(p.require_ciphertext_hiding && p.require_smt_disabled && p.require_tsme);
        assert_eq!(p.min_launch_tcb.snp, 8);
        // An FMC minimum alone says nothing about Milan or Genoa firmware.
        let fmc_only = TcbMinimum {
            fmc: 1,
            ..TcbMinimum::default()
        };
        assert!(fmc_only.is_unset());
    }
}
