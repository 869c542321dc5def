//! Normalization kernels: BatchNormalization (inference), InstanceNormalization,
//! LayerNormalization, Softmax and LogSoftmax.

use std::borrow::Cow;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::elementwise::math;
use super::{
    OpCtx, OpError, OpResult, PAR_MIN, Registry, array_from, contiguous, float_values, go_parallel,
    input, input_f32, input_nc, normalize_axis, optional,
};
use crate::engine::buffers::{recycled, zeroed};
use crate::ir::TensorData;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("BatchNormalization", batch_norm);
    registry.add("InstanceNormalization", instance_norm);
    registry.add("LayerNormalization", layer_norm);
    registry.add("Softmax", softmax);
    registry.add("LogSoftmax", log_softmax);
}

/// Calls `f(block_index, in_block, out_block)` for consecutive blocks of `len` elements,
/// in parallel when the data is large.
fn for_blocks<F>(x: &[f32], out: &mut [f32], len: usize, f: F)
where
    F: Fn(usize, &[f32], &mut [f32]) + Sync + Send,
{
    if len == 0 {
        return;
    }
    if go_parallel(x.len()) && x.len() / len > 1 {
        let per = (PAR_MIN / 4 / len).max(1);
        out.par_chunks_mut(per * len)
            .zip(x.par_chunks(per * len))
            .enumerate()
            .for_each(|(c, (o, i))| {
                for (k, (ob, ib)) in o.chunks_mut(len).zip(i.chunks(len)).enumerate() {
                    f(c * per + k, ib, ob);
                }
            });
    } else {
        for (k, (ob, ib)) in out.chunks_mut(len).zip(x.chunks(len)).enumerate() {
            f(k, ib, ob);
        }
    }
}

// ---- BatchNormalization ---------------------------------------------------------------------

fn batch_norm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    if ctx.node.attr_int("training_mode", 0)? != 0 {
        return Err(OpError(
            "training_mode=1 is not supported (inference only)".into(),
        ));
    }
    let x = input_nc(inputs, 0)?;
    let shape = x.shape();
    let c = shape[1];
    let epsilon = ctx.node.attr_float("epsilon", 1e-5)?;
    let mut params = Vec::with_capacity(4);
    for (i, name) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
        let p = float_values(input(inputs, i)?);
        if p.len() != c {
            return Err(OpError(format!(
                "{name} has {} values, X has {c} channels",
                p.len()
            )));
        }
        params.push(p);
    }
    let (scale, bias, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let mul: Vec<f32> = (0..c)
        .map(|k| scale[k] / (var[k] + epsilon).sqrt())
        .collect();
    let add: Vec<f32> = (0..c).map(|k| bias[k] - mean[k] * mul[k]).collect();
    let inner: usize = shape[2..].iter().product();
    let data = contiguous(x);
    // Every element is written below.
    let mut out = recycled::<f32>(data.len());
    if inner < 256 && c * inner <= 1 << 16 {
        // Small planes: per-plane blocks would be short loops; spell the factors out over a
        // whole image instead and run one long loop per image.
        let expand = |f: &[f32]| -> Vec<f32> {
            f.iter()
                .flat_map(|&v| std::iter::repeat_n(v, inner))
                .collect()
        };
        let (mul, add) = (expand(&mul), expand(&add));
        for_blocks(&data, &mut out, c * inner, |_, xi, o| {
            for (((o, &v), &m), &a) in o.iter_mut().zip(xi).zip(&mul).zip(&add) {
                *o = v * m + a;
            }
        });
    } else {
        for_blocks(&data, &mut out, inner, |b, xi, o| {
            let (m, a) = (mul[b % c], add[b % c]);
            for (o, &v) in o.iter_mut().zip(xi) {
                *o = v * m + a;
            }
        });
    }
    Ok(vec![array_from(shape, out)?.into()])
}

// ---- InstanceNormalization -----------------------------------------------------------------

/// (mean, 1/sqrt(var + eps)) of a run of values, accumulated in f64.
fn moments(x: &[f32], epsilon: f32) -> (f32, f32) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| {
            let d = v as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (var + epsilon as f64).sqrt()) as f32)
}

fn instance_norm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let shape = x.shape();
    if shape.len() < 3 {
        return Err(OpError(format!(
            "input must have rank >= 3 (N, C, D1, ...), got shape {shape:?}"
        )));
    }
    let c = shape[1];
    let scale = float_values(input(inputs, 1)?);
    let bias = float_values(input(inputs, 2)?);
    if scale.len() != c || bias.len() != c {
        return Err(OpError(format!(
            "scale and B must have {c} values, got {} and {}",
            scale.len(),
            bias.len()
        )));
    }
    let epsilon = ctx.node.attr_float("epsilon", 1e-5)?;
    let inner: usize = shape[2..].iter().product();
    let data = contiguous(x);
    let mut out = zeroed::<f32>(data.len());
    for_blocks(&data, &mut out, inner, |b, xi, o| {
        let (mean, inv) = moments(xi, epsilon);
        let (s, t) = (scale[b % c] * inv, bias[b % c]);
        for (o, &v) in o.iter_mut().zip(xi) {
            *o = (v - mean) * s + t;
        }
    });
    Ok(vec![array_from(shape, out)?.into()])
}

// ---- LayerNormalization ---------------------------------------------------------------------

/// A scale or bias broadcast to the normalized shape, as a flat vector.
fn param_for(t: &TensorData, norm_shape: &[usize], name: &str) -> Result<Vec<f32>, OpError> {
    let a: Cow<'_, ArrayD<f32>> = match t {
        TensorData::F32(a) => Cow::Borrowed(a),
        TensorData::I64(a) => Cow::Owned(a.mapv(|v| v as f32)),
    };
    if a.shape() == norm_shape {
        return Ok(contiguous(&a).into_owned());
    }
    let b = a.broadcast(IxDyn(norm_shape)).ok_or_else(|| {
        OpError(format!(
            "{name} of shape {:?} does not broadcast to the normalized shape {norm_shape:?}",
            a.shape()
        ))
    })?;
    Ok(b.iter().copied().collect())
}

fn layer_norm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let shape = x.shape();
    let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, shape.len())?;
    let epsilon = ctx.node.attr_float("epsilon", 1e-5)?;
    let norm_shape = &shape[axis..];
    let n: usize = norm_shape.iter().product();
    let scale = param_for(input(inputs, 1)?, norm_shape, "Scale")?;
    let bias = optional(inputs, 2)
        .map(|b| param_for(b, norm_shape, "B"))
        .transpose()?;
    let data = contiguous(x);
    let mut out = zeroed::<f32>(data.len());
    let rows = data.len().checked_div(n).unwrap_or(0);
    let want_stats = ctx.node.outputs.len() > 1;
    let mut stats = vec![(0f32, 0f32); if want_stats { rows } else { 0 }];
    let norm_row = |xi: &[f32], o: &mut [f32]| {
        let (mean, inv) = moments(xi, epsilon);
        match &bias {
            Some(bias) => {
                for (((o, &v), &s), &b) in o.iter_mut().zip(xi).zip(&scale).zip(bias) {
                    *o = (v - mean) * inv * s + b;
                }
            }
            None => {
                for ((o, &v), &s) in o.iter_mut().zip(xi).zip(&scale) {
                    *o = (v - mean) * inv * s;
                }
            }
        }
        (mean, inv)
    };
    if let Some(per) = (PAR_MIN / 4).checked_div(n) {
        if want_stats {
            // rows of a parallel chunk run serially, each writing its stats pair
            let per = per.max(1);
            out.par_chunks_mut(per * n)
                .zip(data.par_chunks(per * n))
                .zip(stats.par_chunks_mut(per))
                .for_each(|((o, i), st)| {
                    for ((ob, ib), s) in o.chunks_mut(n).zip(i.chunks(n)).zip(st.iter_mut()) {
                        *s = norm_row(ib, ob);
                    }
                });
        } else {
            for_blocks(&data, &mut out, n, |_, xi, o| {
                norm_row(xi, o);
            });
        }
    }
    let mut outputs: Vec<TensorData> = vec![array_from(shape, out)?.into()];
    if want_stats {
        let stat_shape: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(k, &d)| if k < axis { d } else { 1 })
            .collect();
        let means: Vec<f32> = stats.iter().map(|s| s.0).collect();
        let invs: Vec<f32> = stats.iter().map(|s| s.1).collect();
        outputs.push(array_from(&stat_shape, means)?.into());
        outputs.push(array_from(&stat_shape, invs)?.into());
    }
    Ok(outputs)
}

// ---- Softmax / LogSoftmax -------------------------------------------------------------------

/// Softmax over `n` values spaced `inner` apart, for all `inner` offsets of one block of
/// `n * inner` values.
fn softmax_block(x: &[f32], out: &mut [f32], inner: usize, log: bool) {
    if inner == 1 {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        math::map_into(x, out, |v| math::exp(v - max));
        let sum: f32 = out.iter().sum();
        if log {
            let ln_sum = sum.ln();
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v - max) - ln_sum;
            }
        } else {
            let inv = 1.0 / sum;
            for o in out.iter_mut() {
                *o *= inv;
            }
        }
        return;
    }
    let mut max = vec![f32::NEG_INFINITY; inner];
    for row in x.chunks(inner) {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
    let mut sum = vec![0f32; inner];
    for (orow, row) in out.chunks_mut(inner).zip(x.chunks(inner)) {
        math::zip_into(row, &max, orow, |v, m| math::exp(v - m));
        for (s, &e) in sum.iter_mut().zip(orow.iter()) {
            *s += e;
        }
    }
    if log {
        let ln_sum: Vec<f32> = sum.iter().map(|s| s.ln()).collect();
        for (orow, row) in out.chunks_mut(inner).zip(x.chunks(inner)) {
            for (((o, &v), &m), &l) in orow.iter_mut().zip(row).zip(&max).zip(&ln_sum) {
                *o = (v - m) - l;
            }
        }
    } else {
        let inv: Vec<f32> = sum.iter().map(|s| 1.0 / s).collect();
        for orow in out.chunks_mut(inner) {
            for (o, &r) in orow.iter_mut().zip(&inv) {
                *o *= r;
            }
        }
    }
}

fn softmax_common(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>], log: bool) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let shape = x.shape();
    let (n, inner) = if ctx.opset < 13 {
        // coerced to 2-D at `axis`: normalize the whole trailing block
        let axis = normalize_axis(ctx.node.attr_int("axis", 1)?, shape.len())?;
        (shape[axis..].iter().product::<usize>(), 1)
    } else {
        let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, shape.len())?;
        (shape[axis], shape[axis + 1..].iter().product::<usize>())
    };
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    let data = contiguous(x);
    let mut out = zeroed::<f32>(data.len());
    for_blocks(&data, &mut out, n * inner, |_, xi, o| {
        softmax_block(xi, o, inner, log)
    });
    Ok(vec![array_from(shape, out)?.into()])
}

fn softmax(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    softmax_common(ctx, inputs, false)
}

fn log_softmax(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    softmax_common(ctx, inputs, true)
}
