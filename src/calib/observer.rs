//! Streaming statistics of one tensor over calibration batches, in memory independent of the
//! number of batches.
//!
//! Per batch ([`CalibrationStats::observe`]) the observer updates:
//!
//! * the global min/max of the finite values;
//! * the EMA of the per-batch min and max: the first batch sets them, each later batch moves
//!   them by `c · (batch − ema)` with `c` = 0.01 by default (the weight of the new batch), as
//!   PyTorch's `MovingAverageMinMaxObserver` and onnxruntime's `moving_average` do;
//! * the sums of per-sample minima and maxima, where a sample is an index along the first axis
//!   (a rank-0 tensor is one sample): the lecture's "calibration batch" average;
//! * count, mean and M2 (Chan's parallel update) of the finite values, and the count, sum and
//!   sum of squares of the positive values (the one-sided fits for post-ReLU tensors);
//! * a histogram of |x| over `[0, max|x|]` and a signed one over `[min, max]` with per-bin value
//!   sums, both re-binned as the range grows (see [`GrowingHistogram`]). Re-binning is
//!   approximate; a second pass over the same data with the final range fixed
//!   ([`restart_histograms`](CalibrationStats::restart_histograms), then
//!   [`observe_histograms`](CalibrationStats::observe_histograms)) makes them exact, equal to
//!   a single-pass histogram of all the values.
//!
//! NaN and ±Inf are counted and otherwise ignored. An empty batch changes nothing.

use ndarray::ArrayViewD;
use serde::{Deserialize, Serialize};

use super::channels::ChannelConfig;
use super::histogram::GrowingHistogram;
use crate::error::{Error, Result};
use crate::stats::Histogram;

/// Settings of the observers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObserverConfig {
    /// Weight of the new batch in the EMA of min/max (0 < c ≤ 1). Default 0.01.
    pub ema_constant: f64,
    /// Bins of the final histograms (the |x| one feeds KL, percentile and MSE). Default 2048.
    pub bins: usize,
    /// Internal bins per final bin, for accurate re-binning (≥ 1). Default 8.
    pub oversample: usize,
    /// Limits of the per-channel statistics of activations (when they are collected).
    #[serde(default)]
    pub channels: ChannelConfig,
}

impl ObserverConfig {
    /// Bytes of the per-tensor histograms of one tensor's [`CalibrationStats`]: two
    /// histograms of `bins × oversample` internal bins (u64 counts; the signed one also f64
    /// sums).
    fn tensor_histogram_bytes(&self) -> u64 {
        let internal = (self.bins.max(1) * self.oversample.max(1)) as u64;
        internal * (8 + 8 + 8)
    }

    /// Bytes of histogram state one tensor's statistics hold at most: the per-tensor
    /// histograms and the per-channel statistics ([`ChannelConfig::bytes`]).
    pub fn histogram_bytes(&self) -> u64 {
        self.tensor_histogram_bytes() + self.channels.bytes()
    }

    /// This configuration fitted to `tensors` tensors in `bytes`: the per-tensor histograms
    /// first, with the oversampling lowered (down to 1) until they fit; then the per-channel
    /// statistics in what is left ([`ChannelConfig::within`]: fewer channel histograms, then
    /// fewer channels). An [`Error::OverBudget`] naming the count when even one internal bin
    /// per final bin does not fit. The per-tensor settings do not depend on the per-channel
    /// ones.
    pub fn within(mut self, tensors: usize, bytes: u64, budget: u64) -> Result<Self> {
        let tensors_u64 = tensors.max(1) as u64;
        let per_tensor_at_one = ObserverConfig {
            oversample: 1,
            ..self
        }
        .tensor_histogram_bytes();
        let affordable = bytes / (tensors_u64 * per_tensor_at_one);
        if affordable == 0 {
            return Err(Error::OverBudget {
                what: format!(
                    "calibration histograms of {tensors} tensors ({} bins each)",
                    self.bins
                ),
                needed: tensors_u64 * per_tensor_at_one,
                in_use: 0,
                budget,
            });
        }
        self.oversample = self.oversample.max(1).min(affordable as usize);
        let left = bytes.saturating_sub(tensors_u64 * self.tensor_histogram_bytes());
        self.channels = self.channels.within(left / tensors_u64);
        Ok(self)
    }
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            ema_constant: 0.01,
            bins: 2048,
            oversample: 8,
            channels: ChannelConfig::default(),
        }
    }
}

/// Everything the calibration methods need to know about one tensor.
#[derive(Debug, Clone)]
pub struct CalibrationStats {
    config: ObserverConfig,
    batches: u64,
    count: u64,
    nan: u64,
    inf: u64,
    min: f32,
    max: f32,
    ema: Option<(f64, f64)>,
    samples: u64,
    sample_min_sum: f64,
    sample_max_sum: f64,
    finite: u64,
    mean: f64,
    m2: f64,
    positive: u64,
    positive_sum: f64,
    positive_sum_sq: f64,
    abs_hist: GrowingHistogram,
    signed_hist: GrowingHistogram,
}

/// min/max, mean and M2 of one slice's finite values.
struct Pass {
    finite: u64,
    nan: u64,
    min: f32,
    max: f32,
    sum: f64,
}

/// Independent accumulators per pass: f64 sums and min/max chains split eight ways run side
/// by side instead of each waiting for the previous element (the f64 sums differ from a serial
/// sum by rounding only; minima and maxima are exact either way).
const LANES: usize = 8;

fn first_pass(values: &[f32]) -> Pass {
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut sum = [0.0f64; LANES];
    let mut finite = [0u64; LANES];
    let mut nan = [0u64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (i, &v) in chunk.iter().enumerate() {
            let ok = v.is_finite();
            min[i] = if ok { min[i].min(v) } else { min[i] };
            max[i] = if ok { max[i].max(v) } else { max[i] };
            sum[i] += if ok { f64::from(v) } else { 0.0 };
            finite[i] += u64::from(ok);
            nan[i] += u64::from(v.is_nan());
        }
    }
    for &v in chunks.remainder() {
        let ok = v.is_finite();
        min[0] = if ok { min[0].min(v) } else { min[0] };
        max[0] = if ok { max[0].max(v) } else { max[0] };
        sum[0] += if ok { f64::from(v) } else { 0.0 };
        finite[0] += u64::from(ok);
        nan[0] += u64::from(v.is_nan());
    }
    Pass {
        finite: finite.iter().sum(),
        nan: nan.iter().sum(),
        min: min.iter().copied().fold(f32::INFINITY, f32::min),
        max: max.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        sum: sum.iter().sum(),
    }
}

/// Sums about `mean` of the finite values: Σ(x − mean)², and the count, Σx and Σx² of the
/// positive ones.
struct Moments {
    m2: f64,
    positive: u64,
    positive_sum: f64,
    positive_sum_sq: f64,
}

fn moments(values: &[f32], mean: f64) -> Moments {
    let mut m2 = [0.0f64; LANES];
    let mut positive = [0u64; LANES];
    let mut sum = [0.0f64; LANES];
    let mut sum_sq = [0.0f64; LANES];
    let mut add = |i: usize, v: f32| {
        let x = f64::from(v);
        let d = if v.is_finite() { x - mean } else { 0.0 };
        m2[i] += d * d;
        let p = v.is_finite() && v > 0.0;
        positive[i] += u64::from(p);
        sum[i] += if p { x } else { 0.0 };
        sum_sq[i] += if p { x * x } else { 0.0 };
    };
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (i, &v) in chunk.iter().enumerate() {
            add(i, v);
        }
    }
    for &v in chunks.remainder() {
        add(0, v);
    }
    Moments {
        m2: m2.iter().sum(),
        positive: positive.iter().sum(),
        positive_sum: sum.iter().sum(),
        positive_sum_sq: sum_sq.iter().sum(),
    }
}

impl CalibrationStats {
    /// Empty statistics.
    pub fn new(config: ObserverConfig) -> Self {
        let internal = config.bins.max(1) * config.oversample.max(1);
        CalibrationStats {
            config,
            batches: 0,
            count: 0,
            nan: 0,
            inf: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ema: None,
            samples: 0,
            sample_min_sum: 0.0,
            sample_max_sum: 0.0,
            finite: 0,
            mean: 0.0,
            m2: 0.0,
            positive: 0,
            positive_sum: 0.0,
            positive_sum_sq: 0.0,
            abs_hist: GrowingHistogram::new(internal, false),
            signed_hist: GrowingHistogram::new(internal, true),
        }
    }

    /// Statistics of one tensor (a weight, say) seen as a single batch.
    pub fn of_tensor(values: ArrayViewD<'_, f32>, config: ObserverConfig) -> Self {
        let mut s = CalibrationStats::new(config);
        s.observe(values);
        s
    }

    /// Adds one batch.
    pub fn observe(&mut self, values: ArrayViewD<'_, f32>) {
        match values.as_slice() {
            Some(slice) => self.observe_samples(slice, values.shape().first().copied()),
            None => {
                let owned: Vec<f32> = values.iter().copied().collect();
                self.observe_samples(&owned, values.shape().first().copied())
            }
        }
    }

    /// Adds one batch given as a flat slice in row-major order whose first axis has `samples`
    /// entries (None: a rank-0 tensor, one sample).
    pub fn observe_samples(&mut self, values: &[f32], samples: Option<usize>) {
        if values.is_empty() {
            return;
        }
        let pass = first_pass(values);
        self.batches += 1;
        self.count += values.len() as u64;
        self.nan += pass.nan;
        self.inf += values.len() as u64 - pass.finite - pass.nan;
        if pass.finite == 0 {
            return;
        }
        self.min = self.min.min(pass.min);
        self.max = self.max.max(pass.max);
        let (bmin, bmax) = (f64::from(pass.min), f64::from(pass.max));
        self.ema = Some(match self.ema {
            None => (bmin, bmax),
            Some((lo, hi)) => {
                let c = self.config.ema_constant;
                (lo + c * (bmin - lo), hi + c * (bmax - hi))
            }
        });

        // Per-sample extremes along the first axis.
        let samples = samples.unwrap_or(1).max(1);
        let per_sample = values.len() / samples;
        if per_sample > 0 {
            let mut record = |sample: &Pass| {
                if sample.finite > 0 {
                    self.samples += 1;
                    self.sample_min_sum += f64::from(sample.min);
                    self.sample_max_sum += f64::from(sample.max);
                }
            };
            if samples == 1 {
                record(&pass);
            } else {
                for chunk in values.chunks_exact(per_sample) {
                    record(&first_pass(chunk));
                }
            }
        }

        // Second pass: M2 about the batch mean, positive-part sums.
        let bmean = pass.sum / pass.finite as f64;
        let moments = moments(values, bmean);
        let n = self.finite + pass.finite;
        let delta = bmean - self.mean;
        self.mean += delta * pass.finite as f64 / n as f64;
        self.m2 += moments.m2 + delta * delta * self.finite as f64 * pass.finite as f64 / n as f64;
        self.finite = n;
        self.positive += moments.positive;
        self.positive_sum += moments.positive_sum;
        self.positive_sum_sq += moments.positive_sum_sq;

        let abs_max = bmin.abs().max(bmax.abs());
        self.abs_hist.ensure_range(0.0, abs_max);
        self.abs_hist.add(values, true);
        self.signed_hist.ensure_range(bmin, bmax);
        self.signed_hist.add(values, false);
    }

    /// Whether both histograms hold every value in the bin a single pass over the final range
    /// would give (true while their range never had to grow).
    pub fn histograms_are_exact(&self) -> bool {
        self.abs_hist.rebin_count() == 0 && self.signed_hist.rebin_count() == 0
    }

    /// Empties both histograms and fixes their ranges to the global `[0, max|x|]` and
    /// `[min, max]` seen so far, for a second pass over the same data with
    /// [`observe_histograms`](Self::observe_histograms): every value then lands in its exact
    /// bin. The other statistics are kept.
    pub fn restart_histograms(&mut self) {
        let internal = self.config.bins.max(1) * self.config.oversample.max(1);
        self.abs_hist = GrowingHistogram::new(internal, false);
        self.signed_hist = GrowingHistogram::new(internal, true);
        if let Some((lo, hi)) = self.min_max() {
            let (lo, hi) = (f64::from(lo), f64::from(hi));
            self.abs_hist.ensure_range(0.0, lo.abs().max(hi.abs()));
            self.signed_hist.ensure_range(lo, hi);
        }
    }

    /// Adds one batch to the histograms only (the second pass after
    /// [`restart_histograms`](Self::restart_histograms)). A value beyond the fixed range (data
    /// that differs from the first pass) grows the range as [`observe`](Self::observe) does.
    pub fn observe_histograms(&mut self, values: ArrayViewD<'_, f32>) {
        let owned;
        let values = match values.as_slice() {
            Some(slice) => slice,
            None => {
                owned = values.iter().copied().collect::<Vec<f32>>();
                &owned
            }
        };
        let pass = first_pass(values);
        if pass.finite == 0 {
            return;
        }
        let (bmin, bmax) = (f64::from(pass.min), f64::from(pass.max));
        self.abs_hist.ensure_range(0.0, bmin.abs().max(bmax.abs()));
        self.abs_hist.add(values, true);
        self.signed_hist.ensure_range(bmin, bmax);
        self.signed_hist.add(values, false);
    }

    /// The observer settings.
    pub fn config(&self) -> &ObserverConfig {
        &self.config
    }

    /// Number of non-empty batches seen.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Number of elements seen (finite or not).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of finite elements seen.
    pub fn finite_count(&self) -> u64 {
        self.finite
    }

    /// Number of NaN elements seen.
    pub fn nan_count(&self) -> u64 {
        self.nan
    }

    /// Number of ±Inf elements seen.
    pub fn inf_count(&self) -> u64 {
        self.inf
    }

    /// Global (min, max) of the finite values; None before any finite value.
    pub fn min_max(&self) -> Option<(f32, f32)> {
        (self.finite > 0).then_some((self.min, self.max))
    }

    /// EMA of the per-batch (min, max).
    pub fn ema(&self) -> Option<(f64, f64)> {
        self.ema
    }

    /// Mean over samples of the per-sample (min, max).
    pub fn batch_mean(&self) -> Option<(f64, f64)> {
        (self.samples > 0).then(|| {
            (
                self.sample_min_sum / self.samples as f64,
                self.sample_max_sum / self.samples as f64,
            )
        })
    }

    /// Number of samples (first-axis entries) seen.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Mean of the finite values.
    pub fn mean(&self) -> Option<f64> {
        (self.finite > 0).then_some(self.mean)
    }

    /// Population standard deviation of the finite values.
    pub fn std(&self) -> Option<f64> {
        (self.finite > 0).then(|| (self.m2 / self.finite as f64).sqrt())
    }

    /// mean |x − μ| (the Laplace scale b), from the signed histogram's per-bin sums: exact up
    /// to the values in the bin holding μ.
    pub fn mean_abs_deviation(&self) -> Option<f64> {
        let mu = self.mean()?;
        Some(self.signed_hist.abs_deviation_sum(mu)? / self.finite as f64)
    }

    /// (count, mean, root mean square) of the strictly positive values.
    pub fn positive_moments(&self) -> Option<(u64, f64, f64)> {
        (self.positive > 0).then(|| {
            let n = self.positive as f64;
            (
                self.positive,
                self.positive_sum / n,
                (self.positive_sum_sq / n).sqrt(),
            )
        })
    }

    /// max |x| of the finite values.
    pub fn abs_max(&self) -> Option<f32> {
        self.min_max().map(|(lo, hi)| lo.abs().max(hi.abs()))
    }

    /// Histogram of |x| over `[0, max|x|]` with `config.bins` bins (TensorRT's layout).
    pub fn abs_histogram(&self) -> Option<Histogram> {
        let m = self.abs_max()?;
        Some(
            self.abs_hist
                .resample(0.0, f64::from(m), self.config.bins.max(1)),
        )
    }

    /// Histogram of x over `[min, max]` with `config.bins` bins.
    pub fn signed_histogram(&self) -> Option<Histogram> {
        let (lo, hi) = self.min_max()?;
        Some(
            self.signed_hist
                .resample(f64::from(lo), f64::from(hi), self.config.bins.max(1)),
        )
    }

    /// The internal |x| histogram (for inspection).
    pub fn raw_abs_histogram(&self) -> &GrowingHistogram {
        &self.abs_hist
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn arr(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    #[test]
    fn min_max_ema_and_batch_mean() {
        let mut s = CalibrationStats::new(ObserverConfig::default());
        s.observe(arr(&[2, 2], vec![-1.0, 2.0, 0.0, 4.0]).view());
        s.observe(arr(&[1, 2], vec![-3.0, 1.0]).view());
        assert_eq!(s.min_max(), Some((-3.0, 4.0)));
        let (lo, hi) = s.ema().unwrap();
        assert!((lo - (-1.0 + 0.01 * (-3.0 + 1.0))).abs() < 1e-12);
        assert!((hi - (4.0 + 0.01 * (1.0 - 4.0))).abs() < 1e-12);
        // samples: [-1,2], [0,4], [-3,1]
        let (bl, bh) = s.batch_mean().unwrap();
        assert!((bl - (-4.0 / 3.0)).abs() < 1e-12 && (bh - 7.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.samples(), 3);
        // mean 0.5; values -1,2,0,4,-3,1
        assert!((s.mean().unwrap() - 0.5).abs() < 1e-12);
        let var = [-1.0f64, 2.0, 0.0, 4.0, -3.0, 1.0]
            .iter()
            .map(|x| (x - 0.5) * (x - 0.5))
            .sum::<f64>()
            / 6.0;
        assert!((s.std().unwrap() - var.sqrt()).abs() < 1e-12);
        let mad = [-1.0f64, 2.0, 0.0, 4.0, -3.0, 1.0]
            .iter()
            .map(|x| (x - 0.5f64).abs())
            .sum::<f64>()
            / 6.0;
        assert!((s.mean_abs_deviation().unwrap() - mad).abs() < 1e-3);
        let (n, m, r) = s.positive_moments().unwrap();
        assert_eq!(n, 3);
        assert!((m - 7.0 / 3.0).abs() < 1e-12 && (r - (21.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.abs_histogram().unwrap().counts.iter().sum::<u64>(), 6);
    }

    #[test]
    fn non_finite_and_empty() {
        let mut s = CalibrationStats::new(ObserverConfig::default());
        s.observe(arr(&[0], vec![]).view());
        assert_eq!(s.batches(), 0);
        s.observe(arr(&[3], vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]).view());
        assert_eq!((s.nan_count(), s.inf_count(), s.finite_count()), (1, 2, 0));
        assert_eq!(s.min_max(), None);
        assert!(s.abs_histogram().is_none());
        s.observe(arr(&[2], vec![1.0, f32::NAN]).view());
        assert_eq!(s.min_max(), Some((1.0, 1.0)));
        assert_eq!(s.ema(), Some((1.0, 1.0)));
    }

    #[test]
    fn a_second_pass_makes_the_histograms_exact() {
        let batches = [
            arr(&[4], vec![0.1, -0.2, 0.05, 0.3]),
            arr(&[4], vec![1.5, -0.7, 0.9, 0.33]),
            arr(&[4], vec![-9.0, 4.0, 0.01, 2.5]),
        ];
        let mut s = CalibrationStats::new(ObserverConfig::default());
        batches.iter().for_each(|b| s.observe(b.view()));
        assert!(!s.histograms_are_exact(), "the range grew twice");
        let before = (s.min_max(), s.ema(), s.batch_mean(), s.mean());
        s.restart_histograms();
        batches.iter().for_each(|b| s.observe_histograms(b.view()));
        assert!(s.histograms_are_exact());
        assert_eq!(before, (s.min_max(), s.ema(), s.batch_mean(), s.mean()));
        let mut single = CalibrationStats::new(ObserverConfig::default());
        let all: Vec<f32> = batches.iter().flat_map(|b| b.iter().copied()).collect();
        single.observe(arr(&[12], all).view());
        assert!(single.histograms_are_exact());
        assert_eq!(s.abs_histogram(), single.abs_histogram());
        assert_eq!(s.signed_histogram(), single.signed_histogram());
        assert_eq!(s.mean_abs_deviation(), single.mean_abs_deviation());
    }

    #[test]
    fn channel_statistics_take_what_the_tensor_histograms_leave() {
        let base = ObserverConfig::default();
        assert_eq!(
            base.histogram_bytes(),
            base.tensor_histogram_bytes() + base.channels.bytes()
        );
        let roomy = base.within(10, 10 * base.histogram_bytes(), 0).unwrap();
        assert_eq!(roomy, base);
        // Room for the per-tensor histograms only: the oversampling stays, no channel state.
        let tight = base
            .within(10, 10 * base.tensor_histogram_bytes(), 0)
            .unwrap();
        assert_eq!(tight.oversample, 8);
        assert_eq!(
            (tight.channels.max_channels, tight.channels.bytes()),
            (0, 0)
        );
        // Less: the oversampling follows the per-tensor histograms alone, as before.
        let at_one = ObserverConfig {
            oversample: 1,
            ..base
        }
        .tensor_histogram_bytes();
        let lowered = base.within(10, 10 * 3 * at_one + 5, 0).unwrap();
        assert_eq!(lowered.oversample, 3);
        assert!(10 * lowered.histogram_bytes() <= 10 * 3 * at_one + 5);
    }

    #[test]
    fn scalar_is_one_sample() {
        let mut s = CalibrationStats::new(ObserverConfig::default());
        s.observe(ArrayD::from_elem(IxDyn(&[]), 2.5f32).view());
        assert_eq!(s.batch_mean(), Some((2.5, 2.5)));
    }
}
