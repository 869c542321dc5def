//! "Why this threshold": the objectives the MSE and KL calibrators search over, as curves
//! against the clip value, computed from a tensor's |x| histogram by the calibrators' own
//! functions ([`mse_curve`], [`kl_curve`]), with each method's choice.
//!
//! The MSE curve is the expected squared error of a `bits`-bit uniform quantizer clipping at
//! the candidate (every bin edge); the KL curve is TensorRT's KL(P‖Q) at each candidate from
//! bin 128 on (+∞ where the candidate cannot hold the clipped mass). The MSE choice is the
//! curve's first minimum, the KL choice its last (TensorRT's `last_argmin`); both are the
//! magnitude thresholds `t` before the clamp to the observed range (see
//! [`crate::calib::methods`]).

use serde::Serialize;

use crate::calib::{CalibError, CalibrationStats, kl_curve, kl_levels, mse_curve};

/// One point of a curve: the clip value (a magnitude threshold) and the objective there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub clip: f64,
    pub value: f64,
}

/// The MSE and KL curves of one tensor for one bit width, with their minimisers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdCurves {
    pub bits: u32,
    /// Whether the tensor is one-sided (min ≥ 0: an unsigned grid on [0, t]).
    pub one_sided: bool,
    /// Expected squared error (summed over the values) against the clip.
    pub mse: Vec<CurvePoint>,
    /// KL(P‖Q) in nats against the clip.
    pub kl: Vec<CurvePoint>,
    /// The clip at the MSE curve's first minimum.
    pub mse_choice: Option<f64>,
    /// The clip at the KL curve's last minimum.
    pub kl_choice: Option<f64>,
}

/// The first (or, with `last`, the last) point of smallest finite value.
fn minimum(curve: &[CurvePoint], last: bool) -> Option<f64> {
    let mut best: Option<CurvePoint> = None;
    for &p in curve.iter().filter(|p| p.value.is_finite()) {
        let better = match best {
            None => true,
            Some(b) if last => p.value <= b.value,
            Some(b) => p.value < b.value,
        };
        if better {
            best = Some(p);
        }
    }
    best.map(|p| p.clip)
}

/// The curves of a tensor with calibration statistics `stats`, for a `bits`-bit quantizer
/// (2..=16).
pub fn threshold_curves(
    stats: &CalibrationStats,
    bits: u32,
) -> Result<ThresholdCurves, CalibError> {
    if !(2..=16).contains(&bits) {
        return Err(CalibError::Setting(format!(
            "bit width {bits} is out of range (2 to 16)"
        )));
    }
    let (min, _) = stats.min_max().ok_or(CalibError::NoData)?;
    let histogram = stats.abs_histogram().ok_or(CalibError::NoData)?;
    let one_sided = min >= 0.0;
    let hi = f64::from(histogram.hi);
    let mse: Vec<CurvePoint> = mse_curve(&histogram.counts, hi, bits, one_sided)
        .into_iter()
        .map(|(clip, value)| CurvePoint { clip, value })
        .collect();
    let width = hi / histogram.counts.len().max(1) as f64;
    let kl: Vec<CurvePoint> = kl_curve(&histogram.counts, kl_levels(bits, one_sided))
        .into_iter()
        .map(|c| CurvePoint {
            clip: c.edge as f64 * width,
            value: c.divergence,
        })
        .collect();
    Ok(ThresholdCurves {
        bits,
        one_sided,
        mse_choice: minimum(&mse, false),
        kl_choice: minimum(&kl, true),
        mse,
        kl,
    })
}
