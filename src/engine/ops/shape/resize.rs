//! Resize (nearest) and Upsample.

use super::index::gather_by_maps;
use super::*;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Nearest {
    /// Resize-10 / Upsample: floor when upsampling, ceil when downsampling.
    Simple,
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Input coordinate of output position `x` along an axis.
pub(super) fn original_coordinate(
    mode: &str,
    x: f32,
    scale: f32,
    len_in: usize,
    len_out: usize,
) -> f32 {
    let (li, lo) = (len_in as f32, len_out as f32);
    match mode {
        "asymmetric" => x / scale,
        "align_corners" => {
            if len_out == 1 {
                0.0
            } else {
                x * (li - 1.0) / (lo - 1.0)
            }
        }
        "pytorch_half_pixel" => {
            if len_out > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        "tf_half_pixel_for_nearest" => (x + 0.5) / scale,
        "half_pixel_symmetric" => {
            let adjustment = lo / (scale * li);
            let center = li / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        // half_pixel
        _ => (x + 0.5) / scale - 0.5,
    }
}

pub(super) fn nearest_index(x: f32, mode: Nearest, downsampling: bool, len_in: usize) -> usize {
    let half = x.floor() + 0.5 == x;
    let i = match mode {
        Nearest::Simple => {
            if downsampling {
                x.ceil()
            } else {
                x.trunc()
            }
        }
        Nearest::RoundPreferFloor => {
            if half {
                x.floor()
            } else {
                x.round()
            }
        }
        Nearest::RoundPreferCeil => {
            if half {
                x.ceil()
            } else {
                x.round()
            }
        }
        Nearest::Floor => x.floor(),
        Nearest::Ceil => x.ceil(),
    };
    (i.max(0.0) as usize).min(len_in.saturating_sub(1))
}

/// Nearest resize of `x` to `out_shape` with per-axis `scales`.
pub(super) fn resize_nearest(
    x: &TensorData,
    out_shape: &[usize],
    scales: &[f32],
    coord_mode: &str,
    nearest: Nearest,
) -> OpResult {
    let shape = x.shape();
    checked_len(out_shape)?;
    if shape.contains(&0) && out_shape.iter().any(|&d| d > 0) {
        return Err(OpError(format!("cannot resize the empty shape {shape:?}")));
    }
    let maps: Vec<Vec<Option<usize>>> = (0..shape.len())
        .map(|a| {
            let (li, lo, s) = (shape[a], out_shape[a], scales[a]);
            (0..lo)
                .map(|o| {
                    let c = original_coordinate(coord_mode, o as f32, s, li, lo);
                    Some(nearest_index(c, nearest, s < 1.0, li))
                })
                .collect()
        })
        .collect();
    single(each_kind!(x, a => gather_by_maps(a, &maps, Default::default())?))
}

pub(super) fn check_mode(ctx: &OpCtx<'_>) -> Result<(), OpError> {
    let mode = ctx.node.attr_string("mode", "nearest")?;
    if mode != "nearest" {
        return Err(OpError(format!(
            "mode '{mode}' is not supported (only 'nearest')"
        )));
    }
    Ok(())
}

/// Output shape from scales (floor of input × scale).
pub(super) fn shape_from_scales(shape: &[usize], scales: &[f32]) -> Result<Vec<usize>, OpError> {
    if scales.len() != shape.len() {
        return Err(OpError(format!(
            "scales has {} values, the input has rank {}",
            scales.len(),
            shape.len()
        )));
    }
    if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(OpError(format!("scale {s} must be positive")));
    }
    Ok(shape
        .iter()
        .zip(scales)
        .map(|(&d, &s)| (d as f32 * s) as usize)
        .collect())
}

pub(super) fn float_values(t: &TensorData) -> Vec<f32> {
    match t {
        TensorData::F32(a) => a.iter().copied().collect(),
        TensorData::I64(a) => a.iter().map(|&v| v as f32).collect(),
    }
}

pub(super) fn resize(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    check_mode(ctx)?;
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    if ctx.opset < 11 {
        let scales = float_values(input(inputs, 1)?);
        let out = shape_from_scales(&shape, &scales)?;
        return resize_nearest(x, &out, &scales, "asymmetric", Nearest::Simple);
    }
    let coord_mode = ctx
        .node
        .attr_string("coordinate_transformation_mode", "half_pixel")?;
    if !matches!(
        coord_mode.as_str(),
        "half_pixel"
            | "half_pixel_symmetric"
            | "asymmetric"
            | "align_corners"
            | "pytorch_half_pixel"
            | "tf_half_pixel_for_nearest"
    ) {
        return Err(OpError(format!(
            "coordinate_transformation_mode '{coord_mode}' is not supported"
        )));
    }
    let nearest = match ctx
        .node
        .attr_string("nearest_mode", "round_prefer_floor")?
        .as_str()
    {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => return Err(OpError(format!("unknown nearest_mode '{other}'"))),
    };
    let axes = match ctx.node.attr_ints("axes")? {
        Some(a) if ctx.opset >= 18 => normalize_axes(&a, rank)?,
        _ => (0..rank).collect(),
    };
    let scales_in = optional(inputs, 2)
        .map(float_values)
        .filter(|s| !s.is_empty());
    let sizes_in = optional(inputs, 3)
        .map(|t| int_values(t, "sizes"))
        .transpose()?
        .filter(|s| !s.is_empty());
    let mut scales = vec![1f32; rank];
    let mut out_shape = shape.clone();
    match (scales_in, sizes_in) {
        (Some(_), Some(_)) => {
            return Err(OpError("give either scales or sizes, not both".into()));
        }
        (Some(s), None) => {
            if s.len() != axes.len() {
                return Err(OpError(format!(
                    "scales has {} values for {} axes",
                    s.len(),
                    axes.len()
                )));
            }
            for (k, &a) in axes.iter().enumerate() {
                scales[a] = s[k];
            }
            out_shape = shape_from_scales(&shape, &scales)?;
        }
        (None, Some(sizes)) => {
            if sizes.len() != axes.len() {
                return Err(OpError(format!(
                    "sizes has {} values for {} axes",
                    sizes.len(),
                    axes.len()
                )));
            }
            let sizes = dims_from(&sizes, "sizes")?;
            let policy = ctx
                .node
                .attr_string("keep_aspect_ratio_policy", "stretch")?;
            let ratios: Vec<f32> = axes
                .iter()
                .zip(&sizes)
                .map(|(&a, &s)| s as f32 / shape[a] as f32)
                .collect();
            let common = match policy.as_str() {
                "stretch" => None,
                "not_larger" => Some(ratios.iter().copied().fold(f32::INFINITY, f32::min)),
                "not_smaller" => Some(ratios.iter().copied().fold(0.0, f32::max)),
                other => {
                    return Err(OpError(format!(
                        "unknown keep_aspect_ratio_policy '{other}'"
                    )));
                }
            };
            for (k, &a) in axes.iter().enumerate() {
                match common {
                    None => {
                        out_shape[a] = sizes[k];
                        scales[a] = ratios[k];
                    }
                    Some(c) => {
                        out_shape[a] = (shape[a] as f32 * c).round() as usize;
                        scales[a] = c;
                    }
                }
            }
        }
        (None, None) => return Err(OpError("one of scales or sizes is required".into())),
    }
    resize_nearest(x, &out_shape, &scales, &coord_mode, nearest)
}

pub(super) fn upsample(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    check_mode(ctx)?;
    let x = input(inputs, 0)?;
    let scales = if ctx.opset >= 9 {
        float_values(input(inputs, 1)?)
    } else {
        ctx.node
            .attr_floats("scales")?
            .ok_or_else(|| OpError("missing attribute 'scales'".into()))?
    };
    let out = shape_from_scales(x.shape(), &scales)?;
    resize_nearest(x, &out, &scales, "asymmetric", Nearest::Simple)
}
