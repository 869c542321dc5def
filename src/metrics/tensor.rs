//! Element-wise error metrics of a float tensor `x` against its reconstruction `y` (same shape):
//!
//! * MSE = Σ(x − y)² / n;
//! * SQNR = 10·log10(Σx² / Σ(x − y)²) dB (+∞ for zero error, see [`super::sqnr_db`]);
//! * max |x − y|;
//! * cosine similarity Σxy / (‖x‖·‖y‖): 1 when both are all zero, 0 when only one is;
//! * KL(P ‖ Q) in nats between the value distributions of `x` (P) and `y` (Q), both
//!   histogrammed into [`MetricOptions::kl_bins`] equal bins over the shared range
//!   [min(x, y), max(x, y)]. Empty bins are smoothed: each bin's probability gets
//!   [`MetricOptions::kl_epsilon`] added and the distribution is renormalised, P and Q alike,
//!   so the divergence stays finite. It measures how the quantizer reshapes the distribution,
//!   so it depends on the bin count (a 4-bit tensor has 16 occupied bins of 256 and a large KL).
//!
//! Sums are accumulated in f64. The moments (everything but KL) take one parallel pass over the
//! elements; KL needs the shared range first and takes a second one. Per-channel metrics run
//! the channels in parallel. NaN or ±Inf in either input is an error
//! ([`MetricsError::NonFinite`]); so are different shapes and empty tensors.

use ndarray::{ArrayViewD, Axis};
use rayon::prelude::*;
use serde::Serialize;

use super::{MetricsError, sqnr_db};

/// Error metrics of one tensor (or one channel).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TensorMetrics {
    /// Number of elements compared.
    pub count: usize,
    /// Mean squared error.
    pub mse: f64,
    /// Signal-to-quantization-noise ratio in dB (+∞ for zero error).
    pub sqnr_db: f64,
    /// Largest absolute error.
    pub max_abs_error: f64,
    /// Cosine similarity of the two tensors as vectors.
    pub cosine: f64,
    /// KL(float ‖ quantized) of the value histograms, in nats.
    pub kl: f64,
}

/// Settings of the distribution metric (KL).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricOptions {
    /// Number of equal-width bins over the shared range (at least 1).
    pub kl_bins: usize,
    /// Probability added to every bin of both distributions before renormalising.
    pub kl_epsilon: f64,
}

impl Default for MetricOptions {
    /// 256 bins, ε = 1e-6.
    fn default() -> Self {
        MetricOptions {
            kl_bins: 256,
            kl_epsilon: 1e-6,
        }
    }
}

/// Running sums of one chunk.
#[derive(Clone, Copy)]
struct Sums {
    n: usize,
    err2: f64,
    x2: f64,
    y2: f64,
    xy: f64,
    max_err: f64,
    lo: f32,
    hi: f32,
    /// (count, first flat index) of non-finite values in x and in y.
    bad_x: (usize, usize),
    bad_y: (usize, usize),
}

impl Sums {
    const EMPTY: Sums = Sums {
        n: 0,
        err2: 0.0,
        x2: 0.0,
        y2: 0.0,
        xy: 0.0,
        max_err: 0.0,
        lo: f32::INFINITY,
        hi: f32::NEG_INFINITY,
        bad_x: (0, usize::MAX),
        bad_y: (0, usize::MAX),
    };

    fn of_chunk(x: &[f32], y: &[f32], offset: usize) -> Sums {
        let mut s = Sums::EMPTY;
        s.n = x.len();
        for (i, (&a, &b)) in x.iter().zip(y).enumerate() {
            if !a.is_finite() {
                s.bad_x.0 += 1;
                s.bad_x.1 = s.bad_x.1.min(offset + i);
            }
            if !b.is_finite() {
                s.bad_y.0 += 1;
                s.bad_y.1 = s.bad_y.1.min(offset + i);
            }
            let (a64, b64) = (f64::from(a), f64::from(b));
            let d = a64 - b64;
            s.err2 += d * d;
            s.x2 += a64 * a64;
            s.y2 += b64 * b64;
            s.xy += a64 * b64;
            s.max_err = s.max_err.max(d.abs());
            s.lo = s.lo.min(a).min(b);
            s.hi = s.hi.max(a).max(b);
        }
        s
    }

    fn merge(a: Sums, b: Sums) -> Sums {
        let bad = |p: (usize, usize), q: (usize, usize)| (p.0 + q.0, p.1.min(q.1));
        Sums {
            n: a.n + b.n,
            err2: a.err2 + b.err2,
            x2: a.x2 + b.x2,
            y2: a.y2 + b.y2,
            xy: a.xy + b.xy,
            max_err: a.max_err.max(b.max_err),
            lo: a.lo.min(b.lo),
            hi: a.hi.max(b.hi),
            bad_x: bad(a.bad_x, b.bad_x),
            bad_y: bad(a.bad_y, b.bad_y),
        }
    }

    fn check(&self) -> Result<(), MetricsError> {
        for (which, (count, first)) in [("float", self.bad_x), ("quantized", self.bad_y)] {
            if count > 0 {
                return Err(MetricsError::NonFinite {
                    which,
                    count,
                    first,
                });
            }
        }
        if self.n == 0 {
            return Err(MetricsError::Empty);
        }
        Ok(())
    }
}

const CHUNK: usize = 1 << 14;

/// Metrics of two equally long slices (parallel over chunks).
pub fn compare_slices(
    float: &[f32],
    quant: &[f32],
    options: &MetricOptions,
) -> Result<TensorMetrics, MetricsError> {
    let sums = moments(float, quant)?;
    let kl = kl_divergence(float, quant, sums.lo, sums.hi, options);
    let n = sums.n as f64;
    let cosine = match (sums.x2 > 0.0, sums.y2 > 0.0) {
        (true, true) => (sums.xy / (sums.x2.sqrt() * sums.y2.sqrt())).clamp(-1.0, 1.0),
        (false, false) => 1.0,
        _ => 0.0,
    };
    Ok(TensorMetrics {
        count: sums.n,
        mse: sums.err2 / n,
        sqnr_db: sqnr_db(sums.x2, sums.err2),
        max_abs_error: sums.max_err,
        cosine,
        kl,
    })
}

/// The sums of one parallel pass, checked (equal lengths, finite, not empty).
fn moments(float: &[f32], quant: &[f32]) -> Result<Sums, MetricsError> {
    if float.len() != quant.len() {
        return Err(MetricsError::ShapeMismatch {
            float: vec![float.len()],
            quant: vec![quant.len()],
        });
    }
    let sums = float
        .par_chunks(CHUNK)
        .zip(quant.par_chunks(CHUNK))
        .enumerate()
        .map(|(i, (x, y))| Sums::of_chunk(x, y, i * CHUNK))
        .reduce(|| Sums::EMPTY, Sums::merge);
    sums.check()?;
    Ok(sums)
}

/// (count, Σx², Σ(x − y)²) of two same-shaped tensors in one pass, without the KL pass.
pub(crate) fn signal_and_noise(
    float: ArrayViewD<'_, f32>,
    quant: ArrayViewD<'_, f32>,
) -> Result<(usize, f64, f64), MetricsError> {
    check_shapes(float.shape(), quant.shape())?;
    let sums = with_slices(&float, &quant, moments)?;
    Ok((sums.n, sums.x2, sums.err2))
}

/// KL(P ‖ Q) of the two value histograms over the shared range [lo, hi].
fn kl_divergence(float: &[f32], quant: &[f32], lo: f32, hi: f32, options: &MetricOptions) -> f64 {
    let bins = options.kl_bins.max(1);
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    let inverse = if hi > lo {
        bins as f64 / (hi - lo)
    } else {
        0.0
    };
    let bin = |v: f32| (((f64::from(v) - lo) * inverse) as usize).min(bins - 1);
    let (p, q) = float
        .par_chunks(CHUNK)
        .zip(quant.par_chunks(CHUNK))
        .map(|(x, y)| {
            let mut p = vec![0u64; bins];
            let mut q = vec![0u64; bins];
            x.iter().for_each(|&v| p[bin(v)] += 1);
            y.iter().for_each(|&v| q[bin(v)] += 1);
            (p, q)
        })
        .reduce(
            || (vec![0u64; bins], vec![0u64; bins]),
            |(mut p, mut q), (p2, q2)| {
                p.iter_mut().zip(p2).for_each(|(a, b)| *a += b);
                q.iter_mut().zip(q2).for_each(|(a, b)| *a += b);
                (p, q)
            },
        );
    let n = float.len() as f64;
    let eps = options.kl_epsilon.max(0.0);
    let norm = 1.0 + bins as f64 * eps;
    p.iter()
        .zip(&q)
        .map(|(&cp, &cq)| {
            let pi = (cp as f64 / n + eps) / norm;
            let qi = (cq as f64 / n + eps) / norm;
            if pi > 0.0 { pi * (pi / qi).ln() } else { 0.0 }
        })
        .sum::<f64>()
        .max(0.0)
}

/// An error unless the float and quantized shapes are equal.
pub(super) fn check_shapes(float: &[usize], quant: &[usize]) -> Result<(), MetricsError> {
    if float != quant {
        return Err(MetricsError::ShapeMismatch {
            float: float.to_vec(),
            quant: quant.to_vec(),
        });
    }
    Ok(())
}

/// Runs `f` on two views as slices in the same element order: their memory when both have the
/// same layout, else copies in logical order.
fn with_slices<T>(
    float: &ArrayViewD<'_, f32>,
    quant: &ArrayViewD<'_, f32>,
    f: impl FnOnce(&[f32], &[f32]) -> T,
) -> T {
    if float.strides() == quant.strides()
        && let (Some(x), Some(y)) = (float.as_slice_memory_order(), quant.as_slice_memory_order())
    {
        return f(x, y);
    }
    let x: Vec<f32> = float.iter().copied().collect();
    let y: Vec<f32> = quant.iter().copied().collect();
    f(&x, &y)
}

/// Metrics of a whole tensor against its reconstruction (same shape). The flat index of a
/// non-finite value counts in memory order when both views share a layout, else in logical
/// order.
pub fn compare(
    float: ArrayViewD<'_, f32>,
    quant: ArrayViewD<'_, f32>,
    options: &MetricOptions,
) -> Result<TensorMetrics, MetricsError> {
    check_shapes(float.shape(), quant.shape())?;
    with_slices(&float, &quant, |x, y| compare_slices(x, y, options))
}

/// Metrics of each channel along `axis` (one entry per index of that axis), in parallel.
/// A non-finite value is reported with its flat index inside its channel.
pub fn compare_channels(
    float: ArrayViewD<'_, f32>,
    quant: ArrayViewD<'_, f32>,
    axis: usize,
    options: &MetricOptions,
) -> Result<Vec<TensorMetrics>, MetricsError> {
    check_shapes(float.shape(), quant.shape())?;
    if axis >= float.ndim() {
        return Err(MetricsError::BadAxis {
            axis,
            ndim: float.ndim(),
        });
    }
    let pairs: Vec<(ArrayViewD<'_, f32>, ArrayViewD<'_, f32>)> = float
        .axis_iter(Axis(axis))
        .zip(quant.axis_iter(Axis(axis)))
        .collect();
    pairs
        .into_par_iter()
        .map(|(x, y)| with_slices(&x, &y, |x, y| compare_slices(x, y, options)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn metrics_of_a_known_pair() {
        let x = [1.0f32, -2.0, 3.0, 0.0];
        let y = [1.0f32, -1.0, 3.5, 0.0];
        let m = compare_slices(&x, &y, &MetricOptions::default()).unwrap();
        assert_eq!(m.count, 4);
        assert!((m.mse - 1.25 / 4.0).abs() < 1e-12);
        assert!((m.sqnr_db - 10.0 * (14.0f64 / 1.25).log10()).abs() < 1e-9);
        assert_eq!(m.max_abs_error, 1.0);
        let cos = (1.0 + 2.0 + 10.5) / (14.0f64.sqrt() * (1.0 + 1.0 + 12.25f64).sqrt());
        assert!((m.cosine - cos).abs() < 1e-12);
        assert!(m.kl > 0.0);
    }

    #[test]
    fn identical_tensors_are_perfect() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let m = compare_slices(&x, &x, &MetricOptions::default()).unwrap();
        assert_eq!((m.mse, m.max_abs_error), (0.0, 0.0));
        assert_eq!(m.sqnr_db, f64::INFINITY);
        assert!((m.cosine - 1.0).abs() < 1e-12);
        assert!(m.kl.abs() < 1e-12);
        let zeros = compare_slices(&[0.0; 3], &[0.0; 3], &MetricOptions::default()).unwrap();
        assert_eq!((zeros.sqnr_db, zeros.cosine), (f64::INFINITY, 1.0));
        let lost = compare_slices(&[1.0; 3], &[0.0; 3], &MetricOptions::default()).unwrap();
        assert_eq!((lost.sqnr_db, lost.cosine), (0.0, 0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let o = MetricOptions::default();
        assert_eq!(
            compare_slices(&[1.0, f32::NAN, f32::INFINITY], &[1.0, 1.0, 1.0], &o),
            Err(MetricsError::NonFinite {
                which: "float",
                count: 2,
                first: 1
            })
        );
        assert!(matches!(
            compare_slices(&[1.0], &[f32::NEG_INFINITY], &o),
            Err(MetricsError::NonFinite {
                which: "quantized",
                ..
            })
        ));
        assert!(matches!(
            compare_slices(&[1.0], &[1.0, 2.0], &o),
            Err(MetricsError::ShapeMismatch { .. })
        ));
        assert_eq!(compare_slices(&[], &[], &o), Err(MetricsError::Empty));
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[3, 2]));
        assert!(compare(a.view(), b.view(), &o).is_err());
        assert_eq!(
            compare_channels(a.view(), a.view(), 2, &o),
            Err(MetricsError::BadAxis { axis: 2, ndim: 2 })
        );
    }

    #[test]
    fn channels_along_any_axis_match_whole_tensor_metrics_of_each_slice() {
        let x = ArrayD::from_shape_fn(IxDyn(&[3, 4, 5]), |d| {
            ((d[0] * 20 + d[1] * 5 + d[2]) as f32 * 0.61).sin() * (d[0] + 1) as f32
        });
        let y = x.mapv(|v| (v * 8.0).round() / 8.0);
        let o = MetricOptions::default();
        for axis in 0..3 {
            let per = compare_channels(x.view(), y.view(), axis, &o).unwrap();
            assert_eq!(per.len(), x.shape()[axis]);
            for (c, m) in per.iter().enumerate() {
                let xs: Vec<f32> = x.index_axis(Axis(axis), c).iter().copied().collect();
                let ys: Vec<f32> = y.index_axis(Axis(axis), c).iter().copied().collect();
                assert_eq!(*m, compare_slices(&xs, &ys, &o).unwrap());
            }
        }
        // A transposed view of both compares the same elements.
        let whole = compare(x.view(), y.view(), &o).unwrap();
        let t = compare(x.t().into_dyn(), y.t().into_dyn(), &o).unwrap();
        assert!((whole.mse - t.mse).abs() < 1e-15 && whole.count == t.count);
    }
}
