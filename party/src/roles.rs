//! Who the parties are and what each may ask: the `[[parties]]` of a node's `node.toml`.
//!
//! ```toml
//! [[parties]]
//! name = "hospital-a"
//! key = "3b0c...e1"                  # SHA-256 of its SubjectPublicKeyInfo, 64 hex digits
//! role = "data-owner"
//! datasets = ["hospital-a"]          # the datasets it owns (data owners only, at least one)
//! allow_model_owners = ["9f4e...07"] # model owners that may train on them (data owners only)
//!
//! [[parties]]
//! name = "lab"
//! key = "9f4e...07"
//! role = "model-owner"
//!
//! [[parties]]
//! name = "ops"
//! key = "c2aa...5d"
//! role = "operator"
//! ```
//!
//! Read in two steps, as every config here: [`PartyEntry`] is the table as written (unknown
//! fields refused), [`Roles`] the validated form the server consults. A party that is not
//! listed is refused at the TLS layer and never reaches a request.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::RolesError;

/// Longest dataset or party name.
const MAX_NAME: usize = 64;

/// What a party is to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartyRole {
    /// Owns datasets: pushes, deletes, reads their spent budget, says who may train on them.
    DataOwner,
    /// Submits jobs on datasets whose owners allowed it, fetches its job's release.
    ModelOwner,
    /// Runs the machines: sees the job's status only.
    Operator,
}

impl std::fmt::Display for PartyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartyRole::DataOwner => "data owner",
            PartyRole::ModelOwner => "model owner",
            PartyRole::Operator => "operator",
        })
    }
}

/// One `[[parties]]` table as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyEntry {
    /// A name for logs and refusals.
    pub name: String,
    /// SHA-256 of the party's SubjectPublicKeyInfo, 64 hex digits (`bastion party keygen`
    /// prints it).
    pub key: String,
    /// What it is to this node.
    pub role: PartyRole,
    /// Data owners: the datasets it owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    /// Data owners: keys of the model owners that may train on its datasets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_model_owners: Vec<String>,
}

/// A validated party: key in lowercase hex, lists checked against the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Its name.
    pub name: String,
    /// SHA-256 of its SubjectPublicKeyInfo, lowercase hex.
    pub key: String,
    /// Its role.
    pub role: PartyRole,
    /// The datasets it owns (data owners).
    pub datasets: Vec<String>,
    /// The model owners (keys) that may train on its datasets (data owners).
    pub allow_model_owners: Vec<String>,
}

/// All parties of a node, validated, with lookups by key and by dataset.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    parties: Vec<Party>,
    by_key: HashMap<String, usize>,
    owner_of: HashMap<String, usize>,
}

/// A document holding only `[[parties]]`, for [`Roles::from_toml`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartiesDoc {
    #[serde(default)]
    parties: Vec<PartyEntry>,
}

impl Roles {
    /// Validates the entries: names and keys unique, keys 64 hex digits, data owners (and
    /// only they) own datasets, each dataset has one owner, and every allowed model owner is
    /// listed as a model owner.
    pub fn new(entries: Vec<PartyEntry>) -> Result<Self, RolesError> {
        let mut parties = Vec::with_capacity(entries.len());
        let mut by_key = HashMap::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut owner_of = HashMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            check_name(&entry.name).map_err(|reason| RolesError::BadName {
                name: entry.name.clone(),
                reason,
            })?;
            if by_name.contains_key(&entry.name) {
                return Err(RolesError::DuplicateName { name: entry.name });
            }
            let key = parse_key(&entry.key).map_err(|reason| RolesError::BadKey {
                party: entry.name.clone(),
                key: entry.key.clone(),
                reason,
            })?;
            if let Some(&first) = by_key.get(&key) {
                let first: &Party = &parties[first];
                return Err(RolesError::DuplicateKey {
                    key,
                    first: first.name.clone(),
                    second: entry.name,
                });
            }
            let owner = entry.role == PartyRole::DataOwner;
            if owner && entry.datasets.is_empty() {
                return Err(RolesError::DataOwnerWithoutDatasets { party: entry.name });
            }
            if !owner && !entry.datasets.is_empty() {
                return Err(RolesError::OnlyDataOwners {
                    party: entry.name,
                    role: entry.role,
                    field: "datasets",
                });
            }
            if !owner && !entry.allow_model_owners.is_empty() {
                return Err(RolesError::OnlyDataOwners {
                    party: entry.name,
                    role: entry.role,
                    field: "allow_model_owners",
                });
            }
            for dataset in &entry.datasets {
                check_name(dataset).map_err(|reason| RolesError::BadDatasetName {
                    party: entry.name.clone(),
                    dataset: dataset.clone(),
                    reason,
                })?;
                if let Some(&first) = owner_of.get(dataset) {
                    let first = match parties.get(first).map(|p: &Party| &p.name) {
                        Some(name) => name.clone(),
                        // Listed twice by this very party.
                        None => entry.name.clone(),
                    };
                    return Err(RolesError::DatasetOwnedTwice {
                        dataset: dataset.clone(),
                        first,
                        second: entry.name.clone(),
                    });
                }
                owner_of.insert(dataset.clone(), i);
            }
            let allow = entry
                .allow_model_owners
                .iter()
                .map(|k| {
                    parse_key(k).map_err(|reason| RolesError::BadKey {
                        party: entry.name.clone(),
                        key: k.clone(),
                        reason: format!("in allow_model_owners: {reason}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            by_key.insert(key.clone(), i);
            by_name.insert(entry.name.clone(), i);
            parties.push(Party {
                name: entry.name,
                key,
                role: entry.role,
                datasets: entry.datasets,
                allow_model_owners: allow,
            });
        }
        // Allowed model owners must be listed, as model owners: a typo would otherwise
        // silently allow nobody, or a key listed as something else.
        for party in &parties {
            for key in &party.allow_model_owners {
                match by_key.get(key).map(|&j| &parties[j]) {
                    None => {
                        return Err(RolesError::AllowsUnknownModelOwner {
                            party: party.name.clone(),
                            key: key.clone(),
                        })
                    }
                    Some(other) if other.role != PartyRole::ModelOwner => {
                        return Err(RolesError::AllowsNonModelOwner {
                            party: party.name.clone(),
                            allowed: other.name.clone(),
                            role: other.role,
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(Self {
            parties,
            by_key,
            owner_of,
        })
    }

    /// Parses a TOML document of `[[parties]]` tables (nothing else) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, RolesError> {
        let doc: PartiesDoc = toml::from_str(text).map_err(|e| RolesError::Toml(e.to_string()))?;
        Self::new(doc.parties)
    }

    /// Every party, in the order listed.
    pub fn parties(&self) -> &[Party] {
        &self.parties
    }

    /// The party holding `key` (a fingerprint, any case).
    pub fn party(&self, key: &str) -> Option<&Party> {
        self.by_key
            .get(&key.to_ascii_lowercase())
            .map(|&i| &self.parties[i])
    }

    /// Whether `key` is listed: the server's test at the TLS layer.
    pub fn is_known(&self, key: &str) -> bool {
        self.party(key).is_some()
    }

    /// The role of the party holding `key`.
    pub fn role_of(&self, key: &str) -> Option<PartyRole> {
        self.party(key).map(|p| p.role)
    }

    /// The data owner of `dataset`.
    pub fn owner_of(&self, dataset: &str) -> Option<&Party> {
        self.owner_of.get(dataset).map(|&i| &self.parties[i])
    }

    /// Whether the model owner holding `model_owner_key` may train on `dataset`: it is listed
    /// as a model owner and the dataset's owner allows it.
    pub fn may_train(&self, model_owner_key: &str, dataset: &str) -> bool {
        let key = model_owner_key.to_ascii_lowercase();
        self.role_of(&key) == Some(PartyRole::ModelOwner)
            && self
                .owner_of(dataset)
                .is_some_and(|owner| owner.allow_model_owners.contains(&key))
    }
}

/// A key fingerprint: exactly 64 hex digits, returned in lowercase.
pub fn parse_key(text: &str) -> Result<String, String> {
    if text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits (a SHA-256 fingerprint, as `bastion party keygen` prints), found {} characters",
            text.len()
        ));
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("{c:?} is not a hex digit"));
    }
    Ok(text.to_ascii_lowercase())
}

/// Names of parties and datasets: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with a dot
/// (they end up in logs, refusals and file names).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} characters"));
    }
    if name.starts_with('.') {
        return Err("must not start with a dot".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("{c:?} is not allowed (only A-Z a-z 0-9 . _ -)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const M: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const O: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    fn doc(extra: &str) -> String {
        format!(
            r#"
[[parties]]
name = "hospital-a"
key = "{A}"
role = "data-owner"
datasets = ["hospital-a"]
allow_model_owners = ["{M}"]

[[parties]]
name = "hospital-b"
key = "{B}"
role = "data-owner"
datasets = ["hospital-b", "hospital-b-extra"]

[[parties]]
name = "lab"
key = "{M}"
role = "model-owner"

[[parties]]
name = "ops"
key = "{O}"
role = "operator"
{extra}"#
        )
    }

    #[test]
    fn lookups() {
        let roles = Roles::from_toml(&doc("")).unwrap();
        assert_eq!(roles.role_of(A), Some(PartyRole::DataOwner));
        assert_eq!(
            roles.role_of(&M.to_uppercase()),
            Some(PartyRole::ModelOwner)
        );
        assert_eq!(roles.role_of(O), Some(PartyRole::Operator));
        assert_eq!(roles.role_of(&"e".repeat(64)), None);
        assert_eq!(
            roles.owner_of("hospital-b-extra").unwrap().name,
            "hospital-b"
        );
        assert!(roles.owner_of("nobody").is_none());
        assert!(roles.may_train(M, "hospital-a"));
        assert!(
            !roles.may_train(M, "hospital-b"),
            "hospital-b allowed nobody"
        );
        assert!(
            !roles.may_train(A, "hospital-a"),
            "a data owner is not a model owner"
        );
        assert!(!roles.may_train(M, "nobody"));
    }

    #[test]
    fn each_defect_is_named() {
        let cases: Vec<(String, &str)> = vec![
            (doc("[[parties]]\nname = \"x\"\nkey = \"abc\"\nrole = \"operator\"\n"), "expected 64 hex digits"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"operator\"\n", "g".repeat(64))), "is not a hex digit"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{A}\"\nrole = \"operator\"\n")), "listed twice"),
            (doc(&format!("[[parties]]\nname = \"ops\"\nkey = \"{}\"\nrole = \"operator\"\n", "e".repeat(64))), "two parties are named"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"data-owner\"\n", "e".repeat(64))), "owns no datasets"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"data-owner\"\ndatasets = [\"hospital-a\"]\n", "e".repeat(64))), "owned by both hospital-a and x"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"data-owner\"\ndatasets = [\"d\", \"d\"]\n", "e".repeat(64))), "owned by both x and x"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"operator\"\ndatasets = [\"d\"]\n", "e".repeat(64))), "for data owners only"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"model-owner\"\nallow_model_owners = [\"{M}\"]\n", "e".repeat(64))), "for data owners only"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"data-owner\"\ndatasets = [\"d\"]\nallow_model_owners = [\"{}\"]\n", "e".repeat(64), "f".repeat(64))), "not listed"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"data-owner\"\ndatasets = [\"d\"]\nallow_model_owners = [\"{O}\"]\n", "e".repeat(64))), "is an operator"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"data-owner\"\ndatasets = [\"../d\"]\n", "e".repeat(64))), "dataset \"../d\""),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"admin\"\n", "e".repeat(64))), "unknown variant"),
            (doc(&format!("[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"operator\"\ncolour = 1\n", "e".repeat(64))), "unknown field"),
        ];
        for (text, expected) in cases {
            let err = Roles::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in: {err}");
        }
    }
}
