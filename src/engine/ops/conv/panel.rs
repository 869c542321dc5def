//! Products short in K with the bias and epilogue fused: `out[i, j] = epilogue(bias[i] +
//! Σ_k w[i, k]·b[k, j])`, read straight from the unpacked operand `b` [K, ·] (the input
//! planes of a pointwise convolution) in register tiles of 4 output channels × 4 vectors of
//! columns, each sum in fused multiply-adds over k in order. A general GEMM packs `b` and
//! makes a second pass for the bias and the activation; with few input channels (MobileNet,
//! YuNet and DeepLab blocks: 8–64) those passes cost more than the product itself, and with
//! few output channels they are still a tenth of it.

use super::epilogue::ConvEpilogue;
use super::simd::{SharedOut, Simd, isa_dispatch};

/// Pointwise products with at most this many input channels, and im2col products with at
/// most this many output channels, use [`panel_columns`].
pub(super) const MAX_K: usize = 64;

/// The most weights (output channels × K) of an im2col product [`panel_columns`] takes: they
/// are read again for every column tile, so they should stay in L2 (160 KB here, beside the
/// operand tile). A 3×3 convolution of 64 channels into 64 (ResNet-18's first stage, ESPCN)
/// has 36,864: 12% and 7% faster there than im2col + GEMM, measured on both.
pub(super) const MAX_WEIGHTS: usize = 64 * 640;

/// One product: `m` output channels from `k` rows of `b`.
pub(super) struct Panel<'a> {
    /// Weights [m, k], row-major.
    pub w: &'a [f32],
    pub m: usize,
    pub k: usize,
    /// The operand [k, ·] with row stride `ldb`.
    pub b: &'a [f32],
    pub ldb: usize,
    /// Bias of every channel (indexed from `channel0`), if any.
    pub bias: Option<&'a [f32]>,
    pub epilogue: Option<&'a ConvEpilogue>,
    /// The channel of row 0 (for the bias and the epilogue).
    pub channel0: usize,
}

/// The output rows of one product: `len` floats from `ptr`, row `i` at `i · ld`.
#[derive(Clone, Copy)]
pub(super) struct PanelOut {
    pub ptr: SharedOut,
    pub len: usize,
    pub ld: usize,
}

isa_dispatch!(
    /// Columns `j0..j1` of every output row of `p`, written into `out` (see the module docs).
    /// Tasks writing disjoint column ranges of one output may run in parallel.
    pub(super) fn panel_columns(p: &Panel<'_>, out: PanelOut, j0: usize, j1: usize) => panel_columns_generic
);

#[inline(always)]
fn panel_columns_generic<S: Simd>(p: &Panel<'_>, out: PanelOut, j0: usize, j1: usize) {
    if p.m == 0 || j0 >= j1 {
        return;
    }
    // Every read and write below stays inside these bounds.
    assert!(p.k > 0 && j1 <= p.ldb && (p.k - 1) * p.ldb + j1 <= p.b.len());
    assert!(p.w.len() >= p.m * p.k && j1 <= out.ld && (p.m - 1) * out.ld + j1 <= out.len);
    assert!(p.bias.is_none_or(|b| b.len() >= p.channel0 + p.m));
    let lanes = S::LANES;
    // Column tiles outermost: the operand tile (k rows × 4 vectors) stays in L1 while every
    // output channel reads it.
    let mut j = j0;
    // SAFETY (every tile): columns j..j + V·lanes ≤ j1 and rows ≤ m, inside the bounds
    // asserted above; the caller gives each task its own columns.
    unsafe {
        while j + 4 * lanes <= j1 {
            tiles::<S, 4>(p, out, j);
            j += 4 * lanes;
        }
        while j + lanes <= j1 {
            tiles::<S, 1>(p, out, j);
            j += lanes;
        }
        if j < j1 && j1 - j0 >= lanes {
            // The last vector ends at `j1`, recomputing a few columns with the same sums.
            tiles::<S, 1>(p, out, j1 - lanes);
            j = j1;
        }
    }
    for i in 0..p.m {
        // SAFETY: row i, columns j0..j1 lie inside `out` (asserted) and belong to this task.
        let row =
            unsafe { std::slice::from_raw_parts_mut(out.ptr.0.add(i * out.ld + j0), j1 - j0) };
        // Columns left over when the range is narrower than a vector.
        for (c, v) in row.iter_mut().enumerate().skip(j - j0) {
            let mut acc = p.bias.map_or(0.0, |b| b[p.channel0 + i]);
            for kk in 0..p.k {
                acc = p.w[i * p.k + kk].mul_add(p.b[kk * p.ldb + j0 + c], acc);
            }
            *v = acc;
        }
        if let Some(e) = p.epilogue {
            e.apply_plain(p.channel0 + i, row);
        }
    }
}

/// Columns `j..j + V·lanes` of every output row: tiles of 4 rows, then single rows.
///
/// # Safety
/// As [`tile`], for every row.
#[inline(always)]
unsafe fn tiles<S: Simd, const V: usize>(p: &Panel<'_>, out: PanelOut, j: usize) {
    prefetch_ahead(p, j + PREFETCH_DISTANCE * V * S::LANES, V * S::LANES);
    let mut i0 = 0;
    // SAFETY: the caller's contract, rows i0..i0 + R ≤ m.
    unsafe {
        while i0 + 4 <= p.m {
            tile::<S, 4, V>(p, out, i0, j);
            i0 += 4;
        }
        while i0 < p.m {
            tile::<S, 1, V>(p, out, i0, j);
            i0 += 1;
        }
    }
}

/// Column tiles ahead of the current one whose operand rows are requested early: the `k`
/// rows lie a plane apart, more streams than the hardware prefetcher follows.
const PREFETCH_DISTANCE: usize = 2;

/// Asks for the operand's columns `j..j + width` of every row to be loaded into the cache
/// (a hint: nothing happens past the end of the rows or off x86-64).
#[inline(always)]
fn prefetch_ahead(p: &Panel<'_>, j: usize, width: usize) {
    #[cfg(target_arch = "x86_64")]
    if j + width <= p.ldb {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for kk in 0..p.k {
            for line in (0..width).step_by(16) {
                let at = kk * p.ldb + j + line;
                if at < p.b.len() {
                    // SAFETY: a prefetch never faults; the address is inside `p.b` anyway.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.b.as_ptr().add(at) as *const i8) };
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, j, width);
}

/// The tile of rows `i0..i0 + R` and columns `j..j + V·lanes`.
///
/// # Safety
/// The rows and columns must lie inside `p.b`, `p.w` and `out` (as `panel_columns_generic`
/// asserts for its range), and the CPU must have `S`'s instruction set.
#[inline(always)]
unsafe fn tile<S: Simd, const R: usize, const V: usize>(
    p: &Panel<'_>,
    out: PanelOut,
    i0: usize,
    j: usize,
) {
    let lanes = S::LANES;
    // SAFETY: see the function's contract.
    unsafe {
        let mut acc = [[S::splat(0.0); V]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            let b = p
                .bias
                .map_or(0.0, |b| *b.get_unchecked(p.channel0 + i0 + r));
            *row = [S::splat(b); V];
        }
        let w = p.w.as_ptr().add(i0 * p.k);
        let mut brow = p.b.as_ptr().add(j);
        for kk in 0..p.k {
            let mut xs = [S::splat(0.0); V];
            for (v, x) in xs.iter_mut().enumerate() {
                *x = S::load(brow.add(v * lanes));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let wv = S::splat(*w.add(r * p.k + kk));
                for (sum, &x) in row.iter_mut().zip(&xs) {
                    *sum = S::fmadd(wv, x, *sum);
                }
            }
            brow = brow.add(p.ldb);
        }
        for (r, row) in acc.iter().enumerate() {
            let dst = out.ptr.0.add((i0 + r) * out.ld + j);
            for (v, sum) in row.iter().enumerate() {
                S::store(dst.add(v * lanes), *sum);
            }
        }
    }
}
