//! The checkpoint file format.
//!
//! ```text
//!  0         8        10       11        12          20            32               34
//!  ┌─────────┬────────┬────────┬─────────┬───────────┬─────────────┬────────────────┬─────────┬───────────────────┬─────┐
//!  │ BASTCKPT│ ver u16│ cipher │ reserved│ step u64  │ nonce (12)  │ binding_len u16│ binding │ AES-256-GCM(body) │ tag │
//!  └─────────┴────────┴────────┴─────────┴───────────┴─────────────┴────────────────┴─────────┴───────────────────┴─────┘
//!  header = bytes 0..34+binding_len, all of it the AAD
//!
//!  body   = ledger_position u64 | ledger_digest (32) | job_len u16 | job
//!           | sections u32 | { name_len u16 | name | len u64 | bytes }*
//! ```
//! Integers are little-endian. The nonce is random (96 bits from the OS CSPRNG): checkpoints
//! per key stay far below the 2^32 messages at which random GCM nonces become a concern.
//!
//! The step and the store's binding (its owner, e.g. `node=node-1`) sit in the clear but
//! authenticated, so after authentication a file renamed to another step, or copied from
//! another owner's store sealed under the same key, is refused by name rather than as an
//! anonymous authentication failure. Job and ledger binding are in the encrypted body, which
//! GCM authenticates too.

use crate::{Checkpoint, CheckpointError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::path::Path;

/// The first eight bytes of every checkpoint.
pub(crate) const MAGIC: &[u8; 8] = b"BASTCKPT";
/// The format this build writes and reads. Version 1 had no binding, job or ledger digest.
pub const FORMAT_VERSION: u16 = 2;
const CIPHER_AES_256_GCM: u8 = 1;
/// The fixed part of the header, up to and including the binding's length.
const FIXED_HEADER: usize = 34;
const TAG_LEN: usize = 16;
/// Longest section name, in bytes.
pub const MAX_SECTION_NAME: usize = 1024;
/// Longest store binding, in bytes.
pub const MAX_BINDING: usize = 1024;
/// Longest job name, in bytes.
pub const MAX_JOB_NAME: usize = 1024;

/// Encodes and encrypts a checkpoint into the complete file image.
/// `binding` is checked by the store (1 to [`MAX_BINDING`] bytes).
pub(crate) fn seal(
    key: &[u8; 32],
    rng: &SystemRandom,
    binding: &str,
    ckpt: &Checkpoint,
) -> Result<Vec<u8>, CheckpointError> {
    for name in ckpt.sections.keys() {
        if name.is_empty() || name.len() > MAX_SECTION_NAME {
            return Err(CheckpointError::InvalidSectionName { name: name.clone() });
        }
    }
    if ckpt.job.len() > MAX_JOB_NAME {
        return Err(CheckpointError::InvalidJob {
            job: ckpt.job.clone(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| CheckpointError::Crypto {
        what: "nonce generation",
    })?;
    let header = header(ckpt.step, &nonce, binding);
    let body_len: usize = 8
        + 32
        + 2
        + ckpt.job.len()
        + 4
        + ckpt
            .sections
            .iter()
            .map(|(n, d)| 2 + n.len() + 8 + d.len())
            .sum::<usize>();
    // One buffer for the whole file: the body is encrypted in place behind the header.
    let mut file = Vec::with_capacity(header.len() + body_len + TAG_LEN);
    file.extend_from_slice(&header);
    file.extend_from_slice(&ckpt.ledger_position.to_le_bytes());
    file.extend_from_slice(&ckpt.ledger_digest);
    file.extend_from_slice(&(ckpt.job.len() as u16).to_le_bytes());
    file.extend_from_slice(ckpt.job.as_bytes());
    file.extend_from_slice(&(ckpt.sections.len() as u32).to_le_bytes());
    for (name, data) in &ckpt.sections {
        file.extend_from_slice(&(name.len() as u16).to_le_bytes());
        file.extend_from_slice(name.as_bytes());
        file.extend_from_slice(&(data.len() as u64).to_le_bytes());
        file.extend_from_slice(data);
    }
    let (head, body) = file.split_at_mut(header.len());
    let tag = cipher(key)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head[..]),
            body,
        )
        .map_err(|_| CheckpointError::Crypto { what: "encrypt" })?;
    file.extend_from_slice(tag.as_ref());
    Ok(file)
}

/// Authenticates, decrypts and decodes a file image. `expected_step` is the step the file's
/// name claims, `expected_binding` the opening store's binding.
pub(crate) fn open(
    key: &[u8; 32],
    path: &Path,
    expected_step: u64,
    expected_binding: &str,
    mut file: Vec<u8>,
) -> Result<Checkpoint, CheckpointError> {
    let min = (FIXED_HEADER + TAG_LEN) as u64;
    if (file.len() as u64) < min {
        if file.len() >= MAGIC.len() && &file[..MAGIC.len()] != MAGIC {
            return Err(CheckpointError::BadMagic {
                path: path.to_owned(),
            });
        }
        return Err(CheckpointError::Truncated {
            path: path.to_owned(),
            len: file.len() as u64,
            min,
        });
    }
    if &file[..8] != MAGIC {
        return Err(CheckpointError::BadMagic {
            path: path.to_owned(),
        });
    }
    let version = u16::from_le_bytes([file[8], file[9]]);
    let cipher_id = file[10];
    if version != FORMAT_VERSION || cipher_id != CIPHER_AES_256_GCM || file[11] != 0 {
        return Err(CheckpointError::Unsupported {
            path: path.to_owned(),
            version,
            cipher: cipher_id,
            supported: FORMAT_VERSION,
        });
    }
    let step = u64::from_le_bytes(file[12..20].try_into().expect("8 bytes"));
    let nonce: [u8; NONCE_LEN] = file[20..32].try_into().expect("12 bytes");
    let binding_len = u16::from_le_bytes([file[32], file[33]]) as usize;
    let header_len = FIXED_HEADER + binding_len;
    if file.len() < header_len + TAG_LEN {
        return Err(CheckpointError::Truncated {
            path: path.to_owned(),
            len: file.len() as u64,
            min: (header_len + TAG_LEN) as u64,
        });
    }
    let (head, sealed) = file.split_at_mut(header_len);
    let body = cipher(key)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head[..]),
            sealed,
        )
        .map_err(|_| CheckpointError::Authentication {
            path: path.to_owned(),
        })?;
    // Checked only after authentication: an unauthenticated binding or step means nothing.
    let binding = &head[FIXED_HEADER..];
    if binding != expected_binding.as_bytes() {
        return Err(CheckpointError::BindingMismatch {
            path: path.to_owned(),
            expected: expected_binding.to_owned(),
            found: String::from_utf8_lossy(binding).into_owned(),
        });
    }
    if step != expected_step {
        return Err(CheckpointError::StepMismatch {
            path: path.to_owned(),
            in_name: expected_step,
            in_header: step,
        });
    }
    let mut ckpt = decode_body(body).map_err(|reason| CheckpointError::Malformed {
        path: path.to_owned(),
        reason,
    })?;
    ckpt.step = step;
    Ok(ckpt)
}

fn header(step: u64, nonce: &[u8; NONCE_LEN], binding: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED_HEADER + binding.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.push(CIPHER_AES_256_GCM);
    h.push(0);
    h.extend_from_slice(&step.to_le_bytes());
    h.extend_from_slice(nonce);
    h.extend_from_slice(&(binding.len() as u16).to_le_bytes());
    h.extend_from_slice(binding.as_bytes());
    h
}

/// A ring key for one operation. ring keeps the expanded key schedule inside; it lives only
/// for the call, while the caller's 32 bytes stay in zeroizing storage.
fn cipher(key: &[u8; 32]) -> Result<LessSafeKey, CheckpointError> {
    let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CheckpointError::Crypto {
        what: "AES-256-GCM key setup",
    })?;
    Ok(LessSafeKey::new(unbound))
}

/// Decodes an authenticated body (all but the step, which is in the header); every length is
/// bounds-checked.
fn decode_body(body: &[u8]) -> Result<Checkpoint, String> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err(format!("{what}: needs {n} bytes, {} remain", self.0.len()));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn u64(&mut self, what: &str) -> Result<u64, String> {
            Ok(u64::from_le_bytes(
                self.take(8, what)?.try_into().expect("8"),
            ))
        }
    }
    let mut r = Reader(body);
    let ledger_position = r.u64("ledger position")?;
    let ledger_digest: [u8; 32] = r.take(32, "ledger digest")?.try_into().expect("32");
    let job_len = u16::from_le_bytes(r.take(2, "job name length")?.try_into().expect("2"));
    let job = std::str::from_utf8(r.take(job_len as usize, "job name")?)
        .map_err(|_| "job name is not UTF-8".to_owned())?
        .to_owned();
    let count = u32::from_le_bytes(r.take(4, "section count")?.try_into().expect("4"));
    let mut sections = BTreeMap::new();
    for i in 0..count {
        let name_len = u16::from_le_bytes(r.take(2, "section name length")?.try_into().expect("2"));
        let name = std::str::from_utf8(r.take(name_len as usize, "section name")?)
            .map_err(|_| format!("section {i}: name is not UTF-8"))?
            .to_owned();
        let len = r.u64("section length")?;
        let len = usize::try_from(len).map_err(|_| format!("section {name:?}: length {len}"))?;
        let data = r.take(len, &format!("section {name:?}"))?.to_vec();
        if sections.insert(name.clone(), data).is_some() {
            return Err(format!("section {name:?} appears twice"));
        }
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the last section", r.0.len()));
    }
    Ok(Checkpoint {
        step: 0,
        job,
        ledger_position,
        ledger_digest,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_decoder_rejects_inconsistent_lengths() {
        // Position, digest, job "j", one section named "w" claiming 10 bytes but holding 2.
        let mut body = 7u64.to_le_bytes().to_vec();
        body.extend([9u8; 32]);
        body.extend(1u16.to_le_bytes());
        body.extend(b"j");
        body.extend(1u32.to_le_bytes());
        body.extend(1u16.to_le_bytes());
        body.extend(b"w");
        body.extend(10u64.to_le_bytes());
        body.extend([1, 2]);
        assert!(decode_body(&body).unwrap_err().contains("needs 10 bytes"));
        let mut ok = body.clone();
        ok.truncate(ok.len() - 2);
        ok.truncate(ok.len() - 8);
        ok.extend(2u64.to_le_bytes());
        ok.extend([1, 2]);
        let ckpt = decode_body(&ok).unwrap();
        assert_eq!(ckpt.ledger_position, 7);
        assert_eq!(ckpt.ledger_digest, [9; 32]);
        assert_eq!(ckpt.job, "j");
        assert_eq!(ckpt.sections["w"], [1, 2]);
        ok.push(0);
        assert!(decode_body(&ok)
            .unwrap_err()
            .contains("after the last section"));

        // A job name running past the body.
        let mut short = 7u64.to_le_bytes().to_vec();
        short.extend([0u8; 32]);
        short.extend(5u16.to_le_bytes());
        short.extend(b"ab");
        assert!(decode_body(&short)
            .unwrap_err()
            .starts_with("job name: needs 5"));
    }
}
