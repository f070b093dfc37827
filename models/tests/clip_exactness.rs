//! Whole-model exactness of per-sample clipping on the real models.
//!
//! For a small GroupNorm ResNet-18 and a tiny tied GPT-2, the engine's per-sample norms and
//! clipped sum (`clip_per_sample`, one batched forward and backward) must agree with brute
//! force: each sample alone through plain autograd with a disabled tape, its gradient for
//! every parameter collected, its norm taken, scaled by `min(1, C / norm)` and summed. `C`
//! lies between the samples' norms so that some samples are clipped and some are not. All in
//! f64 so the 1e-4 relative tolerance measures the method, not rounding.
//!
//! The GPT-2 case also shows the tied embedding's cross term matters: adding up the squared
//! norms of the input-side and output-side gradients of `wte` separately would give norms
//! that are measurably wrong.

use bastion_dp::clip::{clip_per_sample, ClipConfig, LayerChoice, Tape};
use bastion_models::gpt2::{Gpt2, Gpt2Config};
use bastion_models::resnet::{ResNet, ResNetConfig};
use bastion_models::{per_sample_cross_entropy, per_sample_lm_loss};
use tch::{nn::VarStore, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

/// Trainable variables sorted by name, so failures name the parameter.
fn named_params(vs: &VarStore) -> (Vec<String>, Vec<Tensor>) {
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().unzip()
}

/// Per-sample gradients by brute force: `loss_alone(i)` is sample `i`'s scalar loss computed
/// with that sample alone in the batch and a disabled tape.
fn per_sample_grads(
    batch: i64,
    params: &[Tensor],
    loss_alone: impl Fn(i64) -> Tensor,
) -> Vec<Vec<Tensor>> {
    (0..batch)
        .map(|i| {
            let loss = loss_alone(i);
            Tensor::run_backward(&[loss], params, false, false)
                .into_iter()
                .zip(params)
                .map(|(g, p)| if g.defined() { g } else { p.zeros_like() })
                .collect()
        })
        .collect()
}

fn squared_norm(t: &Tensor) -> f64 {
    t.square().sum(Kind::Double).double_value(&[])
}

fn norms_of(grads: &[Vec<Tensor>]) -> Vec<f64> {
    grads
        .iter()
        .map(|g| g.iter().map(squared_norm).sum::<f64>().sqrt())
        .collect()
}

/// `sum_i min(1, C / norm_i) g_i` per parameter.
fn clipped_sum(grads: &[Vec<Tensor>], norms: &[f64], c: f64) -> Vec<Tensor> {
    let mut sum: Vec<Tensor> = grads[0].iter().map(|g| g.zeros_like()).collect();
    for (g, &n) in grads.iter().zip(norms) {
        let factor = (c / n).min(1.0);
        for (s, gi) in sum.iter_mut().zip(g) {
            *s = &*s + gi * factor;
        }
    }
    sum
}

/// A bound between the smallest and the next norm: the smallest sample is not clipped, the
/// others are. For one sample, `scale * norm`.
fn bound_between(norms: &[f64], scale_if_single: f64) -> f64 {
    let mut sorted = norms.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.len() == 1 {
        return sorted[0] * scale_if_single;
    }
    (sorted[0] + sorted[1]) / 2.0
}

/// Runs the engine on a recorded batch and checks it against brute force for bound `c`.
fn check_against_brute_force(
    what: &str,
    names: &[String],
    params: &[Tensor],
    grads: &[Vec<Tensor>],
    c: f64,
    batched_loss: impl Fn(&Tape) -> Tensor,
) {
    let norms = norms_of(grads);
    let expected = clipped_sum(grads, &norms, c);
    let budget = ClipConfig::default().materialize_budget_bytes;
    for (budget, layer_choice) in [
        (0, LayerChoice::CostModel),
        (budget, LayerChoice::CostModel),
        (budget, LayerChoice::Measured),
    ] {
        let tape = Tape::new();
        let loss = batched_loss(&tape);
        let clipped = clip_per_sample(
            &tape,
            &loss,
            params,
            &ClipConfig {
                max_grad_norm: c,
                materialize_budget_bytes: budget,
                layer_choice,
            },
        )
        .unwrap_or_else(|e| panic!("{what}: clip_per_sample failed: {e}"));
        let engine_norms = Vec::<f64>::try_from(clipped.norms.to_kind(Kind::Double)).unwrap();
        assert_eq!(engine_norms.len(), norms.len());
        for (i, (e, b)) in engine_norms.iter().zip(&norms).enumerate() {
            let rel = (e - b).abs() / b;
            assert!(
                rel < TOLERANCE,
                "{what} (budget {budget}, {layer_choice:?}): sample {i} norm {e} vs brute force {b} (rel {rel:e})"
            );
        }
        assert_eq!(clipped.grads.len(), params.len());
        for ((name, e), b) in names.iter().zip(&clipped.grads).zip(&expected) {
            assert_eq!(e.size(), b.size(), "{what}: {name}");
            let err = squared_norm(&(e - b)).sqrt();
            let scale = squared_norm(b).sqrt();
            assert!(
                err <= TOLERANCE * scale + 1e-12,
                "{what} (budget {budget}, {layer_choice:?}): clipped sum of {name} off by {err:e} (norm {scale:e})"
            );
        }
    }
}

fn resnet_case(batch: i64, seed: i64) {
    tch::manual_seed(seed);
    let mut vs = VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), &ResNetConfig::resnet18(4)).unwrap();
    vs.double();
    let (names, params) = named_params(&vs);
    let images = Tensor::randn([batch, 3, 32, 32], (Kind::Double, Device::Cpu));
    let labels = Tensor::randint(4, [batch], (Kind::Int64, Device::Cpu));

    let grads = per_sample_grads(batch, &params, |i| {
        let logits = model.forward(&Tape::disabled(), &images.narrow(0, i, 1));
        per_sample_cross_entropy(&logits, &labels.narrow(0, i, 1)).sum(Kind::Double)
    });
    let norms = norms_of(&grads);
    let batched = |tape: &Tape| per_sample_cross_entropy(&model.forward(tape, &images), &labels);
    if batch == 1 {
        for scale in [0.5, 2.0] {
            let c = bound_between(&norms, scale);
            check_against_brute_force("resnet18 B=1", &names, &params, &grads, c, batched);
        }
    } else {
        let c = bound_between(&norms, 1.0);
        assert!(norms.iter().any(|&n| n < c) && norms.iter().any(|&n| n > c));
        check_against_brute_force("resnet18", &names, &params, &grads, c, batched);
    }
}

#[test]
fn resnet18_matches_brute_force() {
    resnet_case(3, 11);
}

#[test]
fn resnet18_batch_of_one_matches_brute_force() {
    resnet_case(1, 12);
}

fn tiny_gpt2_config() -> Gpt2Config {
    Gpt2Config {
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
        vocab_size: 50,
        n_positions: 16,
        layer_norm_epsilon: 1e-5,
        n_inner: None,
    }
}

/// A tiny GPT-2 in f64, with weights moved well away from the initialisation so that every
/// part of the gradient (and the tied cross term) is sizeable.
fn tiny_gpt2(seed: i64) -> (VarStore, Gpt2) {
    tch::manual_seed(seed);
    let mut vs = VarStore::new(Device::Cpu);
    let model = Gpt2::new(&vs.root(), &tiny_gpt2_config()).unwrap();
    vs.double();
    tch::no_grad(|| {
        for mut p in vs.trainable_variables() {
            let noise = p.randn_like() * 0.2;
            let _ = p.f_add_(&noise).unwrap();
        }
    });
    (vs, model)
}

fn gpt2_case(batch: i64, seed: i64) {
    let (vs, model) = tiny_gpt2(seed);
    let (names, params) = named_params(&vs);
    let ids = Tensor::randint(50, [batch, 7], (Kind::Int64, Device::Cpu));

    let grads = per_sample_grads(batch, &params, |i| {
        let sample = ids.narrow(0, i, 1);
        per_sample_lm_loss(&model.forward(&Tape::disabled(), &sample), &sample).sum(Kind::Double)
    });
    let norms = norms_of(&grads);
    let batched = |tape: &Tape| per_sample_lm_loss(&model.forward(tape, &ids), &ids);
    if batch == 1 {
        for scale in [0.5, 2.0] {
            let c = bound_between(&norms, scale);
            check_against_brute_force("gpt2 B=1", &names, &params, &grads, c, batched);
        }
    } else {
        let c = bound_between(&norms, 1.0);
        assert!(norms.iter().any(|&n| n < c) && norms.iter().any(|&n| n > c));
        check_against_brute_force("gpt2", &names, &params, &grads, c, batched);
    }
}

#[test]
fn tied_gpt2_matches_brute_force() {
    gpt2_case(3, 21);
}

#[test]
fn tied_gpt2_batch_of_one_matches_brute_force() {
    gpt2_case(1, 22);
}

/// Splits each sample's `wte` gradient into its input-side part (the embedding lookup) and
/// its output-side part (the tied LM head) and shows that norms computed as if the two uses
/// were separate parameters (no cross term) are off by far more than the tolerance, while
/// the engine's norms match the true ones.
///
/// The split needs no access to the model's insides: `x_t = wte[id_t] + wpe[t]`, so for one
/// sample the gradient of `wpe`'s row `t` is `dL/dx_t`, and the lookup's part of `wte`'s
/// gradient is those rows added into the rows of the tokens looked up.
#[test]
fn tied_embedding_cross_term_is_exercised() {
    let batch = 3;
    let t = 7;
    let (vs, model) = tiny_gpt2(23);
    let (names, params) = named_params(&vs);
    let wte = names.iter().position(|n| n == "wte.weight").unwrap();
    let wpe = names.iter().position(|n| n == "wpe.weight").unwrap();
    let ids = Tensor::randint(50, [batch, t], (Kind::Int64, Device::Cpu));

    let grads = per_sample_grads(batch, &params, |i| {
        let sample = ids.narrow(0, i, 1);
        per_sample_lm_loss(&model.forward(&Tape::disabled(), &sample), &sample).sum(Kind::Double)
    });
    let norms = norms_of(&grads);

    let mut separate_norms = Vec::new();
    for (i, g) in grads.iter().enumerate() {
        let dx = g[wpe].narrow(0, 0, t);
        let input_side = g[wte].zeros_like().index_add(0, &ids.get(i as i64), &dx);
        let output_side = &g[wte] - &input_side;
        let cross = (&input_side * &output_side)
            .sum(Kind::Double)
            .double_value(&[]);
        assert!(
            squared_norm(&output_side) > 0.0 && squared_norm(&input_side) > 0.0,
            "both uses must contribute"
        );
        // |a + b|^2 = |a|^2 + |b|^2 + 2<a, b>: dropping the cross term.
        let separate = (norms[i].powi(2) - 2.0 * cross).sqrt();
        let rel = (separate - norms[i]).abs() / norms[i];
        assert!(
            rel > 10.0 * TOLERANCE,
            "sample {i}: the cross term changes the norm by only {rel:e}; the test would not notice it"
        );
        separate_norms.push(separate);
    }

    let tape = Tape::new();
    let loss = per_sample_lm_loss(&model.forward(&tape, &ids), &ids);
    let clipped = clip_per_sample(
        &tape,
        &loss,
        &params,
        &ClipConfig {
            max_grad_norm: 1.0,
            ..Default::default()
        },
    )
    .unwrap();
    let engine = Vec::<f64>::try_from(clipped.norms).unwrap();
    for i in 0..batch as usize {
        assert!((engine[i] - norms[i]).abs() / norms[i] < TOLERANCE);
        assert!((engine[i] - separate_norms[i]).abs() / separate_norms[i] > 10.0 * TOLERANCE);
    }
}
