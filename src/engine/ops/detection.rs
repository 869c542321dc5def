//! Detector post-processing: NonMaxSuppression and RoiAlign, following onnxruntime's CPU
//! kernels (score and IoU comparisons strict, RoiAlign's sampling grid and its max mode taking
//! the largest weighted corner).

use super::gather_scatter::index_values;
use super::{OpCtx, OpError, OpResult, Registry, array_from, input, input_f32, optional, single};
use crate::ir::TensorData;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("NonMaxSuppression", non_max_suppression);
    registry.add("RoiAlign", roi_align);
}

/// A one-element float input, if given.
fn scalar_f32(t: Option<&TensorData>, what: &str) -> Result<Option<f32>, OpError> {
    let Some(t) = t else { return Ok(None) };
    let v: Vec<f32> = match t {
        TensorData::F32(a) => a.iter().copied().collect(),
        TensorData::I64(a) => a.iter().map(|&v| v as f32).collect(),
    };
    match v.as_slice() {
        [] => Ok(None),
        [x] => Ok(Some(*x)),
        _ => Err(OpError(format!("{what} must hold one value"))),
    }
}

/// A box as (x_min, y_min, x_max, y_max).
fn corners(b: &[f32], center_point_box: bool) -> (f32, f32, f32, f32) {
    if center_point_box {
        let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
        (b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh)
    } else {
        // [y1, x1, y2, x2], any diagonal pair
        (
            b[1].min(b[3]),
            b[0].min(b[2]),
            b[1].max(b[3]),
            b[0].max(b[2]),
        )
    }
}

/// Whether box `b` overlaps the kept box `a` by more than the IoU threshold.
fn suppresses(a: (f32, f32, f32, f32), b: (f32, f32, f32, f32), threshold: f32) -> bool {
    let (ix0, ix1) = (a.0.max(b.0), a.2.min(b.2));
    if ix1 <= ix0 {
        return false;
    }
    let (iy0, iy1) = (a.1.max(b.1), a.3.min(b.3));
    if iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area_a = (a.2 - a.0) * (a.3 - a.1);
    let area_b = (b.2 - b.0) * (b.3 - b.1);
    let union = area_a + area_b - inter;
    if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

/// NonMaxSuppression: per batch and class, boxes by falling score (ties by index), each kept
/// unless it overlaps a kept box by more than `iou_threshold`; at most
/// `max_output_boxes_per_class` (0 or absent: none). Output `[selected, 3]` of
/// (batch, class, box).
fn non_max_suppression(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let boxes = input_f32(inputs, 0)?;
    let scores = input_f32(inputs, 1)?;
    let (&[batches, spatial, four], &[sb, classes, ss]) = (boxes.shape(), scores.shape()) else {
        return Err(OpError(format!(
            "boxes and scores must be 3-D, got {:?} and {:?}",
            boxes.shape(),
            scores.shape()
        )));
    };
    if four != 4 || sb != batches || ss != spatial {
        return Err(OpError(format!(
            "boxes {:?} and scores {:?} do not match ([B, n, 4] and [B, classes, n])",
            boxes.shape(),
            scores.shape()
        )));
    }
    let max_out = match optional(inputs, 2) {
        Some(t) => index_values(t, "max_output_boxes_per_class")?
            .first()
            .copied()
            .unwrap_or(0)
            .max(0) as usize,
        None => 0,
    };
    let iou = scalar_f32(optional(inputs, 3), "iou_threshold")?.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&iou) {
        return Err(OpError(format!("iou_threshold {iou} is not in [0, 1]")));
    }
    let score_threshold = scalar_f32(optional(inputs, 4), "score_threshold")?;
    let center = ctx.node.attr_int("center_point_box", 0)? != 0;
    let boxes = boxes.as_standard_layout();
    let scores = scores.as_standard_layout();
    let (bd, sd) = (
        boxes.as_slice().expect("standard layout"),
        scores.as_slice().expect("standard layout"),
    );
    let mut selected: Vec<i64> = Vec::new();
    if max_out > 0 {
        for b in 0..batches {
            let box_at = |i: usize| {
                corners(
                    &bd[(b * spatial + i) * 4..(b * spatial + i) * 4 + 4],
                    center,
                )
            };
            for c in 0..classes {
                let s = &sd[(b * classes + c) * spatial..(b * classes + c + 1) * spatial];
                let mut order: Vec<usize> = (0..spatial)
                    .filter(|&i| score_threshold.is_none_or(|t| s[i] > t))
                    .collect();
                order.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
                let mut kept: Vec<usize> = Vec::new();
                for i in order {
                    if kept.len() >= max_out {
                        break;
                    }
                    let candidate = box_at(i);
                    if kept.iter().all(|&k| !suppresses(box_at(k), candidate, iou)) {
                        kept.push(i);
                        selected.extend([b as i64, c as i64, i as i64]);
                    }
                }
            }
        }
    }
    let n = selected.len() / 3;
    single(array_from(&[n, 3], selected)?)
}

/// One bilinear sample: four input offsets (within a plane) and their weights.
#[derive(Clone, Copy, Default)]
struct Sample {
    pos: [usize; 4],
    w: [f32; 4],
}

/// The indices below and above `v` (≥ 0) on an axis of `size`; past the last index both are
/// the last one and `v` is clamped to it.
fn neighbours(v: &mut f32, size: usize) -> (usize, usize) {
    let low = *v as usize;
    if low >= size - 1 {
        *v = (size - 1) as f32;
        (size - 1, size - 1)
    } else {
        (low, low + 1)
    }
}

/// The bilinear sample at (y, x) of an `h`×`w` plane (zero weights outside [-1, size]).
fn sample_at(mut y: f32, mut x: f32, h: usize, w: usize) -> Sample {
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 {
        return Sample::default();
    }
    y = y.max(0.0);
    x = x.max(0.0);
    let (y_low, y_high) = neighbours(&mut y, h);
    let (x_low, x_high) = neighbours(&mut x, w);
    let (ly, lx) = (y - y_low as f32, x - x_low as f32);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Sample {
        pos: [
            y_low * w + x_low,
            y_low * w + x_high,
            y_high * w + x_low,
            y_high * w + x_high,
        ],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

/// RoiAlign: every region split into `output_height`×`output_width` bins, each the average (or
/// max) of a grid of bilinear samples.
fn roi_align(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let rois = input_f32(inputs, 1)?;
    let batch_indices = index_values(input(inputs, 2)?, "batch_indices")?;
    let &[n, c, h, w] = x.shape() else {
        return Err(OpError(format!("X must be 4-D, got {:?}", x.shape())));
    };
    let &[num_rois, four] = rois.shape() else {
        return Err(OpError(format!(
            "rois must be [num_rois, 4], got {:?}",
            rois.shape()
        )));
    };
    if four != 4 || batch_indices.len() != num_rois {
        return Err(OpError(format!(
            "rois {:?} and batch_indices of {} values do not match",
            rois.shape(),
            batch_indices.len()
        )));
    }
    let node = ctx.node;
    let ph = usize::try_from(node.attr_int("output_height", 1)?).unwrap_or(0);
    let pw = usize::try_from(node.attr_int("output_width", 1)?).unwrap_or(0);
    let sampling = node.attr_int("sampling_ratio", 0)?.max(0) as usize;
    let spatial_scale = node.attr_float("spatial_scale", 1.0)?;
    let max_mode = match node.attr_string("mode", "avg")?.as_str() {
        "avg" => false,
        "max" => true,
        other => return Err(OpError(format!("mode must be avg or max, got '{other}'"))),
    };
    let default_transform = if ctx.opset >= 16 {
        "half_pixel"
    } else {
        "output_half_pixel"
    };
    let half_pixel = match node
        .attr_string("coordinate_transformation_mode", default_transform)?
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => {
            return Err(OpError(format!(
                "coordinate_transformation_mode '{other}' is not supported"
            )));
        }
    };
    if h == 0 || w == 0 {
        return Err(OpError("X has an empty plane".into()));
    }
    let x = x.as_standard_layout();
    let xd = x.as_slice().expect("standard layout");
    let rois = rois.as_standard_layout();
    let rd = rois.as_slice().expect("standard layout");
    let offset = if half_pixel { 0.5 } else { 0.0 };
    let mut out = vec![0f32; num_rois * c * ph * pw];
    for r in 0..num_rois {
        let b = usize::try_from(batch_indices[r])
            .ok()
            .filter(|&b| b < n)
            .ok_or_else(|| OpError(format!("batch index {} is out of range", batch_indices[r])))?;
        let roi = &rd[r * 4..r * 4 + 4];
        let (x0, y0) = (
            roi[0] * spatial_scale - offset,
            roi[1] * spatial_scale - offset,
        );
        let (x1, y1) = (
            roi[2] * spatial_scale - offset,
            roi[3] * spatial_scale - offset,
        );
        let (mut rw, mut rh) = (x1 - x0, y1 - y0);
        if !half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bin_h, bin_w) = (rh / ph as f32, rw / pw as f32);
        let grid_h = if sampling > 0 {
            sampling
        } else {
            (rh / ph as f32).ceil() as usize
        };
        let grid_w = if sampling > 0 {
            sampling
        } else {
            (rw / pw as f32).ceil() as usize
        };
        let count = (grid_h * grid_w).max(1) as f32;
        // The samples of every bin, shared by all channels.
        let mut samples = Vec::with_capacity(ph * pw * grid_h * grid_w);
        for py in 0..ph {
            for px in 0..pw {
                for iy in 0..grid_h {
                    let y = y0 + py as f32 * bin_h + (iy as f32 + 0.5) * bin_h / grid_h as f32;
                    for ix in 0..grid_w {
                        let xx = x0 + px as f32 * bin_w + (ix as f32 + 0.5) * bin_w / grid_w as f32;
                        samples.push(sample_at(y, xx, h, w));
                    }
                }
            }
        }
        let per_bin = grid_h * grid_w;
        for ch in 0..c {
            let plane = &xd[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
            for bin in 0..ph * pw {
                let bin_samples = &samples[bin * per_bin..(bin + 1) * per_bin];
                let value = if max_mode {
                    let mut best: Option<f32> = None;
                    for s in bin_samples {
                        let v = (0..4)
                            .map(|k| s.w[k] * plane[s.pos[k]])
                            .fold(f32::NEG_INFINITY, f32::max);
                        best = Some(best.map_or(v, |m| m.max(v)));
                    }
                    best.unwrap_or(0.0)
                } else {
                    let total: f32 = bin_samples
                        .iter()
                        .map(|s| (0..4).map(|k| s.w[k] * plane[s.pos[k]]).sum::<f32>())
                        .sum();
                    total / count
                };
                out[((r * c + ch) * ph * pw) + bin] = value;
            }
        }
    }
    single(array_from(&[num_rois, c, ph, pw], out)?)
}
