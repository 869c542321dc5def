//! im2col: the GEMM operand of the convolutions that are neither depthwise nor pointwise.

use rayon::prelude::*;

use super::{Axis, valid_range};

/// im2col of `x` [cg, D, H, W] for the output rows `rows` (flattened (od, oh) indices) into
/// columns `coff..coff + rows.len()·oW` of `col` [cg·kD·kH·kW, ld].
pub(super) fn im2col(
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
