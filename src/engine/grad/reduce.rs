//! Backward of the reductions: the output gradient, put back on the reduced axes (kept as
//! size 1), broadcast over the input: as is for ReduceSum, divided by the count for
//! ReduceMean, times 2x for ReduceSumSquare, times x/y for ReduceL2, times sign(x) for
//! ReduceL1; ReduceMax/ReduceMin share it evenly among the elements equal to the extreme.
//! Axes come from the attribute or (from the op's opset on) the second input, as in the
//! forward, with `keepdims` and `noop_with_empty_axes`.

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use super::{GradCtx, GradRegistry, GradResult, grad_output, output_f32};
use crate::engine::ops::{OpError, input_f32, normalize_axis, optional};
use crate::ir::TensorData;

pub fn register(registry: &mut GradRegistry) {
    registry.add("ReduceSum", |ctx, inputs, outputs, grads| {
        reduction(ctx, inputs, outputs, grads, |g, _, _, _| g)
    });
    registry.add("ReduceMean", |ctx, inputs, outputs, grads| {
        reduction(ctx, inputs, outputs, grads, |g, _, _, n| {
            g / n.max(1) as f32
        })
    });
    registry.add("ReduceSumSquare", |ctx, inputs, outputs, grads| {
        reduction(ctx, inputs, outputs, grads, |g, x, _, _| 2.0 * g * x)
    });
    registry.add("ReduceL1", |ctx, inputs, outputs, grads| {
        reduction(ctx, inputs, outputs, grads, |g, x, _, _| {
            if x > 0.0 {
                g
            } else if x < 0.0 {
                -g
            } else {
                0.0
            }
        })
    });
    registry.add("ReduceL2", |ctx, inputs, outputs, grads| {
        reduction(ctx, inputs, outputs, grads, |g, x, y, _| {
            if y > 0.0 { g * x / y } else { 0.0 }
        })
    });
    registry.add("ReduceMax", reduce_extreme);
    registry.add("ReduceMin", reduce_extreme);
}

/// The opset from which each reduction takes its axes as an input.
fn axes_input_since(op: &str) -> i64 {
    if op == "ReduceSum" { 13 } else { 18 }
}

/// The reduced axes (sorted), or None when the node reduces nothing.
fn reduced_axes(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    rank: usize,
) -> Result<Option<Vec<usize>>, OpError> {
    let raw: Vec<i64> = if ctx.opset >= axes_input_since(&ctx.node.op_type) {
        match optional(inputs, 1) {
            None => Vec::new(),
            Some(TensorData::I64(a)) => a.iter().copied().collect(),
            Some(_) => return Err(OpError("axes must be an integer tensor".into())),
        }
    } else {
        ctx.node.attr_ints("axes")?.unwrap_or_default()
    };
    if raw.is_empty() {
        if ctx.node.attr_int("noop_with_empty_axes", 0)? != 0 {
            return Ok(None);
        }
        return Ok(Some((0..rank).collect()));
    }
    let mut axes = raw
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    Ok(Some(axes))
}

/// `t` (shaped like the output) with the reduced axes restored as size 1, broadcast to the
/// input's shape.
fn spread(t: &ArrayD<f32>, x_shape: &[usize], axes: &[usize]) -> Result<ArrayD<f32>, OpError> {
    let kept: Vec<usize> = x_shape
        .iter()
        .enumerate()
        .map(|(k, &d)| if axes.contains(&k) { 1 } else { d })
        .collect();
    if t.len() != kept.iter().product::<usize>() {
        return Err(OpError(format!(
            "gradient of shape {:?} does not fit the reduction of {x_shape:?}",
            t.shape()
        )));
    }
    let t = t
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&kept))
        .map_err(|e| OpError(e.to_string()))?;
    t.broadcast(IxDyn(x_shape))
        .map(|v| v.to_owned())
        .ok_or_else(|| OpError("internal error broadcasting a reduction gradient".into()))
}

/// The frame every reduction's backward shares: only input 0 gets a gradient, computed by
/// `body(x, g, y, axes)` from the forward input, the output gradient, the forward output and
/// the reduced axes (None when the node reduces nothing).
fn reduction_frame(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
    body: impl FnOnce(
        &ArrayD<f32>,
        &ArrayD<f32>,
        &ArrayD<f32>,
        Option<Vec<usize>>,
    ) -> Result<ArrayD<f32>, OpError>,
) -> GradResult {
    let mut out = vec![None; inputs.len().max(1)];
    if ctx.wants(0) {
        let x = input_f32(inputs, 0)?;
        let axes = reduced_axes(ctx, inputs, x.ndim())?;
        out[0] = Some(body(
            x,
            grad_output(grads, 0)?,
            output_f32(outputs, 0)?,
            axes,
        )?);
    }
    Ok(out)
}

/// The common part: `f(g, x, y, count)` over the input's shape with g and y spread back.
fn reduction(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
    f: impl Fn(f32, f32, f32, usize) -> f32,
) -> GradResult {
    reduction_frame(ctx, inputs, outputs, grads, |x, g, y, axes| {
        let Some(axes) = axes else {
            // No reduction: the identity.
            return Ok(Zip::from(g)
                .and(x)
                .and(y)
                .map_collect(|&g, &x, &y| f(g, x, y, 1)));
        };
        let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
        let gb = spread(g, x.shape(), &axes)?;
        let yb = spread(y, x.shape(), &axes)?;
        Ok(Zip::from(&gb)
            .and(x)
            .and(&yb)
            .map_collect(|&g, &x, &y| f(g, x, y, count)))
    })
}

/// ReduceMax/ReduceMin: the gradient shared evenly by the elements equal to the result.
fn reduce_extreme(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    reduction_frame(ctx, inputs, outputs, grads, |x, g, y, axes| {
        let Some(axes) = axes else {
            return Ok(g.clone());
        };
        let yb = spread(y, x.shape(), &axes)?;
        let hits = Zip::from(x)
            .and(&yb)
            .map_collect(|&x, &y| if x == y { 1.0f32 } else { 0.0 });
        let mut counts = hits.clone();
        for &a in axes.iter().rev() {
            counts = counts.sum_axis(Axis(a)).insert_axis(Axis(a));
        }
        let counts = counts
            .broadcast(IxDyn(x.shape()))
            .ok_or_else(|| OpError("internal error broadcasting tie counts".into()))?
            .to_owned();
        let gb = spread(g, x.shape(), &axes)?;
        Ok(Zip::from(&gb)
            .and(&hits)
            .and(&counts)
            .map_collect(|&g, &h, &c| if h > 0.0 { g / c } else { 0.0 }))
    })
}

#[cfg(test)]
mod tests {
    use super::super::check::{Case, check, ints, random};

    #[test]
    fn reductions_by_attribute_and_by_input() {
        let random_x = random(&[3, 4, 5], 1, -2.0, 2.0);
        // For the extremes: the same order, values 4/60 apart, so that no central difference
        // of step 1e-2 changes which element is the largest.
        let mut order: Vec<usize> = (0..random_x.len()).collect();
        order.sort_by(|&a, &b| {
            random_x.as_slice().unwrap()[a].total_cmp(&random_x.as_slice().unwrap()[b])
        });
        let mut spaced = random_x.clone();
        for (rank, &i) in order.iter().enumerate() {
            spaced.as_slice_mut().unwrap()[i] = -2.0 + 4.0 * rank as f32 / 60.0;
        }
        for op in [
            "ReduceSum",
            "ReduceMean",
            "ReduceSumSquare",
            "ReduceL2",
            "ReduceMax",
            "ReduceMin",
        ] {
            // The L2 norm's curvature shows in central differences of step 1e-2.
            let tol = if op == "ReduceL2" { 1e-2 } else { 2e-3 };
            let x = if matches!(op, "ReduceMax" | "ReduceMin") {
                &spaced
            } else {
                &random_x
            };
            for keep in [0, 1] {
                // Axes as an attribute (opset 11) and as an input (opset 18).
                let by_attr = Case::new(op)
                    .opset(11)
                    .attr_ints("axes", &[0, -1])
                    .attr_int("keepdims", keep)
                    .input(x.clone());
                check(&by_attr, tol);
                let by_input = Case::new(op)
                    .opset(18)
                    .attr_int("keepdims", keep)
                    .input(x.clone())
                    .constant(ints(&[1]));
                check(&by_input, tol);
            }
            let all = Case::new(op).opset(18).input(x.clone());
            check(&all, tol);
        }
        let l1 = Case::new("ReduceL1")
            .opset(18)
            .input(super::super::check::away_from(random_x, &[0.0], 0.05))
            .constant(ints(&[2]));
        check(&l1, 2e-3);
    }
}
