//! Ternary weights: codes t ∈ {−1, 0, +1} with a threshold Δ, W ≈ Wp·[t = +1] − Wn·[t = −1].
//!
//! * TWN (Ternary Weight Networks): Δ = 0.7·E|W|, t = +1 if w > Δ, −1 if w < −Δ, else 0, and one
//!   scale α = mean of |W| over |W| > Δ (the L1 norm of the kept weights over their count),
//!   so Wp = Wn = α.
//! * TTQ (Trained Ternary Quantization): Δ = t·max|W| (t = 0.05 by default), with separate
//!   scales initialized from the data, Wp = mean of W over W > Δ and Wn = mean of |W| over
//!   W < −Δ. Training updates `wp`/`wn` later; they are plain fields.
//!
//! Statistics are per tensor or per channel. Non-finite values are left out of them (see
//! [`super::linear`]); NaN ternarizes to 0 and ±Inf to ±1. A scale with no weight beyond the
//! threshold (e.g. an all-zero channel) is 0.

use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};

use super::channels::{
    Granularity, check_not_empty, decode_channels, layout_for_params, map_runs, no_finite_error,
    reduce_channels,
};
use super::grid::QuantError;

type Result<T> = std::result::Result<T, QuantError>;

/// TWN's threshold factor: Δ = 0.7·E|W|.
pub const TWN_THRESHOLD_FACTOR: f32 = 0.7;

/// TTQ's default threshold factor: Δ = 0.05·max|W|.
pub const TTQ_DEFAULT_THRESHOLD: f32 = 0.05;

/// Which ternary scheme.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum TernaryMethod {
    /// Δ = 0.7·E|W|, one scale α = mean|W| over |W| > Δ.
    #[default]
    Twn,
    /// Δ = threshold·max|W| (threshold in [0, 1)), scales Wp and Wn.
    Ttq { threshold: f32 },
}

impl TernaryMethod {
    /// TTQ with the default threshold 0.05.
    pub const TTQ_DEFAULT: TernaryMethod = TernaryMethod::Ttq {
        threshold: TTQ_DEFAULT_THRESHOLD,
    };
}

/// A ternarized tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Ternarized {
    /// −1, 0 or +1 per element, same shape as the input.
    pub codes: ArrayD<i8>,
    /// Threshold Δ per channel (one per tensor).
    pub delta: Vec<f32>,
    /// Positive scale Wp per channel (= α for TWN).
    pub wp: Vec<f32>,
    /// Negative scale Wn per channel, as a magnitude (= α for TWN): code −1 means −Wn.
    pub wn: Vec<f32>,
    pub granularity: Granularity,
    pub method: TernaryMethod,
}

impl Ternarized {
    /// Ŵ = Wp for t = +1, 0 for t = 0, −Wn for t = −1 (per channel).
    pub fn dequantize(&self) -> Result<ArrayD<f32>> {
        let layout = layout_for_params(
            self.codes.shape(),
            self.granularity,
            &[
                ("positive scales", self.wp.len()),
                ("negative scales", self.wn.len()),
            ],
        )?;
        decode_channels(&self.codes, layout, |c| {
            let levels = [-self.wn[c], 0.0, self.wp[c]];
            move |t: i8| levels[(t.clamp(-1, 1) + 1) as usize]
        })
    }
}

/// Per-channel sums over the finite values for the threshold: Σ|w|, count, max|w|.
#[derive(Clone, Copy, Default)]
struct AbsStats {
    sum: f64,
    count: u64,
    max: f32,
}

/// Per-channel sums beyond the threshold: Σw and count over w > Δ, Σ|w| and count over w < −Δ.
#[derive(Clone, Copy, Default)]
struct TailStats {
    pos_sum: f64,
    pos_count: u64,
    neg_sum: f64,
    neg_count: u64,
}

fn mean(sum: f64, count: u64) -> f32 {
    if count == 0 {
        0.0
    } else {
        (sum / count as f64) as f32
    }
}

/// Ternarize `values` with TWN or TTQ, per tensor or per channel (see the module docs for the
/// formulas).
pub fn ternarize(
    values: ArrayViewD<'_, f32>,
    method: TernaryMethod,
    granularity: Granularity,
) -> Result<Ternarized> {
    if let TernaryMethod::Ttq { threshold } = method
        && !(0.0..1.0).contains(&threshold)
    {
        return Err(QuantError(format!(
            "TTQ threshold factor {threshold} must be in [0, 1)"
        )));
    }
    let layout = granularity.layout(values.shape())?;
    check_not_empty(&values)?;
    let abs = reduce_channels(
        &values,
        granularity,
        AbsStats::default(),
        |acc, _, run| {
            for &v in run.iter().filter(|v| v.is_finite()) {
                acc.sum += f64::from(v.abs());
                acc.count += 1;
                acc.max = acc.max.max(v.abs());
            }
        },
        |acc, other| {
            acc.sum += other.sum;
            acc.count += other.count;
            acc.max = acc.max.max(other.max);
        },
    )?;
    let delta = abs
        .iter()
        .enumerate()
        .map(|(c, s)| {
            if s.count == 0 {
                return Err(no_finite_error(&values, granularity, c));
            }
            Ok(match method {
                TernaryMethod::Twn => TWN_THRESHOLD_FACTOR * mean(s.sum, s.count),
                TernaryMethod::Ttq { threshold } => threshold * s.max,
            })
        })
        .collect::<Result<Vec<f32>>>()?;
    let tails = reduce_channels(
        &values,
        granularity,
        TailStats::default(),
        |acc, c, run| {
            let d = delta[c];
            for &v in run.iter().filter(|v| v.is_finite()) {
                if v > d {
                    acc.pos_sum += f64::from(v);
                    acc.pos_count += 1;
                } else if v < -d {
                    acc.neg_sum -= f64::from(v);
                    acc.neg_count += 1;
                }
            }
        },
        |acc, other| {
            acc.pos_sum += other.pos_sum;
            acc.pos_count += other.pos_count;
            acc.neg_sum += other.neg_sum;
            acc.neg_count += other.neg_count;
        },
    )?;
    let (wp, wn) = match method {
        TernaryMethod::Twn => {
            // α = Σ_{|w|>Δ} |w| / #{|w| > Δ}, shared by both signs.
            let alpha: Vec<f32> = tails
                .iter()
                .map(|t| mean(t.pos_sum + t.neg_sum, t.pos_count + t.neg_count))
                .collect();
            (alpha.clone(), alpha)
        }
        TernaryMethod::Ttq { .. } => (
            tails.iter().map(|t| mean(t.pos_sum, t.pos_count)).collect(),
            tails.iter().map(|t| mean(t.neg_sum, t.neg_count)).collect(),
        ),
    };
    let codes = map_runs(
        &values,
        layout,
        |_| (),
        |_, c, ws, out| {
            let d = delta[c];
            for (o, &w) in out.iter_mut().zip(ws) {
                // NaN compares false both ways: 0.
                *o = i8::from(w > d) - i8::from(w < -d);
            }
        },
    )?;
    Ok(Ternarized {
        codes,
        delta,
        wp,
        wn,
        granularity,
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::binary::{BinaryConfig, binarize};
    use crate::quant::test_support::squared_error;
    use ndarray::{Axis, IxDyn};

    fn hand_made() -> ArrayD<f32> {
        ArrayD::from_shape_vec(
            IxDyn(&[8]),
            vec![0.1, -0.2, 0.5, -1.0, 0.05, 0.8, -0.3, 0.0],
        )
        .unwrap()
    }

    fn gaussian_like(shape: &[usize], seed: u64) -> ArrayD<f32> {
        crate::quant::test_support::gaussian_like(shape, seed, 1.0)
    }

    #[test]
    fn twn_threshold_and_scale_on_a_hand_made_tensor() {
        // E|W| = 2.95/8, Δ = 0.7·E|W| = 0.258125; |W| > Δ: 0.5, 1.0, 0.8, 0.3 → α = 2.6/4.
        let t = ternarize(
            hand_made().view(),
            TernaryMethod::Twn,
            Granularity::PerTensor,
        )
        .unwrap();
        assert!((t.delta[0] - 0.7 * 2.95 / 8.0).abs() < 1e-6);
        assert!((t.wp[0] - 0.65).abs() < 1e-6);
        assert_eq!(t.wp, t.wn);
        assert_eq!(t.codes.as_slice().unwrap(), &[0, 0, 1, -1, 0, 1, -1, 0]);
        let d = t.dequantize().unwrap();
        assert_eq!(
            d.as_slice().unwrap(),
            &[0.0, 0.0, t.wp[0], -t.wp[0], 0.0, t.wp[0], -t.wp[0], 0.0]
        );
    }

    #[test]
    fn ttq_scales_on_a_hand_made_tensor() {
        // Δ = 0.05·max|W| = 0.05; W > Δ: 0.1, 0.5, 0.8 (0.05 is not above) → Wp = 1.4/3;
        // W < −Δ: −0.2, −1.0, −0.3 → Wn = 1.5/3.
        let t = ternarize(
            hand_made().view(),
            TernaryMethod::TTQ_DEFAULT,
            Granularity::PerTensor,
        )
        .unwrap();
        assert!((t.delta[0] - 0.05).abs() < 1e-7);
        assert!((t.wp[0] - 1.4 / 3.0).abs() < 1e-6);
        assert!((t.wn[0] - 0.5).abs() < 1e-6);
        assert_eq!(t.codes.as_slice().unwrap(), &[1, -1, 1, -1, 0, 1, -1, 0]);
        let d = t.dequantize().unwrap();
        assert_eq!(d[[3]], -t.wn[0]);
        assert_eq!(d[[5]], t.wp[0]);
        // Trained scales are plain fields: changing them changes the reconstruction.
        let mut trained = t.clone();
        trained.wp[0] = 2.0;
        assert_eq!(trained.dequantize().unwrap()[[0]], 2.0);
    }

    #[test]
    fn per_channel_statistics_equal_those_of_each_slice() {
        let w = gaussian_like(&[3, 4, 5], 1);
        for method in [TernaryMethod::Twn, TernaryMethod::TTQ_DEFAULT] {
            for axis in 0..3 {
                let g = Granularity::PerChannel { axis };
                let t = ternarize(w.view(), method, g).unwrap();
                for (c, slice) in w.axis_iter(Axis(axis)).enumerate() {
                    let s = ternarize(slice, method, Granularity::PerTensor).unwrap();
                    assert_eq!(
                        (s.delta[0], s.wp[0], s.wn[0]),
                        (t.delta[c], t.wp[c], t.wn[c])
                    );
                    assert_eq!(t.codes.index_axis(Axis(axis), c), s.codes);
                }
            }
        }
    }

    #[test]
    fn twn_beats_scaled_binary_on_gaussian_weights() {
        let w = gaussian_like(&[64, 64], 2);
        let t = ternarize(w.view(), TernaryMethod::Twn, Granularity::PerTensor).unwrap();
        let err_new = squared_error(&w, &t.dequantize().unwrap());
        let cfg = BinaryConfig {
            scaled: true,
            ..Default::default()
        };
        let err_base = squared_error(&w, &binarize(w.view(), &cfg).unwrap().dequantize().unwrap());
        assert!(err_new < err_base, "{err_new} vs {err_base}");
    }

    #[test]
    fn zeros_and_non_finite_values() {
        let zeros = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let t = ternarize(zeros.view(), TernaryMethod::Twn, Granularity::PerTensor).unwrap();
        assert_eq!((t.delta[0], t.wp[0], t.wn[0]), (0.0, 0.0, 0.0));
        assert!(t.codes.iter().all(|&c| c == 0));
        let mut w = hand_made();
        w[[7]] = f32::NAN;
        w[[4]] = f32::INFINITY;
        let t = ternarize(w.view(), TernaryMethod::TTQ_DEFAULT, Granularity::PerTensor).unwrap();
        // Statistics of the six finite values; Inf saturates to +1, NaN to 0.
        assert!((t.wn[0] - 0.5).abs() < 1e-6);
        assert_eq!((t.codes[[4]], t.codes[[7]]), (1, 0));
    }

    #[test]
    fn bad_settings_are_errors() {
        let w = hand_made();
        for threshold in [-0.1, 1.0, f32::NAN] {
            let m = TernaryMethod::Ttq { threshold };
            assert!(ternarize(w.view(), m, Granularity::PerTensor).is_err());
        }
        let axis = Granularity::PerChannel { axis: 1 };
        assert!(ternarize(w.view(), TernaryMethod::Twn, axis).is_err());
        let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 2]));
        assert!(ternarize(empty.view(), TernaryMethod::Twn, Granularity::PerTensor).is_err());
        let inf = ArrayD::from_elem(IxDyn(&[2]), f32::INFINITY);
        let err = ternarize(inf.view(), TernaryMethod::Twn, Granularity::PerTensor).unwrap_err();
        assert!(err.0.contains("2 infinite"), "{err}");
        let mut t = ternarize(w.view(), TernaryMethod::Twn, Granularity::PerTensor).unwrap();
        t.wn.clear();
        assert!(t.dequantize().is_err());
    }
}
