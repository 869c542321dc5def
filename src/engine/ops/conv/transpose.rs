//! ConvTranspose: sgemm (Wᵀ·X) per (image, group), then col2im scatters each output channel.

use rayon::prelude::*;

use super::super::gemm::{Mat, sgemm};
use super::super::{OpCtx, OpError, OpResult};
use super::{
    Axis, ConvData, ConvOperands, bias_vec, conv_operands, conv_output, fill_bias, node_epilogue,
    to3, valid_range, with_scratch,
};
use crate::engine::buffers::zeroed;
use crate::ir::TensorData;

pub(super) fn conv_transpose_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let ConvOperands { x, w, bias, spec } = conv_operands("ConvTranspose", ctx, inputs)?;
    let group = spec.group;
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
    let bias = bias_vec(bias, m)?;
    let epilogue = node_epilogue(ctx, m)?;
    let axes = spec.transposed_axes(&x.shape()[2..])?;
    let a3 = to3(&axes);
    conv_output(x, w, [n, m], &axes, epilogue.as_ref(), |x, w| {
        conv_transpose_forward(ConvData {
            x,
            n,
            c,
            w,
            m,
            group,
            bias: bias.as_deref(),
            a: &a3,
        })
    })
}

/// The transposed convolution of `x` with `w` [c, m/group, kD, kH, kW]; returns
/// [n, m, oD, oH, oW].
fn conv_transpose_forward(d: ConvData<'_>) -> Vec<f32> {
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
    let mg = m / group;
    let (in_sz, out_sz, kk) = d.sizes();
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
