//! Scalar quantizers: what one value maps to under each scheme, given its clip range or
//! scales. [`Quantizer`] is the one definition the distribution view draws (levels, thresholds,
//! the staircase applied to a sample), the histogram estimate integrates
//! ([`crate::metrics::FineHistogram::estimate_quantizer`]) and explain mode spells out; it is
//! built from a [`super::WeightScheme`] by [`super::WeightScheme::quantizer`].
//!
//! Files: `staircase` (any quantizer as thresholds and levels), `scales` (the binary and
//! ternary scales of a tensor and of its channels).

mod scales;
mod staircase;

pub use scales::{ScaleStats, SchemeStats, TernaryParams};
pub use staircase::Staircase;

use super::grid::{IntGrid, LinearParams, QuantError};

/// One scalar quantizer.
#[derive(Debug, Clone, PartialEq)]
pub enum Quantizer {
    /// r = S·(q − Z) on an integer grid.
    Linear(LinearParams),
    /// α·sign(x).
    Binary { alpha: f32 },
    /// 0 for |x| < Δ, +Wp above, −Wn below.
    Ternary { delta: f32, wp: f32, wn: f32 },
    /// Nearest of the codebook's values (sorted, distinct).
    Codebook(Vec<f32>),
}

impl Quantizer {
    /// A codebook quantizer from any list of values: the finite ones, sorted and distinct.
    /// An error when none is finite.
    pub fn codebook(values: &[f32]) -> Result<Self, QuantError> {
        let mut levels: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        levels.sort_by(f32::total_cmp);
        levels.dedup();
        if levels.is_empty() {
            return Err(QuantError("the codebook has no finite value".into()));
        }
        Ok(Quantizer::Codebook(levels))
    }

    /// Number of reconstruction levels (the whole grid for linear schemes).
    pub fn level_count(&self) -> usize {
        match self {
            Quantizer::Linear(p) => p.grid.levels() as usize,
            Quantizer::Binary { .. } => 2,
            Quantizer::Ternary { .. } => 3,
            Quantizer::Codebook(levels) => levels.len(),
        }
    }

    /// The levels within [lo, hi], ascending, or None when there are more than `max`.
    pub fn levels_between(&self, lo: f64, hi: f64, max: usize) -> Option<Vec<f64>> {
        let inside = |v: &f64| *v >= lo && *v <= hi;
        let levels: Vec<f64> = match self {
            Quantizer::Linear(p) => {
                let (qa, qb) = (p.quantize(lo as f32), p.quantize(hi as f32));
                let (qa, qb) = (qa.min(qb), qa.max(qb));
                if (qb - qa) as usize >= max.saturating_add(2) {
                    return None;
                }
                (qa..=qb)
                    .map(|q| f64::from(p.dequantize(q)))
                    .filter(inside)
                    .collect()
            }
            Quantizer::Binary { alpha } => {
                vec![-f64::from(*alpha), f64::from(*alpha)]
            }
            Quantizer::Ternary { wp, wn, .. } => {
                vec![-f64::from(*wn), 0.0, f64::from(*wp)]
            }
            Quantizer::Codebook(levels) => levels.iter().map(|&v| f64::from(v)).collect(),
        };
        let levels: Vec<f64> = levels.into_iter().filter(inside).collect();
        (levels.len() <= max).then_some(levels)
    }

    /// The decision thresholds to draw read-only (ternary ±Δ), if any.
    pub fn thresholds(&self) -> Vec<f64> {
        match self {
            Quantizer::Ternary { delta, .. } => vec![-f64::from(*delta), f64::from(*delta)],
            _ => Vec::new(),
        }
    }

    /// The staircase of a non-linear quantizer (linear ones are applied and estimated directly),
    /// or None when its scales do not make one (e.g. a negative or non-finite Δ).
    pub fn staircase(&self) -> Option<Staircase> {
        match self {
            Quantizer::Linear(_) => None,
            Quantizer::Binary { alpha } => Staircase::binary(*alpha).ok(),
            Quantizer::Ternary { delta, wp, wn } => {
                Staircase::ternary_scaled(*delta, *wp, *wn).ok()
            }
            Quantizer::Codebook(levels) => Staircase::nearest(levels).ok(),
        }
    }

    /// A function applying the quantizer to one value (the identity when its scales make no
    /// staircase).
    pub fn applier(&self) -> impl Fn(f32) -> f32 + '_ {
        let staircase = self.staircase();
        move |x| match (self, &staircase) {
            (Quantizer::Linear(p), _) => p.fake_quantize(x),
            (_, Some(s)) => s.apply(x),
            (_, None) => x,
        }
    }
}

/// Linear parameters for `bits` on a signed grid (unsigned for non-negative activations) from
/// the clip range, as the quantizer computes them (the range is widened to include 0).
pub fn linear_params(
    bits: u32,
    symmetric: bool,
    unsigned: bool,
    clip: (f32, f32),
) -> Result<LinearParams, QuantError> {
    let grid = IntGrid::new(bits, !unsigned, false)?;
    let (lo, hi) = (clip.0.min(clip.1), clip.0.max(clip.1));
    LinearParams::from_range(lo, hi, grid, symmetric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_levels_follow_s_and_z() {
        // 2-bit asymmetric on [−1, 2]: S = 3/3 = 1, Z = round(−2 + 1) = −1, levels S·(q − Z)
        // for q = −2..1: −1, 0, 1, 2.
        let q = Quantizer::Linear(linear_params(2, false, false, (-1.0, 2.0)).unwrap());
        assert_eq!(q.level_count(), 4);
        assert_eq!(
            q.levels_between(-5.0, 5.0, 64).unwrap(),
            vec![-1.0, 0.0, 1.0, 2.0]
        );
        // Only the levels in view, and None when too many.
        assert_eq!(q.levels_between(-0.5, 1.5, 64).unwrap(), vec![0.0, 1.0]);
        assert_eq!(q.levels_between(-5.0, 5.0, 3), None);
        let int8 = Quantizer::Linear(linear_params(8, true, false, (-1.27, 0.5)).unwrap());
        assert_eq!(int8.level_count(), 256);
        assert_eq!(int8.levels_between(-1.3, 1.3, 64), None);
        let near_zero = int8.levels_between(-0.025, 0.025, 64).unwrap();
        // S = 1.27/127 = 0.01: levels −0.02 .. 0.02.
        assert_eq!(near_zero.len(), 5);
        assert!((near_zero[0] + 0.02).abs() < 1e-6);
        // The clip range is widened to include 0 and may be given in either order.
        assert_eq!(
            linear_params(4, false, true, (2.0, 1.0)).unwrap(),
            LinearParams::from_range(0.0, 2.0, IntGrid::new(4, false, false).unwrap(), false)
                .unwrap()
        );
        assert!(linear_params(17, true, false, (-1.0, 1.0)).is_err());
    }

    #[test]
    fn ternary_binary_and_codebook_levels() {
        let twn = Quantizer::Ternary {
            delta: 0.35,
            wp: 0.9,
            wn: 0.9,
        };
        assert_eq!(twn.level_count(), 3);
        assert_eq!(
            twn.levels_between(-9.0, 9.0, 64).unwrap(),
            [-0.9f32, 0.0, 0.9].map(f64::from)
        );
        assert_eq!(twn.thresholds(), [-0.35f32, 0.35].map(f64::from));
        let apply = twn.applier();
        assert_eq!([-1.0, -0.3, 0.2, 0.4].map(&apply), [-0.9, 0.0, 0.0, 0.9]);
        let ttq = Quantizer::Ternary {
            delta: 0.1,
            wp: 0.8,
            wn: 0.6,
        };
        assert_eq!(ttq.applier()(-0.5), -0.6);
        // A negative threshold makes no staircase: the values pass unchanged.
        let bad = Quantizer::Ternary {
            delta: -0.1,
            wp: 0.8,
            wn: 0.6,
        };
        assert_eq!((bad.staircase(), bad.applier()(-0.5)), (None, -0.5));
        let binary = Quantizer::Binary { alpha: 0.5 };
        assert_eq!((binary.level_count(), binary.applier()(-3.0)), (2, -0.5));
        let book = Quantizer::codebook(&[0.5, -1.0, 0.5, f32::NAN, 2.0]).unwrap();
        assert_eq!(book, Quantizer::Codebook(vec![-1.0, 0.5, 2.0]));
        assert_eq!(book.level_count(), 3);
        assert_eq!(book.applier()(1.3), 2.0);
        assert!(Quantizer::codebook(&[f32::NAN]).is_err());
    }
}
