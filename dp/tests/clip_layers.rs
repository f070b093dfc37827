//! Every layer type of the clipping engine against brute force: one sample at a time through
//! plain autograd, clip each gradient to `C`, sum. Per-sample norms and clipped sums must agree
//! to 1e-4 relative, with ghost norms (budget 0), with materialised per-sample gradients, and with
//! the timed per-layer choice.

use bastion_dp::clip::layers::{Conv2d, Conv2dConfig, Embedding, GroupNorm, LayerNorm, Linear};
use bastion_dp::clip::{
    clip_per_sample, trainable_params, ClipConfig, ClipError, LayerChoice, Tape,
};
use tch::{nn, Device, Kind, Tensor};

/// A model under test: builds its per-sample loss `(B,)` from a batch.
type Model<'a> = Box<dyn Fn(&Tape, &Tensor) -> Tensor + 'a>;

/// A nonlinear per-sample readout, so output gradients depend on the outputs.
fn readout(y: &Tensor) -> Tensor {
    let flat = y.flatten(1, -1);
    let weights = Tensor::linspace(-1.0, 1.5, flat.size()[1], (Kind::Double, Device::Cpu));
    (&flat * weights).sum_dim_intlist(&[1i64][..], false, Kind::Double)
        + flat
            .square()
            .sum_dim_intlist(&[1i64][..], false, Kind::Double)
            * 0.3
}

fn brute_force(
    model: &Model,
    input: &Tensor,
    params: &[Tensor],
    c: f64,
) -> (Vec<f64>, Vec<Tensor>) {
    let batch = input.size()[0];
    let mut norms = Vec::new();
    let mut sums: Vec<Tensor> = params.iter().map(|p| p.zeros_like().detach()).collect();
    for b in 0..batch {
        let loss = model(&Tape::disabled(), &input.narrow(0, b, 1)).sum(Kind::Double);
        let grads = Tensor::run_backward(&[&loss], params, false, false);
        let norm: f64 = grads
            .iter()
            .map(|g| g.square().sum(Kind::Double).double_value(&[]))
            .sum::<f64>()
            .sqrt();
        let factor = if norm > 0.0 { (c / norm).min(1.0) } else { 1.0 };
        for (s, g) in sums.iter_mut().zip(&grads) {
            *s = &*s + g * factor;
        }
        norms.push(norm);
    }
    (norms, sums)
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.size(), reference.size(), "{what}: shape");
    let scale = reference.abs().max().double_value(&[]).max(1e-12);
    let err = (ours - reference).abs().max().double_value(&[]);
    assert!(
        err / scale < 1e-4,
        "{what}: max error {err} vs scale {scale}"
    );
}

/// Checks `model` on `input` with ghost norms and with materialisation, at a clipping bound
/// set so that some samples are clipped and others not.
fn check(name: &str, vs: &nn::VarStore, model: Model, input: &Tensor) {
    let params = trainable_params(vs);
    let (ref_norms, ref_sums) = brute_force(&model, input, &params, f64::INFINITY);
    let mut sorted = ref_norms.clone();
    sorted.sort_by(f64::total_cmp);
    let c = if sorted.is_empty() {
        1.0
    } else {
        sorted[sorted.len() / 2] * 0.999 + 1e-9
    };
    let (ref_norms, ref_sums_clipped) = brute_force(&model, input, &params, c);
    assert!(ref_sums.len() == ref_sums_clipped.len());
    // Ghost norms everywhere; materialised wherever the cost model says it saves work; and
    // the timed choice, which may take either route per layer and sums convolutions either
    // way.
    for (budget, layer_choice) in [
        (0usize, LayerChoice::CostModel),
        (1 << 30, LayerChoice::CostModel),
        (1 << 30, LayerChoice::Measured),
    ] {
        let tape = Tape::new();
        let loss = model(&tape, input);
        let config = ClipConfig {
            max_grad_norm: c,
            materialize_budget_bytes: budget,
            layer_choice,
        };
        let clipped = clip_per_sample(&tape, &loss, &params, &config).unwrap();
        let ref_norms = Tensor::from_slice(&ref_norms);
        assert_close(
            &format!("{name} norms (budget {budget}, {layer_choice:?})"),
            &clipped.norms,
            &ref_norms,
        );
        for (i, (ours, reference)) in clipped.grads.iter().zip(&ref_sums_clipped).enumerate() {
            assert_close(
                &format!("{name} param {i} clipped sum (budget {budget}, {layer_choice:?})"),
                ours,
                reference,
            );
        }
    }
}

fn store() -> nn::VarStore {
    tch::manual_seed(7);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    vs
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Double, Device::Cpu))
}

#[test]
fn linear_on_vectors_and_sequences() {
    for (batch, seq, din, dout, bias) in [
        (5, 0, 6, 3, true),
        (4, 7, 5, 4, true),
        (3, 9, 4, 6, false),
        (1, 3, 2, 2, true),
    ] {
        let vs = store();
        let layer = Linear::new(&vs.root(), din, dout, bias);
        let input = if seq == 0 {
            randn(&[batch, din])
        } else {
            randn(&[batch, seq, din])
        };
        check(
            "linear",
            &vs,
            Box::new(move |t, x| readout(&layer.forward(t, x))),
            &input,
        );
    }
}

#[test]
fn conv2d_stride_padding_dilation_groups() {
    let cases = [
        // (in, out, kernel, stride, padding, dilation, groups, bias, h, w)
        (3, 4, 3, 1, 1, 1, 1, true, 6, 6),
        (4, 6, 3, 2, 1, 1, 2, true, 7, 5),
        (2, 3, 2, 1, 0, 2, 1, false, 6, 7),
        (4, 4, 3, 2, 2, 2, 4, true, 9, 8),
        (3, 5, 1, 1, 0, 1, 1, true, 4, 4),
    ];
    for (cin, cout, k, s, p, d, g, bias, h, w) in cases {
        let vs = store();
        let config = Conv2dConfig {
            stride: [s, s],
            padding: [p, p],
            dilation: [d, d],
            groups: g,
            bias,
        };
        let layer = Conv2d::new(&vs.root(), cin, cout, k, config);
        let input = randn(&[4, cin, h, w]);
        check(
            "conv2d",
            &vs,
            Box::new(move |t, x| readout(&layer.forward(t, x))),
            &input,
        );
    }
}

#[test]
fn embedding_with_repeated_indices() {
    let vs = store();
    let layer = Embedding::new(&vs.root(), 11, 5, 1.0);
    // Repeats within a sample exercise the same-row terms of the ghost norm.
    let input = Tensor::from_slice(&[1i64, 3, 1, 7, 3, 3, 0, 10, 10, 2, 5, 5]).reshape([3, 4]);
    check(
        "embedding",
        &vs,
        Box::new(move |t, x| readout(&layer.forward(t, x))),
        &input,
    );
}

#[test]
fn layer_norm_and_group_norm() {
    let vs = store();
    let ln = LayerNorm::new(&vs.root().sub("ln"), 6, 1e-5);
    let lin = Linear::new(&vs.root().sub("lin"), 6, 6, true);
    // Perturb the affine so it is not the identity.
    tch::no_grad(|| {
        ln.weight.shallow_clone().copy_(&randn(&[6]));
        ln.bias.shallow_clone().copy_(&randn(&[6]));
    });
    let input = randn(&[4, 5, 6]);
    check(
        "layernorm seq",
        &vs,
        Box::new(move |t, x| readout(&ln.forward(t, &lin.forward(t, x)))),
        &input,
    );

    let vs = store();
    let ln = LayerNorm::new(&vs.root(), 6, 1e-5);
    check(
        "layernorm vec",
        &vs,
        Box::new(move |t, x| readout(&ln.forward(t, x))),
        &randn(&[5, 6]),
    );

    let vs = store();
    let gn = GroupNorm::new(&vs.root().sub("gn"), 2, 4, 1e-5);
    let conv = Conv2d::new(&vs.root().sub("conv"), 3, 4, 3, Conv2dConfig::default());
    tch::no_grad(|| {
        gn.weight.shallow_clone().copy_(&randn(&[4]));
        gn.bias.shallow_clone().copy_(&randn(&[4]));
    });
    let input = randn(&[4, 3, 6, 5]);
    check(
        "groupnorm",
        &vs,
        Box::new(move |t, x| readout(&gn.forward(t, &conv.forward(t, x)))),
        &input,
    );
}

#[test]
fn tied_embedding_and_output_layer() {
    let vs = store();
    let emb = Embedding::new(&vs.root().sub("wte"), 13, 6, 1.0);
    let mid = Linear::new(&vs.root().sub("mid"), 6, 6, true);
    let input =
        Tensor::from_slice(&[1i64, 3, 1, 7, 12, 3, 3, 0, 0, 2, 5, 5, 9, 9, 9]).reshape([3, 5]);
    let model = move |t: &Tape, x: &Tensor| {
        let h = mid.forward(t, &emb.forward(t, x)).tanh();
        readout(&emb.attend(t, &h))
    };
    check("tied", &vs, Box::new(model), &input);
}

#[test]
fn frozen_parameters_are_skipped() {
    let vs = store();
    let a = Linear::new(&vs.root().sub("a"), 4, 5, true);
    let b = Linear::new(&vs.root().sub("b"), 5, 3, true);
    // Freeze layer a entirely, and b's bias: LoRA-style partial training.
    for t in [
        &a.weight,
        a.bias.as_ref().unwrap(),
        b.bias.as_ref().unwrap(),
    ] {
        let _ = t.set_requires_grad(false);
    }
    let params = trainable_params(&vs);
    assert_eq!(params.len(), 1, "only b.weight stays trainable");
    let input = randn(&[4, 4]);
    check(
        "frozen",
        &vs,
        Box::new(move |t, x| readout(&b.forward(t, &a.forward(t, x).relu()))),
        &input,
    );
}

#[test]
fn empty_batch_gives_zero_sums() {
    let vs = store();
    let layer = Linear::new(&vs.root(), 3, 2, true);
    let tape = Tape::new();
    let loss = readout(&layer.forward(&tape, &randn(&[0, 3])));
    let params = trainable_params(&vs);
    let clipped = clip_per_sample(&tape, &loss, &params, &ClipConfig::default()).unwrap();
    assert_eq!(clipped.norms.size(), vec![0]);
    for (g, p) in clipped.grads.iter().zip(&params) {
        assert_eq!(g.size(), p.size());
        assert_eq!(g.abs().sum(Kind::Double).double_value(&[]), 0.0);
    }
}

#[test]
fn misuse_is_refused_with_a_reason() {
    let vs = store();
    let layer = Linear::new(&vs.root(), 3, 2, true);
    let params = trainable_params(&vs);
    let input = randn(&[4, 3]);

    // A batch-reduced loss.
    let tape = Tape::new();
    let loss = readout(&layer.forward(&tape, &input)).sum(Kind::Double);
    let err = clip_per_sample(&tape, &loss, &params, &ClipConfig::default()).unwrap_err();
    assert!(matches!(err, ClipError::LossShape { .. }), "{err}");

    // A forward pass that recorded nothing.
    let tape = Tape::new();
    let loss = readout(&layer.forward(&Tape::disabled(), &input));
    let err = clip_per_sample(&tape, &loss, &params, &ClipConfig::default()).unwrap_err();
    assert!(matches!(err, ClipError::Unrecorded { .. }), "{err}");

    // A bad bound.
    let tape = Tape::new();
    let loss = readout(&layer.forward(&tape, &input));
    let config = ClipConfig {
        max_grad_norm: 0.0,
        ..ClipConfig::default()
    };
    let err = clip_per_sample(&tape, &loss, &params, &config).unwrap_err();
    assert!(matches!(err, ClipError::MaxGradNorm(_)), "{err}");
}
