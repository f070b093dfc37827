//! Checking a receipt offline, in this order; the first failure is the answer, naming the
//! part at fault ([`ReceiptError::field`]):
//!
//! 1. **Shape** (`format`, ...): the file is a receipt of [`FORMAT`], every member present and
//!    none unknown, hex where hex belongs.
//! 2. **Evidence** (`evidence.report`, `evidence.vcek`): the report and its certificate verify
//!    against the trust anchors and the policy (chain, signature, debug and migration policy,
//!    TCB, measurement allow-list...), exactly as a peer's on the attested link.
//! 3. **Key** (`key`): a P-256 SubjectPublicKeyInfo whose binding
//!    ([`key_report_data`]) is the report's REPORT_DATA.
//! 4. **Signature** (`signature`): over [`canonical::signed_message`] of `signed_fields`.
//! 5. **Fields** (`body.<path>`): each body field hashes to its signed digest; none removed,
//!    none added.
//! 6. **Content** (`body.<path>`): what the signed body says must hold together. The
//!    coordinator's own node record carries the report's MEASUREMENT and CHIP_ID; every node's
//!    measurement is in the policy's allow-list; no simulated node beside hardware evidence;
//!    the job added noise; each dataset's charged history sums to its steps, covers every
//!    update applied to the model when its node stayed to the end, and gives, through the
//!    recorded accountant at the recorded delta, an epsilon no greater than the recorded one
//!    (within [`EPSILON_TOLERANCE`]): the recorded figure may overstate, never understate.
//! 7. **Model** (`body.model.files[i]`, `model`): the directory holds exactly the listed files
//!    with the listed sizes and digests, and `body.model.sha256` is their listing's digest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use bastion_accountant::AccountantKind;
use bastion_attestation::error::{Input, MalformedError};
use bastion_attestation::{MeasurementRule, Verdict, Verifier, VerifyError};
use serde::Deserialize;
use serde_json::Value;

use crate::body::Body;
use crate::error::ReceiptError;
use crate::issue::EvidenceRecord;
use crate::key::{self, key_report_data};
use crate::{canonical, model, FORMAT};

/// How far a recomputed epsilon may exceed the recorded one, relative: room for floating
/// point differences between builds, far below anything that matters for privacy.
pub const EPSILON_TOLERANCE: f64 = 1e-6;

/// An accepted receipt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified {
    /// The signed body.
    pub body: Body,
    /// The coordinator's attestation, as verified.
    pub verdict: Verdict,
    /// Per dataset (in body order), the epsilon recomputed from its recorded history.
    pub recomputed_epsilon: Vec<f64>,
}

/// `receipt.json` as read: the body kept as JSON so its fields hash as they are in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceipt {
    format: String,
    body: Value,
    signed_fields: BTreeMap<String, String>,
    signature: String,
    key: String,
    evidence: EvidenceRecord,
}

/// Checks `receipt` (the bytes of `receipt.json`) and the release directory `model_dir`:
/// everything in the module's list. `at` is the time the certificates must be valid at.
pub fn verify(
    receipt: &[u8],
    verifier: &Verifier,
    at: SystemTime,
    model_dir: &Path,
) -> Result<Verified, ReceiptError> {
    let verified = verify_signed(receipt, verifier, at)?;
    check_model(&verified.body, model_dir)?;
    Ok(verified)
}

/// Steps 1 to 6: everything but the model directory.
pub fn verify_signed(
    receipt: &[u8],
    verifier: &Verifier,
    at: SystemTime,
) -> Result<Verified, ReceiptError> {
    let raw: RawReceipt = serde_json::from_slice(receipt)
        .map_err(|e| ReceiptError::malformed("receipt", format!("not a receipt: {e}")))?;
    if raw.format != FORMAT {
        return Err(ReceiptError::malformed(
            "format",
            format!("{:?}, expected {FORMAT:?}", raw.format),
        ));
    }
    let report = unhex("evidence.report", &raw.evidence.report)?;
    let vcek = unhex("evidence.vcek", &raw.evidence.vcek)?;
    let spki = hex::decode(&raw.key).map_err(|e| ReceiptError::Key {
        reason: format!("not hex: {e}"),
    })?;
    let signature = unhex("signature", &raw.signature)?;

    // 2. The evidence, without an expected REPORT_DATA: a wrong binding is the key's fault.
    let verdict = verifier
        .verify(&report, &vcek, None, at)
        .map_err(evidence_error)?;
    // 3. The key it binds.
    key::point(&spki)?;
    let expected = key_report_data(&spki);
    if verdict.report_data != expected {
        return Err(ReceiptError::KeyNotBound {
            expected: hex::encode(expected),
            found: hex::encode(verdict.report_data),
        });
    }
    // 4. The signature over the table.
    canonical::check_table(&raw.signed_fields)?;
    key::verify(
        &spki,
        &canonical::signed_message(&raw.signed_fields),
        &signature,
    )?;
    // 5. Each field against its signed digest.
    let found = canonical::field_digests(&raw.body)?;
    canonical::compare(&raw.signed_fields, &found)?;
    let body: Body = serde_json::from_value(raw.body)
        .map_err(|e| ReceiptError::malformed("body", e.to_string()))?;
    // 6. What it says.
    check_nodes(&body, &verdict, verifier)?;
    let recomputed_epsilon = check_privacy(&body)?;
    check_listing(&body)?;
    Ok(Verified {
        body,
        verdict,
        recomputed_epsilon,
    })
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, ReceiptError> {
    hex::decode(text).map_err(|e| match field {
        "signature" => ReceiptError::Signature {
            reason: format!("not hex: {e}"),
        },
        _ => ReceiptError::malformed(field, format!("not hex: {e}")),
    })
}

/// Which part of the evidence a refusal is about: the certificate for chain, certificate
/// and pairing failures (a VCEK for another chip or TCB), the report otherwise.
fn evidence_error(e: VerifyError) -> ReceiptError {
    let field = match &e {
        VerifyError::Chain(_)
        | VerifyError::Evidence(bastion_attestation::EvidenceError::ChipId { .. })
        | VerifyError::Evidence(bastion_attestation::EvidenceError::Tcb { .. })
        | VerifyError::Evidence(bastion_attestation::EvidenceError::SigningKeyKind { .. })
        | VerifyError::Evidence(bastion_attestation::EvidenceError::Generation { .. }) => {
            "evidence.vcek"
        }
        VerifyError::Malformed(m) => match m {
            MalformedError::Empty { input, .. } if *input != Input::Report => "evidence.vcek",
            MalformedError::Certificate { .. }
            | MalformedError::SigningKeyType { .. }
            | MalformedError::UnknownSigningCertificate
            | MalformedError::MissingExtension { .. }
            | MalformedError::BadExtension { .. } => "evidence.vcek",
            _ => "evidence.report",
        },
        VerifyError::Configuration(_) => "policy",
        _ => "evidence.report",
    };
    ReceiptError::Evidence {
        field,
        code: e.code(),
        source: Box::new(e),
    }
}

fn check_nodes(body: &Body, verdict: &Verdict, verifier: &Verifier) -> Result<(), ReceiptError> {
    if body.job.simulated_tee != verdict.simulated {
        return Err(ReceiptError::inconsistent(
            "body.job.simulated_tee",
            format!(
                "says {}, but the coordinator's evidence verified against {} roots",
                body.job.simulated_tee,
                if verdict.simulated {
                    "simulated"
                } else {
                    "AMD's"
                }
            ),
        ));
    }
    let allowed = match &verifier.policy().measurements {
        MeasurementRule::AllowList(list) => Some(list),
        MeasurementRule::AnyMeasurementDangerous => None,
    };
    let mut coordinator = None;
    for (i, n) in body.nodes.iter().enumerate() {
        let measurement = unhex(&format!("body.nodes[{i}].measurement"), &n.measurement)?;
        if measurement.len() != 48 {
            return Err(ReceiptError::inconsistent(
                format!("body.nodes[{i}].measurement"),
                format!("{} bytes, a MEASUREMENT is 48", measurement.len()),
            ));
        }
        if let Some(list) = allowed {
            if !list.iter().any(|m| m[..] == measurement[..]) {
                return Err(ReceiptError::inconsistent(
                    format!("body.nodes[{i}].measurement"),
                    format!(
                        "node {} ran {}, which the policy's allowed_measurements does not list",
                        n.name, n.measurement
                    ),
                ));
            }
        }
        if n.simulated && !verdict.simulated {
            return Err(ReceiptError::inconsistent(
                format!("body.nodes[{i}].simulated"),
                format!(
                    "node {} ran on the simulated TEE beside hardware evidence",
                    n.name
                ),
            ));
        }
        if n.name == body.job.coordinator && coordinator.is_none() {
            coordinator = Some(i);
        }
    }
    let Some(i) = coordinator else {
        return Err(ReceiptError::inconsistent(
            "body.job.coordinator",
            format!("no node record named {:?}", body.job.coordinator),
        ));
    };
    // The coordinator may have several records (a restart makes a new TLS key); the one that
    // matches its report counts, the first one is named when none does.
    let records = body
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.name == body.job.coordinator);
    let measurement = hex::encode(verdict.measurement);
    let chip_id = hex::encode(verdict.chip_id);
    if !records.clone().any(|(_, n)| n.measurement == measurement) {
        return Err(ReceiptError::inconsistent(
            format!("body.nodes[{i}].measurement"),
            format!(
                "the coordinator's record says {}, its report says {measurement}",
                body.nodes[i].measurement
            ),
        ));
    }
    if !records
        .clone()
        .any(|(_, n)| n.measurement == measurement && n.chip_id == chip_id)
    {
        return Err(ReceiptError::inconsistent(
            format!("body.nodes[{i}].chip_id"),
            format!(
                "the coordinator's record says {}, its report says {chip_id}",
                body.nodes[i].chip_id
            ),
        ));
    }
    Ok(())
}

/// The privacy figures, each against the others; returns the recomputed epsilons.
fn check_privacy(body: &Body) -> Result<Vec<f64>, ReceiptError> {
    let p = &body.privacy;
    if p.deterministic_for_tests {
        return Err(ReceiptError::inconsistent(
            "body.privacy.deterministic_for_tests",
            "the job ran with the test-only switch that adds no noise: its model has no privacy guarantee",
        ));
    }
    let kind: AccountantKind = p
        .accountant
        .parse()
        .map_err(|source| ReceiptError::Accountant {
            field: "body.privacy.accountant".into(),
            source,
        })?;
    let mut out = Vec::with_capacity(body.datasets.len());
    for (i, d) in body.datasets.iter().enumerate() {
        let at = |f: &str| format!("body.datasets[{i}].{f}");
        let charged: u64 = d.history.iter().map(|s| s.steps).sum();
        if charged != d.steps {
            return Err(ReceiptError::inconsistent(
                at("steps"),
                format!("{} steps, but its history charges {charged}", d.steps),
            ));
        }
        let holder = body
            .nodes
            .iter()
            .filter(|n| n.name == d.node && n.datasets.contains(&d.name))
            .collect::<Vec<_>>();
        if holder.is_empty() {
            return Err(ReceiptError::inconsistent(
                at("node"),
                format!(
                    "no node record named {:?} holds dataset {:?}",
                    d.node, d.name
                ),
            ));
        }
        if holder.iter().any(|n| n.in_final_group) {
            let this_job: u64 = d
                .history
                .iter()
                .filter(|s| s.q == p.q && s.sigma == p.sigma)
                .map(|s| s.steps)
                .sum();
            if this_job < p.steps {
                return Err(ReceiptError::inconsistent(
                    at("history"),
                    format!(
                        "charges {this_job} steps at q = {}, sigma = {}, fewer than the {} updates applied to the model while its node took part",
                        p.q, p.sigma, p.steps
                    ),
                ));
            }
        }
        let mut acct = bastion_accountant::create(kind);
        for (j, s) in d.history.iter().enumerate() {
            acct.compose(s.q, s.sigma, s.steps)
                .map_err(|source| ReceiptError::Accountant {
                    field: at(&format!("history[{j}]")),
                    source,
                })?;
        }
        let recomputed = if d.history.is_empty() {
            0.0
        } else {
            acct.epsilon(d.delta)
                .map_err(|source| ReceiptError::Accountant {
                    field: at("delta"),
                    source,
                })?
        };
        let bound = d.epsilon * (1.0 + EPSILON_TOLERANCE) + f64::MIN_POSITIVE;
        // NaN from either side is refused as well.
        if recomputed.partial_cmp(&bound).is_none_or(|o| o.is_gt()) {
            return Err(ReceiptError::EpsilonUnderstated {
                field: at("epsilon"),
                recorded: d.epsilon,
                recomputed,
                accountant: kind.name().to_string(),
                delta: d.delta,
            });
        }
        out.push(recomputed);
    }
    Ok(out)
}

/// `body.model.sha256` is the digest of `body.model.files`, which are in path order.
fn check_listing(body: &Body) -> Result<(), ReceiptError> {
    let files = &body.model.files;
    if let Some(i) =
        (1..files.len()).find(|&i| files[i - 1].path.as_bytes() >= files[i].path.as_bytes())
    {
        return Err(ReceiptError::inconsistent(
            format!("body.model.files[{i}].path"),
            "files are not in strictly increasing byte order of their paths",
        ));
    }
    let listed = model::listing_sha256(files);
    if listed != body.model.sha256 {
        return Err(ReceiptError::inconsistent(
            "body.model.sha256",
            format!(
                "{}, but the listed files hash to {listed}",
                body.model.sha256
            ),
        ));
    }
    Ok(())
}

/// Step 7: the directory holds exactly the files the receipt lists.
pub fn check_model(body: &Body, dir: &Path) -> Result<(), ReceiptError> {
    let found = model::hash_dir(dir)?;
    let on_disk: BTreeMap<&str, &crate::body::ModelFile> =
        found.files.iter().map(|f| (f.path.as_str(), f)).collect();
    for (i, f) in body.model.files.iter().enumerate() {
        let Some(d) = on_disk.get(f.path.as_str()) else {
            return Err(ReceiptError::Model {
                field: format!("body.model.files[{i}]"),
                reason: format!("{} is not in {}", f.path, dir.display()),
            });
        };
        if d.bytes != f.bytes {
            return Err(ReceiptError::Model {
                field: format!("body.model.files[{i}].bytes"),
                reason: format!(
                    "{} in {} has {} bytes, the receipt says {}",
                    f.path,
                    dir.display(),
                    d.bytes,
                    f.bytes
                ),
            });
        }
        if d.sha256 != f.sha256 {
            return Err(ReceiptError::Model {
                field: format!("body.model.files[{i}].sha256"),
                reason: format!(
                    "{} in {} has SHA-256 {}, the receipt says {}",
                    f.path,
                    dir.display(),
                    d.sha256,
                    f.sha256
                ),
            });
        }
    }
    if let Some(extra) = found
        .files
        .iter()
        .find(|d| !body.model.files.iter().any(|f| f.path == d.path))
    {
        return Err(ReceiptError::Model {
            field: "model".into(),
            reason: format!(
                "{} holds {}, which the receipt does not list",
                dir.display(),
                extra.path
            ),
        });
    }
    if found.sha256 != body.model.sha256 {
        return Err(ReceiptError::Model {
            field: "body.model.sha256".into(),
            reason: format!("{} hashes to {}", dir.display(), found.sha256),
        });
    }
    Ok(())
}
