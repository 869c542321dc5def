//! Identity and inference Dropout removed; QuantizeLinear told its code type; nodes of constants
//! evaluated once at plan time.

use std::sync::Arc;

use super::Work;
use crate::engine::ops::{self, OpCtx};
use crate::ir::{Attribute, TensorData};

/// Removes Identity and Dropout nodes (Dropout only when its mask is not read): their readers
/// read the input instead. Nodes whose output is kept stay.
pub(super) fn remove_identities(work: &mut Work<'_>) {
    let readers = work.readers();
    for i in 0..work.nodes.len() {
        let Some(planned) = &work.nodes[i] else {
            continue;
        };
        let node = &planned.node;
        if !node.in_default_domain() || !matches!(node.op_type.as_str(), "Identity" | "Dropout") {
            continue;
        }
        let (Some(input), Some(output)) = (node.input(0), node.outputs.first()) else {
            continue;
        };
        let mask_read = node
            .outputs
            .get(1)
            .is_some_and(|m| !m.is_empty() && (readers.contains_key(m) || work.kept(m)));
        if mask_read || work.kept(output) {
            continue;
        }
        let (from, to) = (output.clone(), input.to_string());
        work.nodes[i] = None;
        // readers come later in execution order: a chain of removals resolves in order
        for planned in work.nodes.iter_mut().skip(i + 1).flatten() {
            for name in planned.node.inputs.iter_mut() {
                if *name == from {
                    *name = to.clone();
                }
            }
        }
    }
}

/// Evaluates every node whose inputs are all constants (Constant nodes, shape arithmetic on
/// initializers, ...) and whose outputs are not kept; its outputs become constants.
pub(super) fn fold_constants(work: &mut Work<'_>) {
    for i in 0..work.nodes.len() {
        let Some(planned) = &work.nodes[i] else {
            continue;
        };
        let node = &planned.node;
        if planned.fused.is_some()
            || node.outputs.iter().any(|o| o.is_empty() || work.kept(o))
            || node.outputs.is_empty()
        {
            continue;
        }
        let Some(kernel) = ops::kernel_for(node) else {
            continue;
        };
        let inputs: Option<Vec<Option<&TensorData>>> = node
            .inputs
            .iter()
            .map(|name| {
                if name.is_empty() {
                    Some(None)
                } else {
                    work.constant(name).map(Some)
                }
            })
            .collect();
        let Some(inputs) = inputs else { continue };
        let ctx = OpCtx {
            node,
            opset: work.graph.opset,
        };
        // a failing node stays, and fails at run time with its message
        let Ok(outputs) = kernel(&ctx, &inputs) else {
            continue;
        };
        if outputs.len() < node.outputs.len() {
            continue;
        }
        let names = node.outputs.clone();
        for (name, value) in names.into_iter().zip(outputs) {
            work.constants.insert(name, Arc::new(value));
        }
        work.nodes[i] = None;
    }
}

/// Gives every QuantizeLinear with a zero point but no `output_dtype` attribute the zero point's
/// element type as that attribute (the kernel sees values, not the file's types). A zero point
/// that is neither an initializer nor a Constant's output leaves the node as it is: the kernel
/// then refuses it with its reason.
pub(super) fn type_quantizers(work: &mut Work<'_>) {
    let constant_dtypes: std::collections::HashMap<String, i32> = work
        .nodes
        .iter()
        .flatten()
        .filter(|p| p.node.op_type == "Constant")
        .filter_map(|p| {
            let tensor = p.node.attr_tensor("value").ok()??;
            Some((
                p.node.outputs.first()?.clone(),
                tensor.origin_dtype.onnx_code(),
            ))
        })
        .collect();
    for planned in work.nodes.iter_mut().flatten() {
        let node = &mut planned.node;
        if node.op_type != "QuantizeLinear"
            || !node.in_default_domain()
            || node.attributes.contains_key("output_dtype")
        {
            continue;
        }
        let Some(zero_point) = node.input(2).filter(|z| !z.is_empty()) else {
            continue;
        };
        let code = match work.graph.initializers.get(zero_point) {
            Some(tensor) => Some(tensor.origin_dtype.onnx_code()),
            None => constant_dtypes.get(zero_point).copied(),
        };
        if let Some(code) = code {
            node.attributes
                .insert("output_dtype".into(), Attribute::Int(i64::from(code)));
        }
    }
}
