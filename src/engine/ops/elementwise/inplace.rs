//! Storage-reusing forms of the elementwise kernels: a binary float op writes into the operand
//! the executor handed over when that operand already has the output's shape, and Identity /
//! Dropout pass their input on without a copy.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::{Block, CHUNK, block_of, broadcast_shapes};
use crate::engine::ops::{Args, OpCtx, OpError, OpFn, OpResult, go_parallel, single};
use crate::ir::TensorData;

/// `full[i] = f(full[i], small[block index of i])` in place.
pub(super) fn combine_in_place<F>(full: &mut [f32], small: &[f32], block: &Block, f: F)
where
    F: Fn(f32, f32) -> f32 + Sync + Send,
{
    let (mid, inner) = (block.mid, block.inner);
    if full.is_empty() {
        return;
    }
    if small.len() == full.len() {
        let run = |o: &mut [f32], y: &[f32]| {
            for (o, &y) in o.iter_mut().zip(y) {
                *o = f(*o, y);
            }
        };
        if go_parallel(full.len()) {
            full.par_chunks_mut(CHUNK)
                .zip(small.par_chunks(CHUNK))
                .for_each(|(o, y)| run(o, y));
        } else {
            run(full, small);
        }
    } else if small.len() == 1 {
        let y = small[0];
        let run = |o: &mut [f32]| {
            for o in o.iter_mut() {
                *o = f(*o, y);
            }
        };
        if go_parallel(full.len()) {
            full.par_chunks_mut(CHUNK).for_each(run);
        } else {
            run(full);
        }
    } else if inner == 1 {
        // rows: every run of `mid` elements pairs with all of `small`
        let run = |o: &mut [f32]| {
            for row in o.chunks_mut(mid) {
                for (o, &y) in row.iter_mut().zip(small) {
                    *o = f(*o, y);
                }
            }
        };
        if go_parallel(full.len()) {
            let rows = (CHUNK / mid).max(1) * mid;
            full.par_chunks_mut(rows).for_each(run);
        } else {
            run(full);
        }
    } else {
        // runs of `inner` elements share one value of `small`
        let run = |first_run: usize, o: &mut [f32]| {
            for (k, orun) in o.chunks_mut(inner).enumerate() {
                let y = small[(first_run + k) % mid];
                for o in orun.iter_mut() {
                    *o = f(*o, y);
                }
            }
        };
        if go_parallel(full.len()) {
            let runs_per = (CHUNK / inner).max(1);
            full.par_chunks_mut(runs_per * inner)
                .enumerate()
                .for_each(|(c, o)| run(c * runs_per, o));
        } else {
            run(0, full);
        }
    }
}

/// Which operand of a binary float op can take the result: handed over, contiguous and of the
/// output's shape, with the other operand contiguous and covering a block of the output.
fn reusable_operand(args: &Args<'_>) -> Option<(usize, Block)> {
    let (Some(TensorData::F32(a)), Some(TensorData::F32(b))) = (args.get(0), args.get(1)) else {
        return None;
    };
    let shape = broadcast_shapes(a.shape(), b.shape()).ok()?;
    for (k, (mine, other)) in [(a, b), (b, a)].into_iter().enumerate() {
        if args.is_owned(k)
            && mine.shape() == shape.as_slice()
            && mine.is_standard_layout()
            && other.is_standard_layout()
            && let Some(block) = block_of(other.shape(), &shape)
        {
            return Some((k, block));
        }
    }
    None
}

/// A binary float op `f(a, b)` written into a handed-over operand when one fits; otherwise
/// (and for integer operands) the borrowing kernel `general`.
pub(super) fn binary_moving<F>(
    ctx: &OpCtx<'_>,
    args: &mut Args<'_>,
    f: F,
    general: OpFn,
) -> OpResult
where
    F: Fn(f32, f32) -> f32 + Sync + Send + Copy,
{
    if args.len() == 2
        && let Some((k, block)) = reusable_operand(args)
        && let Some(TensorData::F32(mut target)) = args.take(k)
    {
        let other = args
            .get(1 - k)
            .and_then(TensorData::as_f32)
            .and_then(|a| a.as_slice())
            .ok_or_else(|| OpError("internal error: operand vanished".into()))?;
        let out = target
            .as_slice_mut()
            .ok_or_else(|| OpError("internal error: operand not contiguous".into()))?;
        if k == 0 {
            combine_in_place(out, other, &block, f);
        } else {
            combine_in_place(out, other, &block, move |y, x| f(x, y));
        }
        return single(target);
    }
    general(ctx, &args.refs())
}

/// Identity without a copy when the input is handed over.
pub(super) fn identity_moving(_ctx: &OpCtx<'_>, args: &mut Args<'_>) -> OpResult {
    match args.take(0) {
        Some(x) => single(x),
        None => single(
            args.get(0)
                .ok_or_else(|| OpError("missing required input 0".into()))?
                .clone(),
        ),
    }
}

/// Inference Dropout: the input unchanged (moved when handed over), and a mask of ones when
/// the node asks for one.
pub(super) fn dropout_moving(ctx: &OpCtx<'_>, args: &mut Args<'_>) -> OpResult {
    let shape = args
        .get(0)
        .ok_or_else(|| OpError("missing required input 0".into()))?
        .shape()
        .to_vec();
    let mut outputs = identity_moving(ctx, args)?;
    if ctx.node.outputs.len() > 1 {
        outputs.push(TensorData::I64(ArrayD::from_elem(IxDyn(&shape), 1)));
    }
    Ok(outputs)
}
