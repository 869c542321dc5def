//! Per-channel machinery shared by the tensor quantizers (`linear`, `binary`, `ternary`,
//! `kmeans`): which values share one set of parameters ([`Granularity`]), a tensor seen around
//! its channel axis ([`ChannelLayout`]), deterministic parallel reductions and maps over the
//! channels, seeded per-chunk random numbers, and the checks and errors for empty tensors and
//! non-finite values.
//!
//! # Layout and parallelism
//!
//! A tensor is seen in standard (C) order as `[outer, channels, inner]` around the channel axis;
//! element-wise maps run in parallel over fixed chunks of that order, so results (including
//! stochastic rounding) depend only on the data, shape and seed — never on the number of
//! threads. Along axis 0 each channel is one contiguous run.

use ndarray::{ArrayD, ArrayViewD, Axis, Dimension};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grid::QuantError;

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

/// Map every element to an output, in parallel over fixed chunks of standard order. Each chunk
/// gets a state from `init(chunk_index)` (e.g. a seeded RNG) and `run(state, channel, in, out)`
/// is called on each maximal run of one channel's elements within the chunk.
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, IxDyn};

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
}
