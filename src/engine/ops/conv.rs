//! Convolutions: Conv and ConvTranspose (1 to 3 spatial dims), plus the sliding-window geometry
//! shared with pooling.
//!
//! Conv runs as im2col + sgemm per (image, group); 1×1 stride-1 unpadded convolutions use the
//! input directly as the GEMM operand, and depthwise convolutions run as a direct loop. Small
//! output planes with at least a vector's worth of images (x86-64 with AVX2 or AVX-512) instead
//! run a direct kernel with one image per SIMD lane (see "small planes" below).
//! ConvTranspose runs as sgemm (Wᵀ·X) + col2im.

use std::cell::Cell;
use std::ops::Range;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::gemm::{Mat, gemm_is_threaded, sgemm};
use super::{OpCtx, OpError, OpResult, Registry, checked_len, input_f32, optional, single};
use crate::engine::buffers::{recycled, zeroed};
use crate::ir::{Node, TensorData};

pub fn register(registry: &mut Registry) {
    registry.add("Conv", conv_op);
    registry.add("ConvTranspose", conv_transpose_op);
}

// ---- window geometry (shared with pool.rs) ---------------------------------------------------

/// Geometry of a sliding window along one spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Padding before the first element (may be negative for ConvTranspose with an explicit
    /// output shape larger than the natural one).
    pub pad_begin: isize,
    pub pad_end: isize,
    pub output: usize,
}

impl Axis {
    /// A size-1 axis that changes nothing (used to embed 1-D and 2-D cases in 3-D loops).
    pub const TRIVIAL: Axis = Axis {
        input: 1,
        kernel: 1,
        stride: 1,
        dilation: 1,
        pad_begin: 0,
        pad_end: 0,
        output: 1,
    };

    /// Extent of the dilated kernel.
    pub fn span(&self) -> usize {
        self.dilation * (self.kernel - 1) + 1
    }

    /// Offset of kernel tap `k` relative to `output index · stride`.
    pub fn tap_offset(&self, k: usize) -> isize {
        (k * self.dilation) as isize - self.pad_begin
    }
}

/// The indices `j` in `0..count` with `0 ≤ j·stride + off < limit`, as a half-open range
/// (empty ranges come back as `(x, x)`).
pub(super) fn valid_range(off: isize, stride: usize, limit: usize, count: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off + s - 1) / s) as usize
    };
    let last = limit as isize - 1 - off;
    let hi = if last < 0 {
        0
    } else {
        ((last / s) as usize + 1).min(count)
    };
    (lo.min(hi), hi)
}

/// Pads `axes` (1 to 3 of them) to exactly 3 by prepending trivial axes.
pub(super) fn to3(axes: &[Axis]) -> [Axis; 3] {
    let mut out = [Axis::TRIVIAL; 3];
    out[3 - axes.len()..].copy_from_slice(axes);
    out
}

/// The `auto_pad` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

pub(super) fn auto_pad(node: &Node) -> Result<AutoPad, OpError> {
    Ok(match node.attr_string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" | "" => AutoPad::NotSet,
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        "VALID" => AutoPad::Valid,
        other => {
            return Err(OpError(format!(
                "auto_pad '{other}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"
            )));
        }
    })
}

/// Upper bound on sizes, strides, pads and dilations given as attributes (anything larger is
/// certainly a corrupt file, and would overflow size arithmetic).
const MAX_ATTR: i64 = 1 << 30;

/// Integer-list attribute `name` of exactly `len` values, each ≥ `min`; `default` everywhere
/// when absent.
pub(super) fn usize_list(
    node: &Node,
    name: &str,
    len: usize,
    min: i64,
    default: usize,
) -> Result<Vec<usize>, OpError> {
    match node.attr_ints(name)? {
        None => Ok(vec![default; len]),
        Some(v) => {
            if v.len() != len {
                return Err(OpError(format!(
                    "attribute '{name}' has {} values, expected {len}",
                    v.len()
                )));
            }
            if let Some(bad) = v.iter().find(|&&x| x < min || x > MAX_ATTR) {
                return Err(OpError(format!(
                    "attribute '{name}' has value {bad}; values must be in {min}..={MAX_ATTR}"
                )));
            }
            Ok(v.into_iter().map(|x| x as usize).collect())
        }
    }
}

/// The `kernel_shape` attribute checked against `kernel` (the weight's spatial dims), or the
/// attribute itself when `kernel` is None (pooling).
pub(super) fn kernel_shape(
    node: &Node,
    spatial: usize,
    kernel: Option<&[usize]>,
) -> Result<Vec<usize>, OpError> {
    let attr = node.attr_ints("kernel_shape")?;
    let ks: Vec<usize> = match (attr, kernel) {
        (Some(a), w) => {
            if a.len() != spatial {
                return Err(OpError(format!(
                    "kernel_shape {a:?} has {} values but the input has {spatial} spatial dims",
                    a.len()
                )));
            }
            if a.iter().any(|&k| !(1..=MAX_ATTR).contains(&k)) {
                return Err(OpError(format!("kernel_shape {a:?} must be positive")));
            }
            let a: Vec<usize> = a.iter().map(|&k| k as usize).collect();
            if let Some(w) = w
                && w != a.as_slice()
            {
                return Err(OpError(format!(
                    "kernel_shape {a:?} does not match the weight's spatial shape {w:?}"
                )));
            }
            a
        }
        (None, Some(w)) => w.to_vec(),
        (None, None) => return Err(OpError("attribute 'kernel_shape' is required".into())),
    };
    if ks.contains(&0) {
        return Err(OpError(format!("kernel shape {ks:?} has a zero dimension")));
    }
    Ok(ks)
}

/// Reads `strides`, `dilations`, `pads` and `auto_pad` of `node` and computes the window
/// geometry of each spatial axis (ONNX output-size rules; `ceil_mode` for pooling).
pub(super) fn window_axes(
    node: &Node,
    input: &[usize],
    kernel: &[usize],
    ceil_mode: bool,
) -> Result<Vec<Axis>, OpError> {
    let sp = input.len();
    let strides = usize_list(node, "strides", sp, 1, 1)?;
    let dilations = usize_list(node, "dilations", sp, 1, 1)?;
    let mode = auto_pad(node)?;
    let pads = if mode == AutoPad::NotSet {
        usize_list(node, "pads", 2 * sp, 0, 0)?
    } else {
        vec![0; 2 * sp]
    };
    let mut axes = Vec::with_capacity(sp);
    for i in 0..sp {
        let mut a = Axis {
            input: input[i],
            kernel: kernel[i],
            stride: strides[i],
            dilation: dilations[i],
            pad_begin: pads[i] as isize,
            pad_end: pads[i + sp] as isize,
            output: 0,
        };
        let span = a.span();
        match mode {
            AutoPad::SameUpper | AutoPad::SameLower => {
                a.output = a.input.div_ceil(a.stride);
                let total = ((a.output.max(1) - 1) * a.stride + span).saturating_sub(a.input);
                let small = total / 2;
                let (b, e) = if mode == AutoPad::SameUpper {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                a.pad_begin = b as isize;
                a.pad_end = e as isize;
            }
            AutoPad::NotSet | AutoPad::Valid => {
                let padded = a.input + pads[i] + pads[i + sp];
                if padded < span {
                    return Err(OpError(format!(
                        "kernel extent {span} (kernel {}, dilation {}) is larger than the padded \
                         input {padded} along spatial axis {i}",
                        a.kernel, a.dilation
                    )));
                }
                let room = padded - span;
                a.output = if ceil_mode && mode == AutoPad::NotSet {
                    let mut o = room.div_ceil(a.stride) + 1;
                    // A last window starting in the end padding is dropped.
                    if (o - 1) * a.stride >= a.input + pads[i] {
                        o -= 1;
                    }
                    o
                } else {
                    room / a.stride + 1
                };
            }
        }
        axes.push(a);
    }
    Ok(axes)
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

/// The checked operands shared by Conv and ConvTranspose: X [N, C, spatial...], W of the same
/// rank, optional bias, the spatial rank (1 to 3) and `group` (≥ 1).
struct ConvOperands<'a> {
    x: &'a ArrayD<f32>,
    w: &'a ArrayD<f32>,
    bias: Option<&'a ArrayD<f32>>,
    sp: usize,
    group: usize,
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
    let group = ctx.node.attr_int("group", 1)?;
    if group < 1 {
        return Err(OpError(format!("group must be ≥ 1, got {group}")));
    }
    Ok(ConvOperands {
        x,
        w,
        bias,
        sp,
        group: group as usize,
    })
}

fn conv_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let node = ctx.node;
    let ConvOperands {
        x,
        w,
        bias,
        sp,
        group,
    } = conv_operands("Conv", ctx, inputs)?;
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
    let kernel = kernel_shape(node, sp, Some(&w.shape()[2..]))?;
    let bias = bias_vec(bias, m)?;
    let axes = window_axes(node, &x.shape()[2..], &kernel, false)?;
    let a3 = to3(&axes);
    let mut shape = vec![n, m];
    shape.extend(axes.iter().map(|a| a.output));
    checked_len(&shape)?;

    let x = x.as_standard_layout();
    let w = w.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let ws = w.as_slice().expect("standard layout");
    let out = conv_forward(xs, n, c, ws, m, group, bias.as_deref(), &a3);
    single(ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| OpError(e.to_string()))?)
}

/// Convolution of `x` [n, c, D, H, W] with `w` [m, c/group, kD, kH, kW] (all contiguous);
/// returns [n, m, oD, oH, oW].
#[allow(clippy::too_many_arguments)]
fn conv_forward(
    x: &[f32],
    n: usize,
    c: usize,
    w: &[f32],
    m: usize,
    group: usize,
    bias: Option<&[f32]>,
    a: &[Axis; 3],
) -> Vec<f32> {
    let in_sz = a[0].input * a[1].input * a[2].input;
    let out_sz = a[0].output * a[1].output * a[2].output;
    let kk = a[0].kernel * a[1].kernel * a[2].kernel;
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
        conv_lanes(x, c, w, m, group, bias, a, k, &mut out);
        return out;
    }

    let mut out = zeroed::<f32>(n * m * out_sz);
    let beta = if bias.is_some() { 1.0 } else { 0.0 };

    if cg == 1 && group > 1 {
        // Depthwise: a direct loop per output plane.
        out.par_chunks_mut(out_sz)
            .enumerate()
            .for_each(|(p, plane)| {
                let (ni, mi) = (p / m, p % m);
                let ci = mi / mg;
                let xp = &x[(ni * c + ci) * in_sz..(ni * c + ci + 1) * in_sz];
                fill_bias(plane, out_sz, mi, bias);
                direct_plane(xp, &w[mi * kk..(mi + 1) * kk], plane, a);
            });
        return out;
    }

    // Small output planes make short, inefficient GEMMs; with several images, batch them
    // side by side into one wider product (the result is scattered back per image).
    let max_images = (1024 / out_sz).min(n);
    if max_images >= 2 {
        // Even chunks: e.g. 8 images at most 5 per product → 2 products of 4.
        let nb = n.div_ceil(n.div_ceil(max_images));
        conv_batched(x, n, c, w, m, group, bias, a, nb, &mut out);
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
        // Few large products: matrixmultiply threads each one; im2col runs in parallel.
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
#[allow(clippy::too_many_arguments)]
fn conv_batched(
    x: &[f32],
    n: usize,
    c: usize,
    w: &[f32],
    m: usize,
    group: usize,
    bias: Option<&[f32]>,
    a: &[Axis; 3],
    nb: usize,
    out: &mut [f32],
) {
    let in_sz = a[0].input * a[1].input * a[2].input;
    let p = a[0].output * a[1].output * a[2].output;
    let kk = a[0].kernel * a[1].kernel * a[2].kernel;
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

// ---- small planes: images in SIMD lanes ------------------------------------------------------
//
// With small planes, im2col + GEMM spends most of its time building and packing short rows.
// Instead, `lanes` images are transposed so that the same element of every image sits in one
// vector ([channel, input pixel, image]); each output pixel then accumulates, over its valid
// taps only (padding costs nothing) and the input channels, a vector of images times a
// broadcast weight, for a tile of output channels held in registers. The result
// ([channel, output pixel, image]) is transposed back to [image, channel, output pixel].

/// One instantiation of the lane kernel: images per vector, output channels per register
/// tile, the kernel and a matrix transpose (compiled for the matching CPU features).
#[derive(Clone, Copy)]
struct LaneKernel {
    lanes: usize,
    tile: usize,
    /// `run(job, xt, tmp, blocks)` computes the output channel tiles `blocks` (numbered over
    /// all groups) into `tmp` = [blocks.len()·tile, out pixel, lane].
    run: fn(&LaneJob<'_>, &[f32], &mut [f32], Range<usize>),
    /// The same for depthwise convolutions (one input channel per group), with tiles of one
    /// output channel.
    run_dw: fn(&LaneJob<'_>, &[f32], &mut [f32], Range<usize>),
    transpose: fn(&[f32], usize, &mut [f32], usize, usize, usize),
}

/// Geometry and packed operands shared by every lane group of one convolution.
struct LaneJob<'a> {
    /// Input channels (all groups) and per group.
    c: usize,
    cg: usize,
    group: usize,
    /// Output channels per group, rounded up to the tile.
    mg_pad: usize,
    in_sz: usize,
    out_sz: usize,
    kk: usize,
    /// Per output pixel p, its valid (tap, input pixel) pairs are `taps[starts[p]..starts[p + 1]]`.
    taps: &'a [(u32, u32)],
    starts: &'a [u32],
    /// Weights as [group, channel tile, tap, input channel, tile] (zero rows past the group's
    /// output channels).
    wp: &'a [f32],
    /// Bias per padded output channel [group, mg_pad] (zeros without bias).
    bias: &'a [f32],
}

/// The lane kernel for this CPU, if it has one.
fn lane_kernel() -> Option<LaneKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            return Some(LaneKernel {
                lanes: 16,
                tile: 16,
                run: lanes_avx512,
                run_dw: lanes_dw_avx512,
                transpose: transpose_avx512,
            });
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(LaneKernel {
                lanes: 8,
                tile: 8,
                run: lanes_avx2,
                run_dw: lanes_dw_avx2,
                transpose: transpose_avx2,
            });
        }
    }
    None
}

/// Whether the lane kernel beats im2col + GEMM here: enough images to fill the lanes, small
/// output planes, and a transposed input that stays cache-sized.
fn use_lanes(k: LaneKernel, n: usize, c: usize, out_sz: usize, in_sz: usize, kk: usize) -> bool {
    n >= k.lanes
        && out_sz <= 256
        && in_sz * c * k.lanes <= 1 << 20
        && out_sz * kk < u32::MAX as usize
        && in_sz < u32::MAX as usize
}

/// Checks the invariants the unchecked lane kernels rely on (cheap: one pass over the taps).
fn check_lane_job(
    job: &LaneJob<'_>,
    xt: usize,
    tmp: usize,
    lanes: usize,
    tile: usize,
    blocks: &Range<usize>,
) {
    assert!(job.mg_pad.is_multiple_of(tile) && job.cg * job.group == job.c);
    assert!(
        blocks.end <= job.group * job.mg_pad / tile,
        "lane tiles out of range"
    );
    assert!(xt >= job.in_sz * job.c * lanes, "lane input too short");
    assert!(
        tmp >= blocks.len() * tile * job.out_sz * lanes,
        "lane output too short"
    );
    assert!(
        job.wp.len() >= job.group * job.mg_pad * job.kk * job.cg,
        "lane weights too short"
    );
    assert!(job.bias.len() >= job.group * job.mg_pad && job.starts.len() > job.out_sz);
    assert!(job.starts[job.out_sz] as usize <= job.taps.len());
    assert!(
        job.taps
            .iter()
            .all(|&(t, ip)| (t as usize) < job.kk && (ip as usize) < job.in_sz),
        "lane tap out of range"
    );
}

/// Checks the bounds of a transpose of `rows`×`cols` (see `LaneKernel::transpose`).
fn check_transpose(src: usize, lds: usize, dst: usize, ldd: usize, rows: usize, cols: usize) {
    if rows > 0 && cols > 0 {
        assert!(
            cols <= lds && (rows - 1) * lds + cols <= src,
            "transpose source"
        );
        assert!(
            rows <= ldd && (cols - 1) * ldd + rows <= dst,
            "transpose destination"
        );
    }
}

/// Scalar transpose of the part of `rows`×`cols` not covered by `b`×`b` blocks (rows or
/// columns past the last full block).
fn transpose_rest(
    src: &[f32],
    lds: usize,
    dst: &mut [f32],
    ldd: usize,
    rows: usize,
    cols: usize,
    b: usize,
) {
    let (rb, cb) = (rows / b * b, cols / b * b);
    for r in 0..rows {
        let c0 = if r < rb { cb } else { 0 };
        for c in c0..cols {
            dst[c * ldd + r] = src[r * lds + c];
        }
    }
}

/// Lane kernel body for x86-64: `$L` lanes per vector, `$T` output channels per tile.
#[cfg(target_arch = "x86_64")]
macro_rules! lane_kernel_body {
    ($job:ident, $xt:ident, $tmp:ident, $blocks:ident, $L:literal, $T:literal,
     $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident) => {{
        let job = $job;
        let (cg, kk, in_sz, out_sz) = (job.cg, job.kk, job.in_sz, job.out_sz);
        let per_group = job.mg_pad / $T;
        check_lane_job(job, $xt.len(), $tmp.len(), $L, $T, &$blocks);
        let xt = $xt.as_ptr();
        let tmp = $tmp.as_mut_ptr();
        let xstep = in_sz * $L;
        for b in $blocks.clone() {
            {
                let (g, cb) = (b / per_group, b % per_group);
                let co0 = g * job.mg_pad + cb * $T;
                let row0 = (b - $blocks.start) * $T;
                // SAFETY (all pointer arithmetic below): `check_lane_job` verified that every
                // tap's input pixel and tap index are in range and that the buffers hold
                // `c·in_sz·L` inputs, `group·mg_pad·kk·cg` weights and `blocks.len()·T·out_sz·L`
                // outputs.
                let wblk = unsafe { job.wp.as_ptr().add(co0 * kk * cg) };
                let xg = unsafe { xt.add(g * cg * xstep) };
                for p in 0..out_sz {
                    let mut acc = [$set1(0.0); $T];
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = $set1(job.bias[co0 + j]);
                    }
                    let (t0, t1) = (job.starts[p] as usize, job.starts[p + 1] as usize);
                    for &(t, ip) in &job.taps[t0..t1] {
                        unsafe {
                            let mut xp = xg.add(ip as usize * $L);
                            let mut wq = wblk.add(t as usize * cg * $T);
                            for _ in 0..cg {
                                let xv = $loadu(xp);
                                for (j, a) in acc.iter_mut().enumerate() {
                                    *a = $fmadd($set1(*wq.add(j)), xv, *a);
                                }
                                xp = xp.add(xstep);
                                wq = wq.add($T);
                            }
                        }
                    }
                    for (j, a) in acc.iter().enumerate() {
                        unsafe { $storeu(tmp.add(((row0 + j) * out_sz + p) * $L), *a) };
                    }
                }
            }
        }
    }};
}

/// Depthwise lane kernel body for x86-64 (`$L` lanes): one output channel at a time, each
/// pixel a chain of FMAs over its valid taps (consecutive pixels overlap out of order).
#[cfg(target_arch = "x86_64")]
macro_rules! lane_dw_body {
    ($job:ident, $xt:ident, $tmp:ident, $blocks:ident, $L:literal,
     $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident) => {{
        let job = $job;
        let (kk, in_sz, out_sz, mg) = (job.kk, job.in_sz, job.out_sz, job.mg_pad);
        assert!(
            job.cg == 1,
            "depthwise lane kernel with {} channels per group",
            job.cg
        );
        check_lane_job(job, $xt.len(), $tmp.len(), $L, 1, &$blocks);
        let xt = $xt.as_ptr();
        let tmp = $tmp.as_mut_ptr();
        for mo in $blocks.clone() {
            let row = mo - $blocks.start;
            // SAFETY (all pointer arithmetic below): as in `lane_kernel_body`, with tiles of one
            // output channel; output channel `mo` reads input channel (= group) `mo / mg`.
            let (xc, wc) = unsafe { (xt.add(mo / mg * in_sz * $L), job.wp.as_ptr().add(mo * kk)) };
            let b = $set1(job.bias[mo]);
            for p in 0..out_sz {
                let mut acc = b;
                let (t0, t1) = (job.starts[p] as usize, job.starts[p + 1] as usize);
                for &(t, ip) in &job.taps[t0..t1] {
                    unsafe {
                        let xv = $loadu(xc.add(ip as usize * $L));
                        acc = $fmadd($set1(*wc.add(t as usize)), xv, acc);
                    }
                }
                unsafe { $storeu(tmp.add((row * out_sz + p) * $L), acc) };
            }
        }
    }};
}

#[cfg(target_arch = "x86_64")]
fn lanes_dw_avx512(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f,fma")]
    fn inner(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
        lane_dw_body!(
            job,
            xt,
            tmp,
            blocks,
            16,
            _mm512_set1_ps,
            _mm512_loadu_ps,
            _mm512_storeu_ps,
            _mm512_fmadd_ps
        );
    }
    // SAFETY: only selected by `lane_kernel` when the CPU has these features.
    unsafe { inner(job, xt, tmp, blocks) }
}

#[cfg(target_arch = "x86_64")]
fn lanes_dw_avx2(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2,fma")]
    fn inner(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
        lane_dw_body!(
            job,
            xt,
            tmp,
            blocks,
            8,
            _mm256_set1_ps,
            _mm256_loadu_ps,
            _mm256_storeu_ps,
            _mm256_fmadd_ps
        );
    }
    // SAFETY: only selected by `lane_kernel` when the CPU has these features.
    unsafe { inner(job, xt, tmp, blocks) }
}

#[cfg(target_arch = "x86_64")]
fn lanes_avx512(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f,fma")]
    fn inner(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
        lane_kernel_body!(
            job,
            xt,
            tmp,
            blocks,
            16,
            16,
            _mm512_set1_ps,
            _mm512_loadu_ps,
            _mm512_storeu_ps,
            _mm512_fmadd_ps
        );
    }
    // SAFETY: only selected by `lane_kernel` when the CPU has these features.
    unsafe { inner(job, xt, tmp, blocks) }
}

#[cfg(target_arch = "x86_64")]
fn lanes_avx2(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2,fma")]
    fn inner(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
        lane_kernel_body!(
            job,
            xt,
            tmp,
            blocks,
            8,
            8,
            _mm256_set1_ps,
            _mm256_loadu_ps,
            _mm256_storeu_ps,
            _mm256_fmadd_ps
        );
    }
    // SAFETY: only selected by `lane_kernel` when the CPU has these features.
    unsafe { inner(job, xt, tmp, blocks) }
}

/// `dst[c·ldd + r] = src[r·lds + c]` for `r < rows`, `c < cols`, in 16×16 AVX-512 blocks.
#[cfg(target_arch = "x86_64")]
fn transpose_avx512(
    src: &[f32],
    lds: usize,
    dst: &mut [f32],
    ldd: usize,
    rows: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    /// One 16×16 block.
    #[target_feature(enable = "avx512f")]
    unsafe fn block(s: *const f32, lds: usize, d: *mut f32, ldd: usize) {
        // SAFETY: the caller guarantees 16 rows of 16 readable floats at `s` (stride `lds`)
        // and 16 rows of 16 writable floats at `d` (stride `ldd`).
        unsafe {
            let r: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(s.add(i * lds)));
            // Pairs of rows interleaved within 128-bit lanes.
            let t: [__m512; 16] = std::array::from_fn(|i| {
                let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            // Per group of 4 rows q: u[4q + k] holds columns k, k+4, k+8, k+12 of those rows
            // (one 128-bit lane each).
            let u: [__m512; 16] = std::array::from_fn(|i| {
                let (q, k) = (i / 4, i % 4);
                let (a, b) = (t[4 * q + k / 2], t[4 * q + 2 + k / 2]);
                if k % 2 == 0 {
                    _mm512_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm512_shuffle_ps::<0xEE>(a, b)
                }
            });
            for k in 0..4 {
                let (a, b, c, e) = (u[k], u[4 + k], u[8 + k], u[12 + k]);
                let p0 = _mm512_shuffle_f32x4::<0x88>(a, b);
                let q0 = _mm512_shuffle_f32x4::<0x88>(c, e);
                let p1 = _mm512_shuffle_f32x4::<0xDD>(a, b);
                let q1 = _mm512_shuffle_f32x4::<0xDD>(c, e);
                _mm512_storeu_ps(d.add(k * ldd), _mm512_shuffle_f32x4::<0x88>(p0, q0));
                _mm512_storeu_ps(d.add((k + 8) * ldd), _mm512_shuffle_f32x4::<0xDD>(p0, q0));
                _mm512_storeu_ps(d.add((k + 4) * ldd), _mm512_shuffle_f32x4::<0x88>(p1, q1));
                _mm512_storeu_ps(d.add((k + 12) * ldd), _mm512_shuffle_f32x4::<0xDD>(p1, q1));
            }
        }
    }
    #[target_feature(enable = "avx512f")]
    fn blocks(src: &[f32], lds: usize, dst: &mut [f32], ldd: usize, rows: usize, cols: usize) {
        for r in (0..rows / 16 * 16).step_by(16) {
            for c in (0..cols / 16 * 16).step_by(16) {
                // SAFETY: the block lies inside the checked rows×cols area.
                unsafe {
                    block(
                        src.as_ptr().add(r * lds + c),
                        lds,
                        dst.as_mut_ptr().add(c * ldd + r),
                        ldd,
                    )
                };
            }
        }
    }
    check_transpose(src.len(), lds, dst.len(), ldd, rows, cols);
    // SAFETY: only selected by `lane_kernel` when the CPU has AVX-512F.
    unsafe { blocks(src, lds, dst, ldd, rows, cols) };
    transpose_rest(src, lds, dst, ldd, rows, cols, 16);
}

/// `dst[c·ldd + r] = src[r·lds + c]` for `r < rows`, `c < cols`, in 8×8 AVX blocks.
#[cfg(target_arch = "x86_64")]
fn transpose_avx2(src: &[f32], lds: usize, dst: &mut [f32], ldd: usize, rows: usize, cols: usize) {
    use std::arch::x86_64::*;
    /// One 8×8 block.
    #[target_feature(enable = "avx2")]
    unsafe fn block(s: *const f32, lds: usize, d: *mut f32, ldd: usize) {
        // SAFETY: the caller guarantees 8 rows of 8 readable floats at `s` (stride `lds`) and
        // 8 rows of 8 writable floats at `d` (stride `ldd`).
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * lds)));
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // u[4q + k] holds columns k and k+4 of rows 4q..4q+4 (one 128-bit lane each).
            let u: [__m256; 8] = std::array::from_fn(|i| {
                let (q, k) = (i / 4, i % 4);
                let (a, b) = (t[4 * q + k / 2], t[4 * q + 2 + k / 2]);
                if k % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xEE>(a, b)
                }
            });
            for k in 0..4 {
                let (a, b) = (u[k], u[4 + k]);
                _mm256_storeu_ps(d.add(k * ldd), _mm256_permute2f128_ps::<0x20>(a, b));
                _mm256_storeu_ps(d.add((k + 4) * ldd), _mm256_permute2f128_ps::<0x31>(a, b));
            }
        }
    }
    #[target_feature(enable = "avx2")]
    fn blocks(src: &[f32], lds: usize, dst: &mut [f32], ldd: usize, rows: usize, cols: usize) {
        for r in (0..rows / 8 * 8).step_by(8) {
            for c in (0..cols / 8 * 8).step_by(8) {
                // SAFETY: the block lies inside the checked rows×cols area.
                unsafe {
                    block(
                        src.as_ptr().add(r * lds + c),
                        lds,
                        dst.as_mut_ptr().add(c * ldd + r),
                        ldd,
                    )
                };
            }
        }
    }
    check_transpose(src.len(), lds, dst.len(), ldd, rows, cols);
    // SAFETY: only selected by `lane_kernel` when the CPU has AVX2.
    unsafe { blocks(src, lds, dst, ldd, rows, cols) };
    transpose_rest(src, lds, dst, ldd, rows, cols, 8);
}

/// Conv of small planes through the lane kernel `k` (see above); `out` is [n, m, out plane].
#[allow(clippy::too_many_arguments)]
fn conv_lanes(
    x: &[f32],
    c: usize,
    w: &[f32],
    m: usize,
    group: usize,
    bias: Option<&[f32]>,
    a: &[Axis; 3],
    k: LaneKernel,
    out: &mut [f32],
) {
    let [ad, ah, aw] = a;
    let in_sz = ad.input * ah.input * aw.input;
    let out_sz = ad.output * ah.output * aw.output;
    let kk = ad.kernel * ah.kernel * aw.kernel;
    let (cg, mg) = (c / group, m / group);
    // Depthwise convolutions take their own kernel, with tiles of one output channel.
    let depthwise = cg == 1 && group > 1;
    let (lanes, tile) = (k.lanes, if depthwise { 1 } else { k.tile });
    let run = if depthwise { k.run_dw } else { k.run };
    let mg_pad = mg.div_ceil(tile) * tile;

    // Valid taps of every output pixel.
    let mut taps = Vec::with_capacity(out_sz * kk);
    let mut starts = Vec::with_capacity(out_sz + 1);
    starts.push(0u32);
    let coord = |ax: &Axis, o: usize, k: usize| {
        let i = (o * ax.stride) as isize + ax.tap_offset(k);
        (0..ax.input as isize).contains(&i).then_some(i as usize)
    };
    for od in 0..ad.output {
        for oh in 0..ah.output {
            for ow in 0..aw.output {
                for kd in 0..ad.kernel {
                    let Some(id) = coord(ad, od, kd) else {
                        continue;
                    };
                    for kh in 0..ah.kernel {
                        let Some(ih) = coord(ah, oh, kh) else {
                            continue;
                        };
                        for kw in 0..aw.kernel {
                            let Some(iw) = coord(aw, ow, kw) else {
                                continue;
                            };
                            let t = (kd * ah.kernel + kh) * aw.kernel + kw;
                            let ip = (id * ah.input + ih) * aw.input + iw;
                            taps.push((t as u32, ip as u32));
                        }
                    }
                }
                starts.push(taps.len() as u32);
            }
        }
    }

    // Weights [group, tile block, tap, ci, tile] (written in order; rows past mg stay zero);
    // bias [group, mg_pad].
    let mut wp = vec![0.0f32; group * mg_pad * kk * cg];
    let mut bp = vec![0.0f32; group * mg_pad];
    for (b, blk) in wp.chunks_exact_mut(tile * kk * cg).enumerate() {
        let (g, co0) = (b / (mg_pad / tile), b % (mg_pad / tile) * tile);
        let rows = tile.min(mg - co0.min(mg));
        let src = &w[(g * mg + co0) * cg * kk..(g * mg + co0 + rows) * cg * kk];
        for (t, by_tap) in blk.chunks_exact_mut(cg * tile).enumerate() {
            for (ci, dst) in by_tap.chunks_exact_mut(tile).enumerate() {
                for (j, d) in dst[..rows].iter_mut().enumerate() {
                    *d = src[(j * cg + ci) * kk + t];
                }
            }
        }
        if let Some(bias) = bias {
            bp[g * mg_pad + co0..g * mg_pad + co0 + rows]
                .copy_from_slice(&bias[g * mg + co0..g * mg + co0 + rows]);
        }
    }
    let job = LaneJob {
        c,
        cg,
        group,
        mg_pad,
        in_sz,
        out_sz,
        kk,
        taps: &taps,
        starts: &starts,
        wp: &wp,
        bias: &bp,
    };

    let image_in = c * in_sz;
    let image = m * out_sz;
    let xt_len = image_in * lanes;
    let tmp_len = group * mg_pad * out_sz * lanes;
    let groups = out.len().div_ceil(lanes * image);
    out.par_chunks_mut(lanes * image)
        .enumerate()
        .for_each(|(gi, chunk)| {
            let imgs = chunk.len() / image;
            let xs = &x[gi * lanes * image_in..(gi * lanes + imgs) * image_in];
            with_scratch(xt_len + tmp_len, |buf| {
                let (xt, tmp) = buf.split_at_mut(xt_len);
                // [image, c, in pixel] → [c, in pixel, lane] (unused lanes zero).
                if imgs < lanes {
                    xt.fill(0.0);
                }
                (k.transpose)(xs, image_in, xt, lanes, imgs, image_in);
                // Output channel tiles: split over threads when there are fewer lane groups
                // than threads (a small batch), otherwise one task per lane group.
                let tiles = group * mg_pad / tile;
                if groups < rayon::current_num_threads() && tiles > 1 {
                    let xt = &*xt;
                    tmp[..tiles * tile * out_sz * lanes]
                        .par_chunks_mut(tile * out_sz * lanes)
                        .enumerate()
                        .for_each(|(b, t)| run(&job, xt, t, b..b + 1));
                } else {
                    run(&job, xt, tmp, 0..tiles);
                }
                // [group·mg_pad, out pixel, lane] → [image, m, out pixel].
                if mg_pad == mg {
                    (k.transpose)(tmp, lanes, chunk, image, image, imgs);
                } else {
                    for g in 0..group {
                        let src = &tmp[g * mg_pad * out_sz * lanes..];
                        let dst = &mut chunk[g * mg * out_sz..];
                        (k.transpose)(src, lanes, dst, image, mg * out_sz, imgs);
                    }
                }
            });
        });
}

/// Direct convolution of one input plane `xp` [D, H, W] with one kernel `wk` [kD, kH, kW],
/// accumulated into `out` [oD, oH, oW].
fn direct_plane(xp: &[f32], wk: &[f32], out: &mut [f32], a: &[Axis; 3]) {
    let [ad, ah, aw] = a;
    let (h_in, w_in) = (ah.input, aw.input);
    let (oh_n, ow_n) = (ah.output, aw.output);
    let sw = aw.stride;
    for kd in 0..ad.kernel {
        let offd = ad.tap_offset(kd);
        let (dlo, dhi) = valid_range(offd, ad.stride, ad.input, ad.output);
        for kh in 0..ah.kernel {
            let offh = ah.tap_offset(kh);
            let (hlo, hhi) = valid_range(offh, ah.stride, h_in, oh_n);
            for kw in 0..aw.kernel {
                let wv = wk[(kd * ah.kernel + kh) * aw.kernel + kw];
                let offw = aw.tap_offset(kw);
                let (wlo, whi) = valid_range(offw, sw, w_in, ow_n);
                if wlo >= whi {
                    continue;
                }
                let iw0 = (wlo as isize * sw as isize + offw) as usize;
                for od in dlo..dhi {
                    let id = (od as isize * ad.stride as isize + offd) as usize;
                    for oh in hlo..hhi {
                        let ih = (oh as isize * ah.stride as isize + offh) as usize;
                        let irow = &xp[(id * h_in + ih) * w_in..(id * h_in + ih + 1) * w_in];
                        let orow =
                            &mut out[(od * oh_n + oh) * ow_n + wlo..(od * oh_n + oh) * ow_n + whi];
                        if sw == 1 {
                            for (o, &i) in orow.iter_mut().zip(&irow[iw0..]) {
                                *o += wv * i;
                            }
                        } else if sw == 2 {
                            // Pairs (vectorizes); the last element may lack its partner.
                            let src = &irow[iw0..];
                            let len = orow.len();
                            let full = len.min(src.len() / 2);
                            for (o, pair) in orow[..full].iter_mut().zip(src.chunks_exact(2)) {
                                *o += wv * pair[0];
                            }
                            if full < len {
                                orow[len - 1] += wv * src[2 * (len - 1)];
                            }
                        } else {
                            for (o, &i) in orow.iter_mut().zip(irow[iw0..].iter().step_by(sw)) {
                                *o += wv * i;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// im2col of `x` [cg, D, H, W] for the output rows `rows` (flattened (od, oh) indices) into
/// columns `coff..coff + rows.len()·oW` of `col` [cg·kD·kH·kW, ld].
fn im2col(
    x: &[f32],
    a: &[Axis; 3],
    col: &mut [f32],
    ld: usize,
    coff: usize,
    rows: std::ops::Range<usize>,
    parallel: bool,
) {
    let [ad, ah, aw] = a;
    let in_sz = ad.input * ah.input * aw.input;
    let (h_in, w_in) = (ah.input, aw.input);
    let (oh_n, ow_n) = (ah.output, aw.output);
    let width = rows.len() * ow_n;
    let (kh_n, kw_n) = (ah.kernel, aw.kernel);
    let kk = ad.kernel * kh_n * kw_n;
    let sw = aw.stride;
    let fill = |r: usize, row: &mut [f32]| {
        let row = &mut row[coff..coff + width];
        let ci = r / kk;
        let rem = r % kk;
        let (kd, kh, kw) = (rem / (kh_n * kw_n), (rem / kw_n) % kh_n, rem % kw_n);
        let plane = &x[ci * in_sz..(ci + 1) * in_sz];
        let offd = ad.tap_offset(kd);
        let offh = ah.tap_offset(kh);
        let offw = aw.tap_offset(kw);
        let (dlo, dhi) = valid_range(offd, ad.stride, ad.input, ad.output);
        let (hlo, hhi) = valid_range(offh, ah.stride, h_in, oh_n);
        let (wlo, whi) = valid_range(offw, sw, w_in, ow_n);
        let iw0 = (wlo as isize * sw as isize + offw).max(0) as usize;
        for (t, orow) in rows.clone().zip(row.chunks_mut(ow_n)) {
            let (od, oh) = (t / oh_n, t % oh_n);
            if od < dlo || od >= dhi || oh < hlo || oh >= hhi || wlo >= whi {
                orow.fill(0.0);
                continue;
            }
            let id = (od as isize * ad.stride as isize + offd) as usize;
            let ih = (oh as isize * ah.stride as isize + offh) as usize;
            let irow = &plane[(id * h_in + ih) * w_in..(id * h_in + ih + 1) * w_in];
            orow[..wlo].fill(0.0);
            orow[whi..].fill(0.0);
            let dst = &mut orow[wlo..whi];
            if sw == 1 {
                dst.copy_from_slice(&irow[iw0..iw0 + dst.len()]);
            } else if sw == 2 {
                // Pairs (vectorizes as a deinterleave); the last element may lack its partner.
                let src = &irow[iw0..];
                let len = dst.len();
                let full = len.min(src.len() / 2);
                for (o, pair) in dst[..full].iter_mut().zip(src.chunks_exact(2)) {
                    *o = pair[0];
                }
                if full < len {
                    dst[len - 1] = src[2 * (len - 1)];
                }
            } else {
                for (o, &i) in dst.iter_mut().zip(irow[iw0..].iter().step_by(sw)) {
                    *o = i;
                }
            }
        }
    };
    if width == 0 {
        return;
    }
    if parallel {
        let min_rows = (1usize << 14).div_ceil(width).max(1);
        col.par_chunks_mut(ld)
            .with_min_len(min_rows)
            .enumerate()
            .for_each(|(r, row)| fill(r, row));
    } else {
        for (r, row) in col.chunks_mut(ld).enumerate() {
            fill(r, row);
        }
    }
}

// ---- ConvTranspose ---------------------------------------------------------------------------

fn conv_transpose_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let node = ctx.node;
    let ConvOperands {
        x,
        w,
        bias,
        sp,
        group,
    } = conv_operands("ConvTranspose", ctx, inputs)?;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if w.shape()[0] != c {
        return Err(OpError(format!(
            "input channels {c} do not match the weight's first dim {} (weight is [C, M/group, k...])",
            w.shape()[0]
        )));
    }
    if c % group != 0 {
        return Err(OpError(format!(
            "input channels {c} are not divisible by group {group}"
        )));
    }
    let mg = w.shape()[1];
    let m = mg * group;
    let kernel = kernel_shape(node, sp, Some(&w.shape()[2..]))?;
    let bias = bias_vec(bias, m)?;
    let strides = usize_list(node, "strides", sp, 1, 1)?;
    let dilations = usize_list(node, "dilations", sp, 1, 1)?;
    let out_pad = usize_list(node, "output_padding", sp, 0, 0)?;
    let mode = auto_pad(node)?;
    let pads = if mode == AutoPad::NotSet {
        usize_list(node, "pads", 2 * sp, 0, 0)?
    } else {
        vec![0; 2 * sp]
    };
    let out_shape: Option<Vec<i64>> = match node.attr_ints("output_shape")? {
        None => None,
        Some(v) if v.len() == sp => Some(v),
        Some(v) if v.len() == sp + 2 => Some(v[2..].to_vec()),
        Some(v) => {
            return Err(OpError(format!(
                "output_shape {v:?} should have {sp} values (one per spatial dim)"
            )));
        }
    };
    let mut axes = Vec::with_capacity(sp);
    for i in 0..sp {
        let mut a = Axis {
            input: x.shape()[2 + i],
            kernel: kernel[i],
            stride: strides[i],
            dilation: dilations[i],
            pad_begin: pads[i] as isize,
            pad_end: pads[i + sp] as isize,
            output: 0,
        };
        // Length of the un-cropped result.
        let full = (a.stride * a.input.saturating_sub(1) + out_pad[i] + a.span()) as isize;
        let (out, total) = if let Some(os) = &out_shape {
            if !(1..=MAX_ATTR).contains(&os[i]) {
                return Err(OpError(format!("output_shape {os:?} must be positive")));
            }
            (os[i] as isize, full - os[i] as isize)
        } else {
            match mode {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let out = (a.input * a.stride) as isize;
                    (out, (full - out).max(0))
                }
                AutoPad::Valid => (full, 0),
                AutoPad::NotSet => (full - a.pad_begin - a.pad_end, a.pad_begin + a.pad_end),
            }
        };
        if out_shape.is_some() || matches!(mode, AutoPad::SameUpper | AutoPad::SameLower) {
            let small = total.div_euclid(2);
            a.pad_begin = if mode == AutoPad::SameUpper {
                small
            } else {
                total - small
            };
            a.pad_end = total - a.pad_begin;
        } else if mode == AutoPad::Valid {
            a.pad_begin = 0;
            a.pad_end = 0;
        }
        if out < 1 {
            return Err(OpError(format!(
                "ConvTranspose output size along spatial axis {i} would be {out} (input {}, \
                 stride {}, kernel {}, pads {}+{})",
                a.input, a.stride, a.kernel, a.pad_begin, a.pad_end
            )));
        }
        a.output = out as usize;
        axes.push(a);
    }
    let a3 = to3(&axes);
    let mut shape = vec![n, m];
    shape.extend(axes.iter().map(|a| a.output));
    checked_len(&shape)?;
    let x = x.as_standard_layout();
    let w = w.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let ws = w.as_slice().expect("standard layout");
    let out = conv_transpose_forward(xs, n, c, ws, mg, group, bias.as_deref(), &a3);
    single(ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| OpError(e.to_string()))?)
}

/// Transposed convolution of `x` [n, c, D, H, W] with `w` [c, mg, kD, kH, kW]; returns
/// [n, mg·group, oD, oH, oW].
#[allow(clippy::too_many_arguments)]
fn conv_transpose_forward(
    x: &[f32],
    n: usize,
    c: usize,
    w: &[f32],
    mg: usize,
    group: usize,
    bias: Option<&[f32]>,
    a: &[Axis; 3],
) -> Vec<f32> {
    let m = mg * group;
    let in_sz = a[0].input * a[1].input * a[2].input;
    let out_sz = a[0].output * a[1].output * a[2].output;
    let kk = a[0].kernel * a[1].kernel * a[2].kernel;
    let cg = c / group;
    let rows = mg * kk;
    let mut out = zeroed::<f32>(n * m * out_sz);
    if out.is_empty() {
        return out;
    }
    if in_sz == 0 {
        for chunk in out.chunks_mut(m * out_sz) {
            fill_bias(chunk, out_sz, 0, bias);
        }
        return out;
    }
    with_scratch(rows * in_sz, |col| {
        for (u, chunk) in out.chunks_mut(mg * out_sz).enumerate() {
            let (ni, g) = (u / group, u % group);
            // col [mg·kk, in] = W_gᵀ [mg·kk, cg] · X_g [cg, in]
            let wm = Mat::rows(w, g * cg * rows, rows).t();
            let xm = Mat::rows(x, (ni * c + g * cg) * in_sz, in_sz);
            sgemm(rows, cg, in_sz, 1.0, wm, xm, 0.0, col, in_sz);
            let col = &*col;
            chunk
                .par_chunks_mut(out_sz)
                .enumerate()
                .for_each(|(mo, plane)| {
                    fill_bias(plane, out_sz, g * mg + mo, bias);
                    col2im_plane(&col[mo * kk * in_sz..(mo + 1) * kk * in_sz], a, plane)
                });
        }
    });
    out
}

/// Scatter-adds the rows `col` [kD·kH·kW, D·H·W] of one output channel into `out` [oD, oH, oW].
fn col2im_plane(col: &[f32], a: &[Axis; 3], out: &mut [f32]) {
    let [ad, ah, aw] = a;
    let (h_in, w_in) = (ah.input, aw.input);
    let in_sz = ad.input * h_in * w_in;
    let (oh_n, ow_n) = (ah.output, aw.output);
    let sw = aw.stride;
    for kd in 0..ad.kernel {
        let offd = ad.tap_offset(kd);
        let (dlo, dhi) = valid_range(offd, ad.stride, ad.output, ad.input);
        for kh in 0..ah.kernel {
            let offh = ah.tap_offset(kh);
            let (hlo, hhi) = valid_range(offh, ah.stride, oh_n, h_in);
            for kw in 0..aw.kernel {
                let offw = aw.tap_offset(kw);
                let (wlo, whi) = valid_range(offw, sw, ow_n, w_in);
                if wlo >= whi {
                    continue;
                }
                let r = (kd * ah.kernel + kh) * aw.kernel + kw;
                let row = &col[r * in_sz..(r + 1) * in_sz];
                let ow0 = (wlo as isize * sw as isize + offw) as usize;
                for id in dlo..dhi {
                    let od = (id as isize * ad.stride as isize + offd) as usize;
                    for ih in hlo..hhi {
                        let oh = (ih as isize * ah.stride as isize + offh) as usize;
                        let src =
                            &row[(id * h_in + ih) * w_in + wlo..(id * h_in + ih) * w_in + whi];
                        let orow = &mut out[(od * oh_n + oh) * ow_n..(od * oh_n + oh + 1) * ow_n];
                        if sw == 1 {
                            for (o, &v) in orow[ow0..].iter_mut().zip(src) {
                                *o += v;
                            }
                        } else {
                            for (o, &v) in orow[ow0..].iter_mut().step_by(sw).zip(src) {
                                *o += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::super::testutil::{Rng, assert_arrays_close, err, ints, node, run1};
    use super::{Axis, LaneKernel, conv_lanes, to3};
    use crate::ir::{Attribute, Node};

    /// Spatial dims padded to 3 (leading 1s).
    fn pad3(v: &[usize], fill: usize) -> [usize; 3] {
        let mut o = [fill; 3];
        o[3 - v.len()..].copy_from_slice(v);
        o
    }

    /// Naive direct convolution. `pb` are the begin pads; `out` the output spatial dims.
    #[allow(clippy::too_many_arguments)]
    fn conv_ref(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        b: Option<&ArrayD<f32>>,
        group: usize,
        strides: &[usize],
        dil: &[usize],
        pb: &[isize],
        out: &[usize],
    ) -> ArrayD<f32> {
        let sp = x.ndim() - 2;
        let (n, c, m) = (x.shape()[0], x.shape()[1], w.shape()[0]);
        let (cg, mg) = (c / group, m / group);
        let i3 = pad3(&x.shape()[2..], 1);
        let k3 = pad3(&w.shape()[2..], 1);
        let o3 = pad3(out, 1);
        let s3 = pad3(strides, 1);
        let d3 = pad3(dil, 1);
        let mut p3 = [0isize; 3];
        p3[3 - sp..].copy_from_slice(pb);
        let xs = x.as_standard_layout().iter().copied().collect::<Vec<_>>();
        let ws = w.as_standard_layout().iter().copied().collect::<Vec<_>>();
        let mut y = Vec::new();
        for ni in 0..n {
            for mi in 0..m {
                let g = mi / mg;
                for od in 0..o3[0] {
                    for oh in 0..o3[1] {
                        for ow in 0..o3[2] {
                            let mut s = b.map_or(0.0, |b| b[[mi]] as f64);
                            for ci in 0..cg {
                                let cin = g * cg + ci;
                                for kd in 0..k3[0] {
                                    for kh in 0..k3[1] {
                                        for kw in 0..k3[2] {
                                            let id = (od * s3[0] + kd * d3[0]) as isize - p3[0];
                                            let ih = (oh * s3[1] + kh * d3[1]) as isize - p3[1];
                                            let iw = (ow * s3[2] + kw * d3[2]) as isize - p3[2];
                                            if id < 0
                                                || ih < 0
                                                || iw < 0
                                                || id >= i3[0] as isize
                                                || ih >= i3[1] as isize
                                                || iw >= i3[2] as isize
                                            {
                                                continue;
                                            }
                                            let (id, ih, iw) =
                                                (id as usize, ih as usize, iw as usize);
                                            let xv = xs[(((ni * c + cin) * i3[0] + id) * i3[1]
                                                + ih)
                                                * i3[2]
                                                + iw];
                                            let wv = ws[(((mi * cg + ci) * k3[0] + kd) * k3[1]
                                                + kh)
                                                * k3[2]
                                                + kw];
                                            s += xv as f64 * wv as f64;
                                        }
                                    }
                                }
                            }
                            y.push(s as f32);
                        }
                    }
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend_from_slice(out);
        ArrayD::from_shape_vec(IxDyn(&shape), y).unwrap()
    }

    fn ilist(v: &[usize]) -> Attribute {
        Attribute::Ints(v.iter().map(|&x| x as i64).collect())
    }

    #[test]
    fn conv_onnx_doc_examples() {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 5, 5]), (0..25).map(|v| v as f32).collect())
            .unwrap();
        let w = ArrayD::from_elem(IxDyn(&[1, 1, 3, 3]), 1.0f32);
        let n = node("Conv", 2, 1, vec![("pads", ints(&[1, 1, 1, 1]))]);
        let y = run1(&n, &[Some(&x), Some(&w)]);
        let want = [
            12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81., 93., 144.,
            153., 162., 111., 72., 111., 117., 123., 84.,
        ];
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
        let n = node("Conv", 2, 1, vec![]);
        let y = run1(&n, &[Some(&x), Some(&w)]);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [54., 63., 72., 99., 108., 117., 144., 153., 162.]
        );
        let n = node(
            "Conv",
            2,
            1,
            vec![("pads", ints(&[1, 1, 1, 1])), ("strides", ints(&[2, 2]))],
        );
        let y = run1(&n, &[Some(&x), Some(&w)]);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [12., 27., 24., 63., 108., 81., 72., 117., 84.]
        );
    }

    struct Case {
        spatial: Vec<usize>,
        kernel: Vec<usize>,
        strides: Vec<usize>,
        dil: Vec<usize>,
        pads: Vec<usize>,
        auto_pad: &'static str,
        n: usize,
        cg: usize,
        mg: usize,
        group: usize,
        bias: bool,
    }

    fn check_conv(rng: &mut Rng, c: &Case) {
        let sp = c.spatial.len();
        let mut xshape = vec![c.n, c.cg * c.group];
        xshape.extend(&c.spatial);
        let mut wshape = vec![c.mg * c.group, c.cg];
        wshape.extend(&c.kernel);
        let x = rng.array(&xshape);
        let w = rng.array(&wshape);
        let b = rng.array(&[c.mg * c.group]);
        let mut out = vec![];
        let mut pb = vec![];
        for i in 0..sp {
            let span = c.dil[i] * (c.kernel[i] - 1) + 1;
            match c.auto_pad {
                "SAME_UPPER" | "SAME_LOWER" => {
                    let o = c.spatial[i].div_ceil(c.strides[i]);
                    let total = ((o - 1) * c.strides[i] + span).saturating_sub(c.spatial[i]);
                    pb.push(if c.auto_pad == "SAME_UPPER" {
                        total / 2
                    } else {
                        total - total / 2
                    } as isize);
                    out.push(o);
                }
                "VALID" => {
                    pb.push(0);
                    out.push((c.spatial[i] - span) / c.strides[i] + 1);
                }
                _ => {
                    pb.push(c.pads[i] as isize);
                    out.push((c.spatial[i] + c.pads[i] + c.pads[i + sp] - span) / c.strides[i] + 1);
                }
            }
        }
        let mut attrs = vec![
            ("strides", ilist(&c.strides)),
            ("dilations", ilist(&c.dil)),
            ("group", Attribute::Int(c.group as i64)),
            ("auto_pad", Attribute::String(c.auto_pad.into())),
        ];
        if c.auto_pad == "NOTSET" {
            attrs.push(("pads", ilist(&c.pads)));
        }
        if rng.range(0, 1) == 1 {
            attrs.push(("kernel_shape", ilist(&c.kernel)));
        }
        let nd = node("Conv", if c.bias { 3 } else { 2 }, 1, attrs);
        let inputs = if c.bias {
            vec![Some(&x), Some(&w), Some(&b)]
        } else {
            vec![Some(&x), Some(&w)]
        };
        let y = run1(&nd, &inputs);
        let want = conv_ref(
            &x,
            &w,
            c.bias.then_some(&b),
            c.group,
            &c.strides,
            &c.dil,
            &pb,
            &out,
        );
        assert_arrays_close(
            &y,
            &want,
            1e-5,
            &format!(
                "conv x{xshape:?} w{wshape:?} s{:?} d{:?} p{:?} {} g{}",
                c.strides, c.dil, c.pads, c.auto_pad, c.group
            ),
        );
    }

    #[test]
    fn conv_random_against_naive() {
        let mut rng = Rng::new(3);
        let modes = ["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"];
        for case in 0..150 {
            let sp = 1 + case % 3;
            let kernel: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
            let strides: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
            let dil: Vec<usize> = (0..sp).map(|_| rng.range(1, 2)).collect();
            let pads: Vec<usize> = (0..2 * sp).map(|_| rng.range(0, 2)).collect();
            let max_sz = if sp == 3 { 6 } else { 11 };
            let spatial: Vec<usize> = (0..sp)
                .map(|i| rng.range(dil[i] * (kernel[i] - 1) + 1, max_sz))
                .collect();
            let (group, cg, mg) = match case % 5 {
                0 => (1, rng.range(1, 5), rng.range(1, 5)),
                1 => (rng.range(2, 3), rng.range(1, 3), rng.range(1, 3)),
                2 => (rng.range(2, 6), 1, 1),               // depthwise
                3 => (rng.range(2, 4), 1, rng.range(2, 3)), // depthwise with multiplier
                _ => (1, rng.range(1, 8), rng.range(1, 8)),
            };
            let c = Case {
                auto_pad: modes[rng.range(0, modes.len() - 1)],
                spatial,
                kernel,
                strides,
                dil,
                pads,
                n: rng.range(1, 3),
                cg,
                mg,
                group,
                bias: rng.range(0, 1) == 1,
            };
            check_conv(&mut rng, &c);
        }
    }

    #[test]
    fn conv_special_paths() {
        let mut rng = Rng::new(5);
        let base = |spatial: Vec<usize>, kernel: Vec<usize>| Case {
            strides: vec![1; spatial.len()],
            dil: vec![1; spatial.len()],
            pads: vec![0; 2 * spatial.len()],
            auto_pad: "NOTSET",
            spatial,
            kernel,
            n: 1,
            cg: 1,
            mg: 1,
            group: 1,
            bias: true,
        };
        // Pointwise (input used directly as GEMM operand), batch 1 and 3, grouped.
        for (n, group) in [(1, 1), (3, 1), (2, 2)] {
            check_conv(
                &mut rng,
                &Case {
                    n,
                    group,
                    cg: 5,
                    mg: 7,
                    ..base(vec![6, 9], vec![1, 1])
                },
            );
        }
        // Large single product (threaded GEMM, parallel im2col), with padding and stride.
        check_conv(
            &mut rng,
            &Case {
                cg: 32,
                mg: 48,
                pads: vec![1, 2, 1, 0],
                strides: vec![1, 2],
                ..base(vec![20, 23], vec![3, 3])
            },
        );
        check_conv(
            &mut rng,
            &Case {
                n: 2,
                cg: 24,
                mg: 40,
                pads: vec![1; 4],
                ..base(vec![17, 17], vec![3, 3])
            },
        );
        // Large planes processed in im2col column blocks (last block partial; 3-D blocks
        // crossing depth slices).
        check_conv(
            &mut rng,
            &Case {
                cg: 64,
                mg: 8,
                pads: vec![1; 4],
                ..base(vec![53, 47], vec![3, 3])
            },
        );
        check_conv(
            &mut rng,
            &Case {
                cg: 16,
                mg: 4,
                pads: vec![1; 6],
                ..base(vec![4, 24, 24], vec![3, 3, 3])
            },
        );
        // Several images with large planes (one task per image and group).
        check_conv(
            &mut rng,
            &Case {
                n: 2,
                cg: 3,
                mg: 4,
                pads: vec![1; 4],
                ..base(vec![36, 36], vec![3, 3])
            },
        );
        // Images batched into one product, with a partial last chunk (3 images, 2 per chunk).
        check_conv(
            &mut rng,
            &Case {
                n: 3,
                cg: 6,
                mg: 5,
                group: 2,
                ..base(vec![22, 22], vec![3, 3])
            },
        );
        // Depthwise with stride 2 and larger kernel.
        check_conv(
            &mut rng,
            &Case {
                group: 16,
                strides: vec![2, 2],
                pads: vec![2, 2, 2, 2],
                ..base(vec![19, 21], vec![5, 5])
            },
        );
        // Kernel exactly the padded input; pads larger than the kernel.
        check_conv(
            &mut rng,
            &Case {
                cg: 2,
                mg: 3,
                pads: vec![2, 3],
                ..base(vec![4], vec![9])
            },
        );
        check_conv(
            &mut rng,
            &Case {
                cg: 2,
                mg: 3,
                pads: vec![4, 5],
                ..base(vec![3], vec![2])
            },
        );
    }

    #[test]
    fn conv_lane_paths() {
        // Enough images for the lane kernel (16 per vector with AVX-512, 8 with AVX2) and small
        // planes; partial last lane groups, padded channel tiles, groups, strides, dilations,
        // 1-D and 3-D, taps that are all padding.
        let mut rng = Rng::new(11);
        let base = |n: usize, spatial: Vec<usize>, kernel: Vec<usize>| Case {
            strides: vec![1; spatial.len()],
            dil: vec![1; spatial.len()],
            pads: vec![1; 2 * spatial.len()],
            auto_pad: "NOTSET",
            spatial,
            kernel,
            n,
            cg: 1,
            mg: 16,
            group: 1,
            bias: true,
        };
        let cases = [
            base(64, vec![8, 8], vec![3, 3]),
            Case {
                cg: 5,
                mg: 19,
                ..base(16, vec![8, 8], vec![3, 3])
            },
            Case {
                cg: 3,
                mg: 8,
                group: 2,
                bias: false,
                ..base(17, vec![4, 4], vec![3, 3])
            },
            Case {
                cg: 4,
                mg: 7,
                strides: vec![2, 1],
                dil: vec![1, 2],
                pads: vec![2, 0, 1, 1],
                ..base(33, vec![7, 5], vec![3, 2])
            },
            Case {
                cg: 2,
                mg: 5,
                dil: vec![2],
                pads: vec![2, 1],
                ..base(20, vec![9], vec![3])
            },
            Case {
                cg: 3,
                mg: 17,
                ..base(16, vec![3, 4, 4], vec![3, 3, 3])
            },
            Case {
                cg: 4,
                mg: 8,
                pads: vec![0; 4],
                ..base(16, vec![6, 6], vec![1, 1])
            },
            Case {
                cg: 2,
                mg: 3,
                strides: vec![2, 2],
                auto_pad: "SAME_UPPER",
                ..base(24, vec![7, 7], vec![3, 3])
            },
            Case {
                cg: 2,
                mg: 4,
                pads: vec![3, 3, 3, 3],
                ..base(16, vec![2, 2], vec![5, 5])
            },
            // Depthwise (own kernel; one lane group, so split over threads), with a channel
            // multiplier, stride 2, no bias.
            Case {
                mg: 1,
                group: 24,
                ..base(16, vec![4, 4], vec![3, 3])
            },
            Case {
                mg: 3,
                group: 5,
                strides: vec![2, 2],
                bias: false,
                ..base(17, vec![8, 7], vec![3, 3])
            },
        ];
        for c in &cases {
            check_conv(&mut rng, c);
        }
    }

    /// Every lane kernel this CPU supports (not only the one `lane_kernel` picks), with its
    /// transpose, against the naive convolution.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn lane_kernel_variants() {
        use super::{
            lanes_avx2, lanes_avx512, lanes_dw_avx2, lanes_dw_avx512, transpose_avx2,
            transpose_avx512,
        };
        let mut variants = Vec::new();
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            variants.push(LaneKernel {
                lanes: 16,
                tile: 16,
                run: lanes_avx512,
                run_dw: lanes_dw_avx512,
                transpose: transpose_avx512,
            });
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            variants.push(LaneKernel {
                lanes: 8,
                tile: 8,
                run: lanes_avx2,
                run_dw: lanes_dw_avx2,
                transpose: transpose_avx2,
            });
        }
        let mut rng = Rng::new(12);
        for k in variants {
            for (rows, cols) in [(1, 1), (16, 16), (17, 33), (40, 8), (8, 40), (5, 100)] {
                let (lds, ldd) = (cols + 3, rows + 2);
                let src: Vec<f32> = (0..rows * lds).map(|_| rng.f32()).collect();
                let mut dst = vec![f32::NAN; cols * ldd];
                (k.transpose)(&src, lds, &mut dst, ldd, rows, cols);
                for (i, &v) in dst.iter().enumerate() {
                    let (c, r) = (i / ldd, i % ldd);
                    if r < rows {
                        assert_eq!(v, src[r * lds + c], "{rows}x{cols} at ({r}, {c})");
                    } else {
                        assert!(v.is_nan(), "{rows}x{cols}: wrote past the rows");
                    }
                }
            }
            for (group, cg, mg) in [(2, 3, 11), (6, 1, 2)] {
                let n = 2 * k.lanes + 3;
                let (c, m) = (group * cg, group * mg);
                let x = rng.array(&[n, c, 5, 6]);
                let w = rng.array(&[m, cg, 3, 2]);
                let b = rng.array(&[m]);
                let axes = [
                    Axis {
                        input: 5,
                        kernel: 3,
                        stride: 1,
                        dilation: 2,
                        pad_begin: 2,
                        pad_end: 1,
                        output: 4,
                    },
                    Axis {
                        input: 6,
                        kernel: 2,
                        stride: 2,
                        dilation: 1,
                        pad_begin: 1,
                        pad_end: 0,
                        output: 3,
                    },
                ];
                let mut out = vec![0.0f32; n * m * 12];
                let bias: Vec<f32> = b.iter().copied().collect();
                conv_lanes(
                    x.as_slice().unwrap(),
                    c,
                    w.as_slice().unwrap(),
                    m,
                    group,
                    Some(&bias),
                    &to3(&axes),
                    k,
                    &mut out,
                );
                let got = ArrayD::from_shape_vec(IxDyn(&[n, m, 4, 3]), out).unwrap();
                let want = conv_ref(&x, &w, Some(&b), group, &[1, 2], &[2, 1], &[2, 1], &[4, 3]);
                assert_arrays_close(
                    &got,
                    &want,
                    1e-5,
                    &format!("{} lanes, {group} groups of {cg}", k.lanes),
                );
            }
        }
    }

    fn conv_node(attrs: Vec<(&str, Attribute)>) -> Node {
        node("Conv", 3, 1, attrs)
    }

    #[test]
    fn conv_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 8, 8]));
        let w = ArrayD::<f32>::zeros(IxDyn(&[16, 16, 3, 3]));
        let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w)]);
        assert_eq!(msg, "input channels 3 do not match weight's 16 × group 1");
        let w = ArrayD::<f32>::zeros(IxDyn(&[16, 3, 3, 3]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[15]));
        let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w), Some(&b)]);
        assert!(msg.contains("bias"), "{msg}");
        let msg = err(
            &conv_node(vec![("strides", ints(&[0, 1]))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("strides"), "{msg}");
        let msg = err(
            &conv_node(vec![("strides", ints(&[1]))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("expected 2"), "{msg}");
        let msg = err(
            &conv_node(vec![("pads", ints(&[1, 1, -1, 1]))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("pads"), "{msg}");
        let msg = err(
            &conv_node(vec![("dilations", ints(&[4, 4]))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("larger than the padded input"), "{msg}");
        let msg = err(
            &conv_node(vec![("kernel_shape", ints(&[5, 5]))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("kernel_shape"), "{msg}");
        let msg = err(
            &conv_node(vec![("auto_pad", Attribute::String("SAME".into()))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("auto_pad"), "{msg}");
        let msg = err(
            &conv_node(vec![("group", Attribute::Int(0))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("group"), "{msg}");
        let w5 = ArrayD::<f32>::zeros(IxDyn(&[16, 3, 3]));
        let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w5)]);
        assert!(msg.contains("rank"), "{msg}");
        let x2 = ArrayD::<f32>::zeros(IxDyn(&[1, 3]));
        let msg = err(&conv_node(vec![]), &[Some(&x2), Some(&w)]);
        assert!(msg.contains("[N, C"), "{msg}");
        let wg = ArrayD::<f32>::zeros(IxDyn(&[5, 1, 3, 3]));
        let msg = err(
            &conv_node(vec![("group", Attribute::Int(3))]),
            &[Some(&x), Some(&wg)],
        );
        assert!(msg.contains("not divisible"), "{msg}");
        let w0 = ArrayD::<f32>::zeros(IxDyn(&[4, 3, 0, 3]));
        let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w0)]);
        assert!(msg.contains("zero"), "{msg}");
    }

    /// Naive transposed convolution by scattering, with begin pads `pb` and output dims `out`.
    #[allow(clippy::too_many_arguments)]
    fn conv_t_ref(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        b: Option<&ArrayD<f32>>,
        group: usize,
        strides: &[usize],
        dil: &[usize],
        pb: &[isize],
        out: &[usize],
    ) -> ArrayD<f32> {
        let sp = x.ndim() - 2;
        let (n, c, mg) = (x.shape()[0], x.shape()[1], w.shape()[1]);
        let cg = c / group;
        let m = mg * group;
        let mut shape = vec![n, m];
        shape.extend_from_slice(out);
        let mut y = ArrayD::<f64>::zeros(IxDyn(&shape));
        for (idx, &xv) in x.indexed_iter() {
            let (ni, ci) = (idx[0], idx[1]);
            let g = ci / cg;
            for (widx, &wv) in w.indexed_iter() {
                if widx[0] != ci {
                    continue;
                }
                let mo = g * mg + widx[1];
                let mut oidx = vec![ni, mo];
                let mut inside = true;
                for i in 0..sp {
                    let o = (idx[2 + i] * strides[i] + widx[2 + i] * dil[i]) as isize - pb[i];
                    if o < 0 || o >= out[i] as isize {
                        inside = false;
                    }
                    oidx.push(o.max(0) as usize);
                }
                if inside {
                    y[IxDyn(&oidx)] += xv as f64 * wv as f64;
                }
            }
        }
        if let Some(b) = b {
            for (idx, v) in y.indexed_iter_mut() {
                *v += b[[idx[1]]] as f64;
            }
        }
        y.mapv(|v| v as f32)
    }

    #[test]
    fn conv_transpose_onnx_doc_example() {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), (0..9).map(|v| v as f32).collect())
            .unwrap();
        let w = ArrayD::from_elem(IxDyn(&[1, 2, 3, 3]), 1.0f32);
        let y = run1(&node("ConvTranspose", 2, 1, vec![]), &[Some(&x), Some(&w)]);
        assert_eq!(y.shape(), [1, 2, 5, 5]);
        let plane = [
            0., 1., 3., 3., 2., 3., 8., 15., 12., 7., 9., 21., 36., 27., 15., 9., 20., 33., 24.,
            13., 6., 13., 21., 15., 8.,
        ];
        let got: Vec<f32> = y.iter().copied().collect();
        assert_eq!(&got[..25], plane);
        assert_eq!(&got[25..], plane);
    }

    #[test]
    fn conv_transpose_random_against_naive() {
        let mut rng = Rng::new(9);
        for case in 0..120 {
            let sp = 1 + case % 3;
            let kernel: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
            let strides: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
            let dil: Vec<usize> = (0..sp).map(|_| rng.range(1, 2)).collect();
            let spatial: Vec<usize> = (0..sp)
                .map(|_| rng.range(1, if sp == 3 { 4 } else { 7 }))
                .collect();
            let outpad: Vec<usize> = (0..sp)
                .map(|i| rng.range(0, strides[i].max(dil[i]) - 1))
                .collect();
            let group = rng.range(1, 3);
            let (cg, mg) = (rng.range(1, 3), rng.range(1, 3));
            let n = rng.range(1, 2);
            let mut xshape = vec![n, cg * group];
            xshape.extend(&spatial);
            let mut wshape = vec![cg * group, mg];
            wshape.extend(&kernel);
            let x = rng.array(&xshape);
            let w = rng.array(&wshape);
            let b = rng.array(&[mg * group]);
            let full: Vec<isize> = (0..sp)
                .map(|i| {
                    (strides[i] * (spatial[i] - 1) + outpad[i] + dil[i] * (kernel[i] - 1) + 1)
                        as isize
                })
                .collect();
            let mut attrs = vec![
                ("strides", ilist(&strides)),
                ("dilations", ilist(&dil)),
                ("output_padding", ilist(&outpad)),
                ("group", Attribute::Int(group as i64)),
            ];
            let mode = case % 5;
            let (pb, out): (Vec<isize>, Vec<usize>) = match mode {
                0 | 1 => {
                    // Explicit pads (kept small enough for a positive output).
                    let pads: Vec<usize> = (0..2 * sp).map(|_| rng.range(0, 1)).collect();
                    let pads: Vec<usize> = pads
                        .iter()
                        .enumerate()
                        .map(|(j, &p)| if full[j % sp] > 2 { p } else { 0 })
                        .collect();
                    attrs.push(("pads", ilist(&pads)));
                    (
                        (0..sp).map(|i| pads[i] as isize).collect(),
                        (0..sp)
                            .map(|i| (full[i] - pads[i] as isize - pads[i + sp] as isize) as usize)
                            .collect(),
                    )
                }
                2 => {
                    // output_shape: pads derived (NOTSET: extra pad at the beginning).
                    let os: Vec<usize> = (0..sp)
                        .map(|i| (full[i] as usize).saturating_sub(rng.range(0, 2)).max(1))
                        .collect();
                    attrs.push(("output_shape", ilist(&os)));
                    let pb = (0..sp)
                        .map(|i| {
                            let t = full[i] - os[i] as isize;
                            t - t / 2
                        })
                        .collect();
                    (pb, os)
                }
                3 | 4 => {
                    let upper = mode == 3;
                    attrs.push((
                        "auto_pad",
                        Attribute::String(if upper { "SAME_UPPER" } else { "SAME_LOWER" }.into()),
                    ));
                    let out: Vec<usize> = (0..sp).map(|i| spatial[i] * strides[i]).collect();
                    let pb = (0..sp)
                        .map(|i| {
                            let t = (full[i] - out[i] as isize).max(0);
                            if upper { t / 2 } else { t - t / 2 }
                        })
                        .collect();
                    (pb, out)
                }
                _ => unreachable!(),
            };
            let with_bias = case % 2 == 0;
            let nd = node("ConvTranspose", if with_bias { 3 } else { 2 }, 1, attrs);
            let inputs = if with_bias {
                vec![Some(&x), Some(&w), Some(&b)]
            } else {
                vec![Some(&x), Some(&w)]
            };
            let y = run1(&nd, &inputs);
            let want = conv_t_ref(
                &x,
                &w,
                with_bias.then_some(&b),
                group,
                &strides,
                &dil,
                &pb,
                &out,
            );
            assert_arrays_close(
                &y,
                &want,
                1e-5,
                &format!(
                    "convT x{xshape:?} w{wshape:?} s{strides:?} d{dil:?} op{outpad:?} mode {mode}"
                ),
            );
        }
    }

    #[test]
    fn conv_transpose_output_shape_variants() {
        let mut rng = Rng::new(21);
        let x = rng.array(&[1, 2, 3, 3]);
        let w = rng.array(&[2, 3, 3, 3]);
        // output_shape given with N and C, larger than natural (negative padding → zeros).
        let nd = node(
            "ConvTranspose",
            2,
            1,
            vec![
                ("strides", ints(&[2, 2])),
                ("output_shape", ints(&[1, 3, 10, 8])),
            ],
        );
        let y = run1(&nd, &[Some(&x), Some(&w)]);
        // natural 7×7: totals −3 and −1 → begin pads −1 and 0 (NOTSET puts the larger half first).
        let want = conv_t_ref(&x, &w, None, 1, &[2, 2], &[1, 1], &[-1, 0], &[10, 8]);
        assert_arrays_close(&y, &want, 1e-5, "output_shape larger");
        // VALID ignores pads.
        let nd = node(
            "ConvTranspose",
            2,
            1,
            vec![
                ("auto_pad", Attribute::String("VALID".into())),
                ("strides", ints(&[2, 1])),
            ],
        );
        let y = run1(&nd, &[Some(&x), Some(&w)]);
        let want = conv_t_ref(&x, &w, None, 1, &[2, 1], &[1, 1], &[0, 0], &[7, 5]);
        assert_arrays_close(&y, &want, 1e-5, "VALID");
    }

    #[test]
    fn conv_transpose_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 5, 5]));
        let w = ArrayD::<f32>::zeros(IxDyn(&[3, 2, 3, 3]));
        let msg = err(&node("ConvTranspose", 2, 1, vec![]), &[Some(&x), Some(&w)]);
        assert!(msg.contains("input channels 4"), "{msg}");
        let w = ArrayD::<f32>::zeros(IxDyn(&[4, 2, 3, 3]));
        let msg = err(
            &node("ConvTranspose", 2, 1, vec![("pads", ints(&[4, 4, 4, 4]))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("output size"), "{msg}");
        let msg = err(
            &node(
                "ConvTranspose",
                2,
                1,
                vec![("output_shape", ints(&[5, 5, 5]))],
            ),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("output_shape"), "{msg}");
        let msg = err(
            &node(
                "ConvTranspose",
                2,
                1,
                vec![("output_shape", ints(&[1 << 29, 1 << 29]))],
            ),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("too large"), "{msg}");
        let msg = err(
            &node("ConvTranspose", 2, 1, vec![("group", Attribute::Int(3))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("divisible"), "{msg}");
        let msg = err(
            &node("ConvTranspose", 2, 1, vec![("output_padding", ints(&[1]))]),
            &[Some(&x), Some(&w)],
        );
        assert!(msg.contains("output_padding"), "{msg}");
    }
}
