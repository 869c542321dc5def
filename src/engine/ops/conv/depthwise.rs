//! Depthwise convolution (one input channel per output channel) as a direct loop: each output
//! row is finished while it sits in L1 (bias, every tap in kernel order, then the epilogue),
//! compiled for the widest vector instructions the CPU has.

use rayon::prelude::*;

use super::depthwise_fma;
use super::epilogue::ConvEpilogue;
use super::simd::{Isa, wide_fn};
use super::{ConvData, valid_range};
use crate::engine::buffers::recycled;
use crate::engine::geometry::Axis;

/// One kernel tap that touches the output: its weight index, and per axis its input offset and
/// the output indices it reaches (a half-open range).
pub(super) struct Tap {
    pub index: usize,
    pub off_d: isize,
    pub d: (usize, usize),
    pub off_h: isize,
    pub h: (usize, usize),
    pub off_w: isize,
    pub w: (usize, usize),
}

/// The taps of a window and its interior: the output columns every tap reaches.
pub(super) struct Window {
    pub taps: Vec<Tap>,
    pub inner: (usize, usize),
}

impl Window {
    pub(super) fn new(a: &[Axis; 3]) -> Window {
        let taps = taps(a);
        let lo = taps.iter().map(|t| t.w.0).max().unwrap_or(0);
        let hi = taps.iter().map(|t| t.w.1).min().unwrap_or(0);
        Window {
            taps,
            inner: (lo, hi.max(lo)),
        }
    }
}

/// The taps of the window `a` that reach at least one output, in kernel order.
fn taps(a: &[Axis; 3]) -> Vec<Tap> {
    let [ad, ah, aw] = a;
    let mut taps = Vec::with_capacity(ad.kernel * ah.kernel * aw.kernel);
    for kd in 0..ad.kernel {
        let off_d = ad.tap_offset(kd);
        let d = valid_range(off_d, ad.stride, ad.input, ad.output);
        for kh in 0..ah.kernel {
            let off_h = ah.tap_offset(kh);
            let h = valid_range(off_h, ah.stride, ah.input, ah.output);
            for kw in 0..aw.kernel {
                let off_w = aw.tap_offset(kw);
                let w = valid_range(off_w, aw.stride, aw.input, aw.output);
                if w.0 >= w.1 || d.0 >= d.1 || h.0 >= h.1 {
                    continue;
                }
                let index = (kd * ah.kernel + kh) * aw.kernel + kw;
                taps.push(Tap {
                    index,
                    off_d,
                    d,
                    off_h,
                    h,
                    off_w,
                    w,
                });
            }
        }
    }
    taps
}

/// The depthwise convolution of `d` (`c / group == 1`) followed by the epilogue (if any):
/// [n, m, oD, oH, oW], one task per output plane; `isa` for the FMA rows of `depthwise_fma`
/// (the other windows use the widest this CPU has).
pub(super) fn depthwise(isa: Isa, d: ConvData<'_>, epilogue: Option<&ConvEpilogue>) -> Vec<f32> {
    let (in_sz, out_sz, kk) = d.sizes();
    let (c, m) = (d.c, d.m);
    let mg = m / d.group;
    // Every element is written: each row starts from its bias (or zero).
    let mut out = recycled::<f32>(d.n * m * out_sz);
    if out.is_empty() {
        return out;
    }
    let window = Window::new(d.a);
    let fma = depthwise_fma::fits(&window, d.a);
    out.par_chunks_mut(out_sz)
        .enumerate()
        .for_each(|(p, plane)| {
            let (ni, mi) = (p / m, p % m);
            let ci = mi / mg;
            let xp = &d.x[(ni * c + ci) * in_sz..(ni * c + ci + 1) * in_sz];
            let wk = &d.w[mi * kk..(mi + 1) * kk];
            let bias = d.bias.map_or(0.0, |b| b[mi]);
            let channel = ChannelWork {
                xp,
                wk,
                bias,
                channel: mi,
                epilogue,
            };
            match d.a[2].kernel {
                3 if fma => depthwise_fma::plane_kw3(isa, &channel, &window, d.a, plane),
                5 if fma => depthwise_fma::plane_kw5(isa, &channel, &window, d.a, plane),
                _ => depthwise_plane_wide(&channel, &window, d.a, plane),
            }
        });
    out
}

/// What one output plane reads: its input plane [D, H, W], kernel, bias, channel index and
/// epilogue.
pub(super) struct ChannelWork<'a> {
    pub xp: &'a [f32],
    pub wk: &'a [f32],
    pub bias: f32,
    pub channel: usize,
    pub epilogue: Option<&'a ConvEpilogue>,
}

wide_fn! {
    /// [`depthwise_plane`] in wide vectors.
    fn depthwise_plane_wide(work: &ChannelWork<'_>, window: &Window, a: &[Axis; 3], out: &mut [f32]) => depthwise_plane
}

/// The narrowest register block of the interior (one AVX-512 vector); wider rows take blocks
/// of 32 columns (two independent sums hide the add latency).
const NARROW: usize = 16;

/// One output plane `out` [oD, oH, oW], row by row: the bias, then every tap reaching the row
/// in kernel order (the order a tap-by-tap accumulation over the whole plane would add them, so
/// the sums are the same), then the epilogue. The interior columns, which every tap reaches, are
/// summed in blocks held in registers; the edges tap by tap in the row.
#[inline(always)]
fn depthwise_plane(work: &ChannelWork<'_>, window: &Window, a: &[Axis; 3], out: &mut [f32]) {
    let ChannelWork {
        xp,
        wk,
        bias,
        channel,
        epilogue,
    } = *work;
    let [ad, ah, aw] = a;
    let (h_in, w_in) = (ah.input, aw.input);
    let (oh_n, ow_n) = (ah.output, aw.output);
    let sw = aw.stride;
    let (lo, hi) = window.inner;
    // Columns the blocks cover: the whole interior, unless it is narrower than a block.
    let blocked_end = if hi - lo >= NARROW { hi } else { lo };
    // The taps reaching the current row: weight, input row start, input column offset, output
    // columns.
    let mut row_taps: Vec<(f32, usize, isize, (usize, usize))> =
        Vec::with_capacity(window.taps.len());
    for (t, orow) in out.chunks_exact_mut(ow_n).enumerate() {
        let (od, oh) = (t / oh_n, t % oh_n);
        row_taps.clear();
        for tap in &window.taps {
            if od < tap.d.0 || od >= tap.d.1 || oh < tap.h.0 || oh >= tap.h.1 {
                continue;
            }
            let id = (od as isize * ad.stride as isize + tap.off_d) as usize;
            let ih = (oh as isize * ah.stride as isize + tap.off_h) as usize;
            row_taps.push((wk[tap.index], (id * h_in + ih) * w_in, tap.off_w, tap.w));
        }
        // Interior: register blocks, the last one ending at `hi` (it may overlap the one
        // before, recomputing the same values).
        if hi - lo >= 32 {
            interior_blocks::<32>(orow, xp, &row_taps, bias, sw, lo, hi);
        } else if hi - lo >= NARROW {
            interior_blocks::<NARROW>(orow, xp, &row_taps, bias, sw, lo, hi);
        }
        // Edges: tap by tap.
        orow[..lo.min(ow_n)].fill(bias);
        orow[blocked_end.max(lo).min(ow_n)..].fill(bias);
        for &(wv, row, off_w, (wlo, whi)) in &row_taps {
            let irow = &xp[row..row + w_in];
            for (c0, c1) in [(wlo, whi.min(lo)), (wlo.max(blocked_end), whi)] {
                if c0 < c1 {
                    let start = (c0 as isize * sw as isize + off_w) as usize;
                    accumulate(&mut orow[c0..c1], &irow[start..], sw, wv);
                }
            }
        }
        if let Some(e) = epilogue {
            e.apply_plain(channel, orow);
        }
    }
}

/// The interior columns `lo..hi` (at least `N`) of one output row in blocks of `N` held in
/// registers: the bias, then each of `row_taps` (weight, input row start, input column offset)
/// in order. The last block ends at `hi` (it may overlap the
/// one before, writing the same values again).
// Indexed loops: in this form the sums stay in vector registers (iterator forms were
// measured to spill them to the stack).
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn interior_blocks<const N: usize>(
    orow: &mut [f32],
    xp: &[f32],
    row_taps: &[(f32, usize, isize, (usize, usize))],
    bias: f32,
    sw: usize,
    lo: usize,
    hi: usize,
) {
    let mut o0 = lo;
    loop {
        let mut acc = [bias; N];
        for &(wv, row, off_w, _) in row_taps {
            let s0 = row + (o0 as isize * sw as isize + off_w) as usize;
            match sw {
                1 => {
                    let src = &xp[s0..s0 + N];
                    for j in 0..N {
                        acc[j] += wv * src[j];
                    }
                }
                2 => {
                    let src = &xp[s0..s0 + 2 * N - 1];
                    for j in 0..N {
                        acc[j] += wv * src[2 * j];
                    }
                }
                _ => {
                    let src = &xp[s0..s0 + (N - 1) * sw + 1];
                    for (j, &i) in src.iter().step_by(sw).enumerate() {
                        acc[j] += wv * i;
                    }
                }
            }
        }
        orow[o0..o0 + N].copy_from_slice(&acc);
        if o0 + N == hi {
            return;
        }
        o0 = (o0 + N).min(hi - N);
    }
}

/// `dst[j] += wv · src[j·sw]` for every `j` of `dst`.
#[inline(always)]
fn accumulate(dst: &mut [f32], src: &[f32], sw: usize, wv: f32) {
    if sw == 1 {
        for (o, &i) in dst.iter_mut().zip(src) {
            *o += wv * i;
        }
    } else if sw == 2 {
        // Pairs (vectorizes); the last element may lack its partner.
        let len = dst.len();
        let full = len.min(src.len() / 2);
        for (o, pair) in dst[..full].iter_mut().zip(src.chunks_exact(2)) {
            *o += wv * pair[0];
        }
        if full < len {
            dst[len - 1] += wv * src[2 * (len - 1)];
        }
    } else {
        for (o, &i) in dst.iter_mut().zip(src.iter().step_by(sw)) {
            *o += wv * i;
        }
    }
}
