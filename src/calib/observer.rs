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
//! * a histogram of |x| over `[0, max|x|]` and (when [`ObserverConfig::signed_histogram`]) one
//!   of x over `[min, max]`, both re-binned as the range grows (see [`GrowingHistogram`]).
//!   Re-binning is approximate; a second pass over the same data with the final range fixed
//!   ([`restart_histograms`](CalibrationStats::restart_histograms), then
//!   [`observe_histograms`](CalibrationStats::observe_histograms)) makes them exact, equal to
//!   a single-pass histogram of all the values, and sums |x − μ| about the final mean (the
//!   Laplace scale; exact after one batch too). With
//!   [`observe_statistics`](CalibrationStats::observe_statistics) the first pass skips the
//!   histograms altogether.
//!
//! Every statistic but the histograms comes from one vectorized pass per sample.
//!
//! NaN and ±Inf are counted and otherwise ignored. An empty batch changes nothing.

use std::hint::select_unpredictable as select;

use ndarray::ArrayViewD;
use serde::{Deserialize, Serialize};

use super::channels::ChannelConfig;
use super::histogram::GrowingHistogram;
use crate::engine::ops::conv::simd::wide_fn;
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
    /// Whether a histogram of x over `[min, max]` is kept beside the |x| one (the app shows
    /// it; no calibration method needs it). Default true.
    #[serde(default = "keep_signed_histogram")]
    pub signed_histogram: bool,
    /// Limits of the per-channel statistics of activations (when they are collected).
    #[serde(default)]
    pub channels: ChannelConfig,
}

fn keep_signed_histogram() -> bool {
    true
}

impl ObserverConfig {
    /// Bytes of the per-tensor histograms of one tensor's [`CalibrationStats`]: one or two
    /// histograms (|x|, and x when kept) of `bins × oversample` internal bins of u64 counts.
    fn tensor_histogram_bytes(&self) -> u64 {
        let internal = (self.bins.max(1) * self.oversample.max(1)) as u64;
        internal * 8 * (1 + u64::from(self.signed_histogram))
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
            signed_histogram: true,
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
    signed_hist: Option<GrowingHistogram>,
    /// Σ|x − mean| over every finite value, when known exactly (one batch, or a histogram
    /// pass after the mean was known).
    abs_deviation: Option<f64>,
    /// The histograms wait for a histogram pass ([`CalibrationStats::observe_statistics`]).
    histograms_pending: bool,
}

/// What one pass over a slice gathers: counts, extremes, and sums taken about a fixed `shift`
/// near the data (Σ(x − shift)² then loses nothing to cancellation), plus the positive part's
/// plain sums.
#[derive(Debug, Clone, Copy, Default)]
struct Pass {
    finite: u64,
    nan: u64,
    min: f32,
    max: f32,
    /// Σ (x − shift) over the finite values.
    sum: f64,
    /// Σ (x − shift)² over the finite values.
    sum_sq: f64,
    positive: u64,
    positive_sum: f64,
    positive_sum_sq: f64,
}

impl Pass {
    /// The pass over `values` with sums about `shift`.
    fn of(values: &[f32], shift: f64) -> Pass {
        let lanes = pass_lanes(values, shift);
        let mut pass = Pass {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ..Pass::default()
        };
        for lane in &lanes {
            pass.merge(lane);
        }
        pass
    }

    /// Adds `other`, taken about the same shift.
    fn merge(&mut self, other: &Pass) {
        self.finite += other.finite;
        self.nan += other.nan;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.positive += other.positive;
        self.positive_sum += other.positive_sum;
        self.positive_sum_sq += other.positive_sum_sq;
    }

    /// Mean of the finite values (some finite value seen).
    fn mean(&self, shift: f64) -> f64 {
        shift + self.sum / self.finite as f64
    }

    /// Σ (x − mean)² of the finite values (some finite value seen).
    fn m2(&self) -> f64 {
        (self.sum_sq - self.sum * self.sum / self.finite as f64).max(0.0)
    }
}

/// Independent accumulators per pass: the sums and min/max chains split eight ways run side
/// by side instead of each waiting for the previous element, and vectorize (the f64 sums
/// differ from a serial sum by rounding only; minima and maxima are exact either way).
const LANES: usize = 8;

wide_fn! {
    /// [`Pass`] per lane of `values`, compiled for the widest vectors this CPU has.
    fn pass_lanes(values: &[f32], shift: f64) -> [Pass; LANES] => pass_lanes_plain
}

/// Runs `$body` for every value `$x` of `$values`, with its lane `$i` (index mod [`LANES`])
/// and whether it is finite (`$ok`), in groups of [`LANES`] the compiler vectorizes, the last
/// partial group padded with NaN; evaluates to the padding. A macro, not a function taking a
/// closure: the accumulators must stay local variables of the loop's function to stay in
/// vector registers.
macro_rules! each_value {
    ($values:expr, |$i:ident, $x:ident, $ok:ident| $body:block) => {{
        let mut chunks = $values.chunks_exact(LANES);
        for chunk in &mut chunks {
            let mut group = [0.0f32; LANES];
            group.copy_from_slice(chunk);
            for $i in 0..LANES {
                let $x = group[$i];
                let $ok = $x.abs() < f32::INFINITY;
                $body
            }
        }
        let rest = chunks.remainder();
        if rest.is_empty() {
            0
        } else {
            let mut group = [f32::NAN; LANES];
            group[..rest.len()].copy_from_slice(rest);
            for $i in 0..LANES {
                let $x = group[$i];
                let $ok = $x.abs() < f32::INFINITY;
                $body
            }
            LANES - rest.len()
        }
    }};
}

#[inline(always)]
fn pass_lanes_plain(values: &[f32], shift: f64) -> [Pass; LANES] {
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut sum = [0.0f64; LANES];
    let mut sum_sq = [0.0f64; LANES];
    let mut finite = [0u64; LANES];
    let mut nan = [0u64; LANES];
    let mut positive = [0u64; LANES];
    let mut positive_sum = [0.0f64; LANES];
    let mut positive_sum_sq = [0.0f64; LANES];
    // Branch-free selects (`select_unpredictable`): with plain `if`s the compiler merges
    // every `if ok` into one branch and the accumulators go to memory.
    let padding: usize = each_value!(values, |i, x, ok| {
        (min[i], max[i]) = widened(min[i], max[i], x, ok);
        let d = select(ok, f64::from(x), shift) - shift;
        sum[i] += d;
        sum_sq[i] += d * d;
        finite[i] += u64::from(ok);
        nan[i] += u64::from(x.is_nan());
        let p = ok && x > 0.0;
        let y = select(p, f64::from(x), 0.0);
        positive[i] += u64::from(p);
        positive_sum[i] += y;
        positive_sum_sq[i] += y * y;
    });
    nan[0] -= padding as u64;
    std::array::from_fn(|i| Pass {
        finite: finite[i],
        nan: nan[i],
        min: min[i],
        max: max[i],
        sum: sum[i],
        sum_sq: sum_sq[i],
        positive: positive[i],
        positive_sum: positive_sum[i],
        positive_sum_sq: positive_sum_sq[i],
    })
}

/// `(min, max)` widened to take `x` when `ok` (finite), branch-free: comparisons and selects
/// only (`f32::min` handles NaN and does not vectorize).
#[inline(always)]
fn widened(min: f32, max: f32, x: f32, ok: bool) -> (f32, f32) {
    let lo = select(ok, x, f32::INFINITY);
    let hi = select(ok, x, f32::NEG_INFINITY);
    (select(lo < min, lo, min), select(hi > max, hi, max))
}

/// The finite values' min and max (min > max when there is none), and Σ|x − mu| over them.
#[derive(Debug, Clone, Copy)]
struct Spread {
    min: f32,
    max: f32,
    abs_deviation: f64,
}

wide_fn! {
    /// [`Spread`] of `values` about `mu`, compiled for the widest vectors this CPU has.
    fn spread(values: &[f32], mu: f64) -> Spread => spread_plain
}

#[inline(always)]
fn spread_plain(values: &[f32], mu: f64) -> Spread {
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut deviation = [0.0f64; LANES];
    let _padding: usize = each_value!(values, |i, x, ok| {
        (min[i], max[i]) = widened(min[i], max[i], x, ok);
        deviation[i] += (select(ok, f64::from(x), mu) - mu).abs();
    });
    Spread {
        min: min.iter().copied().fold(f32::INFINITY, f32::min),
        max: max.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        abs_deviation: deviation.iter().sum(),
    }
}

/// Calls `f` with `values` as a row-major slice (copied when not contiguous) and its
/// first-axis length (None for a rank-0 tensor).
fn with_slice<R>(values: ArrayViewD<'_, f32>, f: impl FnOnce(&[f32], Option<usize>) -> R) -> R {
    let samples = values.shape().first().copied();
    match values.as_slice() {
        Some(slice) => f(slice, samples),
        None => f(&values.iter().copied().collect::<Vec<f32>>(), samples),
    }
}

impl CalibrationStats {
    /// Empty statistics.
    pub fn new(config: ObserverConfig) -> Self {
        let (abs_hist, signed_hist) = Self::empty_histograms(&config);
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
            abs_hist,
            signed_hist,
            abs_deviation: None,
            histograms_pending: false,
        }
    }

    fn empty_histograms(config: &ObserverConfig) -> (GrowingHistogram, Option<GrowingHistogram>) {
        let internal = config.bins.max(1) * config.oversample.max(1);
        (
            GrowingHistogram::new(internal),
            config
                .signed_histogram
                .then(|| GrowingHistogram::new(internal)),
        )
    }

    /// Statistics of one tensor (a weight, say) seen as a single batch.
    pub fn of_tensor(values: ArrayViewD<'_, f32>, config: ObserverConfig) -> Self {
        let mut s = CalibrationStats::new(config);
        s.observe(values);
        s
    }

    /// Adds one batch.
    pub fn observe(&mut self, values: ArrayViewD<'_, f32>) {
        with_slice(values, |slice, samples| {
            self.observe_samples(slice, samples)
        });
    }

    /// Adds one batch to every statistic but the histograms, which wait for a histogram pass
    /// ([`restart_histograms`](Self::restart_histograms), then
    /// [`observe_histograms`](Self::observe_histograms)): cheaper when that pass comes anyway.
    pub fn observe_statistics(&mut self, values: ArrayViewD<'_, f32>) {
        with_slice(values, |slice, samples| {
            if self.observe_moments(slice, samples).is_some() {
                self.histograms_pending = true;
                self.abs_deviation = None;
            }
        });
    }

    /// Adds one batch given as a flat slice in row-major order whose first axis has `samples`
    /// entries (None: a rank-0 tensor, one sample).
    pub fn observe_samples(&mut self, values: &[f32], samples: Option<usize>) {
        let first = self.finite == 0;
        let Some((bmin, bmax, bmean)) = self.observe_moments(values, samples) else {
            return;
        };
        // Σ|x − μ| is exact while everything seen is this one batch; a later batch moves μ.
        self.abs_deviation = first.then(|| spread(values, bmean).abs_deviation);
        self.add_to_histograms(values, bmin, bmax);
    }

    /// Adds `values`, whose finite ones span `[bmin, bmax]`, to the histograms (growing their
    /// ranges to take them).
    fn add_to_histograms(&mut self, values: &[f32], bmin: f64, bmax: f64) {
        self.abs_hist.ensure_range(0.0, bmin.abs().max(bmax.abs()));
        self.abs_hist.add(values, true);
        if let Some(signed) = self.signed_hist.as_mut() {
            signed.ensure_range(bmin, bmax);
            signed.add(values, false);
        }
    }

    /// Every statistic but the histograms and Σ|x − μ|, from one pass over `values` (per
    /// sample along the first axis). Returns the batch's finite (min, max, mean), None when it
    /// has no finite value.
    fn observe_moments(
        &mut self,
        values: &[f32],
        samples: Option<usize>,
    ) -> Option<(f64, f64, f64)> {
        if values.is_empty() {
            return None;
        }
        // Sums about a value near the data: the running mean, else the first finite value.
        let shift = if self.finite > 0 {
            self.mean
        } else {
            values
                .iter()
                .copied()
                .find(|v| v.is_finite())
                .map_or(0.0, f64::from)
        };
        let samples = samples.unwrap_or(1).max(1);
        let per_sample = values.len() / samples;
        let mut pass = Pass {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ..Pass::default()
        };
        if samples == 1 || per_sample == 0 {
            pass = Pass::of(values, shift);
            if per_sample > 0 {
                self.record_sample(&pass);
            }
        } else {
            let mut chunks = values.chunks_exact(per_sample);
            for chunk in &mut chunks {
                let sample = Pass::of(chunk, shift);
                self.record_sample(&sample);
                pass.merge(&sample);
            }
            pass.merge(&Pass::of(chunks.remainder(), shift));
        }
        self.batches += 1;
        self.count += values.len() as u64;
        self.nan += pass.nan;
        self.inf += values.len() as u64 - pass.finite - pass.nan;
        if pass.finite == 0 {
            return None;
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
        // Chan's parallel update of count, mean and M2.
        let bmean = pass.mean(shift);
        let n = self.finite + pass.finite;
        let delta = bmean - self.mean;
        self.mean += delta * pass.finite as f64 / n as f64;
        self.m2 += pass.m2() + delta * delta * self.finite as f64 * pass.finite as f64 / n as f64;
        self.finite = n;
        self.positive += pass.positive;
        self.positive_sum += pass.positive_sum;
        self.positive_sum_sq += pass.positive_sum_sq;
        Some((bmin, bmax, bmean))
    }

    /// Counts one sample's extremes into the calibration-batch averages.
    fn record_sample(&mut self, sample: &Pass) {
        if sample.finite > 0 {
            self.samples += 1;
            self.sample_min_sum += f64::from(sample.min);
            self.sample_max_sum += f64::from(sample.max);
        }
    }

    /// Whether the histograms hold every value in the bin a single pass over the final range
    /// would give (true while their range never had to grow and no histogram pass is pending).
    pub fn histograms_are_exact(&self) -> bool {
        !self.histograms_pending
            && self.abs_hist.rebin_count() == 0
            && self
                .signed_hist
                .as_ref()
                .is_none_or(|h| h.rebin_count() == 0)
    }

    /// Empties the histograms and fixes their ranges to the global `[0, max|x|]` and
    /// `[min, max]` seen so far, for a second pass over the same data with
    /// [`observe_histograms`](Self::observe_histograms): every value then lands in its exact
    /// bin, and Σ|x − μ| is summed about the final mean. The other statistics are kept.
    pub fn restart_histograms(&mut self) {
        (self.abs_hist, self.signed_hist) = Self::empty_histograms(&self.config);
        self.histograms_pending = false;
        self.abs_deviation = Some(0.0);
        if let Some((lo, hi)) = self.min_max() {
            let (lo, hi) = (f64::from(lo), f64::from(hi));
            self.abs_hist.ensure_range(0.0, lo.abs().max(hi.abs()));
            if let Some(signed) = self.signed_hist.as_mut() {
                signed.ensure_range(lo, hi);
            }
        }
    }

    /// Adds one batch to the histograms and Σ|x − μ| only (the second pass after
    /// [`restart_histograms`](Self::restart_histograms)). A value beyond the fixed range (data
    /// that differs from the first pass) grows the range as [`observe`](Self::observe) does.
    pub fn observe_histograms(&mut self, values: ArrayViewD<'_, f32>) {
        with_slice(values, |values, _| {
            let spread = spread(values, self.mean);
            if spread.min > spread.max {
                return; // no finite value
            }
            if let Some(sum) = self.abs_deviation.as_mut() {
                *sum += spread.abs_deviation;
            }
            self.add_to_histograms(values, f64::from(spread.min), f64::from(spread.max));
        });
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

    /// mean |x − μ| (the Laplace scale b): exact after one batch or a histogram pass; after
    /// several batches without one, from the signed histogram's bin centres (each value within
    /// half an internal bin), None when that histogram is not kept.
    pub fn mean_abs_deviation(&self) -> Option<f64> {
        let mu = self.mean()?;
        let sum = match self.abs_deviation {
            Some(sum) => sum,
            None => self.signed_hist.as_ref()?.abs_deviation_sum(mu),
        };
        Some(sum / self.finite as f64)
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

    /// Histogram of x over `[min, max]` with `config.bins` bins, when kept
    /// ([`ObserverConfig::signed_histogram`]).
    pub fn signed_histogram(&self) -> Option<Histogram> {
        let (lo, hi) = self.min_max()?;
        Some(self.signed_hist.as_ref()?.resample(
            f64::from(lo),
            f64::from(hi),
            self.config.bins.max(1),
        ))
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
        let (two, one) = (
            s.mean_abs_deviation().unwrap(),
            single.mean_abs_deviation().unwrap(),
        );
        assert!((two - one).abs() < 1e-12 * one, "{two} vs {one}");
    }

    /// Σ|x − μ| / n, μ the mean, in f64 over the finite values.
    fn mean_abs_deviation_of(values: &[f32]) -> f64 {
        let finite: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v))
            .collect();
        let mu = finite.iter().sum::<f64>() / finite.len() as f64;
        finite.iter().map(|x| (x - mu).abs()).sum::<f64>() / finite.len() as f64
    }

    #[test]
    fn statistics_first_then_a_histogram_pass_equal_one_pass_without_the_signed_histogram() {
        let config = ObserverConfig {
            signed_histogram: false,
            ..ObserverConfig::default()
        };
        let batches: Vec<ArrayD<f32>> = (0..4)
            .map(|b| {
                let v = (0..1000)
                    .map(|i| ((i * 37 + b * 11) % 101) as f32 * 0.013 * (b + 1) as f32 - 0.4)
                    .collect();
                arr(&[10, 100], v)
            })
            .collect();
        let all: Vec<f32> = batches.iter().flat_map(|b| b.iter().copied()).collect();
        let mut later = CalibrationStats::new(config);
        batches
            .iter()
            .for_each(|b| later.observe_statistics(b.view()));
        assert!(!later.histograms_are_exact(), "the histograms are pending");
        assert_eq!(later.mean_abs_deviation(), None, "unknown before the pass");
        later.restart_histograms();
        batches
            .iter()
            .for_each(|b| later.observe_histograms(b.view()));
        assert!(later.histograms_are_exact());
        let mut single = CalibrationStats::new(config);
        single.observe(arr(&[40, 100], all.clone()).view());
        assert_eq!(later.abs_histogram(), single.abs_histogram());
        assert_eq!(later.signed_histogram(), None, "not kept");
        assert_eq!((later.samples(), later.min_max()), (40, single.min_max()));
        let want = mean_abs_deviation_of(&all);
        for s in [&later, &single] {
            let got = s.mean_abs_deviation().unwrap();
            assert!((got - want).abs() < 1e-12 * want, "{got} vs {want}");
        }
        // Several batches observed whole, no pass: unknown without the signed histogram.
        let mut plain = CalibrationStats::new(config);
        batches.iter().for_each(|b| plain.observe(b.view()));
        assert_eq!(plain.mean_abs_deviation(), None);
    }

    #[test]
    fn lanes_and_padding_count_every_value_once() {
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        for len in 0..=19 {
            let values: Vec<f32> = (0..len)
                .map(|i| match i % 7 {
                    3 => specials[i % 3],
                    _ => (i as f32 - 6.5) * 0.75,
                })
                .collect();
            let pass = Pass::of(&values, 1.0);
            let finite: Vec<f64> = values
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| f64::from(v))
                .collect();
            let nan = values.iter().filter(|v| v.is_nan()).count() as u64;
            assert_eq!(
                (pass.finite, pass.nan),
                (finite.len() as u64, nan),
                "len {len}"
            );
            let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!((f64::from(pass.min), f64::from(pass.max)), (lo, hi));
            let sum: f64 = finite.iter().map(|x| x - 1.0).sum();
            let sum_sq: f64 = finite.iter().map(|x| (x - 1.0) * (x - 1.0)).sum();
            assert!((pass.sum - sum).abs() < 1e-9 && (pass.sum_sq - sum_sq).abs() < 1e-9);
            let positive: Vec<f64> = finite.iter().copied().filter(|&x| x > 0.0).collect();
            assert_eq!(pass.positive, positive.len() as u64);
            assert!((pass.positive_sum - positive.iter().sum::<f64>()).abs() < 1e-9);
            let spread = spread(&values, 0.5);
            assert_eq!((f64::from(spread.min), f64::from(spread.max)), (lo, hi));
            let deviation: f64 = finite.iter().map(|x| (x - 0.5).abs()).sum();
            assert!((spread.abs_deviation - deviation).abs() < 1e-9);
        }
    }

    #[test]
    fn data_far_from_zero_keeps_its_variance() {
        // 1e4 + small noise: Σx² − (Σx)²/n in f64 about 0 would lose digits; the shifted
        // sums do not.
        let values: Vec<f32> = (0..10_000)
            .map(|i| 10_000.0 + ((i * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let mut s = CalibrationStats::new(ObserverConfig::default());
        for chunk in values.chunks(2500) {
            s.observe(arr(&[chunk.len()], chunk.to_vec()).view());
        }
        let x: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let mu = x.iter().sum::<f64>() / x.len() as f64;
        let std = (x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / x.len() as f64).sqrt();
        let got = s.std().unwrap();
        assert!((got - std).abs() < 1e-9 * std, "{got} vs {std}");
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
