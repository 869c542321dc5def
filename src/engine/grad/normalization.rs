//! Backward of the normalizations.
//!
//! * BatchNormalization in inference mode, statistics frozen: y = (x − μ)·s + β with
//!   s = γ/√(σ² + ε); dx = g·s, dγ = Σ g·(x − μ)/√(σ² + ε), dβ = Σ g; the running mean and
//!   variance get no gradient.
//! * LayerNormalization over the axes from `axis` on: with x̂ = (x − μ)·r, r = 1/√(var + ε),
//!   dγ = Σ_rows g·x̂, dβ = Σ_rows g, dx = r·(gγ − mean(gγ) − x̂·mean(gγ·x̂)) per row.
//! * Softmax: dx = y ⊙ (g − Σ g⊙y) along the normalized axis; LogSoftmax: dx = g − eʸ·Σ g.
//!   Before opset 13 both normalize the whole block from `axis` on, as the forward does.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::{
    GradCtx, GradRegistry, GradResult, Grads, array_of, check_shape, contiguous, grad_output,
    output_f32, reduce_to_shape,
};
use crate::engine::ops::{OpError, input, input_f32, normalize_axis, optional};
use crate::ir::TensorData;

pub fn register(registry: &mut GradRegistry) {
    registry.add("BatchNormalization", batch_norm);
    registry.add("LayerNormalization", layer_norm);
    registry.add("Softmax", softmax);
    registry.add("LogSoftmax", log_softmax);
}

fn float_values(t: &TensorData) -> Vec<f32> {
    t.to_f32().iter().copied().collect()
}

fn batch_norm(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    if ctx.node.attr_int("training_mode", 0)? != 0 {
        return Err(OpError("training_mode=1 has no forward kernel".into()));
    }
    let x = input_f32(inputs, 0)?;
    let g = grad_output(grads, 0)?;
    check_shape("the output", g, x.shape())?;
    if x.ndim() < 2 {
        return Err(OpError(format!(
            "X must be [N, C, ...], got {:?}",
            x.shape()
        )));
    }
    let c = x.shape()[1];
    let epsilon = ctx.node.attr_float("epsilon", 1e-5)?;
    let params: Vec<Vec<f32>> = (1..=4)
        .map(|i| input(inputs, i).map(float_values))
        .collect::<Result<_, _>>()?;
    if params.iter().any(|p| p.len() != c) {
        return Err(OpError(format!(
            "BatchNormalization parameters must have {c} values"
        )));
    }
    let (scale, mean, var) = (&params[0], &params[2], &params[3]);
    let inv_std: Vec<f32> = var.iter().map(|&v| 1.0 / (v + epsilon).sqrt()).collect();
    let mul: Vec<f32> = (0..c)
        .map(|k| scale[k] / (var[k] + epsilon).sqrt())
        .collect();
    let inner: usize = x.shape()[2..].iter().product();
    let xs = contiguous(x);
    let gs = contiguous(g);
    let mut out: Grads = vec![None; inputs.len().max(5)];
    if ctx.wants(0) {
        let mut dx = vec![0.0f32; xs.len()];
        if inner > 0 {
            dx.par_chunks_mut(inner)
                .zip(gs.par_chunks(inner))
                .enumerate()
                .for_each(|(p, (d, gp))| {
                    let m = mul[p % c];
                    for (d, &gv) in d.iter_mut().zip(gp) {
                        *d = gv * m;
                    }
                });
        }
        out[0] = Some(array_of(x.shape(), dx)?);
    }
    if ctx.wants(1) || ctx.wants(2) {
        let mut dgamma = vec![0.0f64; c];
        let mut dbeta = vec![0.0f64; c];
        if inner > 0 {
            for (p, (xp, gp)) in xs.chunks(inner).zip(gs.chunks(inner)).enumerate() {
                let k = p % c;
                for (&xv, &gv) in xp.iter().zip(gp) {
                    dgamma[k] += f64::from(gv) * f64::from((xv - mean[k]) * inv_std[k]);
                    dbeta[k] += f64::from(gv);
                }
            }
        }
        let shaped = |v: Vec<f64>, i: usize| -> Result<ArrayD<f32>, OpError> {
            let shape = input(inputs, i)?.shape().to_vec();
            array_of(&shape, v.into_iter().map(|x| x as f32).collect())
        };
        if ctx.wants(1) {
            out[1] = Some(shaped(dgamma, 1)?);
        }
        if ctx.wants(2) {
            out[2] = Some(shaped(dbeta, 2)?);
        }
    }
    out.truncate(inputs.len());
    Ok(out)
}

/// (mean, 1/√(var + ε)) of one row in f64, as the forward computes them.
fn moments(x: &[f32], epsilon: f32) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + f64::from(epsilon)).sqrt())
}

/// A parameter broadcast to the normalized shape, as the forward reads it.
fn param_for(t: &TensorData, norm_shape: &[usize]) -> Result<Vec<f32>, OpError> {
    let a = t.to_f32();
    let b = a.broadcast(IxDyn(norm_shape)).ok_or_else(|| {
        OpError(format!(
            "parameter of shape {:?} does not broadcast to {norm_shape:?}",
            a.shape()
        ))
    })?;
    Ok(b.iter().copied().collect())
}

fn layer_norm(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    if grads.iter().skip(1).any(Option::is_some) {
        return Err(OpError(
            "gradients through the Mean and InvStdDev outputs are not supported".into(),
        ));
    }
    let x = input_f32(inputs, 0)?;
    let g = grad_output(grads, 0)?;
    check_shape("the output", g, x.shape())?;
    let shape = x.shape();
    let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, shape.len())?;
    let epsilon = ctx.node.attr_float("epsilon", 1e-5)?;
    let norm_shape = &shape[axis..];
    let n: usize = norm_shape.iter().product();
    let gamma = param_for(input(inputs, 1)?, norm_shape)?;
    let xs = contiguous(x);
    let gs = contiguous(g);
    let rows = xs.len().checked_div(n).unwrap_or(0);
    let mut dx = vec![0.0f32; if ctx.wants(0) { xs.len() } else { 0 }];
    // Per row: dx, and the row's contribution to dγ (g·x̂); dβ is the column sum of g.
    let mut dgamma = vec![0.0f64; n];
    let mut dbeta = vec![0.0f64; n];
    let mut xhat_row = vec![0.0f64; n];
    for r in 0..rows {
        let xr = &xs[r * n..(r + 1) * n];
        let gr = &gs[r * n..(r + 1) * n];
        let (mean, inv) = moments(xr, epsilon);
        let (mut mean_gg, mut mean_ggx) = (0.0f64, 0.0f64);
        for j in 0..n {
            let xh = (f64::from(xr[j]) - mean) * inv;
            xhat_row[j] = xh;
            let gg = f64::from(gr[j]) * f64::from(gamma[j]);
            mean_gg += gg;
            mean_ggx += gg * xh;
            dgamma[j] += f64::from(gr[j]) * xh;
            dbeta[j] += f64::from(gr[j]);
        }
        mean_gg /= n as f64;
        mean_ggx /= n as f64;
        if ctx.wants(0) {
            for j in 0..n {
                let gg = f64::from(gr[j]) * f64::from(gamma[j]);
                dx[r * n + j] = (inv * (gg - mean_gg - xhat_row[j] * mean_ggx)) as f32;
            }
        }
    }
    let mut out: Grads = vec![None; inputs.len()];
    if ctx.wants(0) {
        out[0] = Some(array_of(shape, dx)?);
    }
    for (i, sums) in [(1usize, dgamma), (2, dbeta)] {
        if ctx.wants(i)
            && let Some(p) = optional(inputs, i)
        {
            let full = array_of(norm_shape, sums.into_iter().map(|v| v as f32).collect())?;
            out[i] = Some(reduce_to_shape(full, p.shape())?);
        }
    }
    Ok(out)
}

/// (normalized length n, stride inner) of Softmax/LogSoftmax at this opset.
fn softmax_layout(ctx: &GradCtx<'_>, shape: &[usize]) -> Result<(usize, usize), OpError> {
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    Ok(if ctx.opset < 13 {
        let axis = normalize_axis(ctx.node.attr_int("axis", 1)?, shape.len())?;
        (shape[axis..].iter().product(), 1)
    } else {
        let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, shape.len())?;
        (shape[axis], shape[axis + 1..].iter().product())
    })
}

fn softmax_family(
    ctx: &GradCtx<'_>,
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
    log: bool,
) -> GradResult {
    if !ctx.wants(0) {
        return Ok(vec![None]);
    }
    let y = output_f32(outputs, 0)?;
    let g = grad_output(grads, 0)?;
    check_shape("the output", g, y.shape())?;
    let (n, inner) = softmax_layout(ctx, y.shape())?;
    let ys = contiguous(y);
    let gs = contiguous(g);
    let block = n * inner;
    let mut dx = vec![0.0f32; ys.len()];
    if block > 0 {
        dx.par_chunks_mut(block)
            .zip(ys.par_chunks(block))
            .zip(gs.par_chunks(block))
            .for_each(|((d, yb), gb)| {
                for i in 0..inner {
                    let at = |k: usize| k * inner + i;
                    if log {
                        let sum: f64 = (0..n).map(|k| f64::from(gb[at(k)])).sum();
                        for k in 0..n {
                            let p = f64::from(yb[at(k)]).exp();
                            d[at(k)] = (f64::from(gb[at(k)]) - p * sum) as f32;
                        }
                    } else {
                        let dot: f64 = (0..n)
                            .map(|k| f64::from(gb[at(k)]) * f64::from(yb[at(k)]))
                            .sum();
                        for k in 0..n {
                            let yk = f64::from(yb[at(k)]);
                            d[at(k)] = (yk * (f64::from(gb[at(k)]) - dot)) as f32;
                        }
                    }
                }
            });
    }
    Ok(vec![Some(array_of(y.shape(), dx)?)])
}

fn softmax(
    ctx: &GradCtx<'_>,
    _inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    softmax_family(ctx, outputs, grads, false)
}

fn log_softmax(
    ctx: &GradCtx<'_>,
    _inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    softmax_family(ctx, outputs, grads, true)
}

#[cfg(test)]
mod tests {
    use super::super::check::{Case, check, random};

    #[test]
    fn batch_norm_with_frozen_statistics() {
        for shape in [&[3usize, 4, 2, 3][..], &[5, 4]] {
            let case = Case::new("BatchNormalization")
                .attr_float("epsilon", 1e-3)
                .input(random(shape, 1, -2.0, 2.0))
                .input(random(&[4], 2, 0.5, 1.5))
                .input(random(&[4], 3, -1.0, 1.0))
                .constant(random(&[4], 4, -0.5, 0.5).into())
                .constant(random(&[4], 5, 0.2, 2.0).into());
            check(&case, 2e-3);
        }
    }

    #[test]
    fn layer_norm_over_one_and_two_axes() {
        let case = Case::new("LayerNormalization")
            .input(random(&[3, 4, 6], 1, -2.0, 2.0))
            .input(random(&[6], 2, 0.5, 1.5))
            .input(random(&[6], 3, -1.0, 1.0));
        check(&case, 5e-3);
        let case = Case::new("LayerNormalization")
            .attr_int("axis", 1)
            .attr_float("epsilon", 1e-3)
            .input(random(&[3, 4, 5], 4, -2.0, 2.0))
            .input(random(&[4, 5], 5, 0.5, 1.5))
            .input(random(&[5], 6, -1.0, 1.0));
        check(&case, 5e-3);
    }

    #[test]
    fn softmax_and_log_softmax_on_every_layout() {
        for op in ["Softmax", "LogSoftmax"] {
            for (axis, opset) in [(-1, 13), (1, 13), (0, 13), (1, 11)] {
                let case = Case::new(op)
                    .opset(opset)
                    .attr_int("axis", axis)
                    .input(random(&[2, 3, 4], 7, -2.0, 2.0));
                check(&case, 2e-3);
            }
        }
    }
}
