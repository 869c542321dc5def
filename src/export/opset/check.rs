//! Forms a graph at a given opset must not contain: attributes that became inputs or were
//! removed, operators that were removed, and attribute values that lost their meaning. A
//! lift ends with this check, so a form the rewrites missed is an error, never a file that
//! onnx.checker or onnxruntime rejects.

use crate::ir::{Attribute, Graph, Node};

/// (op, attribute, first opset without it), from the ONNX operator changelog.
const REMOVED_ATTRIBUTES: [(&str, &str, i64); 28] = [
    ("Upsample", "scales", 9),
    ("BatchNormalization", "spatial", 9),
    ("Scan", "directions", 9),
    ("MeanVarianceNormalization", "across_channels", 9),
    ("MeanVarianceNormalization", "normalize_variance", 9),
    ("Slice", "starts", 10),
    ("Slice", "ends", 10),
    ("Slice", "axes", 10),
    ("TopK", "k", 10),
    ("Pad", "pads", 11),
    ("Pad", "value", 11),
    ("Clip", "min", 11),
    ("Clip", "max", 11),
    ("Dropout", "ratio", 12),
    ("Squeeze", "axes", 13),
    ("Unsqueeze", "axes", 13),
    ("ReduceSum", "axes", 13),
    ("Split", "split", 13),
    ("ReduceMean", "axes", 18),
    ("ReduceMax", "axes", 18),
    ("ReduceMin", "axes", 18),
    ("ReduceProd", "axes", 18),
    ("ReduceL1", "axes", 18),
    ("ReduceL2", "axes", 18),
    ("ReduceLogSum", "axes", 18),
    ("ReduceLogSumExp", "axes", 18),
    ("ReduceSumSquare", "axes", 18),
    ("DFT", "axis", 20),
];

/// (op, first opset without it).
const REMOVED_OPERATORS: [(&str, i64); 13] = [
    ("Upsample", 10),
    ("Scatter", 11),
    ("ImageScaler", 10),
    ("ATen", 10),
    ("Affine", 10),
    ("ConstantFill", 10),
    ("Crop", 10),
    ("DynamicSlice", 10),
    ("GRUUnit", 10),
    ("GivenTensorFill", 10),
    ("ParametricSoftplus", 10),
    ("Scale", 10),
    ("ScaledTanh", 10),
];

/// Every form in `graph`'s default-domain nodes that its opset no longer has, one line each
/// ("node 'n' (Slice): attribute 'starts' was removed at opset 10"). Empty when clean.
pub fn stale_forms(graph: &Graph) -> Vec<String> {
    let opset = graph.opset;
    let mut found = Vec::new();
    for node in &graph.nodes {
        if !matches!(node.domain.as_str(), "" | "ai.onnx") {
            continue;
        }
        let op = node.op_type.as_str();
        let mut say = |what: String| found.push(format!("node '{}' ({op}): {what}", node.name));
        for &(o, attr, since) in &REMOVED_ATTRIBUTES {
            if o == op && opset >= since && node.attributes.contains_key(attr) {
                say(format!("attribute '{attr}' was removed at opset {since}"));
            }
        }
        for &(o, since) in &REMOVED_OPERATORS {
            if o == op && opset >= since {
                say(format!("the operator was removed at opset {since}"));
            }
        }
        if let Some(what) = stale_value(node, opset) {
            say(what);
        }
    }
    found
}

fn string_attr<'n>(node: &'n Node, name: &str) -> Option<&'n str> {
    match node.attributes.get(name) {
        Some(Attribute::String(s)) => Some(s),
        _ => None,
    }
}

/// Attribute values and input/output layouts that changed meaning or were removed.
fn stale_value(node: &Node, opset: i64) -> Option<String> {
    match node.op_type.as_str() {
        "Resize" if opset >= 11 && node.inputs.len() < 3 => Some(
            "it has fewer than 3 inputs (roi and scales are inputs 1 and 2 from opset 11)".into(),
        ),
        "Resize"
            if opset >= 13
                && string_attr(node, "coordinate_transformation_mode")
                    == Some("tf_half_pixel_for_nn") =>
        {
            Some(
                "coordinate_transformation_mode 'tf_half_pixel_for_nn' was removed at opset 13"
                    .into(),
            )
        }
        "GridSample"
            if opset >= 20 && matches!(string_attr(node, "mode"), Some("bilinear" | "bicubic")) =>
        {
            Some("modes 'bilinear' and 'bicubic' were renamed at opset 20".into())
        }
        "BatchNormalization"
            if opset >= 14
                && node.outputs.len() > 1
                && node.attr_int("training_mode", 0).unwrap_or(0) == 0 =>
        {
            Some("extra outputs without training_mode (their meaning changed at opset 14)".into())
        }
        "Split"
            if opset >= 18
                && node.input(1).is_none()
                && !node.attributes.contains_key("num_outputs") =>
        {
            Some("neither a split input nor num_outputs (required from opset 18)".into())
        }
        "Slice" | "TopK" if opset >= 10 && node.inputs.len() < 2 => {
            Some("its parameters are inputs from opset 10, and it has none".into())
        }
        "Pad" if opset >= 11 && node.inputs.len() < 2 => {
            Some("its pads are an input from opset 11, and it has none".into())
        }
        _ => None,
    }
}
