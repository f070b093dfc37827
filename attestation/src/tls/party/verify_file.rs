//! A party's `verify.toml`: what it requires of the node before it sends a byte.
//!
//! The file is a verification policy, exactly as `bastion attest verify --policy` reads it
//! ([`crate::policy`]), plus an optional `[trust]` table saying what reports must chain to:
//!
//! ```toml
//! allowed_measurements = ["7a1e5c26...841f"]   # the node images this party accepts
//! [min_tcb]                                    # required with AMD's roots
//! bootloader = 3
//! tee = 0
//! snp = 8
//! microcode = 115
//!
//! # Absent: AMD's pinned roots (Milan, Genoa, Turin). For the simulated TEE of development,
//! # every word must be spelled out:
//! [trust]
//! simulated = true                             # DANGER: no hardware protection at all
//! simulated_platform_dir = "cluster/platform"  # holds ark.der and ask.der (`bastion cluster up`)
//! # or, instead of the directory, the two certificates (DER or PEM):
//! # simulated_ark = "ark.der"
//! # simulated_ask = "ask.der"
//! ```
//!
//! Relative paths are relative to the file. Naming simulated certificates without
//! `simulated = true`, or `simulated = true` without them, is refused: trusting a simulated
//! chain is never a default or a side effect.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::PartyFileError;
use crate::{Policy, PolicyFile, TrustAnchors, Verifier};

/// The simulated ARK certificate's name in a platform directory (`SimulatedPlatform::save`).
const ARK_FILE: &str = "ark.der";
/// The simulated ASK certificate's name in a platform directory.
const ASK_FILE: &str = "ask.der";

/// A validated `verify.toml`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyFile {
    /// What the node's report must say.
    pub policy: Policy,
    /// What it must chain to.
    pub trust: TrustSource,
}

/// What a node's report must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustSource {
    /// AMD's pinned roots.
    Amd,
    /// A simulated ARK and ASK: development only; every verdict says `simulated: true`.
    Simulated {
        /// The ARK certificate file.
        ark: PathBuf,
        /// The ASK certificate file.
        ask: PathBuf,
    },
}

/// The `[trust]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustTable {
    #[serde(default)]
    simulated: bool,
    #[serde(default)]
    simulated_platform_dir: Option<PathBuf>,
    #[serde(default)]
    simulated_ark: Option<PathBuf>,
    #[serde(default)]
    simulated_ask: Option<PathBuf>,
}

impl VerifyFile {
    /// Reads and validates a `verify.toml`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PartyFileError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| PartyFileError::io("read", path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base, path)
    }

    /// Parses `text`; relative paths are taken from `base`; errors name `path`.
    pub fn from_toml(text: &str, base: &Path, path: &Path) -> Result<Self, PartyFileError> {
        let policy_error = |source: crate::PolicyError| PartyFileError::Policy {
            path: path.to_path_buf(),
            source,
        };
        let trust_error = |reason: String| PartyFileError::Trust {
            path: path.to_path_buf(),
            reason,
        };
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| policy_error(crate::PolicyError::from(e)))?;
        // The policy keys go to the policy's own parser, which refuses unknown ones.
        let trust = match table.remove("trust") {
            None => TrustTable::default(),
            Some(value) => value
                .try_into::<TrustTable>()
                .map_err(|e| trust_error(e.to_string()))?,
        };
        let policy = toml::Value::Table(table)
            .try_into::<PolicyFile>()
            .map_err(|e| policy_error(crate::PolicyError::from(e)))?
            .validate()
            .map_err(policy_error)?;
        let named = trust.simulated_platform_dir.is_some()
            || trust.simulated_ark.is_some()
            || trust.simulated_ask.is_some();
        let trust = match (trust.simulated, named) {
            (false, false) => TrustSource::Amd,
            (false, true) => {
                return Err(trust_error(
                    "simulated certificates are named but `simulated = true` is not set; trusting a simulated TEE must be spelled out".into(),
                ))
            }
            (true, false) => {
                return Err(trust_error(
                    "`simulated = true` needs `simulated_platform_dir`, or `simulated_ark` and `simulated_ask`".into(),
                ))
            }
            (true, true) => {
                let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
                match (trust.simulated_platform_dir, trust.simulated_ark, trust.simulated_ask) {
                    (Some(dir), None, None) => {
                        let dir = at(dir);
                        TrustSource::Simulated {
                            ark: dir.join(ARK_FILE),
                            ask: dir.join(ASK_FILE),
                        }
                    }
                    (None, Some(ark), Some(ask)) => TrustSource::Simulated {
                        ark: at(ark),
                        ask: at(ask),
                    },
                    (Some(_), _, _) => {
                        return Err(trust_error(
                            "give either `simulated_platform_dir` or `simulated_ark` and `simulated_ask`, not both".into(),
                        ))
                    }
                    (None, _, _) => {
                        return Err(trust_error(
                            "`simulated_ark` and `simulated_ask` go together".into(),
                        ))
                    }
                }
            }
        };
        Ok(Self { policy, trust })
    }

    /// Reads the trust anchors and builds the verifier. With AMD's roots the policy must set
    /// a minimum TCB ([`crate::PolicyError::NoMinimumTcb`]).
    pub fn verifier(&self, path: &Path) -> Result<Verifier, PartyFileError> {
        let anchors = match &self.trust {
            TrustSource::Amd => TrustAnchors::amd(),
            TrustSource::Simulated { ark, ask } => {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|e| PartyFileError::io("read", p.as_path(), e))
                };
                TrustAnchors::simulated(&read(ark)?, &read(ask)?).map_err(|source| {
                    PartyFileError::Anchors {
                        path: path.to_path_buf(),
                        source,
                    }
                })?
            }
        };
        Verifier::try_new(self.policy.clone(), anchors).map_err(|source| PartyFileError::Policy {
            path: path.to_path_buf(),
            source,
        })
    }

    /// [`VerifyFile::load`] then [`VerifyFile::verifier`].
    pub fn load_verifier(path: impl AsRef<Path>) -> Result<Verifier, PartyFileError> {
        let path = path.as_ref();
        Self::load(path)?.verifier(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

    fn parse(text: &str) -> Result<VerifyFile, PartyFileError> {
        VerifyFile::from_toml(text, Path::new("/etc/party"), Path::new("verify.toml"))
    }

    #[test]
    fn amd_roots_by_default_and_they_need_a_minimum_tcb() {
        let file = parse(&format!("allowed_measurements = [\"{M}\"]")).unwrap();
        assert_eq!(file.trust, TrustSource::Amd);
        assert!(matches!(
            file.verifier(Path::new("verify.toml")),
            Err(PartyFileError::Policy {
                source: crate::PolicyError::NoMinimumTcb,
                ..
            })
        ));
        let file = parse(&format!(
            "allowed_measurements = [\"{M}\"]\n[min_tcb]\nbootloader = 3\nsnp = 8\nmicrocode = 115"
        ))
        .unwrap();
        assert!(!file
            .verifier(Path::new("verify.toml"))
            .unwrap()
            .trust()
            .is_simulated());
    }

    #[test]
    fn simulated_trust_must_be_spelled_out() {
        let dir =
            format!("allowed_measurements = [\"{M}\"]\n[trust]\nsimulated_platform_dir = \"p\"");
        let err = parse(&dir).unwrap_err();
        assert!(
            err.to_string().contains("`simulated = true` is not set"),
            "{err}"
        );
        let bare = format!("allowed_measurements = [\"{M}\"]\n[trust]\nsimulated = true");
        assert!(matches!(parse(&bare), Err(PartyFileError::Trust { .. })));
        let ok = format!(
            "allowed_measurements = [\"{M}\"]\n[trust]\nsimulated = true\nsimulated_platform_dir = \"p\""
        );
        assert_eq!(
            parse(&ok).unwrap().trust,
            TrustSource::Simulated {
                ark: PathBuf::from("/etc/party/p/ark.der"),
                ask: PathBuf::from("/etc/party/p/ask.der"),
            }
        );
        let pair = format!(
            "allowed_measurements = [\"{M}\"]\n[trust]\nsimulated = true\nsimulated_ark = \"/a.der\"\nsimulated_ask = \"b.der\""
        );
        assert_eq!(
            parse(&pair).unwrap().trust,
            TrustSource::Simulated {
                ark: PathBuf::from("/a.der"),
                ask: PathBuf::from("/etc/party/b.der"),
            }
        );
        let half = format!(
            "allowed_measurements = [\"{M}\"]\n[trust]\nsimulated = true\nsimulated_ark = \"a.der\""
        );
        assert!(parse(&half)
            .unwrap_err()
            .to_string()
            .contains("go together"));
    }

    #[test]
    fn unknown_keys_are_refused_in_both_parts() {
        let policy = format!("allowed_measurements = [\"{M}\"]\nallow_debugg = true");
        assert!(matches!(parse(&policy), Err(PartyFileError::Policy { .. })));
        let trust = format!("allowed_measurements = [\"{M}\"]\n[trust]\nsimulatd = true");
        assert!(matches!(parse(&trust), Err(PartyFileError::Trust { .. })));
        // The policy's own checks still apply.
        assert!(matches!(
            parse(""),
            Err(PartyFileError::Policy {
                source: crate::PolicyError::NoMeasurements,
                ..
            })
        ));
    }
}
