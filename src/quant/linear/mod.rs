//! Linear (affine) quantization of whole tensors: r = S·(q − Z), per tensor or per channel.
//!
//! Parameters come from a range per channel ([`minmax_ranges`], or a calibrated clip range) via
//! [`params`]; [`quantize`], [`dequantize`] and [`fake_quantize`] then apply them with
//! round-half-to-even (ONNX `QuantizeLinear`) or seeded stochastic rounding. Tensors are walked
//! around their channel axis as [`super::channels`] describes: results depend only on the data,
//! shape and seed, never on the number of threads.
//!
//! # Non-finite values
//!
//! NaN and ±Inf are **ignored** when ranges and statistics are computed (as in
//! [`crate::stats`]) and **saturated** when quantized: +Inf → qmax, −Inf → qmin, and NaN → Z
//! (the code of real 0, as [`LinearParams::quantize`] does). A channel that has no finite value
//! at all has no range, and is an error naming the channel and how many NaN/Inf it holds.
//! [`check_finite`] rejects any non-finite value, for callers that want to be strict.

use ndarray::{ArrayD, ArrayViewD};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::channels::{CHUNK, chunk_rng, map_runs, no_finite_error, reduce_channels};
pub use super::channels::{ChannelLayout, Granularity, check_finite};
use super::grid::{IntGrid, LinearParams, QuantError};

type Result<T> = std::result::Result<T, QuantError>;

/// How a scaled value x/S is rounded to an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Rounding {
    /// round_half_to_even(x/S), as ONNX `QuantizeLinear`.
    #[default]
    NearestEven,
    /// floor(x/S + u) with u ~ U[0, 1) from a `Pcg64` seeded by `seed`: unbiased,
    /// E[q] = x/S. The same seed gives the same result.
    Stochastic { seed: u64 },
}

/// Settings of a linear quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearConfig {
    pub grid: IntGrid,
    /// Symmetric (Z = 0 on a signed grid, S = max|r|/(2^(b−1) − 1)) or asymmetric
    /// (S = (rmax − rmin)/(qmax − qmin), Z = round(qmin − rmin/S)).
    pub symmetric: bool,
    pub granularity: Granularity,
    pub rounding: Rounding,
}

/// (min, max) of the finite values of each channel (one pair per tensor): the lecture's
/// r_min = min W, r_max = max W. Non-finite values are ignored; a channel with no finite value
/// is an error, as is an empty tensor or a missing axis.
pub fn minmax_ranges(
    values: ArrayViewD<'_, f32>,
    granularity: Granularity,
) -> Result<Vec<(f32, f32)>> {
    let ranges = reduce_channels(
        &values,
        granularity,
        (f32::INFINITY, f32::NEG_INFINITY),
        |acc, _, run| {
            // max/min ignore NaN; ±Inf are filtered so they cannot become the range.
            for &v in run {
                let v = if v.is_finite() { v } else { f32::NAN };
                acc.0 = acc.0.min(v);
                acc.1 = acc.1.max(v);
            }
        },
        |acc, other| {
            acc.0 = acc.0.min(other.0);
            acc.1 = acc.1.max(other.1);
        },
    )?;
    ranges
        .into_iter()
        .enumerate()
        .map(|(c, (lo, hi))| {
            if lo > hi {
                Err(no_finite_error(&values, granularity, c))
            } else {
                Ok((lo, hi))
            }
        })
        .collect()
}

/// Linear parameters for each channel from its range (rmin, rmax), as in the lecture:
/// asymmetric S = (rmax − rmin)/(qmax − qmin), Z = round(qmin − rmin/S); symmetric
/// S = max(|rmin|, |rmax|)/(2^(b−1) − 1), Z = 0 (see [`LinearParams::from_range`]). `ranges`
/// holds one pair per channel of `values` along the granularity's axis (one per tensor).
pub fn params(
    values: ArrayViewD<'_, f32>,
    config: &LinearConfig,
    ranges: &[(f32, f32)],
) -> Result<Vec<LinearParams>> {
    let channels = config.granularity.channel_count(values.shape())?;
    if ranges.len() != channels {
        return Err(QuantError(format!(
            "{} ranges given for {channels} channels ({:?} of shape {:?})",
            ranges.len(),
            config.granularity,
            values.shape()
        )));
    }
    ranges
        .iter()
        .enumerate()
        .map(|(c, &(lo, hi))| {
            LinearParams::from_range(lo, hi, config.grid, config.symmetric)
                .map_err(|e| QuantError(format!("{}: {}", config.granularity.describe(c), e.0)))
        })
        .collect()
}

/// Parameters from the min/max of each channel: `params(values, config, minmax_ranges(..))`.
pub fn minmax_params(
    values: ArrayViewD<'_, f32>,
    config: &LinearConfig,
) -> Result<Vec<LinearParams>> {
    let ranges = minmax_ranges(values.view(), config.granularity)?;
    params(values, config, &ranges)
}

fn check_params(
    shape: &[usize],
    params: &[LinearParams],
    granularity: Granularity,
) -> Result<ChannelLayout> {
    let layout = granularity.layout(shape)?;
    if layout.is_empty() {
        return Err(QuantError(format!(
            "cannot quantize an empty tensor (shape {shape:?})"
        )));
    }
    if params.len() != layout.channels {
        return Err(QuantError(format!(
            "{} parameter sets given for {} channels ({granularity:?} of shape {shape:?})",
            params.len(),
            layout.channels
        )));
    }
    Ok(layout)
}

/// round_half_to_even for |v| ≤ 2^22: adding 1.5·2^23 leaves no fraction bits, so the FPU's
/// round-to-nearest-even does the rounding (branch-free and vectorizable without SSE4.1).
#[inline(always)]
fn round_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    (v + MAGIC) - MAGIC
}

/// The integer offset q − Z for x under `p`, clamped to the grid: with lo = qmin − Z and
/// hi = qmax − Z (integers), round(clamp(x/S, lo, hi)) = clamp(round(x/S), lo, hi).
#[derive(Clone, Copy)]
struct Kernel {
    scale: f32,
    zero: i32,
    lo: f32,
    hi: f32,
}

impl Kernel {
    fn new(p: &LinearParams) -> Self {
        Kernel {
            scale: p.scale,
            zero: p.zero_point,
            lo: (p.grid.qmin() - p.zero_point) as f32,
            hi: (p.grid.qmax() - p.zero_point) as f32,
        }
    }

    /// Nearest-even offset; NaN → 0 (the zero point), ±Inf saturate.
    #[inline(always)]
    fn nearest(&self, x: f32) -> f32 {
        let v = x / self.scale;
        let v = if v.is_nan() { 0.0 } else { v };
        round_even_small(v.max(self.lo).min(self.hi))
    }

    /// Stochastic offset floor(x/S + u) (in f64, so the sum does not round); NaN → 0.
    #[inline(always)]
    fn stochastic(&self, x: f32, u: f64) -> f32 {
        let v = x / self.scale;
        if v.is_nan() {
            return 0.0;
        }
        ((v as f64 + u).floor() as f32).max(self.lo).min(self.hi)
    }
}

/// Apply a per-element offset function (nearest or stochastic) and an output map.
fn apply<T: Copy + Default + Send>(
    values: ArrayViewD<'_, f32>,
    params: &[LinearParams],
    granularity: Granularity,
    rounding: Rounding,
    finish: impl Fn(&Kernel, f32) -> T + Sync,
) -> Result<ArrayD<T>> {
    let layout = check_params(values.shape(), params, granularity)?;
    let kernels: Vec<Kernel> = params.iter().map(Kernel::new).collect();
    let channels = layout.channels;
    if layout.inner == 1 && channels > 1 {
        // Channel axis last: runs would be single elements, so walk each chunk once and step
        // the channel along (same element order, hence the same random draws).
        let flat = ChannelLayout {
            outer: 1,
            channels: 1,
            inner: layout.len(),
        };
        let step = |c: &mut usize| {
            *c += 1;
            if *c == channels {
                *c = 0;
            }
        };
        return match rounding {
            Rounding::NearestEven => map_runs(
                &values,
                flat,
                |chunk| chunk * CHUNK % channels,
                |c, _, xs, out| {
                    for (o, &x) in out.iter_mut().zip(xs) {
                        let k = &kernels[*c];
                        *o = finish(k, k.nearest(x));
                        step(c);
                    }
                },
            ),
            Rounding::Stochastic { seed } => map_runs(
                &values,
                flat,
                |chunk| (chunk_rng(seed, chunk), chunk * CHUNK % channels),
                |(rng, c), _, xs, out| {
                    for (o, &x) in out.iter_mut().zip(xs) {
                        let k = &kernels[*c];
                        let u: f64 = rng.random();
                        *o = finish(k, k.stochastic(x, u));
                        step(c);
                    }
                },
            ),
        };
    }
    match rounding {
        Rounding::NearestEven => map_runs(
            &values,
            layout,
            |_| (),
            |_, c, xs, out| {
                let k = kernels[c];
                for (o, &x) in out.iter_mut().zip(xs) {
                    *o = finish(&k, k.nearest(x));
                }
            },
        ),
        Rounding::Stochastic { seed } => map_runs(
            &values,
            layout,
            |chunk| chunk_rng(seed, chunk),
            |rng, c, xs, out| {
                let k = kernels[c];
                for (o, &x) in out.iter_mut().zip(xs) {
                    let u: f64 = rng.random();
                    *o = finish(&k, k.stochastic(x, u));
                }
            },
        ),
    }
}

/// q = saturate(round(x/S) + Z) per element with its channel's parameters: round half to even
/// (ONNX `QuantizeLinear`) or stochastic floor(x/S + u). NaN → Z, ±Inf → qmax/qmin.
pub fn quantize(
    values: ArrayViewD<'_, f32>,
    params: &[LinearParams],
    granularity: Granularity,
    rounding: Rounding,
) -> Result<ArrayD<i32>> {
    apply(values, params, granularity, rounding, |k, offset| {
        offset as i32 + k.zero
    })
}

/// r = S·(q − Z) per element with its channel's parameters.
pub fn dequantize(
    codes: ArrayViewD<'_, i32>,
    params: &[LinearParams],
    granularity: Granularity,
) -> Result<ArrayD<f32>> {
    let layout = check_params(codes.shape(), params, granularity)?;
    map_runs(
        &codes,
        layout,
        |_| (),
        |_, c, qs, out| {
            let p = params[c];
            for (o, &q) in out.iter_mut().zip(qs) {
                *o = p.dequantize(q);
            }
        },
    )
}

/// Quantize then dequantize, r̂ = S·(saturate(round(x/S) + Z) − Z), without materializing the
/// integers: the simulated quantization of QAT and of the error views. Bit-identical to
/// [`LinearParams::fake_quantize`] per element for round-half-to-even.
pub fn fake_quantize(
    values: ArrayViewD<'_, f32>,
    params: &[LinearParams],
    granularity: Granularity,
    rounding: Rounding,
) -> Result<ArrayD<f32>> {
    apply(values, params, granularity, rounding, |k, offset| {
        offset * k.scale
    })
}

#[cfg(test)]
mod tests;
