//! [`FineHistogram`]: a tensor's finite values in equal-width bins, each with its count, the
//! first and second moments of its values about the bin centre and its extreme values (see the
//! estimate's module documentation); built in two parallel passes, or from a counts-only
//! histogram. Also the quantized histogram (each bin's mass moved to its level).

use ndarray::ArrayViewD;
use rayon::prelude::*;

use super::ErrorEstimate;
use crate::metrics::MetricsError;
use crate::quant::Quantizer;
use crate::stats::{Histogram, summarize_slice};

/// Count, moments about the bin centre, and extreme values of one bin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bin {
    pub(super) n: u64,
    /// Σ(x − c).
    pub(super) s1: f64,
    /// Σ(x − c)².
    pub(super) s2: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Bin {
    const EMPTY: Bin = Bin {
        n: 0,
        s1: 0.0,
        s2: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    fn merge(&mut self, other: &Bin) {
        self.n += other.n;
        self.s1 += other.s1;
        self.s2 += other.s2;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Σ(x − level)² over the bin, exactly, given its centre.
    #[inline]
    pub(super) fn squared_error(&self, centre: f64, level: f64) -> f64 {
        let d = centre - level;
        self.s2 + 2.0 * d * self.s1 + self.n as f64 * d * d
    }
}

/// Fine histogram of a tensor's finite values with per-bin moments, for [`Staircase`] error
/// estimates (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct FineHistogram {
    /// Left edge of bin 0 (the smallest finite value).
    pub(super) lo: f64,
    /// Bin width (0 when all values are equal).
    pub(super) width: f64,
    pub(super) bins: Vec<Bin>,
    pub(super) count: u64,
    pub(super) non_finite: u64,
    /// Σx² over the finite values.
    pub(super) sum_sq: f64,
    pub(super) min: f32,
    pub(super) max: f32,
}

impl FineHistogram {
    /// Fewest bins of a histogram built with [`FineHistogram::from_slice`].
    pub const MIN_BINS: usize = 2048;
    /// Most bins of a histogram built with [`FineHistogram::from_slice`].
    pub const MAX_BINS: usize = 8192;

    /// The bin count used for `n` values: n/16 rounded up to a power of two, clamped to
    /// [`MIN_BINS`](Self::MIN_BINS)..=[`MAX_BINS`](Self::MAX_BINS).
    pub fn bins_for(n: usize) -> usize {
        (n / 16)
            .next_power_of_two()
            .clamp(Self::MIN_BINS, Self::MAX_BINS)
    }

    /// Histogram of the finite values of `values` with [`bins_for`](Self::bins_for) bins.
    /// Errors when there is no finite value.
    pub fn from_slice(values: &[f32]) -> Result<Self, MetricsError> {
        Self::with_bins(values, Self::bins_for(values.len()))
    }

    /// Histogram of any array view (contiguous views are not copied).
    pub fn from_view(values: ArrayViewD<'_, f32>) -> Result<Self, MetricsError> {
        match values.as_slice_memory_order() {
            Some(slice) => Self::from_slice(slice),
            None => Self::from_slice(&values.iter().copied().collect::<Vec<_>>()),
        }
    }

    /// Histogram of the finite values of `values` with `bins` bins (at least 1) over their
    /// [min, max]. Errors when there is no finite value.
    pub fn with_bins(values: &[f32], bins: usize) -> Result<Self, MetricsError> {
        let summary = summarize_slice(values);
        let finite = summary.finite_count();
        if finite == 0 {
            return Err(MetricsError::Empty);
        }
        let (min, max) = (summary.min, summary.max);
        let bins = if min == max { 1 } else { bins.max(1) };
        let lo = f64::from(min);
        let width = (f64::from(max) - lo) / bins as f64;
        let inverse = if width > 0.0 { 1.0 / width } else { 0.0 };
        let chunk = (1usize << 15).max(bins * 4);
        let (counts, sum_sq) = values
            .par_chunks(chunk)
            .map(|chunk| {
                let mut acc = vec![Bin::EMPTY; bins];
                let mut sum_sq = 0.0;
                for &v in chunk.iter().filter(|v| v.is_finite()) {
                    let x = f64::from(v);
                    let i = (((x - lo) * inverse) as usize).min(bins - 1);
                    let d = x - (lo + (i as f64 + 0.5) * width);
                    let b = &mut acc[i];
                    b.n += 1;
                    b.s1 += d;
                    b.s2 += d * d;
                    b.min = b.min.min(x);
                    b.max = b.max.max(x);
                    sum_sq += x * x;
                }
                (acc, sum_sq)
            })
            .reduce(
                || (vec![Bin::EMPTY; bins], 0.0),
                |(mut a, sa), (b, sb)| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| x.merge(y));
                    (a, sa + sb)
                },
            );
        Ok(FineHistogram {
            lo,
            width,
            bins: counts,
            count: finite as u64,
            non_finite: (summary.nan_count + summary.inf_count) as u64,
            sum_sq,
            min,
            max,
        })
    }

    /// A fine histogram from a counts-only [`Histogram`]: values are taken as uniformly spread
    /// over each bin (moments and extremes of a uniform bin). Errors on an empty histogram or a
    /// non-finite or reversed range.
    pub fn from_histogram(h: &Histogram) -> Result<Self, MetricsError> {
        if !(h.lo.is_finite() && h.hi.is_finite() && h.lo <= h.hi) {
            return Err(MetricsError::Invalid(format!(
                "histogram range [{}, {}] is not a finite interval",
                h.lo, h.hi
            )));
        }
        let count: u64 = h.counts.iter().sum();
        if count == 0 {
            return Err(MetricsError::Empty);
        }
        let lo = f64::from(h.lo);
        let width = (f64::from(h.hi) - lo) / h.counts.len().max(1) as f64;
        let mut sum_sq = 0.0;
        let bins = h
            .counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                if n == 0 {
                    return Bin::EMPTY;
                }
                let left = lo + i as f64 * width;
                let centre = left + 0.5 * width;
                let s2 = n as f64 * width * width / 12.0;
                sum_sq += n as f64 * centre * centre + s2;
                Bin {
                    n,
                    s1: 0.0,
                    s2,
                    min: left,
                    max: left + width,
                }
            })
            .collect();
        Ok(FineHistogram {
            lo,
            width,
            bins,
            count,
            non_finite: 0,
            sum_sq,
            min: h.lo,
            max: h.hi,
        })
    }

    /// Number of finite values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of NaN and ±Inf values left out.
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    /// Number of bins.
    pub fn bin_count(&self) -> usize {
        self.bins.len()
    }

    /// Count of each bin.
    pub fn counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.bins.iter().map(|b| b.n)
    }

    /// Smallest and largest finite value.
    pub fn range(&self) -> (f32, f32) {
        (self.min, self.max)
    }

    /// Mean of x² over the finite values.
    pub fn signal_power(&self) -> f64 {
        self.sum_sq / self.count as f64
    }

    /// Centre of bin `i`.
    #[inline]
    pub(super) fn centre(&self, i: usize) -> f64 {
        self.lo + (i as f64 + 0.5) * self.width
    }

    /// The histogram's mass moved to the levels of `quantizer`: (level, count) pairs,
    /// ascending, one per level that receives values (each bin goes whole to the level of its
    /// centre). O(bins).
    pub fn quantized(&self, quantizer: &Quantizer) -> Vec<(f64, u64)> {
        let apply = quantizer.applier();
        let (lo, hi) = self.range();
        let bins = self.bin_count().max(1);
        let width = (f64::from(hi) - f64::from(lo)) / bins as f64;
        let mut out: Vec<(f64, u64)> = Vec::new();
        for (i, n) in self.counts().enumerate() {
            if n == 0 {
                continue;
            }
            let centre = f64::from(lo) + (i as f64 + 0.5) * width;
            let level = f64::from(apply(centre as f32));
            match out.last_mut() {
                Some((l, count)) if *l == level => *count += n,
                _ => out.push((level, n)),
            }
        }
        // Codebook and ternary levels are monotone in x, so equal levels are adjacent already;
        // sort and merge anyway for quantizers that are not.
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 += b.1;
                true
            } else {
                false
            }
        });
        out
    }

    /// The estimate from the summed squared error.
    pub(super) fn error_estimate(&self, total: f64) -> ErrorEstimate {
        ErrorEstimate::from_total(self.count, total, self.signal_power())
    }
}
