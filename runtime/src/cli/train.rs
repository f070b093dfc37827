//! `bastion train`: DP-SGD training of the ResNet cancer example on one node, on generated
//! histopathology-like tiles. Prints one JSON object with the test accuracy and the privacy
//! spent.

use anyhow::{ensure, Context};
use bastion_actors::data::cancer_tiles;
use bastion_actors::trainer::accuracy;
use bastion_dp::accountant::{self, calibrate_sigma, AccountantKind};
use bastion_dp::clip::{clip_per_sample, trainable_params, ClipConfig, Tape};
use bastion_dp::noise::{sensitivity_overhead, SecureGaussian};
use bastion_dp::optim::{
    add_noise, average, flatten, unflatten, DpSettings, Optimizer, UpdateRule,
};
use bastion_dp::sampling::PoissonSampler;
use bastion_models::per_sample_cross_entropy;
use bastion_models::resnet::{ResNet, ResNetConfig};
use std::time::Instant;
use tch::{nn, Device};

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    /// Training records (generated tiles).
    #[arg(long, default_value_t = 2048)]
    records: usize,
    /// Test records.
    #[arg(long, default_value_t = 512)]
    test_records: usize,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 32)]
    image_size: i64,
    /// Expected batch size; the Poisson sampling rate is this over the number of records.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Passes over the data (steps = epochs / q).
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Privacy budget epsilon; the noise is calibrated to spend at most this.
    #[arg(long, default_value_t = 8.0)]
    epsilon: f64,
    /// Privacy parameter delta.
    #[arg(long, default_value_t = 1e-5)]
    delta: f64,
    /// Per-sample clipping bound C.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Learning rate (SGD with momentum 0.9).
    #[arg(long, default_value_t = 0.5)]
    lr: f64,
    /// ResNet depth: 18 or 34.
    #[arg(long, default_value_t = 18)]
    depth: u32,
    /// Intra-op threads for libtorch.
    #[arg(long, default_value_t = 2)]
    threads: i32,
}

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<()> {
    ensure!(args.records > 0, "--records must be positive");
    ensure!(
        args.batch_size > 0 && args.batch_size <= args.records,
        "--batch-size must be in 1..=records ({}), got {}",
        args.records,
        args.batch_size
    );
    ensure!(args.epochs > 0, "--epochs must be positive");
    tch::set_num_threads(args.threads);

    let train = cancer_tiles(args.records, args.image_size, 1);
    let test = cancer_tiles(args.test_records, args.image_size, 2);
    let q = args.batch_size as f64 / args.records as f64;
    let steps = (args.epochs as f64 / q).ceil() as u64;
    let kind = AccountantKind::default();
    let calibration = calibrate_sigma(kind, q, steps, args.delta, args.epsilon)
        .context("calibrating the noise to the privacy budget")?;
    let sigma = calibration.sigma;
    tracing::info!(q, steps, sigma, epsilon = args.epsilon, "calibrated noise");

    let vs = nn::VarStore::new(Device::Cpu);
    let config = match args.depth {
        18 => ResNetConfig::resnet18(2),
        34 => ResNetConfig::resnet34(2),
        d => anyhow::bail!("--depth must be 18 or 34, got {d}"),
    };
    let model = ResNet::new(&vs.root(), &config)?;
    let params = trainable_params(&vs);
    let dimension: usize = params.iter().map(|p| p.numel()).sum();
    let settings = DpSettings {
        noise_multiplier: sigma,
        max_grad_norm: args.max_grad_norm,
        expected_batch_size: args.batch_size as f64,
        nodes: 1,
    };
    // Noise is snapped to a grid (defence against floating-point attacks), which can move the
    // sum by a little; clip to C minus that so the sensitivity stays C.
    let clip_bound =
        args.max_grad_norm - sensitivity_overhead(settings.node_noise_std(), dimension);
    ensure!(
        clip_bound > 0.0,
        "max_grad_norm {} too small for the noise grid",
        args.max_grad_norm
    );
    let clip = ClipConfig {
        max_grad_norm: clip_bound,
        ..ClipConfig::default()
    };
    let rule = UpdateRule::Sgd {
        lr: args.lr,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let mut optimizer = Optimizer::new(rule, params.iter().map(|p| p.shallow_clone()).collect());
    let mut noise = SecureGaussian::from_os()?;
    let mut sampler = PoissonSampler::from_os(q)?;
    let mut accountant = accountant::create(kind);

    let started = Instant::now();
    let steps_per_epoch = (steps as usize).div_ceil(args.epochs);
    for step in 0..steps {
        // Authorize before any gradient exists: the step is spent even if it fails later.
        accountant.step(q, sigma)?;
        let indices = sampler.sample(train.len());
        let mut sum = if indices.is_empty() {
            vec![0f32; dimension]
        } else {
            let (images, labels) = train.batch(&indices);
            let tape = Tape::new();
            let loss = per_sample_cross_entropy(&model.forward(&tape, &images), &labels);
            flatten(clip_per_sample(&tape, &loss, &params, &clip)?.grads)?
        };
        add_noise(&mut sum, &settings, &mut noise)?;
        average(&mut sum, &settings);
        optimizer.step(&unflatten(sum, &params)?);
        if (step as usize + 1) % steps_per_epoch == 0 || step + 1 == steps {
            tracing::info!(
                step = step + 1,
                steps,
                epsilon = accountant.epsilon(args.delta)?,
                test_accuracy = accuracy(&model, &test),
                elapsed_s = started.elapsed().as_secs_f64(),
                "epoch done"
            );
        }
    }
    let report = serde_json::json!({
        "model": format!("resnet{}-gn", args.depth),
        "records": args.records,
        "steps": steps,
        "sampling_rate": q,
        "noise_multiplier": sigma,
        "max_grad_norm": args.max_grad_norm,
        "accountant": kind.name(),
        "epsilon": accountant.epsilon(args.delta)?,
        "delta": args.delta,
        "test_accuracy": accuracy(&model, &test),
        "train_seconds": started.elapsed().as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}
