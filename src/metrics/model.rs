//! Model-level metrics over logits `[N, classes]` and named layer outputs.
//!
//! * top-1 accuracy against integer labels;
//! * top-1 agreement: the fraction of rows where the float and quantized logits pick the same
//!   class;
//! * mean over rows of KL(softmax(float) ‖ softmax(quantized)) in nats, computed from
//!   log-softmax in f64 (no smoothing needed: softmax outputs are positive);
//! * per-layer output SQNR from (name, float output, quantized output) triples.
//!
//! The top-1 class of a row is its first largest logit. NaN or ±Inf logits are an error.

use ndarray::{ArrayView1, ArrayView2, ArrayViewD};
use serde::Serialize;

use super::tensor::{check_shapes, signal_and_noise};
use super::{MetricsError, sqnr_db};

fn check_logits(logits: &ArrayView2<'_, f32>, which: &'static str) -> Result<(), MetricsError> {
    if logits.nrows() == 0 || logits.ncols() == 0 {
        return Err(MetricsError::Empty);
    }
    let mut bad = logits.iter().enumerate().filter(|(_, v)| !v.is_finite());
    if let Some((first, _)) = bad.next() {
        return Err(MetricsError::NonFinite {
            which,
            count: 1 + bad.count(),
            first,
        });
    }
    Ok(())
}

fn check_pair(
    float: &ArrayView2<'_, f32>,
    quant: &ArrayView2<'_, f32>,
) -> Result<(), MetricsError> {
    check_shapes(float.shape(), quant.shape())?;
    check_logits(float, "float")?;
    check_logits(quant, "quantized")
}

/// Index of the first largest value of a finite row.
fn argmax(row: ArrayView1<'_, f32>) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The top-1 class of each row of finite logits.
pub fn top1(logits: ArrayView2<'_, f32>) -> Result<Vec<usize>, MetricsError> {
    check_logits(&logits, "logits")?;
    Ok(logits.rows().into_iter().map(argmax).collect())
}

/// Fraction of rows whose top-1 class equals the label (labels are class indices).
pub fn top1_accuracy(
    logits: ArrayView2<'_, f32>,
    labels: ArrayView1<'_, i64>,
) -> Result<f64, MetricsError> {
    if labels.len() != logits.nrows() {
        return Err(MetricsError::ShapeMismatch {
            float: logits.shape().to_vec(),
            quant: labels.shape().to_vec(),
        });
    }
    let classes = logits.ncols();
    let predicted = top1(logits)?;
    let mut correct = 0usize;
    for (row, (&label, &p)) in labels.iter().zip(&predicted).enumerate() {
        if label < 0 || label as usize >= classes {
            return Err(MetricsError::BadLabel {
                row,
                label,
                classes,
            });
        }
        correct += usize::from(label as usize == p);
    }
    Ok(correct as f64 / predicted.len() as f64)
}

/// Fraction of rows where float and quantized logits have the same top-1 class.
pub fn top1_agreement(
    float: ArrayView2<'_, f32>,
    quant: ArrayView2<'_, f32>,
) -> Result<f64, MetricsError> {
    check_pair(&float, &quant)?;
    let same = float
        .rows()
        .into_iter()
        .zip(quant.rows())
        .filter(|(f, q)| argmax(*f) == argmax(*q))
        .count();
    Ok(same as f64 / float.nrows() as f64)
}

/// log-softmax of a row, in f64.
fn log_softmax(row: ArrayView1<'_, f32>, out: &mut Vec<f64>) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let log_sum = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln();
    out.clear();
    out.extend(row.iter().map(|&v| v as f64 - max - log_sum));
}

/// Mean over rows of KL(softmax(float) ‖ softmax(quantized)), in nats.
pub fn mean_softmax_kl(
    float: ArrayView2<'_, f32>,
    quant: ArrayView2<'_, f32>,
) -> Result<f64, MetricsError> {
    check_pair(&float, &quant)?;
    let (mut lp, mut lq) = (Vec::new(), Vec::new());
    let mut total = 0.0;
    for (f, q) in float.rows().into_iter().zip(quant.rows()) {
        log_softmax(f, &mut lp);
        log_softmax(q, &mut lq);
        let kl: f64 = lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum();
        total += kl.max(0.0);
    }
    Ok(total / float.nrows() as f64)
}

/// Float against quantized logits on one data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LogitComparison {
    /// Number of rows (samples).
    pub rows: usize,
    /// Top-1 accuracy of the float model (when labels were given).
    pub float_accuracy: Option<f64>,
    /// Top-1 accuracy of the quantized model (when labels were given).
    pub quant_accuracy: Option<f64>,
    /// Fraction of rows with the same top-1 class.
    pub agreement: f64,
    /// Mean KL(softmax(float) ‖ softmax(quantized)) in nats.
    pub mean_kl: f64,
}

/// All logit metrics at once.
pub fn compare_logits(
    float: ArrayView2<'_, f32>,
    quant: ArrayView2<'_, f32>,
    labels: Option<ArrayView1<'_, i64>>,
) -> Result<LogitComparison, MetricsError> {
    let agreement = top1_agreement(float, quant)?;
    let mean_kl = mean_softmax_kl(float, quant)?;
    let (float_accuracy, quant_accuracy) = match labels {
        Some(labels) => (
            Some(top1_accuracy(float, labels)?),
            Some(top1_accuracy(quant, labels)?),
        ),
        None => (None, None),
    };
    Ok(LogitComparison {
        rows: float.nrows(),
        float_accuracy,
        quant_accuracy,
        agreement,
        mean_kl,
    })
}

/// Output error of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSqnr {
    pub name: String,
    pub mse: f64,
    /// 10·log10(Σfloat² / Σ(float − quantized)²); +∞ for identical outputs.
    pub sqnr_db: f64,
}

/// Output SQNR of each layer from (name, float output, quantized output), in the given order.
/// An error names the layer it happened in.
pub fn layer_sqnr<'a, I>(layers: I) -> Result<Vec<LayerSqnr>, MetricsError>
where
    I: IntoIterator<Item = (&'a str, ArrayViewD<'a, f32>, ArrayViewD<'a, f32>)>,
{
    layers
        .into_iter()
        .map(|(name, float, quant)| {
            let (n, signal, noise) =
                signal_and_noise(float, quant).map_err(|e| MetricsError::Layer {
                    name: name.to_string(),
                    source: Box::new(e),
                })?;
            Ok(LayerSqnr {
                name: name.to_string(),
                mse: noise / n as f64,
                sqnr_db: sqnr_db(signal, noise),
            })
        })
        .collect()
}

/// SQNR in dB of one pair of outputs (convenience over [`layer_sqnr`]).
pub fn output_sqnr(
    float: ArrayViewD<'_, f32>,
    quant: ArrayViewD<'_, f32>,
) -> Result<f64, MetricsError> {
    let m = layer_sqnr([("output", float, quant)])?;
    Ok(m[0].sqnr_db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, ArrayD, IxDyn, array};

    #[test]
    fn accuracy_and_agreement() {
        let f = array![
            [1.0f32, 2.0, 0.0],
            [3.0, 1.0, 1.0],
            [0.0, 0.0, 5.0],
            [1.0, 1.0, 0.0]
        ];
        let q = array![
            [1.0f32, 0.5, 0.0],
            [3.0, 1.0, 1.0],
            [0.0, 6.0, 5.0],
            [1.0, 1.0, 0.0]
        ];
        let labels = Array1::from(vec![1i64, 0, 2, 1]);
        // Ties pick the first index: row 3 predicts class 0.
        assert_eq!(top1(f.view()).unwrap(), vec![1, 0, 2, 0]);
        assert_eq!(top1_accuracy(f.view(), labels.view()).unwrap(), 0.75);
        assert_eq!(top1_accuracy(q.view(), labels.view()).unwrap(), 0.25);
        assert_eq!(top1_agreement(f.view(), q.view()).unwrap(), 0.5);
        let c = compare_logits(f.view(), q.view(), Some(labels.view())).unwrap();
        assert_eq!(
            (c.rows, c.float_accuracy, c.quant_accuracy),
            (4, Some(0.75), Some(0.25))
        );
        let bad = Array1::from(vec![1i64, 0, 3, 1]);
        assert!(matches!(
            top1_accuracy(f.view(), bad.view()),
            Err(MetricsError::BadLabel { row: 2, .. })
        ));
    }

    #[test]
    fn softmax_kl_matches_hand_computation() {
        let f = array![[0.0f32, 0.0]];
        let q = array![[0.0f32, (3.0f32).ln()]];
        // P = (1/2, 1/2), Q = (1/4, 3/4): KL = ½ln2 + ½ln(2/3).
        let expected = 0.5 * 2.0f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((mean_softmax_kl(f.view(), q.view()).unwrap() - expected).abs() < 1e-7);
        assert_eq!(mean_softmax_kl(f.view(), f.view()).unwrap(), 0.0);
        // Large logits do not overflow.
        let big = array![[1000.0f32, 0.0], [0.0, 1000.0]];
        assert!(mean_softmax_kl(big.view(), big.view()).unwrap().abs() < 1e-12);
        let nan = array![[f32::NAN, 0.0]];
        assert!(mean_softmax_kl(f.view(), nan.view()).is_err());
        let wide = Array2::<f32>::zeros((1, 3));
        assert!(matches!(
            top1_agreement(f.view(), wide.view()),
            Err(MetricsError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn layer_sqnr_names_layers() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let b = a.mapv(|v| v + 0.1);
        let c = ArrayD::<f32>::zeros(IxDyn(&[4]));
        let out =
            layer_sqnr([("conv1", a.view(), b.view()), ("relu", a.view(), a.view())]).unwrap();
        assert_eq!(out[0].name, "conv1");
        assert!((out[0].sqnr_db - 10.0 * (30.0f64 / 0.04).log10()).abs() < 1e-4);
        assert_eq!(out[1].sqnr_db, f64::INFINITY);
        let err = layer_sqnr([("fc", a.view(), c.view())]).unwrap_err();
        assert!(err.to_string().starts_with("layer 'fc': shapes differ"));
        assert_eq!(output_sqnr(a.view(), a.view()).unwrap(), sqnr_db(30.0, 0.0));
    }
}
