//! Shape and data-movement kernels: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Shape,
//! Size, Expand, Concat, Split, Slice, Gather, Tile, Pad, Resize (nearest) and Upsample,
//! plus the value makers Constant, ConstantOfShape, Range and Cast.
//!
//! Every kernel here works on float and integer tensors alike and returns row-major data.

use std::borrow::Cow;

use ndarray::{ArrayD, IxDyn, Slice};

use super::elementwise::broadcast_shapes;
use super::{
    OpCtx, OpError, OpResult, Registry, array_from, checked_len, input, normalize_axis, optional,
    single,
};
use crate::ir::{Attribute, DType, TensorData};

pub fn register(registry: &mut Registry) {
    registry.add("Flatten", flatten);
    registry.add("Reshape", reshape);
    registry.add("Transpose", transpose);
    registry.add("Squeeze", squeeze);
    registry.add("Unsqueeze", unsqueeze);
    registry.add("Shape", shape_op);
    registry.add("Size", size_op);
    registry.add("Expand", expand);
    registry.add("Concat", concat);
    registry.add("Split", split);
    registry.add("Slice", slice);
    registry.add("Gather", gather);
    registry.add("Tile", tile);
    registry.add("Pad", pad);
    registry.add("Resize", resize);
    registry.add("Upsample", upsample);
    registry.add("Constant", constant);
    registry.add("ConstantOfShape", constant_of_shape);
    registry.add("Range", range);
    registry.add("Cast", cast);
}

/// Element types of tensors.
trait Elem: Copy + Default + Send + Sync + std::fmt::Debug + 'static {}
impl Elem for f32 {}
impl Elem for i64 {}

/// Applies a generic expression to whichever array a tensor holds.
macro_rules! each_kind {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            TensorData::F32($a) => TensorData::F32($body),
            TensorData::I64($a) => TensorData::I64($body),
        }
    };
}

/// Row-major data (borrowed when already contiguous).
fn flat<T: Elem>(x: &ArrayD<T>) -> Cow<'_, [T]> {
    match x.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

fn with_shape<T: Elem>(x: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, OpError> {
    array_from(shape, flat(x).into_owned())
}

/// Values of an integer tensor input (float tensors with whole values are accepted too).
fn int_values(t: &TensorData, what: &str) -> Result<Vec<i64>, OpError> {
    match t {
        TensorData::I64(a) => Ok(a.iter().copied().collect()),
        TensorData::F32(a) => {
            if a.iter().all(|v| v.fract() == 0.0) {
                Ok(a.iter().map(|&v| v as i64).collect())
            } else {
                Err(OpError(format!("{what} must be an integer tensor")))
            }
        }
    }
}

/// Integers from input `i` (opset >= `since`) or attribute `attr` (before).
fn ints_input_or_attr(
    ctx: &OpCtx<'_>,
    inputs: &[Option<&TensorData>],
    i: usize,
    attr: &str,
    since: i64,
) -> Result<Option<Vec<i64>>, OpError> {
    if ctx.opset >= since {
        optional(inputs, i).map(|t| int_values(t, attr)).transpose()
    } else {
        Ok(ctx.node.attr_ints(attr)?)
    }
}

/// Normalizes a list of axes against `rank`, rejecting duplicates.
fn normalize_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(a, rank)?;
        if rank == 0 || out.contains(&n) {
            return Err(OpError(format!("invalid axes {axes:?} for rank {rank}")));
        }
        out.push(n);
    }
    Ok(out)
}

fn dims_from(values: &[i64], what: &str) -> Result<Vec<usize>, OpError> {
    values
        .iter()
        .map(|&v| {
            usize::try_from(v).map_err(|_| OpError(format!("{what} has a negative value {v}")))
        })
        .collect()
}

// ---- reshaping ------------------------------------------------------------------------------

fn flatten(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let r = shape.len() as i64;
    let axis = ctx.node.attr_int("axis", 1)?;
    let axis = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&axis) {
        return Err(OpError(format!("axis {axis} out of range for rank {r}")));
    }
    let axis = axis as usize;
    let target = [
        shape[..axis].iter().product::<usize>(),
        shape[axis..].iter().product::<usize>(),
    ];
    single(each_kind!(x, a => with_shape(a, &target)?))
}

/// The output shape of Reshape.
fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>, OpError> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    if allowzero && spec.contains(&0) && spec.contains(&-1) {
        return Err(OpError(
            "with allowzero=1 the shape cannot hold both 0 and -1".into(),
        ));
    }
    for (k, &d) in spec.iter().enumerate() {
        match d {
            -1 => {
                if infer.replace(k).is_some() {
                    return Err(OpError(format!("shape {spec:?} has more than one -1")));
                }
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(k).ok_or_else(|| {
                OpError(format!(
                    "shape {spec:?} copies dimension {k} (0) but the input has rank {}",
                    input.len()
                ))
            })?),
            d if d < 0 => return Err(OpError(format!("invalid dimension {d} in shape {spec:?}"))),
            d => out.push(d as usize),
        }
    }
    let known = checked_len(&out)?;
    if let Some(k) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(OpError(format!(
                "cannot reshape {input:?} ({total} elements) to {spec:?}"
            )));
        }
        out[k] = total / known;
    } else if known != total {
        return Err(OpError(format!(
            "cannot reshape {input:?} ({total} elements) to {spec:?} ({known} elements)"
        )));
    }
    Ok(out)
}

fn reshape(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let spec = if ctx.opset >= 5 {
        int_values(input(inputs, 1)?, "shape")?
    } else {
        ctx.node
            .attr_ints("shape")?
            .ok_or_else(|| OpError("missing attribute 'shape'".into()))?
    };
    let allowzero = ctx.node.attr_int("allowzero", 0)? != 0;
    let target = reshape_target(x.shape(), &spec, allowzero)?;
    single(each_kind!(x, a => with_shape(a, &target)?))
}

fn transpose(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let rank = x.shape().len();
    let perm: Vec<usize> = match ctx.node.attr_ints("perm")? {
        Some(p) => {
            let perm = normalize_axes(&p, rank);
            match perm {
                Ok(perm) if perm.len() == rank => perm,
                _ => {
                    return Err(OpError(format!(
                        "perm {p:?} is not a permutation of {rank} axes"
                    )));
                }
            }
        }
        None => (0..rank).rev().collect(),
    };
    fn permute<T: Elem>(a: &ArrayD<T>, perm: &[usize]) -> ArrayD<T> {
        a.view()
            .permuted_axes(IxDyn(perm))
            .as_standard_layout()
            .into_owned()
    }
    single(each_kind!(x, a => permute(a, &perm)))
}

fn squeeze(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let axes = ints_input_or_attr(ctx, inputs, 1, "axes", 13)?;
    let target: Vec<usize> = match axes {
        Some(axes) if !axes.is_empty() => {
            let axes = normalize_axes(&axes, shape.len())?;
            if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
                return Err(OpError(format!(
                    "cannot squeeze axis {a} of size {} (shape {shape:?})",
                    shape[a]
                )));
            }
            shape
                .iter()
                .enumerate()
                .filter(|(k, _)| !axes.contains(k))
                .map(|(_, &d)| d)
                .collect()
        }
        _ => shape.iter().copied().filter(|&d| d != 1).collect(),
    };
    single(each_kind!(x, a => with_shape(a, &target)?))
}

fn unsqueeze(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let axes = ints_input_or_attr(ctx, inputs, 1, "axes", 13)?
        .ok_or_else(|| OpError("axes are required".into()))?;
    let rank = shape.len() + axes.len();
    let axes = normalize_axes(&axes, rank)?;
    let mut dims = shape.iter();
    let target: Vec<usize> = (0..rank)
        .map(|k| {
            if axes.contains(&k) {
                1
            } else {
                dims.next().copied().unwrap_or(1)
            }
        })
        .collect();
    single(each_kind!(x, a => with_shape(a, &target)?))
}

fn shape_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let shape = input(inputs, 0)?.shape();
    let r = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(ctx.node.attr_int("start", 0)?);
    let end = clamp(ctx.node.attr_int("end", r)?);
    let dims: Vec<i64> = shape[start..end.max(start)]
        .iter()
        .map(|&d| d as i64)
        .collect();
    single(array_from(&[dims.len()], dims)?)
}

fn size_op(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let n = input(inputs, 0)?.len() as i64;
    single(array_from(&[], vec![n])?)
}

fn expand(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let spec = dims_from(&int_values(input(inputs, 1)?, "shape")?, "shape")?;
    let target = broadcast_shapes(x.shape(), &spec)?;
    checked_len(&target)?;
    fn go<T: Elem>(a: &ArrayD<T>, target: &[usize]) -> Result<ArrayD<T>, OpError> {
        let view = a
            .broadcast(IxDyn(target))
            .ok_or_else(|| OpError(format!("cannot expand {:?} to {target:?}", a.shape())))?;
        array_from(target, view.iter().copied().collect())
    }
    single(each_kind!(x, a => go(a, &target)?))
}

// ---- joining and splitting ------------------------------------------------------------------

fn concat(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let parts: Vec<&TensorData> = (0..inputs.len())
        .map(|i| input(inputs, i))
        .collect::<Result<_, _>>()?;
    let first = parts
        .first()
        .ok_or_else(|| OpError("expects at least one input".into()))?;
    let rank = first.shape().len();
    let axis = normalize_axis(
        ctx.node
            .attributes
            .get("axis")
            .map(|_| ctx.node.attr_int("axis", 0))
            .transpose()?
            .ok_or_else(|| OpError("missing attribute 'axis'".into()))?,
        rank,
    )?;
    let mut out_shape = first.shape().to_vec();
    out_shape[axis] = 0;
    for (i, p) in parts.iter().enumerate() {
        let s = p.shape();
        let fits = s.len() == rank && (0..rank).all(|k| k == axis || s[k] == out_shape[k]);
        if !fits {
            return Err(OpError(format!(
                "input {i} has shape {s:?}, incompatible with {:?} along axis {axis}",
                first.shape()
            )));
        }
        out_shape[axis] += s[axis];
    }
    fn join<T: Elem>(
        arrays: &[&ArrayD<T>],
        axis: usize,
        out_shape: &[usize],
    ) -> Result<ArrayD<T>, OpError> {
        let outer: usize = out_shape[..axis].iter().product();
        let inner: usize = out_shape[axis + 1..].iter().product();
        let datas: Vec<Cow<'_, [T]>> = arrays.iter().map(|a| flat(a)).collect();
        let blocks: Vec<usize> = arrays.iter().map(|a| a.shape()[axis] * inner).collect();
        let mut out = Vec::with_capacity(out_shape.iter().product());
        for o in 0..outer {
            for (d, &b) in datas.iter().zip(&blocks) {
                out.extend_from_slice(&d[o * b..(o + 1) * b]);
            }
        }
        array_from(out_shape, out)
    }
    if parts.iter().all(|p| matches!(p, TensorData::I64(_))) {
        let arrays: Vec<&ArrayD<i64>> = parts.iter().filter_map(|p| p.as_i64()).collect();
        single(join(&arrays, axis, &out_shape)?)
    } else if parts.iter().all(|p| matches!(p, TensorData::F32(_))) {
        let arrays: Vec<&ArrayD<f32>> = parts.iter().filter_map(|p| p.as_f32()).collect();
        single(join(&arrays, axis, &out_shape)?)
    } else {
        Err(OpError("inputs mix float and integer tensors".into()))
    }
}

/// Pieces of `x` along `axis` with the given sizes (which sum to the axis length).
fn split_along<T: Elem>(
    x: &ArrayD<T>,
    axis: usize,
    sizes: &[usize],
) -> Result<Vec<ArrayD<T>>, OpError> {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let data = flat(x);
    let row = shape[axis] * inner;
    let mut offset = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for &s in sizes {
        let mut v = Vec::with_capacity(outer * s * inner);
        for o in 0..outer {
            let start = o * row + offset * inner;
            v.extend_from_slice(&data[start..start + s * inner]);
        }
        let mut piece_shape = shape.to_vec();
        piece_shape[axis] = s;
        outs.push(array_from(&piece_shape, v)?);
        offset += s;
    }
    Ok(outs)
}

fn split(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let axis = normalize_axis(ctx.node.attr_int("axis", 0)?, shape.len())?;
    let dim = shape[axis];
    let n_out = ctx.node.outputs.len();
    let given = ints_input_or_attr(ctx, inputs, 1, "split", 13)?.filter(|s| !s.is_empty());
    let num_outputs = if ctx.opset >= 18 {
        ctx.node
            .attributes
            .get("num_outputs")
            .map(|_| ctx.node.attr_int("num_outputs", 0))
            .transpose()?
    } else {
        None
    };
    let sizes: Vec<usize> = if let Some(s) = given {
        if num_outputs.is_some() {
            return Err(OpError(
                "give either the split input or num_outputs, not both".into(),
            ));
        }
        let s = dims_from(&s, "split")?;
        let total = s.iter().try_fold(0usize, |t, &v| t.checked_add(v));
        if s.len() != n_out || total != Some(dim) {
            return Err(OpError(format!(
                "split {s:?} must have {n_out} sizes summing to {dim}"
            )));
        }
        s
    } else if ctx.opset >= 18 {
        let n = num_outputs.unwrap_or(n_out as i64);
        if n < 1 || n as usize != n_out {
            return Err(OpError(format!(
                "num_outputs {n} does not match the node's {n_out} outputs"
            )));
        }
        let n = n as usize;
        let chunk = dim.div_ceil(n);
        let mut sizes = Vec::with_capacity(n);
        let mut left = dim;
        for _ in 0..n {
            let s = chunk.min(left);
            sizes.push(s);
            left -= s;
        }
        sizes
    } else {
        if n_out == 0 || !dim.is_multiple_of(n_out) {
            return Err(OpError(format!(
                "axis {axis} of size {dim} cannot be split equally into {n_out} outputs"
            )));
        }
        vec![dim / n_out; n_out]
    };
    Ok(match x {
        TensorData::F32(a) => split_along(a, axis, &sizes)?
            .into_iter()
            .map(TensorData::F32)
            .collect(),
        TensorData::I64(a) => split_along(a, axis, &sizes)?
            .into_iter()
            .map(TensorData::I64)
            .collect(),
    })
}

// ---- Slice ----------------------------------------------------------------------------------

/// (first index, count) selected along an axis of size `dim`.
fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> (i64, usize) {
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

fn slice(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
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
    let mut ranges: Vec<Slice> = shape
        .iter()
        .map(|&d| Slice::new(0, Some(d as isize), 1))
        .collect();
    let mut out_shape = shape.clone();
    for k in 0..n {
        let step = steps[k];
        if step == 0 {
            return Err(OpError("slice step cannot be 0".into()));
        }
        let a = axes[k];
        let (first, count) = slice_range(starts[k], ends[k], step, shape[a]);
        out_shape[a] = count;
        ranges[a] = if count == 0 {
            Slice::new(0, Some(0), 1)
        } else if step > 0 {
            let last = first + (count as i64 - 1) * step;
            Slice::new(first as isize, Some(last as isize + 1), step as isize)
        } else {
            // ndarray walks a negative step backwards from the end of [lo, hi)
            let last = first + (count as i64 - 1) * step;
            Slice::new(last as isize, Some(first as isize + 1), step as isize)
        };
    }
    fn take<T: Elem>(
        a: &ArrayD<T>,
        ranges: &[Slice],
        out_shape: &[usize],
    ) -> Result<ArrayD<T>, OpError> {
        let view = a.slice_each_axis(|ax| ranges[ax.axis.index()]);
        array_from(out_shape, view.iter().copied().collect())
    }
    single(each_kind!(x, a => take(a, &ranges, &out_shape)?))
}

// ---- Gather / Tile ----------------------------------------------------------------------------

fn gather(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
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
fn gather_by_maps<T: Elem>(
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
        match base {
            Some(b) => out.extend(last.iter().map(|m| match m {
                Some(s) => data[b + s],
                None => fill,
            })),
            None => out.extend(std::iter::repeat_n(fill, last.len())),
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

fn tile(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
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

// ---- Pad ------------------------------------------------------------------------------------

/// Source index along an axis of size `d` for position `j` (may be outside) in a pad mode.
fn pad_source(j: i64, d: i64, mode: &str) -> Option<usize> {
    if (0..d).contains(&j) {
        return Some(j as usize);
    }
    match mode {
        "edge" => Some(j.clamp(0, d - 1) as usize),
        "wrap" => Some(j.rem_euclid(d) as usize),
        "reflect" => {
            if d == 1 {
                return Some(0);
            }
            let period = 2 * (d - 1);
            let m = j.rem_euclid(period);
            Some(if m < d { m } else { period - m } as usize)
        }
        _ => None,
    }
}

fn pad(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let rank = shape.len();
    let mode = ctx.node.attr_string("mode", "constant")?;
    if !matches!(mode.as_str(), "constant" | "reflect" | "edge" | "wrap") {
        return Err(OpError(format!("unknown pad mode '{mode}'")));
    }
    let (pads, value_f, value_i, axes) = if ctx.opset < 11 {
        let pads = ctx
            .node
            .attr_ints(if ctx.opset < 2 { "paddings" } else { "pads" })?
            .ok_or_else(|| OpError("missing attribute 'pads'".into()))?;
        let v = ctx.node.attr_float("value", 0.0)?;
        (pads, v, v as i64, None)
    } else {
        let pads = int_values(input(inputs, 1)?, "pads")?;
        let (vf, vi) = match optional(inputs, 2) {
            None => (0.0, 0),
            Some(t) if t.len() > 1 => {
                return Err(OpError("constant_value must be a scalar".into()));
            }
            Some(TensorData::F32(a)) => {
                let v = a.iter().next().copied().unwrap_or(0.0);
                (v, v as i64)
            }
            Some(TensorData::I64(a)) => {
                let v = a.iter().next().copied().unwrap_or(0);
                (v as f32, v)
            }
        };
        let axes = if ctx.opset >= 18 {
            optional(inputs, 3)
                .map(|t| int_values(t, "axes"))
                .transpose()?
        } else {
            None
        };
        (pads, vf, vi, axes)
    };
    let axes = match axes {
        Some(a) => normalize_axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(OpError(format!(
            "pads has {} values, expected {} for {} axes",
            pads.len(),
            2 * axes.len(),
            axes.len()
        )));
    }
    let mut begin = vec![0i64; rank];
    let mut end = vec![0i64; rank];
    for (k, &a) in axes.iter().enumerate() {
        begin[a] = pads[k];
        end[a] = pads[k + axes.len()];
    }
    let mut out_dims = Vec::with_capacity(rank);
    for a in 0..rank {
        let d = shape[a] as i64;
        let out = d
            .checked_add(begin[a])
            .and_then(|v| v.checked_add(end[a]))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                OpError(format!(
                    "pads {pads:?} give axis {a} of size {d} an invalid size"
                ))
            })?;
        if d == 0 && out > 0 && mode != "constant" {
            return Err(OpError(format!("cannot pad empty axis {a} in {mode} mode")));
        }
        out_dims.push(out);
    }
    checked_len(&out_dims)?;
    let maps: Vec<Vec<Option<usize>>> = (0..rank)
        .map(|a| {
            (0..out_dims[a] as i64)
                .map(|i| pad_source(i - begin[a], shape[a] as i64, &mode))
                .collect()
        })
        .collect();
    single(match x {
        TensorData::F32(a) => TensorData::F32(gather_by_maps(a, &maps, value_f)?),
        TensorData::I64(a) => TensorData::I64(gather_by_maps(a, &maps, value_i)?),
    })
}

// ---- Resize / Upsample (nearest) ----------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Nearest {
    /// Resize-10 / Upsample: floor when upsampling, ceil when downsampling.
    Simple,
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Input coordinate of output position `x` along an axis.
fn original_coordinate(mode: &str, x: f32, scale: f32, len_in: usize, len_out: usize) -> f32 {
    let (li, lo) = (len_in as f32, len_out as f32);
    match mode {
        "asymmetric" => x / scale,
        "align_corners" => {
            if len_out == 1 {
                0.0
            } else {
                x * (li - 1.0) / (lo - 1.0)
            }
        }
        "pytorch_half_pixel" => {
            if len_out > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        "tf_half_pixel_for_nearest" => (x + 0.5) / scale,
        "half_pixel_symmetric" => {
            let adjustment = lo / (scale * li);
            let center = li / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        // half_pixel
        _ => (x + 0.5) / scale - 0.5,
    }
}

fn nearest_index(x: f32, mode: Nearest, downsampling: bool, len_in: usize) -> usize {
    let half = x.floor() + 0.5 == x;
    let i = match mode {
        Nearest::Simple => {
            if downsampling {
                x.ceil()
            } else {
                x.trunc()
            }
        }
        Nearest::RoundPreferFloor => {
            if half {
                x.floor()
            } else {
                x.round()
            }
        }
        Nearest::RoundPreferCeil => {
            if half {
                x.ceil()
            } else {
                x.round()
            }
        }
        Nearest::Floor => x.floor(),
        Nearest::Ceil => x.ceil(),
    };
    (i.max(0.0) as usize).min(len_in.saturating_sub(1))
}

/// Nearest resize of `x` to `out_shape` with per-axis `scales`.
fn resize_nearest(
    x: &TensorData,
    out_shape: &[usize],
    scales: &[f32],
    coord_mode: &str,
    nearest: Nearest,
) -> OpResult {
    let shape = x.shape();
    checked_len(out_shape)?;
    if shape.contains(&0) && out_shape.iter().any(|&d| d > 0) {
        return Err(OpError(format!("cannot resize the empty shape {shape:?}")));
    }
    let maps: Vec<Vec<Option<usize>>> = (0..shape.len())
        .map(|a| {
            let (li, lo, s) = (shape[a], out_shape[a], scales[a]);
            (0..lo)
                .map(|o| {
                    let c = original_coordinate(coord_mode, o as f32, s, li, lo);
                    Some(nearest_index(c, nearest, s < 1.0, li))
                })
                .collect()
        })
        .collect();
    single(each_kind!(x, a => gather_by_maps(a, &maps, Default::default())?))
}

fn check_mode(ctx: &OpCtx<'_>) -> Result<(), OpError> {
    let mode = ctx.node.attr_string("mode", "nearest")?;
    if mode != "nearest" {
        return Err(OpError(format!(
            "mode '{mode}' is not supported (only 'nearest')"
        )));
    }
    Ok(())
}

/// Output shape from scales (floor of input × scale).
fn shape_from_scales(shape: &[usize], scales: &[f32]) -> Result<Vec<usize>, OpError> {
    if scales.len() != shape.len() {
        return Err(OpError(format!(
            "scales has {} values, the input has rank {}",
            scales.len(),
            shape.len()
        )));
    }
    if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(OpError(format!("scale {s} must be positive")));
    }
    Ok(shape
        .iter()
        .zip(scales)
        .map(|(&d, &s)| (d as f32 * s) as usize)
        .collect())
}

fn float_values(t: &TensorData) -> Vec<f32> {
    match t {
        TensorData::F32(a) => a.iter().copied().collect(),
        TensorData::I64(a) => a.iter().map(|&v| v as f32).collect(),
    }
}

fn resize(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    check_mode(ctx)?;
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    if ctx.opset < 11 {
        let scales = float_values(input(inputs, 1)?);
        let out = shape_from_scales(&shape, &scales)?;
        return resize_nearest(x, &out, &scales, "asymmetric", Nearest::Simple);
    }
    let coord_mode = ctx
        .node
        .attr_string("coordinate_transformation_mode", "half_pixel")?;
    if !matches!(
        coord_mode.as_str(),
        "half_pixel"
            | "half_pixel_symmetric"
            | "asymmetric"
            | "align_corners"
            | "pytorch_half_pixel"
            | "tf_half_pixel_for_nearest"
    ) {
        return Err(OpError(format!(
            "coordinate_transformation_mode '{coord_mode}' is not supported"
        )));
    }
    let nearest = match ctx
        .node
        .attr_string("nearest_mode", "round_prefer_floor")?
        .as_str()
    {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => return Err(OpError(format!("unknown nearest_mode '{other}'"))),
    };
    let axes = match ctx.node.attr_ints("axes")? {
        Some(a) if ctx.opset >= 18 => normalize_axes(&a, rank)?,
        _ => (0..rank).collect(),
    };
    let scales_in = optional(inputs, 2)
        .map(float_values)
        .filter(|s| !s.is_empty());
    let sizes_in = optional(inputs, 3)
        .map(|t| int_values(t, "sizes"))
        .transpose()?
        .filter(|s| !s.is_empty());
    let mut scales = vec![1f32; rank];
    let mut out_shape = shape.clone();
    match (scales_in, sizes_in) {
        (Some(_), Some(_)) => {
            return Err(OpError("give either scales or sizes, not both".into()));
        }
        (Some(s), None) => {
            if s.len() != axes.len() {
                return Err(OpError(format!(
                    "scales has {} values for {} axes",
                    s.len(),
                    axes.len()
                )));
            }
            for (k, &a) in axes.iter().enumerate() {
                scales[a] = s[k];
            }
            out_shape = shape_from_scales(&shape, &scales)?;
        }
        (None, Some(sizes)) => {
            if sizes.len() != axes.len() {
                return Err(OpError(format!(
                    "sizes has {} values for {} axes",
                    sizes.len(),
                    axes.len()
                )));
            }
            let sizes = dims_from(&sizes, "sizes")?;
            let policy = ctx
                .node
                .attr_string("keep_aspect_ratio_policy", "stretch")?;
            let ratios: Vec<f32> = axes
                .iter()
                .zip(&sizes)
                .map(|(&a, &s)| s as f32 / shape[a] as f32)
                .collect();
            let common = match policy.as_str() {
                "stretch" => None,
                "not_larger" => Some(ratios.iter().copied().fold(f32::INFINITY, f32::min)),
                "not_smaller" => Some(ratios.iter().copied().fold(0.0, f32::max)),
                other => {
                    return Err(OpError(format!(
                        "unknown keep_aspect_ratio_policy '{other}'"
                    )));
                }
            };
            for (k, &a) in axes.iter().enumerate() {
                match common {
                    None => {
                        out_shape[a] = sizes[k];
                        scales[a] = ratios[k];
                    }
                    Some(c) => {
                        out_shape[a] = (shape[a] as f32 * c).round() as usize;
                        scales[a] = c;
                    }
                }
            }
        }
        (None, None) => return Err(OpError("one of scales or sizes is required".into())),
    }
    resize_nearest(x, &out_shape, &scales, &coord_mode, nearest)
}

fn upsample(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    check_mode(ctx)?;
    let x = input(inputs, 0)?;
    let scales = if ctx.opset >= 9 {
        float_values(input(inputs, 1)?)
    } else {
        ctx.node
            .attr_floats("scales")?
            .ok_or_else(|| OpError("missing attribute 'scales'".into()))?
    };
    let out = shape_from_scales(x.shape(), &scales)?;
    resize_nearest(x, &out, &scales, "asymmetric", Nearest::Simple)
}

// ---- value makers ---------------------------------------------------------------------------

fn constant(ctx: &OpCtx<'_>, _inputs: &[Option<&TensorData>]) -> OpResult {
    let attrs = &ctx.node.attributes;
    let mut found = Vec::new();
    for (name, value) in attrs {
        let t: TensorData = match (name.as_str(), value) {
            ("value", Attribute::Tensor(t)) => t.data.clone(),
            ("value_float", Attribute::Float(v)) => array_from(&[], vec![*v])?.into(),
            ("value_floats", Attribute::Floats(v)) => array_from(&[v.len()], v.clone())?.into(),
            ("value_int", Attribute::Int(v)) => array_from(&[], vec![*v])?.into(),
            ("value_ints", Attribute::Ints(v)) => array_from(&[v.len()], v.clone())?.into(),
            ("value" | "value_float" | "value_floats" | "value_int" | "value_ints", _) => {
                return Err(OpError(format!("attribute '{name}' has the wrong kind")));
            }
            (other, _) => {
                return Err(OpError(format!(
                    "attribute '{other}' is not supported (only numeric values)"
                )));
            }
        };
        found.push(t);
    }
    match found.len() {
        1 => single(found.remove(0)),
        0 => Err(OpError("no value attribute".into())),
        _ => Err(OpError("more than one value attribute".into())),
    }
}

fn constant_of_shape(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let dims = dims_from(&int_values(input(inputs, 0)?, "shape")?, "shape")?;
    checked_len(&dims)?;
    let value = ctx.node.attr_tensor("value")?;
    let value = match value {
        None => TensorData::F32(array_from(&[], vec![0.0])?),
        Some(t) => {
            if t.data.len() != 1 {
                return Err(OpError(format!(
                    "value must hold one element, it has {}",
                    t.data.len()
                )));
            }
            t.data.clone()
        }
    };
    single(match value {
        TensorData::F32(a) => TensorData::F32(ArrayD::from_elem(
            IxDyn(&dims),
            a.iter().next().copied().unwrap_or(0.0),
        )),
        TensorData::I64(a) => TensorData::I64(ArrayD::from_elem(
            IxDyn(&dims),
            a.iter().next().copied().unwrap_or(0),
        )),
    })
}

fn scalar_of(t: &TensorData, name: &str) -> Result<TensorData, OpError> {
    if t.len() != 1 {
        return Err(OpError(format!(
            "{name} must be a scalar, got shape {:?}",
            t.shape()
        )));
    }
    Ok(t.clone())
}

fn range(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let start = scalar_of(input(inputs, 0)?, "start")?;
    let limit = scalar_of(input(inputs, 1)?, "limit")?;
    let delta = scalar_of(input(inputs, 2)?, "delta")?;
    const MAX_LEN: f64 = (1u64 << 40) as f64;
    match (&start, &limit, &delta) {
        (TensorData::I64(s), TensorData::I64(l), TensorData::I64(d)) => {
            let (s, l, d) = (s.iter().next(), l.iter().next(), d.iter().next());
            let (Some(&s), Some(&l), Some(&d)) = (s, l, d) else {
                return Err(OpError("empty scalar".into()));
            };
            if d == 0 {
                return Err(OpError("delta cannot be 0".into()));
            }
            let span = l as i128 - s as i128;
            let n = ((span + d as i128 - d.signum() as i128) / d as i128).max(0);
            if n as f64 > MAX_LEN {
                return Err(OpError(format!("range of {n} elements is too long")));
            }
            let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
            single(array_from(&[v.len()], v)?)
        }
        _ => {
            let f = |t: &TensorData| float_values(t).first().copied().unwrap_or(0.0) as f64;
            let (s, l, d) = (f(&start), f(&limit), f(&delta));
            if d == 0.0 {
                return Err(OpError("delta cannot be 0".into()));
            }
            let n = ((l - s) / d).ceil().max(0.0);
            if !n.is_finite() || n > MAX_LEN {
                return Err(OpError(format!("range of {n} elements is too long")));
            }
            let v: Vec<f32> = (0..n as usize).map(|i| (s + i as f64 * d) as f32).collect();
            single(array_from(&[v.len()], v)?)
        }
    }
}

/// Truncates toward zero and wraps into the range of an integer dtype.
fn to_int(v: i64, dtype: DType) -> i64 {
    match dtype {
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        DType::I16 => v as i16 as i64,
        DType::U16 => v as u16 as i64,
        DType::I32 => v as i32 as i64,
        DType::U32 => v as u32 as i64,
        _ => v,
    }
}

fn cast(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let to = ctx.node.attr_int("to", -1)?;
    let dtype = i32::try_from(to)
        .ok()
        .and_then(DType::from_onnx)
        .ok_or_else(|| OpError(format!("cannot cast to data type {to}")))?;
    let out: TensorData = match dtype {
        DType::F32 | DType::F64 => TensorData::F32(x.to_f32()),
        DType::F16 => TensorData::F32(x.to_f32().mapv(|v| half::f16::from_f32(v).to_f32())),
        DType::BF16 => TensorData::F32(x.to_f32().mapv(|v| half::bf16::from_f32(v).to_f32())),
        DType::Bool => TensorData::I64(match x {
            TensorData::F32(a) => a.mapv(|v| (v != 0.0) as i64),
            TensorData::I64(a) => a.mapv(|v| (v != 0) as i64),
        }),
        _ => {
            // integer targets: truncate toward zero (NaN -> 0), then wrap to the width
            let ints = match x {
                TensorData::F32(a) => a.mapv(|v| to_int(v.trunc() as i64, dtype)),
                TensorData::I64(a) => a.mapv(|v| to_int(v, dtype)),
            };
            if dtype.is_held_as_f32() {
                // 8/16-bit integers are held as f32 throughout Quantscope
                TensorData::F32(ints.mapv(|v| v as f32))
            } else {
                TensorData::I64(ints)
            }
        }
    };
    single(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::ir::{Attribute, DType, Tensor, TensorData};

    fn seq(shape: &[usize]) -> TensorData {
        let n: usize = shape.iter().product();
        f(shape, &(0..n).map(|v| v as f32).collect::<Vec<_>>())
    }

    fn seqi(shape: &[usize]) -> TensorData {
        let n: usize = shape.iter().product();
        i(shape, &(0..n as i64).collect::<Vec<_>>())
    }

    fn shape_of(t: &TensorData) -> Vec<usize> {
        t.shape().to_vec()
    }

    #[test]
    fn flatten_axes() {
        let x = seq(&[2, 3, 4]);
        for (axis, want) in [
            (0, [1, 24]),
            (1, [2, 12]),
            (2, [6, 4]),
            (3, [24, 1]),
            (-1, [6, 4]),
            (-3, [1, 24]),
        ] {
            let out = run("Flatten", 13, vec![("axis", Attribute::Int(axis))], &[&x]).unwrap();
            assert_eq!(shape_of(&out[0]), want, "axis {axis}");
            assert_eq!(fvals(&out[0]).1, fvals(&x).1);
        }
        assert!(run("Flatten", 13, vec![("axis", Attribute::Int(4))], &[&x]).is_err());
        let out = run("Flatten", 13, vec![], &[&seqi(&[2, 2])]).unwrap();
        assert_eq!(ivals(&out[0]).0, vec![2, 2]);
    }

    #[test]
    fn reshape_rules() {
        let x = seq(&[2, 3, 4]);
        let cases: [(&[i64], &[usize]); 4] = [
            (&[4, -1], &[4, 6]),
            (&[0, 0, -1], &[2, 3, 4]),
            (&[0, 12], &[2, 12]),
            (&[24], &[24]),
        ];
        for (spec, want) in cases {
            let s = i(&[spec.len()], spec);
            let out = run("Reshape", 14, vec![], &[&x, &s]).unwrap();
            assert_eq!(shape_of(&out[0]), want, "{spec:?}");
        }
        for bad in [&[5, -1][..], &[-1, -1], &[7, 3], &[0, 0, 0, 0], &[-2, 12]] {
            let s = i(&[bad.len()], bad);
            assert!(run("Reshape", 14, vec![], &[&x, &s]).is_err(), "{bad:?}");
        }
        // allowzero: 0 means a zero dim
        let empty = seq(&[0, 3]);
        let s = i(&[2], &[3, 0]);
        let out = run(
            "Reshape",
            14,
            vec![("allowzero", Attribute::Int(1))],
            &[&empty, &s],
        )
        .unwrap();
        assert_eq!(shape_of(&out[0]), vec![3, 0]);
        assert!(
            run(
                "Reshape",
                14,
                vec![("allowzero", Attribute::Int(1))],
                &[&x, &s]
            )
            .is_err()
        );
        // opset < 5 attribute
        let out = run(
            "Reshape",
            1,
            vec![("shape", Attribute::Ints(vec![6, 4]))],
            &[&x],
        )
        .unwrap();
        assert_eq!(shape_of(&out[0]), vec![6, 4]);
    }

    #[test]
    fn transpose_default_and_perm() {
        let x = seq(&[2, 3]);
        let out = run("Transpose", 13, vec![], &[&x]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![3, 2], vec![0., 3., 1., 4., 2., 5.]));
        let x = seqi(&[2, 3, 4]);
        let out = run(
            "Transpose",
            13,
            vec![("perm", Attribute::Ints(vec![1, 2, 0]))],
            &[&x],
        )
        .unwrap();
        let (s, v) = ivals(&out[0]);
        assert_eq!(s, vec![3, 4, 2]);
        // out[b][c][a] = x[a][b][c] = a*12 + b*4 + c
        assert_eq!(v[(2 * 4 + 1) * 2 + 1], 12 + 2 * 4 + 1);
        for bad in [vec![0, 1], vec![0, 0, 1], vec![0, 1, 3]] {
            assert!(run("Transpose", 13, vec![("perm", Attribute::Ints(bad))], &[&x]).is_err());
        }
    }

    #[test]
    fn squeeze_unsqueeze() {
        let x = seq(&[1, 3, 1, 2]);
        let out = run("Squeeze", 13, vec![], &[&x]).unwrap();
        assert_eq!(shape_of(&out[0]), vec![3, 2]);
        let out = run("Squeeze", 13, vec![], &[&x, &i(&[1], &[-2])]).unwrap();
        assert_eq!(shape_of(&out[0]), vec![1, 3, 2]);
        let out = run(
            "Squeeze",
            11,
            vec![("axes", Attribute::Ints(vec![0]))],
            &[&x],
        )
        .unwrap();
        assert_eq!(shape_of(&out[0]), vec![3, 1, 2]);
        assert!(run("Squeeze", 13, vec![], &[&x, &i(&[1], &[1])]).is_err());

        let y = seq(&[3, 2]);
        let out = run("Unsqueeze", 13, vec![], &[&y, &i(&[2], &[0, -1])]).unwrap();
        assert_eq!(shape_of(&out[0]), vec![1, 3, 2, 1]);
        let out = run(
            "Unsqueeze",
            11,
            vec![("axes", Attribute::Ints(vec![1, 3]))],
            &[&y],
        )
        .unwrap();
        assert_eq!(shape_of(&out[0]), vec![3, 1, 2, 1]);
        let s = f(&[], &[5.]);
        let out = run("Unsqueeze", 13, vec![], &[&s, &i(&[1], &[0])]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![1], vec![5.]));
        assert!(run("Unsqueeze", 13, vec![], &[&y, &i(&[2], &[0, 0])]).is_err());
        assert!(run("Unsqueeze", 13, vec![], &[&y, &i(&[1], &[4])]).is_err());
        assert!(run("Unsqueeze", 13, vec![], &[&y]).is_err());
    }

    #[test]
    fn shape_and_size() {
        let x = seq(&[2, 3, 4, 5]);
        let out = run("Shape", 13, vec![], &[&x]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![4], vec![2, 3, 4, 5]));
        let out = run(
            "Shape",
            15,
            vec![("start", Attribute::Int(1)), ("end", Attribute::Int(-1))],
            &[&x],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]).1, vec![3, 4]);
        let out = run("Shape", 15, vec![("start", Attribute::Int(-10))], &[&x]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![2, 3, 4, 5]);
        let out = run(
            "Shape",
            15,
            vec![("start", Attribute::Int(3)), ("end", Attribute::Int(1))],
            &[&x],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![0], vec![]));
        let out = run("Size", 13, vec![], &[&x]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![], vec![120]));
    }

    #[test]
    fn expand_bidirectional() {
        let x = f(&[3, 1], &[1., 2., 3.]);
        let out = run("Expand", 13, vec![], &[&x, &i(&[2], &[2, 4])]);
        // [3,1] with [2,4]? incompatible (3 vs 2)
        assert!(out.is_err());
        let out = run("Expand", 13, vec![], &[&x, &i(&[3], &[2, 1, 2])]).unwrap();
        assert_eq!(
            fvals(&out[0]),
            (
                vec![2, 3, 2],
                vec![1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]
            )
        );
        // the shape may be smaller than the input
        let out = run("Expand", 13, vec![], &[&x, &i(&[1], &[1])]).unwrap();
        assert_eq!(shape_of(&out[0]), vec![3, 1]);
    }

    #[test]
    fn concat_axes() {
        let a = seq(&[2, 2]);
        let b = f(&[2, 1], &[9., 8.]);
        let out = run("Concat", 13, vec![("axis", Attribute::Int(-1))], &[&a, &b]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![2, 3], vec![0., 1., 9., 2., 3., 8.]));
        let c = f(&[1, 2], &[7., 7.]);
        let out = run("Concat", 13, vec![("axis", Attribute::Int(0))], &[&a, &c]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![3, 2], vec![0., 1., 2., 3., 7., 7.]));
        let out = run(
            "Concat",
            13,
            vec![("axis", Attribute::Int(0))],
            &[&i(&[1], &[1]), &i(&[0], &[]), &i(&[2], &[2, 3])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]).1, vec![1, 2, 3]);
        assert!(run("Concat", 13, vec![("axis", Attribute::Int(0))], &[&a, &b]).is_err());
        assert!(run("Concat", 13, vec![], &[&a, &a]).is_err());
        assert!(
            run(
                "Concat",
                13,
                vec![("axis", Attribute::Int(0))],
                &[&a, &seqi(&[1, 2])]
            )
            .is_err()
        );
    }

    type Values = (Vec<usize>, Vec<f32>);

    fn split_run(
        opset: i64,
        n_out: usize,
        attrs: Vec<(&str, Attribute)>,
        inputs: &[Option<&TensorData>],
    ) -> Result<Vec<Values>, String> {
        let n = node("Split", inputs.len(), n_out, attrs);
        run_node(&n, opset, inputs)
            .map(|outs| outs.iter().map(fvals).collect())
            .map_err(|e| e.0)
    }

    #[test]
    fn split_variants() {
        let x = seq(&[2, 6]);
        // equal split into the node's outputs
        let outs = split_run(13, 3, vec![("axis", Attribute::Int(1))], &[Some(&x)]).unwrap();
        assert_eq!(outs[0], (vec![2, 2], vec![0., 1., 6., 7.]));
        assert_eq!(outs[2], (vec![2, 2], vec![4., 5., 10., 11.]));
        // opset 11 attribute
        let outs = split_run(
            11,
            2,
            vec![
                ("axis", Attribute::Int(-1)),
                ("split", Attribute::Ints(vec![1, 5])),
            ],
            &[Some(&x)],
        )
        .unwrap();
        assert_eq!(outs[0], (vec![2, 1], vec![0., 6.]));
        assert_eq!(outs[1].0, vec![2, 5]);
        // opset 13 input
        let s = i(&[2], &[4, 2]);
        let outs = split_run(
            13,
            2,
            vec![("axis", Attribute::Int(1))],
            &[Some(&x), Some(&s)],
        )
        .unwrap();
        assert_eq!(outs[1], (vec![2, 2], vec![4., 5., 10., 11.]));
        // opset 18 num_outputs with a smaller last chunk: 6 -> 3 + 3? use 4 outputs: 2,2,2,0
        let y = seq(&[7]);
        let outs = split_run(18, 3, vec![("num_outputs", Attribute::Int(3))], &[Some(&y)]).unwrap();
        assert_eq!(outs[0].1, vec![0., 1., 2.]);
        assert_eq!(outs[1].1, vec![3., 4., 5.]);
        assert_eq!(outs[2].1, vec![6.]);
        // errors: bad sums, indivisible equal split before 18, num_outputs mismatch
        let bad = i(&[2], &[3, 2]);
        assert!(
            split_run(
                13,
                2,
                vec![("axis", Attribute::Int(1))],
                &[Some(&x), Some(&bad)]
            )
            .is_err()
        );
        assert!(split_run(13, 4, vec![("axis", Attribute::Int(1))], &[Some(&x)]).is_err());
        assert!(split_run(18, 2, vec![("num_outputs", Attribute::Int(3))], &[Some(&y)]).is_err());
    }

    fn slice10(
        x: &TensorData,
        starts: &[i64],
        ends: &[i64],
        axes: Option<&[i64]>,
        steps: Option<&[i64]>,
    ) -> Result<TensorData, String> {
        let s = i(&[starts.len()], starts);
        let e = i(&[ends.len()], ends);
        let a = axes.map(|a| i(&[a.len()], a));
        let st = steps.map(|a| i(&[a.len()], a));
        let n = node("Slice", 5, 1, vec![]);
        run_node(
            &n,
            13,
            &[Some(x), Some(&s), Some(&e), a.as_ref(), st.as_ref()],
        )
        .map(|mut o| o.remove(0))
        .map_err(|e| e.0)
    }

    #[test]
    fn slice_variants() {
        let x = seq(&[3, 4]);
        let out = slice10(&x, &[1, 0], &[3, 3], None, None).unwrap();
        assert_eq!(fvals(&out), (vec![2, 3], vec![4., 5., 6., 8., 9., 10.]));
        // negative indices, INT_MAX end, axes
        let out = slice10(&x, &[-2], &[i64::MAX], Some(&[1]), None).unwrap();
        assert_eq!(fvals(&out), (vec![3, 2], vec![2., 3., 6., 7., 10., 11.]));
        // negative step: reverse a row
        let out = slice10(&x, &[-1], &[i64::MIN], Some(&[1]), Some(&[-1])).unwrap();
        assert_eq!(
            fvals(&out).1,
            vec![3., 2., 1., 0., 7., 6., 5., 4., 11., 10., 9., 8.]
        );
        // step -2 from 3 down to (excluding) 0: indices 3, 1
        let out = slice10(&x, &[3], &[0], Some(&[1]), Some(&[-2])).unwrap();
        assert_eq!(fvals(&out), (vec![3, 2], vec![3., 1., 7., 5., 11., 9.]));
        // start beyond the end with a negative step clamps to the last index
        let out = slice10(&x, &[10], &[-10], Some(&[0]), Some(&[-2])).unwrap();
        assert_eq!(fvals(&out).0, vec![2, 4]);
        assert_eq!(fvals(&out).1[..4], [8., 9., 10., 11.]);
        // step 2, clamped start
        let out = slice10(&x, &[-100, 1], &[100, 4], Some(&[0, 1]), Some(&[2, 2])).unwrap();
        assert_eq!(fvals(&out), (vec![2, 2], vec![1., 3., 9., 11.]));
        // empty result
        let out = slice10(&x, &[2], &[1], Some(&[0]), None).unwrap();
        assert_eq!(fvals(&out).0, vec![0, 4]);
        // errors
        assert!(slice10(&x, &[0], &[1], Some(&[0]), Some(&[0])).is_err());
        assert!(slice10(&x, &[0, 0], &[1], None, None).is_err());
        assert!(slice10(&x, &[0, 0], &[1, 1], Some(&[1, 1]), None).is_err());
        // opset 1 attributes, integer data
        let xi = seqi(&[3, 4]);
        let out = run(
            "Slice",
            9,
            vec![
                ("starts", Attribute::Ints(vec![1])),
                ("ends", Attribute::Ints(vec![-1])),
                ("axes", Attribute::Ints(vec![1])),
            ],
            &[&xi],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![3, 2], vec![1, 2, 5, 6, 9, 10]));
    }

    #[test]
    fn gather_cases() {
        let x = seq(&[3, 2]);
        let out = run("Gather", 13, vec![], &[&x, &i(&[2], &[2, -3])]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![2, 2], vec![4., 5., 0., 1.]));
        // scalar index drops the axis
        let out = run(
            "Gather",
            13,
            vec![("axis", Attribute::Int(1))],
            &[&x, &i(&[], &[1])],
        )
        .unwrap();
        assert_eq!(fvals(&out[0]), (vec![3], vec![1., 3., 5.]));
        // 2-D indices on axis 1
        let idx = i(&[2, 2], &[0, 1, 1, 0]);
        let out = run(
            "Gather",
            13,
            vec![("axis", Attribute::Int(-1))],
            &[&x, &idx],
        )
        .unwrap();
        assert_eq!(
            fvals(&out[0]),
            (
                vec![3, 2, 2],
                vec![0., 1., 1., 0., 2., 3., 3., 2., 4., 5., 5., 4.]
            )
        );
        // integer data (shape gathering)
        let s = i(&[4], &[1, 3, 224, 224]);
        let out = run("Gather", 13, vec![], &[&s, &i(&[], &[0])]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![], vec![1]));
        assert!(run("Gather", 13, vec![], &[&x, &i(&[1], &[3])]).is_err());
        assert!(run("Gather", 13, vec![], &[&x, &i(&[1], &[-4])]).is_err());
        assert!(
            run(
                "Gather",
                13,
                vec![("axis", Attribute::Int(2))],
                &[&x, &i(&[1], &[0])]
            )
            .is_err()
        );
    }

    #[test]
    fn tile_repeats() {
        let x = f(&[2], &[1., 2.]);
        let out = run("Tile", 13, vec![], &[&x, &i(&[1], &[3])]).unwrap();
        assert_eq!(fvals(&out[0]).1, vec![1., 2., 1., 2., 1., 2.]);
        let x = seq(&[1, 2]);
        let out = run("Tile", 13, vec![], &[&x, &i(&[2], &[2, 1])]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![2, 2], vec![0., 1., 0., 1.]));
        assert!(run("Tile", 13, vec![], &[&x, &i(&[1], &[2])]).is_err());
    }

    #[test]
    fn pad_modes() {
        let x = f(&[3], &[1., 2., 3.]);
        let pads = i(&[2], &[2, 2]);
        let cases: [(&str, [f32; 7]); 4] = [
            ("constant", [0., 0., 1., 2., 3., 0., 0.]),
            ("reflect", [3., 2., 1., 2., 3., 2., 1.]),
            ("edge", [1., 1., 1., 2., 3., 3., 3.]),
            ("wrap", [2., 3., 1., 2., 3., 1., 2.]),
        ];
        for (mode, want) in cases {
            check_f(
                "Pad",
                13,
                vec![("mode", Attribute::String(mode.into()))],
                &[&x, &pads],
                &[7],
                &want,
            );
        }
        // constant value input and negative pads (crop)
        let y = seq(&[2, 3]);
        let pads = i(&[4], &[1, -1, 0, 0]);
        check_f(
            "Pad",
            13,
            vec![],
            &[&y, &pads, &f(&[], &[9.])],
            &[3, 2],
            &[9., 9., 1., 2., 4., 5.],
        );
        // opset 2 attributes
        check_f(
            "Pad",
            2,
            vec![
                ("pads", Attribute::Ints(vec![0, 1, 0, 0])),
                ("value", Attribute::Float(-1.)),
            ],
            &[&y],
            &[2, 4],
            &[-1., 0., 1., 2., -1., 3., 4., 5.],
        );
        // opset 18 axes input
        let n = node(
            "Pad",
            4,
            1,
            vec![("mode", Attribute::String("reflect".into()))],
        );
        let pads = i(&[2], &[1, 1]);
        let axes = i(&[1], &[-1]);
        let out = run_node(&n, 18, &[Some(&y), Some(&pads), None, Some(&axes)]).unwrap();
        assert_eq!(
            fvals(&out[0]),
            (vec![2, 5], vec![1., 0., 1., 2., 1., 4., 3., 4., 5., 4.])
        );
        // integer data
        let out = run(
            "Pad",
            13,
            vec![],
            &[&i(&[1], &[5]), &i(&[2], &[1, 0]), &i(&[], &[7])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]).1, vec![7, 5]);
        // errors
        assert!(run("Pad", 13, vec![], &[&x, &i(&[1], &[1])]).is_err());
        assert!(
            run(
                "Pad",
                13,
                vec![("mode", Attribute::String("mirror".into()))],
                &[&x, &i(&[2], &[1, 1])]
            )
            .is_err()
        );
        assert!(run("Pad", 13, vec![], &[&x, &i(&[2], &[-2, -2])]).is_err());
    }

    fn resize_sizes(x: &TensorData, sizes: &[i64], attrs: Vec<(&str, Attribute)>) -> Vec<f32> {
        let s = i(&[sizes.len()], sizes);
        let n = node("Resize", 4, 1, attrs);
        let out = run_node(&n, 13, &[Some(x), None, None, Some(&s)]).unwrap();
        fvals(&out[0]).1
    }

    fn resize_scales(
        x: &TensorData,
        scales: &[f32],
        attrs: Vec<(&str, Attribute)>,
    ) -> (Vec<usize>, Vec<f32>) {
        let s = f(&[scales.len()], scales);
        let n = node("Resize", 3, 1, attrs);
        let out = run_node(&n, 13, &[Some(x), None, Some(&s)]).unwrap();
        fvals(&out[0])
    }

    fn s(v: &str) -> Attribute {
        Attribute::String(v.into())
    }

    #[test]
    fn resize_nearest_modes() {
        // onnx test: upsample scales nearest [1,1,2,2] -> [1,1,4,6] with scales 2, 3
        let x = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let (shape, v) = resize_scales(&x, &[1., 1., 2., 3.], vec![]);
        assert_eq!(shape, vec![1, 1, 4, 6]);
        assert_eq!(
            v,
            vec![
                1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3.,
                4., 4., 4.
            ]
        );
        // 1-D, 4 -> 8 with each nearest mode under half_pixel: x = (o + .5)/2 - .5
        // o:0..8 -> -0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25
        let x = f(&[1, 4], &[1., 2., 3., 4.]);
        let v = resize_sizes(&x, &[1, 8], vec![]);
        assert_eq!(v, vec![1., 1., 2., 2., 3., 3., 4., 4.]);
        let v = resize_sizes(&x, &[1, 8], vec![("nearest_mode", s("floor"))]);
        assert_eq!(v, vec![1., 1., 1., 2., 2., 3., 3., 4.]);
        let v = resize_sizes(&x, &[1, 8], vec![("nearest_mode", s("ceil"))]);
        assert_eq!(v, vec![1., 2., 2., 3., 3., 4., 4., 4.]);
        // asymmetric: x = o / 2 -> 0, .5, 1, 1.5, ... ties decide
        let asym = ("coordinate_transformation_mode", s("asymmetric"));
        let v = resize_sizes(&x, &[1, 8], vec![asym.clone()]);
        assert_eq!(v, vec![1., 1., 2., 2., 3., 3., 4., 4.]);
        let v = resize_sizes(
            &x,
            &[1, 8],
            vec![asym.clone(), ("nearest_mode", s("round_prefer_ceil"))],
        );
        assert_eq!(v, vec![1., 2., 2., 3., 3., 4., 4., 4.]);
        // align_corners 4 -> 7: x = o * 3/6 = o/2
        let v = resize_sizes(
            &x,
            &[1, 7],
            vec![("coordinate_transformation_mode", s("align_corners"))],
        );
        assert_eq!(v, vec![1., 1., 2., 2., 3., 3., 4.]);
        // tf_half_pixel_for_nearest 4 -> 8: x = (o + .5)/2 -> .25, .75, ...
        let v = resize_sizes(
            &x,
            &[1, 8],
            vec![(
                "coordinate_transformation_mode",
                s("tf_half_pixel_for_nearest"),
            )],
        );
        assert_eq!(v, vec![1., 2., 2., 3., 3., 4., 4., 4.]);
        // pytorch_half_pixel to length 1 takes index 0
        let v = resize_sizes(
            &x,
            &[1, 1],
            vec![("coordinate_transformation_mode", s("pytorch_half_pixel"))],
        );
        assert_eq!(v, vec![1.]);
        // downsample 4 -> 2 with half_pixel: x = (o + .5)*2 - .5 = .5, 2.5 -> floor ties: 0, 2
        let v = resize_sizes(&x, &[1, 2], vec![]);
        assert_eq!(v, vec![1., 3.]);
        // other modes are refused clearly
        let n = node("Resize", 3, 1, vec![("mode", s("linear"))]);
        let sc = f(&[2], &[1., 2.]);
        let err = run_node(&n, 13, &[Some(&x), None, Some(&sc)]).unwrap_err();
        assert!(err.0.contains("nearest"), "{}", err.0);
    }

    #[test]
    fn resize_opset10_and_upsample() {
        // onnx resize_downsample_nearest (opset 10): [[1,2,3,4],[5,6,7,8]] x 0.6 -> [[1,3]]
        let x = f(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let sc = f(&[4], &[1., 1., 0.6, 0.6]);
        let out = run("Resize", 10, vec![], &[&x, &sc]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![1, 1, 1, 2], vec![1., 3.]));
        let x = f(&[1, 2], &[1., 2.]);
        let sc = f(&[2], &[1., 3.]);
        let out = run("Upsample", 9, vec![], &[&x, &sc]).unwrap();
        assert_eq!(fvals(&out[0]).1, vec![1., 1., 1., 2., 2., 2.]);
        let out = run(
            "Upsample",
            7,
            vec![("scales", Attribute::Floats(vec![2., 1.]))],
            &[&x],
        )
        .unwrap();
        assert_eq!(fvals(&out[0]), (vec![2, 2], vec![1., 2., 1., 2.]));
    }

    #[test]
    fn resize_axes_and_aspect_policy() {
        let x = seq(&[2, 4]);
        let s = i(&[1], &[2]);
        let n = node("Resize", 4, 1, vec![("axes", Attribute::Ints(vec![1]))]);
        let out = run_node(&n, 18, &[Some(&x), None, None, Some(&s)]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![2, 2], vec![0., 2., 4., 6.]));
        // not_larger: sizes [4, 4] on [2, 4] -> common scale 1 -> [2, 4]
        let s = i(&[2], &[4, 4]);
        let n = node(
            "Resize",
            4,
            1,
            vec![("keep_aspect_ratio_policy", s_attr("not_larger"))],
        );
        let out = run_node(&n, 18, &[Some(&x), None, None, Some(&s)]).unwrap();
        assert_eq!(fvals(&out[0]).0, vec![2, 4]);
        let n = node(
            "Resize",
            4,
            1,
            vec![("keep_aspect_ratio_policy", s_attr("not_smaller"))],
        );
        let out = run_node(&n, 18, &[Some(&x), None, None, Some(&s)]).unwrap();
        assert_eq!(fvals(&out[0]).0, vec![4, 8]);
        // errors: both or neither of scales and sizes
        let n = node("Resize", 4, 1, vec![]);
        assert!(run_node(&n, 13, &[Some(&x)]).is_err());
        let sc = f(&[2], &[1., 1.]);
        assert!(run_node(&n, 13, &[Some(&x), None, Some(&sc), Some(&s)]).is_err());
    }

    fn s_attr(v: &str) -> Attribute {
        Attribute::String(v.into())
    }

    #[test]
    fn constants() {
        let t = Tensor::new("v", i(&[2], &[3, 4]), DType::I64);
        let out = run("Constant", 13, vec![("value", Attribute::Tensor(t))], &[]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![3, 4]);
        let out = run(
            "Constant",
            13,
            vec![("value_float", Attribute::Float(2.5))],
            &[],
        )
        .unwrap();
        assert_eq!(fvals(&out[0]), (vec![], vec![2.5]));
        let out = run(
            "Constant",
            13,
            vec![("value_ints", Attribute::Ints(vec![1, 2]))],
            &[],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![2], vec![1, 2]));
        let out = run(
            "Constant",
            13,
            vec![("value_floats", Attribute::Floats(vec![1.]))],
            &[],
        )
        .unwrap();
        assert_eq!(fvals(&out[0]), (vec![1], vec![1.]));
        let out = run("Constant", 13, vec![("value_int", Attribute::Int(7))], &[]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![], vec![7]));
        assert!(run("Constant", 13, vec![], &[]).is_err());
        assert!(
            run(
                "Constant",
                13,
                vec![("value_string", Attribute::String("a".into()))],
                &[]
            )
            .is_err()
        );

        let out = run("ConstantOfShape", 13, vec![], &[&i(&[2], &[2, 3])]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![2, 3], vec![0.; 6]));
        let v = Tensor::new("v", i(&[1], &[5]), DType::I64);
        let out = run(
            "ConstantOfShape",
            13,
            vec![("value", Attribute::Tensor(v))],
            &[&i(&[1], &[2])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![2], vec![5, 5]));
        let out = run("ConstantOfShape", 13, vec![], &[&i(&[0], &[])]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![], vec![0.]));
        assert!(run("ConstantOfShape", 13, vec![], &[&i(&[1], &[-1])]).is_err());
    }

    #[test]
    fn range_values() {
        let out = run(
            "Range",
            11,
            vec![],
            &[&i(&[], &[3]), &i(&[], &[9]), &i(&[], &[3])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![2], vec![3, 6]));
        let out = run(
            "Range",
            11,
            vec![],
            &[&i(&[], &[10]), &i(&[], &[4]), &i(&[], &[-3])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]).1, vec![10, 7]);
        let out = run(
            "Range",
            11,
            vec![],
            &[&i(&[], &[1]), &i(&[], &[0]), &i(&[], &[1])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]).0, vec![0]);
        let out = run(
            "Range",
            11,
            vec![],
            &[&f(&[], &[1.]), &f(&[], &[2.]), &f(&[], &[0.25])],
        )
        .unwrap();
        assert_eq!(fvals(&out[0]).1, vec![1., 1.25, 1.5, 1.75]);
        assert!(
            run(
                "Range",
                11,
                vec![],
                &[&i(&[], &[1]), &i(&[], &[5]), &i(&[], &[0])]
            )
            .is_err()
        );
        assert!(
            run(
                "Range",
                11,
                vec![],
                &[&i(&[2], &[1, 2]), &i(&[], &[5]), &i(&[], &[1])]
            )
            .is_err()
        );
    }

    #[test]
    fn absurd_sizes_are_errors() {
        let huge = i(&[3], &[1 << 30, 1 << 30, 1 << 30]);
        assert!(run("ConstantOfShape", 13, vec![], &[&huge]).is_err());
        let x = f(&[1], &[1.]);
        assert!(run("Expand", 13, vec![], &[&x, &huge]).is_err());
        assert!(run("Tile", 13, vec![], &[&x, &i(&[1], &[i64::MAX])]).is_err());
        assert!(run("Pad", 13, vec![], &[&x, &i(&[2], &[i64::MAX, i64::MAX])]).is_err());
        let s = i(&[3], &[i64::MAX, i64::MAX, 0]);
        assert!(run("Reshape", 14, vec![], &[&x, &s]).is_err());
        // extreme slice parameters stay exact
        let y = seq(&[4]);
        let out = slice10(&y, &[i64::MAX], &[i64::MIN], None, Some(&[i64::MIN])).unwrap();
        assert_eq!(fvals(&out), (vec![1], vec![3.]));
        let out = slice10(&y, &[i64::MIN], &[i64::MAX], None, Some(&[i64::MAX])).unwrap();
        assert_eq!(fvals(&out), (vec![1], vec![0.]));
    }

    fn cast_to(x: &TensorData, code: i64) -> TensorData {
        run("Cast", 13, vec![("to", Attribute::Int(code))], &[x])
            .unwrap()
            .remove(0)
    }

    #[test]
    fn cast_rules() {
        let x = f(&[5], &[-2.7, -0.5, 0.5, 2.7, 300.6]);
        // int64: truncation toward zero
        assert_eq!(ivals(&cast_to(&x, 7)).1, vec![-2, 0, 0, 2, 300]);
        // int32 held as i64
        assert_eq!(ivals(&cast_to(&x, 6)).1, vec![-2, 0, 0, 2, 300]);
        // uint8 wraps (300 -> 44) and is held as f32
        assert_eq!(fvals(&cast_to(&x, 2)).1, vec![254., 0., 0., 2., 44.]);
        // int8
        assert_eq!(fvals(&cast_to(&x, 3)).1, vec![-2., 0., 0., 2., 44.]);
        // bool
        assert_eq!(ivals(&cast_to(&x, 9)).1, vec![1, 1, 1, 1, 1]);
        assert_eq!(ivals(&cast_to(&f(&[2], &[0., f32::NAN]), 9)).1, vec![0, 1]);
        // float16 rounding: 1 + 2^-11 is a tie -> even (1.0); 1 + 3*2^-11 -> 1 + 2^-9
        let h = f(
            &[3],
            &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 70000.],
        );
        assert_eq!(
            fvals(&cast_to(&h, 10)).1,
            vec![1.0, 1.0 + 2f32.powi(-9), f32::INFINITY]
        );
        // bfloat16 keeps 8 bits of mantissa
        let b = f(&[1], &[1.0 + 2f32.powi(-9)]);
        assert_eq!(fvals(&cast_to(&b, 16)).1, vec![1.0]);
        // int to float
        assert_eq!(fvals(&cast_to(&i(&[2], &[3, -4]), 1)).1, vec![3., -4.]);
        assert_eq!(ivals(&cast_to(&i(&[2], &[3, 0]), 9)).1, vec![1, 0]);
        // unsupported target
        assert!(run("Cast", 13, vec![("to", Attribute::Int(8))], &[&x]).is_err());
        assert!(run("Cast", 13, vec![], &[&x]).is_err());
    }
}
