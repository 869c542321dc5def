//! [`Staircase`]: a scalar quantizer as sorted decision thresholds t₁ ≤ … ≤ tₘ and levels
//! L₀ … Lₘ; a value x maps to L_k where k is the number of thresholds ≤ x (a value exactly on a
//! threshold takes the upper level, NaN the lowest). Linear quantization on any grid is one
//! (thresholds S·(q − Z + ½), levels S·(q − Z)), and so are binary α·sign(x), ternary (Δ, α)
//! and any codebook with nearest-level assignment.

use crate::quant::grid::{LinearParams, QuantError};

/// A scalar quantizer as decision thresholds and reconstruction levels (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Staircase {
    thresholds: Vec<f64>,
    levels: Vec<f64>,
}

impl Staircase {
    /// A staircase from sorted thresholds and one more level than thresholds. Levels need not
    /// be sorted; everything must be finite.
    pub fn new(thresholds: Vec<f64>, levels: Vec<f64>) -> Result<Self, QuantError> {
        if levels.len() != thresholds.len() + 1 {
            return Err(QuantError(format!(
                "{} thresholds need {} levels, not {}",
                thresholds.len(),
                thresholds.len() + 1,
                levels.len()
            )));
        }
        if !thresholds.iter().chain(&levels).all(|v| v.is_finite()) {
            return Err(QuantError("thresholds and levels must be finite".into()));
        }
        if thresholds.windows(2).any(|w| w[0] > w[1]) {
            return Err(QuantError("thresholds must be sorted ascending".into()));
        }
        Ok(Staircase { thresholds, levels })
    }

    /// Nearest-level assignment to a codebook (any order, duplicates allowed): the levels
    /// sorted, with thresholds at the midpoints between neighbours.
    pub fn nearest(levels: &[f32]) -> Result<Self, QuantError> {
        if levels.is_empty() {
            return Err(QuantError("a codebook needs a level".into()));
        }
        let mut sorted: Vec<f64> = levels.iter().map(|&v| f64::from(v)).collect();
        if !sorted.iter().all(|v| v.is_finite()) {
            return Err(QuantError("codebook levels must be finite".into()));
        }
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        let thresholds = sorted.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        Staircase::new(thresholds, sorted)
    }

    /// Linear quantization on the whole grid: levels S·(q − Z) for q in qmin..=qmax (computed
    /// as [`LinearParams::dequantize`] does), thresholds halfway between them.
    pub fn linear(params: &LinearParams) -> Self {
        Self::linear_levels(params, params.grid.qmin(), params.grid.qmax())
    }

    /// Linear quantization restricted to the levels that values in [lo, hi] can reach (same
    /// results on such values as [`Staircase::linear`], fewer levels).
    pub fn linear_between(params: &LinearParams, lo: f32, hi: f32) -> Self {
        let (qa, qb) = (params.quantize(lo), params.quantize(hi));
        Self::linear_levels(params, qa.min(qb), qa.max(qb))
    }

    fn linear_levels(params: &LinearParams, qa: i32, qb: i32) -> Self {
        let scale = f64::from(params.scale);
        let levels = (qa..=qb).map(|q| f64::from(params.dequantize(q))).collect();
        let thresholds = (qa..qb)
            .map(|q| (f64::from(q - params.zero_point) + 0.5) * scale)
            .collect();
        Staircase { thresholds, levels }
    }

    /// Binary α·sign(x) (x ≥ 0 gives +α).
    pub fn binary(alpha: f32) -> Result<Self, QuantError> {
        let a = f64::from(alpha);
        Staircase::new(vec![0.0], vec![-a, a])
    }

    /// Ternary: 0 for |x| < Δ, α·sign(x) beyond (x = Δ gives α, x = −Δ gives 0, by the
    /// threshold convention).
    pub fn ternary(delta: f32, alpha: f32) -> Result<Self, QuantError> {
        Self::ternary_scaled(delta, alpha, alpha)
    }

    /// Ternary with separate scales (TTQ): 0 for |x| < Δ, +Wp above, −Wn below.
    pub fn ternary_scaled(delta: f32, wp: f32, wn: f32) -> Result<Self, QuantError> {
        if delta < 0.0 {
            return Err(QuantError(format!("ternary threshold {delta} is negative")));
        }
        let d = f64::from(delta);
        Staircase::new(vec![-d, d], vec![-f64::from(wn), 0.0, f64::from(wp)])
    }

    /// The decision thresholds.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// The reconstruction levels (one more than thresholds).
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// The level of `x` (the staircase applied to one value).
    pub fn apply(&self, x: f32) -> f32 {
        let x = f64::from(x);
        self.levels[self.thresholds.partition_point(|&t| t <= x)] as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::IntGrid;

    #[test]
    fn staircase_apply_matches_linear_fake_quantize() {
        let p = LinearParams::from_range(-0.7, 1.9, IntGrid::new(4, false, false).unwrap(), false)
            .unwrap();
        let s = Staircase::linear(&p);
        for i in -300..300 {
            let x = i as f32 * 0.01 + 0.003;
            assert_eq!(s.apply(x), p.fake_quantize(x), "x {x}");
        }
        let r = Staircase::linear_between(&p, -0.2, 0.5);
        assert!(r.levels().len() < s.levels().len());
        assert_eq!(r.apply(0.3), p.fake_quantize(0.3));
    }

    #[test]
    fn schemes_and_bad_staircases() {
        let b = Staircase::binary(0.5).unwrap();
        assert_eq!(
            [-2.0, -0.1, 0.0, 3.0].map(|x| b.apply(x)),
            [-0.5, -0.5, 0.5, 0.5]
        );
        let t = Staircase::ternary(0.3, 0.8).unwrap();
        assert_eq!(
            [-0.5, -0.3, 0.0, 0.29, 0.3].map(|x| t.apply(x)),
            [-0.8, 0.0, 0.0, 0.0, 0.8]
        );
        let k = Staircase::nearest(&[1.0, -1.0, 0.25, 1.0]).unwrap();
        assert_eq!(k.levels(), &[-1.0, 0.25, 1.0]);
        assert_eq!(k.thresholds(), &[-0.375, 0.625]);
        assert!(Staircase::new(vec![1.0, 0.0], vec![0.0; 3]).is_err());
        assert!(Staircase::new(vec![0.0], vec![0.0]).is_err());
        assert!(Staircase::nearest(&[]).is_err());
        assert!(Staircase::nearest(&[f32::NAN]).is_err());
        assert!(Staircase::ternary(-1.0, 1.0).is_err());
    }
}
