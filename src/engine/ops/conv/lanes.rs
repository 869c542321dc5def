//! Small planes: images in SIMD lanes.
//!
//! With small planes, im2col + GEMM spends most of its time building and packing short rows.
//! Instead, `lanes` images are transposed so that the same element of every image sits in one
//! vector ([channel, input pixel, image]); each output pixel then accumulates, over its valid
//! taps only (padding costs nothing) and the input channels, a vector of images times a
//! broadcast weight, for a tile of output channels held in registers. The result
//! ([channel, output pixel, image]) is transposed back to [image, channel, output pixel].

use std::ops::Range;

use rayon::prelude::*;

use super::{Axis, ConvData, with_scratch};

/// A lane kernel body: `(job, xt, tmp, blocks)`, see [`LaneKernel::run`].
type LaneFn = fn(&LaneJob<'_>, &[f32], &mut [f32], Range<usize>);

/// A matrix transpose `(src, lds, dst, ldd, rows, cols)`, see [`LaneKernel::transpose`].
type TransposeFn = fn(&[f32], usize, &mut [f32], usize, usize, usize);

/// One instantiation of the lane kernel: images per vector, output channels per register
/// tile, the kernel and a matrix transpose (compiled for the matching CPU features).
#[derive(Clone, Copy)]
pub(super) struct LaneKernel {
    pub lanes: usize,
    pub tile: usize,
    /// `run(job, xt, tmp, blocks)` computes the output channel tiles `blocks` (numbered over
    /// all groups) into `tmp` = [blocks.len()·tile, out pixel, lane].
    pub run: LaneFn,
    /// The same for depthwise convolutions (one input channel per group), with tiles of one
    /// output channel.
    pub run_dw: LaneFn,
    pub transpose: TransposeFn,
}

/// Geometry and packed operands shared by every lane group of one convolution.
pub(super) struct LaneJob<'a> {
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

impl LaneKernel {
    /// A kernel of `width` images per vector and tiles of `width` channels, with the general
    /// and depthwise bodies `[run, run_dw]` and its transpose.
    #[cfg(target_arch = "x86_64")]
    fn square(width: usize, [run, run_dw]: [LaneFn; 2], transpose: TransposeFn) -> LaneKernel {
        LaneKernel {
            lanes: width,
            tile: width,
            run,
            run_dw,
            transpose,
        }
    }

    /// The AVX-512 kernel (16 images per vector, tiles of 16 channels), if the CPU has it.
    pub fn avx512() -> Option<LaneKernel> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            return Some(LaneKernel::square(
                16,
                [lanes_avx512, lanes_dw_avx512],
                transpose_avx512,
            ));
        }
        None
    }

    /// The AVX2 kernel (8 images per vector, tiles of 8 channels), if the CPU has it.
    pub fn avx2() -> Option<LaneKernel> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(LaneKernel::square(
                8,
                [lanes_avx2, lanes_dw_avx2],
                transpose_avx2,
            ));
        }
        None
    }
}

/// The lane kernel for this CPU, if it has one (the widest).
pub(super) fn lane_kernel() -> Option<LaneKernel> {
    LaneKernel::avx512().or_else(LaneKernel::avx2)
}

/// Whether the lane kernel beats im2col + GEMM here: enough images to fill the lanes, small
/// output planes, and a transposed input that stays cache-sized.
pub(super) fn use_lanes(
    k: LaneKernel,
    n: usize,
    c: usize,
    out_sz: usize,
    in_sz: usize,
    kk: usize,
) -> bool {
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

/// Defines `fn $name(job, xt, tmp, blocks)`: the lane kernel body `$body` for the instruction
/// set `avx512` or `avx2`, with the vector width (and tile) `$n`: compiled with the set's target
/// features and instantiated with its intrinsics.
#[cfg(target_arch = "x86_64")]
macro_rules! lane_kernel_fn {
    ($name:ident, $body:ident, avx512, $($n:literal),+) => {
        lane_kernel_fn!(@fn $name, $body, "avx512f,fma", $($n),+,
            _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps);
    };
    ($name:ident, $body:ident, avx2, $($n:literal),+) => {
        lane_kernel_fn!(@fn $name, $body, "avx2,fma", $($n),+,
            _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps);
    };
    (@fn $name:ident, $body:ident, $features:literal, $($args:tt)*) => {
        fn $name(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
            use std::arch::x86_64::*;
            #[target_feature(enable = $features)]
            fn inner(job: &LaneJob<'_>, xt: &[f32], tmp: &mut [f32], blocks: Range<usize>) {
                $body!(job, xt, tmp, blocks, $($args)*);
            }
            // SAFETY: only selected by `LaneKernel::avx512`/`avx2` when the CPU has these
            // features.
            unsafe { inner(job, xt, tmp, blocks) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
lane_kernel_fn!(lanes_avx512, lane_kernel_body, avx512, 16, 16);
#[cfg(target_arch = "x86_64")]
lane_kernel_fn!(lanes_avx2, lane_kernel_body, avx2, 8, 8);
#[cfg(target_arch = "x86_64")]
lane_kernel_fn!(lanes_dw_avx512, lane_dw_body, avx512, 16);
#[cfg(target_arch = "x86_64")]
lane_kernel_fn!(lanes_dw_avx2, lane_dw_body, avx2, 8);

/// The first two stages of a blocked transpose of the `$n` rows `$r` (vectors of `$ty`): pairs
/// of rows interleaved within 128-bit lanes (`$lo`, `$hi`), then pairs of pairs (`$shuf`), so
/// that per group of 4 rows q, `u[4q + k]` holds column k of those rows in each 128-bit lane.
#[cfg(target_arch = "x86_64")]
macro_rules! interleave_rows {
    ($r:ident, $n:literal, $ty:ty, $lo:ident, $hi:ident, $shuf:ident) => {{
        let t: [$ty; $n] = std::array::from_fn(|i| {
            let (a, b) = ($r[i / 2 * 2], $r[i / 2 * 2 + 1]);
            if i % 2 == 0 { $lo(a, b) } else { $hi(a, b) }
        });
        let u: [$ty; $n] = std::array::from_fn(|i| {
            let (q, k) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + k / 2], t[4 * q + 2 + k / 2]);
            if k % 2 == 0 {
                $shuf::<0x44>(a, b)
            } else {
                $shuf::<0xEE>(a, b)
            }
        });
        u
    }};
}

/// The body of a blocked transpose: `$block` (an unsafe `$b`×`$b` block transpose compiled
/// for `$features`) on every full block of the checked `rows`×`cols` area, the rest scalar.
#[cfg(target_arch = "x86_64")]
macro_rules! transpose_in_blocks {
    ($features:literal, $b:literal, $block:ident,
     $src:ident, $lds:ident, $dst:ident, $ldd:ident, $rows:ident, $cols:ident) => {{
        #[target_feature(enable = $features)]
        fn blocks(src: &[f32], lds: usize, dst: &mut [f32], ldd: usize, rows: usize, cols: usize) {
            for r in (0..rows / $b * $b).step_by($b) {
                for c in (0..cols / $b * $b).step_by($b) {
                    // SAFETY: the block lies inside the checked rows×cols area.
                    unsafe {
                        $block(
                            src.as_ptr().add(r * lds + c),
                            lds,
                            dst.as_mut_ptr().add(c * ldd + r),
                            ldd,
                        )
                    };
                }
            }
        }
        check_transpose($src.len(), $lds, $dst.len(), $ldd, $rows, $cols);
        // SAFETY: only selected by `LaneKernel::avx512`/`avx2` when the CPU has the features.
        unsafe { blocks($src, $lds, $dst, $ldd, $rows, $cols) };
        transpose_rest($src, $lds, $dst, $ldd, $rows, $cols, $b);
    }};
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
            // Per group of 4 rows q: u[4q + k] holds columns k, k+4, k+8, k+12 of those rows
            // (one 128-bit lane each).
            let u = interleave_rows!(
                r,
                16,
                __m512,
                _mm512_unpacklo_ps,
                _mm512_unpackhi_ps,
                _mm512_shuffle_ps
            );
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
    transpose_in_blocks!("avx512f", 16, block, src, lds, dst, ldd, rows, cols);
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
            // u[4q + k] holds columns k and k+4 of rows 4q..4q+4 (one 128-bit lane each).
            let u = interleave_rows!(
                r,
                8,
                __m256,
                _mm256_unpacklo_ps,
                _mm256_unpackhi_ps,
                _mm256_shuffle_ps
            );
            for k in 0..4 {
                let (a, b) = (u[k], u[4 + k]);
                _mm256_storeu_ps(d.add(k * ldd), _mm256_permute2f128_ps::<0x20>(a, b));
                _mm256_storeu_ps(d.add((k + 4) * ldd), _mm256_permute2f128_ps::<0x31>(a, b));
            }
        }
    }
    transpose_in_blocks!("avx2", 8, block, src, lds, dst, ldd, rows, cols);
}

/// Conv of small planes through the lane kernel `k` (see above); `out` is [n, m, out plane].
pub(super) fn conv_lanes(d: ConvData<'_>, k: LaneKernel, out: &mut [f32]) {
    let ConvData {
        x,
        c,
        w,
        m,
        group,
        bias,
        a,
        ..
    } = d;
    let [ad, ah, aw] = a;
    let (in_sz, out_sz, kk) = d.sizes();
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
