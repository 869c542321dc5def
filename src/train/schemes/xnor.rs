//! XNOR-Net layers (Rastegari et al. 2016): binary weights and binary inputs, the
//! convolution as XNOR and popcount, rescaled by α per output channel and K per position.
//!
//! For a Conv or Gemm layer with input I and latent weights W:
//!
//! ```text
//! D = sign(I) ⊛ sign(W)                 (integer-valued: every product is ±1, padding 0)
//! α_c = mean |W_c|                       (per output channel)
//! K = (mean over channels of |I|) ⊛ k    (k: the layer's window with every tap 1/(kernel size);
//!                                         for Gemm, K_n = mean |I_n|)
//! Y = D ⊙ K ⊙ α + b
//! ```
//!
//! Training runs D through the plain Conv/Gemm kernels on ±1 tensors (every partial sum is a
//! small integer, exact in f32), which is the float simulation. Inference computes D with
//! [`crate::quant::xnor::binary_gemm`] on packed signs (2·popcount(XNOR) − N); the rescaling is
//! the same function in both, so the two agree bit for bit. Zero padding has no ±1 code: a padded
//! layer runs the popcount twice, padding as +1 and as −1, and averages (the padded taps cancel).
//!
//! Backward (float simulation): with G = ∂L/∂Y, the binarized operands get G ⊙ K ⊙ α through
//! the Conv/Gemm backward kernel, the hard-tanh STE 1{|·| ≤ 1} carries that to I and W, and the
//! α path adds sign(W_i)·(Σ G ⊙ D ⊙ K over channel c)/n_c to the weights. K is treated as a
//! constant (no gradient through the input magnitudes).

use ndarray::{ArrayD, IxDyn};

use crate::engine::geometry::WindowSpec;
use crate::engine::grad::{GradCtx, Grads, grad_for, reduce_to_shape};
use crate::engine::ops::{OpCtx, OpError, input_f32, kernel_for, optional};
use crate::ir::{Node, TensorData};
use crate::quant::channels::Granularity;
use crate::quant::xnor::{PackedMatrix, binary_gemm};
use crate::train::tape::Layer;

/// How an XNOR layer computes D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XnorMode {
    /// The float kernels on ±1 tensors (training, and the reference).
    FloatSimulation,
    /// XNOR and popcount on packed signs.
    Popcount,
}

/// One XNOR layer: a Conv or Gemm node whose input and weights are binarized.
#[derive(Debug, Clone)]
pub struct XnorLayer {
    pub node: String,
    pub mode: XnorMode,
}

fn sign(v: f32) -> f32 {
    if v >= 0.0 { 1.0 } else { -1.0 }
}

/// The node without its bias input (D is computed bias-free).
fn without_bias(node: &Node) -> Node {
    let mut n = node.clone();
    n.inputs.truncate(2);
    n
}

/// The output-channel axis of the weight and the Gemm settings checked.
fn weight_axis(node: &Node) -> Result<usize, OpError> {
    match node.op_type.as_str() {
        "Conv" => Ok(0),
        "Gemm" => {
            if node.attr_int("transA", 0)? != 0 {
                return Err(OpError("XNOR Gemm layers need transA = 0".into()));
            }
            if node.attr_float("alpha", 1.0)? != 1.0 {
                return Err(OpError("XNOR Gemm layers need alpha = 1".into()));
            }
            Ok(if node.attr_int("transB", 0)? != 0 {
                0
            } else {
                1
            })
        }
        other => Err(OpError(format!(
            "XNOR layers are Conv or Gemm, not {other}"
        ))),
    }
}

/// α per output channel: mean |W| over each channel.
fn alphas(node: &Node, w: &ArrayD<f32>) -> Result<Vec<f32>, OpError> {
    let axis = weight_axis(node)?;
    crate::quant::binary::mean_abs(w.view(), Granularity::PerChannel { axis })
        .map_err(|e| OpError(e.0))
}

/// K: for Conv, the channel mean of |x| filtered by the layer's window with taps 1/kk
/// ([N, 1, out spatial]); for Gemm, mean |x| per sample ([N, 1]).
fn k_scale(
    node: &Node,
    opset: i64,
    x: &ArrayD<f32>,
    w_shape: &[usize],
) -> Result<ArrayD<f32>, OpError> {
    let n = x.shape()[0];
    if node.op_type == "Gemm" {
        let per: usize = x.len() / n.max(1);
        let k: Vec<f32> = x
            .as_standard_layout()
            .as_slice()
            .unwrap_or(&[])
            .chunks(per.max(1))
            .map(|row| row.iter().map(|v| v.abs()).sum::<f32>() / per.max(1) as f32)
            .collect();
        return ArrayD::from_shape_vec(IxDyn(&[n, 1]), k).map_err(|e| OpError(e.to_string()));
    }
    let c = x.shape()[1];
    let mut mean_abs_shape = x.shape().to_vec();
    mean_abs_shape[1] = 1;
    let a = x
        .mapv(f32::abs)
        .sum_axis(ndarray::Axis(1))
        .mapv(|v| v / c as f32);
    let a = a
        .into_shape_with_order(IxDyn(&mean_abs_shape))
        .map_err(|e| OpError(e.to_string()))?;
    // The window of the layer, one group, every tap 1/kk.
    let spec = WindowSpec::conv(node, &w_shape[2..])?;
    let mut attributes = spec.attributes();
    attributes.remove("group");
    let box_node = Node {
        name: format!("{}/xnor_k", node.name),
        op_type: "Conv".into(),
        domain: String::new(),
        inputs: vec!["a".into(), "k".into()],
        outputs: vec!["K".into()],
        attributes,
    };
    let kk: usize = w_shape[2..].iter().product();
    let mut k_shape = vec![1, 1];
    k_shape.extend_from_slice(&w_shape[2..]);
    let taps = ArrayD::from_elem(IxDyn(&k_shape), 1.0 / kk as f32);
    let conv = kernel_for(&box_node).ok_or_else(|| OpError("no Conv kernel".into()))?;
    let ctx = OpCtx {
        node: &box_node,
        opset,
    };
    let (a, taps) = (TensorData::F32(a), TensorData::F32(taps));
    let out = conv(&ctx, &[Some(&a), Some(&taps)])?;
    out.into_iter()
        .next()
        .and_then(|t| match t {
            TensorData::F32(k) => Some(k),
            TensorData::I64(_) => None,
        })
        .ok_or_else(|| OpError("K filter produced no float output".into()))
}

/// Y = D ⊙ K ⊙ α (+ b): the same operations in the same order for both modes.
fn rescale(
    d: &ArrayD<f32>,
    k: &ArrayD<f32>,
    alpha: &[f32],
    bias: Option<&ArrayD<f32>>,
) -> Result<ArrayD<f32>, OpError> {
    let shape = d.shape().to_vec();
    let (n, m) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    let ds = d.as_standard_layout();
    let ks = k.as_standard_layout();
    let (ds, ks) = (ds.as_slice().unwrap_or(&[]), ks.as_slice().unwrap_or(&[]));
    let bias: Option<Vec<f32>> = match bias {
        None => None,
        Some(b) if b.len() == m => Some(b.iter().copied().collect()),
        Some(b) => {
            return Err(OpError(format!(
                "XNOR layers take one bias per output channel; got shape {:?}",
                b.shape()
            )));
        }
    };
    let mut out = vec![0.0f32; ds.len()];
    for ni in 0..n {
        for c in 0..m {
            for p in 0..plane {
                let i = (ni * m + c) * plane + p;
                let mut v = ds[i] * ks[ni * plane + p] * alpha[c];
                if let Some(b) = &bias {
                    v += b[c];
                }
                out[i] = v;
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| OpError(e.to_string()))
}

impl XnorLayer {
    /// D from the binarized operands, by the float kernel or by popcount.
    fn d(
        &self,
        ctx: &OpCtx<'_>,
        bx: &ArrayD<f32>,
        bw: &ArrayD<f32>,
    ) -> Result<ArrayD<f32>, OpError> {
        let node = without_bias(ctx.node);
        match self.mode {
            XnorMode::FloatSimulation => {
                let kernel =
                    kernel_for(&node).ok_or_else(|| OpError("no forward kernel".into()))?;
                let inner = OpCtx {
                    node: &node,
                    opset: ctx.opset,
                };
                let (x, w) = (TensorData::F32(bx.clone()), TensorData::F32(bw.clone()));
                let out = kernel(&inner, &[Some(&x), Some(&w)])?;
                out.into_iter()
                    .next()
                    .and_then(|t| match t {
                        TensorData::F32(a) => Some(a),
                        TensorData::I64(_) => None,
                    })
                    .ok_or_else(|| OpError("no float output".into()))
            }
            XnorMode::Popcount => popcount_d(&node, bx, bw),
        }
    }
}

impl Layer for XnorLayer {
    fn forward(
        &self,
        ctx: &OpCtx<'_>,
        inputs: &[Option<&TensorData>],
    ) -> Result<Vec<TensorData>, OpError> {
        let x = input_f32(inputs, 0)?;
        let w = input_f32(inputs, 1)?;
        let bias = optional(inputs, 2).and_then(|t| t.as_f32());
        let alpha = alphas(ctx.node, w)?;
        let bx = x.mapv(sign);
        let bw = w.mapv(sign);
        let d = self.d(ctx, &bx, &bw)?;
        let k = k_scale(ctx.node, ctx.opset, x, w.shape())?;
        Ok(vec![TensorData::F32(rescale(&d, &k, &alpha, bias)?)])
    }

    fn backward(
        &self,
        ctx: &GradCtx<'_>,
        inputs: &[Option<&TensorData>],
        _outputs: &[&TensorData],
        grads: &[Option<&ArrayD<f32>>],
    ) -> Result<Grads, OpError> {
        let x = input_f32(inputs, 0)?;
        let w = input_f32(inputs, 1)?;
        let g = crate::engine::grad::grad_output(grads, 0)?;
        let node = without_bias(ctx.node);
        let fwd = OpCtx {
            node: &node,
            opset: ctx.opset,
        };
        let alpha = alphas(ctx.node, w)?;
        let bx = x.mapv(sign);
        let bw = w.mapv(sign);
        let d = XnorLayer {
            node: self.node.clone(),
            mode: XnorMode::FloatSimulation,
        }
        .d(&fwd, &bx, &bw)?;
        let k = k_scale(ctx.node, ctx.opset, x, w.shape())?;
        let shape = d.shape().to_vec();
        let (n, m) = (shape[0], shape[1]);
        let plane: usize = shape[2..].iter().product();
        let gs = g.as_standard_layout();
        let ds = d.as_standard_layout();
        let ks = k.as_standard_layout();
        let (gs, ds, ks) = (
            gs.as_slice().unwrap_or(&[]),
            ds.as_slice().unwrap_or(&[]),
            ks.as_slice().unwrap_or(&[]),
        );
        // ∂L/∂D = G ⊙ K ⊙ α; ∂L/∂α_c = Σ G ⊙ D ⊙ K; ∂L/∂b_c = Σ G.
        let mut gd = vec![0.0f32; gs.len()];
        let mut dalpha = vec![0.0f64; m];
        let mut db = vec![0.0f64; m];
        for ni in 0..n {
            for c in 0..m {
                for p in 0..plane {
                    let i = (ni * m + c) * plane + p;
                    let kv = ks[ni * plane + p];
                    gd[i] = gs[i] * kv * alpha[c];
                    dalpha[c] += f64::from(gs[i]) * f64::from(ds[i]) * f64::from(kv);
                    db[c] += f64::from(gs[i]);
                }
            }
        }
        let gd = ArrayD::from_shape_vec(IxDyn(&shape), gd).map_err(|e| OpError(e.to_string()))?;
        let backward = grad_for(&node).ok_or_else(|| OpError("no backward kernel".into()))?;
        let wanted = [ctx.wants(0), ctx.wants(1)];
        let inner = GradCtx {
            node: &node,
            opset: ctx.opset,
            wanted: &wanted,
        };
        let (tbx, tbw) = (TensorData::F32(bx), TensorData::F32(bw));
        let out_d = TensorData::F32(d);
        let sub = backward(&inner, &[Some(&tbx), Some(&tbw)], &[&out_d], &[Some(&gd)])?;
        let mut out: Grads = vec![None; inputs.len()];
        if let Some(Some(dbx)) = sub.first() {
            let mut dx = dbx.clone();
            ndarray::Zip::from(&mut dx).and(x).for_each(|g, &v| {
                if v.abs() > 1.0 {
                    *g = 0.0;
                }
            });
            out[0] = Some(dx);
        }
        if let Some(Some(dbw)) = sub.get(1) {
            let axis = weight_axis(ctx.node)?;
            let per_channel = w.len() / m.max(1);
            let mut dw = dbw.clone();
            for (index, gv) in dw.indexed_iter_mut() {
                let c = index[axis];
                let wv = w[&index];
                let ste = if wv.abs() <= 1.0 { *gv } else { 0.0 };
                let s = if wv > 0.0 {
                    1.0
                } else if wv < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                *gv = ste + s * (dalpha[c] / per_channel as f64) as f32;
            }
            out[1] = Some(dw);
        }
        if ctx.wants(2)
            && let Some(b) = optional(inputs, 2)
        {
            let db =
                ArrayD::from_shape_vec(IxDyn(&[m]), db.into_iter().map(|v| v as f32).collect())
                    .map_err(|e| OpError(e.to_string()))?;
            out[2] = Some(reduce_to_shape(db, b.shape())?);
        }
        Ok(out)
    }
}

/// D by XNOR-popcount: Conv as im2col rows of the binarized input against the packed filters
/// (per image and group), Gemm as the packed input rows against the packed weight rows.
fn popcount_d(node: &Node, bx: &ArrayD<f32>, bw: &ArrayD<f32>) -> Result<ArrayD<f32>, OpError> {
    if node.op_type == "Gemm" {
        let trans_b = node.attr_int("transB", 0)? != 0;
        let x2 = bx
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| OpError("Gemm input must be 2-D".into()))?;
        let w2 = bw
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| OpError("Gemm weight must be 2-D".into()))?;
        let rows = if trans_b { w2 } else { w2.reversed_axes() };
        let d = binary_gemm(
            &PackedMatrix::from_signs(x2),
            &PackedMatrix::from_signs(rows),
        );
        return Ok(d.mapv(|v| v as f32).into_dyn());
    }
    let spec = WindowSpec::conv(node, &bw.shape()[2..])?;
    let axes = spec.axes(&bx.shape()[2..])?;
    let a = crate::engine::geometry::to3(&axes);
    let (n, c, m) = (bx.shape()[0], bx.shape()[1], bw.shape()[0]);
    let group = spec.group;
    let (cg, mg) = (c / group, m / group);
    let kk: usize = a.iter().map(|ax| ax.kernel).product();
    let kc = cg * kk;
    let in_sz: usize = a.iter().map(|ax| ax.input).product();
    let out_sz: usize = a.iter().map(|ax| ax.output).product();
    let xs = bx.as_standard_layout();
    let xs = xs.as_slice().unwrap_or(&[]);
    let ws = bw.as_standard_layout();
    let ws = ws.as_slice().unwrap_or(&[]);
    let pads = spec.pads_input();
    let mut d = vec![0.0f32; n * m * out_sz];
    let mut rows_plus = vec![0.0f32; out_sz * kc];
    let mut rows_minus = vec![0.0f32; out_sz * kc];
    for gi in 0..group {
        let filters =
            ndarray::ArrayView2::from_shape((mg, kc), &ws[gi * mg * kc..(gi + 1) * mg * kc])
                .map_err(|e| OpError(e.to_string()))?;
        let packed_w = PackedMatrix::from_signs(filters);
        for ni in 0..n {
            let planes = &xs[(ni * c + gi * cg) * in_sz..(ni * c + (gi + 1) * cg) * in_sz];
            patches(planes, cg, &a, &mut rows_plus, &mut rows_minus);
            let plus = ndarray::ArrayView2::from_shape((out_sz, kc), &rows_plus[..])
                .map_err(|e| OpError(e.to_string()))?;
            let mut dots = binary_gemm(&PackedMatrix::from_signs(plus), &packed_w);
            if pads {
                let minus = ndarray::ArrayView2::from_shape((out_sz, kc), &rows_minus[..])
                    .map_err(|e| OpError(e.to_string()))?;
                let other = binary_gemm(&PackedMatrix::from_signs(minus), &packed_w);
                dots.zip_mut_with(&other, |a, &b| *a = (*a + b) / 2);
            }
            for p in 0..out_sz {
                for j in 0..mg {
                    d[(ni * m + gi * mg + j) * out_sz + p] = dots[[p, j]] as f32;
                }
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend(axes.iter().map(|ax| ax.output));
    ArrayD::from_shape_vec(IxDyn(&shape), d).map_err(|e| OpError(e.to_string()))
}

/// One row per output position with every tap of every channel (weight order), padding as +1
/// in `plus` and −1 in `minus`.
fn patches(
    planes: &[f32],
    cg: usize,
    a: &[crate::engine::geometry::Axis; 3],
    plus: &mut [f32],
    minus: &mut [f32],
) {
    let in_sz: usize = a.iter().map(|ax| ax.input).product();
    let kk: usize = a.iter().map(|ax| ax.kernel).product();
    let kc = cg * kk;
    let mut p = 0;
    for od in 0..a[0].output {
        for oh in 0..a[1].output {
            for ow in 0..a[2].output {
                let o = [od, oh, ow];
                for ci in 0..cg {
                    let mut t = 0;
                    for kd in 0..a[0].kernel {
                        for kh in 0..a[1].kernel {
                            for kw in 0..a[2].kernel {
                                let k = [kd, kh, kw];
                                let mut idx = [0usize; 3];
                                let mut inside = true;
                                for ax in 0..3 {
                                    let pos =
                                        (o[ax] * a[ax].stride) as isize + a[ax].tap_offset(k[ax]);
                                    if pos < 0 || pos >= a[ax].input as isize {
                                        inside = false;
                                    } else {
                                        idx[ax] = pos as usize;
                                    }
                                }
                                let col = p * kc + ci * kk + t;
                                if inside {
                                    let v = planes[ci * in_sz
                                        + (idx[0] * a[1].input + idx[1]) * a[2].input
                                        + idx[2]];
                                    plus[col] = v;
                                    minus[col] = v;
                                } else {
                                    plus[col] = 1.0;
                                    minus[col] = -1.0;
                                }
                                t += 1;
                            }
                        }
                    }
                }
                p += 1;
            }
        }
    }
}
