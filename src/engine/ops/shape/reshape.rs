//! Reshaping without moving data: Flatten, Reshape, Squeeze, Unsqueeze, Shape, Size and Expand.
//!
//! Flatten, Reshape, Squeeze and Unsqueeze have storage-reusing forms: when the executor hands
//! the input over (this node is its last reader) the output keeps the input's buffer and only
//! the shape changes; otherwise the data is copied once.

use super::*;
use crate::engine::ops::Args;

/// The input with a new shape: the same buffer when handed over and contiguous, else a copy.
fn reshaped(args: &mut Args<'_>, target: &[usize]) -> OpResult {
    if let Some(x) = args.take(0) {
        fn keep<T: Elem>(a: ArrayD<T>, target: &[usize]) -> Result<ArrayD<T>, OpError> {
            if a.is_standard_layout() {
                a.into_shape_with_order(IxDyn(target))
                    .map_err(|e| OpError(format!("internal error reshaping: {e}")))
            } else {
                with_shape(&a, target)
            }
        }
        return single(each_kind!(x, a => keep(a, target)?));
    }
    let x = args
        .get(0)
        .ok_or_else(|| OpError("missing required input 0".into()))?;
    single(each_kind!(x, a => with_shape(a, target)?))
}

/// Input 0 of a storage-reusing kernel.
fn first<'a>(args: &'a Args<'_>) -> Result<&'a TensorData, OpError> {
    args.get(0)
        .ok_or_else(|| OpError("missing required input 0".into()))
}

pub(super) fn flatten(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    flatten_moving(ctx, &mut Args::borrowed(inputs))
}

pub(super) fn flatten_moving(ctx: &OpCtx<'_>, args: &mut Args<'_>) -> OpResult {
    let shape = first(args)?.shape();
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
    reshaped(args, &target)
}

/// The output shape of Reshape.
pub(super) fn reshape_target(
    input: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OpError> {
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

pub(super) fn reshape(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reshape_moving(ctx, &mut Args::borrowed(inputs))
}

pub(super) fn reshape_moving(ctx: &OpCtx<'_>, args: &mut Args<'_>) -> OpResult {
    let x = first(args)?;
    let spec = if ctx.opset >= 5 {
        int_values(
            args.get(1)
                .ok_or_else(|| OpError("missing required input 1".into()))?,
            "shape",
        )?
    } else {
        ctx.node
            .attr_ints("shape")?
            .ok_or_else(|| OpError("missing attribute 'shape'".into()))?
    };
    let allowzero = ctx.node.attr_int("allowzero", 0)? != 0;
    let target = reshape_target(x.shape(), &spec, allowzero)?;
    reshaped(args, &target)
}

pub(super) fn squeeze(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    squeeze_moving(ctx, &mut Args::borrowed(inputs))
}

pub(super) fn squeeze_moving(ctx: &OpCtx<'_>, args: &mut Args<'_>) -> OpResult {
    let shape = first(args)?.shape();
    let axes = ints_input_or_attr(ctx, &args.refs(), 1, "axes", 13)?;
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
    reshaped(args, &target)
}

pub(super) fn unsqueeze(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    unsqueeze_moving(ctx, &mut Args::borrowed(inputs))
}

pub(super) fn unsqueeze_moving(ctx: &OpCtx<'_>, args: &mut Args<'_>) -> OpResult {
    let shape = first(args)?.shape();
    let axes = ints_input_or_attr(ctx, &args.refs(), 1, "axes", 13)?
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
    reshaped(args, &target)
}

pub(super) fn shape_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
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

pub(super) fn size_op(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let n = input(inputs, 0)?.len() as i64;
    single(array_from(&[], vec![n])?)
}

pub(super) fn expand(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
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
