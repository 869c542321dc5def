//! Shape and data-movement kernels: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Shape,
//! Size, Expand, Concat, Split, Slice, Gather, Tile, Pad, Resize and Upsample (every mode),
//! plus the value makers Constant, ConstantOfShape, Range and Cast.
//!
//! Every kernel here works on float and integer tensors alike and returns row-major data.

use std::borrow::Cow;

use ndarray::{ArrayD, IxDyn};

use super::elementwise::broadcast_shapes;
use super::{
    OpCtx, OpError, OpResult, Registry, array_from, checked_len, input, normalize_axis, optional,
    single,
};
use crate::ir::{Attribute, DType, TensorData};

pub fn register(registry: &mut Registry) {
    registry.add("Flatten", reshape::flatten);
    registry.add_moving("Flatten", reshape::flatten_moving);
    registry.add("Reshape", reshape::reshape);
    registry.add_moving("Reshape", reshape::reshape_moving);
    registry.add_moving("Squeeze", reshape::squeeze_moving);
    registry.add_moving("Unsqueeze", reshape::unsqueeze_moving);
    registry.add("Transpose", transpose::transpose);
    registry.add("Squeeze", reshape::squeeze);
    registry.add("Unsqueeze", reshape::unsqueeze);
    registry.add("Shape", reshape::shape_op);
    registry.add("Size", reshape::size_op);
    registry.add("Expand", reshape::expand);
    registry.add("Concat", join::concat);
    registry.add("Split", join::split);
    registry.add("Slice", index::slice);
    registry.add("Gather", index::gather);
    registry.add("Tile", index::tile);
    registry.add("Pad", pad::pad);
    registry.add("Resize", resize::resize);
    registry.add("Upsample", resize::upsample);
    registry.add("Constant", values::constant);
    registry.add("ConstantOfShape", values::constant_of_shape);
    registry.add("Range", values::range);
    registry.add("Cast", values::cast);
}

/// Element types of tensors.
pub(crate) trait Elem: Copy + Default + Send + Sync + std::fmt::Debug + 'static {}
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

// The kernels (after `each_kind!`, which they use).
mod index;
mod interpolate;
mod join;
mod pad;
mod reshape;
mod resize;
#[cfg(test)]
mod tests;
mod transpose;
mod values;

pub(super) use transpose::permute;
