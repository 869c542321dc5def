//! Backward of Conv (1 to 3 spatial dims; grouped, depthwise, strided, padded, dilated), its
//! window read through [`WindowSpec`] exactly as the forward reads it.
//!
//! Per image and group, with `col` the im2col matrix of the input [Cg·kk, P] and G the output
//! gradient [Mg, P]: dW_g += G·colᵀ and dcol = W_gᵀ·G, scattered back by col2im into dX;
//! dB = Σ G over images and positions. Convolutions with one input channel per group
//! (depthwise, and the first layer of a grayscale network) run as direct loops over the taps.
//! Images run in parallel; each worker sums its own weight gradient and the sums are added.

use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, linalg::general_mat_mul};
use rayon::prelude::*;

use super::{
    GradCtx, GradRegistry, GradResult, Grads, array_of, check_shape, contiguous, grad_output,
};
use crate::engine::geometry::{Axis, WindowSpec, indices3, to3, valid_range};
use crate::engine::ops::{OpError, input_f32, optional};
use crate::ir::TensorData;

pub fn register(registry: &mut GradRegistry) {
    registry.add("Conv", conv);
}

/// Geometry of one convolution, resolved for its input.
#[derive(Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    a: [Axis; 3],
    in_sz: usize,
    out_sz: usize,
    kk: usize,
}

impl Geometry {
    fn cg(&self) -> usize {
        self.c / self.group
    }
    fn mg(&self) -> usize {
        self.m / self.group
    }
    fn kc(&self) -> usize {
        self.cg() * self.kk
    }
    /// 1×1 kernel, stride 1, no padding: the input planes are the im2col matrix.
    fn pointwise(&self) -> bool {
        self.kk == 1
            && self
                .a
                .iter()
                .all(|ax| ax.stride == 1 && ax.pad_begin == 0 && ax.pad_end == 0)
    }
}

fn conv(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let x = input_f32(inputs, 0)?;
    let w = input_f32(inputs, 1)?;
    let g = grad_output(grads, 0)?;
    if x.ndim() < 3 || x.ndim() > 5 || w.ndim() != x.ndim() {
        return Err(OpError(format!(
            "Conv needs X [N, C, spatial...] and W of the same rank (1 to 3 spatial dims), got {:?} and {:?}",
            x.shape(),
            w.shape()
        )));
    }
    let spec = WindowSpec::conv(ctx.node, &w.shape()[2..])?;
    let axes = spec.axes(&x.shape()[2..])?;
    let a = to3(&axes);
    let (n, c, m) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let group = spec.group;
    if w.shape()[1] * group != c || m % group != 0 {
        return Err(OpError(format!(
            "input channels {c} and weight {:?} do not fit group {group}",
            w.shape()
        )));
    }
    let mut out_shape = vec![n, m];
    out_shape.extend(axes.iter().map(|ax| ax.output));
    check_shape("the output", g, &out_shape)?;
    let geo = Geometry {
        n,
        c,
        m,
        group,
        a,
        in_sz: a.iter().map(|ax| ax.input).product(),
        out_sz: a.iter().map(|ax| ax.output).product(),
        kk: a.iter().map(|ax| ax.kernel).product(),
    };
    let xs = contiguous(x);
    let ws = contiguous(w);
    let gs = contiguous(g);
    let (want_x, want_w, want_b) = (ctx.wants(0), ctx.wants(1), ctx.wants(2));
    let (dx, dw) = if geo.cg() == 1 {
        direct(&geo, &xs, &ws, &gs, want_x, want_w)
    } else {
        by_gemm(&geo, &xs, &ws, &gs, want_x, want_w)
    };
    let mut out: Grads = vec![None, None, None];
    if want_x {
        out[0] = Some(array_of(x.shape(), dx)?);
    }
    if want_w {
        out[1] = Some(array_of(w.shape(), dw)?);
    }
    if want_b && optional(inputs, 2).is_some() {
        let mut db = vec![0.0f64; m];
        for (p, plane) in gs.chunks(geo.out_sz.max(1)).enumerate() {
            db[p % m] += plane.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        out[2] = Some(array_of(&[m], db.into_iter().map(|v| v as f32).collect())?);
    }
    Ok(out)
}

/// Runs `work(image, dx of that image or None, weight-gradient accumulator)` over the images in
/// parallel and returns (dX, dW).
fn over_images(
    geo: &Geometry,
    want_x: bool,
    want_w: bool,
    work: impl Fn(usize, Option<&mut [f32]>, &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let w_len = if want_w { geo.m * geo.kc() } else { 0 };
    let image = geo.c * geo.in_sz;
    let add = |mut a: Vec<f32>, b: Vec<f32>| {
        for (x, y) in a.iter_mut().zip(&b) {
            *x += y;
        }
        a
    };
    if want_x {
        let mut dx = vec![0.0f32; geo.n * image];
        let dw = dx
            .par_chunks_mut(image.max(1))
            .enumerate()
            .fold(
                || vec![0.0f32; w_len],
                |mut acc, (ni, dxn)| {
                    work(ni, Some(dxn), &mut acc);
                    acc
                },
            )
            .reduce(|| vec![0.0f32; w_len], add);
        (dx, dw)
    } else {
        let dw = (0..geo.n)
            .into_par_iter()
            .fold(
                || vec![0.0f32; w_len],
                |mut acc, ni| {
                    work(ni, None, &mut acc);
                    acc
                },
            )
            .reduce(|| vec![0.0f32; w_len], add);
        (Vec::new(), dw)
    }
}

/// Calls `f(input offset, output offset)` for every valid (input, output) position pair of
/// kernel tap (kd, kh, kw), in row-major order of the outputs.
#[inline]
fn for_tap(a: &[Axis; 3], k: [usize; 3], mut f: impl FnMut(usize, usize)) {
    let [ad, ah, aw] = a;
    let (offd, offh, offw) = (
        ad.tap_offset(k[0]),
        ah.tap_offset(k[1]),
        aw.tap_offset(k[2]),
    );
    let (dlo, dhi) = valid_range(offd, ad.stride, ad.input, ad.output);
    let (hlo, hhi) = valid_range(offh, ah.stride, ah.input, ah.output);
    let (wlo, whi) = valid_range(offw, aw.stride, aw.input, aw.output);
    for od in dlo..dhi {
        let id = (od as isize * ad.stride as isize + offd) as usize;
        for oh in hlo..hhi {
            let ih = (oh as isize * ah.stride as isize + offh) as usize;
            let orow = (od * ah.output + oh) * aw.output;
            let irow = (id * ah.input + ih) * aw.input;
            for ow in wlo..whi {
                let iw = (ow as isize * aw.stride as isize + offw) as usize;
                f(irow + iw, orow + ow);
            }
        }
    }
}

/// The kernel taps in weight order.
fn taps(a: &[Axis; 3]) -> impl Iterator<Item = [usize; 3]> {
    indices3(a.each_ref().map(|axis| axis.kernel))
}

/// One input channel per group: direct loops over the taps of each output plane.
fn direct(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    want_x: bool,
    want_w: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (in_sz, out_sz, kk, mg) = (geo.in_sz, geo.out_sz, geo.kk, geo.mg());
    over_images(geo, want_x, want_w, |ni, mut dxn, dw| {
        for mi in 0..geo.m {
            let ci = mi / mg;
            let xp = &x[(ni * geo.c + ci) * in_sz..(ni * geo.c + ci + 1) * in_sz];
            let gp = &g[(ni * geo.m + mi) * out_sz..(ni * geo.m + mi + 1) * out_sz];
            for (t, k) in taps(&geo.a).enumerate() {
                if want_w {
                    let mut acc = 0.0f32;
                    for_tap(&geo.a, k, |i, o| acc += gp[o] * xp[i]);
                    dw[mi * kk + t] += acc;
                }
                if let Some(dxn) = dxn.as_deref_mut() {
                    let wv = w[mi * kk + t];
                    let dxp = &mut dxn[ci * in_sz..(ci + 1) * in_sz];
                    for_tap(&geo.a, k, |i, o| dxp[i] += wv * gp[o]);
                }
            }
        }
    })
}

/// im2col of one group's input planes `x` [Cg, D, H, W] into `col` [Cg·kk, P] (zeroed first).
fn im2col(x: &[f32], geo: &Geometry, col: &mut [f32]) {
    col.fill(0.0);
    let (in_sz, out_sz, kk) = (geo.in_sz, geo.out_sz, geo.kk);
    for ci in 0..geo.cg() {
        let plane = &x[ci * in_sz..(ci + 1) * in_sz];
        for (t, k) in taps(&geo.a).enumerate() {
            let row = &mut col[(ci * kk + t) * out_sz..(ci * kk + t + 1) * out_sz];
            for_tap(&geo.a, k, |i, o| row[o] = plane[i]);
        }
    }
}

/// The adjoint of [`im2col`]: adds `col` [Cg·kk, P] into the planes `dx` [Cg, D, H, W].
fn col2im(col: &[f32], geo: &Geometry, dx: &mut [f32]) {
    let (in_sz, out_sz, kk) = (geo.in_sz, geo.out_sz, geo.kk);
    for ci in 0..geo.cg() {
        let plane = &mut dx[ci * in_sz..(ci + 1) * in_sz];
        for (t, k) in taps(&geo.a).enumerate() {
            let row = &col[(ci * kk + t) * out_sz..(ci * kk + t + 1) * out_sz];
            for_tap(&geo.a, k, |i, o| plane[i] += row[o]);
        }
    }
}

fn mat(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), data).expect("matrix fits its slice")
}

fn mat_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("matrix fits its slice")
}

/// Several input channels per group: im2col and two products per (image, group).
fn by_gemm(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    want_x: bool,
    want_w: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (cg, mg, kc, p) = (geo.cg(), geo.mg(), geo.kc(), geo.out_sz);
    let pointwise = geo.pointwise();
    over_images(geo, want_x, want_w, |ni, mut dxn, dw| {
        let mut col = if pointwise {
            Vec::new()
        } else {
            vec![0.0f32; kc * p]
        };
        let mut dcol = if pointwise || !want_x {
            Vec::new()
        } else {
            vec![0.0f32; kc * p]
        };
        for gi in 0..geo.group {
            let xg =
                &x[(ni * geo.c + gi * cg) * geo.in_sz..(ni * geo.c + (gi + 1) * cg) * geo.in_sz];
            let gg = mat(
                &g[(ni * geo.m + gi * mg) * p..(ni * geo.m + (gi + 1) * mg) * p],
                mg,
                p,
            );
            let colm = if pointwise {
                mat(xg, kc, p)
            } else {
                im2col(xg, geo, &mut col);
                mat(&col, kc, p)
            };
            if want_w {
                let mut dwg = mat_mut(&mut dw[gi * mg * kc..(gi + 1) * mg * kc], mg, kc);
                general_mat_mul(1.0, &gg, &colm.t(), 1.0, &mut dwg);
            }
            if let Some(dxn) = dxn.as_deref_mut() {
                let wg = mat(&w[gi * mg * kc..(gi + 1) * mg * kc], mg, kc);
                let dxg = &mut dxn[gi * cg * geo.in_sz..(gi + 1) * cg * geo.in_sz];
                if pointwise {
                    let mut d = mat_mut(dxg, kc, p);
                    general_mat_mul(1.0, &wg.t(), &gg, 1.0, &mut d);
                } else {
                    let mut d = mat_mut(&mut dcol, kc, p);
                    general_mat_mul(1.0, &wg.t(), &gg, 0.0, &mut d);
                    col2im(&dcol, geo, dxg);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::check::{Case, check, random};

    fn conv_case(x: &[usize], w: &[usize], bias: bool) -> Case {
        let mut case = Case::new("Conv")
            .input(random(x, 1, -1.0, 1.0))
            .input(random(w, 2, -1.0, 1.0));
        if bias {
            case = case.input(random(&[w[0]], 3, -1.0, 1.0));
        }
        case
    }

    #[test]
    fn plain_padded_strided_dilated_2d() {
        check(&conv_case(&[2, 3, 5, 6], &[4, 3, 3, 3], true), 2e-3);
        check(
            &conv_case(&[2, 3, 5, 6], &[4, 3, 3, 3], true).attr_ints("pads", &[1, 1, 1, 1]),
            2e-3,
        );
        check(
            &conv_case(&[1, 2, 7, 8], &[3, 2, 3, 2], false)
                .attr_ints("strides", &[2, 3])
                .attr_ints("pads", &[1, 0, 2, 1]),
            2e-3,
        );
        check(
            &conv_case(&[2, 2, 9, 9], &[3, 2, 3, 3], true)
                .attr_ints("dilations", &[2, 2])
                .attr_ints("pads", &[2, 2, 2, 2]),
            2e-3,
        );
        check(
            &conv_case(&[1, 2, 7, 6], &[2, 2, 3, 3], true)
                .attr_str("auto_pad", "SAME_UPPER")
                .attr_ints("strides", &[2, 2]),
            2e-3,
        );
    }

    #[test]
    fn grouped_depthwise_and_pointwise() {
        // Grouped: 4 input channels in 2 groups, 6 outputs.
        check(
            &conv_case(&[2, 4, 5, 5], &[6, 2, 3, 3], true)
                .attr_int("group", 2)
                .attr_ints("pads", &[1, 1, 1, 1]),
            2e-3,
        );
        // Depthwise with stride, and with a channel multiplier of 2.
        check(
            &conv_case(&[2, 3, 6, 6], &[3, 1, 3, 3], true)
                .attr_int("group", 3)
                .attr_ints("strides", &[2, 2])
                .attr_ints("pads", &[1, 1, 1, 1]),
            2e-3,
        );
        check(
            &conv_case(&[1, 3, 5, 5], &[6, 1, 3, 3], false)
                .attr_int("group", 3)
                .attr_ints("pads", &[0, 1, 1, 0]),
            2e-3,
        );
        // Pointwise 1×1 (the input planes are the im2col matrix), and one input channel.
        check(&conv_case(&[2, 5, 3, 4], &[7, 5, 1, 1], true), 2e-3);
        check(
            &conv_case(&[3, 1, 4, 4], &[4, 1, 3, 3], true).attr_ints("pads", &[1, 1, 1, 1]),
            2e-3,
        );
    }

    #[test]
    fn one_and_three_spatial_dims() {
        check(
            &conv_case(&[2, 3, 9], &[4, 3, 3], true)
                .attr_ints("strides", &[2])
                .attr_ints("pads", &[1, 2]),
            2e-3,
        );
        check(
            &conv_case(&[1, 2, 4, 5, 3], &[3, 2, 2, 3, 2], true)
                .attr_ints("pads", &[1, 0, 1, 0, 1, 0]),
            2e-3,
        );
    }
}
