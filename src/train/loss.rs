//! The training loss: softmax cross-entropy on logits with its fused gradient, and the same
//! on log-probabilities (models that end in LogSoftmax).
//!
//! For logits z of one sample with label y, p = softmax(z) and ℓ = −log p_y = logsumexp(z) − z_y;
//! ∂ℓ/∂z = p − onehot(y). Over a batch the loss is the mean over the `total` samples of the
//! (possibly accumulated) batch, so each sample's gradient is scaled by 1/total.

use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};

/// The loss of a batch (or a part of one).
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// Σ of the per-sample losses (not averaged).
    pub loss_sum: f64,
    /// Samples whose largest logit is their label.
    pub correct: usize,
    /// ∂(mean loss over `total` samples)/∂logits.
    pub grad: Array2<f32>,
}

fn check_labels(labels: &[i64], samples: usize, classes: usize) -> Result<()> {
    if labels.len() != samples {
        return Err(Error::Input {
            name: "labels".into(),
            msg: format!("{} labels for {samples} samples", labels.len()),
        });
    }
    if let Some((i, &bad)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &y)| y < 0 || y as usize >= classes)
    {
        return Err(Error::Input {
            name: "labels".into(),
            msg: format!(
                "label {bad} of sample {i} is not a class index (the model has {classes} classes)"
            ),
        });
    }
    Ok(())
}

/// Softmax cross-entropy of `logits` [N, C] against `labels`, the gradient scaled by 1/`total`.
pub fn softmax_cross_entropy(
    logits: ArrayView2<'_, f32>,
    labels: &[i64],
    total: usize,
) -> Result<LossOutput> {
    let (n, c) = logits.dim();
    check_labels(labels, n, c)?;
    let scale = 1.0 / total.max(1) as f64;
    let mut grad = Array2::<f32>::zeros((n, c));
    let mut loss_sum = 0.0f64;
    let mut correct = 0;
    for (i, (row, mut g)) in logits.rows().into_iter().zip(grad.rows_mut()).enumerate() {
        let y = labels[i] as usize;
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let max = f64::from(max);
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let log_sum = sum.ln() + max;
        loss_sum += log_sum - f64::from(row[y]);
        for (k, (gk, &v)) in g.iter_mut().zip(row.iter()).enumerate() {
            let p = (f64::from(v) - log_sum).exp();
            let target = if k == y { 1.0 } else { 0.0 };
            *gk = ((p - target) * scale) as f32;
        }
        if argmax(row.iter().copied()) == y {
            correct += 1;
        }
    }
    if !loss_sum.is_finite() {
        return Err(Error::Input {
            name: "logits".into(),
            msg: "the loss is not finite (NaN or infinite logits)".into(),
        });
    }
    Ok(LossOutput {
        loss_sum,
        correct,
        grad,
    })
}

/// Negative log-likelihood of log-probabilities `log_probs` [N, C] (a LogSoftmax output):
/// ℓ = −log p_y, ∂ℓ/∂(log p) = −onehot(y), scaled by 1/`total`.
pub fn nll_of_log_probs(
    log_probs: ArrayView2<'_, f32>,
    labels: &[i64],
    total: usize,
) -> Result<LossOutput> {
    let (n, c) = log_probs.dim();
    check_labels(labels, n, c)?;
    let scale = (1.0 / total.max(1) as f64) as f32;
    let mut grad = Array2::<f32>::zeros((n, c));
    let mut loss_sum = 0.0f64;
    let mut correct = 0;
    for (i, row) in log_probs.rows().into_iter().enumerate() {
        let y = labels[i] as usize;
        loss_sum -= f64::from(row[y]);
        grad[[i, y]] = -scale;
        if argmax(row.iter().copied()) == y {
            correct += 1;
        }
    }
    Ok(LossOutput {
        loss_sum,
        correct,
        grad,
    })
}

/// Index of the first largest value (NaN never wins).
pub fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cross_entropy_matches_closed_form_and_finite_differences() {
        let logits = array![[1.0f32, -0.5, 2.0], [0.3, 0.1, -1.2]];
        let labels = [2i64, 0];
        let out = softmax_cross_entropy(logits.view(), &labels, 2).unwrap();
        // Closed form per sample: logsumexp − z_y.
        let ce = |row: &[f32], y: usize| {
            let lse = row.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
            lse - f64::from(row[y])
        };
        let want = ce(&[1.0, -0.5, 2.0], 2) + ce(&[0.3, 0.1, -1.2], 0);
        assert!((out.loss_sum - want).abs() < 1e-9);
        assert_eq!(out.correct, 2);
        // Gradient of the mean loss against central differences.
        let h = 1e-3f32;
        for i in 0..2 {
            for k in 0..3 {
                let mut plus = logits.clone();
                plus[[i, k]] += h;
                let mut minus = logits.clone();
                minus[[i, k]] -= h;
                let lp = softmax_cross_entropy(plus.view(), &labels, 2)
                    .unwrap()
                    .loss_sum
                    / 2.0;
                let lm = softmax_cross_entropy(minus.view(), &labels, 2)
                    .unwrap()
                    .loss_sum
                    / 2.0;
                let numeric = (lp - lm) / (2.0 * f64::from(h));
                assert!(
                    (f64::from(out.grad[[i, k]]) - numeric).abs() < 1e-4,
                    "({i}, {k}): {} vs {numeric}",
                    out.grad[[i, k]]
                );
            }
        }
        // Large logits stay finite (log-sum-exp is shifted by the maximum).
        let big = array![[1000.0f32, -1000.0]];
        let out = softmax_cross_entropy(big.view(), &[1], 1).unwrap();
        assert!((out.loss_sum - 2000.0).abs() < 1e-6);
    }

    #[test]
    fn nll_and_bad_labels() {
        let log_probs = array![[-0.1f32, -2.5], [-3.0, -0.05]];
        let out = nll_of_log_probs(log_probs.view(), &[0, 0], 4).unwrap();
        assert!((out.loss_sum - 3.1).abs() < 1e-6);
        assert_eq!(out.grad[[1, 0]], -0.25);
        assert_eq!(out.correct, 1);
        let err = softmax_cross_entropy(log_probs.view(), &[0, 7], 2).unwrap_err();
        assert!(err.to_string().contains("label 7"), "{err}");
        assert!(softmax_cross_entropy(log_probs.view(), &[0], 2).is_err());
    }
}
