//! Pad (constant, reflect and edge modes).

use super::index::gather_by_maps;
use super::*;

/// Source index along an axis of size `d` for position `j` (may be outside) in a pad mode.
pub(super) fn pad_source(j: i64, d: i64, mode: &str) -> Option<usize> {
    if (0..d).contains(&j) {
        return Some(j as usize);
    }
    match mode {
        "edge" => Some(j.clamp(0, d - 1) as usize),
        "wrap" => Some(j.rem_euclid(d) as usize),
        "reflect" => {
            if d == 1 {
                return Some(0);
            }
            let period = 2 * (d - 1);
            let m = j.rem_euclid(period);
            Some(if m < d { m } else { period - m } as usize)
        }
        _ => None,
    }
}

pub(super) fn pad(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let rank = shape.len();
    let mode = ctx.node.attr_string("mode", "constant")?;
    if !matches!(mode.as_str(), "constant" | "reflect" | "edge" | "wrap") {
        return Err(OpError(format!("unknown pad mode '{mode}'")));
    }
    let (pads, value_f, value_i, axes) = if ctx.opset < 11 {
        let pads = ctx
            .node
            .attr_ints(if ctx.opset < 2 { "paddings" } else { "pads" })?
            .ok_or_else(|| OpError("missing attribute 'pads'".into()))?;
        let v = ctx.node.attr_float("value", 0.0)?;
        (pads, v, v as i64, None)
    } else {
        let pads = int_values(input(inputs, 1)?, "pads")?;
        let (vf, vi) = match optional(inputs, 2) {
            None => (0.0, 0),
            Some(t) if t.len() > 1 => {
                return Err(OpError("constant_value must be a scalar".into()));
            }
            Some(TensorData::F32(a)) => {
                let v = a.iter().next().copied().unwrap_or(0.0);
                (v, v as i64)
            }
            Some(TensorData::I64(a)) => {
                let v = a.iter().next().copied().unwrap_or(0);
                (v as f32, v)
            }
        };
        let axes = if ctx.opset >= 18 {
            optional(inputs, 3)
                .map(|t| int_values(t, "axes"))
                .transpose()?
        } else {
            None
        };
        (pads, vf, vi, axes)
    };
    let axes = match axes {
        Some(a) => normalize_axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(OpError(format!(
            "pads has {} values, expected {} for {} axes",
            pads.len(),
            2 * axes.len(),
            axes.len()
        )));
    }
    let mut begin = vec![0i64; rank];
    let mut end = vec![0i64; rank];
    for (k, &a) in axes.iter().enumerate() {
        begin[a] = pads[k];
        end[a] = pads[k + axes.len()];
    }
    let mut out_dims = Vec::with_capacity(rank);
    for a in 0..rank {
        let d = shape[a] as i64;
        let out = d
            .checked_add(begin[a])
            .and_then(|v| v.checked_add(end[a]))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                OpError(format!(
                    "pads {pads:?} give axis {a} of size {d} an invalid size"
                ))
            })?;
        if d == 0 && out > 0 && mode != "constant" {
            return Err(OpError(format!("cannot pad empty axis {a} in {mode} mode")));
        }
        out_dims.push(out);
    }
    checked_len(&out_dims)?;
    let maps: Vec<Vec<Option<usize>>> = (0..rank)
        .map(|a| {
            (0..out_dims[a] as i64)
                .map(|i| pad_source(i - begin[a], shape[a] as i64, &mode))
                .collect()
        })
        .collect();
    single(match x {
        TensorData::F32(a) => TensorData::F32(gather_by_maps(a, &maps, value_f)?),
        TensorData::I64(a) => TensorData::I64(gather_by_maps(a, &maps, value_i)?),
    })
}
