//! Upsample and Resize. Upsample was replaced by Resize at opset 10 (its `scales` had become an
//! input at 9); Resize gained a `roi` input and the coordinate-transformation and rounding
//! attributes at 11, and `tf_half_pixel_for_nn` was removed at 13.
//!
//! Before opset 11, the coordinate of output pixel `o` in the input was `o / scale` (what
//! opset 11 calls `asymmetric`), and nearest neighbours were picked by truncation when
//! upsampling and by ceiling when downsampling an axis (onnxruntime's behaviour for these
//! versions, which the old specifications left open). Upsample's scales are at least 1, so
//! it always becomes `floor`; Resize-10 needs its constant scales to choose between `floor`
//! and `ceil`.
//!
//! `tf_half_pixel_for_nn` maps `o` to `(o + 0.5) / scale`, which is `half_pixel` plus 0.5, so
//! its `floor` rounding is `half_pixel` with `round_prefer_ceil` and its `round_prefer_floor`
//! is `half_pixel` with `ceil`; the other two roundings have no exact equivalent.

use super::rewriter::{Rewriter, set_input, trim_optional};
use crate::error::Result;
use crate::ir::{Attribute, DType, Node};

pub(super) fn handles(op: &str) -> bool {
    matches!(op, "Upsample" | "Resize")
}

pub(super) fn lift(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    match node.op_type.as_str() {
        "Upsample" if rw.target >= 10 => upsample_to_resize(rw, &mut node)?,
        "Upsample" if rw.crosses(9) => move_scales_to_input(rw, &mut node)?,
        "Resize" if rw.crosses(11) => resize_10_to_11(rw, &mut node)?,
        "Resize" if rw.crosses(13) => resize_11_to_13(rw, &mut node)?,
        _ => {}
    }
    trim_optional(&mut node);
    rw.emit(node);
    Ok(())
}

/// Upsample-7's `scales` attribute as input 1, as Upsample-9 has it.
fn move_scales_to_input(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    if node.input(1).is_some() {
        return Ok(());
    }
    let Some(scales) = rw.take_floats(node, "scales")? else {
        return Err(rw.error(node, "attribute 'scales' is missing"));
    };
    let name = rw.const_real(
        &format!("{}_scales", node.name),
        &[scales.len()],
        scales,
        DType::F32,
    )?;
    set_input(node, 1, name);
    Ok(())
}

fn upsample_to_resize(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    move_scales_to_input(rw, node)?;
    let mode = rw.string_attr(node, "mode", "nearest")?;
    if !matches!(mode.as_str(), "nearest" | "linear") {
        return Err(rw.error(
            node,
            format!("mode '{mode}' is not one of Upsample's 'nearest' or 'linear'"),
        ));
    }
    node.op_type = "Resize".into();
    node.attributes.clear();
    node.attributes
        .insert("mode".into(), Attribute::String(mode.clone()));
    if rw.target >= 11 {
        add_roi(rw, node)?;
        set_old_coordinates(node, (mode == "nearest").then_some("floor"));
    }
    Ok(())
}

fn resize_10_to_11(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    let mode = rw.string_attr(node, "mode", "nearest")?;
    let rounding = if mode == "nearest" {
        let scales = node
            .input(1)
            .and_then(|s| rw.constant(s))
            .and_then(|t| t.data.as_f32())
            .map(|a| a.iter().copied().collect::<Vec<f32>>());
        let Some(scales) = scales else {
            return Err(rw.error(
                node,
                "its scales are computed in the graph, and nearest rounding before opset 11 \
                 depends on whether each scale is below 1 (a constant scales tensor is needed)",
            ));
        };
        let up = scales.iter().any(|&s| s > 1.0);
        let down = scales.iter().any(|&s| s < 1.0);
        if up && down {
            return Err(rw.error(
                node,
                format!(
                    "scales {scales:?} enlarge some axes and shrink others; opset 11 has one \
                     nearest rounding per node"
                ),
            ));
        }
        Some(if down { "ceil" } else { "floor" })
    } else {
        None
    };
    add_roi(rw, node)?;
    set_old_coordinates(node, rounding);
    Ok(())
}

/// Inserts Resize-11's `roi` input before `scales` (empty: only `tf_crop_and_resize` reads it,
/// and from opset 13 it may be omitted).
fn add_roi(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    let roi = if rw.target >= 13 {
        String::new()
    } else {
        rw.const_real(&format!("{}_roi", node.name), &[0], vec![], DType::F32)?
    };
    let scales = node.inputs.get(1).cloned().unwrap_or_default();
    node.inputs.truncate(1);
    set_input(node, 1, roi);
    set_input(node, 2, scales);
    Ok(())
}

/// The pre-opset-11 coordinate mapping and nearest rounding as opset-11 attributes.
fn set_old_coordinates(node: &mut Node, nearest_rounding: Option<&str>) {
    node.attributes.insert(
        "coordinate_transformation_mode".into(),
        Attribute::String("asymmetric".into()),
    );
    if let Some(rounding) = nearest_rounding {
        node.attributes
            .insert("nearest_mode".into(), Attribute::String(rounding.into()));
    }
}

fn resize_11_to_13(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    let transform = rw.string_attr(node, "coordinate_transformation_mode", "half_pixel")?;
    if transform != "tf_half_pixel_for_nn" {
        return Ok(());
    }
    let mode = rw.string_attr(node, "mode", "nearest")?;
    let rounding = rw.string_attr(node, "nearest_mode", "round_prefer_floor")?;
    let equivalent = match (mode.as_str(), rounding.as_str()) {
        ("nearest", "floor") => "round_prefer_ceil",
        ("nearest", "round_prefer_floor") => "ceil",
        _ => {
            return Err(rw.error(
                node,
                format!(
                    "coordinate_transformation_mode 'tf_half_pixel_for_nn' (removed at opset 13) \
                     with mode '{mode}' and nearest_mode '{rounding}' has no exact equivalent"
                ),
            ));
        }
    };
    node.attributes.insert(
        "coordinate_transformation_mode".into(),
        Attribute::String("half_pixel".into()),
    );
    node.attributes
        .insert("nearest_mode".into(), Attribute::String(equivalent.into()));
    Ok(())
}
