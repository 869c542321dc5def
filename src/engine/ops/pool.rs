//! Pooling: MaxPool (with optional Indices), AveragePool, GlobalAveragePool, GlobalMaxPool.
//! Windowed pools handle 1 to 3 spatial dims; every kernel runs in parallel over N×C planes.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::conv::{Axis, kernel_shape, to3, valid_range, window_axes};
use super::{OpCtx, OpError, OpResult, Registry, input_f32};
use crate::ir::TensorData;

pub fn register(registry: &mut Registry) {
    registry.add("MaxPool", max_pool_op);
    registry.add("AveragePool", average_pool_op);
    registry.add("GlobalAveragePool", global_average_pool_op);
    registry.add("GlobalMaxPool", global_max_pool_op);
}

/// Shared setup of windowed pools: the input (contiguous), planes, geometry, output shape.
struct Setup<'a> {
    x: std::borrow::Cow<'a, [f32]>,
    planes: usize,
    axes: [Axis; 3],
    shape: Vec<usize>,
}

fn setup<'a>(ctx: &OpCtx<'_>, x: &'a ArrayD<f32>, op: &str) -> Result<Setup<'a>, OpError> {
    let node = ctx.node;
    if x.ndim() < 3 || x.ndim() > 5 {
        return Err(OpError(format!(
            "{op} input must be [N, C, spatial...] with 1 to 3 spatial dims, got shape {:?}",
            x.shape()
        )));
    }
    let sp = x.ndim() - 2;
    let kernel = kernel_shape(node, sp, None)?;
    let ceil_mode = node.attr_int("ceil_mode", 0)? != 0;
    let axes = window_axes(node, &x.shape()[2..], &kernel, ceil_mode)?;
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(axes.iter().map(|a| a.output));
    let xs = match x.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    };
    Ok(Setup {
        x: xs,
        planes: x.shape()[0] * x.shape()[1],
        axes: to3(&axes),
        shape,
    })
}

/// Visits every output position of a plane in row-major order with the range of valid kernel
/// taps per axis and the (signed) input start per axis.
#[inline]
fn for_each_window(a: &[Axis; 3], mut f: impl FnMut(usize, [(usize, usize); 3], [isize; 3])) {
    let mut o = 0;
    for od in 0..a[0].output {
        let sd = (od * a[0].stride) as isize - a[0].pad_begin;
        let td = valid_range(sd, a[0].dilation, a[0].input, a[0].kernel);
        for oh in 0..a[1].output {
            let sh = (oh * a[1].stride) as isize - a[1].pad_begin;
            let th = valid_range(sh, a[1].dilation, a[1].input, a[1].kernel);
            for ow in 0..a[2].output {
                let sw = (ow * a[2].stride) as isize - a[2].pad_begin;
                let tw = valid_range(sw, a[2].dilation, a[2].input, a[2].kernel);
                f(o, [td, th, tw], [sd, sh, sw]);
                o += 1;
            }
        }
    }
}

// ---- MaxPool ---------------------------------------------------------------------------------

fn max_pool_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let s = setup(ctx, x, "MaxPool")?;
    let storage_order = ctx.node.attr_int("storage_order", 0)?;
    if storage_order != 0 && storage_order != 1 {
        return Err(OpError(format!(
            "storage_order must be 0 (row major) or 1 (column major), got {storage_order}"
        )));
    }
    // The executor expects one value per declared output, so Indices are computed whenever the
    // node declares a second output.
    let want_indices = ctx.node.outputs.len() > 1;
    let a = s.axes;
    let in_sz = a[0].input * a[1].input * a[2].input;
    let out_sz = a[0].output * a[1].output * a[2].output;
    let (d_in, h_in, w_in) = (a[0].input, a[1].input, a[2].input);
    let mut out = vec![0.0f32; s.planes * out_sz];
    let mut idx = vec![0i64; if want_indices { s.planes * out_sz } else { 0 }];
    if out_sz > 0 {
        let xs = &*s.x;
        let plane_fn = |p: usize, yo: &mut [f32], io: Option<&mut [i64]>| {
            let xp = &xs[p * in_sz..(p + 1) * in_sz];
            let base = (p * in_sz) as i64;
            let mut io = io;
            for_each_window(&a, |o, t, st| {
                let mut best = -f32::MAX;
                let mut best_i: i64 = -1;
                for kd in t[0].0..t[0].1 {
                    let id = (st[0] + (kd * a[0].dilation) as isize) as usize;
                    for kh in t[1].0..t[1].1 {
                        let ih = (st[1] + (kh * a[1].dilation) as isize) as usize;
                        let row = (id * h_in + ih) * w_in;
                        for kw in t[2].0..t[2].1 {
                            let iw = (st[2] + (kw * a[2].dilation) as isize) as usize;
                            let v = xp[row + iw];
                            if v > best {
                                best = v;
                                best_i = if storage_order == 0 {
                                    (row + iw) as i64
                                } else {
                                    ((iw * h_in + ih) * d_in + id) as i64
                                };
                            }
                        }
                    }
                }
                yo[o] = best;
                if let Some(io) = io.as_deref_mut() {
                    io[o] = if best_i >= 0 { base + best_i } else { -1 };
                }
            });
        };
        if want_indices {
            out.par_chunks_mut(out_sz)
                .zip(idx.par_chunks_mut(out_sz))
                .enumerate()
                .for_each(|(p, (yo, io))| plane_fn(p, yo, Some(io)));
        } else {
            out.par_chunks_mut(out_sz)
                .enumerate()
                .for_each(|(p, yo)| plane_fn(p, yo, None));
        }
    }
    let y = ArrayD::from_shape_vec(IxDyn(&s.shape), out).map_err(|e| OpError(e.to_string()))?;
    if want_indices {
        let i = ArrayD::from_shape_vec(IxDyn(&s.shape), idx).map_err(|e| OpError(e.to_string()))?;
        Ok(vec![y.into(), i.into()])
    } else {
        Ok(vec![y.into()])
    }
}

// ---- AveragePool -----------------------------------------------------------------------------

fn average_pool_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let s = setup(ctx, x, "AveragePool")?;
    let include_pad = ctx.node.attr_int("count_include_pad", 0)? != 0;
    let a = s.axes;
    let in_sz = a[0].input * a[1].input * a[2].input;
    let out_sz = a[0].output * a[1].output * a[2].output;
    let (h_in, w_in) = (a[1].input, a[2].input);
    let mut out = vec![0.0f32; s.planes * out_sz];
    if out_sz > 0 {
        let xs = &*s.x;
        out.par_chunks_mut(out_sz).enumerate().for_each(|(p, yo)| {
            let xp = &xs[p * in_sz..(p + 1) * in_sz];
            for_each_window(&a, |o, t, st| {
                let mut sum = 0.0f32;
                for kd in t[0].0..t[0].1 {
                    let id = (st[0] + (kd * a[0].dilation) as isize) as usize;
                    for kh in t[1].0..t[1].1 {
                        let ih = (st[1] + (kh * a[1].dilation) as isize) as usize;
                        let row = (id * h_in + ih) * w_in;
                        for kw in t[2].0..t[2].1 {
                            let iw = (st[2] + (kw * a[2].dilation) as isize) as usize;
                            sum += xp[row + iw];
                        }
                    }
                }
                let count = if include_pad {
                    // Taps inside the padded extent (windows reaching past the end padding in
                    // ceil mode are truncated there).
                    (0..3)
                        .map(|i| {
                            let ax = &a[i];
                            let limit = ax.input as isize + ax.pad_begin + ax.pad_end;
                            let (lo, hi) = valid_range(
                                st[i] + ax.pad_begin,
                                ax.dilation,
                                limit as usize,
                                ax.kernel,
                            );
                            hi - lo
                        })
                        .product::<usize>()
                } else {
                    (0..3).map(|i| t[i].1 - t[i].0).product::<usize>()
                };
                yo[o] = if count > 0 { sum / count as f32 } else { 0.0 };
            });
        });
    }
    let y = ArrayD::from_shape_vec(IxDyn(&s.shape), out).map_err(|e| OpError(e.to_string()))?;
    Ok(vec![y.into()])
}

// ---- global pools ----------------------------------------------------------------------------

fn global_pool(inputs: &[Option<&TensorData>], op: &str, reduce: fn(&[f32]) -> f32) -> OpResult {
    let x = input_f32(inputs, 0)?;
    if x.ndim() < 3 {
        return Err(OpError(format!(
            "{op} input must be [N, C, spatial...], got shape {:?}",
            x.shape()
        )));
    }
    let planes = x.shape()[0] * x.shape()[1];
    let plane: usize = x.shape()[2..].iter().product();
    let mut shape = x.shape().to_vec();
    for d in &mut shape[2..] {
        *d = 1;
    }
    if plane == 0 && planes > 0 {
        return Err(OpError(format!(
            "{op} over an empty spatial extent (input shape {:?})",
            x.shape()
        )));
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let mut out = vec![0.0f32; planes];
    if planes > 0 {
        out.par_iter_mut()
            .with_min_len((1usize << 14).div_ceil(plane).max(1))
            .enumerate()
            .for_each(|(p, y)| *y = reduce(&xs[p * plane..(p + 1) * plane]));
    }
    let y = ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| OpError(e.to_string()))?;
    Ok(vec![y.into()])
}

fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

fn mean(v: &[f32]) -> f32 {
    sum(v) / v.len() as f32
}

fn max(v: &[f32]) -> f32 {
    v.iter()
        .copied()
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

fn global_average_pool_op(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    global_pool(inputs, "GlobalAveragePool", mean)
}

fn global_max_pool_op(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    global_pool(inputs, "GlobalMaxPool", max)
}
