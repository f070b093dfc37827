//! DP across nodes: each node adds N(0, (sigma C)^2 / N) to its share; after the ring
//! all-reduce the sum carries exactly single-node DP-SGD noise, N(0, (sigma C)^2).
//! Real noise (the production sampler), a real ring (in-memory links), zero gradients.

use bastion_collective::{Ring, RingConfig};
use bastion_dp::noise::SecureGaussian;
use bastion_dp::optim::{add_noise, DpSettings};

/// Runs `world` ranks: each noises a zero vector of `dim` with `std_of(world)`, then all-reduce.
fn reduced_noise(world: usize, dim: usize, settings: DpSettings) -> Vec<f32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Link i carries rank i -> rank i+1.
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..world {
            let (w, r) = tokio::io::duplex(1 << 20);
            writers.push(Some(w));
            readers.push(Some(r));
        }
        let mut tasks = Vec::new();
        for rank in 0..world {
            let to_next = writers[rank].take().unwrap();
            let from_prev = readers[(rank + world - 1) % world].take().unwrap();
            let mut ring = Ring::new(
                rank,
                world,
                1,
                Box::new(to_next),
                Box::new(from_prev),
                RingConfig::default(),
            )
            .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut share = vec![0f32; dim];
                let mut noise = SecureGaussian::from_os().unwrap();
                add_noise(&mut share, &settings, &mut noise).unwrap();
                ring.all_reduce(7, &mut share).await.unwrap();
                share
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        // Every rank holds the same sum, bit for bit.
        for r in &results[1..] {
            assert!(r == &results[0]);
        }
        results.swap_remove(0)
    })
}

fn variance(values: &[f32]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0)
}

#[test]
fn the_reduced_noise_has_the_variance_of_single_node_dp_sgd() {
    let (sigma, c) = (1.3, 0.7);
    let dim = 400_000;
    let target = (sigma * c) * (sigma * c);
    // The sample variance of n normals has relative standard error sqrt(2/(n-1)) = 0.22%;
    // 2% is over 8 standard errors, and a node adding its full sigma*C (3x the variance
    // with 3 nodes) or sigma*C/N (1/3) is far outside it.
    for world in [1, 2, 3] {
        let settings = DpSettings {
            noise_multiplier: sigma,
            max_grad_norm: c,
            expected_batch_size: 64.0,
            nodes: world,
        };
        let v = variance(&reduced_noise(world, dim, settings));
        assert!(
            (v / target - 1.0).abs() < 0.02,
            "{world} nodes: variance {v}, expected {target}"
        );
    }
    // Negative control: nodes that each add single-node noise overshoot by a factor N.
    let wrong = DpSettings {
        noise_multiplier: sigma,
        max_grad_norm: c,
        expected_batch_size: 64.0,
        nodes: 1,
    };
    let v = variance(&reduced_noise(3, dim, wrong));
    assert!((v / target - 3.0).abs() < 0.1, "control: {v}");
}
