//! Pooling: MaxPool (with optional Indices), AveragePool, GlobalAveragePool, GlobalMaxPool.
//! Windowed pools handle 1 to 3 spatial dims; every kernel runs in parallel over N×C planes.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::{OpCtx, OpError, OpResult, Registry, checked_len, go_parallel, input_f32};
use crate::engine::buffers::{recycled, zeroed};
use crate::engine::geometry::{Axis, WindowSpec, to3, valid_range};
use crate::ir::TensorData;

#[cfg(test)]
mod tests;

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
    let axes = WindowSpec::pool(node, sp)?.axes(&x.shape()[2..])?;
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(axes.iter().map(|a| a.output));
    checked_len(&shape)?;
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
    // Per-column tap ranges, computed once per plane rather than per output.
    let wtab: Vec<((usize, usize), isize)> = (0..a[2].output)
        .map(|ow| {
            let sw = (ow * a[2].stride) as isize - a[2].pad_begin;
            (valid_range(sw, a[2].dilation, a[2].input, a[2].kernel), sw)
        })
        .collect();
    let mut o = 0;
    for od in 0..a[0].output {
        let sd = (od * a[0].stride) as isize - a[0].pad_begin;
        let td = valid_range(sd, a[0].dilation, a[0].input, a[0].kernel);
        for oh in 0..a[1].output {
            let sh = (oh * a[1].stride) as isize - a[1].pad_begin;
            let th = valid_range(sh, a[1].dilation, a[1].input, a[1].kernel);
            for &(tw, sw) in &wtab {
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
    if !want_indices {
        let out = separable_pool(&s.x, s.planes, &s.axes, Reduce::Max);
        let y = ArrayD::from_shape_vec(IxDyn(&s.shape), out).map_err(|e| OpError(e.to_string()))?;
        return Ok(vec![y.into()]);
    }
    let a = s.axes;
    let in_sz = a[0].input * a[1].input * a[2].input;
    let out_sz = a[0].output * a[1].output * a[2].output;
    let (d_in, h_in, w_in) = (a[0].input, a[1].input, a[2].input);
    let mut out = zeroed::<f32>(s.planes * out_sz);
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
    let out = separable_pool(&s.x, s.planes, &s.axes, Reduce::Avg { include_pad });
    let y = ArrayD::from_shape_vec(IxDyn(&s.shape), out).map_err(|e| OpError(e.to_string()))?;
    Ok(vec![y.into()])
}

#[derive(Clone, Copy)]
enum Reduce {
    Max,
    Avg { include_pad: bool },
}

/// Per output index of one axis: the valid tap range, the signed input start and the number
/// of taps inside the padded extent (windows reaching past the end padding in ceil mode are
/// truncated there).
fn axis_table(ax: &Axis) -> Vec<((usize, usize), isize, usize)> {
    let padded = (ax.input as isize + ax.pad_begin + ax.pad_end) as usize;
    (0..ax.output)
        .map(|o| {
            let start = (o * ax.stride) as isize - ax.pad_begin;
            let taps = valid_range(start, ax.dilation, ax.input, ax.kernel);
            let (plo, phi) = valid_range(start + ax.pad_begin, ax.dilation, padded, ax.kernel);
            (taps, start, phi - plo)
        })
        .collect()
}

/// The common 2×2, stride-2 pool of 2-D planes with every window inside the input (no
/// padding reached, no dilation): a direct pass without per-row tables, otherwise exactly
/// `separable_pool` (the same operations in the same order). None for other geometries.
fn pool_2x2(xs: &[f32], planes: usize, a: &[Axis; 3], reduce: Reduce) -> Option<Vec<f32>> {
    let [ad, ah, aw] = a;
    let halves = |x: &Axis| {
        x.kernel == 2
            && x.stride == 2
            && x.dilation == 1
            && x.pad_begin == 0
            && 2 * x.output <= x.input
    };
    if !(*ad == Axis::TRIVIAL && halves(ah) && halves(aw)) {
        return None;
    }
    let (w_in, in_sz) = (aw.input, ah.input * aw.input);
    let (ow_n, out_sz) = (aw.output, ah.output * aw.output);
    // Every element is written below.
    let mut out = recycled::<f32>(planes * out_sz);
    if out_sz == 0 {
        return Some(out);
    }
    let plane = |xp: &[f32], yp: &mut [f32]| {
        for (r, yrow) in yp.chunks_exact_mut(ow_n).enumerate() {
            let row0 = &xp[2 * r * w_in..][..2 * ow_n];
            let row1 = &xp[(2 * r + 1) * w_in..][..2 * ow_n];
            let windows = yrow
                .iter_mut()
                .zip(row0.chunks_exact(2).zip(row1.chunks_exact(2)));
            match reduce {
                Reduce::Max => {
                    let sel = |t: f32, v: f32| if v > t { v } else { t };
                    let init = -f32::MAX;
                    for (y, (p0, p1)) in windows {
                        let t0 = sel(sel(init, p0[0]), p1[0]);
                        let t1 = sel(sel(init, p0[1]), p1[1]);
                        *y = sel(sel(init, t0), t1);
                    }
                }
                Reduce::Avg { .. } => {
                    // Every window holds 4 inputs, padding counted or not.
                    for (y, (p0, p1)) in windows {
                        let t0 = 0.0 + p0[0] + p1[0];
                        let t1 = 0.0 + p0[1] + p1[1];
                        *y = (0.0 + t0 + t1) / 4.0;
                    }
                }
            }
        }
    };
    if go_parallel(planes * in_sz) {
        out.par_chunks_mut(out_sz)
            .zip(xs.par_chunks(in_sz))
            .with_min_len((1usize << 14).div_ceil(in_sz))
            .for_each(|(yp, xp)| plane(xp, yp));
    } else {
        for (yp, xp) in out.chunks_mut(out_sz).zip(xs.chunks(in_sz)) {
            plane(xp, yp);
        }
    }
    Some(out)
}

/// Max or average pooling without indices, separably per output row: the valid input rows of
/// the window are first reduced elementwise into one row (vectorizable), then each output
/// reduces its taps along that row. Parallel over planes.
fn separable_pool(xs: &[f32], planes: usize, a: &[Axis; 3], reduce: Reduce) -> Vec<f32> {
    pool_2x2(xs, planes, a, reduce).unwrap_or_else(|| pool_rows(xs, planes, a, reduce))
}

/// `separable_pool` for any geometry.
fn pool_rows(xs: &[f32], planes: usize, a: &[Axis; 3], reduce: Reduce) -> Vec<f32> {
    let in_sz = a[0].input * a[1].input * a[2].input;
    let out_sz = a[0].output * a[1].output * a[2].output;
    let (h_in, w_in) = (a[1].input, a[2].input);
    let ow_n = a[2].output;
    let mut out = zeroed::<f32>(planes * out_sz);
    if out_sz == 0 {
        return out;
    }
    let [dt, ht, wt] = [axis_table(&a[0]), axis_table(&a[1]), axis_table(&a[2])];
    let is_max = matches!(reduce, Reduce::Max);
    let init = if is_max { -f32::MAX } else { 0.0 };
    let (dd, dh, dw) = (a[0].dilation, a[1].dilation, a[2].dilation);
    out.par_chunks_mut(out_sz)
        .with_min_len((1usize << 12).div_ceil(out_sz).max(1))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; w_in],
            |tmp, (p, yo)| {
                let xp = &xs[p * in_sz..(p + 1) * in_sz];
                for (r, yrow) in yo.chunks_mut(ow_n).enumerate() {
                    let (od, oh) = (r / a[1].output, r % a[1].output);
                    let ((dlo, dhi), sd, dpad) = dt[od];
                    let ((hlo, hhi), sh, hpad) = ht[oh];
                    tmp.fill(init);
                    for kd in dlo..dhi {
                        let id = (sd + (kd * dd) as isize) as usize;
                        for kh in hlo..hhi {
                            let ih = (sh + (kh * dh) as isize) as usize;
                            let row = &xp[(id * h_in + ih) * w_in..(id * h_in + ih + 1) * w_in];
                            if is_max {
                                // Select form (unconditional store) so this compiles to
                                // vector max instructions.
                                for (t, &v) in tmp.iter_mut().zip(row) {
                                    *t = if v > *t { v } else { *t };
                                }
                            } else {
                                for (t, &v) in tmp.iter_mut().zip(row) {
                                    *t += v;
                                }
                            }
                        }
                    }
                    let rows_valid = (dhi - dlo) * (hhi - hlo);
                    for (y, &((wlo, whi), sw, wpad)) in yrow.iter_mut().zip(&wt) {
                        let mut acc = init;
                        for kw in wlo..whi {
                            let v = tmp[(sw + (kw * dw) as isize) as usize];
                            if is_max {
                                acc = if v > acc { v } else { acc };
                            } else {
                                acc += v;
                            }
                        }
                        *y = match reduce {
                            Reduce::Max => acc,
                            Reduce::Avg { include_pad } => {
                                let count = if include_pad {
                                    dpad * hpad * wpad
                                } else {
                                    rows_valid * (whi - wlo)
                                };
                                if count > 0 { acc / count as f32 } else { 0.0 }
                            }
                        };
                    }
                }
            },
        );
    out
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
    if go_parallel(xs.len()) {
        out.par_iter_mut()
            .with_min_len((1usize << 14).div_ceil(plane).max(1))
            .enumerate()
            .for_each(|(p, y)| *y = reduce(&xs[p * plane..(p + 1) * plane]));
    } else {
        for (p, y) in out.iter_mut().enumerate() {
            *y = reduce(&xs[p * plane..(p + 1) * plane]);
        }
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
