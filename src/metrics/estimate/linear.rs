//! The estimate of a linear quantizer in O(bins) whatever the bit width: its steps are
//! computed from S and Z rather than tabulated ([`LinearSteps`]), and where bins are wider than
//! a step, the bins inside the grid count S²/12 per value ([`FineGrid`]).

use super::ErrorEstimate;
use super::histogram::FineHistogram;
use super::pieces::{Steps, straddling_error};
use crate::quant::LinearParams;

impl FineHistogram {
    /// Expected error of a linear quantizer (any grid, symmetric or not, any clip range), in
    /// O(bins) whatever the bit width: its steps are computed, not tabulated, and where the
    /// bins are wider than a step, the bins inside the grid are not integrated step by step
    /// (see [`FineGrid`]). Each bin's end pieces are computed from its min and max (no search),
    /// and for a bin with at most one threshold inside, both of its sums (no threshold, one
    /// threshold) are computed and one is kept: where bins are about a step wide (12 bits on
    /// 8192 bins), which of the two applies follows no pattern a branch predictor could learn.
    pub fn estimate_linear(&self, params: &LinearParams) -> ErrorEstimate {
        let steps = LinearSteps::new(params, self.min, self.max);
        if self.width < 0.25 * steps.scale {
            // Bins much narrower than a step: few hold a threshold, so the branch on it is
            // predicted, and following the pieces from bin to bin is cheaper.
            return self.estimate_pieces(&steps);
        }
        let fine =
            FineGrid::of(&steps, self.lo, self.width, self.bins.len()).unwrap_or(FineGrid::NONE);
        let mut total = 0.0;
        let mut fine_values = 0u64;
        for (i, bin) in self.bins.iter().enumerate() {
            if bin.n == 0 {
                continue;
            }
            if bin.n > 2 && fine.bins.contains(&i) {
                fine_values += bin.n;
                continue;
            }
            // The pieces of the bin's ends, computed: no search, and no data-dependent branch
            // in the common case of bins narrower than a step (at 12 bits on 8192 bins most
            // bins hold one threshold, in no predictable pattern).
            let (a, b) = (bin.min, bin.max);
            let k = steps.piece(a);
            let kb = steps.piece(b);
            let centre = self.centre(i);
            if kb > k + 1 {
                total += straddling_error(bin, centre, &steps, k, kb);
                continue;
            }
            // Zero or one threshold: both sums are computed and one is kept (the same
            // arithmetic as `Bin::squared_error` and `straddling_error`).
            let (lk, lb) = (steps.level(k), steps.level(kb));
            let same = bin.squared_error(centre, lk);
            let first = steps.threshold(k);
            let low_longer = first - a >= b - first;
            let (lr, lj) = if low_longer { (lk, lb) } else { (lb, lk) };
            let (from, to) = if low_longer { (first, b) } else { (a, first) };
            // A bin of equal values has no threshold inside; keep its unused sum finite.
            let span = if b > a { b - a } else { 1.0 };
            let nj = bin.n as f64 / span * (to - from);
            let correction = (lr - lj) * nj * (from + to - lr - lj);
            let modelled = (bin.squared_error(centre, lr) + correction).max(0.0);
            let pair = (a - lk).powi(2) + (b - lb).powi(2);
            let straddle = if bin.n == 2 { pair } else { modelled };
            total += if kb == k { same } else { straddle };
        }
        total += fine_values as f64 * fine.step_error;
        self.error_estimate(total)
    }
}

/// The bins of a fine histogram that a uniform grid of step S covers with whole steps on both
/// sides: every value in them rounds to a level within S/2, never saturates. When such a bin is
/// at least one step wide, where its values fall relative to the levels is not resolved by the
/// histogram anyway, and their squared rounding error averages S²/12 each (the error of a value
/// is uniform over a step when the density is smooth on the scale of a step; the uniform model
/// of a bin spanning several steps gives S²/12 up to its two partial end pieces). Counting them
/// instead of integrating each bin piece by piece is what keeps 16-bit estimates as fast as
/// 4-bit ones. Bins of one or two values stay exact.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FineGrid {
    pub(super) bins: std::ops::Range<usize>,
    /// S²/12.
    pub(super) step_error: f64,
}

impl FineGrid {
    const NONE: FineGrid = FineGrid {
        bins: 0..0,
        step_error: 0.0,
    };

    /// The fine range of `steps` on bins of `width` from `lo`, if the bins are at least a step
    /// wide.
    pub(super) fn of(steps: &LinearSteps, lo: f64, width: f64, bins: usize) -> Option<FineGrid> {
        if steps.count < 2 || width < steps.scale {
            return None;
        }
        let (first, last) = (steps.threshold(0), steps.threshold(steps.count - 1));
        // One bin of margin on each side keeps rounding of the bin edges out of the question.
        let start = ((first - lo) / width).ceil().max(0.0) + 1.0;
        let end = ((last - lo) / width).floor().min(bins as f64) - 1.0;
        if end <= start {
            return None;
        }
        Some(FineGrid {
            bins: start as usize..end as usize,
            step_error: steps.scale * steps.scale / 12.0,
        })
    }
}

/// A linear quantizer's steps between two grid integers, computed rather than tabulated.
pub(super) struct LinearSteps {
    params: LinearParams,
    /// First grid integer (piece 0).
    qa: i32,
    /// Number of thresholds (grid integers − 1).
    count: usize,
    scale: f64,
    inverse: f64,
    /// (qa − Z + ½): threshold i is (offset + i)·S.
    offset: f64,
    /// S³/12, the squared error integrated over one whole step.
    whole_step: f64,
}

impl LinearSteps {
    /// The steps that values in [lo, hi] can reach.
    pub(super) fn new(params: &LinearParams, lo: f32, hi: f32) -> Self {
        let (qa, qb) = (params.quantize(lo), params.quantize(hi));
        let (qa, qb) = (qa.min(qb), qa.max(qb));
        let scale = f64::from(params.scale);
        LinearSteps {
            params: *params,
            qa,
            count: (qb - qa) as usize,
            scale,
            inverse: 1.0 / scale,
            offset: f64::from(qa - params.zero_point) + 0.5,
            whole_step: scale * scale * scale / 12.0,
        }
    }
}

impl LinearSteps {
    /// The piece of `x` (the number of thresholds ≤ x), computed: the same result as
    /// [`Steps::piece_of`] without a starting piece.
    #[inline]
    pub(super) fn piece(&self, x: f64) -> usize {
        // t_i ≤ x ⇔ i ≤ x/S − offset, so the piece is ⌊x/S − offset⌋ + 1 (the clamp to
        // [0, count] makes truncation a floor). Rounding can put the guess one off, near a
        // threshold: one step each way is checked without a branch, and only if either was
        // taken are the thresholds walked (rarely, so the branch is predicted).
        let guess = x * self.inverse - self.offset + 1.0;
        let g = guess.clamp(0.0, self.count as f64) as usize;
        let up = (g < self.count) & (self.threshold(g) <= x);
        let down = (g > 0) & (self.threshold(g.wrapping_sub(1)) > x);
        let mut j = g + usize::from(up) - usize::from(down);
        if up | down {
            while j < self.count && self.threshold(j) <= x {
                j += 1;
            }
            while j > 0 && self.threshold(j - 1) > x {
                j -= 1;
            }
        }
        j
    }
}

impl Steps for LinearSteps {
    #[inline]
    fn threshold(&self, i: usize) -> f64 {
        // Through i64: a single conversion instruction (i is at most 2¹⁶, or wraps to −1).
        (self.offset + i as i64 as f64) * self.scale
    }

    #[inline]
    fn level(&self, j: usize) -> f64 {
        f64::from(self.params.dequantize(self.qa + j as i32))
    }

    #[inline]
    fn piece_of(&self, x: f64, from: usize) -> usize {
        // Neighbouring bins mostly share a piece.
        if from == self.count || self.threshold(from) > x {
            return from;
        }
        // t_i ≤ x ⇔ i ≤ x/S − (qa − Z) − ½, so the piece is ⌊x/S − offset⌋ + 1 (the clamp to
        // [from, count] makes truncation a floor); then settle rounding against the thresholds.
        let guess = x * self.inverse - self.offset + 1.0;
        let mut j = guess.clamp(from as f64, self.count as f64) as usize;
        while j < self.count && self.threshold(j) <= x {
            j += 1;
        }
        while j > from && self.threshold(j - 1) > x {
            j -= 1;
        }
        j
    }

    #[inline]
    fn whole_pieces(&self, lo: usize, hi: usize) -> f64 {
        // A whole step is [L − S/2, L + S/2] around its level: S³/12 each (the f32 rounding of
        // the level, a relative 1e-7 of S at most, is left out).
        (hi - lo) as f64 * self.whole_step
    }
}
