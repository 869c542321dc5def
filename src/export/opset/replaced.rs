//! Operators removed or renamed, and attribute values whose meaning changed.
//!
//! | op | opset | change |
//! | --- | --- | --- |
//! | experimental ops | 10 | removed; `ImageScaler` becomes `Mul` + `Add`, `MeanVarianceNormalization`-1 becomes version 9 (`axes`), the others are refused |
//! | Scatter | 11 | deprecated; the same operator is `ScatterElements` |
//! | Scan | 9 | `sequence_lens` and the batch axis removed (refused) |
//! | RoiAlign | 16 | `coordinate_transformation_mode` added with default `half_pixel`; the old behaviour is `output_half_pixel` |
//! | GridSample | 20 | modes renamed: `bilinear` → `linear`, `bicubic` → `cubic` |

use super::rewriter::Rewriter;
use crate::error::Result;
use crate::ir::{Attribute, Node};

/// Experimental operators of opsets before 10 with no standard replacement Quantscope makes.
const EXPERIMENTAL: [&str; 10] = [
    "ATen",
    "Affine",
    "ConstantFill",
    "Crop",
    "DynamicSlice",
    "GRUUnit",
    "GivenTensorFill",
    "ParametricSoftplus",
    "Scale",
    "ScaledTanh",
];

pub(super) fn handles(op: &str) -> bool {
    matches!(
        op,
        "ImageScaler"
            | "MeanVarianceNormalization"
            | "Scatter"
            | "Scan"
            | "RoiAlign"
            | "GridSample"
    ) || EXPERIMENTAL.contains(&op)
}

pub(super) fn lift(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    let op = node.op_type.clone();
    match op.as_str() {
        _ if EXPERIMENTAL.contains(&op.as_str()) && rw.target >= 10 => {
            return Err(rw.error(
                &node,
                "it is an experimental operator that ONNX removed at opset 10, and Quantscope has no standard replacement for it",
            ));
        }
        "ImageScaler" if rw.target >= 10 => return image_scaler(rw, node),
        "MeanVarianceNormalization" if rw.crosses(9) => {
            let across = rw.take_int(&mut node, "across_channels")?.unwrap_or(0);
            let variance = rw.take_int(&mut node, "normalize_variance")?.unwrap_or(1);
            if variance == 0 {
                return Err(rw.error(
                    &node,
                    "normalize_variance = 0 has no equivalent in MeanVarianceNormalization-9",
                ));
            }
            let axes = if across != 0 {
                vec![0, 1, 2, 3]
            } else {
                vec![0, 2, 3]
            };
            node.attributes.insert("axes".into(), Attribute::Ints(axes));
        }
        "Scatter" if rw.target >= 11 => node.op_type = "ScatterElements".into(),
        "Scan" if rw.crosses(9) => {
            return Err(rw.error(
                &node,
                "Scan-8 (with sequence_lens and a batch axis) has no automatic rewrite to Scan-9",
            ));
        }
        "RoiAlign" if rw.crosses(16) => {
            node.attributes
                .entry("coordinate_transformation_mode".into())
                .or_insert_with(|| Attribute::String("output_half_pixel".into()));
        }
        "GridSample" if rw.crosses(20) => {
            let mode = rw.string_attr(&node, "mode", "bilinear")?;
            let renamed = match mode.as_str() {
                "bilinear" => "linear",
                "bicubic" => "cubic",
                other => other,
            };
            node.attributes
                .insert("mode".into(), Attribute::String(renamed.into()));
        }
        _ => {}
    }
    rw.emit(node);
    Ok(())
}

/// `ImageScaler` (NCHW): `y = scale · x + bias[c]`.
fn image_scaler(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    let scale = rw.take_float(&mut node, "scale")?.unwrap_or(1.0);
    let bias = rw.take_floats(&mut node, "bias")?.unwrap_or_default();
    let dtype = rw.float_type_of_input(&node, 0)?;
    let (Some(x), Some(y)) = (node.input(0), node.outputs.first()) else {
        return Err(rw.error(&node, "it needs one input and one output"));
    };
    let (x, y) = (x.to_string(), y.clone());
    let base = node.name.clone();
    let scale_name = rw.const_real(&format!("{base}_scale"), &[], vec![scale], dtype)?;
    let scaled = if bias.is_empty() {
        y.clone()
    } else {
        rw.fresh(&format!("{base}_scaled"))
    };
    let mul = rw.node(
        "Mul",
        &format!("{base}_mul"),
        vec![x, scale_name],
        vec![scaled.clone()],
        vec![],
    );
    rw.emit(mul);
    if !bias.is_empty() {
        let channels = bias.len();
        let bias_name = rw.const_real(&format!("{base}_bias"), &[channels, 1, 1], bias, dtype)?;
        let add = rw.node(
            "Add",
            &format!("{base}_add"),
            vec![scaled, bias_name],
            vec![y],
            vec![],
        );
        rw.emit(add);
    }
    Ok(())
}
