//! The estimate of any staircase, bin by bin: the pieces of each bin's smallest and largest
//! value are searched from the previous bin's, a bin within one piece is summed exactly from
//! its moments, and a bin holding thresholds is integrated as the module docs describe
//! ([`straddling_error`], shared with the linear estimate).

use super::ErrorEstimate;
use super::histogram::{Bin, FineHistogram};
use crate::metrics::MetricsError;
use crate::quant::{QuantError, Staircase};

impl FineHistogram {
    /// Expected error of quantizing the values with `staircase`, in O(bins · log levels).
    pub fn estimate(&self, staircase: &Staircase) -> ErrorEstimate {
        self.estimate_pieces(&Tabulated::new(staircase))
    }

    /// Σ(x − Q(x))² over the bins, each integrated as the module docs describe, searching the
    /// pieces from the previous bin's: fastest when bins rarely hold a threshold.
    pub(super) fn estimate_pieces(&self, staircase: &impl Steps) -> ErrorEstimate {
        let mut total = 0.0;
        // Piece of the smallest value of the current bin. Bins are ordered, so this only moves
        // forward.
        let mut k = 0usize;
        for (i, bin) in self.bins.iter().enumerate() {
            if bin.n == 0 {
                continue;
            }
            k = staircase.piece_of(bin.min, k);
            let kb = staircase.piece_of(bin.max, k);
            total += if kb == k {
                bin.squared_error(self.centre(i), staircase.level(k))
            } else {
                straddling_error(bin, self.centre(i), staircase, k, kb)
            };
        }
        self.error_estimate(total)
    }

    /// Expected error of binary quantization α·sign(x).
    pub fn estimate_binary(&self, alpha: f32) -> Result<ErrorEstimate, MetricsError> {
        Ok(self.estimate(&Staircase::binary(alpha).map_err(invalid)?))
    }

    /// Expected error of ternary quantization: 0 for |x| < Δ, else α·sign(x).
    pub fn estimate_ternary(&self, delta: f32, alpha: f32) -> Result<ErrorEstimate, MetricsError> {
        Ok(self.estimate(&Staircase::ternary(delta, alpha).map_err(invalid)?))
    }

    /// Expected error of a codebook (k-means centroids) with nearest-level assignment.
    pub fn estimate_codebook(&self, levels: &[f32]) -> Result<ErrorEstimate, MetricsError> {
        Ok(self.estimate(&Staircase::nearest(levels).map_err(invalid)?))
    }
}

/// A quantizer that cannot be built, as a metrics error.
fn invalid(e: QuantError) -> MetricsError {
    MetricsError::Invalid(e.0)
}

/// Σ(x − Q(x))² over a bin whose values [min, max] lie in pieces `k` < `kb` of the staircase
/// (see the module docs).
pub(super) fn straddling_error(
    bin: &Bin,
    centre: f64,
    steps: &impl Steps,
    k: usize,
    kb: usize,
) -> f64 {
    let (a, b) = (bin.min, bin.max);
    let (lk, lb) = (steps.level(k), steps.level(kb));
    if bin.n == 2 {
        // The two values are the bin's min and max.
        return (a - lk).powi(2) + (b - lb).powi(2);
    }
    let density = bin.n as f64 / (b - a);
    let (first, last) = (steps.threshold(k), steps.threshold(kb - 1));
    if kb - k > 1 {
        // Several steps inside the bin: integrate every piece under the uniform density, the
        // two partial end pieces directly and the whole ones in between from the staircase.
        let cube = |x: f64| x * x * x;
        let ends = cube(first - lk) - cube(a - lk) + cube(b - lb) - cube(last - lb);
        return density * (ends / 3.0 + steps.whole_pieces(k + 1, kb));
    }
    // One threshold: the exact Σ(x − L_r)² for the longer piece r, plus the modelled correction
    // (L_r − L_j)·n_j·(2m_j − L_r − L_j) for the other piece j.
    let ((lr, lj), (from, to)) = if first - a >= b - first {
        ((lk, lb), (first, b))
    } else {
        ((lb, lk), (a, first))
    };
    let nj = density * (to - from);
    let correction = (lr - lj) * nj * (from + to - lr - lj);
    (bin.squared_error(centre, lr) + correction).max(0.0)
}

/// What the estimate needs of a staircase. Piece j lies between thresholds j − 1 and j and has
/// level j; pieces 0 and `thresholds` are unbounded.
pub(super) trait Steps {
    /// Threshold `i`.
    fn threshold(&self, i: usize) -> f64;
    /// Level of piece `j`.
    fn level(&self, j: usize) -> f64;
    /// The piece of `x` (the number of thresholds ≤ x), knowing it is at least `from`.
    fn piece_of(&self, x: f64, from: usize) -> usize;
    /// Σ over pieces `lo..hi` (all bounded) of ∫ (x − L_j)² dx over the piece.
    fn whole_pieces(&self, lo: usize, hi: usize) -> f64;
}

/// A [`Staircase`] with the prefix sums of its whole pieces' squared error, for the estimate.
pub(super) struct Tabulated<'a> {
    staircase: &'a Staircase,
    /// whole[j] = Σ over pieces 1..j of ∫ (x − L_i)² dx over the piece (the unbounded end pieces
    /// count 0); levels + 1 entries.
    whole: Vec<f64>,
}

impl<'a> Tabulated<'a> {
    pub(super) fn new(staircase: &'a Staircase) -> Self {
        let (thresholds, levels) = (staircase.thresholds(), staircase.levels());
        let mut whole = Vec::with_capacity(levels.len() + 1);
        whole.push(0.0);
        let mut sum = 0.0;
        for j in 0..levels.len() {
            if j > 0 && j < thresholds.len() {
                let (from, to, l) = (thresholds[j - 1], thresholds[j], levels[j]);
                sum += ((to - l).powi(3) - (from - l).powi(3)) / 3.0;
            }
            whole.push(sum);
        }
        Tabulated { staircase, whole }
    }
}

impl Steps for Tabulated<'_> {
    fn threshold(&self, i: usize) -> f64 {
        self.staircase.thresholds()[i]
    }

    fn level(&self, j: usize) -> f64 {
        self.staircase.levels()[j]
    }

    fn piece_of(&self, x: f64, from: usize) -> usize {
        // Neighbouring bins mostly share a piece or sit in the next few: walk a little, then
        // search.
        let t = &self.staircase.thresholds()[from..];
        for (i, &threshold) in t.iter().take(4).enumerate() {
            if threshold > x {
                return from + i;
            }
        }
        let walked = t.len().min(4);
        from + walked + t[walked..].partition_point(|&t| t <= x)
    }

    fn whole_pieces(&self, lo: usize, hi: usize) -> f64 {
        self.whole[hi] - self.whole[lo]
    }
}
