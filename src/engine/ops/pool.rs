//! Pooling: MaxPool (with optional Indices), AveragePool, GlobalAveragePool, GlobalMaxPool.
//! Windowed pools handle 1 to 3 spatial dims; every kernel runs in parallel over N×C planes.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::conv::{Axis, kernel_shape, to3, valid_range, window_axes};
use super::{OpCtx, OpError, OpResult, Registry, checked_len, go_parallel, input_f32};
use crate::engine::buffers::{recycled, zeroed};
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

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::super::testutil::{Rng, assert_arrays_close, err, ints, node, run_arrays, run1};
    use crate::ir::Attribute;

    fn seq(shape: &[usize]) -> ArrayD<f32> {
        let n = shape.iter().product::<usize>();
        ArrayD::from_shape_vec(IxDyn(shape), (1..=n).map(|v| v as f32).collect()).unwrap()
    }

    fn vals(a: &ArrayD<f32>) -> Vec<f32> {
        a.iter().copied().collect()
    }

    #[test]
    fn onnx_doc_examples() {
        let x = seq(&[1, 1, 4, 4]);
        let attrs = || {
            vec![
                ("kernel_shape", ints(&[3, 3])),
                ("strides", ints(&[2, 2])),
                ("ceil_mode", Attribute::Int(1)),
            ]
        };
        let y = run1(&node("MaxPool", 1, 1, attrs()), &[Some(&x)]);
        assert_eq!(vals(&y), [11., 12., 15., 16.]);
        let y = run1(&node("AveragePool", 1, 1, attrs()), &[Some(&x)]);
        assert_eq!(vals(&y), [6., 7.5, 12., 13.5]);

        let x = seq(&[1, 1, 5, 5]);
        let out = run_arrays(
            &node(
                "MaxPool",
                1,
                2,
                vec![
                    ("kernel_shape", ints(&[5, 5])),
                    ("pads", ints(&[2, 2, 2, 2])),
                ],
            ),
            &[Some(&x)],
        )
        .unwrap();
        let y: Vec<f32> = out[0].as_f32().unwrap().iter().copied().collect();
        let z: Vec<i64> = out[1].as_i64().unwrap().iter().copied().collect();
        let row = |a: f32| vec![a, a + 1., a + 2., a + 2., a + 2.];
        let want_y: Vec<f32> = [13., 18., 23., 23., 23.]
            .iter()
            .flat_map(|&a| row(a))
            .collect();
        assert_eq!(y, want_y);
        assert_eq!(z, want_y.iter().map(|&v| v as i64 - 1).collect::<Vec<_>>());

        let out = run_arrays(
            &node(
                "MaxPool",
                1,
                2,
                vec![
                    ("kernel_shape", ints(&[2, 2])),
                    ("strides", ints(&[2, 2])),
                    ("storage_order", Attribute::Int(1)),
                ],
            ),
            &[Some(&x)],
        )
        .unwrap();
        assert_eq!(vals(out[0].as_f32().unwrap()), [7., 9., 17., 19.]);
        assert_eq!(
            out[1].as_i64().unwrap().iter().copied().collect::<Vec<_>>(),
            [6, 16, 8, 18]
        );
    }

    struct Geo {
        k: Vec<usize>,
        s: Vec<usize>,
        d: Vec<usize>,
        pb: Vec<usize>,
        pe: Vec<usize>,
        out: Vec<usize>,
    }

    /// Naive pooling of one plane `xp` with spatial dims `sh` (1 to 3 of them); returns
    /// (max value, argmax within plane, average) per output position.
    fn pool_ref(xp: &[f32], sh: &[usize], g: &Geo, include_pad: bool) -> Vec<(f32, i64, f32)> {
        let sp = sh.len();
        let total: usize = g.out.iter().product();
        let mut res = Vec::new();
        for o in 0..total {
            // Unravel the output index.
            let mut oi = vec![0; sp];
            let mut r = o;
            for i in (0..sp).rev() {
                oi[i] = r % g.out[i];
                r /= g.out[i];
            }
            let taps: usize = g.k.iter().product();
            let (mut best, mut arg, mut sum, mut cnt, mut cnt_pad) =
                (f32::NEG_INFINITY, -1i64, 0.0f64, 0usize, 0usize);
            for t in 0..taps {
                let mut ki = vec![0; sp];
                let mut r = t;
                for i in (0..sp).rev() {
                    ki[i] = r % g.k[i];
                    r /= g.k[i];
                }
                let pos: Vec<isize> = (0..sp)
                    .map(|i| (oi[i] * g.s[i] + ki[i] * g.d[i]) as isize - g.pb[i] as isize)
                    .collect();
                if (0..sp).all(|i| pos[i] < (sh[i] + g.pe[i]) as isize) {
                    cnt_pad += 1;
                }
                if (0..sp).any(|i| pos[i] < 0 || pos[i] >= sh[i] as isize) {
                    continue;
                }
                let mut flat = 0usize;
                for i in 0..sp {
                    flat = flat * sh[i] + pos[i] as usize;
                }
                let v = xp[flat];
                if v > best {
                    best = v;
                    arg = flat as i64;
                }
                sum += v as f64;
                cnt += 1;
            }
            let avg = sum / if include_pad { cnt_pad } else { cnt } as f64;
            res.push((best, arg, avg as f32));
        }
        res
    }

    /// The 2×2 stride-2 fast path gives bit-identical results to the general row pass,
    /// including NaN, infinities and signed zeros, for max and both average modes.
    #[test]
    fn pool_2x2_matches_rows() {
        use super::super::conv::{Axis, to3};
        use super::{Reduce, pool_2x2, pool_rows};
        let mut rng = Rng::new(17);
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            -f32::MAX,
        ];
        for (h, w, pad_end) in [(8, 8, 0), (7, 9, 0), (2, 2, 0), (5, 4, 1), (3, 6, 0)] {
            let axis = |input: usize| Axis {
                input,
                kernel: 2,
                stride: 2,
                dilation: 1,
                pad_begin: 0,
                pad_end,
                output: (input + pad_end as usize - 2) / 2 + 1,
            };
            let a = to3(&[axis(h), axis(w)]);
            let planes = 3;
            let xs: Vec<f32> = (0..planes * h * w)
                .map(|i| {
                    let v = rng.f32();
                    if i % 3 == 0 {
                        special[(i / 3) % special.len()]
                    } else {
                        v
                    }
                })
                .collect();
            for reduce in [
                Reduce::Max,
                Reduce::Avg { include_pad: false },
                Reduce::Avg { include_pad: true },
            ] {
                let fast = pool_2x2(&xs, planes, &a, reduce);
                let inside = 2 * a[1].output <= h && 2 * a[2].output <= w;
                assert_eq!(fast.is_some(), inside, "{h}x{w} pad_end {pad_end}");
                if let Some(fast) = fast {
                    let rows = pool_rows(&xs, planes, &a, reduce);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fast), bits(&rows), "{h}x{w}");
                }
            }
        }
    }

    #[test]
    fn pools_random_against_naive() {
        let mut rng = Rng::new(17);
        for case in 0..200 {
            let sp = 1 + case % 3;
            let k: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
            let s: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
            let d: Vec<usize> = (0..sp)
                .map(|_| if case % 4 == 0 { rng.range(1, 2) } else { 1 })
                .collect();
            let pb: Vec<usize> = (0..sp).map(|i| rng.range(0, k[i] / 2)).collect();
            let pe: Vec<usize> = (0..sp).map(|i| rng.range(0, k[i] / 2)).collect();
            let sh: Vec<usize> = (0..sp)
                .map(|i| rng.range(d[i] * (k[i] - 1) + 1, if sp == 3 { 6 } else { 10 }))
                .collect();
            let ceil = case % 2 == 1;
            let include_pad = (case / 2) % 2 == 1;
            let auto = match case % 7 {
                5 => "SAME_UPPER",
                6 => "SAME_LOWER",
                _ => "NOTSET",
            };
            let mut g = Geo {
                k: k.clone(),
                s: s.clone(),
                d: d.clone(),
                pb: pb.clone(),
                pe: pe.clone(),
                out: vec![],
            };
            for i in 0..sp {
                let span = d[i] * (k[i] - 1) + 1;
                if auto == "NOTSET" {
                    let room = sh[i] + pb[i] + pe[i] - span;
                    let mut o = if ceil {
                        room.div_ceil(s[i]) + 1
                    } else {
                        room / s[i] + 1
                    };
                    if ceil && (o - 1) * s[i] >= sh[i] + pb[i] {
                        o -= 1;
                    }
                    g.out.push(o);
                } else {
                    let o = sh[i].div_ceil(s[i]);
                    let total = ((o - 1) * s[i] + span).saturating_sub(sh[i]);
                    let small = total / 2;
                    let (b, e) = if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    g.pb[i] = b;
                    g.pe[i] = e;
                    g.out.push(o);
                }
            }
            let (n, c) = (rng.range(1, 2), rng.range(1, 3));
            let mut xshape = vec![n, c];
            xshape.extend(&sh);
            let x = rng.array(&xshape);
            let mut pads = pb.clone();
            pads.extend(&pe);
            let attrs = |avg: bool| {
                let mut a = vec![
                    (
                        "kernel_shape",
                        Attribute::Ints(k.iter().map(|&v| v as i64).collect()),
                    ),
                    (
                        "strides",
                        Attribute::Ints(s.iter().map(|&v| v as i64).collect()),
                    ),
                    ("ceil_mode", Attribute::Int(ceil as i64)),
                    ("auto_pad", Attribute::String(auto.into())),
                ];
                if d.iter().any(|&v| v != 1) || case % 3 == 0 {
                    a.push((
                        "dilations",
                        Attribute::Ints(d.iter().map(|&v| v as i64).collect()),
                    ));
                }
                if auto == "NOTSET" {
                    a.push((
                        "pads",
                        Attribute::Ints(pads.iter().map(|&v| v as i64).collect()),
                    ));
                }
                if avg {
                    a.push(("count_include_pad", Attribute::Int(include_pad as i64)));
                }
                a
            };
            let out = run_arrays(&node("MaxPool", 1, 2, attrs(false)), &[Some(&x)]).unwrap();
            let avg = run1(&node("AveragePool", 1, 1, attrs(true)), &[Some(&x)]);
            let mut oshape = vec![n, c];
            oshape.extend(&g.out);
            let plane_in: usize = sh.iter().product();
            let (mut wy, mut wz, mut wa) = (vec![], vec![], vec![]);
            for p in 0..n * c {
                let xs: Vec<f32> = x.iter().copied().collect();
                for (m, i, a) in
                    pool_ref(&xs[p * plane_in..(p + 1) * plane_in], &sh, &g, include_pad)
                {
                    wy.push(m);
                    wz.push((p * plane_in) as i64 + i);
                    wa.push(a);
                }
            }
            let what = format!(
                "pool x{xshape:?} k{k:?} s{s:?} d{d:?} pads{pads:?} ceil {ceil} {auto} incl {include_pad}"
            );
            let wy = ArrayD::from_shape_vec(IxDyn(&oshape), wy).unwrap();
            let wa = ArrayD::from_shape_vec(IxDyn(&oshape), wa).unwrap();
            assert_arrays_close(out[0].as_f32().unwrap(), &wy, 0.0, &what);
            let y1 = run1(&node("MaxPool", 1, 1, attrs(false)), &[Some(&x)]);
            assert_arrays_close(&y1, &wy, 0.0, &format!("{what} (no indices)"));
            assert_eq!(
                out[1].as_i64().unwrap().iter().copied().collect::<Vec<_>>(),
                wz,
                "{what}"
            );
            assert_arrays_close(&avg, &wa, 1e-6, &what);
        }
    }

    #[test]
    fn global_pools() {
        let mut rng = Rng::new(2);
        for shape in [
            vec![2, 3, 5, 7],
            vec![1, 4, 9],
            vec![2, 2, 3, 2, 4],
            vec![1, 1, 1000],
        ] {
            let x = rng.array(&shape);
            let ga = run1(&node("GlobalAveragePool", 1, 1, vec![]), &[Some(&x)]);
            let gm = run1(&node("GlobalMaxPool", 1, 1, vec![]), &[Some(&x)]);
            let mut oshape = shape.clone();
            oshape[2..].iter_mut().for_each(|d| *d = 1);
            let plane: usize = shape[2..].iter().product();
            let xs: Vec<f32> = x.iter().copied().collect();
            let mean: Vec<f32> = xs
                .chunks(plane)
                .map(|c| (c.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32)
                .collect();
            let max: Vec<f32> = xs
                .chunks(plane)
                .map(|c| c.iter().copied().fold(f32::MIN, f32::max))
                .collect();
            assert_arrays_close(
                &ga,
                &ArrayD::from_shape_vec(IxDyn(&oshape), mean).unwrap(),
                1e-5,
                "gap",
            );
            assert_arrays_close(
                &gm,
                &ArrayD::from_shape_vec(IxDyn(&oshape), max).unwrap(),
                0.0,
                "gmp",
            );
        }
    }

    #[test]
    fn pool_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 2, 4, 4]));
        let msg = err(&node("MaxPool", 1, 1, vec![]), &[Some(&x)]);
        assert!(msg.contains("kernel_shape"), "{msg}");
        let msg = err(
            &node("MaxPool", 1, 1, vec![("kernel_shape", ints(&[5, 5]))]),
            &[Some(&x)],
        );
        assert!(msg.contains("larger than the padded input"), "{msg}");
        let msg = err(
            &node(
                "AveragePool",
                1,
                1,
                vec![("kernel_shape", ints(&[2, 2])), ("strides", ints(&[0, 1]))],
            ),
            &[Some(&x)],
        );
        assert!(msg.contains("strides"), "{msg}");
        let msg = err(
            &node(
                "AveragePool",
                1,
                1,
                vec![("kernel_shape", ints(&[2, 2])), ("pads", ints(&[1, 1]))],
            ),
            &[Some(&x)],
        );
        assert!(msg.contains("pads"), "{msg}");
        let msg = err(
            &node("MaxPool", 1, 1, vec![("kernel_shape", ints(&[2]))]),
            &[Some(&x)],
        );
        assert!(msg.contains("kernel_shape"), "{msg}");
        let x2 = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let msg = err(&node("GlobalAveragePool", 1, 1, vec![]), &[Some(&x2)]);
        assert!(msg.contains("[N, C"), "{msg}");
        let msg = err(
            &node("MaxPool", 1, 1, vec![("kernel_shape", ints(&[1]))]),
            &[Some(&x2)],
        );
        assert!(msg.contains("[N, C"), "{msg}");
    }
}
