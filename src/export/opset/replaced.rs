//! Operators removed or renamed, and attribute values whose meaning changed.
//!
//! | op | opset | change |
//! | --- | --- | --- |
//! | experimental ops | 10 | removed; `ImageScaler`, `Scale`, `Affine`, `ScaledTanh` and `ParametricSoftplus` become `Mul`/`Add`/`Tanh`/`Softplus` chains, `MeanVarianceNormalization`-1 becomes version 9 (`axes`), the others are refused |
//! | Scatter | 11 | deprecated; the same operator is `ScatterElements` |
//! | Scan | 9 | `sequence_lens` and the batch axis removed (refused) |
//! | RoiAlign | 16 | `coordinate_transformation_mode` added with default `half_pixel`; the old behaviour is `output_half_pixel` |
//! | GridSample | 20 | modes renamed: `bilinear` → `linear`, `bicubic` → `cubic` |

use super::rewriter::Rewriter;
use crate::error::Result;
use crate::ir::{Attribute, Node};

/// Experimental operators of opsets before 10 with no standard replacement Quantscope makes.
const EXPERIMENTAL: [&str; 6] = [
    "ATen",
    "ConstantFill",
    "Crop",
    "DynamicSlice",
    "GRUUnit",
    "GivenTensorFill",
];

/// Experimental elementwise operators of opsets before 10, rewritten as standard ones.
const EXPERIMENTAL_ELEMENTWISE: [&str; 5] = [
    "ImageScaler",
    "Scale",
    "Affine",
    "ScaledTanh",
    "ParametricSoftplus",
];

pub(super) fn handles(op: &str) -> bool {
    matches!(
        op,
        "MeanVarianceNormalization" | "Scatter" | "Scan" | "RoiAlign" | "GridSample"
    ) || EXPERIMENTAL.contains(&op)
        || EXPERIMENTAL_ELEMENTWISE.contains(&op)
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
        _ if EXPERIMENTAL_ELEMENTWISE.contains(&op.as_str()) && rw.target >= 10 => {
            return experimental_elementwise(rw, node);
        }
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

/// One step of an elementwise chain replacing an experimental operator.
enum Step {
    /// Multiply by a scalar.
    Mul(f32),
    /// Add a scalar.
    Add(f32),
    /// Add one value per channel of an NCHW tensor.
    AddPerChannel(Vec<f32>),
    /// A unary operator.
    Unary(&'static str),
}

/// The experimental elementwise operators as chains of standard ones:
/// `ImageScaler` (NCHW) `y = scale · x + bias[c]`, `Scale` `y = scale · x`, `Affine`
/// `y = alpha · x + beta`, `ScaledTanh` `y = alpha · tanh(beta · x)` and
/// `ParametricSoftplus` `y = alpha · ln(1 + exp(beta · x))`.
fn elementwise_chain(rw: &Rewriter<'_>, node: &mut Node) -> Result<Vec<Step>> {
    let required = |rw: &Rewriter<'_>, node: &mut Node, name: &str| {
        rw.take_float(node, name)?
            .ok_or_else(|| rw.error(node, format!("attribute '{name}' is missing")))
    };
    Ok(match node.op_type.as_str() {
        "ImageScaler" => {
            let scale = rw.take_float(node, "scale")?.unwrap_or(1.0);
            let bias = rw.take_floats(node, "bias")?.unwrap_or_default();
            let mut steps = vec![Step::Mul(scale)];
            if !bias.is_empty() {
                steps.push(Step::AddPerChannel(bias));
            }
            steps
        }
        "Scale" => vec![Step::Mul(rw.take_float(node, "scale")?.unwrap_or(1.0))],
        "Affine" => vec![
            Step::Mul(rw.take_float(node, "alpha")?.unwrap_or(1.0)),
            Step::Add(rw.take_float(node, "beta")?.unwrap_or(0.0)),
        ],
        "ScaledTanh" | "ParametricSoftplus" => {
            let alpha = required(rw, node, "alpha")?;
            let beta = required(rw, node, "beta")?;
            let unary = if node.op_type == "ScaledTanh" {
                "Tanh"
            } else {
                "Softplus"
            };
            vec![Step::Mul(beta), Step::Unary(unary), Step::Mul(alpha)]
        }
        _ => Vec::new(),
    })
}

fn experimental_elementwise(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    let steps = elementwise_chain(rw, &mut node)?;
    let dtype = rw.float_type_of_input(&node, 0)?;
    let (Some(x), Some(y)) = (node.input(0), node.outputs.first()) else {
        return Err(rw.error(&node, "it needs one input and one output"));
    };
    let (mut current, y) = (x.to_string(), y.clone());
    let base = node.name.clone();
    let count = steps.len();
    for (k, step) in steps.into_iter().enumerate() {
        let out = if k + 1 == count {
            y.clone()
        } else {
            rw.fresh(&format!("{base}_step{k}"))
        };
        let (op, operand) = match step {
            Step::Mul(v) => ("Mul", Some((vec![], vec![v]))),
            Step::Add(v) => ("Add", Some((vec![], vec![v]))),
            Step::AddPerChannel(v) => ("Add", Some((vec![v.len(), 1, 1], v))),
            Step::Unary(op) => (op, None),
        };
        let mut inputs = vec![current];
        if let Some((shape, values)) = operand {
            let hint = format!("{base}_{}", op.to_lowercase());
            inputs.push(rw.const_real(&hint, &shape, values, dtype)?);
        }
        let n = rw.node(
            op,
            &format!("{base}_{k}"),
            inputs,
            vec![out.clone()],
            vec![],
        );
        rw.emit(n);
        current = out;
    }
    Ok(())
}
