//! Making a receipt inside the coordinator's TEE.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bastion_attestation::tls::Attester;
use serde::{Deserialize, Serialize};

use crate::body::Body;
use crate::error::ReceiptError;
use crate::key::{key_report_data, ReceiptKey};
use crate::{canonical, FORMAT, RECEIPT_FILE};

/// A signed receipt, as `receipt.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    /// [`FORMAT`].
    pub format: String,
    /// What the coordinator states.
    pub body: Body,
    /// SHA-256 of each body field by path: what the signature covers ([`crate::canonical`]).
    pub signed_fields: BTreeMap<String, String>,
    /// ASN.1 DER ECDSA P-256/SHA-256 signature over [`canonical::signed_message`], hex.
    pub signature: String,
    /// The receipt key, SubjectPublicKeyInfo DER, hex.
    pub key: String,
    /// The attestation report binding the key, and the certificate that signs it.
    pub evidence: EvidenceRecord,
}

/// The evidence for the receipt key. Public material only: the report and the VCEK are what
/// any peer of the coordinator saw, and a simulated TEE's are no different.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    /// The 1184-byte SNP attestation report, hex. Its REPORT_DATA is
    /// [`key_report_data`]`(key)`.
    pub report: String,
    /// The VCEK (or VLEK) certificate that signs the report, DER, hex.
    pub vcek: String,
}

/// Signs `body` with a fresh key that `attester` binds in a report. The key is dropped on
/// return.
pub fn issue(body: &Body, attester: &dyn Attester) -> Result<Receipt, ReceiptError> {
    if let Some((field, value)) = body.floats().into_iter().find(|(_, v)| !v.is_finite()) {
        return Err(ReceiptError::NotFinite { field, value });
    }
    let value =
        serde_json::to_value(body).map_err(|e| ReceiptError::malformed("body", e.to_string()))?;
    let signed_fields = canonical::field_digests(&value)?;
    let key = ReceiptKey::generate()?;
    let (report, vcek) = attester.attest_report_data(&key_report_data(key.spki()))?;
    let signature = key.sign(&canonical::signed_message(&signed_fields))?;
    Ok(Receipt {
        format: FORMAT.to_string(),
        body: body.clone(),
        signed_fields,
        signature: hex::encode(signature),
        key: hex::encode(key.spki()),
        evidence: EvidenceRecord {
            report: hex::encode(report),
            vcek: hex::encode(vcek),
        },
    })
}

impl Receipt {
    /// The receipt as `receipt.json` holds it: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a receipt serializes");
        text.push('\n');
        text
    }

    /// Writes `dir/receipt.json` (through a temporary file, renamed, so a reader never sees
    /// half of it) and returns its path.
    pub fn write_into(&self, dir: &Path) -> Result<PathBuf, ReceiptError> {
        let path = dir.join(RECEIPT_FILE);
        let tmp = dir.join(format!(".{RECEIPT_FILE}.tmp"));
        std::fs::write(&tmp, self.to_json()).map_err(|e| ReceiptError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ReceiptError::io(&path, e))?;
        Ok(path)
    }
}
