//! Generated histopathology-like images for the cancer example, so it runs anywhere
//! without downloading patient data.
//!
//! Each image is a pink stained-tissue background with dark nuclei. Benign tiles (label 0)
//! have few small round nuclei; malignant tiles (label 1) have more, larger nuclei of uneven
//! size, the cues a pathologist looks for (nuclear enlargement, pleomorphism, crowding).
//! Generation is seeded, so every party of a local cluster can regenerate its own shard.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A labelled image set held in memory: images `(N, 3, S, S)` in [0, 1], labels `(N,)`.
#[derive(Debug)]
pub struct ImageSet {
    /// `(N, 3, S, S)` floats in [0, 1].
    pub images: Tensor,
    /// `(N,)` class indices.
    pub labels: Tensor,
}

impl ImageSet {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// The records at `indices`, as a batch.
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Tensor) {
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let idx = Tensor::from_slice(&idx);
        (
            self.images.index_select(0, &idx),
            self.labels.index_select(0, &idx),
        )
    }
}

/// `count` tiles of `size` x `size` pixels, half of each class, from `seed`.
/// (The seed here only makes a reproducible dataset; it has nothing to do with DP noise.)
pub fn cancer_tiles(count: usize, size: i64, seed: u64) -> ImageSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = (size * size) as usize;
    let mut data = vec![0f32; count * 3 * pixels];
    let mut labels = Vec::with_capacity(count);
    let s = size as f32;
    for n in 0..count {
        let malignant = rng.random_bool(0.5);
        labels.push(malignant as i64);
        let image = &mut data[n * 3 * pixels..(n + 1) * 3 * pixels];
        // Eosin-pink background with mild texture.
        let base = [0.85f32, 0.55, 0.70];
        for (c, b) in base.iter().enumerate() {
            for p in 0..pixels {
                image[c * pixels + p] = b + rng.random_range(-0.06..0.06);
            }
        }
        let (nuclei, radius, spread) = if malignant {
            (rng.random_range(9..15), 0.075 * s, 0.5)
        } else {
            (rng.random_range(4..8), 0.045 * s, 0.15)
        };
        for _ in 0..nuclei {
            let cx = rng.random_range(0.0..s);
            let cy = rng.random_range(0.0..s);
            let r = radius * (1.0 + rng.random_range(-spread..spread));
            let (rx, ry) = (
                r * rng.random_range(0.8..1.2),
                r * rng.random_range(0.8..1.2),
            );
            // Haematoxylin-stained nucleus: dark purple ellipse with a soft edge.
            for y in 0..size {
                for x in 0..size {
                    let dx = (x as f32 - cx) / rx;
                    let dy = (y as f32 - cy) / ry;
                    let d = dx * dx + dy * dy;
                    if d < 1.4 {
                        let w = (1.4 - d).min(0.4) / 0.4;
                        let p = (y * size + x) as usize;
                        let stain = [0.30f32, 0.15, 0.45];
                        for c in 0..3 {
                            let v = &mut image[c * pixels + p];
                            *v = *v * (1.0 - w) + stain[c] * w;
                        }
                    }
                }
            }
        }
    }
    let images = Tensor::from_slice(&data).reshape([count as i64, 3, size, size]);
    ImageSet {
        images: images.to_kind(Kind::Float).to_device(Device::Cpu),
        labels: Tensor::from_slice(&labels),
    }
}

impl ImageSet {
    /// True when the set has no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set as bytes: side, count, then `f32` pixels and `i64` labels, little-endian.
    fn to_bytes(&self) -> Result<Vec<u8>, tch::TchError> {
        let size = self.images.size();
        let side = *size.last().unwrap_or(&0);
        let pixels = Vec::<f32>::try_from(&self.images.reshape([-1]))?;
        let labels = Vec::<i64>::try_from(&self.labels)?;
        let mut out = Vec::with_capacity(16 + pixels.len() * 4 + labels.len() * 8);
        out.extend_from_slice(&(side as u64).to_le_bytes());
        out.extend_from_slice(&(labels.len() as u64).to_le_bytes());
        pixels
            .iter()
            .for_each(|p| out.extend_from_slice(&p.to_le_bytes()));
        labels
            .iter()
            .for_each(|l| out.extend_from_slice(&l.to_le_bytes()));
        Ok(out)
    }

    fn from_bytes(bytes: &[u8]) -> Result<ImageSet, String> {
        let word = |at: usize| -> Result<u64, String> {
            let b = bytes.get(at..at + 8).ok_or("truncated header")?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        let (side, count) = (word(0)? as usize, word(8)? as usize);
        let pixels = count
            .checked_mul(3 * side * side)
            .ok_or("image dimensions overflow")?;
        if bytes.len() != 16 + pixels * 4 + count * 8 {
            return Err(format!(
                "{} bytes do not hold {count} images of side {side}",
                bytes.len()
            ));
        }
        let body = &bytes[16..];
        let images: Vec<f32> = body[..pixels * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let labels: Vec<i64> = body[pixels * 4..]
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let (n, s) = (count as i64, side as i64);
        Ok(ImageSet {
            images: Tensor::from_slice(&images).view([n, 3, s, s]),
            labels: Tensor::from_slice(&labels),
        })
    }
}

/// A data owner's records sealed on the node's disk: AES-256-GCM under a key only this guest
/// image on this chip can derive, so a restarted node reloads its shard and nobody else can.
pub mod sealed {
    //! Format 2 binds each shard to its owner, so two shards on one node (sealed under the
    //! same key) cannot be swapped:
    //!
    //! ```text
    //!  BSTSHRD2 | binding_len u16 LE | binding | nonce (12) | AES-256-GCM(set) | tag (16)
    //!  AAD = magic, binding length and binding (everything before the nonce)
    //! ```
    //! The binding (e.g. `dataset=hospital-a;node=node-1`) sits in the clear but
    //! authenticated, so a swapped file is refused by name after authentication.

    use super::ImageSet;
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
    use std::path::Path;

    const MAGIC: &[u8; 8] = b"BSTSHRD2";
    /// Format 1 had no binding; such files are refused with a hint.
    const MAGIC_V1: &[u8; 8] = b"BSTSHRD1";
    const TAG_LEN: usize = 16;
    /// Longest binding, in bytes.
    const MAX_BINDING: usize = 1024;

    /// Why a sealed shard could not be written or read.
    #[derive(Debug, thiserror::Error)]
    pub enum SealError {
        /// Reading or writing the file failed.
        #[error("sealed shard {path}: {source}")]
        Io {
            /// The file.
            path: String,
            /// The cause.
            source: std::io::Error,
        },
        /// The file is not a sealed shard of this node (wrong key, tampered or truncated).
        #[error("sealed shard {path} does not open: {reason}")]
        Invalid {
            /// The file.
            path: String,
            /// What was wrong.
            reason: String,
        },
        /// The file authenticates but was sealed for another dataset or node: shard files were
        /// swapped or copied.
        #[error(
            "sealed shard {path} is sealed for another dataset or node: it holds {found:?}, \
             expected {expected:?}"
        )]
        WrongBinding {
            /// The file.
            path: String,
            /// The binding asked for.
            expected: String,
            /// The binding the file was sealed with.
            found: String,
        },
    }

    /// The authenticated header: magic, binding length, binding.
    fn header(binding: &str) -> Vec<u8> {
        let mut h = Vec::with_capacity(MAGIC.len() + 2 + binding.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&(binding.len() as u16).to_le_bytes());
        h.extend_from_slice(binding.as_bytes());
        h
    }

    /// Seals `set` into `path` for `binding` (who the shard belongs to, e.g.
    /// `dataset=hospital-a;node=node-1`, 1 to 1024 bytes): written to a temporary file
    /// readable by its owner only (0600), synced, then renamed.
    pub fn seal(
        set: &ImageSet,
        key: &[u8; 32],
        path: &Path,
        binding: &str,
    ) -> Result<(), SealError> {
        let name = path.display().to_string();
        let io = |source| SealError::Io {
            path: name.clone(),
            source,
        };
        if binding.is_empty() || binding.len() > MAX_BINDING {
            return Err(SealError::Invalid {
                path: name.clone(),
                reason: format!("binding {binding:?} must be 1 to {MAX_BINDING} bytes"),
            });
        }
        let mut body = set.to_bytes().map_err(|e| SealError::Invalid {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        let header = header(binding);
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&header[..]),
            &mut body,
        )
        .map_err(|_| io(std::io::Error::other("encryption failed")))?;
        let mut file = Vec::with_capacity(header.len() + NONCE_LEN + body.len());
        file.extend_from_slice(&header);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&body);
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // A leftover from a crashed seal may carry looser permissions: start afresh.
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&file).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    /// Opens a shard sealed by [`seal`] with the same key for the same `binding`. A shard
    /// sealed for another binding is [`SealError::WrongBinding`].
    pub fn unseal(key: &[u8; 32], path: &Path, binding: &str) -> Result<ImageSet, SealError> {
        let name = path.display().to_string();
        let invalid = |reason: &str| SealError::Invalid {
            path: name.clone(),
            reason: reason.to_string(),
        };
        let file = std::fs::read(path).map_err(|source| SealError::Io {
            path: name.clone(),
            source,
        })?;
        if file.starts_with(MAGIC_V1) {
            return Err(invalid(
                "sealed in format 1, which binds no dataset or node; remove the file and the \
                 node seals its shard again",
            ));
        }
        if file.len() < MAGIC.len() + 2 || &file[..MAGIC.len()] != MAGIC {
            return Err(invalid("not a sealed shard (bad magic)"));
        }
        let binding_len = u16::from_le_bytes([file[8], file[9]]) as usize;
        let header_len = MAGIC.len() + 2 + binding_len;
        if file.len() < header_len + NONCE_LEN + TAG_LEN {
            return Err(invalid("truncated"));
        }
        let (header, rest) = file.split_at(header_len);
        let nonce: [u8; NONCE_LEN] = rest[..NONCE_LEN].try_into().expect("nonce length");
        let mut body = rest[NONCE_LEN..].to_vec();
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut body,
            )
            .map_err(|_| invalid("authentication failed: another node's key, or tampered"))?;
        // Only an authenticated binding says anything about whose shard this is.
        let found = &header[MAGIC.len() + 2..];
        if found != binding.as_bytes() {
            return Err(SealError::WrongBinding {
                path: name.clone(),
                expected: binding.to_owned(),
                found: String::from_utf8_lossy(found).into_owned(),
            });
        }
        ImageSet::from_bytes(plain).map_err(|r| invalid(&r))
    }

    #[cfg(test)]
    mod tests {
        use super::super::cancer_tiles;
        use super::*;
        use std::os::unix::fs::PermissionsExt;
        use std::path::PathBuf;

        const KEY: [u8; 32] = [0x11; 32];
        const A: &str = "dataset=hospital-a;node=node-1";
        const B: &str = "dataset=hospital-b;node=node-1";

        /// A fresh directory for one test (the crate has no tempfile dev-dependency).
        fn scratch(test: &str) -> PathBuf {
            let dir =
                std::env::temp_dir().join(format!("bastion-sealed-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }

        fn same(a: &ImageSet, b: &ImageSet) -> bool {
            a.images.equal(&b.images) && a.labels.equal(&b.labels)
        }

        #[test]
        fn round_trip_with_a_private_file() {
            let dir = scratch("round-trip");
            let set = cancer_tiles(6, 8, 1);
            let path = dir.join("a.sealed");
            seal(&set, &KEY, &path, A).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert!(same(&unseal(&KEY, &path, A).unwrap(), &set));
            // Another key does not open it.
            let mut other = KEY;
            other[0] ^= 1;
            assert!(matches!(
                unseal(&other, &path, A),
                Err(SealError::Invalid { .. })
            ));
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn swapped_shards_are_refused() {
            let dir = scratch("swap");
            let (a, b) = (dir.join("a.sealed"), dir.join("b.sealed"));
            let set_a = cancer_tiles(4, 8, 1);
            seal(&set_a, &KEY, &a, A).unwrap();
            seal(&cancer_tiles(4, 8, 2), &KEY, &b, B).unwrap();
            // The host swaps the two files: both authenticate (same key), neither opens.
            let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            std::fs::write(&a, &bytes_b).unwrap();
            std::fs::write(&b, &bytes_a).unwrap();
            for (path, expected, found) in [(&a, A, B), (&b, B, A)] {
                let e = unseal(&KEY, path, expected).unwrap_err();
                let msg = e.to_string();
                match e {
                    SealError::WrongBinding {
                        expected: x,
                        found: f,
                        ..
                    } => assert_eq!((x.as_str(), f.as_str()), (expected, found)),
                    other => panic!("expected WrongBinding, got {other:?}"),
                }
                assert!(msg.contains("another dataset or node"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            // Negative control: swapped back, each opens as its own.
            std::fs::write(&a, &bytes_a).unwrap();
            assert!(same(&unseal(&KEY, &a, A).unwrap(), &set_a));
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn an_edited_binding_does_not_authenticate() {
            let dir = scratch("edit");
            let path = dir.join("a.sealed");
            seal(&cancer_tiles(2, 8, 1), &KEY, &path, A).unwrap();
            // Rewrite the clear-text binding to B's (same length): the AAD no longer matches.
            let mut bytes = std::fs::read(&path).unwrap();
            assert_eq!(A.len(), B.len());
            bytes[10..10 + B.len()].copy_from_slice(B.as_bytes());
            std::fs::write(&path, &bytes).unwrap();
            assert!(matches!(
                unseal(&KEY, &path, B),
                Err(SealError::Invalid { .. })
            ));
            // A format-1 file is refused with a hint, not as garbage.
            bytes[..8].copy_from_slice(MAGIC_V1);
            std::fs::write(&path, &bytes).unwrap();
            let msg = unseal(&KEY, &path, A).unwrap_err().to_string();
            assert!(msg.contains("format 1"), "{msg}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
