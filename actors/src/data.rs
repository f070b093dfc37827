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
    use super::ImageSet;
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
    use std::path::Path;

    const MAGIC: &[u8; 8] = b"BSTSHRD1";

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
    }

    /// Seals `set` into `path` (written to a temporary file, synced, then renamed).
    pub fn seal(set: &ImageSet, key: &[u8; 32], path: &Path) -> Result<(), SealError> {
        let io = |source| SealError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut body = set.to_bytes().map_err(|e| SealError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(MAGIC),
            &mut body,
        )
        .map_err(|_| io(std::io::Error::other("encryption failed")))?;
        let mut file = Vec::with_capacity(MAGIC.len() + NONCE_LEN + body.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&body);
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
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

    /// Opens a shard sealed by [`seal`] with the same key.
    pub fn unseal(key: &[u8; 32], path: &Path) -> Result<ImageSet, SealError> {
        let name = path.display().to_string();
        let invalid = |reason: &str| SealError::Invalid {
            path: name.clone(),
            reason: reason.to_string(),
        };
        let file = std::fs::read(path).map_err(|source| SealError::Io {
            path: name.clone(),
            source,
        })?;
        if file.len() < MAGIC.len() + NONCE_LEN || &file[..MAGIC.len()] != MAGIC {
            return Err(invalid("not a sealed shard (bad magic)"));
        }
        let nonce: [u8; NONCE_LEN] = file[MAGIC.len()..MAGIC.len() + NONCE_LEN]
            .try_into()
            .expect("nonce length");
        let mut body = file[MAGIC.len() + NONCE_LEN..].to_vec();
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC),
                &mut body,
            )
            .map_err(|_| invalid("authentication failed: another node's key, or tampered"))?;
        ImageSet::from_bytes(plain).map_err(|r| invalid(&r))
    }
}
