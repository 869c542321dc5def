//! Convolutions: Conv and ConvTranspose (1 to 3 spatial dims), their windows read through
//! [`WindowSpec`].
//!
//! Conv picks its kernel by shape: small output planes with at least a vector's worth of
//! images (x86-64 with AVX2 or AVX-512) run a direct kernel with one image per SIMD lane
//! (`lanes`); depthwise convolutions run `depthwise` (row-blocked, the epilogue per row; kernel
//! width 3 or 5 at column stride 1 in FMA register blocks, `depthwise_fma`); products short in
//! K run as `panel` products with the bias and epilogue fused: pointwise convolutions over at
//! most 64 input channels straight from the input planes, and small kernels over few channels
//! (a first convolution on RGB) on im2col blocks; the rest as im2col + sgemm per (image,
//! group) (`im2col`), 1×1 stride-1 unpadded ones with the input as the GEMM operand.
//! ConvTranspose runs as sgemm (Wᵀ·X) + col2im (`transpose`).

use std::cell::Cell;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::gemm::{Mat, gemm_is_threaded, sgemm};
use super::{OpCtx, OpError, OpResult, Registry, checked_len, input_f32, optional, single};
use crate::engine::buffers::recycled;
use crate::engine::geometry::{Axis, WindowSpec, to3, valid_range};
use crate::ir::TensorData;

mod depthwise;
mod depthwise_fma;
mod direct;
mod epilogue;
mod im2col;
mod lanes;
mod panel;
pub(crate) mod simd;
#[cfg(test)]
mod strategy_tests;
#[cfg(test)]
mod tests;
mod transpose;

use depthwise::depthwise;
use direct::{conv_direct, use_direct};
pub use epilogue::{
    ACTIVATION_ATTR, ALPHA_ATTR, Activation, BETA_ATTR, ConvEpilogue, SCALE_ATTR, SHIFT_ATTR,
};
use im2col::im2col;
use lanes::{conv_lanes, lane_kernel, use_lanes};
use panel::{Panel, PanelOut, panel_columns};
use simd::{Isa, SharedOut};
use transpose::conv_transpose_op;

pub fn register(registry: &mut Registry) {
    registry.add("Conv", conv_op);
    registry.add("ConvTranspose", conv_transpose_op);
}

/// Optional float input `i`.
fn optional_f32<'a>(
    inputs: &[Option<&'a TensorData>],
    i: usize,
) -> Result<Option<&'a ArrayD<f32>>, OpError> {
    match optional(inputs, i) {
        None => Ok(None),
        Some(t) => t.as_f32().map(Some).ok_or_else(|| {
            OpError(format!(
                "input {i} must be a float tensor, got {}",
                t.kind_name()
            ))
        }),
    }
}

/// Checks the bias (if any) has shape [m] and returns it contiguous.
fn bias_vec(bias: Option<&ArrayD<f32>>, m: usize) -> Result<Option<Vec<f32>>, OpError> {
    match bias {
        None => Ok(None),
        Some(b) => {
            if b.shape() != [m] {
                return Err(OpError(format!(
                    "bias has shape {:?}, expected [{m}] (one per output channel)",
                    b.shape()
                )));
            }
            Ok(Some(b.iter().copied().collect()))
        }
    }
}

/// A per-thread scratch buffer reused across calls (avoids page-faulting a fresh im2col
/// buffer for every convolution).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    }
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.set(buf);
    r
}

/// Fills consecutive channel planes of `plane` elements, the first being channel `m0`, with
/// their bias (no-op without bias). Done per chunk right before the chunk is computed, so the
/// data is cache-hot for the accumulation that follows.
fn fill_bias(chunk: &mut [f32], plane: usize, m0: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for (i, p) in chunk.chunks_mut(plane).enumerate() {
            p.fill(b[m0 + i]);
        }
    }
}

// ---- Conv ------------------------------------------------------------------------------------

/// The checked operands shared by Conv and ConvTranspose: X [N, C, spatial...] with 1 to 3
/// spatial dims, W of the same rank, optional bias, and the node's window.
struct ConvOperands<'a> {
    x: &'a ArrayD<f32>,
    w: &'a ArrayD<f32>,
    bias: Option<&'a ArrayD<f32>>,
    spec: WindowSpec,
}

fn conv_operands<'a>(
    op: &str,
    ctx: &OpCtx<'_>,
    inputs: &[Option<&'a TensorData>],
) -> Result<ConvOperands<'a>, OpError> {
    let x = input_f32(inputs, 0)?;
    let w = input_f32(inputs, 1)?;
    let bias = optional_f32(inputs, 2)?;
    if x.ndim() < 3 {
        return Err(OpError(format!(
            "{op} input must be [N, C, spatial...], got shape {:?}",
            x.shape()
        )));
    }
    if w.ndim() != x.ndim() {
        return Err(OpError(format!(
            "{op} weight must have the input's rank {}, got shape {:?}",
            x.ndim(),
            w.shape()
        )));
    }
    let sp = x.ndim() - 2;
    if sp > 3 {
        return Err(OpError(format!(
            "{op} supports 1 to 3 spatial dims, the input has {sp}"
        )));
    }
    let spec = WindowSpec::conv(ctx.node, &w.shape()[2..])?;
    Ok(ConvOperands { x, w, bias, spec })
}

fn conv_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let ConvOperands { x, w, bias, spec } = conv_operands("Conv", ctx, inputs)?;
    let group = spec.group;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let (m, cg) = (w.shape()[0], w.shape()[1]);
    if cg * group != c {
        return Err(OpError(format!(
            "input channels {c} do not match weight's {cg} × group {group}"
        )));
    }
    if m % group != 0 {
        return Err(OpError(format!(
            "output channels {m} are not divisible by group {group}"
        )));
    }
    let bias = bias_vec(bias, m)?;
    let epilogue = node_epilogue(ctx, m)?;
    let axes = spec.axes(&x.shape()[2..])?;
    let a3 = to3(&axes);
    conv_output(x, w, [n, m], &axes, None, |x, w| {
        conv_forward(
            ConvData {
                x,
                n,
                c,
                w,
                m,
                group,
                bias: bias.as_deref(),
                a: &a3,
            },
            epilogue.as_ref(),
        )
    })
}

/// The fused epilogue stored in the node (see [`ConvEpilogue`]), checked against `m` output
/// channels.
fn node_epilogue(ctx: &OpCtx<'_>, m: usize) -> Result<Option<ConvEpilogue>, OpError> {
    let epilogue = ConvEpilogue::from_node(ctx.node)?;
    if let Some(e) = &epilogue {
        e.check(m)?;
    }
    Ok(epilogue)
}

/// The output [n, m, axes' outputs...] of a Conv or ConvTranspose: its size checked, then
/// `forward` run on the contiguous data of `x` and `w`, then the epilogue (if any).
fn conv_output(
    x: &ArrayD<f32>,
    w: &ArrayD<f32>,
    [n, m]: [usize; 2],
    axes: &[Axis],
    epilogue: Option<&ConvEpilogue>,
    forward: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
) -> OpResult {
    let mut shape = vec![n, m];
    shape.extend(axes.iter().map(|a| a.output));
    checked_len(&shape)?;
    let x = x.as_standard_layout();
    let w = w.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let ws = w.as_slice().expect("standard layout");
    let mut out = forward(xs, ws);
    let plane: usize = axes.iter().map(|a| a.output).product();
    apply_epilogue(&mut out, m, plane, epilogue);
    single(ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| OpError(e.to_string()))?)
}

/// One convolution's contiguous operands and geometry: x [n, c, D, H, W], the weight, `m`
/// output channels in `group` groups, the bias (one per output channel) and the three axes.
#[derive(Clone, Copy)]
struct ConvData<'a> {
    x: &'a [f32],
    n: usize,
    c: usize,
    w: &'a [f32],
    m: usize,
    group: usize,
    bias: Option<&'a [f32]>,
    a: &'a [Axis; 3],
}

impl ConvData<'_> {
    /// Elements of one input plane, one output plane and one kernel.
    fn sizes(&self) -> (usize, usize, usize) {
        let a = self.a;
        (
            a[0].input * a[1].input * a[2].input,
            a[0].output * a[1].output * a[2].output,
            a[0].kernel * a[1].kernel * a[2].kernel,
        )
    }
}

/// Whether `conv_direct` takes depthwise and small-channel convolutions. Off: in release
/// builds it measured about 10× slower than im2col + GEMM on the real models (YuNet-s first
/// conv 114 ms vs 12 ms, 1 thread), so it stays tested (`strategy_tests`) but unused until its
/// speed is fixed.
const DIRECT_KERNEL: bool = false;

/// Applies `epilogue` (if any) to `out` [n, m, plane] in parallel over channel planes.
fn apply_epilogue(out: &mut [f32], m: usize, plane: usize, epilogue: Option<&ConvEpilogue>) {
    if let Some(e) = epilogue
        && plane > 0
    {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(p, values)| e.apply(p % m, values));
    }
}

/// The convolution of `x` with `w` [m, c/group, kD, kH, kW] followed by the epilogue; returns
/// [n, m, oD, oH, oW]. The kernel is chosen by shape: SIMD lanes over images (many images of
/// small planes), direct (depthwise and small-channel), im2col + GEMM (the rest).
fn conv_forward(d: ConvData<'_>, epilogue: Option<&ConvEpilogue>) -> Vec<f32> {
    let (_, out_sz, _) = d.sizes();
    let (n, c, m, group) = (d.n, d.c, d.m, d.group);
    if n * m * out_sz == 0 {
        return Vec::new();
    }
    if DIRECT_KERNEL && use_direct(d.a, c / group, m / group) && !lanes_fit(&d) {
        // Every element is written by the kernel.
        let mut out = recycled::<f32>(n * m * out_sz);
        conv_direct(
            Isa::detect(),
            d.x,
            [n, c, m, group],
            d.w,
            d.bias,
            epilogue,
            d.a,
            &mut out,
        );
        return out;
    }
    if is_depthwise(&d) && !lanes_fit(&d) {
        return depthwise(Isa::detect(), d, epilogue);
    }
    if !lanes_fit(&d) {
        let (_, _, kk) = d.sizes();
        if is_pointwise(d.a) && d.c / group <= panel::MAX_K {
            return pointwise_by_panels(Isa::detect(), d, epilogue);
        }
        if m / group <= panel::MAX_K && d.c / group * kk * (m / group) <= panel::MAX_WEIGHTS {
            return im2col_by_panels(Isa::detect(), d, epilogue);
        }
    }
    let mut out = conv_unfused(d);
    apply_epilogue(&mut out, m, out_sz, epilogue);
    out
}

/// Whether the window is 1×1 at stride 1 without padding (the input planes are the product's
/// operand as they are).
fn is_pointwise(a: &[Axis; 3]) -> bool {
    a.iter()
        .all(|ax| ax.kernel == 1 && ax.stride == 1 && ax.pad_begin == 0 && ax.pad_end == 0)
}

/// Columns per task of [`pointwise_by_panels`] (about: tasks are balanced over the plane).
const PANEL_COLUMNS: usize = 512;

/// A pointwise convolution with few input channels per group as [`panel`] products (bias and
/// epilogue fused), in parallel over (image, group, column block).
fn pointwise_by_panels(isa: Isa, d: ConvData<'_>, epilogue: Option<&ConvEpilogue>) -> Vec<f32> {
    let (in_sz, out_sz, _) = d.sizes();
    let (cg, mg) = (d.c / d.group, d.m / d.group);
    let mut out = recycled::<f32>(d.n * d.m * out_sz);
    let blocks = out_sz.div_ceil(PANEL_COLUMNS);
    let per_block = out_sz.div_ceil(blocks).next_multiple_of(16);
    let units = d.n * d.group;
    let (base, len) = (SharedOut(out.as_mut_ptr()), out.len());
    (0..units * blocks).into_par_iter().for_each(|t| {
        let (u, block) = (t / blocks, t % blocks);
        let (ni, g) = (u / d.group, u % d.group);
        let xoff = (ni * d.c + g * cg) * in_sz;
        let panel = Panel {
            w: &d.w[g * mg * cg..(g + 1) * mg * cg],
            m: mg,
            k: cg,
            b: &d.x[xoff..xoff + cg * in_sz],
            ldb: in_sz,
            bias: d.bias,
            epilogue,
            channel0: g * mg,
        };
        let ooff = (ni * d.m + g * mg) * out_sz;
        debug_assert!(ooff + mg * out_sz <= len);
        let rows = PanelOut {
            // SAFETY: `ooff + mg · out_sz ≤ len`: the (image, group) rows lie inside `out`.
            ptr: unsafe { base.offset(ooff) },
            len: mg * out_sz,
            ld: out_sz,
        };
        let j0 = (block * per_block).min(out_sz);
        // Each task writes its own columns of its own (image, group) rows.
        panel_columns(isa, &panel, rows, j0, (j0 + per_block).min(out_sz));
    });
    out
}

/// A convolution with few output channels per group and weights that stay in cache (a
/// network's first convolution on RGB, a 3×3 convolution of 64 channels) as [`panel`] products
/// on im2col blocks of about [`PANEL_COLUMNS`] columns, bias and epilogue fused, in parallel
/// over (image, group, block): no packing of the operand and no separate bias or activation
/// pass, as a general GEMM would make.
fn im2col_by_panels(isa: Isa, d: ConvData<'_>, epilogue: Option<&ConvEpilogue>) -> Vec<f32> {
    let (in_sz, out_sz, kk) = d.sizes();
    let (cg, mg) = (d.c / d.group, d.m / d.group);
    let kc = cg * kk;
    let mut out = recycled::<f32>(d.n * d.m * out_sz);
    let out_rows = d.a[0].output * d.a[1].output;
    let ow = d.a[2].output;
    // Whole output rows per block, balanced over the plane.
    let target = (PANEL_COLUMNS / ow).clamp(1, out_rows);
    let block_rows = out_rows.div_ceil(out_rows.div_ceil(target));
    let blocks = out_rows.div_ceil(block_rows);
    let units = d.n * d.group;
    let (base, len) = (SharedOut(out.as_mut_ptr()), out.len());
    (0..units * blocks).into_par_iter().for_each(|t| {
        let (u, block) = (t / blocks, t % blocks);
        let (ni, g) = (u / d.group, u % d.group);
        let (t0, t1) = (block * block_rows, ((block + 1) * block_rows).min(out_rows));
        let cols = (t1 - t0) * ow;
        let xoff = (ni * d.c + g * cg) * in_sz;
        with_scratch(kc * cols, |col| {
            im2col(
                &d.x[xoff..xoff + cg * in_sz],
                d.a,
                col,
                cols,
                0,
                t0..t1,
                false,
            );
            let panel = Panel {
                w: &d.w[g * mg * kc..(g + 1) * mg * kc],
                m: mg,
                k: kc,
                b: col,
                ldb: cols,
                bias: d.bias,
                epilogue,
                channel0: g * mg,
            };
            let ooff = (ni * d.m + g * mg) * out_sz + t0 * ow;
            debug_assert!(ooff + (mg - 1) * out_sz + cols <= len);
            let rows = PanelOut {
                // SAFETY: the block's columns of the (image, group) rows lie inside `out`:
                // `ooff + (mg − 1)·out_sz + cols ≤ len`.
                ptr: unsafe { base.offset(ooff) },
                len: (mg - 1) * out_sz + cols,
                ld: out_sz,
            };
            // Each task writes its own output rows' columns t0·oW..t1·oW.
            panel_columns(isa, &panel, rows, 0, cols);
        });
    });
    out
}

/// Whether every output channel reads one input channel (and there are several groups).
fn is_depthwise(d: &ConvData<'_>) -> bool {
    d.c / d.group == 1 && d.group > 1
}

/// Whether the SIMD lane kernel (images in lanes) takes this convolution.
fn lanes_fit(d: &ConvData<'_>) -> bool {
    let (in_sz, out_sz, kk) = d.sizes();
    lane_kernel().is_some_and(|k| use_lanes(k, d.n, d.c, out_sz, in_sz, kk))
}

/// The convolution without epilogue, by the lane kernel or im2col + GEMM.
fn conv_unfused(d: ConvData<'_>) -> Vec<f32> {
    let ConvData {
        x,
        n,
        c,
        w,
        m,
        group,
        bias,
        a,
    } = d;
    let (in_sz, out_sz, kk) = d.sizes();
    let cg = c / group;
    let mg = m / group;
    let kc = cg * kk;
    if n * m * out_sz == 0 {
        return Vec::new();
    }

    // Small output planes with many images: a direct kernel with one image per SIMD lane.
    if let Some(k) = lane_kernel()
        && use_lanes(k, n, c, out_sz, in_sz, kk)
    {
        // Every element is written by the kernel.
        let mut out = recycled::<f32>(n * m * out_sz);
        conv_lanes(d, k, &mut out);
        return out;
    }

    if is_depthwise(&d) {
        return depthwise(Isa::detect(), d, None);
    }

    // Every element is written: the bias fills a chunk before a product adds to it (beta 1),
    // or without bias the product overwrites it (beta 0: sgemm does not read it).
    let mut out = recycled::<f32>(n * m * out_sz);
    let beta = if bias.is_some() { 1.0 } else { 0.0 };

    // Small output planes make short, inefficient GEMMs; with several images, batch them
    // side by side into one wider product (the result is scattered back per image).
    let max_images = (1024 / out_sz).min(n);
    if max_images >= 2 {
        // Even chunks: e.g. 8 images at most 5 per product → 2 products of 4.
        let nb = n.div_ceil(n.div_ceil(max_images));
        conv_batched(d, nb, &mut out);
        return out;
    }

    let pointwise = kk == 1
        && a.iter()
            .all(|ax| ax.stride == 1 && ax.pad_begin == 0 && ax.pad_end == 0);
    let units = n * group;
    // Output rows (flattened (od, oh)) per im2col block: large planes are processed in column
    // blocks whose im2col slice stays in cache for the product (the weights are small then).
    let out_rows = a[0].output * a[1].output;
    let ow = a[2].output;
    let block_rows = if out_sz > 2048 {
        // About max(1024, 128K/kc) columns per block, balanced over the plane.
        let target = (1024usize.max((1 << 17) / kc.max(1)) / ow).clamp(1, out_rows);
        out_rows.div_ceil(out_rows.div_ceil(target))
    } else {
        out_rows
    };
    let unit = |u: usize, chunk: &mut [f32], col: &mut [f32], par_im2col: bool| {
        let (ni, g) = (u / group, u % group);
        let xoff = (ni * c + g * cg) * in_sz;
        let wm = Mat::rows(w, g * mg * kc, kc);
        fill_bias(chunk, out_sz, g * mg, bias);
        if pointwise {
            let b = Mat::rows(x, xoff, in_sz);
            sgemm(mg, kc, out_sz, 1.0, wm, b, beta, chunk, out_sz);
        } else {
            for t0 in (0..out_rows).step_by(block_rows) {
                let t1 = (t0 + block_rows).min(out_rows);
                let cols = (t1 - t0) * ow;
                let xs = &x[xoff..xoff + cg * in_sz];
                im2col(xs, a, &mut col[..kc * cols], cols, 0, t0..t1, par_im2col);
                let b = Mat::rows(col, 0, cols);
                let c_blk = &mut chunk[t0 * ow..];
                sgemm(mg, kc, cols, 1.0, wm, b, beta, c_blk, out_sz);
            }
        }
    };
    let col_len = if pointwise { 0 } else { kc * block_rows * ow };
    if units > 1 && !gemm_is_threaded(mg, kc, out_sz) {
        // Many small products: one (image, group) per task.
        out.par_chunks_mut(mg * out_sz)
            .enumerate()
            .for_each(|(u, chunk)| with_scratch(col_len, |col| unit(u, chunk, col, false)));
    } else {
        // Few large products: sgemm splits each one over the pool; im2col runs in parallel.
        with_scratch(col_len, |col| {
            for (u, chunk) in out.chunks_mut(mg * out_sz).enumerate() {
                unit(u, chunk, col, true);
            }
        });
    }
    out
}

/// Conv with `nb` images per GEMM: im2col of the images side by side ([kc, nb·P]), one product
/// per (image chunk, group), then the result plus bias is scattered into `out`.
fn conv_batched(d: ConvData<'_>, nb: usize, out: &mut [f32]) {
    let ConvData {
        x,
        n,
        c,
        w,
        m,
        group,
        bias,
        a,
    } = d;
    let (in_sz, p, kk) = d.sizes();
    let (cg, mg) = (c / group, m / group);
    let kc = cg * kk;
    let ld = nb * p;
    let rows = a[0].output * a[1].output;
    let mut tmp = vec![0.0f32; mg * ld];
    with_scratch(kc * ld, |col| {
        for n0 in (0..n).step_by(nb) {
            let cnt = nb.min(n - n0);
            for g in 0..group {
                for i in 0..cnt {
                    let xoff = ((n0 + i) * c + g * cg) * in_sz;
                    im2col(
                        &x[xoff..xoff + cg * in_sz],
                        a,
                        col,
                        ld,
                        i * p,
                        0..rows,
                        true,
                    );
                }
                let wm = Mat::rows(w, g * mg * kc, kc);
                // Columns past cnt·P (last partial chunk) hold stale data and are ignored.
                sgemm(
                    mg,
                    kc,
                    ld,
                    1.0,
                    wm,
                    Mat::rows(col, 0, ld),
                    0.0,
                    &mut tmp,
                    ld,
                );
                let tmp = &tmp;
                out.par_chunks_mut(m * p)
                    .skip(n0)
                    .take(cnt)
                    .enumerate()
                    .for_each(|(i, img)| {
                        let dst = &mut img[g * mg * p..(g + 1) * mg * p];
                        for (r, row) in dst.chunks_mut(p).enumerate() {
                            let src = &tmp[r * ld + i * p..r * ld + (i + 1) * p];
                            let b = bias.map_or(0.0, |b| b[g * mg + r]);
                            for (o, &v) in row.iter_mut().zip(src) {
                                *o = v + b;
                            }
                        }
                    });
            }
        }
    });
}
