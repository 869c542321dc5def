//! Depthwise convolution planes at column stride 1 with kernel width 3 or 5 (what MobileNet,
//! YuNet and DeepLab's dilated blocks use) in fused multiply-adds: the interior of each output
//! row in blocks of four vectors held in registers (four independent sums hide the FMA
//! latency), every tap of the row loaded straight from the input rows; the edge columns tap by
//! tap; the epilogue once over the finished plane. The sums run bias first, then the taps in
//! kernel order, as in `depthwise`.

use super::depthwise::{ChannelWork, Window};
use super::simd::{Simd, isa_dispatch};
use crate::engine::geometry::Axis;

/// Whether [`plane_kw3`] / [`plane_kw5`] take this window: 2-D (or 1-D) kernels of width 3 or
/// 5 at column stride 1 whose every tap reaches the output.
pub(super) fn fits(window: &Window, a: &[Axis; 3]) -> bool {
    let [ad, ah, aw] = a;
    aw.stride == 1
        && ad.kernel == 1
        && matches!(aw.kernel, 3 | 5)
        && window.taps.len() == ah.kernel * aw.kernel
}

isa_dispatch!(
    /// One output plane of a kernel-width-3 depthwise convolution (see the module docs).
    pub(super) fn plane_kw3(work: &ChannelWork<'_>, window: &Window, a: &[Axis; 3], out: &mut [f32]) => plane_kw3_generic
);

isa_dispatch!(
    /// One output plane of a kernel-width-5 depthwise convolution (see the module docs).
    pub(super) fn plane_kw5(work: &ChannelWork<'_>, window: &Window, a: &[Axis; 3], out: &mut [f32]) => plane_kw5_generic
);

#[inline(always)]
fn plane_kw3_generic<S: Simd>(
    work: &ChannelWork<'_>,
    window: &Window,
    a: &[Axis; 3],
    out: &mut [f32],
) {
    plane::<S, 3>(work, window, a, out);
}

#[inline(always)]
fn plane_kw5_generic<S: Simd>(
    work: &ChannelWork<'_>,
    window: &Window,
    a: &[Axis; 3],
    out: &mut [f32],
) {
    plane::<S, 5>(work, window, a, out);
}

/// Vectors per interior block.
const BLOCK: usize = 4;

/// The plane `out` [oD, oH, oW] row by row: interior blocks, edges, then the epilogue.
#[inline(always)]
fn plane<S: Simd, const KW: usize>(
    work: &ChannelWork<'_>,
    window: &Window,
    a: &[Axis; 3],
    out: &mut [f32],
) {
    let [ad, ah, aw] = a;
    let (h_in, w_in) = (ah.input, aw.input);
    let (oh_n, ow_n) = (ah.output, aw.output);
    let off_w: [isize; KW] = std::array::from_fn(|k| aw.tap_offset(k));
    let (lo, hi) = window.inner;
    let lanes = S::LANES;
    // The kernel rows reaching the current output row: (kernel row, input row start).
    let mut rows: Vec<(usize, usize)> = Vec::with_capacity(ah.kernel);
    for (t, orow) in out.chunks_exact_mut(ow_n).enumerate() {
        let (od, oh) = (t / oh_n, t % oh_n);
        rows.clear();
        // The first tap of each kernel row stands for the row (they share its row range).
        for tap in window.taps.iter().filter(|tap| tap.index % KW == 0) {
            if od < tap.d.0 || od >= tap.d.1 || oh < tap.h.0 || oh >= tap.h.1 {
                continue;
            }
            let id = (od as isize * ad.stride as isize + tap.off_d) as usize;
            let ih = (oh as isize * ah.stride as isize + tap.off_h) as usize;
            rows.push((tap.index / KW, (id * h_in + ih) * w_in));
        }
        let mut o0 = lo;
        if hi >= lo + lanes {
            // Every load below reads columns `o + off_w[k]` with `lo ≤ o < hi`, inside the
            // input row for every tap (that is what the interior is).
            assert!(rows.iter().all(|&(_, start)| start + w_in <= work.xp.len()));
            assert!(hi <= orow.len());
            while o0 + BLOCK * lanes <= hi {
                // SAFETY: see the asserts above; the block covers columns o0..o0 + 4·lanes ≤ hi.
                unsafe { block::<S, KW, BLOCK>(work, &rows, &off_w, o0, orow) };
                o0 += BLOCK * lanes;
            }
            while o0 + lanes <= hi {
                // SAFETY: as above, columns o0..o0 + lanes ≤ hi.
                unsafe { block::<S, KW, 1>(work, &rows, &off_w, o0, orow) };
                o0 += lanes;
            }
            if o0 < hi {
                // The last vector ends at `hi`, recomputing a few columns with the same sums.
                // SAFETY: hi − lanes ≥ lo, columns hi − lanes..hi.
                unsafe { block::<S, KW, 1>(work, &rows, &off_w, hi - lanes, orow) };
                o0 = hi;
            }
        }
        for o in (0..lo.min(ow_n)).chain(o0.max(lo)..ow_n) {
            let mut acc = work.bias;
            for &(kh, start) in &rows {
                for (k, &off) in off_w.iter().enumerate() {
                    let ic = o as isize + off;
                    if ic >= 0 && (ic as usize) < w_in {
                        acc += work.wk[kh * KW + k] * work.xp[start + ic as usize];
                    }
                }
            }
            orow[o] = acc;
        }
    }
    // Over the whole plane (in L1 or L2) rather than per row: a row's last vector stores are
    // still in flight, and narrower epilogue loads of them stall store forwarding.
    if let Some(e) = work.epilogue {
        e.apply_plain(work.channel, out);
    }
}

/// Output columns `o0..o0 + V·lanes` of one row: the bias, then every tap of `rows` in kernel
/// order, in `V` independent vector sums.
///
/// # Safety
/// Every column read, `o + off_w[k]` for those columns, must lie inside each input row of
/// `rows`, and the columns inside `orow`.
#[inline(always)]
unsafe fn block<S: Simd, const KW: usize, const V: usize>(
    work: &ChannelWork<'_>,
    rows: &[(usize, usize)],
    off_w: &[isize; KW],
    o0: usize,
    orow: &mut [f32],
) {
    let lanes = S::LANES;
    // SAFETY: the caller guarantees every pointer below is in bounds and the ISA is present.
    unsafe {
        let mut acc = [S::splat(work.bias); V];
        for &(kh, start) in rows {
            let base = work.xp.as_ptr().add(start);
            for (k, &off) in off_w.iter().enumerate() {
                let w = S::splat(work.wk[kh * KW + k]);
                let p = base.offset(o0 as isize + off);
                for (v, sum) in acc.iter_mut().enumerate() {
                    *sum = S::fmadd(w, S::load(p.add(v * lanes)), *sum);
                }
            }
        }
        let dst = orow.as_mut_ptr().add(o0);
        for (v, sum) in acc.iter().enumerate() {
            S::store(dst.add(v * lanes), *sum);
        }
    }
}
