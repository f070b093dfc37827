//! The checkpoint file format.
//!
//! ```text
//!  0         8        10       11        12          20            32
//!  ┌─────────┬────────┬────────┬─────────┬───────────┬─────────────┬──────────────────────┬─────┐
//!  │ BASTCKPT│ ver u16│ cipher │ reserved│ step u64  │ nonce (12)  │ AES-256-GCM(body)    │ tag │
//!  └─────────┴────────┴────────┴─────────┴───────────┴─────────────┴──────────────────────┴─────┘
//!  header = bytes 0..32, authenticated as AAD (a renamed or re-stepped file fails to open)
//!
//!  body   = ledger_position u64 | sections u32 | { name_len u16 | name | len u64 | bytes }*
//! ```
//! Integers are little-endian. The nonce is random (96 bits from the OS CSPRNG): checkpoints
//! per key stay far below the 2^32 messages at which random GCM nonces become a concern.

use crate::{Checkpoint, CheckpointError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::path::Path;

/// The first eight bytes of every checkpoint.
pub(crate) const MAGIC: &[u8; 8] = b"BASTCKPT";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
const CIPHER_AES_256_GCM: u8 = 1;
pub(crate) const HEADER_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Longest section name, in bytes.
pub const MAX_SECTION_NAME: usize = 1024;

/// Encodes and encrypts a checkpoint into the complete file image.
pub(crate) fn seal(
    key: &[u8; 32],
    rng: &SystemRandom,
    ckpt: &Checkpoint,
) -> Result<Vec<u8>, CheckpointError> {
    for name in ckpt.sections.keys() {
        if name.is_empty() || name.len() > MAX_SECTION_NAME {
            return Err(CheckpointError::InvalidSectionName { name: name.clone() });
        }
    }
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| CheckpointError::Crypto {
        what: "nonce generation",
    })?;
    let header = header(ckpt.step, &nonce);
    let body_len: usize = 12
        + ckpt
            .sections
            .iter()
            .map(|(n, d)| 2 + n.len() + 8 + d.len())
            .sum::<usize>();
    // One buffer for the whole file: the body is encrypted in place behind the header.
    let mut file = Vec::with_capacity(HEADER_LEN + body_len + TAG_LEN);
    file.extend_from_slice(&header);
    file.extend_from_slice(&ckpt.ledger_position.to_le_bytes());
    file.extend_from_slice(&(ckpt.sections.len() as u32).to_le_bytes());
    for (name, data) in &ckpt.sections {
        file.extend_from_slice(&(name.len() as u16).to_le_bytes());
        file.extend_from_slice(name.as_bytes());
        file.extend_from_slice(&(data.len() as u64).to_le_bytes());
        file.extend_from_slice(data);
    }
    let (head, body) = file.split_at_mut(HEADER_LEN);
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
/// name claims.
pub(crate) fn open(
    key: &[u8; 32],
    path: &Path,
    expected_step: u64,
    mut file: Vec<u8>,
) -> Result<Checkpoint, CheckpointError> {
    let min = (HEADER_LEN + TAG_LEN) as u64;
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
    let (head, sealed) = file.split_at_mut(HEADER_LEN);
    let body = cipher(key)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head[..]),
            sealed,
        )
        .map_err(|_| CheckpointError::Authentication {
            path: path.to_owned(),
        })?;
    // Checked only after authentication: an unauthenticated step number means nothing.
    if step != expected_step {
        return Err(CheckpointError::StepMismatch {
            path: path.to_owned(),
            in_name: expected_step,
            in_header: step,
        });
    }
    let (ledger_position, sections) =
        decode_body(body).map_err(|reason| CheckpointError::Malformed {
            path: path.to_owned(),
            reason,
        })?;
    Ok(Checkpoint {
        step,
        ledger_position,
        sections,
    })
}

fn header(step: u64, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10] = CIPHER_AES_256_GCM;
    h[12..20].copy_from_slice(&step.to_le_bytes());
    h[20..32].copy_from_slice(nonce);
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

/// Decodes an authenticated body; every length is bounds-checked.
fn decode_body(body: &[u8]) -> Result<(u64, BTreeMap<String, Vec<u8>>), String> {
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
    Ok((ledger_position, sections))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_decoder_rejects_inconsistent_lengths() {
        // Position, one section named "w" claiming 10 bytes but holding 2.
        let mut body = 7u64.to_le_bytes().to_vec();
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
        let (pos, sections) = decode_body(&ok).unwrap();
        assert_eq!(pos, 7);
        assert_eq!(sections["w"], [1, 2]);
        ok.push(0);
        assert!(decode_body(&ok)
            .unwrap_err()
            .contains("after the last section"));
    }
}
