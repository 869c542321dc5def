//! Linear (affine) quantization of whole tensors: r = S·(q − Z), per tensor or per channel.
//!
//! Parameters come from a range per channel ([`minmax_ranges`], or a calibrated clip range) via
//! [`params`]; [`quantize`], [`dequantize`] and [`fake_quantize`] then apply them with
//! round-half-to-even (ONNX `QuantizeLinear`) or seeded stochastic rounding.
//!
//! # Non-finite values
//!
//! NaN and ±Inf are **ignored** when ranges and statistics are computed (as in
//! [`crate::stats`]) and **saturated** when quantized: +Inf → qmax, −Inf → qmin, and NaN → Z
//! (the code of real 0, as [`LinearParams::quantize`] does). A channel that has no finite value
//! at all has no range, and is an error naming the channel and how many NaN/Inf it holds.
//! [`check_finite`] rejects any non-finite value, for callers that want to be strict.
//!
//! # Layout and parallelism
//!
//! A tensor is seen in standard (C) order as `[outer, channels, inner]` around the channel axis
//! ([`ChannelLayout`]); element-wise maps run in parallel over fixed chunks of that order, so
//! results (including stochastic rounding) depend only on the data, shape and seed — never on
//! the number of threads. Along axis 0 each channel is one contiguous run.

use ndarray::{ArrayD, ArrayViewD, Axis, Dimension};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grid::{IntGrid, LinearParams, QuantError};

type Result<T> = std::result::Result<T, QuantError>;

/// Elements per parallel work item (fixed, so chunk-seeded randomness is reproducible).
pub(crate) const CHUNK: usize = 1 << 14;

/// Which values share one set of quantization parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Granularity {
    /// One set for the whole tensor.
    #[default]
    PerTensor,
    /// One set per index along `axis` (e.g. 0 for Conv weights `[Cout, Cin, kh, kw]`).
    PerChannel { axis: usize },
}

/// A tensor in standard order seen as `[outer, channels, inner]` around the channel axis:
/// the element at flat index `i` belongs to channel `(i / inner) % channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLayout {
    /// Product of the dimensions before the channel axis (1 per tensor).
    pub outer: usize,
    /// Number of channels (1 per tensor).
    pub channels: usize,
    /// Product of the dimensions after the channel axis (all elements per tensor).
    pub inner: usize,
}

impl ChannelLayout {
    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channel of the element at standard-order flat index `i`.
    #[inline]
    pub fn channel_of(&self, i: usize) -> usize {
        (i / self.inner.max(1)) % self.channels.max(1)
    }
}

impl Granularity {
    /// The `[outer, channels, inner]` view of a tensor of this `shape`; an error when the axis
    /// does not exist.
    pub fn layout(&self, shape: &[usize]) -> Result<ChannelLayout> {
        match *self {
            Granularity::PerTensor => Ok(ChannelLayout {
                outer: 1,
                channels: 1,
                inner: shape.iter().product(),
            }),
            Granularity::PerChannel { axis } => {
                if axis >= shape.len() {
                    return Err(QuantError(format!(
                        "channel axis {axis} is out of range for a tensor of shape {shape:?} \
                         ({} dimensions)",
                        shape.len()
                    )));
                }
                Ok(ChannelLayout {
                    outer: shape[..axis].iter().product(),
                    channels: shape[axis],
                    inner: shape[axis + 1..].iter().product(),
                })
            }
        }
    }

    /// Number of parameter sets for a tensor of this `shape` (1 per tensor).
    pub fn channel_count(&self, shape: &[usize]) -> Result<usize> {
        Ok(self.layout(shape)?.channels)
    }

    /// "channel 3 (axis 1)" or "the tensor", for messages.
    pub(crate) fn describe(&self, channel: usize) -> String {
        match *self {
            Granularity::PerTensor => "the tensor".to_string(),
            Granularity::PerChannel { axis } => format!("channel {channel} (axis {axis})"),
        }
    }
}

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

/// An error unless the tensor has at least one element.
pub(crate) fn check_not_empty(values: &ArrayViewD<'_, f32>) -> Result<()> {
    if values.is_empty() {
        return Err(QuantError(format!(
            "cannot quantize an empty tensor (shape {:?})",
            values.shape()
        )));
    }
    Ok(())
}

/// An error when any value is NaN or ±Inf, stating how many of each and where the first is.
/// The quantizers themselves ignore non-finite values in their statistics and saturate them
/// (see the module documentation); call this first to reject them instead.
pub fn check_finite(values: ArrayViewD<'_, f32>) -> Result<()> {
    let count = |pred: fn(&f32) -> bool| -> usize {
        match values.as_slice_memory_order() {
            Some(s) => s
                .par_chunks(CHUNK)
                .map(|c| c.iter().filter(|v| pred(v)).count())
                .sum(),
            None => values.iter().filter(|v| pred(v)).count(),
        }
    };
    let nan = count(|v| v.is_nan());
    let inf = count(|v| v.is_infinite());
    if nan + inf == 0 {
        return Ok(());
    }
    let first = values
        .indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(index, v)| format!("{v} at index {:?}", index.slice()))
        .unwrap_or_default();
    Err(QuantError(format!(
        "tensor of shape {:?} has {nan} NaN and {inf} infinite values (first: {first})",
        values.shape()
    )))
}

/// The error for a channel whose values are all NaN/±Inf (so it has no range or statistics).
pub(crate) fn no_finite_error(
    values: &ArrayViewD<'_, f32>,
    granularity: Granularity,
    channel: usize,
) -> QuantError {
    let (nan, inf) = match granularity {
        Granularity::PerTensor => count_non_finite(values.iter()),
        Granularity::PerChannel { axis } => {
            count_non_finite(values.index_axis(Axis(axis), channel).iter())
        }
    };
    QuantError(format!(
        "{} has no finite values ({nan} NaN, {inf} infinite), so it has no range",
        granularity.describe(channel)
    ))
}

fn count_non_finite<'a>(values: impl Iterator<Item = &'a f32>) -> (usize, usize) {
    values.fold((0, 0), |(nan, inf), v| {
        (
            nan + usize::from(v.is_nan()),
            inf + usize::from(v.is_infinite()),
        )
    })
}

/// Reduce every channel to an accumulator, in parallel and deterministically (the order of
/// the folds depends only on the shape). `fold(acc, channel, run)` sees contiguous runs of one
/// channel's values in standard order; `merge` adds a later partial into an earlier one.
pub(crate) fn reduce_channels<A, F, M>(
    values: &ArrayViewD<'_, f32>,
    granularity: Granularity,
    identity: A,
    fold: F,
    merge: M,
) -> Result<Vec<A>>
where
    A: Clone + Send + Sync,
    F: Fn(&mut A, usize, &[f32]) + Sync,
    M: Fn(&mut A, &A) + Sync,
{
    let layout = granularity.layout(values.shape())?;
    check_not_empty(values)?;
    let input = values.as_standard_layout();
    let data = input
        .as_slice()
        .ok_or_else(|| QuantError("internal: standard layout is not contiguous".into()))?;
    let ChannelLayout {
        outer,
        channels,
        inner,
    } = layout;
    if channels == 1 {
        // One accumulator: fixed chunks in parallel, merged in order.
        let partials: Vec<A> = data
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut acc = identity.clone();
                fold(&mut acc, 0, chunk);
                acc
            })
            .collect();
        let mut total = identity;
        for p in &partials {
            merge(&mut total, p);
        }
        return Ok(vec![total]);
    }
    if outer == 1 || inner >= 64 {
        // Channel-parallel: each channel is `outer` contiguous runs of `inner` values.
        return Ok((0..channels)
            .into_par_iter()
            .map(|c| {
                let mut acc = identity.clone();
                for o in 0..outer {
                    let start = (o * channels + c) * inner;
                    fold(&mut acc, c, &data[start..start + inner]);
                }
                acc
            })
            .collect());
    }
    // Short runs (channel axis near the end): split the outer index into a fixed number of
    // groups, each producing one accumulator per channel, merged in order.
    let groups = (data.len() / CHUNK).clamp(1, 64).min(outer);
    let per_group = outer.div_ceil(groups);
    let partials: Vec<Vec<A>> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut accs = vec![identity.clone(); channels];
            for o in g * per_group..((g + 1) * per_group).min(outer) {
                let row = &data[o * channels * inner..(o + 1) * channels * inner];
                for (c, (acc, run)) in accs.iter_mut().zip(row.chunks_exact(inner)).enumerate() {
                    fold(acc, c, run);
                }
            }
            accs
        })
        .collect();
    let mut totals = vec![identity; channels];
    for part in &partials {
        for (t, p) in totals.iter_mut().zip(part) {
            merge(t, p);
        }
    }
    Ok(totals)
}

/// Map every element to an output, in parallel over fixed chunks of standard order. Each chunk
/// gets a state from `init(chunk_index)` (e.g. a seeded RNG) and `run(state, channel, in, out)`
/// is called on each maximal run of one channel's elements within the chunk.
/// The channel layout of a tensor of `shape` whose per-channel parameter lists (each named
/// with its length) must hold one entry per channel; an error naming the first that does not.
pub(crate) fn layout_for_params(
    shape: &[usize],
    granularity: Granularity,
    lists: &[(&str, usize)],
) -> Result<ChannelLayout> {
    let layout = granularity.layout(shape)?;
    for &(what, len) in lists {
        if len != layout.channels {
            return Err(QuantError(format!(
                "{len} {what} for {} channels",
                layout.channels
            )));
        }
    }
    Ok(layout)
}

/// Dequantizes a tensor of per-element codes: `decoder(c)` gives channel c's code → value map
/// (built once per run of a channel's elements).
pub(crate) fn decode_channels<C, D>(
    codes: &ArrayD<C>,
    layout: ChannelLayout,
    decoder: impl Fn(usize) -> D + Sync,
) -> Result<ArrayD<f32>>
where
    C: Copy + Sync,
    D: Fn(C) -> f32,
{
    map_runs(
        &codes.view(),
        layout,
        |_| (),
        |_, c, cs, out| {
            let decode = decoder(c);
            for (o, &code) in out.iter_mut().zip(cs) {
                *o = decode(code);
            }
        },
    )
}

pub(crate) fn map_runs<I, T, S>(
    values: &ArrayViewD<'_, I>,
    layout: ChannelLayout,
    init: impl Fn(usize) -> S + Sync,
    run: impl Fn(&mut S, usize, &[I], &mut [T]) + Sync,
) -> Result<ArrayD<T>>
where
    I: Copy + Sync,
    T: Copy + Default + Send,
{
    let input = values.as_standard_layout();
    let data = input
        .as_slice()
        .ok_or_else(|| QuantError("internal: standard layout is not contiguous".into()))?;
    let inner = layout.inner.max(1);
    let channels = layout.channels.max(1);
    let mut out = vec![T::default(); data.len()];
    out.par_chunks_mut(CHUNK)
        .zip(data.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(k, (out, data))| {
            let mut state = init(k);
            let mut pos = k * CHUNK;
            let mut done = 0;
            while done < data.len() {
                let len = (inner - pos % inner).min(data.len() - done);
                let channel = (pos / inner) % channels;
                run(
                    &mut state,
                    channel,
                    &data[done..done + len],
                    &mut out[done..done + len],
                );
                done += len;
                pos += len;
            }
        });
    ArrayD::from_shape_vec(values.raw_dim(), out)
        .map_err(|e| QuantError(format!("internal: output shape: {e}")))
}

/// SplitMix64 finalizer: spreads a seed and a chunk index into independent RNG seeds.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG for work chunk `chunk` under `seed`.
pub(crate) fn chunk_rng(seed: u64, chunk: usize) -> Pcg64 {
    Pcg64::seed_from_u64(splitmix64(seed) ^ splitmix64(chunk as u64))
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
mod tests {
    use super::*;
    use ndarray::{Array, IxDyn, Slice};
    use rand::RngExt;

    fn random_tensor(shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
        let mut rng = Pcg64::seed_from_u64(seed);
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f32>())
            .collect();
        ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
    }

    fn config(bits: u32, granularity: Granularity) -> LinearConfig {
        LinearConfig {
            grid: IntGrid::new(bits, true, false).unwrap(),
            symmetric: false,
            granularity,
            rounding: Rounding::NearestEven,
        }
    }

    fn mse(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn layout_follows_the_channel_axis() {
        let shape = [2, 3, 4, 5];
        let per_channel = |axis| Granularity::PerChannel { axis }.layout(&shape).unwrap();
        assert_eq!(
            per_channel(1),
            ChannelLayout {
                outer: 2,
                channels: 3,
                inner: 20
            }
        );
        assert_eq!(per_channel(3).inner, 1);
        assert_eq!(Granularity::PerTensor.layout(&shape).unwrap().inner, 120);
        // The channel of each flat index matches the multi-index.
        let l = per_channel(2);
        let a = Array::from_shape_fn(IxDyn(&shape), |i| i[2]);
        for (flat, &c) in a.iter().enumerate() {
            assert_eq!(l.channel_of(flat), c);
        }
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step_for_every_width_and_axis() {
        let x = random_tensor(&[6, 5, 7], 1, -3.0, 2.0);
        for bits in 2..=16 {
            for granularity in [
                Granularity::PerTensor,
                Granularity::PerChannel { axis: 0 },
                Granularity::PerChannel { axis: 1 },
                Granularity::PerChannel { axis: 2 },
            ] {
                let cfg = config(bits, granularity);
                let p = minmax_params(x.view(), &cfg).unwrap();
                let y = fake_quantize(x.view(), &p, granularity, Rounding::NearestEven).unwrap();
                let layout = granularity.layout(x.shape()).unwrap();
                let xs = x.as_standard_layout();
                for (i, (&a, &b)) in xs.iter().zip(y.iter()).enumerate() {
                    let s = p[layout.channel_of(i)].scale;
                    assert!(
                        (a - b).abs() <= s * 0.5 + a.abs() * 2.0 * f32::EPSILON,
                        "bits {bits} {granularity:?}: {a} -> {b}, S {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn bulk_paths_match_the_scalar_reference_bit_for_bit() {
        // Ties, out-of-range values and non-finite values included; big enough for several chunks.
        let mut x = random_tensor(&[3, 40_000], 2, -5.0, 5.0);
        let p = LinearParams::from_scale_zero(0.25, -3, IntGrid::INT8).unwrap();
        for (i, v) in x.iter_mut().enumerate().take(64) {
            *v = (i as f32 - 32.0) * 0.125; // multiples of S/2: exact ties
        }
        x[[0, 100]] = f32::NAN;
        x[[1, 5]] = f32::INFINITY;
        x[[2, 7]] = f32::NEG_INFINITY;
        x[[2, 8]] = 1e30;
        let g = Granularity::PerTensor;
        let q = quantize(x.view(), &[p], g, Rounding::NearestEven).unwrap();
        let y = fake_quantize(x.view(), &[p], g, Rounding::NearestEven).unwrap();
        let d = dequantize(q.view(), &[p], g).unwrap();
        for ((&v, &qv), (&yv, &dv)) in x.iter().zip(&q).zip(y.iter().zip(&d)) {
            assert_eq!(qv, p.quantize(v), "x = {v}");
            assert_eq!(yv.to_bits(), p.fake_quantize(v).to_bits(), "x = {v}");
            assert_eq!(dv, yv);
        }
        assert_eq!(q[[1, 5]], 127);
        assert_eq!(q[[2, 7]], -128);
        assert_eq!(q[[0, 100]], -3);
    }

    #[test]
    fn per_channel_params_equal_per_tensor_params_of_each_slice() {
        let x = random_tensor(&[4, 3, 5], 3, -1.0, 4.0);
        for axis in 0..3 {
            let g = Granularity::PerChannel { axis };
            let pc = minmax_params(x.view(), &config(5, g)).unwrap();
            assert_eq!(pc.len(), x.shape()[axis]);
            for (c, p) in pc.iter().enumerate() {
                let slice = x.slice_axis(Axis(axis), Slice::from(c..c + 1));
                let pt = minmax_params(slice.view(), &config(5, Granularity::PerTensor)).unwrap();
                assert_eq!(pt, vec![*p]);
                // ... and quantize the slice identically.
                let whole = fake_quantize(x.view(), &pc, g, Rounding::NearestEven).unwrap();
                let part = fake_quantize(slice, &pt, Granularity::PerTensor, Rounding::NearestEven)
                    .unwrap();
                assert_eq!(whole.slice_axis(Axis(axis), Slice::from(c..c + 1)), part);
            }
        }
    }

    #[test]
    fn last_axis_channels_stay_aligned_across_chunks() {
        // 3000·7 values span two work chunks, and 2^14 is not a multiple of 7.
        let x = random_tensor(&[3000, 7], 10, -3.0, 3.0);
        let g = Granularity::PerChannel { axis: 1 };
        let mut ranges = minmax_ranges(x.view(), g).unwrap();
        for (c, r) in ranges.iter_mut().enumerate() {
            *r = (r.0 / (c + 1) as f32, r.1 / (c + 1) as f32); // distinct scales per channel
        }
        let p = params(x.view(), &config(6, g), &ranges).unwrap();
        let y = fake_quantize(x.view(), &p, g, Rounding::NearestEven).unwrap();
        for (index, &v) in x.indexed_iter() {
            assert_eq!(y[&index], p[index[1]].fake_quantize(v), "{index:?}");
        }
        let q = quantize(x.view(), &p, g, Rounding::Stochastic { seed: 4 }).unwrap();
        for (index, &v) in x.indexed_iter() {
            let p = p[index[1]];
            assert!((p.dequantize(q[&index]) - p.fake_quantize(v)).abs() <= p.scale * 1.0001);
        }
    }

    #[test]
    fn non_contiguous_views_are_handled() {
        let x = random_tensor(&[5, 6], 4, -2.0, 2.0);
        let t = x.t();
        let g = Granularity::PerChannel { axis: 0 };
        let p = minmax_params(t.view(), &config(4, g)).unwrap();
        let y = fake_quantize(t.view(), &p, g, Rounding::NearestEven).unwrap();
        assert_eq!(y.shape(), &[6, 5]);
        for (index, &v) in t.indexed_iter() {
            assert_eq!(y[&index], p[index[0]].fake_quantize(v));
        }
    }

    #[test]
    fn per_channel_beats_per_tensor_when_channel_ranges_differ() {
        // Channel ranges differ 100×: per-tensor wastes the small channels' resolution.
        let mut x = random_tensor(&[8, 64], 5, -1.0, 1.0);
        for (c, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
            row *= if c % 2 == 0 { 100.0 } else { 1.0 };
        }
        let err = |g| {
            let p = minmax_params(x.view(), &config(8, g)).unwrap();
            mse(
                &x,
                &fake_quantize(x.view(), &p, g, Rounding::NearestEven).unwrap(),
            )
        };
        let err_base = err(Granularity::PerTensor);
        let err_new = err(Granularity::PerChannel { axis: 0 });
        assert!(err_new < err_base, "{err_new} vs {err_base}");
        // On the small channels alone the gain is about (100×)² in squared error.
        let small = |g| {
            let p = minmax_params(x.view(), &config(8, g)).unwrap();
            let y = fake_quantize(x.view(), &p, g, Rounding::NearestEven).unwrap();
            let pick = |a: &ArrayD<f32>| a.slice_axis(Axis(0), Slice::new(1, None, 2)).to_owned();
            mse(&pick(&x), &pick(&y))
        };
        assert!(
            small(Granularity::PerChannel { axis: 0 }) * 1000.0 < small(Granularity::PerTensor)
        );
    }

    #[test]
    fn stochastic_rounding_is_unbiased_and_reproducible() {
        let x = random_tensor(&[50, 40], 6, -1.0, 1.0);
        let g = Granularity::PerChannel { axis: 1 };
        let p = minmax_params(x.view(), &config(3, g)).unwrap();
        let seeds = 400;
        let mut sum = ArrayD::<f64>::zeros(x.raw_dim());
        for seed in 0..seeds {
            let y = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed }).unwrap();
            sum.zip_mut_with(&y, |s, &v| *s += v as f64);
        }
        let scale = p.iter().map(|p| p.scale).fold(0.0, f32::max) as f64;
        let (mut total_bias, mut inside) = (0.0, 0);
        for (i, (&s, &v)) in sum.iter().zip(&x).enumerate() {
            // Unbiased inside the grid's range; values the rounded zero point leaves outside
            // it (by < S/2) saturate.
            let (lo, hi) = p[i % 40].range();
            if v < lo || v > hi {
                continue;
            }
            inside += 1;
            let bias = s / seeds as f64 - v as f64;
            // One draw has standard deviation ≤ S/2; the mean of 400 is ≤ S/40; allow 5σ.
            assert!(bias.abs() < scale / 8.0, "bias {bias}");
            total_bias += bias;
        }
        assert!(inside > x.len() * 9 / 10);
        assert!((total_bias / inside as f64).abs() < scale / 200.0);
        // Every result is one of the two neighbouring grid points.
        let y = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed: 9 }).unwrap();
        for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
            let s = p[i % 40].scale;
            assert!((a - b).abs() < s * (1.0 + 1e-5));
        }
        let again = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed: 9 }).unwrap();
        assert_eq!(y, again);
        let other = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed: 10 }).unwrap();
        assert_ne!(y, other);
        // Integers and fake quantization agree for the same seed.
        let q = quantize(x.view(), &p, g, Rounding::Stochastic { seed: 9 }).unwrap();
        assert_eq!(dequantize(q.view(), &p, g).unwrap(), y);
    }

    #[test]
    fn stochastic_rounding_keeps_grid_points_and_is_reproducible_across_chunks() {
        let p = LinearParams::from_scale_zero(0.5, 0, IntGrid::INT8).unwrap();
        let on_grid = Array::from_shape_fn(IxDyn(&[100_000]), |i| (i[0] % 200) as f32 * 0.5 - 50.0);
        let y = fake_quantize(
            on_grid.view(),
            &[p],
            Granularity::PerTensor,
            Rounding::Stochastic { seed: 1 },
        )
        .unwrap();
        let expected = on_grid.mapv(|v| p.fake_quantize(v));
        assert_eq!(y, expected);
        let big = random_tensor(&[70_000], 8, -10.0, 10.0);
        let a = fake_quantize(
            big.view(),
            &[p],
            Granularity::PerTensor,
            Rounding::Stochastic { seed: 3 },
        )
        .unwrap();
        let b = fake_quantize(
            big.view(),
            &[p],
            Granularity::PerTensor,
            Rounding::Stochastic { seed: 3 },
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn non_finite_values_are_ignored_in_ranges_and_saturated() {
        let x = ArrayD::from_shape_vec(
            IxDyn(&[2, 3]),
            vec![1.0, f32::NAN, -2.0, f32::INFINITY, 0.5, 3.0],
        )
        .unwrap();
        let g = Granularity::PerChannel { axis: 0 };
        assert_eq!(
            minmax_ranges(x.view(), g).unwrap(),
            vec![(-2.0, 1.0), (0.5, 3.0)]
        );
        let p = minmax_params(x.view(), &config(8, g)).unwrap();
        let q = quantize(x.view(), &p, g, Rounding::NearestEven).unwrap();
        assert_eq!(q[[0, 1]], p[0].zero_point);
        assert_eq!(q[[1, 0]], 127);
        let err = check_finite(x.view()).unwrap_err();
        assert!(err.0.contains("1 NaN and 1 infinite"), "{err}");
        assert!(err.0.contains("[0, 1]"), "{err}");
        assert!(check_finite(x.slice_axis(Axis(1), Slice::from(2..3))).is_ok());
    }

    #[test]
    fn bad_settings_are_errors() {
        let x = random_tensor(&[3, 4], 7, -1.0, 1.0);
        let axis9 = Granularity::PerChannel { axis: 2 };
        assert!(
            minmax_ranges(x.view(), axis9)
                .unwrap_err()
                .0
                .contains("axis 2")
        );
        let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 4]));
        assert!(
            minmax_ranges(empty.view(), Granularity::PerTensor)
                .unwrap_err()
                .0
                .contains("empty")
        );
        let p = minmax_params(x.view(), &config(8, Granularity::PerTensor)).unwrap();
        assert!(
            fake_quantize(
                empty.view(),
                &p,
                Granularity::PerTensor,
                Rounding::NearestEven
            )
            .is_err()
        );
        // Wrong number of ranges / params.
        let g = Granularity::PerChannel { axis: 1 };
        assert!(params(x.view(), &config(8, g), &[(0.0, 1.0)]).is_err());
        assert!(quantize(x.view(), &p, g, Rounding::NearestEven).is_err());
        assert!(
            params(
                x.view(),
                &config(8, Granularity::PerTensor),
                &[(f32::NAN, 1.0)]
            )
            .is_err()
        );
        // A channel with no finite value has no range; the message says what it holds.
        let mut bad = x.clone();
        bad.index_axis_mut(Axis(1), 2).fill(f32::NAN);
        bad[[1, 2]] = f32::NEG_INFINITY;
        let err = minmax_ranges(bad.view(), g).unwrap_err();
        assert!(
            err.0.contains("channel 2 (axis 1)") && err.0.contains("2 NaN, 1 infinite"),
            "{err}"
        );
        assert!(IntGrid::new(17, true, false).is_err());
    }
}

/// Timing check, run by hand in release:
/// `cargo test --release --no-default-features --lib quant::linear::speed -- --ignored --nocapture`.
#[cfg(test)]
mod speed {
    use super::*;
    use crate::quant::kmeans::{KMeansConfig, kmeans};
    use ndarray::IxDyn;
    use std::time::Instant;

    #[test]
    #[ignore = "timing; run in release"]
    fn fake_quantize_and_kmeans_speed() {
        let shape = [4096, 6144];
        let x = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            ((i[0] * 7919 + i[1] * 104_729) % 10_007) as f32 / 5000.0 - 1.0
        });
        let grid = IntGrid::INT8;
        for granularity in [
            Granularity::PerTensor,
            Granularity::PerChannel { axis: 0 },
            Granularity::PerChannel { axis: 1 },
        ] {
            let cfg = LinearConfig {
                grid,
                symmetric: false,
                granularity,
                rounding: Rounding::NearestEven,
            };
            let t = Instant::now();
            let p = minmax_params(x.view(), &cfg).unwrap();
            let ranges = t.elapsed();
            for rounding in [Rounding::NearestEven, Rounding::Stochastic { seed: 1 }] {
                let t = Instant::now();
                let y = fake_quantize(x.view(), &p, granularity, rounding).unwrap();
                eprintln!(
                    "{granularity:?} {rounding:?}: ranges {ranges:?}, fake_quantize {:?} ({} values, {:.2} ns/value)",
                    t.elapsed(),
                    y.len(),
                    t.elapsed().as_nanos() as f64 / y.len() as f64
                );
            }
        }
        let w = x
            .slice_axis(Axis(0), ndarray::Slice::from(0..512))
            .to_owned();
        for granularity in [Granularity::PerTensor, Granularity::PerChannel { axis: 0 }] {
            let t = Instant::now();
            let q = kmeans(w.view(), &KMeansConfig::new(4, granularity)).unwrap();
            eprintln!(
                "k-means 4 bits {granularity:?} on {} values: {:?}, max iterations {:?}",
                w.len(),
                t.elapsed(),
                q.iterations.iter().max()
            );
        }
    }
}
