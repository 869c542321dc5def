//! Joining and splitting along an axis: Concat and Split.

use super::*;

pub(super) fn concat(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
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
pub(super) fn split_along<T: Elem>(
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

pub(super) fn split(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
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
