//! ROC AUC for the job report: binary (scores of class 1) and macro one-vs-rest for more
//! classes, from predicted probabilities.
//!
//! AUC is the Mann-Whitney statistic: the probability that a random positive scores above a
//! random negative, ties counting one half. It is computed from average ranks (tied scores
//! share the mean of their ranks) in O(n log n), which equals counting pairs.

use tch::{Kind, Tensor};

/// ROC AUC of `scores` against `positive` labels. `None` when either class is absent (AUC is
/// undefined) or a score is NaN.
pub fn binary_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len(), "one label per score");
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let pos = positive.iter().filter(|&&p| p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the positives' ranks (1-based), each tie group given its average rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        // -0.0 and 0.0 are equal scores: compare with ==, not total_cmp.
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + 1 + j) as f64 / 2.0;
        let positives = order[i..j].iter().filter(|&&k| positive[k]).count();
        rank_sum += average_rank * positives as f64;
        i = j;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Macro one-vs-rest AUC: the mean over classes of the AUC of `probs[:, k]` for "class k"
/// against the rest. `probs` is row-major `(N, K)`. A class absent from `labels` (or the only
/// one present) has no AUC and is left out of the mean; `None` when no class has one. With K = 2 this is [`binary_auc`] on column 1 (both classes give the
/// same value).
pub fn macro_ovr_auc(probs: &[f64], classes: usize, labels: &[usize]) -> Option<f64> {
    assert_eq!(probs.len(), labels.len() * classes, "probs must be (N, K)");
    if classes == 2 {
        let scores: Vec<f64> = probs.chunks_exact(2).map(|r| r[1]).collect();
        let positive: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        return binary_auc(&scores, &positive);
    }
    let aucs: Vec<f64> = (0..classes)
        .filter_map(|k| {
            let scores: Vec<f64> = probs.chunks_exact(classes).map(|r| r[k]).collect();
            let positive: Vec<bool> = labels.iter().map(|&l| l == k).collect();
            binary_auc(&scores, &positive)
        })
        .collect();
    (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
}

/// [`macro_ovr_auc`] (binary AUC for two classes) of probabilities `(N, K)` and labels
/// `(N,)` tensors, e.g. a model's softmax outputs on the eval set.
pub fn classification_auc(probs: &Tensor, labels: &Tensor) -> Option<f64> {
    let size = probs.size();
    let [n, k] = size[..] else {
        panic!("probabilities must be (N, K), got {size:?}");
    };
    let probs = Vec::<f64>::try_from(&probs.to_kind(Kind::Double).reshape([-1])).ok()?;
    let labels = Vec::<i64>::try_from(&labels.to_kind(Kind::Int64).reshape([-1])).ok()?;
    assert_eq!(labels.len() as i64, n, "one label per row");
    let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    macro_ovr_auc(&probs, k as usize, &labels)
}
