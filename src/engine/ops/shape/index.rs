//! Indexing: Slice, Gather and Tile.

use super::*;

/// (first index, count) selected along an axis of size `dim`.
pub(super) fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> (i64, usize) {
    // i128 keeps every intermediate exact, whatever the (possibly INT_MAX/INT_MIN) inputs
    let (start, end, step, d) = (start as i128, end as i128, step as i128, dim as i128);
    let start = if start < 0 { start + d } else { start };
    let end = if end < 0 { end + d } else { end };
    let (s, n) = if step > 0 {
        let s = start.clamp(0, d);
        let e = end.clamp(0, d);
        (s, if e > s { (e - s + step - 1) / step } else { 0 })
    } else {
        let s = start.clamp(0, (d - 1).max(0));
        let e = end.clamp(-1, d - 1);
        let n = if s > e && d > 0 {
            (s - e - step - 1) / -step
        } else {
            0
        };
        (s, n)
    };
    (s as i64, n as usize)
}

pub(super) fn slice(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    let (starts, ends, axes, steps) = if ctx.opset >= 10 {
        let get = |i: usize, name: &str| -> Result<Option<Vec<i64>>, OpError> {
            optional(inputs, i).map(|t| int_values(t, name)).transpose()
        };
        (
            get(1, "starts")?.ok_or_else(|| OpError("missing input 'starts'".into()))?,
            get(2, "ends")?.ok_or_else(|| OpError("missing input 'ends'".into()))?,
            get(3, "axes")?,
            get(4, "steps")?,
        )
    } else {
        let need = |name: &str| -> Result<Vec<i64>, OpError> {
            ctx.node
                .attr_ints(name)?
                .ok_or_else(|| OpError(format!("missing attribute '{name}'")))
        };
        (
            need("starts")?,
            need("ends")?,
            ctx.node.attr_ints("axes")?,
            None,
        )
    };
    let n = starts.len();
    let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(OpError(format!(
            "starts, ends, axes and steps must have equal lengths, got {}, {}, {}, {}",
            n,
            ends.len(),
            axes.len(),
            steps.len()
        )));
    }
    let axes = normalize_axes(&axes, shape.len())?;
    // Per axis, the input index of each output position (every index where not sliced).
    let mut maps: Vec<Vec<Option<usize>>> =
        shape.iter().map(|&d| (0..d).map(Some).collect()).collect();
    for k in 0..n {
        let step = steps[k];
        if step == 0 {
            return Err(OpError("slice step cannot be 0".into()));
        }
        let a = axes[k];
        let (first, count) = slice_range(starts[k], ends[k], step, shape[a]);
        maps[a] = (0..count as i64)
            .map(|i| Some((first + i * step) as usize))
            .collect();
    }
    single(each_kind!(x, a => gather_by_maps(a, &maps, Default::default())?))
}

// ---- Gather / Tile ----------------------------------------------------------------------------

pub(super) fn gather(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let indices_t = input(inputs, 1)?;
    let shape = x.shape();
    let axis = normalize_axis(ctx.node.attr_int("axis", 0)?, shape.len())?;
    if shape.is_empty() {
        return Err(OpError("data must have rank >= 1".into()));
    }
    let dim = shape[axis];
    let raw = int_values(indices_t, "indices")?;
    let mut idx = Vec::with_capacity(raw.len());
    for &i in &raw {
        let j = if i < 0 { i + dim as i64 } else { i };
        if j < 0 || j >= dim as i64 {
            return Err(OpError(format!(
                "index {i} out of range for axis {axis} of size {dim}"
            )));
        }
        idx.push(j as usize);
    }
    let mut out_shape = shape[..axis].to_vec();
    out_shape.extend_from_slice(indices_t.shape());
    out_shape.extend_from_slice(&shape[axis + 1..]);
    fn go<T: Elem>(
        a: &ArrayD<T>,
        axis: usize,
        idx: &[usize],
        out_shape: &[usize],
    ) -> Result<ArrayD<T>, OpError> {
        let shape = a.shape();
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let row = shape[axis] * inner;
        let data = flat(a);
        let mut out = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &j in idx {
                let s = o * row + j * inner;
                out.extend_from_slice(&data[s..s + inner]);
            }
        }
        array_from(out_shape, out)
    }
    single(each_kind!(x, a => go(a, axis, &idx, &out_shape)?))
}

/// Output built from per-axis source-index maps: `maps[k][i]` is the source index along
/// axis `k` for output index `i`, or None where the output takes `fill`.
pub(super) fn gather_by_maps<T: Elem>(
    a: &ArrayD<T>,
    maps: &[Vec<Option<usize>>],
    fill: T,
) -> Result<ArrayD<T>, OpError> {
    let out_shape: Vec<usize> = maps.iter().map(Vec::len).collect();
    let total: usize = out_shape.iter().product();
    let data = flat(a);
    let rank = maps.len();
    if rank == 0 {
        return array_from(&[], data.into_owned());
    }
    let mut strides = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * a.shape()[k + 1];
    }
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return array_from(&out_shape, out);
    }
    let last = &maps[rank - 1];
    // A last-axis map that reads consecutive elements is one slice copy per row (Slice with
    // unit step, an axis left whole).
    let run = match last.first() {
        Some(&Some(s0)) => last
            .iter()
            .enumerate()
            .all(|(j, &m)| m == Some(s0 + j))
            .then_some(s0),
        _ => None,
    };
    let mut index = vec![0usize; rank - 1];
    loop {
        // source offset of this output row, None when any axis is filled
        let mut base = Some(0usize);
        for (k, &i) in index.iter().enumerate() {
            base = match (base, maps[k][i]) {
                (Some(b), Some(s)) => Some(b + s * strides[k]),
                _ => None,
            };
        }
        match (base, run) {
            (Some(b), Some(s0)) => out.extend_from_slice(&data[b + s0..b + s0 + last.len()]),
            (Some(b), None) => out.extend(last.iter().map(|m| match m {
                Some(s) => data[b + s],
                None => fill,
            })),
            (None, _) => out.extend(std::iter::repeat_n(fill, last.len())),
        }
        // advance the odometer over all axes but the last
        let mut k = rank - 1;
        loop {
            if k == 0 {
                return array_from(&out_shape, out);
            }
            k -= 1;
            index[k] += 1;
            if index[k] < out_shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
}

pub(super) fn tile(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let repeats = dims_from(&int_values(input(inputs, 1)?, "repeats")?, "repeats")?;
    if repeats.len() != shape.len() {
        return Err(OpError(format!(
            "repeats has {} values, the input has rank {}",
            repeats.len(),
            shape.len()
        )));
    }
    let tiled: Vec<usize> = shape
        .iter()
        .zip(&repeats)
        .map(|(&d, &r)| d.saturating_mul(r))
        .collect();
    checked_len(&tiled)?;
    let maps: Vec<Vec<Option<usize>>> = shape
        .iter()
        .zip(&repeats)
        .map(|(&d, &r)| (0..d * r).map(|i| Some(i % d)).collect())
        .collect();
    single(each_kind!(x, a => gather_by_maps(a, &maps, Default::default())?))
}
