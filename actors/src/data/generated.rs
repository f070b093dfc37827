//! Generated histopathology-like images for the cancer example, so it runs anywhere
//! without downloading patient data.
//!
//! Each image is a pink stained-tissue background with dark nuclei. Benign tiles (label 0)
//! have few small round nuclei; malignant tiles (label 1) have more, larger nuclei of uneven
//! size, the cues a pathologist looks for (nuclear enlargement, pleomorphism, crowding).
//! Generation is seeded, so every party of a local cluster can regenerate its own shard.

use super::ImageSet;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

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
