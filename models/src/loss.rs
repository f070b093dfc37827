//! Per-sample losses, one entry per sample and never reduced over the batch: DP-SGD clips
//! each sample's gradient, so the clipping engine needs each sample's own loss.

use tch::{Kind, Reduction, Tensor};

/// Cross-entropy of `logits` `(B, classes)` against int64 `labels` `(B,)`, per sample: `(B,)`.
pub fn per_sample_cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0)
}

/// Language-model loss per sample: the mean over positions `0..T-1` of the cross-entropy of
/// predicting token `t + 1` from `logits[:, t]`. `logits` is `(B, T, V)`, `ids` the int64
/// input `(B, T)`; the result is `(B,)`.
///
/// # Panics
/// If `T < 2` (nothing to predict) or the shapes disagree.
pub fn per_sample_lm_loss(logits: &Tensor, ids: &Tensor) -> Tensor {
    let (batch, t, _) = logits.size3().expect("logits must be (B, T, V)");
    assert_eq!(
        ids.size(),
        [batch, t],
        "ids must be (B, T) matching the logits"
    );
    assert!(
        t >= 2,
        "a sequence of {t} token(s) has no next token to predict"
    );
    let predictions = logits.narrow(1, 0, t - 1);
    let targets = ids.narrow(1, 1, t - 1).unsqueeze(-1);
    let log_probs = predictions.log_softmax(-1, predictions.kind());
    let token_losses = log_probs.gather(-1, &targets, false).squeeze_dim(-1).neg();
    token_losses.mean_dim(1, false, None::<Kind>)
}

/// Language-model loss per sample for a right-padded batch: `(B,)`.
///
/// `logits` is `(B, T, V)`, `ids` the int64 input `(B, T)`, `mask` `(B, T)` with 1 (or
/// `true`) for a real token and 0 for padding (any integer, bool or float kind). Position `t`
/// predicts token `t + 1`, and the prediction counts only when both `t` and `t + 1` are real
/// tokens. Each sample's loss is the mean over its own counted predictions, so it equals
/// [`per_sample_lm_loss`] of the unpadded sequence.
///
/// A sample with fewer than 2 real tokens has nothing to predict: its loss is 0 (still
/// connected to the graph), so it adds nothing to the gradient and its per-sample gradient
/// norm is 0. Padded positions may hold any id, even one outside the vocabulary: they are
/// never gathered. `T < 2` gives zeros for every sample.
///
/// # Panics
/// If the shapes disagree (the message names the tensor).
pub fn per_sample_lm_loss_masked(logits: &Tensor, ids: &Tensor, mask: &Tensor) -> Tensor {
    let (batch, t, _) = logits.size3().expect("logits must be (B, T, V)");
    assert_eq!(
        ids.size(),
        [batch, t],
        "ids must be (B, T) matching the logits"
    );
    assert_eq!(
        mask.size(),
        [batch, t],
        "mask must be (B, T) matching the logits"
    );
    let n = (t - 1).max(0);
    let real = mask.ne(0);
    // A prediction counts when its input and its target are both real tokens.
    let counted = real.narrow(1, 0, n).logical_and(&real.narrow(1, 1, n));
    let predictions = logits.narrow(1, 0, n);
    // Padded targets become 0 so gather stays in range; their losses are masked out below.
    let targets = ids
        .narrow(1, 1, n)
        .masked_fill(&counted.logical_not(), 0)
        .unsqueeze(-1);
    let log_probs = predictions.log_softmax(-1, predictions.kind());
    let token_losses = log_probs.gather(-1, &targets, false).squeeze_dim(-1).neg();
    // Multiplying by the 0/1 weight (not indexing) keeps one graph for the whole batch; the
    // masked entries are finite, so their gradient is exactly 0.
    let weight = counted.to_kind(token_losses.kind());
    let count = weight
        .sum_dim_intlist(1, false, None::<Kind>)
        .clamp_min(1.0);
    (token_losses * &weight).sum_dim_intlist(1, false, None::<Kind>) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each sample's loss is the mean of its own token losses, computed by hand.
    #[test]
    fn lm_loss_is_mean_next_token_cross_entropy_per_sample() {
        let logits = Tensor::from_slice(&[
            0.0f64, 1.0, 2.0, /* t=1 */ 1.0, 1.0, 0.0, /* t=2 */ 5.0, 0.0, 0.0, //
            2.0, 0.0, 0.0, /* t=1 */ 0.0, 3.0, 0.0, /* t=2 */ 0.0, 0.0, 0.0,
        ])
        .view([2, 3, 3]);
        let ids = Tensor::from_slice(&[0i64, 2, 1, 1, 0, 1]).view([2, 3]);
        let loss = per_sample_lm_loss(&logits, &ids);
        let nll = |row: [f64; 3], target: usize| {
            -(row[target].exp() / row.iter().map(|x| x.exp()).sum::<f64>()).ln()
        };
        let expected = [
            (nll([0.0, 1.0, 2.0], 2) + nll([1.0, 1.0, 0.0], 1)) / 2.0,
            (nll([2.0, 0.0, 0.0], 0) + nll([0.0, 3.0, 0.0], 1)) / 2.0,
        ];
        for (i, e) in expected.iter().enumerate() {
            assert!((loss.double_value(&[i as i64]) - e).abs() < 1e-12);
        }
    }

    /// The masked loss equals the unmasked loss of each unpadded sequence, computed one
    /// sequence at a time; short samples give 0; padded ids outside the vocabulary are fine.
    #[test]
    fn masked_lm_loss_equals_unpadded_loss() {
        tch::manual_seed(3);
        let (v, t) = (7, 6);
        let lengths = [6i64, 4, 2, 1, 0];
        let b = lengths.len() as i64;
        let logits = Tensor::randn([b, t, v], (Kind::Double, tch::Device::Cpu));
        let ids = Tensor::randint(v, [b, t], (Kind::Int64, tch::Device::Cpu));
        let positions = Tensor::arange(t, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0);
        let lens = Tensor::from_slice(&lengths).unsqueeze(1);
        let mask = positions.lt_tensor(&lens).to_kind(Kind::Int64);
        // Padding ids far outside the vocabulary must not be looked up.
        let ids = ids.where_self(&mask.ne(0), &Tensor::from(-100i64));
        let loss = per_sample_lm_loss_masked(&logits, &ids, &mask);
        assert_eq!(loss.size(), [b]);
        for (i, &len) in lengths.iter().enumerate() {
            let got = loss.double_value(&[i as i64]);
            let expected = if len < 2 {
                0.0
            } else {
                let l = logits.get(i as i64).narrow(0, 0, len).unsqueeze(0);
                let s = ids.get(i as i64).narrow(0, 0, len).unsqueeze(0);
                per_sample_lm_loss(&l, &s).double_value(&[0])
            };
            assert!(
                (got - expected).abs() < 1e-12,
                "sample {i}: {got} vs {expected}"
            );
        }
        // A full mask is the unmasked loss.
        let full = Tensor::ones([b, t], (Kind::Bool, tch::Device::Cpu));
        let ids_full = ids.clamp_min(0);
        let diff = (per_sample_lm_loss_masked(&logits, &ids_full, &full)
            - per_sample_lm_loss(&logits, &ids_full))
        .abs()
        .max()
        .double_value(&[]);
        assert!(diff < 1e-12, "{diff}");
    }

    /// A hole in the middle of the mask removes exactly the two predictions that touch it.
    #[test]
    fn masked_lm_loss_skips_predictions_touching_a_hole() {
        tch::manual_seed(4);
        let logits = Tensor::randn([1, 5, 4], (Kind::Double, tch::Device::Cpu));
        let ids = Tensor::from_slice(&[1i64, 2, 3, 0, 1]).view([1, 5]);
        let mask = Tensor::from_slice(&[1i64, 1, 0, 1, 1]).view([1, 5]);
        let loss = per_sample_lm_loss_masked(&logits, &ids, &mask).double_value(&[0]);
        let lp = logits.log_softmax(-1, Kind::Double);
        // Counted: 0 -> 1 and 3 -> 4.
        let expected = -(lp.double_value(&[0, 0, 2]) + lp.double_value(&[0, 3, 1])) / 2.0;
        assert!((loss - expected).abs() < 1e-12, "{loss} vs {expected}");
    }
}
