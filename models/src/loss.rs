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
}
