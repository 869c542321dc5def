//! Scale statistics of the non-linear schemes, per tensor and per channel: binary α = E|W|,
//! TWN's Δ = 0.7·E|W| and α, TTQ's Δ = 0.05·max|W| with Wp and Wn. Computed once per tensor
//! from all values (by the tensor quantizers themselves), so the scalar quantizers built from
//! them have the levels the quantized model uses.

use ndarray::ArrayViewD;

use crate::quant::binary::mean_abs;
use crate::quant::channels::Granularity;
use crate::quant::ternary::{Ternarized, TernaryMethod, ternarize};

/// Threshold and scales of a ternary quantizer: 0 for |w| ≤ Δ, +Wp above, −Wn below.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TernaryParams {
    pub delta: f32,
    pub wp: f32,
    pub wn: f32,
}

/// The scales of one tensor or channel (zeros where the values give none, e.g. no finite value).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ScaleStats {
    /// E|W|: binary's α and the base of TWN's Δ.
    pub mean_abs: f32,
    /// max|W|: the base of TTQ's Δ.
    pub max_abs: f32,
    pub twn: TernaryParams,
    pub ttq: TernaryParams,
}

impl ScaleStats {
    /// The ternary parameters of TWN (`ttq` false) or TTQ.
    pub fn ternary(&self, ttq: bool) -> TernaryParams {
        if ttq { self.ttq } else { self.twn }
    }
}

/// Scales of the whole tensor and of each channel (empty without a channel axis).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemeStats {
    pub tensor: ScaleStats,
    pub channels: Vec<ScaleStats>,
}

impl SchemeStats {
    /// Runs the binary and ternary scale computations over `values` (heavy: a few passes).
    pub fn compute(values: ArrayViewD<'_, f32>, channel_axis: Option<usize>) -> Self {
        let tensor = scales(values.view(), Granularity::PerTensor)
            .into_iter()
            .next()
            .unwrap_or_default();
        let channels = match channel_axis {
            Some(axis) if axis < values.ndim() => {
                scales(values.view(), Granularity::PerChannel { axis })
            }
            _ => Vec::new(),
        };
        SchemeStats { tensor, channels }
    }
}

/// One [`ScaleStats`] per channel of `granularity` (empty when the quantizers refuse the data).
fn scales(values: ArrayViewD<'_, f32>, granularity: Granularity) -> Vec<ScaleStats> {
    let Ok(mean) = mean_abs(values.view(), granularity) else {
        return Vec::new();
    };
    let twn = ternarize(values.view(), TernaryMethod::Twn, granularity).ok();
    let ttq = ternarize(values.view(), TernaryMethod::TTQ_DEFAULT, granularity).ok();
    let threshold = match TernaryMethod::TTQ_DEFAULT {
        TernaryMethod::Ttq { threshold } => threshold,
        TernaryMethod::Twn => 1.0,
    };
    let params = |t: &Option<Ternarized>, c: usize| {
        t.as_ref()
            .and_then(|t| {
                Some(TernaryParams {
                    delta: *t.delta.get(c)?,
                    wp: *t.wp.get(c)?,
                    wn: *t.wn.get(c)?,
                })
            })
            .unwrap_or_default()
    };
    mean.iter()
        .enumerate()
        .map(|(c, &mean_abs)| {
            let ttq_params = params(&ttq, c);
            ScaleStats {
                mean_abs,
                max_abs: if threshold > 0.0 {
                    ttq_params.delta / threshold
                } else {
                    0.0
                },
                twn: params(&twn, c),
                ttq: ttq_params,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn twn_and_ttq_scales_follow_the_lecture_formulas() {
        // |w| = 1, 2, 3, 4 (E|W| = 2.5): TWN Δ = 1.75, α = mean of {2, 3, 4} = 3.
        let values = ArrayD::from_shape_vec(vec![2, 2], vec![-1.0f32, 2.0, -3.0, 4.0]).unwrap();
        let stats = SchemeStats::compute(values.view(), Some(0));
        let t = stats.tensor;
        assert!((t.mean_abs - 2.5).abs() < 1e-6);
        assert!((t.twn.delta - 1.75).abs() < 1e-6);
        assert!((t.twn.wp - 3.0).abs() < 1e-6 && (t.twn.wn - 3.0).abs() < 1e-6);
        // TTQ: Δ = 0.05·4 = 0.2; Wp = mean{2, 4} = 3, Wn = mean{1, 3} = 2.
        assert!((t.ttq.delta - 0.2).abs() < 1e-6);
        assert!((t.ttq.wp - 3.0).abs() < 1e-6 && (t.ttq.wn - 2.0).abs() < 1e-6);
        assert!((t.max_abs - 4.0).abs() < 1e-5);
        // Channel 1 holds {−3, 4}: E|W| = 3.5.
        assert_eq!(stats.channels.len(), 2);
        assert!((stats.channels[1].mean_abs - 3.5).abs() < 1e-6);
    }
}
