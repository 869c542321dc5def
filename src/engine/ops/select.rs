//! Selection, masks and running sums: TopK, NonZero, Compress, OneHot, Trilu, EyeLike,
//! CumSum and ReverseSequence.
//!
//! Kernels work on float and integer data alike (booleans are 0/1 integers); index outputs are
//! int64.

use std::cmp::Ordering;

use ndarray::ArrayD;

use super::gather_scatter::{flat, index_values};
use super::{OpCtx, OpError, OpResult, Registry, array_from, checked_len, input, normalize_axis};
use super::{optional, single};
use crate::ir::{DType, TensorData};

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("TopK", top_k);
    registry.add("NonZero", non_zero);
    registry.add("Compress", compress);
    registry.add("OneHot", one_hot);
    registry.add("Trilu", trilu);
    registry.add("EyeLike", eye_like);
    registry.add("CumSum", cum_sum);
    registry.add("ReverseSequence", reverse_sequence);
}

/// The input seen as `[outer, len, inner]` around `axis`.
fn around_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// A single integer from a one-element tensor.
fn scalar_int(t: &TensorData, what: &str) -> Result<i64, OpError> {
    let v = index_values(t, what)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(OpError(format!(
            "{what} must hold one value, got shape {:?}",
            t.shape()
        ))),
    }
}

// ---- TopK -----------------------------------------------------------------------------------

/// Orders (value, index) pairs: larger (or smaller) values first, lower indices first among
/// equal values; NaN counts as the largest value.
fn rank_order<T: PartialOrd + Copy>(
    largest: bool,
) -> impl Fn(&(T, usize), &(T, usize)) -> Ordering {
    move |a, b| {
        let by_value = match a.0.partial_cmp(&b.0) {
            Some(o) => o,
            // a NaN: treat the NaN as larger
            None => {
                if a.0.partial_cmp(&a.0).is_none() {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
        };
        let by_value = if largest {
            by_value.reverse()
        } else {
            by_value
        };
        by_value.then(a.1.cmp(&b.1))
    }
}

fn top_k(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, shape.len())?;
    let k = if ctx.opset >= 10 {
        scalar_int(input(inputs, 1)?, "K")?
    } else {
        ctx.node.attr_int("k", -1)?
    };
    let (outer, len, inner) = around_axis(&shape, axis);
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= len)
        .ok_or_else(|| OpError(format!("K = {k} must lie in 0..={len} (axis {axis})")))?;
    let largest = ctx.node.attr_int("largest", 1)? != 0;
    let mut out_shape = shape.clone();
    out_shape[axis] = k;
    fn go<T: PartialOrd + Copy>(
        a: &ArrayD<T>,
        (outer, len, inner): (usize, usize, usize),
        k: usize,
        largest: bool,
    ) -> (Vec<T>, Vec<i64>) {
        let d = flat(a);
        let mut values = Vec::with_capacity(outer * k * inner);
        let mut indices = Vec::with_capacity(outer * k * inner);
        let order = rank_order::<T>(largest);
        for o in 0..outer {
            let mut picked: Vec<Vec<(T, usize)>> = Vec::with_capacity(inner);
            for i in 0..inner {
                let mut pairs: Vec<(T, usize)> = (0..len)
                    .map(|j| (d[o * len * inner + j * inner + i], j))
                    .collect();
                if k < len {
                    pairs.select_nth_unstable_by(k.saturating_sub(1).min(len - 1), &order);
                    pairs.truncate(k);
                }
                pairs.sort_by(&order);
                picked.push(pairs);
            }
            for j in 0..k {
                for p in &picked {
                    values.push(p[j].0);
                    indices.push(p[j].1 as i64);
                }
            }
        }
        (values, indices)
    }
    let dims = (outer, len, inner);
    let (values, indices): (TensorData, Vec<i64>) = match x {
        TensorData::F32(a) => {
            let (v, i) = go(a, dims, k, largest);
            (array_from(&out_shape, v)?.into(), i)
        }
        TensorData::I64(a) => {
            let (v, i) = go(a, dims, k, largest);
            (array_from(&out_shape, v)?.into(), i)
        }
    };
    Ok(vec![values, array_from(&out_shape, indices)?.into()])
}

// ---- NonZero / Compress -------------------------------------------------------------------------

fn nonzero_mask(t: &TensorData) -> Vec<bool> {
    match t {
        TensorData::F32(a) => a.iter().map(|&v| v != 0.0).collect(),
        TensorData::I64(a) => a.iter().map(|&v| v != 0).collect(),
    }
}

/// The indices of the nonzero elements, `[rank, count]`, in row-major order.
fn non_zero(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    let mask = nonzero_mask(x);
    let hits: Vec<usize> = mask
        .iter()
        .enumerate()
        .filter_map(|(i, &m)| m.then_some(i))
        .collect();
    let rank = shape.len();
    let mut out = vec![0i64; rank * hits.len()];
    for (n, &flat_index) in hits.iter().enumerate() {
        let mut rest = flat_index;
        for k in (0..rank).rev() {
            out[k * hits.len() + n] = (rest % shape[k]) as i64;
            rest /= shape[k];
        }
    }
    if rank == 0 {
        // a scalar counts as one element of a rank-1 tensor
        return single(array_from(&[1, hits.len()], vec![0i64; hits.len()])?);
    }
    single(array_from(&[rank, hits.len()], out)?)
}

fn compress(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let condition = nonzero_mask(input(inputs, 1)?);
    // Without an axis the input is flattened first.
    let (shape, axis) = if ctx.node.attributes.contains_key("axis") {
        let axis = normalize_axis(ctx.node.attr_int("axis", 0)?, x.shape().len())?;
        (x.shape().to_vec(), axis)
    } else {
        (vec![x.len()], 0)
    };
    let (outer, len, inner) = around_axis(&shape, axis);
    if condition.len() > len {
        return Err(OpError(format!(
            "condition has {} values for an axis of size {len}",
            condition.len()
        )));
    }
    let kept: Vec<usize> = (0..condition.len()).filter(|&j| condition[j]).collect();
    let mut out_shape = shape.clone();
    out_shape[axis] = kept.len();
    fn go<T: Copy>(a: &ArrayD<T>, dims: (usize, usize, usize), kept: &[usize]) -> Vec<T> {
        let (outer, len, inner) = dims;
        let d = flat(a);
        let mut v = Vec::with_capacity(outer * kept.len() * inner);
        for o in 0..outer {
            for &j in kept {
                let s = (o * len + j) * inner;
                v.extend_from_slice(&d[s..s + inner]);
            }
        }
        v
    }
    let dims = (outer, len, inner);
    single(match x {
        TensorData::F32(a) => TensorData::from(array_from(&out_shape, go(a, dims, &kept))?),
        TensorData::I64(a) => TensorData::from(array_from(&out_shape, go(a, dims, &kept))?),
    })
}

// ---- OneHot / Trilu / EyeLike ---------------------------------------------------------------------

fn one_hot(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let indices_t = input(inputs, 0)?;
    let depth_t = input(inputs, 1)?;
    let values = input(inputs, 2)?;
    let depth = match depth_t {
        TensorData::F32(a) if a.len() == 1 => a.iter().next().map(|&v| v as i64),
        TensorData::I64(a) if a.len() == 1 => a.iter().next().copied(),
        _ => None,
    }
    .and_then(|d| usize::try_from(d).ok())
    .filter(|&d| d > 0)
    .ok_or_else(|| OpError("depth must be one positive value".into()))?;
    if values.len() != 2 {
        return Err(OpError(format!(
            "values must hold [off, on], got shape {:?}",
            values.shape()
        )));
    }
    let indices: Vec<i64> = match indices_t {
        TensorData::I64(a) => a.iter().copied().collect(),
        TensorData::F32(a) => a.iter().map(|&v| v as i64).collect(),
    };
    let ishape = indices_t.shape();
    let rank = ishape.len() + 1;
    let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, rank)?;
    let mut out_shape = ishape.to_vec();
    out_shape.insert(axis, depth);
    checked_len(&out_shape)?;
    let (outer, inner) = (
        ishape[..axis].iter().product::<usize>(),
        ishape[axis..].iter().product::<usize>(),
    );
    // position of the "on" value for every index, None when out of range
    let hot: Vec<Option<usize>> = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + depth as i64 } else { i };
            (0..depth as i64).contains(&j).then_some(j as usize)
        })
        .collect();
    fn go<T: Copy>(
        off: T,
        on: T,
        hot: &[Option<usize>],
        (outer, depth, inner): (usize, usize, usize),
    ) -> Vec<T> {
        let mut v = vec![off; outer * depth * inner];
        for o in 0..outer {
            for i in 0..inner {
                if let Some(j) = hot[o * inner + i] {
                    v[(o * depth + j) * inner + i] = on;
                }
            }
        }
        v
    }
    let dims = (outer, depth, inner);
    single(match values {
        TensorData::F32(a) => {
            let v: Vec<f32> = a.iter().copied().collect();
            TensorData::from(array_from(&out_shape, go(v[0], v[1], &hot, dims))?)
        }
        TensorData::I64(a) => {
            let v: Vec<i64> = a.iter().copied().collect();
            TensorData::from(array_from(&out_shape, go(v[0], v[1], &hot, dims))?)
        }
    })
}

/// Keeps the upper (j − i ≥ k) or lower (j − i ≤ k) triangle of the last two axes.
fn trilu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let k = optional(inputs, 1)
        .map(|t| scalar_int(t, "k"))
        .transpose()?
        .unwrap_or(0);
    let upper = ctx.node.attr_int("upper", 1)? != 0;
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(OpError(format!(
            "input must have rank >= 2, got shape {shape:?}"
        )));
    }
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let keep = |n: usize| {
        let (i, j) = (((n / cols) % rows) as i64, (n % cols) as i64);
        if upper { j - i >= k } else { j - i <= k }
    };
    fn go<T: Copy + Default>(a: &ArrayD<T>, keep: impl Fn(usize) -> bool) -> Vec<T> {
        flat(a)
            .iter()
            .enumerate()
            .map(|(n, &v)| if keep(n) { v } else { T::default() })
            .collect()
    }
    single(match x {
        TensorData::F32(a) => TensorData::from(array_from(&shape, go(a, keep))?),
        TensorData::I64(a) => TensorData::from(array_from(&shape, go(a, keep))?),
    })
}

/// A 2-D tensor of the input's shape with ones on the k-th diagonal.
fn eye_like(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    if shape.len() != 2 {
        return Err(OpError(format!("input must be 2-D, got shape {shape:?}")));
    }
    let k = ctx.node.attr_int("k", 0)?;
    let ints = match ctx.node.attr_int("dtype", -1)? {
        -1 => matches!(x, TensorData::I64(_)),
        code => {
            let dtype = i32::try_from(code)
                .ok()
                .and_then(DType::from_onnx)
                .ok_or_else(|| OpError(format!("unknown dtype {code}")))?;
            !dtype.is_held_as_f32()
        }
    };
    let (rows, cols) = (shape[0], shape[1]);
    let on = |n: usize| ((n % cols) as i64 - (n / cols) as i64) == k;
    let len = rows * cols;
    single(if ints {
        TensorData::from(array_from(
            &shape,
            (0..len).map(|n| on(n) as i64).collect(),
        )?)
    } else {
        TensorData::from(array_from(
            &shape,
            (0..len).map(|n| if on(n) { 1f32 } else { 0.0 }).collect(),
        )?)
    })
}

// ---- CumSum / ReverseSequence ------------------------------------------------------------------

fn cum_sum(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    let axis = normalize_axis(scalar_int(input(inputs, 1)?, "axis")?, shape.len())?;
    let exclusive = ctx.node.attr_int("exclusive", 0)? != 0;
    let reverse = ctx.node.attr_int("reverse", 0)? != 0;
    let dims = around_axis(&shape, axis);
    fn go<T: Copy + Default + std::ops::Add<Output = T>>(
        a: &ArrayD<T>,
        (outer, len, inner): (usize, usize, usize),
        exclusive: bool,
        reverse: bool,
    ) -> Vec<T> {
        let d = flat(a);
        let mut out = vec![T::default(); d.len()];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = T::default();
                for step in 0..len {
                    let j = if reverse { len - 1 - step } else { step };
                    let at = (o * len + j) * inner + i;
                    if exclusive {
                        out[at] = acc;
                        acc = acc + d[at];
                    } else {
                        acc = acc + d[at];
                        out[at] = acc;
                    }
                }
            }
        }
        out
    }
    single(match x {
        TensorData::F32(a) => {
            TensorData::from(array_from(&shape, go(a, dims, exclusive, reverse))?)
        }
        TensorData::I64(a) => {
            TensorData::from(array_from(&shape, go(a, dims, exclusive, reverse))?)
        }
    })
}

/// Reverses the first `sequence_lens[b]` steps along `time_axis` of every batch entry.
fn reverse_sequence(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let lens = index_values(input(inputs, 1)?, "sequence_lens")?;
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(OpError(format!(
            "input must have rank >= 2, got shape {shape:?}"
        )));
    }
    let time = normalize_axis(ctx.node.attr_int("time_axis", 0)?, shape.len())?;
    let batch = normalize_axis(ctx.node.attr_int("batch_axis", 1)?, shape.len())?;
    if time > 1 || batch > 1 || time == batch {
        return Err(OpError(format!(
            "time_axis ({time}) and batch_axis ({batch}) must be 0 and 1 in some order"
        )));
    }
    if lens.len() != shape[batch] {
        return Err(OpError(format!(
            "sequence_lens has {} values for a batch of {}",
            lens.len(),
            shape[batch]
        )));
    }
    let steps = shape[time];
    let lens: Vec<usize> = lens
        .iter()
        .map(|&l| {
            usize::try_from(l)
                .ok()
                .filter(|&l| l <= steps)
                .ok_or_else(|| OpError(format!("sequence length {l} is not in 0..={steps}")))
        })
        .collect::<Result<_, _>>()?;
    let inner: usize = shape[2..].iter().product();
    let (s0, s1) = (shape[1] * inner, inner);
    let offset = |t: usize, b: usize| {
        if time == 0 {
            t * s0 + b * s1
        } else {
            b * s0 + t * s1
        }
    };
    fn go<T: Copy>(
        a: &ArrayD<T>,
        lens: &[usize],
        steps: usize,
        inner: usize,
        offset: impl Fn(usize, usize) -> usize,
    ) -> Vec<T> {
        let d = flat(a);
        let mut out = d.to_vec();
        for (b, &len) in lens.iter().enumerate() {
            for t in 0..len.min(steps) {
                let (src, dst) = (offset(t, b), offset(len - 1 - t, b));
                out[dst..dst + inner].copy_from_slice(&d[src..src + inner]);
            }
        }
        out
    }
    single(match x {
        TensorData::F32(a) => {
            TensorData::from(array_from(&shape, go(a, &lens, steps, inner, offset))?)
        }
        TensorData::I64(a) => {
            TensorData::from(array_from(&shape, go(a, &lens, steps, inner, offset))?)
        }
    })
}
