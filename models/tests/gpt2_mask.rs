//! GPT-2 on right-padded batches: the attention mask and the masked LM loss.
//!
//! The reference for every check is the model run one sequence at a time on the UNPADDED
//! sequence, with plain autograd (`backward`, `.grad()`), so padding, masking and the
//! clipping engine are all checked against a computation that has none of them.

use bastion_dp::clip::{clip_per_sample, trainable_params, ClipConfig, Tape};
use bastion_models::gpt2::{Gpt2, Gpt2Config};
use bastion_models::{per_sample_lm_loss, per_sample_lm_loss_masked};
use tch::{nn::VarStore, Device, Kind, Tensor};

const VOCAB: i64 = 50;
const T: i64 = 9;

fn config() -> Gpt2Config {
    Gpt2Config {
        n_layer: 2,
        n_head: 4,
        n_embd: 32,
        vocab_size: VOCAB,
        n_positions: 16,
        layer_norm_epsilon: 1e-5,
        n_inner: None,
    }
}

/// A tiny GPT-2 of the given kind, weights moved away from the initialisation so every part
/// of the gradient is sizeable.
fn model(seed: i64, kind: Kind) -> (VarStore, Gpt2) {
    tch::manual_seed(seed);
    let mut vs = VarStore::new(Device::Cpu);
    let model = Gpt2::new(&vs.root(), &config()).unwrap();
    if kind == Kind::Double {
        vs.double();
    }
    tch::no_grad(|| {
        for mut p in vs.trainable_variables() {
            let noise = p.randn_like() * 0.2;
            let _ = p.f_add_(&noise).unwrap();
        }
    });
    (vs, model)
}

/// A right-padded batch: ids `(B, T)` whose padded positions hold random ids (which must not
/// matter), and the mask `(B, T)` as int64.
fn padded_batch(lengths: &[i64]) -> (Tensor, Tensor) {
    let b = lengths.len() as i64;
    let ids = Tensor::randint(VOCAB, [b, T], (Kind::Int64, Device::Cpu));
    let positions = Tensor::arange(T, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let mask = positions
        .lt_tensor(&Tensor::from_slice(lengths).unsqueeze(1))
        .to_kind(Kind::Int64);
    (ids, mask)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// One sequence's gradient with plain autograd on the unpadded sequence: `None` when it has
/// fewer than 2 tokens (nothing to predict, so no gradient).
fn unpadded_grad(model: &Gpt2, params: &[Tensor], ids: &Tensor, len: i64) -> Option<Vec<Tensor>> {
    if len < 2 {
        return None;
    }
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let seq = ids.narrow(0, 0, len).unsqueeze(0);
    let logits = model.forward(&Tape::disabled(), &seq);
    per_sample_lm_loss(&logits, &seq)
        .sum(logits.kind())
        .backward();
    Some(params.iter().map(|p| p.grad().copy()).collect())
}

fn norm_of(grads: &[Tensor]) -> f64 {
    grads
        .iter()
        .map(|g| g.square().sum(Kind::Double).double_value(&[]))
        .sum::<f64>()
        .sqrt()
}

/// Clipped per-sample gradients of a padded, masked batch equal those of separate backward
/// passes over each unpadded sequence, clipped and summed, for a bound that clips some
/// samples and not others. Includes a 1-token and an all-padding sample (zero gradient, no
/// NaN).
fn padded_batch_matches_unpadded(kind: Kind, materialize_budget_bytes: usize, tol: f64) {
    let (vs, model) = model(21, kind);
    let params = trainable_params(&vs);
    let lengths = [9i64, 6, 3, 2, 1, 0, 7];
    let (ids, mask) = padded_batch(&lengths);

    let reference: Vec<Option<Vec<Tensor>>> = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| unpadded_grad(&model, &params, &ids.get(i as i64), len))
        .collect();
    let ref_norms: Vec<f64> = reference
        .iter()
        .map(|g| g.as_deref().map_or(0.0, norm_of))
        .collect();
    // The median nonzero norm: some samples are clipped, some are not.
    let mut nonzero: Vec<f64> = ref_norms.iter().copied().filter(|&n| n > 0.0).collect();
    nonzero.sort_by(f64::total_cmp);
    let c = nonzero[nonzero.len() / 2];
    assert!(nonzero.iter().any(|&n| n > c * 1.01) && nonzero.iter().any(|&n| n < c * 0.99));
    let expected: Vec<Tensor> = params
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let mut sum = p.zeros_like().detach().to_kind(Kind::Double);
            for (g, &n) in reference.iter().zip(&ref_norms) {
                if let Some(g) = g {
                    sum += g[j].to_kind(Kind::Double) * (c / n).min(1.0);
                }
            }
            sum
        })
        .collect();

    let tape = Tape::new();
    let logits = model.forward_masked(&tape, &ids, Some(&mask));
    let loss = per_sample_lm_loss_masked(&logits, &ids, &mask);
    assert_eq!(loss.size(), [lengths.len() as i64]);
    let clipped = clip_per_sample(
        &tape,
        &loss,
        &params,
        &ClipConfig {
            max_grad_norm: c,
            materialize_budget_bytes,
            ..ClipConfig::default()
        },
    )
    .unwrap();
    let norms = Vec::<f64>::try_from(clipped.norms.to_kind(Kind::Double)).unwrap();
    for (i, (&got, &want)) in norms.iter().zip(&ref_norms).enumerate() {
        assert!(got.is_finite(), "sample {i}: norm {got}");
        assert!(
            (got - want).abs() <= tol * want.max(1.0),
            "sample {i} (length {}): norm {got} vs {want}",
            lengths[i]
        );
    }
    for (j, (got, want)) in clipped.grads.iter().zip(&expected).enumerate() {
        let diff = max_abs_diff(got, want);
        assert!(
            diff < tol,
            "parameter {j} {:?}: clipped sum off by {diff}",
            got.size()
        );
    }
}

#[test]
fn padded_clipped_gradients_equal_unpadded_backward_f64_ghost() {
    padded_batch_matches_unpadded(Kind::Double, 0, 1e-8);
}

#[test]
fn padded_clipped_gradients_equal_unpadded_backward_f64_materialized() {
    padded_batch_matches_unpadded(Kind::Double, 64 << 20, 1e-8);
}

#[test]
fn padded_clipped_gradients_equal_unpadded_backward_f32() {
    padded_batch_matches_unpadded(
        Kind::Float,
        ClipConfig::default().materialize_budget_bytes,
        1e-4,
    );
}

/// Logits at real positions of a padded batch equal those of each unpadded sequence; the
/// unmasked fast path agrees with an all-ones mask; padded positions' ids do not matter.
#[test]
fn real_position_logits_equal_unpadded() {
    let (_vs, model) = model(5, Kind::Double);
    let lengths = [9i64, 4, 1, 6];
    let (ids, mask) = padded_batch(&lengths);
    let tape = Tape::disabled();
    let logits = tch::no_grad(|| model.forward_masked(&tape, &ids, Some(&mask)));
    assert!(
        bool::try_from(logits.isfinite().all()).unwrap(),
        "non-finite logits"
    );
    for (i, &len) in lengths.iter().enumerate() {
        let seq = ids.get(i as i64).narrow(0, 0, len).unsqueeze(0);
        let alone = tch::no_grad(|| model.forward(&tape, &seq));
        let padded = logits.get(i as i64).narrow(0, 0, len).unsqueeze(0);
        let diff = max_abs_diff(&padded, &alone);
        assert!(diff < 1e-10, "sample {i}: {diff}");
    }
    // Other (even out-of-vocabulary) ids at the padded positions change no real logit.
    let other = ids.where_self(&mask.ne(0), &Tensor::from(-7i64));
    let logits2 = tch::no_grad(|| model.forward_masked(&tape, &other, Some(&mask)));
    let real = mask.ne(0).unsqueeze(-1);
    let diff = max_abs_diff(
        &logits.masked_fill(&real.logical_not(), 0.0),
        &logits2.masked_fill(&real.logical_not(), 0.0),
    );
    assert_eq!(diff, 0.0);

    let ones = Tensor::ones([4, T], (Kind::Bool, Device::Cpu));
    let full = tch::no_grad(|| model.forward_masked(&tape, &ids, Some(&ones)));
    let fast = tch::no_grad(|| model.forward(&tape, &ids));
    assert!(max_abs_diff(&full, &fast) < 1e-10);
}

/// GPT-2 written out op by op from the named tensors, attention as an explicit softmax over
/// the keys that `allowed` (`(T, T)`, query by key) admits: an independent reference for
/// masks with holes.
fn reference_logits(model: &Gpt2, ids: &Tensor, allowed: &Tensor) -> Tensor {
    let w: std::collections::HashMap<String, Tensor> =
        model.named_parameters().into_iter().collect();
    let cfg = model.config();
    let (t, c, heads) = (ids.size()[0], cfg.n_embd, cfg.n_head);
    let d = c / heads;
    let norm = |x: &Tensor, name: &str| {
        let mean = x.mean_dim(-1, true, Kind::Double);
        let var = (x - &mean).square().mean_dim(-1, true, Kind::Double);
        (x - mean) / (var + cfg.layer_norm_epsilon).sqrt() * &w[&format!("{name}.weight")]
            + &w[&format!("{name}.bias")]
    };
    let dense = |x: &Tensor, name: &str| {
        x.matmul(&w[&format!("{name}.weight")].tr()) + &w[&format!("{name}.bias")]
    };
    let mut x = w["wte.weight"].index_select(0, ids) + w["wpe.weight"].narrow(0, 0, t);
    for i in 0..cfg.n_layer {
        let h = norm(&x, &format!("h.{i}.ln_1"));
        let qkv = dense(&h, &format!("h.{i}.attn.c_attn"));
        let mut out = Vec::new();
        for head in 0..heads {
            let q = qkv.narrow(1, head * d, d);
            let k = qkv.narrow(1, c + head * d, d);
            let v = qkv.narrow(1, 2 * c + head * d, d);
            let scores = q.matmul(&k.tr()) / (d as f64).sqrt();
            let scores = scores.masked_fill(&allowed.logical_not(), f64::NEG_INFINITY);
            let p = scores.exp() / scores.exp().sum_dim_intlist(1, true, Kind::Double);
            out.push(p.matmul(&v));
        }
        x = &x + dense(&Tensor::cat(&out, 1), &format!("h.{i}.attn.c_proj"));
        let h = norm(&x, &format!("h.{i}.ln_2"));
        let m = dense(&h, &format!("h.{i}.mlp.c_fc"));
        let gelu = &m
            * 0.5
            * ((&m + m.pow_tensor_scalar(3) * 0.044715) * (2.0 / std::f64::consts::PI).sqrt())
                .tanh()
                .g_add_scalar(1.0);
        x = &x + dense(&gelu, &format!("h.{i}.mlp.c_proj"));
    }
    norm(&x, "ln_f").matmul(&w["wte.weight"].tr())
}

/// A mask with holes (not just right padding): every real position's logits equal the
/// reference that lets query i see exactly the real keys j <= i. Ignoring the mask would
/// let positions after a hole see it, and fail this.
#[test]
fn holes_in_the_mask_match_reference_attention() {
    let (_vs, model) = model(8, Kind::Double);
    let tape = Tape::disabled();
    let ids = Tensor::randint(VOCAB, [2, T], (Kind::Int64, Device::Cpu));
    let mask = Tensor::from_slice(&[
        1i64, 1, 1, 0, 1, 1, 0, 0, 1, //
        1, 0, 1, 1, 1, 1, 1, 0, 0,
    ])
    .view([2, T]);
    let logits = tch::no_grad(|| model.forward_masked(&tape, &ids, Some(&mask)));
    let causal = Tensor::ones([T, T], (Kind::Bool, Device::Cpu)).tril(0);
    for b in 0..2 {
        let real = mask.get(b).ne(0);
        let allowed = causal.logical_and(&real.unsqueeze(0));
        let want = tch::no_grad(|| reference_logits(&model, &ids.get(b), &allowed));
        let got = logits.get(b);
        for i in 0..T {
            if mask.int64_value(&[b, i]) == 1 {
                let diff = max_abs_diff(&got.get(i), &want.get(i));
                assert!(diff < 1e-10, "sample {b}, position {i}: {diff}");
            }
        }
    }
    // The reference itself agrees with the unmasked model on a full mask.
    let full = Tensor::ones([T], (Kind::Bool, Device::Cpu));
    let want = tch::no_grad(|| {
        reference_logits(&model, &ids.get(0), &causal.logical_and(&full.unsqueeze(0)))
    });
    let got = tch::no_grad(|| model.forward(&tape, &ids.narrow(0, 0, 1))).get(0);
    assert!(max_abs_diff(&got, &want) < 1e-10);
}

/// A batch that is all padding: finite logits, zero loss, zero norms and zero finite
/// gradients (no NaN from empty softmax rows).
#[test]
fn all_padding_batch_is_finite_and_zero() {
    let (vs, model) = model(9, Kind::Float);
    let params = trainable_params(&vs);
    let ids = Tensor::randint(VOCAB, [2, T], (Kind::Int64, Device::Cpu));
    let mask = Tensor::zeros([2, T], (Kind::Int64, Device::Cpu));
    let tape = Tape::new();
    let logits = model.forward_masked(&tape, &ids, Some(&mask));
    assert!(bool::try_from(logits.isfinite().all()).unwrap());
    let loss = per_sample_lm_loss_masked(&logits, &ids, &mask);
    assert_eq!(Vec::<f32>::try_from(&loss).unwrap(), [0.0, 0.0]);
    let clipped = clip_per_sample(&tape, &loss, &params, &ClipConfig::default()).unwrap();
    assert_eq!(Vec::<f32>::try_from(&clipped.norms).unwrap(), [0.0, 0.0]);
    for g in &clipped.grads {
        assert_eq!(g.abs().max().double_value(&[]), 0.0);
    }
}
