//! Binary weights: codes b ∈ {−1, +1}, optionally with a scaling factor, W ≈ α·B.
//!
//! * Deterministic binarization is the sign function, b = sign(w) with sign(0) = +1.
//! * Stochastic binarization (BinaryConnect): b = +1 with probability σ(w) and −1 otherwise,
//!   σ(w) = hard_sigmoid(w) = clip((w + 1)/2, 0, 1), from a seeded `Pcg64`.
//! * Scaling: α = ‖W‖₁/n = mean|W| (per tensor or per channel) minimizes ‖W − α·sign(W)‖².
//!
//! Non-finite values follow the rule of [`super::linear`]: they are left out of α, NaN is
//! treated as 0 (so it binarizes to +1, or to ±1 with probability ½) and ±Inf saturate to ±1.

use ndarray::{ArrayD, ArrayViewD};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::channels::{
    Granularity, check_not_empty, chunk_rng, decode_channels, layout_for_params, map_runs,
    no_finite_error, reduce_channels,
};
use super::grid::QuantError;

type Result<T> = std::result::Result<T, QuantError>;

/// How each weight becomes ±1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Binarization {
    /// b = sign(w), sign(0) = +1.
    #[default]
    Deterministic,
    /// b = +1 with probability hard_sigmoid(w), else −1 (BinaryConnect); the same seed gives
    /// the same codes.
    Stochastic { seed: u64 },
}

/// Settings of a binary quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct BinaryConfig {
    /// Granularity of the scaling factor α (the codes are element-wise either way).
    pub granularity: Granularity,
    /// Scale by α = mean|W| per tensor or channel; α = 1 when false.
    pub scaled: bool,
    pub mode: Binarization,
}

/// A binarized tensor: W ≈ α_c · b.
#[derive(Debug, Clone, PartialEq)]
pub struct Binarized {
    /// ±1 per element, same shape as the input.
    pub codes: ArrayD<i8>,
    /// One scaling factor per channel (one per tensor), 1 when unscaled.
    pub alpha: Vec<f32>,
    pub granularity: Granularity,
}

impl Binarized {
    /// Ŵ = α_c · b per element.
    pub fn dequantize(&self) -> Result<ArrayD<f32>> {
        let layout = layout_for_params(
            self.codes.shape(),
            self.granularity,
            &[("scaling factors", self.alpha.len())],
        )?;
        decode_channels(&self.codes, layout, |c| {
            let a = self.alpha[c];
            move |b: i8| a * f32::from(b)
        })
    }
}

/// σ(x) = clip((x + 1)/2, 0, 1), BinaryConnect's probability of +1.
#[inline]
pub fn hard_sigmoid(x: f32) -> f32 {
    ((x + 1.0) * 0.5).clamp(0.0, 1.0)
}

/// The optimal scaling factor for B = sign(W) per channel (one per tensor):
/// α* = argmin_α ‖W − α·B‖² = ⟨W, B⟩/n = ‖W‖₁/n = mean|W|, over the finite values.
/// A channel without finite values is an error.
pub fn mean_abs(values: ArrayViewD<'_, f32>, granularity: Granularity) -> Result<Vec<f32>> {
    let sums = reduce_channels(
        &values,
        granularity,
        (0.0f64, 0u64),
        |acc, _, run| {
            for &v in run {
                if v.is_finite() {
                    acc.0 += f64::from(v.abs());
                    acc.1 += 1;
                }
            }
        },
        |acc, other| {
            acc.0 += other.0;
            acc.1 += other.1;
        },
    )?;
    sums.into_iter()
        .enumerate()
        .map(|(c, (sum, n))| {
            if n == 0 {
                Err(no_finite_error(&values, granularity, c))
            } else {
                Ok((sum / n as f64) as f32)
            }
        })
        .collect()
}

/// Binarize `values`: b = sign(w) or stochastic with P(b = +1) = hard_sigmoid(w), and
/// α = mean|W| per tensor or channel when `config.scaled` (else α = 1).
pub fn binarize(values: ArrayViewD<'_, f32>, config: &BinaryConfig) -> Result<Binarized> {
    let layout = config.granularity.layout(values.shape())?;
    check_not_empty(&values)?;
    let alpha = if config.scaled {
        mean_abs(values.view(), config.granularity)?
    } else {
        vec![1.0; layout.channels]
    };
    let codes = match config.mode {
        Binarization::Deterministic => map_runs(
            &values,
            layout,
            |_| (),
            |_, _, ws, out| {
                for (o, &w) in out.iter_mut().zip(ws) {
                    // NaN and +0/−0 compare as not below zero: +1.
                    *o = if w < 0.0 { -1 } else { 1 };
                }
            },
        )?,
        Binarization::Stochastic { seed } => map_runs(
            &values,
            layout,
            |chunk| chunk_rng(seed, chunk),
            |rng, _, ws, out| {
                for (o, &w) in out.iter_mut().zip(ws) {
                    let w = if w.is_nan() { 0.0 } else { w };
                    let u: f32 = rng.random();
                    *o = if u < hard_sigmoid(w) { 1 } else { -1 };
                }
            },
        )?,
    };
    Ok(Binarized {
        codes,
        alpha,
        granularity: config.granularity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_support::{gaussian_like, squared_error};
    use ndarray::{Axis, IxDyn};

    #[test]
    fn sign_binarization_maps_zero_to_plus_one() {
        let w = ArrayD::from_shape_vec(
            IxDyn(&[6]),
            vec![-0.5, 0.0, -0.0, 2.0, f32::NAN, f32::NEG_INFINITY],
        )
        .unwrap();
        let cfg = BinaryConfig::default();
        let b = binarize(w.view(), &cfg).unwrap();
        assert_eq!(b.codes.as_slice().unwrap(), &[-1, 1, 1, 1, 1, -1]);
        assert_eq!(b.alpha, vec![1.0]);
        assert_eq!(
            b.dequantize().unwrap().as_slice().unwrap(),
            &[-1.0, 1.0, 1.0, 1.0, 1.0, -1.0]
        );
    }

    #[test]
    fn alpha_is_mean_abs_and_the_least_squares_optimum() {
        let w = gaussian_like(&[4, 50], 1, 0.3);
        let cfg = BinaryConfig {
            scaled: true,
            ..Default::default()
        };
        let b = binarize(w.view(), &cfg).unwrap();
        let mean_abs = w.iter().map(|v| f64::from(v.abs())).sum::<f64>() / w.len() as f64;
        assert!((f64::from(b.alpha[0]) - mean_abs).abs() < 1e-6);
        // Brute force over α: nothing beats the closed form.
        let signs = b.codes.mapv(f32::from);
        let err_at = |a: f32| squared_error(&w, &signs.mapv(|s| a * s));
        let best = err_at(b.alpha[0]);
        let max_abs = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (mut arg, mut min) = (0.0, f64::INFINITY);
        for i in 0..=10_000 {
            let a = max_abs * i as f32 / 10_000.0;
            let e = err_at(a);
            assert!(best <= e + 1e-9, "α = {a} gives {e} < {best}");
            if e < min {
                (arg, min) = (a, e);
            }
        }
        assert!((arg - b.alpha[0]).abs() <= max_abs / 10_000.0);
        // And the unscaled ±1 codes are far worse on small weights.
        let unscaled = binarize(w.view(), &BinaryConfig::default()).unwrap();
        let err_base = squared_error(&w, &unscaled.dequantize().unwrap());
        assert!(best < err_base);
    }

    #[test]
    fn per_channel_alpha_is_mean_abs_of_each_slice() {
        let w = gaussian_like(&[3, 5, 4], 2, 1.0);
        for axis in 0..3 {
            let g = Granularity::PerChannel { axis };
            let cfg = BinaryConfig {
                granularity: g,
                scaled: true,
                mode: Binarization::Deterministic,
            };
            let b = binarize(w.view(), &cfg).unwrap();
            for (c, slice) in w.axis_iter(Axis(axis)).enumerate() {
                let m = slice.iter().map(|v| v.abs()).sum::<f32>() / slice.len() as f32;
                assert!((b.alpha[c] - m).abs() < 1e-5);
            }
            let d = b.dequantize().unwrap();
            for (index, &v) in w.indexed_iter() {
                assert_eq!(d[&index], b.alpha[index[axis]] * v.signum());
            }
        }
        // Per-channel α beats one α when channel magnitudes differ.
        let mut w = gaussian_like(&[4, 64], 3, 1.0);
        w.index_axis_mut(Axis(0), 0).mapv_inplace(|v| v * 100.0);
        let err = |granularity| {
            let cfg = BinaryConfig {
                granularity,
                scaled: true,
                mode: Binarization::Deterministic,
            };
            squared_error(&w, &binarize(w.view(), &cfg).unwrap().dequantize().unwrap())
        };
        let err_base = err(Granularity::PerTensor);
        let err_new = err(Granularity::PerChannel { axis: 0 });
        assert!(err_new < err_base);
    }

    #[test]
    fn stochastic_binarization_follows_the_hard_sigmoid() {
        let levels = [-1.5f32, -0.6, 0.0, 0.3, 0.9, 2.0];
        let samples = 20_000;
        let w = ArrayD::from_shape_fn(IxDyn(&[levels.len(), samples]), |i| levels[i[0]]);
        let cfg = BinaryConfig {
            mode: Binarization::Stochastic { seed: 11 },
            ..Default::default()
        };
        let b = binarize(w.view(), &cfg).unwrap();
        for (row, &x) in b.codes.axis_iter(Axis(0)).zip(&levels) {
            let freq = row.iter().filter(|&&c| c == 1).count() as f32 / samples as f32;
            // Binomial standard deviation ≤ 0.0036; allow about 4σ.
            assert!(
                (freq - hard_sigmoid(x)).abs() < 0.015,
                "x = {x}: {freq} vs {}",
                hard_sigmoid(x)
            );
        }
        assert_eq!(binarize(w.view(), &cfg).unwrap(), b);
        let other = BinaryConfig {
            mode: Binarization::Stochastic { seed: 12 },
            ..cfg
        };
        assert_ne!(binarize(w.view(), &other).unwrap().codes, b.codes);
        assert_eq!(
            [-2.0, -1.0, 0.0, 0.5, 1.0, 3.0].map(hard_sigmoid),
            [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        let w = gaussian_like(&[2, 3], 4, 1.0);
        let cfg = BinaryConfig {
            granularity: Granularity::PerChannel { axis: 2 },
            scaled: true,
            mode: Binarization::Deterministic,
        };
        assert!(binarize(w.view(), &cfg).is_err());
        let empty = ArrayD::<f32>::zeros(IxDyn(&[0]));
        assert!(binarize(empty.view(), &BinaryConfig::default()).is_err());
        let nan = ArrayD::from_elem(IxDyn(&[3]), f32::NAN);
        let scaled = BinaryConfig {
            scaled: true,
            ..Default::default()
        };
        let err = binarize(nan.view(), &scaled).unwrap_err();
        assert!(err.0.contains("3 NaN"), "{err}");
        let mut b = binarize(w.view(), &scaled).unwrap();
        b.alpha.push(1.0);
        assert!(b.dequantize().is_err());
    }
}
