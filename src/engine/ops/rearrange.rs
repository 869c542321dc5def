//! Pixel rearrangement: DepthToSpace (DCR and CRD modes) and SpaceToDepth, each a reshape to
//! six axes, a fixed permutation and a reshape back.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::gather_scatter::flat;
use super::{OpCtx, OpError, OpResult, Registry, array_from, input, positive_attr, single};
use crate::ir::TensorData;

pub fn register(registry: &mut Registry) {
    registry.add("DepthToSpace", depth_to_space);
    registry.add("SpaceToDepth", space_to_depth);
}

/// `x` viewed as `split`, permuted by `perm`, laid out row-major as `out_shape`.
fn permute_as<T: Copy>(
    x: &ArrayD<T>,
    split: &[usize],
    perm: &[usize],
    out_shape: &[usize],
) -> Result<ArrayD<T>, OpError> {
    let data = flat(x);
    let view = ArrayViewD::from_shape(IxDyn(split), &data)
        .map_err(|e| OpError(format!("internal reshape error: {e}")))?;
    let values: Vec<T> = view.permuted_axes(IxDyn(perm)).iter().copied().collect();
    array_from(out_shape, values)
}

/// [N, C, H, W] and the block size, checked.
fn dims_and_block(ctx: &OpCtx<'_>, x: &TensorData) -> Result<([usize; 4], usize), OpError> {
    let shape = x.shape();
    let [n, c, h, w] = shape else {
        return Err(OpError(format!(
            "input must be 4-D [N, C, H, W], got shape {shape:?}"
        )));
    };
    let b = positive_attr(ctx, "blocksize")?;
    Ok(([*n, *c, *h, *w], b))
}

fn depth_to_space(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let ([n, c, h, w], b) = dims_and_block(ctx, x)?;
    if c % (b * b) != 0 {
        return Err(OpError(format!(
            "{c} channels are not divisible by blocksize² = {}",
            b * b
        )));
    }
    let mode = ctx.node.attr_string("mode", "DCR")?;
    let cb = c / (b * b);
    let (split, perm): (Vec<usize>, [usize; 6]) = match mode.as_str() {
        "DCR" => (vec![n, b, b, cb, h, w], [0, 3, 4, 1, 5, 2]),
        "CRD" => (vec![n, cb, b, b, h, w], [0, 1, 4, 2, 5, 3]),
        other => return Err(OpError(format!("mode must be DCR or CRD, got '{other}'"))),
    };
    let out = [n, cb, h * b, w * b];
    single(match x {
        TensorData::F32(a) => TensorData::from(permute_as(a, &split, &perm, &out)?),
        TensorData::I64(a) => TensorData::from(permute_as(a, &split, &perm, &out)?),
    })
}

fn space_to_depth(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let ([n, c, h, w], b) = dims_and_block(ctx, x)?;
    if h % b != 0 || w % b != 0 {
        return Err(OpError(format!(
            "spatial size {h}×{w} is not divisible by blocksize {b}"
        )));
    }
    let split = [n, c, h / b, b, w / b, b];
    let perm = [0, 3, 5, 1, 2, 4];
    let out = [n, c * b * b, h / b, w / b];
    single(match x {
        TensorData::F32(a) => TensorData::from(permute_as(a, &split, &perm, &out)?),
        TensorData::I64(a) => TensorData::from(permute_as(a, &split, &perm, &out)?),
    })
}
