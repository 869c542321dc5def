//! Fake quantization of activations during training, with the straight-through estimator.
//!
//! The forward pass replaces a tensor by its quantized and de-quantized values; the backward
//! pass treats that staircase as the identity inside the clip range and as a constant outside
//! it (the lecture's STE: gradient 1 inside the clip range, 0 outside). The clip range is the
//! grid's representable range [S·(qmin − Z), S·(qmax − Z)] of the [`LinearParams`] built from
//! the tensor's range, exactly as [`crate::quant::QuantizedModel`] quantizes it after training.
//!
//! Ranges start from the PTQ configuration (a manual clip, or the calibration method applied to
//! the calibration statistics) and then follow one of:
//!
//! * [`RangeLearning::Ema`]: the lecture's exponential moving average of each batch's min and
//!   max, r ← r + c·(r_batch − r) (manual clips stay fixed);
//! * [`RangeLearning::Fixed`]: the PTQ range throughout;
//! * [`RangeLearning::Pact`] (Choi et al. 2018): the upper clip α is learned, ∂ŷ/∂α = 1 where
//!   x ≥ α (and −1 where x ≤ −α on a symmetric grid), 0 elsewhere;
//! * [`RangeLearning::Lsq`] (Esser et al. 2020): the step size S is learned with Z fixed,
//!   ∂ŷ/∂S = round(x/S) − x/S inside the range and qmin − Z / qmax − Z below / above it,
//!   the gradient scaled by 1/√(N·q⁺).
//!
//! One-bit activations (BNN) are sign(x) ∈ {−1, +1} (+1 for x ≥ 0, as the XNOR kernels pack
//! them), with the hard-tanh STE: gradient 1 where |x| ≤ 1.

use ndarray::{ArrayD, Zip};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quant::grid::{IntGrid, LinearParams};

/// How activation clip ranges change during training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RangeLearning {
    Fixed,
    /// EMA of batch min/max with the weight `momentum` of the new batch.
    Ema {
        momentum: f32,
    },
    Pact,
    Lsq,
}

impl RangeLearning {
    /// The default: EMA with weight 0.05 for the new batch.
    pub const EMA: RangeLearning = RangeLearning::Ema { momentum: 0.05 };

    /// Whether the range is a trained parameter (PACT, LSQ).
    pub fn is_learned(&self) -> bool {
        matches!(self, RangeLearning::Pact | RangeLearning::Lsq)
    }
}

/// What one quantized activation does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActivationRule {
    /// Linear on `grid`, symmetric or asymmetric.
    Linear { grid: IntGrid, symmetric: bool },
    /// sign(x) ∈ {−1, +1}.
    Binary,
}

/// One quantized activation tensor with its (changing) range and what the backward pass needs.
#[derive(Debug, Clone)]
pub struct ActivationQuantizer {
    pub tensor: String,
    pub rule: ActivationRule,
    /// The clip range the parameters are built from (linear rules).
    pub range: (f32, f32),
    /// Set by hand in the PTQ configuration: never moved by the EMA.
    pub manual: bool,
    pub learning: RangeLearning,
    /// LSQ: the learned step size (its zero point stays that of the initial range).
    lsq: Option<(f32, i32)>,
    /// The input of the last training forward (for the STE mask and the range gradients).
    saved: Option<ArrayD<f32>>,
    /// The gradient of the learned range parameter (PACT α or LSQ S) from the last backward.
    pub range_grad: f32,
}

impl ActivationQuantizer {
    /// A quantizer starting from `range`.
    pub fn new(
        tensor: &str,
        rule: ActivationRule,
        range: (f32, f32),
        manual: bool,
        learning: RangeLearning,
    ) -> Result<Self> {
        let mut q = ActivationQuantizer {
            tensor: tensor.to_string(),
            rule,
            range,
            manual,
            learning,
            lsq: None,
            saved: None,
            range_grad: 0.0,
        };
        if let (ActivationRule::Linear { .. }, RangeLearning::Lsq) = (rule, learning) {
            let p = q.params()?;
            q.lsq = Some((p.scale, p.zero_point));
        }
        Ok(q)
    }

    /// The linear parameters of the current range (or learned step).
    pub fn params(&self) -> Result<LinearParams> {
        let ActivationRule::Linear { grid, symmetric } = self.rule else {
            return Err(self.error("binary activations have no linear parameters"));
        };
        let made = match self.lsq {
            Some((scale, zero)) => LinearParams::from_scale_zero(scale, zero, grid),
            None => LinearParams::from_range(self.range.0, self.range.1, grid, symmetric),
        };
        made.map_err(|e| self.error(&e.0))
    }

    fn error(&self, msg: &str) -> Error {
        Error::Quant {
            tensor: self.tensor.clone(),
            msg: msg.to_string(),
        }
    }

    /// Quantizes `x` in place. In training the range first follows the batch (EMA) and the
    /// input is kept for [`ActivationQuantizer::backward`].
    pub fn forward(&mut self, x: &mut ArrayD<f32>, training: bool) -> Result<()> {
        if training {
            if let (RangeLearning::Ema { momentum }, false, ActivationRule::Linear { .. }) =
                (self.learning, self.manual, self.rule)
                && let Some((lo, hi)) = finite_min_max(x)
            {
                let c = momentum;
                self.range = (
                    self.range.0 + c * (lo - self.range.0),
                    self.range.1 + c * (hi - self.range.1),
                );
            }
            self.saved = Some(x.clone());
        }
        match self.rule {
            ActivationRule::Binary => x.mapv_inplace(|v| if v >= 0.0 { 1.0 } else { -1.0 }),
            ActivationRule::Linear { .. } => {
                let p = self.params()?;
                match x.as_slice_mut() {
                    Some(flat) => p.fake_quantize_slice(flat),
                    None => x.mapv_inplace(|v| p.fake_quantize(v)),
                }
            }
        }
        Ok(())
    }

    /// The STE: `g` masked to the clip range of the saved input; accumulates the gradient of a
    /// learned range parameter into `range_grad`.
    pub fn backward(&mut self, g: &mut ArrayD<f32>) -> Result<()> {
        let x = self
            .saved
            .take()
            .ok_or_else(|| self.error("backward without a training forward"))?;
        if x.shape() != g.shape() {
            return Err(self.error("gradient and saved input differ in shape"));
        }
        match self.rule {
            ActivationRule::Binary => {
                Zip::from(&mut *g).and(&x).for_each(|g, &x| {
                    if x.abs() > 1.0 {
                        *g = 0.0;
                    }
                });
            }
            ActivationRule::Linear { grid, symmetric } => {
                let p = self.params()?;
                let (lo, hi) = p.range();
                let mut range_grad = 0.0f64;
                match self.learning {
                    RangeLearning::Pact => {
                        // α is the upper end; on a symmetric grid −α is the lower end.
                        Zip::from(&mut *g).and(&x).for_each(|g, &x| {
                            if x >= hi {
                                range_grad += f64::from(*g);
                                *g = 0.0;
                            } else if x <= lo {
                                if symmetric {
                                    range_grad -= f64::from(*g);
                                }
                                *g = 0.0;
                            }
                        });
                    }
                    RangeLearning::Lsq => {
                        let s = p.scale;
                        let z = p.zero_point;
                        let (qmin, qmax) = (grid.qmin(), grid.qmax());
                        Zip::from(&mut *g).and(&x).for_each(|g, &x| {
                            let q = (x / s).round_ties_even() + z as f32;
                            let d = if q < qmin as f32 {
                                (qmin - z) as f32
                            } else if q > qmax as f32 {
                                (qmax - z) as f32
                            } else {
                                (x / s).round_ties_even() - x / s
                            };
                            range_grad += f64::from(*g) * f64::from(d);
                            if x < lo || x > hi {
                                *g = 0.0;
                            }
                        });
                        let positive = (qmax - z).max(z - qmin).max(1) as f64;
                        range_grad /= (x.len().max(1) as f64 * positive).sqrt();
                    }
                    RangeLearning::Fixed | RangeLearning::Ema { .. } => {
                        Zip::from(&mut *g).and(&x).for_each(|g, &x| {
                            if x < lo || x > hi {
                                *g = 0.0;
                            }
                        });
                    }
                }
                self.range_grad += range_grad as f32;
            }
        }
        Ok(())
    }

    /// The learned range parameter (PACT: the upper clip; LSQ: the step size), if any.
    pub fn learned_value(&self) -> Option<f32> {
        match (self.rule, self.learning, self.lsq) {
            (ActivationRule::Linear { .. }, RangeLearning::Pact, _) if !self.manual => {
                Some(self.range.1)
            }
            (ActivationRule::Linear { .. }, RangeLearning::Lsq, Some((s, _))) if !self.manual => {
                Some(s)
            }
            _ => None,
        }
    }

    /// Sets the learned parameter after an optimizer step (kept positive).
    pub fn set_learned_value(&mut self, v: f32) {
        let v = v.max(1e-6);
        match (self.learning, &mut self.lsq) {
            (RangeLearning::Pact, _) => {
                let symmetric = matches!(
                    self.rule,
                    ActivationRule::Linear {
                        symmetric: true,
                        ..
                    }
                );
                self.range = if symmetric {
                    (-v, v)
                } else {
                    (self.range.0.min(0.0), v)
                };
            }
            (RangeLearning::Lsq, Some((s, z))) => {
                *s = v;
                if let ActivationRule::Linear { grid, .. } = self.rule {
                    self.range = (v * (grid.qmin() - *z) as f32, v * (grid.qmax() - *z) as f32);
                }
            }
            _ => {}
        }
        self.range_grad = 0.0;
    }

    /// The range to record in the trained configuration: the representable range of the
    /// current parameters (linear), which rebuilds the same parameters.
    pub fn final_range(&self) -> Result<(f32, f32)> {
        match self.lsq {
            // The learned S and Z as a range: from_range on it gives S back up to rounding.
            Some(_) => Ok(self.params()?.range()),
            None => Ok(self.range),
        }
    }
}

/// Min and max of the finite values, None when there are none.
fn finite_min_max(x: &ArrayD<f32>) -> Option<(f32, f32)> {
    let (lo, hi) = x
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{IxDyn, array};

    fn linear(bits: u32, symmetric: bool) -> ActivationRule {
        ActivationRule::Linear {
            grid: IntGrid::new(bits, symmetric, false).unwrap(),
            symmetric,
        }
    }

    #[test]
    fn ste_passes_inside_the_clip_range_only() {
        // uint4 on [0, 1.5]: S = 0.1, the representable range is [0, 1.5].
        let mut q =
            ActivationQuantizer::new("a", linear(4, false), (0.0, 1.5), true, RangeLearning::EMA)
                .unwrap();
        let mut x = array![-0.2f32, 0.0, 0.26, 1.5, 1.7].into_dyn();
        q.forward(&mut x, true).unwrap();
        let p = q.params().unwrap();
        assert_eq!(
            x,
            array![0.0f32, 0.0, 0.3, 1.5, 1.5]
                .into_dyn()
                .mapv(|v| p.fake_quantize(v))
        );
        let mut g = ArrayD::from_elem(IxDyn(&[5]), 1.0f32);
        q.backward(&mut g).unwrap();
        assert_eq!(g, array![0.0f32, 1.0, 1.0, 1.0, 0.0].into_dyn());
        // A manual range does not move with the batch.
        assert_eq!(q.range, (0.0, 1.5));
    }

    #[test]
    fn ema_moves_the_range_toward_each_batch() {
        let mut q = ActivationQuantizer::new(
            "a",
            linear(8, false),
            (0.0, 1.0),
            false,
            RangeLearning::Ema { momentum: 0.5 },
        )
        .unwrap();
        let mut x = array![-1.0f32, 3.0].into_dyn();
        q.forward(&mut x, true).unwrap();
        assert_eq!(q.range, (-0.5, 2.0));
        let mut x = array![-1.0f32, 3.0].into_dyn();
        q.forward(&mut x, false).unwrap();
        assert_eq!(q.range, (-0.5, 2.0), "evaluation leaves the range alone");
    }

    #[test]
    fn binary_activations_use_the_hard_tanh_ste() {
        let mut q = ActivationQuantizer::new(
            "a",
            ActivationRule::Binary,
            (0.0, 0.0),
            false,
            RangeLearning::Fixed,
        )
        .unwrap();
        let mut x = array![-2.0f32, -0.5, 0.0, 0.7, 1.5].into_dyn();
        q.forward(&mut x, true).unwrap();
        assert_eq!(x, array![-1.0f32, -1.0, 1.0, 1.0, 1.0].into_dyn());
        let mut g = ArrayD::from_elem(IxDyn(&[5]), 2.0f32);
        q.backward(&mut g).unwrap();
        assert_eq!(g, array![0.0f32, 2.0, 2.0, 2.0, 0.0].into_dyn());
    }

    /// PACT's and LSQ's range gradients against central differences of Σ g·ŷ (away from the
    /// rounding steps, where the STE and the true derivative agree in expectation only).
    #[test]
    fn learned_range_gradients() {
        let x = array![0.07f32, 0.42, 0.93, 1.23, 2.5, 3.1].into_dyn();
        let g = array![0.3f32, -1.0, 0.5, 2.0, -0.7, 1.1].into_dyn();
        let mut q = ActivationQuantizer::new(
            "a",
            linear(4, false),
            (0.0, 1.5),
            false,
            RangeLearning::Pact,
        )
        .unwrap();
        let mut y = x.clone();
        q.forward(&mut y, true).unwrap();
        let mut gg = g.clone();
        q.backward(&mut gg).unwrap();
        // PACT: ∂ŷ/∂α = 1 where x ≥ α (x = 2.5, 3.1): Σ g = −0.7 + 1.1.
        assert!((q.range_grad - 0.4).abs() < 1e-6, "{}", q.range_grad);
        assert_eq!(gg[4], 0.0);
        assert_eq!(gg[1], -1.0);

        let mut q =
            ActivationQuantizer::new("a", linear(4, false), (0.0, 1.5), false, RangeLearning::Lsq)
                .unwrap();
        let s = q.params().unwrap().scale;
        let mut y = x.clone();
        q.forward(&mut y, true).unwrap();
        let mut gg = g.clone();
        q.backward(&mut gg).unwrap();
        // LSQ: Σ g·(round(x/S) − x/S) inside the grid, Σ g·qmax above it, scaled 1/√(N·15).
        let want: f64 = x
            .iter()
            .zip(g.iter())
            .map(|(&x, &g)| {
                let u = f64::from(x / s);
                let d = if u.round() > 15.0 {
                    15.0
                } else {
                    u.round() - u
                };
                f64::from(g) * d
            })
            .sum::<f64>()
            / ((x.len() as f64) * 15.0).sqrt();
        assert!(
            (f64::from(q.range_grad) - want).abs() < 1e-4,
            "{} vs {want}",
            q.range_grad
        );
    }
}
