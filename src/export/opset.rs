//! Lifting a graph to a newer default-domain opset, for exports that need newer operators
//! (QDQ with 4- or 16-bit types needs opset 21). Only the changes that matter between the
//! versions a model is likely to use are made: attributes that became inputs (`axes` of
//! Squeeze/Unsqueeze/ReduceSum at 13 and of the other reductions at 18, Split's `split` at 13)
//! and Split's `num_outputs` at 18.

use crate::error::{Error, Result};
use crate::ir::{Attribute, DType, Graph, Tensor, TensorData};

const REDUCE_18: [&str; 9] = [
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

/// Rewrites `graph` for opset `target` (no-op when it is already there or newer).
pub fn upgrade_opset(graph: &mut Graph, target: i64) -> Result<()> {
    let from = graph.opset;
    if from >= target {
        return Ok(());
    }
    let crosses = |v: i64| from < v && target >= v;
    let mut new_constants = Vec::new();
    for node in &mut graph.nodes {
        if !matches!(node.domain.as_str(), "" | "ai.onnx") {
            continue;
        }
        let op = node.op_type.as_str();
        let moved = match op {
            "Squeeze" | "Unsqueeze" | "ReduceSum" if crosses(13) => Some(("axes", 1)),
            "Split" if crosses(13) => Some(("split", 1)),
            _ if REDUCE_18.contains(&op) && crosses(18) => Some(("axes", 1)),
            _ => None,
        };
        if let Some((attr, position)) = moved
            && let Some(value) = node.attributes.remove(attr)
        {
            let Attribute::Ints(values) = value else {
                return Err(Error::Op {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    msg: format!("attribute '{attr}' should be a list of ints"),
                });
            };
            let name = format!("{}_{attr}", node.name);
            let count = values.len();
            let data = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[count]), values)
                .map_err(|e| Error::Graph(format!("{name}: {e}")))?;
            new_constants.push(Tensor::new(name.clone(), TensorData::I64(data), DType::I64));
            while node.inputs.len() < position {
                node.inputs.push(String::new());
            }
            node.inputs.insert(position, name);
        }
        if op == "Split" && crosses(18) && node.input(1).is_none() {
            node.attributes.insert(
                "num_outputs".into(),
                Attribute::Int(node.outputs.len() as i64),
            );
        }
    }
    for t in new_constants {
        graph.initializers.insert(t.name.clone(), t);
    }
    graph.opset = target;
    Ok(())
}
