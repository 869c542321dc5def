//! Direct 2-D (and 1-D) convolution for depthwise and small-channel convolutions, where
//! im2col + GEMM would run with a tiny inner dimension.
//!
//! Each task takes a block of output rows of one (image, group). It first copies the input
//! rows that block reads into a zero-padded, stride-split layout (per input channel and row,
//! `stride` phase rows where phase φ holds padded columns φ, φ + s, φ + 2s, ...), so that
//! every kernel tap of a run of consecutive output columns is one contiguous load, with no
//! bounds tests. Output values are then accumulated in registers: `T` output channels (1 for
//! depthwise) × `U` vectors of consecutive output columns, over every (input channel, tap),
//! and stored once; the bias starts the accumulators and the epilogue runs on each finished
//! row while it is in cache.

use rayon::prelude::*;

use super::simd::{Isa, SharedOut, Simd, isa_dispatch};
use super::{Axis, ConvEpilogue, valid_range, with_scratch};

/// Whether the direct kernel handles this convolution: 1-D or 2-D windows with non-negative
/// padding, and either one input channel per group or few input values per output.
pub(super) fn use_direct(a: &[Axis; 3], cg: usize, mg: usize) -> bool {
    let [ad, ah, aw] = a;
    let flat_depth = ad.input == 1 && ad.output == 1 && ad.kernel == 1 && ad.pad_begin == 0;
    let kk = ah.kernel * aw.kernel;
    flat_depth
        && ah.pad_begin >= 0
        && aw.pad_begin >= 0
        && (cg == 1 || cg * kk <= 32)
        && (mg <= 4 || cg * kk <= 32)
}

/// Output channels per register tile for `mg` channels per group.
fn channel_tile(isa: Isa, mg: usize) -> usize {
    if mg < 4 {
        1
    } else if isa == Isa::Avx512 {
        8
    } else {
        4
    }
}

/// The 2-D geometry of one direct convolution and its stride-split input layout.
#[derive(Clone, Copy)]
struct Geometry {
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    ph: usize,
    pw: usize,
    /// Length of one phase row: output columns rounded up to a whole column block, plus the
    /// largest tap shift.
    plen: usize,
}

/// One direct convolution: operands, geometry and the split into tasks.
pub(super) struct DirectJob<'a> {
    x: &'a [f32],
    /// Weights as [group, channel tile, cg, kh·kw, tile] (zero past the group's channels);
    /// for tiles of one channel this is the ONNX layout itself.
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    epilogue: Option<&'a ConvEpilogue>,
    c: usize,
    m: usize,
    group: usize,
    tile: usize,
    /// Output columns per register block (vectors × lanes).
    block: usize,
    g: Geometry,
    rows_per_task: usize,
    tasks_per_plane: usize,
    tasks: usize,
}

/// Runs the direct convolution of `x` [n, c, H, W] with `w` [m, c/group, kH, kW] into `out`
/// [n, m, oH, oW] (every element written).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_direct(
    isa: Isa,
    x: &[f32],
    [n, c, m, group]: [usize; 4],
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: Option<&ConvEpilogue>,
    a: &[Axis; 3],
    out: &mut [f32],
) {
    let [_, ah, aw] = a;
    let (cg, mg) = (c / group, m / group);
    let kk = ah.kernel * aw.kernel;
    let tile = channel_tile(isa, mg);
    let lanes = match isa {
        Isa::Avx512 => 16,
        _ => 8,
    };
    let block = lanes * vectors_per_block(tile, aw.output, lanes);
    let ow_pad = aw.output.div_ceil(block) * block;
    let plen = ow_pad + (aw.kernel - 1) * aw.dilation / aw.stride;
    let g = Geometry {
        ih: ah.input,
        iw: aw.input,
        oh: ah.output,
        ow: aw.output,
        kh: ah.kernel,
        kw: aw.kernel,
        sh: ah.stride,
        sw: aw.stride,
        dh: ah.dilation,
        dw: aw.dilation,
        ph: ah.pad_begin as usize,
        pw: aw.pad_begin as usize,
        plen,
    };
    // Weights in tiles (the ONNX layout already is that for tiles of one channel).
    let packed;
    let w = if tile == 1 {
        w
    } else {
        let tiles = mg.div_ceil(tile);
        let mut p = vec![0.0f32; group * tiles * cg * kk * tile];
        for gi in 0..group {
            for co in 0..mg {
                let (tb, t) = (co / tile, co % tile);
                for ci in 0..cg {
                    for k in 0..kk {
                        p[(((gi * tiles + tb) * cg + ci) * kk + k) * tile + t] =
                            w[((gi * mg + co) * cg + ci) * kk + k];
                    }
                }
            }
        }
        packed = p;
        &packed[..]
    };
    // Row blocks: enough tasks for the threads, and a stride-split input block that stays in
    // the L2 cache.
    let threads = rayon::current_num_threads();
    let planes = n * group;
    let want_blocks = (4 * threads).div_ceil(planes).clamp(1, g.oh.max(1));
    let row_floats = cg * g.sw * g.plen * g.sh;
    let fit_rows = ((1usize << 16) / row_floats.max(1)).max(1);
    let rows_per_task = g.oh.div_ceil(want_blocks).min(fit_rows).max(1);
    let tasks_per_plane = g.oh.div_ceil(rows_per_task);
    let job = DirectJob {
        x,
        w,
        bias,
        epilogue,
        c,
        m,
        group,
        tile,
        block,
        g,
        rows_per_task,
        tasks_per_plane,
        tasks: planes * tasks_per_plane,
    };
    assert!(
        out.len() >= n * m * g.oh * g.ow,
        "direct conv output too short"
    );
    assert!(
        x.len() >= n * c * g.ih * g.iw,
        "direct conv input too short"
    );
    let shared = SharedOut(out.as_mut_ptr());
    (0..job.tasks)
        .into_par_iter()
        .for_each(|t| direct_task(isa, &job, shared, t));
}

/// Vectors per column block: as many as the output row fills, up to the register budget.
fn vectors_per_block(tile: usize, ow: usize, lanes: usize) -> usize {
    let max = if tile == 1 { 4 } else { 2 };
    ow.div_ceil(lanes)
        .clamp(1, max)
        .next_power_of_two()
        .min(max)
}

isa_dispatch!(
    /// One task (a block of output rows of one image and group) for the instruction set.
    fn direct_task(job: &DirectJob<'_>, out: SharedOut, task: usize) => direct_task_generic
);

#[inline(always)]
fn direct_task_generic<S: Simd>(job: &DirectJob<'_>, out: SharedOut, task: usize) {
    let vectors = job.block / S::LANES;
    match (job.tile, vectors) {
        (1, 1) => direct_rows::<S, 1, 1>(job, out, task),
        (1, 2) => direct_rows::<S, 1, 2>(job, out, task),
        (1, _) => direct_rows::<S, 1, 4>(job, out, task),
        (4, 1) => direct_rows::<S, 4, 1>(job, out, task),
        (4, _) => direct_rows::<S, 4, 2>(job, out, task),
        (_, 1) => direct_rows::<S, 8, 1>(job, out, task),
        _ => direct_rows::<S, 8, 2>(job, out, task),
    }
}

/// Copies padded input rows `r0..r1` of the planes `x` [cg, H, W] into `prep`
/// [cg, r1 − r0, sw, plen] (see the module docs).
fn split_rows(x: &[f32], cg: usize, g: &Geometry, r0: usize, r1: usize, prep: &mut [f32]) {
    let rows = r1 - r0;
    let plane = g.ih * g.iw;
    for ci in 0..cg {
        for r in r0..r1 {
            let ih = r as isize - g.ph as isize;
            for phase in 0..g.sw {
                let base = ((ci * rows + r - r0) * g.sw + phase) * g.plen;
                let dst = &mut prep[base..base + g.plen];
                if ih < 0 || ih >= g.ih as isize {
                    dst.fill(0.0);
                    continue;
                }
                let src =
                    &x[ci * plane + ih as usize * g.iw..ci * plane + (ih as usize + 1) * g.iw];
                // Column j of this phase is padded column j·sw + phase, input column
                // j·sw + phase − pw.
                let off = phase as isize - g.pw as isize;
                let (lo, hi) = valid_range(off, g.sw, g.iw, g.plen);
                dst[..lo].fill(0.0);
                dst[hi.max(lo)..].fill(0.0);
                if lo < hi {
                    let i0 = (lo as isize * g.sw as isize + off) as usize;
                    if g.sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[i0..i0 + hi - lo]);
                    } else {
                        for (d, s) in dst[lo..hi].iter_mut().zip(src[i0..].iter().step_by(g.sw)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// The rows of one task with tiles of `T` channels and blocks of `U` vectors.
#[inline(always)]
fn direct_rows<S: Simd, const T: usize, const U: usize>(
    job: &DirectJob<'_>,
    out: SharedOut,
    task: usize,
) {
    let g = &job.g;
    let (c, m, group) = (job.c, job.m, job.group);
    let (cg, mg) = (c / group, m / group);
    let kk = g.kh * g.kw;
    let plane_in = g.ih * g.iw;
    let plane_out = g.oh * g.ow;
    let (pi, bi) = (task / job.tasks_per_plane, task % job.tasks_per_plane);
    let (img, gi) = (pi / group, pi % group);
    let oh0 = bi * job.rows_per_task;
    let oh1 = (oh0 + job.rows_per_task).min(g.oh);
    if oh0 >= oh1 {
        return;
    }
    // Padded input rows read by output rows oh0..oh1.
    let r0 = oh0 * g.sh;
    let r1 = (oh1 - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let rows = r1 - r0;
    let lanes = S::LANES;
    let block = U * lanes;
    debug_assert_eq!(block, job.block);
    let ow_pad = g.ow.div_ceil(block) * block;
    let tap_off: Vec<usize> = (0..g.kw)
        .map(|kw| (kw * g.dw) % g.sw * g.plen + kw * g.dw / g.sw)
        .collect();
    let x0 = (img * c + gi * cg) * plane_in;
    let xs = &job.x[x0..x0 + cg * plane_in];
    let tiles = mg.div_ceil(T);
    let prep_len = cg * rows * g.sw * g.plen;
    // Every load below reads prep[(((ci·rows + r)·sw + phase)·plen + j] with r < rows,
    // phase < sw and j < ow_pad + max shift = plen; every store goes to an output row of
    // channel < m of image img, columns < ow.
    assert!(tap_off.iter().all(|&o| o % g.plen + ow_pad <= g.plen));
    assert!(job.w.len() >= (group * tiles * cg * kk) * T);
    assert!((oh1 - 1) * g.sh - r0 + (g.kh - 1) * g.dh < rows);
    with_scratch(prep_len, |prep| {
        split_rows(xs, cg, g, r0, r1, prep);
        let pp = prep.as_ptr();
        for tb in 0..tiles {
            let co0 = tb * T;
            let valid = T.min(mg - co0);
            let ch0 = gi * mg + co0;
            let bias: [f32; T] =
                std::array::from_fn(|t| job.bias.map_or(0.0, |b| b[ch0 + t.min(valid - 1)]));
            // SAFETY: the tile's weights lie inside `job.w` (asserted above).
            let wt = unsafe { job.w.as_ptr().add((gi * tiles + tb) * cg * kk * T) };
            for oh in oh0..oh1 {
                let rbase = oh * g.sh - r0;
                let out_row = (img * m + ch0) * plane_out + oh * g.ow;
                for ob in (0..g.ow).step_by(block) {
                    // SAFETY (loads): see the bounds argument above; the weight pointer stays
                    // within the tile's cg·kk·T weights.
                    let acc = unsafe {
                        let mut acc: [[S::V; U]; T] =
                            std::array::from_fn(|t| [S::splat(bias[t]); U]);
                        for ci in 0..cg {
                            for kh in 0..g.kh {
                                let row = pp.add(((ci * rows + rbase + kh * g.dh) * g.sw) * g.plen);
                                let wrow = wt.add((ci * kk + kh * g.kw) * T);
                                for (kw, &off) in tap_off.iter().enumerate() {
                                    let src = row.add(off + ob);
                                    let xv: [S::V; U] =
                                        std::array::from_fn(|u| S::load(src.add(u * lanes)));
                                    let wk = wrow.add(kw * T);
                                    for (t, acc_t) in acc.iter_mut().enumerate() {
                                        let wv = S::splat(*wk.add(t));
                                        for u in 0..U {
                                            acc_t[u] = S::fmadd(wv, xv[u], acc_t[u]);
                                        }
                                    }
                                }
                            }
                        }
                        acc
                    };
                    for (t, acc_t) in acc.iter().enumerate().take(valid) {
                        for (u, v) in acc_t.iter().enumerate() {
                            let col = ob + u * lanes;
                            if col >= g.ow {
                                break;
                            }
                            // SAFETY: row `ch0 + t` < m of image `img`, columns col..col + n
                            // with n ≤ ow − col; rows of distinct tasks are disjoint.
                            unsafe {
                                let dst = out.0.add(out_row + t * plane_out + col);
                                if col + lanes <= g.ow {
                                    S::store(dst, *v);
                                } else {
                                    let mut tmp = [0.0f32; 16];
                                    S::store(tmp.as_mut_ptr(), *v);
                                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, g.ow - col);
                                }
                            }
                        }
                    }
                }
                if let Some(e) = job.epilogue {
                    for t in 0..valid {
                        // SAFETY: the row this task just wrote (see the stores).
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(out.0.add(out_row + t * plane_out), g.ow)
                        };
                        e.apply(ch0 + t, row);
                    }
                }
            }
        }
    });
}
