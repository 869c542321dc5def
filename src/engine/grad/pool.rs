//! Backward of the pools: MaxPool and GlobalMaxPool send each output's gradient to the input
//! the forward picked (the first maximum of the window), AveragePool spreads it over the
//! window's taps divided by the forward's count (with or without padding), GlobalAveragePool
//! over the whole plane. Windows come from [`WindowSpec`], as in the forward.

use ndarray::ArrayD;
use rayon::prelude::*;

use super::{GradCtx, GradRegistry, GradResult, array_of, check_shape, contiguous, grad_output};
use crate::engine::geometry::{Axis, WindowSpec, indices3, to3, valid_range};
use crate::engine::ops::{OpError, input_f32};
use crate::ir::TensorData;

pub fn register(registry: &mut GradRegistry) {
    registry.add("MaxPool", max_pool);
    registry.add("AveragePool", average_pool);
    registry.add("GlobalAveragePool", |ctx, inputs, _, grads| {
        global(ctx, inputs, grads, share_evenly)
    });
    registry.add("GlobalMaxPool", |ctx, inputs, _, grads| {
        global(ctx, inputs, grads, to_first_max)
    });
}

/// One axis of a window at output index `o`: the valid taps, the signed input start, and the
/// number of taps inside the padded extent (the forward's count with padding).
fn window(ax: &Axis, o: usize) -> ((usize, usize), isize, usize) {
    let start = (o * ax.stride) as isize - ax.pad_begin;
    let taps = valid_range(start, ax.dilation, ax.input, ax.kernel);
    let padded = (ax.input as isize + ax.pad_begin + ax.pad_end) as usize;
    let (plo, phi) = valid_range(start + ax.pad_begin, ax.dilation, padded, ax.kernel);
    (taps, start, phi - plo)
}

/// The input offsets (within a plane) of every valid tap of the window of output `o`, and the
/// padded count.
fn window_inputs(a: &[Axis; 3], o: [usize; 3], out: &mut Vec<usize>) -> usize {
    out.clear();
    let (td, sd, cd) = window(&a[0], o[0]);
    let (th, sh, ch) = window(&a[1], o[1]);
    let (tw, sw, cw) = window(&a[2], o[2]);
    for kd in td.0..td.1 {
        let id = (sd + (kd * a[0].dilation) as isize) as usize;
        for kh in th.0..th.1 {
            let ih = (sh + (kh * a[1].dilation) as isize) as usize;
            let row = (id * a[1].input + ih) * a[2].input;
            for kw in tw.0..tw.1 {
                out.push(row + (sw + (kw * a[2].dilation) as isize) as usize);
            }
        }
    }
    cd * ch * cw
}

/// X, the output gradient and the resolved window of a pooling node.
type Pooled<'a> = (&'a ArrayD<f32>, &'a ArrayD<f32>, [Axis; 3]);

/// Shared setup: X, the output gradient, the resolved window.
fn pooled<'a>(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&'a TensorData>],
    grads: &[Option<&'a ArrayD<f32>>],
) -> Result<Pooled<'a>, OpError> {
    let x = input_f32(inputs, 0)?;
    let g = grad_output(grads, 0)?;
    if x.ndim() < 3 || x.ndim() > 5 {
        return Err(OpError(format!(
            "pool input must be [N, C, spatial...] with 1 to 3 spatial dims, got {:?}",
            x.shape()
        )));
    }
    let axes = WindowSpec::pool(ctx.node, x.ndim() - 2)?.axes(&x.shape()[2..])?;
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(axes.iter().map(|a| a.output));
    check_shape("the output", g, &shape)?;
    Ok((x, g, to3(&axes)))
}

/// Runs `route(x plane, g plane, dx plane, windows)` over every (image, channel) plane.
fn per_plane(
    x: &ArrayD<f32>,
    g: &ArrayD<f32>,
    a: &[Axis; 3],
    route: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) -> Result<ArrayD<f32>, OpError> {
    let in_sz: usize = a.iter().map(|ax| ax.input).product();
    let out_sz: usize = a.iter().map(|ax| ax.output).product();
    let xs = contiguous(x);
    let gs = contiguous(g);
    let mut dx = vec![0.0f32; xs.len()];
    if in_sz > 0 && out_sz > 0 {
        dx.par_chunks_mut(in_sz)
            .zip(xs.par_chunks(in_sz))
            .zip(gs.par_chunks(out_sz))
            .for_each(|((d, xp), gp)| route(xp, gp, d));
    }
    array_of(x.shape(), dx)
}

/// Output positions of a plane in row-major order.
fn outputs(a: &[Axis; 3]) -> impl Iterator<Item = [usize; 3]> {
    indices3(a.each_ref().map(|axis| axis.output))
}

/// The gradient of a windowed pool: `route(axes, x plane, g plane, dx plane)` over every
/// (image, channel) plane; none when X's is not wanted.
fn windowed(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    grads: &[Option<&ArrayD<f32>>],
    route: impl Fn(&[Axis; 3], &[f32], &[f32], &mut [f32]) + Sync,
) -> GradResult {
    if !ctx.wants(0) {
        return Ok(vec![None]);
    }
    let (x, g, a) = pooled(ctx, inputs, grads)?;
    let dx = per_plane(x, g, &a, |xp, gp, d| route(&a, xp, gp, d))?;
    Ok(vec![Some(dx)])
}

fn max_pool(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    windowed(ctx, inputs, grads, |a, xp, gp, d| {
        let mut taps = Vec::new();
        for (o, pos) in outputs(a).enumerate() {
            window_inputs(a, pos, &mut taps);
            // The forward's choice: the first strictly larger value from −f32::MAX.
            let mut best = -f32::MAX;
            let mut best_i = None;
            for &i in &taps {
                if xp[i] > best {
                    best = xp[i];
                    best_i = Some(i);
                }
            }
            if let Some(i) = best_i {
                d[i] += gp[o];
            }
        }
    })
}

fn average_pool(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let include_pad = ctx.node.attr_int("count_include_pad", 0)? != 0;
    windowed(ctx, inputs, grads, |a, _, gp, d| {
        let mut taps = Vec::new();
        for (o, pos) in outputs(a).enumerate() {
            let padded = window_inputs(a, pos, &mut taps);
            let count = if include_pad { padded } else { taps.len() };
            if count == 0 {
                continue;
            }
            let share = gp[o] / count as f32;
            for &i in &taps {
                d[i] += share;
            }
        }
    })
}

/// Global pools: X [N, C, spatial...] → [N, C, 1, ...].
fn global(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    grads: &[Option<&ArrayD<f32>>],
    route: impl Fn(&[f32], f32, &mut [f32]) + Sync,
) -> GradResult {
    if !ctx.wants(0) {
        return Ok(vec![None]);
    }
    let x = input_f32(inputs, 0)?;
    let g = grad_output(grads, 0)?;
    if x.ndim() < 3 {
        return Err(OpError(format!(
            "global pool input must be [N, C, spatial...], got {:?}",
            x.shape()
        )));
    }
    let planes = x.shape()[0] * x.shape()[1];
    if g.len() != planes {
        return Err(OpError(format!(
            "gradient of shape {:?} does not fit the pooled input {:?}",
            g.shape(),
            x.shape()
        )));
    }
    let plane: usize = x.shape()[2..].iter().product();
    let xs = contiguous(x);
    let gs = contiguous(g);
    let mut dx = vec![0.0f32; xs.len()];
    if plane > 0 {
        dx.par_chunks_mut(plane)
            .zip(xs.par_chunks(plane))
            .zip(gs.par_iter())
            .for_each(|((d, xp), &gv)| route(xp, gv, d));
    }
    Ok(vec![Some(array_of(x.shape(), dx)?)])
}

/// GlobalAveragePool: every input of a plane gets an equal share of its gradient.
fn share_evenly(xp: &[f32], gv: f32, d: &mut [f32]) {
    let share = gv / xp.len() as f32;
    d.fill(share);
}

/// GlobalMaxPool: the plane's first largest input gets its gradient.
fn to_first_max(xp: &[f32], gv: f32, d: &mut [f32]) {
    let mut best = f32::NEG_INFINITY;
    let mut best_i = None;
    for (i, &v) in xp.iter().enumerate() {
        if v > best {
            best = v;
            best_i = Some(i);
        }
    }
    if let Some(i) = best_i {
        d[i] += gv;
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{Case, check, random};
    use ndarray::{ArrayD, IxDyn};

    /// Distinct values (a shuffled ramp) so every window has a clear maximum.
    fn distinct(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        let keys = random(&[n], seed, 0.0, 1.0);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| keys[[i]].total_cmp(&keys[[j]]));
        let mut v = vec![0.0f32; n];
        for (rank, &i) in order.iter().enumerate() {
            v[i] = rank as f32 * 0.1 - 1.0;
        }
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    #[test]
    fn max_pool_routes_to_the_maximum() {
        let cases = [
            Case::new("MaxPool")
                .attr_ints("kernel_shape", &[2, 2])
                .attr_ints("strides", &[2, 2]),
            Case::new("MaxPool")
                .attr_ints("kernel_shape", &[3, 3])
                .attr_ints("strides", &[2, 2])
                .attr_ints("pads", &[1, 1, 1, 1]),
            Case::new("MaxPool")
                .attr_ints("kernel_shape", &[2, 3])
                .attr_ints("dilations", &[2, 1])
                .attr_int("ceil_mode", 1)
                .attr_ints("strides", &[2, 2]),
        ];
        for case in cases {
            check(&case.input(distinct(&[2, 3, 7, 6], 1)), 2e-3);
        }
        check(
            &Case::new("GlobalMaxPool").input(distinct(&[2, 3, 4, 5], 2)),
            2e-3,
        );
    }

    #[test]
    fn average_pools_spread_over_the_window() {
        for include in [0, 1] {
            let case = Case::new("AveragePool")
                .attr_ints("kernel_shape", &[3, 3])
                .attr_ints("strides", &[2, 2])
                .attr_ints("pads", &[1, 1, 1, 1])
                .attr_int("count_include_pad", include)
                .input(random(&[2, 3, 7, 6], 3, -1.0, 1.0));
            check(&case, 2e-3);
        }
        let case = Case::new("AveragePool")
            .attr_ints("kernel_shape", &[2])
            .attr_int("ceil_mode", 1)
            .attr_ints("strides", &[2])
            .input(random(&[2, 3, 7], 4, -1.0, 1.0));
        check(&case, 2e-3);
        check(
            &Case::new("GlobalAveragePool").input(random(&[2, 3, 4, 5], 5, -1.0, 1.0)),
            2e-3,
        );
        check(
            &Case::new("GlobalAveragePool").input(random(&[2, 3, 3, 2, 2], 6, -1.0, 1.0)),
            2e-3,
        );
    }
}
