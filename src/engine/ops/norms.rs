//! Normalizations beyond the core family: GroupNormalization, LRN, MeanVarianceNormalization,
//! LpNormalization, RMSNormalization and Hardmax.
//!
//! Statistics are accumulated in f64 over each normalized block, then applied in f32.

use super::{
    OpCtx, OpError, OpResult, Registry, array_from, contiguous, float_values, input, input_f32,
    input_nc, normalize_axis, positive_attr,
};
use crate::ir::TensorData;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("GroupNormalization", group_norm);
    registry.add("LRN", lrn);
    registry.add("MeanVarianceNormalization", mean_variance_norm);
    registry.add("LpNormalization", lp_norm);
    registry.add("RMSNormalization", rms_norm);
    registry.add("Hardmax", hardmax);
}

/// Mean and variance (population) of a block.
fn moments(block: &[f32]) -> (f64, f64) {
    let n = block.len().max(1) as f64;
    let mean = block.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = block
        .iter()
        .map(|&v| {
            let d = f64::from(v) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, var)
}

// ---- GroupNormalization -----------------------------------------------------------------------

/// GroupNormalization: channels split into `num_groups` groups normalized over the group's
/// channels and all spatial positions; scale and bias per group (opset 18) or per channel
/// (opset 21).
fn group_norm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_nc(inputs, 0)?;
    let shape = x.shape().to_vec();
    let groups = positive_attr(ctx, "num_groups")?;
    let (n, c) = (shape[0], shape[1]);
    if c % groups != 0 {
        return Err(OpError(format!(
            "{c} channels do not split into {groups} groups"
        )));
    }
    let epsilon = f64::from(ctx.node.attr_float("epsilon", 1e-5)?);
    let scale = float_values(input(inputs, 1)?);
    let bias = float_values(input(inputs, 2)?);
    // Opset 18 has one value per group, opset 21 one per channel; accept whichever fits.
    let per_channel = |v: &[f32], what: &str| -> Result<Vec<f32>, OpError> {
        if v.len() == c {
            Ok(v.to_vec())
        } else if v.len() == groups {
            Ok((0..c).map(|k| v[k / (c / groups)]).collect())
        } else {
            Err(OpError(format!(
                "{what} has {} values; expected {c} (channels) or {groups} (groups)",
                v.len()
            )))
        }
    };
    let (scale, bias) = (per_channel(&scale, "scale")?, per_channel(&bias, "bias")?);
    let inner: usize = shape[2..].iter().product();
    let group_len = c / groups * inner;
    let data = contiguous(x);
    let mut out = vec![0f32; data.len()];
    for (g, (xb, ob)) in data
        .chunks(group_len.max(1))
        .zip(out.chunks_mut(group_len.max(1)))
        .enumerate()
        .take(n * groups)
    {
        let (mean, var) = moments(xb);
        let inv = 1.0 / (var + epsilon).sqrt();
        let first_channel = (g % groups) * (c / groups);
        for (k, (xc, oc)) in xb
            .chunks(inner.max(1))
            .zip(ob.chunks_mut(inner.max(1)))
            .enumerate()
        {
            let (s, b) = (scale[first_channel + k], bias[first_channel + k]);
            for (o, &v) in oc.iter_mut().zip(xc) {
                *o = (((f64::from(v) - mean) * inv) as f32) * s + b;
            }
        }
    }
    Ok(vec![TensorData::F32(array_from(&shape, out)?)])
}

// ---- LRN ------------------------------------------------------------------------------------

/// Local response normalization across channels:
/// `y = x / (bias + alpha/size · Σ x²)^beta` over a window of `size` channels.
fn lrn(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_nc(inputs, 0)?;
    let shape = x.shape().to_vec();
    let size = positive_attr(ctx, "size")?;
    let alpha = ctx.node.attr_float("alpha", 1e-4)?;
    let beta = ctx.node.attr_float("beta", 0.75)?;
    let bias = ctx.node.attr_float("bias", 1.0)?;
    let (n, c) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let data = contiguous(x);
    let mut out = vec![0f32; data.len()];
    let scale = alpha / size as f32;
    for b in 0..n {
        let base = b * c * inner;
        for ch in 0..c {
            let lo = ch.saturating_sub(before);
            let hi = (ch + after).min(c - 1);
            for p in 0..inner {
                let mut sq = 0f32;
                for k in lo..=hi {
                    let v = data[base + k * inner + p];
                    sq += v * v;
                }
                let i = base + ch * inner + p;
                out[i] = data[i] / (bias + scale * sq).powf(beta);
            }
        }
    }
    Ok(vec![TensorData::F32(array_from(&shape, out)?)])
}

// ---- MeanVarianceNormalization -----------------------------------------------------------------

/// `(x − mean) / (sqrt(E[x²] − mean²) + 1e-9)` over `axes` (default [0, 2, 3]).
fn mean_variance_norm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let axes = ctx.node.attr_ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]);
    let mut reduced = vec![false; rank];
    for &a in &axes {
        reduced[normalize_axis(a, rank)?] = true;
    }
    // Move the kept axes first: every kept index then owns a contiguous block.
    let kept: Vec<usize> = (0..rank).filter(|&a| !reduced[a]).collect();
    let order: Vec<usize> = kept
        .iter()
        .copied()
        .chain((0..rank).filter(|&a| reduced[a]))
        .collect();
    let permuted = x.view().permuted_axes(order.clone());
    let block: usize = (0..rank)
        .filter(|&a| reduced[a])
        .map(|a| shape[a])
        .product();
    let data: Vec<f32> = permuted.iter().copied().collect();
    let mut normalized = vec![0f32; data.len()];
    for (xb, ob) in data
        .chunks(block.max(1))
        .zip(normalized.chunks_mut(block.max(1)))
    {
        let n = xb.len().max(1) as f64;
        let mean = xb.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let mean_sq = xb.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n;
        let std = (mean_sq - mean * mean).max(0.0).sqrt() + 1e-9;
        for (o, &v) in ob.iter_mut().zip(xb) {
            *o = ((f64::from(v) - mean) / std) as f32;
        }
    }
    let permuted_shape: Vec<usize> = order.iter().map(|&a| shape[a]).collect();
    let mut inverse = vec![0usize; rank];
    for (k, &a) in order.iter().enumerate() {
        inverse[a] = k;
    }
    let out = array_from(&permuted_shape, normalized)?.permuted_axes(inverse);
    Ok(vec![TensorData::F32(out.as_standard_layout().into_owned())])
}

// ---- LpNormalization / Hardmax ------------------------------------------------------------------

/// The input seen as `[outer, len, inner]` around `axis`.
fn around_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// `x / sqrt(mean(x²) + epsilon) · scale` over the axes from `axis` to the last (opset 23);
/// `scale` broadcasts against those trailing axes.
fn rms_norm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let scale = input_f32(inputs, 1)?;
    let shape = x.shape().to_vec();
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, shape.len())?;
    let epsilon = f64::from(ctx.node.attr_float("epsilon", 1e-5)?);
    let trailing = &shape[axis..];
    let scale = scale.broadcast(trailing).ok_or_else(|| {
        OpError(format!(
            "scale {:?} does not broadcast to the normalized axes {trailing:?}",
            scale.shape()
        ))
    })?;
    let scale: Vec<f32> = scale.iter().copied().collect();
    let block = scale.len().max(1);
    let data = contiguous(x);
    let mut out = vec![0f32; data.len()];
    for (xb, ob) in data.chunks(block).zip(out.chunks_mut(block)) {
        let mean_sq = xb.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / block as f64;
        let inv = 1.0 / (mean_sq + epsilon).sqrt();
        for ((o, &v), &s) in ob.iter_mut().zip(xb).zip(&scale) {
            *o = (f64::from(v) * inv) as f32 * s;
        }
    }
    Ok(vec![TensorData::F32(array_from(&shape, out)?)])
}

/// `x / ‖x‖_p` along `axis` (p = 1 or 2); zero vectors stay zero.
fn lp_norm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let shape = x.shape().to_vec();
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    let axis = normalize_axis(ctx.node.attr_int("axis", -1)?, shape.len())?;
    let p = ctx.node.attr_int("p", 2)?;
    if p != 1 && p != 2 {
        return Err(OpError(format!("p must be 1 or 2, got {p}")));
    }
    let (outer, len, inner) = around_axis(&shape, axis);
    let data = contiguous(x);
    let mut out = vec![0f32; data.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * len * inner + k * inner + i;
            let norm = if p == 1 {
                (0..len).map(|k| data[at(k)].abs()).sum::<f32>()
            } else {
                (0..len)
                    .map(|k| data[at(k)] * data[at(k)])
                    .sum::<f32>()
                    .sqrt()
            };
            for k in 0..len {
                out[at(k)] = if norm == 0.0 { 0.0 } else { data[at(k)] / norm };
            }
        }
    }
    Ok(vec![TensorData::F32(array_from(&shape, out)?)])
}

/// 1 at the first maximum along `axis` (opset 13+, default −1) or of each row of the input
/// flattened to 2-D at `axis` (before 13, default 1), 0 elsewhere.
fn hardmax(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let shape = x.shape().to_vec();
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    let default_axis = if ctx.opset >= 13 { -1 } else { 1 };
    let axis = normalize_axis(ctx.node.attr_int("axis", default_axis)?, shape.len())?;
    let (outer, len, inner) = if ctx.opset >= 13 {
        around_axis(&shape, axis)
    } else {
        (
            shape[..axis].iter().product(),
            shape[axis..].iter().product(),
            1,
        )
    };
    let data = contiguous(x);
    let mut out = vec![0f32; data.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * len * inner + k * inner + i;
            let mut best = 0;
            for k in 1..len {
                if data[at(k)] > data[at(best)] {
                    best = k;
                }
            }
            if len > 0 {
                out[at(best)] = 1.0;
            }
        }
    }
    Ok(vec![TensorData::F32(array_from(&shape, out)?)])
}
