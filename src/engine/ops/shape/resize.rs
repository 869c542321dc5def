//! Resize (opsets 10–19) and Upsample (7–9) in every mode: nearest with each nearest_mode,
//! linear over any number of axes (bilinear, trilinear, ...) and cubic (cubic_coeff_a,
//! exclude_outside), every coordinate transformation including tf_crop_and_resize with its
//! ROI and extrapolation value, antialiasing, keep_aspect_ratio_policy and axes.
//!
//! Linear and cubic resizing is separable: the axes that change are resampled one after the
//! other with per-axis taps (`interpolate`).

use super::index::gather_by_maps;
use super::interpolate::{AxisResize, Coordinates, Filter, Nearest, Taps, nearest_index};
use super::*;
use crate::engine::ops::float_values;

#[cfg(test)]
mod tests;

/// Everything a resize needs, read from the node and its inputs.
struct ResizeSpec {
    axes: Vec<AxisResize>,
    coordinates: Coordinates,
    mode: Mode,
    antialias: bool,
    extrapolation: f32,
}

#[derive(Clone, Copy)]
enum Mode {
    Nearest(Nearest),
    Interpolate(Filter),
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

/// The mode attribute: nearest, linear (also "bilinear"/"trilinear" in old Upsample files) or
/// cubic.
fn read_mode(ctx: &OpCtx<'_>, nearest: Nearest) -> Result<Mode, OpError> {
    let mode = ctx.node.attr_string("mode", "nearest")?;
    Ok(match mode.to_ascii_lowercase().as_str() {
        "nearest" => Mode::Nearest(nearest),
        "linear" | "bilinear" | "trilinear" => Mode::Interpolate(Filter::Linear),
        "cubic" if ctx.opset >= 11 => Mode::Interpolate(Filter::Cubic {
            a: ctx.node.attr_float("cubic_coeff_a", -0.75)?,
            exclude_outside: ctx.node.attr_int("exclude_outside", 0)? != 0,
        }),
        _ => {
            return Err(OpError(format!(
                "mode '{mode}' is not supported (nearest, linear{})",
                if ctx.opset >= 11 { ", cubic" } else { "" }
            )));
        }
    })
}

/// Per-axis sizes for plain scales (Upsample, Resize-10).
fn plain_axes(shape: &[usize], scales: &[f32]) -> Result<Vec<AxisResize>, OpError> {
    let out = shape_from_scales(shape, scales)?;
    Ok((0..shape.len())
        .map(|a| AxisResize {
            len_in: shape[a],
            len_out: out[a],
            scale: scales[a],
            roi: (0.0, 1.0),
        })
        .collect())
}

/// Resize-11+ sizes: scales or sizes (with axes and keep_aspect_ratio_policy), and the ROI.
fn resize_axes(
    ctx: &OpCtx<'_>,
    inputs: &[Option<&TensorData>],
    shape: &[usize],
) -> Result<Vec<AxisResize>, OpError> {
    let rank = shape.len();
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
    let mut out_shape = shape.to_vec();
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
            out_shape = shape_from_scales(shape, &scales)?;
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
    // ROI: starts then ends, for all axes or for `axes`.
    let mut roi = vec![(0f32, 1f32); rank];
    if let Some(values) = optional(inputs, 1)
        .map(float_values)
        .filter(|r| !r.is_empty())
    {
        let n = values.len() / 2;
        let targets: Vec<usize> = if n == rank {
            (0..rank).collect()
        } else if n == axes.len() && values.len() == 2 * n {
            axes.clone()
        } else {
            return Err(OpError(format!(
                "roi has {} values; expected {} (starts and ends)",
                values.len(),
                2 * axes.len()
            )));
        };
        for (k, &a) in targets.iter().enumerate() {
            roi[a] = (values[k], values[n + k]);
        }
    }
    Ok((0..rank)
        .map(|a| AxisResize {
            len_in: shape[a],
            len_out: out_shape[a],
            scale: scales[a],
            roi: roi[a],
        })
        .collect())
}

fn read_spec(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> Result<ResizeSpec, OpError> {
    let x = input(inputs, 0)?;
    let shape = x.shape().to_vec();
    if ctx.opset < 11 {
        let scales = float_values(input(inputs, 1)?);
        return Ok(ResizeSpec {
            axes: plain_axes(&shape, &scales)?,
            coordinates: Coordinates::Asymmetric,
            mode: read_mode(ctx, Nearest::Simple)?,
            antialias: false,
            extrapolation: 0.0,
        });
    }
    let name = ctx
        .node
        .attr_string("coordinate_transformation_mode", "half_pixel")?;
    let coordinates = Coordinates::parse(&name)
        .filter(|c| *c != Coordinates::HalfPixelSymmetric || ctx.opset >= 19)
        .ok_or_else(|| {
            OpError(format!(
                "coordinate_transformation_mode '{name}' is not supported"
            ))
        })?;
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
    Ok(ResizeSpec {
        axes: resize_axes(ctx, inputs, &shape)?,
        coordinates,
        mode: read_mode(ctx, nearest)?,
        antialias: ctx.opset >= 18 && ctx.node.attr_int("antialias", 0)? != 0,
        extrapolation: ctx.node.attr_float("extrapolation_value", 0.0)?,
    })
}

pub(super) fn resize(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let spec = read_spec(ctx, inputs)?;
    run(input(inputs, 0)?, &spec)
}

pub(super) fn upsample(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let scales = if ctx.opset >= 9 {
        float_values(input(inputs, 1)?)
    } else {
        ctx.node
            .attr_floats("scales")?
            .ok_or_else(|| OpError("missing attribute 'scales'".into()))?
    };
    let spec = ResizeSpec {
        axes: plain_axes(x.shape(), &scales)?,
        coordinates: Coordinates::Asymmetric,
        mode: read_mode(ctx, Nearest::Simple)?,
        antialias: false,
        extrapolation: 0.0,
    };
    run(x, &spec)
}

fn run(x: &TensorData, spec: &ResizeSpec) -> OpResult {
    let shape = x.shape();
    let out_shape: Vec<usize> = spec.axes.iter().map(|a| a.len_out).collect();
    checked_len(&out_shape)?;
    if shape.contains(&0) && out_shape.iter().any(|&d| d > 0) {
        return Err(OpError(format!("cannot resize the empty shape {shape:?}")));
    }
    match spec.mode {
        Mode::Nearest(nearest) => resize_nearest(x, spec, nearest),
        Mode::Interpolate(filter) => match x {
            TensorData::F32(a) => single(interpolate(a, spec, filter)?),
            TensorData::I64(a) => {
                let floats = a.mapv(|v| v as f32);
                let out = interpolate(&floats, spec, filter)?;
                single(out.mapv(|v| v.round() as i64))
            }
        },
    }
}

/// Nearest resize through per-axis index maps (None where tf_crop_and_resize extrapolates).
fn resize_nearest(x: &TensorData, spec: &ResizeSpec, nearest: Nearest) -> OpResult {
    let maps: Vec<Vec<Option<usize>>> = spec
        .axes
        .iter()
        .map(|axis| {
            (0..axis.len_out)
                .map(|o| {
                    let c = axis.source(spec.coordinates, o as f32);
                    if spec.coordinates == Coordinates::TfCropAndResize && axis.outside(c) {
                        None
                    } else {
                        Some(nearest_index(c, nearest, axis.scale < 1.0, axis.len_in))
                    }
                })
                .collect()
        })
        .collect();
    let fill = spec.extrapolation;
    single(match x {
        TensorData::F32(a) => TensorData::F32(gather_by_maps(a, &maps, fill)?),
        TensorData::I64(a) => TensorData::I64(gather_by_maps(a, &maps, fill as i64)?),
    })
}

/// Linear or cubic resize, one changed axis at a time.
fn interpolate(x: &ArrayD<f32>, spec: &ResizeSpec, filter: Filter) -> Result<ArrayD<f32>, OpError> {
    let mut shape = x.shape().to_vec();
    let mut data = flat(x).into_owned();
    let crop = spec.coordinates == Coordinates::TfCropAndResize;
    let mut outside: Vec<Option<Vec<bool>>> = vec![None; shape.len()];
    // Shrinking axes first, growing ones last (each pass then runs on the fewest elements;
    // the last axis, summed element by element, is cheapest on the smaller side).
    let mut order: Vec<usize> = (0..spec.axes.len()).collect();
    order.sort_by(|&i, &j| {
        let ratio = |a: &AxisResize| a.len_out as f64 / a.len_in.max(1) as f64;
        ratio(&spec.axes[i]).total_cmp(&ratio(&spec.axes[j]))
    });
    for a in order {
        let axis = &spec.axes[a];
        if axis.is_identity(spec.coordinates) {
            continue;
        }
        let taps = Taps::build(axis, spec.coordinates, filter, spec.antialias);
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 1..].iter().product();
        data = taps.apply(&data, outer, inner);
        shape[a] = axis.len_out;
        if crop && taps.outside.iter().any(|&o| o) {
            outside[a] = Some(taps.outside);
        }
    }
    if outside.iter().any(Option::is_some) {
        // Any coordinate outside the input makes the output the extrapolation value.
        let mut strides = vec![1usize; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * shape[k + 1];
        }
        for (n, v) in data.iter_mut().enumerate() {
            let out = outside.iter().enumerate().any(|(k, flags)| {
                flags
                    .as_ref()
                    .is_some_and(|f| f[(n / strides[k]) % shape[k]])
            });
            if out {
                *v = spec.extrapolation;
            }
        }
    }
    array_from(&shape, data)
}
